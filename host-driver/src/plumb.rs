//! The router's LAN leg: a link of its leg kind (`leg`) on the host's parent
//! NIC, created directly inside the router container's network namespace.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use futures::TryStreamExt;
use rtnetlink::Handle;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, State};

use crate::leg::{Kind, LinkSpec};

#[derive(Debug, thiserror::Error)]
pub enum PlumbError {
    #[error("parent interface {0} does not exist on this host")]
    NoParent(String),
    #[error("parent interface {0} is down")]
    ParentDown(String),
    #[error("cannot open a netlink socket: {0}")]
    Connection(#[source] std::io::Error),
    #[error("cannot open the network namespace of pid {pid}: {source}")]
    Netns {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    /// Making a leg of `kind` failed.
    #[error("{what}: {source}")]
    Leg {
        kind: Kind,
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
}

impl PlumbError {
    pub fn hint(&self) -> Option<String> {
        match self {
            PlumbError::NoParent(_) => Some(
                "`ip link` lists the host's interfaces; --parent names the NIC on the LAN".into(),
            ),
            PlumbError::ParentDown(p) => Some(format!("bring it up first: ip link set {p} up")),
            PlumbError::Leg { kind, source, .. } if unsupported(source) => {
                Some(kind.unsupported_hint().into())
            }
            _ => None,
        }
    }
}

/// The kernel does not know the link type: rtnl_newlink answers EOPNOTSUPP
/// ("Unknown device type") when no module provides the kind.
fn unsupported(e: &rtnetlink::Error) -> bool {
    matches!(errno(e), Some(libc::EOPNOTSUPP))
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

pub struct Plumber {
    handle: Handle,
}

/// The parent NIC, checked.
#[derive(Clone, Debug)]
pub struct Parent {
    pub name: String,
    pub index: u32,
}

/// One leg to make: its kind, its parent, its name and its MAC (not used by
/// a kind whose legs have the parent's).
#[derive(Clone, Copy, Debug)]
pub struct Leg<'a> {
    pub parent: &'a Parent,
    pub kind: Kind,
    pub name: &'a str,
    pub mac: [u8; 6],
}

impl Plumber {
    pub fn new() -> Result<Self, PlumbError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(PlumbError::Connection)?;
        tokio::spawn(conn);
        Ok(Plumber { handle })
    }

    /// The netlink handle of the host's namespace.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The parent must exist and be administratively up with a carrier
    /// (oper state up, or unknown for links that do not report one).
    pub async fn parent(&self, name: &str) -> Result<Parent, PlumbError> {
        let res = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await;
        let msg = match res {
            Ok(Some(m)) => m,
            Ok(None) => return Err(PlumbError::NoParent(name.into())),
            Err(e) if matches!(errno(&e), Some(libc::ENODEV | libc::EINVAL)) => {
                return Err(PlumbError::NoParent(name.into()));
            }
            Err(source) => {
                return Err(PlumbError::Netlink {
                    what: format!("looking up {name}"),
                    source,
                });
            }
        };
        let admin_up = msg.header.flags.contains(LinkFlags::Up);
        let oper = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::OperState(s) => Some(*s),
            _ => None,
        });
        if !admin_up || matches!(oper, Some(State::Down | State::LowerLayerDown)) {
            return Err(PlumbError::ParentDown(name.into()));
        }
        Ok(Parent {
            name: name.into(),
            index: msg.header.index,
        })
    }

    /// Creates `leg` inside the network namespace of `pid` (see
    /// [`open_netns`] for `sandbox`). The namespace is opened first and held
    /// by fd, so a recycled pid cannot redirect the link (the caller
    /// re-checks the pid afterwards).
    pub async fn add_leg(
        &self,
        leg: &Leg<'_>,
        pid: u32,
        sandbox: Option<&Path>,
    ) -> Result<(), PlumbError> {
        let ns = open_netns(pid, sandbox)?;
        self.add_leg_into(leg, &ns).await
    }

    /// Creates `leg` directly inside the network namespace `ns` (an open
    /// `/proc/.../ns/net`): the link never exists in the host's namespace.
    pub async fn add_leg_into(&self, leg: &Leg<'_>, ns: &File) -> Result<(), PlumbError> {
        let msg = leg.kind.link(&LinkSpec {
            name: leg.name,
            parent_index: leg.parent.index,
            mac: Some(leg.mac),
            netns: Some(ns.as_raw_fd()),
        });
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|source| PlumbError::Leg {
                kind: leg.kind,
                what: format!(
                    "creating {} {} on {} in its namespace",
                    leg.kind.name(),
                    leg.name,
                    leg.parent.name
                ),
                source,
            })
    }
}

/// The router's network namespace: `/proc/PID/ns/net` of the pid Docker
/// reports, or Docker's handle of the same namespace, the container's
/// `SandboxKey` (`/var/run/docker/netns/...`), when that pid is not ours to
/// see: Docker's pids are the host's, and a driver in a PID namespace of its
/// own (systemd in a container, a Swarm global service) either finds no such
/// process or, worse, another one under that number. So when the sandbox
/// handle opens, the pid's namespace is used only if it is the very same
/// (device and inode); otherwise the handle is. Without a handle (not
/// bind-mounted), the pid's, as before.
///
/// A handle appears in such a driver's mount namespace only if it existed
/// when the bind mount was made, or if `/var/run/docker/netns` propagates
/// (a shared mount on the host, rare outside systemd hosts). The dependable
/// way there is the host's procfs bind-mounted read-only (`-v
/// /proc:/host/proc:ro`) and named by `NETCONTAINER_HOST_PROC=/host/proc`:
/// Docker's pids are then looked up in it.
pub fn open_netns(pid: u32, sandbox: Option<&Path>) -> Result<File, PlumbError> {
    let proc_root = std::env::var_os("NETCONTAINER_HOST_PROC")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/proc".into());
    let by_pid = File::open(proc_root.join(pid.to_string()).join("ns/net"));
    let Some(handle) = sandbox.and_then(|p| File::open(p).ok()) else {
        return by_pid.map_err(|source| PlumbError::Netns { pid, source });
    };
    match by_pid {
        Ok(f) if same_file(&f, &handle) => Ok(f),
        _ => Ok(handle),
    }
}

fn same_file(a: &File, b: &File) -> bool {
    match (a.metadata(), b.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_by_pid_or_by_sandbox_handle() {
        let me = std::process::id();
        let own = File::open("/proc/self/ns/net").unwrap();
        // No handle: the pid's namespace.
        assert!(same_file(&open_netns(me, None).unwrap(), &own));
        // A handle naming the same namespace: the pid's is used.
        let h = Path::new("/proc/self/ns/net");
        assert!(same_file(&open_netns(me, Some(h)).unwrap(), &own));
        // A pid that is not ours to see: the handle.
        assert!(same_file(&open_netns(u32::MAX, Some(h)).unwrap(), &own));
        assert!(matches!(
            open_netns(u32::MAX, None),
            Err(PlumbError::Netns { .. })
        ));
        // A handle that does not open: the pid's, as before.
        let missing = Path::new("/nonexistent/netns/handle");
        assert!(same_file(&open_netns(me, Some(missing)).unwrap(), &own));
    }
}
