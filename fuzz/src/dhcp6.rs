//! Targets `dhcp6` (the DHCPv6 client of `netcontainer_lease::v6`) and `ra` (the
//! router advertisement parser and tracker).
//!
//! `dhcp6` input: a script of steps `[op, len_hi, len_lo, data..]`; op 0 feeds `data`
//! as a received DHCPv6 message, 1 fires the client's timer, 2 advances the clock by
//! `data[0]` seconds, 3 releases; the first byte picks how the client starts (Solicit,
//! stateless, or resuming a stored lease). The client's randomness is fixed, so its
//! transaction id is known and the seeds (server answers to its own messages) reach
//! past the xid check. Invariants: no panic; a lease is held only in the states that
//! have one; every bound lease has a non-zero valid lifetime; the deadline never lies
//! before the time of the timeout just handled; messages sent parse back.
//!
//! `ra` input: an ICMPv6 message fed to a tracker (from a link-local router with hop
//! limit 255) then to the parser alone. Invariants: no panic; an address event is never
//! made from a prefix that was not a /64 with the A flag.

use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use netcontainer_lease::LeaseTimes;
use netcontainer_lease::randomness::Sequence;
use netcontainer_lease::v6::ra::{self, RaEvent, Tracker};
use netcontainer_lease::v6::testing::{Sent, answer, ia_na};
use netcontainer_lease::v6::wire::code;
use netcontainer_lease::v6::{Client, Config, Event, Lease};

use crate::mutate::mutate;
use crate::rng::Rng;

pub const MAC: [u8; 6] = [0x02, 0x42, 0xc0, 0x00, 0x02, 0x39];
const SERVER: &[u8] = &[0, 3, 0, 1, 2, 0, 0, 0, 0, 1];
const ADDR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x100);
const ROUTER: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

fn client() -> Client {
    let config = Config {
        mac: MAC,
        hostname: Some("web1".into()),
        rapid_commit: true,
        first_delay: None,
    };
    Client::new(config, Box::new(Sequence::fixed(0x8000_0000)))
}

/// Appends one step to a script.
pub fn step(script: &mut Vec<u8>, op: u8, data: &[u8]) {
    let len = data.len().min(usize::from(u16::MAX));
    script.push(op);
    script.extend_from_slice(&(len as u16).to_be_bytes());
    script.extend_from_slice(&data[..len]);
}

/// Server messages answering the client's first message, the seeds of the packets.
fn seed_packets() -> Vec<Vec<u8>> {
    let mut c = client();
    let t0 = Instant::now();
    c.start(t0);
    c.handle_timeout(t0 + Duration::from_secs(1));
    let Some(sol) = c.poll_transmit().and_then(|t| Sent::parse(&t.payload)) else {
        return Vec::new();
    };
    let iaid = c.config().iaid();
    let ia = |t1, t2, p, v, st| (code::IA_NA, ia_na(iaid, t1, t2, &[(ADDR, p, v)], st));
    vec![
        answer(&sol, 2, SERVER, &[ia(100, 160, 180, 200, None)]),
        answer(&sol, 7, SERVER, &[ia(100, 160, 180, 200, None)]),
        answer(
            &sol,
            7,
            SERVER,
            &[ia(0, 0, 30, 60, None), (code::RAPID_COMMIT, vec![])],
        ),
        answer(&sol, 7, SERVER, &[ia(0, 0, 0, 0, Some(3))]),
        answer(&sol, 7, SERVER, &[(code::STATUS_CODE, vec![0, 4, b'x'])]),
        answer(&sol, 10, SERVER, &[(code::RECONF_MSG, vec![5])]),
        answer(
            &sol,
            7,
            SERVER,
            &[
                (code::DNS_SERVERS, ADDR.octets().to_vec()),
                (code::INFORMATION_REFRESH_TIME, vec![0, 0, 2, 88]),
            ],
        ),
    ]
}

#[derive(Default, Debug)]
pub struct Stats {
    pub runs: u64,
    pub bound: u64,
    pub lost: u64,
}

pub struct Dhcp6Target {
    seeds: Vec<Vec<u8>>,
    pub stats: Stats,
}

impl Default for Dhcp6Target {
    fn default() -> Self {
        Dhcp6Target::new()
    }
}

impl Dhcp6Target {
    pub fn new() -> Self {
        Dhcp6Target {
            seeds: seed_packets(),
            stats: Stats::default(),
        }
    }

    /// Seed scripts: each seed packet after a start and a timer, then timers.
    pub fn seed_scripts(&self) -> Vec<Vec<u8>> {
        self.seeds
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut s = vec![i as u8 % 3];
                step(&mut s, 1, &[]);
                step(&mut s, 0, p);
                step(&mut s, 1, &[]);
                step(&mut s, 0, p);
                step(&mut s, 2, &[200]);
                step(&mut s, 1, &[]);
                step(&mut s, 3, &[]);
                s
            })
            .collect()
    }

    pub fn generate(&mut self, rng: &mut Rng, input: &mut Vec<u8>) {
        input.push(rng.u8() % 3);
        for _ in 0..rng.range(1, 12) {
            match rng.below(4) {
                0 | 1 => {
                    let mut p = rng.pick(&self.seeds).clone();
                    let other = rng.pick(&self.seeds).clone();
                    if rng.chance(80) {
                        mutate(rng, &mut p, &other, 4);
                    }
                    step(input, 0, &p);
                }
                2 => step(input, 1, &[]),
                _ => step(input, 2, &[rng.u8()]),
            }
        }
        if rng.chance(20) {
            step(input, 3, &[]);
        }
    }

    pub fn run(&mut self, input: &[u8]) {
        self.stats.runs += 1;
        let Some((&start, mut rest)) = input.split_first() else {
            return;
        };
        let t0 = Instant::now();
        let mut now = t0;
        let mut c = client();
        match start % 3 {
            0 => c.start(now),
            1 => c.start_stateless(now),
            _ => c.resume(
                now,
                Lease {
                    address: ADDR,
                    server_id: SERVER.to_vec(),
                    dns: Vec::new(),
                    times: LeaseTimes {
                        start: t0,
                        t1: Some(Duration::from_secs(50)),
                        t2: Some(Duration::from_secs(80)),
                        valid: Some(Duration::from_secs(200)),
                        preferred: Some(Duration::from_secs(100)),
                    },
                },
            ),
        }
        while rest.len() >= 3 {
            let op = rest[0];
            let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
            let data = &rest[3..3 + len];
            rest = &rest[3 + len..];
            match op % 4 {
                0 => c.handle_packet(now, data),
                1 => {
                    if let Some(t) = c.poll_timeout() {
                        now = now.max(t);
                        c.handle_timeout(now);
                        if let Some(next) = c.poll_timeout() {
                            assert!(next >= now, "deadline in the past");
                        }
                    }
                }
                2 => now += Duration::from_secs(u64::from(data.first().copied().unwrap_or(1))),
                _ => c.release(now),
            }
            while let Some(t) = c.poll_transmit() {
                assert!(
                    Sent::parse(&t.payload).is_some(),
                    "a message the client sent does not parse"
                );
            }
            while let Some(ev) = c.poll_event() {
                match ev {
                    Event::Bound(l) => {
                        assert!(
                            l.times.valid.is_none_or(|v| !v.is_zero()),
                            "bound with valid lifetime zero"
                        );
                        self.stats.bound += 1;
                    }
                    Event::Lost { .. } => self.stats.lost += 1,
                    Event::Information(_) => {}
                }
            }
            if c.lease().is_some() {
                assert!(c.state().has_lease(), "a lease in state {:?}", c.state());
            }
        }
    }
}

pub struct RaTarget {
    seeds: Vec<Vec<u8>>,
    pub accepted: u64,
}

impl Default for RaTarget {
    fn default() -> Self {
        RaTarget::new()
    }
}

/// An RA with one prefix option and an MTU option.
pub fn sample_ra(m: bool, o: bool, len: u8, flags: u8) -> Vec<u8> {
    let mut p = vec![
        134,
        0,
        0,
        0,
        64,
        (u8::from(m) << 7) | (u8::from(o) << 6),
        0x07,
        0x08,
    ];
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(&[
        3, 4, len, flags, 0, 0, 0x0e, 0x10, 0, 0, 0x07, 0x08, 0, 0, 0, 0,
    ]);
    p.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0).octets());
    p.extend_from_slice(&[5, 1, 0, 0, 0, 0, 0x05, 0xdc]);
    p
}

impl RaTarget {
    pub fn new() -> Self {
        RaTarget {
            seeds: vec![
                sample_ra(false, false, 64, 0xc0),
                sample_ra(true, true, 64, 0x80),
                sample_ra(false, true, 48, 0xc0),
                ra::router_solicitation(MAC),
            ],
            accepted: 0,
        }
    }

    pub fn seeds(&self) -> &[Vec<u8>] {
        &self.seeds
    }

    pub fn generate(&mut self, rng: &mut Rng, input: &mut Vec<u8>) {
        let mut p = rng.pick(&self.seeds).clone();
        let other = rng.pick(&self.seeds).clone();
        mutate(rng, &mut p, &other, 4);
        input.extend_from_slice(&p);
    }

    pub fn run(&mut self, input: &[u8]) {
        let parsed = ra::parse(input);
        let now = Instant::now();
        let mut t = Tracker::new(MAC, now, Duration::from_secs(3600));
        let fed = t.handle_ra(now, ROUTER, 255, input);
        assert_eq!(fed.is_ok(), parsed.is_ok());
        let Ok(parsed) = parsed else { return };
        self.accepted += 1;
        while let Some(ev) = t.poll_event() {
            if let RaEvent::Address {
                address,
                prefix_len,
                ..
            } = ev
            {
                assert_eq!(prefix_len, 64);
                assert!(ra::usable_address(address), "{address}");
                assert!(parsed.prefixes.iter().any(|p| p.autonomous
                    && p.prefix_len == 64
                    && ra::slaac_address(p.prefix, MAC) == address));
            }
        }
        assert!(t.addresses().count() <= ra::MAX_ADDRESSES);
        assert!(t.routers().count() <= ra::MAX_ROUTERS);
        t.handle_timeout(now + Duration::from_secs(u64::from(u32::MAX)));
    }
}
