//! libFuzzer target `frame`: the control protocol framing, through the same per-input
//! function (and invariants) as the mutation fuzzer's `frame` target.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use netcontainer_fuzz::frame::FrameTarget;

thread_local! {
    static TARGET: RefCell<FrameTarget> = RefCell::new(FrameTarget::new());
}

fuzz_target!(|data: &[u8]| TARGET.with_borrow_mut(|t| t.run(data)));
