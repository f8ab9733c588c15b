//! The egress allow-list of a gateway-mode service (`up --egress`, label
//! `netcontainer.egress`, the agent's `--egress`): the IPv4 networks its own
//! connections may reach through its router. One parser for all three.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network, `ADDR/LEN` (or a bare address, `/32`), stored with the
/// host bits cleared so that two spellings of one network compare equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Net {
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Ipv4Net, String> {
        if prefix_len > 32 {
            return Err(format!("prefix length {prefix_len} is over 32"));
        }
        let mask = u32::MAX
            .checked_shl(32 - u32::from(prefix_len))
            .unwrap_or(0);
        Ok(Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix_len,
        })
    }

    /// The network's first address.
    pub fn addr(self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix_len(self) -> u8 {
        self.prefix_len
    }

    pub fn contains(self, a: Ipv4Addr) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        u32::from(a) & mask == u32::from(self.addr)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Ipv4Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (a, p) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an IPv4 network (ADDR/LEN)"))?;
        let prefix_len: u8 = p
            .parse()
            .map_err(|_| format!("{s:?}: {p:?} is not a prefix length"))?;
        Ipv4Net::new(addr, prefix_len).map_err(|e| format!("{s:?}: {e}"))
    }
}

/// The most networks one allow-list holds (it becomes one anonymous set in
/// one rule; a longer list belongs in the operator's own firewall).
pub const MAX_EGRESS: usize = 256;

/// Parses `CIDR,CIDR,...`: at least one network, at most [`MAX_EGRESS`],
/// sorted and without repeats. `0.0.0.0/0` is refused: it allows everything,
/// which is what no list says.
pub fn parse_egress(s: &str) -> Result<Vec<Ipv4Net>, String> {
    let mut nets = Vec::new();
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!("{s:?}: an empty network in the list"));
        }
        let n: Ipv4Net = part.parse()?;
        if n.prefix_len == 0 {
            return Err(format!(
                "{part:?} allows everything: leave the allow-list out instead"
            ));
        }
        nets.push(n);
    }
    nets.sort();
    nets.dedup();
    if nets.len() > MAX_EGRESS {
        return Err(format!("{} networks, at most {MAX_EGRESS}", nets.len()));
    }
    Ok(nets)
}

/// The list as [`parse_egress`] reads it back.
pub fn egress_text(nets: &[Ipv4Net]) -> String {
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_lists_parse_round_trip_and_refuse_nonsense() {
        let l = parse_egress(" 198.51.100.7 , 192.0.2.9/24,203.0.113.0/25,192.0.2.0/24").unwrap();
        assert_eq!(
            egress_text(&l),
            "192.0.2.0/24,198.51.100.7/32,203.0.113.0/25"
        );
        assert_eq!(parse_egress(&egress_text(&l)).unwrap(), l);
        assert!(l[0].contains("192.0.2.200".parse().unwrap()));
        assert!(!l[2].contains("203.0.113.200".parse().unwrap()));
        for bad in [
            "",
            ",",
            "192.0.2.0/24,",
            "192.0.2.0/33",
            "x",
            "0.0.0.0/0",
            "192.0.2.1/a",
            "2001:db8::/32",
        ] {
            let e = parse_egress(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
        let many: Vec<String> = (0..=MAX_EGRESS)
            .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
            .collect();
        assert!(
            parse_egress(&many.join(","))
                .unwrap_err()
                .contains("at most")
        );
    }
}
