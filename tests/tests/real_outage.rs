//! Real networks (issue 23, points 2 and 3): a DHCP server that goes away, a router
//! restarted while its server is away, a server that forgot its leases, a server moved
//! to another subnet, and options changed at renewal. In network namespaces, against
//! Kea and dnsmasq; judged from a capture of the LAN's DHCP traffic (tcpdump on the
//! LAN bridge), the server's lease table and what the router's namespace holds
//! (address, routes in the agent's table, nftables, conntrack), not from the agent's
//! own status. Root only (`require_root!` skips otherwise, fails under CI).
//!
//! ```text
//!  LAN client 192.0.2.10 ─┐
//!           br0 192.0.2.1 + Kea/dnsmasq ── host eth0 ── macvlan lan0 [router ns, agent]
//!                                                              eth0 198.51.100.1
//!                                                                │ bridge (segment ns)
//!                                          service host 198.51.100.2 (HTTP :8080)
//! ```
//!
//! The forward `tcp:80=198.51.100.2:8080` publishes the service on the lease.

use netcontainer_lease::testing::joined_options;
use netcontainer_proto::contract::{self, LAN_IF};
use netcontainer_tests::service::{self, HttpServer, PeerServer, curl, retry};
use netcontainer_tests::*;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

const S: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(10);
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const SVC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const FORWARD: &str = "tcp:80=198.51.100.2:8080";
const BODY: &str = "hello from the service\n";

const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const ACK: u8 = 5;
const NAK: u8 = 6;

struct World {
    // Field order = drop order: the agent first, the bed last.
    agent: Agent,
    tmp: TempDir,
    _http: HttpServer,
    svc: ServiceNet,
    lan: Lan,
    client: Arc<Netns>,
}

impl World {
    fn new() -> World {
        let mut lan = Lan::with_router();
        let client = lan.add_client(CLIENT.octets()[3]);
        let mut svc = ServiceNet::attach(lan.router());
        let host = svc.add_host(SVC.octets()[3]);
        let http = HttpServer::start(&host, 8080, BODY);
        let tmp = TempDir::new("outage");
        let agent = Agent::start(lan.router(), tmp.path());
        World {
            agent,
            tmp,
            _http: http,
            svc,
            lan,
            client,
        }
    }

    fn router(&self) -> &Arc<Netns> {
        self.lan.router()
    }

    fn service_host(&self) -> &Arc<Netns> {
        &self.svc.hosts[0]
    }

    fn args(&self, gateway: bool) -> ApplyArgs {
        let a = ApplyArgs::new(LAN_IF).forward(FORWARD);
        if gateway {
            a.gateway_for(&SVC.to_string())
        } else {
            a
        }
    }

    /// Applies the forward (and gateway mode) and waits for a lease.
    fn bind(&self, gateway: bool) -> Ipv4Addr {
        let out = self.agent.apply(&self.args(gateway).wait(20));
        assert!(out.ok(), "agent apply failed: {out}");
        out.address()
            .unwrap_or_else(|| panic!("apply printed no address: {out}"))
    }

    /// The LAN client gets the service's page at `addr:80` (2 tries of 2 s).
    fn forward_serves(&self, from: &Netns, addr: Ipv4Addr) -> bool {
        retry(2, Duration::from_millis(200), || curl(from, addr, 80, 2)).is_ok_and(|b| b == BODY)
    }

    /// The agent's nftables table names `addr` (a forward on it).
    fn nft_names(&self, addr: Ipv4Addr) -> bool {
        service::nft_table(self.router())
            .is_some_and(|t| t.to_string().contains(&format!("\"{addr}\"")))
    }

    /// The agent's routing table, as `ip route` prints it.
    fn table(&self) -> String {
        ip(&[
            "-n",
            self.router().name(),
            "route",
            "show",
            "table",
            &contract::ROUTE_TABLE.to_string(),
        ])
    }

    /// `conntrack -L` lines in the router's namespace that name `addr`.
    fn conntrack_of(&self, addr: Ipv4Addr) -> Vec<String> {
        let out = self.router().exec(&["conntrack", "-L", "-f", "ipv4"]);
        let a = addr.to_string();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .any(|w| w.split_once('=').is_some_and(|(_, v)| v == a))
            })
            .map(String::from)
            .collect()
    }

    fn lan_addrs(&self) -> Vec<(Ipv4Addr, u8)> {
        addr_on(self.router(), LAN_IF)
    }
}

/// Waits (bounded) until `addr` is no longer on `lan0`; when it was first seen gone.
fn wait_gone(w: &World, addr: Ipv4Addr, limit: Duration) -> Option<SystemTime> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !has_addr(w.router(), LAN_IF, addr) {
            return Some(SystemTime::now());
        }
        std::thread::sleep(POLL);
    }
    None
}

fn since(t: SystemTime, base: SystemTime) -> f64 {
    match t.duration_since(base) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

// ---------------------------------------------------------------------------------------
// A capture of the LAN's DHCP traffic.

/// One DHCP packet seen on the LAN bridge.
#[derive(Clone, Debug)]
struct Pkt {
    at: SystemTime,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    /// BOOTREPLY (from a server).
    reply: bool,
    mtype: u8,
    xid: u32,
    ciaddr: Ipv4Addr,
    yiaddr: Ipv4Addr,
    /// Option 50.
    requested: Option<Ipv4Addr>,
    /// Option 3, first router.
    router: Option<Ipv4Addr>,
    /// Option 54.
    server_id: Option<Ipv4Addr>,
}

impl Pkt {
    fn is(&self, mtype: u8) -> bool {
        self.mtype == mtype
    }
    /// Sent by a client (BOOTREQUEST).
    fn by_client(&self) -> bool {
        !self.reply
    }
}

/// tcpdump on `br0` of the LAN namespace, writing a pcap file; read at any time.
struct Capture {
    _proc: ProcGuard,
    file: PathBuf,
}

impl Capture {
    fn start(lan: &Netns, dir: &Path) -> Capture {
        let file = dir.join("dhcp.pcap");
        let log = dir.join("tcpdump.log");
        let f = file.display().to_string();
        let proc = lan.spawn_guarded(
            &[
                "tcpdump",
                "-i",
                "br0",
                "-n",
                "-U",
                "--immediate-mode",
                "-s",
                "0",
                "-Z",
                "root",
                "-w",
                &f,
                "udp port 67 or udp port 68",
            ],
            &[],
            Some(&log),
        );
        // tcpdump says so once its filter is attached.
        let ready = wait_until(10 * S, POLL, || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("listening on"))
        });
        assert!(ready, "tcpdump did not start: {}", tail(&log, 10));
        Capture { _proc: proc, file }
    }

    fn packets(&self) -> Vec<Pkt> {
        parse_pcap(&std::fs::read(&self.file).unwrap_or_default())
    }
}

fn ipv4_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// The DHCP packets of a pcap file (Ethernet, microsecond or nanosecond stamps); a
/// record cut short at the end (tcpdump still writing) ends the list.
fn parse_pcap(b: &[u8]) -> Vec<Pkt> {
    let mut out = Vec::new();
    if b.len() < 24 {
        return out;
    }
    let magic = u32::from_le_bytes(b[0..4].try_into().unwrap());
    let nanos = match magic {
        0xa1b2_c3d4 => false,
        0xa1b2_3c4d => true,
        _ => panic!("not a little-endian pcap file: magic {magic:#x}"),
    };
    let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let mut at = 24;
    while at + 16 <= b.len() {
        let (sec, frac, len) = (u32_at(at), u32_at(at + 4), u32_at(at + 8) as usize);
        let frame = at + 16;
        if frame + len > b.len() {
            break;
        }
        at = frame + len;
        let stamp = std::time::UNIX_EPOCH
            + Duration::from_secs(sec.into())
            + if nanos {
                Duration::from_nanos(frac.into())
            } else {
                Duration::from_micros(frac.into())
            };
        let f = &b[frame..frame + len];
        // Ethernet, IPv4, UDP.
        if f.len() < 14 + 20 || f[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &f[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[9] != 17 || ip.len() < ihl + 8 {
            continue;
        }
        let (src, dst) = (ipv4_at(ip, 12), ipv4_at(ip, 16));
        let dhcp = &ip[ihl + 8..];
        if dhcp.len() < 240 {
            continue;
        }
        let Some(opts) = joined_options(dhcp) else {
            continue;
        };
        let opt = |code: u8| {
            opts.iter()
                .find(|(c, _)| *c == code)
                .map(|(_, v)| v.clone())
        };
        let addr = |code: u8| opt(code).filter(|v| v.len() >= 4).map(|v| ipv4_at(&v, 0));
        out.push(Pkt {
            at: stamp,
            src,
            dst,
            reply: dhcp[0] == 2,
            mtype: opt(53).and_then(|v| v.first().copied()).unwrap_or(0),
            xid: u32::from_be_bytes(dhcp[4..8].try_into().unwrap()),
            ciaddr: ipv4_at(dhcp, 12),
            yiaddr: ipv4_at(dhcp, 16),
            requested: addr(50),
            router: addr(3),
            server_id: addr(54),
        });
    }
    out
}

/// When the lease of the last ACK (to `addr`) ends for the client: its time counts
/// from the first REQUEST of that exchange (RFC 2131 4.4.1), `valid` later.
fn lease_end(pk: &[Pkt], addr: Ipv4Addr, valid: Duration) -> SystemTime {
    let ack = pk
        .iter()
        .rev()
        .find(|p| p.reply && p.is(ACK) && p.yiaddr == addr)
        .unwrap_or_else(|| panic!("no ACK of {addr} in the capture: {pk:#?}"));
    let req = pk
        .iter()
        .find(|p| p.by_client() && p.is(REQUEST) && p.xid == ack.xid)
        .expect("the REQUEST of the last ACK");
    req.at + valid
}

// ---------------------------------------------------------------------------------------
// Outages.

/// The server stops: the agent renews (unicast), rebinds (broadcast) and keeps the
/// address until the lease's last moment, not a second before (the kernel's lifetime is
/// rounded up); the last REBIND leaves from an address the router still holds. At the
/// end the address, the lease's routes and the forward all go.
///
/// T2 is 19 s of a 20 s lease, so the last REBIND leaves a second before the end: with
/// the lifetime truncated to whole seconds the kernel could delete the address first.
#[test]
fn server_gone_the_address_lives_to_the_lease_end_then_everything_goes() {
    require_root!();
    let w = World::new();
    let valid = 20 * S;
    let mut kea = Kea::start(&w.lan.lan, KeaOpts::short(20, 5, 19));
    let cap = Capture::start(&w.lan.lan, w.tmp.path());
    let addr = w.bind(false);
    assert!(
        w.forward_serves(&w.client, addr),
        "the forward before the outage"
    );
    assert!(
        w.table().contains(&format!("default via {SERVER}")),
        "{}",
        w.table()
    );

    kea.stop();
    let stopped = SystemTime::now();
    let gone = wait_gone(&w, addr, 30 * S).expect("the address outlived its lease by 10 s");
    let pk = cap.packets();
    let end = lease_end(&pk, addr, valid);
    eprintln!(
        "lease end {:.3} s after the stop, address gone {:+.3} s from it",
        since(end, stopped),
        since(gone, end)
    );
    assert!(
        since(gone, end) > -0.05,
        "the address went {:.3} s before its lease ended",
        -since(gone, end)
    );
    assert!(
        since(gone, end) < 2.5,
        "the address went {:.3} s late",
        since(gone, end)
    );
    let after = |p: &&Pkt| p.by_client() && p.is(REQUEST) && p.at > stopped;
    let renews = pk.iter().filter(after).filter(|p| p.dst == SERVER).count();
    assert!(renews >= 1, "no unicast renew after the stop: {pk:#?}");
    let last = pk
        .iter()
        .filter(after)
        .rfind(|p| p.dst == Ipv4Addr::BROADCAST)
        .unwrap_or_else(|| panic!("no REBIND after the stop: {pk:#?}"));
    assert_eq!(
        (last.src, last.ciaddr),
        (addr, addr),
        "the REBIND is from the address"
    );
    assert!(
        last.at < gone,
        "the last REBIND left {:.3} s after the address went",
        since(last.at, gone)
    );
    assert!(
        pk.iter()
            .filter(after)
            .all(|p| p.src == addr || p.src == Ipv4Addr::UNSPECIFIED),
        "a REQUEST from another source"
    );
    // The lease's routes and forward went with the address.
    assert!(
        wait_until(3 * S, POLL, || !w.nft_names(addr)),
        "the forward on {addr} outlived the lease"
    );
    assert!(
        !w.table().contains(&SERVER.to_string()),
        "routes left: {}",
        w.table()
    );
    // (status follows once the agent's sync is over)
    let st = w.agent.wait_status(2 * S, |s| s.lease.is_none());
    assert!(
        st.is_some(),
        "an expired lease in status: {:?}",
        w.agent.status_json()
    );
    assert!(!w.forward_serves(&w.client, addr));
}

/// The router is killed (kill -9) and started again while its server is away: the
/// restarted agent claims its lease (INIT-REBOOT), hears nothing and uses it until it
/// ends (RFC 2131 3.2): the address and the forward serve, it keeps asking (unicast,
/// then broadcast). At the end everything goes and DISCOVERs follow at a bounded rate;
/// the server back (its lease table kept), the same address returns.
///
/// On the old code the address went ~28 s after the restart (three unanswered
/// INIT-REBOOTs), half a minute before the lease ended, and the forward never came back.
#[test]
fn a_router_restarted_while_its_server_is_down_keeps_its_lease_until_it_ends() {
    require_root!();
    let mut w = World::new();
    let valid = 60 * S;
    let mut kea = Kea::start(&w.lan.lan, KeaOpts::short(60, 20, 45));
    let cap = Capture::start(&w.lan.lan, w.tmp.path());
    let addr = w.bind(false);
    w.agent.wait_persisted(&contract::lease_file(LAN_IF), 5 * S);
    assert!(w.forward_serves(&w.client, addr));
    let end = lease_end(&cap.packets(), addr, valid);

    kea.stop();
    w.agent.kill9();
    let restarted = SystemTime::now();
    w.agent.restart();
    // The plan again (the driver would send it); no lease can come now.
    let _ = w.agent.apply(&w.args(false).wait(1));

    // Past the INIT-REBOOTs (4 + 8 + 16 s, each ±1 s): the lease is in use.
    let used = wait_until(40 * S, 100 * POLL, || {
        w.agent.status().lease.is_some_and(|l| l.address == addr)
    });
    assert!(
        used,
        "the restarted agent does not use its lease: {:?}",
        w.agent.status_json()
    );
    assert!(has_addr(w.router(), LAN_IF, addr), "the address went");
    assert!(
        w.forward_serves(&w.client, addr),
        "the forward does not serve"
    );
    assert!(
        w.table().contains(&format!("default via {SERVER}")),
        "{}",
        w.table()
    );
    let st = w.agent.status();
    assert!(
        ["renewing", "rebinding"].contains(&st.state.as_str()),
        "{}",
        st.state
    );

    let gone = wait_gone(&w, addr, 45 * S).expect("the address outlived its lease");
    assert!(
        since(gone, end) > -1.05,
        "the address went {:.3} s before its lease ended",
        -since(gone, end)
    );
    assert!(
        since(gone, end) < 2.5,
        "the address went {:.3} s late",
        since(gone, end)
    );
    assert!(
        wait_until(3 * S, POLL, || !w.nft_names(addr)),
        "the forward outlived the lease"
    );
    assert!(
        !w.table().contains(&SERVER.to_string()),
        "routes left: {}",
        w.table()
    );

    // DISCOVERs for 30 s after the end: at once, then 4, 8, 16 s apart (±1 s).
    std::thread::sleep(Duration::from_secs(30).saturating_sub(gone.elapsed().unwrap_or_default()));
    let pk = cap.packets();
    let from_restart: Vec<&Pkt> = pk
        .iter()
        .filter(|p| p.by_client() && p.at > restarted)
        .collect();
    let reboots = from_restart
        .iter()
        .filter(|p| p.is(REQUEST) && p.ciaddr.is_unspecified() && p.requested == Some(addr))
        .count();
    assert_eq!(reboots, 3, "INIT-REBOOT REQUESTs: {from_restart:#?}");
    let first_discover = from_restart
        .iter()
        .find(|p| p.is(DISCOVER))
        .expect("no DISCOVER after the end");
    assert!(
        since(first_discover.at, end) > -1.05,
        "a DISCOVER {:.3} s before the lease ended",
        -since(first_discover.at, end)
    );
    assert!(
        from_restart
            .iter()
            .filter(|p| p.is(REQUEST) && p.at < first_discover.at)
            .skip(reboots)
            .all(|p| p.src == addr && p.ciaddr == addr),
        "the kept lease is asked for from its address"
    );
    let window: Vec<&&Pkt> = from_restart
        .iter()
        .filter(|p| p.is(DISCOVER) && since(p.at, end) < 31.0)
        .collect();
    eprintln!("{} DISCOVERs in the 30 s after the end", window.len());
    assert!((3..=5).contains(&window.len()), "DISCOVERs: {window:#?}");
    assert!(
        window.iter().all(|p| p.requested == Some(addr)),
        "DISCOVERs ask for the old address"
    );

    // The server back with its lease table: the same address, at the next DISCOVER.
    kea.restart();
    let st = w.agent.wait_bound(70 * S);
    assert_eq!(st.address(), Some(addr), "another address");
    assert!(
        kea.lease_of(addr).is_some_and(|l| l.is_active()),
        "{:?}",
        kea.leases()
    );
    assert!(w.forward_serves(&w.client, addr));
}

/// What a server restarted with an empty lease table does to a renewal, and that the
/// agent holds a lease the server knows within a bound (T1 + 3 s).
fn forgotten(
    w: &World,
    cap: &Capture,
    addr: Ipv4Addr,
    restarted: SystemTime,
    t1: Duration,
) -> &'static str {
    let answered = |p: &Pkt| p.reply && p.at > restarted && (p.is(ACK) || p.is(NAK));
    // The capture file may lag the server's table by a moment.
    wait_until(3 * S, 10 * POLL, || cap.packets().iter().any(answered));
    let pk = cap.packets();
    let reply = pk
        .iter()
        .find(|p| answered(p))
        .unwrap_or_else(|| panic!("the server never answered: {pk:#?}"));
    let asked = pk
        .iter()
        .rev()
        .find(|p| p.by_client() && p.xid == reply.xid && p.at <= reply.at)
        .expect("the request answered");
    let what = match (asked.mtype, asked.ciaddr == addr, reply.mtype) {
        (REQUEST, true, ACK) => "the renewal ACKed anew",
        (REQUEST, true, NAK) => "the renewal NAKed, then a new DISCOVER",
        _ => panic!("unexpected exchange: {asked:?} -> {reply:?}"),
    };
    assert!(since(reply.at, restarted) < (t1 + 3 * S).as_secs_f64());
    let _ = w;
    what
}

/// Kea restarted without its lease file: the agent's renewal at T1 (unicast) is ACKed
/// anew, the same address, and Kea's table has the lease again.
#[test]
fn kea_restarted_with_no_leases_acks_the_renewal() {
    require_root!();
    let w = World::new();
    let mut kea = Kea::start(&w.lan.lan, KeaOpts::short(30, 6, 20));
    let cap = Capture::start(&w.lan.lan, w.tmp.path());
    let addr = w.bind(false);
    kea.stop();
    std::fs::remove_file(kea.lease_file()).expect("remove Kea's lease file");
    let restarted = SystemTime::now();
    kea.restart();
    assert!(kea.leases().is_empty(), "Kea remembers: {:?}", kea.leases());
    let known = wait_for(9 * S, 10 * POLL, || {
        kea.active_leases().into_iter().find(|l| l.address == addr)
    });
    assert!(
        known.is_some(),
        "Kea has no lease for {addr}: {:?}",
        kea.leases()
    );
    let what = forgotten(&w, &cap, addr, restarted, 6 * S);
    eprintln!("Kea without leases: {what}");
    assert_eq!(what, "the renewal ACKed anew");
    assert_eq!(w.agent.wait_bound(2 * S).address(), Some(addr));
    assert_eq!(w.lan_addrs(), vec![(addr, 24)]);
    assert!(w.forward_serves(&w.client, addr));
}

/// dnsmasq restarted with an empty lease file; returns what happened to the renewal.
/// Within T1 + 3 s the agent holds a lease dnsmasq knows, serving the forward.
fn dnsmasq_forgot(authoritative: bool) -> &'static str {
    let w = World::new();
    let opts = DnsmasqOpts {
        // dnsmasq's shortest lease is 2 min; T1 at 10 s keeps the test short.
        extra: vec![
            "--dhcp-option=option:T1,10".into(),
            "--dhcp-option=option:T2,100".into(),
        ],
        authoritative,
        ..DnsmasqOpts::default()
    };
    let mut dnsmasq = Dnsmasq::start(&w.lan.lan, opts.clone());
    let cap = Capture::start(&w.lan.lan, w.tmp.path());
    let addr = w.bind(false);
    dnsmasq.stop();
    let restarted = SystemTime::now();
    // A fresh directory: no lease file.
    let dnsmasq = Dnsmasq::start(&w.lan.lan, opts);
    assert!(dnsmasq.leases().is_empty());
    let mac = mac_of(w.router(), LAN_IF);
    let known = wait_for(13 * S, 10 * POLL, || {
        dnsmasq
            .leases()
            .into_iter()
            .find(|l| l.mac.eq_ignore_ascii_case(&mac))
    });
    let known = known.unwrap_or_else(|| panic!("dnsmasq has no lease for us: {}", dnsmasq.log()));
    let what = forgotten(&w, &cap, addr, restarted, 10 * S);
    eprintln!(
        "dnsmasq (authoritative: {authoritative}) without leases: {what}; address {} (was {addr})",
        known.address
    );
    let st = w
        .agent
        .wait_status(5 * S, |s| {
            s.address() == Some(known.address) && s.is_bound()
        })
        .unwrap_or_else(|| {
            panic!(
                "the agent is not on dnsmasq's lease: {:?}",
                w.agent.status_json()
            )
        });
    assert_eq!(st.address(), Some(known.address));
    assert_eq!(w.lan_addrs(), vec![(known.address, 24)]);
    assert!(w.forward_serves(&w.client, known.address));
    what
}

/// Authoritative (as a LAN's only server should run), dnsmasq ACKs the renewal anew.
#[test]
fn dnsmasq_restarted_with_no_leases_acks_the_renewal() {
    require_root!();
    assert_eq!(dnsmasq_forgot(true), "the renewal ACKed anew");
}

/// Not authoritative (dnsmasq's default), it NAKs the unicast renewal of a lease it
/// does not know; the agent discovers at once.
#[test]
fn dnsmasq_not_authoritative_restarted_with_no_leases_naks_the_renewal() {
    require_root!();
    assert_eq!(
        dnsmasq_forgot(false),
        "the renewal NAKed, then a new DISCOVER"
    );
}

// ---------------------------------------------------------------------------------------
// Renumbering.

/// A TCP listener on `port` of `ns` that accepts one connection and hands it back.
fn accept_one(ns: &Netns, port: u16) -> std::thread::JoinHandle<Option<TcpStream>> {
    let l = ns
        .run_in(|| TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind"))
        .expect("enter netns");
    std::thread::spawn(move || {
        l.set_nonblocking(true).ok()?;
        let deadline = Instant::now() + 5 * S;
        while Instant::now() < deadline {
            if let Ok((c, _)) = l.accept() {
                c.set_nonblocking(false).ok()?;
                return Some(c);
            }
            std::thread::sleep(POLL);
        }
        None
    })
}

/// What the LAN and the service see of a router at `addr`, in gateway mode: the LAN
/// client (from `from`) gets the page through the forward, and the service's own
/// connection to the LAN host `peer` arrives from `addr` (SNAT).
fn serves_at(w: &World, from: &Netns, addr: Ipv4Addr, peer: Ipv4Addr) -> Result<(), String> {
    if !w.forward_serves(from, addr) {
        return Err(format!("the forward on {addr} does not serve"));
    }
    let seen = curl(w.service_host(), peer, 9000, 2)?;
    let seen: Ipv4Addr = seen
        .trim()
        .rsplit_once(':')
        .and_then(|(a, _)| a.parse().ok())
        .ok_or_else(|| format!("peer answered {seen:?}"))?;
    if seen != addr {
        return Err(format!(
            "the service's connection arrived from {seen}, not {addr}"
        ));
    }
    Ok(())
}

/// The renumbering checks shared by both servers: once the agent holds `new`, the old
/// address is gone from lan0, the forward and the SNAT follow, no tracked flow names the
/// old address, and the established outbound flow opened before is not left hanging.
fn check_renumbered(w: &World, old: Ipv4Addr, new: Ipv4Addr, mut flow: TcpStream) {
    assert_eq!(w.lan_addrs(), vec![(new, 24)], "lan0 after renumbering");
    assert!(!w.nft_names(old), "the old address is still in the ruleset");
    // The LAN client has an address on the new subnet too (the LAN moved).
    let res = wait_for(10 * S, 100 * POLL, || {
        serves_at(w, &w.client, new, CLIENT).ok()
    });
    assert!(res.is_some(), "{:?}", serves_at(w, &w.client, new, CLIENT));
    let left = w.conntrack_of(old);
    assert!(
        left.is_empty(),
        "tracked flows of the old address {old}: {left:#?}"
    );
    // The flow SNATed to the old address: its next segment leaves from the new one
    // (its entry is gone) and the peer refuses it at once, instead of the segment
    // leaving from an address nobody routes back to any more, for days.
    flow.set_read_timeout(Some(5 * S)).unwrap();
    let began = Instant::now();
    let _ = flow.write_all(b"are you there?\n");
    let mut buf = [0u8; 64];
    let r = flow.read(&mut buf);
    eprintln!(
        "the old outbound flow after renumbering: {r:?} after {:?}",
        began.elapsed()
    );
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(0) => {}
        other => panic!(
            "the outbound flow opened before renumbering hangs: {other:?} after {:?}",
            began.elapsed()
        ),
    }
}

/// Sets up gateway mode with the LAN peer, binds, and opens the long-lived outbound
/// flow from the service to the LAN client; returns (lease, flow, peer server).
fn gateway_world(w: &World) -> (Ipv4Addr, TcpStream, PeerServer) {
    let peer = PeerServer::start(&w.client, 9000);
    let old = w.bind(true);
    serves_at(w, &w.client, old, CLIENT).unwrap();
    let accepted = accept_one(&w.client, 9001);
    let flow = w
        .service_host()
        .run_in(|| TcpStream::connect_timeout(&SocketAddr::from((CLIENT, 9001)), 3 * S))
        .unwrap()
        .expect("the service's long-lived connection to the LAN");
    let mut far = accepted.join().unwrap().expect("accepted");
    // Established both ways.
    let mut flow2 = flow.try_clone().unwrap();
    flow2.write_all(b"hi\n").unwrap();
    let mut b = [0u8; 3];
    far.read_exact(&mut b).unwrap();
    // The far end stays open (leaked into the thread-less void on purpose: it must
    // not close the connection before the test looks at it).
    std::mem::forget(far);
    assert!(
        !w.conntrack_of(old).is_empty(),
        "no tracked flow of {old} to flush"
    );
    (old, flow, peer)
}

/// The LAN after renumbering: the server's bridge and the LAN client get addresses on
/// 203.0.113.0/24 too, and the LAN namespace routes between the two subnets (the
/// client's old address stays reachable from the new one).
fn move_the_lan(w: &World) {
    w.client
        .ip(&["addr", "add", "203.0.113.10/24", "dev", "eth0"]);
    service::enable_forwarding(&w.lan.lan);
}

/// Kea moved to 203.0.113.0/24 NAKs the renewal at T1; the agent discovers and takes
/// an address on the new subnet, and everything of the old one follows.
#[test]
fn kea_moved_to_another_subnet_naks_and_everything_follows_the_new_address() {
    require_root!();
    let w = World::new();
    let mut kea = Kea::start(&w.lan.lan, KeaOpts::short(30, 6, 20));
    let cap = Capture::start(&w.lan.lan, w.tmp.path());
    let (old, flow, _peer) = gateway_world(&w);
    move_the_lan(&w);
    let opts = kea.opts().renumbered();
    kea.restart_with(opts);
    let moved = SystemTime::now();
    let new = wait_for(12 * S, POLL, || {
        w.agent
            .status()
            .lease
            .map(|l| l.address)
            .filter(|a| a.octets()[..3] == [203, 0, 113])
    })
    .unwrap_or_else(|| panic!("no lease on 203.0.113.0/24: {:?}", w.agent.status_json()));
    let pk = cap.packets();
    assert!(
        pk.iter().any(|p| p.reply && p.is(NAK) && p.at > moved),
        "Kea sent no NAK: {pk:#?}"
    );
    let st = w.agent.status();
    assert_eq!(
        st.lease.unwrap().gateway,
        Some(Ipv4Addr::new(203, 0, 113, 1))
    );
    assert!(
        w.table().contains("default via 203.0.113.1"),
        "{}",
        w.table()
    );
    check_renumbered(&w, old, new, flow);
}

/// dnsmasq moved to 203.0.113.0/24 ignores the renewal and the rebinding of the old
/// address (the slow path): the agent keeps it to the lease's end, then discovers and
/// takes an address on the new subnet, and everything follows.
#[test]
fn dnsmasq_moved_to_another_subnet_is_the_slow_path_through_expiry() {
    require_root!();
    let w = World::new();
    // Not authoritative (dnsmasq's default): authoritative, it NAKs the renewal
    // ("wrong network") as Kea does.
    let short = |o: DnsmasqOpts| DnsmasqOpts {
        extra: vec![
            "--dhcp-option=option:T1,10".into(),
            "--dhcp-option=option:T2,60".into(),
        ],
        authoritative: false,
        ..o
    };
    let mut dnsmasq = Dnsmasq::start(&w.lan.lan, short(DnsmasqOpts::default()));
    let cap = Capture::start(&w.lan.lan, w.tmp.path());
    let (old, flow, _peer) = gateway_world(&w);
    let end = lease_end(&cap.packets(), old, 120 * S);
    move_the_lan(&w);
    w.lan.add_lan_address("203.0.113.1/24");
    dnsmasq.stop();
    let moved = SystemTime::now();
    let _dnsmasq = Dnsmasq::start(
        &w.lan.lan,
        short(DnsmasqOpts {
            range: (
                Ipv4Addr::new(203, 0, 113, 50),
                Ipv4Addr::new(203, 0, 113, 150),
            ),
            router: Ipv4Addr::new(203, 0, 113, 1),
            ..DnsmasqOpts::default()
        }),
    );
    let limit = Duration::from_secs_f64(since(end, SystemTime::now()).max(0.0)) + 30 * S;
    let new = wait_for(limit, 100 * POLL, || {
        w.agent
            .status()
            .lease
            .map(|l| l.address)
            .filter(|a| a.octets()[..3] == [203, 0, 113])
    })
    .unwrap_or_else(|| panic!("no lease on 203.0.113.0/24: {:?}", w.agent.status_json()));
    let pk = cap.packets();
    // dnsmasq ACKs nothing of the old lease; it NAKs the unicast renewal, but from
    // its new identity (203.0.113.1), which a renewing client ignores (RFC 2131
    // 4.4.5: only its server's NAK counts), and stays silent to the broadcast
    // rebinding.
    let acked_old = pk
        .iter()
        .find(|p| p.reply && p.at > moved && p.is(ACK) && p.yiaddr == old);
    assert!(
        acked_old.is_none(),
        "dnsmasq ACKed the old lease: {acked_old:?}"
    );
    let naks: Vec<&Pkt> = pk
        .iter()
        .filter(|p| p.reply && p.at > moved && p.is(NAK))
        .collect();
    assert!(
        naks.iter()
            .all(|p| p.server_id != Some(SERVER) && since(p.at, end) < 0.0),
        "NAKs: {naks:#?}"
    );
    let answered = |r: &Pkt| pk.iter().any(|a| a.reply && a.xid == r.xid);
    let rebinds: Vec<&Pkt> = pk
        .iter()
        .filter(|p| p.by_client() && p.at > moved && p.is(REQUEST))
        .filter(|p| p.dst == Ipv4Addr::BROADCAST && p.ciaddr == old)
        .collect();
    assert!(
        !rebinds.is_empty() && !rebinds.iter().any(|r| answered(r)),
        "rebinds: {rebinds:#?}"
    );
    let asked = pk
        .iter()
        .filter(|p| p.by_client() && p.at > moved && p.is(REQUEST) && p.ciaddr == old)
        .count();
    assert!(asked >= 2, "renew and rebind of the old lease: {asked}");
    let first_discover = pk
        .iter()
        .find(|p| p.by_client() && p.at > moved && p.is(DISCOVER))
        .expect("a DISCOVER");
    assert!(
        since(first_discover.at, end) > -1.05,
        "a DISCOVER {:.3} s before the old lease ended",
        -since(first_discover.at, end)
    );
    assert!(
        pk.iter().any(|p| p.reply && p.is(OFFER) && p.yiaddr == new),
        "the new address was offered"
    );
    check_renumbered(&w, old, new, flow);
}

/// Options changed at renewal are applied: Kea restarted (its leases kept) with a new
/// router, then with classless static routes (option 121, whose default route then
/// wins over option 3, RFC 3442): each renewal's ACK changes the agent's table.
#[test]
fn options_changed_at_renewal_are_applied() {
    require_root!();
    let w = World::new();
    let base = KeaOpts::short(30, 4, 20);
    let mut kea = Kea::start(&w.lan.lan, base.clone());
    let cap = Capture::start(&w.lan.lan, w.tmp.path());
    let addr = w.bind(false);
    assert!(
        w.table().contains(&format!("default via {SERVER}")),
        "{}",
        w.table()
    );

    // A new router.
    let second = Ipv4Addr::new(192, 0, 2, 2);
    kea.restart_with(KeaOpts {
        gateway: second,
        ..base.clone()
    });
    let changed = SystemTime::now();
    let ok = wait_until(8 * S, 10 * POLL, || {
        w.table().contains(&format!("default via {second}"))
    });
    assert!(ok, "the new router is not in the table: {}", w.table());
    assert!(
        !w.table().contains(&format!("via {SERVER}")),
        "{}",
        w.table()
    );
    let pk = cap.packets();
    let ack = pk
        .iter()
        .find(|p| p.reply && p.is(ACK) && p.at > changed)
        .expect("an ACK after the change");
    assert_eq!(
        (ack.yiaddr, ack.router),
        (addr, Some(second)),
        "a renewal's ACK"
    );
    assert_eq!(w.agent.status().lease.unwrap().gateway, Some(second));

    // Classless static routes: 203.0.113.0/24 via 192.0.2.254 and the default via .2.
    let opt121 = "00c000020218cb0071c00002fe";
    kea.restart_with(KeaOpts {
        gateway: SERVER,
        extra_options: vec![
            serde_json::json!({"code": 121, "space": "dhcp4", "csv-format": false, "data": opt121}),
        ],
        ..base
    });
    let ok = wait_until(8 * S, 10 * POLL, || {
        let t = w.table();
        t.contains("203.0.113.0/24 via 192.0.2.254") && t.contains(&format!("default via {second}"))
    });
    assert!(ok, "option 121 is not in the table: {}", w.table());
    assert!(
        !w.table().contains(&format!("via {SERVER}")),
        "option 3 wins over 121: {}",
        w.table()
    );
    assert_eq!(w.agent.status().address(), Some(addr));
    assert!(w.forward_serves(&w.client, addr));
}
