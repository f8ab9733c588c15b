//! The agent: a shell around its [`core::Core`]. The shell owns the I/O
//! the core does not: the control channel, signals, the family tasks'
//! lifecycle (started for a plan, stopped for another identity or on
//! shutdown), the saved plan and the published status. The core owns what
//! the router holds: every plan and every family event only changes its
//! inputs, and one sync brings the kernel in line (see `core.rs`).
//!
//! - `held.rs`: what the families hold, folded from their events;
//! - `desired.rs`: everything the router should hold, a pure function;
//! - `core.rs`: the inputs, what was applied, and the sync;
//! - `ports.rs`: the small traits the sync acts through (netlink, the
//!   firewall, the relay);
//! - `problems.rs`: what went wrong, per subsystem.

mod core;
mod desired;
mod held;
mod ports;
mod problems;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

pub use problems::{Problems, Subsystem};

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use netcontainer_lease::arp::ArpConfig;
use netcontainer_proto::{Forward, Ipv6Mode, Plan, Response, contract};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use self::core::{Applied, Core, Link};
use crate::control::{self, Command, CounterFn, Snapshot, V6Address};
use crate::family::{self, Family, Handle};
use crate::firewall::{Firewall, Policy, Runner};
use crate::netconf::{Netconf, NetconfError};
use crate::relay::Relay;
use crate::store::PlanStore;

/// How long a plan may wait for its interface to come up (see `Netconf::set_up`).
const LINK_UP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(25);

/// Conntrack/packet mark of connections that arrived on the LAN interface.
pub const MARK: u32 = contract::MARK;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Control(#[from] control::ControlError),
    #[error(transparent)]
    Netconf(#[from] NetconfError),
    #[error(transparent)]
    Sysctl(#[from] crate::sysctl::SysctlError),
    #[error(transparent)]
    Firewall(#[from] crate::firewall::FirewallError),
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
    /// The firewall backend, by name (`--firewall`; see
    /// `firewall::BACKENDS`).
    pub firewall: String,
    /// Gateway mode: the only networks the service's own connections may
    /// reach through the router (`--egress`); empty: anywhere.
    pub egress: Vec<netcontainer_proto::Ipv4Net>,
}

type RouterCore = Core<Netconf, Arc<Firewall>, Relay>;
use crate::family::Inbox;

/// Runs the agent until SIGTERM/SIGINT or a shutdown request.
pub async fn run(opts: Options) -> Result<(), AgentError> {
    // Forwarding and loose reverse-path filtering in this namespace, before
    // anything is forwarded: the agent alone needs nothing set beforehand.
    crate::sysctl::ensure_router_sysctls(Path::new(crate::sysctl::PROC_SYS))?;
    for dir in [&opts.state_dir, &opts.lease_dir] {
        std::fs::create_dir_all(dir).map_err(|source| AgentError::StateDir {
            path: dir.clone(),
            source,
        })?;
    }
    let mut sigterm = signal(SignalKind::terminate()).map_err(AgentError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(AgentError::Signals)?;
    let netconf = Netconf::new(MARK)?;
    let ipv6_kernel = Path::new("/proc/sys/net/ipv6").exists();
    // One firewall: the core applies it, the control socket reads its
    // counters; nothing in it changes after this.
    let firewall = Arc::new(
        Firewall::by_name(&opts.firewall, Runner::default())?
            .with_mark(MARK)
            .with_egress(opts.egress.clone()),
    );
    let applied = start_state(&netconf, &firewall, ipv6_kernel).await;
    let listener = control::bind(&opts.socket)?;
    let (snap_tx, snap_rx) = watch::channel(Snapshot::new());
    let snap_tx = Arc::new(snap_tx);
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

    let (events_tx, mut inbox) = family::queue::channel();
    let mut agent = Agent {
        core: Core::new(
            netconf.clone(),
            firewall,
            Relay::default(),
            ipv6_kernel,
            applied,
        ),
        netconf,
        lease_dir: opts.lease_dir.clone(),
        request_address: opts.request_address,
        arp: opts.arp_probe.then(ArpConfig::default),
        counters: dhcp_counters,
        v4: None,
        v6: None,
        events_tx,
        plans: PlanStore::new(&opts.state_dir),
        mdns: Some(crate::mdns::spawn(snap_tx.clone())),
        snapshot: snap_tx,
    };
    // Restarted after a crash: carry on with the last plan (and the persisted
    // lease, by INIT-REBOOT) without waiting for the driver.
    if let Some(plan) = agent.plans.load() {
        tracing::info!(interface = %plan.interface, "resuming the saved plan");
        if let Response::Error(e) = agent.apply(plan, &mut inbox).await {
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
                    let resp = agent.apply(*plan, &mut inbox).await;
                    let _ = reply.send(resp);
                }
                Some(Command::Shutdown(reply)) => {
                    let _ = reply.send(Response::ShuttingDown);
                    tracing::info!("shutdown requested");
                    break true;
                }
                None => break true,
            },
            ev = inbox.recv() => agent.core.absorb(ev),
            _ = sigterm.recv() => { tracing::info!(release = on_signal, "SIGTERM"); break on_signal; }
            _ = sigint.recv() => { tracing::info!(release = on_signal, "SIGINT"); break on_signal; }
        }
        // What else arrived meanwhile, then one sync and one status for all.
        agent.settle(&mut inbox).await;
    };
    agent.shutdown(&mut inbox, release).await;
    // A clean stop is deliberate: the next agent waits for a plan.
    agent.plans.clear();
    let _ = std::fs::remove_file(&opts.socket);
    tracing::info!("stopped");
    Ok(())
}

/// What the start puts in place or reads, before any plan: the LAN leg the
/// driver plumbs is isolated now (running nft costs milliseconds that must
/// not stand between a plan and its first DISCOVER), and the routing rules
/// of an earlier agent are read, so that the core changes only what
/// differs.
async fn start_state(netconf: &Netconf, firewall: &Firewall, ipv6_kernel: bool) -> Applied {
    let isolation = Policy::isolation(contract::LAN_IF, ipv6_kernel);
    let firewall = match firewall.apply(&isolation).await {
        Ok(()) => Some(isolation),
        Err(e) => {
            tracing::warn!(error = %e, "isolating the LAN leg at start failed; retried with the plan");
            None
        }
    };
    let rules = netconf
        .rules_in_place()
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "cannot read the routing rules in place"))
        .ok();
    Applied {
        firewall,
        service_rule: rules.map(|r| r.service),
        mark_rule6: rules.map(|r| r.mark6),
        ..Applied::default()
    }
}

/// The shell: the core, and what runs beside it.
struct Agent {
    core: RouterCore,
    netconf: Netconf,
    lease_dir: PathBuf,
    request_address: Option<Ipv4Addr>,
    /// `Some` with `--arp-probe`.
    arp: Option<ArpConfig>,
    counters: Arc<crate::counters::Counters>,
    /// The DHCPv4 task and what it is bound to.
    v4: Option<(family::v4::Identity, Handle)>,
    /// The IPv6 task (none with `--ipv6=off`).
    v6: Option<Handle>,
    /// Given to each task.
    events_tx: family::Events,
    plans: PlanStore,
    /// The mDNS responder: it follows the published status.
    mdns: Option<crate::mdns::Handle>,
    snapshot: Arc<watch::Sender<Snapshot>>,
}

impl Agent {
    /// Folds in what else arrived, brings the router in line, publishes.
    async fn settle(&mut self, inbox: &mut Inbox) {
        while let Some(ev) = inbox.try_recv() {
            self.core.absorb(ev);
        }
        self.core.sync().await;
        self.publish();
    }

    async fn apply(&mut self, plan: Plan, inbox: &mut Inbox) -> Response {
        if let Err(e) = plan.validate() {
            return Response::Error(format!("invalid plan: {e}"));
        }
        let restart = self.v4.as_ref().is_none_or(|(id, _)| !id.same(&plan));
        let result = if restart {
            self.start(plan, inbox).await
        } else {
            self.replan(plan, inbox).await
        };
        if let Err(msg) = result {
            self.publish();
            return Response::Error(msg);
        }
        let plan = self.core.plan.as_ref().expect("a plan was applied");
        tracing::info!(interface = %plan.interface, forwards = plan.forwards.len(),
            source = %plan.source, "plan applied");
        self.plans.save_later(plan);
        self.settle(inbox).await;
        let snap = self.snapshot.borrow().clone();
        Response::Applied(snap.status(Instant::now(), snap.idle_forwards()))
    }

    /// A plan for a new DHCP identity: the new interface is readied and the
    /// new tasks opened before the old ones stop (a plan that cannot start
    /// changes nothing), then the old ones release their leases, and the
    /// new ones send at once: nothing after that is needed for their first
    /// DISCOVER and Router Solicitation.
    async fn start(&mut self, plan: Plan, inbox: &mut Inbox) -> Result<(), String> {
        let link = self
            .netconf
            .link(&plan.interface)
            .await
            .map_err(|e| e.to_string())?;
        // Isolated before the leg is up: nothing is forwarded to or from the
        // LAN until a lease brings the forwards. The start isolated lan0; a
        // plan naming another interface is isolated now.
        let isolated = self
            .core
            .applied()
            .firewall
            .as_ref()
            .is_some_and(|p| p.lan_if == plan.interface);
        if !isolated && self.core.held.lease().is_none() {
            self.core
                .isolate(&plan.interface)
                .await
                .map_err(|e| format!("isolating {}: {e}", plan.interface))?;
        }
        // Before the link is up, so the kernel forms no address of its own.
        family::v6::prepare_interface(&plan.interface, plan.ipv6 == Ipv6Mode::Auto);
        if !link.up {
            self.netconf
                .set_up(&plan.interface, link.index, LINK_UP_PATIENCE)
                .await
                .map_err(|e| e.to_string())?;
        }
        let v4 = family::v4::V4::start(
            &plan,
            &link,
            family::v4::Start {
                lease_dir: &self.lease_dir,
                request_address: self.request_address,
                arp: self.arp,
                counters: self.counters.clone(),
            },
            self.events_tx.clone(),
        )?;
        if let Some((id, old)) = self.v4.take() {
            tracing::info!(interface = %id.ifname, "plan changes the DHCP identity: releasing the old lease");
            self.stop(old, inbox, true).await;
        }
        // A new identity is a new IPv6 client too; the old one's addresses
        // go from the old interface.
        if let Some(old) = self.v6.take() {
            self.stop(old, inbox, true).await;
        }
        self.core.plan = Some(plan);
        self.core.link = Some(Link {
            name: self
                .core
                .plan
                .as_ref()
                .map(|p| p.interface.clone())
                .unwrap_or_default(),
            index: link.index,
        });
        self.core.held.client = Some(v4.state());
        self.v4 = Some((v4.identity().clone(), v4.spawn()));
        self.core.v4_running = true;
        self.start_v6(&link);
        // The new tasks' first DISCOVER and RS leave now.
        tokio::task::yield_now().await;
        Ok(())
    }

    /// A new plan for the same identity: the core follows it; IPv6 turned
    /// on or off starts or stops its task.
    async fn replan(&mut self, plan: Plan, inbox: &mut Inbox) -> Result<(), String> {
        let ipv6 = plan.ipv6 == Ipv6Mode::Auto;
        let interface = plan.interface.clone();
        self.core.replan(plan).await?;
        if ipv6 != self.v6.is_some() {
            if let Some(old) = self.v6.take() {
                self.stop(old, inbox, true).await;
            }
            family::v6::prepare_interface(&interface, ipv6);
            match self.netconf.link(&interface).await {
                Ok(link) => self.start_v6(&link),
                Err(e) => self
                    .core
                    .problems
                    .set(Subsystem::Ipv6, format!("IPv6 on {interface}: {e}")),
            }
        }
        Ok(())
    }

    /// Starts the IPv6 task of the plan's interface (`--ipv6=auto`).
    fn start_v6(&mut self, link: &crate::netconf::Link) {
        let Some(plan) = self.core.plan.as_ref().filter(|p| p.ipv6 == Ipv6Mode::Auto) else {
            return;
        };
        match family::v6::V6::start(plan, link, &self.lease_dir, self.events_tx.clone()) {
            Ok(task) => {
                self.v6 = Some(task.spawn());
                self.core.v6_running = true;
            }
            // A kernel booted without IPv6 is a choice, not an error.
            Err(e) if !Path::new("/proc/sys/net/ipv6").exists() => {
                tracing::info!(error = %e, "no IPv6 in this kernel; IPv4 only");
            }
            Err(e) => {
                tracing::warn!(error = %e, "IPv6 not started");
                let msg = format!("IPv6 on {}: {e}", plan.interface);
                self.core.problems.set(Subsystem::Ipv6, msg);
            }
        }
    }

    /// Has a family task release its lease (or keep it), folds in all it
    /// reported until it ended, and forgets what it held: the sync then
    /// removes it (its addresses and rules go).
    async fn stop(&mut self, task: Handle, inbox: &mut Inbox, release: bool) {
        let family = task.family;
        let mut ended = task.end(release).await;
        loop {
            tokio::select! {
                ev = inbox.recv() => self.core.absorb(ev),
                r = &mut ended => {
                    if let Err(e) = r {
                        tracing::error!(?family, error = %e, "the family task failed");
                    }
                    break;
                }
            }
        }
        while let Some(ev) = inbox.try_recv() {
            self.core.absorb(ev);
        }
        self.core.held.forget(family);
        match family {
            Family::V4 => self.core.v4_running = false,
            Family::V6 => self.core.v6_running = false,
        }
        self.core.sync().await;
    }

    fn publish(&self) {
        let core = &self.core;
        let plan = core.plan.as_ref();
        let lease = core.held.lease().cloned();
        let snap = Snapshot {
            state: core.held.client.filter(|_| core.v4_running),
            interface: self.v4.as_ref().map(|(id, _)| id.ifname.clone()),
            hostname: plan.and_then(|p| p.hostname.clone()),
            rules_active: lease.is_some(),
            lease,
            forwards: plan.map(|p| p.forwards.clone()).unwrap_or_default(),
            last_error: core.problems.latest().map(str::to_string),
            problems: core.problems.to_wire(),
            source: plan.map(|p| p.source).unwrap_or_default(),
            service: plan.and_then(|p| p.service.clone()),
            ipv6: core
                .held
                .v6()
                .filter_map(|(address, a)| {
                    Some(V6Address {
                        address,
                        prefix_len: a.prefix_len,
                        origin: a.origin.ipv6()?,
                        preferred_until: a.preferred_until,
                        valid_until: a.valid_until,
                    })
                })
                .collect(),
            ipv6_path: core.ipv6_path(),
            mdns_plan: plan.and_then(|p| p.mdns.as_deref().cloned()),
            mdns: None,
        };
        // `mdns` is the mDNS task's to write: kept as it is.
        self.snapshot.send_modify(|s| {
            let name = s.mdns.take();
            *s = snap;
            s.mdns = name;
        });
    }

    /// Releases the leases (or keeps them), removes what the router holds,
    /// takes the LAN interface down and removes the firewall table.
    async fn shutdown(&mut self, inbox: &mut Inbox, release: bool) {
        // Goodbyes while the addresses they name are still on the leg.
        if let Some(m) = self.mdns.take() {
            m.stop().await;
        }
        if let Some(task) = self.v6.take() {
            self.stop(task, inbox, release).await;
        }
        if let Some((_, task)) = self.v4.take() {
            self.stop(task, inbox, release).await;
        }
        self.core.relay_mut().stop();
        // The leg goes down first: the table is what isolates it until then.
        if let Some(l) = &self.core.link
            && let Err(e) = self.netconf.set_down(&l.name, l.index).await
        {
            tracing::warn!(error = %e, "taking the LAN interface down failed");
        }
        if let Err(e) = self.core.filter().remove().await {
            tracing::warn!(error = %e, "removing the firewall table failed");
        }
        if let Err(e) = self.netconf.service_rule(None).await {
            tracing::warn!(error = %e, "removing the service's routing rule failed");
        }
    }
}
