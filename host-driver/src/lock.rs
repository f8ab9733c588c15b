//! One lock per service, so that `up`, `down` and `watch` never work on the
//! same router at once (e.g. watch restarting a router that `down` is
//! removing). An flock(2) on the service's lock file (see [`crate::state`]:
//! root-only, so nobody else can hold it): released by the kernel when the
//! holder exits, whatever way it exits.

use std::fs::File;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::Error;
use crate::state::{self, ServiceName, StateError};

/// Held while it lives.
pub struct ServiceLock {
    _flock: Flock<File>,
}

impl ServiceLock {
    /// Takes the lock without waiting; `None` if someone holds it.
    pub fn try_take(service: &ServiceName) -> Result<Option<ServiceLock>, Error> {
        match Flock::lock(state::open_lock(service)?, FlockArg::LockExclusiveNonblock) {
            Ok(f) => Ok(Some(ServiceLock { _flock: f })),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(StateError::File {
                what: "cannot lock",
                path: state::lock_path(service),
                source: e.into(),
            }
            .into()),
        }
    }

    /// Waits up to `patience` for the lock.
    pub async fn take(service: &ServiceName, patience: Duration) -> Result<ServiceLock, Error> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(l) = Self::try_take(service)? {
                return Ok(l);
            }
            if Instant::now() >= deadline {
                return Err(Error::Busy(service.to_string()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn exclusive_between_holders_and_root_only() {
        let dir = std::env::temp_dir().join(format!("nc-lock-{}", std::process::id()));
        // SAFETY: the only test in this binary that sets NETCONTAINER_RUN_DIR.
        unsafe { std::env::set_var("NETCONTAINER_RUN_DIR", &dir) };
        let web1 = ServiceName::parse("web1").unwrap();
        let a = ServiceLock::try_take(&web1).unwrap().expect("free");
        assert!(ServiceLock::try_take(&web1).unwrap().is_none(), "held");
        let web2 = ServiceName::parse("web2").unwrap();
        assert!(
            ServiceLock::try_take(&web2).unwrap().is_some(),
            "per service"
        );
        drop(a);
        assert!(ServiceLock::try_take(&web1).unwrap().is_some(), "released");
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(".locks")), 0o700);
        assert_eq!(mode(&state::lock_path(&web1)), 0o600);
        unsafe { std::env::remove_var("NETCONTAINER_RUN_DIR") };
        std::fs::remove_dir_all(dir).unwrap();
    }
}
