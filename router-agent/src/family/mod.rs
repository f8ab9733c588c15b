//! The address families behind one seam. Each family is a task of its own
//! (`v4`: DHCPv4 with its sockets, persisted lease and ARP probe; `v6`:
//! router advertisements, SLAAC and DHCPv6 with its persisted lease) that
//! configures nothing itself: it reports [`Event`]s, the same type for
//! every family, and the agent's core decides what the router holds.
//!
//! A family is started by the core with what it needs (its `start`), runs
//! as a [`Handle`], and ends when the core asks, releasing its lease or
//! keeping it for the next start. Adding a family is a file here with its
//! task; the core only folds its events into what it holds.

pub mod queue;
pub mod v4;
pub mod v6;

use std::net::IpAddr;
use std::time::Instant;

use netcontainer_lease::v4::Lease;
use netcontainer_proto::Ipv6Origin;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A DHCP client's state (the lease crate's; status maps it to the wire's).
pub use netcontainer_lease::State as ClientState;

/// Which family a task runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(address: IpAddr) -> Family {
        match address {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// Where an address comes from, and what came with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A DHCPv4 lease: its address with the gateway, routes and timers the
    /// router uses and reports.
    Dhcpv4(Box<Lease>),
    /// Left on the interface by an earlier agent (killed, or stopped with
    /// `--keep-lease`); kept as it is while the client tries to claim it
    /// again, never configured by this one.
    Previous,
    Slaac,
    Dhcpv6,
}

impl Origin {
    /// The IPv6 origin status reports.
    pub fn ipv6(&self) -> Option<Ipv6Origin> {
        match self {
            Origin::Slaac => Some(Ipv6Origin::Slaac),
            Origin::Dhcpv6 => Some(Ipv6Origin::Dhcpv6),
            Origin::Dhcpv4(_) | Origin::Previous => None,
        }
    }
}

/// An address a family wants on the interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub address: IpAddr,
    pub prefix_len: u8,
    /// `None`: infinite.
    pub preferred_until: Option<Instant>,
    pub valid_until: Option<Instant>,
    pub origin: Origin,
}

impl Address {
    /// A DHCPv4 lease's address.
    pub fn of_lease(lease: Lease) -> Address {
        let until = lease.expires_at();
        Address {
            address: lease.address.into(),
            prefix_len: lease.prefix_len,
            preferred_until: until,
            valid_until: until,
            origin: Origin::Dhcpv4(Box::new(lease)),
        }
    }

    /// The DHCPv4 lease behind this address, if it is one.
    pub fn lease(&self) -> Option<&Lease> {
        match &self.origin {
            Origin::Dhcpv4(l) => Some(l),
            _ => None,
        }
    }
}

/// What a family task reports to the core, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The DHCPv4 client's state (for status); sent before any event it
    /// explains.
    State(ClientState),
    /// Put this address in place, or refresh its lifetimes (or its lease).
    Address(Address),
    /// The address goes; `error` says why, for status (none after a
    /// release or a withdrawal the LAN asked for).
    AddressGone {
        address: IpAddr,
        prefix_len: u8,
        error: Option<String>,
    },
    /// A default router on the LAN, new or still there.
    Router {
        address: IpAddr,
    },
    RouterGone {
        address: IpAddr,
    },
    /// Something failed; shown in status under the family.
    Error(Family, String),
}

/// The sending half every task gets, and the core's receiving half: a
/// bounded queue that coalesces (see [`queue`]): a task never waits for the
/// core, and a flood from the LAN cannot grow it.
pub use queue::{Events, Inbox};

/// A running family task, as the core sees it.
pub struct Handle {
    pub family: Family,
    /// `true`: release the lease; `false`: keep it (for the next start).
    end: mpsc::Sender<bool>,
    task: JoinHandle<()>,
}

impl Handle {
    /// Spawns a task that runs until the core asks it to end: `run` gets
    /// the receiver of that request (`true`: release; the core gone counts
    /// as a release).
    pub fn spawn<F>(family: Family, run: impl FnOnce(mpsc::Receiver<bool>) -> F) -> Handle
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let (end, ended) = mpsc::channel(1);
        Handle {
            family,
            end,
            task: tokio::spawn(run(ended)),
        }
    }

    /// Asks the task to stop, releasing its lease or keeping it (no
    /// release; the persisted lease is claimed again by the next start);
    /// the returned handle ends once it has (its last events are then in
    /// the channel).
    pub async fn end(self, release: bool) -> JoinHandle<()> {
        // A task that already ended has nothing to release.
        let _ = self.end.send(release).await;
        self.task
    }
}

/// Waits until `t` (never for `None`): the one timer of a task's loop.
pub(crate) async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Pause after a failed receive, so that a persistent socket error is no
/// hot loop.
pub(crate) const RECEIVE_ERROR_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);
