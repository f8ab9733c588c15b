//! The kernel-side filter of the raw DHCP socket: a classic BPF program that
//! drops, before they are queued, the frames [`parse_ipv4_udp`] would refuse
//! anyway for not being unfragmented IPv4/UDP to port 68. It is built from
//! `libc` types, so it sits here with the socket rather than in the pure
//! framing code of `netcontainer_lease::packet`.
//!
//! [`parse_ipv4_udp`]: netcontainer_lease::packet::parse_ipv4_udp

use netcontainer_lease::packet::{DHCP_CLIENT_PORT, IP_MF_OFFSET_MASK, IPPROTO_UDP};

const fn bpf_stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn bpf_jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// A classic BPF program for an AF_PACKET SOCK_DGRAM socket (data starts at the IPv4
/// header) that accepts only unfragmented IPv4/UDP datagrams to port 68.
///
/// ```text
/// 0: ldb [0]                 ; version/IHL
/// 1: and #0xf0
/// 2: jeq #0x40, 3, 11        ; IPv4?
/// 3: ldb [9]                 ; protocol
/// 4: jeq #17, 5, 11          ; UDP?
/// 5: ldh [6]                 ; flags/fragment offset
/// 6: jset #0x3fff, 11, 7     ; MF or offset set -> drop
/// 7: ldxb 4*([0]&0xf)        ; X = IP header length
/// 8: ldh [x+2]               ; UDP destination port
/// 9: jeq #68, 10, 11
/// 10: ret #0xffffffff        ; accept whole packet
/// 11: ret #0                 ; drop
/// ```
pub fn dhcp_client_filter() -> Vec<libc::sock_filter> {
    use libc::{
        BPF_ABS, BPF_ALU, BPF_AND, BPF_B, BPF_H, BPF_IND, BPF_JEQ, BPF_JMP, BPF_JSET, BPF_K,
        BPF_LD, BPF_LDX, BPF_MSH, BPF_RET,
    };
    vec![
        bpf_stmt(BPF_LD | BPF_B | BPF_ABS, 0),
        bpf_stmt(BPF_ALU | BPF_AND | BPF_K, 0xf0),
        bpf_jump(BPF_JMP | BPF_JEQ | BPF_K, 0x40, 0, 8),
        bpf_stmt(BPF_LD | BPF_B | BPF_ABS, 9),
        bpf_jump(BPF_JMP | BPF_JEQ | BPF_K, u32::from(IPPROTO_UDP), 0, 6),
        bpf_stmt(BPF_LD | BPF_H | BPF_ABS, 6),
        bpf_jump(
            BPF_JMP | BPF_JSET | BPF_K,
            u32::from(IP_MF_OFFSET_MASK),
            4,
            0,
        ),
        bpf_stmt(BPF_LDX | BPF_B | BPF_MSH, 0),
        bpf_stmt(BPF_LD | BPF_H | BPF_IND, 2),
        bpf_jump(BPF_JMP | BPF_JEQ | BPF_K, u32::from(DHCP_CLIENT_PORT), 0, 1),
        bpf_stmt(BPF_RET | BPF_K, u32::MAX),
        bpf_stmt(BPF_RET | BPF_K, 0),
    ]
}

/// A classic BPF program for the ARP socket (AF_PACKET SOCK_DGRAM: data starts at the
/// ARP header) that accepts only ARP packets whose sender IPv4 address is `address` or,
/// with `or_target`, whose target address is. Without it every ARP packet on the LAN
/// (every host's neighbour lookups, every other router's announcements) would wake every
/// agent on it; the guard looks only at senders claiming its address (RFC 5227 section
/// 2.4), the probe also at other hosts' probes for it (target, section 2.1.1).
///
/// ```text
/// 0: ld [14]                 ; sender protocol address
/// 1: jeq #address, 4, 2
/// 2: ld [24]                 ; target protocol address
/// 3: jeq #address, 4, 5
/// 4: ret #0xffffffff
/// 5: ret #0
/// ```
///
/// Without `or_target`: `ld [14]; jeq #address, accept, drop`.
pub fn arp_filter(address: std::net::Ipv4Addr, or_target: bool) -> Vec<libc::sock_filter> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    const SENDER_IP: u32 = 14;
    const TARGET_IP: u32 = 24;
    let a = u32::from(address);
    let accept = bpf_stmt(BPF_RET | BPF_K, u32::MAX);
    let drop = bpf_stmt(BPF_RET | BPF_K, 0);
    if or_target {
        vec![
            bpf_stmt(BPF_LD | BPF_W | BPF_ABS, SENDER_IP),
            bpf_jump(BPF_JMP | BPF_JEQ | BPF_K, a, 2, 0),
            bpf_stmt(BPF_LD | BPF_W | BPF_ABS, TARGET_IP),
            bpf_jump(BPF_JMP | BPF_JEQ | BPF_K, a, 0, 1),
            accept,
            drop,
        ]
    } else {
        vec![
            bpf_stmt(BPF_LD | BPF_W | BPF_ABS, SENDER_IP),
            bpf_jump(BPF_JMP | BPF_JEQ | BPF_K, a, 0, 1),
            accept,
            drop,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netcontainer_lease::packet::build_ipv4_udp;
    use netcontainer_lease::testing::fix_ip_checksum;
    use rand::Rng;
    use std::net::Ipv4Addr;

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);

    fn frame(payload: &[u8]) -> Vec<u8> {
        build_ipv4_udp(SRC, DST, 67, 68, payload)
    }

    /// A minimal classic BPF interpreter covering the instructions used by the filter.
    /// Returns the accept length (0 = drop). Loads beyond the packet drop it, as in the kernel.
    fn run_bpf(prog: &[libc::sock_filter], pkt: &[u8]) -> u32 {
        use libc::*;
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let ld = |off: u32, size: usize| -> Option<u32> {
            let off = off as usize;
            let b = pkt.get(off..off.checked_add(size)?)?;
            Some(b.iter().fold(0u32, |acc, &v| (acc << 8) | u32::from(v)))
        };
        loop {
            let ins = prog[pc];
            let code = u32::from(ins.code);
            pc += 1;
            match code {
                c if c == BPF_LD | BPF_B | BPF_ABS => match ld(ins.k, 1) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c == BPF_LD | BPF_W | BPF_ABS => match ld(ins.k, 4) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c == BPF_LD | BPF_H | BPF_ABS => match ld(ins.k, 2) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c == BPF_LD | BPF_H | BPF_IND => match ld(x.wrapping_add(ins.k), 2) {
                    Some(v) => a = v,
                    None => return 0,
                },
                c if c == BPF_LDX | BPF_B | BPF_MSH => match ld(ins.k, 1) {
                    Some(v) => x = 4 * (v & 0xf),
                    None => return 0,
                },
                c if c == BPF_ALU | BPF_AND | BPF_K => a &= ins.k,
                c if c == BPF_JMP | BPF_JEQ | BPF_K => {
                    pc += usize::from(if a == ins.k { ins.jt } else { ins.jf })
                }
                c if c == BPF_JMP | BPF_JSET | BPF_K => {
                    pc += usize::from(if a & ins.k != 0 { ins.jt } else { ins.jf })
                }
                c if c == BPF_RET | BPF_K => return ins.k,
                other => panic!("unsupported BPF opcode {other:#x}"),
            }
        }
    }

    fn filter_accepts(pkt: &[u8]) -> bool {
        run_bpf(&dhcp_client_filter(), pkt) != 0
    }

    /// An Ethernet/IPv4 ARP payload (28 bytes, as a SOCK_DGRAM socket reads it).
    fn arp(op: u16, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
        let mut p = vec![0, 1, 8, 0, 6, 4];
        p.extend_from_slice(&op.to_be_bytes());
        p.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&sender.octets());
        p.extend_from_slice(&[0; 6]);
        p.extend_from_slice(&target.octets());
        p
    }

    #[test]
    fn the_arp_filter_passes_only_what_is_about_the_address() {
        let ours = Ipv4Addr::new(192, 0, 2, 50);
        let other = Ipv4Addr::new(192, 0, 2, 60);
        let zero = Ipv4Addr::UNSPECIFIED;
        for or_target in [false, true] {
            let prog = arp_filter(ours, or_target);
            for (i, ins) in prog.iter().enumerate() {
                if u32::from(ins.code) & 0x07 == libc::BPF_JMP {
                    assert!(i + 1 + usize::from(ins.jt.max(ins.jf)) < prog.len());
                }
            }
            let passes = |p: &[u8]| run_bpf(&prog, p) != 0;
            // Someone else claims our address (a reply, a gratuitous ARP): always.
            assert!(passes(&arp(2, ours, other)));
            assert!(passes(&arp(1, ours, ours)));
            // Another host's probe for it (sender 0.0.0.0): the probe's socket only.
            assert_eq!(passes(&arp(1, zero, ours)), or_target);
            // A neighbour asking for us, in the guard: the kernel answers, the guard
            // needs nothing of it.
            assert_eq!(passes(&arp(1, other, ours)), or_target);
            // The rest of the LAN's ARP: never.
            assert!(!passes(&arp(1, other, Ipv4Addr::new(192, 0, 2, 70))));
            assert!(!passes(&arp(2, other, other)));
            // Truncated before the addresses: dropped.
            assert!(!passes(&arp(2, ours, ours)[..16]));
            assert!(!passes(&[]));
        }
    }

    #[test]
    fn filter_program() {
        let prog = dhcp_client_filter();
        // All jumps stay inside the program and it ends with a return.
        for (i, ins) in prog.iter().enumerate() {
            if u32::from(ins.code) & 0x07 == libc::BPF_JMP {
                assert!(i + 1 + usize::from(ins.jt.max(ins.jf)) < prog.len());
            }
        }
        let last = prog.last().unwrap();
        assert_eq!(u32::from(last.code), libc::BPF_RET | libc::BPF_K);
        assert!(filter_accepts(&frame(b"to 68")));
        assert!(filter_accepts(&build_ipv4_udp(
            SRC,
            Ipv4Addr::BROADCAST,
            67,
            68,
            b""
        )));
        assert!(!filter_accepts(&build_ipv4_udp(SRC, DST, 68, 67, b"to 67")));
        assert!(!filter_accepts(&build_ipv4_udp(SRC, DST, 68, 69, b"to 69")));
        assert!(!filter_accepts(&build_ipv4_udp(SRC, DST, 68, 68 << 8, b"")));
        // IPv6 header start.
        let mut v6 = frame(b"x");
        v6[0] = 0x60;
        assert!(!filter_accepts(&v6));
        // Truncated before the UDP port: dropped.
        assert!(!filter_accepts(&frame(b"")[..22]));
        assert!(!filter_accepts(&[]));
    }

    #[test]
    fn ip_options_are_accepted() {
        let base = frame(b"opts");
        let mut f = vec![0x46];
        f.extend_from_slice(&base[1..20]);
        f.extend_from_slice(&[1, 1, 1, 0]); // NOP NOP NOP EOL
        f.extend_from_slice(&base[20..]);
        let total = (f.len() as u16).to_be_bytes();
        f[2..4].copy_from_slice(&total);
        fix_ip_checksum(&mut f);
        assert!(filter_accepts(&f));
    }

    #[test]
    fn rejects_fragments() {
        for flags in [0x2000u16, 0x0001, 0x1fff, 0x2001] {
            let mut f = frame(b"frag");
            f[6..8].copy_from_slice(&flags.to_be_bytes());
            fix_ip_checksum(&mut f);
            assert!(!filter_accepts(&f));
        }
        // DF alone is fine.
        let mut f = frame(b"df");
        f[6] = 0x40;
        fix_ip_checksum(&mut f);
        assert!(filter_accepts(&f));
    }

    #[test]
    fn rejects_not_udp() {
        let mut f = frame(b"x");
        f[9] = 6;
        fix_ip_checksum(&mut f);
        assert!(!filter_accepts(&f));
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
            let _ = filter_accepts(&buf[..len]);
        }
    }
}
