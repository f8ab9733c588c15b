//! IPv4 + UDP framing for a raw (AF_PACKET, SOCK_DGRAM) DHCP socket.
//!
//! Pure code without I/O. Everything here must be total: no input, however
//! malformed, may cause a panic (this module is fuzzed).
//!
//! - [`build_ipv4_udp`] builds an IPv4 header and a UDP header around a payload.
//! - [`parse_ipv4_udp`] validates a received IPv4 datagram and returns the UDP part.
//!
//! The kernel-side filter of the same frames (a classic BPF program, built from
//! `libc` types) sits with the socket in the agent; it uses the constants here.

use std::net::Ipv4Addr;

/// IPv4 header length without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// UDP header length.
pub const UDP_HEADER_LEN: usize = 8;
/// Largest payload that fits in one IPv4 datagram built by [`build_ipv4_udp`].
pub const MAX_UDP_PAYLOAD: usize = u16::MAX as usize - IPV4_HEADER_LEN - UDP_HEADER_LEN;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// The DHCP client port.
pub const DHCP_CLIENT_PORT: u16 = 68;
/// The DHCP server port.
pub const DHCP_SERVER_PORT: u16 = 67;

const DEFAULT_TTL: u8 = 64;
/// More-fragments flag and fragment offset in the IPv4 flags/offset field.
pub const IP_MF_OFFSET_MASK: u16 = 0x3fff;

/// A validated UDP datagram, borrowing its payload from the received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Udp<'a> {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

/// Why a received frame was refused by [`parse_ipv4_udp`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("frame too short: {len} bytes, need {need}")]
    Truncated { len: usize, need: usize },
    #[error("not IPv4 (version {0})")]
    NotIpv4(u8),
    #[error("bad IPv4 header length: IHL {0}")]
    BadHeaderLength(u8),
    #[error("bad IPv4 total length {total} (header {header}, frame {frame} bytes)")]
    BadTotalLength {
        total: usize,
        header: usize,
        frame: usize,
    },
    #[error("IPv4 fragment (flags/offset {0:#06x})")]
    Fragment(u16),
    #[error("bad IPv4 header checksum")]
    BadIpChecksum,
    #[error("not UDP (protocol {0})")]
    NotUdp(u8),
    #[error("bad UDP length {udp_len} (IP payload {ip_payload} bytes)")]
    BadUdpLength { udp_len: usize, ip_payload: usize },
    #[error("bad UDP checksum")]
    BadUdpChecksum,
}

/// Adds `data` as big-endian 16-bit words to `acc` (an odd trailing byte is padded with zero).
fn sum_words(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

/// Folds a 64-bit accumulator into a 16-bit ones' complement sum.
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The Internet checksum (RFC 1071) of `data`: the ones' complement of the ones' complement sum.
pub fn internet_checksum(data: &[u8]) -> u16 {
    !fold(sum_words(data, 0))
}

/// Ones' complement sum of the UDP pseudo-header plus `segment` (UDP header and payload).
fn udp_sum(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
    let mut acc = sum_words(&src.octets(), 0);
    acc = sum_words(&dst.octets(), acc);
    acc += u64::from(IPPROTO_UDP);
    acc += segment.len() as u64;
    fold(sum_words(segment, acc))
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn addr(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let o: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

/// Builds an IPv4 datagram (version 4, IHL 5, TTL 64, id 0, no flags, protocol UDP) carrying
/// a UDP datagram with a checksum over the pseudo-header.
///
/// A payload longer than [`MAX_UDP_PAYLOAD`] cannot be represented and is cut to that
/// length; callers that may see such payloads must check first (the socket layer does).
pub fn build_ipv4_udp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let payload = &payload[..payload.len().min(MAX_UDP_PAYLOAD)];
    let udp_len = UDP_HEADER_LEN + payload.len();
    let total_len = IPV4_HEADER_LEN + udp_len;
    let mut buf = Vec::with_capacity(total_len);

    // IPv4 header.
    buf.push(0x45); // version 4, IHL 5
    buf.push(0); // DSCP/ECN
    buf.extend_from_slice(&(total_len as u16).to_be_bytes());
    buf.extend_from_slice(&[0, 0]); // identification
    buf.extend_from_slice(&[0, 0]); // flags, fragment offset
    buf.push(DEFAULT_TTL);
    buf.push(IPPROTO_UDP);
    buf.extend_from_slice(&[0, 0]); // header checksum, filled in below
    buf.extend_from_slice(&src.octets());
    buf.extend_from_slice(&dst.octets());
    let ip_csum = internet_checksum(&buf[..IPV4_HEADER_LEN]);
    buf[10..12].copy_from_slice(&ip_csum.to_be_bytes());

    // UDP header and payload.
    buf.extend_from_slice(&src_port.to_be_bytes());
    buf.extend_from_slice(&dst_port.to_be_bytes());
    buf.extend_from_slice(&(udp_len as u16).to_be_bytes());
    buf.extend_from_slice(&[0, 0]); // checksum, filled in below
    buf.extend_from_slice(payload);
    let mut udp_csum = !udp_sum(src, dst, &buf[IPV4_HEADER_LEN..]);
    if udp_csum == 0 {
        udp_csum = 0xffff; // 0 means "no checksum" in UDP over IPv4
    }
    buf[IPV4_HEADER_LEN + 6..IPV4_HEADER_LEN + 8].copy_from_slice(&udp_csum.to_be_bytes());
    buf
}

/// Validates an IPv4 datagram carrying UDP (as delivered by an AF_PACKET SOCK_DGRAM socket,
/// i.e. starting at the IPv4 header) and returns its UDP part.
///
/// Bytes beyond the IPv4 total length (Ethernet padding) are ignored. The UDP checksum is
/// checked unless it is 0 (not computed by the sender) or `checksum_not_ready` is set (the
/// kernel's `TP_STATUS_CSUMNOTREADY`: the checksum is still partial, e.g. on veth).
pub fn parse_ipv4_udp(frame: &[u8], checksum_not_ready: bool) -> Result<Udp<'_>, PacketError> {
    if frame.len() < IPV4_HEADER_LEN {
        return Err(PacketError::Truncated {
            len: frame.len(),
            need: IPV4_HEADER_LEN,
        });
    }
    let version = frame[0] >> 4;
    if version != 4 {
        return Err(PacketError::NotIpv4(version));
    }
    let ihl = frame[0] & 0x0f;
    if ihl < 5 {
        return Err(PacketError::BadHeaderLength(ihl));
    }
    let header_len = usize::from(ihl) * 4;
    if header_len > frame.len() {
        return Err(PacketError::Truncated {
            len: frame.len(),
            need: header_len,
        });
    }
    let total = usize::from(be16(frame, 2).unwrap_or(0));
    if total < header_len || total > frame.len() {
        return Err(PacketError::BadTotalLength {
            total,
            header: header_len,
            frame: frame.len(),
        });
    }
    let datagram = &frame[..total];
    let flags_offset = be16(datagram, 6).unwrap_or(0);
    if flags_offset & IP_MF_OFFSET_MASK != 0 {
        return Err(PacketError::Fragment(flags_offset));
    }
    if fold(sum_words(&datagram[..header_len], 0)) != 0xffff {
        return Err(PacketError::BadIpChecksum);
    }
    let protocol = datagram[9];
    if protocol != IPPROTO_UDP {
        return Err(PacketError::NotUdp(protocol));
    }
    let src_addr = addr(datagram, 12).unwrap_or(Ipv4Addr::UNSPECIFIED);
    let dst_addr = addr(datagram, 16).unwrap_or(Ipv4Addr::UNSPECIFIED);

    let ip_payload = &datagram[header_len..];
    if ip_payload.len() < UDP_HEADER_LEN {
        return Err(PacketError::Truncated {
            len: frame.len(),
            need: header_len + UDP_HEADER_LEN,
        });
    }
    let udp_len = usize::from(be16(ip_payload, 4).unwrap_or(0));
    // Like Linux, accept a UDP length shorter than the IP payload and trim to it.
    if udp_len < UDP_HEADER_LEN || udp_len > ip_payload.len() {
        return Err(PacketError::BadUdpLength {
            udp_len,
            ip_payload: ip_payload.len(),
        });
    }
    let segment = &ip_payload[..udp_len];
    let checksum = be16(segment, 6).unwrap_or(0);
    if checksum != 0 && !checksum_not_ready && udp_sum(src_addr, dst_addr, segment) != 0xffff {
        return Err(PacketError::BadUdpChecksum);
    }
    Ok(Udp {
        src_addr,
        dst_addr,
        src_port: be16(segment, 0).unwrap_or(0),
        dst_port: be16(segment, 2).unwrap_or(0),
        payload: &segment[UDP_HEADER_LEN..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fix_ip_checksum;
    use rand::Rng;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);

    fn frame(payload: &[u8]) -> Vec<u8> {
        build_ipv4_udp(SRC, DST, 67, 68, payload)
    }

    #[test]
    fn round_trip() {
        for payload in [&b""[..], b"x", b"hello dhcp", &[0xab; 300]] {
            let f = frame(payload);
            assert_eq!(f.len(), 28 + payload.len());
            let u = parse_ipv4_udp(&f, false).unwrap();
            assert_eq!(
                u,
                Udp {
                    src_addr: SRC,
                    dst_addr: DST,
                    src_port: 67,
                    dst_port: 68,
                    payload
                }
            );
        }
        let f = build_ipv4_udp(
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            68,
            67,
            b"discover",
        );
        let u = parse_ipv4_udp(&f, false).unwrap();
        assert_eq!(u.src_addr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(u.dst_addr, Ipv4Addr::BROADCAST);
        assert_eq!((u.src_port, u.dst_port), (68, 67));
        assert_eq!(u.payload, b"discover");
    }

    #[test]
    fn header_fields() {
        let f = frame(b"abc");
        assert_eq!(f[0], 0x45);
        assert_eq!(u16::from_be_bytes([f[2], f[3]]), 31);
        assert_eq!(f[8], 64);
        assert_eq!(f[9], 17);
        assert_eq!(&f[12..16], &SRC.octets());
        assert_eq!(&f[16..20], &DST.octets());
        assert_eq!(u16::from_be_bytes([f[24], f[25]]), 11);
        assert_eq!(internet_checksum(&f[..20]), 0);
    }

    #[test]
    fn checksum_known_vectors() {
        // RFC 1071 section 3 example: sum ddf2, checksum 220d.
        assert_eq!(
            internet_checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0x220d
        );
        // A well-known IPv4 header with checksum b861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(internet_checksum(&h), 0xb861);
        h[10] = 0xb8;
        h[11] = 0x61;
        assert_eq!(internet_checksum(&h), 0);
        // Odd length is padded with a zero byte.
        assert_eq!(internet_checksum(&[0x01]), !0x0100);
        // Our builder's IP header for 0.0.0.0 -> 255.255.255.255, 8-byte payload (total 36):
        // 4500 0024 0000 0000 4011 0000 0000 0000 ffff ffff: sum 0x8535 (folded), checksum 0x7aca.
        let f = build_ipv4_udp(Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, 68, 67, &[0; 8]);
        assert_eq!(&f[10..12], &[0x7a, 0xca]);
        // UDP checksum: pseudo 0000 0000 ffff ffff 0011 0010, header 0044 0043 0010 0000,
        // zero payload: sum = 0x1fffe + 0x11 + 0x10 + 0x44 + 0x43 + 0x10 = 0x200b6 -> 0x00b8,
        // checksum = !0x00b8 = 0xff47.
        assert_eq!(&f[26..28], &[0xff, 0x47]);
    }

    #[test]
    fn zero_udp_checksum_is_sent_as_ffff() {
        // Find a payload whose UDP checksum computes to 0: pick the last 2 payload bytes
        // so that the sum becomes 0xffff.
        let mut payload = [0u8; 4];
        let f = build_ipv4_udp(SRC, DST, 67, 68, &payload);
        let csum = u16::from_be_bytes([f[26], f[27]]);
        // Current sum = !csum; adding `csum` to the sum makes it 0xffff -> checksum 0.
        payload[2..4].copy_from_slice(&csum.to_be_bytes());
        let f = build_ipv4_udp(SRC, DST, 67, 68, &payload);
        assert_eq!(&f[26..28], &[0xff, 0xff]);
        assert!(parse_ipv4_udp(&f, false).is_ok());
    }

    #[test]
    fn trailing_padding_is_ignored() {
        let mut f = frame(b"pad me");
        f.extend_from_slice(&[0; 20]);
        assert_eq!(parse_ipv4_udp(&f, false).unwrap().payload, b"pad me");
    }

    #[test]
    fn ip_options_are_skipped() {
        let base = frame(b"opts");
        let mut f = vec![0x46];
        f.extend_from_slice(&base[1..20]);
        f.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
        f.extend_from_slice(&base[20..]);
        let total = (f.len() as u16).to_be_bytes();
        f[2..4].copy_from_slice(&total);
        fix_ip_checksum(&mut f);
        assert_eq!(parse_ipv4_udp(&f, false).unwrap().payload, b"opts");
    }

    #[test]
    fn rejects_not_ipv4() {
        let mut f = frame(b"x");
        f[0] = 0x65;
        assert_eq!(parse_ipv4_udp(&f, false), Err(PacketError::NotIpv4(6)));
    }

    #[test]
    fn rejects_short_ihl() {
        let mut f = frame(b"x");
        f[0] = 0x44;
        assert_eq!(
            parse_ipv4_udp(&f, false),
            Err(PacketError::BadHeaderLength(4))
        );
    }

    #[test]
    fn rejects_ihl_beyond_frame() {
        let mut f = frame(b"");
        f[0] = 0x4f; // 60-byte header in a 28-byte frame
        assert!(matches!(
            parse_ipv4_udp(&f, false),
            Err(PacketError::Truncated { need: 60, .. })
        ));
    }

    #[test]
    fn rejects_bad_total_length() {
        let mut f = frame(b"abc");
        f[2..4].copy_from_slice(&100u16.to_be_bytes());
        fix_ip_checksum(&mut f);
        assert!(matches!(
            parse_ipv4_udp(&f, false),
            Err(PacketError::BadTotalLength { total: 100, .. })
        ));
        f[2..4].copy_from_slice(&19u16.to_be_bytes());
        fix_ip_checksum(&mut f);
        assert!(matches!(
            parse_ipv4_udp(&f, false),
            Err(PacketError::BadTotalLength { total: 19, .. })
        ));
    }

    #[test]
    fn rejects_fragments() {
        for flags in [0x2000u16, 0x0001, 0x1fff, 0x2001] {
            let mut f = frame(b"frag");
            f[6..8].copy_from_slice(&flags.to_be_bytes());
            fix_ip_checksum(&mut f);
            assert_eq!(parse_ipv4_udp(&f, false), Err(PacketError::Fragment(flags)));
        }
        // DF alone is fine.
        let mut f = frame(b"df");
        f[6] = 0x40;
        fix_ip_checksum(&mut f);
        assert!(parse_ipv4_udp(&f, false).is_ok());
    }

    #[test]
    fn rejects_bad_ip_checksum() {
        let mut f = frame(b"x");
        f[8] = 63; // TTL changed without fixing the checksum
        assert_eq!(parse_ipv4_udp(&f, false), Err(PacketError::BadIpChecksum));
        // checksum_not_ready only concerns UDP.
        assert_eq!(parse_ipv4_udp(&f, true), Err(PacketError::BadIpChecksum));
    }

    #[test]
    fn rejects_not_udp() {
        let mut f = frame(b"x");
        f[9] = 6;
        fix_ip_checksum(&mut f);
        assert_eq!(parse_ipv4_udp(&f, false), Err(PacketError::NotUdp(6)));
    }

    #[test]
    fn rejects_short_udp() {
        let mut f = frame(b"");
        f.truncate(25);
        f[2..4].copy_from_slice(&25u16.to_be_bytes());
        fix_ip_checksum(&mut f);
        assert!(matches!(
            parse_ipv4_udp(&f, false),
            Err(PacketError::Truncated { need: 28, .. })
        ));
    }

    #[test]
    fn rejects_bad_udp_length() {
        for udp_len in [0u16, 7, 12] {
            let mut f = frame(b"abc"); // UDP length 11
            f[24..26].copy_from_slice(&udp_len.to_be_bytes());
            assert!(matches!(
                parse_ipv4_udp(&f, true),
                Err(PacketError::BadUdpLength { .. })
            ));
        }
        // Shorter UDP length than the IP payload: trimmed (checksum must match the trimmed part).
        let mut f = frame(b"abc");
        f.push(b'z');
        f[2..4].copy_from_slice(&32u16.to_be_bytes());
        fix_ip_checksum(&mut f);
        assert_eq!(parse_ipv4_udp(&f, false).unwrap().payload, b"abc");
    }

    #[test]
    fn bad_udp_checksum_refused_unless_not_ready() {
        let mut f = frame(b"payload");
        let last = f.len() - 1;
        f[last] ^= 0x01;
        assert_eq!(parse_ipv4_udp(&f, false), Err(PacketError::BadUdpChecksum));
        assert_eq!(parse_ipv4_udp(&f, true).unwrap().payload, b"payloae");
        // Checksum 0 = not computed: accepted.
        f[26] = 0;
        f[27] = 0;
        assert_eq!(parse_ipv4_udp(&f, false).unwrap().payload, b"payloae");
    }

    #[test]
    fn truncated_at_every_length() {
        let f = frame(&[0x5a; 64]);
        for len in 0..f.len() {
            assert!(parse_ipv4_udp(&f[..len], false).is_err(), "len {len}");
            assert!(parse_ipv4_udp(&f[..len], true).is_err(), "len {len}");
        }
        assert!(parse_ipv4_udp(&f, false).is_ok());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = rand::rng();
        let mut buf = vec![0u8; 2048];
        for _ in 0..20_000 {
            let len = rng.random_range(0..buf.len());
            rng.fill(&mut buf[..len]);
            if rng.random_bool(0.5) {
                buf[0] = 0x40 | (buf[0] & 0x0f); // make it past the version check more often
            }
            let _ = parse_ipv4_udp(&buf[..len], rng.random());
        }
        // Mutations of valid frames reach the deeper checks.
        let good = frame(&[7; 40]);
        for _ in 0..20_000 {
            let mut f = good.clone();
            for _ in 0..rng.random_range(1..4) {
                let i = rng.random_range(0..f.len());
                f[i] = rng.random();
            }
            f.truncate(rng.random_range(0..=f.len()));
            let _ = parse_ipv4_udp(&f, rng.random());
        }
    }

    #[test]
    fn oversized_payload_does_not_panic() {
        let big = vec![1u8; MAX_UDP_PAYLOAD + 10];
        let f = build_ipv4_udp(SRC, DST, 1, 2, &big);
        assert_eq!(f.len(), u16::MAX as usize);
        assert_eq!(
            parse_ipv4_udp(&f, false).unwrap().payload.len(),
            MAX_UDP_PAYLOAD
        );
    }
}
