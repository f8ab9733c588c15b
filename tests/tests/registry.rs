//! The router image from a registry: `scripts/publish-router-image` pushes it, `up --image
//! REGISTRY/REPO:TAG` and `watch --image ...` pull it when it is missing on the host, and a
//! reference the registry does not have fails with one line naming it. A pinned image
//! (docs/security.md, "The router image is what this build expects") is pulled and run by
//! its digest or image ID, and another image under its tag is refused. Root only; the router and sample images must exist (see
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
    // The pin the script records goes to the bed's own record, which these drivers do not
    // read: the reference stays an unpinned operator override here.
    publish_pinned(registry, bed, &bed.tmp.join("unused-router-images"))
}

/// [`publish`], recording the pushed digest in the pin record `pins`.
fn publish_pinned(
    registry: &Registry,
    bed: &DockerBed,
    pins: &std::path::Path,
) -> (String, String, String) {
    let prefix = format!("{}/{}", registry.host(), bed.id);
    let repo = format!("{prefix}/netcontainer/router");
    let reference = format!("{repo}:{}", env!("CARGO_PKG_VERSION"));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/publish-router-image"
    );
    let pushed = TagGuard(reference.clone());
    let out = run(Command::new(script)
        .arg(&prefix)
        .env("NETCONTAINER_ROUTER_IMAGES", pins));
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

/// The pin record of a test, and the environment that points a driver at it.
struct Pins {
    path: std::path::PathBuf,
}

impl Pins {
    fn new(bed: &DockerBed) -> Pins {
        Pins {
            path: bed.tmp.join("router-images"),
        }
    }

    fn inv(&self) -> Invocation {
        Invocation {
            env: vec![(
                "NETCONTAINER_ROUTER_IMAGES".into(),
                self.path.display().to_string(),
            )],
            ..Default::default()
        }
    }

    /// The pin recorded for `reference`.
    fn of(&self, reference: &str) -> String {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .filter(|(r, _)| *r == reference)
            .map(|(_, p)| p.to_string())
            .next_back()
            .unwrap_or_else(|| panic!("no pin for {reference} in {text:?}"))
    }

    /// Records `reference`'s pin as the image scripts do (scripts/lib/common.sh).
    fn record(&self, reference: &str, pin: &str) {
        let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/lib/common.sh");
        run(Command::new("bash")
            .arg("-c")
            .arg(format!(". {lib} && record_router_image \"$0\" \"$1\""))
            .arg(reference)
            .arg(pin)
            .env("NETCONTAINER_ROUTER_IMAGES", &self.path));
    }
}

/// `up SERVICE --image IMAGE` with the pin record `pins`.
fn up_pinned(bed: &DockerBed, pins: &Pins, service: &str, image: &str) -> agent::CmdOutput {
    bed.track_service(service);
    bed.nc_with(
        &[
            "up",
            service,
            "--parent",
            &bed.parent,
            "--timeout",
            "20",
            "--image",
            image,
        ],
        &pins.inv(),
    )
}

fn image_id(reference: &str) -> String {
    docker::docker_ok(&["image", "inspect", "--format", "{{.Id}}", reference])
        .trim()
        .to_string()
}

/// The image (as created, and its ID) a service's router runs.
fn router_image(service: &str) -> (String, String) {
    let out = docker::docker_ok(&[
        "inspect",
        "--format",
        "{{.Config.Image}} {{.Image}}",
        &docker::router_name(service),
    ]);
    let (created, id) = out.trim().split_once(' ').expect("two fields");
    (created.to_string(), id.to_string())
}

/// The only `error` line of a failed call, which created nothing.
fn refused(bed: &DockerBed, service: &str, out: &agent::CmdOutput) -> String {
    assert!(out.status.is_some() && !out.ok(), "not refused: {out}");
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error"))
        .collect();
    assert_eq!(errors.len(), 1, "one error line: {out}");
    assert!(out.stdout.trim().is_empty(), "{out}");
    bed.assert_clean(service);
    assert!(
        docker::docker(&["inspect", &docker::router_name(service)]).is_err(),
        "a router was created: {out}"
    );
    errors[0].to_string()
}

/// 3. The router image is what this build expects, from a registry (docs/security.md,
///    21.5): `publish-router-image` records the pushed digest as the reference's pin, and
///    `up --image REF` pulls and runs `REPO@DIGEST`. Another image pushed under the same
///    tag is never run (the router runs the pinned content); when the registry does not
///    have the pinned digest, `up` refuses with one line naming the digest it wanted and
///    creates nothing.
#[test]
fn a_substituted_router_image_from_a_registry_is_refused() {
    require_root!();
    let bed = DockerBed::new(14);
    let registry = Registry::start();
    let pins = Pins::new(&bed);
    let (_, repo, reference) = publish_pinned(&registry, &bed, &pins.path);
    let pin = pins.of(&reference);
    let digest = pin
        .strip_prefix(&format!("{repo}@"))
        .unwrap_or_else(|| panic!("{pin} is not {repo}@DIGEST"))
        .to_string();
    let by_digest = format!("{repo}@{digest}");
    let router_id = image_id(docker::ROUTER_IMAGE);

    // Another image under the same tag in the registry (the sample, which is no router).
    let substitute = TagGuard(reference.clone());
    docker::docker_ok(&["tag", docker::SAMPLE_IMAGE, &reference]);
    docker::docker_ok(&["push", &reference]);
    docker::docker_ok(&["rmi", &reference]);
    drop(substitute);

    // Pulled by digest and run by digest: the substitute never runs. (The push left the
    // digest on the local image: removed, so that `up` has to pull.)
    let pulled = TagGuard(by_digest.clone());
    let _ = docker::docker(&["rmi", &by_digest]);
    let s = bed.run_service("s", &[]);
    let out = up_pinned(&bed, &pins, &s.name, &reference);
    assert!(out.ok(), "up --image {reference}: {out}");
    assert!(
        out.stderr
            .lines()
            .any(|l| l == format!("pulling router image {by_digest}")),
        "not pulled by digest: {out}"
    );
    assert_eq!(
        router_image(&s.name),
        (by_digest.clone(), router_id.clone())
    );
    let up = docker::parse_up(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let page = bed
        .fetch(up.address, 80, 5)
        .unwrap_or_else(|e| panic!("http://{}:80/ from the LAN client: {e}", up.address));
    assert_eq!(page.trim(), format!("hello from {} (port 80)", s.name));
    assert!(bed.down(&s.name).ok());
    bed.assert_clean(&s.name);

    // A pin this registry cannot satisfy: the digest of a release it does not have (its tag
    // names only the substitute). (The pushed digest itself cannot serve here: once pulled,
    // the daemon keeps its manifest and pulls it by digest from its own store, which is
    // still that content.) Refused, naming the digest; nothing created, nothing pulled.
    let wanted = format!("sha256:{}", "0123456789abcdef".repeat(4));
    pins.record(&reference, &format!("{repo}@{wanted}"));
    let u = bed.run_service("u", &[]);
    let out = up_pinned(&bed, &pins, &u.name, &reference);
    assert_eq!(
        refused(&bed, &u.name, &out),
        format!(
            "error: router image {reference} is not the image this build expects ({wanted}): {repo} does not have that digest (its tag may name other content now)"
        ),
    );
    assert!(!image_present(&reference), "the substitute was pulled");

    // The operator's own pin in --image works the same way.
    let out = up_pinned(&bed, &pins, &u.name, &format!("{repo}@{wanted}"));
    assert!(
        refused(&bed, &u.name, &out).contains(&format!("({wanted})")),
        "{out}"
    );
    drop(pulled);
}

/// 4. A router image built here is pinned by its image ID (what `build-router-image`
///    records): routers are created from the ID, a tag moved to another image changes
///    nothing while the built one is here, and once it is gone `up` refuses with one line
///    naming the ID it wanted and the one the tag names, and creates nothing.
#[test]
fn a_substituted_local_router_image_is_refused() {
    require_root!();
    let bed = DockerBed::new(15);
    let pins = Pins::new(&bed);
    let tag = format!("{}/router:pinned", bed.id);
    let _tag = TagGuard(tag.clone());
    let router_id = image_id(docker::ROUTER_IMAGE);
    docker::docker_ok(&["tag", docker::ROUTER_IMAGE, &tag]);
    pins.record(&tag, &router_id);
    assert_eq!(pins.of(&tag), router_id);

    let s = bed.run_service("s", &[]);
    let out = up_pinned(&bed, &pins, &s.name, &tag);
    assert!(out.ok(), "up --image {tag}: {out}");
    assert_eq!(
        router_image(&s.name),
        (router_id.clone(), router_id.clone())
    );
    assert!(bed.down(&s.name).ok());

    // The tag moved to the sample image: the pinned ID is still here and is what runs.
    docker::docker_ok(&["tag", docker::SAMPLE_IMAGE, &tag]);
    let t = bed.run_service("t", &[]);
    let out = up_pinned(&bed, &pins, &t.name, &tag);
    assert!(out.ok(), "up --image {tag} (moved): {out}");
    assert_eq!(router_image(&t.name).1, router_id);
    assert!(bed.down(&t.name).ok());

    // A build whose image is gone: a throwaway image of the bed's own, pinned, then
    // removed, with the tag on the sample image.
    let built = format!("{}/router:built", bed.id);
    let _built = TagGuard(built.clone());
    let mut b = Command::new("docker")
        .args(["build", "-q", "-t", &built, "-"])
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("docker build");
    write!(
        b.stdin.take().unwrap(),
        "FROM {}\nLABEL netcontainer.test.bed={}\n",
        docker::ROUTER_IMAGE,
        bed.id
    )
    .unwrap();
    assert!(b.wait().unwrap().success(), "docker build of {built}");
    let gone = image_id(&built);
    pins.record(&tag, &gone);
    docker::docker_ok(&["rmi", &built]);
    let sample_id = image_id(docker::SAMPLE_IMAGE);
    let u = bed.run_service("u", &[]);
    let out = up_pinned(&bed, &pins, &u.name, &tag);
    assert_eq!(
        refused(&bed, &u.name, &out),
        format!(
            "error: router image {tag} is not the image this build expects ({gone}): the tag names {sample_id}, and {gone} is not on this host"
        ),
    );
    // A record another user could write is refused before anything is made.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pins.path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = up_pinned(&bed, &pins, &u.name, &tag);
    assert!(
        refused(&bed, &u.name, &out).contains("is writable by group or others"),
        "{out}"
    );
}
