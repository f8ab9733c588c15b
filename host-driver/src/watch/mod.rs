//! `netcontainer watch`: keep every network container true to its service.
//!
//! - `session`: the outer loop, one session per connection to Docker, and
//!   what lives as long as one;
//! - `supervisor`: Docker's events and the resync, routed to the services'
//!   tasks;
//! - `task`: one service's task, its inbox and its backoff;
//! - `decide`: what to do about a service, a pure function;
//! - `act`: the look at one service and the action taken;
//! - `sweep`: host directories no router claims;
//! - `settings`: the flags over the configuration file over the defaults;
//! - `monitor`: the poll of the agents (address changes, `--on-change`);
//! - `metrics`: the Prometheus rendering and its server;
//! - `page`: the status page that server shows at `/`;
//! - `whoami`: the "who am I?" endpoint on the Docker bridges;
//! - `notify`: systemd's readiness and status.
//!
//! Only containers labelled `netcontainer.role=router` are ever touched as
//! routers, so watch never removes what it did not create.

mod act;
mod decide;
mod metrics;
mod monitor;
mod notify;
mod page;
mod session;
mod settings;
mod supervisor;
mod sweep;
mod task;
mod whoami;

pub use session::run;
pub use settings::{Settings, WatchConfig, load};
