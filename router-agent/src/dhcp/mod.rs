//! DHCPv4 client.

pub mod client;
pub mod packet;
pub mod socket;
