//! Small things real DHCP servers do (issue 23, point 6), each against a real server in
//! namespaces (dnsmasq, ISC Kea; the crafted [`rogue::Responder`] where no real server
//! can be made to do it), judged from the server's lease table and a capture. Root only.
//!
//! * Option 26 (interface MTU): applied to lan0, and the MSS of SYNs crossing the router
//!   is clamped to it (a real TCP connection through a forward, captured on both sides).
//! * Classless static routes (option 121): the routes land in the agent's table and
//!   option 3 is ignored (RFC 3442 section 3).
//! * An unasked option 108 (IPv6-only preferred, RFC 8925) in OFFER and ACK: ignored.
//! * OFFERs and ACKs with the broadcast flag either way, and renewals ACKed by broadcast.
//! * Another process holding UDP port 68 in the router's namespace: renewals still go by
//!   unicast and are ACKed.
//! * A pool of one address: a second agent's apply fails within its wait with a clear
//!   error, the first keeps renewing.

use netcontainer_proto::contract::{self, LAN_IF};
use netcontainer_tests::capture::{self, Capture};
use netcontainer_tests::dhcp::{self, ACK, DISCOVER, OFFER, REQUEST};
use netcontainer_tests::rogue::{self, Request, Responder};
use netcontainer_tests::service;
use netcontainer_tests::*;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(20);
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const MASK24: Ipv4Addr = Ipv4Addr::new(255, 255, 255, 0);
/// What the crafted server hands out.
const YIADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);

use netcontainer_tests::agent::AgentBed as World;

/// The IPv4 routes of the agent's table in `ns`: (destination, gateway) as `ip -j` spells
/// them ("default" or "a.b.c.d/len").
fn table_routes(ns: &Netns) -> Vec<(String, Option<String>)> {
    let out = ns.exec(&[
        "ip",
        "-j",
        "-4",
        "route",
        "show",
        "table",
        &contract::ROUTE_TABLE.to_string(),
    ]);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    v.as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["dst"].as_str().unwrap_or("").to_string(),
                r["gateway"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// Broadcast REQUESTs with ciaddr set (REBINDs) from `mac` in a capture.
fn rebinds(pkts: &[capture::Packet], mac: [u8; 6]) -> Vec<capture::Packet> {
    pkts.iter()
        .filter(|p| {
            p.src_mac == mac
                && p.dst == Ipv4Addr::BROADCAST
                && p.dhcp().is_some_and(|d| {
                    d.msg_type == capture::REQUEST && d.ciaddr != Ipv4Addr::UNSPECIFIED
                })
        })
        .cloned()
        .collect()
}

/// Wait until Kea's expiry for `addr` passes `after`; returns the new expiry.
fn kea_expiry_moves(kea: &Kea, addr: Ipv4Addr, after: u64, within: Duration) -> u64 {
    wait_for(within, POLL, || {
        let e = kea.lease_of(addr)?.expire;
        (e > after).then_some(e)
    })
    .unwrap_or_else(|| {
        panic!(
            "Kea's expiry for {addr} did not move past {after} within {within:?}: {:?}\nrequests {:?}",
            kea.lease_rows(),
            kea.requests()
        )
    })
}

// ---------------------------------------------------------------------------------------
// Option 26

/// The MTU of `ifname` in `ns`.
fn mtu_of(ns: &Netns, ifname: &str) -> u64 {
    let out = ns.exec_ok(&["ip", "-j", "link", "show", ifname]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j link");
    v[0]["mtu"].as_u64().expect("mtu")
}

/// The MSS of the TCP segments with SYN set in a capture, with their source.
fn syn_mss(pkts: &[capture::Packet]) -> Vec<(Ipv4Addr, u8, Option<u16>)> {
    pkts.iter()
        .filter_map(|p| match p.kind {
            capture::Kind::Tcp { flags, mss, .. } if flags & capture::TCP_SYN != 0 => {
                Some((p.src, flags, mss))
            }
            _ => None,
        })
        .collect()
}

/// dnsmasq gives option 26 = 1400 on a LAN whose links, like the service side's, are
/// 1500: lan0 gets MTU 1400, and a real TCP connection from a LAN client through a
/// forward to a service host has its SYN (seen on the service side) and SYN-ACK (seen
/// on the LAN) offer an MSS of at most 1360, where both ends offered 1460.
#[test]
fn option_26_sets_the_lan_mtu_and_clamps_the_mss_both_ways() {
    require_root!();
    let mut lan = Lan::with_router();
    let dnsmasq = Dnsmasq::start(
        &lan.lan,
        DnsmasqOpts {
            extra: vec!["--dhcp-option=26,1400".into()],
            ..DnsmasqOpts::default()
        },
    );
    let client = lan.add_client(10);
    let mut svc = ServiceNet::attach(lan.router());
    let host = svc.add_host(2);
    let _banner = service::BannerServer::start(&host, [8080], "mtu");
    let tmp = TempDir::new("mtu");
    let agent = Agent::start(lan.router(), tmp.path());
    assert_eq!(
        mtu_of(lan.router(), LAN_IF),
        1500,
        "the bed's lan0 starts at 1500"
    );
    let out = agent.apply(
        &ApplyArgs::new(LAN_IF)
            .forward("tcp:80=198.51.100.2:8080")
            .wait(15),
    );
    assert!(out.ok(), "apply failed: {out}");
    let addr = out.address().expect("address");
    assert!(dnsmasq.lease_of(addr).is_some());
    assert!(
        wait_until(5 * S, POLL, || mtu_of(lan.router(), LAN_IF) == 1400),
        "lan0's MTU is {}, not option 26's 1400",
        mtu_of(lan.router(), LAN_IF)
    );
    let lan_cap = Capture::start(&lan.lan, "br0", "tcp port 80");
    let svc_cap = Capture::start(&host, "eth0", "tcp port 8080");
    let got = service::retry(5, S / 2, || service::tcp_fetch(&client, addr, 80, 2 * S));
    assert!(got.as_deref().is_ok_and(|b| b.contains("mtu")), "{got:?}");
    std::thread::sleep(S / 5);
    let lan_syns = syn_mss(&lan_cap.packets());
    let svc_syns = syn_mss(&svc_cap.packets());
    // On the LAN: the client's SYN offers 1460 (its link is 1500), the router's SYN-ACK
    // (from the lease address) at most 1360.
    let client_ip = Ipv4Addr::new(192, 0, 2, 10);
    assert!(
        lan_syns
            .iter()
            .any(|(src, _, m)| *src == client_ip && *m == Some(1460)),
        "{lan_syns:?}"
    );
    let synack_lan: Vec<_> = lan_syns.iter().filter(|(src, _, _)| *src == addr).collect();
    assert!(
        !synack_lan.is_empty(),
        "no SYN-ACK on the LAN: {lan_syns:?}"
    );
    assert!(
        synack_lan
            .iter()
            .all(|(_, _, m)| m.is_some_and(|m| m <= 1360)),
        "SYN-ACK toward the LAN not clamped: {lan_syns:?}"
    );
    // On the service side: the SYN the service host gets offers at most 1360.
    let syn_svc: Vec<_> = svc_syns
        .iter()
        .filter(|(src, _, _)| *src != Ipv4Addr::new(198, 51, 100, 2))
        .collect();
    assert!(
        !syn_svc.is_empty(),
        "no SYN on the service side: {svc_syns:?}"
    );
    assert!(
        syn_svc.iter().all(|(_, _, m)| m.is_some_and(|m| m <= 1360)),
        "SYN toward the service not clamped: {svc_syns:?}"
    );
    drop(agent);
}

// ---------------------------------------------------------------------------------------
// Option 121

/// dnsmasq hands out option 3 (192.0.2.1) and option 121 with a default route via
/// 192.0.2.254 and 198.51.100.0/24 via 192.0.2.1: the agent's table has exactly the
/// classless routes, its default via 192.0.2.254; option 3 is ignored (RFC 3442 section
/// 3: a client that asked for 121 and got it MUST ignore the Router option).
#[test]
fn classless_static_routes_are_installed_and_option_3_is_ignored() {
    require_root!();
    let w = World::new();
    let cap = Capture::start(&w.lan.lan, "br0", "udp port 67 or udp port 68");
    let dnsmasq = Dnsmasq::start(
        &w.lan.lan,
        DnsmasqOpts {
            extra: vec!["--dhcp-option=121,198.51.100.0/24,192.0.2.1,0.0.0.0/0,192.0.2.254".into()],
            ..DnsmasqOpts::default()
        },
    );
    let addr = w.bind();
    assert!(dnsmasq.lease_of(addr).is_some(), "{:?}", dnsmasq.leases());
    // The ACK really carried both options.
    let acks: Vec<_> = cap
        .packets()
        .into_iter()
        .filter_map(|p| p.dhcp().cloned())
        .filter(|d| d.msg_type == capture::ACK)
        .collect();
    assert!(
        acks.iter()
            .any(|d| d.options.contains(&3) && d.options.contains(&121)),
        "no ACK with options 3 and 121: {acks:?}"
    );
    let r = w.lan.router().clone();
    let routes = wait_for(5 * S, POLL, || {
        let t = table_routes(&r);
        t.iter().any(|(d, _)| d == "default").then_some(t)
    })
    .unwrap_or_else(|| {
        panic!(
            "no default route in the agent's table: {:?}",
            table_routes(&r)
        )
    });
    let gw = |dst: &str| {
        routes
            .iter()
            .find(|(d, _)| d == dst)
            .and_then(|(_, g)| g.clone())
    };
    assert_eq!(gw("default").as_deref(), Some("192.0.2.254"), "{routes:?}");
    assert_eq!(
        gw("198.51.100.0/24").as_deref(),
        Some("192.0.2.1"),
        "{routes:?}"
    );
    assert!(
        !routes
            .iter()
            .any(|(d, g)| d == "default" && g.as_deref() == Some("192.0.2.1")),
        "option 3's default route is in the table: {routes:?}"
    );
    let l = w.agent.status().lease.expect("lease");
    assert_eq!(l.gateway, Some(Ipv4Addr::new(192, 0, 2, 254)), "{l:?}");
}

// ---------------------------------------------------------------------------------------
// Option 108

/// dnsmasq forces option 108 (IPv6-only preferred, V6ONLY_WAIT 1800 s) into every reply
/// although the agent never asks for it: RFC 8925 section 3.2, a client that did not put
/// 108 in its parameter request list ignores it. The agent binds the IPv4 lease as usual.
#[test]
fn an_unasked_option_108_is_ignored() {
    require_root!();
    let w = World::new();
    let cap = Capture::start(&w.lan.lan, "br0", "udp port 67 or udp port 68");
    let dnsmasq = Dnsmasq::start(
        &w.lan.lan,
        DnsmasqOpts {
            extra: vec!["--dhcp-option-force=108,00:00:07:08".into()],
            ..DnsmasqOpts::default()
        },
    );
    let addr = w.bind();
    let pkts = cap.packets();
    let replies: Vec<_> = pkts
        .iter()
        .filter_map(|p| p.dhcp().cloned())
        .filter(|d| d.msg_type == capture::OFFER || d.msg_type == capture::ACK)
        .collect();
    assert!(
        replies
            .iter()
            .any(|d| d.msg_type == capture::OFFER && d.options.contains(&108))
            && replies
                .iter()
                .any(|d| d.msg_type == capture::ACK && d.options.contains(&108)),
        "dnsmasq sent no option 108 in OFFER and ACK: {replies:?}"
    );
    let requests: Vec<_> = pkts
        .iter()
        .filter_map(|p| p.dhcp().cloned())
        .filter(|d| d.msg_type == capture::REQUEST)
        .collect();
    assert!(!requests.is_empty());
    let st = w.agent.wait_bound(5 * S);
    assert_eq!(st.lease.as_ref().map(|l| l.address), Some(addr));
    assert_eq!(w.addrs(), vec![(addr, 24)]);
    let dl = dnsmasq.lease_of(addr).expect("dnsmasq has the lease");
    assert_eq!(dl.mac, mac_of(w.lan.router(), LAN_IF));
    assert!(st.last_error.is_none(), "{:?}", st.last_error);
}

// ---------------------------------------------------------------------------------------
// The broadcast flag

/// Kea with a client that sets the broadcast flag (`apply --broadcast`): OFFER and ACK
/// come broadcast; the renewal at T1 is unicast, its ACK unicast too, Kea's expiry moves
/// and no REBIND is broadcast.
#[test]
fn broadcast_flag_set_by_the_client_kea_binds_and_renews() {
    require_root!();
    let w = World::new();
    let cap = Capture::start(&w.lan.lan, "br0", "udp port 67 or udp port 68");
    let kea = Kea::start(&w.lan.lan, KeaOpts::short(6, 2, 4));
    let addr = w.apply(ApplyArgs::new(LAN_IF).broadcast().wait(15));
    let first = kea.lease_of(addr).expect("Kea has the lease").expire;
    let e1 = kea_expiry_moves(&kea, addr, first, 5 * S);
    kea_expiry_moves(&kea, addr, e1, 5 * S);
    let pkts = cap.packets();
    let bcast_replies = pkts
        .iter()
        .filter(|p| {
            p.dst == Ipv4Addr::BROADCAST
                && p.dhcp()
                    .is_some_and(|d| d.msg_type == capture::OFFER || d.msg_type == capture::ACK)
        })
        .count();
    assert!(
        bcast_replies >= 2,
        "Kea did not broadcast OFFER and ACK: {pkts:#?}"
    );
    assert!(rebinds(&pkts, w.mac()).is_empty(), "{pkts:#?}");
    assert_eq!(w.addrs(), vec![(addr, 24)]);
}

/// A crafted server whose every reply (OFFER, ACK, and the ACKs of renewals) carries
/// the broadcast flag `reply_flags` regardless of the request's, delivered by broadcast.
/// The agent binds, renews at T1 by unicast, takes the broadcast ACK, never rebinds.
fn broadcast_flag_case(client_sets: bool, reply_flags: u16) {
    let w = World::new();
    let mac = w.mac();
    let cap = Capture::start(&w.lan.lan, "br0", "udp port 67 or udp port 68");
    let server = Responder::start(&w.lan.lan, "br0", move |req: &Request| {
        let t = match req.msg_type {
            DISCOVER => OFFER,
            REQUEST => ACK,
            _ => return vec![],
        };
        if req.chaddr != mac {
            return vec![];
        }
        let mut r = req
            .reply(t, YIADDR)
            .ip(rogue::OPT_SERVER_ID, SERVER)
            .ip(rogue::OPT_SUBNET_MASK, MASK24)
            .ip(rogue::OPT_ROUTER, SERVER);
        r.options
            .push((rogue::OPT_LEASE_TIME, 6u32.to_be_bytes().to_vec()));
        r.options.push((rogue::OPT_T1, 2u32.to_be_bytes().to_vec()));
        r.options.push((rogue::OPT_T2, 4u32.to_be_bytes().to_vec()));
        r.flags = reply_flags;
        vec![r.encode()]
    });
    let mut args = ApplyArgs::new(LAN_IF).wait(10);
    if client_sets {
        args = args.broadcast();
    }
    let addr = w.apply(args);
    assert_eq!(addr, YIADDR);
    let bound_at = Instant::now();
    // Two renewals (unicast REQUESTs from the address to the server's port 67).
    let renewals = || {
        server
            .seen()
            .into_iter()
            .filter(|r| r.msg_type == REQUEST && r.ciaddr == YIADDR)
            .count()
    };
    assert!(
        wait_until(8 * S, POLL, || renewals() >= 2),
        "no two renewals within 8 s: {:?}",
        server.seen()
    );
    std::thread::sleep(Duration::from_secs(7).saturating_sub(bound_at.elapsed()));
    let pkts = cap.packets();
    let flagged = pkts
        .iter()
        .filter_map(|p| p.dhcp())
        .filter(|d| d.msg_type == capture::ACK && d.broadcast_flag == (reply_flags & 0x8000 != 0))
        .count();
    assert!(
        flagged >= 3,
        "want ACKs with flags {reply_flags:#x}: {pkts:#?}"
    );
    assert!(rebinds(&pkts, mac).is_empty(), "REBINDs: {pkts:#?}");
    // Past the first lease's end (6 s) the address is still there: the ACKs were taken.
    assert_eq!(w.addrs(), vec![(YIADDR, 24)]);
    let st = w.agent.status();
    assert!(
        st.state == "bound" || st.state == "renewing",
        "{}",
        st.state
    );
    assert!(st.last_error.is_none(), "{:?}", st.last_error);
}

#[test]
fn broadcast_flag_set_in_replies_the_client_did_not_ask_for() {
    require_root!();
    broadcast_flag_case(false, 0x8000);
}

#[test]
fn broadcast_flag_cleared_in_replies_the_client_asked_for() {
    require_root!();
    broadcast_flag_case(true, 0);
}

// ---------------------------------------------------------------------------------------
// Port 68

/// Another process (this test) holds UDP 0.0.0.0:68 in the router's namespace, without
/// SO_REUSEADDR (as a plain `socket(); bind()` does), before the agent starts: the agent
/// binds, renews at T1 by unicast (Kea logs a REQUEST from the address to 192.0.2.1) and
/// Kea ACKs (the expiry moves twice); no REBIND on the wire.
#[test]
fn another_socket_on_port_68_does_not_break_renewals() {
    require_root!();
    let lan = Lan::with_router();
    let holder = lan
        .router()
        .run_in(|| UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68)))
        .expect("enter the router namespace")
        .expect("hold 0.0.0.0:68 in the router namespace");
    let tmp = TempDir::new("port68");
    let agent = Agent::start(lan.router(), tmp.path());
    let cap = Capture::start(&lan.lan, "br0", "udp port 67 or udp port 68");
    let kea = Kea::start(&lan.lan, KeaOpts::short(6, 2, 4));
    let out = agent.apply(&ApplyArgs::new(LAN_IF).wait(15));
    assert!(out.ok(), "apply with port 68 taken failed: {out}");
    let addr = out.address().expect("address");
    let first = kea.lease_of(addr).expect("Kea has the lease").expire;
    let e1 = kea_expiry_moves(&kea, addr, first, 5 * S);
    kea_expiry_moves(&kea, addr, e1, 5 * S);
    assert!(
        kea.requests()
            .iter()
            .any(|r| r.from == addr && r.to == SERVER),
        "no unicast renewal: {:?}",
        kea.requests()
    );
    let pkts = cap.packets();
    let mac = dhcp::parse_mac(&mac_of(lan.router(), LAN_IF));
    assert!(rebinds(&pkts, mac).is_empty(), "REBINDs: {pkts:#?}");
    let st = agent.status();
    assert!(st.last_error.is_none(), "{:?}", st.last_error);
    assert_eq!(addr_on(lan.router(), LAN_IF), vec![(addr, 24)]);
    assert!(
        agent.log().contains("another socket holds UDP port 68"),
        "the agent did not say it fell back to the raw IP sender"
    );
    // The other socket is still there, untouched.
    assert_eq!(holder.local_addr().unwrap().port(), 68);
    drop(agent);
}

// ---------------------------------------------------------------------------------------
// A pool of one

/// Kea's pool is one address. The first agent takes it; a second router's apply (wait
/// 5 s) fails within its wait plus a margin, with a one-line error naming the missing
/// lease, and leaves no address on its lan0; the first keeps renewing past that (Kea's
/// expiry for the one address moves, still the first router's MAC).
#[test]
fn a_pool_of_one_second_apply_fails_first_keeps_renewing() {
    require_root!();
    let mut lan = Lan::with_router();
    let second = lan.add_router();
    let tmp = TempDir::new("pool1");
    let first_agent = Agent::start(lan.router(), tmp.path());
    let second_agent = Agent::start(&second, tmp.path());
    let kea = Kea::start(
        &lan.lan,
        KeaOpts {
            pool: "192.0.2.50 - 192.0.2.50".into(),
            ..KeaOpts::short(8, 3, 6)
        },
    );
    let out = first_agent.apply(&ApplyArgs::new(LAN_IF).wait(15));
    assert!(out.ok(), "first apply failed: {out}");
    let addr = out.address().expect("address");
    assert_eq!(addr, Ipv4Addr::new(192, 0, 2, 50));
    let first_mac = mac_of(lan.router(), LAN_IF);

    let out = second_agent.apply(&ApplyArgs::new(LAN_IF).wait(5));
    assert!(
        !out.ok(),
        "second apply succeeded with a pool of one: {out}"
    );
    assert!(
        out.elapsed < Duration::from_secs(5 + 3),
        "second apply took {:?}",
        out.elapsed
    );
    // One line saying what is missing, one hint line naming the likely cause.
    let err = out.stderr.trim();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "not an error and a hint: {err:?}");
    assert!(
        lines[0].starts_with("error: no DHCP lease on lan0 after 5 s"),
        "{err:?}"
    );
    assert!(
        lines[1].starts_with("hint: ") && lines[1].contains("free address"),
        "the hint does not name a full pool: {err:?}"
    );
    assert!(
        addr_on(&second, LAN_IF).is_empty(),
        "{:?}",
        addr_on(&second, LAN_IF)
    );

    // The first keeps renewing: two more expiry moves, same address and MAC.
    let now = kea.lease_of(addr).unwrap().expire;
    let e1 = kea_expiry_moves(&kea, addr, now, 6 * S);
    kea_expiry_moves(&kea, addr, e1, 6 * S);
    let l = kea.lease_of(addr).unwrap();
    assert_eq!(l.hwaddr, first_mac, "{l:?}");
    assert_eq!(kea.active_leases().len(), 1, "{:?}", kea.active_leases());
    assert_eq!(addr_on(lan.router(), LAN_IF), vec![(addr, 24)]);
    eprintln!(
        "pool of one: second apply failed in {:?}: {err}",
        out.elapsed
    );
    drop(second_agent);
    drop(first_agent);
    drop(tmp);
}
