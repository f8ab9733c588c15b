//! Client side of the agent's control socket. What an agent reports is a
//! router's word, and a router faces the LAN: its status and problems are
//! checked here ([`check_status`], [`check_problems`]) before anything uses
//! them for routes, hooks or output.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use netcontainer_proto::{
    HEADER_LEN, LeaseCounters, Problem, Request, Response, Status, Update, decode_payload,
    encode_frame, payload_len,
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
        tokio::time::timeout(REQUEST_TIMEOUT, self.stream.write_all(&frame))
            .await
            .map_err(|_| self.io("the agent does not read"))?
            .map_err(|e| self.io(e))?;
        self.response(REQUEST_TIMEOUT + extra).await
    }

    /// Reads the next response, within `within`.
    async fn response(&mut self, within: Duration) -> Result<Response, Error> {
        let read = async {
            let mut header = [0u8; HEADER_LEN];
            self.stream.read_exact(&mut header).await?;
            let len = payload_len(header).map_err(std::io::Error::other)?;
            let mut payload = vec![0u8; len];
            self.stream.read_exact(&mut payload).await?;
            Ok::<_, std::io::Error>(payload)
        };
        let payload = tokio::time::timeout(within, read)
            .await
            .map_err(|_| self.io("no answer in time"))?
            .map_err(|e| self.io(e))?;
        decode_payload(&payload).map_err(|e| Error::AgentProtocol(e.to_string()))
    }

    /// Turns this connection into a subscription (see `Request::Subscribe`)
    /// and returns its first update, checked; `None` from an agent older
    /// than subscriptions (it answers with an error and closes).
    pub async fn subscribe(mut self) -> Result<Option<(Subscription, Update)>, Error> {
        match self.request(&Request::Subscribe, Duration::ZERO).await? {
            Response::Update(u) => {
                let u = checked_update(u)?;
                Ok(Some((Subscription(self), u)))
            }
            // Busy, not old: the caller tries again later.
            Response::Error(e) if e == netcontainer_proto::TOO_MANY_SUBSCRIBERS => {
                Err(Error::AgentRefused(e))
            }
            Response::Error(_) => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    pub async fn status(&mut self) -> Result<Status, Error> {
        match self.request(&Request::Status, Duration::ZERO).await? {
            Response::Status(s) => checked(s),
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
            Response::Problems(p) => {
                check_problems(&p).map_err(Error::AgentReport)?;
                Ok(Some(p))
            }
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
            Response::Status(s) => checked(s),
            other => Err(unexpected(other)),
        }
    }
}

/// A connection the agent pushes its state on (see [`AgentClient::subscribe`]).
pub struct Subscription(AgentClient);

impl Subscription {
    /// The next update, checked; an error if none comes within `within`
    /// (the agent sends one at least every keepalive) or the agent closed.
    pub async fn next(&mut self, within: Duration) -> Result<Update, Error> {
        match self.0.response(within).await? {
            Response::Update(u) => checked_update(u),
            other => Err(unexpected(other)),
        }
    }
}

fn checked_update(u: Update) -> Result<Update, Error> {
    check_status(&u.status).map_err(Error::AgentReport)?;
    check_problems(&u.problems).map_err(Error::AgentReport)?;
    Ok(u)
}

fn checked(s: Status) -> Result<Status, Error> {
    check_status(&s).map_err(Error::AgentReport)?;
    Ok(s)
}

/// At most this many DNS servers, IPv6 addresses and problems in a report:
/// the agent keeps far fewer (16 SLAAC addresses, a DHCPv6 one, a link-local
/// one), so more is a router that is not ours.
const MAX_LIST: usize = 64;
/// At most this many forwards: one per published port range, which the
/// driver's plan bounds by the service's exposed ports.
const MAX_FORWARDS: usize = 4096;
/// Longest free text (an error, a problem) taken from an agent.
const MAX_TEXT: usize = 4096;

/// An IPv4 address a host can hold and be routed to: not 0.0.0.0/8,
/// loopback, link-local, multicast, the reserved 240.0.0.0/4 or broadcast.
fn unicast4(a: Ipv4Addr) -> bool {
    !(a.octets()[0] == 0
        || a.is_loopback()
        || a.is_link_local()
        || a.is_multicast()
        || a.octets()[0] >= 240)
}

/// An IPv6 address an interface can hold: not unspecified, loopback,
/// multicast or IPv4-mapped.
fn unicast6(a: Ipv6Addr) -> bool {
    !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.to_ipv4_mapped().is_some())
}

/// Free text from an agent: bounded; printed escaped by `output`.
fn check_text(what: &str, t: &str) -> Result<(), String> {
    if t.len() > MAX_TEXT {
        return Err(format!("a {what} of {} bytes", t.len()));
    }
    Ok(())
}

/// Whether an agent's status can be used: addresses that a route or a hook
/// may carry (the lease's, the forwards' targets), bounded lists and texts,
/// names that are names.
/// Refused whole: one impossible field means the rest is not to be believed.
pub fn check_status(s: &Status) -> Result<(), String> {
    if let Some(i) = &s.interface
        && (i.is_empty()
            || i.len() > 15
            || !i
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
    {
        return Err(format!("an invalid interface name {i:?}"));
    }
    if let Some(h) = &s.hostname {
        netcontainer_proto::validate_hostname(h).map_err(|e| format!("an {e}"))?;
    }
    if let Some(l) = &s.lease {
        if !unicast4(l.address) {
            return Err(format!("a lease on {}, not a unicast address", l.address));
        }
        if l.prefix_len > 32 {
            return Err(format!("a lease with prefix length {}", l.prefix_len));
        }
        // The gateway and DNS servers are the LAN's DHCP server's word,
        // only shown: an odd one is no reason to refuse the router's report
        // (a rogue server must not make the router unmanageable).
        if l.dns.len() > MAX_LIST {
            return Err(format!("{} DNS servers", l.dns.len()));
        }
    }
    if s.forwards.len() > MAX_FORWARDS {
        return Err(format!("{} forwards", s.forwards.len()));
    }
    for f in &s.forwards {
        if f.public_port == 0 || f.public_port_end < f.public_port || f.target_port == 0 {
            return Err(format!(
                "a forward of ports {}-{} to port {}",
                f.public_port, f.public_port_end, f.target_port
            ));
        }
        if !unicast4(f.target_address) {
            return Err(format!(
                "a forward to {}, not a unicast address",
                f.target_address
            ));
        }
    }
    if s.ipv6.len() > MAX_LIST {
        return Err(format!("{} IPv6 addresses", s.ipv6.len()));
    }
    for a in &s.ipv6 {
        if !unicast6(a.address) || a.prefix_len > 128 {
            return Err(format!(
                "an IPv6 address {}/{}, not a unicast address",
                a.address, a.prefix_len
            ));
        }
    }
    if let Some(e) = &s.last_error {
        check_text("last error", e)?;
    }
    if s.agent_version.len() > 64 {
        return Err(format!("a version of {} bytes", s.agent_version.len()));
    }
    Ok(())
}

/// Whether an agent's problems can be shown: a bounded list of bounded texts.
pub fn check_problems(p: &[Problem]) -> Result<(), String> {
    if p.len() > MAX_LIST {
        return Err(format!("{} problems", p.len()));
    }
    p.iter().try_for_each(|p| check_text("problem", &p.message))
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

#[cfg(test)]
mod tests {
    use super::*;
    use netcontainer_proto::{
        ForwardStatus, Ipv6AddressStatus, Ipv6Origin, LeaseStatus, Protocol, State, Subsystem,
    };

    fn good() -> Status {
        Status {
            state: State::Bound,
            interface: Some("lan0".into()),
            hostname: Some("web1".into()),
            lease: Some(LeaseStatus {
                address: Ipv4Addr::new(203, 0, 113, 50),
                prefix_len: 24,
                gateway: Some(Ipv4Addr::new(203, 0, 113, 1)),
                server_id: Ipv4Addr::new(203, 0, 113, 1),
                lease_secs: Some(3600),
                renew_in_secs: Some(1800),
                rebind_in_secs: Some(3150),
                expires_in_secs: Some(3600),
                dns: vec![Ipv4Addr::new(203, 0, 113, 1)],
            }),
            forwards: vec![ForwardStatus {
                protocol: Protocol::Tcp,
                public_port: 80,
                public_port_end: 80,
                target_address: Ipv4Addr::new(198, 51, 100, 2),
                target_port: 80,
                packets: 0,
                bytes: 0,
            }],
            last_error: None,
            agent_version: "0.1.0".into(),
            source: Default::default(),
            ipv6: vec![Ipv6AddressStatus {
                address: "2001:db8::5".parse().unwrap(),
                prefix_len: 64,
                origin: Ipv6Origin::Slaac,
                preferred_in_secs: None,
                valid_in_secs: None,
            }],
            ipv6_path: Default::default(),
            mdns: None,
        }
    }

    fn refused(f: impl FnOnce(&mut Status)) -> String {
        let mut s = good();
        f(&mut s);
        check_status(&s).expect_err("accepted")
    }

    #[test]
    fn a_sound_report_passes() {
        check_status(&good()).unwrap();
        // Before a plan and a lease: nothing to check but the version.
        let mut s = good();
        s.interface = None;
        s.hostname = None;
        s.lease = None;
        s.forwards.clear();
        s.ipv6.clear();
        check_status(&s).unwrap();
    }

    #[test]
    fn lease_addresses_that_no_host_holds_are_refused() {
        for bad in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "169.254.1.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            let a: Ipv4Addr = bad.parse().unwrap();
            let e = refused(|s| s.lease.as_mut().unwrap().address = a);
            assert_eq!(e, format!("a lease on {a}, not a unicast address"));
            refused(|s| s.forwards[0].target_address = a);
            // Shown only: taken as they are.
            let mut s = good();
            let l = s.lease.as_mut().unwrap();
            l.gateway = Some(a);
            l.dns.push(a);
            check_status(&s).unwrap();
        }
        refused(|s| s.lease.as_mut().unwrap().prefix_len = 33);
        refused(|s| s.lease.as_mut().unwrap().dns = vec![Ipv4Addr::new(203, 0, 113, 1); 65]);
        // The error line names the router's claim.
        let e = Error::AgentReport(refused(|s| {
            s.lease.as_mut().unwrap().address = Ipv4Addr::BROADCAST
        }));
        assert_eq!(
            e.to_string(),
            "the router's agent reported a lease on 255.255.255.255, not a unicast address: its report is not used"
        );
    }

    #[test]
    fn names_lists_and_texts_are_bounded() {
        for bad in ["", "lan0/../x", "a-very-long-interface", "lan\n0", "lan 0"] {
            refused(|s| s.interface = Some(bad.into()));
        }
        for bad in ["$(reboot)", "a b", "-x", "\u{1b}[2J", &"a".repeat(254)] {
            refused(|s| s.hostname = Some(bad.into()));
        }
        refused(|s| s.last_error = Some("x".repeat(MAX_TEXT + 1)));
        refused(|s| s.agent_version = "v".repeat(65));
        refused(|s| s.forwards = vec![s.forwards[0].clone(); MAX_FORWARDS + 1]);
        refused(|s| s.forwards[0].public_port_end = 79);
        refused(|s| s.forwards[0].public_port = 0);
        refused(|s| s.forwards[0].target_port = 0);
        refused(|s| s.ipv6 = vec![s.ipv6[0].clone(); MAX_LIST + 1]);
        for bad in ["::", "::1", "ff02::1", "::ffff:203.0.113.5"] {
            refused(|s| s.ipv6[0].address = bad.parse().unwrap());
        }
        refused(|s| s.ipv6[0].prefix_len = 129);
        let p = |m: &str| Problem {
            subsystem: Subsystem::Dhcp,
            message: m.into(),
        };
        check_problems(&[p("no lease")]).unwrap();
        assert!(check_problems(&[p(&"x".repeat(MAX_TEXT + 1))]).is_err());
        assert!(check_problems(&vec![p("x"); MAX_LIST + 1]).is_err());
    }
}
