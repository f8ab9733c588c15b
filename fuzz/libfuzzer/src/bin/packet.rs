//! libFuzzer target `packet`: the raw IPv4/UDP parser. The input is the mutation fuzzer's
//! `packet` input: a mode byte (2: build/parse round trip of the rest; else parse the
//! rest as a received datagram), then the bytes.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use netcontainer_fuzz::packet::PacketTarget;

thread_local! {
    static TARGET: RefCell<PacketTarget> = RefCell::new(PacketTarget::new());
}

fuzz_target!(|data: &[u8]| TARGET.with_borrow_mut(|t| t.run(data)));
