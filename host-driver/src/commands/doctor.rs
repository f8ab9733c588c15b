//! `netcontainer doctor [--parent IF]`: what to run first when a service
//! gets no lease. Checks the kernel (every leg kind), nft, Docker and the
//! router image, the parent NIC, then sends one DHCP DISCOVER from a
//! temporary leg and prints every server's OFFER (server, address, lease
//! time, gateway; a warning when more than one server answered) or the
//! timeout.
//!
//! Every check prints one line, `ok|warn|FAIL  what  (fix: ...)`; the exit
//! code is non-zero when a check FAILs.
//!
//! The DHCP probe: a thread of ours enters a new, anonymous network namespace
//! (`unshare(CLONE_NEWNET)`); the leg (of the kind `--mode` names, macvlan
//! by default) is created on the parent directly inside it (netlink's
//! `IFLA_NET_NS_FD`: it never exists in the host's namespace); a packet
//! socket there sends one DISCOVER built by the agent's own DHCP client
//! (`netcontainer-lease`) and reads replies until the timeout, or until
//! `OTHER_SERVERS_WAIT` after the first OFFER (other servers' come then).
//! Nothing else is sent: no REQUEST, so no lease is taken. Why this way and
//! not the agent in a namespace: the agent would go on to REQUEST a lease,
//! and a named namespace is one more thing to clean up. Here the namespace is
//! held only by the thread (and briefly by an fd), so the kernel deletes it
//! and the leg with it when the thread ends, when the command fails, and
//! when SIGINT ends the process: nothing can be left behind.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use futures::TryStreamExt;
use netcontainer_lease::packet::{build_ipv4_udp, parse_ipv4_udp};
use netcontainer_lease::v4::wire::{sanitize_reply, server_id_of};
use netcontainer_lease::v4::{Client, Config, Retry};
use rtnetlink::LinkVeth;

use crate::docker::{DockerClient, Located, default_image};
use crate::error::Error;
use crate::leg::{KINDS, Kind, LinkSpec};
use crate::output::safe;
use crate::plan;
use crate::plumb::{Leg, Plumber};

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Host NIC on the LAN to check and send the DHCP probe from.
    #[arg(long)]
    parent: Option<String>,
    /// The leg kind to probe with (as `up --mode`).
    #[arg(long, value_enum, default_value_t = Kind::default())]
    mode: Kind,
    /// Router image that must be present.
    #[arg(long, default_value_t = default_image())]
    image: String,
    /// Seconds to wait for an OFFER.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

/// The report: one line per check, printed as it is made.
#[derive(Default)]
struct Report {
    failed: usize,
}

impl Report {
    fn line(&mut self, level: Level, what: impl AsRef<str>, fix: Option<String>) {
        let tag = match level {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => {
                self.failed += 1;
                "FAIL"
            }
        };
        let what = safe(what.as_ref());
        match fix {
            Some(f) => println!("{tag:<4}  {what}  (fix: {})", safe(&f)),
            None => println!("{tag:<4}  {what}"),
        }
    }
    fn ok(&mut self, what: impl AsRef<str>) {
        self.line(Level::Ok, what, None);
    }
    fn warn(&mut self, what: impl AsRef<str>, fix: impl Into<String>) {
        self.line(Level::Warn, what, Some(fix.into()));
    }
    fn fail(&mut self, what: impl AsRef<str>, fix: impl Into<String>) {
        self.line(Level::Fail, what, Some(fix.into()));
    }
}

pub async fn run(a: DoctorArgs) -> Result<(), Error> {
    let mut r = Report::default();
    let root = nix::unistd::geteuid().is_root();
    if !root {
        r.fail(
            "not running as root: the kernel checks and the DHCP probe need it",
            "sudo netcontainer doctor",
        );
    }

    // Kernel: can it make the legs?
    let kinds = if root {
        Some(link_kinds().unwrap_or_else(|e| {
            KINDS
                .iter()
                .map(|k| (*k, Support::Unknown(e.clone())))
                .collect()
        }))
    } else {
        None
    };
    for (kind, support) in kinds.iter().flatten() {
        report_kind(&mut r, *kind, support, *kind == a.mode);
    }

    // nft on the host: informative only.
    match find_in_path("nft") {
        Some(p) => r.ok(format!(
            "nft: {} (informative: the agent runs the router image's own nft)",
            p.display()
        )),
        None => r.ok("nft: not on the host (not needed: the router image has its own)"),
    }

    // Docker and the router image.
    match DockerClient::connect().await {
        Ok(d) => {
            match d.version().await {
                Ok(v) => r.ok(format!("Docker {v} reachable")),
                Err(e) => r.warn(
                    format!("Docker reachable, version unknown: {e}"),
                    "check `docker version`",
                ),
            }
            // The same finding `up` and `watch` refuse with.
            match crate::platform::check(Some(&d)).await {
                Some(u) => r.fail(u.to_string(), u.instead()),
                None => r.ok("Docker engine: rootful, on this host (not Desktop, not WSL2)"),
            }
            // As `up` would take it: by its pin, without pulling.
            match d.locate_image(&a.image).await {
                Ok(Located::Here {
                    create_from,
                    pinned: true,
                }) => r.ok(format!("router image {} present, pinned to {create_from}", a.image)),
                Ok(Located::Here { pinned: false, .. }) => r.warn(
                    format!("router image {} present, not pinned", a.image),
                    "./scripts/build-router-image records its ID; or give --image REF@sha256:DIGEST (docs/operations.md, \"Pinning the router image\")",
                ),
                Ok(Located::Missing { pull, .. }) => r.fail(
                    format!("router image {} is not present", a.image),
                    format!("./scripts/build-router-image, or `docker pull {pull}`"),
                ),
                Err(e) => r.fail(
                    e.to_string(),
                    e.hint().unwrap_or_else(|| "check `docker image ls`".into()),
                ),
            }
        }
        Err(e) => {
            r.fail(
                format!("Docker: {e}"),
                e.hint()
                    .unwrap_or_else(|| "start dockerd (systemctl start docker)".into()),
            );
            // Without the engine, the host alone can still tell (WSL2, a
            // rootless socket).
            if let Some(u) = crate::platform::check(None).await {
                r.fail(u.to_string(), u.instead());
            }
        }
    }

    // The parent, then the probe from it.
    let Some(parent) = a.parent.as_deref() else {
        r.warn(
            "no --parent: the parent checks and the DHCP probe were skipped",
            "netcontainer doctor --parent IFACE (the host's NIC on the LAN)",
        );
        return finish(r);
    };
    let probe_ok = check_parent(&mut r, parent, a.mode, kinds.as_ref());
    let kind_ok = kinds
        .as_ref()
        .is_some_and(|k| support(k, a.mode) == Some(&Support::Yes));
    if !(root && probe_ok && kind_ok) {
        r.warn(
            "DHCP probe not sent: fix the FAIL lines above first",
            "then run doctor again",
        );
        return finish(r);
    }
    let timeout = Duration::from_secs(a.timeout.max(1));
    let probe = probe(parent, a.mode, timeout);
    let res = tokio::select! {
        res = probe => res,
        sig = signal() => {
            // The probe's namespace and leg go with the process.
            return Err(Error::Interrupted(sig));
        }
    };
    match res {
        Ok(offers) if !offers.is_empty() => {
            for o in &offers {
                r.ok(offer_line(o, parent));
            }
            if let Some((what, fix)) = several_servers(&offers) {
                r.warn(what, fix);
            }
        }
        Ok(_) => r.fail(
            format!(
                "DHCP: no OFFER within {} s on {parent} (one DISCOVER sent from a {} leg)",
                timeout.as_secs(),
                a.mode.name()
            ),
            no_offer_fix(parent, a.mode),
        ),
        Err(e) => r.fail(
            format!("DHCP probe: {e}"),
            "see the lines above; NETCONTAINER_LOG=debug for more",
        ),
    }
    finish(r)
}

fn finish(r: Report) -> Result<(), Error> {
    if r.failed == 0 {
        Ok(())
    } else {
        Err(Error::DoctorFound(r.failed))
    }
}

async fn signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

fn no_offer_fix(parent: &str, kind: Kind) -> String {
    let mut s = format!(
        "is a DHCP server on {parent}'s LAN (and a free address in its pool)? \
         A VM's virtual switch must accept extra MACs (VMware: promiscuous mode and forged \
         transmits; Hyper-V: MAC address spoofing)"
    );
    if let Some(h) = kind.no_offer_hint() {
        s.push_str("; ");
        s.push_str(h);
    }
    s
}

// --------------------------------------------------------------------------
// The kernel

#[derive(Clone, Debug, PartialEq, Eq)]
enum Support {
    Yes,
    /// The kernel does not know the link kind (EOPNOTSUPP, "Unknown device type").
    No(String),
    /// The check itself failed.
    Unknown(String),
}

/// What the kernel said about each leg kind, in [`KINDS`]' order.
type Kinds = Vec<(Kind, Support)>;

fn support(kinds: &Kinds, kind: Kind) -> Option<&Support> {
    kinds.iter().find(|(k, _)| *k == kind).map(|(_, s)| s)
}

fn report_kind(r: &mut Report, kind: Kind, s: &Support, wanted: bool) {
    let name = kind.name();
    match s {
        Support::Yes => r.ok(format!("kernel: {name} links can be made")),
        Support::No(e) => {
            let fix = format!(
                "modprobe {}; if that fails the kernel was built without {}",
                kind.module(),
                kind.kernel_config()
            );
            let what = format!("kernel: no {name} support ({e})");
            match kind.optional_for() {
                Some(use_) if !wanted => r.warn(
                    format!("{what}: --mode {name} cannot work on this host"),
                    format!("{fix}; only needed for --mode {name} ({use_})"),
                ),
                _ => r.fail(what, fix),
            }
        }
        Support::Unknown(e) => r.warn(
            format!("kernel: could not check {name}: {e}"),
            "run as root",
        ),
    }
}

/// Tries a veth, then a link of every leg kind on it, in a scratch network
/// namespace of a thread of ours: gone with the thread.
fn link_kinds() -> Result<Kinds, String> {
    std::thread::spawn(|| -> Result<Kinds, String> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("cannot make a scratch network namespace: {e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            // The netlink socket is opened here, in the scratch namespace.
            let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            handle
                .link()
                .add(LinkVeth::new("ncd0", "ncd1").build())
                .execute()
                .await
                .map_err(|e| format!("creating a veth: {e}"))?;
            let index = handle
                .link()
                .get()
                .match_name("ncd0".to_string())
                .execute()
                .try_next()
                .await
                .map_err(|e| e.to_string())?
                .ok_or("the veth vanished")?
                .header
                .index;
            let verdict = |res: Result<(), rtnetlink::Error>| match res {
                Ok(()) => Support::Yes,
                Err(e) if errno(&e) == Some(libc::EOPNOTSUPP) => {
                    Support::No("Unknown device type".into())
                }
                Err(e) => Support::Unknown(e.to_string()),
            };
            let mut out = Vec::new();
            for (i, kind) in KINDS.iter().enumerate() {
                let name = format!("ncdk{i}");
                let link = kind.link(&LinkSpec {
                    name: &name,
                    parent_index: index,
                    mac: None,
                    netns: None,
                });
                out.push((*kind, verdict(handle.link().add(link).execute().await)));
            }
            Ok(out)
        })
    })
    .join()
    .map_err(|_| "the kernel check panicked".to_string())?
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

fn find_in_path(prog: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

// --------------------------------------------------------------------------
// The parent

const IFF_UP: u32 = 0x1;
const IFF_PROMISC: u32 = 0x100;

fn read_trim(p: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Checks the parent; true when the probe may be sent from it. `kinds`: what
/// the kernel said of each leg kind (`None`: not checked).
fn check_parent(r: &mut Report, parent: &str, mode: Kind, kinds: Option<&Kinds>) -> bool {
    if parent.is_empty() || parent.contains('/') || parent.starts_with('.') {
        r.fail(
            format!("parent {parent:?}: not an interface name"),
            "--parent names the NIC on the LAN (`ip link` lists them)",
        );
        return false;
    }
    let sys = Path::new("/sys/class/net").join(parent);
    if !sys.exists() {
        r.fail(
            format!("parent {parent}: does not exist on this host"),
            "`ip link` lists the host's interfaces; --parent names the NIC on the LAN",
        );
        return false;
    }
    let mut usable = true;
    let flags = read_trim(sys.join("flags"))
        .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    if flags & IFF_UP == 0 {
        r.fail(
            format!("parent {parent}: administratively down"),
            format!("ip link set {parent} up"),
        );
        usable = false;
    } else if read_trim(sys.join("carrier")).as_deref() != Some("1") {
        r.fail(
            format!("parent {parent}: up but no carrier (no link to a switch)"),
            "check the cable, the switch port, or the VM's network adapter",
        );
        usable = false;
    } else {
        r.ok(format!("parent {parent}: exists, up, carrier"));
    }
    if sys.join("wireless").exists() || sys.join("phy80211").exists() {
        check_wifi(r, parent, mode, kinds);
    }
    if let Ok(m) = std::fs::read_link(sys.join("master")) {
        let master = m
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let msys = Path::new("/sys/class/net").join(&master);
        if msys.join("bridge").exists() {
            r.fail(
                format!(
                    "parent {parent}: a port of bridge {master}, which takes its frames: a leg on it gets nothing"
                ),
                format!("--parent {master}"),
            );
            usable = false;
        } else if msys.join("bonding").exists() {
            r.fail(
                format!("parent {parent}: a member of bond {master}: a leg on it gets nothing"),
                format!("--parent {master}"),
            );
            usable = false;
        } else {
            r.warn(
                format!("parent {parent}: enslaved to {master}"),
                format!("if no OFFER comes, try --parent {master}"),
            );
        }
    }
    if sys.join("bridge").exists() {
        r.ok(format!(
            "parent {parent}: a bridge (legs on it reach its ports and their LAN)"
        ));
    }
    if flags & IFF_PROMISC != 0 {
        r.ok(format!("parent {parent}: promiscuous mode on"));
    } else {
        r.ok(format!(
            "parent {parent}: promiscuous mode off (the kernel adds each macvlan's MAC to the \
             NIC's filter, or turns it on itself when the filter is full; in a VM the \
             hypervisor's switch must allow extra MACs)"
        ));
    }
    usable
}

/// A WiFi parent: the access point drops frames from MACs it did not
/// associate, so only a kind whose legs have the parent's MAC gets a lease.
fn check_wifi(r: &mut Report, parent: &str, mode: Kind, kinds: Option<&Kinds>) {
    if !mode.own_mac() {
        r.ok(format!("parent {parent}: WiFi, probing with {mode}"));
        return;
    }
    let Some(alt) = KINDS.iter().copied().find(|k| !k.own_mac()) else {
        r.warn(
            format!(
                "parent {parent}: WiFi: the access point drops frames from MACs it did not \
                 associate, so {mode} legs usually get no lease"
            ),
            "a wired parent",
        );
        return;
    };
    // Not checked (not root): assume the kernel has it.
    let alt_missing = kinds.is_some_and(|k| support(k, alt) != Some(&Support::Yes));
    if alt_missing {
        r.fail(
            format!(
                "parent {parent}: WiFi: the access point drops frames from MACs it did not \
                 associate, so {mode} legs get no lease, and this kernel has no {alt}"
            ),
            format!(
                "a wired parent, or a kernel with {alt} (modprobe {}) and --mode {alt}",
                alt.module()
            ),
        );
    } else {
        r.warn(
            format!(
                "parent {parent}: WiFi: the access point drops frames from MACs it did not \
                 associate, so {mode} legs usually get no lease"
            ),
            format!(
                "netcontainer up --mode {alt} (check: netcontainer doctor --parent {parent} --mode {alt})"
            ),
        );
    }
}

// --------------------------------------------------------------------------
// The DHCP probe

#[derive(Clone, Debug, PartialEq, Eq)]
struct Offer {
    /// Its server identifier (option 54), else the packet's source.
    server: Ipv4Addr,
    address: Ipv4Addr,
    lease_secs: Option<u32>,
    /// The first router (option 3).
    gateway: Option<Ipv4Addr>,
}

/// After the first OFFER, how long the probe listens for other servers'
/// (within its timeout): a LAN's servers answer within milliseconds of each
/// other, a second server that waits longer is rare (dnsmasq's
/// `--dhcp-reply-delay`), and doctor should not keep every good run waiting.
const OTHER_SERVERS_WAIT: Duration = Duration::from_secs(2);

fn offer_line(o: &Offer, parent: &str) -> String {
    let time = o
        .lease_secs
        .map(|s| {
            if s == u32::MAX {
                "ever".to_string()
            } else {
                format!("{s} s")
            }
        })
        .unwrap_or_else(|| "an unstated time".into());
    let gateway = o
        .gateway
        .map(|g| format!("gateway {g}"))
        .unwrap_or_else(|| "no gateway".into());
    format!(
        "DHCP: OFFER from {} on {parent}: {} for {time}, {gateway} (one DISCOVER sent, nothing requested)",
        o.server, o.address
    )
}

/// More than one server answered: a router takes whichever OFFER comes
/// first, so say how to choose.
fn several_servers(offers: &[Offer]) -> Option<(String, String)> {
    if offers.len() < 2 {
        return None;
    }
    let list: Vec<String> = offers.iter().map(|o| o.server.to_string()).collect();
    Some((
        format!(
            "DHCP: {} servers answered ({}): a router takes whichever OFFER comes first",
            offers.len(),
            list.join(", ")
        ),
        format!(
            "choose one: netcontainer up --dhcp-server {} (or label netcontainer.dhcp-server), \
             or ignore the others with --deny-dhcp-server",
            offers[0].server
        ),
    ))
}

/// Adds `o` unless its server already offered (a server that answers a
/// DISCOVER twice, or a relay that forwards it twice, counts once).
fn collect(offers: &mut Vec<Offer>, o: Offer) {
    if !offers.iter().any(|x| x.server == o.server) {
        offers.push(o);
    }
}

const PROBE_IF: &str = "ncprobe0";
const ETH_P_IP: u16 = 0x0800;

/// One DISCOVER from a temporary leg on `parent` in a namespace of its own;
/// the OFFERs for it, one per server: every server that answers by
/// [`OTHER_SERVERS_WAIT`] after the first (and within `timeout`); none at
/// the timeout.
async fn probe(parent: &str, kind: Kind, timeout: Duration) -> Result<Vec<Offer>, String> {
    let plumber = Plumber::new().map_err(|e| e.to_string())?;
    let p = plumber.parent(parent).await.map_err(|e| e.to_string())?;
    // The probe's own client: a stable MAC (the same client on every run,
    // so a server keeps one entry for it), the parent's for a kind whose
    // legs have the parent's.
    let host = read_trim("/proc/sys/kernel/hostname").unwrap_or_default();
    let mac = if kind.own_mac() {
        plan::stable_mac(&format!("doctor/{host}"))
    } else {
        read_trim(Path::new("/sys/class/net").join(parent).join("address"))
            .and_then(|m| parse_hw(&m))
            .ok_or("cannot read the parent's MAC")?
    };
    let (ns_tx, ns_rx) = tokio::sync::oneshot::channel::<Result<File, String>>();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<bool>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let res = (|| {
            if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
                let _ = ns_tx.send(Err(format!("cannot make a network namespace: {e}")));
                return Ok(Vec::new());
            }
            let ns = File::open("/proc/thread-self/ns/net").map_err(|e| e.to_string());
            let _ = ns_tx.send(ns);
            // Wait for the leg (false: it could not be made).
            if !go_rx.recv().unwrap_or(false) {
                return Ok(Vec::new());
            }
            discover(mac, kind.broadcast_flag(), timeout)
        })();
        let _ = done_tx.send(res);
    });
    let ns = ns_rx
        .await
        .map_err(|_| "the probe thread ended".to_string())??;
    let leg = Leg {
        parent: &p,
        kind,
        name: PROBE_IF,
        mac,
    };
    let made = plumber
        .add_leg_into(&leg, &ns)
        .await
        .map_err(|e| match e.hint() {
            Some(h) => format!("{e} ({h})"),
            None => e.to_string(),
        });
    // Only the thread holds the namespace from here: it (and the leg) go
    // when the thread ends.
    drop(ns);
    let _ = go_tx.send(made.is_ok());
    made?;
    done_rx
        .await
        .map_err(|_| "the probe thread ended".to_string())?
}

fn parse_hw(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect::<Option<_>>()?;
    v.try_into().ok()
}

fn io_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Inside the probe's namespace: up the leg, send one DISCOVER, read the
/// OFFERs for it until the deadline, or [`OTHER_SERVERS_WAIT`] after the
/// first.
fn discover(mac: [u8; 6], broadcast_flag: bool, timeout: Duration) -> Result<Vec<Offer>, String> {
    set_up(PROBE_IF)?;
    let name = std::ffi::CString::new(PROBE_IF).expect("no NUL");
    // SAFETY: a valid C string.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io_err("the probe leg vanished"));
    }
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_IP.to_be()),
        )
    };
    if fd < 0 {
        return Err(io_err("packet socket"));
    }
    // SAFETY: fd is a fresh socket we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut ll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = ETH_P_IP.to_be();
    ll.sll_ifindex = index as i32;
    let ll_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: ll is a valid sockaddr_ll of ll_len bytes.
    if unsafe { libc::bind(sock.as_raw_fd(), (&raw const ll).cast(), ll_len) } != 0 {
        return Err(io_err("binding the packet socket"));
    }

    let mut client = Client::new(
        Config {
            chaddr: mac,
            client_id: b"\0netcontainer-doctor".to_vec(),
            hostname: None,
            broadcast_flag,
            request_address: None,
            retry: Retry::default(),
            servers: Default::default(),
        },
        netcontainer_lease::randomness::from_os(),
    );
    client.start(Instant::now());
    let tx = client
        .poll_transmit()
        .ok_or("the DHCP client made no DISCOVER")?;
    let xid = u32::from_be_bytes(tx.payload[4..8].try_into().expect("a header"));
    let frame = build_ipv4_udp(
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::BROADCAST,
        68,
        67,
        &tx.payload,
    );
    let mut to = ll;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: frame is a valid buffer, `to` a valid sockaddr_ll.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const to).cast(),
            ll_len,
        )
    };
    if sent < 0 {
        return Err(io_err("sending the DISCOVER"));
    }
    let mut deadline = Instant::now() + timeout;
    let mut offers = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(offers);
        }
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(io_err("waiting for the OFFER"));
        }
        if n == 0 {
            continue;
        }
        // SAFETY: buf is writable for its length.
        let len = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if len <= 0 {
            continue;
        }
        // Checksums of frames from the same host may still be partial (veth);
        // xid and chaddr are checked below.
        let Ok(udp) = parse_ipv4_udp(&buf[..len as usize], true) else {
            continue;
        };
        if udp.dst_port != 68 {
            continue;
        }
        let Some(msg) = sanitize_reply(udp.payload, xid, &mac) else {
            continue;
        };
        if msg.opts().msg_type() != Some(dhcproto::v4::MessageType::Offer) {
            continue;
        }
        let lease_secs = match msg.opts().get(dhcproto::v4::OptionCode::AddressLeaseTime) {
            Some(dhcproto::v4::DhcpOption::AddressLeaseTime(t)) => Some(*t),
            _ => None,
        };
        let gateway = match msg.opts().get(dhcproto::v4::OptionCode::Router) {
            Some(dhcproto::v4::DhcpOption::Router(r)) => r.first().copied(),
            _ => None,
        };
        if offers.is_empty() {
            deadline = deadline.min(Instant::now() + OTHER_SERVERS_WAIT);
        }
        collect(
            &mut offers,
            Offer {
                server: server_id_of(&msg).unwrap_or(udp.src_addr),
                address: msg.yiaddr(),
                lease_secs,
                gateway,
            },
        );
    }
}

/// `ip link set IF up`, by ioctl in the calling thread's namespace.
fn set_up(ifname: &str) -> Result<(), String> {
    // SAFETY: plain socket(2); owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io_err("socket"));
    }
    // SAFETY: fresh fd we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; all zeroes is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: ifr is a valid ifreq naming the link.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
        return Err(io_err("reading the probe leg's flags"));
    }
    // SAFETY: SIOCGIFFLAGS filled ifru_flags.
    unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) } < 0 {
        return Err(io_err("bringing the probe leg up"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(server: [u8; 4], address: [u8; 4]) -> Offer {
        Offer {
            server: server.into(),
            address: address.into(),
            lease_secs: Some(600),
            gateway: Some(server.into()),
        }
    }

    #[test]
    fn every_server_that_answered_is_listed_once() {
        let mut offers = Vec::new();
        collect(&mut offers, offer([192, 0, 2, 1], [192, 0, 2, 50]));
        collect(&mut offers, offer([192, 0, 2, 1], [192, 0, 2, 51]));
        assert_eq!(several_servers(&offers), None);
        collect(&mut offers, offer([192, 0, 2, 2], [192, 0, 2, 100]));
        assert_eq!(offers.len(), 2);
        assert_eq!(offers[0].address, Ipv4Addr::new(192, 0, 2, 50));
        let (what, fix) = several_servers(&offers).unwrap();
        assert!(
            what.contains("2 servers answered (192.0.2.1, 192.0.2.2)"),
            "{what}"
        );
        assert!(fix.contains("--dhcp-server 192.0.2.1"), "{fix}");
        assert_eq!(
            offer_line(&offers[1], "eth0"),
            "DHCP: OFFER from 192.0.2.2 on eth0: 192.0.2.100 for 600 s, gateway 192.0.2.2 \
             (one DISCOVER sent, nothing requested)"
        );
        let bare = Offer {
            lease_secs: None,
            gateway: None,
            ..offers[0].clone()
        };
        assert!(offer_line(&bare, "eth0").contains("for an unstated time, no gateway"));
    }
}
