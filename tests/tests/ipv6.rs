//! IPv6 on the LAN: the agent's IPv6 family task in network namespaces, against real
//! servers (radvd, ISC Kea DHCPv6, dnsmasq doing RA plus DHCPv6). Root only.
//!
//! The bed is the LAN bed of the lease tests (`Lan`) with 2001:db8:1::1/64 on br0
//! (documentation prefix only, `netcontainer_tests::v6`). The agent gets a plan with
//! `--ipv6 auto` (the default) and no DHCPv4 server runs unless a test says so, so the
//! plan is applied without waiting for an IPv4 lease and the tests poll the IPv6
//! addresses of lan0 and the agent's status.
//!
//! Timings: Kea with a valid lifetime of 8 s (renew 3 s, rebind 5 s) keeps the
//! renew/rebind/expiry test in seconds; dnsmasq (two minutes at least) and radvd only
//! show addresses, names and lifetimes.

use netcontainer_proto::contract;
use netcontainer_proto::contract::LAN_IF;
use netcontainer_tests::service::curl;
use netcontainer_tests::v6::*;
use netcontainer_tests::*;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(50);

struct World {
    // Field order = drop order: the agent first, then the temp dir, then the bed.
    agent: Agent,
    _tmp: TempDir,
    lan: Lan,
}

impl World {
    fn new() -> World {
        Self::with_agent_args(&[])
    }

    fn with_agent_args(extra: &[&str]) -> World {
        let lan = Lan::with_router();
        lan_v6(&lan.lan);
        let tmp = TempDir::new("ipv6");
        let agent = Agent::start_with_args(lan.router(), tmp.path(), extra);
        World {
            agent,
            _tmp: tmp,
            lan,
        }
    }

    /// `agent apply --interface lan0 [--hostname NAME]` without waiting for IPv4.
    fn apply(&self, hostname: Option<&str>) {
        let mut args = ApplyArgs::new(LAN_IF);
        if let Some(h) = hostname {
            args = args.hostname(h);
        }
        let out = self.agent.apply(&args);
        assert!(out.ok(), "agent apply failed: {out}");
    }

    fn addrs(&self) -> Vec<Addr6> {
        addrs6(self.lan.router(), LAN_IF)
    }

    fn mac(&self) -> String {
        mac_of(self.lan.router(), LAN_IF)
    }

    /// Waits (bounded) for a global address on lan0 that `f` accepts.
    fn wait_addr(&self, timeout: Duration, f: impl Fn(&Addr6) -> bool) -> Addr6 {
        wait_for(timeout, POLL, || self.addrs().into_iter().find(|a| f(a))).unwrap_or_else(|| {
            panic!(
                "no such IPv6 address on lan0 within {timeout:?}: {:?}\n{}",
                self.addrs(),
                self.agent.log()
            )
        })
    }

    /// The agent's status `ipv6` list as (address, prefix, origin).
    fn status6(&self) -> Vec<(Ipv6Addr, u64, String)> {
        let v = self.agent.status_json().expect("status");
        v["ipv6"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    a["address"].as_str().unwrap().parse().unwrap(),
                    a["prefix_len"].as_u64().unwrap(),
                    a["origin"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

fn in_pool(a: Ipv6Addr) -> bool {
    (u128::from(POOL_FIRST)..=u128::from(POOL_LAST)).contains(&u128::from(a))
}

#[test]
fn slaac_from_radvd_with_lifetimes_and_default_route() {
    require_root!();
    let w = World::new();
    let _radvd = Radvd::start(&w.lan.lan, RadvdOpts::default());
    let started = Instant::now();
    w.apply(None);
    let want = slaac_of(&w.mac());
    let a = w.wait_addr(10 * S, |a| a.address == want);
    let took = started.elapsed();
    assert_eq!(a.prefix_len, 64);
    // radvd: valid 600 s, preferred 300 s.
    assert!(a.valid.is_some_and(|v| (590..=600).contains(&v)), "{a:?}");
    assert!(
        a.preferred.is_some_and(|p| (290..=300).contains(&p)),
        "{a:?}"
    );
    assert_eq!(
        w.addrs().len(),
        1,
        "only the SLAAC address: {:?}",
        w.addrs()
    );
    assert!(
        wait_until(5 * S, POLL, || default_routes6(w.lan.router())
            .iter()
            .any(|g| g.segments()[0] == 0xfe80)),
        "no IPv6 default route via the router's link-local address"
    );
    assert!(
        w.status6().contains(&(want, 64, "slaac".into())),
        "{:?}",
        w.status6()
    );
    eprintln!("SLAAC address after {took:?}");
}

#[test]
fn dhcpv6_ia_na_from_kea_with_lifetimes() {
    require_root!();
    let w = World::new();
    let kea = Kea6::start(&w.lan.lan, Kea6Opts::default());
    let _radvd = Radvd::start(
        &w.lan.lan,
        RadvdOpts {
            managed: true,
            other: true,
            autonomous: false,
            ..RadvdOpts::default()
        },
    );
    let started = Instant::now();
    w.apply(Some("web6"));
    let a = w.wait_addr(15 * S, |a| in_pool(a.address));
    eprintln!("DHCPv6 address after {:?}", started.elapsed());
    // On-link /64 from the RA's L flag; Kea: valid 600, preferred 300.
    assert_eq!(a.prefix_len, 64, "{a:?}");
    assert!(a.valid.is_some_and(|v| (590..=600).contains(&v)), "{a:?}");
    assert!(
        a.preferred.is_some_and(|p| (290..=300).contains(&p)),
        "{a:?}"
    );
    assert_eq!(
        w.addrs().len(),
        1,
        "no SLAAC without the A flag: {:?}",
        w.addrs()
    );
    let l = kea.lease_of(a.address).expect("Kea has the lease");
    assert!(l.valid_lifetime > 0, "{l:?}");
    // DUID-LL of lan0's MAC: type 3, hardware type 1.
    let duid = format!("00:03:00:01:{}", w.mac());
    assert_eq!(l.duid, duid, "{l:?}");
    assert!(
        w.status6().contains(&(a.address, 64, "dhcpv6".into())),
        "{:?}",
        w.status6()
    );
}

/// O without M: SLAAC for the address and a DHCPv6 Information-request for the rest;
/// no IA_NA asked for.
#[test]
fn other_flag_alone_is_stateless_dhcpv6() {
    require_root!();
    let w = World::new();
    let kea = Kea6::start(&w.lan.lan, Kea6Opts::default());
    let _radvd = Radvd::start(
        &w.lan.lan,
        RadvdOpts {
            other: true,
            ..RadvdOpts::default()
        },
    );
    w.apply(None);
    let want = slaac_of(&w.mac());
    w.wait_addr(10 * S, |a| a.address == want);
    assert!(
        wait_until(10 * S, POLL, || kea.received("INFORMATION_REQUEST") > 0),
        "no Information-request:\n{}",
        w.agent.log()
    );
    assert!(
        wait_until(5 * S, POLL, || w
            .agent
            .log()
            .contains("DHCPv6 other configuration")),
        "no Reply taken"
    );
    assert_eq!(kea.received("SOLICIT"), 0);
    assert_eq!(w.addrs().len(), 1, "{:?}", w.addrs());
}

/// A server that allows Rapid Commit answers the Solicit with the Reply: no Request.
#[test]
fn rapid_commit_with_kea() {
    require_root!();
    let w = World::new();
    let kea = Kea6::start(
        &w.lan.lan,
        Kea6Opts {
            rapid_commit: true,
            ..Kea6Opts::default()
        },
    );
    let _radvd = Radvd::start(
        &w.lan.lan,
        RadvdOpts {
            managed: true,
            autonomous: false,
            ..RadvdOpts::default()
        },
    );
    let started = Instant::now();
    w.apply(None);
    let a = w.wait_addr(15 * S, |a| in_pool(a.address));
    eprintln!(
        "DHCPv6 address with Rapid Commit after {:?}",
        started.elapsed()
    );
    assert!(kea.lease_of(a.address).is_some());
    assert!(kea.received("SOLICIT") > 0);
    assert_eq!(kea.received("REQUEST"), 0, "a Request despite Rapid Commit");
}

#[test]
fn renews_at_t1_rebinds_at_t2_expires_and_binds_again() {
    require_root!();
    let w = World::new();
    let mut kea = Kea6::start(&w.lan.lan, Kea6Opts::short(8, 3, 5));
    let _radvd = Radvd::start(
        &w.lan.lan,
        RadvdOpts {
            managed: true,
            autonomous: false,
            ..RadvdOpts::default()
        },
    );
    w.apply(None);
    let a = w.wait_addr(15 * S, |a| in_pool(a.address));
    let bound_at = Instant::now();
    // T1: a Renew, and the lease's expiry moves.
    let first_expire = kea.lease_of(a.address).unwrap().expire;
    assert!(
        wait_until(6 * S, POLL, || kea.received("RENEW") > 0),
        "no Renew"
    );
    assert!(
        bound_at.elapsed() < 5 * S,
        "renewed only after {:?}",
        bound_at.elapsed()
    );
    assert!(
        wait_until(3 * S, POLL, || kea.lease_of(a.address).unwrap().expire
            > first_expire),
        "Kea's expiry did not move"
    );
    // Past the first lease's valid lifetime the address is still there.
    std::thread::sleep(Duration::from_secs(9).saturating_sub(bound_at.elapsed()));
    assert!(w.addrs().iter().any(|x| x.address == a.address));

    // Server gone: Renews go unanswered, then Rebind at T2, then the address expires.
    kea.stop();
    let gone = Instant::now();
    assert!(
        wait_until(20 * S, POLL, || !w
            .addrs()
            .iter()
            .any(|x| x.address == a.address)),
        "the address outlived its lease: {:?}",
        w.addrs()
    );
    assert!(
        gone.elapsed() <= 10 * S,
        "expired only after {:?}",
        gone.elapsed()
    );
    assert!(
        w.agent.log().contains("T2, rebinding"),
        "no rebind in the agent's log"
    );
    assert!(
        wait_until(3 * S, POLL, || w.agent.log().contains("DHCPv6 lease lost")),
        "no loss in the agent's log"
    );
    assert!(w.status6().is_empty(), "status keeps {:?}", w.status6());

    // Back: a new lease (Solicit again).
    kea.restart();
    let b = w.wait_addr(20 * S, |x| in_pool(x.address));
    assert!(kea.lease_of(b.address).is_some());
}

#[test]
fn kill9_and_restart_keeps_the_address_without_solicit() {
    require_root!();
    let mut w = World::new();
    let kea = Kea6::start(&w.lan.lan, Kea6Opts::default());
    let _radvd = Radvd::start(
        &w.lan.lan,
        RadvdOpts {
            managed: true,
            autonomous: false,
            ..RadvdOpts::default()
        },
    );
    w.apply(None);
    let a = w.wait_addr(15 * S, |a| in_pool(a.address));
    let solicits = kea.received("SOLICIT");
    w.agent
        .wait_persisted(&netcontainer_proto::contract::lease6_file(LAN_IF), 5 * S);
    w.agent.kill9();
    w.agent.restart();
    // The restarted agent resumes its saved plan and Rebinds the stored lease.
    assert!(
        wait_until(10 * S, POLL, || kea.received("REBIND") > 0),
        "no Rebind after the restart:\n{}",
        w.agent.log()
    );
    assert!(
        wait_until(5 * S, POLL, || w.status6().iter().any(|s| s.0 == a.address)),
        "status lacks the address: {:?}",
        w.status6()
    );
    assert_eq!(kea.received("SOLICIT"), solicits, "a new Solicit exchange");
    assert_eq!(
        w.addrs()
            .iter()
            .filter(|x| in_pool(x.address))
            .map(|x| x.address)
            .collect::<Vec<_>>(),
        vec![a.address]
    );
}

#[test]
fn release_on_stop_shows_in_keas_memfile() {
    require_root!();
    let mut w = World::new();
    let kea = Kea6::start(&w.lan.lan, Kea6Opts::default());
    let _radvd = Radvd::start(
        &w.lan.lan,
        RadvdOpts {
            managed: true,
            autonomous: false,
            ..RadvdOpts::default()
        },
    );
    w.apply(None);
    let a = w.wait_addr(15 * S, |a| in_pool(a.address));
    assert!(!kea.is_released(a.address));
    let status = w.agent.terminate(10 * S);
    assert!(status.is_some_and(|s| s.success()), "agent exit {status:?}");
    assert!(
        wait_until(5 * S, POLL, || kea.is_released(a.address)),
        "Kea does not show the lease released: {:?}",
        kea.lease_rows()
    );
    assert!(w.addrs().is_empty(), "addresses left: {:?}", w.addrs());
}

/// A router's agent runs with `--keep-lease` (a host shutdown stops it with SIGTERM):
/// then the DHCPv6 lease is not released, as the IPv4 one is not, and the next start
/// rebinds it: the same address, no new Solicit.
#[test]
fn keep_lease_on_sigterm_keeps_the_dhcpv6_lease_too() {
    require_root!();
    let mut w = World::with_agent_args(&["--keep-lease"]);
    let kea = Kea6::start(&w.lan.lan, Kea6Opts::default());
    let _radvd = Radvd::start(
        &w.lan.lan,
        RadvdOpts {
            managed: true,
            autonomous: false,
            ..RadvdOpts::default()
        },
    );
    w.apply(None);
    let a = w.wait_addr(15 * S, |a| in_pool(a.address));
    let solicits = kea.received("SOLICIT");
    let status = w.agent.terminate(10 * S);
    assert!(status.is_some_and(|s| s.success()), "agent exit {status:?}");
    std::thread::sleep(S);
    assert_eq!(
        kea.received("RELEASE"),
        0,
        "released on SIGTERM with --keep-lease"
    );
    assert!(!kea.is_released(a.address), "{:?}", kea.lease_rows());
    w.agent.restart();
    w.apply(None);
    assert!(
        wait_until(10 * S, POLL, || w
            .status6()
            .iter()
            .any(|s| s.0 == a.address)),
        "not the same address after the restart: {:?}\n{}",
        w.status6(),
        w.agent.log()
    );
    assert_eq!(kea.received("SOLICIT"), solicits, "a new Solicit exchange");
}

#[test]
fn dnsmasq_ra_and_dhcpv6_registers_the_aaaa_record() {
    require_root!();
    let w = World::new();
    let d = Dnsmasq::start(
        &w.lan.lan,
        DnsmasqOpts {
            extra: dnsmasq_v6_args(300),
            ..DnsmasqOpts::default()
        },
    );
    w.apply(Some("web6"));
    let a = w.wait_addr(20 * S, |a| in_pool(a.address));
    assert!(a.valid.is_some_and(|v| (280..=300).contains(&v)), "{a:?}");
    let name = wait_for(10 * S, POLL, || {
        query_aaaa_in(&w.lan.lan, SERVER6, "web6.lan.test")
    });
    assert_eq!(name, Some(a.address), "AAAA of web6.lan.test\n{}", d.log());
}

/// `--ipv6 off` takes nothing, and switching a running agent from auto to off removes
/// what it took (address and default route).
#[test]
fn off_takes_no_ipv6_address_and_drops_what_auto_took() {
    require_root!();
    let w = World::new();
    let _radvd = Radvd::start(&w.lan.lan, RadvdOpts::default());
    let out = w.agent.apply(&ApplyArgs::new(LAN_IF).ipv6("off"));
    assert!(out.ok(), "{out}");
    std::thread::sleep(6 * S);
    assert!(w.addrs().is_empty(), "{:?}", w.addrs());
    assert!(w.status6().is_empty());

    w.apply(None);
    let want = slaac_of(&w.mac());
    w.wait_addr(10 * S, |a| a.address == want);
    let out = w.agent.apply(&ApplyArgs::new(LAN_IF).ipv6("off"));
    assert!(out.ok(), "{out}");
    assert!(
        wait_until(5 * S, POLL, || w.addrs().is_empty()),
        "{:?}",
        w.addrs()
    );
    assert!(w.status6().is_empty());
    assert!(default_routes6(w.lan.router()).is_empty());
}

/// Garbage, foreign DHCPv6 replies and RAs from off-link sources change nothing: sent
/// from a LAN client's namespace at the router's link-local address and multicast.
#[test]
fn garbage_and_foreign_packets_change_nothing() {
    require_root!();
    let mut w = World::new();
    let kea = Kea6::start(&w.lan.lan, Kea6Opts::default());
    let _radvd = Radvd::start(
        &w.lan.lan,
        RadvdOpts {
            managed: true,
            autonomous: false,
            ..RadvdOpts::default()
        },
    );
    w.apply(None);
    let a = w.wait_addr(15 * S, |a| in_pool(a.address));
    let only = |v: Vec<Addr6>| {
        v.into_iter()
            .map(|a| (a.address, a.prefix_len))
            .collect::<Vec<_>>()
    };
    let before = only(w.addrs());
    let routes = default_routes6(w.lan.router());
    let ll = link_local_of(&w.mac());
    let client = w.lan.add_client(9);
    // Its link-local address must pass DAD before it can send.
    assert!(wait_until(5 * S, POLL, || !client
        .ip(&["-6", "addr", "show", "dev", "eth0", "tentative"])
        .contains("inet6")));
    let sent = client
        .run_in(move || {
            let name = std::ffi::CString::new("eth0").unwrap();
            // SAFETY: a valid NUL-terminated string.
            let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
            let s = std::net::UdpSocket::bind("[::]:547").expect("bind 547");
            let mut n = 0;
            let mut junk: Vec<Vec<u8>> = vec![
                vec![],
                vec![7],
                vec![0xff; 200],
                vec![7, 1, 2, 3, 0, 1, 0, 3, 0, 3],
                // Over the agent's 9216-byte limit: dropped whole, never parsed cut.
                vec![7; 12_000],
            ];
            // A Reply for another client (foreign DUID) with an address out of the pool.
            let mut foreign = vec![7, 0xab, 0xcd, 0xef];
            foreign.extend_from_slice(&[0, 1, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 9]);
            foreign.extend_from_slice(&[0, 2, 0, 10, 0, 3, 0, 1, 2, 0, 0, 0, 0, 8]);
            junk.push(foreign);
            for p in &junk {
                for _ in 0..5 {
                    if s.send_to(p, std::net::SocketAddrV6::new(ll, 546, 0, idx))
                        .is_ok()
                    {
                        n += 1;
                    }
                }
            }
            // A forged RA with a hop limit below 255 (so not from this link, RFC 4861
            // section 6.1.2) and a prefix of its own: no address may come of it.
            let forged = Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 0);
            send_ra("eth0", 64, forged).expect("send a forged RA");
            n
        })
        .unwrap();
    std::thread::sleep(2 * S);
    assert!(sent > 0, "nothing sent");
    assert_eq!(only(w.addrs()), before, "addresses changed");
    assert_eq!(default_routes6(w.lan.router()), routes);
    assert!(w.agent.running());
    assert!(kea.lease_of(a.address).is_some());
}

const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x20);
const ROUTER_SIDE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 1);
const SERVICE6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 2);

/// The forwarding bed: the LAN (SLAAC by radvd) with a client at 2001:db8:1::20, the
/// router's service side (`ServiceNet`, IPv4 198.51.100.0/24) with a service host that
/// runs busybox httpd on 8080 and a UDP echo (socat) on 5353, both dual-stack; with `v6_service`
/// the service side has IPv6 too (router 2001:db8:2::1, service 2001:db8:2::2, default
/// via the router), as on an IPv6 Docker network.
struct Fwd6 {
    agent: Agent,
    _http: netcontainer_tests::service::HttpServer,
    _udp: netcontainer_tests::proc::ProcGuard,
    _radvd: Radvd,
    _tmp: TempDir,
    svc: netcontainer_tests::service::ServiceNet,
    client: std::sync::Arc<Netns>,
    lan: Lan,
}

impl Fwd6 {
    fn new(v6_service: bool) -> Fwd6 {
        let mut lan = Lan::with_router();
        lan_v6(&lan.lan);
        let client = lan.add_client(20);
        client.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{CLIENT6}/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
        let mut svc = netcontainer_tests::service::ServiceNet::attach(lan.router());
        let host = svc.add_host(2);
        if v6_service {
            let cidr = |a: Ipv6Addr| format!("{a}/64");
            lan.router().ip(&[
                "-6",
                "addr",
                "add",
                &cidr(ROUTER_SIDE6),
                "dev",
                "eth0",
                "nodad",
            ]);
            host.ip(&["-6", "addr", "add", &cidr(SERVICE6), "dev", "eth0", "nodad"]);
            host.ip(&[
                "-6",
                "route",
                "add",
                "default",
                "via",
                &ROUTER_SIDE6.to_string(),
            ]);
        }
        let http = netcontainer_tests::service::HttpServer::start(&host, 8080, "hello-six");
        // Dual-stack (the service side may have IPv6), echoing each datagram.
        let udp = host.spawn_guarded(
            &["socat", "UDP6-RECVFROM:5353,fork,reuseaddr", "PIPE"],
            &[],
            None,
        );
        let radvd = Radvd::start(&lan.lan, RadvdOpts::default());
        let tmp = TempDir::new("fwd6");
        let agent = Agent::start_with_args(lan.router(), tmp.path(), &[]);
        Fwd6 {
            agent,
            _http: http,
            _udp: udp,
            _radvd: radvd,
            _tmp: tmp,
            svc,
            client,
            lan,
        }
    }

    fn apply(&self, service6: Option<Ipv6Addr>) -> Ipv6Addr {
        let mut args = ApplyArgs::new(LAN_IF)
            .forward("tcp:80=198.51.100.2:8080")
            .forward("udp:53=198.51.100.2:5353");
        if let Some(a) = service6 {
            args = args.service_address6(&a.to_string());
        }
        let out = self.agent.apply(&args);
        assert!(out.ok(), "agent apply failed: {out}");
        let want = slaac_of(&mac_of(self.lan.router(), LAN_IF));
        let ok = wait_until(10 * S, POLL, || {
            addrs6(self.lan.router(), LAN_IF)
                .iter()
                .any(|a| a.address == want)
        });
        assert!(ok, "no SLAAC address\n{}", self.agent.log());
        want
    }

    fn path(&self) -> String {
        let v = self.agent.status_json().expect("status");
        v["ipv6_path"].as_str().unwrap_or_default().to_string()
    }

    /// The LAN client's view: the published TCP and UDP ports answer over IPv6, an
    /// unpublished one does not.
    fn check_reachable(&self, public: Ipv6Addr) {
        let body = netcontainer_tests::service::retry(10, S, || curl(&self.client, public, 80, 3));
        assert!(
            body.as_ref().is_ok_and(|b| b.contains("hello-six")),
            "{body:?}\n{}",
            self.agent.log()
        );
        assert_eq!(
            udp6(&self.client, public, 53, b"ping6").as_deref(),
            Ok(&b"ping6"[..]),
            "UDP over IPv6\n{}",
            self.agent.log()
        );
        assert!(
            curl(&self.client, public, 8080, 3).is_err(),
            "an unpublished port answered over IPv6"
        );
    }
}

/// Kernel path: the service side has IPv6, the router DNATs to the service's IPv6
/// address (masqueraded: the service sees the router). The service side gets nothing
/// onto the LAN over IPv6 through the router, and replies of forwarded connections are
/// routed by the agent's table (the mark rule), not the main table.
#[test]
fn ipv6_forwards_in_the_kernel_to_a_service_with_ipv6() {
    require_root!();
    let bed = Fwd6::new(true);
    let public = bed.apply(Some(SERVICE6));
    bed.check_reachable(public);
    assert_eq!(bed.path(), "kernel");
    let table = bed
        .lan
        .router()
        .exec_ok(&["nft", "list", "table", "ip6", contract::NFT_TABLE]);
    assert!(
        table.contains(&format!("dnat to [{SERVICE6}]")) && table.contains("masquerade"),
        "{table}"
    );
    let rules = bed.lan.router().ip(&["-6", "rule", "show"]);
    assert!(
        rules.contains(&format!(
            "fwmark {:#x} lookup {}",
            contract::MARK,
            contract::ROUTE_TABLE
        )),
        "{rules}"
    );
    let routes = bed.lan.router().ip(&[
        "-6",
        "route",
        "show",
        "table",
        &contract::ROUTE_TABLE.to_string(),
    ]);
    assert!(
        routes.contains("default via fe80::") && routes.contains("2001:db8:1::/64 dev lan0"),
        "{routes}"
    );
    // The service host, whose IPv6 default route is the router, reaches no LAN host.
    let host = bed.svc.hosts[0].clone();
    let lan_listener = netcontainer_tests::service::HttpServer::start(&bed.client, 8081, "lan");
    assert!(
        curl(&host, CLIENT6, lan_listener.port, 3).is_err(),
        "the service side reached the LAN over IPv6 through the router"
    );
    // Unset (plan without the service's IPv6 address): the relay takes over.
    let public2 = bed.apply(None);
    assert_eq!(public2, public);
    bed.check_reachable(public);
    assert_eq!(bed.path(), "relay");
    let table = bed
        .lan
        .router()
        .exec_ok(&["nft", "list", "table", "ip6", contract::NFT_TABLE]);
    assert!(!table.contains("dnat to"), "{table}");
}

/// Relay path: the service side is IPv4 only; the agent relays the published TCP and UDP
/// ports from its IPv6 address to the service's IPv4 address. `--ipv6 off` stops it;
/// a clean stop leaves no table of either family.
#[test]
fn ipv6_is_relayed_to_a_service_on_ipv4_only() {
    require_root!();
    let mut bed = Fwd6::new(false);
    let public = bed.apply(None);
    bed.check_reachable(public);
    assert_eq!(bed.path(), "relay");
    let listening = bed.lan.router().exec_ok(&["ss", "-Hlnt"]);
    assert!(listening.contains(&format!("[{public}]:80")), "{listening}");
    // The service side has no way onto the LAN either.
    let table = bed
        .lan
        .router()
        .exec_ok(&["nft", "list", "table", "ip6", contract::NFT_TABLE]);
    assert!(table.contains("iifname \"lan0\" drop"), "{table}");

    let out = bed.agent.apply(
        &ApplyArgs::new(LAN_IF)
            .forward("tcp:80=198.51.100.2:8080")
            .ipv6("off"),
    );
    assert!(out.ok(), "{out}");
    assert!(
        wait_until(5 * S, POLL, || curl(&bed.client, public, 80, 1).is_err()),
        "the relay still answers with --ipv6 off"
    );
    assert_eq!(bed.path(), "none");
    // Without --keep-lease, SIGTERM is a clean stop.
    assert!(bed.agent.terminate(10 * S).is_some_and(|s| s.success()));
    let tables = bed.lan.router().exec_ok(&["nft", "list", "tables"]);
    assert!(!tables.contains(contract::NFT_TABLE), "{tables}");
}
