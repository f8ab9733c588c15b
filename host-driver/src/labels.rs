//! The `netcontainer.*` labels: their names, and the one parser of them on
//! services ([`ServiceLabels`], what the operator asks for) and on routers
//! ([`RouterLabels`], what `up` recorded). `up`, `watch`, plan derivation and `ls` all read labels here,
//! with one rule for booleans and errors that name the label.
//!
//! An empty value is the same as no label. Booleans: `true`/`1`/`yes` and
//! `false`/`0`/`no`, any case; anything else is an error. A `netcontainer.*`
//! key that means nothing on a service is reported (and warned about once per
//! service by [`warn_unknown_once`]), never silently ignored.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

use crate::leg::Kind;
use crate::mac::parse_mac;
use crate::ports::{PortSpec, parse_port_list};
use crate::state::ServiceName;
use netcontainer_proto::SourceMode;

// The label keys: on services (what the operator asks for) and on routers
// (what the driver recorded).

/// Every label of ours starts with this.
pub const PREFIX: &str = "netcontainer.";
pub const ROLE: &str = "netcontainer.role";
pub const ROLE_ROUTER: &str = "router";
pub const SERVICE: &str = "netcontainer.service";
pub const SERVICE_ID: &str = "netcontainer.service-id";
pub const PARENT: &str = "netcontainer.parent";
pub const MODE: &str = "netcontainer.mode";
pub const MAC: &str = "netcontainer.mac";
pub const HOSTNAME: &str = "netcontainer.hostname";
pub const PORTS: &str = "netcontainer.ports";
pub const NETWORK: &str = "netcontainer.network";
/// `gateway` or `masquerade` (on a service, or recorded by `up`).
pub const SOURCE: &str = "netcontainer.source";
/// On a router: "false" when made with `up --no-host-route` (no host
/// route shim for its lease).
pub const HOST_ROUTE: &str = "netcontainer.host-route";
/// On a service: the address to ask the DHCP server for (option 50); on
/// a router: the address it was made asking for.
pub const IP: &str = "netcontainer.ip";
/// `off` or `auto` (the default): IPv6 on the LAN leg.
pub const IPV6: &str = "netcontainer.ipv6";
/// Host directory bind-mounted into the router (socket, lease).
pub const STATE_DIR: &str = "netcontainer.state-dir";
/// On a service: `watch` gives it a router.
pub const ENABLE: &str = "netcontainer.enable";
/// "true" (on a service, or set by `up --arp-probe`): the router's agent
/// probes a new address with ARP before using it (`--arp-probe`).
pub const ARP_PROBE: &str = "netcontainer.arp-probe";
/// On a service: the identity its MAC and client id derive from,
/// overriding the derived one; on a router: the identity it was made with.
pub const IDENTITY: &str = "netcontainer.identity";
/// `CIDR,...` (on a service, or recorded by `up --egress`): in gateway
/// mode its own connections reach only these IPv4 networks through the
/// router (see `proto::parse_egress`).
pub const EGRESS: &str = "netcontainer.egress";
/// `ADDR,...` (on a service, or recorded by `up --dhcp-server`): the
/// router's agent listens only to these DHCP servers.
pub const DHCP_SERVER: &str = "netcontainer.dhcp-server";
/// `ADDR,...` (on a service, or recorded by `up --deny-dhcp-server`): the
/// router's agent ignores these DHCP servers.
pub const DENY_DHCP_SERVER: &str = "netcontainer.deny-dhcp-server";
/// `on` or `off` (also the booleans): multicast DNS and DNS-SD on the LAN
/// leg; on by default.
pub const MDNS: &str = "netcontainer.mdns";
/// `_TYPE._tcp:PORT,...`: DNS-SD services beside the well-known ports'.
pub const DNSSD: &str = "netcontainer.dnssd";
/// `key=value,...`: the TXT record of the service's DNS-SD services.
pub const DNSSD_TXT: &str = "netcontainer.dnssd-txt";
/// Set by Docker Swarm on a task's container.
pub const SWARM_SERVICE: &str = "com.docker.swarm.service.name";
/// `<service>.<slot>.<task id>` (the node ID instead of the slot for a
/// global service).
pub const SWARM_TASK: &str = "com.docker.swarm.task.name";
/// The Swarm service's ID (random, one per service of one swarm).
pub const SWARM_SERVICE_ID: &str = "com.docker.swarm.service.id";
/// Set by Docker Compose (v1 and v2) on a service's containers.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
/// The replica's number (`1` for a service that is not scaled).
pub const COMPOSE_NUMBER: &str = "com.docker.compose.container-number";
/// `True` on a one-off container (`docker-compose run`).
pub const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("label {label}: {message}")]
pub struct LabelError {
    pub label: String,
    pub message: String,
}

impl LabelError {
    /// The error as `label L on CONTAINER: ...`.
    pub fn on(&self, container: &str) -> String {
        format!("label {} on {container}: {}", self.label, self.message)
    }
}

fn err(label: &str, message: impl Into<String>) -> LabelError {
    LabelError {
        label: label.to_string(),
        message: message.into(),
    }
}

/// The boolean rule of every label.
pub fn parse_bool(label: &str, v: &str) -> Result<bool, LabelError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(err(
            label,
            format!("{v:?} is not a boolean (true/1/yes or false/0/no)"),
        )),
    }
}

/// Reads one label: absent or empty is `None`.
fn get<'a>(l: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
    l.get(k).map(String::as_str).filter(|v| !v.is_empty())
}

fn get_bool(l: &HashMap<String, String>, k: &str) -> Result<bool, LabelError> {
    get(l, k).map_or(Ok(false), |v| parse_bool(k, v))
}

fn get_mode(l: &HashMap<String, String>) -> Result<Option<Kind>, LabelError> {
    get(l, MODE)
        .map(|v| v.parse().map_err(|e| err(MODE, e)))
        .transpose()
}

fn get_source(l: &HashMap<String, String>) -> Result<Option<SourceMode>, LabelError> {
    get(l, SOURCE)
        .map(|v| v.parse().map_err(|e| err(SOURCE, e)))
        .transpose()
}

fn get_mac(l: &HashMap<String, String>) -> Result<Option<[u8; 6]>, LabelError> {
    get(l, MAC)
        .map(|v| parse_mac(v).map_err(|e| err(MAC, e)))
        .transpose()
}

/// `netcontainer.ip`: a unicast IPv4 address (what a DHCP server can lease).
pub fn parse_ip(label: &str, v: &str) -> Result<std::net::Ipv4Addr, LabelError> {
    let ip: std::net::Ipv4Addr = v
        .trim()
        .parse()
        .map_err(|_| err(label, format!("{v:?} is not an IPv4 address")))?;
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
        return Err(err(
            label,
            format!("{ip} cannot be leased (not a unicast LAN address)"),
        ));
    }
    Ok(ip)
}

fn get_ip(l: &HashMap<String, String>) -> Result<Option<std::net::Ipv4Addr>, LabelError> {
    get(l, IP).map(|v| parse_ip(IP, v)).transpose()
}

fn get_ipv6(
    l: &HashMap<String, String>,
) -> Result<Option<netcontainer_proto::Ipv6Mode>, LabelError> {
    get(l, IPV6)
        .map(|v| v.parse().map_err(|e: String| err(IPV6, e)))
        .transpose()
}

fn get_egress(l: &HashMap<String, String>) -> Result<Vec<netcontainer_proto::Ipv4Net>, LabelError> {
    get(l, EGRESS).map_or(Ok(Vec::new()), |v| {
        netcontainer_proto::parse_egress(v).map_err(|e| err(EGRESS, e))
    })
}

fn get_dhcp_servers(
    l: &HashMap<String, String>,
) -> Result<netcontainer_proto::DhcpServers, LabelError> {
    let list = |k: &str| {
        get(l, k).map_or(Ok(Vec::new()), |v| {
            netcontainer_proto::parse_dhcp_servers(v).map_err(|e| err(k, e))
        })
    };
    let s = netcontainer_proto::DhcpServers {
        allow: list(DHCP_SERVER)?,
        deny: list(DENY_DHCP_SERVER)?,
    };
    s.validate().map_err(|e| err(DENY_DHCP_SERVER, e))?;
    Ok(s)
}

/// What a service (or `up`) asks of mDNS: on or off (`None`: the
/// default), and DNS-SD beyond the well-known ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mdns {
    pub on: Option<bool>,
    pub dnssd: Vec<(String, u16)>,
    pub txt: Vec<String>,
}

/// `on`/`off` and the booleans.
pub fn parse_on_off(label: &str, v: &str) -> Result<bool, LabelError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => parse_bool(label, v).map_err(|_| err(label, format!("{v:?} is not on or off"))),
    }
}

fn get_mdns(l: &HashMap<String, String>) -> Result<Mdns, LabelError> {
    Ok(Mdns {
        on: get(l, MDNS).map(|v| parse_on_off(MDNS, v)).transpose()?,
        dnssd: get(l, DNSSD).map_or(Ok(Vec::new()), |v| {
            netcontainer_proto::parse_dnssd(v).map_err(|e| err(DNSSD, e))
        })?,
        txt: get(l, DNSSD_TXT).map_or(Ok(Vec::new()), |v| {
            netcontainer_proto::parse_txt(v).map_err(|e| err(DNSSD_TXT, e))
        })?,
    })
}

/// The text of a DNS-SD list as the label holds it.
pub fn dnssd_text(list: &[(String, u16)]) -> String {
    list.iter()
        .map(|(t, p)| format!("{t}:{p}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn get_ports(l: &HashMap<String, String>) -> Result<Option<Vec<PortSpec>>, LabelError> {
    get(l, PORTS)
        .map(|v| parse_port_list(v).map_err(|e| err(PORTS, e)))
        .transpose()
}

/// The labels an operator may put on a service container.
pub const SERVICE_KEYS: &[&str] = &[
    ENABLE,
    PARENT,
    MODE,
    MAC,
    HOSTNAME,
    PORTS,
    ARP_PROBE,
    IDENTITY,
    NETWORK,
    SOURCE,
    IP,
    IPV6,
    EGRESS,
    DHCP_SERVER,
    DENY_DHCP_SERVER,
    MDNS,
    DNSSD,
    DNSSD_TXT,
];

/// What a service's labels ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceLabels {
    /// `netcontainer.enable`: `watch` gives it a router.
    pub enable: bool,
    pub parent: Option<String>,
    pub mode: Option<Kind>,
    pub mac: Option<[u8; 6]>,
    pub hostname: Option<String>,
    /// `netcontainer.ports`; `None` when absent (exposed ports then).
    pub ports: Option<Vec<PortSpec>>,
    pub arp_probe: bool,
    /// `netcontainer.network`: the service's network to forward to.
    pub network: Option<String>,
    /// `netcontainer.source`: gateway or masquerade.
    pub source: Option<SourceMode>,
    /// `netcontainer.ip`: the address to ask the DHCP server for.
    pub ip: Option<std::net::Ipv4Addr>,
    /// `netcontainer.ipv6`: `off` or `auto`.
    pub ipv6: Option<netcontainer_proto::Ipv6Mode>,
    /// `netcontainer.egress`: gateway mode's allow-list; empty: none.
    pub egress: Vec<netcontainer_proto::Ipv4Net>,
    /// `netcontainer.dhcp-server` / `netcontainer.deny-dhcp-server`.
    pub dhcp_servers: netcontainer_proto::DhcpServers,
    /// `netcontainer.mdns`, `netcontainer.dnssd`, `netcontainer.dnssd-txt`.
    pub mdns: Mdns,
    /// `netcontainer.*` keys that mean nothing on a service, sorted.
    pub unknown: Vec<String>,
}

impl ServiceLabels {
    pub fn parse(l: &HashMap<String, String>) -> Result<ServiceLabels, LabelError> {
        let unknown: BTreeSet<String> = l
            .keys()
            .filter(|k| k.starts_with(PREFIX) && !SERVICE_KEYS.contains(&k.as_str()))
            .cloned()
            .collect();
        Ok(ServiceLabels {
            enable: get_bool(l, ENABLE)?,
            parent: get(l, PARENT).map(str::to_string),
            mode: get_mode(l)?,
            mac: get_mac(l)?,
            hostname: get(l, HOSTNAME).map(str::to_string),
            ports: get_ports(l)?,
            arp_probe: get_bool(l, ARP_PROBE)?,
            network: get(l, NETWORK).map(str::to_string),
            source: get_source(l)?,
            ip: get_ip(l)?,
            ipv6: get_ipv6(l)?,
            egress: get_egress(l)?,
            dhcp_servers: get_dhcp_servers(l)?,
            mdns: get_mdns(l)?,
            unknown: unknown.into_iter().collect(),
        })
    }
}

/// What `up` recorded on a router (see `RouterPlan::labels`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterLabels {
    pub service_id: Option<String>,
    pub parent: Option<String>,
    pub mode: Option<Kind>,
    pub mac: Option<[u8; 6]>,
    pub hostname: Option<String>,
    pub ports: Vec<PortSpec>,
    pub network: Option<String>,
    pub arp_probe: bool,
    /// The source mode `up` was asked for (absent: derived each time).
    pub source: Option<SourceMode>,
    /// `false` when made with `up --no-host-route`.
    pub host_route: bool,
    pub ip: Option<std::net::Ipv4Addr>,
    pub ipv6: Option<netcontainer_proto::Ipv6Mode>,
    /// The egress allow-list the router was made with; empty: none.
    pub egress: Vec<netcontainer_proto::Ipv4Net>,
    /// The DHCP servers the router was made to listen to (or to ignore).
    pub dhcp_servers: netcontainer_proto::DhcpServers,
    /// What `up --mdns/--dnssd/--dnssd-txt` chose.
    pub mdns: Mdns,
}

impl RouterLabels {
    /// A router's labels; `netcontainer.role` and `netcontainer.service` are
    /// checked where routers are recognised (`docker::convert::router_info`).
    pub fn parse(l: &HashMap<String, String>) -> Result<RouterLabels, LabelError> {
        Ok(RouterLabels {
            service_id: get(l, SERVICE_ID).map(str::to_string),
            parent: get(l, PARENT).map(str::to_string),
            mode: get_mode(l)?,
            mac: get_mac(l)?,
            hostname: get(l, HOSTNAME).map(str::to_string),
            ports: get_ports(l)?.unwrap_or_default(),
            network: get(l, NETWORK).map(str::to_string),
            arp_probe: get_bool(l, ARP_PROBE)?,
            source: get_source(l)?,
            host_route: get(l, HOST_ROUTE).map_or(Ok(true), |v| parse_bool(HOST_ROUTE, v))?,
            ip: get_ip(l)?,
            ipv6: get_ipv6(l)?,
            egress: get_egress(l)?,
            dhcp_servers: get_dhcp_servers(l)?,
            mdns: get_mdns(l)?,
        })
    }
}

/// Warns about a service's unknown `netcontainer.*` keys, once per service
/// and key for the life of the process (`watch` looks at a service often).
pub fn warn_unknown_once(service: &ServiceName, unknown: &[String]) {
    static WARNED: OnceLock<Mutex<HashSet<(String, String)>>> = OnceLock::new();
    if unknown.is_empty() {
        return;
    }
    let mut warned = WARNED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    for k in unknown {
        if warned.insert((service.to_string(), k.clone())) {
            tracing::warn!(%service, label = %k, "unknown netcontainer label ignored (known: {})", SERVICE_KEYS.join(", "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn booleans_have_one_rule() {
        for v in ["true", "TRUE", "True", "1", "yes", "Yes", " yes "] {
            assert_eq!(parse_bool("x", v), Ok(true), "{v}");
        }
        for v in ["false", "FALSE", "0", "no", "No"] {
            assert_eq!(parse_bool("x", v), Ok(false), "{v}");
        }
        for v in ["on", "y", "2", "truthy", "-"] {
            let e = parse_bool("netcontainer.enable", v).unwrap_err();
            assert_eq!(e.label, "netcontainer.enable");
            assert!(e.to_string().contains("netcontainer.enable"), "{e}");
        }
    }

    #[test]
    fn enable_and_arp_probe_use_the_boolean_rule() {
        let l = ServiceLabels::parse(&map(&[
            ("netcontainer.enable", "yes"),
            ("netcontainer.arp-probe", "1"),
        ]))
        .unwrap();
        assert!(l.enable && l.arp_probe);
        // arp-probe took only "true" before: now the same rule as enable.
        let l = ServiceLabels::parse(&map(&[("netcontainer.arp-probe", "YES")])).unwrap();
        assert!(l.arp_probe && !l.enable);
        let e = ServiceLabels::parse(&map(&[("netcontainer.arp-probe", "maybe")])).unwrap_err();
        assert_eq!(e.label, "netcontainer.arp-probe");
        let e = ServiceLabels::parse(&map(&[("netcontainer.enable", "sure")])).unwrap_err();
        assert_eq!(e.label, "netcontainer.enable");
    }

    #[test]
    fn absent_and_empty_are_the_same() {
        let none = ServiceLabels::parse(&HashMap::new()).unwrap();
        assert_eq!(none, ServiceLabels::default());
        let empty = ServiceLabels::parse(&map(&[
            ("netcontainer.enable", ""),
            ("netcontainer.parent", ""),
            ("netcontainer.mode", ""),
            ("netcontainer.mac", ""),
            ("netcontainer.hostname", ""),
            ("netcontainer.ports", ""),
            ("netcontainer.arp-probe", ""),
        ]))
        .unwrap();
        assert_eq!(empty, ServiceLabels::default());
    }

    #[test]
    fn every_service_label_is_typed() {
        let l = ServiceLabels::parse(&map(&[
            ("netcontainer.enable", "true"),
            ("netcontainer.parent", "eth0"),
            ("netcontainer.mode", "ipvlan"),
            ("netcontainer.mac", "02:00:00:00:00:01"),
            ("netcontainer.hostname", "web"),
            ("netcontainer.ports", "80/tcp, 53/udp"),
            ("netcontainer.ip", " 203.0.113.77 "),
            ("com.example.other", "x"),
        ]))
        .unwrap();
        assert!(l.enable);
        assert_eq!(l.ip, Some("203.0.113.77".parse().unwrap()));
        assert_eq!(l.parent.as_deref(), Some("eth0"));
        assert_eq!(l.mode, Some(crate::leg::IPVLAN));
        assert_eq!(l.mac, Some([2, 0, 0, 0, 0, 1]));
        assert_eq!(l.hostname.as_deref(), Some("web"));
        assert_eq!(
            l.ports
                .unwrap()
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
            ["80/tcp", "53/udp"]
        );
        assert!(l.unknown.is_empty(), "other prefixes are not ours");
    }

    #[test]
    fn errors_name_the_label() {
        for (k, v, needle) in [
            ("netcontainer.mode", "bridge", "unknown mode"),
            (
                "netcontainer.mac",
                "00:11:22:33:44:55",
                "locally administered",
            ),
            ("netcontainer.mac", "zz", "invalid MAC"),
            ("netcontainer.ports", "80/sctp", "sctp"),
            ("netcontainer.ports", "0/tcp", "invalid port"),
            ("netcontainer.ip", "203.0.113", "not an IPv4 address"),
            ("netcontainer.ip", "web1", "not an IPv4 address"),
            ("netcontainer.ip", "255.255.255.255", "cannot be leased"),
            ("netcontainer.ip", "0.0.0.0", "cannot be leased"),
            ("netcontainer.ip", "224.0.0.1", "cannot be leased"),
        ] {
            let e = ServiceLabels::parse(&map(&[(k, v)])).unwrap_err();
            assert_eq!(e.label, k, "{e}");
            let text = e.to_string();
            assert!(text.starts_with(&format!("label {k}: ")), "{text}");
            assert!(text.contains(needle), "{text}");
        }
    }

    #[test]
    fn unknown_keys_are_reported() {
        let l = ServiceLabels::parse(&map(&[
            ("netcontainer.enable", "1"),
            ("netcontainer.enabled", "1"),
            ("netcontainer.prot", "80"),
        ]))
        .unwrap();
        assert_eq!(l.unknown, ["netcontainer.enabled", "netcontainer.prot"]);
    }

    #[test]
    fn router_labels_read_back_what_up_wrote() {
        let l = RouterLabels::parse(&map(&[
            ("netcontainer.role", "router"),
            ("netcontainer.service", "web1"),
            ("netcontainer.service-id", "abc"),
            ("netcontainer.parent", "eth0"),
            ("netcontainer.mode", "macvlan"),
            ("netcontainer.mac", "02:aa:bb:cc:dd:ee"),
            ("netcontainer.network", "net"),
            ("netcontainer.hostname", "web1"),
            ("netcontainer.ports", "80/tcp 7000-7009/udp"),
            ("netcontainer.arp-probe", "true"),
            ("netcontainer.ip", "203.0.113.77"),
            ("netcontainer.state-dir", "/run/netcontainer/web1"),
        ]))
        .unwrap();
        assert_eq!(l.ip, Some("203.0.113.77".parse().unwrap()));
        assert_eq!(l.service_id.as_deref(), Some("abc"));
        assert_eq!(l.parent.as_deref(), Some("eth0"));
        assert_eq!(l.mode, Some(crate::leg::MACVLAN));
        assert_eq!(l.mac, Some([2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]));
        assert_eq!(l.network.as_deref(), Some("net"));
        assert_eq!(l.ports.len(), 2);
        assert!(l.arp_probe);
        let e = RouterLabels::parse(&map(&[("netcontainer.mode", "x")])).unwrap_err();
        assert_eq!(e.label, "netcontainer.mode");
    }
}
