//! A one-shot command's interruption: SIGINT or SIGTERM while `up` works
//! stops it at its next step, and it rolls back what it created.

use tokio::sync::watch;

use crate::error::Error;

/// Set to `Some(signal name)` when the user interrupts a command; `up` then
/// stops at the next step and rolls back.
pub type Interrupt = watch::Receiver<Option<&'static str>>;

/// An [`Interrupt`] that never fires (watch). Its sender is gone at once,
/// which [`on_interrupt`] takes as "never".
pub fn never_interrupted() -> Interrupt {
    watch::channel(None).1
}

/// An [`Interrupt`] fired by SIGINT or SIGTERM. From this call on those
/// signals no longer end the process: the command stops at its next step
/// and cleans up.
pub fn interrupt_on_signals() -> Result<Interrupt, Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let err = |e: std::io::Error| Error::Usage(format!("cannot install signal handlers: {e}"));
    let mut int = signal(SignalKind::interrupt()).map_err(err)?;
    let mut term = signal(SignalKind::terminate()).map_err(err)?;
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let sig = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        tracing::warn!("{sig}: stopping and rolling back");
        let _ = tx.send(Some(sig));
        // Keep the sender: a dropped one would read as "never".
        std::future::pending::<()>().await;
    });
    Ok(rx)
}

pub fn interrupted(i: &Interrupt) -> Result<(), Error> {
    match *i.borrow() {
        Some(sig) => Err(Error::Interrupted(sig)),
        None => Ok(()),
    }
}

/// Waits until `i` fires.
pub async fn on_interrupt(i: &mut Interrupt) -> Error {
    loop {
        if let Some(sig) = *i.borrow_and_update() {
            return Error::Interrupted(sig);
        }
        if i.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
