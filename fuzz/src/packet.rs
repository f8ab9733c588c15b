//! Target `packet`: `parse_ipv4_udp(frame, checksum_not_ready)` on mutated IPv4/UDP/DHCP
//! datagrams built with `build_ipv4_udp`, and build/parse round trips.
//!
//! Mutated frames get their IPv4 header checksum (and sometimes the UDP checksum) fixed
//! up half of the time, so mutations of the lengths, IHL, flags and protocol are not all
//! stopped by the checksum check.
//!
//! Invariants: no panic; an unmutated frame parses back to exactly what was built; the
//! returned payload lies inside the frame, within the IPv4 total length and the UDP
//! length; accepting with checksum verification implies accepting without it, with the
//! same result.

use std::net::Ipv4Addr;

use dhcproto::v4::MessageType;
use netcontainer_lease::packet::{
    IPV4_HEADER_LEN, MAX_UDP_PAYLOAD, UDP_HEADER_LEN, build_ipv4_udp, internet_checksum,
    parse_ipv4_udp,
};
use netcontainer_lease::testing::Reply;

use crate::mutate::mutate;
use crate::rng::Rng;

pub struct PacketTarget {
    seeds: Vec<Vec<u8>>,
    pub accepted: u64,
}

fn dhcp_payload(mt: MessageType, extra: usize) -> Vec<u8> {
    let mut p = Reply::new(
        mt,
        0x1234_5678,
        crate::dhcp::MAC,
        Ipv4Addr::new(192, 0, 2, 50),
    )
    .ip(54, Ipv4Addr::new(192, 0, 2, 1))
    .u32(51, 3600)
    .encode();
    p.resize(p.len() + extra, 0);
    p
}

/// `frame` with an IPv4 options field of `n` words inserted (IHL, lengths and checksum fixed).
fn with_ip_options(frame: &[u8], n: usize) -> Vec<u8> {
    let mut f = frame[..IPV4_HEADER_LEN].to_vec();
    f.extend(std::iter::repeat_n(1u8, n * 4)); // NOP options
    f.extend_from_slice(&frame[IPV4_HEADER_LEN..]);
    f[0] = 0x40 | (5 + n as u8);
    let total = f.len() as u16;
    f[2..4].copy_from_slice(&total.to_be_bytes());
    fix_ip_checksum(&mut f);
    f
}

fn fix_ip_checksum(f: &mut [u8]) {
    if f.len() < IPV4_HEADER_LEN {
        return;
    }
    let hl = (usize::from(f[0] & 0x0f) * 4).clamp(IPV4_HEADER_LEN, f.len());
    f[10] = 0;
    f[11] = 0;
    let c = internet_checksum(&f[..hl]);
    f[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Recomputes the UDP checksum over what the header says the segment is (best effort).
fn fix_udp_checksum(f: &mut [u8]) {
    if f.len() < IPV4_HEADER_LEN {
        return;
    }
    let hl = usize::from(f[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([f[2], f[3]])).min(f.len());
    if hl < IPV4_HEADER_LEN || total < hl + UDP_HEADER_LEN {
        return;
    }
    let udp_len = usize::from(u16::from_be_bytes([f[hl + 4], f[hl + 5]]));
    if udp_len < UDP_HEADER_LEN || hl + udp_len > total {
        return;
    }
    f[hl + 6] = 0;
    f[hl + 7] = 0;
    let mut pseudo = Vec::with_capacity(12 + udp_len);
    pseudo.extend_from_slice(&f[12..20]);
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
    pseudo.extend_from_slice(&f[hl..hl + udp_len]);
    let mut c = internet_checksum(&pseudo);
    if c == 0 {
        c = 0xffff;
    }
    f[hl + 6..hl + 8].copy_from_slice(&c.to_be_bytes());
}

impl Default for PacketTarget {
    fn default() -> Self {
        PacketTarget::new()
    }
}

impl PacketTarget {
    pub fn new() -> PacketTarget {
        let server = Ipv4Addr::new(192, 0, 2, 1);
        let mut seeds = Vec::new();
        for (mt, extra) in [
            (MessageType::Offer, 0),
            (MessageType::Ack, 60),
            (MessageType::Nak, 1),
        ] {
            let p = dhcp_payload(mt, extra);
            seeds.push(build_ipv4_udp(server, Ipv4Addr::BROADCAST, 67, 68, &p));
            seeds.push(build_ipv4_udp(
                server,
                Ipv4Addr::new(192, 0, 2, 50),
                67,
                68,
                &p,
            ));
        }
        for n in [0usize, 1, 7, 8, 9] {
            let payload: Vec<u8> = (0..n as u8).collect();
            seeds.push(build_ipv4_udp(
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::BROADCAST,
                68,
                67,
                &payload,
            ));
        }
        // Ethernet padding after a short datagram, a UDP checksum of 0, IP options.
        let mut padded = seeds[seeds.len() - 1].clone();
        padded.resize(60, 0);
        seeds.push(padded);
        let mut nocsum = seeds[0].clone();
        nocsum[IPV4_HEADER_LEN + 6] = 0;
        nocsum[IPV4_HEADER_LEN + 7] = 0;
        seeds.push(nocsum);
        seeds.push(with_ip_options(&seeds[1], 1));
        seeds.push(with_ip_options(&seeds[2], 10));
        PacketTarget { seeds, accepted: 0 }
    }

    pub fn generate(&mut self, rng: &mut Rng, input: &mut Vec<u8>) {
        // Byte 0 of the input tells `run` whether checksums were fixed; byte 1 is a
        // round-trip case selector. The rest is the frame.
        if rng.chance(5) {
            // Build/parse round trip with random addresses, ports and payload.
            input.push(2);
            let n = if rng.chance(3) {
                rng.range(1000, 70000)
            } else {
                rng.below(600)
            };
            input.extend(rng.bytes(12 + n));
            return;
        }
        let s = rng.below(self.seeds.len());
        let o = rng.below(self.seeds.len());
        let mut frame = self.seeds[s].clone();
        mutate(rng, &mut frame, &self.seeds[o], 4);
        if rng.chance(50) {
            if rng.chance(50) {
                fix_udp_checksum(&mut frame);
            }
            fix_ip_checksum(&mut frame);
        }
        input.push(0);
        input.extend_from_slice(&frame);
    }

    pub fn run(&mut self, input: &[u8]) {
        let Some((&mode, frame)) = input.split_first() else {
            return;
        };
        if mode == 2 {
            return self.round_trip(frame);
        }
        let checked = parse_ipv4_udp(frame, false);
        let unchecked = parse_ipv4_udp(frame, true);
        if let Ok(udp) = &checked {
            assert_eq!(
                Ok(*udp),
                unchecked,
                "accepted with the checksum checked but not without"
            );
        }
        if let Ok(udp) = unchecked {
            self.accepted += 1;
            let base = frame.as_ptr() as usize;
            let start = udp.payload.as_ptr() as usize;
            assert!(start >= base && start + udp.payload.len() <= base + frame.len());
            let off = start - base;
            let hl = usize::from(frame[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([frame[2], frame[3]]));
            assert!(hl >= IPV4_HEADER_LEN && off == hl + UDP_HEADER_LEN);
            assert!(
                off + udp.payload.len() <= total,
                "payload past the IPv4 total length"
            );
            let udp_len = usize::from(u16::from_be_bytes([frame[hl + 4], frame[hl + 5]]));
            assert_eq!(udp.payload.len() + UDP_HEADER_LEN, udp_len);
        }
    }

    fn round_trip(&mut self, b: &[u8]) {
        if b.len() < 12 {
            return;
        }
        let src = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        let dst = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
        let sport = u16::from_be_bytes([b[8], b[9]]);
        let dport = u16::from_be_bytes([b[10], b[11]]);
        let payload = &b[12..];
        let frame = build_ipv4_udp(src, dst, sport, dport, payload);
        let udp = parse_ipv4_udp(&frame, false).expect("a built frame parses");
        assert_eq!((udp.src_addr, udp.dst_addr), (src, dst));
        assert_eq!((udp.src_port, udp.dst_port), (sport, dport));
        let kept = payload.len().min(MAX_UDP_PAYLOAD);
        assert_eq!(udp.payload, &payload[..kept]);
        // Padding after the datagram is ignored.
        let mut padded = frame.clone();
        padded.extend_from_slice(&[0xee; 18]);
        assert_eq!(parse_ipv4_udp(&padded, false), Ok(udp));
        self.accepted += 1;
    }
}
