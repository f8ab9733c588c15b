//! The netcontainer router agent.
//!
//! - [`dhcp`]: the DHCPv4 client: a sans-IO state machine ([`dhcp::client`]),
//!   raw frame encoding ([`dhcp::packet`]) and the socket shell ([`dhcp::socket`]).
//! - [`netconf`]: addresses and routes through netlink.
//! - [`firewall`]: the agent's nftables table.
//! - [`control`]: the Unix control socket.
//! - [`agent`]: ties them together.

pub mod dhcp;
