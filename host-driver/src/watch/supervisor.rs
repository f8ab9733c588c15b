//! `netcontainer watch`: keep every network container true to its service.
//!
//! A supervisor: the main loop follows Docker's container events and a
//! periodic resync, and routes each trigger to the task of the service
//! concerned (spawned on demand, ended when it has nothing left to do). A
//! full reconcile runs at start, after every reconnect (so an event lost
//! while the stream was down changes nothing) and every `--resync` seconds.
//!
//! Each service's task works on its service alone: it holds the service's
//! lock while it works, keeps its own backoff, and takes one of at most
//! [`CONCURRENCY`] permits for the work itself, so services are brought up
//! and healed side by side (a service stuck waiting for a lease delays no
//! other) without a storm of events overloading dockerd.
//!
//! What a task does is [`decide`]d from the router and the service:
//! - router, no service: the service was removed: take the router down
//!   (lease released);
//! - router and service: bring the router in line (`Driver::heal`): start it
//!   if stopped, re-plumb and re-send the plan after a router restart, send a
//!   new plan when the service's address changed, drop the forwards (keeping
//!   the lease) while the service is stopped, or with `--release-when-stopped`
//!   take the router down;
//! - no router, a running service labelled `netcontainer.enable=true`: `up`.
//!
//! Backoff: after a failure the service is tried again after 1 s, doubling
//! up to the resync period. No trigger starts an attempt before that
//! deadline: not the events of the service's own router (which watch's own
//! failed `up` creates and removes), not a service event, not the resync.
//! Only the removal of the service container is acted on at once (there is
//! nothing left to retry, only a router to take down).
//!
//! Only containers labelled `netcontainer.role=router` are ever touched as
//! routers, so watch never removes what it did not create.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::Args;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::commands::{default_image, require_root};
use crate::docker::{ContainerEvent, DockerError};
use crate::error::Error;
use crate::interrupt::never_interrupted;
use crate::labels;
use crate::labels::{ServiceLabels, warn_unknown_once};
use crate::leg::Kind;
use crate::lock::ServiceLock;
use crate::plan::PlanError;
use crate::plan::{self, UpOptions};
use crate::router::{Driver, Healed, UpRequest};
use crate::state::{self, ServiceName};
use crate::watch::metrics;
use crate::watch::monitor::{self, Stats};
use crate::watch::notify::notify;
use crate::watch::settings::{self as config, WatchConfig};

#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    /// Parent NIC for labelled services that do not name one (`netcontainer.parent`).
    #[arg(long)]
    parent: Option<String>,
    /// macvlan or ipvlan, for labelled services that do not say (`netcontainer.mode`)
    /// [default: macvlan].
    #[arg(long, value_enum)]
    mode: Option<Kind>,
    /// Router image for new routers [default: netcontainer/router:<this version>].
    #[arg(long)]
    image: Option<String>,
    /// Take a stopped service's router down (lease released) instead of only
    /// removing its forwards; it comes back when the service starts (labelled
    /// services only).
    #[arg(long)]
    release_when_stopped: bool,
    /// Do not serve the "who am I?" endpoint (docker-mirror's API, port
    /// 9001) on the Docker bridge networks' gateway addresses.
    #[arg(long)]
    no_whoami: bool,
    /// The host address the endpoint's /hostip gives containers without a
    /// network container; default: the parent's address, else that of the
    /// interface with the default route.
    #[arg(long, value_name = "ADDR")]
    host_address: Option<std::net::Ipv4Addr>,
    /// Keep no host routes to the leases (by default a macvlan shim on each
    /// parent with a /32 route per lease lets the host and its containers
    /// reach the services at their LAN addresses; see `up --no-host-route`).
    #[arg(long)]
    no_host_route: bool,
    /// Seconds a new router may take to get its lease [default: 30].
    #[arg(long)]
    timeout: Option<u64>,
    /// Seconds between full reconciles (events drive everything in between) [default: 60].
    #[arg(long)]
    resync: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics (off by default), e.g.
    /// 127.0.0.1:9311.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Run CMD (with `sh -c`) when a service's LAN address changes, with
    /// NETCONTAINER_SERVICE, NETCONTAINER_OLD_ADDRESS and
    /// NETCONTAINER_NEW_ADDRESS in its environment; killed after 30 s.
    #[arg(long, value_name = "CMD")]
    on_change: Option<String>,
    /// Configuration file with defaults for the flags above; flags win
    /// [default: $NETCONTAINER_CONFIG, else /etc/netcontainer/config.toml if present].
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Seconds between polls of the routers' agents (address changes, metrics).
    #[arg(long, default_value_t = 5, hide = true)]
    poll: u64,
}

/// Watch's settings: the flags, over the configuration file, over the
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub parent: Option<String>,
    pub mode: Option<Kind>,
    pub image: String,
    pub release_when_stopped: bool,
    pub timeout: u64,
    pub resync: u64,
    pub metrics: Option<SocketAddr>,
    pub on_change: Option<String>,
    pub poll: u64,
    pub no_whoami: bool,
    pub host_address: Option<std::net::Ipv4Addr>,
    pub no_host_route: bool,
}

impl Settings {
    pub fn resolve(a: WatchArgs, file: WatchConfig) -> Settings {
        Settings {
            parent: a.parent.or(file.parent),
            mode: a.mode.or(file.mode),
            image: a.image.or(file.image).unwrap_or_else(default_image),
            release_when_stopped: a.release_when_stopped
                || file.release_when_stopped.unwrap_or(false),
            timeout: a.timeout.or(file.timeout).unwrap_or(30),
            resync: a.resync.or(file.resync).unwrap_or(60),
            metrics: a.metrics.or(file.metrics),
            on_change: a
                .on_change
                .or(file.on_change)
                .filter(|c| !c.trim().is_empty()),
            poll: a.poll.max(1),
            no_whoami: a.no_whoami || file.no_whoami.unwrap_or(false),
            host_address: a.host_address.or(file.host_address),
            no_host_route: a.no_host_route || file.no_host_route.unwrap_or(false),
        }
    }
}

/// First wait after losing Docker.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Most time between two attempts to reach Docker.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Services worked on at the same time (up, heal, down): enough to bring
/// many up at once, few enough that a storm does not overload dockerd.
pub const CONCURRENCY: usize = 8;

/// How often the host routes are brought in line with the leases (a lease
/// can change without any Docker event).
const HOST_ROUTES_EVERY: Duration = Duration::from_secs(5);

/// Keeps the host route shims in step with the leases (see `shim`).
async fn keep_host_routes(driver: Arc<Driver>) {
    let mut tick = tokio::time::interval(HOST_ROUTES_EVERY);
    loop {
        tick.tick().await;
        driver.sync_host_routes().await;
    }
}

/// Aborts a task when dropped.
pub async fn run(a: WatchArgs) -> Result<(), Error> {
    // A bad file stops watch before anything is touched.
    let file = match config::load(a.config.as_deref())? {
        Some((path, c)) => {
            tracing::info!(path = %path.display(), "configuration file read");
            c
        }
        None => WatchConfig::default(),
    };
    let a = Settings::resolve(a, file);
    require_root()?;
    let stats = Arc::new(Stats::default());
    let _metrics = match a.metrics {
        Some(addr) => {
            let listener = metrics::bind(addr).await?;
            tracing::info!(%addr, "serving metrics at /metrics");
            Some(AbortOnDrop(tokio::spawn(metrics::serve(
                listener,
                stats.clone(),
            ))))
        }
        None => None,
    };
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| Error::Usage(format!("signals: {e}")))?;
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(|e| Error::Usage(format!("signals: {e}")))?;
    // Ready at once: systemd must never wait on Docker through us (and Docker
    // must never wait on us). Progress goes to STATUS=.
    notify("READY=1\nSTATUS=connecting to Docker");
    let mut backoff = FIRST_BACKOFF;
    loop {
        let connected = std::cell::Cell::new(false);
        let session = async {
            let driver = Arc::new(Driver::connect().await?);
            connected.set(true);
            // Dropped with the session: every service task ends with it.
            // The who-am-I listeners and the host routes go with the session.
            let _whoami = (!a.no_whoami).then(|| {
                let host = crate::watch::whoami::host_address(a.host_address, a.parent.as_deref());
                AbortOnDrop(tokio::spawn(crate::watch::whoami::run(
                    driver.docker.clone(),
                    host,
                )))
            });
            let _shims = (!a.no_host_route)
                .then(|| AbortOnDrop(tokio::spawn(keep_host_routes(driver.clone()))));
            let mut sup = Supervisor::new(driver.clone(), a.clone(), stats.clone());
            // Polls the agents for as long as the session lasts.
            let _poll = AbortOnDrop(tokio::spawn(monitor::run(
                driver,
                stats.clone(),
                a.on_change.clone(),
                Duration::from_secs(a.poll),
            )));
            tracing::info!("connected to Docker; reconciling");
            // Subscribe first, then reconcile: what happens in between is in the stream.
            let mut events = Box::pin(sup.ctx.driver.docker.events());
            sup.reconcile_all().await;
            let mut resync = tokio::time::interval(Duration::from_secs(a.resync.max(1)));
            resync.tick().await;
            loop {
                tokio::select! {
                    ev = events.next() => match ev {
                        Some(Ok(ev)) => sup.on_event(ev),
                        Some(Err(e)) => return Err::<(), Error>(e.into()),
                        None => return Err(DockerError::Unreachable("the event stream ended".into()).into()),
                    },
                    _ = resync.tick() => sup.reconcile_all().await,
                    Some(msg) = sup.from_tasks.recv() => sup.on_task_msg(msg),
                    Some((services, complete)) = sup.rounds.next() => {
                        if complete {
                            remove_stale_dirs(&services);
                        }
                        notify("STATUS=watching");
                    }
                    Some(res) = sup.tasks.join_next() => {
                        if let Err(e) = res
                            && e.is_panic()
                        {
                            tracing::error!("a service task panicked: {e}");
                        }
                    }
                }
            }
        };
        tokio::select! {
            r = session => {
                // A session that got as far as Docker starts the waits short again.
                if connected.get() {
                    backoff = FIRST_BACKOFF;
                }
                let e = r.err().map(|e| e.to_string()).unwrap_or_default();
                tracing::warn!(error = %e, retry_in = ?backoff, "lost Docker; retrying");
                notify(&format!("STATUS=waiting for Docker: {e}"));
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    notify("STOPPING=1");
    tracing::info!("watch stopped; routers keep running");
    Ok(())
}

/// A task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Retry of a reconcile while `up`/`down` holds the service.
const BUSY_RETRY: Duration = Duration::from_millis(250);
/// First retry of a failed reconcile; doubles up to the resync period.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Why a service's task should look at its service again.
#[derive(Debug)]
enum Trigger {
    /// An event of the service container (start, die).
    Service,
    /// The service container was removed: acted on even during a backoff.
    ServiceGone,
    /// An event of the service's router: during a backoff these are the
    /// echoes of watch's own attempts, and never cut it short.
    Router,
    /// The service's router started (received at that instant). One that
    /// came while the task was working on the service is the echo of its own
    /// `up` or start, and asks for nothing.
    RouterStarted(Instant),
    /// The full reconcile; answered once the task has looked (or, during a
    /// backoff, at once: the retry is already scheduled).
    Resync(oneshot::Sender<()>),
}

/// From a task to the supervisor.
enum TaskMsg {
    /// The task has nothing to do and no retry pending after `seen` triggers:
    /// the supervisor ends it if it has sent no more since.
    Idle { service: ServiceName, seen: u64 },
}

/// What every task shares.
struct Ctx {
    driver: Arc<Driver>,
    args: Settings,
    permits: Semaphore,
    stats: Arc<Stats>,
}

struct Inbox {
    tx: mpsc::UnboundedSender<Trigger>,
    sent: u64,
}

type Round = std::pin::Pin<Box<dyn Future<Output = (BTreeSet<ServiceName>, bool)> + Send>>;

struct Supervisor {
    ctx: Arc<Ctx>,
    inboxes: HashMap<ServiceName, Inbox>,
    tasks: JoinSet<()>,
    to_main: mpsc::UnboundedSender<TaskMsg>,
    from_tasks: mpsc::UnboundedReceiver<TaskMsg>,
    /// Full reconciles under way: each yields its services and whether both
    /// listings were complete, once every task concerned has looked.
    rounds: FuturesUnordered<Round>,
}

impl Supervisor {
    fn new(driver: Arc<Driver>, args: Settings, stats: Arc<Stats>) -> Self {
        let (to_main, from_tasks) = mpsc::unbounded_channel();
        Supervisor {
            ctx: Arc::new(Ctx {
                driver,
                args,
                permits: Semaphore::new(CONCURRENCY),
                stats,
            }),
            inboxes: HashMap::new(),
            tasks: JoinSet::new(),
            to_main,
            from_tasks,
            rounds: FuturesUnordered::new(),
        }
    }

    /// Hands `t` to the service's task, starting one if it has none.
    fn send(&mut self, service: &ServiceName, t: Trigger) {
        let inbox = self.inboxes.entry(service.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            self.tasks.spawn(service_task(
                service.clone(),
                rx,
                self.ctx.clone(),
                self.to_main.clone(),
            ));
            Inbox { tx, sent: 0 }
        });
        inbox.sent += 1;
        if let Err(mpsc::error::SendError(t)) = inbox.tx.send(t) {
            // The task ended (it panicked): start another.
            self.inboxes.remove(service);
            self.send(service, t);
        }
    }

    fn on_task_msg(&mut self, msg: TaskMsg) {
        match msg {
            TaskMsg::Idle { service, seen } => {
                // Nothing sent since it went idle: dropping the sender ends it.
                if self.inboxes.get(&service).is_some_and(|i| i.sent == seen) {
                    self.inboxes.remove(&service);
                }
            }
        }
    }

    fn on_event(&mut self, ev: ContainerEvent) {
        let is_router =
            ev.labels.get(labels::ROLE).map(String::as_str) == Some(labels::ROLE_ROUTER);
        let service = if is_router {
            ev.labels.get(labels::SERVICE).cloned()
        } else {
            Some(ev.name.clone())
        };
        let Some(service) = service.filter(|s| !s.is_empty()) else {
            return;
        };
        // Event attributes carry the image's labels too: only a trigger to
        // look again, and only for a valid name.
        let service = match ServiceName::parse(&service) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(container = %ev.name, "ignoring an event: {e}");
                return;
            }
        };
        tracing::debug!(action = %ev.action, container = %ev.name, %service, "event");
        let t = match (is_router, ev.action.as_str()) {
            (true, "start") => Trigger::RouterStarted(Instant::now()),
            (true, _) => Trigger::Router,
            (false, "destroy") => Trigger::ServiceGone,
            (false, _) => Trigger::Service,
        };
        self.send(&service, t);
    }

    /// Lists routers and labelled services and asks every task concerned to
    /// look; the round completes (STATUS=watching, sweep) when all have.
    async fn reconcile_all(&mut self) {
        let mut services = BTreeSet::new();
        // The sweep deletes what no router claims: it runs only when both
        // listings are known complete. A failed listing (dockerd restarting,
        // an API error) proves nothing stale.
        let mut complete = true;
        match self.ctx.driver.docker.routers().await {
            Ok(rs) => services.extend(rs.into_iter().map(|r| r.service)),
            Err(e) => {
                complete = false;
                tracing::warn!(error = %e, "listing routers failed; no clean-up this round");
            }
        }
        match self
            .ctx
            .driver
            .docker
            .names_with_label(labels::ENABLE)
            .await
        {
            Ok(names) => services.extend(names),
            Err(e) => {
                complete = false;
                tracing::warn!(error = %e, "listing labelled services failed; no clean-up this round");
            }
        }
        let mut acks = Vec::with_capacity(services.len());
        for s in &services {
            let (tx, rx) = oneshot::channel();
            self.send(s, Trigger::Resync(tx));
            acks.push(rx);
        }
        self.rounds.push(Box::pin(async move {
            // A task that ended without answering has nothing more to say.
            for rx in acks {
                let _ = rx.await;
            }
            (services, complete)
        }));
    }
}

/// Host directories with no router (in the run directory and the lib
/// directory): left by a crash between creating the directory and the
/// container. Only old ones, so a concurrent `up` is never disturbed; only
/// directories named like a service (never a link).
fn remove_stale_dirs(services: &BTreeSet<ServiceName>) {
    for root in [state::run_dir(), state::lib_dir()] {
        remove_stale_dirs_in(&root, services);
    }
}

fn remove_stale_dirs_in(root: &std::path::Path, services: &BTreeSet<ServiceName>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(name) = ServiceName::parse(&e.file_name().to_string_lossy()) else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > Duration::from_secs(120));
        if !(meta.is_dir() && !services.contains(&name) && old) {
            continue;
        }
        // A command working on the service may be reusing the directory
        // right now (the listing above is older than this moment): skip it.
        let Ok(Some(_lock)) = ServiceLock::try_take(&name) else {
            continue;
        };
        {
            tracing::info!(dir = %e.path().display(), "removing a router directory with no router");
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                tracing::warn!(dir = %e.path().display(), error = %err, "cannot remove");
            }
        }
    }
}

/// A scheduled retry: when, and the delay that led to it (doubled on the
/// next failure).
#[derive(Clone, Copy, Debug)]
struct Retry {
    at: Instant,
    delay: Duration,
}

/// One service's task: waits for triggers, works on the service when one
/// asks for it and no backoff holds it back, schedules its own retries.
async fn service_task(
    service: ServiceName,
    mut inbox: mpsc::UnboundedReceiver<Trigger>,
    ctx: Arc<Ctx>,
    to_main: mpsc::UnboundedSender<TaskMsg>,
) {
    let mut seen: u64 = 0;
    let mut idle_reported: Option<u64> = None;
    let mut retry: Option<Retry> = None;
    // A trigger asked for a look that has not happened yet.
    let mut wanted = false;
    let mut urgent = false;
    let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
    // When the last attempt ran (from its permit to its end).
    let mut worked: Option<(Instant, Instant)> = None;
    let absorb = |t: Trigger,
                  worked: Option<(Instant, Instant)>,
                  wanted: &mut bool,
                  urgent: &mut bool,
                  acks: &mut Vec<oneshot::Sender<()>>| {
        if !asks(&t, worked) {
            return;
        }
        *wanted = true;
        match t {
            Trigger::ServiceGone => *urgent = true,
            Trigger::Resync(ack) => acks.push(ack),
            Trigger::Service | Trigger::Router | Trigger::RouterStarted(_) => {}
        }
    };
    loop {
        while let Ok(t) = inbox.try_recv() {
            seen += 1;
            absorb(t, worked, &mut wanted, &mut urgent, &mut acks);
        }
        if !should_run(retry, wanted, urgent, Instant::now()) {
            // Held back by the backoff: the resync need not wait for it.
            for a in acks.drain(..) {
                let _ = a.send(());
            }
            if retry.is_none() && idle_reported != Some(seen) {
                idle_reported = Some(seen);
                let _ = to_main.send(TaskMsg::Idle {
                    service: service.clone(),
                    seen,
                });
            }
            tokio::select! {
                t = inbox.recv() => match t {
                    Some(t) => {
                        seen += 1;
                        absorb(t, worked, &mut wanted, &mut urgent, &mut acks);
                    }
                    // The supervisor let go (idle, or the session ended).
                    None => return,
                },
                _ = sleep_until(retry.map(|r| r.at)) => {}
            }
            continue;
        }
        wanted = false;
        urgent = false;
        let answered = std::mem::take(&mut acks);
        retry = {
            let _permit = ctx.permits.acquire().await;
            let from = Instant::now();
            let r = reconcile(&ctx, &service, retry).await;
            worked = Some((from, Instant::now()));
            r
        };
        for a in answered {
            let _ = a.send(());
        }
    }
}

/// Does trigger `t` ask for a look? Not the start of the router that came
/// while the task was working on it (`worked`): that is its own doing.
fn asks(t: &Trigger, worked: Option<(Instant, Instant)>) -> bool {
    match t {
        Trigger::RouterStarted(at) => !worked.is_some_and(|(a, b)| a <= *at && *at <= b),
        _ => true,
    }
}

/// The backoff rule: with no retry pending, work when a trigger asked for
/// it; with one pending, only once it is due (whatever asked meanwhile), or
/// at once when the service container is gone.
fn should_run(retry: Option<Retry>, wanted: bool, urgent: bool, now: Instant) -> bool {
    match retry {
        None => wanted,
        Some(r) => r.at <= now || urgent,
    }
}

/// One look at `service`; the retry to schedule, if any.
async fn reconcile(ctx: &Ctx, service: &ServiceName, last: Option<Retry>) -> Option<Retry> {
    let started = Instant::now();
    match try_reconcile(ctx, service).await {
        Ok(what) => {
            if let Some(what) = what {
                tracing::info!(%service, took = ?started.elapsed(), "{what}");
            }
            None
        }
        Err(Error::Busy(_)) => {
            // `up` or `down` is on it: look again shortly, quietly.
            tracing::debug!(%service, "busy: another command holds the service");
            Some(Retry {
                at: Instant::now() + BUSY_RETRY,
                delay: FIRST_RETRY / 2,
            })
        }
        Err(e) => {
            let max = Duration::from_secs(ctx.args.resync.max(1));
            let delay = last.map(|r| (r.delay * 2).min(max)).unwrap_or(FIRST_RETRY);
            let hint = e.hint().map(|h| format!(" ({h})")).unwrap_or_default();
            tracing::warn!(%service, retry_in = ?delay, "cannot reconcile: {e}{hint}");
            // Counted from the end of the attempt: a slow failure (a lease
            // that never comes) is not retried at once.
            Some(Retry {
                at: Instant::now() + delay,
                delay,
            })
        }
    }
}

/// What a router looks like to [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouterView;

/// What a service looks like to [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceView {
    pub running: bool,
    /// Labelled `netcontainer.enable=true`.
    pub enabled: bool,
    /// A Swarm task's container (`com.docker.swarm.*` labels).
    pub swarm_task: bool,
}

/// The options of `watch` that [`decide`] depends on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecideOptions {
    pub release_when_stopped: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Create a router for the service.
    Up,
    /// Bring the router in line with its service.
    Heal,
    /// The service is gone: take its router down.
    DownGone,
    /// The service stopped and `--release-when-stopped`: take its router down.
    DownStopped,
    /// A Swarm task's container stopped: it never runs again (a new task gets
    /// a new container, maybe on another node, with the same identity), so its
    /// router goes at once and the lease is released for the new one.
    DownSwarmTask,
}

/// What to do about one service, from its router and its container.
pub fn decide(
    router: Option<RouterView>,
    service: Option<ServiceView>,
    opts: DecideOptions,
) -> Action {
    match (router, service) {
        (Some(_), None) => Action::DownGone,
        (Some(_), Some(s)) if !s.running && s.swarm_task => Action::DownSwarmTask,
        (Some(_), Some(s)) if !s.running && opts.release_when_stopped && s.enabled => {
            Action::DownStopped
        }
        (Some(_), Some(_)) => Action::Heal,
        (None, Some(s)) if s.running && s.enabled => Action::Up,
        (None, _) => Action::Nothing,
    }
}

async fn try_reconcile(ctx: &Ctx, service: &ServiceName) -> Result<Option<String>, Error> {
    // A command working on this service right now: retry once it is done
    // (never block the other services behind it).
    let Some(_lock) = ServiceLock::try_take(service)? else {
        return Err(Error::Busy(service.to_string()));
    };
    let d = &ctx.driver;
    let args = &ctx.args;
    let router = d.docker.router(service).await?;
    let svc = match d.docker.service(service.as_str()).await {
        // Docker falls back to an ID prefix when no container has the
        // name: a removed service's name is not some other container.
        Ok(s) if s.name == service.as_str() => Some(s),
        Ok(_) => None,
        Err(DockerError::NoSuchContainer(_)) => None,
        // Several containers' IDs begin with the name, and none has it.
        Err(e) if e.is_ambiguous() => None,
        Err(e) => return Err(e.into()),
    };
    // The service's labels, read once; a label that cannot be read is an
    // error of this service (named in the log), not a reason to guess.
    let labelled = match &svc {
        Some(s) => {
            let l =
                ServiceLabels::parse(&s.labels).map_err(|e| PlanError::Invalid(e.on(&s.name)))?;
            warn_unknown_once(service, &l.unknown);
            Some(l)
        }
        None => None,
    };
    let action = decide(
        router.as_ref().map(|_| RouterView),
        svc.as_ref()
            .zip(labelled.as_ref())
            .map(|(s, l)| ServiceView {
                running: s.running,
                enabled: l.enable,
                swarm_task: plan::is_swarm_task(s),
            }),
        DecideOptions {
            release_when_stopped: args.release_when_stopped,
        },
    );
    match (action, router, svc) {
        (Action::DownGone, Some(r), _) => {
            d.down(&r, 10).await?;
            Ok(Some(format!(
                "service gone: {} removed, lease released",
                r.name
            )))
        }
        (Action::DownStopped, Some(r), _) => {
            d.down(&r, 10).await?;
            Ok(Some(format!(
                "service stopped: {} removed, lease released",
                r.name
            )))
        }
        (Action::DownSwarmTask, Some(r), _) => {
            d.down(&r, 10).await?;
            Ok(Some(format!(
                "swarm task stopped: {} removed, lease released",
                r.name
            )))
        }
        (Action::Heal, Some(r), Some(s)) => {
            let healed = d.heal(&r, &s).await?;
            if healed != Healed::Nothing {
                ctx.stats.healed(service);
            }
            Ok(match healed {
                Healed::Nothing => None,
                Healed::Started => Some("router started".into()),
                Healed::Replumbed => {
                    Some("router restarted: LAN leg re-plumbed, plan re-sent".into())
                }
                Healed::PlanSent => Some(if s.running {
                    "forwards updated to the service's address".into()
                } else {
                    "service stopped: forwards removed, lease kept".into()
                }),
                Healed::Routed => {
                    Some("service's default route pointed at its router again".into())
                }
            })
        }
        (Action::Up, None, Some(s)) => {
            let labelled = labelled.unwrap_or_default();
            let opts = UpOptions {
                // `--parent` and `--mode` are the defaults of labels that are
                // not there; mac, hostname, ports and the address asked for
                // are read from the labels by `derive`.
                parent: labelled.parent.or_else(|| args.parent.clone()),
                mode: labelled.mode.or(args.mode),
                ..Default::default()
            };
            let req = UpRequest {
                service: &s,
                options: &opts,
                image: &args.image,
                timeout: Duration::from_secs(args.timeout),
                progress: false,
            };
            let (rp, status) = d.up(&req, never_interrupted()).await?;
            let got = status.lease.map(|l| l.address);
            if let (Some(asked), Some(got)) = (rp.requested, got)
                && asked != got
            {
                tracing::warn!(%service, %asked, %got, "the DHCP server gave another address than the label netcontainer.ip asks for (taken, or outside its pool)");
            }
            let addr = got.map(|a| a.to_string()).unwrap_or_default();
            Ok(Some(format!(
                "router created: {addr} {}",
                crate::ports::ports_text(&rp.ports)
            )))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Option<RouterView> = Some(RouterView);

    fn args(a: &[&str]) -> WatchArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: WatchArgs,
        }
        let mut v = vec!["watch"];
        v.extend_from_slice(a);
        <Cli as clap::Parser>::parse_from(v).a
    }

    #[test]
    fn flags_beat_the_file_which_beats_the_defaults() {
        let file = config::parse(
            "parent = \"eth1\"\nmode = \"ipvlan\"\ntimeout = 45\nresync = 120\n\
             metrics = \"127.0.0.1:9311\"\non-change = \"true\"\nrelease-when-stopped = true\n",
        )
        .unwrap();
        let s = Settings::resolve(args(&[]), file.clone());
        assert_eq!(
            s,
            Settings {
                parent: Some("eth1".into()),
                mode: Some(crate::leg::IPVLAN),
                image: default_image(),
                release_when_stopped: true,
                timeout: 45,
                resync: 120,
                metrics: Some("127.0.0.1:9311".parse().unwrap()),
                on_change: Some("true".into()),
                poll: 5,
                no_whoami: false,
                host_address: None,
                no_host_route: false,
            }
        );
        let s = Settings::resolve(
            args(&[
                "--parent",
                "eth0",
                "--mode",
                "macvlan",
                "--timeout",
                "5",
                "--metrics",
                "127.0.0.1:9400",
                "--image",
                "r:1",
            ]),
            file,
        );
        assert_eq!(s.parent.as_deref(), Some("eth0"));
        assert_eq!(s.mode, Some(crate::leg::MACVLAN));
        assert_eq!((s.timeout, s.resync), (5, 120));
        assert_eq!(s.metrics, Some("127.0.0.1:9400".parse().unwrap()));
        assert_eq!(s.image, "r:1");
        // No file: the defaults; no metrics, no command.
        let d = Settings::resolve(args(&[]), WatchConfig::default());
        assert_eq!((d.timeout, d.resync, d.poll), (30, 60, 5));
        assert_eq!((d.metrics, d.on_change, d.mode), (None, None, None));
        assert!(!d.release_when_stopped);
    }
    const KEEP: DecideOptions = DecideOptions {
        release_when_stopped: false,
    };
    const RELEASE: DecideOptions = DecideOptions {
        release_when_stopped: true,
    };

    #[test]
    fn no_trigger_cuts_a_backoff_short_but_the_service_gone() {
        let now = Instant::now();
        let pending = Some(Retry {
            at: now + Duration::from_secs(4),
            delay: Duration::from_secs(4),
        });
        // Router events, service events, resyncs: all only set `wanted`.
        assert!(!should_run(pending, true, false, now));
        assert!(!should_run(pending, false, false, now));
        assert!(should_run(pending, true, true, now), "service removed");
        // Due: one attempt, whether or not anything asked meanwhile.
        let later = now + Duration::from_secs(4);
        assert!(should_run(pending, false, false, later));
        assert!(should_run(pending, true, false, later));
        // No backoff: work when asked, only then.
        assert!(should_run(None, true, false, now));
        assert!(!should_run(None, false, false, now));
    }

    #[test]
    fn its_own_router_start_asks_for_nothing() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let window = Some((t0, t1));
        let during = Trigger::RouterStarted(t0 + Duration::from_millis(300));
        let after = Trigger::RouterStarted(t1 + Duration::from_millis(1));
        assert!(!asks(&during, window));
        assert!(asks(&after, window), "a restart after the work is news");
        assert!(asks(&during, None));
        // Other events always ask (a router that died meanwhile must be healed).
        assert!(asks(&Trigger::Router, window));
        assert!(asks(&Trigger::Service, window));
        assert!(asks(&Trigger::ServiceGone, window));
    }

    fn svc(running: bool, enabled: bool) -> Option<ServiceView> {
        Some(ServiceView {
            running,
            enabled,
            swarm_task: false,
        })
    }

    #[test]
    fn nothing_without_router_or_service() {
        assert_eq!(decide(None, None, KEEP), Action::Nothing);
        assert_eq!(decide(None, None, RELEASE), Action::Nothing);
    }

    #[test]
    fn a_running_labelled_service_without_router_gets_one() {
        assert_eq!(decide(None, svc(true, true), KEEP), Action::Up);
        assert_eq!(decide(None, svc(true, true), RELEASE), Action::Up);
    }

    #[test]
    fn an_unlabelled_or_stopped_service_without_router_gets_none() {
        assert_eq!(decide(None, svc(true, false), KEEP), Action::Nothing);
        assert_eq!(decide(None, svc(false, true), KEEP), Action::Nothing);
        assert_eq!(decide(None, svc(false, true), RELEASE), Action::Nothing);
        assert_eq!(decide(None, svc(false, false), RELEASE), Action::Nothing);
    }

    #[test]
    fn a_router_whose_service_is_gone_goes_down() {
        assert_eq!(decide(R, None, KEEP), Action::DownGone);
        assert_eq!(decide(R, None, RELEASE), Action::DownGone);
    }

    #[test]
    fn a_router_of_a_running_service_is_healed() {
        assert_eq!(decide(R, svc(true, true), KEEP), Action::Heal);
        assert_eq!(decide(R, svc(true, true), RELEASE), Action::Heal);
        // Made by `up` for an unlabelled service: kept in line, never removed.
        assert_eq!(decide(R, svc(true, false), KEEP), Action::Heal);
        assert_eq!(decide(R, svc(true, false), RELEASE), Action::Heal);
    }

    #[test]
    fn a_stopped_service_keeps_its_router_unless_released() {
        assert_eq!(decide(R, svc(false, true), KEEP), Action::Heal);
        assert_eq!(decide(R, svc(false, true), RELEASE), Action::DownStopped);
        // --release-when-stopped applies to labelled services only.
        assert_eq!(decide(R, svc(false, false), RELEASE), Action::Heal);
    }

    #[test]
    fn a_stopped_swarm_task_releases_at_once() {
        let task = |running| {
            Some(ServiceView {
                running,
                enabled: true,
                swarm_task: true,
            })
        };
        assert_eq!(decide(R, task(false), KEEP), Action::DownSwarmTask);
        assert_eq!(decide(R, task(false), RELEASE), Action::DownSwarmTask);
        assert_eq!(decide(R, task(true), KEEP), Action::Heal);
        assert_eq!(decide(None, task(true), KEEP), Action::Up);
    }
}
