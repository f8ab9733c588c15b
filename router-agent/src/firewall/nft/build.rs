//! From a [`Policy`] to the tables that hold it ([`build`]): pure and total.
//! It validates nothing beyond what types guarantee
//! ([`crate::firewall::Firewall::apply`] validates first).
//!
//! Each piece of a table is one function that returns its sets and rules:
//! the DNAT of one protocol (`protocol_dnat`: `moved_ports`, `kept_ports`)
//! with its counting rules, the mark rules, the forward chain's filter with
//! the gateway mode's exception, postrouting, input. `table` puts them in
//! their chains. The layout itself is explained in the module doc of
//! [`super`].

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};

use netcontainer_proto::{Forward, Protocol};

use super::model::{
    Chain, ChainPolicy, ChainType, Cmp, CtDirection, CtState, CtStatus, DataType, Element, Family,
    Hook, Match, PROTOCOLS, Rule, Ruleset, Set, Source, Statement, Table, counting_sets,
};
use crate::firewall::policy::{Ipv4Policy, Ipv6Policy, Policy, Settings};

/// The tables holding `policy`: the IPv4 one, then its IPv6 twin unless
/// the policy has no IPv6 (applied in one batch).
pub fn build(settings: &Settings, policy: &Policy) -> Vec<Ruleset> {
    let mut tables = vec![build4(settings, &policy.lan_if, &policy.v4)];
    tables.extend(
        policy
            .v6
            .as_ref()
            .map(|v6| build6(settings, &policy.lan_if, v6)),
    );
    tables
}

/// The IPv4 table: the forwards arriving at the lease on `lan_if` go to
/// their targets. Without a lease it only isolates.
pub fn build4(settings: &Settings, lan_if: &str, v4: &Ipv4Policy) -> Ruleset {
    let (forwards, daddr, gateway) = match v4.lease {
        Some(lease) => (
            v4.forwards.as_slice(),
            Match::Daddr(lease.into()),
            v4.gateway_for.map(|service| Gateway {
                service: service.into(),
                lease: lease.into(),
                egress: &settings.egress,
            }),
        ),
        None => (&[][..], Match::DaddrIn(Vec::new()), None),
    };
    table(&Spec {
        family: Family::Ipv4,
        table: &settings.table,
        lan: lan_if,
        mark: settings.mark,
        counters: settings.counters,
        daddr,
        forwards,
        target: Target::Own,
        gateway,
        // Without a lease nothing crosses: isolation only.
        mss: v4.lease.and(v4.mss),
    })
}

/// The IPv6 twin of [`build4`]: the forwards arriving at any of the LAN
/// interface's global IPv6 addresses are DNATed to the service's IPv6
/// address, port for port as over IPv4. Always masquerade mode (the
/// service's IPv6 default route is Docker's), and without counters (status
/// counts IPv4). With no address or no service address the table only
/// isolates: nothing is forwarded to or from the LAN (the relay, if any,
/// answers on the router itself).
pub fn build6(settings: &Settings, lan_if: &str, v6: &Ipv6Policy) -> Ruleset {
    let (forwards, daddr) = match (v6.addresses.as_slice(), v6.service) {
        ([one], Some(_)) => (v6.forwards.as_slice(), Match::Daddr((*one).into())),
        ([_, _, ..], Some(_)) => (
            v6.forwards.as_slice(),
            Match::DaddrIn(v6.addresses.iter().map(|a| (*a).into()).collect()),
        ),
        _ => (&[][..], Match::DaddrIn(Vec::new())),
    };
    table(&Spec {
        family: Family::Ipv6,
        table: &settings.table,
        lan: lan_if,
        mark: settings.mark,
        counters: false,
        daddr,
        forwards,
        // Without a service address there are no forwards to send to it.
        target: Target::Service(v6.service.unwrap_or(Ipv6Addr::UNSPECIFIED)),
        gateway: None,
        mss: None,
    })
}

/// One family's table, as the pieces below need it.
struct Spec<'a> {
    family: Family,
    table: &'a str,
    /// The LAN interface.
    lan: &'a str,
    mark: u32,
    counters: bool,
    /// Our addresses: what the forwards arrive at.
    daddr: Match,
    forwards: &'a [Forward],
    target: Target,
    gateway: Option<Gateway<'a>>,
    /// Clamp the MSS of SYNs to and from the LAN to this.
    mss: Option<u16>,
}

/// Where a forward goes.
#[derive(Clone, Copy)]
enum Target {
    /// To its own target address (IPv4).
    Own,
    /// To the service's address, whatever the forward's IPv4 target (IPv6).
    Service(Ipv6Addr),
}

impl Target {
    fn of(self, f: &Forward) -> IpAddr {
        match self {
            Target::Own => f.target_address.into(),
            Target::Service(a) => a.into(),
        }
    }
}

/// Gateway mode (IPv4 only): the service's address, the lease its own
/// connections leave from, and where they may go (empty: anywhere).
#[derive(Clone, Copy)]
struct Gateway<'a> {
    service: IpAddr,
    lease: IpAddr,
    egress: &'a [netcontainer_proto::Ipv4Net],
}

/// Sets and rules of one piece of a table.
#[derive(Default)]
struct Part {
    sets: Vec<Set>,
    rules: Vec<Rule>,
}

impl Part {
    fn extend(&mut self, other: Part) {
        self.sets.extend(other.sets);
        self.rules.extend(other.rules);
    }
}

/// The table of `s`: the pieces in their chains.
fn table(s: &Spec) -> Ruleset {
    let mut dnat = Part::default();
    let mut counting = Vec::new();
    for p in PROTOCOLS {
        let part = protocol_dnat(s, p);
        counting.extend(counting_rules(s.mark, p, &part.sets));
        dnat.extend(part);
    }
    // The counting lookups come first in the forward chain: they never
    // decide.
    let mut forward = counting;
    // The MSS clamp before any verdict: it must see every SYN it lowers.
    forward.extend(s.mss.map(|mss| mss_clamp(s.lan, mss)).into_iter().flatten());
    forward.extend(forward_rules(s.lan, s.mark, s.gateway));
    Ruleset {
        table: Table {
            family: s.family,
            name: s.table.to_string(),
        },
        sets: dnat.sets,
        chains: vec![
            chain(
                "mark",
                ChainType::Filter,
                Hook::Prerouting,
                -150,
                mark_rules(s.lan, s.mark),
            ),
            chain(
                "prerouting",
                ChainType::Nat,
                Hook::Prerouting,
                -100,
                dnat.rules,
            ),
            chain(
                "input",
                ChainType::Filter,
                Hook::Input,
                0,
                input_rules(s.lan),
            ),
            chain("forward", ChainType::Filter, Hook::Forward, 0, forward),
            chain(
                "postrouting",
                ChainType::Nat,
                Hook::Postrouting,
                100,
                postrouting_rules(s.lan, s.mark, s.gateway),
            ),
        ],
    }
}

fn chain(
    name: &'static str,
    kind: ChainType,
    hook: Hook,
    priority: i32,
    rules: Vec<Rule>,
) -> Chain {
    Chain {
        name,
        kind,
        hook,
        priority,
        policy: ChainPolicy::Accept,
        rules,
    }
}

fn rule(matches: Vec<Match>, statement: Statement) -> Rule {
    Rule {
        matches,
        statement: Some(statement),
    }
}

fn from_lan(lan: &str) -> Match {
    Match::Iifname(Cmp::Eq, lan.to_string())
}

fn to_lan(lan: &str) -> Match {
    Match::Oifname(Cmp::Eq, lan.to_string())
}

/// Connections we DNATed (they carry our mark: they came from the LAN).
fn our_dnat(mark: u32) -> [Match; 2] {
    [Match::CtMark(mark), Match::CtStatus(CtStatus::Dnat)]
}

/// A map or set keyed by port.
fn port_set(
    name: String,
    data: Option<DataType>,
    interval: bool,
    counter: bool,
    elements: Vec<Element>,
) -> Set {
    Set {
        name,
        key: DataType::InetService,
        data,
        interval,
        counter,
        elements,
    }
}

/// The forwards of one protocol that move to another port: one element per
/// port.
#[derive(Default)]
struct Moved {
    /// `port : address`.
    addr: Vec<Element>,
    /// `port : target port`.
    port: Vec<Element>,
    /// Distinct target addresses (the address map is left out when there is
    /// only one: `dnat to ADDR : tcp dport map @port_move`).
    targets: BTreeSet<IpAddr>,
}

/// The forwards of one protocol that keep their port: one element per
/// forward (`ports : address`), a range is one interval.
#[derive(Default)]
struct Kept {
    single: Vec<Element>,
    ranges: Vec<Element>,
    /// Distinct target addresses (with only one, sets of ports replace the
    /// address maps: `tcp dport @keep dnat to ADDR`).
    targets: BTreeSet<IpAddr>,
}

/// Sorts the forwards of protocol `p` into moved and kept ports.
fn sort_forwards(s: &Spec, p: Protocol) -> (Moved, Kept) {
    let (mut moved, mut kept) = (Moved::default(), Kept::default());
    for f in s.forwards.iter().filter(|f| f.protocol == p) {
        let (start, end, addr) = (f.public_port, f.public_port_end, s.target.of(f));
        if f.target_port == start {
            kept.targets.insert(addr);
            let elem = Element::PortsToAddr(start, end, addr);
            if start == end {
                kept.single.push(elem);
            } else {
                kept.ranges.push(elem);
            }
        } else {
            moved.targets.insert(addr);
            for off in 0..=(end - start) {
                let port = start + off;
                // Validation guarantees target_port + len - 1 <= 65535; stay
                // total anyway (build is pure and never panics).
                let target = f.target_port.saturating_add(off);
                moved.addr.push(Element::PortsToAddr(port, port, addr));
                moved.port.push(Element::PortToPort(port, target));
            }
        }
    }
    (moved, kept)
}

/// The only element of a set of one.
fn only<T: Copy + Ord>(s: &BTreeSet<T>) -> Option<T> {
    match (s.len(), s.first()) {
        (1, Some(x)) => Some(*x),
        _ => None,
    }
}

/// What every DNAT rule of protocol `p` matches first: from the LAN, to
/// our address, this protocol.
fn dnat_head(s: &Spec, p: Protocol) -> Vec<Match> {
    vec![from_lan(s.lan), s.daddr.clone(), Match::L4Proto(p)]
}

/// The DNAT maps, sets and rules of protocol `p` (a map or set only when it
/// has elements).
fn protocol_dnat(s: &Spec, p: Protocol) -> Part {
    let (moved, kept) = sort_forwards(s, p);
    let [port_move, addr_keep, addr_keep_range, keep, keep_range] = counting_sets(p);
    let mut part = moved_ports(s, p, moved, port_move);
    let target = only(&kept.targets);
    part.extend(kept_ports(
        s,
        p,
        false,
        kept.single,
        target,
        addr_keep,
        keep,
    ));
    part.extend(kept_ports(
        s,
        p,
        true,
        kept.ranges,
        target,
        addr_keep_range,
        keep_range,
    ));
    part
}

/// Ports that move: the port from `port_map`, the address a constant or
/// from `<p>_addr_move` (two lookups: nft 1.0.6's JSON parser refuses
/// concatenated map data, see the module doc of [`super`]).
fn moved_ports(s: &Spec, p: Protocol, moved: Moved, port_map: String) -> Part {
    if moved.port.is_empty() {
        return Part::default();
    }
    let mut sets = Vec::new();
    let addr = match only(&moved.targets) {
        Some(only) => Source::Fixed(only),
        None => {
            let name = format!("{p}_addr_move");
            sets.push(port_set(
                name.clone(),
                Some(DataType::addr(s.family)),
                false,
                false,
                moved.addr,
            ));
            Source::DportMap(p, name)
        }
    };
    sets.push(port_set(
        port_map.clone(),
        Some(DataType::InetService),
        false,
        s.counters,
        moved.port,
    ));
    let dnat = rule(
        dnat_head(s, p),
        Statement::Dnat {
            addr,
            port: Some(Source::DportMap(p, port_map)),
        },
    );
    Part {
        sets,
        rules: vec![dnat],
    }
}

/// Ports that stay (single ports, or `interval`: ranges): with one target
/// address (`target`) a set of ports and a constant address, else a map to
/// the address.
fn kept_ports(
    s: &Spec,
    p: Protocol,
    interval: bool,
    elements: Vec<Element>,
    target: Option<IpAddr>,
    map_name: String,
    set_name: String,
) -> Part {
    if elements.is_empty() {
        return Part::default();
    }
    let mut matches = dnat_head(s, p);
    let (set, addr) = match target {
        Some(addr) => {
            let keys = elements.iter().map(|e| e.key_only()).collect();
            matches.push(Match::DportIn(p, set_name.clone()));
            (
                port_set(set_name, None, interval, s.counters, keys),
                Source::Fixed(addr),
            )
        }
        None => (
            port_set(
                map_name.clone(),
                Some(DataType::addr(s.family)),
                interval,
                s.counters,
                elements,
            ),
            Source::DportMap(p, map_name),
        ),
    };
    Part {
        sets: vec![set],
        rules: vec![rule(matches, Statement::Dnat { addr, port: None })],
    }
}

/// One lookup-only rule per set of `sets` that counts (protocol `p`): the
/// later packets (both directions) of our DNATed connections; the first one
/// was counted by the DNAT rule's lookup (the conntrack entry is confirmed
/// only when that packet leaves).
fn counting_rules(mark: u32, p: Protocol, sets: &[Set]) -> Vec<Rule> {
    sets.iter()
        .filter(|set| set.counter)
        .map(|set| {
            let mut matches = our_dnat(mark).to_vec();
            matches.push(Match::CtStatus(CtStatus::Confirmed));
            matches.push(Match::L4Proto(p));
            matches.push(Match::CtOriginalDportIn(set.name.clone()));
            Rule {
                matches,
                statement: None,
            }
        })
        .collect()
}

/// New connections from the LAN get the ct mark; their packets arriving
/// elsewhere (replies from the service side) get the packet mark.
fn mark_rules(lan: &str, mark: u32) -> Vec<Rule> {
    vec![
        rule(
            vec![from_lan(lan), Match::CtState(vec![CtState::New])],
            Statement::SetCtMark(mark),
        ),
        rule(
            vec![
                Match::Iifname(Cmp::Ne, lan.to_string()),
                Match::CtMark(mark),
            ],
            Statement::SetMarkFromCt,
        ),
    ]
}

/// The forward chain's filter. From the LAN only DNATed connections (and
/// their related traffic) pass; everything else from the LAN is dropped.
/// Toward the LAN only replies of our DNATed connections, and in gateway
/// mode the service's own traffic: the router is no gateway from the
/// Docker side onto the LAN (another container routing the LAN via the
/// router, with its own or a spoofed source, gets nothing through).
fn forward_rules(lan: &str, mark: u32, gateway: Option<Gateway>) -> Vec<Rule> {
    let mut reply = vec![to_lan(lan)];
    reply.extend(our_dnat(mark));
    reply.push(Match::CtDirection(CtDirection::Reply));
    let mut rules = vec![
        rule(
            vec![
                from_lan(lan),
                Match::CtState(vec![CtState::Established, CtState::Related]),
            ],
            Statement::Accept,
        ),
        rule(
            vec![from_lan(lan), Match::CtStatus(CtStatus::Dnat)],
            Statement::Accept,
        ),
        rule(vec![from_lan(lan)], Statement::Drop),
        rule(reply, Statement::Accept),
    ];
    rules.extend(gateway.map(|g| service_out_rule(lan, g.service, g.egress)));
    rules.push(rule(vec![to_lan(lan)], Statement::Drop));
    rules
}

/// The LAN's MTU is below the Docker side's: a SYN crossing the router in
/// either direction offers at most `mss` (the LAN's MTU less 40), so
/// neither end sends segments the LAN cannot carry (path MTU discovery
/// alone fails where ICMP is filtered). A fixed value rather than `rt mtu`:
/// a SYN from the LAN is routed toward the Docker side, whose MTU is the
/// larger one.
fn mss_clamp(lan: &str, mss: u16) -> Vec<Rule> {
    [from_lan(lan), to_lan(lan)]
        .into_iter()
        .map(|dir| {
            rule(
                vec![
                    dir,
                    Match::L4Proto(Protocol::Tcp),
                    Match::TcpSyn,
                    Match::MaxsegAbove(mss),
                ],
                Statement::SetMaxseg(mss),
            )
        })
        .collect()
}

/// Gateway mode: the service's own traffic toward the LAN, and nobody
/// else's; with an egress allow-list, only to its networks (the rest meets
/// the chain's last rule, a drop). This is the only place the service's
/// egress can be filtered: it leaves through the router's namespace, never
/// the host's `DOCKER-USER` chain.
fn service_out_rule(lan: &str, service: IpAddr, egress: &[netcontainer_proto::Ipv4Net]) -> Rule {
    let mut m = vec![
        Match::Iifname(Cmp::Ne, lan.to_string()),
        to_lan(lan),
        Match::Saddr(service),
    ];
    if !egress.is_empty() {
        m.push(Match::DaddrInNets(
            egress.iter().map(|n| (n.addr(), n.prefix_len())).collect(),
        ));
    }
    rule(m, Statement::Accept)
}

/// In masquerade mode, masquerade our DNATed connections toward the service
/// (its replies then come back to the router); in gateway mode they keep
/// the client's address (the service's default route brings the replies
/// back), and the service's own connections leave from the lease.
fn postrouting_rules(lan: &str, mark: u32, gateway: Option<Gateway>) -> Vec<Rule> {
    match gateway {
        Some(g) => vec![rule(
            vec![to_lan(lan), Match::Saddr(g.service)],
            Statement::Snat(g.lease),
        )],
        None => {
            let mut masq = vec![Match::Oifname(Cmp::Ne, lan.to_string())];
            masq.extend(our_dnat(mark));
            vec![rule(masq, Statement::Masquerade)]
        }
    }
}

/// The "who am I?" endpoint answers the Docker side only.
fn input_rules(lan: &str) -> Vec<Rule> {
    vec![rule(
        vec![
            from_lan(lan),
            Match::L4Proto(Protocol::Tcp),
            Match::Dport(Protocol::Tcp, netcontainer_proto::contract::WHOAMI_PORT),
        ],
        Statement::Drop,
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fixtures::{fwd, lease, masquerade, three};
    use crate::firewall::policy::{DEFAULT_MARK, DEFAULT_TABLE};
    use crate::firewall::sample::sample_forwards;
    use std::net::Ipv4Addr;

    /// The IPv4 table for `forwards` to the test lease on lan0.
    fn v4(settings: &Settings, forwards: &[Forward], gateway_for: Option<Ipv4Addr>) -> Ruleset {
        let policy = Ipv4Policy {
            lease: Some(lease()),
            forwards: forwards.to_vec(),
            gateway_for,
            mss: None,
        };
        build4(settings, "lan0", &policy)
    }

    /// The IPv6 table on lan0.
    fn v6(forwards: &[Forward], addresses: &[Ipv6Addr], service: Option<Ipv6Addr>) -> Ruleset {
        let policy = Ipv6Policy {
            addresses: addresses.to_vec(),
            service,
            forwards: forwards.to_vec(),
        };
        build6(&Settings::default(), "lan0", &policy)
    }

    fn rules<'a>(rs: &'a Ruleset, chain: &str) -> &'a [Rule] {
        &rs.chain(chain).unwrap().rules
    }

    #[test]
    fn one_table_per_family_of_the_policy() {
        let s = Settings::default();
        let p = masquerade(&three());
        assert_eq!(
            build(&s, &p),
            [
                build4(&s, "lan0", &p.v4),
                build6(&s, "lan0", &Ipv6Policy::default())
            ]
        );
        let no_ipv6 = Policy {
            v6: None,
            ..p.clone()
        };
        assert_eq!(build(&s, &no_ipv6), [build4(&s, "lan0", &p.v4)]);
        // Without a lease only isolation, whatever else the policy holds
        // (validation refuses such a policy before it gets here).
        let iso = build4(&s, "lan0", &Ipv4Policy::default());
        let stray = Ipv4Policy {
            lease: None,
            forwards: three(),
            gateway_for: Some(Ipv4Addr::new(192, 0, 2, 2)),
            mss: Some(1360),
        };
        assert_eq!(build4(&s, "lan0", &stray), iso);
        assert!(iso.sets.is_empty() && rules(&iso, "prerouting").is_empty());
        assert_eq!(
            rules(&iso, "postrouting")[0].statement,
            Some(Statement::Masquerade)
        );
        assert_eq!(
            rules(&iso, "forward").last().unwrap().statement,
            Some(Statement::Drop)
        );
    }

    #[test]
    fn one_ipv4_table_with_five_hooked_chains() {
        let rs = v4(&Settings::default(), &three(), None);
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
                    ChainPolicy::Accept
                ),
                (
                    "prerouting",
                    ChainType::Nat,
                    Hook::Prerouting,
                    -100,
                    ChainPolicy::Accept
                ),
                (
                    "input",
                    ChainType::Filter,
                    Hook::Input,
                    0,
                    ChainPolicy::Accept
                ),
                (
                    "forward",
                    ChainType::Filter,
                    Hook::Forward,
                    0,
                    ChainPolicy::Accept
                ),
                (
                    "postrouting",
                    ChainType::Nat,
                    Hook::Postrouting,
                    100,
                    ChainPolicy::Accept
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
    fn mss_clamp_comes_before_every_verdict_both_ways() {
        let s = Settings::default();
        let policy = Ipv4Policy {
            lease: Some(lease()),
            forwards: three(),
            gateway_for: None,
            mss: Some(1360),
        };
        let rs = build4(&s, "lan0", &policy);
        let fwd = rules(&rs, "forward");
        let clamps: Vec<usize> = (0..fwd.len())
            .filter(|i| fwd[*i].statement == Some(Statement::SetMaxseg(1360)))
            .collect();
        assert_eq!(clamps.len(), 2, "{fwd:#?}");
        for i in &clamps {
            assert!(fwd[*i].matches.contains(&Match::TcpSyn));
            assert!(fwd[*i].matches.contains(&Match::MaxsegAbove(1360)));
        }
        assert!(fwd[clamps[0]].matches.contains(&from_lan("lan0")));
        assert!(fwd[clamps[1]].matches.contains(&to_lan("lan0")));
        let first_verdict = fwd
            .iter()
            .position(|r| matches!(r.statement, Some(Statement::Accept | Statement::Drop)))
            .unwrap();
        assert!(clamps.iter().all(|i| *i < first_verdict), "{fwd:#?}");
        // Without an MTU from the lease there is no clamp.
        let none = Ipv4Policy {
            mss: None,
            ..policy
        };
        let rs = build4(&s, "lan0", &none);
        assert!(
            rules(&rs, "forward")
                .iter()
                .all(|r| r.statement != Some(Statement::SetMaxseg(1360)))
        );
    }

    #[test]
    fn forward_chain_lets_only_our_dnat_through_both_ways() {
        let rs = v4(&Settings::default(), &three(), None);
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
        let rs = v4(&Settings::default(), &three(), Some(svc));
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
        let masq = v4(&Settings::default(), &three(), None);
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
    }

    /// With an allow-list the service's own traffic passes only to its
    /// networks; without one, anywhere (the rule as before).
    #[test]
    fn gateway_egress_allow_list_narrows_the_service_out_rule() {
        let svc = Ipv4Addr::new(192, 0, 2, 3);
        let settings = Settings {
            egress: netcontainer_proto::parse_egress("198.51.100.0/25,203.0.113.7").unwrap(),
            ..Settings::default()
        };
        let rs = v4(&settings, &three(), Some(svc));
        let fwd = rules(&rs, "forward");
        let n = fwd.len();
        assert_eq!(
            fwd[n - 2].matches.last(),
            Some(&Match::DaddrInNets(vec![
                (Ipv4Addr::new(198, 51, 100, 0), 25),
                (Ipv4Addr::new(203, 0, 113, 7), 32)
            ]))
        );
        assert_eq!(fwd[n - 2].statement, Some(Statement::Accept));
        assert_eq!(fwd[n - 1].statement, Some(Statement::Drop));
        // Masquerade mode: the service's traffic never passes the router.
        let masq = v4(&settings, &three(), None);
        assert!(
            rules(&masq, "forward")
                .iter()
                .all(|r| { !r.matches.iter().any(|m| matches!(m, Match::DaddrInNets(_))) })
        );
    }

    #[test]
    fn sets_follow_the_targets() {
        let cfg = Settings::default();
        // One target address: a constant, sets of ports for the kept ports.
        let rs = v4(&cfg, &three(), None);
        let names: Vec<&str> = rs.sets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["tcp_port_move", "tcp_keep_range", "udp_port_move"]);
        assert_eq!(
            rs.set("tcp_keep_range").unwrap().elements,
            [Element::Ports(7000, 7009)]
        );
        assert!(rs.set("tcp_keep_range").unwrap().interval);
        // Several: address maps.
        let rs = v4(
            &cfg,
            &[
                fwd("tcp:80=192.0.2.3:8080"),
                fwd("tcp:81=192.0.2.5:8081"),
                fwd("udp:53=192.0.2.5:53"),
                fwd("udp:54=192.0.2.6:54"),
            ],
            None,
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
        let rs = v4(
            &Settings {
                counters: false,
                ..cfg
            },
            &sample_forwards(100, 3),
            None,
        );
        assert!(rs.sets.iter().all(|s| !s.counter));
        assert_eq!(rules(&rs, "forward").len(), 5);
    }

    #[test]
    fn the_ipv6_twin_dnats_to_the_service_on_every_address() {
        let a: Ipv6Addr = "2001:db8:1::10".parse().unwrap();
        let b: Ipv6Addr = "2001:db8:1::11".parse().unwrap();
        let svc: Ipv6Addr = "2001:db8:2::2".parse().unwrap();
        let rs = v6(&three(), &[a, b], Some(svc));
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
        let one = v6(&three(), &[a], Some(svc));
        assert!(
            rules(&one, "prerouting")[0]
                .matches
                .contains(&Match::Daddr(a.into()))
        );
        // No service address or no address: isolation only.
        for rs in [v6(&three(), &[a], None), v6(&three(), &[], Some(svc))] {
            assert!(rules(&rs, "prerouting").is_empty());
            assert!(rs.sets.is_empty());
            let from_lan_drop = Rule {
                matches: vec![Match::Iifname(Cmp::Eq, "lan0".into())],
                statement: Some(Statement::Drop),
            };
            assert!(rules(&rs, "forward").contains(&from_lan_drop));
        }
    }
}
