//! What a DHCPv4 client is told before it starts: who it is and which
//! address it would like ([`Config`]), and how patiently it retries
//! ([`Retry`]). Both are plain values so that a shell,
//! a test or a fuzzer can build clients that differ only in them.

use std::net::Ipv4Addr;
use std::time::Duration;

/// Static configuration of one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Hardware address of the interface (chaddr).
    pub chaddr: [u8; 6],
    /// Client identifier, option 61, sent in every message (RELEASE included).
    pub client_id: Vec<u8>,
    /// Hostname, option 12 (and option 81, FQDN, with the E and S flags).
    pub hostname: Option<String>,
    /// Set the BOOTP broadcast flag on DISCOVER and REQUEST.
    pub broadcast_flag: bool,
    /// Asked for (option 50) in the DISCOVER of [`Client::start`]: an
    /// address the client would like but does not claim (the operator's
    /// choice, or the address of a lease released earlier).
    ///
    /// [`Client::start`]: super::Client::start
    pub request_address: Option<Ipv4Addr>,
    /// Retransmission and back-off settings.
    pub retry: Retry,
    /// Which servers' replies are heard (`--dhcp-server`, `--deny-dhcp-server`).
    pub servers: ServerFilter,
}

/// Which DHCP servers the client listens to: replies (OFFER, ACK, NAK) from
/// any other server are ignored as if never received. A second server on
/// the LAN (an ISP box, a forgotten dnsmasq) answers first as often as not.
///
/// A server is judged by its server identifier (option 54) and by the
/// packet's source address when the shell knows it: a denied server is
/// refused on either; with an allow list, option 54 must be listed and the
/// source must be too, or be the relay the reply came through (giaddr, RFC
/// 2131 §4.1: a relay, not the server, sends the reply on the LAN).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerFilter {
    /// Empty: every server not denied.
    pub allow: Vec<Ipv4Addr>,
    pub deny: Vec<Ipv4Addr>,
}

impl ServerFilter {
    /// Whether a reply with server identifier `server_id`, from `source`
    /// (`None`: not known), relayed by `giaddr` (0.0.0.0: not relayed) is heard.
    pub fn admits(
        &self,
        server_id: Option<Ipv4Addr>,
        source: Option<Ipv4Addr>,
        giaddr: Ipv4Addr,
    ) -> bool {
        let denied = |a: Option<Ipv4Addr>| a.is_some_and(|a| self.deny.contains(&a));
        if denied(server_id) || denied(source) {
            return false;
        }
        if self.allow.is_empty() {
            return true;
        }
        let allowed = server_id.is_some_and(|a| self.allow.contains(&a));
        let source_ok = source
            .is_none_or(|s| self.allow.contains(&s) || (!giaddr.is_unspecified() && s == giaddr));
        allowed && source_ok
    }
}

/// Retransmission and back-off settings.
///
/// [`Retry::default`] follows RFC 2131 where it gives numbers and keeps the
/// agent's long-standing choices where it leaves them open (how often to
/// repeat a REQUEST, how to back off from a server that NAKs everything).
/// They are a value rather than constants so that a deployment (or a test on
/// a virtual clock) can tighten or relax them without touching the state
/// machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Wait before the first retransmission of a DISCOVER or REQUEST; it
    /// doubles with every retransmission (RFC 2131 §4.1).
    pub initial: Duration,
    /// Cap on that doubling (RFC 2131 §4.1), and on the delay after
    /// repeated NAKs.
    pub max: Duration,
    /// Every DISCOVER/REQUEST delay is moved by a uniformly random amount up
    /// to this, either way (RFC 2131 §4.1), so clients that start together do
    /// not stay in step. Millisecond resolution.
    pub jitter: Duration,
    /// Retransmissions of a SELECTING REQUEST before starting over with
    /// DISCOVER (the offer may have gone to another client meanwhile).
    pub request_retransmits: u32,
    /// Retransmissions of an INIT-REBOOT REQUEST before falling back to
    /// DISCOVER (with the old address as a hint): a server that does not know
    /// the lease stays silent instead of NAKing.
    pub reboot_retransmits: u32,
    /// Shortest time between two renew/rebind retransmissions (RFC 2131
    /// §4.4.5); short leases use an eighth of the lease when that is less.
    pub renew_floor: Duration,
    /// Wait after a DECLINE before discovering again (RFC 2131 §3.1.5 asks
    /// for at least 10 s, so a conflicting address is not offered again at
    /// once).
    pub decline_delay: Duration,
    /// Consecutive NAKs answered by an immediate DISCOVER; after that the
    /// DISCOVER is delayed, doubling up to [`Retry::max`], so a server that
    /// NAKs everything cannot make the client spin.
    pub nak_free_restarts: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            initial: Duration::from_secs(4),
            max: Duration::from_secs(64),
            jitter: Duration::from_secs(1),
            request_retransmits: 4,
            reboot_retransmits: 2,
            renew_floor: Duration::from_secs(60),
            decline_delay: Duration::from_secs(10),
            nak_free_restarts: 3,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_filter() {
        let a = Ipv4Addr::new(192, 0, 2, 1);
        let b = Ipv4Addr::new(192, 0, 2, 2);
        let relay = Ipv4Addr::new(192, 0, 2, 254);
        let none = Ipv4Addr::UNSPECIFIED;
        let any = ServerFilter::default();
        assert!(any.admits(Some(a), Some(a), none));
        assert!(any.admits(None, None, none));
        let allow = ServerFilter {
            allow: vec![a],
            deny: vec![],
        };
        assert!(allow.admits(Some(a), Some(a), none));
        assert!(allow.admits(Some(a), None, none));
        assert!(!allow.admits(Some(b), Some(b), none));
        assert!(!allow.admits(None, Some(a), none), "no option 54");
        // Option 54 forged by another host: its source gives it away.
        assert!(!allow.admits(Some(a), Some(b), none));
        // Relayed: the source is the relay named in giaddr.
        assert!(allow.admits(Some(a), Some(relay), relay));
        assert!(!allow.admits(Some(a), Some(b), relay));
        let deny = ServerFilter {
            allow: vec![],
            deny: vec![b],
        };
        assert!(deny.admits(Some(a), Some(a), none));
        assert!(!deny.admits(Some(b), Some(b), none));
        assert!(!deny.admits(Some(a), Some(b), none), "denied source");
        assert!(!deny.admits(Some(b), None, none));
        assert!(deny.admits(None, None, none));
    }
}
