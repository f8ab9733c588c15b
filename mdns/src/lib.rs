//! The mDNS responder of netcontainer's router agent, without I/O: multicast
//! DNS (RFC 6762) for one host name, with DNS-SD service records (RFC 6763),
//! in the shape of the lease crate (and of quinn-proto): the agent's shell owns
//! the sockets and the clock, feeds this crate datagrams and "the deadline
//! passed", and sends what it is given.
//!
//! ```text
//! Responder::new(config, seed)            validated names; nothing sent, nothing due
//! r.set_addresses(now, &v4, &v6)          the first address starts probing (8.1)
//! r.handle_packet(now, from, bytes)       a datagram received on port 5353; never panics
//! r.handle_timeout(now)                   call when now >= poll_timeout()
//! r.poll_transmit() -> Transmit           payload + Destination (both groups, one family, or unicast)
//! r.poll_event() -> Event                 Claimed / Conflict (renamed) / Gone
//! r.poll_timeout() -> Option<Instant>
//! r.shutdown(now)                         goodbyes (TTL 0) for what was announced
//! r.name() -> Option<String>              "web1-2.local" once claimed
//! ```
//!
//! - [`config`]: what is published and its checks; renaming after a conflict.
//! - [`records`]: the record set (A/AAAA and their reverse PTRs, the DNS-SD
//!   PTRs, SRV, TXT, NSEC).
//! - [`responder`]: probing, announcing, answering, conflicts, goodbyes.
//!
//! The wire format is hickory-proto's (feature `mdns`: the QU and cache-flush
//! bits), which the agent already links through dhcproto. The querier's side
//! (caching, 7.3 and 7.4's duplicate suppression) is not done: the responder
//! answers, it does not cache or query.

pub mod config;
pub mod records;
pub mod responder;
mod rng;

#[cfg(test)]
mod tests;

pub use config::{Config, ConfigError, Service};
pub use responder::{
    Counters, Destination, Event, MAX_PAYLOAD, MAX_RECEIVED, MAX_RECORDS, MDNS_PORT, Responder,
    Transmit,
};

/// The wire library, re-exported so that the shell, tests and fuzzers parse
/// with the same version.
pub use hickory_proto;
