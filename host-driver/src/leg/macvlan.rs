//! macvlan (mode bridge), the default: each leg has a MAC of its own (the
//! one derived from the service's identity), so the LAN's DHCP server and
//! switches see one more host per service. Legs of one parent in bridge mode
//! reach each other (not the parent itself: hence the host's shim, one more
//! macvlan).

use rtnetlink::LinkMacVlan;
use rtnetlink::packet_route::link::{InfoKind, LinkMessage, MacVlanMode};

use super::kind::{LegKind, LegOption, LinkSpec};

pub struct Macvlan;

impl LegKind for Macvlan {
    fn name(&self) -> &'static str {
        "macvlan"
    }

    fn info_kind(&self) -> InfoKind {
        InfoKind::MacVlan
    }

    fn link(&self, spec: &LinkSpec<'_>) -> LinkMessage {
        let mut b = LinkMacVlan::new(spec.name, spec.parent_index, MacVlanMode::Bridge);
        if let Some(mac) = spec.mac {
            b = b.address(mac.to_vec());
        }
        if let Some(fd) = spec.netns {
            b = b.setns_by_fd(fd);
        }
        b.build()
    }

    fn own_mac(&self) -> bool {
        true
    }

    /// Its own MAC: the server's unicast OFFER reaches it before it owns
    /// the address.
    fn broadcast_flag(&self) -> bool {
        false
    }

    fn refuses(&self, _: LegOption) -> Option<&'static str> {
        None
    }

    fn shim_precedence(&self) -> u8 {
        0
    }

    fn module(&self) -> &'static str {
        "macvlan"
    }

    fn kernel_config(&self) -> &'static str {
        "CONFIG_MACVLAN"
    }

    fn unsupported_hint(&self) -> &'static str {
        "this kernel has no macvlan support (modprobe macvlan; if that fails, the \
         kernel was built without CONFIG_MACVLAN; `netcontainer doctor` checks)"
    }

    /// The default kind: every host needs it.
    fn optional_for(&self) -> Option<&'static str> {
        None
    }

    fn no_offer_hint(&self) -> Option<&'static str> {
        Some("a parent that drops unknown MACs (WiFi) needs --mode ipvlan")
    }
}
