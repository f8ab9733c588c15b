//! Deterministic checks of the client on ACKs with absurd values (run before the `dhcp`
//! target fuzzes): each must be handled by the RFC 2131/2132/3442 rules. A failed check
//! is reported like a crash; a `note` describes behaviour worth knowing that is not an
//! RFC violation as such.

use std::net::Ipv4Addr;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, MessageType};
use netcontainer_lease::State;
use netcontainer_lease::testing::end_of_options;
use netcontainer_lease::v4::{Event, Lease};

use crate::dhcp::{Op, Sim, Stats, insert_raw_option, reply, std_opts};

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
const GW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);

pub struct Outcome {
    pub passed: Vec<&'static str>,
    pub failed: Vec<(&'static str, String)>,
    pub notes: Vec<String>,
}

fn secs(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n))
}

/// DISCOVER, OFFER (lease 3600), REQUEST; then the ACK `make` builds from the REQUEST.
fn to_ack(make: impl FnOnce(&[u8]) -> Vec<u8>) -> (Sim, Stats, Option<Lease>) {
    let mut st = Stats::default();
    let mut sim = Sim::new(7, 0);
    sim.apply(&Op::Start(None), &mut st);
    let d = sim.last_tx.clone().expect("DISCOVER");
    let offer = reply(&d, MessageType::Offer, ADDR, Some(SERVER), std_opts(3600));
    sim.apply(&Op::Packet(offer), &mut st);
    sim.events.clear();
    let r = sim.last_tx.clone().expect("REQUEST");
    sim.apply(&Op::Advance(2), &mut st);
    sim.apply(&Op::Packet(make(&r)), &mut st);
    let lease = sim.events.iter().find_map(|e| match e {
        Event::Bound(l) => Some(l.clone()),
        _ => None,
    });
    (sim, st, lease)
}

fn ack_with(opts: Vec<DhcpOption>) -> (Sim, Stats, Option<Lease>) {
    to_ack(|r| reply(r, MessageType::Ack, ADDR, Some(SERVER), opts))
}

fn with_opts(lease: u32, extra: Vec<DhcpOption>) -> Vec<DhcpOption> {
    let mut o = std_opts(lease);
    o.extend(extra);
    o
}

type Check = (&'static str, fn(&mut Vec<String>) -> Result<(), String>);

fn expect(cond: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(msg()) }
}

const CHECKS: &[Check] = &[
    ("ACK with lease 0 is ignored", |_| {
        let (sim, _, lease) = ack_with(std_opts(0));
        expect(lease.is_none(), || format!("bound with {lease:?}"))?;
        expect(sim.client.state() == State::Requesting, || {
            format!("state {:?}", sim.client.state())
        })
    }),
    ("ACK with lease 0 while renewing is ignored", |_| {
        let (mut sim, mut st, lease) = ack_with(std_opts(3600));
        let lease = lease.ok_or("no lease")?;
        sim.apply(&Op::Advance(1_800_000), &mut st);
        sim.apply(&Op::Timeout, &mut st);
        expect(sim.client.state() == State::Renewing, || {
            format!("not renewing: {:?}", sim.client.state())
        })?;
        let r = sim.last_tx.clone().unwrap();
        sim.events.clear();
        sim.apply(
            &Op::Packet(reply(&r, MessageType::Ack, ADDR, Some(SERVER), std_opts(0))),
            &mut st,
        );
        expect(sim.events.is_empty(), || format!("events {:?}", sim.events))?;
        expect(
            sim.client.state() == State::Renewing && sim.client.lease() == Some(&lease),
            || format!("state {:?}", sim.client.state()),
        )
    }),
    (
        "ACK with lease 0xffffffff: infinite, no timers, no deadline",
        |_| {
            let (mut sim, mut st, lease) = ack_with(std_opts(u32::MAX));
            let l = lease.ok_or("no lease")?;
            expect(
                l.times.valid.is_none() && l.times.t1.is_none() && l.times.t2.is_none(),
                || format!("{l:?}"),
            )?;
            expect(sim.client.poll_timeout().is_none(), || {
                "a deadline for an infinite lease".into()
            })?;
            sim.apply(&Op::Advance(500 * 365 * 86_400_000), &mut st);
            sim.apply(&Op::Timeout, &mut st);
            expect(
                sim.client.state() == State::Bound && sim.client.poll_transmit().is_none(),
                || format!("state {:?} after 500 years", sim.client.state()),
            )
        },
    ),
    (
        "ACK with lease 0xfffffffe: finite, timers at 1/2 and 7/8",
        |_| {
            let (_, _, lease) = ack_with(std_opts(0xffff_fffe));
            let l = lease.ok_or("no lease")?;
            expect(
                l.times.valid == secs(0xffff_fffe) && l.times.t1 == secs(0x7fff_ffff),
                || format!("{l:?}"),
            )
        },
    ),
    ("T1 > T2: both defaults", |_| {
        let (_, _, lease) = ack_with(with_opts(
            3600,
            vec![DhcpOption::Renewal(3000), DhcpOption::Rebinding(1000)],
        ));
        let l = lease.ok_or("no lease")?;
        expect(l.times.t1 == secs(1800) && l.times.t2 == secs(3150), || {
            format!("T1 {:?} T2 {:?}", l.times.t1, l.times.t2)
        })
    }),
    ("T1 = 0: default T1", |_| {
        let (_, _, lease) = ack_with(with_opts(3600, vec![DhcpOption::Renewal(0)]));
        let l = lease.ok_or("no lease")?;
        expect(l.times.t1 == secs(1800) && l.times.t2 == secs(3150), || {
            format!("T1 {:?} T2 {:?}", l.times.t1, l.times.t2)
        })
    }),
    ("T1 = 0 with a valid T2: default T1, T2 kept", |_| {
        let (_, _, lease) = ack_with(with_opts(
            3600,
            vec![DhcpOption::Renewal(0), DhcpOption::Rebinding(3000)],
        ));
        let l = lease.ok_or("no lease")?;
        expect(l.times.t1 == secs(1800) && l.times.t2 == secs(3000), || {
            format!("T1 {:?} T2 {:?}", l.times.t1, l.times.t2)
        })
    }),
    ("T2 = lease: both defaults", |_| {
        let (_, _, lease) = ack_with(with_opts(
            3600,
            vec![DhcpOption::Renewal(100), DhcpOption::Rebinding(3600)],
        ));
        let l = lease.ok_or("no lease")?;
        expect(l.times.t1 == secs(1800) && l.times.t2 == secs(3150), || {
            format!("T1 {:?} T2 {:?}", l.times.t1, l.times.t2)
        })
    }),
    ("mask /0: classful prefix", |_| {
        let mut o = std_opts(3600);
        o[0] = DhcpOption::SubnetMask(Ipv4Addr::UNSPECIFIED);
        let (_, _, lease) = ack_with(o);
        let l = lease.ok_or("no lease")?;
        expect(l.prefix_len == 24, || format!("prefix {}", l.prefix_len))
    }),
    ("mask /32: prefix 32, gateway kept", |_| {
        let mut o = std_opts(3600);
        o[0] = DhcpOption::SubnetMask(Ipv4Addr::BROADCAST);
        let (_, _, lease) = ack_with(o);
        let l = lease.ok_or("no lease")?;
        expect(l.prefix_len == 32 && l.gateway == Some(GW), || {
            format!("{l:?}")
        })
    }),
    ("non-contiguous mask: classful prefix", |_| {
        let mut o = std_opts(3600);
        o[0] = DhcpOption::SubnetMask(Ipv4Addr::new(255, 0, 255, 0));
        let (_, _, lease) = ack_with(o);
        let l = lease.ok_or("no lease")?;
        expect(l.prefix_len == 24, || format!("prefix {}", l.prefix_len))
    }),
    ("gateway outside the subnet: reported as given", |_| {
        let outside = Ipv4Addr::new(198, 51, 100, 1);
        let mut o = std_opts(3600);
        o[1] = DhcpOption::Router(vec![outside]);
        let (_, _, lease) = ack_with(o);
        let l = lease.ok_or("no lease")?;
        expect(l.gateway == Some(outside), || {
            format!("gateway {:?}", l.gateway)
        })
    }),
    (
        "200 routers (option split over 4 instances): the first is the gateway",
        |_| {
            let routers: Vec<Ipv4Addr> = (0..200u32)
                .map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(192, 0, 2, 100)) + i % 150))
                .collect();
            let mut o = std_opts(3600);
            o[1] = DhcpOption::Router(routers);
            let (_, _, lease) = ack_with(o);
            let l = lease.ok_or("no lease")?;
            expect(l.gateway == Some(Ipv4Addr::new(192, 0, 2, 100)), || {
                format!("gateway {:?}", l.gateway)
            })
        },
    ),
    ("unusable first router skipped", |_| {
        let mut o = std_opts(3600);
        o[1] = DhcpOption::Router(vec![Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, GW]);
        let (_, _, lease) = ack_with(o);
        let l = lease.ok_or("no lease")?;
        expect(l.gateway == Some(GW), || format!("gateway {:?}", l.gateway))
    }),
    ("255-byte hostname in the ACK: ignored", |_| {
        let (_, _, lease) = ack_with(with_opts(3600, vec![DhcpOption::Hostname("h".repeat(255))]));
        let l = lease.ok_or("no lease")?;
        expect(l.gateway == Some(GW) && l.prefix_len == 24, || {
            format!("{l:?}")
        })
    }),
    ("yiaddr 0.0.0.0 ACK: ignored", |_| {
        let (sim, _, lease) = to_ack(|r| {
            reply(
                r,
                MessageType::Ack,
                Ipv4Addr::UNSPECIFIED,
                Some(SERVER),
                std_opts(3600),
            )
        });
        expect(lease.is_none() && sim.client.lease().is_none(), || {
            format!("{lease:?}")
        })
    }),
    (
        "option 121 with garbage (prefix 33): no panic, router option ignored (RFC 3442)",
        |notes| {
            let (_, _, lease) = to_ack(|r| {
                let mut p = reply(r, MessageType::Ack, ADDR, Some(SERVER), std_opts(3600));
                let end = end_of_options(&p).expect("an End option"); // before End
                insert_raw_option(&mut p, end, 121, 9, &[33, 1, 2, 3, 4, 5, 6, 7, 8]);
                p
            });
            let l = lease.ok_or("no lease")?;
            if l.gateway.is_none() {
                notes.push(format!(
                "option 121 whose first byte is a prefix length of 33 decodes to an empty route list, and because option 121 is present the router option is ignored (RFC 3442): bound with no gateway ({l:?})"
            ));
            }
            Ok(())
        },
    ),
    ("option 121 truncated: no panic", |notes| {
        let (sim, _, lease) = to_ack(|r| {
            let mut p = reply(r, MessageType::Ack, ADDR, Some(SERVER), vec![]);
            // 121 first: dhcproto stops decoding at the bad option.
            insert_raw_option(&mut p, 240, 121, 3, &[32, 1, 2]);
            let end = end_of_options(&p).expect("an End option");
            let mut tail = Vec::new();
            for o in [[1u8, 4, 255, 255, 255, 128], [3, 4, 192, 0, 2, 254]] {
                tail.extend_from_slice(&o);
            }
            tail.extend_from_slice(&[51, 4, 0, 0, 0x0e, 0x10]);
            p.splice(end..end, tail);
            p
        });
        if lease.is_none() {
            notes.push(format!(
                "an ACK whose option 121 is truncated ([121, 3, 32, 1, 2]) before its other options is ignored as a whole (state stays {:?}): dhcproto stops decoding at the bad option, so the message type is lost too",
                sim.client.state()
            ));
        }
        Ok(())
    }),
    (
        "malformed option 51 (length 3) in dnsmasq option order",
        |notes| {
            let (_, _, lease) = to_ack(|r| {
                let mut p = reply(r, MessageType::Ack, ADDR, None, vec![]);
                // Replace the options: 53, 54, 51 (length 3), 1 (/25), 3, end.
                p.truncate(240);
                p.extend_from_slice(&[53, 1, 5, 54, 4, 192, 0, 2, 1, 51, 3, 0, 0x0e, 0x10]);
                p.extend_from_slice(&[1, 4, 255, 255, 255, 128, 3, 4, 192, 0, 2, 254, 255]);
                p
            });
            if let Some(l) = lease
                && (l.prefix_len != 25 || l.gateway.is_none())
            {
                notes.push(format!(
                "MISBEHAVIOUR: an ACK with a malformed option 51 (length 3) is accepted with the OFFER's lease time, but every option after the bad one is silently dropped (dhcproto stops decoding there; sanitize_reply keeps option 51 without checking its length): bound to /{} with gateway {:?} although the ACK carries mask /25 and router 192.0.2.254",
                l.prefix_len, l.gateway
            ));
            }
            Ok(())
        },
    ),
    (
        "OFFER lease 3600, ACK without option 51 while renewing: ignored",
        |_| {
            let (mut sim, mut st, lease) = ack_with(std_opts(3600));
            lease.ok_or("no lease")?;
            sim.apply(&Op::Advance(1_800_000), &mut st);
            sim.apply(&Op::Timeout, &mut st);
            let r = sim.last_tx.clone().unwrap();
            sim.events.clear();
            let mut o = std_opts(3600);
            o.pop();
            sim.apply(
                &Op::Packet(reply(&r, MessageType::Ack, ADDR, Some(SERVER), o)),
                &mut st,
            );
            expect(sim.client.state() == State::Renewing, || {
                format!("state {:?}", sim.client.state())
            })
        },
    ),
    (
        "lease of 1 s: renew, rebind, expire without spinning",
        |_| {
            let (mut sim, mut st, lease) = ack_with(std_opts(1));
            lease.ok_or("no lease")?;
            let mut states = Vec::new();
            for _ in 0..20 {
                let Some(ms) = sim.ms_to_deadline() else {
                    break;
                };
                sim.apply(&Op::Advance(ms), &mut st);
                sim.apply(&Op::Timeout, &mut st);
                states.push(sim.client.state());
                if sim.client.state() == State::Selecting {
                    break;
                }
            }
            expect(
                states.contains(&State::Renewing)
                    && states.contains(&State::Rebinding)
                    && states.last() == Some(&State::Selecting),
                || format!("states {states:?}"),
            )
        },
    ),
];

pub fn run() -> Outcome {
    let mut out = Outcome {
        passed: Vec::new(),
        failed: Vec::new(),
        notes: Vec::new(),
    };
    for (name, check) in CHECKS {
        let mut notes = Vec::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&mut notes)));
        match r {
            Ok(Ok(())) => out.passed.push(name),
            Ok(Err(e)) => out.failed.push((name, e)),
            Err(_) => out
                .failed
                .push((name, format!("panic: {}", crate::last_panic()))),
        }
        out.notes.extend(notes);
    }
    out
}
