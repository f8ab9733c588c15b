//! IPv6 address configuration without I/O.
//!
//! - [`client`]: the DHCPv6 client state machine (RFC 8415), IA_NA and
//!   stateless (Information-request).
//! - [`wire`]: what DHCPv6 bytes mean: sanitizing and decoding server
//!   messages, building client ones.
//! - [`config`]: who the client is (DUID-LL, IAID) and how it retransmits.
//! - [`ra`]: router advertisements (RFC 4861) and SLAAC (RFC 4862): the
//!   parser, the tracker of routers and prefixes, the EUI-64 address.
//! - `testing` (feature `test-helpers`): reading client messages and
//!   building server ones, byte by byte.

pub mod client;
pub mod config;
pub mod ra;
pub mod wire;

#[cfg(any(test, feature = "test-helpers"))]
pub mod testing;

pub use client::{Client, Event, Information, Lease, LostReason, Transmit};
pub use config::Config;
