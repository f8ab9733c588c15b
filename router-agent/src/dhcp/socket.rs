//! The DHCP client's sockets (see `notes/crates.md` section 6 for why there are two).
//!
//! - [`RawSocket`]: AF_PACKET SOCK_DGRAM on one interface, for everything before the lease
//!   address is configured (DISCOVER/REQUEST/REBIND/DECLINE): it sends broadcasts from
//!   0.0.0.0 and receives unicast replies to an address the interface does not have yet.
//!   A classic BPF filter keeps everything but IPv4/UDP to port 68 in the kernel.
//! - [`UdpSocket`]: plain UDP bound to `lease_addr:68` on the interface, for unicast
//!   RENEW and RELEASE to the server (a raw IP socket when another socket holds port 68).
//!
//! Both need a tokio runtime with I/O enabled. The raw socket needs CAP_NET_RAW, binding
//! port 68 needs CAP_NET_BIND_SERVICE.

use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, SockFilter, Socket, Type};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use netcontainer_lease::packet::{
    DHCP_CLIENT_PORT, DHCP_SERVER_PORT, MAX_UDP_PAYLOAD, build_ipv4_udp, parse_ipv4_udp,
};

use super::filter::dhcp_client_filter;

const ETH_P_IP: u16 = 0x0800;
const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// Receive buffer: the largest possible IPv4 datagram.
const RECV_BUF_LEN: usize = 65536;
/// Upper bound on frames discarded when draining a freshly opened socket.
const MAX_DRAIN: usize = 100_000;

/// Adds context (which socket, which interface, which operation) to an I/O error,
/// keeping its kind.
fn context(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn ll_addr(ifindex: i32, mac: [u8; 6]) -> SockAddr {
    let mut st = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_ll.
    let ll: &mut libc::sockaddr_ll = unsafe { st.view_as() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = ETH_P_IP.to_be();
    ll.sll_ifindex = ifindex;
    ll.sll_halen = 6;
    ll.sll_addr[..6].copy_from_slice(&mac);
    // SAFETY: the storage holds an initialised sockaddr_ll of the given length.
    unsafe { SockAddr::new(st, mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t) }
}

/// What `recvmsg` told us about one frame, besides its bytes.
#[derive(Debug, Clone, Copy)]
struct FrameInfo {
    /// Bytes stored in the buffer.
    len: usize,
    /// The frame did not fit into the buffer.
    truncated: bool,
    /// `sll_pkttype == PACKET_OUTGOING`: a frame this host sent.
    outgoing: bool,
    /// `TP_STATUS_CSUMNOTREADY`: the UDP checksum is partial and must not be verified.
    csum_not_ready: bool,
}

/// One nonblocking `recvmsg` on a packet socket, reading the source address and the
/// PACKET_AUXDATA control message.
fn recv_frame(fd: RawFd, buf: &mut [u8]) -> io::Result<FrameInfo> {
    // SAFETY: all-zero is a valid sockaddr_ll and msghdr.
    let mut from: libc::sockaddr_ll = unsafe { mem::zeroed() };
    // u64 elements keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
    msg.msg_namelen = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = mem::size_of_val(&control) as _;

    let n = loop {
        // SAFETY: msg points at live buffers of the lengths given. MSG_TRUNC makes the
        // return value the real frame length.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_TRUNC | libc::MSG_DONTWAIT) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };

    let mut csum_not_ready = false;
    // SAFETY: msg was filled by the kernel; the CMSG_* helpers stay within msg_controllen,
    // and we check cmsg_len before reading the payload (unaligned read).
    unsafe {
        let aux_len = libc::CMSG_LEN(mem::size_of::<libc::tpacket_auxdata>() as u32) as usize;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_PACKET
                && (*c).cmsg_type == libc::PACKET_AUXDATA
                && (*c).cmsg_len as usize >= aux_len
            {
                let aux: libc::tpacket_auxdata =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                csum_not_ready = aux.tp_status & libc::TP_STATUS_CSUMNOTREADY != 0;
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let pkttype_end = mem::offset_of!(libc::sockaddr_ll, sll_pkttype) + 1;
    let outgoing =
        msg.msg_namelen as usize >= pkttype_end && from.sll_pkttype == libc::PACKET_OUTGOING;
    Ok(FrameInfo {
        len: n.min(buf.len()),
        truncated: n > buf.len() || msg.msg_flags & libc::MSG_TRUNC != 0,
        outgoing,
        csum_not_ready,
    })
}

/// Discards everything queued on a nonblocking socket.
fn drain(sock: &Socket) -> io::Result<()> {
    let mut scratch = [MaybeUninit::<u8>::uninit(); 1];
    for _ in 0..MAX_DRAIN {
        match sock.recv_with_flags(&mut scratch, libc::MSG_DONTWAIT | libc::MSG_TRUNC) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// An AF_PACKET SOCK_DGRAM socket on one interface that sends IPv4/UDP broadcasts to the
/// DHCP server port and receives DHCP replies (UDP to port 68, any destination address).
#[derive(Debug)]
pub struct RawSocket {
    fd: AsyncFd<Socket>,
    ifindex: u32,
}

impl RawSocket {
    /// Opens the socket on `ifindex` with PACKET_AUXDATA and the DHCP client BPF filter.
    ///
    /// The socket is created with protocol 0 (it receives nothing yet), gets its filter,
    /// and only then is bound to `ifindex` with ETH_P_IP; anything queued anyway is drained,
    /// so [`recv`](Self::recv) only ever sees filtered frames.
    pub fn open(ifindex: u32) -> io::Result<Self> {
        let what = |op: &str| format!("DHCP raw socket on ifindex {ifindex}: {op}");
        let idx = i32::try_from(ifindex)
            .ok()
            .filter(|&i| i > 0)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, what("invalid interface index"))
            })?;
        let sock = Socket::new(Domain::PACKET, Type::DGRAM, None)
            .map_err(|e| context(&what("socket(AF_PACKET)"), e))?;
        let one: libc::c_int = 1;
        // SAFETY: valid fd, option value is a c_int of the given size.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_AUXDATA,
                (&one as *const libc::c_int).cast(),
                mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(context(
                &what("setsockopt(PACKET_AUXDATA)"),
                io::Error::last_os_error(),
            ));
        }
        let filter: Vec<SockFilter> = dhcp_client_filter()
            .iter()
            .map(|f| SockFilter::new(f.code, f.jt, f.jf, f.k))
            .collect();
        sock.attach_filter(&filter)
            .map_err(|e| context(&what("attach BPF filter"), e))?;
        sock.set_nonblocking(true)
            .map_err(|e| context(&what("set nonblocking"), e))?;
        sock.bind(&ll_addr(idx, [0; 6]))
            .map_err(|e| context(&what("bind"), e))?;
        drain(&sock).map_err(|e| context(&what("drain receive queue"), e))?;
        // SAFETY: `Socket` owns its fd and never replaces or closes it while alive.
        // (`AsyncFd::new` is deprecated since tokio 1.54 in favour of this.)
        let fd = unsafe { AsyncFd::register(sock) }.map_err(|e| {
            let (_, cause) = e.into_parts();
            context(&what("register with tokio"), cause)
        })?;
        Ok(Self { fd, ifindex })
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Sends `payload` as UDP `src:68 -> 255.255.255.255:67` to the broadcast MAC.
    /// `src` is 0.0.0.0, or the lease address when rebinding.
    pub async fn send_broadcast(&self, src: Ipv4Addr, payload: &[u8]) -> io::Result<()> {
        let what = || {
            format!(
                "DHCP raw socket on ifindex {}: send broadcast",
                self.ifindex
            )
        };
        if payload.len() > MAX_UDP_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: payload of {} bytes too large", what(), payload.len()),
            ));
        }
        let frame = build_ipv4_udp(
            src,
            Ipv4Addr::BROADCAST,
            DHCP_CLIENT_PORT,
            DHCP_SERVER_PORT,
            payload,
        );
        // ifindex fits: open() checked it.
        let to = ll_addr(self.ifindex as i32, BROADCAST_MAC);
        let sent = self
            .fd
            .async_io(Interest::WRITABLE, |s| s.send_to(&frame, &to))
            .await
            .map_err(|e| context(&what(), e))?;
        if sent != frame.len() {
            return Err(io::Error::other(format!(
                "{}: short send ({sent} of {} bytes)",
                what(),
                frame.len()
            )));
        }
        Ok(())
    }

    /// Waits for the next frame that passed the kernel filter; returns its info (bytes in `buf`).
    async fn recv_frame(&self, buf: &mut [u8]) -> io::Result<FrameInfo> {
        self.fd
            .async_io(Interest::READABLE, |s| recv_frame(s.as_raw_fd(), buf))
            .await
            .map_err(|e| {
                context(
                    &format!("DHCP raw socket on ifindex {}: receive", self.ifindex),
                    e,
                )
            })
    }

    /// Returns the UDP payload (the DHCP message) of the next valid IPv4/UDP datagram to
    /// port 68. Outgoing frames and frames that fail validation are dropped (logged at
    /// debug level); only socket errors are returned.
    pub async fn recv(&self) -> io::Result<Vec<u8>> {
        self.recv_from().await.map(|(_, p)| p)
    }

    /// [`RawSocket::recv`] with the datagram's IPv4 source address.
    pub async fn recv_from(&self) -> io::Result<(Ipv4Addr, Vec<u8>)> {
        let mut buf = vec![0u8; RECV_BUF_LEN];
        loop {
            let info = self.recv_frame(&mut buf).await?;
            if info.outgoing {
                continue;
            }
            if info.truncated {
                tracing::debug!(ifindex = self.ifindex, "dropping truncated frame");
                continue;
            }
            match parse_ipv4_udp(&buf[..info.len], info.csum_not_ready) {
                Ok(udp) if udp.dst_port == DHCP_CLIENT_PORT => {
                    return Ok((udp.src_addr, udp.payload.to_vec()));
                }
                Ok(udp) => tracing::debug!(
                    ifindex = self.ifindex,
                    dst_port = udp.dst_port,
                    "dropping datagram to another port"
                ),
                Err(e) => tracing::debug!(
                    ifindex = self.ifindex,
                    error = %e,
                    "dropping invalid frame"
                ),
            }
        }
    }
}

/// The unicast sender for RENEW and RELEASE from the lease address `addr`: a UDP socket
/// bound to `addr:68` on one interface, or, when another socket in the namespace already
/// holds port 68 without SO_REUSEADDR (a dhclient, a udhcpc, any plain `bind`), a raw IP
/// socket that sends the whole IPv4/UDP datagram, source port 68, routed by the kernel
/// from `addr` like the UDP socket's. That one receives nothing: the replies reach the
/// [`RawSocket`], whose filter keeps everything to port 68 whoever holds the port.
#[derive(Debug)]
pub struct UdpSocket {
    inner: Inner,
    addr: Ipv4Addr,
    ifname: String,
}

#[derive(Debug)]
enum Inner {
    Bound(tokio::net::UdpSocket),
    HeaderIncluded(AsyncFd<Socket>),
}

impl UdpSocket {
    /// Binds `addr:68` with SO_REUSEADDR, SO_BINDTODEVICE(`ifname`) and IP_FREEBIND (so the
    /// address need not be configured yet); if the port is taken, falls back to the raw
    /// IP sender (see the type). Must be called inside a tokio runtime.
    pub fn bind(ifname: &str, addr: Ipv4Addr) -> io::Result<Self> {
        let inner = match bind_udp(ifname, addr) {
            Ok(s) => Inner::Bound(s),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                tracing::warn!(
                    %addr, %ifname, error = %e,
                    "another socket holds UDP port 68 here: sending unicast DHCP from a raw IP socket"
                );
                Inner::HeaderIncluded(open_header_included(ifname, addr)?)
            }
            Err(e) => return Err(e),
        };
        Ok(Self {
            inner,
            addr,
            ifname: ifname.to_owned(),
        })
    }

    /// Whether port 68 was taken and the raw IP sender is in use.
    pub fn is_raw(&self) -> bool {
        matches!(self.inner, Inner::HeaderIncluded(_))
    }

    fn what(&self, op: &str) -> String {
        let kind = match self.inner {
            Inner::Bound(_) => "UDP",
            Inner::HeaderIncluded(_) => "raw IP",
        };
        format!(
            "DHCP {kind} socket {}:68 on {}: {op}",
            self.addr, self.ifname
        )
    }

    /// Sends `payload` to `server:67`.
    pub async fn send_to(&self, server: Ipv4Addr, payload: &[u8]) -> io::Result<()> {
        let what = || self.what(&format!("send to {server}:67"));
        let (sent, len) = match &self.inner {
            Inner::Bound(sock) => (
                sock.send_to(payload, SocketAddrV4::new(server, DHCP_SERVER_PORT))
                    .await
                    .map_err(|e| context(&what(), e))?,
                payload.len(),
            ),
            Inner::HeaderIncluded(fd) => {
                if payload.len() > MAX_UDP_PAYLOAD {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{}: payload of {} bytes too large", what(), payload.len()),
                    ));
                }
                let frame = build_ipv4_udp(
                    self.addr,
                    server,
                    DHCP_CLIENT_PORT,
                    DHCP_SERVER_PORT,
                    payload,
                );
                let to = SockAddr::from(SocketAddrV4::new(server, 0));
                let sent = fd
                    .async_io(Interest::WRITABLE, |s| s.send_to(&frame, &to))
                    .await
                    .map_err(|e| context(&what(), e))?;
                (sent, frame.len())
            }
        };
        if sent != len {
            return Err(io::Error::other(format!(
                "{}: short send ({sent} of {len} bytes)",
                what()
            )));
        }
        Ok(())
    }

    /// Returns the payload of the next datagram from a server port (67). The raw IP
    /// sender never returns (it receives nothing).
    pub async fn recv(&self) -> io::Result<Vec<u8>> {
        self.recv_from().await.map(|(_, p)| p)
    }

    /// [`UdpSocket::recv`] with the server's address.
    pub async fn recv_from(&self) -> io::Result<(Ipv4Addr, Vec<u8>)> {
        let Inner::Bound(sock) = &self.inner else {
            return std::future::pending().await;
        };
        let mut buf = vec![0u8; RECV_BUF_LEN];
        loop {
            let (n, from) = sock
                .recv_from(&mut buf)
                .await
                .map_err(|e| context(&self.what("receive"), e))?;
            if from.port() != DHCP_SERVER_PORT {
                tracing::debug!(ifname = %self.ifname, %from, "dropping datagram not from port 67");
                continue;
            }
            buf.truncate(n);
            let source = match from.ip() {
                std::net::IpAddr::V4(a) => a,
                std::net::IpAddr::V6(a) => a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
            };
            return Ok((source, buf));
        }
    }
}

fn bind_udp(ifname: &str, addr: Ipv4Addr) -> io::Result<tokio::net::UdpSocket> {
    let what = |op: &str| format!("DHCP UDP socket {addr}:68 on {ifname}: {op}");
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| context(&what("socket"), e))?;
    sock.set_reuse_address(true)
        .map_err(|e| context(&what("SO_REUSEADDR"), e))?;
    sock.bind_device(Some(ifname.as_bytes()))
        .map_err(|e| context(&what("SO_BINDTODEVICE"), e))?;
    sock.set_freebind_v4(true)
        .map_err(|e| context(&what("IP_FREEBIND"), e))?;
    sock.bind(&SocketAddrV4::new(addr, DHCP_CLIENT_PORT).into())
        .map_err(|e| context(&what("bind"), e))?;
    sock.set_nonblocking(true)
        .map_err(|e| context(&what("set nonblocking"), e))?;
    tokio::net::UdpSocket::from_std(sock.into())
        .map_err(|e| context(&what("register with tokio"), e))
}

/// An IPPROTO_RAW socket (IP_HDRINCL implied, never receives) on `ifname`, bound to
/// `addr` so the kernel routes its datagrams as from `addr` (the agent's routing rules
/// select by source).
fn open_header_included(ifname: &str, addr: Ipv4Addr) -> io::Result<AsyncFd<Socket>> {
    let what = |op: &str| format!("DHCP raw IP socket {addr} on {ifname}: {op}");
    let sock = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(libc::IPPROTO_RAW)),
    )
    .map_err(|e| context(&what("socket"), e))?;
    sock.bind_device(Some(ifname.as_bytes()))
        .map_err(|e| context(&what("SO_BINDTODEVICE"), e))?;
    sock.set_freebind_v4(true)
        .map_err(|e| context(&what("IP_FREEBIND"), e))?;
    sock.bind(&SocketAddrV4::new(addr, 0).into())
        .map_err(|e| context(&what("bind"), e))?;
    sock.set_nonblocking(true)
        .map_err(|e| context(&what("set nonblocking"), e))?;
    // SAFETY: `Socket` owns its fd and never replaces or closes it while alive.
    unsafe { AsyncFd::register(sock) }.map_err(|e| {
        let (_, cause) = e.into_parts();
        context(&what("register with tokio"), cause)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
    use std::process::Command;
    use std::time::Duration;

    const SERVER_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
    const ATTEMPTS: usize = 50;
    const STEP: Duration = Duration::from_millis(200);

    fn ip(args: &[&str]) -> String {
        let out = Command::new("ip").args(args).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Deletes the named network namespaces (and with them the veth pair) on drop.
    struct NetnsGuard(Vec<String>);

    impl Drop for NetnsGuard {
        fn drop(&mut self) {
            for name in &self.0 {
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
    }

    fn enter_netns(name: &str) {
        let f = std::fs::File::open(format!("/run/netns/{name}")).expect("open netns");
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    }

    /// Waits for a datagram on a blocking std socket with a short timeout.
    fn std_recv(sock: &StdUdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = [0u8; 2048];
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => Some((buf[..n].to_vec(), from)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("recv: {e}"),
        }
    }

    /// Calls `send` and waits for `expected` on the raw socket, retrying (the first frames
    /// after bringing a veth up can be lost). Other payloads (retries of earlier steps) are
    /// skipped.
    async fn raw_expect(raw: &RawSocket, expected: &[u8], send: impl Fn()) {
        for _ in 0..ATTEMPTS {
            send();
            let deadline = tokio::time::Instant::now() + STEP;
            while let Ok(got) = tokio::time::timeout_at(deadline, raw.recv()).await {
                if got.expect("raw recv") == expected {
                    return;
                }
            }
        }
        panic!(
            "raw socket never received {:?}",
            String::from_utf8_lossy(expected)
        );
    }

    fn run_in_namespaces(server_ns: &str, client_ns: &str) {
        // Server side sockets, created in the server namespace (sockets keep their netns).
        enter_netns(server_ns);
        let sender = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        sender.bind_device(Some(b"va")).unwrap();
        sender.set_broadcast(true).unwrap();
        sender
            .bind(&SocketAddrV4::new(SERVER_IP, 0).into())
            .unwrap();
        let sender: StdUdpSocket = sender.into();
        let server = StdUdpSocket::bind((Ipv4Addr::UNSPECIFIED, 67)).unwrap();
        server.set_read_timeout(Some(STEP)).unwrap();
        let sender = &sender;
        let send = |payload: &'static [u8], to: Ipv4Addr, port: u16| {
            move || {
                sender.send_to(payload, (to, port)).expect("send");
            }
        };

        // Client side: everything else runs in the client namespace.
        enter_netns(client_ns);
        let ifindex = nix::net::if_::if_nametoindex("vb").expect("vb ifindex");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let raw = RawSocket::open(ifindex).expect("open raw socket");
            assert_eq!(raw.ifindex(), ifindex);

            // 1. Unicast to an address the client does not have.
            raw_expect(&raw, b"unicast-68", send(b"unicast-68", CLIENT_IP, 68)).await;

            // 2. Limited broadcast.
            raw_expect(
                &raw,
                b"broadcast-68",
                send(b"broadcast-68", Ipv4Addr::BROADCAST, 68),
            )
            .await;

            // 3. The kernel filter drops port 69: send 69 then a marker to 68 on the same
            // path; no frame before the marker may be for port 69. Frame-level receive,
            // so the userspace port check in recv() does not hide a missing filter.
            let mut buf = vec![0u8; RECV_BUF_LEN];
            let mut seen_marker = false;
            for _ in 0..ATTEMPTS {
                send(b"port-69", CLIENT_IP, 69)();
                send(b"marker-68", CLIENT_IP, 68)();
                let deadline = tokio::time::Instant::now() + STEP;
                while let Ok(info) =
                    tokio::time::timeout_at(deadline, raw.recv_frame(&mut buf)).await
                {
                    let info = info.expect("raw recv_frame");
                    assert!(!info.outgoing);
                    let udp =
                        parse_ipv4_udp(&buf[..info.len], info.csum_not_ready).expect("valid frame");
                    assert_eq!(udp.dst_port, 68, "filter let through {udp:?}");
                    assert_ne!(udp.payload, b"port-69");
                    seen_marker |= udp.payload == b"marker-68";
                }
                if seen_marker {
                    break;
                }
            }
            assert!(seen_marker, "marker never arrived");

            // 4. Broadcast from 0.0.0.0 reaches a server on 0.0.0.0:67.
            let mut got = None;
            for _ in 0..ATTEMPTS {
                raw.send_broadcast(Ipv4Addr::UNSPECIFIED, b"discover")
                    .await
                    .expect("send_broadcast");
                if let Some(r) = std_recv(&server) {
                    got = Some(r);
                    break;
                }
            }
            let (payload, from) = got.expect("server never received the broadcast");
            assert_eq!(payload, b"discover");
            assert_eq!(
                from,
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, DHCP_CLIENT_PORT))
            );

            // 5. Unicast renew: bind before the address exists (IP_FREEBIND), then add it.
            let udp = UdpSocket::bind("vb", CLIENT_IP).expect("bind UDP socket");
            ip(&["-n", client_ns, "addr", "add", "192.0.2.50/24", "dev", "vb"]);
            let mut got = None;
            for _ in 0..ATTEMPTS {
                udp.send_to(SERVER_IP, b"request")
                    .await
                    .expect("udp send_to");
                if let Some(r) = std_recv(&server) {
                    got = Some(r);
                    break;
                }
            }
            let (payload, from) = got.expect("server never received the unicast");
            assert_eq!(payload, b"request");
            assert_eq!(from, SocketAddr::from((CLIENT_IP, DHCP_CLIENT_PORT)));
            server.send_to(b"ack", from).unwrap();
            let reply = tokio::time::timeout(Duration::from_secs(5), udp.recv())
                .await
                .expect("udp recv timed out")
                .expect("udp recv");
            assert_eq!(reply, b"ack");
        });
    }

    #[test]
    fn sockets_in_network_namespaces() {
        if !nix::unistd::geteuid().is_root() {
            if std::env::var_os("CI").is_some() {
                panic!("sockets_in_network_namespaces needs root, and CI must run it");
            }
            println!("skipping: needs root");
            return;
        }
        let pid = std::process::id();
        let server_ns = format!("nc-sock-{pid}-a");
        let client_ns = format!("nc-sock-{pid}-b");
        let _guard = NetnsGuard(vec![server_ns.clone(), client_ns.clone()]);
        ip(&["netns", "add", &server_ns]);
        ip(&["netns", "add", &client_ns]);
        ip(&[
            "-n", &server_ns, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns",
            &client_ns,
        ]);
        ip(&["-n", &server_ns, "addr", "add", "192.0.2.1/24", "dev", "va"]);
        ip(&["-n", &server_ns, "link", "set", "va", "up"]);
        ip(&["-n", &client_ns, "link", "set", "vb", "up"]);
        let brief = ip(&["-n", &client_ns, "-br", "link", "show", "dev", "vb"]);
        let mac = brief
            .split_whitespace()
            .nth(2)
            .unwrap_or_else(|| panic!("no MAC in {brief:?}"))
            .to_owned();
        ip(&[
            "-n",
            &server_ns,
            "neigh",
            "add",
            "192.0.2.50",
            "lladdr",
            &mac,
            "dev",
            "va",
        ]);

        let (s, c) = (server_ns.clone(), client_ns.clone());
        let result = std::thread::spawn(move || run_in_namespaces(&s, &c)).join();
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }
}
