//! How many relayed connections (or UDP sessions) may be open at a time: in
//! all, per client address, and per client /64. The relay answers anyone
//! on the LAN, so a global cap alone would let one host take every slot
//! and leave the others refused; per-source caps below the total keep the
//! others served while one host holds its maximum. Over IPv6 one host can
//! use any number of addresses of its /64, hence the cap per /64 too.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

/// The caps of one kind of flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub total: usize,
    pub per_address: usize,
    /// Per /64 of an IPv6 client (IPv4 clients count per address only).
    pub per_prefix: usize,
}

impl Caps {
    /// `total`, an eighth of it per address and a quarter per /64: eight
    /// hosts, or four /64s, are served whatever one of them holds.
    pub const fn shares_of(total: usize) -> Caps {
        Caps {
            total,
            per_address: total / 8,
            per_prefix: total / 4,
        }
    }
}

/// Why a flow was refused: the cap it met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{0} open in all")]
    Total(usize),
    #[error("{0} open from this address")]
    Address(usize),
    #[error("{0} open from this /64")]
    Prefix(usize),
}

/// The flows open now, by source. Shared by every listener of one kind.
#[derive(Debug)]
pub struct Limits {
    caps: Caps,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
    by_prefix: HashMap<Ipv6Addr, usize>,
}

/// The /64 of an IPv6 client (an IPv4-mapped one is an IPv4 client).
fn prefix_of(a: IpAddr) -> Option<Ipv6Addr> {
    match a {
        IpAddr::V6(a) if a.to_ipv4_mapped().is_none() => {
            Some(Ipv6Addr::from(u128::from(a) & (u128::MAX << 64)))
        }
        _ => None,
    }
}

impl Limits {
    pub fn new(caps: Caps) -> Arc<Limits> {
        Arc::new(Limits {
            caps,
            open: Mutex::default(),
        })
    }

    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// A slot for one more flow from `peer`, held until the [`Slot`] is
    /// dropped; or the cap it would pass.
    pub fn try_acquire(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refused> {
        let mut open = self.open.lock().expect("relay limits lock");
        let caps = self.caps;
        if open.total >= caps.total {
            return Err(Refused::Total(caps.total));
        }
        if open.by_address.get(&peer).copied().unwrap_or(0) >= caps.per_address {
            return Err(Refused::Address(caps.per_address));
        }
        let prefix = prefix_of(peer);
        if let Some(p) = prefix
            && open.by_prefix.get(&p).copied().unwrap_or(0) >= caps.per_prefix
        {
            return Err(Refused::Prefix(caps.per_prefix));
        }
        open.total += 1;
        *open.by_address.entry(peer).or_default() += 1;
        if let Some(p) = prefix {
            *open.by_prefix.entry(p).or_default() += 1;
        }
        Ok(Slot {
            limits: self.clone(),
            peer,
        })
    }

    /// Flows open now (in all, and from `peer`).
    pub fn open(&self, peer: IpAddr) -> (usize, usize) {
        let open = self.open.lock().expect("relay limits lock");
        (open.total, open.by_address.get(&peer).copied().unwrap_or(0))
    }

    fn release(&self, peer: IpAddr) {
        let mut open = self.open.lock().expect("relay limits lock");
        open.total = open.total.saturating_sub(1);
        // Entries go with their last flow: the maps hold open sources only.
        fn down<K: std::hash::Hash + Eq>(m: &mut HashMap<K, usize>, k: K) {
            if let Some(n) = m.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&k);
                }
            }
        }
        down(&mut open.by_address, peer);
        if let Some(p) = prefix_of(peer) {
            down(&mut open.by_prefix, p);
        }
    }
}

/// One open flow; its slot is given back when dropped.
#[derive(Debug)]
pub struct Slot {
    limits: Arc<Limits>,
    peer: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limits.release(self.peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn shares_leave_room_for_others() {
        let c = Caps::shares_of(512);
        assert_eq!((c.total, c.per_address, c.per_prefix), (512, 64, 128));
    }

    #[test]
    fn one_address_holds_its_share_and_another_is_served() {
        let l = Limits::new(Caps {
            total: 8,
            per_address: 2,
            per_prefix: 3,
        });
        let a = ip("2001:db8:1::20");
        let held: Vec<Slot> = (0..2).map(|_| l.try_acquire(a).unwrap()).collect();
        assert_eq!(l.try_acquire(a).unwrap_err(), Refused::Address(2));
        // Another address of the same /64: one more, then the /64 is full.
        let a2 = ip("2001:db8:1::21");
        let _b = l.try_acquire(a2).unwrap();
        assert_eq!(l.try_acquire(a2).unwrap_err(), Refused::Prefix(3));
        // Another /64, and IPv4 clients (per address only), are served.
        let _c = l.try_acquire(ip("2001:db8:2::20")).unwrap();
        let v4: Vec<Slot> = (0..2)
            .map(|_| l.try_acquire(ip("192.0.2.9")).unwrap())
            .collect();
        assert_eq!(l.open(a), (6, 2));
        drop(held);
        assert_eq!(l.open(a), (4, 0));
        let _again = l.try_acquire(a).unwrap();
        drop(v4);
        // The per-source maps hold open sources only.
        assert_eq!(l.open.lock().unwrap().by_address.len(), 3);
    }

    #[test]
    fn the_total_holds_whatever_the_sources() {
        let l = Limits::new(Caps {
            total: 4,
            per_address: 4,
            per_prefix: 4,
        });
        let slots: Vec<Slot> = (1..=4u16)
            .map(|i| {
                let a = Ipv6Addr::new(0x2001, 0xdb8, i, 0, 0, 0, 0, 1);
                l.try_acquire(a.into()).unwrap()
            })
            .collect();
        assert_eq!(
            l.try_acquire(ip("2001:db8:9::1")).unwrap_err(),
            Refused::Total(4)
        );
        drop(slots);
        assert_eq!(l.open(ip("2001:db8:9::1")), (0, 0));
        let o = l.open.lock().unwrap();
        assert!(o.by_address.is_empty() && o.by_prefix.is_empty());
    }

    #[test]
    fn ipv4_mapped_clients_count_per_address_only() {
        assert_eq!(prefix_of(ip("::ffff:192.0.2.9")), None);
        assert_eq!(
            prefix_of(ip("2001:db8:1::20")),
            Some("2001:db8:1::".parse().unwrap())
        );
    }
}
