//! `netcontainer watch`: keep every network container true to its service.
//!
//! Follows Docker's container events and, on each, reconciles the service
//! concerned; a full reconcile runs at start, after every reconnect (so an
//! event lost while the stream was down changes nothing) and periodically.
//!
//! Reconciling one service:
//! - router, no service: the service was removed: take the router down
//!   (lease released);
//! - router and service: bring the router in line (`Driver::heal`): start it
//!   if stopped, re-plumb and re-send the plan after a router restart, send a
//!   new plan when the service's address changed, drop the forwards (keeping
//!   the lease) while the service is stopped, or with `--release-when-stopped`
//!   take the router down;
//! - no router, a running service labelled `netcontainer.enable=true`: `up`.
//!
//! Only containers labelled `netcontainer.role=router` are ever touched as
//! routers, so watch never removes what it did not create.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

use clap::Args;
use futures::StreamExt;
use tokio::signal::unix::{SignalKind, signal};

use crate::commands::{default_image, require_root};
use crate::docker::{ContainerEvent, DockerError};
use crate::error::Error;
use crate::lock::ServiceLock;
use crate::notify::notify;
use crate::plan::{self, UpOptions, labels};
use crate::router::{Driver, Healed, never_interrupted, wants_router};
use crate::state::{self, ServiceName};

#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    /// Parent NIC for labelled services that do not name one (`netcontainer.parent`).
    #[arg(long)]
    parent: Option<String>,
    /// Router image for new routers.
    #[arg(long, default_value_t = default_image())]
    image: String,
    /// Take a stopped service's router down (lease released) instead of only
    /// removing its forwards; it comes back when the service starts (labelled
    /// services only).
    #[arg(long)]
    release_when_stopped: bool,
    /// Seconds a new router may take to get its lease.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Seconds between full reconciles (events drive everything in between).
    #[arg(long, default_value_t = 60)]
    resync: u64,
}

/// First wait after losing Docker.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Most time between two attempts to reach Docker.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub async fn run(a: WatchArgs) -> Result<(), Error> {
    require_root()?;
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
            let driver = Driver::connect().await?;
            connected.set(true);
            let mut w = Watcher {
                driver,
                args: a.clone(),
                retries: HashMap::new(),
            };
            tracing::info!("connected to Docker; reconciling");
            // Subscribe first, then reconcile: what happens in between is in the stream.
            let mut events = Box::pin(w.driver.docker.events());
            w.reconcile_all().await;
            notify("STATUS=watching");
            let mut resync = tokio::time::interval(Duration::from_secs(a.resync.max(1)));
            resync.tick().await;
            loop {
                let next_retry = w.retries.values().map(|(at, _)| *at).min();
                tokio::select! {
                    ev = events.next() => match ev {
                        Some(Ok(ev)) => w.on_event(ev).await,
                        Some(Err(e)) => return Err::<(), Error>(e.into()),
                        None => return Err(DockerError::Unreachable("the event stream ended".into()).into()),
                    },
                    _ = resync.tick() => w.reconcile_all().await,
                    _ = sleep_until(next_retry) => w.run_retries().await,
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

struct Watcher {
    driver: Driver,
    args: WatchArgs,
    /// Services whose last reconcile failed: when to retry, and the delay used.
    retries: HashMap<ServiceName, (Instant, Duration)>,
}

impl Watcher {
    async fn run_retries(&mut self) {
        let now = Instant::now();
        let due: Vec<ServiceName> = self
            .retries
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(s, _)| s.clone())
            .collect();
        for s in due {
            self.reconcile(&s).await;
        }
    }

    async fn on_event(&mut self, ev: ContainerEvent) {
        let service =
            if ev.labels.get(labels::ROLE).map(String::as_str) == Some(labels::ROLE_ROUTER) {
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
        self.reconcile(&service).await;
    }

    async fn reconcile_all(&mut self) {
        let mut services = BTreeSet::new();
        // The sweep below deletes what no router claims: it runs only when
        // both listings are known complete. A failed listing (dockerd
        // restarting, an API error) proves nothing stale.
        let mut complete = true;
        match self.driver.docker.routers().await {
            Ok(rs) => services.extend(rs.into_iter().map(|r| r.service)),
            Err(e) => {
                complete = false;
                tracing::warn!(error = %e, "listing routers failed; no clean-up this round");
            }
        }
        match self.driver.docker.names_with_label(labels::ENABLE).await {
            Ok(names) => services.extend(names),
            Err(e) => {
                complete = false;
                tracing::warn!(error = %e, "listing labelled services failed; no clean-up this round");
            }
        }
        for s in &services {
            self.reconcile(s).await;
        }
        if complete {
            self.remove_stale_dirs(&services);
        }
    }

    /// Host directories with no router: left by a crash between creating the
    /// directory and the container. Only old ones, so a concurrent `up` is
    /// never disturbed; only directories named like a service (never a link).
    fn remove_stale_dirs(&self, services: &BTreeSet<ServiceName>) {
        let Ok(entries) = std::fs::read_dir(state::run_dir()) else {
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
            if meta.is_dir() && !services.contains(&name) && old {
                tracing::info!(dir = %e.path().display(), "removing a router directory with no router");
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    tracing::warn!(dir = %e.path().display(), error = %err, "cannot remove");
                }
            }
        }
    }

    async fn reconcile(&mut self, service: &ServiceName) {
        let started = Instant::now();
        match self.try_reconcile(service).await {
            Ok(what) => {
                self.retries.remove(service);
                if let Some(what) = what {
                    tracing::info!(%service, took = ?started.elapsed(), "{what}");
                }
            }
            Err(Error::Busy(_)) => {
                // `up` or `down` is on it: look again shortly, quietly.
                tracing::debug!(%service, "busy: another command holds the service");
                self.retries.insert(
                    service.clone(),
                    (Instant::now() + BUSY_RETRY, FIRST_RETRY / 2),
                );
            }
            Err(e) => {
                let max = Duration::from_secs(self.args.resync.max(1));
                let delay = self
                    .retries
                    .get(service)
                    .map(|(_, d)| (*d * 2).min(max))
                    .unwrap_or(FIRST_RETRY);
                self.retries
                    .insert(service.clone(), (Instant::now() + delay, delay));
                let hint = e.hint().map(|h| format!(" ({h})")).unwrap_or_default();
                tracing::warn!(%service, retry_in = ?delay, "cannot reconcile: {e}{hint}");
            }
        }
    }

    async fn try_reconcile(&self, service: &ServiceName) -> Result<Option<String>, Error> {
        // A command working on this service right now: retry once it is done
        // (never block the other services behind it).
        let Some(_lock) = ServiceLock::try_take(service)? else {
            return Err(Error::Busy(service.to_string()));
        };
        let d = &self.driver;
        let router = d.docker.router(service).await?;
        let svc = match d.docker.service(service.as_str()).await {
            // Docker falls back to an ID prefix when no container has the
            // name: a removed service's name is not some other container.
            Ok(s) if s.name == service.as_str() => Some(s),
            Ok(_) => None,
            Err(DockerError::NoSuchContainer(_)) => None,
            Err(e) => return Err(e.into()),
        };
        match (router, svc) {
            (Some(r), None) => {
                d.down(&r, 10).await?;
                Ok(Some(format!(
                    "service gone: {} removed, lease released",
                    r.name
                )))
            }
            // A Swarm task's container never runs again once stopped (a new
            // task gets a new container, maybe on another node, with the same
            // identity): release at once so the new one gets the address.
            (Some(r), Some(s)) if !s.running && plan::is_swarm_task(&s) => {
                d.down(&r, 10).await?;
                Ok(Some(format!(
                    "swarm task stopped: {} removed, lease released",
                    r.name
                )))
            }
            (Some(r), Some(s))
                if !s.running && self.args.release_when_stopped && wants_router(&s.labels) =>
            {
                d.down(&r, 10).await?;
                Ok(Some(format!(
                    "service stopped: {} removed, lease released",
                    r.name
                )))
            }
            (Some(r), Some(s)) => Ok(match d.heal(&r, &s).await? {
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
            }),
            (None, Some(s)) if s.running && wants_router(&s.labels) => {
                let opts = self.options_for(&s);
                let (rp, status) = d
                    .up(
                        &s,
                        &opts,
                        &self.args.image,
                        Duration::from_secs(self.args.timeout),
                        false,
                        never_interrupted(),
                    )
                    .await?;
                let addr = status
                    .lease
                    .map(|l| l.address.to_string())
                    .unwrap_or_default();
                Ok(Some(format!(
                    "router created: {addr} {}",
                    plan::ports_text(&rp.ports)
                )))
            }
            _ => Ok(None),
        }
    }

    /// `up` options for a labelled service: its labels, `--parent` as the
    /// default parent.
    fn options_for(&self, s: &crate::plan::ServiceInfo) -> UpOptions {
        let l = |k: &str| s.labels.get(k).filter(|v| !v.is_empty()).cloned();
        UpOptions {
            parent: l(labels::PARENT).or_else(|| self.args.parent.clone()),
            // mode, mac, hostname and ports are read from the labels by `derive`.
            ..Default::default()
        }
    }
}
