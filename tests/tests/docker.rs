//! The host driver against the real Docker engine: `netcontainer up/down/status/ls` on
//! sample service containers, with a simulated LAN. Root only (`require_root!` skips
//! otherwise, fails under CI); the router image and the sample image must exist (built by
//! `./scripts/build-router-image` and `./scripts/build-sample-image`; `scripts/test` does
//! it in its hook `scripts/test.d/10-images`), else every test panics saying so.
//!
//! Each test builds its own [`DockerBed`]: a LAN namespace (bridge, dnsmasq with
//! 203.0.113.50-150, router option 203.0.113.1), a LAN client namespace (203.0.113.10), a veth
//! whose root-namespace end is the `--parent`, and a Docker network on its own /28 of
//! 198.51.100.0/24 (the number passed to `DockerBed::new`; the next free one if taken).
//! Guards remove routers, state directories, containers, the network, the veth, dnsmasq
//! and the namespaces on drop, also when a test fails (the routers' logs are printed then).

use netcontainer_proto::contract::LAN_IF;
use netcontainer_tests::docker::{self, DockerBed, Invocation, NOPORTS_IMAGE};
use netcontainer_tests::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(50);

fn ports(p: &[&str]) -> BTreeSet<String> {
    p.iter().map(|s| s.to_string()).collect()
}

fn page(service: &str, port: u16) -> String {
    format!("hello from {service} (port {port})")
}

/// The LAN client fetches `addr:port` and gets `service`'s page for that port.
fn assert_serves(bed: &DockerBed, addr: Ipv4Addr, port: u16, service: &str) {
    match bed.fetch(addr, port, 5) {
        Ok(body) => assert_eq!(
            body.trim(),
            page(service, port),
            "http://{addr}:{port}/ answered with someone else's page"
        ),
        Err(e) => panic!("http://{addr}:{port}/ from the LAN client: {e}"),
    }
}

/// A failed driver call: non-zero exit, stderr's first line is `error: ...` containing
/// `msg`.
fn assert_error(out: &agent::CmdOutput, msg: &str) {
    assert!(
        out.status.is_some() && !out.ok(),
        "expected a failure with {msg:?}: {out}"
    );
    // Progress lines of a slow `up` ("SERVICE: waiting for a DHCP lease (STATE)", and
    // "pulling router image REF" when the image is missing) may come first; anything else
    // must not.
    let first = out
        .stderr
        .lines()
        .find(|l| {
            !l.contains(": waiting for a DHCP lease (") && !l.starts_with("pulling router image ")
        })
        .unwrap_or_default();
    assert!(
        first.starts_with("error: "),
        "stderr's first line is not `error: ...`: {out}"
    );
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("error"))
            .count(),
        1,
        "one error line: {out}"
    );
    assert!(first.contains(msg), "expected {msg:?} in the error: {out}");
    assert!(
        out.stdout.trim().is_empty(),
        "a failed up printed something: {out}"
    );
}

/// Runs a failing `up` and checks the error and that nothing stayed behind: no container
/// labelled for the service, no state directory, no new link of this bed in the root
/// namespace.
fn up_fails(bed: &DockerBed, service: &str, extra: &[&str], inv: &Invocation, msg: &str) {
    let links = bed.my_links();
    bed.track_service(service);
    let mut a = vec!["up", service, "--timeout", "20"];
    if !extra.contains(&"--parent") {
        a.extend_from_slice(&["--parent", &bed.parent]);
    }
    a.extend_from_slice(extra);
    let out = bed.nc_with(&a, inv);
    assert_error(&out, msg);
    bed.assert_clean(service);
    assert_eq!(
        bed.my_links(),
        links,
        "links appeared in the root namespace"
    );
}

/// The ls/status entry's agent status, checked bound to `addr`.
fn assert_bound(entry: &Value, addr: Ipv4Addr) -> AgentStatus {
    let st = AgentStatus::parse(entry["agent"].clone())
        .unwrap_or_else(|e| panic!("no agent status in {entry}: {e}"));
    assert_eq!(st.state, "bound", "{entry}");
    assert_eq!(st.address(), Some(addr), "{entry}");
    assert_eq!(st.interface.as_deref(), Some(LAN_IF));
    let lease = st.lease.clone().unwrap();
    assert_eq!(lease.prefix_len, 24);
    assert_eq!(lease.gateway, Some(docker::LAN_GATEWAY));
    assert_eq!(lease.server_id, Some(docker::LAN_GATEWAY));
    assert_eq!(st.last_error, None, "{entry}");
    st
}

/// The forwards of a status as comparable tuples:
/// (protocol, public_port, public_port_end, target_address, target_port).
fn forwards(st: &AgentStatus) -> BTreeSet<(String, u64, u64, String, u64)> {
    st.forwards
        .iter()
        .map(|f| {
            (
                f["protocol"].as_str().unwrap_or_default().to_string(),
                f["public_port"].as_u64().unwrap_or(0),
                f["public_port_end"].as_u64().unwrap_or(0),
                f["target_address"].as_str().unwrap_or_default().to_string(),
                f["target_port"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn lease_gone(bed: &DockerBed, addr: Ipv4Addr) -> bool {
    wait_until(Duration::from_secs(5), POLL, || {
        bed.dnsmasq.lease_of(addr).is_none()
    })
}

/// 1. Two services both on port 80 each get their own LAN address from the LAN's DHCP
///    server, and a LAN client reaches each one's own page on the standard port.
#[test]
fn up_gives_each_port_80_service_its_own_lan_address() {
    require_root!();
    let bed = DockerBed::new(0);
    let a = bed.run_service("a", &[]);
    let b = bed.run_service("b", &[]);
    let ua = bed.up(&a.name, &[]);
    let ub = bed.up(&b.name, &[]);
    for (u, s) in [(&ua, &a), (&ub, &b)] {
        assert_eq!(u.service, s.name);
        assert!(
            docker::in_pool(u.address),
            "{} not in dnsmasq's pool",
            u.address
        );
        assert_eq!(u.ports, ports(&["80/tcp"]), "ports printed by up");
        assert!(
            bed.dnsmasq.lease_of(u.address).is_some(),
            "dnsmasq has no lease for {}",
            u.address
        );
    }
    assert_ne!(ua.address, ub.address, "two services, one address");
    assert_serves(&bed, ua.address, 80, &a.name);
    assert_serves(&bed, ub.address, 80, &b.name);
    // And once more, the other way round (no cross-talk after the first connections).
    assert_serves(&bed, ub.address, 80, &b.name);
    assert_serves(&bed, ua.address, 80, &a.name);
}

/// 2. `--publish` replaces the exposed ports: TCP 8080 answers while the exposed 80 does
///    not; a UDP forward echoes; a TCP range forwards every port to the same port.
#[test]
fn publish_overrides_exposed_ports_with_udp_and_ranges() {
    require_root!();
    let bed = DockerBed::new(1);
    let s = bed.run_service(
        "s",
        &[
            "--http",
            "80",
            "--http",
            "8080",
            "--udp-echo",
            "5353",
            "--http",
            "7000-7009",
        ],
    );
    let u = bed.up(
        &s.name,
        &[
            "--publish",
            "8080/tcp",
            "--publish",
            "5353/udp",
            "--publish",
            "7000-7009/tcp",
        ],
    );
    assert_eq!(
        u.ports,
        ports(&["8080/tcp", "5353/udp", "7000-7009/tcp"]),
        "ports printed by up"
    );
    assert_serves(&bed, u.address, 8080, &s.name);
    for p in 7000..=7009 {
        assert_serves(&bed, u.address, p, &s.name);
    }
    let reply = bed
        .udp(u.address, 5353, b"ping over udp")
        .unwrap_or_else(|e| panic!("UDP 5353 through the router: {e}"));
    assert_eq!(reply, b"ping over udp");
    // The exposed port 80 is not forwarded (the service does listen on it).
    let r = bed.fetch(u.address, 80, 2);
    assert!(r.is_err(), "port 80 answered though not published: {r:?}");
    // Neither is a port just outside the range.
    let r = bed.fetch(u.address, 7010, 2);
    assert!(r.is_err(), "port 7010 answered: {r:?}");
}

/// 3. `status SERVICE --json` and `ls --json` report the bound lease (the address `up`
///    printed) and the forwards to the service's Docker address.
#[test]
fn status_and_ls_report_lease_and_forwards() {
    require_root!();
    let bed = DockerBed::new(2);
    let s = bed.run_service(
        "s",
        &["--http", "80", "--udp-echo", "5353", "--http", "7000-7002"],
    );
    let ip = s.ip.unwrap().to_string();
    let u = bed.up(
        &s.name,
        &[
            "--publish",
            "80/tcp",
            "--publish",
            "5353/udp",
            "--publish",
            "7000-7002/tcp",
        ],
    );
    let want: BTreeSet<_> = [
        ("tcp", 80, 80, 80),
        ("udp", 5353, 5353, 5353),
        ("tcp", 7000, 7002, 7000),
    ]
    .into_iter()
    .map(|(p, a, b, t)| (p.to_string(), a, b, ip.clone(), t))
    .collect();

    let status = bed.status_json(&s.name);
    let ls = bed
        .ls_entry(&s.name)
        .unwrap_or_else(|| panic!("ls --json does not list {}", s.name));
    for (what, e) in [("status --json", &status), ("ls --json", &ls)] {
        assert_eq!(e["service"].as_str(), Some(s.name.as_str()), "{what}: {e}");
        assert_eq!(
            e["router"].as_str(),
            Some(docker::router_name(&s.name).as_str()),
            "{what}: {e}"
        );
        assert_eq!(e["router_running"], Value::Bool(true), "{what}: {e}");
        assert_eq!(
            e["parent"].as_str(),
            Some(bed.parent.as_str()),
            "{what}: {e}"
        );
        assert_eq!(e["mode"].as_str(), Some("macvlan"), "{what}: {e}");
        let st = assert_bound(e, u.address);
        assert_eq!(forwards(&st), want, "{what}: forwards");
    }
    // The lease dnsmasq handed out is the one of the router's MAC and host name.
    let lease = bed
        .dnsmasq
        .lease_of(u.address)
        .unwrap_or_else(|| panic!("dnsmasq has no lease for {}", u.address));
    assert_eq!(Some(lease.mac.as_str()), status["mac"].as_str());
    assert_eq!(lease.hostname.as_deref(), Some(s.name.as_str()));
    // status of a service without a network container fails.
    let other = bed.run_service("o", &[]);
    let out = bed.nc(&["status", &other.name, "--json"]);
    assert_error(&out, "has no network container");
}

/// 4. `down` releases the lease (gone from dnsmasq's lease file) and leaves nothing; `up`
///    again gets the same address; a second `down` succeeds with nothing to do.
#[test]
fn down_releases_and_up_again_gets_the_same_address() {
    require_root!();
    let bed = DockerBed::new(3);
    let s = bed.run_service("s", &[]);
    let first = bed.up(&s.name, &[]);
    assert_serves(&bed, first.address, 80, &s.name);
    let mac = bed.dnsmasq.lease_of(first.address).map(|l| l.mac);
    assert!(mac.is_some(), "no lease in dnsmasq for {}", first.address);

    let out = bed.down(&s.name);
    assert!(out.ok(), "down failed: {out}");
    assert!(out.stdout.contains("removed"), "down said: {out}");
    bed.assert_clean(&s.name);
    assert!(
        lease_gone(&bed, first.address),
        "dnsmasq still holds {} after down: {:?}",
        first.address,
        bed.dnsmasq.leases()
    );
    assert!(
        bed.dnsmasq.log().contains("DHCPRELEASE"),
        "dnsmasq saw no DHCPRELEASE"
    );
    assert!(
        bed.fetch(first.address, 80, 2).is_err(),
        "still answers after down"
    );

    let again = bed.up(&s.name, &[]);
    assert_eq!(
        again.address, first.address,
        "a new router, another address"
    );
    assert_eq!(
        bed.dnsmasq.lease_of(again.address).map(|l| l.mac),
        mac,
        "the same (derived) MAC"
    );
    assert_serves(&bed, again.address, 80, &s.name);

    let out = bed.down(&s.name);
    assert!(out.ok(), "down failed: {out}");
    let out = bed.down(&s.name);
    assert!(out.ok(), "second down failed: {out}");
    assert!(
        out.stdout.contains("nothing to do"),
        "second down should say there was nothing to do: {out}"
    );
    bed.assert_clean(&s.name);
    assert!(lease_gone(&bed, again.address), "lease kept after down");
    assert!(bed.ls_entry(&s.name).is_none(), "ls still lists it");
}

/// 5a. No such container.
#[test]
fn up_fails_for_a_missing_container() {
    require_root!();
    let bed = DockerBed::new(4);
    let name = bed.name("ghost");
    up_fails(
        &bed,
        &name,
        &[],
        &Invocation::default(),
        "no such container",
    );
}

/// 5b. A created (never started) and a stopped service.
#[test]
fn up_fails_for_a_container_that_is_not_running() {
    require_root!();
    let bed = DockerBed::new(5);
    let created = bed.container("new", docker::SAMPLE_IMAGE, &[], &[], false);
    up_fails(
        &bed,
        &created.name,
        &[],
        &Invocation::default(),
        "is not running",
    );
    let stopped = bed.run_service("old", &[]);
    docker::docker_ok(&["kill", &stopped.name]);
    up_fails(
        &bed,
        &stopped.name,
        &[],
        &Invocation::default(),
        "is not running",
    );
}

/// 5c. A service that exposes no port, and no --publish.
#[test]
fn up_fails_without_ports() {
    require_root!();
    let bed = DockerBed::new(6);
    docker::ensure_noports_image();
    let s = bed.container("np", NOPORTS_IMAGE, &[], &[], true);
    up_fails(
        &bed,
        &s.name,
        &[],
        &Invocation::default(),
        "exposes no ports",
    );
    // The same service is fine with --publish (the image is usable, only ports lacked).
    let u = bed.up(&s.name, &["--publish", "80/tcp"]);
    assert_serves(&bed, u.address, 80, &s.name);
}

/// 5d. The parent interface does not exist.
#[test]
fn up_fails_for_a_missing_parent() {
    require_root!();
    let bed = DockerBed::new(7);
    let s = bed.run_service("s", &[]);
    let missing = bed.name("zz");
    up_fails(
        &bed,
        &s.name,
        &["--parent", &missing],
        &Invocation::default(),
        &format!("parent interface {missing} does not exist"),
    );
}

/// 5e. The parent interface is down.
#[test]
fn up_fails_for_a_parent_that_is_down() {
    require_root!();
    let bed = DockerBed::new(8);
    let s = bed.run_service("s", &[]);
    ip(&["link", "set", &bed.parent, "down"]);
    up_fails(
        &bed,
        &s.name,
        &[],
        &Invocation::default(),
        &format!("parent interface {} is down", bed.parent),
    );
}

/// 5f. The router image is not there, and its registry cannot be reached (port 1 of
///     127.0.0.1: refused at once, nothing leaves the machine). tests/tests/registry.rs
///     has the registry that answers "no such tag".
#[test]
fn up_fails_for_a_missing_router_image() {
    require_root!();
    let bed = DockerBed::new(9);
    let s = bed.run_service("s", &[]);
    up_fails(
        &bed,
        &s.name,
        &["--image", "127.0.0.1:1/netcontainer/does-not-exist:0"],
        &Invocation::default(),
        "cannot pull router image 127.0.0.1:1/netcontainer/does-not-exist:0: ",
    );
}

/// 5g. The Docker daemon cannot be reached.
#[test]
fn up_fails_when_docker_is_unreachable() {
    require_root!();
    let bed = DockerBed::new(10);
    let s = bed.run_service("s", &[]);
    let inv = Invocation {
        env: vec![("DOCKER_HOST".into(), "unix:///nonexistent.sock".into())],
        ..Default::default()
    };
    up_fails(&bed, &s.name, &[], &inv, "cannot reach the Docker daemon");
}

/// 5h. Not root.
#[test]
fn up_fails_when_not_root() {
    require_root!();
    let bed = DockerBed::new(11);
    let s = bed.run_service("s", &[]);
    let inv = Invocation {
        wrapper: [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]
        .map(String::from)
        .to_vec(),
        ..Default::default()
    };
    up_fails(&bed, &s.name, &[], &inv, "must run as root");
}

/// 5i. A second `up` for a service that already has a network container fails and leaves
///     the first router as it was.
#[test]
fn up_fails_when_already_up() {
    require_root!();
    let bed = DockerBed::new(12);
    let s = bed.run_service("s", &[]);
    let u = bed.up(&s.name, &[]);
    let router = docker::router_name(&s.name);
    let id =
        |r: &str| docker::docker_ok(&["inspect", "--format", "{{.Id}} {{.State.StartedAt}}", r]);
    let before = id(&router);
    let links = bed.my_links();
    // The check sees this bed's links: the service's and the router's veth on the bridge.
    assert!(links.len() >= 2, "my_links sees too little: {links:?}");
    let out = bed.try_up(&s.name, &["--publish", "8080/tcp"]);
    assert_error(&out, "already has a network container");
    assert!(
        out.stderr.contains(&u.address.to_string()),
        "the error should name the address in use: {out}"
    );
    assert_eq!(id(&router), before, "the first router was touched");
    assert_eq!(bed.my_links(), links, "links changed");
    assert!(
        docker::state_dir(&s.name).exists(),
        "state directory removed"
    );
    assert_eq!(docker::containers_of(&s.name).len(), 1);
    let e = bed.status_json(&s.name);
    let st = assert_bound(&e, u.address);
    assert_eq!(st.forwards.len(), 1, "forwards changed: {e}");
    assert_serves(&bed, u.address, 80, &s.name);
}

/// 5j. No DHCP server answers on the parent's LAN: `up` times out and rolls back the
///     router container, its LAN leg and its state directory.
#[test]
fn up_times_out_without_dhcp_and_rolls_back() {
    require_root!();
    let bed = DockerBed::new(13);
    let s = bed.run_service("s", &[]);
    // A parent whose other end is up in the LAN namespace but on no bridge: silence.
    let quiet = bed.name("q");
    bed.track_link(&quiet);
    ip(&[
        "link",
        "add",
        &quiet,
        "type",
        "veth",
        "peer",
        "name",
        "quiet",
        "netns",
        bed.lan.name(),
    ]);
    bed.lan.ip(&["link", "set", "quiet", "up"]);
    ip(&["link", "set", &quiet, "up"]);
    let links = bed.my_links();
    let out = bed.nc(&["up", &s.name, "--parent", &quiet, "--timeout", "3"]);
    assert_error(&out, "no DHCP lease for");
    assert!(
        out.elapsed < Duration::from_secs(20),
        "took {:?}",
        out.elapsed
    );
    bed.assert_clean(&s.name);
    assert_eq!(bed.my_links(), links, "links left in the root namespace");
    // And the service can still be brought up on the real LAN afterwards.
    let u = bed.up(&s.name, &[]);
    assert_serves(&bed, u.address, 80, &s.name);
}

/// 6. A router removed behind the driver's back (`docker rm -f`) disappears from `ls`,
///    and `up` works again with the same address.
#[test]
fn router_removed_behind_the_drivers_back() {
    require_root!();
    let bed = DockerBed::new(14);
    let s = bed.run_service("s", &[]);
    let first = bed.up(&s.name, &[]);
    assert!(bed.ls_entry(&s.name).is_some(), "ls does not list it");
    docker::docker_ok(&["rm", "-f", &docker::router_name(&s.name)]);
    assert!(
        bed.ls_entry(&s.name).is_none(),
        "ls --json still lists a removed router"
    );
    assert_error(&bed.nc(&["status", &s.name]), "has no network container");
    let again = bed.up(&s.name, &[]);
    assert_eq!(
        again.address, first.address,
        "a re-created router, another address"
    );
    assert_serves(&bed, again.address, 80, &s.name);
    let e = bed
        .ls_entry(&s.name)
        .unwrap_or_else(|| panic!("ls does not list the new router"));
    assert_bound(&e, again.address);
    let out = bed.down(&s.name);
    assert!(out.ok(), "down failed: {out}");
    bed.assert_clean(&s.name);
}

/// 7. `up` right after the previous router of the same service died, while the kernel is
///    still tearing down its network namespace: the old `lan0` (same derived MAC, same
///    parent) still exists for a moment, and a macvlan with a MAC already in use on its
///    parent cannot be brought up (EADDRINUSE) until it is gone. Namespace teardown is
///    asynchronous and takes longer on a loaded host; here the old namespace is held open
///    for 1.5 s to make that deterministic. `up` must wait it out (its --timeout allows
///    it), not fail.
#[test]
fn up_waits_for_the_old_routers_lan_leg_to_go_away() {
    require_root!();
    let bed = DockerBed::new(15);
    let s = bed.run_service("s", &[]);
    let first = bed.up(&s.name, &[]);
    let router = docker::router_name(&s.name);
    let pid = docker::docker_ok(&["inspect", "--format", "{{.State.Pid}}", &router]);
    let old_ns = std::fs::File::open(format!("/proc/{}/ns/net", pid.trim()))
        .expect("open the router's network namespace");
    docker::docker_ok(&["rm", "-f", &router]);
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        drop(old_ns);
    });
    let out = bed.try_up(&s.name, &[]);
    holder.join().unwrap();
    assert!(
        out.ok(),
        "up while the old router's lan0 (same MAC) still exists failed: {out}"
    );
    let again = docker::parse_up(&out).unwrap();
    assert_eq!(again.address, first.address);
    assert_serves(&bed, again.address, 80, &s.name);
}
