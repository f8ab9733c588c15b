//! Helpers for tests and fuzzers (feature `test-helpers`): reading the
//! options of a DHCP message and building server replies, well-formed or
//! deliberately broken.
//!
//! They live here, beside the client, so that this crate's unit tests, the
//! agent's, the rogue servers of the integration tests and the fuzzers all
//! build and read messages the same way, through the client's own option walk
//! ([`OptionWalk`]), instead of each carrying a copy that can drift.

use std::net::Ipv4Addr;

use dhcproto::Encodable;
use dhcproto::v4::DhcpOption;

use crate::v4::wire::{HEADER_LEN, MAGIC_COOKIE, MIN_PACKET_SIZE};
pub use crate::v4::wire::{OptionWalk, WalkEnd};

/// Option 53, the DHCP message type.
const MSG_TYPE: u8 = 53;

/// Recomputes the IPv4 header checksum of a frame whose header a test changed.
pub fn fix_ip_checksum(f: &mut [u8]) {
    let hl = usize::from(f[0] & 0xf) * 4;
    f[10] = 0;
    f[11] = 0;
    let c = crate::packet::internet_checksum(&f[..hl]);
    f[10..12].copy_from_slice(&c.to_be_bytes());
}

/// The options of a DHCP message as (code, data) in packet order, split
/// instances separate. Empty without the fixed header and magic cookie; a
/// truncated option ends the list.
pub fn options(p: &[u8]) -> Vec<(u8, Vec<u8>)> {
    OptionWalk::message(p)
        .into_iter()
        .flatten()
        .map(|(code, data)| (code, data.to_vec()))
        .collect()
}

/// The options of a DHCP message with split instances joined (RFC 3396), in
/// order of first appearance; `None` unless the message is well formed: the
/// fixed header with the magic cookie, no truncated option, an End option.
pub fn joined_options(p: &[u8]) -> Option<Vec<(u8, Vec<u8>)>> {
    let mut walk = OptionWalk::message(p)?;
    let mut out: Vec<(u8, Vec<u8>)> = Vec::new();
    for (code, data) in walk.by_ref() {
        match out.iter_mut().find(|(c, _)| *c == code) {
            Some((_, d)) => d.extend_from_slice(data),
            None => out.push((code, data.to_vec())),
        }
    }
    matches!(walk.end(), Some(WalkEnd::End(_))).then_some(out)
}

/// The value of `code` in a list from [`options`] (its first instance) or
/// [`joined_options`].
pub fn find(options: &[(u8, Vec<u8>)], code: u8) -> Option<&[u8]> {
    options
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, d)| d.as_slice())
}

/// Offset of the End option of a message whose options are well formed up
/// to it (where to insert an option that must still be read).
pub fn end_of_options(p: &[u8]) -> Option<usize> {
    let mut walk = OptionWalk::message(p)?;
    walk.by_ref().for_each(drop);
    match walk.end() {
        Some(WalkEnd::End(at)) => Some(at),
        _ => None,
    }
}

/// Insert raw bytes into the options area of `p` at `at` (clamped to it).
pub fn insert_raw(p: &mut Vec<u8>, at: usize, raw: &[u8]) {
    let at = at.clamp(HEADER_LEN.min(p.len()), p.len());
    p.splice(at..at, raw.iter().copied());
}

/// Insert an option with any length byte, whatever `data` holds (for options
/// that claim more or fewer bytes than they have), at `at` as [`insert_raw`].
pub fn insert_raw_option(p: &mut Vec<u8>, at: usize, code: u8, len: u8, data: &[u8]) {
    let mut o = vec![code, len];
    o.extend_from_slice(data);
    insert_raw(p, at, &o);
}

/// A hand-built server reply (BOOTREPLY unless `op` is changed).
///
/// Options are written exactly in the order given, option 53 first: repeat a
/// code to split a long option (RFC 3396), give any bytes for a malformed one.
/// [`Reply::encode`] adds the End option and zero padding to the BOOTP
/// minimum of 300 bytes, as servers do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// 2 BOOTREPLY; 1 to pose as a client (BOOTREQUEST).
    pub op: u8,
    pub xid: u32,
    pub flags: u16,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    pub options: Vec<(u8, Vec<u8>)>,
}

impl Reply {
    /// A reply of `msg_type` to `xid`/`chaddr` offering `yiaddr`, with option
    /// 53 and no other.
    pub fn new(msg_type: impl Into<u8>, xid: u32, chaddr: [u8; 6], yiaddr: Ipv4Addr) -> Reply {
        Reply {
            op: 2,
            xid,
            flags: 0,
            yiaddr,
            siaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            options: vec![(MSG_TYPE, vec![msg_type.into()])],
        }
    }

    /// A reply to the encoded client message `request`: its xid, flags and
    /// chaddr (zeros where `request` is too short to hold them).
    pub fn answering(request: &[u8], msg_type: impl Into<u8>, yiaddr: Ipv4Addr) -> Reply {
        let field = |at: usize, n: usize| {
            let mut b = [0u8; 8];
            if let Some(src) = request.get(at..at + n) {
                b[..n].copy_from_slice(src);
            }
            b
        };
        let xid = field(4, 4);
        let flags = field(10, 2);
        let chaddr = field(28, 6);
        let mut r = Reply::new(
            msg_type,
            u32::from_be_bytes([xid[0], xid[1], xid[2], xid[3]]),
            chaddr[..6].try_into().expect("6 bytes"),
            yiaddr,
        );
        r.flags = u16::from_be_bytes([flags[0], flags[1]]);
        r
    }

    /// Append a raw option (any length up to 255, any content).
    pub fn opt(mut self, code: u8, data: impl Into<Vec<u8>>) -> Reply {
        self.options.push((code, data.into()));
        self
    }

    /// Append an option holding one address.
    pub fn ip(self, code: u8, a: Ipv4Addr) -> Reply {
        self.opt(code, a.octets())
    }

    /// Append a server identifier (option 54), if there is one.
    pub fn server_id(self, server: Option<Ipv4Addr>) -> Reply {
        match server {
            Some(s) => self.ip(54, s),
            None => self,
        }
    }

    /// Append an option holding a 32-bit number.
    pub fn u32(self, code: u8, v: u32) -> Reply {
        self.opt(code, v.to_be_bytes())
    }

    /// Append a list of addresses, split into as many instances of `code` as
    /// needed (at most 63 addresses, 252 bytes, each).
    pub fn ips(mut self, code: u8, list: &[Ipv4Addr]) -> Reply {
        for chunk in list.chunks(63) {
            let data: Vec<u8> = chunk.iter().flat_map(|a| a.octets()).collect();
            self.options.push((code, data));
        }
        self
    }

    /// Append a typed option as dhcproto encodes it (split into several
    /// instances when longer than 255 bytes).
    pub fn dhcp(mut self, option: DhcpOption) -> Reply {
        let bytes = option.to_vec().expect("dhcproto encodes the option");
        self.options
            .extend(OptionWalk::area(&bytes).map(|(code, data)| (code, data.to_vec())));
        self
    }

    /// Append typed options in order, as [`Reply::dhcp`].
    pub fn dhcp_all(self, options: impl IntoIterator<Item = DhcpOption>) -> Reply {
        options.into_iter().fold(self, Reply::dhcp)
    }

    /// The message: BOOTP header, magic cookie, the options, End, padding.
    ///
    /// Panics on an option longer than 255 bytes (split it instead).
    pub fn encode(&self) -> Vec<u8> {
        let mut p = self.encode_unpadded();
        if p.len() < MIN_PACKET_SIZE {
            p.resize(MIN_PACKET_SIZE, 0);
        }
        p
    }

    /// [`Reply::encode`] without the padding: the message ends with End, so
    /// that a fuzzer's random insertions and mutations land in the options
    /// rather than in padding nobody reads.
    pub fn encode_unpadded(&self) -> Vec<u8> {
        let mut p = vec![0u8; HEADER_LEN];
        p[0] = self.op;
        p[1] = 1; // htype Ethernet
        p[2] = 6; // hlen
        p[4..8].copy_from_slice(&self.xid.to_be_bytes());
        p[10..12].copy_from_slice(&self.flags.to_be_bytes());
        p[16..20].copy_from_slice(&self.yiaddr.octets());
        p[20..24].copy_from_slice(&self.siaddr.octets());
        p[28..34].copy_from_slice(&self.chaddr);
        p[HEADER_LEN - 4..].copy_from_slice(&MAGIC_COOKIE);
        for (code, data) in &self.options {
            let len = u8::try_from(data.len())
                .unwrap_or_else(|_| panic!("option {code} longer than 255 bytes"));
            p.push(*code);
            p.push(len);
            p.extend_from_slice(data);
        }
        p.push(255);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::{Message, MessageType};
    use dhcproto::{Decodable, Decoder};

    #[test]
    fn reply_round_trip() {
        let routers: Vec<Ipv4Addr> = (1..=200).map(|i| Ipv4Addr::new(203, 0, 113, i)).collect();
        let p = Reply::new(
            5,
            0x01020304,
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(192, 0, 2, 9),
        )
        .ip(54, Ipv4Addr::new(192, 0, 2, 1))
        .ips(3, &routers)
        .encode();
        assert_eq!(&p[4..8], &[1, 2, 3, 4]);
        let o = options(&p);
        assert_eq!(o[0], (53, vec![5]));
        assert_eq!(o.iter().filter(|(c, _)| *c == 3).count(), 4);
        let joined = joined_options(&p).unwrap();
        assert_eq!(find(&joined, 3).unwrap().len(), 800);
        assert_eq!(find(&joined, 54), Some(&[192, 0, 2, 1][..]));
        // dhcproto reads it the same way.
        let m = Message::decode(&mut Decoder::new(&p)).unwrap();
        assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
        assert_eq!(m.yiaddr(), Ipv4Addr::new(192, 0, 2, 9));
    }

    #[test]
    fn typed_options_are_split_like_dhcproto_does() {
        let many: Vec<Ipv4Addr> = (0..100).map(|i| Ipv4Addr::new(192, 0, 2, i)).collect();
        let r = Reply::new(MessageType::Offer, 1, [2; 6], Ipv4Addr::UNSPECIFIED)
            .dhcp(DhcpOption::DomainNameServer(many))
            .dhcp(DhcpOption::AddressLeaseTime(60));
        let codes: Vec<u8> = r.options.iter().map(|(c, _)| *c).collect();
        assert_eq!(codes, [53, 6, 6, 51]);
        assert_eq!(r.options[0].1, [2]);
        assert_eq!(
            find(&joined_options(&r.encode()).unwrap(), 6)
                .unwrap()
                .len(),
            400
        );
    }

    #[test]
    fn answering_copies_xid_flags_and_chaddr() {
        let req = Reply {
            op: 1,
            flags: 0x8000,
            ..Reply::new(1, 0xdead_beef, [2, 0, 0, 0, 0, 7], Ipv4Addr::UNSPECIFIED)
        }
        .encode();
        let r = Reply::answering(&req, 2, Ipv4Addr::new(192, 0, 2, 50));
        assert_eq!(
            (r.op, r.xid, r.flags, r.chaddr),
            (2, 0xdead_beef, 0x8000, [2, 0, 0, 0, 0, 7])
        );
        let short = Reply::answering(&req[..6], 2, Ipv4Addr::UNSPECIFIED);
        assert_eq!((short.xid, short.chaddr), (0, [0; 6]));
    }

    #[test]
    fn malformed_options_end_the_walk() {
        let good = Reply::new(5, 1, [2; 6], Ipv4Addr::UNSPECIFIED)
            .u32(51, 60)
            .encode();
        let end = end_of_options(&good).unwrap();
        assert_eq!(good[end], 255);
        assert_eq!(good.len(), 300);
        let unpadded = Reply::new(5, 1, [2; 6], Ipv4Addr::UNSPECIFIED)
            .u32(51, 60)
            .encode_unpadded();
        assert_eq!(unpadded, good[..=end]);
        // A truncated option: the walk stops there; not well formed.
        let mut bad = good.clone();
        insert_raw_option(&mut bad, end, 3, 200, &[1, 2, 3, 4]);
        bad.truncate(end + 6);
        assert_eq!(options(&bad).len(), 2);
        assert_eq!(joined_options(&bad), None);
        assert_eq!(end_of_options(&bad), None);
        // No End option.
        assert_eq!(joined_options(&good[..end]), None);
        // No magic cookie, or too short for one.
        let mut nocookie = good.clone();
        nocookie[236] = 0;
        assert!(options(&nocookie).is_empty() && joined_options(&nocookie).is_none());
        assert!(options(&good[..239]).is_empty());
        // Insertion is clamped to the options area.
        let mut p = good.clone();
        insert_raw(&mut p, 0, &[0, 0]);
        assert_eq!(&p[240..242], &[0, 0]);
        assert_eq!(joined_options(&p), joined_options(&good));
    }
}
