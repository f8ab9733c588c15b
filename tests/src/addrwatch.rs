//! Watch for an IPv4 address appearing on an interface, through a netlink socket opened
//! inside the interface's namespace (RTM_NEWADDR on RTMGRP_IPV4_IFADDR). The timestamp is
//! taken when the notification is read, sub-millisecond after the kernel event: much finer
//! than polling `ip -j addr`.

use crate::netns::Netns;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTM_NEWADDR: u16 = 20;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;

pub struct AddrWatch {
    fd: OwnedFd,
    ifindex: u32,
}

impl AddrWatch {
    /// Subscribe to IPv4 address events of `ifname` in `ns`. Call before starting the
    /// client so no event is missed.
    pub fn open(ns: &Netns, ifname: &str) -> std::io::Result<AddrWatch> {
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
                sa.nl_groups = RTMGRP_IPV4_IFADDR;
                let rc = libc::bind(
                    fd.as_raw_fd(),
                    &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                );
                if rc != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(AddrWatch { fd, ifindex })
            }
        })?
    }

    /// Wait up to `timeout` for a new IPv4 address on the interface. Returns the address,
    /// its prefix length and the instant the notification was read.
    pub fn wait(&self, timeout: Duration) -> Option<(Ipv4Addr, u8, Instant)> {
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
            if let Some((a, p)) = parse_newaddr(&buf[..n as usize], self.ifindex) {
                return Some((a, p, now));
            }
        }
    }
}

/// Find an RTM_NEWADDR for `ifindex` (AF_INET) in a netlink datagram.
fn parse_newaddr(mut b: &[u8], ifindex: u32) -> Option<(Ipv4Addr, u8)> {
    while b.len() >= 16 {
        let len = u32::from_ne_bytes(b[0..4].try_into().ok()?) as usize;
        let ty = u16::from_ne_bytes(b[4..6].try_into().ok()?);
        if len < 16 || len > b.len() {
            return None;
        }
        let msg = &b[16..len];
        if ty == RTM_NEWADDR && msg.len() >= 8 {
            let family = msg[0];
            let plen = msg[1];
            let idx = u32::from_ne_bytes(msg[4..8].try_into().ok()?);
            if family as i32 == libc::AF_INET && idx == ifindex {
                let mut attrs = &msg[8..];
                let mut found = None;
                while attrs.len() >= 4 {
                    let alen = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
                    let aty = u16::from_ne_bytes([attrs[2], attrs[3]]);
                    if alen < 4 || alen > attrs.len() {
                        break;
                    }
                    if (aty == IFA_LOCAL || (aty == IFA_ADDRESS && found.is_none())) && alen >= 8 {
                        found = Some(Ipv4Addr::new(attrs[4], attrs[5], attrs[6], attrs[7]));
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
