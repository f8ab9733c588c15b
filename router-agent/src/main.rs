use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The netcontainer router agent: keeps a DHCP lease on the plan's interface
/// and forwards the service's ports from the leased address.
#[derive(Parser, Debug)]
#[command(name = "netcontainer-agent", version)]
struct Cli {
    /// Control socket to listen on.
    #[arg(long, default_value = "/run/netcontainer/agent.sock")]
    socket: PathBuf,
    /// Directory for the persisted lease.
    #[arg(long, default_value = "/run/netcontainer")]
    state_dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NETCONTAINER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    // One thread is plenty: the agent is I/O bound, and a single-threaded
    // runtime keeps every netlink and packet socket in this namespace.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
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
        state_dir: cli.state_dir,
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
