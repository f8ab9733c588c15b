//! Lease-time benchmark: "start of the client to address on the interface" and RSS while
//! bound, for the reference clients (ISC dhclient, busybox udhcpc) and, if its binaries
//! are given, the netcontainer agent, against dnsmasq (`--no-ping`) and Kea.
//!
//!   leasebench [--runs N] [--servers dnsmasq,kea] [--clients dhclient,udhcpc,agent]
//!              [--bin-dir DIR]
//!
//! Root only. Each run: a fresh router namespace with a macvlan `lan0` (the same MAC for
//! every run of one client, so the pools never run out), a netlink watch on it, then the
//! clock starts and the client is started; the time is taken when RTM_NEWADDR for lan0
//! is read. Reference clients are spawned directly in the namespace (setns, no
//! `ip netns exec`). For the agent, the agent is started first (not timed) and the clock
//! runs from the start of `netcontainer agent apply` (on the host) to the address.
//! RSS is VmRSS of the client (the agent, not the driver) 300 ms after the address.
//! One warm-up run per pair is not counted. Prints a markdown table on stdout.

use netcontainer_tests::refclient::{self, RefClientKind};
use netcontainer_tests::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq)]
enum Client {
    Ref(RefClientKind),
    Agent,
}

impl Client {
    fn label(&self) -> &'static str {
        match self {
            Client::Ref(RefClientKind::Dhclient) => "dhclient 4.4 (`-d -sf SCRIPT`)",
            Client::Ref(RefClientKind::Udhcpc) => "busybox udhcpc (`-f -s SCRIPT`)",
            Client::Agent => "netcontainer agent (`agent apply` to address)",
        }
    }
    fn mac(&self, server: usize) -> String {
        let n = match self {
            Client::Ref(RefClientKind::Dhclient) => 1,
            Client::Ref(RefClientKind::Udhcpc) => 2,
            Client::Agent => 3,
        };
        format!("02:00:00:00:{server:02x}:{n:02x}")
    }
}

struct Sample {
    latency: Duration,
    rss_kb: Option<u64>,
}

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
        let watch = AddrWatch::open(&router, "lan0").map_err(|e| e.to_string())?;
        let waiter = std::thread::spawn(move || watch.wait(Duration::from_secs(30)));
        match client {
            Client::Ref(kind) => {
                let mut cmd = refclient::command(kind, "lan0", tmp.path(), None);
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                let t0 = Instant::now();
                let child = router.spawn_direct(&mut cmd).map_err(|e| e.to_string())?;
                let mut guard = ProcGuard::new(child, kind.label());
                let (_, _, t1) = waiter.join().unwrap().ok_or("no address within 30 s")?;
                std::thread::sleep(Duration::from_millis(300));
                let rss = refclient::rss_kb(guard.pid());
                guard.kill();
                Ok(Sample {
                    latency: t1 - t0,
                    rss_kb: rss,
                })
            }
            Client::Agent => {
                if let Some(d) = bin_dir {
                    // SAFETY: single-threaded at this point apart from the waiter, which
                    // does not read the environment.
                    unsafe { std::env::set_var("NETCONTAINER_BIN_DIR", d) };
                }
                let mut agent = Agent::start(&router, tmp.path());
                let t0 = Instant::now();
                let mut apply = Command::new(bin("netcontainer"))
                    .args(["agent", "apply", "--socket"])
                    .arg(agent.socket())
                    .args(["--interface", "lan0", "--wait", "20"])
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
                std::thread::sleep(Duration::from_millis(300));
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

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let mut runs = 20usize;
    let mut servers = vec!["dnsmasq".to_string(), "kea".to_string()];
    let mut clients = vec!["dhclient".to_string(), "udhcpc".to_string()];
    let mut bin_dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--runs" => runs = val().parse().expect("--runs N"),
            "--servers" => servers = val().split(',').map(String::from).collect(),
            "--clients" => clients = val().split(',').map(String::from).collect(),
            "--bin-dir" => bin_dir = Some(PathBuf::from(val())),
            "-h" | "--help" => {
                println!(
                    "leasebench [--runs N] [--servers dnsmasq,kea] [--clients dhclient,udhcpc,agent] [--bin-dir DIR]"
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
            o => panic!("unknown client {o}"),
        })
        .collect();

    let mut rows = Vec::new();
    for (si, server) in servers.iter().enumerate() {
        let mut lan = Lan::new();
        let mut _dnsmasq = None;
        let mut _kea = None;
        match server.as_str() {
            "dnsmasq" => _dnsmasq = Some(Dnsmasq::start(&lan.lan, DnsmasqOpts::default())),
            "kea" => _kea = Some(Kea::start(&lan.lan, KeaOpts::default())),
            o => panic!("unknown server {o}"),
        }
        for &client in &clients {
            let mut samples = Vec::new();
            let mut failures = 0;
            for i in 0..=runs {
                match run_once(&mut lan, client, si, &bin_dir) {
                    Ok(s) => {
                        eprintln!(
                            "{server} {} run {i}: {} rss {:?} kB",
                            client.label(),
                            ms(s.latency),
                            s.rss_kb
                        );
                        if i > 0 {
                            samples.push(s);
                        }
                    }
                    Err(e) => {
                        eprintln!("{server} {} run {i}: FAILED {e}", client.label());
                        failures += 1;
                        if failures > 3 {
                            break;
                        }
                    }
                }
            }
            rows.push((client, server.clone(), samples, failures));
        }
    }

    println!("| client | server | runs | median | p90 | min | max | RSS while bound (median) |");
    println!("|---|---|---|---|---|---|---|---|");
    for (client, server, samples, failures) in rows {
        if samples.is_empty() {
            println!(
                "| {} | {server} | 0 ({failures} failed) | - | - | - | - | - |",
                client.label()
            );
            continue;
        }
        let mut l: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
        l.sort();
        let n = l.len();
        let p90 = l[((n as f64 * 0.9).ceil() as usize).clamp(1, n) - 1];
        let mut rss: Vec<u64> = samples.iter().filter_map(|s| s.rss_kb).collect();
        rss.sort();
        let rss_s = rss
            .get(rss.len() / 2)
            .map(|k| format!("{:.1} MB", *k as f64 / 1024.0))
            .unwrap_or_else(|| "-".into());
        let runs_s = if failures > 0 {
            format!("{n} ({failures} failed)")
        } else {
            n.to_string()
        };
        println!(
            "| {} | {server} | {runs_s} | {} | {} | {} | {} | {rss_s} |",
            client.label(),
            ms(l[n / 2]),
            ms(p90),
            ms(l[0]),
            ms(l[n - 1]),
        );
    }
}
