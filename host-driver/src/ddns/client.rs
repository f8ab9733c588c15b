//! Sends the UPDATEs: over TCP (RFC 7766 length-prefixed), one connection
//! per update, each attempt bounded by [`ATTEMPT_LIMIT`], [`ATTEMPTS`]
//! attempts when the server cannot be reached or does not answer.
//!
//! TCP rather than UDP: an UPDATE is rare (a bind, a renumbering, a
//! removal), so a handshake costs nothing that matters, and TCP takes away
//! what UDP would need code for: retransmission and its timers, truncated
//! answers and the fallback they need, and answers from an off-path
//! spoofer racing the server's (the TSIG check stands anyway). Every
//! authoritative server takes TCP (RFC 7766 section 5).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use hickory_proto::rr::{Name, TSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::message::{self, Records, Refusal};

/// How long one attempt (connect, send, answer) may take.
pub const ATTEMPT_LIMIT: Duration = Duration::from_secs(3);
/// Attempts when the server cannot be reached; a server's answer, even a
/// refusal, is final.
pub const ATTEMPTS: u32 = 2;
/// The TSIG fudge (RFC 8945 section 10 recommends 300 s).
pub const FUDGE: u16 = 300;

/// Where the updates go and what signs them.
#[derive(Clone)]
pub struct Client {
    pub server: SocketAddr,
    pub zone: Name,
    signer: TSigner,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("server", &self.server)
            .field("zone", &self.zone)
            .field("key", self.signer.signer_name())
            .finish_non_exhaustive()
    }
}

/// Why an update did not go through.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("cannot reach the server: {0}")]
    Unreachable(std::io::Error),
    #[error("no answer within {} s", ATTEMPT_LIMIT.as_secs())]
    Timeout,
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// A failed update, one line: what, which name, zone and server, and why.
#[derive(Debug, thiserror::Error)]
#[error("dynamic DNS: {action} {name} (zone {zone}, server {server}): {failure}")]
pub struct UpdateError {
    pub action: &'static str,
    pub name: String,
    pub zone: String,
    pub server: SocketAddr,
    #[source]
    pub failure: Failure,
}

impl Client {
    pub fn new(server: SocketAddr, zone: Name, signer: TSigner) -> Client {
        Client {
            server,
            zone,
            signer,
        }
    }

    /// `<hostname>.<zone>`.
    pub fn name_of(&self, hostname: &str) -> Result<Name, String> {
        Name::from_ascii(hostname)
            .and_then(|h| h.append_domain(&self.zone))
            .map_err(|e| format!("{hostname:?} in zone {}: {e}", self.zone))
    }

    /// Makes `<hostname>.<zone>` hold `records` (and no other A or AAAA).
    pub async fn replace(&self, hostname: &str, records: &Records) -> Result<(), UpdateError> {
        self.run("update", hostname, |name| {
            message::replace(&self.zone, name, records)
        })
        .await
    }

    /// Deletes the A and AAAA records of `<hostname>.<zone>`.
    pub async fn delete(&self, hostname: &str) -> Result<(), UpdateError> {
        self.run("delete", hostname, |name| message::delete(&self.zone, name))
            .await
    }

    async fn run(
        &self,
        action: &'static str,
        hostname: &str,
        build: impl Fn(&Name) -> hickory_proto::op::Message,
    ) -> Result<(), UpdateError> {
        let fail = |failure: Failure| UpdateError {
            action,
            name: format!("{hostname}.{}", self.zone),
            zone: self.zone.to_string(),
            server: self.server,
            failure,
        };
        let name = self
            .name_of(hostname)
            .map_err(|e| fail(Refusal::Malformed(e).into()))?;
        let mut last = Failure::Timeout;
        for attempt in 1..=ATTEMPTS {
            // Signed afresh each attempt: a new ID and time.
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let (id, bytes, mut verifier) =
                message::sign(build(&name), &self.signer, now).map_err(|e| fail(e.into()))?;
            match tokio::time::timeout(ATTEMPT_LIMIT, exchange(self.server, &bytes)).await {
                Ok(Ok(answer)) => {
                    return message::check_answer(&answer, id, &mut verifier)
                        .map_err(|e| fail(e.into()));
                }
                Ok(Err(e)) => last = Failure::Unreachable(e),
                Err(_) => last = Failure::Timeout,
            }
            tracing::debug!(server = %self.server, %name, attempt, error = %last, "dynamic DNS attempt failed");
        }
        Err(fail(last))
    }
}

/// One request and its answer over a new TCP connection.
async fn exchange(server: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(server).await?;
    let len = u16::try_from(request.len())
        .map_err(|_| std::io::Error::other("UPDATE larger than 64 KiB"))?;
    let mut out = Vec::with_capacity(request.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(request);
    s.write_all(&out).await?;
    let len = s.read_u16().await? as usize;
    let mut answer = vec![0; len];
    s.read_exact(&mut answer).await?;
    Ok(answer)
}
