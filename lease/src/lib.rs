//! The lease logic of netcontainer's router agent, without I/O: no sockets,
//! no clock, no async runtime. The agent's shell owns those and feeds this
//! crate bytes and "the deadline passed"; this crate answers with bytes to
//! send, lease events and the next deadline (the split quinn makes between
//! quinn-proto and quinn). Everything here therefore runs, and is tested and
//! fuzzed, on a virtual clock without a network.
//!
//! - [`v4`]: the DHCPv4 client: state machine ([`v4::client`]), wire format
//!   ([`v4::wire`]), settings ([`v4::config`]).
//! - [`arp`]: RFC 5227 address conflict probe (state machine and ARP codec).
//! - [`packet`]: IPv4/UDP framing for a raw DHCP socket.
//! - `testing` (feature `test-helpers`): reply builders and option readers
//!   shared by this crate's tests, the agent's, the integration tests and the
//!   fuzzers.
//!
//! - [`v6`]: the DHCPv6 client (RFC 8415) with the same sans-IO shape
//!   (`handle_packet`, `handle_timeout`, `poll_transmit`, `poll_event`,
//!   `poll_timeout`), and router advertisements and SLAAC ([`v6::ra`]).
//!   [`packet`] and [`arp`] are IPv4 only.

pub mod arp;
pub mod packet;
pub mod v4;
pub mod v6;

#[cfg(any(test, feature = "test-helpers"))]
pub mod testing;
