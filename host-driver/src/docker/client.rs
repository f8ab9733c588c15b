//! The Docker API client: inspecting services, listing, creating, starting
//! and removing routers, pulling the router image, following events. What
//! it reads is converted into our own types by `convert`.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerInspectResponse, ContainerSummaryStateEnum};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    InspectContainerOptions, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    RenameContainerOptionsBuilder, StopContainerOptionsBuilder,
};

use super::convert::{
    BridgeNet, ContainerEvent, Engine, RouterInfo, bridge_networks, container_event, engine_of,
    ip_on, mark_of, name_of, network_members, pid_of, router_from, router_info, sandbox_of,
    service_info,
};
use super::error::{DockerError, api, is_404, not_attachable};
use super::pull::{PullDisplay, PullProgress, pull_error};
use super::spec::RouterSpec;
use crate::labels;
use crate::plan::ServiceInfo;
use crate::state::ServiceName;

/// Where a router image stands on this host ([`DockerClient::locate_image`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Located {
    /// Here: routers are created from `create_from`.
    Here { create_from: String, pinned: bool },
    /// Not here: `pull` is the reference to pull (by digest when pinned,
    /// `pin` being the digest).
    Missing { pull: String, pin: Option<String> },
}

#[derive(Clone)]
pub struct DockerClient {
    docker: Docker,
    /// This host's ID (`state::host_id`), part of standalone identities:
    /// read once, when a service is first looked at (commands that look at
    /// none need not create it).
    host_id: Arc<Mutex<Option<String>>>,
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
        Ok(DockerClient {
            docker,
            host_id: Arc::default(),
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
        let l = c
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let image = c.image.as_deref().unwrap_or_default();
        self.own_of(&name_of(c), image, l).await
    }

    /// [`Self::own_labels`] of container `name` made from image ID `image`,
    /// whose labels (the image's merged in) are `l`.
    async fn own_of(
        &self,
        name: &str,
        image: &str,
        mut l: HashMap<String, String>,
    ) -> Result<HashMap<String, String>, DockerError> {
        match self.image_labels(image).await {
            Ok(from_image) => l.retain(|k, v| from_image.get(k) != Some(v)),
            Err(DockerError::NoImage(_)) => {
                tracing::warn!(container = %name, %image, "image gone: ignoring the container's netcontainer labels");
                l.retain(|k, _| !k.starts_with(labels::PREFIX));
            }
            Err(e) => return Err(e),
        }
        Ok(l)
    }

    /// This host's ID (see `state::host_id`), read or made on first use.
    fn host_id(&self) -> Result<String, DockerError> {
        let mut cached = self.host_id.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = &*cached {
            return Ok(id.clone());
        }
        let id = crate::state::host_id()?;
        *cached = Some(id.clone());
        Ok(id)
    }

    /// A service container by name or ID, with only its own labels.
    pub async fn service(&self, name: &str) -> Result<ServiceInfo, DockerError> {
        let c = self.inspect(name).await?;
        let own = self.own_labels(&c).await?;
        let mut info = service_info(&c, own, &self.host_id()?);
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

    /// The router of `service` that an `up` set aside while it made the
    /// router again ([`crate::plan::aside_name`]), if there is one.
    pub async fn router_set_aside(
        &self,
        service: &ServiceName,
    ) -> Result<Option<RouterInfo>, DockerError> {
        let name = crate::plan::aside_name(service.as_str());
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
        // The listing has all a RouterInfo holds (no inspect per router: this
        // runs on every poll, and N inspects were most of dockerd's work).
        let mut out = Vec::new();
        for c in list {
            let Some(id) = c.id else { continue };
            let name = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default();
            let running = matches!(
                c.state,
                Some(
                    ContainerSummaryStateEnum::RUNNING
                        | ContainerSummaryStateEnum::PAUSED
                        | ContainerSummaryStateEnum::RESTARTING
                )
            );
            let image = c.image_id.unwrap_or_default();
            let own = self
                .own_of(&name, &image, c.labels.unwrap_or_default())
                .await?;
            out.extend(router_from(id, name, running, own));
        }
        Ok(one_per_service(out))
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

    /// What `/info` says about the engine (`crate::platform` decides from it
    /// whether netcontainer can work here).
    pub async fn engine(&self) -> Result<Engine, DockerError> {
        let i = self
            .docker
            .info()
            .await
            .map_err(api("asking the daemon's info"))?;
        Ok(engine_of(&i))
    }

    pub async fn image_exists(&self, image: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_404(&e) => Ok(false),
            Err(e) => Err(api(format!("inspecting image {image}"))(e)),
        }
    }

    /// Makes sure router image `image` is on this host as its pin says
    /// ([`DockerClient::locate_image`]), pulling it when missing (a pinned
    /// digest by digest), and returns what to create routers from. Refuses,
    /// before anything is created, when the pinned content is not to be had.
    pub async fn ensure_image(
        &self,
        image: &str,
        show: PullDisplay,
    ) -> Result<String, DockerError> {
        match self.locate_image(image).await? {
            Located::Here { create_from, .. } => Ok(create_from),
            Located::Missing { pull, pin } => match self.pull(&pull, show).await {
                Ok(()) => Ok(pull),
                Err(DockerError::NoImage(_)) if let Some(p) = pin => {
                    let repository = pull.split_once('@').map_or(pull.as_str(), |(r, _)| r);
                    Err(DockerError::NotPinned {
                        image: image.to_string(),
                        why: format!(
                            "{repository} does not have that digest (its tag may name other content now)"
                        ),
                        wanted: p,
                    })
                }
                Err(e) => Err(e),
            },
        }
    }

    /// Where router image `image` stands on this host, without pulling: its
    /// pin ([`crate::registry::pin_of`]) resolved to what routers are
    /// created from (the pinned image ID, or `repository@digest`, so a tag
    /// moved meanwhile changes nothing; an unpinned reference as it is), or
    /// what would have to be pulled. An image ID that is not here cannot be
    /// pulled: that is [`DockerError::NotPinned`], naming the ID.
    pub async fn locate_image(&self, image: &str) -> Result<Located, DockerError> {
        use crate::registry::{BUILT_WITH, Pin, pin_of, pins_path, read_pins};
        let path = pins_path();
        let record = read_pins(&path).map_err(DockerError::PinRecord)?;
        let pin = pin_of(image, &record, &path, BUILT_WITH, &super::default_image())
            .map_err(DockerError::PinRecord)?;
        match pin {
            None => {
                if image == super::default_image() {
                    tracing::warn!(%image, "no digest recorded for the router image: running the tag as it is (scripts/build-router-image records one)");
                } else {
                    tracing::info!(%image, "router image not pinned: running the tag as it is (--image REF@sha256:DIGEST pins it)");
                }
                Ok(if self.image_exists(image).await? {
                    Located::Here {
                        create_from: image.to_string(),
                        pinned: false,
                    }
                } else {
                    Located::Missing {
                        pull: image.to_string(),
                        pin: None,
                    }
                })
            }
            Some(Pin::ImageId(id)) => {
                if self.image_id(&id).await?.as_deref() == Some(id.as_str()) {
                    return Ok(Located::Here {
                        create_from: id,
                        pinned: true,
                    });
                }
                // A local build's ID cannot be pulled: say what the tag is now.
                let why = match self.image_id(image).await? {
                    Some(found) => format!("the tag names {found}, and {id} is not on this host"),
                    None => {
                        format!("{id} is not on this host (a local build, which no registry has)")
                    }
                };
                Err(DockerError::NotPinned {
                    image: image.to_string(),
                    wanted: id,
                    why,
                })
            }
            Some(Pin::Digest { repository, digest }) => {
                let by_digest = format!("{repository}@{digest}");
                Ok(if self.image_exists(&by_digest).await? {
                    Located::Here {
                        create_from: by_digest,
                        pinned: true,
                    }
                } else {
                    Located::Missing {
                        pull: by_digest,
                        pin: Some(digest),
                    }
                })
            }
        }
    }

    /// The ID of the image `reference` names on this host, if any.
    async fn image_id(&self, reference: &str) -> Result<Option<String>, DockerError> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(i.id),
            Err(e) if is_404(&e) => Ok(None),
            Err(e) => Err(api(format!("inspecting image {reference}"))(e)),
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

    /// Creates (not starts) the router container `spec` describes.
    pub async fn create_router(&self, spec: &RouterSpec) -> Result<String, DockerError> {
        let opts = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        let resp = self
            .docker
            .create_container(Some(opts), spec.body())
            .await
            .map_err(|e| match not_attachable(&e) {
                Some(n) => DockerError::NotAttachable(n),
                None => api(format!("creating {}", spec.name))(e),
            })?;
        for w in resp.warnings {
            tracing::warn!(container = %spec.name, "docker: {w}");
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

    /// Container start/die/destroy events (Podman's `died` read as `die`) and networks' connect/disconnect
    /// of containers, from now on. (Docker ORs the values of one filter and
    /// ANDs the filters: a network's own `destroy` passes too, and is
    /// dropped by `container_event`.)
    pub fn events(
        &self,
    ) -> impl futures::Stream<Item = Result<ContainerEvent, DockerError>> + use<> {
        use futures::StreamExt;
        let filters = HashMap::from([
            ("type", vec!["container", "network"]),
            (
                "event",
                // `died`: Podman's name for `die`.
                vec!["start", "die", "died", "destroy", "connect", "disconnect"],
            ),
        ]);
        let opts = EventsOptionsBuilder::default().filters(&filters).build();
        self.docker.events(Some(opts)).filter_map(|ev| {
            std::future::ready(match ev {
                Ok(ev) => container_event(ev).map(Ok),
                Err(e) => Some(Err(api("reading Docker events")(e))),
            })
        })
    }

    /// A network's connect/disconnect event with the container's name and
    /// labels (as a container's own event carries them), or `None` when the
    /// container is gone already (a disconnect as it is removed).
    pub async fn named_event(
        &self,
        mut ev: ContainerEvent,
    ) -> Result<Option<ContainerEvent>, DockerError> {
        let Some(id) = ev.connected.as_deref() else {
            return Ok(Some(ev));
        };
        let c = match self.inspect(id).await {
            Ok(c) => c,
            Err(DockerError::NoSuchContainer(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        ev.name = name_of(&c);
        ev.labels = c.config.and_then(|c| c.labels).unwrap_or_default();
        Ok(Some(ev))
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

    /// Every container on this host (running or not) by name, with its
    /// listing mark (`convert::mark_of`): one call, whatever the number of
    /// containers. The resync compares two of these to know which services
    /// need a look.
    pub async fn marks(&self) -> Result<HashMap<String, u64>, DockerError> {
        let list = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default().all(true).build(),
            ))
            .await
            .map_err(api("listing containers"))?;
        Ok(list
            .iter()
            .filter_map(|c| {
                let name = c.names.as_ref()?.first()?.trim_start_matches('/');
                Some((name.to_string(), mark_of(c)))
            })
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
    /// A network whose IPAM reports no gateway gets its bridge device's
    /// address (see `convert::bridge_networks`).
    pub async fn bridge_networks(&self) -> Result<Vec<BridgeNet>, DockerError> {
        let nets = self
            .docker
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
            .await
            .map_err(api("listing networks"))?;
        let addrs = host_ipv4_addrs();
        let device_addrs = |dev: &str| {
            addrs
                .iter()
                .filter(|(d, _)| d == dev)
                .map(|(_, a)| *a)
                .collect()
        };
        Ok(bridge_networks(nets, &device_addrs))
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
        Ok(network_members(n))
    }

    /// A container's IPv4 address on `network`.
    pub async fn ip_on(&self, id: &str, network: &str) -> Result<Option<Ipv4Addr>, DockerError> {
        let c = self.inspect(id).await?;
        Ok(ip_on(&c, network))
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
        Ok((pid_of(&c), sandbox_of(&c)))
    }

    /// Stops (SIGTERM, then SIGKILL after `grace_secs`) and removes a container.
    /// A container that is already gone is not an error.
    /// Stops a container (SIGTERM, then SIGKILL after `grace_secs`); one
    /// that is gone or already stopped is fine.
    pub async fn stop(&self, id: &str, grace_secs: i32) -> Result<(), DockerError> {
        match self
            .docker
            .stop_container(
                id,
                Some(StopContainerOptionsBuilder::default().t(grace_secs).build()),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_404(&e) => Ok(()),
            // 304: already stopped.
            Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(api(format!("stopping {id}"))(e)),
        }
    }

    /// Renames a container (a router set aside, or put back).
    pub async fn rename(&self, id: &str, name: &str) -> Result<(), DockerError> {
        self.docker
            .rename_container(
                id,
                RenameContainerOptionsBuilder::default().name(name).build(),
            )
            .await
            .map_err(api(format!("renaming {id} to {name}")))
    }

    pub async fn remove(&self, id: &str, grace_secs: i32) -> Result<(), DockerError> {
        if let Err(e) = self.stop(id, grace_secs).await {
            tracing::warn!(container = %id, error = %e, "stop failed; removing by force");
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

/// Routers sorted by service, one per service: a router set aside by an
/// `up` that did not finish (see [`crate::plan::aside_name`]) is listed only
/// when its service has no other, so that `watch` still looks at that
/// service (and puts it back) and `ls` shows it, while no service is listed
/// twice.
fn one_per_service(mut routers: Vec<RouterInfo>) -> Vec<RouterInfo> {
    let aside = |r: &RouterInfo| r.name == crate::plan::aside_name(r.service.as_str());
    let made_again: std::collections::BTreeSet<ServiceName> = routers
        .iter()
        .filter(|r| !aside(r))
        .map(|r| r.service.clone())
        .collect();
    routers.retain(|r| !aside(r) || !made_again.contains(&r.service));
    routers.sort_by(|a, b| a.service.cmp(&b.service));
    routers
}

/// Every IPv4 address of this network namespace's devices, as (device,
/// address); none when they cannot be read (then only networks whose IPAM
/// names a gateway are served).
fn host_ipv4_addrs() -> Vec<(String, Ipv4Addr)> {
    match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => addrs
            .filter_map(|a| {
                let ip = a.address?.as_sockaddr_in()?.ip();
                Some((a.interface_name, ip))
            })
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot list the host's addresses");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(name: &str, service: &str) -> RouterInfo {
        RouterInfo {
            id: name.into(),
            name: name.into(),
            service: ServiceName::parse(service).unwrap(),
            running: false,
            labels: HashMap::new(),
        }
    }

    /// A router set aside is listed for its service only when it is the
    /// service's only router (so watch still looks at that service).
    #[test]
    fn a_router_set_aside_is_listed_only_alone() {
        let listed = one_per_service(vec![
            router("netcontainer-web2", "web2"),
            router("netcontainer.aside-web2", "web2"),
            router("netcontainer.aside-web1", "web1"),
            router("netcontainer-web3", "web3"),
        ]);
        let names: Vec<&str> = listed.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "netcontainer.aside-web1",
                "netcontainer-web2",
                "netcontainer-web3"
            ]
        );
        // The aside name of one service is never the router name of another.
        assert!(!crate::plan::aside_name("web").starts_with(crate::plan::ROUTER_PREFIX));
    }
}
