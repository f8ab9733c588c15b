//! Per-forward counters read back from a `nft -j list table` document.

use std::collections::HashMap;

use netcontainer_proto::{Forward, ForwardStatus, Protocol};
use serde_json::Value;

use super::listing::objects;
use super::model::{PROTOCOLS, counting_sets};

/// Extracts per-forward counters from a `nft -j list table` document: the
/// counters of the elements of our DNAT maps and sets (see the module doc
/// of [`super`]), one element per forward, or one per port for a range
/// whose ports move (summed). Forwards missing from the table read 0.
pub fn counters_from_listing(doc: &Value, forwards: &[Forward]) -> Vec<ForwardStatus> {
    let names = PROTOCOLS.map(|p| (p, counting_sets(p)));
    let mut found: HashMap<(Protocol, u16, u16), (u64, u64)> = HashMap::new();
    for map in objects(doc).filter_map(|o| o.get("map").or_else(|| o.get("set"))) {
        let Some(name) = map["name"].as_str() else {
            continue;
        };
        let Some(p) = names
            .iter()
            .find(|(_, sets)| sets.iter().any(|m| m == name))
            .map(|(p, _)| *p)
        else {
            continue;
        };
        // A set element is its key, a map element `[key, data]`; a key with
        // a counter is `{"elem": {"val": KEY, "counter": {...}}}`.
        for e in map["elem"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let e = if e.is_array() { &e[0] } else { e };
            let e = &e["elem"];
            let val = &e["val"];
            let (start, end) = if let Some(r) = val.get("range") {
                (r[0].as_u64(), r[1].as_u64())
            } else {
                (val.as_u64(), val.as_u64())
            };
            let (Some(start), Some(end)) = (start, end) else {
                continue;
            };
            let (Ok(start), Ok(end)) = (u16::try_from(start), u16::try_from(end)) else {
                continue;
            };
            let c = &e["counter"];
            found.insert(
                (p, start, end),
                (
                    c["packets"].as_u64().unwrap_or(0),
                    c["bytes"].as_u64().unwrap_or(0),
                ),
            );
        }
    }
    forwards
        .iter()
        .map(|f| {
            let (p, start, end) = (f.protocol, f.public_port, f.public_port_end);
            let (packets, bytes) = found.get(&(p, start, end)).copied().unwrap_or_else(|| {
                if start == end {
                    return (0, 0);
                }
                (start..=end)
                    .filter_map(|port| found.get(&(p, port, port)))
                    .fold((0, 0), |(pk, by), (p2, b2)| (pk + p2, by + b2))
            });
            ForwardStatus::from_forward(f, packets, bytes)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fixtures::{fwd, three};
    use serde_json::json;

    #[test]
    fn counters_parse_listing() {
        let c = |val: Value, packets: u64, bytes: u64| json!({ "elem": { "val": val, "counter": { "packets": packets, "bytes": bytes } } });
        let doc = json!({ "nftables": [
            { "metainfo": { "version": "1.0.6" } },
            { "map": { "family": "ip", "name": "tcp_port_move", "table": "netcontainer",
                "type": "inet_service", "map": "inet_service",
                "elem": [ [c(json!(80), 3, 180), 8080],
                          [c(json!(9000), 1, 10), 9100], [c(json!(9001), 2, 20), 9101] ] } },
            { "map": { "family": "ip", "name": "tcp_addr_keep_range", "table": "netcontainer",
                "type": "inet_service", "map": "ipv4_addr", "flags": ["interval"],
                "elem": [ [c(json!({ "range": [7000, 7009] }), 5, 500), "192.0.2.2"] ] } },
            // A set of ports (one target address): elements are bare keys.
            { "set": { "family": "ip", "name": "udp_keep", "table": "netcontainer",
                "type": "inet_service", "elem": [c(json!(5000), 9, 90)] } },
            // Not counter maps: ignored.
            { "map": { "family": "ip", "name": "udp_addr_move", "table": "netcontainer",
                "type": "inet_service", "map": "ipv4_addr",
                "elem": [[c(json!(5000), 100, 1000), "192.0.2.2"]] } },
            { "set": { "family": "ip", "name": "other", "table": "netcontainer",
                "type": "inet_service", "elem": [c(json!(80), 7, 70)] } }
        ]});
        let mut forwards = three();
        forwards.push(fwd("tcp:9000-9001=192.0.2.2:9100"));
        let st = counters_from_listing(&doc, &forwards);
        assert_eq!(st.len(), 4);
        assert_eq!((st[0].packets, st[0].bytes), (3, 180));
        assert_eq!((st[1].packets, st[1].bytes), (5, 500));
        assert_eq!(
            (st[2].packets, st[2].bytes, st[2].public_port),
            (9, 90, 5000)
        );
        // A moved range: the sum of its ports' counters.
        assert_eq!((st[3].packets, st[3].bytes), (3, 30));
        // Without counters (elements are bare keys): zeros.
        let bare = json!({ "nftables": [ { "map": { "name": "tcp_port_move",
            "elem": [[80, 8080]] } } ] });
        assert!(
            counters_from_listing(&bare, &three())
                .iter()
                .all(|s| s.packets == 0 && s.bytes == 0)
        );
    }
}
