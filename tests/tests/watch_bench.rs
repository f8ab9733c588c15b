//! Benchmark (ignored by default; run by `scripts/bench-watch`): `netcontainer watch`
//! cold start with N labelled services already running, time from watch's start until
//! every service answers its page on its LAN address from the LAN client. Two builds
//! side by side in the same bed and run: `NETCONTAINER_BENCH_OLD` (the driver before the
//! supervisor) and this tree's `netcontainer`.
//!
//! Scenarios, in this order (services are only ever added): N = each of
//! `NETCONTAINER_BENCH_NS` (default `10,25,50`); after the first N of at least 20, the
//! same N plus one stuck service (its parent's LAN has no DHCP server), timing only the
//! N (the stuck one is named to sort first). Between two runs watch is stopped and every router removed (`docker rm -f`, the
//! state directories too), so each run starts cold; dnsmasq keeps the leases, so the
//! addresses are the same each run. `--timeout 30` (the default) for both builds.
//!
//! Results are appended as Markdown table rows to `NETCONTAINER_BENCH_OUT` (and
//! printed). Holds the Docker suites' lock exclusively.

use netcontainer_tests::docker::{self, DockerBed, SuiteLock};
use netcontainer_tests::watch::{self, Watch};
use netcontainer_tests::*;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

fn run_once(bed: &DockerBed, bin: &std::path::Path, all: &[String], timed: &[String]) -> f64 {
    watch::remove_routers(all);
    let mut w = Watch::start_bin(bed, bin, 30, &[], &[]);
    let t = watch::wait_all_serve(bed, &w, timed, Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", bin.display(), w.log()));
    w.stop();
    watch::remove_routers(all);
    t.as_secs_f64()
}

#[test]
#[ignore]
fn watch_cold_start() {
    require_root!();
    let old = PathBuf::from(
        std::env::var("NETCONTAINER_BENCH_OLD").expect("NETCONTAINER_BENCH_OLD: the old driver"),
    );
    // The new driver: NETCONTAINER_BENCH_NEW (e.g. a release build), else this build's.
    let new = std::env::var_os("NETCONTAINER_BENCH_NEW")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin("netcontainer"));
    let ns: Vec<usize> = std::env::var("NETCONTAINER_BENCH_NS")
        .unwrap_or_else(|_| "10,25,50".into())
        .split(',')
        .map(|n| n.trim().parse().expect("NETCONTAINER_BENCH_NS: numbers"))
        .collect();
    let max = *ns.iter().max().unwrap();
    assert!(max <= 61, "at most 61 services (a /25)");
    let bed = DockerBed::with_network_prefix(0, SuiteLock::exclusive(), 25);
    let dead = watch::DeadParent::new(&bed);
    let mut services: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    let mut stuck_done = false;
    for &n in &ns {
        while services.len() < n {
            let tag = format!("s{}", services.len());
            services.push(watch::labelled_service(&bed, &tag, &[]).name);
        }
        let timed = services[..n].to_vec();
        let mut all = timed.clone();
        let before = run_once(&bed, &old, &all, &timed);
        let after = run_once(&bed, &new, &all, &timed);
        rows.push(format!("| {n} | — | {before:.1} s | {after:.1} s |"));
        eprintln!("{}", rows.last().unwrap());
        if n >= 20 && !stuck_done {
            stuck_done = true;
            let stuck = watch::stuck_service(&bed, &dead);
            all.push(stuck.clone());
            let before = run_once(&bed, &old, &all, &timed);
            let after = run_once(&bed, &new, &all, &timed);
            rows.push(format!(
                "| {n} | + 1 stuck | {before:.1} s | {after:.1} s |"
            ));
            eprintln!("{}", rows.last().unwrap());
            let _ = docker::docker(&["rm", "-f", "-v", &stuck]);
            watch::remove_routers(&all);
        }
    }
    if let Ok(out) = std::env::var("NETCONTAINER_BENCH_OUT") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .expect("open NETCONTAINER_BENCH_OUT");
        for r in &rows {
            writeln!(f, "{r}").unwrap();
        }
    }
}
