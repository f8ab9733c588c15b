//! The agent's core: it owns the plan, the address configuration (netconf)
//! and the firewall, and acts on what the family tasks report. One task per
//! address family runs its lease client (`v4`: DHCPv4 with its sockets,
//! persisted lease and ARP probe; `v6`: router advertisements, SLAAC and DHCPv6 with its persisted lease)
//! and sends [`LeaseEvent`]s over a channel. Control requests arrive over
//! another channel; status is published through a watch channel.

mod v4;
mod v6;

pub use v6::V6Event;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use netcontainer_lease::arp::ArpConfig;
use netcontainer_lease::v4::Lease;
use netcontainer_proto::{Forward, Ipv6Mode, Ipv6Path, Plan, Response, State};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use crate::control::{self, Command, CounterFn, Snapshot, V6Address};
use crate::firewall::{Firewall, Ipv4Policy, Ipv6Policy, Policy, Runner, stale_targets};
use crate::netconf::{AddressConfig, Link, Netconf, NetconfError};
use crate::store::PlanStore;

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
    #[error(transparent)]
    Firewall(#[from] crate::firewall::FirewallError),
}

#[derive(Clone, Debug)]
pub struct Options {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    /// Where the lease is persisted (`--lease-dir`; the state directory by
    /// default). A router's is on the host's `/var/lib`, so a lease outlives
    /// a reboot, which empties the state directory's `/run`.
    pub lease_dir: PathBuf,
    /// On SIGTERM/SIGINT keep the lease (no RELEASE) for the next start to
    /// claim again; only a shutdown request releases it (`--keep-lease`).
    pub keep_lease: bool,
    /// Ask for this address (DHCP option 50) when there is no lease of our
    /// own to claim again (`--request-address`).
    pub request_address: Option<Ipv4Addr>,
    /// Probe a freshly leased address with ARP (RFC 5227) before using it,
    /// and DECLINE it if another host answers (see `netcontainer_lease::arp`).
    pub arp_probe: bool,
    /// The firewall backend's name (`--firewall`, see `firewall::BACKENDS`).
    pub firewall: String,
}

/// What a family task reports to the core, in the order it happened.
#[derive(Debug)]
pub enum LeaseEvent {
    /// The client's state (for status); sent before any event it explains.
    State(State),
    /// Put this lease's address and routes in place, and the rules when
    /// the address is new; or extend them.
    Bound(Lease),
    /// The server gave us another address: the old one goes (and the rules
    /// with it when the new one is probed before use).
    Replaced { old: Lease, drop_rules: bool },
    /// The lease in place (if any) is gone: its address and the rules go.
    /// `error` says why, for status (none after a release).
    Lost { lease: Lease, error: Option<String> },
    /// An address a previous agent left and the server did not give back:
    /// it goes (and the rules, unless a lease is in place).
    Leftover { address: Ipv4Addr, prefix_len: u8 },
    /// Something failed; shown as the last error.
    Error(String),
    /// From the IPv6 task.
    V6(V6Event),
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
    // One firewall: the core applies it, the control socket reads its
    // counters; nothing in it changes after this.
    let firewall = Arc::new(Firewall::by_name(&opts.firewall, Runner::default())?.with_mark(MARK));
    // A kernel without IPv6 gets no IPv6 table.
    let ipv6 = std::path::Path::new("/proc/sys/net/ipv6").exists();
    // The leg the driver plumbs is isolated now, before a plan can bring it
    // up: running nft costs milliseconds that would otherwise stand between
    // the plan and the first DISCOVER (a plan naming another interface is
    // isolated when it comes).
    let mut isolated = None;
    match firewall
        .apply(&Policy::isolation(
            netcontainer_proto::contract::LAN_IF,
            ipv6,
        ))
        .await
    {
        Ok(()) => isolated = Some(netcontainer_proto::contract::LAN_IF.to_string()),
        Err(e) => {
            tracing::warn!(error = %e, "isolating the LAN leg at start failed; retried with the plan")
        }
    }
    let listener = control::bind(&opts.socket)?;
    let (snap_tx, snap_rx) = watch::channel(Snapshot::new());
    let (cmd_tx, mut cmd_rx) = mpsc::channel(8);
    let fw = Arc::clone(&firewall);
    let counters: CounterFn = Arc::new(move |forwards: Vec<Forward>| {
        let fw = fw.clone();
        Box::pin(async move { fw.counters(&forwards).await.map_err(|e| e.to_string()) })
    });
    tokio::spawn(crate::whoami::serve(snap_rx.clone()));
    let dhcp_counters = Arc::new(crate::counters::Counters::default());
    tokio::spawn(control::serve(
        listener,
        snap_rx,
        cmd_tx,
        counters,
        dhcp_counters.clone(),
    ));
    tracing::info!(socket = %opts.socket.display(), "waiting for a plan");

    // Unbounded: a task never waits for the core (its timers keep running
    // while the core applies a plan); events come at the pace of DHCP
    // exchanges, not of packets.
    let (events_tx, mut events) = mpsc::unbounded_channel();
    if opts.lease_dir != opts.state_dir {
        std::fs::create_dir_all(&opts.lease_dir).map_err(|source| AgentError::StateDir {
            path: opts.lease_dir.clone(),
            source,
        })?;
    }
    let mut core = Core {
        lease_dir: opts.lease_dir.clone(),
        request_address: opts.request_address,
        counters: dhcp_counters,
        netconf,
        firewall,
        plan: None,
        v4: None,
        v6: None,
        v6_addresses: BTreeMap::new(),
        v6_routers: BTreeSet::new(),
        iface: None,
        state: State::WaitingForPlan,
        lease: None,
        snapshot: snap_tx,
        last_error: None,
        arp: opts.arp_probe.then(ArpConfig::default),
        plans: PlanStore::new(&opts.state_dir),
        // What the start's isolation applied (unknown if it failed).
        applied_v6: isolated.is_some().then(Ipv6Policy::default),
        isolated,
        ipv6,
        events_tx,
        relay: crate::relay::Relay::default(),
        v6_rule: false,
    };
    // Restarted after a crash: carry on with the last plan (and the persisted
    // lease, by INIT-REBOOT) without waiting for the driver.
    if let Some(plan) = core.plans.load() {
        tracing::info!(interface = %plan.interface, "resuming the saved plan");
        if let Response::Error(e) = core.apply(plan, &mut events).await {
            tracing::warn!("the saved plan does not apply ({e}); waiting for a new one");
        }
    }
    // A shutdown request always releases the lease; a signal does unless
    // `--keep-lease` (a router: the host may be shutting down, and the lease
    // is to be claimed again after the reboot).
    let on_signal = !opts.keep_lease;
    let release = loop {
        tokio::select! {
            cmd = cmd_rx.recv() => match cmd {
                Some(Command::Apply(plan, reply)) => {
                    let resp = core.apply(plan, &mut events).await;
                    let _ = reply.send(resp);
                }
                Some(Command::Shutdown(reply)) => {
                    let _ = reply.send(Response::ShuttingDown);
                    tracing::info!("shutdown requested");
                    break true;
                }
                None => break true,
            },
            Some(ev) = events.recv() => core.on_event(ev).await,
            _ = sigterm.recv() => { tracing::info!(release = on_signal, "SIGTERM"); break on_signal; }
            _ = sigint.recv() => { tracing::info!(release = on_signal, "SIGINT"); break on_signal; }
        }
        // What else arrived meanwhile, then one status for all of it.
        while let Ok(ev) = events.try_recv() {
            core.on_event(ev).await;
        }
        core.publish();
    };
    core.shutdown(&mut events, release).await;
    // A clean stop is deliberate: the next agent waits for a plan.
    core.plans.clear();
    let _ = std::fs::remove_file(&opts.socket);
    tracing::info!("stopped");
    Ok(())
}

/// The interface the lease is on.
#[derive(Clone, Debug)]
struct Iface {
    name: String,
    index: u32,
}

struct Core {
    /// The interface the isolation-only table was applied for and is still
    /// in place for (no lease since).
    isolated: Option<String>,
    lease_dir: PathBuf,
    request_address: Option<Ipv4Addr>,
    counters: Arc<crate::counters::Counters>,
    netconf: Netconf,
    firewall: Arc<Firewall>,
    plan: Option<Plan>,
    /// The DHCPv4 task of the plan's interface.
    v4: Option<v4::Handle>,
    /// The IPv6 task (none with `--ipv6=off`).
    v6: Option<v6::Handle>,
    /// The IPv6 addresses and default routers the core put in place.
    v6_addresses: BTreeMap<Ipv6Addr, V6Address>,
    v6_routers: BTreeSet<Ipv6Addr>,
    /// The interface of the last task (still known after its release, to
    /// take it down).
    iface: Option<Iface>,
    /// The task's client state, as last reported.
    state: State,
    /// The lease whose address is on the interface.
    lease: Option<Lease>,
    snapshot: watch::Sender<Snapshot>,
    last_error: Option<String>,
    /// `Some` with `--arp-probe`.
    arp: Option<ArpConfig>,
    plans: PlanStore,
    /// Given to each task.
    events_tx: mpsc::UnboundedSender<LeaseEvent>,
    /// The IPv6 relay's listeners (a service without an IPv6 address).
    relay: crate::relay::Relay,
    /// The IPv6 rules last applied with the firewall (`None`: not known,
    /// the next `sync_v6` applies).
    applied_v6: Option<Ipv6Policy>,
    /// The kernel has IPv6: the firewall keeps an IPv6 table.
    ipv6: bool,
    /// The IPv6 mark rule is in place (`Netconf::mark_rule_v6`).
    v6_rule: bool,
}

type Events = mpsc::UnboundedReceiver<LeaseEvent>;

impl Core {
    async fn apply(&mut self, plan: Plan, events: &mut Events) -> Response {
        if let Err(e) = plan.validate() {
            return Response::Error(format!("invalid plan: {e}"));
        }
        let restart = self.v4.as_ref().is_none_or(|h| !h.identity.same(&plan));
        if restart {
            let (task, link) = match self.start_v4(&plan).await {
                Ok(t) => t,
                Err(msg) => return Response::Error(msg),
            };
            if let Some(old) = self.v4.take() {
                tracing::info!(interface = %old.identity.ifname, "plan changes the DHCP identity: releasing the old lease");
                self.stop(old, events, true).await;
            }
            // A new identity is a new IPv6 client too; the old one's
            // addresses go from the old interface.
            if let Some(old) = self.v6.take() {
                self.stop_v6(old, events, true).await;
            }
            self.lease = None;
            self.state = task.state();
            self.iface = Some(Iface {
                name: plan.interface.clone(),
                index: link.index,
            });
            self.v4 = Some(task.spawn());
            self.start_v6(&plan, &link);
            // The new tasks' first DISCOVER and RS leave now: nothing below
            // is needed for them (the isolation is in place since the start,
            // and the IPv6 table is known: stop_v6 synced it, or the start's
            // isolation set it).
            tokio::task::yield_now().await;
        } else if let Some(lease) = self.lease.clone() {
            // Same lease, new forwards: replace the rules now.
            self.isolated = None;
            let v6 = self.v6_rules(Some(&plan));
            let v4 = Ipv4Policy {
                lease: Some(lease.address),
                forwards: plan.forwards.clone(),
                gateway_for: plan.gateway_for(),
            };
            if let Err(e) = self
                .firewall
                .apply(&self.policy(&plan.interface, v4, v6.clone()))
                .await
            {
                let msg = format!("forwards not applied, previous rules kept: {e}");
                self.last_error = Some(msg.clone());
                self.publish();
                return Response::Error(msg);
            }
            self.applied_v6 = Some(v6);
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
        if let Err(e) = self.netconf.service_rule(plan.gateway_for()).await {
            let msg = format!("routing the service's traffic: {e}");
            self.last_error = Some(msg.clone());
            self.publish();
            return Response::Error(msg);
        }
        if !restart && (plan.ipv6 == Ipv6Mode::Auto) != self.v6.is_some() {
            if let Some(old) = self.v6.take() {
                self.stop_v6(old, events, true).await;
            }
            v6::prepare_interface(&plan.interface, plan.ipv6 == Ipv6Mode::Auto);
            match self.netconf.link(&plan.interface).await {
                Ok(link) => self.start_v6(&plan, &link),
                Err(e) => self.last_error = Some(format!("IPv6 on {}: {e}", plan.interface)),
            }
        }
        tracing::info!(interface = %plan.interface, forwards = plan.forwards.len(),
            source = %plan.source, "plan applied");
        self.plans.save_later(&plan);
        self.plan = Some(plan);
        self.sync_v6().await;
        self.publish();
        let snap = self.snapshot.borrow().clone();
        Response::Applied(snap.status(Instant::now(), snap.idle_forwards()))
    }

    /// Brings the plan's interface up and prepares its DHCPv4 task.
    async fn start_v4(&self, plan: &Plan) -> Result<(v4::V4, Link), String> {
        let link = self
            .netconf
            .link(&plan.interface)
            .await
            .map_err(|e| e.to_string())?;
        // Isolated before the leg is up: nothing is forwarded to or from the
        // LAN until a lease brings the forwards.
        if self.lease.is_none() && self.isolated.as_deref() != Some(plan.interface.as_str()) {
            self.firewall
                .apply(&Policy::isolation(&plan.interface, self.ipv6))
                .await
                .map_err(|e| format!("isolating {}: {e}", plan.interface))?;
        }
        // Before the link is up, so the kernel forms no address of its own.
        v6::prepare_interface(&plan.interface, plan.ipv6 == Ipv6Mode::Auto);
        if !link.up {
            self.netconf
                .set_up(&plan.interface, link.index, LINK_UP_PATIENCE)
                .await
                .map_err(|e| e.to_string())?;
        }
        let task = v4::V4::start(
            plan,
            &link,
            v4::Start {
                lease_dir: &self.lease_dir,
                request_address: self.request_address,
                arp: self.arp,
                counters: self.counters.clone(),
            },
            self.events_tx.clone(),
        )?;
        Ok((task, link))
    }

    /// Has a task release its lease (or keep it) and acts on everything it
    /// reported until it ended (RELEASE sent, then its address and rules
    /// removed).
    async fn stop(&mut self, task: v4::Handle, events: &mut Events, release: bool) {
        let mut ended = task.end(release).await;
        loop {
            tokio::select! {
                Some(ev) = events.recv() => self.on_event(ev).await,
                r = &mut ended => {
                    if let Err(e) = r {
                        tracing::error!(error = %e, "the DHCP task failed");
                    }
                    break;
                }
            }
        }
        while let Ok(ev) = events.try_recv() {
            self.on_event(ev).await;
        }
    }

    async fn on_event(&mut self, ev: LeaseEvent) {
        match ev {
            LeaseEvent::State(state) => self.state = state,
            LeaseEvent::Bound(lease) => self.configure(lease).await,
            LeaseEvent::Replaced { old, drop_rules } => {
                if let Some(i) = &self.iface
                    && let Err(e) = self
                        .netconf
                        .remove(i.index, old.address, old.prefix_len)
                        .await
                {
                    tracing::warn!(error = %e, "removing the old address failed");
                }
                if drop_rules {
                    self.isolate().await;
                }
                self.lease = None;
            }
            LeaseEvent::Lost { lease, error } => {
                if self.lease.take().is_some() {
                    self.isolate().await;
                    if let Some(i) = &self.iface
                        && let Err(e) = self
                            .netconf
                            .remove(i.index, lease.address, lease.prefix_len)
                            .await
                    {
                        tracing::warn!(error = %e, "removing the address failed");
                    }
                }
                if error.is_some() {
                    self.last_error = error;
                }
            }
            LeaseEvent::Leftover {
                address,
                prefix_len,
            } => self.drop_leftover(address, prefix_len).await,
            LeaseEvent::Error(e) => self.last_error = Some(e),
            LeaseEvent::V6(ev) => self.on_v6_event(ev).await,
        }
    }

    /// Starts the IPv6 task of the plan's interface (`--ipv6=auto`).
    fn start_v6(&mut self, plan: &Plan, link: &Link) {
        if plan.ipv6 != Ipv6Mode::Auto {
            return;
        }
        match v6::V6::start(plan, link, &self.lease_dir, self.events_tx.clone()) {
            Ok(task) => self.v6 = Some(task.spawn()),
            // A kernel booted without IPv6 is a choice, not an error.
            Err(e) if !std::path::Path::new("/proc/sys/net/ipv6").exists() => {
                tracing::info!(error = %e, "no IPv6 in this kernel; IPv4 only");
            }
            Err(e) => {
                tracing::warn!(error = %e, "IPv6 not started");
                self.last_error = Some(format!("IPv6 on {}: {e}", plan.interface));
            }
        }
    }

    /// Has the IPv6 task release its DHCPv6 lease, then removes every IPv6
    /// address and default route the core put in place.
    async fn stop_v6(&mut self, task: v6::Handle, events: &mut Events, release: bool) {
        let ended = task.end(release).await;
        if let Err(e) = ended.await {
            tracing::error!(error = %e, "the IPv6 task failed");
        }
        while let Ok(ev) = events.try_recv() {
            Box::pin(self.on_event(ev)).await;
        }
        let Some(i) = self.iface.clone() else { return };
        for (address, a) in std::mem::take(&mut self.v6_addresses) {
            if let Err(e) = self.netconf.remove_v6(i.index, address, a.prefix_len).await {
                tracing::warn!(error = %e, "removing an IPv6 address failed");
            }
        }
        for router in std::mem::take(&mut self.v6_routers) {
            if let Err(e) = self.netconf.default_route_v6(i.index, router, false).await {
                tracing::warn!(error = %e, "removing an IPv6 default route failed");
            }
        }
        self.sync_v6().await;
    }

    async fn on_v6_event(&mut self, ev: V6Event) {
        let Some(iface) = self.iface.clone() else {
            return;
        };
        let now = Instant::now();
        let result = match ev {
            V6Event::Address {
                address,
                prefix_len,
                preferred,
                valid,
                origin,
            } => {
                tracing::info!(%address, prefix_len, ?origin, preferred_secs = ?preferred.map(|d| d.as_secs()),
                    valid_secs = ?valid.map(|d| d.as_secs()), "IPv6 address");
                self.v6_addresses.insert(
                    address,
                    V6Address {
                        address,
                        prefix_len,
                        origin,
                        preferred_until: preferred.map(|d| now + d),
                        valid_until: valid.map(|d| now + d),
                    },
                );
                self.netconf
                    .install_v6(iface.index, address, prefix_len, preferred, valid)
                    .await
            }
            V6Event::AddressGone {
                address,
                prefix_len,
            } => {
                tracing::info!(%address, "IPv6 address removed");
                let prefix_len = self
                    .v6_addresses
                    .remove(&address)
                    .map_or(prefix_len, |a| a.prefix_len);
                self.netconf
                    .remove_v6(iface.index, address, prefix_len)
                    .await
            }
            V6Event::Router { address, lifetime } => {
                if self.v6_routers.insert(address) {
                    tracing::info!(router = %address, lifetime_secs = lifetime.as_secs(), "IPv6 default router");
                }
                self.netconf
                    .default_route_v6(iface.index, address, true)
                    .await
            }
            V6Event::RouterGone { address } => {
                tracing::info!(router = %address, "IPv6 default router gone");
                self.v6_routers.remove(&address);
                self.netconf
                    .default_route_v6(iface.index, address, false)
                    .await
            }
            V6Event::Error(e) => {
                self.last_error = Some(e);
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "IPv6 configuration failed");
            self.last_error = Some(e.to_string());
        }
        self.sync_v6().await;
    }

    /// The LAN interface's global IPv6 addresses (what forwards and the
    /// relay answer on).
    fn global_v6(&self) -> Vec<Ipv6Addr> {
        self.v6_addresses
            .keys()
            .filter(|a| !a.is_unicast_link_local())
            .copied()
            .collect()
    }

    /// The IPv6 table's input for `plan` and the addresses in place: kernel
    /// DNAT of the forwards aimed at the service when it has an IPv6
    /// address, else nothing (isolation; the relay answers instead).
    fn v6_rules(&self, plan: Option<&Plan>) -> Ipv6Policy {
        let Some(plan) = plan.filter(|p| p.ipv6 == Ipv6Mode::Auto) else {
            return Ipv6Policy::default();
        };
        let Some(service) = plan.service.as_ref().filter(|s| s.address6.is_some()) else {
            return Ipv6Policy::default();
        };
        let addresses = self.global_v6();
        // No global address yet: nothing to DNAT, so the isolation-only table
        // (what the start applied: a plan's arrival runs no nft).
        if addresses.is_empty() {
            return Ipv6Policy::default();
        }
        Ipv6Policy {
            addresses,
            service: service.address6,
            forwards: plan
                .forwards
                .iter()
                .filter(|f| f.target_address == service.address)
                .cloned()
                .collect(),
        }
    }

    /// The IPv4 table's input for `lease` and the plan's forwards.
    fn v4_policy(&self, lease: &Lease) -> Ipv4Policy {
        let plan = self.plan.as_ref();
        Ipv4Policy {
            lease: Some(lease.address),
            forwards: plan.map(|p| p.forwards.clone()).unwrap_or_default(),
            gateway_for: plan.and_then(Plan::gateway_for),
        }
    }

    /// The firewall's input on `lan_if` (no IPv6 table in a kernel without
    /// IPv6).
    fn policy(&self, lan_if: &str, v4: Ipv4Policy, v6: Ipv6Policy) -> Policy {
        Policy {
            lan_if: lan_if.to_string(),
            v4,
            v6: self.ipv6.then_some(v6),
        }
    }

    /// How the published ports reach the service over IPv6 now.
    fn ipv6_path(&self) -> Ipv6Path {
        let Some(plan) = self.plan.as_ref() else {
            return Ipv6Path::None;
        };
        if plan.ipv6 != Ipv6Mode::Auto || plan.forwards.is_empty() || self.global_v6().is_empty() {
            Ipv6Path::None
        } else if plan.service.as_ref().is_some_and(|s| s.address6.is_some()) {
            Ipv6Path::Kernel
        } else {
            Ipv6Path::Relay
        }
    }

    /// Brings the IPv6 table and the relay in line with the plan and the
    /// addresses (after either changed); nft runs only when the rules do.
    async fn sync_v6(&mut self) {
        let want_rule = self.v6.is_some();
        if want_rule != self.v6_rule {
            match self.netconf.mark_rule_v6(want_rule).await {
                Ok(()) => self.v6_rule = want_rule,
                Err(e) => {
                    tracing::warn!(error = %e, "IPv6 routing rule");
                    self.last_error = Some(e.to_string());
                }
            }
        }
        let rules = self.v6_rules(self.plan.as_ref());
        if self.applied_v6.as_ref() != Some(&rules)
            && let Some(iface) = self.iface.clone()
        {
            // The kernel path forwards: IPv6 forwarding on, now that it is
            // needed (Docker: the driver passed it for such a router).
            if rules.forwards_anything()
                && let Err(e) = crate::sysctl::ensure_ipv6_forwarding(std::path::Path::new(
                    crate::sysctl::PROC_SYS,
                ))
            {
                tracing::error!("{e}");
                self.last_error = Some(format!("IPv6 forwards: {e}"));
            }
            match self.lease.clone() {
                // The same rules, with no IPv4 forwards.
                None => self.isolate().await,
                Some(l) => {
                    let policy = self.policy(&iface.name, self.v4_policy(&l), rules.clone());
                    match self.firewall.apply(&policy).await {
                        Ok(()) => self.applied_v6 = Some(rules),
                        Err(e) => {
                            tracing::error!(error = %e, "applying the IPv6 forwards failed");
                            self.last_error = Some(format!("applying IPv6 forwards: {e}"));
                        }
                    }
                }
            }
        }
        let (want, note) = match (self.ipv6_path(), self.plan.as_ref()) {
            (Ipv6Path::Relay, Some(plan)) => {
                crate::relay::desired(&self.global_v6(), &plan.forwards)
            }
            _ => Default::default(),
        };
        let errors = self.relay.update(&want);
        for e in &errors {
            tracing::error!("{e}");
        }
        if let Some(e) = errors.into_iter().next().or(note) {
            self.last_error = Some(e);
        }
    }

    /// Puts a lease's address, routes and forwards in place (or extends them).
    async fn configure(&mut self, lease: Lease) {
        let Some(iface) = self.iface.clone() else {
            return;
        };
        let fresh = self
            .lease
            .as_ref()
            .is_none_or(|c| c.address != lease.address);
        let cfg = address_config(&lease);
        let mut error = None;
        if let Err(e) = self.netconf.install(iface.index, &cfg).await {
            error = Some(format!(
                "configuring {}/{} on {}: {e}",
                lease.address, lease.prefix_len, iface.name
            ));
        }
        if fresh {
            // Whatever the outcome, the isolation-only table may be gone.
            self.isolated = None;
            let v6 = self.v6_rules(self.plan.as_ref());
            let policy = self.policy(&iface.name, self.v4_policy(&lease), v6.clone());
            match self.firewall.apply(&policy).await {
                Ok(()) => self.applied_v6 = Some(v6),
                Err(e) => {
                    error.get_or_insert(format!("applying forwards: {e}"));
                }
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
        self.lease = Some(lease);
    }

    /// Replaces the forwards by the isolation-only table (no lease).
    async fn isolate(&mut self) {
        let Some(lan) = self.iface.as_ref().map(|i| i.name.clone()) else {
            return;
        };
        let v6 = self.v6_rules(self.plan.as_ref());
        match self
            .firewall
            .apply(&self.policy(&lan, Ipv4Policy::default(), v6.clone()))
            .await
        {
            Ok(()) => {
                self.isolated = Some(lan);
                self.applied_v6 = Some(v6);
            }
            Err(e) => {
                tracing::warn!(error = %e, "removing forwards failed");
                self.last_error = Some(format!("isolating {lan}: {e}"));
                self.isolated = None;
            }
        }
    }

    /// Removes an address a previous agent left (and its rules, unless a
    /// lease of ours is in place).
    async fn drop_leftover(&mut self, address: Ipv4Addr, prefix_len: u8) {
        let Some(iface) = self.iface.clone() else {
            return;
        };
        if self.lease.is_none() {
            self.isolate().await;
        }
        if let Err(e) = self.netconf.remove(iface.index, address, prefix_len).await {
            tracing::warn!(error = %e, "removing the stale address failed");
        }
        if let Some(l) = &self.lease {
            // netconf.remove also dropped the routing of the current lease.
            let cfg = address_config(l);
            if let Err(e) = self.netconf.install(iface.index, &cfg).await {
                self.last_error = Some(format!("re-installing routes: {e}"));
            }
        }
    }

    fn publish(&self) {
        let plan = self.plan.as_ref();
        let snap = Snapshot {
            state: match self.v4 {
                Some(_) => self.state,
                None => State::WaitingForPlan,
            },
            interface: self.v4.as_ref().map(|h| h.identity.ifname.clone()),
            hostname: plan.and_then(|p| p.hostname.clone()),
            rules_active: self.lease.is_some(),
            lease: self.lease.clone(),
            forwards: plan.map(|p| p.forwards.clone()).unwrap_or_default(),
            last_error: self.last_error.clone(),
            source: plan.map(|p| p.source).unwrap_or_default(),
            service: plan.and_then(|p| p.service.clone()),
            ipv6: self.v6_addresses.values().cloned().collect(),
            ipv6_path: self.ipv6_path(),
        };
        self.snapshot.send_replace(snap);
    }

    /// Releases the lease (RELEASE sent, address and rules removed) and
    /// takes the LAN interface down.
    async fn shutdown(&mut self, events: &mut Events, release: bool) {
        self.relay.stop();
        if let Some(task) = self.v6.take() {
            self.stop_v6(task, events, release).await;
        }
        if let Some(task) = self.v4.take() {
            self.stop(task, events, release).await;
        }
        // The leg goes down first: the table is what isolates it until then.
        if let Some(i) = &self.iface
            && let Err(e) = self.netconf.set_down(&i.name, i.index).await
        {
            tracing::warn!(error = %e, "taking the LAN interface down failed");
        }
        if let Err(e) = self.firewall.remove().await {
            tracing::warn!(error = %e, "removing the firewall table failed");
        }
        if let Err(e) = self.netconf.service_rule(None).await {
            tracing::warn!(error = %e, "removing the service's routing rule failed");
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
