//! The netcontainer router agent.
//!
//! - [`dhcp`]: the DHCPv4 client's sockets ([`dhcp::socket`], [`dhcp::arp`]) and the
//!   IPv6 family's (router advertisements and DHCPv6, [`dhcp::socket6`]). The
//!   lease logic they serve (state machine, codecs, ARP probe) is the sans-IO
//!   `netcontainer-lease` crate, so it is tested and fuzzed without a network.
//! - [`netconf`]: addresses and routes through netlink.
//! - [`firewall`]: what the router forwards, as a backend-neutral policy
//!   validated once, put in place by a backend chosen by name (`--firewall`;
//!   the nftables one in `firewall/nft/`: its ruleset model, builder,
//!   renderer and counters).
//! - [`control`]: the Unix control socket.
//! - [`sysctl`]: forwarding and reverse-path filtering, set at start.
//! - [`whoami`]: the "who am I?" endpoint on the Docker side.
//! - [`relay`]: IPv6 to the service's IPv4 address in user space (IPv4-only
//!   Docker networks).
//! - [`family`]: the address families' tasks (DHCPv4; router
//!   advertisements, SLAAC and DHCPv6) behind one event type.
//! - [`agent`]: the core (desired state plus one sync) and the shell that
//!   runs it.

pub mod agent;
pub mod control;
pub mod counters;
pub mod dhcp;
pub mod family;
pub mod firewall;
pub mod mdns;
pub mod netconf;
pub mod relay;
pub mod store;
pub mod store6;
pub mod supervise;
pub mod sysctl;
pub mod whoami;
