//! The fuzz targets of netcontainer, as a library so that two drivers share them:
//!
//! - the `netcontainer-fuzz` binary (src/main.rs): a mutation fuzzer on stable Rust without
//!   coverage guidance, with structure-aware generators and the deterministic RFC checks
//!   of [`rfc`];
//! - the coverage-guided libFuzzer targets in `fuzz/libfuzzer/` (a crate of its own, built
//!   with sanitizer-coverage instrumentation), which call the same per-input functions:
//!   [`frame::FrameTarget::run`], [`packet::PacketTarget::run`] and
//!   [`dhcp::DhcpTarget::replay`] (the bytes are read as a script of client events),
//!   [`dhcp6::Dhcp6Target::run`] (a script of DHCPv6 client steps) and
//!   [`dhcp6::RaTarget::run`] (router advertisement parser and tracker) and
//!   [`mdns::MdnsTarget::run`] (a script of mDNS responder steps).
//!
//! [`corpus`] reads and checks the committed seed corpus (`fuzz/corpus/`): real replies of
//! dnsmasq and Kea captured by `scripts/capture-fuzz-corpus`.

pub mod corpus;
pub mod dhcp;
pub mod dhcp6;
pub mod frame;
pub mod mdns;
pub mod mutate;
pub mod packet;
pub mod rfc;
pub mod rng;

use std::sync::Mutex;

static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// The message and location of the last caught panic.
pub fn last_panic() -> String {
    LAST_PANIC
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

/// Replaces the panic hook by one that only records the panic (see [`last_panic`]).
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(info.to_string());
    }));
}
