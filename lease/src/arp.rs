//! IPv4 address conflict detection (RFC 5227): probe a freshly leased
//! address with ARP before configuring it (§2.1, [`Probe`]), then announce it
//! and defend it while it is in use (§2.3 and §2.4, [`Guard`]).
//!
//! Sans-IO, as the DHCP client is:
//!
//! - [`Probe`], a sans-IO state machine: no socket, no clock. The shell creates
//!   it with the address, our MAC and the current time, feeds it every ARP
//!   packet received ([`Probe::handle_packet`]) and "the deadline passed"
//!   ([`Probe::handle_timeout`]), and drains the ARP packets to broadcast
//!   ([`Probe::poll_transmit`]), the next deadline ([`Probe::poll_timeout`]) and
//!   finally the verdict ([`Probe::result`]): [`ProbeResult::Free`] or
//!   [`ProbeResult::Conflict`] with the other host's MAC.
//! - [`ArpPacket`], the codec of the 28-byte Ethernet/IPv4 ARP payload.
//!
//! The socket that carries these payloads (AF_PACKET, ETH_P_ARP) is I/O and
//! lives in the agent (`netcontainer_agent::dhcp::arp::ArpSocket`).
//!
//! ```text
//! Probe::new(cfg, address, our_mac, now)   // first probe queued at once
//! probe.handle_packet(now, arp_payload)    // anything malformed or ours: ignored
//! probe.handle_timeout(now)                // call when now >= poll_timeout()
//! probe.poll_transmit() -> Option<[u8; 28]>  // send to ff:ff:ff:ff:ff:ff, ethertype 0x0806
//! probe.poll_timeout()  -> Option<Instant>   // None once there is a result
//! probe.result()        -> Option<ProbeResult>
//! ```
//!
//! # Timing
//!
//! RFC 5227 waits PROBE_WAIT (random 0-1 s), sends PROBE_NUM = 3 probes
//! PROBE_MIN..PROBE_MAX (1-2 s) apart and then waits ANNOUNCE_WAIT (2 s):
//! 3 to 7 s (and up to 9 s) before the address may be used. That was sized
//! for slow, lossy links; systemd's issue #30724 and NetworkManager's
//! `ipv4.dad-timeout` (a total budget in milliseconds) shorten it, as do
//! Solaris' "fast probes" (3 probes 150 ms apart). The agent's default
//! ([`ArpConfig::default`]) is 2 probes 100 ms apart and a 200 ms final wait:
//! the address is usable ~300 ms after the DHCP ACK. Two probes survive the
//! loss of one; 200 ms is orders of magnitude above a LAN's round-trip time
//! (a host answers an ARP probe from its kernel, in microseconds). What is
//! given up: a host that is slow to answer (asleep, behind a congested or
//! power-saving link, a Wi-Fi bridge with its own delays) may answer after we
//! decided the address is free; and there is no initial random delay, which
//! the RFC uses to spread hosts powering on together (the DHCP exchange
//! before the probe already spreads them). [`ArpConfig::RFC5227`] gives the
//! RFC's timing (with a fixed 1.5 s interval) for slow networks.
//!
//! # Limits
//!
//! On an ipvlan leg every slave shares the parent's MAC: a conflict with the
//! host or another ipvlan router on the same parent looks like our own frame
//! and is ignored, and ipvlan hands a reply addressed to 0.0.0.0 to the
//! parent rather than to us, so the probe mostly tells "free" there. macvlan
//! (the default) has neither problem.
//!
//! # Announcing and defending
//!
//! [`Guard`] takes over once the address is in use: it sends ANNOUNCE_NUM = 2
//! ARP announcements ANNOUNCE_INTERVAL = 2 s apart (§2.3; so that switches
//! and neighbours learn our port and MAC at once, also after a router moved
//! to another host with its lease), and watches for another host's packet
//! claiming the address (sender IP ours, sender MAC not). The first such
//! conflict is defended with one more announcement (§2.4 (b)); a second one
//! within DEFEND_INTERVAL = 10 s of that defence means the other host insists
//! and the guard gives up ([`GuardEvent::GiveUp`]): the agent stops using the
//! address and DECLINEs it (§2.4 (c), and RFC 2131 §3.1's DECLINE so the
//! server does not hand it out again at once).

use std::collections::VecDeque;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Probe timing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpConfig {
    /// Probes sent (the first at once). 0 means no probing: free at once.
    pub probes: u32,
    /// Time between two probes.
    pub interval: Duration,
    /// Time after the last probe before the address is declared free.
    pub wait: Duration,
}

impl ArpConfig {
    /// RFC 5227's PROBE_NUM, the middle of PROBE_MIN..PROBE_MAX, ANNOUNCE_WAIT.
    pub const RFC5227: ArpConfig = ArpConfig {
        probes: 3,
        interval: Duration::from_millis(1500),
        wait: Duration::from_secs(2),
    };

    /// How long a probe takes when nothing answers.
    pub fn duration(&self) -> Duration {
        if self.probes == 0 {
            return Duration::ZERO;
        }
        self.interval * (self.probes - 1) + self.wait
    }
}

impl Default for ArpConfig {
    /// The agent's shortened timing: 2 probes 100 ms apart, 200 ms final wait.
    fn default() -> Self {
        ArpConfig {
            probes: 2,
            interval: Duration::from_millis(100),
            wait: Duration::from_millis(200),
        }
    }
}

/// A MAC address, printed as `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// The verdict of a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// Nobody claimed the address.
    Free,
    /// Another host uses (or is probing for) the address: its MAC.
    Conflict(Mac),
}

pub const ARP_LEN: usize = 28;
const HTYPE_ETHERNET: u16 = 1;
const PTYPE_IPV4: u16 = 0x0800;
pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

/// An Ethernet/IPv4 ARP packet (the 28 bytes after the Ethernet header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpPacket {
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_ip: Ipv4Addr,
}

impl ArpPacket {
    /// Parses an Ethernet/IPv4 request or reply; anything else (short,
    /// another hardware or protocol type, another opcode) is `None`.
    /// Trailing bytes (Ethernet padding) are ignored.
    pub fn parse(b: &[u8]) -> Option<ArpPacket> {
        if b.len() < ARP_LEN {
            return None;
        }
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let mac_at = |i: usize| -> [u8; 6] { b[i..i + 6].try_into().expect("6 bytes") };
        let ip_at = |i: usize| Ipv4Addr::new(b[i], b[i + 1], b[i + 2], b[i + 3]);
        if u16_at(0) != HTYPE_ETHERNET || u16_at(2) != PTYPE_IPV4 || b[4] != 6 || b[5] != 4 {
            return None;
        }
        let op = u16_at(6);
        if op != OP_REQUEST && op != OP_REPLY {
            return None;
        }
        Some(ArpPacket {
            op,
            sender_mac: mac_at(8),
            sender_ip: ip_at(14),
            target_mac: mac_at(18),
            target_ip: ip_at(24),
        })
    }

    pub fn encode(&self) -> [u8; ARP_LEN] {
        let mut b = [0u8; ARP_LEN];
        b[0..2].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
        b[2..4].copy_from_slice(&PTYPE_IPV4.to_be_bytes());
        b[4] = 6;
        b[5] = 4;
        b[6..8].copy_from_slice(&self.op.to_be_bytes());
        b[8..14].copy_from_slice(&self.sender_mac);
        b[14..18].copy_from_slice(&self.sender_ip.octets());
        b[18..24].copy_from_slice(&self.target_mac);
        b[24..28].copy_from_slice(&self.target_ip.octets());
        b
    }

    /// An ARP probe (RFC 5227 §2.1.1): a request from `mac` with sender IP
    /// 0.0.0.0, target MAC zero and target IP `address`.
    pub fn probe(mac: [u8; 6], address: Ipv4Addr) -> ArpPacket {
        ArpPacket {
            op: OP_REQUEST,
            sender_mac: mac,
            sender_ip: Ipv4Addr::UNSPECIFIED,
            target_mac: [0; 6],
            target_ip: address,
        }
    }
}

/// One address conflict probe. See the module documentation.
#[derive(Debug)]
pub struct Probe {
    cfg: ArpConfig,
    address: Ipv4Addr,
    mac: [u8; 6],
    sent: u32,
    next: Option<Instant>,
    transmits: VecDeque<[u8; ARP_LEN]>,
    result: Option<ProbeResult>,
}

impl Probe {
    /// Starts probing `address` from `mac`: the first probe is queued at once.
    pub fn new(cfg: ArpConfig, address: Ipv4Addr, mac: [u8; 6], now: Instant) -> Probe {
        let mut p = Probe {
            cfg,
            address,
            mac,
            sent: 0,
            next: None,
            transmits: VecDeque::new(),
            result: None,
        };
        if cfg.probes == 0 {
            p.result = Some(ProbeResult::Free);
        } else {
            p.send_probe(now);
        }
        p
    }

    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// Feeds one received ARP packet (the payload after the Ethernet header).
    /// Never panics; malformed packets and our own are ignored.
    pub fn handle_packet(&mut self, now: Instant, payload: &[u8]) {
        let _ = now;
        if self.result.is_some() {
            return;
        }
        let Some(p) = ArpPacket::parse(payload) else {
            return;
        };
        if p.sender_mac == self.mac {
            return; // our own probe, looped back
        }
        // §2.1.1: any request or reply claiming the address, or another
        // host's probe for it (sender IP 0, target the address).
        let claims = p.sender_ip == self.address;
        let probes_too =
            p.op == OP_REQUEST && p.sender_ip.is_unspecified() && p.target_ip == self.address;
        if claims || probes_too {
            tracing::debug!(address = %self.address, other = %Mac(p.sender_mac), op = p.op,
                "arp: address conflict");
            self.finish(ProbeResult::Conflict(Mac(p.sender_mac)));
        }
    }

    /// Call when `now >= poll_timeout()`; earlier calls are ignored.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.next {
            Some(t) if now >= t => {}
            _ => return,
        }
        if self.sent < self.cfg.probes {
            self.send_probe(now);
        } else {
            self.finish(ProbeResult::Free);
        }
    }

    /// The next ARP packet to broadcast (ethertype 0x0806 to ff:ff:ff:ff:ff:ff).
    pub fn poll_transmit(&mut self) -> Option<[u8; ARP_LEN]> {
        self.transmits.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    pub fn result(&self) -> Option<ProbeResult> {
        self.result
    }

    fn send_probe(&mut self, now: Instant) {
        self.transmits
            .push_back(ArpPacket::probe(self.mac, self.address).encode());
        self.sent += 1;
        let gap = if self.sent < self.cfg.probes {
            self.cfg.interval
        } else {
            self.cfg.wait
        };
        self.next = Some(now + gap);
    }

    fn finish(&mut self, r: ProbeResult) {
        self.result = Some(r);
        self.next = None;
        self.transmits.clear();
    }
}

/// RFC 5227 §1.1: ANNOUNCE_NUM.
pub const ANNOUNCE_NUM: u32 = 2;
/// RFC 5227 §1.1: ANNOUNCE_INTERVAL.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(2);
/// RFC 5227 §1.1: DEFEND_INTERVAL.
pub const DEFEND_INTERVAL: Duration = Duration::from_secs(10);

impl ArpPacket {
    /// An ARP announcement (RFC 5227 §2.3): a request from `mac` whose sender
    /// and target IP are both `address`, target MAC zero.
    pub fn announcement(mac: [u8; 6], address: Ipv4Addr) -> ArpPacket {
        ArpPacket {
            op: OP_REQUEST,
            sender_mac: mac,
            sender_ip: address,
            target_mac: [0; 6],
            target_ip: address,
        }
    }
}

/// What a [`Guard`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardEvent {
    /// Another host claimed the address; one announcement defends it.
    Defended(Mac),
    /// Another host claimed it again within DEFEND_INTERVAL of our defence:
    /// stop using the address. The guard is over.
    GiveUp(Mac),
}

/// Announces an address in use and defends it (RFC 5227 §2.3, §2.4). See
/// the module documentation; the same shape as [`Probe`].
#[derive(Debug)]
pub struct Guard {
    address: Ipv4Addr,
    mac: [u8; 6],
    /// Announcements still to send after the one queued last.
    announce_left: u32,
    next: Option<Instant>,
    /// When we last defended the address.
    defended_at: Option<Instant>,
    transmits: VecDeque<[u8; ARP_LEN]>,
    events: VecDeque<GuardEvent>,
    over: bool,
}

impl Guard {
    /// Starts guarding `address` of `mac`: the first announcement is queued
    /// at once, the second ANNOUNCE_INTERVAL later.
    pub fn new(address: Ipv4Addr, mac: [u8; 6], now: Instant) -> Guard {
        let mut g = Guard {
            address,
            mac,
            announce_left: 0,
            next: None,
            defended_at: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            over: false,
        };
        g.announce(now);
        g
    }

    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// Announces the address again (ANNOUNCE_NUM announcements), e.g. after
    /// the link came back.
    pub fn announce(&mut self, now: Instant) {
        if self.over {
            return;
        }
        self.send_announcement();
        self.announce_left = ANNOUNCE_NUM - 1;
        self.next = Some(now + ANNOUNCE_INTERVAL);
    }

    /// Feeds one received ARP packet (the payload after the Ethernet header).
    /// Never panics; malformed packets, our own and those that do not claim
    /// the address are ignored.
    pub fn handle_packet(&mut self, now: Instant, payload: &[u8]) {
        if self.over {
            return;
        }
        let Some(p) = ArpPacket::parse(payload) else {
            return;
        };
        // §2.4: a request or reply whose sender IP is ours and whose sender
        // MAC is not. (Another host's probe, sender 0.0.0.0, is answered by
        // our kernel: that is the defence §2.1.1 expects.)
        if p.sender_mac == self.mac || p.sender_ip != self.address {
            return;
        }
        let other = Mac(p.sender_mac);
        match self.defended_at {
            Some(t) if now.saturating_duration_since(t) < DEFEND_INTERVAL => {
                tracing::warn!(address = %self.address, %other, "arp: address claimed again within DEFEND_INTERVAL, giving it up");
                self.events.push_back(GuardEvent::GiveUp(other));
                self.over = true;
                self.next = None;
                self.transmits.clear();
            }
            _ => {
                tracing::warn!(address = %self.address, %other, "arp: address claimed by another host, defending it");
                self.defended_at = Some(now);
                self.send_announcement();
                self.events.push_back(GuardEvent::Defended(other));
            }
        }
    }

    /// Call when `now >= poll_timeout()`; earlier calls are ignored.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.next {
            Some(t) if now >= t => {}
            _ => return,
        }
        if self.announce_left > 0 {
            self.send_announcement();
            self.announce_left -= 1;
        }
        self.next = (self.announce_left > 0).then(|| now + ANNOUNCE_INTERVAL);
    }

    /// The next ARP packet to broadcast (ethertype 0x0806 to ff:ff:ff:ff:ff:ff).
    pub fn poll_transmit(&mut self) -> Option<[u8; ARP_LEN]> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<GuardEvent> {
        self.events.pop_front()
    }

    /// The next announcement's time; `None` while only watching.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    /// Whether the guard gave the address up.
    pub fn is_over(&self) -> bool {
        self.over
    }

    fn send_announcement(&mut self) {
        self.transmits
            .push_back(ArpPacket::announcement(self.mac, self.address).encode());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);
    const OURS: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
    const OTHER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
    const MS: Duration = Duration::from_millis(1);

    fn cfg() -> ArpConfig {
        ArpConfig::default()
    }

    /// Runs the probe on a virtual clock until it has a result (bounded),
    /// calling `on_tick` after each timeout; returns (result, elapsed, probes sent).
    fn run(
        p: &mut Probe,
        t0: Instant,
        mut on_tick: impl FnMut(&mut Probe, Instant),
    ) -> (ProbeResult, Duration, usize) {
        let mut sent = 0;
        for _ in 0..100 {
            while let Some(f) = p.poll_transmit() {
                assert_eq!(ArpPacket::parse(&f), Some(ArpPacket::probe(OURS, A)));
                sent += 1;
            }
            if let Some(r) = p.result() {
                return (r, Duration::ZERO, sent);
            }
            let t = p.poll_timeout().expect("a deadline while undecided");
            p.handle_timeout(t);
            while let Some(f) = p.poll_transmit() {
                assert_eq!(ArpPacket::parse(&f), Some(ArpPacket::probe(OURS, A)));
                sent += 1;
            }
            on_tick(p, t);
            if let Some(r) = p.result() {
                return (r, t - t0, sent);
            }
        }
        panic!("probe never finished");
    }

    #[test]
    fn probe_packet_layout() {
        let b = ArpPacket::probe(OURS, A).encode();
        assert_eq!(
            b.to_vec(),
            [
                &[0, 1, 8, 0, 6, 4, 0, 1][..],
                &OURS,
                &[0, 0, 0, 0],
                &[0; 6],
                &[192, 0, 2, 77]
            ]
            .concat()
        );
    }

    #[test]
    fn free_when_nothing_answers() {
        let t0 = Instant::now();
        let mut p = Probe::new(cfg(), A, OURS, t0);
        assert_eq!(p.poll_timeout(), Some(t0 + 100 * MS));
        let (r, took, sent) = run(&mut p, t0, |_, _| {});
        assert_eq!(r, ProbeResult::Free);
        assert_eq!(took, 300 * MS);
        assert_eq!(took, cfg().duration());
        assert_eq!(sent, 2);
        assert_eq!(p.poll_timeout(), None);
        // Early timeouts do nothing.
        let mut q = Probe::new(cfg(), A, OURS, t0);
        q.poll_transmit();
        q.handle_timeout(t0 + 50 * MS);
        assert!(q.poll_transmit().is_none());
        assert_eq!(q.poll_timeout(), Some(t0 + 100 * MS));
    }

    #[test]
    fn rfc_timing_and_zero_probes() {
        let t0 = Instant::now();
        let mut p = Probe::new(ArpConfig::RFC5227, A, OURS, t0);
        let (r, took, sent) = run(&mut p, t0, |_, _| {});
        assert_eq!((r, took, sent), (ProbeResult::Free, 5 * 1000 * MS, 3));
        let mut z = Probe::new(ArpConfig { probes: 0, ..cfg() }, A, OURS, t0);
        assert_eq!(z.result(), Some(ProbeResult::Free));
        assert!(z.poll_transmit().is_none());
        assert_eq!(z.poll_timeout(), None);
    }

    #[test]
    fn conflict_on_a_reply_from_another_mac() {
        let t0 = Instant::now();
        let mut p = Probe::new(cfg(), A, OURS, t0);
        p.poll_transmit();
        // What Linux answers to a probe: a reply from A to 0.0.0.0.
        let reply = ArpPacket {
            op: OP_REPLY,
            sender_mac: OTHER,
            sender_ip: A,
            target_mac: OURS,
            target_ip: Ipv4Addr::UNSPECIFIED,
        };
        p.handle_packet(t0 + 2 * MS, &reply.encode());
        assert_eq!(p.result(), Some(ProbeResult::Conflict(Mac(OTHER))));
        assert_eq!(p.poll_timeout(), None);
        assert!(p.poll_transmit().is_none());
        // Later packets do not change the verdict.
        let mut later = reply;
        later.sender_mac = [0x02, 0, 0, 0, 0, 0x55];
        p.handle_packet(t0 + 3 * MS, &later.encode());
        assert_eq!(p.result(), Some(ProbeResult::Conflict(Mac(OTHER))));
    }

    #[test]
    fn conflict_on_any_request_claiming_the_address() {
        let t0 = Instant::now();
        let mut p = Probe::new(cfg(), A, OURS, t0);
        let (r, took, sent) = run(&mut p, t0, |p, t| {
            // After the second probe: a gratuitous ARP (announcement) from A.
            if t == t0 + 100 * MS {
                let g = ArpPacket {
                    op: OP_REQUEST,
                    sender_mac: OTHER,
                    sender_ip: A,
                    target_mac: [0; 6],
                    target_ip: A,
                };
                p.handle_packet(t, &g.encode());
            }
        });
        assert_eq!(r, ProbeResult::Conflict(Mac(OTHER)));
        assert_eq!(took, 100 * MS);
        assert_eq!(sent, 2);
    }

    #[test]
    fn conflict_on_another_hosts_probe() {
        let t0 = Instant::now();
        let mut p = Probe::new(cfg(), A, OURS, t0);
        p.handle_packet(t0 + MS, &ArpPacket::probe(OTHER, A).encode());
        assert_eq!(p.result(), Some(ProbeResult::Conflict(Mac(OTHER))));
    }

    #[test]
    fn unrelated_and_own_packets_are_ignored() {
        let t0 = Instant::now();
        let mut p = Probe::new(cfg(), A, OURS, t0);
        let b = Ipv4Addr::new(192, 0, 2, 78);
        let ignored = [
            // Our own probe, looped back.
            ArpPacket::probe(OURS, A),
            // Our own reply claiming A (e.g. a stale address of ours).
            ArpPacket {
                op: OP_REPLY,
                sender_mac: OURS,
                sender_ip: A,
                target_mac: OTHER,
                target_ip: b,
            },
            // Another host's probe for another address.
            ArpPacket::probe(OTHER, b),
            // Someone asking who has A (normal resolution, from its own address).
            ArpPacket {
                op: OP_REQUEST,
                sender_mac: OTHER,
                sender_ip: b,
                target_mac: [0; 6],
                target_ip: A,
            },
            // A reply (not a probe) with sender 0 and target A: not a probe.
            ArpPacket {
                op: OP_REPLY,
                sender_mac: OTHER,
                sender_ip: Ipv4Addr::UNSPECIFIED,
                target_mac: OURS,
                target_ip: A,
            },
        ];
        let (r, _, _) = run(&mut p, t0, |p, t| {
            for x in &ignored {
                p.handle_packet(t, &x.encode());
            }
        });
        assert_eq!(r, ProbeResult::Free);
    }

    #[test]
    fn garbage_is_ignored() {
        let t0 = Instant::now();
        let mut p = Probe::new(cfg(), A, OURS, t0);
        let good = ArpPacket {
            op: OP_REPLY,
            sender_mac: OTHER,
            sender_ip: A,
            target_mac: OURS,
            target_ip: Ipv4Addr::UNSPECIFIED,
        }
        .encode();
        let mut bad: Vec<Vec<u8>> = vec![vec![], vec![0xff], good[..27].to_vec()];
        for (i, v) in [(1, 6u8), (3, 0xdd), (4, 8), (5, 16), (7, 3)] {
            let mut b = good.to_vec();
            b[i] = v;
            bad.push(b);
        }
        // Pseudo-random junk of every length up to 64 bytes.
        let mut x: u32 = 12345;
        for len in 0..64 {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            if ArpPacket::parse(&v).is_none() {
                bad.push(v);
            }
        }
        for b in &bad {
            p.handle_packet(t0, b);
        }
        assert_eq!(p.result(), None);
        // Ethernet padding after a valid packet is fine.
        let mut padded = good.to_vec();
        padded.resize(46, 0);
        p.handle_packet(t0, &padded);
        assert_eq!(p.result(), Some(ProbeResult::Conflict(Mac(OTHER))));
        assert_eq!(Mac(OTHER).to_string(), "02:00:00:00:00:99");
    }

    fn claim(op: u16, mac: [u8; 6]) -> [u8; ARP_LEN] {
        ArpPacket {
            op,
            sender_mac: mac,
            sender_ip: A,
            target_mac: [0; 6],
            target_ip: A,
        }
        .encode()
    }

    fn drain(g: &mut Guard) -> usize {
        let mut n = 0;
        while let Some(f) = g.poll_transmit() {
            assert_eq!(ArpPacket::parse(&f), Some(ArpPacket::announcement(OURS, A)));
            n += 1;
        }
        n
    }

    #[test]
    fn guard_announces_twice_two_seconds_apart() {
        let t0 = Instant::now();
        let mut g = Guard::new(A, OURS, t0);
        assert_eq!(drain(&mut g), 1);
        assert_eq!(g.poll_timeout(), Some(t0 + ANNOUNCE_INTERVAL));
        g.handle_timeout(t0 + 1000 * MS); // early: nothing
        assert_eq!(drain(&mut g), 0);
        g.handle_timeout(t0 + ANNOUNCE_INTERVAL);
        assert_eq!(drain(&mut g), 1);
        assert_eq!(g.poll_timeout(), None);
        // Announcing again (the router moved, the link came back).
        g.announce(t0 + 60 * 1000 * MS);
        assert_eq!(drain(&mut g), 1);
        g.handle_timeout(t0 + 62 * 1000 * MS);
        assert_eq!(drain(&mut g), 1);
        assert_eq!(g.poll_timeout(), None);
        assert_eq!(g.poll_event(), None);
        let b = ArpPacket::announcement(OURS, A).encode();
        assert_eq!(&b[8..14], &OURS);
        assert_eq!(&b[14..18], &[192, 0, 2, 77]);
        assert_eq!(&b[24..28], &[192, 0, 2, 77]);
    }

    #[test]
    fn guard_defends_once_then_gives_up_within_defend_interval() {
        let t0 = Instant::now();
        let mut g = Guard::new(A, OURS, t0);
        drain(&mut g);
        // A gratuitous ARP from another host: defended with one announcement.
        g.handle_packet(t0 + 5000 * MS, &claim(OP_REQUEST, OTHER));
        assert_eq!(g.poll_event(), Some(GuardEvent::Defended(Mac(OTHER))));
        assert_eq!(drain(&mut g), 1);
        // It answers ARP for the address 9.9 s later: give up.
        g.handle_packet(t0 + 14900 * MS, &claim(OP_REPLY, OTHER));
        assert_eq!(g.poll_event(), Some(GuardEvent::GiveUp(Mac(OTHER))));
        assert!(g.is_over());
        assert_eq!(drain(&mut g), 0);
        assert_eq!(g.poll_timeout(), None);
        // Nothing more once over.
        g.handle_packet(t0 + 15000 * MS, &claim(OP_REQUEST, OTHER));
        g.announce(t0 + 15000 * MS);
        assert_eq!((g.poll_event(), drain(&mut g)), (None, 0));
    }

    #[test]
    fn guard_defends_again_after_defend_interval() {
        let t0 = Instant::now();
        let mut g = Guard::new(A, OURS, t0);
        drain(&mut g);
        g.handle_packet(t0, &claim(OP_REQUEST, OTHER));
        assert_eq!(g.poll_event(), Some(GuardEvent::Defended(Mac(OTHER))));
        // 10 s after the defence: defended again, not given up.
        g.handle_packet(t0 + DEFEND_INTERVAL, &claim(OP_REQUEST, OTHER));
        assert_eq!(g.poll_event(), Some(GuardEvent::Defended(Mac(OTHER))));
        assert_eq!(drain(&mut g), 2);
        assert!(!g.is_over());
    }

    #[test]
    fn guard_ignores_what_does_not_claim_the_address() {
        let t0 = Instant::now();
        let mut g = Guard::new(A, OURS, t0);
        drain(&mut g);
        let b = Ipv4Addr::new(192, 0, 2, 78);
        let ignored = [
            ArpPacket::announcement(OURS, A),  // our own, looped back
            ArpPacket::probe(OTHER, A),        // a probe: our kernel answers it
            ArpPacket::announcement(OTHER, b), // another address
            ArpPacket {
                // who has A? from B
                op: OP_REQUEST,
                sender_mac: OTHER,
                sender_ip: b,
                target_mac: [0; 6],
                target_ip: A,
            },
        ];
        for (i, x) in ignored.iter().enumerate() {
            g.handle_packet(t0 + (i as u32) * MS, &x.encode());
        }
        for junk in [&[][..], &[1, 2, 3][..], &claim(OP_REQUEST, OTHER)[..27]] {
            g.handle_packet(t0, junk);
        }
        assert_eq!((g.poll_event(), drain(&mut g)), (None, 0));
    }
}
