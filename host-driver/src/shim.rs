//! The host's way to its own network containers. A macvlan leg cannot talk to
//! its parent (the kernel hands frames between a macvlan and its lower device
//! to neither), so the host, and every container whose traffic the host
//! routes, would never reach a leased address. The shim is one more macvlan
//! (mode bridge) on the same parent, in the host's namespace, named
//! `nch<parent ifindex>`, with one /32 route per leased address on that
//! parent: macvlan legs of one parent in bridge mode reach each other.
//!
//! Its address is from the link-local range (169.254.0.0/16, RFC 3927), derived from the
//! host's machine id and the parent's name: it takes nothing from the LAN's
//! DHCP pool, is never routed off the link, and differs between hosts on one
//! LAN (two shims with one address would answer each other's ARP). Routers
//! route 169.254.0.0/16 on `lan0` in their table, so replies to the shim stay
//! on the link. Traffic from containers reaches it masqueraded by Docker's
//! own rule (out of a non-Docker interface) to the shim's address.
//!
//! The shim is of its parent's routers' leg kind (`leg`), made by the same
//! [`crate::leg::LegKind::link`]: a parent whose routers use ipvlan gets an
//! ipvlan shim (mode l2), since a device is either a macvlan or an ipvlan
//! lower device, never both, and ipvlan legs of one parent reach each other
//! in l2 mode as macvlan legs do in bridge mode ([`shim_kind`]).
//!
//! [`sync`] keeps shims and routes in step with the leases: a shim exists
//! for a parent while at least one router on it holds a lease (and did not
//! opt out), with exactly the /32 routes of those leases.
//!
//! A lease is what a DHCP server on the LAN said, and a /32 beats every
//! other route of the host: a rogue server naming the host's gateway, its
//! resolver's address or a Docker container's would steer that traffic for
//! the whole host into the LAN. So a lease gets a route only if [`check`]
//! finds it inside the parent's LAN subnet and not something the host uses
//! or routes elsewhere; a refused lease is logged, written down for `status`
//! and the metrics ([`refusal`]), and the service keeps serving the LAN.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkInfo};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteScope, RouteType};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::docker::DockerClient;
use crate::leg::{Kind, LinkSpec};
use crate::state::ServiceName;

/// Name prefix of shims.
pub const PREFIX: &str = "nch";

#[derive(Debug, thiserror::Error)]
#[error("host route: {what}: {source}")]
pub struct ShimError {
    what: String,
    #[source]
    source: rtnetlink::Error,
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> ShimError {
    let what = what.into();
    move |source| ShimError { what, source }
}

/// The shim's name for a parent.
pub fn shim_name(parent_index: u32) -> String {
    format!("{PREFIX}{parent_index}")
}

/// Whether a link name is a shim's (`nch` and digits).
pub fn is_shim_name(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.parse().ok()
}

/// The shim's link-local address: 169.254.1.1 to 169.254.254.254 (RFC 3927
/// section 2.1 keeps the first and last 256 addresses out), from `seed`.
pub fn shim_address(seed: &str) -> Ipv4Addr {
    let h = crate::plan::fnv1a(seed.as_bytes());
    let n = (h % (254 * 254)) as u32;
    Ipv4Addr::new(169, 254, (n / 254 + 1) as u8, (n % 254 + 1) as u8)
}

/// The seed of this host's shim on `parent`.
fn seed(parent: &str) -> String {
    let id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    format!("{}/{parent}", id.trim())
}

/// The shim's link kind for a parent whose routers use `kinds`: theirs, and
/// when they disagree the one of highest [`crate::leg::LegKind::shim_precedence`]
/// (ipvlan as soon as one router uses it: the parent is then an ipvlan
/// master, and a macvlan on it would be refused, as would the router's leg
/// after a macvlan shim).
pub fn shim_kind(kinds: &BTreeSet<Kind>) -> Kind {
    kinds
        .iter()
        .copied()
        .max_by_key(|k| k.shim_precedence())
        .unwrap_or_default()
}

/// An IPv4 network: an address and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Net {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl Net {
    fn mask(self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len.min(32)))
            .unwrap_or(0)
    }

    pub fn contains(self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask() == u32::from(self.addr) & self.mask()
    }

    fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix_len)
    }
}

/// A route of the host's main table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRoute {
    pub dest: Net,
    /// The output link's name ("" when it has none, e.g. a multipath route).
    pub dev: String,
    pub gateway: Option<Ipv4Addr>,
}

/// What the host uses and routes, read once per [`sync`].
#[derive(Clone, Debug, Default)]
pub struct HostView {
    /// Every IPv4 address of the host, on any link.
    pub own: BTreeSet<Ipv4Addr>,
    /// The networks of the parent's own addresses: the LAN's subnet as the
    /// host knows it.
    pub parent_nets: Vec<Net>,
    /// Unicast routes of the main table on links other than the parent
    /// and the shims (a blackhole or unreachable route steers nothing).
    pub routes: Vec<HostRoute>,
    /// Docker's bridge networks (name, subnet).
    pub docker: Vec<(String, Net)>,
    /// The host's DNS resolvers (`/etc/resolv.conf`).
    pub resolvers: BTreeSet<Ipv4Addr>,
}

/// The IPv4 `nameserver`s of a resolv.conf text.
pub fn resolvers(text: &str) -> BTreeSet<Ipv4Addr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()?.parse().ok())?
        })
        .collect()
}

/// The narrowest and widest LAN a lease may describe when the parent has
/// no address of its own to say which subnet the LAN is.
const LEASE_PREFIX: std::ops::RangeInclusive<u8> = 16..=30;

/// Why a lease gets no host route.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0} is not a unicast address a LAN host can hold")]
    NotUnicast(Ipv4Addr),
    #[error("{0} is outside the parent's LAN subnet {1}")]
    OutsideLan(Ipv4Addr, String),
    #[error("{0} is the network or broadcast address of {1}")]
    SubnetEdge(Ipv4Addr, Net),
    #[error(
        "{0}/{1} is no LAN subnet (the parent has no address; a lease's mask must be /16 to /30)"
    )]
    ImplausibleMask(Ipv4Addr, u8),
    #[error("{0} is one of the host's own addresses")]
    HostAddress(Ipv4Addr),
    #[error("{0} is a DNS resolver of the host")]
    Resolver(Ipv4Addr),
    #[error("{0} is a gateway of the host's routes")]
    Gateway(Ipv4Addr),
    #[error("{0} is in Docker network {1}'s subnet {2}")]
    Docker(Ipv4Addr, String, Net),
    #[error("{0} is already routed by the host ({1} dev {2})")]
    Routed(Ipv4Addr, Net, String),
}

/// Whether a lease (`address/prefix_len` as the DHCP server gave it) may
/// have a /32 through the shim: it must be inside the parent's LAN subnet
/// (the parent's own networks; when the parent has none, the lease's own,
/// of a plausible size) and be nothing the host uses or already routes
/// elsewhere: not its own address, not a gateway of its routes, not in a
/// Docker network, not inside a route of another link (a more specific
/// route than the default one: Docker's bridges, a VPN, a static route).
pub fn check(address: Ipv4Addr, prefix_len: u8, host: &HostView) -> Result<(), Refused> {
    if address.is_multicast()
        || address.is_broadcast()
        || address.is_loopback()
        || address.is_unspecified()
        || address.is_link_local()
        || u32::from(address) >> 28 == 0xf
        || u32::from(address) >> 24 == 0
    {
        return Err(Refused::NotUnicast(address));
    }
    let lan = if host.parent_nets.is_empty() {
        if !LEASE_PREFIX.contains(&prefix_len) {
            return Err(Refused::ImplausibleMask(address, prefix_len));
        }
        Net {
            addr: address,
            prefix_len,
        }
    } else {
        *host
            .parent_nets
            .iter()
            .filter(|n| n.contains(address))
            .max_by_key(|n| n.prefix_len)
            .ok_or_else(|| {
                let nets: Vec<String> = host.parent_nets.iter().map(|n| n.to_string()).collect();
                Refused::OutsideLan(address, nets.join(", "))
            })?
    };
    if lan.prefix_len <= 30 && (address == lan.network() || address == lan.broadcast()) {
        return Err(Refused::SubnetEdge(address, lan));
    }
    if host.own.contains(&address) {
        return Err(Refused::HostAddress(address));
    }
    if host.resolvers.contains(&address) {
        return Err(Refused::Resolver(address));
    }
    if host.routes.iter().any(|r| r.gateway == Some(address)) {
        return Err(Refused::Gateway(address));
    }
    if let Some((name, net)) = host.docker.iter().find(|(_, n)| n.contains(address)) {
        return Err(Refused::Docker(address, name.clone(), *net));
    }
    if let Some(r) = host
        .routes
        .iter()
        .filter(|r| r.dest.prefix_len > 0 && r.dest.contains(address))
        .max_by_key(|r| r.dest.prefix_len)
    {
        return Err(Refused::Routed(address, r.dest, r.dev.clone()));
    }
    Ok(())
}

/// Where refusals are written down: one file per service, its one line,
/// beside the locks (not in the service's directory, which its router
/// mounts and could write).
fn refusals_dir() -> PathBuf {
    crate::state::run_dir().join(".host-routes")
}

/// Why `service`'s lease has no host route, when it was refused by the
/// last [`sync`].
pub fn refusal(service: &ServiceName) -> Option<String> {
    let text = std::fs::read_to_string(refusals_dir().join(service.as_str())).ok()?;
    let line = text.lines().next()?.trim();
    (!line.is_empty()).then(|| crate::output::safe(line).to_string())
}

/// Writes the refusals of one [`sync`] down, and removes the others'.
fn record_refusals(refused: &BTreeMap<String, String>) {
    let dir = refusals_dir();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !refused.contains_key(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if refused.is_empty() {
        let _ = std::fs::remove_dir(&dir);
        return;
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot record refused host routes");
        return;
    }
    for (service, why) in refused {
        let path = dir.join(service);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(why.as_str()) {
            continue;
        }
        if let Err(e) = std::fs::write(&path, why) {
            tracing::warn!(path = %path.display(), error = %e, "cannot record a refused host route");
        }
    }
}

/// Reads the host's addresses, routes and resolvers, as
/// [`check`] sees them for `parent_index` (with Docker's bridge networks,
/// `docker`).
async fn host_view(
    handle: &Handle,
    parent_index: u32,
    docker: &[(String, Net)],
) -> Result<HostView, ShimError> {
    let links: Vec<_> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing links"))?;
    let names: BTreeMap<u32, String> = links
        .iter()
        .filter_map(|m| {
            m.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some((m.header.index, n.clone())),
                _ => None,
            })
        })
        .collect();
    let addrs: Vec<_> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing addresses"))?;
    let mut view = HostView::default();
    for a in &addrs {
        let local = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Local(IpAddr::V4(v)) => Some(*v),
            _ => None,
        });
        let address = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Address(IpAddr::V4(v)) => Some(*v),
            _ => None,
        });
        let Some(v4) = local.or(address) else {
            continue;
        };
        view.own.insert(v4);
        if a.header.index == parent_index && !v4.is_link_local() {
            view.parent_nets.push(Net {
                addr: v4,
                prefix_len: a.header.prefix_len,
            });
        }
    }
    let routes: Vec<_> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing routes"))?;
    for r in &routes {
        if r.header.table != 254 || r.header.kind != RouteType::Unicast {
            continue;
        }
        let dest = r
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
                _ => None,
            })
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let oif = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        let dev = oif.and_then(|i| names.get(&i).cloned()).unwrap_or_default();
        let gateway = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(*g),
            _ => None,
        });
        let route = HostRoute {
            dest: Net {
                addr: dest,
                prefix_len: r.header.destination_prefix_length,
            },
            dev,
            gateway,
        };
        // The parent's own routes are the LAN's; the shims' are ours. Their
        // gateways still count (a default route via the LAN's router).
        if oif == Some(parent_index) || is_shim_name(&route.dev).is_some() {
            if let Some(g) = gateway {
                view.routes.push(HostRoute {
                    dest: Net {
                        addr: Ipv4Addr::UNSPECIFIED,
                        prefix_len: 0,
                    },
                    dev: route.dev,
                    gateway: Some(g),
                });
            }
            continue;
        }
        view.routes.push(route);
    }
    view.resolvers = resolvers(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    view.docker = docker.to_vec();
    Ok(view)
}

/// Where [`sync`] takes the routers' leases from.
pub enum Leases<'a> {
    /// Ask each router's agent (one `Status` each).
    Ask,
    /// Already known, by service (watch's subscriptions): no agent is asked.
    Known(&'a BTreeMap<String, netcontainer_proto::LeaseStatus>),
}

/// Brings shims and their routes in line with the leases of the routers
/// (see the module doc). Errors on one parent do not stop the others; the
/// first is returned.
pub async fn sync(
    docker: &DockerClient,
    handle: &Handle,
    known: Leases<'_>,
) -> Result<(), ShimError> {
    let routers = match docker.routers().await {
        Ok(r) => r,
        // No listing, no changes: a Docker hiccup must not tear routes down.
        Err(e) => {
            tracing::debug!(error = %e, "host routes: cannot list routers");
            return Ok(());
        }
    };
    let mut leases = Held::new();
    let mut kinds: BTreeMap<String, BTreeSet<Kind>> = BTreeMap::new();
    for r in routers.iter().filter(|r| r.running) {
        let Ok(l) = crate::labels::RouterLabels::parse(&r.labels) else {
            continue;
        };
        let Some(parent) = l.parent.filter(|p| !p.is_empty()) else {
            continue;
        };
        kinds
            .entry(parent.clone())
            .or_default()
            .insert(l.mode.unwrap_or_default());
        if !l.host_route {
            continue;
        }
        let lease = match &known {
            Leases::Ask => crate::agent_client::agent_status(&r.service)
                .await
                .and_then(|s| s.lease),
            Leases::Known(k) => k.get(r.service.as_str()).cloned(),
        };
        if let Some(l) = lease {
            leases
                .entry(parent.clone())
                .or_default()
                .push((r.service.to_string(), l));
        }
    }
    let docker_nets: Vec<(String, Net)> = match docker.bridge_networks().await {
        Ok(nets) => nets
            .into_iter()
            .map(|n| {
                let net = Net {
                    addr: n.gateway,
                    prefix_len: n.prefix_len,
                };
                (n.name, net)
            })
            .collect(),
        // Their bridges' routes are in the host's routes too.
        Err(e) => {
            tracing::debug!(error = %e, "host routes: cannot list Docker's networks");
            Vec::new()
        }
    };
    let (result, refused) = sync_leases(handle, &leases, &kinds, &docker_nets).await;
    record_refusals(&refused);
    result
}

/// The leases held on each parent: (service, lease).
pub type Held = BTreeMap<String, Vec<(String, netcontainer_proto::LeaseStatus)>>;

/// [`sync`] past the listing: routes for the leases [`check`] admits,
/// shims for the parents that have one, and the others' shims removed.
/// Returns the first error and the refusals by service.
pub async fn sync_leases(
    handle: &Handle,
    leases: &Held,
    kinds: &BTreeMap<String, BTreeSet<Kind>>,
    docker_nets: &[(String, Net)],
) -> (Result<(), ShimError>, BTreeMap<String, String>) {
    let mut first_err = None;
    let mut keep = BTreeSet::new();
    let mut refused = BTreeMap::new();
    for (parent, held) in leases {
        match parent_index(handle, parent).await {
            Ok(Some(index)) => {
                let view = match host_view(handle, index, docker_nets).await {
                    Ok(v) => v,
                    Err(e) => {
                        // Nothing to judge leases by: change nothing on this parent.
                        keep.insert(index);
                        first_err.get_or_insert(e);
                        continue;
                    }
                };
                let mut addrs = BTreeSet::new();
                for (service, l) in held {
                    match check(l.address, l.prefix_len, &view) {
                        Ok(()) => {
                            addrs.insert(l.address);
                        }
                        Err(why) => {
                            tracing::warn!(service = %service, parent = %crate::output::safe(parent),
                                lease = %l.address, reason = %why,
                                "host route refused: the lease names an address the host uses or routes elsewhere; the service still serves the LAN");
                            refused.insert(service.clone(), format!("no host route: {why}"));
                        }
                    }
                }
                if addrs.is_empty() {
                    // Only refused leases: no shim (removed below if there was one).
                    continue;
                }
                keep.insert(index);
                let kind = shim_kind(&kinds.get(parent).cloned().unwrap_or_default());
                if let Err(e) = sync_parent(handle, parent, index, kind, &addrs).await {
                    tracing::warn!(parent = %crate::output::safe(parent), error = %e, "host routes not in step");
                    first_err.get_or_insert(e);
                }
            }
            Ok(None) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Err(e) = remove_unused(handle, &keep).await {
        first_err.get_or_insert(e);
    }
    (first_err.map_or(Ok(()), Err), refused)
}

async fn parent_index(handle: &Handle, name: &str) -> Result<Option<u32>, ShimError> {
    match handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
    {
        Ok(m) => Ok(m.map(|m| m.header.index)),
        Err(rtnetlink::Error::NetlinkError(e))
            if e.code.is_some_and(|c| -c.get() == libc::ENODEV) =>
        {
            Ok(None)
        }
        Err(e) => Err(nl(format!("looking up {name}"))(e)),
    }
}

/// Shim links in the host namespace: (name, index, parent index, kind).
async fn shims(handle: &Handle) -> Result<Vec<(String, u32, u32, Kind)>, ShimError> {
    let links: Vec<_> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing links"))?;
    Ok(links
        .into_iter()
        .filter_map(|m| {
            let name = m.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            })?;
            let parent = is_shim_name(&name)?;
            let kind = m.attributes.iter().find_map(|a| match a {
                LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                    LinkInfo::Kind(k) => Kind::of_link(k),
                    _ => None,
                }),
                _ => None,
            })?;
            Some((name, m.header.index, parent, kind))
        })
        .collect())
}

async fn sync_parent(
    handle: &Handle,
    parent: &str,
    parent_index: u32,
    kind: Kind,
    want: &BTreeSet<Ipv4Addr>,
) -> Result<(), ShimError> {
    let name = shim_name(parent_index);
    let addr = shim_address(&seed(parent));
    let existing = shims(handle).await?.into_iter().find(|s| s.0 == name);
    let existing = match existing {
        // The parent's routers changed kind: the old shim stands in the way.
        Some((_, index, _, k)) if k != kind => {
            handle
                .link()
                .del(index)
                .execute()
                .await
                .map_err(nl(format!("removing {name} (a {k} shim)")))?;
            None
        }
        other => other,
    };
    let index = match existing {
        Some((_, index, _, _)) => index,
        None => {
            // Down until IPv6 is off on it (below); a MAC the kernel picks.
            let msg = kind.link(&LinkSpec {
                name: &name,
                parent_index,
                mac: None,
                netns: None,
            });
            handle
                .link()
                .add(msg)
                .execute()
                .await
                .map_err(nl(format!("creating {name} on {parent}")))?;
            let index = handle
                .link()
                .get()
                .match_name(name.clone())
                .execute()
                .try_next()
                .await
                .map_err(nl(format!("looking up {name}")))?
                .map(|m| m.header.index)
                .ok_or_else(|| nl(format!("looking up {name}"))(rtnetlink::Error::RequestFailed))?;
            tracing::info!(shim = %name, parent = %crate::output::safe(parent), address = %addr,
                "host route shim created");
            index
        }
    };
    no_ipv6(&name);
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl(format!("bringing {name} up")))?;
    // Global scope although the address is link-local: Docker's MASQUERADE
    // (for containers reaching a lease) picks a source of universe scope on
    // the way out, and would otherwise take another interface's address, to
    // which the router cannot answer on the link. The host's own routes
    // pick it only through the shim's /32 routes, which name it.
    handle
        .address()
        .add(index, std::net::IpAddr::V4(addr), 32)
        .replace()
        .execute()
        .await
        .map_err(nl(format!("adding {addr}/32 to {name}")))?;
    let have = routes_on(handle, index).await?;
    for lease in want.difference(&have) {
        let r = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(*lease, 32)
            .output_interface(index)
            .pref_source(addr)
            .scope(RouteScope::Link)
            .build();
        handle
            .route()
            .add(r)
            .replace()
            .execute()
            .await
            .map_err(nl(format!("adding a route to {lease} via {name}")))?;
        tracing::info!(shim = %name, lease = %lease, "host route added");
    }
    for gone in have.difference(want) {
        del_route(handle, index, *gone).await?;
        tracing::info!(shim = %name, lease = %gone, "host route removed");
    }
    Ok(())
}

/// The /32 routes (main table) on link `index`.
/// Turns IPv6 off on the shim: it is an IPv4 route to the leases, and with
/// IPv6 on it the host would follow the LAN's router advertisements through
/// it (another address and default route on the host). Best effort: a
/// kernel without IPv6 has nothing to turn off.
fn no_ipv6(name: &str) {
    let path = format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6");
    if std::path::Path::new(&path).exists()
        && let Err(e) = std::fs::write(&path, "1")
    {
        tracing::warn!(%path, error = %e, "cannot turn IPv6 off on the host route shim");
    }
}

async fn routes_on(handle: &Handle, index: u32) -> Result<BTreeSet<Ipv4Addr>, ShimError> {
    let routes: Vec<_> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing routes"))?;
    Ok(routes
        .iter()
        .filter(|r| r.header.destination_prefix_length == 32 && r.header.table == 254)
        .filter(|r| {
            r.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == index))
        })
        .filter_map(|r| {
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
                _ => None,
            })
        })
        .collect())
}

async fn del_route(handle: &Handle, index: u32, dest: Ipv4Addr) -> Result<(), ShimError> {
    let r = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dest, 32)
        .output_interface(index)
        .scope(RouteScope::Link)
        .build();
    match handle.route().del(r).execute().await {
        Ok(()) => Ok(()),
        Err(rtnetlink::Error::NetlinkError(e))
            if e.code.is_some_and(|c| -c.get() == libc::ESRCH) =>
        {
            Ok(())
        }
        Err(e) => Err(nl(format!("removing the route to {dest}"))(e)),
    }
}

/// Deletes the shims of parents not in `keep` (their routes go with them).
async fn remove_unused(handle: &Handle, keep: &BTreeSet<u32>) -> Result<(), ShimError> {
    for (name, index, parent, _) in shims(handle).await? {
        if keep.contains(&parent) {
            continue;
        }
        match handle.link().del(index).execute().await {
            Ok(()) => {
                tracing::info!(shim = %name, "host route shim removed (no lease on its parent)")
            }
            Err(rtnetlink::Error::NetlinkError(e))
                if e.code.is_some_and(|c| -c.get() == libc::ENODEV) => {}
            Err(e) => return Err(nl(format!("removing {name}"))(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_addresses_are_link_local_stable_and_spread() {
        let a = shim_address("machine-a/eth0");
        assert_eq!(a, shim_address("machine-a/eth0"));
        assert!(a.is_link_local());
        let o = a.octets();
        assert!(
            (1..=254).contains(&o[2]) && (1..=254).contains(&o[3]),
            "{a}"
        );
        let distinct: BTreeSet<Ipv4Addr> = (0..200)
            .map(|i| shim_address(&format!("machine-{i}/eth0")))
            .collect();
        assert!(distinct.len() > 190, "{}", distinct.len());
    }

    #[test]
    fn an_ipvlan_parent_gets_an_ipvlan_shim() {
        use crate::leg::{IPVLAN, MACVLAN};
        let m = |v: &[Kind]| v.iter().copied().collect::<BTreeSet<_>>();
        assert_eq!(shim_kind(&m(&[])), MACVLAN);
        assert_eq!(shim_kind(&m(&[MACVLAN])), MACVLAN);
        assert_eq!(shim_kind(&m(&[IPVLAN])), IPVLAN);
        assert_eq!(shim_kind(&m(&[MACVLAN, IPVLAN])), IPVLAN);
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> Net {
        let (a, p) = s.split_once('/').unwrap();
        Net {
            addr: ip(a),
            prefix_len: p.parse().unwrap(),
        }
    }

    /// A host on 192.0.2.0/24 (the parent, gateway .1), Docker's bridges,
    /// a VPN route inside the LAN's range, a resolver on the LAN.
    fn host() -> HostView {
        HostView {
            own: [ip("192.0.2.10"), ip("198.51.100.1"), ip("127.0.0.1")].into(),
            parent_nets: vec![net("192.0.2.10/24")],
            routes: vec![
                HostRoute {
                    dest: net("0.0.0.0/0"),
                    dev: "eth0".into(),
                    gateway: Some(ip("192.0.2.1")),
                },
                HostRoute {
                    dest: net("198.51.100.0/24"),
                    dev: "docker0".into(),
                    gateway: None,
                },
                HostRoute {
                    dest: net("192.0.2.128/28"),
                    dev: "wg0".into(),
                    gateway: None,
                },
            ],
            docker: vec![("bridge".into(), net("198.51.100.1/24"))],
            resolvers: [ip("192.0.2.53")].into(),
        }
    }

    #[test]
    fn a_lease_on_the_lan_that_the_host_does_not_use_gets_a_route() {
        let h = host();
        assert_eq!(check(ip("192.0.2.57"), 24, &h), Ok(()));
        // The mask the server sent does not matter when the parent says.
        assert_eq!(check(ip("192.0.2.57"), 8, &h), Ok(()));
    }

    #[test]
    fn a_lease_naming_what_the_host_uses_gets_no_route() {
        let h = host();
        for (lease, want) in [
            ("192.0.2.1", Refused::Gateway(ip("192.0.2.1"))),
            ("192.0.2.10", Refused::HostAddress(ip("192.0.2.10"))),
            ("192.0.2.53", Refused::Resolver(ip("192.0.2.53"))),
            (
                "192.0.2.130",
                Refused::Routed(ip("192.0.2.130"), net("192.0.2.128/28"), "wg0".into()),
            ),
            (
                "192.0.2.0",
                Refused::SubnetEdge(ip("192.0.2.0"), net("192.0.2.10/24")),
            ),
            (
                "192.0.2.255",
                Refused::SubnetEdge(ip("192.0.2.255"), net("192.0.2.10/24")),
            ),
            (
                "203.0.113.5",
                Refused::OutsideLan(ip("203.0.113.5"), "192.0.2.0/24".into()),
            ),
            (
                "198.51.100.7",
                Refused::OutsideLan(ip("198.51.100.7"), "192.0.2.0/24".into()),
            ),
            ("224.0.0.1", Refused::NotUnicast(ip("224.0.0.1"))),
            (
                "255.255.255.255",
                Refused::NotUnicast(ip("255.255.255.255")),
            ),
            ("127.0.0.1", Refused::NotUnicast(ip("127.0.0.1"))),
            ("169.254.3.4", Refused::NotUnicast(ip("169.254.3.4"))),
            ("0.0.0.0", Refused::NotUnicast(ip("0.0.0.0"))),
            ("240.0.0.1", Refused::NotUnicast(ip("240.0.0.1"))),
        ] {
            let got = check(ip(lease), 24, &h);
            assert_eq!(got, Err(want), "{lease}");
            assert!(!got.unwrap_err().to_string().contains('\n'));
        }
    }

    /// A parent without an address: the lease's own subnet, of a plausible
    /// size, and still nothing the host uses or routes on another link.
    #[test]
    fn without_a_parent_address_the_leases_own_subnet_bounds_it() {
        let mut h = host();
        h.parent_nets.clear();
        assert_eq!(check(ip("203.0.113.57"), 24, &h), Ok(()));
        assert_eq!(
            check(ip("8.8.8.8"), 1, &h),
            Err(Refused::ImplausibleMask(ip("8.8.8.8"), 1))
        );
        assert_eq!(
            check(ip("198.51.100.7"), 24, &h),
            Err(Refused::Docker(
                ip("198.51.100.7"),
                "bridge".into(),
                net("198.51.100.1/24")
            ))
        );
        h.docker.clear();
        assert_eq!(
            check(ip("198.51.100.7"), 24, &h),
            Err(Refused::Routed(
                ip("198.51.100.7"),
                net("198.51.100.0/24"),
                "docker0".into()
            ))
        );
        assert_eq!(
            check(ip("192.0.2.1"), 24, &h),
            Err(Refused::Gateway(ip("192.0.2.1")))
        );
    }

    fn need_root() -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        if std::env::var_os("CI").is_some() {
            panic!("root tests must run as root in CI");
        }
        eprintln!("skipping: needs root");
        false
    }

    fn lease(addr: &str, prefix_len: u8) -> netcontainer_proto::LeaseStatus {
        netcontainer_proto::LeaseStatus {
            address: ip(addr),
            prefix_len,
            gateway: None,
            server_id: ip("192.0.2.1"),
            lease_secs: Some(600),
            renew_in_secs: None,
            rebind_in_secs: None,
            expires_in_secs: None,
            dns: vec![],
        }
    }

    fn ip_cmd(args: &[&str]) {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Real netlink, in a scratch network namespace of a thread (gone with
    /// it): a parent on 192.0.2.0/24 whose default gateway is 192.0.2.1,
    /// and a bridge standing for Docker's on 198.51.100.0/24. A rogue
    /// server's leases naming the gateway, the host's own address, an
    /// address outside the subnet or inside the bridge's get no route; a
    /// plain LAN address does, through the shim. Without an address on the
    /// parent, the lease's own subnet is used, still never the bridge's.
    #[test]
    fn root_a_rogue_lease_gets_no_host_route() {
        if !need_root() {
            return;
        }
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (conn, handle, _) = rtnetlink::new_connection().unwrap();
                tokio::spawn(conn);
                // `ip` runs in this thread's namespace: it is the child's
                // at fork.
                for cmd in [
                    "link add ncp0 type veth peer name ncp1",
                    "link set ncp0 up",
                    "link set ncp1 up",
                    "addr add 192.0.2.10/24 dev ncp0",
                    "route add default via 192.0.2.1 dev ncp0",
                    "link add ncb0 type bridge",
                    "addr add 198.51.100.1/24 dev ncb0",
                    "link set ncb0 up",
                ] {
                    ip_cmd(&cmd.split(' ').collect::<Vec<_>>());
                }
                let parent = parent_index(&handle, "ncp0").await.unwrap().unwrap();
                let docker = vec![("bridge".to_string(), net("198.51.100.1/24"))];
                let kinds = BTreeMap::new();
                let held: Held = [(
                    "ncp0".to_string(),
                    vec![
                        ("ok".into(), lease("192.0.2.57", 24)),
                        ("gw".into(), lease("192.0.2.1", 24)),
                        ("own".into(), lease("192.0.2.10", 24)),
                        ("out".into(), lease("203.0.113.5", 24)),
                        ("dock".into(), lease("198.51.100.7", 24)),
                    ],
                )]
                .into();
                let (res, refused) = sync_leases(&handle, &held, &kinds, &docker).await;
                res.unwrap();
                let shim = parent_index(&handle, &shim_name(parent))
                    .await
                    .unwrap()
                    .unwrap();
                let routes = routes_on(&handle, shim).await.unwrap();
                assert_eq!(routes, [ip("192.0.2.57")].into());
                let names: Vec<&str> = refused.keys().map(String::as_str).collect();
                assert_eq!(names, ["dock", "gw", "out", "own"]);
                assert!(
                    refused["gw"].contains("192.0.2.1 is a gateway"),
                    "{refused:?}"
                );
                assert!(
                    refused["out"].contains("outside the parent's LAN subnet 192.0.2.0/24"),
                    "{refused:?}"
                );

                // Only refused leases: no shim at all.
                let held: Held = [(
                    "ncp0".to_string(),
                    vec![("gw".into(), lease("192.0.2.1", 24))],
                )]
                .into();
                let (res, refused) = sync_leases(&handle, &held, &kinds, &docker).await;
                res.unwrap();
                assert_eq!(refused.len(), 1);
                assert_eq!(
                    parent_index(&handle, &shim_name(parent)).await.unwrap(),
                    None
                );

                // No address on the parent: the lease's subnet, never Docker's.
                ip_cmd(&["addr", "flush", "dev", "ncp0"]);
                let held: Held = [(
                    "ncp0".to_string(),
                    vec![
                        ("ok".into(), lease("203.0.113.5", 24)),
                        ("dock".into(), lease("198.51.100.7", 24)),
                        ("wide".into(), lease("8.8.8.8", 1)),
                    ],
                )]
                .into();
                let (res, refused) = sync_leases(&handle, &held, &kinds, &[]).await;
                res.unwrap();
                let shim = parent_index(&handle, &shim_name(parent))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    routes_on(&handle, shim).await.unwrap(),
                    [ip("203.0.113.5")].into()
                );
                assert!(refused["dock"].contains("dev ncb0"), "{refused:?}");
                assert!(refused["wide"].contains("no LAN subnet"), "{refused:?}");
            });
        })
        .join()
        .unwrap();
    }

    #[test]
    fn resolvers_from_resolv_conf() {
        let r = resolvers(
            "# x\nnameserver 192.0.2.53\nnameserver 2001:db8::1\nsearch example\nnameserver  198.51.100.9 \n",
        );
        assert_eq!(r, [ip("192.0.2.53"), ip("198.51.100.9")].into());
    }

    #[test]
    fn shim_names_round_trip() {
        assert_eq!(shim_name(17), "nch17");
        assert_eq!(is_shim_name("nch17"), Some(17));
        assert_eq!(is_shim_name("nch"), None);
        assert_eq!(is_shim_name("nchx"), None);
        assert_eq!(is_shim_name("eth0"), None);
        assert!(shim_name(u32::MAX).len() <= 15);
    }
}
