//! The seam of a leg kind: everything the driver does differently for one
//! kind of link on the parent NIC (a router's LAN leg, the host's route shim,
//! doctor's probe leg) is a method here, answered in the kind's own file.

use std::os::fd::RawFd;

use rtnetlink::packet_route::link::{InfoKind, LinkMessage};

/// One link of a kind to create.
#[derive(Clone, Copy, Debug)]
pub struct LinkSpec<'a> {
    /// Its name (`lan0` in a router, `nch<index>` for a shim).
    pub name: &'a str,
    /// The parent NIC's interface index.
    pub parent_index: u32,
    /// Its MAC; the kernel picks one when `None`. A kind whose legs have the
    /// parent's MAC ([`LegKind::own_mac`] false) ignores it.
    pub mac: Option<[u8; 6]>,
    /// Create it directly inside this network namespace (an open
    /// `/proc/.../ns/net`), so it never exists in the caller's; `None`: the
    /// caller's namespace.
    pub netns: Option<RawFd>,
}

/// An option of `up` (flag or service label) that a kind may refuse: one
/// that cannot work on its legs is refused, never silently ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LegOption {
    /// `--mac`, label `netcontainer.mac`.
    Mac,
    /// `--arp-probe`, label `netcontainer.arp-probe`.
    ArpProbe,
}

impl LegOption {
    /// Every option, in the order `up` checks them.
    pub const ALL: [LegOption; 2] = [LegOption::Mac, LegOption::ArpProbe];
}

/// A kind of LAN leg. One unit struct per kind, in a file of its own,
/// listed once in [`super::KINDS`].
pub trait LegKind: Send + Sync + 'static {
    /// Its name: the value of `--mode`, of the label `netcontainer.mode` and
    /// of the configuration key `mode`.
    fn name(&self) -> &'static str;

    /// The kernel's name for such links (`IFLA_INFO_KIND`): how the host's
    /// shims are recognised when listed.
    fn info_kind(&self) -> InfoKind;

    /// The netlink message that creates a link of this kind on a parent.
    /// Routers' legs, shims and doctor's probe legs are all made by it, so
    /// a router's leg and its host's shim can always reach each other.
    fn link(&self, spec: &LinkSpec<'_>) -> LinkMessage;

    /// Whether a leg has a MAC of its own (the one derived from the
    /// service's identity, or `--mac`), rather than the parent's.
    fn own_mac(&self) -> bool;

    /// Whether the DHCP client sets the broadcast flag (RFC 2131 section
    /// 4.1: a client that cannot receive unicast before it owns an address).
    fn broadcast_flag(&self) -> bool;

    /// Why `option` cannot work on this kind's legs (the text after
    /// "cannot be used with KIND: "), or `None` when it can.
    fn refuses(&self, option: LegOption) -> Option<&'static str>;

    /// A parent NIC takes legs of one kind only. When its routers disagree
    /// (one of them was made after the kind changed), the host shim takes
    /// the kind of highest precedence.
    fn shim_precedence(&self) -> u8;

    /// The kernel module that provides the kind (`modprobe` it).
    fn module(&self) -> &'static str;

    /// The kernel's build option for the kind.
    fn kernel_config(&self) -> &'static str;

    /// The hint when the kernel does not know the kind (`EOPNOTSUPP`,
    /// "Unknown device type") as a leg is made.
    fn unsupported_hint(&self) -> &'static str;

    /// doctor: `None` when every host needs the kind (a kernel without it
    /// fails the check); else what a host needs it for, and a kernel without
    /// it only warns unless the kind is the one asked for.
    fn optional_for(&self) -> Option<&'static str>;

    /// doctor: what to add to the fix when no OFFER came to a probe leg of
    /// this kind.
    fn no_offer_hint(&self) -> Option<&'static str>;
}
