//! The persisted lease: written on every bind, read at start, so that a
//! restarted agent asks for the same address (INIT-REBOOT).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredLease {
    pub interface: String,
    /// Client identifier, hex; a lease is only reused for the same identity.
    pub client_id: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub server_id: Ipv4Addr,
    /// Unix time the lease expires; `None` for an infinite lease.
    pub expires_unix: Option<u64>,
    /// The lease was released (clean stop): the next agent asks for the
    /// address in its DISCOVER instead of claiming it (INIT-REBOOT).
    #[serde(default)]
    pub released: bool,
    /// The rest of the lease (absent from the files of older agents), so
    /// that a restarted agent whose server does not answer can use it until
    /// it ends (RFC 2131 section 3.2) with the routes it came with.
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub routes: Vec<(Ipv4Addr, u8, Ipv4Addr)>,
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// Unix times of T1 and T2; `None` for an infinite lease (and in older
    /// files, which then rebind at once).
    #[serde(default)]
    pub renew_unix: Option<u64>,
    #[serde(default)]
    pub rebind_unix: Option<u64>,
    /// The interface MTU the lease gave (option 26), put back on `lan0` by a
    /// restarted agent that resumes the lease.
    #[serde(default)]
    pub mtu: Option<u16>,
}

impl StoredLease {
    /// The lease as the client holds it, its times counted from `now`
    /// (`wall` being the same moment in Unix time). Stored times are whole
    /// seconds rounded down: the lease ends up to a second before the
    /// server's, never after. A time already past is due at once.
    pub fn to_lease(
        &self,
        now: std::time::Instant,
        wall: SystemTime,
    ) -> netcontainer_lease::v4::Lease {
        let since_epoch = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        let left = |t: u64| Duration::from_secs(t).saturating_sub(since_epoch);
        let valid = self.expires_unix.map(left);
        let zero_if_finite = || valid.map(|_| Duration::ZERO);
        netcontainer_lease::v4::Lease {
            address: self.address,
            prefix_len: self.prefix_len,
            gateway: self.gateway,
            routes: self.routes.clone(),
            server_id: self.server_id,
            dns: self.dns.clone(),
            mtu: self.mtu,
            times: netcontainer_lease::timers::LeaseTimes {
                start: now,
                t1: self.renew_unix.map(left).or_else(zero_if_finite),
                t2: self.rebind_unix.map(left).or_else(zero_if_finite),
                valid,
                preferred: valid,
            },
        }
    }

    pub fn expired(&self, now: SystemTime) -> bool {
        match self.expires_unix {
            None => false,
            Some(t) => now.duration_since(UNIX_EPOCH).unwrap_or_default() >= Duration::from_secs(t),
        }
    }
}

/// fsyncs the directory holding `path` (a rename is durable only then).
fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A file replaced atomically (temporary file, fsync, rename, fsync of the
/// directory), written now or on the blocking pool: the agent's runtime has
/// one thread, and fsyncs (milliseconds on a busy disk) must not stand
/// between a plan and its first DISCOVER or a lease and its address. Writes
/// land in the order issued: one overtaken by a newer write or a removal is
/// dropped, whichever thread gets there first.
#[derive(Clone, Debug)]
pub struct DurableFile {
    path: PathBuf,
    seq: std::sync::Arc<std::sync::Mutex<Seq>>,
}

/// Changes issued and the last one on disk.
#[derive(Debug, Default)]
struct Seq {
    issued: u64,
    written: u64,
}

impl DurableFile {
    pub fn new(path: PathBuf) -> Self {
        DurableFile {
            path,
            seq: Default::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn issue(&self) -> u64 {
        let mut s = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        s.issued += 1;
        s.issued
    }

    /// The file's text; `None` when it is missing, `Err` when unreadable.
    pub fn read(&self) -> std::io::Result<Option<String>> {
        match std::fs::read_to_string(&self.path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn write_now(&self, bytes: &[u8]) -> std::io::Result<()> {
        let n = self.issue();
        let mut s = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        self.write(bytes)?;
        s.written = s.written.max(n);
        Ok(())
    }

    /// [`DurableFile::write_now`] on the blocking pool; a failure is logged
    /// as `what`.
    pub fn write_later(&self, bytes: Vec<u8>, what: &'static str) {
        let n = self.issue();
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = me.seq.lock().unwrap_or_else(|p| p.into_inner());
            if n <= s.written {
                return;
            }
            if let Err(e) = me.write(&bytes) {
                tracing::warn!(path = %me.path.display(), error = %e, "cannot persist {what}");
            }
            s.written = n;
        });
    }

    fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        sync_dir(&self.path)
    }

    /// Removes the file; also drops a write still pending on the blocking
    /// pool.
    pub fn remove(&self) -> std::io::Result<()> {
        let n = self.issue();
        let mut s = self.seq.lock().unwrap_or_else(|p| p.into_inner());
        s.written = s.written.max(n);
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Lease file of one interface in the state directory.
#[derive(Clone, Debug)]
pub struct LeaseStore {
    file: DurableFile,
}

impl LeaseStore {
    pub fn new(state_dir: &Path, interface: &str) -> Self {
        LeaseStore {
            file: DurableFile::new(
                state_dir.join(netcontainer_proto::contract::lease_file(interface)),
            ),
        }
    }

    /// [`LeaseStore::save`] off the runtime (see [`DurableFile`]).
    pub fn save_later(&self, lease: StoredLease) {
        match serde_json::to_vec_pretty(&lease) {
            Ok(bytes) => self.file.write_later(bytes, "the lease"),
            Err(e) => tracing::warn!(error = %e, "cannot encode the lease"),
        }
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The stored lease, if there is a readable one. A corrupt file is logged
    /// and ignored (the client then simply starts from DISCOVER).
    pub fn load(&self) -> Option<StoredLease> {
        let text = match self.file.read() {
            Ok(t) => t?,
            Err(e) => {
                tracing::warn!(path = %self.path().display(), error = %e, "cannot read the stored lease");
                return None;
            }
        };
        serde_json::from_str(&text)
            .inspect_err(|e| tracing::warn!(path = %self.path().display(), error = %e, "ignoring a corrupt stored lease"))
            .ok()
    }

    pub fn save(&self, lease: &StoredLease) -> std::io::Result<()> {
        self.file.write_now(&serde_json::to_vec_pretty(lease)?)
    }

    pub fn clear(&self) -> std::io::Result<()> {
        self.file.remove()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "nc-store-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Saves off the runtime land in the order issued, and a clear drops a
    /// save still pending.
    #[tokio::test]
    async fn background_saves_keep_the_newest() {
        let dir = tmpdir().join("bg");
        std::fs::create_dir_all(&dir).unwrap();
        let store = LeaseStore::new(&dir, "lan0");
        let lease = |last: u8| StoredLease {
            interface: "lan0".into(),
            client_id: hex(b"\x01ab"),
            address: std::net::Ipv4Addr::new(192, 0, 2, last),
            prefix_len: 24,
            server_id: std::net::Ipv4Addr::new(192, 0, 2, 1),
            expires_unix: None,
            released: false,
            gateway: None,
            routes: vec![],
            dns: vec![],
            renew_unix: None,
            rebind_unix: None,
            mtu: None,
        };
        for i in 0..20 {
            store.save_later(lease(10 + i));
        }
        let settled = |want: Option<u8>| {
            let store = store.clone();
            async move {
                for _ in 0..200 {
                    if store.load().map(|l| l.address.octets()[3]) == want {
                        return true;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                false
            }
        };
        assert!(settled(Some(29)).await, "{:?}", store.load());
        store.save_later(lease(99));
        store.clear().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(store.load(), None, "a pending save outlived the clear");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A stored lease comes back as the client held it, counted from the
    /// restart: what is left of it, with its gateway and routes; an older
    /// file without T1/T2 rebinds at once.
    #[test]
    fn a_stored_lease_resumes_with_what_is_left_of_it() {
        let wall = UNIX_EPOCH + Duration::from_secs(1_000);
        let now = std::time::Instant::now();
        let gw = Ipv4Addr::new(192, 0, 2, 1);
        let route = (Ipv4Addr::new(198, 51, 100, 0), 24, gw);
        let stored = StoredLease {
            interface: "lan0".into(),
            client_id: hex(b"\x01ab"),
            address: Ipv4Addr::new(192, 0, 2, 57),
            prefix_len: 24,
            server_id: gw,
            expires_unix: Some(1_300),
            released: false,
            gateway: Some(gw),
            routes: vec![route],
            dns: vec![gw],
            renew_unix: Some(900),
            rebind_unix: Some(1_200),
            mtu: None,
        };
        let l = stored.to_lease(now, wall);
        assert_eq!(
            (l.address, l.prefix_len, l.server_id),
            (stored.address, 24, gw)
        );
        assert_eq!(
            (l.gateway, l.routes.clone(), l.dns.clone()),
            (Some(gw), vec![route], vec![gw])
        );
        assert_eq!(l.renew_at(), Some(now), "T1 past: renew at once");
        assert_eq!(l.rebind_at(), Some(now + Duration::from_secs(200)));
        assert_eq!(l.expires_at(), Some(now + Duration::from_secs(300)));
        let old = StoredLease {
            renew_unix: None,
            rebind_unix: None,
            mtu: None,
            ..stored.clone()
        };
        let json = serde_json::to_string(&old).unwrap();
        let json = json.replace(",\"renew_unix\":null,\"rebind_unix\":null", "");
        let old: StoredLease = serde_json::from_str(&json).unwrap();
        let l = old.to_lease(now, wall);
        assert_eq!((l.renew_at(), l.rebind_at()), (Some(now), Some(now)));
        let infinite = StoredLease {
            expires_unix: None,
            ..old
        };
        assert_eq!(infinite.to_lease(now, wall).times.next_deadline(), None);
    }

    #[test]
    fn save_load_clear() {
        let dir = tmpdir();
        let store = LeaseStore::new(&dir, "lan0");
        assert_eq!(store.load(), None);
        let lease = StoredLease {
            interface: "lan0".into(),
            client_id: hex(b"\x01ab"),
            address: Ipv4Addr::new(192, 0, 2, 57),
            prefix_len: 24,
            server_id: Ipv4Addr::new(192, 0, 2, 1),
            expires_unix: Some(10),
            released: false,
            gateway: None,
            routes: vec![],
            dns: vec![],
            renew_unix: None,
            rebind_unix: None,
            mtu: None,
        };
        store.save(&lease).unwrap();
        assert_eq!(store.load(), Some(lease.clone()));
        // Nothing but the lease is left in the directory (the temporary file
        // was renamed).
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["lease-lan0.json"]);
        assert!(lease.expired(SystemTime::now()));
        assert!(
            !StoredLease {
                expires_unix: None,
                ..lease
            }
            .expired(SystemTime::now())
        );
        std::fs::write(store.path(), "{not json").unwrap();
        assert_eq!(store.load(), None);
        store.clear().unwrap();
        store.clear().unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// The last plan applied, so that an agent restarted after a crash (by the
/// supervisor, in the same namespace) picks its work up again at once,
/// without waiting for the driver. Removed on a clean shutdown.
#[derive(Clone, Debug)]
pub struct PlanStore {
    file: DurableFile,
}

impl PlanStore {
    pub fn new(state_dir: &Path) -> Self {
        PlanStore {
            file: DurableFile::new(state_dir.join(netcontainer_proto::contract::PLAN_FILE)),
        }
    }

    pub fn load(&self) -> Option<netcontainer_proto::Plan> {
        let text = self.file.read().ok()??;
        match serde_json::from_str(&text) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(path = %self.file.path().display(), error = %e, "ignoring a corrupt saved plan");
                None
            }
        }
    }

    /// Saved off the runtime: the plan's first DISCOVER does not wait for
    /// the disk (a crash before it lands only means waiting for the driver).
    pub fn save_later(&self, plan: &netcontainer_proto::Plan) {
        match serde_json::to_vec(plan) {
            Ok(bytes) => self.file.write_later(bytes, "the plan"),
            Err(e) => tracing::warn!(error = %e, "cannot encode the plan"),
        }
    }

    pub fn clear(&self) {
        if let Err(e) = self.file.remove() {
            tracing::warn!(path = %self.file.path().display(), error = %e, "cannot remove the saved plan");
        }
    }
}
