//! Lease-time benchmark: "start of the client to address on the interface" and RSS while
//! bound, for the reference clients (ISC dhclient, busybox udhcpc) and, if its binaries
//! are given, the netcontainer agent, against dnsmasq (`--no-ping`) and Kea.
//!
//!   leasebench [--runs N] [--servers dnsmasq,kea] [--clients dhclient,udhcpc,agent]
//!              [--clients6 dhclient,dhcpcd-ra,dhcpcd,agent] [--out6 FILE] [--bin-dir DIR]
//!
//! IPv6 (`--clients6`, none by default): after the IPv4 rows of a server, the same bed
//! gets IPv6 (2001:db8:1::1/64 on br0) and a DHCPv6 server with Rapid Commit allowed:
//! Kea DHCPv6 plus radvd (M and O flags, no A flag; radvd answers a Router Solicitation at
//! once), or dnsmasq restarted with its RA (M and O, no A) and DHCPv6 range. The IPv4
//! server keeps running. Each run: a fresh router namespace, `lan0` brought up with the
//! kernel's RA handling off (`accept_ra` 0: no kernel RS, no kernel SLAAC) and its
//! link-local address past DAD before the clock starts (so no client waits for it), then
//! the clock runs from the client's start (the agent: `netcontainer agent apply`, as for
//! IPv4) to the first RTM_NEWADDR of a global IPv6 address on lan0 (counted while still
//! tentative). See `refclient6` for what each reference client does. The agent's RSS is
//! taken with both families bound (apply returns once the IPv4 lease is bound). The table
//! goes to `--out6 FILE` when given, else to stdout after the IPv4 one.
//!
//! Root only. Each run: a fresh router namespace with a macvlan `lan0` (the same MAC for
//! every run of one client, so the pools never run out), a netlink watch on it, then the
//! clock starts and the client is started; the time is taken when RTM_NEWADDR for lan0
//! is read. Reference clients are spawned directly in the namespace (setns, no
//! `ip netns exec`). For the agent, the agent is started first (not timed) and the clock
//! runs from the start of `netcontainer agent apply` (on the host) to the address.
//! RSS is VmRSS of the client (the agent, not the driver) 300 ms after the address.
//! Every run counts (no warm-up: a router's first plan gets none). Prints a markdown table
//! on stdout.

use netcontainer_proto::contract::LAN_IF;
use netcontainer_tests::refclient::{self, RefClientKind};
use netcontainer_tests::refclient6::{self, RefClient6Kind};
use netcontainer_tests::v6::{
    Kea6, Kea6Opts, Radvd, RadvdOpts, addrs6, dnsmasq_v6_args, lan_v6, link_local_of,
};
use netcontainer_tests::*;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq)]
enum Client {
    Ref(RefClientKind),
    Agent,
    /// The agent of the build before (`--baseline-bin-dir`), measured the same way in the
    /// same run.
    AgentBaseline,
}

impl Client {
    fn label(&self) -> &'static str {
        match self {
            Client::Ref(RefClientKind::Dhclient) => "dhclient 4.4 (`-d -sf SCRIPT`)",
            Client::Ref(RefClientKind::Udhcpc) => "busybox udhcpc (`-f -s SCRIPT`)",
            Client::Agent => "netcontainer agent (`agent apply` to address)",
            Client::AgentBaseline => "netcontainer agent, the build before (same method)",
        }
    }
    fn mac(&self, server: usize) -> String {
        let n = match self {
            Client::Ref(RefClientKind::Dhclient) => 1,
            Client::Ref(RefClientKind::Udhcpc) => 2,
            Client::Agent => 3,
            Client::AgentBaseline => 8,
        };
        format!("02:00:00:00:{server:02x}:{n:02x}")
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Client6 {
    Ref(RefClient6Kind),
    Agent,
}

impl Client6 {
    fn label(&self) -> &'static str {
        match self {
            Client6::Ref(RefClient6Kind::Dhclient) => "dhclient 4.4 `-6` (Solicit at once)",
            Client6::Ref(RefClient6Kind::DhcpcdRa) => "dhcpcd 9.4 `-6` (RS, RA, then Solicit)",
            Client6::Ref(RefClient6Kind::DhcpcdDirect) => {
                "dhcpcd 9.4 `-6`, `noipv6rs` `ia_na 1` (Solicit at once)"
            }
            Client6::Agent => "netcontainer agent (`agent apply` to address; RS, RA, then Solicit)",
        }
    }
    /// For the verdict lines.
    fn short(&self) -> &'static str {
        match self {
            Client6::Ref(RefClient6Kind::Dhclient) => "dhclient -6",
            Client6::Ref(RefClient6Kind::DhcpcdRa) => "dhcpcd (RA first)",
            Client6::Ref(RefClient6Kind::DhcpcdDirect) => "dhcpcd (Solicit at once)",
            Client6::Agent => "agent",
        }
    }
    fn mac(&self, server: usize) -> String {
        let n = match self {
            Client6::Ref(RefClient6Kind::Dhclient) => 4,
            Client6::Ref(RefClient6Kind::DhcpcdRa) => 5,
            Client6::Ref(RefClient6Kind::DhcpcdDirect) => 6,
            Client6::Agent => 7,
        };
        format!("02:00:00:00:{server:02x}:{n:02x}")
    }
}

#[derive(Clone, Copy)]
struct Sample {
    latency: Duration,
    rss_kb: Option<u64>,
}

/// How long after its address a client's RSS is read, the same for every client: long
/// enough for the agent's mDNS name to be probed and announced (about 1.3 s), so that
/// what the responder holds is counted.
const SETTLE: Duration = Duration::from_millis(2000);

fn run_once(
    lan: &mut Lan,
    client: Client,
    server_idx: usize,
    bin_dir: &Option<PathBuf>,
) -> Result<Sample, String> {
    let mac = client.mac(server_idx);
    let router = lan.add_router_with_mac(Some(&mac));
    let tmp = TempDir::new("bench");
    let res = (|| {
        let watch = AddrWatch::open(&router, LAN_IF).map_err(|e| e.to_string())?;
        let waiter = std::thread::spawn(move || watch.wait(Duration::from_secs(30)));
        match client {
            Client::Ref(kind) => {
                let mut cmd = refclient::command(kind, LAN_IF, tmp.path(), None);
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                let t0 = Instant::now();
                let child = router.spawn_direct(&mut cmd).map_err(|e| e.to_string())?;
                let mut guard = ProcGuard::new(child, kind.label());
                let (_, _, t1) = waiter.join().unwrap().ok_or("no address within 30 s")?;
                std::thread::sleep(SETTLE);
                let rss = refclient::rss_kb(guard.pid());
                guard.kill();
                Ok(Sample {
                    latency: t1 - t0,
                    rss_kb: rss,
                })
            }
            Client::Agent | Client::AgentBaseline => {
                // SAFETY: single-threaded at this point apart from the waiter, which does not
                // read the environment.
                match bin_dir {
                    Some(d) => unsafe { std::env::set_var("NETCONTAINER_BIN_DIR", d) },
                    None => unsafe { std::env::remove_var("NETCONTAINER_BIN_DIR") },
                }
                let mut agent = Agent::start(&router, tmp.path());
                let t0 = Instant::now();
                // The agent as `up` runs it: with a hostname and mDNS on (the
                // build before, without mDNS, gets the same hostname).
                let mdns: &[&str] = if matches!(client, Client::Agent) {
                    &["--hostname", "bench", "--mdns"]
                } else {
                    &["--hostname", "bench"]
                };
                let mut apply = Command::new(bin("netcontainer"))
                    .args(["agent", "apply", "--socket"])
                    .arg(agent.socket())
                    .args(["--interface", LAN_IF, "--wait", "20"])
                    .args(mdns)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| e.to_string())?;
                let got = waiter.join().unwrap();
                let st = apply.wait().map_err(|e| e.to_string())?;
                let (_, _, t1) = got.ok_or("no address within 30 s")?;
                if !st.success() {
                    return Err(format!("apply failed: {st}"));
                }
                std::thread::sleep(SETTLE);
                let rss = agent.pid().and_then(refclient::rss_kb);
                agent.kill9();
                Ok(Sample {
                    latency: t1 - t0,
                    rss_kb: rss,
                })
            }
        }
    })();
    lan.remove_router(&router);
    drop(router);
    res
}

/// A reference client leading a process group of its own; dropping it stops the group.
struct GroupGuard(ProcGuard);

impl GroupGuard {
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) of the process group that this child leads (created with
        // process_group(0), not reaped yet: the guard owns it).
        unsafe {
            libc::kill(-(self.0.pid() as libc::pid_t), sig);
        }
    }

    /// VmRSS summed over the group's processes (dhcpcd: the manager and its
    /// privilege-separation helpers; dhclient: one process).
    fn rss_kb(&self) -> Option<u64> {
        let pgid = self.0.pid();
        let mut sum = None;
        for e in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the command's closing parenthesis: state ppid pgrp ...
            let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
            if after.split_whitespace().nth(2) == Some(&pgid.to_string())
                && let Some(kb) = refclient::rss_kb(pid)
            {
                sum = Some(sum.unwrap_or(0) + kb);
            }
        }
        sum
    }

    /// SIGTERM to the group (dhcpcd then takes its helpers down), up to 3 s, then SIGKILL
    /// to whatever is left of it.
    fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        self.0.wait_timeout(Duration::from_secs(3));
        self.signal(libc::SIGKILL);
        self.0.kill();
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `lan0` up with the kernel's RA handling off, its link-local address past DAD: the
/// state every IPv6 client starts from (not timed).
fn prepare_lan0_v6(router: &Netns, mac: &str) -> Result<(), String> {
    router.exec_ok(&["sysctl", "-q", "-w", "net.ipv6.conf.lan0.accept_ra=0"]);
    router.ip(&["link", "set", LAN_IF, "up"]);
    let ll = link_local_of(mac).to_string();
    let ready = wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
        let out = router.ip(&["-6", "addr", "show", "dev", LAN_IF]);
        out.contains(&ll) && !out.contains("tentative")
    });
    if ready {
        Ok(())
    } else {
        Err("lan0's link-local address stayed tentative".into())
    }
}

fn run_once6(
    lan: &mut Lan,
    client: Client6,
    server_idx: usize,
    bin_dir: &Option<PathBuf>,
) -> Result<Sample, String> {
    let mac = client.mac(server_idx);
    let router = lan.add_router_with_mac(Some(&mac));
    let tmp = TempDir::new("bench6");
    let res = (|| {
        prepare_lan0_v6(&router, &mac)?;
        if !addrs6(&router, LAN_IF).is_empty() {
            return Err("lan0 has a global IPv6 address before the start".into());
        }
        let watch = AddrWatch::open6(&router, LAN_IF).map_err(|e| e.to_string())?;
        let waiter = std::thread::spawn(move || watch.wait6(Duration::from_secs(30)));
        match client {
            Client6::Ref(kind) => {
                let mut cmd = refclient6::command(kind, LAN_IF, tmp.path());
                let log =
                    std::fs::File::create(tmp.join("client.out")).map_err(|e| e.to_string())?;
                // A process group of its own: dhcpcd's privilege-separation helpers outlive
                // a killed manager (holding the namespace and its macvlan), so the whole
                // group is stopped.
                cmd.stdin(Stdio::null())
                    .stdout(log.try_clone().map_err(|e| e.to_string())?)
                    .stderr(log)
                    .process_group(0);
                let t0 = Instant::now();
                let child = router.spawn_direct(&mut cmd).map_err(|e| e.to_string())?;
                let mut group = GroupGuard(ProcGuard::new(child, client.label()));
                let got = waiter.join().unwrap();
                let Some((_, _, t1)) = got else {
                    return Err(format!(
                        "no address within 30 s:\n{}\n{}",
                        tail(&tmp.join("client.out"), 10),
                        tail(&tmp.join("dhcpcd.log"), 10)
                    ));
                };
                std::thread::sleep(SETTLE);
                let rss = group.rss_kb();
                group.stop();
                Ok(Sample {
                    latency: t1 - t0,
                    rss_kb: rss,
                })
            }
            Client6::Agent => {
                if let Some(d) = bin_dir {
                    // SAFETY: as in run_once: the waiter does not read the environment.
                    unsafe { std::env::set_var("NETCONTAINER_BIN_DIR", d) };
                }
                let mut agent = Agent::start(&router, tmp.path());
                let t0 = Instant::now();
                // --wait: apply returns once the IPv4 lease is bound; the IPv6 task runs
                // beside it from the plan's arrival.
                let mut apply = Command::new(bin("netcontainer"))
                    .args(["agent", "apply", "--socket"])
                    .arg(agent.socket())
                    .args(["--interface", LAN_IF, "--wait", "20"])
                    .args(["--hostname", "bench", "--mdns"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| e.to_string())?;
                let got = waiter.join().unwrap();
                let st = apply.wait().map_err(|e| e.to_string())?;
                let (_, _, t1) = got.ok_or("no IPv6 address within 30 s")?;
                if !st.success() {
                    return Err(format!("apply failed: {st}"));
                }
                // Both families bound: the IPv4 lease (apply returned) and the address.
                std::thread::sleep(SETTLE);
                let rss = agent.pid().and_then(refclient::rss_kb);
                agent.kill9();
                Ok(Sample {
                    latency: t1 - t0,
                    rss_kb: rss,
                })
            }
        }
    })();
    lan.remove_router(&router);
    drop(router);
    res
}

/// Runs `once` `runs` times (at most 3 failures), logging each; every run counts, since
/// nothing a router meets on its first plan is warm.
fn measure(
    runs: usize,
    what: &str,
    mut once: impl FnMut() -> Result<Sample, String>,
) -> (Vec<Sample>, usize) {
    let mut samples = Vec::new();
    let mut failures = 0;
    for i in 1..=runs {
        match once() {
            Ok(s) => {
                eprintln!("{what} run {i}: {} rss {:?} kB", ms(s.latency), s.rss_kb);
                samples.push(s);
            }
            Err(e) => {
                eprintln!("{what} run {i}: FAILED {e}");
                failures += 1;
                if failures > 3 {
                    break;
                }
            }
        }
    }
    (samples, failures)
}

fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}

fn median_rss(samples: &[Sample]) -> Option<u64> {
    let mut rss: Vec<u64> = samples.iter().filter_map(|s| s.rss_kb).collect();
    rss.sort();
    rss.get(rss.len() / 2).copied()
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

/// The markdown table: one row per (label, server, samples, failures).
fn table(rows: &[(&'static str, String, Vec<Sample>, usize)]) -> String {
    let mut out = String::new();
    out.push_str(
        "| client | server | runs | median | p90 | min | max | RSS while bound (median) |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for (label, server, samples, failures) in rows {
        if samples.is_empty() {
            out.push_str(&format!(
                "| {label} | {server} | 0 ({failures} failed) | - | - | - | - | - |\n"
            ));
            continue;
        }
        let mut l: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
        l.sort();
        let n = l.len();
        let p90 = l[((n as f64 * 0.9).ceil() as usize).clamp(1, n) - 1];
        let rss_s = median_rss(samples).map(mb).unwrap_or_else(|| "-".into());
        let runs_s = if *failures > 0 {
            format!("{n} ({failures} failed)")
        } else {
            n.to_string()
        };
        out.push_str(&format!(
            "| {label} | {server} | {runs_s} | {} | {} | {} | {} | {rss_s} |\n",
            ms(l[n / 2]),
            ms(p90),
            ms(l[0]),
            ms(l[n - 1]),
        ));
    }
    out
}

/// The v6 table's verdict lines: the agent against the faster reference client per server
/// (target: at most half), and its RSS with both families bound against dhclient's IPv4
/// RSS from the same server's IPv4 rows (target: not above).
fn verdicts6(
    rows6: &[(Client6, String, Vec<Sample>, usize)],
    dhclient4_rss: &[(String, (u64, u64, u64))],
) -> String {
    let mut out = String::new();
    let servers: Vec<&String> = rows6.iter().map(|r| &r.1).fold(Vec::new(), |mut v, s| {
        if !v.contains(&s) {
            v.push(s)
        }
        v
    });
    for server in servers {
        let of = |c: Client6| {
            rows6
                .iter()
                .find(|r| r.0 == c && &r.1 == server)
                .map(|r| &r.2)
        };
        let Some(agent) = of(Client6::Agent) else {
            continue;
        };
        let Some(a) = median(agent.iter().map(|s| s.latency).collect()) else {
            continue;
        };
        let refs: Vec<(&str, Duration)> = rows6
            .iter()
            .filter(|r| &r.1 == server && r.0 != Client6::Agent)
            .filter_map(|r| {
                Some((
                    r.0.short(),
                    median(r.2.iter().map(|s| s.latency).collect())?,
                ))
            })
            .collect();
        let ratios: Vec<String> = refs
            .iter()
            .map(|(l, d)| {
                format!(
                    "{:.2} of {l} ({})",
                    a.as_secs_f64() / d.as_secs_f64(),
                    ms(*d)
                )
            })
            .collect();
        let fastest = refs.iter().min_by_key(|r| r.1);
        let verdict = match fastest {
            Some((l, d)) => {
                let r = a.as_secs_f64() / d.as_secs_f64();
                format!(
                    "against the faster reference client ({l}): {r:.2}, target at most 0.5: {}",
                    if r <= 0.5 { "met" } else { "not met" }
                )
            }
            None => "no reference client measured".into(),
        };
        out.push_str(&format!(
            "- {server}: agent median {}; {}; {verdict}.\n",
            ms(a),
            ratios.join(", ")
        ));
        let d4 = dhclient4_rss
            .iter()
            .find(|(s, _)| s == server)
            .map(|(_, r)| *r);
        if let (Some(ar), Some((dr, lo, hi))) = (median_rss(agent), d4) {
            out.push_str(&format!(
                "- {server}: agent RSS with both families bound {ar} kB (median) vs dhclient \
                 with IPv4 alone (the IPv4 rows above) {dr} kB (median; {lo}-{hi} kB over its \
                 runs), target not above: {}.\n",
                if ar <= dr { "met" } else { "not met" }
            ));
        }
    }
    out
}

/// The IPv4 table's verdict lines: per server, each agent row against dhclient (target:
/// at most half its median) and its RSS while bound against dhclient's (target: not
/// above).
fn verdicts4(rows: &[(Client, String, Vec<Sample>, usize)]) -> String {
    let mut out = String::new();
    for (client, server, samples, _) in rows {
        if !matches!(client, Client::Agent | Client::AgentBaseline) {
            continue;
        }
        let Some(dh) = rows
            .iter()
            .find(|r| r.0 == Client::Ref(RefClientKind::Dhclient) && &r.1 == server)
        else {
            continue;
        };
        let med = |v: &[Sample]| median(v.iter().map(|s| s.latency).collect());
        let (Some(a), Some(d)) = (med(samples), med(&dh.2)) else {
            continue;
        };
        let r = a.as_secs_f64() / d.as_secs_f64();
        let who = match client {
            Client::AgentBaseline => "the build before",
            _ => "agent",
        };
        out.push_str(&format!(
            "- {server}: {who} median {} vs dhclient {}: {r:.2}, target at most 0.5: {}",
            ms(a),
            ms(d),
            if r <= 0.5 { "met" } else { "not met" }
        ));
        if let (Some(ar), Some(dr)) = (median_rss(samples), median_rss(&dh.2)) {
            out.push_str(&format!(
                "; RSS {ar} kB vs dhclient {dr} kB, target not above: {}",
                if ar <= dr { "met" } else { "not met" }
            ));
        }
        out.push_str(".\n");
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let mut runs = 20usize;
    let mut servers = vec!["dnsmasq".to_string(), "kea".to_string()];
    let mut clients = vec!["dhclient".to_string(), "udhcpc".to_string()];
    let mut clients6: Vec<String> = Vec::new();
    let mut out6: Option<PathBuf> = None;
    let mut bin_dir: Option<PathBuf> = None;
    let mut baseline_dir: Option<PathBuf> = None;
    let list = |v: String| -> Vec<String> {
        v.split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--runs" => runs = val().parse().expect("--runs N"),
            "--servers" => servers = list(val()),
            "--clients" => clients = list(val()),
            "--clients6" => clients6 = list(val()),
            "--out6" => out6 = Some(PathBuf::from(val())),
            "--bin-dir" => bin_dir = Some(PathBuf::from(val())),
            "--baseline-bin-dir" => baseline_dir = Some(PathBuf::from(val())),
            "-h" | "--help" => {
                println!(
                    "leasebench [--runs N] [--servers dnsmasq,kea] [--clients dhclient,udhcpc,agent] \
                     [--clients6 dhclient,dhcpcd-ra,dhcpcd,agent] [--out6 FILE] [--bin-dir DIR] \
                     [--baseline-bin-dir DIR]"
                );
                return;
            }
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(is_root(), "leasebench needs root (network namespaces)");
    assert!((1..=1000).contains(&runs), "--runs between 1 and 1000");
    let clients: Vec<Client> = clients
        .iter()
        .map(|c| match c.as_str() {
            "dhclient" => Client::Ref(RefClientKind::Dhclient),
            "udhcpc" => Client::Ref(RefClientKind::Udhcpc),
            "agent" => Client::Agent,
            "agent-baseline" => Client::AgentBaseline,
            o => panic!("unknown client {o}"),
        })
        .collect();
    let clients6: Vec<Client6> = clients6
        .iter()
        .map(|c| match c.as_str() {
            "dhclient" => Client6::Ref(RefClient6Kind::Dhclient),
            "dhcpcd-ra" => Client6::Ref(RefClient6Kind::DhcpcdRa),
            "dhcpcd" => Client6::Ref(RefClient6Kind::DhcpcdDirect),
            "agent" => Client6::Agent,
            o => panic!("unknown IPv6 client {o}"),
        })
        .collect();

    let mut rows = Vec::new();
    let mut rows6 = Vec::new();
    let mut dhclient4_rss = Vec::new();
    for (si, server) in servers.iter().enumerate() {
        let mut lan = Lan::new();
        let mut dnsmasq = None;
        let mut _kea = None;
        match server.as_str() {
            "dnsmasq" => dnsmasq = Some(Dnsmasq::start(&lan.lan, DnsmasqOpts::default())),
            "kea" => _kea = Some(Kea::start(&lan.lan, KeaOpts::default())),
            o => panic!("unknown server {o}"),
        }
        for &client in &clients {
            let what = format!("{server} {}", client.label());
            let dir = match client {
                Client::AgentBaseline => {
                    assert!(
                        baseline_dir.is_some(),
                        "agent-baseline needs --baseline-bin-dir"
                    );
                    &baseline_dir
                }
                _ => &bin_dir,
            };
            let (samples, failures) = measure(runs, &what, || run_once(&mut lan, client, si, dir));
            if client == Client::Ref(RefClientKind::Dhclient) {
                let all: Vec<u64> = samples.iter().filter_map(|s| s.rss_kb).collect();
                let range = (all.iter().min().copied(), all.iter().max().copied());
                if let (Some(m), (Some(lo), Some(hi))) = (median_rss(&samples), range) {
                    dhclient4_rss.push((server.clone(), (m, lo, hi)));
                }
            }
            rows.push((client, server.clone(), samples, failures));
        }
        if clients6.is_empty() {
            continue;
        }
        // The same bed, now dual-stack: the IPv4 server stays.
        lan_v6(&lan.lan);
        let mut _kea6 = None;
        let mut _radvd = None;
        match server.as_str() {
            "dnsmasq" => {
                drop(dnsmasq.take());
                dnsmasq = Some(Dnsmasq::start(
                    &lan.lan,
                    DnsmasqOpts {
                        extra: dnsmasq_v6_args(300),
                        ..DnsmasqOpts::default()
                    },
                ));
            }
            _ => {
                _kea6 = Some(Kea6::start(
                    &lan.lan,
                    Kea6Opts {
                        rapid_commit: true,
                        ..Kea6Opts::default()
                    },
                ));
                _radvd = Some(Radvd::start(
                    &lan.lan,
                    RadvdOpts {
                        managed: true,
                        other: true,
                        autonomous: false,
                        ..RadvdOpts::default()
                    },
                ));
            }
        }
        for &client in &clients6 {
            let what = format!("{server} IPv6 {}", client.label());
            let (samples, failures) =
                measure(runs, &what, || run_once6(&mut lan, client, si, &bin_dir));
            rows6.push((client, server.clone(), samples, failures));
        }
        drop(dnsmasq);
    }

    let labelled4: Vec<_> = rows
        .iter()
        .map(|(c, s, v, f)| (c.label(), s.clone(), v.clone(), *f))
        .collect();
    print!("{}\n{}", table(&labelled4), verdicts4(&rows));
    if rows6.is_empty() {
        return;
    }
    let labelled: Vec<_> = rows6
        .iter()
        .map(|(c, s, v, f)| (c.label(), s.clone(), v.clone(), *f))
        .collect();
    let text6 = format!(
        "{}\n{}",
        table(&labelled),
        verdicts6(&rows6, &dhclient4_rss)
    );
    match out6 {
        Some(p) => std::fs::write(&p, text6).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        None => print!("\n{text6}"),
    }
}
