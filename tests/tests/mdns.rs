//! A service is found by its name on the LAN (issue 24, points 1 and 2): the agent's mDNS
//! responder on lan0, asked by real clients in a LAN client namespace (dig's legacy
//! unicast query, Avahi's `avahi-browse`/`avahi-resolve`, python's zeroconf), against a
//! real DHCP server (dnsmasq). Root only; multicast stays on the bed's links.

use netcontainer_proto::contract::LAN_IF;
use netcontainer_tests::agent::{AgentBed, ApplyArgs};
use netcontainer_tests::*;
use std::net::Ipv4Addr;
use std::time::Duration;

const S: Duration = Duration::from_secs(1);

/// A LAN client that can send to the mDNS group: eth0 192.0.2.`octet`/24 and a
/// multicast route (a bed client has no default route).
fn client(w: &mut AgentBed, octet: u8) -> std::sync::Arc<Netns> {
    let c = w.lan.add_client(octet);
    c.ip(&["route", "add", "224.0.0.0/4", "dev", "eth0"]);
    c
}

/// `dig @AT -p 5353 +short NAME TYPE` from `ns`: a legacy unicast query (RFC 6762
/// sections 5.5 and 6.7: from a port other than 5353, answered by unicast to it). Sent to
/// the router's address: dig 9.18 drops a reply to a multicast query, which comes from
/// the responder's own address.
fn dig(ns: &Netns, at: Ipv4Addr, name: &str, rrtype: &str) -> Vec<String> {
    let at = format!("@{at}");
    let out = ns.exec(&[
        "dig", &at, "-p", "5353", "+short", "+time=1", "+tries=2", name, rrtype,
    ]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(String::from)
        .collect()
}

fn mdns_name(w: &AgentBed, want: &str, within: Duration) -> String {
    let st = w
        .agent
        .wait_status(within, |st| st.raw["mdns"].as_str() == Some(want));
    match st {
        Some(st) => st.raw["mdns"].as_str().unwrap().to_string(),
        None => panic!(
            "status never named {want} (last: {:?})\n{}",
            w.agent.status_json(),
            w.agent.log()
        ),
    }
}

fn web1() -> ApplyArgs {
    ApplyArgs::new(LAN_IF)
        .hostname("web1")
        .forward("tcp:80=198.51.100.2:80")
        .switch("--mdns")
        .wait(15)
}

/// The name answers with the lease to a legacy unicast query, and `status` says which
/// name the router claimed.
#[test]
fn a_legacy_query_gets_the_lease() {
    require_root!();
    let mut w = AgentBed::new();
    let _dnsmasq = Dnsmasq::start(&w.lan.lan, DnsmasqOpts::default());
    let c = client(&mut w, 200);
    let lease = w.apply(web1());
    mdns_name(&w, "web1.local", 5 * S);
    assert_eq!(dig(&c, lease, "web1.local", "A"), [lease.to_string()]);
    // Case does not matter (RFC 6762 section 16); names it does not own get nothing.
    assert_eq!(dig(&c, lease, "WEB1.local", "A"), [lease.to_string()]);
    assert!(dig(&c, lease, "web2.local", "A").is_empty());
}

/// Without `--mdns` nothing answers (the test above can fail).
#[test]
fn off_answers_nothing() {
    require_root!();
    let mut w = AgentBed::new();
    let _dnsmasq = Dnsmasq::start(&w.lan.lan, DnsmasqOpts::default());
    let c = client(&mut w, 200);
    let lease = w.apply(ApplyArgs::new(LAN_IF).hostname("web1").wait(15));
    std::thread::sleep(2 * S);
    assert!(dig(&c, lease, "web1.local", "A").is_empty());
    assert_eq!(w.agent.status().raw["mdns"], serde_json::Value::Null);
}
