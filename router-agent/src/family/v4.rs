//! The IPv4 family task: the DHCPv4 client of one interface with its raw and
//! UDP sockets, the persisted lease, the ARP probe of a new address and the
//! ARP guard of the address in use (RFC 5227 §2.3 announcements after every
//! bind, §2.4 defence; a second conflict declines the lease). It
//! configures nothing itself: it reports [`Event`]s to the core, which owns
//! addresses, routes and the firewall. A lease's address is reported once it
//! is to be used (after the probe), with the lease; the address an earlier
//! agent left is reported as kept ([`Origin::Previous`]) until the client
//! gets it back or gives up on it.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use netcontainer_lease::arp::{ArpConfig, DEFEND_INTERVAL, Guard, GuardEvent, Probe, ProbeResult};
use netcontainer_lease::v4::{
    Client, Config, Destination, Event as ClientEvent, Lease, LostReason, Retry, ServerFilter,
    Transmit,
};
use netcontainer_lease::{State, randomness};
use netcontainer_proto::Plan;
use tokio::sync::mpsc;

use super::{Address, Event, Events, Family, Handle, Origin, RECEIVE_ERROR_PAUSE, sleep_until};
use crate::counters::Counters;
use crate::dhcp::arp::ArpSocket;
use crate::dhcp::socket::{RawSocket, UdpSocket};
use crate::netconf::Link;
use crate::store::{LeaseStore, StoredLease, hex};

/// What the DHCP exchange is bound to: a change restarts the task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub ifname: String,
    pub client_id: Vec<u8>,
    pub hostname: Option<String>,
    pub broadcast_flag: bool,
    /// The servers listened to: a new list starts a new client.
    pub servers: netcontainer_proto::DhcpServers,
}

impl Identity {
    /// Whether `plan` keeps this identity (no client id in the plan keeps
    /// the one derived from the MAC).
    pub fn same(&self, plan: &Plan) -> bool {
        self.ifname == plan.interface
            && plan
                .client_id
                .as_ref()
                .is_none_or(|id| *id == self.client_id)
            && self.hostname == plan.hostname
            && self.broadcast_flag == plan.broadcast_flag
            && self.servers == *plan.dhcp_servers
    }
}

/// How a task starts, besides its plan and link.
pub struct Start<'a> {
    /// Where the lease is persisted.
    pub lease_dir: &'a Path,
    /// Asked for in the DISCOVER when there is no lease of our own to claim.
    pub request_address: Option<Ipv4Addr>,
    /// `Some` with `--arp-probe`.
    pub arp: Option<ArpConfig>,
    pub counters: Arc<Counters>,
}

/// DHCPv4 on one interface, before and while it runs.
pub struct V4 {
    identity: Identity,
    ifindex: u32,
    client: Client,
    raw: Arc<RawSocket>,
    /// UDP socket bound to the lease address, for unicast renew/release.
    udp: Option<(Ipv4Addr, Arc<UdpSocket>)>,
    store: LeaseStore,
    /// The lease stored last (its write may still be pending).
    stored: Option<StoredLease>,
    /// The lease reported bound (its address is on the interface).
    configured: Option<Lease>,
    /// Address left on the interface by a previous agent (killed without
    /// releasing); dropped unless the server gives it back.
    leftover: Option<(Ipv4Addr, u8)>,
    /// Hardware address of the interface (the ARP probes' sender).
    mac: [u8; 6],
    /// `Some` with `--arp-probe`.
    arp: Option<ArpConfig>,
    /// A new lease whose address is being probed (not configured yet).
    probing: Option<Probing>,
    /// The address in use, announced and defended.
    guarding: Option<Guarding>,
    /// Why the last address was declined (the error of its loss).
    declined: Option<String>,
    events: Events,
    /// The state last reported.
    reported: Option<State>,
    counters: Arc<Counters>,
    /// The client's NAK total already added to `counters`.
    naks_counted: u64,
}

/// An ARP probe of a new lease's address; the ARP socket lives as long as it.
struct Probing {
    lease: Lease,
    probe: Probe,
    sock: Arc<ArpSocket>,
}

/// The ARP guard of the bound address, with its own socket (open as long as
/// the address is in use).
struct Guarding {
    guard: Guard,
    sock: Arc<ArpSocket>,
}

impl V4 {
    /// Opens the packet socket and starts the client on `plan.interface`
    /// (an up link), from the persisted lease if it is ours. Nothing is
    /// sent before [`V4::spawn`].
    pub fn start(plan: &Plan, link: &Link, start: Start<'_>, events: Events) -> Result<V4, String> {
        let Start {
            lease_dir,
            request_address,
            arp,
            counters,
        } = start;
        let raw = RawSocket::open(link.index)
            .map_err(|e| format!("cannot open a packet socket on {}: {e}", plan.interface))?;
        let client_id = plan
            .client_id
            .clone()
            .unwrap_or_else(|| netcontainer_proto::contract::mac_client_id(&link.mac));
        let store = LeaseStore::new(lease_dir, &plan.interface);
        let stored = store.load();
        // A released lease left nothing on the interface.
        let leftover = stored
            .as_ref()
            .filter(|l| !l.released)
            .map(|l| (l.address, l.prefix_len));
        let ours =
            stored.filter(|l| l.client_id == hex(&client_id) && l.interface == plan.interface);
        // Unexpired and not released: claim it again (INIT-REBOOT). Released or
        // expired: only ask for it (DISCOVER with option 50).
        // The operator's address (`up --ip`) goes before a remembered one.
        let (previous, hint) = match ours {
            Some(l) if !l.released && !l.expired(SystemTime::now()) => {
                (Some(l.to_lease(Instant::now(), SystemTime::now())), None)
            }
            Some(l) => (None, request_address.or(Some(l.address))),
            None => (None, request_address),
        };
        let mut client = Client::new(
            Config {
                chaddr: link.mac,
                client_id: client_id.clone(),
                hostname: plan.hostname.clone(),
                broadcast_flag: plan.broadcast_flag,
                request_address: hint,
                retry: Retry::default(),
                servers: ServerFilter {
                    allow: plan.dhcp_servers.allow.clone(),
                    deny: plan.dhcp_servers.deny.clone(),
                },
            },
            randomness::from_os(),
        );
        tracing::info!(interface = %plan.interface, previous = ?previous.as_ref().map(|l| l.address), hint = ?hint,
            only = ?plan.dhcp_servers.allow, ignored = ?plan.dhcp_servers.deny, "starting DHCP");
        match previous {
            // Unanswered, the client uses it until it ends (RFC 2131 3.2).
            Some(lease) => client.resume_lease(Instant::now(), lease),
            None => client.start(Instant::now()),
        }
        Ok(V4 {
            identity: Identity {
                ifname: plan.interface.clone(),
                client_id,
                hostname: plan.hostname.clone(),
                broadcast_flag: plan.broadcast_flag,
                servers: (*plan.dhcp_servers).clone(),
            },
            ifindex: link.index,
            client,
            raw: Arc::new(raw),
            udp: None,
            store,
            stored: None,
            configured: None,
            leftover,
            mac: link.mac,
            arp,
            probing: None,
            guarding: None,
            declined: None,
            events,
            reported: None,
            counters,
            naks_counted: 0,
        })
    }

    pub fn state(&self) -> State {
        self.client.state()
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Runs the client until the core asks for a release.
    pub fn spawn(mut self) -> Handle {
        // The core knows the starting state already.
        self.reported = Some(self.client.state());
        Handle::spawn(Family::V4, move |mut ended| async move {
            // What an earlier agent left stays while the client claims it.
            if let Some((address, prefix_len)) = self.leftover {
                self.report(Event::Address(Address {
                    address: address.into(),
                    prefix_len,
                    preferred_until: None,
                    valid_until: None,
                    origin: Origin::Previous,
                }));
            }
            self.drive().await;
            let release = loop {
                if let std::ops::ControlFlow::Break(release) = self.step(&mut ended).await {
                    break release;
                }
                self.drive().await;
            };
            if release {
                self.client.release(Instant::now());
            } else {
                self.client.stop(Instant::now());
            }
            self.drive().await;
        })
    }

    /// Waits for one thing: a packet, a timer, or the core's end (`Break`
    /// with whether to release; the core gone: release).
    async fn step(&mut self, ended: &mut mpsc::Receiver<bool>) -> std::ops::ControlFlow<bool> {
        let probing = self.probing.as_ref();
        let arp = probing.map(|p| p.sock.clone());
        let guard_sock = self.guarding.as_ref().map(|g| g.sock.clone());
        // One timer for all machines: each ignores a call before its deadline.
        let deadline = [
            self.client.poll_timeout(),
            probing.and_then(|p| p.probe.poll_timeout()),
            self.guarding.as_ref().and_then(|g| g.guard.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min();
        let raw = self.raw.clone();
        let udp = self.udp.as_ref().map(|(_, s)| s.clone());
        tokio::select! {
            r = ended.recv() => return std::ops::ControlFlow::Break(r.unwrap_or(true)),
            r = raw.recv_from() => self.on_packet(r).await,
            r = recv_udp(udp) => self.on_packet(r).await,
            r = recv_arp(arp) => self.on_arp(r).await,
            r = recv_arp(guard_sock) => self.on_guard_arp(r).await,
            _ = sleep_until(deadline) => {
                let now = Instant::now();
                self.client.handle_timeout(now);
                if let Some(p) = self.probing.as_mut() {
                    p.probe.handle_timeout(now);
                }
                if let Some(g) = self.guarding.as_mut() {
                    g.guard.handle_timeout(now);
                }
            }
        }
        std::ops::ControlFlow::Continue(())
    }

    /// Reports an event, after the client's state if that changed (so that
    /// the core never shows a lease with the state before it).
    fn report(&mut self, event: Event) {
        self.report_state();
        self.events.send(event);
    }

    fn report_state(&mut self) {
        let naks = self.client.naks();
        if naks > self.naks_counted {
            self.counters.naks(naks - self.naks_counted);
            self.naks_counted = naks;
        }
        let state = self.client.state();
        if self.reported != Some(state) {
            if state == State::Rebinding {
                self.counters.rebinding();
            }
            self.reported = Some(state);
            self.events.send(Event::State(state));
        }
    }

    async fn on_packet(&mut self, r: std::io::Result<(Ipv4Addr, Vec<u8>)>) {
        match r {
            Ok((source, payload)) => {
                self.client
                    .handle_packet_from(Instant::now(), Some(source), &payload)
            }
            Err(e) => {
                tracing::warn!(error = %e, "receiving DHCP packets failed");
                self.report(Event::Error(
                    Family::V4,
                    format!("receiving DHCP packets: {e}"),
                ));
                tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
            }
        }
    }

    async fn on_arp(&mut self, r: std::io::Result<Vec<u8>>) {
        match r {
            Ok(payload) => {
                if let Some(p) = self.probing.as_mut() {
                    p.probe.handle_packet(Instant::now(), &payload);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "receiving ARP packets failed");
                tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
            }
        }
    }

    async fn on_guard_arp(&mut self, r: std::io::Result<Vec<u8>>) {
        match r {
            Ok(payload) => {
                if let Some(g) = self.guarding.as_mut() {
                    g.guard.handle_packet(Instant::now(), &payload);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "receiving ARP packets failed");
                tokio::time::sleep(RECEIVE_ERROR_PAUSE).await;
            }
        }
    }

    /// Sends what the guard queued and acts on what it saw: a defence is
    /// counted and logged; giving up DECLINEs the lease (RFC 5227 §2.4 (c):
    /// stop using the address; the DECLINE tells the server not to hand it
    /// out again at once) and the client discovers a new one.
    async fn drive_guard(&mut self) {
        let Some(g) = self.guarding.as_mut() else {
            return;
        };
        while let Some(frame) = g.guard.poll_transmit() {
            if let Err(e) = g.sock.send_broadcast(&frame).await {
                tracing::warn!(error = %e, "sending an ARP announcement failed");
            }
        }
        let address = g.guard.address();
        let mut gave_up = None;
        while let Some(ev) = g.guard.poll_event() {
            match ev {
                GuardEvent::Defended(mac) => {
                    self.counters.defended();
                    tracing::warn!(%address, other = %mac, "another host claims our address: defended it with an ARP announcement");
                }
                GuardEvent::GiveUp(mac) => gave_up = Some(mac),
            }
        }
        if let Some(mac) = gave_up {
            self.guarding = None;
            self.counters.conflict();
            let msg = format!(
                "address {address} is in use by MAC {mac} (claimed again within {} s of our defence): declined, asking for another",
                DEFEND_INTERVAL.as_secs()
            );
            tracing::warn!("{msg}");
            self.declined = Some(msg.clone());
            self.report(Event::Error(Family::V4, msg));
            self.client.decline(Instant::now());
        }
    }

    /// Sends what the client, the probe and the guard queued and acts on
    /// their events and results.
    async fn drive(&mut self) {
        loop {
            self.drive_guard().await;
            if let Some(t) = self.client.poll_transmit() {
                if let Err(e) = self.send(&t).await {
                    tracing::warn!(error = %e, "sending a DHCP packet failed");
                    self.report(Event::Error(Family::V4, e));
                }
                continue;
            }
            if let Some(ev) = self.client.poll_event() {
                self.on_event(ev);
                continue;
            }
            let Some(p) = self.probing.as_mut() else {
                break;
            };
            if let Some(frame) = p.probe.poll_transmit() {
                if let Err(e) = p.sock.send_broadcast(&frame).await {
                    tracing::warn!(error = %e, "sending an ARP probe failed");
                }
                continue;
            }
            let Some(result) = p.probe.result() else {
                break;
            };
            let lease = self.probing.take().expect("checked").lease;
            self.on_probe_result(lease, result);
        }
        self.drop_leftover();
        self.report_state();
    }

    fn on_event(&mut self, ev: ClientEvent) {
        match ev {
            ClientEvent::Bound(lease) => {
                let previous = self.configured.as_ref().map(|l| l.address);
                if previous == Some(lease.address) {
                    // The lease in place, extended (RENEWING or REBINDING).
                    self.counters.renewed();
                }
                if let Some(old) = self.configured.take_if(|old| {
                    old.address != lease.address || old.prefix_len != lease.prefix_len
                }) {
                    tracing::info!(old = %old.address, new = %lease.address, "the server changed our address");
                    // The old address goes; the new one comes now, or
                    // after its probe.
                    self.udp = None;
                    self.guarding = None;
                    self.report(Event::AddressGone {
                        address: old.address.into(),
                        prefix_len: old.prefix_len,
                        error: None,
                    });
                }
                if let Some(p) = self.probing.as_mut()
                    && p.lease.address == lease.address
                {
                    p.lease = lease; // extended while being probed
                    return;
                }
                self.probing = None;
                // RFC 5227: a new address is probed before first use; not a
                // renewal, nor the address a previous agent left configured.
                let reused = previous == Some(lease.address)
                    || self.leftover.is_some_and(|(a, _)| a == lease.address);
                if let Some(cfg) = self.arp
                    && !reused
                {
                    // The probe hears other hosts' probes for the address too.
                    match ArpSocket::open(self.ifindex, lease.address, true) {
                        Ok(sock) => {
                            tracing::info!(address = %lease.address, probes = cfg.probes,
                                interval_ms = cfg.interval.as_millis() as u64,
                                wait_ms = cfg.wait.as_millis() as u64, "probing the address with ARP");
                            self.probing = Some(Probing {
                                probe: Probe::new(cfg, lease.address, self.mac, Instant::now()),
                                lease,
                                sock: Arc::new(sock),
                            });
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot probe the address; using it unprobed");
                        }
                    }
                }
                self.bind(lease);
            }
            ClientEvent::Lost { lease, reason } => {
                tracing::info!(address = %lease.address, ?reason, "lease lost");
                // A lease lost while being probed never reached the interface.
                self.probing = None;
                self.guarding = None;
                // After a release the address is remembered as a hint for the
                // next agent (same address back when it is free); otherwise
                // forgotten. The lease stored last is the one in memory: its
                // write may still be pending on the blocking pool (a release
                // right after the bind), and this one, issued later, wins.
                let stored = self.stored.take().or_else(|| self.store.load());
                let kept = match (reason, stored) {
                    (LostReason::Released, Some(mut l)) => {
                        l.released = true;
                        self.store.save(&l)
                    }
                    // Stopped without a release: the stored lease stays as
                    // it is, to be claimed again (INIT-REBOOT).
                    (LostReason::Kept, _) => Ok(()),
                    _ => self.store.clear(),
                };
                if let Err(e) = kept {
                    tracing::warn!(error = %e, "cannot update the stored lease");
                }
                self.configured = None;
                self.udp = None;
                let lost = || format!("lease on {} lost ({reason:?})", lease.address);
                let error = match reason {
                    LostReason::Declined => Some(self.declined.take().unwrap_or_else(lost)),
                    LostReason::Released | LostReason::Kept => None,
                    _ => Some(lost()),
                };
                self.report(Event::AddressGone {
                    address: lease.address.into(),
                    prefix_len: lease.prefix_len,
                    error,
                });
            }
        }
    }

    /// The probe of a new lease's address is over: use it, or DECLINE it.
    fn on_probe_result(&mut self, lease: Lease, result: ProbeResult) {
        match result {
            ProbeResult::Free => {
                tracing::info!(address = %lease.address, "ARP probe: address free");
                self.bind(lease);
            }
            ProbeResult::Conflict(mac) => {
                self.counters.conflict();
                let msg = format!("address {} is in use by MAC {mac}: declined", lease.address);
                tracing::warn!("{msg}");
                self.declined = Some(msg.clone());
                self.report(Event::Error(Family::V4, msg));
                self.client.decline(Instant::now());
            }
        }
    }

    /// A lease is to be used: persist it and hand it to the core.
    fn bind(&mut self, lease: Lease) {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let unix = |t: Instant| {
            (wall + t.saturating_duration_since(now))
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs()
        };
        let stored = StoredLease {
            interface: self.identity.ifname.clone(),
            client_id: hex(&self.identity.client_id),
            address: lease.address,
            prefix_len: lease.prefix_len,
            server_id: lease.server_id,
            expires_unix: lease.expires_at().map(unix),
            released: false,
            gateway: lease.gateway,
            routes: lease.routes.clone(),
            dns: lease.dns.clone(),
            renew_unix: lease.renew_at().map(unix),
            rebind_unix: lease.rebind_at().map(unix),
            mtu: lease.mtu,
        };
        // The address first, the disk after (see `LeaseStore::save_later`),
        // and the ARP guard after both (nothing between the ACK and the
        // address event but the event). A renewal binds the same address
        // again: its guard stays.
        let address = lease.address;
        self.configured = Some(lease.clone());
        self.report(Event::Address(Address::of_lease(lease)));
        self.store.save_later(stored.clone());
        self.stored = Some(stored);
        if self
            .guarding
            .as_ref()
            .is_none_or(|g| g.guard.address() != address)
        {
            self.guarding = None;
            self.guard(address);
        }
    }

    /// Announces `address` (RFC 5227 §2.3) and guards it from now on:
    /// after every bind, so that switches and neighbours learn this
    /// router's port and MAC at once (also after it moved to another host
    /// with its lease: INIT-REBOOT binds too). The announcements go out
    /// from [`V4::drive`], after the address event.
    fn guard(&mut self, address: Ipv4Addr) {
        match ArpSocket::open(self.ifindex, address, false) {
            Ok(sock) => {
                tracing::info!(%address, "announcing the address with ARP and guarding it");
                self.guarding = Some(Guarding {
                    guard: Guard::new(address, self.mac, Instant::now()),
                    sock: Arc::new(sock),
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open an ARP socket: the address is neither announced nor defended");
            }
        }
    }

    /// Once the client is past INIT-REBOOT without getting the old address
    /// back, the address (and rules) a previous agent left go.
    fn drop_leftover(&mut self) {
        let Some((address, prefix_len)) = self.leftover else {
            return;
        };
        if self
            .configured
            .as_ref()
            .is_some_and(|l| l.address == address)
        {
            self.leftover = None;
            return;
        }
        if self.client.state() == State::Rebooting {
            return;
        }
        self.leftover = None;
        tracing::info!(%address, "removing the address a previous agent left behind");
        self.report(Event::AddressGone {
            address: address.into(),
            prefix_len,
            error: None,
        });
    }

    async fn send(&mut self, t: &Transmit) -> Result<(), String> {
        let ifname = &self.identity.ifname;
        match t.destination {
            Destination::Broadcast { src } => self
                .raw
                .send_broadcast(src, &t.payload)
                .await
                .map_err(|e| format!("broadcast on {ifname}: {e}")),
            Destination::Unicast { src, server } => {
                let sock = match &self.udp {
                    Some((addr, s)) if *addr == src => s.clone(),
                    _ => {
                        let s = Arc::new(
                            UdpSocket::bind(ifname, src)
                                .map_err(|e| format!("binding {src}:68 on {ifname}: {e}"))?,
                        );
                        self.udp = Some((src, s.clone()));
                        s
                    }
                };
                sock.send_to(server, &t.payload)
                    .await
                    .map_err(|e| format!("unicast to {server}:67: {e}"))
            }
        }
    }
}

async fn recv_udp(s: Option<Arc<UdpSocket>>) -> std::io::Result<(Ipv4Addr, Vec<u8>)> {
    match s {
        Some(s) => s.recv_from().await,
        None => std::future::pending().await,
    }
}

async fn recv_arp(s: Option<Arc<ArpSocket>>) -> std::io::Result<Vec<u8>> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_follows_the_plan() {
        let id = Identity {
            ifname: "lan0".into(),
            client_id: vec![1, 2, 3],
            hostname: Some("svc".into()),
            broadcast_flag: false,
            servers: Default::default(),
        };
        let plan = Plan {
            ipv6: Default::default(),
            dhcp_servers: Default::default(),
            mdns: None,
            interface: "lan0".into(),
            client_id: None,
            hostname: Some("svc".into()),
            broadcast_flag: false,
            forwards: Vec::new(),
            source: Default::default(),
            service: None,
        };
        // No client id in the plan keeps the derived one; forwards do not count.
        assert!(id.same(&plan));
        assert!(id.same(&Plan {
            client_id: Some(vec![1, 2, 3]),
            forwards: vec![netcontainer_proto::Forward::parse("tcp:80=192.0.2.2:80").unwrap()],
            ..plan.clone()
        }));
        for other in [
            Plan {
                interface: "lan1".into(),
                ..plan.clone()
            },
            Plan {
                client_id: Some(vec![9]),
                ..plan.clone()
            },
            Plan {
                hostname: None,
                ..plan.clone()
            },
            Plan {
                broadcast_flag: true,
                ..plan.clone()
            },
            Plan {
                dhcp_servers: Box::new(netcontainer_proto::DhcpServers {
                    allow: vec![Ipv4Addr::new(192, 0, 2, 1)],
                    deny: vec![],
                }),
                ..plan.clone()
            },
        ] {
            assert!(!id.same(&other), "{other:?}");
        }
    }
}
