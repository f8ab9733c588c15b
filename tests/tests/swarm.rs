//! Docker Swarm services, on a two-node swarm built on this machine: the bed's daemon
//! (manager, root namespace) and a second `dockerd` in a namespace of its own
//! ([`SecondDaemon`], worker), both on the bed's LAN (203.0.113.0/24), linked for the
//! swarm's control plane and VXLAN by a veth of documentation addresses
//! (198.51.100.253/30 - .254). `watch` runs on each node. Root only; holds the Docker
//! suites' lock exclusively (watch acts on every router of the host, and the main daemon
//! joins a swarm for the test's duration). Skipped, loudly, if the main daemon is
//! already part of a swarm (the test would otherwise make it leave).

use netcontainer_tests::daemon::{self, SecondDaemon};
use netcontainer_tests::docker::{self, DockerBed};
use netcontainer_tests::proc::ProcGuard;
use netcontainer_tests::watch::{self, Watch};
use netcontainer_tests::*;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const ROOT_LINK: &str = "198.51.100.253";
const H2_LINK: &str = "198.51.100.254";
/// The service's attachable overlay network.
const OVERLAY_SUBNET: &str = "198.51.100.208/28";
/// Swarm's address pool (its ingress network), and each node's docker_gwbridge: made
/// here, on documentation subnets, before Swarm would pick private ranges for them.
const SWARM_POOL: &str = "198.51.100.144/28";
const GWBRIDGE_1: &str = "198.51.100.192/28";
const GWBRIDGE_2: &str = "198.51.100.176/28";

/// `docker network create` of a docker_gwbridge on `subnet` (the options Docker gives
/// its own).
fn gwbridge_args(subnet: &str) -> Vec<String> {
    [
        "network",
        "create",
        "--subnet",
        subnet,
        "--opt",
        "com.docker.network.bridge.name=docker_gwbridge",
        "--opt",
        "com.docker.network.bridge.enable_icc=false",
        "--opt",
        "com.docker.network.bridge.enable_ip_masquerade=true",
        "docker_gwbridge",
    ]
    .map(String::from)
    .to_vec()
}
const BOUND: Duration = Duration::from_secs(60);

/// Leaves the swarm on both nodes on drop (worker first), removing the service and the
/// overlay before.
struct Swarm<'a> {
    h2: &'a SecondDaemon,
    service: String,
    overlay: String,
    /// The main daemon's docker_gwbridge was made by this test.
    own_gwbridge: bool,
}

impl Drop for Swarm<'_> {
    fn drop(&mut self) {
        let _ = docker::docker(&["service", "rm", &self.service]);
        // Tasks' containers go asynchronously; the overlay only once they are gone.
        let _ = wait_until(Duration::from_secs(20), Duration::from_millis(250), || {
            docker::docker(&["network", "rm", &self.overlay]).is_ok()
                || docker::docker(&["network", "inspect", &self.overlay]).is_err()
        });
        let _ = self.h2.docker(&["swarm", "leave", "--force"]);
        let _ = docker::docker(&["swarm", "leave", "--force"]);
        if self.own_gwbridge {
            let _ = wait_until(Duration::from_secs(10), Duration::from_millis(250), || {
                docker::docker(&["network", "rm", "docker_gwbridge"]).is_ok()
            });
        }
    }
}

/// (task container name -> LAN address) of the service's tasks that have a bound router
/// on `node`: the main daemon (`None`) or the second one.
fn bound_tasks(
    bed: &DockerBed,
    h2: &SecondDaemon,
    on_h2: bool,
    service: &str,
) -> BTreeMap<String, Ipv4Addr> {
    let filter = format!("label=com.docker.swarm.service.name={service}");
    let names = if on_h2 {
        h2.docker(&["ps", "--filter", &filter, "--format", "{{.Names}}"])
    } else {
        docker::docker(&["ps", "--filter", &filter, "--format", "{{.Names}}"])
    }
    .unwrap_or_default();
    let mut out = BTreeMap::new();
    for n in names.split_whitespace() {
        let st = if on_h2 {
            let o = h2.nc(&["status", n, "--json"]);
            if !o.ok() {
                continue;
            }
            serde_json::from_str(&o.stdout).ok()
        } else {
            watch::status(bed, n)
        };
        let Some(st) = st else { continue };
        if let Some(a) = watch::agent(&st).filter(|a| a.state == "bound")
            && let Some(addr) = a.address()
        {
            out.insert(n.to_string(), addr);
        }
    }
    out
}

#[test]
fn swarm_service_tasks_get_their_addresses_and_keep_them_when_moved() {
    require_root!();
    let state = docker::docker_ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    if state.trim() != "inactive" {
        panic!(
            "the main Docker daemon is already in a swarm ({}): this test would make it \
             leave; run it on a host that is not",
            state.trim()
        );
    }
    let bed = watch::bed(0);
    let mut h2 = SecondDaemon::start(&bed, &[docker::ROUTER_IMAGE, docker::SAMPLE_IMAGE]);
    h2.link_to_root(&format!("{ROOT_LINK}/30"), &format!("{H2_LINK}/30"));
    let service = bed.name("web");
    let overlay = bed.name("ov");
    let own_gwbridge = docker::docker(&["network", "inspect", "docker_gwbridge"]).is_err();
    if own_gwbridge {
        let a = gwbridge_args(GWBRIDGE_1);
        docker::docker_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let a = gwbridge_args(GWBRIDGE_2);
    h2.docker_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let _swarm = Swarm {
        h2: &h2,
        service: service.clone(),
        overlay: overlay.clone(),
        own_gwbridge,
    };
    docker::docker_ok(&[
        "swarm",
        "init",
        "--advertise-addr",
        ROOT_LINK,
        "--listen-addr",
        &format!("{ROOT_LINK}:2377"),
        "--default-addr-pool",
        SWARM_POOL,
        "--default-addr-pool-mask-length",
        "28",
    ]);
    let token = docker::docker_ok(&["swarm", "join-token", "-q", "worker"]);
    h2.docker_ok(&[
        "swarm",
        "join",
        "--token",
        token.trim(),
        "--advertise-addr",
        H2_LINK,
        &format!("{ROOT_LINK}:2377"),
    ]);
    docker::docker_ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--attachable",
        "--subnet",
        OVERLAY_SUBNET,
        &overlay,
    ]);

    // watch on each node, each with its own LAN NIC as the default parent.
    let mut w1 = Watch::start(&bed, &[], &[]);
    assert!(w1.wait_watching(1, Duration::from_secs(20)), "{}", w1.log());
    let w2_log = bed.tmp.join("watch-h2.log");
    let mut w2: ProcGuard = h2.spawn_nc(
        &["watch", "--parent", daemon::PARENT, "--timeout", "30"],
        &w2_log,
    );
    let w2_text = || std::fs::read_to_string(&w2_log).unwrap_or_default();

    docker::docker_ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        &service,
        "--replicas",
        "2",
        "--no-resolve-image",
        "--network",
        &overlay,
        "--container-label",
        "netcontainer.enable=true",
        "-e",
        &format!("SAMPLE_NAME={service}-{{{{.Task.Slot}}}}"),
        docker::SAMPLE_IMAGE,
    ]);
    let mut on1 = BTreeMap::new();
    let mut on2 = BTreeMap::new();
    let both = wait_until(BOUND, Duration::from_millis(500), || {
        on1 = bound_tasks(&bed, &h2, false, &service);
        on2 = bound_tasks(&bed, &h2, true, &service);
        on1.len() == 1 && on2.len() == 1
    });
    assert!(
        both,
        "tasks with bound routers: node 1 {on1:?}, node 2 {on2:?}\nwatch 1: {}\nwatch 2: {}",
        w1.log(),
        w2_text()
    );
    let (t1, a1) = on1.iter().next().map(|(k, v)| (k.clone(), *v)).unwrap();
    let (t2, a2) = on2.iter().next().map(|(k, v)| (k.clone(), *v)).unwrap();
    assert_ne!(a1, a2);
    let slot = |task: &str| task.split('.').nth(1).unwrap().to_string();
    for (task, addr) in [(&t1, a1), (&t2, a2)] {
        let want = format!("hello from {service}-{} (port 80)", slot(task));
        let got = bed
            .fetch(addr, 80, 5)
            .unwrap_or_else(|e| panic!("{task} at {addr}: {e}"));
        assert_eq!(got.trim(), want);
    }

    // Drain node 2: its task moves to node 1, its old router goes (lease released) and
    // the new one gets the same address.
    let node2 = h2.docker_ok(&["info", "--format", "{{.Swarm.NodeID}}"]);
    let drained = Instant::now();
    docker::docker_ok(&["node", "update", "--availability", "drain", node2.trim()]);
    let moved_slot = slot(&t2);
    let mut moved = None;
    // When Swarm had the new task's container running on node 1 (its part of the time).
    let mut rescheduled: Option<Duration> = None;
    let answered = wait_until(BOUND, Duration::from_millis(200), || {
        if rescheduled.is_none() {
            let running = docker::docker(&[
                "ps",
                "--filter",
                &format!("label=com.docker.swarm.service.name={service}"),
                "--filter",
                "status=running",
                "--format",
                "{{.Names}}",
            ])
            .unwrap_or_default();
            if running.split_whitespace().any(|n| slot(n) == moved_slot) {
                rescheduled = Some(drained.elapsed());
            }
        }
        let now1 = bound_tasks(&bed, &h2, false, &service);
        moved = now1
            .iter()
            .find(|(t, _)| slot(t) == moved_slot)
            .map(|(t, a)| (t.clone(), *a));
        matches!(&moved, Some((_, a)) if *a == a2)
            && bed
                .fetch(a2, 80, 1)
                .is_ok_and(|b| b.trim() == format!("hello from {service}-{moved_slot} (port 80)"))
    });
    let took = drained.elapsed();
    assert!(
        answered,
        "slot {moved_slot} did not answer at {a2} on node 1 after the drain: {moved:?}\n\
         watch 1: {}\nwatch 2: {}",
        w1.log(),
        w2_text()
    );
    eprintln!(
        "drain to answering again on the other node at the same address: {took:?} \
         (Swarm had the new task running after {rescheduled:?})"
    );
    assert!(
        h2.docker_ok(&["ps", "-aq", "--filter", "label=netcontainer.role=router"])
            .trim()
            .is_empty(),
        "node 2 kept a router after its task left"
    );
    assert!(
        bed.dnsmasq
            .log()
            .contains(&format!("DHCPRELEASE(br0) {a2}")),
        "node 2's router did not release {a2}"
    );

    // Removing the service releases every lease and leaves no router on either node.
    docker::docker_ok(&["service", "rm", &service]);
    let gone = wait_until(BOUND, Duration::from_millis(250), || {
        docker::docker(&["ps", "-aq", "--filter", "label=netcontainer.role=router"]).is_ok_and(
            |o| {
                o.split_whitespace().all(|id| {
                    docker::docker(&[
                        "inspect",
                        "--format",
                        "{{index .Config.Labels \"netcontainer.service\"}}",
                        id,
                    ])
                    .is_ok_and(|s| !s.trim().starts_with(&service))
                })
            },
        )
    });
    assert!(gone, "routers left after service rm: {}", w1.log());
    for a in [a1, a2] {
        assert!(
            wait_until(Duration::from_secs(10), Duration::from_millis(200), || bed
                .dnsmasq
                .lease_of(a)
                .is_none()),
            "lease {a} not released"
        );
    }
    w1.stop();
    w2.terminate(Duration::from_secs(10));
}
