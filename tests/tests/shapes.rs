//! Every Docker network shape a service may be on, on the Docker bed (LAN 203.0.113.0/24,
//! dnsmasq, LAN client 203.0.113.10; Docker networks on /28s of 198.51.100.0/24): either
//! `up` works and the LAN client gets the service's page through the leased address, or
//! `up` fails with one line naming the fix and leaves nothing behind. Root only.
//!
//! - a user-defined bridge: the bed's own network, which every test in `docker.rs` uses;
//! - the default `bridge` network (`docker run` without `--network`; its subnet is
//!   Docker's own): works;
//! - a service on two networks: the first by name is used, `up` says so on stderr,
//!   `--network NAME` (or the service label `netcontainer.network`) chooses;
//! - `com.docker.network.bridge.enable_icc=false`: Docker drops traffic between the
//!   network's containers, the router's DNAT included: refused with the fix;
//! - `--internal`: works (the router masquerades toward the service, which needs no
//!   route out).

use netcontainer_tests::docker::{self, DockerBed, ExtraNet as Net, SAMPLE_IMAGE};
use netcontainer_tests::*;
use std::net::Ipv4Addr;

/// A container of ours, removed on drop (before the networks and the bed).
struct Ctr(String);
impl Drop for Ctr {
    fn drop(&mut self) {
        let _ = docker::docker(&["rm", "-f", "-v", &self.0]);
    }
}

/// The sample service `<bed id><tag>` (HTTP on 80) with `net_args` (`--network X`, or
/// none for the default bridge); tracked so the bed removes its router.
fn service(bed: &DockerBed, tag: &str, net_args: &[&str]) -> Ctr {
    let name = bed.name(tag);
    bed.track_service(&name);
    let env = format!("SAMPLE_NAME={name}");
    let mut a = vec!["run", "-d", "--name", &name, "-e", &env];
    a.extend_from_slice(net_args);
    a.push(SAMPLE_IMAGE);
    docker::docker_ok(&a);
    Ctr(name)
}

fn page(service: &str) -> String {
    format!("hello from {service} (port 80)")
}

fn assert_serves(bed: &DockerBed, addr: Ipv4Addr, service: &str) {
    let body = retry_fetch(bed, addr);
    assert_eq!(body.trim(), page(service), "http://{addr}/");
}

fn retry_fetch(bed: &DockerBed, addr: Ipv4Addr) -> String {
    let mut last = String::new();
    for _ in 0..3 {
        match bed.fetch(addr, 80, 3) {
            Ok(b) => return b,
            Err(e) => last = e,
        }
    }
    panic!("http://{addr}/ from the LAN client: {last}");
}

/// One `error: ...` line (plus its `hint: ...`), nothing left behind.
fn assert_refused(bed: &DockerBed, out: &CmdOutput, service: &str, words: &[&str]) {
    assert!(
        out.status.is_some() && !out.ok(),
        "expected a failure: {out}"
    );
    let err = out.stderr.lines().find(|l| l.starts_with("error: "));
    let err = err.unwrap_or_else(|| panic!("no error line: {out}"));
    let all = out.stderr.to_string();
    for w in words {
        assert!(all.contains(w), "{w:?} not in: {all}");
    }
    assert!(!err.is_empty());
    bed.assert_clean(service);
}

#[test]
fn the_default_bridge_network_works() {
    require_root!();
    let bed = DockerBed::new(5);
    let s = service(&bed, "dflt", &[]);
    let up = bed.up(&s.0, &[]);
    assert!(docker::in_pool(up.address), "{}", up.address);
    assert_serves(&bed, up.address, &s.0);
    let out = bed.down(&s.0);
    assert!(out.ok(), "{out}");
    bed.assert_clean(&s.0);
}

#[test]
fn two_networks_first_by_name_and_network_chooses() {
    require_root!();
    let bed = DockerBed::new(6);
    // The bed's network is `<id>net`; `<id>aaa` sorts first.
    let other = Net::create(&bed, "aaa", &[]);
    let s = service(&bed, "two", &["--network", &bed.network]);
    docker::docker_ok(&["network", "connect", &other.0, &s.0]);
    let up = bed.up(&s.0, &[]);
    assert!(
        up.out.stderr.contains(&format!("on {}", other.0)),
        "up says which network: {}",
        up.out
    );
    assert_serves(&bed, up.address, &s.0);
    let router = docker::router_name(&s.0);
    let nets = docker::docker_ok(&[
        "inspect",
        "--format",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        &router,
    ]);
    assert_eq!(nets.trim(), other.0, "the router joined the first by name");
    assert!(bed.down(&s.0).ok());

    let up = bed.up(&s.0, &["--network", &bed.network]);
    assert!(
        up.out.stderr.contains(&format!("on {}", bed.network)),
        "{}",
        up.out
    );
    assert_serves(&bed, up.address, &s.0);
    let nets = docker::docker_ok(&[
        "inspect",
        "--format",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
        &router,
    ]);
    assert_eq!(nets.trim(), bed.network, "--network chose");
    assert!(bed.down(&s.0).ok());

    let out = bed.try_up(&s.0, &["--network", "nosuchnet"]);
    assert_refused(&bed, &out, &s.0, &["not on network nosuchnet", "--network"]);
}

#[test]
fn a_network_without_icc_is_refused_naming_the_fix() {
    require_root!();
    let bed = DockerBed::new(7);
    let net = Net::create(
        &bed,
        "noicc",
        &["-o", "com.docker.network.bridge.enable_icc=false"],
    );
    let s = service(&bed, "noicc", &["--network", &net.0]);
    let out = bed.try_up(&s.0, &[]);
    println!("{out}");
    assert_refused(
        &bed,
        &out,
        &s.0,
        &["enable_icc=false", "docker network connect"],
    );
    // The fix, as the hint says it: another network with ICC on, chosen.
    docker::docker_ok(&["network", "connect", &bed.network, &s.0]);
    let up = bed.up(&s.0, &["--network", &bed.network]);
    assert_serves(&bed, up.address, &s.0);
    assert!(bed.down(&s.0).ok());
}

#[test]
fn an_internal_network_works() {
    require_root!();
    let bed = DockerBed::new(8);
    let net = Net::create(&bed, "intl", &["--internal"]);
    let s = service(&bed, "intl", &["--network", &net.0]);
    let up = bed.up(&s.0, &[]);
    assert_serves(&bed, up.address, &s.0);
    assert!(bed.down(&s.0).ok());
    bed.assert_clean(&s.0);
}
