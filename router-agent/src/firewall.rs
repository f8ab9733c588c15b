//! The agent's nftables table: DNAT of the forwarded ports from the leased
//! address to the service, reply marking for policy routing, masquerade
//! toward the service, a forward filter for LAN traffic and per-forward
//! counters.
//!
//! Everything lives in one table of our own (`ip netcontainer` by default),
//! replaced atomically by one `nft -j -f -` batch
//! (`add table; delete table; add table; ...`). Other tables (Docker's) are
//! never listed, flushed or touched.
//!
//! Layout (per protocol, a map or set only when it has elements; the rule
//! count depends on the kinds present, never on the number of forwards):
//!
//! - `<p>_port_move` (`inet_service : inet_service`) and, when the moved
//!   ports go to more than one address, `<p>_addr_move`
//!   (`inet_service : ipv4_addr`): ports whose target port differs, one
//!   element per port, used as `dnat to <p> dport map @addr_move : <p> dport
//!   map @port_move` (or `dnat to ADDR : <p> dport map @port_move`).
//!   nft 1.0.6's JSON parser refuses concatenated map data
//!   (`"map": "ipv4_addr . inet_service"` gives "Invalid map type", the array
//!   form "set is not a map"), hence two lookups instead of
//!   `dnat ip addr . port to`.
//! - `<p>_addr_keep` (hash) and `<p>_addr_keep_range` (interval) maps to the
//!   target address: forwards that keep the port; one element per forward, a
//!   range is one interval. When they all go to one address (the usual
//!   case), port sets `<p>_keep` and `<p>_keep_range` instead, used as
//!   `<p> dport @keep dnat to ADDR` (cheaper for nft than map data).
//!
//! Per-forward counters ([`RulesetConfig::counters`]) live in the elements
//! of those maps and sets themselves (`counter` on all but `<p>_addr_move`;
//! every public port is in exactly one of them), so the table holds one
//! element per forward, not two. A lookup that finds an element runs its
//! counter, so each packet must hit exactly one lookup: the first packet of
//! a connection is counted by the DNAT rule (nat chains see only that
//! packet), every later packet of both directions by a lookup-only rule per
//! map or set in the forward chain, keyed by `ct original proto-dst` and
//! restricted to `ct status confirmed` (the entry is confirmed when the
//! first packet leaves, after the forward hook). A moved range has one
//! counter per port, summed when read. Separate counter sets (one more
//! element per forward) made nft take about 25% longer for 10,000 forwards.
//!
//! The batch is JSON written as text ([`render`]), not the `nftables`
//! crate's typed schema: the crate (0.6.3) has no `stmt` on sets, and its
//! set types lack `counter`/`verdict`, so it cannot express counter maps.
//! nft 1.0.6 parses this JSON faster than the same table in its native
//! syntax (10,000 forwards: about 40 vs 60 ms of nft user time), and the
//! elements are written without building a `serde_json::Value` per element
//! (rendering 10,000 forwards: about 1 ms instead of 10-20).
//! Running `nft -j -f -` ourselves also captures nft's stderr, which the
//! crate's helper drops.
//!
//! Cost floor: whatever the size, a batch that deletes anything makes nft's
//! exit wait for an RCU grace period and the freeing of the old table (the
//! kernel flushes its deferred destroy work when nft's netlink socket
//! closes): 10-20 ms here for an empty table, on top of 3-4 ms of starting
//! nft (`examples/firewall_bench.rs` prints both).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::Duration;

use netcontainer_proto::{Forward, ForwardStatus, Protocol};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The default table name (family `ip`).
pub const DEFAULT_TABLE: &str = netcontainer_proto::contract::NFT_TABLE;
/// The default conntrack/packet mark ("NC").
pub const DEFAULT_MARK: u32 = netcontainer_proto::contract::MARK;
/// How long one nft or conntrack run may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the firewall module. Each names the operation and carries the
/// tool's own error text.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("invalid firewall input: {0}")]
    Invalid(String),
    #[error("{op}: cannot run {program}: {source}")]
    Spawn {
        op: &'static str,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{op}: {program} timed out after {}s", COMMAND_TIMEOUT.as_secs())]
    Timeout { op: &'static str, program: String },
    #[error("{op}: {program} failed ({status}): {stderr}")]
    Failed {
        op: &'static str,
        program: String,
        status: String,
        stderr: String,
    },
    #[error("{op}: cannot parse nft output: {source}")]
    Parse {
        op: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// What the rendered table depends on besides the forwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesetConfig {
    /// The LAN-side interface (macvlan with the leased address).
    pub lan_if: String,
    /// Our table's name (family `ip`).
    pub table: String,
    /// Conntrack mark of connections arriving on `lan_if`, copied to the
    /// packet mark of their replies (for `ip rule fwmark <mark>`).
    pub mark: u32,
    /// Keep per-forward packet/byte counters (a counter in each element of
    /// the DNAT maps, and one lookup rule per map in the forward chain).
    /// Without them [`Nft::counters`] reads zeros; applying is cheaper for
    /// big plans.
    pub counters: bool,
}

impl Default for RulesetConfig {
    fn default() -> Self {
        RulesetConfig {
            lan_if: "lan0".into(),
            table: DEFAULT_TABLE.into(),
            mark: DEFAULT_MARK,
            counters: true,
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
        let t = &self.table;
        if t.is_empty()
            || t.len() > 64
            || !t.starts_with(|c: char| c.is_ascii_alphabetic())
            || !t
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(FirewallError::Invalid(format!("invalid table name {t:?}")));
        }
        if self.mark == 0 {
            return Err(FirewallError::Invalid("mark must not be 0".into()));
        }
        Ok(())
    }
}

/// Checks every forward and that no two forwards of a protocol overlap
/// (O(n log n), unlike `Plan::validate`, so that big plans stay cheap).
pub fn validate_forwards(forwards: &[Forward]) -> Result<(), FirewallError> {
    netcontainer_proto::validate_forwards(forwards).map_err(FirewallError::Invalid)
}

fn validate_lease(lease: Ipv4Addr) -> Result<(), FirewallError> {
    if lease.is_unspecified() || lease.is_broadcast() || lease.is_multicast() {
        return Err(FirewallError::Invalid(format!(
            "lease address {lease} is not unicast"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Rendering (pure)
// ---------------------------------------------------------------------------

const PROTOCOLS: [Protocol; 2] = [Protocol::Tcp, Protocol::Udp];

/// The maps and sets that carry the per-forward counters (every forward's
/// ports are in exactly one of them; `<p>_addr_move` never has counters).
fn counting_sets(p: Protocol) -> [String; 5] {
    [
        format!("{p}_port_move"),
        format!("{p}_addr_keep"),
        format!("{p}_addr_keep_range"),
        format!("{p}_keep"),
        format!("{p}_keep_range"),
    ]
}

/// One set or map element, written straight into the JSON text.
enum Elem {
    /// `port-or-range` (a set element)
    Key(u16, u16),
    /// `port : port`
    Port(u16, u16),
    /// `port-or-range : address`
    Addr(u16, u16, Ipv4Addr),
}

impl Elem {
    fn write(&self, out: &mut String) {
        use std::fmt::Write;
        let key = |out: &mut String, start: u16, end: u16| {
            if start == end {
                let _ = write!(out, "{start}");
            } else {
                let _ = write!(out, r#"{{"range":[{start},{end}]}}"#);
            }
        };
        match *self {
            Elem::Key(start, end) => key(out, start, end),
            Elem::Port(port, target) => {
                let _ = write!(out, "[{port},{target}]");
            }
            Elem::Addr(start, end, addr) => {
                out.push('[');
                key(out, start, end);
                let _ = write!(out, r#","{addr}"]"#);
            }
        }
    }

    /// The element without its data (`Addr` as `Key`).
    fn key_only(&self) -> Elem {
        match *self {
            Elem::Key(start, end) | Elem::Addr(start, end, _) => Elem::Key(start, end),
            Elem::Port(port, _) => Elem::Key(port, port),
        }
    }
}

/// Maps and sets of one protocol, as element lists.
#[derive(Default)]
struct ProtoMaps {
    addr_move: Vec<Elem>,
    /// Distinct target addresses of `addr_move` (the map is skipped when
    /// there is only one: `dnat to ADDR : tcp dport map @port_move`).
    move_targets: std::collections::BTreeSet<Ipv4Addr>,
    port_move: Vec<Elem>,
    addr_keep: Vec<Elem>,
    addr_keep_range: Vec<Elem>,
    /// Distinct target addresses of the port-keeping forwards (with only
    /// one, sets of ports replace the address maps:
    /// `tcp dport @keep dnat to ADDR`).
    keep_targets: std::collections::BTreeSet<Ipv4Addr>,
}

fn proto_maps(forwards: &[Forward], p: Protocol) -> ProtoMaps {
    let mut m = ProtoMaps::default();
    for f in forwards.iter().filter(|f| f.protocol == p) {
        let (start, end, addr) = (f.public_port, f.public_port_end, f.target_address);
        if f.target_port == start {
            m.keep_targets.insert(addr);
            let elem = Elem::Addr(start, end, addr);
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
                // total anyway (render is pure and never panics).
                let target = f.target_port.saturating_add(off);
                m.addr_move.push(Elem::Addr(port, port, addr));
                m.port_move.push(Elem::Port(port, target));
            }
        }
    }
    m
}

/// The batch document, written as text: the commands are small `Value`s,
/// the (possibly tens of thousands of) map elements are written directly
/// (building and serializing a `Value` per element cost more than nft's
/// own parsing of them).
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
    /// an empty "elem" array, callers skip empty sets.
    fn push_set(&mut self, head: &Value, elems: &[Elem]) {
        self.sep();
        let kind = if head.get("map").is_some() {
            "map"
        } else {
            "set"
        };
        let head = head.to_string();
        self.out.push_str(r#"{"add":{""#);
        self.out.push_str(kind);
        self.out.push_str(r#"":"#);
        // `head` is an object: reopen it to append the elements.
        self.out.push_str(&head[..head.len() - 1]);
        self.out.push_str(r#","elem":["#);
        for (i, e) in elems.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            e.write(&mut self.out);
        }
        self.out.push_str("]}}}");
    }

    fn finish(mut self) -> String {
        self.out.push_str("]}");
        self.out
    }
}

/// Renders the batch that atomically replaces our table with one holding
/// `forwards` to `lease_address` on `cfg.lan_if`. Pure: no validation beyond
/// what types guarantee; [`Firewall::apply`] validates first.
///
/// Returns the `{"nftables": [...]}` JSON document for `nft -j -f -`.
pub fn render(cfg: &RulesetConfig, forwards: &[Forward], lease_address: Ipv4Addr) -> String {
    let t = cfg.table.as_str();
    let lan = cfg.lan_if.as_str();
    let mark = cfg.mark;
    // ~30 bytes per element plus the fixed part.
    let ports: usize = forwards.iter().map(|f| f.len() as usize).sum();
    let mut b = Batch::new(4096 + 40 * (forwards.len() + ports));
    let table = json!({ "table": { "family": "ip", "name": t } });
    b.push(&json!({ "add": table }));
    b.push(&json!({ "delete": table }));
    b.push(&json!({ "add": table }));
    let chain = |name: &str, kind: &str, hook: &str, prio: i32| {
        json!({ "add": { "chain": {
            "family": "ip", "table": t, "name": name,
            "type": kind, "hook": hook, "prio": prio, "policy": "accept"
        } } })
    };
    b.push(&chain("mark", "filter", "prerouting", -150));
    b.push(&chain("prerouting", "nat", "prerouting", -100));
    b.push(&chain("forward", "filter", "forward", 0));
    b.push(&chain("postrouting", "nat", "postrouting", 100));

    let rule = |chain: &str, expr: Vec<Value>| json!({ "add": { "rule": { "family": "ip", "table": t, "chain": chain, "expr": expr } } });
    let m = |left: Value, op: &str, right: Value| json!({ "match": { "op": op, "left": left, "right": right } });
    let iifname = || json!({ "meta": { "key": "iifname" } });
    let ct = |key: &str| json!({ "ct": { "key": key } });
    let from_lan = || m(iifname(), "==", json!(lan));
    let our_dnat = || {
        vec![
            m(ct("mark"), "==", json!(mark)),
            m(ct("status"), "in", json!("dnat")),
        ]
    };

    // Maps.
    let mut nat_rules = Vec::new();
    let mut count_rules = Vec::new();
    for p in PROTOCOLS {
        let maps = proto_maps(forwards, p);
        let mut add_set =
            |name: &str, data: Option<&str>, interval: bool, counter: bool, elems: &[Elem]| {
                let mut o = json!({ "family": "ip", "table": t, "name": name,
                    "type": "inet_service" });
                if let Some(data) = data {
                    o["map"] = json!(data);
                }
                if interval {
                    o["flags"] = json!(["interval"]);
                }
                if counter {
                    o["stmt"] = json!([{ "counter": null }]);
                }
                b.push_set(&o, elems);
                if counter {
                    // Later packets (both directions) of our DNATed
                    // connections; the first one was counted by the DNAT
                    // rule's lookup (the conntrack entry is confirmed only
                    // when that packet leaves).
                    let mut e = our_dnat();
                    e.push(m(ct("status"), "in", json!("confirmed")));
                    e.push(m(
                        json!({ "meta": { "key": "l4proto" } }),
                        "==",
                        json!(p.as_str()),
                    ));
                    e.push(m(
                        json!({ "ct": { "key": "proto-dst", "dir": "original" } }),
                        "==",
                        json!(format!("@{name}")),
                    ));
                    count_rules.push(rule("forward", e));
                }
            };
        let dport = json!({ "payload": { "protocol": p.as_str(), "field": "dport" } });
        let lookup =
            |map: &str| json!({ "map": { "key": dport.clone(), "data": format!("@{map}") } });
        let dnat_head = || {
            vec![
                from_lan(),
                m(
                    json!({ "payload": { "protocol": "ip", "field": "daddr" } }),
                    "==",
                    json!(lease_address.to_string()),
                ),
                m(
                    json!({ "meta": { "key": "l4proto" } }),
                    "==",
                    json!(p.as_str()),
                ),
            ]
        };
        let [port_move, addr_keep, addr_keep_range, keep, keep_range] = counting_sets(p);
        if !maps.port_move.is_empty() {
            let addr = match (maps.move_targets.len(), maps.move_targets.first()) {
                (1, Some(only)) => json!(only.to_string()),
                _ => {
                    let a = format!("{p}_addr_move");
                    add_set(&a, Some("ipv4_addr"), false, false, &maps.addr_move);
                    lookup(&a)
                }
            };
            add_set(
                &port_move,
                Some("inet_service"),
                false,
                cfg.counters,
                &maps.port_move,
            );
            let mut e = dnat_head();
            e.push(json!({ "dnat": { "addr": addr, "port": lookup(&port_move) } }));
            nat_rules.push(rule("prerouting", e));
        }
        let keep_target = match (maps.keep_targets.len(), maps.keep_targets.first()) {
            (1, Some(only)) => Some(*only),
            _ => None,
        };
        for (interval, elems, map_name, set_name) in [
            (false, maps.addr_keep, addr_keep, keep),
            (true, maps.addr_keep_range, addr_keep_range, keep_range),
        ] {
            if elems.is_empty() {
                continue;
            }
            let mut e = dnat_head();
            if let Some(addr) = keep_target {
                let keys: Vec<Elem> = elems.iter().map(Elem::key_only).collect();
                add_set(&set_name, None, interval, cfg.counters, &keys);
                e.push(m(dport.clone(), "==", json!(format!("@{set_name}"))));
                e.push(json!({ "dnat": { "addr": addr.to_string() } }));
            } else {
                add_set(&map_name, Some("ipv4_addr"), interval, cfg.counters, &elems);
                e.push(json!({ "dnat": { "addr": lookup(&map_name) } }));
            }
            nat_rules.push(rule("prerouting", e));
        }
    }

    // mark: new connections from the LAN get the ct mark; their packets
    // arriving elsewhere (replies from the service side) get the packet mark.
    b.push(&rule(
        "mark",
        vec![
            from_lan(),
            m(ct("state"), "in", json!("new")),
            json!({ "mangle": { "key": ct("mark"), "value": mark } }),
        ],
    ));
    b.push(&rule(
        "mark",
        vec![
            m(iifname(), "!=", json!(lan)),
            m(ct("mark"), "==", json!(mark)),
            json!({ "mangle": { "key": { "meta": { "key": "mark" } }, "value": ct("mark") } }),
        ],
    ));
    for r in nat_rules.iter().chain(&count_rules) {
        b.push(r);
    }
    // forward: from the LAN only DNATed connections (and their related
    // traffic) pass; everything else from the LAN is dropped.
    b.push(&rule(
        "forward",
        vec![
            from_lan(),
            m(ct("state"), "in", json!(["established", "related"])),
            json!({ "accept": null }),
        ],
    ));
    b.push(&rule(
        "forward",
        vec![
            from_lan(),
            m(ct("status"), "in", json!("dnat")),
            json!({ "accept": null }),
        ],
    ));
    b.push(&rule("forward", vec![from_lan(), json!({ "drop": null })]));
    // forward toward the LAN: only replies of our DNATed connections. The
    // router is no gateway from the Docker side onto the LAN: another
    // container routing the LAN via the router (with its own or a spoofed
    // source) gets nothing through.
    let to_lan = || m(json!({ "meta": { "key": "oifname" } }), "==", json!(lan));
    let mut e = vec![to_lan()];
    e.extend(our_dnat());
    e.push(m(ct("direction"), "==", json!("reply")));
    e.push(json!({ "accept": null }));
    b.push(&rule("forward", e));
    b.push(&rule("forward", vec![to_lan(), json!({ "drop": null })]));
    // postrouting: masquerade our DNATed connections toward the service.
    let mut e = vec![m(json!({ "meta": { "key": "oifname" } }), "!=", json!(lan))];
    e.extend(our_dnat());
    e.push(json!({ "masquerade": null }));
    b.push(&rule("postrouting", e));

    b.finish()
}

// ---------------------------------------------------------------------------
// Running nft and conntrack
// ---------------------------------------------------------------------------

/// Output of a finished command.
struct Output {
    success: bool,
    status: String,
    stdout: Vec<u8>,
    stderr: String,
}

async fn run(
    op: &'static str,
    argv: &[String],
    stdin: Option<Vec<u8>>,
) -> Result<Output, FirewallError> {
    let program = argv.join(" ");
    let (exe, args) = argv
        .split_first()
        .ok_or_else(|| FirewallError::Invalid("empty command".into()))?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| FirewallError::Spawn {
        op,
        program: program.clone(),
        source,
    })?;
    // Write stdin concurrently with reading the output; if nft exits early
    // (bad input) the write fails with EPIPE, and nft's stderr says why.
    let writer = match (stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => Some(tokio::spawn(async move {
            let r = pipe.write_all(&data).await;
            drop(pipe);
            r
        })),
        _ => None,
    };
    let out = match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
        Ok(r) => r.map_err(|source| FirewallError::Spawn {
            op,
            program: program.clone(),
            source,
        })?,
        Err(_) => return Err(FirewallError::Timeout { op, program }),
    };
    let write_result = match writer {
        Some(w) => w.await.unwrap_or_else(|e| Err(std::io::Error::other(e))),
        None => Ok(()),
    };
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if let (true, Err(source)) = (out.status.success(), write_result) {
        return Err(FirewallError::Spawn {
            op,
            program,
            source,
        });
    }
    Ok(Output {
        success: out.status.success(),
        status: out.status.to_string(),
        stdout: out.stdout,
        stderr,
    })
}

fn failed(op: &'static str, argv: &[String], out: Output) -> FirewallError {
    FirewallError::Failed {
        op,
        program: argv.join(" "),
        status: out.status,
        stderr: out.stderr,
    }
}

/// How to run `nft`: the argv prefix, `["nft"]` by default, e.g.
/// `["ip", "netns", "exec", NAME, "nft"]` in tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nft {
    pub program: Vec<String>,
}

impl Default for Nft {
    fn default() -> Self {
        Nft {
            program: vec!["nft".into()],
        }
    }
}

impl Nft {
    /// `nft` run inside the named network namespace through `ip netns exec`.
    pub fn in_netns(name: &str) -> Self {
        Nft {
            program: ["ip", "netns", "exec", name, "nft"]
                .map(String::from)
                .to_vec(),
        }
    }

    fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut v = self.program.clone();
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    /// Runs one batch (`nft -j -f -`, the JSON document from [`render`]).
    /// nft applies it as one netlink transaction: on error nothing changed,
    /// and the error holds nft's text.
    pub async fn apply(&self, batch: &str) -> Result<(), FirewallError> {
        let argv = self.argv(&["-j", "-f", "-"]);
        let out = run(
            "apply nftables batch",
            &argv,
            Some(batch.as_bytes().to_vec()),
        )
        .await?;
        if !out.success {
            return Err(failed("apply nftables batch", &argv, out));
        }
        Ok(())
    }

    /// Whether table `ip <table>` exists (`nft -j list tables`).
    pub async fn table_exists(&self, table: &str) -> Result<bool, FirewallError> {
        let argv = self.argv(&["-j", "list", "tables"]);
        let out = run("list tables", &argv, None).await?;
        if !out.success {
            return Err(failed("list tables", &argv, out));
        }
        let doc: Value =
            serde_json::from_slice(&out.stdout).map_err(|source| FirewallError::Parse {
                op: "list tables",
                source,
            })?;
        Ok(objects(&doc).any(|o| {
            o.get("table")
                .is_some_and(|t| t["family"] == "ip" && t["name"] == table)
        }))
    }

    /// Deletes `ip <table>` if present. Returns whether it existed.
    pub async fn remove(&self, table: &str) -> Result<bool, FirewallError> {
        if !self.table_exists(table).await? {
            return Ok(false);
        }
        let argv = self.argv(&["delete", "table", "ip", table]);
        let out = run("delete table", &argv, None).await?;
        if out.success {
            return Ok(true);
        }
        // Raced with another delete: gone is what we wanted.
        if out.stderr.contains("No such file or directory") && !self.table_exists(table).await? {
            return Ok(false);
        }
        Err(failed("delete table", &argv, out))
    }

    /// `nft -j list table ip <table>`, parsed. Only our table is listed.
    pub async fn list_table(&self, table: &str) -> Result<Value, FirewallError> {
        let argv = self.argv(&["-j", "list", "table", "ip", table]);
        let out = run("list table", &argv, None).await?;
        if !out.success {
            return Err(failed("list table", &argv, out));
        }
        serde_json::from_slice(&out.stdout).map_err(|source| FirewallError::Parse {
            op: "list table",
            source,
        })
    }

    /// Per-forward packets/bytes (both directions), in the order of
    /// `forwards`. Forwards missing from the table (not applied) read 0.
    pub async fn counters(
        &self,
        cfg: &RulesetConfig,
        forwards: &[Forward],
    ) -> Result<Vec<ForwardStatus>, FirewallError> {
        let doc = self.list_table(&cfg.table).await?;
        Ok(counters_from_listing(&doc, forwards))
    }
}

fn objects(doc: &Value) -> impl Iterator<Item = &Value> {
    doc.get("nftables")
        .and_then(Value::as_array)
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
}

/// Extracts per-forward counters from a `nft -j list table` document: the
/// counters of the elements of our DNAT maps and sets (see the module
/// doc), one element per forward, or one per port for a range whose ports
/// move (summed).
pub fn counters_from_listing(doc: &Value, forwards: &[Forward]) -> Vec<ForwardStatus> {
    let mut found: HashMap<(Protocol, u16, u16), (u64, u64)> = HashMap::new();
    for map in objects(doc).filter_map(|o| o.get("map").or_else(|| o.get("set"))) {
        let Some(name) = map["name"].as_str() else {
            continue;
        };
        let Some(p) = PROTOCOLS
            .into_iter()
            .find(|p| counting_sets(*p).iter().any(|m| m == name))
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

/// How to run `conntrack` (package conntrack / conntrack-tools).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conntrack {
    pub program: Vec<String>,
}

impl Default for Conntrack {
    fn default() -> Self {
        Conntrack {
            program: vec!["conntrack".into()],
        }
    }
}

impl Conntrack {
    pub fn in_netns(name: &str) -> Self {
        Conntrack {
            program: ["ip", "netns", "exec", name, "conntrack"]
                .map(String::from)
                .to_vec(),
        }
    }

    /// Deletes the tracked connections carrying `mark` whose reply source
    /// (the DNAT target) is one of `old_targets`, so that they re-enter the
    /// NAT chain and reach the new target. No matching entry is not an error.
    pub async fn flush_to(
        &self,
        mark: u32,
        old_targets: &[(Protocol, Ipv4Addr)],
    ) -> Result<u64, FirewallError> {
        let mut targets = old_targets.to_vec();
        targets.sort();
        targets.dedup();
        let mut deleted = 0;
        for (p, addr) in targets {
            let mut argv = self.program.clone();
            argv.extend([
                "-D".to_string(),
                "-p".into(),
                p.as_str().into(),
                "--reply-src".into(),
                addr.to_string(),
                "--mark".into(),
                mark.to_string(),
            ]);
            let out = run("delete conntrack entries", &argv, None).await?;
            // conntrack prints "N flow entries have been deleted." on stderr and
            // exits 1 when N is 0.
            let n = out.stderr.lines().find_map(|l| {
                let (_, rest) = l.split_once("): ")?;
                rest.strip_suffix(" flow entries have been deleted.")?
                    .parse::<u64>()
                    .ok()
            });
            match n {
                Some(n) => {
                    tracing::debug!(protocol = %p, target = %addr, deleted = n, "conntrack entries deleted");
                    deleted += n;
                }
                None => return Err(failed("delete conntrack entries", &argv, out)),
            }
        }
        Ok(deleted)
    }
}

/// `(protocol, old target)` of every forward of `old` whose public ports are
/// not forwarded identically by `new`: their tracked flows should be flushed.
pub fn stale_targets(old: &[Forward], new: &[Forward]) -> Vec<(Protocol, Ipv4Addr)> {
    let new: std::collections::HashSet<&Forward> = new.iter().collect();
    let mut v: Vec<(Protocol, Ipv4Addr)> = old
        .iter()
        .filter(|f| !new.contains(f))
        .map(|f| (f.protocol, f.target_address))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The firewall of one agent: config plus how to run the tools.
#[derive(Clone, Debug, Default)]
pub struct Firewall {
    pub cfg: RulesetConfig,
    pub nft: Nft,
    pub conntrack: Conntrack,
}

impl Firewall {
    pub fn new(cfg: RulesetConfig) -> Self {
        Firewall {
            cfg,
            ..Firewall::default()
        }
    }

    /// Validates, renders and atomically applies the table. An invalid input
    /// never reaches nft; a failing batch leaves the previous table in place.
    pub async fn apply(
        &self,
        forwards: &[Forward],
        lease_address: Ipv4Addr,
    ) -> Result<(), FirewallError> {
        self.cfg.validate()?;
        validate_lease(lease_address)?;
        validate_forwards(forwards)?;
        self.nft
            .apply(&render(&self.cfg, forwards, lease_address))
            .await?;
        tracing::info!(table = %self.cfg.table, forwards = forwards.len(), lease = %lease_address, "nftables table applied");
        Ok(())
    }

    /// Deletes our table if present.
    pub async fn remove(&self) -> Result<bool, FirewallError> {
        let existed = self.nft.remove(&self.cfg.table).await?;
        if existed {
            tracing::info!(table = %self.cfg.table, "nftables table removed");
        }
        Ok(existed)
    }

    pub async fn counters(
        &self,
        forwards: &[Forward],
    ) -> Result<Vec<ForwardStatus>, FirewallError> {
        self.nft.counters(&self.cfg, forwards).await
    }

    /// Flushes tracked flows toward targets that `new` no longer uses as in `old`.
    pub async fn flush_conntrack_to(
        &self,
        old_targets: &[(Protocol, Ipv4Addr)],
    ) -> Result<u64, FirewallError> {
        self.conntrack.flush_to(self.cfg.mark, old_targets).await
    }
}

/// A mix of `n` forwards for the benchmark and the tests: two thirds single
/// ports with another target port, one third port-preserving ranges of 10,
/// alternating tcp/udp, over `addresses` target addresses (1 to 250).
#[doc(hidden)]
pub fn sample_forwards(n: usize, addresses: usize) -> Vec<Forward> {
    let addresses = addresses.clamp(1, 250);
    let mut next = [1024u16, 1024u16];
    (0..n)
        .map(|i| {
            let (protocol, slot) = if i % 2 == 0 {
                (Protocol::Tcp, 0)
            } else {
                (Protocol::Udp, 1)
            };
            let start = next[slot];
            let target_address = Ipv4Addr::new(192, 0, 2, 2 + (i % addresses) as u8);
            if i % 3 == 2 {
                next[slot] += 10;
                Forward {
                    protocol,
                    public_port: start,
                    public_port_end: start + 9,
                    target_address,
                    target_port: start,
                }
            } else {
                next[slot] += 1;
                Forward {
                    protocol,
                    public_port: start,
                    public_port_end: start,
                    target_address,
                    target_port: start.wrapping_add(30000).max(1),
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fwd(s: &str) -> Forward {
        Forward::parse(s).unwrap()
    }

    fn lease() -> Ipv4Addr {
        Ipv4Addr::new(198, 51, 100, 10)
    }

    fn three() -> Vec<Forward> {
        vec![
            fwd("tcp:80=192.0.2.2:8080"),
            fwd("tcp:7000-7009=192.0.2.2:7000"),
            fwd("udp:5000=192.0.2.2:6000"),
        ]
    }

    /// The benchmark's mix, over 50 target addresses.
    fn many(n: usize) -> Vec<Forward> {
        sample_forwards(n, 50)
    }

    /// The rendered batch, parsed (render writes JSON text).
    fn rendered(cfg: &RulesetConfig, forwards: &[Forward]) -> Value {
        serde_json::from_str(&render(cfg, forwards, lease())).expect("render writes valid JSON")
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
        let cfg = RulesetConfig::default();
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
        // Chains: exactly these four, with their hooks and priorities.
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
        let cfg = RulesetConfig::default();
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
        let cfg = RulesetConfig::default();
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
        let cfg = RulesetConfig::default();
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
            &RulesetConfig {
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
    fn validation_refuses_before_nft() {
        let fw = Firewall {
            nft: Nft {
                program: vec!["/nonexistent/nft".into()],
            },
            ..Firewall::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let overlapping = vec![
            fwd("tcp:7000-7009=192.0.2.2:7000"),
            fwd("tcp:7009=192.0.2.3:1"),
        ];
        let e = rt.block_on(fw.apply(&overlapping, lease())).unwrap_err();
        assert!(
            matches!(e, FirewallError::Invalid(ref m) if m.contains("overlap")),
            "{e}"
        );
        let bad = Forward {
            target_port: 0,
            ..fwd("tcp:80=192.0.2.2:80")
        };
        assert!(matches!(
            rt.block_on(fw.apply(&[bad], lease())),
            Err(FirewallError::Invalid(_))
        ));
        let e = rt
            .block_on(fw.apply(&three(), Ipv4Addr::UNSPECIFIED))
            .unwrap_err();
        assert!(matches!(e, FirewallError::Invalid(_)));
        let mut fw2 = fw.clone();
        fw2.cfg.lan_if = "bad\"name".into();
        assert!(matches!(
            rt.block_on(fw2.apply(&three(), lease())),
            Err(FirewallError::Invalid(_))
        ));
        // Valid input does reach the (missing) program.
        let e = rt.block_on(fw.apply(&three(), lease())).unwrap_err();
        assert!(matches!(e, FirewallError::Spawn { .. }), "{e}");
        // Non-adjacent same-protocol and cross-protocol same ports are fine.
        validate_forwards(&[
            fwd("tcp:80=192.0.2.2:80"),
            fwd("udp:80=192.0.2.2:80"),
            fwd("tcp:81-90=192.0.2.2:81"),
        ])
        .unwrap();
        validate_forwards(&many(10_000)).unwrap();
    }

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

    #[test]
    fn stale_targets_lists_changed_forwards() {
        let old = three();
        let mut new = three();
        new[0].target_address = Ipv4Addr::new(192, 0, 2, 7);
        new.remove(2);
        assert_eq!(
            stale_targets(&old, &new),
            vec![
                (Protocol::Tcp, Ipv4Addr::new(192, 0, 2, 2)),
                (Protocol::Udp, Ipv4Addr::new(192, 0, 2, 2))
            ]
        );
        assert!(stale_targets(&old, &old).is_empty());
    }

    // -----------------------------------------------------------------------
    // Root-only tests, each in network namespaces of its own.
    // -----------------------------------------------------------------------

    use std::sync::atomic::{AtomicUsize, Ordering};

    static NEXT_NS: AtomicUsize = AtomicUsize::new(0);

    fn sh(args: &[&str]) -> std::process::Output {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// A network namespace deleted on drop (even when the test fails).
    struct Netns {
        name: String,
    }

    impl Netns {
        fn new() -> Netns {
            let name = format!(
                "nc-fw-{}-{}",
                std::process::id(),
                NEXT_NS.fetch_add(1, Ordering::Relaxed)
            );
            sh(&["ip", "netns", "add", &name]);
            let ns = Netns { name };
            ns.exec(&["ip", "link", "set", "lo", "up"]);
            ns
        }

        fn exec(&self, args: &[&str]) -> String {
            let mut v = vec!["ip", "netns", "exec", &self.name];
            v.extend_from_slice(args);
            String::from_utf8(sh(&v).stdout).unwrap()
        }

        fn firewall(&self) -> Firewall {
            Firewall {
                cfg: RulesetConfig::default(),
                nft: Nft::in_netns(&self.name),
                conntrack: Conntrack::in_netns(&self.name),
            }
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", &self.name])
                .status();
        }
    }

    fn need_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            return true;
        }
        if std::env::var_os("CI").is_some() {
            panic!("root tests must run as root in CI");
        }
        eprintln!("skipping: needs root");
        false
    }

    #[tokio::test]
    async fn root_apply_reapply_remove_keeps_foreign_tables() {
        if !need_root() {
            return;
        }
        let ns = Netns::new();
        ns.exec(&["nft", "add table ip other; add chain ip other c { type filter hook input priority 0; }; add rule ip other c counter"]);
        let fw = ns.firewall();
        assert!(!fw.remove().await.unwrap(), "nothing to remove yet");
        fw.apply(&three(), lease()).await.unwrap();
        let listing = ns.exec(&["nft", "list", "table", "ip", "netcontainer"]);
        for want in [
            "iifname \"lan0\" ip daddr 198.51.100.10 meta l4proto tcp dnat to 192.0.2.2:tcp dport map @tcp_port_move",
            "iifname \"lan0\" ip daddr 198.51.100.10 tcp dport @tcp_keep_range dnat to 192.0.2.2",
            "elements = { 7000-7009 counter packets 0 bytes 0 }",
            "ct mark 0x00004e43 ct status dnat ct status confirmed meta l4proto tcp ct original proto-dst @tcp_keep_range",
            "ct mark set 0x00004e43",
            "meta mark set ct mark",
            "masquerade",
            "iifname \"lan0\" drop",
        ] {
            assert!(listing.contains(want), "missing {want:?} in\n{listing}");
        }
        // Re-apply: same table, no duplicates.
        fw.apply(&three(), lease()).await.unwrap();
        assert_eq!(
            ns.exec(&["nft", "list", "table", "ip", "netcontainer"]),
            listing
        );
        // Another plan replaces the content.
        // (Port-keeping forwards to two addresses: an address map.)
        fw.apply(
            &[fwd("udp:53=192.0.2.5:53"), fwd("udp:54=192.0.2.6:54")],
            lease(),
        )
        .await
        .unwrap();
        let l2 = ns.exec(&["nft", "list", "table", "ip", "netcontainer"]);
        assert!(
            l2.contains("53 counter packets 0 bytes 0 : 192.0.2.5")
                && l2.contains("dnat to udp dport map @udp_addr_keep")
                && !l2.contains("7000-7009"),
            "{l2}"
        );
        assert!(fw.remove().await.unwrap());
        assert!(!fw.nft.table_exists("netcontainer").await.unwrap());
        assert!(
            fw.nft.table_exists("other").await.unwrap(),
            "foreign table removed"
        );
        assert!(
            ns.exec(&["nft", "list", "table", "ip", "other"])
                .contains("counter")
        );
        assert!(!fw.remove().await.unwrap());
    }

    #[tokio::test]
    async fn root_failing_batch_keeps_previous_table() {
        if !need_root() {
            return;
        }
        let ns = Netns::new();
        let fw = ns.firewall();
        fw.apply(&three(), lease()).await.unwrap();
        let before = ns.exec(&["nft", "list", "table", "ip", "netcontainer"]);
        let mut batch: Value =
            serde_json::from_str(&render(&fw.cfg, &[fwd("tcp:443=192.0.2.9:443")], lease()))
                .unwrap();
        batch["nftables"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "add": { "rule": {
            "family": "ip", "table": "netcontainer", "chain": "forward",
            "expr": [ { "jump": { "target": "no_such_chain" } } ] } } }));
        let err = fw.nft.apply(&batch.to_string()).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, FirewallError::Failed { .. }), "{text}");
        assert!(
            text.contains("apply nftables batch") && text.contains("Error:"),
            "no nft text: {text}"
        );
        assert_eq!(
            ns.exec(&["nft", "list", "table", "ip", "netcontainer"]),
            before
        );
    }

    /// Runs `f` on a thread inside namespace `name`.
    fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{name}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap();
            use std::os::fd::AsRawFd;
            // SAFETY: valid fd; affects this thread only.
            assert_eq!(
                unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            f()
        })
        .join()
        .unwrap()
    }

    /// From the LAN client in namespace `peer` (198.51.100.1) to the lease's
    /// `public_port`, echoed by a service at 192.0.2.2:`service_port` (same
    /// namespace), `times` times; returns the number of replies.
    fn udp_echo(peer: &str, public_port: u16, service_port: u16, times: usize) -> usize {
        in_netns(peer, move || {
            use std::net::UdpSocket;
            let service = UdpSocket::bind(("192.0.2.2", service_port)).unwrap();
            service
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let client = UdpSocket::bind("198.51.100.1:0").unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut replies = 0;
            let mut buf = [0u8; 64];
            for _ in 0..times {
                client
                    .send_to(b"ping", ("198.51.100.10", public_port))
                    .unwrap();
                let Ok((n, from)) = service.recv_from(&mut buf) else {
                    break;
                };
                assert_eq!(from.ip().to_string(), "192.0.2.1", "not masqueraded");
                service.send_to(&buf[..n], from).unwrap();
                if client.recv_from(&mut buf).is_ok() {
                    replies += 1;
                }
            }
            replies
        })
    }

    #[tokio::test]
    async fn root_counters_rise_and_conntrack_flush() {
        if !need_root() {
            return;
        }
        // Router namespace with lan0 (198.51.100.10) and eth0 (192.0.2.1);
        // the peer namespace holds both the LAN client (198.51.100.1) and the
        // service (192.0.2.2).
        let router = Netns::new();
        let peer = Netns::new();
        let (r, p) = (router.name.clone(), peer.name.clone());
        sh(&[
            "ip", "link", "add", "lan0", "netns", &r, "type", "veth", "peer", "name", "c0",
            "netns", &p,
        ]);
        sh(&[
            "ip", "link", "add", "eth0", "netns", &r, "type", "veth", "peer", "name", "s0",
            "netns", &p,
        ]);
        router.exec(&["ip", "addr", "add", "198.51.100.10/24", "dev", "lan0"]);
        router.exec(&["ip", "addr", "add", "192.0.2.1/24", "dev", "eth0"]);
        peer.exec(&["ip", "addr", "add", "198.51.100.1/24", "dev", "c0"]);
        peer.exec(&["ip", "addr", "add", "192.0.2.2/24", "dev", "s0"]);
        for (ns, dev) in [
            (&router, "lan0"),
            (&router, "eth0"),
            (&peer, "c0"),
            (&peer, "s0"),
        ] {
            ns.exec(&["ip", "link", "set", dev, "up"]);
        }
        router.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        let fw = router.firewall();
        let mut forwards = three();
        // A port-keeping range (one interval element) and a moved range (one
        // counter per port, summed).
        forwards.push(fwd("udp:5100-5101=192.0.2.2:5100"));
        forwards.push(fwd("udp:5200-5201=192.0.2.2:6200"));
        fw.apply(&forwards, lease()).await.unwrap();
        let zero = fw.counters(&forwards).await.unwrap();
        assert!(
            zero.iter().all(|s| s.packets == 0 && s.bytes == 0),
            "{zero:?}"
        );

        // udp 5000 -> 192.0.2.2:6000: request and echoed reply, 3 times;
        // one exchange on 5101, 5200 and 5201. Each first packet is counted
        // by the DNAT lookup, the others by the forward chain: exactly once.
        assert_eq!(
            udp_echo(&p, 5000, 6000, 3),
            3,
            "forwarded udp did not come back"
        );
        assert_eq!(udp_echo(&p, 5101, 5101, 1), 1);
        assert_eq!(udp_echo(&p, 5200, 6200, 1), 1);
        assert_eq!(udp_echo(&p, 5201, 6201, 1), 1);
        let st = fw.counters(&forwards).await.unwrap();
        let packet = 20 + 8 + 4;
        assert_eq!(st[2].public_port, 5000);
        assert_eq!((st[2].packets, st[2].bytes), (6, 6 * packet), "{st:?}");
        assert_eq!((st[3].packets, st[3].bytes), (2, 2 * packet), "{st:?}");
        assert_eq!((st[4].packets, st[4].bytes), (4, 4 * packet), "{st:?}");
        assert_eq!((st[0].packets, st[1].packets), (0, 0));

        // The flow is tracked with our mark; flushing the old target removes it.
        let ct = router.exec(&["conntrack", "-L", "-p", "udp"]);
        assert!(ct.contains(&format!("mark={DEFAULT_MARK}")), "{ct}");
        let n = fw
            .flush_conntrack_to(&[(Protocol::Udp, Ipv4Addr::new(192, 0, 2, 2))])
            .await
            .unwrap();
        assert_eq!(n, 4);
        // Nothing left: not an error.
        let n = fw
            .flush_conntrack_to(&[(Protocol::Udp, Ipv4Addr::new(192, 0, 2, 2))])
            .await
            .unwrap();
        assert_eq!(n, 0);
    }
}
