//! Security and robustness of the agent's control socket (router-agent/src/control.rs,
//! framing in proto/src/frame.rs). Root only (`require_root!` skips otherwise, fails under
//! CI).
//!
//! Each test starts its own agent in a fresh network namespace (the control socket is a
//! plain file: the namespace only keeps the agent's netlink and packet sockets away from
//! the host), talks to it with hand-made frames over a plain `UnixStream` and reads its
//! status with the driver (`netcontainer agent status --json`). Guards kill the agent (by
//! pid), delete the namespace and the temporary directory, also when a test fails; the
//! agent's log is printed then.
//!
//! Frames are written by hand so that this crate needs no dependency on the protocol
//! crate: `u32 BE length | u16 BE version | bincode body`, and the bodies used here are
//! one-byte enum variants (`Request::Status` = 0; `Response::Status` = 0, `Error` = 3 with
//! a varint-prefixed string).

use netcontainer_proto::contract::{LAN_IF, flag};
use netcontainer_tests::agent::driver;
use netcontainer_tests::*;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(1);
/// control.rs: FRAME_TIMEOUT (rest of a started frame).
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// proto: MAX_FRAME_LEN.
const MAX_FRAME_LEN: u32 = 4 << 20;
/// proto: PROTOCOL_VERSION.
const VERSION: u16 = service::PROTOCOL_VERSION;
/// `Request::Status` as a complete frame.
const STATUS_REQ: [u8; 7] = [0, 0, 0, 3, (VERSION >> 8) as u8, VERSION as u8, 0];
/// The uid of `nobody`: a peer that must be refused.
const NOBODY: u32 = 65534;

// ------------------------------------------------------------------------------------
// A bare agent: our own launcher, because the tests choose the socket path (Agent::start
// always puts it in an existing directory).

struct CtlAgent {
    // Field order = drop order: the agent first, then its namespace, then the files.
    proc: Option<ProcGuard>,
    /// Kept alive (deleted on drop, after the agent is killed).
    _ns: Arc<Netns>,
    tmp: TempDir,
    socket: PathBuf,
    log: PathBuf,
}

impl CtlAgent {
    /// Start `netcontainer-agent --socket <tmp>/<socket_rel>` in a new namespace that has
    /// a `lan0` (one end of a veth pair, so a plan can be applied; DHCP on it never gets
    /// an answer).
    /// `prepare` runs before the agent starts (e.g. to create the socket directory).
    fn start(socket_rel: &str, prepare: impl FnOnce(&Path)) -> CtlAgent {
        let ns = Arc::new(Netns::new(&unique("ctl")).expect("create netns"));
        ns.ip(&[
            "link", "add", LAN_IF, "type", "veth", "peer", "name", "lan0p",
        ]);
        let tmp = TempDir::new("ctl");
        let socket = tmp.join(socket_rel);
        let log = tmp.join("agent.log");
        let state = tmp.join("state");
        prepare(tmp.path());
        let proc = ns.spawn_guarded(
            &[
                bin("netcontainer-agent").to_str().unwrap(),
                flag::SOCKET,
                socket.to_str().unwrap(),
                flag::STATE_DIR,
                state.to_str().unwrap(),
            ],
            &[("NETCONTAINER_LOG", "debug")],
            Some(&log),
        );
        let mut a = CtlAgent {
            proc: Some(proc),
            _ns: ns,
            tmp,
            socket,
            log,
        };
        let ok = wait_until(10 * S, Duration::from_millis(5), || {
            UnixStream::connect(&a.socket).is_ok() || !a.running()
        });
        assert!(
            ok && a.running(),
            "agent did not serve {}:\n{}",
            a.socket.display(),
            a.log()
        );
        a
    }

    fn running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.running())
    }

    /// The agent's resident set size (VmRSS), in KiB.
    fn rss_kib(&self) -> u64 {
        let pid = self.proc.as_ref().expect("agent running").pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn driver(&self, args: &[&str]) -> CmdOutput {
        let mut a: Vec<String> = vec!["agent".into()];
        a.extend(args.iter().map(|s| s.to_string()));
        a.push("--socket".into());
        a.push(self.socket.display().to_string());
        driver(self.tmp.path(), &a, 20 * S)
    }

    /// The status JSON through the driver (panics if the driver fails).
    fn status(&self) -> AgentStatus {
        let out = self.driver(&["status", "--json"]);
        assert!(out.ok(), "agent status failed: {out}");
        let v = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
        AgentStatus::parse(v).unwrap()
    }

    /// Apply a plan for `lan0` with one forward; returns the status right after.
    fn apply_plan(&self) -> AgentStatus {
        let out = self.driver(&[
            "apply",
            "--interface",
            LAN_IF,
            "--forward",
            "tcp:8080=198.51.100.2:80",
        ]);
        assert!(out.ok(), "agent apply failed: {out}\n{}", self.log());
        let st = self.status();
        assert_eq!(st.interface.as_deref(), Some(LAN_IF), "{:?}", st.raw);
        assert_eq!(st.forwards.len(), 1, "{:?}", st.raw);
        st
    }

    /// The agent still runs and answers a raw status request within 1 s.
    fn assert_alive(&mut self, after: &str) {
        assert!(self.running(), "agent died after {after}:\n{}", self.log());
        let took = raw_status(&self.socket)
            .unwrap_or_else(|e| panic!("no status after {after}: {e}\n{}", self.log()));
        assert!(took < S, "status took {took:?} after {after}");
    }
}

impl Drop for CtlAgent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- agent log (last 60 lines) ---\n{}",
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }
}

// ------------------------------------------------------------------------------------
// Raw protocol helpers.

/// A reply as seen by a raw client.
#[derive(Debug, PartialEq)]
enum Reply {
    /// A response frame: its variant index and, for `Error`, the message.
    Frame { variant: u8, error: Option<String> },
    /// End of stream (or reset) before any byte of a response.
    Closed,
}

fn connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
    s.set_read_timeout(Some(5 * S)).unwrap();
    s.set_write_timeout(Some(5 * S)).unwrap();
    s
}

fn closed_kind(k: ErrorKind) -> bool {
    matches!(
        k,
        ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::BrokenPipe
            | ErrorKind::ConnectionAborted
    )
}

/// Reads one response frame (or the end of the stream). A read timeout is an error.
fn read_reply(s: &mut UnixStream) -> std::io::Result<Reply> {
    let mut header = [0u8; 4];
    match s.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if closed_kind(e.kind()) => return Ok(Reply::Closed),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(header);
    assert!(
        (3..=MAX_FRAME_LEN).contains(&len),
        "agent sent a frame of {len} bytes"
    );
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload)?;
    assert_eq!(
        payload[..2],
        VERSION.to_be_bytes(),
        "agent's protocol version"
    );
    let variant = payload[2];
    let error = (variant == 3).then(|| decode_string(&payload[3..]));
    Ok(Reply::Frame { variant, error })
}

/// A bincode (varint) string: length (< 251 in one byte, 251 = u16 LE follows), bytes.
fn decode_string(b: &[u8]) -> String {
    let (len, rest) = match b[0] {
        n @ 0..=250 => (n as usize, &b[1..]),
        251 => (u16::from_le_bytes([b[1], b[2]]) as usize, &b[3..]),
        other => panic!("unexpected varint marker {other}"),
    };
    String::from_utf8_lossy(&rest[..len]).into_owned()
}

/// After an error response: the connection must be closed (EOF or reset), not kept.
fn assert_closed(s: &mut UnixStream, what: &str) {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => {}
        Ok(_) => panic!("{what}: more bytes after the error response"),
        Err(e) if closed_kind(e.kind()) => {}
        Err(e) => panic!("{what}: connection not closed after the error response: {e}"),
    }
}

/// One status request on a fresh connection; returns how long the answer took.
fn raw_status(path: &Path) -> Result<Duration, String> {
    let start = Instant::now();
    let mut s = UnixStream::connect(path).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(5 * S)).unwrap();
    s.write_all(&STATUS_REQ)
        .map_err(|e| format!("write: {e}"))?;
    match read_reply(&mut s).map_err(|e| format!("read: {e}"))? {
        Reply::Frame { variant: 0, .. } => Ok(start.elapsed()),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

/// Sends `bytes` (then half-closes if `shut`) and reads the reply; write errors after the
/// agent hung up are ignored (the reply, if any, is still readable).
fn send_bad(path: &Path, bytes: &[u8], shut: bool) -> Reply {
    let mut s = connect(path);
    let _ = s.write_all(bytes);
    if shut {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let r = read_reply(&mut s).unwrap_or_else(|e| panic!("no reply to {bytes:02x?}: {e}"));
    if r != Reply::Closed {
        assert_closed(&mut s, &format!("{bytes:02x?}"));
    }
    r
}

fn frame(version: u16, body: &[u8]) -> Vec<u8> {
    let mut f = ((body.len() + 2) as u32).to_be_bytes().to_vec();
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(body);
    f
}

// ------------------------------------------------------------------------------------

/// The agent creates a missing socket directory 0700 and the socket 0600 (only root can
/// even reach it; the peer check is the second line).
#[test]
fn socket_is_0600_in_a_0700_directory_it_creates() {
    require_root!();
    let mut a = CtlAgent::start("run/netcontainer/agent.sock", |_| {});
    let dir = a.socket.parent().unwrap().to_path_buf();
    let dmeta = std::fs::metadata(&dir).unwrap();
    assert!(dmeta.is_dir());
    assert_eq!(
        dmeta.permissions().mode() & 0o7777,
        0o700,
        "socket directory mode"
    );
    let smeta = std::fs::symlink_metadata(&a.socket).unwrap();
    assert!(smeta.file_type().is_socket(), "not a socket");
    assert_eq!(smeta.permissions().mode() & 0o7777, 0o600, "socket mode");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&smeta),
        0,
        "socket owned by root"
    );
    a.assert_alive("start");
}

/// A peer that is neither root nor the agent's uid is refused by SO_PEERCRED: the agent
/// closes the connection without answering and logs the refusal; root still gets status.
/// (The socket is made reachable for the test by chmod 0777; in production its 0600 mode
/// already keeps others out.)
#[test]
fn non_root_peer_is_refused_and_logged() {
    require_root!();
    if !have("setpriv") || !have("socat") {
        eprintln!("skipping: needs setpriv and socat");
        return;
    }
    let mut a = CtlAgent::start("open/agent.sock", |tmp| {
        let d = tmp.join("open");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        // nobody must be able to reach the directory.
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    });
    // An existing directory is left as it is.
    let dmode = std::fs::metadata(a.socket.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dmode & 0o7777, 0o777, "existing directory's mode changed");
    std::fs::set_permissions(&a.socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    // nobody must be able to walk to the socket (NETCONTAINER_TMP may point somewhere
    // private): otherwise its connect fails with EACCES and nothing is tested.
    if let Some(private) = a
        .socket
        .ancestors()
        .skip(2)
        .find(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 == 0))
    {
        eprintln!(
            "skipping: {} is not searchable by uid {NOBODY} (set NETCONTAINER_TMP elsewhere)",
            private.display()
        );
        return;
    }

    // Positive control: the same client as root gets a status frame.
    let root_out = socat_status(&a.socket, None);
    assert!(
        root_out.len() > 7 && root_out[4..6] == VERSION.to_be_bytes() && root_out[6] == 0,
        "root's socat got no status: {root_out:02x?}"
    );

    let out = socat_status(&a.socket, Some(NOBODY));
    assert!(
        out.is_empty(),
        "uid {NOBODY} got a reply: {:?}",
        String::from_utf8_lossy(&out)
    );
    let logged = wait_until(5 * S, Duration::from_millis(20), || {
        let log = a.log();
        log.lines()
            .any(|l| l.contains("refused a control connection") && l.contains("65534"))
    });
    assert!(logged, "refusal not logged:\n{}", a.log());
    a.assert_alive("a refused peer");
    assert_eq!(a.status().state, "waiting-for-plan");
}

/// `printf STATUS_REQ | socat - UNIX-CONNECT:path`, as `uid` (setpriv) if given; stdout.
fn socat_status(path: &Path, uid: Option<u32>) -> Vec<u8> {
    let addr = format!("UNIX-CONNECT:{}", path.display());
    let mut cmd = match uid {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args([
                format!("--reuid={u}"),
                format!("--regid={u}"),
                "--clear-groups".into(),
                "socat".into(),
            ]);
            c
        }
        None => Command::new("socat"),
    };
    cmd.args(["-t", "3", "-", &addr])
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn socat");
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(&STATUS_REQ);
    drop(stdin);
    let mut stdout = child.stdout.take().unwrap();
    let mut g = ProcGuard::new(child, "socat");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let st = g.wait_timeout(10 * S);
    if st.is_none() {
        g.kill();
    }
    reader.join().unwrap()
}

/// `Request::Counters` (variant 4, added after the first release) answers
/// `Response::Counters` (variant 4) with three varints: renewals, NAKs, rebinds (0 for an
/// agent that never had a lease), `Problems` an empty list. A request an agent does not
/// know (variant 7 here, past `Subscribe`, as `Counters` is to an older agent) gets an `Error` and a closed connection, and the
/// agent goes on: what lets a newer driver ask older routers and do without.
#[test]
fn counters_and_problems_requests_and_an_unknown_request() {
    require_root!();
    let mut a = CtlAgent::start("agent.sock", |_| {});
    let mut s = connect(&a.socket);
    s.write_all(&frame(service::PROTOCOL_VERSION, &[4]))
        .unwrap();
    let mut header = [0u8; 4];
    s.read_exact(&mut header).unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(header) as usize];
    s.read_exact(&mut payload).unwrap();
    let mut want = service::PROTOCOL_VERSION.to_be_bytes().to_vec();
    want.extend_from_slice(&[4, 0, 0, 0, 0, 0]);
    assert_eq!(payload, want, "Counters {{ 0, 0, 0, 0, 0 }}");
    // Still the same connection: a status next.
    s.write_all(&STATUS_REQ).unwrap();
    assert!(matches!(
        read_reply(&mut s).unwrap(),
        Reply::Frame { variant: 0, .. }
    ));
    // Problems: none standing before a plan (an empty list).
    s.write_all(&frame(service::PROTOCOL_VERSION, &[5]))
        .unwrap();
    s.read_exact(&mut header).unwrap();
    let mut payload = vec![0u8; u32::from_be_bytes(header) as usize];
    s.read_exact(&mut payload).unwrap();
    let mut want = service::PROTOCOL_VERSION.to_be_bytes().to_vec();
    want.extend_from_slice(&[5, 0]);
    assert_eq!(payload, want, "Problems []");
    match send_bad(&a.socket, &frame(service::PROTOCOL_VERSION, &[7]), false) {
        Reply::Frame {
            variant: 3,
            error: Some(e),
        } => assert!(e.contains("bad request"), "{e}"),
        other => panic!("expected an Error response, got {other:?}"),
    }
    a.assert_alive("an unknown request");
    assert!(raw_status(&a.socket).is_ok());
}

/// Oversized, too short, garbage, trailing bytes, wrong version, truncated: each gets an
/// `Error` response and a closed connection (truncated: just the close), never a crash;
/// the agent still answers and the plan applied before is untouched.
#[test]
fn malformed_frames_are_refused_and_change_nothing() {
    require_root!();
    let mut a = CtlAgent::start("agent.sock", |_| {});
    let before = a.apply_plan();
    let sock = a.socket.clone();

    let error = |bytes: &[u8], shut: bool, needle: &str| match send_bad(&sock, bytes, shut) {
        Reply::Frame {
            variant: 3,
            error: Some(e),
        } => assert!(
            e.contains(needle),
            "{bytes:02x?}: error {e:?} lacks {needle:?}"
        ),
        other => panic!("{bytes:02x?}: expected an Error response, got {other:?}"),
    };

    // Oversized length prefixes: refused from the header alone, before any allocation.
    let mut huge = u32::MAX.to_be_bytes().to_vec();
    huge.extend_from_slice(&[0xab; 64]);
    error(&huge, false, "exceeds the limit");
    a.assert_alive("a 4 GiB length prefix");
    let mut over = (MAX_FRAME_LEN + 1).to_be_bytes().to_vec();
    over.extend_from_slice(&[0, 3, 0]);
    error(&over, false, "exceeds the limit");
    a.assert_alive("a MAX_FRAME_LEN + 1 length prefix");

    // Lengths that cannot hold a version.
    error(&[0, 0, 0, 0], false, "too short");
    error(&[0, 0, 0, 1, 0], false, "too short");

    // Wrong protocol version (a Status body otherwise).
    error(&frame(7, &[0]), false, "version 7");
    error(&frame(0, &[0]), false, "version 0");
    a.assert_alive("wrong versions");

    // Garbage bodies: unknown variant, truncated plan, huge claimed string, trailing byte.
    error(
        &frame(service::PROTOCOL_VERSION, &[200]),
        false,
        "malformed",
    );
    error(
        &frame(service::PROTOCOL_VERSION, &[1, 250, b'x']),
        false,
        "malformed",
    );
    error(
        &frame(
            service::PROTOCOL_VERSION,
            &[1, 253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        ),
        false,
        "malformed",
    );
    error(
        &frame(service::PROTOCOL_VERSION, &[0, 0]),
        false,
        "trailing",
    );
    error(&frame(service::PROTOCOL_VERSION, &[]), false, "malformed");
    error(&frame(VERSION, &[200]), false, "malformed");
    error(&frame(VERSION, &[1, 250, b'x']), false, "malformed");
    error(
        &frame(
            VERSION,
            &[1, 253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        ),
        false,
        "malformed",
    );
    error(&frame(VERSION, &[0, 0]), false, "trailing");
    error(&frame(VERSION, &[]), false, "malformed");
    let mut seed = 0x9e37_79b9_u32;
    let mut noise = Vec::new();
    for _ in 0..200 {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        noise.push(seed as u8);
    }
    // Variant 0xfe is no request; the rest is noise.
    noise[0] = 0xfe;
    error(
        &frame(service::PROTOCOL_VERSION, &noise),
        false,
        "malformed",
    );
    error(&frame(VERSION, &noise), false, "malformed");
    a.assert_alive("garbage payloads");

    // Truncated frames, then the client hangs up: the agent closes, no response needed.
    for bytes in [
        &[0u8][..],
        &[0, 0, 0][..],
        &[0, 0, 0, 100][..],
        &[0, 0, 0, 100, 0, 3, 1, 2, 3][..],
    ] {
        match send_bad(&sock, bytes, true) {
            Reply::Closed | Reply::Frame { variant: 3, .. } => {}
            other => panic!("{bytes:02x?} then EOF: got {other:?}"),
        }
    }
    // Connecting and hanging up at once.
    drop(UnixStream::connect(&sock).unwrap());
    a.assert_alive("truncated frames");

    // A good request after a bad one on the same connection is not served: the stream is
    // out of sync, the agent closed it.
    let mut s = connect(&sock);
    let mut both = frame(9, &[0]);
    both.extend_from_slice(&STATUS_REQ);
    s.write_all(&both).unwrap();
    match read_reply(&mut s).unwrap() {
        Reply::Frame { variant: 3, .. } => {}
        other => panic!("expected an Error response, got {other:?}"),
    }
    assert_closed(&mut s, "bad frame followed by a good one");

    // Several good requests on one connection still work (pipelined).
    let mut s = connect(&sock);
    s.write_all(&[STATUS_REQ, STATUS_REQ, STATUS_REQ].concat())
        .unwrap();
    for _ in 0..3 {
        assert!(matches!(
            read_reply(&mut s).unwrap(),
            Reply::Frame { variant: 0, .. }
        ));
    }
    drop(s);

    a.assert_alive("all malformed frames");
    let after = a.status();
    assert_eq!(after.interface, before.interface, "{:?}", after.raw);
    assert_eq!(after.forwards.len(), 1, "{:?}", after.raw);
    assert_eq!(
        after.forwards[0]["public_port"], before.forwards[0]["public_port"],
        "{:?}",
        after.raw
    );
    assert_eq!(
        after.forwards[0]["target_address"], before.forwards[0]["target_address"],
        "{:?}",
        after.raw
    );
}

/// Clients that connect and send nothing, or start a frame and stall, do not hold up
/// anyone else: status on other connections answers within 1 s meanwhile. A started frame
/// that is not finished within the frame timeout (10 s) is dropped; an idle connection is
/// kept (idle timeout 300 s).
#[test]
fn stalled_clients_do_not_block_others_and_are_dropped() {
    require_root!();
    let mut a = CtlAgent::start("agent.sock", |_| {});
    let sock = a.socket.clone();
    let t0 = Instant::now();
    let mut idle = connect(&sock);
    let mut half_header = connect(&sock);
    half_header.write_all(&[0, 0]).unwrap();
    let mut half_payload = connect(&sock);
    half_payload.write_all(&[0, 0, 0, 100, 0, 3, 1]).unwrap();
    // A big announced frame, a little sent: the agent must not wait for it either.
    let mut big = connect(&sock);
    big.write_all(&(MAX_FRAME_LEN).to_be_bytes()).unwrap();
    big.write_all(&[0, 3, 1, 4]).unwrap();

    for i in 0..10 {
        let took = raw_status(&sock).unwrap_or_else(|e| panic!("status {i}: {e}"));
        assert!(took < S, "status {i} took {took:?} while clients stall");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(a.running());

    // The stallers with a started frame are dropped after the frame timeout.
    for (name, s) in [
        ("half header", &mut half_header),
        ("half payload", &mut half_payload),
        ("big frame", &mut big),
    ] {
        s.set_read_timeout(Some((FRAME_TIMEOUT + 5 * S).saturating_sub(t0.elapsed())))
            .unwrap();
        let mut b = [0u8; 1];
        let r = s.read(&mut b);
        let at = t0.elapsed();
        match r {
            Ok(0) => {}
            Err(e) if closed_kind(e.kind()) => {}
            other => panic!("{name}: not dropped by {at:?}: {other:?}"),
        }
        assert!(
            at >= FRAME_TIMEOUT - S && at <= FRAME_TIMEOUT + 4 * S,
            "{name}: dropped after {at:?}, frame timeout {FRAME_TIMEOUT:?}"
        );
    }
    // The idle one is still open (no byte sent: idle timeout, not frame timeout), and
    // still served.
    idle.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut b = [0u8; 1];
    match idle.read(&mut b) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("idle connection: {other:?}"),
    }
    idle.set_read_timeout(Some(5 * S)).unwrap();
    idle.write_all(&STATUS_REQ).unwrap();
    assert!(matches!(
        read_reply(&mut idle).unwrap(),
        Reply::Frame { variant: 0, .. }
    ));
    a.assert_alive("stalled clients");
}

/// 200 connections at once, half of them stalling mid-frame, half asking for status at
/// the same time: all status requests are answered, nothing crashes, and the agent
/// answers normally once they are gone.
#[test]
fn many_connections_at_once() {
    require_root!();
    const N: usize = 200;
    let mut a = CtlAgent::start("agent.sock", |_| {});
    let sock = a.socket.clone();
    let mut stallers = Vec::new();
    for i in 0..N / 2 {
        let mut s = connect(&sock);
        if i % 2 == 0 {
            s.write_all(&[0, 0, 0, 50, 0, 3]).unwrap();
        }
        stallers.push(s);
    }
    let start = Instant::now();
    let askers: Vec<_> = (0..N / 2)
        .map(|_| {
            let sock = sock.clone();
            std::thread::spawn(move || raw_status(&sock))
        })
        .collect();
    let mut failures = Vec::new();
    for h in askers {
        if let Err(e) = h.join().unwrap() {
            failures.push(e);
        }
    }
    let took = start.elapsed();
    assert!(
        failures.is_empty(),
        "{} status failures: {failures:?}",
        failures.len()
    );
    assert!(
        took < 10 * S,
        "{} concurrent status requests took {took:?}",
        N / 2
    );
    a.assert_alive("200 connections");
    drop(stallers);
    a.assert_alive("200 connections closed");
    assert!(a.running());
}

/// Announcing a big frame costs the client 6 bytes; it must not cost the agent the
/// announced size in memory. 8 rounds of 200 connections that each announce
/// MAX_FRAME_LEN and stall, then hang up (all but a few). Before the fix (the payload buffer was
/// allocated at the announced length up front), glibc kept the buffers resident and the
/// heap never shrank: the agent's RSS grew by about 500 MiB and stayed there.
#[test]
fn announced_frame_sizes_do_not_cost_memory() {
    require_root!();
    const ROUNDS: usize = 8;
    const N: usize = 200;
    let mut a = CtlAgent::start("agent.sock", |_| {});
    let sock = a.socket.clone();
    let before = a.rss_kib();
    let mut peak = before;
    // The last few connections of each round stay open to the end: like any long-lived
    // allocation they pin the top of the heap, so freed buffers are reused, not trimmed.
    let mut pinned = Vec::new();
    for _ in 0..ROUNDS {
        let mut conns = Vec::new();
        for _ in 0..N {
            let mut s = connect(&sock);
            s.write_all(&MAX_FRAME_LEN.to_be_bytes()).unwrap();
            s.write_all(&service::PROTOCOL_VERSION.to_be_bytes())
                .unwrap();
            s.write_all(&[0, 2]).unwrap();
            conns.push(s);
        }
        // Let the agent read every header (a status answer comes after them).
        std::thread::sleep(Duration::from_millis(300));
        assert!(a.running(), "agent died:\n{}", a.log());
        peak = peak.max(a.rss_kib());
        pinned.extend(conns.drain(N - 5..));
        drop(conns);
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(pinned);
    std::thread::sleep(Duration::from_millis(200));
    let after = a.rss_kib();
    eprintln!("agent RSS: {before} KiB before, peak {peak} KiB, {after} KiB after");
    assert!(
        peak < before + 64 * 1024,
        "{ROUNDS}x{N} stalled frames announcing {MAX_FRAME_LEN} bytes grew the agent from {before} KiB to {peak} KiB"
    );
    a.assert_alive("stalled big frames closed");
}

// ------------------------------------------------------------------------------------
// The router sysctls (proto's contract::ROUTER_SYSCTLS), set by the agent itself.

/// `sysctl -n NAME` in `ns`.
fn sysctl(ns: &Netns, name: &str) -> String {
    ns.exec_ok(&["sysctl", "-n", name]).trim().to_string()
}

/// The router's sysctls, as the contract spells them (checked from outside).
const ROUTER_SYSCTLS: [(&str, &str); 3] = [
    ("net.ipv4.ip_forward", "1"),
    ("net.ipv4.conf.all.rp_filter", "2"),
    ("net.ipv4.conf.default.rp_filter", "2"),
];

/// The README's "agent alone" recipe: nothing set beforehand, the agent turns on
/// forwarding and loose reverse-path filtering in its own namespace.
#[test]
fn agent_alone_turns_on_forwarding_in_its_namespace() {
    require_root!();
    // A new namespace inherits the host's IPv4 settings: turn them off first, so what
    // follows is the agent's doing.
    let ns = Netns::new(&unique("ctlsys")).expect("create netns");
    for (name, _) in ROUTER_SYSCTLS {
        ns.exec_ok(&["sysctl", "-q", "-w", &format!("{name}=0")]);
    }
    let tmp = TempDir::new("ctlsys");
    let socket = tmp.join("agent.sock");
    let log = tmp.join("agent.log");
    let mut proc = ns.spawn_guarded(
        &[
            bin("netcontainer-agent").to_str().unwrap(),
            flag::SOCKET,
            socket.to_str().unwrap(),
            flag::STATE_DIR,
            tmp.join("state").to_str().unwrap(),
        ],
        &[],
        Some(&log),
    );
    let ok = wait_until(10 * S, Duration::from_millis(5), || {
        UnixStream::connect(&socket).is_ok() || !proc.running()
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(ok && proc.running(), "agent did not serve:\n{text}");
    for (name, want) in ROUTER_SYSCTLS {
        assert_eq!(sysctl(&ns, name), want, "{name}\n{text}");
    }
}

/// Runs the agent in a fresh namespace whose `/proc/sys` is read-only (as in a Docker
/// container without `--sysctl`), after `setup` (a shell snippet run before the
/// read-only remount); SIGTERM after 3 s. Returns (exit code, output, socket existed).
fn agent_with_read_only_proc_sys(setup: &str) -> (Option<i32>, String, bool) {
    let ns = Netns::new(&unique("ctlro")).expect("create netns");
    let tmp = TempDir::new("ctlro");
    let socket = tmp.join("agent.sock");
    // `ip netns exec` gives the shell its own mount namespace: the remount stays there.
    let script = format!(
        "{setup} mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys \\
         && exec timeout 3 {} --socket {} --state-dir {}",
        bin("netcontainer-agent").display(),
        socket.display(),
        tmp.join("state").display()
    );
    let out = ns.exec(&["sh", "-c", &script]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let served = socket.exists() || text.contains("waiting for a plan");
    (out.status.code(), text, served)
}

/// Read-only `/proc/sys` with forwarding off: the agent stops at once with one error line
/// naming the sysctl and the fix, instead of running a router that does not forward.
#[test]
fn agent_fails_clearly_when_it_cannot_turn_on_forwarding() {
    require_root!();
    let (code, text, served) =
        agent_with_read_only_proc_sys("sysctl -q -w net.ipv4.ip_forward=0 &&");
    assert_eq!(code, Some(1), "{text}");
    assert!(!served, "agent served without forwarding:\n{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{text}"));
    assert!(
        line.starts_with("error: cannot set net.ipv4.ip_forward=1 (it is 0): "),
        "{line}"
    );
    assert!(
        line.contains("NET_ADMIN in its own network namespace") && line.contains("--sysctl"),
        "{line}"
    );
}

/// Read-only `/proc/sys` whose values are already right (Docker with `--sysctl`): the
/// agent accepts them and serves.
#[test]
fn agent_accepts_read_only_proc_sys_that_is_already_right() {
    require_root!();
    // The IPv6 ones too: this kernel has IPv6 (contract::ROUTER_SYSCTLS6).
    let setup: String = ROUTER_SYSCTLS
        .iter()
        .chain(&[
            ("net.ipv6.conf.default.accept_ra", "0"),
            ("net.ipv6.conf.default.autoconf", "0"),
            ("net.ipv6.conf.default.ndisc_notify", "1"),
        ])
        .map(|(n, v)| format!("sysctl -q -w {n}={v} && "))
        .collect();
    let (code, text, served) = agent_with_read_only_proc_sys(&setup);
    assert_eq!(code, Some(124), "agent did not run until SIGTERM:\n{text}");
    assert!(served, "{text}");
    assert!(!text.contains("cannot set"), "{text}");
}
