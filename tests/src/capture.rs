//! A packet capture on one interface of a test namespace: `tcpdump -U -w` into a temp
//! file (`--immediate-mode`: without it packets wait up to a second in the ring and a
//! stop loses them), read back with a small pcap reader of our own (Ethernet, IPv4,
//! UDP/DHCP and TCP SYNs), so tests judge what was on the wire, not what the agent says.

use crate::TempDir;
use crate::netns::Netns;
use crate::proc::ProcGuard;
use std::net::Ipv4Addr;
use std::time::Duration;

/// One IPv4 packet seen by the capture.
#[derive(Clone, Debug, PartialEq)]
pub struct Packet {
    /// Seconds since the capture's first packet.
    pub at: f64,
    pub src_mac: [u8; 6],
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub kind: Kind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Dhcp(Dhcp),
    /// A TCP segment: its ports, flags byte and MSS option (if any).
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        mss: Option<u16>,
    },
    Other,
}

/// The fields of a DHCP message the tests judge.
#[derive(Clone, Debug, PartialEq)]
pub struct Dhcp {
    pub sport: u16,
    pub dport: u16,
    /// Option 53 (1 DISCOVER, 2 OFFER, 3 REQUEST, 5 ACK, 6 NAK, ...).
    pub msg_type: u8,
    pub broadcast_flag: bool,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    /// The codes of every option present, in order.
    pub options: Vec<u8>,
}

pub const OFFER: u8 = 2;
pub const REQUEST: u8 = 3;
pub const ACK: u8 = 5;
pub const TCP_SYN: u8 = 0x02;

impl Packet {
    pub fn dhcp(&self) -> Option<&Dhcp> {
        match &self.kind {
            Kind::Dhcp(d) => Some(d),
            _ => None,
        }
    }
}

/// A running tcpdump; [`Capture::stop`] ends it and returns the packets.
pub struct Capture {
    proc: Option<ProcGuard>,
    dir: TempDir,
}

impl Capture {
    /// Capture on `ifname` in `ns` with the BPF `filter` (e.g. "udp port 67 or udp port
    /// 68"), waiting (bounded) until tcpdump says it listens.
    pub fn start(ns: &Netns, ifname: &str, filter: &str) -> Capture {
        let dir = TempDir::new("pcap");
        let file = dir.join("cap.pcap").display().to_string();
        let log = dir.join("tcpdump.log");
        let mut args = vec![
            "tcpdump",
            "-i",
            ifname,
            "-n",
            "-U",
            "--immediate-mode",
            "-s",
            "512",
            "-w",
            &file,
        ];
        args.extend(filter.split_whitespace());
        let proc = ns.spawn_guarded(&args, &[], Some(&log));
        let mut c = Capture {
            proc: Some(proc),
            dir,
        };
        let ok = crate::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("listening on")
        });
        if !ok || !c.proc.as_mut().is_some_and(|p| p.running()) {
            panic!(
                "tcpdump did not start on {ifname} in {}: {}",
                ns.name(),
                crate::tail(&log, 10)
            );
        }
        c
    }

    /// The packets written so far (tcpdump keeps running).
    pub fn packets(&self) -> Vec<Packet> {
        parse_pcap(&std::fs::read(self.dir.join("cap.pcap")).unwrap_or_default())
    }

    /// Stop tcpdump (SIGTERM flushes the file) and return every packet.
    pub fn stop(&mut self) -> Vec<Packet> {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(3));
        }
        self.packets()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.terminate(Duration::from_secs(3));
        }
    }
}

/// Parse a classic pcap file of Ethernet frames (micro- or nanosecond timestamps, either
/// byte order). A truncated last record is ignored; non-IPv4 frames are skipped.
pub fn parse_pcap(b: &[u8]) -> Vec<Packet> {
    let mut out = Vec::new();
    if b.len() < 24 {
        return out;
    }
    let magic = [b[0], b[1], b[2], b[3]];
    let (le, nanos) = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] => (true, false),
        [0x4d, 0x3c, 0xb2, 0xa1] => (true, true),
        [0xa1, 0xb2, 0xc3, 0xd4] => (false, false),
        [0xa1, 0xb2, 0x3c, 0x4d] => (false, true),
        _ => return out,
    };
    let u32at = |o: usize| {
        let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    if u32at(20) != 1 {
        return out; // not Ethernet
    }
    let mut off = 24;
    let mut first: Option<f64> = None;
    while off + 16 <= b.len() {
        let secs = u32at(off) as f64;
        let frac = u32at(off + 4) as f64 / if nanos { 1e9 } else { 1e6 };
        let caplen = u32at(off + 8) as usize;
        off += 16;
        if off + caplen > b.len() {
            break;
        }
        let t = secs + frac;
        let at = t - *first.get_or_insert(t);
        if let Some(p) = parse_frame(&b[off..off + caplen], at) {
            out.push(p);
        }
        off += caplen;
    }
    out
}

fn parse_frame(f: &[u8], at: f64) -> Option<Packet> {
    if f.len() < 14 + 20 || f[12..14] != [0x08, 0x00] {
        return None;
    }
    let src_mac: [u8; 6] = f[6..12].try_into().ok()?;
    let ip = &f[14..];
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip.len() < ihl {
        return None;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let l4 = &ip[ihl..];
    let kind = match ip[9] {
        17 if l4.len() >= 8 => {
            let sport = u16::from_be_bytes([l4[0], l4[1]]);
            let dport = u16::from_be_bytes([l4[2], l4[3]]);
            match parse_dhcp(&l4[8..], sport, dport) {
                Some(d) if [67, 68].contains(&sport) || [67, 68].contains(&dport) => Kind::Dhcp(d),
                _ => Kind::Other,
            }
        }
        6 if l4.len() >= 20 => {
            let doff = ((l4[12] >> 4) as usize) * 4;
            let mut mss = None;
            let opts = l4.get(20..doff.min(l4.len())).unwrap_or(&[]);
            let mut i = 0;
            while i < opts.len() {
                match opts[i] {
                    0 => break,
                    1 => i += 1,
                    kind => {
                        let len = *opts.get(i + 1)? as usize;
                        if len < 2 || i + len > opts.len() {
                            break;
                        }
                        if kind == 2 && len == 4 {
                            mss = Some(u16::from_be_bytes([opts[i + 2], opts[i + 3]]));
                        }
                        i += len;
                    }
                }
            }
            Kind::Tcp {
                sport: u16::from_be_bytes([l4[0], l4[1]]),
                dport: u16::from_be_bytes([l4[2], l4[3]]),
                flags: l4[13],
                mss,
            }
        }
        _ => Kind::Other,
    };
    Some(Packet {
        at,
        src_mac,
        src,
        dst,
        kind,
    })
}

fn parse_dhcp(p: &[u8], sport: u16, dport: u16) -> Option<Dhcp> {
    if p.len() < 240 || p[236..240] != [99, 130, 83, 99] {
        return None;
    }
    let ip = |o: usize| Ipv4Addr::new(p[o], p[o + 1], p[o + 2], p[o + 3]);
    let mut msg_type = 0;
    let mut options = Vec::new();
    let mut i = 240;
    while i < p.len() {
        match p[i] {
            255 => break,
            0 => i += 1,
            code => {
                let len = *p.get(i + 1)? as usize;
                options.push(code);
                if code == 53 && len == 1 {
                    msg_type = *p.get(i + 2)?;
                }
                i += 2 + len;
            }
        }
    }
    Some(Dhcp {
        sport,
        dport,
        msg_type,
        broadcast_flag: p[10] & 0x80 != 0,
        ciaddr: ip(12),
        yiaddr: ip(16),
        giaddr: ip(24),
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(frame: &[u8], secs: u32) -> Vec<u8> {
        let mut r = Vec::new();
        for v in [secs, 500_000, frame.len() as u32, frame.len() as u32] {
            r.extend_from_slice(&v.to_le_bytes());
        }
        r.extend_from_slice(frame);
        r
    }

    fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(l4);
        f
    }

    #[test]
    fn reads_a_dhcp_ack_and_a_syn_with_its_mss() {
        let mut pcap = Vec::new();
        for v in [0xa1b2c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
            pcap.extend_from_slice(&v.to_le_bytes());
        }
        pcap.truncate(24);
        // DHCP ACK with the broadcast flag, yiaddr 192.0.2.50, options 53=5, 26, end.
        let mut dhcp = vec![0u8; 240];
        dhcp[0] = 2;
        dhcp[10] = 0x80;
        dhcp[16..20].copy_from_slice(&[192, 0, 2, 50]);
        dhcp[236..240].copy_from_slice(&[99, 130, 83, 99]);
        dhcp.extend_from_slice(&[53, 1, 5, 26, 2, 5, 120, 255]);
        let mut udp = vec![0, 67, 0, 68, 0, 0, 0, 0];
        udp.extend_from_slice(&dhcp);
        pcap.extend(record(&ipv4(17, [192, 0, 2, 1], [255; 4], &udp), 10));
        // TCP SYN with NOP, MSS 1360.
        let mut tcp = vec![0u8; 20];
        tcp[0..4].copy_from_slice(&[0x1f, 0x90, 0, 80]);
        tcp[12] = 7 << 4;
        tcp[13] = TCP_SYN;
        tcp.extend_from_slice(&[1, 2, 4, 0x05, 0x50, 0, 0, 0]);
        pcap.extend(record(&ipv4(6, [192, 0, 2, 10], [192, 0, 2, 50], &tcp), 11));
        // A truncated last record is ignored.
        pcap.extend_from_slice(&[1, 2, 3]);

        let p = parse_pcap(&pcap);
        assert_eq!(p.len(), 2, "{p:?}");
        let d = p[0].dhcp().expect("dhcp");
        assert_eq!((d.msg_type, d.broadcast_flag), (ACK, true));
        assert_eq!(d.yiaddr, Ipv4Addr::new(192, 0, 2, 50));
        assert_eq!(d.options, vec![53, 26]);
        assert_eq!(p[0].dst, Ipv4Addr::BROADCAST);
        assert_eq!(
            p[1].kind,
            Kind::Tcp {
                sport: 8080,
                dport: 80,
                flags: TCP_SYN,
                mss: Some(1360)
            }
        );
        assert!((p[1].at - 1.0).abs() < 1e-9);
        assert!(parse_pcap(&[0; 10]).is_empty());
    }
}
