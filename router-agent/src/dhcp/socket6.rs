//! The IPv6 family's sockets: a raw ICMPv6 socket for router advertisements
//! (and the Router Solicitations at start), and the DHCPv6 client's UDP socket
//! on port 546. Both are bound to the LAN interface.
//!
//! RAs are read by the agent itself, with the kernel's own RA processing off
//! on the interface (`accept_ra=0`, `autoconf=0`): the agent needs the M and
//! O flags to decide on DHCPv6 anyway, it must report every address and
//! lifetime in status, and a router namespace forwards (and the kernel ignores
//! RAs on a forwarding interface unless `accept_ra=2`). One owner of the
//! addresses, as for IPv4.

use std::io;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn6, recvmsg, setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use netcontainer_lease::v6::ra::ROUTER_ADVERTISEMENT;

/// All routers (RFC 4291 section 2.7.1).
const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// All_DHCP_Relay_Agents_and_Servers (RFC 8415 section 7.1).
pub const ALL_DHCP_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
pub const CLIENT_PORT: u16 = 546;
pub const SERVER_PORT: u16 = 547;
/// ICMP6_FILTER (linux/icmpv6.h).
const ICMP6_FILTER: libc::c_int = 1;
/// The largest RA or DHCPv6 message taken: a jumbo frame's payload. An RA
/// never exceeds the link's MTU, and a DHCPv6 server has no reason to send
/// more; a bigger datagram is dropped whole, never parsed truncated. Not
/// 64 KiB: each pending receive zeroes its buffer, and two of them (RA and
/// DHCPv6) were most of what IPv6 added to the agent's resident size.
const MAX_MESSAGE: usize = 9216;
/// One byte more than [`MAX_MESSAGE`], to see that a datagram was longer.
const RECV_BUF_LEN: usize = MAX_MESSAGE + 1;

fn context(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Raw ICMPv6 socket that passes only router advertisements.
pub struct Icmp6Socket {
    fd: AsyncFd<Socket>,
    ifindex: u32,
}

impl Icmp6Socket {
    pub fn open(ifname: &str, ifindex: u32) -> io::Result<Self> {
        let what = |op: &str| format!("ICMPv6 socket on {ifname}: {op}");
        let sock = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
            .map_err(|e| context(&what("socket"), e))?;
        sock.bind_device(Some(ifname.as_bytes()))
            .map_err(|e| context(&what("SO_BINDTODEVICE"), e))?;
        // RFC 3542 section 3.2: block every type but RA, so the socket does
        // not wake for each neighbour solicitation of the LAN.
        let mut filter = [u32::MAX; 8];
        filter[usize::from(ROUTER_ADVERTISEMENT >> 5)] &= !(1u32 << (ROUTER_ADVERTISEMENT & 31));
        // SAFETY: a valid fd and a buffer of the size given.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_ICMPV6,
                ICMP6_FILTER,
                filter.as_ptr().cast(),
                std::mem::size_of_val(&filter) as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(context(&what("ICMP6_FILTER"), io::Error::last_os_error()));
        }
        // RFC 4861 section 6.1.2 needs the hop limit of each RA.
        // SAFETY: the fd outlives the borrow.
        let bfd = unsafe { BorrowedFd::borrow_raw(sock.as_raw_fd()) };
        setsockopt(&bfd, sockopt::Ipv6RecvHopLimit, &true)
            .map_err(|e| context(&what("IPV6_RECVHOPLIMIT"), e.into()))?;
        // RFC 4861 section 4.1: Router Solicitations go out with hop limit 255.
        sock.set_multicast_hops_v6(255)
            .map_err(|e| context(&what("IPV6_MULTICAST_HOPS"), e))?;
        sock.set_nonblocking(true)
            .map_err(|e| context(&what("set nonblocking"), e))?;
        // SAFETY: the socket is owned by the AsyncFd from here on, and its
        // fd is not closed or registered anywhere else.
        let fd = unsafe { AsyncFd::register(sock) }.map_err(|e| {
            let (_, cause) = e.into_parts();
            context(&what("register with tokio"), cause)
        })?;
        Ok(Icmp6Socket { fd, ifindex })
    }

    /// The next RA: (source, hop limit, ICMPv6 message).
    pub async fn recv(&self) -> io::Result<(Ipv6Addr, u8, Vec<u8>)> {
        let mut buf = vec![0u8; RECV_BUF_LEN];
        loop {
            let mut guard = self.fd.readable().await?;
            let r = guard.try_io(|fd| {
                let mut iov = [io::IoSliceMut::new(&mut buf)];
                let mut cmsg = nix::cmsg_space!(libc::c_int);
                let msg = recvmsg::<SockaddrIn6>(
                    fd.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::empty(),
                )
                .map_err(io::Error::from)?;
                // Unknown hop limit counts as not from this link.
                let mut hops = 0u8;
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::Ipv6HopLimit(h) = c {
                            hops = u8::try_from(h).unwrap_or(0);
                        }
                    }
                }
                let src = msg.address.map(|a| a.ip()).unwrap_or(Ipv6Addr::UNSPECIFIED);
                Ok((src, hops, msg.bytes))
            });
            match r {
                Ok(Ok((_, _, n))) if n > MAX_MESSAGE => {
                    tracing::debug!("ICMPv6 message over {MAX_MESSAGE} bytes dropped");
                    continue;
                }
                Ok(Ok((src, hops, n))) => return Ok((src, hops, buf[..n].to_vec())),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends a Router Solicitation to ff02::2 (the kernel fills the checksum).
    pub async fn send_solicitation(&self, icmp: &[u8]) -> io::Result<()> {
        let to: socket2::SockAddr = SocketAddrV6::new(ALL_ROUTERS, 0, 0, self.ifindex).into();
        self.fd
            .async_io(Interest::WRITABLE, |s| s.send_to(icmp, &to))
            .await
            .map(|_| ())
    }
}

/// The DHCPv6 client socket: UDP [::]:546 on the interface.
pub struct Udp6Socket {
    sock: tokio::net::UdpSocket,
    ifindex: u32,
}

impl Udp6Socket {
    /// Must be called inside a tokio runtime.
    pub fn bind(ifname: &str, ifindex: u32) -> io::Result<Self> {
        let what = |op: &str| format!("DHCPv6 socket [::]:546 on {ifname}: {op}");
        let sock = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))
            .map_err(|e| context(&what("socket"), e))?;
        sock.set_only_v6(true)
            .map_err(|e| context(&what("IPV6_V6ONLY"), e))?;
        sock.set_reuse_address(true)
            .map_err(|e| context(&what("SO_REUSEADDR"), e))?;
        sock.bind_device(Some(ifname.as_bytes()))
            .map_err(|e| context(&what("SO_BINDTODEVICE"), e))?;
        sock.bind(&SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, CLIENT_PORT, 0, 0).into())
            .map_err(|e| context(&what("bind"), e))?;
        sock.set_nonblocking(true)
            .map_err(|e| context(&what("set nonblocking"), e))?;
        let sock = tokio::net::UdpSocket::from_std(sock.into())
            .map_err(|e| context(&what("register with tokio"), e))?;
        Ok(Udp6Socket { sock, ifindex })
    }

    /// Sends to All_DHCP_Relay_Agents_and_Servers port 547 on the link.
    pub async fn send(&self, payload: &[u8]) -> io::Result<()> {
        let to = SocketAddrV6::new(ALL_DHCP_SERVERS, SERVER_PORT, 0, self.ifindex);
        self.sock.send_to(payload, to).await.map(|_| ())
    }

    /// The next datagram from a server port (547).
    pub async fn recv(&self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; RECV_BUF_LEN];
        loop {
            let (n, from) = self.sock.recv_from(&mut buf).await?;
            if n > MAX_MESSAGE {
                tracing::debug!(%from, "DHCPv6 datagram over {MAX_MESSAGE} bytes dropped");
                continue;
            }
            if from.port() == SERVER_PORT {
                return Ok(buf[..n].to_vec());
            }
        }
    }
}
