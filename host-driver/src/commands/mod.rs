//! One file per subcommand.

pub mod agent;
pub mod completion;
pub mod doctor;
pub mod down;
pub mod ls;
pub mod port;
pub mod status;
pub mod up;
pub mod watch;

use crate::error::Error;

/// How long `up` and `down` wait for another command (or `watch`) working
/// on the same service.
pub const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);

pub fn require_root() -> Result<(), Error> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::NotRoot)
    }
}

/// `--dhcp-server ADDR,...` / `--deny-dhcp-server ADDR,...` (of `up`,
/// `watch` and `agent apply`) as the plan carries them; a bad list is a
/// one-line usage error naming the flag.
/// `--mdns`, `--dnssd` and `--dnssd-txt`, checked.
pub fn mdns_args(
    on: Option<bool>,
    dnssd: Option<&str>,
    txt: Option<&str>,
) -> Result<crate::labels::Mdns, Error> {
    Ok(crate::labels::Mdns {
        on,
        dnssd: dnssd
            .map(netcontainer_proto::parse_dnssd)
            .transpose()
            .map_err(|e| Error::Usage(format!("--dnssd: {e}")))?
            .unwrap_or_default(),
        txt: txt
            .map(netcontainer_proto::parse_txt)
            .transpose()
            .map_err(|e| Error::Usage(format!("--dnssd-txt: {e}")))?
            .unwrap_or_default(),
    })
}

pub fn dhcp_servers_args(
    allow: Option<&str>,
    deny: Option<&str>,
) -> Result<netcontainer_proto::DhcpServers, Error> {
    let parse = |flag: &str, v: Option<&str>| {
        v.map(netcontainer_proto::parse_dhcp_servers)
            .transpose()
            .map(Option::unwrap_or_default)
            .map_err(|e| Error::Usage(format!("{flag}: {e}")))
    };
    let s = netcontainer_proto::DhcpServers {
        allow: parse("--dhcp-server", allow)?,
        deny: parse("--deny-dhcp-server", deny)?,
    };
    s.validate().map_err(Error::Usage)?;
    Ok(s)
}
