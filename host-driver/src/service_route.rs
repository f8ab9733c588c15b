//! Gateway mode's one change inside the service: its default route points
//! at its router's Docker-side address instead of Docker's gateway. The
//! image is untouched; the route lives in the container's network namespace
//! and goes with it (a restarted service gets a fresh namespace, which
//! `heal` points again).
//!
//! The namespace is entered by a short-lived thread of its own (`setns` is
//! per thread), which opens a netlink socket there and runs the change on a
//! small runtime of its own; the caller's threads never change namespace.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;

use futures::TryStreamExt;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("cannot enter the service's network namespace: {0}")]
    Setns(#[source] nix::Error),
    #[error("cannot open a netlink socket in the service's namespace: {0}")]
    Connection(#[source] std::io::Error),
    #[error("{what} in the service's namespace: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("the service's namespace thread failed: {0}")]
    Thread(String),
}

/// Runs `f` with a netlink handle inside the namespace `ns`.
async fn in_netns<T, F, Fut>(ns: File, f: F) -> Result<T, RouteError>
where
    T: Send + 'static,
    F: FnOnce(rtnetlink::Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, RouteError>>,
{
    let job = move || -> Result<T, RouteError> {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(RouteError::Setns)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RouteError::Thread(e.to_string()))?;
        rt.block_on(async move {
            let (conn, handle, _) = rtnetlink::new_connection().map_err(RouteError::Connection)?;
            let task = tokio::spawn(conn);
            let r = f(handle).await;
            task.abort();
            r
        })
    };
    // A thread of its own, not the blocking pool: it ends in another
    // namespace and must not be reused.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("nc-svc-netns".into())
        .spawn(move || {
            let _ = tx.send(job());
        })
        .map_err(|e| RouteError::Thread(e.to_string()))?;
    rx.await
        .map_err(|_| RouteError::Thread("it ended without an answer".into()))?
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> RouteError {
    let what = what.into();
    move |source| RouteError::Netlink { what, source }
}

async fn current_default(handle: &rtnetlink::Handle) -> Result<Option<Ipv4Addr>, RouteError> {
    let filter = RouteMessageBuilder::<Ipv4Addr>::new().build();
    let routes: Vec<_> = handle
        .route()
        .get(filter)
        .execute()
        .try_collect()
        .await
        .map_err(nl("listing routes"))?;
    Ok(routes
        .iter()
        .filter(|r| r.header.destination_prefix_length == 0 && r.header.table == 254)
        .find_map(|r| {
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(g)) => Some(*g),
                _ => None,
            })
        }))
}

/// The service's default gateway (`None`: no default route).
pub async fn default_gateway(ns: File) -> Result<Option<Ipv4Addr>, RouteError> {
    in_netns(ns, |h| async move { current_default(&h).await }).await
}

/// Points the default route at `via`. Returns the gateway it replaced
/// (`None`: it already pointed there, nothing changed).
pub async fn point_default(ns: File, via: Ipv4Addr) -> Result<Option<Ipv4Addr>, RouteError> {
    in_netns(ns, move |h| async move {
        let before = current_default(&h).await?;
        if before == Some(via) {
            return Ok(None);
        }
        let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(via).build();
        h.route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(nl(format!("pointing the default route at {via}")))?;
        Ok(Some(before.unwrap_or(Ipv4Addr::UNSPECIFIED)))
    })
    .await
}

/// Points the default route back at Docker's gateway `docker_gw`, unless it
/// already does. Returns whether it changed anything.
pub async fn restore_default(ns: File, docker_gw: Ipv4Addr) -> Result<bool, RouteError> {
    Ok(point_default(ns, docker_gw).await?.is_some())
}
