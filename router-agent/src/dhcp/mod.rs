//! DHCPv4 client.

pub mod client;
