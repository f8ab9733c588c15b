//! Integration tests of the agent's data plane (nftables DNAT, reply routing, the LAN
//! forward filter, counters, clean-up), in network namespaces. Root only (`require_root!`
//! skips otherwise, fails under CI).
//!
//! Each test builds its own world:
//!
//! ```text
//!  LAN client 192.0.2.10 ─┐
//!  (gateway 192.0.2.254 ──┤ ── 203.0.113.2, test 3)
//!                 br0 192.0.2.1 + dnsmasq ── host eth0 ── macvlan lan0 [router ns, agent]
//!                                                                   eth0 198.51.100.1
//!                                                                     │ bridge (segment ns)
//!                                       service host 198.51.100.2 ────┤
//!                                       service host 198.51.100.3 ────┘ (tests 4, 5)
//! ```
//!
//! The agent runs in the router namespace (`ip_forward=1` there) and binds `lan0` from
//! dnsmasq; the driver (`netcontainer agent apply/status`) runs on the host. Service hosts
//! route their default via the router, so a reply path to the LAN exists and only the
//! agent's rules decide what the LAN reaches. Guards delete every namespace and kill every
//! server (by pid, or by stopping its thread) on drop, also when a test fails.

use netcontainer_proto::contract;
use netcontainer_proto::contract::LAN_IF;
use netcontainer_tests::service::{
    self, BannerServer, HttpServer, LAN_GATEWAY, RawForward, RawResponse, UdpEcho, curl, ping,
    retry, tcp_fetch, udp_echo,
};
use netcontainer_tests::*;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

const S: Duration = Duration::from_secs(1);
const SVC1: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const SVC2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
/// The routing table of the agent's `ip rule`s.
const TABLE: u32 = contract::ROUTE_TABLE;

struct World {
    // Field order = drop order: agent, temp dir, service side, DHCP server, LAN.
    agent: Agent,
    _tmp: TempDir,
    svc: ServiceNet,
    dnsmasq: Dnsmasq,
    lan: Lan,
    client: Arc<Netns>,
    routed: Option<RoutedNet>,
}

struct WorldOpts {
    service_hosts: Vec<u8>,
    routed: bool,
    /// The agent's extra flags.
    agent_args: Vec<&'static str>,
}

impl Default for WorldOpts {
    fn default() -> Self {
        WorldOpts {
            service_hosts: vec![2],
            routed: false,
            agent_args: Vec::new(),
        }
    }
}

impl World {
    /// Bed, dnsmasq, a LAN client 192.0.2.10, service hosts, and a running agent without
    /// a plan yet.
    fn new(opts: WorldOpts) -> World {
        let mut lan = Lan::with_router();
        let mut dopts = DnsmasqOpts::default();
        if opts.routed {
            dopts.router = LAN_GATEWAY;
        }
        let dnsmasq = Dnsmasq::start(&lan.lan, dopts);
        let client = lan.add_client(10);
        let routed = opts.routed.then(|| RoutedNet::attach(&mut lan));
        let mut svc = ServiceNet::attach(lan.router());
        for o in opts.service_hosts {
            svc.add_host(o);
        }
        let tmp = TempDir::new("fwd");
        let agent = Agent::start_with_args(lan.router(), tmp.path(), &opts.agent_args);
        World {
            agent,
            _tmp: tmp,
            svc,
            dnsmasq,
            lan,
            client,
            routed,
        }
    }

    fn router(&self) -> &Arc<Netns> {
        self.lan.router()
    }

    fn host(&self, i: usize) -> &Arc<Netns> {
        &self.svc.hosts[i]
    }

    /// `agent apply --interface lan0 --forward ... --wait 15`, asserting success; returns
    /// the leased address.
    fn apply(&self, forwards: &[&str]) -> Ipv4Addr {
        let mut args = ApplyArgs::new(LAN_IF).wait(15);
        for f in forwards {
            args = args.forward(f);
        }
        let out = self.agent.apply(&args);
        assert!(out.ok(), "agent apply {forwards:?} failed: {out}");
        out.address()
            .unwrap_or_else(|| panic!("apply printed no address: {out}"))
    }

    /// `agent status --json`'s forwards as (public port, target, packets, bytes).
    fn counters(&self) -> Vec<(u64, String, u64, u64)> {
        let st = self.agent.status();
        st.forwards
            .iter()
            .map(|f| {
                (
                    f["public_port"].as_u64().expect("public_port"),
                    format!(
                        "{}:{}",
                        f["target_address"].as_str().expect("target_address"),
                        f["target_port"]
                    ),
                    f["packets"].as_u64().expect("packets"),
                    f["bytes"].as_u64().expect("bytes"),
                )
            })
            .collect()
    }
}

/// curl from `ns` to `addr:port` with 2 s per try, 3 tries (the first SYN may meet a
/// neighbour that is still resolving).
fn fetch(ns: &Netns, addr: Ipv4Addr, port: u16) -> String {
    retry(3, Duration::from_millis(200), || curl(ns, addr, port, 2))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A TCP connection from `ns` to `addr:port` must not get through (1.5 s timeout, two
/// tries); returns the error text for the message.
fn assert_unreachable(ns: &Netns, addr: Ipv4Addr, port: u16, what: &str) {
    for _ in 0..2 {
        if let Ok(got) = tcp_fetch(ns, addr, port, Duration::from_millis(1500)) {
            panic!("{what}: {addr}:{port} answered from {}: {got:?}", ns.name());
        }
    }
}

/// A reachability probe: true if it got an answer.
type Probe<'a> = Box<dyn Fn() -> bool + Sync + 'a>;

/// Whether a TCP connection from `ns` to `addr:port` gets an answer (1.5 s timeout, two
/// tries).
fn reached(ns: &Netns, addr: Ipv4Addr, port: u16) -> bool {
    (0..2).any(|_| tcp_fetch(ns, addr, port, Duration::from_millis(1500)).is_ok())
}

/// Every array or object inside `v`, depth first.
fn walk<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(v);
    match v {
        Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
        Value::Object(o) => o.values().for_each(|x| walk(x, out)),
        _ => {}
    }
}

/// Numbers inside `v`, except those of `{"range": [a, b]}` objects.
fn numbers_outside_ranges(v: &Value, out: &mut Vec<u64>) {
    match v {
        Value::Number(n) => out.extend(n.as_u64()),
        Value::Array(a) => a.iter().for_each(|x| numbers_outside_ranges(x, out)),
        Value::Object(o) if !o.contains_key("range") => {
            o.values().for_each(|x| numbers_outside_ranges(x, out))
        }
        _ => {}
    }
}

fn contains(v: &Value, pred: impl Fn(&Value) -> bool) -> bool {
    let mut all = Vec::new();
    walk(v, &mut all);
    all.into_iter().any(pred)
}

/// 1. HTTP (busybox httpd on 198.51.100.2:8080) and UDP (echo on 198.51.100.2:5353) are
///    reached from a LAN client through the leased address; an unforwarded port of the
///    leased address does not reach the service.
#[test]
fn lan_client_reaches_http_and_udp_services_through_the_leased_address() {
    require_root!();
    if let Err(e) = service::need(&["curl", "busybox"]) {
        panic!("{e}");
    }
    let w = World::new(WorldOpts::default());
    let _http = HttpServer::start(w.host(0), 8080, "hello from service one\n");
    let _echo = UdpEcho::start(w.host(0), 5353);
    let _other = BannerServer::start(w.host(0), [8081], "unforwarded");
    let addr = w.apply(&["tcp:80=198.51.100.2:8080", "udp:5353=198.51.100.2:5353"]);

    assert_eq!(fetch(&w.client, addr, 80), "hello from service one\n");
    let reply = udp_echo(&w.client, addr, 5353, b"echo through dnat", S, 3)
        .unwrap_or_else(|e| panic!("udp via {addr}:5353: {e}"));
    assert_eq!(reply, b"echo through dnat");
    // A second connection and datagram (new conntrack entries) work as well.
    assert_eq!(fetch(&w.client, addr, 80), "hello from service one\n");
    assert_eq!(
        udp_echo(&w.client, addr, 5353, b"second", S, 3).as_deref(),
        Ok(&b"second"[..])
    );
    // Ports that are not forwarded: nothing behind the router answers.
    assert!(
        curl(&w.client, addr, 8080, 1).is_err(),
        "8080 is not forwarded"
    );
    assert_unreachable(
        &w.client,
        addr,
        8081,
        "unforwarded port of the leased address",
    );
    assert!(w.agent.status().last_error.is_none());
}

/// 2. A range forward reaches every port of the range (each server names its port), is
///    one interval element in one map, used by exactly one DNAT rule.
#[test]
fn port_range_forward_is_one_rule_and_serves_every_port() {
    require_root!();
    let w = World::new(WorldOpts::default());
    let _servers = BannerServer::start(w.host(0), 7000..=7010, "svc");
    let addr = w.apply(&["tcp:7000-7009=198.51.100.2:7000"]);

    for port in 7000..=7009u16 {
        let got = retry(3, Duration::from_millis(100), || {
            tcp_fetch(&w.client, addr, port, 2 * S)
        })
        .unwrap_or_else(|e| panic!("port {port}: {e}"));
        assert_eq!(got, format!("svc {port}\n"), "port {port}");
    }
    assert_unreachable(&w.client, addr, 7010, "port past the range");
    assert_unreachable(&w.client, addr, 6999, "port before the range");

    let table = service::nft_table(w.router()).expect("table ip netcontainer");
    let items = table["nftables"].as_array().expect("nftables array");
    let is_range = |v: &Value| v["range"] == serde_json::json!([7000, 7009]);
    // The maps/sets holding the range as one interval element.
    let holders: Vec<&Value> = items
        .iter()
        .filter_map(|i| i.get("map").or_else(|| i.get("set")))
        .filter(|m| contains(&m["elem"], is_range))
        .collect();
    assert!(!holders.is_empty(), "no map holds the range: {table}");
    // No map or set was expanded to single ports of the range.
    for m in items
        .iter()
        .filter_map(|i| i.get("map").or_else(|| i.get("set")))
    {
        let mut singles = Vec::new();
        numbers_outside_ranges(&m["elem"], &mut singles);
        assert!(
            !singles.iter().any(|p| (7000..=7009).contains(p)),
            "range expanded into single ports: {m}"
        );
    }
    let dnat_rules: Vec<&Value> = items
        .iter()
        .filter_map(|i| i.get("rule"))
        .filter(|r| contains(&r["expr"], |e| e.get("dnat").is_some()))
        .collect();
    assert_eq!(dnat_rules.len(), 1, "DNAT rules: {dnat_rules:#?}");
    let dnat_maps: Vec<&&Value> = holders
        .iter()
        .filter(|m| {
            let name = format!("@{}", m["name"].as_str().unwrap_or_default());
            contains(&dnat_rules[0]["expr"], |e| e.as_str() == Some(&name))
        })
        .collect();
    assert_eq!(
        dnat_maps.len(),
        1,
        "the DNAT rule does not use the map of the range: {:#?} / {holders:#?}",
        dnat_rules[0]
    );
    let elems = dnat_maps[0]["elem"].as_array().expect("elements");
    assert_eq!(elems.len(), 1, "one interval element: {}", dnat_maps[0]);
}

/// 3. A client on 203.0.113.0/24 behind a LAN gateway (192.0.2.254, the DHCP router
///    option) reaches the service: the replies leave by the lease's gateway, although the
///    router's main default route points at the service side (as a Docker router's points
///    at Docker's gateway). The LAN client works as well.
///
///    That main-table route is also what lets the client in at all: the agent sets loose
///    reverse-path filtering (rp_filter=2), which drops a source the main table has no
///    route to (the check runs after DNAT, without the agent's mark).
#[test]
fn routed_client_on_another_subnet_reaches_the_service() {
    require_root!();
    let w = World::new(WorldOpts {
        routed: true,
        ..WorldOpts::default()
    });
    let _http = HttpServer::start(w.host(0), 8080, "hello from service one\n");
    let addr = w.apply(&["tcp:80=198.51.100.2:8080"]);
    let st = w.agent.wait_bound(5 * S);
    assert_eq!(st.lease.unwrap().gateway, Some(LAN_GATEWAY));
    let svc_gateway = Ipv4Addr::new(198, 51, 100, 254);
    w.router()
        .ip(&["route", "add", "default", "via", &svc_gateway.to_string()]);
    let rp = w
        .router()
        .exec_ok(&["sysctl", "-n", "net.ipv4.conf.all.rp_filter"]);
    assert_eq!(
        rp.trim(),
        "2",
        "the agent sets loose reverse-path filtering"
    );

    let routed = w.routed.as_ref().unwrap();
    assert_eq!(fetch(&routed.client, addr, 80), "hello from service one\n");
    assert_eq!(fetch(&w.client, addr, 80), "hello from service one\n");
    // And again from the routed client (a new connection, a new conntrack entry).
    assert_eq!(fetch(&routed.client, addr, 80), "hello from service one\n");
}

/// 4. Isolation: a LAN client routing 198.51.100.0/24 via the leased address reaches the
///    published port through the leased address only: not the service's other ports, not
///    its published port directly, not a second host, no ping. A control shows that the
///    path exists (the service side reaches the LAN client and gets its answers), so it is
///    the agent's forward filter that stops the LAN.
#[test]
fn lan_client_reaches_nothing_else_behind_the_router() {
    require_root!();
    let w = World::new(WorldOpts {
        service_hosts: vec![2, 3],
        ..WorldOpts::default()
    });
    let _http1 = HttpServer::start(w.host(0), 8080, "hello from service one\n");
    let _b1 = BannerServer::start(w.host(0), [9999], "svc1-private");
    let _u1 = UdpEcho::start(w.host(0), 5353);
    let _http2 = HttpServer::start(w.host(1), 8080, "hello from service two\n");
    let _b2 = BannerServer::start(w.host(1), [9999], "svc2-private");
    let addr = w.apply(&["tcp:80=198.51.100.2:8080"]);
    w.client
        .ip(&["route", "add", "198.51.100.0/24", "via", &addr.to_string()]);

    // The published port works, with the route in place: replies of DNATed connections
    // go back out lan0 (the service hosts' default route is the router).
    assert_eq!(fetch(&w.client, addr, 80), "hello from service one\n");
    // Control: the service hosts answer each other.
    assert_eq!(
        tcp_fetch(w.host(1), SVC1, 9999, 2 * S).as_deref(),
        Ok("svc1-private 9999\n"),
        "control: the private port of service 1 answers on the service side"
    );
    assert!(
        ping(w.host(1), SVC1, 1),
        "control: ping on the service side"
    );

    // The probes run in parallel (each bounded by 1.5 s, TCP ones tried twice).
    let c = &w.client;
    let probes: Vec<(&str, Probe)> = vec![
        (
            "tcp 198.51.100.2:9999 (unpublished port)",
            Box::new(|| reached(c, SVC1, 9999)),
        ),
        (
            "tcp 198.51.100.2:8080 (published port, directly)",
            Box::new(|| reached(c, SVC1, 8080)),
        ),
        (
            "tcp 198.51.100.3:8080 (second host)",
            Box::new(|| reached(c, SVC2, 8080)),
        ),
        (
            "tcp 198.51.100.3:9999 (second host)",
            Box::new(|| reached(c, SVC2, 9999)),
        ),
        (
            "udp 198.51.100.2:5353 (directly)",
            Box::new(|| udp_echo(c, SVC1, 5353, b"direct", Duration::from_millis(700), 2).is_ok()),
        ),
        ("ping 198.51.100.2", Box::new(|| ping(c, SVC1, 1))),
        ("ping 198.51.100.3", Box::new(|| ping(c, SVC2, 1))),
    ];
    let through: Vec<&str> = std::thread::scope(|s| {
        let hs: Vec<_> = probes
            .iter()
            .map(|(what, f)| s.spawn(move || f().then_some(*what)))
            .collect();
        hs.into_iter().filter_map(|h| h.join().unwrap()).collect()
    });
    assert!(
        through.is_empty(),
        "the LAN client got through to: {through:?}"
    );
    // Still fine through the leased address afterwards.
    assert_eq!(fetch(&w.client, addr, 80), "hello from service one\n");
}

/// 4b. The router is no gateway from the service side onto the LAN: service hosts whose
///     default route is the router reach no LAN host over TCP or UDP, with their own or a
///     spoofed LAN source, while replies of DNATed connections still leave through lan0.
///     Control: once the agent's table is gone the same knock arrives (so the route
///     exists and the counter counts).
#[test]
fn service_side_reaches_nothing_on_the_lan() {
    require_root!();
    let w = World::new(WorldOpts {
        service_hosts: vec![2, 3],
        ..WorldOpts::default()
    });
    let _http = HttpServer::start(w.host(0), 8080, "hello from service one\n");
    let addr = w.apply(&["tcp:80=198.51.100.2:8080"]);
    let client = Ipv4Addr::new(192, 0, 2, 10);
    let arrivals = isolation::Arrivals::start(&w.client, 9000);
    let spoofed = Ipv4Addr::new(192, 0, 2, 77);
    w.host(1)
        .ip(&["addr", "add", &format!("{spoofed}/32"), "dev", "eth0"]);
    isolation::knock(w.host(0), None, client, 9000);
    isolation::knock(w.host(1), None, client, 9000);
    isolation::knock(w.host(1), Some(spoofed), client, 9000);
    assert_eq!(
        arrivals.count(),
        0,
        "packets from the service side reached the LAN client through the router"
    );
    // Replies of DNATed connections still pass.
    assert_eq!(fetch(&w.client, addr, 80), "hello from service one\n");

    // Control: without the agent's table, the same knock arrives.
    w.router()
        .exec_ok(&["nft", "delete", "table", "ip", contract::NFT_TABLE]);
    isolation::knock(w.host(1), None, client, 9000);
    assert!(
        arrivals.count() > 0,
        "control: without the agent's rules the knock should arrive"
    );
}

/// 4d. Gateway mode's egress allow-list (`--egress`): the service's own connections reach
///     the allowed LAN host (192.0.2.10/32) through the router and nothing else (192.0.2.11
///     gets no packet), while the LAN still reaches the service. Control: without the
///     agent's table the knock on the other host arrives.
#[test]
fn gateway_egress_allow_list_drops_what_it_does_not_name() {
    require_root!();
    let mut w = World::new(WorldOpts {
        agent_args: vec!["--egress", "192.0.2.10/32,198.51.100.128/25"],
        ..WorldOpts::default()
    });
    let other = w.lan.add_client(11);
    let _http = HttpServer::start(w.host(0), 8080, "hello from service one\n");
    let args = ApplyArgs::new(LAN_IF)
        .wait(15)
        .forward("tcp:80=198.51.100.2:8080")
        .gateway_for("198.51.100.2");
    let out = w.agent.apply(&args);
    assert!(out.ok(), "agent apply (gateway mode) failed: {out}");
    let addr = out.address().expect("an address");
    let allowed = Ipv4Addr::new(192, 0, 2, 10);
    let denied = Ipv4Addr::new(192, 0, 2, 11);
    let to_allowed = isolation::Arrivals::start(&w.client, 9000);
    let to_denied = isolation::Arrivals::start(&other, 9000);
    for _ in 0..2 {
        isolation::knock(w.host(0), None, allowed, 9000);
        isolation::knock(w.host(0), None, denied, 9000);
    }
    assert!(
        to_allowed.count() > 0,
        "the allowed LAN host got nothing from the service\n{}",
        w.agent.log()
    );
    assert_eq!(
        to_denied.count(),
        0,
        "a LAN host outside the allow-list got the service's packets"
    );
    // The LAN still reaches the service (replies are not egress).
    assert_eq!(fetch(&w.client, addr, 80), "hello from service one\n");
    // Control: without the agent's table the same knock arrives.
    w.router()
        .exec_ok(&["nft", "delete", "table", "ip", contract::NFT_TABLE]);
    isolation::knock(w.host(0), None, denied, 9000);
    assert!(
        to_denied.count() > 0,
        "control: the knock should arrive without the rules"
    );
}

/// 4c. Without a lease (here: before the first, the server's replies dropped) the router
///     forwards nothing from the LAN: a LAN host that sends to the router's MAC for the
///     service's address directly reaches nothing, although forwarding is on, reverse-path
///     filtering is off and the router has a route back (as a Docker router does, by
///     Docker's gateway). Control: without the agent's table the same knock arrives.
#[test]
fn without_a_lease_the_lan_reaches_nothing_behind_the_router() {
    require_root!();
    let w = World::new(WorldOpts {
        service_hosts: vec![2, 3],
        ..WorldOpts::default()
    });
    // dnsmasq's replies never reach the router: it stays without a lease.
    let _block = rogue::IngressDrop::new(&w.lan.host, "eth0", &["udp sport 67".to_string()]);
    // A route back to the LAN client for loose reverse-path filtering, as Docker's
    // default route gives a real router.
    w.router()
        .ip(&["route", "add", "default", "via", "198.51.100.3"]);
    let out = w
        .agent
        .apply(&ApplyArgs::new(LAN_IF).forward("tcp:80=198.51.100.2:8080"));
    assert!(out.ok(), "apply: {out}");
    let up = wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
        w.router()
            .ip(&["-j", "link", "show", LAN_IF])
            .contains("\"UP\"")
    });
    assert!(up, "lan0 never came up");
    assert!(w.agent.status().lease.is_none(), "a lease came through");
    let link: Value =
        serde_json::from_str(&w.router().ip(&["-j", "link", "show", LAN_IF])).unwrap();
    let mac = link[0]["address"].as_str().unwrap().to_string();
    // The LAN client sends straight to the router's MAC for the service's address.
    w.client
        .ip(&["route", "add", "198.51.100.0/24", "dev", "eth0"]);
    w.client.ip(&[
        "neigh",
        "replace",
        "198.51.100.2",
        "lladdr",
        &mac,
        "dev",
        "eth0",
        "nud",
        "permanent",
    ]);
    // The kernel already refuses to forward from an interface without an address
    // while reverse-path filtering is on (the agent sets it loose); the table must
    // isolate on its own, so the test turns the filter off.
    for k in ["all", LAN_IF] {
        w.router().exec_ok(&[
            "sysctl",
            "-q",
            "-w",
            &format!("net.ipv4.conf.{k}.rp_filter=0"),
        ]);
    }
    let arrivals = isolation::Arrivals::start(w.host(0), 9000);
    isolation::knock(&w.client, None, SVC1, 9000);
    assert_eq!(
        arrivals.count(),
        0,
        "the LAN reached the service side through a router without a lease"
    );
    // Control: without the agent's table, the same knock arrives.
    w.router()
        .exec_ok(&["nft", "delete", "table", "ip", contract::NFT_TABLE]);
    isolation::knock(&w.client, None, SVC1, 9000);
    assert!(
        arrivals.count() > 0,
        "control: without the agent's rules the knock should arrive"
    );
}

/// 5. Re-applying with a new target switches the next connection at once; a plan with an
///    invalid target is refused by the driver, an overlapping or port-0 plan sent to the
///    agent directly is refused by the agent, and the rules in place keep serving.
#[test]
fn reapply_switches_target_and_invalid_plans_change_nothing() {
    require_root!();
    let w = World::new(WorldOpts {
        service_hosts: vec![2, 3],
        ..WorldOpts::default()
    });
    let _http1 = HttpServer::start(w.host(0), 8080, "hello from service one\n");
    let _http2 = HttpServer::start(w.host(1), 8080, "hello from service two\n");
    let _udp1 = UdpEcho::tagged(w.host(0), 5353, "one:");
    let _udp2 = UdpEcho::tagged(w.host(1), 5353, "two:");
    let addr = w.apply(&["tcp:80=198.51.100.2:8080", "udp:5353=198.51.100.2:5353"]);
    assert_eq!(fetch(&w.client, addr, 80), "hello from service one\n");
    // One UDP socket for the whole test: one source port, one conntrack entry, which
    // outlives the re-apply unless the agent flushes flows to the old target.
    let udp = service::udp_socket_in(&w.client, addr, 5353);
    assert_eq!(
        service::udp_exchange(&udp, b"a", 3).as_deref(),
        Ok(&b"one:a"[..])
    );

    // New target: the very next connection (one try) gets the new page, and the next
    // datagram of the same UDP flow goes to the new target.
    assert_eq!(
        w.apply(&["tcp:80=198.51.100.3:8080", "udp:5353=198.51.100.3:5353"]),
        addr
    );
    assert_eq!(
        curl(&w.client, addr, 80, 2).as_deref(),
        Ok("hello from service two\n")
    );
    assert_eq!(
        service::udp_exchange(&udp, b"b", 1).as_deref(),
        Ok(&b"two:b"[..]),
        "the UDP flow still goes to the old target after the re-apply"
    );

    // Refused by the driver (not an IPv4 address): exit != 0, one "error:" line.
    let out = w
        .agent
        .apply(&ApplyArgs::new(LAN_IF).forward("tcp:80=198.51.100.999:80"));
    assert!(!out.ok(), "an invalid target was accepted: {out}");
    assert!(out.stderr.contains("error:"), "{out}");
    assert_eq!(fetch(&w.client, addr, 80), "hello from service two\n");

    // Refused by the agent itself (hand-made requests, past the driver's checks). First a
    // valid one, the plan in place, to show the encoding is understood.
    let sock = w.agent.socket();
    let current = RawForward {
        udp: false,
        port: 80,
        port_end: 80,
        target: SVC2,
        target_port: 8080,
    };
    let current_udp = RawForward {
        udp: true,
        port: 5353,
        port_end: 5353,
        target_port: 5353,
        ..current
    };
    assert_eq!(
        service::raw_apply(sock, LAN_IF, &[current, current_udp]),
        Ok(RawResponse::Applied)
    );
    let overlapping = [
        RawForward {
            target: SVC1,
            ..current
        },
        RawForward {
            port: 79,
            port_end: 81,
            target: SVC1,
            ..current
        },
    ];
    match service::raw_apply(sock, LAN_IF, &overlapping) {
        Ok(RawResponse::Error(e)) => assert!(e.contains("overlap"), "{e}"),
        other => panic!("overlapping plan: {other:?}"),
    }
    let port0 = [RawForward {
        port: 0,
        port_end: 0,
        target: SVC1,
        ..current
    }];
    match service::raw_apply(sock, LAN_IF, &port0) {
        Ok(RawResponse::Error(e)) => assert!(e.contains("port 0"), "{e}"),
        other => panic!("port-0 plan: {other:?}"),
    }
    assert_eq!(fetch(&w.client, addr, 80), "hello from service two\n");
    let st = w.agent.status();
    assert_eq!(st.address(), Some(addr), "the lease changed: {:?}", st.raw);
    let fw: Vec<(u64, String)> = w.counters().into_iter().map(|c| (c.0, c.1)).collect();
    assert_eq!(
        fw,
        vec![
            (80, "198.51.100.3:8080".to_string()),
            (5353, "198.51.100.3:5353".to_string())
        ]
    );
    assert_eq!(
        service::udp_exchange(&udp, b"c", 3).as_deref(),
        Ok(&b"two:c"[..])
    );
    assert!(st.last_error.is_none(), "{:?}", st.last_error);
}

/// 6. Per-forward packets and bytes in `agent status --json` rise with traffic.
#[test]
fn status_counters_rise_with_traffic() {
    require_root!();
    let w = World::new(WorldOpts::default());
    let page = "x".repeat(4000) + "\n";
    let _http = HttpServer::start(w.host(0), 8080, &page);
    let _echo = UdpEcho::start(w.host(0), 5353);
    let addr = w.apply(&["tcp:80=198.51.100.2:8080", "udp:5353=198.51.100.2:5353"]);
    let before = w.counters();
    assert_eq!(before.len(), 2, "{before:?}");

    for _ in 0..3 {
        assert_eq!(fetch(&w.client, addr, 80), page);
    }
    let after3 = w.counters();
    let tcp = |c: &Vec<(u64, String, u64, u64)>| c.iter().find(|f| f.0 == 80).unwrap().clone();
    let udp = |c: &Vec<(u64, String, u64, u64)>| c.iter().find(|f| f.0 == 5353).unwrap().clone();
    let t3 = tcp(&after3);
    assert!(t3.2 > 0 && t3.3 > 0, "no tcp traffic counted: {after3:?}");
    // Both directions: at least the three pages went through.
    assert!(t3.3 >= 3 * 4000, "tcp bytes {} < 3 pages: {after3:?}", t3.3);
    assert_eq!(udp(&after3).2, udp(&before).2, "udp counted tcp traffic");

    for _ in 0..3 {
        assert_eq!(fetch(&w.client, addr, 80), page);
    }
    udp_echo(&w.client, addr, 5353, b"count me", S, 3).unwrap_or_else(|e| panic!("{e}"));
    let after6 = w.counters();
    let t6 = tcp(&after6);
    assert!(
        t6.2 > t3.2 && t6.3 >= t3.3 + 3 * 4000,
        "tcp counters did not rise: {after3:?} -> {after6:?}"
    );
    let u6 = udp(&after6);
    assert!(
        u6.2 >= 2 && u6.3 > 0,
        "udp request and reply not counted: {after6:?}"
    );
}

/// 7. SIGTERM: the agent removes its table and `ip rule`s, releases the lease (dnsmasq
///    drops it), and the address leaves lan0.
#[test]
fn sigterm_removes_table_rules_and_releases_the_lease() {
    require_root!();
    let mut w = World::new(WorldOpts::default());
    let _http = HttpServer::start(w.host(0), 8080, "hello from service one\n");
    let addr = w.apply(&["tcp:80=198.51.100.2:8080"]);
    assert_eq!(fetch(&w.client, addr, 80), "hello from service one\n");
    // What must go away is there now.
    assert!(
        service::nft_tables(w.router()).contains(&contract::NFT_TABLE.to_string()),
        "{:?}",
        service::nft_tables(w.router())
    );
    let rules = service::ip_rules_for_table(w.router(), TABLE);
    assert_eq!(rules.len(), 2, "fwmark and from-lease rules: {rules:?}");
    assert!(
        w.dnsmasq.lease_of(addr).is_some(),
        "{:?}",
        w.dnsmasq.leases()
    );

    let st = w.agent.terminate(5 * S);
    assert!(
        st.is_some_and(|s| s.success()),
        "agent did not exit cleanly on SIGTERM: {st:?}\n{}",
        w.agent.log()
    );
    let tables = service::nft_tables(w.router());
    assert!(
        !tables.contains(&contract::NFT_TABLE.to_string()),
        "table left behind: {tables:?}"
    );
    let rules = service::ip_rules_for_table(w.router(), TABLE);
    assert!(rules.is_empty(), "ip rules left behind: {rules:?}");
    let routes = w
        .router()
        .ip(&["route", "show", "table", &TABLE.to_string()]);
    assert!(routes.trim().is_empty(), "routes left in table: {routes}");
    assert!(!has_addr(w.router(), LAN_IF, addr), "{addr} still on lan0");
    assert!(
        wait_until(3 * S, Duration::from_millis(20), || w
            .dnsmasq
            .lease_of(addr)
            .is_none()),
        "dnsmasq still has the lease: {:?}",
        w.dnsmasq.leases()
    );
    assert!(
        curl(&w.client, addr, 80, 1).is_err(),
        "still forwarding after SIGTERM"
    );
}
