//! The acting part of a service's task: one look at the service under its
//! lock, [`decide`], and the action taken (`Driver::up`, `heal`, `down`).
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

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::decide::{Action, DecideOptions, RouterView, ServiceView, decide};
use super::monitor::Stats;
use super::settings::Settings;
use crate::docker::DockerError;
use crate::error::Error;
use crate::interrupt::never_interrupted;
use crate::labels::{ServiceLabels, warn_unknown_once};
use crate::lock::ServiceLock;
use crate::plan::{self, PlanError, UpOptions};
use crate::router::{Applied, Driver, Healed, UpRequest};
use crate::state::ServiceName;

/// What every task shares.
pub(super) struct Ctx {
    pub driver: Arc<Driver>,
    pub args: Settings,
    /// Bounds how many services are worked on at once.
    pub permits: Semaphore,
    pub stats: Arc<Stats>,
}

/// Looks at `service` once and acts; what was done, for the log. An `up`
/// calls `release` once its plan is applied (the permit is given back before
/// the lease wait).
pub(super) async fn try_reconcile(
    ctx: &Ctx,
    service: &ServiceName,
    release: &(dyn Fn() + Sync),
) -> Result<Option<String>, Error> {
    // A command working on this service right now: retry once it is done
    // (never block the other services behind it).
    let looking = std::time::Instant::now();
    let Some(_lock) = ServiceLock::try_take(service)? else {
        return Err(Error::Busy(service.to_string()));
    };
    let d = &ctx.driver;
    let args = &ctx.args;
    let router = d.router(service).await?;
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
    crate::progress::phase_done(service.as_str(), "look", looking);
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
                oneoff: plan::is_unlabelled_oneoff(s),
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
                // Likewise `--dhcp-server`/`--deny-dhcp-server`: the
                // service's labels win.
                dhcp_servers: if labelled.dhcp_servers.is_empty() {
                    args.dhcp_servers.clone()
                } else {
                    labelled.dhcp_servers
                },
                // `--mdns off` is the default of a service without the label.
                mdns: crate::labels::Mdns {
                    on: labelled.mdns.on.or(Some(args.mdns)),
                    ..Default::default()
                },
                ..Default::default()
            };
            let req = UpRequest {
                service: &s,
                options: &opts,
                image: &args.image,
                timeout: Duration::from_secs(args.timeout),
                progress: false,
                applied: Some(Applied(release)),
                // Looked at above, under the lock still held.
                no_router: true,
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
