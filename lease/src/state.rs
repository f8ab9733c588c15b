//! Where a client is in its exchange with the servers, as the agent reports
//! it: one vocabulary for both families, in RFC 2131's words (section 4.4,
//! figure 5), so that the agent's core and its status need one state type
//! and one mapping to the wire (the agent's, not this crate's: the wire's
//! `waiting-for-plan` is no client state).

/// A client's state. The DHCPv6 client reports its own exchanges as their
/// DHCPv4 counterparts (noted per variant); the client's internal phases
/// say more, this says what an operator needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Not started, or waiting to begin acquiring a lease (after a NAK or
    /// a DECLINE).
    Init,
    /// DISCOVER sent, collecting OFFERs (DHCPv6: Solicit, Advertises).
    Selecting,
    /// REQUEST for an offer sent (DHCPv6: Request, or an
    /// Information-request of a stateless client).
    Requesting,
    /// Claiming the lease held before a restart (DHCPv4: the REQUEST of
    /// INIT-REBOOT, RFC 2131 section 3.2; DHCPv6: the Rebind of a stored
    /// lease). The client sends at once, so it is never in RFC 2131's
    /// INIT-REBOOT itself.
    Rebooting,
    /// A lease is in force (DHCPv6 stateless: the information is).
    Bound,
    /// Past T1, extending the lease with its server.
    Renewing,
    /// Past T2, extending the lease with any server.
    Rebinding,
    /// Released or stopped; nothing more happens (DHCPv6: also while its
    /// Release is retransmitted, the address being gone already).
    Stopped,
}

impl State {
    /// A lease is in force in this state (its address may be used).
    pub fn has_lease(self) -> bool {
        matches!(self, State::Bound | State::Renewing | State::Rebinding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_in_force_only_while_bound_renewing_or_rebinding() {
        for s in [State::Bound, State::Renewing, State::Rebinding] {
            assert!(s.has_lease(), "{s:?}");
        }
        for s in [
            State::Init,
            State::Selecting,
            State::Requesting,
            State::Rebooting,
            State::Stopped,
        ] {
            assert!(!s.has_lease(), "{s:?}");
        }
    }
}
