//! A second Docker host on this machine: a `dockerd` of the test's own in a network
//! namespace of its own, with its own data and exec root, socket and (managed)
//! containerd, plugged into a [`DockerBed`]'s LAN by a veth whose end in the namespace is
//! that host's LAN NIC (`eth1`, the `--parent` there). As moby's own integration tests
//! run several daemons on one host.
//!
//! ```text
//!  LAN ns (the bed's br0) -- <id>u2 ==== eth1 (ns "<id>h2": the second host)
//!                                          dockerd -H unix://<tmp>/docker.sock
//!                                          network "<id>n2" (198.51.100.224/28)
//! ```
//!
//! It has its own trust key (`deprecated-key-path`), hence its own daemon ID, and the
//! driver run on it its own run and lib directories, hence its own host ID (part of an
//! identity), as a real second host would. The daemon runs with `--iptables=false --ip-masq=false --bridge=none` (its namespace
//! is private: nothing to NAT) and the vfs storage driver (no overlay mounts to leak).
//! It is started with `nsenter --net` rather than `ip netns exec`, which remounts /sys
//! and makes dockerd fail ("Devices cgroup isn't mounted"). Images come from the main
//! daemon by `docker save | docker load`. Drop removes its containers, stops it (by
//! pid), deletes the veth and the namespace and its directory.

use crate::docker::DockerBed;
use crate::netns::Netns;
use crate::proc::ProcGuard;
use crate::{TempDir, wait_until};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// The second host's LAN NIC (inside its namespace).
pub const PARENT: &str = "eth1";

pub struct SecondDaemon {
    pub ns: Arc<Netns>,
    /// Its Docker network (a bridge inside its namespace).
    pub network: String,
    pub sock: PathBuf,
    /// The second host's run directory for the driver (`NETCONTAINER_RUN_DIR`).
    pub run_dir: PathBuf,
    /// The second host's lib directory for the driver (`NETCONTAINER_LIB_DIR`).
    pub lib_dir: PathBuf,
    proc: Option<ProcGuard>,
    uplink: String,
    root_link: Option<String>,
    lan: Arc<Netns>,
    tmp: TempDir,
}

impl SecondDaemon {
    /// Starts the daemon (bounded wait), plugs its host into `bed`'s LAN, loads `images`
    /// and creates its Docker network.
    pub fn start(bed: &DockerBed, images: &[&str]) -> SecondDaemon {
        let ns = Arc::new(Netns::new(&bed.name("h2")).expect("create the second host's netns"));
        let tmp = TempDir::new("dockerd2");
        let uplink = format!("{}u2", bed.id);
        crate::bed::plug(&bed.lan, &uplink, &ns, PARENT, None);
        let cfg = tmp.join("daemon.json");
        // Its own trust key: Docker 20.10 derives the daemon ID from it, and the default
        // path (/etc/docker/key.json) is the main daemon's.
        std::fs::write(
            &cfg,
            format!(
                "{{\"deprecated-key-path\": \"{}\"}}",
                tmp.join("key.json").display()
            ),
        )
        .unwrap();
        let sock = tmp.join("docker.sock");
        let log = std::fs::File::create(tmp.join("dockerd.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
            .arg("dockerd")
            .arg("--config-file")
            .arg(&cfg)
            .arg("--data-root")
            .arg(tmp.join("data"))
            .arg("--exec-root")
            .arg(tmp.join("exec"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--pidfile")
            .arg(tmp.join("docker.pid"))
            .args([
                "--iptables=false",
                "--ip-masq=false",
                "--bridge=none",
                "--storage-driver",
                "vfs",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn the second dockerd");
        let d = SecondDaemon {
            ns,
            network: format!("{}n2", bed.id),
            run_dir: tmp.join("run"),
            lib_dir: tmp.join("lib"),
            sock,
            proc: Some(ProcGuard::new(child, "second dockerd")),
            uplink,
            root_link: None,
            lan: bed.lan.clone(),
            tmp,
        };
        let up = wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
            d.docker(&["version", "--format", "{{.Server.Version}}"])
                .is_ok()
        });
        assert!(up, "the second dockerd did not come up: {}", d.log());
        for image in images {
            d.load(image);
        }
        d.docker_ok(&[
            "network",
            "create",
            "--driver",
            "bridge",
            "--subnet",
            "198.51.100.224/28",
            "--gateway",
            "198.51.100.225",
            &d.network.clone(),
        ]);
        d
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

    pub fn docker_ok(&self, args: &[&str]) -> String {
        self.docker(args)
            .unwrap_or_else(|e| panic!("second daemon: {e}"))
    }

    /// `docker save image | docker -H <its socket> load`.
    pub fn load(&self, image: &str) {
        let cmd = format!(
            "docker save {image} | docker -H {} load -q",
            self.docker_host()
        );
        crate::run(Command::new("sh").args(["-c", &cmd]));
    }

    /// The driver on the second host: run in its namespace, against its daemon, with its
    /// own run directory. Returns (status ok, stdout, stderr).
    pub fn nc(&self, args: &[&str]) -> crate::agent::CmdOutput {
        let start = std::time::Instant::now();
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.ns.path().display()))
            .arg(crate::bin("netcontainer"))
            .args(args)
            .env("DOCKER_HOST", self.docker_host())
            .env("NETCONTAINER_RUN_DIR", &self.run_dir)
            .env("NETCONTAINER_LIB_DIR", &self.lib_dir)
            .stdin(Stdio::null())
            .output()
            .expect("run the driver on the second host");
        crate::agent::CmdOutput {
            status: Some(out.status),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: start.elapsed(),
        }
    }

    /// A veth between the root namespace (`root_cidr`) and this host (`host_cidr`), for
    /// a control plane between the two daemons (Swarm); deleted on drop.
    pub fn link_to_root(&mut self, root_cidr: &str, host_cidr: &str) {
        let name = format!("{}r", self.uplink);
        crate::bed::veth_here_to(&name, &self.ns, "eth2", Some(host_cidr));
        self.root_link = Some(name.clone());
        crate::ip(&["addr", "add", root_cidr, "dev", &name]);
    }

    /// The driver on the second host as a long-running child (e.g. `watch`), its
    /// stderr in `log`; killed by pid when the guard drops.
    pub fn spawn_nc(&self, args: &[&str], log: &std::path::Path) -> ProcGuard {
        let child = Command::new("nsenter")
            .arg(format!("--net={}", self.ns.path().display()))
            .arg(crate::bin("netcontainer"))
            .args(args)
            .env("DOCKER_HOST", self.docker_host())
            .env("NETCONTAINER_RUN_DIR", &self.run_dir)
            .env("NETCONTAINER_LIB_DIR", &self.lib_dir)
            .env_remove("NETCONTAINER_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("spawn the driver on the second host");
        ProcGuard::new(
            child,
            format!("netcontainer {} (second host)", args.join(" ")),
        )
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for SecondDaemon {
    fn drop(&mut self) {
        if let Ok(ids) = self.docker(&["ps", "-aq"]) {
            for id in ids.split_whitespace() {
                let _ = self.docker(&["rm", "-f", "-v", id]);
            }
        }
        let _ = self.docker(&["network", "rm", &self.network]);
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(20));
        }
        let _ = Command::new("ip")
            .args(["-n", self.lan.name(), "link", "del", &self.uplink])
            .stderr(Stdio::null())
            .status();
        if let Some(l) = self.root_link.take() {
            let _ = Command::new("ip")
                .args(["link", "del", &l])
                .stderr(Stdio::null())
                .status();
        }
        // vfs and the exec root may hold mounts (netns files): unmount before the
        // temporary directory goes.
        let root = self.tmp.path().display().to_string();
        if let Ok(m) = crate::try_run(Command::new("findmnt").args(["-rn", "-o", "TARGET"])) {
            let mut mine: Vec<&str> = m.lines().filter(|t| t.starts_with(&root)).collect();
            mine.sort_by_key(|t| std::cmp::Reverse(t.len()));
            for t in mine {
                let _ = Command::new("umount").args(["-l", t]).status();
            }
        }
    }
}
