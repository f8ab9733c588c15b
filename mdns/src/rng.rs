//! The responder's random delays (probe start, shared answers, TC waits) from a
//! 64-bit seed: rand's `SmallRng`, since the delays need no cryptographic
//! strength, only variety between hosts started together (the agent seeds it
//! from the OS) and exact replays in tests and the fuzzer.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[derive(Clone, Debug)]
pub(crate) struct Jitter(SmallRng);

impl Jitter {
    pub fn new(seed: u64) -> Jitter {
        Jitter(SmallRng::seed_from_u64(seed))
    }

    /// A delay uniform in `lo..=hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.0.random_range(lo..=hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_in_range_and_vary() {
        let mut r = Jitter::new(1);
        let d: Vec<Duration> = (0..200).map(|_| r.millis(20, 120)).collect();
        assert!(d.iter().all(|d| (20..=120).contains(&d.as_millis())));
        assert!(d.iter().any(|x| *x != d[0]));
        let again: Vec<Duration> = {
            let mut r = Jitter::new(1);
            (0..200).map(|_| r.millis(20, 120)).collect()
        };
        assert_eq!(d, again);
    }
}
