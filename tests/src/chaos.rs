//! Helpers for the load test (`tests/tests/load.rs`) and the bounded chaos test
//! (`tests/tests/chaos.rs`) on the Docker test bed ([`DockerBed`]).
//!
//! * [`kea_on_bed`]: ISC Kea with short leases instead of the bed's dnsmasq (stopped),
//!   in the bed's LAN namespace on the same bridge and pool (203.0.113.50-150).
//! * [`Prober`]: a LAN client that keeps requesting each service's page (one thread per
//!   service inside the client namespace, short timeouts, bounded by a stop flag) and
//!   records every attempt, so a test can ask "has every service answered since T?".
//! * [`Monitor`]: samples the LAN legs (`lan0`) of the routers and Kea's lease file
//!   every few hundred milliseconds and records any address held by two routers at
//!   once (or held by a router while Kea has leased it to another MAC); it also tells the
//!   [`Prober`] where each service is when a router's address changes.
//! * [`Rng`]: SplitMix64, a fixed-seed generator (reproducible fault sequences).
//! * Resource probes: [`rss_kib`], [`ppid`], [`docker_mem_mib`], [`router_pids`].
//!
//! Everything started here is a thread of the test (stopped and joined on drop) or a
//! short-lived command; nothing is killed by name.

use crate::docker::{DockerBed, router_name};
use crate::kea::{Kea, KeaLease, KeaOpts, parse_lease_csv};
use crate::netns::Netns;
use netcontainer_proto::contract::LAN_IF;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `name` from the environment as a number, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            let parsed = match v.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
        }
        Err(_) => default,
    }
}

/// SplitMix64: small, fast, good enough to pick faults, reproducible from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform duration in `[lo, hi]`, millisecond steps.
    pub fn duration(&mut self, lo: Duration, hi: Duration) -> Duration {
        let lo_ms = lo.as_millis() as u64;
        let hi_ms = hi.as_millis() as u64;
        Duration::from_millis(lo_ms + self.below(hi_ms - lo_ms + 1))
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// Replaces the bed's dnsmasq by Kea with `opts` (same LAN namespace, bridge and pool):
/// dnsmasq is stopped first, so only one server answers.
pub fn kea_on_bed(bed: &mut DockerBed, opts: KeaOpts) -> Kea {
    bed.dnsmasq.stop();
    let (lo, hi) = crate::docker::POOL;
    let opts = KeaOpts {
        subnet: crate::docker::LAN_NET.into(),
        pool: format!("{lo} - {hi}"),
        gateway: crate::docker::LAN_GATEWAY,
        dns: vec![crate::docker::LAN_GATEWAY],
        ..opts
    };
    Kea::start(&bed.lan, opts)
}

/// The current row of every address in Kea's memfile at `path` (the last row wins).
pub fn kea_leases_at(path: &std::path::Path) -> Vec<KeaLease> {
    let rows = parse_lease_csv(&std::fs::read_to_string(path).unwrap_or_default());
    let mut by_addr: BTreeMap<Ipv4Addr, KeaLease> = BTreeMap::new();
    for r in rows {
        by_addr.insert(r.address, r);
    }
    by_addr.into_values().collect()
}

/// `GET / HTTP/1.0` to `addr:port` from the calling thread's network namespace, bounded
/// by `timeout` for the connect and again for the answer: the body.
pub fn http_get(addr: Ipv4Addr, port: u16, timeout: Duration) -> Result<String, String> {
    let to = SocketAddr::V4(SocketAddrV4::new(addr, port));
    let mut s = TcpStream::connect_timeout(&to, timeout).map_err(|e| format!("{to}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .map_err(|e| format!("{to}: write: {e}"))?;
    let mut out = String::new();
    s.read_to_string(&mut out)
        .map_err(|e| format!("{to}: read: {e}"))?;
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.0 200") => Ok(body.to_string()),
        _ => Err(format!("{to}: unexpected answer {out:?}")),
    }
}

/// One request of the [`Prober`].
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub start: Instant,
    pub end: Instant,
    pub ok: bool,
}

/// Served/failed counts and outages of one service, from its probes.
#[derive(Clone, Debug, Default)]
pub struct ProbeSummary {
    pub served: u64,
    pub failed: u64,
    /// Number of runs of consecutive failures.
    pub outages: u64,
    /// Longest time between two answered requests that had failures between them.
    pub longest_outage: Duration,
    /// Sum of those gaps.
    pub total_outage: Duration,
}

/// Summarizes `probes` (in order).
pub fn summarize(probes: &[Probe]) -> ProbeSummary {
    let mut s = ProbeSummary::default();
    let mut last_ok: Option<Instant> = probes.first().map(|p| p.start);
    let mut in_outage = false;
    for p in probes {
        if p.ok {
            s.served += 1;
            if in_outage {
                let gap = p.end.saturating_duration_since(last_ok.unwrap_or(p.start));
                s.longest_outage = s.longest_outage.max(gap);
                s.total_outage += gap;
                in_outage = false;
            }
            last_ok = Some(p.end);
        } else {
            s.failed += 1;
            if !in_outage {
                s.outages += 1;
                in_outage = true;
            }
        }
    }
    if in_outage && let (Some(l), Some(p)) = (last_ok, probes.last()) {
        let gap = p.end.saturating_duration_since(l);
        s.longest_outage = s.longest_outage.max(gap);
        s.total_outage += gap;
    }
    s
}

struct ProbeTarget {
    service: String,
    page: String,
    addr: Arc<Mutex<Ipv4Addr>>,
    probes: Arc<Mutex<Vec<Probe>>>,
    last_error: Arc<Mutex<String>>,
}

/// A LAN client that keeps requesting each service's page (port 80) at its current
/// address: one thread per service in the client namespace, one request every `period`
/// (plus the request's own time), each bounded by `timeout`.
pub struct Prober {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    targets: Vec<ProbeTarget>,
}

impl Prober {
    /// Starts probing `(service, address)` pairs from `client`.
    pub fn start(
        client: &Arc<Netns>,
        services: &[(String, Ipv4Addr)],
        period: Duration,
        timeout: Duration,
    ) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let mut p = Prober {
            stop: stop.clone(),
            threads: Vec::new(),
            targets: Vec::new(),
        };
        for (service, addr) in services {
            let t = ProbeTarget {
                service: service.clone(),
                page: crate::watch::page(service, 80),
                addr: Arc::new(Mutex::new(*addr)),
                probes: Arc::new(Mutex::new(Vec::new())),
                last_error: Arc::new(Mutex::new(String::new())),
            };
            let (client, stop) = (client.clone(), stop.clone());
            let (want, addr, probes, last_error) = (
                t.page.clone(),
                t.addr.clone(),
                t.probes.clone(),
                t.last_error.clone(),
            );
            p.threads.push(std::thread::spawn(move || {
                let r = client.run_in(|| {
                    while !stop.load(Ordering::Relaxed) {
                        let a = *addr.lock().unwrap();
                        let start = Instant::now();
                        let r = http_get(a, 80, timeout);
                        let ok = matches!(&r, Ok(body) if body.trim() == want.trim());
                        let end = Instant::now();
                        if !ok {
                            *last_error.lock().unwrap() = match r {
                                Ok(body) => format!("{a}: answered {:?}", body.trim()),
                                Err(e) => e,
                            };
                        }
                        probes.lock().unwrap().push(Probe { start, end, ok });
                        std::thread::sleep(period);
                    }
                });
                if let Err(e) = r {
                    panic!("cannot enter the client namespace: {e}");
                }
            }));
            p.targets.push(t);
        }
        p
    }

    pub fn services(&self) -> Vec<String> {
        self.targets.iter().map(|t| t.service.clone()).collect()
    }

    /// Where requests for service `i` go from now on.
    pub fn set_addr(&self, i: usize, addr: Ipv4Addr) {
        *self.targets[i].addr.lock().unwrap() = addr;
    }

    pub fn addr(&self, i: usize) -> Ipv4Addr {
        *self.targets[i].addr.lock().unwrap()
    }

    /// Handles for a [`Monitor`] to redirect the probes.
    pub fn addr_handles(&self) -> Vec<Arc<Mutex<Ipv4Addr>>> {
        self.targets.iter().map(|t| t.addr.clone()).collect()
    }

    /// When service `i` first answered with a request that started at or after `since`.
    pub fn answered_since(&self, i: usize, since: Instant) -> Option<Instant> {
        let probes = self.targets[i].probes.lock().unwrap();
        probes
            .iter()
            .rev()
            .take_while(|p| p.start >= since)
            .filter(|p| p.ok)
            .last()
            .map(|p| p.end)
    }

    /// Waits until every service answered a request started at or after `since`: the
    /// time from `since` to the last of those answers, or which services did not answer
    /// within `bound` (measured from `since`).
    pub fn wait_all_answer_since(
        &self,
        since: Instant,
        bound: Duration,
    ) -> Result<Duration, String> {
        let deadline = since + bound;
        loop {
            let got: Vec<Option<Instant>> = (0..self.targets.len())
                .map(|i| self.answered_since(i, since))
                .collect();
            if got.iter().all(Option::is_some) {
                let last = got.into_iter().flatten().max().unwrap_or(since);
                return Ok(last.saturating_duration_since(since));
            }
            if Instant::now() >= deadline {
                let missing: Vec<String> = got
                    .iter()
                    .enumerate()
                    .filter(|(_, g)| g.is_none())
                    .map(|(i, _)| {
                        let t = &self.targets[i];
                        format!(
                            "{} at {} (last error: {})",
                            t.service,
                            self.addr(i),
                            t.last_error.lock().unwrap()
                        )
                    })
                    .collect();
                return Err(format!(
                    "not answering within {bound:?}: {}",
                    missing.join("; ")
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Stops the threads; every service's probes.
    pub fn stop(&mut self) -> Vec<Vec<Probe>> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.targets
            .iter()
            .map(|t| t.probes.lock().unwrap().clone())
            .collect()
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The agent under a router's PID 1 (the supervisor, `--supervise`): its first child.
pub fn agent_child(pid1: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid1}/task/{pid1}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `{{.Name}} {{.State.Pid}}` of `containers` in one `docker inspect`: the host pid of
/// each running one's PID 1 (None when absent or not running).
pub fn router_pids(containers: &[String]) -> Vec<Option<u32>> {
    let mut c = Command::new("docker");
    c.args(["inspect", "--format", "{{.Name}} {{.State.Pid}}"])
        .args(containers)
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let out = c
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut by_name: BTreeMap<String, u32> = BTreeMap::new();
    for l in out.lines() {
        let mut w = l.split_whitespace();
        if let (Some(n), Some(p)) = (w.next(), w.next())
            && let Ok(p) = p.parse::<u32>()
            && p > 0
        {
            by_name.insert(n.trim_start_matches('/').to_string(), p);
        }
    }
    containers.iter().map(|c| by_name.get(c).copied()).collect()
}

/// MAC and IPv4 addresses of `lan0` in the network namespace of host pid `pid`.
pub fn lan_leg(pid: u32) -> Option<(String, Vec<Ipv4Addr>)> {
    let out = Command::new("nsenter")
        .args([
            "-t",
            &pid.to_string(),
            "-n",
            "ip",
            "-j",
            "-4",
            "addr",
            "show",
        ])
        .args(["dev", LAN_IF])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout);
    let addrs = crate::parse_ip_addr_json(&s)
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    // `ip -4 addr` of a link without IPv4 addresses prints its entry without
    // addr_info (or nothing): the MAC then comes from `ip link`.
    let mac = serde_json::from_str::<serde_json::Value>(&s)
        .ok()
        .and_then(|v| v[0]["address"].as_str().map(str::to_lowercase));
    let mac = match mac {
        Some(m) => m,
        None => {
            let o = Command::new("nsenter")
                .args(["-t", &pid.to_string(), "-n", "ip", "-j", "link", "show"])
                .args(["dev", LAN_IF])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()?;
            let v: serde_json::Value =
                serde_json::from_str(&String::from_utf8_lossy(&o.stdout)).ok()?;
            v[0]["address"].as_str()?.to_lowercase()
        }
    };
    Some((mac, addrs))
}

/// One sample of the routers' LAN legs: (service index, MAC, addresses).
pub type Legs = Vec<(usize, String, Vec<Ipv4Addr>)>;

/// Address conflicts in one sample: an address on two routers' legs, or on a router's
/// leg while Kea's current row for it is an active lease (more than 1 s left) of
/// another MAC.
pub fn conflicts(
    services: &[String],
    legs: &[(usize, String, Vec<Ipv4Addr>)],
    kea: &[KeaLease],
    now_secs: u64,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut holder: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    for (i, mac, addrs) in legs {
        for a in addrs {
            if let Some(j) = holder.insert(*a, *i)
                && j != *i
            {
                out.push(format!(
                    "{a} on the LAN legs of both {} and {}",
                    services[j], services[*i]
                ));
            }
            if let Some(l) = kea.iter().find(|l| l.address == *a)
                && l.valid_lifetime > 0
                && l.state == 0
                && l.expire > now_secs + 1
                && l.hwaddr != *mac
            {
                out.push(format!(
                    "{a} on {}'s leg ({mac}) while Kea leases it to {} until {}",
                    services[*i], l.hwaddr, l.expire
                ));
            }
        }
    }
    out
}

/// What the [`Monitor`] saw.
#[derive(Clone, Debug, Default)]
pub struct MonitorReport {
    pub samples: u64,
    /// Conflicts, with the time since the monitor started.
    pub violations: Vec<String>,
    /// Per service: how often its router's address changed to another address.
    pub address_changes: Vec<u32>,
    /// Per service: every address its router held.
    pub addresses: Vec<Vec<Ipv4Addr>>,
}

/// Samples the routers of `services` every `period` (see [`conflicts`]) and redirects
/// the [`Prober`] when a router's address changes. Stopped and joined on drop.
pub struct Monitor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    report: Arc<Mutex<MonitorReport>>,
}

impl Monitor {
    pub fn start(
        services: Vec<String>,
        kea_lease_file: PathBuf,
        probe_addrs: Vec<Arc<Mutex<Ipv4Addr>>>,
        period: Duration,
    ) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(MonitorReport {
            address_changes: vec![0; services.len()],
            addresses: probe_addrs
                .iter()
                .map(|a| vec![*a.lock().unwrap()])
                .collect(),
            ..MonitorReport::default()
        }));
        let (st, rep) = (stop.clone(), report.clone());
        let thread = std::thread::spawn(move || {
            let routers: Vec<String> = services.iter().map(|s| router_name(s)).collect();
            let started = Instant::now();
            while !st.load(Ordering::Relaxed) {
                // Kea first: a row read before the legs cannot be newer than them.
                let kea = kea_leases_at(&kea_lease_file);
                let now = crate::kea::now_secs();
                let legs: Legs = router_pids(&routers)
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, pid)| {
                        let (mac, addrs) = lan_leg(pid?)?;
                        Some((i, mac, addrs))
                    })
                    .collect();
                let found = conflicts(&services, &legs, &kea, now);
                let mut r = rep.lock().unwrap();
                r.samples += 1;
                let t = started.elapsed().as_secs_f64();
                r.violations
                    .extend(found.into_iter().map(|v| format!("t={t:.1}s: {v}")));
                for (i, _, addrs) in &legs {
                    if let [a] = addrs[..] {
                        let mut cur = probe_addrs[*i].lock().unwrap();
                        if *cur != a {
                            *cur = a;
                            r.address_changes[*i] += 1;
                            if !r.addresses[*i].contains(&a) {
                                r.addresses[*i].push(a);
                            }
                        }
                    }
                }
                drop(r);
                std::thread::sleep(period);
            }
        });
        Monitor {
            stop,
            thread: Some(thread),
            report,
        }
    }

    pub fn report(&self) -> MonitorReport {
        self.report.lock().unwrap().clone()
    }

    /// Stops sampling; the final report.
    pub fn stop(&mut self) -> MonitorReport {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.report()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The number after `key` (e.g. `"VmRSS:"`) in the `/proc` file `path`: a size in KiB.
pub fn proc_kib(path: &str, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(path).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    proc_kib(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// Parent pid of `pid`.
pub fn ppid(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces: fields after the last ')'.
    s.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `/proc/<pid>/comm`.
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Memory use of `containers` per `docker stats --no-stream` (MiB), by name.
pub fn docker_mem_mib(containers: &[String]) -> BTreeMap<String, f64> {
    let out = Command::new("docker")
        .args([
            "stats",
            "--no-stream",
            "--format",
            "{{.Name}}\t{{.MemUsage}}",
        ])
        .args(containers)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| {
            let (name, usage) = l.split_once('\t')?;
            Some((name.to_string(), parse_mem(usage.split('/').next()?)?))
        })
        .collect()
}

/// `1.5MiB`, `812KiB`, `1.2GiB`, `100B` (docker's units) in MiB.
pub fn parse_mem(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let v: f64 = num.trim().parse().ok()?;
    let f = match unit {
        "B" => 1.0 / (1024.0 * 1024.0),
        "KiB" | "kB" => 1.0 / 1024.0,
        "MiB" | "MB" => 1.0,
        "GiB" | "GB" => 1024.0,
        _ => return None,
    };
    Some(v * f)
}

/// MemAvailable of the host in MiB.
pub fn mem_available_mib() -> Option<f64> {
    Some(proc_kib("/proc/meminfo", "MemAvailable:")? as f64 / 1024.0)
}

/// (median, max) of `v` (0, 0 when empty).
pub fn median_max(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (med, s[n - 1])
}

/// `2026-11-22 07:52:57.146` (Kea's log time) as seconds since the day's midnight.
pub fn kea_time_secs(t: &str) -> Option<f64> {
    let hms = t.split_whitespace().nth(1)?;
    let mut it = hms.split(':');
    let h: f64 = it.next()?.parse().ok()?;
    let m: f64 = it.next()?.parse().ok()?;
    let s: f64 = it.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// The largest number of distinct keys whose events fall into one window of `width`
/// seconds (events: (time in seconds, key)).
pub fn max_distinct_in_window<K: Ord + Clone>(events: &[(f64, K)], width: f64) -> usize {
    let mut ev = events.to_vec();
    ev.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut best = 0;
    for i in 0..ev.len() {
        let keys: std::collections::BTreeSet<&K> = ev[i..]
            .iter()
            .take_while(|e| e.0 < ev[i].0 + width)
            .map(|e| &e.1)
            .collect();
        best = best.max(keys.len());
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_reproducible_and_bounded() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..100 {
            let x = a.below(3);
            assert_eq!(x, b.below(3));
            assert!(x < 3);
        }
        let d = a.duration(Duration::from_secs(3), Duration::from_secs(4));
        assert!(d >= Duration::from_secs(3) && d <= Duration::from_secs(4));
        let mut v = [1, 2, 3, 4];
        a.shuffle(&mut v);
        v.sort();
        assert_eq!(v, [1, 2, 3, 4]);
    }

    #[test]
    fn parses_docker_mem_and_kea_time() {
        assert_eq!(parse_mem("1.5MiB "), Some(1.5));
        assert_eq!(parse_mem("512KiB"), Some(0.5));
        assert_eq!(parse_mem("1GiB"), Some(1024.0));
        assert_eq!(parse_mem("x"), None);
        assert_eq!(
            kea_time_secs("2026-11-22 07:52:57.146"),
            Some(7.0 * 3600.0 + 52.0 * 60.0 + 57.146)
        );
    }

    #[test]
    fn windows_and_summaries() {
        let ev = [(0.0, 1), (0.5, 2), (0.9, 1), (3.0, 3), (3.2, 4), (3.4, 5)];
        assert_eq!(max_distinct_in_window(&ev, 1.0), 3);
        assert_eq!(median_max(&[3.0, 1.0, 2.0]), (2.0, 3.0));
        let t0 = Instant::now();
        let p = |s: u64, ok: bool| Probe {
            start: t0 + Duration::from_secs(s),
            end: t0 + Duration::from_secs(s),
            ok,
        };
        let s = summarize(&[p(0, true), p(1, false), p(2, false), p(5, true), p(6, true)]);
        assert_eq!((s.served, s.failed, s.outages), (3, 2, 1));
        assert_eq!(s.longest_outage, Duration::from_secs(5));
    }

    #[test]
    fn finds_conflicts() {
        let services = vec!["a".to_string(), "b".to_string()];
        let a = Ipv4Addr::new(203, 0, 113, 60);
        let legs: Legs = vec![
            (0, "02:00:00:00:00:01".into(), vec![a]),
            (1, "02:00:00:00:00:02".into(), vec![a]),
        ];
        let lease = KeaLease {
            address: a,
            hwaddr: "02:00:00:00:00:01".into(),
            client_id: String::new(),
            valid_lifetime: 8,
            expire: 100,
            subnet_id: 1,
            hostname: String::new(),
            state: 0,
        };
        let c = conflicts(&services, &legs, std::slice::from_ref(&lease), 50);
        assert_eq!(c.len(), 2, "{c:?}");
        let c = conflicts(&services, &legs[..1], &[lease], 50);
        assert!(c.is_empty(), "{c:?}");
    }
}
