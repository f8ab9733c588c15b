//! The control socket: a Unix stream socket speaking the framing of
//! `netcontainer-proto`, one request and one response at a time, any number
//! of requests per connection; or, after `Subscribe`, pushes of the status
//! whenever it changes (watch holds one such connection per router instead
//! of asking every few seconds).
//!
//! Status is answered here from the agent's published snapshot, so a slow
//! client never holds up DHCP; plans and shutdown go to the agent's loop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netcontainer_proto::{
    FrameError, HEADER_LEN, LeaseStatus, Plan, Request, Response, State, Status, decode_payload,
    encode_frame, payload_len,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};

use netcontainer_lease::v4::Lease;

/// How long a client may take to send the rest of a frame once it started.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle connection is kept open.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Buffer reserved for a payload before its bytes arrive (requests are small; a large
/// plan grows the buffer as it is received).
const INITIAL_PAYLOAD_BUF: usize = 64 * 1024;
/// Upper bound of a `Wait` request.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// A subscriber gets the state again after this long without a change, so
/// it can tell a live agent from a wedged one.
pub const KEEPALIVE: Duration = Duration::from_secs(60);
/// After a change, how long a push waits for the changes that come with it
/// (a renewal passes RENEWING and back; a plan settles in several steps),
/// so they go out as one.
const SETTLE: Duration = Duration::from_millis(100);
/// Subscribed connections at once: watch holds one, and each heal opens one
/// for a moment; more are refused with [`TOO_MANY`].
const MAX_SUBSCRIBERS: usize = 8;
/// The refusal past [`MAX_SUBSCRIBERS`] (the driver tells it from an agent
/// that does not know `Subscribe`).
pub const TOO_MANY: &str = netcontainer_proto::TOO_MANY_SUBSCRIBERS;

/// What the agent's loop publishes for status queries.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The DHCPv4 client's state; `None` while no client runs (no plan yet).
    pub state: Option<netcontainer_lease::State>,
    pub interface: Option<String>,
    pub hostname: Option<String>,
    pub lease: Option<Lease>,
    /// The plan's forwards.
    pub forwards: Vec<netcontainer_proto::Forward>,
    /// The forwards are in the kernel (a lease is held and the rules applied).
    pub rules_active: bool,
    pub last_error: Option<String>,
    /// Every standing problem, by subsystem (`last_error` is the latest).
    pub problems: Vec<netcontainer_proto::Problem>,
    /// The plan's source mode and service (for status and the "who am I?"
    /// endpoint).
    pub source: netcontainer_proto::SourceMode,
    pub service: Option<netcontainer_proto::ServiceInfo>,
    /// The IPv6 addresses on the LAN interface.
    pub ipv6: Vec<V6Address>,
    /// How the published ports reach the service over IPv6.
    pub ipv6_path: netcontainer_proto::Ipv6Path,
    /// What the plan asks mDNS to publish (`None`: mDNS off).
    pub mdns_plan: Option<netcontainer_proto::Mdns>,
    /// The `.local` name the mDNS task claimed (it writes this field).
    pub mdns: Option<String>,
}

/// An IPv6 address the agent put on the LAN interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V6Address {
    pub address: std::net::Ipv6Addr,
    pub prefix_len: u8,
    pub origin: netcontainer_proto::Ipv6Origin,
    /// `None`: infinite.
    pub preferred_until: Option<Instant>,
    pub valid_until: Option<Instant>,
}

impl Snapshot {
    pub fn new() -> Self {
        Snapshot {
            state: None,
            interface: None,
            hostname: None,
            lease: None,
            forwards: Vec::new(),
            rules_active: false,
            last_error: None,
            problems: Vec::new(),
            source: Default::default(),
            service: None,
            ipv6: Vec::new(),
            ipv6_path: Default::default(),
            mdns_plan: None,
            mdns: None,
        }
    }

    /// The plan's forwards with zero counters.
    pub fn idle_forwards(&self) -> Vec<netcontainer_proto::ForwardStatus> {
        self.forwards
            .iter()
            .map(|f| netcontainer_proto::ForwardStatus::from_forward(f, 0, 0))
            .collect()
    }

    /// Renders the snapshot as a status at `now`, with the given counters.
    pub fn status(&self, now: Instant, forwards: Vec<netcontainer_proto::ForwardStatus>) -> Status {
        Status {
            state: State::of_client(self.state),
            interface: self.interface.clone(),
            hostname: self.hostname.clone(),
            lease: self.lease.as_ref().map(|l| lease_status(l, now)),
            forwards,
            last_error: self.last_error.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            source: self.source,
            ipv6: self
                .ipv6
                .iter()
                .map(|a| netcontainer_proto::Ipv6AddressStatus {
                    address: a.address,
                    prefix_len: a.prefix_len,
                    origin: a.origin,
                    preferred_in_secs: secs_until(a.preferred_until, now),
                    valid_in_secs: secs_until(a.valid_until, now),
                })
                .collect(),
            ipv6_path: self.ipv6_path,
            mdns: self.mdns.clone(),
        }
    }
}

impl Default for Snapshot {
    fn default() -> Self {
        Self::new()
    }
}

fn secs_until(t: Option<Instant>, now: Instant) -> Option<u64> {
    t.map(|t| t.saturating_duration_since(now).as_secs())
}

pub fn lease_status(l: &Lease, now: Instant) -> LeaseStatus {
    LeaseStatus {
        address: l.address,
        prefix_len: l.prefix_len,
        gateway: l.gateway,
        server_id: l.server_id,
        lease_secs: l
            .times
            .valid
            .map(|d| d.as_secs().min(u64::from(u32::MAX)) as u32),
        renew_in_secs: secs_until(l.renew_at(), now),
        rebind_in_secs: secs_until(l.rebind_at(), now),
        expires_in_secs: secs_until(l.expires_at(), now),
        dns: l.dns.clone(),
    }
}

/// A request for the agent's loop, with the channel for its answer.
#[derive(Debug)]
pub enum Command {
    Apply(Box<Plan>, oneshot::Sender<Response>),
    Shutdown(oneshot::Sender<Response>),
}

/// Reads the forward counters of the rules in the kernel.
pub type CounterFn = Arc<
    dyn Fn(
            Vec<netcontainer_proto::Forward>,
        ) -> futures::future::BoxFuture<
            'static,
            Result<Vec<netcontainer_proto::ForwardStatus>, String>,
        > + Send
        + Sync,
>;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot create the socket directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Binds the control socket: the directory is created 0700 if missing, a
/// stale socket file is replaced, the socket is made 0600.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::create_dir_all(dir).map_err(|source| ControlError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let bind_err = |source| ControlError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_socket() {
            // A live agent would still answer; a stale file is from a dead one.
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(bind_err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another agent is serving this socket",
                )));
            }
            std::fs::remove_file(path).map_err(bind_err)?;
        }
    }
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    Ok(listener)
}

/// Serves connections until the listener fails.
pub async fn serve(
    listener: UnixListener,
    snapshot: watch::Receiver<Snapshot>,
    commands: mpsc::Sender<Command>,
    counters: CounterFn,
    dhcp: Arc<crate::counters::Counters>,
) {
    let me = nix::unistd::geteuid().as_raw();
    let subscribers = Arc::new(tokio::sync::Semaphore::new(MAX_SUBSCRIBERS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept on the control socket failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match stream.peer_cred() {
            Ok(c) if c.uid() == 0 || c.uid() == me => {}
            Ok(c) => {
                tracing::warn!(uid = c.uid(), pid = ?c.pid(), "refused a control connection: only root may steer the agent");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "refused a control connection: cannot read its credentials");
                continue;
            }
        }
        let conn = Connection {
            snapshot: snapshot.clone(),
            commands: commands.clone(),
            counters: counters.clone(),
            dhcp: dhcp.clone(),
            subscribers: subscribers.clone(),
        };
        tokio::spawn(async move {
            if let Err(e) = conn.run(stream).await {
                tracing::debug!(error = %e, "control connection closed");
            }
        });
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("timed out")]
    Timeout,
}

struct Connection {
    snapshot: watch::Receiver<Snapshot>,
    commands: mpsc::Sender<Command>,
    counters: CounterFn,
    /// The DHCP client's counters (`Request::Counters`).
    dhcp: Arc<crate::counters::Counters>,
    /// Permits for subscribed connections ([`MAX_SUBSCRIBERS`]).
    subscribers: Arc<tokio::sync::Semaphore>,
}

impl Connection {
    async fn run(mut self, mut stream: UnixStream) -> Result<(), ConnError> {
        loop {
            let mut header = [0u8; HEADER_LEN];
            // Wait for the first byte for a long time, the rest quickly.
            match tokio::time::timeout(IDLE_TIMEOUT, stream.read_u8()).await {
                Err(_) => return Err(ConnError::Timeout),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(r) => header[0] = r?,
            }
            let body = tokio::time::timeout(FRAME_TIMEOUT, async {
                stream.read_exact(&mut header[1..]).await?;
                let len = match payload_len(header) {
                    Ok(l) => l,
                    Err(e) => return Ok::<_, ConnError>(Err(e)),
                };
                // Grow with the bytes that arrive instead of allocating the announced
                // length up front: a few header bytes must not buy MAX_FRAME_LEN of
                // memory (with glibc the allocations of stalled clients stay resident,
                // and the heap does not shrink after they are gone).
                let mut payload = Vec::with_capacity(len.min(INITIAL_PAYLOAD_BUF));
                (&mut stream)
                    .take(len as u64)
                    .read_to_end(&mut payload)
                    .await?;
                if payload.len() < len {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                }
                Ok(Ok(payload))
            })
            .await
            .map_err(|_| ConnError::Timeout)??;
            let response = match body.and_then(|p| decode_payload::<Request>(&p)) {
                Ok(Request::Subscribe) => {
                    let Ok(permit) = self.subscribers.clone().try_acquire_owned() else {
                        let resp = Response::Error(TOO_MANY.into());
                        write(&mut stream, &resp).await?;
                        continue;
                    };
                    let r = self.push(&mut stream).await;
                    drop(permit);
                    return r;
                }
                Ok(req) => self.handle(req).await,
                Err(e) => {
                    // Tell the peer why, then close: the stream may be out of sync.
                    let resp = Response::Error(format!("bad request: {e}"));
                    let _ = write(&mut stream, &resp).await;
                    return Err(e.into());
                }
            };
            write(&mut stream, &response).await?;
        }
    }

    /// Push mode: an update now, then one after every change of the
    /// snapshot or the DHCP counters (settled for [`SETTLE`]; a publish
    /// that changed nothing sends nothing) and at least every
    /// [`KEEPALIVE`]. Ends when the client closes; a client that sends
    /// anything is out of step and is dropped, as is one that does not read
    /// (a write that takes [`FRAME_TIMEOUT`]). Never reads the forward
    /// counters: no `nft` run here.
    async fn push(&mut self, stream: &mut UnixStream) -> Result<(), ConnError> {
        let mut seq = 0u64;
        let mut last: Option<(Snapshot, netcontainer_proto::LeaseCounters)> = None;
        let mut keepalive = tokio::time::Instant::now();
        loop {
            let now = (self.snapshot.borrow_and_update().clone(), self.dhcp.get());
            if last.as_ref() != Some(&now) || tokio::time::Instant::now() >= keepalive {
                seq += 1;
                let (snap, counters) = &now;
                let update = netcontainer_proto::Update {
                    seq,
                    status: snap.status(Instant::now(), snap.idle_forwards()),
                    counters: *counters,
                    problems: snap.problems.clone(),
                };
                write(stream, &Response::Update(update)).await?;
                last = Some(now);
                keepalive = tokio::time::Instant::now() + KEEPALIVE;
            }
            let mut byte = [0u8; 1];
            tokio::select! {
                changed = self.snapshot.changed() => {
                    if changed.is_err() {
                        return Ok(()); // the agent is going away
                    }
                    tokio::time::sleep(SETTLE).await;
                }
                // Sent even if nothing changed: the client's sign of life.
                _ = tokio::time::sleep_until(keepalive) => {}
                r = stream.read(&mut byte) => {
                    return match r {
                        Ok(0) => Ok(()),
                        Ok(_) => Err(ConnError::Io(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            "a subscribed client sent a request",
                        ))),
                        Err(e) => Err(e.into()),
                    };
                }
            }
        }
    }

    async fn handle(&mut self, req: Request) -> Response {
        match req {
            Request::Status => Response::Status(self.status().await),
            Request::Wait { timeout_ms } => {
                let limit = Duration::from_millis(timeout_ms).min(MAX_WAIT);
                let _ = tokio::time::timeout(limit, self.snapshot.wait_for(|s| s.lease.is_some()))
                    .await;
                Response::Status(self.status().await)
            }
            Request::Apply(plan) => self.command(|tx| Command::Apply(Box::new(plan), tx)).await,
            Request::Shutdown => self.command(Command::Shutdown).await,
            Request::Counters => Response::Counters(self.dhcp.get()),
            Request::Problems => Response::Problems(self.snapshot.borrow().problems.clone()),
            // Taken in `run` before it gets here.
            Request::Subscribe => Response::Error("Subscribe must be handled by run".into()),
        }
    }

    async fn command(&self, make: impl FnOnce(oneshot::Sender<Response>) -> Command) -> Response {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(make(tx)).await.is_err() {
            return Response::Error("the agent is shutting down".into());
        }
        rx.await
            .unwrap_or_else(|_| Response::Error("the agent is shutting down".into()))
    }

    async fn status(&self) -> Status {
        let snap = self.snapshot.borrow().clone();
        let mut counters = snap.idle_forwards();
        let mut last_error = None;
        if snap.rules_active && !snap.forwards.is_empty() {
            match (self.counters)(snap.forwards.clone()).await {
                Ok(c) => counters = c,
                Err(e) => last_error = Some(format!("cannot read counters: {e}")),
            }
        }
        let mut status = snap.status(Instant::now(), counters);
        if status.last_error.is_none() {
            status.last_error = last_error;
        }
        status
    }
}

async fn write(stream: &mut UnixStream, resp: &Response) -> Result<(), ConnError> {
    let bytes = encode_frame(resp)?;
    tokio::time::timeout(FRAME_TIMEOUT, stream.write_all(&bytes))
        .await
        .map_err(|_| ConnError::Timeout)??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use netcontainer_proto::Forward;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_fresh_snapshot_waits_for_a_plan() {
        let status = Snapshot::new().status(Instant::now(), Vec::new());
        assert_eq!(status.state, State::WaitingForPlan);
    }

    /// An agent's control socket in a temporary directory, with a counter
    /// function that counts its calls (each is an `nft` run in the agent).
    struct Bed {
        path: PathBuf,
        snap: watch::Sender<Snapshot>,
        nft_runs: Arc<AtomicUsize>,
        _cmds: mpsc::Receiver<Command>,
        dhcp: Arc<crate::counters::Counters>,
    }

    impl Bed {
        fn new(tag: &str) -> Bed {
            let path = std::env::temp_dir().join(format!(
                "nc-control-{tag}-{}/agent.sock",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(path.parent().unwrap());
            let listener = bind(&path).unwrap();
            let mut first = Snapshot::new();
            first.forwards = vec![Forward::parse("tcp:80=198.51.100.2:80").unwrap()];
            first.rules_active = true;
            let (snap, rx) = watch::channel(first);
            let (tx, cmds) = mpsc::channel(1);
            let nft_runs = Arc::new(AtomicUsize::new(0));
            let n = nft_runs.clone();
            let counters: CounterFn = Arc::new(move |fw: Vec<Forward>| {
                n.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    Ok(fw
                        .iter()
                        .map(|f| netcontainer_proto::ForwardStatus::from_forward(f, 1, 2))
                        .collect())
                })
            });
            let dhcp = Arc::new(crate::counters::Counters::default());
            tokio::spawn(serve(listener, rx, tx, counters, dhcp.clone()));
            Bed {
                path,
                snap,
                nft_runs,
                _cmds: cmds,
                dhcp,
            }
        }

        async fn subscribe(&self) -> UnixStream {
            let mut s = UnixStream::connect(&self.path).await.unwrap();
            s.write_all(&encode_frame(&Request::Subscribe).unwrap())
                .await
                .unwrap();
            s
        }
    }

    impl Drop for Bed {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.path.parent().unwrap());
        }
    }

    async fn read_response(s: &mut UnixStream) -> Response {
        let mut header = [0u8; HEADER_LEN];
        s.read_exact(&mut header).await.unwrap();
        let mut payload = vec![0u8; payload_len(header).unwrap()];
        s.read_exact(&mut payload).await.unwrap();
        decode_payload(&payload).unwrap()
    }

    async fn next_update(
        s: &mut UnixStream,
        within: Duration,
    ) -> Option<netcontainer_proto::Update> {
        match tokio::time::timeout(within, read_response(s)).await {
            Ok(Response::Update(u)) => Some(u),
            Ok(other) => panic!("not an update: {other:?}"),
            Err(_) => None,
        }
    }

    /// A subscriber gets the state at once; a publish that changes nothing
    /// sends nothing; a burst of changes goes out as one update, with the
    /// last of them; no push reads the forward counters, a `Status` on
    /// another connection does.
    #[tokio::test]
    async fn pushes_once_per_change_and_never_reads_counters() {
        let bed = Bed::new("push");
        let mut s = bed.subscribe().await;
        let first = next_update(&mut s, Duration::from_secs(2)).await.unwrap();
        assert_eq!(first.seq, 1);
        assert_eq!(first.status.state, State::WaitingForPlan);
        assert_eq!(
            first.status.forwards[0].packets, 0,
            "pushes carry no counters"
        );

        for _ in 0..100 {
            bed.snap.send_modify(|_| {});
        }
        assert_eq!(next_update(&mut s, Duration::from_millis(500)).await, None);

        for i in 0..10 {
            bed.snap
                .send_modify(|s| s.hostname = Some(format!("web{i}")));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let u = next_update(&mut s, Duration::from_secs(2)).await.unwrap();
        assert_eq!((u.seq, u.status.hostname.as_deref()), (2, Some("web9")));
        assert_eq!(next_update(&mut s, Duration::from_millis(300)).await, None);

        // DHCP counters are part of the state pushed.
        bed.dhcp.renewed();
        bed.snap.send_modify(|_| {});
        let u = next_update(&mut s, Duration::from_secs(2)).await.unwrap();
        assert_eq!((u.seq, u.counters.renewals), (3, 1));
        assert_eq!(bed.nft_runs.load(Ordering::SeqCst), 0);

        let mut c = UnixStream::connect(&bed.path).await.unwrap();
        c.write_all(&encode_frame(&Request::Status).unwrap())
            .await
            .unwrap();
        let Response::Status(st) = read_response(&mut c).await else {
            panic!("no status");
        };
        assert_eq!(st.forwards[0].packets, 1);
        assert_eq!(bed.nft_runs.load(Ordering::SeqCst), 1);
    }

    /// With nothing changing, the state comes again every KEEPALIVE and the
    /// connection outlives the idle timeout of request connections.
    #[tokio::test(start_paused = true)]
    async fn a_quiet_subscription_gets_keepalives_past_the_idle_timeout() {
        let bed = Bed::new("keepalive");
        let mut s = bed.subscribe().await;
        assert_eq!(next_update(&mut s, KEEPALIVE).await.unwrap().seq, 1);
        let t0 = tokio::time::Instant::now();
        let mut seq = 1;
        while t0.elapsed() < IDLE_TIMEOUT + KEEPALIVE {
            let u = next_update(&mut s, KEEPALIVE * 2)
                .await
                .expect("a keepalive");
            seq += 1;
            assert_eq!(u.seq, seq);
        }
        assert!(seq >= 6, "{seq}");
    }

    /// A subscribed client that sends a request is out of step: dropped.
    /// Past MAX_SUBSCRIBERS, Subscribe is refused with an error.
    #[tokio::test]
    async fn subscribers_are_bounded_and_may_not_talk() {
        let bed = Bed::new("bounded");
        let mut held = Vec::new();
        for _ in 0..MAX_SUBSCRIBERS {
            let mut s = bed.subscribe().await;
            next_update(&mut s, Duration::from_secs(2)).await.unwrap();
            held.push(s);
        }
        let mut extra = bed.subscribe().await;
        match read_response(&mut extra).await {
            Response::Error(e) => assert!(e.contains("too many"), "{e}"),
            other => panic!("{other:?}"),
        }
        let mut talker = held.pop().unwrap();
        talker
            .write_all(&encode_frame(&Request::Status).unwrap())
            .await
            .unwrap();
        let mut rest = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(2), talker.read_to_end(&mut rest))
            .await
            .expect("closed")
            .unwrap_or(0);
        assert_eq!(n, 0, "nothing answers a request on a subscription");
        // Its permit is back.
        let mut again = bed.subscribe().await;
        assert_eq!(
            next_update(&mut again, Duration::from_secs(2))
                .await
                .unwrap()
                .seq,
            1
        );
    }
}
