//! Captures real DHCP server replies for the fuzzers' seed corpus and writes it.
//!
//!   sudo cargo run -p netcontainer-fuzz --example capture-corpus [-- OUT_DIR]
//!
//! (scripts/capture-fuzz-corpus runs it.) For each of dnsmasq and ISC Kea, on a test bed
//! of network namespaces made by netcontainer-tests (LAN bridge 192.0.2.1/24 with the
//! server, a router namespace with a macvlan `lan0`), the agent's DHCP client (the
//! sans-IO state machine of netcontainer-lease) is driven through DISCOVER, REQUEST, a
//! unicast renew, a broadcast rebind and an INIT-REBOOT for an address of another network
//! (which both servers NAK), over an AF_PACKET SOCK_DGRAM socket like the agent's, so a
//! reply is stored exactly as the agent's raw socket receives it (the IPv4 datagram, no
//! Ethernet header).
//!
//! Written to OUT_DIR (default: fuzz/corpus), after its old `*.bin`/`*.script` are removed:
//! - `packet/<server>-<offer|ack|nak>[-<when>].bin`: mode byte 0 + the datagram;
//! - `dhcp/<server>-<scenario>.script`: scripts for the `dhcp` target replaying the
//!   payloads through the client ([`Op::Reply`] addresses them to the scripted client);
//! - `frame/seed-NN.bin`: the control frames of the `frame` target's seeds (proto's encoder).
//!
//! Only 192.0.2.0/24 and 203.0.113.0/24 are used, inside namespaces made here; the
//! namespaces and servers are removed on exit, on a panic too (drop guards).

use std::any::Any;
use std::io;
use std::mem;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use netcontainer_fuzz::corpus::{self, Reply, check_packet_file, check_reply, type_name};
use netcontainer_fuzz::dhcp::{MAC, Op, ScriptBuilder};
use netcontainer_fuzz::frame::FrameTarget;
use netcontainer_lease::packet::{
    DHCP_CLIENT_PORT, DHCP_SERVER_PORT, build_ipv4_udp, parse_ipv4_udp,
};
use netcontainer_lease::v4::{Client, Config, Destination, Event, Lease, Retry};
use netcontainer_lease::{State, randomness};
use netcontainer_tests::{Dnsmasq, DnsmasqOpts, Kea, KeaOpts, Lan, Netns};

/// An address of another network: an INIT-REBOOT for it gets a NAK from both servers.
const FOREIGN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 77);
const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// How long to wait for one reply (real time).
const REPLY_WAIT: Duration = Duration::from_secs(10);

/// One captured reply: the datagram as received, its payload's description, and a name.
struct Captured {
    name: String,
    datagram: Vec<u8>,
    payload: Vec<u8>,
    reply: Reply,
}

/// An AF_PACKET SOCK_DGRAM socket on one interface (what the agent's RawSocket is, without
/// the BPF filter: replies are picked by parsing here).
struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

fn os_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn ll_addr(ifindex: i32, mac: [u8; 6]) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut a: libc::sockaddr_ll = unsafe { mem::zeroed() };
    a.sll_family = libc::AF_PACKET as u16;
    a.sll_protocol = (libc::ETH_P_IP as u16).to_be();
    a.sll_ifindex = ifindex;
    a.sll_halen = 6;
    a.sll_addr[..6].copy_from_slice(&mac);
    a
}

impl PacketSocket {
    fn open(ifname: &str) -> io::Result<PacketSocket> {
        let c = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
        // SAFETY: valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) } as i32;
        if ifindex == 0 {
            return Err(os_err(&format!("if_nametoindex({ifname})")));
        }
        let proto = i32::from((libc::ETH_P_IP as u16).to_be());
        // SAFETY: plain socket(2) call; the fd is owned right after.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM, proto) };
        if raw < 0 {
            return Err(os_err("socket(AF_PACKET, SOCK_DGRAM)"));
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let addr = ll_addr(ifindex, [0; 6]);
        // SAFETY: valid fd and a sockaddr_ll of the given size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(os_err(&format!("bind to {ifname}")));
        }
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: valid fd and a timeval of the given size.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(os_err("setsockopt(SO_RCVTIMEO)"));
        }
        Ok(PacketSocket { fd, ifindex })
    }

    fn send(&self, datagram: &[u8], to: [u8; 6]) -> io::Result<()> {
        let addr = ll_addr(self.ifindex, to);
        // SAFETY: valid fd, buffer and sockaddr_ll of the given sizes.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                datagram.as_ptr().cast(),
                datagram.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(os_err("sendto"));
        }
        Ok(())
    }

    /// The next incoming datagram and its source MAC; None after the receive timeout.
    fn recv(&self) -> io::Result<Option<(Vec<u8>, [u8; 6])>> {
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
            let mut from: libc::sockaddr_ll = unsafe { mem::zeroed() };
            let mut len = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: valid fd, buffer and address storage of the given sizes.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    return Ok(None);
                }
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(io::Error::new(e.kind(), format!("recvfrom: {e}")));
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&from.sll_addr[..6]);
            return Ok(Some((buf[..n as usize].to_vec(), mac)));
        }
    }
}

/// Drives one client over the socket, recording the server's replies.
struct Driver {
    sock: PacketSocket,
    server_mac: [u8; 6],
    captured: Vec<Captured>,
}

impl Driver {
    /// Sends what the client has to send, then waits for the reply to its last message
    /// (same xid, from port 67 to 68) of type `want`, records it as `name`, and hands it
    /// to the client at `now`.
    fn exchange(
        &mut self,
        c: &mut Client,
        now: Instant,
        want: &str,
        name: &str,
    ) -> Result<(), String> {
        let mut last = None;
        while let Some(t) = c.poll_transmit() {
            let (src, dst, mac) = match t.destination {
                Destination::Broadcast { src } => (src, Ipv4Addr::BROADCAST, BROADCAST_MAC),
                Destination::Unicast { src, server } => (src, server, self.server_mac),
            };
            let d = build_ipv4_udp(src, dst, DHCP_CLIENT_PORT, DHCP_SERVER_PORT, &t.payload);
            self.sock
                .send(&d, mac)
                .map_err(|e| format!("{name}: send request: {e}"))?;
            last = Some(t.payload);
        }
        let req = last.ok_or_else(|| format!("{name}: the client sent nothing"))?;
        let deadline = Instant::now() + REPLY_WAIT;
        while Instant::now() < deadline {
            let Some((datagram, mac)) = self
                .sock
                .recv()
                .map_err(|e| format!("{name}: receive: {e}"))?
            else {
                continue;
            };
            let Ok(udp) = parse_ipv4_udp(&datagram, true) else {
                continue;
            };
            if (udp.src_port, udp.dst_port) != (DHCP_SERVER_PORT, DHCP_CLIENT_PORT)
                || udp.payload.get(4..8) != req.get(4..8)
            {
                continue;
            }
            let reply = check_reply(udp.payload).map_err(|e| format!("{name}: {e}"))?;
            if type_name(reply.message_type) != want {
                return Err(format!(
                    "{name}: got {:?}, wanted {want}",
                    reply.message_type
                ));
            }
            let payload = udp.payload.to_vec();
            self.server_mac = mac;
            c.handle_packet(now, &payload);
            self.captured.push(Captured {
                name: name.to_string(),
                datagram,
                payload,
                reply,
            });
            return Ok(());
        }
        Err(format!("{name}: no {want} within {REPLY_WAIT:?}"))
    }
}

fn config() -> Config {
    Config {
        chaddr: MAC,
        client_id: b"\x00netcontainer-fuzz-corpus".to_vec(),
        hostname: Some("fuzzcorpus".into()),
        broadcast_flag: false,
        request_address: None,
        retry: Retry::default(),
        servers: Default::default(),
    }
}

fn bound_lease(c: &mut Client, what: &str) -> Result<Lease, String> {
    let mut lease = None;
    while let Some(e) = c.poll_event() {
        if let Event::Bound(l) = e {
            lease = Some(l);
        }
    }
    lease.ok_or_else(|| format!("{what}: not bound (state {:?})", c.state()))
}

/// The exchanges with one server; the router namespace's `lan0` is up, without address.
fn capture(router: &Netns, server: &str) -> Result<Vec<Captured>, String> {
    let sock = PacketSocket::open("lan0").map_err(|e| format!("lan0: {e}"))?;
    let mut d = Driver {
        sock,
        server_mac: BROADCAST_MAC,
        captured: Vec::new(),
    };
    let t0 = Instant::now();
    let mut c = Client::new(config(), randomness::seeded(1));
    c.start(t0);
    d.exchange(&mut c, t0, "offer", &format!("{server}-offer"))?;
    d.exchange(&mut c, t0, "ack", &format!("{server}-ack"))?;
    let lease = bound_lease(&mut c, "after the ACK")?;
    // The server answers a renew at the leased address: give it to lan0 (as the agent
    // does) so the kernel answers the server's ARP.
    let cidr = format!("{}/{}", lease.address, lease.prefix_len);
    router.ip(&["addr", "add", &cidr, "dev", "lan0"]);
    let t1 = lease.renew_at().ok_or("lease without T1")?;
    c.handle_timeout(t1);
    if c.state() != State::Renewing {
        return Err(format!("at T1: state {:?}", c.state()));
    }
    d.exchange(&mut c, t1, "ack", &format!("{server}-ack-renew"))?;
    let lease = bound_lease(&mut c, "after the renew")?;
    let t2 = lease.rebind_at().ok_or("lease without T2")?;
    c.handle_timeout(t2);
    if c.state() != State::Rebinding {
        return Err(format!("at T2: state {:?}", c.state()));
    }
    d.exchange(&mut c, t2, "ack", &format!("{server}-ack-rebind"))?;
    bound_lease(&mut c, "after the rebind")?;
    // Give the lease back, then an INIT-REBOOT for an address of another network.
    c.release(t2);
    while let Some(t) = c.poll_transmit() {
        let d2 = build_ipv4_udp(
            lease.address,
            lease.server_id,
            DHCP_CLIENT_PORT,
            DHCP_SERVER_PORT,
            &t.payload,
        );
        d.sock
            .send(&d2, d.server_mac)
            .map_err(|e| format!("send RELEASE: {e}"))?;
    }
    router.ip(&["addr", "flush", "dev", "lan0"]);
    let mut c = Client::new(config(), randomness::seeded(2));
    c.resume(t2, FOREIGN);
    d.exchange(&mut c, t2, "nak", &format!("{server}-nak"))?;
    Ok(d.captured)
}

fn payload_of<'a>(caps: &'a [Captured], name: &str) -> Result<&'a [u8], String> {
    caps.iter()
        .find(|c| c.name == name)
        .map(|c| c.payload.as_slice())
        .ok_or_else(|| format!("no capture {name}"))
}

/// Advances the scripted client deadline by deadline until `state` (bounded).
fn until_state(b: &mut ScriptBuilder, state: State) -> Result<(), String> {
    for _ in 0..32 {
        if b.sim.client.state() == state {
            return Ok(());
        }
        b.to_deadline();
    }
    Err(format!(
        "scripted client never reached {state:?} (in {:?})",
        b.sim.client.state()
    ))
}

/// Seed scripts for the `dhcp` target from one server's replies.
fn scripts(server: &str, caps: &[Captured]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let p = |what: &str| payload_of(caps, &format!("{server}-{what}")).map(<[u8]>::to_vec);
    let mut out = Vec::new();

    // Bind, renew at T1, rebind at T2, release.
    let mut b = ScriptBuilder::new(1, 0);
    b.op(Op::Start(None))
        .op(Op::Reply(p("offer")?))
        .op(Op::Reply(p("ack")?));
    if b.sim.client.state() != State::Bound {
        return Err(format!("{server}: lifecycle: not bound after the ACK"));
    }
    until_state(&mut b, State::Renewing)?;
    b.op(Op::Reply(p("ack-renew")?));
    until_state(&mut b, State::Rebinding)?;
    b.op(Op::Reply(p("ack-rebind")?)).op(Op::Release);
    if b.stats.bound < 3 {
        return Err(format!(
            "{server}: lifecycle: {} leases bound, not 3",
            b.stats.bound
        ));
    }
    out.push((format!("{server}-lifecycle.script"), b.bytes.clone()));

    // INIT-REBOOT NAKed, then a new lease that runs out.
    let mut b = ScriptBuilder::new(2, 0x20);
    b.op(Op::Start(Some(FOREIGN))).op(Op::Reply(p("nak")?));
    until_state(&mut b, State::Selecting)?;
    b.op(Op::Reply(p("offer")?)).op(Op::Reply(p("ack")?));
    if b.sim.client.state() != State::Bound {
        return Err(format!(
            "{server}: reboot-nak: not bound after the NAK and a new ACK"
        ));
    }
    until_state(&mut b, State::Selecting)?;
    if b.stats.lost < 1 {
        return Err(format!(
            "{server}: reboot-nak: the lease was not lost at expiry"
        ));
    }
    out.push((format!("{server}-reboot-nak.script"), b.bytes.clone()));
    Ok(out)
}

fn clear(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let p = e.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if matches!(
            p.extension().and_then(|x| x.to_str()),
            Some("bin" | "script")
        ) {
            std::fs::remove_file(&p).map_err(|e| format!("{}: {e}", p.display()))?;
        }
    }
    Ok(())
}

fn write(path: PathBuf, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("wrote {} ({} bytes)", path.display(), bytes.len());
    Ok(())
}

pub fn run(out: &Path) -> Result<(), String> {
    let mut all = Vec::new();
    for server in corpus::SERVERS {
        println!("==== {server} ====");
        let mut lan = Lan::new();
        lan.add_router_with_mac(Some("02:42:c0:00:02:32"));
        // Declared after the bed: dropped (killed) before the bed's namespaces go.
        let _server: Box<dyn Any> = match server {
            "dnsmasq" => Box::new(Dnsmasq::start(
                &lan.lan,
                DnsmasqOpts {
                    domain: None,
                    dns_port: 0,
                    ..DnsmasqOpts::default()
                },
            )),
            // Authoritative: a non-authoritative Kea stays silent on an INIT-REBOOT for an
            // address of another network instead of sending the NAK wanted here.
            _ => Box::new(Kea::start(
                &lan.lan,
                KeaOpts {
                    authoritative: true,
                    ..KeaOpts::default()
                },
            )),
        };
        let router = lan.router().clone();
        router.ip(&["link", "set", "lan0", "up"]);
        let caps = router
            .run_in(|| capture(&router, server))
            .map_err(|e| format!("{server}: enter the router namespace: {e}"))??;
        for c in &caps {
            println!(
                "{}: {:?} yiaddr {} from {} ({} bytes)",
                c.name,
                c.reply.message_type,
                c.reply.yiaddr,
                c.reply.server_id,
                c.datagram.len()
            );
        }
        all.push((server, caps));
    }

    let (packet, dhcp, frame) = (out.join("packet"), out.join("dhcp"), out.join("frame"));
    for d in [&packet, &dhcp, &frame] {
        clear(d)?;
    }
    for (server, caps) in &all {
        for c in caps {
            let mut file = vec![0u8];
            file.extend_from_slice(&c.datagram);
            check_packet_file(&file).map_err(|e| format!("{}: {e}", c.name))?;
            write(packet.join(format!("{}.bin", c.name)), &file)?;
        }
        for (name, bytes) in scripts(server, caps)? {
            write(dhcp.join(name), &bytes)?;
        }
    }
    for (i, s) in FrameTarget::new().seeds().iter().enumerate() {
        write(frame.join(format!("seed-{i:02}.bin")), s)?;
    }
    Ok(())
}

/// Writes only the `frame` target's seeds (after a protocol change: they are
/// proto's encoder's output, nothing is captured).
fn frames_only(out: &Path) -> Result<(), String> {
    let frame = out.join("frame");
    clear(&frame)?;
    for (i, s) in FrameTarget::new().seeds().iter().enumerate() {
        write(frame.join(format!("seed-{i:02}.bin")), s)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--frames-only") {
        let out = std::env::args_os()
            .nth(2)
            .map(PathBuf::from)
            .unwrap_or_else(corpus::dir);
        return match frames_only(&out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if !netcontainer_tests::is_root() {
        eprintln!("error: capturing needs root (network namespaces)");
        return ExitCode::from(2);
    }
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(corpus::dir);
    match run(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
