//! `watch --metrics ADDR`: Prometheus metrics of every router on the host,
//! in the OpenMetrics text format of Prometheus' own Rust client
//! (`prometheus-client`), served at `http://ADDR/metrics` by a small hyper 1
//! HTTP/1 server (hyper is in the tree already, through bollard), and the
//! same figures as a status page for a person at `http://ADDR/`
//! (`page.rs`).
//!
//! The figures come from [`crate::watch::monitor`]'s last poll; each scrape builds
//! a fresh registry from them, so a router that is gone leaves no stale
//! series behind. Counters the agent keeps (renewals, NAKs, rebinds, forward
//! packets and bytes) are the agent's own totals: they start again at 0 when
//! its router restarts, which Prometheus' `rate()` reads as a reset.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::error::Error;
use crate::watch::monitor::{Stats, StatsInner};
use crate::watch::page;

/// The content type of the OpenMetrics text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Scrapes served at once; more wait for a turn (nothing else is this port's).
const MAX_CONNECTIONS: usize = 16;
/// A connection's whole life: a scrape is one small request.
const CONNECTION_LIMIT: Duration = Duration::from_secs(10);

/// Every state a lease can be in, for the state set.
const STATES: &[netcontainer_proto::State] = &[
    netcontainer_proto::State::WaitingForPlan,
    netcontainer_proto::State::Init,
    netcontainer_proto::State::Selecting,
    netcontainer_proto::State::Requesting,
    netcontainer_proto::State::InitReboot,
    netcontainer_proto::State::Rebooting,
    netcontainer_proto::State::Bound,
    netcontainer_proto::State::Renewing,
    netcontainer_proto::State::Rebinding,
    netcontainer_proto::State::Stopped,
];

type Labels = Vec<(String, String)>;

fn service(s: &str) -> Labels {
    vec![("service".into(), s.into())]
}

/// The text of `/metrics` for `s`.
pub fn render(s: &StatsInner) -> String {
    let mut reg = Registry::with_prefix("netcontainer");
    let up = Family::<Labels, Gauge>::default();
    let agent_up = Family::<Labels, Gauge>::default();
    let state = Family::<Labels, Gauge>::default();
    let expiry = Family::<Labels, Gauge>::default();
    let renewals = Family::<Labels, Counter>::default();
    let naks = Family::<Labels, Counter>::default();
    let rebinds = Family::<Labels, Counter>::default();
    let conflicts = Family::<Labels, Counter>::default();
    let defences = Family::<Labels, Counter>::default();
    let heals = Family::<Labels, Counter>::default();
    let changes = Family::<Labels, Counter>::default();
    let ddns_failures = Family::<Labels, Counter>::default();
    let packets = Family::<Labels, Counter>::default();
    let bytes = Family::<Labels, Counter>::default();
    let refused = Family::<Labels, Gauge>::default();
    for (name, o) in &s.routers {
        let l = service(name);
        refused
            .get_or_create(&l)
            .set(i64::from(s.host_route_refused.contains(name)));
        let status = o.status.as_ref();
        let bound = status.is_some_and(|st| st.lease.is_some());
        up.get_or_create(&l).set(i64::from(bound));
        agent_up.get_or_create(&l).set(i64::from(status.is_some()));
        if let Some(st) = status {
            for x in STATES {
                let mut sl = l.clone();
                sl.push(("state".into(), x.as_str().into()));
                state.get_or_create(&sl).set(i64::from(*x == st.state));
            }
            if let Some(secs) = st.lease.as_ref().and_then(|l| l.expires_in_secs) {
                expiry
                    .get_or_create(&l)
                    .set(i64::try_from(secs).unwrap_or(i64::MAX));
            }
            for f in &st.forwards {
                let port = if f.public_port_end == f.public_port {
                    f.public_port.to_string()
                } else {
                    format!("{}-{}", f.public_port, f.public_port_end)
                };
                let mut fl = l.clone();
                fl.push(("protocol".into(), f.protocol.as_str().into()));
                fl.push(("port".into(), port));
                packets.get_or_create(&fl).inc_by(f.packets);
                bytes.get_or_create(&fl).inc_by(f.bytes);
            }
        }
        if let Some(c) = &o.counters {
            renewals.get_or_create(&l).inc_by(c.renewals);
            naks.get_or_create(&l).inc_by(c.naks);
            rebinds.get_or_create(&l).inc_by(c.rebinds);
            conflicts.get_or_create(&l).inc_by(c.conflicts);
            defences.get_or_create(&l).inc_by(c.defences);
        }
    }
    for (name, n) in &s.heals {
        heals.get_or_create(&service(name)).inc_by(*n);
    }
    for (name, n) in &s.changes {
        changes.get_or_create(&service(name)).inc_by(*n);
    }
    for (name, n) in &s.ddns_failures {
        ddns_failures.get_or_create(&service(name)).inc_by(*n);
    }
    reg.register(
        "service_up",
        "1 when the service's router holds a lease, 0 otherwise",
        up,
    );
    reg.register(
        "agent_up",
        "1 while watch hears the router's agent",
        agent_up,
    );
    reg.register(
        "lease_state",
        "The DHCP client's state (1 for the current one)",
        state,
    );
    reg.register(
        "lease_expiry_seconds",
        "Seconds until the lease expires (absent for none or an infinite one)",
        expiry,
    );
    reg.register("renewals", "Leases extended by the DHCP server", renewals);
    reg.register(
        "naks",
        "DHCPNAKs that cost a lease or a requested address",
        naks,
    );
    reg.register("rebinds", "Times the client entered REBINDING", rebinds);
    reg.register(
        "address_conflicts",
        "Leased addresses declined because another LAN host uses them (ARP)",
        conflicts,
    );
    reg.register(
        "address_defences",
        "Times another LAN host claimed the address and the agent defended it with an ARP announcement",
        defences,
    );
    reg.register(
        "heals",
        "Times watch brought the router back in line",
        heals,
    );
    reg.register(
        "address_changes",
        "Times the service's LAN address changed (seen by watch)",
        changes,
    );
    reg.register(
        "ddns_failures",
        "Dynamic DNS updates of the service's name that failed (--ddns-server; retried)",
        ddns_failures,
    );
    reg.register(
        "host_route_refused",
        "1 when the host refused a route to the service's lease (an address it uses or routes elsewhere; see status)",
        refused,
    );
    reg.register(
        "forward_packets",
        "Packets forwarded to the service, per LAN port",
        packets,
    );
    reg.register(
        "forward_bytes",
        "Bytes forwarded to the service, per LAN port",
        bytes,
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &reg);
    out
}

/// Binds the metrics address (before anything else, so a taken port or a
/// bad address fails watch at start with one line).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Usage(format!("cannot serve metrics on {addr}: {e}")))
}

/// Serves `GET /` and `GET /metrics` until dropped.
pub async fn serve(listener: TcpListener, stats: Arc<Stats>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let stats = stats.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let stats = stats.clone();
                async move { Ok::<_, Infallible>(answer(&req, &stats).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            match tokio::time::timeout(CONNECTION_LIMIT, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics: connection failed"),
                Err(_) => tracing::debug!(%peer, "metrics: connection timed out"),
            }
        });
    }
}

async fn answer(req: &Request<Incoming>, stats: &Stats) -> Response<Full<Bytes>> {
    // The forward counters cost each router an `nft` run: read only for a scrape.
    let counted = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => Some(stats.with_forward_counters().await),
        _ => None,
    };
    route(
        req.method(),
        req.uri().path(),
        stats,
        counted,
        SystemTime::now(),
    )
}

/// The reply to `method path` at `now`: the page at `/`, the metrics at
/// `/metrics`, 404 elsewhere. Every reply says `nosniff`; the page also
/// forbids every script and outside resource ([`page::CSP`]).
/// `counted`: the figures with forward counters, for `/metrics` (else a
/// snapshot without them is taken).
fn route(
    method: &Method,
    path: &str,
    stats: &Stats,
    counted: Option<StatsInner>,
    now: SystemTime,
) -> Response<Full<Bytes>> {
    let reply = |code: StatusCode, ctype: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = code;
        let h = r.headers_mut();
        h.insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_str(ctype).unwrap_or(HeaderValue::from_static("text/plain")),
        );
        h.insert(
            hyper::header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        r
    };
    match (method, path) {
        (&Method::GET, "/metrics") => {
            let s = counted.unwrap_or_else(|| stats.snapshot());
            reply(StatusCode::OK, CONTENT_TYPE, render(&s))
        }
        (&Method::GET, "/") => {
            let mut r = reply(
                StatusCode::OK,
                page::CONTENT_TYPE,
                page::render_page(&stats.snapshot(), now),
            );
            let h = r.headers_mut();
            h.insert(
                hyper::header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(page::CSP),
            );
            h.insert(
                hyper::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            );
            r
        }
        (&Method::GET, _) => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: the status page is at /, the metrics at /metrics\n".into(),
        ),
        _ => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::monitor::Observed;
    use netcontainer_proto::{ForwardStatus, LeaseCounters, LeaseStatus, Protocol, State, Status};
    use std::net::Ipv4Addr;

    fn stats() -> StatsInner {
        let mut s = StatsInner::default();
        s.routers.insert(
            "web1".into(),
            Observed {
                status: Some(Status {
                    state: State::Bound,
                    interface: Some("lan0".into()),
                    hostname: Some("web1".into()),
                    lease: Some(LeaseStatus {
                        address: Ipv4Addr::new(203, 0, 113, 57),
                        prefix_len: 24,
                        gateway: None,
                        server_id: Ipv4Addr::new(203, 0, 113, 1),
                        lease_secs: Some(600),
                        renew_in_secs: Some(290),
                        rebind_in_secs: Some(515),
                        expires_in_secs: Some(590),
                        dns: vec![],
                    }),
                    forwards: vec![ForwardStatus {
                        protocol: Protocol::Udp,
                        public_port: 7000,
                        public_port_end: 7009,
                        target_address: Ipv4Addr::new(198, 51, 100, 2),
                        target_port: 7000,
                        packets: 12,
                        bytes: 3400,
                    }],
                    last_error: None,
                    agent_version: "0.1.0".into(),
                    source: Default::default(),
                    ipv6: Vec::new(),
                    ipv6_path: Default::default(),
                    mdns: None,
                }),
                counters: Some(LeaseCounters {
                    renewals: 3,
                    naks: 1,
                    rebinds: 2,
                    conflicts: 1,
                    defences: 5,
                }),
            },
        );
        s.routers.insert(
            "db".into(),
            Observed {
                status: None,
                counters: None,
            },
        );
        s.heals.insert("web1".into(), 4);
        s.changes.insert("web1".into(), 1);
        s.ddns_failures.insert("web1".into(), 2);
        s.host_route_refused.insert("db".into());
        s
    }

    #[test]
    fn renders_every_figure() {
        let text = render(&stats());
        for line in [
            "netcontainer_service_up{service=\"web1\"} 1",
            "netcontainer_service_up{service=\"db\"} 0",
            "netcontainer_agent_up{service=\"db\"} 0",
            "netcontainer_lease_state{service=\"web1\",state=\"bound\"} 1",
            "netcontainer_lease_state{service=\"web1\",state=\"rebinding\"} 0",
            "netcontainer_lease_expiry_seconds{service=\"web1\"} 590",
            "netcontainer_renewals_total{service=\"web1\"} 3",
            "netcontainer_naks_total{service=\"web1\"} 1",
            "netcontainer_rebinds_total{service=\"web1\"} 2",
            "netcontainer_address_conflicts_total{service=\"web1\"} 1",
            "netcontainer_address_defences_total{service=\"web1\"} 5",
            "netcontainer_heals_total{service=\"web1\"} 4",
            "netcontainer_ddns_failures_total{service=\"web1\"} 2",
            "netcontainer_address_changes_total{service=\"web1\"} 1",
            "netcontainer_host_route_refused{service=\"web1\"} 0",
            "netcontainer_host_route_refused{service=\"db\"} 1",
            "netcontainer_forward_packets_total{service=\"web1\",protocol=\"udp\",port=\"7000-7009\"} 12",
            "netcontainer_forward_bytes_total{service=\"web1\",protocol=\"udp\",port=\"7000-7009\"} 3400",
            "# TYPE netcontainer_renewals counter",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in:\n{text}"
            );
        }
        // A silent agent has no made-up figures.
        assert!(!text.contains("lease_state{service=\"db\""), "{text}");
        assert!(!text.contains("renewals_total{service=\"db\""), "{text}");
    }

    /// A service whose router is gone leaves no series: not its poll
    /// figures, nor the heals and changes watch counted for it.
    #[test]
    fn a_gone_service_leaves_no_series() {
        let mut s = stats();
        assert!(render(&s).contains("service=\"web1\""));
        let mut polled = s.routers.clone();
        polled.remove("web1");
        s.take_poll(polled, &[], std::time::SystemTime::UNIX_EPOCH);
        let text = render(&s);
        assert!(!text.contains("service=\"web1\""), "{text}");
        assert!(
            text.contains("netcontainer_agent_up{service=\"db\"} 0"),
            "{text}"
        );
    }

    async fn get(method: Method, path: &str) -> (StatusCode, hyper::HeaderMap, String) {
        use http_body_util::BodyExt;
        let r = route(
            &method,
            path,
            &Stats::default(),
            None,
            SystemTime::UNIX_EPOCH,
        );
        let (parts, body) = r.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    /// `/` is the page, with a policy that forbids every script; `/metrics`
    /// the metrics; anything else a 404 that names both.
    #[tokio::test]
    async fn routes_and_headers() {
        let (code, h, body) = get(Method::GET, "/").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(
            h["content-security-policy"],
            "default-src 'none'; style-src 'unsafe-inline'"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(body.contains("<h1>netcontainer watch</h1>"), "{body}");
        let (code, h, body) = get(Method::GET, "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert_eq!(h["content-type"], CONTENT_TYPE);
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(body.ends_with("# EOF\n"), "{body}");
        let (code, _, body) = get(Method::GET, "/index.html").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            "not found: the status page is at /, the metrics at /metrics\n"
        );
        let (code, _, _) = get(Method::POST, "/").await;
        assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn nothing_to_show_is_still_valid() {
        let text = render(&StatsInner::default());
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// The metric names in a PromQL expression (every identifier that
    /// starts with `netcontainer_`).
    fn names_in(expr: &str) -> Vec<&str> {
        expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .filter(|t| t.starts_with("netcontainer_"))
            .collect()
    }

    /// Every PromQL query of the ```promql blocks in `doc`.
    fn doc_queries(doc: &str) -> Vec<&str> {
        let mut out = Vec::new();
        let mut inside = false;
        for l in doc.lines() {
            match l.trim() {
                "```promql" => inside = true,
                "```" if inside => inside = false,
                q if inside && !q.is_empty() && !q.starts_with('#') => out.push(q),
                _ => {}
            }
        }
        out
    }

    /// contrib/grafana's dashboard asks only for series watch serves (a
    /// renamed metric fails here), has a panel for every query
    /// docs/operations.md gives, and takes its data source from the
    /// variable `DS_PROMETHEUS`.
    #[test]
    fn the_dashboard_matches_the_metrics_and_the_doc() {
        let json = include_str!("../../../contrib/grafana/netcontainer-dashboard.json");
        let doc = include_str!("../../../docs/operations.md");
        let dash: serde_json::Value = serde_json::from_str(json).expect("the dashboard parses");
        let text = render(&stats());
        let served: std::collections::BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .collect();
        assert!(
            served.contains("netcontainer_forward_bytes_total"),
            "{served:?}"
        );

        let vars = dash["templating"]["list"].as_array().expect("templating");
        assert!(
            vars.iter().any(|v| v["name"] == "DS_PROMETHEUS"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"),
            "no DS_PROMETHEUS variable: {vars:?}"
        );
        let panels = dash["panels"].as_array().expect("panels");
        let mut exprs = Vec::new();
        let mut ids = std::collections::BTreeSet::new();
        for p in panels {
            let title = p["title"].as_str().expect("a title");
            assert!(
                ids.insert(p["id"].as_u64().expect("an id")),
                "id twice: {title}"
            );
            assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{title} has no query");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
                let expr = t["expr"].as_str().expect("an expr");
                let names = names_in(expr);
                assert!(!names.is_empty(), "{title}: {expr} names no metric");
                for n in names {
                    assert!(served.contains(n), "{title}: {n} is not served: {served:?}");
                }
                exprs.push(expr);
            }
        }
        let queries = doc_queries(doc);
        assert!(queries.len() >= 5, "the doc's queries: {queries:?}");
        for q in &queries {
            assert!(exprs.contains(q), "the dashboard lacks {q:?}: {exprs:?}");
            for n in names_in(q) {
                assert!(served.contains(n), "the doc's {q}: {n} is not served");
            }
        }
        for e in &exprs {
            assert!(queries.contains(e), "the doc lacks the dashboard's {e:?}");
        }
    }
}
