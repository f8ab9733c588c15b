//! Load: one Docker host with many network containers at once. Root only; the router and
//! sample images must exist (see tests/tests/docker.rs).
//!
//! N sample services (env `NETCONTAINER_LOAD_SERVICES`, default 20 to keep CI short; 50
//! for the full run) on one Docker network of the bed (a /26 or /25 of 198.51.100.0/24:
//! a service and its router take an address each), ISC Kea with short leases (valid 30 s,
//! renew 10 s, rebind 25 s) instead of the bed's dnsmasq, `netcontainer up` of each
//! service one after the other. Then:
//!
//! * every `up` succeeded, with N distinct addresses from the pool, each the Kea lease of
//!   that router's MAC, and `ls --json` lists all N bound on those addresses;
//! * every address serves its own service's page (`SAMPLE_NAME`) to a LAN client;
//! * renewals are staggered: the `renew_in_secs` that `ls --json` reports are not all
//!   equal, and in Kea's log no more than half of the routers renew within any one
//!   second; after a full renewal round taken with all N up (every router renewed at
//!   least once more, unicast to Kea), all are still bound on the same addresses and
//!   answering;
//! * `down` of every service leaves nothing behind: no router container, no
//!   `/run/netcontainer/<service>` directory, no link of ours in the root namespace, every
//!   lease released in Kea's lease file.
//!
//! The test prints what it measured (time to bring all up, per-`up` times, memory of the
//! routers: agent RSS, their containerd shims, `docker stats`, MemAvailable before and
//! after): run it with `--nocapture` to see it. It holds the Docker suites' lock
//! exclusively (many routers; no watch test may run meanwhile).

use netcontainer_tests::chaos::{self, median_max};
use netcontainer_tests::docker::{self, DockerBed, Service, SuiteLock, router_name};
use netcontainer_tests::kea::KeaOpts;
use netcontainer_tests::watch;
use netcontainer_tests::*;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const VALID: u32 = 30;
const RENEW: u32 = 10;
const REBIND: u32 = 25;

/// The smallest /p (25..=28) whose hosts hold `n` services, their routers and the gateway.
fn prefix_for(n: usize) -> u8 {
    (25..=28u8)
        .rev()
        .find(|p| (1usize << (32 - p)) - 3 >= 2 * n)
        .unwrap_or_else(|| panic!("{n} services do not fit a /25 Docker network (max 62)"))
}

/// `ls --json` as service -> (state, address, renew_in_secs).
fn ls_by_service(bed: &DockerBed) -> BTreeMap<String, (String, Option<Ipv4Addr>, f64)> {
    bed.ls_json()
        .into_iter()
        .filter_map(|e| {
            let service = e["service"].as_str()?.to_string();
            let st = watch::agent(&e)?;
            let renew = st.lease.as_ref().map_or(f64::NAN, |l| l.renew_in_secs);
            Some((service, (st.state.clone(), st.address(), renew)))
        })
        .collect()
}

/// Unicast DHCPREQUESTs (renewals) Kea received from `addr`.
fn renewals_from(reqs: &[KeaRequest], addr: Ipv4Addr) -> usize {
    reqs.iter()
        .filter(|r| r.from == addr && r.is_unicast())
        .count()
}

fn all_serve(bed: &DockerBed, services: &[Service], addrs: &[Ipv4Addr]) -> Vec<f64> {
    services
        .iter()
        .zip(addrs)
        .map(|(s, a)| {
            watch::wait_serves(bed, *a, 80, &s.name, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{e}"))
                .as_secs_f64()
        })
        .collect()
}

#[test]
fn many_network_containers_bound_answering_renewing_then_all_down() {
    require_root!();
    let n = chaos::env_u64("NETCONTAINER_LOAD_SERVICES", 20) as usize;
    assert!(n >= 1, "NETCONTAINER_LOAD_SERVICES must be at least 1");
    let prefix = prefix_for(n);
    let test_start = Instant::now();
    let mut bed = DockerBed::with_network_prefix(0, SuiteLock::exclusive(), prefix);
    let kea = chaos::kea_on_bed(&mut bed, KeaOpts::short(VALID, RENEW, REBIND));
    let mem_before = chaos::mem_available_mib();

    // N services, then N `up`s one after the other.
    let t = Instant::now();
    let services: Vec<Service> = (0..n)
        .map(|i| bed.run_service(&format!("s{i}"), &[]))
        .collect();
    let services_time = t.elapsed();
    // The services' own veths on the bridge; `down` must leave exactly these.
    let links_before = bed.my_links();
    assert!(
        links_before.len() >= n,
        "my_links sees too little: {links_before:?}"
    );
    let t = Instant::now();
    let mut addrs = Vec::new();
    let mut up_ms = Vec::new();
    for s in &services {
        let u = bed.up(&s.name, &[]);
        up_ms.push(u.out.elapsed.as_secs_f64() * 1000.0);
        addrs.push(u.address);
    }
    let up_time = t.elapsed();

    // Distinct addresses from the pool, each Kea's lease of that router's MAC.
    let distinct: BTreeSet<Ipv4Addr> = addrs.iter().copied().collect();
    assert_eq!(distinct.len(), n, "duplicate addresses: {addrs:?}");
    for a in &addrs {
        assert!(docker::in_pool(*a), "{a} is not from the pool");
    }
    let ls = bed.ls_json();
    let leases = kea.active_leases();
    for (s, a) in services.iter().zip(&addrs) {
        let e = ls
            .iter()
            .find(|e| e["service"].as_str() == Some(s.name.as_str()))
            .unwrap_or_else(|| panic!("ls --json does not list {}", s.name));
        let st = watch::agent(e).unwrap_or_else(|| panic!("no agent status for {}: {e}", s.name));
        assert_eq!(st.state, "bound", "{}: {e}", s.name);
        assert_eq!(st.address(), Some(*a), "{}: {e}", s.name);
        let mac = e["mac"].as_str().unwrap_or_default().to_lowercase();
        let l = leases
            .iter()
            .find(|l| l.address == *a)
            .unwrap_or_else(|| panic!("Kea has no active lease of {a}: {leases:?}"));
        assert_eq!(l.hwaddr, mac, "Kea leases {a} to another MAC");
    }
    let renew_in: Vec<f64> = ls_by_service(&bed)
        .into_iter()
        .filter(|(k, _)| services.iter().any(|s| &s.name == k))
        .map(|(_, v)| v.2)
        .collect();

    // Each address answers with its own service's page.
    let t = Instant::now();
    let first_answer = all_serve(&bed, &services, &addrs);
    let serve_time = t.elapsed();

    // Resource use.
    let routers: Vec<String> = services.iter().map(|s| router_name(&s.name)).collect();
    let pids = chaos::router_pids(&routers);
    assert!(
        pids.iter().all(Option::is_some),
        "routers not running: {pids:?}"
    );
    let pids: Vec<u32> = pids.into_iter().flatten().collect();
    let agent_rss: Vec<f64> = pids
        .iter()
        .filter_map(|p| chaos::rss_kib(*p))
        .map(|k| k as f64 / 1024.0)
        .collect();
    let shim_rss: Vec<f64> = pids
        .iter()
        .filter_map(|p| chaos::ppid(*p))
        .filter(|pp| chaos::comm(*pp).is_some_and(|c| c.starts_with("containerd-shim")))
        .filter_map(chaos::rss_kib)
        .map(|k| k as f64 / 1024.0)
        .collect();
    let stats = chaos::docker_mem_mib(&routers);
    let router_mem: Vec<f64> = stats.values().copied().collect();
    let mem_after = chaos::mem_available_mib();

    // A renewal round with all N up: every router renews at least once more.
    let reqs = kea.requests();
    let before: Vec<usize> = addrs.iter().map(|a| renewals_from(&reqs, *a)).collect();
    let t = Instant::now();
    let round = wait_until(
        Duration::from_secs(u64::from(RENEW) + 15),
        Duration::from_millis(500),
        || {
            let reqs = kea.requests();
            addrs
                .iter()
                .zip(&before)
                .all(|(a, b)| renewals_from(&reqs, *a) > *b)
        },
    );
    let reqs = kea.requests();
    assert!(
        round,
        "not every router renewed within {}s: {:?}",
        RENEW + 15,
        addrs
            .iter()
            .zip(&before)
            .filter(|(a, b)| renewals_from(&reqs, **a) <= **b)
            .map(|(a, _)| a)
            .collect::<Vec<_>>()
    );
    let round_time = t.elapsed();
    let renew_events: Vec<(f64, Ipv4Addr)> = reqs
        .iter()
        .filter(|r| r.is_unicast() && distinct.contains(&r.from))
        .filter_map(|r| Some((chaos::kea_time_secs(&r.time)?, r.from)))
        .collect();
    let burst = chaos::max_distinct_in_window(&renew_events, 1.0);
    let distinct_renew_in: BTreeSet<i64> = renew_in.iter().map(|r| *r as i64).collect();
    assert!(
        n < 4 || distinct_renew_in.len() >= 2,
        "every router renews at the same time: renew_in_secs {renew_in:?}"
    );
    assert!(
        burst <= (n / 2).max(3),
        "{burst} of {n} routers renewed within one second: renewals are not staggered"
    );
    // After the round: all still bound on the same addresses, all answering.
    let now = ls_by_service(&bed);
    for (s, a) in services.iter().zip(&addrs) {
        let (state, addr, _) = now
            .get(&s.name)
            .unwrap_or_else(|| panic!("{} missing from ls --json after renewals", s.name));
        assert_eq!(
            (state.as_str(), *addr),
            ("bound", Some(*a)),
            "{} after the renewal round",
            s.name
        );
    }
    all_serve(&bed, &services, &addrs);

    // `down` of all: nothing left behind, every lease released.
    let t = Instant::now();
    let mut down_ms = Vec::new();
    for s in &services {
        let out = bed.down(&s.name);
        assert!(out.ok(), "down {} failed: {out}", s.name);
        down_ms.push(out.elapsed.as_secs_f64() * 1000.0);
    }
    let down_time = t.elapsed();
    for s in &services {
        bed.assert_clean(&s.name);
        assert!(
            !docker::state_dir(&s.name).exists(),
            "{} still there",
            docker::state_dir(&s.name).display()
        );
    }
    let links = bed.my_links();
    assert_eq!(
        links, links_before,
        "links left behind in the root namespace"
    );
    let released = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        addrs.iter().all(|a| kea.is_released(*a))
    });
    assert!(
        released,
        "leases not released: {:?}",
        kea.leases()
            .iter()
            .filter(|l| distinct.contains(&l.address) && !l.is_released())
            .collect::<Vec<_>>()
    );
    let still: Vec<_> = kea
        .active_leases()
        .into_iter()
        .filter(|l| distinct.contains(&l.address))
        .collect();
    assert!(still.is_empty(), "active leases after down: {still:?}");

    let (up_med, up_max) = median_max(&up_ms);
    let (down_med, down_max) = median_max(&down_ms);
    let (rss_med, rss_max) = median_max(&agent_rss);
    let (shim_med, shim_max) = median_max(&shim_rss);
    let (mem_med, mem_max) = median_max(&router_mem);
    let (ans_med, ans_max) = median_max(&first_answer);
    eprintln!(
        "LOAD REPORT\n\
         services: {n} (Docker network /{prefix}; Kea valid {VALID} s, renew {RENEW} s, rebind {REBIND} s)\n\
         docker run of {n} sample services: {:.1} s\n\
         `up` of {n} (sequential): {:.1} s total; per up median {up_med:.0} ms, max {up_max:.0} ms\n\
         all {n} answering HTTP from the LAN client: checked in {:.1} s (first curl per service median {:.2} s, max {:.2} s)\n\
         agent RSS: median {rss_med:.1} MiB, max {rss_max:.1} MiB, sum {:.1} MiB\n\
         containerd-shim per router: median {shim_med:.1} MiB, max {shim_max:.1} MiB, sum {:.1} MiB ({} shims)\n\
         docker stats per router: median {mem_med:.1} MiB, max {mem_max:.1} MiB, sum {:.1} MiB ({} routers)\n\
         host MemAvailable: {:.0} MiB before, {:.0} MiB with {n} services + {n} routers ({:.1} MiB per service+router)\n\
         renew_in_secs right after all up: {} distinct values in [{:.0}, {:.0}]\n\
         renewal round with all up: {:.1} s; most routers renewing within one second: {burst}\n\
         `down` of {n}: {:.1} s total; per down median {down_med:.0} ms, max {down_max:.0} ms\n\
         test total: {:.1} s",
        services_time.as_secs_f64(),
        up_time.as_secs_f64(),
        serve_time.as_secs_f64(),
        ans_med,
        ans_max,
        agent_rss.iter().sum::<f64>(),
        shim_rss.iter().sum::<f64>(),
        shim_rss.len(),
        router_mem.iter().sum::<f64>(),
        router_mem.len(),
        mem_before.unwrap_or(f64::NAN),
        mem_after.unwrap_or(f64::NAN),
        (mem_before.unwrap_or(f64::NAN) - mem_after.unwrap_or(f64::NAN)) / n as f64,
        distinct_renew_in.len(),
        renew_in.iter().copied().fold(f64::INFINITY, f64::min),
        renew_in.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        round_time.as_secs_f64(),
        down_time.as_secs_f64(),
        test_start.elapsed().as_secs_f64(),
    );
}
