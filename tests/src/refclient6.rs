//! Reference DHCPv6 clients for the lease benchmark: ISC dhclient (`-6`) and dhcpcd
//! (`-6`), each asking for one address (IA_NA) with Rapid Commit and nothing else, with
//! its files in the run's own directory.
//!
//! * dhclient -6 does no Router Solicitation and waits for no RA: it sends its Solicit at
//!   once (after RFC 8415's random delay of up to a second) and its script (minimal, like
//!   the v4 one) puts the address in place as a /128, dhclient's default.
//! * dhcpcd is run in two ways: as configured out of the box (`ipv6rs`: Router
//!   Solicitation first, DHCPv6 only when the RA's M flag says so, as the agent does) and
//!   in DHCPv6 mode directly (`noipv6rs` plus `ia_na 1`: Solicit at once, no RA). It sets
//!   the address itself (over netlink; its hook script is `/bin/true`). It keeps its DUID,
//!   leases and control socket under `/var/lib/dhcpcd` and `/run/dhcpcd` with no option to
//!   move them, so it runs in a private mount namespace with empty tmpfs mounts on
//!   `/var/lib` and `/run`: every run starts without a stored lease (as dhclient with a
//!   fresh lease file and the agent with a fresh state directory do), and the host's
//!   directories are never written.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefClient6Kind {
    /// `dhclient -6`: Solicit at once.
    Dhclient,
    /// dhcpcd as shipped: RS first, DHCPv6 on the RA's M flag.
    DhcpcdRa,
    /// dhcpcd with `noipv6rs` and `ia_na 1`: Solicit at once.
    DhcpcdDirect,
}

const DHCLIENT6_SCRIPT: &str = r#"#!/bin/sh
# Minimal dhclient -6 script: only the link and the address.
case "$reason" in
PREINIT6) ip link set dev "$interface" up ;;
BOUND6|RENEW6|REBIND6|REBOOT6)
  ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface" ;;
EXPIRE6|RELEASE6|STOP6)
  [ -n "$old_ip6_address" ] && ip -6 addr del "$old_ip6_address/$old_ip6_prefixlen" dev "$interface" 2>/dev/null ;;
esac
exit 0
"#;

/// dhcpcd's configuration as shipped by Debian, less what has nothing to do with one
/// DHCPv6 address (IPv4, host name, DNS, NTP, SLAAC privacy) plus `noipv4`.
const DHCPCD_CONF: &str = "noipv4\noption rapid_commit\n";

/// Writes the client's files into `dir`; returns the command (not started).
pub fn command(kind: RefClient6Kind, ifname: &str, dir: &Path) -> Command {
    use std::os::unix::fs::PermissionsExt;
    let p = |f: &str| dir.join(f).display().to_string();
    match kind {
        RefClient6Kind::Dhclient => {
            std::fs::write(dir.join("dhclient6.sh"), DHCLIENT6_SCRIPT).unwrap();
            std::fs::set_permissions(
                dir.join("dhclient6.sh"),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
            // Without it dhclient would not ask for Rapid Commit (the agent and dhcpcd do).
            std::fs::write(dir.join("dhclient6.conf"), "send dhcp6.rapid-commit;\n").unwrap();
            let mut c = Command::new("dhclient");
            c.args(["-6", "-d", "-cf", &p("dhclient6.conf")])
                .args(["-sf", &p("dhclient6.sh"), "-lf", &p("dhclient6.leases")])
                .args(["-pf", &p("dhclient6.pid"), ifname]);
            c
        }
        RefClient6Kind::DhcpcdRa | RefClient6Kind::DhcpcdDirect => {
            let mut conf = DHCPCD_CONF.to_string();
            if kind == RefClient6Kind::DhcpcdDirect {
                conf.push_str("noipv6rs\nia_na 1\n");
            }
            std::fs::write(dir.join("dhcpcd.conf"), conf).unwrap();
            let mut c = Command::new("dhcpcd");
            c.args(["-6", "-B", "-d", "-f", &p("dhcpcd.conf"), "-c", "/bin/true"])
                .args(["-j", &p("dhcpcd.log"), ifname]);
            // SAFETY: only system calls (unshare, mount, mkdir) on static strings between
            // fork and exec.
            unsafe {
                c.pre_exec(private_dhcpcd_dirs);
            }
            c
        }
    }
}

/// In the child before exec: a private mount namespace with empty tmpfs on /run and
/// /var/lib (and dhcpcd's directories in them).
fn private_dhcpcd_dirs() -> std::io::Result<()> {
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: plain system calls with NUL-terminated static strings.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS))?;
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        for (target, sub) in [(c"/run", c"/run/dhcpcd"), (c"/var/lib", c"/var/lib/dhcpcd")] {
            check(libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"size=4m,mode=0755".as_ptr().cast(),
            ))?;
            check(libc::mkdir(sub.as_ptr(), 0o755))?;
        }
    }
    Ok(())
}
