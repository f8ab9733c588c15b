//! watch's outer loop: one session per connection to Docker, a backoff
//! between them, until SIGTERM or SIGINT. A session holds what lives as
//! long as the connection: the supervisor and its tasks, the who-am-I
//! listeners, the host route shims and the poll of the agents; the metrics
//! server outlives sessions.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use netcontainer_proto::LeaseStatus;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

use super::monitor::{self, Stats};
use super::notify::notify;
use super::settings::Settings;
use super::supervisor::Supervisor;
use super::{metrics, whoami};
use crate::error::Error;
use crate::router::Driver;

/// First wait after losing Docker.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Most time between two attempts to reach Docker.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often the host routes are brought in line with the leases when
/// nothing asked for it (the monitor asks whenever a lease appears, goes
/// or moves; this catches what changed on the host's side).
const HOST_ROUTES_EVERY: Duration = Duration::from_secs(60);
/// After a lease change, how long the host route sync waits for the
/// changes that come with it (routers started together) so one sync does.
const HOST_ROUTES_SETTLE: Duration = Duration::from_millis(200);

/// Runs watch with settings `a` until SIGTERM or SIGINT.
pub async fn run(a: Settings) -> Result<(), Error> {
    raise_fd_limit();
    let stats = Arc::new(Stats::default());
    let _metrics = match a.metrics {
        Some(addr) => {
            let listener = metrics::bind(addr).await?;
            tracing::info!(%addr, "serving the status page at / and metrics at /metrics");
            Some(AbortOnDrop(tokio::spawn(metrics::serve(
                listener,
                stats.clone(),
            ))))
        }
        None => None,
    };
    // Dynamic DNS follows the poll's view of the routers; it outlives the
    // sessions, so a router removed while Docker was away still has its
    // name deleted once the poll sees it gone.
    let _ddns = match &a.ddns {
        Some(t) => match t.client() {
            Ok(c) => {
                tracing::info!(server = %c.server, zone = %c.zone, "dynamic DNS updates on");
                Some(AbortOnDrop(tokio::spawn(keep_ddns(
                    crate::ddns::Publisher::new(c),
                    stats.clone(),
                    Duration::from_secs(a.poll),
                ))))
            }
            Err(e) => return Err(e),
        },
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
        let connected = Cell::new(false);
        tokio::select! {
            r = session(&a, &stats, &connected) => {
                // No retry can make this host one netcontainer works on.
                if let Err(e @ Error::Unsupported(_)) = r {
                    notify("STOPPING=1");
                    return Err(e);
                }
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

/// Raises the soft limit of open files to the hard one: the monitor holds a
/// connection to every router's agent, and 1024 (the usual soft limit) is
/// about 1,000 services.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, soft, hard, "cannot raise the open files limit");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "cannot read the open files limit"),
    }
}

/// One connection to Docker, until it is lost (the error says how);
/// `connected` is set once Docker answered. Dropped (SIGTERM), it takes
/// every task it started with it.
async fn session(a: &Settings, stats: &Arc<Stats>, connected: &Cell<bool>) -> Result<(), Error> {
    let driver = Arc::new(Driver::connect().await?);
    connected.set(true);
    // Before any router is looked at or made.
    crate::platform::refuse_unsupported(&driver.docker).await?;
    // Dropped with the session: every service task ends with it.
    // The who-am-I listeners and the host routes go with the session.
    let _whoami = (!a.no_whoami).then(|| {
        let host = whoami::host_address(a.host_address, a.parent.as_deref());
        AbortOnDrop(tokio::spawn(whoami::run(driver.docker.clone(), host)))
    });
    let routes_changed = Arc::new(Notify::new());
    let _shims = (!a.no_host_route).then(|| {
        AbortOnDrop(tokio::spawn(keep_host_routes(
            driver.clone(),
            stats.clone(),
            routes_changed.clone(),
        )))
    });
    let mut sup = Supervisor::new(driver.clone(), a.clone(), stats.clone());
    // A router started, died or removed: the monitor lists the routers at
    // once instead of at its next tick.
    let routers_changed = Arc::new(Notify::new());
    // Follows the agents for as long as the session lasts.
    let _poll = AbortOnDrop(tokio::spawn(monitor::run(
        driver.clone(),
        stats.clone(),
        a.on_change.clone(),
        Duration::from_secs(a.poll),
        routes_changed,
        routers_changed.clone(),
    )));
    tracing::info!("connected to Docker; reconciling");
    // Subscribe first, then reconcile: what happens in between is in the stream.
    let events = Box::pin(driver.docker.events().inspect(move |e| {
        if let Ok(e) = e
            && matches!(e.action.as_str(), "start" | "die" | "died" | "destroy")
            && e.labels.get(crate::labels::ROLE).map(String::as_str)
                == Some(crate::labels::ROLE_ROUTER)
        {
            routers_changed.notify_one();
        }
    }));
    sup.run(events, Duration::from_secs(a.resync.max(1))).await
}

/// Keeps the host route shims in step with the leases (see `shim`), as
/// the monitor last heard them from the agents: when it says a lease
/// changed, and every [`HOST_ROUTES_EVERY`].
async fn keep_host_routes(driver: Arc<Driver>, stats: Arc<Stats>, changed: Arc<Notify>) {
    let mut tick = tokio::time::interval(HOST_ROUTES_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = changed.notified() => tokio::time::sleep(HOST_ROUTES_SETTLE).await,
        }
        let s = stats.snapshot();
        // Before the agents were first heard, no lease is known: none
        // would be taken for "every lease is gone".
        if s.polled_at.is_none() {
            continue;
        }
        let leases: BTreeMap<String, LeaseStatus> = s
            .routers
            .into_iter()
            .filter_map(|(k, o)| Some((k, o.status?.lease?)))
            .collect();
        driver
            .sync_host_routes_with(crate::shim::Leases::Known(&leases))
            .await;
    }
}

/// Keeps the dynamic DNS names in line with the last poll of the routers
/// (see `crate::ddns::publish`); the failures are counted for the metrics.
async fn keep_ddns(mut p: crate::ddns::Publisher, stats: Arc<Stats>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = stats.snapshot();
        // Before the first poll nothing is known: an empty map is not
        // "every router is gone".
        if s.polled_at.is_none() {
            continue;
        }
        let routers: Vec<_> = s
            .routers
            .iter()
            .map(|(k, o)| (k.as_str(), o.status.as_ref()))
            .collect();
        let failed = p.sync(&routers, std::time::Instant::now()).await;
        stats.ddns_failed(&failed);
    }
}

/// A task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
