//! The units in contrib/systemd under a real systemd: a debootstrapped Debian bookworm
//! (`scripts/build-systemd-image`, built here when missing) boots with systemd as PID 1 in
//! a container (`docker run --privileged` is refused on these machines; SYS_ADMIN, an
//! unconfined seccomp profile, the cgroup tree read-only and tmpfs /run do instead), with
//! the host's network, the Docker socket, the run directory at its host path, the host's
//! procfs at /host/proc (`NETCONTAINER_HOST_PROC`: the routers' pids are the host's, not
//! this PID namespace's), the driver binary and the unit files bind-mounted in.
//!
//! Shown:
//! - `netcontainer-watch.service` (Type=notify) is active (READY) at once with dockerd
//!   unreachable (DOCKER_HOST at a dead socket, by a drop-in), and is restarted after
//!   `kill -9` of its main pid (NRestarts goes up);
//! - `netcontainer@SERVICE.service`, its parent in /etc/netcontainer/SERVICE.env, brings a
//!   sample service up on `systemctl start` (the LAN client fetches its page) and down on
//!   `systemctl stop` (no router, no state directory left).
//!
//! Root only, Docker bed as in tests/docker.rs.

use netcontainer_tests::docker::{self, DockerBed};
use netcontainer_tests::*;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const IMAGE: &str = "netcontainer/systemd-test:bookworm";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds the image when missing: before any bed of this test exists, since a bed's
/// blackhole route for the simulated LAN (203.0.113.0/24) also covers the Debian mirror's
/// address on these machines.
fn ensure_image() {
    static ONCE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = ONCE.lock().unwrap_or_else(|e| e.into_inner());
    if docker::docker(&["image", "inspect", IMAGE]).is_ok() {
        return;
    }
    let script = repo().join("scripts/build-systemd-image");
    let out = std::process::Command::new(&script)
        .output()
        .expect("run scripts/build-systemd-image");
    assert!(
        out.status.success(),
        "{} failed:\n{}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The systemd container; removed on drop.
struct Systemd {
    name: String,
}

impl Systemd {
    fn boot(bed: &DockerBed) -> Systemd {
        let name = bed.name("sysd");
        let etc = bed.tmp.join("etc-netcontainer");
        let dropins = bed.tmp.join("system");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(&dropins).unwrap();
        let run_dir = docker::run_dir();
        std::fs::create_dir_all(&run_dir).unwrap();
        let bin = bin("netcontainer");
        let units = repo().join("contrib/systemd");
        let v = |host: &Path, inside: &str, ro: bool| {
            format!("{}:{inside}{}", host.display(), if ro { ":ro" } else { "" })
        };
        let run_dir_s = run_dir.display().to_string();
        let lib_dir = docker::lib_dir();
        let _ = std::fs::create_dir_all(&lib_dir);
        let lib_dir_s = lib_dir.display().to_string();
        let args = vec![
            "run".to_string(),
            "-d".into(),
            "--name".into(),
            name.clone(),
            "--hostname".into(),
            "nc-systemd-test".into(),
            "--cap-add".into(),
            "SYS_ADMIN".into(),
            "--cap-add".into(),
            "NET_ADMIN".into(),
            "--security-opt".into(),
            "seccomp=unconfined".into(),
            "-v".into(),
            "/sys/fs/cgroup:/sys/fs/cgroup:ro".into(),
            "--tmpfs".into(),
            "/run".into(),
            "--tmpfs".into(),
            "/run/lock".into(),
            "--network".into(),
            "host".into(),
            "-v".into(),
            "/var/run/docker.sock:/run/docker.sock".into(),
            "-v".into(),
            format!("{run_dir_s}:{run_dir_s}"),
            // The lease directories too: the driver makes them, Docker mounts them
            // into the routers from the host.
            "-v".into(),
            format!("{lib_dir_s}:{lib_dir_s}"),
            "-v".into(),
            "/proc:/host/proc:ro".into(),
            "-v".into(),
            v(&bin, "/usr/local/bin/netcontainer", true),
            "-v".into(),
            v(
                &units.join("netcontainer-watch.service"),
                "/etc/systemd/system/netcontainer-watch.service",
                true,
            ),
            "-v".into(),
            v(
                &units.join("netcontainer@.service"),
                "/etc/systemd/system/netcontainer@.service",
                true,
            ),
            "-v".into(),
            v(&etc, "/etc/netcontainer", false),
            "-v".into(),
            v(
                &dropins.join("watch.d"),
                "/etc/systemd/system/netcontainer-watch.service.d",
                false,
            ),
            "-v".into(),
            v(
                &dropins.join("at.d"),
                "/etc/systemd/system/netcontainer@.service.d",
                false,
            ),
            IMAGE.into(),
            "/lib/systemd/systemd".into(),
        ];
        std::fs::create_dir_all(dropins.join("watch.d")).unwrap();
        std::fs::create_dir_all(dropins.join("at.d")).unwrap();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker::docker_ok(&args);
        let sd = Systemd { name };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, state) = sd.exec(&["systemctl", "is-system-running"]);
            let state = state.trim().to_string();
            if state == "running" || state == "degraded" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "systemd did not boot in 60 s (state {state:?}); logs:\n{}",
                sd.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        sd
    }

    /// `docker exec NAME args...`: (success, stdout + stderr).
    fn exec(&self, args: &[&str]) -> (bool, String) {
        let out = std::process::Command::new("docker")
            .arg("exec")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("docker exec");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out) = self.exec(args);
        assert!(ok, "{args:?} in the systemd container failed:\n{out}");
        out
    }

    fn show(&self, unit: &str, prop: &str) -> String {
        self.ok(&["systemctl", "show", "-p", prop, "--value", unit])
            .trim()
            .to_string()
    }

    fn journal(&self, unit: &str) -> String {
        self.exec(&["journalctl", "--no-pager", "-n", "40", "-u", unit])
            .1
    }

    fn logs(&self) -> String {
        docker::docker(&["logs", "--tail", "30", &self.name]).unwrap_or_else(|e| e)
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        let _ = docker::docker(&["rm", "-f", "-v", &self.name]);
    }
}

/// Writes `text` to the host side of a bind-mounted directory, then daemon-reload.
fn write_conf(sd: &Systemd, host: &Path, text: &str) {
    std::fs::write(host, text).unwrap();
    sd.ok(&["systemctl", "daemon-reload"]);
}

#[test]
fn watch_unit_is_ready_without_docker_and_restarts_after_kill_9() {
    require_root!();
    ensure_image();
    let bed = DockerBed::new(12);
    let sd = Systemd::boot(&bed);
    // dockerd unreachable for this unit: a socket nobody listens on.
    write_conf(
        &sd,
        &bed.tmp.join("system/watch.d/test.conf"),
        &format!(
            "[Service]\nEnvironment=DOCKER_HOST=unix:///run/nc-no-docker.sock\n\
             ExecStart=\nExecStart=/usr/local/bin/netcontainer watch --parent {}\n",
            bed.parent
        ),
    );
    let unit = "netcontainer-watch.service";
    let t = Instant::now();
    // Type=notify: `start` returns once READY=1 came.
    sd.ok(&["systemctl", "start", unit]);
    let ready_in = t.elapsed();
    assert_eq!(
        sd.show(unit, "ActiveState"),
        "active",
        "{}",
        sd.journal(unit)
    );
    assert!(
        ready_in < Duration::from_secs(10),
        "READY took {ready_in:?} without Docker"
    );
    eprintln!("watch READY in {ready_in:?} with dockerd unreachable");
    // Its status says it waits for Docker (after the first failed try).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = sd.show(unit, "StatusText");
        if status.contains("Docker") {
            eprintln!("StatusText: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "StatusText {status:?}");
        std::thread::sleep(Duration::from_millis(200));
    }

    let restarts: u32 = sd.show(unit, "NRestarts").parse().unwrap();
    let pid = sd.show(unit, "MainPID");
    assert_ne!(pid, "0");
    // (minbase has no /bin/kill: the shell's.)
    sd.ok(&["sh", "-c", &format!("kill -9 {pid}")]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n: u32 = sd.show(unit, "NRestarts").parse().unwrap();
        let new_pid = sd.show(unit, "MainPID");
        if n > restarts && sd.show(unit, "ActiveState") == "active" && new_pid != pid {
            eprintln!("restarted: NRestarts {restarts} -> {n}, pid {pid} -> {new_pid}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not restarted after kill -9 (NRestarts {n}):\n{}",
            sd.journal(unit)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    sd.ok(&["systemctl", "stop", unit]);
}

#[test]
fn per_service_unit_brings_a_service_up_and_down() {
    require_root!();
    ensure_image();
    let bed = DockerBed::new(13);
    let s = bed.run_service("web", &[]);
    let sd = Systemd::boot(&bed);
    // The routers' pids are the host's: the driver looks them up in the host's procfs.
    write_conf(
        &sd,
        &bed.tmp.join("system/at.d/test.conf"),
        &format!(
            "[Service]\nEnvironment=NETCONTAINER_HOST_PROC=/host/proc\n\
             Environment=NETCONTAINER_RUN_DIR={}\n",
            docker::run_dir().display()
        ),
    );
    std::fs::write(
        bed.tmp.join(format!("etc-netcontainer/{}.env", s.name)),
        format!(
            "NETCONTAINER_ARGS=\"--parent {} --timeout 20\"\n",
            bed.parent
        ),
    )
    .unwrap();
    let unit = format!("netcontainer@{}.service", s.name);
    let (ok, out) = sd.exec(&["systemctl", "start", &unit]);
    assert!(ok, "systemctl start {unit}: {out}\n{}", sd.journal(&unit));
    assert_eq!(sd.show(&unit, "ActiveState"), "active");
    let st = bed.status_json(&s.name);
    let addr: Ipv4Addr = st["agent"]["lease"]["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no lease after the unit started: {st}"));
    let body = bed
        .fetch(addr, 80, 5)
        .unwrap_or_else(|e| panic!("http://{addr}/ from the LAN: {e}"));
    assert_eq!(body.trim(), format!("hello from {} (port 80)", s.name));
    eprintln!("{unit}: {} up at {addr}", s.name);

    let (ok, out) = sd.exec(&["systemctl", "stop", &unit]);
    assert!(ok, "systemctl stop {unit}: {out}");
    assert_eq!(sd.show(&unit, "ActiveState"), "inactive");
    bed.assert_clean(&s.name);
    assert!(
        sd.journal(&unit).contains("lease released"),
        "{}",
        sd.journal(&unit)
    );
}
