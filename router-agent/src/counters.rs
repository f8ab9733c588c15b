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

    pub fn get(&self) -> LeaseCounters {
        LeaseCounters {
            renewals: self.renewals.load(Ordering::Relaxed),
            naks: self.naks.load(Ordering::Relaxed),
            rebinds: self.rebinds.load(Ordering::Relaxed),
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
        assert_eq!(
            c.get(),
            LeaseCounters {
                renewals: 2,
                naks: 3,
                rebinds: 1
            }
        );
    }
}
