//! libFuzzer target `dhcp`: the DHCP client state machine, structure-aware: the input is
//! read as a script of client events (start, server replies, clock advances, timeouts,
//! release, decline; see `netcontainer_fuzz::dhcp::decode_script`), run on a virtual
//! clock with the client's invariants checked after every step.
//!
//! Before fuzzing, the deterministic RFC checks of the mutation fuzzer run once; a failed
//! check aborts the run like a crash.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use netcontainer_fuzz::dhcp::DhcpTarget;
use netcontainer_fuzz::rfc;

thread_local! {
    static TARGET: RefCell<DhcpTarget> = RefCell::new(DhcpTarget::new());
}

fn rfc_checks() {
    let out = rfc::run();
    eprintln!(
        "rfc checks: {} passed, {} failed",
        out.passed.len(),
        out.failed.len()
    );
    for n in &out.notes {
        eprintln!("  note: {n}");
    }
    for (name, why) in &out.failed {
        eprintln!("  FAILED: {name}: {why}");
    }
    assert!(out.failed.is_empty(), "dhcp RFC checks failed");
}

fuzz_target!(init: rfc_checks(), |data: &[u8]| {
    TARGET.with_borrow_mut(|t| t.replay(data))
});
