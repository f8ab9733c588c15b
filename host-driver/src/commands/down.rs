//! `netcontainer down CONTAINER`: release the lease and remove the router.

use clap::Args;

use crate::commands::LOCK_PATIENCE;
use crate::commands::{require_root, run_dir};
use crate::error::Error;
use crate::lock::ServiceLock;
use crate::router::Driver;

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
    let driver = Driver::connect().await?;
    // The service may already be gone; its router is found by name and label.
    let service = a.container.trim_start_matches('/').to_string();
    let _lock = ServiceLock::take(&service, LOCK_PATIENCE).await?;
    let Some(router) = driver.docker.router(&service).await? else {
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
    driver.down(&router, a.grace).await?;
    println!(
        "{service}: network container {} removed, lease released",
        router.name
    );
    Ok(())
}
