//! The Docker test bed: the real host driver (`netcontainer up/down/status/ls`) against the
//! real Docker engine, with a simulated LAN.
//!
//! ```text
//!  root namespace (the Docker host)             LAN ns "<id>lan"
//!  <id>p (veth, up, no address) ===========  uplink -- br0 203.0.113.1/24 (dnsmasq)
//!    `-- macvlan lan0 in each router container        `-- cli === eth0 203.0.113.10/24
//!  Docker network "<id>net" (bridge "<id>br",                          (ns "<id>cli")
//!    a /28 of 198.51.100.0/24): services, routers
//! ```
//!
//! [`DockerBed::new`] builds all of it; [`DockerBed::run_service`] starts a sample service
//! (`netcontainer/sample:latest`) on the bed's network; [`DockerBed::up`] and friends run
//! the driver and parse its output; [`DockerBed::leftovers`] lists what a service left
//! behind. Drop removes, by their exact names: every router of a service the bed used,
//! its state directory, the containers, the Docker network, the parent veth (and any link
//! the test added), dnsmasq (by pid), the namespaces.
//!
//! The LAN is 203.0.113.0/24, not 192.0.2.0/24: these machines' own NIC sits in
//! 192.0.2.0/24, and traffic that starts in a container (or the host) toward the LAN must
//! never leave the machine if a route is missing. Each bed first checks that no host
//! interface is in 203.0.113.0/24 and holds a blackhole route for it in the root namespace
//! (high metric, its own) for its lifetime, so a stray packet stays on the machine.
//!
//! Every bed holds [`SuiteLock`] (shared; exclusive for the `watch` tests, whose
//! supervisor acts on every router of the host) until it is gone.
//!
//! Names start with `nct<pid>x<n>` (links ≤ 15 characters). Each bed's Docker network
//! is a /28 of 198.51.100.0/24 chosen by a per-test index; if that pool is taken (another
//! run in parallel) the next free /28 is used, so beds never collide on "Pool overlaps".

use crate::TempDir;
use crate::agent::CmdOutput;
use crate::dnsmasq::{Dnsmasq, DnsmasqOpts};
use crate::netns::Netns;
use crate::proc::ProcGuard;
use netcontainer_proto::contract::LAN_IF;
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The driver's default `--image` (versioned with the workspace).
pub const ROUTER_IMAGE: &str = concat!("netcontainer/router:", env!("CARGO_PKG_VERSION"));
/// The sample service (`./scripts/build-sample-image`).
pub const SAMPLE_IMAGE: &str = "netcontainer/sample:latest";
/// The sample binary without any EXPOSE (built here from [`SAMPLE_IMAGE`], cached).
pub const NOPORTS_IMAGE: &str = "netcontainer/sample-noports:latest";
/// Label on [`NOPORTS_IMAGE`]: the id of the sample image it was made from.
const NOPORTS_FROM: &str = "netcontainer.test.sample-id";

/// The simulated LAN (see the module doc for why not 192.0.2.0/24).
pub const LAN_NET: &str = "203.0.113.0/24";
/// The LAN bridge's address: DHCP server, router option.
pub const LAN_GATEWAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The LAN client's address.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
/// [`DockerBed::routed`]: the LAN namespace's address on the other subnet.
pub const REMOTE_GATEWAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 129);
/// [`DockerBed::routed`]: the client on the other subnet (203.0.113.128/25).
pub const REMOTE_CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 130);
/// [`DockerBed::routed`]: dnsmasq's range on the /25 LAN.
pub const ROUTED_POOL: (Ipv4Addr, Ipv4Addr) = (
    Ipv4Addr::new(203, 0, 113, 50),
    Ipv4Addr::new(203, 0, 113, 120),
);
/// dnsmasq's dynamic range.
pub const POOL: (Ipv4Addr, Ipv4Addr) = (
    Ipv4Addr::new(203, 0, 113, 50),
    Ipv4Addr::new(203, 0, 113, 150),
);
/// dnsmasq's dynamic range on a bed with a /24 Docker network (231 addresses: room for
/// 120 routers and more; [`in_pool`] is about [`POOL`] only).
pub const WIDE_POOL: (Ipv4Addr, Ipv4Addr) = (
    Ipv4Addr::new(203, 0, 113, 20),
    Ipv4Addr::new(203, 0, 113, 250),
);
/// Blackhole routes of the beds start at this metric (one per bed).
const BLACKHOLE_METRIC: u32 = 7000;

/// Kea on the bed's LAN (its subnet, gateway and DNS) handing out `pool`
/// (`"A - B"`), with short timers (valid 20 s, renew 5 s, rebind 15 s): the
/// one-address pool and renumbering tests.
pub fn kea_on_lan(pool: &str) -> crate::kea::KeaOpts {
    crate::kea::KeaOpts {
        subnet: LAN_NET.into(),
        pool: pool.into(),
        gateway: LAN_GATEWAY,
        dns: vec![LAN_GATEWAY],
        ..crate::kea::KeaOpts::short(20, 5, 15)
    }
}

/// Number of /28 slots in 198.51.100.0/24.
pub const SLOTS: u8 = 16;

/// How long any single driver call may take before it is killed.
const DRIVER_LIMIT: Duration = Duration::from_secs(60);

static BED_N: AtomicU32 = AtomicU32::new(0);
static CALL_N: AtomicU32 = AtomicU32::new(0);

/// Panic (never skip) unless the router and sample images exist.
pub fn require_images() {
    for (image, script) in [
        (ROUTER_IMAGE, "./scripts/build-router-image"),
        (SAMPLE_IMAGE, "./scripts/build-sample-image"),
    ] {
        if docker(&["image", "inspect", "--format", "{{.Id}}", image]).is_err() {
            panic!(
                "image {image} is missing: run ./scripts/build-router-image / \
                 ./scripts/build-sample-image (here: {script})"
            );
        }
    }
}

/// `docker args...`: Ok(stdout) or Err(what failed, with stderr).
pub fn docker(args: &[&str]) -> Result<String, String> {
    crate::try_run(Command::new("docker").args(args).stdin(Stdio::null()))
}

/// `docker args...`, panicking on failure.
pub fn docker_ok(args: &[&str]) -> String {
    docker(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Is `addr` in dnsmasq's pool?
pub fn in_pool(addr: Ipv4Addr) -> bool {
    (u32::from(POOL.0)..=u32::from(POOL.1)).contains(&u32::from(addr))
}

/// The state-directory root the driver uses (`NETCONTAINER_RUN_DIR` or /run/netcontainer).
pub fn run_dir() -> PathBuf {
    std::env::var_os("NETCONTAINER_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/netcontainer"))
}

/// Host state directory of `service`'s router.
pub fn state_dir(service: &str) -> PathBuf {
    run_dir().join(service)
}

/// The lease-directory root the driver uses (`NETCONTAINER_LIB_DIR` or /var/lib/netcontainer).
pub fn lib_dir() -> PathBuf {
    std::env::var_os("NETCONTAINER_LIB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/netcontainer"))
}

/// Name of `service`'s router container.
pub fn router_name(service: &str) -> String {
    format!("netcontainer-{service}")
}

/// Ids of all containers (any state) labelled as belonging to `service`.
pub fn containers_of(service: &str) -> Vec<String> {
    docker_ok(&[
        "ps",
        "-a",
        "-q",
        "--filter",
        &format!("label=netcontainer.service={service}"),
    ])
    .split_whitespace()
    .map(String::from)
    .collect()
}

/// Builds [`NOPORTS_IMAGE`] unless it exists and was made from the current sample image:
/// `FROM scratch` + the sample binary (copied out of [`SAMPLE_IMAGE`]), no EXPOSE.
pub fn ensure_noports_image() {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let sample_id = docker_ok(&["image", "inspect", "--format", "{{.Id}}", SAMPLE_IMAGE])
        .trim()
        .to_string();
    let have = docker(&[
        "image",
        "inspect",
        "--format",
        &format!("{{{{index .Config.Labels \"{NOPORTS_FROM}\"}}}}"),
        NOPORTS_IMAGE,
    ]);
    if have.as_deref().map(str::trim) == Ok(sample_id.as_str()) {
        return;
    }
    let tmp = TempDir::new("noports");
    let name = format!(
        "nct{}x{}cp",
        std::process::id(),
        BED_N.fetch_add(1, Ordering::Relaxed)
    );
    // Created (never started), without any network.
    docker_ok(&["create", "--name", &name, "--network", "none", SAMPLE_IMAGE]);
    let copied = docker(&[
        "cp",
        &format!("{name}:/netcontainer-sample"),
        &tmp.join("netcontainer-sample").display().to_string(),
    ]);
    let _ = docker(&["rm", "-f", &name]);
    copied.unwrap_or_else(|e| panic!("copying the sample binary out: {e}"));
    std::fs::write(
        tmp.join("Dockerfile"),
        format!(
            "FROM scratch\nCOPY netcontainer-sample /netcontainer-sample\n\
             LABEL {NOPORTS_FROM}=\"{sample_id}\"\n\
             ENTRYPOINT [\"/netcontainer-sample\"]\nCMD [\"--http\", \"80\"]\n"
        ),
    )
    .unwrap();
    crate::run(
        Command::new("docker")
            .args(["build", "-q", "-t", NOPORTS_IMAGE])
            .arg(tmp.path())
            .env("DOCKER_BUILDKIT", "0"),
    );
}

/// The lock file shared by every suite that uses Docker routers (this machine, all runs).
pub const SUITE_LOCK: &str = "/run/lock/netcontainer-docker-tests.lock";
/// How long a test waits for [`SuiteLock`] before it fails.
const SUITE_LOCK_WAIT: Duration = Duration::from_secs(30 * 60);

/// `flock(2)` on [`SUITE_LOCK`], released on drop.
///
/// `netcontainer watch` acts on every router of the host, not only its own test's: while
/// one runs, a test doing `up`/`down` by hand would race with it. So the tests that only
/// drive the one-shot commands (every [`DockerBed::new`]) share the lock and still run in
/// parallel among themselves, and a test that runs `watch` (or `scripts/bench-restart`,
/// with `flock -x`) takes it exclusively: alone on the machine. The exclusive side also
/// holds a process-wide mutex (two threads of one process hold different open file
/// descriptions, so flock alone would serialize them too; the mutex makes it explicit).
pub struct SuiteLock {
    _file: std::fs::File,
    _in_process: Option<MutexGuard<'static, ()>>,
}

impl SuiteLock {
    /// Taken exclusively (alone on the machine)?
    pub fn is_exclusive(&self) -> bool {
        self._in_process.is_some()
    }

    /// Shared: with other one-shot tests, never with a watch test.
    pub fn shared() -> SuiteLock {
        Self::take(false)
    }

    /// Exclusive: alone on the machine.
    pub fn exclusive() -> SuiteLock {
        static IN_PROCESS: Mutex<()> = Mutex::new(());
        let g = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
        let mut l = Self::take(true);
        l._in_process = Some(g);
        l
    }

    fn take(exclusive: bool) -> SuiteLock {
        if let Some(dir) = std::path::Path::new(SUITE_LOCK).parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(SUITE_LOCK)
            .unwrap_or_else(|e| panic!("cannot open {SUITE_LOCK}: {e}"));
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        let got = crate::wait_until(SUITE_LOCK_WAIT, Duration::from_millis(100), || {
            // SAFETY: flock(2) on a descriptor we own.
            unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) == 0 }
        });
        assert!(
            got,
            "{SUITE_LOCK} still taken after {SUITE_LOCK_WAIT:?} (another Docker test run?)"
        );
        SuiteLock {
            _file: file,
            _in_process: None,
        }
    }
}

/// A service container made by the bed.
#[derive(Clone, Debug)]
pub struct Service {
    /// Full container name (`<bed id><tag>`), also the driver's service name.
    pub name: String,
    /// Its address on the bed's Docker network (None when not started).
    pub ip: Option<Ipv4Addr>,
}

/// What a successful `up` printed: `SERVICE ADDRESS PORTS...`.
#[derive(Debug)]
pub struct Up {
    pub service: String,
    pub address: Ipv4Addr,
    pub ports: BTreeSet<String>,
    pub out: CmdOutput,
}

/// How to run the driver.
#[derive(Clone, Debug, Default)]
pub struct Invocation {
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Program and arguments put in front of the driver (e.g. `setpriv ...`).
    pub wrapper: Vec<String>,
}

/// The bed. Field order is drop order after [`Drop::drop`] removed the Docker side.
pub struct DockerBed {
    /// `nct<pid>x<n>`: prefix of every name.
    pub id: String,
    /// The Docker network (`<id>net`), on bridge `<id>br`.
    pub network: String,
    /// Its subnet (a /28 of 198.51.100.0/24) and gateway.
    pub subnet: String,
    pub gateway: Ipv4Addr,
    /// The host end (root namespace) of the veth to the LAN: the `--parent`.
    pub parent: String,
    pub dnsmasq: Dnsmasq,
    /// LAN client namespace, 203.0.113.10/24 on the bridge.
    pub client: Arc<Netns>,
    /// [`DockerBed::routed`]: the client on the other subnet.
    pub remote: Option<Arc<Netns>>,
    /// LAN namespace (bridge br0 = 203.0.113.1/24).
    pub lan: Arc<Netns>,
    pub tmp: TempDir,
    containers: Mutex<Vec<String>>,
    services: Mutex<BTreeSet<String>>,
    links: Mutex<Vec<String>>,
    /// Run and lib directories of the bed's own ([`DockerBed::use_own_state_dirs`]),
    /// given to every driver it runs.
    own_dirs: Mutex<Option<(PathBuf, PathBuf)>>,
    /// Dropped after the Docker side and the links: the LAN's blackhole route.
    _blackhole: Blackhole,
    /// Dropped last: the bed is gone before another suite may start.
    _lock: SuiteLock,
}

/// Panics if an interface of the root namespace has an address in [`LAN_NET`]: a bed
/// there would send its traffic to a real network.
pub fn assert_lan_range_unused() {
    let out = crate::ip(&["-j", "-4", "addr", "show"]);
    let v: Value = serde_json::from_str(&out).expect("ip -j addr json");
    for l in v.as_array().into_iter().flatten() {
        for a in l["addr_info"].as_array().into_iter().flatten() {
            let local: Option<Ipv4Addr> = a["local"].as_str().and_then(|s| s.parse().ok());
            if let Some(ip) = local
                && ip.octets()[..3] == LAN_GATEWAY.octets()[..3]
            {
                panic!(
                    "host interface {} has {ip} in {LAN_NET}, the Docker beds' simulated LAN: \
                     refusing to run (its traffic would leave the machine)",
                    l["ifname"]
                );
            }
        }
    }
}

/// `blackhole LAN_NET metric M` in the root namespace, deleted on drop: the first free
/// metric from [`BLACKHOLE_METRIC`], so parallel beds each own one.
pub struct Blackhole {
    metric: u32,
}

impl Blackhole {
    pub fn new() -> Blackhole {
        for k in 0..1000 {
            let metric = BLACKHOLE_METRIC + k;
            let added = crate::try_run(Command::new("ip").args([
                "route",
                "add",
                "blackhole",
                LAN_NET,
                "metric",
                &metric.to_string(),
            ]));
            match added {
                Ok(_) => return Blackhole { metric },
                Err(e) if e.contains("File exists") => continue,
                Err(e) => panic!("adding the blackhole route for {LAN_NET}: {e}"),
            }
        }
        panic!("no free metric for a blackhole route for {LAN_NET}");
    }
}

impl Default for Blackhole {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args([
                "route",
                "del",
                "blackhole",
                LAN_NET,
                "metric",
                &self.metric.to_string(),
            ])
            .stderr(Stdio::null())
            .status();
    }
}

impl DockerBed {
    /// A bed whose Docker network takes /28 number `index` (0..16) of 198.51.100.0/24, or
    /// the next free one. Checks the images first. Holds [`SuiteLock::shared`].
    pub fn new(index: u8) -> DockerBed {
        Self::with_lock(index, SuiteLock::shared())
    }

    /// [`DockerBed::new`] holding `lock` (e.g. [`SuiteLock::exclusive`] for a test that
    /// runs `watch`) until the bed is gone.
    pub fn with_lock(index: u8, lock: SuiteLock) -> DockerBed {
        Self::with_network_prefix(index, lock, 28)
    }

    /// [`DockerBed::with_lock`] with a bigger Docker network: a /`prefix_len` (24..=28)
    /// of 198.51.100.0/24, slot `index` of the 2^(prefix_len-24) slots or the next free
    /// one (for tests with many services: a service and its router take two addresses).
    /// A /24 is the whole range, so no other bed can run beside it: it needs
    /// [`SuiteLock::exclusive`], and its dnsmasq hands out [`WIDE_POOL`] (the benchmark
    /// of 120 services and their routers).
    pub fn with_network_prefix(index: u8, lock: SuiteLock, prefix_len: u8) -> DockerBed {
        Self::build(index, lock, prefix_len, false)
    }

    /// [`DockerBed::with_lock`] with a client on another subnet: the LAN is
    /// 203.0.113.0/25 (pool [`ROUTED_POOL`]) and the LAN namespace routes
    /// 203.0.113.128/25, where [`DockerBed::remote`] is [`REMOTE_CLIENT`]. The whole /24
    /// stays inside the bed's blackhole.
    pub fn routed(index: u8, lock: SuiteLock) -> DockerBed {
        Self::build(index, lock, 28, true)
    }

    fn build(index: u8, lock: SuiteLock, prefix_len: u8, routed: bool) -> DockerBed {
        assert!(
            (24..=28).contains(&prefix_len),
            "network prefix /{prefix_len} not in /24../28"
        );
        assert!(
            prefix_len > 24 || lock.is_exclusive(),
            "a /24 Docker network takes all of 198.51.100.0/24: it needs SuiteLock::exclusive"
        );
        require_images();
        assert_lan_range_unused();
        let blackhole = Blackhole::new();
        let id = format!(
            "nct{}x{}",
            std::process::id(),
            BED_N.fetch_add(1, Ordering::Relaxed)
        );
        assert!(
            id.len() + 2 <= 15,
            "name prefix {id} too long for link names"
        );
        let tmp = TempDir::new("docker");
        let lan = Arc::new(Netns::new(&format!("{id}lan")).expect("create LAN netns"));
        let plen = if routed { 25 } else { 24 };
        crate::bed::add_bridge(&lan, Some(&format!("{LAN_GATEWAY}/{plen}")));
        let client = Arc::new(Netns::new(&format!("{id}cli")).expect("create client netns"));
        crate::bed::plug(
            &lan,
            "cli",
            &client,
            "eth0",
            Some(&format!("{CLIENT}/{plen}")),
        );
        let remote = routed.then(|| {
            let remote = Arc::new(Netns::new(&format!("{id}rc")).expect("create remote netns"));
            lan.ip(&[
                "link",
                "add",
                "rem",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                remote.name(),
            ]);
            lan.ip(&["addr", "add", &format!("{REMOTE_GATEWAY}/25"), "dev", "rem"]);
            lan.ip(&["link", "set", "rem", "up"]);
            remote.ip(&["addr", "add", &format!("{REMOTE_CLIENT}/25"), "dev", "eth0"]);
            remote.ip(&["link", "set", "eth0", "up"]);
            remote.ip(&[
                "route",
                "add",
                "default",
                "via",
                &REMOTE_GATEWAY.to_string(),
            ]);
            crate::service::enable_forwarding(&lan);
            remote
        });

        let dnsmasq = Dnsmasq::start(
            &lan,
            DnsmasqOpts {
                range: if routed {
                    ROUTED_POOL
                } else if prefix_len == 24 {
                    WIDE_POOL
                } else {
                    POOL
                },
                lease_secs: 600,
                domain: None,
                dns_port: 0,
                router: LAN_GATEWAY,
                extra: Vec::new(),
                authoritative: true,
                netmask: if routed {
                    Ipv4Addr::new(255, 255, 255, 128)
                } else {
                    Ipv4Addr::new(255, 255, 255, 0)
                },
            },
        );
        let mut bed = DockerBed {
            network: format!("{id}net"),
            subnet: String::new(),
            gateway: Ipv4Addr::UNSPECIFIED,
            parent: format!("{id}p"),
            id,
            dnsmasq,
            client,
            remote,
            lan,
            tmp,
            containers: Mutex::new(Vec::new()),
            services: Mutex::new(BTreeSet::new()),
            links: Mutex::new(Vec::new()),
            own_dirs: Mutex::new(None),
            _blackhole: blackhole,
            _lock: lock,
        };
        // The parent: a veth whose other end is on the LAN bridge. No address on our side.
        bed.links.lock().unwrap().push(bed.parent.clone());
        crate::bed::plug_here(&bed.lan, "uplink", &bed.parent);
        bed.create_network(index, prefix_len);
        bed
    }

    fn create_network(&mut self, index: u8, prefix_len: u8) {
        let bridge = format!("{}br", self.id);
        let mut last = String::new();
        // /28: SLOTS slots of 16 addresses; /25: 2 slots of 128; /24: 1 of 256.
        let slots: u8 = 1 << (prefix_len - 24);
        let size: u16 = 256 / u16::from(slots);
        for k in 0..slots {
            let slot = (index % slots + k) % slots;
            let base = (size * u16::from(slot)) as u8;
            let subnet = format!("198.51.100.{base}/{prefix_len}");
            let gateway = Ipv4Addr::new(198, 51, 100, base + 1);
            match docker(&[
                "network",
                "create",
                "--driver",
                "bridge",
                "--subnet",
                &subnet,
                "--gateway",
                &gateway.to_string(),
                "-o",
                &format!("com.docker.network.bridge.name={bridge}"),
                &self.network,
            ]) {
                Ok(_) => {
                    self.subnet = subnet;
                    self.gateway = gateway;
                    return;
                }
                Err(e) if e.contains("overlap") => last = e,
                Err(e) => panic!("creating Docker network {}: {e}", self.network),
            }
        }
        panic!("no free /{prefix_len} in 198.51.100.0/24 for a Docker network: {last}");
    }

    /// From now on every driver this bed runs keeps its state in a run directory and a
    /// lib directory of the bed's own (inside its temporary directory, gone with it),
    /// not in the host's `/run/netcontainer` and `/var/lib/netcontainer`: for tests that
    /// clear the run directory (a simulated reboot) or look at the persisted leases.
    /// Returns (run directory, lib directory).
    pub fn use_own_state_dirs(&self) -> (PathBuf, PathBuf) {
        let dirs = (self.tmp.join("run"), self.tmp.join("lib"));
        *self.own_dirs.lock().unwrap() = Some(dirs.clone());
        dirs
    }

    /// The environment that points a driver at the bed's own directories (empty
    /// without [`DockerBed::use_own_state_dirs`]).
    pub fn driver_env(&self) -> Vec<(String, String)> {
        match &*self.own_dirs.lock().unwrap() {
            Some((run, lib)) => vec![
                ("NETCONTAINER_RUN_DIR".into(), run.display().to_string()),
                ("NETCONTAINER_LIB_DIR".into(), lib.display().to_string()),
            ],
            None => Vec::new(),
        }
    }

    /// `service`'s run (state) directory and lease directory as this bed's drivers see them.
    pub fn service_dirs(&self, service: &str) -> (PathBuf, PathBuf) {
        match &*self.own_dirs.lock().unwrap() {
            Some((run, lib)) => (run.join(service), lib.join(service)),
            None => (state_dir(service), lib_dir().join(service)),
        }
    }

    /// The Docker network's bridge in the root namespace.
    pub fn bridge(&self) -> String {
        format!("{}br", self.id)
    }

    /// `<id><tag>`.
    pub fn name(&self, tag: &str) -> String {
        format!("{}{tag}", self.id)
    }

    /// Remember `service` so drop removes its router and state directory.
    pub fn track_service(&self, service: &str) {
        self.services.lock().unwrap().insert(service.to_string());
    }

    /// Remember a root-namespace link to delete on drop.
    pub fn track_link(&self, link: &str) {
        self.links.lock().unwrap().push(link.to_string());
    }

    /// Start the sample service `<id><tag>` on the bed's network with `SAMPLE_NAME` = its
    /// name and the sample's arguments `args` (e.g. `--http 80 --udp-echo 5353`).
    pub fn run_service(&self, tag: &str, args: &[&str]) -> Service {
        self.container(tag, SAMPLE_IMAGE, &[], args, true)
    }

    /// A container `<id><tag>` of `image` on the bed's network: `docker run -d` (or only
    /// `docker create` when `start` is false) with extra `docker_args` before the image
    /// and `cmd` after it.
    pub fn container(
        &self,
        tag: &str,
        image: &str,
        docker_args: &[&str],
        cmd: &[&str],
        start: bool,
    ) -> Service {
        self.container_on(&self.network, tag, image, docker_args, cmd, start)
    }

    /// [`DockerBed::container`] on another Docker network (removed with the bed all
    /// the same).
    pub fn container_on(
        &self,
        network: &str,
        tag: &str,
        image: &str,
        docker_args: &[&str],
        cmd: &[&str],
        start: bool,
    ) -> Service {
        let name = self.name(tag);
        self.containers.lock().unwrap().push(name.clone());
        self.track_service(&name);
        let sample_name = format!("SAMPLE_NAME={name}");
        let mut a: Vec<&str> = if start {
            vec!["run", "-d"]
        } else {
            vec!["create"]
        };
        a.extend_from_slice(&["--name", &name, "--network", network, "-e", &sample_name]);
        a.extend_from_slice(docker_args);
        a.push(image);
        a.extend_from_slice(cmd);
        docker_ok(&a);
        let ip = if start {
            let fmt = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
            let s = docker_ok(&["inspect", "--format", &fmt, &name]);
            Some(
                s.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name} has no address on {network}: {s:?}")),
            )
        } else {
            None
        };
        Service { name, ip }
    }

    /// Run the driver with `args`, bounded. Services named in `args` are not tracked here:
    /// use the container helpers (or [`DockerBed::track_service`]).
    pub fn nc(&self, args: &[&str]) -> CmdOutput {
        self.nc_with(args, &Invocation::default())
    }

    /// Run the driver with extra environment / a wrapper.
    pub fn nc_with(&self, args: &[&str], inv: &Invocation) -> CmdOutput {
        let n = CALL_N.fetch_add(1, Ordering::Relaxed);
        let out_p = self.tmp.join(format!("nc{n}.out"));
        let err_p = self.tmp.join(format!("nc{n}.err"));
        let bin = crate::bin("netcontainer");
        let mut cmd = match inv.wrapper.split_first() {
            Some((prog, rest)) => {
                let mut c = Command::new(prog);
                c.args(rest).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_p).unwrap())
            .stderr(std::fs::File::create(&err_p).unwrap());
        for (k, v) in self.driver_env().iter().chain(&inv.env) {
            cmd.env(k, v);
        }
        let start = Instant::now();
        let child = cmd.spawn().expect("spawn netcontainer");
        let mut g = ProcGuard::new(child, format!("netcontainer {}", args.join(" ")));
        let status = g.wait_timeout(DRIVER_LIMIT);
        let elapsed = start.elapsed();
        if status.is_none() {
            g.kill();
        }
        let res = CmdOutput {
            status,
            stdout: std::fs::read_to_string(&out_p).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err_p).unwrap_or_default(),
            elapsed,
        };
        let _ = std::fs::remove_file(&out_p);
        let _ = std::fs::remove_file(&err_p);
        res
    }

    /// `netcontainer up SERVICE --parent <parent> --timeout 20 extra...`, without checking.
    pub fn try_up(&self, service: &str, extra: &[&str]) -> CmdOutput {
        self.track_service(service);
        let mut a = vec!["up", service, "--parent", &self.parent, "--timeout", "20"];
        a.extend_from_slice(extra);
        self.nc(&a)
    }

    /// `up` that must succeed; parses `SERVICE ADDRESS PORTS...`.
    pub fn up(&self, service: &str, extra: &[&str]) -> Up {
        let out = self.try_up(service, extra);
        assert!(
            out.ok(),
            "netcontainer up {service} {extra:?} failed: {out}"
        );
        parse_up(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// `netcontainer down SERVICE`.
    pub fn down(&self, service: &str) -> CmdOutput {
        self.nc(&["down", service])
    }

    /// `ls --json`, parsed (panics unless it succeeds with a JSON list).
    pub fn ls_json(&self) -> Vec<Value> {
        let out = self.nc(&["ls", "--json"]);
        assert!(out.ok(), "ls --json failed: {out}");
        let v: Value = serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("ls --json is not JSON ({e}): {out}"));
        v.as_array()
            .unwrap_or_else(|| panic!("ls --json is not a list: {out}"))
            .clone()
    }

    /// The `ls --json` entry of `service`, if listed.
    pub fn ls_entry(&self, service: &str) -> Option<Value> {
        self.ls_json()
            .into_iter()
            .find(|e| e["service"].as_str() == Some(service))
    }

    /// `status SERVICE --json`, parsed (panics unless it succeeds).
    pub fn status_json(&self, service: &str) -> Value {
        let out = self.nc(&["status", service, "--json"]);
        assert!(out.ok(), "status {service} --json failed: {out}");
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {out}"))
    }

    /// `curl http://addr:port/` from the LAN client (max `secs`).
    pub fn fetch(&self, addr: Ipv4Addr, port: u16, secs: u32) -> Result<String, String> {
        crate::service::curl(&self.client, addr, port, secs)
    }

    /// A UDP round trip from the LAN client: Ok(reply).
    pub fn udp(&self, addr: Ipv4Addr, port: u16, payload: &[u8]) -> Result<Vec<u8>, String> {
        crate::service::udp_echo(
            &self.client,
            addr,
            port,
            payload,
            Duration::from_millis(700),
            4,
        )
    }

    /// What `service` left behind: containers carrying its label, its state directory,
    /// its lease directory.
    pub fn leftovers(&self, service: &str) -> Vec<String> {
        let mut l: Vec<String> = containers_of(service)
            .into_iter()
            .map(|c| format!("container {c} labelled netcontainer.service={service}"))
            .collect();
        let (dir, lease_dir) = self.service_dirs(service);
        if dir.exists() {
            l.push(format!("state directory {}", dir.display()));
        }
        if lease_dir.exists() {
            l.push(format!("lease directory {}", lease_dir.display()));
        }
        l
    }

    /// Panics unless [`DockerBed::leftovers`] is empty.
    pub fn assert_clean(&self, service: &str) {
        let l = self.leftovers(service);
        assert!(l.is_empty(), "{service} left behind: {l:?}");
    }

    /// Root-namespace links that belong to this bed's world: ports of the Docker bridge
    /// (a router's veth), macvlan/ipvlan links on a parent of ours, links named `lan0`.
    /// (A global "no new link" check would race with other tests creating containers.)
    pub fn my_links(&self) -> BTreeSet<String> {
        let out = crate::ip(&["-j", "-d", "link", "show"]);
        let v: Value = serde_json::from_str(&out).expect("ip -j link json");
        let bridge = self.bridge();
        let parents = self.links.lock().unwrap().clone();
        let mut set = BTreeSet::new();
        for l in v.as_array().into_iter().flatten() {
            let name = l["ifname"].as_str().unwrap_or_default();
            let master = l["master"].as_str().unwrap_or_default();
            let link = l["link"].as_str().unwrap_or_default();
            let kind = l["linkinfo"]["info_kind"].as_str().unwrap_or_default();
            let on_parent =
                matches!(kind, "macvlan" | "ipvlan") && parents.iter().any(|p| p == link);
            if master == bridge || on_parent || name == LAN_IF {
                set.insert(format!("{name} ({kind}, master {master:?}, link {link:?})"));
            }
        }
        set
    }

    /// `docker logs` of `service`'s router (diagnostics).
    pub fn router_logs(&self, service: &str) -> String {
        let n = router_name(service);
        match Command::new("docker")
            .args(["logs", "--tail", "40", &n])
            .output()
        {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => e.to_string(),
        }
    }
}

/// Parses `SERVICE ADDRESS PORTS...` (the one line `up` prints).
pub fn parse_up(out: &CmdOutput) -> Result<Up, String> {
    let line = out
        .stdout
        .lines()
        .find(|l| !l.trim().is_empty())
        .ok_or("up printed nothing")?;
    let mut w = line.split_whitespace();
    let service = w.next().ok_or("no service")?.to_string();
    let address = w
        .next()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("no address in {line:?}"))?;
    Ok(Up {
        service,
        address,
        ports: w.map(String::from).collect(),
        out: CmdOutput {
            status: out.status,
            stdout: out.stdout.clone(),
            stderr: out.stderr.clone(),
            elapsed: out.elapsed,
        },
    })
}

/// A Docker network of a test's own on a free /28 of 198.51.100.0/24, removed on drop
/// with the bed's containers still on it (services, routers: the bed's own guard comes
/// later). `.0` is its name.
pub struct ExtraNet(pub String, String);

impl ExtraNet {
    /// `docker network create --subnet S --gateway G OPTS <bed id><tag>`.
    pub fn create(bed: &DockerBed, tag: &str, opts: &[&str]) -> ExtraNet {
        Self::make(bed, tag, opts, true)
    }

    /// [`ExtraNet::create`] without `--gateway`, the usual way: Docker picks the
    /// gateway and (20.10) reports none in the network's IPAM.
    pub fn without_gateway(bed: &DockerBed, tag: &str, opts: &[&str]) -> ExtraNet {
        Self::make(bed, tag, opts, false)
    }

    fn make(bed: &DockerBed, tag: &str, opts: &[&str], gateway: bool) -> ExtraNet {
        let name = bed.name(tag);
        let mut last = String::new();
        for slot in (0..16u16).rev() {
            let base = (slot * 16) as u8;
            let subnet = format!("198.51.100.{base}/28");
            let gw = Ipv4Addr::new(198, 51, 100, base + 1).to_string();
            let mut a = vec![
                "network", "create", "--driver", "bridge", "--subnet", &subnet,
            ];
            if gateway {
                a.extend_from_slice(&["--gateway", &gw]);
            }
            a.extend_from_slice(opts);
            a.push(&name);
            match docker(&a) {
                Ok(_) => return ExtraNet(name, bed.id.clone()),
                Err(e) if e.contains("overlap") => last = e,
                Err(e) => panic!("creating network {name}: {e}"),
            }
        }
        panic!("no free /28 in 198.51.100.0/24: {last}");
    }
}

impl Drop for ExtraNet {
    fn drop(&mut self) {
        let fmt = "{{range .Containers}}{{.Name}} {{end}}";
        let on = docker(&["network", "inspect", "--format", fmt, &self.0]).unwrap_or_default();
        for c in on.split_whitespace() {
            if c.starts_with(&self.1) || c.starts_with(&format!("netcontainer-{}", self.1)) {
                let _ = docker(&["rm", "-f", "-v", c]);
            }
        }
        for _ in 0..20 {
            if docker(&["network", "rm", &self.0]).is_ok()
                || docker(&["network", "inspect", &self.0]).is_err()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for DockerBed {
    fn drop(&mut self) {
        let services = std::mem::take(&mut *self.services.lock().unwrap());
        if std::thread::panicking() {
            for s in &services {
                if docker(&["inspect", &router_name(s)]).is_ok() {
                    eprintln!(
                        "--- docker logs {} ---\n{}",
                        router_name(s),
                        self.router_logs(s)
                    );
                }
            }
        }
        for s in &services {
            // Only a router that says it is this service's.
            let r = router_name(s);
            let label = docker(&[
                "inspect",
                "--format",
                "{{index .Config.Labels \"netcontainer.service\"}}",
                &r,
            ]);
            if label.as_deref().map(str::trim) == Ok(s.as_str()) {
                let _ = docker(&["rm", "-f", "-v", &r]);
            }
            let (dir, lease_dir) = self.service_dirs(s);
            for d in [dir, lease_dir] {
                if d.exists() {
                    let _ = std::fs::remove_dir_all(&d);
                }
            }
        }
        for c in std::mem::take(&mut *self.containers.lock().unwrap()) {
            let _ = docker(&["rm", "-f", "-v", &c]);
        }
        if !self.subnet.is_empty() {
            // Retried: endpoints of just-removed containers may linger a moment.
            let _ = crate::wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
                docker(&["network", "rm", &self.network]).is_ok()
                    || docker(&["network", "inspect", &self.network]).is_err()
            });
        }
        for l in std::mem::take(&mut *self.links.lock().unwrap()) {
            let _ = Command::new("ip")
                .args(["link", "del", &l])
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_up_line() {
        let o = CmdOutput {
            status: None,
            stdout: "web1 203.0.113.57 80/tcp 5353/udp\n".into(),
            stderr: String::new(),
            elapsed: Duration::ZERO,
        };
        let u = parse_up(&o).unwrap();
        assert_eq!(u.service, "web1");
        assert_eq!(u.address, Ipv4Addr::new(203, 0, 113, 57));
        assert_eq!(
            u.ports,
            ["5353/udp", "80/tcp"]
                .map(String::from)
                .into_iter()
                .collect()
        );
        assert!(in_pool(u.address));
        assert!(!in_pool(Ipv4Addr::new(203, 0, 113, 151)));
    }
}
