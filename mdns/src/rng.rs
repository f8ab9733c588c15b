//! The responder's random delays (probe start, shared answers, TC waits) from a
//! 64-bit seed: SplitMix64, a few lines and no state beyond one word, since the
//! delays need no cryptographic strength, only variety between hosts started
//! together (the agent seeds it from the OS) and exact replays in tests.

use std::time::Duration;

#[derive(Clone, Debug)]
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A delay uniform in `lo..=hi` milliseconds (the modulo bias over a
    /// range of a few hundred is far below anything a timer can show).
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next_u64() % (hi - lo + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_in_range_and_vary() {
        let mut r = SplitMix::new(1);
        let d: Vec<Duration> = (0..200).map(|_| r.millis(20, 120)).collect();
        assert!(d.iter().all(|d| (20..=120).contains(&d.as_millis())));
        assert!(d.iter().any(|x| *x != d[0]));
        let again: Vec<Duration> = {
            let mut r = SplitMix::new(1);
            (0..200).map(|_| r.millis(20, 120)).collect()
        };
        assert_eq!(d, again);
    }
}
