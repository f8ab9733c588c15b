//! Watch for an address appearing on an interface, through a netlink socket opened
//! inside the interface's namespace (RTM_NEWADDR on RTMGRP_IPV4_IFADDR, or
//! RTMGRP_IPV6_IFADDR for [`AddrWatch::open6`]). The timestamp is taken when the
//! notification is read, sub-millisecond after the kernel event: much finer than polling
//! `ip -j addr`.
//!
//! IPv6: only global-scope addresses count (not the link-local one), and an address counts
//! when it first appears, which is while its duplicate address detection still runs
//! (`tentative`): DAD is the kernel's, the same for every client.

use crate::netns::Netns;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
/// `ifa_scope` of a global address (RT_SCOPE_UNIVERSE).
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTM_NEWADDR: u16 = 20;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

pub struct AddrWatch {
    fd: OwnedFd,
    ifindex: u32,
    family: i32,
}

impl AddrWatch {
    /// Subscribe to IPv4 address events of `ifname` in `ns`. Call before starting the
    /// client so no event is missed.
    pub fn open(ns: &Netns, ifname: &str) -> std::io::Result<AddrWatch> {
        Self::open_family(ns, ifname, libc::AF_INET)
    }

    /// Subscribe to IPv6 address events of `ifname` in `ns` (global scope only, see
    /// [`AddrWatch::wait6`]).
    pub fn open6(ns: &Netns, ifname: &str) -> std::io::Result<AddrWatch> {
        Self::open_family(ns, ifname, libc::AF_INET6)
    }

    fn open_family(ns: &Netns, ifname: &str, family: i32) -> std::io::Result<AddrWatch> {
        let groups = if family == libc::AF_INET6 {
            RTMGRP_IPV6_IFADDR
        } else {
            RTMGRP_IPV4_IFADDR
        };
        let name = std::ffi::CString::new(ifname).unwrap();
        ns.run_in(|| -> std::io::Result<AddrWatch> {
            // SAFETY: plain socket/bind calls with valid arguments; the fd is owned at once.
            unsafe {
                let ifindex = libc::if_nametoindex(name.as_ptr());
                if ifindex == 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let fd = libc::socket(
                    libc::AF_NETLINK,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::NETLINK_ROUTE,
                );
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let fd = OwnedFd::from_raw_fd(fd);
                let mut sa: libc::sockaddr_nl = std::mem::zeroed();
                sa.nl_family = libc::AF_NETLINK as u16;
                sa.nl_groups = groups;
                let rc = libc::bind(
                    fd.as_raw_fd(),
                    &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                );
                if rc != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(AddrWatch {
                    fd,
                    ifindex,
                    family,
                })
            }
        })?
    }

    /// Wait up to `timeout` for a new IPv4 address on the interface. Returns the address,
    /// its prefix length and the instant the notification was read.
    pub fn wait(&self, timeout: Duration) -> Option<(Ipv4Addr, u8, Instant)> {
        match self.wait_any(timeout)? {
            (IpAddr::V4(a), p, t) => Some((a, p, t)),
            (IpAddr::V6(_), _, _) => None,
        }
    }

    /// Wait up to `timeout` for a new global IPv6 address on the interface (a watch from
    /// [`AddrWatch::open6`]): the address, its prefix length and when it was read.
    pub fn wait6(&self, timeout: Duration) -> Option<(Ipv6Addr, u8, Instant)> {
        match self.wait_any(timeout)? {
            (IpAddr::V6(a), p, t) => Some((a, p, t)),
            (IpAddr::V4(_), _, _) => None,
        }
    }

    fn wait_any(&self, timeout: Duration) -> Option<(IpAddr, u8, Instant)> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 16384];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
            if rc <= 0 {
                continue;
            }
            // SAFETY: recv into our buffer.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    0,
                )
            };
            let now = Instant::now();
            if n <= 0 {
                continue;
            }
            if let Some((a, p)) = parse_newaddr(&buf[..n as usize], self.ifindex, self.family) {
                return Some((a, p, now));
            }
        }
    }
}

/// Find an RTM_NEWADDR for `ifindex` of `family` in a netlink datagram (for AF_INET6 of
/// global scope only).
fn parse_newaddr(mut b: &[u8], ifindex: u32, family: i32) -> Option<(IpAddr, u8)> {
    while b.len() >= 16 {
        let len = u32::from_ne_bytes(b[0..4].try_into().ok()?) as usize;
        let ty = u16::from_ne_bytes(b[4..6].try_into().ok()?);
        if len < 16 || len > b.len() {
            return None;
        }
        let msg = &b[16..len];
        if ty == RTM_NEWADDR && msg.len() >= 8 {
            let (fam, plen, scope) = (i32::from(msg[0]), msg[1], msg[3]);
            let idx = u32::from_ne_bytes(msg[4..8].try_into().ok()?);
            let wanted = fam == family
                && idx == ifindex
                && (fam == libc::AF_INET || scope == RT_SCOPE_UNIVERSE);
            if wanted {
                let mut attrs = &msg[8..];
                let mut found = None;
                while attrs.len() >= 4 {
                    let alen = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
                    let aty = u16::from_ne_bytes([attrs[2], attrs[3]]);
                    if alen < 4 || alen > attrs.len() {
                        break;
                    }
                    let local = aty == IFA_LOCAL || (aty == IFA_ADDRESS && found.is_none());
                    if local && fam == libc::AF_INET && alen >= 8 {
                        found = Some(IpAddr::from([attrs[4], attrs[5], attrs[6], attrs[7]]));
                    } else if local && fam == libc::AF_INET6 && alen >= 20 {
                        let o: [u8; 16] = attrs[4..20].try_into().ok()?;
                        found = Some(IpAddr::from(o));
                    }
                    attrs = &attrs[((alen + 3) & !3).min(attrs.len())..];
                }
                if let Some(a) = found {
                    return Some((a, plen));
                }
            }
        }
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One RTM_NEWADDR message: ifaddrmsg and one address attribute.
    fn newaddr(family: u8, plen: u8, scope: u8, ifindex: u32, attr: u16, addr: &[u8]) -> Vec<u8> {
        let alen = 4 + addr.len();
        let len = 16 + 8 + alen.next_multiple_of(4);
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&RTM_NEWADDR.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[family, plen, 0, scope]);
        m.extend_from_slice(&ifindex.to_ne_bytes());
        m.extend_from_slice(&(alen as u16).to_ne_bytes());
        m.extend_from_slice(&attr.to_ne_bytes());
        m.extend_from_slice(addr);
        m.resize(len, 0);
        m
    }

    #[test]
    fn global_ipv6_counts_link_local_does_not() {
        let global: Ipv6Addr = "2001:db8:1::100".parse().unwrap();
        let ll: Ipv6Addr = "fe80::1".parse().unwrap();
        let v6 = libc::AF_INET6 as u8;
        let mut two = newaddr(v6, 64, 253, 3, IFA_ADDRESS, &ll.octets());
        two.extend(newaddr(v6, 128, 0, 3, IFA_ADDRESS, &global.octets()));
        assert_eq!(
            parse_newaddr(&two, 3, libc::AF_INET6),
            Some((IpAddr::V6(global), 128))
        );
        assert_eq!(parse_newaddr(&two, 4, libc::AF_INET6), None);
        assert_eq!(parse_newaddr(&two, 3, libc::AF_INET), None);
        let v4 = newaddr(libc::AF_INET as u8, 24, 0, 3, IFA_LOCAL, &[192, 0, 2, 50]);
        assert_eq!(
            parse_newaddr(&v4, 3, libc::AF_INET),
            Some((IpAddr::from([192, 0, 2, 50]), 24))
        );
        assert_eq!(parse_newaddr(&v4, 3, libc::AF_INET6), None);
    }
}
