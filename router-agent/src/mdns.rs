//! Multicast DNS on the LAN leg: the I/O shell around
//! `netcontainer_mdns::Responder` (the protocol, without I/O, in its own
//! crate). It reads what to publish from the published status (the plan's
//! hostname and DNS-SD services, the lease, the global IPv6 addresses), owns
//! one UDP socket per family bound to port 5353 on the LAN interface only
//! (the Docker side never hears or sees it), and writes the name it claimed
//! back into the status (`Status::mdns`).
//!
//! It runs beside the core, not inside it: nothing on the lease path waits
//! for it, and a failure here (the port taken, a socket refused) costs the
//! name, logged, never the lease or the forwards.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use netcontainer_mdns::{Config, Destination, Event, Responder, Service};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::control::Snapshot;

pub const PORT: u16 = 5353;
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfb);
/// RFC 6762 section 17: the largest packet a responder need accept.
const MAX_PACKET: usize = 9000;
/// How long a stop waits for the goodbyes to leave.
const STOP_PATIENCE: Duration = Duration::from_millis(500);

/// What the responder publishes, from the status: the interface, the
/// hostname's first label and the services. `None`: mDNS off (or no plan).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Want {
    interface: String,
    label: String,
    services: Vec<netcontainer_proto::DnsSd>,
}

impl Want {
    fn of(snap: &Snapshot) -> Option<Want> {
        let mdns = snap.mdns_plan.as_ref()?;
        let label = snap
            .hostname
            .as_deref()?
            .split('.')
            .next()?
            .to_ascii_lowercase();
        Some(Want {
            interface: snap.interface.clone()?,
            label,
            services: mdns.services.clone(),
        })
    }

    /// The responder's configuration. Instances are named after the host,
    /// and a second service of one type (80 and 8080 are both `_http._tcp`)
    /// after its port too (`web1 (8080)`): an instance name is unique per
    /// type (RFC 6763 section 4.1), and the responder refuses duplicates.
    fn config(&self) -> Config {
        let mut services: Vec<Service> = Vec::new();
        for s in &self.services {
            let taken = services.iter().any(|o| o.service_type == s.service_type);
            services.push(Service {
                instance: if taken {
                    format!("{} ({})", self.label, s.port)
                } else {
                    self.label.clone()
                },
                service_type: s.service_type.clone(),
                port: s.port,
                txt: s.txt.clone(),
            });
        }
        Config {
            hostname: self.label.clone(),
            services,
        }
    }
}

/// The addresses to publish: the lease (once its forwards are in place) and
/// the global IPv6 addresses; and who counts as on the link (RFC 6762
/// section 11: answer only queries from the local link).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Addresses {
    v4: Vec<Ipv4Addr>,
    /// The lease's subnet: (network, prefix length).
    v4_net: Option<(Ipv4Addr, u8)>,
    v6: Vec<Ipv6Addr>,
}

impl Addresses {
    fn of(snap: &Snapshot) -> Addresses {
        let lease = snap.lease.as_ref().filter(|_| snap.rules_active);
        Addresses {
            v4: lease.map(|l| l.address).into_iter().collect(),
            v4_net: lease.map(|l| (l.address, l.prefix_len)),
            v6: snap
                .ipv6
                .iter()
                .map(|a| a.address)
                .filter(is_global)
                .collect(),
        }
    }

    /// Whether a datagram from `from` came from the local link.
    fn on_link(&self, from: &SocketAddr) -> bool {
        match from.ip() {
            IpAddr::V4(a) => {
                a.is_link_local() || self.v4_net.is_some_and(|(net, len)| same_net(a, net, len))
            }
            // Link-local, or in a /64 of one of our addresses.
            IpAddr::V6(a) => {
                (a.segments()[0] & 0xffc0) == 0xfe80
                    || self
                        .v6
                        .iter()
                        .any(|o| o.segments()[..4] == a.segments()[..4])
            }
        }
    }
}

fn same_net(a: Ipv4Addr, b: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0);
    u32::from(a) & mask == u32::from(b) & mask
}

fn is_global(a: &Ipv6Addr) -> bool {
    let s = a.segments()[0];
    !(a.is_loopback() || a.is_unspecified() || a.is_multicast() || (s & 0xffc0) == 0xfe80)
}

/// The running responder task.
pub struct Handle {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Handle {
    /// Sends the goodbyes (bounded wait) and ends the task.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let abort = self.task.abort_handle();
        if tokio::time::timeout(STOP_PATIENCE, self.task)
            .await
            .is_err()
        {
            abort.abort();
            tracing::warn!("mDNS: the goodbyes did not leave in time");
        }
    }
}

/// Starts the task that follows `status` (and writes its name into it).
pub fn spawn(status: Arc<watch::Sender<Snapshot>>) -> Handle {
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(run(status, stopped));
    Handle { stop, task }
}

/// What woke the task.
enum Step {
    Stop,
    Status,
    Packet(std::io::Result<(Vec<u8>, SocketAddr)>),
    Timeout,
}

/// One responder on its sockets.
struct Live {
    want: Want,
    responder: Responder,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
}

async fn run(status: Arc<watch::Sender<Snapshot>>, mut stopped: oneshot::Receiver<()>) {
    let mut rx = status.subscribe();
    let mut live: Option<Live> = None;
    let mut addrs = Addresses::default();
    let mut buf4 = vec![0u8; MAX_PACKET + 1];
    let mut buf6 = vec![0u8; MAX_PACKET + 1];
    loop {
        // Follow the status: a new configuration replaces the responder
        // (goodbyes first), new addresses are announced.
        let (want, now_addrs) = {
            let snap = rx.borrow_and_update();
            (Want::of(&snap), Addresses::of(&snap))
        };
        if live.as_ref().map(|l| &l.want) != want.as_ref() {
            if let Some(mut old) = live.take() {
                old.responder.shutdown(std::time::Instant::now());
                flush(&mut old, &addrs).await;
            }
            addrs = Addresses::default();
            live = want.and_then(|w| start(w, &status));
        }
        if let Some(l) = live.as_mut()
            && now_addrs != addrs
        {
            addrs = now_addrs;
            l.responder
                .set_addresses(std::time::Instant::now(), &addrs.v4, &addrs.v6);
        }
        match live.as_mut() {
            Some(l) => {
                flush(l, &addrs).await;
                publish_name(&status, l.responder.name());
            }
            // Off (a plan without mDNS) or not started: no name is ours.
            None => publish_name(&status, None),
        }
        let deadline = live
            .as_ref()
            .and_then(|l| l.responder.poll_timeout())
            .map(Instant::from_std);
        let step = tokio::select! {
            _ = &mut stopped => Step::Stop,
            r = rx.changed() => if r.is_err() { Step::Stop } else { Step::Status },
            r = recv(live.as_ref().and_then(|l| l.v4.as_ref()), &mut buf4) => Step::Packet(r),
            r = recv(live.as_ref().and_then(|l| l.v6.as_ref()), &mut buf6) => Step::Packet(r),
            _ = sleep_until(deadline) => Step::Timeout,
        };
        match step {
            Step::Stop => break,
            Step::Status => {}
            Step::Packet(r) => handle(live.as_mut(), &addrs, r),
            Step::Timeout => {
                if let Some(l) = live.as_mut() {
                    l.responder.handle_timeout(std::time::Instant::now());
                }
            }
        }
    }
    if let Some(mut l) = live.take() {
        l.responder.shutdown(std::time::Instant::now());
        flush(&mut l, &addrs).await;
    }
    publish_name(&status, None);
}

fn handle(live: Option<&mut Live>, addrs: &Addresses, r: std::io::Result<(Vec<u8>, SocketAddr)>) {
    let Some(l) = live else { return };
    match r {
        Ok((data, from)) if addrs.on_link(&from) && data.len() <= MAX_PACKET => {
            l.responder
                .handle_packet(std::time::Instant::now(), from, &data);
        }
        Ok((_, from)) => {
            tracing::trace!(%from, "mDNS: datagram from off the link or too long dropped")
        }
        Err(e) => tracing::debug!(error = %e, "mDNS: receive failed"),
    }
}

async fn recv(sock: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(Vec<u8>, SocketAddr)> {
    match sock {
        Some(s) => {
            let (n, from) = s.recv_from(buf).await?;
            Ok((buf[..n].to_vec(), from))
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn start(want: Want, status: &watch::Sender<Snapshot>) -> Option<Live> {
    let responder = match Responder::new(want.config(), rand::random()) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "mDNS: the plan's names cannot be published");
            return None;
        }
    };
    let v4 = open_v4(&want.interface)
        .inspect_err(|e| tracing::warn!(error = %e, interface = %want.interface, "mDNS over IPv4 not started"))
        .ok();
    let v6 = open_v6(&want.interface)
        .inspect_err(|e| tracing::info!(error = %e, interface = %want.interface, "mDNS over IPv6 not started"))
        .ok();
    if v4.is_none() && v6.is_none() {
        publish_name(status, None);
        return None;
    }
    tracing::info!(name = %format!("{}.local", want.label), services = want.services.len(), "mDNS responder started");
    Some(Live {
        want,
        responder,
        v4,
        v6,
    })
}

/// Sends everything the responder has queued and logs its events. Nothing
/// goes out over IPv4 while the leg has no IPv4 address (before the lease,
/// after its loss): the kernel would take a source address from another
/// interface.
async fn flush(l: &mut Live, addrs: &Addresses) {
    let v4 = if addrs.v4.is_empty() {
        None
    } else {
        l.v4.as_ref()
    };
    while let Some(t) = l.responder.poll_transmit() {
        let to4 = SocketAddr::V4(SocketAddrV4::new(GROUP_V4, PORT));
        let to6 = SocketAddr::V6(SocketAddrV6::new(GROUP_V6, PORT, 0, 0));
        let targets: Vec<(Option<&UdpSocket>, SocketAddr)> = match t.to {
            Destination::Multicast => vec![(v4, to4), (l.v6.as_ref(), to6)],
            Destination::MulticastV4 => vec![(v4, to4)],
            Destination::MulticastV6 => vec![(l.v6.as_ref(), to6)],
            Destination::Unicast(a @ SocketAddr::V4(_)) => vec![(v4, a)],
            Destination::Unicast(a @ SocketAddr::V6(_)) => vec![(l.v6.as_ref(), a)],
        };
        for (sock, to) in targets {
            let Some(sock) = sock else { continue };
            // A family without an address yet (IPv4 before the lease) cannot
            // send; that is not worth more than a debug line.
            if let Err(e) = sock.send_to(&t.payload, to).await {
                tracing::debug!(error = %e, %to, "mDNS: send failed");
            }
        }
    }
    while let Some(ev) = l.responder.poll_event() {
        match ev {
            Event::Claimed { name } => tracing::info!(%name, "mDNS: name claimed"),
            Event::Conflict { name, next } => {
                tracing::warn!(%name, %next, "mDNS: the name is taken on the LAN; trying the next")
            }
            Event::Gone => tracing::info!("mDNS: goodbyes sent"),
        }
    }
}

fn publish_name(status: &watch::Sender<Snapshot>, name: Option<String>) {
    status.send_if_modified(|s| {
        if s.mdns == name {
            return false;
        }
        s.mdns = name;
        true
    });
}

fn bound_socket(domain: Domain, interface: &str) -> std::io::Result<Socket> {
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    // Another responder in this namespace (none in a router) may share the
    // port; each gets every multicast datagram.
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    // The LAN leg only: queries from the Docker side are never seen, and
    // whatever is sent leaves on the LAN.
    s.bind_device(Some(interface.as_bytes()))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn open_v4(interface: &str) -> std::io::Result<UdpSocket> {
    let index = nix::net::if_::if_nametoindex(interface).map_err(std::io::Error::from)?;
    let s = bound_socket(Domain::IPV4, interface)?;
    s.bind(&SockAddr::from(SocketAddrV4::new(
        Ipv4Addr::UNSPECIFIED,
        PORT,
    )))?;
    s.join_multicast_v4_n(&GROUP_V4, &socket2::InterfaceIndexOrAddress::Index(index))?;
    // RFC 6762 section 11: sent with TTL 255, so that a receiver can tell
    // link-local traffic; our own datagrams are not looped back to us.
    s.set_multicast_ttl_v4(255)?;
    s.set_ttl_v4(255)?;
    s.set_multicast_loop_v4(false)?;
    UdpSocket::from_std(s.into())
}

fn open_v6(interface: &str) -> std::io::Result<UdpSocket> {
    let index = nix::net::if_::if_nametoindex(interface).map_err(std::io::Error::from)?;
    let s = bound_socket(Domain::IPV6, interface)?;
    s.set_only_v6(true)?;
    s.bind(&SockAddr::from(SocketAddrV6::new(
        Ipv6Addr::UNSPECIFIED,
        PORT,
        0,
        0,
    )))?;
    s.join_multicast_v6(&GROUP_V6, index)?;
    s.set_multicast_if_v6(index)?;
    s.set_multicast_hops_v6(255)?;
    s.set_unicast_hops_v6(255)?;
    s.set_multicast_loop_v6(false)?;
    UdpSocket::from_std(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sources_on_the_link_are_heard() {
        let a = Addresses {
            v4: vec![Ipv4Addr::new(192, 0, 2, 57)],
            v4_net: Some((Ipv4Addr::new(192, 0, 2, 57), 24)),
            v6: vec!["2001:db8:1::5".parse().unwrap()],
        };
        let on = |s: &str| a.on_link(&s.parse().unwrap());
        assert!(on("192.0.2.9:5353"));
        assert!(!on("198.51.100.9:5353"));
        assert!(
            on("169.254.3.4:5353"),
            "IPv4 link-local is on the link (section 11)"
        );
        assert!(on("[fe80::1]:5353"));
        assert!(on("[2001:db8:1::9]:5353"));
        assert!(!on("[2001:db8:2::9]:5353"));
        // No lease: no IPv4 peer is known to be on the link.
        assert!(!Addresses::default().on_link(&"192.0.2.9:5353".parse().unwrap()));
    }

    /// 80 and 8080 are both `_http._tcp`: two instances, the second named after its
    /// port, and the responder takes them (it refuses duplicate instances).
    #[test]
    fn a_second_service_of_a_type_gets_its_own_instance() {
        let sd = |t: &str, port| netcontainer_proto::DnsSd {
            service_type: t.into(),
            port,
            txt: vec![],
        };
        let want = Want {
            interface: "lan0".into(),
            label: "web1".into(),
            services: vec![
                sd("_http._tcp", 80),
                sd("_http._tcp", 8080),
                sd("_ssh._tcp", 22),
            ],
        };
        let c = want.config();
        let names: Vec<&str> = c.services.iter().map(|s| s.instance.as_str()).collect();
        assert_eq!(names, ["web1", "web1 (8080)", "web1"]);
        assert!(Responder::new(c, 1).is_ok());
    }

    #[test]
    fn global_addresses_only() {
        assert!(is_global(&"2001:db8::1".parse().unwrap()));
        assert!(!is_global(&"fe80::1".parse().unwrap()));
        assert!(!is_global(&"ff02::fb".parse().unwrap()));
    }
}
