//! The Docker side: inspecting services, creating and removing routers.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HostConfig, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    InspectContainerOptions, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};

use crate::labels;
use crate::plan::{RouterPlan, ServiceInfo};
use crate::state::ServiceName;
use netcontainer_proto::Ipv6Mode;

/// Where the agent's socket and lease live inside the router (the agent's
/// default `--state-dir`, so the image's entrypoint names none).
pub const ROUTER_STATE_DIR: &str = netcontainer_proto::contract::STATE_DIR;
/// Where a router's lease directory is mounted (from the host's lib
/// directory, which outlives a reboot).
pub const ROUTER_LEASE_DIR: &str = netcontainer_proto::contract::LEASE_DIR;

/// The agent's arguments in a router (after the image's entrypoint).
pub fn router_cmd(plan: &RouterPlan) -> Vec<String> {
    use netcontainer_proto::contract::flag;
    // --keep-lease: a host's shutdown stops the router with SIGTERM, and the
    // lease is to be claimed again after the reboot; `down` releases it with a
    // Shutdown request (`agent_client::release`).
    let mut cmd = vec![
        flag::LEASE_DIR.to_string(),
        ROUTER_LEASE_DIR.to_string(),
        flag::KEEP_LEASE.to_string(),
    ];
    if plan.arp_probe {
        cmd.push(flag::ARP_PROBE.to_string());
    }
    if let Some(ip) = plan.requested {
        cmd.push(flag::REQUEST_ADDRESS.to_string());
        cmd.push(ip.to_string());
    }
    cmd
}

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("cannot reach the Docker daemon: {0}")]
    Unreachable(String),
    #[error("no such container: {0}")]
    NoSuchContainer(String),
    #[error(transparent)]
    Name(#[from] crate::state::NameError),
    #[error("network {0} is not attachable: a router cannot join it")]
    NotAttachable(String),
    #[error(
        "network {network} has inter-container traffic off (com.docker.network.bridge.enable_icc=false): Docker drops what the router forwards to {service} on it"
    )]
    NoIcc { network: String, service: String },
    /// Neither on this host nor in the registry the reference names (the
    /// pull found no such repository or tag).
    #[error("router image {0} is not on this host and its registry does not have it")]
    NoImage(String),
    #[error("cannot pull router image {image}: {detail}")]
    Pull { image: String, detail: String },
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: BollardError,
    },
}

impl DockerError {
    /// Docker's "multiple IDs found with provided prefix": a name that no
    /// container has exactly, but that begins several containers' IDs.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, DockerError::Api { source, .. } if source.to_string().contains("multiple IDs found"))
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            DockerError::Unreachable(_) => Some(
                "is dockerd running, and are you root? (DOCKER_HOST selects another socket)".into(),
            ),
            DockerError::NoSuchContainer(_) => {
                Some("`docker ps` lists the running containers".into())
            }
            DockerError::NoImage(_) => Some(
                "check the name and tag (--image); build the image here with ./scripts/build-router-image, or push it to your registry with ./scripts/publish-router-image; a private repository needs `docker login` (~/.docker/config.json)".into(),
            ),
            DockerError::Pull { detail, .. } => Some(
                if ["unauthorized", "denied", "authentication required"]
                    .iter()
                    .any(|w| detail.to_ascii_lowercase().contains(w))
                {
                    "netcontainer uses the login `docker login` stored in ~/.docker/config.json (auths; credential helpers are not run)"
                } else {
                    "is the registry reachable from this host? (`docker pull` of the same reference shows the daemon's view)"
                }
                .into(),
            ),
            DockerError::Name(e) => Some(e.hint().into()),
            DockerError::NotAttachable(n) => Some(format!(
                "a Swarm overlay must be attachable for a router to join it: create it with `docker network create -d overlay --attachable {n}` (an existing network cannot be changed)"
            )),
            DockerError::NoIcc { service, .. } => Some(format!(
                "put {service} also on a network with ICC on and choose it: `docker network create NET; docker network connect NET {service}; netcontainer up {service} --network NET`"
            )),
            DockerError::Api { .. } => None,
        }
    }
}

fn api(what: impl Into<String>) -> impl FnOnce(BollardError) -> DockerError {
    let what = what.into();
    move |source| DockerError::Api { what, source }
}

/// The sysctls of a router container: the contract's lists
/// ([`netcontainer_proto::contract::ROUTER_SYSCTLS`], and
/// [`netcontainer_proto::contract::ROUTER_SYSCTLS6`] when this kernel has
/// IPv6: Docker refuses to start a container with a sysctl that does not
/// exist), and IPv6 on or off as the router's `--ipv6` says. Docker turns
/// IPv6 off (`all` and `default`) in a container on IPv4-only networks,
/// and `lan0`, which appears later, takes `default`'s value; the agent
/// cannot change it in the read-only `/proc/sys`.
fn router_sysctls(
    ipv6: Ipv6Mode,
    kernel_path: bool,
    kernel_has_ipv6: bool,
) -> HashMap<String, String> {
    use netcontainer_proto::contract::{IPV6_FORWARDING, ROUTER_SYSCTLS, ROUTER_SYSCTLS6};
    let mut out: HashMap<String, String> = ROUTER_SYSCTLS
        .iter()
        .chain(ROUTER_SYSCTLS6.iter().filter(|_| kernel_has_ipv6))
        .map(|s| (s.name.to_string(), s.value.to_string()))
        .collect();
    if kernel_has_ipv6 {
        let on = |v: &str| {
            [
                ("net.ipv6.conf.all.disable_ipv6".to_string(), v.to_string()),
                (
                    "net.ipv6.conf.default.disable_ipv6".to_string(),
                    v.to_string(),
                ),
            ]
        };
        match ipv6 {
            Ipv6Mode::Auto => {
                out.extend(on("0"));
                if kernel_path {
                    out.insert(IPV6_FORWARDING.name.into(), IPV6_FORWARDING.value.into());
                }
            }
            // Only what appears later (lan0): the Docker side keeps
            // what its network gave it.
            Ipv6Mode::Off => {
                out.insert("net.ipv6.conf.default.disable_ipv6".into(), "1".into());
            }
        }
    }
    out
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
    pub service: ServiceName,
    pub running: bool,
    pub labels: HashMap<String, String>,
}

/// A Docker bridge network's IPv4 side, as the host sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeNet {
    pub id: String,
    pub name: String,
    /// The host's address on the network's bridge.
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
}

/// Docker's own published TCP ports of a container: (container port, host
/// port), for bindings on all addresses (docker-mirror's default `hostIp`).
pub fn published_tcp(c: &ContainerInspectResponse) -> Vec<(u16, u16)> {
    let mut out: Vec<(u16, u16)> = c
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref())
        .map(|ports| {
            ports
                .iter()
                .filter_map(|(k, bindings)| {
                    let private: u16 = k.strip_suffix("/tcp")?.parse().ok()?;
                    let host = bindings.as_ref()?.iter().find_map(|b| {
                        let ip = b.host_ip.as_deref().unwrap_or_default();
                        if ip.is_empty() || ip == "0.0.0.0" {
                            b.host_port.as_deref()?.parse::<u16>().ok()
                        } else {
                            None
                        }
                    })?;
                    Some((private, host))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[derive(Clone)]
pub struct DockerClient {
    docker: Docker,
    /// The daemon's ID (`docker info`), part of standalone identities.
    daemon_id: String,
    /// Labels of images by ID: an image ID names immutable content, so its
    /// labels are read once per process (watch inspects every container's
    /// image on every look, see `own_labels`).
    image_labels: Arc<Mutex<HashMap<String, HashMap<String, String>>>>,
    /// Whether a network is `--internal`, by network ID (immutable for the
    /// life of a network, so read once per process).
    internal_networks: Arc<Mutex<HashMap<String, bool>>>,
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
        let daemon_id = docker
            .info()
            .await
            .map_err(|e| DockerError::Unreachable(e.to_string()))?
            .id
            .filter(|id| !id.is_empty())
            .ok_or_else(|| DockerError::Unreachable("the daemon reports no ID".into()))?;
        Ok(DockerClient {
            docker,
            daemon_id,
            image_labels: Arc::default(),
            internal_networks: Arc::default(),
        })
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

    /// The labels of an image, by ID or reference.
    async fn image_labels(&self, image: &str) -> Result<HashMap<String, String>, DockerError> {
        // Only IDs are cached: a tag can be moved to other content.
        let by_id = image.starts_with("sha256:");
        if by_id && let Some(l) = self.cached_image_labels(image) {
            return Ok(l);
        }
        let labels = match self.docker.inspect_image(image).await {
            Ok(i) => i.config.and_then(|c| c.labels).unwrap_or_default(),
            Err(e) if is_404(&e) => return Err(DockerError::NoImage(image.into())),
            Err(e) => return Err(api(format!("inspecting image {image}"))(e)),
        };
        if by_id {
            self.image_labels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(image.to_string(), labels.clone());
        }
        Ok(labels)
    }

    fn cached_image_labels(&self, id: &str) -> Option<HashMap<String, String>> {
        self.image_labels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// The labels the operator set on container `c` itself: Docker merges
    /// the image's `LABEL`s into a container's labels, and an image author
    /// must not steer the host (ask for a router, pick a MAC, a parent, a
    /// name). A label whose value equals the image's label of the same key is
    /// the image's. If the image cannot be found any more, no `netcontainer.*`
    /// label counts (fail closed).
    async fn own_labels(
        &self,
        c: &ContainerInspectResponse,
    ) -> Result<HashMap<String, String>, DockerError> {
        let mut l = c
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let image = c.image.as_deref().unwrap_or_default();
        match self.image_labels(image).await {
            Ok(from_image) => l.retain(|k, v| from_image.get(k) != Some(v)),
            Err(DockerError::NoImage(_)) => {
                tracing::warn!(container = %name_of(c), %image, "image gone: ignoring the container's netcontainer labels");
                l.retain(|k, _| !k.starts_with(labels::PREFIX));
            }
            Err(e) => return Err(e),
        }
        Ok(l)
    }

    /// A service container by name or ID, with only its own labels.
    pub async fn service(&self, name: &str) -> Result<ServiceInfo, DockerError> {
        let c = self.inspect(name).await?;
        let own = self.own_labels(&c).await?;
        let mut info = service_info(&c, own, &self.daemon_id);
        info.internal = self.internal_of(&c).await?;
        // Docker's names are valid; checked anyway, since paths are built from it.
        ServiceName::parse(&info.name)?;
        Ok(info)
    }

    /// Inspects a container and, if it is a router (by its own labels, with a
    /// valid service name), describes it.
    async fn router_of(&self, id_or_name: &str) -> Result<Option<RouterInfo>, DockerError> {
        let c = match self.inspect(id_or_name).await {
            Ok(c) => c,
            Err(DockerError::NoSuchContainer(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let own = self.own_labels(&c).await?;
        Ok(router_info(&c, own))
    }

    /// The service a container stands for: itself, or a router's service.
    async fn service_of(&self, c: &ContainerInspectResponse) -> Result<ServiceName, DockerError> {
        let own = self.own_labels(c).await?;
        if let Some(r) = router_info(c, own) {
            return Ok(r.service);
        }
        Ok(ServiceName::parse(&name_of(c))?)
    }

    /// The router of `service`, if there is one (by its well-known name,
    /// checked against the role label so a stranger's container is never taken).
    pub async fn router(&self, service: &ServiceName) -> Result<Option<RouterInfo>, DockerError> {
        let name = crate::plan::router_name(service.as_str());
        Ok(self
            .router_of(&name)
            .await?
            .filter(|r| &r.service == service))
    }

    /// What a name or ID given by the user means: the service it names (a
    /// router stands for its service), or, when no container answers to it,
    /// the removed service whose router has that service name or whose
    /// service ID starts with it. Docker resolves a full ID, then an exact
    /// name, then an ID prefix, so a name that is also a prefix of another
    /// container's ID means the named container.
    pub async fn resolve(&self, arg: &str) -> Result<ServiceName, DockerError> {
        let given = ServiceName::parse(arg)?;
        let found = match self.inspect(given.as_str()).await {
            Ok(c) => Some(c),
            Err(DockerError::NoSuchContainer(_)) => None,
            Err(e) if e.is_ambiguous() => None,
            Err(e) => return Err(e),
        };
        // A container by its exact name or full ID is what the user means.
        if let Some(c) = &found
            && (name_of(c) == given.as_str() || c.id.as_deref() == Some(given.as_str()))
        {
            return self.service_of(c).await;
        }
        // Docker matched only a prefix of some container's ID (or several):
        // a removed service of exactly that name, whose router is still
        // here, is the better answer.
        if self.router(&given).await?.is_some() {
            return Ok(given);
        }
        if let Some(c) = &found {
            return self.service_of(c).await;
        }
        let is_hex = given.as_str().chars().all(|c| c.is_ascii_hexdigit());
        if is_hex {
            let by_id: Vec<RouterInfo> = self
                .routers()
                .await?
                .into_iter()
                .filter(|r| {
                    r.labels
                        .get(labels::SERVICE_ID)
                        .is_some_and(|id| id.starts_with(given.as_str()))
                })
                .collect();
            if let [only] = by_id.as_slice() {
                return Ok(only.service.clone());
            }
        }
        Ok(given)
    }

    /// Every router on this host, found by label.
    pub async fn routers(&self) -> Result<Vec<RouterInfo>, DockerError> {
        self.routers_labelled(&[]).await
    }

    /// The routers made with `identity` (one list call, whatever the number
    /// of routers on the host).
    pub async fn routers_of_identity(
        &self,
        identity: &str,
    ) -> Result<Vec<RouterInfo>, DockerError> {
        let want = format!("{}={identity}", labels::IDENTITY);
        Ok(self
            .routers_labelled(&[want])
            .await?
            .into_iter()
            .filter(|r| r.labels.get(labels::IDENTITY).map(String::as_str) == Some(identity))
            .collect())
    }

    /// Routers carrying every label filter in `more` too.
    async fn routers_labelled(&self, more: &[String]) -> Result<Vec<RouterInfo>, DockerError> {
        let mut label = vec![format!("{}={}", labels::ROLE, labels::ROLE_ROUTER)];
        label.extend(more.iter().cloned());
        let filters = HashMap::from([("label", label)]);
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
            // Inspected for its own labels; a container removed meanwhile is skipped.
            out.extend(self.router_of(&id).await?);
        }
        out.sort_by(|a, b| a.service.cmp(&b.service));
        Ok(out)
    }

    /// Refuses a network on which the router cannot reach the service: a
    /// bridge with `com.docker.network.bridge.enable_icc=false` (Docker drops
    /// bridged traffic between its containers, the router's DNAT included).
    pub async fn check_network(&self, network: &str, service: &str) -> Result<(), DockerError> {
        let n = self
            .docker
            .inspect_network(
                network,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .map_err(api(format!("inspecting network {network}")))?;
        let icc_off = n
            .options
            .as_ref()
            .and_then(|o| o.get("com.docker.network.bridge.enable_icc"))
            .is_some_and(|v| v == "false");
        if icc_off {
            return Err(DockerError::NoIcc {
                network: network.to_string(),
                service: service.to_string(),
            });
        }
        Ok(())
    }

    /// The daemon's version (`docker version`'s server version).
    pub async fn version(&self) -> Result<String, DockerError> {
        let v = self
            .docker
            .version()
            .await
            .map_err(api("asking the daemon's version"))?;
        Ok(v.version.unwrap_or_else(|| "unknown".into()))
    }

    pub async fn image_exists(&self, image: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_404(&e) => Ok(false),
            Err(e) => Err(api(format!("inspecting image {image}"))(e)),
        }
    }

    /// Pulls `image` from its registry, with the login `docker login` left for
    /// that registry in the Docker config. Nothing is created when the
    /// registry has no such repository or tag ([`DockerError::NoImage`]).
    pub async fn pull(&self, image: &str, show: PullDisplay) -> Result<(), DockerError> {
        use futures::StreamExt;
        let reference =
            crate::registry::Reference::parse(image).map_err(|detail| DockerError::Pull {
                image: image.into(),
                detail,
            })?;
        let credentials = crate::registry::credentials(&reference.registry);
        let opts = CreateImageOptionsBuilder::default()
            .from_image(&reference.repository)
            .tag(&reference.tag)
            .build();
        let mut progress = PullProgress::new(image, show);
        let mut stream = self.docker.create_image(Some(opts), None, credentials);
        let started = std::time::Instant::now();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => progress.update(&info),
                Err(e) => return Err(pull_error(image, e)),
            }
        }
        // A stream that ends without an error message, yet without the image,
        // is a failure too (e.g. the daemon hung up).
        if !self.image_exists(image).await? {
            return Err(DockerError::Pull {
                image: image.into(),
                detail: "the daemon ended the pull without the image".into(),
            });
        }
        tracing::info!(%image, secs = format!("{:.1}", started.elapsed().as_secs_f64()), "router image pulled");
        Ok(())
    }

    /// Creates (not starts) the router container.
    pub async fn create_router(
        &self,
        plan: &RouterPlan,
        image: &str,
        host_dir: &Path,
        lease_dir: &Path,
    ) -> Result<String, DockerError> {
        // The agent sets these itself, but a container's /proc/sys is
        // read-only: Docker sets them, and the agent finds them right.
        let sysctls = router_sysctls(
            plan.plan.ipv6,
            plan.plan
                .service
                .as_ref()
                .is_some_and(|s| s.address6.is_some()),
            std::path::Path::new("/proc/sys/net/ipv6").exists(),
        );
        let cmd = router_cmd(plan);
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            // Arguments after the image's ENTRYPOINT (the agent).
            cmd: Some(cmd),
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
                binds: Some(vec![
                    format!("{}:{ROUTER_STATE_DIR}:rw", host_dir.display()),
                    format!("{}:{ROUTER_LEASE_DIR}:rw", lease_dir.display()),
                ]),
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
            .map_err(|e| match not_attachable(&e) {
                Some(n) => DockerError::NotAttachable(n),
                None => api(format!("creating {}", plan.router_name))(e),
            })?;
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
            // A Swarm overlay that is not attachable is refused when the
            // container starts (its endpoint is made then).
            Err(e) => Err(match not_attachable(&e) {
                Some(n) => DockerError::NotAttachable(n),
                None => api(format!("starting {id}"))(e),
            }),
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

    /// Names of the containers (running or not) that carry `label`, as the
    /// listing shows it (the image's labels included: callers inspect each
    /// for its own labels). Invalid names are left out.
    pub async fn names_with_label(&self, label: &str) -> Result<Vec<ServiceName>, DockerError> {
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
            .filter_map(|n| ServiceName::parse(&n).ok())
            .collect())
    }

    /// The names of the `--internal` networks a container is on.
    async fn internal_of(&self, c: &ContainerInspectResponse) -> Result<Vec<String>, DockerError> {
        let mut out = Vec::new();
        let nets = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.clone())
            .unwrap_or_default();
        for (name, ep) in nets {
            let Some(id) = ep.network_id.filter(|i| !i.is_empty()) else {
                continue;
            };
            let cached = self
                .internal_networks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&id)
                .copied();
            let internal = match cached {
                Some(i) => i,
                None => {
                    let n = self
                        .docker
                        .inspect_network(
                            &id,
                            None::<bollard::query_parameters::InspectNetworkOptions>,
                        )
                        .await
                        .map_err(api(format!("inspecting network {name}")))?;
                    let i = n.internal == Some(true);
                    self.internal_networks
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(id, i);
                    i
                }
            };
            if internal {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Bridge networks with an IPv4 gateway (where `watch` serves the
    /// "who am I?" endpoint); internal networks have no gateway to serve on.
    pub async fn bridge_networks(&self) -> Result<Vec<BridgeNet>, DockerError> {
        let nets = self
            .docker
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
            .await
            .map_err(api("listing networks"))?;
        Ok(nets
            .into_iter()
            .filter(|n| n.driver.as_deref() == Some("bridge") && n.internal != Some(true))
            .flat_map(|n| {
                let id = n.id.clone().unwrap_or_default();
                let name = n.name.clone().unwrap_or_default();
                n.ipam
                    .and_then(|i| i.config)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(move |c| {
                        let gateway: Ipv4Addr = c.gateway.as_deref()?.parse().ok()?;
                        let (_, plen) = c.subnet.as_deref()?.split_once('/')?;
                        let prefix_len: u8 = plen.parse().ok().filter(|p| (1..=30).contains(p))?;
                        Some(BridgeNet {
                            id: id.clone(),
                            name: name.clone(),
                            gateway,
                            prefix_len,
                        })
                    })
            })
            .collect())
    }

    /// The containers on a network: (id, name, IPv4 address).
    pub async fn network_members(
        &self,
        network_id: &str,
    ) -> Result<Vec<(String, String, Ipv4Addr)>, DockerError> {
        let n = self
            .docker
            .inspect_network(
                network_id,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .map_err(api(format!("inspecting network {network_id}")))?;
        Ok(n.containers
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(id, ep)| {
                let ip = ep
                    .ipv4_address
                    .as_deref()?
                    .split('/')
                    .next()?
                    .parse()
                    .ok()?;
                Some((id, ep.name.unwrap_or_default(), ip))
            })
            .collect())
    }

    /// A container's IPv4 address on `network`.
    pub async fn ip_on(&self, id: &str, network: &str) -> Result<Option<Ipv4Addr>, DockerError> {
        let c = self.inspect(id).await?;
        Ok(c.network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .and_then(|nets| nets.get(network))
            .and_then(|ep| ep.ip_address.as_deref())
            .and_then(|ip| ip.parse().ok()))
    }

    /// The pid of a running container.
    pub async fn pid(&self, id: &str) -> Result<Option<u32>, DockerError> {
        let c = self.inspect(id).await?;
        Ok(pid_of(&c))
    }

    /// A running container's pid and its network namespace handle
    /// (`SandboxKey`), for [`crate::plumb::open_netns`].
    pub async fn netns(
        &self,
        id: &str,
    ) -> Result<(Option<u32>, Option<std::path::PathBuf>), DockerError> {
        let c = self.inspect(id).await?;
        let key = c
            .network_settings
            .as_ref()
            .and_then(|n| n.sandbox_key.clone())
            .filter(|k| !k.is_empty())
            .map(std::path::PathBuf::from);
        Ok((pid_of(&c), key))
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

/// The network named in Docker's "network X not manually attachable".
fn not_attachable(e: &BollardError) -> Option<String> {
    let msg = e.to_string();
    let head = msg.split(" not manually attachable").next()?;
    if head.len() == msg.len() {
        return None;
    }
    head.rsplit(' ').next().map(str::to_string)
}

/// A pull's error as one line: "no such image or tag" or the daemon's words.
fn pull_error(image: &str, e: BollardError) -> DockerError {
    let message = match &e {
        BollardError::DockerResponseServerError {
            status_code: 404, ..
        } => return DockerError::NoImage(image.into()),
        BollardError::DockerResponseServerError { message, .. } => message.clone(),
        BollardError::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    };
    if is_not_found(&message) {
        return DockerError::NoImage(image.into());
    }
    DockerError::Pull {
        image: image.into(),
        detail: one_line(&message),
    }
}

/// The registry's and daemon's ways of saying "no such repository or tag".
fn is_not_found(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "manifest unknown",
        "name unknown",
        "not found",
        "does not exist",
    ]
    .iter()
    .any(|w| m.contains(w))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How a pull shows its progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullDisplay {
    /// A status line per layer, redrawn in place on stderr (a terminal).
    Terminal,
    /// One line on stderr when the pull starts.
    Line,
    /// Log records only (`watch`).
    Log,
}

impl PullDisplay {
    /// [`PullDisplay::Terminal`] when stderr is a terminal, else [`PullDisplay::Line`].
    pub fn for_stderr() -> PullDisplay {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            PullDisplay::Terminal
        } else {
            PullDisplay::Line
        }
    }
}

/// The per-layer status lines of a pull on a terminal.
struct PullProgress {
    show: PullDisplay,
    /// (layer id or "", text), in the order they first appeared.
    lines: Vec<(String, String)>,
    /// Lines drawn so far (the cursor is below them).
    drawn: usize,
}

impl PullProgress {
    fn new(image: &str, show: PullDisplay) -> Self {
        match show {
            PullDisplay::Terminal | PullDisplay::Line => {
                eprintln!("pulling router image {image}")
            }
            PullDisplay::Log => tracing::info!(%image, "pulling the router image"),
        }
        PullProgress {
            show,
            lines: Vec::new(),
            drawn: 0,
        }
    }

    fn update(&mut self, info: &bollard::models::CreateImageInfo) {
        if self.show != PullDisplay::Terminal {
            return;
        }
        let out = self.redraw(info);
        if !out.is_empty() {
            use std::io::Write;
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(out.as_bytes());
            let _ = e.flush();
        }
    }

    /// Takes in one progress record; returns what redraws the block of lines
    /// (cursor up over the lines drawn before, each line cleared and written).
    fn redraw(&mut self, info: &bollard::models::CreateImageInfo) -> String {
        let Some(text) = progress_text(info) else {
            return String::new();
        };
        let id = info.id.clone().unwrap_or_default();
        match self
            .lines
            .iter_mut()
            .find(|(i, _)| !id.is_empty() && *i == id)
        {
            Some(line) => line.1 = text,
            None => self.lines.push((id, text)),
        }
        let mut out = String::new();
        if self.drawn > 0 {
            out.push_str(&format!("\x1b[{}A", self.drawn));
        }
        for (id, text) in &self.lines {
            out.push_str("\r\x1b[2K");
            if !id.is_empty() {
                out.push_str(id);
                out.push_str(": ");
            }
            out.push_str(text);
            out.push('\n');
        }
        self.drawn = self.lines.len();
        out
    }
}

/// "Downloading 1.2/3.4 MB" from a pull's progress record.
fn progress_text(info: &bollard::models::CreateImageInfo) -> Option<String> {
    let status = info.status.as_deref()?.trim();
    if status.is_empty() {
        return None;
    }
    let detail = info.progress_detail.as_ref();
    match (detail.and_then(|d| d.current), detail.and_then(|d| d.total)) {
        (Some(cur), Some(total)) if total > 0 => Some(format!(
            "{status} {:.1}/{:.1} MB",
            cur as f64 / 1e6,
            total as f64 / 1e6
        )),
        _ => Some(status.to_string()),
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

/// Extracts what `plan` needs from `docker inspect`; `labels` are the
/// container's own (see [`DockerClient::own_labels`]).
pub fn service_info(
    c: &ContainerInspectResponse,
    labels: HashMap<String, String>,
    daemon_id: &str,
) -> ServiceInfo {
    let host = c.host_config.as_ref();
    // (network, its IPv4 address) and (network, Docker's gateway on it).
    let mut networks = Vec::new();
    let mut gateways = Vec::new();
    let mut networks6 = Vec::new();
    let endpoints = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref());
    for (name, ep) in endpoints.into_iter().flatten() {
        let parse = |s: &Option<String>| s.as_deref().and_then(|s| s.parse::<Ipv4Addr>().ok());
        if let Some(ip) = parse(&ep.ip_address) {
            networks.push((name.clone(), ip));
        }
        if let Some(gw) = parse(&ep.gateway) {
            gateways.push((name.clone(), gw));
        }
        let v6 = ep.global_ipv6_address.as_deref();
        if let Some(ip) = v6.and_then(|s| s.parse::<std::net::Ipv6Addr>().ok()) {
            networks6.push((name.clone(), ip));
        }
    }
    let config = c.config.as_ref();
    let sandbox = c
        .network_settings
        .as_ref()
        .and_then(|n| n.sandbox_key.clone())
        .filter(|k| !k.is_empty())
        .map(std::path::PathBuf::from);
    ServiceInfo {
        name: name_of(c),
        id: c.id.clone().unwrap_or_default(),
        running: c.state.as_ref().and_then(|s| s.running).unwrap_or(false),
        network_mode: host
            .and_then(|h| h.network_mode.clone())
            .unwrap_or_default(),
        networks,
        networks6,
        exposed: config
            .and_then(|c| c.exposed_ports.clone())
            .unwrap_or_default(),
        published: host
            .and_then(|h| h.port_bindings.as_ref())
            .map(|b| b.keys().cloned().collect())
            .unwrap_or_default(),
        labels,
        daemon_id: daemon_id.to_string(),
        hostname: config.and_then(|c| c.hostname.clone()).unwrap_or_default(),
        gateways,
        // Filled by `DockerClient::service` (needs the networks' inspect).
        internal: Vec::new(),
        pid: pid_of(c),
        sandbox,
    }
}

/// A router, from its own labels. One whose service label is not a valid
/// container name is ignored with a warning: that label builds paths.
fn router_info(
    c: &ContainerInspectResponse,
    labels: HashMap<String, String>,
) -> Option<RouterInfo> {
    if labels.get(labels::ROLE).map(String::as_str) != Some(labels::ROLE_ROUTER) {
        return None;
    }
    let label = labels
        .get(labels::SERVICE)
        .map(String::as_str)
        .unwrap_or_default();
    let service = match ServiceName::parse(label) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(container = %name_of(c), "ignoring a router container: label {}: {e}", labels::SERVICE);
            return None;
        }
    };
    Some(RouterInfo {
        id: c.id.clone().unwrap_or_default(),
        name: name_of(c),
        service,
        running: c.state.as_ref().and_then(|s| s.running).unwrap_or(false),
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_sysctls_follow_the_ipv6_mode() {
        let auto = router_sysctls(Ipv6Mode::Auto, true, true);
        assert_eq!(auto["net.ipv4.ip_forward"], "1");
        assert_eq!(auto["net.ipv6.conf.all.forwarding"], "1");
        // Relay path: no IPv6 forwarding (it would cost optimistic DAD).
        let relay = router_sysctls(Ipv6Mode::Auto, false, true);
        assert!(!relay.contains_key("net.ipv6.conf.all.forwarding"));
        assert_eq!(auto["net.ipv6.conf.default.accept_ra"], "0");
        assert_eq!(auto["net.ipv6.conf.all.disable_ipv6"], "0");
        assert_eq!(auto["net.ipv6.conf.default.disable_ipv6"], "0");
        let off = router_sysctls(Ipv6Mode::Off, true, true);
        assert_eq!(off["net.ipv6.conf.default.disable_ipv6"], "1");
        assert!(!off.contains_key("net.ipv6.conf.all.disable_ipv6"));
        // A kernel without IPv6: no IPv6 sysctl at all (Docker would refuse it).
        let none = router_sysctls(Ipv6Mode::Auto, true, false);
        assert!(none.keys().all(|k| !k.starts_with("net.ipv6.")), "{none:?}");
    }

    #[test]
    fn not_attachable_names_the_network() {
        let e = BollardError::DockerResponseServerError {
            status_code: 500,
            message: "Could not attach to network appnet: rpc error: code = PermissionDenied desc = network appnet not manually attachable".into(),
        };
        assert_eq!(not_attachable(&e).as_deref(), Some("appnet"));
        let other = BollardError::DockerResponseServerError {
            status_code: 500,
            message: "something else".into(),
        };
        assert_eq!(not_attachable(&other), None);
    }

    use bollard::models::{CreateImageInfo, ProgressDetail};

    fn info(id: Option<&str>, status: &str, cur_total: Option<(i64, i64)>) -> CreateImageInfo {
        CreateImageInfo {
            id: id.map(str::to_string),
            status: Some(status.into()),
            progress_detail: cur_total.map(|(c, t)| ProgressDetail {
                current: Some(c),
                total: Some(t),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn terminal_progress_redraws_one_line_per_layer() {
        let mut p = PullProgress {
            show: PullDisplay::Terminal,
            lines: Vec::new(),
            drawn: 0,
        };
        assert_eq!(
            p.redraw(&info(Some("0.1.0"), "Pulling from r", None)),
            "\r\x1b[2K0.1.0: Pulling from r\n"
        );
        p.redraw(&info(Some("aaa"), "Pulling fs layer", None));
        let out = p.redraw(&info(
            Some("aaa"),
            "Downloading",
            Some((1_050_000, 2_100_000)),
        ));
        assert_eq!(
            out,
            "\x1b[2A\r\x1b[2K0.1.0: Pulling from r\n\r\x1b[2Kaaa: Downloading 1.1/2.1 MB\n"
        );
        p.redraw(&info(Some("bbb"), "Pull complete", None));
        let out = p.redraw(&info(None, "Digest: sha256:00", None));
        assert!(out.starts_with("\x1b[3A"), "{out:?}");
        assert!(out.ends_with("\r\x1b[2KDigest: sha256:00\n"), "{out:?}");
        assert_eq!(p.lines.len(), 4);
        // Records without a status draw nothing.
        assert_eq!(p.redraw(&CreateImageInfo::default()), "");
    }

    #[test]
    fn pull_errors() {
        let e = pull_error(
            "r:x",
            BollardError::DockerResponseServerError {
                status_code: 404,
                message: "manifest for r:x not found: manifest unknown".into(),
            },
        );
        assert!(
            matches!(e, DockerError::NoImage(ref i) if i == "r:x"),
            "{e:?}"
        );
        let e = pull_error(
            "r:x",
            BollardError::DockerStreamError {
                error: "pull access denied for r, repository does not exist or may require 'docker login'".into(),
            },
        );
        assert!(matches!(e, DockerError::NoImage(_)), "{e:?}");
        let e = pull_error(
            "127.0.0.1:1/r:x",
            BollardError::DockerResponseServerError {
                status_code: 500,
                message: "Get \"http://127.0.0.1:1/v2/\":\n dial tcp 127.0.0.1:1: connect: connection refused".into(),
            },
        );
        assert_eq!(
            e.to_string(),
            "cannot pull router image 127.0.0.1:1/r:x: Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused"
        );
        assert!(e.hint().unwrap().contains("reachable"));
        let e = pull_error(
            "reg.example/r:x",
            BollardError::DockerStreamError {
                error: "unauthorized: authentication required".into(),
            },
        );
        assert!(e.hint().unwrap().contains("docker login"), "{e:?}");
    }
}
