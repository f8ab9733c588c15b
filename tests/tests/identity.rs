//! Identities unique across hosts, on the real Docker engine: two Docker hosts on one LAN
//! (the bed's daemon and a second `dockerd` in a namespace of its own,
//! [`SecondDaemon`]) each run a service named the same; each gets its own address.
//! Root only; the router and sample images must exist (see tests/tests/docker.rs).

use netcontainer_tests::daemon::{self, SecondDaemon};
use netcontainer_tests::docker::{self, DockerBed};
use netcontainer_tests::*;
use std::time::Duration;

const S: Duration = Duration::from_secs(1);

/// Before identities, the MAC and client id derived from the name alone: both routers
/// asked for one address. Now each host's identity includes its host ID (the second
/// host's driver has a lib directory, hence a host ID, of its own).
#[test]
fn the_same_name_on_two_hosts_gets_two_addresses() {
    require_root!();
    let bed = DockerBed::new(7);
    let h2 = SecondDaemon::start(&bed, &[docker::ROUTER_IMAGE, docker::SAMPLE_IMAGE]);
    let web1 = bed.run_service("web1", &[]);
    let page2 = format!("{}-on-host2", web1.name);
    h2.docker_ok(&[
        "run",
        "-d",
        "--name",
        &web1.name,
        "--network",
        &h2.network,
        "-e",
        &format!("SAMPLE_NAME={page2}"),
        docker::SAMPLE_IMAGE,
    ]);
    let one = bed.up(&web1.name, &[]);
    let out = h2.nc(&[
        "up",
        &web1.name,
        "--parent",
        daemon::PARENT,
        "--timeout",
        "30",
    ]);
    assert!(out.ok(), "up on the second host: {out}\n{}", h2.log());
    let two = docker::parse_up(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(docker::in_pool(one.address) && docker::in_pool(two.address));
    assert_ne!(
        one.address, two.address,
        "two hosts' web1 share one address"
    );
    let id1 = bed.status_json(&web1.name)["identity"].clone();
    let st2 = h2.nc(&["status", &web1.name, "--json"]);
    assert!(st2.ok(), "{st2}");
    let st2: serde_json::Value = serde_json::from_str(&st2.stdout).unwrap();
    assert_ne!(
        id1, st2["identity"],
        "identities: {id1} {}",
        st2["identity"]
    );
    assert!(
        id1.as_str().unwrap().ends_with(&format!("/{}", web1.name)),
        "{id1}"
    );
    // Each answers as itself on the LAN.
    let got1 = bed.fetch(one.address, 80, 5).unwrap();
    let got2 = bed.fetch(two.address, 80, 5).unwrap();
    assert!(
        got1.contains(&format!("hello from {} ", web1.name)),
        "{got1}"
    );
    assert!(got2.contains(&page2), "{got2}");
    // Issue 24, point 4: by mDNS too, under two names (whichever probed second took the
    // next free one), each answering with its own host's lease to a LAN client.
    let name_of = |st: &serde_json::Value| st["agent"]["mdns"].as_str().map(String::from);
    let names = wait_for(10 * S, Duration::from_millis(200), || {
        let h2st = h2.nc(&["status", &web1.name, "--json"]);
        let h2st: serde_json::Value = serde_json::from_str(&h2st.stdout).ok()?;
        Some((name_of(&bed.status_json(&web1.name))?, name_of(&h2st)?))
    })
    .expect("both routers claim an mDNS name");
    let first = format!("{}.local", web1.name);
    let second = format!("{}-2.local", web1.name);
    let mut sorted = [names.0.clone(), names.1.clone()];
    sorted.sort();
    assert_eq!(sorted, [second.clone(), first.clone()], "{names:?}");
    let ls = bed.nc(&["ls", "--format", "{{.Service}} {{.Name}}"]);
    assert!(
        ls.stdout
            .lines()
            .any(|l| l == format!("{} {}", web1.name, names.0)),
        "ls names the mDNS name: {ls}"
    );
    // A LAN client's own resolver (avahi, by multicast) finds both.
    let dir = TempDir::new("identity-avahi");
    let avahi = netcontainer_tests::mdns::Avahi::start(&bed.client, dir.path());
    for (name, addr) in [(&names.0, one.address), (&names.1, two.address)] {
        assert_eq!(
            avahi.resolve_host(name, 5 * S),
            Some(std::net::IpAddr::V4(addr)),
            "{name} from the LAN\n{}",
            avahi.log()
        );
    }
    let down = h2.nc(&["down", &web1.name]);
    assert!(down.ok(), "{down}");
}

/// Two services of one identity on one host would share a MAC and a client id (one
/// lease, and one's RELEASE frees the other's address): the second `up` is refused.
#[test]
fn one_identity_one_router_per_host() {
    require_root!();
    let bed = DockerBed::new(8);
    let id = format!("{}-shared", bed.id);
    let label = format!("netcontainer.identity={id}");
    let a = bed.container("a", docker::SAMPLE_IMAGE, &["-l", &label], &[], true);
    let b = bed.container("b", docker::SAMPLE_IMAGE, &["-l", &label], &[], true);
    bed.up(&a.name, &[]);
    let out = bed.try_up(&b.name, &[]);
    assert!(!out.ok(), "a second router of identity {id}: {out}");
    assert!(
        out.stderr
            .contains(&format!("identity {id} is already used")),
        "{out}"
    );
    bed.assert_clean(&b.name);
}

/// This host's own ID (generated once, root-only) is part of a standalone service's
/// identity; after an unclean stop (router and service killed, as a power cut leaves
/// them) `up` makes the stopped router again instead of failing as already up, with the
/// identity it recorded (even though the host ID changed meanwhile, as an upgrade from
/// engine-ID identities changes it) and its lease: the same address.
#[test]
fn up_after_an_unclean_stop_brings_the_same_address_back() {
    use std::os::unix::fs::PermissionsExt;
    require_root!();
    let bed = DockerBed::new(10);
    let (_run, lib) = bed.use_own_state_dirs();
    let web = bed.run_service("web", &[]);
    let first = bed.up(&web.name, &[]);
    let id_file = lib.join(".host-id");
    // Read now, checked after the restart (which is the heart of the test).
    let host_id = std::fs::read_to_string(&id_file).unwrap_or_default();
    let mode = std::fs::metadata(&id_file).map(|m| m.permissions().mode());
    let identity = bed.status_json(&web.name)["identity"]
        .as_str()
        .unwrap()
        .to_string();

    docker::docker_ok(&["kill", &docker::router_name(&web.name)]);
    docker::docker_ok(&["kill", &web.name]);
    docker::docker_ok(&["start", &web.name]);
    // Another host ID from now on: the router's recorded identity must win.
    std::fs::write(&id_file, format!("{}\n", "0".repeat(32))).unwrap();
    let again = bed.try_up(&web.name, &[]);
    assert!(again.ok(), "up after the unclean stop: {again}");
    let again = docker::parse_up(&again).unwrap_or_else(|e| panic!("{e}: {again}"));
    assert_eq!(
        again.address, first.address,
        "another address after the restart"
    );
    assert_eq!(bed.status_json(&web.name)["identity"], identity.as_str());
    // The host ID was generated root-only and is part of the identity.
    assert_eq!(
        mode.map(|m| m & 0o777).ok(),
        Some(0o600),
        "the host ID's mode"
    );
    assert_eq!(identity, format!("{}/{}", host_id.trim(), web.name));
    let got = bed.fetch(again.address, 80, 5).unwrap();
    assert!(got.contains(&format!("hello from {} ", web.name)), "{got}");
    // Running now: a second `up` is refused as before.
    let twice = bed.try_up(&web.name, &[]);
    assert!(!twice.ok() && twice.stderr.contains("already"), "{twice}");
    let down = bed.down(&web.name);
    assert!(down.ok(), "{down}");
}

/// `up` on a stopped router makes it again; a failure after the old one was set aside and
/// before the new one runs (here: the lease directory cannot be made, a file is in its
/// place) puts the old router back as it was (same container), so its recorded identity
/// survives: the next `up` (with another host ID meanwhile, so an identity derived anew
/// would differ) gets the same identity and address. The old code removed the stopped
/// router first, and the identity went with it.
#[test]
fn a_failed_remake_of_a_stopped_router_keeps_its_identity() {
    require_root!();
    let bed = DockerBed::new(11);
    let (_run, lib) = bed.use_own_state_dirs();
    let web = bed.run_service("web", &[]);
    let first = bed.up(&web.name, &[]);
    let identity = bed.status_json(&web.name)["identity"]
        .as_str()
        .unwrap()
        .to_string();
    let router = docker::router_name(&web.name);
    let id_of = |name: &str| docker::docker(&["inspect", "--format", "{{.Id}}", name]);
    let old_id = id_of(&router).unwrap();
    docker::docker_ok(&["kill", &router]);
    std::fs::write(lib.join(".host-id"), format!("{}\n", "0".repeat(32))).unwrap();

    let lease_dir = lib.join(&web.name);
    let kept = lib.join("kept-lease-dir");
    std::fs::rename(&lease_dir, &kept).unwrap();
    std::fs::write(&lease_dir, "not a directory").unwrap();
    let failed = bed.try_up(&web.name, &[]);
    std::fs::remove_file(&lease_dir).unwrap();
    std::fs::rename(&kept, &lease_dir).unwrap();
    assert!(
        !failed.ok(),
        "up with a file for a lease directory: {failed}"
    );
    assert_eq!(
        id_of(&router).as_deref(),
        Ok(old_id.as_str()),
        "the stopped router is not back after the failed up: {failed}"
    );
    assert!(
        id_of(&format!("netcontainer.aside-{}", web.name)).is_err(),
        "a router is left set aside"
    );

    let again = bed.up(&web.name, &[]);
    assert_eq!(again.address, first.address, "another address");
    assert_eq!(bed.status_json(&web.name)["identity"], identity.as_str());
    assert_ne!(id_of(&router).unwrap(), old_id, "not made again");
    let got = bed.fetch(again.address, 80, 5).unwrap();
    assert!(got.contains(&format!("hello from {} ", web.name)), "{got}");
    let down = bed.down(&web.name);
    assert!(down.ok(), "{down}");
    bed.assert_clean(&web.name);
}
