//! `netcontainer up CONTAINER --parent IFACE`: give a running container its
//! own address on the LAN.

use std::net::Ipv4Addr;
use std::time::Duration;

use clap::Args;

use crate::commands::LOCK_PATIENCE;
use crate::commands::require_root;
use crate::docker::default_image;
use crate::error::Error;
use crate::labels;
use crate::leg::Kind;
use crate::lock::ServiceLock;
use crate::mac::parse_mac;
use crate::plan::UpOptions;
use crate::ports::{PortSpec, ports_text};
use crate::router::{Driver, UpRequest};
use crate::state::ServiceName;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    netcontainer up web1 --parent eth0\n  \
    netcontainer up web1 --parent eth0 --publish 80:8080/tcp --publish 5353:53/udp\n  \
    netcontainer up web1 --parent eth0 --mode ipvlan --hostname shop\n  \
    netcontainer up web1 --parent eth0 --source masquerade\n  \
    netcontainer up web1 --parent eth0 --ip 192.0.2.57 --ip-strict")]
pub struct UpArgs {
    /// The service container (name or ID); it must be running.
    container: String,
    /// Host NIC on the LAN; default: the container's `netcontainer.parent` label.
    #[arg(long)]
    parent: Option<String>,
    /// macvlan (default), or ipvlan for parents that drop unknown MACs.
    #[arg(long, value_enum)]
    mode: Option<Kind>,
    /// Port to forward (repeatable): LAN port : container port, e.g. 80:8080/tcp
    /// or 7000-7009:8000-8009/udp; a plain 80/tcp is 80:80/tcp. Default: the
    /// netcontainer.ports label, else the exposed ports.
    #[arg(long, value_name = "[LAN[-LAN]:]PORT[-PORT]/PROTO")]
    publish: Vec<PortSpec>,
    /// Hostname to register with the DHCP server; default: the container name.
    #[arg(long)]
    hostname: Option<String>,
    /// MAC address of the LAN leg; default: derived from the container name.
    #[arg(long, value_parser = parse_mac)]
    mac: Option<[u8; 6]>,
    /// Router image.
    #[arg(long, default_value_t = default_image())]
    image: String,
    /// Probe the leased address with ARP before using it and decline it if
    /// another host answers (RFC 5227; ~0.3 s more); same as the service
    /// label netcontainer.arp-probe=true.
    #[arg(long)]
    arp_probe: bool,
    /// The service's network to forward to, when it is on several; default:
    /// the service's label netcontainer.network, else the first by name.
    #[arg(long)]
    network: Option<String>,
    /// How the service's traffic passes its router: `gateway` (the service's
    /// default route points at its router: it sees its clients' real
    /// addresses and its own connections leave from its LAN address) or
    /// `masquerade` (clients appear as the router; the service's own traffic
    /// leaves through Docker). Default: the netcontainer.source label, else
    /// gateway for a service on one network, masquerade on several.
    #[arg(long, value_name = "gateway|masquerade")]
    source: Option<netcontainer_proto::SourceMode>,
    /// Give the host no route to the leased address (by default a host-side
    /// macvlan shim on the parent routes it, so the host and its containers
    /// reach the service at its LAN address too).
    #[arg(long)]
    no_host_route: bool,
    /// Ask the DHCP server for this address (option 50); default: the
    /// service's label netcontainer.ip. The server may give another; `up`
    /// then says so on stderr.
    #[arg(long, value_parser = parse_ip_arg)]
    ip: Option<Ipv4Addr>,
    /// With --ip (or the label): fail, leaving nothing behind, when the
    /// server gives another address.
    #[arg(long)]
    ip_strict: bool,
    /// IPv6 on the LAN leg: auto (as the LAN's router advertisements say:
    /// SLAAC and/or DHCPv6) or off; default: the service's label
    /// netcontainer.ipv6, else auto.
    #[arg(long, value_name = "off|auto")]
    ipv6: Option<netcontainer_proto::Ipv6Mode>,
    /// Gateway mode: the only IPv4 networks the service's own connections
    /// may reach through its router (the router's forward chain drops the
    /// rest; the host's DOCKER-USER chain never sees this traffic); default:
    /// the service's label netcontainer.egress, else anywhere.
    #[arg(long, value_name = "CIDR,...")]
    egress: Option<String>,
    /// Listen only to these DHCP servers (their server identifiers, option
    /// 54): OFFERs, ACKs and NAKs from any other are ignored; default: the
    /// service's label netcontainer.dhcp-server, else every server.
    #[arg(long, value_name = "ADDR,...")]
    dhcp_server: Option<String>,
    /// Ignore these DHCP servers; default: the service's label
    /// netcontainer.deny-dhcp-server.
    #[arg(long, value_name = "ADDR,...", conflicts_with = "dhcp_server")]
    deny_dhcp_server: Option<String>,
    /// Multicast DNS on the LAN: the router answers for HOSTNAME.local and
    /// publishes its well-known ports by DNS-SD; default: the service's
    /// label netcontainer.mdns, else on.
    #[arg(long, value_name = "on|off", value_parser = parse_on_off_arg)]
    mdns: Option<bool>,
    /// More DNS-SD services (each port must be published); default: the
    /// service's label netcontainer.dnssd.
    #[arg(long, value_name = "_TYPE._tcp:PORT,...")]
    dnssd: Option<String>,
    /// The DNS-SD services' TXT entries; default: the service's label
    /// netcontainer.dnssd-txt.
    #[arg(long, value_name = "KEY=VALUE,...")]
    dnssd_txt: Option<String>,
    /// Seconds to wait for the lease.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    #[command(flatten)]
    ddns: crate::ddns::DdnsArgs,
}

pub fn parse_on_off_arg(s: &str) -> Result<bool, String> {
    crate::labels::parse_on_off("--mdns", s).map_err(|e| e.message)
}

fn parse_ip_arg(s: &str) -> Result<Ipv4Addr, String> {
    crate::labels::parse_ip("--ip", s).map_err(|e| e.message)
}

pub async fn run(a: UpArgs) -> Result<(), Error> {
    require_root()?;
    ServiceName::parse(&a.container)?;
    let egress = match a.egress.as_deref() {
        Some(v) => netcontainer_proto::parse_egress(v)
            .map_err(|e| Error::Usage(format!("--egress {e}")))?,
        None => Vec::new(),
    };
    let dhcp_servers = crate::commands::dhcp_servers_args(
        a.dhcp_server.as_deref(),
        a.deny_dhcp_server.as_deref(),
    )?;
    let mdns = crate::commands::mdns_args(a.mdns, a.dnssd.as_deref(), a.dnssd_txt.as_deref())?;
    // A bad key file stops `up` before anything is made.
    let ddns = a.ddns.client()?;
    let driver = Driver::connect().await?;
    crate::platform::refuse_unsupported(&driver.docker).await?;
    let svc = driver.docker.service(&a.container).await?;
    let name = ServiceName::parse(&svc.name)?;
    let _lock = ServiceLock::take(&name, LOCK_PATIENCE).await?;
    // From here on SIGINT/SIGTERM roll back what `up` created instead of
    // leaving a router behind.
    let interrupt = crate::interrupt::interrupt_on_signals()?;
    let opts = UpOptions {
        parent: a.parent,
        mode: a.mode,
        publish: a.publish,
        hostname: a.hostname,
        mac: a.mac,
        arp_probe: a.arp_probe,
        network: a.network,
        source: a.source,
        no_host_route: a.no_host_route,
        ip: a.ip,
        ip_strict: a.ip_strict,
        ipv6: a.ipv6,
        identity: None,
        egress,
        dhcp_servers,
        mdns,
    };
    let req = UpRequest {
        service: &svc,
        options: &opts,
        image: &a.image,
        timeout: Duration::from_secs(a.timeout),
        progress: true,
        applied: None,
        no_router: false,
    };
    let (rp, status) = driver.up(&req, interrupt).await?;
    let addr = status
        .lease
        .as_ref()
        .map(|l| l.address.to_string())
        .unwrap_or_default();
    if let (Some(asked), Some(l)) = (rp.requested, status.lease.as_ref())
        && l.address != asked
    {
        eprintln!(
            "{}: asked the DHCP server for {asked}, it gave {} (taken, or outside its pool)",
            crate::output::safe(&rp.service),
            l.address
        );
    }
    if svc.networks.len() > 1 {
        let all: Vec<&str> = svc.networks.iter().map(|(n, _)| n.as_str()).collect();
        eprintln!(
            "{}: on networks {}: forwarding to {} on {} (--network or label {} chooses), {} mode",
            crate::output::safe(&rp.service),
            crate::output::safe(&all.join(", ")),
            rp.service_ip,
            crate::output::safe(&rp.network),
            labels::NETWORK,
            rp.plan.source,
        );
    }
    if rp.host_route
        && let Some(e) = driver.sync_host_routes().await
    {
        eprintln!(
            "warning: {}: the host cannot reach {addr} itself ({}); LAN hosts can",
            crate::output::safe(&rp.service),
            crate::output::safe(&e)
        );
    }
    if let Some(c) = &ddns {
        crate::ddns::after_up(c, &rp.service, &status).await;
    }
    println!("{} {} {}", rp.service, addr, ports_text(&rp.ports));
    Ok(())
}
