//! Real LANs (issue 23, points 4 and 5), in network namespaces against real servers, judged
//! by a capture on the LAN bridge and by the servers' logs and lease tables. Root only
//! (`require_root!` skips otherwise, fails under CI).
//!
//! * Someone takes your address (RFC 5227 section 2.4): a LAN host that starts using the
//!   router's bound address is defended once (one ARP announcement), and a second claim
//!   within DEFEND_INTERVAL (10 s) makes the agent DECLINE the lease and take another.
//! * Announcements (RFC 5227 section 2.3, RFC 4861 section 7.2.6): after every bind, also
//!   after the router moved with its lease (INIT-REBOOT from another namespace), two ARP
//!   announcements 2 s apart, and unsolicited neighbour advertisements for its IPv6
//!   addresses.
//! * Servers you did not choose: with `--dhcp-server` / `--deny-dhcp-server` the agent binds
//!   from the chosen server even when the other one (dnsmasq and Kea on one LAN, different
//!   pools) answers first.

use netcontainer_proto::contract::LAN_IF;
use netcontainer_tests::v6::{Radvd, RadvdOpts, lan_v6, link_local_of, slaac_of};
use netcontainer_tests::*;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);
/// The LAN host that takes the router's address.
const INTRUDER: u8 = 30;
/// Kea's and dnsmasq's addresses in the two-server bed.
const SECOND: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const THIRD: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);

/// tcpdump on one interface of a namespace, as text (`-n -e -tt`, line buffered); killed
/// with its namespace's guard, or on drop.
struct Capture {
    ns: Arc<Netns>,
    pid: u32,
    _dir: TempDir,
    out: PathBuf,
}

impl Capture {
    fn start(ns: &Arc<Netns>, ifname: &str, filter: &str) -> Capture {
        let dir = TempDir::new("cap");
        let out = dir.join("cap.txt");
        let pid = ns.spawn(
            &[
                "tcpdump", "-i", ifname, "-n", "-e", "-tt", "-l", "-vv", filter,
            ],
            Some(&out),
        );
        let ready = wait_until(10 * S, 10 * MS, || {
            std::fs::read_to_string(&out).is_ok_and(|s| s.contains("listening on"))
        });
        assert!(ready, "tcpdump did not start: {}", tail(&out, 10));
        Capture {
            ns: ns.clone(),
            pid,
            _dir: dir,
            out,
        }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// The times of the ARP announcements of `addr` from `mac` (requests whose sender and
    /// target are both `addr`).
    fn announcements(&self, addr: Ipv4Addr, mac: &str) -> Vec<f64> {
        let who = format!("who-has {addr} tell {addr}");
        self.text()
            .lines()
            .filter(|l| l.contains(&format!(" {mac} > ")) && l.contains(&who))
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    }

    /// Unsolicited neighbour advertisements (to ff02::1) of `target` from `mac`.
    fn unsolicited_nas(&self, target: std::net::Ipv6Addr, mac: &str) -> usize {
        let text = self.text();
        let lines: Vec<&str> = text.lines().collect();
        // `-vv` puts the NA's flags and target on the line after the header.
        lines
            .windows(2)
            .filter(|w| {
                w[0].contains(&format!(" {mac} > ")) && w[0].contains("ff02::1")
                    || w[0].contains(&format!(" {mac} > 33:33:00:00:00:01"))
            })
            .filter(|w| {
                let both = format!("{} {}", w[0], w[1]);
                both.contains("neighbor advertisement")
                    && both.contains(&format!("tgt is {target}"))
                    && !both.contains("solicited,")
            })
            .count()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.ns.signal(self.pid, libc::SIGTERM);
        let _ = self.ns.reap(self.pid, 5 * S);
    }
}

fn counters(agent: &Agent) -> serde_json::Value {
    agent.status_json().expect("agent status")["counters"].clone()
}

fn dnsmasq_pool() -> DnsmasqOpts {
    DnsmasqOpts {
        range: (Ipv4Addr::new(192, 0, 2, 50), Ipv4Addr::new(192, 0, 2, 59)),
        ..DnsmasqOpts::default()
    }
}

/// A LAN host takes the bound address: its first gratuitous ARP is answered with one
/// announcement (the address stays), its second within 10 s makes the agent DECLINE the
/// lease (dnsmasq logs it) and take another address, which it announces in turn; status,
/// counters and log say what happened.
#[test]
fn a_host_taking_the_bound_address_is_defended_once_then_the_lease_is_declined() {
    require_root!();
    let mut lan = Lan::with_router();
    let intruder = lan.add_client(INTRUDER);
    let intruder_mac = mac_of(&intruder, "eth0");
    let cap = Capture::start(&lan.lan, "br0", "arp");
    let dnsmasq = Dnsmasq::start(&lan.lan, dnsmasq_pool());
    let tmp = TempDir::new("conflict");
    let agent = Agent::start(lan.router(), tmp.path());
    let mac = mac_of(lan.router(), LAN_IF);

    let out = agent.apply(&ApplyArgs::new(LAN_IF).wait(15));
    assert!(out.ok(), "agent apply failed: {out}");
    let taken = out.address().expect("apply printed the address");

    // RFC 5227 2.3: two announcements, ANNOUNCE_INTERVAL (2 s) apart.
    let announced = wait_until(6 * S, 50 * MS, || cap.announcements(taken, &mac).len() >= 2);
    assert!(
        announced,
        "no two announcements of {taken}:\n{}",
        cap.text()
    );
    std::thread::sleep(S);
    let t = cap.announcements(taken, &mac);
    assert_eq!(t.len(), 2, "{}", cap.text());
    assert!((1.8..2.6).contains(&(t[1] - t[0])), "announcements {t:?}");

    // The intruder starts using the address and says so (gratuitous ARP).
    intruder.ip(&["addr", "add", &format!("{taken}/24"), "dev", "eth0"]);
    intruder.exec_ok(&[
        "arping",
        "-q",
        "-U",
        "-c",
        "1",
        "-I",
        "eth0",
        &taken.to_string(),
    ]);
    let defended = wait_until(3 * S, 50 * MS, || cap.announcements(taken, &mac).len() >= 3);
    assert!(defended, "no defence:\n{}\n{}", cap.text(), agent.log());
    let st = agent.status();
    assert_eq!(st.address(), Some(taken), "defended, not given up: {st:?}");
    assert_eq!(addr_on(lan.router(), LAN_IF), vec![(taken, 24)]);
    let c = counters(&agent);
    assert_eq!(
        (c["defences"].as_u64(), c["conflicts"].as_u64()),
        (Some(1), Some(0)),
        "{c}"
    );
    assert!(!dnsmasq.log().contains("DHCPDECLINE"), "{}", dnsmasq.log());

    // It claims the address again within DEFEND_INTERVAL: the agent gives it up.
    intruder.exec_ok(&[
        "arping",
        "-q",
        "-U",
        "-c",
        "1",
        "-I",
        "eth0",
        &taken.to_string(),
    ]);
    let want = format!("address {taken} is in use by MAC {intruder_mac}");
    let declined = agent
        .wait_status(5 * S, |s| {
            s.last_error.as_deref().is_some_and(|e| e.contains(&want))
        })
        .unwrap_or_else(|| {
            panic!(
                "no decline in status: {:?}\n{}",
                agent.status_json(),
                agent.log()
            )
        });
    assert!(declined.lease.is_none(), "{declined:?}");
    assert!(
        !has_addr(lan.router(), LAN_IF, taken),
        "the address stayed on {LAN_IF}"
    );
    assert_eq!(cap.announcements(taken, &mac).len(), 3, "no second defence");
    let decline_logged = wait_until(5 * S, 50 * MS, || {
        dnsmasq.log().contains(&format!("DHCPDECLINE(br0) {taken}"))
    });
    assert!(decline_logged, "dnsmasq saw no DECLINE:\n{}", dnsmasq.log());
    assert!(agent.log().contains("declined"), "{}", agent.log());

    // RFC 2131 3.1: DISCOVER again after 10 s; dnsmasq offers another address.
    let st = agent.wait_bound(25 * S);
    let new = st.address().expect("a new lease");
    assert_ne!(new, taken, "{st:?}");
    assert_eq!(addr_on(lan.router(), LAN_IF), vec![(new, 24)]);
    let lease = dnsmasq
        .lease_of(new)
        .expect("dnsmasq leased the new address");
    assert_eq!(lease.mac, mac);
    let c = counters(&agent);
    assert_eq!(
        (c["defences"].as_u64(), c["conflicts"].as_u64()),
        (Some(1), Some(1)),
        "{c}"
    );
    let announced = wait_until(5 * S, 50 * MS, || cap.announcements(new, &mac).len() >= 2);
    assert!(
        announced,
        "the new address is not announced:\n{}",
        cap.text()
    );
    assert!(has_addr(&intruder, "eth0", taken));
}

/// A host that sends from the bound address (its kernel's ARP requests for a neighbour,
/// sender IP ours) is treated the same: its first request is defended, its retries within
/// 10 s cost the lease.
#[test]
fn a_host_sending_from_the_bound_address_costs_the_lease() {
    require_root!();
    let mut lan = Lan::with_router();
    let intruder = lan.add_client(INTRUDER);
    let intruder_mac = mac_of(&intruder, "eth0");
    let dnsmasq = Dnsmasq::start(&lan.lan, dnsmasq_pool());
    let tmp = TempDir::new("conflict");
    let agent = Agent::start(lan.router(), tmp.path());
    let out = agent.apply(&ApplyArgs::new(LAN_IF).wait(15));
    assert!(out.ok(), "agent apply failed: {out}");
    let taken = out.address().expect("apply printed the address");
    std::thread::sleep(3 * S); // the announcements are over

    // `ip addr add` alone says nothing on the LAN; traffic from the address does: the
    // intruder resolves a neighbour from it (broadcast requests, sender IP `taken`, a
    // second apart), as its kernel would for its first packet.
    intruder.ip(&["addr", "add", &format!("{taken}/24"), "dev", "eth0"]);
    let _ = intruder.exec(&[
        "arping",
        "-q",
        "-c",
        "3",
        "-w",
        "4",
        "-s",
        &taken.to_string(),
        "-I",
        "eth0",
        "192.0.2.250",
    ]);
    let want = format!("address {taken} is in use by MAC {intruder_mac}");
    agent
        .wait_status(5 * S, |s| {
            s.last_error.as_deref().is_some_and(|e| e.contains(&want))
        })
        .unwrap_or_else(|| {
            panic!(
                "no decline in status: {:?}\n{}",
                agent.status_json(),
                agent.log()
            )
        });
    let decline_logged = wait_until(5 * S, 50 * MS, || {
        dnsmasq.log().contains(&format!("DHCPDECLINE(br0) {taken}"))
    });
    assert!(decline_logged, "dnsmasq saw no DECLINE:\n{}", dnsmasq.log());
    let st = agent.wait_bound(25 * S);
    assert_ne!(st.address(), Some(taken), "{st:?}");
    let c = counters(&agent);
    assert_eq!(
        (c["defences"].as_u64(), c["conflicts"].as_u64()),
        (Some(1), Some(1)),
        "{c}"
    );
}

/// A router that moves with its lease (killed without a RELEASE, its namespace gone, a new
/// one with the same MAC and lease directory: what a Swarm drain does) announces its
/// address again after the INIT-REBOOT, and its IPv6 addresses (link-local and SLAAC) with
/// unsolicited neighbour advertisements.
#[test]
fn a_router_that_moves_announces_its_addresses() {
    require_root!();
    let mut lan = Lan::new();
    let first = lan.add_router();
    let mac = mac_of(&first, LAN_IF);
    lan_v6(&lan.lan);
    let _radvd = Radvd::start(&lan.lan, RadvdOpts::default());
    let dnsmasq = Dnsmasq::start(&lan.lan, dnsmasq_pool());
    let cap = Capture::start(&lan.lan, "br0", "arp or (icmp6 and ip6[40] == 136)");
    let tmp = TempDir::new("move");
    // One lease directory for both routers: the host's /var/lib/netcontainer/<service>
    // that a moved router finds again (a shared volume, or the same node).
    let leases = tmp.join("leases");
    std::fs::create_dir_all(&leases).unwrap();
    let lease_args = ["--lease-dir", leases.to_str().unwrap()];
    let mut agent = Agent::start_with_args(&first, tmp.path(), &lease_args);
    let out = agent.apply(&ApplyArgs::new(LAN_IF).wait(15));
    assert!(out.ok(), "agent apply failed: {out}");
    let addr = out.address().expect("apply printed the address");
    let slaac = slaac_of(&mac);
    let v6 = wait_until(10 * S, 100 * MS, || {
        v6::addrs6(&first, LAN_IF)
            .iter()
            .any(|a| a.address == slaac)
    });
    assert!(v6, "no SLAAC address: {:?}", v6::addrs6(&first, LAN_IF));
    let nas = wait_until(5 * S, 100 * MS, || {
        cap.unsolicited_nas(slaac, &mac) >= 1 && cap.unsolicited_nas(link_local_of(&mac), &mac) >= 1
    });
    assert!(
        nas,
        "no unsolicited NAs for {slaac} and the link-local address:\n{}",
        cap.text()
    );
    assert!(wait_until(5 * S, 50 * MS, || cap
        .announcements(addr, &mac)
        .len()
        >= 2));

    // The move: killed (no RELEASE), its namespace removed, a new one with the same MAC.
    agent.kill9();
    drop(agent);
    lan.remove_router(&first);
    drop(first);
    let before_arp = cap.announcements(addr, &mac).len();
    let before_na = cap.unsolicited_nas(slaac, &mac);
    let second = lan.add_router_with_mac(Some(&mac));
    let agent2 = Agent::start_with_args(&second, tmp.path(), &lease_args);
    let out = agent2.apply(&ApplyArgs::new(LAN_IF).wait(15));
    assert!(out.ok(), "agent apply failed: {out}");
    assert_eq!(out.address(), Some(addr), "INIT-REBOOT got the lease back");
    assert!(agent2.log().contains("INIT-REBOOT"), "{}", agent2.log());
    let announced = wait_until(6 * S, 50 * MS, || {
        cap.announcements(addr, &mac).len() >= before_arp + 2
    });
    assert!(
        announced,
        "the moved router did not announce {addr}:\n{}",
        cap.text()
    );
    let nas = wait_until(10 * S, 100 * MS, || {
        cap.unsolicited_nas(slaac, &mac) > before_na
    });
    assert!(
        nas,
        "the moved router did not advertise {slaac}:\n{}",
        cap.text()
    );
    assert_eq!(
        dnsmasq.leases().iter().filter(|l| l.mac == mac).count(),
        1,
        "one lease throughout"
    );
}

/// Two servers on one LAN, each in a namespace of its own on the LAN bridge: dnsmasq
/// (192.0.2.3, pool .50-.59) and Kea (192.0.2.2, pool .100-.109). The server to ignore
/// answers first: the other's replies are dropped on the way to the routers (an nft
/// ingress rule on the host's `eth0`) until the first has offered, then let through, so
/// its OFFER answers a retransmitted DISCOVER (4 s later). Deterministic, unlike a race.
struct TwoServers {
    agent: Agent,
    _tmp: TempDir,
    kea: Kea,
    dnsmasq: Dnsmasq,
    late: Option<rogue::IngressDrop>,
    _ns: [Arc<Netns>; 2],
    _lan: Lan,
}

impl TwoServers {
    /// `late`: the server whose replies are held back at first.
    fn new(late: Ipv4Addr) -> TwoServers {
        let lan = Lan::with_router();
        let kea_ns = Arc::new(Netns::new(&unique("kea")).expect("create Kea netns"));
        let dnsmasq_ns = Arc::new(Netns::new(&unique("dnsm")).expect("create dnsmasq netns"));
        // Named br0 so that both harnesses (which serve br0) run unchanged there.
        rogue::plug(&lan, &kea_ns, "br0");
        rogue::plug(&lan, &dnsmasq_ns, "br0");
        dnsmasq_ns.ip(&["addr", "add", &format!("{THIRD}/24"), "dev", "br0"]);
        let dnsmasq = Dnsmasq::start(&dnsmasq_ns, dnsmasq_pool());
        let kea = Kea::start(
            &kea_ns,
            KeaOpts {
                pool: "192.0.2.100 - 192.0.2.109".into(),
                gateway: SECOND,
                dns: vec![SECOND],
                ..KeaOpts::default()
            },
        );
        let late = rogue::IngressDrop::new(&lan.host, "eth0", &[rogue::from_server(late)]);
        let tmp = TempDir::new("servers");
        let agent = Agent::start(lan.router(), tmp.path());
        TwoServers {
            agent,
            _tmp: tmp,
            kea,
            dnsmasq,
            late: Some(late),
            _ns: [kea_ns, dnsmasq_ns],
            _lan: lan,
        }
    }

    fn kea_leased(&self, a: Ipv4Addr) -> bool {
        self.kea.lease_of(a).is_some_and(|l| l.is_active())
    }

    fn kea_offered(&self) -> bool {
        self.kea
            .log()
            .lines()
            .any(|l| l.contains("DHCP4_PACKET_SEND") && l.contains("DHCPOFFER"))
    }

    fn dnsmasq_offered(&self) -> bool {
        self.dnsmasq.log().contains("DHCPOFFER")
    }

    /// Applies `args`; once the early server has offered (and the late one's replies
    /// were dropped), lets the late one through; returns the address bound.
    fn apply(&mut self, args: ApplyArgs) -> Ipv4Addr {
        let out = self.agent.apply(&args);
        assert!(out.ok(), "agent apply failed: {out}\n{}", self.agent.log());
        let late = self.late.take().expect("one apply per bed");
        let early_offered = wait_until(10 * S, 20 * MS, || {
            late.dropped() > 0 && (self.kea_offered() || self.dnsmasq_offered())
        });
        assert!(early_offered, "no early OFFER:\n{}", self.agent.log());
        // The early OFFER is on the wire; give it time to reach the agent.
        std::thread::sleep(300 * MS);
        drop(late);
        let st = self.agent.wait_bound(15 * S);
        st.address().expect("bound")
    }
}

fn in_kea_pool(a: Ipv4Addr) -> bool {
    (100..=109).contains(&a.octets()[3])
}

/// Without a choice the early server wins (the bed works as meant).
#[test]
fn two_servers_without_a_choice_the_first_answer_wins() {
    require_root!();
    let mut w = TwoServers::new(SECOND);
    let a = w.apply(ApplyArgs::new(LAN_IF));
    assert!(!in_kea_pool(a), "{a}: the late Kea won");
    assert!(w.dnsmasq.lease_of(a).is_some());
}

/// `--dhcp-server 192.0.2.2`: dnsmasq's OFFER comes first and is ignored; the lease is
/// Kea's (its lease table has it, dnsmasq's has none) and so are its parameters.
#[test]
fn dhcp_server_allow_list_binds_from_the_chosen_server_only() {
    require_root!();
    let mut w = TwoServers::new(SECOND);
    let a = w.apply(ApplyArgs::new(LAN_IF).arg("--dhcp-server", &SECOND.to_string()));
    assert!(in_kea_pool(a), "{a} is not Kea's");
    assert!(w.kea_leased(a), "Kea has no lease of {a}");
    assert!(w.dnsmasq_offered(), "{}", w.dnsmasq.log());
    assert!(w.dnsmasq.leases().is_empty(), "{:?}", w.dnsmasq.leases());
    let st = w.agent.status_json().unwrap();
    assert_eq!(st["lease"]["server_id"], SECOND.to_string(), "{st}");
    assert_eq!(st["lease"]["gateway"], SECOND.to_string(), "{st}");
    let ignored = w.agent.log().lines().any(|l| {
        l.contains("reply from a server not chosen ignored")
            && l.contains("Offer")
            && l.contains(&format!("server=Some({THIRD})"))
    });
    assert!(ignored, "{}", w.agent.log());
}

/// `--deny-dhcp-server 192.0.2.3`: likewise, by naming the server to ignore.
#[test]
fn deny_dhcp_server_ignores_the_denied_server() {
    require_root!();
    let mut w = TwoServers::new(SECOND);
    let a = w.apply(ApplyArgs::new(LAN_IF).arg("--deny-dhcp-server", &THIRD.to_string()));
    assert!(in_kea_pool(a), "{a} is not Kea's");
    assert!(w.kea_leased(a));
    assert!(w.dnsmasq_offered(), "{}", w.dnsmasq.log());
    assert!(w.dnsmasq.leases().is_empty(), "{:?}", w.dnsmasq.leases());
}

/// And the other way round: Kea answers first, `--dhcp-server 192.0.2.3` takes dnsmasq's.
#[test]
fn dhcp_server_allow_list_works_whichever_server_is_early() {
    require_root!();
    let mut w = TwoServers::new(THIRD);
    let a = w.apply(ApplyArgs::new(LAN_IF).arg("--dhcp-server", &THIRD.to_string()));
    assert!(!in_kea_pool(a), "{a} is Kea's");
    assert!(w.dnsmasq.lease_of(a).is_some());
    assert!(w.kea_offered(), "Kea never offered:\n{}", w.kea.log());
    assert!(
        !w.kea.leases().iter().any(|l| l.is_active()),
        "Kea leased: {:?}",
        w.kea.leases()
    );
}

/// A bad list is a one-line usage error, before anything is sent.
#[test]
fn a_bad_server_list_is_refused() {
    require_root!();
    let lan = Lan::with_router();
    let tmp = TempDir::new("servers");
    let agent = Agent::start(lan.router(), tmp.path());
    for (flag, bad) in [
        ("--dhcp-server", "dhcp.lan"),
        ("--deny-dhcp-server", "192.0.2.0/24"),
        ("--dhcp-server", "192.0.2.1,,192.0.2.2"),
    ] {
        let out = agent.apply(&ApplyArgs::new(LAN_IF).arg(flag, bad));
        assert!(!out.ok(), "{flag} {bad} accepted: {out}");
        assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
        assert!(out.stderr.contains(flag), "{out}");
    }
}

/// A second dnsmasq on the Docker bed's LAN: 203.0.113.2, pool .200-.209, gateway .2,
/// in a namespace of its own on the LAN bridge. `reply_delay`: it answers that many
/// seconds late (`--dhcp-reply-delay`), so the bed's own server answers first.
fn second_docker_server(bed: &docker::DockerBed, reply_delay: u32) -> (Arc<Netns>, Dnsmasq) {
    let second = Ipv4Addr::new(203, 0, 113, 2);
    let ns = Arc::new(Netns::new(&unique("dhcp2")).expect("create netns"));
    bed::plug(&bed.lan, "dh2", &ns, "br0", Some(&format!("{second}/24")));
    let mut extra = Vec::new();
    if reply_delay > 0 {
        extra.push(format!("--dhcp-reply-delay={reply_delay}"));
    }
    let d = Dnsmasq::start(
        &ns,
        DnsmasqOpts {
            range: (
                Ipv4Addr::new(203, 0, 113, 200),
                Ipv4Addr::new(203, 0, 113, 209),
            ),
            router: second,
            dns_port: 0,
            domain: None,
            lease_secs: 600,
            extra,
            ..DnsmasqOpts::default()
        },
    );
    (ns, d)
}

fn in_second_pool(a: Ipv4Addr) -> bool {
    a.octets()[..3] == [203, 0, 113] && (200..=209).contains(&a.octets()[3])
}

/// `up --dhcp-server` and the label `netcontainer.deny-dhcp-server` on the Docker bed:
/// the bed's dnsmasq answers first (the other one 1 s late) and is ignored; the lease is
/// the chosen server's, the router records the list in its labels; a bad label is a
/// one-line error naming it, and nothing is left behind.
#[test]
fn up_takes_the_lease_from_the_chosen_server() {
    require_root!();
    let bed = docker::DockerBed::new(13);
    let (_ns, other) = second_docker_server(&bed, 1);
    let second = "203.0.113.2";

    let a = bed.run_service("a", &[]);
    let u = bed.up(&a.name, &["--dhcp-server", second]);
    assert!(
        in_second_pool(u.address),
        "{}: not the chosen server's",
        u.address
    );
    assert!(other.lease_of(u.address).is_some(), "{:?}", other.leases());
    assert!(
        bed.dnsmasq.leases().is_empty(),
        "{:?}",
        bed.dnsmasq.leases()
    );
    assert!(
        bed.dnsmasq.log().contains("DHCPOFFER"),
        "the bed's server never offered"
    );
    let label = docker::docker_ok(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"netcontainer.dhcp-server\"}}",
        &docker::router_name(&a.name),
    ]);
    assert_eq!(label.trim(), second);

    let b = bed.container(
        "b",
        docker::SAMPLE_IMAGE,
        &["-l", "netcontainer.deny-dhcp-server=203.0.113.1"],
        &[],
        true,
    );
    let u = bed.up(&b.name, &[]);
    assert!(
        in_second_pool(u.address),
        "{}: not the chosen server's",
        u.address
    );
    assert!(
        bed.dnsmasq.leases().is_empty(),
        "{:?}",
        bed.dnsmasq.leases()
    );

    let c = bed.container(
        "c",
        docker::SAMPLE_IMAGE,
        &["-l", "netcontainer.dhcp-server=router.lan"],
        &[],
        true,
    );
    let out = bed.try_up(&c.name, &[]);
    assert!(!out.ok(), "{out}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");
    assert!(out.stderr.contains("netcontainer.dhcp-server"), "{out}");
    bed.assert_clean(&c.name);
}

/// `doctor` lists every server that answered its DISCOVER: on the Docker bed's LAN
/// (dnsmasq at 203.0.113.1) a second dnsmasq (203.0.113.2, pool .200-.209, gateway .2)
/// in a namespace of its own; doctor prints one OFFER line per server with its address
/// and gateway, warns that two servers answered and names the flags that choose, and
/// takes no lease from either. (The Docker bed: doctor checks Docker and the image
/// before it sends its probe.)
#[test]
fn doctor_shows_every_server_that_answered() {
    require_root!();
    let bed = docker::DockerBed::new(12);
    let second = Ipv4Addr::new(203, 0, 113, 2);
    let (_ns, other) = second_docker_server(&bed, 0);
    let out = bed.nc(&["doctor", "--parent", &bed.parent, "--timeout", "5"]);
    println!("{}", out.stdout);
    assert!(out.ok(), "two servers are a warning, not a failure: {out}");
    let offers: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("OFFER from"))
        .collect();
    assert_eq!(offers.len(), 2, "{out}");
    let first = offers
        .iter()
        .find(|l| l.contains(&format!("OFFER from {} ", docker::LAN_GATEWAY)))
        .unwrap_or_else(|| panic!("no OFFER from the bed's server: {out}"));
    assert!(
        first.contains(&format!("gateway {}", docker::LAN_GATEWAY)),
        "{first}"
    );
    let two = offers
        .iter()
        .find(|l| l.contains(&format!("OFFER from {second} ")))
        .unwrap_or_else(|| panic!("no OFFER from the second server: {out}"));
    assert!(
        two.contains(": 203.0.113.20"),
        "address from its pool: {two}"
    );
    assert!(two.contains(&format!("gateway {second}")), "{two}");
    let warn = out
        .stdout
        .lines()
        .find(|l| l.starts_with("warn") && l.contains("2 servers answered"))
        .unwrap_or_else(|| panic!("no warning: {out}"));
    assert!(warn.contains("--dhcp-server"), "{warn}");
    assert!(bed.dnsmasq.leases().is_empty() && other.leases().is_empty());
    assert!(!other.log().contains("DHCPREQUEST"), "{}", other.log());
}
