//! Which DHCP servers a router listens to (`--dhcp-server ADDR,...`,
//! `--deny-dhcp-server ADDR,...` and the labels `netcontainer.dhcp-server`,
//! `netcontainer.deny-dhcp-server`): one parser for the flags and the labels,
//! and the value the plan carries to the agent.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Longest list accepted.
pub const MAX_DHCP_SERVERS: usize = 64;

/// The servers whose OFFERs, ACKs and NAKs the agent's DHCP client hears.
/// Both lists empty (the default): every server. At most one list is set
/// ([`DhcpServers::validate`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DhcpServers {
    /// Only these servers (`--dhcp-server`).
    pub allow: Vec<Ipv4Addr>,
    /// Every server but these (`--deny-dhcp-server`).
    pub deny: Vec<Ipv4Addr>,
}

impl DhcpServers {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    pub fn validate(&self) -> Result<(), String> {
        if !self.allow.is_empty() && !self.deny.is_empty() {
            return Err(
                "a DHCP server allow-list and deny-list exclude each other: give one".into(),
            );
        }
        for a in self.allow.iter().chain(&self.deny) {
            check_server(*a)?;
        }
        if self.allow.len().max(self.deny.len()) > MAX_DHCP_SERVERS {
            return Err(format!("at most {MAX_DHCP_SERVERS} DHCP servers in a list"));
        }
        Ok(())
    }
}

fn check_server(a: Ipv4Addr) -> Result<(), String> {
    if a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback() {
        return Err(format!("{a} cannot be a DHCP server's address"));
    }
    Ok(())
}

/// Parses `ADDR,ADDR,...`: at least one unicast IPv4 address, at most
/// [`MAX_DHCP_SERVERS`], sorted and without repeats. Anything else (a name,
/// a CIDR, an empty entry) is an error naming it.
pub fn parse_dhcp_servers(s: &str) -> Result<Vec<Ipv4Addr>, String> {
    let mut list = Vec::new();
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!("{s:?}: an empty address in the list"));
        }
        let a: Ipv4Addr = part
            .parse()
            .map_err(|_| format!("{part:?} is not an IPv4 address"))?;
        check_server(a)?;
        list.push(a);
    }
    list.sort();
    list.dedup();
    if list.len() > MAX_DHCP_SERVERS {
        return Err(format!(
            "{} addresses, at most {MAX_DHCP_SERVERS}",
            list.len()
        ));
    }
    Ok(list)
}

/// The list as [`parse_dhcp_servers`] reads it back.
pub fn dhcp_servers_text(list: &[Ipv4Addr]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_round_trip_and_refuse_nonsense() {
        let l = parse_dhcp_servers(" 192.0.2.9, 192.0.2.1,192.0.2.9").unwrap();
        assert_eq!(dhcp_servers_text(&l), "192.0.2.1,192.0.2.9");
        assert_eq!(parse_dhcp_servers(&dhcp_servers_text(&l)).unwrap(), l);
        for bad in [
            "",
            " ",
            "192.0.2.1,",
            "192.0.2.1,,192.0.2.2",
            "192.0.2.0/24",
            "dhcp.example",
            "192.0.2.1:67",
            "2001:db8::1",
            "0.0.0.0",
            "255.255.255.255",
            "127.0.0.1",
            "224.0.0.1",
        ] {
            let e = parse_dhcp_servers(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
        let many: Vec<String> = (1..=65).map(|i| format!("192.0.2.{i}")).collect();
        assert!(parse_dhcp_servers(&many.join(",")).is_err());
    }

    #[test]
    fn allow_and_deny_exclude_each_other() {
        let a = Ipv4Addr::new(192, 0, 2, 1);
        assert!(DhcpServers::default().validate().is_ok());
        let both = DhcpServers {
            allow: vec![a],
            deny: vec![a],
        };
        assert!(both.validate().is_err());
        let bad = DhcpServers {
            allow: vec![Ipv4Addr::UNSPECIFIED],
            deny: vec![],
        };
        assert!(bad.validate().is_err());
    }
}
