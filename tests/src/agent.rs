//! The netcontainer agent in a router namespace, and the `netcontainer agent` driver calls.
//!
//! Contracts (docs/architecture "Contracts other tools rely on"):
//! * `netcontainer-agent --socket PATH --state-dir DIR`, run with `ip netns exec ROUTER`,
//!   logs to stderr (captured here to `agent-<n>.log` in the test's directory).
//! * `netcontainer agent apply --socket PATH --interface lan0 [--forward ...] [--hostname
//!   NAME] [--client-id STR] [--wait SECS]` prints the bound address; exit 0 on success,
//!   non-zero with a one-line `error: ...` on failure.
//! * `netcontainer agent status --socket PATH --json` prints the status JSON.
//!
//! The driver runs on the host (root namespace): the socket is a plain file path.

use crate::netns::Netns;
use crate::proc::ProcGuard;
use netcontainer_proto::contract::flag;
use serde_json::Value;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Arguments of `netcontainer agent apply`.
#[derive(Clone, Debug, Default)]
pub struct ApplyArgs {
    pub interface: String,
    /// `PROTO:PORT[-PORT]=IP:PORT`, e.g. `tcp:80=198.51.100.2:80`.
    pub forwards: Vec<String>,
    pub hostname: Option<String>,
    pub client_id: Option<String>,
    pub wait: Option<u32>,
    /// `--broadcast`: the BOOTP broadcast flag (what the driver sets for ipvlan).
    pub broadcast: bool,
    /// `--ipv6 off|auto` (the driver's default: auto).
    pub ipv6: Option<String>,
    /// `--service-address6`: the service's IPv6 address (kernel path).
    pub service_address6: Option<String>,
    /// `--gateway-for ADDR`: gateway mode for the service at ADDR.
    pub gateway_for: Option<String>,
    /// More arguments, as given (e.g. `--dhcp-server ADDR`).
    pub extra: Vec<String>,
}

impl ApplyArgs {
    pub fn new(interface: &str) -> ApplyArgs {
        ApplyArgs {
            interface: interface.into(),
            ..Default::default()
        }
    }
    pub fn forward(mut self, f: &str) -> Self {
        self.forwards.push(f.into());
        self
    }
    pub fn hostname(mut self, h: &str) -> Self {
        self.hostname = Some(h.into());
        self
    }
    pub fn client_id(mut self, c: &str) -> Self {
        self.client_id = Some(c.into());
        self
    }
    pub fn broadcast(mut self) -> Self {
        self.broadcast = true;
        self
    }
    pub fn wait(mut self, secs: u32) -> Self {
        self.wait = Some(secs);
        self
    }
    pub fn ipv6(mut self, mode: &str) -> Self {
        self.ipv6 = Some(mode.into());
        self
    }
    pub fn service_address6(mut self, a: &str) -> Self {
        self.service_address6 = Some(a.into());
        self
    }
    pub fn gateway_for(mut self, a: &str) -> Self {
        self.gateway_for = Some(a.into());
        self
    }
    /// Appends a switch (a flag without a value, e.g. `--mdns`).
    pub fn switch(mut self, flag: &str) -> Self {
        self.extra.push(flag.into());
        self
    }
    /// Appends `flag value` to the command line.
    pub fn arg(mut self, flag: &str, value: &str) -> Self {
        self.extra.push(flag.into());
        self.extra.push(value.into());
        self
    }
}

/// Output of one driver call.
#[derive(Debug)]
pub struct CmdOutput {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl CmdOutput {
    pub fn ok(&self) -> bool {
        self.status.map(|s| s.success()).unwrap_or(false)
    }
    /// The first IPv4 address printed on stdout.
    pub fn address(&self) -> Option<Ipv4Addr> {
        self.stdout
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .find_map(|w| w.parse().ok())
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit {:?} after {:?}\nstdout: {}\nstderr: {}",
            self.status,
            self.elapsed,
            self.stdout.trim(),
            self.stderr.trim()
        )
    }
}

/// The lease part of the status JSON. Numbers are read as f64 to accept ints or floats.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseStatus {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub server_id: Option<Ipv4Addr>,
    pub lease_secs: f64,
    pub renew_in_secs: f64,
    pub rebind_in_secs: f64,
    pub expires_in_secs: f64,
    pub dns: Vec<Ipv4Addr>,
}

/// The status JSON, parsed leniently (unknown fields kept in `raw`).
#[derive(Clone, Debug)]
pub struct AgentStatus {
    pub state: String,
    pub interface: Option<String>,
    pub lease: Option<LeaseStatus>,
    pub last_error: Option<String>,
    pub forwards: Vec<Value>,
    pub raw: Value,
}

impl AgentStatus {
    pub fn parse(v: Value) -> Result<AgentStatus, String> {
        let state = v["state"]
            .as_str()
            .ok_or_else(|| format!("status without a state: {v}"))?
            .to_string();
        let ip = |x: &Value| x.as_str().and_then(|s| s.parse::<Ipv4Addr>().ok());
        let num = |x: &Value| x.as_f64().unwrap_or(f64::NAN);
        let lease = match &v["lease"] {
            Value::Null => None,
            l => Some(LeaseStatus {
                address: ip(&l["address"]).ok_or_else(|| format!("lease without address: {l}"))?,
                prefix_len: l["prefix_len"].as_u64().unwrap_or(0) as u8,
                gateway: ip(&l["gateway"]),
                server_id: ip(&l["server_id"]),
                lease_secs: num(&l["lease_secs"]),
                renew_in_secs: num(&l["renew_in_secs"]),
                rebind_in_secs: num(&l["rebind_in_secs"]),
                expires_in_secs: num(&l["expires_in_secs"]),
                dns: l["dns"]
                    .as_array()
                    .map(|a| a.iter().filter_map(ip).collect())
                    .unwrap_or_default(),
            }),
        };
        Ok(AgentStatus {
            state,
            interface: v["interface"].as_str().map(String::from),
            lease,
            last_error: v["last_error"].as_str().map(String::from),
            forwards: v["forwards"].as_array().cloned().unwrap_or_default(),
            raw: v,
        })
    }

    pub fn is_bound(&self) -> bool {
        self.state == "bound" && self.lease.is_some()
    }

    pub fn address(&self) -> Option<Ipv4Addr> {
        self.lease.as_ref().map(|l| l.address)
    }
}

static AGENT_N: AtomicU32 = AtomicU32::new(0);

/// A running `netcontainer-agent` in a router namespace. Drop kills it (SIGKILL, by pid)
/// and, if the test is failing, prints the tail of its log.
pub struct Agent {
    ns: Arc<Netns>,
    socket: PathBuf,
    state_dir: PathBuf,
    dir: PathBuf,
    proc: Option<ProcGuard>,
    logs: Vec<PathBuf>,
    id: u32,
    /// Extra agent arguments (e.g. `--arp-probe`), kept across restarts.
    extra: Vec<String>,
}

impl Agent {
    /// Start an agent in `router` with its socket `dir/agent.sock` and state `dir/state`,
    /// and wait (bounded) until the socket accepts connections.
    pub fn start(router: &Arc<Netns>, dir: &Path) -> Agent {
        Agent::start_with_args(router, dir, &[])
    }

    /// [`Agent::start`] with extra agent arguments (e.g. `["--arp-probe"]`).
    pub fn start_with_args(router: &Arc<Netns>, dir: &Path, extra: &[&str]) -> Agent {
        let id = AGENT_N.fetch_add(1, Ordering::Relaxed);
        let mut a = Agent {
            ns: router.clone(),
            socket: dir.join(format!("agent{id}.sock")),
            state_dir: dir.join(format!("state{id}")),
            dir: dir.to_path_buf(),
            proc: None,
            logs: Vec::new(),
            id,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        std::fs::create_dir_all(&a.state_dir).unwrap();
        a.launch();
        a
    }

    fn launch(&mut self) {
        assert!(self.proc.is_none(), "agent already running");
        let log = self
            .dir
            .join(format!("agent{}-{}.log", self.id, self.logs.len()));
        let agent = crate::bin("netcontainer-agent");
        let log_level = std::env::var("NETCONTAINER_LOG").unwrap_or_else(|_| "debug".into());
        let mut argv = vec![
            agent.to_str().unwrap(),
            flag::SOCKET,
            self.socket.to_str().unwrap(),
            flag::STATE_DIR,
            self.state_dir.to_str().unwrap(),
        ];
        argv.extend(self.extra.iter().map(|s| s.as_str()));
        let proc = self
            .ns
            .spawn_guarded(&argv, &[("NETCONTAINER_LOG", &log_level)], Some(&log));
        self.logs.push(log);
        self.proc = Some(proc);
        self.wait_socket(Duration::from_secs(10));
    }

    /// Wait until the control socket accepts a connection (a stale socket file left by a
    /// killed agent refuses connections, so this really waits for the new one).
    pub fn wait_socket(&mut self, timeout: Duration) {
        let ok = crate::wait_until(timeout, Duration::from_millis(2), || {
            std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
                || !self.proc.as_mut().map(|p| p.running()).unwrap_or(false)
        });
        let running = self.running();
        assert!(
            ok && running,
            "agent did not serve its socket {} (running: {running}):\n{}",
            self.socket.display(),
            self.log()
        );
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.pid())
    }

    pub fn running(&mut self) -> bool {
        self.proc.as_mut().map(|p| p.running()).unwrap_or(false)
    }

    /// Waits until the agent has persisted `file` (in its state directory,
    /// which is also its lease directory here): a lease is written after its
    /// address is in place, off the agent's runtime, so a kill -9 right after
    /// the address appears may come before it.
    pub fn wait_persisted(&self, file: &str, timeout: Duration) {
        let path = self.state_dir.join(file);
        assert!(
            crate::wait_until(timeout, Duration::from_millis(20), || path.exists()),
            "{} not written within {timeout:?}:\n{}",
            path.display(),
            self.log()
        );
    }

    /// kill -9: no release, no cleanup (the address and rules stay).
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// SIGTERM and wait up to `grace` (then SIGKILL). Returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut p = self.proc.take()?;
        p.signal(libc::SIGTERM);
        let st = p.wait_timeout(grace);
        if st.is_none() {
            p.kill();
        }
        st
    }

    /// Start again with the same socket path and state dir (after `kill9`/`terminate`).
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// All of this agent's logs so far (every start), concatenated.
    pub fn log(&self) -> String {
        self.logs
            .iter()
            .map(|p| {
                format!(
                    "== {} ==\n{}",
                    p.display(),
                    std::fs::read_to_string(p).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `netcontainer agent apply ...` (bounded: killed after wait + 30 s).
    pub fn apply(&self, args: &ApplyArgs) -> CmdOutput {
        let mut a: Vec<String> = vec![
            "agent".into(),
            "apply".into(),
            "--socket".into(),
            self.socket.display().to_string(),
            "--interface".into(),
            args.interface.clone(),
        ];
        for f in &args.forwards {
            a.push("--forward".into());
            a.push(f.clone());
        }
        if let Some(h) = &args.hostname {
            a.push("--hostname".into());
            a.push(h.clone());
        }
        if let Some(c) = &args.client_id {
            a.push("--client-id".into());
            a.push(c.clone());
        }
        if args.broadcast {
            a.push("--broadcast".into());
        }
        if let Some(m) = &args.ipv6 {
            a.push("--ipv6".into());
            a.push(m.clone());
        }
        if let Some(s) = &args.service_address6 {
            a.push("--service-address6".into());
            a.push(s.clone());
        }
        if let Some(g) = &args.gateway_for {
            a.push("--gateway-for".into());
            a.push(g.clone());
        }
        a.extend(args.extra.iter().cloned());
        if let Some(w) = args.wait {
            a.push("--wait".into());
            a.push(w.to_string());
        }
        let limit = Duration::from_secs(args.wait.unwrap_or(30) as u64 + 30);
        driver(&self.dir, &a, limit)
    }

    /// `netcontainer agent status --json`, raw.
    pub fn status_json(&self) -> Result<Value, String> {
        let out = driver(
            &self.dir,
            &[
                "agent".into(),
                "status".into(),
                "--socket".into(),
                self.socket.display().to_string(),
                "--json".into(),
            ],
            Duration::from_secs(10),
        );
        if !out.ok() {
            return Err(out.to_string());
        }
        serde_json::from_str(&out.stdout).map_err(|e| format!("status is not JSON ({e}): {out}"))
    }

    /// Parsed status; panics if the driver fails or the JSON lacks `state`.
    pub fn status(&self) -> AgentStatus {
        let v = self
            .status_json()
            .unwrap_or_else(|e| panic!("agent status: {e}"));
        AgentStatus::parse(v).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Poll the status (every 100 ms) until `pred` holds; None after `timeout`.
    pub fn wait_status(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&AgentStatus) -> bool,
    ) -> Option<AgentStatus> {
        crate::wait_for(timeout, Duration::from_millis(100), || {
            let st = AgentStatus::parse(self.status_json().ok()?).ok()?;
            pred(&st).then_some(st)
        })
    }

    /// Wait for state `bound` with a lease; panics with the last status and log otherwise.
    pub fn wait_bound(&self, timeout: Duration) -> AgentStatus {
        match self.wait_status(timeout, |s| s.is_bound()) {
            Some(s) => s,
            None => panic!(
                "agent not bound after {timeout:?}; last status: {:?}",
                self.status_json()
            ),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "--- agent log (last 80 lines) ---\n{}",
                lines[lines.len().saturating_sub(80)..].join("\n")
            );
        }
        self.kill9();
    }
}

static CALL_N: AtomicU32 = AtomicU32::new(0);

/// Run the driver `netcontainer args...` on the host, bounded by `limit`.
pub fn driver(dir: &Path, args: &[String], limit: Duration) -> CmdOutput {
    let n = CALL_N.fetch_add(1, Ordering::Relaxed);
    let out_p = dir.join(format!("driver{n}.out"));
    let err_p = dir.join(format!("driver{n}.err"));
    let start = Instant::now();
    let child = Command::new(crate::bin("netcontainer"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_p).unwrap())
        .stderr(std::fs::File::create(&err_p).unwrap())
        .spawn()
        .expect("spawn netcontainer");
    let mut g = ProcGuard::new(child, "netcontainer");
    let status = g.wait_timeout(limit);
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

/// A bed with one router and a running agent that has not received a plan yet (the lease
/// and option tests' world).
pub struct AgentBed {
    // Field order = drop order: the agent goes first, then the temp dir, then the bed.
    pub agent: Agent,
    _tmp: crate::TempDir,
    pub lan: crate::Lan,
}

impl AgentBed {
    // Not `Default`: it builds namespaces and starts a process.
    #[allow(clippy::new_without_default)]
    pub fn new() -> AgentBed {
        let lan = crate::Lan::with_router();
        let tmp = crate::TempDir::new("agentbed");
        let agent = Agent::start(lan.router(), tmp.path());
        AgentBed {
            agent,
            _tmp: tmp,
            lan,
        }
    }

    /// `agent apply args`, asserting success; returns the address.
    pub fn apply(&self, args: ApplyArgs) -> Ipv4Addr {
        let out = self.agent.apply(&args);
        assert!(out.ok(), "agent apply failed: {out}");
        out.address()
            .unwrap_or_else(|| panic!("apply printed no address: {out}"))
    }

    /// `agent apply --interface lan0 --wait 15`.
    pub fn bind(&self) -> Ipv4Addr {
        self.apply(ApplyArgs::new(netcontainer_proto::contract::LAN_IF).wait(15))
    }

    /// The router's IPv4 addresses on lan0.
    pub fn addrs(&self) -> Vec<(Ipv4Addr, u8)> {
        crate::addr_on(self.lan.router(), netcontainer_proto::contract::LAN_IF)
    }

    /// lan0's MAC.
    pub fn mac(&self) -> [u8; 6] {
        crate::dhcp::parse_mac(&crate::mac_of(
            self.lan.router(),
            netcontainer_proto::contract::LAN_IF,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_status() {
        let v: Value = serde_json::from_str(
            r#"{"state":"bound","interface":"lan0","lease":{"address":"192.0.2.50","prefix_len":24,
            "gateway":"192.0.2.1","server_id":"192.0.2.1","lease_secs":120,"renew_in_secs":59.5,
            "rebind_in_secs":100,"expires_in_secs":119,"dns":["192.0.2.1"]},"forwards":[],"last_error":null}"#,
        )
        .unwrap();
        let s = AgentStatus::parse(v).unwrap();
        assert!(s.is_bound());
        assert_eq!(s.address(), Some(Ipv4Addr::new(192, 0, 2, 50)));
        assert_eq!(s.lease.unwrap().renew_in_secs, 59.5);
        let o = CmdOutput {
            status: None,
            stdout: "lan0 192.0.2.57/24\n".into(),
            stderr: String::new(),
            elapsed: Duration::ZERO,
        };
        assert_eq!(o.address(), Some(Ipv4Addr::new(192, 0, 2, 57)));
    }
}
