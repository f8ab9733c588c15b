//! What `up` shows while it waits: a spinner with the phase (creating the
//! router, plumbing, waiting for the lease N s) when stderr is a terminal;
//! otherwise only the plain "SERVICE: waiting for a DHCP lease (STATE)" lines
//! it always printed (scripts and tests read those).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    service: String,
    enabled: bool,
    bar: Option<ProgressBar>,
    last_state: String,
    started: Instant,
    /// The phase under way (its short key, for the debug log) and since when.
    current: Option<(&'static str, Instant)>,
}

impl Progress {
    /// `enabled`: the command wants progress at all (`up`; not `watch`).
    pub fn new(service: &str, enabled: bool) -> Progress {
        let terminal = enabled && std::io::stderr().is_terminal();
        Progress::with_bar(service, enabled, terminal)
    }

    fn with_bar(service: &str, enabled: bool, spinner: bool) -> Progress {
        let bar = spinner.then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix}: {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_prefix(crate::output::safe(service).into_owned());
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        Progress {
            service: service.to_string(),
            enabled,
            bar,
            last_state: String::new(),
            started: Instant::now(),
            current: None,
        }
    }

    /// A new phase ("creating the router", "plumbing the LAN leg", ...):
    /// shown by the spinner only; `key` names it in the debug log, which
    /// times each phase (see [`Progress::mark`]).
    pub fn phase(&mut self, key: &'static str, what: &str) {
        self.mark(key);
        if let Some(b) = &self.bar {
            b.set_message(what.to_string());
        }
    }

    /// A new phase that the spinner does not show: only timed. The phase
    /// before it is logged at debug (`phase=KEY elapsed_ms=N`).
    pub fn mark(&mut self, key: &'static str) {
        self.end_phase();
        self.current = Some((key, Instant::now()));
    }

    fn end_phase(&mut self) {
        if let Some((key, at)) = self.current.take() {
            phase_done(&self.service, key, at);
        }
    }

    /// Still waiting for a lease in `state`.
    pub fn waiting(&mut self, state: &str) {
        if let Some(b) = &self.bar {
            b.set_message(waiting_text(state, self.started.elapsed()));
        } else if self.enabled && state != self.last_state {
            eprintln!("{}", plain_waiting_line(&self.service, state));
        }
        self.last_state = state.to_string();
    }

    /// Restarts the clock `waiting` shows (when the lease wait begins).
    pub fn start_clock(&mut self) {
        self.started = Instant::now();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.end_phase();
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// Logs (at debug) that phase `key` of `service`'s work, begun at `since`,
/// is done: `phase=KEY elapsed_ms=N`, the line the cold-start measurements
/// read.
pub fn phase_done(service: &str, key: &'static str, since: Instant) {
    tracing::debug!(
        %service,
        phase = key,
        elapsed_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
        "phase done"
    );
}

fn waiting_text(state: &str, elapsed: Duration) -> String {
    format!("waiting for the lease {} s ({state})", elapsed.as_secs())
}

/// The plain line (no terminal): unchanged from before the spinner.
pub fn plain_waiting_line(service: &str, state: &str) -> String {
    format!("{service}: waiting for a DHCP lease ({state})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts() {
        assert_eq!(
            plain_waiting_line("web1", "selecting"),
            "web1: waiting for a DHCP lease (selecting)"
        );
        assert_eq!(
            waiting_text("selecting", Duration::from_millis(3400)),
            "waiting for the lease 3 s (selecting)"
        );
    }

    #[test]
    fn spinner_carries_the_phase() {
        // Hidden draw target: the bar's state without a terminal.
        let mut p = Progress::with_bar("web1", true, true);
        let bar = p.bar.clone().unwrap();
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        p.phase("create", "creating the router");
        assert_eq!(bar.message(), "creating the router");
        p.waiting("selecting");
        assert!(
            bar.message().starts_with("waiting for the lease 0 s"),
            "{}",
            bar.message()
        );
        drop(p);
        assert!(bar.is_finished());
    }
}
