//! dnsmasq as the LAN's DHCP + DNS server, in the foreground in the LAN namespace.
//!
//! Facts (dnsmasq 2.90, measured): leases shorter than 2 minutes are refused; without
//! `--no-ping` the first offer waits ~3 s for a ping; with `--domain=lan.test` a client's
//! DHCP host-name (option 12) is registered as both `NAME` and `NAME.lan.test`; on
//! DHCPRELEASE the line disappears from the lease file and the name stops resolving.

use crate::TempDir;
use crate::netns::Netns;
use crate::proc::ProcGuard;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct DnsmasqOpts {
    /// First and last address of the dynamic range (inside 192.0.2.0/24).
    pub range: (Ipv4Addr, Ipv4Addr),
    /// Lease time in seconds (dnsmasq's minimum is 120).
    pub lease_secs: u32,
    /// DNS domain for DHCP host names (`--domain`), None for none.
    pub domain: Option<String>,
    /// DNS port in the LAN namespace (53; 0 turns DNS off).
    pub dns_port: u16,
    /// Router option (3) handed to clients: the LAN's gateway (192.0.2.1, the server's
    /// own address, by default).
    pub router: Ipv4Addr,
    /// Extra command line arguments.
    pub extra: Vec<String>,
    /// The subnet mask handed out with the range.
    pub netmask: Ipv4Addr,
    /// `--dhcp-authoritative` (the default here, as a LAN's only server runs): without
    /// it dnsmasq does not answer some requests for leases it does not know.
    pub authoritative: bool,
}

impl Default for DnsmasqOpts {
    fn default() -> Self {
        DnsmasqOpts {
            range: (Ipv4Addr::new(192, 0, 2, 50), Ipv4Addr::new(192, 0, 2, 150)),
            lease_secs: 120,
            domain: Some("lan.test".into()),
            dns_port: 53,
            router: Ipv4Addr::new(192, 0, 2, 1),
            extra: Vec::new(),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            authoritative: true,
        }
    }
}

/// One line of dnsmasq's lease file: `expiry mac ip hostname client-id`.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsmasqLease {
    pub expiry: u64,
    pub mac: String,
    pub address: Ipv4Addr,
    pub hostname: Option<String>,
    pub client_id: Option<String>,
}

pub struct Dnsmasq {
    proc: ProcGuard,
    ns: Arc<Netns>,
    dir: TempDir,
    opts: DnsmasqOpts,
}

impl Dnsmasq {
    /// Start dnsmasq on br0 of `lan` and wait (bounded) until it serves.
    pub fn start(lan: &Arc<Netns>, opts: DnsmasqOpts) -> Dnsmasq {
        let dir = TempDir::new("dnsmasq");
        let p = |f: &str| dir.join(f).display().to_string();
        let mut args: Vec<String> = vec![
            "dnsmasq".into(),
            "-k".into(),
            "--conf-file=/dev/null".into(),
            "--no-ping".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--interface=br0".into(),
            "--except-interface=lo".into(),
            "--bind-interfaces".into(),
            format!(
                "--dhcp-range={},{},{},{}",
                opts.range.0, opts.range.1, opts.netmask, opts.lease_secs
            ),
            format!("--dhcp-option=option:router,{}", opts.router),
            format!("--dhcp-leasefile={}", p("leases")),
            format!("--pid-file={}", p("dnsmasq.pid")),
            format!("--port={}", opts.dns_port),
            "--log-dhcp".into(),
            "--log-queries".into(),
            format!("--log-facility={}", p("dnsmasq.log")),
        ];
        if let Some(d) = &opts.domain {
            args.push(format!("--domain={d}"));
        }
        if opts.authoritative {
            args.push("--dhcp-authoritative".into());
        }
        args.extend(opts.extra.iter().cloned());
        let argv: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let proc = lan.spawn_guarded(&argv, &[], Some(&dir.join("dnsmasq.out")));
        let mut d = Dnsmasq {
            proc,
            ns: lan.clone(),
            dir,
            opts,
        };
        let log = d.dir.join("dnsmasq.log");
        let ready = crate::wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
            std::fs::read_to_string(&log)
                .map(|s| s.contains("DHCP, sockets bound") || s.contains("DHCP, IP range"))
                .unwrap_or(false)
        });
        if !ready || !d.proc.running() {
            panic!(
                "dnsmasq did not start:\n{}\n{}",
                crate::tail(&d.dir.join("dnsmasq.out"), 20),
                crate::tail(&log, 20)
            );
        }
        d
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn opts(&self) -> &DnsmasqOpts {
        &self.opts
    }

    /// The current leases (the file is rewritten on every change).
    pub fn leases(&self) -> Vec<DnsmasqLease> {
        let s = std::fs::read_to_string(self.dir.join("leases")).unwrap_or_default();
        parse_leases(&s)
    }

    /// The lease of `addr`, if any.
    pub fn lease_of(&self, addr: Ipv4Addr) -> Option<DnsmasqLease> {
        self.leases().into_iter().find(|l| l.address == addr)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("dnsmasq.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Ask this dnsmasq's DNS for the A record of `name`, from inside the LAN namespace.
    pub fn resolve(&self, name: &str) -> Option<Ipv4Addr> {
        let server = std::net::SocketAddrV4::new(crate::bed::SERVER, self.opts.dns_port);
        crate::dns::query_a_in(&self.ns, server, name)
    }

    /// Stop it (SIGTERM, then SIGKILL).
    pub fn stop(&mut self) {
        self.proc.terminate(Duration::from_secs(3));
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- dnsmasq log (last 40 lines) ---\n{}",
                crate::tail(&self.log_path(), 40)
            );
        }
        self.proc.kill();
    }
}

/// Parse dnsmasq's lease file.
pub fn parse_leases(s: &str) -> Vec<DnsmasqLease> {
    s.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 3 || f[0] == "duid" {
                return None;
            }
            let opt = |i: usize| f.get(i).filter(|v| **v != "*").map(|v| v.to_string());
            Some(DnsmasqLease {
                expiry: f[0].parse().ok()?,
                mac: f[1].to_lowercase(),
                address: f[2].parse().ok()?,
                hostname: opt(3),
                client_id: opt(4),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_lease_file() {
        let l = super::parse_leases(
            "1795334192 ae:1a:0c:4e:7c:31 192.0.2.74 web1 63:69:64\n1 aa:bb:cc:dd:ee:ff 192.0.2.75 * *\n",
        );
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].hostname.as_deref(), Some("web1"));
        assert_eq!(l[1].hostname, None);
        assert_eq!(
            l[1].address,
            "192.0.2.75".parse::<std::net::Ipv4Addr>().unwrap()
        );
    }
}
