//! The nft backend's ruleset as data: one table with its chains, typed
//! rules and the sets and maps they look up. [`super::build`] makes it from
//! a policy, [`super::render()`] writes it as nft's JSON batch, and
//! [`counting_sets`] names the sets whose counters [`super::counters`]
//! reads back. Only the renderer knows nft's syntax.

use std::net::IpAddr;

use netcontainer_proto::Protocol;

/// The protocols a forward can use, in the order their maps are built.
pub const PROTOCOLS: [Protocol; 2] = [Protocol::Tcp, Protocol::Udp];

/// Address family of a table. IPv6 has a table of its own, a twin of the
/// IPv4 one ([`super::build::build6`]) applied in the same batch; matches and statements
/// on addresses take the family of their address, so the rules stay the
/// same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    /// Every family the agent may have a table in (what `remove` looks for).
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];
}

/// A table: the unit a backend replaces atomically and removes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Table {
    pub family: Family,
    pub name: String,
}

/// The whole content of our table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    pub table: Table,
    /// Created before any rule (rules refer to them), in this order.
    pub sets: Vec<Set>,
    /// In this order; each holds its rules in evaluation order.
    pub chains: Vec<Chain>,
}

impl Ruleset {
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|s| s.name == name)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Nat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Postrouting,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainPolicy {
    Accept,
}

/// A base chain on a hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: &'static str,
    pub kind: ChainType,
    pub hook: Hook,
    pub priority: i32,
    pub policy: ChainPolicy,
    pub rules: Vec<Rule>,
}

/// All matches must hold; then the statement (if any) runs. A rule without
/// statement only runs the counters of the set elements its lookups hit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub matches: Vec<Match>,
    pub statement: Option<Statement>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtState {
    New,
    Established,
    Related,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtStatus {
    Dnat,
    Confirmed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtDirection {
    Reply,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Match {
    /// The input interface's name.
    Iifname(Cmp, String),
    /// The output interface's name.
    Oifname(Cmp, String),
    /// The destination address (of the address's family).
    Daddr(IpAddr),
    /// The destination address is one of these (one family, at least two).
    DaddrIn(Vec<IpAddr>),
    /// The destination address is in one of these IPv4 networks (address,
    /// prefix length; at least one).
    DaddrInNets(Vec<(std::net::Ipv4Addr, u8)>),
    /// The source address (of the address's family).
    Saddr(IpAddr),
    /// The destination port.
    Dport(Protocol, u16),
    /// The transport protocol.
    L4Proto(Protocol),
    /// The destination port is in the named set or map.
    DportIn(Protocol, String),
    /// The connection is in one of these states.
    CtState(Vec<CtState>),
    /// The connection has this status bit.
    CtStatus(CtStatus),
    CtMark(u32),
    CtDirection(CtDirection),
    /// The original direction's destination port is in the named set or map.
    CtOriginalDportIn(String),
    /// A TCP segment with SYN set (SYN or SYN-ACK).
    TcpSyn,
    /// The TCP MSS option is larger than this.
    MaxsegAbove(u16),
}

/// Where a value comes from: a constant or a map keyed by the packet's
/// destination port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source<T> {
    Fixed(T),
    DportMap(Protocol, String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Statement {
    /// Sets the connection's mark.
    SetCtMark(u32),
    /// Copies the connection's mark to the packet.
    SetMarkFromCt,
    Dnat {
        addr: Source<IpAddr>,
        /// `None`: the port stays.
        port: Option<Source<u16>>,
    },
    Masquerade,
    /// Source NAT to this address.
    Snat(IpAddr),
    /// Lowers the TCP MSS option to this (no verdict: the chain goes on).
    SetMaxseg(u16),
    Accept,
    Drop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    /// A port.
    InetService,
    Ipv4Addr,
    Ipv6Addr,
}

impl DataType {
    /// The address type of a family.
    pub fn addr(family: Family) -> DataType {
        match family {
            Family::Ipv4 => DataType::Ipv4Addr,
            Family::Ipv6 => DataType::Ipv6Addr,
        }
    }
}

/// A set (no `data`) or map of ports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    pub name: String,
    pub key: DataType,
    /// `Some`: a map to this type.
    pub data: Option<DataType>,
    /// Keys may be ranges.
    pub interval: bool,
    /// Each element has its own packet/byte counter.
    pub counter: bool,
    /// Never empty (nft refuses an empty element list, and an unused set
    /// is left out).
    pub elements: Vec<Element>,
}

/// One set or map element. Kept small and `Copy`: a big plan has tens of
/// thousands of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Element {
    /// A port or a range of ports (a set element).
    Ports(u16, u16),
    /// `port : port`
    PortToPort(u16, u16),
    /// `port-or-range : address`
    PortsToAddr(u16, u16, IpAddr),
}

impl Element {
    /// The element without its data.
    pub fn key_only(self) -> Element {
        match self {
            Element::Ports(start, end) | Element::PortsToAddr(start, end, _) => {
                Element::Ports(start, end)
            }
            Element::PortToPort(port, _) => Element::Ports(port, port),
        }
    }
}

/// The maps and sets that carry the per-forward counters (every forward's
/// ports are in exactly one of them; `<p>_addr_move` never has counters).
pub fn counting_sets(p: Protocol) -> [String; 5] {
    [
        format!("{p}_port_move"),
        format!("{p}_addr_keep"),
        format!("{p}_addr_keep_range"),
        format!("{p}_keep"),
        format!("{p}_keep_range"),
    ]
}
