//! The sysctls a router needs ([`ROUTER_SYSCTLS`]: forwarding on, loose
//! reverse-path filtering), set by the agent itself at start in its own
//! network namespace, so the agent alone (`ip netns exec ROUTER
//! netcontainer-agent`) needs nothing set beforehand.
//!
//! Inside a Docker container `/proc/sys` is read-only; there the driver passes
//! the same list as Docker sysctls, and a value that is already right is
//! accepted as is. A value that is wrong and cannot be written stops the agent
//! with one error naming the sysctl and the fix.

use std::io;
use std::path::Path;

use netcontainer_proto::contract::{ROUTER_SYSCTLS, ROUTER_SYSCTLS6, Sysctl};

/// Where the kernel exposes sysctls.
pub const PROC_SYS: &str = "/proc/sys";

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot set {name}={want} (it is {current}): {source}; run the agent as root with NET_ADMIN \
     in its own network namespace, or set it beforehand (Docker: --sysctl {name}={want})"
)]
pub struct SysctlError {
    pub name: &'static str,
    pub want: &'static str,
    /// The value found, or `unreadable`.
    pub current: String,
    #[source]
    pub source: io::Error,
}

/// What [`ensure_one`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The value was already the one needed (nothing written).
    AlreadySet,
    /// The value was written.
    Written,
}

/// Sets every sysctl of [`ROUTER_SYSCTLS`] under `root` (normally
/// [`PROC_SYS`]); stops at the first one that is wrong and cannot be set.
/// The IPv6 ones ([`ROUTER_SYSCTLS6`]) too when the kernel has IPv6.
pub fn ensure_router_sysctls(root: &Path) -> Result<(), SysctlError> {
    let ipv6 = root.join("net/ipv6").exists();
    for s in ROUTER_SYSCTLS
        .iter()
        .chain(ROUTER_SYSCTLS6.iter().filter(|_| ipv6))
    {
        ensure_at(root, s)?;
    }
    Ok(())
}

/// [`ensure_one`] on the file of `s` under `root`, logging a write.
fn ensure_at(root: &Path, s: &Sysctl) -> Result<Outcome, SysctlError> {
    let path = root.join(s.proc_path());
    let outcome = ensure_one(
        s,
        || std::fs::read_to_string(&path),
        |v| std::fs::write(&path, v),
    )?;
    if outcome == Outcome::Written {
        tracing::info!("set {}={}", s.name, s.value);
    }
    Ok(outcome)
}

/// IPv6 forwarding ([`netcontainer_proto::contract::IPV6_FORWARDING`]),
/// for the kernel path of IPv6 forwards: set on demand, not at start (see
/// the contract for why).
pub fn ensure_ipv6_forwarding(root: &Path) -> Result<Outcome, SysctlError> {
    ensure_at(root, &netcontainer_proto::contract::IPV6_FORWARDING)
}

/// The decision for one sysctl: leave a right value alone (a read-only
/// `/proc/sys` is fine then), else write it; if writing fails, read once
/// more (someone may have set it meanwhile) and fail if it is still wrong.
pub fn ensure_one(
    s: &Sysctl,
    read: impl Fn() -> io::Result<String>,
    write: impl FnOnce(&str) -> io::Result<()>,
) -> Result<Outcome, SysctlError> {
    let is_right = |v: &io::Result<String>| matches!(v, Ok(v) if v.trim() == s.value);
    if is_right(&read()) {
        return Ok(Outcome::AlreadySet);
    }
    match write(s.value) {
        Ok(()) => Ok(Outcome::Written),
        Err(source) => {
            let now = read();
            if is_right(&now) {
                return Ok(Outcome::AlreadySet);
            }
            Err(SysctlError {
                name: s.name,
                want: s.value,
                current: match now {
                    Ok(v) => v.trim().to_string(),
                    Err(_) => "unreadable".into(),
                },
                source,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const FWD: Sysctl = Sysctl {
        name: "net.ipv4.ip_forward",
        value: "1",
    };

    fn read_only() -> io::Error {
        io::Error::from_raw_os_error(libc::EROFS)
    }

    #[test]
    fn already_right_is_not_written() {
        let out = ensure_one(
            &FWD,
            || Ok("1\n".into()),
            |_| panic!("must not write a value that is already right"),
        );
        assert_eq!(out.unwrap(), Outcome::AlreadySet);
    }

    #[test]
    fn wrong_value_is_written() {
        let written = Cell::new(None);
        let out = ensure_one(
            &FWD,
            || Ok("0\n".into()),
            |v| {
                written.set(Some(v.to_string()));
                Ok(())
            },
        );
        assert_eq!(out.unwrap(), Outcome::Written);
        assert_eq!(written.take().as_deref(), Some("1"));
    }

    #[test]
    fn unwritable_wrong_value_fails_naming_the_sysctl_and_the_fix() {
        let e = ensure_one(&FWD, || Ok("0\n".into()), |_| Err(read_only())).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("cannot set net.ipv4.ip_forward=1 (it is 0): "),
            "{msg}"
        );
        assert!(
            msg.contains("NET_ADMIN in its own network namespace"),
            "{msg}"
        );
        assert!(msg.contains("--sysctl net.ipv4.ip_forward=1"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        let e = ensure_one(&FWD, || Err(read_only()), |_| Err(read_only())).unwrap_err();
        assert_eq!(e.current, "unreadable");
    }

    #[test]
    fn unwritable_but_set_meanwhile_is_accepted() {
        let reads = Cell::new(0);
        let out = ensure_one(
            &FWD,
            || {
                reads.set(reads.get() + 1);
                Ok(if reads.get() == 1 { "0" } else { "1" }.into())
            },
            |_| Err(read_only()),
        );
        assert_eq!(out.unwrap(), Outcome::AlreadySet);
    }

    /// The whole list against a fake `/proc/sys` tree.
    #[test]
    fn sets_the_router_list_under_a_root() {
        let root = std::env::temp_dir().join(format!("nc-sysctl-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (s, v) in ROUTER_SYSCTLS.iter().zip(["0", "2", "1"]) {
            let p = root.join(s.proc_path());
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, format!("{v}\n")).unwrap();
        }
        ensure_router_sysctls(&root).unwrap();
        for s in ROUTER_SYSCTLS {
            let got = std::fs::read_to_string(root.join(s.proc_path())).unwrap();
            assert_eq!(got.trim(), s.value, "{}", s.name);
        }
        // With IPv6 in the kernel, its list too.
        for s in ROUTER_SYSCTLS6 {
            let p = root.join(s.proc_path());
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "7\n").unwrap();
        }
        ensure_router_sysctls(&root).unwrap();
        for s in ROUTER_SYSCTLS6 {
            let got = std::fs::read_to_string(root.join(s.proc_path())).unwrap();
            assert_eq!(got.trim(), s.value, "{}", s.name);
        }
        // A missing parameter cannot be created: the error names it.
        std::fs::remove_dir_all(root.join("net/ipv4/conf")).unwrap();
        let e = ensure_router_sysctls(&root).unwrap_err();
        assert_eq!(e.name, "net.ipv4.conf.all.rp_filter");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
