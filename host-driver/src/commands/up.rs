//! `netcontainer up CONTAINER --parent IFACE`: give a running container its
//! own address on the LAN.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use netcontainer_proto::{Request, Response, Status};

use crate::agent_client::{AgentClient, unexpected};
use crate::commands::{default_image, require_root, run_dir};
use crate::docker::DockerClient;
use crate::error::Error;
use crate::plan::{self, LAN_IF, Mode, PortSpec, RouterPlan, UpOptions, parse_mac};
use crate::plumb::Plumber;

#[derive(Args, Debug)]
pub struct UpArgs {
    /// The service container (name or id); it must be running.
    container: String,
    /// Host NIC on the LAN; default: the container's `netcontainer.parent` label.
    #[arg(long)]
    parent: Option<String>,
    /// macvlan (default), or ipvlan for parents that drop unknown MACs.
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Port to forward, PORT[-PORT]/PROTO (repeatable); default: the exposed ports.
    #[arg(long, value_name = "PORT[-PORT]/PROTO")]
    publish: Vec<PortSpec>,
    /// Hostname to register with the DHCP server; default: the container name.
    #[arg(long)]
    hostname: Option<String>,
    /// MAC address of the LAN leg; default: derived from the container name.
    #[arg(long, value_parser = parse_mac)]
    mac: Option<[u8; 6]>,
    /// Router image.
    #[arg(long, default_value_t = default_image())]
    image: String,
    /// Seconds to wait for the lease.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

pub async fn run(a: UpArgs) -> Result<(), Error> {
    require_root()?;
    let docker = DockerClient::connect().await?;
    let svc = docker.service(&a.container).await?;
    if let Some(r) = docker.router(&svc.name).await? {
        let address = match router_status(&r.labels).await {
            Some(s) => s
                .lease
                .map(|l| format!(", {}", l.address))
                .unwrap_or_default(),
            None => String::new(),
        };
        return Err(Error::AlreadyUp {
            service: svc.name,
            router: r.name,
            address,
        });
    }
    let opts = UpOptions {
        parent: a.parent,
        mode: a.mode,
        publish: a.publish,
        hostname: a.hostname,
        mac: a.mac,
    };
    let rp = plan::derive(&svc, &opts)?;
    let plumber = Plumber::new()?;
    let parent = plumber.parent(&rp.parent).await?;
    if !docker.image_exists(&a.image).await? {
        return Err(crate::docker::DockerError::NoImage(a.image).into());
    }

    let host_dir = run_dir().join(&rp.service);
    let mut created = Created {
        dir: None,
        container: None,
    };
    let result = create(
        &docker,
        &plumber,
        &parent,
        &rp,
        &a.image,
        &host_dir,
        a.timeout,
        &mut created,
    )
    .await;
    match result {
        Ok(status) => {
            let addr = status
                .lease
                .as_ref()
                .map(|l| l.address.to_string())
                .unwrap_or_default();
            println!("{} {} {}", rp.service, addr, plan::ports_text(&rp.ports));
            Ok(())
        }
        Err(e) => {
            created.roll_back(&docker).await;
            Err(e)
        }
    }
}

/// What `up` made so far, for the roll-back.
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

#[allow(clippy::too_many_arguments)]
async fn create(
    docker: &DockerClient,
    plumber: &Plumber,
    parent: &crate::plumb::Parent,
    rp: &RouterPlan,
    image: &str,
    host_dir: &Path,
    timeout_secs: u64,
    created: &mut Created,
) -> Result<Status, Error> {
    let started = Instant::now();
    let file_err = |what, source| Error::File {
        what,
        path: host_dir.to_path_buf(),
        source,
    };
    // A directory left by a crashed run holds nothing worth keeping but its
    // lease, which the agent may reuse; it is ours either way.
    std::fs::create_dir_all(host_dir).map_err(|e| file_err("cannot create", e))?;
    created.dir = Some(host_dir.to_path_buf());
    std::fs::set_permissions(host_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| file_err("cannot restrict", e))?;
    let socket = host_dir.join("agent.sock");
    let _ = std::fs::remove_file(&socket);

    let id = docker.create_router(rp, image, host_dir).await?;
    created.container = Some(id.clone());
    docker.start(&id).await?;
    let pid = docker
        .pid(&id)
        .await?
        .ok_or_else(|| Error::RouterDied(rp.router_name.clone()))?;
    plumber
        .add_leg(parent, pid, LAN_IF, rp.mode, rp.mac)
        .await?;
    if docker.pid(&id).await? != Some(pid) {
        return Err(Error::RouterDied(rp.router_name.clone()));
    }
    tracing::info!(router = %rp.router_name, pid, "router started, LAN leg plumbed");

    let deadline = started + Duration::from_secs(timeout_secs);
    let mut client = connect_when_ready(&socket, deadline).await?;
    match client
        .request(&Request::Apply(rp.plan.clone()), Duration::ZERO)
        .await?
    {
        Response::Applied(_) => {}
        other => return Err(unexpected(other)),
    }
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
                secs: timeout_secs,
                state,
            });
        }
        if state != last_state {
            eprintln!("{}: waiting for a DHCP lease ({state})", rp.service);
            last_state = state;
        }
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

/// Status of a router's agent through the socket recorded in its labels;
/// `None` when it does not answer (quickly).
pub async fn router_status(labels: &std::collections::HashMap<String, String>) -> Option<Status> {
    let dir = labels.get(plan::labels::STATE_DIR)?;
    let socket = Path::new(dir).join("agent.sock");
    let fut = async {
        let mut c = AgentClient::connect(&socket).await.ok()?;
        c.status().await.ok()
    };
    tokio::time::timeout(Duration::from_secs(3), fut)
        .await
        .ok()
        .flatten()
}
