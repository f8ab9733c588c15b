//! The "who am I?" endpoint of a router (see `netcontainer-whoami`): on the
//! router's Docker side, port [`WHOAMI_PORT`], about the one service the
//! router stands for. In gateway mode the router is the service's default
//! gateway, so docker-mirror's recipe finds it unchanged.
//!
//! Only the Docker side is answered: the listener is on every address, but
//! a caller is admitted only when the address it reached is on an interface
//! other than the LAN leg (and not the lease) and the caller is on that
//! interface's subnet. The firewall's input chain also drops the port on
//! the LAN leg, so a LAN host never reaches this code.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use netcontainer_proto::contract::WHOAMI_PORT;
use netcontainer_whoami::{Container, Directory, Limits, PortMap};
use tokio::sync::watch;

use crate::control::Snapshot;

/// Serves the endpoint for as long as the agent runs. A port that cannot be
/// bound is logged, not fatal: the forwards matter more.
pub async fn serve(snapshot: watch::Receiver<Snapshot>) {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, WHOAMI_PORT));
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            tracing::info!(
                port = WHOAMI_PORT,
                "who-am-I endpoint listening on the Docker side"
            );
            netcontainer_whoami::serve(
                listener,
                Arc::new(RouterDirectory { snapshot }),
                Limits::default(),
            )
            .await;
        }
        Err(e) => {
            tracing::error!(port = WHOAMI_PORT, error = %e, "who-am-I endpoint: cannot listen")
        }
    }
}

pub struct RouterDirectory {
    snapshot: watch::Receiver<Snapshot>,
}

impl RouterDirectory {
    fn container(&self) -> Option<Container> {
        let snap = self.snapshot.borrow();
        container_of(&snap, std::time::Instant::now())
    }
}

/// What the snapshot says about its service (nothing before a plan names one).
pub fn container_of(snap: &Snapshot, now: std::time::Instant) -> Option<Container> {
    let svc = snap.service.as_ref()?;
    let lease = snap.lease.as_ref().filter(|_| snap.rules_active);
    Some(Container {
        name: svc.name.clone(),
        id: svc.id.clone(),
        hostname: svc.hostname.clone(),
        mode: snap.source.into(),
        // The lease first (what /hostip answers), then the IPv6 addresses.
        addresses: lease
            .map(|l| IpAddr::V4(l.address))
            .into_iter()
            .chain(snap.ipv6.iter().map(|a| IpAddr::V6(a.address)))
            .collect(),
        forwards: snap
            .forwards
            .iter()
            .map(|f| {
                PortMap::of_forward(f.protocol, f.public_port, f.public_port_end, f.target_port)
            })
            .collect(),
        lease_expires_in_secs: lease
            .and_then(|l| l.expires_at())
            .map(|t| t.saturating_duration_since(now).as_secs()),
        mdns: snap.mdns.clone(),
    })
}

/// Whether `peer`, having reached `local`, is on the Docker side: `local` is
/// an address of an interface other than `lan_if` and `lo`, and `peer` is on
/// its subnet.
pub fn docker_side(
    ifaddrs: &[(String, Ipv4Addr, u8)],
    lan_if: &str,
    peer: Ipv4Addr,
    local: Ipv4Addr,
) -> bool {
    ifaddrs.iter().any(|(name, addr, plen)| {
        name != lan_if
            && name != "lo"
            && *addr == local
            && *plen > 0
            && *plen < 32
            && same_subnet(*addr, peer, *plen)
            && peer != local
    })
}

fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, plen: u8) -> bool {
    let mask = u32::MAX << (32 - u32::from(plen));
    u32::from(a) & mask == u32::from(b) & mask
}

/// The namespace's IPv4 addresses with their prefix lengths.
fn ipv4_addresses() -> Vec<(String, Ipv4Addr, u8)> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| {
            let addr = a.address?.as_sockaddr_in()?.ip();
            let mask = a.netmask?.as_sockaddr_in()?.ip();
            Some((a.interface_name, addr, u32::from(mask).count_ones() as u8))
        })
        .collect()
}

impl Directory for RouterDirectory {
    type Scope = Ipv4Addr;

    async fn admit(&self, peer: IpAddr, local: IpAddr) -> Option<Ipv4Addr> {
        let (IpAddr::V4(peer), IpAddr::V4(local)) = (peer, local) else {
            return None;
        };
        let (lan_if, lease) = {
            let snap = self.snapshot.borrow();
            (
                snap.interface.clone().unwrap_or_else(|| "lan0".into()),
                snap.lease.as_ref().map(|l| l.address),
            )
        };
        if Some(local) == lease {
            return None;
        }
        docker_side(&ipv4_addresses(), &lan_if, peer, local).then_some(peer)
    }

    async fn host_ip(&self, _peer: &Ipv4Addr) -> Option<IpAddr> {
        let snap = self.snapshot.borrow();
        snap.lease
            .as_ref()
            .filter(|_| snap.rules_active)
            .map(|l| IpAddr::V4(l.address))
    }

    async fn me(&self, peer: &Ipv4Addr) -> Option<Container> {
        let c = self.container()?;
        let is_service = self
            .snapshot
            .borrow()
            .service
            .as_ref()
            .is_some_and(|s| s.address == *peer);
        is_service.then_some(c)
    }

    async fn find(&self, _peer: &Ipv4Addr, key: &str) -> Option<Container> {
        self.container().filter(|c| c.is_named(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_docker_side_is_admitted() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let addrs = vec![
            ("lo".to_string(), a("127.0.0.1"), 8),
            ("eth0".to_string(), a("198.51.100.3"), 28),
            ("lan0".to_string(), a("203.0.113.57"), 24),
        ];
        assert!(docker_side(
            &addrs,
            "lan0",
            a("198.51.100.2"),
            a("198.51.100.3")
        ));
        // From the LAN, to the LAN address or (routed) to the Docker side.
        assert!(!docker_side(
            &addrs,
            "lan0",
            a("203.0.113.10"),
            a("203.0.113.57")
        ));
        assert!(!docker_side(
            &addrs,
            "lan0",
            a("203.0.113.10"),
            a("198.51.100.3")
        ));
        // Off the Docker subnet (a routed client), loopback, the router itself.
        assert!(!docker_side(
            &addrs,
            "lan0",
            a("198.51.100.20"),
            a("198.51.100.3")
        ));
        assert!(!docker_side(&addrs, "lan0", a("127.0.0.1"), a("127.0.0.1")));
        assert!(!docker_side(
            &addrs,
            "lan0",
            a("198.51.100.3"),
            a("198.51.100.3")
        ));
    }
}
