//! Integration tests of the agent's DHCP client, in network namespaces, against real
//! servers (dnsmasq, ISC Kea). Root only (`require_root!` skips otherwise, fails under CI).
//!
//! Each test builds its own bed (`Lan`): LAN namespace with br0 = 192.0.2.1/24 and the
//! server, a "host" namespace, and a router namespace with a macvlan `lan0` (DOWN, no
//! address). The agent runs in the router namespace (`Agent::start`); the driver
//! (`netcontainer agent apply/status`) runs on the host. Guards delete everything on drop,
//! also when a test fails; the agent's log and the server's packet log are printed then.
//!
//! Timings: Kea leases of 6 s (renew 2 s, rebind 4 s) keep renew/rebind/expiry tests in
//! seconds; dnsmasq (minimum lease 2 min) is used for bind/DNS/release only.

use netcontainer_proto::contract::LAN_IF;
use netcontainer_tests::dhcp;
use netcontainer_tests::*;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(20);
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

use netcontainer_tests::agent::AgentBed as World;

fn in_range(a: Ipv4Addr, lo: u8, hi: u8) -> bool {
    a.octets()[..3] == [192, 0, 2] && (lo..=hi).contains(&a.octets()[3])
}

/// Common checks once bound: status, the address on lan0 with its prefix.
fn assert_bound_to(w: &World, addr: Ipv4Addr) -> AgentStatus {
    let st = w.agent.wait_bound(5 * S);
    let lease = st.lease.clone().unwrap();
    assert_eq!(lease.address, addr, "status address vs apply output");
    assert_eq!(lease.prefix_len, 24);
    assert_eq!(lease.gateway, Some(SERVER));
    assert_eq!(lease.server_id, Some(SERVER));
    assert_eq!(st.interface.as_deref(), Some(LAN_IF));
    assert_eq!(
        w.addrs(),
        vec![(addr, 24)],
        "lan0 carries exactly the lease"
    );
    st
}

#[test]
fn status_before_a_plan_is_waiting_for_plan() {
    require_root!();
    let w = World::new();
    let st = w.agent.status();
    assert_eq!(st.state, "waiting-for-plan");
    assert!(st.lease.is_none());
    assert!(w.addrs().is_empty());
}

#[test]
fn binds_from_dnsmasq() {
    require_root!();
    let w = World::new();
    let dnsmasq = Dnsmasq::start(&w.lan.lan, DnsmasqOpts::default());
    let addr = w.bind();
    assert!(in_range(addr, 50, 150), "{addr}");
    let st = assert_bound_to(&w, addr);
    let lease = st.lease.unwrap();
    assert!((100.0..=120.0).contains(&lease.lease_secs), "{lease:?}");
    let dl = dnsmasq.lease_of(addr).expect("dnsmasq has the lease");
    assert_eq!(dl.mac, mac_of(w.lan.router(), LAN_IF));
}

#[test]
fn binds_from_kea() {
    require_root!();
    let w = World::new();
    let kea = Kea::start(&w.lan.lan, KeaOpts::default());
    let addr = w.bind();
    assert!(in_range(addr, 50, 150), "{addr}");
    let st = assert_bound_to(&w, addr);
    let lease = st.lease.unwrap();
    assert_eq!(lease.dns, vec![SERVER]);
    assert!(
        lease.lease_secs > 100.0 && lease.lease_secs <= 120.0,
        "{lease:?}"
    );
    assert!(
        lease.renew_in_secs > 40.0 && lease.renew_in_secs <= 60.0,
        "{lease:?}"
    );
    assert!(lease.rebind_in_secs > lease.renew_in_secs && lease.rebind_in_secs <= 105.0);
    let kl = kea.lease_of(addr).expect("Kea has the lease");
    assert!(kl.is_active(), "{kl:?}");
    assert_eq!(kl.hwaddr, mac_of(w.lan.router(), LAN_IF));
}

/// T1: the agent renews by unicast from its address (Kea logs a REQUEST from the lease
/// address to 192.0.2.1), keeps the address, and the expiry moves forward.
#[test]
fn renews_at_t1_by_unicast() {
    require_root!();
    let w = World::new();
    let kea = Kea::start(&w.lan.lan, KeaOpts::short(6, 2, 4));
    let addr = w.bind();
    assert_bound_to(&w, addr);
    let first_expire = kea.lease_of(addr).unwrap().expire;
    let bound_at = Instant::now();

    // A unicast REQUEST from the leased address, at T1 (2 s) give or take.
    let renew = wait_for(5 * S, POLL, || {
        kea.requests()
            .into_iter()
            .find(|r| r.from == addr && r.to == SERVER)
    });
    assert!(
        renew.is_some(),
        "no unicast renew within 5 s: {:?}",
        kea.requests()
    );
    let t1 = bound_at.elapsed();
    assert!(t1 < 4 * S, "renewed only after {t1:?}");
    assert!(
        wait_until(3 * S, POLL, || kea.lease_of(addr).unwrap().expire
            > first_expire),
        "Kea's expiry did not move: {:?}",
        kea.lease_rows()
    );

    // Past the first lease's expiry (6 s) the address is still there, still bound with a
    // fresh lease (expires_in near 6 s again after each renew).
    std::thread::sleep(Duration::from_secs(7).saturating_sub(bound_at.elapsed()));
    assert_eq!(w.addrs(), vec![(addr, 24)]);
    let st = w.agent.status();
    assert!(
        st.state == "bound" || st.state == "renewing",
        "state {} after renewals",
        st.state
    );
    let l = st.lease.expect("lease");
    assert_eq!(l.address, addr);
    assert!(l.expires_in_secs > 1.0 && l.expires_in_secs <= 6.0, "{l:?}");
    assert!(w.agent.status().last_error.is_none());
}

/// T2: with unicast to the server blocked, the agent rebinds by broadcast and keeps the
/// address; with the server gone, the lease expires (address removed, back to
/// init/selecting); when the server is back, a new lease.
#[test]
fn rebinds_at_t2_then_expires_then_binds_again() {
    require_root!();
    let w = World::new();
    let mut kea = Kea::start(&w.lan.lan, KeaOpts::short(6, 2, 4));
    let addr = w.bind();
    assert_bound_to(&w, addr);

    // Drop unicast DHCP to 192.0.2.1 on the bridge; broadcasts still pass.
    w.lan.block_unicast_dhcp();
    let blocked_at = Instant::now();
    let rebind = wait_for(8 * S, POLL, || {
        kea.requests()
            .into_iter()
            .find(|r| r.from == addr && r.to == Ipv4Addr::BROADCAST)
    });
    assert!(
        rebind.is_some(),
        "no broadcast REQUEST from {addr} within 8 s: {:?}",
        kea.requests()
    );
    assert!(
        w.lan.blocked_unicast_count() > 0,
        "the agent sent no unicast renew before rebinding"
    );
    // Still the same address, well past the expiry of the lease it had when blocked.
    std::thread::sleep(Duration::from_secs(8).saturating_sub(blocked_at.elapsed()));
    assert_eq!(
        w.addrs(),
        vec![(addr, 24)],
        "address lost while rebinding works"
    );
    let st = w.agent.status();
    assert!(
        ["bound", "renewing", "rebinding"].contains(&st.state.as_str()),
        "state {}",
        st.state
    );

    // Server gone: renew and rebind fail; at expiry the address goes.
    kea.stop();
    let gone = wait_until(10 * S, POLL, || !has_addr(w.lan.router(), LAN_IF, addr));
    assert!(gone, "address still on lan0 10 s after the server left");
    let st = w
        .agent
        .wait_status(3 * S, |s| ["init", "selecting"].contains(&s.state.as_str()))
        .unwrap_or_else(|| panic!("not back to init/selecting: {:?}", w.agent.status_json()));
    assert!(st.lease.is_none(), "expired lease still reported: {st:?}");

    // Server back: a new lease (DISCOVER backoff may take a while: allow 30 s).
    w.lan.unblock_unicast_dhcp();
    kea.restart();
    let st = w.agent.wait_bound(30 * S);
    let new = st.address().unwrap();
    assert!(has_addr(w.lan.router(), LAN_IF, new));
}

/// Renumbering: the server now serves 203.0.113.0/24 (see kea.rs: Kea NAKs a REQUEST for
/// 192.0.2.x then). The agent's renew gets a NAK, it drops the address and binds anew.
#[test]
fn nak_after_renumbering_gives_a_lease_in_the_new_range() {
    require_root!();
    let w = World::new();
    let mut kea = Kea::start(&w.lan.lan, KeaOpts::short(6, 2, 4));
    let old = w.bind();
    assert_bound_to(&w, old);

    let opts = kea.opts().renumbered();
    kea.restart_with(opts);
    let new = wait_for(20 * S, POLL, || {
        w.addrs()
            .into_iter()
            .find(|(a, _)| a.octets()[..3] == [203, 0, 113])
    })
    .expect("no 203.0.113.x on lan0 within 20 s of renumbering");
    assert!(
        kea.naks_sent() >= 1,
        "Kea sent no NAK (the test bed is wrong)"
    );
    assert_eq!(w.addrs(), vec![new], "old {old} must be gone");
    let st = w.agent.wait_bound(5 * S);
    let l = st.lease.unwrap();
    assert_eq!(l.address, new.0);
    assert_eq!(l.gateway, Some(Ipv4Addr::new(203, 0, 113, 1)));
}

/// kill -9, then a restart with the same state dir: the persisted lease is reused through
/// INIT-REBOOT (a REQUEST, no DISCOVER): the same address, in under 1 s from start.
#[test]
fn restart_after_kill9_rebinds_the_same_address_fast() {
    require_root!();
    let mut w = World::new();
    let kea = Kea::start(&w.lan.lan, KeaOpts::default());
    let addr = w.bind();
    assert_bound_to(&w, addr);
    w.agent
        .wait_persisted(&netcontainer_proto::contract::lease_file(LAN_IF), 5 * S);
    w.agent.kill9();
    // A killed agent leaves its address; a re-created router would have a fresh link.
    // Simulate that so the measurement sees the address come back.
    let r = w.lan.router().clone();
    r.ip(&["addr", "flush", "dev", LAN_IF]);
    r.ip(&["link", "set", LAN_IF, "down"]);
    let discovers_before = kea
        .received()
        .iter()
        .filter(|p| p.msg_type == "DHCPDISCOVER")
        .count();

    // Address events are read in a thread while the agent restarts, so the timestamp is
    // the moment the address appears (sub-millisecond), not when apply returns.
    let watch = AddrWatch::open(&r, LAN_IF).expect("netlink watch");
    let waiter = std::thread::spawn(move || watch.wait(20 * S));
    let start = Instant::now();
    w.agent.restart();
    let out = w.agent.apply(&ApplyArgs::new(LAN_IF).wait(15));
    assert!(out.ok(), "{out}");
    let (got, plen, at) = waiter
        .join()
        .unwrap()
        .expect("no address appeared on lan0 after the restart");
    let took = at.duration_since(start);
    assert_eq!((got, plen), (addr, 24), "a different address after restart");
    assert!(
        took < S,
        "restart + apply to address took {took:?} (limit 1 s)"
    );
    let discovers_after = kea
        .received()
        .iter()
        .filter(|p| p.msg_type == "DHCPDISCOVER")
        .count();
    assert_eq!(
        discovers_after, discovers_before,
        "the restarted agent sent a DISCOVER instead of INIT-REBOOT"
    );
    assert_bound_to(&w, addr);
    eprintln!("restart after kill -9: address back after {took:?}");
}

/// SIGTERM releases the lease (Kea's memfile shows the release) and removes the address.
#[test]
fn sigterm_releases_the_kea_lease() {
    require_root!();
    let mut w = World::new();
    let kea = Kea::start(&w.lan.lan, KeaOpts::default());
    let addr = w.bind();
    assert_bound_to(&w, addr);
    let st = w
        .agent
        .terminate(10 * S)
        .expect("agent did not exit within 10 s of SIGTERM");
    assert!(st.success(), "exit status after SIGTERM: {st}");
    assert!(
        wait_until(3 * S, POLL, || kea.is_released(addr)),
        "Kea shows no release: {:?}",
        kea.lease_rows()
    );
    assert!(
        kea.received()
            .iter()
            .any(|p| p.msg_type == "DHCPRELEASE" && p.from == addr),
        "no DHCPRELEASE from {addr}"
    );
    assert!(
        !has_addr(w.lan.router(), LAN_IF, addr),
        "address left on lan0"
    );
}

/// Same with dnsmasq: the lease line disappears from its lease file.
#[test]
fn sigterm_releases_the_dnsmasq_lease() {
    require_root!();
    let mut w = World::new();
    let dnsmasq = Dnsmasq::start(&w.lan.lan, DnsmasqOpts::default());
    let addr = w.bind();
    assert!(dnsmasq.lease_of(addr).is_some());
    let st = w
        .agent
        .terminate(10 * S)
        .expect("agent did not exit within 10 s of SIGTERM");
    assert!(st.success(), "exit status after SIGTERM: {st}");
    assert!(
        wait_until(3 * S, POLL, || dnsmasq.lease_of(addr).is_none()),
        "dnsmasq still has the lease: {:?}",
        dnsmasq.leases()
    );
    assert!(!has_addr(w.lan.router(), LAN_IF, addr));
}

/// `--hostname` reaches DNS: dnsmasq registers the DHCP host name.
#[test]
fn hostname_reaches_dns() {
    require_root!();
    let w = World::new();
    let dnsmasq = Dnsmasq::start(&w.lan.lan, DnsmasqOpts::default());
    let name = format!("web{}", std::process::id());
    let addr = w.apply(ApplyArgs::new(LAN_IF).hostname(&name).wait(15));
    assert_eq!(
        dnsmasq.lease_of(addr).and_then(|l| l.hostname).as_deref(),
        Some(name.as_str()),
        "dnsmasq's lease has no/another host name"
    );
    assert_eq!(dnsmasq.resolve(&name), Some(addr));
    assert_eq!(dnsmasq.resolve(&format!("{name}.lan.test")), Some(addr));
}

/// Two agents on one LAN with different client ids get different addresses; a new router
/// (another MAC) presenting a known client id gets that client's address again.
#[test]
fn client_ids_identify_clients() {
    require_root!();
    let mut lan = Lan::with_router();
    let r2 = lan.add_router();
    let r3 = lan.add_router();
    let kea = Kea::start(&lan.lan, KeaOpts::default());
    let tmp = TempDir::new("cid");
    let mut a = Agent::start(lan.router(), tmp.path());
    let b = Agent::start(&r2, tmp.path());
    let apply = |ag: &Agent, cid: &str| {
        let out = ag.apply(&ApplyArgs::new(LAN_IF).client_id(cid).wait(15));
        assert!(out.ok(), "{out}");
        out.address().expect("address")
    };
    let addr_a = apply(&a, "cid-a");
    let addr_b = apply(&b, "cid-b");
    assert_ne!(addr_a, addr_b);
    assert!(has_addr(lan.router(), LAN_IF, addr_a));
    assert!(has_addr(&r2, LAN_IF, addr_b));
    assert_eq!(kea.active_leases().len(), 2, "{:?}", kea.leases());

    // Router A disappears without releasing; router C (new MAC) says "cid-a".
    a.kill9();
    lan.router().ip(&["addr", "flush", "dev", LAN_IF]);
    assert_ne!(mac_of(&r3, LAN_IF), mac_of(lan.router(), LAN_IF));
    let c = Agent::start(&r3, tmp.path());
    let addr_c = apply(&c, "cid-a");
    assert_eq!(addr_c, addr_a, "same client id, different address");
    assert!(has_addr(&r3, LAN_IF, addr_a));
}

/// Garbage and foreign DHCP packets (random bytes; OFFER/ACK/NAK with a foreign xid but
/// the agent's MAC) sent from a LAN host while the agent is bound change nothing, and the
/// agent still renews afterwards.
#[test]
fn garbage_and_foreign_packets_change_nothing() {
    require_root!();
    let mut w = World::new();
    let client = w.lan.add_client(10);
    let kea = Kea::start(&w.lan.lan, KeaOpts::short(6, 2, 4));
    let addr = w.bind();
    assert_bound_to(&w, addr);

    let mac = dhcp::parse_mac(&mac_of(w.lan.router(), LAN_IF));
    let mut payloads: Vec<Vec<u8>> = (1..=20u64)
        .map(|i| dhcp::garbage(i, (i as usize * 37) % 600 + 1))
        .collect();
    // Well-formed replies with a foreign xid, offering another address, and a NAK.
    let other = Ipv4Addr::new(192, 0, 2, 222);
    for (i, t) in [dhcp::OFFER, dhcp::ACK, dhcp::NAK].into_iter().enumerate() {
        let p = dhcp::server_reply(t, 0x5eed_0000 + i as u32, mac, other, 30);
        payloads.push(p.encode());
    }
    // Also a well-formed BOOTREQUEST and a truncated DHCP header.
    let mut req = dhcp::server_reply(dhcp::REQUEST, 1, mac, other, 3600);
    req.op = 1;
    payloads.push(req.encode());
    payloads.push(dhcp::server_reply(dhcp::ACK, 2, mac, other, 3600).encode()[..100].to_vec());

    let renews_before = kea.requests().iter().filter(|r| r.from == addr).count();
    for dst in [Ipv4Addr::new(192, 0, 2, 255), Ipv4Addr::BROADCAST, addr] {
        dhcp::send_udp_in(&client, "eth0", 67, SocketAddrV4::new(dst, 68), &payloads);
    }
    // Nothing changes, checked for a while.
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(w.addrs(), vec![(addr, 24)]);
    }
    let st = w.agent.status();
    assert!(
        ["bound", "renewing"].contains(&st.state.as_str()),
        "state {}",
        st.state
    );
    assert_eq!(st.address(), Some(addr));

    // And it still renews (unicast, from its address) and keeps the address.
    assert!(
        wait_until(6 * S, POLL, || kea
            .requests()
            .iter()
            .filter(|r| r.from == addr && r.to == SERVER)
            .count()
            > renews_before),
        "no renew after the garbage"
    );
    std::thread::sleep(3 * S);
    assert_eq!(w.addrs(), vec![(addr, 24)]);
    assert!(w.agent.running(), "agent died");
}

/// No DHCP server: `apply --wait 5` gives up after about 5 s with a one-line `error:` and
/// a non-zero exit; the agent keeps trying and binds once dnsmasq starts.
#[test]
fn no_server_apply_times_out_then_binds_when_a_server_appears() {
    require_root!();
    let mut w = World::new();
    let out = w.agent.apply(&ApplyArgs::new(LAN_IF).wait(5));
    assert!(!out.ok(), "apply succeeded without a server: {out}");
    assert!(out.status.is_some(), "apply did not exit: {out}");
    assert!(
        out.elapsed >= Duration::from_millis(4500) && out.elapsed <= Duration::from_secs(8),
        "apply --wait 5 returned after {:?}",
        out.elapsed
    );
    let first = out.stderr.lines().next().unwrap_or("");
    assert!(first.starts_with("error:"), "stderr: {:?}", out.stderr);
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1,
        "one error line: {:?}",
        out.stderr
    );
    assert!(
        out.stderr.lines().count() <= 3,
        "noisy stderr: {:?}",
        out.stderr
    );

    assert!(w.agent.running(), "agent exited");
    let st = w.agent.status();
    assert!(
        ["init", "selecting"].contains(&st.state.as_str()),
        "state {}",
        st.state
    );
    assert!(w.addrs().is_empty());

    let _dnsmasq = Dnsmasq::start(&w.lan.lan, DnsmasqOpts::default());
    // DISCOVER backoff (4, 8, 16 s ... randomised): allow 40 s.
    let st = w.agent.wait_bound(40 * S);
    let addr = st.address().unwrap();
    assert!(in_range(addr, 50, 150));
    assert_eq!(w.addrs(), vec![(addr, 24)]);
}

/// After a clean stop (RELEASE) the next agent with the same state dir asks for the
/// released address in its DISCOVER (option 50) and gets it back, even from Kea, whose
/// allocator would otherwise hand out the next free address.
#[test]
fn restart_after_release_asks_for_the_same_address() {
    require_root!();
    let mut w = World::new();
    let kea = Kea::start(&w.lan.lan, KeaOpts::default());
    let addr = w.bind();
    let st = w
        .agent
        .terminate(10 * S)
        .expect("agent did not exit within 10 s of SIGTERM");
    assert!(st.success(), "exit status after SIGTERM: {st}");
    assert!(
        wait_until(3 * S, POLL, || kea.is_released(addr)),
        "Kea shows no release"
    );
    w.agent.restart();
    let again = w.bind();
    assert_eq!(again, addr, "a different address after a clean restart");
    let discovers: Vec<_> = kea
        .received()
        .into_iter()
        .filter(|p| p.msg_type == "DHCPDISCOVER")
        .collect();
    assert_eq!(
        discovers.len(),
        2,
        "one DISCOVER per start (a released lease is asked for, not claimed): {discovers:?}"
    );
}

/// The lease path waits on nothing it does not need (issue 20): between the plan's arrival
/// and the first DISCOVER, and between the ACK and the address on `lan0`, the agent runs
/// no process (nft) and no netlink dump, and its runtime's thread no fsync. Read from
/// `strace -f` of the agent (IPv6 on, as by default): the isolation is applied at start,
/// the plan and the lease are written off the runtime's thread.
#[test]
fn the_lease_path_runs_no_process_fsync_or_dump() {
    require_root!();
    let lan = Lan::with_router();
    let _kea = Kea::start(&lan.lan, KeaOpts::default());
    let tmp = TempDir::new("trace");
    let trace = tmp.join("agent.trace");
    let attach_log = tmp.join("strace.log");
    let agent = Agent::start(lan.router(), tmp.path());
    // The isolation is in place before any plan (the start applied it).
    assert!(
        netcontainer_tests::service::nft_tables(lan.router())
            .contains(&netcontainer_proto::contract::NFT_TABLE.to_string()),
        "no table of ours before the plan"
    );
    // Attached to the running agent (all its threads, and any child it starts), so that
    // stopping strace detaches it and the agent's own guard ends it.
    let pid = agent.pid().expect("agent pid").to_string();
    let strace = std::process::Command::new("strace")
        .args(["-f", "-yy", "-tt", "-s", "64", "-e"])
        .arg("trace=execve,fsync,fdatasync,sendto,sendmsg,recvfrom,recvmsg,write")
        .arg("-o")
        .arg(&trace)
        .args(["-p", &pid])
        .stderr(std::fs::File::create(&attach_log).unwrap())
        .spawn()
        .expect("strace (scripts/install-deps installs it)");
    let _strace = ProcGuard::new(strace, "strace");
    assert!(
        wait_until(5 * S, POLL, || std::fs::read_to_string(&attach_log)
            .is_ok_and(|t| t.contains("attached"))),
        "strace did not attach"
    );
    // strace prints one line per thread it attached: let it finish.
    std::thread::sleep(Duration::from_millis(200));
    let out = agent.apply(&ApplyArgs::new(LAN_IF).wait(15));
    assert!(out.ok(), "agent apply failed: {out}");
    // The address is in place once apply returned; the trace is flushed line by line.
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let find = |from: usize, what: &dyn Fn(&str) -> bool, name: &str| {
        from + lines[from..]
            .iter()
            .position(|l| what(l))
            .unwrap_or_else(|| panic!("no {name} in the trace after line {from}:\n{text}"))
    };
    // The Apply request is the read that carries the interface name.
    let plan = find(
        0,
        &|l| l.contains("recvfrom(") && l.contains(LAN_IF),
        "plan",
    );
    // The DISCOVER: the first IPv4 packet sent on the raw socket.
    let discover = find(
        plan,
        &|l| l.contains("sendto(") && l.contains("\"E\\0"),
        "DISCOVER",
    );
    // The ACK: the lease crate logs "dhcp: bound" right after reading it.
    let ack = find(discover, &|l| l.contains("dhcp: bound"), "ACK");
    // strace names netlink messages only for sockets whose protocol it learnt; attached
    // to a running agent it may print the numbers (RTM_NEWADDR = 0x14, NLM_F_DUMP =
    // 0x300), so both spellings count.
    let address = find(
        ack,
        &|l| l.contains("RTM_NEWADDR") || l.contains("nlmsg_type=0x14 "),
        "RTM_NEWADDR",
    );
    // No process and no dump in any thread; no fsync in the runtime's thread (the agent's
    // main thread: one thread runs the core and its tasks). The plan and the lease are
    // written on the blocking pool, which the core never waits for.
    let main = format!("{pid} ");
    let forbidden = |l: &str| {
        ["execve(", "NLM_F_DUMP", "|0x300"]
            .into_iter()
            .find(|w| l.contains(w))
            .or_else(|| {
                ["fsync(", "fdatasync("]
                    .into_iter()
                    .find(|w| l.starts_with(&main) && l.contains(w))
            })
    };
    let mut found = Vec::new();
    for (from, to, path) in [
        (plan, discover, "plan -> first DISCOVER"),
        (ack, address, "ACK -> address on lan0"),
    ] {
        for l in &lines[from..to] {
            if let Some(w) = forbidden(l) {
                found.push(format!("{path}: {w}: {l}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "on the lease path:\n{}\n\nthe trace from the plan to the address:\n{}",
        found.join("\n"),
        lines[plan..=address].join("\n")
    );
}
