//! The trust boundary, on the real Docker engine: no name, label or image steers the host,
//! and no Docker hiccup wipes live state. Root only; the router and sample images must
//! exist (see tests/tests/docker.rs). Each test names the point of docs/security.md it
//! proves. Beds are [`DockerBed`]s (LAN 203.0.113.0/24); the tests that run `watch` hold
//! the Docker suites' lock exclusively ([`watch::bed`]).

use netcontainer_proto::contract;
use netcontainer_tests::docker::{self, DockerBed, Invocation, SAMPLE_IMAGE};
use netcontainer_tests::netns::Netns;
use netcontainer_tests::rogue::IngressDrop;
use netcontainer_tests::watch::{self, FailingProxy, Watch};
use netcontainer_tests::*;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(100);

fn page(service: &str, port: u16) -> String {
    format!("hello from {service} (port {port})")
}

/// One `error: ...` line on stderr (containing `msg`), non-zero exit, nothing on stdout.
fn assert_error(out: &agent::CmdOutput, msg: &str) {
    assert!(
        out.status.is_some() && !out.ok(),
        "expected a failure: {out}"
    );
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line: {out}");
    assert!(
        errors[0].contains(msg),
        "expected {msg:?} in the error: {out}"
    );
    assert!(out.stdout.trim().is_empty(), "printed something: {out}");
}

/// A run directory of the test's own (`<tmp>/run/netcontainer`) with a canary file
/// beside it, as an environment for the driver.
struct PrivateRun {
    run: std::path::PathBuf,
    canary: std::path::PathBuf,
}

impl PrivateRun {
    fn new(tmp: &TempDir) -> PrivateRun {
        let parent = tmp.join("run");
        std::fs::create_dir_all(&parent).unwrap();
        let canary = parent.join("canary");
        std::fs::write(&canary, "still here").unwrap();
        PrivateRun {
            run: parent.join("netcontainer"),
            canary,
        }
    }

    fn inv(&self) -> Invocation {
        Invocation {
            env: vec![(
                "NETCONTAINER_RUN_DIR".into(),
                self.run.display().to_string(),
            )],
            ..Default::default()
        }
    }

    fn assert_canary(&self) {
        assert_eq!(
            std::fs::read_to_string(&self.canary).ok().as_deref(),
            Some("still here"),
            "the run directory's parent was touched"
        );
    }
}

/// 1. Names never become paths: `down`, `up` and `status` refuse what is not a valid
///    container name or ID with one error line and touch nothing on disk (before, `down ..`
///    removed the run directory's parent).
#[test]
fn names_that_are_not_container_names_touch_nothing() {
    require_root!();
    let bed = DockerBed::new(13);
    let pr = PrivateRun::new(&bed.tmp);
    let inv = pr.inv();
    for bad in ["..", ".", "", "/", "a/b", "../x", "x\u{1}y", "_x"] {
        for args in [
            vec!["down", bad],
            vec!["up", bad, "--parent", &bed.parent],
            vec!["status", bad],
        ] {
            let out = bed.nc_with(&args, &inv);
            assert_error(&out, "invalid container name");
            pr.assert_canary();
        }
    }
    assert!(!pr.run.exists(), "a refused name created the run directory");
}

/// 1. A container that claims to be a router chooses no path by its labels: `down` of its
///    service removes it (it says it is that service's router) but never the directory its
///    `netcontainer.state-dir` label names.
#[test]
fn a_routers_labels_never_choose_a_path() {
    require_root!();
    let bed = DockerBed::new(14);
    let victim = bed.tmp.join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("precious"), "keep").unwrap();
    let service = bed.name("forged");
    let router = docker::router_name(&service);
    bed.track_service(&service);
    docker::docker_ok(&[
        "create",
        "--name",
        &router,
        "--network",
        "none",
        "-l",
        "netcontainer.role=router",
        "-l",
        &format!("netcontainer.service={service}"),
        "-l",
        &format!("netcontainer.state-dir={}", victim.display()),
        SAMPLE_IMAGE,
    ]);
    let out = bed.down(&service);
    assert!(out.ok(), "down {service}: {out}");
    assert!(
        victim.join("precious").exists(),
        "down removed the directory a label named"
    );
    assert!(
        docker::docker(&["inspect", &router]).is_err(),
        "the router was not removed"
    );
}

/// 1. `watch` ignores (with a warning) a router container whose service label is not a
///    valid name, and builds no path from it: before, a router labelled
///    `netcontainer.service=..` made watch remove the run directory's parent.
#[test]
fn watch_ignores_a_router_whose_service_label_is_not_a_name() {
    require_root!();
    let bed = watch::bed(15);
    let pr = PrivateRun::new(&bed.tmp);
    let name = "netcontainer-..";
    // Left by a crashed run of this test only (it carries the test's label).
    if docker::docker(&[
        "inspect",
        "--format",
        "{{index .Config.Labels \"netcontainer.test\"}}",
        name,
    ])
    .is_ok_and(|l| l.trim() == "trust")
    {
        let _ = docker::docker(&["rm", "-f", name]);
    }
    docker::docker_ok(&[
        "create",
        "--name",
        name,
        "--network",
        "none",
        "-l",
        "netcontainer.test=trust",
        "-l",
        "netcontainer.role=router",
        "-l",
        "netcontainer.service=..",
        SAMPLE_IMAGE,
    ]);
    let _rm = Rm(name.to_string());
    let run = pr.run.display().to_string();
    let mut w = Watch::start(
        &bed,
        &["--resync", "1"],
        &[("NETCONTAINER_RUN_DIR", run.as_str())],
    );
    assert!(w.wait_watching(1, Duration::from_secs(20)), "{}", w.log());
    // A few resync rounds.
    std::thread::sleep(Duration::from_secs(3));
    w.assert_running();
    pr.assert_canary();
    assert!(
        docker::docker(&["inspect", name]).is_ok(),
        "watch removed a container it could not prove was a router"
    );
    assert!(
        w.log().contains("ignoring a router container"),
        "no warning: {}",
        w.log()
    );
}

/// Removes a container by name on drop.
struct Rm(String);

impl Drop for Rm {
    fn drop(&mut self) {
        let _ = docker::docker(&["rm", "-f", "-v", &self.0]);
    }
}

/// An image `FROM` the sample image with `labels` (removed on drop).
struct LabelledImage(String);

impl LabelledImage {
    fn build(bed: &DockerBed, tag: &str, labels: &[(&str, &str)]) -> LabelledImage {
        let name = format!("netcontainer/test-{}:latest", bed.name(tag).to_lowercase());
        let dir = bed.tmp.join(format!("image-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut df = format!("FROM {SAMPLE_IMAGE}\n");
        for (k, v) in labels {
            df.push_str(&format!("LABEL {k}=\"{v}\"\n"));
        }
        std::fs::write(dir.join("Dockerfile"), df).unwrap();
        run(Command::new("docker")
            .args(["build", "-q", "-t", &name])
            .arg(&dir)
            .env("DOCKER_BUILDKIT", "0"));
        LabelledImage(name)
    }
}

impl Drop for LabelledImage {
    fn drop(&mut self) {
        let _ = docker::docker(&["rmi", "-f", &self.0]);
    }
}

/// 2. Image labels are not operator labels: an image that ships `netcontainer.enable`,
///    `.mac`, `.parent` and `.hostname` gets no router from `watch`; given one by `up`,
///    the router has the name-derived MAC and hostname, not the image's. The operator's
///    own labels still count.
#[test]
fn image_labels_do_not_steer_the_host() {
    require_root!();
    let bed = watch::bed(0);
    let image = LabelledImage::build(
        &bed,
        "evil",
        &[
            ("netcontainer.enable", "true"),
            ("netcontainer.mac", "02:de:ad:be:ef:01"),
            ("netcontainer.parent", &bed.parent),
            ("netcontainer.hostname", "stolen-name"),
        ],
    );
    let mut w = Watch::start(&bed, &[], &[]);
    assert!(w.wait_watching(1, Duration::from_secs(20)), "{}", w.log());
    let evil = bed.container("evil", &image.0, &[], &[], true);
    // The operator's labels on the same image do count. (A value equal to the image's
    // is the image's: `yes` where the image says `true`; the parent is watch's.)
    let a = [
        "-l",
        "netcontainer.enable=yes",
        "-l",
        "netcontainer.hostname=chosen-name",
    ];
    let good = bed.container("good", &image.0, &a, &[], true);
    let addr = watch::wait_bound(&bed, &good.name, Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the operator-labelled service got no router: {}", w.log()));
    watch::wait_serves(&bed, addr, 80, &good.name, Duration::from_secs(10)).unwrap();
    let st = watch::status(&bed, &good.name).expect("status");
    assert_eq!(st["agent"]["hostname"], "chosen-name", "{st}");
    w.assert_running();
    assert!(
        docker::containers_of(&evil.name).is_empty(),
        "watch made a router for a service whose only labels are its image's"
    );
    w.stop();

    // `up` of the image-labelled service: derived MAC and hostname, not the image's.
    let up = bed.up(&evil.name, &[]);
    let st = bed.status_json(&evil.name);
    assert_ne!(st["mac"], "02:de:ad:be:ef:01", "{st}");
    assert_eq!(st["agent"]["hostname"], evil.name.to_lowercase(), "{st}");
    assert_serves(&bed, up.address, 80, &evil.name);
}

fn assert_serves(bed: &DockerBed, addr: Ipv4Addr, port: u16, service: &str) {
    match bed.fetch(addr, port, 5) {
        Ok(body) => assert_eq!(body.trim(), page(service, port)),
        Err(e) => panic!("http://{addr}:{port}/ from the LAN client: {e}"),
    }
}

/// 2. A MAC from a flag or a label must be unicast and locally administered: a vendor's
///    (universally administered) or a multicast MAC is refused, and nothing is left.
#[test]
fn macs_must_be_unicast_and_locally_administered() {
    require_root!();
    let bed = DockerBed::new(1);
    let s = bed.run_service("s", &[]);
    for mac in ["00:11:22:33:44:55", "03:00:00:00:00:01"] {
        let out = bed.try_up(&s.name, &["--mac", mac]);
        assert!(!out.ok(), "--mac {mac} accepted: {out}");
        assert!(out.stderr.contains(mac), "{out}");
        bed.assert_clean(&s.name);
    }
    let l = bed.container(
        "l",
        SAMPLE_IMAGE,
        &["-l", "netcontainer.mac=00:11:22:33:44:55"],
        &[],
        true,
    );
    let out = bed.try_up(&l.name, &[]);
    assert_error(&out, "not a locally administered MAC address");
    bed.assert_clean(&l.name);
}

/// 3. watch never deletes what it cannot prove is stale: while Docker's container listing
///    fails (a proxy in front of its socket answers 500), resync rounds remove no router's
///    state directory, socket or lease directory (under the lib directory), and the service
///    answers throughout and after.
#[test]
fn watch_keeps_live_state_when_docker_listing_fails() {
    require_root!();
    let bed = watch::bed(2);
    let s = bed.run_service("s", &[]);
    let up = bed.up(&s.name, &[]);
    let (dir, lease_dir) = bed.service_dirs(&s.name);
    let socket = dir.join("agent.sock");
    let lease = lease_dir.join("lease-lan0.json");
    assert!(
        socket.exists() && lease.exists(),
        "{dir:?} {lease_dir:?} incomplete"
    );
    // Old enough for the sweep (it spares directories younger than two minutes).
    run(Command::new("touch")
        .args(["-d", "1 hour ago"])
        .arg(&dir)
        .arg(&lease_dir));
    let proxy = FailingProxy::start(&bed.tmp.join("docker.sock"), &["/containers/json"]);
    let host = proxy.docker_host();
    let mut w = Watch::start(&bed, &["--resync", "1"], &[("DOCKER_HOST", host.as_str())]);
    assert!(w.wait_watching(1, Duration::from_secs(20)), "{}", w.log());
    proxy.set_failing(true);
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        assert!(
            socket.exists() && lease.exists(),
            "watch removed live state while Docker failed: {}",
            w.log()
        );
        std::thread::sleep(POLL);
    }
    assert!(
        proxy.failed.load(std::sync::atomic::Ordering::SeqCst) >= 3,
        "the proxy injected no failure: is watch using it? {}",
        w.log()
    );
    assert!(w.log().contains("no clean-up this round"), "{}", w.log());
    proxy.set_failing(false);
    std::thread::sleep(Duration::from_secs(2));
    w.assert_running();
    assert!(socket.exists() && lease.exists(), "{}", w.log());
    assert_serves(&bed, up.address, 80, &s.name);
    assert_eq!(bed.status_json(&s.name)["agent"]["state"], "bound");
}

/// 4. Root-only state: the run directory and the lock directory are 0700 and lock files
///    0600 (an existing run directory is tightened), so an unprivileged user cannot open a
///    lock file to block `up`, `down` or `watch`.
#[test]
fn state_is_root_only() {
    require_root!();
    let bed = DockerBed::new(3);
    let pr = PrivateRun::new(&bed.tmp);
    // As an older version left it: world-readable.
    std::fs::create_dir_all(&pr.run).unwrap();
    run(Command::new("chmod").arg("0755").arg(&pr.run));
    let s = bed.run_service("s", &[]);
    let out = bed.nc_with(
        &["up", &s.name, "--parent", &bed.parent, "--timeout", "20"],
        &pr.inv(),
    );
    assert!(out.ok(), "{out}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    let lock = pr.run.join(".locks").join(format!("{}.lock", s.name));
    assert_eq!(mode(&pr.run), 0o700, "run directory");
    assert_eq!(mode(&pr.run.join(".locks")), 0o700, "lock directory");
    assert_eq!(mode(&lock), 0o600, "lock file");
    assert_eq!(mode(&pr.run.join(&s.name)), 0o700, "state directory");
    // Whatever the modes say: uid 65534 cannot take the lock (flock -n on it fails).
    let nobody = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["flock", "-n"])
        .arg(&lock)
        .arg("true")
        .stdin(Stdio::null())
        .output()
        .expect("setpriv");
    assert!(
        !nobody.status.success(),
        "uid 65534 could lock {}",
        lock.display()
    );
    let out = bed.nc_with(&["down", &s.name], &pr.inv());
    assert!(out.ok(), "{out}");
    pr.assert_canary();
}

/// `pid` of a running container.
fn pid_of(container: &str) -> u32 {
    docker::docker_ok(&["inspect", "--format", "{{.State.Pid}}", container])
        .trim()
        .parse()
        .unwrap()
}

/// 5. The router is no gateway from the Docker side onto the LAN: another container on the
///    service's network (with NET_ADMIN, here its namespace driven from the host) that
///    routes the LAN via the router reaches no LAN host over TCP or UDP, with its own or a
///    spoofed source, nor does the service itself in masquerade mode (in gateway mode it
///    does, from its lease: `gateway.rs`, which also sends an intruder); the router's
///    rp_filter is loose (2). Control: without the agent's table the same knock arrives.
#[test]
fn router_is_no_gateway_from_the_docker_side() {
    require_root!();
    let bed = DockerBed::new(4);
    let s = bed.run_service("s", &[]);
    let up = bed.up(&s.name, &["--source", "masquerade"]);
    let router = docker::router_name(&s.name);
    let router_ip = watch::ip_of(&bed, &router).expect("router's Docker-side address");
    let attacker = bed.run_service("a", &[]);
    let ans = Netns::attach(&bed.name("ans"), pid_of(&attacker.name)).expect("attach");
    let sns = Netns::attach(&bed.name("sns"), pid_of(&s.name)).expect("attach");
    let rns = Netns::attach(&bed.name("rns"), pid_of(&router)).expect("attach");
    for ns in [&ans, &sns] {
        ns.ip(&[
            "route",
            "replace",
            docker::LAN_NET,
            "via",
            &router_ip.to_string(),
        ]);
    }
    let spoofed = Ipv4Addr::new(203, 0, 113, 77);
    ans.ip(&["addr", "add", &format!("{spoofed}/32"), "dev", "eth0"]);
    let arrivals = isolation::Arrivals::start(&bed.client, 9000);
    isolation::knock(&ans, None, docker::CLIENT, 9000);
    isolation::knock(&ans, Some(spoofed), docker::CLIENT, 9000);
    isolation::knock(&sns, None, docker::CLIENT, 9000);
    assert_eq!(
        arrivals.count(),
        0,
        "packets from the Docker side reached the LAN through the router"
    );
    let rp = rns
        .run_in(|| std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter"))
        .unwrap()
        .unwrap();
    assert_eq!(rp.trim(), "2", "rp_filter in the router");
    // The published port still works both ways.
    assert_serves(&bed, up.address, 80, &s.name);
    // Control: the path exists; only the agent's rules stop it.
    rns.exec_ok(&["nft", "delete", "table", "ip", contract::NFT_TABLE]);
    isolation::knock(&ans, None, docker::CLIENT, 9000);
    assert!(
        arrivals.count() > 0,
        "control: without the agent's rules the knock should arrive"
    );
}

/// 6. Container IDs work wherever names do: `status` and `down` by full or short ID; a
///    removed service's router found by its service's ID; and a name that is also a hex
///    prefix of another container's ID means the named container.
#[test]
fn container_ids_work_wherever_names_do() {
    require_root!();
    let bed = DockerBed::new(5);
    let s = bed.run_service("s", &[]);
    let id = docker::docker_ok(&["inspect", "--format", "{{.Id}}", &s.name])
        .trim()
        .to_string();
    let up = bed.up(&id[..12], &[]);
    assert_eq!(up.service, s.name);
    let st = bed.status_json(&id[..12]);
    assert_eq!(st["service"], s.name.as_str(), "{st}");
    let out = bed.down(&id);
    assert!(out.ok() && out.stdout.contains("removed"), "down ID: {out}");
    bed.assert_clean(&s.name);

    // A removed service's router, by the service's short ID.
    let r = bed.run_service("r", &[]);
    let rid = docker::docker_ok(&["inspect", "--format", "{{.Id}}", &r.name])
        .trim()
        .to_string();
    bed.up(&r.name, &[]);
    docker::docker_ok(&["rm", "-f", &r.name]);
    let out = bed.down(&rid[..12]);
    assert!(out.ok() && out.stdout.contains("removed"), "down ID: {out}");
    bed.assert_clean(&r.name);

    // A container named like another one's short ID.
    let other = bed.run_service("o", &[]);
    let oid = docker::docker_ok(&["inspect", "--format", "{{.Id}}", &other.name])
        .trim()
        .to_string();
    let short = &oid[..12];
    let _named = Rm(short.to_string());
    docker::docker_ok(&[
        "run",
        "-d",
        "--name",
        short,
        "--network",
        &bed.network,
        "-e",
        &format!("SAMPLE_NAME={short}"),
        SAMPLE_IMAGE,
    ]);
    bed.track_service(short);
    let up = bed.up(short, &[]);
    assert_eq!(up.service, short, "up took the other container");
    assert_serves(&bed, up.address, 80, short);
    let st = bed.status_json(short);
    assert_eq!(st["service"], short, "{st}");
    // Removed, its name now only a prefix of the other container's ID: `down` still
    // means the removed service's router, not the other container.
    docker::docker_ok(&["rm", "-f", short]);
    let out = bed.down(short);
    assert!(
        out.ok() && out.stdout.contains("removed"),
        "down {short}: {out}"
    );
    assert!(
        docker::containers_of(short).is_empty() && docker::containers_of(&other.name).is_empty()
    );
}

/// 7. An interrupted `up` leaves nothing behind: SIGINT or SIGTERM while it waits for the
///    lease rolls back the router container, its leg and its state directory, with one
///    error line; the next `up` works.
#[test]
fn interrupted_up_leaves_nothing_behind() {
    require_root!();
    let bed = DockerBed::new(6);
    let s = bed.run_service("s", &[]);
    let links = bed.my_links();
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // DISCOVERs never reach the server: `up` waits.
        let block = IngressDrop::new(&bed.lan, "uplink", &["udp dport 67".to_string()]);
        let err = bed.tmp.join("up.err");
        let child = Command::new(bin("netcontainer"))
            .args(["up", &s.name, "--parent", &bed.parent, "--timeout", "40"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        bed.track_service(&s.name);
        let mut g = proc::ProcGuard::new(child, "netcontainer up");
        let router = docker::router_name(&s.name);
        let started = wait_until(Duration::from_secs(20), POLL, || {
            docker::docker(&["inspect", "--format", "{{.State.Running}}", &router])
                .is_ok_and(|r| r.trim() == "true")
                && block.dropped() > 0
        });
        assert!(started, "the router never started");
        g.signal(sig);
        let status = g.wait_timeout(Duration::from_secs(20));
        let stderr = std::fs::read_to_string(&err).unwrap_or_default();
        let status = status.unwrap_or_else(|| panic!("up did not stop on signal {sig}"));
        assert!(!status.success(), "up succeeded after a signal: {stderr}");
        assert_eq!(
            stderr.lines().filter(|l| l.starts_with("error")).count(),
            1,
            "{stderr}"
        );
        assert!(stderr.contains("interrupted by SIG"), "{stderr}");
        bed.assert_clean(&s.name);
        assert_eq!(bed.my_links(), links, "links left behind");
        drop(block);
    }
    let up = bed.up(&s.name, &[]);
    assert_serves(&bed, up.address, 80, &s.name);
}
