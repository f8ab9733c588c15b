//! Address conflict detection (`netcontainer-agent --arp-probe`, RFC 5227) in network
//! namespaces against Kea. Root only (`require_root!` skips otherwise, fails under CI).
//!
//! The conflict bed: Kea's pool is two addresses, 192.0.2.77 - 192.0.2.78; Kea's
//! iterative allocator offers the first free one, .77, which a LAN client namespace
//! holds statically (Kea does not know: no ping check in Kea 2.2). With `--arp-probe`
//! the agent hears the client's kernel answer its probe, DECLINEs .77 (Kea records the
//! address as declined, state 1, for its probation period), waits the 10 s RFC 2131
//! asks for, and ends up with .78. Without the flag it takes .77.
//!
//! The ignored test `bench_arp_probe_cost` measures what the probe costs (see
//! docs/benchmarks.md, "ARP probe cost").

use netcontainer_proto::contract::LAN_IF;
use netcontainer_tests::*;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(1);
const TAKEN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);
const FREE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 78);

struct World {
    // Field order = drop order: the agent first, then the temp dir, then the bed.
    agent: Agent,
    _tmp: TempDir,
    lan: Lan,
}

impl World {
    /// A bed with one router, LAN clients at `clients` (last octets) and an agent started
    /// with `args`.
    fn new(args: &[&str], clients: &[u8]) -> World {
        let mut lan = Lan::with_router();
        for c in clients {
            lan.add_client(*c);
        }
        let tmp = TempDir::new("arp");
        let agent = Agent::start_with_args(lan.router(), tmp.path(), args);
        World {
            agent,
            _tmp: tmp,
            lan,
        }
    }

    fn addrs(&self) -> Vec<(Ipv4Addr, u8)> {
        addr_on(self.lan.router(), LAN_IF)
    }

    fn log_count(&self, what: &str) -> usize {
        self.agent.log().matches(what).count()
    }
}

fn two_address_pool() -> KeaOpts {
    KeaOpts {
        pool: format!("{TAKEN} - {FREE}"),
        ..KeaOpts::short(6, 2, 4)
    }
}

/// No conflict: the agent binds as without the flag (one probe, then the address), and
/// renewals of the same address are not probed again.
#[test]
fn arp_probe_binds_normally_when_the_address_is_free() {
    require_root!();
    let w = World::new(&["--arp-probe"], &[]);
    let kea = Kea::start(&w.lan.lan, KeaOpts::short(6, 2, 4));
    let out = w.agent.apply(&ApplyArgs::new(LAN_IF).wait(15));
    assert!(out.ok(), "agent apply failed: {out}");
    let addr = out.address().expect("apply printed the address");
    let st = w.agent.wait_bound(5 * S);
    assert_eq!(st.address(), Some(addr));
    assert_eq!(st.last_error, None);
    assert_eq!(w.addrs(), vec![(addr, 24)]);
    assert_eq!(w.log_count("probing the address with ARP"), 1);
    assert_eq!(w.log_count("ARP probe: address free"), 1);

    // T1 = 2 s: a renewal extends the lease without a second probe.
    let renewed = wait_until(6 * S, Duration::from_millis(50), || {
        w.log_count("lease extended") >= 1
    });
    assert!(renewed, "no renewal within 6 s:\n{}", w.agent.log());
    assert_eq!(w.log_count("probing the address with ARP"), 1);
    assert_eq!(w.addrs(), vec![(addr, 24)]);
    assert!(kea.lease_of(addr).expect("Kea has the lease").is_active());
    assert!(!kea.received().iter().any(|r| r.msg_type == "DHCPDECLINE"));
}

/// The offered address answers ARP: DECLINE, a status that says so, then another address.
#[test]
fn arp_probe_declines_an_address_in_use_and_binds_another() {
    require_root!();
    let w = World::new(&["--arp-probe"], &[TAKEN.octets()[3]]);
    let client_mac = mac_of(&w.lan.clients[0], "eth0");
    let kea = Kea::start(&w.lan.lan, two_address_pool());

    // No --wait: the status in between is what this test is about.
    let out = w.agent.apply(&ApplyArgs::new(LAN_IF));
    assert!(out.ok(), "agent apply failed: {out}");
    let want = format!("address {TAKEN} is in use by MAC {client_mac}: declined");
    let declined = w
        .agent
        .wait_status(10 * S, |s| s.last_error.as_deref() == Some(want.as_str()))
        .unwrap_or_else(|| {
            panic!(
                "no decline reported; last status {:?}\n{}",
                w.agent.status_json(),
                w.agent.log()
            )
        });
    assert!(
        declined.lease.is_none() && !declined.is_bound(),
        "{declined:?}"
    );
    // The same, by subsystem (`Request::Problems`, beside the status).
    let json = w.agent.status_json().unwrap();
    assert_eq!(
        json["problems"],
        serde_json::json!([{ "subsystem": "dhcp", "message": want }]),
        "{json}"
    );
    assert!(
        ["init", "selecting", "requesting"].contains(&declined.state.as_str()),
        "state after a decline: {}",
        declined.state
    );
    assert!(w.addrs().is_empty(), "the declined address was configured");

    // Kea got the DECLINE and keeps .77 out of use.
    let got_decline = wait_until(5 * S, Duration::from_millis(50), || {
        kea.received().iter().any(|r| r.msg_type == "DHCPDECLINE")
    });
    assert!(got_decline, "Kea saw no DHCPDECLINE:\n{}", kea.log());
    let row = kea.lease_of(TAKEN).expect("Kea has a row for .77");
    assert_eq!(row.state, 1, "declined state in Kea: {row:?}");

    // RFC 2131: DISCOVER again after 10 s; this time .78, which nobody holds.
    let st = w.agent.wait_bound(25 * S);
    assert_eq!(st.address(), Some(FREE), "{st:?}");
    assert_eq!(st.last_error, None);
    assert_eq!(
        w.agent.status_json().unwrap()["problems"],
        serde_json::json!([])
    );
    assert_eq!(w.addrs(), vec![(FREE, 24)]);
    assert_eq!(w.log_count("probing the address with ARP"), 2);
    assert!(has_addr(&w.lan.clients[0], "eth0", TAKEN));
    assert!(kea.lease_of(FREE).expect("Kea leased .78").is_active());
}

/// Same bed without the flag: the agent takes the address another host holds.
#[test]
fn without_arp_probe_the_address_in_use_is_taken() {
    require_root!();
    let w = World::new(&[], &[TAKEN.octets()[3]]);
    let kea = Kea::start(&w.lan.lan, two_address_pool());
    let out = w.agent.apply(&ApplyArgs::new(LAN_IF).wait(15));
    assert!(out.ok(), "agent apply failed: {out}");
    assert_eq!(out.address(), Some(TAKEN));
    assert_eq!(w.addrs(), vec![(TAKEN, 24)]);
    assert_eq!(w.log_count("probing the address with ARP"), 0);
    assert!(!kea.received().iter().any(|r| r.msg_type == "DHCPDECLINE"));
    assert!(has_addr(&w.lan.clients[0], "eth0", TAKEN));
}

/// Issue 25 (scale): the ARP guard's socket carries a BPF filter, so the LAN's ARP about
/// other addresses never reaches the agent (before, every ARP packet on the LAN woke
/// every agent on it: with N routers on one LAN, each announcement woke N). A bound agent
/// is traced while a LAN host asks for 20 other addresses and 3 times for the agent's
/// own (the router's kernel answers those): the agent reads no ARP frame. The guard
/// still hears a claim of its address
/// (`real_conflict::a_host_taking_the_bound_address_is_defended_once_then_the_lease_is_declined`).
#[test]
fn the_arp_guard_reads_no_arp_about_other_addresses() {
    require_root!();
    assert!(
        have("strace"),
        "strace is needed (scripts/install-deps installs it)"
    );
    let w = World::new(&[], &[30]);
    let _kea = Kea::start(&w.lan.lan, KeaOpts::short(600, 300, 500));
    let out = w.agent.apply(&ApplyArgs::new(LAN_IF).wait(15));
    assert!(out.ok(), "agent apply failed: {out}");
    let addr = out.address().expect("apply printed the address");
    assert!(
        wait_until(5 * S, Duration::from_millis(50), || {
            w.log_count("announcing the address with ARP and guarding it") == 1
        }),
        "no guard:\n{}",
        w.agent.log()
    );
    // Past the two announcements (2 s apart), whose own frames the socket skips anyway.
    std::thread::sleep(3 * S);
    let tmp = TempDir::new("arp-trace");
    let trace = tmp.path().join("agent.trace");
    let attach = tmp.path().join("strace.log");
    let pid = w.agent.pid().expect("the agent runs").to_string();
    let child = Command::new("strace")
        .args(["-f", "-e", "trace=recvfrom", "-o"])
        .arg(&trace)
        .args(["-p", &pid])
        .stderr(std::fs::File::create(&attach).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .expect("strace");
    let strace = ProcGuard::new(child, "strace");
    assert!(
        wait_until(5 * S, Duration::from_millis(50), || {
            std::fs::read_to_string(&attach).is_ok_and(|t| t.contains("attached"))
        }),
        "strace did not attach"
    );
    let client = &w.lan.clients[0];
    for i in 0..20u8 {
        let other = Ipv4Addr::new(192, 0, 2, 200 + i);
        client.exec(&[
            "arping",
            "-q",
            "-c",
            "1",
            "-w",
            "1",
            "-I",
            "eth0",
            &other.to_string(),
        ]);
    }
    let asked = client.exec(&["arping", "-c", "3", "-I", "eth0", &addr.to_string()]);
    // iputils' arping prints "Unicast reply from ..." for each answer.
    let answered = String::from_utf8_lossy(&asked.stdout)
        .matches("reply from")
        .count();
    assert!(
        answered >= 1,
        "the router never answered ARP for {addr}: {asked:?}"
    );
    std::thread::sleep(S);
    drop(strace);
    let t = std::fs::read_to_string(&trace).unwrap_or_default();
    let arp_reads = t.lines().filter(|l| l.contains("ETH_P_ARP")).count();
    assert_eq!(
        arp_reads, 0,
        "the agent read ARP frames about other addresses:\n{t}"
    );
    assert_eq!(w.agent.status().address(), Some(addr));
}

// --------------------------------------------------------------------------
// Benchmark (ignored): `agent apply` to address on lan0, with and without --arp-probe.
//
//   sudo -E cargo test -p netcontainer-tests --test arp -- --ignored --nocapture bench
//
// ARP_BENCH_RUNS (default 10) runs per variant and server, after one warm-up each,
// alternating the variants run by run on the same bed. Each run: a fresh router
// namespace (one fixed MAC per variant, so the server hands out the same address), a
// fresh agent (not timed), then the clock runs from spawning `netcontainer agent apply
// --wait 20` on the host to RTM_NEWADDR on lan0 (AddrWatch, sub-millisecond).

fn bench_once(lan: &mut Lan, probe: bool, server: usize) -> Result<Duration, String> {
    let mac = format!("02:00:00:00:a{server}:0{}", u8::from(probe));
    let router = lan.add_router_with_mac(Some(&mac));
    let tmp = TempDir::new("arpbench");
    let res = (|| {
        let watch = AddrWatch::open(&router, LAN_IF).map_err(|e| e.to_string())?;
        let waiter = std::thread::spawn(move || watch.wait(Duration::from_secs(30)));
        let args: &[&str] = if probe { &["--arp-probe"] } else { &[] };
        let mut agent = Agent::start_with_args(&router, tmp.path(), args);
        let t0 = Instant::now();
        let apply = Command::new(bin("netcontainer"))
            .args(["agent", "apply", "--socket"])
            .arg(agent.socket())
            .args(["--interface", LAN_IF, "--wait", "20"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        // Killed by pid on drop if it is still running (bounded).
        let mut guard = ProcGuard::new(apply, "netcontainer agent apply");
        let got = waiter.join().unwrap();
        let st = guard.wait_timeout(Duration::from_secs(30));
        let (_, _, t1) = got.ok_or("no address within 30 s")?;
        if !st.is_some_and(|s| s.success()) {
            return Err(format!("apply failed: {st:?}"));
        }
        agent.kill9();
        Ok(t1 - t0)
    })();
    lan.remove_router(&router);
    drop(router);
    res
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn bench_arp_probe_cost() {
    require_root!();
    let runs: usize = std::env::var("ARP_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    println!("| server | agent | runs | median | min | max |");
    println!("|---|---|---|---|---|---|");
    for (idx, server) in ["kea", "dnsmasq"].iter().enumerate() {
        let mut lan = Lan::new();
        let _kea;
        let _dnsmasq;
        if *server == "kea" {
            _kea = Kea::start(&lan.lan, KeaOpts::default());
        } else {
            _dnsmasq = Dnsmasq::start(&lan.lan, DnsmasqOpts::default());
        }
        let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let mut failed = [0usize; 2];
        for i in 0..=runs {
            for probe in [false, true] {
                match bench_once(&mut lan, probe, idx) {
                    Ok(d) if i > 0 => times[usize::from(probe)].push(ms(d)),
                    Ok(_) => {} // warm-up
                    Err(e) => {
                        eprintln!("{server} probe={probe} run {i}: {e}");
                        failed[usize::from(probe)] += 1;
                    }
                }
            }
        }
        for probe in [false, true] {
            let v = &mut times[usize::from(probe)];
            if v.is_empty() {
                println!("| {server} | all runs failed | | | | |");
                continue;
            }
            let (min, max) = (
                v.iter().cloned().fold(f64::INFINITY, f64::min),
                v.iter().cloned().fold(0.0, f64::max),
            );
            let label = if probe {
                "`--arp-probe`"
            } else {
                "without probe"
            };
            let nf = failed[usize::from(probe)];
            let runs_s = if nf > 0 {
                format!("{} ({nf} failed)", v.len())
            } else {
                v.len().to_string()
            };
            println!(
                "| {server} | {label} | {runs_s} | {:.1} ms | {min:.1} ms | {max:.1} ms |",
                median(v)
            );
        }
    }
}
