//! What `watch` sees of its routers between Docker events: every few
//! seconds it asks each router's agent for its status and counters. Two
//! things come of it:
//!
//! - the figures `--metrics` serves ([`Stats`], rendered by `metrics.rs`);
//! - address changes: when a service's leased address is another than the
//!   last one seen (the lease expired and the server gave another, a NAK, a
//!   new server), one WARN with the old and new address, and the operator's
//!   `--on-change` command, run with them in its environment.
//!
//! The poll runs beside the supervisor and never waits for it (nor it for
//! the poll): a slow agent costs at most [`AGENT_PATIENCE`], and the
//! command runs in a task of its own, bounded by [`HOOK_LIMIT`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use netcontainer_proto::{LeaseCounters, Status};

use crate::agent_client::AgentClient;
use crate::router::Driver;
use crate::state::{self, ServiceName};

/// How long one agent may take to answer a poll.
pub const AGENT_PATIENCE: Duration = Duration::from_secs(2);
/// How long `--on-change` may run before it is killed.
pub const HOOK_LIMIT: Duration = Duration::from_secs(30);
/// The environment of `--on-change`.
pub const ENV_SERVICE: &str = "NETCONTAINER_SERVICE";
pub const ENV_OLD: &str = "NETCONTAINER_OLD_ADDRESS";
pub const ENV_NEW: &str = "NETCONTAINER_NEW_ADDRESS";

/// One router as last polled.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The agent's status; `None` when it did not answer.
    pub status: Option<Status>,
    /// `None` also from an agent older than the counters.
    pub counters: Option<LeaseCounters>,
}

/// Everything the metrics show, shared by the poll, the supervisor (heals)
/// and the metrics server.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<StatsInner>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatsInner {
    /// Every router of the last poll, by service.
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
    /// When the last poll was taken in (`None` before the first): the
    /// status page ages the agents' figures (seconds left) by it.
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
    /// Takes a poll in: its routers replace the last ones, its changes
    /// count, and the counters of services whose router is gone are
    /// dropped (a removed service leaves no series behind; one that comes
    /// back starts again at 0, which Prometheus reads as a reset). A
    /// service seen for the first time, or whose [`Shape`] differs from the
    /// last poll's or that `changes` names, has its last change at `now`.
    pub fn take_poll(
        &mut self,
        polled: BTreeMap<String, Observed>,
        changes: &[Change],
        now: SystemTime,
    ) {
        for (service, o) in &polled {
            let changed = self
                .routers
                .get(service)
                .is_none_or(|before| Shape::of(before) != Shape::of(o));
            if changed {
                self.last_change.insert(service.clone(), now);
            }
        }
        self.routers = polled;
        for c in changes {
            *self.changes.entry(c.service.clone()).or_default() += 1;
            self.last_change.insert(c.service.clone(), now);
        }
        self.polled_at = Some(now);
        let routers = &self.routers;
        self.heals.retain(|s, _| routers.contains_key(s));
        self.changes.retain(|s, _| routers.contains_key(s));
        self.ddns_failures.retain(|s, _| routers.contains_key(s));
        self.last_change.retain(|s, _| routers.contains_key(s));
    }
}

impl Stats {
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

    pub fn snapshot(&self) -> StatsInner {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StatsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
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
    pub fn update(&mut self, routers: &BTreeMap<String, Observed>) -> Vec<Change> {
        self.0.retain(|s, _| routers.contains_key(s));
        let mut changes = Vec::new();
        for (service, o) in routers {
            let Some(new) = o
                .status
                .as_ref()
                .and_then(|s| s.lease.as_ref())
                .map(|l| l.address)
            else {
                continue;
            };
            if let Some(old) = self.0.insert(service.clone(), new)
                && old != new
            {
                changes.push(Change {
                    service: service.clone(),
                    old,
                    new,
                });
            }
        }
        changes
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

/// Polls every `every` until dropped (it runs as a task of watch's session).
pub async fn run(
    driver: Arc<Driver>,
    stats: Arc<Stats>,
    on_change: Option<String>,
    every: Duration,
) {
    let mut seen = Addresses::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let routers = match driver.docker.routers().await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "poll: listing routers failed");
                continue;
            }
        };
        let polled = futures::future::join_all(
            routers
                .iter()
                .map(|r| async { (r.service.to_string(), observe(&r.service).await) }),
        )
        .await;
        let polled: BTreeMap<String, Observed> = polled.into_iter().collect();
        let changes = seen.update(&polled);
        let refused = routers
            .iter()
            .filter(|r| crate::shim::refusal(&r.service).is_some())
            .map(|r| r.service.to_string())
            .collect();
        {
            let mut s = stats.lock();
            s.take_poll(polled, &changes, SystemTime::now());
            s.host_route_refused = refused;
        }
        for c in changes {
            tracing::warn!(service = %c.service, old = %c.old, new = %c.new, "the service's LAN address changed");
            if let Some(cmd) = &on_change {
                tokio::spawn(run_hook(cmd.clone(), c));
            }
        }
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
