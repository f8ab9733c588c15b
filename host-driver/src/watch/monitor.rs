//! What `watch` sees of its routers between Docker events. Each running
//! router's agent pushes its state over one subscribed connection when it
//! changes (`Request::Subscribe`); an agent older than subscriptions is
//! asked every `--poll` seconds instead. Three things come of it:
//!
//! - the figures `--metrics` serves ([`Stats`], rendered by `metrics.rs`);
//!   the forward counters, which cost the agent an `nft` run, are read only
//!   when `/metrics` is scraped ([`Stats::with_forward_counters`]);
//! - address changes: when a service's leased address is another than the
//!   last one seen (the lease expired and the server gave another, a NAK, a
//!   new server), one WARN with the old and new address, and the operator's
//!   `--on-change` command, run with them in its environment;
//! - a nudge to the host route sync when a lease appears, goes or moves.
//!
//! Which routers there are comes from one Docker listing every `--poll`
//! seconds (one call, whatever the number of routers). Nothing here waits
//! for the supervisor, nor it for this: a slow agent costs at most
//! [`AGENT_PATIENCE`], and the command runs in a task of its own, bounded by
//! [`HOOK_LIMIT`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use netcontainer_proto::{ForwardStatus, LeaseCounters, Status};
use tokio::sync::Notify;

use crate::agent_client::AgentClient;
use crate::router::Driver;
use crate::state::{self, ServiceName};

/// How long one agent may take to answer a poll.
pub const AGENT_PATIENCE: Duration = Duration::from_secs(2);
/// How long `--on-change` may run before it is killed.
pub const HOOK_LIMIT: Duration = Duration::from_secs(30);
/// A subscription with no update for this long is taken for dead (the
/// agent pushes at least every keepalive, 60 s).
const SILENCE: Duration = Duration::from_secs(125);
/// A router whose agent cannot be reached for this long is shown as not
/// answering (its supervisor restarts a killed agent well within it).
const GRACE: Duration = Duration::from_secs(1);
/// First and longest wait between two attempts to reach an agent.
const FIRST_RETRY: Duration = Duration::from_millis(50);
const LAST_RETRY: Duration = Duration::from_secs(5);
/// Forward counters read for one scrape are served to the scrapes of the
/// next this long (each read is an `nft` run in every router).
const COUNTERS_FRESH: Duration = Duration::from_secs(10);
/// Agents asked for their counters at once by one scrape.
const COUNTERS_AT_ONCE: usize = 16;
/// The environment of `--on-change`.
pub const ENV_SERVICE: &str = "NETCONTAINER_SERVICE";
pub const ENV_OLD: &str = "NETCONTAINER_OLD_ADDRESS";
pub const ENV_NEW: &str = "NETCONTAINER_NEW_ADDRESS";

/// One router as last heard of.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The agent's status; `None` when it did not answer.
    pub status: Option<Status>,
    /// `None` also from an agent older than the counters.
    pub counters: Option<LeaseCounters>,
}

/// Forward counters by service, as read for a scrape.
type Counted = BTreeMap<String, Vec<ForwardStatus>>;

/// Everything the metrics show, shared by the poll, the supervisor (heals)
/// and the metrics server.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<StatsInner>,
    /// When each router's figures were taken in: [`Stats::snapshot`] ages
    /// the seconds-left the agent reported by it.
    heard_at: Mutex<HashMap<String, Instant>>,
    /// The addresses last seen, for [`Change`]s.
    seen: Mutex<Addresses>,
    /// The last forward counters read for a scrape, and when.
    counters: tokio::sync::Mutex<Option<(Instant, Counted)>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsInner {
    /// Every router, as last heard of, by service.
    pub routers: BTreeMap<String, Observed>,
    /// Times watch healed a service's router (since watch started).
    pub heals: BTreeMap<String, u64>,
    /// Times a service's address changed (since watch started).
    pub changes: BTreeMap<String, u64>,
    /// Failed dynamic DNS updates of a service (since watch started).
    pub ddns_failures: BTreeMap<String, u64>,
    /// Services whose lease the host refused a route to (see `shim::check`),
    /// as of the last poll.
    pub host_route_refused: BTreeSet<String>,
    /// When the figures are as of (`None` before the routers were first
    /// listed and heard): the status page ages the agents' seconds left by
    /// it ([`Stats::snapshot`] sets it to the time of the snapshot).
    pub polled_at: Option<SystemTime>,
    /// When watch first saw a service's router, or saw what the status page
    /// shows of it change last (see [`Shape`]): since watch started.
    pub last_change: BTreeMap<String, SystemTime>,
}

/// What a "change" of a service is on the status page: whether its agent
/// answers, its IPv4 address and its IPv6 addresses. Not the DHCP state
/// (every renewal passes RENEWING and back) nor lifetimes (they tick).
#[derive(PartialEq, Eq)]
struct Shape {
    answers: bool,
    v4: Option<Ipv4Addr>,
    v6: BTreeSet<Ipv6Addr>,
}

impl Shape {
    fn of(o: &Observed) -> Shape {
        let st = o.status.as_ref();
        Shape {
            answers: st.is_some(),
            v4: st.and_then(|s| s.lease.as_ref()).map(|l| l.address),
            v6: st
                .map(|s| s.ipv6.iter().map(|a| a.address).collect())
                .unwrap_or_default(),
        }
    }
}

impl StatsInner {
    /// Takes a whole poll in: its routers replace the last ones, its
    /// changes count, and the counters of services whose router is gone are
    /// dropped (a removed service leaves no series behind; one that comes
    /// back starts again at 0, which Prometheus reads as a reset). A
    /// service seen for the first time, or whose [`Shape`] differs from the
    /// last poll's or that `changes` names, has its last change at `now`.
    #[cfg(test)]
    pub fn take_poll(
        &mut self,
        polled: BTreeMap<String, Observed>,
        changes: &[Change],
        now: SystemTime,
    ) {
        let keep: BTreeSet<String> = polled.keys().cloned().collect();
        for (service, o) in polled {
            let c = changes.iter().find(|c| c.service == service);
            self.take_one(&service, o, c, now);
        }
        self.keep_only(&keep);
        self.polled_at = Some(now);
    }
}

impl StatsInner {
    /// Takes in what one router reported (`None`: its agent does not
    /// answer), at `now`; `change` is its address change, if any.
    fn take_one(&mut self, service: &str, o: Observed, change: Option<&Change>, now: SystemTime) {
        let changed = self
            .routers
            .get(service)
            .is_none_or(|before| Shape::of(before) != Shape::of(&o));
        if changed || change.is_some() {
            self.last_change.insert(service.to_string(), now);
        }
        if change.is_some() {
            *self.changes.entry(service.to_string()).or_default() += 1;
        }
        self.routers.insert(service.to_string(), o);
    }

    /// Drops every service not in `keep`, with its counts.
    fn keep_only(&mut self, keep: &BTreeSet<String>) {
        self.routers.retain(|s, _| keep.contains(s));
        self.heals.retain(|s, _| keep.contains(s));
        self.changes.retain(|s, _| keep.contains(s));
        self.ddns_failures.retain(|s, _| keep.contains(s));
        self.last_change.retain(|s, _| keep.contains(s));
        self.host_route_refused.retain(|s| keep.contains(s));
    }
}

/// `st`'s seconds-left made `secs` older.
fn age_status(st: &mut Status, secs: u64) {
    let older = |v: &mut Option<u64>| {
        if let Some(v) = v.as_mut() {
            *v = v.saturating_sub(secs);
        }
    };
    if let Some(l) = st.lease.as_mut() {
        older(&mut l.renew_in_secs);
        older(&mut l.rebind_in_secs);
        older(&mut l.expires_in_secs);
    }
    for a in &mut st.ipv6 {
        older(&mut a.preferred_in_secs);
        older(&mut a.valid_in_secs);
    }
}

impl Stats {
    /// Takes in one router's report (see [`StatsInner::take_one`]); returns
    /// its address change, and whether its IPv4 lease appeared, went or
    /// moved (what the host routes follow).
    pub fn heard(&self, service: &str, o: Observed) -> (Option<Change>, bool) {
        let lease = |o: Option<&Observed>| {
            o.and_then(|o| o.status.as_ref())
                .and_then(|s| s.lease.as_ref())
                .map(|l| (l.address, l.prefix_len))
        };
        let change = self.seen().one(service, &o);
        let mut s = self.lock();
        let moved = lease(s.routers.get(service)) != lease(Some(&o));
        s.take_one(service, o, change.as_ref(), SystemTime::now());
        drop(s);
        self.heard_at().insert(service.to_string(), Instant::now());
        (change, moved)
    }

    /// Forgets every router not in `keep`; the figures are known from now on.
    fn keep_only(&self, keep: &BTreeSet<String>, refused: BTreeSet<String>) {
        let mut s = self.lock();
        s.keep_only(keep);
        s.host_route_refused = refused;
        s.polled_at = Some(SystemTime::now());
        drop(s);
        self.heard_at().retain(|k, _| keep.contains(k));
        self.seen().0.retain(|k, _| keep.contains(k));
    }

    /// The routers as last heard of, pushed by their agents when they change; the forward
    /// counters are zero (see [`Self::with_forward_counters`]).
    pub fn snapshot(&self) -> StatsInner {
        let mut s = self.lock().clone();
        let heard = self.heard_at().clone();
        let now = Instant::now();
        for (name, o) in &mut s.routers {
            if let (Some(st), Some(at)) = (o.status.as_mut(), heard.get(name)) {
                age_status(st, now.saturating_duration_since(*at).as_secs());
            }
        }
        if s.polled_at.is_some() {
            s.polled_at = Some(SystemTime::now());
        }
        s
    }

    /// [`Self::snapshot`] with the forward counters, read from every bound
    /// router with forwards ([`COUNTERS_AT_ONCE`] at a time, each within
    /// [`AGENT_PATIENCE`]), or from the last read if it is under
    /// [`COUNTERS_FRESH`] old: concurrent scrapes share one read.
    pub async fn with_forward_counters(&self) -> StatsInner {
        use futures::StreamExt;
        let mut s = self.snapshot();
        let mut cache = self.counters.lock().await;
        let fresh = cache
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < COUNTERS_FRESH);
        if !fresh {
            let asked: Vec<String> = s
                .routers
                .iter()
                .filter(|(_, o)| {
                    o.status
                        .as_ref()
                        .is_some_and(|st| st.lease.is_some() && !st.forwards.is_empty())
                })
                .map(|(k, _)| k.clone())
                .collect();
            let read: Counted = futures::stream::iter(asked)
                .map(|name| async move {
                    let service = ServiceName::parse(&name).ok()?;
                    let st = tokio::time::timeout(AGENT_PATIENCE, async {
                        let mut c = AgentClient::connect(&state::socket(&service)).await.ok()?;
                        c.status().await.ok()
                    })
                    .await
                    .ok()
                    .flatten()?;
                    Some((name, st.forwards))
                })
                .buffer_unordered(COUNTERS_AT_ONCE)
                .filter_map(|x| async move { x })
                .collect()
                .await;
            *cache = Some((Instant::now(), read));
        }
        if let Some((_, read)) = cache.as_ref() {
            for (name, o) in &mut s.routers {
                if let (Some(st), Some(f)) = (o.status.as_mut(), read.get(name)) {
                    // Only if the forwards are still the ones counted.
                    let same = |a: &ForwardStatus, b: &ForwardStatus| {
                        (a.protocol, a.public_port, a.public_port_end)
                            == (b.protocol, b.public_port, b.public_port_end)
                    };
                    if st.forwards.len() == f.len()
                        && st.forwards.iter().zip(f).all(|(a, b)| same(a, b))
                    {
                        st.forwards = f.clone();
                    }
                }
            }
        }
        s
    }

    /// Whether the service's agent, as last heard, answers and has its plan
    /// and its LAN leg: what a heal would otherwise find out by asking it. The
    /// resync looks at a service whose listing did not change only when this
    /// is not so.
    pub fn settled(&self, service: &str) -> bool {
        self.lock()
            .routers
            .get(service)
            .and_then(|o| o.status.as_ref())
            .is_some_and(|st| {
                st.state != netcontainer_proto::State::WaitingForPlan && st.interface.is_some()
            })
    }

    pub fn healed(&self, service: &ServiceName) {
        *self.lock().heals.entry(service.to_string()).or_default() += 1;
    }

    /// Counts a failed dynamic DNS update of each of `services`.
    pub fn ddns_failed(&self, services: &[String]) {
        let mut s = self.lock();
        for service in services {
            *s.ddns_failures.entry(service.clone()).or_default() += 1;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn heard_at(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.heard_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Addresses> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The addresses last seen, by service: what a new poll is compared with.
#[derive(Debug, Default)]
pub struct Addresses(HashMap<String, Ipv4Addr>);

/// A service's address went from `old` to `new`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub service: String,
    pub old: Ipv4Addr,
    pub new: Ipv4Addr,
}

impl Addresses {
    /// Takes a poll in: the changes against the addresses seen before.
    /// The first address of a service is no change; a service without a
    /// lease keeps its last address (a lease lost and another one got
    /// later is one change, old to new); a router that is gone is forgotten.
    #[cfg(test)]
    pub fn update(&mut self, routers: &BTreeMap<String, Observed>) -> Vec<Change> {
        self.0.retain(|s, _| routers.contains_key(s));
        routers
            .iter()
            .filter_map(|(service, o)| self.one(service, o))
            .collect()
    }

    /// Takes in one router's report: its change, if any.
    fn one(&mut self, service: &str, o: &Observed) -> Option<Change> {
        let new = o
            .status
            .as_ref()
            .and_then(|s| s.lease.as_ref())
            .map(|l| l.address)?;
        match self.0.insert(service.to_string(), new) {
            Some(old) if old != new => Some(Change {
                service: service.to_string(),
                old,
                new,
            }),
            _ => None,
        }
    }
}

/// Status and counters of `service`'s agent, within [`AGENT_PATIENCE`].
async fn observe(service: &ServiceName) -> Observed {
    let socket = state::socket(service);
    let ask = async {
        let mut c = AgentClient::connect(&socket).await.ok()?;
        let status = c.status().await.ok()?;
        let counters = c.counters().await.ok().flatten();
        Some((status, counters))
    };
    match tokio::time::timeout(AGENT_PATIENCE, ask)
        .await
        .ok()
        .flatten()
    {
        Some((status, counters)) => Observed {
            status: Some(status),
            counters,
        },
        None => Observed {
            status: None,
            counters: None,
        },
    }
}

/// Follows the routers until dropped (it runs as a task of watch's
/// session): lists them every `every` and when `routers_changed` is
/// notified (a router's Docker event), keeps one [`follow`] task per running
/// router, and notifies `routes_changed` when a lease appears, goes or moves.
pub async fn run(
    driver: Arc<Driver>,
    stats: Arc<Stats>,
    on_change: Option<String>,
    every: Duration,
    routes_changed: Arc<Notify>,
    routers_changed: Arc<Notify>,
) {
    let ctx = Arc::new(Ctx {
        stats: stats.clone(),
        on_change,
        every,
        routes_changed,
    });
    let mut followers = Followers::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = routers_changed.notified() => {}
        }
        let routers = match driver.docker.routers().await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "monitor: listing routers failed");
                continue;
            }
        };
        let running: BTreeSet<String> = routers
            .iter()
            .filter(|r| r.running)
            .map(|r| r.service.to_string())
            .collect();
        followers.0.retain(|name, task| {
            let keep = running.contains(name) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        let mut started = Vec::new();
        for r in &routers {
            let name = r.service.to_string();
            if !r.running {
                if stats
                    .lock()
                    .routers
                    .get(&name)
                    .is_none_or(|o| o.status.is_some())
                {
                    stats.heard(&name, Observed::silent());
                }
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = followers.0.entry(name) {
                let (tx, rx) = tokio::sync::oneshot::channel();
                e.insert(tokio::spawn(follow(ctx.clone(), r.service.clone(), tx)));
                started.push(rx);
            }
        }
        // Before the figures count as known (dynamic DNS deletes the names
        // of routers it does not see), the first listing's agents are heard.
        if first {
            let _ = tokio::time::timeout(AGENT_PATIENCE, futures::future::join_all(started)).await;
            first = false;
        }
        let all: BTreeSet<String> = routers.iter().map(|r| r.service.to_string()).collect();
        let refused = routers
            .iter()
            .filter(|r| crate::shim::refusal(&r.service).is_some())
            .map(|r| r.service.to_string())
            .collect();
        stats.keep_only(&all, refused);
    }
}

/// The [`follow`] tasks, one per running router, by service. Aborted with
/// the monitor (the session's end): a dropped `JoinHandle` does not end its
/// task, and each session's would go on holding its agent's connection and
/// reporting, one more for every router at every reconnect.
#[derive(Default)]
struct Followers(HashMap<String, tokio::task::JoinHandle<()>>);

impl Drop for Followers {
    fn drop(&mut self) {
        for t in self.0.values() {
            t.abort();
        }
    }
}

/// What every [`follow`] task shares.
struct Ctx {
    stats: Arc<Stats>,
    on_change: Option<String>,
    every: Duration,
    routes_changed: Arc<Notify>,
}

impl Ctx {
    fn heard(&self, service: &ServiceName, o: Observed) {
        let (change, moved) = self.stats.heard(service.as_str(), o);
        if moved {
            self.routes_changed.notify_one();
        }
        if let Some(c) = change {
            tracing::warn!(service = %c.service, old = %c.old, new = %c.new, "the service's LAN address changed");
            if let Some(cmd) = &self.on_change {
                tokio::spawn(run_hook(cmd.clone(), c));
            }
        }
    }
}

impl Observed {
    fn silent() -> Observed {
        Observed {
            status: None,
            counters: None,
        }
    }
}

/// How one subscription ended.
enum Ended {
    /// The agent is older than subscriptions.
    Unsupported,
    /// It was lost (or never made); whether any update came on it.
    Lost { heard: bool },
}

/// Follows one router's agent until aborted: subscribes, takes in every
/// update, subscribes again after a loss (waits doubling from
/// [`FIRST_RETRY`] to [`LAST_RETRY`]); shows it as not answering once it
/// could not be reached for [`GRACE`]. An agent older than subscriptions is
/// asked for its status every `--poll` instead. `first` is told after the
/// first attempt.
async fn follow(ctx: Arc<Ctx>, service: ServiceName, first: tokio::sync::oneshot::Sender<()>) {
    let mut first = Some(first);
    let mut retry = FIRST_RETRY;
    let mut lost_at = Instant::now();
    let mut shown_silent = false;
    loop {
        let ended = subscribe(&ctx, &service, &mut first).await;
        if let Some(tx) = first.take() {
            let _ = tx.send(());
        }
        match ended {
            Ended::Unsupported => {
                tracing::debug!(%service, "the agent cannot push its state: polling it");
                return poll(&ctx, &service).await;
            }
            Ended::Lost { heard: true } => {
                retry = FIRST_RETRY;
                lost_at = Instant::now();
                shown_silent = false;
            }
            Ended::Lost { heard: false } => {}
        }
        if !shown_silent && lost_at.elapsed() >= GRACE {
            ctx.heard(&service, Observed::silent());
            shown_silent = true;
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(LAST_RETRY);
    }
}

/// One subscription to `service`'s agent, until it is lost.
async fn subscribe(
    ctx: &Ctx,
    service: &ServiceName,
    first: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Ended {
    let socket = state::socket(service);
    let opened = tokio::time::timeout(AGENT_PATIENCE, async {
        AgentClient::connect(&socket).await?.subscribe().await
    })
    .await;
    let (mut sub, update) = match opened {
        Ok(Ok(Some(s))) => s,
        Ok(Ok(None)) => return Ended::Unsupported,
        Ok(Err(e)) => {
            tracing::debug!(%service, error = %e, "cannot subscribe to the agent");
            return Ended::Lost { heard: false };
        }
        Err(_) => return Ended::Lost { heard: false },
    };
    let mut update = update;
    loop {
        ctx.heard(
            service,
            Observed {
                status: Some(update.status),
                counters: Some(update.counters),
            },
        );
        if let Some(tx) = first.take() {
            let _ = tx.send(());
        }
        update = match sub.next(SILENCE).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(%service, error = %e, "the agent's subscription ended");
                return Ended::Lost { heard: true };
            }
        };
    }
}

/// Asks an agent older than subscriptions for its state every `--poll`.
async fn poll(ctx: &Ctx, service: &ServiceName) {
    let mut tick = tokio::time::interval(ctx.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        ctx.heard(service, observe(service).await);
    }
}

/// Runs the operator's `--on-change` command: `sh -c CMD` (the command is
/// the operator's own text), with the service and addresses only in its
/// environment, never spliced into the command line (a service name comes
/// from whoever can run containers). Killed after [`HOOK_LIMIT`]; a failure
/// is logged, nothing waits for it.
pub async fn run_hook(cmd: String, c: Change) {
    let spawned = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .env(ENV_SERVICE, &c.service)
        .env(ENV_OLD, c.old.to_string())
        .env(ENV_NEW, c.new.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(service = %c.service, error = %e, "--on-change: cannot run sh");
            return;
        }
    };
    match tokio::time::timeout(HOOK_LIMIT, child.wait()).await {
        Ok(Ok(st)) if st.success() => {
            tracing::info!(service = %c.service, "--on-change command done");
        }
        Ok(Ok(st)) => {
            tracing::warn!(service = %c.service, status = %st, "--on-change command failed");
        }
        Ok(Err(e)) => {
            tracing::warn!(service = %c.service, error = %e, "--on-change command: waiting failed");
        }
        Err(_) => {
            let _ = child.kill().await;
            tracing::warn!(service = %c.service, limit = ?HOOK_LIMIT, "--on-change command killed: it took too long");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netcontainer_proto::{LeaseStatus, State};

    fn bound(addr: [u8; 4]) -> Observed {
        Observed {
            status: Some(Status {
                state: State::Bound,
                interface: Some("lan0".into()),
                hostname: None,
                lease: Some(LeaseStatus {
                    address: addr.into(),
                    prefix_len: 24,
                    gateway: None,
                    server_id: Ipv4Addr::new(203, 0, 113, 1),
                    lease_secs: Some(600),
                    renew_in_secs: Some(300),
                    rebind_in_secs: Some(525),
                    expires_in_secs: Some(600),
                    dns: vec![],
                }),
                forwards: vec![],
                last_error: None,
                agent_version: "0".into(),
                source: Default::default(),
                ipv6: Vec::new(),
                ipv6_path: Default::default(),
                mdns: None,
            }),
            counters: None,
        }
    }

    fn unbound() -> Observed {
        let mut o = bound([0; 4]);
        if let Some(s) = o.status.as_mut() {
            s.state = State::Selecting;
            s.lease = None;
        }
        o
    }

    fn poll(v: &[(&str, Observed)]) -> BTreeMap<String, Observed> {
        v.iter().map(|(k, o)| (k.to_string(), o.clone())).collect()
    }

    #[test]
    fn changes_are_old_to_new_across_a_gap_and_forgotten_with_the_router() {
        let mut a = Addresses::default();
        let x = [203, 0, 113, 57];
        let y = [203, 0, 113, 160];
        assert_eq!(a.update(&poll(&[("web1", bound(x))])), [], "first sight");
        assert_eq!(a.update(&poll(&[("web1", bound(x))])), []);
        // Lease lost, then another: one change, from the last address.
        assert_eq!(a.update(&poll(&[("web1", unbound())])), []);
        assert_eq!(
            a.update(&poll(&[("web1", bound(y))])),
            [Change {
                service: "web1".into(),
                old: x.into(),
                new: y.into()
            }]
        );
        // A router that is gone is forgotten: a new one is first sight.
        assert_eq!(a.update(&poll(&[])), []);
        assert_eq!(a.update(&poll(&[("web1", bound(x))])), []);
        // An agent that does not answer changes nothing.
        let silent = Observed {
            status: None,
            counters: None,
        };
        assert_eq!(a.update(&poll(&[("web1", silent)])), []);
    }

    /// The last change is the first sight, then a new address or an agent
    /// that stops answering; a renewal (state and seconds left) is none,
    /// and a router that is gone takes its time with it.
    #[test]
    fn last_change_is_first_sight_or_a_new_shape_and_goes_with_the_router() {
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let mut s = StatsInner::default();
        let x = [203, 0, 113, 57];
        s.take_poll(poll(&[("web1", bound(x))]), &[], t(10));
        assert_eq!(s.last_change["web1"], t(10), "first sight");
        assert_eq!(s.polled_at, Some(t(10)));
        let mut renewing = bound(x);
        if let Some(st) = renewing.status.as_mut() {
            st.state = State::Renewing;
            if let Some(l) = st.lease.as_mut() {
                l.expires_in_secs = Some(100);
            }
        }
        s.take_poll(poll(&[("web1", renewing)]), &[], t(20));
        assert_eq!(s.last_change["web1"], t(10), "a renewal is no change");
        let silent = Observed {
            status: None,
            counters: None,
        };
        s.take_poll(poll(&[("web1", silent)]), &[], t(30));
        assert_eq!(s.last_change["web1"], t(30), "the agent went silent");
        s.take_poll(
            poll(&[("web1", bound([203, 0, 113, 160])), ("db", unbound())]),
            &[],
            t(40),
        );
        assert_eq!(s.last_change["web1"], t(40));
        assert_eq!(s.last_change["db"], t(40));
        s.take_poll(poll(&[("db", unbound())]), &[], t(50));
        assert!(!s.last_change.contains_key("web1"), "gone with its router");
        assert_eq!(s.last_change["db"], t(40));
        // A change a poll reports counts whatever the shape says.
        let c = Change {
            service: "db".into(),
            old: x.into(),
            new: x.into(),
        };
        s.take_poll(poll(&[("db", unbound())]), &[c], t(60));
        assert_eq!(s.last_change["db"], t(60));
        assert_eq!(s.changes["db"], 1);
    }

    /// One router's report at a time: an address change is old to new,
    /// "moved" (the host routes' nudge) only when the lease appears, goes
    /// or moves, not on a renewal; a snapshot ages the seconds left by
    /// the time since the report; routers no longer listed are forgotten.
    #[test]
    fn reports_are_taken_one_router_at_a_time() {
        let st = Stats::default();
        let x = [203, 0, 113, 57];
        let y = [203, 0, 113, 160];
        assert_eq!(st.heard("web1", bound(x)), (None, true), "a lease appeared");
        assert_eq!(st.heard("db", unbound()), (None, false));
        let mut renewed = bound(x);
        if let Some(l) = renewed.status.as_mut().and_then(|s| s.lease.as_mut()) {
            l.expires_in_secs = Some(599);
        }
        assert_eq!(st.heard("web1", renewed), (None, false), "a renewal");
        let (change, moved) = st.heard("web1", bound(y));
        assert_eq!(
            change,
            Some(Change {
                service: "web1".into(),
                old: x.into(),
                new: y.into()
            })
        );
        assert!(moved);
        assert_eq!(st.heard("web1", Observed::silent()), (None, true));
        assert_eq!(st.snapshot().changes["web1"], 1);

        // Aged by the time since the report.
        st.heard("web1", bound(y));
        st.heard_at()
            .insert("web1".into(), Instant::now() - Duration::from_secs(100));
        let snap = st.snapshot();
        let l = snap.routers["web1"].status.as_ref().unwrap().lease.clone();
        assert_eq!(l.unwrap().expires_in_secs, Some(500));
        assert_eq!(snap.polled_at, None, "not listed yet: nothing is known");

        st.keep_only(&BTreeSet::from(["db".to_string()]), BTreeSet::new());
        let snap = st.snapshot();
        assert!(snap.polled_at.is_some());
        assert_eq!(snap.routers.keys().collect::<Vec<_>>(), ["db"]);
        assert!(!snap.changes.contains_key("web1"));
        // A router listed again later is first sight: no change from before.
        assert_eq!(st.heard("web1", bound(x)), (None, true));
    }

    /// The command gets the addresses in its environment only: a service
    /// name full of shell syntax is never run.
    #[tokio::test]
    async fn the_hook_sees_only_environment() {
        let dir = std::env::temp_dir().join(format!("nc-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("env");
        let cmd = format!(
            "printf '%s|%s|%s' \"${ENV_SERVICE}\" \"${ENV_OLD}\" \"${ENV_NEW}\" > {}",
            out.display()
        );
        let evil = "web1$(touch pwned);`touch pwned`".to_string();
        run_hook(
            cmd,
            Change {
                service: evil.clone(),
                old: Ipv4Addr::new(203, 0, 113, 57),
                new: Ipv4Addr::new(203, 0, 113, 160),
            },
        )
        .await;
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("{evil}|203.0.113.57|203.0.113.160")
        );
        assert!(!std::path::Path::new("pwned").exists());
        assert!(!dir.join("pwned").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
