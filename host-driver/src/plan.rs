//! Deriving a router's plan from a service container: pure logic, no Docker
//! calls, so every rule here is unit-tested.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use netcontainer_proto::{Forward, Plan, SourceMode, validate_hostname};

use crate::labels::{self, ServiceLabels};
use crate::leg::{Kind, LegOption};
use crate::mac::format_mac;
use crate::ports::{PortSpec, check_overlaps, ports_text};

/// Name of the LAN interface inside the router.
pub const LAN_IF: &str = netcontainer_proto::contract::LAN_IF;
/// Prefix of router container names.
pub const ROUTER_PREFIX: &str = "netcontainer-";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("container {name} has no address on a Docker network (network mode {mode:?})")]
    NoNetwork { name: String, mode: String },
    #[error("container {0} exposes no ports")]
    NoPorts(String),
    #[error("{0}")]
    Invalid(String),
}

impl PlanError {
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            PlanError::NotRunning(_) => Some("start it first (docker start)"),
            PlanError::NoNetwork { .. } => Some(
                "attach it to a bridge network; host and none network modes cannot be forwarded to",
            ),
            PlanError::NoPorts(_) => {
                Some("give the ports with --publish PORT[-PORT]/PROTO, e.g. --publish 80/tcp")
            }
            PlanError::Invalid(_) => None,
        }
    }
}

/// What the driver knows of a service container (extracted from `docker inspect`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    pub name: String,
    pub id: String,
    pub running: bool,
    pub network_mode: String,
    /// (network name, IPv4 address) of every network the container is on.
    pub networks: Vec<(String, Ipv4Addr)>,
    /// (network name, global IPv6 address) of every network that gave it
    /// one (a network created with `--ipv6`).
    pub networks6: Vec<(String, std::net::Ipv6Addr)>,
    /// Exposed ports, Docker style: "80/tcp".
    pub exposed: Vec<String>,
    /// Container ports with a host binding, Docker style.
    pub published: Vec<String>,
    pub labels: HashMap<String, String>,
    /// This host's own ID (`state::host_id`): part of a standalone
    /// container's identity, so the same name on two hosts is two identities.
    pub host_id: String,
    /// `$HOSTNAME` inside the container.
    pub hostname: String,
    /// (network name, Docker's gateway on it), for every network that has one.
    pub gateways: Vec<(String, Ipv4Addr)>,
    /// The `--internal` networks it is on (by name).
    pub internal: Vec<String>,
    /// The running container's pid and network namespace handle.
    pub pid: Option<u32>,
    pub sandbox: Option<std::path::PathBuf>,
}

/// Options of `up` (command line, falling back to the service's labels).
#[derive(Clone, Debug, Default)]
pub struct UpOptions {
    pub parent: Option<String>,
    pub mode: Option<Kind>,
    pub publish: Vec<PortSpec>,
    pub hostname: Option<String>,
    pub mac: Option<[u8; 6]>,
    /// Run the router's agent with `--arp-probe`.
    pub arp_probe: bool,
    /// The service's network to forward to (`--network`, label
    /// `netcontainer.network`); default: the first by name.
    pub network: Option<String>,
    /// `--source`, label `netcontainer.source`; default: gateway mode for
    /// a service on one network, masquerade for one on several.
    pub source: Option<SourceMode>,
    /// `--no-host-route`: the host gets no route to this router's lease.
    pub no_host_route: bool,
    /// The address to ask for (`--ip`, label `netcontainer.ip`).
    pub ip: Option<Ipv4Addr>,
    /// `--ip-strict`: another address than `ip` fails `up` (rolled back).
    pub ip_strict: bool,
    /// IPv6 on the LAN leg (`--ipv6`, label `netcontainer.ipv6`); default auto.
    pub ipv6: Option<netcontainer_proto::Ipv6Mode>,
    /// The identity to use instead of the derived one: a re-created router's
    /// recorded identity, which wins (its lease is tied to it).
    pub identity: Option<String>,
    /// Gateway mode's egress allow-list (`--egress`, label
    /// `netcontainer.egress`); empty: the label's, else none.
    pub egress: Vec<netcontainer_proto::Ipv4Net>,
    /// The DHCP servers to listen to or ignore (`--dhcp-server`,
    /// `--deny-dhcp-server`, labels `netcontainer.dhcp-server`,
    /// `netcontainer.deny-dhcp-server`); empty: the labels', else all.
    pub dhcp_servers: netcontainer_proto::DhcpServers,
    /// `--mdns`, `--dnssd`, `--dnssd-txt`; the labels fill what is not set.
    pub mdns: labels::Mdns,
}

/// Longest identity accepted (from the label).
const MAX_IDENTITY: usize = 200;

/// What a service's MAC and DHCP client id derive from, so that its address
/// is its own across hosts and stays across reschedules:
/// - the `netcontainer.identity` label when set;
/// - a Swarm task: `swarm:<service ID>/<service>.<slot>` (the node ID in
///   place of the slot for a global service), the same on whichever node runs
///   the task, and another in another swarm (the service ID is random per
///   swarm service; the swarm's cluster ID would do too, but only managers
///   can read it);
/// - a Docker Compose replica: `<host ID>/compose/<project>/<service>/<number>`
///   (its `com.docker.compose.*` labels), whatever Compose named the
///   container (v1 `proj_web_1`, v2 `proj-web-1`); not a one-off (`run`);
/// - a standalone container: `<host ID>/<name>`: two hosts each running
///   `web1` on one LAN are two identities.
pub fn identity_of(svc: &ServiceInfo) -> Result<String, PlanError> {
    if let Some(id) = svc.labels.get(labels::IDENTITY).filter(|v| !v.is_empty()) {
        if id.len() > MAX_IDENTITY || id.chars().any(char::is_control) {
            return Err(PlanError::Invalid(format!(
                "label {} on {}: at most {MAX_IDENTITY} printable characters",
                labels::IDENTITY,
                svc.name
            )));
        }
        return Ok(id.clone());
    }
    if let Some(slot) = swarm_slot(svc) {
        return Ok(match svc.labels.get(labels::SWARM_SERVICE_ID) {
            Some(sid) if is_plain_word(sid) => format!("swarm:{sid}/{slot}"),
            _ => format!("swarm:{slot}"),
        });
    }
    if let Some((project, service, number)) = compose_replica(svc)? {
        return Ok(format!(
            "{}/compose/{project}/{service}/{number}",
            svc.host_id
        ));
    }
    Ok(format!("{}/{}", svc.host_id, svc.name))
}

/// Longest Compose project or service name taken into an identity.
const MAX_COMPOSE_WORD: usize = 63;

/// A name Compose could have given (project, service), or a Swarm ID:
/// letters, digits, `_`, `.`, `-`, so it cannot blur the identity's
/// `/`-separated fields.
fn is_plain_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_COMPOSE_WORD
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether `svc` is a Compose one-off container (`docker-compose run`).
pub fn is_compose_oneoff(svc: &ServiceInfo) -> bool {
    svc.labels
        .get(labels::COMPOSE_ONEOFF)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// A Compose one-off that does not carry an identity of its own: `watch`
/// leaves it alone (it copies its service's labels, `netcontainer.enable`
/// included, and would otherwise take a new address on every `run`).
pub fn is_unlabelled_oneoff(svc: &ServiceInfo) -> bool {
    is_compose_oneoff(svc) && !svc.labels.contains_key(labels::IDENTITY)
}

/// (project, service, number) of a Compose replica, from its labels; `None`
/// for a container without all three, or a one-off. Labels that are there
/// but could not have come from Compose are refused (naming the label).
fn compose_replica(svc: &ServiceInfo) -> Result<Option<(&str, &str, u32)>, PlanError> {
    let l = &svc.labels;
    let (Some(project), Some(service), Some(number)) = (
        l.get(labels::COMPOSE_PROJECT),
        l.get(labels::COMPOSE_SERVICE),
        l.get(labels::COMPOSE_NUMBER),
    ) else {
        return Ok(None);
    };
    if is_compose_oneoff(svc) {
        return Ok(None);
    }
    let bad = |label: &str, why: &str| {
        PlanError::Invalid(format!(
            "label {label} on {}: {why} (or give the container its own {})",
            svc.name,
            labels::IDENTITY
        ))
    };
    let word = "1 to 63 letters, digits, '_', '.' or '-'";
    if !is_plain_word(project) {
        return Err(bad(labels::COMPOSE_PROJECT, word));
    }
    if !is_plain_word(service) {
        return Err(bad(labels::COMPOSE_SERVICE, word));
    }
    let number = Some(number)
        .filter(|n| !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| bad(labels::COMPOSE_NUMBER, "a replica number"))?;
    Ok(Some((project, service, number)))
}

/// Is `svc` a Swarm task's container?
pub fn is_swarm_task(svc: &ServiceInfo) -> bool {
    swarm_slot(svc).is_some()
}

/// `<service>.<slot>` of a Swarm task, from its labels.
fn swarm_slot(svc: &ServiceInfo) -> Option<String> {
    let service = svc.labels.get(labels::SWARM_SERVICE)?;
    let task = svc.labels.get(labels::SWARM_TASK)?;
    let rest = task.strip_prefix(service.as_str())?.strip_prefix('.')?;
    let slot = rest.split('.').next().filter(|s| !s.is_empty())?;
    Some(format!("{service}.{slot}"))
}

/// The default hostname: the container name, or `<service>-<slot>` for a
/// Swarm task (its container name changes on every reschedule).
pub fn default_hostname(svc: &ServiceInfo) -> String {
    match swarm_slot(svc) {
        Some(s) => hostname_for(&s),
        None => hostname_for(&svc.name),
    }
}

/// Everything needed to create one router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterPlan {
    pub service: String,
    /// See [`identity_of`].
    pub identity: String,
    pub service_id: String,
    pub router_name: String,
    pub network: String,
    pub service_ip: Ipv4Addr,
    pub parent: String,
    pub mode: Kind,
    pub mac: [u8; 6],
    pub ports: Vec<PortSpec>,
    pub plan: Plan,
    /// Run the agent with `--arp-probe`.
    pub arp_probe: bool,
    /// Whether the source mode was asked for (flag or label) rather than
    /// derived: only then is it recorded on the router, so that a service
    /// that joins or leaves networks gets the mode that fits it.
    pub source_chosen: bool,
    /// The host reaches the lease through the shim (see `shim`).
    pub host_route: bool,
    /// Run the agent with `--request-address` (`--ip`, `netcontainer.ip`).
    pub requested: Option<Ipv4Addr>,
    /// Run the agent with `--egress` (gateway mode only; empty: none).
    pub egress: Vec<netcontainer_proto::Ipv4Net>,
    /// What `up` was asked of mDNS (recorded; the labels are read again).
    pub mdns_chosen: labels::Mdns,
}

impl RouterPlan {
    /// Labels that tie the router to its service and record how it was made.
    pub fn labels(&self) -> HashMap<String, String> {
        let mut l = HashMap::from([
            (labels::ROLE.into(), labels::ROLE_ROUTER.into()),
            (labels::SERVICE.into(), self.service.clone()),
            (labels::SERVICE_ID.into(), self.service_id.clone()),
            (labels::IDENTITY.into(), self.identity.clone()),
            (labels::PARENT.into(), self.parent.clone()),
            (labels::MODE.into(), self.mode.name().into()),
            (labels::MAC.into(), format_mac(&self.mac)),
            (labels::NETWORK.into(), self.network.clone()),
            (
                labels::HOSTNAME.into(),
                self.plan.hostname.clone().unwrap_or_default(),
            ),
            (labels::PORTS.into(), ports_text(&self.ports)),
            (labels::IPV6.into(), self.plan.ipv6.as_str().into()),
        ]);
        if self.arp_probe {
            l.insert(labels::ARP_PROBE.into(), "true".into());
        }
        if self.source_chosen {
            l.insert(labels::SOURCE.into(), self.plan.source.as_str().into());
        }
        if !self.host_route {
            l.insert(labels::HOST_ROUTE.into(), "false".into());
        }
        if let Some(ip) = self.requested {
            l.insert(labels::IP.into(), ip.to_string());
        }
        if !self.egress.is_empty() {
            l.insert(
                labels::EGRESS.into(),
                netcontainer_proto::egress_text(&self.egress),
            );
        }
        let m = &self.mdns_chosen;
        if let Some(on) = m.on {
            l.insert(labels::MDNS.into(), if on { "on" } else { "off" }.into());
        }
        if !m.dnssd.is_empty() {
            l.insert(labels::DNSSD.into(), labels::dnssd_text(&m.dnssd));
        }
        if !m.txt.is_empty() {
            l.insert(labels::DNSSD_TXT.into(), m.txt.join(","));
        }
        let servers = &self.plan.dhcp_servers;
        for (k, list) in [
            (labels::DHCP_SERVER, &servers.allow),
            (labels::DENY_DHCP_SERVER, &servers.deny),
        ] {
            if !list.is_empty() {
                l.insert(k.into(), netcontainer_proto::dhcp_servers_text(list));
            }
        }
        l
    }
}

pub fn router_name(service: &str) -> String {
    format!("{ROUTER_PREFIX}{service}")
}

/// The name a stopped router is renamed to while `up` makes it again: the
/// old one is removed only once the new one runs, and renamed back if making
/// the new one fails, so its recorded identity (and with it the service's
/// lease) survives any failure in between. Not a router name of any service
/// (those all start with [`ROUTER_PREFIX`]).
pub fn aside_name(service: &str) -> String {
    format!("{ASIDE_PREFIX}{service}")
}

/// See [`aside_name`].
pub const ASIDE_PREFIX: &str = "netcontainer.aside-";

/// FNV-1a, 64 bit: stable across Rust versions and platforms (unlike
/// `DefaultHasher`), which matters because it decides MAC and lease.
pub(crate) fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A locally administered unicast MAC derived from a service's identity
/// ([`identity_of`]), so a re-created router gets the same lease.
pub fn stable_mac(service: &str) -> [u8; 6] {
    let h = fnv1a(format!("netcontainer:{service}").as_bytes()).to_be_bytes();
    [0x02 | (h[0] & 0xfc), h[1], h[2], h[3], h[4], h[5]]
}

/// DHCP client identifier of a router, from its service's identity
/// ([`identity_of`]; the contract's
/// [`netcontainer_proto::contract::service_client_id`]). Not MAC-derived, so
/// ipvlan routers (which share the parent's MAC) still get one lease each.
pub fn client_id(identity: &str) -> Vec<u8> {
    netcontainer_proto::contract::service_client_id(identity)
}

/// A hostname from a container name: Docker allows `_` and `.` which DNS
/// labels do not, and a leading `/` from inspect.
pub fn hostname_for(service: &str) -> String {
    let mut h: String = service
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    h = h.trim_matches('-').to_string();
    h.truncate(63);
    let h = h.trim_end_matches('-').to_string();
    if h.is_empty() {
        "netcontainer".into()
    } else {
        h
    }
}

fn docker_port(p: &str) -> Option<PortSpec> {
    // "80/tcp", "53/udp", "7000-7009/tcp"; sctp is not forwarded.
    p.parse().ok().filter(|p: &PortSpec| p.target == p.start)
}

/// The ports to forward: `--publish`, else the `netcontainer.ports` label,
/// else exposed and published ports.
pub fn ports_of(svc: &ServiceInfo, publish: &[PortSpec]) -> Result<Vec<PortSpec>, PlanError> {
    let mut set = BTreeSet::new();
    if !publish.is_empty() {
        set.extend(publish.iter().copied());
    } else if let Some(ports) = service_labels(svc)?.ports {
        set.extend(ports);
    } else {
        set.extend(
            svc.exposed
                .iter()
                .chain(&svc.published)
                .filter_map(|p| docker_port(p)),
        );
    }
    if set.is_empty() {
        return Err(PlanError::NoPorts(svc.name.clone()));
    }
    let ports: Vec<PortSpec> = set.into_iter().collect();
    check_overlaps(&ports).map_err(PlanError::Invalid)?;
    Ok(ports)
}

/// The service's network and address: `chosen` (`--network`, the label),
/// else the first network (by name, for a stable choice) on which it has an
/// IPv4 address.
pub fn network_of(
    svc: &ServiceInfo,
    chosen: Option<&str>,
) -> Result<(String, Ipv4Addr), PlanError> {
    let mut nets: Vec<_> = svc
        .networks
        .iter()
        .filter(|(_, ip)| !ip.is_unspecified())
        .cloned()
        .collect();
    nets.sort();
    if let Some(want) = chosen {
        let names = || {
            nets.iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return nets
            .iter()
            .find(|(n, _)| n == want)
            .cloned()
            .ok_or_else(|| {
                PlanError::Invalid(format!(
                    "{} is not on network {want} with an IPv4 address (its networks: {}); \
                     --network or label {} names one of them",
                    svc.name,
                    names(),
                    labels::NETWORK
                ))
            });
    }
    nets.into_iter().next().ok_or_else(|| PlanError::NoNetwork {
        name: svc.name.clone(),
        mode: svc.network_mode.clone(),
    })
}

/// The forwards for `ports` toward `ip`: each LAN port to its container port.
pub fn forwards(ports: &[PortSpec], ip: Ipv4Addr) -> Vec<Forward> {
    ports
        .iter()
        .map(|p| Forward {
            protocol: p.protocol,
            public_port: p.start,
            public_port_end: p.end,
            target_address: ip,
            target_port: p.target,
        })
        .collect()
}

/// A service's labels (the one parser), its errors naming label and container.
fn service_labels(svc: &ServiceInfo) -> Result<ServiceLabels, PlanError> {
    ServiceLabels::parse(&svc.labels).map_err(|e| PlanError::Invalid(e.on(&svc.name)))
}

/// Derives everything `up` needs. `default_parent` applies when neither the
/// options nor the labels name one.
pub fn derive(svc: &ServiceInfo, opts: &UpOptions) -> Result<RouterPlan, PlanError> {
    if !svc.running {
        return Err(PlanError::NotRunning(svc.name.clone()));
    }
    let sl = service_labels(svc)?;
    let mode = opts.mode.or(sl.mode).unwrap_or_default();
    refuse_what_the_leg_cannot(svc, opts, &sl, mode)?;
    let parent = opts
        .parent
        .clone()
        .or_else(|| sl.parent.clone())
        .ok_or_else(|| PlanError::Invalid("no parent interface: give --parent IFACE".into()))?;
    let identity = match &opts.identity {
        Some(id) => id.clone(),
        None => identity_of(svc)?,
    };
    let mac = opts.mac.or(sl.mac).unwrap_or_else(|| stable_mac(&identity));
    let hostname = hostname_of(svc, opts, &sl)?;
    let chosen = opts.network.clone().or(sl.network);
    let (network, service_ip) = network_of(svc, chosen.as_deref())?;
    let ports = ports_of(svc, &opts.publish)?;
    let chosen_source = opts.source.or(sl.source);
    let source = source_mode(svc, &network, chosen_source)?;
    let egress = if opts.egress.is_empty() {
        sl.egress.clone()
    } else {
        opts.egress.clone()
    };
    if !egress.is_empty() && source != SourceMode::Gateway {
        return Err(PlanError::Invalid(format!(
            "an egress allow-list (--egress, label {}) needs gateway mode: in {source} mode the \
             service's own traffic leaves through Docker (filter it in DOCKER-USER)",
            labels::EGRESS
        )));
    }
    let mut plan = Plan {
        interface: LAN_IF.into(),
        hostname: Some(hostname),
        // Every leg keeps its own client id: ipvlan legs share the parent's
        // MAC, so the MAC cannot tell their leases apart.
        client_id: Some(client_id(&identity)),
        broadcast_flag: mode.broadcast_flag(),
        forwards: forwards(&ports, service_ip),
        source,
        service: Some(netcontainer_proto::ServiceInfo {
            name: svc.name.clone(),
            id: svc.id.clone(),
            hostname: svc.hostname.clone(),
            address: service_ip,
            address6: svc
                .networks6
                .iter()
                .find(|(n, _)| *n == network)
                .map(|(_, a)| *a),
        }),
        ipv6: opts.ipv6.or(sl.ipv6).unwrap_or_default(),
        dhcp_servers: Box::new(if opts.dhcp_servers.is_empty() {
            sl.dhcp_servers
        } else {
            opts.dhcp_servers.clone()
        }),
        mdns: None,
    };
    plan.mdns = mdns_of(&opts.mdns, &sl.mdns, &plan.forwards)?;
    plan.validate().map_err(PlanError::Invalid)?;
    Ok(RouterPlan {
        service: svc.name.clone(),
        identity,
        service_id: svc.id.clone(),
        router_name: router_name(&svc.name),
        network,
        service_ip,
        parent,
        mode,
        mac,
        ports,
        plan,
        arp_probe: opts.arp_probe || sl.arp_probe,
        source_chosen: chosen_source.is_some(),
        host_route: !opts.no_host_route,
        requested: opts.ip.or(sl.ip),
        egress,
        mdns_chosen: opts.mdns.clone(),
    })
}

/// The router's host name: the options', else the label's, else the
/// container's name made a DNS label.
fn hostname_of(
    svc: &ServiceInfo,
    opts: &UpOptions,
    sl: &ServiceLabels,
) -> Result<String, PlanError> {
    let hostname = opts
        .hostname
        .clone()
        .or_else(|| sl.hostname.clone())
        .unwrap_or_else(|| default_hostname(svc));
    validate_hostname(&hostname).map_err(PlanError::Invalid)?;
    Ok(hostname)
}

/// What the router of a stopped service goes on publishing: the host name
/// and the mDNS records of its running plan, exactly as [`derive`] makes
/// them (only the forwards go, and a stopped container has no address to
/// forward to). So a restart changes nothing the mDNS responder publishes:
/// it sends no goodbyes, probes or announcements, each of which every other
/// responder on the LAN (the other routers among them) wakes up to read, and
/// the name cannot be taken by another host while the service is down.
pub fn published_while_stopped(
    svc: &ServiceInfo,
    opts: &UpOptions,
) -> Result<(String, Option<Box<netcontainer_proto::Mdns>>), PlanError> {
    let sl = service_labels(svc)?;
    let hostname = hostname_of(svc, opts, &sl)?;
    let ports = ports_of(svc, &opts.publish)?;
    // The target address plays no part in the mDNS records (their ports are
    // the public ones).
    let mdns = mdns_of(
        &opts.mdns,
        &sl.mdns,
        &forwards(&ports, Ipv4Addr::UNSPECIFIED),
    )?;
    Ok((hostname, mdns))
}

/// What the router publishes by mDNS: on unless the options or the label
/// say off; the well-known ports' DNS-SD services and those asked for (the
/// options' list, else the label's), all with the options' TXT, else the
/// label's.
fn mdns_of(
    opts: &labels::Mdns,
    sl: &labels::Mdns,
    forwards: &[Forward],
) -> Result<Option<Box<netcontainer_proto::Mdns>>, PlanError> {
    if !opts.on.or(sl.on).unwrap_or(true) {
        return Ok(None);
    }
    let (extra, from) = if opts.dnssd.is_empty() {
        (&sl.dnssd, labels::DNSSD)
    } else {
        (&opts.dnssd, "--dnssd")
    };
    let txt = if opts.txt.is_empty() {
        &sl.txt
    } else {
        &opts.txt
    };
    let services = netcontainer_proto::dnssd_services(forwards, extra, txt)
        .map_err(|e| PlanError::Invalid(format!("{from}: {e}")))?;
    Ok(Some(Box::new(netcontainer_proto::Mdns { services })))
}

/// The source mode: as chosen, else gateway mode for a service on one
/// network. A service on several networks has several default-route
/// candidates and peers on each; pointing its one default route at a router
/// on one of them would cut the others' replies short, so it keeps
/// masquerade mode, and asking for gateway mode is refused. So does a
/// service on an `--internal` network: Docker drops packets on its bridge
/// whose source is outside the network's subnet, which is every client's in
/// gateway mode.
pub fn source_mode(
    svc: &ServiceInfo,
    network: &str,
    chosen: Option<SourceMode>,
) -> Result<SourceMode, PlanError> {
    let networks = svc
        .networks
        .iter()
        .filter(|(_, ip)| !ip.is_unspecified())
        .count();
    let internal = svc.internal.iter().any(|n| n == network);
    match chosen {
        Some(SourceMode::Gateway) if internal => Err(PlanError::Invalid(format!(
            "{network} is an internal network: Docker drops the LAN clients' packets there \
             in gateway mode (use --source masquerade, or label {}=masquerade)",
            labels::SOURCE
        ))),
        None if internal => Ok(SourceMode::Masquerade),
        Some(SourceMode::Gateway) if networks > 1 => Err(PlanError::Invalid(format!(
            "{} is on {networks} networks: gateway mode needs a service on one \
             (use --source masquerade, or label {}=masquerade)",
            svc.name,
            labels::SOURCE
        ))),
        Some(m) => Ok(m),
        None if networks > 1 => Ok(SourceMode::Masquerade),
        None => Ok(SourceMode::Gateway),
    }
}

/// What cannot work on the leg `kind` makes is refused, never silently
/// ignored: each option the kind refuses, if the flag or the service's label
/// asks for it.
fn refuse_what_the_leg_cannot(
    svc: &ServiceInfo,
    opts: &UpOptions,
    sl: &ServiceLabels,
    kind: Kind,
) -> Result<(), PlanError> {
    for option in LegOption::ALL {
        let Some(why) = kind.refuses(option) else {
            continue;
        };
        let (by_flag, by_label, flag, label) = match option {
            LegOption::Mac => (opts.mac.is_some(), sl.mac.is_some(), "--mac", labels::MAC),
            LegOption::ArpProbe => (
                opts.arp_probe,
                sl.arp_probe,
                "--arp-probe",
                labels::ARP_PROBE,
            ),
        };
        let what = if by_flag {
            flag.to_string()
        } else if by_label {
            format!("label {label} on {}", svc.name)
        } else {
            continue;
        };
        return Err(PlanError::Invalid(format!(
            "{what} cannot be used with {}: {why}",
            kind.name()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web1() -> ServiceInfo {
        ServiceInfo {
            name: "web1".into(),
            id: "abc".into(),
            running: true,
            network_mode: "nctest".into(),
            networks: vec![("nctest".into(), Ipv4Addr::new(198, 51, 100, 2))],
            exposed: vec!["80/tcp".into()],
            published: vec![],
            labels: HashMap::new(),
            host_id: "HOST-A".into(),
            hostname: "abc".into(),
            ..Default::default()
        }
    }

    fn opts() -> UpOptions {
        UpOptions {
            parent: Some("eth0".into()),
            ..Default::default()
        }
    }

    #[test]
    fn derives_forwards_from_exposed_ports() {
        let mut svc = web1();
        svc.exposed.push("443/tcp".into());
        svc.published.push("53/udp".into());
        svc.exposed.push("9/sctp".into());
        let r = derive(&svc, &opts()).unwrap();
        assert_eq!(r.router_name, "netcontainer-web1");
        assert_eq!(ports_text(&r.ports), "80/tcp 443/tcp 53/udp");
        assert_eq!(r.plan.forwards.len(), 3);
        assert!(
            r.plan
                .forwards
                .iter()
                .all(|f| f.target_address == Ipv4Addr::new(198, 51, 100, 2)
                    && f.target_port == f.public_port)
        );
        assert_eq!(r.plan.interface, LAN_IF);
        assert_eq!(r.plan.hostname.as_deref(), Some("web1"));
        assert_eq!(r.mode, crate::leg::MACVLAN);
    }

    /// mDNS is on by default with the well-known ports' DNS-SD; a label or
    /// the flag turns it off (the flag wins); a label's DNS-SD service must
    /// name a published port; what `up` chose is recorded on the router.
    #[test]
    fn mdns_on_by_default_off_by_label_or_flag() {
        let r = derive(&web1(), &opts()).unwrap();
        let m = r.plan.mdns.as_ref().expect("on by default");
        assert_eq!(m.services.len(), 1);
        assert_eq!(
            (m.services[0].service_type.as_str(), m.services[0].port),
            ("_http._tcp", 80)
        );
        assert!(!r.labels().contains_key(labels::MDNS));

        let mut svc = web1();
        svc.labels.insert(labels::MDNS.into(), "off".into());
        assert_eq!(derive(&svc, &opts()).unwrap().plan.mdns, None);
        let mut on = opts();
        on.mdns.on = Some(true);
        let r = derive(&svc, &on).unwrap();
        assert!(r.plan.mdns.is_some(), "the flag wins over the label");
        assert_eq!(r.labels()[labels::MDNS], "on");

        let mut svc = web1();
        svc.exposed.push("1883/tcp".into());
        svc.labels
            .insert(labels::DNSSD.into(), "_mqtt._tcp:1883".into());
        svc.labels
            .insert(labels::DNSSD_TXT.into(), "path=/,v=2".into());
        let m = derive(&svc, &opts()).unwrap().plan.mdns.unwrap();
        let got: Vec<(&str, u16)> = m
            .services
            .iter()
            .map(|s| (s.service_type.as_str(), s.port))
            .collect();
        assert_eq!(got, [("_http._tcp", 80), ("_mqtt._tcp", 1883)]);
        assert!(m.services.iter().all(|s| s.txt == ["path=/", "v=2"]));

        svc.labels
            .insert(labels::DNSSD.into(), "_mqtt._tcp:8883".into());
        let e = derive(&svc, &opts()).unwrap_err().to_string();
        assert!(
            e.contains("netcontainer.dnssd") && e.contains("8883/tcp is not published"),
            "{e}"
        );
        svc.labels.insert(labels::DNSSD.into(), "mqtt:1883".into());
        let e = derive(&svc, &opts()).unwrap_err().to_string();
        assert!(e.contains("netcontainer.dnssd"), "{e}");
    }

    #[test]
    fn arp_probe_from_the_label_and_onto_the_router() {
        let r = derive(&web1(), &opts()).unwrap();
        assert!(!r.arp_probe);
        assert!(!r.labels().contains_key(labels::ARP_PROBE));
        let mut svc = web1();
        svc.labels.insert(labels::ARP_PROBE.into(), "true".into());
        let r = derive(&svc, &opts()).unwrap();
        assert!(r.arp_probe);
        assert_eq!(r.labels()[labels::ARP_PROBE], "true");
    }

    /// The allow-list comes from the flag, else the label; it is recorded
    /// on the router (and read back by `options_of`), and refused outside
    /// gateway mode, where the router never sees the service's traffic.
    #[test]
    fn dhcp_servers_from_flag_or_label_recorded_on_the_router() {
        let r = derive(&web1(), &opts()).unwrap();
        assert!(r.plan.dhcp_servers.is_empty());
        assert!(!r.labels().contains_key(labels::DHCP_SERVER));
        let mut svc = web1();
        svc.labels.insert(
            labels::DENY_DHCP_SERVER.into(),
            "192.0.2.9, 192.0.2.8".into(),
        );
        let r = derive(&svc, &opts()).unwrap();
        assert_eq!(r.plan.dhcp_servers.deny.len(), 2);
        assert_eq!(r.labels()[labels::DENY_DHCP_SERVER], "192.0.2.8,192.0.2.9");
        let back = crate::labels::RouterLabels::parse(&r.labels()).unwrap();
        assert_eq!(back.dhcp_servers, *r.plan.dhcp_servers);
        // The flag wins over the label, whole.
        let o = UpOptions {
            dhcp_servers: netcontainer_proto::DhcpServers {
                allow: vec![Ipv4Addr::new(192, 0, 2, 1)],
                deny: vec![],
            },
            ..opts()
        };
        let r = derive(&svc, &o).unwrap();
        assert_eq!(*r.plan.dhcp_servers, o.dhcp_servers);
        assert_eq!(r.labels()[labels::DHCP_SERVER], "192.0.2.1");
        assert!(!r.labels().contains_key(labels::DENY_DHCP_SERVER));
        // Strict: anything but a list of IPv4 addresses, or both lists, is refused.
        for (k, v) in [
            (labels::DHCP_SERVER, "router.lan"),
            (labels::DENY_DHCP_SERVER, "192.0.2.0/24"),
        ] {
            let mut bad = web1();
            bad.labels.insert(k.into(), v.into());
            let e = crate::labels::ServiceLabels::parse(&bad.labels).unwrap_err();
            assert_eq!(e.label, k);
        }
        svc.labels
            .insert(labels::DHCP_SERVER.into(), "192.0.2.1".into());
        assert!(crate::labels::ServiceLabels::parse(&svc.labels).is_err());
    }

    #[test]
    fn egress_from_flag_or_label_gateway_mode_only() {
        let r = derive(&web1(), &opts()).unwrap();
        assert!(r.egress.is_empty() && !r.labels().contains_key(labels::EGRESS));
        let mut svc = web1();
        svc.labels
            .insert(labels::EGRESS.into(), "198.51.100.0/24, 203.0.113.9".into());
        let r = derive(&svc, &opts()).unwrap();
        assert_eq!(r.labels()[labels::EGRESS], "198.51.100.0/24,203.0.113.9/32");
        let back = crate::labels::RouterLabels::parse(&r.labels()).unwrap();
        assert_eq!(back.egress, r.egress);
        let o = UpOptions {
            egress: netcontainer_proto::parse_egress("192.0.2.0/25").unwrap(),
            ..opts()
        };
        assert_eq!(
            derive(&svc, &o).unwrap().labels()[labels::EGRESS],
            "192.0.2.0/25"
        );
        svc.labels
            .insert(labels::SOURCE.into(), "masquerade".into());
        let e = derive(&svc, &opts()).unwrap_err().to_string();
        assert!(
            e.contains("needs gateway mode") && e.contains(labels::EGRESS),
            "{e}"
        );
        svc.labels.insert(labels::EGRESS.into(), "0.0.0.0/0".into());
        let e = crate::labels::ServiceLabels::parse(&svc.labels).unwrap_err();
        assert_eq!(e.label, labels::EGRESS);
    }

    #[test]
    fn requested_address_from_flag_or_label_onto_the_agent_and_router() {
        let r = derive(&web1(), &opts()).unwrap();
        assert_eq!(r.requested, None);
        assert!(!r.labels().contains_key(labels::IP));
        let mut svc = web1();
        svc.labels.insert(labels::IP.into(), "203.0.113.77".into());
        let r = derive(&svc, &opts()).unwrap();
        assert_eq!(r.requested, Some(Ipv4Addr::new(203, 0, 113, 77)));
        assert_eq!(r.labels()[labels::IP], "203.0.113.77");
        // The flag beats the label.
        let o = UpOptions {
            ip: Some(Ipv4Addr::new(203, 0, 113, 78)),
            ..opts()
        };
        let r = derive(&svc, &o).unwrap();
        assert_eq!(r.requested, Some(Ipv4Addr::new(203, 0, 113, 78)));
        svc.labels.insert(labels::IP.into(), "nope".into());
        let e = derive(&svc, &opts()).unwrap_err().to_string();
        assert!(
            e.contains("label netcontainer.ip") && !e.contains('\n'),
            "{e}"
        );
    }

    #[test]
    fn publish_overrides_labels_which_override_exposed() {
        let mut svc = web1();
        svc.labels
            .insert(labels::PORTS.into(), "7000-7009/udp, 8080".into());
        let r = derive(&svc, &opts()).unwrap();
        assert_eq!(ports_text(&r.ports), "8080/tcp 7000-7009/udp");
        let o = UpOptions {
            publish: vec!["81/tcp".parse().unwrap()],
            ..opts()
        };
        assert_eq!(ports_text(&derive(&svc, &o).unwrap().ports), "81/tcp");
    }

    #[test]
    fn refuses_what_cannot_work() {
        let mut svc = web1();
        svc.exposed.clear();
        assert_eq!(
            derive(&svc, &opts()).unwrap_err(),
            PlanError::NoPorts("web1".into())
        );
        let mut svc = web1();
        svc.running = false;
        assert!(matches!(
            derive(&svc, &opts()),
            Err(PlanError::NotRunning(_))
        ));
        let mut svc = web1();
        svc.networks.clear();
        svc.network_mode = "host".into();
        assert!(matches!(
            derive(&svc, &opts()),
            Err(PlanError::NoNetwork { .. })
        ));
        assert!(matches!(
            derive(&web1(), &UpOptions::default()),
            Err(PlanError::Invalid(_))
        ));
        let mut svc = web1();
        svc.labels.insert(labels::PORTS.into(), "80/icmp".into());
        assert!(matches!(derive(&svc, &opts()), Err(PlanError::Invalid(_))));
    }

    #[test]
    fn mac_and_client_id_are_stable_and_distinct() {
        let a = stable_mac("web1");
        assert_eq!(a, stable_mac("web1"));
        assert_ne!(a, stable_mac("web2"));
        assert_eq!(a[0] & 0x03, 0x02, "locally administered unicast");
        // Pinned: changing the derivation would move every user's lease.
        assert_eq!(format_mac(&stable_mac("web1")), "76:7b:67:0b:3b:05");
        assert_eq!(client_id("web1"), b"\0netcontainer:web1".to_vec());
        assert_ne!(client_id("web1"), client_id("web2"));
    }

    #[test]
    fn identity_is_unique_across_hosts_and_stable_across_reschedules() {
        // The same name on two hosts: two identities, two MACs, two client ids.
        let a = derive(&web1(), &opts()).unwrap();
        let mut other_host = web1();
        other_host.host_id = "HOST-B".into();
        let b = derive(&other_host, &opts()).unwrap();
        assert_eq!(a.identity, "HOST-A/web1");
        assert_ne!(a.mac, b.mac);
        assert_ne!(a.plan.client_id, b.plan.client_id);
        assert_eq!(a.labels()[labels::IDENTITY], "HOST-A/web1");
        // A Swarm task: its swarm's service + slot, whatever the node and the task id.
        let task = |host: &str, service_id: &str, task: &str| {
            let mut s = web1();
            s.host_id = host.into();
            s.name = task.into();
            s.labels.insert(labels::SWARM_SERVICE.into(), "web".into());
            s.labels
                .insert(labels::SWARM_SERVICE_ID.into(), service_id.into());
            s.labels.insert(labels::SWARM_TASK.into(), task.into());
            derive(&s, &opts()).unwrap()
        };
        let t1 = task("HOST-A", "svc1d", "web.1.abc");
        let t1_moved = task("HOST-B", "svc1d", "web.1.xyz");
        let t2 = task("HOST-A", "svc1d", "web.2.def");
        assert_eq!(t1.identity, "swarm:svc1d/web.1");
        assert_eq!(
            (t1.mac, &t1.plan.client_id),
            (t1_moved.mac, &t1_moved.plan.client_id)
        );
        assert_ne!(t1.mac, t2.mac);
        assert_eq!(t1.plan.hostname.as_deref(), Some("web-1"));
        // Another swarm on the same LAN, same service name and slot: its own identity.
        let other_swarm = task("HOST-C", "0th3r", "web.1.abc");
        assert_ne!(t1.identity, other_swarm.identity);
        assert_ne!(t1.mac, other_swarm.mac);
        assert_ne!(t1.plan.client_id, other_swarm.plan.client_id);
        // Global service: the node ID stands in the slot's place.
        let g = task("HOST-A", "svc1d", "web.n0de1d.t4sk");
        assert_eq!(g.identity, "swarm:svc1d/web.n0de1d");
        // The label overrides; a bad one is refused.
        let mut svc = web1();
        svc.labels
            .insert(labels::IDENTITY.into(), "shop-frontend".into());
        let o = derive(&svc, &opts()).unwrap();
        assert_eq!(o.identity, "shop-frontend");
        assert_eq!(o.mac, stable_mac("shop-frontend"));
        svc.labels.insert(labels::IDENTITY.into(), "bad\nid".into());
        assert!(matches!(derive(&svc, &opts()), Err(PlanError::Invalid(_))));
        // A recorded identity (a re-created router's) wins over the derived one.
        let kept = UpOptions {
            identity: Some("OLD-DAEMON/web1".into()),
            ..opts()
        };
        let r = derive(&web1(), &kept).unwrap();
        assert_eq!(r.identity, "OLD-DAEMON/web1");
        assert_eq!(r.mac, stable_mac("OLD-DAEMON/web1"));
        assert_eq!(r.plan.client_id, Some(client_id("OLD-DAEMON/web1")));
    }

    /// A Compose replica as Compose v1 or v2 labels it.
    fn compose(name: &str, number: &str) -> ServiceInfo {
        let mut s = web1();
        s.name = name.into();
        for (k, v) in [
            (labels::COMPOSE_PROJECT, "shop"),
            (labels::COMPOSE_SERVICE, "web"),
            (labels::COMPOSE_NUMBER, number),
            (labels::COMPOSE_ONEOFF, "False"),
        ] {
            s.labels.insert(k.into(), v.into());
        }
        s
    }

    #[test]
    fn a_compose_replica_is_its_service_and_number_whatever_its_name() {
        let v1 = derive(&compose("shop_web_1", "1"), &opts()).unwrap();
        let v2 = derive(&compose("shop-web-1", "1"), &opts()).unwrap();
        assert_eq!(v1.identity, "HOST-A/compose/shop/web/1");
        assert_eq!(
            (v1.identity.as_str(), v1.mac, &v1.plan.client_id),
            (v2.identity.as_str(), v2.mac, &v2.plan.client_id)
        );
        // One hostname too.
        assert_eq!(v1.plan.hostname.as_deref(), Some("shop-web-1"));
        assert_eq!(v1.plan.hostname, v2.plan.hostname);
        // Another replica, another host: other identities.
        let second = derive(&compose("shop_web_2", "2"), &opts()).unwrap();
        assert_ne!(second.mac, v1.mac);
        let mut elsewhere = compose("shop_web_1", "1");
        elsewhere.host_id = "HOST-B".into();
        assert_ne!(derive(&elsewhere, &opts()).unwrap().mac, v1.mac);
        // The label still overrides.
        let mut own = compose("shop_web_1", "1");
        own.labels.insert(labels::IDENTITY.into(), "web".into());
        assert_eq!(identity_of(&own).unwrap(), "web");
        // A one-off (`run`) is not the replica: it is itself, and watch leaves it alone
        // unless it has an identity of its own.
        let mut run = compose("shop_web_run_3f2a", "1");
        run.labels
            .insert(labels::COMPOSE_ONEOFF.into(), "True".into());
        assert_eq!(identity_of(&run).unwrap(), "HOST-A/shop_web_run_3f2a");
        assert!(is_unlabelled_oneoff(&run));
        run.labels.insert(labels::IDENTITY.into(), "job".into());
        assert!(!is_unlabelled_oneoff(&run));
        assert!(!is_unlabelled_oneoff(&compose("shop_web_1", "1")));
        assert!(!is_unlabelled_oneoff(&web1()));
        // Labels Compose could not have written are refused, naming the label.
        for (label, value) in [
            (labels::COMPOSE_PROJECT, "a/b"),
            (labels::COMPOSE_SERVICE, ""),
            (labels::COMPOSE_NUMBER, "1x"),
            (labels::COMPOSE_NUMBER, "-1"),
            (labels::COMPOSE_NUMBER, "99999999999"),
        ] {
            let mut s = compose("shop_web_1", "1");
            s.labels.insert(label.into(), value.into());
            match identity_of(&s) {
                Err(PlanError::Invalid(e)) => {
                    assert!(e.contains(label) && !e.contains('\n'), "{e}")
                }
                other => panic!("{label}={value:?}: {other:?}"),
            }
        }
        // Without all three labels it is a plain container.
        let mut partial = compose("shop_web_1", "1");
        partial.labels.remove(labels::COMPOSE_NUMBER);
        assert_eq!(identity_of(&partial).unwrap(), "HOST-A/shop_web_1");
    }

    #[test]
    fn ipvlan_sets_the_broadcast_flag_and_keeps_a_client_id() {
        let m = derive(&web1(), &opts()).unwrap();
        assert!(
            !m.plan.broadcast_flag,
            "macvlan receives unicast before it owns the address"
        );
        let o = UpOptions {
            mode: Some(crate::leg::IPVLAN),
            ..opts()
        };
        let r = derive(&web1(), &o).unwrap();
        assert_eq!(r.mode, crate::leg::IPVLAN);
        assert!(r.plan.broadcast_flag, "RFC 2131 4.1");
        assert_eq!(r.plan.client_id, Some(client_id("HOST-A/web1")));
        // From the label too.
        let mut svc = web1();
        svc.labels.insert(labels::MODE.into(), "ipvlan".into());
        assert!(derive(&svc, &opts()).unwrap().plan.broadcast_flag);
    }

    #[test]
    fn ipvlan_refuses_a_mac_and_the_arp_probe() {
        let ip = UpOptions {
            mode: Some(crate::leg::IPVLAN),
            ..opts()
        };
        let e = derive(
            &web1(),
            &UpOptions {
                mac: Some([2, 0, 0, 0, 0, 1]),
                ..ip.clone()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--mac") && e.contains("ipvlan") && e.contains("parent's MAC"),
            "{e}"
        );
        let mut svc = web1();
        svc.labels
            .insert(labels::MAC.into(), "02:00:00:00:00:01".into());
        let e = derive(&svc, &ip).unwrap_err().to_string();
        assert!(e.contains(labels::MAC) && e.contains("ipvlan"), "{e}");
        // The same MAC label with macvlan is fine.
        assert!(derive(&svc, &opts()).is_ok());
        let e = derive(
            &web1(),
            &UpOptions {
                arp_probe: true,
                ..ip.clone()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--arp-probe") && e.contains("ipvlan"), "{e}");
        let mut svc = web1();
        svc.labels.insert(labels::ARP_PROBE.into(), "true".into());
        let e = derive(&svc, &ip).unwrap_err().to_string();
        assert!(e.contains(labels::ARP_PROBE) && e.contains("ipvlan"), "{e}");
    }

    #[test]
    fn two_networks_first_by_name_unless_chosen() {
        let mut svc = web1();
        svc.networks = vec![
            ("zeta".into(), Ipv4Addr::new(198, 51, 100, 18)),
            ("alpha".into(), Ipv4Addr::new(198, 51, 100, 34)),
        ];
        let r = derive(&svc, &opts()).unwrap();
        assert_eq!(
            (r.network.as_str(), r.service_ip),
            ("alpha", Ipv4Addr::new(198, 51, 100, 34))
        );
        let o = UpOptions {
            network: Some("zeta".into()),
            ..opts()
        };
        let r = derive(&svc, &o).unwrap();
        assert_eq!(
            (r.network.as_str(), r.service_ip),
            ("zeta", Ipv4Addr::new(198, 51, 100, 18))
        );
        assert_eq!(
            r.plan.forwards[0].target_address,
            Ipv4Addr::new(198, 51, 100, 18)
        );
        assert_eq!(r.labels()[labels::NETWORK], "zeta");
        svc.labels.insert(labels::NETWORK.into(), "zeta".into());
        assert_eq!(derive(&svc, &opts()).unwrap().network, "zeta");
        let e = derive(
            &svc,
            &UpOptions {
                network: Some("nope".into()),
                ..opts()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("not on network nope") && e.contains("alpha, zeta"),
            "{e}"
        );
    }

    #[test]
    fn gateway_mode_by_default_masquerade_on_several_networks() {
        let rp = derive(&web1(), &opts()).unwrap();
        assert_eq!(rp.plan.source, SourceMode::Gateway);
        assert!(!rp.source_chosen);
        assert!(!rp.labels().contains_key(labels::SOURCE));
        let svc = rp.plan.service.as_ref().unwrap();
        assert_eq!(
            (svc.name.as_str(), svc.hostname.as_str(), svc.address),
            ("web1", "abc", Ipv4Addr::new(198, 51, 100, 2))
        );
        assert_eq!(rp.plan.gateway_for(), Some(Ipv4Addr::new(198, 51, 100, 2)));
        // Asked for, by flag or label: recorded on the router.
        let mut o = opts();
        o.source = Some(SourceMode::Masquerade);
        let rp = derive(&web1(), &o).unwrap();
        assert_eq!(rp.plan.source, SourceMode::Masquerade);
        assert_eq!(rp.plan.gateway_for(), None);
        assert_eq!(rp.labels()[labels::SOURCE], "masquerade");
        let mut svc = web1();
        svc.labels
            .insert(labels::SOURCE.into(), "masquerade".into());
        assert_eq!(
            derive(&svc, &opts()).unwrap().plan.source,
            SourceMode::Masquerade
        );
        svc.labels.insert(labels::SOURCE.into(), "nat".into());
        let e = derive(&svc, &opts()).unwrap_err().to_string();
        assert!(e.contains(labels::SOURCE) && e.contains("\"nat\""), "{e}");
        // Two networks: masquerade unless gateway is asked for, which is refused.
        let mut two = web1();
        two.networks
            .push(("other".into(), Ipv4Addr::new(198, 51, 100, 20)));
        assert_eq!(
            derive(&two, &opts()).unwrap().plan.source,
            SourceMode::Masquerade
        );
        let mut o = opts();
        o.source = Some(SourceMode::Gateway);
        let e = derive(&two, &o).unwrap_err().to_string();
        assert!(
            e.contains("2 networks") && e.contains("--source masquerade"),
            "{e}"
        );
    }

    #[test]
    fn hostnames_from_container_names() {
        assert_eq!(hostname_for("/web_1.prod"), "web-1-prod");
        assert_eq!(hostname_for("__"), "netcontainer");
        assert!(validate_hostname(&hostname_for(&"x".repeat(100))).is_ok());
    }

    #[test]
    fn remapped_forwards_and_overlaps_refused() {
        let o = UpOptions {
            publish: vec![
                "80:8080/tcp".parse().unwrap(),
                "5353:53/udp".parse().unwrap(),
            ],
            ..opts()
        };
        let r = derive(&web1(), &o).unwrap();
        let f: Vec<_> = r
            .plan
            .forwards
            .iter()
            .map(|f| (f.public_port, f.public_port_end, f.target_port))
            .collect();
        assert_eq!(f, vec![(80, 80, 8080), (5353, 5353, 53)]);
        assert_eq!(r.labels()[labels::PORTS], "80:8080/tcp 5353:53/udp");
        // Two specs on one LAN port: refused, both named.
        let o = UpOptions {
            publish: vec!["80:8080/tcp".parse().unwrap(), "79-81/tcp".parse().unwrap()],
            ..opts()
        };
        let e = derive(&web1(), &o).unwrap_err().to_string();
        assert!(e.contains("79-81/tcp") && e.contains("80:8080/tcp"), "{e}");
        // Same port, other protocol: fine.
        let o = UpOptions {
            publish: vec!["53/tcp".parse().unwrap(), "53/udp".parse().unwrap()],
            ..opts()
        };
        assert!(derive(&web1(), &o).is_ok());
        // The label too.
        let mut svc = web1();
        svc.labels
            .insert(labels::PORTS.into(), "80:8080/tcp,80/tcp".into());
        let e = derive(&svc, &opts()).unwrap_err().to_string();
        assert!(e.contains("80:8080/tcp"), "{e}");
        svc.labels
            .insert(labels::PORTS.into(), "7000-7001:8000/udp".into());
        let e = derive(&svc, &opts()).unwrap_err().to_string();
        assert!(
            e.contains("7000-7001:8000/udp") && e.contains(labels::PORTS),
            "{e}"
        );
    }
}
