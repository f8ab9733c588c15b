//! The control socket: a Unix stream socket speaking the framing of
//! `netcontainer-proto`, one request and one response at a time, any number
//! of requests per connection.
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

/// What the agent's loop publishes for status queries.
#[derive(Clone, Debug)]
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

    #[test]
    fn a_fresh_snapshot_waits_for_a_plan() {
        let status = Snapshot::new().status(Instant::now(), Vec::new());
        assert_eq!(status.state, State::WaitingForPlan);
    }
}
