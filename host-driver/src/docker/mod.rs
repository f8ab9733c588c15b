//! The Docker side: the API client (`client`), bollard's types converted
//! into ours at the boundary (`convert`), the errors (`error`), how a pull
//! of the router image shows (`pull`), and the router container's spec, a
//! pure function of a typed request (`spec`).

mod client;
mod convert;
mod error;
mod pull;
mod spec;

#[cfg(test)]
pub(crate) use convert::engine_of;

pub use client::{DockerClient, Located};
pub use convert::{BridgeNet, ContainerEvent, Engine, RouterInfo, published_tcp};
pub use error::DockerError;
pub use pull::PullDisplay;
pub use spec::{HostDirs, RouterSpec, default_image};
