//! Chaos, bounded: `netcontainer watch` keeps three labelled services reachable while the
//! test breaks things at random (fixed seed). Root only; the router and sample images must
//! exist (see tests/tests/docker.rs).
//!
//! The bed is the watch tests' ([`watch::bed`], the Docker suites' lock held
//! exclusively), with ISC Kea and short leases (valid 8 s, renew 2 s, rebind 5 s) instead
//! of dnsmasq. A LAN client requests each service's page continuously (one request per
//! service every 50 ms, 1 s timeouts) and a monitor samples every router's `lan0` and
//! Kea's lease file twice a second. For `NETCONTAINER_CHAOS_SECONDS` (default 90; e.g.
//! 600 for a long run) faults are injected one at a time, the first three one of each
//! kind, then at random (`NETCONTAINER_CHAOS_SEED`):
//!
//! * **dhcp**: Kea is stopped for 3-12 s, then started again (same lease file). Leases
//!   run out after 6-8 s without a server: the routers lose their address and must bind
//!   again once Kea is back;
//! * **kill**: `kill -9` of a router's agent (the child of the container's PID 1, the
//!   supervisor): the supervisor restarts it in the same namespace, and the new agent
//!   resumes its saved plan and gets its lease back (INIT-REBOOT);
//! * **restart**: `docker restart -t 5` of a router (the agent releases its lease on
//!   SIGTERM and binds again after the start).
//!
//! After each fault every service must answer again within [`RECOVERY`] (measured from
//! the kill / the start of `docker restart` / Kea serving again), and at no sample may an
//! address be on two routers' legs, or on a router's leg while Kea leases it to another
//! MAC; `ls --json` must never list two routers bound to the same address. The test
//! prints the faults per kind, recovery times (median, max) and the requests served and
//! failed (run it with `--nocapture` to see them).
//!
//! (A container whose PID 1 dies, `docker kill`, is the `restart` kind's business plus
//! the kernel's: its old LAN leg can hold the MAC until the old namespace is torn down.)

use netcontainer_tests::chaos::{self, Monitor, Prober, Rng, median_max};
use netcontainer_tests::docker::{self, DockerBed, docker_ok, router_name};
use netcontainer_tests::kea::KeaOpts;
use netcontainer_tests::watch::{self, Watch};
use netcontainer_tests::*;
use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// Every service answers again within this after each fault.
const RECOVERY: Duration = Duration::from_secs(20);
const BOUND: Duration = Duration::from_secs(20);
/// "nc-chaos" and a version byte.
const DEFAULT_SEED: u64 = 0x6e63_2d63_6861_6f01;
const SERVICES: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Dhcp,
    Kill,
    Restart,
}

const KINDS: [Fault; 3] = [Fault::Dhcp, Fault::Kill, Fault::Restart];

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Dhcp => "dhcp server stopped",
            Fault::Kill => "agent kill -9",
            Fault::Restart => "router docker restart",
        }
    }
}

struct Record {
    kind: Fault,
    what: String,
    /// When the fault began (Kea stopped, kill sent, restart issued).
    began: Instant,
    /// Recovery is measured from here.
    from: Instant,
    recovery: Result<Duration, String>,
}

/// Bound routers of `services` in `ls --json`: service -> address; Err when two list the
/// same address.
fn ls_addresses(
    bed: &DockerBed,
    services: &[String],
) -> Result<BTreeMap<String, Ipv4Addr>, String> {
    let mut by_addr: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for e in bed.ls_json() {
        let Some(s) = e["service"].as_str() else {
            continue;
        };
        if !services.iter().any(|x| x == s) {
            continue;
        }
        if let Some(st) = watch::agent(&e)
            && st.state == "bound"
            && let Some(a) = st.address()
        {
            if let Some(other) = by_addr.insert(a, s.to_string()) {
                return Err(format!("ls --json: {a} bound by both {other} and {s}"));
            }
            out.insert(s.to_string(), a);
        }
    }
    Ok(out)
}

/// Waits for `service`'s router (made by watch) to be bound and to serve; its address.
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
    assert!(docker::in_pool(addr), "{addr} is not from the pool");
    if let Err(e) = watch::wait_serves(bed, addr, 80, service, Duration::from_secs(10)) {
        panic!("{e}");
    }
    addr
}

/// Waits (bounded by [`RECOVERY`] from `from`) until every service answers again: a
/// request started after the fault answered. After a kill or a restart (`replaced`: the
/// router and its old pid) only requests started once the new router runs (another pid)
/// and holds an address on its leg count: the killed router's namespace lives on for a
/// moment (Docker unmounts it lazily) and keeps forwarding, so an early answer would
/// prove nothing. The time from `from` to the last service's answer.
fn recover(
    prober: &Prober,
    from: Instant,
    replaced: Option<&(String, u32)>,
) -> Result<Duration, String> {
    let since = match replaced {
        None => from,
        Some((router, old)) => wait_for(
            RECOVERY.saturating_sub(from.elapsed()),
            Duration::from_millis(20),
            || {
                let pid = chaos::router_pids(std::slice::from_ref(router))[0]?;
                let (_, addrs) = chaos::lan_leg(pid).filter(|_| pid != *old)?;
                (!addrs.is_empty()).then(Instant::now)
            },
        )
        .ok_or_else(|| {
            format!("{router} has no new incarnation with an address within {RECOVERY:?}")
        })?,
    };
    let d = prober.wait_all_answer_since(since, RECOVERY.saturating_sub(since - from))?;
    Ok(since - from + d)
}

#[test]
fn services_answer_again_after_every_fault() {
    require_root!();
    let secs = chaos::env_u64("NETCONTAINER_CHAOS_SECONDS", 90);
    let seed = chaos::env_u64("NETCONTAINER_CHAOS_SEED", DEFAULT_SEED);
    let test_start = Instant::now();
    let mut bed = watch::bed(5);
    let mut kea = chaos::kea_on_bed(&mut bed, KeaOpts::short(8, 2, 5));
    let mut w = Watch::start(&bed, &[], &[]);
    assert!(w.wait_watching(1, BOUND), "no start-up reconcile");
    let services: Vec<String> = SERVICES
        .iter()
        .map(|t| watch::labelled_service(&bed, t, &[]).name)
        .collect();
    let addrs: Vec<Ipv4Addr> = services
        .iter()
        .map(|s| router_address(&bed, &w, s))
        .collect();
    let initial = ls_addresses(&bed, &services).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(initial.len(), services.len(), "not all bound: {initial:?}");

    let pairs: Vec<(String, Ipv4Addr)> = services.iter().cloned().zip(addrs.clone()).collect();
    let mut prober = Prober::start(
        &bed.client,
        &pairs,
        Duration::from_millis(50),
        Duration::from_secs(1),
    );
    let mut monitor = Monitor::start(
        services.clone(),
        kea.lease_file(),
        prober.addr_handles(),
        Duration::from_millis(500),
    );
    if let Err(e) = prober.wait_all_answer_since(Instant::now(), BOUND) {
        panic!("before any fault: {e}");
    }

    let mut rng = Rng::new(seed);
    let mut first = KINDS.to_vec();
    rng.shuffle(&mut first);
    let mut plan: VecDeque<Fault> = first.into();
    let mut records: Vec<Record> = Vec::new();
    let mut ls_errors: Vec<String> = Vec::new();
    let chaos_start = Instant::now();
    while chaos_start.elapsed() < Duration::from_secs(secs) {
        let kind = plan
            .pop_front()
            .unwrap_or_else(|| KINDS[rng.below(KINDS.len() as u64) as usize]);
        let target = rng.below(services.len() as u64) as usize;
        let router = router_name(&services[target]);
        let began = Instant::now();
        let (from, replaced, what) = match kind {
            Fault::Dhcp => {
                let down = rng.duration(Duration::from_secs(3), Duration::from_secs(12));
                kea.stop();
                std::thread::sleep(down);
                kea.restart();
                (
                    Instant::now(),
                    None,
                    format!("down {:.1} s", down.as_secs_f64()),
                )
            }
            Fault::Kill => {
                let pid1 = chaos::router_pids(std::slice::from_ref(&router))[0]
                    .unwrap_or_else(|| panic!("{router} is not running"));
                let agent = chaos::agent_child(pid1).unwrap_or_else(|| {
                    panic!("no agent under PID 1 (host pid {pid1}) of {router}")
                });
                let comm = chaos::comm(agent).unwrap_or_default();
                assert!(
                    comm.starts_with("netcontainer-ag"),
                    "the child of {router}'s PID 1 (host pid {agent}) is {comm:?}, not the agent"
                );
                // SAFETY: kill(2) of the agent of a router our watch created, by its pid.
                let rc = unsafe { libc::kill(agent as libc::pid_t, libc::SIGKILL) };
                assert_eq!(
                    rc,
                    0,
                    "kill -9 {agent}: {}",
                    std::io::Error::last_os_error()
                );
                let from = Instant::now();
                // The supervisor restarts the agent in the same namespace; the new one
                // resumes its saved plan and lease.
                let again = wait_for(RECOVERY, Duration::from_millis(20), || {
                    chaos::agent_child(pid1).filter(|c| *c != agent)
                });
                assert!(
                    again.is_some(),
                    "{router}: the agent was not restarted within {RECOVERY:?}"
                );
                (
                    from,
                    None,
                    format!("{} (agent host pid {agent})", services[target]),
                )
            }
            Fault::Restart => {
                let pid = chaos::router_pids(std::slice::from_ref(&router))[0]
                    .unwrap_or_else(|| panic!("{router} is not running"));
                let from = Instant::now();
                docker_ok(&["restart", "-t", "5", &router]);
                (
                    from,
                    Some((router.clone(), pid)),
                    format!(
                        "{} (docker restart took {:.1} s)",
                        services[target],
                        from.elapsed().as_secs_f64()
                    ),
                )
            }
        };
        let recovery = recover(&prober, from, replaced.as_ref());
        let ok = recovery.is_ok();
        if let Err(e) = ls_addresses(&bed, &services) {
            ls_errors.push(format!(
                "after fault {} ({}): {e}",
                records.len() + 1,
                kind.name()
            ));
        }
        eprintln!(
            "fault {:>2} at {:>5.1} s: {:<22} {:<40} -> {}",
            records.len() + 1,
            began.duration_since(chaos_start).as_secs_f64(),
            kind.name(),
            what,
            match &recovery {
                Ok(d) => format!("all answering after {:.2} s", d.as_secs_f64()),
                Err(e) => format!("NOT RECOVERED: {e}"),
            }
        );
        records.push(Record {
            kind,
            what,
            began,
            from,
            recovery,
        });
        if !ok {
            break;
        }
        std::thread::sleep(rng.duration(Duration::from_millis(500), Duration::from_millis(2000)));
    }
    let chaos_time = chaos_start.elapsed();

    // The end state: all bound on distinct addresses, watch still running.
    let end = wait_for(BOUND, Duration::from_millis(500), || {
        ls_addresses(&bed, &services)
            .ok()
            .filter(|m| m.len() == services.len())
    });
    w.assert_running();
    let probes = prober.stop();
    let mon = monitor.stop();

    // Report.
    let mut lines = vec![format!(
        "CHAOS REPORT (seed {seed:#x}, {:.0} s of faults, Kea valid 8 s / renew 2 s / rebind 5 s, recovery bound {} s)",
        chaos_time.as_secs_f64(),
        RECOVERY.as_secs()
    )];
    for k in KINDS {
        let rs: Vec<&Record> = records.iter().filter(|r| r.kind == k).collect();
        let rec: Vec<f64> = rs
            .iter()
            .filter_map(|r| r.recovery.as_ref().ok())
            .map(|d| d.as_secs_f64())
            .collect();
        let (med, max) = median_max(&rec);
        let failed_during: usize = rs
            .iter()
            .map(|r| {
                let until = r.from + r.recovery.clone().unwrap_or(RECOVERY);
                probes
                    .iter()
                    .flatten()
                    .filter(|p| !p.ok && p.start >= r.began && p.start <= until)
                    .count()
            })
            .sum();
        lines.push(format!(
            "{:<22}: injected {}, survived {}, recovery median {med:.2} s, max {max:.2} s, requests failed during them {failed_during}",
            k.name(),
            rs.len(),
            rec.len(),
        ));
    }
    let mut served_total = 0;
    let mut failed_total = 0;
    for (s, p) in services.iter().zip(&probes) {
        let sum = chaos::summarize(p);
        served_total += sum.served;
        failed_total += sum.failed;
        lines.push(format!(
            "{s}: served {}, failed {}, outages {}, longest {:.2} s, total {:.2} s, addresses {:?}",
            sum.served,
            sum.failed,
            sum.outages,
            sum.longest_outage.as_secs_f64(),
            sum.total_outage.as_secs_f64(),
            mon.addresses[services.iter().position(|x| x == s).unwrap()],
        ));
    }
    lines.push(format!(
        "requests: served {served_total}, failed {failed_total}; monitor samples {}, conflicts {}, address changes {:?}; test total {:.1} s",
        mon.samples,
        mon.violations.len() + ls_errors.len(),
        mon.address_changes,
        test_start.elapsed().as_secs_f64()
    ));
    eprintln!("{}", lines.join("\n"));

    // Verdicts.
    let unrecovered: Vec<String> = records
        .iter()
        .filter_map(|r| {
            r.recovery
                .as_ref()
                .err()
                .map(|e| format!("{} {}: {e}", r.kind.name(), r.what))
        })
        .collect();
    assert!(unrecovered.is_empty(), "not recovered: {unrecovered:?}");
    assert!(
        mon.violations.is_empty() && ls_errors.is_empty(),
        "an address was held by two routers: {:?} {:?}",
        mon.violations,
        ls_errors
    );
    assert!(mon.samples > 0, "the monitor took no sample");
    let end = end.unwrap_or_else(|| {
        panic!(
            "not all bound on distinct addresses at the end: {:?}",
            ls_addresses(&bed, &services)
        )
    });
    assert_eq!(end.len(), services.len());
    for k in KINDS {
        assert!(
            records.iter().any(|r| r.kind == k),
            "no {} fault injected in {secs} s",
            k.name()
        );
    }
    assert!(
        probes.iter().all(|p| p.iter().any(|x| x.ok)),
        "a service never answered"
    );
    drop(w);
    drop(kea);
}
