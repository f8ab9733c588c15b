//! `netcontainer agent ...`: talk to one agent directly, without Docker.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use netcontainer_proto::{Forward, Plan, Request, Response, validate_hostname};

use crate::agent_client::{AgentClient, unexpected};
use crate::error::Error;
use crate::output;

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Send a plan to an agent (and optionally wait for its lease).
    #[command(after_help = "Example:\n  \
        netcontainer agent apply --socket /run/netcontainer/web1/agent.sock --interface lan0 \\\n      \
        --forward tcp:80=198.51.100.2:8080 --hostname web1 --wait 10")]
    Apply(Box<ApplyArgs>),
    /// Show an agent's status.
    #[command(after_help = "Example:\n  \
        netcontainer agent status --socket /run/netcontainer/web1/agent.sock --json")]
    Status(StatusArgs),
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// The agent's control socket.
    #[arg(long)]
    socket: PathBuf,
    /// LAN interface inside the agent's namespace.
    #[arg(long)]
    interface: String,
    /// Forward PROTO:PORT[-PORT]=IP:PORT (repeatable), e.g. tcp:80=198.51.100.2:8080.
    #[arg(long = "forward", value_parser = Forward::parse)]
    forwards: Vec<Forward>,
    /// Hostname to register with the DHCP server.
    #[arg(long, value_parser = parse_hostname)]
    hostname: Option<String>,
    /// DHCP client identifier (the string's bytes); default: type 1 + the interface MAC.
    #[arg(long)]
    client_id: Option<String>,
    /// Ask servers to broadcast their replies (BOOTP broadcast flag).
    #[arg(long)]
    broadcast: bool,
    /// Gateway mode for the service at ADDR (its default route points at
    /// this router): no masquerade toward it, its own traffic leaves from
    /// the lease. Default: masquerade mode.
    #[arg(long, value_name = "ADDR")]
    gateway_for: Option<std::net::Ipv4Addr>,
    /// The service's IPv6 address (on an IPv6 Docker network): the
    /// published ports are DNATed to it over IPv6 in the kernel. Without
    /// it the agent relays IPv6 to the forwards' IPv4 targets.
    #[arg(long, value_name = "ADDR6")]
    service_address6: Option<std::net::Ipv6Addr>,
    /// IPv6 on the interface: auto (SLAAC and/or DHCPv6 as the router
    /// advertisements say) or off.
    #[arg(long, value_name = "off|auto", default_value = "auto")]
    ipv6: netcontainer_proto::Ipv6Mode,
    /// Listen only to these DHCP servers (their server identifiers).
    #[arg(long, value_name = "ADDR,...")]
    dhcp_server: Option<String>,
    /// Ignore these DHCP servers.
    #[arg(long, value_name = "ADDR,...", conflicts_with = "dhcp_server")]
    deny_dhcp_server: Option<String>,
    /// Answer for HOSTNAME.local by multicast DNS on the interface, with
    /// the well-known forwarded ports as DNS-SD services (needs --hostname).
    #[arg(long, requires = "hostname")]
    mdns: bool,
    /// More DNS-SD services (with --mdns).
    #[arg(long, value_name = "_TYPE._tcp:PORT,...", requires = "mdns")]
    dnssd: Option<String>,
    /// The DNS-SD services' TXT entries (with --mdns).
    #[arg(long, value_name = "KEY=VALUE,...", requires = "mdns")]
    dnssd_txt: Option<String>,
    /// Wait up to SECS for a lease; fail if none by then.
    #[arg(long, value_name = "SECS")]
    wait: Option<f64>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The agent's control socket.
    #[arg(long)]
    socket: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn parse_hostname(s: &str) -> Result<String, String> {
    validate_hostname(s).map(|_| s.to_string())
}

pub async fn run(cmd: AgentCommand) -> Result<(), Error> {
    match cmd {
        AgentCommand::Apply(a) => apply(*a).await,
        AgentCommand::Status(s) => status(s).await,
    }
}

async fn apply(a: ApplyArgs) -> Result<(), Error> {
    let wait = match a.wait {
        Some(w) if !(0.0..=86_400.0).contains(&w) => {
            return Err(Error::Usage(format!(
                "--wait {w}: expected 0 to 86400 seconds"
            )));
        }
        w => w.map(Duration::from_secs_f64),
    };
    if let Some(id) = &a.client_id
        && (id.is_empty() || id.len() > 255)
    {
        return Err(Error::Usage("--client-id must be 1 to 255 bytes".into()));
    }
    let first_target = a.forwards.first().map(|f| f.target_address);
    let mut plan = Plan {
        interface: a.interface.clone(),
        hostname: a.hostname,
        client_id: a.client_id.map(String::into_bytes),
        broadcast_flag: a.broadcast,
        forwards: a.forwards,
        source: if a.gateway_for.is_some() {
            netcontainer_proto::SourceMode::Gateway
        } else {
            netcontainer_proto::SourceMode::Masquerade
        },
        service: a
            .gateway_for
            .or(a.service_address6.and(first_target))
            .map(|address| netcontainer_proto::ServiceInfo {
                name: "service".into(),
                id: String::new(),
                hostname: String::new(),
                address,
                address6: a.service_address6,
            }),
        ipv6: a.ipv6,
        dhcp_servers: Box::new(crate::commands::dhcp_servers_args(
            a.dhcp_server.as_deref(),
            a.deny_dhcp_server.as_deref(),
        )?),
        mdns: None,
    };
    if a.mdns {
        let m = crate::commands::mdns_args(Some(true), a.dnssd.as_deref(), a.dnssd_txt.as_deref())?;
        let services = netcontainer_proto::dnssd_services(&plan.forwards, &m.dnssd, &m.txt)
            .map_err(|e| Error::Usage(format!("--dnssd: {e}")))?;
        plan.mdns = Some(Box::new(netcontainer_proto::Mdns { services }));
    }
    plan.validate().map_err(Error::Usage)?;
    let mut client = AgentClient::connect(&a.socket).await?;
    let applied = match client
        .request(&Request::Apply(plan), Duration::ZERO)
        .await?
    {
        Response::Applied(s) => s,
        other => return Err(unexpected(other)),
    };
    let Some(wait) = wait else {
        println!("plan applied on {} (state: {})", a.interface, applied.state);
        return Ok(());
    };
    let status = if applied.lease.is_some() {
        applied
    } else {
        client.wait_bound(wait).await?
    };
    match &status.lease {
        Some(l) => {
            println!("{} {}/{}", a.interface, l.address, l.prefix_len);
            Ok(())
        }
        None => Err(Error::WaitTimeout {
            interface: a.interface,
            secs: wait.as_secs_f64().round() as u64,
            state: status.state.to_string(),
        }),
    }
}

async fn status(s: StatusArgs) -> Result<(), Error> {
    let mut client = AgentClient::connect(&s.socket).await?;
    let status = client.status().await?;
    // Counters before problems: every agent that knows `Problems` knows
    // `Counters` too.
    let counters = client.counters().await.unwrap_or(None);
    // Last: an older agent answers it with an error and closes the connection.
    let problems = client.problems().await.unwrap_or(None);
    if s.json {
        /// The status with the counters and problems beside its fields.
        #[derive(serde::Serialize)]
        struct WithProblems<'a> {
            #[serde(flatten)]
            status: &'a netcontainer_proto::Status,
            #[serde(skip_serializing_if = "Option::is_none")]
            counters: Option<netcontainer_proto::LeaseCounters>,
            #[serde(skip_serializing_if = "Option::is_none")]
            problems: Option<Vec<netcontainer_proto::Problem>>,
        }
        let out = WithProblems {
            status: &status,
            counters,
            problems,
        };
        println!("{}", output::to_json(&out));
    } else {
        print!("{}", output::status_text(&status));
        if let Some(p) = &problems {
            print!("{}", output::problems_text(p));
        }
    }
    Ok(())
}
