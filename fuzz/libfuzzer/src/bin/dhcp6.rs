//! libFuzzer target `dhcp6`: the DHCPv6 client state machine. The input is the mutation
//! fuzzer's `dhcp6` input: a start byte, then steps `[op, len (u16 BE), data]`.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use netcontainer_fuzz::dhcp6::Dhcp6Target;

thread_local! {
    static TARGET: RefCell<Dhcp6Target> = RefCell::new(Dhcp6Target::new());
}

fuzz_target!(|data: &[u8]| TARGET.with_borrow_mut(|t| t.run(data)));
