//! A router is contained (docs/security.md, "From a router or an image", 6): on the real
//! Docker engine, a router made by `up` has a memory and a pid ceiling, a read-only root
//! (a small tmpfs on /tmp), only its own service's state and lease directories mounted,
//! every capability dropped but NET_ADMIN, NET_RAW and NET_BIND_SERVICE, and
//! no-new-privileges; and with all of that it still gets its lease, forwards, answers on
//! its socket and releases on `down`. Root only; the router and sample images must exist
//! (see tests/tests/docker.rs).

use netcontainer_tests::docker::{self, DockerBed};
use netcontainer_tests::*;
use serde_json::Value;
use std::time::Duration;

/// Capability bits (linux/capability.h) of what a router keeps.
const CAP_NET_BIND_SERVICE: u32 = 10;
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;

/// `docker inspect` of a container, parsed.
fn inspect(name: &str) -> Value {
    let out = docker::docker_ok(&["inspect", name]);
    let v: Value = serde_json::from_str(&out).expect("docker inspect is JSON");
    v[0].clone()
}

/// The strings of a JSON list, capability names without Docker's optional `CAP_`.
fn caps(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str())
        .map(|c| c.trim_start_matches("CAP_").to_string())
        .collect();
    out.sort();
    out
}

/// A field of /proc/PID/status.
fn proc_status(pid: u64, field: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

#[test]
fn a_router_is_contained_and_still_serves() {
    require_root!();
    let bed = DockerBed::new(11);
    let s = bed.run_service("s", &[]);
    let up = bed.up(&s.name, &[]);
    let router = docker::router_name(&s.name);
    let c = inspect(&router);
    let h = &c["HostConfig"];

    assert_eq!(h["ReadonlyRootfs"], true, "{h}");
    assert_eq!(caps(&h["CapDrop"]), ["ALL"], "{h}");
    assert_eq!(
        caps(&h["CapAdd"]),
        ["NET_ADMIN", "NET_BIND_SERVICE", "NET_RAW"],
        "{h}"
    );
    let secopt: Vec<&str> = h["SecurityOpt"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.as_str())
        .collect();
    assert!(
        secopt
            .iter()
            .any(|o| *o == "no-new-privileges:true" || *o == "no-new-privileges"),
        "{h}"
    );
    assert_eq!(h["Memory"], 128 << 20, "{h}");
    assert_eq!(h["MemorySwap"], 128 << 20, "no swap beyond the memory: {h}");
    assert_eq!(h["PidsLimit"], 128, "{h}");
    assert_eq!(h["Privileged"], false, "{h}");
    assert!(
        h["Tmpfs"]["/tmp"]
            .as_str()
            .is_some_and(|o| o.contains("noexec")),
        "{h}"
    );

    // The mounts: its own service's two directories, nothing else of the host.
    let (state, lease) = bed.service_dirs(&s.name);
    let mut mounts: Vec<(String, String, String, bool)> = c["Mounts"]
        .as_array()
        .expect("Mounts")
        .iter()
        .map(|m| {
            (
                m["Type"].as_str().unwrap_or_default().to_string(),
                m["Source"].as_str().unwrap_or_default().to_string(),
                m["Destination"].as_str().unwrap_or_default().to_string(),
                m["RW"] == true,
            )
        })
        .collect();
    mounts.sort();
    let mut want = vec![
        (
            "bind".to_string(),
            state.display().to_string(),
            "/run/netcontainer".to_string(),
            true,
        ),
        (
            "bind".to_string(),
            lease.display().to_string(),
            "/var/lib/netcontainer".to_string(),
            true,
        ),
    ];
    want.sort();
    assert_eq!(mounts, want);

    // What the kernel enforces on the running agent (PID 1 of the router).
    let pid = c["State"]["Pid"].as_u64().expect("a running router");
    let eff = u64::from_str_radix(&proc_status(pid, "CapEff"), 16).unwrap();
    assert_eq!(
        eff,
        (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW) | (1 << CAP_NET_BIND_SERVICE),
        "effective capabilities of the agent: {eff:#x}"
    );
    let bnd = u64::from_str_radix(&proc_status(pid, "CapBnd"), 16).unwrap();
    assert_eq!(bnd, eff, "bounding set: {bnd:#x}");
    assert_eq!(proc_status(pid, "NoNewPrivs"), "1");
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/"))
        .expect("a root mount");
    let opts = root.split(' ').nth(5).unwrap_or_default();
    assert!(
        opts.split(',').any(|o| o == "ro"),
        "the root is not read-only: {root}"
    );

    // What a bound router uses of its ceilings (printed for docs/security.md).
    let stats = docker::docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.MemUsage}} pids {{.PIDs}}",
        &router,
    ]);
    eprintln!("router {router} while bound: {}", stats.trim());

    // And it still works: the lease, the forward, the socket, the release.
    assert!(
        docker::in_pool(up.address),
        "{} not in the pool",
        up.address
    );
    let page = bed
        .fetch(up.address, 80, 5)
        .unwrap_or_else(|e| panic!("http://{}:80/ from the LAN client: {e}", up.address));
    assert_eq!(page.trim(), format!("hello from {} (port 80)", s.name));
    let st = bed.nc(&["status", &s.name, "--json"]);
    assert!(st.ok(), "status: {st}");
    assert!(
        std::fs::read_dir(&lease).unwrap().count() > 0,
        "the agent wrote no lease into {}",
        lease.display()
    );
    let down = bed.down(&s.name);
    assert!(down.ok(), "down: {down}");
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            bed.dnsmasq.lease_of(up.address).is_none()
        }),
        "the lease of {} was not released",
        up.address
    );
    bed.assert_clean(&s.name);
}
