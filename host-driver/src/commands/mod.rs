//! One file per subcommand.

pub mod agent;
pub mod down;
pub mod ls;
pub mod status;
pub mod up;
pub mod watch;

use std::path::PathBuf;

use crate::error::Error;

/// Host directory under which each router gets its own state directory
/// (control socket, persisted lease), bind-mounted into the router.
pub fn run_dir() -> PathBuf {
    std::env::var_os("NETCONTAINER_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/netcontainer"))
}

/// How long `up` and `down` wait for another command (or `watch`) working
/// on the same service.
pub const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

/// The default router image: versioned with the driver.
pub fn default_image() -> String {
    format!("netcontainer/router:{}", env!("CARGO_PKG_VERSION"))
}

pub fn require_root() -> Result<(), Error> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::NotRoot)
    }
}
