//! The agent's DHCP client against dueling, rogue and crafted DHCP servers, in network
//! namespaces. Root only (`require_root!` skips otherwise, fails under CI).
//!
//! * Two real servers on one LAN (dnsmasq on br0 = 192.0.2.1, Kea in a second namespace
//!   plugged into the same bridge as 192.0.2.2): each agent takes everything from one.
//! * A rogue ACK (right xid and chaddr, another server id) while the real server's ACK is
//!   dropped: ignored.
//! * Forged NAKs while renewing (foreign xid; right xid from another server): ignored.
//! * A crafted server ([`rogue::Responder`] in the LAN namespace) handing out absurd
//!   options: each has one precise outcome.
//!
//! Replies are dropped selectively by an nftables `netdev` ingress table on the host's
//! `eth0` (the routers' macvlan parent), see [`rogue::IngressDrop`].

use netcontainer_proto::contract;
use netcontainer_proto::contract::LAN_IF;
use netcontainer_tests::dhcp::{self, ACK, DISCOVER, NAK, OFFER, REQUEST};
use netcontainer_tests::rogue::{self, IngressDrop, Reply, Request, Responder};
use netcontainer_tests::*;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

const S: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(20);
/// br0 in the LAN namespace: dnsmasq, Kea or the crafted server.
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The second server (Kea in its own namespace) in the duel.
const SECOND: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// A LAN client playing the rogue server.
const ROGUE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// What the crafted server hands out.
const YIADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);
/// What rogue ACKs try to hand out.
const FORGED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 222);
const MASK24: Ipv4Addr = Ipv4Addr::new(255, 255, 255, 0);
/// The agent's routing table, as `ip route show table` takes it.
fn table() -> String {
    contract::ROUTE_TABLE.to_string()
}

/// A bed with one router and a running agent that has not received a plan yet.
struct World {
    // Field order = drop order: the agent goes first, then the temp dir, then the bed.
    agent: Agent,
    _tmp: TempDir,
    lan: Lan,
}

impl World {
    fn new() -> World {
        let lan = Lan::with_router();
        let tmp = TempDir::new("rogue");
        let agent = Agent::start(lan.router(), tmp.path());
        World {
            agent,
            _tmp: tmp,
            lan,
        }
    }

    fn addrs(&self) -> Vec<(Ipv4Addr, u8)> {
        addr_on(self.lan.router(), LAN_IF)
    }

    fn mac(&self) -> [u8; 6] {
        dhcp::parse_mac(&mac_of(self.lan.router(), LAN_IF))
    }

    /// `apply` without `--wait`: the plan is sent, the agent starts DHCP.
    fn start_dhcp(&self) {
        let out = self.agent.apply(&ApplyArgs::new(LAN_IF));
        assert!(out.ok(), "agent apply failed: {out}");
    }

    /// `apply --wait 10`, asserting success; returns the address.
    fn bind(&self) -> Ipv4Addr {
        let out = self.agent.apply(&ApplyArgs::new(LAN_IF).wait(10));
        assert!(out.ok(), "agent apply failed: {out}");
        out.address()
            .unwrap_or_else(|| panic!("apply printed no address: {out}"))
    }

    /// The agent still runs and answers status.
    fn alive(&mut self) -> AgentStatus {
        assert!(self.agent.running(), "agent died:\n{}", self.agent.log());
        self.agent.status()
    }

    /// How often the agent logged `what`.
    fn logged(&self, what: &str) -> usize {
        self.agent.log().matches(what).count()
    }

    /// Does the agent log at debug level (NETCONTAINER_LOG=debug in the environment)?
    /// Then the log also shows why it ignored each packet.
    fn debug_logs(&self) -> bool {
        self.agent.log().contains(" DEBUG ")
    }
}

fn in_range(a: Ipv4Addr, lo: u8, hi: u8) -> bool {
    a.octets()[..3] == [192, 0, 2] && (lo..=hi).contains(&a.octets()[3])
}

/// The default route of the agent's table in `ns`: (gateway, device, onlink).
fn default_route(ns: &Netns) -> Option<(Ipv4Addr, String, bool)> {
    // An empty table does not exist: `ip` fails, no default route.
    let out = try_run(std::process::Command::new("ip").args([
        "-n",
        ns.name(),
        "-j",
        "-4",
        "route",
        "show",
        "table",
        &table(),
    ]))
    .ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    let r = v
        .as_array()?
        .iter()
        .find(|r| r["dst"].as_str() == Some("default"))?;
    Some((
        r["gateway"].as_str()?.parse().ok()?,
        r["dev"].as_str()?.to_string(),
        r["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "onlink")),
    ))
}

fn routes_text(ns: &Netns) -> String {
    try_run(std::process::Command::new("ip").args([
        "-n",
        ns.name(),
        "-4",
        "route",
        "show",
        "table",
        &table(),
    ]))
    .unwrap_or_else(|e| e)
}

/// `valid_life_time` of `addr` on lan0 in `ns` (4294967295 = forever).
fn valid_lifetime(ns: &Netns, addr: Ipv4Addr) -> Option<u64> {
    let out = ns.ip(&["-j", "-4", "addr", "show", "dev", LAN_IF]);
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v.as_array()?
        .iter()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .find(|a| a["local"].as_str() == Some(&addr.to_string()))?["valid_life_time"]
        .as_u64()
}

fn mac_str(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

// ------------------------------------------------------------------------------------
// 1. Two real servers on one LAN

/// dnsmasq (br0 = 192.0.2.1, pool .50-.99, router and DNS .1, 120 s) and Kea (a second
/// namespace on the same bridge, 192.0.2.2, pool .100-.149, router and DNS .2, 600 s)
/// answer every DISCOVER. Six agents (six client ids) start at once: each binds to
/// exactly one server and every parameter in its status (address in that server's pool,
/// server id, gateway, DNS, lease time) and on its interface (address, default route)
/// comes from that same server. The first four race freely (whoever wins); for the last
/// two the other server's replies are dropped, so both servers surely win at least once.
///
/// Coexistence: dnsmasq ignores a REQUEST naming Kea's server id and vice versa; neither
/// NAKs the other's clients (no INIT-REBOOT here: fresh state dirs).
#[test]
fn dueling_servers_each_agent_takes_everything_from_one() {
    require_root!();
    const AGENTS: usize = 6;
    let mut lan = Lan::new();
    let routers: Vec<Arc<Netns>> = (0..AGENTS).map(|_| lan.add_router()).collect();
    let kea_ns = Arc::new(Netns::new(&unique("kea")).expect("create Kea netns"));
    // Named br0 so the Kea harness (which serves br0) runs unchanged in this namespace.
    rogue::plug(&lan, &kea_ns, "br0");
    let dnsmasq = Dnsmasq::start(
        &lan.lan,
        DnsmasqOpts {
            range: (Ipv4Addr::new(192, 0, 2, 50), Ipv4Addr::new(192, 0, 2, 99)),
            ..DnsmasqOpts::default()
        },
    );
    let kea = Kea::start(
        &kea_ns,
        KeaOpts {
            valid_lifetime: 600,
            renew_timer: 300,
            rebind_timer: 525,
            pool: "192.0.2.100 - 192.0.2.149".into(),
            gateway: SECOND,
            dns: vec![SECOND],
            ..KeaOpts::default()
        },
    );
    let macs: Vec<[u8; 6]> = routers
        .iter()
        .map(|r| dhcp::parse_mac(&mac_of(r, LAN_IF)))
        .collect();
    let rigged = IngressDrop::new(
        &lan.host,
        "eth0",
        &[
            format!(
                "{} {}",
                rogue::from_server(SECOND),
                rogue::chaddr_is(macs[AGENTS - 2])
            ),
            format!(
                "{} {}",
                rogue::from_server(SERVER),
                rogue::chaddr_is(macs[AGENTS - 1])
            ),
        ],
    );
    let tmp = TempDir::new("duel");
    let agents: Vec<Agent> = routers
        .iter()
        .map(|r| Agent::start(r, tmp.path()))
        .collect();
    for (i, a) in agents.iter().enumerate() {
        let out = a.apply(&ApplyArgs::new(LAN_IF).client_id(&format!("duel-{i}")));
        assert!(out.ok(), "apply {i}: {out}");
    }

    let mut wins = [0usize; 2];
    let mut addrs = Vec::new();
    for (i, (a, r)) in agents.iter().zip(&routers).enumerate() {
        let st = a.wait_bound(15 * S);
        let l = st.lease.clone().unwrap();
        let (server, lo, hi, lease_secs, ix) = match l.server_id {
            Some(SERVER) => (SERVER, 50, 99, 120.0, 0),
            Some(SECOND) => (SECOND, 100, 149, 600.0, 1),
            other => panic!("agent {i}: server id {other:?}: {st:?}"),
        };
        wins[ix] += 1;
        assert!(
            in_range(l.address, lo, hi),
            "agent {i}: address {} not in the pool of {server}: {l:?}",
            l.address
        );
        assert_eq!(l.gateway, Some(server), "agent {i}: mixed gateway: {l:?}");
        assert_eq!(l.dns, vec![server], "agent {i}: mixed DNS: {l:?}");
        assert_eq!(l.prefix_len, 24, "agent {i}: {l:?}");
        assert_eq!(l.lease_secs, lease_secs, "agent {i}: lease time: {l:?}");
        assert_eq!(addr_on(r, LAN_IF), vec![(l.address, 24)], "agent {i}");
        let route = default_route(r);
        assert_eq!(
            route.as_ref().map(|(gw, dev, _)| (*gw, dev.as_str())),
            Some((server, LAN_IF)),
            "agent {i}: default route: {}",
            routes_text(r)
        );
        // The winner has the lease; the loser none for this MAC.
        let mac = mac_str(macs[i]);
        if server == SERVER {
            let dl = dnsmasq.lease_of(l.address);
            assert_eq!(dl.map(|d| d.mac), Some(mac.clone()), "agent {i}");
            assert!(
                !kea.active_leases().iter().any(|k| k.hwaddr == mac),
                "agent {i} bound to dnsmasq but Kea leased it too: {:?}",
                kea.leases()
            );
        } else {
            let kl = kea.lease_of(l.address).expect("Kea has the lease");
            assert!(kl.is_active() && kl.hwaddr == mac, "agent {i}: {kl:?}");
            assert!(
                !dnsmasq.leases().iter().any(|d| d.mac == mac),
                "agent {i} bound to Kea but dnsmasq leased it too: {:?}",
                dnsmasq.leases()
            );
        }
        addrs.push(l.address);
        if i == AGENTS - 2 {
            assert_eq!(server, SERVER, "Kea's replies were dropped for agent {i}");
        }
        if i == AGENTS - 1 {
            assert_eq!(
                server, SECOND,
                "dnsmasq's replies were dropped for agent {i}"
            );
        }
    }
    let mut unique_addrs = addrs.clone();
    unique_addrs.sort();
    unique_addrs.dedup();
    assert_eq!(unique_addrs.len(), AGENTS, "duplicate addresses: {addrs:?}");
    assert!(rigged.dropped() > 0, "the rigging dropped nothing");
    eprintln!(
        "duel: dnsmasq won {} (1 rigged), Kea won {} (1 rigged) of {AGENTS}",
        wins[0], wins[1]
    );
}

// ------------------------------------------------------------------------------------
// 2. A rogue ACK

/// Kea (192.0.2.1) offers; its ACK is dropped before the router (netdev ingress on the
/// host's eth0, DHCP message type 5 from 192.0.2.1). A rogue on the LAN (192.0.2.10,
/// listening on port 67, so it sees the broadcast REQUEST and its xid) answers the
/// REQUEST with ACKs carrying the right xid and chaddr but another server: server id
/// 192.0.2.10 for a foreign address and for the offered one, the rogue only in siaddr
/// (no option 54, and option 54 = 0.0.0.0), and a NAK from the rogue. The agent must stay
/// in REQUESTING with no address. Control: the same ACK with the selected server's id
/// (spoofed) is taken.
#[test]
fn ack_from_a_server_not_selected_is_ignored() {
    require_root!();
    let mut w = World::new();
    let rogue_ns = w.lan.add_client(10);
    let kea = Kea::start(&w.lan.lan, KeaOpts::default());
    let mac = w.mac();
    let block = IngressDrop::new(
        &w.lan.host,
        "eth0",
        &[format!(
            "{} {}",
            rogue::from_server(SERVER),
            rogue::msg_type_first(ACK)
        )],
    );
    let rogue = Responder::start(&rogue_ns, "eth0", move |req: &Request| {
        if req.msg_type != REQUEST || req.chaddr != mac || req.server_id != Some(SERVER) {
            return vec![];
        }
        let offered = req.requested.unwrap_or(FORGED);
        let full = |r: Reply| {
            r.u32(rogue::OPT_LEASE_TIME, 3600)
                .ip(rogue::OPT_SUBNET_MASK, MASK24)
                .ip(rogue::OPT_ROUTER, ROGUE)
                .ip(rogue::OPT_DNS, ROGUE)
        };
        let mut by_siaddr = full(req.reply(ACK, FORGED));
        by_siaddr.siaddr = ROGUE;
        let mut zero_sid = full(
            req.reply(ACK, FORGED)
                .ip(rogue::OPT_SERVER_ID, Ipv4Addr::UNSPECIFIED),
        );
        zero_sid.siaddr = ROGUE;
        vec![
            full(req.reply(ACK, FORGED).ip(rogue::OPT_SERVER_ID, ROGUE)).encode(),
            full(req.reply(ACK, offered).ip(rogue::OPT_SERVER_ID, ROGUE)).encode(),
            by_siaddr.encode(),
            zero_sid.encode(),
            req.reply(NAK, Ipv4Addr::UNSPECIFIED)
                .ip(rogue::OPT_SERVER_ID, ROGUE)
                .encode(),
        ]
    });
    let ignored_before = w.logged("reply from a server we did not select ignored");

    w.start_dhcp();
    let req = rogue
        .wait_request(10 * S, |r| r.msg_type == REQUEST && r.chaddr == mac)
        .expect("the rogue saw no REQUEST from the agent");
    let offered = req.requested.expect("REQUEST without option 50");
    assert!(
        wait_until(5 * S, POLL, || block.dropped() >= 1),
        "Kea's ACK was not dropped (or never sent): {:?}",
        kea.received()
    );
    assert!(rogue.sent() >= 5, "the rogue did not answer");
    // The rogue's replies went out right after the REQUEST; give them time to be handled.
    std::thread::sleep(S);
    let st = w.alive();
    assert_eq!(st.state, "requesting", "{st:?}");
    assert!(st.lease.is_none(), "{st:?}");
    assert!(
        w.addrs().is_empty(),
        "address from a rogue ACK: {:?}",
        w.addrs()
    );
    assert_eq!(default_route(w.lan.router()), None);
    if w.debug_logs() {
        let n = w.logged("reply from a server we did not select ignored") - ignored_before;
        assert!(n >= 5, "the agent saw {n} of the rogue's 5 replies");
    }

    assert!(block.dropped() >= 1);

    // Control: the same ACK naming the selected server (spoofed by the rogue, its own
    // router and DNS) is taken: the rogue's packets do reach the agent, and only the
    // server id made it ignore them.
    let control = req
        .reply(ACK, offered)
        .ip(rogue::OPT_SERVER_ID, SERVER)
        .u32(rogue::OPT_LEASE_TIME, 3600)
        .ip(rogue::OPT_SUBNET_MASK, MASK24)
        .ip(rogue::OPT_ROUTER, ROGUE)
        .ip(rogue::OPT_DNS, ROGUE);
    rogue.send(
        &control.encode(),
        SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
    );
    let st = w.agent.wait_bound(3 * S);
    let l = st.lease.unwrap();
    assert_eq!(
        (l.address, l.server_id, l.gateway),
        (offered, Some(SERVER), Some(ROGUE)),
        "{l:?}"
    );
    assert_eq!(w.addrs(), vec![(offered, 24)]);
}

// ------------------------------------------------------------------------------------
// 3. Forged NAKs

/// A Kea lease of 30 s (T1 2 s, T2 26 s). Bound: NAKs with foreign xids change nothing.
/// Then Kea's replies are dropped, so the agent sits in RENEWING with one xid (read from
/// Kea's log of the unicast renew). NAKs with a foreign xid (agent's chaddr, Kea's server
/// id), with the right xid but another chaddr, and with the right xid and chaddr but from
/// another server (server id 192.0.2.10, none, 0.0.0.0 + siaddr) are sent broadcast and
/// unicast: the agent stays RENEWING with its address (RFC 2131 4.4.5: only the server
/// it renews with may NAK). The control, a NAK with the right xid and Kea's server id,
/// does take the address away (the forged packets did reach the agent).
#[test]
fn forged_naks_change_nothing_while_renewing() {
    require_root!();
    let mut w = World::new();
    let rogue_ns = w.lan.add_client(10);
    let kea = Kea::start(&w.lan.lan, KeaOpts::short(30, 2, 26));
    let addr = w.bind();
    let mac = w.mac();
    let rogue = Responder::start(&rogue_ns, "eth0", |_: &Request| vec![]);
    let nak = |xid: u32, chaddr: [u8; 6], sid: Option<Ipv4Addr>, siaddr: Ipv4Addr| {
        let mut r = Reply::new(NAK, xid, chaddr, Ipv4Addr::UNSPECIFIED);
        if let Some(s) = sid {
            r = r.ip(rogue::OPT_SERVER_ID, s);
        }
        r.siaddr = siaddr;
        r.encode()
    };
    let blast = |payloads: &[Vec<u8>]| {
        for p in payloads {
            for dst in [Ipv4Addr::BROADCAST, addr] {
                rogue.send(p, SocketAddrV4::new(dst, 68));
            }
        }
    };
    let zero = Ipv4Addr::UNSPECIFIED;
    let unchanged = |w: &mut World, state: &str| {
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(w.addrs(), vec![(addr, 24)], "address changed");
        }
        let st = w.alive();
        assert_eq!(st.state, state, "{st:?}");
        let l = st.lease.clone().expect("lease");
        assert_eq!((l.address, l.server_id), (addr, Some(SERVER)));
        assert!(st.last_error.is_none(), "{st:?}");
    };

    // Bound: there is no exchange; NAKs for other xids are foreign.
    blast(&[
        nak(0x1234_5678, mac, Some(SERVER), zero),
        nak(0, mac, Some(SERVER), zero),
        nak(u32::MAX, mac, None, zero),
    ]);
    unchanged(&mut w, "bound");

    // Kea's replies stop reaching the router: the next renew stays unanswered.
    let block = IngressDrop::new(&w.lan.host, "eth0", &[rogue::from_server(SERVER)]);
    let before = kea.requests().len();
    let renew = wait_for(6 * S, POLL, || {
        kea.requests()
            .into_iter()
            .skip(before)
            .find(|r| r.from == addr && r.to == SERVER)
    })
    .unwrap_or_else(|| panic!("no unicast renew within 6 s: {:?}", kea.requests()));
    let xid = u32::from_str_radix(renew.xid.trim_start_matches("0x"), 16).expect("xid");
    assert!(
        w.agent
            .wait_status(3 * S, |s| s.state == "renewing")
            .is_some(),
        "not renewing: {:?}",
        w.agent.status_json()
    );
    assert!(wait_until(3 * S, POLL, || block.dropped() >= 1));

    let other_mac = {
        let mut m = mac;
        m[5] ^= 1;
        m
    };
    let ignored_before = w.logged("NAK from another server while renewing ignored");
    blast(&[
        // Foreign xids, everything else right.
        nak(xid.wrapping_add(1), mac, Some(SERVER), zero),
        nak(xid ^ 0x8000_0000, mac, Some(SERVER), zero),
        nak(!xid, mac, Some(SERVER), zero),
        // The right xid for another client.
        nak(xid, other_mac, Some(SERVER), zero),
        // The right xid and chaddr, from another server.
        nak(xid, mac, Some(ROGUE), zero),
        nak(xid, mac, None, zero),
        nak(xid, mac, Some(zero), ROGUE),
    ]);
    unchanged(&mut w, "renewing");
    if w.debug_logs() {
        let n = w.logged("NAK from another server while renewing ignored") - ignored_before;
        assert!(n >= 3, "the agent saw {n} of the 3 NAKs from other servers");
    }

    // Control: the same NAK from the server it renews with is obeyed.
    blast(&[nak(xid, mac, Some(SERVER), zero)]);
    assert!(
        wait_until(3 * S, POLL, || !has_addr(w.lan.router(), LAN_IF, addr)),
        "the control NAK (right xid, Kea's server id) did not take the address"
    );
    // The address goes before the status is published again: wait for the status too.
    let st = w.agent.wait_status(3 * S, |s| {
        ["init", "selecting"].contains(&s.state.as_str()) && s.lease.is_none()
    });
    assert!(
        st.is_some(),
        "status after the control NAK: {:?}",
        w.alive()
    );
}

// ------------------------------------------------------------------------------------
// 4. A crafted server with absurd options

/// A crafted server on br0 (192.0.2.1) answering DISCOVER with an OFFER and REQUEST with
/// an ACK for 192.0.2.50: option 53, option 54 = 192.0.2.1, then `opts` in that order.
fn crafted(opts: Vec<(u8, Vec<u8>)>) -> (World, Responder) {
    let w = World::new();
    let mac = w.mac();
    let server = Responder::start(&w.lan.lan, "br0", move |req: &Request| {
        let t = match req.msg_type {
            DISCOVER => OFFER,
            REQUEST => ACK,
            _ => return vec![],
        };
        if req.chaddr != mac {
            return vec![];
        }
        let mut r = req.reply(t, YIADDR).ip(rogue::OPT_SERVER_ID, SERVER);
        r.options.extend(opts.iter().cloned());
        vec![r.encode()]
    });
    (w, server)
}

fn o_ip(code: u8, a: Ipv4Addr) -> (u8, Vec<u8>) {
    (code, a.octets().to_vec())
}

fn o_u32(code: u8, v: u32) -> (u8, Vec<u8>) {
    (code, v.to_be_bytes().to_vec())
}

fn bound_lease(w: &mut World) -> LeaseStatus {
    let addr = w.bind();
    assert_eq!(addr, YIADDR);
    let st = w.alive();
    assert_eq!(st.state, "bound", "{st:?}");
    st.lease.unwrap()
}

/// Lease time 0 in OFFER and ACK: the OFFER is taken, the ACK ignored (no bind, no
/// address); the agent keeps requesting and answers status.
#[test]
fn crafted_zero_lease_is_not_bound() {
    require_root!();
    let (mut w, server) = crafted(vec![
        o_u32(rogue::OPT_LEASE_TIME, 0),
        o_ip(rogue::OPT_SUBNET_MASK, MASK24),
        o_ip(rogue::OPT_ROUTER, SERVER),
    ]);
    w.start_dhcp();
    server
        .wait_request(10 * S, |r| r.msg_type == REQUEST)
        .expect("no REQUEST: the OFFER with lease 0 was not taken");
    std::thread::sleep(S);
    let st = w.alive();
    assert_eq!(st.state, "requesting", "{st:?}");
    assert!(st.lease.is_none(), "{st:?}");
    assert!(w.addrs().is_empty(), "{:?}", w.addrs());
    assert_eq!(default_route(w.lan.router()), None);
    assert!(
        w.logged("zero lease time") >= 1,
        "no 'zero lease time' in the log"
    );
}

/// Lease 0xffffffff: bound for ever. Status lease_secs, renew/rebind/expiry all null; the
/// address on lan0 has an infinite lifetime; no renew follows.
#[test]
fn crafted_infinite_lease_binds_for_ever() {
    require_root!();
    let (mut w, server) = crafted(vec![
        o_u32(rogue::OPT_LEASE_TIME, u32::MAX),
        o_ip(rogue::OPT_SUBNET_MASK, MASK24),
        o_ip(rogue::OPT_ROUTER, SERVER),
        o_ip(rogue::OPT_DNS, SERVER),
    ]);
    let l = bound_lease(&mut w);
    assert_eq!((l.prefix_len, l.gateway), (24, Some(SERVER)));
    let st = w.agent.status();
    let raw = &st.raw["lease"];
    for k in [
        "lease_secs",
        "renew_in_secs",
        "rebind_in_secs",
        "expires_in_secs",
    ] {
        assert!(raw[k].is_null(), "{k} = {} (expected null): {raw}", raw[k]);
    }
    assert_eq!(
        valid_lifetime(w.lan.router(), YIADDR),
        Some(u64::from(u32::MAX))
    );
    std::thread::sleep(S + S / 2);
    let requests = server
        .seen()
        .iter()
        .filter(|r| r.msg_type == REQUEST)
        .count();
    assert_eq!(requests, 1, "REQUESTs after an infinite lease");
    assert_eq!(w.alive().state, "bound");
}

/// T1 (50 s) > T2 (40 s) with a 60 s lease: the defaults are used (renew at 30 s, rebind
/// at 52.5 s).
#[test]
fn crafted_t1_after_t2_uses_the_defaults() {
    require_root!();
    let (mut w, _server) = crafted(vec![
        o_u32(rogue::OPT_LEASE_TIME, 60),
        o_u32(rogue::OPT_T1, 50),
        o_u32(rogue::OPT_T2, 40),
        o_ip(rogue::OPT_SUBNET_MASK, MASK24),
        o_ip(rogue::OPT_ROUTER, SERVER),
    ]);
    let l = bound_lease(&mut w);
    assert_eq!(l.lease_secs, 60.0, "{l:?}");
    assert!((27.0..=30.0).contains(&l.renew_in_secs), "{l:?}");
    assert!((49.0..=52.0).contains(&l.rebind_in_secs), "{l:?}");
    assert!((57.0..=60.0).contains(&l.expires_in_secs), "{l:?}");
}

/// Mask 255.255.255.255: the address is a /32 on lan0, and the default route via
/// 192.0.2.1 (outside the /32) is still installed, on-link, in the agent's table.
#[test]
fn crafted_slash_32_still_gets_a_default_route() {
    require_root!();
    let (mut w, _server) = crafted(vec![
        o_u32(rogue::OPT_LEASE_TIME, 3600),
        o_ip(rogue::OPT_SUBNET_MASK, Ipv4Addr::BROADCAST),
        o_ip(rogue::OPT_ROUTER, SERVER),
    ]);
    let l = bound_lease(&mut w);
    assert_eq!((l.prefix_len, l.gateway), (32, Some(SERVER)), "{l:?}");
    assert_eq!(w.addrs(), vec![(YIADDR, 32)]);
    let r = w.lan.router().clone();
    assert_eq!(
        default_route(&r),
        Some((SERVER, LAN_IF.into(), true)),
        "{}",
        routes_text(&r)
    );
    assert!(w.alive().last_error.is_none());
}

/// A router outside the subnet (203.0.113.1 for 192.0.2.50/24): bound, and the default
/// route via it is installed on-link.
#[test]
fn crafted_gateway_outside_the_subnet_is_on_link() {
    require_root!();
    let gw = Ipv4Addr::new(203, 0, 113, 1);
    let (mut w, _server) = crafted(vec![
        o_u32(rogue::OPT_LEASE_TIME, 3600),
        o_ip(rogue::OPT_SUBNET_MASK, MASK24),
        o_ip(rogue::OPT_ROUTER, gw),
    ]);
    let l = bound_lease(&mut w);
    assert_eq!((l.prefix_len, l.gateway), (24, Some(gw)), "{l:?}");
    assert_eq!(w.addrs(), vec![(YIADDR, 24)]);
    let r = w.lan.router().clone();
    assert_eq!(
        default_route(&r),
        Some((gw, LAN_IF.into(), true)),
        "{}",
        routes_text(&r)
    );
    assert!(w.alive().last_error.is_none());
}

/// 200 routers in option 3 (800 bytes: four consecutive instances, RFC 3396): bound, the
/// first router is the gateway.
#[test]
fn crafted_200_routers_uses_the_first() {
    require_root!();
    let mut routers = vec![SERVER];
    routers.extend((1..=199).map(|i| Ipv4Addr::new(203, 0, 113, i)));
    let mut opts = vec![
        o_u32(rogue::OPT_LEASE_TIME, 3600),
        o_ip(rogue::OPT_SUBNET_MASK, MASK24),
    ];
    for chunk in routers.chunks(63) {
        opts.push((
            rogue::OPT_ROUTER,
            chunk.iter().flat_map(|a| a.octets()).collect(),
        ));
    }
    opts.push(o_ip(rogue::OPT_DNS, SERVER));
    let (mut w, _server) = crafted(opts);
    let l = bound_lease(&mut w);
    assert_eq!((l.prefix_len, l.gateway), (24, Some(SERVER)), "{l:?}");
    assert_eq!(l.dns, vec![SERVER]);
    let r = w.lan.router().clone();
    assert_eq!(
        default_route(&r).map(|(gw, _, _)| gw),
        Some(SERVER),
        "{}",
        routes_text(&r)
    );
}

/// A malformed option 121 (RFC 3442) is no classless route list: the agent binds and falls
/// back to option 3 for the default gateway (as when 121 is absent). Three malformations,
/// each placed where servers put it (last, in option-code order): a truncated descriptor
/// (router cut short), a prefix length of 33, an empty option.
fn garbage_121_case(garbage: Vec<u8>) {
    let (mut w, _server) = crafted(vec![
        o_u32(rogue::OPT_LEASE_TIME, 3600),
        o_ip(rogue::OPT_SUBNET_MASK, MASK24),
        o_ip(rogue::OPT_ROUTER, SERVER),
        o_ip(rogue::OPT_DNS, SERVER),
        (rogue::OPT_CLASSLESS_ROUTES, garbage.clone()),
    ]);
    let l = bound_lease(&mut w);
    assert_eq!(
        (l.prefix_len, l.gateway, l.dns.clone()),
        (24, Some(SERVER), vec![SERVER]),
        "option 121 = {garbage:?}: {l:?}"
    );
    let r = w.lan.router().clone();
    assert_eq!(
        default_route(&r).map(|(gw, _, _)| gw),
        Some(SERVER),
        "option 121 = {garbage:?}: {}",
        routes_text(&r)
    );
}

#[test]
fn crafted_truncated_option_121_falls_back_to_option_3() {
    require_root!();
    garbage_121_case(vec![24, 192, 0, 2, 192, 0]);
}

/// A 121 descriptor with prefix length 33 makes the option malformed: it is dropped and
/// option 3 is used (it once decoded to an empty route list that hid option 3).
#[test]
fn crafted_option_121_with_prefix_33_falls_back_to_option_3() {
    require_root!();
    garbage_121_case(vec![33, 1, 2, 3, 4, 5, 192, 0, 2, 1]);
}

/// An empty 121 is malformed too: dropped, option 3 used.
#[test]
fn crafted_empty_option_121_falls_back_to_option_3() {
    require_root!();
    garbage_121_case(vec![]);
}

/// A malformed option 121 placed before the mask, router and DNS options (any order is
/// allowed, RFC 2131 4.1 does not fix one): those options must still be used (mask /25,
/// gateway 192.0.2.1, DNS 192.0.2.1), not silently dropped with it.
///
/// A bad 121 placed first is dropped on its own: options 1, 3 and 6 after it still count
/// (dhcproto's decoder once stopped at it and lost them all).
#[test]
fn crafted_garbage_option_121_first_loses_no_other_option() {
    require_root!();
    let (mut w, _server) = crafted(vec![
        o_u32(rogue::OPT_LEASE_TIME, 3600),
        (rogue::OPT_CLASSLESS_ROUTES, vec![24, 192, 0, 2, 192, 0]),
        o_ip(rogue::OPT_SUBNET_MASK, Ipv4Addr::new(255, 255, 255, 128)),
        o_ip(rogue::OPT_ROUTER, SERVER),
        o_ip(rogue::OPT_DNS, SERVER),
    ]);
    let l = bound_lease(&mut w);
    assert_eq!(
        (l.prefix_len, l.gateway, l.dns.clone()),
        (25, Some(SERVER), vec![SERVER]),
        "{l:?}"
    );
    assert_eq!(w.addrs(), vec![(YIADDR, 25)]);
}

/// Option 121 routes other than the default go into the agent's table (`contract::ROUTE_TABLE`): one via a
/// router, one on-link; the default route comes from 121 too (option 3 ignored, RFC 3442).
#[test]
fn crafted_option_121_routes_are_installed() {
    require_root!();
    let gw = Ipv4Addr::new(192, 0, 2, 1);
    let (mut w, _server) = crafted(vec![
        o_u32(rogue::OPT_LEASE_TIME, 3600),
        o_ip(rogue::OPT_SUBNET_MASK, MASK24),
        o_ip(rogue::OPT_ROUTER, Ipv4Addr::new(192, 0, 2, 9)),
        (
            rogue::OPT_CLASSLESS_ROUTES,
            vec![
                24, 203, 0, 113, 192, 0, 2, 1, // 203.0.113.0/24 via 192.0.2.1
                25, 198, 51, 100, 128, 0, 0, 0, 0, // 198.51.100.128/25 on-link
                0, 192, 0, 2, 1, // default via 192.0.2.1
            ],
        ),
    ]);
    let l = bound_lease(&mut w);
    assert_eq!(
        l.gateway,
        Some(gw),
        "121's default wins over option 3: {l:?}"
    );
    let r = w.lan.router().clone();
    let routes = routes_text(&r);
    assert!(routes.contains("203.0.113.0/24 via 192.0.2.1"), "{routes}");
    assert!(routes.contains("198.51.100.128/25 dev lan0"), "{routes}");
    assert_eq!(
        default_route(&r),
        Some((gw, LAN_IF.into(), true)),
        "{routes}"
    );
}
