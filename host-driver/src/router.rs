//! Router lifecycle shared by the one-shot commands and `watch`: create a
//! router for a service (rolling back on failure), bring an existing one back
//! in line with its service, and remove one.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netcontainer_proto::{Plan, Request, Response, Status};

use crate::agent_client::{AgentClient, unexpected};
use crate::commands::run_dir;
use crate::docker::{DockerClient, DockerError, RouterInfo};
use crate::error::Error;
use crate::plan::{self, LAN_IF, Mode, RouterPlan, ServiceInfo, UpOptions, labels, parse_mac};
use crate::plumb::{Parent, PlumbError, Plumber};

/// The agent's control socket inside a router's host directory.
pub fn socket_of(host_dir: &Path) -> PathBuf {
    host_dir.join("agent.sock")
}

/// The host directory recorded on a router.
pub fn host_dir_of(r: &RouterInfo) -> PathBuf {
    r.labels
        .get(labels::STATE_DIR)
        .map(PathBuf::from)
        .unwrap_or_else(|| run_dir().join(&r.service))
}

/// The options a router was created with, from its labels (so `watch` keeps
/// what `up --publish/--mac/...` chose).
pub fn options_of(r: &RouterInfo) -> UpOptions {
    let l = |k: &str| r.labels.get(k).filter(|v| !v.is_empty()).cloned();
    UpOptions {
        parent: l(labels::PARENT),
        mode: l(labels::MODE).and_then(|m| m.parse::<Mode>().ok()),
        publish: l(labels::PORTS)
            .and_then(|p| plan::parse_port_list(&p).ok())
            .unwrap_or_default(),
        hostname: l(labels::HOSTNAME),
        mac: l(labels::MAC).and_then(|m| parse_mac(&m).ok()),
        arp_probe: l(labels::ARP_PROBE).is_some_and(|v| v == "true"),
    }
}

/// Status of an agent, or `None` if it does not answer within 3 s.
pub async fn agent_status(host_dir: &Path) -> Option<Status> {
    let socket = socket_of(host_dir);
    let fut = async {
        let mut c = AgentClient::connect(&socket).await.ok()?;
        c.status().await.ok()
    };
    tokio::time::timeout(Duration::from_secs(3), fut)
        .await
        .ok()
        .flatten()
}

/// How long `heal` waits for a router's agent to answer.
const HEAL_CONNECT: Duration = Duration::from_secs(3);

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
}

impl Driver {
    pub async fn connect() -> Result<Self, Error> {
        Ok(Driver {
            docker: DockerClient::connect().await?,
            plumber: Plumber::new()?,
        })
    }

    /// Creates and starts the router for `svc`, plumbs its LAN leg, sends the
    /// plan and waits for the lease. On any failure everything created is
    /// removed again.
    pub async fn up(
        &self,
        svc: &ServiceInfo,
        opts: &UpOptions,
        image: &str,
        timeout: Duration,
        progress: bool,
    ) -> Result<(RouterPlan, Status), Error> {
        if let Some(r) = self.docker.router(&svc.name).await? {
            let address = agent_status(&host_dir_of(&r))
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
        let rp = plan::derive(svc, opts)?;
        let parent = self.plumber.parent(&rp.parent).await?;
        if !self.docker.image_exists(image).await? {
            return Err(DockerError::NoImage(image.to_string()).into());
        }
        let host_dir = run_dir().join(&rp.service);
        let mut created = Created::default();
        match self
            .create(
                &parent,
                &rp,
                image,
                &host_dir,
                timeout,
                progress,
                &mut created,
            )
            .await
        {
            Ok(status) => Ok((rp, status)),
            Err(e) => {
                created.roll_back(&self.docker).await;
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn create(
        &self,
        parent: &Parent,
        rp: &RouterPlan,
        image: &str,
        host_dir: &Path,
        timeout: Duration,
        progress: bool,
        created: &mut Created,
    ) -> Result<Status, Error> {
        let deadline = Instant::now() + timeout;
        let file_err = |what, source| Error::File {
            what,
            path: host_dir.to_path_buf(),
            source,
        };
        // A directory left by a crashed run holds nothing worth keeping but
        // its lease, which the agent may reuse; it is ours either way.
        std::fs::create_dir_all(host_dir).map_err(|e| file_err("cannot create", e))?;
        created.dir = Some(host_dir.to_path_buf());
        std::fs::set_permissions(host_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| file_err("cannot restrict", e))?;
        let socket = socket_of(host_dir);
        let _ = std::fs::remove_file(&socket);

        let id = self.docker.create_router(rp, image, host_dir).await?;
        created.container = Some(id.clone());
        self.docker.start(&id).await?;
        self.plumb(&id, &rp.router_name, parent, rp.mode, rp.mac)
            .await?;
        tracing::info!(router = %rp.router_name, "router started, LAN leg plumbed");

        let mut client = connect_when_ready(&socket, deadline).await?;
        apply(&mut client, &rp.plan).await?;
        let mut last_state = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let status = client.wait_bound(left.min(Duration::from_secs(1))).await?;
            if status.lease.is_some() {
                return Ok(status);
            }
            let state = status.state.to_string();
            if Instant::now() >= deadline {
                return Err(Error::UpTimeout {
                    service: rp.service.clone(),
                    secs: timeout.as_secs(),
                    state,
                });
            }
            if progress && state != last_state {
                eprintln!("{}: waiting for a DHCP lease ({state})", rp.service);
                last_state = state;
            }
        }
    }

    /// Creates the LAN leg in a running router's namespace. A leg that is
    /// already there is fine.
    async fn plumb(
        &self,
        id: &str,
        name: &str,
        parent: &Parent,
        mode: Mode,
        mac: [u8; 6],
    ) -> Result<(), Error> {
        let pid = self
            .docker
            .pid(id)
            .await?
            .ok_or_else(|| Error::RouterDied(name.to_string()))?;
        match self.plumber.add_leg(parent, pid, LAN_IF, mode, mac).await {
            Ok(()) => {}
            Err(PlumbError::Netlink { source, .. })
                if netlink_errno(&source) == Some(libc::EEXIST) => {}
            Err(e) => return Err(e.into()),
        }
        // The namespace was opened by pid: make sure it was still this router's.
        if self.docker.pid(id).await? != Some(pid) {
            return Err(Error::RouterDied(name.to_string()));
        }
        Ok(())
    }

    /// Brings a router back in line with its service: starts it if it is
    /// stopped, re-plumbs its leg and re-sends the plan when its agent lost
    /// them (router restarted), and sends a new plan when the service's
    /// address or state changed. Changes nothing that is already right.
    pub async fn heal(&self, r: &RouterInfo, svc: &ServiceInfo) -> Result<Healed, Error> {
        let mut did = Healed::Nothing;
        let opts = options_of(r);
        let desired = desired_plan(svc, &opts)?;
        if !r.running {
            self.docker.start(&r.id).await?;
            did = Healed::Started;
        }
        let host_dir = host_dir_of(r);
        let socket = socket_of(&host_dir);
        // Short: watch heals one service at a time, and a router whose agent does
        // not answer is retried later (its `die` event, if any, comes meanwhile).
        let deadline = Instant::now() + HEAL_CONNECT;
        let mut client = connect_when_ready(&socket, deadline).await?;
        let status = client.status().await?;
        if status.state == netcontainer_proto::State::WaitingForPlan || status.interface.is_none() {
            let parent_name = opts.parent.clone().unwrap_or_default();
            let parent = self.plumber.parent(&parent_name).await?;
            let mac = opts.mac.unwrap_or_else(|| plan::stable_mac(&svc.name));
            self.plumb(&r.id, &r.name, &parent, opts.mode.unwrap_or_default(), mac)
                .await?;
            apply(&mut client, &desired).await?;
            tracing::info!(service = %svc.name, router = %r.name, "router re-plumbed and plan sent");
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
        if current != desired.forwards || status.hostname != desired.hostname {
            apply(&mut client, &desired).await?;
            tracing::info!(service = %svc.name, forwards = desired.forwards.len(), "plan updated");
            did = Healed::PlanSent;
        }
        Ok(did)
    }

    /// Stops (the agent releases its lease) and removes a router and its
    /// host directory.
    pub async fn down(&self, r: &RouterInfo, grace_secs: i32) -> Result<(), Error> {
        self.docker.remove(&r.id, grace_secs).await?;
        let dir = host_dir_of(r);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::File {
                what: "cannot remove",
                path: dir,
                source,
            }),
        }
    }
}

/// The plan a router should have for `svc`: its forwards when the service
/// runs, none (lease kept) when it is stopped.
pub fn desired_plan(svc: &ServiceInfo, opts: &UpOptions) -> Result<Plan, Error> {
    if svc.running {
        return Ok(plan::derive(svc, opts)?.plan);
    }
    let hostname = opts
        .hostname
        .clone()
        .unwrap_or_else(|| plan::hostname_for(&svc.name));
    Ok(Plan {
        interface: LAN_IF.into(),
        hostname: Some(hostname),
        client_id: Some(plan::client_id(&svc.name)),
        broadcast_flag: false,
        forwards: Vec::new(),
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
#[derive(Default)]
struct Created {
    dir: Option<PathBuf>,
    container: Option<String>,
}

impl Created {
    async fn roll_back(self, docker: &DockerClient) {
        if let Some(id) = self.container {
            // The macvlan leg lives in the router's namespace and goes with it.
            if let Err(e) = docker.remove(&id, 5).await {
                tracing::warn!(container = %id, error = %e, "roll-back: removing the router failed");
                eprintln!("warning: could not remove router container {id}: {e}");
            }
        }
        if let Some(dir) = self.dir
            && let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("warning: could not remove {}: {e}", dir.display());
        }
    }
}

/// Labels of a service that asks for a router (`netcontainer.enable=true`).
pub fn wants_router(labels: &HashMap<String, String>) -> bool {
    labels
        .get(plan::labels::ENABLE)
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
}
