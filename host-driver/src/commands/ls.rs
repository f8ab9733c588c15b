//! `netcontainer ls [--json]`: every network container on this host.

use clap::Args;
use netcontainer_proto::Status;
use serde::Serialize;

use crate::docker::{DockerClient, RouterInfo};
use crate::error::Error;
use crate::output;
use crate::plan::labels;
use crate::router::agent_status;
use crate::state::ServiceName;

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
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
    /// The agent's status; null when it does not answer.
    pub agent: Option<Status>,
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
        out.push(Entry {
            service: r.service.to_string(),
            router: r.name.clone(),
            router_running: r.running,
            parent: label(labels::PARENT),
            mode: label(labels::MODE),
            mac: label(labels::MAC),
            identity: crate::router::router_identity(&r),
            agent,
        });
    }
    Ok(out)
}

pub fn table(entries: &[Entry]) -> String {
    let mut rows = vec![[
        "SERVICE".to_string(),
        "ADDRESS".into(),
        "STATE".into(),
        "EXPIRES".into(),
        "PORTS".into(),
        "IDENTITY".into(),
    ]];
    for e in entries {
        let (addr, state, expires, ports) = match &e.agent {
            Some(s) => (
                s.lease
                    .as_ref()
                    .map(|l| l.address.to_string())
                    .unwrap_or_else(|| "-".into()),
                s.state.to_string(),
                s.lease
                    .as_ref()
                    .map(|l| {
                        l.expires_in_secs
                            .map(|x| format!("{x}s"))
                            .unwrap_or_else(|| "never".into())
                    })
                    .unwrap_or_else(|| "-".into()),
                s.forwards
                    .iter()
                    .map(|f| {
                        if f.public_port_end != f.public_port {
                            format!("{}-{}/{}", f.public_port, f.public_port_end, f.protocol)
                        } else {
                            format!("{}/{}", f.public_port, f.protocol)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            None => (
                "-".into(),
                if e.router_running {
                    "no-answer"
                } else {
                    "router-stopped"
                }
                .into(),
                "-".into(),
                "-".into(),
            ),
        };
        rows.push([
            e.service.clone(),
            addr,
            state,
            expires,
            ports,
            output::safe(&e.identity).into_owned(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub async fn run(a: LsArgs) -> Result<(), Error> {
    let docker = DockerClient::connect().await?;
    let list = entries(&docker, None).await?;
    if a.json {
        println!("{}", output::to_json(&list));
    } else {
        print!("{}", table(&list));
    }
    Ok(())
}
