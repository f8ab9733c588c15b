//! Test bed helpers for netcontainer's root-only integration tests.
//!
//! Everything here builds a small world in network namespaces that the test creates and
//! deletes itself (see `docs`/architecture "Test bed conventions"):
//!
//! * [`Netns`]: one namespace, deleted on drop, with `exec`/`spawn` through `ip netns exec`
//!   and `spawn_direct`/`run_in` through `setns(2)` in a helper thread.
//! * [`Lan`]: the bed builder: a LAN namespace with bridge `br0` = 192.0.2.1/24, a "host"
//!   namespace on it (the macvlan parent `eth0`), routers (a macvlan `lan0`, left DOWN
//!   without address) and LAN clients (a veth on the bridge with a static address);
//!   [`bed::add_bridge`] and [`bed::plug`], the one way a simulated segment is built.
//! * [`Dnsmasq`], [`Kea`]: DHCP servers run in the foreground in the LAN namespace, killed
//!   by pid on drop, with lease-file parsers and log access.
//! * [`Agent`]: the netcontainer agent in a router namespace plus the `netcontainer agent`
//!   driver calls (`apply`, `status`).
//! * [`RefClient`]: dhclient / busybox udhcpc, the reference clients; [`refclient6`]:
//!   dhclient -6 and dhcpcd, the reference DHCPv6 clients of the lease benchmark.
//! * [`dhcp`]: hand-crafted DHCP packets and a sender; [`dns`]: a tiny DNS A query.
//! * [`rogue`]: crafted/rogue DHCP servers ([`rogue::Responder`]), ingress drops of chosen
//!   DHCP replies, a second namespace on the LAN bridge.
//! * [`capture`]: tcpdump on a bed's interface, read back by a small pcap reader (DHCP
//!   fields, TCP SYNs and their MSS), for tests judged from the wire.
//! * [`AddrWatch`]: netlink RTM_NEWADDR watcher with sub-millisecond timing (benchmarks).
//! * [`service`]: the service side behind a router ([`ServiceNet`]: segment bridge, hosts
//!   on 198.51.100.0/24), a routed second LAN ([`RoutedNet`], 203.0.113.0/24), small
//!   servers (busybox httpd, TCP banner, UDP echo) and bounded clients (curl, TCP, UDP,
//!   ping) for the forwarding tests.
//! * `src/bin/ncbed.rs`: these beds for the scripts (`scripts/lib/common.sh`, `bed_start`),
//!   so bash never builds a LAN or starts dnsmasq itself.
//! * [`browser`]: headless Chromium's screenshots and DOM of a page on 127.0.0.1, and
//!   tesseract's reading of a screenshot (the status page test).
//! * [`mdns`]: real mDNS/DNS-SD clients in a LAN client namespace: a private avahi-daemon
//!   (avahi-browse/-resolve/-publish), python's zeroconf, dig and a legacy unicast query.
//! * [`chaos`]: Kea on the Docker bed, a continuous LAN client, an address-conflict
//!   monitor and resource probes for the load and chaos tests.
//!
//! Only 192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24 are used, only inside namespaces
//! created here. Names carry the pid and a counter so tests can run in parallel.

pub mod addrwatch;
pub mod agent;
pub mod bed;
pub mod browser;
pub mod capture;
pub mod chaos;
pub mod daemon;
pub mod dhcp;
pub mod dns;
pub mod dnsmasq;
pub mod docker;
pub mod docker6;
pub mod isolation;
pub mod kea;
pub mod mdns;
pub mod named;
pub mod netns;
pub mod podman;
pub mod proc;
pub mod refclient;
pub mod refclient6;
pub mod rogue;
pub mod service;
pub mod v6;
pub mod watch;

pub use addrwatch::AddrWatch;
pub use agent::{Agent, AgentStatus, ApplyArgs, CmdOutput, LeaseStatus};
pub use bed::Lan;
pub use dnsmasq::{Dnsmasq, DnsmasqLease, DnsmasqOpts};
pub use kea::{Kea, KeaLease, KeaOpts, KeaRequest};
pub use netns::Netns;
pub use proc::ProcGuard;
pub use refclient::{RefClient, RefClientKind};
pub use service::{RoutedNet, ServiceNet};

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Skip the calling test unless we run as root. Under CI (env `CI` set) a missing root is
/// an error, not a skip: the suite must really run there.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            fn __f() {}
            let name = std::any::type_name_of_val(&__f).trim_end_matches("::__f");
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{name}: needs root, and CI is set (run the suite with sudo ./scripts/test)"
                );
            }
            eprintln!("skipping {name}: needs root");
            return;
        }
    };
}

/// True when the effective uid is 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Path of a workspace binary (`netcontainer`, `netcontainer-agent`, ...).
///
/// `NETCONTAINER_BIN_DIR` wins; otherwise the directory above the test executable
/// (`target/debug/deps/..` = `target/debug`). Panics with a hint if the file is missing.
pub fn bin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("NETCONTAINER_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe().expect("current_exe");
            let mut dir = exe.parent().expect("exe dir").to_path_buf();
            if dir.ends_with("deps") {
                dir.pop();
            }
            dir
        }
    };
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "binary {} not found: build it with cargo build --workspace (or set NETCONTAINER_BIN_DIR)",
        path.display()
    );
    path
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A short name unique in this machine for this run: `nc<pid>x<counter><tag>`.
/// Namespace names are files in /run/netns, not interface names, so length is no issue,
/// but we keep them short and greppable (`ip netns list | grep ^nc<pid>x`).
pub fn unique(tag: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("nc{}x{}{}", std::process::id(), n, tag)
}

/// A temporary directory removed on drop (kept when `NETCONTAINER_KEEP_TMP` is set, for
/// diagnosis; its path is printed if the test panics).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let base = std::env::var_os("NETCONTAINER_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let path = base.join(format!("netcontainer-test-{}", unique(tag)));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("NETCONTAINER_KEEP_TMP").is_some() {
            eprintln!("keeping {}", self.path.display());
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "(temp dir {} removed; set NETCONTAINER_KEEP_TMP=1 to keep it)",
                self.path.display()
            );
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Poll `f` every `poll` until it returns true or `timeout` passed. Returns the last result.
pub fn wait_until(timeout: Duration, poll: Duration, mut f: impl FnMut() -> bool) -> bool {
    wait_for(timeout, poll, || f().then_some(())).is_some()
}

/// Poll `f` every `poll` until it returns `Some` or `timeout` passed.
pub fn wait_for<T>(
    timeout: Duration,
    poll: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(poll);
    }
}

/// Run a command, panic with its output if it fails; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run a command; Err(stderr) if it fails.
pub fn try_run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Run `ip <args>` and panic on failure.
pub fn ip(args: &[&str]) -> String {
    run(Command::new("ip").args(args))
}

/// IPv4 addresses (address, prefix length) on `ifname` in namespace `ns`, from `ip -j addr`.
/// An absent interface gives an empty list.
pub fn addr_on(ns: &Netns, ifname: &str) -> Vec<(Ipv4Addr, u8)> {
    let out = match try_run(Command::new("ip").args([
        "-n",
        ns.name(),
        "-j",
        "-4",
        "addr",
        "show",
        "dev",
        ifname,
    ])) {
        Ok(o) => o,
        Err(_) => return Vec::new(),
    };
    parse_ip_addr_json(&out)
}

/// Parse `ip -j addr` output into IPv4 (address, prefix) pairs.
pub fn parse_ip_addr_json(json: &str) -> Vec<(Ipv4Addr, u8)> {
    let v: serde_json::Value = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(_) => return Vec::new(),
    };
    let mut res = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if a["family"] != "inet" {
                continue;
            }
            if let (Some(local), Some(plen)) = (a["local"].as_str(), a["prefixlen"].as_u64())
                && let Ok(addr) = local.parse()
            {
                res.push((addr, plen as u8));
            }
        }
    }
    res
}

/// Is `addr` currently configured on `ifname` in `ns`?
pub fn has_addr(ns: &Netns, ifname: &str, addr: Ipv4Addr) -> bool {
    addr_on(ns, ifname).iter().any(|(a, _)| *a == addr)
}

/// MAC address of `ifname` in `ns` (lower-case, colon separated).
pub fn mac_of(ns: &Netns, ifname: &str) -> String {
    let out = ip(&["-n", ns.name(), "-j", "link", "show", "dev", ifname]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j link json");
    v[0]["address"]
        .as_str()
        .expect("link address")
        .to_lowercase()
}

/// Is `name` a program on PATH?
pub fn have(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Last `n` lines of a text file (for diagnostics).
pub fn tail(path: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_json() {
        let j = r#"[{"ifindex":3,"ifname":"lan0","addr_info":[{"family":"inet","local":"192.0.2.50","prefixlen":24},{"family":"inet6","local":"fe80::1","prefixlen":64}]}]"#;
        assert_eq!(
            parse_ip_addr_json(j),
            vec![("192.0.2.50".parse().unwrap(), 24)]
        );
        assert!(parse_ip_addr_json("[]").is_empty());
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique("a"), unique("a"));
    }
}
