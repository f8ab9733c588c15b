//! After a complete reconcile: host directories no router claims (left by a
//! crash between creating the directory and the container) are removed.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use crate::lock::ServiceLock;
use crate::state::{self, ServiceName};

/// Host directories with no router (in the run directory and the lib
/// directory): left by a crash between creating the directory and the
/// container. Only old ones, so a concurrent `up` is never disturbed; only
/// directories named like a service (never a link).
pub(super) fn remove_stale_dirs(services: &BTreeSet<ServiceName>) {
    for root in [state::run_dir(), state::lib_dir()] {
        remove_stale_dirs_in(&root, services);
    }
}

/// How old a directory no router claims must be to go.
const MIN_AGE: Duration = Duration::from_secs(120);

/// Whether the entry `name` is stale: a directory (never a link), that no
/// router in `services` claims, last touched more than [`MIN_AGE`] before
/// `now`.
fn is_stale(
    name: &ServiceName,
    is_dir: bool,
    modified: Option<SystemTime>,
    now: SystemTime,
    services: &BTreeSet<ServiceName>,
) -> bool {
    let old = modified
        .and_then(|t| now.duration_since(t).ok())
        .is_some_and(|age| age > MIN_AGE);
    is_dir && !services.contains(name) && old
}

fn remove_stale_dirs_in(root: &std::path::Path, services: &BTreeSet<ServiceName>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(name) = ServiceName::parse(&e.file_name().to_string_lossy()) else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        let modified = meta.modified().ok();
        if !is_stale(&name, meta.is_dir(), modified, SystemTime::now(), services) {
            continue;
        }
        // A command working on the service may be reusing the directory
        // right now (the listing above is older than this moment): skip it.
        let Ok(Some(_lock)) = ServiceLock::try_take(&name) else {
            continue;
        };
        {
            tracing::info!(dir = %e.path().display(), "removing a router directory with no router");
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                tracing::warn!(dir = %e.path().display(), error = %err, "cannot remove");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_unclaimed_directories_are_stale() {
        let web1 = ServiceName::parse("web1").unwrap();
        let now = SystemTime::now();
        let old = Some(now - Duration::from_secs(121));
        let young = Some(now - Duration::from_secs(60));
        let none = BTreeSet::new();
        assert!(is_stale(&web1, true, old, now, &none));
        assert!(!is_stale(&web1, true, young, now, &none), "a concurrent up");
        assert!(!is_stale(&web1, false, old, now, &none), "a link or a file");
        assert!(!is_stale(&web1, true, None, now, &none), "no time: kept");
        let claimed = BTreeSet::from([web1.clone()]);
        assert!(!is_stale(&web1, true, old, now, &claimed));
        // A clock that went back: not old.
        assert!(!is_stale(
            &web1,
            true,
            Some(now + Duration::from_secs(300)),
            now,
            &none
        ));
    }
}
