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

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkInfo};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteScope};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::docker::DockerClient;
use crate::leg::{Kind, LinkSpec};

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

/// Brings shims and their routes in line with the leases of the routers
/// (see the module doc). Errors on one parent do not stop the others; the
/// first is returned.
pub async fn sync(docker: &DockerClient, handle: &Handle) -> Result<(), ShimError> {
    let routers = match docker.routers().await {
        Ok(r) => r,
        // No listing, no changes: a Docker hiccup must not tear routes down.
        Err(e) => {
            tracing::debug!(error = %e, "host routes: cannot list routers");
            return Ok(());
        }
    };
    let mut leases: BTreeMap<String, BTreeSet<Ipv4Addr>> = BTreeMap::new();
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
        if let Some(l) = crate::agent_client::agent_status(&r.service)
            .await
            .and_then(|s| s.lease)
        {
            leases.entry(parent.clone()).or_default().insert(l.address);
        }
    }
    let mut first_err = None;
    let mut keep = BTreeSet::new();
    for (parent, addrs) in &leases {
        match parent_index(handle, parent).await {
            Ok(Some(index)) => {
                keep.insert(index);
                let kind = shim_kind(&kinds.get(parent).cloned().unwrap_or_default());
                if let Err(e) = sync_parent(handle, parent, index, kind, addrs).await {
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
    first_err.map_or(Ok(()), Err)
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
