//! What the firewall is asked to hold, in no backend's terms: a [`Policy`]
//! (the LAN interface and, per family, what is forwarded to whom) and the
//! firewall's own [`Settings`] (its table, mark and counters, fixed for its
//! life). Both are checked here, once, before any backend sees them
//! ([`super::Firewall::apply`]); a backend may take them as valid.
//!
//! A policy is a plain comparable value: the agent keeps the one last
//! applied and applies again only when the one it wants differs.

use std::net::{Ipv4Addr, Ipv6Addr};

use netcontainer_proto::Forward;

use super::error::FirewallError;

/// The default table name.
pub const DEFAULT_TABLE: &str = netcontainer_proto::contract::NFT_TABLE;
/// The default conntrack/packet mark ("NC").
pub const DEFAULT_MARK: u32 = netcontainer_proto::contract::MARK;

/// The firewall's own settings, the same for every policy it applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Our table's name (one per family).
    pub table: String,
    /// Conntrack mark of connections arriving on the LAN interface, copied to
    /// the packet mark of their replies (for `ip rule fwmark <mark>`).
    pub mark: u32,
    /// Keep per-forward packet/byte counters (IPv4). Without them the
    /// counters read zeros; applying is cheaper for big plans.
    pub counters: bool,
    /// Gateway mode: the only networks the service's own connections may
    /// reach on the LAN side (the forward chain drops the rest); empty:
    /// anywhere. Fixed at start (`--egress`): the router is made with it.
    pub egress: Vec<netcontainer_proto::Ipv4Net>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            table: DEFAULT_TABLE.into(),
            mark: DEFAULT_MARK,
            counters: true,
            egress: Vec::new(),
        }
    }
}

impl Settings {
    pub fn validate(&self) -> Result<(), FirewallError> {
        validate_table(&self.table)?;
        if self.mark == 0 {
            return Err(FirewallError::Invalid("mark must not be 0".into()));
        }
        if self.egress.len() > netcontainer_proto::MAX_EGRESS
            || self.egress.iter().any(|n| n.prefix_len() == 0)
        {
            return Err(FirewallError::Invalid(
                "the egress allow-list takes 1 to 256 networks, none of them 0.0.0.0/0".into(),
            ));
        }
        Ok(())
    }
}

/// Everything the firewall should hold, for both families.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The LAN-side interface (the leg with the leased addresses).
    pub lan_if: String,
    pub v4: Ipv4Policy,
    /// `None`: a kernel without IPv6, no IPv6 table at all (and nothing is
    /// isolated over IPv6, since nothing can be forwarded).
    pub v6: Option<Ipv6Policy>,
}

/// What the IPv4 table forwards. The default isolates only: nothing is
/// forwarded to or from the LAN.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ipv4Policy {
    /// The leased address the forwards arrive at; `None`: no lease, the
    /// table only isolates (then there are no forwards and no gateway mode).
    pub lease: Option<Ipv4Addr>,
    pub forwards: Vec<Forward>,
    /// Gateway mode: the service's private address. Forwarded connections
    /// are not masqueraded (the service replies through the router, its
    /// default route), and the service's own connections leave on the LAN
    /// source-NATed to the lease. `None`: masquerade mode.
    pub gateway_for: Option<Ipv4Addr>,
    /// The TCP MSS that SYNs crossing the LAN interface are lowered to
    /// (the LAN's MTU, from option 26, less 40); `None`: no clamp.
    pub mss: Option<u16>,
}

/// What the IPv6 table forwards: the published ports arriving at
/// `addresses` go to `service` (kernel DNAT, masquerade mode). The default
/// (no address or no service address) isolates only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ipv6Policy {
    /// The LAN interface's global IPv6 addresses.
    pub addresses: Vec<Ipv6Addr>,
    /// The service's IPv6 address, when its Docker network has IPv6.
    pub service: Option<Ipv6Addr>,
    /// The forwards to DNAT (those aimed at the service).
    pub forwards: Vec<Forward>,
}

impl Policy {
    /// Nothing forwarded in either family: the LAN reaches nothing through
    /// the router. `ipv6`: the kernel has IPv6 (an IPv6 table is kept).
    pub fn isolation(lan_if: &str, ipv6: bool) -> Policy {
        Policy {
            lan_if: lan_if.to_string(),
            v4: Ipv4Policy::default(),
            v6: ipv6.then(Ipv6Policy::default),
        }
    }

    pub fn validate(&self) -> Result<(), FirewallError> {
        validate_interface(&self.lan_if)?;
        self.v4.validate()?;
        if let Some(v6) = &self.v6 {
            v6.validate()?;
        }
        Ok(())
    }
}

impl Ipv4Policy {
    pub fn validate(&self) -> Result<(), FirewallError> {
        if let Some(a) = self.gateway_for
            && (a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
        {
            return Err(FirewallError::Invalid(format!(
                "service address {a} is not unicast"
            )));
        }
        match self.lease {
            Some(lease) => validate_lease(lease)?,
            // One way to say "isolation only", so that policies compare.
            None if !self.forwards.is_empty() || self.gateway_for.is_some() => {
                return Err(FirewallError::Invalid(
                    "forwards or gateway mode without a lease address".into(),
                ));
            }
            None => {}
        }
        validate_forwards(&self.forwards)
    }
}

impl Ipv6Policy {
    /// Whether the kernel forwards anything over IPv6 with this policy.
    pub fn forwards_anything(&self) -> bool {
        self.service.is_some() && !self.addresses.is_empty() && !self.forwards.is_empty()
    }

    pub fn validate(&self) -> Result<(), FirewallError> {
        validate_forwards(&self.forwards)?;
        for a in self.addresses.iter().chain(&self.service) {
            validate_address6(*a)?;
        }
        Ok(())
    }
}

/// An interface name the kernel accepts and that cannot break out of a
/// backend's batch.
pub fn validate_interface(name: &str) -> Result<(), FirewallError> {
    if name.is_empty()
        || name.len() > 15
        || name.contains(['/', '"', '\0'])
        || name.contains(char::is_whitespace)
    {
        return Err(FirewallError::Invalid(format!(
            "invalid interface name {name:?}"
        )));
    }
    Ok(())
}

/// A table name nft accepts unquoted and that cannot break out of a batch.
pub fn validate_table(t: &str) -> Result<(), FirewallError> {
    if t.is_empty()
        || t.len() > 64
        || !t.starts_with(|c: char| c.is_ascii_alphabetic())
        || !t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(FirewallError::Invalid(format!("invalid table name {t:?}")));
    }
    Ok(())
}

/// Checks every forward and that no two forwards of a protocol overlap
/// (O(n log n), unlike `Plan::validate`, so that big plans stay cheap).
pub fn validate_forwards(forwards: &[Forward]) -> Result<(), FirewallError> {
    netcontainer_proto::validate_forwards(forwards).map_err(FirewallError::Invalid)
}

pub fn validate_lease(lease: Ipv4Addr) -> Result<(), FirewallError> {
    if lease.is_unspecified() || lease.is_broadcast() || lease.is_multicast() {
        return Err(FirewallError::Invalid(format!(
            "lease address {lease} is not unicast"
        )));
    }
    Ok(())
}

/// An address of ours or the service's in the IPv6 table: global unicast.
pub fn validate_address6(a: Ipv6Addr) -> Result<(), FirewallError> {
    if a.is_unspecified() || a.is_multicast() || a.is_loopback() || a.is_unicast_link_local() {
        return Err(FirewallError::Invalid(format!(
            "IPv6 address {a} is not a global unicast"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fixtures::{fwd, lease, many, masquerade, three};

    #[test]
    fn validation() {
        let mut p = masquerade(&three());
        p.validate().unwrap();
        for bad in ["", "a b", "x\"y", "a/b", "sixteen-chars-xx"] {
            p.lan_if = bad.into();
            assert!(p.validate().is_err(), "{bad:?}");
        }
        for bad in ["", "1abc", "a b", "a;b", "a\"b"] {
            assert!(validate_table(bad).is_err(), "{bad:?}");
            let s = Settings {
                table: bad.into(),
                ..Settings::default()
            };
            assert!(s.validate().is_err(), "{bad:?}");
        }
        Settings::default().validate().unwrap();
        let s = Settings {
            mark: 0,
            ..Settings::default()
        };
        assert!(s.validate().is_err());
        assert!(validate_lease(Ipv4Addr::BROADCAST).is_err());
        assert!(validate_lease(Ipv4Addr::new(224, 0, 0, 1)).is_err());
        validate_lease(lease()).unwrap();
        // The same through the policy.
        let mut p = masquerade(&three());
        p.v4.lease = Some(Ipv4Addr::UNSPECIFIED);
        assert!(p.validate().is_err());
        let mut p = masquerade(&three());
        p.v4.gateway_for = Some(Ipv4Addr::BROADCAST);
        assert!(p.validate().is_err());
        // Non-adjacent same-protocol and cross-protocol same ports are fine.
        validate_forwards(&[
            fwd("tcp:80=192.0.2.2:80"),
            fwd("udp:80=192.0.2.2:80"),
            fwd("tcp:81-90=192.0.2.2:81"),
        ])
        .unwrap();
        validate_forwards(&many(10_000)).unwrap();
    }

    #[test]
    fn isolation_has_one_shape() {
        let iso = Policy::isolation("lan0", true);
        iso.validate().unwrap();
        assert_eq!(iso.v4, Ipv4Policy::default());
        assert_eq!(iso.v6, Some(Ipv6Policy::default()));
        assert_eq!(Policy::isolation("lan0", false).v6, None);
        // No lease: no forwards and no gateway mode either.
        let mut p = Policy::isolation("lan0", true);
        p.v4.forwards = three();
        assert!(matches!(p.validate(), Err(FirewallError::Invalid(_))));
        let mut p = Policy::isolation("lan0", true);
        p.v4.gateway_for = Some(Ipv4Addr::new(192, 0, 2, 2));
        assert!(matches!(p.validate(), Err(FirewallError::Invalid(_))));
    }

    #[test]
    fn ipv6_addresses_must_be_global_unicast() {
        for bad in ["::", "::1", "ff02::1", "fe80::1"] {
            assert!(validate_address6(bad.parse().unwrap()).is_err(), "{bad}");
            let v6 = Ipv6Policy {
                addresses: vec!["2001:db8::1".parse().unwrap()],
                service: Some(bad.parse().unwrap()),
                forwards: three(),
            };
            assert!(v6.validate().is_err(), "{bad}");
        }
        validate_address6("2001:db8::1".parse().unwrap()).unwrap();
    }

    #[test]
    fn ipv6_forwards_need_an_address_and_the_service() {
        let a: Ipv6Addr = "2001:db8:1::10".parse().unwrap();
        let svc: Ipv6Addr = "2001:db8:2::2".parse().unwrap();
        let full = Ipv6Policy {
            addresses: vec![a],
            service: Some(svc),
            forwards: three(),
        };
        assert!(full.forwards_anything());
        for p in [
            Ipv6Policy {
                addresses: vec![],
                ..full.clone()
            },
            Ipv6Policy {
                service: None,
                ..full.clone()
            },
            Ipv6Policy {
                forwards: vec![],
                ..full.clone()
            },
        ] {
            assert!(!p.forwards_anything(), "{p:?}");
        }
    }
}
