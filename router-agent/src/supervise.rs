//! `netcontainer-agent --supervise`: PID 1 of the router container. Runs the
//! agent as its child and restarts it when it dies (crash, `kill -9`), so the
//! container, its network namespace and its LAN leg survive; the restarted
//! agent resumes the saved plan and asks for its persisted lease again
//! (INIT-REBOOT). SIGTERM/SIGINT are passed on and end the supervisor once the
//! agent has released its lease. It also reaps orphans, as PID 1 must.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// First delay before a restart; doubles up to `MAX_BACKOFF`, and starts
/// over once an agent has run for `STABLE`.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const STABLE: Duration = Duration::from_secs(10);

fn spawn(args: &[String]) -> std::io::Result<Pid> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(args);
    // SAFETY: only async-signal-safe calls (sigprocmask) between fork and exec.
    unsafe {
        cmd.pre_exec(|| SigSet::all().thread_unblock().map_err(std::io::Error::from));
    }
    let child = cmd.spawn()?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// Runs `netcontainer-agent ARGS` (without `--supervise`) until it exits on
/// purpose; returns its exit code.
pub fn run(args: Vec<String>) -> ExitCode {
    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        signals.add(s);
    }
    if let Err(e) = signals.thread_block() {
        eprintln!("error: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    let mut backoff = FIRST_BACKOFF;
    let mut stopping = false;
    let mut started = Instant::now();
    let mut child = match spawn(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot start the agent: {e}");
            return ExitCode::FAILURE;
        }
    };
    loop {
        let sig = match signals.wait() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: waiting for signals: {e}");
                return ExitCode::FAILURE;
            }
        };
        if matches!(sig, Signal::SIGTERM | Signal::SIGINT) {
            stopping = true;
            let _ = kill(child, sig);
            continue;
        }
        // SIGCHLD: reap everything; note how the agent ended, if it did.
        let mut ended = None;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => ended = Some(Ok(code)),
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => ended = Some(Err(s)),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let Some(how) = ended else { continue };
        match how {
            Ok(code) if stopping || code == 0 => return ExitCode::from(code.clamp(0, 255) as u8),
            Err(_) if stopping => return ExitCode::SUCCESS,
            _ => {}
        }
        if started.elapsed() >= STABLE {
            backoff = FIRST_BACKOFF;
        }
        tracing::warn!(how = ?how, restart_in = ?backoff, "the agent died; restarting it");
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
        started = Instant::now();
        child = match spawn(&args) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: cannot restart the agent: {e}");
                return ExitCode::FAILURE;
            }
        };
    }
}
