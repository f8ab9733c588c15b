//! A test bed for the scripts, built by the integration harness, so the simulated LAN and
//! dnsmasq's command line exist once (tests/src/bed.rs, dnsmasq.rs, docker.rs) and not
//! again in bash.
//!
//!   ncbed docker [--slot N] [--exclusive]
//!   ncbed forward
//!
//! Root only. Builds the bed, prints `NCBED_NAME=value` lines and then `NCBED_READY=1` on
//! stdout, and keeps it until SIGTERM, SIGHUP or end-of-file on stdin (the script that
//! started it died; Ctrl-D by hand), then removes all of it and exits 0. A failure while building panics
//! (exit 101) after removing what was built. `scripts/lib/common.sh` (`bed_start`) runs it.
//!
//! `docker`: [`DockerBed`] (tests/src/docker.rs): LAN namespace with br0 = 203.0.113.1/24
//! and dnsmasq (pool .50-.150), a LAN client namespace (203.0.113.10), a veth whose root
//! namespace end is the `--parent`, a Docker network on a /28 of 198.51.100.0/24 (slot N,
//! default 15, or the next free one). It refuses to run if a host interface is in
//! 203.0.113.0/24 and holds a blackhole route for it meanwhile; it holds the Docker suites'
//! lock, shared (`--exclusive`: alone, for `netcontainer watch`, which acts on every router).
//! Containers the script starts on the network are the script's to remove first.
//!
//! `forward`: [`Lan`] (192.0.2.0/24, namespaces only) with dnsmasq, a LAN client
//! (192.0.2.10), router namespace `ROUTER` (macvlan `lan0`, down, for the agent) and
//! `PLAIN_ROUTER` (its `lan0` up with a static 192.0.2.20/24, no agent, no firewall), each
//! with a service segment (198.51.100.1 on the router, service host 198.51.100.2 behind
//! it, forwarding on).

use netcontainer_proto::contract::LAN_IF;
use netcontainer_tests::docker::{self, DockerBed, SuiteLock};
use netcontainer_tests::*;
use std::io::{Read, Write};
use std::sync::Arc;

/// The static address of the forward bed's router without agent.
const PLAIN_ROUTER_ADDR: &str = "192.0.2.20";

fn usage() -> ! {
    eprintln!("usage: ncbed docker [--slot N] [--exclusive] | ncbed forward");
    std::process::exit(2);
}

/// What a bed owns; dropped to remove it.
type Bed = Box<dyn std::any::Any>;

fn print(vars: &[(&str, String)]) {
    let mut out = std::io::stdout().lock();
    for (k, v) in vars {
        assert!(
            !v.contains('\n') && !v.contains(' '),
            "{k}={v:?}: no spaces or newlines"
        );
        writeln!(out, "NCBED_{k}={v}").expect("stdout");
    }
    writeln!(out, "NCBED_READY=1").expect("stdout");
    out.flush().expect("stdout");
}

fn docker_bed(args: &[String]) -> Bed {
    let mut slot = docker::SLOTS - 1;
    let mut exclusive = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--slot" => {
                slot = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n < docker::SLOTS)
                    .unwrap_or_else(|| usage())
            }
            "--exclusive" => exclusive = true,
            _ => usage(),
        }
    }
    let lock = if exclusive {
        SuiteLock::exclusive()
    } else {
        SuiteLock::shared()
    };
    let bed = DockerBed::with_lock(slot, lock);
    print(&[
        ("ID", bed.id.clone()),
        ("PARENT", bed.parent.clone()),
        ("LAN_NS", bed.lan.name().to_string()),
        ("LAN_NET", docker::LAN_NET.to_string()),
        ("LAN_GATEWAY", docker::LAN_GATEWAY.to_string()),
        ("CLIENT_NS", bed.client.name().to_string()),
        ("CLIENT_ADDR", docker::CLIENT.to_string()),
        ("NETWORK", bed.network.clone()),
        ("SUBNET", bed.subnet.clone()),
        ("BRIDGE", bed.bridge()),
        ("DNSMASQ_LOG", bed.dnsmasq.log_path().display().to_string()),
    ]);
    Box::new(bed)
}

fn forward_bed(args: &[String]) -> Bed {
    if !args.is_empty() {
        usage();
    }
    let mut lan = Lan::new();
    let router = lan.add_router();
    let plain = lan.add_router();
    let client = lan.add_client(10);
    let dnsmasq = Dnsmasq::start(
        &lan.lan,
        DnsmasqOpts {
            lease_secs: 600,
            domain: None,
            dns_port: 0,
            ..DnsmasqOpts::default()
        },
    );
    plain.ip(&[
        "addr",
        "add",
        &format!("{PLAIN_ROUTER_ADDR}/24"),
        "dev",
        LAN_IF,
    ]);
    plain.ip(&["link", "set", LAN_IF, "up"]);
    let mut svc = Vec::new();
    let mut service = Vec::<Arc<Netns>>::new();
    for r in [&router, &plain] {
        let mut net = ServiceNet::attach(r);
        service.push(net.add_host(2));
        svc.push(net);
    }
    print(&[
        ("LAN_NS", lan.lan.name().to_string()),
        ("HOST_NS", lan.host.name().to_string()),
        ("CLIENT_NS", client.name().to_string()),
        ("CLIENT_ADDR", "192.0.2.10".to_string()),
        ("ROUTER_NS", router.name().to_string()),
        ("ROUTER_IF", LAN_IF.to_string()),
        ("SERVICE_NS", service[0].name().to_string()),
        ("PLAIN_ROUTER_NS", plain.name().to_string()),
        ("PLAIN_ROUTER_ADDR", PLAIN_ROUTER_ADDR.to_string()),
        ("PLAIN_SERVICE_NS", service[1].name().to_string()),
        ("SERVICE_NET", "198.51.100.0/24".to_string()),
        ("SERVICE_ADDR", "198.51.100.2".to_string()),
        (
            "SERVICE_ROUTER_ADDR",
            netcontainer_tests::service::ROUTER_SVC.to_string(),
        ),
        ("DNSMASQ_LOG", dnsmasq.log_path().display().to_string()),
    ]);
    // A tuple drops in field order: service segments, dnsmasq, then the LAN.
    Box::new((svc, dnsmasq, lan))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((kind, rest)) = args.split_first() else {
        usage()
    };
    if !is_root() {
        eprintln!("ncbed: needs root (network namespaces)");
        std::process::exit(1);
    }
    // SIGTERM and SIGHUP are taken with sigwait below: blocked here, before any thread
    // starts, so every thread inherits the mask (the harness's children get an empty mask
    // from std::process::Command). SIGINT is blocked too: a Ctrl-C meant for the script
    // must not tear the bed down under it; the script stops us with SIGTERM in order.
    // SAFETY: plain libc calls on a local, initialised signal set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
            libc::sigaddset(&mut set, s);
        }
        assert_eq!(
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
            0
        );
        set
    };
    let bed = match kind.as_str() {
        "docker" => docker_bed(rest),
        "forward" => forward_bed(rest),
        _ => usage(),
    };
    // End of file on stdin: whoever started us is gone.
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().lock().read_to_end(&mut sink);
        // SAFETY: kill(2) to our own pid.
        unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
    });
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: sigwait on the set blocked above.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc == 0 && sig != libc::SIGINT {
            break;
        }
    }
    drop(bed);
}
