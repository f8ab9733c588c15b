//! Reading nft's JSON listings (`nft -j list ...`): the documents the
//! backend gets back, for the tables present and for the counters.

use serde_json::Value;

use super::model::Table;
use super::render::family;

/// The objects of a `{"nftables": [...]}` listing.
pub fn objects(doc: &Value) -> impl Iterator<Item = &Value> {
    doc.get("nftables")
        .and_then(Value::as_array)
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
}

/// Whether a `nft -j list tables` document lists `table`.
pub fn has_table(doc: &Value, table: &Table) -> bool {
    let family = family(table.family);
    objects(doc).any(|o| {
        o.get("table")
            .is_some_and(|t| t["family"] == family && t["name"] == table.name.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::nft::model::Family;
    use serde_json::json;

    #[test]
    fn finds_a_table_by_family_and_name() {
        let doc = json!({ "nftables": [
            { "metainfo": { "version": "1.0.6" } },
            { "table": { "family": "ip", "name": "netcontainer", "handle": 1 } },
            { "table": { "family": "ip6", "name": "other", "handle": 2 } }
        ]});
        let t = |family, name: &str| Table {
            family,
            name: name.into(),
        };
        assert!(has_table(&doc, &t(Family::Ipv4, "netcontainer")));
        assert!(!has_table(&doc, &t(Family::Ipv6, "netcontainer")));
        assert!(has_table(&doc, &t(Family::Ipv6, "other")));
        assert!(!has_table(&json!({}), &t(Family::Ipv4, "netcontainer")));
        assert_eq!(objects(&json!({ "nftables": 3 })).count(), 0);
    }
}
