//! A service is found by its name on the LAN (issue 24, points 1 and 2): the agent's mDNS
//! responder on lan0, asked by real clients in a LAN client namespace (dig's legacy
//! unicast query, Avahi's `avahi-browse`/`avahi-resolve`, python's zeroconf), against a
//! real DHCP server (dnsmasq). Root only; multicast stays on the bed's links.

use netcontainer_proto::contract::LAN_IF;
use netcontainer_tests::agent::{AgentBed, ApplyArgs};
use netcontainer_tests::mdns::{
    Avahi, AvahiOpts, BrowseEvent, dig_legacy, legacy_query, zeroconf_browse, zeroconf_resolve,
};
use netcontainer_tests::*;
use std::net::{IpAddr, Ipv4Addr};
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

/// web1's plan (port 80 forwarded), with mDNS on or off.
fn web1_with(mdns: bool) -> ApplyArgs {
    let a = ApplyArgs::new(LAN_IF)
        .hostname("web1")
        .forward("tcp:80=198.51.100.2:80")
        .wait(15);
    if mdns { a.switch("--mdns") } else { a }
}

fn web1() -> ApplyArgs {
    web1_with(true)
}

/// An agent on the LAN with dnsmasq and a client (.200), bound with web1's plan and its
/// name claimed: the bed, dnsmasq, the client and the lease.
fn web1_claimed() -> (AgentBed, Dnsmasq, std::sync::Arc<Netns>, Ipv4Addr) {
    let mut w = AgentBed::new();
    let dnsmasq = Dnsmasq::start(&w.lan.lan, DnsmasqOpts::default());
    let c = client(&mut w, 200);
    let lease = w.apply(web1());
    mdns_name(&w, "web1.local", 5 * S);
    (w, dnsmasq, c, lease)
}

/// The name answers with the lease to a legacy unicast query, and `status` says which
/// name the router claimed.
#[test]
fn a_legacy_query_gets_the_lease() {
    require_root!();
    let (_w, _dnsmasq, c, lease) = web1_claimed();
    assert_eq!(
        dig_legacy(&c, lease.into(), "web1.local", "A").unwrap_or_else(|e| vec![e]),
        [lease.to_string()]
    );
    // Case does not matter (RFC 6762 section 16); names it does not own get nothing.
    assert_eq!(
        dig_legacy(&c, lease.into(), "WEB1.local", "A").unwrap_or_else(|e| vec![e]),
        [lease.to_string()]
    );
    assert_eq!(replies_from(&c, lease, "web1.local").len(), 1);
    // The same kind of query (one that the router does answer, above) for a name it
    // does not own: no reply from the router at all.
    assert!(
        replies_from(&c, lease, "web2.local").is_empty(),
        "answered for a name it does not own"
    );
}

/// Replies from `lease` to a one-shot query for `name` (A) sent to the group.
fn replies_from(c: &Netns, lease: Ipv4Addr, name: &str) -> Vec<String> {
    legacy_query(c, name, "A", S)
        .into_iter()
        .filter(|r| r.from.ip() == IpAddr::V4(lease))
        .map(|r| format!("{r:?}"))
        .collect()
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
    assert!(
        replies_from(&c, lease, "web1.local").is_empty(),
        "mDNS is off"
    );
    assert_eq!(w.agent.status().raw["mdns"], serde_json::Value::Null);
}

/// A new plan without mDNS ends the responder: its name goes from `status` and queries
/// for it get no answer.
#[test]
fn a_plan_turning_mdns_off_withdraws_the_name() {
    require_root!();
    let (w, _dnsmasq, c, lease) = web1_claimed();
    let again = w.apply(web1_with(false));
    assert_eq!(again, lease, "the same identity keeps its lease");
    let st = w.agent.wait_status(5 * S, |st| st.raw["mdns"].is_null());
    assert!(
        st.is_some(),
        "status still names a name: {:?}",
        w.agent.status_json()
    );
    assert!(
        replies_from(&c, lease, "web1.local").is_empty(),
        "answered with mDNS off"
    );
}

/// Every published port of a well-known type is browsable at its LAN-side port (80, and
/// 8080 as a second `_http._tcp` instance, 22), another type by `--dnssd`, all with the TXT asked for; avahi
/// (`avahi-browse -r`, `avahi-resolve`) and python's zeroconf list and resolve them; a
/// one-shot query to the group gets a unicast reply that echoes the id and the question
/// with TTLs of at most 10 s (RFC 6762 section 6.7).
#[test]
fn avahi_and_zeroconf_browse_and_resolve_the_services() {
    require_root!();
    let mut w = AgentBed::new();
    let _dnsmasq = Dnsmasq::start(&w.lan.lan, DnsmasqOpts::default());
    let c = client(&mut w, 200);
    let dir = TempDir::new("mdns-avahi");
    let avahi = Avahi::start(&c, dir.path());
    let lease = w.apply(
        ApplyArgs::new(LAN_IF)
            .hostname("web1")
            .forward("tcp:80=198.51.100.2:80")
            .forward("tcp:8080=198.51.100.2:8080")
            .forward("tcp:22=198.51.100.2:22")
            .forward("tcp:1883=198.51.100.2:1883")
            .switch("--mdns")
            .arg("--dnssd", "_mqtt._tcp:1883")
            .arg("--dnssd-txt", "path=/,v=2")
            .wait(15),
    );
    mdns_name(&w, "web1.local", 5 * S);

    assert_eq!(
        avahi.resolve_host("web1.local", 5 * S),
        Some(IpAddr::V4(lease)),
        "avahi-resolve\n{}",
        avahi.log()
    );
    for (ty, instance, port) in [
        ("_http._tcp", "web1", 80),
        ("_http._tcp", "web1 (8080)", 8080),
        ("_ssh._tcp", "web1", 22),
        ("_mqtt._tcp", "web1", 1883),
    ] {
        let found = avahi.browse(ty, 5 * S);
        let web1 = found
            .iter()
            .find(|b| b.name == instance && b.protocol == "IPv4")
            .unwrap_or_else(|| panic!("avahi-browse {ty}: {found:?}\n{}", avahi.log()));
        assert_eq!(web1.host, "web1.local", "{web1:?}");
        assert_eq!(web1.port, port, "{web1:?}");
        assert_eq!(web1.address, Some(IpAddr::V4(lease)), "{web1:?}");
        assert!(
            web1.txt.contains(&"path=/".to_string()) && web1.txt.contains(&"v=2".to_string()),
            "{web1:?}"
        );
    }
    // Port 8080 is http by its number; nothing else is published as http.
    assert_eq!(avahi.browse("_https._tcp", 2 * S), []);

    let zc = zeroconf_resolve(&c, "_http._tcp", "web1 (8080)", 5 * S)
        .expect("zeroconf resolves web1 (8080)");
    assert_eq!(zc.port, 8080, "{zc:?}");
    assert_eq!(zc.server, "web1.local.", "{zc:?}");
    assert_eq!(zc.addresses, [IpAddr::V4(lease)], "{zc:?}");
    assert!(zc.txt.contains(&("v".into(), Some("2".into()))), "{zc:?}");
    assert!(
        zeroconf_browse(&c, "_mqtt._tcp", 3 * S)
            .iter()
            .any(|n| n.starts_with("web1._mqtt._tcp")),
        "zeroconf browse"
    );

    let replies = legacy_query(&c, "web1.local", "A", 2 * S);
    let from_router: Vec<_> = replies
        .iter()
        .filter(|r| r.from.ip() == IpAddr::V4(lease))
        .collect();
    assert_eq!(from_router.len(), 1, "{replies:?}");
    let r = from_router[0];
    assert!(r.id_matches && r.question_repeated, "{r:?}");
    assert!(
        r.answers
            .iter()
            .any(|(n, t, ttl, data)| n.eq_ignore_ascii_case("web1.local.")
                && t == "A"
                && *ttl <= 10
                && data == &lease.to_string()),
        "{r:?}"
    );
}

/// A name another host already answers for is not taken: the router claims `web1-2.local`
/// (status says so), both names resolve to their owners; when the agent stops, its
/// goodbyes make a running `avahi-browse` drop the service at once (without them avahi
/// keeps it until the TTL runs out).
#[test]
fn a_taken_name_gets_the_next_and_goodbyes_clear_caches() {
    require_root!();
    let mut w = AgentBed::new();
    let _dnsmasq = Dnsmasq::start(&w.lan.lan, DnsmasqOpts::default());
    let other = client(&mut w, 201);
    let c = client(&mut w, 200);
    let dir = TempDir::new("mdns-conflict");
    let owner = Avahi::start_with(&other, &dir.join("owner"), AvahiOpts::default());
    let mut taken = owner.publish_address("web1.local", Ipv4Addr::new(192, 0, 2, 201));
    taken
        .established(5 * S)
        .expect("avahi publishes web1.local");
    let avahi = Avahi::start(&c, &dir.join("asker"));
    let watch = avahi.watch_browse("_http._tcp");

    let lease = w.apply(web1());
    let name = mdns_name(&w, "web1-2.local", 8 * S);
    assert_eq!(
        avahi.resolve_host(&name, 5 * S),
        Some(IpAddr::V4(lease)),
        "{}",
        avahi.log()
    );
    assert_eq!(
        avahi.resolve_host("web1.local", 5 * S),
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 201))),
        "the owner keeps its name"
    );
    let resolved = watch.wait_for(
        5 * S,
        |e| matches!(e, BrowseEvent::Resolved(b) if b.host == name && b.port == 80),
    );
    assert!(resolved.is_some(), "avahi-browse: {}", watch.raw());

    let stopped = w.agent.terminate(5 * S);
    assert!(
        stopped.is_some_and(|s| s.success()),
        "agent stop: {stopped:?}"
    );
    let gone = watch.wait_for(
        3 * S,
        |e| matches!(e, BrowseEvent::Removed(s) if s.name == "web1"),
    );
    assert!(gone.is_some(), "no goodbye seen: {}", watch.raw());
}
