//! bollard's types converted into ours, right at the boundary: pure
//! functions, so what the driver reads from Docker is unit-tested without a
//! daemon.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::models::{
    ContainerInspectResponse, ContainerSummary, EventMessage, EventMessageTypeEnum, Network,
    NetworkInspect, SystemInfo,
};

use crate::labels;
use crate::plan::ServiceInfo;
use crate::state::ServiceName;

/// A container event, reduced to what `watch` needs.
#[derive(Clone, Debug)]
pub struct ContainerEvent {
    pub action: String,
    pub name: String,
    /// Docker puts the container's labels among the event's attributes.
    pub labels: HashMap<String, String>,
    /// A network's `connect`/`disconnect`: the container's ID. Such an
    /// event names the network, not the container, and carries no labels:
    /// `name` and `labels` are empty until the container is inspected.
    pub connected: Option<String>,
    /// When Docker says it happened (its `timeNano`), if it says: the event
    /// may be read well after that while the stream lags behind.
    pub at: Option<std::time::SystemTime>,
}

/// What the engine's `/info` says that decides whether netcontainer can
/// work with it at all (`crate::platform`): missing fields are empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Engine {
    pub security_options: Vec<String>,
    pub operating_system: String,
    pub name: String,
    pub kernel_version: String,
}

pub(crate) fn engine_of(i: &SystemInfo) -> Engine {
    Engine {
        security_options: i.security_options.clone().unwrap_or_default(),
        operating_system: i.operating_system.clone().unwrap_or_default(),
        name: i.name.clone().unwrap_or_default(),
        kernel_version: i.kernel_version.clone().unwrap_or_default(),
    }
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

pub(super) fn pid_of(c: &ContainerInspectResponse) -> Option<u32> {
    c.state
        .as_ref()
        .and_then(|s| s.pid)
        .filter(|p| *p > 0)
        .and_then(|p| u32::try_from(p).ok())
}

pub(super) fn name_of(c: &ContainerInspectResponse) -> String {
    c.name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_string()
}

/// Extracts what `plan` needs from `docker inspect`; `labels` are the
/// container's own (see `DockerClient::own_labels`).
pub fn service_info(
    c: &ContainerInspectResponse,
    labels: HashMap<String, String>,
    host_id: &str,
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
        host_id: host_id.to_string(),
        hostname: config.and_then(|c| c.hostname.clone()).unwrap_or_default(),
        gateways,
        // Filled by `DockerClient::service` (needs the networks' inspect).
        internal: Vec::new(),
        pid: pid_of(c),
        sandbox: sandbox_of(c),
    }
}

/// A router, from its own labels. One whose service label is not a valid
/// container name is ignored with a warning: that label builds paths.
pub(super) fn router_info(
    c: &ContainerInspectResponse,
    labels: HashMap<String, String>,
) -> Option<RouterInfo> {
    router_from(
        c.id.clone().unwrap_or_default(),
        name_of(c),
        c.state.as_ref().and_then(|s| s.running).unwrap_or(false),
        labels,
    )
}

/// A router container `id` named `name`, from its own labels; `None` if it
/// is not one (or names no valid service).
pub(super) fn router_from(
    id: String,
    name: String,
    running: bool,
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
            tracing::warn!(container = %name, "ignoring a router container: label {}: {e}", labels::SERVICE);
            return None;
        }
    };
    Some(RouterInfo {
        id,
        name,
        service,
        running,
        labels,
    })
}

/// An event from Docker's stream, for a container: a container's own
/// (Docker puts its name and labels among the actor's attributes), or a
/// network's `connect`/`disconnect` of one (the actor is the network; the
/// container's ID is the `container` attribute). Other network events
/// (`create`, `destroy`, ...) concern no container: `None`.
pub(super) fn container_event(ev: EventMessage) -> Option<ContainerEvent> {
    let network = ev.typ == Some(EventMessageTypeEnum::NETWORK);
    let at = ev
        .time_nano
        .and_then(|n| u64::try_from(n).ok())
        .map(|n| std::time::UNIX_EPOCH + std::time::Duration::from_nanos(n));
    let action = ev.action.unwrap_or_default();
    let attributes = ev.actor.unwrap_or_default().attributes.unwrap_or_default();
    if network {
        if action != "connect" && action != "disconnect" {
            return None;
        }
        let id = attributes.get("container").filter(|id| !id.is_empty())?;
        return Some(ContainerEvent {
            action,
            name: String::new(),
            labels: HashMap::new(),
            connected: Some(id.clone()),
            at,
        });
    }
    // Podman 4 says `died` where Docker says `die` (containers/podman#10168).
    let action = if action == "died" {
        "die".to_string()
    } else {
        action
    };
    Some(ContainerEvent {
        action,
        name: attributes.get("name").cloned().unwrap_or_default(),
        labels: attributes,
        connected: None,
        at,
    })
}

/// The Docker option that names a bridge network's device on the host.
const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// The host device of bridge network `n`: the name its options give (the
/// default `bridge` network says `docker0`), else Docker's own
/// `br-<first 12 characters of the ID>`.
fn bridge_device(n: &Network) -> Option<String> {
    if let Some(name) = n
        .options
        .as_ref()
        .and_then(|o| o.get(BRIDGE_NAME_OPTION))
        .filter(|v| !v.is_empty())
    {
        return Some(name.clone());
    }
    let id = n.id.as_deref()?;
    Some(format!("br-{}", id.get(..12)?))
}

fn in_subnet(a: Ipv4Addr, net: Ipv4Addr, plen: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(plen)).unwrap_or(0);
    u32::from(a) & mask == u32::from(net) & mask
}

/// The bridge networks with an IPv4 gateway among `nets` (where `watch`
/// serves the "who am I?" endpoint): one per IPAM config with a prefix of 1
/// to 30 bits; internal networks have no gateway to serve on. The gateway is
/// IPAM's when it reports one; Docker 20.10 reports none for a network made
/// without `--gateway` nor for its default `bridge`, and then it is the
/// address inside the subnet that the network's bridge device holds on the
/// host (`device_addrs`: the IPv4 addresses of a device by name).
pub(super) fn bridge_networks(
    nets: Vec<Network>,
    device_addrs: &dyn Fn(&str) -> Vec<Ipv4Addr>,
) -> Vec<BridgeNet> {
    let mut out = Vec::new();
    for n in nets {
        if n.driver.as_deref() != Some("bridge") || n.internal == Some(true) {
            continue;
        }
        let id = n.id.clone().unwrap_or_default();
        let name = n.name.clone().unwrap_or_default();
        let device = bridge_device(&n);
        let configs = n.ipam.and_then(|i| i.config).unwrap_or_default();
        for c in configs {
            let Some((net, plen)) = c.subnet.as_deref().and_then(|s| s.split_once('/')) else {
                continue;
            };
            let (Ok(net), Some(prefix_len)) = (
                net.parse::<Ipv4Addr>(),
                plen.parse::<u8>().ok().filter(|p| (1..=30).contains(p)),
            ) else {
                continue;
            };
            let gateway = match c.gateway.as_deref().filter(|g| !g.is_empty()) {
                Some(g) => g.parse().ok(),
                None => device.as_deref().and_then(|d| {
                    device_addrs(d)
                        .into_iter()
                        .find(|a| in_subnet(*a, net, prefix_len))
                }),
            };
            if let Some(gateway) = gateway {
                out.push(BridgeNet {
                    id: id.clone(),
                    name: name.clone(),
                    gateway,
                    prefix_len,
                });
            }
        }
    }
    out
}

/// The containers on a network, from its inspect: (id, name, IPv4 address).
pub(super) fn network_members(n: NetworkInspect) -> Vec<(String, String, Ipv4Addr)> {
    n.containers
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
        .collect()
}

/// A container's IPv4 address on `network`.
pub(super) fn ip_on(c: &ContainerInspectResponse, network: &str) -> Option<Ipv4Addr> {
    c.network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .and_then(|nets| nets.get(network))
        .and_then(|ep| ep.ip_address.as_deref())
        .and_then(|ip| ip.parse().ok())
}

/// What a container listing shows of a container that a look at its
/// service could depend on, as one number: its ID, state, labels, and each
/// network's endpoint, addresses and MAC. Equal marks in two listings: as
/// far as Docker shows, nothing changed in between (a restart gets new
/// endpoints; new labels or published ports a new container). The
/// `Status` text ("Up 5 minutes") ticks and is left out. Only compared
/// within one process.
pub(super) fn mark_of(c: &ContainerSummary) -> u64 {
    use std::collections::BTreeMap;
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    c.id.hash(&mut h);
    c.state.map(|s| s.to_string()).hash(&mut h);
    c.labels
        .as_ref()
        .map(|l| l.iter().collect::<BTreeMap<_, _>>())
        .hash(&mut h);
    let nets: BTreeMap<_, _> = c
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .map(|n| n.iter().collect())
        .unwrap_or_default();
    for (name, ep) in nets {
        (
            name,
            &ep.network_id,
            &ep.endpoint_id,
            &ep.ip_address,
            &ep.global_ipv6_address,
            &ep.mac_address,
        )
            .hash(&mut h);
    }
    h.finish()
}

/// A container's network namespace handle (`SandboxKey`).
pub(super) fn sandbox_of(c: &ContainerInspectResponse) -> Option<std::path::PathBuf> {
    c.network_settings
        .as_ref()
        .and_then(|n| n.sandbox_key.clone())
        .filter(|k| !k.is_empty())
        .map(std::path::PathBuf::from)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A container as `docker ps` lists it (the API's field names).
    fn summary(v: serde_json::Value) -> ContainerSummary {
        serde_json::from_value(v).unwrap()
    }

    fn listed() -> serde_json::Value {
        json!({
            "Id": "abc123",
            "Names": ["/web1"],
            "State": "running",
            "Status": "Up 5 minutes",
            "Labels": {"netcontainer.enable": "true", "b": "2"},
            "NetworkSettings": {"Networks": {"appnet": {
                "NetworkID": "n1", "EndpointID": "e1", "IPAddress": "198.51.100.2",
                "MacAddress": "02:42:c6:33:64:02"
            }}}
        })
    }

    #[test]
    fn a_listing_mark_moves_with_what_a_look_depends_on_only() {
        let base = mark_of(&summary(listed()));
        assert_eq!(base, mark_of(&summary(listed())), "stable");
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = listed();
            f(&mut v);
            mark_of(&summary(v))
        };
        // The status text ticks; it is no change.
        assert_eq!(base, with(&|v| v["Status"] = json!("Up 6 minutes")));
        let ep = |v: &mut serde_json::Value| -> serde_json::Value {
            v["NetworkSettings"]["Networks"]["appnet"].take()
        };
        for (what, changed) in [
            ("state", with(&|v| v["State"] = json!("exited"))),
            ("id", with(&|v| v["Id"] = json!("def456"))),
            ("label", with(&|v| v["Labels"]["b"] = json!("3"))),
            (
                "address",
                with(&|v| {
                    let mut e = ep(v);
                    e["IPAddress"] = json!("198.51.100.3");
                    v["NetworkSettings"]["Networks"]["appnet"] = e;
                }),
            ),
            (
                "endpoint (a restart)",
                with(&|v| {
                    let mut e = ep(v);
                    e["EndpointID"] = json!("e2");
                    v["NetworkSettings"]["Networks"]["appnet"] = e;
                }),
            ),
            (
                "another network",
                with(&|v| {
                    v["NetworkSettings"]["Networks"]["other"] = json!({"NetworkID": "n2"});
                }),
            ),
        ] {
            assert_ne!(base, changed, "{what}");
        }
    }

    /// A container as `docker inspect` shows it (Docker's own field names).
    fn inspect(v: serde_json::Value) -> ContainerInspectResponse {
        serde_json::from_value(v).unwrap()
    }

    fn web1() -> ContainerInspectResponse {
        inspect(json!({
            "Id": "abc123",
            "Name": "/web1",
            "State": {"Running": true, "Pid": 4242},
            "Config": {"Hostname": "abc123", "ExposedPorts": {"80/tcp": {}}},
            "HostConfig": {
                "NetworkMode": "appnet",
                "PortBindings": {"53/udp": [{"HostIp": "", "HostPort": "5353"}]}
            },
            "NetworkSettings": {
                "SandboxKey": "/var/run/docker/netns/0123",
                "Ports": {
                    "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
                    "81/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8081"}],
                    "53/udp": [{"HostIp": "", "HostPort": "5353"}],
                    "82/tcp": null
                },
                "Networks": {
                    "appnet": {
                        "IPAddress": "198.51.100.2",
                        "Gateway": "198.51.100.1",
                        "GlobalIPv6Address": "2001:db8::2",
                        "NetworkID": "n1"
                    },
                    "other": {"IPAddress": "", "Gateway": ""}
                }
            }
        }))
    }

    #[test]
    fn a_service_from_its_inspect() {
        let labels = HashMap::from([("netcontainer.enable".to_string(), "true".to_string())]);
        let s = service_info(&web1(), labels.clone(), "HOST");
        assert_eq!((s.name.as_str(), s.id.as_str()), ("web1", "abc123"));
        assert!(s.running);
        assert_eq!(s.network_mode, "appnet");
        assert_eq!(
            s.networks,
            [("appnet".to_string(), Ipv4Addr::new(198, 51, 100, 2))]
        );
        assert_eq!(
            s.gateways,
            [("appnet".to_string(), Ipv4Addr::new(198, 51, 100, 1))]
        );
        assert_eq!(
            s.networks6[0].1,
            "2001:db8::2".parse::<std::net::Ipv6Addr>().unwrap()
        );
        assert_eq!(s.exposed, ["80/tcp"]);
        assert_eq!(s.published, ["53/udp"]);
        assert_eq!((s.labels, s.host_id.as_str()), (labels, "HOST"));
        assert_eq!(s.hostname, "abc123");
        assert_eq!(s.pid, Some(4242));
        assert_eq!(
            s.sandbox.as_deref(),
            Some(std::path::Path::new("/var/run/docker/netns/0123"))
        );
        assert!(s.internal.is_empty(), "filled by the client");
        // A stopped container: no pid, no sandbox.
        let stopped = inspect(
            json!({"Name": "/web1", "State": {"Running": false, "Pid": 0},
            "NetworkSettings": {"SandboxKey": ""}}),
        );
        let s = service_info(&stopped, HashMap::new(), "D");
        assert!(!s.running && s.pid.is_none() && s.sandbox.is_none());
    }

    #[test]
    fn published_tcp_ports_bound_on_every_address() {
        assert_eq!(published_tcp(&web1()), [(80, 8080)]);
        assert_eq!(
            ip_on(&web1(), "appnet"),
            Some(Ipv4Addr::new(198, 51, 100, 2))
        );
        assert_eq!(ip_on(&web1(), "other"), None);
        assert_eq!(ip_on(&web1(), "nope"), None);
    }

    #[test]
    fn a_router_by_its_own_labels_only() {
        let c = inspect(json!({"Id": "r1", "Name": "/netcontainer-web1",
            "State": {"Running": true}}));
        let l = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        let r = router_info(
            &c,
            l(&[
                (labels::ROLE, labels::ROLE_ROUTER),
                (labels::SERVICE, "web1"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (r.id.as_str(), r.name.as_str()),
            ("r1", "netcontainer-web1")
        );
        assert_eq!(r.service.as_str(), "web1");
        assert!(r.running);
        // Not a router, or one whose service label cannot be a name.
        assert!(router_info(&c, l(&[(labels::SERVICE, "web1")])).is_none());
        assert!(
            router_info(
                &c,
                l(&[(labels::ROLE, labels::ROLE_ROUTER), (labels::SERVICE, "..")])
            )
            .is_none()
        );
    }

    #[test]
    fn network_connect_and_disconnect_name_the_container() {
        // As dockerd 20.10 sends them (`docker events --format '{{json .}}'`).
        let ev = |action: &str, attrs: serde_json::Value| -> EventMessage {
            serde_json::from_value(json!({
                "Type": "network", "Action": action,
                "Actor": {"ID": "7f3c0a", "Attributes": attrs},
                "scope": "local", "time": 1700000000
            }))
            .unwrap()
        };
        for action in ["connect", "disconnect"] {
            let e = container_event(ev(
                action,
                json!({"container": "c0ffee", "name": "net1", "type": "bridge"}),
            ))
            .unwrap();
            assert_eq!(e.action, action);
            assert_eq!(e.connected.as_deref(), Some("c0ffee"));
            // The network's name is not the container's.
            assert_eq!(e.name, "");
            assert!(e.labels.is_empty());
        }
        // Events of the network itself concern no container.
        for action in ["create", "destroy", "remove"] {
            assert!(
                container_event(ev(action, json!({"name": "net1", "type": "bridge"}))).is_none()
            );
        }
        assert!(container_event(ev("connect", json!({"name": "net1"}))).is_none());
    }

    #[test]
    fn events_networks_and_members() {
        let ev: EventMessage = serde_json::from_value(json!({
            "Action": "start",
            "Actor": {"ID": "abc", "Attributes": {"name": "web1", "netcontainer.enable": "true"}}
        }))
        .unwrap();
        let e = container_event(ev).unwrap();
        assert_eq!((e.action.as_str(), e.name.as_str()), ("start", "web1"));
        assert_eq!(e.labels["netcontainer.enable"], "true");
        assert_eq!(e.connected, None);
        // Podman's `died` is Docker's `die`.
        let died: EventMessage = serde_json::from_value(json!({
            "Type": "container", "Action": "died",
            "Actor": {"ID": "abc", "Attributes": {"name": "web1"}}
        }))
        .unwrap();
        assert_eq!(container_event(died).unwrap().action, "die");

        let nets: Vec<Network> = serde_json::from_value(json!([
            {"Id": "b1", "Name": "bridge", "Driver": "bridge",
             "IPAM": {"Config": [{"Subnet": "198.51.100.0/24", "Gateway": "198.51.100.1"},
                                 {"Subnet": "2001:db8::/64", "Gateway": "2001:db8::1"}]}},
            {"Id": "i1", "Name": "inner", "Driver": "bridge", "Internal": true,
             "IPAM": {"Config": [{"Subnet": "198.51.101.0/24", "Gateway": "198.51.101.1"}]}},
            {"Id": "o1", "Name": "over", "Driver": "overlay",
             "IPAM": {"Config": [{"Subnet": "10.0.0.0/24", "Gateway": "10.0.0.1"}]}},
            {"Id": "p1", "Name": "p2p", "Driver": "bridge",
             "IPAM": {"Config": [{"Subnet": "198.51.102.0/31", "Gateway": "198.51.102.1"}]}}
        ]))
        .unwrap();
        let no_devices = |_: &str| Vec::new();
        assert_eq!(
            bridge_networks(nets, &no_devices),
            [BridgeNet {
                id: "b1".into(),
                name: "bridge".into(),
                gateway: Ipv4Addr::new(198, 51, 100, 1),
                prefix_len: 24,
            }]
        );

        // Docker 20.10 reports no IPAM gateway for a network made without
        // `--gateway`, nor for its default `bridge`: the bridge device's
        // address inside the subnet is the gateway (the device named by the
        // option, else `br-<id[..12]>`); a device without one serves nothing.
        let nets: Vec<Network> = serde_json::from_value(json!([
            {"Id": "d0", "Name": "bridge", "Driver": "bridge",
             "Options": {"com.docker.network.bridge.name": "docker0"},
             "IPAM": {"Config": [{"Subnet": "198.51.100.0/24"}]}},
            {"Id": "0123456789abcdef", "Name": "plain", "Driver": "bridge",
             "IPAM": {"Config": [{"Subnet": "198.51.101.0/25"}]}},
            {"Id": "fedcba9876543210", "Name": "bare", "Driver": "bridge",
             "IPAM": {"Config": [{"Subnet": "198.51.102.0/24"}]}}
        ]))
        .unwrap();
        let devices = |d: &str| match d {
            "docker0" => vec![Ipv4Addr::new(192, 0, 2, 9), Ipv4Addr::new(198, 51, 100, 1)],
            "br-0123456789ab" => vec![Ipv4Addr::new(198, 51, 101, 5)],
            _ => Vec::new(),
        };
        assert_eq!(
            bridge_networks(nets, &devices),
            [
                BridgeNet {
                    id: "d0".into(),
                    name: "bridge".into(),
                    gateway: Ipv4Addr::new(198, 51, 100, 1),
                    prefix_len: 24,
                },
                BridgeNet {
                    id: "0123456789abcdef".into(),
                    name: "plain".into(),
                    gateway: Ipv4Addr::new(198, 51, 101, 5),
                    prefix_len: 25,
                }
            ]
        );

        let n: NetworkInspect = serde_json::from_value(json!({
            "Containers": {
                "c1": {"Name": "web1", "IPv4Address": "198.51.100.2/24"},
                "c2": {"Name": "nov4", "IPv4Address": ""}
            }
        }))
        .unwrap();
        assert_eq!(
            network_members(n),
            [(
                "c1".to_string(),
                "web1".to_string(),
                Ipv4Addr::new(198, 51, 100, 2)
            )]
        );
    }
}
