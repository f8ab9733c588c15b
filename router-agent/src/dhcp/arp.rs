//! The ARP socket for the address conflict probe: the I/O half of
//! [`netcontainer_lease::arp`], whose sans-IO [`Probe`](netcontainer_lease::arp::Probe)
//! decides what to send and what an answer means.
//!
//! An AF_PACKET SOCK_DGRAM socket bound to ETH_P_ARP on one interface, opened
//! for the duration of a probe, or of a guard while the address is in use,
//! with a BPF filter that lets only the ARP about that address through
//! (`filter::arp_filter`): the LAN's other ARP never wakes the agent.

use std::io;
use std::mem;
use std::os::fd::AsRawFd;

use socket2::{Domain, SockAddr, SockAddrStorage, SockFilter, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

const ETH_P_ARP: u16 = 0x0806;
/// Frames read per wake-up are at most this long (ARP is 28 bytes, padded to 46).
const RECV_BUF_LEN: usize = 1500;

fn ll_addr(ifindex: i32, mac: [u8; 6]) -> SockAddr {
    let mut st = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_ll.
    let ll: &mut libc::sockaddr_ll = unsafe { st.view_as() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = ETH_P_ARP.to_be();
    ll.sll_ifindex = ifindex;
    ll.sll_halen = 6;
    ll.sll_addr[..6].copy_from_slice(&mac);
    // SAFETY: the storage holds an initialised sockaddr_ll of the given length.
    unsafe { SockAddr::new(st, mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t) }
}

fn context(ifindex: u32, what: &str, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("ARP socket on ifindex {ifindex}: {what}: {e}"),
    )
}

/// AF_PACKET SOCK_DGRAM bound to ETH_P_ARP on one interface: sends ARP
/// payloads to the broadcast MAC and receives the ARP payloads of incoming
/// frames (frames this host sends are skipped). Needs CAP_NET_RAW.
#[derive(Debug)]
pub struct ArpSocket {
    fd: AsyncFd<Socket>,
    ifindex: u32,
}

impl ArpSocket {
    /// Created with protocol 0 (receiving nothing), given the filter for
    /// `address` (sender, and with `or_target` target, see
    /// `filter::arp_filter`), then bound to (ETH_P_ARP, ifindex): no frame of
    /// another interface, and none about another address, gets queued.
    pub fn open(
        ifindex: u32,
        address: std::net::Ipv4Addr,
        or_target: bool,
    ) -> io::Result<ArpSocket> {
        let idx = i32::try_from(ifindex)
            .ok()
            .filter(|&i| i > 0)
            .ok_or_else(|| {
                context(
                    ifindex,
                    "open",
                    io::Error::from(io::ErrorKind::InvalidInput),
                )
            })?;
        let sock = Socket::new(Domain::PACKET, Type::DGRAM, None)
            .map_err(|e| context(ifindex, "socket(AF_PACKET)", e))?;
        sock.set_nonblocking(true)
            .map_err(|e| context(ifindex, "set nonblocking", e))?;
        let filter: Vec<SockFilter> = super::filter::arp_filter(address, or_target)
            .iter()
            .map(|f| SockFilter::new(f.code, f.jt, f.jf, f.k))
            .collect();
        sock.attach_filter(&filter)
            .map_err(|e| context(ifindex, "attach BPF filter", e))?;
        sock.bind(&ll_addr(idx, [0; 6]))
            .map_err(|e| context(ifindex, "bind", e))?;
        // SAFETY: `Socket` owns its fd and never replaces or closes it while alive.
        let fd = unsafe { AsyncFd::register(sock) }.map_err(|e| {
            let (_, cause) = e.into_parts();
            context(ifindex, "register with tokio", cause)
        })?;
        Ok(ArpSocket { fd, ifindex })
    }

    /// Sends one ARP payload to ff:ff:ff:ff:ff:ff.
    pub async fn send_broadcast(&self, payload: &[u8]) -> io::Result<()> {
        let to = ll_addr(self.ifindex as i32, [0xff; 6]);
        let sent = self
            .fd
            .async_io(Interest::WRITABLE, |s| s.send_to(payload, &to))
            .await
            .map_err(|e| context(self.ifindex, "send", e))?;
        if sent != payload.len() {
            return Err(context(
                self.ifindex,
                "send",
                io::Error::other(format!("short send ({sent} of {})", payload.len())),
            ));
        }
        Ok(())
    }

    /// The ARP payload of the next frame received (not sent) on the interface.
    pub async fn recv(&self) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; RECV_BUF_LEN];
        loop {
            let (n, outgoing) = self
                .fd
                .async_io(Interest::READABLE, |s| recv_from(s.as_raw_fd(), &mut buf))
                .await
                .map_err(|e| context(self.ifindex, "receive", e))?;
            if !outgoing {
                buf.truncate(n);
                return Ok(buf);
            }
        }
    }
}

/// One nonblocking recvfrom: (bytes stored, sent by this host).
fn recv_from(fd: i32, buf: &mut [u8]) -> io::Result<(usize, bool)> {
    // SAFETY: all-zero is a valid sockaddr_ll.
    let mut from: libc::sockaddr_ll = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    loop {
        // SAFETY: buf and from are live buffers of the lengths given.
        let n = unsafe {
            libc::recvfrom(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if n >= 0 {
            let pkttype_end = mem::offset_of!(libc::sockaddr_ll, sll_pkttype) + 1;
            let outgoing = len as usize >= pkttype_end && from.sll_pkttype == libc::PACKET_OUTGOING;
            return Ok((n as usize, outgoing));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
