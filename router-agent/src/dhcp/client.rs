//! The DHCPv4 client as a sans-IO state machine (RFC 2131).
//!
//! No sockets, no clock, no sleeping: the I/O shell feeds it received DHCP
//! payloads and "the deadline passed" with the current time, and drains
//! packets to send ([`Client::poll_transmit`]), lease events
//! ([`Client::poll_event`]) and the next deadline ([`Client::poll_timeout`]).
//!
//! API CONTRACT (the I/O shell in `agent.rs` is written against this):
//!
//! ```text
//! Client::new(config, rng_seed)            -> state Init, nothing queued
//! client.start(now, previous: Option<Ipv4Addr>)
//!     None    -> Selecting, DISCOVER queued at once
//!     Some(a) -> Rebooting (INIT-REBOOT), REQUEST{opt50=a, no 54, ciaddr 0} queued at once
//! client.handle_packet(now, udp_payload: &[u8])  // garbage, foreign xid/chaddr, BOOTREQUEST: ignored
//! client.handle_timeout(now)                     // call when now >= poll_timeout()
//! client.poll_transmit() -> Option<Transmit>
//! client.poll_event()    -> Option<Event>
//! client.poll_timeout()  -> Option<Instant>
//! client.release(now)    // RELEASE unicast to server (if a lease is held), Event::Lost(Released), state Stopped
//! client.decline(now)    // address conflict: DECLINE broadcast, Event::Lost(Declined), Init, DISCOVER after 10 s
//! client.state() -> netcontainer_proto::State ; client.lease() -> Option<&Lease>
//! ```

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use netcontainer_proto::State;

/// Static configuration of one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Hardware address of the interface (chaddr).
    pub chaddr: [u8; 6],
    /// Client identifier, option 61, sent in every message (RELEASE included).
    pub client_id: Vec<u8>,
    /// Hostname, option 12 (and option 81, FQDN, with the E and S flags).
    pub hostname: Option<String>,
    /// Set the BOOTP broadcast flag on DISCOVER and REQUEST.
    pub broadcast_flag: bool,
}

/// A lease granted by a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// Default gateway: the first router (option 3), or the 0.0.0.0/0 entry of
    /// option 121 when that is present (RFC 3442: then option 3 is ignored).
    pub gateway: Option<Ipv4Addr>,
    /// Classless static routes (option 121) other than the default: (destination, prefix length, router).
    pub routes: Vec<(Ipv4Addr, u8, Ipv4Addr)>,
    pub server_id: Ipv4Addr,
    pub dns: Vec<Ipv4Addr>,
    /// `None` for an infinite lease (0xffffffff).
    pub lease_time: Option<Duration>,
    /// T1 and T2 after validation (RFC defaults 0.5 and 0.875 when absent, zero or inconsistent).
    pub t1: Option<Duration>,
    pub t2: Option<Duration>,
    /// When the REQUEST that earned this ACK was sent: the timers count from here.
    pub start: Instant,
}

impl Lease {
    pub fn renew_at(&self) -> Option<Instant> {
        self.t1.map(|d| self.start + d)
    }
    pub fn rebind_at(&self) -> Option<Instant> {
        self.t2.map(|d| self.start + d)
    }
    pub fn expires_at(&self) -> Option<Instant> {
        self.lease_time.map(|d| self.start + d)
    }
}

/// Where a packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255:67 from `src`, through the raw socket.
    Broadcast { src: Ipv4Addr },
    /// Unicast to `server:67` from `src:68`, through a UDP socket bound to `src`.
    Unicast { src: Ipv4Addr, server: Ipv4Addr },
}

/// A packet to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The encoded DHCP message, padded to at least 300 bytes.
    pub payload: Vec<u8>,
    pub destination: Destination,
}

/// Why an address stopped being usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostReason {
    Expired,
    Nak,
    Released,
    Declined,
}

/// Something the shell must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A lease is in force: new, or extended/changed by a renew or rebind.
    /// The shell compares it with what it configured and (re)configures.
    Bound(Lease),
    /// The lease's address must no longer be used: remove it (and the rules).
    Lost { lease: Lease, reason: LostReason },
}

pub struct Client {
    _private: (),
}

impl Client {
    pub fn new(_config: Config, _rng_seed: u64) -> Self {
        todo!()
    }
    pub fn start(&mut self, _now: Instant, _previous: Option<Ipv4Addr>) {
        todo!()
    }
    pub fn handle_packet(&mut self, _now: Instant, _payload: &[u8]) {
        todo!()
    }
    pub fn handle_timeout(&mut self, _now: Instant) {
        todo!()
    }
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        todo!()
    }
    pub fn poll_event(&mut self) -> Option<Event> {
        todo!()
    }
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!()
    }
    pub fn release(&mut self, _now: Instant) {
        todo!()
    }
    pub fn decline(&mut self, _now: Instant) {
        todo!()
    }
    pub fn state(&self) -> State {
        todo!()
    }
    pub fn lease(&self) -> Option<&Lease> {
        todo!()
    }
}
