//! Router lifecycle shared by the one-shot commands and `watch`: create a
//! router for a service (rolling back on failure), bring an existing one back
//! in line with its service, and remove one.

use std::path::Path;
use std::time::{Duration, Instant};

use netcontainer_proto::{Plan, Request, Response, SourceMode, Status};

use crate::agent_client::{AgentClient, agent_status, release, unexpected};
use crate::docker::{DockerClient, HostDirs, PullDisplay, RouterInfo, RouterSpec};
use crate::error::Error;
use crate::interrupt::{Interrupt, interrupted, on_interrupt};
use crate::labels::{RouterLabels, ServiceLabels};
use crate::plan::{self, LAN_IF, PlanError, RouterPlan, ServiceInfo, UpOptions};
use crate::plumb::{Leg, Parent, PlumbError, Plumber};
use crate::progress::Progress;
use crate::state::{self, ServiceName};

/// The options a router was created with, from its labels (so `watch` keeps
/// what `up --publish/--mac/...` chose).
pub fn options_of(r: &RouterInfo) -> Result<UpOptions, Error> {
    let l = RouterLabels::parse(&r.labels).map_err(|e| PlanError::Invalid(e.on(&r.name)))?;
    Ok(UpOptions {
        parent: l.parent,
        mode: l.mode,
        publish: l.ports,
        hostname: l.hostname,
        // A leg with the parent's MAC (ipvlan): the label records the unused
        // derived one, which `derive` would refuse as a chosen MAC.
        mac: l.mac.filter(|_| l.mode.unwrap_or_default().own_mac()),
        arp_probe: l.arp_probe,
        network: l.network,
        source: l.source,
        no_host_route: !l.host_route,
        ip: l.ip,
        ipv6: l.ipv6,
        egress: l.egress,
        dhcp_servers: l.dhcp_servers,
        mdns: l.mdns,
        // The recorded identity wins (its lease is tied to it): a router made
        // before an identity rule changed is healed as it was made, and a
        // service label the rules now refuse does not stop its healing.
        identity: Some(router_identity(r)),
        ..Default::default()
    })
}

/// How long `heal` waits for a router's agent to answer.
const HEAL_CONNECT: Duration = Duration::from_secs(3);

/// What `up` is asked for.
#[derive(Clone, Copy, Debug)]
pub struct UpRequest<'a> {
    pub service: &'a ServiceInfo,
    pub options: &'a UpOptions,
    /// The router image.
    pub image: &'a str,
    /// How long the lease may take.
    pub timeout: Duration,
    /// Progress on the terminal (a command), else in the log only (watch).
    pub progress: bool,
    /// Called once the plan is applied, before the lease wait: watch gives
    /// its permit back there, so a service waiting for a lease (or never
    /// getting one) holds up no other.
    pub applied: Option<Applied<'a>>,
    /// The caller, holding the service's lock, has just looked and found no
    /// router of it (none set aside either): `up` need not look again.
    pub no_router: bool,
}

/// What [`UpRequest::applied`] calls.
#[derive(Clone, Copy)]
pub struct Applied<'a>(pub &'a (dyn Fn() + Sync));

impl std::fmt::Debug for Applied<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Applied")
    }
}

pub struct Driver {
    pub docker: DockerClient,
    pub plumber: Plumber,
}

/// What `heal` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Healed {
    Nothing,
    Started,
    Replumbed,
    PlanSent,
    /// A gateway-mode service's default route was pointed at its router.
    Routed,
}

impl Driver {
    pub async fn connect() -> Result<Self, Error> {
        Ok(Driver {
            docker: DockerClient::connect().await?,
            plumber: Plumber::new()?,
        })
    }

    /// Creates and starts the router for `req.service`, plumbs its LAN leg,
    /// sends the plan and waits for the lease. On any failure, or when
    /// `interrupt` fires, everything created is removed again.
    pub async fn up(
        &self,
        req: &UpRequest<'_>,
        mut interrupt: Interrupt,
    ) -> Result<(RouterPlan, Status), Error> {
        let (svc, image) = (req.service, req.image);
        let mut opts = req.options.clone();
        let name = ServiceName::parse(&svc.name)?;
        // The steps before anything is created, timed in the debug log only
        // (`create`'s own progress shows the rest).
        let mut steps = Progress::new(&svc.name, false);
        steps.mark("lookup");
        // A stopped router of this service (an unclean stop, a reboot) is
        // made again rather than refused: with the identity and MAC it was
        // made with and its lease directory kept, so its agent claims the
        // same lease (INIT-REBOOT).
        let mut stopped = None;
        let found = if req.no_router {
            None
        } else {
            self.router(&name).await?
        };
        if let Some(r) = found {
            let recorded = router_identity(&r);
            let chosen = svc
                .labels
                .get(crate::labels::IDENTITY)
                .filter(|v| !v.is_empty());
            if r.running || chosen.is_some_and(|c| *c != recorded) {
                let address = agent_status(&r.service)
                    .await
                    .and_then(|s| s.lease)
                    .map(|l| format!(", {}", l.address))
                    .unwrap_or_default();
                return Err(Error::AlreadyUp {
                    service: svc.name.clone(),
                    router: r.name,
                    address,
                });
            }
            opts.mac = opts.mac.or(options_of(&r)?.mac);
            opts.identity = Some(recorded);
            stopped = Some(r);
        }
        let opts = &opts;
        if let Ok(l) = ServiceLabels::parse(&svc.labels) {
            crate::labels::warn_unknown_once(&name, &l.unknown);
        }
        steps.mark("identity");
        let rp = plan::derive(svc, opts)?;
        // Two routers of one identity have one MAC and client id: they would
        // share a lease, and one's RELEASE would free the other's address.
        if let Some(other) = self
            .docker
            .routers_of_identity(&rp.identity)
            .await?
            .into_iter()
            .find(|r| r.service != name)
        {
            return Err(Error::IdentityTaken {
                identity: rp.identity.clone(),
                router: other.name,
            });
        }
        let parent = self.plumber.parent(&rp.parent).await?;
        // Before anything is created: a pull that fails or is interrupted,
        // or an image that is not the pinned one, leaves nothing to roll
        // back (dropping the pull closes the connection, and the daemon
        // stops it). Routers are created from the pin, not the tag.
        let show = if req.progress {
            PullDisplay::for_stderr()
        } else {
            PullDisplay::Log
        };
        steps.mark("image");
        let image = tokio::select! {
            r = self.docker.ensure_image(image, show) => r?,
            e = on_interrupt(&mut interrupt) => return Err(e),
        };
        let req = &UpRequest {
            image: &image,
            ..*req
        };
        steps.mark("network");
        self.docker.check_network(&rp.network, &svc.name).await?;
        drop(steps);
        if let Some(r) = &stopped {
            // Set aside, not removed: it is the record of the identity (and
            // so of the lease). It goes once the new one runs, and is put
            // back if making the new one fails. Stopped, its agent has
            // nothing to release, and its lease directory stays for the new
            // one.
            self.docker
                .rename(&r.id, &plan::aside_name(name.as_str()))
                .await?;
            tracing::info!(router = %r.name, identity = %rp.identity, "making a stopped router again, its lease kept");
        }
        let mut created = Created {
            service: name.clone(),
            dir: false,
            set_aside: stopped.as_ref().map(|r| r.id.clone()),
            container_name: None,
            container: None,
        };
        // Interrupted at a step boundary or while waiting; never in the middle
        // of a Docker call, so what was created is always known.
        let result = self
            .create(req, &rp, &parent, &mut interrupt, &mut created)
            .await;
        match result {
            Ok(status) => {
                let got = status.lease.as_ref().map(|l| l.address);
                if let (Some(asked), Some(got)) = (rp.requested, got)
                    && got != asked
                    && opts.ip_strict
                {
                    // The roll-back stops the router: its agent releases
                    // the address it was given.
                    created.roll_back(&self.docker).await;
                    return Err(Error::NotTheAddress {
                        service: rp.service.clone(),
                        asked,
                        got,
                    });
                }
                if let Some(old) = &created.set_aside
                    && let Err(e) = self.docker.remove(old, 0).await
                {
                    // Stopped and renamed: harmless, and the next command
                    // on this service removes it (`Driver::router`).
                    tracing::warn!(container = %old, error = %e, "removing the router set aside failed");
                }
                Ok((rp, status))
            }
            Err(e) => {
                created.roll_back(&self.docker).await;
                Err(e)
            }
        }
    }

    /// The steps of `up` that create something, each recorded in `created`
    /// (for the roll-back) before it is made.
    async fn create(
        &self,
        req: &UpRequest<'_>,
        rp: &RouterPlan,
        parent: &Parent,
        interrupt: &mut Interrupt,
        created: &mut Created,
    ) -> Result<Status, Error> {
        let deadline = Instant::now() + req.timeout;
        let mut progress = Progress::new(&rp.service, req.progress);
        progress.mark("prepare");
        let name = created.service.clone();
        // A directory left by a crashed run holds nothing worth keeping but
        // its lease, which the agent may reuse; it is ours either way.
        created.dir = true;
        let host_dir = state::ensure_service_dir(&name)?;
        let lease_dir = state::ensure_lease_dir(&name)?;
        let socket = state::socket(&name);
        let _ = std::fs::remove_file(&socket);
        interrupted(interrupt)?;

        progress.phase("create", "creating the router");
        created.container_name = Some(rp.router_name.clone());
        let dirs = HostDirs {
            state: &host_dir,
            lease: &lease_dir,
        };
        let kernel_has_ipv6 = Path::new("/proc/sys/net/ipv6").exists();
        let spec = RouterSpec::of(rp, req.image, dirs, kernel_has_ipv6);
        let id = self.docker.create_router(&spec).await?;
        created.container = Some(id.clone());
        interrupted(interrupt)?;
        progress.phase("start", "starting the router");
        self.docker.start(&id).await?;
        interrupted(interrupt)?;
        progress.phase("plumb", "plumbing the LAN leg");
        let leg = Leg {
            parent,
            kind: rp.mode,
            name: LAN_IF,
            mac: rp.mac,
        };
        self.plumb(&id, &rp.router_name, &leg).await?;
        tracing::info!(router = %rp.router_name, "router started, LAN leg plumbed");
        interrupted(interrupt)?;

        progress.phase("connect", "sending the plan to the agent");
        let mut client = tokio::select! {
            c = connect_when_ready(&socket, deadline) => c?,
            e = on_interrupt(interrupt) => return Err(e),
        };
        progress.mark("apply");
        apply(&mut client, &rp.plan).await?;
        if let Some(Applied(applied)) = req.applied {
            applied();
        }
        progress.start_clock();
        progress.phase("lease", "waiting for the lease");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let status = tokio::select! {
                s = client.wait_bound(left.min(Duration::from_secs(1))) => s?,
                e = on_interrupt(interrupt) => return Err(e),
            };
            if status.lease.is_some() {
                // Last: a failure before this leaves the service's routes
                // as Docker made them, so rolling back never has to restore.
                if rp.plan.source == SourceMode::Gateway {
                    progress.phase("route", "routing the service through its router");
                    self.route_service_via(req.service, &id, &rp.network)
                        .await?;
                }
                return Ok(status);
            }
            let state = status.state.to_string();
            if Instant::now() >= deadline {
                return Err(Error::UpTimeout {
                    service: rp.service.clone(),
                    secs: req.timeout.as_secs(),
                    state,
                });
            }
            progress.waiting(&state);
        }
    }

    /// Creates the LAN leg in a running router's namespace (container `id`,
    /// named `name`). A leg that is already there is fine.
    async fn plumb(&self, id: &str, name: &str, leg: &Leg<'_>) -> Result<(), Error> {
        let (pid, sandbox) = self.docker.netns(id).await?;
        let pid = pid.ok_or_else(|| Error::RouterDied(name.to_string()))?;
        match self.plumber.add_leg(leg, pid, sandbox.as_deref()).await {
            Ok(()) => {}
            Err(PlumbError::Leg { source, .. }) if netlink_errno(&source) == Some(libc::EEXIST) => {
            }
            Err(e) => return Err(e.into()),
        }
        // The namespace was opened by pid: make sure it was still this router's.
        if self.docker.pid(id).await? != Some(pid) {
            return Err(Error::RouterDied(name.to_string()));
        }
        Ok(())
    }

    /// The router of `service`; call it holding the service's lock. An `up`
    /// that was killed while it made a stopped router again may have left
    /// that router set aside (`plan::aside_name`): it is put back when it is
    /// the service's only router, and removed when the new one was made (it
    /// has the same identity).
    pub async fn router(&self, service: &ServiceName) -> Result<Option<RouterInfo>, Error> {
        let current = self.docker.router(service).await?;
        let Some(aside) = self.docker.router_set_aside(service).await? else {
            return Ok(current);
        };
        if current.is_some() {
            tracing::info!(router = %aside.name, "removing a router set aside by an up that did not finish; its successor runs");
            self.docker.remove(&aside.id, 0).await?;
            return Ok(current);
        }
        let name = plan::router_name(service.as_str());
        tracing::info!(router = %name, "putting back a router set aside by an up that did not finish");
        self.docker.rename(&aside.id, &name).await?;
        Ok(self.docker.router(service).await?)
    }

    /// Brings a router back in line with its service: starts it if it is
    /// stopped, re-plumbs its leg and re-sends the plan when its agent lost
    /// them (router restarted), and sends a new plan when the service's
    /// address or state changed. Changes nothing that is already right.
    pub async fn heal(&self, r: &RouterInfo, svc: &ServiceInfo) -> Result<Healed, Error> {
        /// The agent's status without its forward counters (an `nft` run
        /// the heal does not need, once a minute for every service): the
        /// first push of a subscription on a second connection; from an
        /// agent older than subscriptions, or one with no subscriber slot
        /// free, its `Status` on `client`.
        async fn state_of(
            socket: &std::path::Path,
            client: &mut AgentClient,
        ) -> Result<netcontainer_proto::Status, Error> {
            match AgentClient::connect(socket).await?.subscribe().await {
                Ok(Some((_, u))) => return Ok(u.status),
                Ok(None) => {}
                // Every subscriber slot taken: the heal does not wait for
                // one; the plain status (and its counters' `nft` run) will do.
                Err(Error::AgentRefused(e)) => {
                    tracing::debug!(error = %e, "agent refused a subscription: asking its status");
                }
                Err(e) => return Err(e),
            }
            client.status().await
        }
        let mut did = Healed::Nothing;
        let opts = options_of(r)?;
        let desired = desired_plan(svc, &opts, &router_identity(r))?;
        if !r.running {
            // After a reboot `/run` is empty: the run directory is made
            // again, root-only, before Docker would make it (0755) for the
            // bind mount; the lease directory is there (it is on `/var/lib`)
            // unless it was removed by hand.
            state::ensure_service_dir(&r.service)?;
            state::ensure_lease_dir(&r.service)?;
            self.docker.start(&r.id).await?;
            did = Healed::Started;
        }
        let socket = state::socket(&r.service);
        // Short: watch heals one service at a time, and a router whose agent does
        // not answer is retried later (its `die` event, if any, comes meanwhile).
        let deadline = Instant::now() + HEAL_CONNECT;
        let mut client = connect_when_ready(&socket, deadline).await?;
        let status = state_of(&socket, &mut client).await?;
        if status.state == netcontainer_proto::State::WaitingForPlan || status.interface.is_none() {
            let parent_name = opts.parent.clone().unwrap_or_default();
            let parent = self.plumber.parent(&parent_name).await?;
            let mac = opts
                .mac
                .unwrap_or_else(|| plan::stable_mac(&router_identity(r)));
            let leg = Leg {
                parent: &parent,
                kind: opts.mode.unwrap_or_default(),
                name: LAN_IF,
                mac,
            };
            self.plumb(&r.id, &r.name, &leg).await?;
            apply(&mut client, &desired).await?;
            tracing::info!(service = %svc.name, router = %r.name, "router re-plumbed and plan sent");
            self.route_if_gateway(r, svc, &desired).await?;
            return Ok(Healed::Replumbed);
        }
        let current: Vec<_> = status
            .forwards
            .iter()
            .map(|f| netcontainer_proto::Forward {
                protocol: f.protocol,
                public_port: f.public_port,
                public_port_end: f.public_port_end,
                target_address: f.target_address,
                target_port: f.target_port,
            })
            .collect();
        if current != desired.forwards
            || status.hostname != desired.hostname
            || status.source != desired.source
        {
            apply(&mut client, &desired).await?;
            tracing::info!(service = %svc.name, forwards = desired.forwards.len(), "plan updated");
            did = Healed::PlanSent;
        }
        if self.route_if_gateway(r, svc, &desired).await? && did == Healed::Nothing {
            did = Healed::Routed;
        }
        Ok(did)
    }

    /// Brings the host route shims in line with the routers' leases (see
    /// `shim`). A failure is logged and returned as a one-line warning: the
    /// service works on the LAN without it.
    pub async fn sync_host_routes(&self) -> Option<String> {
        self.sync_host_routes_with(crate::shim::Leases::Ask).await
    }

    /// [`Self::sync_host_routes`] with the leases already known.
    pub async fn sync_host_routes_with(&self, leases: crate::shim::Leases<'_>) -> Option<String> {
        match crate::shim::sync(&self.docker, self.plumber.handle(), leases).await {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(error = %e, "host routes not in step");
                Some(e.to_string())
            }
        }
    }

    /// Gateway mode: points a running service's default route at its router
    /// (a restarted service has a fresh namespace, a restarted router may
    /// have a new address). Returns whether it changed anything.
    async fn route_if_gateway(
        &self,
        r: &RouterInfo,
        svc: &ServiceInfo,
        plan: &Plan,
    ) -> Result<bool, Error> {
        if plan.source != SourceMode::Gateway || !svc.running {
            return Ok(false);
        }
        let network = options_of(r)?
            .network
            .or_else(|| plan::network_of(svc, None).ok().map(|(n, _)| n))
            .unwrap_or_default();
        self.route_service_via(svc, &r.id, &network).await
    }

    /// Points `svc`'s default route at router `router_id`'s address on
    /// `network`. Returns whether it changed anything.
    async fn route_service_via(
        &self,
        svc: &ServiceInfo,
        router_id: &str,
        network: &str,
    ) -> Result<bool, Error> {
        let route_err = |source| Error::ServiceRoute {
            service: svc.name.clone(),
            source,
        };
        let Some(via) = self.docker.ip_on(router_id, network).await? else {
            return Err(Error::RouterDied(router_id.to_string()));
        };
        let Some(pid) = svc.pid else {
            return Ok(false);
        };
        // Opened by pid, then the pid checked again: a recycled pid cannot
        // redirect the change into another process's namespace.
        let ns = crate::plumb::open_netns(pid, svc.sandbox.as_deref())?;
        if self.docker.pid(&svc.id).await? != Some(pid) {
            tracing::info!(service = %svc.name, "service restarted meanwhile; its route is set on the next heal");
            return Ok(false);
        }
        let replaced = crate::service_route::point_default(ns, via)
            .await
            .map_err(route_err)?;
        if let Some(old) = replaced {
            tracing::info!(service = %svc.name, via = %via, previous = %old, "service's default route points at its router");
        }
        Ok(replaced.is_some())
    }

    /// Gives a gateway-mode service its Docker default route back (before its
    /// router goes). Only a default route that points at this router is
    /// changed; a service that is gone or stopped has nothing to restore.
    async fn unroute_service(&self, r: &RouterInfo) {
        let Ok(l) = RouterLabels::parse(&r.labels) else {
            return;
        };
        let Some(service_id) = l.service_id.filter(|s| !s.is_empty()) else {
            return;
        };
        let Ok(svc) = self.docker.service(&service_id).await else {
            return;
        };
        let (Some(pid), true) = (svc.pid, svc.running) else {
            return;
        };
        let network = l
            .network
            .or_else(|| plan::network_of(&svc, None).ok().map(|(n, _)| n))
            .unwrap_or_default();
        let Some(docker_gw) = svc
            .gateways
            .iter()
            .find(|(n, _)| *n == network)
            .map(|(_, g)| *g)
        else {
            return;
        };
        let router_ip: Option<std::net::Ipv4Addr> =
            self.docker.ip_on(&r.id, &network).await.unwrap_or_default();
        let Ok(ns) = crate::plumb::open_netns(pid, svc.sandbox.as_deref()) else {
            return;
        };
        let Ok(ns2) = ns.try_clone() else {
            return;
        };
        let current = match crate::service_route::default_gateway(ns).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(service = %svc.name, error = %e, "cannot read the service's default route");
                return;
            }
        };
        // Ours: via this router; or, when the router is in gateway mode, via
        // an address that is no longer Docker's gateway (this router's
        // address from before a restart). A masquerade-mode service's own
        // route choices are left alone.
        let gateway_mode = agent_status(&r.service)
            .await
            .is_some_and(|s| s.source == SourceMode::Gateway);
        let ours =
            current.is_some_and(|g| Some(g) == router_ip || (gateway_mode && g != docker_gw));
        if !ours || self.docker.pid(&svc.id).await.ok().flatten() != Some(pid) {
            return;
        }
        match crate::service_route::restore_default(ns2, docker_gw).await {
            Ok(true) => {
                tracing::info!(service = %svc.name, via = %docker_gw, "service's default route restored to Docker's gateway")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(service = %svc.name, error = %e, "restoring the service's default route failed")
            }
        }
    }

    /// Gives a gateway-mode service its Docker default route back, has the
    /// agent release its lease, then stops and removes a router and its host
    /// directories; the host routes follow.
    pub async fn down(&self, r: &RouterInfo, grace_secs: i32) -> Result<(), Error> {
        self.unroute_service(r).await;
        release(&r.service, grace_secs).await;
        self.docker.remove(&r.id, grace_secs).await?;
        self.sync_host_routes().await;
        Ok(state::remove_service_dir(&r.service)?)
    }
}

/// The identity a router was made with (its label), so its client id never
/// changes under it; a router made before identities were recorded used the
/// service's name.
pub fn router_identity(r: &RouterInfo) -> String {
    r.labels
        .get(crate::labels::IDENTITY)
        .filter(|v| !v.is_empty())
        .cloned()
        .unwrap_or_else(|| r.service.to_string())
}

/// The plan a router should have for `svc`: its forwards when the service
/// runs, none (lease kept) when it is stopped; the client id of `identity`,
/// the router's own.
pub fn desired_plan(svc: &ServiceInfo, opts: &UpOptions, identity: &str) -> Result<Plan, Error> {
    if svc.running {
        let mut p = plan::derive(svc, opts)?.plan;
        p.client_id = Some(plan::client_id(identity));
        return Ok(p);
    }
    // Its name and mDNS records stay as they were while it runs (see
    // `published_while_stopped`). Where they cannot be derived now (labels
    // changed since), the name falls back to the options' and mDNS goes off
    // until the service runs again, when `derive` says why.
    let (hostname, mdns) = plan::published_while_stopped(svc, opts).unwrap_or_else(|e| {
        tracing::debug!(service = %svc.name, error = %e, "stopped service: its mDNS records are withdrawn");
        let hostname = opts
            .hostname
            .clone()
            .unwrap_or_else(|| plan::default_hostname(svc));
        (hostname, None)
    });
    Ok(Plan {
        interface: LAN_IF.into(),
        hostname: Some(hostname),
        client_id: Some(plan::client_id(identity)),
        broadcast_flag: opts.mode.unwrap_or_default().broadcast_flag(),
        forwards: Vec::new(),
        source: Default::default(),
        service: None,
        ipv6: opts.ipv6.unwrap_or_default(),
        dhcp_servers: Default::default(),
        mdns,
    })
}

fn netlink_errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

async fn apply(client: &mut AgentClient, plan: &Plan) -> Result<(), Error> {
    match client
        .request(&Request::Apply(plan.clone()), Duration::ZERO)
        .await?
    {
        Response::Applied(_) => Ok(()),
        other => Err(unexpected(other)),
    }
}

/// The agent creates its socket right after it starts; wait for it.
async fn connect_when_ready(socket: &Path, deadline: Instant) -> Result<AgentClient, Error> {
    loop {
        match AgentClient::connect(socket).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// What `up` made so far, for the roll-back.
struct Created {
    service: ServiceName,
    /// The service's state directory was (or may have been) created.
    dir: bool,
    /// Made again from a stopped router, this one (its container ID), set
    /// aside: a roll-back releases nothing, keeps the lease directory,
    /// removes the new router and puts the old one back, as it found it, so a
    /// later `up` makes it again with the same recorded identity and claims
    /// the same lease.
    set_aside: Option<String>,
    /// Set before the container is asked for: a create that failed after
    /// Docker made the container is still found by name.
    container_name: Option<String>,
    container: Option<String>,
}

impl Created {
    async fn roll_back(self, docker: &DockerClient) {
        let mut id = self.container;
        if id.is_none() && self.container_name.is_some() {
            // Only a router that says it is this service's (we hold the
            // service's lock, and `up` checked there was none before).
            id = match docker.router(&self.service).await {
                Ok(r) => r.map(|r| r.id),
                Err(e) => {
                    tracing::warn!(error = %e, "roll-back: looking for the router failed");
                    None
                }
            };
        }
        let keep_lease = self.set_aside.is_some();
        // Whether the router's name is free again for the one set aside.
        let mut name_free = true;
        if let Some(id) = id {
            // The agent releases what it may have got, unless the lease is
            // the old router's (it keeps its lease on SIGTERM); the macvlan
            // leg lives in the router's namespace and goes with it.
            if !keep_lease {
                release(&self.service, 5).await;
            }
            if let Err(e) = docker.remove(&id, 5).await {
                tracing::warn!(container = %id, error = %e, "roll-back: removing the router failed");
                eprintln!("warning: could not remove router container {id}: {e}");
                // Stopped, it records the same identity as the old one,
                // which the next command on this service then removes.
                let _ = docker.stop(&id, 5).await;
                name_free = false;
            }
        }
        if let Some(old) = &self.set_aside
            && name_free
        {
            let name = crate::plan::router_name(self.service.as_str());
            if let Err(e) = docker.rename(old, &name).await {
                // The next command on this service puts it back.
                tracing::warn!(container = %old, error = %e, "roll-back: putting the old router back failed");
                eprintln!("warning: could not rename router container {old} back to {name}: {e}");
            }
        }
        let removed = match (self.dir, keep_lease) {
            (false, _) => Ok(()),
            (true, false) => state::remove_service_dir(&self.service),
            (true, true) => state::remove_run_state(&self.service),
        };
        if let Err(e) = removed {
            eprintln!("warning: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::derive;

    /// A router keeps the identity it was made with, whatever the rules
    /// derive for its service today: one made before the host ID (an engine
    /// ID in its label) keeps its client id and MAC, and a Compose label the
    /// rules now refuse does not stop it from being healed.
    #[test]
    fn a_router_heals_with_its_recorded_identity() {
        let mut svc = ServiceInfo {
            name: "shop_web_1".into(),
            id: "abc".into(),
            running: true,
            network_mode: "nctest".into(),
            networks: vec![("nctest".into(), std::net::Ipv4Addr::new(198, 51, 100, 2))],
            exposed: vec!["80/tcp".into()],
            host_id: "HOST".into(),
            ..Default::default()
        };
        let made_before = UpOptions {
            parent: Some("eth0".into()),
            identity: Some("ENGINE-ID/shop_web_1".into()),
            ..Default::default()
        };
        let rp = derive(&svc, &made_before).unwrap();
        let r = RouterInfo {
            id: "r".into(),
            name: rp.router_name.clone(),
            service: ServiceName::parse("shop_web_1").unwrap(),
            running: true,
            labels: rp.labels(),
        };
        for (project, service, number) in [("shop", "web", "1"), (&*"p".repeat(64), "web", "1")] {
            svc.labels = [
                (crate::labels::COMPOSE_PROJECT, project),
                (crate::labels::COMPOSE_SERVICE, service),
                (crate::labels::COMPOSE_NUMBER, number),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            let opts = options_of(&r).unwrap();
            let p = desired_plan(&svc, &opts, &router_identity(&r)).unwrap();
            assert_eq!(p.client_id, Some(plan::client_id("ENGINE-ID/shop_web_1")));
            assert_eq!(derive(&svc, &opts).unwrap().mac, rp.mac);
        }
    }

    /// web1, running on `nctest` at 198.51.100.2, exposing `exposed`.
    fn web1_exposing(exposed: &[&str]) -> ServiceInfo {
        ServiceInfo {
            name: "web1".into(),
            id: "abc".into(),
            running: true,
            network_mode: "nctest".into(),
            networks: vec![("nctest".into(), std::net::Ipv4Addr::new(198, 51, 100, 2))],
            exposed: exposed.iter().map(|p| p.to_string()).collect(),
            host_id: "H".into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_ipvlan_router_heals_to_its_own_plan() {
        let svc = web1_exposing(&["80/tcp"]);
        let opts = UpOptions {
            parent: Some("eth0".into()),
            mode: Some(crate::leg::IPVLAN),
            ..Default::default()
        };
        let rp = derive(&svc, &opts).unwrap();
        let r = RouterInfo {
            id: "r".into(),
            name: rp.router_name.clone(),
            service: ServiceName::parse("web1").unwrap(),
            running: true,
            labels: rp.labels(),
        };
        // The MAC label of an ipvlan router is not a chosen MAC.
        let again = options_of(&r).unwrap();
        assert_eq!(again.mac, None);
        let p = desired_plan(&svc, &again, &rp.identity).unwrap();
        assert_eq!(p, rp.plan);
        assert!(p.broadcast_flag);
        // Stopped service: no forwards, still the broadcast flag.
        let stopped = ServiceInfo {
            running: false,
            ..svc
        };
        assert!(
            desired_plan(&stopped, &again, &rp.identity)
                .unwrap()
                .broadcast_flag
        );
    }

    /// A stopped service's plan drops the forwards and nothing the mDNS
    /// responder publishes: the agent keeps its responder as it is, so a
    /// restart sends nothing to the LAN.
    #[test]
    fn a_stopped_service_keeps_its_name_and_mdns_records() {
        let svc = ServiceInfo {
            labels: [
                (crate::labels::HOSTNAME, "shop"),
                (crate::labels::DNSSD, "_mqtt._tcp:1883"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ..web1_exposing(&["80/tcp", "1883/tcp"])
        };
        let opts = UpOptions {
            parent: Some("eth0".into()),
            ..Default::default()
        };
        let running = desired_plan(&svc, &opts, "H/web1").unwrap();
        assert_eq!(running.forwards.len(), 2);
        assert_eq!(running.mdns.as_ref().unwrap().services.len(), 2);
        let stopped = ServiceInfo {
            running: false,
            networks: Vec::new(),
            ..svc.clone()
        };
        let p = desired_plan(&stopped, &opts, "H/web1").unwrap();
        assert!(p.forwards.is_empty());
        assert_eq!(p.hostname.as_deref(), Some("shop"));
        assert_eq!(p.mdns, running.mdns);
        assert_eq!(p.client_id, running.client_id);
        // mDNS off stays off.
        let off = UpOptions {
            mdns: crate::labels::Mdns {
                on: Some(false),
                ..Default::default()
            },
            ..opts.clone()
        };
        assert_eq!(desired_plan(&stopped, &off, "H/web1").unwrap().mdns, None);
        // Labels the plan refuses now: the name falls back, mDNS goes off (the
        // running plan, refused as well, says why).
        let mut bad = stopped.clone();
        bad.labels
            .insert(crate::labels::DNSSD.into(), "_mqtt._tcp:9999".into());
        let p = desired_plan(&bad, &opts, "H/web1").unwrap();
        assert_eq!((p.hostname.as_deref(), p.mdns), (Some("web1"), None));
    }
}
