//! `watch`'s side of the "who am I?" endpoint (see `netcontainer-whoami`):
//! on each Docker bridge network's gateway address (the default gateway of
//! every container on it that is not in gateway mode), port
//! [`WHOAMI_PORT`]. A caller learns about the containers on the network it
//! asked on, and nothing else:
//!
//! - a service with a network container: its lease and its forwards;
//! - any other container: the host's address and Docker's published ports,
//!   as docker-mirror answered.
//!
//! Only callers inside the network's subnet are admitted (the gateway is a
//! host address, which a LAN host routing the Docker subnet via the host
//! could otherwise reach). Listeners follow the networks: a rescan every
//! [`RESCAN`] binds new gateways and drops gone ones.
//!
//! Cost per request: a network's members are read from Docker at most once
//! per [`MEMBERS_FRESH`] ([`Members`]), and a member's hostname once in its
//! life, so a name nobody on the network has costs no Docker call and no
//! agent status; only the one container a request is about is inspected
//! (and its router asked). The shell limits requests per caller
//! (`netcontainer_whoami::Limits::per_caller`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bollard::models::ContainerInspectResponse;

use netcontainer_proto::contract::WHOAMI_PORT;
use netcontainer_proto::{Protocol, Status};
use netcontainer_whoami::{Container, Directory, Limits, Mode, PortMap};

use crate::agent_client::agent_status;
use crate::docker::{BridgeNet, DockerClient, published_tcp};

/// How often the bridge networks are looked at again.
pub const RESCAN: Duration = Duration::from_secs(5);
/// How long a network's member list is used before Docker is asked again.
pub const MEMBERS_FRESH: Duration = Duration::from_secs(2);
/// A caller not among the cached members (a container that just started)
/// reads the list again, but not sooner than this after the last read.
pub const MEMBERS_MIN_AGE: Duration = Duration::from_millis(250);
/// Hostnames kept at most; past it those of containers no list names go.
const MAX_HOSTNAMES: usize = 4096;

/// One container on a network: (id, name, IPv4 address).
pub type Member = (String, String, Ipv4Addr);

/// The member lists of networks, and the members' hostnames.
#[derive(Debug, Default)]
pub struct Members {
    lists: HashMap<String, (Instant, Arc<Vec<Member>>)>,
    hostnames: HashMap<String, String>,
}

/// What [`Members::lookup`] found for a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The container of this id.
    Found(String),
    /// These members' hostnames are not known yet.
    NeedHostnames(Vec<String>),
    NotFound,
}

impl Members {
    /// `network`'s list when it is younger than `max_age`.
    pub fn list(&self, network: &str, now: Instant, max_age: Duration) -> Option<Arc<Vec<Member>>> {
        let (at, l) = self.lists.get(network)?;
        (now.saturating_duration_since(*at) < max_age).then(|| l.clone())
    }

    pub fn store(&mut self, network: &str, now: Instant, list: Vec<Member>) -> Arc<Vec<Member>> {
        let list = Arc::new(list);
        self.lists.insert(network.to_string(), (now, list.clone()));
        if self.hostnames.len() > MAX_HOSTNAMES {
            let lists = &self.lists;
            self.hostnames
                .retain(|id, _| lists.values().any(|(_, l)| l.iter().any(|m| &m.0 == id)));
        }
        list
    }

    pub fn set_hostname(&mut self, id: &str, hostname: String) {
        self.hostnames.insert(id.to_string(), hostname);
    }

    /// The member `key` names: by name or id (of at least 12 digits), else
    /// by hostname, once every member's hostname is known.
    pub fn lookup(&self, members: &[Member], key: &str) -> Lookup {
        let key = key.strip_prefix('/').unwrap_or(key);
        if key.is_empty() {
            return Lookup::NotFound;
        }
        if let Some((id, _, _)) = members
            .iter()
            .find(|(id, name, _)| name == key || (key.len() >= 12 && id.starts_with(key)))
        {
            return Lookup::Found(id.clone());
        }
        let unknown: Vec<String> = members
            .iter()
            .filter(|(id, _, _)| !self.hostnames.contains_key(id))
            .map(|(id, _, _)| id.clone())
            .collect();
        if !unknown.is_empty() {
            return Lookup::NeedHostnames(unknown);
        }
        members
            .iter()
            .find(|(id, _, _)| self.hostnames.get(id).is_some_and(|h| h == key))
            .map_or(Lookup::NotFound, |(id, _, _)| Lookup::Found(id.clone()))
    }
}

/// Serves the endpoint on every bridge network's gateway until dropped.
pub async fn run(docker: DockerClient, host_address: Option<Ipv4Addr>) {
    let nets: Arc<RwLock<HashMap<Ipv4Addr, BridgeNet>>> = Arc::default();
    let dir = Arc::new(WatchDirectory {
        docker: docker.clone(),
        nets: nets.clone(),
        host_address,
        members: tokio::sync::Mutex::default(),
    });
    let mut serving: HashMap<Ipv4Addr, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut tick = tokio::time::interval(RESCAN);
    loop {
        tick.tick().await;
        let found = match docker.bridge_networks().await {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "who-am-I endpoint: listing networks failed");
                continue;
            }
        };
        let now: HashMap<Ipv4Addr, BridgeNet> = found.into_iter().map(|n| (n.gateway, n)).collect();
        serving.retain(|gw, task| {
            let keep = now.contains_key(gw) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for (gw, net) in &now {
            if serving.contains_key(gw) {
                continue;
            }
            match tokio::net::TcpListener::bind(SocketAddr::from((*gw, WHOAMI_PORT))).await {
                Ok(l) => {
                    tracing::info!(network = %crate::output::safe(&net.name), address = %gw, port = WHOAMI_PORT,
                        "who-am-I endpoint listening");
                    serving.insert(
                        *gw,
                        tokio::spawn(netcontainer_whoami::serve(
                            l,
                            dir.clone(),
                            Limits::default(),
                        )),
                    );
                }
                // The bridge may not have its address yet; the next rescan
                // tries again.
                Err(e) => {
                    tracing::debug!(address = %gw, error = %e, "who-am-I endpoint: cannot listen yet")
                }
            }
        }
        *nets.write().unwrap_or_else(|p| p.into_inner()) = now;
    }
}

pub struct WatchDirectory {
    docker: DockerClient,
    nets: Arc<RwLock<HashMap<Ipv4Addr, BridgeNet>>>,
    host_address: Option<Ipv4Addr>,
    /// Held while Docker is asked: concurrent requests share one read.
    members: tokio::sync::Mutex<Members>,
}

/// An admitted caller: its network (ID and name) and its address there.
pub struct Caller {
    network_id: String,
    network_name: String,
    peer: Ipv4Addr,
}

fn in_subnet(a: Ipv4Addr, b: Ipv4Addr, plen: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(plen)).unwrap_or(0);
    u32::from(a) & mask == u32::from(b) & mask
}

/// Whether `peer`, having reached `local`, is a container of the network
/// whose gateway `local` is.
pub fn admitted(
    nets: &HashMap<Ipv4Addr, BridgeNet>,
    peer: Ipv4Addr,
    local: Ipv4Addr,
) -> Option<&BridgeNet> {
    let net = nets.get(&local)?;
    (peer != local && in_subnet(peer, net.gateway, net.prefix_len)).then_some(net)
}

impl WatchDirectory {
    /// The members of the caller's network: the cached list while it is
    /// fresh, unless `refresh` asks for a newer one (no younger than
    /// [`MEMBERS_MIN_AGE`]).
    async fn members(&self, c: &Caller, refresh: bool) -> Arc<Vec<Member>> {
        let mut m = self.members.lock().await;
        let now = Instant::now();
        let max_age = if refresh {
            MEMBERS_MIN_AGE
        } else {
            MEMBERS_FRESH
        };
        if let Some(l) = m.list(&c.network_id, now, max_age) {
            return l;
        }
        let list = self
            .docker
            .network_members(&c.network_id)
            .await
            .unwrap_or_default();
        m.store(&c.network_id, now, list)
    }

    /// What the caller may know about container `id`; with `holder`, only
    /// if that container is running and holds the caller's address on the
    /// caller's network now (a cached member list may name the container
    /// that held a freed address before).
    async fn facts(&self, id: &str, holder: Option<&Caller>) -> Option<Container> {
        let c = self.docker.inspect(id).await.ok()?;
        if let Some(caller) = holder
            && !holds(&c, caller)
        {
            return None;
        }
        let name = c
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        let hostname = c
            .config
            .as_ref()
            .and_then(|c| c.hostname.clone())
            .unwrap_or_default();
        let full_id = c.id.clone().unwrap_or_default();
        let status = match crate::state::ServiceName::parse(&name) {
            Ok(svc) => match self.docker.router(&svc).await {
                Ok(Some(r)) if r.running => agent_status(&r.service).await,
                _ => None,
            },
            Err(_) => None,
        };
        Some(match status {
            Some(st) => from_status(name, full_id, hostname, &st),
            None => Container {
                name,
                id: full_id,
                hostname,
                mode: Mode::Docker,
                addresses: self.host_address.map(IpAddr::V4).into_iter().collect(),
                forwards: published_tcp(&c)
                    .into_iter()
                    .map(|(private, public)| PortMap {
                        protocol: Protocol::Tcp,
                        private_port: private,
                        public_port: public,
                        count: 1,
                    })
                    .collect(),
                lease_expires_in_secs: None,
                mdns: None,
            },
        })
    }
}

/// Whether the inspected container is running and holds the caller's
/// address on the caller's network. Docker gives the endpoint's network by
/// ID; Podman 4 by name (its `NetworkID` is the name, containers/podman#24910):
/// either names the caller's network.
fn holds(c: &ContainerInspectResponse, caller: &Caller) -> bool {
    let running = c.state.as_ref().and_then(|s| s.running) == Some(true);
    let peer = caller.peer.to_string();
    let ours = |id: Option<&str>| {
        id.is_some_and(|id| {
            !id.is_empty() && (id == caller.network_id || id == caller.network_name)
        })
    };
    running
        && c.network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .is_some_and(|nets| {
                nets.values().any(|e| {
                    ours(e.network_id.as_deref()) && e.ip_address.as_deref() == Some(peer.as_str())
                })
            })
}

/// A service with a network container, from its agent's status.
pub fn from_status(name: String, id: String, hostname: String, st: &Status) -> Container {
    Container {
        name,
        id,
        hostname,
        mode: st.source.into(),
        addresses: st.lease.iter().map(|l| IpAddr::V4(l.address)).collect(),
        forwards: st
            .forwards
            .iter()
            .map(|f| {
                PortMap::of_forward(f.protocol, f.public_port, f.public_port_end, f.target_port)
            })
            .collect(),
        lease_expires_in_secs: st.lease.as_ref().and_then(|l| l.expires_in_secs),
        mdns: st.mdns.clone(),
    }
}

impl Directory for WatchDirectory {
    type Scope = Caller;

    async fn admit(&self, peer: IpAddr, local: IpAddr) -> Option<Caller> {
        let (IpAddr::V4(peer), IpAddr::V4(local)) = (peer, local) else {
            return None;
        };
        let nets = self.nets.read().unwrap_or_else(|p| p.into_inner());
        admitted(&nets, peer, local).map(|n| Caller {
            network_id: n.id.clone(),
            network_name: n.name.clone(),
            peer,
        })
    }

    async fn host_ip(&self, c: &Caller) -> Option<IpAddr> {
        match self.me(c).await {
            Some(me) => me
                .addresses
                .first()
                .copied()
                .or(self.host_address.map(IpAddr::V4)),
            None => self.host_address.map(IpAddr::V4),
        }
    }

    async fn me(&self, c: &Caller) -> Option<Container> {
        let find = |l: &[Member]| {
            l.iter()
                .find(|(_, _, ip)| *ip == c.peer)
                .map(|m| m.0.clone())
        };
        if let Some(id) = find(&self.members(c, false).await)
            && let Some(me) = self.facts(&id, Some(c)).await
        {
            return Some(me);
        }
        // The list is older than the caller: a container that started, or
        // took a freed address, since it was read.
        let id = find(&self.members(c, true).await)?;
        self.facts(&id, Some(c)).await
    }

    async fn find(&self, c: &Caller, key: &str) -> Option<Container> {
        let members = self.members(c, false).await;
        let found = self.members.lock().await.lookup(&members, key);
        let id = match found {
            Lookup::Found(id) => id,
            Lookup::NotFound => return None,
            // Each member's hostname is read once in its life.
            Lookup::NeedHostnames(ids) => {
                for id in ids {
                    let hostname = match self.docker.inspect(&id).await {
                        Ok(i) => i.config.and_then(|c| c.hostname).unwrap_or_default(),
                        Err(_) => continue,
                    };
                    self.members.lock().await.set_hostname(&id, hostname);
                }
                match self.members.lock().await.lookup(&members, key) {
                    Lookup::Found(id) => id,
                    _ => return None,
                }
            }
        };
        self.facts(&id, None).await
    }
}

/// The host's address for containers without a network container: the
/// given one, else the parent's first IPv4 address, else that of the
/// interface holding the default route.
pub fn host_address(given: Option<Ipv4Addr>, parent: Option<&str>) -> Option<Ipv4Addr> {
    if given.is_some() {
        return given;
    }
    let addrs: Vec<(String, Ipv4Addr)> = nix::ifaddrs::getifaddrs()
        .map(|it| {
            it.filter_map(|a| Some((a.interface_name, a.address?.as_sockaddr_in()?.ip())))
                .collect()
        })
        .unwrap_or_default();
    let of = |ifname: &str| addrs.iter().find(|(n, _)| n == ifname).map(|(_, a)| *a);
    if let Some(a) = parent.and_then(of) {
        return Some(a);
    }
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    default_route_interface(&routes).and_then(|i| of(&i))
}

/// The interface of the default route in `/proc/net/route`'s text.
pub fn default_route_interface(table: &str) -> Option<String> {
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_only_from_the_network_they_ask_on() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let nets = HashMap::from([(
            a("198.51.100.1"),
            BridgeNet {
                id: "n1".into(),
                name: "net1".into(),
                gateway: a("198.51.100.1"),
                prefix_len: 28,
            },
        )]);
        assert!(admitted(&nets, a("198.51.100.2"), a("198.51.100.1")).is_some());
        // Off the subnet (a LAN host routing via the host), the host itself,
        // an address that is no network's gateway.
        assert!(admitted(&nets, a("203.0.113.10"), a("198.51.100.1")).is_none());
        assert!(admitted(&nets, a("198.51.100.20"), a("198.51.100.1")).is_none());
        assert!(admitted(&nets, a("198.51.100.1"), a("198.51.100.1")).is_none());
        assert!(admitted(&nets, a("198.51.100.2"), a("192.0.2.2")).is_none());
    }

    /// An unknown name costs nothing once the hostnames are known; a list
    /// is used while fresh and read again after.
    #[test]
    fn members_are_cached_and_unknown_names_cost_nothing() {
        let a = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let id = |n: u8| format!("{n:02}").repeat(32);
        let list: Vec<Member> = (1..=3)
            .map(|n| (id(n), format!("c{n}"), a(&format!("198.51.100.{}", n + 1))))
            .collect();
        let mut m = Members::default();
        let t0 = Instant::now();
        assert!(m.list("n1", t0, MEMBERS_FRESH).is_none());
        let l = m.store("n1", t0, list);
        assert!(
            m.list("n1", t0 + Duration::from_secs(1), MEMBERS_FRESH)
                .is_some()
        );
        assert!(m.list("n1", t0 + MEMBERS_FRESH, MEMBERS_FRESH).is_none());
        assert!(
            m.list("n1", t0 + MEMBERS_MIN_AGE, MEMBERS_MIN_AGE)
                .is_none()
        );
        // By name and id prefix: no hostname needed.
        assert_eq!(m.lookup(&l, "c2"), Lookup::Found(id(2)));
        assert_eq!(m.lookup(&l, "/c2"), Lookup::Found(id(2)));
        assert_eq!(m.lookup(&l, &id(3)[..12]), Lookup::Found(id(3)));
        assert_eq!(m.lookup(&l, ""), Lookup::NotFound);
        // By hostname: every hostname read once, then never again.
        assert_eq!(
            m.lookup(&l, "nobody"),
            Lookup::NeedHostnames(vec![id(1), id(2), id(3)])
        );
        for n in 1..=3 {
            m.set_hostname(&id(n), format!("h{n}"));
        }
        assert_eq!(m.lookup(&l, "h3"), Lookup::Found(id(3)));
        for _ in 0..100 {
            assert_eq!(m.lookup(&l, "nobody"), Lookup::NotFound);
        }
    }

    /// A cached member list may name the container that held an address
    /// before it was freed and taken by another: the answer is only given
    /// for a running container that holds the caller's address on its
    /// network now.
    #[test]
    fn only_the_container_holding_the_address_now_is_the_caller() {
        let caller = Caller {
            network_id: "c0ffee".into(),
            network_name: "net1".into(),
            peer: "198.51.100.2".parse().unwrap(),
        };
        let inspected = |running: bool, net: &str, ip: &str| -> ContainerInspectResponse {
            serde_json::from_value(serde_json::json!({
                "State": {"Running": running},
                "NetworkSettings": {"Networks": {"n": {"NetworkID": net, "IPAddress": ip}}}
            }))
            .unwrap()
        };
        // Docker names the network by ID, Podman by name.
        assert!(holds(&inspected(true, "c0ffee", "198.51.100.2"), &caller));
        assert!(holds(&inspected(true, "net1", "198.51.100.2"), &caller));
        assert!(!holds(&inspected(true, "", "198.51.100.2"), &caller));
        // Stopped: its address may be another container's now.
        assert!(!holds(&inspected(false, "net1", "198.51.100.2"), &caller));
        // Running, but with another address, or on another network.
        assert!(!holds(&inspected(true, "net1", "198.51.100.3"), &caller));
        assert!(!holds(&inspected(true, "net2", "198.51.100.2"), &caller));
        assert!(!holds(&ContainerInspectResponse::default(), &caller));
    }

    #[test]
    fn default_route_from_proc() {
        let t = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                 eth0\t0002000C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                 eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_route_interface(t).as_deref(), Some("eth0"));
        assert_eq!(default_route_interface("Iface\n"), None);
        assert_eq!(
            host_address(Some(Ipv4Addr::new(203, 0, 113, 9)), None),
            Some(Ipv4Addr::new(203, 0, 113, 9))
        );
    }
}
