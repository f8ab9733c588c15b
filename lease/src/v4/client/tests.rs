//! Unit tests of the DHCP client state machine, on a virtual clock with
//! hand-built server replies.

use std::collections::BTreeMap;

use dhcproto::Decodable;
use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode, UnknownOption};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::randomness::seeded;
use crate::testing::{Reply, insert_raw, joined_options};
use crate::v4::ServerFilter;

const MAC: [u8; 6] = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
const CID: [u8; 7] = [0xff, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05];
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 1);
const SERVER2: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
const ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 50);
const GW: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 254);
const DNS: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 53);
const ZERO: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
const BCAST0: Destination = Destination::Broadcast { src: ZERO };

const DISCOVER: u8 = 1;
const REQUEST: u8 = 3;
const DECLINE: u8 = 4;
const RELEASE: u8 = 7;

fn config() -> Config {
    Config {
        chaddr: MAC,
        client_id: CID.to_vec(),
        hostname: Some("router1".into()),
        broadcast_flag: true,
        request_address: None,
        retry: Retry::default(),
        servers: Default::default(),
    }
}

fn client() -> Client {
    Client::new(config(), seeded(7))
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Options of an encoded message (RFC 3396 concatenation).
fn opts(p: &[u8]) -> BTreeMap<u8, Vec<u8>> {
    joined_options(p)
        .expect("well-formed options")
        .into_iter()
        .collect()
}

fn xid(p: &[u8]) -> u32 {
    u32::from_be_bytes(p[4..8].try_into().unwrap())
}
fn secs_field(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[8], p[9]])
}
fn flags(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[10], p[11]])
}
fn ciaddr(p: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(p[12], p[13], p[14], p[15])
}
fn mtype(p: &[u8]) -> u8 {
    opts(p)[&53][0]
}

/// Checks common to every message the client sends.
fn check_common(t: &Transmit) {
    let p = &t.payload;
    assert!(p.len() >= 300, "padded to 300, got {}", p.len());
    assert_eq!(p[0], 1, "BOOTREQUEST");
    assert_eq!(p[1], 1, "htype Ethernet");
    assert_eq!(p[2], 6, "hlen");
    assert_eq!(p[28..34], MAC, "chaddr");
    assert_eq!(p[34..44], [0; 10], "chaddr padding");
    let o = opts(p);
    assert_eq!(o[&61], CID, "client id in every message");
}

/// DISCOVER and REQUEST options.
fn check_request_options(t: &Transmit, hostname: bool) {
    let o = opts(&t.payload);
    assert_eq!(o[&55], vec![1, 3, 6, 15, 26, 51, 58, 59, 121]);
    assert_eq!(o[&57], vec![0x05, 0xdc]);
    if hostname {
        assert_eq!(o[&12], b"router1");
        let mut fqdn = vec![0x05, 0xff, 0xff, 7];
        fqdn.extend_from_slice(b"router1");
        assert_eq!(o[&81], fqdn, "option 81: E+S, partial wire-format name");
    } else {
        assert!(!o.contains_key(&12) && !o.contains_key(&81));
    }
}

fn tx(c: &mut Client) -> Transmit {
    let t = c.poll_transmit().expect("a packet to send");
    check_common(&t);
    assert!(c.poll_transmit().is_none(), "only one packet expected");
    t
}

fn no_tx(c: &mut Client) {
    assert!(c.poll_transmit().is_none(), "nothing should be sent");
}

fn encode(m: &Reply) -> Vec<u8> {
    m.encode()
}

fn reply_raw(
    to: &[u8],
    mt: MessageType,
    yiaddr: Ipv4Addr,
    server: Option<Ipv4Addr>,
    extra: Vec<DhcpOption>,
) -> Reply {
    Reply::answering(to, mt, yiaddr)
        .server_id(server)
        .dhcp_all(extra)
}

fn reply(to: &Transmit, mt: MessageType, server: Ipv4Addr, extra: Vec<DhcpOption>) -> Vec<u8> {
    encode(&reply_raw(&to.payload, mt, ADDR, Some(server), extra))
}

fn std_opts(lease: u32) -> Vec<DhcpOption> {
    vec![
        DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)),
        DhcpOption::Router(vec![GW, Ipv4Addr::new(192, 168, 1, 253)]),
        DhcpOption::DomainNameServer(vec![DNS]),
        DhcpOption::AddressLeaseTime(lease),
    ]
}

fn offer(to: &Transmit) -> Vec<u8> {
    reply(to, MessageType::Offer, SERVER, std_opts(3600))
}
fn ack(to: &Transmit) -> Vec<u8> {
    reply(to, MessageType::Ack, SERVER, std_opts(3600))
}
fn nak(to: &Transmit, server: Ipv4Addr) -> Vec<u8> {
    reply(to, MessageType::Nak, server, vec![])
}

fn bound_event(c: &mut Client) -> Lease {
    match c.poll_event() {
        Some(Event::Bound(l)) => l,
        other => panic!("expected Bound, got {other:?}"),
    }
}

fn lost_event(c: &mut Client) -> (Lease, LostReason) {
    match c.poll_event() {
        Some(Event::Lost { lease, reason }) => (lease, reason),
        other => panic!("expected Lost, got {other:?}"),
    }
}

/// DISCOVER -> OFFER -> REQUEST; returns the REQUEST.
fn to_requesting(c: &mut Client, t0: Instant) -> Transmit {
    c.start(t0);
    let d = tx(c);
    c.handle_packet(t0, &offer(&d));
    tx(c)
}

/// Bind with the given ACK options at t0; returns the lease.
fn bind_with(c: &mut Client, t0: Instant, ack_opts: Vec<DhcpOption>) -> Lease {
    let r = to_requesting(c, t0);
    c.handle_packet(
        t0 + Duration::from_millis(2),
        &reply(&r, MessageType::Ack, SERVER, ack_opts),
    );
    let l = bound_event(c);
    assert_eq!(c.state(), State::Bound);
    l
}

fn bind(c: &mut Client, t0: Instant) -> Lease {
    bind_with(c, t0, std_opts(3600))
}

fn assert_within(actual: Instant, expected: Instant, tol: Duration) {
    let d = if actual > expected {
        actual - expected
    } else {
        expected - actual
    };
    assert!(d <= tol, "off by {d:?} (tolerance {tol:?})");
}

/// Option 121 payload.
fn opt121(routes: &[(u8, [u8; 4], Ipv4Addr)]) -> DhcpOption {
    let mut data = Vec::new();
    for (len, dest, gw) in routes {
        data.push(*len);
        data.extend_from_slice(&dest[..(*len as usize).div_ceil(8)]);
        data.extend_from_slice(&gw.octets());
    }
    DhcpOption::Unknown(UnknownOption::new(OptionCode::ClasslessStaticRoute, data))
}

// --------------------------------------------------------------------------

#[test]
fn new_client_is_idle() {
    let c = client();
    assert_eq!(c.state(), State::Init);
    assert_eq!(c.poll_timeout(), None);
    assert!(c.lease().is_none());
}

#[test]
fn discover_offer_request_ack_binds() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    assert_eq!(c.state(), State::Selecting);
    let d = tx(&mut c);
    assert_eq!(d.destination, BCAST0);
    assert_eq!(mtype(&d.payload), DISCOVER);
    check_request_options(&d, true);
    assert_eq!(flags(&d.payload), 0x8000, "broadcast flag");
    assert_eq!(ciaddr(&d.payload), ZERO);
    assert_eq!(secs_field(&d.payload), 0);
    let o = opts(&d.payload);
    assert!(!o.contains_key(&50) && !o.contains_key(&54));
    assert_within(c.poll_timeout().unwrap(), t0 + secs(4), secs(1));

    let t1 = t0 + Duration::from_millis(1);
    c.handle_packet(t1, &offer(&d));
    assert_eq!(c.state(), State::Requesting);
    let r = tx(&mut c);
    assert_eq!(r.destination, BCAST0);
    assert_eq!(mtype(&r.payload), REQUEST);
    assert_eq!(
        xid(&r.payload),
        xid(&d.payload),
        "REQUEST keeps the OFFER's xid"
    );
    check_request_options(&r, true);
    assert_eq!(flags(&r.payload), 0x8000);
    assert_eq!(ciaddr(&r.payload), ZERO);
    let o = opts(&r.payload);
    assert_eq!(o[&50], ADDR.octets());
    assert_eq!(o[&54], SERVER.octets());
    assert!(c.poll_event().is_none());

    c.handle_packet(t1 + Duration::from_millis(1), &ack(&r));
    let l = bound_event(&mut c);
    assert!(c.poll_event().is_none());
    no_tx(&mut c);
    assert_eq!(c.state(), State::Bound);
    assert_eq!(l.address, ADDR);
    assert_eq!(l.prefix_len, 24);
    assert_eq!(l.gateway, Some(GW));
    assert!(l.routes.is_empty());
    assert_eq!(l.server_id, SERVER);
    assert_eq!(l.dns, vec![DNS]);
    assert_eq!(l.times.valid, Some(secs(3600)));
    assert_eq!(l.times.t1, Some(secs(1800)));
    assert_eq!(l.times.t2, Some(secs(3150)));
    assert_eq!(l.times.start, t1, "timers count from the REQUEST");
    assert_eq!(c.lease(), Some(&l));
    assert_eq!(c.poll_timeout(), Some(t1 + secs(1800)));
}

#[test]
fn no_broadcast_flag_and_no_hostname_when_not_configured() {
    let t0 = Instant::now();
    let mut c = Client::new(
        Config {
            hostname: None,
            broadcast_flag: false,
            ..config()
        },
        seeded(1),
    );
    c.start(t0);
    let d = tx(&mut c);
    assert_eq!(flags(&d.payload), 0);
    check_request_options(&d, false);
    c.handle_packet(t0, &offer(&d));
    let r = tx(&mut c);
    assert_eq!(flags(&r.payload), 0);
    check_request_options(&r, false);
}

/// ipvlan: every leg has the parent's MAC and cannot receive unicast before
/// it owns its address. Two routers on one parent: the same chaddr, each its
/// own option 61 (the driver's `\0netcontainer:<identity>`), and the broadcast
/// flag on DISCOVER and REQUEST (RFC 2131 section 4.1), dropped once bound.
#[test]
fn ipvlan_legs_share_the_mac_so_they_broadcast_and_identify_by_client_id() {
    let t0 = Instant::now();
    let parent_mac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    // Not `tx`: its common checks pin the default MAC and client id.
    let tx = |c: &mut Client| c.poll_transmit().expect("a packet to send");
    let leg = |identity: &str| {
        let mut id = b"\0netcontainer:".to_vec();
        id.extend_from_slice(identity.as_bytes());
        Client::new(
            Config {
                chaddr: parent_mac,
                client_id: id,
                broadcast_flag: true,
                ..config()
            },
            seeded(3),
        )
    };
    let (mut a, mut b) = (leg("web1"), leg("web2"));
    a.start(t0);
    b.start(t0);
    let (da, db) = (tx(&mut a), tx(&mut b));
    for (d, id) in [
        (&da, &b"\0netcontainer:web1"[..]),
        (&db, b"\0netcontainer:web2"),
    ] {
        assert_eq!(mtype(&d.payload), DISCOVER);
        assert_eq!(d.destination, BCAST0);
        assert_eq!(flags(&d.payload), 0x8000, "broadcast flag on DISCOVER");
        assert_eq!(d.payload[28..34], parent_mac, "chaddr: the shared MAC");
        assert_eq!(opts(&d.payload)[&61], id, "option 61 tells the legs apart");
    }
    a.handle_packet(t0, &offer(&da));
    let r = tx(&mut a);
    assert_eq!(mtype(&r.payload), REQUEST);
    assert_eq!(flags(&r.payload), 0x8000, "broadcast flag on REQUEST");
    assert_eq!(opts(&r.payload)[&61], b"\0netcontainer:web1");
    a.handle_packet(t0, &ack(&r));
    assert_eq!(bound_event(&mut a).address, ADDR);
    // Bound: the address is the leg's own, unicast reaches it; RENEW has no flag.
    a.handle_timeout(t0 + secs(1800));
    let renew = tx(&mut a);
    assert_eq!(mtype(&renew.payload), REQUEST);
    assert_eq!(flags(&renew.payload), 0);
    assert_eq!(opts(&renew.payload)[&61], b"\0netcontainer:web1");
}

#[test]
fn empty_client_id_falls_back_to_mac() {
    let mut c = Client::new(
        Config {
            client_id: vec![],
            ..config()
        },
        seeded(1),
    );
    c.start(Instant::now());
    let d = c.poll_transmit().unwrap();
    assert_eq!(
        opts(&d.payload)[&61],
        [1, 0x02, 0x42, 0xac, 0x11, 0x00, 0x02]
    );
}

#[test]
fn fully_qualified_hostname_keeps_root_label() {
    assert_eq!(
        fqdn_option("r1.example."),
        [
            5, 0xff, 0xff, 2, b'r', b'1', 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 0
        ]
    );
    assert_eq!(
        fqdn_option("r1.lan"),
        [5, 0xff, 0xff, 2, b'r', b'1', 3, b'l', b'a', b'n']
    );
}

#[test]
fn second_offer_ignored_after_selection() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    let d = tx(&mut c);
    c.handle_packet(t0, &offer(&d));
    let _r = tx(&mut c);
    let other = encode(&reply_raw(
        &d.payload,
        MessageType::Offer,
        Ipv4Addr::new(192, 168, 1, 99),
        Some(SERVER2),
        std_opts(60),
    ));
    c.handle_packet(t0, &other);
    no_tx(&mut c);
    assert_eq!(c.state(), State::Requesting);
}

#[test]
fn ack_and_nak_from_non_selected_server_ignored() {
    let t0 = Instant::now();
    let mut c = client();
    let r = to_requesting(&mut c, t0);
    c.handle_packet(t0, &reply(&r, MessageType::Ack, SERVER2, std_opts(3600)));
    c.handle_packet(t0, &nak(&r, SERVER2));
    assert!(c.poll_event().is_none());
    no_tx(&mut c);
    assert_eq!(c.state(), State::Requesting);
    assert_eq!(c.naks(), 0, "an ignored NAK is not counted");
    c.handle_packet(t0, &ack(&r));
    assert_eq!(bound_event(&mut c).server_id, SERVER);
}

#[test]
fn invalid_offers_ignored_and_siaddr_fallback() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    let d = tx(&mut c);
    // yiaddr 0
    let m = reply_raw(
        &d.payload,
        MessageType::Offer,
        ZERO,
        Some(SERVER),
        std_opts(60),
    );
    c.handle_packet(t0, &encode(&m));
    // no server id, siaddr 0
    let m = reply_raw(&d.payload, MessageType::Offer, ADDR, None, std_opts(60));
    c.handle_packet(t0, &encode(&m));
    // broadcast yiaddr
    let m = reply_raw(
        &d.payload,
        MessageType::Offer,
        Ipv4Addr::BROADCAST,
        Some(SERVER),
        vec![],
    );
    c.handle_packet(t0, &encode(&m));
    // an ACK is not an OFFER
    c.handle_packet(t0, &reply(&d, MessageType::Ack, SERVER, std_opts(60)));
    no_tx(&mut c);
    assert_eq!(c.state(), State::Selecting);
    // no server id but siaddr set: accepted, siaddr is the server id
    let mut m = reply_raw(&d.payload, MessageType::Offer, ADDR, None, std_opts(60));
    m.siaddr = SERVER2;
    c.handle_packet(t0, &encode(&m));
    let r = tx(&mut c);
    assert_eq!(opts(&r.payload)[&54], SERVER2.octets());
}

#[test]
fn nak_in_requesting_restarts_discovery_at_once() {
    let t0 = Instant::now();
    let mut c = client();
    let r = to_requesting(&mut c, t0);
    let t1 = t0 + secs(1);
    c.handle_packet(t1, &nak(&r, SERVER));
    assert_eq!(c.state(), State::Selecting);
    assert!(c.poll_event().is_none(), "no lease was held");
    let d = tx(&mut c);
    assert_eq!(mtype(&d.payload), DISCOVER);
    assert_ne!(xid(&d.payload), xid(&r.payload), "new exchange, new xid");
    assert!(!opts(&d.payload).contains_key(&50));
    assert_within(c.poll_timeout().unwrap(), t1 + secs(4), secs(1));
}

#[test]
fn repeated_naks_back_off() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    let mut now = t0;
    for i in 1..=5 {
        let d = tx(&mut c);
        c.handle_packet(now, &offer(&d));
        let r = tx(&mut c);
        c.handle_packet(now, &nak(&r, SERVER));
        if i <= 3 {
            assert_eq!(c.state(), State::Selecting, "NAK {i}: immediate DISCOVER");
        } else {
            assert_eq!(c.state(), State::Init, "NAK {i}: delayed");
            no_tx(&mut c);
            let at = c.poll_timeout().unwrap();
            assert!(at > now && at <= now + secs(64));
            now = at;
            c.handle_timeout(now);
            assert_eq!(c.state(), State::Selecting);
        }
    }
    // A successful bind resets the counter (not the total, for metrics).
    let d = tx(&mut c);
    c.handle_packet(now, &offer(&d));
    let r = tx(&mut c);
    c.handle_packet(now, &ack(&r));
    bound_event(&mut c);
    assert_eq!(c.naks(), 5);
}

#[test]
fn discover_retransmission_schedule() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    let first = tx(&mut c);
    let mut last_sent = t0;
    for (i, base) in [4u64, 8, 16, 32, 64, 64, 64, 64].into_iter().enumerate() {
        let at = c.poll_timeout().unwrap();
        assert_within(at, last_sent + secs(base), secs(1));
        // Early calls do nothing.
        c.handle_timeout(at - Duration::from_millis(1));
        no_tx(&mut c);
        c.handle_timeout(at);
        let d = tx(&mut c);
        assert_eq!(mtype(&d.payload), DISCOVER, "retransmission {i}");
        assert_eq!(
            xid(&d.payload),
            xid(&first.payload),
            "same xid within a cycle"
        );
        assert_eq!(u64::from(secs_field(&d.payload)), (at - t0).as_secs());
        last_sent = at;
    }
    assert_eq!(c.state(), State::Selecting, "DISCOVER retries forever");
}

#[test]
fn jitter_varies_with_seed() {
    let t0 = Instant::now();
    let deadlines: Vec<_> = (0..8)
        .map(|seed| {
            let mut c = Client::new(config(), seeded(seed));
            c.start(t0);
            c.poll_timeout().unwrap()
        })
        .collect();
    assert!(deadlines.iter().any(|d| *d != deadlines[0]));
    for d in deadlines {
        assert_within(d, t0 + secs(4), secs(1));
    }
}

#[test]
fn requesting_gives_up_after_four_retransmissions() {
    let t0 = Instant::now();
    let mut c = client();
    let r = to_requesting(&mut c, t0);
    let mut last = t0;
    for base in [4u64, 8, 16, 32] {
        let at = c.poll_timeout().unwrap();
        assert_within(at, last + secs(base), secs(1));
        c.handle_timeout(at);
        let rr = tx(&mut c);
        assert_eq!(mtype(&rr.payload), REQUEST);
        assert_eq!(xid(&rr.payload), xid(&r.payload));
        assert_eq!(opts(&rr.payload)[&54], SERVER.octets());
        assert_eq!(c.state(), State::Requesting);
        last = at;
    }
    let at = c.poll_timeout().unwrap();
    assert_within(at, last + secs(64), secs(1));
    c.handle_timeout(at);
    assert_eq!(c.state(), State::Selecting);
    let d = tx(&mut c);
    assert_eq!(mtype(&d.payload), DISCOVER);
    assert_ne!(xid(&d.payload), xid(&r.payload));
    assert_eq!(secs_field(&d.payload), 0, "new acquisition attempt");
}

#[test]
fn renew_at_t1_is_unicast_without_50_54() {
    let t0 = Instant::now();
    let mut c = client();
    let l = bind(&mut c, t0);
    let t1 = l.renew_at().unwrap();
    c.handle_timeout(t1 - Duration::from_millis(1));
    no_tx(&mut c);
    assert_eq!(c.state(), State::Bound);
    c.handle_timeout(t1);
    assert_eq!(c.state(), State::Renewing);
    assert!(c.poll_event().is_none());
    let r = tx(&mut c);
    assert_eq!(
        r.destination,
        Destination::Unicast {
            src: ADDR,
            server: SERVER
        }
    );
    assert_eq!(mtype(&r.payload), REQUEST);
    assert_eq!(ciaddr(&r.payload), ADDR);
    assert_eq!(flags(&r.payload), 0, "no broadcast flag once configured");
    let o = opts(&r.payload);
    assert!(!o.contains_key(&50) && !o.contains_key(&54));
    check_request_options(&r, true);
    assert_eq!(c.lease(), Some(&l), "the lease is still in force");

    // Retransmissions: half the time to T2, at least 60 s, never after T2.
    let t2 = l.rebind_at().unwrap();
    let mut now = t1;
    let mut count = 0;
    loop {
        let at = c.poll_timeout().unwrap();
        assert!(at <= t2);
        let expected = (now + ((t2 - now) / 2).max(secs(60))).min(t2);
        assert_eq!(at, expected);
        now = at;
        c.handle_timeout(now);
        let p = tx(&mut c);
        if now == t2 {
            break;
        }
        count += 1;
        assert_eq!(
            xid(&p.payload),
            xid(&r.payload),
            "same xid within the renew episode"
        );
        assert!(matches!(p.destination, Destination::Unicast { .. }));
    }
    assert!(count >= 3);
    assert_eq!(c.state(), State::Rebinding);
}

#[test]
fn renew_ack_extends_lease() {
    let t0 = Instant::now();
    let mut c = client();
    let l = bind(&mut c, t0);
    let t1 = l.renew_at().unwrap();
    c.handle_timeout(t1);
    let r = tx(&mut c);
    let mut o = std_opts(7200);
    o[1] = DhcpOption::Router(vec![Ipv4Addr::new(192, 168, 1, 250)]);
    c.handle_packet(
        t1 + secs(1),
        &reply(&r, MessageType::Ack, SERVER, o.clone()),
    );
    let l2 = bound_event(&mut c);
    assert_eq!(c.state(), State::Bound);
    assert_eq!(l2.times.start, t1);
    assert_eq!(l2.times.valid, Some(secs(7200)));
    assert_eq!(l2.gateway, Some(Ipv4Addr::new(192, 168, 1, 250)));
    assert_eq!(c.poll_timeout(), Some(t1 + secs(3600)));
    // The same ACK again (duplicate) is ignored.
    c.handle_packet(t1 + secs(2), &reply(&r, MessageType::Ack, SERVER, o));
    assert!(c.poll_event().is_none());
    no_tx(&mut c);
}

#[test]
fn renew_ack_may_change_the_address() {
    let t0 = Instant::now();
    let mut c = client();
    let l = bind(&mut c, t0);
    c.handle_timeout(l.renew_at().unwrap());
    let r = tx(&mut c);
    let new = Ipv4Addr::new(192, 168, 1, 77);
    let m = reply_raw(
        &r.payload,
        MessageType::Ack,
        new,
        Some(SERVER),
        std_opts(3600),
    );
    c.handle_packet(l.renew_at().unwrap(), &encode(&m));
    assert_eq!(bound_event(&mut c).address, new);
}

/// Bound -> Renewing -> Rebinding; returns the lease and the first rebind REQUEST.
fn to_rebinding(c: &mut Client, t0: Instant) -> (Lease, Transmit, Transmit) {
    let l = bind(c, t0);
    c.handle_timeout(l.renew_at().unwrap());
    let renew = tx(c);
    while c.state() == State::Renewing {
        c.handle_timeout(c.poll_timeout().unwrap());
        let _ = c.poll_transmit();
    }
    assert_eq!(c.state(), State::Rebinding);
    assert_eq!(
        c.poll_timeout().unwrap() - l.rebind_at().unwrap(),
        secs(225)
    );
    // Trigger one retransmission to look at it.
    let at = c.poll_timeout().unwrap();
    c.handle_timeout(at);
    let p = tx(c);
    (l, renew, p)
}

#[test]
fn rebind_at_t2_is_broadcast_from_lease_address() {
    let t0 = Instant::now();
    let mut c = client();
    let l = bind(&mut c, t0);
    c.handle_timeout(l.renew_at().unwrap());
    let renew = tx(&mut c);
    let t2 = l.rebind_at().unwrap();
    // A late call past T2 goes straight to rebinding.
    c.handle_timeout(t2 + secs(1));
    assert_eq!(c.state(), State::Rebinding);
    let rb = tx(&mut c);
    assert_eq!(rb.destination, Destination::Broadcast { src: ADDR });
    assert_eq!(mtype(&rb.payload), REQUEST);
    assert_eq!(ciaddr(&rb.payload), ADDR);
    let o = opts(&rb.payload);
    assert!(!o.contains_key(&50) && !o.contains_key(&54));
    assert_ne!(
        xid(&rb.payload),
        xid(&renew.payload),
        "new xid for rebinding"
    );
    // Retransmissions never later than expiry.
    let exp = l.expires_at().unwrap();
    let mut last = Some(c.poll_timeout().unwrap());
    while let Some(at) = last {
        if at >= exp {
            break;
        }
        c.handle_timeout(at);
        let p = tx(&mut c);
        assert_eq!(xid(&p.payload), xid(&rb.payload));
        last = c.poll_timeout();
        assert!(last.unwrap() <= exp);
    }
    // An ACK from any server rebinds.
    let m = reply_raw(
        &rb.payload,
        MessageType::Ack,
        ADDR,
        Some(SERVER2),
        std_opts(3600),
    );
    c.handle_packet(exp - secs(1), &encode(&m));
    let l2 = bound_event(&mut c);
    assert_eq!(l2.server_id, SERVER2);
    assert_eq!(c.state(), State::Bound);
}

#[test]
fn bound_late_timeout_past_expiry_expires() {
    let t0 = Instant::now();
    let mut c = client();
    let l = bind(&mut c, t0);
    c.handle_timeout(l.expires_at().unwrap() + secs(5));
    let (lost, reason) = lost_event(&mut c);
    assert_eq!((lost, reason), (l, LostReason::Expired));
    assert_eq!(c.state(), State::Selecting);
    assert_eq!(mtype(&tx(&mut c).payload), DISCOVER);
}

#[test]
fn expiry_loses_lease_then_discovers() {
    let t0 = Instant::now();
    let mut c = client();
    let (l, _, _) = to_rebinding(&mut c, t0);
    let exp = l.expires_at().unwrap();
    while c.state() == State::Rebinding {
        let at = c.poll_timeout().unwrap();
        assert!(at <= exp);
        c.handle_timeout(at);
        if c.state() == State::Rebinding {
            assert!(c.poll_transmit().is_some());
        }
    }
    let (lost, reason) = lost_event(&mut c);
    assert_eq!(reason, LostReason::Expired);
    assert_eq!(lost, l);
    assert!(c.poll_event().is_none());
    assert_eq!(c.state(), State::Selecting);
    assert!(c.lease().is_none());
    let d = tx(&mut c);
    assert_eq!(d.destination, BCAST0);
    assert_eq!(mtype(&d.payload), DISCOVER);
    assert_eq!(ciaddr(&d.payload), ZERO);
    assert_eq!(
        opts(&d.payload)[&50],
        ADDR.octets(),
        "old address as a hint"
    );
    assert_within(c.poll_timeout().unwrap(), exp + secs(4), secs(1));
}

#[test]
fn nak_in_renewing_loses_lease() {
    let t0 = Instant::now();
    let mut c = client();
    let l = bind(&mut c, t0);
    let t1 = l.renew_at().unwrap();
    c.handle_timeout(t1);
    let r = tx(&mut c);
    // Not from our server: ignored.
    c.handle_packet(t1, &nak(&r, SERVER2));
    assert!(c.poll_event().is_none());
    assert_eq!(c.state(), State::Renewing);
    assert_eq!(c.naks(), 0);
    c.handle_packet(t1, &nak(&r, SERVER));
    assert_eq!(lost_event(&mut c), (l, LostReason::Nak));
    assert_eq!(c.naks(), 1);
    assert_eq!(c.state(), State::Selecting);
    let d = tx(&mut c);
    assert_eq!(mtype(&d.payload), DISCOVER);
    assert!(!opts(&d.payload).contains_key(&50));
}

#[test]
fn nak_in_rebinding_from_any_server_loses_lease() {
    let t0 = Instant::now();
    let mut c = client();
    let (l, _, rb) = to_rebinding(&mut c, t0);
    let now = l.rebind_at().unwrap() + secs(230);
    c.handle_packet(now, &nak(&rb, SERVER2));
    assert_eq!(lost_event(&mut c), (l, LostReason::Nak));
    assert_eq!(c.state(), State::Selecting);
    assert_eq!(mtype(&tx(&mut c).payload), DISCOVER);
}

#[test]
fn renew_reply_with_old_xid_ignored_in_rebinding() {
    let t0 = Instant::now();
    let mut c = client();
    let (l, renew, _) = to_rebinding(&mut c, t0);
    c.handle_packet(l.rebind_at().unwrap() + secs(230), &ack(&renew));
    assert!(c.poll_event().is_none());
    assert_eq!(c.state(), State::Rebinding);
}

#[test]
fn init_reboot_success() {
    let t0 = Instant::now();
    let mut c = client();
    c.resume(t0, ADDR);
    assert_eq!(c.state(), State::Rebooting);
    let r = tx(&mut c);
    assert_eq!(r.destination, BCAST0);
    assert_eq!(mtype(&r.payload), REQUEST);
    assert_eq!(ciaddr(&r.payload), ZERO);
    let o = opts(&r.payload);
    assert_eq!(o[&50], ADDR.octets());
    assert!(!o.contains_key(&54), "no server id in INIT-REBOOT");
    check_request_options(&r, true);
    assert_eq!(flags(&r.payload), 0x8000);
    c.handle_packet(t0 + secs(1), &ack(&r));
    let l = bound_event(&mut c);
    assert_eq!(l.address, ADDR);
    assert_eq!(l.server_id, SERVER);
    assert_eq!(l.times.start, t0);
    assert_eq!(c.state(), State::Bound);
}

#[test]
fn init_reboot_nak_discovers() {
    let t0 = Instant::now();
    let mut c = client();
    c.resume(t0, ADDR);
    let r = tx(&mut c);
    c.handle_packet(t0, &nak(&r, SERVER2));
    assert!(c.poll_event().is_none());
    assert_eq!(c.state(), State::Selecting);
    let d = tx(&mut c);
    assert_eq!(mtype(&d.payload), DISCOVER);
    assert!(!opts(&d.payload).contains_key(&50));
}

#[test]
fn init_reboot_timeout_falls_back_to_discover_with_hint() {
    let t0 = Instant::now();
    let mut c = client();
    c.resume(t0, ADDR);
    let r = tx(&mut c);
    let mut last = t0;
    for base in [4u64, 8] {
        let at = c.poll_timeout().unwrap();
        assert_within(at, last + secs(base), secs(1));
        c.handle_timeout(at);
        let rr = tx(&mut c);
        assert_eq!(mtype(&rr.payload), REQUEST);
        assert_eq!(xid(&rr.payload), xid(&r.payload));
        assert_eq!(c.state(), State::Rebooting);
        last = at;
    }
    let at = c.poll_timeout().unwrap();
    assert_within(at, last + secs(16), secs(1));
    c.handle_timeout(at);
    assert_eq!(c.state(), State::Selecting);
    let d = tx(&mut c);
    assert_eq!(mtype(&d.payload), DISCOVER);
    assert_eq!(opts(&d.payload)[&50], ADDR.octets());
    assert!(!opts(&d.payload).contains_key(&54));
    // The hint stays on DISCOVER retransmissions.
    c.handle_timeout(c.poll_timeout().unwrap());
    assert_eq!(opts(&tx(&mut c).payload)[&50], ADDR.octets());
}

#[test]
fn init_reboot_ack_without_lease_time_ignored() {
    let t0 = Instant::now();
    let mut c = client();
    c.resume(t0, ADDR);
    let r = tx(&mut c);
    let mut o = std_opts(0);
    o.pop();
    c.handle_packet(t0, &reply(&r, MessageType::Ack, SERVER, o));
    assert!(c.poll_event().is_none());
    assert_eq!(c.state(), State::Rebooting);
}

#[test]
fn t1_t2_defaults() {
    let d = (Some(secs(1800)), Some(secs(3150)));
    type Case = (
        Option<u32>,
        Option<u32>,
        (Option<Duration>, Option<Duration>),
    );
    let cases: [Case; 9] = [
        (None, None, d),
        (Some(0), Some(0), d),
        (Some(0), None, d),
        (Some(2000), Some(1000), d), // t1 > t2
        (Some(1000), Some(3600), d), // t2 == lease
        (Some(1000), Some(4000), d), // t2 > lease
        (Some(1000), Some(1000), d), // t1 == t2
        (Some(1000), Some(2000), (Some(secs(1000)), Some(secs(2000)))),
        (Some(1000), None, (Some(secs(1000)), Some(secs(3150)))),
    ];
    for (i, (t1, t2, expected)) in cases.into_iter().enumerate() {
        let t0 = Instant::now();
        let mut c = client();
        let mut o = std_opts(3600);
        if let Some(t) = t1 {
            o.push(DhcpOption::Renewal(t));
        }
        if let Some(t) = t2 {
            o.push(DhcpOption::Rebinding(t));
        }
        let l = bind_with(&mut c, t0, o);
        assert_eq!((l.times.t1, l.times.t2), expected, "case {i}");
        assert_eq!(l.times.valid, Some(secs(3600)));
        assert_eq!(c.poll_timeout(), Some(l.times.start + l.times.t1.unwrap()));
    }
}

#[test]
fn infinite_lease_never_times_out() {
    let t0 = Instant::now();
    let mut c = client();
    let mut o = std_opts(u32::MAX);
    o.push(DhcpOption::Renewal(10));
    o.push(DhcpOption::Rebinding(20));
    let l = bind_with(&mut c, t0, o);
    assert_eq!((l.times.valid, l.times.t1, l.times.t2), (None, None, None));
    assert_eq!(c.poll_timeout(), None);
    c.handle_timeout(t0 + secs(10 * 365 * 86400));
    no_tx(&mut c);
    assert!(c.poll_event().is_none());
    assert_eq!(c.state(), State::Bound);
}

#[test]
fn ack_lease_time_missing_uses_offer_value() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    let d = tx(&mut c);
    c.handle_packet(t0, &reply(&d, MessageType::Offer, SERVER, std_opts(600)));
    let r = tx(&mut c);
    let mut o = std_opts(0);
    o.pop();
    c.handle_packet(t0, &reply(&r, MessageType::Ack, SERVER, o));
    assert_eq!(bound_event(&mut c).times.valid, Some(secs(600)));
}

#[test]
fn ack_without_any_lease_time_or_zero_ignored() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    let d = tx(&mut c);
    let mut o = std_opts(0);
    o.pop();
    c.handle_packet(t0, &reply(&d, MessageType::Offer, SERVER, o.clone()));
    let r = tx(&mut c);
    c.handle_packet(t0, &reply(&r, MessageType::Ack, SERVER, o));
    c.handle_packet(t0, &reply(&r, MessageType::Ack, SERVER, std_opts(0)));
    assert!(c.poll_event().is_none());
    assert_eq!(c.state(), State::Requesting);
    c.handle_packet(t0, &ack(&r));
    bound_event(&mut c);
}

#[test]
fn option_121_overrides_option_3() {
    let t0 = Instant::now();
    let mut c = client();
    let mut o = std_opts(3600);
    o.push(opt121(&[
        (16, [10, 10, 0, 0], Ipv4Addr::new(192, 168, 1, 253)),
        (0, [0, 0, 0, 0], Ipv4Addr::new(192, 168, 1, 252)),
        (32, [10, 9, 8, 7], ZERO),
    ]));
    let l = bind_with(&mut c, t0, o);
    assert_eq!(l.gateway, Some(Ipv4Addr::new(192, 168, 1, 252)));
    assert_eq!(
        l.routes,
        vec![
            (
                Ipv4Addr::new(10, 10, 0, 0),
                16,
                Ipv4Addr::new(192, 168, 1, 253)
            ),
            (Ipv4Addr::new(10, 9, 8, 7), 32, ZERO),
        ]
    );

    // 121 without a default route: no gateway at all, option 3 still ignored.
    let mut c = client();
    let mut o = std_opts(3600);
    o.push(opt121(&[(8, [10, 0, 0, 0], GW)]));
    let l = bind_with(&mut c, t0, o);
    assert_eq!(l.gateway, None);
    assert_eq!(l.routes, vec![(Ipv4Addr::new(10, 0, 0, 0), 8, GW)]);
}

#[test]
fn prefix_from_mask_or_classful_default() {
    let t0 = Instant::now();
    let cases: [(Ipv4Addr, Option<Ipv4Addr>, u8); 7] = [
        (ADDR, None, 24),
        (Ipv4Addr::new(10, 1, 2, 3), None, 8),
        (Ipv4Addr::new(172, 16, 0, 9), None, 16),
        (ADDR, Some(Ipv4Addr::new(255, 0, 255, 0)), 24), // non-contiguous
        (Ipv4Addr::new(10, 1, 2, 3), Some(ZERO), 8),     // /0
        (ADDR, Some(Ipv4Addr::BROADCAST), 32),
        (
            Ipv4Addr::new(10, 1, 2, 3),
            Some(Ipv4Addr::new(255, 255, 252, 0)),
            22,
        ),
    ];
    for (addr, mask, prefix) in cases {
        let mut c = client();
        let r = to_requesting(&mut c, t0);
        let mut o = vec![DhcpOption::AddressLeaseTime(3600)];
        if let Some(m) = mask {
            o.push(DhcpOption::SubnetMask(m));
        }
        let m = reply_raw(&r.payload, MessageType::Ack, addr, Some(SERVER), o);
        c.handle_packet(t0, &encode(&m));
        let l = bound_event(&mut c);
        assert_eq!((l.address, l.prefix_len), (addr, prefix), "mask {mask:?}");
        assert_eq!(l.gateway, None);
        assert!(l.dns.is_empty());
    }
}

#[test]
fn release_sends_release_and_stops() {
    let t0 = Instant::now();
    let mut c = client();
    let l = bind(&mut c, t0);
    c.release(t0 + secs(5));
    let r = tx(&mut c);
    assert_eq!(
        r.destination,
        Destination::Unicast {
            src: ADDR,
            server: SERVER
        }
    );
    assert_eq!(mtype(&r.payload), RELEASE);
    assert_eq!(ciaddr(&r.payload), ADDR);
    let o = opts(&r.payload);
    assert_eq!(o[&54], SERVER.octets());
    assert!(!o.contains_key(&50));
    assert_eq!(lost_event(&mut c), (l, LostReason::Released));
    assert_eq!(c.state(), State::Stopped);
    assert_eq!(c.poll_timeout(), None);
    assert!(c.lease().is_none());
}

#[test]
fn release_while_renewing_and_without_lease() {
    let t0 = Instant::now();
    let mut c = client();
    let l = bind(&mut c, t0);
    c.handle_timeout(l.renew_at().unwrap());
    let _ = tx(&mut c);
    c.release(l.renew_at().unwrap());
    assert_eq!(mtype(&tx(&mut c).payload), RELEASE);
    assert_eq!(lost_event(&mut c).1, LostReason::Released);
    assert_eq!(c.state(), State::Stopped);

    let mut c = client();
    c.start(t0);
    let _ = tx(&mut c);
    c.release(t0);
    no_tx(&mut c);
    assert!(c.poll_event().is_none());
    assert_eq!(c.state(), State::Stopped);
    assert_eq!(c.poll_timeout(), None);
    // Stopped ignores everything.
    c.handle_timeout(t0 + secs(100));
    no_tx(&mut c);
}

#[test]
fn decline_sends_decline_and_rediscovers_after_10s() {
    let t0 = Instant::now();
    let mut c = client();
    let l = bind(&mut c, t0);
    let now = t0 + Duration::from_millis(50);
    c.decline(now);
    let d = tx(&mut c);
    assert_eq!(d.destination, BCAST0);
    assert_eq!(mtype(&d.payload), DECLINE);
    assert_eq!(ciaddr(&d.payload), ZERO);
    let o = opts(&d.payload);
    assert_eq!(o[&50], ADDR.octets());
    assert_eq!(o[&54], SERVER.octets());
    assert_eq!(lost_event(&mut c), (l, LostReason::Declined));
    assert_eq!(c.state(), State::Init);
    assert_eq!(c.poll_timeout(), Some(now + secs(10)));
    c.handle_timeout(now + secs(9));
    no_tx(&mut c);
    c.handle_timeout(now + secs(10));
    assert_eq!(c.state(), State::Selecting);
    let dd = tx(&mut c);
    assert_eq!(mtype(&dd.payload), DISCOVER);
    assert!(!opts(&dd.payload).contains_key(&50));
}

#[test]
fn decline_outside_bound_is_noop() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    let _ = tx(&mut c);
    c.decline(t0);
    no_tx(&mut c);
    assert!(c.poll_event().is_none());
    assert_eq!(c.state(), State::Selecting);
}

#[test]
fn decline_while_renewing() {
    let t0 = Instant::now();
    let mut c = client();
    let l = bind(&mut c, t0);
    let t1 = c.poll_timeout().unwrap();
    c.handle_timeout(t1);
    let _renew = tx(&mut c);
    assert_eq!(c.state(), State::Renewing);
    c.decline(t1);
    let d = tx(&mut c);
    assert_eq!(mtype(&d.payload), DECLINE);
    assert_eq!(lost_event(&mut c), (l, LostReason::Declined));
    assert_eq!(c.state(), State::Init);
}

/// `--dhcp-server`: the OFFER of another server is ignored even when it comes
/// first, and so are its ACKs and NAKs.
#[test]
fn allow_list_ignores_other_servers() {
    let t0 = Instant::now();
    let servers = ServerFilter {
        allow: vec![SERVER2],
        deny: vec![],
    };
    let mut c = Client::new(
        Config {
            servers,
            ..config()
        },
        seeded(7),
    );
    c.start(t0);
    let d = tx(&mut c);
    // SERVER answers first, from its own address: ignored.
    c.handle_packet_from(t0, Some(SERVER), &offer(&d));
    no_tx(&mut c);
    assert_eq!(c.state(), State::Selecting);
    // Forging option 54 does not help a server whose source is not listed.
    let forged = reply(&d, MessageType::Offer, SERVER2, std_opts(3600));
    c.handle_packet_from(t0, Some(SERVER), &forged);
    no_tx(&mut c);
    c.handle_packet_from(t0, Some(SERVER2), &forged);
    let r = tx(&mut c);
    assert_eq!(mtype(&r.payload), REQUEST);
    assert_eq!(opts(&r.payload)[&54], SERVER2.octets());
    // A NAK from the other server while requesting: ignored.
    c.handle_packet_from(t0, Some(SERVER), &nak(&r, SERVER));
    assert_eq!(c.state(), State::Requesting);
    c.handle_packet_from(
        t0,
        Some(SERVER2),
        &reply(&r, MessageType::Ack, SERVER2, std_opts(3600)),
    );
    assert_eq!(bound_event(&mut c).server_id, SERVER2);
}

/// `--deny-dhcp-server`: the denied server's OFFER is ignored, judged by
/// option 54 or by the source address.
#[test]
fn deny_list_ignores_the_denied_server() {
    let t0 = Instant::now();
    let servers = ServerFilter {
        allow: vec![],
        deny: vec![SERVER],
    };
    let mut c = Client::new(
        Config {
            servers,
            ..config()
        },
        seeded(7),
    );
    c.start(t0);
    let d = tx(&mut c);
    c.handle_packet_from(t0, None, &offer(&d));
    no_tx(&mut c);
    let other = reply(&d, MessageType::Offer, SERVER2, std_opts(3600));
    c.handle_packet_from(t0, Some(SERVER), &other);
    no_tx(&mut c);
    c.handle_packet(t0, &other);
    let r = tx(&mut c);
    assert_eq!(opts(&r.payload)[&54], SERVER2.octets());
}

#[test]
fn foreign_xid_chaddr_and_bootrequest_ignored() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    let d = tx(&mut c);
    let good = reply_raw(
        &d.payload,
        MessageType::Offer,
        ADDR,
        Some(SERVER),
        std_opts(60),
    );

    let mut m = good.clone();
    m.xid = xid(&d.payload).wrapping_add(1);
    c.handle_packet(t0, &encode(&m));

    let mut m = good.clone();
    m.chaddr = [0x02, 0x42, 0xac, 0x11, 0x00, 0x03];
    c.handle_packet(t0, &encode(&m));

    let mut m = good.clone();
    m.op = 1;
    c.handle_packet(t0, &encode(&m));

    // Our own DISCOVER looped back.
    c.handle_packet(t0, &d.payload);

    // Bad magic cookie.
    let mut bytes = encode(&good);
    bytes[236] = 0;
    c.handle_packet(t0, &bytes);

    no_tx(&mut c);
    assert_eq!(c.state(), State::Selecting);

    // The unmodified one is accepted (hlen 0 is tolerated).
    let mut bytes = encode(&good);
    bytes[2] = 0;
    c.handle_packet(t0, &bytes);
    assert_eq!(c.state(), State::Requesting);
}

#[test]
fn malformed_unneeded_options_do_not_break_a_reply() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    let d = tx(&mut c);
    let mut m = reply_raw(&d.payload, MessageType::Offer, ADDR, Some(SERVER), vec![]);
    // Options that dhcproto debug_assert!s on, with bad lengths, and a bad 119.
    for (code, data) in [
        (81u8, vec![1u8]),
        (80, vec![1, 2]),
        (94, vec![1]),
        (151, vec![]),
        (152, vec![1]),
        (119, vec![0xc0, 0x00]),
    ] {
        m = m.opt(code, data);
    }
    let bytes = m.u32(51, 3600).encode();
    c.handle_packet(t0, &bytes);
    assert_eq!(c.state(), State::Requesting);
    let r = tx(&mut c);
    c.handle_packet(t0, &ack(&r));
    bound_event(&mut c);
}

/// Feed `c` a packet, asserting only that nothing panics and the outputs
/// stay sane.
fn feed(c: &mut Client, now: Instant, p: &[u8]) {
    c.handle_packet(now, p);
    while let Some(t) = c.poll_transmit() {
        assert!(t.payload.len() >= 300);
    }
    while c.poll_event().is_some() {}
    let _ = c.poll_timeout();
    let _ = c.state();
}

/// A client in each interesting state, with the last packet it sent.
fn clients_in_all_states(t0: Instant) -> Vec<(Client, Transmit)> {
    let mut out = Vec::new();
    let mut c = client();
    c.start(t0);
    let d = tx(&mut c);
    out.push((c, d));
    let mut c = client();
    let r = to_requesting(&mut c, t0);
    out.push((c, r));
    let mut c = client();
    c.resume(t0, ADDR);
    let r = tx(&mut c);
    out.push((c, r));
    let mut c = client();
    let l = bind(&mut c, t0);
    c.handle_timeout(l.renew_at().unwrap());
    let r = tx(&mut c);
    out.push((c, r));
    let mut c = client();
    let (_, _, rb) = to_rebinding(&mut c, t0);
    out.push((c, rb));
    out
}

#[test]
fn garbage_never_panics() {
    let t0 = Instant::now();
    let mut rng = StdRng::seed_from_u64(42);
    for (mut c, last) in clients_in_all_states(t0) {
        let now = t0 + secs(1);
        let templates: Vec<Vec<u8>> = [MessageType::Offer, MessageType::Ack, MessageType::Nak]
            .into_iter()
            .map(|mt| {
                let mut o = std_opts(3600);
                o.push(DhcpOption::Renewal(100));
                o.push(DhcpOption::Rebinding(200));
                o.push(opt121(&[(0, [0; 4], GW), (24, [10, 1, 2, 0], GW)]));
                o.push(DhcpOption::DomainName("example.com".into()));
                reply(&last, mt, SERVER, o)
            })
            .collect();
        // Random bytes of every small length, with and without a valid header.
        for len in 0..700 {
            let mut p: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            feed(&mut c, now, &p);
            if len >= 240 {
                p[..240].copy_from_slice(&templates[0][..240]);
                feed(&mut c, now, &p);
            }
        }
        for tpl in &templates {
            // Every truncation.
            for n in 0..tpl.len() {
                feed(&mut c.clone_for_test(), now, &tpl[..n]);
            }
            // Mutations: random byte changes, mostly in the options area.
            for _ in 0..3000 {
                let mut p = tpl.clone();
                let k = rng.random_range(1..8);
                for _ in 0..k {
                    let i = if rng.random_bool(0.8) {
                        rng.random_range(240..p.len())
                    } else {
                        rng.random_range(0..p.len())
                    };
                    p[i] = rng.random();
                }
                if rng.random_bool(0.3) {
                    let cut = rng.random_range(240..p.len());
                    p.truncate(cut);
                }
                if rng.random_bool(0.3) {
                    let extra: Vec<u8> =
                        (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
                    p.extend(extra);
                }
                feed(&mut c.clone_for_test(), now, &p);
            }
        }
        // Random option soup behind a valid header.
        for _ in 0..3000 {
            let mut p = templates[1][..240].to_vec();
            for _ in 0..rng.random_range(0..12) {
                let code: u8 = rng.random();
                let len: u8 = rng.random_range(0..12);
                p.push(code);
                p.push(len);
                p.extend((0..len).map(|_| rng.random::<u8>()));
            }
            if rng.random_bool(0.5) {
                p.push(255);
            }
            feed(&mut c.clone_for_test(), now, &p);
        }
    }
}

#[test]
fn received_messages_decode_through_dhcproto_consistently() {
    // Our DISCOVER decodes with dhcproto (sanity check of the encoder use).
    let mut c = client();
    c.start(Instant::now());
    let d = tx(&mut c);
    let m = Message::decode(&mut dhcproto::Decoder::new(&d.payload)).unwrap();
    assert_eq!(m.xid(), xid(&d.payload));
    assert_eq!(m.opts().msg_type(), Some(MessageType::Discover));
    assert!(m.flags().broadcast());
}

impl Client {
    fn clone_for_test(&self) -> Client {
        Client {
            config: self.config.clone(),
            // A boxed source cannot be cloned; the copy's own numbers only
            // matter for exchanges it starts after the garbage.
            rng: seeded(7),
            phase: self.phase.clone(),
            transmits: self.transmits.clone(),
            events: self.events.clone(),
            consecutive_naks: self.consecutive_naks,
            naks_total: self.naks_total,
        }
    }
}

/// Inserts raw option bytes right after the magic cookie (before every other option).
fn with_leading_options(mut payload: Vec<u8>, raw: &[u8]) -> Vec<u8> {
    insert_raw(&mut payload, 240, raw);
    payload
}

#[test]
fn malformed_option_is_dropped_alone() {
    for bad in [
        &[121u8, 3, 33, 1, 2][..],         // prefix length 33
        &[121, 5, 24, 192, 0, 2, 1][..],   // descriptor cut short
        &[121, 0][..],                     // empty
        &[15, 1, b'x', 121, 2, 8, 10][..], // unneeded option, then a short 121
    ] {
        let mut c = client();
        let t0 = Instant::now();
        let r = to_requesting(&mut c, t0);
        let ack = with_leading_options(reply(&r, MessageType::Ack, SERVER, std_opts(3600)), bad);
        c.handle_packet(t0, &ack);
        let l = bound_event(&mut c);
        assert_eq!(l.prefix_len, 24, "{bad:?}");
        assert_eq!(l.gateway, Some(GW), "{bad:?}: option 3 must be used");
        assert_eq!(l.dns, vec![DNS], "{bad:?}");
        assert_eq!(l.times.valid, Some(secs(3600)), "{bad:?}");
    }
}

#[test]
fn split_option_is_joined() {
    // Option 6 in two instances (RFC 3396): both servers are kept.
    let mut c = client();
    let t0 = Instant::now();
    let r = to_requesting(&mut c, t0);
    let mut opts = std_opts(3600);
    opts.retain(|o| !matches!(o, DhcpOption::DomainNameServer(_)));
    let ack = reply(&r, MessageType::Ack, SERVER, opts);
    let ack = with_leading_options(ack, &[6, 4, 192, 0, 2, 53, 6, 4, 192, 0, 2, 54]);
    c.handle_packet(t0, &ack);
    let l = bound_event(&mut c);
    assert_eq!(
        l.dns,
        vec![Ipv4Addr::new(192, 0, 2, 53), Ipv4Addr::new(192, 0, 2, 54)]
    );
}

#[test]
fn start_asks_for_the_request_address() {
    let mut c = Client::new(
        Config {
            request_address: Some(ADDR),
            ..config()
        },
        seeded(7),
    );
    let t0 = Instant::now();
    c.start(t0);
    let d = tx(&mut c);
    assert_eq!(
        mtype(&d.payload),
        1,
        "a DISCOVER, not an INIT-REBOOT REQUEST"
    );
    assert_eq!(opts(&d.payload)[&50], ADDR.octets().to_vec());
    assert!(!opts(&d.payload).contains_key(&54));
    assert_eq!(c.state(), State::Selecting);
}

#[test]
fn resume_of_an_unusable_address_discovers() {
    let mut c = client();
    let t0 = Instant::now();
    c.resume(t0, ZERO);
    let d = tx(&mut c);
    assert_eq!(mtype(&d.payload), DISCOVER);
    assert!(!opts(&d.payload).contains_key(&50));
    assert_eq!(c.state(), State::Selecting);
}

#[test]
fn retry_settings_are_honoured() {
    let retry = Retry {
        initial: secs(1),
        max: secs(2),
        jitter: Duration::ZERO,
        request_retransmits: 1,
        decline_delay: secs(3),
        ..Retry::default()
    };
    let mut c = Client::new(
        Config {
            retry: retry.clone(),
            ..config()
        },
        seeded(1),
    );
    let t0 = Instant::now();
    c.start(t0);
    let mut d = tx(&mut c);
    // DISCOVER: 1 s, then doubling up to the 2 s cap, without jitter.
    let mut now = t0;
    for gap in [1, 2, 2] {
        assert_eq!(c.poll_timeout(), Some(now + secs(gap)));
        now += secs(gap);
        c.handle_timeout(now);
        d = tx(&mut c);
        assert_eq!(mtype(&d.payload), DISCOVER);
    }
    // REQUEST: one retransmission, then DISCOVER again.
    c.handle_packet(now, &offer(&d));
    let r = tx(&mut c);
    assert_eq!(mtype(&r.payload), REQUEST);
    assert_eq!(c.poll_timeout(), Some(now + secs(1)));
    now += secs(1);
    c.handle_timeout(now);
    assert_eq!(mtype(&tx(&mut c).payload), REQUEST);
    assert_eq!(c.poll_timeout(), Some(now + secs(2)));
    now += secs(2);
    c.handle_timeout(now);
    assert_eq!(c.state(), State::Selecting);
    let d2 = tx(&mut c);
    assert_eq!(mtype(&d2.payload), DISCOVER);
    assert_ne!(xid(&d2.payload), xid(&r.payload));
    // DECLINE: DISCOVER after the configured delay.
    let mut c = Client::new(Config { retry, ..config() }, seeded(1));
    bind(&mut c, t0);
    c.decline(t0);
    let _ = tx(&mut c);
    assert_eq!(c.poll_timeout(), Some(t0 + secs(3)));
}

#[test]
fn stop_keeps_the_lease_no_release_sent() {
    let t0 = Instant::now();
    let mut c = client();
    let l = bind(&mut c, t0);
    c.stop(t0 + secs(1));
    assert_eq!(lost_event(&mut c), (l, LostReason::Kept));
    no_tx(&mut c);
    assert_eq!(c.state(), State::Stopped);
    assert!(c.poll_timeout().is_none());
    // Without a lease: nothing to report.
    let mut d = client();
    d.start(t0);
    let _ = tx(&mut d);
    d.stop(t0);
    assert!(d.poll_event().is_none());
    assert_eq!(d.state(), State::Stopped);
}

/// Option 26 is asked for; a legal MTU (68 or more, RFC 2132 section 5.1)
/// is kept in the lease, a smaller or malformed one is ignored.
#[test]
fn interface_mtu_is_asked_for_and_kept_when_legal() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    let d = tx(&mut c);
    let msg = Message::decode(&mut dhcproto::Decoder::new(&d.payload)).unwrap();
    match msg.opts().get(OptionCode::ParameterRequestList) {
        Some(DhcpOption::ParameterRequestList(l)) => {
            assert!(l.contains(&OptionCode::InterfaceMtu), "{l:?}")
        }
        other => panic!("no parameter request list: {other:?}"),
    }
    let with = |mtu: DhcpOption| {
        let mut o = std_opts(3600);
        o.push(mtu);
        bind_with(&mut client(), t0, o)
    };
    assert_eq!(with(DhcpOption::InterfaceMtu(1400)).mtu, Some(1400));
    assert_eq!(with(DhcpOption::InterfaceMtu(68)).mtu, Some(68));
    assert_eq!(with(DhcpOption::InterfaceMtu(67)).mtu, None);
    let three_bytes = DhcpOption::Unknown(UnknownOption::new(
        OptionCode::InterfaceMtu,
        vec![5, 120, 0],
    ));
    assert_eq!(with(three_bytes).mtu, None);
    assert_eq!(bind(&mut client(), t0).mtu, None);
}

/// The lease a restarted shell read from its store: 600 s left, renew
/// after 100 s, rebind after 400 s, all counted from `t0`.
fn kept_lease(t0: Instant) -> Lease {
    Lease {
        address: ADDR,
        prefix_len: 24,
        gateway: Some(GW),
        routes: vec![],
        server_id: SERVER,
        dns: vec![DNS],
        mtu: None,
        times: crate::timers::LeaseTimes {
            start: t0,
            t1: Some(secs(100)),
            t2: Some(secs(400)),
            valid: Some(secs(600)),
            preferred: Some(secs(600)),
        },
    }
}

/// Runs the client's timers from its current deadline up to `until`,
/// returning every packet sent with when it was sent.
fn run_until(c: &mut Client, until: Instant) -> Vec<(Instant, Transmit)> {
    let mut sent = Vec::new();
    for _ in 0..10_000 {
        let Some(at) = c.poll_timeout().filter(|at| *at <= until) else {
            break;
        };
        c.handle_timeout(at);
        while let Some(t) = c.poll_transmit() {
            sent.push((at, t));
        }
    }
    sent
}

/// RFC 2131 3.2: a restarted client whose INIT-REBOOT nobody answers uses
/// its unexpired lease until it ends (it used to drop it after the third
/// unanswered REQUEST and discover), renews and rebinds it on its own
/// timers, and only at its end loses it and discovers, at a bounded rate.
#[test]
fn unanswered_init_reboot_keeps_the_unexpired_lease_until_it_ends() {
    let t0 = Instant::now();
    let mut c = client();
    let kept = kept_lease(t0);
    c.resume_lease(t0, kept.clone());
    assert_eq!(c.state(), State::Rebooting);
    let r = tx(&mut c);
    assert_eq!((mtype(&r.payload), ciaddr(&r.payload)), (REQUEST, ZERO));
    assert_eq!(opts(&r.payload)[&50], ADDR.octets());
    assert!(
        c.poll_event().is_none(),
        "not used before INIT-REBOOT gives up"
    );

    // Two retransmissions (4 s, 8 s), then the third deadline: the lease is used.
    let sent = run_until(&mut c, t0 + secs(40));
    let reboots: Vec<_> = sent
        .iter()
        .filter(|(_, t)| ciaddr(&t.payload) == ZERO)
        .collect();
    assert_eq!(reboots.len(), 2, "INIT-REBOOT retransmissions");
    assert!(reboots.iter().all(|(_, t)| mtype(&t.payload) == REQUEST));
    assert_eq!(bound_event(&mut c), kept);
    assert_eq!(c.lease(), Some(&kept));
    assert!(sent.iter().all(|(_, t)| mtype(&t.payload) != DISCOVER));

    // Asked for at once by unicast from the address (a server that ignores
    // INIT-REBOOT may answer that), then at T2 by broadcast from it.
    let (used_at, renew) = sent.last().unwrap();
    assert!(*used_at < kept.renew_at().unwrap());
    assert_eq!(c.state(), State::Renewing);
    assert_eq!(ciaddr(&renew.payload), ADDR);
    let mut sent = vec![(*used_at, renew.clone())];
    sent.extend(run_until(
        &mut c,
        kept.expires_at().unwrap() - Duration::from_millis(1),
    ));
    assert!(c.poll_event().is_none(), "lost before its end");
    assert_eq!(c.state(), State::Rebinding);
    for (at, t) in &sent {
        assert_eq!(mtype(&t.payload), REQUEST);
        assert_eq!(ciaddr(&t.payload), ADDR, "from the address still held");
        let want = if *at < kept.rebind_at().unwrap() {
            Destination::Unicast {
                src: ADDR,
                server: SERVER,
            }
        } else {
            Destination::Broadcast { src: ADDR }
        };
        assert_eq!(t.destination, want, "at {:?}", *at - t0);
    }
    assert!(
        sent.iter()
            .any(|(_, t)| t.destination == Destination::Broadcast { src: ADDR }),
        "rebinds"
    );

    // Its end: lost, then DISCOVERs asking for it, never more than one per
    // 3 s and settling at one a minute.
    let end = kept.expires_at().unwrap();
    let sent = run_until(&mut c, end + secs(600));
    assert_eq!(lost_event(&mut c), (kept, LostReason::Expired));
    assert!(sent.iter().all(|(_, t)| mtype(&t.payload) == DISCOVER));
    assert!(
        sent.iter()
            .all(|(_, t)| opts(&t.payload)[&50] == ADDR.octets())
    );
    assert_eq!(sent[0].0, end);
    let gaps: Vec<Duration> = sent.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(
        gaps.iter().all(|g| *g >= secs(3) && *g <= secs(65)),
        "{gaps:?}"
    );
    assert!(
        (10..=14).contains(&sent.len()),
        "{} DISCOVERs in 10 min",
        sent.len()
    );
}

/// The server answers while the kept lease is in use: the ACK extends it.
#[test]
fn a_kept_lease_is_extended_when_the_server_comes_back() {
    let t0 = Instant::now();
    let mut c = client();
    let kept = kept_lease(t0);
    c.resume_lease(t0, kept.clone());
    run_until(&mut c, t0 + secs(40));
    assert_eq!(bound_event(&mut c), kept);
    let sent = run_until(&mut c, kept.rebind_at().unwrap() + secs(1));
    let (at, rebind) = sent.last().unwrap();
    assert_eq!(rebind.destination, Destination::Broadcast { src: ADDR });
    c.handle_packet(*at + secs(1), &ack(rebind));
    let l = bound_event(&mut c);
    assert_eq!(l.address, ADDR);
    assert_eq!(l.expires_at(), Some(*at + secs(3600)));
    assert_eq!(c.state(), State::Bound);
}

/// A kept lease that ends while INIT-REBOOT is still asking for it is not
/// used at all: at its end the client discovers, asking for the address.
#[test]
fn a_kept_lease_ending_during_init_reboot_is_not_used() {
    let t0 = Instant::now();
    let mut c = client();
    let mut kept = kept_lease(t0);
    kept.times = crate::timers::LeaseTimes::dhcpv4(t0, Some(secs(6)), None, None);
    c.resume_lease(t0, kept.clone());
    let sent = run_until(&mut c, t0 + secs(6));
    assert!(c.poll_event().is_none(), "never bound");
    assert_eq!(c.state(), State::Selecting);
    let (at, d) = sent.last().unwrap();
    assert_eq!((*at, mtype(&d.payload)), (t0 + secs(6), DISCOVER));
    assert_eq!(opts(&d.payload)[&50], ADDR.octets());
    // Already expired when resumed: the same, with no INIT-REBOOT to wait for.
    let mut c = client();
    c.resume_lease(t0 + secs(7), kept);
    assert_eq!(c.state(), State::Rebooting);
    run_until(&mut c, t0 + secs(60));
    assert!(c.poll_event().is_none());
    assert_eq!(c.state(), State::Selecting);
}

/// The server NAKs the INIT-REBOOT of a kept lease: it is dropped at once.
#[test]
fn a_nak_to_the_init_reboot_of_a_kept_lease_discovers() {
    let t0 = Instant::now();
    let mut c = client();
    c.resume_lease(t0, kept_lease(t0));
    let r = tx(&mut c);
    c.handle_packet(t0, &nak(&r, SERVER));
    assert!(c.poll_event().is_none());
    assert_eq!(c.state(), State::Selecting);
    run_until(&mut c, t0 + secs(60));
    assert!(c.poll_event().is_none(), "the kept lease never comes back");
}
