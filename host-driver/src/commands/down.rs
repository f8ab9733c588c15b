//! `netcontainer down CONTAINER`: release the lease and remove the router.

use clap::Args;

use crate::commands::LOCK_PATIENCE;
use crate::commands::require_root;
use crate::error::Error;
use crate::lock::ServiceLock;
use crate::router::Driver;
use crate::state::{self, ServiceName};

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    netcontainer down web1\n  \
    netcontainer down web1 --grace 2")]
pub struct DownArgs {
    /// The service container (name or ID) whose network container goes away;
    /// the service may already be removed.
    container: String,
    /// Seconds the agent gets to release its lease before it is killed.
    #[arg(long, default_value_t = 10)]
    grace: i32,
    #[command(flatten)]
    ddns: crate::ddns::DdnsArgs,
}

pub async fn run(a: DownArgs) -> Result<(), Error> {
    require_root()?;
    // Refused before anything is looked up or touched.
    ServiceName::parse(&a.container)?;
    let ddns = a.ddns.client()?;
    let driver = Driver::connect().await?;
    // The service may already be gone; its router is found by name and label.
    let service = driver.docker.resolve(&a.container).await?;
    let _lock = ServiceLock::take(&service, LOCK_PATIENCE).await?;
    let Some(router) = driver.router(&service).await? else {
        // A state directory left by a crash (the name is valid, so the path
        // is inside the run directory).
        state::remove_service_dir(&service)?;
        // A router removed while no one deleted its name (watch was not
        // running): the name it would have had by default goes now.
        if let Some(c) = &ddns {
            let hostname = crate::plan::hostname_for(service.as_str());
            crate::ddns::before_down(c, service.as_str(), &hostname).await;
        }
        println!("nothing to do: {service} has no network container");
        return Ok(());
    };
    // The name goes before the lease: once released, the address may be
    // given to another host while resolvers would still send clients to it.
    if let Some(c) = &ddns {
        let hostname = ddns_hostname(&service, &router).await;
        crate::ddns::before_down(c, service.as_str(), &hostname).await;
    }
    // docker stop sends SIGTERM: the agent releases its lease, removes its
    // rules and exits.
    driver.down(&router, a.grace).await?;
    println!(
        "{service}: network container {} removed, lease released",
        router.name
    );
    Ok(())
}

/// The name the router registered: its agent's (the plan's hostname), else
/// the hostname `up` recorded on the router (the agent is not answering),
/// else the default the plan would have had.
async fn ddns_hostname(service: &ServiceName, router: &crate::docker::RouterInfo) -> String {
    let ask = async {
        let mut c = crate::agent_client::AgentClient::connect(&state::socket(service))
            .await
            .ok()?;
        c.status().await.ok()?.hostname
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), ask).await {
        Ok(Some(h)) => h,
        _ => crate::labels::RouterLabels::parse(&router.labels)
            .ok()
            .and_then(|l| l.hostname)
            .unwrap_or_else(|| crate::plan::hostname_for(service.as_str())),
    }
}
