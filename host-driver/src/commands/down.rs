//! `netcontainer down CONTAINER`: release the lease and remove the router.

use clap::Args;

use crate::commands::{require_root, run_dir};
use crate::docker::DockerClient;
use crate::error::Error;
use crate::plan::labels;

#[derive(Args, Debug)]
pub struct DownArgs {
    /// The service container whose network container goes away.
    container: String,
    /// Seconds the agent gets to release its lease before it is killed.
    #[arg(long, default_value_t = 10)]
    grace: i32,
}

pub async fn run(a: DownArgs) -> Result<(), Error> {
    require_root()?;
    let docker = DockerClient::connect().await?;
    // The service may already be gone; its router is found by name and label.
    let service = a.container.trim_start_matches('/').to_string();
    let Some(router) = docker.router(&service).await? else {
        let stale = run_dir().join(&service);
        if stale.exists() {
            std::fs::remove_dir_all(&stale).map_err(|source| Error::File {
                what: "cannot remove",
                path: stale.clone(),
                source,
            })?;
        }
        println!("nothing to do: {service} has no network container");
        return Ok(());
    };
    // docker stop sends SIGTERM: the agent releases its lease, removes its
    // rules and exits.
    docker.remove(&router.id, a.grace).await?;
    if let Some(dir) = router.labels.get(labels::STATE_DIR) {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::File {
                    what: "cannot remove",
                    path: dir.into(),
                    source,
                });
            }
        }
    }
    println!(
        "{service}: network container {} removed, lease released",
        router.name
    );
    Ok(())
}
