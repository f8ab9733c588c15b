//! `netcontainer ls [-q] [--json] [--format T]`: every network container on
//! this host, as `docker ps` prints containers.

use std::io::IsTerminal;

use clap::Args;
use netcontainer_proto::{ForwardStatus, Status};
use serde::Serialize;

use crate::agent_client::agent_status;
use crate::docker::{DockerClient, RouterInfo};
use crate::error::Error;
use crate::labels;
use crate::labels::RouterLabels;
use crate::mac::format_mac;
use crate::output;
use crate::state::ServiceName;
use crate::template::{Fields, Paint, Template, align};

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    netcontainer ls\n  \
    netcontainer ls -q\n  \
    netcontainer ls --format '{{.Service}} {{.Address}}'\n  \
    netcontainer ls --format 'table {{.Service}}\\t{{.Lease}}'\n  \
    netcontainer ls --json")]
pub struct LsArgs {
    #[command(flatten)]
    pub out: OutputArgs,
}

/// How `ls` and `status` print a list.
#[derive(Args, Debug, Default)]
pub struct OutputArgs {
    /// Print JSON.
    #[arg(long, conflicts_with_all = ["quiet", "format"])]
    pub json: bool,
    /// Only the service names.
    #[arg(short, long, conflicts_with = "format")]
    pub quiet: bool,
    /// Go-template-style format, as for docker ps: {{.Service}}, {{.Address}},
    /// {{.Address6}}, {{.Ports}}, {{.Lease}}, {{.State}}, {{.Mode}}, {{.Source}}, {{.Identity}},
    /// {{.Router}}, {{.Parent}}, {{.Mac}}, {{json .}}; a leading `table`
    /// adds a header and aligns tab-separated columns.
    #[arg(long, value_name = "TEMPLATE")]
    pub format: Option<String>,
}

impl OutputArgs {
    /// The list as asked for.
    pub fn render(&self, list: &[Entry]) -> Result<String, Error> {
        if self.json {
            return Ok(format!("{}\n", output::to_json(&list)));
        }
        if self.quiet {
            return Ok(list.iter().map(|e| format!("{}\n", e.service)).collect());
        }
        if let Some(f) = &self.format {
            let t = Template::parse::<Entry>(f).map_err(Error::Usage)?;
            return Ok(t.render(list));
        }
        Ok(table(list, std::io::stdout().is_terminal()))
    }
}

/// One network container, as `ls --json` and `status --json` print it.
#[derive(Serialize, Debug)]
pub struct Entry {
    pub service: String,
    pub router: String,
    pub router_running: bool,
    pub parent: Option<String>,
    pub mode: Option<String>,
    pub mac: Option<String>,
    /// What the MAC and client id derive from (see `plan::identity_of`).
    pub identity: String,
    /// `gateway` or `masquerade` (the agent's plan); null when it does not
    /// answer.
    pub source: Option<String>,
    /// The agent's status; null when it does not answer.
    pub agent: Option<Status>,
    /// The agent's standing problems by subsystem (`status NAME` only; an
    /// older agent has none to list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<netcontainer_proto::Problem>>,
    /// Why the host has no route to the service's lease (see
    /// `shim::check`); absent when it has one or needs none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_route_refused: Option<String>,
}

pub async fn entries(
    docker: &DockerClient,
    only: Option<&ServiceName>,
) -> Result<Vec<Entry>, Error> {
    let routers: Vec<RouterInfo> = match only {
        Some(s) => docker.router(s).await?.into_iter().collect(),
        None => docker.routers().await?,
    };
    let mut out = Vec::new();
    for r in routers {
        let agent = if r.running {
            agent_status(&r.service).await
        } else {
            None
        };
        let label = |k: &str| r.labels.get(k).cloned();
        // Typed when the labels read; as written when they do not (ls shows
        // what is there, it does not judge).
        let typed = RouterLabels::parse(&r.labels).ok();
        out.push(Entry {
            service: r.service.to_string(),
            router: r.name.clone(),
            router_running: r.running,
            parent: label(labels::PARENT),
            mode: match &typed {
                Some(t) => t.mode.map(|m| m.name().to_string()),
                None => label(labels::MODE),
            },
            mac: match &typed {
                Some(t) => t.mac.map(|m| format_mac(&m)),
                None => label(labels::MAC),
            },
            identity: crate::router::router_identity(&r),
            source: agent.as_ref().map(|s| s.source.to_string()),
            agent,
            problems: None,
            host_route_refused: crate::shim::refusal(&r.service),
        });
    }
    Ok(out)
}

/// `LAN->CONTAINER/PROTO` (just `PORT/PROTO` when they are equal), ranges
/// as `A-B`: like docker ps's PORTS column.
pub fn ports_column(forwards: &[ForwardStatus]) -> String {
    let range = |a: u16, b: u16| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        }
    };
    forwards
        .iter()
        .map(|f| {
            let lan = range(f.public_port, f.public_port_end);
            if f.target_port == f.public_port {
                format!("{lan}/{}", f.protocol)
            } else {
                let end = f
                    .target_port
                    .saturating_add(f.public_port_end - f.public_port);
                format!("{lan}->{}/{}", range(f.target_port, end), f.protocol)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Entry {
    fn address(&self) -> String {
        self.agent
            .as_ref()
            .and_then(|s| s.lease.as_ref())
            .map(|l| l.address.to_string())
            .unwrap_or_else(|| "-".into())
    }

    /// The LAN interface's global IPv6 addresses, comma-separated.
    fn address6(&self) -> String {
        let v6: Vec<String> = self
            .agent
            .iter()
            .flat_map(|s| &s.ipv6)
            .filter(|a| !a.address.is_unicast_link_local())
            .map(|a| a.address.to_string())
            .collect();
        if v6.is_empty() {
            "-".into()
        } else {
            v6.join(",")
        }
    }

    fn state(&self) -> String {
        match &self.agent {
            Some(s) => s.state.to_string(),
            None if self.router_running => "no-answer".into(),
            None => "router-stopped".into(),
        }
    }

    /// Seconds the lease has left.
    fn lease(&self) -> String {
        match self.agent.as_ref().and_then(|s| s.lease.as_ref()) {
            Some(l) => l
                .expires_in_secs
                .map(|x| format!("{x}s"))
                .unwrap_or_else(|| "infinite".into()),
            None => "-".into(),
        }
    }

    fn ports(&self) -> String {
        match &self.agent {
            Some(s) if !s.forwards.is_empty() => ports_column(&s.forwards),
            _ => "-".into(),
        }
    }

    fn opt(v: &Option<String>) -> String {
        v.as_deref()
            .map(|v| output::safe(v).into_owned())
            .unwrap_or_else(|| "-".into())
    }
}

impl Fields for Entry {
    const NAMES: &'static [&'static str] = &[
        "Service", "Address", "Address6", "Ports", "Lease", "State", "Mode", "Source", "Name",
        "Identity", "Router", "Parent", "Mac",
    ];

    fn field(&self, name: &str) -> Option<String> {
        Some(match name {
            "Service" => output::safe(&self.service).into_owned(),
            "Address" => self.address(),
            "Address6" => self.address6(),
            "Ports" => self.ports(),
            "Lease" => self.lease(),
            "State" => self.state(),
            "Mode" => Entry::opt(&self.mode),
            "Source" => Entry::opt(&self.source),
            // The `.local` name the router claimed by mDNS.
            "Name" => Entry::opt(&self.agent.as_ref().and_then(|s| s.mdns.clone())),
            "Identity" => output::safe(&self.identity).into_owned(),
            "Router" => output::safe(&self.router).into_owned(),
            "Parent" => Entry::opt(&self.parent),
            "Mac" => Entry::opt(&self.mac),
            _ => return None,
        })
    }

    fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

const COLUMNS: [&str; 9] = [
    "SERVICE", "ADDRESS", "ADDRESS6", "PORTS", "LEASE", "STATE", "MODE", "SOURCE", "NAME",
];

/// The aligned table; the STATE column coloured when `colour` (a terminal).
pub fn table(entries: &[Entry], colour: bool) -> String {
    let mut rows = vec![COLUMNS.iter().map(|c| c.to_string()).collect::<Vec<_>>()];
    for e in entries {
        rows.push(
            [
                "Service", "Address", "Address6", "Ports", "Lease", "State", "Mode", "Source",
                "Name",
            ]
            .iter()
            .map(|f| e.field(f).unwrap_or_default())
            .collect(),
        );
    }
    let paint = |s: &str| {
        let code = match s {
            "bound" | "renewing" => "32",
            "rebinding" | "selecting" | "requesting" | "init" | "init-reboot" | "rebooting"
            | "waiting-for-plan" => "33",
            _ => "31",
        };
        format!("\x1b[{code}m{s}\x1b[0m")
    };
    let paint_ref: &dyn Fn(&str) -> String = &paint;
    let painters: Vec<Paint<'_>> = if colour {
        let state = COLUMNS.iter().position(|c| *c == "STATE").unwrap_or(0);
        let mut p: Vec<Paint<'_>> = vec![None; state];
        p.push(Some(paint_ref));
        p
    } else {
        Vec::new()
    };
    align(&rows, &painters)
}

pub async fn run(a: LsArgs) -> Result<(), Error> {
    let docker = DockerClient::connect().await?;
    let list = entries(&docker, None).await?;
    print!("{}", a.out.render(&list)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use netcontainer_proto::{LeaseStatus, Protocol, State};
    use std::net::Ipv4Addr;

    fn entry(service: &str, bound: bool, running: bool) -> Entry {
        let fwd = |p: (u16, u16), t: u16, protocol| ForwardStatus {
            protocol,
            public_port: p.0,
            public_port_end: p.1,
            target_address: Ipv4Addr::new(198, 51, 100, 2),
            target_port: t,
            packets: 0,
            bytes: 0,
        };
        Entry {
            service: service.into(),
            router: format!("netcontainer-{service}"),
            router_running: running,
            parent: Some("eth0".into()),
            mode: Some("macvlan".into()),
            mac: Some("02:00:00:00:00:01".into()),
            identity: format!("D/{service}\u{1b}[31m"),
            source: running.then(|| "gateway".into()),
            agent: running.then(|| Status {
                state: if bound {
                    State::Bound
                } else {
                    State::Selecting
                },
                interface: Some("lan0".into()),
                hostname: None,
                lease: bound.then(|| LeaseStatus {
                    address: Ipv4Addr::new(203, 0, 113, 57),
                    prefix_len: 24,
                    gateway: None,
                    server_id: Ipv4Addr::new(203, 0, 113, 1),
                    lease_secs: Some(600),
                    renew_in_secs: Some(280),
                    rebind_in_secs: Some(505),
                    expires_in_secs: Some(580),
                    dns: Vec::new(),
                }),
                forwards: vec![
                    fwd((80, 80), 8080, Protocol::Tcp),
                    fwd((7000, 7009), 7000, Protocol::Udp),
                ],
                last_error: None,
                agent_version: String::new(),
                source: Default::default(),
                ipv6: if service == "web1" {
                    vec![netcontainer_proto::Ipv6AddressStatus {
                        address: "2001:db8:1::57".parse().unwrap(),
                        prefix_len: 64,
                        origin: netcontainer_proto::Ipv6Origin::Slaac,
                        preferred_in_secs: None,
                        valid_in_secs: None,
                    }]
                } else {
                    Vec::new()
                },
                ipv6_path: Default::default(),
                mdns: bound.then(|| format!("{service}-2.local")),
            }),
            problems: None,
            host_route_refused: None,
        }
    }

    #[test]
    fn table_has_docker_like_aligned_columns() {
        let list = [
            entry("web1", true, true),
            entry("db", false, true),
            entry("gone", false, false),
        ];
        let t = table(&list, false);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "SERVICE  ADDRESS       ADDRESS6        PORTS                        LEASE  STATE           MODE     SOURCE   NAME"
        );
        assert_eq!(
            lines[1],
            "web1     203.0.113.57  2001:db8:1::57  80->8080/tcp, 7000-7009/udp  580s   bound           macvlan  gateway  web1-2.local"
        );
        assert_eq!(
            lines[2],
            "db       -             -               80->8080/tcp, 7000-7009/udp  -      selecting       macvlan  gateway  -"
        );
        assert_eq!(
            lines[3],
            "gone     -             -               -                            -      router-stopped  macvlan  -        -"
        );
        assert!(!t.contains('\u{1b}'), "no colour off a terminal");
        let c = table(&list, true);
        assert!(c.contains("\u{1b}[32mbound\u{1b}[0m"), "{c}");
        assert!(c.contains("\u{1b}[31mrouter-stopped\u{1b}[0m"), "{c}");
    }

    #[test]
    fn quiet_json_and_format() {
        let list = [entry("web1", true, true), entry("db", false, true)];
        let o = |quiet, json, format: Option<&str>| OutputArgs {
            json,
            quiet,
            format: format.map(String::from),
        };
        assert_eq!(o(true, false, None).render(&list).unwrap(), "web1\ndb\n");
        let j: serde_json::Value =
            serde_json::from_str(&o(false, true, None).render(&list).unwrap()).unwrap();
        assert_eq!(j[0]["service"], "web1");
        assert_eq!(j[0]["agent"]["lease"]["address"], "203.0.113.57");
        let f = o(
            false,
            false,
            Some("{{.Service}} {{.Address}} {{.Lease}} {{.Mode}}"),
        );
        assert_eq!(
            f.render(&list).unwrap(),
            "web1 203.0.113.57 580s macvlan\ndb - - macvlan\n"
        );
        // Control characters from labels are escaped, also in templates.
        let f = o(false, false, Some("{{.Identity}}"));
        assert_eq!(f.render(&list[..1]).unwrap(), "D/web1\\u{1b}[31m\n");
        let f = o(false, false, Some("{{json .}}"));
        let v: serde_json::Value =
            serde_json::from_str(f.render(&list[..1]).unwrap().trim()).unwrap();
        assert_eq!(v["router"], "netcontainer-web1");
        let e = o(false, false, Some("{{.Nope}}"))
            .render(&list)
            .unwrap_err();
        assert!(e.to_string().contains("unknown field .Nope"), "{e}");
    }
}
