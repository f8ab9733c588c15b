//! The firewall's errors, shared by the front, the backends and the tool
//! runner.

use std::time::Duration;

/// Errors of the firewall module. Each names the operation and carries the
/// tool's own error text.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    #[error("invalid firewall input: {0}")]
    Invalid(String),
    #[error("unknown firewall backend {name:?} (known: {known})")]
    UnknownBackend { name: String, known: String },
    #[error("{op}: cannot run {program}: {source}")]
    Spawn {
        op: &'static str,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{op}: {program} timed out after {}s", after.as_secs())]
    Timeout {
        op: &'static str,
        program: String,
        after: Duration,
    },
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
