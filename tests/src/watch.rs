//! `netcontainer watch` in the Docker test bed ([`DockerBed`]): the supervisor run as a
//! child process with its log in a file, its systemd notifications on a datagram socket
//! of ours (so a test knows when a reconcile pass is over), labelled services, a socat
//! proxy for the Docker socket (to cut the event stream), and polling helpers.
//!
//! Watch acts on every router of the host, so a test that runs it must hold
//! [`SuiteLock::exclusive`] (use [`bed`]) and only assert on its own services.

use crate::docker::{self, DockerBed, Service, SuiteLock};
use crate::proc::ProcGuard;
use crate::{AgentStatus, wait_for, wait_until};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const POLL: Duration = Duration::from_millis(100);

static WATCH_N: AtomicU32 = AtomicU32::new(0);

/// A bed for a watch test: exclusive on the machine (see [`SuiteLock`]).
pub fn bed(index: u8) -> DockerBed {
    DockerBed::with_lock(index, SuiteLock::exclusive())
}

/// A TCP port free on 127.0.0.1 now (for `watch --metrics`).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// The page the sample service serves on `port`.
pub fn page(service: &str, port: u16) -> String {
    format!("hello from {service} (port {port})")
}

/// A running `netcontainer watch`, killed (by pid) on drop.
pub struct Watch {
    proc: ProcGuard,
    log: PathBuf,
    notify_path: PathBuf,
    notes: Arc<Mutex<Vec<String>>>,
    pub started: Instant,
}

impl Watch {
    /// `netcontainer watch --parent <bed parent> extra...` with extra environment.
    pub fn start(bed: &DockerBed, extra: &[&str], env: &[(&str, &str)]) -> Watch {
        Self::start_bin(bed, &crate::bin("netcontainer"), 20, extra, env)
    }

    /// [`Watch::start`] of the driver binary `bin` (another build, say) with
    /// `--timeout <timeout>`.
    pub fn start_bin(
        bed: &DockerBed,
        bin: &Path,
        timeout: u32,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Watch {
        let n = WATCH_N.fetch_add(1, Ordering::Relaxed);
        let log = bed.tmp.join(format!("watch{n}.log"));
        let notify_path = bed.tmp.join(format!("watch{n}.notify"));
        let sock = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let notes = Arc::new(Mutex::new(Vec::new()));
        {
            // Ends when the socket file is gone (drop) and nothing came for a while, or
            // with the process: it only holds the socket.
            let notes = notes.clone();
            let path = notify_path.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match sock.recv(&mut buf) {
                        Ok(k) => notes
                            .lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&buf[..k]).into_owned()),
                        Err(_) if !path.exists() => return,
                        Err(_) => {}
                    }
                }
            });
        }
        let mut cmd = Command::new(bin);
        let timeout = timeout.to_string();
        cmd.args(["watch", "--parent", &bed.parent, "--timeout", &timeout])
            .args(extra)
            .env("NOTIFY_SOCKET", &notify_path)
            .env_remove("NETCONTAINER_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn netcontainer watch");
        Watch {
            proc: ProcGuard::new(child, format!("netcontainer watch {}", extra.join(" "))),
            log,
            notify_path,
            notes,
            started: Instant::now(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines of its log that mention `service=<service>` (exactly that service).
    pub fn lines_of(&self, service: &str) -> Vec<String> {
        let tag = format!("service={service}");
        self.log()
            .lines()
            .filter(|l| l.split_whitespace().any(|w| w == tag))
            .map(String::from)
            .collect()
    }

    /// Waits until a log line contains `what` (and, when given, `service=<service>`).
    pub fn wait_line(&self, service: Option<&str>, what: &str, timeout: Duration) -> bool {
        wait_until(timeout, POLL, || match service {
            Some(s) => self.lines_of(s).iter().any(|l| l.contains(what)),
            None => self.log().lines().any(|l| l.contains(what)),
        })
    }

    /// Waits until it has told "systemd" `STATUS=watching` `n` times (one per finished
    /// start-up/reconnect reconcile).
    pub fn wait_watching(&mut self, n: usize, timeout: Duration) -> bool {
        let ok = wait_until(timeout, POLL, || {
            self.notes
                .lock()
                .unwrap()
                .iter()
                .filter(|m| m.lines().any(|l| l == "STATUS=watching"))
                .count()
                >= n
        });
        assert!(
            self.proc.running(),
            "watch exited: {:?}\n{}",
            self.proc.try_status(),
            self.log()
        );
        ok
    }

    /// Panics (with the log) unless watch still runs.
    pub fn assert_running(&mut self) {
        assert!(
            self.proc.running(),
            "watch exited: {:?}\n{}",
            self.proc.try_status(),
            self.log()
        );
    }

    /// SIGKILL, reaped.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// SIGTERM; its exit status (SIGKILL after 10 s).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.proc.terminate(Duration::from_secs(10))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- watch log {} ---\n{}", self.log.display(), self.log());
        }
        self.proc.terminate(Duration::from_secs(5));
        let _ = std::fs::remove_file(&self.notify_path);
    }
}

/// A second parent for the bed: a veth whose other end sits alone in a namespace of
/// its own, with no DHCP server: a router on it never gets a lease. Both go on drop
/// (deleting the namespace deletes the pair).
pub struct DeadParent {
    /// The root-namespace end: the `netcontainer.parent` of a stuck service.
    pub name: String,
    _ns: crate::netns::Netns,
}

impl DeadParent {
    pub fn new(bed: &DockerBed) -> DeadParent {
        let name = format!("{}q", bed.id);
        let ns = crate::netns::Netns::new(&format!("{}dead", bed.id)).expect("create netns");
        bed.track_link(&name);
        crate::bed::veth_here_to(&name, &ns, "eth0", None);
        DeadParent { name, _ns: ns }
    }
}

/// A labelled service whose parent is `dead` (a LAN with no DHCP server): watch keeps
/// failing its `up`. Named to sort first, so a watch that reconciled one service after
/// the other in name order would reach it first and keep the others waiting.
pub fn stuck_service(bed: &DockerBed, dead: &DeadParent) -> String {
    stuck_service_tagged(bed, dead, "0stuck")
}

/// [`stuck_service`] named with `tag` (several on one dead parent).
pub fn stuck_service_tagged(bed: &DockerBed, dead: &DeadParent, tag: &str) -> String {
    let parent = format!("netcontainer.parent={}", dead.name);
    bed.container(
        tag,
        docker::SAMPLE_IMAGE,
        &["-l", "netcontainer.enable=true", "-l", &parent],
        &[],
        true,
    )
    .name
}

/// Seconds since midnight (UTC) of a log line's timestamp
/// (`2026-11-30T10:45:22.123456Z ...`).
pub fn log_time(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?;
    let (_, time) = t.split_once('T')?;
    let time = time.trim_end_matches('Z');
    let mut p = time.split(':');
    let h: f64 = p.next()?.parse().ok()?;
    let m: f64 = p.next()?.parse().ok()?;
    let s: f64 = p.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// `retry_in=` of a log line, in seconds (`1s`, `500ms`, `2.5s`).
pub fn retry_in(line: &str) -> Option<f64> {
    let v = line
        .split_whitespace()
        .find_map(|t| t.strip_prefix("retry_in="))?;
    if let Some(ms) = v.strip_suffix("ms") {
        return ms.parse::<f64>().ok().map(|x| x / 1000.0);
    }
    v.strip_suffix('s')?.parse().ok()
}

/// Waits until every service answers its page on port 80 from the LAN client, taking
/// each address from watch's `router created: ADDRESS` line (cheap to poll, and the
/// same in every version of watch): the time from watch's start until the last one
/// answered, or what was still missing at `timeout`.
pub fn wait_all_serve(
    bed: &DockerBed,
    w: &Watch,
    services: &[String],
    timeout: Duration,
) -> Result<Duration, String> {
    let mut left: std::collections::BTreeSet<String> = services.iter().cloned().collect();
    let mut last = Duration::ZERO;
    while !left.is_empty() {
        if w.started.elapsed() > timeout {
            return Err(format!(
                "{} not answering after {timeout:?}: {left:?}",
                left.len()
            ));
        }
        let log = w.log();
        let created: Vec<(String, Ipv4Addr)> = log
            .lines()
            .filter_map(|l| {
                let addr = l
                    .split("router created: ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?;
                let s = l
                    .split_whitespace()
                    .find_map(|t| t.strip_prefix("service="))?;
                left.contains(s)
                    .then(|| addr.parse().ok().map(|a| (s.to_string(), a)))
                    .flatten()
            })
            .collect();
        for (s, a) in created {
            if bed.fetch(a, 80, 1).is_ok_and(|b| b.trim() == page(&s, 80)) {
                left.remove(&s);
                last = w.started.elapsed();
            }
        }
        if !left.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(last)
}

/// Removes the routers and state directories of `services` (`docker rm -f`, no
/// `down`): the next watch starts cold, and the lease stays with dnsmasq for the same
/// client ID.
pub fn remove_routers(services: &[String]) {
    let routers: Vec<String> = services
        .iter()
        .filter(|s| !docker::containers_of(s).is_empty())
        .map(|s| docker::router_name(s))
        .collect();
    if !routers.is_empty() {
        let mut a = vec!["rm", "-f", "-v"];
        a.extend(routers.iter().map(String::as_str));
        let _ = docker::docker(&a);
    }
    for s in services {
        let _ = std::fs::remove_dir_all(docker::state_dir(s));
        let _ = std::fs::remove_dir_all(docker::lib_dir().join(s));
    }
}

/// Docker labels that ask watch for a router on the bed's parent.
pub fn enable_labels(bed: &DockerBed) -> Vec<String> {
    vec![
        "-l".into(),
        "netcontainer.enable=true".into(),
        "-l".into(),
        format!("netcontainer.parent={}", bed.parent),
    ]
}

/// The sample service `<id><tag>` labelled for watch (`docker run -d`).
pub fn labelled_service(bed: &DockerBed, tag: &str, extra_docker: &[&str]) -> Service {
    let labels = enable_labels(bed);
    let mut a: Vec<&str> = labels.iter().map(String::as_str).collect();
    a.extend_from_slice(extra_docker);
    bed.container(tag, docker::SAMPLE_IMAGE, &a, &[], true)
}

/// `container`'s address on the bed's network (None when it has none: stopped).
pub fn ip_of(bed: &DockerBed, container: &str) -> Option<Ipv4Addr> {
    let fmt = format!(
        "{{{{with index .NetworkSettings.Networks \"{}\"}}}}{{{{.IPAddress}}}}{{{{end}}}}",
        bed.network
    );
    docker::docker(&["inspect", "--format", &fmt, container])
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// `status SERVICE --json` if the service has a router.
pub fn status(bed: &DockerBed, service: &str) -> Option<Value> {
    let out = bed.nc(&["status", service, "--json"]);
    if !out.ok() {
        return None;
    }
    serde_json::from_str(&out.stdout).ok()
}

/// The agent status inside a `status --json` entry.
pub fn agent(entry: &Value) -> Option<AgentStatus> {
    AgentStatus::parse(entry["agent"].clone()).ok()
}

/// Forward targets (address, port) in a status entry.
pub fn targets(entry: &Value) -> Vec<(String, u64)> {
    agent(entry)
        .map(|st| {
            st.forwards
                .iter()
                .map(|f| {
                    (
                        f["target_address"].as_str().unwrap_or_default().to_string(),
                        f["target_port"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `service`'s router is bound; its address.
pub fn wait_bound(bed: &DockerBed, service: &str, timeout: Duration) -> Option<Ipv4Addr> {
    wait_for(timeout, Duration::from_millis(250), || {
        let st = agent(&status(bed, service)?)?;
        (st.state == "bound").then(|| st.address()).flatten()
    })
}

/// Waits (bounded) for `service`'s router to name the `.local` name it claimed by mDNS.
pub fn wait_mdns_name(bed: &DockerBed, service: &str, timeout: Duration) -> Option<String> {
    wait_for(timeout, Duration::from_millis(250), || {
        status(bed, service)?["agent"]["mdns"]
            .as_str()
            .map(String::from)
    })
}

/// Polls `http://addr:port/` from the LAN client (short attempts) until it serves
/// `service`'s page: the time it took, or the last answer/error.
pub fn wait_serves(
    bed: &DockerBed,
    addr: Ipv4Addr,
    port: u16,
    service: &str,
    timeout: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let want = page(service, port);
    let mut last = String::from("never tried");
    while start.elapsed() < timeout {
        match bed.fetch(addr, port, 1) {
            Ok(body) if body.trim() == want => return Ok(start.elapsed()),
            Ok(body) => last = format!("answered {:?}", body.trim()),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "http://{addr}:{port}/ did not serve {want:?} within {timeout:?}: {last}"
    ))
}

/// `docker inspect` of a container: (id, State.StartedAt), if it exists.
pub fn id_and_start(container: &str) -> Option<(String, String)> {
    let s = docker::docker(&[
        "inspect",
        "--format",
        "{{.Id}} {{.State.StartedAt}}",
        container,
    ])
    .ok()?;
    let mut w = s.split_whitespace();
    Some((w.next()?.to_string(), w.next()?.to_string()))
}

/// Is `container` running?
pub fn running(container: &str) -> bool {
    docker::docker(&["inspect", "--format", "{{.State.Running}}", container])
        .is_ok_and(|s| s.trim() == "true")
}

/// `socat UNIX-LISTEN:<path>,fork,unlink-early UNIX-CONNECT:/var/run/docker.sock` in its
/// own process group: a Docker socket that the test can cut (kill the group: the
/// listener and every connection it forked, among them watch's event stream).
pub struct DockerProxy {
    pub path: PathBuf,
    proc: Option<ProcGuard>,
}

impl DockerProxy {
    pub fn start(path: &Path) -> DockerProxy {
        let mut p = DockerProxy {
            path: path.to_path_buf(),
            proc: None,
        };
        p.restart();
        p
    }

    /// `DOCKER_HOST` for it.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Starts the proxy (again) and waits until Docker answers through it.
    pub fn restart(&mut self) {
        assert!(self.proc.is_none(), "proxy already running");
        let child = Command::new("socat")
            .arg(format!(
                "UNIX-LISTEN:{},fork,unlink-early",
                self.path.display()
            ))
            .arg("UNIX-CONNECT:/var/run/docker.sock")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn socat (apt-get install socat)");
        self.proc = Some(ProcGuard::new(child, "socat docker proxy"));
        let host = self.docker_host();
        let up = wait_until(Duration::from_secs(10), POLL, || {
            Command::new("docker")
                .args(["-H", &host, "version", "--format", "{{.Server.Version}}"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(up, "Docker does not answer through the socat proxy");
    }

    /// Kills the proxy's whole process group (by its pgid = the listener's pid) and
    /// removes the socket.
    pub fn cut(&mut self) {
        if let Some(mut g) = self.proc.take() {
            let pgid = g.pid() as libc::pid_t;
            if pgid > 0 {
                // SAFETY: kill(2) of the process group we created for our own child.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
            g.kill();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// A proxy for the Docker socket that answers chosen requests with an error while the
/// test says so, or always with a given answer, and passes everything else through (the
/// event stream included).
///
/// Each request is read up to the end of its head; a request whose line contains one of
/// the patterns, while failing, gets `500` and the connection is closed. Any other is
/// forwarded with `Connection: close` added, then bytes are copied both ways until
/// either side closes, so every request starts on a connection the proxy can look at.
/// Threads end with their sockets; the listener polls a stop flag (drop).
pub struct FailingProxy {
    pub path: PathBuf,
    failing: Arc<std::sync::atomic::AtomicBool>,
    /// How many requests got the injected error.
    pub failed: Arc<AtomicU32>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FailingProxy {
    pub fn start(path: &Path, patterns: &[&str]) -> FailingProxy {
        Self::with_answers(path, patterns, &[])
    }

    /// As [`FailingProxy::start`], and a request whose line contains `answers[i].0`
    /// always gets `200` with the JSON body `answers[i].1` instead of Docker's answer
    /// (an engine that reports something else, e.g. Docker Desktop's `/info`).
    pub fn with_answers(path: &Path, patterns: &[&str], answers: &[(&str, &str)]) -> FailingProxy {
        use std::os::unix::net::UnixListener;
        use std::sync::atomic::AtomicBool;
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind the proxy socket");
        listener.set_nonblocking(true).unwrap();
        let failing = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let patterns: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        let answers: Vec<(String, String)> = answers
            .iter()
            .map(|(p, b)| (p.to_string(), b.to_string()))
            .collect();
        let (f, n, s) = (failing.clone(), failed.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (f, n, p, a) =
                            (f.clone(), n.clone(), patterns.clone(), answers.clone());
                        std::thread::spawn(move || proxy_one(conn, &f, &n, &p, &a));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        FailingProxy {
            path: path.to_path_buf(),
            failing,
            failed,
            stop,
            thread: Some(thread),
        }
    }

    /// `DOCKER_HOST` for it.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// From now on, answer the matching requests with an error (or stop doing so).
    pub fn set_failing(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }
}

impl Drop for FailingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn proxy_one(
    mut client: std::os::unix::net::UnixStream,
    failing: &std::sync::atomic::AtomicBool,
    failed: &AtomicU32,
    patterns: &[String],
    answers: &[(String, String)],
) {
    use std::io::{Read, Write};
    let _ = client.set_nonblocking(false);
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the end of the request head (bounded).
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if head.len() > 64 * 1024 {
            return;
        }
        match client.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(k) => head.extend_from_slice(&buf[..k]),
        }
    };
    let line_end = head.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
    let line = String::from_utf8_lossy(&head[..line_end]).into_owned();
    if failing.load(Ordering::SeqCst) && patterns.iter().any(|p| line.contains(p.as_str())) {
        failed.fetch_add(1, Ordering::SeqCst);
        let body = r#"{"message":"injected failure (test proxy)"}"#;
        let _ = write!(
            client,
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    if let Some((_, body)) = answers.iter().find(|(p, _)| line.contains(p.as_str())) {
        let _ = write!(
            client,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    let Ok(mut upstream) = std::os::unix::net::UnixStream::connect("/var/run/docker.sock") else {
        return;
    };
    let mut out = head[..line_end + 2].to_vec();
    out.extend_from_slice(b"Connection: close\r\n");
    out.extend_from_slice(&head[line_end + 2..]);
    let _ = end;
    if upstream.write_all(&out).is_err() {
        return;
    }
    let _ = client.set_read_timeout(None);
    let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut upstream, &mut client);
    let _ = client.shutdown(std::net::Shutdown::Both);
    let _ = up.join();
}

/// `GET /metrics` over HTTP/1.0 from 127.0.0.1: the body.
pub fn scrape(port: u16) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let (head, body) = out.split_once("\r\n\r\n").ok_or("no header end")?;
    if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
        return Err(format!("not a 200: {head}"));
    }
    if !head
        .to_ascii_lowercase()
        .contains("content-type: application/openmetrics-text")
    {
        return Err(format!("content type: {head}"));
    }
    Ok(body.to_string())
}

/// The samples of an OpenMetrics text: `name{labels}` -> value.
pub fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}
