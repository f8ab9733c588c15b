//! The IPv6 relay: the published ports on the LAN interface's IPv6
//! addresses, relayed in user space to the service's IPv4 address. For a
//! service on an IPv4-only Docker network (the common case), where the
//! kernel cannot forward: nftables does not translate between families.
//!
//! One listener per (address, protocol, port), bound to the address itself
//! (so a UDP reply leaves from the address the client sent to), with
//! `IP_FREEBIND` (an address still in duplicate detection can be bound).
//! Bounded: at most [`MAX_PORTS`] relayed ports, [`MAX_TCP`] connections
//! and [`MAX_UDP`] UDP sessions at a time, idle ones closed after
//! [`TCP_IDLE`] and [`UDP_IDLE`]; and fair: one client address, or one
//! client /64, holds only a share of them ([`limits`]), so one LAN host
//! cannot leave the others refused. The service sees the router's address
//! as the source (as behind docker-proxy): an IPv6 client's address has no
//! IPv4 form.

pub mod limits;

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netcontainer_proto::{Forward, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use self::limits::{Caps, Limits, Slot};
use tokio::time::Instant;

/// Relayed ports at most (each costs a socket per address).
pub const MAX_PORTS: usize = 256;
/// TCP connections relayed at a time; more are refused (closed at once).
pub const MAX_TCP: usize = 512;
/// UDP sessions (client address and port) at a time; datagrams of new
/// clients beyond are dropped.
pub const MAX_UDP: usize = 1024;
/// Each in all, per client address and per client /64 (see
/// [`Caps::shares_of`]).
pub const TCP_CAPS: Caps = Caps::shares_of(MAX_TCP);
pub const UDP_CAPS: Caps = Caps::shares_of(MAX_UDP);
/// A TCP connection with no data either way for this long is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(3600);
/// A UDP session with no datagram either way for this long ends (the
/// kernel's conntrack keeps an answered UDP flow for 120 s).
pub const UDP_IDLE: Duration = Duration::from_secs(120);
/// How long connecting to the service may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const BUFFER: usize = 64 * 1024;

/// One relayed port on one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub protocol: Protocol,
    pub address: Ipv6Addr,
    pub port: u16,
}

/// What the relay should listen on: each key to its IPv4 target. Ports
/// beyond [`MAX_PORTS`] are left out; the returned message says so.
pub fn desired(
    addresses: &[Ipv6Addr],
    forwards: &[Forward],
) -> (BTreeMap<Key, SocketAddrV4>, Option<String>) {
    let mut ports = Vec::new();
    'outer: for f in forwards {
        for off in 0..f.len() {
            if ports.len() == MAX_PORTS {
                break 'outer;
            }
            // Validated plans keep both ends in range.
            let public = f.public_port.saturating_add(off as u16);
            let target = f.target_port.saturating_add(off as u16);
            ports.push((
                f.protocol,
                public,
                SocketAddrV4::new(f.target_address, target),
            ));
        }
    }
    let total: u64 = forwards.iter().map(|f| u64::from(f.len())).sum();
    let note = (total > MAX_PORTS as u64).then(|| {
        format!(
            "IPv6 relay: {total} ports published, only the first {MAX_PORTS} are relayed \
             (give the service's Docker network IPv6 for kernel forwarding)"
        )
    });
    let mut out = BTreeMap::new();
    for &address in addresses {
        for &(protocol, port, target) in &ports {
            out.insert(
                Key {
                    protocol,
                    address,
                    port,
                },
                target,
            );
        }
    }
    (out, note)
}

/// The running listeners.
pub struct Relay {
    listeners: HashMap<Key, (SocketAddrV4, JoinHandle<()>)>,
    tcp: Arc<Limits>,
    udp: Arc<Limits>,
}

impl Default for Relay {
    fn default() -> Self {
        Relay {
            listeners: HashMap::new(),
            tcp: Limits::new(TCP_CAPS),
            udp: Limits::new(UDP_CAPS),
        }
    }
}

impl Relay {
    /// Listens on exactly `want`: stops listeners no longer wanted (their
    /// connections end with them), starts new ones. Returns the errors of
    /// listeners that could not start (the others run).
    pub fn update(&mut self, want: &BTreeMap<Key, SocketAddrV4>) -> Vec<String> {
        self.listeners.retain(|k, (target, task)| {
            let keep = want.get(k) == Some(target);
            if !keep {
                task.abort();
                tracing::info!(address = %k.address, port = k.port, protocol = %k.protocol, "IPv6 relay stopped");
            }
            keep
        });
        let mut errors = Vec::new();
        for (k, target) in want {
            if self.listeners.contains_key(k) {
                continue;
            }
            let started = match k.protocol {
                Protocol::Tcp => {
                    tcp_listener(k).map(|l| tokio::spawn(serve_tcp(l, *target, self.tcp.clone())))
                }
                Protocol::Udp => udp_socket(k)
                    .map(|s| tokio::spawn(serve_udp(Arc::new(s), *target, self.udp.clone()))),
            };
            match started {
                Ok(task) => {
                    tracing::info!(address = %k.address, port = k.port, protocol = %k.protocol, %target, "IPv6 relay listening");
                    self.listeners.insert(*k, (*target, task));
                }
                Err(e) => errors.push(format!(
                    "IPv6 relay on [{}]:{}/{}: {e}",
                    k.address, k.port, k.protocol
                )),
            }
        }
        errors
    }

    /// Stops every listener.
    pub fn stop(&mut self) {
        self.update(&BTreeMap::new());
    }

    pub fn is_empty(&self) -> bool {
        self.listeners.is_empty()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for (_, task) in self.listeners.values() {
            task.abort();
        }
    }
}

fn bound_socket(k: &Key, ty: socket2::Type) -> std::io::Result<socket2::Socket> {
    let proto = match k.protocol {
        Protocol::Tcp => socket2::Protocol::TCP,
        Protocol::Udp => socket2::Protocol::UDP,
    };
    let s = socket2::Socket::new(socket2::Domain::IPV6, ty, Some(proto))?;
    s.set_only_v6(true)?;
    s.set_reuse_address(true)?;
    s.set_freebind_v6(true)?;
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::V6(SocketAddrV6::new(k.address, k.port, 0, 0)).into())?;
    Ok(s)
}

fn tcp_listener(k: &Key) -> std::io::Result<TcpListener> {
    let s = bound_socket(k, socket2::Type::STREAM)?;
    s.listen(128)?;
    TcpListener::from_std(s.into())
}

fn udp_socket(k: &Key) -> std::io::Result<UdpSocket> {
    UdpSocket::from_std(bound_socket(k, socket2::Type::DGRAM)?.into())
}

async fn serve_tcp(listener: TcpListener, target: SocketAddrV4, slots: Arc<Limits>) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                tracing::warn!(error = %e, "IPv6 relay: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = match slots.try_acquire(peer.ip()) {
            Ok(slot) => slot,
            Err(refused) => {
                // Debug: a client over its share could flood the log.
                tracing::debug!(%peer, "IPv6 relay: refusing a connection, {refused}");
                continue; // dropped: closed at once
            }
        };
        tokio::spawn(async move {
            let _slot = slot;
            let service = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, %target, error = %e, "IPv6 relay: connecting to the service failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, %target, "IPv6 relay: connecting to the service timed out");
                    return;
                }
            };
            let _ = client.set_nodelay(true);
            let _ = service.set_nodelay(true);
            pump(client, service, TCP_IDLE).await;
        });
    }
}

/// Copies both ways until both sides finished or nothing moved for
/// `idle`. A side's end of stream is passed on as a half-close.
pub async fn pump(a: TcpStream, b: TcpStream, idle: Duration) {
    let last = Arc::new(Mutex::new(Instant::now()));
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    let one = copy_half(ar, bw, last.clone(), idle);
    let other = copy_half(br, aw, last, idle);
    let _ = tokio::join!(one, other);
}

async fn copy_half(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    last: Arc<Mutex<Instant>>,
    idle: Duration,
) {
    let mut buf = vec![0u8; BUFFER];
    loop {
        let deadline = *last.lock().unwrap() + idle;
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = tokio::time::sleep_until(deadline) => {
                // The other direction may have moved meanwhile.
                if Instant::now() < *last.lock().unwrap() + idle {
                    continue;
                }
                break;
            }
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        *last.lock().unwrap() = Instant::now();
    }
    let _ = to.shutdown().await;
}

/// A UDP session: its socket toward the service and when a datagram last
/// passed either way.
type Session = (Arc<UdpSocket>, Arc<Mutex<Instant>>);
type Sessions = Arc<Mutex<HashMap<SocketAddr, Session>>>;

async fn serve_udp(socket: Arc<UdpSocket>, target: SocketAddrV4, slots: Arc<Limits>) {
    let sessions: Sessions = Arc::default();
    let mut buf = vec![0u8; BUFFER];
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "IPv6 relay: UDP receive failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let existing = sessions.lock().unwrap().get(&client).cloned();
        let (upstream, last) = match existing {
            Some(s) => s,
            None => {
                let slot = match slots.try_acquire(client.ip()) {
                    Ok(slot) => slot,
                    Err(refused) => {
                        tracing::debug!(%client, "IPv6 relay: datagram dropped, {refused} UDP sessions");
                        continue;
                    }
                };
                let up = match UdpSocket::bind("0.0.0.0:0").await {
                    Ok(u) => u,
                    Err(e) => {
                        tracing::warn!(error = %e, "IPv6 relay: no UDP socket toward the service");
                        continue;
                    }
                };
                if let Err(e) = up.connect(target).await {
                    tracing::debug!(%target, error = %e, "IPv6 relay: UDP connect failed");
                    continue;
                }
                let session = (Arc::new(up), Arc::new(Mutex::new(Instant::now())));
                sessions.lock().unwrap().insert(client, session.clone());
                tokio::spawn(udp_replies(
                    socket.clone(),
                    session.clone(),
                    client,
                    sessions.clone(),
                    slot,
                ));
                session
            }
        };
        *last.lock().unwrap() = Instant::now();
        // Best effort, as UDP itself.
        let _ = upstream.send(&buf[..n]).await;
    }
}

/// One UDP session: the service's datagrams back to `client`, until idle.
async fn udp_replies(
    listener: Arc<UdpSocket>,
    (upstream, last): Session,
    client: SocketAddr,
    sessions: Sessions,
    _slot: Slot,
) {
    let mut buf = vec![0u8; BUFFER];
    loop {
        let deadline = *last.lock().unwrap() + UDP_IDLE;
        tokio::select! {
            r = upstream.recv(&mut buf) => {
                // An error is e.g. ICMP port unreachable from the service.
                if let Ok(n) = r {
                    *last.lock().unwrap() = Instant::now();
                    let _ = listener.send_to(&buf[..n], client).await;
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let mut map = sessions.lock().unwrap();
                // The client may have sent meanwhile.
                if Instant::now() >= *last.lock().unwrap() + UDP_IDLE {
                    map.remove(&client);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn fwd(p: Protocol, public: u16, end: u16, target: u16) -> Forward {
        Forward {
            protocol: p,
            public_port: public,
            public_port_end: end,
            target_address: Ipv4Addr::new(192, 0, 2, 2),
            target_port: target,
        }
    }

    #[test]
    fn desired_listeners_per_address_and_port() {
        let a: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let b: Ipv6Addr = "2001:db8::11".parse().unwrap();
        let (want, note) = desired(
            &[a, b],
            &[
                fwd(Protocol::Tcp, 80, 80, 8080),
                fwd(Protocol::Udp, 5000, 5001, 6000),
            ],
        );
        assert!(note.is_none());
        assert_eq!(want.len(), 6);
        let k = Key {
            protocol: Protocol::Udp,
            address: b,
            port: 5001,
        };
        assert_eq!(want[&k], "192.0.2.2:6001".parse().unwrap());
        let (none, _) = desired(&[], &[fwd(Protocol::Tcp, 80, 80, 80)]);
        assert!(none.is_empty());
    }

    #[test]
    fn ports_beyond_the_cap_are_left_out_and_said() {
        let a: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let (want, note) = desired(&[a], &[fwd(Protocol::Tcp, 1000, 1999, 1000)]);
        assert_eq!(want.len(), MAX_PORTS);
        assert!(note.unwrap().contains("1000 ports published"));
    }

    /// Over loopback (any user): a TCP echo through the relay on `::1`,
    /// the half-close passed on, and a UDP round trip.
    #[tokio::test]
    async fn relays_tcp_and_udp_over_loopback() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = match echo.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).await.unwrap();
            s.write_all(&all).await.unwrap();
        });
        let uecho = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let uecho_addr = match uecho.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        tokio::spawn(async move {
            let mut b = [0u8; 64];
            let (n, from) = uecho.recv_from(&mut b).await.unwrap();
            uecho.send_to(&b[..n], from).await.unwrap();
        });
        // Free ports on ::1 for the relay.
        let free = |ty| {
            let s = socket2::Socket::new(socket2::Domain::IPV6, ty, None).unwrap();
            s.bind(&"[::1]:0".parse::<SocketAddr>().unwrap().into())
                .unwrap();
            s.local_addr().unwrap().as_socket().unwrap().port()
        };
        let (tp, up) = (free(socket2::Type::STREAM), free(socket2::Type::DGRAM));
        let mut relay = Relay::default();
        let mut want = BTreeMap::new();
        let k = |protocol, port| Key {
            protocol,
            address: Ipv6Addr::LOCALHOST,
            port,
        };
        want.insert(k(Protocol::Tcp, tp), echo_addr);
        want.insert(k(Protocol::Udp, up), uecho_addr);
        assert!(relay.update(&want).is_empty());

        let mut c = TcpStream::connect(("::1", tp)).await.unwrap();
        c.write_all(b"hello over six").await.unwrap();
        c.shutdown().await.unwrap();
        let mut back = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, b"hello over six");

        let u = UdpSocket::bind("[::1]:0").await.unwrap();
        u.send_to(b"ping", ("::1", up)).await.unwrap();
        let mut b = [0u8; 16];
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), u.recv_from(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&b[..n], b"ping");
        assert_eq!(from.port(), up, "the reply comes from the relayed port");

        relay.stop();
        assert!(relay.is_empty());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            TcpStream::connect(("::1", tp)).await.is_err(),
            "a stopped listener still accepts"
        );
    }
}
