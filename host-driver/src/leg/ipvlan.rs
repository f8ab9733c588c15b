//! ipvlan (mode l2), for parents that drop frames from MACs they do not know
//! (WiFi: the access point only passes the MACs it associated; some VM
//! switches): every leg has the parent's MAC, and the kernel tells legs apart
//! by their addresses. So the DHCP client identifier (never MAC-derived) is
//! what tells the routers' leases apart, and what depends on a MAC of the
//! leg's own is refused. ipvlan legs of one parent reach each other in l2
//! mode as macvlan legs do in bridge mode, so the host's shim is an ipvlan
//! too.
//!
//! The test kernels of this project have no ipvlan: what differs here is
//! proven by unit tests (the link message, the plan), and the kernel's part
//! by `doctor` on the operator's host.

use rtnetlink::LinkIpVlan;
use rtnetlink::packet_route::link::{InfoKind, IpVlanMode, LinkMessage};

use super::kind::{LegKind, LegOption, LinkSpec};

pub struct Ipvlan;

impl LegKind for Ipvlan {
    fn name(&self) -> &'static str {
        "ipvlan"
    }

    fn info_kind(&self) -> InfoKind {
        InfoKind::IpVlan
    }

    /// `spec.mac` is not used: the leg has the parent's.
    fn link(&self, spec: &LinkSpec<'_>) -> LinkMessage {
        let b = LinkIpVlan::new(spec.name, spec.parent_index, IpVlanMode::L2);
        match spec.netns {
            Some(fd) => b.setns_by_fd(fd).build(),
            None => b.build(),
        }
    }

    fn own_mac(&self) -> bool {
        false
    }

    /// The kernel hands an ipvlan leg only frames for addresses it owns (or
    /// broadcasts), so a unicast OFFER to the not yet configured address
    /// never reaches it.
    fn broadcast_flag(&self) -> bool {
        true
    }

    fn refuses(&self, option: LegOption) -> Option<&'static str> {
        Some(match option {
            LegOption::Mac => {
                "every ipvlan leg has the parent's MAC \
                 (drop the MAC, or use --mode macvlan)"
            }
            LegOption::ArpProbe => {
                "the probe's sender MAC is the parent's, \
                 shared with the host and every other leg, so a conflict cannot be told from \
                 ourselves (drop it, or use --mode macvlan)"
            }
        })
    }

    /// A parent with one ipvlan leg is an ipvlan master and refuses macvlans
    /// (and a macvlan shim would make it refuse the router's ipvlan leg).
    fn shim_precedence(&self) -> u8 {
        1
    }

    fn module(&self) -> &'static str {
        "ipvlan"
    }

    fn kernel_config(&self) -> &'static str {
        "CONFIG_IPVLAN"
    }

    fn unsupported_hint(&self) -> &'static str {
        "this kernel has no ipvlan support (modprobe ipvlan; if that fails, the \
         kernel was built without CONFIG_IPVLAN: use --mode macvlan, or run \
         `netcontainer doctor`)"
    }

    fn optional_for(&self) -> Option<&'static str> {
        Some("e.g. WiFi parents")
    }

    fn no_offer_hint(&self) -> Option<&'static str> {
        None
    }
}
