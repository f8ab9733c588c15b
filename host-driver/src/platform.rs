//! Where netcontainer cannot work at all, recognised before anything is
//! made: rootless Docker, Docker Desktop and WSL2. A router's LAN leg is a
//! macvlan (or ipvlan) link on the host's real NIC, made by root in the
//! host's network namespace; each of these puts the engine somewhere the LAN
//! cannot see such a leg, so `up` would only ever time out waiting for a
//! lease. `doctor` reports the same finding as a FAIL line; `up` and `watch`
//! refuse with it ([`refuse_unsupported`], the one place both use).
//!
//! The decision ([`detect`]) is a pure function of what the engine's `/info`
//! says, the host's kernel release and the socket we talk to, so it is
//! unit-tested with the shapes those engines report.

use std::fmt;

use crate::docker::{DockerClient, Engine};
use crate::error::Error;

/// The exit code of a refusal (sysexits' `EX_CONFIG`), distinct from every
/// other error so that the systemd units can leave it stopped.
pub const EXIT_UNSUPPORTED: u8 = 78;

/// An engine netcontainer cannot work with, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsupported {
    /// Docker Desktop (macOS, Windows, Linux): the engine runs in a VM.
    DockerDesktop,
    /// The engine (or we) run under WSL2.
    Wsl2,
    /// A rootless daemon (`SecurityOptions` has `name=rootless`, or its
    /// socket is in a user's runtime directory).
    Rootless,
}

impl Unsupported {
    /// Why it cannot work, one line.
    pub fn reason(self) -> &'static str {
        match self {
            Unsupported::DockerDesktop => {
                "Docker Desktop runs the engine in a VM, so the LAN never sees a router's macvlan MAC"
            }
            Unsupported::Wsl2 => {
                "WSL2's network card is a Hyper-V virtual switch (NAT by default), so the LAN never sees a router's macvlan MAC"
            }
            Unsupported::Rootless => {
                "rootless Docker: a router's macvlan leg needs the host's real NIC and root in the host's network namespace, which a rootless daemon does not have"
            }
        }
    }

    /// What to do instead.
    pub fn instead(self) -> &'static str {
        match self {
            Unsupported::DockerDesktop | Unsupported::Wsl2 => {
                "run Docker Engine on a Linux host, or in a Linux VM whose NIC is bridged to the LAN"
            }
            Unsupported::Rootless => {
                "use the rootful Docker on this host (the system dockerd, /var/run/docker.sock) and run netcontainer as root"
            }
        }
    }
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "netcontainer cannot work here: {}", self.reason())
    }
}

impl std::error::Error for Unsupported {}

/// What [`detect`] looks at.
#[derive(Clone, Copy, Debug, Default)]
pub struct Facts<'a> {
    /// The engine's `/info`, when it answered.
    pub engine: Option<&'a Engine>,
    /// This host's kernel release (`/proc/sys/kernel/osrelease`).
    pub host_kernel: &'a str,
    /// `DOCKER_HOST`, when set (the socket we talk to; unset is
    /// `/var/run/docker.sock`).
    pub docker_host: Option<&'a str>,
    /// `XDG_RUNTIME_DIR`, when set.
    pub runtime_dir: Option<&'a str>,
}

/// Whether netcontainer cannot work with this engine on this host. Desktop
/// first: Desktop's WSL2 backend reports a WSL2 kernel too, and "the engine
/// is in a VM" is the reason that matters there.
pub fn detect(f: &Facts<'_>) -> Option<Unsupported> {
    let desktop = f.engine.is_some_and(|e| {
        e.operating_system.trim() == "Docker Desktop" || e.name.trim() == "docker-desktop"
    });
    if desktop {
        return Some(Unsupported::DockerDesktop);
    }
    if is_wsl(f.host_kernel) || f.engine.is_some_and(|e| is_wsl(&e.kernel_version)) {
        return Some(Unsupported::Wsl2);
    }
    let rootless_info = f
        .engine
        .is_some_and(|e| e.security_options.iter().any(|o| is_rootless_option(o)));
    if rootless_info || f.docker_host.is_some_and(|h| user_socket(h, f.runtime_dir)) {
        return Some(Unsupported::Rootless);
    }
    None
}

/// WSL's kernels name Microsoft in their release (WSL2:
/// `5.15.153.1-microsoft-standard-WSL2`; WSL1: `4.4.0-19041-Microsoft`).
fn is_wsl(release: &str) -> bool {
    let r = release.to_ascii_lowercase();
    r.contains("microsoft") || r.contains("wsl")
}

/// `SecurityOptions` entries are `name=X[,key=value...]`.
fn is_rootless_option(o: &str) -> bool {
    o.split(',').any(|kv| kv.trim() == "name=rootless")
}

/// A `unix://` socket in a non-root user's runtime directory (where
/// rootless Docker and rootless Podman put theirs: `/run/user/UID/...`).
/// Root's own runtime directory, `/run/user/0`, is not a sign of rootless.
fn user_socket(docker_host: &str, runtime_dir: Option<&str>) -> bool {
    let Some(path) = docker_host.strip_prefix("unix://") else {
        return false;
    };
    let under = |dir: &str| {
        let dir = dir.trim_end_matches('/');
        !dir.is_empty() && path.starts_with(&format!("{dir}/"))
    };
    let root_dir = |dir: &str| dir.trim_end_matches('/') == "/run/user/0";
    if under("/run/user/0") {
        return false;
    }
    path.starts_with("/run/user/") || runtime_dir.is_some_and(|d| !root_dir(d) && under(d))
}

/// This host's kernel release: `/proc/sys/kernel/osrelease`, else the
/// release in `/proc/version`; empty when neither can be read.
pub fn host_kernel() -> String {
    if let Ok(r) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        return r.trim().to_string();
    }
    std::fs::read_to_string("/proc/version")
        .ok()
        .and_then(|v| v.split_whitespace().nth(2).map(str::to_string))
        .unwrap_or_default()
}

/// What this process can see: `/info` (when there is an engine and it
/// answers), the host's kernel, `DOCKER_HOST` and `XDG_RUNTIME_DIR`.
pub async fn check(docker: Option<&DockerClient>) -> Option<Unsupported> {
    let engine = match docker {
        Some(d) => match d.engine().await {
            Ok(e) => Some(e),
            Err(e) => {
                // The commands go on to fail on the daemon with their own error.
                tracing::debug!(error = %e, "no /info: judging from the host alone");
                None
            }
        },
        None => None,
    };
    let kernel = host_kernel();
    let docker_host = std::env::var("DOCKER_HOST").ok();
    let runtime_dir = std::env::var("XDG_RUNTIME_DIR").ok();
    detect(&Facts {
        engine: engine.as_ref(),
        host_kernel: &kernel,
        docker_host: docker_host.as_deref(),
        runtime_dir: runtime_dir.as_deref(),
    })
}

/// `up` and `watch`: refuse, before anything is made, where netcontainer
/// cannot work.
pub async fn refuse_unsupported(docker: &DockerClient) -> Result<(), Error> {
    match check(Some(docker)).await {
        Some(u) => Err(Error::Unsupported(u)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::engine_of;

    /// `/info` as the engine sends it (only the fields that matter, in the
    /// API's names; the rest of the real documents is left out).
    fn info(json: &str) -> Engine {
        engine_of(&serde_json::from_str(json).expect("info JSON"))
    }

    fn on(engine: &Engine, kernel: &str) -> Option<Unsupported> {
        detect(&Facts {
            engine: Some(engine),
            host_kernel: kernel,
            ..Facts::default()
        })
    }

    /// Rootful Docker Engine on Debian, as this project's hosts report it.
    const ROOTFUL: &str = r#"{"ID":"x","Name":"host1","OperatingSystem":"Debian GNU/Linux 12 (bookworm)",
        "OSType":"linux","KernelVersion":"6.1.0-26-amd64",
        "SecurityOptions":["name=apparmor","name=seccomp,profile=builtin","name=cgroupns"]}"#;

    #[test]
    fn rootful_docker_on_linux_is_fine() {
        assert_eq!(on(&info(ROOTFUL), "6.1.0-26-amd64"), None);
        // Podman rootful, through its Docker-compatible socket.
        let podman = info(
            r#"{"Name":"host1","OperatingSystem":"debian","KernelVersion":"6.1.0-26-amd64",
            "SecurityOptions":["name=apparmor","name=seccomp,profile=/usr/share/containers/seccomp.json"]}"#,
        );
        let f = Facts {
            engine: Some(&podman),
            host_kernel: "6.1.0-26-amd64",
            docker_host: Some("unix:///run/podman/podman.sock"),
            runtime_dir: Some("/run/user/0"),
        };
        assert_eq!(detect(&f), None);
    }

    #[test]
    fn rootless_docker_is_refused() {
        // `docker info` of a rootless daemon (Docker's rootless-mode docs):
        // SecurityOptions carries name=rootless next to seccomp/cgroupns.
        let e = info(
            r#"{"Name":"host1","OperatingSystem":"Ubuntu 22.04.4 LTS","KernelVersion":"6.5.0-35-generic",
            "SecurityOptions":["name=seccomp,profile=builtin","name=rootless","name=cgroupns"]}"#,
        );
        assert_eq!(on(&e, "6.5.0-35-generic"), Some(Unsupported::Rootless));
        // By the socket alone (no /info): the user's runtime directory.
        let f = |host, dir| {
            detect(&Facts {
                engine: None,
                host_kernel: "6.1.0-26-amd64",
                docker_host: Some(host),
                runtime_dir: dir,
            })
        };
        assert_eq!(
            f("unix:///run/user/1000/docker.sock", None),
            Some(Unsupported::Rootless)
        );
        assert_eq!(
            f("unix:///tmp/u1000/docker.sock", Some("/tmp/u1000")),
            Some(Unsupported::Rootless)
        );
        // Root's own runtime directory, the system socket, TCP: not rootless.
        assert_eq!(
            f("unix:///run/user/0/docker.sock", Some("/run/user/0")),
            None
        );
        assert_eq!(
            f("unix:///var/run/docker.sock", Some("/run/user/1000")),
            None
        );
        assert_eq!(f("tcp://192.0.2.1:2375", Some("/run/user/1000")), None);
        // A prefix of a name is not a directory.
        assert_eq!(
            f("unix:///run/user0/docker.sock", Some("/run/user0x")),
            None
        );
    }

    #[test]
    fn docker_desktop_is_refused() {
        // Desktop on a Mac: the VM's kernel is LinuxKit's.
        let mac = info(
            r#"{"Name":"docker-desktop","OperatingSystem":"Docker Desktop","OSType":"linux",
            "KernelVersion":"6.10.0-linuxkit","SecurityOptions":["name=seccomp,profile=unconfined","name=cgroupns"]}"#,
        );
        assert_eq!(on(&mac, "23.6.0"), Some(Unsupported::DockerDesktop));
        // Desktop's WSL2 backend: a WSL2 kernel, still Desktop's reason.
        let wsl = info(
            r#"{"Name":"docker-desktop","OperatingSystem":"Docker Desktop","OSType":"linux",
            "KernelVersion":"5.15.153.1-microsoft-standard-WSL2","SecurityOptions":["name=seccomp,profile=unconfined"]}"#,
        );
        assert_eq!(
            on(&wsl, "5.15.153.1-microsoft-standard-WSL2"),
            Some(Unsupported::DockerDesktop)
        );
        // Either field alone is enough.
        let name_only = info(r#"{"Name":"docker-desktop","OperatingSystem":"Alpine Linux"}"#);
        assert_eq!(on(&name_only, "6.1.0"), Some(Unsupported::DockerDesktop));
    }

    #[test]
    fn wsl2_is_refused() {
        // Docker Engine installed inside a WSL2 distribution.
        let e = info(
            r#"{"Name":"PC","OperatingSystem":"Ubuntu 22.04.4 LTS","KernelVersion":"5.15.153.1-microsoft-standard-WSL2",
            "SecurityOptions":["name=seccomp,profile=builtin","name=cgroupns"]}"#,
        );
        assert_eq!(
            on(&e, "5.15.153.1-microsoft-standard-WSL2"),
            Some(Unsupported::Wsl2)
        );
        // The host's kernel alone (the engine not answering).
        let f = Facts {
            host_kernel: "5.15.153.1-microsoft-standard-WSL2",
            ..Facts::default()
        };
        assert_eq!(detect(&f), Some(Unsupported::Wsl2));
        // Rootless inside WSL2: WSL2 is the reason that matters first.
        let both = info(
            r#"{"KernelVersion":"5.15.153.1-microsoft-standard-WSL2","SecurityOptions":["name=rootless"]}"#,
        );
        assert_eq!(on(&both, ""), Some(Unsupported::Wsl2));
    }

    #[test]
    fn each_refusal_is_one_line_with_what_to_do() {
        for u in [
            Unsupported::DockerDesktop,
            Unsupported::Wsl2,
            Unsupported::Rootless,
        ] {
            let line = u.to_string();
            assert!(!line.contains('\n') && !u.instead().contains('\n'));
            assert!(line.starts_with("netcontainer cannot work here: "));
            assert!(!u.instead().is_empty());
        }
        // WSL2's mirrored networking is not claimed to work.
        assert!(!Unsupported::Wsl2.instead().contains("mirrored"));
    }
}
