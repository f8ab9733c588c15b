//! The host's state: one directory per router under the run directory (its
//! agent's socket and saved plan, bind-mounted into the router), one under
//! the lib directory (its persisted lease, bind-mounted too: `/run` is
//! emptied by a reboot, `/var/lib` is not), and the per-service lock files.
//!
//! Every path built from a service name is built here, from a [`ServiceName`]:
//! the one validator of names that come from the command line, from Docker
//! (container names, labels, events) or from the run directory itself. A name
//! that is not a valid Docker container name or ID (`..`, `.`, an empty
//! string, anything with a slash or a control character) never becomes a
//! path: without this, `down ..` removed the run directory's parent.
//!
//! The run directory and the lock directory are root-only (0700) and the lock
//! files 0600, so an unprivileged local user can neither read the leases nor
//! hold a lock to block `up`, `down` or `watch`.

use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The agent's control socket inside a router's state directory (the router
/// sees the directory at [`netcontainer_proto::contract::STATE_DIR`]).
pub const SOCKET_NAME: &str = netcontainer_proto::contract::SOCKET_NAME;
/// Longest name accepted: a path component is at most 255 bytes, and the lock
/// file adds a suffix.
const MAX_NAME: usize = 200;

/// A valid Docker container name or ID, without Docker's leading `/`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid container name {shown}: {why}")]
pub struct NameError {
    /// The name as given, escaped (it may hold control characters).
    shown: String,
    why: &'static str,
}

impl NameError {
    pub fn hint(&self) -> &'static str {
        "a container name or ID is [a-zA-Z0-9][a-zA-Z0-9_.-]+ (`docker ps` lists them)"
    }
}

impl ServiceName {
    /// Docker's rule for container names, `/?[a-zA-Z0-9][a-zA-Z0-9_.-]+`,
    /// which container IDs (hex) satisfy too.
    pub fn parse(s: &str) -> Result<ServiceName, NameError> {
        let err = |why| NameError {
            shown: format!("{s:?}"),
            why,
        };
        let name = s.strip_prefix('/').unwrap_or(s);
        let mut chars = name.chars();
        let Some(first) = chars.next() else {
            return Err(err("it is empty"));
        };
        if name.len() > MAX_NAME {
            return Err(err("it is too long"));
        }
        if name.chars().any(|c| c.is_control()) {
            return Err(err("it contains a control character"));
        }
        if name.contains('/') {
            return Err(err("it contains a slash"));
        }
        if !first.is_ascii_alphanumeric() {
            return Err(err("it must start with a letter or a digit"));
        }
        if name.len() < 2 {
            return Err(err("it must be at least two characters long"));
        }
        if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
            return Err(err("only letters, digits, '_', '.' and '-' are allowed"));
        }
        Ok(ServiceName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ServiceName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Host directory under which each router gets its own state directory.
pub fn run_dir() -> PathBuf {
    std::env::var_os("NETCONTAINER_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/netcontainer"))
}

/// The state directory of `service`'s router. Always derived from the name,
/// never read from a label: a label is not proof of where a router's state is.
pub fn service_dir(service: &ServiceName) -> PathBuf {
    run_dir().join(service.as_str())
}

/// The agent's control socket of `service`'s router.
pub fn socket(service: &ServiceName) -> PathBuf {
    service_dir(service).join(SOCKET_NAME)
}

/// Host directory under which each router keeps its persisted lease
/// (`NETCONTAINER_LIB_DIR`, for tests, or `/var/lib/netcontainer`).
pub fn lib_dir() -> PathBuf {
    std::env::var_os("NETCONTAINER_LIB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/netcontainer"))
}

/// The lease directory of `service`'s router, derived from the name only.
pub fn lease_dir(service: &ServiceName) -> PathBuf {
    lib_dir().join(service.as_str())
}

/// The host ID's file inside the lib directory. Its name starts with a dot,
/// which no container name does, so it never meets a service's lease
/// directory (and `watch`'s sweep, which only looks at names of services,
/// never sees it).
pub const HOST_ID_FILE: &str = ".host-id";
/// A host ID is this many random bytes, written as lowercase hex.
const HOST_ID_BYTES: usize = 16;

/// This host's own ID, part of every standalone identity (see
/// `plan::identity_of`): generated once, from the OS's randomness, into
/// [`HOST_ID_FILE`] of the lib directory (root-only, 0600), and read from
/// there ever after. Not Docker's engine ID: hosts cloned from one image share
/// that, and Podman answers a new one on every call.
pub fn host_id() -> Result<String, StateError> {
    let dir = lib_dir();
    ensure_private_dir(&dir)?;
    host_id_in(&dir)
}

/// [`host_id`] in `dir` (an existing root-only directory). Two processes
/// creating it at once agree: each writes a whole file under a name of its
/// own and links it into place, and the one that finds the name taken reads
/// the winner's.
fn host_id_in(dir: &Path) -> Result<String, StateError> {
    let path = dir.join(HOST_ID_FILE);
    if let Some(id) = read_host_id(&path)? {
        return Ok(id);
    }
    let mut bytes = [0u8; HOST_ID_BYTES];
    fill_random(&mut bytes).map_err(file_err("no randomness for", &path))?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // Named by the candidate itself: random, so no other creator's.
    let tmp = dir.join(format!("{HOST_ID_FILE}.{id}.tmp"));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        std::io::Write::write_all(&mut f, format!("{id}\n").as_bytes())?;
        f.sync_all()
    })();
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, &path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            // The name is durable once the directory is.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(file_err("cannot sync", dir))?;
            tracing::info!(path = %path.display(), "generated this host's ID");
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_host_id(&path)?.ok_or_else(|| StateError::Unsafe {
                path: path.clone(),
                why: "it vanished while it was being created".into(),
            })
        }
        Err(e) => Err(file_err("cannot create", &path)(e)),
    }
}

/// The host ID in `path`, `None` when there is no file. A file that is not a
/// host ID (a link, another owner, other permissions, other content) is
/// refused rather than replaced: replacing it would give every service of
/// this host a new address.
fn read_host_id(path: &Path) -> Result<Option<String>, StateError> {
    let unsafe_file = |why: String| StateError::Unsafe {
        path: path.to_path_buf(),
        why,
    };
    let f = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(unsafe_file("it is a symbolic link".into()));
        }
        Err(e) => return Err(file_err("cannot open", path)(e)),
    };
    let meta = f.metadata().map_err(file_err("cannot inspect", path))?;
    let me = nix::unistd::geteuid().as_raw();
    if !meta.is_file() || meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(unsafe_file(format!(
            "a host ID is a regular file owned by uid {me}, mode 0600"
        )));
    }
    let mut text = String::new();
    std::io::Read::take(f, 2 * HOST_ID_BYTES as u64 + 2)
        .read_to_string(&mut text)
        .map_err(file_err("cannot read", path))?;
    let id = text.trim_end_matches('\n');
    if id.len() != 2 * HOST_ID_BYTES || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(unsafe_file(format!(
            "it does not hold a host ID ({} lowercase hex digits)",
            2 * HOST_ID_BYTES
        )));
    }
    Ok(Some(id.to_string()))
}

/// Fills `buf` from the kernel's random source (getrandom(2)).
fn fill_random(buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unfilled rest of `buf`.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

fn lock_dir() -> PathBuf {
    run_dir().join(".locks")
}

/// The lock file of `service`.
pub fn lock_path(service: &ServiceName) -> PathBuf {
    lock_dir().join(format!("{service}.lock"))
}

/// What can go wrong with the host's state directories and lock files.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{what} {path}: {source}")]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing to use {path}: {why}")]
    Unsafe { path: PathBuf, why: String },
}

impl StateError {
    pub fn hint(&self) -> Option<String> {
        match self {
            StateError::Unsafe { path, .. } => Some(format!(
                "netcontainer keeps root-only state there; remove or fix {} (NETCONTAINER_RUN_DIR and NETCONTAINER_LIB_DIR pick other places)",
                path.display()
            )),
            StateError::File { .. } => None,
        }
    }
}

fn file_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
    let path = path.to_path_buf();
    move |source| StateError::File { what, path, source }
}

/// Creates `dir` (and missing parents) as a root-only directory, or makes an
/// existing one root-only. Refuses a symbolic link or a directory owned by
/// another user: state handed to the routers must not be somebody else's.
fn ensure_private_dir(dir: &Path) -> Result<(), StateError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(file_err("cannot create", dir))?;
    let meta = std::fs::symlink_metadata(dir).map_err(file_err("cannot inspect", dir))?;
    if !meta.is_dir() {
        return Err(StateError::Unsafe {
            path: dir.to_path_buf(),
            why: "it is not a directory (a symbolic link?)".into(),
        });
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(StateError::Unsafe {
            path: dir.to_path_buf(),
            why: format!("it is owned by uid {}, not {me}", meta.uid()),
        });
    }
    if meta.mode() & 0o777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(file_err("cannot restrict", dir))?;
    }
    Ok(())
}

/// The run directory, root-only.
pub fn ensure_run_dir() -> Result<PathBuf, StateError> {
    let dir = run_dir();
    ensure_private_dir(&dir)?;
    Ok(dir)
}

/// `service`'s state directory, root-only (the run directory too).
pub fn ensure_service_dir(service: &ServiceName) -> Result<PathBuf, StateError> {
    ensure_run_dir()?;
    let dir = service_dir(service);
    ensure_private_dir(&dir)?;
    // In use from now on: `watch`'s sweep of directories no router claims
    // spares young ones, and a directory left by a crash keeps its old time.
    File::open(&dir)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()))
        .map_err(file_err("cannot touch", &dir))?;
    Ok(dir)
}

/// `service`'s lease directory, root-only (the lib directory too), with the
/// same checks as the run directory's.
pub fn ensure_lease_dir(service: &ServiceName) -> Result<PathBuf, StateError> {
    ensure_private_dir(&lib_dir())?;
    let dir = lease_dir(service);
    ensure_private_dir(&dir)?;
    File::open(&dir)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()))
        .map_err(file_err("cannot touch", &dir))?;
    Ok(dir)
}

/// Opens (creating it 0600) `service`'s lock file in the root-only lock
/// directory. A symbolic link in its place is refused (O_NOFOLLOW).
pub fn open_lock(service: &ServiceName) -> Result<File, StateError> {
    ensure_run_dir()?;
    ensure_private_dir(&lock_dir())?;
    let p = lock_path(service);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&p)
        .map_err(file_err("cannot open", &p))?;
    // A lock file left by an older version may be world-readable.
    let mode = f.metadata().map_err(file_err("cannot inspect", &p))?.mode();
    if mode & 0o777 != 0o600 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(file_err("cannot restrict", &p))?;
    }
    Ok(f)
}

/// Removes `service`'s state directory and its lease directory (after the
/// lease was released: nothing is left to ask for again); ones that are not
/// there are fine.
pub fn remove_service_dir(service: &ServiceName) -> Result<(), StateError> {
    remove_dir(service_dir(service))?;
    remove_dir(lease_dir(service))
}

/// Removes `service`'s state directory only, keeping its lease directory (a
/// router made again claims the lease it holds).
pub fn remove_run_state(service: &ServiceName) -> Result<(), StateError> {
    remove_dir(service_dir(service))
}

fn remove_dir(dir: PathBuf) -> Result<(), StateError> {
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StateError::File {
            what: "cannot remove",
            path: dir,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_and_ids() {
        for ok in [
            "web1",
            "/web1",
            "a_b.c-d",
            "4f3c2b1a0e9d",
            "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b",
            "W1",
        ] {
            let n = ServiceName::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(n.as_str(), ok.trim_start_matches('/'));
        }
    }

    #[test]
    fn names_that_could_escape_are_refused() {
        for bad in [
            "",
            "/",
            ".",
            "..",
            "/..",
            "../x",
            "a/b",
            "a/../..",
            "x",
            "-rf",
            "_x",
            ".hidden",
            "web\n1",
            "web\u{1b}[31m",
            "web 1",
            "wéb",
            "a\0b",
            &"a".repeat(MAX_NAME + 1),
        ] {
            let e = ServiceName::parse(bad).expect_err(bad);
            let line = e.to_string();
            assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line}");
        }
    }

    #[test]
    fn paths_stay_inside_the_run_dir() {
        let n = ServiceName::parse("web1").unwrap();
        // (Suffixes only: another test of this binary sets NETCONTAINER_RUN_DIR.)
        assert!(service_dir(&n).ends_with("web1"));
        assert!(socket(&n).ends_with("web1/agent.sock"));
        assert!(lock_path(&n).ends_with(".locks/web1.lock"));
        assert!(lease_dir(&n).ends_with("web1"));
        assert!(lease_dir(&n).starts_with(lib_dir()));
    }

    #[test]
    fn the_host_id_is_made_once_root_only_and_kept() {
        let dir = std::env::temp_dir().join(format!("nc-hostid-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        ensure_private_dir(&dir).unwrap();
        // Racing creators agree on one ID.
        let ids: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| host_id_in(&dir).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
        assert_eq!(ids[0].len(), 32);
        let path = dir.join(HOST_ID_FILE);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(host_id_in(&dir).unwrap(), ids[0]);
        // Nothing else left in the directory.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from(HOST_ID_FILE)]);
        // Not a valid container name: never a service's lease directory.
        assert!(ServiceName::parse(HOST_ID_FILE).is_err());

        // What is not a host ID is refused, not replaced.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = host_id_in(&dir).unwrap_err().to_string();
        assert!(e.contains("mode 0600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not an id\n").unwrap();
        let e = host_id_in(&dir).unwrap_err().to_string();
        assert!(e.contains("hex digits") && !e.contains('\n'), "{e}");
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &path).unwrap();
        let e = host_id_in(&dir).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
