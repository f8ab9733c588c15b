//! Hand-crafted DHCP packets and a sender, for "foreign and garbage packets" tests.

use crate::netns::Netns;
pub use netcontainer_lease::testing::Reply;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

pub const DISCOVER: u8 = 1;
pub const OFFER: u8 = 2;
pub const REQUEST: u8 = 3;
pub const ACK: u8 = 5;
pub const NAK: u8 = 6;

/// A server reply (OFFER/ACK/NAK) from 192.0.2.1 for `yiaddr`: options 53, 54, then
/// for anything but a NAK a lease of `lease_secs`, mask /24 and router 192.0.2.1. A NAK
/// offers no address. Set `op` to 1 to make it look like a client's message.
pub fn server_reply(
    msg_type: u8,
    xid: u32,
    chaddr: [u8; 6],
    yiaddr: Ipv4Addr,
    lease_secs: u32,
) -> Reply {
    let server = Ipv4Addr::new(192, 0, 2, 1);
    if msg_type == NAK {
        return Reply::new(msg_type, xid, chaddr, Ipv4Addr::UNSPECIFIED).ip(54, server);
    }
    Reply::new(msg_type, xid, chaddr, yiaddr)
        .ip(54, server)
        .u32(51, lease_secs)
        .ip(1, Ipv4Addr::new(255, 255, 255, 0))
        .ip(3, server)
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
        let p = server_reply(
            ACK,
            0xdeadbeef,
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(192, 0, 2, 99),
            3600,
        )
        .encode();
        assert_eq!(p.len(), 300);
        assert_eq!(&p[4..8], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&p[16..20], &[192, 0, 2, 99]);
        assert_eq!(&p[240..243], &[53, 1, ACK]);
        let nak = server_reply(NAK, 1, [2, 0, 0, 0, 0, 1], Ipv4Addr::new(192, 0, 2, 99), 60);
        assert_eq!(nak.yiaddr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(nak.options.len(), 2);
        assert_eq!(garbage(1, 16), garbage(1, 16));
    }
}
