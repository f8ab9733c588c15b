//! Hand-crafted DHCP packets and a sender, for "foreign and garbage packets" tests.

use crate::netns::Netns;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

pub const DISCOVER: u8 = 1;
pub const OFFER: u8 = 2;
pub const REQUEST: u8 = 3;
pub const ACK: u8 = 5;
pub const NAK: u8 = 6;

/// A BOOTP/DHCP message with the fields tests need.
#[derive(Clone, Debug)]
pub struct Packet {
    /// 1 BOOTREQUEST, 2 BOOTREPLY.
    pub op: u8,
    pub xid: u32,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub chaddr: [u8; 6],
    pub msg_type: u8,
    pub server_id: Option<Ipv4Addr>,
    pub lease_secs: Option<u32>,
    pub subnet_mask: Option<Ipv4Addr>,
    pub router: Option<Ipv4Addr>,
}

impl Packet {
    /// A server reply (OFFER/ACK/NAK) from 192.0.2.1 for `yiaddr`.
    pub fn reply(msg_type: u8, xid: u32, chaddr: [u8; 6], yiaddr: Ipv4Addr) -> Packet {
        let server = Ipv4Addr::new(192, 0, 2, 1);
        let nak = msg_type == NAK;
        Packet {
            op: 2,
            xid,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: if nak { Ipv4Addr::UNSPECIFIED } else { yiaddr },
            siaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            msg_type,
            server_id: Some(server),
            lease_secs: (!nak).then_some(3600),
            subnet_mask: (!nak).then_some(Ipv4Addr::new(255, 255, 255, 0)),
            router: (!nak).then_some(server),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut p = vec![0u8; 240];
        p[0] = self.op;
        p[1] = 1; // htype ethernet
        p[2] = 6; // hlen
        p[4..8].copy_from_slice(&self.xid.to_be_bytes());
        p[10..12].copy_from_slice(&self.flags.to_be_bytes());
        p[12..16].copy_from_slice(&self.ciaddr.octets());
        p[16..20].copy_from_slice(&self.yiaddr.octets());
        p[20..24].copy_from_slice(&self.siaddr.octets());
        p[28..34].copy_from_slice(&self.chaddr);
        p[236..240].copy_from_slice(&[99, 130, 83, 99]); // magic cookie
        p.extend_from_slice(&[53, 1, self.msg_type]);
        if let Some(s) = self.server_id {
            p.push(54);
            p.push(4);
            p.extend_from_slice(&s.octets());
        }
        if let Some(l) = self.lease_secs {
            p.extend_from_slice(&[51, 4]);
            p.extend_from_slice(&l.to_be_bytes());
        }
        if let Some(m) = self.subnet_mask {
            p.extend_from_slice(&[1, 4]);
            p.extend_from_slice(&m.octets());
        }
        if let Some(r) = self.router {
            p.extend_from_slice(&[3, 4]);
            p.extend_from_slice(&r.octets());
        }
        p.push(255);
        while p.len() < 300 {
            p.push(0);
        }
        p
    }
}

/// Parse "aa:bb:cc:dd:ee:ff".
pub fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("mac byte"))
        .collect();
    v.try_into().expect("6 bytes")
}

/// Deterministic pseudo-random bytes (xorshift), no dependency.
pub fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Send each payload as UDP from port `src_port` in `ns` (bound to device `ifname`, with
/// SO_BROADCAST) to `dst`. Only use addresses of the test bed.
pub fn send_udp_in(
    ns: &Netns,
    ifname: &str,
    src_port: u16,
    dst: SocketAddrV4,
    payloads: &[Vec<u8>],
) {
    assert!(
        dst.ip().is_broadcast()
            || dst.ip().octets()[..3] == [192, 0, 2]
            || dst.ip().octets()[..3] == [203, 0, 113],
        "test bed sender only sends to the bed's LAN: {dst}"
    );
    ns.run_in(|| {
        // The source port is for realism only (the agent filters on port 68): if it is
        // taken in this namespace, any port will do.
        let sock = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, src_port))
            .or_else(|_| UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)))
            .expect("bind sender");
        sock.set_broadcast(true).unwrap();
        let dev = std::ffi::CString::new(ifname).unwrap();
        // SAFETY: setsockopt with a valid fd and a NUL-terminated device name.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_BINDTODEVICE,
                dev.as_ptr() as *const libc::c_void,
                dev.as_bytes_with_nul().len() as libc::socklen_t,
            )
        };
        assert_eq!(
            rc,
            0,
            "SO_BINDTODEVICE: {}",
            std::io::Error::last_os_error()
        );
        for p in payloads {
            sock.send_to(p, dst).expect("send");
        }
    })
    .expect("enter netns");
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn encodes_reply() {
        let p = Packet::reply(
            ACK,
            0xdeadbeef,
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(192, 0, 2, 99),
        )
        .encode();
        assert_eq!(p.len(), 300);
        assert_eq!(&p[4..8], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&p[16..20], &[192, 0, 2, 99]);
        assert_eq!(&p[240..243], &[53, 1, ACK]);
        assert_eq!(garbage(1, 16), garbage(1, 16));
    }
}
