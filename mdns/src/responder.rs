//! The responder's state machine: probing (RFC 6762 8.1, 8.2), announcing
//! (8.3), answering (5, 6, 7), conflicts (9) and goodbyes (10.1), for one host
//! on one link, with time passed in.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tracing::{debug, warn};

use crate::config::{self, Config, ConfigError};
use crate::records::{self, LEGACY_TTL, Names, Owner, Published, class_ok, same};
use crate::rng::Jitter;

/// The mDNS port (RFC 6762 3): queries from another port are legacy unicast
/// (6.7), responses from another port are ignored (6).
pub const MDNS_PORT: u16 = 5353;
/// RFC 6762 17: the largest message a responder need accept.
pub const MAX_RECEIVED: usize = 9000;
/// The most records a received packet may hold. A parsed record takes a few
/// hundred bytes, so a 9000-byte packet of ~400 tiny records would cost
/// ~250 kB of heap while it is handled; packets of at most 1440 bytes, which
/// every responder sends when it can (17), hold far fewer. More are dropped
/// (counted as oversize).
pub const MAX_RECORDS: usize = 128;
/// RFC 6762 17: a DNS payload of at most 1440 bytes fits an Ethernet frame
/// with IPv6 and UDP headers, so nothing is fragmented.
pub const MAX_PAYLOAD: usize = 1440;

/// RFC 6762 8.1: three probes 250 ms apart, after a random 0-250 ms.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);
const PROBES: u8 = 3;
const PROBE_START_MAX_MS: u64 = 250;
/// RFC 6762 8.3: at least two announcements, one second apart.
const ANNOUNCEMENTS: u8 = 2;
const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(1);
/// RFC 6762 8.2: the loser of a simultaneous probe waits one second.
const TIE_BREAK_WAIT: Duration = Duration::from_secs(1);
/// RFC 6762 8.1: fifteen conflicts within ten seconds, then five seconds
/// between probe attempts.
const CONFLICT_WINDOW: Duration = Duration::from_secs(10);
const CONFLICT_LIMIT: usize = 15;
const CONFLICT_WAIT: Duration = Duration::from_secs(5);
/// RFC 6762 6: a record is multicast at most once per second on a link, but
/// may be multicast again after 250 ms to defend against a probe.
const RATE_LIMIT: Duration = Duration::from_secs(1);
const PROBE_DEFENCE_LIMIT: Duration = Duration::from_millis(250);
/// Bounds on what a stream of queries can make the responder hold (the
/// agent's memory budget is small): queries waiting for the rest of their
/// known answers (7.2), and the known answers (of our records: at most a few
/// per service) and questions (for our names) each may collect.
const MAX_TRUNCATED: usize = 16;
const MAX_KNOWN: usize = 64;
const MAX_HELD_QUESTIONS: usize = 32;
const MAX_LEGACY_QUESTIONS: usize = 8;

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: Destination,
    /// The DNS message (at most [`MAX_PAYLOAD`] bytes).
    pub payload: Vec<u8>,
}

/// Where a [`Transmit`] goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Every group the shell joined: 224.0.0.251:5353 and [ff02::fb]:5353.
    Multicast,
    /// 224.0.0.251:5353 only: the answer to a query that came over IPv4.
    MulticastV4,
    /// [ff02::fb]:5353 only: the answer to a query that came over IPv6.
    MulticastV6,
    /// The query's source: QU answers (5.4) and legacy unicast replies (6.7).
    Unicast(SocketAddr),
}

/// What the shell may log or report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Probing succeeded: the host is `name` (e.g. `web1-2.local`) and is
    /// being announced. Again after each successful re-probe.
    Claimed { name: String },
    /// Another host holds `name` (a host name or a service instance name):
    /// the responder probes for `next` instead.
    Conflict { name: String, next: String },
    /// Nothing is published any more: the last address went after a claim,
    /// or [`Responder::shutdown`] (always, once). Goodbyes are queued.
    Gone,
}

/// What the responder did, for metrics and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Queries that got at least one answer (unicast, multicast or legacy).
    pub queries_answered: u64,
    /// Response packets sent for queries.
    pub responses_sent: u64,
    /// Probe rounds sent (each one or more packets).
    pub probes_sent: u64,
    /// Announcement rounds sent.
    pub announcements_sent: u64,
    /// Goodbye rounds sent (address removed, no address left, shut down).
    pub goodbyes_sent: u64,
    /// Conflicts seen: a response holding one of our unique names with other
    /// data, while probing or after.
    pub conflicts: u64,
    /// Simultaneous probes lost (RFC 6762 8.2).
    pub tie_breaks_lost: u64,
    /// Packets that do not parse as DNS.
    pub malformed: u64,
    /// Packets over [`MAX_RECEIVED`] bytes or [`MAX_RECORDS`] records.
    pub oversize: u64,
    /// Well-formed packets dropped (non-zero opcode or rcode, responses from a
    /// port other than 5353).
    pub ignored: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn of(addr: &SocketAddr) -> Family {
        if addr.ip().to_canonical().is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    fn destination(self) -> Destination {
        match self {
            Family::V4 => Destination::MulticastV4,
            Family::V6 => Destination::MulticastV6,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No address: nothing published (the names are kept).
    Idle,
    /// Probing; `sent` probes so far, the next step at `next`.
    Probing { next: Instant, sent: u8 },
    /// Claimed; `sent` announcements so far, the next at `next`.
    Announcing { next: Instant, sent: u8 },
    /// Claimed and announced: answering.
    Running,
    /// Shut down for good.
    Stopped,
}

/// A multicast answer with a shared record, held for the 20-120 ms of RFC 6762 6.
#[derive(Debug)]
struct Delayed {
    at: Instant,
    family: Family,
    answers: Vec<Record>,
    limit: Duration,
}

/// A query with the TC bit, held 400-500 ms for the rest of its known
/// answers (RFC 6762 7.2).
#[derive(Debug)]
struct Truncated {
    from: SocketAddr,
    id: u16,
    at: Instant,
    questions: Vec<Query>,
    known: Vec<Record>,
    probe: bool,
}

/// The mDNS responder of one host on one link. See the crate docs for the
/// calling convention.
#[derive(Debug)]
pub struct Responder {
    config: Config,
    names: Names,
    /// How many names each has tried (1: the configured one).
    host_tries: u32,
    instance_tries: Vec<u32>,
    v4: Vec<Ipv4Addr>,
    v6: Vec<Ipv6Addr>,
    phase: Phase,
    /// The record set for the current names and addresses.
    records: Vec<Published>,
    /// What peers may have cached from our announcements: goodbyes cover these.
    announced: Vec<Record>,
    last_multicast: HashMap<(Vec<u8>, Family), Instant>,
    delayed: Vec<Delayed>,
    truncated: Vec<Truncated>,
    conflict_times: VecDeque<Instant>,
    rng: Jitter,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    counters: Counters,
}

/// A record's identity for rate limiting: name (lower-case), type and rdata.
fn key(r: &Record) -> Vec<u8> {
    let mut k = r.name.to_lowercase().to_string().into_bytes();
    k.push(0);
    k.extend_from_slice(&u16::from(r.record_type()).to_be_bytes());
    k.extend(records::rdata_bytes(r));
    k
}

fn dedup(v: &mut Vec<Record>) {
    let mut out: Vec<Record> = Vec::with_capacity(v.len());
    for r in v.drain(..) {
        if !out.iter().any(|o| same(o, &r)) {
            out.push(r);
        }
    }
    *v = out;
}

/// Whether the header's section counts can fit the packet: a question takes
/// at least 5 bytes (root name, type, class), a record at least 11. The
/// parser reserves room for as many questions as the header claims, so 12
/// bytes of 0xff would otherwise make it reserve 65535 of them (over 6 MB).
fn plausible_counts(data: &[u8]) -> bool {
    if data.len() < 12 {
        return false;
    }
    let count = |i: usize| usize::from(u16::from_be_bytes([data[i], data[i + 1]]));
    let need = count(4) * 5 + (count(6) + count(8) + count(10)) * 11;
    need <= data.len() - 12
}

/// The answer, authority and additional counts together (the header was
/// checked to be there).
fn record_count(data: &[u8]) -> usize {
    [6, 8, 10]
        .iter()
        .map(|&i| usize::from(u16::from_be_bytes([data[i], data[i + 1]])))
        .sum()
}

fn encode(m: &Message) -> Option<Vec<u8>> {
    match m.to_vec() {
        Ok(b) => Some(b),
        Err(e) => {
            // Every record is built from a validated config: this is a bug.
            warn!(error = %e, "mDNS message does not encode");
            None
        }
    }
}

fn response_template(id: u16) -> Message {
    let mut m = Message::new(id, MessageType::Response, OpCode::Query);
    // RFC 6762 18.4: responses carry AA.
    m.metadata.authoritative = true;
    m
}

/// Answers split over as many packets of at most [`MAX_PAYLOAD`] bytes as
/// needed (RFC 6762 17); the additional records go where they still fit and
/// are left out otherwise (they are only a courtesy, 6.2).
fn pack(template: &Message, answers: &[Record], additionals: &[Record]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur = template.clone();
    for r in answers {
        cur.answers.push(r.clone());
        if cur.answers.len() > 1 && encode(&cur).is_some_and(|b| b.len() > MAX_PAYLOAD) {
            cur.answers.pop();
            out.extend(encode(&cur));
            cur = template.clone();
            cur.queries.clear();
            cur.answers.push(r.clone());
        }
    }
    for r in additionals {
        cur.additionals.push(r.clone());
        if encode(&cur).is_some_and(|b| b.len() > MAX_PAYLOAD) {
            cur.additionals.pop();
        }
    }
    out.extend(encode(&cur));
    out
}

impl Responder {
    /// A responder for `config` (checked with [`Config::validate`]); `seed`
    /// feeds the random delays (the agent passes an OS-random one, tests a
    /// fixed one). Nothing happens until [`Responder::set_addresses`].
    pub fn new(config: Config, seed: u64) -> Result<Responder, ConfigError> {
        config.validate()?;
        let config = config.normalized();
        let names = Names {
            label: config.hostname.clone(),
            instances: config.services.iter().map(|s| s.instance.clone()).collect(),
        };
        Ok(Responder {
            instance_tries: vec![1; config.services.len()],
            config,
            names,
            host_tries: 1,
            v4: Vec::new(),
            v6: Vec::new(),
            phase: Phase::Idle,
            records: Vec::new(),
            announced: Vec::new(),
            last_multicast: HashMap::new(),
            delayed: Vec::new(),
            truncated: Vec::new(),
            conflict_times: VecDeque::new(),
            rng: Jitter::new(seed),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
        })
    }

    /// The host's addresses on this link (the agent passes global ones). The
    /// first non-empty set starts probing after a random 0-250 ms (RFC 6762
    /// 8.1). Once claimed, a change sends goodbyes for the addresses removed
    /// and announces the new set without probing again (8.3, 10.1: the
    /// name is unchanged); no address at all sends goodbyes for everything
    /// and idles, and the next address probes again (8: connectivity changed),
    /// for the name held before.
    pub fn set_addresses(&mut self, now: Instant, v4: &[Ipv4Addr], v6: &[Ipv6Addr]) {
        if self.phase == Phase::Stopped {
            return;
        }
        let mut v4 = v4.to_vec();
        let mut v6 = v6.to_vec();
        v4.sort();
        v4.dedup();
        v6.sort();
        v6.dedup();
        if v4 == self.v4 && v6 == self.v6 {
            return;
        }
        self.v4 = v4;
        self.v6 = v6;
        let empty = self.v4.is_empty() && self.v6.is_empty();
        match self.phase {
            Phase::Idle if !empty => {
                let delay = self.rng.millis(0, PROBE_START_MAX_MS);
                self.probe_at(now + delay);
            }
            Phase::Probing { .. } if empty => {
                self.phase = Phase::Idle;
                self.records.clear();
            }
            // The probe sends the records as they are when it goes out.
            Phase::Probing { .. } => self.rebuild(),
            Phase::Announcing { .. } | Phase::Running if empty => {
                self.withdraw();
                self.records.clear();
                self.phase = Phase::Idle;
                self.events.push_back(Event::Gone);
            }
            Phase::Announcing { .. } | Phase::Running => {
                self.rebuild();
                let removed: Vec<Record> = self
                    .announced
                    .iter()
                    .filter(|a| !self.records.iter().any(|p| same(&p.record, a)))
                    .cloned()
                    .collect();
                self.goodbye(&removed);
                self.announced
                    .retain(|a| !removed.iter().any(|r| same(r, a)));
                self.phase = Phase::Announcing { next: now, sent: 0 };
            }
            Phase::Idle | Phase::Stopped => {}
        }
    }

    /// One received datagram; `from` is its source address and port. Anything
    /// not for this host is ignored; garbage is counted and dropped, never a
    /// panic.
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if self.phase == Phase::Stopped {
            return;
        }
        if data.len() > MAX_RECEIVED {
            self.counters.oversize += 1;
            return;
        }
        if !plausible_counts(data) {
            self.counters.malformed += 1;
            return;
        }
        if record_count(data) > MAX_RECORDS {
            self.counters.oversize += 1;
            return;
        }
        let msg = match Message::from_vec(data) {
            Ok(m) => m,
            Err(e) => {
                debug!(%from, error = %e, "malformed mDNS packet");
                self.counters.malformed += 1;
                return;
            }
        };
        // RFC 6762 18.3 and 18.11: other opcodes and non-zero rcodes are
        // silently ignored.
        if msg.metadata.op_code != OpCode::Query
            || msg.metadata.response_code != ResponseCode::NoError
        {
            self.counters.ignored += 1;
            return;
        }
        match msg.metadata.message_type {
            MessageType::Response => self.handle_response(now, from, &msg),
            MessageType::Query => self.handle_query(now, from, msg),
        }
    }

    /// Call when `now >= poll_timeout()`.
    pub fn handle_timeout(&mut self, now: Instant) {
        loop {
            match self.phase {
                Phase::Probing { next, sent } if now >= next => {
                    if sent < PROBES {
                        self.send_probe();
                        self.phase = Phase::Probing {
                            next: now + PROBE_INTERVAL,
                            sent: sent + 1,
                        };
                        break;
                    }
                    // 8.1: no conflict 250 ms after the third probe: ours.
                    self.events.push_back(Event::Claimed {
                        name: self.host_name(),
                    });
                    self.phase = Phase::Announcing { next: now, sent: 0 };
                }
                Phase::Announcing { next, sent } if now >= next => {
                    self.announce(now);
                    self.phase = if sent + 1 >= ANNOUNCEMENTS {
                        Phase::Running
                    } else {
                        Phase::Announcing {
                            next: now + ANNOUNCE_INTERVAL,
                            sent: sent + 1,
                        }
                    };
                    break;
                }
                _ => break,
            }
        }
        let (due, kept): (Vec<Delayed>, Vec<Delayed>) =
            self.delayed.drain(..).partition(|d| now >= d.at);
        self.delayed = kept;
        for d in due {
            self.send_multicast(now, d.family, d.answers, d.limit);
        }
        let (due, kept): (Vec<Truncated>, Vec<Truncated>) =
            self.truncated.drain(..).partition(|t| now >= t.at);
        self.truncated = kept;
        for t in due {
            self.answer(now, t.from, t.id, &t.questions, &t.known, t.probe);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next deadline, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let phase = match self.phase {
            Phase::Probing { next, .. } | Phase::Announcing { next, .. } => Some(next),
            _ => None,
        };
        phase
            .into_iter()
            .chain(self.delayed.iter().map(|d| d.at))
            .chain(self.truncated.iter().map(|t| t.at))
            .min()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Goodbyes (TTL 0, RFC 6762 10.1) for everything announced and
    /// [`Event::Gone`], then nothing more: later packets, timeouts and
    /// addresses are ignored.
    pub fn shutdown(&mut self, _now: Instant) {
        if self.phase == Phase::Stopped {
            return;
        }
        self.withdraw();
        self.phase = Phase::Stopped;
        self.events.push_back(Event::Gone);
    }

    /// The claimed host name (e.g. `web1-2.local`) while it is published;
    /// `None` while probing, without an address and after shutdown.
    pub fn name(&self) -> Option<String> {
        matches!(self.phase, Phase::Announcing { .. } | Phase::Running).then(|| self.host_name())
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The names the responder answers for now (see [`Responder::owns`]).
    pub fn owned_names(&self) -> Vec<Name> {
        let mut v = self.names.all(&self.config);
        v.extend(self.reverse_names());
        v
    }

    /// The reverse-mapping names of the current addresses (answered once
    /// claimed).
    fn reverse_names(&self) -> Vec<Name> {
        self.records
            .iter()
            .filter(|p| p.owner == Owner::Reverse)
            .map(|p| p.record.name.clone())
            .collect()
    }

    /// Whether `name` is one the responder answers for now (its host name,
    /// instance names, service types and the DNS-SD meta name).
    pub fn owns(&self, name: &Name) -> bool {
        self.owned_names().iter().any(|n| n == name)
    }

    /// The current instance names, in the order of the configured services.
    pub fn instance_names(&self) -> Vec<String> {
        self.names.instances.clone()
    }

    fn host_name(&self) -> String {
        format!("{}.local", self.names.label)
    }

    fn instance_full(&self, i: usize) -> String {
        format!(
            "{}.{}.local",
            self.names.instances[i], self.config.services[i].service_type
        )
    }

    fn rebuild(&mut self) {
        self.records = records::build(&self.config, &self.names, &self.v4, &self.v6);
        // Rate-limit marks of records we no longer have only cost memory.
        let keys: Vec<Vec<u8>> = self.records.iter().map(|p| key(&p.record)).collect();
        self.last_multicast.retain(|(k, _), _| keys.contains(k));
    }

    fn probe_at(&mut self, at: Instant) {
        self.rebuild();
        self.delayed.clear();
        self.truncated.clear();
        self.phase = Phase::Probing { next: at, sent: 0 };
    }

    /// Goodbyes for all announced records; nothing is announced afterwards.
    fn withdraw(&mut self) {
        let all = std::mem::take(&mut self.announced);
        self.goodbye(&all);
        self.delayed.clear();
        self.truncated.clear();
    }

    fn queue(&mut self, to: Destination, packets: Vec<Vec<u8>>) {
        for payload in packets {
            self.transmits.push_back(Transmit { to, payload });
        }
    }

    /// RFC 6762 8.1: QU questions of type ANY for each unique name, with the
    /// records we propose in the authority section (for 8.2's tie-break). A
    /// name and its records stay in one packet; names go over several
    /// packets if they do not fit one.
    fn send_probe(&mut self) {
        let template = Message::new(0, MessageType::Query, OpCode::Query);
        let mut packets = Vec::new();
        let mut cur = template.clone();
        for (owner, name) in self.names.unique(&self.config) {
            let mut q = Query::query(name, RecordType::ANY);
            q.set_mdns_unicast_response(true);
            // The cache-flush bit tells caches what to do with a response
            // (10.2); a probe is a query and the tie-break ignores the bit
            // (8.2), so it is left clear here.
            let auth: Vec<Record> = self
                .records
                .iter()
                .filter(|p| p.owner == owner)
                .map(|p| {
                    let mut r = p.record.clone();
                    r.mdns_cache_flush = false;
                    r
                })
                .collect();
            let mut next = cur.clone();
            next.queries.push(q.clone());
            next.authorities.extend(auth.iter().cloned());
            if !cur.queries.is_empty() && encode(&next).is_some_and(|b| b.len() > MAX_PAYLOAD) {
                packets.extend(encode(&cur));
                next = template.clone();
                next.queries.push(q);
                next.authorities.extend(auth);
            }
            cur = next;
        }
        packets.extend(encode(&cur));
        self.counters.probes_sent += 1;
        self.queue(Destination::Multicast, packets);
    }

    /// RFC 6762 8.3: an unsolicited response with every record, on every
    /// group.
    fn announce(&mut self, now: Instant) {
        let all: Vec<Record> = self.records.iter().map(|p| p.record.clone()).collect();
        for r in &all {
            for f in [Family::V4, Family::V6] {
                self.last_multicast.insert((key(r), f), now);
            }
        }
        let packets = pack(&response_template(0), &all, &[]);
        self.counters.announcements_sent += 1;
        self.queue(Destination::Multicast, packets);
        for r in all {
            if !self.announced.iter().any(|a| same(a, &r)) {
                self.announced.push(r);
            }
        }
    }

    /// RFC 6762 10.1: the records again with TTL 0.
    fn goodbye(&mut self, recs: &[Record]) {
        if recs.is_empty() {
            return;
        }
        let bye: Vec<Record> = recs
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.ttl = 0;
                r
            })
            .collect();
        let packets = pack(&response_template(0), &bye, &[]);
        self.counters.goodbyes_sent += 1;
        self.queue(Destination::Multicast, packets);
    }

    fn is_own_address(&self, from: &SocketAddr) -> bool {
        match from.ip().to_canonical() {
            std::net::IpAddr::V4(a) => self.v4.contains(&a),
            std::net::IpAddr::V6(a) => self.v6.contains(&a),
        }
    }

    /// The owners among our unique names that `recs` contradict (RFC 6762 9:
    /// same name, type and class, other rdata). Goodbyes are not claims.
    fn conflicts(&self, recs: &[&Record]) -> Vec<Owner> {
        let mut out = Vec::new();
        for (owner, name) in self.names.unique(&self.config) {
            let types: &[RecordType] = match owner {
                Owner::Host => &[RecordType::A, RecordType::AAAA],
                _ => &[RecordType::SRV, RecordType::TXT],
            };
            let hit = recs.iter().any(|r| {
                r.ttl > 0
                    && class_ok(r.dns_class)
                    && r.name == name
                    && types.contains(&r.record_type())
                    && !self
                        .records
                        .iter()
                        .any(|p| p.owner == owner && same(&p.record, r))
            });
            if hit {
                out.push(owner);
            }
        }
        out
    }

    fn handle_response(&mut self, now: Instant, from: SocketAddr, msg: &Message) {
        // RFC 6762 6: responses from another port than 5353 are not mDNS.
        if from.port() != MDNS_PORT || self.is_own_address(&from) {
            self.counters.ignored += 1;
            return;
        }
        let recs: Vec<&Record> = msg
            .answers
            .iter()
            .chain(&msg.authorities)
            .chain(&msg.additionals)
            .collect();
        let lost = self.conflicts(&recs);
        if lost.is_empty() || matches!(self.phase, Phase::Idle | Phase::Stopped) {
            return;
        }
        self.counters.conflicts += 1;
        match self.phase {
            // 8.1: another host answers for a name we probe: it is theirs.
            Phase::Probing { .. } => {
                for owner in lost {
                    self.rename(owner);
                }
                let at = now + self.conflict_delay(now);
                self.probe_at(at);
            }
            // 9: a conflict after claiming: probe again; a lost probe renames.
            Phase::Announcing { .. } | Phase::Running => {
                debug!(name = %self.host_name(), "mDNS conflict after claiming: probing again");
                self.announced.clear();
                let at = now + self.conflict_delay(now);
                self.probe_at(at);
            }
            Phase::Idle | Phase::Stopped => {}
        }
    }

    /// RFC 6762 8.1's limit: after 15 conflicts within 10 s, wait 5 s before
    /// each probe; otherwise the usual random start.
    fn conflict_delay(&mut self, now: Instant) -> Duration {
        while self
            .conflict_times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= CONFLICT_WINDOW)
        {
            self.conflict_times.pop_front();
        }
        self.conflict_times.push_back(now);
        if self.conflict_times.len() > CONFLICT_LIMIT {
            self.conflict_times.pop_front();
        }
        if self.conflict_times.len() >= CONFLICT_LIMIT {
            CONFLICT_WAIT
        } else {
            self.rng.millis(0, PROBE_START_MAX_MS)
        }
    }

    fn rename(&mut self, owner: Owner) {
        let (name, next) = match owner {
            Owner::Host => {
                let old = self.host_name();
                self.host_tries += 1;
                self.names.label = config::host_label(&self.config.hostname, self.host_tries);
                (old, self.host_name())
            }
            Owner::Service(i) => {
                let old = self.instance_full(i);
                self.instance_tries[i] += 1;
                self.names.instances[i] = config::instance_name(
                    &self.config.services[i].instance,
                    self.instance_tries[i],
                );
                (old, self.instance_full(i))
            }
            Owner::Shared | Owner::Reverse => return,
        };
        debug!(%name, %next, "mDNS name taken: renaming");
        self.events.push_back(Event::Conflict { name, next });
    }

    fn handle_query(&mut self, now: Instant, from: SocketAddr, msg: Message) {
        let legacy = from.port() != MDNS_PORT;
        match self.phase {
            // 8.1: nothing is answered for names not yet ours, but another
            // host probing for them at the same time is a tie to break.
            Phase::Probing { .. } => {
                if !legacy {
                    self.tie_break(now, &msg);
                }
                return;
            }
            Phase::Announcing { .. } | Phase::Running => {}
            Phase::Idle | Phase::Stopped => return,
        }
        if legacy {
            return self.answer_legacy(from, &msg);
        }
        let probe = !msg.authorities.is_empty();
        // 7.2: the continuation of a truncated query adds known answers.
        // Only what concerns us is held: known answers that are records of
        // ours, questions for names we answer (memory is tight and a Record
        // is a few hundred bytes).
        if self.truncated.iter().any(|t| t.from == from) {
            let (questions, known) = self.relevant(msg.queries, msg.answers);
            if let Some(t) = self.truncated.iter_mut().find(|t| t.from == from) {
                let room = MAX_KNOWN.saturating_sub(t.known.len());
                t.known.extend(known.into_iter().take(room));
                let room = MAX_HELD_QUESTIONS.saturating_sub(t.questions.len());
                t.questions.extend(questions.into_iter().take(room));
                t.probe |= probe;
            }
            return;
        }
        if msg.metadata.truncation {
            if self.truncated.len() < MAX_TRUNCATED {
                let at = now + self.rng.millis(400, 500);
                let (mut questions, mut known) = self.relevant(msg.queries, msg.answers);
                questions.truncate(MAX_HELD_QUESTIONS);
                known.truncate(MAX_KNOWN);
                self.truncated.push(Truncated {
                    from,
                    id: msg.metadata.id,
                    at,
                    questions,
                    known,
                    probe,
                });
            }
            return;
        }
        self.answer(
            now,
            from,
            msg.metadata.id,
            &msg.queries,
            &msg.answers,
            probe,
        );
    }

    /// The questions for names we answer and the known answers that are
    /// records of ours: all that a held query needs.
    fn relevant(&self, questions: Vec<Query>, known: Vec<Record>) -> (Vec<Query>, Vec<Record>) {
        let owned = self.owned_names();
        let mut questions: Vec<Query> = questions
            .into_iter()
            .filter(|q| owned.contains(&q.name))
            .collect();
        let mut known: Vec<Record> = known
            .into_iter()
            .filter(|k| self.records.iter().any(|p| same(&p.record, k)))
            .collect();
        // collect() reuses the parsed message's buffers: without this, a
        // held query would keep room for every record the packet had.
        questions.shrink_to_fit();
        known.shrink_to_fit();
        (questions, known)
    }

    /// RFC 6762 8.2: a probe from another host for a name we are probing
    /// too. The lexicographically later record set wins; the loser waits one
    /// second and probes again (for the same name: the winner may yet fail).
    fn tie_break(&mut self, now: Instant, msg: &Message) {
        for (owner, name) in self.names.unique(&self.config) {
            let theirs: Vec<Record> = msg
                .authorities
                .iter()
                .filter(|r| r.name == name)
                .cloned()
                .collect();
            if theirs.is_empty() {
                continue;
            }
            let ours: Vec<Record> = self
                .records
                .iter()
                .filter(|p| p.owner == owner)
                .map(|p| p.record.clone())
                .collect();
            if records::tie_break(&ours, &theirs) == std::cmp::Ordering::Less {
                debug!(%name, "simultaneous mDNS probe lost: probing again in 1 s");
                self.counters.tie_breaks_lost += 1;
                self.phase = Phase::Probing {
                    next: now + TIE_BREAK_WAIT,
                    sent: 0,
                };
                return;
            }
        }
    }

    /// The types a unique name of ours has, for NSEC (RFC 6762 6.1).
    fn nsec_for(&self, name: &Name) -> Option<Record> {
        self.names
            .unique(&self.config)
            .into_iter()
            .find(|(_, n)| n == name)
            .map(|(owner, n)| {
                let mut types: Vec<RecordType> = self
                    .records
                    .iter()
                    .filter(|p| p.owner == owner)
                    .map(|p| p.record.record_type())
                    .collect();
                types.dedup();
                records::nsec(&n, &types)
            })
    }

    /// Our records that answer `q`; for a type a unique name of ours does not
    /// have, the NSEC that says so (6.1). The flag says "shared".
    fn matching(&self, q: &Query) -> Vec<(Record, bool)> {
        if !class_ok(q.query_class()) {
            return Vec::new();
        }
        let qt = q.query_type();
        let found: Vec<(Record, bool)> = self
            .records
            .iter()
            .filter(|p| {
                p.record.name == q.name && (qt == RecordType::ANY || qt == p.record.record_type())
            })
            .map(|p| (p.record.clone(), !p.unique))
            .collect();
        if found.is_empty() && qt != RecordType::ANY {
            return self
                .nsec_for(&q.name)
                .map(|r| (r, false))
                .into_iter()
                .collect();
        }
        found
    }

    /// RFC 6762 6.2 and RFC 6763 12: what a resolver will ask next.
    fn additionals(&self, answers: &[Record]) -> Vec<Record> {
        let mut add: Vec<Record> = Vec::new();
        let host: Vec<Record> = self
            .records
            .iter()
            .filter(|p| p.owner == Owner::Host)
            .map(|p| p.record.clone())
            .collect();
        let mut want_host = false;
        for a in answers {
            match &a.data {
                RData::PTR(target) => {
                    for p in &self.records {
                        let t = p.record.record_type();
                        if p.record.name == target.0
                            && (t == RecordType::SRV || t == RecordType::TXT)
                        {
                            add.push(p.record.clone());
                            want_host |= t == RecordType::SRV;
                        }
                    }
                }
                RData::SRV(_) | RData::A(_) | RData::AAAA(_) => want_host = true,
                _ => {}
            }
        }
        if want_host {
            add.extend(host);
            // 6.1: say which address family the host does not have.
            if self.v4.is_empty() || self.v6.is_empty() {
                add.extend(self.nsec_for(&self.names.host()));
            }
        }
        dedup(&mut add);
        add.retain(|r| !answers.iter().any(|a| same(a, r)));
        add
    }

    fn multicast_within(&self, r: &Record, family: Family, now: Instant, window: Duration) -> bool {
        self.last_multicast
            .get(&(key(r), family))
            .is_some_and(|t| now.saturating_duration_since(*t) < window)
    }

    /// A multicast query (or a truncated one, now complete).
    fn answer(
        &mut self,
        now: Instant,
        from: SocketAddr,
        id: u16,
        questions: &[Query],
        known: &[Record],
        probe: bool,
    ) {
        let family = Family::of(&from);
        let mut unicast = Vec::new();
        let mut multicast = Vec::new();
        let mut shared = false;
        for q in questions {
            for (r, is_shared) in self.matching(q) {
                // 7.1: known-answer suppression, when the querier's copy has
                // at least half our TTL left.
                if known.iter().any(|k| same(k, &r) && k.ttl >= r.ttl / 2) {
                    continue;
                }
                shared |= is_shared;
                // 5.4: a QU question is answered by unicast, unless the
                // record was not multicast within a quarter of its TTL: then
                // everyone's caches get it.
                let quarter = Duration::from_secs(u64::from(r.ttl / 4));
                if q.mdns_unicast_response() && self.multicast_within(&r, family, now, quarter) {
                    unicast.push(r);
                } else {
                    multicast.push(r);
                }
            }
        }
        dedup(&mut unicast);
        dedup(&mut multicast);
        // 6: at most once a second per record on a link (250 ms to defend
        // against a probe).
        let limit = if probe {
            PROBE_DEFENCE_LIMIT
        } else {
            RATE_LIMIT
        };
        multicast.retain(|r| !self.multicast_within(r, family, now, limit));
        if unicast.is_empty() && multicast.is_empty() {
            return;
        }
        self.counters.queries_answered += 1;
        if !unicast.is_empty() {
            let add = self.additionals(&unicast);
            // 18.1: a unicast answer to a specific query echoes its ID.
            let packets = pack(&response_template(id), &unicast, &add);
            self.counters.responses_sent += packets.len() as u64;
            self.queue(Destination::Unicast(from), packets);
        }
        if multicast.is_empty() {
            return;
        }
        if shared {
            // 6: shared answers wait 20-120 ms so that responders do not all
            // answer at once; answers waiting for the same link go together.
            if let Some(d) = self.delayed.iter_mut().find(|d| d.family == family) {
                d.answers.extend(multicast);
                dedup(&mut d.answers);
                d.limit = d.limit.min(limit);
            } else {
                let at = now + self.rng.millis(20, 120);
                self.delayed.push(Delayed {
                    at,
                    family,
                    answers: multicast,
                    limit,
                });
            }
        } else {
            self.send_multicast(now, family, multicast, limit);
        }
    }

    fn send_multicast(
        &mut self,
        now: Instant,
        family: Family,
        mut answers: Vec<Record>,
        limit: Duration,
    ) {
        // Sent in between (a delayed answer): the rate limit again.
        answers.retain(|r| !self.multicast_within(r, family, now, limit));
        if answers.is_empty() {
            return;
        }
        for r in &answers {
            self.last_multicast.insert((key(r), family), now);
        }
        let add = self.additionals(&answers);
        // 18.1: multicast responses carry ID 0.
        let packets = pack(&response_template(0), &answers, &add);
        self.counters.responses_sent += packets.len() as u64;
        self.queue(family.destination(), packets);
    }

    /// RFC 6762 6.7: a query from a port other than 5353 comes from a
    /// conventional resolver: one unicast reply to its source that echoes
    /// the ID and the questions answered, TTLs at most 10 s, no cache-flush
    /// bit (such a resolver would read it as a class).
    fn answer_legacy(&mut self, from: SocketAddr, msg: &Message) {
        let mut questions = Vec::new();
        let mut answers = Vec::new();
        // Echoed questions count against the 1440 bytes: a conventional
        // resolver asks one, so a few distinct ones are plenty.
        for q in &msg.queries {
            if questions.len() >= MAX_LEGACY_QUESTIONS {
                break;
            }
            let dup = questions.iter().any(|o: &Query| {
                o.name == q.name
                    && o.query_type() == q.query_type()
                    && o.query_class() == q.query_class()
            });
            let found = if dup { Vec::new() } else { self.matching(q) };
            if !found.is_empty() {
                let mut q = q.clone();
                q.set_mdns_unicast_response(false);
                questions.push(q);
                answers.extend(found.into_iter().map(|(r, _)| r));
            }
        }
        dedup(&mut answers);
        if answers.is_empty() {
            return;
        }
        let legacy = |mut r: Record| {
            r.ttl = r.ttl.min(LEGACY_TTL);
            r.mdns_cache_flush = false;
            r
        };
        let add: Vec<Record> = self.additionals(&answers).into_iter().map(legacy).collect();
        let answers: Vec<Record> = answers.into_iter().map(legacy).collect();
        let mut template = response_template(msg.metadata.id);
        template.queries = questions;
        let mut packets = pack(&template, &answers, &add);
        if packets.len() > 1 {
            // A conventional resolver reads one reply: send the first, marked
            // truncated (RFC 1035 4.1.1).
            packets.truncate(1);
            if let Ok(mut m) = Message::from_vec(&packets[0]) {
                m.metadata.truncation = true;
                packets = encode(&m).into_iter().collect();
            }
        }
        self.counters.queries_answered += 1;
        self.counters.responses_sent += packets.len() as u64;
        self.queue(Destination::Unicast(from), packets);
    }
}
