//! Builders and a recording fake of the core's ports, for the core's unit
//! tests.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netcontainer_lease::timers::LeaseTimes;
use netcontainer_lease::v4::Lease;
use netcontainer_proto::{Forward, Ipv6Mode, Plan, Protocol, ServiceInfo, SourceMode};

use super::ports::{Filter, Listeners, Net};
use crate::family::{Address, Origin};
use crate::firewall::{FirewallError, Policy};
use crate::netconf::{AddressConfig, NetconfError};
use crate::relay;

/// A lease of `address`/24 from 192.0.2.1 for an hour, starting now.
pub fn lease(address: &str) -> Lease {
    Lease {
        address: address.parse().unwrap(),
        prefix_len: 24,
        gateway: Some("192.0.2.1".parse().unwrap()),
        routes: Vec::new(),
        server_id: "192.0.2.1".parse().unwrap(),
        dns: Vec::new(),
        mtu: None,
        times: LeaseTimes::dhcpv4(Instant::now(), Some(Duration::from_secs(3600)), None, None),
    }
}

/// A SLAAC address with a day of lifetime.
pub fn addr6(address: &str, prefix_len: u8) -> Address {
    let until = Some(Instant::now() + Duration::from_secs(86_400));
    Address {
        address: address.parse().unwrap(),
        prefix_len,
        preferred_until: until,
        valid_until: until,
        origin: Origin::Slaac,
    }
}

/// A gateway-mode plan on lan0 forwarding tcp 80 and udp 53 to
/// 198.51.100.2, IPv6 on, the service IPv4 only.
pub fn plan() -> Plan {
    Plan {
        interface: "lan0".into(),
        hostname: Some("web1".into()),
        client_id: None,
        broadcast_flag: false,
        forwards: vec![
            Forward::parse("tcp:80=198.51.100.2:80").unwrap(),
            Forward::parse("udp:53=198.51.100.2:53").unwrap(),
        ],
        source: SourceMode::Gateway,
        service: Some(ServiceInfo {
            name: "web1".into(),
            id: "a".repeat(64),
            hostname: "aaaaaaaaaaaa".into(),
            address: "198.51.100.2".parse().unwrap(),
            address6: None,
        }),
        ipv6: Ipv6Mode::Auto,
        dhcp_servers: Default::default(),
        mdns: None,
    }
}

/// [`plan`] with the service on an IPv6 Docker network.
pub fn plan6() -> Plan {
    let mut p = plan();
    if let Some(s) = p.service.as_mut() {
        s.address6 = Some("2001:db8:d0c::2".parse().unwrap());
    }
    p
}

/// What the core asked of its ports, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Install4(Ipv4Addr, u8),
    Remove4(Ipv4Addr),
    Install6(Ipv6Addr, u8),
    Remove6(Ipv6Addr),
    Router6(Ipv6Addr, bool),
    ServiceRule(Option<Ipv4Addr>),
    MarkRule6(bool),
    Ipv6Forwarding,
    Firewall(Policy),
    Flush(Vec<(Protocol, Ipv4Addr)>),
    FlushAddress(Ipv4Addr),
    Relay(usize),
}

/// Records every call; fails the ones told to.
#[derive(Clone, Default)]
pub struct Recorder {
    pub ops: Arc<Mutex<Vec<Op>>>,
    /// Calls that fail (matched by their kind, see [`Recorder::fail`]).
    failing: Arc<Mutex<Vec<&'static str>>>,
}

impl Recorder {
    /// Takes what was recorded so far.
    pub fn take(&self) -> Vec<Op> {
        std::mem::take(&mut self.ops.lock().unwrap())
    }

    /// Calls of kind `what` ("install4", "firewall", ...) fail from now on.
    pub fn fail(&self, what: &'static str) {
        self.failing.lock().unwrap().push(what);
    }

    pub fn heal(&self) {
        self.failing.lock().unwrap().clear();
    }

    fn record(&self, what: &'static str, op: Op) -> bool {
        self.ops.lock().unwrap().push(op);
        !self.failing.lock().unwrap().contains(&what)
    }

    fn net(&self, what: &'static str, op: Op) -> Result<(), NetconfError> {
        if self.record(what, op) {
            Ok(())
        } else {
            Err(NetconfError::NoSuchInterface(format!("{what} failed")))
        }
    }
}

impl Net for Recorder {
    async fn install4(&self, _: u32, cfg: &AddressConfig) -> Result<(), NetconfError> {
        self.net("install4", Op::Install4(cfg.address, cfg.prefix_len))
    }
    async fn remove4(&self, _: u32, address: Ipv4Addr, _: u8) -> Result<(), NetconfError> {
        self.net("remove4", Op::Remove4(address))
    }
    async fn install6(
        &self,
        _: u32,
        address: Ipv6Addr,
        prefix_len: u8,
        _: Option<Duration>,
        _: Option<Duration>,
    ) -> Result<(), NetconfError> {
        self.net("install6", Op::Install6(address, prefix_len))
    }
    async fn remove6(&self, _: u32, address: Ipv6Addr, _: u8) -> Result<(), NetconfError> {
        self.net("remove6", Op::Remove6(address))
    }
    async fn router6(&self, _: u32, router: Ipv6Addr, add: bool) -> Result<(), NetconfError> {
        self.net("router6", Op::Router6(router, add))
    }
    async fn service_rule(
        &self,
        _: Option<Option<Ipv4Addr>>,
        service: Option<Ipv4Addr>,
    ) -> Result<(), NetconfError> {
        self.net("service_rule", Op::ServiceRule(service))
    }
    async fn mark_rule6(&self, _: Option<bool>, on: bool) -> Result<(), NetconfError> {
        self.net("mark_rule6", Op::MarkRule6(on))
    }
    fn ipv6_forwarding(&self) -> Result<(), String> {
        if self.record("ipv6_forwarding", Op::Ipv6Forwarding) {
            Ok(())
        } else {
            Err("read-only /proc/sys".into())
        }
    }
}

impl Filter for Recorder {
    async fn apply(&self, policy: &Policy) -> Result<(), FirewallError> {
        // "firewall6": every policy with IPv6 addresses fails (a bad one).
        let v6 = policy.v6.as_ref().is_some_and(|v| !v.addresses.is_empty());
        let fails6 = v6 && self.failing.lock().unwrap().contains(&"firewall6");
        if self.record("firewall", Op::Firewall(policy.clone())) && !fails6 {
            Ok(())
        } else {
            Err(FirewallError::Invalid("firewall failed".into()))
        }
    }
    async fn flush_conntrack_to(
        &self,
        targets: &[(Protocol, Ipv4Addr)],
    ) -> Result<u64, FirewallError> {
        self.record("flush", Op::Flush(targets.to_vec()));
        Ok(targets.len() as u64)
    }
    async fn flush_conntrack_of(&self, address: Ipv4Addr) -> Result<u64, FirewallError> {
        self.record("flush", Op::FlushAddress(address));
        Ok(0)
    }
}

impl Listeners for Recorder {
    fn update(&mut self, want: &BTreeMap<relay::Key, SocketAddrV4>) -> Vec<String> {
        if self.record("relay", Op::Relay(want.len())) {
            Vec::new()
        } else {
            vec!["relay failed".into()]
        }
    }
}
