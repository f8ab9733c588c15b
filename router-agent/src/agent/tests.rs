//! The core's reactions, against a recording fake of its ports: what it
//! asks of netlink, the firewall and the relay, and in which order.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use netcontainer_proto::{Forward, Protocol};

use super::core::{Applied, Core, Link};
use super::problems::Subsystem;
use super::testkit::{Op, Recorder, addr6, lease, plan, plan6};
use crate::family::{Address, Event, Family, Origin};
use crate::firewall::{Ipv4Policy, Policy};

type TestCore = Core<Recorder, Recorder, Recorder>;

fn ip4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn ip6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// A core as the agent's start leaves it: the isolation applied, no
/// routing rule of ours in place; the plan given and the tasks running.
fn core_with(plan: netcontainer_proto::Plan) -> (TestCore, Recorder) {
    let rec = Recorder::default();
    let applied = Applied {
        firewall: Some(Policy::isolation("lan0", true)),
        service_rule: Some(None),
        mark_rule6: Some(false),
        ..Applied::default()
    };
    let mut core = Core::new(rec.clone(), rec.clone(), rec.clone(), true, applied);
    core.plan = Some(plan);
    core.link = Some(Link {
        name: "lan0".into(),
        index: 7,
    });
    core.v4_running = true;
    core.v6_running = true;
    (core, rec)
}

/// The core after the plan's first sync, with `lease` bound.
async fn bound(address: &str) -> (TestCore, Recorder) {
    let (mut core, rec) = core_with(plan());
    core.sync().await;
    core.absorb(Event::Address(Address::of_lease(lease(address))));
    core.sync().await;
    rec.take();
    (core, rec)
}

fn leased_policy(address: &str) -> Policy {
    let p = plan();
    Policy {
        v4: Ipv4Policy {
            lease: Some(ip4(address)),
            forwards: p.forwards.clone(),
            gateway_for: p.gateway_for(),
            mss: None,
        },
        ..Policy::isolation("lan0", true)
    }
}

fn firewalls(ops: &[Op]) -> usize {
    ops.iter().filter(|o| matches!(o, Op::Firewall(_))).count()
}

/// A plan's arrival needs no firewall run: the start's isolation is what a
/// plan without a lease wants. Only the routing the plan asks for changes.
#[tokio::test]
async fn a_plan_with_no_lease_runs_no_firewall() {
    let (mut core, rec) = core_with(plan());
    core.sync().await;
    assert_eq!(
        rec.take(),
        [
            Op::ServiceRule(Some(ip4("198.51.100.2"))),
            Op::MarkRule6(true)
        ]
    );
    // Nothing changed: nothing to do.
    core.sync().await;
    assert_eq!(rec.take(), []);
}

/// A bind puts the address in place before anything else, then the
/// forwards.
#[tokio::test]
async fn bind_installs_the_address_first_then_the_forwards() {
    let (mut core, rec) = core_with(plan());
    core.sync().await;
    rec.take();
    core.absorb(Event::State(crate::family::ClientState::Bound));
    core.absorb(Event::Address(Address::of_lease(lease("192.0.2.50"))));
    core.sync().await;
    assert_eq!(
        rec.take(),
        [
            Op::Install4(ip4("192.0.2.50"), 24),
            Op::Firewall(leased_policy("192.0.2.50"))
        ]
    );
    assert!(core.problems.is_empty());
}

/// A renewal of the same address refreshes its lifetime; the firewall does
/// not depend on lifetimes and stays.
#[tokio::test]
async fn renew_on_the_same_address_refreshes_it_and_nothing_else() {
    let (mut core, rec) = bound("192.0.2.50").await;
    let mut renewed = lease("192.0.2.50");
    renewed.times.start += Duration::from_secs(1800);
    core.absorb(Event::Address(Address::of_lease(renewed)));
    core.sync().await;
    assert_eq!(rec.take(), [Op::Install4(ip4("192.0.2.50"), 24)]);
}

/// The server gives another address: the old one goes first (same subnet:
/// the new one would be its secondary), the new one comes, the forwards
/// follow it.
#[tokio::test]
async fn renumber_replaces_the_address_then_the_forwards() {
    let (mut core, rec) = bound("192.0.2.50").await;
    core.absorb(Event::AddressGone {
        address: ip4("192.0.2.50").into(),
        prefix_len: 24,
        error: None,
    });
    core.absorb(Event::Address(Address::of_lease(lease("192.0.2.51"))));
    core.sync().await;
    assert_eq!(
        rec.take(),
        [
            Op::Remove4(ip4("192.0.2.50")),
            Op::Install4(ip4("192.0.2.51"), 24),
            Op::Firewall(leased_policy("192.0.2.51")),
            // Flows SNATed to or DNATed from the old address end last,
            // once the new address serves.
            Op::FlushAddress(ip4("192.0.2.50"))
        ]
    );
}

/// The lease is lost: nothing is forwarded any more, then the address goes,
/// and status says why.
#[tokio::test]
async fn loss_isolates_first_then_removes_the_address() {
    let (mut core, rec) = bound("192.0.2.50").await;
    core.absorb(Event::AddressGone {
        address: ip4("192.0.2.50").into(),
        prefix_len: 24,
        error: Some("lease on 192.0.2.50 lost (Expired)".into()),
    });
    core.sync().await;
    assert_eq!(
        rec.take(),
        [
            Op::Firewall(Policy::isolation("lan0", true)),
            Op::Remove4(ip4("192.0.2.50")),
            Op::FlushAddress(ip4("192.0.2.50"))
        ]
    );
    assert_eq!(
        core.problems.get(Subsystem::Dhcp),
        Some("lease on 192.0.2.50 lost (Expired)")
    );
    // A new lease later clears it.
    core.absorb(Event::Address(Address::of_lease(lease("192.0.2.50"))));
    core.sync().await;
    assert_eq!(core.problems.latest(), None);
}

/// A restarted agent keeps its predecessor's address while it claims it
/// again, and removes it when the server gives another one.
#[tokio::test]
async fn an_earlier_agents_address_is_kept_then_replaced() {
    let (mut core, rec) = core_with(plan());
    core.sync().await;
    rec.take();
    core.absorb(Event::Address(Address {
        address: ip4("192.0.2.60").into(),
        prefix_len: 24,
        preferred_until: None,
        valid_until: None,
        origin: Origin::Previous,
    }));
    core.sync().await;
    assert_eq!(rec.take(), [], "a kept address is not touched");
    core.absorb(Event::Address(Address::of_lease(lease("192.0.2.61"))));
    core.absorb(Event::AddressGone {
        address: ip4("192.0.2.60").into(),
        prefix_len: 24,
        error: None,
    });
    core.sync().await;
    assert_eq!(
        rec.take(),
        [
            Op::Remove4(ip4("192.0.2.60")),
            Op::Install4(ip4("192.0.2.61"), 24),
            Op::Firewall(leased_policy("192.0.2.61")),
            Op::FlushAddress(ip4("192.0.2.60"))
        ]
    );
}

/// IPv6 addresses come and go; the relay follows the global ones (the
/// service is IPv4 only), and stops before its address goes.
#[tokio::test]
async fn ipv6_address_added_and_removed() {
    let (mut core, rec) = bound("192.0.2.50").await;
    core.absorb(Event::Address(addr6("2001:db8:1::100", 64)));
    core.sync().await;
    assert_eq!(
        rec.take(),
        [Op::Install6(ip6("2001:db8:1::100"), 64), Op::Relay(2)]
    );
    // A link-local address alone is no place to relay from.
    core.absorb(Event::Address(addr6("fe80::1234", 64)));
    core.sync().await;
    assert_eq!(rec.take(), [Op::Install6(ip6("fe80::1234"), 64)]);
    core.absorb(Event::AddressGone {
        address: ip6("2001:db8:1::100").into(),
        prefix_len: 64,
        error: None,
    });
    core.sync().await;
    assert_eq!(
        rec.take(),
        [Op::Relay(0), Op::Remove6(ip6("2001:db8:1::100"))]
    );
}

/// On an IPv6 Docker network the kernel forwards: forwarding on, then the
/// `ip6` table with the address.
#[tokio::test]
async fn ipv6_kernel_path_turns_forwarding_on_before_the_table() {
    let (mut core, rec) = core_with(plan6());
    core.sync().await;
    rec.take();
    core.absorb(Event::Address(addr6("2001:db8:1::100", 64)));
    core.sync().await;
    let ops = rec.take();
    assert_eq!(ops[0], Op::Install6(ip6("2001:db8:1::100"), 64));
    assert_eq!(ops[1], Op::Ipv6Forwarding);
    let Op::Firewall(p) = &ops[2] else {
        panic!("{ops:?}")
    };
    assert_eq!(p.v4, Ipv4Policy::default(), "no IPv4 lease yet");
    assert_eq!(p.v6.as_ref().unwrap().addresses, [ip6("2001:db8:1::100")]);
    assert_eq!(ops.len(), 3, "{ops:?}");
}

#[tokio::test]
async fn default_router_added_and_lost() {
    let (mut core, rec) = bound("192.0.2.50").await;
    let r: IpAddr = "fe80::1".parse().unwrap();
    core.absorb(Event::Router { address: r });
    core.sync().await;
    assert_eq!(rec.take(), [Op::Router6(ip6("fe80::1"), true)]);
    // Still there: nothing to do.
    core.absorb(Event::Router { address: r });
    core.sync().await;
    assert_eq!(rec.take(), []);
    core.absorb(Event::RouterGone { address: r });
    core.sync().await;
    assert_eq!(rec.take(), [Op::Router6(ip6("fe80::1"), false)]);
}

/// New forwards for the same identity: the firewall follows, and flows to
/// the target the plan moved away from end.
#[tokio::test]
async fn plan_changed_reapplies_the_forwards_and_ends_moved_flows() {
    let (mut core, rec) = bound("192.0.2.50").await;
    let mut p = plan();
    p.forwards = vec![Forward::parse("tcp:80=198.51.100.3:80").unwrap()];
    core.replan(p.clone()).await.unwrap();
    let ops = rec.take();
    let Op::Firewall(policy) = &ops[0] else {
        panic!("{ops:?}")
    };
    assert_eq!(policy.v4.forwards, p.forwards);
    assert_eq!(
        ops[1..],
        [Op::Flush(vec![
            (Protocol::Tcp, ip4("198.51.100.2")),
            (Protocol::Udp, ip4("198.51.100.2"))
        ])]
    );
}

/// A plan the firewall refuses leaves the old one in force.
#[tokio::test]
async fn a_refused_plan_keeps_the_old_one() {
    let (mut core, rec) = bound("192.0.2.50").await;
    rec.fail("firewall");
    let mut p = plan();
    p.forwards.clear();
    let e = core.replan(p).await.unwrap_err();
    assert!(
        e.starts_with("forwards not applied, previous rules kept"),
        "{e}"
    );
    assert_eq!(core.plan, Some(plan()));
    // Both together, then each family on its own.
    assert_eq!(firewalls(&rec.take()), 3);
    assert_eq!(core.problems.latest(), Some(e.as_str()));
    // Nothing to retry: the old plan is what is applied.
    rec.heal();
    core.sync().await;
    assert_eq!(rec.take(), []);
}

/// Rules of one family that cannot be applied (issue 21: a bad IPv6
/// address) never hold the other's: a new plan's IPv4 forwards apply, the
/// IPv6 table keeps what it had, and status says so; once IPv6 applies
/// again the problem clears.
#[tokio::test]
async fn an_ipv6_failure_never_blocks_the_ipv4_rules() {
    let (mut core, rec) = core_with(plan6());
    core.sync().await;
    core.absorb(Event::Address(Address::of_lease(lease("192.0.2.50"))));
    core.absorb(Event::Address(addr6("2001:db8:1::100", 64)));
    core.sync().await;
    let before = core.applied().firewall.clone().unwrap();
    assert!(before.v6.as_ref().is_some_and(|v| !v.addresses.is_empty()));
    rec.take();
    rec.fail("firewall6");
    let mut p = plan6();
    p.forwards = vec![Forward::parse("tcp:8443=198.51.100.2:443").unwrap()];
    core.replan(p.clone()).await.unwrap();
    assert_eq!(core.plan, Some(p.clone()));
    let ops = rec.take();
    let applied: Vec<&Policy> = ops
        .iter()
        .filter_map(|o| match o {
            Op::Firewall(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(applied.len(), 2, "{ops:?}");
    assert_eq!(applied[1].v6, None, "IPv4 alone: the ip6 table untouched");
    assert_eq!(applied[1].v4.forwards, p.forwards);
    let now = core.applied().firewall.clone().unwrap();
    assert_eq!(now.v4.forwards, p.forwards);
    assert_eq!(
        now.v6, before.v6,
        "the IPv6 rules in force are the old ones"
    );
    let problem = core.problems.get(Subsystem::Firewall).unwrap();
    assert!(problem.starts_with("IPv6 rules not applied"), "{problem}");
    rec.heal();
    core.sync().await;
    assert_eq!(
        core.applied().firewall.as_ref(),
        Some(&core.desired().firewall)
    );
    assert_eq!(core.problems.get(Subsystem::Firewall), None);
}

/// A failed install is tried again at the next sync, and status says so
/// meanwhile.
#[tokio::test]
async fn a_failed_install_is_retried_and_reported() {
    let (mut core, rec) = core_with(plan());
    core.sync().await;
    rec.take();
    rec.fail("install4");
    core.absorb(Event::Address(Address::of_lease(lease("192.0.2.50"))));
    core.sync().await;
    assert!(
        core.problems
            .get(Subsystem::Address)
            .is_some_and(|m| m.contains("192.0.2.50/24")),
        "{:?}",
        core.problems
    );
    assert_eq!(rec.take()[0], Op::Install4(ip4("192.0.2.50"), 24));
    rec.heal();
    core.sync().await;
    assert_eq!(rec.take(), [Op::Install4(ip4("192.0.2.50"), 24)]);
    assert_eq!(core.problems.get(Subsystem::Address), None);
}

/// A family's end takes what it held with it.
#[tokio::test]
async fn a_family_that_ends_leaves_nothing() {
    let (mut core, rec) = bound("192.0.2.50").await;
    core.absorb(Event::Address(addr6("2001:db8:1::100", 64)));
    core.absorb(Event::Router {
        address: "fe80::1".parse().unwrap(),
    });
    core.sync().await;
    rec.take();
    core.held.forget(Family::V6);
    core.v6_running = false;
    core.sync().await;
    assert_eq!(
        rec.take(),
        [
            Op::MarkRule6(false),
            Op::Relay(0),
            Op::Remove6(ip6("2001:db8:1::100")),
            Op::Router6(ip6("fe80::1"), false)
        ]
    );
    core.held.forget(Family::V4);
    core.sync().await;
    assert_eq!(
        rec.take(),
        [
            Op::Firewall(Policy::isolation("lan0", true)),
            Op::Remove4(ip4("192.0.2.50")),
            Op::FlushAddress(ip4("192.0.2.50"))
        ]
    );
}
