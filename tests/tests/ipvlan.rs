//! The ipvlan leg, end to end in network namespaces: lease, renew, release, forwards and
//! the reply route, on `lan0` = ipvlan (mode l2) on the host's eth0. Root only.
//!
//! Every test first checks the kernel (`require_ipvlan!`: one `ip link add ... type
//! ipvlan` on a veth in a scratch namespace). A kernel without ipvlan (built without
//! CONFIG_IPVLAN, no module) prints "skipping: the kernel has no ipvlan support (...)" and
//! returns; `NETCONTAINER_REQUIRE_IPVLAN=1` makes that a failure on a runner known to have
//! it.
//!
//! What ipvlan changes, and what each test pins: every leg has the parent's MAC, so the
//! agent runs as the driver plans it for ipvlan, with the broadcast flag (`--broadcast`:
//! the leg receives no unicast before it owns the address) and a client id of its own
//! (`--client-id`: the MAC cannot tell two routers apart).
//!
//! ```text
//!  LAN ns: br0 192.0.2.1/24 + dnsmasq or Kea ── host ns eth0 ──ipvlan l2──> lan0 [router ns]
//!   └── client 192.0.2.10                                      router eth0 198.51.100.1
//!                                                                └── service 198.51.100.2
//! ```

use netcontainer_proto::contract;
use netcontainer_proto::contract::LAN_IF;
use netcontainer_tests::service::{self, HttpServer, curl, retry};
use netcontainer_tests::*;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(20);
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SVC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// The routing table of the agent's `ip rule`s.
const TABLE: u32 = contract::ROUTE_TABLE;

/// An ipvlan router with a running agent (no plan yet).
struct World {
    // Field order = drop order: agents, temp dir, then the bed.
    agents: Vec<Agent>,
    _tmp: TempDir,
    lan: Lan,
}

impl World {
    fn new(routers: usize) -> World {
        let mut lan = Lan::new();
        let tmp = TempDir::new("ipvl");
        let agents = (0..routers)
            .map(|_| {
                let r = lan.add_ipvlan_router();
                Agent::start(&r, tmp.path())
            })
            .collect();
        World {
            agents,
            _tmp: tmp,
            lan,
        }
    }

    fn router(&self, i: usize) -> &Arc<Netns> {
        &self.lan.routers[i]
    }

    /// What the driver sends for an ipvlan router: broadcast flag and a client id (the
    /// driver's starts with a NUL, which a command line cannot carry).
    fn args(i: usize) -> ApplyArgs {
        ApplyArgs::new(LAN_IF)
            .client_id(&format!("netcontainer:ipvl{i}"))
            .broadcast()
            .wait(15)
    }

    fn bind(&self, i: usize, args: ApplyArgs) -> Ipv4Addr {
        let out = self.agents[i].apply(&args);
        assert!(out.ok(), "agent apply on ipvlan router {i} failed: {out}");
        out.address()
            .unwrap_or_else(|| panic!("apply printed no address: {out}"))
    }
}

/// Two ipvlan legs share the parent's MAC, yet each gets its own lease (its client id),
/// and each carries exactly its own address.
#[test]
fn two_ipvlan_legs_get_two_leases_by_client_id() {
    require_root!();
    require_ipvlan!();
    let w = World::new(2);
    let parent_mac = mac_of(&w.lan.host, "eth0");
    assert_eq!(
        mac_of(w.router(0), LAN_IF),
        parent_mac,
        "ipvlan: parent's MAC"
    );
    assert_eq!(mac_of(w.router(1), LAN_IF), parent_mac);
    let dnsmasq = Dnsmasq::start(&w.lan.lan, DnsmasqOpts::default());
    let a = w.bind(0, World::args(0));
    let b = w.bind(1, World::args(1));
    assert_ne!(a, b, "two legs, one MAC, two leases");
    assert_eq!(addr_on(w.router(0), LAN_IF), vec![(a, 24)]);
    assert_eq!(addr_on(w.router(1), LAN_IF), vec![(b, 24)]);
    for addr in [a, b] {
        let l = dnsmasq.lease_of(addr).expect("dnsmasq has the lease");
        assert_eq!(l.mac, parent_mac);
    }
    for (i, ag) in w.agents.iter().enumerate() {
        let st = ag.wait_bound(5 * S);
        assert_eq!(st.lease.unwrap().server_id, Some(SERVER), "router {i}");
    }
}

/// Renew at T1 by unicast from the leased address (the leg owns it by then, so Kea's
/// unicast ACK reaches it) and keep the address past the first lease's expiry.
#[test]
fn ipvlan_renews_at_t1_by_unicast() {
    require_root!();
    require_ipvlan!();
    let w = World::new(1);
    let kea = Kea::start(&w.lan.lan, KeaOpts::short(6, 2, 4));
    let addr = w.bind(0, World::args(0));
    let bound_at = Instant::now();
    let renew = wait_for(5 * S, POLL, || {
        kea.requests()
            .into_iter()
            .find(|r| r.from == addr && r.to == SERVER)
    });
    assert!(renew.is_some(), "no unicast renew: {:?}", kea.requests());
    std::thread::sleep(Duration::from_secs(7).saturating_sub(bound_at.elapsed()));
    assert_eq!(addr_on(w.router(0), LAN_IF), vec![(addr, 24)]);
    let st = w.agents[0].status();
    assert_eq!(st.lease.expect("lease").address, addr);
    assert!(st.last_error.is_none(), "{:?}", st.last_error);
}

/// SIGTERM releases the lease (Kea logs the RELEASE from the address) and removes it.
#[test]
fn ipvlan_releases_on_sigterm() {
    require_root!();
    require_ipvlan!();
    let mut w = World::new(1);
    let kea = Kea::start(&w.lan.lan, KeaOpts::default());
    let addr = w.bind(0, World::args(0));
    let st = w.agents[0]
        .terminate(10 * S)
        .expect("agent did not exit within 10 s of SIGTERM");
    assert!(st.success(), "{st}");
    assert!(
        wait_until(3 * S, POLL, || kea.is_released(addr)),
        "Kea shows no release: {:?}",
        kea.lease_rows()
    );
    assert!(!has_addr(w.router(0), LAN_IF, addr));
}

/// A LAN client reaches a service behind the ipvlan router through the leased address,
/// and the agent's reply route (`contract::ROUTE_TABLE`) goes out of the ipvlan leg.
#[test]
fn ipvlan_forwards_reach_the_service_and_replies_route_out_of_the_leg() {
    require_root!();
    require_ipvlan!();
    if let Err(e) = service::need(&["curl", "busybox"]) {
        panic!("{e}");
    }
    let mut w = World::new(1);
    let _dnsmasq = Dnsmasq::start(&w.lan.lan, DnsmasqOpts::default());
    let client = w.lan.add_client(10);
    let mut svc = ServiceNet::attach(w.router(0));
    let host = svc.add_host(2);
    let _http = HttpServer::start(&host, 8080, "hello over ipvlan\n");
    let addr = w.bind(0, World::args(0).forward(&format!("tcp:8080={SVC}:8080")));
    let got = retry(3, Duration::from_millis(200), || {
        curl(&client, addr, 8080, 2)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, "hello over ipvlan\n");
    let routes = w
        .router(0)
        .ip(&["route", "show", "table", &TABLE.to_string()]);
    assert!(routes.contains("dev lan0"), "reply route: {routes}");
    assert!(
        !service::ip_rules_for_table(w.router(0), TABLE).is_empty(),
        "no ip rule for the reply table"
    );
    drop(svc);
}

/// The host reaches an ipvlan router's lease through a host-side ipvlan shim, built the
/// way the driver's `shim.rs` builds it for an ipvlan parent (mode l2 on the parent, a
/// link-local /32, a /32 route to the lease from it); the agent's table routes the
/// link-local range on `lan0`, so the reply stays on the link.
#[test]
fn the_host_reaches_an_ipvlan_lease_through_an_ipvlan_shim() {
    require_root!();
    require_ipvlan!();
    if let Err(e) = service::need(&["curl", "busybox"]) {
        panic!("{e}");
    }
    let w = World::new(1);
    let _dnsmasq = Dnsmasq::start(&w.lan.lan, DnsmasqOpts::default());
    let mut svc = ServiceNet::attach(w.router(0));
    let host = svc.add_host(2);
    let _http = HttpServer::start(&host, 8080, "hello from the host's side\n");
    let addr = w.bind(0, World::args(0).forward(&format!("tcp:8080={SVC}:8080")));
    let shim = Ipv4Addr::new(169, 254, 7, 7);
    let h = &w.lan.host;
    h.ip(&[
        "link", "add", "nchshim", "link", "eth0", "type", "ipvlan", "mode", "l2",
    ]);
    h.ip(&["addr", "add", &format!("{shim}/32"), "dev", "nchshim"]);
    h.ip(&["link", "set", "nchshim", "up"]);
    h.ip(&[
        "route",
        "add",
        &format!("{addr}/32"),
        "dev",
        "nchshim",
        "src",
        &shim.to_string(),
    ]);
    let got = retry(3, Duration::from_millis(200), || curl(h, addr, 8080, 2))
        .unwrap_or_else(|e| panic!("the host -> {addr}: {e}"));
    assert_eq!(got, "hello from the host's side\n");
    let routes = w
        .router(0)
        .ip(&["route", "show", "table", &TABLE.to_string()]);
    assert!(routes.contains("169.254.0.0/16 dev lan0"), "{routes}");
    h.ip(&["link", "del", "nchshim"]);
    drop(svc);
}

/// The check itself: on a kernel without ipvlan the error is the one the driver's hint
/// and `doctor` explain; with it, the scratch link is made and removed with its namespace.
#[test]
fn the_capability_check_says_what_the_kernel_lacks() {
    require_root!();
    match bed::ipvlan_support() {
        Ok(()) => println!("this kernel supports ipvlan"),
        Err(why) => {
            println!("this kernel has no ipvlan: {why}");
            assert!(
                why.contains("Unknown device type") || why.contains("not supported"),
                "unexpected failure creating an ipvlan: {why}"
            );
        }
    }
}
