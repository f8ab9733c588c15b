//! The timers of a lease, shared by both clients: when to renew (T1), when
//! to rebind (T2), how long the address stays preferred and valid, all
//! counted from the start of the exchange that earned the lease. Each
//! protocol fills the timers its server left open in its own way
//! ([`rfc2131_timers`], [`rfc8415_timers`]); from then on a DHCPv4 lease and
//! a DHCPv6 address are the same thing to a state machine and to the agent.

use std::time::{Duration, Instant};

use tracing::debug;

/// 32-bit seconds of all ones: infinity, in both protocols (RFC 2131
/// section 3.3 for the lease time, RFC 8415 section 7.7 for lifetimes and
/// T1/T2).
pub const INFINITY: u32 = u32::MAX;

/// 32-bit seconds off the wire as a duration; `None` for [`INFINITY`].
pub fn lifetime(secs: u32) -> Option<Duration> {
    (secs != INFINITY).then(|| Duration::from_secs(u64::from(secs)))
}

/// When a lease's timers fire. `None` is infinity: never renew, never
/// rebind, never expire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTimes {
    /// When the exchange that earned the lease began: every timer counts
    /// from here (RFC 2131 section 4.4.1: from the REQUEST; RFC 8415
    /// section 18.2.10.1: from the first transmission).
    pub start: Instant,
    /// Renew with the lease's server after this.
    pub t1: Option<Duration>,
    /// Rebind with any server after this.
    pub t2: Option<Duration>,
    /// The address is usable for this long (DHCPv4: the lease time).
    pub valid: Option<Duration>,
    /// The address is preferred for this long. DHCPv4 has no preferred
    /// lifetime: an address is preferred until it expires (`= valid`).
    pub preferred: Option<Duration>,
}

impl LeaseTimes {
    /// A DHCPv4 lease of `lease` (`None`: infinite, so no timers at all)
    /// with T1 and T2 as the server sent them (options 58 and 59; `None`
    /// when absent or zero), checked and defaulted by [`rfc2131_timers`].
    pub fn dhcpv4(
        start: Instant,
        lease: Option<Duration>,
        server_t1: Option<Duration>,
        server_t2: Option<Duration>,
    ) -> LeaseTimes {
        let (t1, t2) = lease
            .map(|l| rfc2131_timers(l, server_t1, server_t2))
            .unzip();
        LeaseTimes {
            start,
            t1,
            t2,
            valid: lease,
            preferred: lease,
        }
    }

    /// A DHCPv6 address with the lifetimes of its IA Address option and
    /// the T1 and T2 of its IA_NA in wire seconds, defaulted by
    /// [`rfc8415_timers`].
    pub fn dhcpv6(
        start: Instant,
        preferred: Option<Duration>,
        valid: Option<Duration>,
        server_t1: u32,
        server_t2: u32,
    ) -> LeaseTimes {
        let (t1, t2) = rfc8415_timers(preferred, valid, server_t1, server_t2);
        LeaseTimes {
            start,
            t1,
            t2,
            valid,
            preferred,
        }
    }

    pub fn renew_at(&self) -> Option<Instant> {
        self.t1.map(|d| self.start + d)
    }

    pub fn rebind_at(&self) -> Option<Instant> {
        self.t2.map(|d| self.start + d)
    }

    pub fn expires_at(&self) -> Option<Instant> {
        self.valid.map(|d| self.start + d)
    }

    pub fn preferred_until(&self) -> Option<Instant> {
        self.preferred.map(|d| self.start + d)
    }

    /// The earliest of T1, T2 and the end of the valid lifetime: when a
    /// bound client next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        [self.renew_at(), self.rebind_at(), self.expires_at()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether the valid lifetime has ended at `now`.
    pub fn expired(&self, now: Instant) -> bool {
        self.expires_at().is_some_and(|t| now >= t)
    }
}

/// T1 and T2 of a finite DHCPv4 lease (RFC 2131 section 4.4.5): the
/// server's values when they are in order (0 < T1 < T2 < lease), else both
/// defaults, 0.5 and 0.875 of the lease, so that a server sending one odd
/// value cannot make the client renew after it rebinds or rebind after the
/// lease ends. `None` is "not sent" (or zero).
pub fn rfc2131_timers(
    lease: Duration,
    server_t1: Option<Duration>,
    server_t2: Option<Duration>,
) -> (Duration, Duration) {
    let default_t1 = lease / 2;
    let default_t2 = lease * 7 / 8;
    let t1 = server_t1.unwrap_or(default_t1);
    let t2 = server_t2.unwrap_or(default_t2);
    if t1 > Duration::ZERO && t1 < t2 && t2 < lease {
        (t1, t2)
    } else {
        debug!(?t1, ?t2, ?lease, "dhcp: inconsistent T1/T2, using defaults");
        (default_t1, default_t2)
    }
}

/// T1 and T2 of a DHCPv6 IA_NA from the server's wire seconds (RFC 8415
/// section 21.4): zero leaves the time to the client, which takes the
/// recommended 0.5 and 0.8 of the preferred lifetime (of the valid one when
/// the preferred is infinite; never when both are); [`INFINITY`] is never.
/// That T1 is not above T2 is the caller's check: section 21.4 makes such
/// an IA unusable rather than correctable.
pub fn rfc8415_timers(
    preferred: Option<Duration>,
    valid: Option<Duration>,
    server_t1: u32,
    server_t2: u32,
) -> (Option<Duration>, Option<Duration>) {
    let base = preferred.or(valid);
    let t1 = match server_t1 {
        0 => base.map(|p| p / 2),
        t => lifetime(t),
    };
    let t2 = match server_t2 {
        0 => base.map(|p| p.mul_f64(0.8)),
        t => lifetime(t),
    };
    (t1, t2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn wire_seconds_all_ones_is_infinity() {
        assert_eq!(lifetime(0), Some(secs(0)));
        assert_eq!(lifetime(3600), Some(secs(3600)));
        assert_eq!(lifetime(INFINITY - 1), Some(secs(0xffff_fffe)));
        assert_eq!(lifetime(INFINITY), None);
    }

    #[test]
    fn rfc2131_keeps_ordered_server_values() {
        let (l, t1, t2) = (secs(3600), Some(secs(1000)), Some(secs(3000)));
        assert_eq!(rfc2131_timers(l, t1, t2), (secs(1000), secs(3000)));
        // One of them sent: the other defaults, and the pair is still in order.
        assert_eq!(rfc2131_timers(l, t1, None), (secs(1000), secs(3150)));
        assert_eq!(rfc2131_timers(l, None, t2), (secs(1800), secs(3000)));
    }

    #[test]
    fn rfc2131_defaults_are_a_half_and_seven_eighths() {
        assert_eq!(
            rfc2131_timers(secs(3600), None, None),
            (secs(1800), secs(3150))
        );
        assert_eq!(
            rfc2131_timers(secs(9), None, None),
            (Duration::from_millis(4500), Duration::from_millis(7875))
        );
    }

    #[test]
    fn rfc2131_out_of_order_falls_back_to_both_defaults() {
        let l = secs(3600);
        let defaults = (secs(1800), secs(3150));
        for (t1, t2) in [
            (3000, 1000), // T1 after T2
            (1000, 1000), // T1 = T2
            (1000, 3600), // T2 = lease
            (1000, 4000), // T2 after the lease
            (3700, 3800), // both after the lease
            (3200, 0),    // T1 after the default T2
        ] {
            let some = |s: u64| (s != 0).then(|| secs(s));
            assert_eq!(rfc2131_timers(l, some(t1), some(t2)), defaults, "{t1} {t2}");
        }
    }

    #[test]
    fn rfc8415_zero_is_the_clients_choice() {
        let (p, v) = (Some(secs(1000)), Some(secs(2000)));
        assert_eq!(
            rfc8415_timers(p, v, 0, 0),
            (Some(secs(500)), Some(secs(800)))
        );
        // Preferred infinite: from the valid lifetime; both infinite: never.
        assert_eq!(
            rfc8415_timers(None, v, 0, 0),
            (Some(secs(1000)), Some(secs(1600)))
        );
        assert_eq!(rfc8415_timers(None, None, 0, 0), (None, None));
    }

    #[test]
    fn rfc8415_server_values_and_infinity() {
        let (p, v) = (Some(secs(1000)), Some(secs(2000)));
        assert_eq!(
            rfc8415_timers(p, v, 300, 600),
            (Some(secs(300)), Some(secs(600)))
        );
        assert_eq!(rfc8415_timers(p, v, INFINITY, INFINITY), (None, None));
        // One chosen by the server, the other by the client.
        assert_eq!(
            rfc8415_timers(p, v, 300, 0),
            (Some(secs(300)), Some(secs(800)))
        );
    }

    #[test]
    fn dhcpv4_times_count_from_the_start_on_a_virtual_clock() {
        let t0 = Instant::now();
        let start = t0 + secs(7);
        let l = LeaseTimes::dhcpv4(start, Some(secs(3600)), None, None);
        assert_eq!(l.renew_at(), Some(start + secs(1800)));
        assert_eq!(l.rebind_at(), Some(start + secs(3150)));
        assert_eq!(l.expires_at(), Some(start + secs(3600)));
        assert_eq!(l.preferred_until(), l.expires_at(), "no preferred lifetime");
        assert_eq!(l.next_deadline(), l.renew_at());
        assert!(!l.expired(start + secs(3599)));
        assert!(l.expired(start + secs(3600)));
    }

    #[test]
    fn dhcpv4_infinite_lease_has_no_timers() {
        let t0 = Instant::now();
        let l = LeaseTimes::dhcpv4(t0, None, Some(secs(10)), Some(secs(20)));
        assert_eq!((l.t1, l.t2, l.valid, l.preferred), (None, None, None, None));
        assert_eq!(l.next_deadline(), None);
        assert!(!l.expired(t0 + secs(100 * 365 * 86400)));
    }

    #[test]
    fn dhcpv6_times_and_next_deadline() {
        let t0 = Instant::now();
        let l = LeaseTimes::dhcpv6(t0, Some(secs(1000)), Some(secs(2000)), 0, 0);
        assert_eq!(l.renew_at(), Some(t0 + secs(500)));
        assert_eq!(l.rebind_at(), Some(t0 + secs(800)));
        assert_eq!(l.preferred_until(), Some(t0 + secs(1000)));
        assert_eq!(l.expires_at(), Some(t0 + secs(2000)));
        assert_eq!(l.next_deadline(), Some(t0 + secs(500)));
        // Never renewed or rebound: the next deadline is the expiry.
        let l = LeaseTimes::dhcpv6(t0, Some(secs(1000)), Some(secs(2000)), INFINITY, INFINITY);
        assert_eq!(l.next_deadline(), Some(t0 + secs(2000)));
        assert!(l.expired(t0 + secs(2000)) && !l.expired(t0 + secs(1999)));
    }
}
