//! The lease logic of netcontainer's router agent, without I/O: no sockets,
//! no clock, no async runtime. The agent's shell owns those and feeds this
//! crate bytes and "the deadline passed"; this crate answers with bytes to
//! send, lease events and the next deadline (the split quinn makes between
//! quinn-proto and quinn). Everything here therefore runs, and is tested and
//! fuzzed, on a virtual clock without a network.
//!
//! - [`v4`]: the DHCPv4 client (RFC 2131): state machine ([`v4::client`]),
//!   wire format ([`v4::wire`]), settings ([`v4::config`]).
//! - [`v6`]: the DHCPv6 client (RFC 8415) and router advertisements and
//!   SLAAC ([`v6::ra`]).
//! - What both clients share: their [`State`], the [`timers`] of a lease
//!   ([`LeaseTimes`]: T1, T2, lifetimes, and how each protocol fills those
//!   its server left open) and where their [`Randomness`] comes from.
//! - [`arp`]: RFC 5227 address conflict probe (state machine and ARP codec).
//! - [`packet`]: IPv4/UDP framing for a raw DHCP socket.
//! - `testing` (feature `test-helpers`): reply builders and option readers
//!   shared by this crate's tests, the agent's, the integration tests and the
//!   fuzzers. [`packet`] and [`arp`] are IPv4 only.
//!
//! # The shape of a client
//!
//! Both clients (`v4::Client`, `v6::Client`) are driven the same way; an
//! address family is a module with a client of this shape:
//!
//! ```text
//! Client::new(config, rng: Box<dyn Randomness>)   nothing sent, nothing due
//! client.start(now)                 acquire a lease: DISCOVER / Solicit
//! client.resume(now, stored)        claim the lease held before a restart:
//!                                   INIT-REBOOT for its address / Rebind for the lease
//! client.handle_packet(now, bytes)  a received UDP payload; anything not for the
//!                                   current exchange is ignored; never panics
//! client.handle_timeout(now)        call when now >= poll_timeout()
//! client.poll_transmit()            what to send now
//! client.poll_event()               Event::Bound(lease) / Event::Lost { lease, reason }
//! client.poll_timeout()             the next deadline
//! client.release(now)               give the lease back; Event::Lost(Released)
//! client.state() -> State           client.lease() -> Option<&Lease>
//! lease.times: LeaseTimes           lease.renew_at() / rebind_at() / expires_at()
//! ```
//!
//! Where the protocols differ, so do the clients: a DHCPv4 client can
//! `decline` an address (RFC 5227 conflict) and `stop` without releasing
//! (the next start resumes the lease; the DHCPv6 shell keeps a lease by
//! dropping its client), a DHCPv6 client can `start_stateless`
//! (Information-request only) and reports `Event::Information`.
//!
//! Tests and fuzzers pass [`randomness::seeded`] (or a fixed sequence) and
//! get the same xids and retransmission times on every run; the agent
//! passes [`randomness::from_os`].

pub mod arp;
pub mod packet;
pub mod randomness;
pub mod state;
pub mod timers;
pub mod v4;
pub mod v6;

#[cfg(any(test, feature = "test-helpers"))]
pub mod testing;

pub use randomness::Randomness;
pub use state::State;
pub use timers::LeaseTimes;
