//! The netcontainer router agent.
//!
//! - [`dhcp`]: the DHCPv4 client: a sans-IO state machine ([`dhcp::client`]),
//!   raw frame encoding ([`dhcp::packet`]) and the socket shell ([`dhcp::socket`]).
//! - [`netconf`]: addresses and routes through netlink.
//! - [`firewall`]: the agent's nftables table.
//! - [`control`]: the Unix control socket.
//! - [`sysctl`]: forwarding and reverse-path filtering, set at start.
//! - [`agent`]: ties them together.

pub mod agent;
pub mod control;
pub mod dhcp;
pub mod firewall;
pub mod netconf;
pub mod store;
pub mod supervise;
pub mod sysctl;
