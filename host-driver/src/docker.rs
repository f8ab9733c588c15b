//! The Docker side: inspecting services, creating and removing routers.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HostConfig, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, InspectContainerOptions,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};

use crate::plan::{RouterPlan, ServiceInfo, labels};

/// Where the agent's socket and lease live inside the router.
pub const ROUTER_STATE_DIR: &str = "/run/netcontainer";

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach the Docker daemon: {0}")]
    Unreachable(String),
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error("router image {0} is not present on this host")]
    NoImage(String),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: BollardError,
    },
}

impl DockerError {
    pub fn hint(&self) -> Option<String> {
        match self {
            DockerError::Unreachable(_) => Some(
                "is dockerd running, and are you root? (DOCKER_HOST selects another socket)".into(),
            ),
            DockerError::NoSuchContainer(_) => {
                Some("`docker ps` lists the running containers".into())
            }
            DockerError::NoImage(i) => Some(format!(
                "build it offline with ./scripts/build-router-image, or `docker pull {i}` from a registry that has it"
            )),
            DockerError::Api { .. } => None,
        }
    }
}

fn api(what: impl Into<String>) -> impl FnOnce(BollardError) -> DockerError {
    let what = what.into();
    move |source| DockerError::Api { what, source }
}

fn is_404(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// A container event, reduced to what `watch` needs.
#[derive(Clone, Debug)]
pub struct ContainerEvent {
    pub action: String,
    pub name: String,
    /// Docker puts the container's labels among the event's attributes.
    pub labels: HashMap<String, String>,
}

/// A router container found by its labels.
#[derive(Clone, Debug)]
pub struct RouterInfo {
    pub id: String,
    pub name: String,
    pub service: String,
    pub running: bool,
    pub labels: HashMap<String, String>,
}

#[derive(Clone)]
pub struct DockerClient {
    docker: Docker,
}

impl DockerClient {
    /// Connects and negotiates the API version (the daemon may be older
    /// than the client library).
    pub async fn connect() -> Result<Self, DockerError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| DockerError::Unreachable(e.to_string()))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| DockerError::Unreachable(e.to_string()))?;
        Ok(DockerClient { docker })
    }

    pub async fn inspect(&self, name: &str) -> Result<ContainerInspectResponse, DockerError> {
        self.docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| {
                if is_404(&e) {
                    DockerError::NoSuchContainer(name.into())
                } else {
                    api(format!("inspecting {name}"))(e)
                }
            })
    }

    pub async fn service(&self, name: &str) -> Result<ServiceInfo, DockerError> {
        Ok(service_info(&self.inspect(name).await?))
    }

    /// The router of `service`, if there is one (by its well-known name,
    /// checked against the role label so a stranger's container is never taken).
    pub async fn router(&self, service: &str) -> Result<Option<RouterInfo>, DockerError> {
        let name = crate::plan::router_name(service);
        match self.inspect(&name).await {
            Ok(c) => Ok(router_info(&c).filter(|r| r.service == service)),
            Err(DockerError::NoSuchContainer(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every router on this host, found by label.
    pub async fn routers(&self) -> Result<Vec<RouterInfo>, DockerError> {
        let filters = HashMap::from([(
            "label",
            vec![format!("{}={}", labels::ROLE, labels::ROLE_ROUTER)],
        )]);
        let list = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(api("listing router containers"))?;
        let mut out = Vec::new();
        for c in list {
            let Some(id) = c.id else { continue };
            // Inspect for the pid; a container removed meanwhile is skipped.
            match self.inspect(&id).await {
                Ok(full) => out.extend(router_info(&full)),
                Err(DockerError::NoSuchContainer(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.service.cmp(&b.service));
        Ok(out)
    }

    pub async fn image_exists(&self, image: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_404(&e) => Ok(false),
            Err(e) => Err(api(format!("inspecting image {image}"))(e)),
        }
    }

    /// Creates (not starts) the router container.
    pub async fn create_router(
        &self,
        plan: &RouterPlan,
        image: &str,
        host_dir: &Path,
    ) -> Result<String, DockerError> {
        let sysctls = HashMap::from([
            ("net.ipv4.ip_forward".to_string(), "1".to_string()),
            // lan0 appears after start; loose reverse-path filtering lets
            // clients from routed subnets in (their main-table route points
            // at Docker's side).
            ("net.ipv4.conf.all.rp_filter".to_string(), "0".to_string()),
            (
                "net.ipv4.conf.default.rp_filter".to_string(),
                "0".to_string(),
            ),
        ]);
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            // Arguments after the image's ENTRYPOINT (the agent).
            cmd: plan.arp_probe.then(|| vec!["--arp-probe".to_string()]),
            hostname: Some(
                crate::plan::router_name(&plan.service)
                    .chars()
                    .take(63)
                    .collect(),
            ),
            labels: Some({
                let mut l = plan.labels();
                l.insert(labels::STATE_DIR.into(), host_dir.display().to_string());
                l
            }),
            host_config: Some(HostConfig {
                cap_add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
                binds: Some(vec![format!(
                    "{}:{ROUTER_STATE_DIR}:rw",
                    host_dir.display()
                )]),
                network_mode: Some(plan.network.clone()),
                sysctls: Some(sysctls),
                init: Some(false),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    plan.network.clone(),
                    EndpointSettings::default(),
                )])),
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default()
            .name(&plan.router_name)
            .build();
        let resp = self
            .docker
            .create_container(Some(opts), body)
            .await
            .map_err(api(format!("creating {}", plan.router_name)))?;
        for w in resp.warnings {
            tracing::warn!(container = %plan.router_name, "docker: {w}");
        }
        Ok(resp.id)
    }

    pub async fn start(&self, id: &str) -> Result<(), DockerError> {
        match self.docker.start_container(id, None).await {
            Ok(()) => Ok(()),
            // 304: already running (e.g. `docker restart` got there first).
            Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(api(format!("starting {id}"))(e)),
        }
    }

    /// Container start/die/destroy events, from now on.
    pub fn events(
        &self,
    ) -> impl futures::Stream<Item = Result<ContainerEvent, DockerError>> + use<> {
        use futures::StreamExt;
        let filters = HashMap::from([
            ("type", vec!["container"]),
            ("event", vec!["start", "die", "destroy"]),
        ]);
        let opts = EventsOptionsBuilder::default().filters(&filters).build();
        self.docker.events(Some(opts)).map(|ev| {
            let ev = ev.map_err(api("reading Docker events"))?;
            let actor = ev.actor.unwrap_or_default();
            let attributes = actor.attributes.unwrap_or_default();
            Ok(ContainerEvent {
                action: ev.action.unwrap_or_default(),
                name: attributes.get("name").cloned().unwrap_or_default(),
                labels: attributes,
            })
        })
    }

    /// Names of the containers (running or not) that carry `label`.
    pub async fn names_with_label(&self, label: &str) -> Result<Vec<String>, DockerError> {
        let filters = HashMap::from([("label", vec![label.to_string()])]);
        let list = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(api(format!("listing containers labelled {label}")))?;
        Ok(list
            .into_iter()
            .filter_map(|c| c.names.and_then(|n| n.into_iter().next()))
            .map(|n| n.trim_start_matches('/').to_string())
            .collect())
    }

    /// The pid of a running container.
    pub async fn pid(&self, id: &str) -> Result<Option<u32>, DockerError> {
        let c = self.inspect(id).await?;
        Ok(pid_of(&c))
    }

    /// Stops (SIGTERM, then SIGKILL after `grace_secs`) and removes a container.
    /// A container that is already gone is not an error.
    pub async fn remove(&self, id: &str, grace_secs: i32) -> Result<(), DockerError> {
        match self
            .docker
            .stop_container(
                id,
                Some(StopContainerOptionsBuilder::default().t(grace_secs).build()),
            )
            .await
        {
            Ok(()) => {}
            Err(e) if is_404(&e) => return Ok(()),
            // 304: already stopped.
            Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => {}
            Err(e) => tracing::warn!(container = %id, error = %e, "stop failed; removing by force"),
        }
        match self
            .docker
            .remove_container(
                id,
                Some(
                    RemoveContainerOptionsBuilder::default()
                        .force(true)
                        .v(true)
                        .build(),
                ),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_404(&e) => Ok(()),
            Err(e) => Err(api(format!("removing {id}"))(e)),
        }
    }
}

fn pid_of(c: &ContainerInspectResponse) -> Option<u32> {
    c.state
        .as_ref()
        .and_then(|s| s.pid)
        .filter(|p| *p > 0)
        .and_then(|p| u32::try_from(p).ok())
}

fn name_of(c: &ContainerInspectResponse) -> String {
    c.name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string()
}

/// Extracts what `plan` needs from `docker inspect`.
pub fn service_info(c: &ContainerInspectResponse) -> ServiceInfo {
    let host = c.host_config.as_ref();
    let networks = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|nets| {
            nets.iter()
                .filter_map(|(name, ep)| {
                    let ip: Ipv4Addr = ep.ip_address.as_deref()?.parse().ok()?;
                    Some((name.clone(), ip))
                })
                .collect()
        })
        .unwrap_or_default();
    let config = c.config.as_ref();
    ServiceInfo {
        name: name_of(c),
        id: c.id.clone().unwrap_or_default(),
        running: c.state.as_ref().and_then(|s| s.running).unwrap_or(false),
        network_mode: host
            .and_then(|h| h.network_mode.clone())
            .unwrap_or_default(),
        networks,
        exposed: config
            .and_then(|c| c.exposed_ports.clone())
            .unwrap_or_default(),
        published: host
            .and_then(|h| h.port_bindings.as_ref())
            .map(|b| b.keys().cloned().collect())
            .unwrap_or_default(),
        labels: config.and_then(|c| c.labels.clone()).unwrap_or_default(),
    }
}

fn router_info(c: &ContainerInspectResponse) -> Option<RouterInfo> {
    let labels = c
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    if labels.get(labels::ROLE).map(String::as_str) != Some(labels::ROLE_ROUTER) {
        return None;
    }
    Some(RouterInfo {
        id: c.id.clone().unwrap_or_default(),
        name: name_of(c),
        service: labels.get(labels::SERVICE).cloned().unwrap_or_default(),
        running: c.state.as_ref().and_then(|s| s.running).unwrap_or(false),
        labels,
    })
}
