//! libFuzzer target `ra`: the router advertisement parser and the SLAAC tracker. The
//! input is one ICMPv6 message.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use netcontainer_fuzz::dhcp6::RaTarget;

thread_local! {
    static TARGET: RefCell<RaTarget> = RefCell::new(RaTarget::new());
}

fuzz_target!(|data: &[u8]| TARGET.with_borrow_mut(|t| t.run(data)));
