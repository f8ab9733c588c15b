//! The DHCPv6 client as a sans-IO state machine (RFC 8415), the same shape
//! as the DHCPv4 one: the shell feeds it received UDP payloads (port 546)
//! and "the deadline passed", and drains messages to send (always to
//! All_DHCP_Relay_Agents_and_Servers, ff02::1:2 port 547, from the link-local
//! address), events and the next deadline.
//!
//! The shape both clients share is in the crate documentation; what is
//! DHCPv6's own:
//!
//! ```text
//! client.start(now)                  stateful: Solicit (after a random delay)
//! client.resume(now, lease)          stateful after a restart: Rebind for the stored lease
//! client.start_stateless(now)        Information-request only (RA with O and not M)
//! client.release(now)                Release (retransmitted up to REL_MAX_RC), Event::Lost(Released)
//! ```
//!
//! After a restart the client Rebinds rather than Confirms (sections
//! 18.2.2 and 18.2.5 allow either): the agent restarts on the same link, and
//! a Rebind both checks that the binding still exists (NoBinding otherwise)
//! and renews its lifetimes, where a Confirm only says the prefix is on-link.

use std::collections::VecDeque;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use dhcproto::v6::MessageType;
use rand::RngCore;
use tracing::{debug, info, warn};

use super::config::{
    self, Config, IRT_DEFAULT, IRT_MINIMUM, Params, first_rt, next_rt, rand_factor, random_delay,
};
use super::wire::{self, IaAddress, Kind, Outgoing, Received, status};
use crate::randomness::Randomness;
use crate::state::State;
use crate::timers::{LeaseTimes, lifetime};

/// An address leased through an IA_NA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv6Addr,
    pub server_id: Vec<u8>,
    pub dns: Vec<Ipv6Addr>,
    /// The address's preferred and valid lifetimes and when to Renew and
    /// Rebind ([`crate::timers::rfc8415_timers`]), counted from when the
    /// exchange that earned this lease began (section 18.2.10.1).
    pub times: LeaseTimes,
}

impl Lease {
    pub fn renew_at(&self) -> Option<Instant> {
        self.times.renew_at()
    }
    pub fn rebind_at(&self) -> Option<Instant> {
        self.times.rebind_at()
    }
    pub fn expires_at(&self) -> Option<Instant> {
        self.times.expires_at()
    }
    pub fn preferred_until(&self) -> Option<Instant> {
        self.times.preferred_until()
    }
}

/// Stateless configuration (section 18.2.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Information {
    pub dns: Vec<Ipv6Addr>,
    pub refresh: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostReason {
    /// The valid lifetime ended without a Reply to Renew or Rebind.
    Expired,
    /// The server answered without the address (valid lifetime zero,
    /// NotOnLink, or no binding any more).
    Withdrawn,
    Released,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A lease is in force: new, extended, or its address changed.
    Bound(Lease),
    Lost {
        lease: Lease,
        reason: LostReason,
    },
    /// Other configuration from an Information-request.
    Information(Information),
}

/// A message to send to ff02::1:2 port 547.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub payload: Vec<u8>,
}

/// One message exchange and its retransmission (section 15).
#[derive(Clone, Debug)]
struct Exchange {
    xid: u32,
    params: Params,
    /// First transmission (for the Elapsed Time option), once sent.
    started: Option<Instant>,
    /// Transmissions so far.
    sent: u32,
    rt: Duration,
    next: Instant,
    /// End of MRD (or of the exchange's own limit, e.g. T2 for a Renew).
    give_up: Option<Instant>,
}

#[derive(Clone, Debug)]
struct Offer {
    server_id: Vec<u8>,
    preference: u8,
    addresses: Vec<IaAddress>,
}

#[derive(Clone, Debug)]
enum Phase {
    Idle,
    Soliciting {
        ex: Exchange,
        best: Option<Offer>,
    },
    Requesting {
        ex: Exchange,
        offer: Offer,
    },
    /// Rebind after a restart, for a lease not yet confirmed.
    Rebooting {
        ex: Exchange,
        lease: Lease,
    },
    Bound {
        lease: Lease,
    },
    Renewing {
        ex: Exchange,
        lease: Lease,
    },
    Rebinding {
        ex: Exchange,
        lease: Lease,
    },
    Informing {
        ex: Exchange,
    },
    Informed {
        refresh_at: Instant,
    },
    Releasing {
        ex: Exchange,
        lease: Lease,
    },
    Stopped,
}

/// The DHCPv6 client. See the module documentation.
pub struct Client {
    config: Config,
    duid: Vec<u8>,
    rng: Box<dyn Randomness>,
    phase: Phase,
    /// SOL_MAX_RT as the server set it (section 21.24).
    sol_max_rt: Duration,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Client {
    pub fn new(config: Config, rng: Box<dyn Randomness>) -> Self {
        Client {
            duid: config.duid(),
            config,
            rng,
            phase: Phase::Idle,
            sol_max_rt: config::SOLICIT.mrt,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Stateful: Solicit, after the random delay of section 18.2.1.
    pub fn start(&mut self, now: Instant) {
        self.begin_solicit(now);
    }

    /// Stateful, resuming a lease stored before a restart: Rebind for it
    /// until a Reply or the end of its valid lifetime. An expired lease
    /// starts over with a Solicit.
    pub fn resume(&mut self, now: Instant, lease: Lease) {
        if lease.times.expired(now) {
            info!(address = %lease.address, "dhcp6: stored lease expired, soliciting");
            return self.begin_solicit(now);
        }
        info!(address = %lease.address, "dhcp6: rebinding the stored lease");
        let ex = self.exchange(now, config::REBIND, lease.expires_at());
        self.phase = Phase::Rebooting { ex, lease };
        self.transmit_now(now);
    }

    /// Stateless: Information-request only (section 18.2.6).
    pub fn start_stateless(&mut self, now: Instant) {
        let mut params = config::INFORMATION_REQUEST;
        if let Some(d) = self.config.first_delay {
            params.max_delay = d;
        }
        let ex = self.exchange(now, params, None);
        self.phase = Phase::Informing { ex };
    }

    /// Release the lease held (section 18.2.7): Release retransmitted until
    /// a Reply or REL_MAX_RC; the address must go at once (Event::Lost).
    pub fn release(&mut self, now: Instant) {
        match self.take_lease() {
            Some(lease) => {
                info!(address = %lease.address, "dhcp6: releasing");
                let ex = self.exchange(now, config::RELEASE, None);
                self.events.push_back(Event::Lost {
                    lease: lease.clone(),
                    reason: LostReason::Released,
                });
                self.phase = Phase::Releasing { ex, lease };
                self.transmit_now(now);
            }
            None => self.phase = Phase::Stopped,
        }
    }

    /// Done: stopped, and a Release (if any) answered or given up.
    pub fn is_stopped(&self) -> bool {
        matches!(self.phase, Phase::Stopped)
    }

    pub fn state(&self) -> State {
        match &self.phase {
            Phase::Idle => State::Init,
            Phase::Soliciting { .. } => State::Selecting,
            Phase::Requesting { .. } | Phase::Informing { .. } => State::Requesting,
            Phase::Rebooting { .. } => State::Rebooting,
            Phase::Bound { .. } | Phase::Informed { .. } => State::Bound,
            Phase::Renewing { .. } => State::Renewing,
            Phase::Rebinding { .. } => State::Rebinding,
            Phase::Releasing { .. } | Phase::Stopped => State::Stopped,
        }
    }

    pub fn lease(&self) -> Option<&Lease> {
        match &self.phase {
            Phase::Bound { lease }
            | Phase::Renewing { lease, .. }
            | Phase::Rebinding { lease, .. } => Some(lease),
            _ => None,
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
            Phase::Soliciting { ex, .. }
            | Phase::Requesting { ex, .. }
            | Phase::Rebooting { ex, .. }
            | Phase::Renewing { ex, .. }
            | Phase::Rebinding { ex, .. }
            | Phase::Informing { ex }
            | Phase::Releasing { ex, .. } => Some(ex.next),
            Phase::Bound { lease } => lease.times.next_deadline(),
            Phase::Informed { refresh_at } => Some(*refresh_at),
            Phase::Idle | Phase::Stopped => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_none_or(|t| now < t) {
            return;
        }
        match &self.phase {
            Phase::Bound { lease } => {
                let lease = lease.clone();
                if lease.times.expired(now) {
                    return self.lose(now, LostReason::Expired);
                }
                if lease.rebind_at().is_some_and(|t| now >= t) {
                    info!(address = %lease.address, "dhcp6: T2, rebinding");
                    let ex = self.exchange(now, config::REBIND, lease.expires_at());
                    self.phase = Phase::Rebinding { ex, lease };
                } else {
                    info!(address = %lease.address, "dhcp6: T1, renewing");
                    let ex =
                        self.exchange(now, config::RENEW, lease.rebind_at().or(lease.expires_at()));
                    self.phase = Phase::Renewing { ex, lease };
                }
                self.transmit_now(now);
            }
            Phase::Informed { .. } => {
                let ex = self.exchange(now, config::INFORMATION_REQUEST, None);
                self.phase = Phase::Informing { ex };
                self.transmit_now(now);
            }
            _ => self.exchange_timeout(now),
        }
    }

    pub fn handle_packet(&mut self, now: Instant, payload: &[u8]) {
        let xid = self.current_xid();
        let msg = match wire::receive(payload, xid, &self.duid, self.config.iaid()) {
            Ok(m) => m,
            Err(why) => {
                debug!(%why, "dhcp6: message ignored");
                return;
            }
        };
        if msg.kind == Kind::Reconfigure {
            // Section 18.2.11 and 20.4: a Reconfigure must be authenticated
            // with the Reconfigure Key the client accepted; this client never
            // sends Reconfigure Accept, so no Reconfigure is authentic.
            warn!(
                has_auth = msg.has_auth,
                "dhcp6: Reconfigure ignored (not authenticated)"
            );
            return;
        }
        if let Some(t) = msg.sol_max_rt {
            // Section 21.24: values outside 60..=86400 are ignored.
            if (60..=86400).contains(&t) {
                self.sol_max_rt = Duration::from_secs(u64::from(t));
            }
        }
        match (&self.phase, msg.kind) {
            (Phase::Soliciting { .. }, Kind::Advertise) => self.on_advertise(now, msg),
            (Phase::Soliciting { .. }, Kind::Reply)
                if msg.rapid_commit && self.config.rapid_commit =>
            {
                let started = self.exchange_start(now);
                self.on_reply_lease(now, msg, started);
            }
            (Phase::Requesting { offer, .. }, Kind::Reply) if offer.server_id != msg.server_id => {
                debug!("dhcp6: Reply from a server we did not select ignored");
            }
            (Phase::Renewing { lease, .. }, Kind::Reply) if lease.server_id != msg.server_id => {
                debug!("dhcp6: Reply to Renew from another server ignored");
            }
            (
                Phase::Requesting { .. }
                | Phase::Rebooting { .. }
                | Phase::Renewing { .. }
                | Phase::Rebinding { .. },
                Kind::Reply,
            ) => {
                let started = self.exchange_start(now);
                self.on_reply_lease(now, msg, started);
            }
            (Phase::Informing { .. }, Kind::Reply) => {
                let refresh = msg.information_refresh.map_or(IRT_DEFAULT, |s| {
                    lifetime(s).unwrap_or(Duration::MAX).max(IRT_MINIMUM)
                });
                info!(dns = ?msg.dns, ?refresh, "dhcp6: information received");
                self.events.push_back(Event::Information(Information {
                    dns: msg.dns,
                    refresh,
                }));
                self.phase = Phase::Informed {
                    refresh_at: now.checked_add(refresh).unwrap_or(now + IRT_DEFAULT),
                };
            }
            (Phase::Releasing { .. }, Kind::Reply) => {
                info!("dhcp6: Release acknowledged");
                self.phase = Phase::Stopped;
            }
            _ => debug!(kind = ?msg.kind, "dhcp6: message not expected now, ignored"),
        }
    }

    // ------------------------------------------------------------------
    // transitions

    fn begin_solicit(&mut self, now: Instant) {
        let mut params = config::SOLICIT;
        params.mrt = self.sol_max_rt;
        if let Some(d) = self.config.first_delay {
            params.max_delay = d;
        }
        let ex = self.exchange(now, params, None);
        debug!(xid = format_args!("{:#08x}", ex.xid), "dhcp6: Solicit");
        self.phase = Phase::Soliciting { ex, best: None };
    }

    fn on_advertise(&mut self, now: Instant, msg: Received) {
        let usable = msg
            .ia_na
            .as_ref()
            .filter(|ia| ia.status == status::SUCCESS && msg.status == status::SUCCESS)
            .map(|ia| {
                ia.addresses
                    .iter()
                    .filter(|a| a.valid > 0)
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if usable.is_empty() {
            // Section 18.2.9: an Advertise without addresses is not a choice.
            debug!("dhcp6: Advertise without addresses ignored");
            return;
        }
        let offer = Offer {
            server_id: msg.server_id,
            preference: msg.preference,
            addresses: usable,
        };
        let Phase::Soliciting { ex, best } = &mut self.phase else {
            return;
        };
        // Section 18.2.9: preference 255 is taken at once, and so is any
        // Advertise that arrives after the first RT (retransmitting).
        let take_now = offer.preference == 255 || ex.sent > 1;
        if best
            .as_ref()
            .is_none_or(|b| offer.preference > b.preference)
        {
            *best = Some(offer);
        }
        if take_now {
            self.request_best(now);
        }
    }

    fn request_best(&mut self, now: Instant) {
        let Phase::Soliciting { best, .. } = &mut self.phase else {
            return;
        };
        let Some(offer) = best.take() else { return };
        info!(address = ?offer.addresses.first().map(|a| a.address), preference = offer.preference, "dhcp6: Advertise accepted, Request");
        let ex = self.exchange(now, config::REQUEST, None);
        self.phase = Phase::Requesting { ex, offer };
        self.transmit_now(now);
    }

    /// A Reply to Request, Renew, Rebind (or Solicit with Rapid Commit):
    /// section 18.2.10.
    fn on_reply_lease(&mut self, now: Instant, msg: Received, started: Instant) {
        let previous = self.lease_or_rebooting().map(|l| l.address);
        if msg.status == status::NOT_ON_LINK
            || msg
                .ia_na
                .as_ref()
                .is_some_and(|ia| ia.status == status::NOT_ON_LINK)
        {
            info!("dhcp6: NotOnLink, starting over");
            return self.lose(now, LostReason::Withdrawn);
        }
        let Some(ia) = msg.ia_na.clone() else {
            debug!("dhcp6: Reply without our IA_NA ignored");
            return;
        };
        let renewing = matches!(
            self.phase,
            Phase::Rebooting { .. } | Phase::Renewing { .. } | Phase::Rebinding { .. }
        );
        if ia.status == status::NO_BINDING && renewing {
            // Section 18.2.10.1: the server lost the binding; Request it
            // again from that server (after a Renew or Rebind).
            info!("dhcp6: NoBinding, requesting again");
            let addresses = previous
                .map(|address| IaAddress {
                    address,
                    preferred: 0,
                    valid: 0,
                })
                .into_iter()
                .collect();
            let offer = Offer {
                server_id: msg.server_id,
                preference: 0,
                addresses,
            };
            let ex = self.exchange(now, config::REQUEST, None);
            self.phase = Phase::Requesting { ex, offer };
            return self.transmit_now(now);
        }
        if ia.status != status::SUCCESS {
            if matches!(self.phase, Phase::Requesting { .. }) {
                info!(status = ia.status, "dhcp6: IA refused, soliciting again");
                self.begin_solicit(now);
            } else {
                // A refusing Rapid Commit Reply: keep soliciting (other
                // servers may answer); while renewing: retransmit.
                debug!(
                    status = ia.status,
                    "dhcp6: IA status in Reply, retransmitting"
                );
            }
            return;
        }
        // Section 21.4: T1 above T2 (both set) makes the IA unusable.
        if ia.t1 != 0 && ia.t2 != 0 && ia.t1 > ia.t2 {
            warn!(t1 = ia.t1, t2 = ia.t2, "dhcp6: IA_NA with T1 > T2 ignored");
            return;
        }
        let live: Vec<&IaAddress> = ia.addresses.iter().filter(|a| a.valid > 0).collect();
        let chosen = live
            .iter()
            .find(|a| Some(a.address) == previous)
            .or(live.first())
            .copied()
            .cloned();
        let Some(a) = chosen else {
            // The server set our address's lifetimes to zero: gone.
            info!("dhcp6: Reply withdraws the address");
            return self.lose(now, LostReason::Withdrawn);
        };
        let times = LeaseTimes::dhcpv6(
            started,
            lifetime(a.preferred),
            lifetime(a.valid),
            ia.t1,
            ia.t2,
        );
        let lease = Lease {
            address: a.address,
            server_id: msg.server_id,
            dns: msg.dns,
            times,
        };
        info!(address = %lease.address, preferred = ?times.preferred, valid = ?times.valid,
            t1 = ?times.t1, t2 = ?times.t2, "dhcp6: bound");
        if let Some(old) = self.lease_or_rebooting().cloned()
            && old.address != lease.address
        {
            self.events.push_back(Event::Lost {
                lease: old,
                reason: LostReason::Withdrawn,
            });
        }
        self.events.push_back(Event::Bound(lease.clone()));
        self.phase = Phase::Bound { lease };
        // A Reply that arrived past T1 moves on at once.
        if self.poll_timeout().is_some_and(|t| now >= t) {
            self.handle_timeout(now);
        }
    }

    /// The address can no longer be used: report it and solicit again.
    fn lose(&mut self, now: Instant, reason: LostReason) {
        let lease = match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Bound { lease }
            | Phase::Renewing { lease, .. }
            | Phase::Rebinding { lease, .. }
            | Phase::Rebooting { lease, .. } => Some(lease),
            _ => None,
        };
        if let Some(lease) = lease {
            warn!(address = %lease.address, ?reason, "dhcp6: lease lost");
            self.events.push_back(Event::Lost { lease, reason });
        }
        self.begin_solicit(now);
    }

    /// The current exchange's retransmission timer fired (section 15).
    fn exchange_timeout(&mut self, now: Instant) {
        let Some(ex) = self.exchange_mut() else {
            return;
        };
        if ex.sent == 0 {
            return self.transmit_now(now);
        }
        let exhausted = (ex.params.mrc != 0 && ex.sent >= ex.params.mrc)
            || ex.give_up.is_some_and(|t| now >= t);
        if !exhausted {
            // Section 18.2.9: the first RT of a Solicit is the window for
            // Advertises; the best one so far is taken when it closes.
            if let Phase::Soliciting { best: Some(_), .. } = &self.phase {
                return self.request_best(now);
            }
            return self.transmit_now(now);
        }
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Requesting { .. } => {
                info!("dhcp6: no Reply to Request, soliciting again");
                self.begin_solicit(now);
            }
            Phase::Renewing { lease, .. } if lease.expires_at().is_none_or(|t| now < t) => {
                info!(address = %lease.address, "dhcp6: T2, rebinding");
                let ex = self.exchange(now, config::REBIND, lease.expires_at());
                self.phase = Phase::Rebinding { ex, lease };
                self.transmit_now(now);
            }
            phase
            @ (Phase::Renewing { .. } | Phase::Rebinding { .. } | Phase::Rebooting { .. }) => {
                self.phase = phase;
                self.lose(now, LostReason::Expired);
            }
            Phase::Releasing { .. } => {
                debug!("dhcp6: no Reply to Release, giving up");
                self.phase = Phase::Stopped;
            }
            other => self.phase = other,
        }
    }

    fn take_lease(&mut self) -> Option<Lease> {
        match std::mem::replace(&mut self.phase, Phase::Stopped) {
            Phase::Bound { lease }
            | Phase::Renewing { lease, .. }
            | Phase::Rebinding { lease, .. }
            | Phase::Rebooting { lease, .. } => Some(lease),
            _ => None,
        }
    }

    fn lease_or_rebooting(&self) -> Option<&Lease> {
        match &self.phase {
            Phase::Rebooting { lease, .. } => Some(lease),
            _ => self.lease(),
        }
    }

    // ------------------------------------------------------------------
    // exchanges and messages

    /// A new exchange; its first transmission is due after the message's
    /// random delay (sent by [`Self::transmit_now`] or the timer).
    fn exchange(&mut self, now: Instant, params: Params, give_up: Option<Instant>) -> Exchange {
        let xid = self.rng.next_u32() & 0x00ff_ffff;
        let delay = random_delay(self.rng.as_mut(), params.max_delay);
        let give_up = match (give_up, params.mrd) {
            (Some(a), Some(d)) => Some(a.min(now + d)),
            (a, d) => a.or(d.map(|d| now + d)),
        };
        Exchange {
            xid,
            params,
            started: None,
            sent: 0,
            rt: Duration::ZERO,
            next: now + delay,
            give_up,
        }
    }

    fn exchange_mut(&mut self) -> Option<&mut Exchange> {
        match &mut self.phase {
            Phase::Soliciting { ex, .. }
            | Phase::Requesting { ex, .. }
            | Phase::Rebooting { ex, .. }
            | Phase::Renewing { ex, .. }
            | Phase::Rebinding { ex, .. }
            | Phase::Informing { ex }
            | Phase::Releasing { ex, .. } => Some(ex),
            _ => None,
        }
    }

    fn current_xid(&self) -> Option<u32> {
        match &self.phase {
            Phase::Soliciting { ex, .. }
            | Phase::Requesting { ex, .. }
            | Phase::Rebooting { ex, .. }
            | Phase::Renewing { ex, .. }
            | Phase::Rebinding { ex, .. }
            | Phase::Informing { ex }
            | Phase::Releasing { ex, .. } => Some(ex.xid),
            _ => None,
        }
    }

    fn exchange_start(&mut self, now: Instant) -> Instant {
        self.exchange_mut().and_then(|e| e.started).unwrap_or(now)
    }

    /// Sends the current exchange's message (first or retransmission) and
    /// sets the next retransmission time.
    fn transmit_now(&mut self, now: Instant) {
        let solicit = matches!(self.phase, Phase::Soliciting { .. });
        let rand = rand_factor(self.rng.as_mut());
        let Some(ex) = self.exchange_mut() else {
            return;
        };
        ex.rt = if ex.sent == 0 {
            first_rt(&ex.params, rand, solicit)
        } else {
            next_rt(&ex.params, ex.rt, rand)
        };
        let started = *ex.started.get_or_insert(now);
        ex.sent += 1;
        ex.next = now + ex.rt;
        if let Some(g) = ex.give_up {
            ex.next = ex.next.min(g.max(now));
        }
        let (xid, sent) = (ex.xid, ex.sent);
        let elapsed = now.saturating_duration_since(started);
        let iaid = self.config.iaid();
        let hostname = self
            .config
            .hostname
            .as_deref()
            .filter(|h| !h.trim_matches('.').is_empty());
        let mut o = Outgoing {
            duid: &self.duid,
            elapsed,
            oro: true,
            hostname,
            ..Outgoing::default()
        };
        let hint = |addrs: Vec<Ipv6Addr>| {
            addrs
                .into_iter()
                .map(|address| IaAddress {
                    address,
                    preferred: 0,
                    valid: 0,
                })
                .collect()
        };
        let mt = match &self.phase {
            Phase::Soliciting { .. } => {
                o.ia_na = Some((iaid, Vec::new()));
                o.rapid_commit = self.config.rapid_commit;
                MessageType::Solicit
            }
            Phase::Requesting { offer, .. } => {
                o.server_id = Some(&offer.server_id);
                o.ia_na = Some((
                    iaid,
                    hint(offer.addresses.iter().map(|a| a.address).collect()),
                ));
                MessageType::Request
            }
            Phase::Renewing { lease, .. } => {
                o.server_id = Some(&lease.server_id);
                o.ia_na = Some((iaid, hint(vec![lease.address])));
                MessageType::Renew
            }
            Phase::Rebinding { lease, .. } | Phase::Rebooting { lease, .. } => {
                o.ia_na = Some((iaid, hint(vec![lease.address])));
                MessageType::Rebind
            }
            Phase::Informing { .. } => MessageType::InformationRequest,
            Phase::Releasing { lease, .. } => {
                o.server_id = Some(&lease.server_id);
                o.ia_na = Some((iaid, hint(vec![lease.address])));
                o.oro = false;
                o.hostname = None;
                MessageType::Release
            }
            _ => return,
        };
        match wire::build(mt, xid, &o) {
            Ok(payload) => {
                debug!(
                    ?mt,
                    xid = format_args!("{xid:#08x}"),
                    transmission = sent,
                    "dhcp6: transmit"
                );
                self.transmits.push_back(Transmit { payload });
            }
            Err(e) => warn!(error = %e, ?mt, "dhcp6: cannot encode message, not sent"),
        }
    }
}

#[cfg(test)]
mod tests;
