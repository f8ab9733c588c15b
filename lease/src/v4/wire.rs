//! The DHCPv4 wire format as the client sees it: checking and decoding
//! received messages, reading a lease out of an ACK, and the byte-level pieces
//! of what it sends. Kept apart from the state machine ([`super::client`]) so
//! that every rule about what a hostile or broken server may send is in one
//! place, testable without driving the client through its states.
//!
//! Everything here is total: no input, however malformed, may cause a panic
//! (the client is fuzzed through [`sanitize_reply`]).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Message, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use tracing::debug;

use super::lease::Lease;
use crate::timers::{LeaseTimes, lifetime};

/// Option codes kept from received messages before they are handed to
/// dhcproto (see [`sanitize_reply`]).
const KEPT_OPTIONS: [u8; 10] = [1, 3, 6, 26, 51, 53, 54, 58, 59, 121];
/// The parameter request list (option 55) sent in DISCOVER and REQUEST.
pub const REQUESTED_PARAMS: [u8; 9] = [1, 3, 6, 15, 26, 51, 58, 59, 121];
/// The smallest interface MTU option 26 may carry (RFC 2132 section 5.1).
pub const MIN_MTU: u16 = 68;
/// Option 57.
pub const MAX_MESSAGE_SIZE: u16 = 1500;
/// BOOTP minimum message size: every message is padded with zeros to this.
pub const MIN_PACKET_SIZE: usize = 300;
/// Fixed BOOTP header (236 bytes) plus the magic cookie.
pub const HEADER_LEN: usize = 240;
/// The four bytes that end the BOOTP header of a DHCP message (RFC 2131 §3).
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// How an [`OptionWalk`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkEnd {
    /// At the End option (255), at this offset.
    End(usize),
    /// The option at this offset has no length byte or claims more bytes
    /// than are left: it and everything after it are unreadable.
    Truncated(usize),
    /// The bytes ran out between two options, without an End option.
    Unterminated,
}

/// The options of a DHCP message in packet order, as (code, data): Pad
/// skipped, stopping at End or at the first truncated option. Split instances
/// of one code (RFC 3396) come out separately; joining them is the caller's
/// choice, as is what to make of [`OptionWalk::end`].
///
/// This is the one place the option area is walked: the client, the test
/// helpers, the rogue server of the integration tests and the fuzzers all go
/// through it.
#[derive(Clone, Debug)]
pub struct OptionWalk<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: Option<WalkEnd>,
}

impl<'a> OptionWalk<'a> {
    /// The options of a whole DHCP message; `None` unless it is long enough
    /// for the fixed header and carries the magic cookie. Offsets in
    /// [`WalkEnd`] count from the start of the message.
    pub fn message(payload: &'a [u8]) -> Option<OptionWalk<'a>> {
        (payload.get(HEADER_LEN - 4..HEADER_LEN) == Some(&MAGIC_COOKIE[..])).then_some(OptionWalk {
            bytes: payload,
            pos: HEADER_LEN,
            end: None,
        })
    }

    /// Options in a bare option area (no header), e.g. one option encoded
    /// on its own.
    pub fn area(bytes: &'a [u8]) -> OptionWalk<'a> {
        OptionWalk {
            bytes,
            pos: 0,
            end: None,
        }
    }

    /// How the walk ended; `None` while options remain to be read.
    pub fn end(&self) -> Option<WalkEnd> {
        self.end
    }
}

impl<'a> Iterator for OptionWalk<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        while self.end.is_none() {
            let at = self.pos;
            match self.bytes.get(at) {
                None => self.end = Some(WalkEnd::Unterminated),
                Some(0) => self.pos += 1,
                Some(255) => self.end = Some(WalkEnd::End(at)),
                Some(&code) => {
                    let data = self
                        .bytes
                        .get(at + 1)
                        .and_then(|&len| self.bytes.get(at + 2..at + 2 + usize::from(len)));
                    match data {
                        Some(data) => {
                            self.pos = at + 2 + data.len();
                            return Some((code, data));
                        }
                        None => self.end = Some(WalkEnd::Truncated(at)),
                    }
                }
            }
        }
        None
    }
}

/// Encode a message to send, padded with zeros to the BOOTP minimum size.
pub fn encode_padded(msg: &Message) -> Result<Vec<u8>, dhcproto::error::EncodeError> {
    let mut payload = Vec::with_capacity(576);
    msg.encode(&mut Encoder::new(&mut payload))?;
    if payload.len() < MIN_PACKET_SIZE {
        payload.resize(MIN_PACKET_SIZE, 0);
    }
    Ok(payload)
}

/// An address a lease or an offer may carry.
pub fn usable_address(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
}

/// Server identifier (option 54), else siaddr when non-zero.
pub fn server_id_of(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) if !ip.is_unspecified() => Some(*ip),
        _ => Some(msg.siaddr()).filter(|ip| !ip.is_unspecified()),
    }
}

/// Option 81 (RFC 4702) payload: flags S|E, RCODE1/2 = 255, then the name
/// in DNS wire format. A name ending in '.' is sent fully qualified (with
/// the root label); a plain hostname as a partial name (without it), so the
/// server appends its own domain.
pub fn fqdn_option(host: &str) -> Vec<u8> {
    let flags = 0x01 | 0x04; // S, E
    let mut out = vec![flags, 0xff, 0xff];
    for label in host.split('.').filter(|l| !l.is_empty()) {
        let label = &label.as_bytes()[..label.len().min(63)];
        if out.len() + 1 + label.len() > 255 - 1 {
            break;
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    if host.ends_with('.') {
        out.push(0);
    }
    out
}

/// Check a received payload at the byte level and decode it.
///
/// Returns `None` unless it is a BOOTREPLY with our `xid` and `chaddr` and
/// the DHCP magic cookie. Only the options the client uses are passed to
/// dhcproto: a malformed option we do not need then cannot make us drop
/// the reply, and dhcproto's decoders that `debug_assert!` on lengths or
/// index by `hlen` (options 80, 81, 94, 151-155; `Message::chaddr`) are never
/// reached with hostile input.
pub fn sanitize_reply(payload: &[u8], xid: u32, chaddr: &[u8; 6]) -> Option<Message> {
    if payload.len() < HEADER_LEN
        || payload[0] != 2
        || payload[4..8] != xid.to_be_bytes()
        || payload[28..34] != chaddr[..]
        || payload[HEADER_LEN - 4..HEADER_LEN] != MAGIC_COOKIE
    {
        return None;
    }
    // Kept options, with split instances joined (RFC 3396), in order of first
    // appearance. A malformed one is dropped on its own: dhcproto would stop
    // reading every option after it. A truncated option ends the walk: it and
    // the rest are dropped.
    let mut kept: Vec<(u8, Vec<u8>)> = Vec::new();
    for (code, data) in OptionWalk::message(payload)? {
        if KEPT_OPTIONS.contains(&code) {
            match kept.iter_mut().find(|(c, _)| *c == code) {
                Some((_, v)) => v.extend_from_slice(data),
                None => kept.push((code, data.to_vec())),
            }
        }
    }
    let mut clean = Vec::with_capacity(payload.len() + 1);
    clean.extend_from_slice(&payload[..HEADER_LEN]);
    clean[2] = 6; // hlen: the chaddr was checked above
    for (code, data) in kept {
        if !well_formed(code, &data) {
            debug!(code, len = data.len(), "dhcp: dropping a malformed option");
            continue;
        }
        for chunk in data.chunks(255) {
            clean.push(code);
            clean.push(chunk.len() as u8);
            clean.extend_from_slice(chunk);
        }
    }
    clean.push(255);
    Message::decode(&mut Decoder::new(&clean)).ok()
}

/// Whether a kept option's (joined) value has the shape RFC 2132 / RFC 3442
/// give it.
fn well_formed(code: u8, data: &[u8]) -> bool {
    match code {
        53 => data.len() == 1,
        26 => data.len() == 2,
        1 | 51 | 54 | 58 | 59 => data.len() == 4,
        3 | 6 => !data.is_empty() && data.len().is_multiple_of(4),
        121 => {
            // Descriptors: prefix length (<= 32), the significant octets of
            // the destination, a router; together exactly the option.
            let mut pos = 0;
            while pos < data.len() {
                let width = data[pos];
                if width > 32 {
                    return false;
                }
                pos += 1 + usize::from(width).div_ceil(8) + 4;
            }
            !data.is_empty() && pos == data.len()
        }
        _ => true,
    }
}

/// Build the lease from an ACK. `start` is when the REQUEST was first sent.
pub fn parse_lease(
    msg: &Message,
    start: Instant,
    fallback_lease_time: Option<u32>,
    fallback_server: Option<Ipv4Addr>,
) -> Result<Lease, &'static str> {
    let address = msg.yiaddr();
    if !usable_address(address) {
        return Err("unusable yiaddr");
    }
    let Some(server_id) = server_id_of(msg).or(fallback_server) else {
        return Err("no server identifier");
    };
    let opts = msg.opts();
    let lease_secs = match opts.get(OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(t)) => *t,
        _ => fallback_lease_time.ok_or("no lease time (option 51)")?,
    };
    if lease_secs == 0 {
        return Err("zero lease time");
    }
    let server_timer = |code| match opts.get(code) {
        Some(DhcpOption::Renewal(t) | DhcpOption::Rebinding(t)) if *t != 0 => {
            Some(Duration::from_secs((*t).into()))
        }
        _ => None,
    };
    let times = LeaseTimes::dhcpv4(
        start,
        lifetime(lease_secs),
        server_timer(OptionCode::Renewal),
        server_timer(OptionCode::Rebinding),
    );

    let prefix_len = match opts.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(mask)) => {
            let m = u32::from(*mask);
            if m != 0 && m.leading_ones() + m.trailing_zeros() == 32 {
                m.leading_ones() as u8
            } else {
                classful_prefix(address)
            }
        }
        _ => classful_prefix(address),
    };

    let mut routes = Vec::new();
    let gateway = match opts.get(OptionCode::ClasslessStaticRoute) {
        Some(DhcpOption::ClasslessStaticRoute(list)) => {
            let mut gateway = None;
            for (net, router) in list {
                if net.prefix_len() == 0 {
                    if gateway.is_none() && !router.is_unspecified() {
                        gateway = Some(*router);
                    }
                } else {
                    routes.push((net.network(), net.prefix_len(), *router));
                }
            }
            gateway
        }
        _ => match opts.get(OptionCode::Router) {
            Some(DhcpOption::Router(list)) => list.iter().copied().find(|r| usable_address(*r)),
            _ => None,
        },
    };
    let dns = match opts.get(OptionCode::DomainNameServer) {
        Some(DhcpOption::DomainNameServer(list)) => list
            .iter()
            .copied()
            .filter(|a| usable_address(*a))
            .collect(),
        _ => Vec::new(),
    };
    // Option 26: RFC 2132 section 5.1 makes 68 the smallest legal value; a
    // smaller one is no MTU at all and is ignored.
    let mtu = match opts.get(OptionCode::InterfaceMtu) {
        Some(DhcpOption::InterfaceMtu(m)) if *m >= MIN_MTU => Some(*m),
        _ => None,
    };
    Ok(Lease {
        address,
        prefix_len,
        gateway,
        routes,
        server_id,
        dns,
        mtu,
        times,
    })
}

/// Prefix length of the address's class (A /8, B /16, C and above /24).
fn classful_prefix(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(options: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN];
        p[HEADER_LEN - 4..].copy_from_slice(&MAGIC_COOKIE);
        p.extend_from_slice(options);
        p
    }

    fn walk(p: &[u8]) -> (Vec<(u8, Vec<u8>)>, Option<WalkEnd>) {
        let mut w = OptionWalk::message(p).expect("header and cookie");
        let opts = w.by_ref().map(|(c, d)| (c, d.to_vec())).collect();
        (opts, w.end())
    }

    #[test]
    fn walk_skips_pad_and_stops_at_end() {
        let p = message(&[0, 53, 1, 2, 0, 0, 6, 0, 255, 3, 4, 1, 2, 3, 4]);
        let (opts, end) = walk(&p);
        assert_eq!(opts, vec![(53, vec![2]), (6, vec![])]);
        assert_eq!(end, Some(WalkEnd::End(HEADER_LEN + 8)));
    }

    #[test]
    fn walk_reports_truncation_and_a_missing_end() {
        // Length past the end; a code without a length byte.
        for (tail, at) in [(&[53, 1, 2, 3, 9, 1][..], 3), (&[53, 1, 2, 3][..], 3)] {
            let (opts, end) = walk(&message(tail));
            assert_eq!(opts, vec![(53, vec![2])]);
            assert_eq!(end, Some(WalkEnd::Truncated(HEADER_LEN + at)));
        }
        let (opts, end) = walk(&message(&[53, 1, 2, 0]));
        assert_eq!(opts, vec![(53, vec![2])]);
        assert_eq!(end, Some(WalkEnd::Unterminated));
        // Split instances come out separately, in order.
        let (opts, _) = walk(&message(&[6, 1, 9, 3, 0, 6, 1, 8, 255]));
        assert_eq!(opts, vec![(6, vec![9]), (3, vec![]), (6, vec![8])]);
    }

    #[test]
    fn walk_needs_the_header_and_cookie() {
        assert!(OptionWalk::message(&[]).is_none());
        let mut p = message(&[255]);
        assert!(OptionWalk::message(&p[..HEADER_LEN - 1]).is_none());
        p[HEADER_LEN - 1] = 0;
        assert!(OptionWalk::message(&p).is_none());
        // A bare area has no header.
        let mut a = OptionWalk::area(&[51, 4, 0, 0, 0, 60]);
        assert_eq!(a.next(), Some((51, &[0, 0, 0, 60][..])));
        assert_eq!(a.next(), None);
        assert_eq!(a.end(), Some(WalkEnd::Unterminated));
    }
}
