//! Wire types and framing shared by `netcontainer` (host driver) and
//! `netcontainer-agent` (router agent).
//!
//! A frame is a `u32` big-endian length prefix followed by that many payload
//! bytes. The payload starts with the protocol version as a `u16` big-endian,
//! followed by a bincode 2 (serde) encoding of the message. The version comes
//! first so that a peer speaking another version gets a clear error instead of
//! a confusing decode failure.
//!
//! [`contract`] holds the rest of what both sides must agree on: paths, ids,
//! the agent's flags and the sysctls a router needs.

pub mod contract;
mod egress;
mod frame;
#[cfg(feature = "lease")]
mod lease_state;
mod mdns;
mod servers;
mod types;

pub use egress::{Ipv4Net, MAX_EGRESS, egress_text, parse_egress};
pub use frame::{
    FrameError, HEADER_LEN, MAX_FRAME_LEN, PROTOCOL_VERSION, decode_frame, decode_payload,
    encode_frame, payload_len,
};
pub use mdns::services as dnssd_services;
pub use mdns::{
    DnsSd, MAX_DNSSD, MAX_TXT_BYTES, Mdns, check_service_type, check_txt, parse_dnssd, parse_txt,
    well_known,
};
pub use servers::{DhcpServers, MAX_DHCP_SERVERS, dhcp_servers_text, parse_dhcp_servers};
pub use types::*;
