//! Running the firewall's tools (`nft`, `conntrack`): one runner for both,
//! with a timeout, stdin written while the output is read, and errors that
//! name the operation and carry the tool's own text.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::error::FirewallError;

/// How long one nft or conntrack run may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How to start a tool: directly (the default), or behind an argv prefix
/// such as `ip netns exec NAME` (tests, the benchmark).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Runner {
    wrapper: Vec<String>,
}

/// Output of a finished command.
#[derive(Debug)]
pub(crate) struct Output {
    /// The command line, for errors.
    pub program: String,
    pub success: bool,
    pub status: String,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Output {
    /// The error for a command that ran but failed.
    pub fn failed(self, op: &'static str) -> FirewallError {
        FirewallError::Failed {
            op,
            program: self.program,
            status: self.status,
            stderr: self.stderr,
        }
    }
}

impl Runner {
    /// Tools run with `wrapper` in front of their command line.
    pub fn wrapped(wrapper: Vec<String>) -> Self {
        Runner { wrapper }
    }

    /// Tools run inside the named network namespace (`ip netns exec`).
    pub fn in_netns(name: &str) -> Self {
        Self::wrapped(["ip", "netns", "exec", name].map(String::from).to_vec())
    }

    /// Runs `program args...`, feeding it `stdin` if given. A tool that
    /// exits non-zero is not an error here (conntrack exits 1 when it
    /// deleted nothing): callers look at [`Output::success`].
    pub(crate) async fn run(
        &self,
        op: &'static str,
        program: &str,
        args: &[&str],
        stdin: Option<Vec<u8>>,
    ) -> Result<Output, FirewallError> {
        let mut argv = self.wrapper.iter().map(String::as_str).chain([program]);
        let exe = argv.next().unwrap_or(program);
        let mut cmd = Command::new(exe);
        cmd.args(argv)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let program = self
            .wrapper
            .iter()
            .map(String::as_str)
            .chain([program])
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = cmd.spawn().map_err(|source| FirewallError::Spawn {
            op,
            program: program.clone(),
            source,
        })?;
        // Write stdin concurrently with reading the output; if the tool exits
        // early (bad input) the write fails with EPIPE, and its stderr says why.
        let writer = match (stdin, child.stdin.take()) {
            (Some(data), Some(mut pipe)) => Some(tokio::spawn(async move {
                let r = pipe.write_all(&data).await;
                drop(pipe);
                r
            })),
            _ => None,
        };
        let out = match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
            Ok(r) => r.map_err(|source| FirewallError::Spawn {
                op,
                program: program.clone(),
                source,
            })?,
            Err(_) => {
                return Err(FirewallError::Timeout {
                    op,
                    program,
                    after: COMMAND_TIMEOUT,
                });
            }
        };
        let write_result = match writer {
            Some(w) => w.await.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            None => Ok(()),
        };
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if let (true, Err(source)) = (out.status.success(), write_result) {
            return Err(FirewallError::Spawn {
                op,
                program,
                source,
            });
        }
        Ok(Output {
            program,
            success: out.status.success(),
            status: out.status.to_string(),
            stdout: out.stdout,
            stderr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_with_stdin_and_reports_failures() {
        let r = Runner::default();
        let out = r
            .run("cat", "cat", &[], Some(b"hello".to_vec()))
            .await
            .unwrap();
        assert!(out.success);
        assert_eq!(out.stdout, b"hello");
        let out = r
            .run("fail", "sh", &["-c", "echo oops >&2; exit 3"], None)
            .await
            .unwrap();
        assert!(!out.success);
        let e = out.failed("fail").to_string();
        assert!(e.contains("fail: sh -c") && e.contains("oops"), "{e}");
        // A wrapper comes first.
        let out = Runner::wrapped(vec!["env".into()])
            .run("env", "echo", &["hi"], None)
            .await
            .unwrap();
        assert_eq!(out.stdout, b"hi\n");
        assert_eq!(out.program, "env echo hi");
        let e = Runner::wrapped(vec!["/nonexistent/tool".into()])
            .run("spawn", "nft", &[], None)
            .await
            .unwrap_err();
        assert!(matches!(e, FirewallError::Spawn { .. }), "{e}");
    }
}
