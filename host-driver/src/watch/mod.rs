//! `netcontainer watch`.

pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod settings;
pub mod supervisor;
pub mod whoami;
