//! The agent's ruleset as data: one table with its chains, typed rules and
//! the sets and maps they look up, built from `(config, forwards, lease
//! address)` by [`build`], a pure function. A backend ([`super::nft`])
//! turns it into its own batch; nothing here knows nft's syntax.
//!
//! The layout (which maps and sets exist, which rules use them, where the
//! counters live) is explained in the module doc of [`super`].

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netcontainer_proto::{Forward, Protocol};

use super::FirewallError;

/// The default table name.
pub const DEFAULT_TABLE: &str = netcontainer_proto::contract::NFT_TABLE;
/// The default conntrack/packet mark ("NC").
pub const DEFAULT_MARK: u32 = netcontainer_proto::contract::MARK;

/// The protocols a forward can use, in the order their maps are built.
pub const PROTOCOLS: [Protocol; 2] = [Protocol::Tcp, Protocol::Udp];

/// Address family of a table. IPv6 has a table of its own, a twin of the
/// IPv4 one ([`build6`]) applied in the same batch; matches and statements
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

/// What the rendered table depends on besides the forwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesetConfig {
    /// The LAN-side interface (macvlan with the leased address).
    pub lan_if: String,
    /// Our table's name.
    pub table: String,
    /// Conntrack mark of connections arriving on `lan_if`, copied to the
    /// packet mark of their replies (for `ip rule fwmark <mark>`).
    pub mark: u32,
    /// Keep per-forward packet/byte counters (a counter in each element of
    /// the DNAT maps, and one lookup rule per map in the forward chain).
    /// Without them the counters read zeros; applying is cheaper for big
    /// plans.
    pub counters: bool,
    /// Gateway mode: the service's private address. Forwarded connections
    /// are not masqueraded (the service replies through the router, its
    /// default route), and the service's own connections leave on `lan_if`
    /// source-NATed to the lease. `None`: masquerade mode.
    pub gateway_for: Option<Ipv4Addr>,
}

impl Default for RulesetConfig {
    fn default() -> Self {
        RulesetConfig {
            lan_if: "lan0".into(),
            table: DEFAULT_TABLE.into(),
            mark: DEFAULT_MARK,
            counters: true,
            gateway_for: None,
        }
    }
}

impl RulesetConfig {
    pub fn validate(&self) -> Result<(), FirewallError> {
        let l = &self.lan_if;
        if l.is_empty()
            || l.len() > 15
            || l.contains(['/', '"', '\0'])
            || l.contains(char::is_whitespace)
        {
            return Err(FirewallError::Invalid(format!(
                "invalid interface name {l:?}"
            )));
        }
        validate_table(&self.table)?;
        if self.mark == 0 {
            return Err(FirewallError::Invalid("mark must not be 0".into()));
        }
        if let Some(a) = self.gateway_for
            && (a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
        {
            return Err(FirewallError::Invalid(format!(
                "service address {a} is not unicast"
            )));
        }
        Ok(())
    }
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
pub enum Policy {
    Accept,
}

/// A base chain on a hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: &'static str,
    pub kind: ChainType,
    pub hook: Hook,
    pub priority: i32,
    pub policy: Policy,
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
    fn key_only(self) -> Element {
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

/// Maps and sets of one protocol, as element lists.
#[derive(Default)]
struct ProtoMaps {
    addr_move: Vec<Element>,
    /// Distinct target addresses of `addr_move` (the map is skipped when
    /// there is only one: `dnat to ADDR : tcp dport map @port_move`).
    move_targets: BTreeSet<IpAddr>,
    port_move: Vec<Element>,
    addr_keep: Vec<Element>,
    addr_keep_range: Vec<Element>,
    /// Distinct target addresses of the port-keeping forwards (with only
    /// one, sets of ports replace the address maps:
    /// `tcp dport @keep dnat to ADDR`).
    keep_targets: BTreeSet<IpAddr>,
}

fn proto_maps(forwards: &[Forward], p: Protocol, target: &dyn Fn(Ipv4Addr) -> IpAddr) -> ProtoMaps {
    let mut m = ProtoMaps::default();
    for f in forwards.iter().filter(|f| f.protocol == p) {
        let (start, end, addr) = (f.public_port, f.public_port_end, target(f.target_address));
        if f.target_port == start {
            m.keep_targets.insert(addr);
            let elem = Element::PortsToAddr(start, end, addr);
            if start == end {
                m.addr_keep.push(elem);
            } else {
                m.addr_keep_range.push(elem);
            }
        } else {
            m.move_targets.insert(addr);
            for off in 0..=(end - start) {
                let port = start + off;
                // Validation guarantees target_port + len - 1 <= 65535; stay
                // total anyway (build is pure and never panics).
                let target = f.target_port.saturating_add(off);
                m.addr_move.push(Element::PortsToAddr(port, port, addr));
                m.port_move.push(Element::PortToPort(port, target));
            }
        }
    }
    m
}

/// The only element of a set of one.
fn only<T: Copy + Ord>(s: &BTreeSet<T>) -> Option<T> {
    match (s.len(), s.first()) {
        (1, Some(x)) => Some(*x),
        _ => None,
    }
}

/// Builds the table holding `forwards` to `lease` on `cfg.lan_if`. Pure and
/// total: it validates nothing beyond what types guarantee
/// ([`super::Firewall::apply`] validates first).
pub fn build(cfg: &RulesetConfig, forwards: &[Forward], lease: Ipv4Addr) -> Ruleset {
    build_family(
        cfg,
        Family::Ipv4,
        forwards,
        Match::Daddr(lease.into()),
        &IpAddr::V4,
    )
}

/// The IPv6 twin of [`build`]: `forwards` arriving at any of `leases` (the
/// LAN interface's global IPv6 addresses) are DNATed to `service`, the
/// service's IPv6 address, port for port as over IPv4. Always masquerade
/// mode (the service's IPv6 default route is Docker's), and without
/// counters (status counts IPv4). With no address or no service address
/// the table only isolates: nothing is forwarded to or from the LAN (the
/// relay, if any, answers on the router itself).
pub fn build6(
    cfg: &RulesetConfig,
    forwards: &[Forward],
    leases: &[Ipv6Addr],
    service: Option<Ipv6Addr>,
) -> Ruleset {
    let cfg = RulesetConfig {
        gateway_for: None,
        counters: false,
        ..cfg.clone()
    };
    let (forwards, daddr) = match (leases, service) {
        ([one], Some(_)) => (forwards, Match::Daddr((*one).into())),
        ([_, _, ..], Some(_)) => (
            forwards,
            Match::DaddrIn(leases.iter().map(|a| (*a).into()).collect()),
        ),
        _ => (&[][..], Match::DaddrIn(Vec::new())),
    };
    let service = service.unwrap_or(Ipv6Addr::UNSPECIFIED);
    build_family(&cfg, Family::Ipv6, forwards, daddr, &|_| service.into())
}

/// The table of one family: `forwards` arriving on `cfg.lan_if` at `daddr`
/// (the lease) go to `target(forward's target)`.
fn build_family(
    cfg: &RulesetConfig,
    family: Family,
    forwards: &[Forward],
    daddr: Match,
    target: &dyn Fn(Ipv4Addr) -> IpAddr,
) -> Ruleset {
    let addr_type = DataType::addr(family);
    let lan = || cfg.lan_if.clone();
    let from_lan = || Match::Iifname(Cmp::Eq, lan());
    let our_dnat = || [Match::CtMark(cfg.mark), Match::CtStatus(CtStatus::Dnat)];

    let mut sets = Vec::new();
    let mut nat_rules = Vec::new();
    let mut count_rules = Vec::new();
    for p in PROTOCOLS {
        let maps = proto_maps(forwards, p, target);
        let mut add_set = |name: &str,
                           data: Option<DataType>,
                           interval: bool,
                           counter: bool,
                           elements: Vec<Element>| {
            if counter {
                // Later packets (both directions) of our DNATed
                // connections; the first one was counted by the DNAT
                // rule's lookup (the conntrack entry is confirmed only
                // when that packet leaves).
                let mut matches = our_dnat().to_vec();
                matches.push(Match::CtStatus(CtStatus::Confirmed));
                matches.push(Match::L4Proto(p));
                matches.push(Match::CtOriginalDportIn(name.to_string()));
                count_rules.push(Rule {
                    matches,
                    statement: None,
                });
            }
            sets.push(Set {
                name: name.to_string(),
                key: DataType::InetService,
                data,
                interval,
                counter,
                elements,
            });
        };
        let dnat_head = || vec![from_lan(), daddr.clone(), Match::L4Proto(p)];
        let [port_move, addr_keep, addr_keep_range, keep, keep_range] = counting_sets(p);
        if !maps.port_move.is_empty() {
            let addr = match only(&maps.move_targets) {
                Some(only) => Source::Fixed(only),
                None => {
                    let a = format!("{p}_addr_move");
                    add_set(&a, Some(addr_type), false, false, maps.addr_move);
                    Source::DportMap(p, a)
                }
            };
            add_set(
                &port_move,
                Some(DataType::InetService),
                false,
                cfg.counters,
                maps.port_move,
            );
            nat_rules.push(Rule {
                matches: dnat_head(),
                statement: Some(Statement::Dnat {
                    addr,
                    port: Some(Source::DportMap(p, port_move)),
                }),
            });
        }
        let keep_target = only(&maps.keep_targets);
        for (interval, elements, map_name, set_name) in [
            (false, maps.addr_keep, addr_keep, keep),
            (true, maps.addr_keep_range, addr_keep_range, keep_range),
        ] {
            if elements.is_empty() {
                continue;
            }
            let mut matches = dnat_head();
            let addr = if let Some(addr) = keep_target {
                let keys = elements.iter().map(|e| e.key_only()).collect();
                add_set(&set_name, None, interval, cfg.counters, keys);
                matches.push(Match::DportIn(p, set_name));
                Source::Fixed(addr)
            } else {
                add_set(&map_name, Some(addr_type), interval, cfg.counters, elements);
                Source::DportMap(p, map_name)
            };
            nat_rules.push(Rule {
                matches,
                statement: Some(Statement::Dnat { addr, port: None }),
            });
        }
    }

    let rule = |matches: Vec<Match>, statement: Statement| Rule {
        matches,
        statement: Some(statement),
    };
    // mark: new connections from the LAN get the ct mark; their packets
    // arriving elsewhere (replies from the service side) get the packet mark.
    let mark_rules = vec![
        rule(
            vec![from_lan(), Match::CtState(vec![CtState::New])],
            Statement::SetCtMark(cfg.mark),
        ),
        rule(
            vec![Match::Iifname(Cmp::Ne, lan()), Match::CtMark(cfg.mark)],
            Statement::SetMarkFromCt,
        ),
    ];
    // forward: the counting lookups first (they never decide). From the LAN
    // only DNATed connections (and their related traffic) pass; everything
    // else from the LAN is dropped.
    let mut forward_rules = count_rules;
    let to_lan = || Match::Oifname(Cmp::Eq, lan());
    let mut reply = vec![to_lan()];
    reply.extend(our_dnat());
    reply.push(Match::CtDirection(CtDirection::Reply));
    forward_rules.extend([
        rule(
            vec![
                from_lan(),
                Match::CtState(vec![CtState::Established, CtState::Related]),
            ],
            Statement::Accept,
        ),
        rule(
            vec![from_lan(), Match::CtStatus(CtStatus::Dnat)],
            Statement::Accept,
        ),
        rule(vec![from_lan()], Statement::Drop),
        // Toward the LAN: only replies of our DNATed connections. The
        // router is no gateway from the Docker side onto the LAN: another
        // container routing the LAN via the router (with its own or a
        // spoofed source) gets nothing through.
        rule(reply, Statement::Accept),
    ]);
    // Gateway mode: the service's own traffic, and nobody else's (another
    // container routing via the router gets nothing through).
    if let Some(service) = cfg.gateway_for {
        forward_rules.push(rule(
            vec![
                Match::Iifname(Cmp::Ne, lan()),
                to_lan(),
                Match::Saddr(service.into()),
            ],
            Statement::Accept,
        ));
    }
    forward_rules.push(rule(vec![to_lan()], Statement::Drop));
    // postrouting: in masquerade mode, masquerade our DNATed connections
    // toward the service (its replies then come back to the router); in
    // gateway mode they keep the client's address (the service's default
    // route brings the replies back), and the service's own connections
    // leave from the lease.
    let post_rules = match (cfg.gateway_for, &daddr) {
        (Some(service), Match::Daddr(lease)) => vec![rule(
            vec![to_lan(), Match::Saddr(service.into())],
            Statement::Snat(*lease),
        )],
        _ => {
            let mut masq = vec![Match::Oifname(Cmp::Ne, lan())];
            masq.extend(our_dnat());
            vec![rule(masq, Statement::Masquerade)]
        }
    };
    // input: the "who am I?" endpoint answers the Docker side only.
    let input_rules = vec![rule(
        vec![
            from_lan(),
            Match::L4Proto(Protocol::Tcp),
            Match::Dport(Protocol::Tcp, netcontainer_proto::contract::WHOAMI_PORT),
        ],
        Statement::Drop,
    )];
    let chain = |name, kind, hook, priority, rules| Chain {
        name,
        kind,
        hook,
        priority,
        policy: Policy::Accept,
        rules,
    };
    Ruleset {
        table: Table {
            family,
            name: cfg.table.clone(),
        },
        sets,
        chains: vec![
            chain(
                "mark",
                ChainType::Filter,
                Hook::Prerouting,
                -150,
                mark_rules,
            ),
            chain(
                "prerouting",
                ChainType::Nat,
                Hook::Prerouting,
                -100,
                nat_rules,
            ),
            chain("input", ChainType::Filter, Hook::Input, 0, input_rules),
            chain(
                "forward",
                ChainType::Filter,
                Hook::Forward,
                0,
                forward_rules,
            ),
            chain(
                "postrouting",
                ChainType::Nat,
                Hook::Postrouting,
                100,
                post_rules,
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fixtures::{fwd, lease, three};
    use crate::firewall::sample::sample_forwards;

    fn rules<'a>(rs: &'a Ruleset, chain: &str) -> &'a [Rule] {
        &rs.chain(chain).unwrap().rules
    }

    #[test]
    fn one_ipv4_table_with_five_hooked_chains() {
        let rs = build(&RulesetConfig::default(), &three(), lease());
        assert_eq!(
            rs.table,
            Table {
                family: Family::Ipv4,
                name: DEFAULT_TABLE.into()
            }
        );
        let chains: Vec<_> = rs
            .chains
            .iter()
            .map(|c| (c.name, c.kind, c.hook, c.priority, c.policy))
            .collect();
        assert_eq!(
            chains,
            [
                (
                    "mark",
                    ChainType::Filter,
                    Hook::Prerouting,
                    -150,
                    Policy::Accept
                ),
                (
                    "prerouting",
                    ChainType::Nat,
                    Hook::Prerouting,
                    -100,
                    Policy::Accept
                ),
                ("input", ChainType::Filter, Hook::Input, 0, Policy::Accept),
                (
                    "forward",
                    ChainType::Filter,
                    Hook::Forward,
                    0,
                    Policy::Accept
                ),
                (
                    "postrouting",
                    ChainType::Nat,
                    Hook::Postrouting,
                    100,
                    Policy::Accept
                ),
            ]
        );
        // Every lookup names a set of the table.
        fn map<T>(s: &Source<T>) -> Option<String> {
            match s {
                Source::DportMap(_, m) => Some(m.clone()),
                Source::Fixed(_) => None,
            }
        }
        for r in rs.chains.iter().flat_map(|c| &c.rules) {
            let mut names: Vec<String> = r
                .matches
                .iter()
                .filter_map(|m| match m {
                    Match::DportIn(_, s) | Match::CtOriginalDportIn(s) => Some(s.clone()),
                    _ => None,
                })
                .collect();
            if let Some(Statement::Dnat { addr, port }) = &r.statement {
                names.extend(map(addr));
                names.extend(port.as_ref().and_then(map));
            }
            for n in names {
                assert!(rs.set(&n).is_some(), "{n}");
            }
        }
        assert!(rs.sets.iter().all(|s| !s.elements.is_empty()));
    }

    #[test]
    fn forward_chain_lets_only_our_dnat_through_both_ways() {
        let cfg = RulesetConfig::default();
        let rs = build(&cfg, &three(), lease());
        let fwd = rules(&rs, "forward");
        let n = fwd.len();
        let lan = || "lan0".to_string();
        assert_eq!(
            fwd[n - 5..],
            [
                Rule {
                    matches: vec![
                        Match::Iifname(Cmp::Eq, lan()),
                        Match::CtState(vec![CtState::Established, CtState::Related])
                    ],
                    statement: Some(Statement::Accept)
                },
                Rule {
                    matches: vec![
                        Match::Iifname(Cmp::Eq, lan()),
                        Match::CtStatus(CtStatus::Dnat)
                    ],
                    statement: Some(Statement::Accept)
                },
                Rule {
                    matches: vec![Match::Iifname(Cmp::Eq, lan())],
                    statement: Some(Statement::Drop)
                },
                Rule {
                    matches: vec![
                        Match::Oifname(Cmp::Eq, lan()),
                        Match::CtMark(DEFAULT_MARK),
                        Match::CtStatus(CtStatus::Dnat),
                        Match::CtDirection(CtDirection::Reply)
                    ],
                    statement: Some(Statement::Accept)
                },
                Rule {
                    matches: vec![Match::Oifname(Cmp::Eq, lan())],
                    statement: Some(Statement::Drop)
                },
            ]
        );
        // Before them only counting lookups, which never decide.
        assert!(fwd[..n - 5].iter().all(|r| r.statement.is_none()));
    }

    #[test]
    fn gateway_mode_keeps_clients_and_lets_only_the_service_out() {
        let svc = Ipv4Addr::new(192, 0, 2, 3);
        let cfg = RulesetConfig {
            gateway_for: Some(svc),
            ..RulesetConfig::default()
        };
        let rs = build(&cfg, &three(), lease());
        let lan = || "lan0".to_string();
        // No masquerade: the service sees the client; its own connections
        // leave on the LAN from the lease.
        assert_eq!(
            rules(&rs, "postrouting"),
            [Rule {
                matches: vec![Match::Oifname(Cmp::Eq, lan()), Match::Saddr(svc.into())],
                statement: Some(Statement::Snat(lease().into()))
            }]
        );
        // Toward the LAN: replies of our DNAT, then the service's own
        // traffic, then nothing.
        let fwd = rules(&rs, "forward");
        let n = fwd.len();
        assert_eq!(
            fwd[n - 2..],
            [
                Rule {
                    matches: vec![
                        Match::Iifname(Cmp::Ne, lan()),
                        Match::Oifname(Cmp::Eq, lan()),
                        Match::Saddr(svc.into())
                    ],
                    statement: Some(Statement::Accept)
                },
                Rule {
                    matches: vec![Match::Oifname(Cmp::Eq, lan())],
                    statement: Some(Statement::Drop)
                },
            ]
        );
        // Masquerade mode has neither rule.
        let masq = build(&RulesetConfig::default(), &three(), lease());
        assert!(
            rules(&masq, "forward")
                .iter()
                .all(|r| !r.matches.iter().any(|m| matches!(m, Match::Saddr(_))))
        );
        assert_eq!(
            rules(&masq, "postrouting")[0].statement,
            Some(Statement::Masquerade)
        );
        // Both: the who-am-I port is dropped from the LAN.
        for rs in [&rs, &masq] {
            assert_eq!(
                rules(rs, "input"),
                [Rule {
                    matches: vec![
                        Match::Iifname(Cmp::Eq, lan()),
                        Match::L4Proto(Protocol::Tcp),
                        Match::Dport(Protocol::Tcp, netcontainer_proto::contract::WHOAMI_PORT)
                    ],
                    statement: Some(Statement::Drop)
                }]
            );
        }
        let mut bad = cfg.clone();
        bad.gateway_for = Some(Ipv4Addr::BROADCAST);
        assert!(bad.validate().is_err());
    }

    #[test]
    fn sets_follow_the_targets() {
        let cfg = RulesetConfig::default();
        // One target address: a constant, sets of ports for the kept ports.
        let rs = build(&cfg, &three(), lease());
        let names: Vec<&str> = rs.sets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["tcp_port_move", "tcp_keep_range", "udp_port_move"]);
        assert_eq!(
            rs.set("tcp_keep_range").unwrap().elements,
            [Element::Ports(7000, 7009)]
        );
        assert!(rs.set("tcp_keep_range").unwrap().interval);
        // Several: address maps.
        let rs = build(
            &cfg,
            &[
                fwd("tcp:80=192.0.2.3:8080"),
                fwd("tcp:81=192.0.2.5:8081"),
                fwd("udp:53=192.0.2.5:53"),
                fwd("udp:54=192.0.2.6:54"),
            ],
            lease(),
        );
        let names: Vec<&str> = rs.sets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["tcp_addr_move", "tcp_port_move", "udp_addr_keep"]);
        let a = |o: u8| IpAddr::V4(Ipv4Addr::new(192, 0, 2, o));
        assert_eq!(
            rs.set("tcp_addr_move").unwrap().elements,
            [
                Element::PortsToAddr(80, 80, a(3)),
                Element::PortsToAddr(81, 81, a(5))
            ]
        );
        assert!(!rs.set("tcp_addr_move").unwrap().counter);
        assert_eq!(
            rs.set("udp_addr_keep").unwrap().elements,
            [
                Element::PortsToAddr(53, 53, a(5)),
                Element::PortsToAddr(54, 54, a(6))
            ]
        );
        // Counters off: no counter anywhere, no counting rule.
        let rs = build(
            &RulesetConfig {
                counters: false,
                ..cfg
            },
            &sample_forwards(100, 3),
            lease(),
        );
        assert!(rs.sets.iter().all(|s| !s.counter));
        assert_eq!(rules(&rs, "forward").len(), 5);
    }

    #[test]
    fn validation() {
        let mut cfg = RulesetConfig::default();
        cfg.validate().unwrap();
        for bad in ["", "a b", "x\"y", "a/b", "sixteen-chars-xx"] {
            cfg.lan_if = bad.into();
            assert!(cfg.validate().is_err(), "{bad:?}");
        }
        cfg.lan_if = "lan0".into();
        for bad in ["", "1abc", "a b", "a;b", "a\"b"] {
            assert!(validate_table(bad).is_err(), "{bad:?}");
        }
        cfg.mark = 0;
        assert!(cfg.validate().is_err());
        assert!(validate_lease(Ipv4Addr::BROADCAST).is_err());
        assert!(validate_lease(Ipv4Addr::new(224, 0, 0, 1)).is_err());
        validate_lease(lease()).unwrap();
    }

    #[test]
    fn the_ipv6_twin_dnats_to_the_service_on_every_address() {
        let a: Ipv6Addr = "2001:db8:1::10".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1::11".parse().unwrap();
        let svc: Ipv6Addr = "2001:db8:2::2".parse().unwrap();
        let cfg = RulesetConfig {
            gateway_for: Some(Ipv4Addr::new(192, 0, 2, 2)),
            ..RulesetConfig::default()
        };
        let rs = build6(&cfg, &three(), &[a, b], Some(svc));
        assert_eq!(rs.table.family, Family::Ipv6);
        assert_eq!(rs.table.name, DEFAULT_TABLE);
        let nat = rules(&rs, "prerouting");
        assert_eq!(nat.len(), 3, "{nat:?}");
        for r in nat {
            assert!(
                r.matches
                    .contains(&Match::DaddrIn(vec![a.into(), b.into()])),
                "{r:?}"
            );
            match &r.statement {
                Some(Statement::Dnat {
                    addr: Source::Fixed(x),
                    ..
                }) => assert_eq!(*x, IpAddr::V6(svc)),
                other => panic!("not a DNAT to the service: {other:?}"),
            }
        }
        // Masquerade toward the service whatever the IPv4 mode; no
        // counters (status counts IPv4); the LAN isolation as for IPv4.
        assert!(matches!(
            rules(&rs, "postrouting")[0].statement,
            Some(Statement::Masquerade)
        ));
        assert!(rs.sets.iter().all(|s| !s.counter));
        let forward = rules(&rs, "forward");
        assert!(
            !forward
                .iter()
                .any(|r| r.matches.iter().any(|m| matches!(m, Match::Saddr(_))))
        );
        assert_eq!(
            forward.last().unwrap().statement,
            Some(Statement::Drop),
            "toward the LAN: only replies"
        );
        // One address: a plain match.
        let one = build6(&cfg, &three(), &[a], Some(svc));
        assert!(
            rules(&one, "prerouting")[0]
                .matches
                .contains(&Match::Daddr(a.into()))
        );
        // No service address or no address: isolation only.
        for rs in [
            build6(&cfg, &three(), &[a], None),
            build6(&cfg, &three(), &[], Some(svc)),
        ] {
            assert!(rules(&rs, "prerouting").is_empty());
            assert!(rs.sets.is_empty());
            let from_lan_drop = Rule {
                matches: vec![Match::Iifname(Cmp::Eq, "lan0".into())],
                statement: Some(Statement::Drop),
            };
            assert!(rules(&rs, "forward").contains(&from_lan_drop));
        }
    }

    #[test]
    fn ipv6_addresses_must_be_global_unicast() {
        for bad in ["::", "::1", "ff02::1", "fe80::1"] {
            assert!(validate_address6(bad.parse().unwrap()).is_err(), "{bad}");
        }
        validate_address6("2001:db8::1".parse().unwrap()).unwrap();
    }
}
