//! A service's own task: its inbox of triggers, its backoff, and one look
//! at the service at a time (`act`), under one of the supervisor's permits
//! (an `up` gives it back before its lease wait).
//!
//! Backoff: after a failure the service is tried again after 1 s, doubling
//! up to the resync period. No trigger starts an attempt before that
//! deadline: not the events of the service's own router (which watch's own
//! failed `up` creates and removes), not a service event, not the resync.
//! Only the removal of the service container is acted on at once (there is
//! nothing left to retry, only a router to take down).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::act::{Ctx, try_reconcile};
use crate::error::Error;
use crate::state::ServiceName;

/// Retry of a reconcile while `up`/`down` holds the service.
const BUSY_RETRY: Duration = Duration::from_millis(250);
/// First retry of a failed reconcile; doubles up to the resync period.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Why a service's task should look at its service again.
#[derive(Debug)]
pub(super) enum Trigger {
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
    /// The service's router was connected to or disconnected from a network
    /// (received at that instant): as `RouterStarted`, one that came while
    /// the task was working is its own doing.
    RouterNetwork(Instant),
    /// The full reconcile; answered once the task has looked (or, during a
    /// backoff, at once: the retry is already scheduled).
    Resync(oneshot::Sender<()>),
}

/// From a task to the supervisor.
pub(super) enum TaskMsg {
    /// The task has nothing to do and no retry pending after `seen` triggers:
    /// the supervisor ends it if it has sent no more since.
    /// `worked`: when its last attempt ran (an event of that attempt's own
    /// router read after the task ended is still its echo).
    Idle {
        service: ServiceName,
        seen: u64,
        worked: Option<(Instant, Instant)>,
    },
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
pub(super) async fn service_task(
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
            Trigger::Service
            | Trigger::Router
            | Trigger::RouterStarted(_)
            | Trigger::RouterNetwork(_) => {}
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
                    worked,
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
            let asked = Instant::now();
            // Held for the work, given back early by an `up` whose plan is
            // applied: the lease wait needs no permit.
            let permit = std::sync::Mutex::new(ctx.permits.acquire().await.ok());
            crate::progress::phase_done(service.as_str(), "permit", asked);
            let release = || {
                permit.lock().unwrap_or_else(|e| e.into_inner()).take();
            };
            let from = Instant::now();
            let r = reconcile(&ctx, &service, retry, &release).await;
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
pub(super) fn asks(t: &Trigger, worked: Option<(Instant, Instant)>) -> bool {
    match t {
        Trigger::RouterStarted(at) | Trigger::RouterNetwork(at) => {
            !worked.is_some_and(|(a, b)| a <= *at && *at <= b)
        }
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
async fn reconcile(
    ctx: &Ctx,
    service: &ServiceName,
    last: Option<Retry>,
    release: &(dyn Fn() + Sync),
) -> Option<Retry> {
    let started = Instant::now();
    match try_reconcile(ctx, service, release).await {
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

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
