//! The DHCPv4 client as a sans-IO state machine (RFC 2131).
//!
//! No sockets, no clock, no sleeping: the I/O shell feeds it received DHCP
//! payloads and "the deadline passed" with the current time, and drains
//! packets to send ([`Client::poll_transmit`]), lease events
//! ([`Client::poll_event`]) and the next deadline ([`Client::poll_timeout`]).
//! The shape both clients share is in the crate documentation; what is
//! DHCPv4's own:
//!
//! ```text
//! client.start(now)          -> Selecting, DISCOVER queued at once (option 50 = config.request_address)
//! client.resume(now, addr)   -> Rebooting (INIT-REBOOT), REQUEST{opt50=addr, no 54, ciaddr 0} queued at once
//! client.resume_lease(now, lease) -> the same; unanswered, the unexpired lease is used (Bound) until it ends
//! client.handle_packet(now, udp_payload)  // garbage, foreign xid/chaddr, BOOTREQUEST: ignored
//! client.release(now)  // RELEASE unicast to server (if a lease is held), Event::Lost(Released), state Stopped
//! client.stop(now)     // no RELEASE: Event::Lost(Kept), state Stopped; the next start resumes the lease
//! client.decline(now)  // address conflict: DECLINE broadcast, Event::Lost(Declined), Init, DISCOVER after retry.decline_delay
//! ```
//!
//! What the bytes of a reply mean (and which replies are refused before any
//! state is looked at) is [`super::wire`]'s business; this module only decides
//! what a valid reply, or a deadline, does to the state.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dhcproto::v4::{
    DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode, UnknownOption,
};
use rand::Rng;
use tracing::{debug, info, warn};

pub use super::config::{Config, Retry};
pub use super::lease::Lease;
use super::wire::{
    MAX_MESSAGE_SIZE, REQUESTED_PARAMS, encode_padded, fqdn_option, parse_lease, sanitize_reply,
    server_id_of, usable_address,
};
use crate::randomness::Randomness;
use crate::state::State;

/// Where a packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255:67 from `src`, through the raw socket.
    Broadcast { src: Ipv4Addr },
    /// Unicast to `server:67` from `src:68`, through a UDP socket bound to `src`.
    Unicast { src: Ipv4Addr, server: Ipv4Addr },
}

/// A packet to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The encoded DHCP message, padded to at least 300 bytes.
    pub payload: Vec<u8>,
    pub destination: Destination,
}

/// Why an address stopped being usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostReason {
    Expired,
    Nak,
    Released,
    Declined,
    /// The client stopped without releasing ([`Client::stop`]): the server
    /// still holds the lease, to be claimed again on the next start.
    Kept,
}

/// Something the shell must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A lease is in force: new, or extended/changed by a renew or rebind.
    /// The shell compares it with what it configured and (re)configures.
    Bound(Lease),
    /// The lease's address must no longer be used: remove it (and the rules).
    Lost { lease: Lease, reason: LostReason },
}

/// One request/response exchange: its xid, when it began (for `secs`), how
/// many retransmissions were done and when the next one is due.
#[derive(Clone, Debug)]
struct Exchange {
    xid: u32,
    started: Instant,
    retransmits: u32,
    next: Instant,
}

#[derive(Clone, Debug)]
enum Phase {
    /// Not started, or waiting to (re)start discovery at `discover_at`.
    Init {
        discover_at: Option<Instant>,
        hint: Option<Ipv4Addr>,
    },
    Selecting {
        ex: Exchange,
        hint: Option<Ipv4Addr>,
    },
    Requesting {
        ex: Exchange,
        offered: Ipv4Addr,
        server_id: Ipv4Addr,
        offer_lease_time: Option<u32>,
        /// When the first REQUEST of this exchange was sent.
        sent_at: Instant,
    },
    Rebooting {
        ex: Exchange,
        address: Ipv4Addr,
        sent_at: Instant,
        /// The lease held before the restart, when the shell kept it: used
        /// for the rest of its time if no server answers (RFC 2131 3.2).
        kept: Option<Lease>,
    },
    Bound {
        lease: Lease,
    },
    Renewing {
        lease: Lease,
        ex: Exchange,
    },
    Rebinding {
        lease: Lease,
        ex: Exchange,
    },
    Stopped,
}

/// The DHCPv4 client state machine. See the module documentation.
pub struct Client {
    config: Config,
    rng: Box<dyn Randomness>,
    phase: Phase,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// NAKs received since the last successful bind.
    consecutive_naks: u32,
    /// NAKs acted on since the client was made (for metrics).
    naks_total: u64,
}

impl Client {
    pub fn new(config: Config, rng: Box<dyn Randomness>) -> Self {
        Client {
            config,
            rng,
            phase: Phase::Init {
                discover_at: None,
                hint: None,
            },
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            consecutive_naks: 0,
            naks_total: 0,
        }
    }

    /// NAKs acted on since the client was made: each cost a lease or the
    /// address asked for (a NAK from another server while renewing, which is
    /// ignored, does not count).
    pub fn naks(&self) -> u64 {
        self.naks_total
    }

    /// Begin acquiring a lease: DISCOVER at once, asking for
    /// [`Config::request_address`] (option 50) when set: servers give it
    /// back when it is free, without the client claiming it.
    ///
    /// May be called in any state; it abandons whatever was going on (without
    /// releasing a lease still held: call [`Client::release`] first for that).
    pub fn start(&mut self, now: Instant) {
        self.consecutive_naks = 0;
        let hint = self.config.request_address.filter(|a| usable_address(*a));
        self.begin_discover(now, hint);
    }

    /// Claim again the address of a lease held before a restart:
    /// INIT-REBOOT (RFC 2131 section 3.2), a REQUEST for `address` at once;
    /// without an answer, DISCOVER asking for it. An unusable address
    /// starts as [`Client::start`] does.
    ///
    /// May be called in any state, like [`Client::start`].
    pub fn resume(&mut self, now: Instant, address: Ipv4Addr) {
        if !usable_address(address) {
            return self.start(now);
        }
        self.reboot(now, address, None);
    }

    /// [`Client::resume`] with the whole lease held before a restart: when
    /// no server answers the INIT-REBOOT REQUESTs (the server down, the
    /// LAN cut), the client uses the lease for the rest of its time (RFC
    /// 2131 section 3.2: "MAY choose to use the previously allocated
    /// network address and configuration parameters for the remainder of
    /// the unexpired lease"): [`Event::Bound`], renewing at once, rebinding
    /// at its T2 and discovering once it expires. Without that a restart while the server
    /// is away would drop a lease the server still holds for us. An
    /// expired or unusable lease starts as [`Client::resume`] and
    /// [`Client::start`] do.
    pub fn resume_lease(&mut self, now: Instant, lease: Lease) {
        if !usable_address(lease.address) {
            return self.start(now);
        }
        let address = lease.address;
        let kept = (!lease.times.expired(now)).then_some(lease);
        self.reboot(now, address, kept);
    }

    fn reboot(&mut self, now: Instant, address: Ipv4Addr, kept: Option<Lease>) {
        self.consecutive_naks = 0;
        let xid = self.rng.random();
        let next = reboot_deadline(now + self.backoff(0), kept.as_ref());
        let ex = Exchange {
            xid,
            started: now,
            retransmits: 0,
            next,
        };
        info!(%address, xid = format_args!("{xid:#010x}"), kept = kept.is_some(), "dhcp: INIT-REBOOT, requesting previous address");
        self.phase = Phase::Rebooting {
            ex,
            address,
            sent_at: now,
            kept,
        };
        self.send_current(now);
    }

    /// Feed one received UDP payload (destination port 68). Anything that is
    /// not a reply to our current exchange is ignored; never panics.
    pub fn handle_packet(&mut self, now: Instant, payload: &[u8]) {
        self.handle_packet_from(now, None, payload)
    }

    /// [`Client::handle_packet`] with the packet's IPv4 source address when
    /// the shell knows it, for [`Config::servers`].
    pub fn handle_packet_from(&mut self, now: Instant, source: Option<Ipv4Addr>, payload: &[u8]) {
        let Some(xid) = self.current_xid() else {
            return;
        };
        let Some(msg) = sanitize_reply(payload, xid, &self.config.chaddr) else {
            return;
        };
        let Some(mt) = msg.opts().msg_type() else {
            debug!("dhcp: reply without message type ignored");
            return;
        };
        let server = server_id_of(&msg);
        if !self.config.servers.admits(server, source, msg.giaddr()) {
            debug!(
                ?mt,
                ?server,
                ?source,
                "dhcp: reply from a server not chosen ignored"
            );
            return;
        }
        match (&self.phase, mt) {
            (Phase::Selecting { .. }, MessageType::Offer) => self.on_offer(now, &msg),
            (Phase::Requesting { server_id, .. }, MessageType::Ack | MessageType::Nak)
                if server != Some(*server_id) =>
            {
                debug!(?server, selected = %server_id, "dhcp: reply from a server we did not select ignored");
            }
            (Phase::Requesting { .. } | Phase::Rebooting { .. }, MessageType::Nak) => {
                info!(?server, "dhcp: NAK, restarting discovery");
                self.restart_after_nak(now);
            }
            (Phase::Renewing { lease, .. }, MessageType::Nak)
                if server != Some(lease.server_id) =>
            {
                debug!(
                    ?server,
                    "dhcp: NAK from another server while renewing ignored"
                );
            }
            (Phase::Renewing { .. } | Phase::Rebinding { .. }, MessageType::Nak) => {
                let lease = self.take_lease().expect("renewing/rebinding hold a lease");
                info!(address = %lease.address, ?server, "dhcp: NAK, lease lost");
                self.events.push_back(Event::Lost {
                    lease,
                    reason: LostReason::Nak,
                });
                self.restart_after_nak(now);
            }
            (
                Phase::Requesting { .. }
                | Phase::Rebooting { .. }
                | Phase::Renewing { .. }
                | Phase::Rebinding { .. },
                MessageType::Ack,
            ) => self.on_ack(now, &msg),
            (phase, mt) => {
                debug!(?mt, state = ?phase_state(phase), "dhcp: unexpected message ignored");
            }
        }
    }

    /// Call when `now >= poll_timeout()`. Calls before the deadline are ignored.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.poll_timeout() {
            Some(deadline) if now >= deadline => {}
            _ => return,
        }
        match &mut self.phase {
            Phase::Init { hint, .. } => {
                let hint = *hint;
                self.begin_discover(now, hint);
            }
            Phase::Selecting { ex, .. } => {
                ex.retransmits += 1;
                let n = ex.retransmits;
                debug!(retransmit = n, "dhcp: no OFFER, retransmitting DISCOVER");
                let next = now + self.backoff(n);
                self.set_next(next);
                self.send_current(now);
            }
            Phase::Requesting { ex, .. } => {
                if ex.retransmits >= self.config.retry.request_retransmits {
                    info!("dhcp: no answer to REQUEST, restarting discovery");
                    self.begin_discover(now, None);
                } else {
                    ex.retransmits += 1;
                    let n = ex.retransmits;
                    debug!(retransmit = n, "dhcp: retransmitting REQUEST");
                    let next = now + self.backoff(n);
                    self.set_next(next);
                    self.send_current(now);
                }
            }
            Phase::Rebooting {
                ex, address, kept, ..
            } => {
                let address = *address;
                let expired = kept.as_ref().is_some_and(|l| l.times.expired(now));
                if expired {
                    // Its time ran out while we asked for it: nothing is
                    // left to use, only to ask for.
                    info!(%address, "dhcp: the lease ended during INIT-REBOOT, discovering");
                    self.begin_discover(now, Some(address));
                } else if ex.retransmits >= self.config.retry.reboot_retransmits {
                    match self.take_kept() {
                        Some(lease) => self.use_kept(now, lease),
                        None => {
                            info!(%address, "dhcp: no answer to INIT-REBOOT, discovering");
                            self.begin_discover(now, Some(address));
                        }
                    }
                } else {
                    ex.retransmits += 1;
                    let n = ex.retransmits;
                    debug!(retransmit = n, "dhcp: retransmitting INIT-REBOOT REQUEST");
                    let next = now + self.backoff(n);
                    let next = match &self.phase {
                        Phase::Rebooting { kept, .. } => reboot_deadline(next, kept.as_ref()),
                        _ => next,
                    };
                    self.set_next(next);
                    self.send_current(now);
                }
            }
            Phase::Bound { .. } | Phase::Renewing { .. } | Phase::Rebinding { .. } => {
                self.lease_timeout(now)
            }
            Phase::Stopped => {}
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Init { discover_at, .. } => *discover_at,
            Phase::Selecting { ex, .. }
            | Phase::Requesting { ex, .. }
            | Phase::Rebooting { ex, .. }
            | Phase::Renewing { ex, .. }
            | Phase::Rebinding { ex, .. } => Some(ex.next),
            Phase::Bound { lease } => lease.renew_at(),
            Phase::Stopped => None,
        }
    }

    /// Give the lease back (RELEASE unicast to the server, if one is held) and stop.
    pub fn release(&mut self, now: Instant) {
        let _ = now;
        if let Some(lease) = self.take_lease() {
            info!(address = %lease.address, server = %lease.server_id, "dhcp: releasing lease");
            let xid = self.rng.random();
            let mut m = self.base_message(xid, MessageType::Release, 0);
            m.set_ciaddr(lease.address);
            m.opts_mut()
                .insert(DhcpOption::ServerIdentifier(lease.server_id));
            self.queue(
                &m,
                Destination::Unicast {
                    src: lease.address,
                    server: lease.server_id,
                },
            );
            self.events.push_back(Event::Lost {
                lease,
                reason: LostReason::Released,
            });
        } else {
            debug!("dhcp: stopped without a lease to release");
        }
        self.phase = Phase::Stopped;
    }

    /// Stops without a RELEASE: the server keeps the lease until it expires,
    /// so the next start (with the lease persisted by the shell) claims it
    /// again by INIT-REBOOT (RFC 2131 3.2: a client need not release its
    /// lease on shutdown). The lease is reported lost (`Kept`) so that the
    /// shell stops using its address now.
    pub fn stop(&mut self, now: Instant) {
        let _ = now;
        if let Some(lease) = self.take_lease() {
            info!(address = %lease.address, "dhcp: stopping; the lease is kept for the next start");
            self.events.push_back(Event::Lost {
                lease,
                reason: LostReason::Kept,
            });
        }
        self.phase = Phase::Stopped;
    }

    /// The leased address is in use by someone else (the ARP probe was
    /// answered, or another host insisted on it later, RFC 5227 §2.4 (c)):
    /// DECLINE it and restart discovery after [`Retry::decline_delay`]. No-op
    /// without a lease (Bound, Renewing, Rebinding).
    pub fn decline(&mut self, now: Instant) {
        if self.lease().is_none() {
            debug!(state = ?self.state(), "dhcp: decline ignored without a lease");
            return;
        }
        let lease = self.take_lease().expect("checked: a lease is held");
        warn!(address = %lease.address, server = %lease.server_id, "dhcp: declining address");
        let xid = self.rng.random();
        let mut m = self.base_message(xid, MessageType::Decline, 0);
        m.opts_mut()
            .insert(DhcpOption::RequestedIpAddress(lease.address));
        m.opts_mut()
            .insert(DhcpOption::ServerIdentifier(lease.server_id));
        self.queue(
            &m,
            Destination::Broadcast {
                src: Ipv4Addr::UNSPECIFIED,
            },
        );
        self.events.push_back(Event::Lost {
            lease,
            reason: LostReason::Declined,
        });
        self.phase = Phase::Init {
            discover_at: Some(now + self.config.retry.decline_delay),
            hint: None,
        };
    }

    pub fn state(&self) -> State {
        phase_state(&self.phase)
    }

    /// The lease in force (Bound, Renewing, Rebinding).
    pub fn lease(&self) -> Option<&Lease> {
        match &self.phase {
            Phase::Bound { lease }
            | Phase::Renewing { lease, .. }
            | Phase::Rebinding { lease, .. } => Some(lease),
            _ => None,
        }
    }

    // ----------------------------------------------------------------------
    // transitions

    fn begin_discover(&mut self, now: Instant, hint: Option<Ipv4Addr>) {
        let xid = self.rng.random();
        let next = now + self.backoff(0);
        info!(xid = format_args!("{xid:#010x}"), ?hint, "dhcp: DISCOVER");
        self.phase = Phase::Selecting {
            ex: Exchange {
                xid,
                started: now,
                retransmits: 0,
                next,
            },
            hint,
        };
        self.send_current(now);
    }

    fn restart_after_nak(&mut self, now: Instant) {
        self.consecutive_naks = self.consecutive_naks.saturating_add(1);
        self.naks_total = self.naks_total.saturating_add(1);
        let retry = &self.config.retry;
        if self.consecutive_naks <= retry.nak_free_restarts {
            self.begin_discover(now, None);
        } else {
            // A server that NAKs everything must not make us spin.
            let exp = (self.consecutive_naks - retry.nak_free_restarts).min(6);
            let delay = Duration::from_secs(1 << exp).min(retry.max);
            warn!(
                naks = self.consecutive_naks,
                ?delay,
                "dhcp: repeated NAKs, delaying DISCOVER"
            );
            self.phase = Phase::Init {
                discover_at: Some(now + delay),
                hint: None,
            };
        }
    }

    fn on_offer(&mut self, now: Instant, msg: &Message) {
        let Phase::Selecting { ex, .. } = &self.phase else {
            return;
        };
        let offered = msg.yiaddr();
        if !usable_address(offered) {
            debug!(%offered, "dhcp: OFFER with unusable yiaddr ignored");
            return;
        }
        let Some(server_id) = server_id_of(msg) else {
            debug!("dhcp: OFFER without server identifier ignored");
            return;
        };
        let offer_lease_time = match msg.opts().get(OptionCode::AddressLeaseTime) {
            Some(DhcpOption::AddressLeaseTime(t)) => Some(*t),
            _ => None,
        };
        let ex = Exchange {
            xid: ex.xid,
            started: ex.started,
            retransmits: 0,
            next: now + self.backoff(0),
        };
        info!(%offered, server = %server_id, "dhcp: OFFER accepted, REQUEST");
        self.phase = Phase::Requesting {
            ex,
            offered,
            server_id,
            offer_lease_time,
            sent_at: now,
        };
        self.send_current(now);
    }

    fn on_ack(&mut self, now: Instant, msg: &Message) {
        let (start, fallback_lease_time, fallback_server) = match &self.phase {
            Phase::Requesting {
                sent_at,
                offer_lease_time,
                server_id,
                ..
            } => (*sent_at, *offer_lease_time, Some(*server_id)),
            Phase::Rebooting { sent_at, .. } => (*sent_at, None, None),
            Phase::Renewing { ex, lease } | Phase::Rebinding { ex, lease } => {
                (ex.started, None, Some(lease.server_id))
            }
            _ => return,
        };
        let lease = match parse_lease(msg, start, fallback_lease_time, fallback_server) {
            Ok(lease) => lease,
            Err(why) => {
                warn!(why, "dhcp: ACK ignored");
                return;
            }
        };
        let previous = self.state();
        info!(
            address = %lease.address,
            prefix = lease.prefix_len,
            gateway = ?lease.gateway,
            server = %lease.server_id,
            lease_time = ?lease.times.valid,
            from = ?previous,
            "dhcp: bound"
        );
        self.consecutive_naks = 0;
        self.events.push_back(Event::Bound(lease.clone()));
        self.phase = Phase::Bound { lease };
        // A lease already past T1 (a very slow exchange) moves on at once.
        if self.poll_timeout().is_some_and(|t| now >= t) {
            self.lease_timeout(now);
        }
    }

    /// Bound/Renewing/Rebinding deadline handling.
    fn lease_timeout(&mut self, now: Instant) {
        let Some(lease) = self.lease() else { return };
        let (Some(t2), Some(expiry)) = (lease.rebind_at(), lease.expires_at()) else {
            return; // infinite lease: nothing to do, ever
        };
        if now >= expiry {
            let lease = self.take_lease().expect("lease held");
            warn!(address = %lease.address, "dhcp: lease expired");
            let hint = Some(lease.address);
            self.events.push_back(Event::Lost {
                lease,
                reason: LostReason::Expired,
            });
            self.begin_discover(now, hint);
            return;
        }
        let renew_floor = self.config.retry.renew_floor;
        let floor = lease
            .times
            .valid
            .map_or(renew_floor, |l| (l / 8).min(renew_floor));
        let in_renewing = matches!(self.phase, Phase::Renewing { .. });
        if let Phase::Renewing { ex, .. } | Phase::Rebinding { ex, .. } = &mut self.phase
            && (!in_renewing || now < t2)
        {
            // Retransmission within the current renew or rebind episode.
            ex.retransmits += 1;
            ex.next = retransmit_at(now, if in_renewing { t2 } else { expiry }, floor);
            debug!(
                retransmit = ex.retransmits,
                next = ?ex.next.saturating_duration_since(now),
                "dhcp: retransmitting renew/rebind REQUEST"
            );
        } else {
            // Bound -> Renewing at T1, Bound/Renewing -> Rebinding at T2.
            let Some(lease) = self.take_lease() else {
                return;
            };
            let xid = self.rng.random();
            let ex = |deadline| Exchange {
                xid,
                started: now,
                retransmits: 0,
                next: retransmit_at(now, deadline, floor),
            };
            if now < t2 {
                info!(address = %lease.address, server = %lease.server_id, "dhcp: T1, renewing");
                self.phase = Phase::Renewing { lease, ex: ex(t2) };
            } else {
                info!(address = %lease.address, "dhcp: T2, rebinding");
                self.phase = Phase::Rebinding {
                    lease,
                    ex: ex(expiry),
                };
            }
        }
        self.send_current(now);
    }

    /// The lease kept through INIT-REBOOT, taken out of the phase.
    fn take_kept(&mut self) -> Option<Lease> {
        match &mut self.phase {
            Phase::Rebooting { kept, .. } => kept.take(),
            _ => None,
        }
    }

    /// No server answered INIT-REBOOT: use the lease held before the
    /// restart for the rest of its time (RFC 2131 section 3.2), and ask
    /// for it at once the other way, RENEWING by unicast to its server (or
    /// REBINDING past its T2): a server that ignores an INIT-REBOOT for a
    /// lease it forgot (dnsmasq, not authoritative, does) NAKs that unicast,
    /// so the client moves on now rather than at T1.
    fn use_kept(&mut self, now: Instant, lease: Lease) {
        info!(
            address = %lease.address,
            server = %lease.server_id,
            left = ?lease.expires_at().map(|t| t.saturating_duration_since(now)),
            "dhcp: no answer to INIT-REBOOT; using the unexpired lease until it ends (RFC 2131 3.2)"
        );
        self.events.push_back(Event::Bound(lease.clone()));
        self.phase = Phase::Bound { lease };
        // From Bound this moves on to RENEWING or REBINDING (an infinite
        // lease has nothing to renew and stays Bound).
        self.lease_timeout(now);
    }

    fn take_lease(&mut self) -> Option<Lease> {
        match std::mem::replace(&mut self.phase, Phase::Stopped) {
            Phase::Bound { lease }
            | Phase::Renewing { lease, .. }
            | Phase::Rebinding { lease, .. } => Some(lease),
            other => {
                self.phase = other;
                None
            }
        }
    }

    fn current_xid(&self) -> Option<u32> {
        match &self.phase {
            Phase::Selecting { ex, .. }
            | Phase::Requesting { ex, .. }
            | Phase::Rebooting { ex, .. }
            | Phase::Renewing { ex, .. }
            | Phase::Rebinding { ex, .. } => Some(ex.xid),
            _ => None,
        }
    }

    fn set_next(&mut self, next: Instant) {
        match &mut self.phase {
            Phase::Selecting { ex, .. }
            | Phase::Requesting { ex, .. }
            | Phase::Rebooting { ex, .. }
            | Phase::Renewing { ex, .. }
            | Phase::Rebinding { ex, .. } => ex.next = next,
            _ => {}
        }
    }

    /// RFC 2131 §4.1 (with the default [`Retry`]): 4 s, 8 s, 16 s, 32 s,
    /// 64 s, 64 s... after the `retransmits`-th retransmission, each ±1 s
    /// uniformly.
    fn backoff(&mut self, retransmits: u32) -> Duration {
        let retry = &self.config.retry;
        let base = retry
            .initial
            .saturating_mul(1 << retransmits.min(16))
            .min(retry.max);
        let spread = i64::try_from(retry.jitter.as_millis()).unwrap_or(i64::MAX);
        let jitter_ms: i64 = self.rng.random_range(-spread..=spread);
        if jitter_ms >= 0 {
            base.saturating_add(Duration::from_millis(jitter_ms as u64))
        } else {
            base.saturating_sub(Duration::from_millis(jitter_ms.unsigned_abs()))
        }
    }

    // ----------------------------------------------------------------------
    // messages

    /// Queue the message of the current exchange (first send or retransmission).
    fn send_current(&mut self, now: Instant) {
        let secs = |ex: &Exchange| {
            u16::try_from(now.saturating_duration_since(ex.started).as_secs()).unwrap_or(u16::MAX)
        };
        let (msg, destination) = match &self.phase {
            Phase::Selecting { ex, hint } => {
                let mut m = self.base_message(ex.xid, MessageType::Discover, secs(ex));
                self.add_request_options(&mut m, true);
                if let Some(hint) = hint {
                    m.opts_mut().insert(DhcpOption::RequestedIpAddress(*hint));
                }
                (m, BROADCAST_UNSPECIFIED)
            }
            Phase::Requesting {
                ex,
                offered,
                server_id,
                ..
            } => {
                let mut m = self.base_message(ex.xid, MessageType::Request, secs(ex));
                self.add_request_options(&mut m, true);
                m.opts_mut()
                    .insert(DhcpOption::RequestedIpAddress(*offered));
                m.opts_mut()
                    .insert(DhcpOption::ServerIdentifier(*server_id));
                (m, BROADCAST_UNSPECIFIED)
            }
            Phase::Rebooting { ex, address, .. } => {
                let mut m = self.base_message(ex.xid, MessageType::Request, secs(ex));
                self.add_request_options(&mut m, true);
                m.opts_mut()
                    .insert(DhcpOption::RequestedIpAddress(*address));
                (m, BROADCAST_UNSPECIFIED)
            }
            Phase::Renewing { ex, lease } | Phase::Rebinding { ex, lease } => {
                let mut m = self.base_message(ex.xid, MessageType::Request, secs(ex));
                // We own the address now: the server can unicast to ciaddr.
                self.add_request_options(&mut m, false);
                m.set_ciaddr(lease.address);
                let dest = if matches!(self.phase, Phase::Renewing { .. }) {
                    Destination::Unicast {
                        src: lease.address,
                        server: lease.server_id,
                    }
                } else {
                    Destination::Broadcast { src: lease.address }
                };
                (m, dest)
            }
            Phase::Init { .. } | Phase::Bound { .. } | Phase::Stopped => return,
        };
        self.queue(&msg, destination);
    }

    fn base_message(&self, xid: u32, mt: MessageType, secs: u16) -> Message {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootRequest)
            .set_htype(HType::Eth)
            .set_xid(xid)
            .set_secs(secs)
            .set_chaddr(&self.config.chaddr);
        m.opts_mut().insert(DhcpOption::MessageType(mt));
        m.opts_mut()
            .insert(DhcpOption::ClientIdentifier(self.client_id()));
        m
    }

    /// Options 55, 57, 12 and 81 (DISCOVER and every REQUEST), and the
    /// broadcast flag when configured and `unconfigured` (no address yet).
    fn add_request_options(&self, m: &mut Message, unconfigured: bool) {
        if unconfigured && self.config.broadcast_flag {
            m.set_flags(Flags::default().set_broadcast());
        }
        let o = m.opts_mut();
        o.insert(DhcpOption::ParameterRequestList(
            REQUESTED_PARAMS
                .iter()
                .map(|c| OptionCode::from(*c))
                .collect(),
        ));
        o.insert(DhcpOption::MaxMessageSize(MAX_MESSAGE_SIZE));
        if let Some(host) = self.hostname() {
            o.insert(DhcpOption::Hostname(host.to_string()));
            o.insert(DhcpOption::Unknown(UnknownOption::new(
                OptionCode::ClientFQDN,
                fqdn_option(host),
            )));
        }
    }

    fn hostname(&self) -> Option<&str> {
        self.config
            .hostname
            .as_deref()
            .filter(|h| !h.trim_matches('.').is_empty())
    }

    /// Option 61: the configured client id, or (if that is empty, which
    /// option 61 does not allow) htype 1 followed by the MAC.
    fn client_id(&self) -> Vec<u8> {
        if self.config.client_id.is_empty() {
            let mut id = vec![1u8];
            id.extend_from_slice(&self.config.chaddr);
            id
        } else {
            self.config.client_id.clone()
        }
    }

    fn queue(&mut self, msg: &Message, destination: Destination) {
        let payload = match encode_padded(msg) {
            Ok(payload) => payload,
            Err(e) => {
                warn!(error = %e, "dhcp: cannot encode message, not sent");
                return;
            }
        };
        debug!(
            mt = ?msg.opts().msg_type(),
            xid = format_args!("{:#010x}", msg.xid()),
            ?destination,
            len = payload.len(),
            "dhcp: transmit"
        );
        self.transmits.push_back(Transmit {
            payload,
            destination,
        });
    }
}

const BROADCAST_UNSPECIFIED: Destination = Destination::Broadcast {
    src: Ipv4Addr::UNSPECIFIED,
};

fn phase_state(phase: &Phase) -> State {
    match phase {
        Phase::Init { .. } => State::Init,
        Phase::Selecting { .. } => State::Selecting,
        Phase::Requesting { .. } => State::Requesting,
        Phase::Rebooting { .. } => State::Rebooting,
        Phase::Bound { .. } => State::Bound,
        Phase::Renewing { .. } => State::Renewing,
        Phase::Rebinding { .. } => State::Rebinding,
        Phase::Stopped => State::Stopped,
    }
}

/// An INIT-REBOOT retransmission is due at `next`, or when the kept lease
/// ends if that is sooner (then the client stops claiming and discovers).
fn reboot_deadline(next: Instant, kept: Option<&Lease>) -> Instant {
    kept.and_then(Lease::expires_at)
        .map_or(next, |end| next.min(end))
}

/// Renew/rebind retransmission: half the time left to `deadline`, at least
/// `floor`, never after `deadline` (RFC 2131 §4.4.5).
fn retransmit_at(now: Instant, deadline: Instant, floor: Duration) -> Instant {
    let half = deadline.saturating_duration_since(now) / 2;
    (now + half.max(floor)).min(deadline)
}

#[cfg(test)]
mod tests;
