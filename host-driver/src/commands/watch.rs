//! `netcontainer watch`: its arguments. What watch does is `crate::watch`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::commands::require_root;
use crate::error::Error;
use crate::leg::Kind;
use crate::watch::{Settings, WatchConfig};

#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    /// Parent NIC for labelled services that do not name one (`netcontainer.parent`).
    #[arg(long)]
    parent: Option<String>,
    /// macvlan or ipvlan, for labelled services that do not say (`netcontainer.mode`)
    /// [default: macvlan].
    #[arg(long, value_enum)]
    mode: Option<Kind>,
    /// Router image for new routers [default: netcontainer/router:<this version>].
    #[arg(long)]
    image: Option<String>,
    /// Take a stopped service's router down (lease released) instead of only
    /// removing its forwards; it comes back when the service starts (labelled
    /// services only).
    #[arg(long)]
    release_when_stopped: bool,
    /// Do not serve the "who am I?" endpoint (docker-mirror's API, port
    /// 9001) on the Docker bridge networks' gateway addresses.
    #[arg(long)]
    no_whoami: bool,
    /// The host address the endpoint's /hostip gives containers without a
    /// network container; default: the parent's address, else that of the
    /// interface with the default route.
    #[arg(long, value_name = "ADDR")]
    host_address: Option<std::net::Ipv4Addr>,
    /// Keep no host routes to the leases (by default a macvlan shim on each
    /// parent with a /32 route per lease lets the host and its containers
    /// reach the services at their LAN addresses; see `up --no-host-route`).
    #[arg(long)]
    no_host_route: bool,
    /// Seconds a new router may take to get its lease [default: 30].
    #[arg(long)]
    timeout: Option<u64>,
    /// Seconds between resyncs: the containers listed and the services that
    /// changed looked at, every 10th time all of them (events drive
    /// everything in between) [default: 60].
    #[arg(long)]
    resync: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics and a status page at
    /// http://ADDR/ (off by default), e.g. 127.0.0.1:9311.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Run CMD (with `sh -c`) when a service's LAN address changes, with
    /// NETCONTAINER_SERVICE, NETCONTAINER_OLD_ADDRESS and
    /// NETCONTAINER_NEW_ADDRESS in its environment; killed after 30 s.
    #[arg(long, value_name = "CMD")]
    on_change: Option<String>,
    /// Configuration file with defaults for the flags above; flags win
    /// [default: $NETCONTAINER_CONFIG, else /etc/netcontainer/config.toml if present].
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Labelled services without `netcontainer.dhcp-server` listen only to
    /// these DHCP servers (their server identifiers, option 54).
    #[arg(long, value_name = "ADDR,...")]
    dhcp_server: Option<String>,
    /// Labelled services without `netcontainer.deny-dhcp-server` ignore
    /// these DHCP servers.
    #[arg(long, value_name = "ADDR,...", conflicts_with = "dhcp_server")]
    deny_dhcp_server: Option<String>,
    /// Multicast DNS for labelled services without netcontainer.mdns
    /// (on by default).
    #[arg(long, value_name = "on|off", value_parser = crate::commands::up::parse_on_off_arg)]
    mdns: Option<bool>,
    #[command(flatten)]
    ddns: crate::ddns::DdnsArgs,
    /// Seconds between polls of the routers' agents (address changes, metrics).
    #[arg(long, default_value_t = 5, hide = true)]
    poll: u64,
}

impl WatchArgs {
    /// The flags as a layer over the configuration file (whose keys are the
    /// flags without the dashes): a switch not given says nothing.
    fn layer(&self) -> WatchConfig {
        WatchConfig {
            parent: self.parent.clone(),
            mode: self.mode,
            image: self.image.clone(),
            timeout: self.timeout,
            resync: self.resync,
            release_when_stopped: self.release_when_stopped.then_some(true),
            metrics: self.metrics,
            on_change: self.on_change.clone(),
            no_whoami: self.no_whoami.then_some(true),
            host_address: self.host_address,
            no_host_route: self.no_host_route.then_some(true),
            dhcp_server: self.dhcp_server.clone(),
            deny_dhcp_server: self.deny_dhcp_server.clone(),
            mdns: self.mdns,
            ddns_server: self.ddns.ddns_server.clone(),
            ddns_zone: self.ddns.ddns_zone.clone(),
            ddns_key: self.ddns.ddns_key.clone(),
        }
    }
}

pub async fn run(a: WatchArgs) -> Result<(), Error> {
    // A bad file stops watch before anything is touched.
    let file = match crate::watch::load(a.config.as_deref())? {
        Some((path, c)) => {
            tracing::info!(path = %path.display(), "configuration file read");
            c
        }
        None => WatchConfig::default(),
    };
    let settings = Settings::resolve(a.layer(), file, a.poll)?;
    // A bad key file stops watch before anything is touched (it is read
    // again when the updates start).
    if let Some(t) = &settings.ddns {
        t.client()?;
    }
    require_root()?;
    crate::watch::run(settings).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> WatchArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: WatchArgs,
        }
        let mut v = vec!["watch"];
        v.extend_from_slice(a);
        <Cli as clap::Parser>::parse_from(v).a
    }

    #[test]
    fn every_flag_is_a_layer_over_the_file() {
        let a = args(&[
            "--parent",
            "eth0",
            "--mode",
            "ipvlan",
            "--image",
            "r:1",
            "--release-when-stopped",
            "--no-whoami",
            "--host-address",
            "192.0.2.10",
            "--no-host-route",
            "--timeout",
            "5",
            "--resync",
            "7",
            "--metrics",
            "127.0.0.1:9400",
            "--on-change",
            "true",
            "--poll",
            "2",
        ]);
        assert_eq!(
            a.layer(),
            WatchConfig {
                parent: Some("eth0".into()),
                mode: Some(crate::leg::IPVLAN),
                image: Some("r:1".into()),
                timeout: Some(5),
                resync: Some(7),
                release_when_stopped: Some(true),
                metrics: Some("127.0.0.1:9400".parse().unwrap()),
                on_change: Some("true".into()),
                no_whoami: Some(true),
                host_address: Some("192.0.2.10".parse().unwrap()),
                no_host_route: Some(true),
                dhcp_server: None,
                deny_dhcp_server: None,
                mdns: None,
                ddns_server: None,
                ddns_zone: None,
                ddns_key: None,
            }
        );
        assert_eq!(a.poll, 2);
        // No flags: nothing said, the file decides; the poll's default.
        let none = args(&[]);
        assert_eq!(none.layer(), WatchConfig::default());
        assert_eq!(none.poll, 5);
        // The file's switches stay on when their flag is not given.
        let file = WatchConfig {
            release_when_stopped: Some(true),
            ..WatchConfig::default()
        };
        assert!(
            Settings::resolve(none.layer(), file, none.poll)
                .unwrap()
                .release_when_stopped
        );
    }
}
