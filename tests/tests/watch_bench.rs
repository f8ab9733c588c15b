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
    // NETCONTAINER_BENCH_LOGS=DIR: watch logs at debug (each service's phases timed,
    // `phase=KEY elapsed_ms=N`), and each run's log is kept in DIR.
    let logs = std::env::var_os("NETCONTAINER_BENCH_LOGS").map(PathBuf::from);
    let env: &[(&str, &str)] = if logs.is_some() {
        &[("NETCONTAINER_LOG", "info,netcontainer=debug")]
    } else {
        &[]
    };
    let dockerd = dockerd_pid();
    let d0 = cpu_of_pid(dockerd);
    let mut w = Watch::start_bin(bed, bin, 30, &[], env);
    let t = watch::wait_all_serve(bed, &w, timed, Duration::from_secs(180))
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", bin.display(), w.log()));
    eprintln!(
        "{}: N={} ({} labelled): {:.1} s; CPU: watch {:.2} s, dockerd {:.2} s",
        bin.display(),
        timed.len(),
        all.len(),
        t.as_secs_f64(),
        cpu_of_pid(w.pid()),
        cpu_of_pid(dockerd) - d0
    );
    if let Some(dir) = logs {
        let n = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        let file = bin.file_name().unwrap_or_default().to_string_lossy();
        let name = format!("{n:02}-{file}-n{}-all{}.log", timed.len(), all.len());
        std::fs::write(dir.join(name), w.log()).expect("write NETCONTAINER_BENCH_LOGS");
    }
    w.stop();
    watch::remove_routers(all);
    t.as_secs_f64()
}

/// The two drivers compared: NETCONTAINER_BENCH_OLD, and NETCONTAINER_BENCH_NEW (e.g. a
/// release build), else this build's.
fn drivers() -> (PathBuf, PathBuf) {
    let old = PathBuf::from(
        std::env::var("NETCONTAINER_BENCH_OLD").expect("NETCONTAINER_BENCH_OLD: the old driver"),
    );
    let new = std::env::var_os("NETCONTAINER_BENCH_NEW")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin("netcontainer"));
    (old, new)
}

#[test]
#[ignore]
fn watch_cold_start() {
    require_root!();
    let (old, new) = drivers();
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

/// CPU time of process `pid` (all its threads), in seconds.
fn cpu_of_pid(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// CPU time of a container's cgroup (cgroup v1 `cpuacct` or v2 `cpu.stat`), in seconds.
fn cpu_of_container(name: &str) -> f64 {
    let id = docker::docker_ok(&["inspect", "-f", "{{.Id}}", name]);
    let id = id.trim();
    for (path, v2) in [
        (
            format!("/sys/fs/cgroup/cpuacct/docker/{id}/cpuacct.usage"),
            false,
        ),
        (
            format!("/sys/fs/cgroup/cpu,cpuacct/docker/{id}/cpuacct.usage"),
            false,
        ),
        (
            format!("/sys/fs/cgroup/system.slice/docker-{id}.scope/cpu.stat"),
            true,
        ),
        (format!("/sys/fs/cgroup/docker/{id}/cpu.stat"), true),
    ] {
        let Ok(t) = std::fs::read_to_string(&path) else {
            continue;
        };
        return if v2 {
            t.lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1e6
        } else {
            t.trim().parse::<f64>().unwrap_or(0.0) / 1e9
        };
    }
    panic!("no CPU accounting found for container {name}");
}

fn dockerd_pid() -> u32 {
    let out = std::process::Command::new("pidof")
        .arg("dockerd")
        .output()
        .expect("pidof");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("dockerd's pid")
}

/// One build under who-am-I load: watch serving N labelled services, one plain container
/// asking `GET /container/<a name nobody has>/port/80` 100 times a second for `secs`
/// seconds. Returns (CPU s of watch, dockerd, all routers; answers by status code).
fn whoami_load_once(
    bed: &DockerBed,
    bin: &std::path::Path,
    services: &[String],
    caller: &str,
    secs: u32,
) -> (f64, f64, f64, String) {
    watch::remove_routers(services);
    let mut w = Watch::start_bin(bed, bin, 30, &[], &[]);
    watch::wait_all_serve(bed, &w, services, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", bin.display(), w.log()));
    let gw = "$(ip route | awk '/default/ { print $3 }')";
    // watch binds the network's gateway within a rescan.
    let up = wait_for(Duration::from_secs(15), Duration::from_millis(500), || {
        docker::docker(&[
            "exec",
            caller,
            "sh",
            "-c",
            &format!("wget -q -O - http://{gw}:9001/hostip"),
        ])
        .ok()
    });
    assert!(up.is_some(), "the endpoint never answered\n{}", w.log());
    std::thread::sleep(Duration::from_secs(6));
    let routers: Vec<String> = services.iter().map(|s| docker::router_name(s)).collect();
    let dockerd = dockerd_pid();
    let agents = || routers.iter().map(|r| cpu_of_container(r)).sum::<f64>();
    let (w0, d0, a0) = (cpu_of_pid(w.pid()), cpu_of_pid(dockerd), agents());
    // 100 a second: one request started every 10 ms in the background (a slow answer
    // does not slow the pace); each prints its status code.
    let n = secs * 100;
    let script = format!(
        "H={gw}; i=0; while [ $i -lt {n} ]; do \
           (wget -S -O /dev/null http://$H:9001/container/nobody-$i/port/80 2>&1 \
            | grep -o 'HTTP/1.. [0-9]*' | head -n 1 | cut -d ' ' -f 2) & \
           usleep 10000; i=$((i+1)); done; wait"
    );
    let codes = docker::docker(&["exec", caller, "sh", "-c", &script]).unwrap_or_else(|e| e);
    let (w1, d1, a1) = (cpu_of_pid(w.pid()), cpu_of_pid(dockerd), agents());
    let mut by: std::collections::BTreeMap<String, usize> = Default::default();
    for c in codes.lines().map(str::trim).filter(|c| !c.is_empty()) {
        *by.entry(c.to_string()).or_default() += 1;
    }
    let answers = by
        .iter()
        .map(|(c, k)| format!("{k}× {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    w.stop();
    watch::remove_routers(services);
    (w1 - w0, d1 - d0, a1 - a0, answers)
}

/// Who-am-I under load (ignored; run by hand, the command is in docs/benchmarks.md):
/// `NETCONTAINER_BENCH_OLD` (the driver before the limits) and this tree's, one after the
/// other in the same bed: 3 labelled services (routers), one plain container asking for a
/// name nobody has 100 times a second for `NETCONTAINER_BENCH_SECS` (default 20) seconds.
#[test]
#[ignore]
fn whoami_load() {
    require_root!();
    let (old, new) = drivers();
    let secs: u32 = std::env::var("NETCONTAINER_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let bed = DockerBed::with_network_prefix(0, SuiteLock::exclusive(), 25);
    let services: Vec<String> = (0..3)
        .map(|i| watch::labelled_service(&bed, &format!("w{i}"), &[]).name)
        .collect();
    let caller = bed
        .container("caller", "netcontainer/busybox:latest", &[], &[], true)
        .name;
    let mut rows = Vec::new();
    for (what, b) in [("before", &old), ("after", &new)] {
        let (w, d, a, answers) = whoami_load_once(&bed, b, &services, &caller, secs);
        rows.push(format!(
            "| {what} | {} requests in {secs} s | {w:.2} s | {d:.2} s | {a:.2} s | {answers} |",
            secs * 100
        ));
        eprintln!("{}", rows.last().unwrap());
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
