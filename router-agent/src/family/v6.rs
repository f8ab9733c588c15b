//! The IPv6 family task: follows the LAN's router advertisements on the
//! interface (its own raw ICMPv6 socket; see `dhcp::socket6` for why not the
//! kernel's), forms SLAAC addresses, and runs the DHCPv6 client as the flags
//! say (RFC 4861 section 4.2): M set, stateful (IA_NA); only O set, stateless
//! (Information-request). Like the v4 task it configures nothing itself: it
//! reports [`Event`]s to the core, which owns addresses and routes.
//!
//! A DHCPv6 lease persisted by an earlier agent is resumed at once (Rebind),
//! without waiting for an RA: the address is still on the interface with its
//! lifetimes, and a restart should not cost a Solicit exchange.

use std::net::Ipv6Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netcontainer_lease::randomness;
use netcontainer_lease::v6::ra::{RaEvent, Tracker};
use netcontainer_lease::v6::{Client, Config, Event as ClientEvent, Lease, LostReason};
use netcontainer_proto::Plan;
use rand::RngCore;
use tokio::sync::mpsc;

use super::{Address, Event, Events, Family, Handle, Origin, RECEIVE_ERROR_PAUSE, sleep_until};
use crate::dhcp::socket6::{Icmp6Socket, Udp6Socket};
use crate::netconf::Link;
use crate::store6::{Lease6Store, StoredLease6};

/// How long a stop waits for the server's Reply to the Release (its first
/// retransmission comes after about a second; the address is gone already).
const RELEASE_PATIENCE: Duration = Duration::from_millis(1500);
/// How soon a DHCPv6 message that found no source address is sent again,
/// and how often: the link-local address is still tentative (duplicate
/// detection takes about a second, more with forwarding on), and the
/// client's own retransmission (10 s for a Rebind) would be a long wait.
const RESEND_PAUSE: Duration = Duration::from_millis(250);
const RESEND_TRIES: u32 = 20;

/// How long a stored lease's Rebind waits for the link-local address to
/// finish duplicate detection, and how often that is looked at.
const DAD_PATIENCE: Duration = Duration::from_secs(3);
const DAD_POLL: Duration = Duration::from_millis(100);

/// The most the first Router Solicitation waits. RFC 4861 section 6.3.7
/// says a host SHOULD wait up to MAX_RTR_SOLICITATION_DELAY (1 s), so that
/// hosts starting together after a power failure do not solicit at once,
/// and the first Solicit waits up to another second after it (RFC 8415
/// section 18.2.1, also a SHOULD). A router agent starts when the driver
/// (or Docker's restart of its container) starts it, not with a link, and
/// its IPv4 client sends at once; two seconds of expected waiting would
/// make IPv6 the slow family. A fifth of a second still spreads routers
/// started together, and the Solicit that follows the RA (whose timing is
/// the LAN router's) waits no more (`Config::first_delay`).
const MAX_RTR_SOLICITATION_DELAY: Duration = Duration::from_millis(200);

/// Turns the kernel's own RA handling off on the interface (the agent does
/// it, see `dhcp::socket6`), and IPv6 on or off as the plan says. Best
/// effort: a read-only `/proc/sys` keeps what it has (then the kernel may
/// form the same SLAAC address too, which the core's `replace` tolerates).
///
/// Optimistic DAD (RFC 4429) lets the link-local address be used while its
/// duplicate detection runs, so the first Router Solicitation and Solicit
/// need not wait for it; a kernel without it (no such file) only costs
/// that wait.
pub fn prepare_interface(ifname: &str, enable: bool) {
    if !std::path::Path::new("/proc/sys/net/ipv6").exists() {
        return; // no IPv6 in this kernel: nothing to turn on or off
    }
    let disable = if enable { "0" } else { "1" };
    let set = |name: &str, value: &str| {
        let path = format!("/proc/sys/net/ipv6/conf/{ifname}/{name}");
        std::fs::write(&path, value).map_err(|e| (path, e))
    };
    for (name, value) in [
        ("accept_ra", "0"),
        ("autoconf", "0"),
        ("disable_ipv6", disable),
    ] {
        if let Err((path, e)) = set(name, value) {
            tracing::warn!(%path, error = %e, "cannot set an IPv6 sysctl of the LAN interface");
        }
    }
    if enable {
        // Unsolicited neighbour advertisements once an address's DAD is
        // over (RFC 4861 section 7.2.6): neighbours and switches learn at
        // once where the router is, also after it moved (the IPv6 twin of
        // the v4 task's ARP announcements; the contract sets the `default`
        // for a `lan0` made later, this covers one that exists already).
        // Docker's `/proc/sys` is read-only: a `lan0` made after the start
        // has it from the default already, and needs no write.
        let path = format!("/proc/sys/net/ipv6/conf/{ifname}/ndisc_notify");
        let already = std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1");
        if !already && let Err((path, e)) = set("ndisc_notify", "1") {
            tracing::warn!(%path, error = %e, "cannot set an IPv6 sysctl of the LAN interface");
        }
        for name in ["optimistic_dad", "use_optimistic"] {
            if let Err((path, e)) = set(name, "1") {
                tracing::debug!(%path, error = %e, "no optimistic DAD on the LAN interface");
            }
        }
    }
}

pub struct V6 {
    ifname: String,
    icmp: Arc<Icmp6Socket>,
    udp: Arc<Udp6Socket>,
    tracker: Tracker,
    config: Config,
    dhcp: Option<Client>,
    stateful: bool,
    store: Lease6Store,
    /// The DHCPv6 address reported to the core, with its prefix length.
    configured: Option<(Ipv6Addr, u8)>,
    /// A DHCPv6 message that could not leave yet (no usable source
    /// address), to send again at `.1`; `.2` tries so far.
    resend: Option<(Vec<u8>, Instant, u32)>,
    /// A stored lease to Rebind once the link-local address can receive
    /// (or at `.1` regardless): a server's Reply to a tentative address is
    /// not delivered (the kernel ignores address resolution for it), and
    /// the Rebind's own retransmission comes only after 10 s.
    resume: Option<(Lease, Instant)>,
    events: Events,
}

impl V6 {
    /// Opens the sockets on `plan.interface` (an up link); resumes a stored
    /// DHCPv6 lease of this client at once. Nothing is sent before
    /// [`V6::spawn`].
    pub fn start(plan: &Plan, link: &Link, state_dir: &Path, events: Events) -> Result<V6, String> {
        let icmp = Icmp6Socket::open(&plan.interface, link.index).map_err(|e| e.to_string())?;
        let udp = Udp6Socket::bind(&plan.interface, link.index).map_err(|e| e.to_string())?;
        let mut rng = randomness::from_os();
        let delay =
            MAX_RTR_SOLICITATION_DELAY.mul_f64(f64::from(rng.next_u32()) / f64::from(u32::MAX));
        let now = Instant::now();
        let config = Config {
            mac: link.mac,
            hostname: plan.hostname.clone(),
            rapid_commit: true,
            first_delay: Some(Duration::ZERO),
        };
        let store = Lease6Store::new(state_dir, &plan.interface);
        let mut v6 = V6 {
            ifname: plan.interface.clone(),
            icmp: Arc::new(icmp),
            udp: Arc::new(udp),
            tracker: Tracker::new(link.mac, now, delay),
            dhcp: None,
            stateful: false,
            configured: None,
            resend: None,
            resume: None,
            config: config.clone(),
            store,
            events,
        };
        if let Some(lease) = v6
            .store
            .load()
            .and_then(|s| s.to_lease(&plan.interface, &config.duid()))
        {
            tracing::info!(address = %lease.address, "resuming the stored DHCPv6 lease");
            v6.dhcp = Some(Client::new(config, rng));
            v6.stateful = true;
            v6.resume = Some((lease, now + DAD_PATIENCE));
        }
        Ok(v6)
    }

    /// Runs until the core asks it to end: on a stop with release, the
    /// DHCPv6 lease is released; without (`--keep-lease`), the next start
    /// rebinds it, as the v4 task keeps its lease.
    pub fn spawn(mut self) -> Handle {
        Handle::spawn(Family::V6, move |mut ended| async move {
            self.try_resume(Instant::now());
            self.drive().await;
            let release = loop {
                if let std::ops::ControlFlow::Break(release) = self.step(&mut ended).await {
                    break release;
                }
                self.drive().await;
            };
            if release {
                self.stop().await;
            }
        })
    }

    fn deadline(&self) -> Option<Instant> {
        [
            self.tracker.poll_timeout(),
            self.dhcp.as_ref().and_then(Client::poll_timeout),
            self.resend.as_ref().map(|r| r.1),
            self.resume.as_ref().map(|_| Instant::now() + DAD_POLL),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Waits for one thing; `Break` with whether to release when the core
    /// asks the task to end (the core gone: release).
    async fn step(&mut self, ended: &mut mpsc::Receiver<bool>) -> std::ops::ControlFlow<bool> {
        let (icmp, udp) = (self.icmp.clone(), self.udp.clone());
        let deadline = self.deadline();
        tokio::select! {
            r = ended.recv() => return std::ops::ControlFlow::Break(r.unwrap_or(true)),
            r = icmp.recv() => match r {
                Ok((src, hops, msg)) => {
                    if let Err(e) = self.tracker.handle_ra(Instant::now(), src, hops, &msg) {
                        tracing::debug!(%src, error = %e, "router advertisement ignored");
                    }
                }
                Err(e) => self.receive_error("ICMPv6", e).await,
            },
            r = udp.recv() => match r {
                Ok(p) => if let Some(c) = self.dhcp.as_mut() { c.handle_packet(Instant::now(), &p) },
                Err(e) => self.receive_error("DHCPv6", e).await,
            },
            _ = sleep_until(deadline) => {
                let now = Instant::now();
                self.tracker.handle_timeout(now);
                if let Some(c) = self.dhcp.as_mut() {
                    c.handle_timeout(now);
                }
                self.try_resume(now);
                if let Some((payload, _, tries)) = self.resend.take_if(|r| r.1 <= now) {
                    self.send_dhcp(payload, tries).await;
                }
            }
        }
        std::ops::ControlFlow::Continue(())
    }

    async fn receive_error(&mut self, what: &str, e: std::io::Error) {
        tracing::warn!(error = %e, "receiving {what} packets failed");
        self.report(Event::Error(
            Family::V6,
            format!("receiving {what} packets: {e}"),
        ));
        tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
    }

    fn report(&self, ev: Event) {
        self.events.send(ev);
    }

    /// An address with lifetimes counted from now (`None`: infinite).
    fn address(
        &self,
        address: Ipv6Addr,
        prefix_len: u8,
        preferred: Option<Duration>,
        valid: Option<Duration>,
        origin: Origin,
    ) -> Event {
        let now = Instant::now();
        Event::Address(Address {
            address: address.into(),
            prefix_len,
            preferred_until: preferred.map(|d| now + d),
            valid_until: valid.map(|d| now + d),
            origin,
        })
    }

    fn gone(address: Ipv6Addr, prefix_len: u8) -> Event {
        Event::AddressGone {
            address: address.into(),
            prefix_len,
            error: None,
        }
    }

    /// Sends what the tracker and the client queued, and acts on their events.
    async fn drive(&mut self) {
        loop {
            if let Some(rs) = self.tracker.poll_transmit() {
                if let Err(e) = self.icmp.send_solicitation(&rs).await {
                    // Before the link-local address passed DAD there is no
                    // source: the tracker tries again shortly.
                    tracing::debug!(error = %e, "sending a router solicitation failed");
                    self.tracker.solicitation_failed(Instant::now());
                }
                continue;
            }
            if let Some(ev) = self.tracker.poll_event() {
                self.on_ra_event(ev);
                continue;
            }
            let Some(c) = self.dhcp.as_mut() else { break };
            if let Some(t) = c.poll_transmit() {
                self.send_dhcp(t.payload, 0).await;
                continue;
            }
            let Some(ev) = c.poll_event() else { break };
            self.on_dhcp_event(ev);
        }
    }

    /// Rebinds the stored lease once the link-local address can receive,
    /// or once waiting for it is over.
    fn try_resume(&mut self, now: Instant) {
        let ready = link_local_ready(&self.ifname);
        if let Some((lease, _)) = self.resume.take_if(|r| ready || now >= r.1)
            && let Some(c) = self.dhcp.as_mut()
        {
            c.resume(now, lease);
        }
    }

    /// Sends a DHCPv6 message; one that finds no source address yet (the
    /// link-local address is tentative) is sent again shortly, a few times.
    /// A newer message replaces a pending one.
    async fn send_dhcp(&mut self, payload: Vec<u8>, tries: u32) {
        match self.udp.send(&payload).await {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) && tries < RESEND_TRIES => {
                tracing::debug!(interface = %self.ifname, "no source address yet for DHCPv6; sending again shortly");
                self.resend = Some((payload, Instant::now() + RESEND_PAUSE, tries + 1));
            }
            Err(e) => {
                tracing::warn!(interface = %self.ifname, error = %e, "sending a DHCPv6 message failed");
            }
        }
    }

    fn on_ra_event(&mut self, ev: RaEvent) {
        match ev {
            RaEvent::Flags { managed, other } => self.follow_flags(managed, other),
            RaEvent::Address {
                address,
                prefix_len,
                preferred,
                valid,
            } => self.report(self.address(address, prefix_len, preferred, valid, Origin::Slaac)),
            RaEvent::AddressGone {
                address,
                prefix_len,
            } => self.report(Self::gone(address, prefix_len)),
            RaEvent::Router { address, .. } => self.report(Event::Router {
                address: address.into(),
            }),
            RaEvent::RouterGone { address } => self.report(Event::RouterGone {
                address: address.into(),
            }),
        }
    }

    /// RFC 4861 section 4.2: M means addresses from DHCPv6 (and the other
    /// configuration with them), O alone other configuration only. A client
    /// already stateful stays so when M goes: its lease ends by itself.
    fn follow_flags(&mut self, managed: bool, other: bool) {
        let now = Instant::now();
        if managed && !self.stateful {
            tracing::info!(interface = %self.ifname, "RA: managed, starting DHCPv6");
            let mut c = Client::new(self.config.clone(), randomness::from_os());
            c.start(now);
            self.dhcp = Some(c);
            self.stateful = true;
        } else if other && !managed && self.dhcp.is_none() {
            tracing::info!(interface = %self.ifname, "RA: other configuration, DHCPv6 Information-request");
            let mut c = Client::new(self.config.clone(), randomness::from_os());
            c.start_stateless(now);
            self.dhcp = Some(c);
        }
    }

    fn on_dhcp_event(&mut self, ev: ClientEvent) {
        match ev {
            ClientEvent::Bound(lease) => {
                let prefix_len = self.tracker.on_link_prefix(lease.address).unwrap_or(128);
                if let Some((old, len)) = self.configured.take_if(|(a, _)| *a != lease.address) {
                    self.report(Self::gone(old, len));
                }
                self.configured = Some((lease.address, prefix_len));
                self.report(Event::Address(Address {
                    address: lease.address.into(),
                    prefix_len,
                    preferred_until: lease.preferred_until(),
                    valid_until: lease.expires_at(),
                    origin: Origin::Dhcpv6,
                }));
                // The address first, the disk after, off the runtime.
                self.store.save_later(&StoredLease6::from_lease(
                    &self.ifname,
                    &self.config.duid(),
                    &lease,
                ));
            }
            ClientEvent::Lost { lease, reason } => {
                tracing::info!(address = %lease.address, ?reason, "DHCPv6 lease lost");
                if reason == LostReason::Released {
                    self.store.mark_released();
                } else {
                    self.store.clear();
                }
                let prefix_len = self
                    .configured
                    .take()
                    .filter(|(a, _)| *a == lease.address)
                    .map_or(128, |(_, l)| l);
                self.report(Self::gone(lease.address, prefix_len));
            }
            ClientEvent::Information(info) => {
                tracing::info!(dns = ?info.dns, "DHCPv6 other configuration");
            }
        }
    }

    /// Release the DHCPv6 lease (RFC 8415 section 18.2.7), waiting a
    /// little for the server's Reply.
    async fn stop(&mut self) {
        let Some(c) = self.dhcp.as_mut() else { return };
        c.release(Instant::now());
        let give_up = tokio::time::Instant::now() + RELEASE_PATIENCE;
        loop {
            self.drive().await;
            let Some(c) = self.dhcp.as_mut() else { return };
            if c.is_stopped() {
                return;
            }
            let next = c.poll_timeout();
            let udp = self.udp.clone();
            tokio::select! {
                _ = tokio::time::sleep_until(give_up) => return,
                r = udp.recv() => if let Ok(p) = r { c.handle_packet(Instant::now(), &p) },
                _ = sleep_until(next) => c.handle_timeout(Instant::now()),
            }
        }
    }
}

/// IFA_F_TENTATIVE (linux/if_addr.h), in `/proc/net/if_inet6`'s flags.
const IFA_F_TENTATIVE: u32 = 0x40;
/// RT_SCOPE_LINK, in its scope column.
const SCOPE_LINK: u32 = 0x20;

/// Whether `ifname` has a link-local address past duplicate detection.
fn link_local_ready(ifname: &str) -> bool {
    std::fs::read_to_string("/proc/net/if_inet6")
        .is_ok_and(|table| has_ready_link_local(&table, ifname))
}

/// [`link_local_ready`] on the text of `/proc/net/if_inet6` (one address a
/// line: address, ifindex, prefix length, scope, flags in hex, name).
fn has_ready_link_local(table: &str, ifname: &str) -> bool {
    table.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        matches!(f.as_slice(), [_, _, _, scope, flags, name]
            if *name == ifname
                && hex(scope) == Some(SCOPE_LINK)
                && hex(flags).is_some_and(|f| f & IFA_F_TENTATIVE == 0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_local_past_dad_is_ready() {
        let tentative = "fe80000000000000a8bbccfffedd0011 00000005 40 20 c0     lan0\n";
        let ready = "fe80000000000000a8bbccfffedd0011 00000005 40 20 80     lan0\n";
        let global = "20010db8000100000000000000000100 00000005 80 00 80     lan0\n";
        assert!(!has_ready_link_local(tentative, "lan0"));
        assert!(has_ready_link_local(ready, "lan0"));
        assert!(!has_ready_link_local(ready, "lan1"));
        assert!(!has_ready_link_local(global, "lan0"));
        assert!(has_ready_link_local(&format!("{global}{ready}"), "lan0"));
        assert!(!has_ready_link_local("garbage\n", "lan0"));
    }
}
