//! What the family tasks hold, folded from their events: the inputs of
//! [`super::desired::derive`] besides the plan. Pure: no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};

use netcontainer_lease::v4::Lease;

use crate::family::{Address, ClientState, Event, Family};

/// Every family's addresses and default routers, and the DHCPv4 client's
/// state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// The DHCPv4 client's state, as last reported (`None`: no client).
    pub client: Option<ClientState>,
    pub addresses: BTreeMap<IpAddr, Address>,
    pub routers: BTreeSet<IpAddr>,
}

/// A problem a task reported, for the core to file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reported {
    pub family: Family,
    pub message: String,
}

impl Held {
    /// Folds one event in; returns the problem it reports, if any.
    pub fn absorb(&mut self, ev: Event) -> Option<Reported> {
        match ev {
            Event::State(s) => self.client = Some(s),
            Event::Address(a) => {
                if let Some(old) = self.addresses.get(&a.address)
                    && old.prefix_len != a.prefix_len
                {
                    tracing::debug!(address = %a.address, "prefix length changed");
                }
                // One DHCPv4 lease at a time: a new one replaces the old
                // (the task reports the old one gone first anyway).
                if a.lease().is_some() {
                    self.addresses
                        .retain(|k, old| *k == a.address || old.lease().is_none());
                }
                self.addresses.insert(a.address, a);
            }
            Event::AddressGone { address, error, .. } => {
                self.addresses.remove(&address);
                return error.map(|message| Reported {
                    family: Family::of(address),
                    message,
                });
            }
            Event::Router { address } => {
                self.routers.insert(address);
            }
            Event::RouterGone { address } => {
                self.routers.remove(&address);
            }
            Event::Error(family, message) => return Some(Reported { family, message }),
        }
        None
    }

    /// Drops everything of `family` (its task ended, or a new one starts).
    pub fn forget(&mut self, family: Family) {
        self.addresses.retain(|a, _| Family::of(*a) != family);
        self.routers.retain(|a| Family::of(*a) != family);
        if family == Family::V4 {
            self.client = None;
        }
    }

    /// The DHCPv4 lease in use.
    pub fn lease(&self) -> Option<&Lease> {
        self.addresses.values().find_map(Address::lease)
    }

    /// The IPv6 addresses, in address order.
    pub fn v6(&self) -> impl Iterator<Item = (Ipv6Addr, &Address)> {
        self.addresses.iter().filter_map(|(a, x)| match a {
            IpAddr::V6(a) => Some((*a, x)),
            IpAddr::V4(_) => None,
        })
    }

    /// The global IPv6 addresses (what forwards and the relay answer on).
    pub fn global_v6(&self) -> Vec<Ipv6Addr> {
        self.v6()
            .map(|(a, _)| a)
            .filter(|a| !a.is_unicast_link_local())
            .collect()
    }
}
