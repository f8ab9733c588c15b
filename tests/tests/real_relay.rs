//! A DHCP server behind a relay (issue 23, point 1): ISC Kea on another subnet, ISC
//! `dhcrelay` in the namespace that routes between the two. Root only.
//!
//! ```text
//!  router ns: lan0 (agent) -- LAN ns "br0" 192.0.2.1/24 [dhcrelay, ip_forward]
//!                                      "up0" 198.51.100.1/24 === "br0" 198.51.100.2/24  server ns [Kea]
//! ```
//!
//! ISC dhcrelay (LPF) also sees the client's unicast renewal cross br0 on its way to the
//! server and relays a copy of it: Kea answers both, the relayed copy's ACK goes to the
//! relay. Harmless, and what a real LAN with this relay does; the test counts only the
//! direct one.
//!
//! Judged from the wire (a capture on the server's link and one on the clients' LAN) and
//! from Kea's lease table, not from the agent's status.

use netcontainer_proto::contract::LAN_IF;
use netcontainer_tests::capture::{self, Capture};
use netcontainer_tests::*;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(50);
const RELAY_LAN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const RELAY_UP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// The bed. Field order = drop order: agent, relay, server, then the namespaces.
struct Relayed {
    agent: Agent,
    relay: ProcGuard,
    kea: Kea,
    tmp: TempDir,
    server_ns: Arc<Netns>,
    lan: Lan,
}

impl Relayed {
    fn new(kea_opts: KeaOpts) -> Relayed {
        let lan = Lan::with_router();
        let tmp = TempDir::new("relay");
        let server_ns = Arc::new(Netns::new(&unique("srv")).expect("server netns"));
        // The server's link: named br0 in the server namespace, where Kea listens.
        lan.lan.ip(&[
            "link",
            "add",
            "up0",
            "type",
            "veth",
            "peer",
            "name",
            "br0",
            "netns",
            server_ns.name(),
        ]);
        lan.lan
            .ip(&["addr", "add", &format!("{RELAY_UP}/24"), "dev", "up0"]);
        lan.lan.ip(&["link", "set", "up0", "up"]);
        server_ns.ip(&["addr", "add", &format!("{SERVER}/24"), "dev", "br0"]);
        server_ns.ip(&["link", "set", "br0", "up"]);
        server_ns.ip(&["route", "add", "192.0.2.0/24", "via", &RELAY_UP.to_string()]);
        lan.lan
            .exec_ok(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);

        let kea = Kea::start(&server_ns, kea_opts);
        let pidfile = tmp.join("dhcrelay.pid").display().to_string();
        let relay_log = tmp.join("dhcrelay.log");
        let mut relay = lan.lan.spawn_guarded(
            &[
                "dhcrelay",
                "-d",
                "-4",
                "-pf",
                &pidfile,
                "-id",
                "br0",
                "-iu",
                "up0",
                &SERVER.to_string(),
            ],
            &[],
            Some(&relay_log),
        );
        // dhcrelay prints its interfaces once its sockets are open.
        let up = wait_until(10 * S, POLL, || {
            std::fs::read_to_string(&relay_log)
                .unwrap_or_default()
                .contains("Listening on LPF/up0")
        });
        assert!(
            up && relay.running(),
            "dhcrelay did not start: {}",
            tail(&relay_log, 20)
        );
        let agent = Agent::start(lan.router(), tmp.path());
        Relayed {
            agent,
            relay,
            kea,
            tmp,
            server_ns,
            lan,
        }
    }
}

/// Through the relay: DISCOVER/OFFER/REQUEST/ACK relayed, then at T1 the renewal goes by
/// unicast from the leased address straight to the off-link server identifier (through
/// the LAN's router, not the relay), Kea ACKs it and moves the lease's expiry, and no
/// REQUEST is ever broadcast again (no REBIND) on the clients' LAN.
#[test]
fn renews_through_a_relay_by_unicast_to_the_off_link_server() {
    require_root!();
    if !have("dhcrelay") {
        panic!("dhcrelay (Debian isc-dhcp-relay) is not installed: scripts/install-deps");
    }
    let opts = KeaOpts {
        off_link: true,
        gateway: RELAY_LAN,
        dns: vec![],
        ..KeaOpts::short(24, 6, 18)
    };
    let bed = Relayed::new(opts);
    let mut server_cap = Capture::start(&bed.server_ns, "br0", "udp port 67 or udp port 68");
    let mut lan_cap = Capture::start(&bed.lan.lan, "br0", "udp port 67 or udp port 68");
    let agent_mac = mac_of(bed.lan.router(), LAN_IF);

    let out = bed.agent.apply(&ApplyArgs::new(LAN_IF).wait(20));
    assert!(out.ok(), "apply through the relay failed: {out}");
    let addr = out.address().expect("apply printed an address");
    let bound_at = Instant::now();
    let st = bed.agent.wait_bound(5 * S);
    let lease = st.lease.unwrap();
    assert_eq!(lease.server_id, Some(SERVER), "{lease:?}");
    assert_eq!(lease.gateway, Some(RELAY_LAN), "{lease:?}");
    let first_expire = bed.kea.lease_of(addr).expect("Kea has the lease").expire;
    // The bind itself came through the relay: Kea saw it from the relay's address.
    assert!(
        bed.kea.received().iter().any(|r| r.from == RELAY_UP),
        "Kea saw nothing relayed: {:?}",
        bed.kea.received()
    );

    // Two renewals at T1 (6 s), each ACKed: Kea's expiry moves each time.
    let mut expires = vec![first_expire];
    for n in 1..=2 {
        let moved = wait_for(10 * S, POLL, || {
            let e = bed.kea.lease_of(addr)?.expire;
            (e > *expires.last().unwrap()).then_some(e)
        });
        let e = moved.unwrap_or_else(|| {
            panic!(
                "renewal {n}: Kea's expiry did not move; rows {:?}, requests {:?}",
                bed.kea.lease_rows(),
                bed.kea.requests()
            )
        });
        expires.push(e);
    }
    let renewed_in = bound_at.elapsed();
    // Let the second ACK reach the capture.
    std::thread::sleep(S / 2);
    let server_pkts = server_cap.stop();
    let lan_pkts = lan_cap.stop();

    // On the server's link: REQUESTs from the leased address to the server itself (no
    // giaddr: not relayed), and ACKs from the server to the leased address, port 68.
    let renew: Vec<_> = server_pkts
        .iter()
        .filter(|p| {
            p.src == addr
                && p.dst == SERVER
                && p.dhcp().is_some_and(|d| {
                    d.msg_type == capture::REQUEST
                        && d.ciaddr == addr
                        && d.giaddr == Ipv4Addr::UNSPECIFIED
                        && d.sport == 68
                        && d.dport == 67
                })
        })
        .collect();
    let acks: Vec<_> = server_pkts
        .iter()
        .filter(|p| {
            p.src == SERVER
                && p.dst == addr
                && p.dhcp().is_some_and(|d| {
                    d.msg_type == capture::ACK && d.dport == 68 && d.yiaddr == addr
                })
        })
        .collect();
    assert!(
        renew.len() >= 2,
        "want two unicast renewals on the server's link, got {renew:?}\nall: {server_pkts:#?}"
    );
    assert!(
        acks.len() >= 2,
        "want two unicast ACKs to {addr}, got {acks:?}\nall: {server_pkts:#?}"
    );
    // On the clients' LAN: after the bind, the agent broadcast no REQUEST (a REBIND has
    // ciaddr set and goes to 255.255.255.255).
    let rebinds: Vec<_> = lan_pkts
        .iter()
        .filter(|p| {
            p.src_mac == parse_mac(&agent_mac)
                && p.dst == Ipv4Addr::BROADCAST
                && p.dhcp().is_some_and(|d| {
                    d.msg_type == capture::REQUEST && d.ciaddr != Ipv4Addr::UNSPECIFIED
                })
        })
        .collect();
    assert!(rebinds.is_empty(), "broadcast REBINDs: {rebinds:#?}");
    // And the agent still holds the address, bound, with the renewed lease.
    assert_eq!(addr_on(bed.lan.router(), LAN_IF), vec![(addr, 24)]);
    let st = bed.agent.status();
    assert!(
        st.state == "bound" || st.state == "renewing",
        "{}",
        st.state
    );
    assert!(st.last_error.is_none(), "{:?}", st.last_error);
    eprintln!(
        "relay: bound {addr} via {SERVER}, two unicast renewals ACKed within {renewed_in:?}; relay pid {}, dir {}",
        bed.relay.pid(),
        bed.tmp.path().display()
    );
}

fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("hex MAC"))
        .collect();
    v.try_into().expect("six bytes")
}
