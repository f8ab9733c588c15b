use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Transport protocol of a forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            other => Err(format!("unknown protocol {other:?} (expected tcp or udp)")),
        }
    }
}

/// One port forward: `public_port..=public_port_end` on the leased address goes
/// to `target_address`, port `target_port + (port - public_port)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Forward {
    pub protocol: Protocol,
    pub public_port: u16,
    /// Last port of the range; equal to `public_port` for a single port.
    pub public_port_end: u16,
    pub target_address: Ipv4Addr,
    pub target_port: u16,
}

impl Forward {
    /// Number of ports covered by this forward (0 for an inverted range,
    /// which `validate` refuses).
    pub fn len(&self) -> u32 {
        (u32::from(self.public_port_end) + 1).saturating_sub(u32::from(self.public_port))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the forward's own consistency (ranges, no port 0, target range fits).
    pub fn validate(&self) -> Result<(), String> {
        if self.public_port == 0 || self.target_port == 0 {
            return Err(format!("{self}: port 0 cannot be forwarded"));
        }
        if self.public_port_end < self.public_port {
            return Err(format!("{self}: range end is below its start"));
        }
        let last_target = u32::from(self.target_port) + self.len() - 1;
        if last_target > u32::from(u16::MAX) {
            return Err(format!("{self}: target range ends past port 65535"));
        }
        if self.target_address.is_unspecified()
            || self.target_address.is_broadcast()
            || self.target_address.is_multicast()
        {
            return Err(format!("{self}: target address is not a unicast address"));
        }
        Ok(())
    }

    /// Parses `PROTO:PORT[-PORT]=IP:PORT`, e.g. `tcp:80=198.51.100.2:8080`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("invalid forward {s:?} (expected PROTO:PORT[-PORT]=IP:PORT)");
        let (lhs, rhs) = s.split_once('=').ok_or_else(bad)?;
        let (proto, ports) = lhs.split_once(':').ok_or_else(bad)?;
        let protocol: Protocol = proto.parse()?;
        let (start, end) = match ports.split_once('-') {
            Some((a, b)) => (a, b),
            None => (ports, ports),
        };
        let public_port: u16 = start.trim().parse().map_err(|_| bad())?;
        let public_port_end: u16 = end.trim().parse().map_err(|_| bad())?;
        let (ip, port) = rhs.rsplit_once(':').ok_or_else(bad)?;
        let target_address: Ipv4Addr = ip
            .trim()
            .parse()
            .map_err(|_| format!("invalid forward {s:?}: {ip:?} is not an IPv4 address"))?;
        let target_port: u16 = port.trim().parse().map_err(|_| bad())?;
        let f = Forward {
            protocol,
            public_port,
            public_port_end,
            target_address,
            target_port,
        };
        f.validate()?;
        Ok(f)
    }
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.protocol, self.public_port)?;
        if self.public_port_end != self.public_port {
            write!(f, "-{}", self.public_port_end)?;
        }
        write!(f, "={}:{}", self.target_address, self.target_port)
    }
}

/// What the host driver asks an agent to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The LAN-side interface inside the agent's namespace (e.g. `lan0`).
    pub interface: String,
    /// Hostname sent as DHCP option 12 and FQDN option 81.
    pub hostname: Option<String>,
    /// DHCP client identifier (option 61). `None`: type 1 + the interface MAC.
    pub client_id: Option<Vec<u8>>,
    /// Set the BOOTP broadcast flag on DISCOVER/REQUEST.
    pub broadcast_flag: bool,
    /// Ports to forward from the leased address.
    pub forwards: Vec<Forward>,
    /// How the service's traffic passes the router (see [`SourceMode`]).
    /// Absent from a plan saved by an older agent: masquerade, what it did.
    #[serde(default)]
    pub source: SourceMode,
    /// The service the router stands for: what the "who am I?" endpoint
    /// answers about, and (gateway mode) whose own traffic may leave on the
    /// LAN from the leased address.
    #[serde(default)]
    pub service: Option<ServiceInfo>,
    /// IPv6 on the LAN interface (`--ipv6`, label `netcontainer.ipv6`).
    #[serde(default)]
    pub ipv6: Ipv6Mode,
    /// The DHCP servers the agent listens to (`--dhcp-server`,
    /// `--deny-dhcp-server`); default: all. Boxed: most plans have none,
    /// and a plan travels inside enums beside small variants.
    #[serde(default)]
    pub dhcp_servers: Box<crate::DhcpServers>,
    /// Multicast DNS and DNS-SD on the LAN leg (`--mdns`, label
    /// `netcontainer.mdns`); `None`: off. Boxed like `dhcp_servers`.
    #[serde(default)]
    pub mdns: Option<Box<crate::Mdns>>,
}

/// Whether the router takes IPv6 addresses on the LAN.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ipv6Mode {
    /// No IPv6 on the LAN interface.
    Off,
    /// As the LAN's router advertisements say: SLAAC, DHCPv6, or none.
    #[default]
    Auto,
}

impl Ipv6Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Ipv6Mode::Off => "off",
            Ipv6Mode::Auto => "auto",
        }
    }
}

impl fmt::Display for Ipv6Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Ipv6Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(Ipv6Mode::Off),
            "auto" => Ok(Ipv6Mode::Auto),
            other => Err(format!(
                "invalid IPv6 mode {other:?} (expected off or auto)"
            )),
        }
    }
}

/// Where an IPv6 address came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ipv6Origin {
    /// Formed from an advertised prefix (RFC 4862).
    Slaac,
    /// Leased by a DHCPv6 server (IA_NA).
    Dhcpv6,
}

/// One IPv6 address on the LAN interface, as reported in status. Lifetimes
/// are seconds from the moment the status was taken; `None` for infinity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv6AddressStatus {
    pub address: Ipv6Addr,
    pub prefix_len: u8,
    pub origin: Ipv6Origin,
    pub preferred_in_secs: Option<u64>,
    pub valid_in_secs: Option<u64>,
}

/// How a service's traffic passes its router.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceMode {
    /// Forwarded connections are masqueraded toward the service (it sees the
    /// router's Docker-side address for every client); the service's own
    /// traffic leaves through Docker's gateway.
    #[default]
    Masquerade,
    /// The service's default route points at the router (set by the host
    /// driver in the service's namespace): it sees its clients' real
    /// addresses, and its own traffic to the LAN and beyond leaves from the
    /// leased address.
    Gateway,
}

impl SourceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceMode::Masquerade => "masquerade",
            SourceMode::Gateway => "gateway",
        }
    }
}

impl fmt::Display for SourceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SourceMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "masquerade" => Ok(SourceMode::Masquerade),
            "gateway" => Ok(SourceMode::Gateway),
            other => Err(format!(
                "invalid source mode {other:?} (gateway or masquerade)"
            )),
        }
    }
}

/// The service container a router stands for, as Docker names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Container name, without Docker's leading '/'.
    pub name: String,
    /// Full container id (64 hex digits).
    pub id: String,
    /// The container's hostname (`$HOSTNAME` inside it: by default the
    /// first 12 digits of the id).
    pub hostname: String,
    /// Its private address on the network it shares with the router.
    pub address: Ipv4Addr,
    /// Its IPv6 address on that network, when the network has IPv6: the
    /// router then forwards IPv6 in the kernel (DNAT); without it, through
    /// its user-space relay to `address`.
    #[serde(default)]
    pub address6: Option<Ipv6Addr>,
}

impl ServiceInfo {
    /// Checks what could otherwise reach a rule or a reply unchecked: the
    /// name, id and hostname come from Docker, which takes them from users.
    pub fn validate(&self) -> Result<(), String> {
        let id_ok = self.id.len() <= 64 && self.id.bytes().all(|b| b.is_ascii_hexdigit());
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 255
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        let host_ok = self.hostname.len() <= 255
            && self
                .hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !id_ok {
            return Err(format!("invalid container id {:?}", self.id));
        }
        if !name_ok {
            return Err(format!("invalid container name {:?}", self.name));
        }
        if !host_ok {
            return Err(format!("invalid container hostname {:?}", self.hostname));
        }
        let a = self.address;
        if a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() {
            return Err(format!("service address {a} is not unicast"));
        }
        if let Some(a) = self.address6
            && (a.is_unspecified()
                || a.is_multicast()
                || a.is_loopback()
                || a.is_unicast_link_local())
        {
            return Err(format!("service IPv6 address {a} is not a global unicast"));
        }
        Ok(())
    }
}

impl Plan {
    /// The service's address when the plan is in gateway mode.
    pub fn gateway_for(&self) -> Option<Ipv4Addr> {
        match (self.source, &self.service) {
            (SourceMode::Gateway, Some(s)) => Some(s.address),
            _ => None,
        }
    }

    /// Checks everything that can be checked without touching the system.
    pub fn validate(&self) -> Result<(), String> {
        if self.interface.is_empty() || self.interface.len() > 15 || self.interface.contains('/') {
            return Err(format!("invalid interface name {:?}", self.interface));
        }
        if let Some(h) = &self.hostname {
            validate_hostname(h)?;
        }
        if let Some(id) = &self.client_id
            && (id.is_empty() || id.len() > 255)
        {
            return Err("client id must be 1 to 255 bytes".into());
        }
        validate_forwards(&self.forwards)?;
        if let Some(s) = &self.service {
            s.validate()?;
        }
        if self.source == SourceMode::Gateway && self.service.is_none() {
            return Err("gateway mode needs the service's address".into());
        }
        self.dhcp_servers.validate()?;
        if let Some(m) = &self.mdns {
            if self.hostname.is_none() {
                return Err("mDNS needs a hostname".into());
            }
            m.validate()?;
        }
        Ok(())
    }
}

/// Checks every forward and that no two of one protocol overlap, in
/// O(n log n): sorted by protocol and first port, the first overlap (if any)
/// is between neighbours.
pub fn validate_forwards(forwards: &[Forward]) -> Result<(), String> {
    for f in forwards {
        f.validate()?;
    }
    let mut sorted: Vec<&Forward> = forwards.iter().collect();
    sorted.sort_by_key(|f| (f.protocol, f.public_port));
    for w in sorted.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a.protocol == b.protocol && b.public_port <= a.public_port_end {
            return Err(format!("forwards {a} and {b} overlap"));
        }
    }
    Ok(())
}

/// A DNS label sequence: letters, digits, '-' and '.', at most 253 bytes.
pub fn validate_hostname(h: &str) -> Result<(), String> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid hostname {h:?} (letters, digits, '-' and '.' only)"
        ))
    }
}

/// DHCP client state as reported in status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    WaitingForPlan,
    Init,
    Selecting,
    Requesting,
    InitReboot,
    Rebooting,
    Bound,
    Renewing,
    Rebinding,
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::WaitingForPlan => "waiting-for-plan",
            State::Init => "init",
            State::Selecting => "selecting",
            State::Requesting => "requesting",
            State::InitReboot => "init-reboot",
            State::Rebooting => "rebooting",
            State::Bound => "bound",
            State::Renewing => "renewing",
            State::Rebinding => "rebinding",
            State::Stopped => "stopped",
        }
    }

    /// The agent holds a usable lease in this state.
    pub fn has_lease(self) -> bool {
        matches!(self, State::Bound | State::Renewing | State::Rebinding)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The lease as reported in status. Durations are seconds from the moment the
/// status was taken; `None` for an infinite lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    pub server_id: Ipv4Addr,
    /// Lease time granted by the server; `None` for an infinite lease.
    pub lease_secs: Option<u32>,
    pub renew_in_secs: Option<u64>,
    pub rebind_in_secs: Option<u64>,
    pub expires_in_secs: Option<u64>,
    pub dns: Vec<Ipv4Addr>,
}

/// One forward with its traffic counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardStatus {
    pub protocol: Protocol,
    pub public_port: u16,
    pub public_port_end: u16,
    pub target_address: Ipv4Addr,
    pub target_port: u16,
    pub packets: u64,
    pub bytes: u64,
}

impl ForwardStatus {
    pub fn from_forward(f: &Forward, packets: u64, bytes: u64) -> Self {
        ForwardStatus {
            protocol: f.protocol,
            public_port: f.public_port,
            public_port_end: f.public_port_end,
            target_address: f.target_address,
            target_port: f.target_port,
            packets,
            bytes,
        }
    }
}

/// What an agent reports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub state: State,
    pub interface: Option<String>,
    pub hostname: Option<String>,
    pub lease: Option<LeaseStatus>,
    pub forwards: Vec<ForwardStatus>,
    pub last_error: Option<String>,
    pub agent_version: String,
    /// The plan's source mode (masquerade before a plan).
    #[serde(default)]
    pub source: SourceMode,
    /// The IPv6 addresses on the LAN interface (empty with `--ipv6=off`).
    #[serde(default)]
    pub ipv6: Vec<Ipv6AddressStatus>,
    /// How the published ports reach the service over IPv6.
    #[serde(default)]
    pub ipv6_path: Ipv6Path,
    /// The `.local` name the router answers for by mDNS once it claimed one
    /// (`web1.local`, or `web1-2.local` when another host had it); `None`:
    /// mDNS off or not claimed yet.
    #[serde(default)]
    pub mdns: Option<String>,
}

/// How a router forwards the published ports over IPv6.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ipv6Path {
    /// Not at all: `--ipv6=off`, or no IPv6 address on the LAN yet.
    #[default]
    None,
    /// Kernel DNAT to the service's IPv6 address (its Docker network has IPv6).
    Kernel,
    /// The agent's user-space relay to the service's IPv4 address (its
    /// Docker network is IPv4 only).
    Relay,
}

impl Ipv6Path {
    pub fn as_str(self) -> &'static str {
        match self {
            Ipv6Path::None => "none",
            Ipv6Path::Kernel => "kernel",
            Ipv6Path::Relay => "relay",
        }
    }
}

impl fmt::Display for Ipv6Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The part of a router a [`Problem`] is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subsystem {
    /// The plan itself (the interface, the family tasks' start).
    Plan,
    /// The DHCPv4 client: sockets, a lost or declined lease.
    Dhcp,
    /// The IPv4 lease's address and routes on the interface.
    Address,
    /// The policy-routing rules (the service's rule in gateway mode, the
    /// IPv6 mark rule).
    Routing,
    /// The firewall table (forwards and isolation).
    Firewall,
    /// IPv6: the family task, its addresses and default routes.
    Ipv6,
    /// The IPv6 relay's listeners.
    Relay,
}

impl Subsystem {
    pub fn as_str(self) -> &'static str {
        match self {
            Subsystem::Plan => "plan",
            Subsystem::Dhcp => "dhcp",
            Subsystem::Address => "address",
            Subsystem::Routing => "routing",
            Subsystem::Firewall => "firewall",
            Subsystem::Ipv6 => "ipv6",
            Subsystem::Relay => "relay",
        }
    }
}

impl fmt::Display for Subsystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is wrong in one subsystem of a router now. Status's `last_error` is
/// the latest of them; [`Request::Problems`] lists them all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub subsystem: Subsystem,
    pub message: String,
}

/// How often the agent's DHCP client renewed, was refused and rebound,
/// since the agent started (each counter only grows; a restarted agent
/// starts again at 0, which Prometheus reads as a counter reset).
///
/// Not part of [`Status`]: bincode is positional, so a field added to
/// `Status` would make every router made by an older version undecodable
/// for a newer driver (and `watch` could no longer heal them). Counters are
/// a request of their own instead, at the end of [`Request`]: an older agent
/// answers it with an `Error`, and the driver goes on without them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseCounters {
    /// A held lease extended by the server (RENEWING or REBINDING ended in an ACK).
    pub renewals: u64,
    /// DHCPNAKs that ended a held lease or refused one asked for (INIT-REBOOT,
    /// REQUESTING, RENEWING, REBINDING).
    pub naks: u64,
    /// Times the client entered REBINDING (T2 passed without a renewal).
    pub rebinds: u64,
    /// Addresses given up because another host uses them (DECLINEd after
    /// the ARP probe was answered, or after a second conflict within
    /// RFC 5227's DEFEND_INTERVAL).
    #[serde(default)]
    pub conflicts: u64,
    /// Times another host claimed the bound address and the agent defended
    /// it with an ARP announcement (RFC 5227 section 2.4 (b)).
    #[serde(default)]
    pub defences: u64,
}

/// A request from the host driver to an agent.
///
/// New requests go at the end only: the variant index is on the wire, and an
/// older agent answers one it does not know with [`Response::Error`].
// One request is built per control call and lives for that call only: the
// size of `Apply` costs nothing worth a box at every call site.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Report status.
    Status,
    /// Validate and apply a plan. The reply is sent once the plan is accepted
    /// (rules applied if a lease is held); callers poll `Status` to wait for a lease.
    Apply(Plan),
    /// Reply once the agent holds a lease, or after `timeout_ms`, with the
    /// status at that moment (the caller checks `lease`).
    Wait { timeout_ms: u64 },
    /// Release the lease, remove address and rules, and exit.
    Shutdown,
    /// Report the DHCP client's [`LeaseCounters`].
    Counters,
    /// Report the agent's standing [`Problem`]s, one per subsystem at most
    /// (at the end, as [`Request::Counters`]: an older agent answers it
    /// with an `Error`).
    Problems,
    /// Switch this connection to push mode: the agent answers at once with an
    /// [`Response::Update`], then sends another whenever its state changes
    /// (never more often than a short settle time) and at least once per
    /// keepalive interval. The client sends nothing more on the connection;
    /// closing it ends the subscription. Pushed statuses carry zero forward
    /// counters: reading them costs an `nft` run, so they come only with
    /// [`Request::Status`]. An older agent answers `Error` (appended last,
    /// as [`Request::Counters`]).
    Subscribe,
}

/// The agent's reply to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Status(Status),
    /// The plan was accepted; the status right after applying it.
    Applied(Status),
    /// The agent is shutting down.
    ShuttingDown,
    /// The request was refused; nothing changed.
    Error(String),
    /// The answer to [`Request::Counters`].
    Counters(LeaseCounters),
    /// The answer to [`Request::Problems`].
    Problems(Vec<Problem>),
    /// One push of a [`Request::Subscribe`]d connection.
    Update(Update),
}

/// An agent's answer to a [`Request::Subscribe`] past its limit of
/// subscribers (try again later; an agent that does not know the request
/// answers another error).
pub const TOO_MANY_SUBSCRIBERS: &str = "too many subscribers";

/// What a subscribed connection gets at once and on every change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// 1 for the first push on a connection, then one more each push.
    pub seq: u64,
    /// The status at the push; `forwards` carry zero packet and byte counts.
    pub status: Status,
    pub counters: LeaseCounters,
    pub problems: Vec<Problem>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forwards() {
        let f = Forward::parse("tcp:80=198.51.100.2:8080").unwrap();
        assert_eq!(f.protocol, Protocol::Tcp);
        assert_eq!(
            (f.public_port, f.public_port_end, f.target_port),
            (80, 80, 8080)
        );
        assert_eq!(f.to_string(), "tcp:80=198.51.100.2:8080");
        let r = Forward::parse("udp:7000-7009=198.51.100.2:7000").unwrap();
        assert_eq!(r.len(), 10);
        assert_eq!(r.to_string(), "udp:7000-7009=198.51.100.2:7000");
    }

    #[test]
    fn rejects_bad_forwards() {
        for s in [
            "tcp:80",
            "sctp:80=198.51.100.2:80",
            "tcp:80=198.51.100.300:80",
            "tcp:0=198.51.100.2:80",
            "tcp:90-80=198.51.100.2:80",
            "tcp:65000-65535=198.51.100.2:65500",
            "tcp:80=0.0.0.0:80",
            "tcp:80=198.51.100.2:x",
        ] {
            assert!(Forward::parse(s).is_err(), "{s} should be refused");
        }
    }

    #[test]
    fn plan_validation_refuses_overlaps_and_bad_names() {
        let mut p = Plan {
            interface: "lan0".into(),
            hostname: Some("web1".into()),
            client_id: None,
            broadcast_flag: false,
            forwards: vec![
                Forward::parse("tcp:7000-7009=198.51.100.2:7000").unwrap(),
                Forward::parse("udp:7005=198.51.100.2:7005").unwrap(),
            ],
            source: Default::default(),
            service: None,
            ipv6: Ipv6Mode::Auto,
            dhcp_servers: Default::default(),
            mdns: None,
        };
        assert!(p.validate().is_ok());
        p.forwards
            .push(Forward::parse("tcp:7009=198.51.100.3:1").unwrap());
        assert!(p.validate().unwrap_err().contains("overlap"));
        p.forwards.pop();
        p.hostname = Some("bad_name".into());
        assert!(p.validate().is_err());
        p.hostname = None;
        p.interface = "a-very-long-interface-name".into();
        assert!(p.validate().is_err());
    }

    /// The variant indexes older peers know must not move: new variants go last.
    #[test]
    fn older_variants_keep_their_wire_index() {
        let index = |r: &Request| crate::encode_frame(r).unwrap()[6];
        assert_eq!(index(&Request::Status), 0);
        assert_eq!(index(&Request::Wait { timeout_ms: 1 }), 2);
        assert_eq!(index(&Request::Shutdown), 3);
        assert_eq!(index(&Request::Counters), 4);
        let c = LeaseCounters {
            renewals: 3,
            naks: 1,
            rebinds: 2,
            conflicts: 1,
            defences: 4,
        };
        let f = crate::encode_frame(&Response::Counters(c)).unwrap();
        assert_eq!(f[6], 4);
        let (back, _): (Response, usize) = crate::decode_frame(&f).unwrap().unwrap();
        assert_eq!(back, Response::Counters(c));
        assert_eq!(index(&Request::Problems), 5);
        assert_eq!(index(&Request::Subscribe), 6);
    }

    #[test]
    fn an_update_round_trips_at_the_last_response_index() {
        let u = Update {
            seq: 7,
            status: Status {
                state: State::Bound,
                interface: Some("lan0".into()),
                hostname: Some("web1".into()),
                lease: None,
                forwards: vec![],
                last_error: None,
                agent_version: "0.1.0".into(),
                source: SourceMode::Gateway,
                ipv6: vec![],
                ipv6_path: Default::default(),
                mdns: Some("web1.local".into()),
            },
            counters: LeaseCounters {
                renewals: 2,
                ..Default::default()
            },
            problems: vec![Problem {
                subsystem: Subsystem::Dhcp,
                message: "no answer".into(),
            }],
        };
        let f = crate::encode_frame(&Response::Update(u.clone())).unwrap();
        assert_eq!(f[6], 6, "Update follows Problems");
        let (back, _): (Response, usize) = crate::decode_frame(&f).unwrap().unwrap();
        assert_eq!(back, Response::Update(u));
    }

    #[test]
    fn ipv6_mode_parses_and_defaults_to_auto() {
        assert_eq!("off".parse::<Ipv6Mode>(), Ok(Ipv6Mode::Off));
        assert_eq!("AUTO".parse::<Ipv6Mode>(), Ok(Ipv6Mode::Auto));
        assert!("on".parse::<Ipv6Mode>().is_err());
        // A plan saved before the field existed reads as auto.
        let old = r#"{"interface":"lan0","hostname":null,"client_id":null,"broadcast_flag":false,"forwards":[]}"#;
        let p: Plan = serde_json::from_str(old).unwrap();
        assert_eq!(p.ipv6, Ipv6Mode::Auto);
    }

    #[test]
    fn state_json_names_match_contract() {
        let all = [
            State::WaitingForPlan,
            State::Init,
            State::Selecting,
            State::Requesting,
            State::InitReboot,
            State::Rebooting,
            State::Bound,
            State::Renewing,
            State::Rebinding,
            State::Stopped,
        ];
        for s in all {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
    }
}
