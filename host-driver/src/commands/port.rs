//! `netcontainer port SERVICE [PRIVATE[/PROTO]]`: the service's ports and
//! the LAN address and port each is reached on, like `docker port`.

use std::net::IpAddr;

use clap::Args;
use netcontainer_proto::{ForwardStatus, Protocol, Status};

use crate::docker::DockerClient;
use crate::error::Error;
use crate::state::ServiceName;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    netcontainer port web1\n      80/tcp -> 203.0.113.57:80\n  \
    netcontainer port web1 8080/tcp\n      8080/tcp -> 203.0.113.57:80   (published with --publish 80:8080/tcp)")]
pub struct PortArgs {
    /// The service container (name or ID).
    container: String,
    /// Only this container port, PORT[/PROTO] (tcp when omitted).
    #[arg(value_name = "PRIVATE[/PROTO]", value_parser = parse_private)]
    private: Option<(u16, Protocol)>,
}

fn parse_private(s: &str) -> Result<(u16, Protocol), String> {
    let (p, proto) = match s.split_once('/') {
        Some((p, proto)) => (p, proto.parse::<Protocol>()?),
        None => (s, Protocol::Tcp),
    };
    match p.parse::<u16>() {
        Ok(n) if n != 0 => Ok((n, proto)),
        _ => Err(format!(
            "invalid port {s:?} (expected PORT[/PROTO], e.g. 80/tcp)"
        )),
    }
}

/// One line per container port: `PRIVATE/PROTO -> LAN_ADDRESS:LAN_PORT`,
/// only `private` when given. Ranges give a line per port.
pub fn port_lines(
    addresses: &[IpAddr],
    forwards: &[ForwardStatus],
    private: Option<(u16, Protocol)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for f in forwards {
        for i in 0..=(f.public_port_end.saturating_sub(f.public_port)) {
            let (public, target) = (f.public_port + i, f.target_port.saturating_add(i));
            if private.is_some_and(|(p, proto)| p != target || proto != f.protocol) {
                continue;
            }
            for a in addresses {
                let addr = match a {
                    IpAddr::V4(v4) => v4.to_string(),
                    IpAddr::V6(v6) => format!("[{v6}]"),
                };
                out.push(format!("{target}/{} -> {addr}:{public}", f.protocol));
            }
        }
    }
    out
}

/// The lines for one agent's status, or the one-line error.
pub fn port_output(
    service: &str,
    status: &Status,
    private: Option<(u16, Protocol)>,
) -> Result<Vec<String>, String> {
    // The IPv4 lease, then the IPv6 addresses when the ports are
    // forwarded over IPv6 (kernel or relay).
    let mut addresses: Vec<IpAddr> = status.lease.iter().map(|l| l.address.into()).collect();
    if status.ipv6_path != netcontainer_proto::Ipv6Path::None {
        addresses.extend(
            status
                .ipv6
                .iter()
                .filter(|a| !a.address.is_unicast_link_local())
                .map(|a| IpAddr::V6(a.address)),
        );
    }
    if addresses.is_empty() {
        return Err(format!(
            "{service} has no LAN address yet (state: {})",
            status.state
        ));
    }
    let lines = port_lines(&addresses, &status.forwards, private);
    if lines.is_empty() {
        return Err(match private {
            Some((p, proto)) => format!("no public port '{p}/{proto}' published for {service}"),
            None => format!("{service} forwards no ports"),
        });
    }
    Ok(lines)
}

pub async fn run(a: PortArgs) -> Result<(), Error> {
    ServiceName::parse(&a.container)?;
    let docker = DockerClient::connect().await?;
    let service = docker.resolve(&a.container).await?;
    let Some(router) = docker.router(&service).await? else {
        return Err(Error::Usage(format!(
            "{service} has no network container (netcontainer up {service} creates one)"
        )));
    };
    if !router.running {
        return Err(Error::Usage(format!(
            "{service}: network container {} is not running",
            router.name
        )));
    }
    let Some(status) = crate::agent_client::agent_status(&service).await else {
        return Err(Error::Usage(format!(
            "{service}: the agent of {} does not answer",
            router.name
        )));
    };
    let lines = port_output(service.as_str(), &status, a.private).map_err(Error::Usage)?;
    for l in lines {
        println!("{l}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use netcontainer_proto::{LeaseStatus, State};
    use std::net::Ipv4Addr;

    fn fwd(proto: Protocol, public: (u16, u16), target: u16) -> ForwardStatus {
        ForwardStatus {
            protocol: proto,
            public_port: public.0,
            public_port_end: public.1,
            target_address: Ipv4Addr::new(198, 51, 100, 2),
            target_port: target,
            packets: 0,
            bytes: 0,
        }
    }

    fn status(lease: bool) -> Status {
        Status {
            state: if lease {
                State::Bound
            } else {
                State::Selecting
            },
            interface: Some("lan0".into()),
            hostname: None,
            lease: lease.then(|| LeaseStatus {
                address: Ipv4Addr::new(203, 0, 113, 57),
                prefix_len: 24,
                gateway: None,
                server_id: Ipv4Addr::new(203, 0, 113, 1),
                lease_secs: Some(600),
                renew_in_secs: None,
                rebind_in_secs: None,
                expires_in_secs: None,
                dns: Vec::new(),
            }),
            forwards: vec![
                fwd(Protocol::Tcp, (80, 80), 8080),
                fwd(Protocol::Tcp, (443, 443), 443),
                fwd(Protocol::Udp, (7000, 7002), 8000),
            ],
            last_error: None,
            agent_version: String::new(),
            source: Default::default(),
            ipv6: vec![netcontainer_proto::Ipv6AddressStatus {
                address: "2001:db8:1::57".parse().unwrap(),
                prefix_len: 64,
                origin: netcontainer_proto::Ipv6Origin::Slaac,
                preferred_in_secs: None,
                valid_in_secs: None,
            }],
            ipv6_path: netcontainer_proto::Ipv6Path::None,
            mdns: None,
        }
    }

    #[test]
    fn lines_like_docker_port() {
        let lines = port_output("web1", &status(true), None).unwrap();
        assert_eq!(
            lines,
            [
                "8080/tcp -> 203.0.113.57:80",
                "443/tcp -> 203.0.113.57:443",
                "8000/udp -> 203.0.113.57:7000",
                "8001/udp -> 203.0.113.57:7001",
                "8002/udp -> 203.0.113.57:7002",
            ]
        );
        assert_eq!(
            port_output("web1", &status(true), Some((8001, Protocol::Udp))).unwrap(),
            ["8001/udp -> 203.0.113.57:7001"]
        );
        assert_eq!(
            port_output("web1", &status(true), Some(parse_private("8080").unwrap())).unwrap(),
            ["8080/tcp -> 203.0.113.57:80"]
        );
        let v6 = port_lines(
            &["2001:db8::57".parse().unwrap()],
            &status(true).forwards[..1],
            None,
        );
        assert_eq!(v6, ["8080/tcp -> [2001:db8::57]:80"]);
        // Forwarded over IPv6: its addresses too.
        let relayed = Status {
            ipv6_path: netcontainer_proto::Ipv6Path::Relay,
            ..status(true)
        };
        assert_eq!(
            port_output("web1", &relayed, Some((8080, Protocol::Tcp))).unwrap(),
            [
                "8080/tcp -> 203.0.113.57:80",
                "8080/tcp -> [2001:db8:1::57]:80"
            ]
        );
    }

    #[test]
    fn errors_are_one_line() {
        // The LAN port is not the container port.
        let e = port_output("web1", &status(true), Some((80, Protocol::Tcp))).unwrap_err();
        assert_eq!(e, "no public port '80/tcp' published for web1");
        let e = port_output("web1", &status(true), Some((8080, Protocol::Udp))).unwrap_err();
        assert!(e.contains("8080/udp"), "{e}");
        let e = port_output("web1", &status(false), None).unwrap_err();
        assert!(e.contains("no LAN address"), "{e}");
        assert!(parse_private("0/tcp").is_err());
        assert!(parse_private("80/icmp").is_err());
        assert!(parse_private("x").is_err());
    }
}
