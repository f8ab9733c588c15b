//! DHCPv6 helpers for tests and fuzzers (feature `test-helpers`): reading
//! what the client sent and building server messages byte by byte, without
//! dhcproto, so the tests do not check the client's encoder against itself.

use std::net::Ipv6Addr;

use super::wire::{OptionWalk, code};

/// A client message: type, transaction id and options in order.
#[derive(Clone, Debug)]
pub struct Sent {
    pub msg_type: u8,
    pub xid: u32,
    pub options: Vec<(u16, Vec<u8>)>,
}

impl Sent {
    pub fn parse(p: &[u8]) -> Option<Sent> {
        let head = p.get(..4)?;
        Some(Sent {
            msg_type: head[0],
            xid: u32::from_be_bytes([0, head[1], head[2], head[3]]),
            options: OptionWalk::new(&p[4..])
                .map(|(c, d)| (c, d.to_vec()))
                .collect(),
        })
    }

    pub fn option(&self, c: u16) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(k, _)| *k == c)
            .map(|(_, d)| d.as_slice())
    }

    /// The IAID and addresses of the first IA_NA.
    pub fn ia_na(&self) -> Option<(u32, Vec<Ipv6Addr>)> {
        let d = self.option(code::IA_NA)?;
        let iaid = u32::from_be_bytes(d.get(..4)?.try_into().ok()?);
        let addrs = OptionWalk::new(d.get(12..)?)
            .filter(|(c, _)| *c == code::IA_ADDR)
            .filter_map(|(_, a)| Some(Ipv6Addr::from(<[u8; 16]>::try_from(a.get(..16)?).ok()?)))
            .collect();
        Some((iaid, addrs))
    }
}

/// Appends one option.
pub fn put(out: &mut Vec<u8>, c: u16, data: &[u8]) {
    out.extend_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

/// An IA_NA payload with addresses (address, preferred, valid) and an
/// optional IA status code.
pub fn ia_na(
    iaid: u32,
    t1: u32,
    t2: u32,
    addrs: &[(Ipv6Addr, u32, u32)],
    status: Option<u16>,
) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&iaid.to_be_bytes());
    d.extend_from_slice(&t1.to_be_bytes());
    d.extend_from_slice(&t2.to_be_bytes());
    for (a, p, v) in addrs {
        let mut ad = a.octets().to_vec();
        ad.extend_from_slice(&p.to_be_bytes());
        ad.extend_from_slice(&v.to_be_bytes());
        put(&mut d, code::IA_ADDR, &ad);
    }
    if let Some(s) = status {
        put(&mut d, code::STATUS_CODE, &s.to_be_bytes());
    }
    d
}

/// A server message (2 Advertise, 7 Reply, 10 Reconfigure) answering
/// `to`: its xid and client id, our server id, then `extra` options.
pub fn answer(to: &Sent, msg_type: u8, server_id: &[u8], extra: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let x = to.xid.to_be_bytes();
    let mut p = vec![msg_type, x[1], x[2], x[3]];
    if let Some(cid) = to.option(code::CLIENT_ID) {
        put(&mut p, code::CLIENT_ID, cid);
    }
    put(&mut p, code::SERVER_ID, server_id);
    for (c, d) in extra {
        put(&mut p, *c, d);
    }
    p
}
