//! Unit tests of the DHCPv6 client on a virtual clock, with server
//! messages built byte by byte (`v6::testing`) and the randomness fixed.

use super::*;
use crate::randomness::Sequence;
use crate::v6::testing::{Sent, answer, ia_na};
use crate::v6::wire::code;

const MAC: [u8; 6] = [0x02, 0x42, 0xc0, 0x00, 0x02, 0x39];
const SERVER: &[u8] = &[0, 3, 0, 1, 2, 0, 0, 0, 0, 1];
const SERVER2: &[u8] = &[0, 3, 0, 1, 2, 0, 0, 0, 0, 2];
const ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x100);
const ADDR2: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x200);
const DNS: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x53);

const SOLICIT: u8 = 1;
const REQUEST: u8 = 3;
const RENEW: u8 = 5;
const REBIND: u8 = 6;
const RELEASE: u8 = 8;
const INFORMATION_REQUEST: u8 = 11;
const ADVERTISE: u8 = 2;
const REPLY: u8 = 7;
const RECONFIGURE: u8 = 10;

/// RAND of section 15 at (almost exactly) zero, the first delay at half
/// its maximum.
fn middle() -> Box<Sequence> {
    Box::new(Sequence::fixed(u32::MAX / 2))
}

fn config(rapid_commit: bool) -> Config {
    Config {
        mac: MAC,
        hostname: Some("web1".into()),
        rapid_commit,
        first_delay: None,
    }
}

#[test]
fn a_first_delay_of_zero_solicits_at_once() {
    let t0 = Instant::now();
    let mut c = Client::new(
        Config {
            first_delay: Some(Duration::ZERO),
            ..config(false)
        },
        middle(),
    );
    c.start(t0);
    if c.poll_timeout().is_some_and(|t| t <= t0) {
        c.handle_timeout(t0);
    }
    assert_eq!(tx(&mut c).msg_type, SOLICIT);
}

fn client() -> Client {
    Client::new(config(false), middle())
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `a` and `b` within a millisecond (RAND is not exactly zero).
fn near(a: Instant, b: Instant) -> bool {
    a.max(b) - a.min(b) < Duration::from_millis(2)
}

fn tx(c: &mut Client) -> Sent {
    let t = c.poll_transmit().expect("a message to send");
    assert!(c.poll_transmit().is_none(), "only one message expected");
    let s = Sent::parse(&t.payload).expect("parsable");
    assert_eq!(
        s.option(code::CLIENT_ID),
        Some(&config(false).duid()[..]),
        "DUID-LL in every message"
    );
    s
}

fn no_tx(c: &mut Client) {
    assert!(c.poll_transmit().is_none(), "nothing should be sent");
}

fn events(c: &mut Client) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

fn iaid() -> u32 {
    config(false).iaid()
}

fn with_ia(t1: u32, t2: u32, addrs: &[(Ipv6Addr, u32, u32)]) -> Vec<(u16, Vec<u8>)> {
    vec![(code::IA_NA, ia_na(iaid(), t1, t2, addrs, None))]
}

fn std_ia() -> Vec<(u16, Vec<u8>)> {
    let mut o = with_ia(1000, 1600, &[(ADDR, 1800, 2000)]);
    o.push((code::DNS_SERVERS, DNS.octets().to_vec()));
    o
}

/// Fires the client's timer until it sends; returns when and what.
fn next_tx(c: &mut Client) -> (Instant, Sent) {
    for _ in 0..4 {
        let at = c.poll_timeout().expect("a deadline");
        c.handle_timeout(at);
        if let Some(t) = c.poll_transmit() {
            return (at, Sent::parse(&t.payload).unwrap());
        }
    }
    panic!("nothing sent")
}

/// Solicit, Advertise, Request, Reply: returns the client bound at `t0`+.
fn bound(t0: Instant) -> (Client, Instant) {
    let mut c = client();
    c.start(t0);
    let (at, sol) = next_tx(&mut c);
    c.handle_packet(at, &answer(&sol, ADVERTISE, SERVER, &std_ia()));
    let (at, req) = next_tx(&mut c);
    assert_eq!(req.msg_type, REQUEST);
    c.handle_packet(at, &answer(&req, REPLY, SERVER, &std_ia()));
    assert_eq!(c.state(), State::Bound);
    events(&mut c);
    (c, at)
}

#[test]
fn solicit_advertise_request_reply() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    // Section 18.2.1: the first Solicit waits a random delay (half of
    // SOL_MAX_DELAY with this randomness).
    no_tx(&mut c);
    assert_eq!(c.state(), State::Selecting);
    assert!(near(
        c.poll_timeout().unwrap(),
        t0 + Duration::from_millis(500)
    ));
    c.handle_timeout(t0 + Duration::from_millis(500));
    let sol = tx(&mut c);
    assert_eq!(sol.msg_type, SOLICIT);
    assert_eq!(sol.ia_na(), Some((iaid(), vec![])));
    assert_eq!(sol.option(code::ELAPSED_TIME), Some(&[0, 0][..]));
    assert_eq!(sol.option(code::CLIENT_FQDN), Some(&b"\x01\x04web1"[..]));
    assert_eq!(sol.option(code::RAPID_COMMIT), None, "not configured");
    let oro = sol.option(code::ORO).unwrap();
    assert!(oro.chunks(2).any(|c| c == [0, 23]) && oro.chunks(2).any(|c| c == [0, 82]));
    let t1 = t0 + Duration::from_millis(600);
    // An Advertise is kept until the first RT ends (section 18.2.9).
    c.handle_packet(t1, &answer(&sol, ADVERTISE, SERVER, &std_ia()));
    no_tx(&mut c);
    let (at, req) = next_tx(&mut c);
    assert!(
        near(at, t0 + Duration::from_millis(1500)),
        "request when the first RT ends"
    );
    assert_eq!(req.msg_type, REQUEST);
    assert_eq!(req.option(code::SERVER_ID), Some(SERVER));
    assert_eq!(req.ia_na(), Some((iaid(), vec![ADDR])));
    c.handle_packet(at, &answer(&req, REPLY, SERVER, &std_ia()));
    let ev = events(&mut c);
    let [Event::Bound(lease)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(lease.address, ADDR);
    assert_eq!(
        (lease.times.preferred, lease.times.valid),
        (Some(secs(1800)), Some(secs(2000)))
    );
    assert_eq!(
        (lease.times.t1, lease.times.t2),
        (Some(secs(1000)), Some(secs(1600)))
    );
    assert_eq!(lease.dns, vec![DNS]);
    assert_eq!(lease.server_id, SERVER);
    assert_eq!(c.state(), State::Bound);
    assert_eq!(c.poll_timeout(), Some(at + secs(1000)));
}

#[test]
fn best_preference_wins_and_255_is_taken_at_once() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    let (at, sol) = next_tx(&mut c);
    let pref = |p: u8| {
        let mut o = std_ia();
        o.push((code::PREFERENCE, vec![p]));
        o
    };
    let mut low = with_ia(0, 0, &[(ADDR2, 100, 200)]);
    low.push((code::PREFERENCE, vec![5]));
    c.handle_packet(at, &answer(&sol, ADVERTISE, SERVER2, &low));
    c.handle_packet(at, &answer(&sol, ADVERTISE, SERVER, &pref(10)));
    let (_, req) = next_tx(&mut c);
    assert_eq!(
        req.option(code::SERVER_ID),
        Some(SERVER),
        "higher preference"
    );

    let mut c = client();
    c.start(t0);
    let (at, sol) = next_tx(&mut c);
    c.handle_packet(at, &answer(&sol, ADVERTISE, SERVER, &pref(255)));
    let req = tx(&mut c);
    assert_eq!(req.msg_type, REQUEST, "preference 255: no waiting");
}

#[test]
fn advertise_without_addresses_is_no_choice() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    let (at, sol) = next_tx(&mut c);
    let refused = vec![(code::IA_NA, ia_na(iaid(), 0, 0, &[], Some(2)))];
    c.handle_packet(at, &answer(&sol, ADVERTISE, SERVER, &refused));
    let (_, again) = next_tx(&mut c);
    assert_eq!(again.msg_type, SOLICIT, "still soliciting");
    assert_eq!(again.xid, sol.xid, "a retransmission");
}

#[test]
fn rapid_commit_binds_on_the_solicit_reply() {
    let t0 = Instant::now();
    let mut c = Client::new(config(true), middle());
    c.start(t0);
    let (at, sol) = next_tx(&mut c);
    assert_eq!(sol.option(code::RAPID_COMMIT), Some(&[][..]));
    // A Reply without Rapid Commit is not an answer to a Solicit.
    c.handle_packet(at, &answer(&sol, REPLY, SERVER, &std_ia()));
    assert!(events(&mut c).is_empty());
    let mut o = std_ia();
    o.push((code::RAPID_COMMIT, vec![]));
    c.handle_packet(at, &answer(&sol, REPLY, SERVER, &o));
    assert!(matches!(events(&mut c).as_slice(), [Event::Bound(l)] if l.address == ADDR));
    no_tx(&mut c);
    assert_eq!(c.state(), State::Bound);
}

#[test]
fn renew_at_t1_extends_the_lease() {
    let (mut c, bound_at) = bound(Instant::now());
    let (at, renew) = next_tx(&mut c);
    assert_eq!(at, bound_at + secs(1000), "T1");
    assert_eq!(c.state(), State::Renewing);
    assert_eq!(renew.msg_type, RENEW);
    assert_eq!(renew.option(code::SERVER_ID), Some(SERVER));
    assert_eq!(renew.ia_na(), Some((iaid(), vec![ADDR])));
    // Section 18.2.4: REN_TIMEOUT, then doubling.
    let (re, again) = next_tx(&mut c);
    assert!(near(re, at + secs(10)));
    assert_eq!((again.msg_type, again.xid), (RENEW, renew.xid));
    let elapsed = again.option(code::ELAPSED_TIME).unwrap();
    assert_eq!(
        u16::from_be_bytes([elapsed[0], elapsed[1]]),
        1000,
        "hundredths of a second"
    );
    // A Reply from another server is not for a Renew.
    c.handle_packet(re, &answer(&again, REPLY, SERVER2, &std_ia()));
    assert!(events(&mut c).is_empty());
    c.handle_packet(re, &answer(&again, REPLY, SERVER, &std_ia()));
    let ev = events(&mut c);
    let [Event::Bound(l)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(l.times.start, at, "lifetimes count from the first Renew");
    assert_eq!(c.state(), State::Bound);
    assert_eq!(c.poll_timeout(), Some(at + secs(1000)));
}

#[test]
fn rebind_at_t2_then_expiry_then_solicit() {
    let (mut c, bound_at) = bound(Instant::now());
    let t2 = bound_at + secs(1600);
    let expiry = bound_at + secs(2000);
    let mut renews = 0;
    let (at, rebind) = loop {
        let (at, m) = next_tx(&mut c);
        if m.msg_type != RENEW {
            break (at, m);
        }
        renews += 1;
        assert!(at < t2);
    };
    assert!(renews >= 4, "renew retransmitted until T2 ({renews})");
    assert_eq!(at, t2);
    assert_eq!(rebind.msg_type, REBIND);
    assert_eq!(rebind.option(code::SERVER_ID), None, "any server");
    assert_eq!(c.state(), State::Rebinding);
    let mut last;
    loop {
        let deadline = c.poll_timeout().unwrap();
        assert!(deadline <= expiry, "never past the valid lifetime");
        c.handle_timeout(deadline);
        last = deadline;
        let ev = events(&mut c);
        if !ev.is_empty() {
            assert!(
                matches!(ev.as_slice(), [Event::Lost { lease, reason: LostReason::Expired }] if lease.address == ADDR)
            );
            break;
        }
        let m = tx(&mut c);
        assert_eq!(m.msg_type, REBIND);
    }
    assert_eq!(last, expiry);
    assert_eq!(c.state(), State::Selecting, "a new Solicit");
    let (_, sol) = next_tx(&mut c);
    assert_eq!(sol.msg_type, SOLICIT);
}

#[test]
fn rebind_reply_from_any_server_binds() {
    let (mut c, bound_at) = bound(Instant::now());
    c.handle_timeout(bound_at + secs(1600));
    let reb = tx(&mut c);
    assert_eq!(reb.msg_type, REBIND);
    c.handle_packet(
        bound_at + secs(1601),
        &answer(&reb, REPLY, SERVER2, &std_ia()),
    );
    assert!(matches!(events(&mut c).as_slice(), [Event::Bound(l)] if l.server_id == SERVER2));
}

#[test]
fn release_on_stop() {
    let (mut c, at) = bound(Instant::now());
    c.release(at);
    let rel = tx(&mut c);
    assert_eq!(rel.msg_type, RELEASE);
    assert_eq!(rel.option(code::SERVER_ID), Some(SERVER));
    assert_eq!(rel.ia_na(), Some((iaid(), vec![ADDR])));
    assert!(matches!(
        events(&mut c).as_slice(),
        [Event::Lost {
            reason: LostReason::Released,
            ..
        }]
    ));
    assert_eq!(c.state(), State::Stopped);
    assert!(!c.is_stopped(), "waiting for the Reply");
    // REL_MAX_RC: four transmissions in all, then done.
    let mut n = 1;
    while let Some(t) = c.poll_timeout() {
        c.handle_timeout(t);
        n += std::iter::from_fn(|| c.poll_transmit()).count();
    }
    assert_eq!(n, 4);
    assert!(c.is_stopped());

    let (mut c, at) = bound(Instant::now());
    c.release(at);
    let rel = tx(&mut c);
    c.handle_packet(at, &answer(&rel, REPLY, SERVER, &[]));
    assert!(c.is_stopped());
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn release_without_a_lease_just_stops() {
    let mut c = client();
    c.start(Instant::now());
    c.release(Instant::now());
    no_tx(&mut c);
    assert!(c.is_stopped());
}

fn stored(start: Instant) -> Lease {
    Lease {
        address: ADDR,
        server_id: SERVER.to_vec(),
        dns: vec![],
        times: LeaseTimes {
            start,
            t1: Some(secs(1000)),
            t2: Some(secs(1600)),
            valid: Some(secs(2000)),
            preferred: Some(secs(1800)),
        },
    }
}

#[test]
fn restart_rebinds_the_stored_lease_without_solicit() {
    let t0 = Instant::now();
    let mut c = client();
    c.resume(t0 + secs(100), stored(t0));
    let reb = tx(&mut c);
    assert_eq!(reb.msg_type, REBIND);
    assert_eq!(reb.ia_na(), Some((iaid(), vec![ADDR])));
    assert_eq!(c.state(), State::Rebooting);
    c.handle_packet(t0 + secs(100), &answer(&reb, REPLY, SERVER, &std_ia()));
    assert!(
        matches!(events(&mut c).as_slice(), [Event::Bound(l)] if l.address == ADDR && l.times.start == t0 + secs(100))
    );
    assert_eq!(c.state(), State::Bound);
}

#[test]
fn restart_with_an_expired_lease_solicits() {
    let t0 = Instant::now();
    let mut c = client();
    c.resume(t0 + secs(2000), stored(t0));
    let (_, m) = next_tx(&mut c);
    assert_eq!(m.msg_type, SOLICIT);
}

#[test]
fn restart_rebind_unanswered_until_expiry_loses_the_lease() {
    let t0 = Instant::now();
    let mut c = client();
    c.resume(t0 + secs(1990), stored(t0));
    tx(&mut c);
    c.handle_timeout(t0 + secs(2000));
    assert!(matches!(
        events(&mut c).as_slice(),
        [Event::Lost {
            reason: LostReason::Expired,
            ..
        }]
    ));
    assert_eq!(c.state(), State::Selecting);
}

#[test]
fn no_binding_on_renew_requests_again() {
    let (mut c, at) = bound(Instant::now());
    c.handle_timeout(at + secs(1000));
    let renew = tx(&mut c);
    let nb = vec![(code::IA_NA, ia_na(iaid(), 0, 0, &[], Some(3)))];
    c.handle_packet(at + secs(1000), &answer(&renew, REPLY, SERVER, &nb));
    let req = tx(&mut c);
    assert_eq!(req.msg_type, REQUEST);
    assert_eq!(req.ia_na(), Some((iaid(), vec![ADDR])));
}

#[test]
fn reply_withdrawing_the_address_loses_it() {
    let (mut c, at) = bound(Instant::now());
    c.handle_timeout(at + secs(1000));
    let renew = tx(&mut c);
    c.handle_packet(
        at + secs(1000),
        &answer(&renew, REPLY, SERVER, &with_ia(0, 0, &[(ADDR, 0, 0)])),
    );
    assert!(matches!(
        events(&mut c).as_slice(),
        [Event::Lost {
            reason: LostReason::Withdrawn,
            ..
        }]
    ));
    assert_eq!(c.state(), State::Selecting);
}

#[test]
fn new_address_in_a_renew_reply_replaces_the_old() {
    let (mut c, at) = bound(Instant::now());
    c.handle_timeout(at + secs(1000));
    let renew = tx(&mut c);
    c.handle_packet(
        at + secs(1000),
        &answer(
            &renew,
            REPLY,
            SERVER,
            &with_ia(100, 160, &[(ADDR, 0, 0), (ADDR2, 180, 200)]),
        ),
    );
    let ev = events(&mut c);
    assert!(
        matches!(ev.as_slice(), [Event::Lost { lease: old, .. }, Event::Bound(new)] if old.address == ADDR && new.address == ADDR2),
        "{ev:?}"
    );
}

#[test]
fn zero_t1_t2_are_the_clients_choice_and_t1_above_t2_is_refused() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    let (at, sol) = next_tx(&mut c);
    c.handle_packet(at, &answer(&sol, ADVERTISE, SERVER, &std_ia()));
    let (at, req) = next_tx(&mut c);
    c.handle_packet(
        at,
        &answer(
            &req,
            REPLY,
            SERVER,
            &with_ia(500, 400, &[(ADDR, 1000, 2000)]),
        ),
    );
    assert!(events(&mut c).is_empty(), "T1 > T2: IA ignored");
    c.handle_packet(
        at,
        &answer(&req, REPLY, SERVER, &with_ia(0, 0, &[(ADDR, 1000, 2000)])),
    );
    let ev = events(&mut c);
    let [Event::Bound(l)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!((l.times.t1, l.times.t2), (Some(secs(500)), Some(secs(800))));
}

#[test]
fn reconfigure_is_ignored_unless_authenticated() {
    let (mut c, at) = bound(Instant::now());
    let before = c.poll_timeout();
    let probe = Sent {
        msg_type: 0,
        xid: 0x1234,
        options: vec![(code::CLIENT_ID, config(false).duid())],
    };
    let renew_now = vec![(code::RECONF_MSG, vec![RENEW])];
    c.handle_packet(at, &answer(&probe, RECONFIGURE, SERVER, &renew_now));
    // Even with an Authentication option: the client accepted no key.
    let mut with_auth = renew_now.clone();
    with_auth.push((
        11,
        vec![
            3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    ));
    c.handle_packet(at, &answer(&probe, RECONFIGURE, SERVER, &with_auth));
    no_tx(&mut c);
    assert!(events(&mut c).is_empty());
    assert_eq!((c.state(), c.poll_timeout()), (State::Bound, before));
}

#[test]
fn request_retransmission_follows_section_15_then_solicits() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    let (at, sol) = next_tx(&mut c);
    c.handle_packet(at, &answer(&sol, ADVERTISE, SERVER, &std_ia()));
    let (start, req) = next_tx(&mut c);
    let mut times = vec![Duration::ZERO];
    loop {
        let (at, m) = next_tx(&mut c);
        if m.msg_type != REQUEST {
            assert_eq!(m.msg_type, SOLICIT);
            break;
        }
        assert_eq!(m.xid, req.xid);
        times.push(at - start);
    }
    // REQ_MAX_RC transmissions, RT doubling from REQ_TIMEOUT up to REQ_MAX_RT.
    let expect = [0, 1, 3, 7, 15, 31, 61, 91, 121, 151];
    assert_eq!(times.len(), expect.len());
    for (got, want) in times.iter().zip(expect) {
        assert!(
            got.abs_diff(secs(want)) < Duration::from_millis(5),
            "{times:?}"
        );
    }
}

#[test]
fn solicit_retransmission_is_randomized_and_capped() {
    // RAND at its extremes in turn: +0.1, -0.1, ...
    let seq = (0..200)
        .map(|i| if i % 2 == 0 { u32::MAX } else { 0 })
        .collect();
    let t0 = Instant::now();
    let mut c = Client::new(config(false), Box::new(Sequence::new(seq)));
    c.start(t0);
    let mut prev: Option<Instant> = None;
    let mut gaps = Vec::new();
    for _ in 0..20 {
        let (at, m) = next_tx(&mut c);
        assert_eq!(m.msg_type, SOLICIT);
        if let Some(p) = prev {
            gaps.push(at - p);
        }
        prev = Some(at);
    }
    // First RT strictly above IRT; every gap within RAND of its doubling;
    // at most MRT plus a tenth.
    assert!(
        gaps[0] > secs(1) && gaps[0] <= Duration::from_millis(1100),
        "{gaps:?}"
    );
    for w in gaps.windows(2) {
        let (a, b) = (w[0].as_secs_f64(), w[1].as_secs_f64());
        assert!(
            b >= (a * 1.9).min(3600.0 * 0.9) - 1e-6 && b <= (a * 2.1).min(3600.0 * 1.1) + 1e-6,
            "{gaps:?}"
        );
    }
    assert!(gaps.iter().all(|g| *g <= secs(3960)));
    assert!(
        gaps.last().unwrap() >= &secs(3240),
        "reached the cap: {gaps:?}"
    );
}

#[test]
fn server_sol_max_rt_caps_solicit() {
    let t0 = Instant::now();
    let mut c = client();
    c.start(t0);
    let (at, sol) = next_tx(&mut c);
    // An Advertise without addresses but with SOL_MAX_RT 60 (section 21.24).
    let o = vec![(code::SOL_MAX_RT, 60u32.to_be_bytes().to_vec())];
    c.handle_packet(at, &answer(&sol, ADVERTISE, SERVER, &o));
    c.release(at);
    c.start(at);
    let mut last = at;
    for _ in 0..15 {
        let (t, _) = next_tx(&mut c);
        assert!(t - last <= secs(67));
        last = t;
    }
}

#[test]
fn stateless_information_request() {
    let t0 = Instant::now();
    let mut c = client();
    c.start_stateless(t0);
    let (at, ir) = next_tx(&mut c);
    assert_eq!(ir.msg_type, INFORMATION_REQUEST);
    assert!(ir.ia_na().is_none(), "no IA_NA when stateless");
    let o = vec![
        (code::DNS_SERVERS, DNS.octets().to_vec()),
        (
            code::INFORMATION_REFRESH_TIME,
            3600u32.to_be_bytes().to_vec(),
        ),
    ];
    c.handle_packet(at, &answer(&ir, REPLY, SERVER, &o));
    assert_eq!(
        events(&mut c),
        vec![Event::Information(Information {
            dns: vec![DNS],
            refresh: secs(3600)
        })]
    );
    assert_eq!(c.poll_timeout(), Some(at + secs(3600)));
    // Refresh, and a refresh time below IRT_MINIMUM is raised to it.
    let (at2, ir2) = next_tx(&mut c);
    assert_eq!((at2, ir2.msg_type), (at + secs(3600), INFORMATION_REQUEST));
    let o = vec![(code::INFORMATION_REFRESH_TIME, 5u32.to_be_bytes().to_vec())];
    c.handle_packet(at2, &answer(&ir2, REPLY, SERVER, &o));
    assert_eq!(c.poll_timeout(), Some(at2 + secs(600)));
}

#[test]
fn foreign_and_garbage_messages_change_nothing() {
    let (mut c, at) = bound(Instant::now());
    c.handle_timeout(at + secs(1000));
    let renew = tx(&mut c);
    let before = (c.state(), c.poll_timeout());
    let mut other_client = renew.clone();
    other_client.options = vec![(code::CLIENT_ID, vec![0, 3, 0, 1, 9, 9, 9, 9, 9, 9])];
    let mut other_xid = renew.clone();
    other_xid.xid ^= 1;
    let good = answer(&renew, REPLY, SERVER, &std_ia());
    let mut no_server = good.clone();
    no_server.truncate(4 + 14);
    for bad in [
        answer(&other_client, REPLY, SERVER, &std_ia()),
        answer(&other_xid, REPLY, SERVER, &std_ia()),
        answer(&renew, SOLICIT, SERVER, &std_ia()),
        answer(&renew, 12, SERVER, &std_ia()),
        no_server,
        vec![],
        vec![7],
        vec![0xff; 300],
        good[..good.len() - 3].to_vec(),
    ] {
        c.handle_packet(at + secs(1000), &bad);
    }
    no_tx(&mut c);
    assert!(events(&mut c).is_empty());
    assert_eq!((c.state(), c.poll_timeout()), before);
    c.handle_packet(at + secs(1000), &good);
    assert_eq!(events(&mut c).len(), 1);
}

/// A Reply whose only IA address is multicast (or link-local, or in ::/8)
/// binds nothing: the address never reaches the router (issue 21).
#[test]
fn an_unusable_ia_address_is_never_bound() {
    for bad in ["ff00::1", "ff02::1:2", "fe80::1", "::1", "::ffff:192.0.2.1"] {
        let bad: Ipv6Addr = bad.parse().unwrap();
        let t0 = Instant::now();
        let mut c = Client::new(config(true), middle());
        c.start(t0);
        let (at, sol) = next_tx(&mut c);
        let mut o = with_ia(1000, 1600, &[(bad, 1800, 2000)]);
        o.push((code::RAPID_COMMIT, vec![]));
        c.handle_packet(at, &answer(&sol, REPLY, SERVER, &o));
        assert!(
            !events(&mut c).iter().any(|e| matches!(e, Event::Bound(_))),
            "{bad} was bound"
        );
        assert_ne!(c.state(), State::Bound, "{bad}");
        // A usable address beside it is taken, the bad one is not.
        let mut o = with_ia(1000, 1600, &[(bad, 1800, 2000), (ADDR, 1800, 2000)]);
        o.push((code::RAPID_COMMIT, vec![]));
        c.handle_packet(at, &answer(&sol, REPLY, SERVER, &o));
        assert!(
            matches!(events(&mut c).as_slice(), [Event::Bound(l)] if l.address == ADDR),
            "{bad}"
        );
    }
}
