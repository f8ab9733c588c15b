//! Sanity tests of the test bed itself, with the reference clients (no agent needed).
//! If these fail, the agent tests in lease.rs cannot be trusted either.

use netcontainer_proto::contract::LAN_IF;
use netcontainer_tests::dhcp;
use netcontainer_tests::refclient::{self, RefClient, RefClientKind};
use netcontainer_tests::*;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

const S: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(20);

/// Wait for an IPv4 address on lan0 of the first router.
fn wait_addr(lan: &Lan, timeout: Duration) -> (Ipv4Addr, u8) {
    wait_for(timeout, POLL, || {
        addr_on(lan.router(), LAN_IF).first().copied()
    })
    .expect("no address on lan0")
}

fn in_pool(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[..3] == [192, 0, 2] && (50..=150).contains(&o[3])
}

#[test]
fn dhclient_gets_a_lease_from_dnsmasq() {
    require_root!();
    let lan = Lan::with_router();
    let dnsmasq = Dnsmasq::start(&lan.lan, DnsmasqOpts::default());
    let tmp = TempDir::new("bed");
    let _c = RefClient::start(RefClientKind::Dhclient, lan.router(), LAN_IF, tmp.path());
    let (addr, plen) = wait_addr(&lan, 10 * S);
    assert!(in_pool(addr), "{addr}");
    assert_eq!(plen, 24);
    let lease = wait_for(5 * S, POLL, || dnsmasq.lease_of(addr)).expect("lease in dnsmasq file");
    assert_eq!(lease.mac, mac_of(lan.router(), LAN_IF));
}

#[test]
fn dhclient_gets_a_lease_from_kea() {
    require_root!();
    let lan = Lan::with_router();
    let kea = Kea::start(&lan.lan, KeaOpts::default());
    let tmp = TempDir::new("bed");
    let _c = RefClient::start(RefClientKind::Dhclient, lan.router(), LAN_IF, tmp.path());
    let (addr, _) = wait_addr(&lan, 10 * S);
    assert!(in_pool(addr), "{addr}");
    let lease = kea.lease_of(addr).expect("lease in Kea's memfile");
    assert!(lease.is_active(), "{lease:?}");
    assert_eq!(lease.hwaddr, mac_of(lan.router(), LAN_IF));
    assert_eq!(lease.valid_lifetime, 120);
    let reqs = kea.requests();
    assert!(
        reqs.iter().any(|r| !r.is_unicast()),
        "Kea log shows the broadcast REQUEST: {reqs:?}"
    );
}

#[test]
fn udhcpc_gets_a_lease_from_kea() {
    require_root!();
    let lan = Lan::with_router();
    let kea = Kea::start(&lan.lan, KeaOpts::default());
    let tmp = TempDir::new("bed");
    let _c = RefClient::start(RefClientKind::Udhcpc, lan.router(), LAN_IF, tmp.path());
    let (addr, plen) = wait_addr(&lan, 10 * S);
    assert!(in_pool(addr) && plen == 24, "{addr}/{plen}");
    assert!(kea.lease_of(addr).is_some_and(|l| l.is_active()));
}

/// Validates the pieces the agent's renew/rebind tests rely on: Kea's short timers, the
/// log parser telling unicast from broadcast REQUESTs, and the bridge rule that blocks
/// unicast DHCP to the server while letting broadcasts through.
#[test]
fn kea_short_lease_renews_unicast_and_the_bed_blocks_unicast() {
    require_root!();
    let lan = Lan::with_router();
    // dhclient never rebinds with 6/2/4 timers (after a lost renew it waits into expiry),
    // so this check of the bed uses a little longer ones.
    let kea = Kea::start(&lan.lan, KeaOpts::short(20, 2, 8));
    let tmp = TempDir::new("bed");
    let _c = RefClient::start(RefClientKind::Dhclient, lan.router(), LAN_IF, tmp.path());
    let (addr, _) = wait_addr(&lan, 10 * S);
    // T1 = 2 s: a unicast REQUEST from the leased address to the server.
    assert!(
        wait_until(5 * S, POLL, || kea
            .requests()
            .iter()
            .any(|r| r.from == addr && r.to == Ipv4Addr::new(192, 0, 2, 1))),
        "no unicast renew: {:?}",
        kea.requests()
    );
    lan.block_unicast_dhcp();
    // The bed's block must catch the next unicast renew (the agent's rebind test relies
    // on it). Whether dhclient then rebinds by broadcast at T2 or lets the lease run out
    // varies from run to run with timers this short, so that is not asserted here: the
    // agent's own rebind test (lease.rs) checks the broadcast.
    assert!(
        wait_until(15 * S, POLL, || lan.blocked_unicast_count() > 0),
        "the rule dropped no unicast renew: {:?}",
        kea.requests()
    );
    assert!(has_addr(lan.router(), LAN_IF, addr));
    lan.unblock_unicast_dhcp();
}

/// Kea NAKs a client of 192.0.2.0/24 once it serves 203.0.113.0/24 (see kea.rs).
#[test]
fn kea_renumbered_to_another_subnet_naks_and_the_client_moves() {
    require_root!();
    let lan = Lan::with_router();
    let mut kea = Kea::start(&lan.lan, KeaOpts::short(8, 2, 6));
    let tmp = TempDir::new("bed");
    let _c = RefClient::start(RefClientKind::Dhclient, lan.router(), LAN_IF, tmp.path());
    let (old, _) = wait_addr(&lan, 10 * S);
    let opts = kea.opts().renumbered();
    kea.restart_with(opts);
    let new = wait_for(20 * S, POLL, || {
        addr_on(lan.router(), LAN_IF)
            .into_iter()
            .find(|(a, _)| a.octets()[..3] == [203, 0, 113])
    })
    .expect("no 203.0.113.x address after renumbering");
    assert!(kea.naks_sent() >= 1, "Kea sent no NAK");
    assert!(
        !has_addr(lan.router(), LAN_IF, old),
        "old {old} still there"
    );
    assert!(kea.lease_of(new.0).is_some_and(|l| l.is_active()));
}

/// What Kea's memfile shows after a DHCPRELEASE (`Kea::is_released`).
#[test]
fn kea_memfile_shows_a_release() {
    require_root!();
    let lan = Lan::with_router();
    let kea = Kea::start(&lan.lan, KeaOpts::default());
    let tmp = TempDir::new("bed");
    let c = RefClient::start(RefClientKind::Dhclient, lan.router(), LAN_IF, tmp.path());
    let (addr, _) = wait_addr(&lan, 10 * S);
    assert!(!kea.is_released(addr));
    // `dhclient -r` with the same pid/lease files: stops the running client, releases.
    let mut cmd = refclient::command(RefClientKind::Dhclient, LAN_IF, tmp.path(), None);
    cmd.arg("-r");
    let args: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|a| a != "-d")
        .collect();
    let argv: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let out = lan.router().exec(&argv);
    assert!(out.status.success(), "{out:?}");
    assert!(
        wait_until(5 * S, POLL, || kea.is_released(addr)),
        "{:?}",
        kea.lease_rows()
    );
    assert!(!has_addr(lan.router(), LAN_IF, addr));
    drop(c);
}

/// dnsmasq registers a client's host name in its DNS; our tiny resolver finds it.
#[test]
fn dnsmasq_resolves_a_dhcp_hostname() {
    require_root!();
    let lan = Lan::with_router();
    let dnsmasq = Dnsmasq::start(&lan.lan, DnsmasqOpts::default());
    let tmp = TempDir::new("bed");
    let name = format!("bed{}", std::process::id());
    let mut cmd = refclient::command(RefClientKind::Dhclient, LAN_IF, tmp.path(), Some(&name));
    let _c = ProcGuard::new(lan.router().spawn_direct(&mut cmd).unwrap(), "dhclient");
    let (addr, _) = wait_addr(&lan, 10 * S);
    assert_eq!(dnsmasq.resolve(&name), Some(addr));
    assert_eq!(dnsmasq.resolve(&format!("{name}.lan.test")), Some(addr));
    assert_eq!(dnsmasq.resolve("nosuchhost"), None);
    assert_eq!(dnsmasq.lease_of(addr).and_then(|l| l.hostname), Some(name));
}

/// The foreign-packet sender works from a LAN client, and a bound dhclient ignores it.
#[test]
fn foreign_packets_can_be_sent_from_a_lan_client() {
    require_root!();
    let mut lan = Lan::with_router();
    let client = lan.add_client(10);
    let _kea = Kea::start(&lan.lan, KeaOpts::default());
    let tmp = TempDir::new("bed");
    let _c = RefClient::start(RefClientKind::Dhclient, lan.router(), LAN_IF, tmp.path());
    let (addr, _) = wait_addr(&lan, 10 * S);
    let mac = dhcp::parse_mac(&mac_of(lan.router(), LAN_IF));
    let mut payloads: Vec<Vec<u8>> = (0..5).map(|i| dhcp::garbage(i + 1, 300)).collect();
    for t in [dhcp::OFFER, dhcp::ACK, dhcp::NAK] {
        payloads.push(
            dhcp::server_reply(
                t,
                0x0bad_0000 + t as u32,
                mac,
                Ipv4Addr::new(192, 0, 2, 222),
                3600,
            )
            .encode(),
        );
    }
    for dst in [Ipv4Addr::new(192, 0, 2, 255), Ipv4Addr::BROADCAST] {
        dhcp::send_udp_in(&client, "eth0", 67, SocketAddrV4::new(dst, 68), &payloads);
    }
    std::thread::sleep(S);
    assert_eq!(addr_on(lan.router(), LAN_IF), vec![(addr, 24)]);
}
