//! Errors of the host driver. Every error that reaches the user is one line
//! of context plus, where one helps, a hint for what to do next.

use std::path::PathBuf;

use crate::docker::DockerError;
use crate::plan::PlanError;
use crate::plumb::PlumbError;
use crate::state::{NameError, StateError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the agent at {path}: {source}")]
    AgentUnreachable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the agent at {path}: {detail}")]
    AgentIo { path: PathBuf, detail: String },
    #[error("the agent refused the request: {0}")]
    AgentRefused(String),
    #[error("unexpected answer from the agent: {0}")]
    AgentProtocol(String),
    /// A router's report that fails [`crate::agent_client::check_status`]:
    /// not used for routes, hooks or output.
    #[error("the router's agent reported {0}: its report is not used")]
    AgentReport(String),
    #[error("no DHCP lease on {interface} after {secs} s (state: {state}); the agent keeps trying")]
    WaitTimeout {
        interface: String,
        secs: u64,
        state: String,
    },
    #[error("no DHCP lease for {service} after {secs} s (state: {state}); nothing was left behind")]
    UpTimeout {
        service: String,
        secs: u64,
        state: String,
    },
    #[error(
        "{service}: asked the DHCP server for {asked}, it gave {got} (--ip-strict); nothing was left behind"
    )]
    NotTheAddress {
        service: String,
        asked: std::net::Ipv4Addr,
        got: std::net::Ipv4Addr,
    },
    #[error("{0}")]
    Usage(String),
    /// A bad configuration file: one line naming the file, line and key.
    #[error("{0}")]
    Config(String),
    #[error("netcontainer must run as root (it creates links in other network namespaces)")]
    NotRoot,
    #[error("{service} already has a network container ({router}{address})")]
    AlreadyUp {
        service: String,
        router: String,
        address: String,
    },
    #[error("identity {identity} is already used by router {router} on this host")]
    IdentityTaken { identity: String, router: String },
    #[error("another netcontainer command is working on {0}")]
    Busy(String),
    #[error("router container {0} stopped right after it started")]
    RouterDied(String),
    #[error("doctor found {0} problem(s): the FAIL lines above, each with its fix")]
    DoctorFound(usize),
    #[error("interrupted by {0}; everything this command had created was removed")]
    Interrupted(&'static str),
    #[error("pointing {service}'s default route at its router: {source}")]
    ServiceRoute {
        service: String,
        #[source]
        source: crate::service_route::RouteError,
    },
    /// Rootless Docker, Docker Desktop, WSL2 (`crate::platform`).
    #[error(transparent)]
    Unsupported(crate::platform::Unsupported),
    /// A `--ddns-key` file that cannot be used (`crate::ddns`).
    #[error(transparent)]
    DdnsKey(#[from] crate::ddns::KeyFileError),
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(transparent)]
    Plumb(#[from] PlumbError),
    #[error(transparent)]
    Plan(#[from] PlanError),
}

impl Error {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::AgentUnreachable { path, .. } => Some(format!(
                "is netcontainer-agent running with {} {}? (and are you root?)",
                netcontainer_proto::contract::flag::SOCKET,
                path.display()
            )),
            Error::WaitTimeout { .. } => Some(
                "check that a DHCP server answers on the LAN the interface is attached to and has a free address (a full pool stays silent); `netcontainer agent status` shows progress"
                    .into(),
            ),
            Error::UpTimeout { .. } => Some(
                "check that a DHCP server answers on the parent's LAN and has a free address (a full pool stays silent), or raise --timeout; with a parent that drops unknown MACs (VMs, WiFi) try --mode ipvlan"
                    .into(),
            ),
            Error::AgentProtocol(_) => {
                Some("the agent and this netcontainer may be different versions".into())
            }
            Error::AgentReport(_) => Some(
                "a router that reports this is broken or not the image this build expects: `docker logs` it, and re-create it (`netcontainer down SERVICE`, then `up`)".into(),
            ),
            Error::NotRoot => Some("run it with sudo".into()),
            Error::AlreadyUp { service, .. } => Some(format!(
                "`netcontainer status {service}` shows it; `netcontainer down {service}` removes it"
            )),
            Error::Busy(_) => Some("try again when it is done".into()),
            Error::NotTheAddress { .. } => Some(
                "the address is taken or outside the server's pool: ask for another with --ip, or drop --ip-strict to take what the server gives".into(),
            ),
            Error::Config(_) => Some(
                "fix the file (docs/operations.md lists its keys), or name another with --config".into(),
            ),
            Error::IdentityTaken { .. } => Some(
                "give each service its own netcontainer.identity label (identities must also be unique across the hosts on one LAN)".into(),
            ),
            Error::RouterDied(name) => Some(format!("`docker logs {name}` shows why")),
            Error::ServiceRoute { .. } => Some(
                "--source masquerade leaves the service's routes alone (clients then appear as the router)".into(),
            ),
            Error::Unsupported(u) => Some(u.instead().into()),
            Error::Name(e) => Some(e.hint().into()),
            Error::State(e) => e.hint(),
            Error::Docker(e) => e.hint(),
            Error::Plumb(e) => e.hint(),
            Error::Plan(e) => e.hint().map(str::to_string),
            _ => None,
        }
    }
}
