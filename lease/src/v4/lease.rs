//! A DHCPv4 lease: what an ACK granted, read by [`super::wire`] and held
//! by [`super::client`] (a module of its own so that neither imports the
//! other for it).

use std::net::Ipv4Addr;
use std::time::Instant;

use crate::timers::LeaseTimes;

/// A lease granted by a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// Default gateway: the first router (option 3), or the 0.0.0.0/0 entry of
    /// option 121 when that is present (RFC 3442: then option 3 is ignored).
    pub gateway: Option<Ipv4Addr>,
    /// Classless static routes (option 121) other than the default: (destination, prefix length, router).
    /// A router of 0.0.0.0 means the destination is on-link (RFC 3442).
    pub routes: Vec<(Ipv4Addr, u8, Ipv4Addr)>,
    pub server_id: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    /// The interface MTU (option 26), when the server gave a legal one.
    pub mtu: Option<u16>,
    /// The lease time (`valid`, `None` for an infinite lease) and T1/T2
    /// after validation ([`crate::timers::rfc2131_timers`]), counted from
    /// when the REQUEST that earned this ACK was sent.
    pub times: LeaseTimes,
}

impl Lease {
    pub fn renew_at(&self) -> Option<Instant> {
        self.times.renew_at()
    }
    pub fn rebind_at(&self) -> Option<Instant> {
        self.times.rebind_at()
    }
    pub fn expires_at(&self) -> Option<Instant> {
        self.times.expires_at()
    }
}
