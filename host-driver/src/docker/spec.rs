//! The router container as Docker is asked to create it: a [`RouterSpec`]
//! (a typed request) made from a router's plan, and the creation body made
//! from the spec. Both are pure, so every field a router gets is unit-tested
//! without a daemon; the agent's arguments come from the contract's
//! [`AgentArgs`], the type the agent parses its own into.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::models::{ContainerCreateBody, EndpointSettings, HostConfig, NetworkingConfig};
use netcontainer_proto::Ipv6Mode;
use netcontainer_proto::contract::AgentArgs;

use crate::labels;
use crate::plan::{RouterPlan, router_name};

/// Where the agent's socket and lease live inside the router (the agent's
/// default `--state-dir`, so the image's entrypoint names none).
pub const ROUTER_STATE_DIR: &str = netcontainer_proto::contract::STATE_DIR;
/// Where a router's lease directory is mounted (from the host's lib
/// directory, which outlives a reboot).
pub const ROUTER_LEASE_DIR: &str = netcontainer_proto::contract::LEASE_DIR;
/// What the agent needs of the kernel, and nothing else (every other
/// capability is dropped): addresses, routes, nftables, conntrack and links
/// in its namespace (`NET_ADMIN`), packet sockets for DHCP and ARP
/// (`NET_RAW`), and the privileged ports it binds: the DHCP client ports (68,
/// 546) and the relay's published ports below 1024 (`NET_BIND_SERVICE`).
pub const CAPABILITIES: &[&str] = &["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"];
/// A router's memory ceiling (no swap beyond it): an agent holds a few MiB
/// while bound; the ceiling leaves room for `nft` runs and a full relay while
/// keeping a router that is flooded or compromised from starving the host.
pub const MEMORY_LIMIT: i64 = 128 * 1024 * 1024;
/// A router's process and thread ceiling: the supervisor, the agent and its
/// threads, and the `nft` and `conntrack` runs it starts; a fork bomb stops here.
pub const PIDS_LIMIT: i64 = 128;
/// The only writable place on a router's read-only root besides its two
/// mounted directories; nothing is executed from it.
pub const TMPFS: (&str, &str) = ("/tmp", "rw,nosuid,nodev,noexec,size=1m");
/// No process in a router gains privileges by `exec` (setuid files, file
/// capabilities): the image has none, and a substituted binary gets none.
pub const SECURITY_OPT: &[&str] = &["no-new-privileges:true"];

/// The default router image: versioned with the driver.
pub fn default_image() -> String {
    format!("netcontainer/router:{}", env!("CARGO_PKG_VERSION"))
}

/// Everything a router container is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterSpec {
    pub image: String,
    /// The container's name (`netcontainer-<service>`).
    pub name: String,
    pub hostname: String,
    /// The Docker network it joins: its service's.
    pub network: String,
    pub labels: HashMap<String, String>,
    /// The host directory mounted at [`ROUTER_STATE_DIR`] (socket, plan).
    pub state_dir: PathBuf,
    /// The host directory mounted at [`ROUTER_LEASE_DIR`] (the lease).
    pub lease_dir: PathBuf,
    pub sysctls: HashMap<String, String>,
    /// The agent's arguments (after the image's entrypoint).
    pub agent: AgentArgs,
}

/// The host directories a router mounts.
#[derive(Clone, Copy, Debug)]
pub struct HostDirs<'a> {
    /// The service's state directory (`state::service_dir`).
    pub state: &'a Path,
    /// The service's lease directory (`state::lease_dir`).
    pub lease: &'a Path,
}

impl RouterSpec {
    /// The router of `plan`, from `image`, mounting `dirs`. `kernel_has_ipv6`:
    /// whether this host's kernel has IPv6 (`/proc/sys/net/ipv6`).
    pub fn of(
        plan: &RouterPlan,
        image: &str,
        dirs: HostDirs<'_>,
        kernel_has_ipv6: bool,
    ) -> RouterSpec {
        let mut labels = plan.labels();
        labels.insert(labels::STATE_DIR.into(), dirs.state.display().to_string());
        RouterSpec {
            image: image.to_string(),
            name: plan.router_name.clone(),
            hostname: router_name(&plan.service).chars().take(63).collect(),
            network: plan.network.clone(),
            labels,
            state_dir: dirs.state.to_path_buf(),
            lease_dir: dirs.lease.to_path_buf(),
            // The agent sets these itself, but a container's /proc/sys is
            // read-only: Docker sets them, and the agent finds them right.
            sysctls: router_sysctls(
                plan.plan.ipv6,
                plan.plan
                    .service
                    .as_ref()
                    .is_some_and(|s| s.address6.is_some()),
                kernel_has_ipv6,
            ),
            agent: agent_args(plan),
        }
    }

    /// The body of Docker's create request.
    pub fn body(&self) -> ContainerCreateBody {
        ContainerCreateBody {
            image: Some(self.image.clone()),
            // Arguments after the image's ENTRYPOINT (the agent).
            cmd: Some(self.agent.to_args()),
            hostname: Some(self.hostname.clone()),
            labels: Some(self.labels.clone()),
            host_config: Some(HostConfig {
                // Docker's default set (CHOWN, SETUID, MKNOD, ...) goes; only
                // what the agent uses comes back.
                cap_drop: Some(vec!["ALL".into()]),
                cap_add: Some(CAPABILITIES.iter().map(|c| c.to_string()).collect()),
                security_opt: Some(SECURITY_OPT.iter().map(|c| c.to_string()).collect()),
                memory: Some(MEMORY_LIMIT),
                memory_swap: Some(MEMORY_LIMIT),
                pids_limit: Some(PIDS_LIMIT),
                // The agent writes only its state and lease directories (the
                // two binds below, its own service's and nothing else of the
                // host's run and lib directories).
                readonly_rootfs: Some(true),
                tmpfs: Some(HashMap::from([(TMPFS.0.to_string(), TMPFS.1.to_string())])),
                binds: Some(vec![
                    format!("{}:{ROUTER_STATE_DIR}:rw", self.state_dir.display()),
                    format!("{}:{ROUTER_LEASE_DIR}:rw", self.lease_dir.display()),
                ]),
                network_mode: Some(self.network.clone()),
                sysctls: Some(self.sysctls.clone()),
                init: Some(false),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    self.network.clone(),
                    EndpointSettings::default(),
                )])),
            }),
            ..Default::default()
        }
    }
}

/// The agent's arguments in a router. `--keep-lease`: a host's shutdown
/// stops the router with SIGTERM, and the lease is to be claimed again
/// after the reboot; `down` releases it with a Shutdown request
/// (`agent_client::release`).
fn agent_args(plan: &RouterPlan) -> AgentArgs {
    AgentArgs {
        lease_dir: Some(ROUTER_LEASE_DIR.into()),
        keep_lease: true,
        arp_probe: plan.arp_probe,
        request_address: plan.requested,
        egress: plan.egress.clone(),
        ..AgentArgs::default()
    }
}

/// The sysctls of a router container: the contract's lists
/// ([`netcontainer_proto::contract::ROUTER_SYSCTLS`], and
/// [`netcontainer_proto::contract::ROUTER_SYSCTLS6`] when this kernel has
/// IPv6: Docker refuses to start a container with a sysctl that does not
/// exist), and IPv6 on or off as the router's `--ipv6` says. Docker turns
/// IPv6 off (`all` and `default`) in a container on IPv4-only networks,
/// and `lan0`, which appears later, takes `default`'s value; the agent
/// cannot change it in the read-only `/proc/sys`.
fn router_sysctls(
    ipv6: Ipv6Mode,
    kernel_path: bool,
    kernel_has_ipv6: bool,
) -> HashMap<String, String> {
    use netcontainer_proto::contract::{IPV6_FORWARDING, ROUTER_SYSCTLS, ROUTER_SYSCTLS6};
    let mut out: HashMap<String, String> = ROUTER_SYSCTLS
        .iter()
        .chain(ROUTER_SYSCTLS6.iter().filter(|_| kernel_has_ipv6))
        .map(|s| (s.name.to_string(), s.value.to_string()))
        .collect();
    if kernel_has_ipv6 {
        let on = |v: &str| {
            [
                ("net.ipv6.conf.all.disable_ipv6".to_string(), v.to_string()),
                (
                    "net.ipv6.conf.default.disable_ipv6".to_string(),
                    v.to_string(),
                ),
            ]
        };
        match ipv6 {
            Ipv6Mode::Auto => {
                out.extend(on("0"));
                if kernel_path {
                    out.insert(IPV6_FORWARDING.name.into(), IPV6_FORWARDING.value.into());
                }
            }
            // Only what appears later (lan0): the Docker side keeps
            // what its network gave it.
            Ipv6Mode::Off => {
                out.insert("net.ipv6.conf.default.disable_ipv6".into(), "1".into());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::plan::{ServiceInfo, UpOptions, derive};

    fn plan(labels: &[(&str, &str)], opts: UpOptions) -> RouterPlan {
        let svc = ServiceInfo {
            name: "web1".into(),
            id: "abc".into(),
            running: true,
            network_mode: "appnet".into(),
            networks: vec![("appnet".into(), Ipv4Addr::new(198, 51, 100, 2))],
            exposed: vec!["80/tcp".into()],
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            host_id: "H".into(),
            ..Default::default()
        };
        derive(
            &svc,
            &UpOptions {
                parent: Some("eth0".into()),
                ..opts
            },
        )
        .unwrap()
    }

    fn dirs() -> HostDirs<'static> {
        HostDirs {
            state: Path::new("/run/netcontainer/web1"),
            lease: Path::new("/var/lib/netcontainer/web1"),
        }
    }

    #[test]
    fn a_router_is_made_of_its_plan() {
        let rp = plan(&[], UpOptions::default());
        let s = RouterSpec::of(&rp, "netcontainer/router:1", dirs(), true);
        assert_eq!(s.name, "netcontainer-web1");
        assert_eq!(s.hostname, "netcontainer-web1");
        assert_eq!(s.network, "appnet");
        assert_eq!(s.labels[labels::STATE_DIR], "/run/netcontainer/web1");
        assert_eq!(s.labels[labels::SERVICE], "web1");
        assert_eq!(s.labels[labels::ROLE], labels::ROLE_ROUTER);
        let b = s.body();
        assert_eq!(b.image.as_deref(), Some("netcontainer/router:1"));
        assert_eq!(
            b.cmd.unwrap(),
            ["--lease-dir", "/var/lib/netcontainer", "--keep-lease"]
        );
        let h = b.host_config.unwrap();
        assert_eq!(h.cap_drop.unwrap(), ["ALL"]);
        assert_eq!(
            h.cap_add.unwrap(),
            ["NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"]
        );
        assert_eq!(h.security_opt.unwrap(), ["no-new-privileges:true"]);
        assert_eq!(h.memory, Some(128 << 20));
        // No swap beyond the memory ceiling.
        assert_eq!(h.memory_swap, h.memory);
        assert_eq!(h.pids_limit, Some(128));
        assert_eq!(h.readonly_rootfs, Some(true));
        assert_eq!(
            h.tmpfs.unwrap(),
            HashMap::from([("/tmp".into(), "rw,nosuid,nodev,noexec,size=1m".into())])
        );
        assert!(h.privileged.is_none() && h.pid_mode.is_none() && h.ipc_mode.is_none());
        assert!(h.mounts.is_none() && h.devices.is_none() && h.volumes_from.is_none());
        assert_eq!(
            h.binds.unwrap(),
            [
                "/run/netcontainer/web1:/run/netcontainer:rw",
                "/var/lib/netcontainer/web1:/var/lib/netcontainer:rw"
            ]
        );
        assert_eq!(h.network_mode.as_deref(), Some("appnet"));
        assert_eq!(h.init, Some(false));
        assert_eq!(h.sysctls.unwrap()["net.ipv4.ip_forward"], "1");
        let endpoints = b.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(endpoints.keys().collect::<Vec<_>>(), ["appnet"]);
    }

    #[test]
    fn the_agent_gets_what_the_plan_asks_for() {
        let rp = plan(
            &[(labels::ARP_PROBE, "true"), (labels::IP, "203.0.113.77")],
            UpOptions::default(),
        );
        let s = RouterSpec::of(&rp, "r", dirs(), true);
        assert_eq!(
            s.body().cmd.unwrap(),
            [
                "--lease-dir",
                "/var/lib/netcontainer",
                "--keep-lease",
                "--arp-probe",
                "--request-address",
                "203.0.113.77"
            ]
        );
        // The flag beats the label.
        let rp = plan(
            &[(labels::IP, "203.0.113.77")],
            UpOptions {
                ip: Some(Ipv4Addr::new(203, 0, 113, 78)),
                ..Default::default()
            },
        );
        let a = RouterSpec::of(&rp, "r", dirs(), true).agent;
        assert_eq!(a.request_address, Some(Ipv4Addr::new(203, 0, 113, 78)));
        assert!(a.keep_lease && !a.arp_probe && !a.supervise);
    }

    #[test]
    fn a_long_service_name_gives_a_63_character_hostname() {
        let mut rp = plan(&[], UpOptions::default());
        rp.service = "s".repeat(100);
        let s = RouterSpec::of(&rp, "r", dirs(), true);
        assert_eq!(s.hostname.len(), 63);
        assert!(s.hostname.starts_with("netcontainer-s"));
    }

    #[test]
    fn ipv6_sysctls_only_where_the_kernel_has_ipv6() {
        let rp = plan(&[], UpOptions::default());
        let with = RouterSpec::of(&rp, "r", dirs(), true);
        assert_eq!(with.sysctls["net.ipv6.conf.all.disable_ipv6"], "0");
        // No IPv6 address for the service: the relay path, no forwarding.
        assert!(!with.sysctls.contains_key("net.ipv6.conf.all.forwarding"));
        let without = RouterSpec::of(&rp, "r", dirs(), false);
        assert!(without.sysctls.keys().all(|k| !k.starts_with("net.ipv6.")));
    }

    #[test]
    fn router_sysctls_follow_the_ipv6_mode() {
        let auto = router_sysctls(Ipv6Mode::Auto, true, true);
        assert_eq!(auto["net.ipv4.ip_forward"], "1");
        assert_eq!(auto["net.ipv6.conf.all.forwarding"], "1");
        // Relay path: no IPv6 forwarding (it would cost optimistic DAD).
        let relay = router_sysctls(Ipv6Mode::Auto, false, true);
        assert!(!relay.contains_key("net.ipv6.conf.all.forwarding"));
        assert_eq!(auto["net.ipv6.conf.default.accept_ra"], "0");
        assert_eq!(auto["net.ipv6.conf.all.disable_ipv6"], "0");
        assert_eq!(auto["net.ipv6.conf.default.disable_ipv6"], "0");
        let off = router_sysctls(Ipv6Mode::Off, true, true);
        assert_eq!(off["net.ipv6.conf.default.disable_ipv6"], "1");
        assert!(!off.contains_key("net.ipv6.conf.all.disable_ipv6"));
        // A kernel without IPv6: no IPv6 sysctl at all (Docker would refuse it).
        let none = router_sysctls(Ipv6Mode::Auto, true, false);
        assert!(none.keys().all(|k| !k.starts_with("net.ipv6.")), "{none:?}");
    }
}
