//! IPv6 forwards on the real Docker engine (root only): the bed's LAN has IPv6 by radvd
//! (SLAAC, 2001:db8:1::/64, see `tests/src/docker6.rs`), and
//!
//! - a service on an IPv4-only Docker network is reached over IPv6 through its router's
//!   relay (TCP and UDP);
//! - a service on an IPv6 Docker network through kernel DNAT to its IPv6 address;
//! - an unpublished port of either, and another container on the IPv6 network (routed
//!   to via the router), are not reachable over IPv6;
//! - `status`, `ls` and `port` show the IPv6 addresses; the host route shim has IPv6
//!   off; after `down` nothing of either is left.

use netcontainer_tests::docker::{DockerBed, router_name};
use netcontainer_tests::docker6::V6Side;
use netcontainer_tests::service::{curl, curl_path};
use netcontainer_tests::v6::udp6;
use netcontainer_tests::*;
use serde_json::Value;
use std::net::Ipv6Addr;
use std::time::Duration;

const S: Duration = Duration::from_secs(1);

/// Waits (bounded) until `service`'s router has a global IPv6 address and a path other
/// than `none`: (address, path).
fn wait_v6(bed: &DockerBed, service: &str) -> (Ipv6Addr, String) {
    let mut last = Value::Null;
    let got = wait_for(20 * S, Duration::from_millis(250), || {
        last = bed.status_json(service);
        let agent = &last["agent"];
        let path = agent["ipv6_path"].as_str().unwrap_or("none").to_string();
        let addr = agent["ipv6"]
            .as_array()?
            .iter()
            .filter_map(|a| a["address"].as_str()?.parse::<Ipv6Addr>().ok())
            .find(|a| a.segments()[..4] == [0x2001, 0xdb8, 1, 0])?;
        (path != "none").then_some((addr, path))
    });
    got.unwrap_or_else(|| {
        panic!(
            "{service}: no IPv6 address or path: {last}\n{}",
            bed.router_logs(service)
        )
    })
}

#[test]
fn services_are_reached_over_ipv6_by_relay_and_by_kernel_dnat() {
    require_root!();
    let bed = DockerBed::new(13);
    let side = V6Side::attach(&bed);
    let args = ["--http", "80", "--http", "8081", "--udp-echo", "5353"];
    let relayed = bed.run_service("r", &args);
    let kernel = side.run_service(&bed, "k", &args);
    let other = side.run_service(&bed, "o", &["--http", "80"]);
    let publish = ["--publish", "80/tcp", "--publish", "5353/udp"];
    bed.up(&relayed.name, &publish);
    bed.up(&kernel.name, &publish);

    let (r6, r_path) = wait_v6(&bed, &relayed.name);
    let (k6, k_path) = wait_v6(&bed, &kernel.name);
    assert_eq!(r_path, "relay");
    assert_eq!(k_path, "kernel");
    for (addr, svc) in [(r6, &relayed.name), (k6, &kernel.name)] {
        let body = wait_for(10 * S, S / 2, || curl(&bed.client, addr, 80, 3).ok());
        assert!(
            body.as_deref()
                .is_some_and(|b| b.contains(&format!("hello from {svc}"))),
            "{svc} over IPv6 at [{addr}]:80: {body:?}\n{}",
            bed.router_logs(svc)
        );
        assert_eq!(
            udp6(&bed.client, addr, 5353, b"six").as_deref(),
            Ok(&b"six"[..]),
            "{svc}: UDP over IPv6"
        );
        assert!(
            curl(&bed.client, addr, 8081, 2).is_err(),
            "{svc}: the unpublished port 8081 answered over IPv6"
        );
    }
    // The kernel path's service sees its router's address on the IPv6 network
    // (masquerade: the service's IPv6 default route is Docker's); the relay's sees its
    // router's IPv4 address.
    let peer = curl_path(&bed.client, k6, 80, "/peer", 3).unwrap();
    let router6 = side
        .address6(&router_name(&kernel.name))
        .expect("router's IPv6");
    assert!(peer.contains(&format!("[{router6}]:")), "{peer}");

    // Another container on the IPv6 network, through the kernel service's router: the
    // LAN client routes the Docker prefix via the router's LAN address; nothing passes.
    let other6 = side
        .address6(&other.name)
        .expect("the other container's IPv6");
    bed.client.ip(&[
        "-6",
        "route",
        "add",
        netcontainer_tests::docker6::DOCKER6,
        "via",
        &k6.to_string(),
    ]);
    assert!(
        curl(&bed.client, other6, 80, 2).is_err(),
        "another container was reached over IPv6 through the router"
    );
    let kernel6 = side.address6(&kernel.name).unwrap();
    assert!(
        curl(&bed.client, kernel6, 8081, 2).is_err(),
        "the service's own IPv6 address was reached through the router"
    );

    // Visible: ls (ADDRESS6), port, status.
    let ls = bed.nc(&["ls"]);
    assert!(ls.ok() && ls.stdout.contains("ADDRESS6"), "{ls}");
    assert!(ls.stdout.contains(&r6.to_string()), "{ls}");
    let port = bed.nc(&["port", &kernel.name, "80"]);
    assert!(
        port.ok() && port.stdout.contains(&format!("80/tcp -> [{k6}]:80")),
        "{port}"
    );
    let st = bed.nc(&["status", &relayed.name]);
    assert!(st.stdout.contains("ipv6 path:  relay"), "{st}");
    // The host route shim takes no IPv6 from the LAN.
    let shims: Vec<_> = std::fs::read_dir("/proc/sys/net/ipv6/conf")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("nch"))
        .collect();
    assert!(!shims.is_empty(), "no host route shim");
    for s in &shims {
        let v =
            std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{s}/disable_ipv6")).unwrap();
        assert_eq!(v.trim(), "1", "{s} has IPv6 on");
    }
    for svc in [&relayed.name, &kernel.name] {
        let out = bed.down(svc);
        assert!(out.ok(), "{out}");
        bed.assert_clean(svc);
    }
    assert!(curl(&bed.client, r6, 80, 2).is_err());
}
