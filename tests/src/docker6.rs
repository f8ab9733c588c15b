//! IPv6 for a Docker bed ([`V6Side`]): the bed's LAN gets 2001:db8:1::/64 with radvd
//! (SLAAC) and its client 2001:db8:1::10, and a second Docker network with IPv6
//! (2001:db8:d0c::/64) holds the services of the kernel path.
//!
//! Safety: traffic starts in namespaces and containers, so the host gets a blackhole for
//! 2001:db8::/32 (longer than its default route, shorter than the Docker network's) for
//! the side's life, and the side refuses to start when a host interface has an address
//! in 2001:db8::/32. Creating an IPv6 Docker network turns IPv6 forwarding on in the
//! host (Docker's bridge driver does); the side puts the host's values back when it
//! goes. The parent's host end gets IPv6 off, so the host follows no RA of the bed's LAN.

use crate::docker::{DockerBed, SAMPLE_IMAGE, Service, docker};
use crate::v6::{Radvd, RadvdOpts, lan_v6};
use serde_json::Value;
use std::net::Ipv6Addr;
use std::process::{Command, Stdio};

/// The bed's LAN client's IPv6 address (on the same /64 as the routers' SLAAC).
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
/// The IPv6 Docker network's prefix.
pub const DOCKER6: &str = "2001:db8:d0c::/64";
/// What the blackhole covers: every address the side uses.
pub const BLACKHOLE6: &str = "2001:db8::/32";
const BLACKHOLE6_METRIC: u32 = 4000;
const FORWARDING: [&str; 2] = [
    "/proc/sys/net/ipv6/conf/all/forwarding",
    "/proc/sys/net/ipv6/conf/default/forwarding",
];

pub struct V6Side {
    /// The IPv6 Docker network (`<id>net6`).
    pub network: String,
    _radvd: Radvd,
    metric: u32,
    /// The host's IPv6 forwarding values before the side (all, default).
    saved: Vec<(String, String)>,
}

/// Panics if a host interface has an address in 2001:db8::/32.
pub fn assert_v6_range_unused() {
    let out = crate::ip(&["-j", "-6", "addr", "show"]);
    let v: Value = serde_json::from_str(&out).expect("ip -j addr json");
    for l in v.as_array().into_iter().flatten() {
        for a in l["addr_info"].as_array().into_iter().flatten() {
            let local: Option<Ipv6Addr> = a["local"].as_str().and_then(|s| s.parse().ok());
            if let Some(ip) = local
                && ip.segments()[..2] == [0x2001, 0xdb8]
            {
                panic!(
                    "host interface {} has {ip} in {BLACKHOLE6}: refusing to run an IPv6 bed",
                    l["ifname"]
                );
            }
        }
    }
}

impl V6Side {
    /// Adds IPv6 to `bed`'s LAN and creates the IPv6 Docker network.
    pub fn attach(bed: &DockerBed) -> V6Side {
        assert_v6_range_unused();
        let metric = (0..100)
            .map(|k| BLACKHOLE6_METRIC + k)
            .find(|m| {
                crate::try_run(Command::new("ip").args([
                    "-6",
                    "route",
                    "add",
                    "blackhole",
                    BLACKHOLE6,
                    "metric",
                    &m.to_string(),
                ]))
                .is_ok()
            })
            .expect("no free metric for the IPv6 blackhole");
        let saved = FORWARDING
            .iter()
            .map(|p| {
                let v = std::fs::read_to_string(p).unwrap_or_default();
                (p.to_string(), v.trim().to_string())
            })
            .collect();
        // The host end of the LAN: no IPv6, so the host takes no SLAAC address and no
        // default route from the bed's radvd.
        std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", bed.parent),
            "1",
        )
        .expect("turn IPv6 off on the parent");
        lan_v6(&bed.lan);
        bed.client.ip(&[
            "-6",
            "addr",
            "add",
            &format!("{CLIENT6}/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
        let radvd = Radvd::start(&bed.lan, RadvdOpts::default());
        let network = format!("{}net6", bed.id);
        let mut side = V6Side {
            network: network.clone(),
            _radvd: radvd,
            metric,
            saved,
        };
        let mut last = String::new();
        for slot in (0..16u8).rev() {
            let base = slot * 16;
            let subnet = format!("198.51.100.{base}/28");
            match docker(&[
                "network",
                "create",
                "--driver",
                "bridge",
                "--ipv6",
                "--subnet",
                &subnet,
                "--subnet",
                DOCKER6,
                "-o",
                &format!("com.docker.network.bridge.name={}b6", bed.id),
                &network,
            ]) {
                Ok(_) => return side,
                Err(e) if e.contains("overlap") => last = e,
                Err(e) => {
                    side.network.clear();
                    panic!("creating the IPv6 Docker network: {e}")
                }
            }
        }
        side.network.clear();
        panic!("no free /28 for the IPv6 Docker network: {last}");
    }

    /// The sample service `<id><tag>` on the IPv6 network (removed with the bed, and
    /// before the network goes).
    pub fn run_service(&self, bed: &DockerBed, tag: &str, args: &[&str]) -> Service {
        bed.container_on(&self.network, tag, SAMPLE_IMAGE, &[], args, true)
    }

    /// `name`'s IPv6 address on the IPv6 network.
    pub fn address6(&self, name: &str) -> Option<Ipv6Addr> {
        let fmt = format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").GlobalIPv6Address}}}}",
            self.network
        );
        docker(&["inspect", "--format", &fmt, name])
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for V6Side {
    fn drop(&mut self) {
        if !self.network.is_empty() {
            // Everything on the network (the services and their routers) first.
            let fmt = "{{range $id, $c := .Containers}}{{$c.Name}} {{end}}";
            if let Ok(names) = docker(&["network", "inspect", "--format", fmt, &self.network]) {
                for n in names.split_whitespace() {
                    let _ = docker(&["rm", "-f", "-v", n]);
                }
            }
            let _ = crate::wait_until(
                std::time::Duration::from_secs(5),
                std::time::Duration::from_millis(100),
                || {
                    docker(&["network", "rm", &self.network]).is_ok()
                        || docker(&["network", "inspect", &self.network]).is_err()
                },
            );
        }
        for (path, value) in &self.saved {
            if !value.is_empty() {
                let _ = std::fs::write(path, value);
            }
        }
        let _ = Command::new("ip")
            .args([
                "-6",
                "route",
                "del",
                "blackhole",
                BLACKHOLE6,
                "metric",
                &self.metric.to_string(),
            ])
            .stderr(Stdio::null())
            .status();
    }
}
