//! Errors of the host driver. Every error that reaches the user is one line
//! of context plus, where one helps, a hint for what to do next.

use std::path::PathBuf;

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
    #[error("no DHCP lease on {interface} after {secs} s (state: {state}); the agent keeps trying")]
    WaitTimeout {
        interface: String,
        secs: u64,
        state: String,
    },
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::AgentUnreachable { path, .. } => Some(format!(
                "is netcontainer-agent running with --socket {}? (and are you root?)",
                path.display()
            )),
            Error::WaitTimeout { .. } => Some(
                "check that a DHCP server answers on the LAN the interface is attached to; `netcontainer agent status` shows progress"
                    .into(),
            ),
            Error::AgentProtocol(_) => {
                Some("the agent and this netcontainer may be different versions".into())
            }
            _ => None,
        }
    }
}
