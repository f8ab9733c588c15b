//! Gateway mode and the "who am I?" endpoint on the real Docker engine (root only).
//!
//! 1. A service in gateway mode sees its clients' real addresses (a LAN client and a
//!    client routed from another subnet, TCP and UDP), its own connections to a LAN host
//!    arrive from its leased address, and another container on its network that routes
//!    the LAN via the router gets nothing through; all of it still holds after the
//!    service restarts with a new private address, the router restarts, and watch
//!    restarts (the service restarted while watch was down).
//! 2. docker-mirror's recipe, unchanged, inside busybox containers: a gateway-mode
//!    service (answered by its router), a masquerade-mode service and a plain `-p`
//!    container (answered by watch on the network's gateway); `/v1/self` is JSON; the
//!    LAN gets nothing from port 9001.
//!    Every bridge network serves it: one made with `--gateway`, one made without (Docker
//!    20.10 reports no IPAM gateway for it) and Docker's default `bridge`.
//! 3. Two services learn their public addresses from the endpoint and reach each other
//!    there; each sees the other's public address. The host itself and a container on
//!    another Docker network reach them at their LAN addresses (the host route shim).
//!    `down` gives the service its Docker default route back; after the last `down`
//!    the shim and its routes are gone.
//!
//! Scenario 2 also reaches both modes' services at their LAN addresses from a container
//! on the host.
//!
//! The beds' LAN is 203.0.113.0/24 (see `tests/src/docker.rs`): traffic here starts in
//! containers.

use netcontainer_proto::contract::WHOAMI_PORT;
use netcontainer_tests::docker::{
    self, DockerBed, ExtraNet, REMOTE_CLIENT, SuiteLock, docker_ok, router_name,
};
use netcontainer_tests::service::PeerServer;
use netcontainer_tests::watch::{self, Watch};
use netcontainer_tests::*;
use serde_json::Value;
use std::net::Ipv4Addr;
use std::time::Duration;

const S: Duration = Duration::from_secs(1);

const BOUND: Duration = Duration::from_secs(20);
/// How long a heal may take to make the checks hold again.
const HEALED: Duration = Duration::from_secs(25);
const BUSYBOX_IMAGE: &str = "netcontainer/busybox:latest";
/// The LAN host the services connect to (the bed's LAN client).
const LAN_PEER_PORT: u16 = 8000;

/// `docker exec CONTAINER sh -c SCRIPT`: Ok(stdout) or Err(stderr).
fn exec_sh(container: &str, script: &str) -> Result<String, String> {
    docker::docker(&["exec", container, "sh", "-c", script])
}

/// The address part of `ADDR:PORT` (or `[::ffff:ADDR]:PORT`, from a server on `::`).
fn addr_of(s: &str) -> Option<Ipv4Addr> {
    let a = s.trim().rsplit_once(':')?.0;
    let a = a.trim_start_matches('[').trim_end_matches(']');
    a.strip_prefix("::ffff:").unwrap_or(a).parse().ok()
}

/// `GET http://addr/peer` from `ns`: the client address the sample service saw.
fn tcp_peer(ns: &Netns, addr: Ipv4Addr) -> Result<Ipv4Addr, String> {
    let out = ns.exec(&["curl", "-sS", "-m", "3", &format!("http://{addr}/peer")]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    addr_of(&text).ok_or_else(|| {
        format!(
            "GET /peer answered {text:?} ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

/// The datagram `peer` to `addr:5353` from `ns`: the sender address the service saw.
fn udp_peer(ns: &Netns, addr: Ipv4Addr) -> Result<Ipv4Addr, String> {
    let reply = service::udp_echo(ns, addr, 5353, b"peer", Duration::from_millis(700), 4)?;
    let text = String::from_utf8_lossy(&reply).to_string();
    addr_of(&text).ok_or_else(|| format!("UDP peer answered {text:?}"))
}

/// Everything scenario 1 checks, once. Err says what does not hold (yet).
fn check_gateway(
    bed: &DockerBed,
    service: &str,
    lease: Ipv4Addr,
    peer: &PeerServer,
    intruder: &str,
) -> Result<(), String> {
    let remote = bed.remote.as_ref().expect("a routed bed");
    let want = |what: &str, got: Result<Ipv4Addr, String>, want: Ipv4Addr| match got {
        Ok(a) if a == want => Ok(()),
        Ok(a) => Err(format!("{what}: the service saw {a}, not {want}")),
        Err(e) => Err(format!("{what}: {e}")),
    };
    want(
        "LAN client, TCP",
        tcp_peer(&bed.client, lease),
        docker::CLIENT,
    )?;
    want("routed client, TCP", tcp_peer(remote, lease), REMOTE_CLIENT)?;
    want(
        "LAN client, UDP",
        udp_peer(&bed.client, lease),
        docker::CLIENT,
    )?;
    want("routed client, UDP", udp_peer(remote, lease), REMOTE_CLIENT)?;
    // The service's own connection to a LAN host comes from its lease.
    let out = docker::docker(&[
        "exec",
        service,
        "/netcontainer-sample",
        "fetch",
        &format!("{}:{LAN_PEER_PORT}/", docker::CLIENT),
    ])
    .map_err(|e| format!("the service's own connection to the LAN failed: {e}"))?;
    want(
        "the service's own connection",
        addr_of(&out).ok_or(out.clone()),
        lease,
    )?;
    // Another container routing the LAN via the router gets nothing through.
    let router_ip = watch::ip_of(bed, &router_name(service)).ok_or("router has no address")?;
    let before = peer.clients().len();
    let sneak = exec_sh(
        intruder,
        &format!(
            "ip route replace default via {router_ip} && wget -q -T 2 -O - http://{}:{LAN_PEER_PORT}/",
            docker::CLIENT
        ),
    );
    if let Ok(body) = sneak {
        return Err(format!(
            "another container reached the LAN through the router: {body:?}"
        ));
    }
    let after = peer.clients();
    if after[before..].iter().any(|a| *a != lease) {
        return Err(format!("the LAN host saw a foreign source: {after:?}"));
    }
    Ok(())
}

/// Polls [`check_gateway`] until it holds or `timeout` passes (then panics with the
/// last reason and `when`).
fn holds(
    when: &str,
    bed: &DockerBed,
    service: &str,
    lease: Ipv4Addr,
    peer: &PeerServer,
    intruder: &str,
    w: &Watch,
) {
    let mut last = String::new();
    let ok = wait_for(HEALED, Duration::from_millis(500), || {
        match check_gateway(bed, service, lease, peer, intruder) {
            Ok(()) => Some(()),
            Err(e) => {
                last = e;
                None
            }
        }
    });
    assert!(
        ok.is_some(),
        "{when}: {last}\n--- watch log ---\n{}",
        w.log()
    );
}

#[test]
fn gateway_mode_keeps_client_addresses_and_leaves_from_the_lease_through_restarts() {
    require_root!();
    let bed = DockerBed::routed(3, SuiteLock::exclusive());
    let mut w = Watch::start(&bed, &[], &[]);
    assert!(w.wait_watching(1, BOUND), "no start-up reconcile");
    let mut labels = watch::enable_labels(&bed);
    labels.extend(["-l".into(), "netcontainer.ports=80/tcp 5353/udp".into()]);
    let args: Vec<&str> = labels.iter().map(String::as_str).collect();
    let svc = bed.container(
        "g",
        docker::SAMPLE_IMAGE,
        &args,
        &["--http", "80", "--udp-echo", "5353"],
        true,
    );
    let lease = watch::wait_bound(&bed, &svc.name, BOUND).expect("no lease");
    let entry = watch::status(&bed, &svc.name).unwrap();
    assert_eq!(entry["source"], "gateway", "{entry}");
    let peer = PeerServer::start(&bed.client, LAN_PEER_PORT);
    let intruder = bed.container("x", BUSYBOX_IMAGE, &["--cap-add", "NET_ADMIN"], &[], true);
    holds(
        "at first",
        &bed,
        &svc.name,
        lease,
        &peer,
        &intruder.name,
        &w,
    );

    // 1. The service restarts with a new private address (another container took its old).
    let old_ip = svc.ip.unwrap();
    docker_ok(&["stop", "-t", "1", &svc.name]);
    let filler = bed.container("f", BUSYBOX_IMAGE, &[], &[], true);
    assert_eq!(
        filler.ip,
        Some(old_ip),
        "the filler did not take the old address"
    );
    docker_ok(&["start", &svc.name]);
    let new_ip = watch::ip_of(&bed, &svc.name).unwrap();
    assert_ne!(new_ip, old_ip);
    holds(
        "after a service restart with a new address",
        &bed,
        &svc.name,
        lease,
        &peer,
        &intruder.name,
        &w,
    );

    // 2. The router restarts.
    docker_ok(&["restart", "-t", "2", &router_name(&svc.name)]);
    holds(
        "after a router restart",
        &bed,
        &svc.name,
        lease,
        &peer,
        &intruder.name,
        &w,
    );

    // 3. Watch restarts; meanwhile the service restarted (a fresh namespace whose
    //    default route is Docker's): the new watch points it at the router again.
    w.stop();
    docker_ok(&["restart", "-t", "1", &svc.name]);
    let w2 = Watch::start(&bed, &[], &[]);
    holds(
        "after a watch restart",
        &bed,
        &svc.name,
        lease,
        &peer,
        &intruder.name,
        &w2,
    );
    drop(w);
}

/// docker-mirror's recipe, as its README gives it.
const RECIPE: &str = "H=$(ip route | awk '/default/ { print $3 }'); \
    curl http://$H:9001/hostip; echo; curl http://$H:9001/container/$HOSTNAME/port/80";

fn recipe(container: &str) -> Option<(String, String)> {
    let out = exec_sh(container, RECIPE).ok()?;
    let mut lines = out.lines();
    let host = lines.next()?.trim().to_string();
    let port = lines.next()?.trim().to_string();
    (!host.is_empty() && !port.is_empty()).then_some((host, port))
}

fn self_json(container: &str) -> Value {
    let out = exec_sh(
        container,
        "curl http://$(ip route | awk '/default/ { print $3 }'):9001/v1/self",
    )
    .unwrap_or_else(|e| panic!("/v1/self in {container}: {e}"));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("/v1/self is not JSON ({e}): {out:?}"))
}

#[test]
fn docker_mirror_recipe_works_unchanged_in_every_mode() {
    require_root!();
    let bed = watch::bed(4);
    let host = Ipv4Addr::new(203, 0, 113, 250);
    let mut w = Watch::start(&bed, &["--host-address", &host.to_string()], &[]);
    assert!(w.wait_watching(1, BOUND), "no start-up reconcile");
    let labelled = |tag: &str, extra: &[&str]| {
        let mut l = watch::enable_labels(&bed);
        l.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = l.iter().map(String::as_str).collect();
        bed.container(tag, BUSYBOX_IMAGE, &args, &[], true)
    };
    let g = labelled("g", &["-l", "netcontainer.ports=8080:80/tcp"]);
    let m = labelled(
        "m",
        &[
            "-l",
            "netcontainer.ports=8081:80/tcp",
            "-l",
            "netcontainer.source=masquerade",
        ],
    );
    let host_port = 20000 + (std::process::id() % 10000) as u16;
    let p = bed.container(
        "p",
        BUSYBOX_IMAGE,
        &["-p", &format!("{host_port}:80")],
        &[],
        true,
    );
    let g_lease = watch::wait_bound(&bed, &g.name, BOUND).expect("g: no lease");
    let m_lease = watch::wait_bound(&bed, &m.name, BOUND).expect("m: no lease");

    // watch binds the network's gateway within a rescan; the routers answer at once.
    for (c, want_host, want_port) in [
        (&g.name, g_lease.to_string(), "8080".to_string()),
        (&m.name, m_lease.to_string(), "8081".to_string()),
        (&p.name, host.to_string(), host_port.to_string()),
    ] {
        let got = wait_for(Duration::from_secs(15), Duration::from_millis(300), || {
            recipe(c)
        });
        assert_eq!(
            got,
            Some((want_host, want_port)),
            "docker-mirror's recipe in {c}\n--- watch log ---\n{}",
            w.log()
        );
    }
    // The gateway-mode service asked its router, the others watch.
    let gw_of = |c: &str| exec_sh(c, "ip route | awk '/default/ { print $3 }'").unwrap();
    let g_router = watch::ip_of(&bed, &router_name(&g.name)).unwrap();
    assert_eq!(gw_of(&g.name).trim(), g_router.to_string());
    assert_eq!(gw_of(&m.name).trim(), bed.gateway.to_string());

    let js = self_json(&g.name);
    assert_eq!(js["mode"], "gateway", "{js}");
    assert_eq!(js["name"], g.name.as_str(), "{js}");
    assert_eq!(
        js["addresses"],
        serde_json::json!([g_lease.to_string()]),
        "{js}"
    );
    assert_eq!(js["forwards"][0]["private_port"], 80, "{js}");
    assert_eq!(js["forwards"][0]["public_port"], 8080, "{js}");
    assert!(
        js["lease_expires_in_secs"].as_u64().unwrap_or(0) > 0,
        "{js}"
    );
    assert_eq!(self_json(&m.name)["mode"], "masquerade");
    // The `.local` name each router claimed by mDNS (issue 24): the agent says it for
    // the gateway-mode service, watch (from the router's status) for the masquerade one.
    for (c, who) in [(&g.name, "the agent"), (&m.name, "watch")] {
        let want = format!("{c}.local");
        let got = wait_for(5 * S, Duration::from_millis(250), || {
            let js = self_json(c);
            (js["mdns"] == want.as_str()).then_some(js)
        });
        assert!(
            got.is_some(),
            "{who}'s /v1/self never named {want}: {}",
            self_json(c)
        );
    }
    let pj = self_json(&p.name);
    assert_eq!(pj["mode"], "docker", "{pj}");
    assert_eq!(
        pj["addresses"],
        serde_json::json!([host.to_string()]),
        "{pj}"
    );
    // One busy caller: 60 requests in a row from the plain container (busybox wget: the
    // image's curl prints no status code). watch answers
    // the first (a burst of 20 per caller, 5 per second after) and refuses the rest
    // with 429, without asking Docker; the others on the network are not charged.
    let codes = exec_sh(
        &p.name,
        "H=$(ip route | awk '/default/ { print $3 }'); \
         for i in $(seq 60); do wget -S -O /dev/null http://$H:9001/container/nobody-$i/port/80 2>&1 \
         | grep -o 'HTTP/1.. [0-9]*' | head -n 1 | cut -d ' ' -f 2; done",
    )
    .unwrap_or_else(|e| panic!("the request loop in {}: {e}", p.name));
    let count = |c: &str| codes.lines().filter(|l| l.trim() == c).count();
    assert!(
        count("404") >= 5 && count("429") >= 5 && count("404") + count("429") == 60,
        "60 requests from one caller: {} answered 404, {} refused 429\n{codes}",
        count("404"),
        count("429")
    );
    assert_eq!(
        self_json(&m.name)["mode"],
        "masquerade",
        "another caller is served"
    );

    // A container learns nothing about one that is not on its network.
    assert!(
        exec_sh(&g.name, "curl http://$(ip route | awk '/default/ { print $3 }'):9001/container/nonexistent/port/80").is_err()
    );

    // Masquerade mode: the service sees its router, not the client.
    let m_router = watch::ip_of(&bed, &router_name(&m.name)).unwrap();
    let seen = bed.client.exec(&[
        "curl",
        "-sS",
        "-m",
        "3",
        &format!("http://{m_lease}:8081/cgi-bin/peer"),
    ]);
    let seen = String::from_utf8_lossy(&seen.stdout).to_string();
    assert_eq!(addr_of(&seen), Some(m_router), "masquerade mode: {seen:?}");
    let seen = bed.client.exec(&[
        "curl",
        "-sS",
        "-m",
        "3",
        &format!("http://{g_lease}:8080/cgi-bin/peer"),
    ]);
    let seen = String::from_utf8_lossy(&seen.stdout).to_string();
    assert_eq!(
        addr_of(&seen),
        Some(docker::CLIENT),
        "gateway mode: {seen:?}"
    );

    // A container on the host reaches both services at their LAN addresses (through the
    // host route shim, masqueraded by Docker to the shim's address: what a gateway-mode
    // service sees; a masquerade-mode one sees its router), and so does the host.
    for (lease, port, router) in [(g_lease, 8080, None), (m_lease, 8081, Some(m_router))] {
        let seen = wait_for(Duration::from_secs(15), Duration::from_millis(300), || {
            exec_sh(&p.name, &format!("curl http://{lease}:{port}/cgi-bin/peer")).ok()
        });
        let seen_addr = seen.as_deref().and_then(addr_of);
        let ok = match router {
            None => seen_addr.is_some_and(|a| a.is_link_local()),
            Some(r) => seen_addr == Some(r),
        };
        assert!(
            ok,
            "a container on the host -> {lease}:{port}: {seen:?}\n{}",
            w.log()
        );
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "-m",
                "3",
                &format!("http://{lease}:{port}/cgi-bin/peer"),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "the host -> {lease}:{port}: {out:?}");
    }

    // The LAN gets nothing from port 9001: not on the lease, not on the router's Docker
    // side routed via the lease.
    for target in [g_lease, g_router] {
        if target == g_router {
            bed.client
                .ip(&["route", "add", &bed.subnet, "via", &g_lease.to_string()]);
        }
        let out = bed.client.exec(&[
            "curl",
            "-sS",
            "-m",
            "2",
            &format!("http://{target}:{WHOAMI_PORT}/hostip"),
        ]);
        assert!(
            !out.status.success(),
            "a LAN client got {:?} from {target}:{WHOAMI_PORT}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    w.assert_running();
}

#[test]
fn the_recipe_answers_on_networks_made_with_and_without_a_gateway() {
    require_root!();
    let bed = watch::bed(6);
    // Made the usual way: Docker picks the gateway and reports none in IPAM.
    let plain = ExtraNet::without_gateway(&bed, "nogw", &[]);
    let ipam_gw = docker_ok(&[
        "network",
        "inspect",
        "--format",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
        &plain.0,
    ]);
    assert_eq!(ipam_gw.trim(), "", "this engine reports an IPAM gateway");
    let host = Ipv4Addr::new(203, 0, 113, 250);
    let mut w = Watch::start(&bed, &["--host-address", &host.to_string()], &[]);
    assert!(w.wait_watching(1, BOUND), "no start-up reconcile");
    let base = 20000 + (std::process::id() % 10000) as u16;
    let mut checks = Vec::new();
    for (k, (tag, network)) in [
        ("withgw", bed.network.as_str()),
        ("nogw", plain.0.as_str()),
        ("dflt", "bridge"),
    ]
    .into_iter()
    .enumerate()
    {
        let port = base + k as u16;
        let c = bed.container_on(
            network,
            tag,
            BUSYBOX_IMAGE,
            &["-p", &format!("{port}:80")],
            &[],
            true,
        );
        checks.push((network.to_string(), c.name, port));
    }
    for (network, c, port) in &checks {
        let got = wait_for(Duration::from_secs(15), Duration::from_millis(300), || {
            recipe(c)
        });
        assert_eq!(
            got,
            Some((host.to_string(), port.to_string())),
            "docker-mirror's recipe in {c} on network {network}\n--- watch log ---\n{}",
            w.log()
        );
    }
    w.assert_running();
}

#[test]
fn two_services_reach_each_other_at_their_public_addresses() {
    require_root!();
    let bed = DockerBed::new(5);
    let a = bed.container("a", BUSYBOX_IMAGE, &[], &[], true);
    let b = bed.container("b", BUSYBOX_IMAGE, &[], &[], true);
    bed.up(&a.name, &["--publish", "80/tcp"]);
    bed.up(&b.name, &["--publish", "80/tcp"]);
    let learn = |c: &str| -> Ipv4Addr {
        let (host, port) = recipe(c).unwrap_or_else(|| panic!("the recipe failed in {c}"));
        assert_eq!(port, "80");
        host.parse().unwrap()
    };
    let (a_pub, b_pub) = (learn(&a.name), learn(&b.name));
    assert!(
        docker::in_pool(a_pub) && docker::in_pool(b_pub),
        "{a_pub} {b_pub}"
    );
    for (from, to, from_pub) in [(&a.name, b_pub, a_pub), (&b.name, a_pub, b_pub)] {
        let seen = exec_sh(from, &format!("curl http://{to}/cgi-bin/peer")).unwrap_or_else(|e| {
            panic!("{from} cannot reach the other service at its public address {to}: {e}")
        });
        assert_eq!(
            addr_of(&seen),
            Some(from_pub),
            "{from} -> {to}: seen as {seen:?}"
        );
    }
    // `down` gives the service Docker's default route back.
    let out = bed.down(&a.name);
    assert!(out.ok(), "{out:?}");
    let route = exec_sh(&a.name, "ip route | awk '/default/ { print $3 }'").unwrap();
    assert_eq!(
        route.trim(),
        bed.gateway.to_string(),
        "route not restored by down"
    );
    bed.assert_clean(&a.name);
}
