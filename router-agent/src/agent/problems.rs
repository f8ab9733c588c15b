//! What went wrong, per subsystem. Each subsystem has one slot: a failure
//! sets it, the subsystem's next success clears it, so a fixed problem does
//! not linger and one subsystem's success does not hide another's failure.
//! Status shows them all; its `last_error` (the wire contract) is the most
//! recent one still standing.

use std::collections::BTreeMap;
use std::fmt;

use netcontainer_proto::Problem;

pub use netcontainer_proto::Subsystem;

/// The standing problems, one per subsystem at most.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Problems {
    /// Message and the order it was set in (for "the most recent").
    slots: BTreeMap<Subsystem, (String, u64)>,
    seq: u64,
}

impl Problems {
    /// Sets `subsystem`'s problem (replacing an older one of it).
    pub fn set(&mut self, subsystem: Subsystem, message: impl Into<String>) {
        let message = message.into();
        tracing::debug!(%subsystem, %message, "problem");
        self.seq += 1;
        self.slots.insert(subsystem, (message, self.seq));
    }

    /// `subsystem` works again.
    pub fn clear(&mut self, subsystem: Subsystem) {
        self.slots.remove(&subsystem);
    }

    /// Sets or clears `subsystem`'s problem from an outcome.
    pub fn record<E: fmt::Display>(&mut self, subsystem: Subsystem, r: Result<(), E>) {
        match r {
            Ok(()) => self.clear(subsystem),
            Err(e) => self.set(subsystem, e.to_string()),
        }
    }

    pub fn get(&self, subsystem: Subsystem) -> Option<&str> {
        self.slots.get(&subsystem).map(|(m, _)| m.as_str())
    }

    /// The most recent standing problem (status's `last_error`).
    pub fn latest(&self) -> Option<&str> {
        self.slots
            .values()
            .max_by_key(|(_, seq)| *seq)
            .map(|(m, _)| m.as_str())
    }

    /// Every standing problem, by subsystem.
    pub fn iter(&self) -> impl Iterator<Item = (Subsystem, &str)> {
        self.slots.iter().map(|(s, (m, _))| (*s, m.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// As the wire lists them (`Request::Problems`).
    pub fn to_wire(&self) -> Vec<Problem> {
        self.iter()
            .map(|(subsystem, m)| Problem {
                subsystem,
                message: m.to_string(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_success_clears_only_its_own_subsystem_and_the_latest_wins() {
        let mut p = Problems::default();
        assert_eq!(p.latest(), None);
        p.set(Subsystem::Firewall, "nft failed");
        p.set(Subsystem::Dhcp, "lease lost");
        assert_eq!(p.latest(), Some("lease lost"));
        p.record::<String>(Subsystem::Dhcp, Ok(()));
        assert_eq!(p.latest(), Some("nft failed"));
        assert_eq!(p.get(Subsystem::Dhcp), None);
        // Set again, it is the latest even though its slot is older.
        p.set(Subsystem::Relay, "port cap");
        p.set(Subsystem::Firewall, "nft failed again");
        assert_eq!(p.latest(), Some("nft failed again"));
        assert_eq!(
            p.iter().map(|(s, _)| s).collect::<Vec<_>>(),
            [Subsystem::Firewall, Subsystem::Relay]
        );
        p.record(Subsystem::Firewall, Err("x"));
        assert_eq!(p.get(Subsystem::Firewall), Some("x"));
        p.clear(Subsystem::Firewall);
        p.clear(Subsystem::Relay);
        assert!(p.is_empty());
    }
}
