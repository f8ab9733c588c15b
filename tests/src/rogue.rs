//! Rogue and crafted DHCP servers for the "dueling / hostile servers" tests.
//!
//! * [`Responder`]: a tiny DHCP server: a UDP socket on port 67 in a namespace (bound to one
//!   device, broadcast allowed), a thread that records every request it sees and answers
//!   through a closure with hand-built replies ([`Reply`]), broadcast to
//!   255.255.255.255:68. Because it listens on port 67 it also sniffs the broadcast
//!   DISCOVERs/REQUESTs of every client on the LAN (their xids), which is how a rogue
//!   answers a REQUEST meant for another server. Messages are read and built with the
//!   lease crate's test helpers, the ones the client's own unit tests and the fuzzers use.
//! * [`IngressDrop`]: an nftables `netdev` ingress table on one device (e.g. the host's
//!   `eth0`, the routers' macvlan parent) that drops chosen DHCP replies before any
//!   router sees them, with a packet counter; deleted on drop.
//! * [`plug`]: attach another namespace to the LAN bridge (e.g. a second server).
//!
//! Only test bed addresses are used; loops are bounded by a stop flag and read timeouts.

use crate::bed::Lan;
use crate::netns::Netns;
pub use netcontainer_lease::testing::Reply;
use netcontainer_lease::testing::{find, options};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const OPT_SUBNET_MASK: u8 = 1;
pub const OPT_ROUTER: u8 = 3;
pub const OPT_DNS: u8 = 6;
pub const OPT_REQUESTED_IP: u8 = 50;
pub const OPT_LEASE_TIME: u8 = 51;
pub const OPT_MSG_TYPE: u8 = 53;
pub const OPT_SERVER_ID: u8 = 54;
pub const OPT_T1: u8 = 58;
pub const OPT_T2: u8 = 59;
pub const OPT_CLIENT_ID: u8 = 61;
pub const OPT_CLASSLESS_ROUTES: u8 = 121;

/// A client message (BOOTREQUEST) as seen by a [`Responder`].
#[derive(Clone, Debug)]
pub struct Request {
    /// DHCP message type (1 DISCOVER, 3 REQUEST, 7 RELEASE, ...).
    pub msg_type: u8,
    pub xid: u32,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    /// Option 50.
    pub requested: Option<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 61.
    pub client_id: Option<Vec<u8>>,
    /// UDP source of the datagram.
    pub src: SocketAddrV4,
    /// When the responder read it.
    pub at: Instant,
}

fn ip4(b: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(b).ok().map(Ipv4Addr::from)
}

/// Parse a BOOTREQUEST with a DHCP message type; anything else is `None`.
pub fn parse_request(p: &[u8], src: SocketAddrV4) -> Option<Request> {
    if p.first() != Some(&1) {
        return None;
    }
    // Empty without the fixed header and the magic cookie: no message type.
    let opts = options(p);
    let find = |code: u8| find(&opts, code);
    let msg_type = *find(OPT_MSG_TYPE)?.first()?;
    Some(Request {
        msg_type,
        xid: u32::from_be_bytes(p[4..8].try_into().unwrap()),
        flags: u16::from_be_bytes([p[10], p[11]]),
        ciaddr: ip4(&p[12..16]).unwrap(),
        chaddr: p[28..34].try_into().unwrap(),
        requested: find(OPT_REQUESTED_IP).and_then(ip4),
        server_id: find(OPT_SERVER_ID).and_then(ip4),
        client_id: find(OPT_CLIENT_ID).map(<[u8]>::to_vec),
        src,
        at: Instant::now(),
    })
}

impl Request {
    /// A reply of `msg_type` to this request (its xid, flags and chaddr) offering
    /// `yiaddr`, with option 53 and no other yet.
    pub fn reply(&self, msg_type: u8, yiaddr: Ipv4Addr) -> Reply {
        let mut r = Reply::new(msg_type, self.xid, self.chaddr, yiaddr);
        r.flags = self.flags;
        r
    }
}

/// What a [`Responder`]'s handler returns: payloads to broadcast to 255.255.255.255:68.
pub type Replies = Vec<Vec<u8>>;

/// A minimal DHCP server: see the module documentation. Dropping it stops the thread.
pub struct Responder {
    sock: Arc<UdpSocket>,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Request>>>,
    sent: Arc<AtomicU32>,
    thread: Option<JoinHandle<()>>,
}

fn bind_to_device(sock: &UdpSocket, ifname: &str) {
    let dev = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: setsockopt with a valid fd and a NUL-terminated device name.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            dev.as_ptr() as *const libc::c_void,
            dev.as_bytes_with_nul().len() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "SO_BINDTODEVICE {ifname}: {}",
        std::io::Error::last_os_error()
    );
}

impl Responder {
    /// Listen on 0.0.0.0:67 on `ifname` in `ns`; `handler` is called for every valid
    /// BOOTREQUEST and its replies are broadcast.
    pub fn start(
        ns: &Netns,
        ifname: &str,
        mut handler: impl FnMut(&Request) -> Replies + Send + 'static,
    ) -> Responder {
        let sock = ns
            .run_in(|| {
                let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67))
                    .expect("bind the responder to port 67");
                bind_to_device(&s, ifname);
                s.set_broadcast(true).unwrap();
                s
            })
            .expect("enter netns");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let sock = Arc::new(sock);
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(AtomicU32::new(0));
        let thread = {
            let (sock, stop, seen, sent) = (sock.clone(), stop.clone(), seen.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let (n, from) = match sock.recv_from(&mut buf) {
                        Ok(x) => x,
                        Err(_) => continue, // timeout: check the stop flag
                    };
                    let std::net::SocketAddr::V4(from) = from else {
                        continue;
                    };
                    let Some(req) = parse_request(&buf[..n], from) else {
                        continue;
                    };
                    let replies = handler(&req);
                    seen.lock().unwrap().push(req);
                    for r in replies {
                        let dst = SocketAddrV4::new(Ipv4Addr::BROADCAST, 68);
                        if sock.send_to(&r, dst).is_ok() {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        };
        Responder {
            sock,
            stop,
            seen,
            sent,
            thread: Some(thread),
        }
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }

    /// Replies sent by the handler so far.
    pub fn sent(&self) -> u32 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Wait (bounded) for a request matching `pred`.
    pub fn wait_request(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&Request) -> bool,
    ) -> Option<Request> {
        crate::wait_for(timeout, Duration::from_millis(10), || {
            self.seen().into_iter().find(|r| pred(r))
        })
    }

    /// Send `payload` from this responder's socket (port 67) to `dst` (port 68 of a bed
    /// address, or the broadcast address).
    pub fn send(&self, payload: &[u8], dst: SocketAddrV4) {
        assert!(
            dst.ip().is_broadcast() || dst.ip().octets()[..3] == [192, 0, 2],
            "responder only sends to the bed's LAN: {dst}"
        );
        self.sock.send_to(payload, dst).expect("send");
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

static TABLE_N: AtomicU32 = AtomicU32::new(0);

/// An nftables `netdev` table with an ingress chain on one device, whose rules drop
/// packets; deleted on drop. Rules are nft rule bodies without the verdict, e.g.
/// `ip saddr 192.0.2.1 udp sport 67` (a `counter drop` is appended).
///
/// On the host's `eth0` (the routers' macvlan parent) this drops frames before any
/// router sees them, whoever sent them and however (Kea and dnsmasq use packet sockets,
/// which `inet` hooks would miss).
pub struct IngressDrop {
    ns: Arc<Netns>,
    table: String,
}

impl IngressDrop {
    pub fn new(ns: &Arc<Netns>, ifname: &str, rules: &[String]) -> IngressDrop {
        let table = format!("ncrogue{}", TABLE_N.fetch_add(1, Ordering::Relaxed));
        let body: String = rules
            .iter()
            .map(|r| format!("    {r} counter drop\n"))
            .collect();
        ns.nft(&format!(
            "table netdev {table} {{\n  chain in {{\n    type filter hook ingress device \"{ifname}\" priority -500; policy accept;\n{body}  }}\n}}\n"
        ));
        IngressDrop {
            ns: ns.clone(),
            table,
        }
    }

    /// Packets dropped so far (all rules).
    pub fn dropped(&self) -> u64 {
        let out = self
            .ns
            .exec(&["nft", "-j", "list", "table", "netdev", &self.table]);
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        let mut n = 0;
        for item in v["nftables"].as_array().into_iter().flatten() {
            for e in item["rule"]["expr"].as_array().into_iter().flatten() {
                if let Some(p) = e["counter"]["packets"].as_u64() {
                    n += p;
                }
            }
        }
        n
    }
}

impl Drop for IngressDrop {
    fn drop(&mut self) {
        let _ = self
            .ns
            .exec(&["nft", "delete", "table", "netdev", &self.table]);
    }
}

/// nft match for "a DHCP reply from server `server`" (UDP source port 67).
pub fn from_server(server: Ipv4Addr) -> String {
    format!("ip saddr {server} udp sport 67")
}

/// nft match for the DHCP message type when option 53 is the first option (as Kea and
/// dnsmasq send it): the 3 bytes after the 8-byte UDP header and the 240-byte BOOTP
/// header + cookie.
pub fn msg_type_first(msg_type: u8) -> String {
    format!("@th,1984,24 0x3501{msg_type:02x}")
}

/// nft match for the DHCP chaddr (the 6 bytes at offset 28 of the BOOTP header).
pub fn chaddr_is(mac: [u8; 6]) -> String {
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("@th,288,48 0x{hex}")
}

static PORT_N: AtomicU32 = AtomicU32::new(0);

/// Attach `ns` to the LAN bridge with a veth named `ifname` inside `ns` (up). Naming it
/// `br0` lets [`crate::Kea`] (which serves `br0`) run unchanged in that namespace, as a
/// second server on the same L2 segment.
pub fn plug(lan: &Lan, ns: &Netns, ifname: &str) {
    let port = format!("rq{}", PORT_N.fetch_add(1, Ordering::Relaxed));
    crate::bed::plug(&lan.lan, &port, ns, ifname, None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_parse_and_reply() {
        let mut req = Reply::new(3, 0x01020304, [2, 0, 0, 0, 0, 1], Ipv4Addr::UNSPECIFIED)
            .ip(OPT_SERVER_ID, Ipv4Addr::new(192, 0, 2, 1))
            .ip(OPT_REQUESTED_IP, Ipv4Addr::new(192, 0, 2, 9));
        req.op = 1;
        req.flags = 0x8000;
        let r = parse_request(&req.encode(), SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)).unwrap();
        assert_eq!((r.msg_type, r.xid, r.flags), (3, 0x01020304, 0x8000));
        assert_eq!(r.server_id, Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(r.requested, Some(Ipv4Addr::new(192, 0, 2, 9)));
        assert_eq!(r.client_id, None);
        let a = r.reply(5, Ipv4Addr::new(192, 0, 2, 9));
        assert_eq!(
            (a.op, a.xid, a.flags, a.chaddr),
            (2, r.xid, r.flags, r.chaddr)
        );
        // A BOOTREPLY, or a message without the magic cookie, is not a request.
        assert!(parse_request(&a.encode(), SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)).is_none());
        let mut nocookie = req.encode();
        nocookie[236] = 0;
        assert!(parse_request(&nocookie, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)).is_none());
        assert_eq!(msg_type_first(5), "@th,1984,24 0x350105");
        assert_eq!(chaddr_is([2, 0, 0, 0, 0, 1]), "@th,288,48 0x020000000001");
    }
}
