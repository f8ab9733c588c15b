//! Where a client's randomness comes from: transaction ids, the DHCPv4
//! retransmission jitter (RFC 2131 section 4.1), the DHCPv6 first delay and
//! RAND factor (RFC 8415 section 15). Injected, like the clock, so that a
//! test or a fuzzer can make every xid and every retransmission time exact.

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// A source of random numbers a client can own and move across threads.
/// Anything that is a [`RngCore`] is one; a test may write its own (a fixed
/// value, a sequence).
pub trait Randomness: RngCore + Send {}

impl<R: RngCore + Send> Randomness for R {}

/// The same seed, the same numbers: for tests, fuzzers and replays.
pub fn seeded(seed: u64) -> Box<dyn Randomness> {
    Box::new(StdRng::seed_from_u64(seed))
}

/// Seeded from the operating system: what a real client is given (an
/// off-link host cannot guess its transaction ids, and routers started
/// together do not retransmit in step).
pub fn from_os() -> Box<dyn Randomness> {
    Box::new(StdRng::from_os_rng())
}

/// Test randomness (feature `test-helpers`): the given numbers in turn,
/// then the last one for ever, so that a test pins every xid, delay and
/// retransmission time.
#[cfg(any(test, feature = "test-helpers"))]
#[derive(Clone, Debug)]
pub struct Sequence(Vec<u32>);

#[cfg(any(test, feature = "test-helpers"))]
impl Sequence {
    /// Panics on an empty list: there would be nothing to repeat.
    pub fn new(values: Vec<u32>) -> Sequence {
        assert!(!values.is_empty(), "a Sequence needs at least one value");
        Sequence(values)
    }

    /// The same number every time.
    pub fn fixed(value: u32) -> Sequence {
        Sequence(vec![value])
    }
}

#[cfg(any(test, feature = "test-helpers"))]
impl RngCore for Sequence {
    fn next_u32(&mut self) -> u32 {
        if self.0.len() > 1 {
            self.0.remove(0)
        } else {
            self.0[0]
        }
    }

    fn next_u64(&mut self) -> u64 {
        rand::rand_core::impls::next_u64_via_u32(self)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        rand::rand_core::impls::fill_bytes_via_next(self, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_is_deterministic_and_seed_dependent() {
        let draw = |seed| {
            let mut r = seeded(seed);
            [r.next_u32(), r.next_u32(), r.next_u32()]
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn from_os_differs_between_clients() {
        // Two 64-bit draws from independent OS seeds are equal with
        // probability 2^-64: a match means the seeding is broken.
        assert_ne!(from_os().next_u64(), from_os().next_u64());
    }

    #[test]
    fn sequence_plays_its_values_then_repeats_the_last() {
        let mut s = Sequence::new(vec![1, 2, 3]);
        let got: Vec<u32> = (0..5).map(|_| s.next_u32()).collect();
        assert_eq!(got, [1, 2, 3, 3, 3]);
        assert_eq!(Sequence::fixed(9).next_u64(), (9 << 32) | 9);
    }
}
