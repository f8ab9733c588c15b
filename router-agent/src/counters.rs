//! The DHCP client's counters (renewals, NAKs, rebinds), shared by the
//! family task that counts and the control socket that reports them
//! (`Request::Counters`). Atomics: the task never waits for a reader.

use std::sync::atomic::{AtomicU64, Ordering};

use netcontainer_proto::LeaseCounters;

#[derive(Debug, Default)]
pub struct Counters {
    renewals: AtomicU64,
    naks: AtomicU64,
    rebinds: AtomicU64,
    conflicts: AtomicU64,
    defences: AtomicU64,
}

impl Counters {
    pub fn renewed(&self) {
        self.renewals.fetch_add(1, Ordering::Relaxed);
    }

    pub fn naks(&self, n: u64) {
        self.naks.fetch_add(n, Ordering::Relaxed);
    }

    pub fn rebinding(&self) {
        self.rebinds.fetch_add(1, Ordering::Relaxed);
    }

    /// An address given up because another host uses it (DECLINEd).
    pub fn conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }

    /// Another host claimed the bound address and was answered with an
    /// announcement (RFC 5227 §2.4 (b)).
    pub fn defended(&self) {
        self.defences.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> LeaseCounters {
        LeaseCounters {
            renewals: self.renewals.load(Ordering::Relaxed),
            naks: self.naks.load(Ordering::Relaxed),
            rebinds: self.rebinds.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
            defences: self.defences.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        let c = Counters::default();
        c.renewed();
        c.renewed();
        c.naks(3);
        c.rebinding();
        c.conflict();
        c.defended();
        c.defended();
        assert_eq!(
            c.get(),
            LeaseCounters {
                renewals: 2,
                naks: 3,
                rebinds: 1,
                conflicts: 1,
                defences: 2,
            }
        );
    }
}
