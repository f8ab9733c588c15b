//! BIND's `named` as the authoritative server of one zone that takes dynamic updates
//! signed with one TSIG key (the dynamic DNS tests, tests/tests/ddns.rs).
//!
//! ```text
//!  root namespace                         the namespace given (a bed's LAN)
//!  <link> 2001:db8:d45:N::1/64 ======= dns0 2001:db8:d45:N::2/64   named, TCP+UDP 53
//! ```
//!
//! The server is reached over a veth pair of its own, in IPv6 (2001:db8::/32), so the
//! host driver in the root namespace reaches it without any route into the bed's
//! 203.0.113.0/24 (which stays blackholed in the root namespace). Drop kills named (by
//! pid) and deletes the link; its files are in the caller's temp directory.
//!
//! The host end's address is in 2001:db8::/32, which an IPv6 Docker bed
//! (`docker6::V6Side`) refuses to find on a host interface: never use both in one test
//! binary (`cargo test` runs the binaries one at a time).

use crate::netns::Netns;
use crate::proc::ProcGuard;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

static N: AtomicU16 = AtomicU16::new(0);

/// A TSIG key in BIND's format, as `tsig-keygen -a ALG NAME` prints it.
pub fn keygen(name: &str, algorithm: &str) -> String {
    crate::run(Command::new("tsig-keygen").args(["-a", algorithm, name]))
}

pub struct Named {
    /// `[addr]:53`, what `--ddns-server` takes.
    pub server: String,
    pub addr: Ipv6Addr,
    pub zone: String,
    /// The key file the zone allows (mode 0600).
    pub key_file: PathBuf,
    log: PathBuf,
    link: String,
    proc: Option<ProcGuard>,
}

impl Named {
    /// Starts named in `ns` for `zone` (with `extra` lines in the zone file, e.g. a stale
    /// record), allowing updates of any A/AAAA in the zone by one new hmac-sha256 key.
    /// `link` names the root end of the veth pair (≤ 15 characters).
    pub fn start(ns: &Arc<Netns>, dir: &Path, link: &str, zone: &str, extra: &str) -> Named {
        let n = N.fetch_add(1, Ordering::Relaxed);
        let net = format!("2001:db8:d45:{:x}{n:x}", std::process::id() & 0xfff);
        let (host, addr): (Ipv6Addr, Ipv6Addr) = (
            format!("{net}::1").parse().unwrap(),
            format!("{net}::2").parse().unwrap(),
        );
        crate::ip(&[
            "link",
            "add",
            link,
            "type",
            "veth",
            "peer",
            "name",
            "dns0",
            "netns",
            ns.name(),
        ]);
        let mut named = Named {
            server: format!("[{addr}]:53"),
            addr,
            zone: zone.to_string(),
            key_file: dir.join("ddns.key"),
            log: dir.join("named.log"),
            link: link.to_string(),
            proc: None,
        };
        crate::ip(&["addr", "add", &format!("{host}/64"), "dev", link, "nodad"]);
        crate::ip(&["link", "set", link, "up"]);
        ns.ip(&["addr", "add", &format!("{addr}/64"), "dev", "dns0", "nodad"]);
        ns.ip(&["link", "set", "dns0", "up"]);

        let key = keygen("nc-ddns-test", "hmac-sha256");
        std::fs::write(&named.key_file, &key).unwrap();
        set_mode(&named.key_file, 0o600);
        let zone_file = dir.join("zone.db");
        std::fs::write(
            &zone_file,
            format!(
                "$TTL 60\n@ IN SOA ns.{zone}. admin.{zone}. 1 60 60 600 60\n\
                 @ IN NS ns.{zone}.\nns IN AAAA {addr}\n{extra}"
            ),
        )
        .unwrap();
        let conf = dir.join("named.conf");
        std::fs::write(
            &conf,
            format!(
                "{key}\noptions {{\n directory \"{d}\";\n pid-file \"{d}/named.pid\";\n \
                 session-keyfile \"{d}/session.key\";\n listen-on {{ none; }};\n \
                 listen-on-v6 {{ {addr}; }};\n recursion no;\n dnssec-validation no;\n}};\n\
                 controls {{ }};\n\
                 zone \"{zone}\" {{\n type primary;\n file \"{zf}\";\n \
                 update-policy {{ grant nc-ddns-test zonesub A AAAA; }};\n}};\n",
                d = dir.display(),
                zf = zone_file.display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(&named.log).unwrap();
        let child = ns
            .command(&["named", "-g", "-c", &conf.display().to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning named: {e}"));
        named.proc = Some(ProcGuard::new(child, "named"));
        let up = crate::wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
            // `+short` prints the SOA's fields: "ns.ZONE. admin.ZONE. 1 ...".
            named
                .dig(&["SOA", zone])
                .is_ok_and(|o| o.contains(&format!("admin.{zone}.")))
        });
        assert!(up, "named never answered:\n{}", named.log());
        named
    }

    /// `dig @server +short ARGS...` from the root namespace (over TCP, as the driver).
    pub fn dig(&self, args: &[&str]) -> Result<String, String> {
        let at = format!("@{}", self.addr);
        let mut a = vec![at.as_str(), "+tcp", "+time=2", "+tries=1", "+short"];
        a.extend_from_slice(args);
        crate::try_run(Command::new("dig").args(&a).stdin(Stdio::null()))
    }

    /// The records of `name` (relative to the zone) of type `rtype`, sorted.
    pub fn records(&self, name: &str, rtype: &str) -> Vec<String> {
        let fqdn = format!("{name}.{}.", self.zone);
        let out = self
            .dig(&[&fqdn, rtype])
            .unwrap_or_else(|e| panic!("dig {fqdn} {rtype}: {e}"));
        let mut v: Vec<String> = out.lines().map(|l| l.trim().to_string()).collect();
        v.retain(|l| !l.is_empty());
        v.sort();
        v
    }

    pub fn log(&self) -> String {
        crate::tail(&self.log, 40)
    }

    /// The flags of the driver for this server, with `key`.
    pub fn flags<'a>(&'a self, key: &'a Path) -> Vec<String> {
        vec![
            "--ddns-server".into(),
            self.server.clone(),
            "--ddns-zone".into(),
            self.zone.clone(),
            "--ddns-key".into(),
            key.display().to_string(),
        ]
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Drop for Named {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(3));
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.link])
            .stderr(Stdio::null())
            .status();
    }
}
