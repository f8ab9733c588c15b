//! IPv6 on the LAN bed: the prefix 2001:db8:1::/64 on br0 (documentation range only),
//! radvd for router advertisements, ISC Kea (kea-dhcp6) for DHCPv6, and readers of the
//! router's IPv6 addresses. dnsmasq doing RA plus DHCPv6 runs through [`crate::Dnsmasq`]
//! with [`dnsmasq_v6_args`].
//!
//! Facts (radvd 2.19, Kea 2.2.0, dnsmasq 2.90, in this bed):
//! * radvd checks that IPv6 forwarding is on (a router's setting; [`lan_v6`] turns it on
//!   in the LAN namespace only), answers Router Solicitations at once and otherwise
//!   advertises every `MinRtrAdvInterval`..`MaxRtrAdvInterval`; it sends a last RA with
//!   router lifetime 0 when it stops.
//! * kea-dhcp6 needs `interfaces-config.interfaces = ["br0"]`, a subnet with
//!   `"interface": "br0"` (the clients' messages come from link-local addresses), and a
//!   `data-directory` of the test's own (it writes its server DUID there, else it fails
//!   on /var/lib/kea).
//! * Kea's memfile for v6 (`leases6.csv`) appends a row per change; after a Release the
//!   address's last row is released: [`Kea6::is_released`] accepts `valid_lifetime` 0 or
//!   state 2 (expired-reclaimed), as for v4.

use crate::TempDir;
use crate::netns::Netns;
use crate::proc::ProcGuard;
use serde_json::json;
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The LAN's IPv6 prefix and the server's address on br0.
pub const PREFIX: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0);
pub const SERVER6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// Kea's and dnsmasq's DHCPv6 pool.
pub const POOL_FIRST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x100);
pub const POOL_LAST: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x1ff);

/// Gives br0 of the LAN namespace 2001:db8:1::1/64 (no DAD, so servers can bind at once)
/// and turns IPv6 forwarding on in that namespace (radvd checks for it).
pub fn lan_v6(lan: &Netns) {
    lan.exec_ok(&["sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1"]);
    lan.ip(&[
        "-6",
        "addr",
        "add",
        &format!("{SERVER6}/64"),
        "dev",
        "br0",
        "nodad",
    ]);
    // The bridge's link-local address must be usable before the servers bind.
    let ok = crate::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        !lan.ip(&["-6", "addr", "show", "dev", "br0", "tentative"])
            .contains("inet6")
    });
    assert!(ok, "br0's IPv6 addresses stayed tentative");
}

/// One IPv6 address of an interface as `ip -j addr` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Addr6 {
    pub address: Ipv6Addr,
    pub prefix_len: u8,
    /// Seconds; `None` for forever.
    pub valid: Option<u64>,
    pub preferred: Option<u64>,
}

/// The global IPv6 addresses of `ifname` in `ns`.
pub fn addrs6(ns: &Netns, ifname: &str) -> Vec<Addr6> {
    let out = ns.ip(&["-j", "-6", "addr", "show", "dev", ifname, "scope", "global"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    let mut res = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        for a in link["addr_info"].as_array().into_iter().flatten() {
            let Some(address) = a["local"].as_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let life = |k: &str| a[k].as_u64().filter(|v| *v != u64::from(u32::MAX));
            res.push(Addr6 {
                address,
                prefix_len: a["prefixlen"].as_u64().unwrap_or(0) as u8,
                valid: life("valid_life_time"),
                preferred: life("preferred_life_time"),
            });
        }
    }
    res
}

/// The IPv6 default routes of `ns` (gateway addresses).
pub fn default_routes6(ns: &Netns) -> Vec<Ipv6Addr> {
    let out = ns.ip(&["-j", "-6", "route", "show", "default"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["gateway"].as_str()?.parse().ok())
        .collect()
}

/// The SLAAC address of `mac` ("02:42:...") in [`PREFIX`] (modified EUI-64).
pub fn slaac_of(mac: &str) -> Ipv6Addr {
    let m: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    let mut o = PREFIX.octets();
    o[8..].copy_from_slice(&[m[0] ^ 2, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]);
    Ipv6Addr::from(o)
}

/// The link-local address of `mac` (fe80::/64 and the modified EUI-64).
pub fn link_local_of(mac: &str) -> Ipv6Addr {
    let s = slaac_of(mac).segments();
    Ipv6Addr::new(0xfe80, 0, 0, 0, s[4], s[5], s[6], s[7])
}

/// Sends a Router Advertisement with `hop_limit` to ff02::1 on `ifname` of the current
/// namespace, advertising `prefix`/64 with the A flag (a forged one, for tests).
pub fn send_ra(ifname: &str, hop_limit: u32, prefix: Ipv6Addr) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    s.bind_device(Some(ifname.as_bytes()))?;
    s.set_multicast_hops_v6(hop_limit)?;
    let mut p = vec![134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
    p.extend_from_slice(&[
        3, 4, 64, 0xc0, 0, 0, 0x0e, 0x10, 0, 0, 0x07, 0x08, 0, 0, 0, 0,
    ]);
    p.extend_from_slice(&prefix.octets());
    let name = std::ffi::CString::new(ifname).map_err(std::io::Error::other)?;
    // SAFETY: a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if idx == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let to: socket2::SockAddr =
        std::net::SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, idx).into();
    s.send_to(&p, &to).map(|_| ())
}

/// What radvd advertises.
#[derive(Clone, Debug)]
pub struct RadvdOpts {
    pub managed: bool,
    pub other: bool,
    /// The prefix's A flag (SLAAC).
    pub autonomous: bool,
    pub valid: u32,
    pub preferred: u32,
    pub router_lifetime: u32,
}

impl Default for RadvdOpts {
    fn default() -> Self {
        RadvdOpts {
            managed: false,
            other: false,
            autonomous: true,
            valid: 600,
            preferred: 300,
            router_lifetime: 600,
        }
    }
}

/// radvd in the foreground in the LAN namespace, advertising [`PREFIX`] on br0.
pub struct Radvd {
    proc: Option<ProcGuard>,
    dir: TempDir,
}

impl Radvd {
    pub fn start(lan: &Arc<Netns>, o: RadvdOpts) -> Radvd {
        let dir = TempDir::new("radvd");
        let onoff = |b: bool| if b { "on" } else { "off" };
        let conf = format!(
            "interface br0 {{\n  AdvSendAdvert on;\n  MinRtrAdvInterval 3;\n  MaxRtrAdvInterval 4;\n  \
             AdvManagedFlag {};\n  AdvOtherConfigFlag {};\n  AdvDefaultLifetime {};\n  \
             prefix {PREFIX}/64 {{\n    AdvOnLink on;\n    AdvAutonomous {};\n    \
             AdvValidLifetime {};\n    AdvPreferredLifetime {};\n  }};\n}};\n",
            onoff(o.managed),
            onoff(o.other),
            o.router_lifetime,
            onoff(o.autonomous),
            o.valid,
            o.preferred
        );
        let conf_path = dir.join("radvd.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let (c, pid, log) = (
            conf_path.display().to_string(),
            dir.join("radvd.pid").display().to_string(),
            dir.join("radvd.log").display().to_string(),
        );
        let proc = lan.spawn_guarded(
            &[
                "radvd", "-n", "-C", &c, "-p", &pid, "-m", "logfile", "-l", &log, "-d", "3",
            ],
            &[],
            Some(&dir.join("radvd.out")),
        );
        let mut r = Radvd {
            proc: Some(proc),
            dir,
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            r.proc.as_mut().unwrap().running(),
            "radvd did not start:\n{}\n{}",
            crate::tail(&r.dir.join("radvd.out"), 20),
            crate::tail(&r.dir.join("radvd.log"), 20)
        );
        r
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(5));
        }
    }
}

impl Drop for Radvd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- radvd log ---\n{}",
                crate::tail(&self.dir.join("radvd.log"), 30)
            );
        }
        self.stop();
    }
}

#[derive(Clone, Debug)]
pub struct Kea6Opts {
    pub valid: u32,
    pub preferred: u32,
    pub renew: u32,
    pub rebind: u32,
    pub rapid_commit: bool,
}

impl Default for Kea6Opts {
    fn default() -> Self {
        Kea6Opts {
            valid: 600,
            preferred: 300,
            renew: 150,
            rebind: 240,
            rapid_commit: false,
        }
    }
}

impl Kea6Opts {
    /// Short timers for renew/rebind/expiry tests.
    pub fn short(valid: u32, renew: u32, rebind: u32) -> Kea6Opts {
        Kea6Opts {
            valid,
            preferred: valid,
            renew,
            rebind,
            rapid_commit: false,
        }
    }

    fn config(&self, dir: &std::path::Path) -> serde_json::Value {
        json!({"Dhcp6": {
            // The server's DUID file goes here, not to /var/lib/kea.
            "data-directory": dir.display().to_string(),
            "interfaces-config": {"interfaces": ["br0"]},
            "lease-database": {
                "type": "memfile",
                "persist": true,
                "name": dir.join("leases6.csv").display().to_string(),
                "lfc-interval": 0
            },
            "valid-lifetime": self.valid,
            "preferred-lifetime": self.preferred,
            "renew-timer": self.renew,
            "rebind-timer": self.rebind,
            "subnet6": [{
                "id": 1,
                "subnet": format!("{PREFIX}/64"),
                "interface": "br0",
                "rapid-commit": self.rapid_commit,
                "pools": [{"pool": format!("{POOL_FIRST} - {POOL_LAST}")}],
                "option-data": [{"name": "dns-servers", "data": SERVER6.to_string()}]
            }],
            "loggers": [{
                "name": "kea-dhcp6",
                "output_options": [{"output": dir.join("kea6.log").display().to_string()}],
                "severity": "DEBUG",
                "debuglevel": 55
            }]
        }})
    }
}

/// One row of Kea's v6 memfile.
#[derive(Clone, Debug, PartialEq)]
pub struct Kea6Lease {
    pub address: Ipv6Addr,
    pub duid: String,
    pub valid_lifetime: u64,
    pub expire: u64,
    pub hostname: String,
    pub state: u32,
}

/// kea-dhcp6 in the foreground in the LAN namespace.
pub struct Kea6 {
    ns: Arc<Netns>,
    dir: TempDir,
    opts: Kea6Opts,
    proc: Option<ProcGuard>,
    starts: u32,
}

impl Kea6 {
    pub fn start(lan: &Arc<Netns>, opts: Kea6Opts) -> Kea6 {
        let mut k = Kea6 {
            ns: lan.clone(),
            dir: TempDir::new("kea6"),
            opts,
            proc: None,
            starts: 0,
        };
        k.launch();
        k
    }

    fn launch(&mut self) {
        let conf = self.dir.join("kea-dhcp6.json");
        std::fs::write(
            &conf,
            serde_json::to_string_pretty(&self.opts.config(self.dir.path())).unwrap(),
        )
        .unwrap();
        let before = self.log().matches("DHCP6_STARTED").count();
        self.starts += 1;
        let out = self.dir.join(format!("kea6-{}.out", self.starts));
        let d = self.dir.path().display().to_string();
        let c = conf.display().to_string();
        let proc = self.ns.spawn_guarded(
            &["kea-dhcp6", "-c", &c],
            &[("KEA_PIDFILE_DIR", &d), ("KEA_LOCKFILE_DIR", &d)],
            Some(&out),
        );
        self.proc = Some(proc);
        let ok = crate::wait_until(Duration::from_secs(15), Duration::from_millis(10), || {
            self.log().matches("DHCP6_STARTED").count() > before
        });
        if !ok || !self.proc.as_mut().unwrap().running() {
            panic!(
                "kea-dhcp6 did not start:\n{}\n{}",
                crate::tail(&out, 30),
                crate::tail(&self.dir.join("kea6.log"), 30)
            );
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(5));
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kea6.log")).unwrap_or_default()
    }

    /// Kea's log lines of received client messages of `kind` as Kea names them (e.g.
    /// "SOLICIT", "RENEW", "INFORMATION_REQUEST").
    pub fn received(&self, kind: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("DHCP6_BUFFER_RECEIVED") || l.contains("DHCP6_PACKET_RECEIVED"))
            .filter(|l| l.contains(kind))
            .count()
    }

    /// Every row of the memfile, in order.
    pub fn lease_rows(&self) -> Vec<Kea6Lease> {
        let text = std::fs::read_to_string(self.dir.join("leases6.csv")).unwrap_or_default();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        let col = |name: &str| header.iter().position(|h| *h == name);
        let (Some(a), Some(d), Some(v), Some(e), Some(h), Some(s)) = (
            col("address"),
            col("duid"),
            col("valid_lifetime"),
            col("expire"),
            col("hostname"),
            col("state"),
        ) else {
            return Vec::new();
        };
        lines
            .filter_map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                Some(Kea6Lease {
                    address: f.get(a)?.parse().ok()?,
                    duid: f.get(d)?.to_string(),
                    valid_lifetime: f.get(v)?.parse().ok()?,
                    expire: f.get(e)?.parse().ok()?,
                    hostname: f.get(h)?.to_string(),
                    state: f.get(s)?.parse().ok()?,
                })
            })
            .collect()
    }

    /// The last row of `addr`.
    pub fn lease_of(&self, addr: Ipv6Addr) -> Option<Kea6Lease> {
        self.lease_rows()
            .into_iter()
            .rev()
            .find(|l| l.address == addr)
    }

    /// Kea's last row of `addr` says released (valid lifetime 0, or expired-reclaimed).
    pub fn is_released(&self, addr: Ipv6Addr) -> bool {
        self.lease_of(addr)
            .is_some_and(|l| l.valid_lifetime == 0 || l.state == 2)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("kea6.log")
    }
}

impl Drop for Kea6 {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let lines: Vec<String> = self
                .log()
                .lines()
                .filter(|l| l.contains("DHCP6_") && !l.contains("DHCP6_QUERY_DATA"))
                .map(|l| l.chars().take(240).collect())
                .collect();
            let start = lines.len().saturating_sub(40);
            eprintln!(
                "--- kea6 log (last 40) ---\n{}\n--- kea6 leases ---\n{}",
                lines[start..].join("\n"),
                std::fs::read_to_string(self.dir.join("leases6.csv")).unwrap_or_default()
            );
        }
        self.stop();
    }
}

/// dnsmasq arguments for router advertisements plus stateful DHCPv6 on br0 (M and O
/// set, A off: addresses from DHCPv6 only), lease `secs` (dnsmasq's minimum is 120).
pub fn dnsmasq_v6_args(secs: u32) -> Vec<String> {
    vec![
        "--enable-ra".into(),
        format!("--dhcp-range={POOL_FIRST},{POOL_LAST},64,{secs}"),
        "--ra-param=br0,4,600".into(),
    ]
}

/// Ask `server` (port 53) for the AAAA record of `name`, from inside `ns`.
pub fn query_aaaa_in(ns: &Netns, server: Ipv6Addr, name: &str) -> Option<Ipv6Addr> {
    ns.run_in(|| query_aaaa(server, name)).ok().flatten()
}

fn query_aaaa(server: Ipv6Addr, name: &str) -> Option<Ipv6Addr> {
    let sock = std::net::UdpSocket::bind("[::]:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let id = std::process::id() as u16 ^ 0x6666;
    let mut q = crate::dns::encode_query(id, name);
    let n = q.len();
    q[n - 4..n - 2].copy_from_slice(&28u16.to_be_bytes()); // AAAA
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        sock.send_to(&q, (server, 53)).ok()?;
        while let Ok((len, _)) = sock.recv_from(&mut buf) {
            if let Some(a) = decode_aaaa(&buf[..len], id) {
                return a;
            }
        }
    }
    None
}

fn skip_name(p: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let l = *p.get(i)?;
        if l & 0xc0 == 0xc0 {
            return Some(i + 2);
        }
        if l == 0 {
            return Some(i + 1);
        }
        i += 1 + usize::from(l);
    }
}

fn decode_aaaa(p: &[u8], id: u16) -> Option<Option<Ipv6Addr>> {
    if p.len() < 12 || u16::from_be_bytes([p[0], p[1]]) != id || p[2] & 0x80 == 0 {
        return None;
    }
    let qd = usize::from(u16::from_be_bytes([p[4], p[5]]));
    let an = usize::from(u16::from_be_bytes([p[6], p[7]]));
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(p, i)? + 4;
    }
    for _ in 0..an {
        i = skip_name(p, i)?;
        let h = p.get(i..i + 10)?;
        let ty = u16::from_be_bytes([h[0], h[1]]);
        let len = usize::from(u16::from_be_bytes([h[8], h[9]]));
        let data = p.get(i + 10..i + 10 + len)?;
        if ty == 28 && len == 16 {
            let o: [u8; 16] = data.try_into().ok()?;
            return Some(Some(Ipv6Addr::from(o)));
        }
        i += 10 + len;
    }
    Some(None)
}

/// One UDP datagram to `[addr]:port` from `ns` and its reply (3 tries, 1 s each).
pub fn udp6(ns: &Netns, addr: Ipv6Addr, port: u16, payload: &[u8]) -> Result<Vec<u8>, String> {
    let payload = payload.to_vec();
    ns.run_in(move || {
        let s = std::net::UdpSocket::bind("[::]:0").map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(1)))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 512];
        for _ in 0..3 {
            s.send_to(&payload, (addr, port))
                .map_err(|e| e.to_string())?;
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                return Ok(buf[..n].to_vec());
            }
        }
        Err(format!("no UDP reply from [{addr}]:{port}"))
    })
    .map_err(|e| e.to_string())?
}

/// A Router Advertisement (RFC 4861 section 4.2): M flag, router lifetime (seconds), and
/// Prefix Information options (prefix, length, L and A flags, valid, preferred lifetimes).
pub fn ra_packet(
    managed: bool,
    router_lifetime: u16,
    prefixes: &[(Ipv6Addr, u8, u32, u32)],
) -> Vec<u8> {
    let mut p = vec![134, 0, 0, 0, 64, u8::from(managed) << 7];
    p.extend_from_slice(&router_lifetime.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    for (prefix, len, valid, preferred) in prefixes {
        p.extend_from_slice(&[3, 4, *len, 0xc0]);
        p.extend_from_slice(&valid.to_be_bytes());
        p.extend_from_slice(&preferred.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(&prefix.octets());
    }
    p
}

/// A raw ICMPv6 socket on `ifname` of the current namespace that sends from `source` (a
/// link-local address the interface need not have: `IP_FREEBIND`), hop limit 255, as a
/// router on the link would. For floods from many sources without configuring each.
pub fn ra_sender(ifname: &str, source: Ipv6Addr) -> std::io::Result<(socket2::Socket, u32)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let idx = ifindex(ifname)?;
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    s.bind_device(Some(ifname.as_bytes()))?;
    s.set_freebind_v6(true)?;
    s.set_unicast_hops_v6(255)?;
    s.set_multicast_hops_v6(255)?;
    s.bind(&std::net::SocketAddrV6::new(source, 0, 0, idx).into())?;
    Ok((s, idx))
}

/// The index of `ifname` in the current namespace.
pub fn ifindex(ifname: &str) -> std::io::Result<u32> {
    let name = std::ffi::CString::new(ifname).map_err(std::io::Error::other)?;
    // SAFETY: a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if idx == 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(idx)
}
