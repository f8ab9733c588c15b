//! `netcontainer status [CONTAINER] [-q] [--json] [--format T]`.

use clap::Args;

use crate::agent_client::agent_problems;
use crate::commands::ls::{OutputArgs, entries};
use crate::docker::DockerClient;
use crate::error::Error;
use crate::output;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    netcontainer status web1\n  \
    netcontainer status web1 --json\n  \
    netcontainer status web1 --format '{{.State}} {{.Lease}}'\n  \
    netcontainer status            (every service, as netcontainer ls)")]
pub struct StatusArgs {
    /// One service; default: all.
    container: Option<String>,
    #[command(flatten)]
    out: OutputArgs,
}

pub async fn run(a: StatusArgs) -> Result<(), Error> {
    let docker = DockerClient::connect().await?;
    let Some(name) = a.container else {
        let list = entries(&docker, None).await?;
        print!("{}", a.out.render(&list)?);
        return Ok(());
    };
    crate::state::ServiceName::parse(&name)?;
    let name = docker.resolve(&name).await?;
    let Some(mut entry) = entries(&docker, Some(&name)).await?.into_iter().next() else {
        return Err(Error::Usage(format!(
            "{name} has no network container (netcontainer up {name} creates one)"
        )));
    };
    if entry.agent.is_some() {
        entry.problems = agent_problems(&name).await;
    }
    if a.out.json {
        println!("{}", output::to_json(&entry));
        return Ok(());
    }
    if a.out.quiet || a.out.format.is_some() {
        print!("{}", a.out.render(std::slice::from_ref(&entry))?);
        return Ok(());
    }
    println!("service:    {}", entry.service);
    println!(
        "router:     {} ({})",
        output::safe(&entry.router),
        if entry.router_running {
            "running"
        } else {
            "stopped"
        }
    );
    println!("identity:   {}", output::safe(&entry.identity));
    if let Some(p) = &entry.parent {
        println!(
            "parent:     {} ({})",
            output::safe(p),
            output::safe(entry.mode.as_deref().unwrap_or("macvlan"))
        );
    }
    if let Some(src) = &entry.source {
        println!(
            "source:     {} ({})",
            output::safe(src),
            if src == "gateway" {
                "the service sees its clients' addresses and leaves from its LAN address"
            } else {
                "clients appear as the router; the service leaves through Docker"
            }
        );
    }
    match &entry.agent {
        Some(s) => print!("{}", output::status_text(s)),
        None => println!("agent:      not answering"),
    }
    if let Some(p) = &entry.problems {
        print!("{}", output::problems_text(p));
    }
    if let Some(why) = &entry.host_route_refused {
        println!("problem:    host-route: {why}");
    }
    Ok(())
}
