//! Target `mdns`: the mDNS responder (`netcontainer-mdns`) driven by a script of
//! received packets, clock advances, address changes and a shutdown, from each
//! state it can be in (idle, probing, claimed with both families or IPv4 only,
//! shut down).
//!
//! Script format (any bytes are a script): byte 0 picks the start state
//! ([`Start`]), byte 1 the responder's seed; then ops, each an op byte:
//! `0` a packet (a source byte, a u16 BE length, the bytes: a length past the
//! end takes what is left), `1` advance the clock by a u16 BE of milliseconds
//! and run the due timeouts, `2` new addresses (a selector byte), `3` shutdown;
//! any other op byte makes the rest of the input one packet from a peer.
//!
//! Invariants after every op: no panic; every transmit parses back as DNS and
//! is at most [`MAX_PAYLOAD`] bytes (so at most the 9000 of RFC 6762 17); every
//! name it asks or answers for is one the responder owned before or after the
//! op; a unicast goes only to a source of the script's packets; after
//! `handle_timeout(now)` the next deadline is later than `now` (a shell would
//! spin otherwise).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use netcontainer_mdns::hickory_proto::op::{Message, MessageType, OpCode, Query};
use netcontainer_mdns::hickory_proto::rr::rdata::{A, PTR, SRV};
use netcontainer_mdns::hickory_proto::rr::{Name, RData, Record, RecordType};
use netcontainer_mdns::{Config, Destination, MAX_PAYLOAD, Responder, Service};

use crate::mutate::mutate;
use crate::rng::Rng;

const OWN_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 5);
const OWN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5);

/// The sources a packet may come from (the source byte, modulo 5).
fn source(b: u8) -> SocketAddr {
    match b % 5 {
        0 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)), 5353),
        1 => SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 9)),
            5353,
        ),
        // A conventional resolver (RFC 6762 6.7).
        2 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)), 40000),
        // Our own packets looped back.
        3 => SocketAddr::new(IpAddr::V4(OWN_V4), 5353),
        _ => SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 9)), 5353),
    }
}

fn addresses(sel: u8) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
    match sel % 5 {
        0 => (vec![], vec![]),
        1 => (vec![OWN_V4], vec![]),
        2 => (vec![OWN_V4], vec![OWN_V6]),
        3 => (vec![Ipv4Addr::new(192, 0, 2, 6)], vec![OWN_V6]),
        _ => (
            (1..=20).map(|i| Ipv4Addr::new(192, 0, 2, i)).collect(),
            vec![OWN_V6],
        ),
    }
}

/// Where a script starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    Idle,
    Probing,
    Claimed,
    ClaimedV4Only,
    Shutdown,
}

impl Start {
    pub const ALL: [Start; 5] = [
        Start::Idle,
        Start::Probing,
        Start::Claimed,
        Start::ClaimedV4Only,
        Start::Shutdown,
    ];

    fn of(b: u8) -> Start {
        Start::ALL[usize::from(b) % Start::ALL.len()]
    }

    pub fn byte(self) -> u8 {
        Start::ALL.iter().position(|s| *s == self).unwrap_or(0) as u8
    }
}

/// One step of a script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Packet { from: u8, data: Vec<u8> },
    Advance(u16),
    Addresses(u8),
    Shutdown,
}

impl Op {
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Op::Packet { from, data } => {
                out.extend_from_slice(&[0, *from]);
                let n = data.len().min(usize::from(u16::MAX));
                out.extend_from_slice(&(n as u16).to_be_bytes());
                out.extend_from_slice(&data[..n]);
            }
            Op::Advance(ms) => {
                out.push(1);
                out.extend_from_slice(&ms.to_be_bytes());
            }
            Op::Addresses(sel) => out.extend_from_slice(&[2, *sel]),
            Op::Shutdown => out.push(3),
        }
    }
}

/// Reads a script; never fails (see the module docs).
pub fn decode_script(b: &[u8]) -> (Start, u8, Vec<Op>) {
    let start = Start::of(b.first().copied().unwrap_or(0));
    let seed = b.get(1).copied().unwrap_or(0);
    let mut ops = Vec::new();
    let mut i = 2;
    let byte = |i: usize| b.get(i).copied().unwrap_or(0);
    while i < b.len() {
        match b[i] {
            0 => {
                let from = byte(i + 1);
                let n = usize::from(u16::from_be_bytes([byte(i + 2), byte(i + 3)]));
                let s = (i + 4).min(b.len());
                let e = (s + n).min(b.len());
                ops.push(Op::Packet {
                    from,
                    data: b[s..e].to_vec(),
                });
                i = e;
            }
            1 => {
                ops.push(Op::Advance(u16::from_be_bytes([byte(i + 1), byte(i + 2)])));
                i += 3;
            }
            2 => {
                ops.push(Op::Addresses(byte(i + 1)));
                i += 2;
            }
            3 => {
                ops.push(Op::Shutdown);
                i += 1;
            }
            _ => {
                ops.push(Op::Packet {
                    from: 0,
                    data: b[i + 1..].to_vec(),
                });
                i = b.len();
            }
        }
    }
    (start, seed, ops)
}

pub fn encode_script(start: Start, seed: u8, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![start.byte(), seed];
    for op in ops {
        op.encode(&mut out);
    }
    out
}

/// The host the target publishes: two services, one with an empty TXT.
pub fn config() -> Config {
    Config {
        hostname: "web1".into(),
        services: vec![
            Service {
                instance: "web1".into(),
                service_type: "_http._tcp".into(),
                port: 8080,
                txt: vec!["path=/".into(), "v=1".into()],
            },
            Service {
                instance: "Printer (lab)".into(),
                service_type: "_ipp._tcp".into(),
                port: 631,
                txt: vec![],
            },
        ],
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub runs: u64,
    pub packets: u64,
    pub transmits: u64,
    pub claimed: u64,
    pub conflicts: u64,
}

pub struct MdnsTarget {
    seeds: Vec<(&'static str, Vec<u8>)>,
    /// The sources of this run's packets: the only unicast destinations.
    asked: Vec<SocketAddr>,
    pub stats: Stats,
}

impl Default for MdnsTarget {
    fn default() -> Self {
        MdnsTarget::new()
    }
}

fn name(s: &str) -> Name {
    Name::from_labels(s.split('.').map(str::as_bytes)).expect("a seed name")
}

fn msg(id: u16, kind: MessageType) -> Message {
    let mut m = Message::new(id, kind, OpCode::Query);
    m.metadata.authoritative = kind == MessageType::Response;
    m
}

fn question(n: &str, t: RecordType, qu: bool) -> Query {
    let mut q = Query::query(name(n), t);
    q.set_mdns_unicast_response(qu);
    q
}

fn encoded(m: &Message) -> Vec<u8> {
    m.to_vec().expect("a seed encodes")
}

/// Seed packets as avahi, python-zeroconf and a conventional resolver send
/// them, built by hand (names of the host in [`config`]).
fn seed_packets() -> Vec<(&'static str, u8, Vec<u8>)> {
    let http = "_http._tcp.local";
    let inst = Name::from_labels(["web1", "_http", "_tcp", "local"].map(str::as_bytes)).unwrap();
    let ptr = Record::from_rdata(name(http), 4500, RData::PTR(PTR(inst.clone())));
    let mut out = Vec::new();

    // avahi-browse _http._tcp: one QM question, ID 0.
    let mut m = msg(0, MessageType::Query);
    m.queries.push(question(http, RecordType::PTR, false));
    out.push(("avahi-browse-http", 0, encoded(&m)));
    // python-zeroconf's first browse query asks QU, over IPv6 here.
    let mut m = msg(0, MessageType::Query);
    m.queries.push(question(http, RecordType::PTR, true));
    out.push(("zeroconf-browse-qu-v6", 1, encoded(&m)));
    // avahi-browse -a: service type enumeration (RFC 6763 9).
    let mut m = msg(0, MessageType::Query);
    m.queries.push(question(
        "_services._dns-sd._udp.local",
        RecordType::PTR,
        false,
    ));
    out.push(("avahi-browse-all", 0, encoded(&m)));
    // avahi-resolve -n web1.local: A and AAAA in one query.
    let mut m = msg(0, MessageType::Query);
    m.queries.push(question("web1.local", RecordType::A, false));
    m.queries
        .push(question("web1.local", RecordType::AAAA, false));
    out.push(("avahi-resolve-host", 0, encoded(&m)));
    // zeroconf resolving an instance: SRV and TXT, QU.
    let mut m = msg(0, MessageType::Query);
    for t in [RecordType::SRV, RecordType::TXT] {
        let mut q = Query::query(inst.clone(), t);
        q.set_mdns_unicast_response(true);
        m.queries.push(q);
    }
    out.push(("zeroconf-resolve-instance", 0, encoded(&m)));
    // A browse repeated with its known answer (RFC 6762 7.1).
    let mut m = msg(0, MessageType::Query);
    m.queries.push(question(http, RecordType::PTR, false));
    m.answers.push(ptr.clone());
    out.push(("avahi-browse-known-answer", 0, encoded(&m)));
    // A truncated query (7.2) whose known answers follow in a second packet.
    let mut m = msg(0, MessageType::Query);
    m.metadata.truncation = true;
    m.queries.push(question(http, RecordType::PTR, false));
    out.push(("truncated-query", 0, encoded(&m)));
    let mut m = msg(0, MessageType::Query);
    m.answers.push(ptr);
    out.push(("truncated-continuation", 0, encoded(&m)));
    // dig -p 5353 @224.0.0.251 web1.local: legacy unicast (6.7), RD set.
    let mut m = msg(0x5e1f, MessageType::Query);
    m.metadata.recursion_desired = true;
    m.queries.push(question("web1.local", RecordType::A, false));
    out.push(("dig-legacy-unicast", 2, encoded(&m)));
    // Another host probing for our name (8.1), with its proposed address.
    let mut m = msg(0, MessageType::Query);
    m.queries
        .push(question("web1.local", RecordType::ANY, true));
    m.authorities.push(Record::from_rdata(
        name("web1.local"),
        120,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 200))),
    ));
    out.push(("avahi-probe-competitor", 0, encoded(&m)));
    // Another host announcing our name and instance (a conflict, 9).
    let mut m = msg(0, MessageType::Response);
    let mut a = Record::from_rdata(
        name("web1.local"),
        120,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 77))),
    );
    a.mdns_cache_flush = true;
    let mut srv = Record::from_rdata(
        inst,
        120,
        RData::SRV(SRV::new(0, 0, 80, name("other.local"))),
    );
    srv.mdns_cache_flush = true;
    m.answers = vec![a.clone(), srv];
    out.push(("avahi-announce-conflict", 0, encoded(&m)));
    // Its goodbye (10.1).
    let mut m = msg(0, MessageType::Response);
    a.ttl = 0;
    m.answers = vec![a];
    out.push(("avahi-goodbye", 1, encoded(&m)));
    out
}

impl MdnsTarget {
    pub fn new() -> MdnsTarget {
        let mut seeds = Vec::new();
        for (what, from, p) in seed_packets() {
            let starts: &[Start] = match what {
                "avahi-probe-competitor" | "avahi-announce-conflict" => {
                    &[Start::Probing, Start::Claimed]
                }
                "truncated-query" => continue,
                "truncated-continuation" => {
                    let (_, _, q) = seed_packets()
                        .into_iter()
                        .find(|(n, _, _)| *n == "truncated-query")
                        .expect("seed");
                    let ops = [
                        Op::Packet { from, data: q },
                        Op::Advance(50),
                        Op::Packet { from, data: p },
                        Op::Advance(500),
                    ];
                    seeds.push((
                        "claimed-truncated-query",
                        encode_script(Start::Claimed, 1, &ops),
                    ));
                    continue;
                }
                _ => &[Start::Claimed],
            };
            for start in starts {
                let ops = [
                    Op::Packet {
                        from,
                        data: p.clone(),
                    },
                    Op::Advance(200),
                    Op::Advance(3000),
                ];
                let label = match (start, what) {
                    (Start::Probing, "avahi-probe-competitor") => "probing-avahi-probe-competitor",
                    (Start::Probing, _) => "probing-avahi-announce-conflict",
                    (_, "avahi-probe-competitor") => "claimed-avahi-probe-competitor",
                    (_, "avahi-announce-conflict") => "claimed-avahi-announce-conflict",
                    _ => what,
                };
                seeds.push((label, encode_script(*start, 1, &ops)));
            }
        }
        let lifecycle = [
            Op::Advance(3000),
            Op::Addresses(3),
            Op::Advance(2000),
            Op::Addresses(0),
            Op::Addresses(4),
            Op::Advance(4000),
            Op::Shutdown,
        ];
        seeds.push(("idle-lifecycle", encode_script(Start::Idle, 2, &lifecycle)));
        MdnsTarget {
            seeds,
            asked: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// The seed scripts, by name (the committed corpus `fuzz/corpus/mdns/`).
    pub fn seeds(&self) -> &[(&'static str, Vec<u8>)] {
        &self.seeds
    }

    /// The raw seed packets (for the corpus test: each must parse as DNS).
    pub fn seed_packets() -> Vec<Vec<u8>> {
        seed_packets().into_iter().map(|(_, _, p)| p).collect()
    }

    pub fn generate(&mut self, rng: &mut Rng, input: &mut Vec<u8>) {
        let (_, base) = &self.seeds[rng.below(self.seeds.len())];
        let (start, seed, mut ops) = decode_script(base);
        let packets = Self::seed_packets();
        // Mutate the packets, now and then add ops or change the start.
        for op in &mut ops {
            if let Op::Packet { data, from } = op {
                if rng.chance(70) {
                    let other = &packets[rng.below(packets.len())];
                    mutate(rng, data, other, 4);
                }
                if rng.chance(10) {
                    *from = rng.u8();
                }
            }
        }
        for _ in 0..rng.below(4) {
            let at = rng.below(ops.len() + 1);
            let op = match rng.below(5) {
                0 => Op::Advance(rng.below(5000) as u16),
                1 => Op::Addresses(rng.u8()),
                2 if rng.chance(20) => Op::Shutdown,
                3 if rng.chance(30) => Op::Packet {
                    from: rng.u8(),
                    data: Self::many_questions(rng),
                },
                _ => {
                    let mut data = packets[rng.below(packets.len())].clone();
                    let other = rng.below(packets.len());
                    mutate(rng, &mut data, &packets[other], 3);
                    Op::Packet {
                        from: rng.u8(),
                        data,
                    }
                }
            };
            ops.insert(at, op);
        }
        let start = if rng.chance(15) {
            Start::of(rng.u8())
        } else {
            start
        };
        input.extend(encode_script(start, seed ^ rng.u8(), &ops));
    }

    /// A well-formed query with up to 1400 questions (about 9000 bytes) for our names, of any
    /// type and either response bit, and a few known answers: what blind
    /// byte mutation does not reach (a legacy reply once echoed all of them).
    fn many_questions(rng: &mut Rng) -> Vec<u8> {
        let names = [
            "web1.local",
            "web1.local",
            "web1.local",
            "web1-2.local",
            "_http._tcp.local",
            "_services._dns-sd._udp.local",
            "WEB1.LOCAL",
        ];
        let mut m = msg(rng.u8().into(), MessageType::Query);
        m.metadata.truncation = rng.chance(20);
        for _ in 0..rng.range(1, 1400) {
            let t = if rng.chance(30) {
                *rng.pick(&[
                    RecordType::A,
                    RecordType::AAAA,
                    RecordType::ANY,
                    RecordType::PTR,
                ])
            } else {
                RecordType::from(rng.below(65536) as u16)
            };
            let n = *rng.pick(&names);
            m.queries.push(question(n, t, rng.chance(50)));
        }
        for _ in 0..rng.below(4) {
            m.answers.push(Record::from_rdata(
                name("web1.local"),
                rng.below(300) as u32,
                RData::A(A(OWN_V4)),
            ));
        }
        m.to_vec().unwrap_or_default()
    }

    /// Runs one script and checks the invariants of the module docs.
    pub fn run(&mut self, input: &[u8]) {
        let (start, seed, ops) = decode_script(input);
        self.stats.runs += 1;
        self.asked.clear();
        let mut r =
            Responder::new(config(), u64::from(seed)).expect("the target's config is valid");
        let base = Instant::now();
        let mut now = base;
        self.reach(&mut r, start, &mut now);
        for op in ops {
            let before = self.owned(&r);
            match op {
                Op::Packet { from, data } => {
                    let from = source(from);
                    if !self.asked.contains(&from) {
                        self.asked.push(from);
                    }
                    self.stats.packets += 1;
                    r.handle_packet(now, from, &data);
                }
                Op::Advance(ms) => {
                    let until = now + Duration::from_millis(u64::from(ms));
                    self.advance(&mut r, &mut now, until, &before);
                    continue;
                }
                Op::Addresses(sel) => {
                    let (v4, v6) = addresses(sel);
                    r.set_addresses(now, &v4, &v6);
                }
                Op::Shutdown => r.shutdown(now),
            }
            self.check(&mut r, &before);
        }
        let before = self.owned(&r);
        self.advance(&mut r, &mut now, base + Duration::from_secs(3600), &before);
    }

    /// Brings a fresh responder to `start`.
    fn reach(&mut self, r: &mut Responder, start: Start, now: &mut Instant) {
        let until = *now + Duration::from_secs(3);
        let owned = self.owned(r);
        match start {
            Start::Idle => {}
            Start::Probing => {
                r.set_addresses(*now, &[OWN_V4], &[OWN_V6]);
                let first = r.poll_timeout().expect("probing is due");
                self.advance(r, now, first, &owned);
            }
            Start::Claimed | Start::Shutdown => {
                r.set_addresses(*now, &[OWN_V4], &[OWN_V6]);
                self.advance(r, now, until, &owned);
                if start == Start::Shutdown {
                    r.shutdown(*now);
                    self.check(r, &owned);
                }
            }
            Start::ClaimedV4Only => {
                r.set_addresses(*now, &[OWN_V4], &[]);
                self.advance(r, now, until, &owned);
            }
        }
    }

    /// Runs the deadlines up to `until` (bounded: a responder that keeps
    /// scheduling would be a bug, caught by the deadline check).
    fn advance(&mut self, r: &mut Responder, now: &mut Instant, until: Instant, owned: &[Name]) {
        let mut owned = owned.to_vec();
        for _ in 0..1000 {
            match r.poll_timeout() {
                Some(t) if t <= until => {
                    *now = (*now).max(t);
                    r.handle_timeout(*now);
                    if let Some(next) = r.poll_timeout() {
                        assert!(next > *now, "handle_timeout({now:?}) left {next:?} due");
                    }
                    self.check(r, &owned);
                    owned = self.owned(r);
                }
                _ => break,
            }
        }
        *now = (*now).max(until);
    }

    fn owned(&self, r: &Responder) -> Vec<Name> {
        let v = r.owned_names();
        assert!(v.iter().all(|n| r.owns(n)));
        v
    }

    fn check(&mut self, r: &mut Responder, before: &[Name]) {
        let now_owned = r.owned_names();
        let ours = |n: &Name| before.contains(n) || now_owned.contains(n);
        while let Some(t) = r.poll_transmit() {
            self.stats.transmits += 1;
            assert!(
                t.payload.len() <= MAX_PAYLOAD,
                "a transmit of {} bytes",
                t.payload.len()
            );
            let m = Message::from_vec(&t.payload).expect("a transmit parses back");
            if let Destination::Unicast(to) = t.to {
                // A truncated query is answered later, from a timeout: to any
                // source of this run, but never to anyone else.
                assert!(self.asked.contains(&to), "unicast to {to}, who did not ask");
            }
            for q in &m.queries {
                assert!(ours(&q.name), "asks or echoes {} (not ours)", q.name);
            }
            for rec in m.answers.iter().chain(&m.authorities).chain(&m.additionals) {
                assert!(
                    ours(&rec.name),
                    "sends a record for {} (not ours)",
                    rec.name
                );
            }
        }
        while let Some(e) = r.poll_event() {
            match e {
                netcontainer_mdns::Event::Claimed { .. } => self.stats.claimed += 1,
                netcontainer_mdns::Event::Conflict { .. } => self.stats.conflicts += 1,
                netcontainer_mdns::Event::Gone => {}
            }
        }
    }
}
