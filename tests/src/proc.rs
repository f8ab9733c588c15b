//! A guard for a child process: killed by pid (SIGKILL) and reaped on drop.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// Owns a child process we started. Drop kills it (by its pid, never by name) if it still
/// runs, and reaps it.
pub struct ProcGuard {
    child: Option<Child>,
    what: String,
}

impl ProcGuard {
    pub fn new(child: Child, what: impl Into<String>) -> ProcGuard {
        ProcGuard {
            child: Some(child),
            what: what.into(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Exit status if it has exited (non-blocking).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Send a signal to the process (by pid), if it still runs.
    pub fn signal(&mut self, sig: libc::c_int) {
        if self.running() {
            // SAFETY: plain kill(2) on a pid we own and have not reaped.
            unsafe {
                libc::kill(self.pid() as libc::pid_t, sig);
            }
        }
    }

    /// Wait up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_status() {
                return Some(st);
            }
            if self.child.is_none() || Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGTERM);
        if let Some(st) = self.wait_timeout(grace) {
            return Some(st);
        }
        self.kill()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let c = self.child.as_mut()?;
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        let _ = c.kill();
        c.wait().ok()
    }

    /// Take the child out (the guard then does nothing).
    pub fn into_child(mut self) -> Child {
        self.child.take().expect("child")
    }
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
