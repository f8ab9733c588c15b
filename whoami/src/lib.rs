//! The "who am I?" endpoint, compatible with docker-mirror: from inside a
//! container, `curl http://$GATEWAY:9001/hostip` prints the address the
//! container is reached on from outside, and
//! `curl http://$GATEWAY:9001/container/$HOSTNAME/port/80` the public port its
//! private TCP port 80 is reached on. `GET /v1/self` gives everything about
//! the caller as JSON.
//!
//! Two servers answer it: the router agent on its Docker-side address (the
//! default gateway of a service in gateway mode) and `watch` on each Docker
//! bridge network's gateway (everyone else). What each knows differs, so
//! the knowledge sits behind [`Directory`]; the routes ([`Route`]), the
//! replies ([`respond`]) and the bounded HTTP/1 shell ([`serve`]) are the
//! same for both.
//!
//! Bounds: at most [`Limits::max_connections`] connections at once (more are
//! closed at accept), the request head must arrive within
//! [`Limits::header_timeout`], a connection lives at most
//! [`Limits::connection_timeout`], one request per connection, GET only, no
//! body read. Each caller (source address) gets [`Limits::per_caller`]
//! requests: a token bucket ([`Buckets`]) refills at its rate up to its
//! burst, and a request without a token is answered `429 Too Many Requests`
//! before the directory is asked anything (an answer can cost the server
//! Docker calls and agent status requests; one busy container must not make
//! the host pay them at its pace).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use netcontainer_proto::Protocol;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How a container is reached from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A network container, the service's default route through it.
    Gateway,
    /// A network container, connections masqueraded toward the service.
    Masquerade,
    /// No network container: Docker's own published ports on the host.
    Docker,
}

impl From<netcontainer_proto::SourceMode> for Mode {
    fn from(m: netcontainer_proto::SourceMode) -> Self {
        match m {
            netcontainer_proto::SourceMode::Gateway => Mode::Gateway,
            netcontainer_proto::SourceMode::Masquerade => Mode::Masquerade,
        }
    }
}

/// Published ports: `count` consecutive private ports (in the container)
/// from `private_port`, reached on as many public ports from `public_port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PortMap {
    pub protocol: Protocol,
    pub private_port: u16,
    pub public_port: u16,
    pub count: u16,
}

impl PortMap {
    /// The map of one forward (`public_port..=public_port_end` to
    /// `target_port` and up), whichever form it comes in.
    pub fn of_forward(
        protocol: Protocol,
        public_port: u16,
        public_port_end: u16,
        target_port: u16,
    ) -> Self {
        PortMap {
            protocol,
            private_port: target_port,
            public_port,
            count: public_port_end
                .saturating_sub(public_port)
                .saturating_add(1),
        }
    }

    /// The public port of `private`, if this map covers it.
    pub fn public_of(&self, private: u16) -> Option<u16> {
        let off = private.checked_sub(self.private_port)?;
        (off < self.count)
            .then(|| self.public_port.checked_add(off))
            .flatten()
    }
}

/// What a caller may learn about one container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Container {
    /// Docker's name, without the leading '/'.
    pub name: String,
    pub id: String,
    pub hostname: String,
    pub mode: Mode,
    /// The addresses it is reached on from outside (the lease, or the host's).
    pub addresses: Vec<IpAddr>,
    pub forwards: Vec<PortMap>,
    /// Seconds until the lease behind `addresses` expires (`None`: no lease,
    /// or an infinite one).
    pub lease_expires_in_secs: Option<u64>,
    /// The `.local` name the router answers for by mDNS (`None`: mDNS off or
    /// not claimed yet).
    pub mdns: Option<String>,
}

impl Container {
    /// Whether `key` names this container the way Docker's API would accept
    /// it: its name, its hostname, or a prefix of its id of at least 12
    /// digits (`$HOSTNAME` by default).
    pub fn is_named(&self, key: &str) -> bool {
        let key = key.strip_prefix('/').unwrap_or(key);
        !key.is_empty()
            && (key == self.name
                || key == self.hostname
                || (key.len() >= 12 && self.id.starts_with(key)))
    }

    /// The public port of private TCP port `port` (docker-mirror only ever
    /// asks about TCP).
    pub fn public_tcp_port(&self, port: u16) -> Option<u16> {
        self.forwards
            .iter()
            .filter(|f| f.protocol == Protocol::Tcp)
            .find_map(|f| f.public_of(port))
    }
}

/// What a server knows, for one caller at a time.
pub trait Directory: Send + Sync + 'static {
    /// What an admitted caller may see (e.g. its network).
    type Scope: Send + Sync;
    /// `None`: the caller is not on the Docker side this server serves
    /// (the connection gets a 403).
    fn admit(
        &self,
        peer: IpAddr,
        local: IpAddr,
    ) -> impl Future<Output = Option<Self::Scope>> + Send;
    /// The address `/hostip` answers for the caller.
    fn host_ip(&self, scope: &Self::Scope) -> impl Future<Output = Option<IpAddr>> + Send;
    /// The caller itself.
    fn me(&self, scope: &Self::Scope) -> impl Future<Output = Option<Container>> + Send;
    /// The container `key` names, if the caller may see it.
    fn find(
        &self,
        scope: &Self::Scope,
        key: &str,
    ) -> impl Future<Output = Option<Container>> + Send;
}

/// A request, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    HostIp,
    ContainerPort { key: String, port: u16 },
    SelfJson,
    Health,
    NotFound,
    MethodNotAllowed,
}

impl Route {
    /// Parses a method and path (the query is ignored). Tolerates doubled
    /// slashes, as docker-mirror's path sanitizer did.
    pub fn parse(method: &Method, path: &str) -> Route {
        if method != Method::GET && method != Method::HEAD {
            return Route::MethodNotAllowed;
        }
        let path = path.split('?').next().unwrap_or_default();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        match parts.as_slice() {
            ["hostip"] => Route::HostIp,
            ["health"] => Route::Health,
            ["v1", "self"] => Route::SelfJson,
            ["container", key, "port", port] => match port.parse::<u16>() {
                Ok(port) if port > 0 && key.len() <= 255 => Route::ContainerPort {
                    key: (*key).to_string(),
                    port,
                },
                _ => Route::NotFound,
            },
            _ => Route::NotFound,
        }
    }
}

/// A reply before it becomes HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub json: bool,
    pub body: String,
}

impl Reply {
    fn text(status: StatusCode, body: impl Into<String>) -> Reply {
        Reply {
            status,
            json: false,
            body: body.into(),
        }
    }
}

/// Answers `route` for an admitted caller. Bodies are docker-mirror's: the
/// bare address or port number, no newline.
pub async fn respond<D: Directory>(dir: &D, scope: &D::Scope, route: Route) -> Reply {
    match route {
        Route::HostIp => match dir.host_ip(scope).await {
            Some(ip) => Reply::text(StatusCode::OK, ip.to_string()),
            None => Reply::text(StatusCode::SERVICE_UNAVAILABLE, "No address yet"),
        },
        Route::ContainerPort { key, port } => match dir.find(scope, &key).await {
            None => Reply::text(StatusCode::NOT_FOUND, "Container not found"),
            Some(c) => match c.public_tcp_port(port) {
                Some(p) => Reply::text(StatusCode::OK, p.to_string()),
                None => Reply::text(StatusCode::NOT_FOUND, "Port not found"),
            },
        },
        Route::SelfJson => match dir.me(scope).await {
            Some(c) => Reply {
                status: StatusCode::OK,
                json: true,
                body: serde_json::to_string(&c).unwrap_or_default(),
            },
            None => Reply::text(StatusCode::NOT_FOUND, "Container not found"),
        },
        Route::Health => Reply {
            status: StatusCode::OK,
            json: true,
            body: r#"{"name":"netcontainer"}"#.into(),
        },
        Route::NotFound => Reply::text(StatusCode::NOT_FOUND, "Not found"),
        Route::MethodNotAllowed => Reply::text(StatusCode::METHOD_NOT_ALLOWED, "GET only"),
    }
}

/// The server's bounds.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub connection_timeout: Duration,
    /// Requests one source address may make.
    pub per_caller: Rate,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            header_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(10),
            // A container asks at start and when its address changes;
            // docker-mirror's scripts ask a handful of questions in a row.
            per_caller: Rate {
                per_second: 5,
                burst: 20,
            },
        }
    }
}

/// A token bucket's refill rate and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

/// Callers whose buckets are kept at most; past it the full (idle) ones are
/// forgotten first, and a new caller is refused while none is.
const MAX_CALLERS: usize = 4096;

/// One token bucket per caller address.
#[derive(Debug)]
pub struct Buckets {
    rate: Rate,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl Buckets {
    pub fn new(rate: Rate) -> Buckets {
        Buckets {
            rate,
            buckets: HashMap::new(),
        }
    }

    fn level(&self, tokens: f64, since: Instant, now: Instant) -> f64 {
        let refill =
            now.saturating_duration_since(since).as_secs_f64() * f64::from(self.rate.per_second);
        (tokens + refill).min(f64::from(self.rate.burst))
    }

    /// Takes one of `caller`'s tokens at `now`: false when it has none left.
    pub fn take(&mut self, caller: IpAddr, now: Instant) -> bool {
        if !self.buckets.contains_key(&caller) && self.buckets.len() >= MAX_CALLERS {
            let burst = f64::from(self.rate.burst);
            let full: Vec<IpAddr> = self
                .buckets
                .iter()
                .filter(|(_, (t, at))| self.level(*t, *at, now) >= burst)
                .map(|(ip, _)| *ip)
                .collect();
            for ip in full {
                self.buckets.remove(&ip);
            }
            if self.buckets.len() >= MAX_CALLERS {
                return false;
            }
        }
        let (tokens, at) = self
            .buckets
            .get(&caller)
            .copied()
            .unwrap_or((f64::from(self.rate.burst), now));
        let tokens = self.level(tokens, at, now);
        let ok = tokens >= 1.0;
        self.buckets
            .insert(caller, (if ok { tokens - 1.0 } else { tokens }, now));
        ok
    }

    /// Callers with a bucket.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

fn http(reply: Reply) -> Response<Full<Bytes>> {
    let ctype = if reply.json {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut r = Response::new(Full::new(Bytes::from(reply.body)));
    *r.status_mut() = reply.status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(ctype) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Serves the endpoint on `listener` until the task is dropped.
pub async fn serve<D: Directory>(listener: TcpListener, dir: Arc<D>, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let buckets = Arc::new(Mutex::new(Buckets::new(limits.per_caller)));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "who-am-I endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "who-am-I endpoint: connection cap reached, closing");
            continue;
        };
        let local = stream.local_addr().ok();
        let dir = dir.clone();
        // One request per connection: the token is taken here, the refusal
        // answered on the connection.
        let allowed = buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(peer.ip(), Instant::now());
        if !allowed {
            tracing::debug!(%peer, "who-am-I endpoint: caller over its rate, answering 429");
        }
        tokio::spawn(async move {
            let _permit = permit;
            let conn = connection(stream, peer, local, dir, limits, allowed);
            if tokio::time::timeout(limits.connection_timeout, conn)
                .await
                .is_err()
            {
                tracing::debug!(%peer, "who-am-I endpoint: connection timed out");
            }
        });
    }
}

async fn connection<D: Directory>(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    dir: Arc<D>,
    limits: Limits,
    allowed: bool,
) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let dir = dir.clone();
        async move {
            let route = Route::parse(req.method(), req.uri().path());
            let reply = match local {
                _ if !allowed => Reply::text(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
                Some(local) => match dir.admit(peer.ip(), local.ip()).await {
                    Some(scope) => respond(&*dir, &scope, route).await,
                    None => Reply::text(StatusCode::FORBIDDEN, "Forbidden"),
                },
                None => Reply::text(StatusCode::FORBIDDEN, "Forbidden"),
            };
            Ok::<_, Infallible>(http(reply))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(false)
        .max_buf_size(8192);
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%peer, error = %e, "who-am-I endpoint: connection error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_gets_its_burst_then_its_rate_and_others_are_not_charged() {
        let rate = Rate {
            per_second: 5,
            burst: 3,
        };
        let mut b = Buckets::new(rate);
        let t0 = Instant::now();
        let a: IpAddr = "198.51.100.2".parse().unwrap();
        let c: IpAddr = "198.51.100.3".parse().unwrap();
        assert!((0..3).all(|_| b.take(a, t0)));
        assert!(!b.take(a, t0), "burst spent");
        assert!(b.take(c, t0), "another caller has its own bucket");
        // 200 ms at 5/s: one token back, not more.
        let t1 = t0 + Duration::from_millis(200);
        assert!(b.take(a, t1));
        assert!(!b.take(a, t1));
        // 100 requests in one second from one caller: the burst and the rate.
        let mut b = Buckets::new(rate);
        let ok = (0..100)
            .filter(|i| b.take(a, t0 + Duration::from_millis(10 * i)))
            .count();
        assert!((7..=8).contains(&ok), "{ok}");
    }

    #[test]
    fn idle_callers_make_room_for_new_ones() {
        let rate = Rate {
            per_second: 1,
            burst: 1,
        };
        let mut b = Buckets::new(rate);
        let t0 = Instant::now();
        for i in 0..MAX_CALLERS as u32 {
            assert!(b.take(IpAddr::V4(i.into()), t0));
        }
        let new = IpAddr::V4(u32::MAX.into());
        assert!(!b.take(new, t0), "every bucket busy: a new caller waits");
        assert!(
            b.take(new, t0 + Duration::from_secs(2)),
            "idle ones forgotten"
        );
        assert!(b.len() < 10, "{}", b.len());
    }
    use std::net::Ipv4Addr;

    fn web() -> Container {
        Container {
            name: "web1".into(),
            id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
            hostname: "0123456789ab".into(),
            mode: Mode::Gateway,
            addresses: vec![IpAddr::V4(Ipv4Addr::new(203, 0, 113, 57))],
            forwards: vec![
                PortMap {
                    protocol: Protocol::Tcp,
                    private_port: 8080,
                    public_port: 80,
                    count: 1,
                },
                PortMap {
                    protocol: Protocol::Tcp,
                    private_port: 9000,
                    public_port: 7000,
                    count: 10,
                },
                PortMap {
                    protocol: Protocol::Udp,
                    private_port: 53,
                    public_port: 53,
                    count: 1,
                },
            ],
            lease_expires_in_secs: Some(600),
            mdns: Some("web1.local".into()),
        }
    }

    struct One;
    impl Directory for One {
        type Scope = bool;
        async fn admit(&self, peer: IpAddr, _local: IpAddr) -> Option<bool> {
            // 198.51.100.0/24 and 127.0.0.1 are "the Docker side"; .2 and
            // 127.0.0.1 are the service.
            match peer {
                IpAddr::V4(a) if a.octets()[..3] == [198, 51, 100] => {
                    Some(a == Ipv4Addr::new(198, 51, 100, 2))
                }
                IpAddr::V4(a) if a == Ipv4Addr::LOCALHOST => Some(true),
                _ => None,
            }
        }
        async fn host_ip(&self, _: &bool) -> Option<IpAddr> {
            Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 57)))
        }
        async fn me(&self, is_service: &bool) -> Option<Container> {
            is_service.then(web)
        }
        async fn find(&self, _: &bool, key: &str) -> Option<Container> {
            Some(web()).filter(|c| c.is_named(key))
        }
    }

    #[test]
    fn routes() {
        let get = Method::GET;
        assert_eq!(Route::parse(&get, "/hostip"), Route::HostIp);
        assert_eq!(Route::parse(&get, "//hostip/"), Route::HostIp);
        assert_eq!(Route::parse(&get, "/hostip?x=1"), Route::HostIp);
        assert_eq!(Route::parse(&get, "/v1/self"), Route::SelfJson);
        assert_eq!(
            Route::parse(&get, "/container/web1/port/80"),
            Route::ContainerPort {
                key: "web1".into(),
                port: 80
            }
        );
        for bad in [
            "/container/web1/port/0",
            "/container/web1/port/65536",
            "/container/web1/port/x",
            "/container//port/80",
            "/",
            "/../etc/passwd",
        ] {
            assert_eq!(Route::parse(&get, bad), Route::NotFound, "{bad}");
        }
        assert_eq!(
            Route::parse(&Method::POST, "/hostip"),
            Route::MethodNotAllowed
        );
    }

    #[test]
    fn names_like_docker() {
        let c = web();
        for k in ["web1", "/web1", "0123456789ab", "0123456789abcdef", &c.id] {
            assert!(c.is_named(k), "{k}");
        }
        for k in ["", "web", "0123456789a", "1123456789ab", "web12"] {
            assert!(!c.is_named(k), "{k}");
        }
        assert_eq!(c.public_tcp_port(8080), Some(80));
        assert_eq!(c.public_tcp_port(80), None);
        assert_eq!(c.public_tcp_port(53), None, "TCP only");
        assert_eq!(c.public_tcp_port(9000), Some(7000));
        assert_eq!(c.public_tcp_port(9009), Some(7009));
        assert_eq!(c.public_tcp_port(9010), None);
    }

    #[tokio::test]
    async fn replies_like_docker_mirror() {
        let r = |route| async move { respond(&One, &true, route).await };
        assert_eq!(r(Route::HostIp).await.body, "203.0.113.57");
        let port = r(Route::ContainerPort {
            key: "0123456789ab".into(),
            port: 8080,
        })
        .await;
        assert_eq!((port.status, port.body.as_str()), (StatusCode::OK, "80"));
        let missing = r(Route::ContainerPort {
            key: "web2".into(),
            port: 8080,
        })
        .await;
        assert_eq!(
            (missing.status, missing.body.as_str()),
            (StatusCode::NOT_FOUND, "Container not found")
        );
        let noport = r(Route::ContainerPort {
            key: "web1".into(),
            port: 81,
        })
        .await;
        assert_eq!(noport.body, "Port not found");
        let me = r(Route::SelfJson).await;
        assert!(me.json);
        let v: serde_json::Value = serde_json::from_str(&me.body).unwrap();
        assert_eq!(v["mode"], "gateway");
        assert_eq!(v["addresses"][0], "203.0.113.57");
        assert_eq!(v["forwards"][0]["public_port"], 80);
        assert_eq!(v["forwards"][0]["protocol"], "tcp");
        // Not the service: no self.
        let other = respond(&One, &false, Route::SelfJson).await;
        assert_eq!(other.status, StatusCode::NOT_FOUND);
    }

    /// The shell over a real socket: admitted callers get answers, others a
    /// 403, a silent client is cut off, the connection cap holds.
    #[tokio::test]
    async fn serves_over_tcp_within_bounds() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            max_connections: 2,
            header_timeout: Duration::from_millis(300),
            connection_timeout: Duration::from_secs(2),
            ..Limits::default()
        };
        let server = tokio::spawn(serve(listener, Arc::new(One), limits));
        let get = |from: Ipv4Addr, path: &'static str| async move {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind(SocketAddr::new(from.into(), 0)).unwrap();
            let mut s = sock.connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let ok = get(Ipv4Addr::LOCALHOST, "/hostip").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.ends_with("\r\n\r\n203.0.113.57"), "{ok}");
        let json = get(Ipv4Addr::LOCALHOST, "/v1/self").await;
        assert!(json.contains("application/json"), "{json}");
        // 127.0.0.2 is not "the Docker side" of One.
        let refused = get(Ipv4Addr::new(127, 0, 0, 2), "/hostip").await;
        assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
        // A client that never sends a request is closed after the header
        // timeout, and frees its slot.
        let started = std::time::Instant::now();
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(3), idle.read_to_end(&mut buf))
            .await
            .expect("closed by the server");
        assert!(n.is_ok());
        assert!(started.elapsed() < Duration::from_secs(2));
        // Two idle connections fill the cap: a third is closed at once.
        let _a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _b = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = c.write_all(b"GET /hostip HTTP/1.1\r\n\r\n").await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(200), c.read_to_end(&mut out)).await;
        assert!(
            out.is_empty(),
            "over the cap: {}",
            String::from_utf8_lossy(&out)
        );
        server.abort();
    }

    /// One caller past its burst gets 429 and the directory is not asked;
    /// another caller is not charged for it.
    #[tokio::test]
    async fn a_busy_caller_gets_429_others_do_not() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            per_caller: Rate {
                per_second: 1,
                burst: 3,
            },
            ..Limits::default()
        };
        let server = tokio::spawn(serve(listener, Arc::new(One), limits));
        let get = |from: Ipv4Addr| async move {
            let sock = tokio::net::TcpSocket::new_v4().unwrap();
            sock.bind(SocketAddr::new(from.into(), 0)).unwrap();
            let mut s = sock.connect(addr).await.unwrap();
            s.write_all(b"GET /hostip HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out.split(' ').nth(1).unwrap_or_default().to_string()
        };
        let mut codes = Vec::new();
        for _ in 0..6 {
            codes.push(get(Ipv4Addr::LOCALHOST).await);
        }
        assert_eq!(codes, ["200", "200", "200", "429", "429", "429"]);
        // Another caller has its own bucket (and is still judged: 403).
        assert_eq!(get(Ipv4Addr::new(127, 0, 0, 2)).await, "403");
        server.abort();
    }
}
