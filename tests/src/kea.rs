//! ISC Kea (kea-dhcp4) as the LAN's DHCP server, in the foreground in the LAN namespace.
//!
//! Facts (Kea 2.2.0, measured in this bed):
//! * `interfaces-config.interfaces = ["br0"]` and `"dhcp-socket-type": "raw"` are needed.
//! * Any lifetime works, so renew/rebind/expiry tests take seconds.
//! * The memfile lease file is append-only here (`lfc-interval` 0): every change appends a
//!   row; the last row of an address is its current state.
//! * DHCPRELEASE: Kea 2.2 deletes the lease, which the memfile records as an extra row for
//!   the address with `valid_lifetime` 0 (and `expire` = the time of the release), state 0.
//!   [`Kea::is_released`] checks for exactly that (or state 2, expired-reclaimed).
//! * Renumbering with the same subnet and another pool does NOT give a NAK: a REQUEST for
//!   an address outside every pool is dropped silently (`DHCP4_UNKNOWN_ADDRESS_REQUESTED`),
//!   in RENEWING and in INIT-REBOOT, `authoritative` or not; the client only moves when
//!   its lease expires. A server on another subnet does NAK: with subnet 203.0.113.0/24,
//!   `"interface": "br0"` in the subnet (so DISCOVERs from the LAN select it although
//!   br0's first address is 192.0.2.1) and 203.0.113.1/24 added to br0, a REQUEST for
//!   192.0.2.x gets `DHCP4_PACKET_NAK_0001` (no subnet for it) and the client's new
//!   DISCOVER gets 203.0.113.x. See [`KeaOpts::renumbered`].
//! * The log at debug level 55 shows each packet: `DHCP4_PACKET_RECEIVED ... DHCPREQUEST
//!   (type 3) received from 192.0.2.50 to 192.0.2.1 on interface br0` (unicast renew from
//!   the leased address) vs `... from 192.0.2.50 to 255.255.255.255` (rebind broadcast).

use crate::TempDir;
use crate::netns::Netns;
use crate::proc::ProcGuard;
use serde_json::json;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct KeaOpts {
    pub valid_lifetime: u32,
    pub renew_timer: u32,
    pub rebind_timer: u32,
    /// e.g. "192.0.2.0/24".
    pub subnet: String,
    /// e.g. "192.0.2.50 - 192.0.2.150".
    pub pool: String,
    /// Router option; also the address br0 must have (added by `restart_with` if missing).
    pub gateway: Ipv4Addr,
    /// DNS servers option (empty: none).
    pub dns: Vec<Ipv4Addr>,
    /// Put `"interface": "br0"` in the subnet: select it by interface, not by br0's first
    /// address (needed for a subnet other than 192.0.2.0/24).
    pub select_by_interface: bool,
    pub authoritative: bool,
    /// Kea subnet id (change it with the subnet).
    pub subnet_id: u32,
    /// The subnet is not on br0 but behind a relay (its gateway is the relay's address on
    /// the clients' LAN): the gateway is not added to br0.
    pub off_link: bool,
    /// More `option-data` entries of the subnet, as Kea spells them (e.g.
    /// `{"code": 108, "data": "..."}`, or option 121 as raw hex:
    /// `{"code": 121, "csv-format": false, "data": "..."}`).
    pub extra_options: Vec<serde_json::Value>,
}

impl Default for KeaOpts {
    fn default() -> Self {
        KeaOpts {
            valid_lifetime: 120,
            renew_timer: 60,
            rebind_timer: 105,
            subnet: "192.0.2.0/24".into(),
            pool: "192.0.2.50 - 192.0.2.150".into(),
            gateway: Ipv4Addr::new(192, 0, 2, 1),
            dns: vec![Ipv4Addr::new(192, 0, 2, 1)],
            select_by_interface: false,
            authoritative: false,
            subnet_id: 1,
            off_link: false,
            extra_options: Vec::new(),
        }
    }
}

impl KeaOpts {
    /// Short timers for renew/rebind/expiry tests, e.g. `short(6, 2, 4)`.
    pub fn short(valid: u32, renew: u32, rebind: u32) -> KeaOpts {
        KeaOpts {
            valid_lifetime: valid,
            renew_timer: renew,
            rebind_timer: rebind,
            ..KeaOpts::default()
        }
    }

    /// The same timers on the second LAN subnet 203.0.113.0/24 (pool .50-.150, gateway
    /// 203.0.113.1 added to br0): clients holding 192.0.2.x get a NAK.
    pub fn renumbered(&self) -> KeaOpts {
        KeaOpts {
            subnet: "203.0.113.0/24".into(),
            pool: "203.0.113.50 - 203.0.113.150".into(),
            gateway: Ipv4Addr::new(203, 0, 113, 1),
            dns: vec![Ipv4Addr::new(203, 0, 113, 1)],
            select_by_interface: true,
            subnet_id: self.subnet_id + 1,
            ..self.clone()
        }
    }

    fn config(&self, dir: &std::path::Path) -> serde_json::Value {
        let mut options = vec![json!({"name": "routers", "data": self.gateway.to_string()})];
        if !self.dns.is_empty() {
            let d: Vec<String> = self.dns.iter().map(|a| a.to_string()).collect();
            options.push(json!({"name": "domain-name-servers", "data": d.join(", ")}));
        }
        options.extend(self.extra_options.iter().cloned());
        let mut subnet = json!({
            "id": self.subnet_id,
            "subnet": self.subnet,
            "pools": [{"pool": self.pool}],
            "option-data": options,
        });
        if self.select_by_interface {
            subnet["interface"] = json!("br0");
        }
        json!({"Dhcp4": {
            "interfaces-config": {"interfaces": ["br0"], "dhcp-socket-type": "raw"},
            "lease-database": {
                "type": "memfile",
                "persist": true,
                "name": dir.join("leases4.csv").display().to_string(),
                "lfc-interval": 0
            },
            "valid-lifetime": self.valid_lifetime,
            "renew-timer": self.renew_timer,
            "rebind-timer": self.rebind_timer,
            "authoritative": self.authoritative,
            "subnet4": [subnet],
            "loggers": [{
                "name": "kea-dhcp4",
                "output_options": [{"output": dir.join("kea.log").display().to_string(), "maxsize": 0}],
                "severity": "DEBUG",
                "debuglevel": 55
            }]
        }})
    }
}

/// One row of Kea's memfile (CSV).
#[derive(Clone, Debug, PartialEq)]
pub struct KeaLease {
    pub address: Ipv4Addr,
    pub hwaddr: String,
    pub client_id: String,
    pub valid_lifetime: u64,
    pub expire: u64,
    pub subnet_id: u32,
    pub hostname: String,
    /// 0 default, 1 declined, 2 expired-reclaimed.
    pub state: u32,
}

impl KeaLease {
    /// Not released/reclaimed and not past its expiry.
    pub fn is_active(&self) -> bool {
        self.valid_lifetime > 0 && self.state == 0 && self.expire > now_secs()
    }
    /// The row Kea writes when a lease is released (deleted) or reclaimed.
    pub fn is_released(&self) -> bool {
        self.valid_lifetime == 0 || self.state == 2
    }
}

/// A packet Kea logged as received (`DHCP4_PACKET_RECEIVED`).
#[derive(Clone, Debug, PartialEq)]
pub struct KeaRequest {
    /// "DHCPDISCOVER", "DHCPREQUEST", "DHCPRELEASE", ...
    pub msg_type: String,
    /// IP source and destination of the packet.
    pub from: Ipv4Addr,
    pub to: Ipv4Addr,
    pub xid: String,
    /// The log timestamp ("2026-11-22 07:52:57.146").
    pub time: String,
}

impl KeaRequest {
    /// A unicast to the server (as in RENEWING) rather than a broadcast.
    pub fn is_unicast(&self) -> bool {
        self.to != Ipv4Addr::BROADCAST
    }
}

pub struct Kea {
    ns: Arc<Netns>,
    dir: TempDir,
    opts: KeaOpts,
    proc: Option<ProcGuard>,
    starts: u32,
}

impl Kea {
    /// Start kea-dhcp4 on br0 of `lan` with a config generated into a temp dir, and wait
    /// (bounded) for `DHCP4_STARTED`.
    pub fn start(lan: &Arc<Netns>, opts: KeaOpts) -> Kea {
        let mut k = Kea {
            ns: lan.clone(),
            dir: TempDir::new("kea"),
            opts,
            proc: None,
            starts: 0,
        };
        k.launch();
        k
    }

    fn launch(&mut self) {
        assert!(self.proc.is_none(), "kea already running");
        let gw = self.opts.gateway;
        if !self.opts.off_link
            && !crate::addr_on(&self.ns, "br0")
                .iter()
                .any(|(a, _)| *a == gw)
        {
            let plen = self.opts.subnet.split('/').nth(1).unwrap_or("24");
            self.ns
                .ip(&["addr", "add", &format!("{gw}/{plen}"), "dev", "br0"]);
        }
        let conf = self.dir.join("kea-dhcp4.json");
        std::fs::write(
            &conf,
            serde_json::to_string_pretty(&self.opts.config(self.dir.path())).unwrap(),
        )
        .unwrap();
        let before = self.started_count();
        self.starts += 1;
        let out = self.dir.join(format!("kea-{}.out", self.starts));
        let d = self.dir.path().display().to_string();
        let conf_s = conf.display().to_string();
        let proc = self.ns.spawn_guarded(
            &["kea-dhcp4", "-c", &conf_s],
            &[("KEA_PIDFILE_DIR", &d), ("KEA_LOCKFILE_DIR", &d)],
            Some(&out),
        );
        self.proc = Some(proc);
        let ok = crate::wait_until(Duration::from_secs(15), Duration::from_millis(10), || {
            self.started_count() > before
        });
        if !ok || !self.proc.as_mut().unwrap().running() {
            panic!(
                "kea-dhcp4 did not start:\n{}\n{}",
                crate::tail(&out, 30),
                crate::tail(&self.log_path(), 30)
            );
        }
    }

    fn started_count(&self) -> usize {
        self.log().matches("DHCP4_STARTED").count()
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.pid())
    }

    pub fn opts(&self) -> &KeaOpts {
        &self.opts
    }

    pub fn running(&mut self) -> bool {
        self.proc.as_mut().map(|p| p.running()).unwrap_or(false)
    }

    /// Stop the server (SIGTERM, SIGKILL after 5 s). The lease file stays.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(5));
        }
    }

    /// Start again with the same config and the same lease file.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Stop and start with other options (same lease file), e.g. `opts.renumbered()`.
    /// The gateway address is added to br0 if missing.
    pub fn restart_with(&mut self, opts: KeaOpts) {
        self.stop();
        self.opts = opts;
        self.launch();
    }

    pub fn lease_file(&self) -> PathBuf {
        self.dir.join("leases4.csv")
    }

    /// Every row of the memfile, in file order.
    pub fn lease_rows(&self) -> Vec<KeaLease> {
        parse_lease_csv(&std::fs::read_to_string(self.lease_file()).unwrap_or_default())
    }

    /// The current state of each address (its last row), in order of first appearance.
    pub fn leases(&self) -> Vec<KeaLease> {
        latest_rows(self.lease_rows())
    }

    /// The current row of `addr`.
    pub fn lease_of(&self, addr: Ipv4Addr) -> Option<KeaLease> {
        self.leases().into_iter().find(|l| l.address == addr)
    }

    /// Active leases only.
    pub fn active_leases(&self) -> Vec<KeaLease> {
        self.leases()
            .into_iter()
            .filter(|l| l.is_active())
            .collect()
    }

    /// Was `addr` leased and then released (its last row is a deletion/reclamation row)?
    pub fn is_released(&self, addr: Ipv4Addr) -> bool {
        self.lease_of(addr)
            .map(|l| l.is_released())
            .unwrap_or(false)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("kea.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Packets Kea received, parsed from its log.
    pub fn received(&self) -> Vec<KeaRequest> {
        parse_received(&self.log())
    }

    /// Received DHCPREQUESTs (convenience).
    pub fn requests(&self) -> Vec<KeaRequest> {
        self.received()
            .into_iter()
            .filter(|r| r.msg_type == "DHCPREQUEST")
            .collect()
    }

    /// Number of DHCPNAKs Kea sent.
    pub fn naks_sent(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains("DHCP4_PACKET_SEND") && l.contains("DHCPNAK"))
            .count()
    }
}

impl Drop for Kea {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let interesting: Vec<String> = self
                .log()
                .lines()
                .filter(|l| {
                    l.contains("DHCP4_PACKET_RECEIVED")
                        || l.contains("DHCP4_PACKET_SEND")
                        || l.contains("DHCP4_LEASE")
                        || l.contains("NAK")
                        || l.contains("ERROR")
                        || l.contains("DHCP4_RELEASE")
                })
                .map(|l| l.chars().take(240).collect())
                .collect();
            let start = interesting.len().saturating_sub(40);
            eprintln!(
                "--- kea log (packets, last 40) ---\n{}\n--- kea leases ---\n{}",
                interesting[start..].join("\n"),
                std::fs::read_to_string(self.lease_file()).unwrap_or_default()
            );
        }
        self.stop();
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Parse Kea's memfile CSV (header line skipped).
pub fn parse_lease_csv(s: &str) -> Vec<KeaLease> {
    s.lines()
        .filter(|l| !l.starts_with("address,") && !l.trim().is_empty())
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            if f.len() < 10 {
                return None;
            }
            Some(KeaLease {
                address: f[0].parse().ok()?,
                hwaddr: f[1].to_lowercase(),
                client_id: f[2].to_lowercase(),
                valid_lifetime: f[3].parse().ok()?,
                expire: f[4].parse().ok()?,
                subnet_id: f[5].parse().ok()?,
                hostname: f[8].to_string(),
                state: f[9].parse().ok()?,
            })
        })
        .collect()
}

fn latest_rows(rows: Vec<KeaLease>) -> Vec<KeaLease> {
    let mut out: Vec<KeaLease> = Vec::new();
    for r in rows {
        if let Some(e) = out.iter_mut().find(|e| e.address == r.address) {
            *e = r;
        } else {
            out.push(r);
        }
    }
    out
}

/// Parse `DHCP4_PACKET_RECEIVED` lines.
pub fn parse_received(log: &str) -> Vec<KeaRequest> {
    log.lines()
        .filter(|l| l.contains("DHCP4_PACKET_RECEIVED"))
        .filter_map(|l| {
            let time = l.get(..23)?.to_string();
            let xid = l
                .split("tid=")
                .nth(1)?
                .split(':')
                .next()?
                .trim()
                .to_string();
            let after = l.split("tid=").nth(1)?;
            let msg_type = after.split_whitespace().nth(1)?.to_string();
            let from = l
                .split(" received from ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            let to = l.split(" to ").last()?.split(' ').next()?.parse().ok()?;
            Some(KeaRequest {
                msg_type,
                from,
                to,
                xid,
                time,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_memfile_and_release() {
        let csv = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n\
192.0.2.50,ae:1a:0c:4e:7c:31,,60,1795334019,1,0,0,vm,0,\n\
192.0.2.50,ae:1a:0c:4e:7c:31,,0,1795333959,1,0,0,vm,0,\n";
        let rows = parse_lease_csv(csv);
        assert_eq!(rows.len(), 2);
        let latest = latest_rows(rows);
        assert_eq!(latest.len(), 1);
        assert!(latest[0].is_released());
    }

    #[test]
    fn parses_received_lines() {
        let log = "2026-11-22 07:52:57.146 DEBUG [kea-dhcp4.packets/9323.1] DHCP4_PACKET_RECEIVED [hwtype=1 ae:1a:0c:4e:7c:31], cid=[no info], tid=0xca1c5f06: DHCPREQUEST (type 3) received from 192.0.2.50 to 192.0.2.1 on interface br0\n";
        let r = parse_received(log);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].msg_type, "DHCPREQUEST");
        assert_eq!(r[0].from, Ipv4Addr::new(192, 0, 2, 50));
        assert_eq!(r[0].to, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(r[0].xid, "0xca1c5f06");
        assert!(r[0].is_unicast());
    }
}
