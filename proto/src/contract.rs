//! The contract between the host driver, the router agent and the router
//! image: where the agent keeps its state and socket, the ids it uses in the
//! router's namespace, its command-line flags, and the sysctls a router
//! needs. Everything that both sides (or a test checking from outside) must
//! spell the same way is spelled here once.

/// The agent's state directory inside a router (the host bind-mounts the
/// router's own directory here): control socket, plan and persisted lease.
/// Also the agent's `--state-dir` default.
pub const STATE_DIR: &str = "/run/netcontainer";
/// The control socket's file name inside [`STATE_DIR`].
pub const SOCKET_NAME: &str = "agent.sock";
/// The agent's default control socket: [`STATE_DIR`]/[`SOCKET_NAME`] (a unit
/// test keeps the three in step).
pub const SOCKET_PATH: &str = "/run/netcontainer/agent.sock";
/// The last applied plan, inside the state directory.
pub const PLAN_FILE: &str = "plan.json";

/// Where the agent keeps its persisted lease inside a router (`--lease-dir`;
/// the host bind-mounts the service's directory under its lib directory,
/// `/var/lib/netcontainer/<service>`, here). Apart from the state directory
/// because that one is in `/run`, which a reboot empties: the lease must
/// outlive it, so that the router asks for its address again (INIT-REBOOT).
pub const LEASE_DIR: &str = "/var/lib/netcontainer";

/// The persisted lease of `interface`, inside the lease directory (the
/// state directory when the agent is given no `--lease-dir`).
pub fn lease_file(interface: &str) -> String {
    format!("lease-{interface}.json")
}

/// The persisted DHCPv6 lease of `interface`, beside the DHCPv4 one.
pub fn lease6_file(interface: &str) -> String {
    format!("lease6-{interface}.json")
}

/// Conntrack/packet mark of connections that arrived on the LAN interface
/// (ASCII "NC").
pub const MARK: u32 = 0x4e43;
/// The agent's routing table (20035, ASCII "NC"), selected by its `ip rule`s.
pub const ROUTE_TABLE: u32 = 0x4e43;
/// The LAN leg's name inside a router: what the host driver plumbs and its
/// plans name, and what the agent isolates before any plan arrives.
pub const LAN_IF: &str = "lan0";
/// The "who am I?" endpoint's TCP port (docker-mirror's): the agent serves
/// it on the router's Docker side, `watch` on each Docker bridge network's
/// gateway address. Never on the LAN.
pub const WHOAMI_PORT: u16 = 9001;
/// The agent's nftables table (family `ip`).
pub const NFT_TABLE: &str = "netcontainer";

/// The agent's command-line flags.
pub mod flag {
    /// `--socket PATH`: the control socket (default [`super::SOCKET_PATH`]).
    pub const SOCKET: &str = "--socket";
    /// `--state-dir DIR`: plan and lease (default [`super::STATE_DIR`]).
    pub const STATE_DIR: &str = "--state-dir";
    /// `--arp-probe`: probe a new lease's address with ARP before using it.
    pub const ARP_PROBE: &str = "--arp-probe";
    /// `--supervise`: run the agent as a child and restart it if it dies.
    pub const SUPERVISE: &str = "--supervise";
    /// `--lease-dir DIR`: the persisted lease (default: the state directory).
    pub const LEASE_DIR: &str = "--lease-dir";
    /// `--keep-lease`: on SIGTERM/SIGINT stop without a RELEASE (the lease is
    /// claimed again by the next start: a host's shutdown stops its routers
    /// with SIGTERM); only a `Shutdown` request releases. Routers get it; the
    /// driver's `down` sends `Shutdown` first.
    pub const KEEP_LEASE: &str = "--keep-lease";
    /// `--request-address ADDR`: ask for this address (option 50) when there is
    /// no lease of its own to claim again (`up --ip`, label `netcontainer.ip`).
    pub const REQUEST_ADDRESS: &str = "--request-address";
    /// `--firewall NAME`: the firewall backend (default `nft`, the only one).
    pub const FIREWALL: &str = "--firewall";
    /// `--egress CIDR,...`: in gateway mode the service's own connections
    /// reach only these networks through the router (`up --egress`, label
    /// `netcontainer.egress`); default: anywhere.
    pub const EGRESS: &str = "--egress";
}

/// The agent's command line as one typed value: the driver builds a router's
/// arguments with [`AgentArgs::to_args`], and the agent parses its own into
/// the same type, so neither side can spell a flag the other does not know
/// (the agent's tests parse what `to_args` writes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentArgs {
    /// [`flag::SOCKET`].
    pub socket: std::path::PathBuf,
    /// [`flag::STATE_DIR`].
    pub state_dir: std::path::PathBuf,
    /// [`flag::LEASE_DIR`]; `None`: the state directory.
    pub lease_dir: Option<std::path::PathBuf>,
    /// [`flag::KEEP_LEASE`].
    pub keep_lease: bool,
    /// [`flag::ARP_PROBE`].
    pub arp_probe: bool,
    /// [`flag::REQUEST_ADDRESS`].
    pub request_address: Option<std::net::Ipv4Addr>,
    /// [`flag::SUPERVISE`].
    pub supervise: bool,
    /// [`flag::FIREWALL`]: the firewall backend's name.
    pub firewall: String,
    /// [`flag::EGRESS`]; empty: no allow-list.
    pub egress: Vec<crate::Ipv4Net>,
}

/// The agent's firewall backend when none is named (`--firewall`).
pub const DEFAULT_FIREWALL: &str = "nft";

impl Default for AgentArgs {
    /// What the agent does with no arguments.
    fn default() -> Self {
        AgentArgs {
            socket: SOCKET_PATH.into(),
            state_dir: STATE_DIR.into(),
            lease_dir: None,
            keep_lease: false,
            arp_probe: false,
            request_address: None,
            supervise: false,
            firewall: DEFAULT_FIREWALL.to_string(),
            egress: Vec::new(),
        }
    }
}

impl AgentArgs {
    /// The arguments that say this value to the agent: only what differs
    /// from its defaults, each flag once, in a fixed order.
    pub fn to_args(&self) -> Vec<String> {
        let defaults = AgentArgs::default();
        let mut out = Vec::new();
        let mut with_value = |f: &str, v: String| {
            out.push(f.to_string());
            out.push(v);
        };
        if self.socket != defaults.socket {
            with_value(flag::SOCKET, self.socket.display().to_string());
        }
        if self.state_dir != defaults.state_dir {
            with_value(flag::STATE_DIR, self.state_dir.display().to_string());
        }
        if let Some(d) = &self.lease_dir {
            with_value(flag::LEASE_DIR, d.display().to_string());
        }
        let switches = [
            (self.keep_lease, flag::KEEP_LEASE),
            (self.arp_probe, flag::ARP_PROBE),
        ];
        out.extend(
            switches
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, f)| f.to_string()),
        );
        if let Some(a) = self.request_address {
            out.push(flag::REQUEST_ADDRESS.to_string());
            out.push(a.to_string());
        }
        if self.supervise {
            out.push(flag::SUPERVISE.to_string());
        }
        if self.firewall != defaults.firewall {
            out.push(flag::FIREWALL.to_string());
            out.push(self.firewall.clone());
        }
        if !self.egress.is_empty() {
            out.push(flag::EGRESS.to_string());
            out.push(crate::egress_text(&self.egress));
        }
        out
    }
}

/// A kernel parameter a router needs, as `sysctl` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sysctl {
    /// Dotted name, e.g. `net.ipv4.ip_forward`.
    pub name: &'static str,
    /// The value the router needs.
    pub value: &'static str,
}

impl Sysctl {
    /// The file under `/proc/sys` (e.g. `net/ipv4/ip_forward`).
    pub fn proc_path(&self) -> String {
        self.name.replace('.', "/")
    }
}

/// The sysctls of a router's network namespace. The agent sets them itself at
/// start (or fails naming the one it cannot set); the driver also passes them
/// to Docker, whose containers see a read-only `/proc/sys`.
///
/// Reverse-path filtering is loose (2), not off: clients from routed subnets
/// get in (their main-table route points at Docker's side) while a source no
/// interface can reach is still dropped. `default` covers `lan0`, which
/// appears after the router starts.
pub const ROUTER_SYSCTLS: &[Sysctl] = &[
    Sysctl {
        name: "net.ipv4.ip_forward",
        value: "1",
    },
    Sysctl {
        name: "net.ipv4.conf.all.rp_filter",
        value: "2",
    },
    Sysctl {
        name: "net.ipv4.conf.default.rp_filter",
        value: "2",
    },
];

/// The IPv6 sysctls of a router's network namespace, where the kernel has
/// IPv6 (set and passed as [`ROUTER_SYSCTLS`] are): no router
/// advertisements or SLAAC by the kernel on interfaces that appear later
/// (`lan0`), since the agent follows the advertisements itself and
/// Docker's read-only `/proc/sys` would keep it from turning them off on
/// `lan0` alone.
///
/// IPv6 forwarding ([`IPV6_FORWARDING`]) is not among them: only the
/// kernel path of IPv6 forwards needs it, and with it on Linux gives up
/// optimistic duplicate address detection (RFC 4429 is for hosts), so the
/// link-local address stays tentative for a second or two and the first
/// Router Solicitation and DHCPv6 message wait for it.
pub const ROUTER_SYSCTLS6: &[Sysctl] = &[
    Sysctl {
        name: "net.ipv6.conf.default.accept_ra",
        value: "0",
    },
    Sysctl {
        name: "net.ipv6.conf.default.autoconf",
        value: "0",
    },
    // Unsolicited neighbour advertisements (RFC 4861 section 7.2.6) for
    // every address once its DAD is over (and when the link comes up), so
    // that switches and neighbours learn a router that moved to another
    // host at once: the IPv6 twin of the agent's ARP announcements.
    Sysctl {
        name: "net.ipv6.conf.default.ndisc_notify",
        value: "1",
    },
];

/// IPv6 forwarding, for a router whose service has an IPv6 address (the
/// kernel path): the driver passes it then, and the agent sets it itself
/// when a plan needs it.
pub const IPV6_FORWARDING: Sysctl = Sysctl {
    name: "net.ipv6.conf.all.forwarding",
    value: "1",
};

/// The DHCP client identifier the driver gives a service's router: type 0
/// (not a hardware address) + `netcontainer:SERVICE`, at most 255 bytes.
/// Name-derived, not MAC-derived, so ipvlan routers (which share the
/// parent's MAC) still get one lease each.
pub fn service_client_id(service: &str) -> Vec<u8> {
    let mut id = vec![0u8];
    id.extend_from_slice(format!("netcontainer:{service}").as_bytes());
    id.truncate(255);
    id
}

/// The agent's client identifier when a plan names none: hardware type 1
/// (Ethernet) followed by the MAC.
pub fn mac_client_id(mac: &[u8]) -> Vec<u8> {
    let mut id = vec![1u8];
    id.extend_from_slice(mac);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_is_state_dir_and_name() {
        assert_eq!(SOCKET_PATH, format!("{STATE_DIR}/{SOCKET_NAME}"));
    }

    #[test]
    fn ids_are_nc() {
        assert_eq!(MARK, u32::from_be_bytes([0, 0, b'N', b'C']));
        assert_eq!(ROUTE_TABLE, 20035);
    }

    #[test]
    fn router_sysctls() {
        let got: Vec<_> = ROUTER_SYSCTLS
            .iter()
            .map(|s| format!("{}={}", s.name, s.value))
            .collect();
        assert_eq!(
            got,
            [
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=2",
                "net.ipv4.conf.default.rp_filter=2",
            ]
        );
        assert_eq!(ROUTER_SYSCTLS[1].proc_path(), "net/ipv4/conf/all/rp_filter");
    }

    #[test]
    fn agent_args_say_only_what_differs_from_the_defaults() {
        assert!(AgentArgs::default().to_args().is_empty());
        let router = AgentArgs {
            lease_dir: Some(LEASE_DIR.into()),
            keep_lease: true,
            arp_probe: true,
            request_address: Some(std::net::Ipv4Addr::new(203, 0, 113, 7)),
            ..AgentArgs::default()
        };
        assert_eq!(
            router.to_args(),
            [
                "--lease-dir",
                "/var/lib/netcontainer",
                "--keep-lease",
                "--arp-probe",
                "--request-address",
                "203.0.113.7"
            ]
        );
        let other = AgentArgs {
            socket: "/x/a.sock".into(),
            state_dir: "/y".into(),
            supervise: true,
            ..AgentArgs::default()
        };
        assert_eq!(
            other.to_args(),
            ["--socket", "/x/a.sock", "--state-dir", "/y", "--supervise"]
        );
    }

    #[test]
    fn client_ids() {
        assert_eq!(service_client_id("web1"), b"\0netcontainer:web1".to_vec());
        assert_eq!(service_client_id(&"x".repeat(300)).len(), 255);
        assert_eq!(mac_client_id(&[2, 0, 0, 0, 0, 1]), [1, 2, 0, 0, 0, 0, 1]);
    }
}
