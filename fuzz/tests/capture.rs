//! scripts/capture-fuzz-corpus still reproduces the seed corpus: the capture (the
//! example's code, run in-process) against real dnsmasq and Kea in network namespaces
//! writes the same files as are committed, and each is what its name says. Root only
//! (skipped otherwise, an error under CI).

use std::collections::BTreeSet;

use netcontainer_fuzz::corpus::{self, check_packet_file, script_replies};
use netcontainer_tests::{TempDir, require_root};

#[allow(dead_code)] // its main() is the example's
#[path = "../examples/capture-corpus.rs"]
mod capture;

fn names(dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn capture_reproduces_the_committed_corpus() {
    require_root!();
    let out = TempDir::new("corpus");
    capture::run(out.path()).unwrap_or_else(|e| panic!("capture failed: {e}"));
    for target in ["packet", "dhcp", "frame"] {
        assert_eq!(
            names(&out.join(target)),
            names(&corpus::dir().join(target)),
            "captured vs committed fuzz/corpus/{target}"
        );
    }
    for name in names(&out.join("packet")) {
        let bytes = std::fs::read(out.join("packet").join(&name)).unwrap();
        check_packet_file(&bytes).unwrap_or_else(|e| panic!("captured {name}: {e}"));
    }
    for name in names(&out.join("dhcp")) {
        let bytes = std::fs::read(out.join("dhcp").join(&name)).unwrap();
        script_replies(&bytes).unwrap_or_else(|e| panic!("captured {name}: {e}"));
    }
}
