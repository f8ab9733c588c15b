//! DHCPv4 client.

pub mod arp;
pub mod client;
pub mod packet;
pub mod socket;
