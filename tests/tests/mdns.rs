//! A service is found by its name on the LAN (issue 24, points 1 and 2): the agent's mDNS
//! responder on lan0, asked by real clients in a LAN client namespace (dig's legacy
//! unicast query, Avahi's `avahi-browse`/`avahi-resolve`, python's zeroconf), against a
//! real DHCP server (dnsmasq). Root only; multicast stays on the bed's links.

use netcontainer_proto::contract::LAN_IF;
use netcontainer_tests::agent::{AgentBed, ApplyArgs};
use netcontainer_tests::*;
use std::time::Duration;

const S: Duration = Duration::from_secs(1);

/// A LAN client that can send to the mDNS group: eth0 192.0.2.`octet`/24 and a
/// multicast route (a bed client has no default route).
fn client(w: &mut AgentBed, octet: u8) -> std::sync::Arc<Netns> {
    let c = w.lan.add_client(octet);
    c.ip(&["route", "add", "224.0.0.0/4", "dev", "eth0"]);
    c
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
    assert_eq!(mdns_query(&c, lease, "web1.local"), [lease.to_string()]);
    // Case does not matter (RFC 6762 section 16); names it does not own get nothing.
    assert_eq!(mdns_query(&c, lease, "WEB1.local"), [lease.to_string()]);
    assert!(mdns_query(&c, lease, "web2.local").is_empty());
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
    assert!(mdns_query(&c, lease, "web1.local").is_empty());
    assert_eq!(w.agent.status().raw["mdns"], serde_json::Value::Null);
}
