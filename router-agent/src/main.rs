use std::process::ExitCode;

use netcontainer_proto::contract::{AgentArgs, flag};

use tracing_subscriber::filter::LevelFilter;

const USAGE: &str = "\
netcontainer-agent: keeps a DHCP lease on the plan's interface and forwards
the service's ports from the leased address.

Usage: netcontainer-agent [--socket PATH] [--state-dir DIR] [--lease-dir DIR]
                          [--request-address ADDR] [--keep-lease] [--supervise]
                          [--arp-probe] [--firewall NAME] [--egress CIDR,...]

Sets net.ipv4.ip_forward=1 and net.ipv4.conf.{all,default}.rp_filter=2 in its
network namespace at start (a value already right may be read-only).

Options:
  --socket PATH     control socket to listen on [default: /run/netcontainer/agent.sock]
  --state-dir DIR   directory for the saved plan [default: /run/netcontainer]
  --lease-dir DIR   directory for the persisted lease [default: the state directory]
  --request-address ADDR
                    ask for this IPv4 address (DHCP option 50) when there is no
                    lease of our own to claim again
  --keep-lease      on SIGTERM/SIGINT stop without releasing the lease (the
                    next start claims it again); only a shutdown request
                    over the socket releases it
  --supervise       run the agent as a child and restart it if it dies
                    (the router image's PID 1); SIGTERM/SIGINT are passed on
  --arp-probe       before using a new lease's address, probe it with ARP
                    (RFC 5227; 2 probes 100 ms apart, 200 ms wait) and DECLINE
                    it if another host answers
  --firewall NAME   the firewall backend [default: nft] (nft only)
  --egress CIDR,... gateway mode: the service's own connections reach only
                    these IPv4 networks through the router [default: anywhere]
  -h, --help        print this help
  -V, --version     print the version

Environment: NETCONTAINER_LOG=error|warn|info|debug|trace (default info).
";

/// A few options do not need an argument parser (the agent's resident size
/// matters: one runs per service). They parse into the contract's
/// [`AgentArgs`], the type the driver writes a router's arguments from.
fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<AgentArgs>, String> {
    let mut cli = AgentArgs::default();
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            flag::SOCKET => cli.socket = value(flag::SOCKET)?.into(),
            flag::STATE_DIR => cli.state_dir = value(flag::STATE_DIR)?.into(),
            flag::LEASE_DIR => cli.lease_dir = Some(value(flag::LEASE_DIR)?.into()),
            flag::REQUEST_ADDRESS => {
                let v = value(flag::REQUEST_ADDRESS)?;
                cli.request_address = Some(v.parse().map_err(|_| {
                    format!("{} {v:?}: not an IPv4 address", flag::REQUEST_ADDRESS)
                })?);
            }
            flag::FIREWALL => {
                // Checked here: a bad name under --supervise would be
                // restarted forever.
                let v = value(flag::FIREWALL)?;
                cli.firewall = netcontainer_agent::firewall::known_backend(&v)
                    .map_err(|e| e.to_string())?
                    .to_string();
            }
            flag::EGRESS => {
                let v = value(flag::EGRESS)?;
                cli.egress = netcontainer_proto::parse_egress(&v)
                    .map_err(|e| format!("{} {e}", flag::EGRESS))?;
            }
            flag::ARP_PROBE if inline.is_none() => cli.arp_probe = true,
            flag::SUPERVISE if inline.is_none() => cli.supervise = true,
            flag::KEEP_LEASE if inline.is_none() => cli.keep_lease = true,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "-V" | "--version" => {
                println!("netcontainer-agent {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            other => return Err(format!("unexpected argument {other:?} (see --help)")),
        }
    }
    Ok(Some(cli))
}

fn main() -> ExitCode {
    let cli = match parse(std::env::args().skip(1)) {
        Ok(Some(cli)) => cli,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let level = std::env::var("NETCONTAINER_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    if cli.supervise {
        let args = std::env::args()
            .skip(1)
            .filter(|a| a != flag::SUPERVISE)
            .collect();
        return netcontainer_agent::supervise::run(args);
    }
    // One malloc arena: the runtime's blocking pool (the lease's durable
    // write) would otherwise give each of its threads an arena of its own,
    // resident pages for a few bytes of work; the agent's RSS is held to
    // dhclient's (docs/benchmarks.md).
    #[cfg(target_env = "gnu")]
    // SAFETY: called before any other thread exists; mallopt has no other
    // precondition.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    // One thread is plenty: the agent is I/O bound, and a single-threaded
    // runtime keeps every netlink and packet socket in this namespace. A
    // blocking thread that is done leaves soon, not after tokio's 10 s.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = netcontainer_agent::agent::Options {
        socket: cli.socket,
        lease_dir: cli.lease_dir.unwrap_or_else(|| cli.state_dir.clone()),
        state_dir: cli.state_dir,
        request_address: cli.request_address,
        keep_lease: cli.keep_lease,
        arp_probe: cli.arp_probe,
        firewall: cli.firewall,
        egress: cli.egress,
    };
    match rt.block_on(netcontainer_agent::agent::run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use netcontainer_proto::contract;

    use super::*;

    fn args(a: &[&str]) -> impl Iterator<Item = String> {
        a.iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn parses_options() {
        let c = parse(args(&["--socket", "/x/a.sock", "--state-dir=/y"]))
            .unwrap()
            .unwrap();
        assert_eq!(c.socket, PathBuf::from("/x/a.sock"));
        assert_eq!(c.state_dir, PathBuf::from("/y"));
        let d = parse(args(&[])).unwrap().unwrap();
        assert_eq!(d.socket, PathBuf::from(contract::SOCKET_PATH));
        assert_eq!(d.state_dir, PathBuf::from(contract::STATE_DIR));
        assert!(!d.arp_probe && !c.arp_probe);
        let p = parse(args(&["--arp-probe", "--socket", "/s"]))
            .unwrap()
            .unwrap();
        assert!(p.arp_probe);
        assert_eq!(p.socket, PathBuf::from("/s"));
        assert!(parse(args(&["--arp-probe=yes"])).is_err());
        assert!(parse(args(&["--socket"])).is_err());
        assert!(parse(args(&["--state-dir="])).is_err());
        assert!(parse(args(&["--bogus"])).is_err());
        let l = parse(args(&[
            "--lease-dir",
            contract::LEASE_DIR,
            "--request-address=203.0.113.77",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(l.lease_dir, Some(PathBuf::from(contract::LEASE_DIR)));
        assert_eq!(l.request_address, Some("203.0.113.77".parse().unwrap()));
        assert_eq!(d.lease_dir, None);
        assert!(!d.keep_lease);
        assert!(parse(args(&["--keep-lease"])).unwrap().unwrap().keep_lease);
        assert!(parse(args(&["--keep-lease=1"])).is_err());
        assert!(parse(args(&["--request-address", "203.0.113"])).is_err());
        assert!(parse(args(&["--help"])).unwrap().is_none());
        assert_eq!(d.firewall, "nft");
        assert_eq!(
            parse(args(&["--firewall=nft"])).unwrap().unwrap().firewall,
            "nft"
        );
        let e = parse(args(&["--firewall", "pf"])).err().unwrap();
        assert!(e.contains("\"pf\"") && e.contains("known: nft"), "{e}");
        assert!(parse(args(&["--firewall"])).is_err());
        // The contract's default is a backend the agent has.
        assert_eq!(
            netcontainer_agent::firewall::BACKENDS[0],
            contract::DEFAULT_FIREWALL
        );
    }

    /// What the driver writes, the agent reads back as written.
    #[test]
    fn parses_what_the_contract_writes() {
        let every = AgentArgs {
            socket: "/x/a.sock".into(),
            state_dir: "/y".into(),
            lease_dir: Some(contract::LEASE_DIR.into()),
            keep_lease: true,
            arp_probe: true,
            request_address: Some("203.0.113.77".parse().unwrap()),
            supervise: true,
            firewall: "nft".into(),
            egress: netcontainer_proto::parse_egress("192.0.2.0/24,198.51.100.7").unwrap(),
        };
        let only_router = AgentArgs {
            lease_dir: Some(contract::LEASE_DIR.into()),
            keep_lease: true,
            ..AgentArgs::default()
        };
        for a in [every, only_router, AgentArgs::default()] {
            let back = parse(a.to_args().into_iter()).unwrap().unwrap();
            assert_eq!(back, a, "{:?}", a.to_args());
        }
    }

    /// The help text spells the contract's defaults, flags and sysctls.
    #[test]
    fn usage_matches_the_contract() {
        assert!(USAGE.contains(&format!("[default: {}]", contract::SOCKET_PATH)));
        assert!(USAGE.contains(&format!("[default: {}]", contract::STATE_DIR)));
        assert!(USAGE.contains(&format!("[default: {}]", contract::DEFAULT_FIREWALL)));
        for f in [
            flag::SOCKET,
            flag::STATE_DIR,
            flag::ARP_PROBE,
            flag::SUPERVISE,
            flag::LEASE_DIR,
            flag::REQUEST_ADDRESS,
            flag::KEEP_LEASE,
            flag::FIREWALL,
        ] {
            assert!(USAGE.contains(&format!("\n  {f} ")), "{f}");
        }
        for s in contract::ROUTER_SYSCTLS {
            let short = s.name.rsplit_once('.').unwrap().1;
            assert!(
                USAGE.contains(&format!("{short}={}", s.value)),
                "{}",
                s.name
            );
        }
    }
}
