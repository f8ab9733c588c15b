//! The real mDNS/DNS-SD clients of `tests/src/mdns.rs` against each other, as the fixture's
//! own check (issue 24): two LAN client namespaces on one bed, avahi publishing in c0,
//! avahi, python's zeroconf and dig asking from c1. Root only (`require_root!` skips
//! otherwise, fails under CI); run under the machine lock:
//!
//!   flock -x /run/lock/nc-dev.lock cargo test -p netcontainer-tests --test mdns_clients
//!
//! What it also documents about the clients (printed with timings, `--nocapture`):
//! * avahi answers a second daemon from its cache: c1's avahi caches every announcement
//!   it hears, so resolving a name announced a moment ago costs no query at all.
//! * avahi answers a one-shot query from an ephemeral port by unicast to that port, from
//!   its own address (RFC 6762 section 6.7); dig asking 224.0.0.251 drops that reply (not
//!   from the address it asked), so [`dig_legacy`] asks the responder's address and
//!   [`legacy_query`] does the multicast one.
//! * The first `avahi-browse -t` on a daemon started a moment ago ends empty even though the
//!   service answers; [`Avahi::browse`] repeats it (about 1 s per run).
//! * A goodbye (avahi-publish stopped) shows as a `-` line in a running avahi-browse.

use netcontainer_tests::mdns::{
    Avahi, AvahiOpts, BrowseEvent, dig_legacy, legacy_query, zeroconf_browse, zeroconf_resolve,
};
use netcontainer_tests::*;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

const S: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);
const PUBLISHER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const PRINTER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 77);

/// Time one call and print it (the timings are part of what this test documents).
fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let v = f();
    eprintln!("{what}: {:?}", t.elapsed());
    v
}

#[test]
fn real_clients_browse_resolve_and_query() {
    require_root!();
    for tool in ["avahi-daemon", "avahi-browse", "dbus-daemon", "dig"] {
        assert!(have(tool), "{tool} missing: run sudo scripts/install-deps");
    }
    assert!(
        std::path::Path::new("/usr/lib/python3/dist-packages/zeroconf").exists(),
        "python3-zeroconf missing: run sudo scripts/install-deps"
    );
    let dir = TempDir::new("mdnsc");
    let mut lan = Lan::new();
    let c0 = lan.add_client(10);
    let c1 = lan.add_client(11);

    let publisher = timed("Avahi::start (publishing addresses)", || {
        Avahi::start_with(
            &c0,
            dir.path(),
            AvahiOpts {
                publish_addresses: true,
                host_name: None,
            },
        )
    });
    let browser = timed("Avahi::start (browser)", || Avahi::start(&c1, dir.path()));

    let mut web = publisher.publish_service("web1", "_http._tcp", 80, &["path=/"]);
    let mut printer = publisher.publish_address("printer.local", PRINTER);
    timed("publish_service + publish_address established", || {
        web.established(5 * S).unwrap();
        printer.established(5 * S).unwrap();
    });

    // avahi-browse -rpt: the instance on both protocols, resolved to c0's host and address.
    let found = timed("Avahi::browse", || browser.browse("_http._tcp", 5 * S));
    let v4 = found
        .iter()
        .find(|b| b.protocol == "IPv4" && b.name == "web1")
        .unwrap_or_else(|| panic!("web1 over IPv4 not browsed: {found:?}"));
    assert_eq!(v4.service_type, "_http._tcp");
    assert_eq!(v4.domain, "local");
    assert_eq!(v4.host, publisher.host_name());
    assert_eq!(v4.address, Some(IpAddr::V4(PUBLISHER)));
    assert_eq!(v4.port, 80);
    assert_eq!(v4.txt, vec!["path=/"]);
    // From here on a running browse, to see the removal at the end.
    let watch = browser.watch_browse("_http._tcp");

    // avahi-resolve, A and AAAA (c0 has only its link-local IPv6 address).
    let a = timed("Avahi::resolve_host", || {
        browser.resolve_host("printer.local", 5 * S)
    });
    assert_eq!(a, Some(IpAddr::V4(PRINTER)));
    let aaaa = timed("Avahi::resolve_host6", || {
        browser.resolve_host6(&publisher.host_name(), 5 * S)
    });
    assert!(
        matches!(aaaa, Some(IpAddr::V6(v6)) if v6.segments()[0] == 0xfe80),
        "{aaaa:?}"
    );
    // A name nobody holds: the fixture says so (within its bound) instead of hanging.
    let none = timed("Avahi::resolve_host (nobody's name)", || {
        browser.resolve_host("nobody.local", 2 * S)
    });
    assert_eq!(none, None);

    // python's zeroconf.
    let zc = timed("zeroconf_resolve", || {
        zeroconf_resolve(&c1, "_http._tcp", "web1", 3 * S)
    })
    .expect("zeroconf resolves web1");
    assert!(zc.addresses.contains(&IpAddr::V4(PUBLISHER)), "{zc:?}");
    assert_eq!(zc.port, 80);
    assert_eq!(zc.txt, vec![("path".to_string(), Some("/".to_string()))]);
    assert_eq!(zc.server, format!("{}.", publisher.host_name()));
    let nobody = timed("zeroconf_resolve (nobody's instance)", || {
        zeroconf_resolve(&c1, "_http._tcp", "nobody", S)
    });
    assert_eq!(nobody, None);
    let names = timed("zeroconf_browse", || {
        zeroconf_browse(&c1, "_http._tcp", 1500 * MS)
    });
    assert!(
        names.contains(&"web1._http._tcp.local.".to_string()),
        "{names:?}"
    );

    // Legacy unicast (RFC 6762 section 6.7): dig to the responder's address, and one
    // query to the group from an ephemeral port.
    let dug = timed("dig_legacy", || {
        dig_legacy(&c1, IpAddr::V4(PUBLISHER), "printer.local", "A")
    });
    assert_eq!(dug, Ok(vec![PRINTER.to_string()]));
    let replies = timed("legacy_query", || {
        legacy_query(&c1, "printer.local", "A", S)
    });
    let r = replies
        .iter()
        .find(|r| r.from.ip() == IpAddr::V4(PUBLISHER))
        .unwrap_or_else(|| panic!("no legacy reply from c0: {replies:?}"));
    assert_eq!(r.from.port(), 5353, "{r:?}");
    assert!(r.id_matches && r.question_repeated, "{r:?}");
    let (_, ty, ttl, data) = r.answers.first().expect("an answer");
    assert_eq!((ty.as_str(), data.as_str()), ("A", "192.0.2.77"));
    // RFC 6762 section 6.7: at most 10 s in a legacy answer.
    assert!(*ttl <= 10, "legacy answer TTL {ttl}");

    // The running browse saw web1 come; stopping the publisher (goodbye) removes it.
    assert!(
        watch
            .wait_for(
                2 * S,
                |e| matches!(e, BrowseEvent::Added(s) if s.name == "web1")
            )
            .is_some(),
        "{}",
        watch.raw()
    );
    web.stop();
    let gone = watch.wait_for(
        3 * S,
        |e| matches!(e, BrowseEvent::Removed(s) if s.name == "web1" && s.protocol == "IPv4"),
    );
    let (_, took) = gone.unwrap_or_else(|| panic!("no removal line: {}", watch.raw()));
    eprintln!("removal line after goodbye: {took:?}");
}
