//! Real mDNS (RFC 6762) / DNS-SD (RFC 6763) clients in a LAN client namespace, to judge the
//! router's responder by what real clients see (issue 24).
//!
//! * [`Avahi`]: Debian's `avahi-daemon` serving only the namespace's `eth0`, on a private
//!   D-Bus system bus (its own `dbus-daemon`, socket in the test's directory) and with a
//!   private `/run` (avahi's pid file and socket path are compiled in, so the daemon runs
//!   under `unshare -m` with the directory bind-mounted over `/run`, and empty ones over
//!   `/etc/avahi/services` and `/etc/avahi/hosts`): several tests, and the machine's own
//!   avahi if any, never meet, and nothing of the machine's is published. The command-line clients (`avahi-browse`,
//!   `avahi-resolve`, `avahi-publish`) talk to it over that bus.
//! * [`zeroconf_browse`] / [`zeroconf_resolve`]: python's zeroconf (Debian's
//!   python3-zeroconf under /usr/bin/python3, script `tests/py/zc.py`), bound to the
//!   namespace's eth0 address.
//! * [`dig_legacy`]: `dig -p 5353` to a responder's unicast address, and [`legacy_query`]:
//!   a one-shot ("legacy unicast", RFC 6762 section 6.7) query to 224.0.0.251:5353 from an
//!   ephemeral port, with every reply and its source kept. dig itself cannot do the
//!   multicast one: it drops the (correct) unicast reply as coming from an unexpected
//!   source and times out.
//!
//! What the clients do, measured here (avahi 0.8, python3-zeroconf 0.47, bind 9.18):
//! * avahi caches every announcement it hears: a name or service announced a moment ago
//!   resolves in ~20 ms without a query; a removal (goodbye, TTL 0) shows as a `-` line
//!   about 1 s later (RFC 6762 section 10.1); without a goodbye, at TTL expiry (not measured).
//! * `avahi-browse -t` ends at avahi's "all for now", ~1 s; the first one on a daemon
//!   started a moment ago lists nothing (hence the repeat in [`Avahi::browse`]).
//! * avahi needs no AAAA to resolve a service (`-r` gives the A address on the IPv6 line
//!   too), and `avahi-resolve -n` without `-4`/`-6` returns the first address found
//!   (~150 ms cold), not both. `-6` for a host without AAAA waits avahi's full 5 s even
//!   when the responder answers with an NSEC (avahi ignores NSEC); avahi itself sends none.
//! * python-zeroconf as a responder answers legacy queries with full TTLs (4500, 120: RFC
//!   6762 section 6.7 caps them at 10) and a compressed NSEC next-name that dig refuses
//!   (FORMERR); avahi caps at 10 and sends no NSEC.
//!
//! Multicast stays on the namespace's `eth0` (avahi's allow-interfaces, zeroconf's
//! interfaces, IP_MULTICAST_IF for the legacy query). All files live in the caller's
//! directory; the daemons are killed by pid on drop.

use crate::netns::Netns;
use crate::proc::ProcGuard;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The mDNS group and port.
pub const MDNS_V4: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 251), 5353);

/// The zeroconf client script, run with `python3 -c` (no path to find at run time).
const ZC_PY: &str = include_str!("../py/zc.py");

/// Debian's python, which has python3-zeroconf (the `python3` on PATH may be another one).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// How an [`Avahi`] daemon is set up.
#[derive(Clone, Debug, Default)]
pub struct AvahiOpts {
    /// Publish the host's own A/AAAA records (needed by a publisher whose services must
    /// resolve to an address; a pure browser keeps the LAN free of its records).
    pub publish_addresses: bool,
    /// The host name (without `.local`); default: derived from the namespace's name, so two
    /// daemons on one LAN never collide (they share the machine's UTS hostname).
    pub host_name: Option<String>,
}

/// A private avahi-daemon (and its private D-Bus) in one namespace.
pub struct Avahi {
    ns: Arc<Netns>,
    dir: PathBuf,
    bus: String,
    host_name: String,
    log: PathBuf,
    // Drop order: the daemon first, then its bus.
    daemon: ProcGuard,
    dbus: ProcGuard,
}

/// One resolved service from `avahi-browse -rp` (an `=` line), names unescaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Browsed {
    pub interface: String,
    /// "IPv4" or "IPv6": the protocol the service was seen on (not the address family).
    pub protocol: String,
    pub name: String,
    pub service_type: String,
    pub domain: String,
    pub host: String,
    pub address: Option<IpAddr>,
    pub port: u16,
    /// TXT strings, unquoted, in avahi's order.
    pub txt: Vec<String>,
}

/// An instance as `+` (new) / `-` (removed) lines name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub interface: String,
    pub protocol: String,
    pub name: String,
    pub service_type: String,
    pub domain: String,
}

/// One line of `avahi-browse -rp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrowseEvent {
    Added(Seen),
    Removed(Seen),
    Resolved(Browsed),
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn seq() -> u32 {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

impl Avahi {
    /// A browsing-only daemon (no host records of its own) on `ns`'s eth0.
    pub fn start(ns: &Arc<Netns>, dir: &Path) -> Avahi {
        Avahi::start_with(ns, dir, AvahiOpts::default())
    }

    /// Start dbus-daemon and avahi-daemon; returns once avahi reports "Server startup
    /// complete" (at most 10 s, else panics with both logs).
    pub fn start_with(ns: &Arc<Netns>, dir: &Path, opts: AvahiOpts) -> Avahi {
        let dir = dir.join(format!("avahi{}", seq()));
        let run = dir.join("run");
        std::fs::create_dir_all(run.join("avahi-daemon")).expect("mkdir avahi run dir");
        let dir_s = dir.to_str().expect("utf-8 dir").to_string();
        // The path goes into a `sh -c` line below.
        assert!(!dir_s.contains('\''), "quote in {dir_s}");
        let sock = dir.join("bus.sock");
        let bus = format!("unix:path={}", sock.display());
        let bus_conf = dir.join("bus.conf");
        std::fs::write(&bus_conf, bus_config(&sock)).expect("write bus.conf");
        let dbus_log = dir.join("dbus.log");
        let dbus = ns.spawn_guarded(
            &[
                "dbus-daemon",
                &format!("--config-file={}", bus_conf.display()),
                "--nofork",
                "--nopidfile",
            ],
            &[],
            Some(&dbus_log),
        );
        let up = crate::wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
            sock.exists()
        });
        assert!(
            up,
            "dbus-daemon did not make {}: {}",
            sock.display(),
            crate::tail(&dbus_log, 20)
        );

        let host_name = opts
            .host_name
            .clone()
            .unwrap_or_else(|| format!("h{}", ns.name()));
        let conf = dir.join("avahi-daemon.conf");
        std::fs::write(&conf, daemon_config(&host_name, opts.publish_addresses))
            .expect("write avahi-daemon.conf");
        let log = dir.join("avahi.log");
        // A private mount namespace (not the one `ip netns exec` makes, which is an
        // implementation detail of ip) with our directory over /run: avahi's
        // /run/avahi-daemon/{pid,socket} are compiled in and a second daemon would refuse
        // to start next to a live pid file. `exec` keeps the pid = the guard's pid.
        // Empty static services and hosts too: the machine's /etc/avahi/services/*.service
        // and /etc/avahi/hosts would otherwise be published on the test's LAN.
        let services = dir.join("services");
        std::fs::create_dir_all(&services).expect("mkdir services");
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, "").expect("write hosts");
        let line = format!(
            "mount --bind '{run}' /run && mount --bind '{services}' /etc/avahi/services && \
             mount --bind '{hosts}' /etc/avahi/hosts && exec avahi-daemon -f '{conf}' \
             --no-drop-root --no-chroot --no-rlimits --no-proc-title",
            run = run.display(),
            services = services.display(),
            hosts = hosts.display(),
            conf = conf.display()
        );
        let daemon = ns.spawn_guarded(
            &[
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                &line,
            ],
            &[("DBUS_SYSTEM_BUS_ADDRESS", &bus)],
            Some(&log),
        );
        let mut av = Avahi {
            ns: ns.clone(),
            dir,
            bus,
            host_name,
            log,
            daemon,
            dbus,
        };
        let ready = crate::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            av.log().contains("Server startup complete") || !av.daemon.running()
        });
        if !ready || !av.daemon.running() {
            panic!(
                "avahi-daemon in {} did not start ({:?}):\n{}\n--- dbus-daemon:\n{}",
                av.ns.name(),
                av.daemon.try_status(),
                av.log(),
                crate::tail(&dbus_log, 20)
            );
        }
        av
    }

    /// The daemon's host name, with `.local`.
    pub fn host_name(&self) -> String {
        format!("{}.local", self.host_name)
    }

    /// The daemon's log (stderr/stdout) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `DBUS_SYSTEM_BUS_ADDRESS` of the private bus.
    pub fn bus_address(&self) -> &str {
        &self.bus
    }

    /// A client command in the namespace, on the private bus.
    pub fn client(&self, args: &[&str]) -> Command {
        let mut c = self.ns.command(args);
        c.env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus);
        c
    }

    /// `avahi-browse -rptk TYPE` (resolve, parsable, terminate after avahi's "all for now",
    /// raw type names): the resolved instances, from the first run that resolved any.
    ///
    /// Repeated until then or `timeout` (each run takes about 1 s, avahi's "all for now"):
    /// the first browse on a daemon started a moment ago ends empty even when the service
    /// answers (seen with avahi 0.8), the next one lists it.
    pub fn browse(&self, service_type: &str, timeout: Duration) -> Vec<Browsed> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let out = run_bounded(
                &mut self.client(&["avahi-browse", "-rptk", service_type]),
                left,
            );
            let found: Vec<Browsed> = parse_browse(&out.stdout)
                .into_iter()
                .filter_map(|e| match e {
                    BrowseEvent::Resolved(b) => Some(b),
                    _ => None,
                })
                .collect();
            if !found.is_empty() || Instant::now() >= deadline {
                return found;
            }
            // A run that failed at once (bus gone, say) must not spin.
            if out.elapsed < Duration::from_millis(100) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// `avahi-resolve -4 -n NAME`: the A record avahi finds (or has cached).
    pub fn resolve_host(&self, name: &str, timeout: Duration) -> Option<IpAddr> {
        self.resolve_with("-4", name, timeout)
    }

    /// `avahi-resolve -6 -n NAME`: the AAAA record.
    pub fn resolve_host6(&self, name: &str, timeout: Duration) -> Option<IpAddr> {
        self.resolve_with("-6", name, timeout)
    }

    fn resolve_with(&self, family: &str, name: &str, timeout: Duration) -> Option<IpAddr> {
        let out = run_bounded(
            &mut self.client(&["avahi-resolve", family, "-n", name]),
            timeout,
        );
        parse_resolve(&out.stdout)
    }

    /// `avahi-publish -a -R NAME ADDR` (no reverse record): a LAN host that owns `name`.
    /// Killed on drop (avahi then sends goodbyes).
    pub fn publish_address(&self, name: &str, addr: Ipv4Addr) -> PublishGuard {
        self.publish(&["-a", "-R", name, &addr.to_string()])
    }

    /// `avahi-publish -s NAME TYPE PORT TXT...`: a service on this daemon's host name.
    pub fn publish_service(
        &self,
        name: &str,
        service_type: &str,
        port: u16,
        txt: &[&str],
    ) -> PublishGuard {
        let port = port.to_string();
        let mut args = vec!["-s", name, service_type, &port];
        args.extend_from_slice(txt);
        self.publish(&args)
    }

    /// `avahi-publish ARGS...` as given (e.g. `-s -H other.local NAME TYPE PORT`).
    pub fn publish(&self, args: &[&str]) -> PublishGuard {
        let log = self.dir.join(format!("publish{}.log", seq()));
        let mut a = vec!["stdbuf", "-oL", "avahi-publish"];
        a.extend_from_slice(args);
        let proc = self
            .ns
            .spawn_guarded(&a, &[("DBUS_SYSTEM_BUS_ADDRESS", &self.bus)], Some(&log));
        PublishGuard { proc, log }
    }

    /// A long-running `avahi-browse -rpk TYPE`, its lines read with [`BrowseWatch::events`]
    /// (to see `-` lines after goodbyes or expiry). Killed on drop.
    pub fn watch_browse(&self, service_type: &str) -> BrowseWatch {
        let out = self.dir.join(format!("watch{}.log", seq()));
        // Line-buffered: the lines go to a file, read while it runs.
        let proc = self.ns.spawn_guarded(
            &["stdbuf", "-oL", "avahi-browse", "-rpk", service_type],
            &[("DBUS_SYSTEM_BUS_ADDRESS", &self.bus)],
            Some(&out),
        );
        BrowseWatch { proc, out }
    }
}

impl Drop for Avahi {
    fn drop(&mut self) {
        // SIGTERM first so avahi says goodbye (TTL 0) like a real host leaving, then kill.
        self.daemon.terminate(Duration::from_secs(2));
        self.dbus.kill();
    }
}

/// A running `avahi-publish`, killed on drop.
pub struct PublishGuard {
    proc: ProcGuard,
    log: PathBuf,
}

impl PublishGuard {
    /// Its output so far ("Established under name '...'", or the failure).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until avahi reports the record set established (probing done, about 1 s after
    /// start). Err with the output if it failed, exited or took longer than `timeout`.
    pub fn established(&mut self, timeout: Duration) -> Result<(), String> {
        let ok = crate::wait_until(timeout, Duration::from_millis(20), || {
            let l = self.log();
            l.contains("Established") || l.contains("Failed") || !self.proc.running()
        });
        let l = self.log();
        if ok && l.contains("Established") {
            Ok(())
        } else {
            Err(format!("avahi-publish: {}", l.trim()))
        }
    }

    /// Still running (avahi-publish exits on a name collision it cannot resolve)?
    pub fn running(&mut self) -> bool {
        self.proc.running()
    }

    /// Stop it (SIGTERM: avahi-publish withdraws, the daemon sends goodbyes).
    pub fn stop(&mut self) {
        self.proc.terminate(Duration::from_secs(2));
    }
}

/// A running `avahi-browse -rpk`, killed on drop.
pub struct BrowseWatch {
    proc: ProcGuard,
    out: PathBuf,
}

impl BrowseWatch {
    /// Every line so far, parsed.
    pub fn events(&self) -> Vec<BrowseEvent> {
        parse_browse(&std::fs::read_to_string(&self.out).unwrap_or_default())
    }

    /// Raw output so far (for diagnostics).
    pub fn raw(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Wait up to `timeout` for an event matching `pred`; returns it and the time waited.
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&BrowseEvent) -> bool,
    ) -> Option<(BrowseEvent, Duration)> {
        let t0 = Instant::now();
        crate::wait_for(timeout, Duration::from_millis(20), || {
            self.events().into_iter().find(|e| pred(e))
        })
        .map(|e| (e, t0.elapsed()))
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        self.proc.running()
    }
}

/// A service as python's zeroconf resolved it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZcService {
    pub addresses: Vec<IpAddr>,
    pub port: u16,
    /// key -> value (None for a boolean attribute without `=`).
    pub txt: Vec<(String, Option<String>)>,
    /// SRV target, with a trailing dot (`web1.local.`).
    pub server: String,
}

/// The first IPv4 address on `ns`'s eth0 (what zeroconf binds to).
fn eth0_v4(ns: &Netns) -> Ipv4Addr {
    crate::addr_on(ns, "eth0")
        .first()
        .unwrap_or_else(|| panic!("no IPv4 address on eth0 in {}", ns.name()))
        .0
}

fn zeroconf(ns: &Netns, args: &[&str], timeout: Duration) -> serde_json::Value {
    let addr = eth0_v4(ns).to_string();
    let mut a = vec![SYSTEM_PYTHON, "-c", ZC_PY, args[0], &addr];
    a.extend_from_slice(&args[1..]);
    // The script's own timeout plus python's start-up (about 0.3 s).
    let out = run_bounded(&mut ns.command(&a), timeout + Duration::from_secs(5));
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "zeroconf {args:?} in {}: no JSON ({e}; {:?}): {}{}",
            ns.name(),
            out.status,
            out.stdout,
            out.stderr
        )
    })
}

/// python-zeroconf `get_service_info(TYPE, INSTANCE.TYPE)` (TYPE like `_http._tcp`), bound
/// to eth0's IPv4 address (so it speaks IPv4 mDNS only; AAAA records still count when
/// they come). None if not resolved within `timeout` (SRV, TXT and an address needed).
pub fn zeroconf_resolve(
    ns: &Netns,
    service_type: &str,
    instance: &str,
    timeout: Duration,
) -> Option<ZcService> {
    let ms = timeout.as_millis().to_string();
    let v = zeroconf(ns, &["resolve", service_type, instance, &ms], timeout);
    if v.is_null() {
        return None;
    }
    let addresses = v["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str()?.parse().ok())
        .collect();
    let txt = v["txt"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string)))
        .collect();
    Some(ZcService {
        addresses,
        port: v["port"].as_u64().unwrap_or(0) as u16,
        txt,
        server: v["server"].as_str().unwrap_or_default().to_string(),
    })
}

/// python-zeroconf `ServiceBrowser` for `timeout`: the full instance names it saw added
/// (`web1._http._tcp.local.`).
pub fn zeroconf_browse(ns: &Netns, service_type: &str, timeout: Duration) -> Vec<String> {
    let ms = timeout.as_millis().to_string();
    let v = zeroconf(ns, &["browse", service_type, &ms], timeout);
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect()
}

/// `dig @SERVER -p 5353 +short NAME TYPE` from `ns`: a unicast query from an ephemeral
/// port to a responder's own address (RFC 6762 sections 5.5 and 6.7: it must answer by
/// unicast to that port). One try, 2 s. Ok(the answers' text, one per line); Err(dig's
/// whole output) when dig complains (`;;` lines: no answer in time, or a reply it cannot
/// parse, such as a compressed name inside NSEC data, which dig refuses and hex-dumps).
///
/// Not to 224.0.0.251: dig accepts replies only from the address it asked, and the
/// responder's unicast answer comes from its own address, so dig times out.
pub fn dig_legacy(
    ns: &Netns,
    server: IpAddr,
    name: &str,
    rrtype: &str,
) -> Result<Vec<String>, String> {
    let at = format!("@{server}");
    let out = run_bounded(
        &mut ns.command(&[
            "dig",
            &at,
            "-p",
            "5353",
            "+short",
            "+tries=1",
            "+timeout=2",
            name,
            rrtype,
        ]),
        Duration::from_secs(5),
    );
    let complained = out.stdout.lines().any(|l| l.starts_with(";;"));
    if complained || !out.status.is_some_and(|s| s.success()) {
        return Err(format!(
            "dig {at} -p 5353 {name} {rrtype} ({:?}): {}{}",
            out.status, out.stdout, out.stderr
        ));
    }
    Ok(out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// One reply to a [`legacy_query`].
#[derive(Clone, Debug)]
pub struct LegacyReply {
    pub from: SocketAddr,
    /// The reply carries the query's id (RFC 6762 section 6.7 requires it).
    pub id_matches: bool,
    /// The question was repeated in the reply (also required there).
    pub question_repeated: bool,
    /// Answer records: (name, type, ttl, rdata as text).
    pub answers: Vec<(String, String, u32, String)>,
}

/// A legacy unicast query (RFC 6762 section 6.7): one DNS query for NAME/TYPE sent from an
/// ephemeral port of `ns`'s eth0 address to 224.0.0.251:5353 (IP_MULTICAST_IF = eth0, so
/// no multicast route is needed; the kernel's multicast TTL of 1 keeps it on the link),
/// then every reply until `timeout`. hickory-proto encodes and decodes (already in the tree through dhcproto).
pub fn legacy_query(ns: &Netns, name: &str, rrtype: &str, timeout: Duration) -> Vec<LegacyReply> {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    let addr = eth0_v4(ns);
    let qtype: RecordType = rrtype.parse().expect("record type");
    let qname = Name::from_ascii(name).expect("name");
    let id = (std::process::id() as u16) ^ (seq() as u16).wrapping_mul(40503);
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(qname.clone(), qtype));
    let wire = msg.to_vec().expect("encode query");
    ns.run_in(|| {
        let sock = UdpSocket::bind(SocketAddrV4::new(addr, 0)).expect("bind");
        socket2::SockRef::from(&sock)
            .set_multicast_if_v4(&addr)
            .expect("IP_MULTICAST_IF");
        sock.send_to(&wire, MDNS_V4).expect("send legacy query");
        let deadline = Instant::now() + timeout;
        let mut replies = Vec::new();
        let mut buf = [0u8; 9000];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left)).expect("timeout");
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                break;
            };
            let Ok(m) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if m.metadata.message_type != MessageType::Response {
                continue;
            }
            replies.push(LegacyReply {
                from,
                id_matches: m.metadata.id == id,
                // By text: hickory's Name equality also weighs the trailing dot.
                question_repeated: m.queries.iter().any(|q| {
                    q.query_type() == qtype
                        && q.name().to_string().trim_end_matches('.').to_lowercase()
                            == name.trim_end_matches('.').to_lowercase()
                }),
                answers: m
                    .answers
                    .iter()
                    .map(|r| {
                        (
                            r.name.to_string(),
                            r.record_type().to_string(),
                            r.ttl,
                            r.data.to_string(),
                        )
                    })
                    .collect(),
            });
        }
        replies
    })
    .expect("enter netns")
}

/// Output of a bounded run.
#[derive(Debug)]
pub struct Bounded {
    pub stdout: String,
    pub stderr: String,
    /// None when it was killed at the timeout.
    pub status: Option<ExitStatus>,
    pub elapsed: Duration,
}

/// Run `cmd` (stdin null, stdout/stderr captured) for at most `timeout`, then kill it by
/// pid; what it printed until then is returned.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Bounded {
    let t0 = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let so = child.stdout.take().expect("stdout");
    let se = child.stderr.take().expect("stderr");
    // Read both pipes while it runs, so a chatty child never blocks on a full pipe.
    let out_t = std::thread::spawn(move || read_all(so));
    let err_t = std::thread::spawn(move || read_all(se));
    let mut g = ProcGuard::new(child, format!("{cmd:?}"));
    let status = g.wait_timeout(timeout);
    if status.is_none() {
        g.kill();
    }
    drop(g);
    Bounded {
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
        status,
        elapsed: t0.elapsed(),
    }
}

fn read_all(mut r: impl Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}

/// The private bus: a system-type bus at `sock` whose only rules are Debian's avahi policy
/// (root may own org.freedesktop.Avahi, everyone may talk to it) on top of an open default
/// for root (the tests run as root). No service directories: nothing is bus-activated,
/// so a client can never start the machine's avahi through it.
fn bus_config(sock: &Path) -> String {
    let policy = [
        "/usr/share/dbus-1/system.d/avahi-dbus.conf",
        "/etc/dbus-1/system.d/avahi-dbus.conf",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("avahi's D-Bus policy (avahi-daemon installed? scripts/install-deps)");
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
  <include>{policy}</include>
</busconfig>
"#,
        sock = sock.display()
    )
}

/// avahi-daemon.conf: eth0 only, both protocols, no reflector, no wide-area, nothing of
/// its own published except (if asked) its address records.
fn daemon_config(host_name: &str, publish_addresses: bool) -> String {
    let yn = |b: bool| if b { "yes" } else { "no" };
    format!(
        "[server]\nhost-name={host_name}\ndomain-name=local\nuse-ipv4=yes\nuse-ipv6=yes\n\
         allow-interfaces=eth0\nenable-dbus=yes\ndisallow-other-stacks=no\n\
         [wide-area]\nenable-wide-area=no\n\
         [publish]\ndisable-publishing=no\npublish-addresses={}\npublish-hinfo=no\n\
         publish-workstation=no\npublish-domain=no\npublish-aaaa-on-ipv4=no\n\
         publish-a-on-ipv6=no\n\
         [reflector]\nenable-reflector=no\n",
        yn(publish_addresses)
    )
}

/// Undo avahi's label escaping (`\.`, `\\`, `\DDD` decimal byte, as avahi_escape_label
/// writes them).
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let d = &b[i + 1..(i + 4).min(b.len())];
            if d.len() == 3 && d.iter().all(u8::is_ascii_digit) {
                let v = d.iter().fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0'));
                if v <= 255 {
                    out.push(v as u8);
                    i += 4;
                    continue;
                }
            }
            out.push(b[i + 1]);
            i += 2;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// TXT field of an `=` line: `"a=b" "c"` -> ["a=b", "c"] (avahi escapes `"` and `\` inside
/// with a backslash).
fn parse_txt(s: &str) -> Vec<String> {
    let mut res = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (&mut cur, c) {
            (None, '"') => cur = Some(String::new()),
            (None, _) => {}
            (Some(t), '\\') => {
                if let Some(n) = chars.next() {
                    t.push(n);
                }
            }
            (Some(_), '"') => res.push(cur.take().unwrap()),
            (Some(t), c) => t.push(c),
        }
    }
    res
}

/// Parse `avahi-browse -p` output (`+`, `-`, `=` lines; others ignored).
pub fn parse_browse(out: &str) -> Vec<BrowseEvent> {
    let mut res = Vec::new();
    for line in out.lines() {
        // The TXT field (last) may hold `;`: split only as far as the fields go.
        let f: Vec<&str> = line.splitn(10, ';').collect();
        let seen = |f: &[&str]| Seen {
            interface: f[1].to_string(),
            protocol: f[2].to_string(),
            name: unescape(f[3]),
            service_type: f[4].to_string(),
            domain: f[5].to_string(),
        };
        match f[0] {
            "+" if f.len() >= 6 => res.push(BrowseEvent::Added(seen(&f))),
            "-" if f.len() >= 6 => res.push(BrowseEvent::Removed(seen(&f))),
            "=" if f.len() == 10 => {
                let s = seen(&f);
                res.push(BrowseEvent::Resolved(Browsed {
                    interface: s.interface,
                    protocol: s.protocol,
                    name: s.name,
                    service_type: s.service_type,
                    domain: s.domain,
                    host: unescape(f[6]),
                    // A link-local IPv6 address comes with `%ifindex` on some versions.
                    address: f[7].split('%').next().and_then(|a| a.parse().ok()),
                    port: f[8].parse().unwrap_or(0),
                    txt: parse_txt(f[9]),
                }))
            }
            _ => {}
        }
    }
    res
}

/// `avahi-resolve -n` output: `name<TAB>address`.
fn parse_resolve(out: &str) -> Option<IpAddr> {
    out.lines()
        .find_map(|l| l.split('\t').nth(1)?.trim().split('%').next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_browse_lines() {
        let out = "+;eth0;IPv4;My\\032Web\\046x;_http._tcp;local\n\
                   =;eth0;IPv4;My\\032Web\\046x;_http._tcp;local;r1.local;192.0.2.10;80;\"path=/\" \"a=b;c\" \"q=\\\"x\\\"\"\n\
                   =;eth0;IPv6;web1;_http._tcp;local;r1.local;fe80::1;80;\n\
                   -;eth0;IPv4;web1;_http._tcp;local\n\
                   Failed to resolve service 'x': Timeout reached\n";
        let ev = parse_browse(out);
        assert_eq!(ev.len(), 4);
        let BrowseEvent::Resolved(b) = &ev[1] else {
            panic!("{ev:?}")
        };
        assert_eq!(b.name, "My Web.x");
        assert_eq!(b.address, Some("192.0.2.10".parse().unwrap()));
        assert_eq!(b.port, 80);
        assert_eq!(b.txt, vec!["path=/", "a=b;c", "q=\"x\""]);
        let BrowseEvent::Resolved(b6) = &ev[2] else {
            panic!("{ev:?}")
        };
        assert!(b6.txt.is_empty());
        assert_eq!(b6.address, Some("fe80::1".parse().unwrap()));
        assert!(matches!(&ev[3], BrowseEvent::Removed(s) if s.name == "web1"));
    }

    #[test]
    fn unescapes_labels() {
        assert_eq!(unescape("a\\032b\\\\c\\.d"), "a b\\c.d");
        assert_eq!(unescape("caf\\195\\169"), "café");
    }

    #[test]
    fn parses_resolve() {
        assert_eq!(
            parse_resolve("x.local\t192.0.2.7\n"),
            Some("192.0.2.7".parse().unwrap())
        );
        assert_eq!(parse_resolve("Failed to resolve host name"), None);
    }
}
