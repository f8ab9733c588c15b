//! Docker Compose under `watch`, with Debian's `docker-compose` (Compose v1, 1.29) on the
//! real engine: a compose file whose service is labelled for watch and sits on an
//! external network (the bed's). Root only; the router and sample images must exist (see
//! tests/tests/docker.rs), and `docker-compose` (scripts/install-deps).
//!
//! A Compose replica's identity is its project, service and number (with this host's
//! ID), not its container's name: Compose v1 names replica 1 of `web` `<project>_web_1`,
//! Compose v2 `<project>-web-1`, and upgrading Compose must not renumber the LAN. The
//! test walks `up`, `up --force-recreate`, `restart`, `up --scale web=2`, a one-off
//! (`run`, which copies the service's labels and gets no router), `down`, and then a
//! container named the v2 way with the same Compose labels: it gets replica 1's address
//! back.
//!
//! Holds the Docker suites' lock exclusively ([`watch::bed`]). The bed's state
//! directories are its own (`DockerBed::use_own_state_dirs`), so is its host ID.

use netcontainer_tests::docker::{self, DockerBed, docker_ok, router_name};
use netcontainer_tests::watch::{self, Watch};
use netcontainer_tests::*;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const BOUND: Duration = Duration::from_secs(30);
const SERVES: Duration = Duration::from_secs(15);

/// A compose project of the test's own; `down` (with its one-offs) on drop.
struct Project {
    name: String,
    file: PathBuf,
}

impl Project {
    /// `docker-compose -p NAME -f FILE ARGS...`, bounded: Ok(stdout) or Err(output).
    fn compose(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("timeout")
            .arg("120")
            .arg("docker-compose")
            .args(["--no-ansi", "-p", &self.name, "-f"])
            .arg(&self.file)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("docker-compose: {e}"))?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if out.status.success() {
            Ok(text(&out.stdout))
        } else {
            Err(format!(
                "docker-compose {args:?}: {}\n{}{}",
                out.status,
                text(&out.stdout),
                text(&out.stderr)
            ))
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        self.compose(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Compose v1's name of replica `n` of service `web`.
    fn v1(&self, n: u32) -> String {
        format!("{}_web_{n}", self.name)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "--remove-orphans", "-t", "2"]);
    }
}

/// Waits for `service`'s router to be bound and serve its page; its address.
fn bound_and_serving(bed: &DockerBed, w: &Watch, service: &str) -> Ipv4Addr {
    let addr = watch::wait_bound(bed, service, BOUND).unwrap_or_else(|| {
        panic!(
            "{service}: no bound router: {:?}\n--- watch log ---\n{}",
            watch::status(bed, service),
            w.log()
        )
    });
    assert!(docker::in_pool(addr), "{addr} is not from dnsmasq's pool");
    if let Err(e) = watch::wait_serves(bed, addr, 80, "web", SERVES) {
        panic!("{service}: {e}\n--- watch log ---\n{}", w.log());
    }
    addr
}

fn identity(bed: &DockerBed, service: &str) -> String {
    watch::status(bed, service).expect("status")["identity"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn compose_replicas_keep_their_address_through_compose_and_its_v2_names() {
    require_root!();
    if Command::new("docker-compose")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        panic!("docker-compose is not installed: run scripts/install-deps");
    }
    let bed = watch::bed(9);
    let (_run, lib) = bed.use_own_state_dirs();
    let env = bed.driver_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let w = Watch::start(&bed, &[], &env);

    // As docs/operations.md shows it: the labels and the external network.
    let project = Project {
        name: format!("{}c", bed.id),
        file: bed.tmp.join("docker-compose.yml"),
    };
    std::fs::write(
        &project.file,
        format!(
            r#"version: "2.4"
services:
  web:
    image: {image}
    environment:
      SAMPLE_NAME: web
    labels:
      netcontainer.enable: "true"
      netcontainer.parent: {parent}
    networks: [lan]
networks:
  lan:
    external: true
    name: {network}
"#,
            image = docker::SAMPLE_IMAGE,
            parent = bed.parent,
            network = bed.network,
        ),
    )
    .unwrap();
    let (web1, web2, v2) = (
        project.v1(1),
        project.v1(2),
        format!("{}-web-1", project.name),
    );
    for s in [&web1, &web2, &v2] {
        bed.track_service(s);
    }

    // up: replica 1 gets an address; its identity is the replica, not the name.
    project.ok(&["up", "-d"]);
    let a = bound_and_serving(&bed, &w, &web1);
    // (Read leniently: without a host ID the identity below is what fails.)
    let host_id = std::fs::read_to_string(lib.join(".host-id")).unwrap_or_default();
    let want = format!("{}/compose/{}/web/1", host_id.trim(), project.name);
    assert_eq!(identity(&bed, &web1), want);

    // --force-recreate (a new container of the same name) and restart: the same address.
    project.ok(&["up", "-d", "--force-recreate"]);
    assert_eq!(
        bound_and_serving(&bed, &w, &web1),
        a,
        "after --force-recreate"
    );
    project.ok(&["restart", "-t", "2"]);
    assert_eq!(bound_and_serving(&bed, &w, &web1), a, "after restart");

    // --scale: replica 2 gets another address, replica 1 keeps its own.
    project.ok(&["up", "-d", "--scale", "web=2"]);
    let b = bound_and_serving(&bed, &w, &web2);
    assert_ne!(a, b);
    assert_eq!(identity(&bed, &web2), want.replace("/web/1", "/web/2"));
    assert_eq!(bound_and_serving(&bed, &w, &web1), a, "after --scale");

    // A one-off carries the service's labels (netcontainer.enable included) but is no
    // replica: no router for it.
    let oneoff = project
        .ok(&["run", "-d", "web"])
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(oneoff.contains("_web_run_"), "one-off's name: {oneoff:?}");
    bed.track_service(&oneoff);
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        docker::docker(&["inspect", &router_name(&oneoff)]).is_err(),
        "a router for the one-off {oneoff}\n--- watch log ---\n{}",
        w.log()
    );

    // down: routers gone, leases released.
    project.ok(&["down", "-t", "2"]);
    for s in [&web1, &web2] {
        assert!(
            wait_until(Duration::from_secs(20), watch::POLL, || docker::docker(&[
                "inspect",
                &router_name(s)
            ])
            .is_err()),
            "{s}'s router is still there after down\n--- watch log ---\n{}",
            w.log()
        );
    }

    // Compose v2's name for replica 1, the same labels: replica 1's address.
    bed.container(
        &v2[bed.id.len()..],
        docker::SAMPLE_IMAGE,
        &[
            "-e",
            "SAMPLE_NAME=web",
            "-l",
            &format!("com.docker.compose.project={}", project.name),
            "-l",
            "com.docker.compose.service=web",
            "-l",
            "com.docker.compose.container-number=1",
            "-l",
            "com.docker.compose.oneoff=False",
            "-l",
            "netcontainer.enable=true",
            "-l",
            &format!("netcontainer.parent={}", bed.parent),
        ],
        &[],
        true,
    );
    assert_eq!(identity_when_bound(&bed, &w, &v2), want);
    assert_eq!(
        bound_and_serving(&bed, &w, &v2),
        a,
        "v2's name for replica 1 got another address"
    );
    docker_ok(&["rm", "-f", &v2]);
    assert!(
        wait_until(Duration::from_secs(20), watch::POLL, || docker::docker(&[
            "inspect",
            &router_name(&v2)
        ])
        .is_err()),
        "{v2}'s router is still there after its removal"
    );
}

fn identity_when_bound(bed: &DockerBed, w: &Watch, service: &str) -> String {
    bound_and_serving(bed, w, service);
    identity(bed, service)
}
