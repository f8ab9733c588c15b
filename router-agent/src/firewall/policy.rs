//! PLACEHOLDER (lead): replaced by the firewall helper's policy.rs at merge.
use std::net::{Ipv4Addr, Ipv6Addr};

use netcontainer_proto::Forward;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub lan_if: String,
    pub v4: Ipv4Policy,
    pub v6: Option<Ipv6Policy>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ipv4Policy {
    pub lease: Option<Ipv4Addr>,
    pub forwards: Vec<Forward>,
    pub gateway_for: Option<Ipv4Addr>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ipv6Policy {
    pub addresses: Vec<Ipv6Addr>,
    pub service: Option<Ipv6Addr>,
    pub forwards: Vec<Forward>,
}

impl Ipv6Policy {
    pub fn forwards_anything(&self) -> bool {
        self.service.is_some() && !self.addresses.is_empty() && !self.forwards.is_empty()
    }
}

impl Policy {
    pub fn isolation(lan_if: &str, ipv6: bool) -> Policy {
        Policy {
            lan_if: lan_if.to_string(),
            v4: Ipv4Policy::default(),
            v6: ipv6.then(Ipv6Policy::default),
        }
    }
}

// PLACEHOLDER adapter until the firewall helper's `Firewall::apply(&Policy)`.
impl super::Firewall {
    pub async fn apply_policy(&self, p: &Policy) -> Result<(), super::FirewallError> {
        let v6 = match &p.v6 {
            Some(v) => super::V6Rules {
                addresses: v.addresses.clone(),
                service: v.service,
                forwards: v.forwards.clone(),
            },
            None => super::V6Rules::default(),
        };
        match p.v4.lease {
            Some(l) => {
                self.apply(&p.lan_if, &p.v4.forwards, l, p.v4.gateway_for, &v6)
                    .await
            }
            None => self.isolate(&p.lan_if, &v6).await,
        }
    }
}
