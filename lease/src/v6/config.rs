//! Who a DHCPv6 client is ([`Config`], its DUID and IAID) and how it
//! retransmits ([`Params`], RFC 8415 section 15, with the section 7.6
//! values per message type).

use std::time::Duration;

use crate::randomness::Randomness;

/// Static configuration of one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The interface's (derived, stable) MAC: the DUID-LL and the IAID come
    /// from it, so a re-created router is the same client to the server.
    pub mac: [u8; 6],
    /// Sent as the FQDN option (39, RFC 4704) so the LAN's DNS can register
    /// the name's AAAA record.
    pub hostname: Option<String>,
    /// Ask for Rapid Commit (RFC 8415 section 18.2.1): a server that allows
    /// it answers the Solicit with a Reply, saving a round trip.
    pub rapid_commit: bool,
    /// The most the first Solicit or Information-request waits (section
    /// 18.2.1's random delay, up to SOL_MAX_DELAY / INF_MAX_DELAY); `None`:
    /// the RFC's 1 s. A client that has just waited a random delay of its
    /// own (e.g. before its Router Solicitation) may need none.
    pub first_delay: Option<Duration>,
}

impl Config {
    /// DUID-LL (RFC 8415 section 11.4): type 3, hardware type 1 (Ethernet),
    /// the MAC. Chosen over DUID-LLT because it needs no persisted time: the
    /// MAC is derived from the service's name, so the DUID is stable across
    /// re-created routers without any state.
    pub fn duid(&self) -> Vec<u8> {
        let mut d = vec![0, 3, 0, 1];
        d.extend_from_slice(&self.mac);
        d
    }

    /// The IAID of the one IA_NA (RFC 8415 section 12: consistent across
    /// restarts): the last four bytes of the MAC.
    pub fn iaid(&self) -> u32 {
        u32::from_be_bytes([self.mac[2], self.mac[3], self.mac[4], self.mac[5]])
    }
}

/// Retransmission parameters of one message type (RFC 8415 section 15):
/// initial and maximum retransmission time, maximum count (0: unlimited)
/// and maximum duration (`None`: unlimited, or set by the exchange, e.g.
/// "until T2" for a Renew).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// Random delay before the first transmission, up to this (0: none).
    pub max_delay: Duration,
    pub irt: Duration,
    pub mrt: Duration,
    pub mrc: u32,
    pub mrd: Option<Duration>,
}

const fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

// RFC 8415 section 7.6.
pub const SOLICIT: Params = Params {
    max_delay: s(1),
    irt: s(1),
    mrt: s(3600),
    mrc: 0,
    mrd: None,
};
pub const REQUEST: Params = Params {
    max_delay: s(0),
    irt: s(1),
    mrt: s(30),
    mrc: 10,
    mrd: None,
};
pub const RENEW: Params = Params {
    max_delay: s(0),
    irt: s(10),
    mrt: s(600),
    mrc: 0,
    mrd: None,
};
pub const REBIND: Params = Params {
    max_delay: s(0),
    irt: s(10),
    mrt: s(600),
    mrc: 0,
    mrd: None,
};
pub const INFORMATION_REQUEST: Params = Params {
    max_delay: s(1),
    irt: s(1),
    mrt: s(3600),
    mrc: 0,
    mrd: None,
};
pub const RELEASE: Params = Params {
    max_delay: s(0),
    irt: s(1),
    mrt: s(0),
    mrc: 4,
    mrd: None,
};
/// Information refresh time when the server sends none, and the least the
/// client accepts (RFC 8415 section 21.23).
pub const IRT_DEFAULT: Duration = s(86400);
pub const IRT_MINIMUM: Duration = s(600);

/// RAND of section 15: uniform in [-0.1, 0.1].
pub(crate) fn rand_factor(r: &mut dyn Randomness) -> f64 {
    f64::from(r.next_u32()) / f64::from(u32::MAX) * 0.2 - 0.1
}

/// A uniform delay in [0, max].
pub(crate) fn random_delay(r: &mut dyn Randomness, max: Duration) -> Duration {
    max.mul_f64(f64::from(r.next_u32()) / f64::from(u32::MAX))
}

/// The first retransmission time: RT = IRT + RAND*IRT. For the first
/// Solicit RAND is strictly positive (section 18.2.1), so that the client
/// waits the whole IRT for Advertises before choosing.
pub fn first_rt(p: &Params, rand: f64, solicit: bool) -> Duration {
    let rand = if solicit {
        rand.abs().max(f64::EPSILON)
    } else {
        rand
    };
    p.irt.mul_f64(1.0 + rand)
}

/// The next retransmission time: RT = 2*RTprev + RAND*RTprev, and
/// RT = MRT + RAND*MRT once that passes MRT (section 15).
pub fn next_rt(p: &Params, prev: Duration, rand: f64) -> Duration {
    let rt = prev.mul_f64(2.0 + rand);
    if !p.mrt.is_zero() && rt > p.mrt {
        p.mrt.mul_f64(1.0 + rand)
    } else {
        rt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duid_ll_and_iaid_from_the_mac() {
        let c = Config {
            mac: [0x02, 0x42, 0xc0, 0x00, 0x02, 0x39],
            hostname: None,
            rapid_commit: false,
            first_delay: None,
        };
        assert_eq!(
            c.duid(),
            vec![0, 3, 0, 1, 0x02, 0x42, 0xc0, 0x00, 0x02, 0x39]
        );
        assert_eq!(c.iaid(), 0xc000_0239);
    }

    #[test]
    fn retransmission_times_follow_section_15() {
        // RAND 0: doubling, capped at MRT.
        assert_eq!(first_rt(&REQUEST, 0.0, false), s(1));
        assert_eq!(next_rt(&REQUEST, s(1), 0.0), s(2));
        assert_eq!(next_rt(&REQUEST, s(16), 0.0), s(30));
        // RAND moves each step by up to a tenth either way.
        assert_eq!(first_rt(&RENEW, 0.1, false), s(11));
        assert_eq!(first_rt(&RENEW, -0.1, false), s(9));
        assert_eq!(next_rt(&RENEW, s(10), -0.1), s(19));
        assert_eq!(next_rt(&RENEW, s(400), 0.1), s(660));
        // The first Solicit never waits less than IRT.
        assert!(first_rt(&SOLICIT, -0.1, true) > s(1));
    }

    #[test]
    fn rand_factor_spans_a_tenth() {
        let fixed = crate::randomness::Sequence::fixed;
        assert!((rand_factor(&mut fixed(0)) + 0.1).abs() < 1e-9);
        assert!((rand_factor(&mut fixed(u32::MAX)) - 0.1).abs() < 1e-9);
        assert_eq!(random_delay(&mut fixed(u32::MAX), s(1)), s(1));
        assert_eq!(random_delay(&mut fixed(0), s(1)), s(0));
    }
}
