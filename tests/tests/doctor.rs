//! `netcontainer doctor` on the Docker bed (LAN 203.0.113.0/24 with dnsmasq, the parent a
//! veth into it): a good parent (exit 0, the OFFER's address in the pool, dnsmasq saw one
//! DISCOVER and no REQUEST), a LAN without a DHCP server (non-zero, "no OFFER"), a missing
//! parent (non-zero, one FAIL line naming it), SIGINT during the probe. After each: no new
//! link in the root namespace, no namespace left. Root only.

use netcontainer_tests::docker::{self, DockerBed};
use netcontainer_tests::*;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Everything the probe could leave behind: root-namespace links of the bed (and any
/// link named like the probe leg), named namespaces.
fn world(bed: &DockerBed) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut links = bed.my_links();
    for l in ip(&["-o", "link", "show"]).lines() {
        if l.contains("ncprobe") {
            links.insert(l.to_string());
        }
    }
    // Other tests of this binary make and remove their beds' namespaces meanwhile
    // (`nct<pid>x...`): not ours to compare.
    let others = format!("nct{}x", std::process::id());
    let ns = ip(&["netns", "list"])
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .filter(|n| !n.starts_with(&others))
        .collect();
    (links, ns)
}

fn assert_nothing_left(bed: &DockerBed, before: &(BTreeSet<String>, BTreeSet<String>)) {
    let after = world(bed);
    assert_eq!(after.0, before.0, "links in the root namespace changed");
    let new: Vec<_> = after.1.difference(&before.1).collect();
    assert!(new.is_empty(), "namespaces left behind: {new:?}");
}

fn dnsmasq_count(bed: &DockerBed, what: &str) -> usize {
    bed.dnsmasq.log().matches(what).count()
}

fn fail_lines(out: &CmdOutput) -> Vec<&str> {
    out.stdout
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .collect()
}

#[test]
fn a_good_parent_gets_an_offer_and_nothing_is_requested() {
    require_root!();
    let bed = DockerBed::new(11);
    let before = world(&bed);
    let discovers = dnsmasq_count(&bed, "DHCPDISCOVER");
    let out = bed.nc(&["doctor", "--parent", &bed.parent, "--timeout", "5"]);
    println!("{}", out.stdout);
    assert!(out.ok(), "doctor on a good parent: {out}");
    assert!(fail_lines(&out).is_empty(), "{out}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("OFFER from"))
        .unwrap_or_else(|| panic!("no OFFER line: {out}"));
    let addrs: Vec<Ipv4Addr> = line
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(addrs.first(), Some(&docker::LAN_GATEWAY), "server: {line}");
    let offered = *addrs.get(1).unwrap_or_else(|| panic!("no address: {line}"));
    assert!(
        docker::in_pool(offered),
        "{offered} not in the pool: {line}"
    );
    assert!(line.contains("600 s"), "lease time: {line}");
    assert!(
        wait_until(Duration::from_secs(2), Duration::from_millis(50), || {
            dnsmasq_count(&bed, "DHCPDISCOVER") == discovers + 1
        }),
        "dnsmasq did not log exactly one DISCOVER:\n{}",
        bed.dnsmasq.log()
    );
    assert_eq!(
        dnsmasq_count(&bed, "DHCPREQUEST"),
        0,
        "doctor must send nothing but the DISCOVER"
    );
    assert!(bed.dnsmasq.leases().is_empty(), "a lease was taken");
    assert_nothing_left(&bed, &before);
}

#[test]
fn a_lan_without_a_dhcp_server_says_no_offer() {
    require_root!();
    let mut bed = DockerBed::new(12);
    bed.dnsmasq.stop();
    let before = world(&bed);
    let t0 = Instant::now();
    let out = bed.nc(&["doctor", "--parent", &bed.parent, "--timeout", "2"]);
    println!("{}", out.stdout);
    assert!(out.status.is_some() && !out.ok(), "{out}");
    assert!(t0.elapsed() < Duration::from_secs(10), "bounded: {out}");
    let fails = fail_lines(&out);
    assert_eq!(fails.len(), 1, "{out}");
    assert!(
        fails[0].contains("no OFFER within 2 s") && fails[0].contains("(fix: "),
        "{out}"
    );
    assert_nothing_left(&bed, &before);
}

#[test]
fn a_missing_parent_is_one_fail_line_naming_it() {
    require_root!();
    let bed = DockerBed::new(13);
    let before = world(&bed);
    let missing = bed.name("nope");
    let out = bed.nc(&["doctor", "--parent", &missing]);
    println!("{}", out.stdout);
    assert!(out.status.is_some() && !out.ok(), "{out}");
    let fails = fail_lines(&out);
    assert_eq!(fails.len(), 1, "one FAIL line: {out}");
    assert!(
        fails[0].contains(&missing) && fails[0].contains("does not exist"),
        "{out}"
    );
    assert!(!out.stdout.contains("OFFER from"), "{out}");
    assert_nothing_left(&bed, &before);
}

/// SIGINT while waiting for an OFFER: the command ends at once, and the probe's leg and
/// namespace are gone with it.
#[test]
fn sigint_during_the_probe_leaves_nothing() {
    require_root!();
    let mut bed = DockerBed::new(14);
    bed.dnsmasq.stop();
    let before = world(&bed);
    let child = Command::new(bin("netcontainer"))
        .args(["doctor", "--parent", &bed.parent, "--timeout", "20"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netcontainer doctor");
    let mut g = ProcGuard::new(child, "netcontainer doctor");
    // The kernel checks and Docker take well under this; the probe waits 20 s.
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(g.pid() as i32, libc::SIGINT) };
    let t0 = Instant::now();
    let st = g
        .wait_timeout(Duration::from_secs(5))
        .expect("doctor did not end within 5 s of SIGINT");
    assert!(!st.success(), "{st}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    // The namespace is freed by the kernel when its last reference (the process) goes.
    assert!(
        wait_until(Duration::from_secs(3), Duration::from_millis(50), || world(
            &bed
        )
            == before),
        "left behind: {:?} vs {:?}",
        world(&bed),
        before
    );
}

/// Runs `netcontainer args...` with `DOCKER_HOST=docker_host`, bounded by `limit`.
fn nc_on(docker_host: &str, dir: &std::path::Path, args: &[&str], limit: Duration) -> CmdOutput {
    let (out_p, err_p) = (dir.join("nc.out"), dir.join("nc.err"));
    let start = Instant::now();
    let child = Command::new(bin("netcontainer"))
        .args(args)
        .env("DOCKER_HOST", docker_host)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_p).unwrap())
        .stderr(std::fs::File::create(&err_p).unwrap())
        .spawn()
        .expect("spawn netcontainer");
    let mut g = ProcGuard::new(child, "netcontainer");
    let status = g.wait_timeout(limit);
    if status.is_none() {
        g.kill();
    }
    CmdOutput {
        status,
        stdout: std::fs::read_to_string(&out_p).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_p).unwrap_or_default(),
        elapsed: start.elapsed(),
    }
}

/// The real Docker daemon, seen through a proxy that answers `/info` as Docker Desktop
/// does (Desktop's `Name` and `OperatingSystem`, its LinuxKit kernel): `doctor` FAILs
/// with the reason and what to do instead; `up` and `watch` refuse with the same one
/// line before looking at any container (`up` of a container that does not exist says
/// so, not "no such container"; `watch` exits instead of retrying). The list of
/// containers is answered empty, so `watch` could touch nothing on this daemon even if
/// it did not refuse. Through the same proxy with Docker's own `/info`, doctor finds
/// the engine fine.
#[test]
fn docker_desktop_is_refused_by_doctor_up_and_watch() {
    require_root!();
    let dir = TempDir::new("desktop");
    let sock = dir.join("docker.sock");
    const DESKTOP: &str = r#"{"ID":"x","Name":"docker-desktop","OperatingSystem":"Docker Desktop","OSType":"linux","KernelVersion":"6.10.14-linuxkit","SecurityOptions":["name=seccomp,profile=unconfined","name=cgroupns"]}"#;
    const REASON: &str = "netcontainer cannot work here: Docker Desktop runs the engine in a VM";
    const INSTEAD: &str = "a Linux VM whose NIC is bridged to the LAN";

    {
        let real = watch::FailingProxy::with_answers(&sock, &[], &[("/containers/json", "[]")]);
        let out = nc_on(
            &real.docker_host(),
            dir.path(),
            &["doctor"],
            Duration::from_secs(30),
        );
        println!("{}", out.stdout);
        assert!(
            out.stdout
                .contains("ok    Docker engine: rootful, on this host"),
            "doctor on this host's own engine: {out}"
        );
        assert!(!out.stdout.contains("cannot work here"), "{out}");
    }

    let proxy = watch::FailingProxy::with_answers(
        &sock,
        &[],
        &[("/info HTTP", DESKTOP), ("/containers/json", "[]")],
    );
    let host = proxy.docker_host();

    let out = nc_on(&host, dir.path(), &["doctor"], Duration::from_secs(30));
    println!("{}", out.stdout);
    assert!(!out.ok(), "doctor must fail on Docker Desktop: {out}");
    let fails = fail_lines(&out);
    assert!(
        fails
            .iter()
            .any(|l| l.contains(REASON) && l.contains(INSTEAD)),
        "doctor's FAIL lines {fails:?}"
    );

    let missing = unique("nodesk");
    let out = nc_on(
        &host,
        dir.path(),
        &["up", &missing],
        Duration::from_secs(30),
    );
    assert!(!out.ok(), "up on Docker Desktop: {out}");
    assert!(out.stderr.contains(REASON), "up's error: {out}");
    assert!(out.stderr.contains(INSTEAD), "up's hint: {out}");
    assert!(
        !out.stderr.contains("no such container"),
        "up looked at the container: {out}"
    );

    let out = nc_on(
        &host,
        dir.path(),
        &["watch", "--no-whoami", "--no-host-route"],
        Duration::from_secs(30),
    );
    assert!(
        out.status.is_some(),
        "watch kept running on Docker Desktop: {out}"
    );
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(78),
        "watch on Docker Desktop exits with the code its unit does not restart on: {out}"
    );
    assert!(out.stderr.contains(REASON), "watch's error: {out}");
}
