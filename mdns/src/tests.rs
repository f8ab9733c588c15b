//! The responder on a virtual clock: `T0` plus offsets, every packet parsed
//! back with hickory-proto. Each test names the RFC 6762 / 6763 rule it pins.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, AAAA, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::records::rdata_bytes;
use crate::*;

fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fn at(ms: u64) -> Instant {
    t0() + Duration::from_millis(ms)
}

const V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 5);
const V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5);

fn peer4() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)), 5353)
}

fn peer6() -> SocketAddr {
    SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9)),
        5353,
    )
}

fn name(s: &str) -> Name {
    // Labels split on '.', raw bytes (instance names may hold spaces).
    Name::from_labels(s.split('.').map(str::as_bytes)).unwrap()
}

fn instance(i: &str, t: &str) -> Name {
    let mut labels: Vec<&str> = vec![i];
    labels.extend(t.split('.'));
    labels.push("local");
    Name::from_labels(labels.iter().map(|l| l.as_bytes())).unwrap()
}

fn config() -> Config {
    Config {
        hostname: "web1".into(),
        services: vec![Service {
            instance: "web1".into(),
            service_type: "_http._tcp".into(),
            port: 8080,
            txt: vec!["path=/".into()],
        }],
    }
}

fn parse(t: &Transmit) -> Message {
    assert!(t.payload.len() <= MAX_PAYLOAD, "{} bytes", t.payload.len());
    Message::from_vec(&t.payload).expect("a transmit parses")
}

fn drain(r: &mut Responder) -> Vec<Transmit> {
    std::iter::from_fn(|| r.poll_transmit()).collect()
}

fn events(r: &mut Responder) -> Vec<Event> {
    std::iter::from_fn(|| r.poll_event()).collect()
}

/// Runs every deadline up to `until`, returning what was sent and when.
fn run_until(r: &mut Responder, until: Instant) -> Vec<(Instant, Transmit)> {
    let mut out = Vec::new();
    for _ in 0..10_000 {
        match r.poll_timeout() {
            Some(t) if t <= until => {
                r.handle_timeout(t);
                out.extend(drain(r).into_iter().map(|x| (t, x)));
            }
            _ => return out,
        }
    }
    panic!("the responder keeps scheduling timeouts");
}

/// A responder that has probed and announced (done at 3 s).
fn claimed_with(config: Config, v4: &[Ipv4Addr], v6: &[Ipv6Addr]) -> Responder {
    let mut r = Responder::new(config, 7).unwrap();
    r.set_addresses(at(0), v4, v6);
    run_until(&mut r, at(3000));
    assert!(r.name().is_some());
    events(&mut r);
    r
}

fn claimed() -> Responder {
    claimed_with(config(), &[V4], &[V6])
}

fn query(qs: &[(&Name, RecordType, bool)], known: Vec<Record>) -> Message {
    let mut m = Message::new(0, MessageType::Query, OpCode::Query);
    for (n, t, qu) in qs {
        let mut q = Query::query((*n).clone(), *t);
        q.set_mdns_unicast_response(*qu);
        m.queries.push(q);
    }
    m.answers = known;
    m
}

fn bytes(m: &Message) -> Vec<u8> {
    m.to_vec().unwrap()
}

fn response(records: Vec<Record>) -> Vec<u8> {
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    m.metadata.authoritative = true;
    m.answers = records;
    bytes(&m)
}

fn a_record(n: &str, a: Ipv4Addr, ttl: u32) -> Record {
    Record::from_rdata(name(n), ttl, RData::A(A(a)))
}

fn types(recs: &[Record]) -> Vec<RecordType> {
    recs.iter().map(|r| r.record_type()).collect()
}

fn ask(r: &mut Responder, now: Instant, from: SocketAddr, m: &Message) -> Vec<Transmit> {
    r.handle_packet(now, from, &bytes(m));
    drain(r)
}

#[test]
fn probes_three_times_250ms_apart_then_announces_twice() {
    let mut r = Responder::new(config(), 1).unwrap();
    assert_eq!(r.poll_timeout(), None, "nothing before an address");
    r.set_addresses(at(0), &[V4], &[V6]);
    let first = r.poll_timeout().unwrap();
    assert!(first <= at(250), "8.1: the first probe within 250 ms");
    let sent = run_until(&mut r, at(10_000));
    let probes: Vec<&(Instant, Transmit)> = sent
        .iter()
        .filter(|(_, t)| parse(t).metadata.message_type == MessageType::Query)
        .collect();
    assert_eq!(probes.len(), 3);
    for (i, (when, t)) in probes.iter().enumerate() {
        assert_eq!(*when, first + Duration::from_millis(250 * i as u64));
        assert_eq!(t.to, Destination::Multicast);
        let m = parse(t);
        let qs: Vec<(Name, RecordType, bool)> = m
            .queries
            .iter()
            .map(|q| (q.name.clone(), q.query_type(), q.mdns_unicast_response()))
            .collect();
        assert_eq!(
            qs,
            vec![
                (name("web1.local"), RecordType::ANY, true),
                (instance("web1", "_http._tcp"), RecordType::ANY, true),
            ]
        );
        assert!(m.authorities.iter().all(|r| !r.mdns_cache_flush));
        let mut auth = types(&m.authorities);
        auth.sort_by_key(|t| u16::from(*t));
        assert_eq!(
            auth,
            [
                RecordType::A,
                RecordType::TXT,
                RecordType::AAAA,
                RecordType::SRV
            ]
        );
    }
    let announcements: Vec<&(Instant, Transmit)> = sent
        .iter()
        .filter(|(_, t)| parse(t).metadata.message_type == MessageType::Response)
        .collect();
    assert_eq!(announcements.len(), 2, "8.3: two announcements");
    let claimed_at = first + Duration::from_millis(750);
    assert_eq!(
        announcements[0].0, claimed_at,
        "250 ms after the third probe"
    );
    assert_eq!(announcements[1].0, claimed_at + Duration::from_secs(1));
    assert_eq!(
        events(&mut r),
        vec![Event::Claimed {
            name: "web1.local".into()
        }]
    );
    assert_eq!(r.name().as_deref(), Some("web1.local"));
    assert_eq!(r.poll_timeout(), None, "idle once announced");
    assert_eq!(r.counters().probes_sent, 3);
    assert_eq!(r.counters().announcements_sent, 2);
}

#[test]
fn name_is_none_while_probing() {
    let mut r = Responder::new(config(), 1).unwrap();
    r.set_addresses(at(0), &[V4], &[]);
    run_until(&mut r, at(600));
    assert_eq!(r.name(), None);
    assert!(events(&mut r).is_empty());
}

#[test]
fn announcement_has_every_record_with_rfc_ttls_and_cache_flush_on_unique_ones() {
    let mut r = Responder::new(config(), 3).unwrap();
    r.set_addresses(at(0), &[V4], &[V6]);
    let sent = run_until(&mut r, at(1500));
    let m = parse(&sent.last().unwrap().1);
    assert_eq!(m.metadata.id, 0, "18.1: multicast responses carry ID 0");
    assert!(m.metadata.authoritative);
    assert!(m.queries.is_empty());
    let host = name("web1.local");
    let inst = instance("web1", "_http._tcp");
    let t = name("_http._tcp.local");
    let expect: Vec<(Name, RData, u32, bool)> = vec![
        (host.clone(), RData::A(A(V4)), 120, true),
        (host.clone(), RData::AAAA(AAAA(V6)), 120, true),
        // RFC 6762 4: reverse mapping, a host-name record.
        (
            name("5.2.0.192.in-addr.arpa"),
            RData::PTR(PTR(host.clone())),
            120,
            true,
        ),
        (Name::from(V6), RData::PTR(PTR(host.clone())), 120, true),
        (
            name("_services._dns-sd._udp.local"),
            RData::PTR(PTR(t.clone())),
            4500,
            false,
        ),
        (t, RData::PTR(PTR(inst.clone())), 4500, false),
        (
            inst.clone(),
            RData::SRV(SRV::new(0, 0, 8080, host)),
            120,
            true,
        ),
        (
            inst,
            RData::TXT(TXT::new(vec!["path=/".into()])),
            4500,
            true,
        ),
    ];
    assert_eq!(m.answers.len(), expect.len());
    for (rec, (n, d, ttl, flush)) in m.answers.iter().zip(expect) {
        assert_eq!(rec.name, n);
        assert_eq!(rec.data, d, "{n}");
        assert_eq!(rec.ttl, ttl, "{n} {:?}", rec.record_type());
        assert_eq!(rec.mdns_cache_flush, flush, "{n} {:?}", rec.record_type());
    }
}

#[test]
fn an_empty_txt_is_one_zero_byte() {
    let mut c = config();
    c.services[0].txt.clear();
    let mut r = Responder::new(c, 3).unwrap();
    r.set_addresses(at(0), &[V4], &[]);
    let sent = run_until(&mut r, at(1500));
    let m = parse(&sent.last().unwrap().1);
    let txt = m
        .answers
        .iter()
        .find(|r| r.record_type() == RecordType::TXT)
        .unwrap();
    assert_eq!(rdata_bytes(txt), [0], "RFC 6763 6.1");
}

#[test]
fn a_conflict_while_probing_renames_the_host_and_probes_the_new_name() {
    let mut r = Responder::new(config(), 5).unwrap();
    r.set_addresses(at(0), &[V4], &[]);
    let first = r.poll_timeout().unwrap();
    r.handle_timeout(first);
    drain(&mut r);
    let now = first + Duration::from_millis(100);
    r.handle_packet(
        now,
        peer4(),
        &response(vec![a_record(
            "WEB1.local",
            Ipv4Addr::new(192, 0, 2, 77),
            120,
        )]),
    );
    assert_eq!(
        events(&mut r),
        vec![Event::Conflict {
            name: "web1.local".into(),
            next: "web1-2.local".into()
        }]
    );
    assert_eq!(r.counters().conflicts, 1);
    let sent = run_until(&mut r, now + Duration::from_secs(3));
    let probe = parse(&sent[0].1);
    assert_eq!(probe.queries[0].name, name("web1-2.local"));
    let probes = sent
        .iter()
        .filter(|(_, t)| parse(t).metadata.message_type == MessageType::Query)
        .count();
    assert_eq!(probes, 3, "three fresh probes for the new name");
    let ann = parse(&sent.last().unwrap().1);
    let srv = ann
        .answers
        .iter()
        .find_map(|r| match &r.data {
            RData::SRV(s) => Some(s.target.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(srv, name("web1-2.local"), "the SRV follows the new name");
    assert_eq!(r.name().as_deref(), Some("web1-2.local"));
    assert_eq!(
        events(&mut r),
        vec![Event::Claimed {
            name: "web1-2.local".into()
        }]
    );
}

#[test]
fn a_conflict_on_the_instance_renames_only_the_instance() {
    let mut r = Responder::new(config(), 5).unwrap();
    r.set_addresses(at(0), &[V4], &[]);
    let first = r.poll_timeout().unwrap();
    r.handle_timeout(first);
    let other = Record::from_rdata(
        instance("web1", "_http._tcp"),
        120,
        RData::SRV(SRV::new(0, 0, 80, name("other.local"))),
    );
    r.handle_packet(first, peer6(), &response(vec![other]));
    assert_eq!(
        events(&mut r),
        vec![Event::Conflict {
            name: "web1._http._tcp.local".into(),
            next: "web1 (2)._http._tcp.local".into()
        }]
    );
    run_until(&mut r, at(5000));
    assert_eq!(r.name().as_deref(), Some("web1.local"));
    assert_eq!(r.instance_names(), ["web1 (2)"]);
    assert!(r.owns(&instance("web1 (2)", "_http._tcp")));
    assert!(!r.owns(&instance("web1", "_http._tcp")));
}

#[test]
fn our_own_data_goodbyes_and_other_ports_are_no_conflict() {
    let mut r = Responder::new(config(), 5).unwrap();
    r.set_addresses(at(0), &[V4], &[]);
    let first = r.poll_timeout().unwrap();
    r.handle_timeout(first);
    let other = SocketAddr::new(peer4().ip(), 40000);
    r.handle_packet(
        first,
        peer4(),
        &response(vec![a_record("web1.local", V4, 120)]),
    );
    let bye = a_record("web1.local", Ipv4Addr::new(192, 0, 2, 77), 0);
    r.handle_packet(first, peer4(), &response(vec![bye]));
    let stranger = a_record("web1.local", Ipv4Addr::new(192, 0, 2, 77), 120);
    r.handle_packet(first, other, &response(vec![stranger.clone()]));
    assert!(events(&mut r).is_empty());
    assert_eq!(r.counters().conflicts, 0);
    assert_eq!(r.counters().ignored, 1, "6: responses not from port 5353");
    // The same record from port 5353 is one (this test can fail).
    r.handle_packet(first, peer4(), &response(vec![stranger]));
    assert_eq!(r.counters().conflicts, 1);
}

#[test]
fn fifteen_conflicts_in_ten_seconds_slow_probing_to_five_seconds() {
    let mut r = Responder::new(config(), 5).unwrap();
    r.set_addresses(at(0), &[V4], &[]);
    let mut now = at(0);
    for i in 1..=15u32 {
        let next = r.poll_timeout().unwrap();
        now = now.max(next);
        r.handle_timeout(now);
        drain(&mut r);
        let label = if i == 1 {
            "web1".to_string()
        } else {
            format!("web1-{i}")
        };
        let taken = a_record(&format!("{label}.local"), Ipv4Addr::new(192, 0, 2, 77), 120);
        r.handle_packet(now, peer4(), &response(vec![taken]));
        let wait = r.poll_timeout().unwrap() - now;
        if i < 15 {
            assert!(wait <= Duration::from_millis(250), "conflict {i}: {wait:?}");
        } else {
            assert_eq!(wait, Duration::from_secs(5), "8.1: the 15th conflict");
        }
    }
    assert_eq!(r.counters().conflicts, 15);
    assert!(now < at(10_000));
}

fn probe_from_peer(addr: Ipv4Addr) -> Message {
    let mut m = query(&[(&name("web1.local"), RecordType::ANY, true)], vec![]);
    m.authorities = vec![a_record("web1.local", addr, 120)];
    m
}

#[test]
fn simultaneous_probes_the_later_data_wins() {
    // 8.2: ours is A 192.0.2.5.
    let mut r = Responder::new(config(), 5).unwrap();
    r.set_addresses(at(0), &[V4], &[]);
    let first = r.poll_timeout().unwrap();
    r.handle_timeout(first);
    drain(&mut r);
    let due = r.poll_timeout();
    // An earlier address: we win, nothing changes; our own probe looped back
    // (equal) neither.
    for a in [Ipv4Addr::new(192, 0, 2, 1), V4] {
        assert!(ask(&mut r, first, peer4(), &probe_from_peer(a)).is_empty());
        assert_eq!(r.poll_timeout(), due);
    }
    // A later one: we lose, wait one second and probe three times again.
    let now = first + Duration::from_millis(10);
    assert!(
        ask(
            &mut r,
            now,
            peer4(),
            &probe_from_peer(Ipv4Addr::new(192, 0, 2, 200))
        )
        .is_empty()
    );
    assert_eq!(r.poll_timeout(), Some(now + Duration::from_secs(1)));
    assert_eq!(r.counters().tie_breaks_lost, 1);
    let sent = run_until(&mut r, now + Duration::from_millis(1600));
    let probes: Vec<Message> = sent
        .iter()
        .map(|(_, t)| parse(t))
        .filter(|m| m.metadata.message_type == MessageType::Query)
        .collect();
    assert_eq!(probes.len(), 3);
    assert_eq!(probes[0].queries[0].name, name("web1.local"), "same name");
    assert!(
        events(&mut r)
            .iter()
            .all(|e| !matches!(e, Event::Conflict { .. }))
    );
}

#[test]
fn unique_answers_go_at_once_on_the_family_asked() {
    let mut r = claimed();
    let now = at(5000);
    let q = query(&[(&name("web1.local"), RecordType::A, false)], vec![]);
    let out = ask(&mut r, now, peer4(), &q);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, Destination::MulticastV4);
    let m = parse(&out[0]);
    assert_eq!(types(&m.answers), [RecordType::A]);
    assert_eq!(types(&m.additionals), [RecordType::AAAA], "6.2");
    let out = ask(&mut r, now, peer6(), &q);
    assert_eq!(out[0].to, Destination::MulticastV6);
    // Names compare case-insensitively.
    let q = query(&[(&name("WEB1.Local"), RecordType::AAAA, false)], vec![]);
    assert_eq!(ask(&mut r, now, peer4(), &q).len(), 1);
    assert_eq!(r.counters().queries_answered, 3);
}

#[test]
fn shared_answers_wait_20_to_120_ms_and_bring_srv_txt_and_addresses() {
    let mut r = claimed();
    let now = at(5000);
    let q = query(
        &[(&name("_http._tcp.local"), RecordType::PTR, false)],
        vec![],
    );
    assert!(ask(&mut r, now, peer4(), &q).is_empty(), "not at once");
    let due = r.poll_timeout().unwrap();
    assert!(due >= now + Duration::from_millis(20) && due <= now + Duration::from_millis(120));
    r.handle_timeout(due);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, Destination::MulticastV4);
    let m = parse(&out[0]);
    assert_eq!(types(&m.answers), [RecordType::PTR]);
    let mut add = types(&m.additionals);
    add.sort_by_key(|t| u16::from(*t));
    assert_eq!(
        add,
        [
            RecordType::A,
            RecordType::TXT,
            RecordType::AAAA,
            RecordType::SRV
        ],
        "RFC 6763 12.1"
    );
    // Service type enumeration (RFC 6763 9).
    let q = query(
        &[(
            &name("_services._dns-sd._udp.local"),
            RecordType::PTR,
            false,
        )],
        vec![],
    );
    ask(&mut r, at(7000), peer4(), &q);
    let out = run_until(&mut r, at(7200));
    let m = parse(&out[0].1);
    assert_eq!(m.answers[0].data, RData::PTR(PTR(name("_http._tcp.local"))));
}

#[test]
fn known_answers_with_half_the_ttl_left_are_not_repeated() {
    let mut r = claimed();
    let ptr = |ttl| {
        Record::from_rdata(
            name("_http._tcp.local"),
            ttl,
            RData::PTR(PTR(instance("web1", "_http._tcp"))),
        )
    };
    let q = |ttl| {
        query(
            &[(&name("_http._tcp.local"), RecordType::PTR, false)],
            vec![ptr(ttl)],
        )
    };
    ask(&mut r, at(5000), peer4(), &q(2250));
    assert!(run_until(&mut r, at(5500)).is_empty(), "7.1: TTL >= 4500/2");
    ask(&mut r, at(6000), peer4(), &q(2249));
    assert_eq!(run_until(&mut r, at(6500)).len(), 1);
}

#[test]
fn truncated_queries_wait_for_their_known_answers() {
    let mut r = claimed();
    let ptr = Record::from_rdata(
        name("_http._tcp.local"),
        4500,
        RData::PTR(PTR(instance("web1", "_http._tcp"))),
    );
    let mut q = query(
        &[(&name("_http._tcp.local"), RecordType::PTR, false)],
        vec![],
    );
    q.metadata.truncation = true;
    let now = at(5000);
    ask(&mut r, now, peer4(), &q);
    let due = r.poll_timeout().unwrap();
    assert!(
        due >= now + Duration::from_millis(400) && due <= now + Duration::from_millis(500),
        "7.2"
    );
    // The rest of the known answers lists ours: no answer.
    let mut cont = Message::new(0, MessageType::Query, OpCode::Query);
    cont.answers = vec![ptr];
    ask(&mut r, now + Duration::from_millis(50), peer4(), &cont);
    assert!(run_until(&mut r, at(6000)).is_empty());
    // Without a continuation: answered, after the TC wait.
    ask(&mut r, at(7000), peer4(), &q);
    let out = run_until(&mut r, at(8000));
    assert_eq!(out.len(), 1);
    assert!(out[0].0 >= at(7400));
}

#[test]
fn a_record_is_multicast_once_a_second_but_defends_a_probe_after_250ms() {
    let mut r = claimed();
    let q = query(&[(&name("web1.local"), RecordType::A, false)], vec![]);
    assert_eq!(ask(&mut r, at(5000), peer4(), &q).len(), 1);
    assert!(
        ask(&mut r, at(5900), peer4(), &q).is_empty(),
        "6: rate limit"
    );
    // The other family is another link's worth of caches.
    assert_eq!(ask(&mut r, at(5900), peer6(), &q).len(), 1);
    assert_eq!(ask(&mut r, at(6000), peer4(), &q).len(), 1);
    // A probe for our name: defended after 250 ms.
    let probe = probe_from_peer(Ipv4Addr::new(192, 0, 2, 200));
    let mut probe_qm = probe.clone();
    probe_qm.queries[0].set_mdns_unicast_response(false);
    // (Its AAAA was last multicast in the announcement: that goes at once.)
    let answered = |out: Vec<Transmit>| -> Vec<RecordType> {
        out.iter().flat_map(|t| types(&parse(t).answers)).collect()
    };
    let out = ask(&mut r, at(6200), peer4(), &probe_qm);
    assert_eq!(answered(out), [RecordType::AAAA]);
    let out = ask(&mut r, at(6250), peer4(), &probe_qm);
    assert_eq!(out[0].to, Destination::MulticastV4);
    assert_eq!(answered(out), [RecordType::A]);
}

#[test]
fn qu_questions_get_unicast_unless_not_multicast_for_a_quarter_ttl() {
    let mut r = claimed(); // announced at <= 2 s
    let mut q = query(&[(&name("web1.local"), RecordType::A, true)], vec![]);
    q.metadata.id = 0x4242;
    let out = ask(&mut r, at(5000), peer4(), &q);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, Destination::Unicast(peer4()), "5.4");
    assert_eq!(parse(&out[0]).metadata.id, 0x4242, "18.1");
    // 120 s / 4 = 30 s after the last multicast: everyone gets it.
    let out = ask(&mut r, at(33_000), peer4(), &q);
    assert_eq!(out[0].to, Destination::MulticastV4);
    let out = ask(&mut r, at(34_000), peer4(), &q);
    assert_eq!(out[0].to, Destination::Unicast(peer4()));
}

#[test]
fn legacy_unicast_echoes_id_and_question_with_short_ttls_and_no_cache_flush() {
    let mut r = claimed();
    let from = SocketAddr::new(peer4().ip(), 40000);
    let host = name("web1.local");
    let mut q = query(&[(&host, RecordType::A, false)], vec![]);
    q.metadata.id = 0x1234;
    let out = ask(&mut r, at(5000), from, &q);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, Destination::Unicast(from), "6.7");
    let m = parse(&out[0]);
    assert_eq!(m.metadata.id, 0x1234);
    assert_eq!(m.queries.len(), 1);
    assert_eq!(m.queries[0].name, name("web1.local"));
    for rec in m.answers.iter().chain(&m.additionals) {
        assert!(rec.ttl <= 10);
        assert!(!rec.mdns_cache_flush);
    }
    assert_eq!(types(&m.answers), [RecordType::A]);
    // Hundreds of questions (each type a NSEC answer) still make one reply
    // of at most 1440 bytes.
    let many: Vec<(&Name, RecordType, bool)> = (1000..1400u16)
        .map(|t| (&host, RecordType::from(t), false))
        .collect();
    let out = ask(&mut r, at(6000), from, &query(&many, vec![]));
    assert_eq!(out.len(), 1);
    assert!(parse(&out[0]).queries.len() <= 8);
}

#[test]
fn other_names_and_queries_while_probing_get_nothing() {
    let mut r = Responder::new(config(), 5).unwrap();
    r.set_addresses(at(0), &[V4], &[V6]);
    let q = query(&[(&name("web1.local"), RecordType::A, false)], vec![]);
    assert!(
        ask(&mut r, at(10), peer4(), &q).is_empty(),
        "8.1: not ours yet"
    );
    run_until(&mut r, at(3000));
    for n in ["web2.local", "_ipp._tcp.local", "web1.lan", "local"] {
        let q = query(&[(&name(n), RecordType::ANY, false)], vec![]);
        assert!(ask(&mut r, at(5000), peer4(), &q).is_empty(), "{n}");
    }
    let q = query(
        &[(&instance("web2", "_http._tcp"), RecordType::SRV, false)],
        vec![],
    );
    assert!(ask(&mut r, at(5000), peer4(), &q).is_empty());
    // A non-zero opcode is ignored (18.3).
    let mut q = query(&[(&name("web1.local"), RecordType::A, false)], vec![]);
    q.metadata.op_code = OpCode::Status;
    assert!(ask(&mut r, at(5000), peer4(), &q).is_empty());
    assert_eq!(r.counters().queries_answered, 0);
}

#[test]
fn reverse_lookups_are_answered_for_our_addresses_only() {
    let mut r = claimed();
    let q = query(
        &[(&name("5.2.0.192.in-addr.arpa"), RecordType::PTR, false)],
        vec![],
    );
    let out = ask(&mut r, at(5000), peer4(), &q);
    assert_eq!(out.len(), 1);
    let m = parse(&out[0]);
    assert_eq!(m.answers[0].data, RData::PTR(PTR(name("web1.local"))));
    let q = query(&[(&Name::from(V6), RecordType::PTR, false)], vec![]);
    assert_eq!(ask(&mut r, at(5000), peer6(), &q).len(), 1);
    let q = query(
        &[(&name("9.2.0.192.in-addr.arpa"), RecordType::PTR, false)],
        vec![],
    );
    assert!(ask(&mut r, at(5000), peer4(), &q).is_empty());
}

#[test]
fn a_missing_family_is_denied_with_nsec() {
    let mut r = claimed_with(config(), &[V4], &[]);
    let q = query(&[(&name("web1.local"), RecordType::AAAA, false)], vec![]);
    let out = ask(&mut r, at(5000), peer4(), &q);
    assert_eq!(out.len(), 1, "6.1");
    let m = parse(&out[0]);
    assert_eq!(types(&m.answers), [RecordType::NSEC]);
    let nsec = &m.answers[0];
    assert!(nsec.mdns_cache_flush);
    // Next name = the name itself (uncompressed), window 0, bitmap: A only.
    let rd = rdata_bytes(nsec);
    let mut want = Vec::new();
    for l in ["web1", "local"] {
        want.push(l.len() as u8);
        want.extend_from_slice(l.as_bytes());
    }
    want.extend_from_slice(&[0, 0, 1, 0x40]);
    assert_eq!(rd, want);
    // An A answer says the same in the additional section.
    let q = query(&[(&name("web1.local"), RecordType::A, false)], vec![]);
    let m = parse(&ask(&mut r, at(6000), peer4(), &q)[0]);
    assert_eq!(types(&m.additionals), [RecordType::NSEC]);
}

#[test]
fn an_address_change_says_goodbye_to_the_old_and_announces_the_new_without_probing() {
    let mut r = claimed_with(config(), &[V4], &[]);
    let new = Ipv4Addr::new(192, 0, 2, 6);
    r.set_addresses(at(5000), &[new], &[]);
    let mut out = drain(&mut r);
    out.extend(run_until(&mut r, at(8000)).into_iter().map(|(_, t)| t));
    let msgs: Vec<Message> = out.iter().map(parse).collect();
    assert!(
        msgs.iter()
            .all(|m| m.metadata.message_type == MessageType::Response)
    );
    let bye = &msgs[0];
    let said: Vec<(&Name, &RData, u32)> = bye
        .answers
        .iter()
        .map(|r| (&r.name, &r.data, r.ttl))
        .collect();
    let host = name("web1.local");
    let rev = name("5.2.0.192.in-addr.arpa");
    assert_eq!(
        said,
        [
            (&host, &RData::A(A(V4)), 0),
            (&rev, &RData::PTR(PTR(host.clone())), 0)
        ],
        "10.1: the old address and its reverse mapping"
    );
    assert_eq!(msgs.len(), 3, "a goodbye and two announcements");
    for m in &msgs[1..] {
        let a: Vec<&RData> = m
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::A)
            .map(|r| &r.data)
            .collect();
        assert_eq!(a, [&RData::A(A(new))]);
    }
    assert_eq!(r.name().as_deref(), Some("web1.local"));
}

#[test]
fn losing_every_address_says_goodbye_to_everything_and_probes_again_later() {
    let mut r = claimed();
    r.set_addresses(at(5000), &[], &[]);
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    let m = parse(&out[0]);
    assert_eq!(m.answers.len(), 8);
    assert!(m.answers.iter().all(|r| r.ttl == 0));
    assert_eq!(events(&mut r), vec![Event::Gone]);
    assert_eq!(r.name(), None);
    assert_eq!(r.poll_timeout(), None);
    assert!(
        !r.owns(&name("5.2.0.192.in-addr.arpa")),
        "the address is gone"
    );
    r.set_addresses(at(9000), &[V4], &[]);
    let sent = run_until(&mut r, at(12_000));
    assert_eq!(
        parse(&sent[0].1).metadata.message_type,
        MessageType::Query,
        "8: probe again"
    );
    assert_eq!(r.name().as_deref(), Some("web1.local"));
}

#[test]
fn a_conflict_after_claiming_probes_again_and_renames_if_it_persists() {
    let mut r = claimed();
    let taken = a_record("web1.local", Ipv4Addr::new(192, 0, 2, 77), 120);
    r.handle_packet(at(5000), peer4(), &response(vec![taken.clone()]));
    assert_eq!(r.name(), None, "9: probing again");
    let first = r.poll_timeout().unwrap();
    assert!(first <= at(5250));
    r.handle_timeout(first);
    let probe = parse(&drain(&mut r)[0]);
    assert_eq!(probe.queries[0].name, name("web1.local"));
    // The other host defends: we rename.
    r.handle_packet(first, peer4(), &response(vec![taken]));
    assert_eq!(
        events(&mut r),
        vec![Event::Conflict {
            name: "web1.local".into(),
            next: "web1-2.local".into()
        }]
    );
    run_until(&mut r, at(10_000));
    assert_eq!(r.name().as_deref(), Some("web1-2.local"));
    assert_eq!(r.counters().conflicts, 2);
}

#[test]
fn shutdown_says_goodbye_and_then_stays_quiet() {
    let mut r = claimed();
    r.shutdown(at(5000));
    let out = drain(&mut r);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, Destination::Multicast);
    assert!(parse(&out[0]).answers.iter().all(|r| r.ttl == 0));
    assert_eq!(events(&mut r), vec![Event::Gone]);
    let q = query(&[(&name("web1.local"), RecordType::A, false)], vec![]);
    assert!(ask(&mut r, at(6000), peer4(), &q).is_empty());
    r.set_addresses(at(6000), &[V4, Ipv4Addr::new(192, 0, 2, 8)], &[]);
    assert!(drain(&mut r).is_empty());
    assert_eq!(r.poll_timeout(), None);
    // Before any announcement there is nothing to say goodbye to.
    let mut r = Responder::new(config(), 1).unwrap();
    r.set_addresses(at(0), &[V4], &[]);
    r.shutdown(at(1));
    assert!(drain(&mut r).is_empty());
    assert_eq!(
        events(&mut r),
        vec![Event::Gone],
        "the shell may wait for it"
    );
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn large_record_sets_are_split_into_packets_of_at_most_1440_bytes() {
    let mut c = config();
    c.services = (0..12)
        .map(|i| Service {
            instance: format!("service number {i} with a longish name"),
            service_type: "_http._tcp".into(),
            port: 8000 + i,
            txt: vec![format!("k={}", "v".repeat(250)); 4],
        })
        .collect();
    let mut r = Responder::new(c, 9).unwrap();
    r.set_addresses(at(0), &[V4], &[V6]);
    let sent = run_until(&mut r, at(1000));
    let first_probe: Vec<Message> = sent
        .iter()
        .filter(|(t, _)| *t == sent[0].0)
        .map(|(_, t)| parse(t))
        .collect();
    assert!(first_probe.len() > 1, "the probe is split");
    let probed: usize = first_probe.iter().map(|m| m.queries.len()).sum();
    assert_eq!(probed, 13);
    let ann: Vec<Message> = sent
        .iter()
        .map(|(_, t)| parse(t))
        .filter(|m| m.metadata.message_type == MessageType::Response)
        .collect();
    assert!(ann.len() > 1);
    let records: usize = ann.iter().map(|m| m.answers.len()).sum();
    assert_eq!(
        records,
        2 + 2 + 1 + 12 * 3,
        "A, AAAA, their reverse PTRs, one meta PTR, PTR+SRV+TXT each"
    );
}

#[test]
fn oversize_and_garbage_packets_are_counted_and_dropped() {
    let mut r = claimed();
    let q = query(&[(&name("web1.local"), RecordType::A, false)], vec![]);
    let mut big = bytes(&q);
    big.resize(MAX_RECEIVED + 1, 0);
    r.handle_packet(at(5000), peer4(), &big);
    assert_eq!(r.counters().oversize, 1, "17");
    for junk in [
        &[][..],
        &[0xff; 11],
        &[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c],
    ] {
        r.handle_packet(at(5000), peer4(), junk);
    }
    assert_eq!(r.counters().malformed, 3);
    assert!(drain(&mut r).is_empty());
}

#[test]
fn invalid_configs_are_refused() {
    let mut c = config();
    c.hostname = "web_1".into();
    assert!(matches!(
        Responder::new(c, 0),
        Err(ConfigError::Hostname(_))
    ));
}
