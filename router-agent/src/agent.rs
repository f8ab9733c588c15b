//! The agent's main loop: one task owns the DHCP client, the sockets, the
//! address configuration and the firewall. Control requests arrive over a
//! channel; status is published through a watch channel.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use netcontainer_proto::{Forward, Plan, Response, State};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use crate::control::{self, Command, CounterFn, Snapshot};
use crate::dhcp::arp::{ArpConfig, ArpSocket, Probe, ProbeResult};
use crate::dhcp::client::{Client, Config, Destination, Event, Lease, LostReason, Transmit};
use crate::dhcp::socket::{RawSocket, UdpSocket};
use crate::firewall::{Firewall, RulesetConfig, stale_targets};
use crate::netconf::{AddressConfig, Netconf, NetconfError};
use crate::store::{LeaseStore, PlanStore, StoredLease, hex};

/// How long a plan may wait for its interface to come up (see `Netconf::set_up`).
const LINK_UP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(25);

/// Conntrack/packet mark of connections that arrived on the LAN interface.
pub const MARK: u32 = netcontainer_proto::contract::MARK;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error(transparent)]
    Netconf(#[from] NetconfError),
    #[error(transparent)]
    Sysctl(#[from] crate::sysctl::SysctlError),
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] std::io::Error),
}

#[derive(Clone, Debug)]
pub struct Options {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    /// Probe a freshly leased address with ARP (RFC 5227) before using it,
    /// and DECLINE it if another host answers (see `dhcp::arp`).
    pub arp_probe: bool,
}

/// Runs the agent until SIGTERM/SIGINT or a shutdown request.
pub async fn run(opts: Options) -> Result<(), AgentError> {
    // Forwarding and loose reverse-path filtering in this namespace, before
    // anything is forwarded: the agent alone needs nothing set beforehand.
    crate::sysctl::ensure_router_sysctls(std::path::Path::new(crate::sysctl::PROC_SYS))?;
    std::fs::create_dir_all(&opts.state_dir).map_err(|source| AgentError::StateDir {
        path: opts.state_dir.clone(),
        source,
    })?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(AgentError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;
    let netconf = Netconf::new(MARK)?;
    let firewall = Firewall::new(RulesetConfig {
        mark: MARK,
        ..RulesetConfig::default()
    });
    let listener = control::bind(&opts.socket)?;
    let (snap_tx, snap_rx) = watch::channel(Snapshot::new());
    let (cmd_tx, mut cmd_rx) = mpsc::channel(8);
    let fw = firewall.clone();
    let counters: CounterFn = Arc::new(move |forwards: Vec<Forward>| {
        let fw = fw.clone();
        Box::pin(async move { fw.counters(&forwards).await.map_err(|e| e.to_string()) })
    });
    tokio::spawn(control::serve(listener, snap_rx, cmd_tx, counters));
    tracing::info!(socket = %opts.socket.display(), "waiting for a plan");

    let mut agent = Agent {
        state_dir: opts.state_dir.clone(),
        netconf,
        firewall,
        plan: None,
        dhcp: None,
        snapshot: snap_tx,
        last_error: None,
        arp: opts.arp_probe.then(ArpConfig::default),
        plans: PlanStore::new(&opts.state_dir),
    };
    // Restarted after a crash: carry on with the last plan (and the persisted
    // lease, by INIT-REBOOT) without waiting for the driver.
    if let Some(plan) = agent.plans.load() {
        tracing::info!(interface = %plan.interface, "resuming the saved plan");
        if let Response::Error(e) = agent.apply(plan).await {
            tracing::warn!("the saved plan does not apply ({e}); waiting for a new one");
        }
    }
    loop {
        let probing = agent.dhcp.as_ref().and_then(|d| d.probing.as_ref());
        let arp = probing.map(|p| p.sock.clone());
        // One timer for both machines: each ignores a call before its deadline.
        let deadline = [
            agent.dhcp.as_ref().and_then(|d| d.client.poll_timeout()),
            probing.and_then(|p| p.probe.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min();
        let raw = agent.dhcp.as_ref().map(|d| d.raw.clone());
        let udp = agent
            .dhcp
            .as_ref()
            .and_then(|d| d.udp.as_ref().map(|(_, s)| s.clone()));
        tokio::select! {
            cmd = cmd_rx.recv() => match cmd {
                Some(Command::Apply(plan, reply)) => {
                    let resp = agent.apply(plan).await;
                    let _ = reply.send(resp);
                }
                Some(Command::Shutdown(reply)) => {
                    let _ = reply.send(Response::ShuttingDown);
                    tracing::info!("shutdown requested");
                    break;
                }
                None => break,
            },
            _ = sigterm.recv() => { tracing::info!("SIGTERM"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT"); break; }
            r = recv_raw(raw) => agent.on_packet(r).await,
            r = recv_udp(udp) => agent.on_packet(r).await,
            r = recv_arp(arp) => agent.on_arp(r).await,
            _ = sleep_until(deadline) => {
                if let Some(d) = agent.dhcp.as_mut() {
                    let now = Instant::now();
                    d.client.handle_timeout(now);
                    if let Some(p) = d.probing.as_mut() {
                        p.probe.handle_timeout(now);
                    }
                }
            }
        }
        agent.drive().await;
    }
    agent.shutdown().await;
    // A clean stop is deliberate: the next agent waits for a plan.
    agent.plans.clear();
    let _ = std::fs::remove_file(&opts.socket);
    tracing::info!("stopped");
    Ok(())
}

async fn recv_raw(s: Option<Arc<RawSocket>>) -> std::io::Result<Vec<u8>> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_udp(s: Option<Arc<UdpSocket>>) -> std::io::Result<Vec<u8>> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_arp(s: Option<Arc<ArpSocket>>) -> std::io::Result<Vec<u8>> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// DHCP on one interface.
struct Dhcp {
    ifname: String,
    ifindex: u32,
    client: Client,
    client_id: Vec<u8>,
    hostname: Option<String>,
    broadcast_flag: bool,
    raw: Arc<RawSocket>,
    /// UDP socket bound to the lease address, for unicast renew/release.
    udp: Option<(Ipv4Addr, Arc<UdpSocket>)>,
    store: LeaseStore,
    /// The lease whose address is on the interface.
    configured: Option<Lease>,
    /// Address left on the interface by a previous agent (killed without
    /// releasing); removed unless the server gives it back.
    leftover: Option<(Ipv4Addr, u8)>,
    /// Hardware address of the interface (the ARP probes' sender).
    mac: [u8; 6],
    /// A new lease whose address is being probed (not configured yet).
    probing: Option<Probing>,
    /// Why the last address was declined (becomes `last_error`).
    declined: Option<String>,
}

/// An ARP probe of a new lease's address; the ARP socket lives as long as it.
struct Probing {
    lease: Lease,
    probe: Probe,
    sock: Arc<ArpSocket>,
}

impl Dhcp {
    fn same_identity(&self, plan: &Plan) -> bool {
        self.ifname == plan.interface
            && plan
                .client_id
                .as_ref()
                .is_none_or(|id| *id == self.client_id)
            && self.hostname == plan.hostname
            && self.broadcast_flag == plan.broadcast_flag
    }
}

struct Agent {
    state_dir: PathBuf,
    netconf: Netconf,
    firewall: Firewall,
    plan: Option<Plan>,
    dhcp: Option<Dhcp>,
    snapshot: watch::Sender<Snapshot>,
    last_error: Option<String>,
    /// `Some` with `--arp-probe`.
    arp: Option<ArpConfig>,
    plans: PlanStore,
}

impl Agent {
    async fn on_packet(&mut self, r: std::io::Result<Vec<u8>>) {
        match r {
            Ok(payload) => {
                if let Some(d) = self.dhcp.as_mut() {
                    d.client.handle_packet(Instant::now(), &payload);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "receiving DHCP packets failed");
                self.last_error = Some(format!("receiving DHCP packets: {e}"));
                // Avoid a hot loop on a persistent socket error.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }

    async fn on_arp(&mut self, r: std::io::Result<Vec<u8>>) {
        match r {
            Ok(payload) => {
                if let Some(p) = self.dhcp.as_mut().and_then(|d| d.probing.as_mut()) {
                    p.probe.handle_packet(Instant::now(), &payload);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "receiving ARP packets failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }

    async fn apply(&mut self, plan: Plan) -> Response {
        if let Err(e) = plan.validate() {
            return Response::Error(format!("invalid plan: {e}"));
        }
        let restart = self.dhcp.as_ref().is_none_or(|d| !d.same_identity(&plan));
        self.firewall.cfg.lan_if = plan.interface.clone();
        if restart {
            let new = match self.start_dhcp(&plan).await {
                Ok(d) => d,
                Err(e) => {
                    let msg = e.to_string();
                    return Response::Error(msg);
                }
            };
            if let Some(mut old) = self.dhcp.take() {
                tracing::info!(interface = %old.ifname, "plan changes the DHCP identity: releasing the old lease");
                old.client.release(Instant::now());
                self.dhcp = Some(old);
                self.drive().await;
            }
            self.dhcp = Some(new);
        } else if let Some(lease) = self.dhcp.as_ref().and_then(|d| d.configured.clone()) {
            // Same lease, new forwards: replace the rules now.
            if let Err(e) = self.firewall.apply(&plan.forwards, lease.address).await {
                let msg = format!("forwards not applied, previous rules kept: {e}");
                self.last_error = Some(msg.clone());
                self.publish();
                return Response::Error(msg);
            }
            let old = self
                .plan
                .as_ref()
                .map(|p| p.forwards.as_slice())
                .unwrap_or_default();
            let stale = stale_targets(old, &plan.forwards);
            if !stale.is_empty()
                && let Err(e) = self.firewall.flush_conntrack_to(&stale).await
            {
                tracing::warn!(error = %e, "flushing flows to old targets failed; they end by themselves");
            }
            self.last_error = None;
        }
        tracing::info!(interface = %plan.interface, forwards = plan.forwards.len(), "plan applied");
        if let Err(e) = self.plans.save(&plan) {
            tracing::warn!(error = %e, "cannot save the plan; a restarted agent will wait for the driver");
        }
        self.plan = Some(plan);
        self.drive().await;
        let snap = self.snapshot.borrow().clone();
        Response::Applied(snap.status(Instant::now(), snap.idle_forwards()))
    }

    async fn start_dhcp(&self, plan: &Plan) -> Result<Dhcp, String> {
        let link = self
            .netconf
            .link(&plan.interface)
            .await
            .map_err(|e| e.to_string())?;
        if !link.up {
            self.netconf
                .set_up(&plan.interface, link.index, LINK_UP_PATIENCE)
                .await
                .map_err(|e| e.to_string())?;
        }
        crate::netconf::loosen_rp_filter(&plan.interface);
        let raw = RawSocket::open(link.index)
            .map_err(|e| format!("cannot open a packet socket on {}: {e}", plan.interface))?;
        let client_id = plan
            .client_id
            .clone()
            .unwrap_or_else(|| netcontainer_proto::contract::mac_client_id(&link.mac));
        let store = LeaseStore::new(&self.state_dir, &plan.interface);
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
        let (previous, hint) = match ours {
            Some(l) if !l.released && !l.expired(SystemTime::now()) => (Some(l.address), None),
            Some(l) => (None, Some(l.address)),
            None => (None, None),
        };
        let mut client = Client::new(
            Config {
                chaddr: link.mac,
                client_id: client_id.clone(),
                hostname: plan.hostname.clone(),
                broadcast_flag: plan.broadcast_flag,
            },
            rand::random(),
        );
        tracing::info!(interface = %plan.interface, previous = ?previous, hint = ?hint, "starting DHCP");
        match previous {
            Some(_) => client.start(Instant::now(), previous),
            None => client.start_discover(Instant::now(), hint),
        }
        Ok(Dhcp {
            ifname: plan.interface.clone(),
            ifindex: link.index,
            client,
            client_id,
            hostname: plan.hostname.clone(),
            broadcast_flag: plan.broadcast_flag,
            raw: Arc::new(raw),
            udp: None,
            store,
            configured: None,
            leftover,
            mac: link.mac,
            probing: None,
            declined: None,
        })
    }

    /// Sends what the client queued and acts on its events, then publishes.
    async fn drive(&mut self) {
        while let Some(d) = self.dhcp.as_mut() {
            if let Some(t) = d.client.poll_transmit() {
                if let Err(e) = send(d, &t).await {
                    tracing::warn!(error = %e, "sending a DHCP packet failed");
                    self.last_error = Some(e);
                }
                continue;
            }
            if let Some(ev) = d.client.poll_event() {
                self.on_event(ev).await;
                continue;
            }
            let Some(p) = d.probing.as_mut() else { break };
            if let Some(frame) = p.probe.poll_transmit() {
                if let Err(e) = p.sock.send_broadcast(&frame).await {
                    tracing::warn!(error = %e, "sending an ARP probe failed");
                }
                continue;
            }
            let Some(result) = p.probe.result() else {
                break;
            };
            let lease = d.probing.take().expect("checked").lease;
            self.on_probe_result(lease, result).await;
        }
        self.drop_leftover().await;
        self.publish();
    }

    async fn on_event(&mut self, ev: Event) {
        let Some(d) = self.dhcp.as_mut() else { return };
        match ev {
            Event::Bound(lease) => {
                let previous = d.configured.as_ref().map(|l| l.address);
                let changed = d.configured.as_ref().is_some_and(|old| {
                    old.address != lease.address || old.prefix_len != lease.prefix_len
                });
                if changed {
                    let old = d.configured.take().expect("checked");
                    tracing::info!(old = %old.address, new = %lease.address, "the server changed our address");
                    if let Err(e) = self
                        .netconf
                        .remove(d.ifindex, old.address, old.prefix_len)
                        .await
                    {
                        tracing::warn!(error = %e, "removing the old address failed");
                    }
                    d.udp = None;
                    if self.arp.is_some()
                        && old.address != lease.address
                        && let Err(e) = self.firewall.remove().await
                    {
                        tracing::warn!(error = %e, "removing forwards failed");
                    }
                }
                if let Some(p) = d.probing.as_mut()
                    && p.lease.address == lease.address
                {
                    p.lease = lease; // extended while being probed
                    return;
                }
                d.probing = None;
                // RFC 5227: a new address is probed before first use; not a
                // renewal, nor the address a previous agent left configured.
                let reused = previous == Some(lease.address)
                    || d.leftover.is_some_and(|(a, _)| a == lease.address);
                if let Some(cfg) = self.arp
                    && !reused
                {
                    match ArpSocket::open(d.ifindex) {
                        Ok(sock) => {
                            tracing::info!(address = %lease.address, probes = cfg.probes,
                                interval_ms = cfg.interval.as_millis() as u64,
                                wait_ms = cfg.wait.as_millis() as u64, "probing the address with ARP");
                            d.probing = Some(Probing {
                                probe: Probe::new(cfg, lease.address, d.mac, Instant::now()),
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
                self.configure(lease).await;
            }
            Event::Lost { lease, reason } => {
                tracing::info!(address = %lease.address, ?reason, "lease lost");
                // A lease lost while being probed never reached the interface.
                d.probing = None;
                if d.configured.is_some() {
                    if let Err(e) = self.firewall.remove().await {
                        tracing::warn!(error = %e, "removing forwards failed");
                    }
                    if let Err(e) = self
                        .netconf
                        .remove(d.ifindex, lease.address, lease.prefix_len)
                        .await
                    {
                        tracing::warn!(error = %e, "removing the address failed");
                    }
                }
                // After a release the address is remembered as a hint for the
                // next agent (same address back when it is free); otherwise forgotten.
                let kept = match (reason, d.store.load()) {
                    (LostReason::Released, Some(mut l)) => {
                        l.released = true;
                        d.store.save(&l)
                    }
                    _ => d.store.clear(),
                };
                if let Err(e) = kept {
                    tracing::warn!(error = %e, "cannot update the stored lease");
                }
                d.configured = None;
                d.udp = None;
                if reason == LostReason::Declined
                    && let Some(msg) = d.declined.take()
                {
                    self.last_error = Some(msg);
                } else if reason != LostReason::Released {
                    self.last_error = Some(format!("lease on {} lost ({reason:?})", lease.address));
                }
            }
        }
    }

    /// The probe of a new lease's address is over: use it, or DECLINE it.
    async fn on_probe_result(&mut self, lease: Lease, result: ProbeResult) {
        match result {
            ProbeResult::Free => {
                tracing::info!(address = %lease.address, "ARP probe: address free");
                self.configure(lease).await;
            }
            ProbeResult::Conflict(mac) => {
                let Some(d) = self.dhcp.as_mut() else { return };
                let msg = format!("address {} is in use by MAC {mac}: declined", lease.address);
                tracing::warn!("{msg}");
                d.declined = Some(msg.clone());
                self.last_error = Some(msg);
                d.client.decline(Instant::now());
            }
        }
    }

    /// Puts a lease's address, routes and forwards in place (or extends them).
    async fn configure(&mut self, lease: Lease) {
        let Some(d) = self.dhcp.as_mut() else { return };
        let fresh = d
            .configured
            .as_ref()
            .is_none_or(|c| c.address != lease.address);
        let cfg = address_config(&lease);
        let mut error = None;
        if let Err(e) = self.netconf.install(d.ifindex, &cfg).await {
            error = Some(format!(
                "configuring {}/{} on {}: {e}",
                lease.address, lease.prefix_len, d.ifname
            ));
        }
        let stored = StoredLease {
            interface: d.ifname.clone(),
            client_id: hex(&d.client_id),
            address: lease.address,
            prefix_len: lease.prefix_len,
            server_id: lease.server_id,
            expires_unix: lease.expires_at().map(|t| {
                let left = t.saturating_duration_since(Instant::now());
                (SystemTime::now() + left)
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs()
            }),
            released: false,
        };
        if let Err(e) = d.store.save(&stored) {
            tracing::warn!(path = %d.store.path().display(), error = %e, "cannot persist the lease");
        }
        if fresh {
            let forwards = self
                .plan
                .as_ref()
                .map(|p| p.forwards.clone())
                .unwrap_or_default();
            if let Err(e) = self.firewall.apply(&forwards, lease.address).await {
                error.get_or_insert(format!("applying forwards: {e}"));
            }
            tracing::info!(address = %lease.address, prefix_len = lease.prefix_len, gateway = ?lease.gateway,
                lease_secs = ?lease.lease_time.map(|t| t.as_secs()), "bound");
        } else {
            tracing::info!(address = %lease.address, lease_secs = ?lease.lease_time.map(|t| t.as_secs()), "lease extended");
        }
        if let Some(e) = &error {
            tracing::error!("{e}");
        }
        self.last_error = error;
        d.configured = Some(lease);
    }

    /// Once the client is past INIT-REBOOT without getting the old address
    /// back, the old address (and rules) left by a previous agent go.
    async fn drop_leftover(&mut self) {
        let Some(d) = self.dhcp.as_mut() else { return };
        let Some((addr, plen)) = d.leftover else {
            return;
        };
        if let Some(l) = &d.configured
            && l.address == addr
        {
            d.leftover = None;
            return;
        }
        if matches!(d.client.state(), State::InitReboot | State::Rebooting) {
            return;
        }
        d.leftover = None;
        tracing::info!(address = %addr, "removing the address a previous agent left behind");
        if d.configured.is_none()
            && let Err(e) = self.firewall.remove().await
        {
            tracing::warn!(error = %e, "removing stale forwards failed");
        }
        if let Err(e) = self.netconf.remove(d.ifindex, addr, plen).await {
            tracing::warn!(error = %e, "removing the stale address failed");
        }
        if let Some(l) = d.configured.clone() {
            // netconf.remove also dropped the routing of the current lease.
            let cfg = address_config(&l);
            if let Err(e) = self.netconf.install(d.ifindex, &cfg).await {
                self.last_error = Some(format!("re-installing routes: {e}"));
            }
        }
    }

    fn publish(&self) {
        let (state, lease, iface) = match &self.dhcp {
            Some(d) => (
                d.client.state(),
                d.configured.clone(),
                Some(d.ifname.clone()),
            ),
            None => (State::WaitingForPlan, None, None),
        };
        let plan = self.plan.as_ref();
        let snap = Snapshot {
            state,
            interface: iface,
            hostname: plan.and_then(|p| p.hostname.clone()),
            rules_active: lease.is_some(),
            lease,
            forwards: plan.map(|p| p.forwards.clone()).unwrap_or_default(),
            last_error: self.last_error.clone(),
        };
        self.snapshot.send_replace(snap);
    }

    /// Releases the lease (RELEASE sent, address and rules removed).
    async fn shutdown(&mut self) {
        if let Some(d) = self.dhcp.as_mut() {
            d.client.release(Instant::now());
        }
        self.drive().await;
        if let Err(e) = self.firewall.remove().await {
            tracing::warn!(error = %e, "removing the firewall table failed");
        }
        if let Some(d) = &self.dhcp
            && let Err(e) = self.netconf.set_down(&d.ifname, d.ifindex).await
        {
            tracing::warn!(error = %e, "taking the LAN interface down failed");
        }
    }
}

/// What netconf installs for a lease, lifetimes counted from now.
fn address_config(lease: &Lease) -> AddressConfig {
    AddressConfig {
        address: lease.address,
        prefix_len: lease.prefix_len,
        gateway: lease.gateway,
        routes: lease.routes.clone(),
        lifetime: lease
            .expires_at()
            .map(|t| t.saturating_duration_since(Instant::now())),
    }
}

async fn send(d: &mut Dhcp, t: &Transmit) -> Result<(), String> {
    match t.destination {
        Destination::Broadcast { src } => d
            .raw
            .send_broadcast(src, &t.payload)
            .await
            .map_err(|e| format!("broadcast on {}: {e}", d.ifname)),
        Destination::Unicast { src, server } => {
            let sock = match &d.udp {
                Some((addr, s)) if *addr == src => s.clone(),
                _ => {
                    let s = Arc::new(
                        UdpSocket::bind(&d.ifname, src)
                            .map_err(|e| format!("binding {src}:68 on {}: {e}", d.ifname))?,
                    );
                    d.udp = Some((src, s.clone()));
                    s
                }
            };
            sock.send_to(server, &t.payload)
                .await
                .map_err(|e| format!("unicast to {server}:67: {e}"))
        }
    }
}
