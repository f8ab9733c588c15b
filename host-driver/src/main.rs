//! `netcontainer`: gives an unmodified Docker container its own address on
//! the LAN from the LAN's DHCP server.

mod agent_client;
mod commands;
mod ddns;
mod docker;
mod error;
mod interrupt;
mod labels;
mod leg;
mod lock;
mod mac;
mod output;
mod plan;
mod platform;
mod plumb;
mod ports;
mod progress;
mod registry;
mod router;
mod service_route;
mod shim;
mod state;
mod template;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "netcontainer",
    version,
    about,
    after_help = "Examples:\n  \
        netcontainer up web1 --parent eth0 --publish 80:8080/tcp\n  \
        netcontainer ls\n  \
        netcontainer port web1\n  \
        netcontainer down web1"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Give a running container its own address on the LAN.
    Up(commands::up::UpArgs),
    /// Release the lease and remove a container's network container.
    Down(commands::down::DownArgs),
    /// Status of one or all network containers.
    Status(commands::status::StatusArgs),
    /// List the network containers on this host.
    Ls(commands::ls::LsArgs),
    /// The LAN address and port of each of a service's ports (like `docker port`).
    Port(commands::port::PortArgs),
    /// Keep every network container true to its service (Docker events).
    #[command(after_help = "Examples:\n  \
        netcontainer watch --parent eth0   (as netcontainer-watch.service runs it)\n  \
        netcontainer watch --config /etc/netcontainer/config.toml --metrics 127.0.0.1:9311\n  \
        netcontainer watch --parent eth0 --on-change 'logger \"$NETCONTAINER_SERVICE: $NETCONTAINER_OLD_ADDRESS -> $NETCONTAINER_NEW_ADDRESS\"'\n  \
        docker run -d --label netcontainer.enable=true --label netcontainer.parent=eth0 nginx")]
    Watch(commands::watch::WatchArgs),
    /// Check this host and the LAN: kernel, Docker, the parent NIC, and one
    /// DHCP DISCOVER (run this first when a service gets no lease).
    #[command(after_help = "Examples:\n  \
        netcontainer doctor --parent eth0   (exit 1 when a line says FAIL)\n  \
        netcontainer doctor --parent wlan0 --mode ipvlan --timeout 10")]
    Doctor(commands::doctor::DoctorArgs),
    /// Talk to one agent directly, without Docker (debugging, tests).
    #[command(
        subcommand,
        after_help = "Examples:\n  \
            netcontainer agent status --socket /run/netcontainer/web1/agent.sock\n  \
            netcontainer agent apply --socket S --interface lan0 --forward tcp:80=198.51.100.2:8080 --wait 10"
    )]
    Agent(commands::agent::AgentCommand),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completion(commands::completion::CompletionArgs),
    /// Write the man pages into a directory (scripts/build-man).
    #[command(hide = true)]
    Man(commands::completion::ManArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The supervisor logs what it does; one-shot commands only warnings.
    let default_level = if matches!(cli.command, Command::Watch(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NETCONTAINER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    // Under systemd, journald stamps every line itself.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        fmt.without_time().init();
    } else {
        fmt.init();
    }
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
    let result = rt.block_on(async {
        match cli.command {
            Command::Up(a) => commands::up::run(a).await,
            Command::Down(a) => commands::down::run(a).await,
            Command::Status(a) => commands::status::run(a).await,
            Command::Ls(a) => commands::ls::run(a).await,
            Command::Port(a) => commands::port::run(a).await,
            Command::Watch(a) => commands::watch::run(a).await,
            Command::Doctor(a) => commands::doctor::run(a).await,
            Command::Agent(c) => commands::agent::run(c).await,
            Command::Completion(a) => commands::completion::run_completion(a),
            Command::Man(a) => commands::completion::run_man(a),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors carry text from Docker, the agent and the LAN: escaped,
            // so none can move the cursor or forge a line.
            eprintln!("error: {}", output::safe(&e.to_string()));
            if let Some(h) = e.hint() {
                eprintln!("hint: {}", output::safe(&h));
            }
            match e {
                // The units do not restart on it (RestartPreventExitStatus=):
                // no retry makes this host one netcontainer works on.
                error::Error::Unsupported(_) => ExitCode::from(platform::EXIT_UNSUPPORTED),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
