//! The LAN test bed builder.
//!
//! ```text
//!  LAN ns "<id>lan"                      host ns "<id>host"         router ns "<id>r<N>"
//!  br0 192.0.2.1/24 (DHCP server)  <-- h0 === eth0 (veth, up) --macvlan(bridge)--> lan0 (DOWN)
//!   |-- c<N> === eth0 192.0.2.x/24 in client ns "<id>c<N>"
//! ```
//!
//! Build with [`Lan::new`] then compose: [`Lan::add_router`], [`Lan::add_client`],
//! [`Lan::add_lan_address`]. Everything is deleted on drop (namespaces own their links).
//!
//! [`add_bridge`] and [`plug`] are the one place a simulated L2 segment is made: `Lan`, the
//! service segment ([`crate::ServiceNet`]), the Docker bed ([`crate::docker::DockerBed`],
//! 203.0.113.0/24) and the extra LAN ports of [`crate::rogue`] all build theirs with them
//! (and the scripts get their beds from `ncbed`, which uses these builders).

use crate::netns::Netns;
use netcontainer_proto::contract::LAN_IF;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Server address on br0.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

pub struct Lan {
    id: String,
    /// The LAN namespace: bridge `br0` with 192.0.2.1/24; DHCP servers run here.
    pub lan: Arc<Netns>,
    /// The "host": `eth0` (veth to the bridge), the parent of the routers' macvlans.
    pub host: Arc<Netns>,
    /// Router namespaces, each with a macvlan `lan0` (DOWN, no address) on host's eth0.
    pub routers: Vec<Arc<Netns>>,
    /// LAN client namespaces, each with `eth0` on the bridge and a static address.
    pub clients: Vec<Arc<Netns>>,
    ports: u32,
    next_router: u32,
}

impl Lan {
    /// LAN namespace with br0 = 192.0.2.1/24 and the host namespace plugged into it.
    /// No router yet: call [`Lan::add_router`].
    pub fn new() -> Lan {
        let id = crate::unique("");
        let lan = Arc::new(Netns::new(&format!("{id}lan")).expect("create LAN netns"));
        let host = Arc::new(Netns::new(&format!("{id}host")).expect("create host netns"));
        add_bridge(&lan, Some(&format!("{SERVER}/24")));
        let mut bed = Lan {
            id,
            lan,
            host,
            routers: Vec::new(),
            clients: Vec::new(),
            ports: 0,
            next_router: 0,
        };
        let host = bed.host.clone();
        bed.plug(&host, "eth0", None);
        bed
    }

    /// A LAN with one router already added (the common case).
    pub fn with_router() -> Lan {
        let mut l = Lan::new();
        l.add_router();
        l
    }

    /// The unique id prefix of this bed's namespaces.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The first router.
    pub fn router(&self) -> &Arc<Netns> {
        self.routers.first().expect("no router: call add_router()")
    }

    /// Connect `ns` to the bridge with a veth named `ifname` inside `ns` (up).
    fn plug(&mut self, ns: &Netns, ifname: &str, cidr: Option<&str>) {
        let port = format!("p{}", self.ports);
        self.ports += 1;
        plug(&self.lan, &port, ns, ifname, cidr);
    }

    /// Add a router namespace with a macvlan (mode bridge) `lan0` on the host's eth0, moved
    /// into the router namespace, left DOWN and without address (the agent brings it up).
    pub fn add_router(&mut self) -> Arc<Netns> {
        self.add_router_with_mac(None)
    }

    /// Like [`Lan::add_router`] with a chosen MAC for `lan0`.
    pub fn add_router_with_mac(&mut self, mac: Option<&str>) -> Arc<Netns> {
        let mut args = vec!["type", "macvlan", "mode", "bridge"];
        if let Some(m) = mac {
            args.splice(0..0, ["address", m]);
        }
        self.add_router_leg(&args)
    }

    /// Like [`Lan::add_router`] with an ipvlan (mode l2) `lan0`: the parent's MAC, no
    /// unicast before the address is configured. Check [`ipvlan_support`] first.
    pub fn add_ipvlan_router(&mut self) -> Arc<Netns> {
        self.add_router_leg(&["type", "ipvlan", "mode", "l2"])
    }

    fn add_router_leg(&mut self, kind: &[&str]) -> Arc<Netns> {
        let n = self.next_router;
        self.next_router += 1;
        let ns = Arc::new(Netns::new(&format!("{}r{n}", self.id)).expect("create router netns"));
        // Created under a temporary name in the host namespace (several routers' lan0
        // would clash there), moved, then renamed inside the router namespace.
        let tmp = format!("mv{n}");
        let mut args = vec!["link", "add", &tmp, "link", "eth0"];
        args.extend_from_slice(kind);
        self.host.ip(&args);
        self.host.ip(&["link", "set", &tmp, "netns", ns.name()]);
        ns.ip(&["link", "set", &tmp, "name", LAN_IF]);
        self.routers.push(ns.clone());
        ns
    }

    /// Forget a router (its namespace is deleted when the last `Arc` of it is dropped).
    pub fn remove_router(&mut self, ns: &Arc<Netns>) {
        self.routers.retain(|r| !Arc::ptr_eq(r, ns));
    }

    /// Add a LAN client namespace with `eth0` = 192.0.2.`last_octet`/24 on the bridge.
    pub fn add_client(&mut self, last_octet: u8) -> Arc<Netns> {
        let n = self.clients.len();
        let ns = Arc::new(Netns::new(&format!("{}c{n}", self.id)).expect("create client netns"));
        self.plug(&ns, "eth0", Some(&format!("192.0.2.{last_octet}/24")));
        self.clients.push(ns.clone());
        ns
    }

    /// Add another address to br0 (e.g. 203.0.113.1/24 for a renumbered server).
    pub fn add_lan_address(&self, cidr: &str) {
        self.lan.ip(&["addr", "add", cidr, "dev", "br0"]);
    }

    /// Block unicast DHCP to the server (udp dport 67, ip daddr 192.0.2.1) on the bridge,
    /// letting broadcasts through: clients can no longer RENEW, only REBIND.
    ///
    /// The rule sits in the `bridge` family (prerouting): Kea and dnsmasq read with packet
    /// sockets on br0, which an `inet` input rule would not stop.
    pub fn block_unicast_dhcp(&self) {
        self.lan.nft(
            "table bridge nctest {\n\
               chain pre { type filter hook prerouting priority -300; policy accept;\n\
                 ip daddr 192.0.2.1 udp dport 67 counter drop\n\
               }\n\
             }\n",
        );
    }

    /// Remove the rule of [`Lan::block_unicast_dhcp`].
    pub fn unblock_unicast_dhcp(&self) {
        self.lan.nft("delete table bridge nctest\n");
    }

    /// Packets dropped so far by [`Lan::block_unicast_dhcp`].
    pub fn blocked_unicast_count(&self) -> u64 {
        let out = self
            .lan
            .exec(&["nft", "-j", "list", "table", "bridge", "nctest"]);
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        let mut n = 0;
        for item in v["nftables"].as_array().into_iter().flatten() {
            for e in item["rule"]["expr"].as_array().into_iter().flatten() {
                if let Some(p) = e["counter"]["packets"].as_u64() {
                    n += p;
                }
            }
        }
        n
    }
}

/// Whether this kernel can make ipvlan links: tries one on a veth in a scratch
/// namespace (deleted with it). `Err` carries what `ip` said ("Unknown device type"
/// when the kernel was built without CONFIG_IPVLAN and has no module).
pub fn ipvlan_support() -> Result<(), String> {
    let ns = Netns::new(&crate::unique("ipvl")).map_err(|e| format!("scratch netns: {e}"))?;
    ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    let out = ns.exec(&[
        "ip", "link", "add", "link", "v0", "name", "iv0", "type", "ipvlan", "mode", "l2",
    ]);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Skip the calling test, saying why, when the kernel has no ipvlan: a printed capability
/// check, never a silent pass. `NETCONTAINER_REQUIRE_IPVLAN` set turns the skip into a
/// failure (for a CI runner whose kernel is known to have it).
#[macro_export]
macro_rules! require_ipvlan {
    () => {
        if let Err(why) = $crate::bed::ipvlan_support() {
            fn __f() {}
            let name = std::any::type_name_of_val(&__f).trim_end_matches("::__f");
            let msg = format!(
                "{name}: skipping: the kernel has no ipvlan support (`ip link add ... type ipvlan`: {why}; modprobe ipvlan, or a kernel with CONFIG_IPVLAN)"
            );
            if std::env::var_os("NETCONTAINER_REQUIRE_IPVLAN").is_some() {
                panic!("{msg}, and NETCONTAINER_REQUIRE_IPVLAN is set");
            }
            eprintln!("{msg}");
            return;
        }
    };
}

/// Bridge `br0` in `ns` (no STP, no forwarding delay: ports forward at once), up, with
/// `cidr` (e.g. "192.0.2.1/24") on it if given.
pub fn add_bridge(ns: &Netns, cidr: Option<&str>) {
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&[
        "link",
        "set",
        "br0",
        "type",
        "bridge",
        "stp_state",
        "0",
        "forward_delay",
        "0",
    ]);
    if let Some(c) = cidr {
        ns.ip(&["addr", "add", c, "dev", "br0"]);
    }
    ns.ip(&["link", "set", "br0", "up"]);
}

/// A veth from `br0` of `bridge_ns` (port `port` there) to `ns` (named `ifname` there),
/// both ends up, `cidr` on the `ns` end if given.
pub fn plug(bridge_ns: &Netns, port: &str, ns: &Netns, ifname: &str, cidr: Option<&str>) {
    veth_from_bridge(bridge_ns, port, ns.name(), ifname);
    if let Some(c) = cidr {
        ns.ip(&["addr", "add", c, "dev", ifname]);
    }
    ns.ip(&["link", "set", ifname, "up"]);
}

/// Like [`plug`], the far end `ifname` in the caller's own network namespace (the root
/// namespace for the Docker bed: its `--parent`), up, without address.
pub fn plug_here(bridge_ns: &Netns, port: &str, ifname: &str) {
    veth_from_bridge(bridge_ns, port, &std::process::id().to_string(), ifname);
    crate::ip(&["link", "set", ifname, "up"]);
}

/// A veth pair from the caller's own network namespace (`here`, up, without address)
/// to `ns` (`there`, up, with `cidr` if given): a point-to-point link, no bridge.
pub fn veth_here_to(here: &str, ns: &Netns, there: &str, cidr: Option<&str>) {
    crate::ip(&[
        "link",
        "add",
        here,
        "type",
        "veth",
        "peer",
        "name",
        there,
        "netns",
        ns.name(),
    ]);
    if let Some(c) = cidr {
        ns.ip(&["addr", "add", c, "dev", there]);
    }
    ns.ip(&["link", "set", there, "up"]);
    crate::ip(&["link", "set", here, "up"]);
}

/// The veth pair of [`plug`]: `port` on `br0` (up), its peer `ifname` put in `netns` (a
/// namespace name or a pid, as `ip link ... netns` takes them).
fn veth_from_bridge(bridge_ns: &Netns, port: &str, netns: &str, ifname: &str) {
    bridge_ns.ip(&[
        "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", netns,
    ]);
    bridge_ns.ip(&["link", "set", port, "master", "br0", "up"]);
}

impl Default for Lan {
    fn default() -> Self {
        Lan::new()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Routers and clients first, then host, then the LAN (Arc: a server guard that
        // still holds the LAN keeps it until the guard itself is dropped).
        self.routers.clear();
        self.clients.clear();
    }
}
