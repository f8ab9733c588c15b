//! The driver against rootful Podman (Debian's 4.3.1) through its Docker-compatible
//! socket, as a user would point it there (`DOCKER_HOST`): a private `podman system
//! service` (tests/src/podman.rs: its own storage, run root and network directory;
//! Docker's are untouched), the router and sample images moved in with `podman load`,
//! and the Docker bed's LAN, with its Docker network made by Podman (netavark).
//!
//! One test, in phases, because `DOCKER_HOST` is set for the whole test process (the
//! bed's own `docker` calls and every driver it runs go to Podman):
//! 1. the demo's steps: `up`, a LAN client fetches the page, `ls`, `port`, `status`,
//!    `down` (clean), and `up` again gets the same address: the identity is stable
//!    although Podman's `/info` answers a new ID on every call;
//! 2. watch's basics: a labelled service gets its router; docker-mirror's endpoint
//!    answers a plain container on the Podman network (`/hostip`, a service's
//!    `/container/NAME/port/80`, `/v1/self`); a killed router (Podman says
//!    `died`, not `die`) is healed from the event, long before the resync; the removed
//!    service takes its router and lease along.
//!
//! Root only; holds the exclusive suite lock (watch acts on every router of the engine).

use netcontainer_tests::docker::{self, ROUTER_IMAGE, SAMPLE_IMAGE};
use netcontainer_tests::podman::Podman;
use netcontainer_tests::watch::{self, Watch};
use netcontainer_tests::*;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const BUSYBOX_IMAGE: &str = "netcontainer/busybox:latest";
/// The host address watch gives containers without a router (`--host-address`).
const HOST: &str = "203.0.113.250";

fn serves(bed: &docker::DockerBed, addr: Ipv4Addr, service: &str, within: Duration) {
    if let Err(e) = watch::wait_serves(bed, addr, 80, service, within) {
        panic!("{service}: {e}");
    }
}

#[test]
fn demo_and_watch_basics_on_podman() {
    require_root!();
    let podman = Podman::start(&[ROUTER_IMAGE, SAMPLE_IMAGE, BUSYBOX_IMAGE]);
    // SAFETY: this binary's only test sets it before any thread of ours runs.
    unsafe { std::env::set_var("DOCKER_HOST", podman.docker_host()) };
    let engine = docker::docker_ok(&["version", "--format", "{{.Server.Version}}"]);
    assert!(
        engine.trim().starts_with('4'),
        "DOCKER_HOST does not reach Podman: server version {engine:?}"
    );
    let bed = watch::bed(0);
    let _forward = podman.allow_bridge(&bed.bridge());

    // --- 1. the demo's steps -----------------------------------------------------------
    let svc = bed.run_service("web", &["--http", "80"]);
    let up = bed.up(&svc.name, &[]);
    assert!(
        docker::in_pool(up.address),
        "{up:?} not from the LAN's pool"
    );
    serves(&bed, up.address, &svc.name, Duration::from_secs(10));
    let entry = bed
        .ls_entry(&svc.name)
        .unwrap_or_else(|| panic!("ls does not list {}", svc.name));
    assert_eq!(
        watch::agent(&entry).and_then(|a| a.address()),
        Some(up.address),
        "ls: {entry}"
    );
    let port = bed.nc(&["port", &svc.name]);
    assert!(
        port.ok() && port.stdout.contains(&format!("{}:80", up.address)),
        "port: {port}"
    );
    let st = bed.status_json(&svc.name);
    assert_eq!(
        watch::agent(&st).map(|a| a.state),
        Some("bound".to_string()),
        "status: {st}"
    );
    let down = bed.down(&svc.name);
    assert!(down.ok(), "down: {down}");
    bed.assert_clean(&svc.name);
    let again = bed.up(&svc.name, &[]);
    assert_eq!(
        again.address, up.address,
        "a second up on Podman got another address: the identity is not stable"
    );
    serves(&bed, again.address, &svc.name, Duration::from_secs(10));
    assert!(bed.down(&svc.name).ok());

    // --- 2. watch's basics -------------------------------------------------------------
    // A resync far away: what happens within the test comes from events.
    let mut w = Watch::start(&bed, &["--resync", "600", "--host-address", HOST], &[]);
    assert!(
        w.wait_watching(1, Duration::from_secs(30)),
        "watch never finished its first pass:\n{}",
        w.log()
    );
    let labelled = watch::labelled_service(&bed, "lbl", &[]);
    let addr = watch::wait_bound(&bed, &labelled.name, Duration::from_secs(40))
        .unwrap_or_else(|| panic!("no lease for {}:\n{}", labelled.name, w.log()));
    serves(&bed, addr, &labelled.name, Duration::from_secs(10));

    // docker-mirror's endpoint on the Podman network's gateway: a plain container
    // learns the host's address and a service's public port, and is told who it
    // is (Podman names the container's network by name, not by ID).
    let plain = bed.container("plain", BUSYBOX_IMAGE, &[], &["sleep", "120"], true);
    let ask = |path: &str| {
        docker::docker(&[
            "exec",
            &plain.name,
            // The image's curl: busybox wget, flags ignored.
            "curl",
            &format!("http://{}:9001{path}", bed.gateway),
        ])
    };
    let answered = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        ask("/hostip").is_ok_and(|h| h.trim() == HOST)
    });
    assert!(answered, "/hostip: {:?}\n{}", ask("/hostip"), w.log());
    let port = ask(&format!("/container/{}/port/80", labelled.name));
    assert_eq!(
        port.as_deref().map(str::trim),
        Ok("80"),
        "/container/{}/port/80",
        labelled.name
    );
    let me = ask("/v1/self").unwrap_or_else(|e| panic!("/v1/self: {e}\n{}", w.log()));
    let me: serde_json::Value =
        serde_json::from_str(&me).unwrap_or_else(|e| panic!("/v1/self is not JSON ({e}): {me}"));
    assert_eq!(
        me["name"].as_str(),
        Some(plain.name.as_str()),
        "/v1/self: {me}"
    );

    let router = docker::router_name(&labelled.name);
    let before = watch::id_and_start(&router).expect("router inspect");
    docker::docker_ok(&["kill", &router]);
    let killed = Instant::now();
    let healed = wait_until(Duration::from_secs(40), Duration::from_millis(200), || {
        watch::running(&router) && watch::id_and_start(&router).is_some_and(|now| now != before)
    });
    assert!(
        healed,
        "a killed router was not healed from Podman's event within 40 s:\n{}",
        w.log()
    );
    serves(&bed, addr, &labelled.name, Duration::from_secs(20));
    eprintln!(
        "router healed and serving {:?} after the kill",
        killed.elapsed()
    );

    docker::docker_ok(&["rm", "-f", &labelled.name]);
    let gone = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
        docker::containers_of(&labelled.name).is_empty()
    });
    assert!(gone, "the removed service's router stayed:\n{}", w.log());
    w.assert_running();
}
