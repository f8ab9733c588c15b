//! Dynamic DNS: the driver (never the router: the TSIG key stays on the
//! host) keeps `<hostname>.<zone>` pointing at each service's addresses on
//! an authoritative server, by RFC 2136 UPDATEs signed with TSIG (RFC 8945):
//!
//! - `up`: once the lease is bound, the A (the lease) and AAAA (the
//!   router's IPv6 addresses) records are set;
//! - `watch`: the same for every router it polls, again whenever an
//!   address changes, and a deletion when a router goes ([`Publisher`]);
//! - `down`: the A and AAAA records are deleted before the lease is
//!   released.
//!
//! A failed update is a one-line warning, never a failure of the service:
//! its address works without a name, and a DNS server that is down must
//! not take the services down with it (watch retries; `up` says how to).
//!
//! - `key`: the TSIG key file (BIND's format);
//! - `message`: the UPDATE messages and the check of their answers (no I/O);
//! - `client`: sending them (TCP, bounded);
//! - `publish`: what watch has published and what it must change.

mod client;
mod key;
mod message;
mod publish;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use hickory_proto::rr::{Name, TSigner};

pub use client::Client;
pub use key::KeyFileError;
pub use message::Records;
pub use publish::Publisher;

use crate::error::Error;

/// The port of `--ddns-server` when it names none.
pub const DNS_PORT: u16 = 53;

/// `--ddns-server`, `--ddns-zone` and `--ddns-key`, for `up`, `down` and
/// `watch` (whose configuration file has the same keys).
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct DdnsArgs {
    /// Dynamic DNS: the authoritative server that takes the UPDATEs
    /// (RFC 2136, over TCP), e.g. 192.0.2.53 or [2001:db8::53]:5353; with
    /// --ddns-zone and --ddns-key.
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub ddns_server: Option<String>,
    /// Dynamic DNS: the zone the services' names go in (<hostname>.<zone>).
    #[arg(long, value_name = "ZONE")]
    pub ddns_zone: Option<String>,
    /// Dynamic DNS: the TSIG key file, as `tsig-keygen NAME` prints it;
    /// refused if others can read it.
    #[arg(long, value_name = "FILE")]
    pub ddns_key: Option<PathBuf>,
}

/// Where the updates go: the three settings, checked, key not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub server: SocketAddr,
    pub zone: Name,
    pub key: PathBuf,
}

impl DdnsArgs {
    /// All three given: the target; none: `None`; some: a usage error.
    pub fn target(&self) -> Result<Option<Target>, Error> {
        match (&self.ddns_server, &self.ddns_zone, &self.ddns_key) {
            (None, None, None) => Ok(None),
            (Some(s), Some(z), Some(k)) => Ok(Some(Target {
                server: parse_server(s).map_err(Error::Usage)?,
                zone: parse_zone(z).map_err(Error::Usage)?,
                key: k.clone(),
            })),
            _ => Err(Error::Usage(
                "--ddns-server, --ddns-zone and --ddns-key go together: give all three or none"
                    .into(),
            )),
        }
    }

    /// The client, its key read: `None` without the flags. Done before
    /// anything is touched, so a bad key file stops the command at once.
    pub fn client(&self) -> Result<Option<Client>, Error> {
        self.target()?.map(|t| t.client()).transpose()
    }
}

impl Target {
    /// Reads the key file and makes the client.
    pub fn client(&self) -> Result<Client, Error> {
        let k = key::load(&self.key)?;
        let name = Name::from_ascii(format!("{}.", k.name.trim_end_matches('.'))).map_err(|e| {
            KeyFileError {
                path: self.key.clone(),
                what: format!("the key's name {:?} is not a DNS name: {e}", k.name),
            }
        })?;
        let signer =
            TSigner::new(k.secret, k.algorithm, name, client::FUDGE).map_err(|e| KeyFileError {
                path: self.key.clone(),
                what: e.to_string(),
            })?;
        Ok(Client::new(self.server, self.zone.clone(), signer))
    }
}

/// `ADDR` or `ADDR:PORT` (`[V6]:PORT`): an address, not a name, so that
/// no resolver (perhaps the very server being updated) stands in between.
pub fn parse_server(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| s.parse::<IpAddr>().map(|a| SocketAddr::new(a, DNS_PORT)))
        .map_err(|_| {
            format!(
                "--ddns-server {s:?}: expected an address, e.g. 192.0.2.53, 192.0.2.53:5353 \
                 or [2001:db8::53]:53"
            )
        })
}

/// A zone name, made absolute; not the root.
pub fn parse_zone(s: &str) -> Result<Name, String> {
    let bare = s.trim_end_matches('.');
    if bare.is_empty() {
        return Err(format!("--ddns-zone {s:?}: the zone cannot be the root"));
    }
    Name::from_ascii(format!("{bare}."))
        .map_err(|e| format!("--ddns-zone {s:?}: not a DNS name: {e}"))
}

/// `up`'s update: the records of a freshly bound router. A failure is one
/// warning line on stderr; the service stays up.
pub async fn after_up(client: &Client, service: &str, status: &netcontainer_proto::Status) {
    let Some(hostname) = status.hostname.as_deref() else {
        return;
    };
    let records = Records::of(status);
    match client.replace(hostname, &records).await {
        Ok(()) => tracing::info!(%service, %hostname, ?records, "dynamic DNS updated"),
        Err(e) => eprintln!(
            "warning: {}: {} (the service is up, without its name: `watch` with the same --ddns flags publishes it, or `down`, then `up` again)",
            crate::output::safe(service),
            crate::output::safe(&e.to_string())
        ),
    }
}

/// `down`'s deletion of `hostname`'s records; a failure is one warning line.
pub async fn before_down(client: &Client, service: &str, hostname: &str) {
    match client.delete(hostname).await {
        Ok(()) => tracing::info!(%service, %hostname, "dynamic DNS records deleted"),
        Err(e) => eprintln!(
            "warning: {}: {} (the records stay until deleted by hand)",
            crate::output::safe(service),
            crate::output::safe(&e.to_string())
        ),
    }
}

/// What the module's tests share.
#[cfg(test)]
pub(crate) mod testkit {
    use netcontainer_proto::{LeaseStatus, State, Status};
    use std::net::Ipv4Addr;

    /// A bound router's status: `hostname`, lease 203.0.113.`last`/24 for 600 s.
    pub fn bound(hostname: &str, last: u8) -> Status {
        Status {
            state: State::Bound,
            interface: Some("lan0".into()),
            hostname: Some(hostname.into()),
            lease: Some(LeaseStatus {
                address: Ipv4Addr::new(203, 0, 113, last),
                prefix_len: 24,
                gateway: None,
                server_id: Ipv4Addr::new(203, 0, 113, 1),
                lease_secs: Some(600),
                renew_in_secs: None,
                rebind_in_secs: None,
                expires_in_secs: None,
                dns: vec![],
            }),
            forwards: vec![],
            last_error: None,
            agent_version: "0".into(),
            source: Default::default(),
            ipv6: vec![],
            ipv6_path: Default::default(),
            mdns: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_three_or_none() {
        assert_eq!(DdnsArgs::default().target().unwrap(), None);
        let all = DdnsArgs {
            ddns_server: Some("203.0.113.53".into()),
            ddns_zone: Some("lan.example".into()),
            ddns_key: Some("/etc/netcontainer/ddns.key".into()),
        };
        let t = all.target().unwrap().unwrap();
        assert_eq!(t.server, "203.0.113.53:53".parse().unwrap());
        assert_eq!(t.zone.to_string(), "lan.example.");
        for partial in [
            DdnsArgs {
                ddns_key: None,
                ..all.clone()
            },
            DdnsArgs {
                ddns_server: None,
                ddns_zone: None,
                ..all.clone()
            },
        ] {
            let e = partial.target().unwrap_err().to_string();
            assert!(e.contains("give all three or none"), "{e}");
        }
    }

    #[test]
    fn servers_and_zones() {
        assert_eq!(
            parse_server("[2001:db8::53]:5353").unwrap(),
            "[2001:db8::53]:5353".parse().unwrap()
        );
        assert_eq!(
            parse_server("2001:db8::53").unwrap(),
            "[2001:db8::53]:53".parse().unwrap()
        );
        assert_eq!(
            parse_server("192.0.2.53:5300").unwrap().port(),
            5300,
            "a port"
        );
        assert!(
            parse_server("ns1.example")
                .unwrap_err()
                .contains("an address")
        );
        assert_eq!(
            parse_zone("lan.example.").unwrap().to_string(),
            "lan.example."
        );
        assert!(parse_zone(".").is_err());
        assert!(parse_zone("bad..zone").is_err());
    }
}
