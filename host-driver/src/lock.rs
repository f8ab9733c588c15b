//! One lock per service, so that `up`, `down` and `watch` never work on the
//! same router at once (e.g. watch restarting a router that `down` is
//! removing). An flock(2) on `<run dir>/.locks/<service>.lock`: released by
//! the kernel when the holder exits, whatever way it exits.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::commands::run_dir;
use crate::error::Error;

/// Held while it lives.
pub struct ServiceLock {
    _flock: Flock<File>,
}

fn path(service: &str) -> PathBuf {
    run_dir().join(".locks").join(format!("{service}.lock"))
}

fn open(service: &str) -> Result<File, Error> {
    let p = path(service);
    let dir = p.parent().expect("has a parent").to_path_buf();
    std::fs::create_dir_all(&dir).map_err(|source| Error::File {
        what: "cannot create",
        path: dir,
        source,
    })?;
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|source| Error::File {
            what: "cannot open",
            path: p,
            source,
        })
}

impl ServiceLock {
    /// Takes the lock without waiting; `None` if someone holds it.
    pub fn try_take(service: &str) -> Result<Option<ServiceLock>, Error> {
        match Flock::lock(open(service)?, FlockArg::LockExclusiveNonblock) {
            Ok(f) => Ok(Some(ServiceLock { _flock: f })),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(Error::File {
                what: "cannot lock",
                path: path(service),
                source: e.into(),
            }),
        }
    }

    /// Waits up to `patience` for the lock.
    pub async fn take(service: &str, patience: Duration) -> Result<ServiceLock, Error> {
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

    #[test]
    fn exclusive_between_holders() {
        let dir = std::env::temp_dir().join(format!("nc-lock-{}", std::process::id()));
        // SAFETY: the only test in this binary that reads NETCONTAINER_RUN_DIR.
        unsafe { std::env::set_var("NETCONTAINER_RUN_DIR", &dir) };
        let a = ServiceLock::try_take("web1").unwrap().expect("free");
        assert!(ServiceLock::try_take("web1").unwrap().is_none(), "held");
        assert!(
            ServiceLock::try_take("web2").unwrap().is_some(),
            "per service"
        );
        drop(a);
        assert!(ServiceLock::try_take("web1").unwrap().is_some(), "released");
        unsafe { std::env::remove_var("NETCONTAINER_RUN_DIR") };
        std::fs::remove_dir_all(dir).unwrap();
    }
}
