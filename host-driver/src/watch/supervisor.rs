//! The supervisor: it follows Docker's container events (networks'
//! connect/disconnect of a container included) and a periodic
//! resync, and routes each trigger to the task of the service concerned
//! (`task`: spawned on demand, ended when it has nothing left to do). A full
//! reconcile runs at start, after every reconnect (so an event lost while
//! the stream was down changes nothing) and every [`FULL_EVERY`]th
//! `--resync`; the resyncs between look only at the services whose
//! listing changed since the last one, whose task is still at work, or
//! whose agent the monitor does not hear settled ([`needs_look`]): at rest,
//! a resync is three Docker listings, whatever the number of services.
//! After each round whose listings were complete, the sweep.
//!
//! Each service's task works on its service alone, and takes one of at most
//! [`CONCURRENCY`] permits for the work itself, so services are brought up
//! and healed side by side without a storm of events overloading dockerd.
//! An `up` gives its permit back once its plan is applied: waiting for the
//! lease needs none, so a service stuck waiting for one delays no other.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use super::act::Ctx;
use super::monitor::Stats;
use super::notify::notify;
use super::settings::Settings;
use super::sweep::remove_stale_dirs;
use super::task::{TaskMsg, Trigger, asks, service_task};
use crate::docker::{ContainerEvent, DockerError};
use crate::error::Error;
use crate::labels;
use crate::router::Driver;
use crate::state::ServiceName;

/// Services worked on at the same time (up, heal, down): enough to bring
/// many up at once, few enough that a storm does not overload dockerd.
pub const CONCURRENCY: usize = 8;

/// Every this many resyncs, every service is looked at, listing changed or
/// not: what no listing shows (a default route changed inside a service's
/// namespace by hand) is caught within `FULL_EVERY * --resync`.
pub const FULL_EVERY: u64 = 10;

/// How long the supervisor remembers an ended task's last attempt (pruned
/// at each resync).
const ECHO_MEMORY: Duration = Duration::from_secs(30);

struct Inbox {
    tx: mpsc::UnboundedSender<Trigger>,
    sent: u64,
}

type Round = std::pin::Pin<Box<dyn Future<Output = (BTreeSet<ServiceName>, bool)> + Send>>;

pub(super) struct Supervisor {
    ctx: Arc<Ctx>,
    inboxes: HashMap<ServiceName, Inbox>,
    /// When the last attempt of a service whose task has ended ran: the
    /// start and connect events of the router that attempt made may be read
    /// after the task went idle, and are its echo, not news.
    ended: HashMap<ServiceName, (Instant, Instant)>,
    tasks: JoinSet<()>,
    to_main: mpsc::UnboundedSender<TaskMsg>,
    from_tasks: mpsc::UnboundedReceiver<TaskMsg>,
    /// Reconciles under way: each yields its services and whether both
    /// listings were complete, once every task concerned has looked.
    rounds: FuturesUnordered<Round>,
    /// Resyncs begun (the first, at start, is full).
    resyncs: u64,
    /// Each service's listing mark (its container's and its router's, see
    /// `DockerClient::marks`) at the last resync.
    marks: HashMap<ServiceName, u64>,
}

impl Supervisor {
    pub(super) fn new(driver: Arc<Driver>, args: Settings, stats: Arc<Stats>) -> Self {
        let (to_main, from_tasks) = mpsc::unbounded_channel();
        Supervisor {
            ctx: Arc::new(Ctx {
                driver,
                args,
                permits: Semaphore::new(CONCURRENCY),
                stats,
            }),
            inboxes: HashMap::new(),
            ended: HashMap::new(),
            tasks: JoinSet::new(),
            to_main,
            from_tasks,
            rounds: FuturesUnordered::new(),
            resyncs: 0,
            marks: HashMap::new(),
        }
    }

    /// Hands `t` to the service's task, starting one if it has none.
    fn send(&mut self, service: &ServiceName, t: Trigger) {
        if !self.inboxes.contains_key(service) {
            // No task: an echo of the ended one's last attempt starts none.
            if !asks(&t, self.ended.get(service).copied()) {
                tracing::debug!(%service, "event of its own last attempt: nothing to do");
                return;
            }
            self.ended.remove(service);
        }
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
            TaskMsg::Idle {
                service,
                seen,
                worked,
            } => {
                // Nothing sent since it went idle: dropping the sender ends it.
                if self.inboxes.get(&service).is_some_and(|i| i.sent == seen) {
                    self.inboxes.remove(&service);
                    if let Some(w) = worked {
                        self.ended.insert(service, w);
                    }
                }
            }
        }
    }

    async fn on_event(&mut self, ev: ContainerEvent) {
        // A network's connect/disconnect names only the container's ID.
        let ev = match self.ctx.driver.docker.named_event(ev).await {
            Ok(Some(ev)) => ev,
            Ok(None) => return,
            Err(e) => {
                // One lost event: the resync still looks.
                tracing::warn!(error = %e, "ignoring a network event");
                return;
            }
        };
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
        let now = Instant::now();
        let at = happened_at(ev.at, SystemTime::now(), now);
        tracing::debug!(
            action = %ev.action,
            container = %ev.name,
            %service,
            read_late_ms = u64::try_from((now - at).as_millis()).unwrap_or(u64::MAX),
            dated = ev.at.is_some(),
            "event"
        );
        self.send(&service, trigger_of(is_router, &ev, at));
    }

    /// The main loop, for as long as Docker's event stream lasts: a full
    /// reconcile first (`events` is subscribed before it, so what happens
    /// meanwhile is in the stream), then each event to its service's task,
    /// a full reconcile every `resync`, the sweep after each complete round.
    pub(super) async fn run(
        &mut self,
        mut events: impl Stream<Item = Result<ContainerEvent, DockerError>> + Unpin,
        resync: Duration,
    ) -> Result<(), Error> {
        self.reconcile_all().await;
        let mut resync = tokio::time::interval(resync);
        resync.tick().await;
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) => self.on_event(ev).await,
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(DockerError::Unreachable("the event stream ended".into()).into()),
                },
                _ = resync.tick() => self.reconcile_all().await,
                Some(msg) = self.from_tasks.recv() => self.on_task_msg(msg),
                Some((services, complete)) = self.rounds.next() => {
                    if complete {
                        remove_stale_dirs(&services);
                    }
                    notify("STATUS=watching");
                }
                Some(res) = self.tasks.join_next() => {
                    if let Err(e) = res
                        && e.is_panic()
                    {
                        tracing::error!("a service task panicked: {e}");
                    }
                }
            }
        }
    }

    /// Lists routers and labelled services and asks every task concerned to
    /// look (all of them every [`FULL_EVERY`]th time, else as
    /// [`needs_look`] says); the round completes (STATUS=watching, sweep)
    /// when all have.
    async fn reconcile_all(&mut self) {
        let full = self.resyncs.is_multiple_of(FULL_EVERY);
        self.resyncs += 1;
        // An echo comes within seconds: what ended a while ago is forgotten.
        let now = Instant::now();
        self.ended
            .retain(|_, (_, end)| now.saturating_duration_since(*end) < ECHO_MEMORY);
        let mut services = BTreeSet::new();
        // The sweep deletes what no router claims: it runs only when both
        // listings are known complete. A failed listing (dockerd restarting,
        // an API error) proves nothing stale.
        let mut complete = true;
        let mut router_of = HashMap::new();
        match self.ctx.driver.docker.routers().await {
            Ok(rs) => {
                for r in rs {
                    services.insert(r.service.clone());
                    router_of.insert(r.service, (r.name, r.running));
                }
            }
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
        // Taken after the two listings: a change between them shows here.
        let listed = match self.ctx.driver.docker.marks().await {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(error = %e, "listing containers failed; looking at every service");
                None
            }
        };
        let before = std::mem::take(&mut self.marks);
        let mut acks = Vec::with_capacity(services.len());
        let mut skipped = 0usize;
        for s in &services {
            let mark = listed.as_ref().map(|m| {
                pair_mark(
                    m.get(s.as_str()),
                    router_of.get(s).and_then(|r| m.get(&r.0)),
                )
            });
            // With no router, no agent has anything to say; a stopped one
            // is started by the look.
            let settled = match router_of.get(s) {
                None => true,
                Some((_, running)) => *running && self.ctx.stats.settled(s.as_str()),
            };
            if let Some(m) = mark {
                self.marks.insert(s.clone(), m);
            }
            if !needs_look(
                full,
                before.get(s).copied(),
                mark,
                self.inboxes.contains_key(s),
                settled,
            ) {
                skipped += 1;
                continue;
            }
            let (tx, rx) = oneshot::channel();
            self.send(s, Trigger::Resync(tx));
            acks.push(rx);
        }
        tracing::debug!(
            full,
            services = services.len(),
            looked = services.len() - skipped,
            "resync"
        );
        self.rounds.push(Box::pin(async move {
            // A task that ended without answering has nothing more to say.
            for rx in acks {
                let _ = rx.await;
            }
            (services, complete)
        }));
    }
}

/// Whether a resync looks at a service: always in a `full` round, and when
/// its listing mark is unknown or moved since the last resync (`before`,
/// `now`), its task is still at work (`busy`: a retry pending, or triggers
/// not yet looked at), or the monitor does not hear its agent answer with
/// its plan and LAN leg, or its router is stopped (`settled` false: a heal
/// would re-plumb, re-send or start it).
/// What is left, a service unchanged in every way a listing and its agent
/// show, needs nothing until the next full round.
fn needs_look(
    full: bool,
    before: Option<u64>,
    now: Option<u64>,
    busy: bool,
    settled: bool,
) -> bool {
    full || busy || !settled || now.is_none() || before != now
}

/// A service's mark from its container's and its router's (either may be
/// missing: a service removed, or one with no router yet).
fn pair_mark(service: Option<&u64>, router: Option<&u64>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (service, router).hash(&mut h);
    h.finish()
}

/// When an event happened, on the monotonic clock the tasks time their work
/// with: Docker's own time of it (`at`, wall clock) taken back from `now`, so
/// an echo of a task's own work that is read late (the stream lags behind
/// while many routers are made) is still known for one; without it, or if it
/// lies ahead, `now`.
fn happened_at(at: Option<SystemTime>, wall_now: SystemTime, now: Instant) -> Instant {
    at.and_then(|t| wall_now.duration_since(t).ok())
        .and_then(|ago| now.checked_sub(ago))
        .unwrap_or(now)
}

/// What an event (that happened at `now`) asks of its service's task.
fn trigger_of(is_router: bool, ev: &ContainerEvent, now: Instant) -> Trigger {
    let network = ev.connected.is_some();
    match (is_router, ev.action.as_str()) {
        // A router joins its service's network as it is made: while the
        // task works on it, that is its own doing (like the router's start).
        (true, _) if network => Trigger::RouterNetwork(now),
        (true, "start") => Trigger::RouterStarted(now),
        (true, _) => Trigger::Router,
        (false, "destroy") if !network => Trigger::ServiceGone,
        // Started, died, or connected to or disconnected from a network.
        (false, _) => Trigger::Service,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(action: &str, network: bool) -> ContainerEvent {
        ContainerEvent {
            action: action.into(),
            name: "web1".into(),
            labels: HashMap::new(),
            connected: network.then(|| "c0ffee".to_string()),
            at: None,
        }
    }

    #[test]
    fn a_resync_looks_only_at_what_moved_except_every_full_round() {
        let (m, n) = (Some(1), Some(2));
        // At rest: listed the same, idle, agent settled: no look.
        assert!(!needs_look(false, m, m, false, true));
        // Any one reason is enough.
        assert!(needs_look(true, m, m, false, true), "full round");
        assert!(needs_look(false, m, n, false, true), "listing moved");
        assert!(needs_look(false, None, m, false, true), "new service");
        assert!(needs_look(false, m, None, false, true), "listing failed");
        assert!(needs_look(false, m, m, true, true), "task at work");
        assert!(needs_look(false, m, m, false, false), "agent not settled");
        // A router appearing or going moves the pair's mark.
        assert_ne!(pair_mark(Some(&1), None), pair_mark(Some(&1), Some(&2)));
        assert_ne!(pair_mark(Some(&1), Some(&2)), pair_mark(Some(&1), Some(&3)));
        assert_ne!(pair_mark(None, Some(&1)), pair_mark(Some(&1), None));
        assert_eq!(pair_mark(Some(&1), Some(&2)), pair_mark(Some(&1), Some(&2)));
    }

    #[test]
    fn an_event_read_late_is_dated_when_it_happened() {
        let (wall, now) = (SystemTime::now(), Instant::now());
        let ago = Duration::from_millis(1200);
        assert_eq!(happened_at(Some(wall - ago), wall, now), now - ago);
        // No time, or one ahead of this clock: when it is read.
        assert_eq!(happened_at(None, wall, now), now);
        assert_eq!(
            happened_at(Some(wall + Duration::from_secs(1)), wall, now),
            now
        );
    }

    #[test]
    fn network_events_schedule_the_service() {
        let now = Instant::now();
        let t = |router, action, network| trigger_of(router, &ev(action, network), now);
        // The service connected to another network, or disconnected from its
        // router's: its task looks now, not at the next resync.
        assert!(matches!(t(false, "connect", true), Trigger::Service));
        assert!(matches!(t(false, "disconnect", true), Trigger::Service));
        // The router's own network changes: an echo while its task works.
        assert!(matches!(t(true, "connect", true), Trigger::RouterNetwork(at) if at == now));
        assert!(matches!(
            t(true, "disconnect", true),
            Trigger::RouterNetwork(_)
        ));
        // Container events as before.
        assert!(matches!(t(true, "start", false), Trigger::RouterStarted(_)));
        assert!(matches!(t(true, "die", false), Trigger::Router));
        assert!(matches!(t(false, "destroy", false), Trigger::ServiceGone));
        assert!(matches!(t(false, "die", false), Trigger::Service));
    }
}
