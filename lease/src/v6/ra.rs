//! Router advertisements (RFC 4861) and stateless address
//! autoconfiguration (RFC 4862), without I/O.
//!
//! - [`parse`]: an ICMPv6 Router Advertisement (the ICMPv6 message, as a raw
//!   ICMPv6 socket returns it) into a [`RouterAdvertisement`]; total, fuzzed.
//! - [`Tracker`]: what the advertisements say over time: the M and O flags,
//!   the default routers and their lifetimes, the SLAAC addresses (with the
//!   two-hour rule of RFC 4862 section 5.5.3) and when each ends.
//! - [`slaac_address`]: prefix plus the modified EUI-64 interface
//!   identifier of the (derived, hence stable) MAC (RFC 4291 appendix A).
//! - [`router_solicitation`]: the Router Solicitation the shell sends at
//!   start so it does not wait for the next periodic advertisement.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

use tracing::{debug, info};

/// ICMPv6 types.
pub const ROUTER_SOLICITATION: u8 = 133;
pub const ROUTER_ADVERTISEMENT: u8 = 134;

/// RFC 4861 section 10: Router Solicitations at start, and their interval.
pub const MAX_RTR_SOLICITATIONS: u32 = 3;
pub const RTR_SOLICITATION_INTERVAL: Duration = Duration::from_secs(4);

/// A solicitation the shell could not send (no usable source address while
/// the link-local one is still tentative) is tried again this soon, this
/// many times at most, without counting against MAX_RTR_SOLICITATIONS.
pub const SOLICITATION_RETRY: Duration = Duration::from_millis(250);
const MAX_SEND_FAILURES: u32 = 40;

/// RFC 4862 section 5.5.3 (e).
const TWO_HOURS: Duration = Duration::from_secs(2 * 3600);

/// Any host on the LAN can send advertisements (a link-local source and hop
/// limit 255 are all it takes), each from a source of its own, so what they
/// make the router hold is capped, as a Linux host caps it. SLAAC addresses
/// at once: the kernel's `net.ipv6.conf.*.max_addresses` default; each is
/// an address on the interface, a route, and the relay's sockets.
pub const MAX_ADDRESSES: usize = 16;
/// Default routers at once: each is a route in two tables. The kernel has
/// no such knob; the same figure as the addresses, far above any real LAN.
pub const MAX_ROUTERS: usize = 16;
/// Prefixes one router may have us hold (on-link or SLAAC), and routers
/// whose prefixes we hold: together they bound the on-link table.
pub const MAX_PREFIXES_PER_ROUTER: usize = 16;

/// Lifetimes that end within this of the ones last reported are no news:
/// the kernel counts address lifetimes in whole seconds, so an advertisement
/// repeated within a second (a flood of the same one) would change nothing.
const SAME_LIFETIME: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixInfo {
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    /// L: the prefix is on-link.
    pub on_link: bool,
    /// A: addresses may be formed from it (SLAAC).
    pub autonomous: bool,
    /// Seconds; `u32::MAX` is infinity.
    pub valid: u32,
    pub preferred: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterAdvertisement {
    /// M: addresses from DHCPv6.
    pub managed: bool,
    /// O: other configuration from DHCPv6.
    pub other: bool,
    /// Seconds this router is a default router (0: it is not).
    pub router_lifetime: u16,
    pub prefixes: Vec<PrefixInfo>,
    pub mtu: Option<u32>,
    /// Recursive DNS servers (RFC 8106) with their lifetime in seconds.
    pub dns: Vec<(Ipv6Addr, u32)>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RaError {
    #[error("not a router advertisement (type {0})")]
    NotRa(u8),
    #[error("ICMP code {0} is not 0")]
    Code(u8),
    #[error("shorter than a router advertisement")]
    Short,
    #[error("an option of length zero")]
    ZeroLengthOption,
    #[error("an option runs past the end")]
    TruncatedOption,
    #[error("hop limit {0} is not 255: not from this link")]
    HopLimit(u8),
    #[error("source {0} is not link-local")]
    Source(Ipv6Addr),
}

/// RFC 4861 section 6.1.2: only advertisements from a link-local source
/// with hop limit 255 come from a router on this link.
pub fn check_origin(source: Ipv6Addr, hop_limit: u8) -> Result<(), RaError> {
    if hop_limit != 255 {
        return Err(RaError::HopLimit(hop_limit));
    }
    if source.segments()[0] & 0xffc0 != 0xfe80 {
        return Err(RaError::Source(source));
    }
    Ok(())
}

/// Whether `a` can be an address of ours on the LAN (a SLAAC address, a
/// DHCPv6 IA address): not multicast, not link-local (the interface has
/// one of its own), and not in `::/8` (unspecified, loopback, the
/// IPv4-embedding forms: reserved, never assigned on a LAN). The kernel
/// refuses some of these only after they were recorded, and the firewall
/// refuses them all: checked where they enter, one bad advertisement or
/// reply changes nothing.
pub fn usable_address(a: Ipv6Addr) -> bool {
    !(a.is_multicast() || a.is_unicast_link_local() || a.segments()[0] & 0xff00 == 0)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Parses an ICMPv6 Router Advertisement (the kernel has checked the ICMPv6
/// checksum of a raw ICMPv6 socket). Section 6.1.2's validity rules apply:
/// an option of length zero, or one that runs past the end, voids the whole
/// message. Unknown options are skipped.
pub fn parse(icmp: &[u8]) -> Result<RouterAdvertisement, RaError> {
    let head = icmp.get(..16).ok_or(RaError::Short)?;
    if head[0] != ROUTER_ADVERTISEMENT {
        return Err(RaError::NotRa(head[0]));
    }
    if head[1] != 0 {
        return Err(RaError::Code(head[1]));
    }
    let mut ra = RouterAdvertisement {
        managed: head[5] & 0x80 != 0,
        other: head[5] & 0x40 != 0,
        router_lifetime: u16::from_be_bytes([head[6], head[7]]),
        prefixes: Vec::new(),
        mtu: None,
        dns: Vec::new(),
    };
    let mut rest = &icmp[16..];
    while !rest.is_empty() {
        let len = usize::from(*rest.get(1).ok_or(RaError::TruncatedOption)?) * 8;
        if len == 0 {
            return Err(RaError::ZeroLengthOption);
        }
        let opt = rest.get(..len).ok_or(RaError::TruncatedOption)?;
        match opt[0] {
            // Prefix Information (section 4.6.2): exactly 32 bytes.
            3 if len == 32 => {
                let prefix_len = opt[2];
                let mut p = [0u8; 16];
                p.copy_from_slice(&opt[16..32]);
                if prefix_len <= 128 {
                    ra.prefixes.push(PrefixInfo {
                        prefix: mask(Ipv6Addr::from(p), prefix_len),
                        prefix_len,
                        on_link: opt[3] & 0x80 != 0,
                        autonomous: opt[3] & 0x40 != 0,
                        valid: be32(&opt[4..8]),
                        preferred: be32(&opt[8..12]),
                    });
                }
            }
            // MTU (section 4.6.4).
            5 if len == 8 => ra.mtu = Some(be32(&opt[4..8])),
            // RDNSS (RFC 8106 section 5.1): lifetime, then addresses.
            25 if len >= 24 => {
                let lifetime = be32(&opt[4..8]);
                for a in opt[8..].chunks_exact(16) {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(a);
                    ra.dns.push((Ipv6Addr::from(b), lifetime));
                }
            }
            _ => {}
        }
        rest = &rest[len..];
    }
    Ok(ra)
}

/// The first `len` bits of `a`.
pub fn mask(a: Ipv6Addr, len: u8) -> Ipv6Addr {
    let bits = u128::from(a);
    let m = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    };
    Ipv6Addr::from(bits & m)
}

/// The modified EUI-64 interface identifier of a MAC (RFC 4291 appendix
/// A): ff:fe in the middle, universal/local bit flipped.
pub fn eui64(mac: [u8; 6]) -> [u8; 8] {
    [
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]
}

/// A SLAAC address: the /64 prefix and the MAC's EUI-64 identifier. Stable
/// because the MAC is derived from the service's name (RFC 7217's
/// privacy-stable identifiers would hide nothing a derived MAC shows).
pub fn slaac_address(prefix: Ipv6Addr, mac: [u8; 6]) -> Ipv6Addr {
    let mut o = prefix.octets();
    o[8..].copy_from_slice(&eui64(mac));
    Ipv6Addr::from(o)
}

/// The link-local address the kernel gives an interface with this MAC
/// (fe80::/64 and the EUI-64 identifier).
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    slaac_address(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), mac)
}

/// A Router Solicitation (RFC 4861 section 4.1) with the source link-layer
/// address option; the kernel fills in the ICMPv6 checksum.
pub fn router_solicitation(mac: [u8; 6]) -> Vec<u8> {
    let mut p = vec![ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0, 1, 1];
    p.extend_from_slice(&mac);
    p
}

/// What changed, for the shell to put in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RaEvent {
    /// The M/O flags of the advertisements changed (the first one too).
    Flags { managed: bool, other: bool },
    /// A SLAAC address to add or whose lifetimes to update (`None`: infinite).
    Address {
        address: Ipv6Addr,
        prefix_len: u8,
        preferred: Option<Duration>,
        valid: Option<Duration>,
    },
    /// A SLAAC address's valid lifetime ended.
    AddressGone { address: Ipv6Addr, prefix_len: u8 },
    /// A default router, new or with a new lifetime.
    Router {
        address: Ipv6Addr,
        lifetime: Duration,
    },
    /// A default router's lifetime ended (or it sent lifetime zero).
    RouterGone { address: Ipv6Addr },
}

#[derive(Clone, Debug)]
struct Slaac {
    address: Ipv6Addr,
    valid_until: Option<Instant>,
    /// The lifetimes last reported (`RaEvent::Address`), so that an
    /// advertisement that changes nothing reports nothing.
    reported: (Option<Instant>, Option<Instant>),
}

/// Whether two deadlines are the same to the kernel (see [`SAME_LIFETIME`]).
fn same_deadline(a: Option<Instant>, b: Option<Instant>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.max(b) - a.min(b) < SAME_LIFETIME,
        _ => false,
    }
}

/// Follows the advertisements of the link. See the module documentation.
#[derive(Debug)]
pub struct Tracker {
    mac: [u8; 6],
    flags: Option<(bool, bool)>,
    routers: BTreeMap<Ipv6Addr, Instant>,
    addresses: BTreeMap<(Ipv6Addr, u8), Slaac>,
    /// On-link prefixes (L flag), for the shell's choice of prefix length of
    /// a DHCPv6 address.
    on_link: BTreeMap<(Ipv6Addr, u8), Option<Instant>>,
    /// The router whose advertisement first brought each prefix held in
    /// `addresses` or `on_link` (for [`MAX_PREFIXES_PER_ROUTER`]).
    advertised_by: BTreeMap<(Ipv6Addr, u8), Ipv6Addr>,
    solicitations: u32,
    send_failures: u32,
    next_solicitation: Option<Instant>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<RaEvent>,
}

fn until(now: Instant, secs: u32) -> Option<Instant> {
    (secs != u32::MAX).then(|| now + Duration::from_secs(u64::from(secs)))
}

impl Tracker {
    /// A tracker that sends its first Router Solicitation after `delay`
    /// (RFC 4861 section 6.3.7: a random delay up to one second).
    pub fn new(mac: [u8; 6], now: Instant, delay: Duration) -> Self {
        Tracker {
            mac,
            flags: None,
            routers: BTreeMap::new(),
            addresses: BTreeMap::new(),
            on_link: BTreeMap::new(),
            advertised_by: BTreeMap::new(),
            solicitations: 0,
            send_failures: 0,
            next_solicitation: Some(now + delay),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The M and O flags of the last advertisement, once one arrived.
    pub fn flags(&self) -> Option<(bool, bool)> {
        self.flags
    }

    /// The on-link prefix (L flag) that holds `a`, if one was advertised.
    pub fn on_link_prefix(&self, a: Ipv6Addr) -> Option<u8> {
        self.on_link
            .keys()
            .filter(|(p, len)| mask(a, *len) == *p)
            .map(|(_, len)| *len)
            .max()
    }

    pub fn routers(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.routers.keys().copied()
    }

    /// An advertisement from `source` (checked with [`check_origin`] by the
    /// caller or here) arrived.
    pub fn handle_ra(
        &mut self,
        now: Instant,
        source: Ipv6Addr,
        hop_limit: u8,
        icmp: &[u8],
    ) -> Result<(), RaError> {
        check_origin(source, hop_limit)?;
        let ra = parse(icmp)?;
        // An advertisement answers the solicitations (section 6.3.7).
        self.next_solicitation = None;
        if self.flags != Some((ra.managed, ra.other)) {
            self.flags = Some((ra.managed, ra.other));
            info!(managed = ra.managed, other = ra.other, "ra: flags");
            self.events.push_back(RaEvent::Flags {
                managed: ra.managed,
                other: ra.other,
            });
        }
        if ra.router_lifetime == 0 {
            if self.routers.remove(&source).is_some() {
                self.events
                    .push_back(RaEvent::RouterGone { address: source });
            }
        } else {
            let lifetime = Duration::from_secs(u64::from(ra.router_lifetime));
            // A known router's new lifetime is the tracker's to keep: the
            // route it reported stays until the router goes.
            if let Some(until) = self.routers.get_mut(&source) {
                *until = now + lifetime;
            } else if self.routers.len() >= MAX_ROUTERS {
                debug!(router = %source, "ra: {MAX_ROUTERS} default routers held, one more ignored");
            } else {
                self.routers.insert(source, now + lifetime);
                self.events.push_back(RaEvent::Router {
                    address: source,
                    lifetime,
                });
            }
        }
        for p in &ra.prefixes {
            self.prefix(now, source, p);
        }
        Ok(())
    }

    /// Whether a prefix not held yet may be, advertised by `source` (see
    /// [`MAX_PREFIXES_PER_ROUTER`]).
    fn admits_prefix(&self, source: Ipv6Addr) -> bool {
        let mine = self
            .advertised_by
            .values()
            .filter(|r| **r == source)
            .count();
        if mine > 0 {
            return mine < MAX_PREFIXES_PER_ROUTER;
        }
        let routers: std::collections::BTreeSet<&Ipv6Addr> = self.advertised_by.values().collect();
        routers.len() < MAX_ROUTERS
    }

    /// Forgets who advertised prefixes that are no longer held.
    fn forget_unheld_prefixes(&mut self) {
        let (addresses, on_link) = (&self.addresses, &self.on_link);
        self.advertised_by
            .retain(|k, _| addresses.contains_key(k) || on_link.contains_key(k));
    }

    /// RFC 4862 section 5.5.3 for one Prefix Information option of
    /// `source`'s advertisement.
    fn prefix(&mut self, now: Instant, source: Ipv6Addr, p: &PrefixInfo) {
        let link_local = p.prefix.segments()[0] & 0xffc0 == 0xfe80;
        let key = (p.prefix, p.prefix_len);
        // A prefix whose addresses are no unicast of ours (multicast,
        // loopback, ...) is neither on-link nor a source of addresses.
        if !link_local && !usable_address(slaac_address(p.prefix, self.mac)) {
            debug!(prefix = %p.prefix, len = p.prefix_len, "ra: prefix of no usable address ignored");
            return;
        }
        let held = self.addresses.contains_key(&key) || self.on_link.contains_key(&key);
        if !held && p.valid != 0 && !link_local && !self.admits_prefix(source) {
            debug!(prefix = %p.prefix, router = %source, "ra: prefix over the caps ignored");
            return;
        }
        if !held && p.valid != 0 && !link_local {
            self.advertised_by.insert(key, source);
        }
        if p.on_link && !link_local {
            if p.valid == 0 {
                self.on_link.remove(&key);
            } else {
                self.on_link.insert(key, until(now, p.valid));
            }
        }
        self.slaac(now, p);
        self.forget_unheld_prefixes();
    }

    /// RFC 4862 section 5.5.3 (a)-(e) for an admitted prefix.
    fn slaac(&mut self, now: Instant, p: &PrefixInfo) {
        let link_local = p.prefix.segments()[0] & 0xffc0 == 0xfe80;
        // (a)-(c): A flag, not link-local, preferred <= valid; and (d): an
        // interface identifier of 64 bits needs a /64.
        if !p.autonomous || link_local || p.preferred > p.valid || p.prefix_len != 64 {
            return;
        }
        let key = (p.prefix, p.prefix_len);
        let preferred_until = until(now, p.preferred);
        let received = until(now, p.valid);
        let valid_until = match self.addresses.get(&key) {
            None if p.valid == 0 => return,
            None if self.addresses.len() >= MAX_ADDRESSES => {
                debug!(prefix = %p.prefix, "ra: {MAX_ADDRESSES} SLAAC addresses held, one more ignored");
                return;
            }
            None => received,
            // (e): the two-hour rule, so a forged advertisement cannot end
            // an address at once.
            Some(s) => {
                let remaining = s.valid_until.map(|t| t.saturating_duration_since(now));
                let valid = Duration::from_secs(u64::from(p.valid));
                if p.valid == u32::MAX || valid > TWO_HOURS || remaining.is_none_or(|r| valid > r) {
                    received
                } else if remaining.is_some_and(|r| r <= TWO_HOURS) {
                    s.valid_until
                } else {
                    Some(now + TWO_HOURS)
                }
            }
        };
        let address = slaac_address(p.prefix, self.mac);
        let unchanged = self.addresses.get(&key).is_some_and(|s| {
            same_deadline(s.reported.0, preferred_until) && same_deadline(s.reported.1, valid_until)
        });
        let reported = match self.addresses.get(&key) {
            Some(s) if unchanged => s.reported,
            _ => (preferred_until, valid_until),
        };
        self.addresses.insert(
            key,
            Slaac {
                address,
                valid_until,
                reported,
            },
        );
        // No news, no event: the core would only install it again.
        if unchanged {
            return;
        }
        debug!(%address, ?valid_until, "ra: SLAAC address");
        self.events.push_back(RaEvent::Address {
            address,
            prefix_len: p.prefix_len,
            preferred: preferred_until.map(|t| t.saturating_duration_since(now)),
            valid: valid_until.map(|t| t.saturating_duration_since(now)),
        });
    }

    /// The shell could not send the last Router Solicitation (e.g. no source
    /// address before DAD of the link-local address is done): try again
    /// shortly, unless an advertisement came meanwhile.
    pub fn solicitation_failed(&mut self, now: Instant) {
        if self.flags.is_some() || self.send_failures >= MAX_SEND_FAILURES {
            return;
        }
        self.send_failures += 1;
        self.solicitations = self.solicitations.saturating_sub(1);
        self.next_solicitation = Some(now + SOLICITATION_RETRY);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_solicitation.is_some_and(|t| now >= t) {
            self.solicitations += 1;
            self.transmits.push_back(router_solicitation(self.mac));
            self.next_solicitation = (self.solicitations < MAX_RTR_SOLICITATIONS)
                .then(|| now + RTR_SOLICITATION_INTERVAL);
        }
        let gone: Vec<Ipv6Addr> = self
            .routers
            .iter()
            .filter(|(_, t)| now >= **t)
            .map(|(a, _)| *a)
            .collect();
        for address in gone {
            self.routers.remove(&address);
            info!(%address, "ra: default router expired");
            self.events.push_back(RaEvent::RouterGone { address });
        }
        let gone: Vec<(Ipv6Addr, u8)> = self
            .addresses
            .iter()
            .filter(|(_, s)| s.valid_until.is_some_and(|t| now >= t))
            .map(|(k, _)| *k)
            .collect();
        for key in gone {
            if let Some(s) = self.addresses.remove(&key) {
                info!(address = %s.address, "ra: SLAAC address expired");
                self.events.push_back(RaEvent::AddressGone {
                    address: s.address,
                    prefix_len: key.1,
                });
            }
        }
        self.on_link.retain(|_, t| t.is_none_or(|t| now < t));
        self.forget_unheld_prefixes();
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<RaEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let addresses = self.addresses.values().filter_map(|s| s.valid_until);
        let on_link = self.on_link.values().filter_map(|t| *t);
        self.routers
            .values()
            .copied()
            .chain(addresses)
            .chain(on_link)
            .chain(self.next_solicitation)
            .min()
    }

    /// The SLAAC addresses in force (address, prefix length).
    pub fn addresses(&self) -> impl Iterator<Item = (Ipv6Addr, u8)> + '_ {
        self.addresses.iter().map(|((_, len), s)| (s.address, *len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x42, 0xc0, 0x00, 0x02, 0x39];
    const ROUTER: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
    const PREFIX: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0);

    /// An RA: flags, router lifetime, and prefixes (prefix, len, L, A, valid, preferred).
    pub(crate) fn ra(
        m: bool,
        o: bool,
        lifetime: u16,
        prefixes: &[(Ipv6Addr, u8, bool, bool, u32, u32)],
    ) -> Vec<u8> {
        let mut p = vec![134, 0, 0, 0, 64, (u8::from(m) << 7) | (u8::from(o) << 6)];
        p.extend_from_slice(&lifetime.to_be_bytes());
        p.extend_from_slice(&[0; 8]);
        for (prefix, len, l, a, valid, preferred) in prefixes {
            p.extend_from_slice(&[3, 4, *len, (u8::from(*l) << 7) | (u8::from(*a) << 6)]);
            p.extend_from_slice(&valid.to_be_bytes());
            p.extend_from_slice(&preferred.to_be_bytes());
            p.extend_from_slice(&[0; 4]);
            p.extend_from_slice(&prefix.octets());
        }
        p
    }

    fn events(t: &mut Tracker) -> Vec<RaEvent> {
        std::iter::from_fn(|| t.poll_event()).collect()
    }

    #[test]
    fn eui64_of_the_derived_mac() {
        assert_eq!(
            slaac_address(PREFIX, MAC),
            "2001:db8:1::42:c0ff:fe00:239".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            link_local(MAC),
            "fe80::42:c0ff:fe00:239".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn parses_flags_prefixes_and_options() {
        let mut p = ra(true, false, 1800, &[(PREFIX, 64, true, true, 86400, 14400)]);
        p.extend_from_slice(&[5, 1, 0, 0, 0, 0, 0x05, 0xdc]);
        p.extend_from_slice(&[25, 3, 0, 0, 0, 0, 0x0e, 0x10]);
        p.extend_from_slice(&Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 53).octets());
        let r = parse(&p).unwrap();
        assert!(r.managed && !r.other);
        assert_eq!(r.router_lifetime, 1800);
        assert_eq!(r.mtu, Some(1500));
        assert_eq!(
            r.dns,
            vec![(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 53), 3600)]
        );
        assert_eq!(r.prefixes[0].prefix_len, 64);
        assert!(r.prefixes[0].on_link && r.prefixes[0].autonomous);
    }

    #[test]
    fn refuses_what_section_6_1_2_refuses() {
        let good = ra(false, false, 0, &[]);
        assert!(parse(&good).is_ok());
        assert_eq!(parse(&good[..10]), Err(RaError::Short));
        let mut zero = good.clone();
        zero.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(parse(&zero), Err(RaError::ZeroLengthOption));
        let mut long = good.clone();
        long.extend_from_slice(&[1, 2, 0, 0]);
        assert_eq!(parse(&long), Err(RaError::TruncatedOption));
        let mut code = good.clone();
        code[1] = 1;
        assert_eq!(parse(&code), Err(RaError::Code(1)));
        assert_eq!(check_origin(ROUTER, 64), Err(RaError::HopLimit(64)));
        assert!(check_origin(PREFIX, 255).is_err());
    }

    #[test]
    fn slaac_address_router_and_expiry() {
        let t0 = Instant::now();
        let mut t = Tracker::new(MAC, t0, Duration::ZERO);
        t.handle_timeout(t0);
        assert_eq!(t.poll_transmit(), Some(router_solicitation(MAC)));
        let p = ra(false, true, 600, &[(PREFIX, 64, true, true, 120, 60)]);
        t.handle_ra(t0, ROUTER, 255, &p).unwrap();
        let addr = slaac_address(PREFIX, MAC);
        assert_eq!(
            events(&mut t),
            vec![
                RaEvent::Flags {
                    managed: false,
                    other: true
                },
                RaEvent::Router {
                    address: ROUTER,
                    lifetime: Duration::from_secs(600)
                },
                RaEvent::Address {
                    address: addr,
                    prefix_len: 64,
                    preferred: Some(Duration::from_secs(60)),
                    valid: Some(Duration::from_secs(120)),
                },
            ]
        );
        // The advertisement stopped the solicitations.
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(120)));
        assert_eq!(t.on_link_prefix(addr), Some(64));
        t.handle_timeout(t0 + Duration::from_secs(120));
        assert_eq!(
            events(&mut t),
            vec![RaEvent::AddressGone {
                address: addr,
                prefix_len: 64
            }]
        );
        t.handle_timeout(t0 + Duration::from_secs(600));
        assert_eq!(
            events(&mut t),
            vec![RaEvent::RouterGone { address: ROUTER }]
        );
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn solicits_three_times_four_seconds_apart() {
        let t0 = Instant::now();
        let mut t = Tracker::new(MAC, t0, Duration::from_millis(300));
        let mut sent = Vec::new();
        while let Some(at) = t.poll_timeout() {
            t.handle_timeout(at);
            while t.poll_transmit().is_some() {
                sent.push(at - t0);
            }
        }
        assert_eq!(
            sent,
            vec![
                Duration::from_millis(300),
                Duration::from_millis(4300),
                Duration::from_millis(8300)
            ]
        );
    }

    #[test]
    fn a_failed_solicitation_is_retried_soon_and_not_counted() {
        let t0 = Instant::now();
        let mut t = Tracker::new(MAC, t0, Duration::ZERO);
        t.handle_timeout(t0);
        assert!(t.poll_transmit().is_some());
        t.solicitation_failed(t0);
        assert_eq!(t.poll_timeout(), Some(t0 + SOLICITATION_RETRY));
        let mut sent = 0;
        while let Some(at) = t.poll_timeout() {
            t.handle_timeout(at);
            sent += std::iter::from_fn(|| t.poll_transmit()).count();
        }
        assert_eq!(sent, 3, "still three that went out");
        // Bounded: a link that never gets a source stops retrying.
        let mut t = Tracker::new(MAC, t0, Duration::ZERO);
        let mut now = t0;
        for _ in 0..100 {
            let Some(at) = t.poll_timeout() else { break };
            now = at;
            t.handle_timeout(now);
            if t.poll_transmit().is_some() {
                t.solicitation_failed(now);
            }
        }
        assert_eq!(t.poll_timeout(), None);
        assert!(now - t0 < Duration::from_secs(30));
    }

    #[test]
    fn two_hour_rule_keeps_a_forged_short_lifetime_out() {
        let t0 = Instant::now();
        let mut t = Tracker::new(MAC, t0, Duration::from_secs(3600));
        t.handle_ra(
            t0,
            ROUTER,
            255,
            &ra(false, false, 0, &[(PREFIX, 64, true, true, 86400, 3600)]),
        )
        .unwrap();
        events(&mut t);
        // Valid lifetime 10 s against a day left: cut to two hours, not 10 s.
        t.handle_ra(
            t0,
            ROUTER,
            255,
            &ra(false, false, 0, &[(PREFIX, 64, true, true, 10, 5)]),
        )
        .unwrap();
        let ev = events(&mut t);
        assert!(
            ev.contains(&RaEvent::Address {
                address: slaac_address(PREFIX, MAC),
                prefix_len: 64,
                preferred: Some(Duration::from_secs(5)),
                valid: Some(TWO_HOURS),
            }),
            "{ev:?}"
        );
        // A longer lifetime is taken as it is.
        t.handle_ra(
            t0,
            ROUTER,
            255,
            &ra(false, false, 0, &[(PREFIX, 64, true, true, 90000, 3600)]),
        )
        .unwrap();
        assert!(events(&mut t).iter().any(|e| matches!(e, RaEvent::Address { valid: Some(v), .. } if *v == Duration::from_secs(90000))));
    }

    #[test]
    fn no_slaac_without_a_flag_or_off_link_or_not_64() {
        let t0 = Instant::now();
        let mut t = Tracker::new(MAC, t0, Duration::from_secs(3600));
        let p = ra(
            true,
            false,
            0,
            &[
                (PREFIX, 64, true, false, 100, 50),
                (
                    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0),
                    56,
                    true,
                    true,
                    100,
                    50,
                ),
                (
                    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
                    64,
                    true,
                    true,
                    100,
                    50,
                ),
                (
                    Ipv6Addr::new(0x2001, 0xdb8, 3, 0, 0, 0, 0, 0),
                    64,
                    true,
                    true,
                    50,
                    100,
                ),
            ],
        );
        t.handle_ra(t0, ROUTER, 255, &p).unwrap();
        assert_eq!(
            events(&mut t),
            vec![RaEvent::Flags {
                managed: true,
                other: false
            }]
        );
        assert_eq!(t.addresses().count(), 0);
        // The on-link /64 still tells a DHCPv6 address its prefix length.
        assert_eq!(
            t.on_link_prefix(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 9)),
            Some(64)
        );
    }

    #[test]
    fn foreign_or_garbage_changes_nothing() {
        let t0 = Instant::now();
        let mut t = Tracker::new(MAC, t0, Duration::from_secs(3600));
        let p = ra(false, false, 600, &[(PREFIX, 64, true, true, 100, 50)]);
        assert!(t.handle_ra(t0, ROUTER, 64, &p).is_err());
        assert!(t.handle_ra(t0, PREFIX, 255, &p).is_err());
        assert!(t.handle_ra(t0, ROUTER, 255, &p[..20]).is_err());
        assert!(t.handle_ra(t0, ROUTER, 255, &[0xff; 64]).is_err());
        assert!(events(&mut t).is_empty());
        assert_eq!(t.flags(), None);
    }

    /// Issue 21: 300 advertisements from 300 sources, each with a prefix of
    /// its own, leave the kernel's 16 addresses, 16 routers and a bounded
    /// on-link table, as a Linux host would.
    #[test]
    fn a_flood_of_routers_and_prefixes_is_capped() {
        let t0 = Instant::now();
        let mut t = Tracker::new(MAC, t0, Duration::from_secs(3600));
        for i in 0..300u16 {
            let src = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 1, i + 1);
            let prefix = Ipv6Addr::new(0x2001, 0xdb8, 0x100 + i, 0, 0, 0, 0, 0);
            let p = ra(false, false, 1800, &[(prefix, 64, true, true, 3600, 1800)]);
            t.handle_ra(t0, src, 255, &p).unwrap();
        }
        let ev = events(&mut t);
        let count = |f: fn(&RaEvent) -> bool| ev.iter().filter(|e| f(e)).count();
        assert_eq!(t.addresses().count(), MAX_ADDRESSES);
        assert_eq!(t.routers().count(), MAX_ROUTERS);
        assert_eq!(
            count(|e| matches!(e, RaEvent::Address { .. })),
            MAX_ADDRESSES
        );
        assert_eq!(count(|e| matches!(e, RaEvent::Router { .. })), MAX_ROUTERS);
        assert!(t.on_link.len() <= MAX_ROUTERS * MAX_PREFIXES_PER_ROUTER);
        // One router with many prefixes holds at most its share.
        let mut t = Tracker::new(MAC, t0, Duration::from_secs(3600));
        for chunk in 0..10u16 {
            let prefixes: Vec<_> = (0..40u16)
                .map(|i| {
                    let p = Ipv6Addr::new(0x2001, 0xdb8, chunk, i, 0, 0, 0, 0);
                    (p, 64, true, false, 3600, 1800)
                })
                .collect();
            t.handle_ra(t0, ROUTER, 255, &ra(false, false, 0, &prefixes))
                .unwrap();
        }
        assert_eq!(t.on_link.len(), MAX_PREFIXES_PER_ROUTER);
        // Once its prefixes end, it may advertise others.
        t.handle_timeout(t0 + Duration::from_secs(3600));
        assert!(t.on_link.is_empty() && t.advertised_by.is_empty());
    }

    /// An advertisement that changes nothing (the same one again, within
    /// the kernel's second) produces no event; a later one refreshes.
    #[test]
    fn no_news_is_no_event() {
        let t0 = Instant::now();
        let mut t = Tracker::new(MAC, t0, Duration::from_secs(3600));
        let p = ra(true, false, 600, &[(PREFIX, 64, true, true, 120, 60)]);
        t.handle_ra(t0, ROUTER, 255, &p).unwrap();
        assert_eq!(events(&mut t).len(), 3, "flags, router, address");
        for ms in [1, 10, 500, 900] {
            t.handle_ra(t0 + Duration::from_millis(ms), ROUTER, 255, &p)
                .unwrap();
            assert_eq!(events(&mut t), vec![], "at {ms} ms");
        }
        t.handle_ra(t0 + Duration::from_secs(4), ROUTER, 255, &p)
            .unwrap();
        assert_eq!(
            events(&mut t),
            vec![RaEvent::Address {
                address: slaac_address(PREFIX, MAC),
                prefix_len: 64,
                preferred: Some(Duration::from_secs(60)),
                valid: Some(Duration::from_secs(120)),
            }]
        );
        // The address ends when the last advertisement says, not the first.
        t.handle_timeout(t0 + Duration::from_secs(120));
        assert_eq!(events(&mut t), vec![]);
        t.handle_timeout(t0 + Duration::from_secs(124));
        assert!(matches!(
            events(&mut t).as_slice(),
            [RaEvent::AddressGone { .. }]
        ));
    }

    /// A prefix whose addresses are multicast (ff00::/64), loopback or in
    /// ::/8 gives no address and no on-link prefix (issue 21).
    #[test]
    fn prefixes_of_no_usable_address_are_ignored() {
        let t0 = Instant::now();
        let mut t = Tracker::new(MAC, t0, Duration::from_secs(3600));
        let bad: Vec<_> = ["ff00::", "ff02::", "::", "::ffff:0:0"]
            .iter()
            .map(|p| (p.parse::<Ipv6Addr>().unwrap(), 64, true, true, 3600, 1800))
            .collect();
        t.handle_ra(t0, ROUTER, 255, &ra(false, false, 0, &bad))
            .unwrap();
        assert_eq!(t.addresses().count(), 0);
        assert!(t.on_link.is_empty());
        for a in [
            "ff00::1",
            "ff02::1",
            "fe80::1",
            "::",
            "::1",
            "::ffff:192.0.2.1",
            "::192.0.2.1",
        ] {
            assert!(!usable_address(a.parse().unwrap()), "{a}");
        }
        for a in ["2001:db8::1", "fd00::1", "2001:db8:1::42:c0ff:fe00:239"] {
            assert!(usable_address(a.parse().unwrap()), "{a}");
        }
    }
}
