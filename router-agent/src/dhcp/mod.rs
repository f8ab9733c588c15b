//! The I/O half of the DHCPv4 client and of the IPv6 family: sockets. The lease logic they carry
//! packets for (the state machine, message and frame codecs, the ARP probe)
//! is the sans-IO `netcontainer-lease` crate.

pub mod arp;
pub mod filter;
pub mod socket;
pub mod socket6;
