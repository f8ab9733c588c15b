//! Dynamic DNS (issue 24, point 3): the host driver updates Debian's `named` (bind9)
//! with TSIG-signed RFC 2136 UPDATEs. named runs in the Docker bed's LAN namespace,
//! reached from the host over a veth pair of its own (tests/src/named.rs). Root only;
//! needs the images and the machine lock, like tests/tests/docker.rs.

use netcontainer_tests::docker::{self, DockerBed};
use netcontainer_tests::named::{Named, keygen, set_mode};
use netcontainer_tests::*;
use std::time::Duration;

fn args<'a>(v: &'a [String], head: &[&'a str]) -> Vec<&'a str> {
    let mut a: Vec<&str> = head.to_vec();
    a.extend(v.iter().map(String::as_str));
    a
}

/// The lines of `stderr` that speak of dynamic DNS.
fn ddns_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("dynamic DNS"))
        .collect()
}

/// `up` replaces a stale A record of the service's name with its lease (one UPDATE,
/// delete then add); an `up` signed with a wrong secret (BADSIG) or an unknown key
/// (BADKEY) warns in one line naming the name, zone and server, leaves the zone as it
/// was, and the service stays up; a key file others can read is refused before anything
/// is done; `down` deletes the name's A record (NXDOMAIN: dig prints nothing).
#[test]
fn up_replaces_the_name_wrong_keys_change_nothing_down_deletes() {
    require_root!();
    let bed = DockerBed::new(14);
    let s = bed.run_service("dd", &[]);
    let zone = format!("{}.example", bed.id);
    let stale = "203.0.113.249";
    let named = Named::start(
        &bed.lan,
        bed.tmp.path(),
        &bed.name("dns"),
        &zone,
        &format!("{} IN A {stale}\n", s.name),
    );
    assert_eq!(named.records(&s.name, "A"), [stale]);
    let good = named.flags(&named.key_file);

    let up = bed.up(&s.name, &args(&good, &[]));
    assert_eq!(
        named.records(&s.name, "A"),
        [up.address.to_string()],
        "the stale record is replaced by the lease:\n{}\n{}",
        up.out,
        named.log()
    );
    assert!(ddns_lines(&up.out.stderr).is_empty(), "{}", up.out);

    // The same key name with another secret: BADSIG; an unknown key: BADKEY.
    let wrong = bed.tmp.join("wrong.key");
    std::fs::write(&wrong, keygen("nc-ddns-test", "hmac-sha256")).unwrap();
    set_mode(&wrong, 0o600);
    let unknown = bed.tmp.join("unknown.key");
    std::fs::write(&unknown, keygen("nobody", "hmac-sha512")).unwrap();
    set_mode(&unknown, 0o600);
    for (tag, key, want) in [("de", &wrong, "BADSIG"), ("df", &unknown, "BADKEY")] {
        let other = bed.run_service(tag, &[]);
        let up2 = bed.up(&other.name, &args(&named.flags(key), &[]));
        let lines = ddns_lines(&up2.out.stderr);
        assert_eq!(lines.len(), 1, "{}", up2.out);
        let fqdn = format!("{}.{zone}.", other.name);
        assert!(
            lines[0].starts_with(&format!(
                "warning: {}: dynamic DNS: update {fqdn} (zone {zone}., server {})",
                other.name, named.server
            )) && lines[0].contains(want),
            "{}",
            up2.out
        );
        assert!(
            named.records(&other.name, "A").is_empty(),
            "{}",
            named.log()
        );
        assert_eq!(named.records(&s.name, "A"), [up.address.to_string()]);
    }

    // A key file others can read: refused before anything is done, naming the file.
    let open_key = bed.tmp.join("open.key");
    std::fs::copy(&named.key_file, &open_key).unwrap();
    set_mode(&open_key, 0o644);
    let out = bed.nc(&args(&named.flags(&open_key), &["down", &s.name]));
    assert!(!out.ok(), "{out}");
    assert!(
        out.stderr.contains("open.key") && out.stderr.contains("mode 0644"),
        "{out}"
    );
    assert_eq!(named.records(&s.name, "A"), [up.address.to_string()]);
    assert!(bed.ls_entry(&s.name).is_some(), "down went ahead: {out}");

    let out = bed.nc(&args(&good, &["down", &s.name]));
    assert!(out.ok(), "{out}");
    assert!(ddns_lines(&out.stderr).is_empty(), "{out}");
    assert!(
        named.records(&s.name, "A").is_empty(),
        "down left the name: {}",
        named.log()
    );
}

/// watch publishes a labelled service's name once it is bound, replaces it when the
/// service is renumbered in place (Kea moves its pool with the router running, as in
/// tests/tests/real_docker.rs: the renewal is refused and the agent takes an address
/// from the new pool), and deletes it when the service is removed (its router goes
/// with it).
#[test]
fn watch_publishes_on_bind_renumbering_and_removal() {
    require_root!();
    let mut bed = netcontainer_tests::watch::bed(15);
    bed.use_own_state_dirs();
    bed.dnsmasq.stop();
    let kea_opts = docker::kea_on_lan;
    let mut kea = Kea::start(&bed.lan, kea_opts("203.0.113.60 - 203.0.113.69"));
    let zone = format!("{}.example", bed.id);
    let named = Named::start(&bed.lan, bed.tmp.path(), &bed.name("dns"), &zone, "");
    let env = bed.driver_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let flags = named.flags(&named.key_file);
    let w = netcontainer_tests::watch::Watch::start(&bed, &args(&flags, &["--poll", "1"]), &env);
    let s = netcontainer_tests::watch::labelled_service(&bed, "dw", &[]);
    let old = netcontainer_tests::watch::wait_bound(&bed, &s.name, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no lease:\n{}", w.log()));
    let published = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        named.records(&s.name, "A") == [old.to_string()]
    });
    assert!(published, "never published:\n{}\n{}", w.log(), named.log());

    kea.stop();
    let _kea = Kea::start(&bed.lan, kea_opts("203.0.113.160 - 203.0.113.169"));
    let new = wait_for(Duration::from_secs(40), Duration::from_millis(250), || {
        netcontainer_tests::watch::wait_bound(&bed, &s.name, Duration::from_secs(1))
            .filter(|a| *a != old)
    })
    .unwrap_or_else(|| panic!("never renumbered:\n{}", w.log()));
    let replaced = wait_until(Duration::from_secs(10), Duration::from_millis(200), || {
        named.records(&s.name, "A") == [new.to_string()]
    });
    assert!(
        replaced,
        "{old} -> {new} not in the zone: {:?}\n{}\n{}",
        named.records(&s.name, "A"),
        w.log(),
        named.log()
    );

    docker::docker_ok(&["rm", "-f", &s.name]);
    let deleted = wait_until(Duration::from_secs(20), Duration::from_millis(200), || {
        named.records(&s.name, "A").is_empty()
    });
    assert!(deleted, "never deleted:\n{}\n{}", w.log(), named.log());
}
