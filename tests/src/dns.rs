//! A tiny DNS A-record query over UDP (no resolver library, no system resolver).

use crate::netns::Netns;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

/// Ask `server` for the A record of `name` from inside `ns`. None on no answer/NXDOMAIN.
pub fn query_a_in(ns: &Netns, server: SocketAddrV4, name: &str) -> Option<Ipv4Addr> {
    ns.run_in(|| query_a(server, name)).ok().flatten()
}

/// Ask `server` for the A record of `name` (in the caller's namespace). Up to 3 tries of
/// 1 s each.
pub fn query_a(server: SocketAddrV4, name: &str) -> Option<Ipv4Addr> {
    let sock = UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let id: u16 = (std::process::id() as u16) ^ (name.len() as u16).wrapping_mul(7919);
    let q = encode_query(id, name);
    let mut buf = [0u8; 1500];
    for _ in 0..3 {
        sock.send_to(&q, server).ok()?;
        // Until a timeout: then resend.
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            if let Some(r) = decode_a(&buf[..n], id) {
                return r;
            }
        }
    }
    None
}

pub fn encode_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD, 1 question
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[0, 1, 0, 1]); // A, IN
    q
}

/// Some(Some(addr)) on an answer with an A record, Some(None) on a valid reply without one,
/// None if the packet is not a reply to `id`.
pub fn decode_a(p: &[u8], id: u16) -> Option<Option<Ipv4Addr>> {
    if p.len() < 12 || u16::from_be_bytes([p[0], p[1]]) != id || p[2] & 0x80 == 0 {
        return None;
    }
    let qd = u16::from_be_bytes([p[4], p[5]]) as usize;
    let an = u16::from_be_bytes([p[6], p[7]]) as usize;
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(p, i)? + 4;
    }
    for _ in 0..an {
        i = skip_name(p, i)?;
        let h = p.get(i..i + 10)?;
        let (ty, len) = (
            u16::from_be_bytes([h[0], h[1]]),
            u16::from_be_bytes([h[8], h[9]]) as usize,
        );
        i += 10;
        let data = p.get(i..i + len)?;
        if ty == 1 && len == 4 {
            return Some(Some(Ipv4Addr::new(data[0], data[1], data[2], data[3])));
        }
        i += len;
    }
    Some(None)
}

fn skip_name(p: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let l = *p.get(i)?;
        if l == 0 {
            return Some(i + 1);
        }
        if l & 0xc0 == 0xc0 {
            return Some(i + 2);
        }
        i += 1 + l as usize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn roundtrip() {
        let q = encode_query(0x1234, "web1.lan.test");
        // Build a reply: the query with QR set, 1 answer with a compressed name.
        let mut r = q.clone();
        r[2] |= 0x80;
        r[7] = 1;
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 74]);
        assert_eq!(
            decode_a(&r, 0x1234),
            Some(Some(Ipv4Addr::new(192, 0, 2, 74)))
        );
        assert_eq!(decode_a(&r, 0x9999), None);
    }
}
