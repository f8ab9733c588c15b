//! Rootful Podman beside Docker: `podman system service` on a socket of the test's own,
//! with its own storage root, run root and network configuration directory (Docker's
//! storage and the host's `/etc/containers/networks` are untouched), so the driver and
//! the `docker` CLI reach it through `DOCKER_HOST` as a user pointing them at
//! `/run/podman/podman.sock` would. Images come from the Docker daemon by
//! `docker save | podman load`, which keeps their IDs (an image's ID is its config's
//! digest), so the router image's recorded pin names the loaded image too.
//!
//! Drop stops the service (by pid) and `podman system reset --force`s the private root
//! (containers, networks, images and the overlay mounts under it), then the directory
//! goes with its [`TempDir`].

use crate::proc::ProcGuard;
use crate::{TempDir, wait_until};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The hard RLIMIT_NPROC conmon runs with (so at most what a container can get).
const CONMON_NPROC: u64 = 32768;

/// Docker's own socket, for `docker save` while `DOCKER_HOST` may point elsewhere.
const DOCKER_SOCKET: &str = "unix:///var/run/docker.sock";

pub struct Podman {
    /// The service's socket.
    pub sock: PathBuf,
    /// Bridges of networks made on it (see [`Podman::allow_bridge`]).
    bridges: std::sync::Mutex<Vec<String>>,
    proc: Option<ProcGuard>,
    tmp: TempDir,
}

impl Podman {
    /// Starts the service (bounded wait) and loads `images` from Docker.
    pub fn start(images: &[&str]) -> Podman {
        let tmp = TempDir::new("podman");
        for d in ["root", "run", "net"] {
            std::fs::create_dir_all(tmp.join(d)).unwrap();
        }
        // Rootful Podman gives every container RLIMIT_NOFILE 1048576 and RLIMIT_NPROC
        // 4194304 unless told otherwise, and the container fails to start ("error
        // setting rlimit type 7", EPERM: no CAP_SYS_RESOURCE here) where the hard
        // limits it starts under are lower: ours for open files (20000 on these
        // machines), and for processes the 32768 that conmon, which starts each
        // container, runs with (its /proc/PID/limits), below our own 96367.
        let nofile = hard_limit(libc::RLIMIT_NOFILE);
        let nproc = hard_limit(libc::RLIMIT_NPROC).min(CONMON_NPROC);
        std::fs::write(
            tmp.join("containers.conf"),
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n\
                 [network]\nnetwork_backend = \"netavark\"\nnetwork_config_dir = \"{}\"\n",
                tmp.join("net").display()
            ),
        )
        .unwrap();
        let sock = tmp.join("podman.sock");
        let log = std::fs::File::create(tmp.join("podman.log")).unwrap();
        let child = Self::podman_cmd(&tmp)
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", sock.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn podman system service (is podman installed? scripts/install-deps)");
        let p = Podman {
            sock,
            bridges: Default::default(),
            proc: Some(ProcGuard::new(child, "podman system service")),
            tmp,
        };
        let up = wait_until(Duration::from_secs(30), Duration::from_millis(200), || {
            p.docker(&["version", "--format", "{{.Server.Version}}"])
                .is_ok()
        });
        assert!(up, "podman system service did not answer: {}", p.log());
        for image in images {
            p.load(image);
        }
        p
    }

    fn podman_cmd(tmp: &TempDir) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", tmp.join("containers.conf"))
            .arg("--root")
            .arg(tmp.join("root"))
            .arg("--runroot")
            .arg(tmp.join("run"))
            .args(["--cgroup-manager", "cgroupfs"]);
        c
    }

    /// `podman <its storage> args...` (the native CLI, for what the compatible API
    /// does not show).
    pub fn podman(&self, args: &[&str]) -> Result<String, String> {
        crate::try_run(Self::podman_cmd(&self.tmp).args(args).stdin(Stdio::null()))
    }

    /// `DOCKER_HOST` for it.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// `docker -H <its socket> args...`.
    pub fn docker(&self, args: &[&str]) -> Result<String, String> {
        crate::try_run(
            Command::new("docker")
                .arg("-H")
                .arg(self.docker_host())
                .args(args)
                .stdin(Stdio::null()),
        )
    }

    /// `docker save image | podman load`.
    pub fn load(&self, image: &str) {
        let archive = self.tmp.join("image.tar");
        crate::run(Command::new("docker").args([
            "-H",
            DOCKER_SOCKET,
            "save",
            "-o",
            &archive.display().to_string(),
            image,
        ]));
        self.podman(&["load", "-q", "-i", &archive.display().to_string()])
            .unwrap_or_else(|e| panic!("podman load {image}: {e}"));
        let _ = std::fs::remove_file(&archive);
    }

    /// Lets a router on the Podman network with device `bridge` reach its service
    /// while Docker runs too ([`BridgeForward`]), and has the network's leftover
    /// netavark rules removed when this instance goes.
    pub fn allow_bridge(&self, bridge: &str) -> BridgeForward {
        self.bridges.lock().unwrap().push(bridge.to_string());
        BridgeForward::allow(bridge)
    }

    /// The service's log (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.join("podman.log")).unwrap_or_default()
    }
}

/// `iptables -I DOCKER-USER -i BRIDGE -o BRIDGE -j ACCEPT`, deleted on drop: what a
/// host running Docker beside Podman needs for a Podman network's routers to reach
/// their services. Docker sets the FORWARD policy to DROP and loads `br_netfilter`,
/// so frames between two containers on one Podman bridge pass FORWARD; netavark
/// accepts only those from its subnet or of known connections, and a router in
/// gateway mode forwards the LAN client's own address (docs/operations.md, Podman).
pub struct BridgeForward {
    bridge: String,
}

impl BridgeForward {
    pub fn allow(bridge: &str) -> BridgeForward {
        crate::run(Command::new("iptables").args(Self::rule("-I", bridge).iter()));
        BridgeForward {
            bridge: bridge.to_string(),
        }
    }

    fn rule(op: &str, bridge: &str) -> Vec<String> {
        [
            op,
            "DOCKER-USER",
            "-i",
            bridge,
            "-o",
            bridge,
            "-j",
            "ACCEPT",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

impl Drop for BridgeForward {
    fn drop(&mut self) {
        let _ = Command::new("iptables")
            .args(Self::rule("-D", &self.bridge).iter())
            .status();
    }
}

/// This process's hard limit on `resource` (capped where "unlimited" would not parse).
fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let rc = unsafe { libc::getrlimit(resource, &mut r) };
    assert_eq!(rc, 0, "getrlimit({resource})");
    r.rlim_max.min(1 << 20)
}

impl Drop for Podman {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(10));
        }
        let bridges = std::mem::take(&mut *self.bridges.lock().unwrap());
        // Containers (stopped and removed), pods, networks, images and the storage
        // (with its overlay mounts): all of them this instance's own.
        if let Err(e) = self.podman(&["system", "reset", "--force"]) {
            eprintln!("podman system reset: {e}");
        }
        for b in bridges {
            remove_isolation_rules(&b);
        }
    }
}

/// netavark 1.4 leaves a network's two isolation rules in iptables when the network
/// goes (seen after every run here): deleted by hand, for the bridges we made only.
fn remove_isolation_rules(bridge: &str) {
    let rules: [&[&str]; 2] = [
        &[
            "NETAVARK_ISOLATION_1",
            "-i",
            bridge,
            "!",
            "-o",
            bridge,
            "-j",
            "NETAVARK_ISOLATION_2",
        ],
        &["NETAVARK_ISOLATION_2", "-o", bridge, "-j", "DROP"],
    ];
    for rule in rules {
        // Bounded: each deletion removes one copy; there is at most one per network.
        for _ in 0..4 {
            let deleted = Command::new("iptables")
                .arg("-D")
                .args(rule)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !deleted {
                break;
            }
        }
    }
}
