//! libFuzzer target `mdns`: the mDNS responder from each of its states. The input is the
//! mutation fuzzer's `mdns` input: a start byte, a seed byte, then ops (packets, clock
//! advances, address changes, shutdown; see netcontainer_fuzz::mdns).
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use netcontainer_fuzz::mdns::MdnsTarget;

thread_local! {
    static TARGET: RefCell<MdnsTarget> = RefCell::new(MdnsTarget::new());
}

fuzz_target!(|data: &[u8]| TARGET.with_borrow_mut(|t| t.run(data)));
