//! Inputs shared by the firewall module's unit tests.

use std::net::Ipv4Addr;

use netcontainer_proto::Forward;

use super::policy::{Ipv4Policy, Ipv6Policy, Policy};
use super::sample::sample_forwards;

pub fn fwd(s: &str) -> Forward {
    Forward::parse(s).unwrap()
}

/// The leased address the tests render for.
pub fn lease() -> Ipv4Addr {
    Ipv4Addr::new(198, 51, 100, 10)
}

/// One of each kind: a single port, a kept range, a moved port.
pub fn three() -> Vec<Forward> {
    vec![
        fwd("tcp:80=192.0.2.2:8080"),
        fwd("tcp:7000-7009=192.0.2.2:7000"),
        fwd("udp:5000=192.0.2.2:6000"),
    ]
}

/// The benchmark's mix, over 50 target addresses.
pub fn many(n: usize) -> Vec<Forward> {
    sample_forwards(n, 50)
}

/// `forwards` to the test lease on lan0, in masquerade mode, with an
/// isolating IPv6 table.
pub fn masquerade(forwards: &[Forward]) -> Policy {
    Policy {
        lan_if: "lan0".into(),
        v4: Ipv4Policy {
            lease: Some(lease()),
            forwards: forwards.to_vec(),
            gateway_for: None,
            mss: None,
        },
        v6: Some(Ipv6Policy::default()),
    }
}
