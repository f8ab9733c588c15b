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
    let kea = Kea::start(
        &bed.lan,
        KeaOpts {
            subnet: docker::LAN_NET.into(),
            pool: format!("{only} - {only}"),
            gateway: docker::LAN_GATEWAY,
            dns: vec![docker::LAN_GATEWAY],
            ..KeaOpts::short(20, 5, 15)
        },
    );
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
