//! The persisted DHCPv6 lease, beside the DHCPv4 one (`lease6-<if>.json` in
//! the state directory): written on every bind, read at start, so that a
//! restarted agent Rebinds its address instead of soliciting a new one.
//! Times are Unix seconds (the agent's `Instant`s do not survive it).

use std::net::Ipv6Addr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use netcontainer_lease::LeaseTimes;
use netcontainer_lease::v6::Lease;
use serde::{Deserialize, Serialize};

use crate::store::DurableFile;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLease6 {
    pub interface: String,
    /// The client's DUID, hex; a lease is only reused by the same client.
    pub duid: String,
    pub address: Ipv6Addr,
    pub server_id: String,
    /// Unix times; `None` for infinity.
    pub preferred_until: Option<u64>,
    pub valid_until: Option<u64>,
    pub renew_at: Option<u64>,
    pub rebind_at: Option<u64>,
    /// Released on a clean stop: nothing to resume.
    #[serde(default)]
    pub released: bool,
}

fn unix(t: Option<Instant>, now: Instant, wall: SystemTime) -> Option<u64> {
    t.map(|t| {
        (wall + t.saturating_duration_since(now))
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    s.len()
        .is_multiple_of(2)
        .then(|| {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
                .collect()
        })
        .flatten()
}

impl StoredLease6 {
    pub fn from_lease(interface: &str, duid: &[u8], l: &Lease) -> Self {
        let (now, wall) = (Instant::now(), SystemTime::now());
        StoredLease6 {
            interface: interface.to_string(),
            duid: crate::store::hex(duid),
            address: l.address,
            server_id: crate::store::hex(&l.server_id),
            preferred_until: unix(l.preferred_until(), now, wall),
            valid_until: unix(l.expires_at(), now, wall),
            renew_at: unix(l.renew_at(), now, wall),
            rebind_at: unix(l.rebind_at(), now, wall),
            released: false,
        }
    }

    /// The lease as the client resumes it, its times counted from now;
    /// `None` when released, for another client, or expired.
    pub fn to_lease(&self, interface: &str, duid: &[u8]) -> Option<Lease> {
        if self.released || self.interface != interface || self.duid != crate::store::hex(duid) {
            return None;
        }
        let now_unix = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        let left = |t: Option<u64>| t.map(|t| Duration::from_secs(t.saturating_sub(now_unix)));
        let valid = left(self.valid_until);
        if valid.is_some_and(|v| v.is_zero()) {
            return None;
        }
        Some(Lease {
            address: self.address,
            server_id: unhex(&self.server_id)?,
            dns: Vec::new(),
            times: LeaseTimes {
                start: Instant::now(),
                t1: left(self.renew_at),
                t2: left(self.rebind_at),
                valid,
                preferred: left(self.preferred_until),
            },
        })
    }
}

#[derive(Clone, Debug)]
pub struct Lease6Store {
    file: DurableFile,
}

impl Lease6Store {
    pub fn new(state_dir: &Path, interface: &str) -> Self {
        Lease6Store {
            file: DurableFile::new(
                state_dir.join(netcontainer_proto::contract::lease6_file(interface)),
            ),
        }
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The stored lease; a missing or corrupt file is none (logged).
    pub fn load(&self) -> Option<StoredLease6> {
        let text = self.file.read().ok()??;
        serde_json::from_str(&text)
            .inspect_err(|e| tracing::warn!(path = %self.path().display(), error = %e, "ignoring a corrupt stored DHCPv6 lease"))
            .ok()
    }

    /// Writes atomically, now (see [`DurableFile`]).
    pub fn save(&self, lease: &StoredLease6) -> std::io::Result<()> {
        self.file.write_now(&serde_json::to_vec_pretty(lease)?)
    }

    /// [`Lease6Store::save`] off the runtime: the address does not wait for
    /// the disk.
    pub fn save_later(&self, lease: &StoredLease6) {
        match serde_json::to_vec_pretty(lease) {
            Ok(bytes) => self.file.write_later(bytes, "the DHCPv6 lease"),
            Err(e) => tracing::warn!(error = %e, "cannot encode the DHCPv6 lease"),
        }
    }

    pub fn mark_released(&self) {
        if let Some(mut l) = self.load() {
            l.released = true;
            if let Err(e) = self.save(&l) {
                tracing::warn!(error = %e, "cannot update the stored DHCPv6 lease");
            }
        }
    }

    pub fn clear(&self) {
        if let Err(e) = self.file.remove() {
            tracing::warn!(path = %self.path().display(), error = %e, "cannot remove the stored DHCPv6 lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_counts_from_now_and_refuses_others() {
        let dir = std::env::temp_dir().join(format!("nc-store6-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Lease6Store::new(&dir, "lan0");
        assert_eq!(store.load(), None);
        let lease = Lease {
            address: "2001:db8::100".parse().unwrap(),
            server_id: vec![0, 3, 0, 1, 2, 0, 0, 0, 0, 1],
            dns: Vec::new(),
            times: LeaseTimes {
                start: Instant::now(),
                t1: Some(Duration::from_secs(50)),
                t2: None,
                valid: Some(Duration::from_secs(200)),
                preferred: Some(Duration::from_secs(100)),
            },
        };
        let duid = [0, 3, 0, 1, 2, 0, 0, 0, 0, 2];
        store
            .save(&StoredLease6::from_lease("lan0", &duid, &lease))
            .unwrap();
        let back = store.load().unwrap().to_lease("lan0", &duid).unwrap();
        assert_eq!(
            (back.address, back.server_id.clone(), back.times.t2),
            (lease.address, lease.server_id.clone(), None)
        );
        assert!(back.times.valid.unwrap() > Duration::from_secs(198));
        assert!(store.load().unwrap().to_lease("lan1", &duid).is_none());
        assert!(store.load().unwrap().to_lease("lan0", &[1]).is_none());
        store.mark_released();
        assert!(store.load().unwrap().to_lease("lan0", &duid).is_none());
        store.clear();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
