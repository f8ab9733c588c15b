//! Reference DHCP clients (ISC dhclient, busybox udhcpc), each with a minimal script that
//! only sets the address (nothing touches the machine's resolver or routes).

use crate::netns::Netns;
use crate::proc::ProcGuard;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefClientKind {
    Dhclient,
    Udhcpc,
}

impl RefClientKind {
    pub fn label(&self) -> &'static str {
        match self {
            RefClientKind::Dhclient => "dhclient",
            RefClientKind::Udhcpc => "busybox udhcpc",
        }
    }
}

const DHCLIENT_SCRIPT: &str = r#"#!/bin/sh
# Minimal dhclient script: only the link and the address.
case "$reason" in
PREINIT) ip link set dev "$interface" up ;;
BOUND|RENEW|REBIND|REBOOT)
  if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
    ip addr del "$old_ip_address/$old_subnet_mask" dev "$interface" 2>/dev/null
  fi
  ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
EXPIRE|FAIL|RELEASE|STOP)
  [ -n "$old_ip_address" ] && ip addr del "$old_ip_address/$old_subnet_mask" dev "$interface" 2>/dev/null ;;
esac
exit 0
"#;

const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# Minimal udhcpc script: only the link and the address.
case "$1" in
deconfig) ip link set dev "$interface" up; ip -4 addr flush dev "$interface" ;;
bound|renew) ip addr replace "$ip/$mask" dev "$interface" ;;
esac
exit 0
"#;

/// Write the client's script (and dhclient's config) into `dir`; returns the command.
pub fn command(kind: RefClientKind, ifname: &str, dir: &Path, hostname: Option<&str>) -> Command {
    use std::os::unix::fs::PermissionsExt;
    let p = |f: &str| dir.join(f).display().to_string();
    match kind {
        RefClientKind::Dhclient => {
            std::fs::write(dir.join("dhclient.sh"), DHCLIENT_SCRIPT).unwrap();
            let mut conf = String::new();
            if let Some(h) = hostname {
                conf.push_str(&format!("send host-name \"{h}\";\n"));
            }
            std::fs::write(dir.join("dhclient.conf"), conf).unwrap();
            std::fs::set_permissions(
                dir.join("dhclient.sh"),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
            let mut c = Command::new("dhclient");
            c.args([
                "-d",
                "-4",
                "-cf",
                &p("dhclient.conf"),
                "-sf",
                &p("dhclient.sh"),
            ])
            .args([
                "-lf",
                &p("dhclient.leases"),
                "-pf",
                &p("dhclient.pid"),
                ifname,
            ]);
            c
        }
        RefClientKind::Udhcpc => {
            std::fs::write(dir.join("udhcpc.sh"), UDHCPC_SCRIPT).unwrap();
            std::fs::set_permissions(
                dir.join("udhcpc.sh"),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
            let mut c = Command::new("busybox");
            c.args(["udhcpc", "-f", "-i", ifname, "-s", &p("udhcpc.sh")]);
            if let Some(h) = hostname {
                c.args(["-x", &format!("hostname:{h}")]);
            }
            c
        }
    }
}

/// A running reference client, killed (SIGKILL, no release) on drop.
pub struct RefClient {
    pub proc: ProcGuard,
    pub log: PathBuf,
}

impl RefClient {
    /// Start `kind` on `ifname` in `ns` (spawned directly in the namespace, see
    /// [`Netns::spawn_direct`]), files in `dir`.
    pub fn start(kind: RefClientKind, ns: &Netns, ifname: &str, dir: &Path) -> RefClient {
        let log = dir.join(format!("{}.log", kind.label().replace(' ', "-")));
        let f = std::fs::File::create(&log).unwrap();
        let mut c = command(kind, ifname, dir, None);
        c.stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f);
        let child = ns.spawn_direct(&mut c).expect("spawn reference client");
        RefClient {
            proc: ProcGuard::new(child, kind.label()),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

/// VmRSS of a process in kB, from /proc/PID/status.
pub fn rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
