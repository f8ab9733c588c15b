//! Real-network cases that need the whole driver and Docker (issue 23, point 6): a pool of
//! one address. Root only; needs the images (`scripts/build-router-image`,
//! `build-sample-image`, `build-busybox-image`) and the machine lock, like
//! tests/tests/docker.rs.

use netcontainer_tests::docker::{self, DockerBed};
use netcontainer_tests::*;
use std::time::Duration;

const POLL: Duration = Duration::from_millis(100);

/// The bed's dnsmasq gives way to Kea with a pool of one address and a 20 s lease (T1
/// 5 s). The first service's `up` takes the address; the second's `up --timeout 8` fails
/// within its timeout (plus the roll-back) with one error line and a hint naming a full
/// pool, and leaves no router, link or state behind; the first keeps its lease, renewed
/// past the second's attempt (Kea's expiry moves, still the first router's MAC).
#[test]
fn pool_of_one_second_up_fails_rolls_back_first_keeps_renewing() {
    require_root!();
    let mut bed = DockerBed::new(12);
    bed.dnsmasq.stop();
    let only = docker::POOL.0;
    let kea = Kea::start(&bed.lan, docker::kea_on_lan(&format!("{only} - {only}")));
    let a = bed.run_service("a", &[]);
    let b = bed.run_service("b", &[]);
    let first = bed.up(&a.name, &[]);
    assert_eq!(first.address, only);
    let first_row = kea.lease_of(only).expect("Kea has the lease");

    bed.track_service(&b.name);
    let out = bed.nc(&["up", &b.name, "--parent", &bed.parent, "--timeout", "8"]);
    assert!(!out.ok(), "second up succeeded with a pool of one: {out}");
    assert!(
        out.elapsed < Duration::from_secs(8 + 12),
        "second up took {:?} (timeout 8 s): {out}",
        out.elapsed
    );
    // Progress lines ("SERVICE: waiting for a DHCP lease (selecting)"), then one error
    // line saying nothing was left behind, and one hint naming a full pool.
    let err = out.stderr.trim();
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    let hints: Vec<&str> = err.lines().filter(|l| l.starts_with("hint: ")).collect();
    assert_eq!((errors.len(), hints.len()), (1, 1), "{err:?}");
    assert!(
        errors[0].contains("no DHCP lease") && errors[0].contains("nothing was left behind"),
        "{err:?}"
    );
    assert!(hints[0].contains("free address"), "{err:?}");
    assert!(
        err.lines().all(|l| l.starts_with("error: ")
            || l.starts_with("hint: ")
            || l.contains("waiting for a DHCP lease")),
        "{err:?}"
    );
    bed.assert_clean(&b.name);

    // The first keeps its lease: Kea's expiry moves (a renewal at T1 after the second
    // gave up), same address, same MAC; `status` still shows it bound.
    let moved = wait_for(Duration::from_secs(10), POLL, || {
        let l = kea.lease_of(only)?;
        (l.expire > first_row.expire + 8).then_some(l)
    })
    .unwrap_or_else(|| panic!("no renewal of {only} seen: {:?}", kea.lease_rows()));
    assert_eq!(moved.hwaddr, first_row.hwaddr);
    let st = bed.status_json(&a.name);
    let text = st.to_string();
    assert!(text.contains(&only.to_string()), "{st}");
    eprintln!("pool of one: second up failed in {:?}: {err}", out.elapsed);
}

/// Renumbering in place (issue 23, point 3), with the router running: Kea with a 20 s
/// lease gives the service an address from one pool, then restarts with another pool of
/// the same subnet and no leases. The renewal at T1 is refused (NAK) and the agent takes
/// an address from the new pool. Then, within a poll or two: a LAN client reaches the
/// service at the new address; the host reaches it there too (the shim's /32 route moved:
/// the old one is gone); `--on-change` ran exactly once, with the old and new address.
#[test]
fn renumbering_in_place_moves_the_host_route_and_runs_on_change_once() {
    require_root!();
    let mut bed = netcontainer_tests::watch::bed(13);
    bed.use_own_state_dirs();
    bed.dnsmasq.stop();
    let kea_opts = docker::kea_on_lan;
    let mut kea = Kea::start(&bed.lan, kea_opts("203.0.113.60 - 203.0.113.69"));
    let hook_out = bed.tmp.join("on-change.log");
    let hook = format!(
        "echo \"$NETCONTAINER_SERVICE $NETCONTAINER_OLD_ADDRESS $NETCONTAINER_NEW_ADDRESS\" >> {}",
        hook_out.display()
    );
    let env = bed.driver_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let w =
        netcontainer_tests::watch::Watch::start(&bed, &["--poll", "1", "--on-change", &hook], &env);
    let s = netcontainer_tests::watch::labelled_service(&bed, "s", &[]);
    let old = netcontainer_tests::watch::wait_bound(&bed, &s.name, Duration::from_secs(40))
        .unwrap_or_else(|| panic!("no lease:\n{}", w.log()));
    assert!((60..=69).contains(&old.octets()[3]), "{old}");
    let page = netcontainer_tests::watch::page(&s.name, 80);
    let host_fetch = |addr: std::net::Ipv4Addr| {
        std::process::Command::new("curl")
            .args(["-sS", "-m", "2", &format!("http://{addr}/")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let reached = wait_until(Duration::from_secs(10), POLL, || {
        host_fetch(old).as_deref() == Some(page.as_str())
    });
    assert!(reached, "the host never reached {old}:\n{}", w.log());

    // The server moves to another pool with an empty lease table.
    kea.stop();
    kea = Kea::start(&bed.lan, kea_opts("203.0.113.160 - 203.0.113.169"));
    let new = wait_for(Duration::from_secs(40), Duration::from_millis(250), || {
        netcontainer_tests::watch::wait_bound(&bed, &s.name, Duration::from_secs(1))
            .filter(|a| *a != old)
    })
    .unwrap_or_else(|| panic!("never renumbered:\n{}", w.log()));
    assert!((160..=169).contains(&new.octets()[3]), "{new}");
    assert!(
        kea.lease_of(new).is_some(),
        "Kea does not have {new}: {:?}",
        kea.lease_of(new)
    );
    netcontainer_tests::watch::wait_serves(&bed, new, 80, &s.name, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("LAN client: {e}\n{}", w.log()));
    let moved = wait_until(Duration::from_secs(10), POLL, || {
        host_fetch(new).as_deref() == Some(page.as_str())
    });
    assert!(moved, "the host never reached {new}:\n{}", w.log());
    let routes = String::from_utf8_lossy(
        &std::process::Command::new("ip")
            .args(["-4", "route", "show", &format!("{old}/32")])
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(
        routes.trim().is_empty(),
        "the old address's host route stayed: {routes}"
    );
    // Give a late second run the time to show.
    std::thread::sleep(Duration::from_secs(3));
    let ran = std::fs::read_to_string(&hook_out).unwrap_or_default();
    assert_eq!(
        ran,
        format!("{} {old} {new}\n", s.name),
        "--on-change runs once per change:\n{}",
        w.log()
    );
}
