//! Client side of the agent's control socket.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netcontainer_proto::{
    HEADER_LEN, LeaseCounters, Problem, Request, Response, Status, decode_payload, encode_frame,
    payload_len,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::error::Error;
use crate::state::{self, ServiceName};

/// How long one request may take beyond what it asks to wait for.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a service's agent may take to answer [`agent_status`] or to
/// take [`release`]'s request.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

pub struct AgentClient {
    path: PathBuf,
    stream: UnixStream,
}

impl AgentClient {
    pub async fn connect(path: &Path) -> Result<Self, Error> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| Error::AgentUnreachable {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(AgentClient {
            path: path.to_path_buf(),
            stream,
        })
    }

    fn io(&self, detail: impl std::fmt::Display) -> Error {
        Error::AgentIo {
            path: self.path.clone(),
            detail: detail.to_string(),
        }
    }

    /// Sends one request and reads its response. `extra` extends the timeout
    /// for requests that wait on purpose.
    pub async fn request(&mut self, req: &Request, extra: Duration) -> Result<Response, Error> {
        let frame = encode_frame(req).map_err(|e| self.io(e))?;
        let exchange = async {
            self.stream.write_all(&frame).await?;
            let mut header = [0u8; HEADER_LEN];
            self.stream.read_exact(&mut header).await?;
            let len = payload_len(header).map_err(std::io::Error::other)?;
            let mut payload = vec![0u8; len];
            self.stream.read_exact(&mut payload).await?;
            Ok::<_, std::io::Error>(payload)
        };
        let payload = tokio::time::timeout(REQUEST_TIMEOUT + extra, exchange)
            .await
            .map_err(|_| self.io("no answer in time"))?
            .map_err(|e| self.io(e))?;
        decode_payload(&payload).map_err(|e| Error::AgentProtocol(e.to_string()))
    }

    pub async fn status(&mut self) -> Result<Status, Error> {
        match self.request(&Request::Status, Duration::ZERO).await? {
            Response::Status(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// The DHCP client's counters; `None` from an agent older than the
    /// request (it answers with an error, and closes the connection).
    pub async fn counters(&mut self) -> Result<Option<LeaseCounters>, Error> {
        match self.request(&Request::Counters, Duration::ZERO).await? {
            Response::Counters(c) => Ok(Some(c)),
            Response::Error(_) => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    /// The agent's standing problems by subsystem; `None` from an agent
    /// older than the request (it answers with an error and closes the
    /// connection: ask last).
    pub async fn problems(&mut self) -> Result<Option<Vec<Problem>>, Error> {
        match self.request(&Request::Problems, Duration::ZERO).await? {
            Response::Problems(p) => Ok(Some(p)),
            Response::Error(_) => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until the agent holds a lease or `timeout` passes; returns the
    /// status at that moment.
    pub async fn wait_bound(&mut self, timeout: Duration) -> Result<Status, Error> {
        let req = Request::Wait {
            timeout_ms: timeout.as_millis().min(u128::from(u64::MAX)) as u64,
        };
        match self.request(&req, timeout).await? {
            Response::Status(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }
}

pub fn unexpected(resp: Response) -> Error {
    match resp {
        Response::Error(e) => Error::AgentRefused(e),
        other => Error::AgentProtocol(format!("{other:?}")),
    }
}

/// A service's agent's standing problems, or `None` if it does not answer
/// within [`ANSWER_WITHIN`] or is older than the request.
pub async fn agent_problems(service: &ServiceName) -> Option<Vec<Problem>> {
    let socket = state::socket(service);
    let fut = async {
        let mut c = AgentClient::connect(&socket).await.ok()?;
        c.problems().await.ok().flatten()
    };
    tokio::time::timeout(ANSWER_WITHIN, fut)
        .await
        .ok()
        .flatten()
}

/// Status of a service's agent, or `None` if it does not answer within
/// [`ANSWER_WITHIN`].
pub async fn agent_status(service: &ServiceName) -> Option<Status> {
    let socket = state::socket(service);
    let fut = async {
        let mut c = AgentClient::connect(&socket).await.ok()?;
        c.status().await.ok()
    };
    tokio::time::timeout(ANSWER_WITHIN, fut)
        .await
        .ok()
        .flatten()
}

/// Asks `service`'s agent to release its lease and exit (a `Shutdown`
/// request: a router's agent keeps its lease on SIGTERM, for the reboot
/// case), and waits, at most `grace_secs`, until it is gone (its socket
/// removed). An agent that does not answer (a stopped router) has nothing
/// to send a RELEASE with: its lease expires at the server.
pub async fn release(service: &ServiceName, grace_secs: i32) {
    let socket = state::socket(service);
    let asked = async {
        let mut c = AgentClient::connect(&socket).await.ok()?;
        match c.request(&Request::Shutdown, Duration::ZERO).await.ok()? {
            Response::ShuttingDown => Some(()),
            _ => None,
        }
    };
    if tokio::time::timeout(ANSWER_WITHIN, asked)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        tracing::debug!(%service, "the agent did not take a shutdown request; stopping it");
        return;
    }
    let until = Instant::now() + Duration::from_secs(grace_secs.max(1) as u64);
    while socket.exists() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
