//! The responder's share of the agent's memory budget (the whole responder,
//! shell included, must add less than 300 kB of resident memory): the live
//! heap of a claimed responder with two services, counted by a global
//! allocator of this test binary, stays small while it is flooded with
//! queries, truncated queries that are held for their known answers, and
//! garbage, and returns to about where it was. Shown able to fail: before
//! held queries kept only what concerns us, the live heap grew to 600 kB; before
//! the header counts were checked, 12 bytes of 0xff made the parser reserve 6 MB;
//! without [`MAX_RECORDS`], a 9000-byte packet of 360 records peaked at 256 kB.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use netcontainer_mdns::hickory_proto::op::{Message, MessageType, OpCode, Query};
use netcontainer_mdns::hickory_proto::rr::rdata::A;
use netcontainer_mdns::hickory_proto::rr::{Name, RData, Record, RecordType};
use netcontainer_mdns::{Config, MAX_RECORDS, Responder, Service};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn name(s: &str) -> Name {
    Name::from_labels(s.split('.').map(str::as_bytes)).unwrap()
}

fn query(n: &str, t: RecordType, tc: bool, known: usize) -> Vec<u8> {
    let mut m = Message::new(0, MessageType::Query, OpCode::Query);
    m.metadata.truncation = tc;
    m.queries.push(Query::query(name(n), t));
    for i in 0..known {
        m.answers.push(Record::from_rdata(
            name("other.local"),
            120,
            RData::A(A(Ipv4Addr::new(198, 51, 100, i as u8))),
        ));
    }
    m.to_vec().unwrap()
}

#[test]
fn a_flooded_responder_holds_little_heap() {
    let t0 = Instant::now();
    let config = Config {
        hostname: "web1".into(),
        services: vec![
            Service {
                instance: "web1".into(),
                service_type: "_http._tcp".into(),
                port: 80,
                txt: vec!["path=/".into()],
            },
            Service {
                instance: "Printer".into(),
                service_type: "_ipp._tcp".into(),
                port: 631,
                txt: vec![],
            },
        ],
    };
    let base = LIVE.load(Ordering::Relaxed);
    let mut r = Responder::new(config, 1).unwrap();
    r.set_addresses(
        t0,
        &[Ipv4Addr::new(192, 0, 2, 5)],
        &[Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5)],
    );
    let mut now = t0;
    while let Some(t) = r.poll_timeout() {
        now = t;
        r.handle_timeout(t);
        while r.poll_transmit().is_some() {}
    }
    assert_eq!(r.name().as_deref(), Some("web1.local"));
    let claimed = LIVE.load(Ordering::Relaxed) - base;
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);

    // 2000 sources each send a truncated query with 100 known answers (only
    // 16 are held, keeping only known answers that are ours), plus plain
    // queries, junk, and now and then the most records a packet may have.
    let big_tc = query("_http._tcp.local", RecordType::PTR, true, 100);
    let plain = query("web1.local", RecordType::ANY, false, 0);
    // The most records accepted, all of them known answers: parsing it is
    // the transient peak (a parsed record is a few hundred bytes); one more
    // record and the packet is dropped unparsed.
    let largest = query("web1.local", RecordType::A, false, MAX_RECORDS);
    let too_many = query("web1.local", RecordType::A, false, MAX_RECORDS + 1);
    for i in 0..2000u32 {
        now += Duration::from_millis(1);
        // Every seventh from a legacy resolver's port.
        let port = if i % 7 == 0 {
            40000 + (i % 1000) as u16
        } else {
            5353
        };
        let from = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, (i % 250) as u8 + 1)),
            port,
        );
        r.handle_packet(now, from, &big_tc);
        r.handle_packet(now, from, &plain);
        r.handle_packet(now, from, &[0xff; 300]);
        if i % 100 == 0 {
            r.handle_packet(now, from, &largest);
            r.handle_packet(now, from, &too_many);
        }
        if let Some(t) = r.poll_timeout().filter(|t| *t <= now) {
            r.handle_timeout(t.max(now));
        }
        while r.poll_transmit().is_some() {}
        let live = LIVE.load(Ordering::Relaxed) - base;
        if i % 200 == 0 {
            eprintln!(
                "{i}: live {live} peak {}",
                PEAK.load(Ordering::Relaxed) - base
            );
        }
    }
    let peak = PEAK.load(Ordering::Relaxed) - base;
    for _ in 0..100 {
        match r.poll_timeout() {
            Some(t) => {
                r.handle_timeout(t);
                while r.poll_transmit().is_some() {}
            }
            None => break,
        }
    }
    let after = LIVE.load(Ordering::Relaxed) - base;
    eprintln!("heap: claimed {claimed} B, peak under the flood {peak} B, after {after} B");
    assert!(claimed < 32 * 1024, "claimed: {claimed} B");
    // Transient: freed as soon as the packet is handled.
    assert!(peak < 160 * 1024, "peak: {peak} B");
    assert!(after < claimed + 32 * 1024, "after the flood: {after} B");
    assert!(r.counters().malformed >= 2000);
    assert_eq!(r.counters().oversize, 20);
}
