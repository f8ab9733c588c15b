//! The core's ports: the small traits its sync acts through, and their
//! implementations by the real netlink ([`Netconf`]), firewall and relay.
//! The core's unit tests put a recording fake behind the same traits.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use netcontainer_proto::Protocol;

use crate::firewall::{Firewall, FirewallError, Policy};
use crate::netconf::{AddressConfig, Netconf, NetconfError};
use crate::relay::{self, Relay};

/// Addresses, routes and rules on the LAN interface (netlink), and the one
/// sysctl the core turns on when it needs it.
#[allow(async_fn_in_trait)] // used generically, never as a trait object
pub trait Net {
    /// Adds or refreshes an IPv4 address with its routes and rules.
    async fn install4(&self, index: u32, cfg: &AddressConfig) -> Result<(), NetconfError>;
    /// Removes an IPv4 address with the routes and rules of its lease.
    async fn remove4(
        &self,
        index: u32,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetconfError>;
    async fn install6(
        &self,
        index: u32,
        address: Ipv6Addr,
        prefix_len: u8,
        preferred: Option<Duration>,
        valid: Option<Duration>,
    ) -> Result<(), NetconfError>;
    async fn remove6(
        &self,
        index: u32,
        address: Ipv6Addr,
        prefix_len: u8,
    ) -> Result<(), NetconfError>;
    /// Adds or removes the IPv6 default route via `router`.
    async fn router6(&self, index: u32, router: Ipv6Addr, add: bool) -> Result<(), NetconfError>;
    /// Gateway mode's `from <service> lookup <our table>`; `None` removes
    /// it. `now`: the rule in place, when known (then nothing is listed).
    async fn service_rule(
        &self,
        now: Option<Option<Ipv4Addr>>,
        want: Option<Ipv4Addr>,
    ) -> Result<(), NetconfError>;
    /// The IPv6 mark rule on or off (`now`: in place, when known).
    async fn mark_rule6(&self, now: Option<bool>, on: bool) -> Result<(), NetconfError>;
    /// IPv6 forwarding on (never turned off: Docker may have set it).
    fn ipv6_forwarding(&self) -> Result<(), String>;
}

/// The firewall: one policy in, atomically.
#[allow(async_fn_in_trait)]
pub trait Filter {
    async fn apply(&self, policy: &Policy) -> Result<(), FirewallError>;
    /// Ends the tracked flows of our mark toward `targets` (a plan moved
    /// their forwards elsewhere); returns how many.
    async fn flush_conntrack_to(
        &self,
        targets: &[(Protocol, Ipv4Addr)],
    ) -> Result<u64, FirewallError>;
    /// Ends every tracked flow to or through `address`, an address of ours
    /// that went (renumbered, expired); returns how many.
    async fn flush_conntrack_of(&self, address: Ipv4Addr) -> Result<u64, FirewallError>;
}

/// The IPv6 relay's listeners.
pub trait Listeners {
    /// Listens on exactly `want`; returns the listeners that failed.
    fn update(&mut self, want: &BTreeMap<relay::Key, SocketAddrV4>) -> Vec<String>;
}

impl Net for Netconf {
    async fn install4(&self, index: u32, cfg: &AddressConfig) -> Result<(), NetconfError> {
        self.install(index, cfg).await
    }
    async fn remove4(
        &self,
        index: u32,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetconfError> {
        self.remove(index, address, prefix_len).await
    }
    async fn install6(
        &self,
        index: u32,
        address: Ipv6Addr,
        prefix_len: u8,
        preferred: Option<Duration>,
        valid: Option<Duration>,
    ) -> Result<(), NetconfError> {
        Netconf::install_v6(self, index, address, prefix_len, preferred, valid).await
    }
    async fn remove6(
        &self,
        index: u32,
        address: Ipv6Addr,
        prefix_len: u8,
    ) -> Result<(), NetconfError> {
        self.remove_v6(index, address, prefix_len).await
    }
    async fn router6(&self, index: u32, router: Ipv6Addr, add: bool) -> Result<(), NetconfError> {
        self.default_route_v6(index, router, add).await
    }
    async fn service_rule(
        &self,
        now: Option<Option<Ipv4Addr>>,
        want: Option<Ipv4Addr>,
    ) -> Result<(), NetconfError> {
        match now {
            Some(now) => self.set_service_rule(now, want).await,
            None => Netconf::service_rule(self, want).await,
        }
    }
    async fn mark_rule6(&self, now: Option<bool>, on: bool) -> Result<(), NetconfError> {
        match now {
            Some(now) => self.set_mark_rule_v6(now, on).await,
            None => self.mark_rule_v6(on).await,
        }
    }
    fn ipv6_forwarding(&self) -> Result<(), String> {
        crate::sysctl::ensure_ipv6_forwarding(Path::new(crate::sysctl::PROC_SYS))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

impl Filter for Arc<Firewall> {
    async fn apply(&self, policy: &Policy) -> Result<(), FirewallError> {
        Firewall::apply(self, policy).await
    }
    async fn flush_conntrack_to(
        &self,
        targets: &[(Protocol, Ipv4Addr)],
    ) -> Result<u64, FirewallError> {
        Firewall::flush_conntrack_to(self, targets).await
    }
    async fn flush_conntrack_of(&self, address: Ipv4Addr) -> Result<u64, FirewallError> {
        Firewall::flush_conntrack_of(self, address).await
    }
}

impl Listeners for Relay {
    fn update(&mut self, want: &BTreeMap<relay::Key, SocketAddrV4>) -> Vec<String> {
        Relay::update(self, want)
    }
}
