//! STUB (replaced by the mdns-core branch).
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;
pub struct Config {
    pub hostname: String,
    pub services: Vec<Service>,
}
pub struct Service {
    pub instance: String,
    pub service_type: String,
    pub port: u16,
    pub txt: Vec<String>,
}
#[derive(Debug)]
pub struct ConfigError;
impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stub")
    }
}
impl std::error::Error for ConfigError {}
impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
pub struct Responder;
pub struct Transmit {
    pub to: Destination,
    pub payload: Vec<u8>,
}
pub enum Destination {
    Multicast,
    MulticastV4,
    MulticastV6,
    Unicast(SocketAddr),
}
pub enum Event {
    Claimed { name: String },
    Conflict { name: String, next: String },
    Gone,
}
#[derive(Default, Debug, Clone)]
pub struct Counters {
    pub queries_answered: u64,
    pub malformed: u64,
    pub conflicts: u64,
}
impl Responder {
    pub fn new(_c: Config, _seed: u64) -> Result<Responder, ConfigError> {
        Ok(Responder)
    }
    pub fn set_addresses(&mut self, _now: Instant, _v4: &[Ipv4Addr], _v6: &[Ipv6Addr]) {}
    pub fn handle_packet(&mut self, _now: Instant, _from: SocketAddr, _data: &[u8]) {}
    pub fn handle_timeout(&mut self, _now: Instant) {}
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        None
    }
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    pub fn poll_event(&mut self) -> Option<Event> {
        None
    }
    pub fn shutdown(&mut self, _now: Instant) {}
    pub fn name(&self) -> Option<String> {
        None
    }
    pub fn counters(&self) -> Counters {
        Counters::default()
    }
}
