//! Writes a [`Ruleset`] as the `{"nftables": [...]}` JSON batch for
//! `nft -j -f -` that atomically replaces our table ([`render`],
//! [`render_all`]). Pure: the only place that knows nft's syntax.

use std::fmt::Write;
use std::net::IpAddr;

use netcontainer_proto::Protocol;
use serde_json::{Value, json};

use super::model::{
    Chain, ChainPolicy, ChainType, Cmp, CtDirection, CtState, CtStatus, DataType, Element, Family,
    Hook, Match, Rule, Ruleset, Set, Source, Statement, Table,
};

/// nft's name of a table's family.
pub(super) fn family(f: Family) -> &'static str {
    match f {
        Family::Ipv4 => "ip",
        Family::Ipv6 => "ip6",
    }
}

fn data_type(t: DataType) -> &'static str {
    match t {
        DataType::InetService => "inet_service",
        DataType::Ipv4Addr => "ipv4_addr",
        DataType::Ipv6Addr => "ipv6_addr",
    }
}

fn chain_type(t: ChainType) -> &'static str {
    match t {
        ChainType::Filter => "filter",
        ChainType::Nat => "nat",
    }
}

fn hook(h: Hook) -> &'static str {
    match h {
        Hook::Prerouting => "prerouting",
        Hook::Input => "input",
        Hook::Forward => "forward",
        Hook::Postrouting => "postrouting",
    }
}

fn policy(p: ChainPolicy) -> &'static str {
    match p {
        ChainPolicy::Accept => "accept",
    }
}

fn ct_state(s: CtState) -> &'static str {
    match s {
        CtState::New => "new",
        CtState::Established => "established",
        CtState::Related => "related",
    }
}

fn ct_status(s: CtStatus) -> &'static str {
    match s {
        CtStatus::Dnat => "dnat",
        CtStatus::Confirmed => "confirmed",
    }
}

fn ct(key: &str) -> Value {
    json!({ "ct": { "key": key } })
}

fn meta(key: &str) -> Value {
    json!({ "meta": { "key": key } })
}

fn dport(p: Protocol) -> Value {
    json!({ "payload": { "protocol": p.as_str(), "field": "dport" } })
}

fn set_ref(name: &str) -> Value {
    json!(format!("@{name}"))
}

fn cmp(c: Cmp) -> &'static str {
    match c {
        Cmp::Eq => "==",
        Cmp::Ne => "!=",
    }
}

fn expr_match(m: &Match) -> Value {
    let (left, op, right) = match m {
        Match::Iifname(c, name) => (meta("iifname"), cmp(*c), json!(name)),
        Match::Oifname(c, name) => (meta("oifname"), cmp(*c), json!(name)),
        Match::Daddr(addr) => {
            let proto = if addr.is_ipv4() { "ip" } else { "ip6" };
            (
                json!({ "payload": { "protocol": proto, "field": "daddr" } }),
                "==",
                json!(addr.to_string()),
            )
        }
        Match::DaddrIn(addrs) => {
            let proto = if addrs.iter().all(IpAddr::is_ipv4) {
                "ip"
            } else {
                "ip6"
            };
            let set: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
            (
                json!({ "payload": { "protocol": proto, "field": "daddr" } }),
                "==",
                json!({ "set": set }),
            )
        }
        Match::DaddrInNets(nets) => {
            let set: Vec<serde_json::Value> = nets
                .iter()
                .map(|(a, len)| json!({ "prefix": { "addr": a.to_string(), "len": len } }))
                .collect();
            (
                json!({ "payload": { "protocol": "ip", "field": "daddr" } }),
                "==",
                json!({ "set": set }),
            )
        }
        Match::Saddr(addr) => {
            let proto = if addr.is_ipv4() { "ip" } else { "ip6" };
            (
                json!({ "payload": { "protocol": proto, "field": "saddr" } }),
                "==",
                json!(addr.to_string()),
            )
        }
        Match::Dport(p, port) => (dport(*p), "==", json!(port)),
        Match::L4Proto(p) => (meta("l4proto"), "==", json!(p.as_str())),
        Match::DportIn(p, set) => (dport(*p), "==", set_ref(set)),
        Match::CtState(states) => {
            // One state is a string, several an array.
            let right = match states.as_slice() {
                [one] => json!(ct_state(*one)),
                many => json!(many.iter().map(|s| ct_state(*s)).collect::<Vec<_>>()),
            };
            (ct("state"), "in", right)
        }
        Match::CtStatus(s) => (ct("status"), "in", json!(ct_status(*s))),
        Match::CtMark(mark) => (ct("mark"), "==", json!(mark)),
        Match::CtDirection(CtDirection::Reply) => (ct("direction"), "==", json!("reply")),
        // `in` on a bitmask field: the bit is set, whatever the others.
        Match::TcpSyn => (
            json!({ "payload": { "protocol": "tcp", "field": "flags" } }),
            "in",
            json!("syn"),
        ),
        Match::MaxsegAbove(mss) => (maxseg(), ">", json!(mss)),
        Match::CtOriginalDportIn(set) => (
            json!({ "ct": { "key": "proto-dst", "dir": "original" } }),
            "==",
            set_ref(set),
        ),
    };
    json!({ "match": { "op": op, "left": left, "right": right } })
}

fn source<T: ToString>(s: &Source<T>) -> Value {
    match s {
        Source::Fixed(v) => json!(v.to_string()),
        Source::DportMap(p, map) => json!({ "map": { "key": dport(*p), "data": set_ref(map) } }),
    }
}

/// The MSS of a TCP segment's options.
fn maxseg() -> Value {
    json!({ "tcp option": { "name": "maxseg", "field": "size" } })
}

fn statement(s: &Statement) -> Value {
    match s {
        Statement::SetMaxseg(mss) => json!({ "mangle": { "key": maxseg(), "value": mss } }),
        Statement::SetCtMark(mark) => json!({ "mangle": { "key": ct("mark"), "value": mark } }),
        Statement::SetMarkFromCt => {
            json!({ "mangle": { "key": meta("mark"), "value": ct("mark") } })
        }
        Statement::Dnat { addr, port } => {
            let mut d = json!({ "addr": source(addr) });
            if let Some(port) = port {
                d["port"] = match port {
                    // A constant port is a number, not a string.
                    Source::Fixed(p) => json!(p),
                    Source::DportMap(..) => source(port),
                };
            }
            json!({ "dnat": d })
        }
        Statement::Masquerade => json!({ "masquerade": null }),
        Statement::Snat(addr) => json!({ "snat": { "addr": addr.to_string() } }),
        Statement::Accept => json!({ "accept": null }),
        Statement::Drop => json!({ "drop": null }),
    }
}

fn write_ports(out: &mut String, start: u16, end: u16) {
    if start == end {
        let _ = write!(out, "{start}");
    } else {
        let _ = write!(out, r#"{{"range":[{start},{end}]}}"#);
    }
}

fn write_element(out: &mut String, e: &Element) {
    match *e {
        Element::Ports(start, end) => write_ports(out, start, end),
        Element::PortToPort(port, target) => {
            let _ = write!(out, "[{port},{target}]");
        }
        Element::PortsToAddr(start, end, addr) => {
            out.push('[');
            write_ports(out, start, end);
            let _ = write!(out, r#","{addr}"]"#);
        }
    }
}

/// The batch document, written as text.
struct Batch {
    out: String,
    empty: bool,
}

impl Batch {
    fn new(capacity: usize) -> Self {
        let mut out = String::with_capacity(capacity);
        out.push_str(r#"{"nftables":["#);
        Batch { out, empty: true }
    }

    fn sep(&mut self) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
    }

    fn push(&mut self, cmd: &Value) {
        self.sep();
        self.out.push_str(&cmd.to_string());
    }

    /// `{"add": {"set" or "map": {...head, "elem": [...]}}}`; nft refuses
    /// an empty "elem" array (the model has no empty sets).
    fn push_set(&mut self, t: &Table, set: &Set) {
        self.sep();
        let mut head = json!({ "family": family(t.family), "table": t.name,
            "name": set.name, "type": data_type(set.key) });
        let kind = match set.data {
            Some(data) => {
                head["map"] = json!(data_type(data));
                "map"
            }
            None => "set",
        };
        if set.interval {
            head["flags"] = json!(["interval"]);
        }
        if set.counter {
            head["stmt"] = json!([{ "counter": null }]);
        }
        let head = head.to_string();
        self.out.push_str(r#"{"add":{""#);
        self.out.push_str(kind);
        self.out.push_str(r#"":"#);
        // `head` is an object: reopen it to append the elements.
        self.out.push_str(&head[..head.len() - 1]);
        self.out.push_str(r#","elem":["#);
        for (i, e) in set.elements.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            write_element(&mut self.out, e);
        }
        self.out.push_str("]}}}");
    }

    fn finish(mut self) -> String {
        self.out.push_str("]}");
        self.out
    }
}

fn chain_cmd(t: &Table, c: &Chain) -> Value {
    json!({ "add": { "chain": {
        "family": family(t.family), "table": t.name, "name": c.name,
        "type": chain_type(c.kind), "hook": hook(c.hook), "prio": c.priority,
        "policy": policy(c.policy)
    } } })
}

fn rule_cmd(t: &Table, chain: &str, r: &Rule) -> Value {
    let mut expr: Vec<Value> = r.matches.iter().map(expr_match).collect();
    expr.extend(r.statement.as_ref().map(statement));
    json!({ "add": { "rule": {
        "family": family(t.family), "table": t.name, "chain": chain, "expr": expr
    } } })
}

/// Renders the batch that atomically replaces our table with `rs`
/// (`add table; delete table; add table; chains; sets; rules`), as the
/// `{"nftables": [...]}` JSON document for `nft -j -f -`. Nothing else is
/// flushed or deleted.
pub fn render(rs: &Ruleset) -> String {
    render_all(std::slice::from_ref(rs))
}

/// [`render`] for several tables (the IPv4 one and its IPv6 twin) in one
/// batch: nft applies it as one transaction, so both families change
/// together or not at all.
pub fn render_all(rulesets: &[Ruleset]) -> String {
    // ~30 bytes per element plus the fixed part.
    let elements: usize = rulesets
        .iter()
        .flat_map(|rs| &rs.sets)
        .map(|s| s.elements.len())
        .sum();
    let mut b = Batch::new(4096 * rulesets.len() + 40 * elements);
    for rs in rulesets {
        let t = &rs.table;
        let table = json!({ "table": { "family": family(t.family), "name": t.name } });
        b.push(&json!({ "add": table }));
        b.push(&json!({ "delete": table }));
        b.push(&json!({ "add": table }));
        for c in &rs.chains {
            b.push(&chain_cmd(t, c));
        }
        for s in &rs.sets {
            b.push_set(t, s);
        }
        for c in &rs.chains {
            for r in &c.rules {
                b.push(&rule_cmd(t, c.name, r));
            }
        }
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fixtures::{fwd, many, masquerade, three};
    use crate::firewall::nft::build::build;
    use crate::firewall::policy::{DEFAULT_MARK, Ipv6Policy, Settings};
    use netcontainer_proto::Forward;

    /// The rendered batch, parsed (render writes JSON text).
    fn rendered(settings: &Settings, forwards: &[Forward]) -> Value {
        let policy = masquerade(forwards);
        serde_json::from_str(&render(&build(settings, &policy)[0]))
            .expect("render writes valid JSON")
    }

    fn cmds(doc: &Value) -> &Vec<Value> {
        doc["nftables"].as_array().unwrap()
    }

    /// (verb, kind, body) of each command.
    fn parts(doc: &Value) -> Vec<(&str, &str, &Value)> {
        cmds(doc)
            .iter()
            .map(|c| {
                let (verb, inner) = c.as_object().unwrap().iter().next().unwrap();
                let (kind, body) = inner.as_object().unwrap().iter().next().unwrap();
                (verb.as_str(), kind.as_str(), body)
            })
            .collect()
    }

    fn rules<'a>(doc: &'a Value, chain: &str) -> Vec<&'a Value> {
        parts(doc)
            .into_iter()
            .filter(|(_, k, b)| *k == "rule" && b["chain"] == chain)
            .map(|(_, _, b)| b)
            .collect()
    }

    #[test]
    fn render_starts_with_atomic_replace_and_stays_in_our_table() {
        let cfg = Settings::default();
        let doc = rendered(&cfg, &three());
        let p = parts(&doc);
        assert_eq!((p[0].0, p[0].1), ("add", "table"));
        assert_eq!((p[1].0, p[1].1), ("delete", "table"));
        assert_eq!((p[2].0, p[2].1), ("add", "table"));
        for (verb, kind, body) in &p {
            assert_ne!(*verb, "flush");
            assert_eq!(body["family"], "ip", "{kind} not in family ip");
            let t = if *kind == "table" {
                &body["name"]
            } else {
                &body["table"]
            };
            assert_eq!(t, "netcontainer", "{kind} outside our table");
            if p.iter().filter(|x| x.1 == "table").count() != 3 {
                panic!("unexpected table commands");
            }
        }
        let text = doc.to_string();
        assert!(!text.contains("ruleset"));
        // Chains: exactly these five, with their hooks and priorities.
        let chains: Vec<(String, String, String, i64)> = p
            .iter()
            .filter(|(_, k, _)| *k == "chain")
            .map(|(_, _, b)| {
                (
                    b["name"].as_str().unwrap().into(),
                    b["type"].as_str().unwrap().into(),
                    b["hook"].as_str().unwrap().into(),
                    b["prio"].as_i64().unwrap(),
                )
            })
            .collect();
        let want = [
            ("mark", "filter", "prerouting", -150),
            ("prerouting", "nat", "prerouting", -100),
            ("input", "filter", "input", 0),
            ("forward", "filter", "forward", 0),
            ("postrouting", "nat", "postrouting", 100),
        ];
        assert_eq!(chains.len(), want.len());
        for (w, c) in want.iter().zip(&chains) {
            assert_eq!(
                (w.0, w.1, w.2, w.3),
                (c.0.as_str(), c.1.as_str(), c.2.as_str(), c.3)
            );
        }
        // Every rule's chain exists.
        for (_, _, b) in p.iter().filter(|(_, k, _)| *k == "rule") {
            assert!(chains.iter().any(|c| b["chain"] == c.0.as_str()));
        }
        // Sets/maps come before the rules that use them.
        let first_rule = p.iter().position(|x| x.1 == "rule").unwrap();
        assert!(
            p.iter()
                .rposition(|x| x.1 == "set" || x.1 == "map")
                .unwrap()
                < first_rule
        );
    }

    #[test]
    fn toward_the_lan_only_replies_of_our_dnat_pass() {
        let cfg = Settings::default();
        let doc = rendered(&cfg, &three());
        let fwd = rules(&doc, "forward");
        let to_lan: Vec<&Value> = fwd
            .iter()
            .copied()
            .filter(|r| r.to_string().contains(r#"{"meta":{"key":"oifname"}}"#))
            .collect();
        assert_eq!(to_lan.len(), 2, "{to_lan:?}");
        let accept = to_lan[0].to_string();
        for want in [
            r#""right":"lan0""#,
            r#"{"ct":{"key":"mark"}}"#,
            r#""right":"dnat""#,
            r#"{"ct":{"key":"direction"}}"#,
            r#""right":"reply""#,
            r#""accept":null"#,
        ] {
            assert!(accept.contains(want), "{want} missing in {accept}");
        }
        let drop = to_lan[1].to_string();
        assert!(drop.contains(r#""right":"lan0""#) && drop.contains(r#""drop":null"#));
        // The drop is the forward chain's last rule: nothing after it lets more out.
        assert_eq!(fwd.last().unwrap().to_string(), drop);
    }

    #[test]
    fn rule_count_does_not_grow_with_forwards() {
        let cfg = Settings::default();
        let small = rendered(&cfg, &many(6));
        let big = rendered(&cfg, &many(3000));
        for chain in ["mark", "prerouting", "forward", "postrouting"] {
            assert_eq!(
                rules(&small, chain).len(),
                rules(&big, chain).len(),
                "chain {chain}"
            );
        }
        // tcp+udp x (move, keep-range) dnat rules, each with a counting rule.
        assert_eq!(rules(&big, "prerouting").len(), 4);
        assert_eq!(rules(&big, "forward").len(), 4 + 5);
        assert_eq!(rules(&big, "mark").len(), 2);
        assert_eq!(rules(&big, "postrouting").len(), 1);
        // All kinds present: 3 dnat rules per protocol.
        let mut all = many(6);
        all.push(fwd("tcp:9000=192.0.2.9:9000"));
        all.push(fwd("udp:9000=192.0.2.9:9000"));
        assert_eq!(rules(&rendered(&cfg, &all), "prerouting").len(), 6);
        // No forwards: the filter and mark rules only.
        let none = rendered(&cfg, &[]);
        assert!(rules(&none, "prerouting").is_empty());
        assert_eq!(rules(&none, "forward").len(), 5);
    }

    fn set<'a>(doc: &'a Value, name: &str) -> &'a Value {
        parts(doc)
            .into_iter()
            .find(|(_, k, b)| (*k == "set" || *k == "map") && b["name"] == name)
            .map(|(_, _, b)| b)
            .unwrap_or_else(|| panic!("no set {name}"))
    }

    #[test]
    fn ranges_are_intervals_and_moved_ports_shift() {
        let cfg = Settings::default();
        let fw = vec![
            fwd("tcp:7000-7999=192.0.2.2:7000"),
            fwd("tcp:80=192.0.2.3:8080"),
            fwd("tcp:81=192.0.2.5:8081"),
            fwd("udp:100-102=192.0.2.4:200"),
            fwd("udp:300=192.0.2.6:300"),
            fwd("udp:400-409=192.0.2.7:400"),
        ];
        let doc = rendered(&cfg, &fw);
        // Port-keeping forwards to several addresses: address maps, a
        // range is one interval.
        let keep = set(&doc, "udp_addr_keep_range");
        assert_eq!(keep["flags"], json!(["interval"]));
        assert_eq!(keep["map"], "ipv4_addr");
        assert_eq!(
            keep["elem"],
            json!([[{ "range": [400, 409] }, "192.0.2.7"]])
        );
        let keep = set(&doc, "udp_addr_keep");
        assert_eq!(keep.get("flags"), None);
        assert_eq!(keep["elem"], json!([[300, "192.0.2.6"]]));
        // To one address: a set of ports and a constant address.
        let keep = set(&doc, "tcp_keep_range");
        assert_eq!(keep["flags"], json!(["interval"]));
        assert_eq!(keep.get("map"), None);
        assert_eq!(keep["elem"], json!([{ "range": [7000, 7999] }]));
        let text = doc.to_string();
        assert!(!text.contains("tcp_addr_keep") && !text.contains("udp_keep"));
        assert_eq!(
            set(&doc, "tcp_addr_move")["elem"],
            json!([[80, "192.0.2.3"], [81, "192.0.2.5"]])
        );
        assert_eq!(
            set(&doc, "tcp_port_move")["elem"],
            json!([[80, 8080], [81, 8081]])
        );
        assert_eq!(
            set(&doc, "udp_port_move")["elem"],
            json!([[100, 200], [101, 201], [102, 202]])
        );
        // One udp target address: a constant instead of an address map.
        assert!(!text.contains("udp_addr_move"));
        assert_eq!(set(&doc, "udp_port_move")["map"], "inet_service");
        // Counters: in the elements of the DNAT maps and sets (one per
        // forward, a range is one interval), none on the address-only map.
        let counter = json!([{ "counter": null }]);
        let counted = [
            "tcp_port_move",
            "tcp_keep_range",
            "udp_port_move",
            "udp_addr_keep",
            "udp_addr_keep_range",
        ];
        for name in counted {
            assert_eq!(set(&doc, name)["stmt"], counter, "{name}");
        }
        assert_eq!(set(&doc, "tcp_addr_move").get("stmt"), None);
        // One lookup-only counting rule per counter map, both directions of
        // our DNATed, confirmed connections.
        let counting: Vec<&Value> = rules(&doc, "forward")
            .into_iter()
            .filter(|r| r.to_string().contains("proto-dst"))
            .collect();
        assert_eq!(counting.len(), counted.len());
        for r in &counting {
            let e = r["expr"].as_array().unwrap();
            assert_eq!(e[0]["match"]["left"], json!({ "ct": { "key": "mark" } }));
            assert_eq!(e[0]["match"]["right"], json!(DEFAULT_MARK));
            assert_eq!(e[1]["match"]["right"], "dnat");
            assert_eq!(e[2]["match"]["right"], "confirmed");
            let last = &e.last().unwrap()["match"];
            assert_eq!(
                last["left"],
                json!({ "ct": { "key": "proto-dst", "dir": "original" } })
            );
            let name = last["right"].as_str().unwrap().trim_start_matches('@');
            assert!(counted.contains(&name), "{name}");
            assert!(name.starts_with(e[3]["match"]["right"].as_str().unwrap()));
            // Counting never decides: no verdict, no other statement.
            assert!(e.iter().all(|x| x.get("match").is_some()));
        }
        // The move rule takes address and port from two lookups.
        let nat = rules(&doc, "prerouting");
        let last = |r: &Value| r["expr"].as_array().unwrap().last().unwrap().clone();
        let dnat = &last(nat[0])["dnat"];
        assert_eq!(dnat["addr"]["map"]["data"], "@tcp_addr_move");
        assert_eq!(dnat["port"]["map"]["data"], "@tcp_port_move");
        let dnats: Vec<Value> = nat.iter().map(|r| last(r)["dnat"].clone()).collect();
        let udp_dnat = dnats
            .iter()
            .find(|d| d["port"]["map"]["data"] == "@udp_port_move")
            .unwrap();
        assert_eq!(udp_dnat["addr"], "192.0.2.4");
        // The single-target keep rule: dport in the set, then the constant.
        let keep_rule = nat
            .iter()
            .find(|r| r.to_string().contains("@tcp_keep_range"))
            .unwrap();
        let e = keep_rule["expr"].as_array().unwrap();
        assert_eq!(
            e[e.len() - 2]["match"],
            json!({ "op": "==", "right": "@tcp_keep_range",
                "left": { "payload": { "protocol": "tcp", "field": "dport" } } })
        );
        assert_eq!(e[e.len() - 1], json!({ "dnat": { "addr": "192.0.2.2" } }));
        assert!(
            dnats
                .iter()
                .any(|d| d["addr"]["map"]["data"] == "@udp_addr_keep_range")
        );
        // Without counters: the same maps and sets without counters, no
        // counting rules.
        let plain = rendered(
            &Settings {
                counters: false,
                ..cfg.clone()
            },
            &fw,
        );
        assert!(!plain.to_string().contains("counter"));
        assert_eq!(rules(&plain, "forward").len(), 5);
        for name in counted {
            assert_eq!(set(&plain, name)["elem"], set(&doc, name)["elem"]);
        }
        assert!(
            nat.iter()
                .all(|r| r["expr"][1]["match"]["right"] == "198.51.100.10")
        );
        assert!(nat.iter().all(|r| r["expr"][0]["match"]["right"] == "lan0"));
    }

    #[test]
    fn both_families_in_one_batch() {
        let mut policy = masquerade(&three());
        policy.v6 = Some(Ipv6Policy {
            addresses: vec![
                "2001:db8:1::10".parse().unwrap(),
                "2001:db8:1::11".parse().unwrap(),
            ],
            service: Some("2001:db8:2::2".parse().unwrap()),
            forwards: three(),
        });
        let tables = build(&Settings::default(), &policy);
        assert_eq!(tables.len(), 2);
        let doc: Value = serde_json::from_str(&render_all(&tables)).unwrap();
        let tables: Vec<_> = parts(&doc)
            .into_iter()
            .filter(|(_, kind, _)| *kind == "table")
            .map(|(verb, _, body)| (verb, body["family"].as_str().unwrap()))
            .collect();
        assert_eq!(
            tables,
            [
                ("add", "ip"),
                ("delete", "ip"),
                ("add", "ip"),
                ("add", "ip6"),
                ("delete", "ip6"),
                ("add", "ip6")
            ]
        );
        let text = doc.to_string();
        assert!(
            text.contains(r#"{"match":{"left":{"payload":{"field":"daddr","protocol":"ip6"}},"op":"==","right":{"set":["2001:db8:1::10","2001:db8:1::11"]}}}"#),
            "{text}"
        );
        assert!(text.contains(r#""addr":"2001:db8:2::2""#), "{text}");
    }
}
