//! `netcontainer watch` on the real Docker engine: labelled services get their network
//! containers, and the supervisor heals what Docker does to services and routers
//! (restarts with new addresses, killed routers, removed services, its own restart, a cut
//! event stream). Root only; the router and sample images must exist (see
//! tests/tests/docker.rs). The bed is the same [`DockerBed`]: LAN namespace with dnsmasq
//! (203.0.113.50-150), LAN client 203.0.113.10, a veth parent, a Docker network on a /28 of
//! 198.51.100.0/24.
//!
//! Watch acts on every router of the host, so each test here holds the Docker suites'
//! lock exclusively ([`watch::bed`]: no other watch test, no `tests/tests/docker.rs` test,
//! no bench-restart runs meanwhile) and only asserts on its own services. Bounds: a
//! change is acted on within seconds (events), far below the `--resync` of 60 s, so the
//! periodic reconcile never explains a pass.

use netcontainer_tests::docker::{self, DockerBed, docker_ok, router_name, state_dir};
use netcontainer_tests::watch::{self, DockerProxy, Watch};
use netcontainer_tests::*;
use std::net::Ipv4Addr;
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(20);

fn serves(bed: &DockerBed, addr: Ipv4Addr, service: &str, within: Duration) {
    if let Err(e) = watch::wait_serves(bed, addr, 80, service, within) {
        panic!("{e}");
    }
}

/// Waits for `service`'s router and returns its bound address, after checking it serves.
fn router_address(bed: &DockerBed, w: &Watch, service: &str) -> Ipv4Addr {
    assert!(
        w.wait_line(Some(service), "router created: ", BOUND),
        "no router created for {service}: {}",
        w.log()
    );
    let addr = watch::wait_bound(bed, service, BOUND).unwrap_or_else(|| {
        panic!(
            "{service}'s router is not bound: {:?}",
            watch::status(bed, service)
        )
    });
    assert!(docker::in_pool(addr), "{addr} is not from dnsmasq's pool");
    serves(bed, addr, service, Duration::from_secs(10));
    addr
}

/// Two labelled services, `a` and `b`, once watch made their routers and they answer.
fn two_served(bed: &DockerBed, w: &Watch) -> [docker::Service; 2] {
    let services = [
        watch::labelled_service(bed, "a", &[]),
        watch::labelled_service(bed, "b", &[]),
    ];
    for s in &services {
        router_address(bed, w, &s.name);
    }
    services
}

fn lease_released(bed: &DockerBed, addr: Ipv4Addr) -> bool {
    wait_until(Duration::from_secs(10), watch::POLL, || {
        bed.dnsmasq.lease_of(addr).is_none()
    }) && bed
        .dnsmasq
        .log()
        .contains(&format!("DHCPRELEASE(br0) {addr}"))
}

/// 1. The service restarts with another private address (another container took its old
///    one meanwhile): the forwards follow, the public address stays. While it is stopped
///    the router forwards nothing, so the container that took its old address is never
///    reachable through the service's public address. Its mDNS name stays claimed
///    throughout, and the router sends no mDNS for the stop or the start (no goodbyes,
///    probes or announcements for every responder on the LAN to read).
#[test]
fn service_restarted_with_a_new_address_keeps_its_public_address() {
    require_root!();
    let bed = watch::bed(0);
    let mut w = Watch::start(&bed, &[], &[]);
    assert!(w.wait_watching(1, BOUND), "no start-up reconcile");
    let a = watch::labelled_service(&bed, "a", &[]);
    let addr = router_address(&bed, &w, &a.name);
    let old_ip = a.ip.unwrap();
    let name = watch::wait_mdns_name(&bed, &a.name, BOUND).expect("the router claims an mDNS name");
    // Announcements of the claim end 1 s after it (two, a second apart): wait them out.
    std::thread::sleep(Duration::from_millis(1500));
    let mut mdns = capture::Capture::start(
        &bed.lan,
        "br0",
        &format!("udp port 5353 and src host {addr}"),
    );

    docker_ok(&["stop", "-t", "1", &a.name]);
    assert!(
        w.wait_line(
            Some(&a.name),
            "service stopped: forwards removed, lease kept",
            BOUND
        ),
        "forwards not removed when the service stopped"
    );
    // Unlabelled: watch gives it nothing. Docker hands it the lowest free address: A's.
    let b = bed.run_service("b", &[]);
    assert_eq!(b.ip, Some(old_ip), "B did not get A's old address");
    let r = bed.fetch(addr, 80, 2);
    assert!(
        r.as_deref().map(str::trim) != Ok(watch::page(&b.name, 80).as_str()),
        "the stopped service's public address reaches the container that took its old IP"
    );
    let st = watch::status(&bed, &a.name).unwrap();
    assert!(
        watch::targets(&st).is_empty(),
        "forwards kept while the service is stopped"
    );
    assert_eq!(
        st["agent"]["mdns"].as_str(),
        Some(name.as_str()),
        "the mDNS name is not kept while the service is stopped: {st}"
    );

    docker_ok(&["start", &a.name]);
    let new_ip = watch::ip_of(&bed, &a.name).expect("A's new address");
    assert_ne!(new_ip, old_ip, "A got its old address back");
    serves(&bed, addr, &a.name, Duration::from_secs(10));
    let st = watch::status(&bed, &a.name).unwrap();
    assert_eq!(
        watch::targets(&st),
        vec![(new_ip.to_string(), 80)],
        "forward target is not A's new address: {st}"
    );
    assert_eq!(
        watch::agent(&st).and_then(|s| s.address()),
        Some(addr),
        "public address changed"
    );
    assert!(
        w.wait_line(
            Some(&a.name),
            "forwards updated to the service's address",
            BOUND
        ),
        "{}",
        w.log()
    );
    // A restart's probes would come within 1 s of the plan, its announcements 1 s later.
    std::thread::sleep(Duration::from_millis(2500));
    let sent = mdns.stop();
    assert!(
        sent.is_empty(),
        "the router sent mDNS for a service restart: {sent:?}"
    );
    assert_eq!(
        watch::wait_mdns_name(&bed, &a.name, BOUND),
        Some(name),
        "the mDNS name changed"
    );

    // A plain `docker restart` (same address this time) answers again too.
    docker_ok(&["restart", "-t", "1", &a.name]);
    serves(&bed, addr, &a.name, Duration::from_secs(10));
    w.assert_running();
}

/// 2. The router is restarted (`docker restart`) and killed (`docker kill`, SIGKILL, no
///    release): each time the same public address answers again. After the kill nothing
///    restarts the router but watch, and the agent gets its address back by INIT-REBOOT
///    from the lease it persisted (no DISCOVER).
#[test]
fn router_restarted_or_killed_comes_back_on_the_same_address() {
    require_root!();
    let bed = watch::bed(1);
    let mut w = Watch::start(&bed, &[], &[]);
    assert!(w.wait_watching(1, BOUND));
    let a = watch::labelled_service(&bed, "a", &[]);
    let addr = router_address(&bed, &w, &a.name);
    let router = router_name(&a.name);

    docker_ok(&["restart", "-t", "5", &router]);
    serves(&bed, addr, &a.name, Duration::from_secs(15));
    assert!(
        w.wait_line(
            Some(&a.name),
            "router restarted: LAN leg re-plumbed, plan re-sent",
            BOUND
        ),
        "{}",
        w.log()
    );

    let discovers = bed.dnsmasq.log().matches("DHCPDISCOVER").count();
    docker_ok(&["kill", &router]);
    serves(&bed, addr, &a.name, Duration::from_secs(15));
    assert!(watch::running(&router), "router not running after the kill");
    assert_eq!(
        watch::wait_bound(&bed, &a.name, BOUND),
        Some(addr),
        "bound to another address"
    );
    assert_eq!(
        bed.dnsmasq.log().matches("DHCPDISCOVER").count(),
        discovers,
        "the killed router started over with DISCOVER instead of INIT-REBOOT:\n{}",
        bed.dnsmasq.log()
    );
    w.assert_running();
}

/// 3. The service is removed (`docker rm -f`): its network container and host directory
///    go, and the lease is released (DHCPRELEASE; gone from dnsmasq's lease file).
#[test]
fn removed_service_takes_its_router_and_lease_along() {
    require_root!();
    let bed = watch::bed(2);
    let mut w = Watch::start(&bed, &[], &[]);
    assert!(w.wait_watching(1, BOUND));
    let a = watch::labelled_service(&bed, "a", &[]);
    let addr = router_address(&bed, &w, &a.name);
    assert!(state_dir(&a.name).exists());

    docker_ok(&["rm", "-f", &a.name]);
    assert!(
        wait_until(BOUND, watch::POLL, || docker::containers_of(&a.name)
            .is_empty()),
        "router still there: {:?}",
        docker::containers_of(&a.name)
    );
    assert!(
        wait_until(Duration::from_secs(5), watch::POLL, || !state_dir(&a.name)
            .exists()),
        "{} still there",
        state_dir(&a.name).display()
    );
    assert!(
        lease_released(&bed, addr),
        "lease of {addr} not released: {:?}\n{}",
        bed.dnsmasq.leases(),
        bed.dnsmasq.log()
    );
    assert!(
        w.wait_line(
            Some(&a.name),
            "service gone: netcontainer-",
            Duration::from_secs(5)
        ),
        "{}",
        w.log()
    );
    bed.assert_clean(&a.name);
    w.assert_running();
}

/// 4. A labelled service that runs before watch starts is picked up at start-up; one
///    started while watch runs gets its router at once; an unlabelled one gets none.
#[test]
fn labelled_services_get_routers_before_and_after_watch_starts() {
    require_root!();
    let bed = watch::bed(3);
    let early = watch::labelled_service(&bed, "early", &[]);
    let mut w = Watch::start(&bed, &[], &[]);
    assert!(w.wait_watching(1, BOUND));
    let early_addr = router_address(&bed, &w, &early.name);

    let plain = bed.run_service("plain", &[]);
    let late = watch::labelled_service(&bed, "late", &[]);
    let late_addr = router_address(&bed, &w, &late.name);
    assert_ne!(early_addr, late_addr);
    serves(&bed, early_addr, &early.name, Duration::from_secs(5));
    // `plain` started before `late`: its event was handled first.
    assert!(
        docker::containers_of(&plain.name).is_empty(),
        "an unlabelled service got a router"
    );
    assert!(w.lines_of(&plain.name).is_empty(), "{}", w.log());
    w.assert_running();
}

/// 5. Watch killed (SIGKILL) and started again: what was right stays untouched (same
///    router container, not restarted, same address, no "created"/"re-plumbed"); what
///    broke while it was down (the router restarted: no LAN leg, no plan) is healed.
#[test]
fn watch_restart_changes_nothing_right_and_heals_what_broke() {
    require_root!();
    let bed = watch::bed(4);
    let a = watch::labelled_service(&bed, "a", &[]);
    let router = router_name(&a.name);
    let mut w1 = Watch::start(&bed, &[], &[]);
    assert!(w1.wait_watching(1, BOUND));
    let addr = router_address(&bed, &w1, &a.name);
    let before = watch::id_and_start(&router).unwrap();
    w1.kill();

    let mut w2 = Watch::start(&bed, &[], &[]);
    assert!(w2.wait_watching(1, BOUND), "no start-up reconcile");
    assert_eq!(
        watch::id_and_start(&router).as_ref(),
        Some(&before),
        "the router was re-created or restarted"
    );
    let lines = w2.lines_of(&a.name);
    assert!(
        lines.is_empty(),
        "watch acted on a router that was right: {lines:?}"
    );
    assert_eq!(watch::wait_bound(&bed, &a.name, BOUND), Some(addr));
    serves(&bed, addr, &a.name, Duration::from_secs(5));
    w2.kill();

    // While no watch runs: the router restarts, loses its leg and plan.
    docker_ok(&["restart", "-t", "5", &router]);
    assert!(
        wait_until(Duration::from_secs(10), watch::POLL, || watch::status(
            &bed, &a.name
        )
        .and_then(|s| watch::agent(&s))
        .is_some_and(|s| s.state == "waiting-for-plan")),
        "restarted router is not waiting for a plan"
    );
    assert!(
        bed.fetch(addr, 80, 1).is_err(),
        "answers without a watch after the restart?"
    );
    let mut w3 = Watch::start(&bed, &[], &[]);
    serves(&bed, addr, &a.name, Duration::from_secs(15));
    assert!(w3.wait_watching(1, BOUND));
    assert!(
        w3.lines_of(&a.name)
            .iter()
            .any(|l| l.contains("router restarted: LAN leg re-plumbed, plan re-sent")),
        "{}",
        w3.log()
    );
    w3.assert_running();
}

/// 6. The Docker connection drops (a socat proxy between watch and Docker is killed
///    with every connection it forked): watch says it lost Docker, retries, reconnects
///    when the proxy is back, and acts on what happened meanwhile (a labelled service
///    started while the stream was down gets its router), by its reconnect reconcile.
#[test]
fn watch_survives_the_event_stream_dropping() {
    require_root!();
    assert!(have("socat"), "socat is needed (apt-get install socat)");
    let bed = watch::bed(5);
    let sock = bed.tmp.join("docker.sock");
    let mut proxy = DockerProxy::start(&sock);
    let mut w = Watch::start(&bed, &[], &[("DOCKER_HOST", &proxy.docker_host())]);
    assert!(w.wait_watching(1, BOUND), "{}", w.log());

    proxy.cut();
    assert!(
        w.wait_line(None, "lost Docker; retrying", Duration::from_secs(10)),
        "watch did not notice the stream dropping: {}",
        w.log()
    );
    let a = watch::labelled_service(&bed, "a", &[]);
    // Let a retry or two fail against the missing socket.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        docker::containers_of(&a.name).is_empty(),
        "a router appeared without Docker?"
    );
    proxy.restart();
    let addr = router_address(&bed, &w, &a.name);
    assert!(w.wait_watching(2, BOUND), "no reconcile after reconnecting");
    let log = w.log();
    assert!(
        log.matches("connected to Docker; reconciling").count() >= 2,
        "{log}"
    );
    serves(&bed, addr, &a.name, Duration::from_secs(5));
    w.assert_running();
}

/// Open sockets of a router's processes (its agent's control connections among them):
/// the fewest of 5 reads 200 ms apart, so that a heal's short connection does not count.
fn router_sockets(router: &str) -> usize {
    (0..5)
        .map(|i| {
            if i > 0 {
                std::thread::sleep(Duration::from_millis(200));
            }
            router_pids(router)
                .iter()
                .flat_map(|p| {
                    std::fs::read_dir(format!("/proc/{p}/fd"))
                        .into_iter()
                        .flatten()
                })
                .flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .min()
        .unwrap()
}

/// 6b. A second drop is retried as quickly as the first: the retry delay starts over
///     after a successful reconnect (it doubles only while Docker stays away). And a
///     session takes its agent subscriptions along when it ends: after two reconnects
///     the router's agent holds as many connections as before (a session's follow
///     tasks outlived it, each holding a subscription and reporting, so every
///     reconnect added one per router).
#[test]
fn watch_retries_quickly_after_a_second_drop() {
    require_root!();
    assert!(have("socat"), "socat is needed (apt-get install socat)");
    let bed = watch::bed(9);
    let sock = bed.tmp.join("docker.sock");
    let mut proxy = DockerProxy::start(&sock);
    let mut w = Watch::start(&bed, &[], &[("DOCKER_HOST", &proxy.docker_host())]);
    assert!(w.wait_watching(1, BOUND), "{}", w.log());
    let a = watch::labelled_service(&bed, "a", &[]);
    router_address(&bed, &w, &a.name);
    let router = router_name(&a.name);
    // The start's heal and first push done.
    std::thread::sleep(Duration::from_secs(3));
    let sockets = router_sockets(&router);
    let first_retries = |w: &Watch| -> Vec<String> {
        // The retry delay of each drop's first "lost Docker" line.
        let mut out = Vec::new();
        let mut after_connect = true;
        for l in w.log().lines() {
            if l.contains("connected to Docker; reconciling") {
                after_connect = true;
            } else if l.contains("lost Docker; retrying") && after_connect {
                after_connect = false;
                let d = l
                    .split_whitespace()
                    .find_map(|t| t.strip_prefix("retry_in="))
                    .unwrap_or("?");
                out.push(d.to_string());
            }
        }
        out
    };
    for drop in 1..=2 {
        proxy.cut();
        // Away long enough for a few doubled retries.
        std::thread::sleep(Duration::from_secs(3));
        proxy.restart();
        assert!(
            w.wait_watching(drop + 1, Duration::from_secs(40)),
            "not back after drop {drop}: {}",
            w.log()
        );
    }
    assert_eq!(
        first_retries(&w),
        ["250ms", "250ms"],
        "the first retry after the second drop waited longer than after the first:\n{}",
        w.log()
    );
    // The reconnects' reconcile and the new monitor's subscription settled.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        router_sockets(&router),
        sockets,
        "the router's agent holds another number of connections after two reconnects"
    );
    w.assert_running();
}

/// 7a. `--release-when-stopped`: a stopped service's router is taken down and its lease
///     released; started again, the router comes back with the same address.
#[test]
fn release_when_stopped_takes_the_router_down_and_brings_it_back() {
    require_root!();
    let bed = watch::bed(6);
    let mut w = Watch::start(&bed, &["--release-when-stopped"], &[]);
    assert!(w.wait_watching(1, BOUND));
    let a = watch::labelled_service(&bed, "a", &[]);
    let addr = router_address(&bed, &w, &a.name);

    docker_ok(&["stop", "-t", "1", &a.name]);
    assert!(
        wait_until(BOUND, watch::POLL, || docker::containers_of(&a.name)
            .is_empty()),
        "router kept after the service stopped"
    );
    assert!(
        lease_released(&bed, addr),
        "lease of {addr} not released: {:?}",
        bed.dnsmasq.leases()
    );
    assert!(
        wait_until(Duration::from_secs(5), watch::POLL, || !state_dir(&a.name)
            .exists()),
        "state directory kept"
    );
    assert!(w.wait_line(
        Some(&a.name),
        "service stopped: netcontainer-",
        Duration::from_secs(5)
    ));

    docker_ok(&["start", &a.name]);
    assert!(
        wait_until(BOUND, watch::POLL, || w
            .lines_of(&a.name)
            .iter()
            .filter(|l| l.contains("router created: "))
            .count()
            == 2),
        "router not back: {}",
        w.log()
    );
    assert_eq!(
        watch::wait_bound(&bed, &a.name, BOUND),
        Some(addr),
        "another address"
    );
    serves(&bed, addr, &a.name, Duration::from_secs(10));
    w.assert_running();
}

/// 7b. Without the flag: a stopped service keeps its router and lease, with no forwards;
///     started again, the forwards are back.
#[test]
fn stopped_service_keeps_router_and_lease_without_the_flag() {
    require_root!();
    let bed = watch::bed(7);
    let mut w = Watch::start(&bed, &[], &[]);
    assert!(w.wait_watching(1, BOUND));
    let a = watch::labelled_service(&bed, "a", &[]);
    let addr = router_address(&bed, &w, &a.name);
    let router = router_name(&a.name);
    let before = watch::id_and_start(&router).unwrap();

    docker_ok(&["stop", "-t", "1", &a.name]);
    assert!(
        wait_until(BOUND, watch::POLL, || watch::status(&bed, &a.name)
            .is_some_and(|s| watch::targets(&s).is_empty())),
        "forwards kept after the service stopped: {:?}",
        watch::status(&bed, &a.name)
    );
    let st = watch::status(&bed, &a.name).unwrap();
    assert_eq!(
        watch::agent(&st).map(|s| (s.state.clone(), s.address())),
        Some(("bound".to_string(), Some(addr))),
        "{st}"
    );
    assert!(bed.dnsmasq.lease_of(addr).is_some(), "lease gone");
    assert!(
        !bed.dnsmasq.log().contains("DHCPRELEASE"),
        "a DHCPRELEASE was sent"
    );
    assert_eq!(watch::id_and_start(&router), Some(before.clone()));

    docker_ok(&["start", &a.name]);
    let ip = watch::ip_of(&bed, &a.name).unwrap();
    serves(&bed, addr, &a.name, Duration::from_secs(10));
    let st = watch::status(&bed, &a.name).unwrap();
    assert_eq!(watch::targets(&st), vec![(ip.to_string(), 80)], "{st}");
    assert_eq!(
        watch::id_and_start(&router),
        Some(before),
        "router re-created"
    );
    w.assert_running();
}

/// 8. The one-shot commands next to a running watch: `up` of an unlabelled service
///    works and `down` releases the lease and leaves nothing, and watch, which adopts
///    every router, has nothing to do for a router that `up` made right and `down`
///    removed: it must not re-plumb the router `up` is plumbing, nor start again the
///    router `down` just stopped (if that start won the race with `down`'s removal,
///    the router would be force-removed without a DHCPRELEASE).
#[test]
fn up_and_down_by_hand_while_watch_runs() {
    require_root!();
    let bed = watch::bed(8);
    let mut w = Watch::start(&bed, &[], &[]);
    assert!(w.wait_watching(1, BOUND));
    let s = bed.run_service("s", &[]);
    for round in 0..3 {
        let u = bed.up(&s.name, &[]);
        serves(&bed, u.address, &s.name, Duration::from_secs(5));
        let out = bed.down(&s.name);
        assert!(out.ok(), "round {round}: down failed: {out}");
        assert!(
            lease_released(&bed, u.address),
            "round {round}: lease of {} not released: {:?}\n{}",
            u.address,
            bed.dnsmasq.leases(),
            w.log()
        );
        // Give watch time to act on the router's events (and retry a failed reconcile).
        std::thread::sleep(Duration::from_millis(1500));
        bed.assert_clean(&s.name);
    }
    w.assert_running();
    let lines = w.lines_of(&s.name);
    assert!(
        lines.is_empty(),
        "watch acted on routers that one-shot `up`/`down` were creating/removing:\n{}",
        lines.join("\n")
    );
}

/// 9. Cold start with 20 labelled services already running on a working LAN and one
///    more whose parent's LAN has no DHCP server: the 20 all answer on their LAN
///    addresses before the stuck one has even given up once (services are brought up
///    side by side, none waits for another), and the stuck one keeps being retried with
///    a growing backoff: the events of its own router being created and removed (each
///    failed `up` rolls back) never start the next attempt early.
#[test]
fn many_services_come_up_together_and_a_stuck_one_backs_off() {
    require_root!();
    // 21 services and their routers: a /26.
    let bed = DockerBed::with_network_prefix(10, docker::SuiteLock::exclusive(), 26);
    let dead = watch::DeadParent::new(&bed);
    let names: Vec<String> = (0..20)
        .map(|i| watch::labelled_service(&bed, &format!("s{i}"), &[]).name)
        .collect();
    let stuck = watch::stuck_service(&bed, &dead);
    // A lease wait of 10 s: the 20 must not need it.
    const TIMEOUT: u32 = 10;
    let mut w = Watch::start_bin(&bed, &bin("netcontainer"), TIMEOUT, &[], &[]);
    let took = watch::wait_all_serve(&bed, &w, &names, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", w.log()));
    let stuck_failures = |w: &Watch| -> Vec<String> {
        w.lines_of(&stuck)
            .into_iter()
            .filter(|l| l.contains("cannot reconcile"))
            .collect()
    };
    assert!(
        took < Duration::from_secs(u64::from(TIMEOUT)),
        "the 20 answered only after {took:?}: behind the stuck service's {TIMEOUT} s?\n{}",
        w.log()
    );
    eprintln!("20 services answering after {took:?}");
    for s in &names {
        let created = w
            .lines_of(s)
            .iter()
            .filter(|l| l.contains("router created: "))
            .count();
        assert_eq!(created, 1, "{s}: {created} routers created\n{}", w.log());
    }

    // Three failures: after 10 s, then 1 s + 10 s later, then 2 s + 10 s later.
    assert!(
        wait_until(Duration::from_secs(60), watch::POLL, || stuck_failures(&w)
            .len()
            >= 3),
        "the stuck service did not fail three times:\n{}",
        w.log()
    );
    let fails = stuck_failures(&w);
    let times: Vec<f64> = fails.iter().filter_map(|l| watch::log_time(l)).collect();
    let delays: Vec<f64> = fails.iter().filter_map(|l| watch::retry_in(l)).collect();
    assert_eq!(times.len(), fails.len(), "no timestamps: {fails:?}");
    assert_eq!(
        &delays[..3],
        &[1.0, 2.0, 4.0],
        "the backoff does not double: {fails:?}"
    );
    for k in 0..2 {
        // The next failure comes after the backoff and then a whole lease wait.
        let gap = times[k + 1] - times[k];
        let least = delays[k] + f64::from(TIMEOUT) - 0.5;
        assert!(
            gap >= least,
            "attempt {} started before its backoff of {}s was over (failures {gap:.1}s apart):\n{}",
            k + 2,
            delays[k],
            w.log()
        );
    }
    for s in &names {
        assert!(
            !w.lines_of(s).iter().any(|l| l.contains("cannot reconcile")),
            "{s} failed:\n{}",
            w.log()
        );
    }
    w.assert_running();
}

/// 9b. Cold start with more stuck services than watch works on at once (its permits:
///     `CONCURRENCY`), all named to sort first, and 4 services on a working LAN: the 4
///     answer long before the stuck ones' lease wait is over. A service waiting for a
///     lease holds no permit (before, 8 stuck ones held them all for the whole wait).
#[test]
fn services_waiting_for_a_lease_hold_up_no_other() {
    require_root!();
    // 13 services and their routers: a /26.
    let bed = DockerBed::with_network_prefix(11, docker::SuiteLock::exclusive(), 26);
    let dead = watch::DeadParent::new(&bed);
    // `CONCURRENCY` in host-driver/src/watch/supervisor.rs.
    const PERMITS: usize = 8;
    let stuck: Vec<String> = (0..=PERMITS)
        .map(|i| watch::stuck_service_tagged(&bed, &dead, &format!("0stuck{i}")))
        .collect();
    let names: Vec<String> = (0..4)
        .map(|i| watch::labelled_service(&bed, &format!("s{i}"), &[]).name)
        .collect();
    // Long enough that no loaded machine takes as long to make 13 routers.
    const TIMEOUT: u32 = 40;
    let w = Watch::start_bin(&bed, &bin("netcontainer"), TIMEOUT, &[], &[]);
    let took = watch::wait_all_serve(&bed, &w, &names, Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e}\n{}", w.log()));
    eprintln!(
        "4 services answering after {took:?}, beside {} stuck",
        stuck.len()
    );
    assert!(
        took < Duration::from_secs(u64::from(TIMEOUT) / 2),
        "the 4 answered only after {took:?}: behind the stuck services' {TIMEOUT} s lease wait?\n{}",
        w.log()
    );
}

/// 14. The service is moved on its network by hand (`docker network disconnect`, then
///     `docker network connect --ip` another address): watch follows the networks'
///     connect/disconnect events, so the forwards follow the new address within seconds,
///     with `--resync 600` (no periodic reconcile can explain a pass). Before watch
///     followed network events, nothing looked until the resync.
#[test]
fn network_disconnect_and_connect_are_followed_without_a_resync() {
    require_root!();
    let bed = watch::bed(12);
    let mut w = Watch::start(&bed, &["--resync", "600"], &[]);
    assert!(w.wait_watching(1, BOUND), "no start-up reconcile");
    let a = watch::labelled_service(&bed, "a", &[]);
    let addr = router_address(&bed, &w, &a.name);
    let old_ip = a.ip.unwrap();
    // The last usable address of the bed's /28: Docker hands out the lowest first.
    let base: Ipv4Addr = bed.subnet.split('/').next().unwrap().parse().unwrap();
    let new_ip = Ipv4Addr::from(u32::from(base) + 14);
    assert_ne!(new_ip, old_ip);
    let updates = w.lines_of(&a.name).len();

    docker_ok(&["network", "disconnect", &bed.network, &a.name]);
    docker_ok(&[
        "network",
        "connect",
        "--ip",
        &new_ip.to_string(),
        &bed.network,
        &a.name,
    ]);
    assert_eq!(watch::ip_of(&bed, &a.name), Some(new_ip));
    serves(&bed, addr, &a.name, BOUND);
    let st = watch::status(&bed, &a.name).unwrap();
    assert_eq!(
        watch::targets(&st),
        vec![(new_ip.to_string(), 80)],
        "forward target is not the service's new address: {st}"
    );
    assert!(
        w.lines_of(&a.name).len() > updates,
        "watch logged nothing for the service: {}",
        w.log()
    );
    w.assert_running();
}

/// Every process of the router container `name`: its PID 1 and their descendants.
fn router_pids(name: &str) -> Vec<u32> {
    let out = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.State.Pid}}", name])
        .output()
        .expect("docker inspect");
    let pid1: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no pid for {name}: {out:?}"));
    let mut all = vec![pid1];
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        for task in std::fs::read_dir(format!("/proc/{p}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let kids = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            all.extend(
                kids.split_whitespace()
                    .filter_map(|k| k.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    all.sort_unstable();
    all.dedup();
    all
}

/// In an strace text: the `nft` runs, and the control connections accepted.
fn nft_and_accepts(trace: &str) -> (usize, usize) {
    let nft = trace
        .lines()
        // The PATH lookup's misses are not runs.
        .filter(|l| l.contains("execve(") && l.contains("nft") && !l.contains("ENOENT"))
        .count();
    let accepts = trace
        .lines()
        .filter(|l| l.contains("accept4(") && !l.contains("= -1") && !l.contains("unfinished"))
        .count()
        + trace
            .lines()
            .filter(|l| l.contains("<... accept4 resumed>") && !l.contains("= -1"))
            .count();
    (nft, accepts)
}

/// Issue 25, steady state: with nothing changing, watch asks no agent anything (each agent
/// pushes its state over one subscribed connection when it changes), so over 20 s the
/// routers' processes run no `nft` (the forward counters) and accept no connection (the
/// poll and the host route sync each asked every router every 5 s, with an `nft` run per
/// ask). A `/metrics` scrape reads the counters, once per router, and a second scrape
/// right after is served the same read. `--resync 600` keeps the periodic reconcile out.
#[test]
fn steady_state_runs_no_nft_and_accepts_no_connection() {
    require_root!();
    let bed = watch::bed(10);
    let port = watch::free_port();
    let mut w = Watch::start(
        &bed,
        &["--metrics", &format!("127.0.0.1:{port}"), "--resync", "600"],
        &[("NETCONTAINER_LOG", "netcontainer=debug")],
    );
    let services = two_served(&bed, &w);
    // Let the start's work (the host route sync after the leases, the first pushes) end.
    std::thread::sleep(Duration::from_secs(3));
    let mut guards = Vec::new();
    let mut files = Vec::new();
    for s in &services {
        let trace = bed.tmp.join(format!("{}.trace", s.name));
        let attach_log = bed.tmp.join(format!("{}.strace.log", s.name));
        let mut cmd = std::process::Command::new("strace");
        cmd.args(["-f", "-tt", "-e", "trace=execve,accept4", "-o"])
            .arg(&trace);
        for p in router_pids(&router_name(&s.name)) {
            cmd.args(["-p", &p.to_string()]);
        }
        let child = cmd
            .stderr(std::fs::File::create(&attach_log).unwrap())
            .spawn()
            .expect("strace (scripts/install-deps installs it)");
        guards.push(ProcGuard::new(child, "strace"));
        assert!(
            wait_until(Duration::from_secs(5), watch::POLL, || {
                std::fs::read_to_string(&attach_log).is_ok_and(|t| t.contains("attached"))
            }),
            "strace did not attach to {}'s router",
            s.name
        );
        files.push(trace);
    }
    std::thread::sleep(Duration::from_secs(20));
    let quiet: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect();
    for (s, t) in services.iter().zip(&quiet) {
        assert_eq!(
            nft_and_accepts(t),
            (0, 0),
            "{}'s router was asked while nothing changed (nft runs, connections):\n{t}\n{}",
            s.name,
            w.log()
        );
    }
    let first = watch::scrape(port).expect("metrics");
    let second = watch::scrape(port).expect("metrics");
    for s in &services {
        let key = format!("netcontainer_service_up{{service=\"{}\"}}", s.name);
        assert_eq!(watch::samples(&first).get(&key), Some(&1.0), "{first}");
        assert_eq!(watch::samples(&second).get(&key), Some(&1.0), "{second}");
    }
    std::thread::sleep(Duration::from_secs(1));
    for ((s, f), q) in services.iter().zip(&files).zip(&quiet) {
        let all = std::fs::read_to_string(f).unwrap_or_default();
        let scraped = &all[q.len()..];
        assert_eq!(
            nft_and_accepts(scraped),
            (1, 1),
            "{}: two scrapes should read the counters once:\n{scraped}",
            s.name
        );
    }
    drop(guards);
    w.assert_running();
}

/// The lines of `log` that time a look at `service` (`phase done ... phase="look"`, at
/// debug): one per reconcile of that service.
fn looks_at(log: &str, service: &str) -> usize {
    log.lines()
        .filter(|l| {
            l.contains("phase done")
                && l.contains("look")
                && l.contains(&format!("service={service} "))
        })
        .count()
}

/// Issue 25, the listing-only resync. With `--resync 1` and nothing changing, a resync
/// compares three container listings with the last and looks at no service; every 10th
/// (`FULL_EVERY`) looks at all, and so still catches what no listing shows: a service's
/// default route changed by hand inside its namespace is pointed at its router again. The
/// build before looked at every service in every resync: 2 services x 12 rounds in the
/// window below, where this allows at most 2 full rounds.
#[test]
fn a_resync_at_rest_looks_at_nothing_but_a_full_one_catches_a_hand_made_change() {
    require_root!();
    let bed = watch::bed(11);
    let mut w = Watch::start(
        &bed,
        &["--resync", "1"],
        &[("NETCONTAINER_LOG", "netcontainer=debug")],
    );
    let services = two_served(&bed, &w);
    // The agents' first pushes and the looks the routers' own events ask for.
    std::thread::sleep(Duration::from_secs(3));
    let before = w.log();
    std::thread::sleep(Duration::from_secs(12));
    let log = w.log();
    let window = &log[before.len()..];
    let rounds = window
        .lines()
        .filter(|l| l.contains("DEBUG resync "))
        .count();
    let full = window
        .lines()
        .filter(|l| l.contains("DEBUG resync ") && l.contains("full=true"))
        .count();
    assert!(
        rounds >= 10,
        "{rounds} resyncs in 12 s with --resync 1:\n{window}"
    );
    assert!(
        (1..=2).contains(&full),
        "{full} full resyncs in 12 s:\n{window}"
    );
    for s in &services {
        let looks = looks_at(window, &s.name);
        assert!(
            looks <= full,
            "{} looked at {looks} times in {rounds} resyncs ({full} full) at rest:\n{window}",
            s.name
        );
    }

    // What no listing shows: a's default route, set back to Docker's gateway by hand.
    let a = &services[0].name;
    let pid = docker_ok(&["inspect", "--format", "{{.State.Pid}}", a]);
    let gateway = docker_ok(&[
        "network",
        "inspect",
        "--format",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
        &bed.network,
    ]);
    let in_ns = |args: &[&str]| {
        let out = std::process::Command::new("nsenter")
            .args(["-t", pid.trim(), "-n", "ip", "-4", "route"])
            .args(args)
            .output()
            .expect("nsenter");
        assert!(out.status.success(), "ip route {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ours = in_ns(&["show", "default"]);
    assert!(
        !gateway.trim().is_empty() && !ours.contains(gateway.trim()),
        "{ours}"
    );
    let changed = w.log().len();
    in_ns(&["replace", "default", "via", gateway.trim()]);
    assert!(
        wait_until(Duration::from_secs(15), watch::POLL, || {
            w.log()[changed..].contains("service's default route pointed at its router again")
        }),
        "the full resync did not point {a}'s route back:\n{}",
        &w.log()[changed..]
    );
    let via = |r: &str| {
        r.split_whitespace()
            .skip_while(|w| *w != "via")
            .nth(1)
            .map(String::from)
    };
    assert_eq!(via(&in_ns(&["show", "default"])), via(&ours));
    w.assert_running();
}
