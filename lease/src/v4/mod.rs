//! The DHCPv4 client (RFC 2131).
//!
//! - [`client`]: the state machine: which message to send when, what a reply
//!   does to the lease.
//! - [`wire`]: what the bytes mean: checking and decoding replies, the option
//!   walk, reading a lease out of an ACK.
//! - [`config`]: who the client is and how it retries.
//! - [`lease`]: what a server granted.

pub mod client;
pub mod config;
pub mod lease;
pub mod wire;

pub use client::{Client, Destination, Event, Lease, LostReason, Transmit};
pub use config::{Config, Retry, ServerFilter};
