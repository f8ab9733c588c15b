//! The agent's firewall: DNAT of the forwarded ports from the leased
//! address to the service, reply marking for policy routing, masquerade
//! toward the service, a forward filter for LAN traffic and per-forward
//! counters.
//!
//! - [`model`]: the ruleset as data (table, chains, typed rules, sets and
//!   maps), built by a pure function from `(config, forwards, lease)`.
//! - [`nft`]: the nftables backend ([`FirewallBackend`]): renders the model
//!   as one `nft -j -f -` batch, reads counters ([`counters`]) and deletes
//!   the table.
//! - [`runner`]: running `nft` and `conntrack` (timeouts, errors).
//! - [`conntrack`]: flushing flows whose target a new plan changed.
//! - [`Firewall`]: validation in front of a backend, what the agent holds.
//!
//! Everything lives in one table of our own (`ip netcontainer` by default),
//! replaced atomically by one batch (`add table; delete table; add table;
//! ...`). Other tables (Docker's) are never listed, flushed or touched.
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
//! Toward the LAN interface only replies of connections we DNATed pass: the
//! router is no gateway from the Docker side onto the LAN.
//!
//! Cost floor: whatever the size, a batch that deletes anything makes nft's
//! exit wait for an RCU grace period and the freeing of the old table (the
//! kernel flushes its deferred destroy work when nft's netlink socket
//! closes), on top of starting nft (`examples/firewall_bench.rs` prints
//! both).

pub mod conntrack;
pub mod counters;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod model;
pub mod nft;
pub mod policy;
pub mod runner;
#[cfg(test)]
pub(crate) mod sample;

use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};

use netcontainer_proto::{Forward, ForwardStatus, Protocol};

pub use conntrack::stale_targets;
pub use model::{
    DEFAULT_MARK, DEFAULT_TABLE, Family, Ruleset, RulesetConfig, Table, validate_forwards,
};
pub use nft::Nft;
pub use policy::{Ipv4Policy, Ipv6Policy, Policy};
pub use runner::Runner;

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
    #[error("{op}: {program} timed out after {}s", runner::COMMAND_TIMEOUT.as_secs())]
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

/// Puts a [`Ruleset`] into the kernel. A backend owns nothing but the way
/// to reach the kernel: the table it works on is always passed in.
pub trait FirewallBackend: Send + Sync {
    /// Atomically replaces the rulesets' tables with them, all in one
    /// transaction: on error every previous table stays as it was.
    fn apply(&self, rulesets: &[Ruleset])
    -> impl Future<Output = Result<(), FirewallError>> + Send;

    /// Deletes `table` if present; returns whether it existed.
    fn remove(&self, table: &Table) -> impl Future<Output = Result<bool, FirewallError>> + Send;

    /// Per-forward packets/bytes (both directions) in `table`, in the order
    /// of `forwards`; forwards missing from the table read 0.
    fn counters(
        &self,
        table: &Table,
        forwards: &[Forward],
    ) -> impl Future<Output = Result<Vec<ForwardStatus>, FirewallError>> + Send;
}

/// The firewall of one agent: its table's name, mark and counter setting
/// (fixed for its life), a backend, and how to run conntrack. Shared by
/// reference, never mutated: the LAN interface comes with each apply.
#[derive(Clone, Debug)]
pub struct Firewall<B = Nft> {
    table: String,
    mark: u32,
    counters: bool,
    /// Keep the IPv6 twin table (off in a kernel without IPv6).
    ipv6: bool,
    backend: B,
    conntrack: Runner,
}

/// What the IPv6 table forwards: the published ports arriving at
/// `addresses` go to `service` (kernel DNAT). The default (no address or
/// no service address) isolates only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct V6Rules {
    /// The LAN interface's global IPv6 addresses.
    pub addresses: Vec<Ipv6Addr>,
    /// The service's IPv6 address, when its Docker network has IPv6.
    pub service: Option<Ipv6Addr>,
    /// The forwards to DNAT (those aimed at the service).
    pub forwards: Vec<Forward>,
}

impl V6Rules {
    /// Whether the kernel forwards anything over IPv6 with these rules.
    pub fn forwards_anything(&self) -> bool {
        self.service.is_some() && !self.addresses.is_empty() && !self.forwards.is_empty()
    }
}

impl Firewall<Nft> {
    /// The default table and mark, with counters; nft and conntrack started
    /// by `runner`.
    pub fn new(runner: Runner) -> Self {
        Firewall::with_backend(Nft::new(runner.clone()), runner)
    }
}

impl<B: FirewallBackend> Firewall<B> {
    pub fn with_backend(backend: B, conntrack: Runner) -> Self {
        let cfg = RulesetConfig::default();
        Firewall {
            table: cfg.table,
            mark: cfg.mark,
            counters: cfg.counters,
            ipv6: true,
            backend,
            conntrack,
        }
    }

    /// Without an IPv6 table (a kernel without IPv6).
    pub fn with_ipv6(self, ipv6: bool) -> Self {
        Firewall { ipv6, ..self }
    }

    pub fn with_mark(self, mark: u32) -> Self {
        Firewall { mark, ..self }
    }

    pub fn with_table(self, table: &str) -> Self {
        Firewall {
            table: table.to_string(),
            ..self
        }
    }

    pub fn with_counters(self, counters: bool) -> Self {
        Firewall { counters, ..self }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The model's input for forwards arriving on `lan_if`.
    pub fn ruleset_config(&self, lan_if: &str) -> RulesetConfig {
        RulesetConfig {
            lan_if: lan_if.to_string(),
            table: self.table.clone(),
            mark: self.mark,
            counters: self.counters,
            gateway_for: None,
        }
    }

    /// Our IPv4 table.
    pub fn table(&self) -> Table {
        Table {
            family: Family::Ipv4,
            name: self.table.clone(),
        }
    }

    /// Validates, builds and atomically applies the table for `forwards`
    /// arriving at `lease_address` on `lan_if`, in gateway mode for
    /// `gateway_for` (the service's address) or in masquerade mode. An
    /// invalid input never reaches the backend; a failing apply leaves the
    /// previous table.
    pub async fn apply(
        &self,
        lan_if: &str,
        forwards: &[Forward],
        lease_address: Ipv4Addr,
        gateway_for: Option<Ipv4Addr>,
        v6: &V6Rules,
    ) -> Result<(), FirewallError> {
        let cfg = RulesetConfig {
            gateway_for,
            ..self.ruleset_config(lan_if)
        };
        cfg.validate()?;
        model::validate_lease(lease_address)?;
        validate_forwards(forwards)?;
        let v4 = model::build(&cfg, forwards, lease_address);
        self.apply_with_v6(v4, &cfg, v6).await?;
        tracing::info!(table = %self.table, forwards = forwards.len(), lease = %lease_address,
            ipv6_forwards = v6.forwards_anything(), "firewall table applied");
        Ok(())
    }

    /// Applies `v4` and, unless IPv6 is off, the IPv6 table for `v6`, in
    /// one batch.
    async fn apply_with_v6(
        &self,
        v4: Ruleset,
        cfg: &RulesetConfig,
        v6: &V6Rules,
    ) -> Result<(), FirewallError> {
        if !self.ipv6 {
            return self.backend.apply(&[v4]).await;
        }
        validate_forwards(&v6.forwards)?;
        for a in v6.addresses.iter().chain(&v6.service) {
            model::validate_address6(*a)?;
        }
        let v6 = model::build6(cfg, &v6.forwards, &v6.addresses, v6.service);
        self.backend.apply(&[v4, v6]).await
    }

    /// Applies the table with no forwards: its forward chain drops everything
    /// to and from `lan_if`. What stands between the LAN and the Docker side
    /// whenever there is no lease (before the first, after one is lost): with
    /// forwarding on and no table, a LAN host sending to the router's MAC would
    /// reach the Docker network.
    ///
    /// IPv6 forwards (`v6`) stay: they do not depend on the IPv4 lease.
    pub async fn isolate(&self, lan_if: &str, v6: &V6Rules) -> Result<(), FirewallError> {
        let cfg = self.ruleset_config(lan_if);
        cfg.validate()?;
        // No forwards: the lease address is in no rule.
        let v4 = model::build(&cfg, &[], Ipv4Addr::UNSPECIFIED);
        self.apply_with_v6(v4, &cfg, v6).await?;
        tracing::debug!(table = %self.table, "firewall table: isolation only (no lease)");
        Ok(())
    }

    /// Deletes our table if present (in every family it may be in).
    pub async fn remove(&self) -> Result<bool, FirewallError> {
        let mut existed = false;
        let families = if self.ipv6 {
            &Family::ALL[..]
        } else {
            &[Family::Ipv4][..]
        };
        for &family in families {
            let table = Table {
                family,
                name: self.table.clone(),
            };
            if self.backend.remove(&table).await? {
                tracing::info!(table = %self.table, ?family, "firewall table removed");
                existed = true;
            }
        }
        Ok(existed)
    }

    pub async fn counters(
        &self,
        forwards: &[Forward],
    ) -> Result<Vec<ForwardStatus>, FirewallError> {
        self.backend.counters(&self.table(), forwards).await
    }

    /// Flushes the tracked flows of our mark toward `old_targets` (see
    /// [`stale_targets`]).
    pub async fn flush_conntrack_to(
        &self,
        old_targets: &[(Protocol, Ipv4Addr)],
    ) -> Result<u64, FirewallError> {
        conntrack::flush_to(&self.conntrack, self.mark, old_targets).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fixtures::{fwd, lease, many, three};
    use serde_json::{Value, json};
    use std::sync::Mutex;
    use std::time::Duration;

    /// Records what reaches it.
    #[derive(Default)]
    struct Recorder {
        applied: Mutex<Vec<Ruleset>>,
        removed: Mutex<Vec<Table>>,
    }

    impl FirewallBackend for Recorder {
        async fn apply(&self, rulesets: &[Ruleset]) -> Result<(), FirewallError> {
            self.applied
                .lock()
                .unwrap()
                .extend(rulesets.iter().cloned());
            Ok(())
        }

        async fn remove(&self, table: &Table) -> Result<bool, FirewallError> {
            self.removed.lock().unwrap().push(table.clone());
            Ok(true)
        }

        async fn counters(
            &self,
            _: &Table,
            forwards: &[Forward],
        ) -> Result<Vec<ForwardStatus>, FirewallError> {
            Ok(forwards
                .iter()
                .map(|f| ForwardStatus::from_forward(f, 1, 2))
                .collect())
        }
    }

    #[tokio::test]
    async fn validation_refuses_before_the_backend() {
        let fw = Firewall::with_backend(Recorder::default(), Runner::default());
        let overlapping = vec![
            fwd("tcp:7000-7009=192.0.2.2:7000"),
            fwd("tcp:7009=192.0.2.3:1"),
        ];
        let e = fw
            .apply("lan0", &overlapping, lease(), None, &V6Rules::default())
            .await
            .unwrap_err();
        assert!(
            matches!(e, FirewallError::Invalid(ref m) if m.contains("overlap")),
            "{e}"
        );
        let bad = Forward {
            target_port: 0,
            ..fwd("tcp:80=192.0.2.2:80")
        };
        assert!(matches!(
            fw.apply("lan0", &[bad], lease(), None, &V6Rules::default())
                .await,
            Err(FirewallError::Invalid(_))
        ));
        let e = fw
            .apply(
                "lan0",
                &three(),
                Ipv4Addr::UNSPECIFIED,
                None,
                &V6Rules::default(),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, FirewallError::Invalid(_)));
        assert!(matches!(
            fw.apply("bad\"name", &three(), lease(), None, &V6Rules::default())
                .await,
            Err(FirewallError::Invalid(_))
        ));
        assert!(fw.backend().applied.lock().unwrap().is_empty());
        // Valid input reaches the backend, with the interface of this apply.
        fw.apply("lan7", &three(), lease(), None, &V6Rules::default())
            .await
            .unwrap();
        let applied = fw.backend().applied.lock().unwrap().clone();
        let cfg = fw.ruleset_config("lan7");
        assert_eq!(
            applied,
            [
                model::build(&cfg, &three(), lease()),
                model::build6(&cfg, &[], &[], None)
            ]
        );
        assert_eq!(applied[0].table, fw.table());
        assert_eq!(applied[1].table.family, Family::Ipv6);
        // IPv6 off: the IPv4 table alone.
        let fw4 = Firewall::with_backend(Recorder::default(), Runner::default()).with_ipv6(false);
        fw4.apply("lan7", &three(), lease(), None, &V6Rules::default())
            .await
            .unwrap();
        assert_eq!(fw4.backend().applied.lock().unwrap().len(), 1);
        // A bad IPv6 address never reaches the backend.
        let bad6 = V6Rules {
            addresses: vec!["fe80::1".parse().unwrap()],
            service: Some("2001:db8::2".parse().unwrap()),
            forwards: three(),
        };
        assert!(matches!(
            fw4.with_ipv6(true)
                .apply("lan7", &three(), lease(), None, &bad6)
                .await,
            Err(FirewallError::Invalid(_))
        ));
        // Non-adjacent same-protocol and cross-protocol same ports are fine.
        validate_forwards(&[
            fwd("tcp:80=192.0.2.2:80"),
            fwd("udp:80=192.0.2.2:80"),
            fwd("tcp:81-90=192.0.2.2:81"),
        ])
        .unwrap();
        validate_forwards(&many(10_000)).unwrap();
    }

    #[tokio::test]
    async fn settings_reach_the_model_and_the_backend() {
        let fw = Firewall::with_backend(Recorder::default(), Runner::default())
            .with_table("t2")
            .with_mark(7)
            .with_counters(false);
        assert_eq!(
            fw.ruleset_config("eth1"),
            RulesetConfig {
                lan_if: "eth1".into(),
                table: "t2".into(),
                mark: 7,
                counters: false,
                gateway_for: None,
            }
        );
        assert!(fw.remove().await.unwrap());
        let v6 = Table {
            family: Family::Ipv6,
            ..fw.table()
        };
        assert_eq!(*fw.backend().removed.lock().unwrap(), [fw.table(), v6]);
        let c = fw.counters(&three()).await.unwrap();
        assert_eq!((c[0].packets, c[0].bytes), (1, 2));
    }

    #[tokio::test]
    async fn a_missing_nft_is_a_spawn_error() {
        let fw = Firewall::new(Runner::wrapped(vec!["/nonexistent/nft".into()]));
        let e = fw
            .apply("lan0", &three(), lease(), None, &V6Rules::default())
            .await
            .unwrap_err();
        assert!(matches!(e, FirewallError::Spawn { .. }), "{e}");
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
            Firewall::new(Runner::in_netns(&self.name))
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
        fw.apply("lan0", &three(), lease(), None, &V6Rules::default())
            .await
            .unwrap();
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
        fw.apply("lan0", &three(), lease(), None, &V6Rules::default())
            .await
            .unwrap();
        assert_eq!(
            ns.exec(&["nft", "list", "table", "ip", "netcontainer"]),
            listing
        );
        // Another plan replaces the content.
        // (Port-keeping forwards to two addresses: an address map.)
        fw.apply(
            "lan0",
            &[fwd("udp:53=192.0.2.5:53"), fwd("udp:54=192.0.2.6:54")],
            lease(),
            None,
            &V6Rules::default(),
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
        assert!(!fw.backend().table_exists(&fw.table()).await.unwrap());
        assert!(
            fw.backend()
                .table_exists(&Table {
                    family: Family::Ipv4,
                    name: "other".into()
                })
                .await
                .unwrap(),
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
        fw.apply("lan0", &three(), lease(), None, &V6Rules::default())
            .await
            .unwrap();
        let before = ns.exec(&["nft", "list", "table", "ip", "netcontainer"]);
        let mut batch: Value = serde_json::from_str(&nft::render(&model::build(
            &fw.ruleset_config("lan0"),
            &[fwd("tcp:443=192.0.2.9:443")],
            lease(),
        )))
        .unwrap();
        batch["nftables"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "add": { "rule": {
            "family": "ip", "table": "netcontainer", "chain": "forward",
            "expr": [ { "jump": { "target": "no_such_chain" } } ] } } }));
        let err = fw
            .backend()
            .apply_batch(&batch.to_string())
            .await
            .unwrap_err();
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
        fw.apply("lan0", &forwards, lease(), None, &V6Rules::default())
            .await
            .unwrap();
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
