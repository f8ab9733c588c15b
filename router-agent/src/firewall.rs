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
//! Layout (per protocol, a map or set only when it has elements; the
//! rule count depends on the kinds present, never on the number of forwards):
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
//! - `<p>_addr_keep` (hash) and `<p>_addr_keep_range` (interval): forwards
//!   that keep the port; one element per forward, a range is one interval.
//! - `<p>_cnt` (hash) and `<p>_cnt_range` (interval) sets with a `counter`
//!   statement (each element gets its own counter), keyed by each forward's
//!   public port(s) and looked up in the forward chain with
//!   `ct original proto-dst`, so both directions of a forwarded connection
//!   are counted. Optional ([`RulesetConfig::counters`]): they double the
//!   apply time of big plans.
//!
//! The batch is plain JSON (`serde_json::Value`), not the `nftables` crate's
//! typed schema: the crate (0.6.3) has no `stmt` on sets, and its set types
//! lack `counter`/`verdict`, so it cannot express counter sets or objref
//! maps. Running `nft -j -f -` ourselves also captures nft's stderr, which
//! the crate's helper drops.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::Duration;

use netcontainer_proto::{Forward, ForwardStatus, Protocol};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The default table name (family `ip`).
pub const DEFAULT_TABLE: &str = "netcontainer";
/// The default conntrack/packet mark ("NC").
pub const DEFAULT_MARK: u32 = 0x4e43;
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
    /// Keep per-forward packet/byte counters (two counter sets per protocol
    /// and one lookup rule per set in the forward chain). Without them
    /// [`Nft::counters`] reads zeros; applying is cheaper for big plans.
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
    for f in forwards {
        f.validate().map_err(FirewallError::Invalid)?;
    }
    let mut sorted: Vec<&Forward> = forwards.iter().collect();
    sorted.sort_by_key(|f| (f.protocol, f.public_port));
    for w in sorted.windows(2) {
        if w[0].protocol == w[1].protocol && w[1].public_port <= w[0].public_port_end {
            return Err(FirewallError::Invalid(format!(
                "forwards {} and {} overlap",
                w[0], w[1]
            )));
        }
    }
    Ok(())
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

fn port_key(start: u16, end: u16) -> Value {
    if start == end {
        Value::from(start)
    } else {
        let mut range = serde_json::Map::new();
        range.insert("range".into(), Value::Array(vec![start.into(), end.into()]));
        Value::Object(range)
    }
}

fn counter_set_name(p: Protocol, range: bool) -> String {
    if range {
        format!("{p}_cnt_range")
    } else {
        format!("{p}_cnt")
    }
}

/// Maps and sets of one protocol, as element lists. Built with plain
/// `Value` constructors (the `json!` macro re-serializes every interpolated
/// value, which dominated rendering time for big plans).
#[derive(Default)]
struct ProtoMaps {
    addr_move: Vec<Value>,
    /// Distinct target addresses of `addr_move` (the map is skipped when
    /// there is only one: `dnat to ADDR : tcp dport map @port_move`).
    move_targets: std::collections::BTreeSet<Ipv4Addr>,
    port_move: Vec<Value>,
    addr_keep: Vec<Value>,
    addr_keep_range: Vec<Value>,
    /// Counter set keys; the set's `counter` statement gives each element
    /// its own counter.
    cnt: Vec<Value>,
    cnt_range: Vec<Value>,
}

fn proto_maps(forwards: &[Forward], p: Protocol) -> ProtoMaps {
    let mut m = ProtoMaps::default();
    for f in forwards.iter().filter(|f| f.protocol == p) {
        let key = port_key(f.public_port, f.public_port_end);
        let addr = Value::String(f.target_address.to_string());
        let single = f.public_port_end == f.public_port;
        if single {
            m.cnt.push(key.clone());
        } else {
            m.cnt_range.push(key.clone());
        }
        if f.target_port == f.public_port {
            let elem = Value::Array(vec![key, addr]);
            if single {
                m.addr_keep.push(elem);
            } else {
                m.addr_keep_range.push(elem);
            }
        } else {
            for off in 0..=(f.public_port_end - f.public_port) {
                let port = f.public_port + off;
                // Validation guarantees target_port + len - 1 <= 65535; stay
                // total anyway (render is pure and never panics).
                let target = f.target_port.saturating_add(off);
                m.addr_move
                    .push(Value::Array(vec![port.into(), addr.clone()]));
                m.move_targets.insert(f.target_address);
                m.port_move
                    .push(Value::Array(vec![port.into(), target.into()]));
            }
        }
    }
    m
}

/// Renders the batch that atomically replaces our table with one holding
/// `forwards` to `lease_address` on `cfg.lan_if`. Pure: no validation beyond
/// what types guarantee; [`Firewall::apply`] validates first.
///
/// Returns the `{"nftables": [...]}` document for `nft -j -f -`.
pub fn render(cfg: &RulesetConfig, forwards: &[Forward], lease_address: Ipv4Addr) -> Value {
    let t = cfg.table.as_str();
    let lan = cfg.lan_if.as_str();
    let mark = cfg.mark;
    let table = json!({ "table": { "family": "ip", "name": t } });
    let mut cmds: Vec<Value> = vec![
        json!({ "add": table.clone() }),
        json!({ "delete": table }),
        json!({ "add": { "table": { "family": "ip", "name": t } } }),
    ];
    let chain = |name: &str, kind: &str, hook: &str, prio: i32| {
        json!({ "add": { "chain": {
            "family": "ip", "table": t, "name": name,
            "type": kind, "hook": hook, "prio": prio, "policy": "accept"
        } } })
    };
    cmds.push(chain("mark", "filter", "prerouting", -150));
    cmds.push(chain("prerouting", "nat", "prerouting", -100));
    cmds.push(chain("forward", "filter", "forward", 0));
    cmds.push(chain("postrouting", "nat", "postrouting", 100));

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

    // Sets and maps.
    let mut nat_rules = Vec::new();
    let mut count_rules = Vec::new();
    for p in PROTOCOLS {
        let maps = proto_maps(forwards, p);
        let mut add_set = |name: String,
                           key: &str,
                           data: Option<&str>,
                           interval: bool,
                           counter: bool,
                           elem: Vec<Value>| {
            let mut o = json!({ "family": "ip", "table": t, "name": name, "type": key });
            if let Some(d) = data {
                o["map"] = json!(d);
            }
            if interval {
                o["flags"] = json!(["interval"]);
            }
            if counter {
                o["stmt"] = json!([{ "counter": null }]);
            }
            // nft refuses an empty "elem" array; callers skip empty sets.
            o["elem"] = Value::Array(elem);
            let kind = if data.is_some() { "map" } else { "set" };
            cmds.push(json!({ "add": { kind: o } }));
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
        if !maps.addr_move.is_empty() {
            let (a, pm) = (format!("{p}_addr_move"), format!("{p}_port_move"));
            let addr = match (maps.move_targets.len(), maps.move_targets.first()) {
                (1, Some(only)) => json!(only.to_string()),
                _ => {
                    add_set(
                        a.clone(),
                        "inet_service",
                        Some("ipv4_addr"),
                        false,
                        false,
                        maps.addr_move,
                    );
                    lookup(&a)
                }
            };
            add_set(
                pm.clone(),
                "inet_service",
                Some("inet_service"),
                false,
                false,
                maps.port_move,
            );
            let mut e = dnat_head();
            e.push(json!({ "dnat": { "addr": addr, "port": lookup(&pm) } }));
            nat_rules.push(rule("prerouting", e));
        }
        for (name, elems, interval) in [
            (format!("{p}_addr_keep"), maps.addr_keep, false),
            (format!("{p}_addr_keep_range"), maps.addr_keep_range, true),
        ] {
            if elems.is_empty() {
                continue;
            }
            add_set(
                name.clone(),
                "inet_service",
                Some("ipv4_addr"),
                interval,
                false,
                elems,
            );
            let mut e = dnat_head();
            e.push(json!({ "dnat": { "addr": lookup(&name) } }));
            nat_rules.push(rule("prerouting", e));
        }
        for (range, elems) in [(false, maps.cnt), (true, maps.cnt_range)] {
            if elems.is_empty() || !cfg.counters {
                continue;
            }
            let name = counter_set_name(p, range);
            add_set(name.clone(), "inet_service", None, range, true, elems);
            let mut e = our_dnat();
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
    }

    // mark: new connections from the LAN get the ct mark; their packets
    // arriving elsewhere (replies from the service side) get the packet mark.
    cmds.push(rule(
        "mark",
        vec![
            from_lan(),
            m(ct("state"), "in", json!("new")),
            json!({ "mangle": { "key": ct("mark"), "value": mark } }),
        ],
    ));
    cmds.push(rule(
        "mark",
        vec![
            m(iifname(), "!=", json!(lan)),
            m(ct("mark"), "==", json!(mark)),
            json!({ "mangle": { "key": { "meta": { "key": "mark" } }, "value": ct("mark") } }),
        ],
    ));
    cmds.extend(nat_rules);
    cmds.extend(count_rules);
    // forward: from the LAN only DNATed connections (and their related
    // traffic) pass; everything else from the LAN is dropped.
    cmds.push(rule(
        "forward",
        vec![
            from_lan(),
            m(ct("state"), "in", json!(["established", "related"])),
            json!({ "accept": null }),
        ],
    ));
    cmds.push(rule(
        "forward",
        vec![
            from_lan(),
            m(ct("status"), "in", json!("dnat")),
            json!({ "accept": null }),
        ],
    ));
    cmds.push(rule("forward", vec![from_lan(), json!({ "drop": null })]));
    // postrouting: masquerade our DNATed connections toward the service.
    let mut e = vec![m(json!({ "meta": { "key": "oifname" } }), "!=", json!(lan))];
    e.extend(our_dnat());
    e.push(json!({ "masquerade": null }));
    cmds.push(rule("postrouting", e));

    json!({ "nftables": cmds })
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

    /// Runs one batch (`nft -j -f -`). nft applies it as one netlink
    /// transaction: on error nothing changed, and the error holds nft's text.
    pub async fn apply(&self, batch: &Value) -> Result<(), FirewallError> {
        let argv = self.argv(&["-j", "-f", "-"]);
        let input = serde_json::to_vec(batch).map_err(|source| FirewallError::Parse {
            op: "apply",
            source,
        })?;
        let out = run("apply nftables batch", &argv, Some(input)).await?;
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

/// Extracts per-forward counters from a `nft -j list table` document.
pub fn counters_from_listing(doc: &Value, forwards: &[Forward]) -> Vec<ForwardStatus> {
    let mut found: HashMap<(Protocol, u16, u16), (u64, u64)> = HashMap::new();
    for set in objects(doc).filter_map(|o| o.get("set")) {
        let Some(name) = set["name"].as_str() else {
            continue;
        };
        let Some(p) = PROTOCOLS
            .into_iter()
            .find(|p| name == counter_set_name(*p, false) || name == counter_set_name(*p, true))
        else {
            continue;
        };
        for e in set["elem"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
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
            let (packets, bytes) = found
                .get(&(f.protocol, f.public_port, f.public_port_end))
                .copied()
                .unwrap_or((0, 0));
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
        let batch = render(&self.cfg, forwards, lease_address);
        self.nft.apply(&batch).await?;
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

    /// A mix like the benchmark's: single ports with another target port, and
    /// port-preserving ranges of 10, alternating tcp/udp.
    fn many(n: usize) -> Vec<Forward> {
        let mut next = [1024u16, 1024u16];
        (0..n)
            .map(|i| {
                let (protocol, slot) = if i % 2 == 0 {
                    (Protocol::Tcp, 0)
                } else {
                    (Protocol::Udp, 1)
                };
                let start = next[slot];
                let target_address = Ipv4Addr::new(192, 0, 2, 2 + (i % 50) as u8);
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
        let doc = render(&cfg, &three(), lease());
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
    fn rule_count_does_not_grow_with_forwards() {
        let cfg = RulesetConfig::default();
        let small = render(&cfg, &many(6), lease());
        let big = render(&cfg, &many(3000), lease());
        for chain in ["mark", "prerouting", "forward", "postrouting"] {
            assert_eq!(
                rules(&small, chain).len(),
                rules(&big, chain).len(),
                "chain {chain}"
            );
        }
        // tcp+udp x (move, keep-range) dnat rules; (single, range) counter sets.
        assert_eq!(rules(&big, "prerouting").len(), 4);
        assert_eq!(rules(&big, "forward").len(), 4 + 3);
        assert_eq!(rules(&big, "mark").len(), 2);
        assert_eq!(rules(&big, "postrouting").len(), 1);
        // All kinds present: 3 dnat rules per protocol.
        let mut all = many(6);
        all.push(fwd("tcp:9000=192.0.2.9:9000"));
        all.push(fwd("udp:9000=192.0.2.9:9000"));
        assert_eq!(rules(&render(&cfg, &all, lease()), "prerouting").len(), 6);
        // No forwards: the filter and mark rules only.
        let none = render(&cfg, &[], lease());
        assert!(rules(&none, "prerouting").is_empty());
        assert_eq!(rules(&none, "forward").len(), 3);
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
        ];
        let doc = render(&cfg, &fw, lease());
        let keep = set(&doc, "tcp_addr_keep_range");
        assert_eq!(keep["flags"], json!(["interval"]));
        assert_eq!(keep["map"], "ipv4_addr");
        assert_eq!(
            keep["elem"],
            json!([[{ "range": [7000, 7999] }, "192.0.2.2"]])
        );
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
        assert!(!doc.to_string().contains("udp_addr_move"));
        assert_eq!(set(&doc, "udp_port_move")["map"], "inet_service");
        // One counter element per forward, ranges as one interval.
        let c = set(&doc, "tcp_cnt_range");
        assert_eq!(c["flags"], json!(["interval"]));
        assert_eq!(c["stmt"], json!([{ "counter": null }]));
        assert_eq!(c["elem"].as_array().unwrap().len(), 1);
        assert_eq!(c["elem"][0], json!({ "range": [7000, 7999] }));
        assert_eq!(
            set(&doc, "udp_cnt_range")["elem"].as_array().unwrap().len(),
            1
        );
        assert_eq!(set(&doc, "tcp_cnt")["elem"], json!([80, 81]));
        // The move rule takes address and port from two lookups.
        let nat = rules(&doc, "prerouting");
        let dnat = &nat[0]["expr"].as_array().unwrap().last().unwrap()["dnat"];
        assert_eq!(dnat["addr"]["map"]["data"], "@tcp_addr_move");
        assert_eq!(dnat["port"]["map"]["data"], "@tcp_port_move");
        let udp_dnat = nat
            .iter()
            .map(|r| &r["expr"].as_array().unwrap().last().unwrap()["dnat"])
            .find(|d| d["port"]["map"]["data"] == "@udp_port_move")
            .unwrap();
        assert_eq!(udp_dnat["addr"], "192.0.2.4");
        // Without counters: no counter sets, no counting rules.
        let plain = render(
            &RulesetConfig {
                counters: false,
                ..cfg.clone()
            },
            &fw,
            lease(),
        );
        assert!(!plain.to_string().contains("_cnt"));
        assert_eq!(rules(&plain, "forward").len(), 3);
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
        let doc = json!({ "nftables": [
            { "metainfo": { "version": "1.0.6" } },
            { "set": { "family": "ip", "name": "tcp_cnt", "table": "netcontainer", "type": "inet_service",
                "elem": [ { "elem": { "val": 80, "counter": { "packets": 3, "bytes": 180 } } } ] } },
            { "set": { "family": "ip", "name": "tcp_cnt_range", "table": "netcontainer", "type": "inet_service",
                "flags": ["interval"],
                "elem": [ { "elem": { "val": { "range": [7000, 7009] }, "counter": { "packets": 5, "bytes": 500 } } } ] } },
            { "map": { "family": "ip", "name": "udp_addr_move", "table": "netcontainer", "type": "inet_service",
                "map": "ipv4_addr", "elem": [[5000, "192.0.2.2"]] } }
        ]});
        let st = counters_from_listing(&doc, &three());
        assert_eq!(st.len(), 3);
        assert_eq!((st[0].packets, st[0].bytes), (3, 180));
        assert_eq!((st[1].packets, st[1].bytes), (5, 500));
        assert_eq!(
            (st[2].packets, st[2].bytes, st[2].public_port),
            (0, 0, 5000)
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
            "dnat to tcp dport map @tcp_addr_keep_range",
            "7000-7009 : 192.0.2.2",
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
        fw.apply(&[fwd("udp:53=192.0.2.5:53")], lease())
            .await
            .unwrap();
        let l2 = ns.exec(&["nft", "list", "table", "ip", "netcontainer"]);
        assert!(
            l2.contains("53 : 192.0.2.5") && !l2.contains("7000-7009"),
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
        let mut batch = render(&fw.cfg, &[fwd("tcp:443=192.0.2.9:443")], lease());
        batch["nftables"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "add": { "rule": {
            "family": "ip", "table": "netcontainer", "chain": "forward",
            "expr": [ { "jump": { "target": "no_such_chain" } } ] } } }));
        let err = fw.nft.apply(&batch).await.unwrap_err();
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
        let forwards = three();
        fw.apply(&forwards, lease()).await.unwrap();
        let zero = fw.counters(&forwards).await.unwrap();
        assert!(
            zero.iter().all(|s| s.packets == 0 && s.bytes == 0),
            "{zero:?}"
        );

        // udp 5000 -> 192.0.2.2:6000: request and echoed reply, 3 times.
        let got = in_netns(&p, || {
            use std::net::UdpSocket;
            let service = UdpSocket::bind("192.0.2.2:6000").unwrap();
            service
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let client = UdpSocket::bind("198.51.100.1:0").unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let mut replies = 0;
            let mut buf = [0u8; 64];
            for _ in 0..3 {
                client.send_to(b"ping", "198.51.100.10:5000").unwrap();
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
        });
        assert_eq!(got, 3, "forwarded udp did not come back");
        let st = fw.counters(&forwards).await.unwrap();
        assert_eq!(st[2].public_port, 5000);
        assert_eq!(st[2].packets, 6, "{st:?}");
        assert_eq!(st[2].bytes, 6 * (20 + 8 + 4), "{st:?}");
        assert_eq!((st[0].packets, st[1].packets), (0, 0));

        // The flow is tracked with our mark; flushing the old target removes it.
        let ct = router.exec(&["conntrack", "-L", "-p", "udp"]);
        assert!(ct.contains("mark=20035"), "{ct}");
        let n = fw
            .flush_conntrack_to(&[(Protocol::Udp, Ipv4Addr::new(192, 0, 2, 2))])
            .await
            .unwrap();
        assert_eq!(n, 1);
        // Nothing left: not an error.
        let n = fw
            .flush_conntrack_to(&[(Protocol::Udp, Ipv4Addr::new(192, 0, 2, 2))])
            .await
            .unwrap();
        assert_eq!(n, 0);
    }
}
