//! Target `dhcp`: the sans-IO DHCP client driven through its states by generated
//! scenarios: start (with or without a previous address), server replies to what it last
//! sent (OFFER/ACK/NAK with absurd option values, then byte-mutated or with raw options of
//! absurd lengths inserted), stray and garbage packets, timeouts at advancing virtual
//! times, release and decline.
//!
//! An input is a script (see [`Op`]) so that a crash file replays exactly; it is written
//! op by op *before* each op runs, so the file of a crash ends with the op that crashed.
//! The coverage-guided libFuzzer target runs its inputs through the same [`Sim`] as
//! scripts ([`DhcpTarget::replay`]; any bytes decode, see [`decode_script`]).
//!
//! Invariants checked after every op (a violation is a panic, i.e. a crash):
//! - no panic in the client;
//! - every transmitted payload decodes with dhcproto, is at least 300 bytes, is a
//!   BOOTREQUEST with our chaddr and client id (61) and a message type;
//! - a REQUEST with ciaddr set (RENEWING/REBINDING) carries neither 50 nor 54; a REQUEST
//!   sent in RENEWING/REBINDING has ciaddr = the lease's address, and goes unicast to the
//!   server (RENEWING) or broadcast (REBINDING); any other REQUEST carries 50;
//! - a RELEASE carries 54 (the lease's server) and not 50, ciaddr = the released address;
//!   a DECLINE carries 50 and 54; a DISCOVER carries no 54;
//! - no lease (event or `lease()`) has an unusable address (0.0.0.0, broadcast, multicast,
//!   loopback) or a prefix length outside 1..=32; a finite lease has 0 < T1 < T2 < lease;
//!   an infinite lease has no timers and, while bound, no deadline;
//! - the client does not spin: driving `handle_timeout(now)` while `poll_timeout() <= now`
//!   (what the agent's loop does) ends within 8 calls.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode};
use dhcproto::{Decodable, Decoder};
pub use netcontainer_lease::testing::insert_raw_option;
use netcontainer_lease::testing::{Reply, find as opt, joined_options};
use netcontainer_lease::v4::{Client, Config, Destination, Event, Lease, Retry, Transmit};
use netcontainer_lease::{State, randomness};

use crate::mutate::mutate;
use crate::rng::Rng;

pub const MAC: [u8; 6] = [0x02, 0x42, 0xc0, 0x00, 0x02, 0x32];
const CID: [u8; 7] = [0xff, 0, 1, 2, 3, 4, 5];
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SERVER2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
const GW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
const DNS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
/// Virtual time never goes beyond this offset (keeps `Instant` arithmetic of the harness
/// far from overflow; the client itself adds at most ~136 years to a time).
const MAX_OFFSET: Duration = Duration::from_secs(1000 * 365 * 86400);
const MAX_SPIN: usize = 8;

// ------------------------------------------------------------------------------------
// Scripts

/// One step of a scenario.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// `None`: `start` (DISCOVER); `Some(a)`: `resume` (INIT-REBOOT for `a`).
    Start(Option<Ipv4Addr>),
    Packet(Vec<u8>),
    /// Advance the virtual clock by this many milliseconds.
    Advance(u64),
    Timeout,
    Release,
    Decline,
    /// A server reply that is addressed to the client before it is handled: its xid and
    /// chaddr are overwritten with those of the client's last transmit. Captured replies
    /// of real servers (the seed corpus), and libFuzzer's mutations of them, then reach
    /// the client's option handling instead of being dropped for a foreign xid.
    Reply(Vec<u8>),
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Start(_) => "Start",
            Op::Packet(_) => "Packet",
            Op::Advance(_) => "Advance",
            Op::Timeout => "Timeout",
            Op::Release => "Release",
            Op::Decline => "Decline",
            Op::Reply(_) => "Reply",
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Op::Start(prev) => {
                out.push(1);
                out.push(prev.is_some() as u8);
                out.extend_from_slice(&prev.unwrap_or(Ipv4Addr::UNSPECIFIED).octets());
            }
            Op::Packet(p) | Op::Reply(p) => {
                out.push(if matches!(self, Op::Packet(_)) { 2 } else { 7 });
                out.extend_from_slice(&(p.len() as u32).to_le_bytes());
                out.extend_from_slice(p);
            }
            Op::Advance(ms) => {
                out.push(3);
                out.extend_from_slice(&ms.to_le_bytes());
            }
            Op::Timeout => out.push(4),
            Op::Release => out.push(5),
            Op::Decline => out.push(6),
        }
    }
}

/// The script header: client rng seed (u64 LE) and config selector (u8).
pub fn encode_header(seed: u64, cfg: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(&seed.to_le_bytes());
    out.push(cfg);
}

/// `n` bytes at `*i` (fewer at the end of `b`, zero-padded), advancing `*i`.
fn take<const N: usize>(b: &[u8], i: &mut usize) -> [u8; N] {
    let mut a = [0u8; N];
    let got = b.get(*i..).unwrap_or_default();
    let n = got.len().min(N);
    a[..n].copy_from_slice(&got[..n]);
    *i += N;
    a
}

/// Decodes a script: header (see [`encode_header`]), then ops as [`Op::encode`] writes them.
///
/// Total, so that any bytes are a script (libFuzzer's mutations do not keep the encoding
/// intact, and an input it grows must still mean something): a short header or an op cut
/// short by the end of the input is zero-padded, a packet's length is clamped to the bytes
/// left, and an unknown op code is skipped. A well-formed script decodes exactly.
pub fn decode_script(b: &[u8]) -> (u64, u8, Vec<Op>) {
    let mut i = 0;
    let seed = u64::from_le_bytes(take(b, &mut i));
    let [cfg] = take(b, &mut i);
    let mut ops = Vec::new();
    while i < b.len() {
        let op = b[i];
        i += 1;
        ops.push(match op {
            1 => {
                let [has] = take(b, &mut i);
                let a: [u8; 4] = take(b, &mut i);
                Op::Start((has != 0).then(|| Ipv4Addr::from(a)))
            }
            2 | 7 => {
                let n = u32::from_le_bytes(take(b, &mut i)) as usize;
                let rest = b.get(i..).unwrap_or_default();
                let p = rest[..n.min(rest.len())].to_vec();
                i += p.len();
                if op == 2 { Op::Packet(p) } else { Op::Reply(p) }
            }
            3 => Op::Advance(u64::from_le_bytes(take(b, &mut i))),
            4 => Op::Timeout,
            5 => Op::Release,
            6 => Op::Decline,
            _ => continue,
        });
    }
    (seed, cfg, ops)
}

fn config(sel: u8) -> Config {
    let hostname = match sel % 5 {
        0 => Some("router1".to_string()),
        1 => None,
        2 => Some("a".repeat(255)),
        3 => Some("host.example.".to_string()),
        _ => Some("...".to_string()),
    };
    Config {
        chaddr: MAC,
        client_id: if sel & 0x10 != 0 {
            Vec::new()
        } else {
            CID.to_vec()
        },
        hostname,
        broadcast_flag: sel & 0x20 != 0,
        request_address: None,
        retry: Retry::default(),
        servers: Default::default(),
    }
}

// ------------------------------------------------------------------------------------
// Invariants

fn usable(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
}

fn check_lease(l: &Lease, what: &str) {
    assert!(
        usable(l.address),
        "{what}: lease with address {}",
        l.address
    );
    assert!(
        (1..=32).contains(&l.prefix_len),
        "{what}: prefix length {}",
        l.prefix_len
    );
    match l.times.valid {
        None => assert!(
            l.times.t1.is_none() && l.times.t2.is_none(),
            "{what}: infinite lease with timers {:?}/{:?}",
            l.times.t1,
            l.times.t2
        ),
        Some(lt) => {
            let (t1, t2) = (l.times.t1.expect("T1"), l.times.t2.expect("T2"));
            assert!(
                Duration::ZERO < t1 && t1 < t2 && t2 < lt,
                "{what}: bad timers T1 {t1:?} T2 {t2:?} lease {lt:?}"
            );
        }
    }
}

fn check_transmit(t: &Transmit, state: State, before: Option<&Lease>, after: Option<&Lease>) {
    let p = &t.payload;
    assert!(p.len() >= 300, "payload of {} bytes (< 300)", p.len());
    let msg = Message::decode(&mut Decoder::new(p))
        .unwrap_or_else(|e| panic!("transmitted payload does not decode: {e}"));
    assert_eq!(msg.opcode(), Opcode::BootRequest);
    assert_eq!(p[2], 6, "hlen");
    assert_eq!(p[28..34], MAC, "chaddr");
    let o = joined_options(p).expect("our own options are well formed");
    assert!(opt(&o, 61).is_some_and(|c| !c.is_empty()), "no client id");
    let mt = opt(&o, 53).expect("message type")[0];
    let ciaddr = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let has = |c| opt(&o, c).is_some();
    match mt {
        1 => {
            assert!(!has(54), "DISCOVER with a server id");
            assert!(ciaddr.is_unspecified(), "DISCOVER with ciaddr");
        }
        3 => {
            if !ciaddr.is_unspecified() {
                assert!(
                    !has(50) && !has(54),
                    "RENEWING/REBINDING REQUEST with option 50 or 54"
                );
                // The lease renewed is the one held before the op, or the one an ACK
                // in this op gave (already past its T1).
                assert!(
                    [before, after]
                        .iter()
                        .any(|l| l.is_some_and(|l| l.address == ciaddr)),
                    "renew REQUEST ciaddr {ciaddr} is not the lease's address ({:?} / {:?})",
                    before.map(|l| l.address),
                    after.map(|l| l.address)
                );
            } else {
                assert!(has(50), "SELECTING/INIT-REBOOT REQUEST without option 50");
            }
            match state {
                State::Renewing => {
                    let l = after.expect("renewing holds a lease");
                    assert_eq!(ciaddr, l.address, "RENEWING REQUEST ciaddr");
                    assert_eq!(
                        t.destination,
                        Destination::Unicast {
                            src: l.address,
                            server: l.server_id
                        }
                    );
                }
                State::Rebinding => {
                    let l = after.expect("rebinding holds a lease");
                    assert_eq!(ciaddr, l.address, "REBINDING REQUEST ciaddr");
                    assert_eq!(t.destination, Destination::Broadcast { src: l.address });
                }
                _ => {}
            }
        }
        4 => {
            assert!(has(50) && has(54), "DECLINE without 50 or 54");
            assert!(ciaddr.is_unspecified(), "DECLINE with ciaddr");
        }
        7 => {
            let l = before.expect("RELEASE without a lease");
            assert!(!has(50), "RELEASE with option 50");
            assert_eq!(
                opt(&o, 54),
                Some(&l.server_id.octets()[..]),
                "RELEASE without the lease's server id"
            );
            assert_eq!(ciaddr, l.address, "RELEASE ciaddr");
            assert!(matches!(t.destination, Destination::Unicast { .. }));
        }
        other => panic!("client sent message type {other}"),
    }
}

// ------------------------------------------------------------------------------------
// Simulation

#[derive(Default, Debug)]
pub struct Stats {
    pub ops: u64,
    pub packets: u64,
    pub bound: u64,
    pub lost: u64,
    pub renewing: u64,
    pub rebinding: u64,
    pub infinite: u64,
    pub transmits: u64,
}

/// A client on a virtual clock, checking the invariants after every op.
pub struct Sim {
    pub client: Client,
    base: Instant,
    off: Duration,
    /// The last payload the client sent (replies are built against it).
    pub last_tx: Option<Vec<u8>>,
    /// Every payload sent, for stale replies.
    pub sent: Vec<Vec<u8>>,
    pub events: Vec<Event>,
    /// Print every op (env NETCONTAINER_FUZZ_TRACE, for replays).
    pub trace: bool,
}

impl Sim {
    pub fn new(seed: u64, cfg: u8) -> Sim {
        Sim {
            client: Client::new(config(cfg), randomness::seeded(seed)),
            base: Instant::now(),
            off: Duration::ZERO,
            last_tx: None,
            sent: Vec::new(),
            events: Vec::new(),
            trace: std::env::var_os("NETCONTAINER_FUZZ_TRACE").is_some(),
        }
    }

    pub fn now(&self) -> Instant {
        self.base + self.off
    }

    /// Milliseconds from now to the client's deadline (0 if due), if it has one.
    pub fn ms_to_deadline(&self) -> Option<u64> {
        let t = self.client.poll_timeout()?;
        // Rounded up: advancing by it reaches the deadline.
        let ns = t.saturating_duration_since(self.now()).as_nanos();
        Some(ns.div_ceil(1_000_000).min(u128::from(u64::MAX)) as u64)
    }

    pub fn apply(&mut self, op: &Op, stats: &mut Stats) {
        stats.ops += 1;
        if self.trace {
            let what = match op {
                Op::Packet(p) | Op::Reply(p) => {
                    format!("{}({} bytes: {:02x?})", op.name(), p.len(), p)
                }
                other => format!("{other:?}"),
            };
            eprintln!(
                "[{:?}] {:?} lease {:?}: {what}",
                self.off,
                self.client.state(),
                self.client.lease().map(|l| l.address)
            );
        }
        let before = self.client.lease().cloned();
        let now = self.now();
        match op {
            Op::Start(None) => self.client.start(now),
            Op::Start(Some(previous)) => self.client.resume(now, *previous),
            Op::Packet(p) => {
                stats.packets += 1;
                self.client.handle_packet(now, p)
            }
            Op::Reply(p) => {
                stats.packets += 1;
                let p = self.addressed(p);
                self.client.handle_packet(now, &p)
            }
            Op::Advance(ms) => {
                self.off = (self.off + Duration::from_millis(*ms)).min(MAX_OFFSET);
                return;
            }
            Op::Timeout => self.client.handle_timeout(now),
            Op::Release => self.client.release(now),
            Op::Decline => self.client.decline(now),
        }
        self.drain(before.as_ref(), stats);
        // What the agent's loop does: while the deadline is due, handle it.
        let mut spins = 0;
        while self.client.poll_timeout().is_some_and(|t| t <= now) {
            spins += 1;
            assert!(
                spins <= MAX_SPIN,
                "client spins: deadline {:?} still due at now after {MAX_SPIN} handle_timeout calls (state {:?})",
                self.client
                    .poll_timeout()
                    .map(|t| t.saturating_duration_since(self.base)),
                self.client.state()
            );
            let before = self.client.lease().cloned();
            self.client.handle_timeout(now);
            self.drain(before.as_ref(), stats);
        }
    }

    /// `p` with the xid and chaddr of the client's last transmit (see [`Op::Reply`]).
    fn addressed(&self, p: &[u8]) -> Vec<u8> {
        let mut p = p.to_vec();
        if let Some(to) = &self.last_tx
            && p.len() >= 34
            && to.len() >= 34
        {
            p[4..8].copy_from_slice(&to[4..8]);
            p[28..34].copy_from_slice(&to[28..34]);
        }
        p
    }

    fn drain(&mut self, before: Option<&Lease>, stats: &mut Stats) {
        let state = self.client.state();
        let after = self.client.lease().cloned();
        match state {
            State::Renewing => stats.renewing += 1,
            State::Rebinding => stats.rebinding += 1,
            _ => {}
        }
        if let Some(l) = &after {
            check_lease(l, "lease()");
            if l.times.valid.is_none() && state == State::Bound {
                assert_eq!(
                    self.client.poll_timeout(),
                    None,
                    "infinite lease with a deadline"
                );
            }
        }
        assert_eq!(
            state.has_lease(),
            after.is_some(),
            "state {state:?} vs lease {after:?}"
        );
        while let Some(t) = self.client.poll_transmit() {
            stats.transmits += 1;
            check_transmit(&t, state, before, after.as_ref());
            self.last_tx = Some(t.payload.clone());
            if self.sent.len() < 64 {
                self.sent.push(t.payload);
            }
        }
        while let Some(e) = self.client.poll_event() {
            match &e {
                Event::Bound(l) => {
                    stats.bound += 1;
                    if l.times.valid.is_none() {
                        stats.infinite += 1;
                    }
                    check_lease(l, "Event::Bound");
                }
                Event::Lost { lease, .. } => {
                    stats.lost += 1;
                    check_lease(lease, "Event::Lost");
                }
            }
            if self.events.len() < 64 {
                self.events.push(e);
            }
        }
    }
}

// ------------------------------------------------------------------------------------
// Server replies

/// A server reply to `to` (its xid; our chaddr) with the given fields, ending at its End
/// option (no padding for mutations to waste themselves on).
pub fn reply(
    to: &[u8],
    mt: MessageType,
    yiaddr: Ipv4Addr,
    server: Option<Ipv4Addr>,
    extra: Vec<DhcpOption>,
) -> Vec<u8> {
    let mut r = Reply::answering(to, mt, yiaddr);
    r.chaddr = MAC;
    r.server_id(server).dhcp_all(extra).encode_unpadded()
}

/// Standard ACK/OFFER options.
pub fn std_opts(lease: u32) -> Vec<DhcpOption> {
    vec![
        DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)),
        DhcpOption::Router(vec![GW]),
        DhcpOption::DomainNameServer(vec![DNS]),
        DhcpOption::AddressLeaseTime(lease),
    ]
}

fn interesting_lease(rng: &mut Rng) -> u32 {
    let r = rng.u32();
    *rng.pick(&[
        0,
        1,
        2,
        8,
        59,
        60,
        120,
        3600,
        86400,
        0x7fff_ffff,
        0xffff_fffe,
        0xffff_ffff,
        r,
    ])
}

fn random_addr(rng: &mut Rng) -> Ipv4Addr {
    let r = rng.u32();
    *rng.pick(&[
        ADDR,
        ADDR,
        ADDR,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::new(198, 51, 100, 1),
        Ipv4Addr::from(r),
    ])
}

/// Options with absurd values, each present or not.
fn absurd_opts(rng: &mut Rng) -> Vec<DhcpOption> {
    let mut o = Vec::new();
    let lease = interesting_lease(rng);
    if !rng.chance(10) {
        o.push(DhcpOption::AddressLeaseTime(lease));
    }
    if rng.chance(40) {
        let r = rng.u32();
        let t1 = *rng.pick(&[
            0,
            1,
            lease / 2,
            lease,
            lease.wrapping_add(1),
            lease / 8 * 7,
            0xffff_ffff,
            r,
        ]);
        o.push(DhcpOption::Renewal(t1));
    }
    if rng.chance(40) {
        let r = rng.u32();
        let t2 = *rng.pick(&[0, 1, lease / 4, lease, lease / 8 * 7, 0xffff_ffff, r]);
        o.push(DhcpOption::Rebinding(t2));
    }
    if !rng.chance(10) {
        let r = rng.u32();
        let mask = *rng.pick(&[
            0xffff_ff00u32,
            0,
            0xffff_ffff,
            0xffff_fffe,
            0xff00_0000,
            0xff00_ff00,
            0x8000_0000,
            r,
        ]);
        o.push(DhcpOption::SubnetMask(Ipv4Addr::from(mask)));
    }
    match rng.below(7) {
        0 => {}
        1 => o.push(DhcpOption::Router(vec![GW])),
        2 => o.push(DhcpOption::Router(vec![Ipv4Addr::UNSPECIFIED, GW])),
        3 => o.push(DhcpOption::Router(vec![Ipv4Addr::new(198, 51, 100, 1)])),
        4 => o.push(DhcpOption::Router(
            (0..200u32)
                .map(|i| Ipv4Addr::from(0xc000_0200 + i))
                .collect(),
        )),
        5 => o.push(DhcpOption::Router(vec![Ipv4Addr::BROADCAST])),
        _ => o.push(DhcpOption::Router(Vec::new())),
    }
    if rng.chance(50) {
        let n = *rng.pick(&[0usize, 1, 3, 100]);
        o.push(DhcpOption::DomainNameServer(
            (0..n)
                .map(|i| Ipv4Addr::from(0xc000_0235 + i as u32))
                .collect(),
        ));
    }
    if rng.chance(10) {
        o.push(DhcpOption::Hostname("h".repeat(255)));
    }
    if rng.chance(15) {
        o.push(DhcpOption::DomainName("d".repeat(rng.below(300))));
    }
    o
}

/// A raw option 121 payload: valid routes or garbage.
fn option_121(rng: &mut Rng) -> Vec<u8> {
    match rng.below(5) {
        0 => vec![0, 192, 0, 2, 254, 24, 203, 0, 113, 0, 0, 0, 0],
        1 => vec![33, 1, 2, 3, 4, 5, 6, 7, 8],
        2 => vec![32, 1, 2],
        3 => vec![],
        _ => {
            let n = rng.below(40);
            rng.bytes(n)
        }
    }
}

fn build_reply(rng: &mut Rng, sim: &Sim, to: &[u8]) -> Vec<u8> {
    let state = sim.client.state();
    let mt = match (state, rng.below(100)) {
        (State::Selecting, 0..=79) => MessageType::Offer,
        (State::Selecting, 80..=89) => MessageType::Ack,
        (State::Requesting | State::Rebooting | State::Renewing | State::Rebinding, 0..=69) => {
            MessageType::Ack
        }
        (State::Requesting | State::Rebooting | State::Renewing | State::Rebinding, 70..=89) => {
            MessageType::Nak
        }
        _ => *rng.pick(&[
            MessageType::Offer,
            MessageType::Ack,
            MessageType::Nak,
            MessageType::Discover,
            MessageType::Request,
            MessageType::Release,
            MessageType::Inform,
            MessageType::Unknown(200),
        ]),
    };
    let server = match rng.below(10) {
        0 => None,
        1 => Some(SERVER2),
        2 => Some(Ipv4Addr::UNSPECIFIED),
        _ => Some(SERVER),
    };
    let yiaddr = if mt == MessageType::Nak {
        Ipv4Addr::UNSPECIFIED
    } else {
        random_addr(rng)
    };
    let opts = if mt == MessageType::Nak {
        Vec::new()
    } else if rng.chance(50) {
        std_opts(*rng.pick(&[60, 120, 3600, 86400]))
    } else {
        absurd_opts(rng)
    };
    let mut p = reply(to, mt, yiaddr, server, opts);
    if rng.chance(10) {
        // siaddr instead of / besides a server id.
        p[20..24].copy_from_slice(&SERVER.octets());
    }
    if rng.chance(15) {
        let d = option_121(rng);
        let at = rng.range(240, p.len());
        insert_raw_option(&mut p, at, 121, d.len() as u8, &d);
    }
    if rng.chance(20) {
        // Raw options with absurd lengths: a length past the end, zero, wrong for the
        // option's type; codes the client keeps most of the time.
        for _ in 0..rng.range(1, 3) {
            let code = if rng.chance(60) {
                *rng.pick(&[1u8, 3, 6, 51, 53, 54, 58, 59, 121, 52, 12, 81, 255, 0])
            } else {
                rng.u8()
            };
            let r = rng.u8();
            let len = *rng.pick(&[0u8, 1, 2, 3, 4, 5, 255, r]);
            let n = if rng.chance(50) {
                usize::from(len)
            } else {
                rng.below(usize::from(len) + 1)
            };
            let data = rng.bytes(n);
            let at = if rng.chance(50) {
                240
            } else {
                rng.range(240, p.len())
            };
            insert_raw_option(&mut p, at, code, len, &data);
        }
    }
    if rng.chance(25) {
        let other = sim.sent.get(rng.below(sim.sent.len())).cloned();
        mutate(rng, &mut p, other.as_deref().unwrap_or(&[]), 4);
        // Keep xid and chaddr most of the time, so the mutation reaches the options.
        if rng.chance(70) && p.len() >= 34 && to.len() >= 8 {
            p[0] = 2;
            p[4..8].copy_from_slice(&to[4..8]);
            p[28..34].copy_from_slice(&MAC);
        }
    }
    p
}

// ------------------------------------------------------------------------------------
// The target

pub struct DhcpTarget {
    pub stats: Stats,
}

impl Default for DhcpTarget {
    fn default() -> Self {
        DhcpTarget::new()
    }
}

/// Writes a script while running it, so that later ops can depend on the client's state
/// (e.g. advance to its next deadline). Used to build seed scripts from captured replies.
pub struct ScriptBuilder {
    pub sim: Sim,
    pub stats: Stats,
    pub bytes: Vec<u8>,
}

impl ScriptBuilder {
    pub fn new(seed: u64, cfg: u8) -> ScriptBuilder {
        let mut bytes = Vec::new();
        encode_header(seed, cfg, &mut bytes);
        ScriptBuilder {
            sim: Sim::new(seed, cfg),
            stats: Stats::default(),
            bytes,
        }
    }

    /// Appends `op` to the script and runs it.
    pub fn op(&mut self, op: Op) -> &mut ScriptBuilder {
        op.encode(&mut self.bytes);
        self.sim.apply(&op, &mut self.stats);
        self
    }

    /// Advances the clock to the client's next deadline and lets it fire (no-op without one).
    pub fn to_deadline(&mut self) -> &mut ScriptBuilder {
        if let Some(ms) = self.sim.ms_to_deadline() {
            self.op(Op::Advance(ms)).op(Op::Timeout);
        }
        self
    }
}

impl DhcpTarget {
    pub fn new() -> DhcpTarget {
        DhcpTarget {
            stats: Stats::default(),
        }
    }

    fn push(&mut self, sim: &mut Sim, input: &mut Vec<u8>, op: Op) {
        op.encode(input);
        sim.apply(&op, &mut self.stats);
    }

    /// Generates and runs one scenario; `input` receives its script as it goes.
    pub fn generate_and_run(&mut self, rng: &mut Rng, input: &mut Vec<u8>) {
        let seed = rng.next_u64();
        let cfg = rng.u8();
        encode_header(seed, cfg, input);
        let mut sim = Sim::new(seed, cfg);
        let prev = match rng.below(10) {
            0..=6 => None,
            7 | 8 => Some(ADDR),
            _ => Some(random_addr(rng)),
        };
        self.push(&mut sim, input, Op::Start(prev));
        let steps = rng.range(1, 60);
        for _ in 0..steps {
            let op = match rng.below(100) {
                0..=44 => match sim.last_tx.clone() {
                    Some(to) => Op::Packet(build_reply(rng, &sim, &to)),
                    None => Op::Timeout,
                },
                45..=69 => {
                    // To the deadline (sometimes just before, or well past it).
                    match sim.ms_to_deadline() {
                        Some(ms) => {
                            let ms = match rng.below(10) {
                                0 => ms.saturating_sub(1),
                                1 => ms + rng.below(1000) as u64,
                                2 => ms.saturating_mul(rng.range(2, 4) as u64),
                                _ => ms,
                            };
                            self.push(&mut sim, input, Op::Advance(ms));
                            Op::Timeout
                        }
                        None => Op::Advance(rng.below(100_000) as u64),
                    }
                }
                70..=79 => {
                    let r = rng.next_u64() % 10_000_000;
                    let ms = *rng.pick(&[
                        0u64,
                        1,
                        999,
                        1000,
                        4000,
                        60_000,
                        3_600_000,
                        86_400_000,
                        u64::from(u32::MAX) * 1000,
                        r,
                    ]);
                    self.push(&mut sim, input, Op::Advance(ms));
                    Op::Timeout
                }
                80..=87 => {
                    // Stale, garbage or foreign packets.
                    let mut p = match rng.below(4) {
                        0 => {
                            let n = rng.below(600);
                            rng.bytes(n)
                        }
                        1 if !sim.sent.is_empty() => {
                            // Our own request looped back (BOOTREQUEST) or an old xid.
                            let old = sim.sent[rng.below(sim.sent.len())].clone();
                            if rng.chance(50) {
                                old
                            } else {
                                reply(&old, MessageType::Ack, ADDR, Some(SERVER), std_opts(3600))
                            }
                        }
                        2 => {
                            let to = sim.last_tx.clone().unwrap_or_default();
                            let mut p =
                                reply(&to, MessageType::Ack, ADDR, Some(SERVER), std_opts(60));
                            // Another client's chaddr.
                            p[33] ^= 0x01;
                            p
                        }
                        _ => {
                            let to = sim.last_tx.clone().unwrap_or_default();
                            let mut p = reply(&to, MessageType::Offer, ADDR, Some(SERVER), vec![]);
                            p.truncate(rng.below(p.len() + 1));
                            p
                        }
                    };
                    if rng.chance(30) {
                        mutate(rng, &mut p, &[], 3);
                    }
                    Op::Packet(p)
                }
                88..=90 => Op::Release,
                91..=94 => Op::Decline,
                95..=96 => Op::Start(if rng.chance(50) { None } else { Some(ADDR) }),
                _ => Op::Timeout,
            };
            self.push(&mut sim, input, op);
        }
    }

    /// Runs `input` as a script (any bytes are one: see [`decode_script`]). The per-input
    /// function of the coverage-guided `dhcp` target, and `--replay` of a crash file.
    pub fn replay(&mut self, input: &[u8]) {
        let (seed, cfg, ops) = decode_script(input);
        let mut sim = Sim::new(seed, cfg);
        for op in &ops {
            sim.apply(op, &mut self.stats);
        }
    }
}
