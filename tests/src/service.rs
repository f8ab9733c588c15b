//! The service side of a router, the routed second LAN, and small servers and clients
//! for the forwarding tests.
//!
//! ```text
//!  LAN client 192.0.2.x ── br0 (LAN ns) ── lan0 = leased  [router ns]  eth0 198.51.100.1/24
//!                           │                                             │ (veth)
//!  gateway ns: eth0 192.0.2.254 ─ eth1 203.0.113.1                        br0 in segment ns "<id>seg"
//!                                   │                                     ├── host 198.51.100.2 (eth0)
//!  routed client ns: eth0 203.0.113.2 (default via 203.0.113.1)          └── host 198.51.100.3 (eth0)
//! ```
//!
//! * [`ServiceNet`]: a segment namespace with a bridge (like Docker's bridge network), the
//!   router's `eth0` = 198.51.100.1/24 on it (`ip_forward=1` in the router namespace), and
//!   service hosts 198.51.100.N/24 whose default route points at the router (so that a
//!   reply path to the LAN exists and only the router's filter stands between the LAN
//!   and the service side).
//! * [`RoutedNet`]: a gateway namespace on the LAN (192.0.2.254) and a client behind it on
//!   203.0.113.0/24.
//! * Servers: [`HttpServer`] (busybox httpd, a process killed by pid on drop),
//!   [`BannerServer`] (TCP: writes one line naming itself and its port, then closes) and
//!   [`UdpEcho`], both threads holding sockets made inside a namespace, stopped on drop.
//! * Clients: [`tcp_fetch`], [`udp_echo`], [`curl`], [`ping`] (bounded, short timeouts).
//! * [`raw_apply`]: an `Apply` request written to the agent's socket by hand, bypassing the
//!   driver's own validation, to see what the agent itself refuses.

use crate::TempDir;
use crate::bed::Lan;
use crate::netns::Netns;
use crate::proc::ProcGuard;
use netcontainer_proto::contract;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The router's address on the service side.
pub const ROUTER_SVC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The LAN gateway of [`RoutedNet`] (handed out as the DHCP router option).
pub const LAN_GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);

/// `sysctl -w net.ipv4.ip_forward=1` inside `ns`.
pub fn enable_forwarding(ns: &Netns) {
    ns.exec_ok(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
}

/// The service side behind a router: a segment namespace with bridge `br0`, the router's
/// `eth0` plugged into it, and service hosts.
pub struct ServiceNet {
    /// Service hosts, in the order added (each with `eth0` = 198.51.100.N/24).
    pub hosts: Vec<Arc<Netns>>,
    /// The segment namespace holding the bridge.
    pub segment: Arc<Netns>,
    ports: u32,
}

impl ServiceNet {
    /// Give `router` an `eth0` = 198.51.100.1/24 on a new segment (namespace
    /// `<router>seg`) and turn on IPv4 forwarding in it. No service host yet.
    pub fn attach(router: &Netns) -> ServiceNet {
        let segment =
            Arc::new(Netns::new(&format!("{}seg", router.name())).expect("create segment netns"));
        crate::bed::add_bridge(&segment, None);
        let mut net = ServiceNet {
            hosts: Vec::new(),
            segment,
            ports: 0,
        };
        net.plug(router, &format!("{}/24", ROUTER_SVC));
        enable_forwarding(router);
        net
    }

    /// A veth from the bridge to `ns` (named `eth0` there, up, with `cidr`).
    fn plug(&mut self, ns: &Netns, cidr: &str) {
        let port = format!("s{}", self.ports);
        self.ports += 1;
        crate::bed::plug(&self.segment, &port, ns, "eth0", Some(cidr));
    }

    /// Add a service host 198.51.100.`last_octet`/24 with its default route via the
    /// router (198.51.100.1).
    pub fn add_host(&mut self, last_octet: u8) -> Arc<Netns> {
        let n = self.hosts.len();
        let ns = Arc::new(
            Netns::new(&format!("{}h{n}", self.segment.name())).expect("create service netns"),
        );
        self.plug(&ns, &format!("198.51.100.{last_octet}/24"));
        ns.ip(&["route", "add", "default", "via", &ROUTER_SVC.to_string()]);
        self.hosts.push(ns.clone());
        ns
    }
}

impl Drop for ServiceNet {
    fn drop(&mut self) {
        // Hosts first (their veth peers go with them), then the segment.
        self.hosts.clear();
    }
}

/// A second LAN behind a gateway on the first: gateway namespace with `eth0` =
/// 192.0.2.254/24 on the LAN bridge and `eth1` = 203.0.113.1/24 to the client namespace
/// (`eth0` = 203.0.113.2/24, default via 203.0.113.1).
pub struct RoutedNet {
    pub client: Arc<Netns>,
    pub gateway: Arc<Netns>,
}

impl RoutedNet {
    pub const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);

    pub fn attach(lan: &mut Lan) -> RoutedNet {
        // A LAN client at .254 is the gateway's LAN leg.
        let gateway = lan.add_client(LAN_GATEWAY.octets()[3]);
        let client = Arc::new(
            Netns::new(&format!("{}rc", gateway.name())).expect("create routed client netns"),
        );
        gateway.ip(&[
            "link",
            "add",
            "eth1",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            client.name(),
        ]);
        gateway.ip(&["addr", "add", "203.0.113.1/24", "dev", "eth1"]);
        gateway.ip(&["link", "set", "eth1", "up"]);
        enable_forwarding(&gateway);
        client.ip(&["addr", "add", "203.0.113.2/24", "dev", "eth0"]);
        client.ip(&["link", "set", "eth0", "up"]);
        client.ip(&["route", "add", "default", "via", "203.0.113.1"]);
        RoutedNet { client, gateway }
    }
}

/// Wait (bounded) until something listens on TCP `port` of `ns` (connect to 127.0.0.1).
pub fn wait_tcp_listening(ns: &Netns, port: u16, timeout: Duration) -> bool {
    crate::wait_until(timeout, Duration::from_millis(10), || {
        ns.run_in(|| {
            TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                Duration::from_millis(200),
            )
            .is_ok()
        })
        .unwrap_or(false)
    })
}

/// busybox httpd serving `index.html` = `body` on `port` in `ns`; killed (by pid) on drop.
pub struct HttpServer {
    proc: ProcGuard,
    _dir: TempDir,
    pub port: u16,
}

impl HttpServer {
    pub fn start(ns: &Netns, port: u16, body: &str) -> HttpServer {
        let dir = TempDir::new("httpd");
        std::fs::write(dir.join("index.html"), body).expect("write index.html");
        let root = dir.path().display().to_string();
        let p = port.to_string();
        let mut proc = ns.spawn_guarded(
            &["busybox", "httpd", "-f", "-p", &p, "-h", &root],
            &[],
            Some(&dir.join("httpd.log")),
        );
        let ok = wait_tcp_listening(ns, port, Duration::from_secs(5));
        assert!(
            ok && proc.running(),
            "busybox httpd on port {port} in {} did not start: {}",
            ns.name(),
            crate::tail(&dir.join("httpd.log"), 10)
        );
        HttpServer {
            proc,
            _dir: dir,
            port,
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

/// A thread serving a socket made inside a namespace, stopped and joined on drop.
struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// TCP servers on `ports` of `ns`: each accepted connection gets one line
/// `"<tag> <port>\n"`, then the server closes it.
pub struct BannerServer {
    _worker: Worker,
}

impl BannerServer {
    pub fn start(ns: &Netns, ports: impl IntoIterator<Item = u16>, tag: &str) -> BannerServer {
        let ports: Vec<u16> = ports.into_iter().collect();
        let listeners: Vec<(u16, TcpListener)> = ns
            .run_in(|| {
                ports
                    .iter()
                    .map(|&p| {
                        let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, p))
                            .unwrap_or_else(|e| panic!("bind tcp {p} in netns: {e}"));
                        l.set_nonblocking(true).unwrap();
                        (p, l)
                    })
                    .collect()
            })
            .expect("enter netns");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let tag = tag.to_string();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let mut idle = true;
                for (port, l) in &listeners {
                    if let Ok((mut c, _)) = l.accept() {
                        idle = false;
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_write_timeout(Some(Duration::from_secs(1)));
                        let _ = c.write_all(format!("{tag} {port}\n").as_bytes());
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        BannerServer {
            _worker: Worker {
                stop,
                thread: Some(thread),
            },
        }
    }
}

/// An HTTP server on `port` of `ns` that answers every request with the
/// client's address and port as it sees them (`ADDR:PORT\n`) and records the
/// client addresses: where a service's own connections come from.
pub struct PeerServer {
    pub seen: Arc<Mutex<Vec<std::net::SocketAddr>>>,
    _worker: Worker,
}

impl PeerServer {
    pub fn start(ns: &Netns, port: u16) -> PeerServer {
        let l = ns
            .run_in(|| {
                let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
                    .unwrap_or_else(|e| panic!("bind tcp {port} in netns: {e}"));
                l.set_nonblocking(true).unwrap();
                l
            })
            .expect("enter netns");
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, log) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((mut c, peer)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                log.lock().unwrap().push(peer);
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_secs(1)));
                let _ = c.set_write_timeout(Some(Duration::from_secs(1)));
                // The request head (bounded), then the answer.
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = format!("{peer}\n");
                let _ = c.write_all(
                    format!(
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        });
        PeerServer {
            seen,
            _worker: Worker {
                stop,
                thread: Some(thread),
            },
        }
    }

    /// The client addresses seen so far.
    pub fn clients(&self) -> Vec<Ipv4Addr> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|a| match a.ip() {
                std::net::IpAddr::V4(v) => Some(v),
                _ => None,
            })
            .collect()
    }
}

/// A UDP echo server on `port` of `ns` (each datagram is sent back to its sender,
/// prefixed with the tag, if any).
pub struct UdpEcho {
    _worker: Worker,
}

impl UdpEcho {
    pub fn start(ns: &Netns, port: u16) -> UdpEcho {
        UdpEcho::tagged(ns, port, "")
    }

    /// Replies `tag` followed by the datagram (tells which server answered).
    pub fn tagged(ns: &Netns, port: u16, tag: &str) -> UdpEcho {
        let sock = ns
            .run_in(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)))
            .expect("enter netns")
            .unwrap_or_else(|e| panic!("bind udp {port} in {}: {e}", ns.name()));
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let tag = tag.as_bytes().to_vec();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let mut reply = tag.clone();
                    reply.extend_from_slice(&buf[..n]);
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        UdpEcho {
            _worker: Worker {
                stop,
                thread: Some(thread),
            },
        }
    }
}

/// A UDP socket made in `ns` (bound to an ephemeral port, connected to `addr:port`), for
/// several exchanges from the same source port (one conntrack entry).
pub fn udp_socket_in(ns: &Netns, addr: Ipv4Addr, port: u16) -> UdpSocket {
    let sock = ns
        .run_in(|| {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            s.connect(SocketAddrV4::new(addr, port))?;
            Ok::<_, std::io::Error>(s)
        })
        .expect("enter netns")
        .unwrap_or_else(|e| panic!("udp socket in {}: {e}", ns.name()));
    sock.set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    sock
}

/// Send `payload` on `sock` and wait for one reply, `attempts` tries.
pub fn udp_exchange(sock: &UdpSocket, payload: &[u8], attempts: u32) -> Result<Vec<u8>, String> {
    let mut last = String::from("no attempt");
    for _ in 0..attempts.max(1) {
        sock.send(payload).map_err(|e| format!("send: {e}"))?;
        let mut buf = [0u8; 2048];
        match sock.recv(&mut buf) {
            Ok(n) => return Ok(buf[..n].to_vec()),
            Err(e) => last = format!("no reply: {e}"),
        }
    }
    Err(last)
}

/// Connect from `ns` to `addr:port` (bounded by `timeout`) and read until the peer closes.
pub fn tcp_fetch(
    ns: &Netns,
    addr: Ipv4Addr,
    port: u16,
    timeout: Duration,
) -> Result<String, String> {
    ns.run_in(|| {
        let to = SocketAddr::V4(SocketAddrV4::new(addr, port));
        let mut s = TcpStream::connect_timeout(&to, timeout).map_err(|e| format!("{to}: {e}"))?;
        s.set_read_timeout(Some(timeout)).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out)
            .map_err(|e| format!("{to}: read: {e}"))?;
        Ok(out)
    })
    .map_err(|e| format!("enter netns: {e}"))?
}

/// Send `payload` from `ns` to `addr:port` over UDP and wait up to `timeout` for a reply
/// from that address; `attempts` tries (UDP may lose the first datagram, e.g. to ARP).
pub fn udp_echo(
    ns: &Netns,
    addr: Ipv4Addr,
    port: u16,
    payload: &[u8],
    timeout: Duration,
    attempts: u32,
) -> Result<Vec<u8>, String> {
    ns.run_in(|| {
        let to = SocketAddrV4::new(addr, port);
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| e.to_string())?;
        sock.connect(to).map_err(|e| format!("{to}: {e}"))?;
        sock.set_read_timeout(Some(timeout)).unwrap();
        let mut last = String::from("no attempt");
        for _ in 0..attempts.max(1) {
            sock.send(payload)
                .map_err(|e| format!("send to {to}: {e}"))?;
            let mut buf = [0u8; 2048];
            match sock.recv(&mut buf) {
                Ok(n) => return Ok(buf[..n].to_vec()),
                Err(e) => last = format!("no reply from {to}: {e}"),
            }
        }
        Err(last)
    })
    .map_err(|e| format!("enter netns: {e}"))?
}

/// `curl -sS --max-time SECS http://addr:port/` from `ns`: Ok(body) or Err(curl's error).
pub fn curl(
    ns: &Netns,
    addr: impl Into<IpAddr>,
    port: u16,
    max_secs: u32,
) -> Result<String, String> {
    curl_path(ns, addr, port, "/", max_secs)
}

/// [`curl`] of `PATH` (an IPv6 address in brackets, as URLs write it).
pub fn curl_path(
    ns: &Netns,
    addr: impl Into<IpAddr>,
    port: u16,
    path: &str,
    max_secs: u32,
) -> Result<String, String> {
    let url = format!("http://{}{path}", SocketAddr::new(addr.into(), port));
    let out = ns
        .command(&[
            "curl",
            "-sS",
            "-g",
            "--noproxy",
            "*",
            "--max-time",
            &max_secs.to_string(),
            &url,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "curl {url} from {}: {} {}",
            ns.name(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// One `busybox ping -c 1 -W secs` from `ns`; true if a reply came.
pub fn ping(ns: &Netns, addr: Ipv4Addr, secs: u32) -> bool {
    ns.command(&[
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        &secs.to_string(),
        &addr.to_string(),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .status()
    .map(|s| s.success())
    .unwrap_or(false)
}

/// `nft -j list table ip netcontainer` in `ns`, parsed; None if the table is absent.
pub fn nft_table(ns: &Netns) -> Option<serde_json::Value> {
    let out = ns.exec(&["nft", "-j", "list", "table", "ip", contract::NFT_TABLE]);
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Table names (any family) in `ns`, from `nft list tables`.
pub fn nft_tables(ns: &Netns) -> Vec<String> {
    let out = ns.exec_ok(&["nft", "list", "tables"]);
    out.lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(String::from))
        .collect()
}

/// `ip rule` lines of `ns` that use routing table `table`.
pub fn ip_rules_for_table(ns: &Netns, table: u32) -> Vec<String> {
    let out = crate::ip(&["-n", ns.name(), "rule", "show"]);
    let t = table.to_string();
    out.lines()
        .filter(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.windows(2)
                .any(|p| p[0] == "lookup" && (p[1] == t || p[1] == format!("{table:#x}")))
        })
        .map(String::from)
        .collect()
}

// ---------------------------------------------------------------------------------------
// A hand-written Apply request (bypasses the driver's validation)
// ---------------------------------------------------------------------------------------

/// One forward for [`raw_apply`]: (udp?, public port, public port end, target, target port).
#[derive(Clone, Copy, Debug)]
pub struct RawForward {
    pub udp: bool,
    pub port: u16,
    pub port_end: u16,
    pub target: Ipv4Addr,
    pub target_port: u16,
}

/// The agent's answer to [`raw_apply`].
#[derive(Clone, Debug, PartialEq)]
pub enum RawResponse {
    /// `Response::Applied` (the status is not decoded).
    Applied,
    /// `Response::Error(text)`.
    Error(String),
    /// Another variant (its index).
    Other(u32),
}

/// bincode 2 "standard" unsigned varint.
fn varint(out: &mut Vec<u8>, v: u64) {
    if v < 251 {
        out.push(v as u8);
    } else if v <= u64::from(u16::MAX) {
        out.push(251);
        out.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v <= u64::from(u32::MAX) {
        out.push(252);
        out.extend_from_slice(&(v as u32).to_le_bytes());
    } else {
        out.push(253);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    match *b.first()? {
        v @ 0..=250 => Some((u64::from(v), 1)),
        251 => Some((
            u64::from(u16::from_le_bytes(b.get(1..3)?.try_into().ok()?)),
            3,
        )),
        252 => Some((
            u64::from(u32::from_le_bytes(b.get(1..5)?.try_into().ok()?)),
            5,
        )),
        253 => Some((u64::from_le_bytes(b.get(1..9)?.try_into().ok()?), 9)),
        _ => None,
    }
}

/// The control protocol's version, which the hand-made frames carry (the frames
/// themselves are written byte by byte, as docs/protocol.md describes them).
pub const PROTOCOL_VERSION: u16 = netcontainer_proto::PROTOCOL_VERSION;

/// Encodes `Request::Apply(Plan { interface, hostname: None, client_id: None,
/// broadcast_flag: false, forwards, source: Masquerade, service: None, ipv6: Off })` as
/// one frame (docs/protocol.md: u32 BE length, u16 BE protocol version, bincode 2
/// standard payload).
pub fn encode_raw_apply(interface: &str, forwards: &[RawForward]) -> Vec<u8> {
    let mut body = PROTOCOL_VERSION.to_be_bytes().to_vec();
    varint(&mut body, 1); // Request::Apply
    varint(&mut body, interface.len() as u64);
    body.extend_from_slice(interface.as_bytes());
    body.push(0); // hostname: None
    body.push(0); // client_id: None
    body.push(0); // broadcast_flag: false
    varint(&mut body, forwards.len() as u64);
    for f in forwards {
        varint(&mut body, u64::from(f.udp)); // Protocol::Tcp = 0, Udp = 1
        varint(&mut body, f.port.into());
        varint(&mut body, f.port_end.into());
        body.extend_from_slice(&f.target.octets());
        varint(&mut body, f.target_port.into());
    }
    body.push(0); // source: SourceMode::Masquerade
    body.push(0); // service: None
    varint(&mut body, 0); // ipv6: Ipv6Mode::Off
    varint(&mut body, 0); // dhcp_servers.allow: empty
    varint(&mut body, 0); // dhcp_servers.deny: empty
    body.push(0); // mdns: None
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// Send a hand-encoded `Apply` to the agent's socket and read one response (bounded).
pub fn raw_apply(
    socket: &Path,
    interface: &str,
    forwards: &[RawForward],
) -> Result<RawResponse, String> {
    let mut s = std::os::unix::net::UnixStream::connect(socket)
        .map_err(|e| format!("connect {}: {e}", socket.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&encode_raw_apply(interface, forwards))
        .map_err(|e| format!("write: {e}"))?;
    let mut hdr = [0u8; 4];
    s.read_exact(&mut hdr).map_err(|e| format!("read: {e}"))?;
    let len = u32::from_be_bytes(hdr) as usize;
    if len > 4 << 20 {
        return Err(format!("response frame of {len} bytes"));
    }
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).map_err(|e| format!("read: {e}"))?;
    if p.get(..2) != Some(&PROTOCOL_VERSION.to_be_bytes()) {
        return Err(format!("unexpected protocol version {:?}", p.get(..2)));
    }
    let (variant, used) = read_varint(&p[2..]).ok_or("bad variant")?;
    let rest = &p[2 + used..];
    Ok(match variant {
        1 => RawResponse::Applied,
        3 => {
            let (n, used) = read_varint(rest).ok_or("bad string length")?;
            let text = rest.get(used..used + n as usize).ok_or("short string")?;
            RawResponse::Error(String::from_utf8_lossy(text).into_owned())
        }
        v => RawResponse::Other(v as u32),
    })
}

/// Run `f` up to `attempts` times, `pause` apart, until it returns Ok; the last result.
pub fn retry<T>(
    attempts: u32,
    pause: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let start = Instant::now();
    let mut last = Err("no attempt".to_string());
    for i in 0..attempts.max(1) {
        last = f();
        if last.is_ok() {
            return last;
        }
        if i + 1 < attempts {
            std::thread::sleep(pause);
        }
    }
    last.map_err(|e| format!("{e} (after {attempts} attempts, {:?})", start.elapsed()))
}

/// Whether `cmd` is on PATH (for a skip message); see [`crate::have`].
pub fn need(tools: &[&str]) -> Result<(), String> {
    let missing: Vec<&&str> = tools.iter().filter(|t| !crate::have(t)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "missing tools {missing:?}: run sudo ./scripts/install-deps"
        ))
    }
}
