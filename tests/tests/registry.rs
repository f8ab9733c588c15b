//! The router image from a registry: `scripts/publish-router-image` pushes it, `up --image
//! REGISTRY/REPO:TAG` and `watch --image ...` pull it when it is missing on the host, and a
//! reference the registry does not have fails with one line naming it. Root only; the router and sample images must exist (see
//! tests/tests/docker.rs), and Debian's `docker-registry` package
//! (`sudo ./scripts/install-deps`).
//!
//! The registry is the test's own: `/usr/bin/docker-registry serve CONFIG` on
//! 127.0.0.1:<free port>, storage in a temporary directory, started here and killed by pid
//! on drop (the package's own service, if it runs, listens elsewhere and is not used).
//! Docker allows plain-HTTP registries on 127.0.0.0/8 without configuration ("Insecure
//! Registries: 127.0.0.0/8" in `docker info`). Nothing leaves the machine.

use netcontainer_tests::docker::{self, DockerBed, Invocation};
use netcontainer_tests::proc::ProcGuard;
use netcontainer_tests::watch::{self, Watch};
use netcontainer_tests::*;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A private registry on 127.0.0.1, killed (by pid) and its storage removed on drop.
struct Registry {
    port: u16,
    // Field order is drop order: the process goes before its directory.
    proc: ProcGuard,
    dir: TempDir,
}

impl Registry {
    fn start() -> Registry {
        assert!(
            std::path::Path::new(REGISTRY_BIN).is_file(),
            "{REGISTRY_BIN} is missing: install Debian's docker-registry (sudo ./scripts/install-deps)"
        );
        // A free port can be taken between our probe and the registry's bind: retry.
        let mut last = String::new();
        for _ in 0..3 {
            let dir = TempDir::new("registry");
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .expect("probe a free port")
                .port();
            let config = dir.join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\n\
                     log:\n  level: warn\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: 127.0.0.1:{port}\n  secret: netcontainer-test\n",
                    dir.join("data").display()
                ),
            )
            .expect("write the registry config");
            let log = dir.join("registry.log");
            let child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::fs::File::create(dir.join("registry.err")).unwrap())
                .spawn()
                .expect("spawn docker-registry");
            let mut proc = ProcGuard::new(child, format!("docker-registry on port {port}"));
            let up = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
                http_get(port, "/v2/").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            });
            if up {
                return Registry { port, proc, dir };
            }
            proc.kill();
            last = format!(
                "{}{}",
                std::fs::read_to_string(&log).unwrap_or_default(),
                std::fs::read_to_string(dir.join("registry.err")).unwrap_or_default()
            );
        }
        panic!("docker-registry did not answer on 127.0.0.1: {last}");
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Its log, for diagnostics.
    fn log(&self) -> String {
        tail(&self.dir.join("registry.err"), 20)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("registry {} log:\n{}", self.host(), self.log());
        }
        self.proc.kill();
    }
}

/// A plain HTTP GET on 127.0.0.1:`port`: the response's head and body.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(
        &(Ipv4Addr::LOCALHOST, port).into(),
        Duration::from_millis(300),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// A local image tag removed (`docker rmi`, untag only) on drop.
struct TagGuard(String);

impl Drop for TagGuard {
    fn drop(&mut self) {
        let _ = docker::docker(&["rmi", &self.0]);
    }
}

fn image_present(reference: &str) -> bool {
    docker::docker(&["image", "inspect", "--format", "{{.Id}}", reference]).is_ok()
}

/// `scripts/publish-router-image 127.0.0.1:PORT/<bed id>` (a path of the bed's own:
/// parallel runs never share a repository), then the pushed tag removed here (the layers
/// stay, under the local image's tag). Returns (prefix, repository, reference).
fn publish(registry: &Registry, bed: &DockerBed) -> (String, String, String) {
    let prefix = format!("{}/{}", registry.host(), bed.id);
    let repo = format!("{prefix}/netcontainer/router");
    let reference = format!("{repo}:{}", env!("CARGO_PKG_VERSION"));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/publish-router-image"
    );
    let pushed = TagGuard(reference.clone());
    let out = run(Command::new(script).arg(&prefix));
    assert!(
        out.starts_with(&format!("{reference} sha256:")),
        "publish-router-image printed {out:?}"
    );
    drop(pushed);
    assert!(
        !image_present(&reference),
        "{reference} still present locally"
    );
    (prefix, repo, reference)
}

/// 1. Pushed to a registry and absent here, the router image is pulled by `up` (one line
///    on stderr; per-layer status lines on a terminal), the router runs it and the service
///    answers on its LAN address; an image already there is not pulled; a tag or a
///    repository the registry does not have fails with one line naming the reference and
///    leaves nothing behind.
#[test]
fn up_pulls_the_router_image_from_a_registry() {
    require_root!();
    let bed = DockerBed::new(12);
    let registry = Registry::start();
    let (prefix, repo, reference) = publish(&registry, &bed);
    let pulled = TagGuard(reference.clone());

    let s = bed.run_service("s", &[]);
    let up = bed.up(&s.name, &["--image", &reference]);
    // Not a terminal (stderr is a file): one line about the pull.
    let pull_lines: Vec<&str> = up
        .out
        .stderr
        .lines()
        .filter(|l| l.contains("pull"))
        .collect();
    assert_eq!(
        pull_lines,
        [format!("pulling router image {reference}")],
        "stderr of up: {}",
        up.out
    );
    assert!(image_present(&reference), "{reference} not pulled");
    let router = docker::router_name(&s.name);
    assert_eq!(
        docker::docker_ok(&["inspect", "--format", "{{.Config.Image}}", &router]).trim(),
        reference,
        "the router runs another image"
    );
    assert!(
        docker::in_pool(up.address),
        "{} not in the pool",
        up.address
    );
    let page = bed
        .fetch(up.address, 80, 5)
        .unwrap_or_else(|e| panic!("http://{}:80/ from the LAN client: {e}", up.address));
    assert_eq!(
        page.trim(),
        format!("hello from {} (port 80)", s.name),
        "someone else's page"
    );
    // A second `up` (another service) finds the image and pulls nothing.
    let t = bed.run_service("t", &[]);
    let up2 = bed.up(&t.name, &["--image", &reference]);
    assert!(
        !up2.out.stderr.contains("pulling"),
        "pulled an image that is there: {}",
        up2.out
    );

    // On a terminal (a pty from util-linux's `script`): status lines redrawn in place.
    // The reference is removed again first; its layers stay (the local tag).
    docker::docker_ok(&["rmi", &reference]);
    let w = bed.run_service("w", &[]);
    let pty = Invocation {
        wrapper: ["sh", "-c", "exec script -qec \"$*\" /dev/null", "sh"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    };
    let out = bed.nc_with(
        &[
            "up",
            &w.name,
            "--parent",
            &bed.parent,
            "--timeout",
            "20",
            "--image",
            &reference,
        ],
        &pty,
    );
    assert!(out.ok(), "up on a terminal: {out}");
    // Everything the driver wrote to the terminal (stdout and stderr) comes out here.
    let tty = &out.stdout;
    assert!(
        tty.contains(&format!("pulling router image {reference}")),
        "{out}"
    );
    // The block is redrawn in place (cursor up, line cleared). With the layers already
    // here (the local tag) the daemon reports no per-layer progress, only the pull's own
    // lines; the per-layer lines are unit-tested (host-driver, docker::tests).
    assert!(tty.contains("\x1b[1A\r\x1b[2K"), "no line redrawn: {out}");
    assert!(
        tty.contains(&format!("Status: Downloaded newer image for {reference}")),
        "no final status line: {out}"
    );
    assert!(image_present(&reference), "{reference} not pulled again");

    // A tag the registry does not have.
    let missing = format!("{repo}:no-such-tag");
    let u = bed.run_service("u", &[]);
    let out = bed.try_up(&u.name, &["--image", &missing]);
    assert!(
        out.status.is_some() && !out.ok(),
        "up with {missing}: {out}"
    );
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error"))
        .collect();
    assert_eq!(
        errors,
        [format!(
            "error: router image {missing} is not on this host and its registry does not have it"
        )],
        "{out}"
    );
    assert!(out.stdout.trim().is_empty(), "{out}");
    bed.assert_clean(&u.name);
    assert!(!image_present(&missing), "{missing} appeared locally");

    // A repository the registry never had: the same one line.
    let unknown = format!("{prefix}/nothing:1");
    let out = bed.try_up(&u.name, &["--image", &unknown]);
    assert!(
        out.stderr.lines().any(|l| l
            == format!(
                "error: router image {unknown} is not on this host and its registry does not have it"
            )),
        "{out}"
    );
    bed.assert_clean(&u.name);

    for svc in [&s.name, &t.name, &w.name] {
        let out = bed.down(svc);
        assert!(out.ok(), "down {svc}: {out}");
        bed.assert_clean(svc);
    }
    drop(pulled);
    assert!(!image_present(&reference), "{reference} left behind");
}

/// 2. `watch` creates a labelled service's router through the same path: the image is
///    pulled (logged), the router runs it, the service answers.
#[test]
fn watch_pulls_the_router_image_from_a_registry() {
    require_root!();
    let bed = watch::bed(13);
    let registry = Registry::start();
    let (_, _, reference) = publish(&registry, &bed);
    let pulled = TagGuard(reference.clone());
    let a = watch::labelled_service(&bed, "a", &[]);
    let mut w = Watch::start(&bed, &["--image", &reference], &[]);
    assert!(
        w.wait_watching(1, Duration::from_secs(40)),
        "no start-up reconcile: {}",
        w.log()
    );
    let addr = watch::wait_bound(&bed, &a.name, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("no bound router for {}: {}", a.name, w.log()));
    watch::wait_serves(&bed, addr, 80, &a.name, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}\n{}", w.log()));
    let log = w.log();
    assert!(
        log.lines()
            .any(|l| l.contains("pulling the router image") && l.contains(&reference)),
        "{log}"
    );
    assert!(log.contains("router image pulled"), "{log}");
    assert!(image_present(&reference), "{reference} not pulled");
    assert_eq!(
        docker::docker_ok(&[
            "inspect",
            "--format",
            "{{.Config.Image}}",
            &docker::router_name(&a.name)
        ])
        .trim(),
        reference
    );
    w.assert_running();
    w.stop();
    drop(pulled);
}
