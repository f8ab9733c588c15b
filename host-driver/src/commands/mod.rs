//! One file per subcommand.

pub mod agent;
pub mod completion;
pub mod doctor;
pub mod down;
pub mod ls;
pub mod port;
pub mod status;
pub mod up;
pub mod watch;

use crate::error::Error;

/// How long `up` and `down` wait for another command (or `watch`) working
/// on the same service.
pub const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

pub fn require_root() -> Result<(), Error> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::NotRoot)
    }
}
