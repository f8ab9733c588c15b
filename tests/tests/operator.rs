//! The operator's tool on the real Docker engine: `netcontainer port`, port remapping
//! (`--publish LAN:CONTAINER/PROTO` and the `netcontainer.ports` label), and `ls`/`status`
//! output (`-q`, `--format`). Root only; same bed as `tests/docker.rs` (see there).

use netcontainer_tests::docker::{DockerBed, SAMPLE_IMAGE};
use netcontainer_tests::*;

fn page(service: &str, port: u16) -> String {
    format!("hello from {service} (port {port})")
}

fn one_error_line(out: &agent::CmdOutput, msg: &str) {
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(1),
        "expected exit 1: {out}"
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {out}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(msg),
        "expected `error: ...{msg}...`: {out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
}

/// `up --publish 80:8080/tcp --publish 7000-7001:8000-8001/udp`: the LAN client reaches
/// the service's 8080 on port 80 and its UDP echo on 7000-7001; `port` prints Docker's
/// lines; the router's label records the remapping.
#[test]
fn publish_remaps_lan_ports_and_port_shows_them() {
    require_root!();
    let bed = DockerBed::new(9);
    let s = bed.run_service("s", &["--http", "8080", "--udp-echo", "8000-8001"]);
    let u = bed.up(
        &s.name,
        &[
            "--publish",
            "80:8080/tcp",
            "--publish",
            "7000-7001:8000-8001/udp",
        ],
    );
    assert!(
        u.ports.contains("80:8080/tcp") && u.ports.contains("7000-7001:8000-8001/udp"),
        "ports printed by up: {:?}",
        u.ports
    );
    let body = bed
        .fetch(u.address, 80, 5)
        .unwrap_or_else(|e| panic!("http://{}:80/ from the LAN: {e}", u.address));
    assert_eq!(body.trim(), page(&s.name, 8080));
    for p in [7000, 7001] {
        let reply = bed
            .udp(u.address, p, b"remapped")
            .unwrap_or_else(|e| panic!("UDP {p} through the router: {e}"));
        assert_eq!(reply, b"remapped");
    }
    // The container's own port is not on the LAN.
    assert!(
        bed.fetch(u.address, 8080, 2).is_err(),
        "8080 answered on the LAN"
    );

    let out = bed.nc(&["port", &s.name]);
    assert!(out.ok(), "{out}");
    let a = u.address;
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [
            format!("8080/tcp -> {a}:80"),
            format!("8000/udp -> {a}:7000"),
            format!("8001/udp -> {a}:7001"),
        ]
    );
    let out = bed.nc(&["port", &s.name, "8001/udp"]);
    assert!(out.ok(), "{out}");
    assert_eq!(out.stdout, format!("8001/udp -> {a}:7001\n"));
    // Docker's rule: PRIVATE is the container's port; 80 is only the LAN's.
    one_error_line(
        &bed.nc(&["port", &s.name, "80"]),
        &format!("no public port '80/tcp' published for {}", s.name),
    );

    let labels = docker::docker_ok(&[
        "inspect",
        "--format",
        "{{index .Config.Labels \"netcontainer.ports\"}}",
        &docker::router_name(&s.name),
    ]);
    assert_eq!(labels.trim(), "80:8080/tcp 7000-7001:8000-8001/udp");
}

/// `port` of a service without a network container, and of a missing one: exit 1, one line.
#[test]
fn port_fails_without_a_network_container() {
    require_root!();
    let bed = DockerBed::new(10);
    let s = bed.run_service("s", &[]);
    one_error_line(
        &bed.nc(&["port", &s.name]),
        &format!("{} has no network container", s.name),
    );
    let missing = bed.name("missing");
    let out = bed.nc(&["port", &missing]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out}");
    assert!(out.stderr.starts_with("error: "), "{out}");
}

/// The `netcontainer.ports` label remaps too; a bad spec in it is refused naming it.
#[test]
fn ports_label_remaps_and_bad_specs_are_named() {
    require_root!();
    let bed = DockerBed::new(11);
    let s = bed.container(
        "s",
        SAMPLE_IMAGE,
        &["--label", "netcontainer.ports=80:8080/tcp"],
        &["--http", "8080"],
        true,
    );
    let u = bed.up(&s.name, &[]);
    let body = bed
        .fetch(u.address, 80, 5)
        .unwrap_or_else(|e| panic!("http://{}:80/ from the LAN: {e}", u.address));
    assert_eq!(body.trim(), page(&s.name, 8080));
    let out = bed.nc(&["port", &s.name, "8080"]);
    assert_eq!(
        out.stdout,
        format!("8080/tcp -> {}:80\n", u.address),
        "{out}"
    );

    // `ls -q`, `ls --format` and `status --format` on a real router.
    let out = bed.nc(&["ls", "-q"]);
    assert!(out.ok(), "{out}");
    assert!(out.stdout.lines().any(|l| l == s.name), "{out}");
    let out = bed.nc(&["ls", "--format", "{{.Service}} {{.Address}} {{.Ports}}"]);
    assert!(out.ok(), "{out}");
    let want = format!("{} {} 80->8080/tcp", s.name, u.address);
    assert!(
        out.stdout.lines().any(|l| l == want),
        "want {want:?}: {out}"
    );
    let out = bed.nc(&["status", &s.name, "--format", "{{.State}} {{.Mode}}"]);
    assert_eq!(out.stdout, "bound macvlan\n", "{out}");
    let out = bed.nc(&["ls", "--format", "{{.Nope}}"]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{out}");
    assert!(out.stderr.contains("Nope"), "{out}");

    // Bad specs: refused before anything is made, the spec named.
    for (spec, msg) in [
        ("80:8080-8081/tcp", "80:8080-8081/tcp"),
        ("81/tcp", "81/tcp"),
    ] {
        let t = bed.run_service(&format!("t{}", msg.len()), &["--http", "8080"]);
        let out = bed.try_up(&t.name, &["--publish", "80-81/tcp", "--publish", spec]);
        assert!(!out.ok(), "{out}");
        assert!(out.stderr.contains(msg), "{msg} not named: {out}");
        bed.assert_clean(&t.name);
    }
}
