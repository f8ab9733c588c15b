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
//!   `systemctl stop` (no router, no state directory left);
//! - it does not retry forever on a permanent error: a usage error (exit 2) is not
//!   retried, a service that never appears is retried until the unit's start limit;
//! - after an unclean reboot both units bring every service back at the address it had,
//!   judged from the LAN (the DHCP server's lease file, the client's fetch): see
//!   [`unclean_reboot`] for what is killed and what is started again by whom.
//!
//! Root only, Docker bed as in tests/docker.rs.

use netcontainer_tests::docker::{self, DockerBed, SuiteLock};
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
        // The bed's own run and lib directories ([`DockerBed::use_own_state_dirs`]) are
        // in it: at their host paths too.
        let tmp_s = bed.tmp.path().display().to_string();
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
            format!("{tmp_s}:{tmp_s}"),
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
        sd.wait_booted();
        sd
    }

    /// Until `systemctl is-system-running` says the boot is over (60 s at most).
    fn wait_booted(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, state) = self.exec(&["systemctl", "is-system-running"]);
            let state = state.trim().to_string();
            if state == "running" || state == "degraded" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "systemd did not boot in 60 s (state {state:?}); logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A power loss: SIGKILL to systemd (PID 1 of the container) and so to everything
    /// in it; no unit is stopped.
    fn power_off(&self) {
        docker::docker_ok(&["kill", "-s", "KILL", &self.name]);
    }

    /// Boots the same container again: its file system (the enabled units) and its
    /// bind mounts as before, `/run` empty.
    fn power_on(&self) {
        docker::docker_ok(&["start", &self.name]);
        self.wait_booted();
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

/// A systemd time span as `systemctl show` prints it ("5min", "1min 30s", "100ms").
fn span(text: &str) -> Duration {
    let mut total = Duration::ZERO;
    for part in text.split_whitespace() {
        let at = part
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(part.len());
        let n: u64 = part[..at]
            .parse()
            .unwrap_or_else(|_| panic!("time span {text:?}"));
        total += match &part[at..] {
            "h" => Duration::from_secs(n * 3600),
            "min" => Duration::from_secs(n * 60),
            "s" => Duration::from_secs(n),
            "ms" => Duration::from_millis(n),
            other => panic!("time span {text:?}: unit {other:?}"),
        };
    }
    total
}

/// A usage error in a service's options (clap's exit 2) is not retried. A service that
/// never appears (exit 1: at boot it may come late) is retried, but not forever: the
/// shipped start limit is reached by quick failures (`StartLimitBurst=` restarts
/// `RestartSec=` apart fit in `StartLimitIntervalSec=`; systemd's defaults, 5 in 10 s,
/// never were at 5 s apart), and it is, with both spans ten times shorter (a drop-in)
/// and the burst as shipped; the unit then stays failed.
#[test]
fn per_service_unit_gives_up_on_a_permanent_error() {
    require_root!();
    ensure_image();
    let bed = DockerBed::new(14);
    let (run_dir, lib_dir) = bed.use_own_state_dirs();
    let sd = Systemd::boot(&bed);
    let env = |service: &str, args: &str| {
        std::fs::write(
            bed.tmp.join(format!("etc-netcontainer/{service}.env")),
            format!("NETCONTAINER_ARGS=\"{args}\"\n"),
        )
        .unwrap();
    };
    let absent = bed.name("absent");
    let unit = format!("netcontainer@{absent}.service");
    let restart = span(&sd.show(&unit, "RestartUSec"));
    let interval = span(&sd.show(&unit, "StartLimitIntervalUSec"));
    let burst: u32 = sd.show(&unit, "StartLimitBurst").parse().unwrap();
    assert!(
        restart * burst < interval,
        "{burst} quick failures {restart:?} apart never hit a start limit of {interval:?}"
    );
    write_conf(
        &sd,
        &bed.tmp.join("system/at.d/test.conf"),
        &format!(
            "[Unit]\nStartLimitIntervalSec={}ms\n\
             [Service]\nRestartSec={}ms\nEnvironment=NETCONTAINER_RUN_DIR={}\n\
             Environment=NETCONTAINER_LIB_DIR={}\n",
            interval.as_millis() / 10,
            restart.as_millis() / 10,
            run_dir.display(),
            lib_dir.display()
        ),
    );

    let typo = bed.name("typo");
    env(&typo, &format!("--parent {} --no-such-option", bed.parent));
    let typo_unit = format!("netcontainer@{typo}.service");
    let (ok, _) = sd.exec(&["systemctl", "start", &typo_unit]);
    assert!(!ok, "{typo_unit} started with a usage error");
    std::thread::sleep(restart / 10 * 3);
    assert_eq!(
        sd.show(&typo_unit, "ActiveState"),
        "failed",
        "{}",
        sd.journal(&typo_unit)
    );
    assert_eq!(sd.show(&typo_unit, "ExecMainStatus"), "2");
    assert_eq!(
        sd.show(&typo_unit, "NRestarts"),
        "0",
        "a usage error was retried"
    );

    env(&absent, &format!("--parent {} --timeout 5", bed.parent));
    let t = Instant::now();
    let _ = sd.exec(&["systemctl", "start", &unit]);
    let limit = interval / 10 + Duration::from_secs(20);
    let deadline = Instant::now() + limit;
    loop {
        if sd.show(&unit, "ActiveState") == "failed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{unit} still retrying after {limit:?}:\n{}",
            sd.journal(&unit)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let n: u32 = sd.show(&unit, "NRestarts").parse().unwrap();
    eprintln!(
        "{unit}: gave up after {n} restarts in {:?} (start limit {burst} in {:?})",
        t.elapsed(),
        interval / 10
    );
    assert!(
        sd.journal(&unit)
            .contains("Start request repeated too quickly"),
        "{}",
        sd.journal(&unit)
    );
    assert!(n + 1 >= burst && n <= burst, "NRestarts {n}, burst {burst}");
    // It stays given up.
    std::thread::sleep(restart / 10 * 3);
    assert_eq!(sd.show(&unit, "ActiveState"), "failed");
    assert_eq!(sd.show(&unit, "NRestarts"), n.to_string());
}

/// What the LAN sees of a service before the reboot: the address its page comes from and
/// the MAC the DHCP server's lease for that address names; and its router's container ID.
struct OnTheLan {
    service: String,
    address: Ipv4Addr,
    mac: String,
    router: String,
}

/// The container ID of `service`'s router.
fn router_id(service: &str) -> String {
    docker::docker_ok(&[
        "inspect",
        "--format",
        "{{.Id}}",
        &docker::router_name(service),
    ])
    .trim()
    .to_string()
}

fn page(service: &str) -> String {
    format!("hello from {service} (port 80)")
}

/// Waits (bounded) until `service` has a lease by netcontainer's status, then judges it
/// from the LAN side: the DHCP server holds a lease for that address, and the LAN client
/// fetches the service's page from it.
fn seen_on_the_lan(bed: &DockerBed, service: &str, within: Duration) -> OnTheLan {
    let address = wait_for(within, Duration::from_millis(250), || {
        lease_address(bed, service)
    })
    .unwrap_or_else(|| {
        let out = bed.nc(&["status", service]);
        panic!("{service}: no lease in {within:?}: {out}")
    });
    let lease = bed
        .dnsmasq
        .lease_of(address)
        .unwrap_or_else(|| panic!("{service} at {address}: the DHCP server has no lease for it"));
    let body = bed
        .fetch(address, 80, 5)
        .unwrap_or_else(|e| panic!("http://{address}/ from the LAN client: {e}"));
    assert_eq!(body.trim(), page(service));
    OnTheLan {
        service: service.to_string(),
        address,
        mac: lease.mac,
        router: router_id(service),
    }
}

/// The address of `service`'s lease by `netcontainer status` (None without a router or
/// a lease).
fn lease_address(bed: &DockerBed, service: &str) -> Option<Ipv4Addr> {
    let out = bed.nc(&["status", service, "--json"]);
    let st: serde_json::Value = serde_json::from_str(&out.stdout).ok()?;
    st["agent"]["lease"]["address"].as_str()?.parse().ok()
}

/// Whether `before.service` is back as the LAN saw it: its page from the same address,
/// and the DHCP server's only lease for its MAC is that address.
fn back_on_the_lan(bed: &DockerBed, before: &OnTheLan) -> Result<(), String> {
    let body = bed.fetch(before.address, 80, 2)?;
    if body.trim() != page(&before.service) {
        return Err(format!("{} answers {body:?}", before.address));
    }
    let theirs: Vec<Ipv4Addr> = bed
        .dnsmasq
        .leases()
        .into_iter()
        .filter(|l| l.mac == before.mac)
        .map(|l| l.address)
        .collect();
    if theirs != [before.address] {
        return Err(format!("leases for {}: {theirs:?}", before.mac));
    }
    Ok(())
}

/// A simulated unclean reboot (a power loss): SIGKILL to the systemd container and to
/// every router and service container of `services` (nothing is stopped cleanly: no
/// `ExecStop=`, no RELEASE); the run directory (a tmpfs on a real host) emptied; the
/// lib directory (leases, host ID) and the Docker state kept. Then "boot": the service
/// containers, which have `--restart always`, are started by the test, as dockerd does
/// at its start before it reports ready (`docker kill` counts as a stop by hand, after
/// which Docker itself would not restart them until its own restart); the routers have
/// no restart policy and stay stopped, as after a real boot; then the systemd container
/// boots again (same container: its enabled units, same bind mounts).
fn unclean_reboot(sd: &Systemd, run_dir: &Path, services: &[&OnTheLan]) {
    sd.power_off();
    for s in services {
        docker::docker_ok(&["kill", "-s", "KILL", &docker::router_name(&s.service)]);
        docker::docker_ok(&["kill", "-s", "KILL", &s.service]);
    }
    for e in std::fs::read_dir(run_dir).unwrap().flatten() {
        let p = e.path();
        let gone = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        gone.unwrap_or_else(|err| panic!("emptying {}: {err}", p.display()));
    }
    for s in services {
        let running = docker::docker_ok(&[
            "inspect",
            "--format",
            "{{.State.Running}}",
            &docker::router_name(&s.service),
        ]);
        assert_eq!(
            running.trim(),
            "false",
            "{}'s router runs after the kill",
            s.service
        );
        docker::docker_ok(&["start", &s.service]);
    }
    let t = Instant::now();
    sd.power_on();
    eprintln!("booted again in {:?}", t.elapsed());
}

/// After the reboot: every service back at its address within `within`, and `units`
/// active with at most `max_restarts` restarts, still so a moment later (no loop).
fn assert_back(
    bed: &DockerBed,
    sd: &Systemd,
    before: &[&OnTheLan],
    units: &[String],
    within: Duration,
) {
    let t = Instant::now();
    for b in before {
        let mut last = String::new();
        let back = wait_until(
            within.saturating_sub(t.elapsed()),
            Duration::from_millis(250),
            || match back_on_the_lan(bed, b) {
                Ok(()) => true,
                Err(e) => {
                    last = e;
                    false
                }
            },
        );
        let journals: Vec<String> = units.iter().map(|u| sd.journal(u)).collect();
        assert!(
            back,
            "{} not back at {} within {within:?}: {last}\n{}",
            b.service,
            b.address,
            journals.join("\n")
        );
        eprintln!(
            "{} back at {} after {:?}",
            b.service,
            b.address,
            t.elapsed()
        );
        // netcontainer agrees with the LAN.
        assert_eq!(lease_address(bed, &b.service), Some(b.address));
    }
    let restarts = |u: &str| -> u32 { sd.show(u, "NRestarts").parse().unwrap() };
    let first: Vec<u32> = units.iter().map(|u| restarts(u)).collect();
    std::thread::sleep(Duration::from_secs(3));
    for (u, n) in units.iter().zip(first) {
        assert_eq!(sd.show(u, "ActiveState"), "active", "{}", sd.journal(u));
        let later = restarts(u);
        eprintln!("{u}: active, NRestarts {later}");
        assert!(
            n <= 1 && later == n,
            "{u} restarts: {n}, then {later}\n{}",
            sd.journal(u)
        );
    }
}

/// `netcontainer@SERVICE.service` for two services, enabled; an unclean reboot; at boot
/// each unit's `up` finds its router stopped and makes it again with the identity it
/// recorded: the same address from the LAN's side.
#[test]
fn per_service_units_bring_their_services_back_after_an_unclean_reboot() {
    require_root!();
    ensure_image();
    let bed = DockerBed::new(15);
    let (run_dir, lib_dir) = bed.use_own_state_dirs();
    let tags = ["web1", "web2"];
    let services: Vec<String> = tags
        .iter()
        .map(|t| {
            bed.container(t, docker::SAMPLE_IMAGE, &["--restart", "always"], &[], true)
                .name
        })
        .collect();
    let sd = Systemd::boot(&bed);
    write_conf(
        &sd,
        &bed.tmp.join("system/at.d/test.conf"),
        &format!(
            "[Service]\nEnvironment=NETCONTAINER_HOST_PROC=/host/proc\n\
             Environment=NETCONTAINER_RUN_DIR={}\nEnvironment=NETCONTAINER_LIB_DIR={}\n",
            run_dir.display(),
            lib_dir.display()
        ),
    );
    let mut units = Vec::new();
    for s in &services {
        std::fs::write(
            bed.tmp.join(format!("etc-netcontainer/{s}.env")),
            format!(
                "NETCONTAINER_ARGS=\"--parent {} --timeout 20\"\n",
                bed.parent
            ),
        )
        .unwrap();
        let unit = format!("netcontainer@{s}.service");
        let (ok, out) = sd.exec(&["systemctl", "enable", "--now", &unit]);
        assert!(
            ok,
            "systemctl enable --now {unit}: {out}\n{}",
            sd.journal(&unit)
        );
        units.push(unit);
    }
    let before: Vec<OnTheLan> = services
        .iter()
        .map(|s| seen_on_the_lan(&bed, s, Duration::from_secs(5)))
        .collect();
    assert_ne!(before[0].address, before[1].address);
    let before: Vec<&OnTheLan> = before.iter().collect();

    unclean_reboot(&sd, &run_dir, &before);
    assert_back(&bed, &sd, &before, &units, Duration::from_secs(60));
    for b in &before {
        assert_ne!(
            router_id(&b.service),
            b.router,
            "{}: not made again",
            b.service
        );
    }
}

/// `netcontainer-watch.service` with two labelled services; an unclean reboot; at boot
/// watch finds the routers stopped and starts them (re-plumbed, plan sent); each agent
/// claims its persisted lease: the same address from the LAN's side. Watch acts on every
/// router of the host: alone on the machine ([`SuiteLock::exclusive`]).
#[test]
fn watch_unit_brings_labelled_services_back_after_an_unclean_reboot() {
    require_root!();
    ensure_image();
    let bed = DockerBed::with_lock(9, SuiteLock::exclusive());
    let (run_dir, lib_dir) = bed.use_own_state_dirs();
    let services: Vec<String> = ["lab1", "lab2"]
        .iter()
        .map(|t| {
            bed.container(
                t,
                docker::SAMPLE_IMAGE,
                &["--restart", "always", "-l", "netcontainer.enable=true"],
                &[],
                true,
            )
            .name
        })
        .collect();
    let sd = Systemd::boot(&bed);
    write_conf(
        &sd,
        &bed.tmp.join("system/watch.d/test.conf"),
        &format!(
            "[Service]\nEnvironment=NETCONTAINER_HOST_PROC=/host/proc\n\
             Environment=NETCONTAINER_RUN_DIR={}\nEnvironment=NETCONTAINER_LIB_DIR={}\n\
             ExecStart=\nExecStart=/usr/local/bin/netcontainer watch --parent {} --timeout 20\n",
            run_dir.display(),
            lib_dir.display(),
            bed.parent
        ),
    );
    let unit = "netcontainer-watch.service".to_string();
    let (ok, out) = sd.exec(&["systemctl", "enable", "--now", &unit]);
    assert!(
        ok,
        "systemctl enable --now {unit}: {out}\n{}",
        sd.journal(&unit)
    );
    let before: Vec<OnTheLan> = services
        .iter()
        .map(|s| seen_on_the_lan(&bed, s, Duration::from_secs(40)))
        .collect();
    assert_ne!(before[0].address, before[1].address);
    let before: Vec<&OnTheLan> = before.iter().collect();

    unclean_reboot(&sd, &run_dir, &before);
    assert_back(&bed, &sd, &before, &[unit], Duration::from_secs(60));
    for b in &before {
        assert_eq!(
            router_id(&b.service),
            b.router,
            "{}: not started but made again",
            b.service
        );
    }
}
