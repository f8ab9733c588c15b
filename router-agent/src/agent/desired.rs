//! Everything the router should hold, derived from the plan and what the
//! families hold by one pure function ([`derive`]). The core's sync compares
//! it with what it applied and changes only the difference.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use netcontainer_proto::{Ipv6Mode, Ipv6Path, Plan, contract};

use super::held::Held;
use crate::family::Origin;
use crate::firewall::{Ipv4Policy, Ipv6Policy, Policy};
use crate::netconf::AddressConfig;
use crate::relay;

/// What the router should hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// The IPv4 address of ours on the LAN interface.
    pub v4: Option<V4Address>,
    /// The IPv6 addresses on it.
    pub v6: BTreeMap<Ipv6Addr, V6Address>,
    /// The LAN's IPv6 default routers (routes via them).
    pub routers6: BTreeSet<Ipv6Addr>,
    /// Gateway mode: `from <service> lookup <our table>`.
    pub service_rule: Option<Ipv4Addr>,
    /// IPv6 replies of connections from the LAN look up our table.
    pub mark_rule6: bool,
    /// The kernel forwards IPv6 (only the kernel DNAT path needs it: with
    /// it on, Linux gives up optimistic DAD).
    pub ipv6_forwarding: bool,
    pub firewall: Policy,
    /// The IPv6 relay's listeners, and why some were left out.
    pub relay: BTreeMap<relay::Key, SocketAddrV4>,
    pub relay_note: Option<String>,
    /// How the published ports reach the service over IPv6 (status).
    pub ipv6_path: Ipv6Path,
}

/// The IPv4 address the router should have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum V4Address {
    /// A lease's address, routes and lifetime.
    Lease(LeaseAddress),
    /// An earlier agent's address, left as it is while the client tries
    /// to claim it again.
    Keep { address: Ipv4Addr, prefix_len: u8 },
}

impl V4Address {
    pub fn address(&self) -> (Ipv4Addr, u8) {
        match self {
            V4Address::Lease(l) => (l.address, l.prefix_len),
            V4Address::Keep {
                address,
                prefix_len,
            } => (*address, *prefix_len),
        }
    }
}

/// What netconf installs for a lease, with its end as an instant (the
/// lifetime given to the kernel is counted when it is installed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseAddress {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub routes: Vec<(Ipv4Addr, u8, Ipv4Addr)>,
    /// The LAN interface's MTU (option 26); `None`: left as it is.
    pub mtu: Option<u16>,
    /// `None`: infinite.
    pub expires_at: Option<Instant>,
}

impl LeaseAddress {
    pub fn config(&self, now: Instant) -> AddressConfig {
        AddressConfig {
            address: self.address,
            prefix_len: self.prefix_len,
            gateway: self.gateway,
            routes: self.routes.clone(),
            mtu: self.mtu,
            lifetime: self.expires_at.map(|t| t.saturating_duration_since(now)),
        }
    }
}

/// An IPv6 address with its lifetimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V6Address {
    pub prefix_len: u8,
    /// `None`: infinite.
    pub preferred_until: Option<Instant>,
    pub valid_until: Option<Instant>,
}

impl V6Address {
    /// The lifetimes left at `now`, as the kernel takes them.
    pub fn lifetimes(&self, now: Instant) -> (Option<Duration>, Option<Duration>) {
        let left = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(now));
        (left(self.preferred_until), left(self.valid_until))
    }
}

/// What [`derive`] reads besides the families' state.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    pub plan: Option<&'a Plan>,
    pub held: &'a Held,
    /// The kernel has IPv6: the firewall keeps an `ip6` table.
    pub ipv6_kernel: bool,
    /// The IPv6 task runs.
    pub v6_running: bool,
}

/// Everything the router should hold for `inputs`. Pure and total.
pub fn derive(inputs: Inputs<'_>) -> Desired {
    let Inputs {
        plan,
        held,
        ipv6_kernel,
        v6_running,
    } = inputs;
    let lan_if = plan.map_or(contract::LAN_IF, |p| p.interface.as_str());
    let v4 = held
        .addresses
        .values()
        .filter_map(|a| match (&a.origin, a.address) {
            (Origin::Dhcpv4(l), _) => Some(V4Address::Lease(LeaseAddress {
                address: l.address,
                prefix_len: l.prefix_len,
                gateway: l.gateway,
                routes: l.routes.clone(),
                mtu: l.mtu,
                expires_at: l.expires_at(),
            })),
            (Origin::Previous, std::net::IpAddr::V4(address)) => Some(V4Address::Keep {
                address,
                prefix_len: a.prefix_len,
            }),
            _ => None,
        })
        // A lease before an address only kept.
        .min_by_key(|w| matches!(w, V4Address::Keep { .. }));
    let v6 = held
        .v6()
        .map(|(a, x)| {
            let w = V6Address {
                prefix_len: x.prefix_len,
                preferred_until: x.preferred_until,
                valid_until: x.valid_until,
            };
            (a, w)
        })
        .collect();
    let routers6 = held
        .routers
        .iter()
        .filter_map(|r| match r {
            std::net::IpAddr::V6(r) => Some(*r),
            std::net::IpAddr::V4(_) => None,
        })
        .collect();
    let global = held.global_v6();
    let v4_policy = match (plan, held.lease()) {
        (Some(p), Some(l)) => Ipv4Policy {
            lease: Some(l.address),
            forwards: p.forwards.clone(),
            gateway_for: p.gateway_for(),
            // Whenever the LAN names its MTU: a clamp to it is a no-op for
            // SYNs that already fit (IPv4 and TCP headers: 40 bytes).
            mss: l.mtu.map(|m| m.saturating_sub(40)),
        },
        _ => Ipv4Policy::default(),
    };
    let v6_policy = ipv6_kernel.then(|| v6_policy(plan, &global));
    let ipv6_path = ipv6_path(plan, &global);
    let (relay, relay_note) = match (ipv6_path, plan) {
        (Ipv6Path::Relay, Some(p)) => relay::desired(&global, &p.forwards),
        _ => Default::default(),
    };
    Desired {
        v4,
        v6,
        routers6,
        service_rule: plan.and_then(Plan::gateway_for),
        mark_rule6: v6_running,
        ipv6_forwarding: v6_policy
            .as_ref()
            .is_some_and(Ipv6Policy::forwards_anything),
        firewall: Policy {
            lan_if: lan_if.to_string(),
            v4: v4_policy,
            v6: v6_policy,
        },
        relay,
        relay_note,
        ipv6_path,
    }
}

/// The `ip6` table's input: kernel DNAT of the forwards aimed at the
/// service when its Docker network gave it an IPv6 address and the LAN
/// gave us a global one; otherwise isolation only (the relay, if any,
/// answers on the router itself).
fn v6_policy(plan: Option<&Plan>, global: &[Ipv6Addr]) -> Ipv6Policy {
    let Some(plan) = plan.filter(|p| p.ipv6 == Ipv6Mode::Auto) else {
        return Ipv6Policy::default();
    };
    let Some(service) = plan.service.as_ref().filter(|s| s.address6.is_some()) else {
        return Ipv6Policy::default();
    };
    if global.is_empty() {
        return Ipv6Policy::default();
    }
    Ipv6Policy {
        addresses: global.to_vec(),
        service: service.address6,
        forwards: plan
            .forwards
            .iter()
            .filter(|f| f.target_address == service.address)
            .cloned()
            .collect(),
    }
}

/// How the published ports reach the service over IPv6.
fn ipv6_path(plan: Option<&Plan>, global: &[Ipv6Addr]) -> Ipv6Path {
    let Some(plan) = plan else {
        return Ipv6Path::None;
    };
    if plan.ipv6 != Ipv6Mode::Auto || plan.forwards.is_empty() || global.is_empty() {
        Ipv6Path::None
    } else if plan.service.as_ref().is_some_and(|s| s.address6.is_some()) {
        Ipv6Path::Kernel
    } else {
        Ipv6Path::Relay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::testkit::{addr6, lease, plan, plan6};
    use crate::family::{Address, Event};

    fn held(events: Vec<Event>) -> Held {
        let mut h = Held::default();
        for e in events {
            h.absorb(e);
        }
        h
    }

    fn inputs<'a>(plan: Option<&'a Plan>, held: &'a Held) -> Inputs<'a> {
        Inputs {
            plan,
            held,
            ipv6_kernel: true,
            v6_running: true,
        }
    }

    #[test]
    fn no_plan_isolates_the_lan_leg() {
        let h = Held::default();
        let d = derive(inputs(None, &h));
        assert_eq!(d.firewall, Policy::isolation(contract::LAN_IF, true));
        assert_eq!(d.v4, None);
        assert_eq!(d.service_rule, None);
        assert_eq!(d.ipv6_path, Ipv6Path::None);
        assert!(d.relay.is_empty());
        let d = derive(Inputs {
            ipv6_kernel: false,
            ..inputs(None, &h)
        });
        assert_eq!(d.firewall.v6, None);
    }

    /// A plan with no lease yet is the isolation the agent applied at start:
    /// a plan's arrival must not need the firewall.
    #[test]
    fn a_plan_without_a_lease_only_isolates() {
        let p = plan6();
        let h = held(vec![Event::Address(addr6("2001:db8:1::100", 64))]);
        let d = derive(inputs(Some(&p), &h));
        assert_eq!(d.firewall.v4, Ipv4Policy::default());
        assert_eq!(d.firewall.lan_if, "lan0");
        // IPv6 forwards do not wait for the IPv4 lease.
        assert_eq!(
            d.firewall.v6.as_ref().map(|v| v.addresses.clone()),
            Some(vec!["2001:db8:1::100".parse().unwrap()])
        );
        let empty = Held::default();
        assert_eq!(
            derive(inputs(Some(&p), &empty)).firewall,
            Policy::isolation("lan0", true)
        );
    }

    #[test]
    fn a_lease_brings_its_address_and_the_forwards() {
        let p = plan();
        let h = held(vec![Event::Address(Address::of_lease(lease("192.0.2.50")))]);
        let d = derive(inputs(Some(&p), &h));
        let Some(V4Address::Lease(l)) = &d.v4 else {
            panic!("{:?}", d.v4)
        };
        assert_eq!(l.address, "192.0.2.50".parse::<Ipv4Addr>().unwrap());
        assert_eq!(l.gateway, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(d.firewall.v4.lease, Some(l.address));
        assert_eq!(d.firewall.v4.forwards, p.forwards);
        assert_eq!(d.firewall.v4.gateway_for, p.gateway_for());
        assert_eq!(d.service_rule, p.gateway_for());
    }

    #[test]
    fn an_earlier_agents_address_is_kept_but_forwards_nothing() {
        let p = plan();
        let kept = Address {
            address: "192.0.2.60".parse().unwrap(),
            prefix_len: 24,
            preferred_until: None,
            valid_until: None,
            origin: Origin::Previous,
        };
        let h = held(vec![Event::Address(kept.clone())]);
        let d = derive(inputs(Some(&p), &h));
        assert_eq!(
            d.v4,
            Some(V4Address::Keep {
                address: "192.0.2.60".parse().unwrap(),
                prefix_len: 24
            })
        );
        assert_eq!(d.firewall.v4, Ipv4Policy::default());
        // The server gives it back: a lease of the same address replaces it.
        let h = held(vec![
            Event::Address(kept),
            Event::Address(Address::of_lease(lease("192.0.2.60"))),
        ]);
        assert!(matches!(
            derive(inputs(Some(&p), &h)).v4,
            Some(V4Address::Lease(_))
        ));
    }

    #[test]
    fn ipv6_paths_follow_the_service_and_the_addresses() {
        let mut p = plan6();
        let h = held(vec![
            Event::Address(addr6("fe80::1", 64)),
            Event::Address(addr6("2001:db8:1::100", 64)),
        ]);
        // The service has IPv6: kernel DNAT to it, forwarding on, no relay.
        let d = derive(inputs(Some(&p), &h));
        assert_eq!(d.ipv6_path, Ipv6Path::Kernel);
        assert!(d.ipv6_forwarding);
        assert!(d.relay.is_empty());
        let v6 = d.firewall.v6.unwrap();
        assert_eq!(
            v6.addresses,
            vec!["2001:db8:1::100".parse::<Ipv6Addr>().unwrap()]
        );
        assert_eq!(v6.service, p.service.as_ref().unwrap().address6);
        // IPv4-only service: the relay listens, the ip6 table only isolates.
        p.service.as_mut().unwrap().address6 = None;
        let d = derive(inputs(Some(&p), &h));
        assert_eq!(d.ipv6_path, Ipv6Path::Relay);
        assert!(!d.ipv6_forwarding);
        assert_eq!(d.firewall.v6, Some(Ipv6Policy::default()));
        assert_eq!(d.relay.len(), p.forwards.len());
        // --ipv6 off: nothing over IPv6.
        p.ipv6 = Ipv6Mode::Off;
        let d = derive(inputs(Some(&p), &h));
        assert_eq!(d.ipv6_path, Ipv6Path::None);
        assert!(d.relay.is_empty());
    }

    #[test]
    fn ipv6_addresses_and_routers_are_held_ones() {
        let p = plan6();
        let r: std::net::IpAddr = "fe80::1".parse().unwrap();
        let h = held(vec![
            Event::Address(addr6("2001:db8:1::100", 64)),
            Event::Router { address: r },
        ]);
        let d = derive(inputs(Some(&p), &h));
        assert_eq!(d.v6.len(), 1);
        assert_eq!(d.v6.values().next().unwrap().prefix_len, 64);
        assert_eq!(d.routers6.len(), 1);
        assert!(d.mark_rule6);
        let h = held(vec![
            Event::Address(addr6("2001:db8:1::100", 64)),
            Event::Router { address: r },
            Event::AddressGone {
                address: "2001:db8:1::100".parse().unwrap(),
                prefix_len: 64,
                error: None,
            },
            Event::RouterGone { address: r },
        ]);
        let d = derive(inputs(Some(&p), &h));
        assert!(d.v6.is_empty() && d.routers6.is_empty());
        assert_eq!(d.ipv6_path, Ipv6Path::None);
    }
}
