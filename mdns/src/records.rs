//! The records one host publishes (RFC 6762 and RFC 6763) built from its current
//! names and addresses, and the comparisons the protocol needs on them.

use std::cmp::Ordering;
use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::rdata::{A, AAAA, NULL, PTR, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

use crate::config::Config;

/// RFC 6762 10: records naming a host (A, AAAA, SRV, and our NSEC) live 120 s.
pub const HOST_TTL: u32 = 120;
/// RFC 6762 10: the other records (PTR, TXT) live 75 minutes.
pub const OTHER_TTL: u32 = 4500;
/// RFC 6762 6.7: legacy unicast answers carry a TTL of at most 10 s.
pub const LEGACY_TTL: u32 = 10;

/// Who a record belongs to: the host, or the service at this index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    Host,
    Service(usize),
    /// The shared PTRs (browsing names), which the probe does not cover.
    Shared,
    /// Reverse-mapping PTRs (`5.2.0.192.in-addr.arpa` -> the host): unique
    /// (the address is ours alone), but neither probed nor defended, as
    /// avahi does: the address itself was checked when it was configured.
    Reverse,
}

/// One published record and whether it is unique (RFC 6762 2: cache-flush
/// bit set, probed for) or shared (PTR).
#[derive(Clone, Debug)]
pub(crate) struct Published {
    pub record: Record,
    pub unique: bool,
    pub owner: Owner,
}

/// The names the responder currently claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Names {
    /// The host label (after renames), e.g. `web1-2`.
    pub label: String,
    /// The instance name of each configured service (after renames).
    pub instances: Vec<String>,
}

fn name_of(labels: &[&str]) -> Name {
    // Every label was validated (1..=63 bytes) and a name of at most
    // 63 + 1 + 16 + 1 + 4 labels' bytes is far below 255: this cannot fail.
    Name::from_labels(labels.iter().map(|l| l.as_bytes())).expect("validated labels")
}

/// `_services._dns-sd._udp.local` (RFC 6763 9).
pub(crate) fn services_meta() -> Name {
    name_of(&["_services", "_dns-sd", "_udp", "local"])
}

fn type_labels(t: &str) -> Vec<&str> {
    let mut v: Vec<&str> = t.split('.').collect();
    v.push("local");
    v
}

impl Names {
    pub fn host(&self) -> Name {
        name_of(&[&self.label, "local"])
    }

    pub fn service_type(&self, config: &Config, i: usize) -> Name {
        name_of(&type_labels(&config.services[i].service_type))
    }

    pub fn instance(&self, config: &Config, i: usize) -> Name {
        let mut labels = vec![self.instances[i].as_str()];
        labels.extend(type_labels(&config.services[i].service_type));
        name_of(&labels)
    }

    /// The names with unique records, which a probe claims: host first.
    pub fn unique(&self, config: &Config) -> Vec<(Owner, Name)> {
        let mut v = vec![(Owner::Host, self.host())];
        v.extend((0..self.instances.len()).map(|i| (Owner::Service(i), self.instance(config, i))));
        v
    }

    /// Every name the responder answers for.
    pub fn all(&self, config: &Config) -> Vec<Name> {
        let mut v: Vec<Name> = self.unique(config).into_iter().map(|(_, n)| n).collect();
        if !config.services.is_empty() {
            v.push(services_meta());
        }
        for i in 0..config.services.len() {
            let t = self.service_type(config, i);
            if !v.contains(&t) {
                v.push(t);
            }
        }
        v
    }
}

fn record(name: Name, ttl: u32, data: RData, unique: bool, owner: Owner) -> Published {
    let mut record = Record::from_rdata(name, ttl, data);
    // RFC 6762 10.2: the cache-flush bit marks unique records only.
    record.mdns_cache_flush = unique;
    Published {
        record,
        unique,
        owner,
    }
}

/// The full record set (RFC 6763 12 lists which records make a service).
pub(crate) fn build(
    config: &Config,
    names: &Names,
    v4: &[Ipv4Addr],
    v6: &[Ipv6Addr],
) -> Vec<Published> {
    let host = names.host();
    let mut out: Vec<Published> = Vec::new();
    for a in v4 {
        out.push(record(
            host.clone(),
            HOST_TTL,
            RData::A(A(*a)),
            true,
            Owner::Host,
        ));
    }
    for a in v6 {
        out.push(record(
            host.clone(),
            HOST_TTL,
            RData::AAAA(AAAA(*a)),
            true,
            Owner::Host,
        ));
    }
    // RFC 6762 4: reverse mapping of the host's addresses, TTL as the host
    // name's (10).
    let reverse = v4
        .iter()
        .map(|a| Name::from(*a))
        .chain(v6.iter().map(|a| Name::from(*a)));
    for n in reverse {
        out.push(record(
            n,
            HOST_TTL,
            RData::PTR(PTR(host.clone())),
            true,
            Owner::Reverse,
        ));
    }
    for (i, s) in config.services.iter().enumerate() {
        let t = names.service_type(config, i);
        let inst = names.instance(config, i);
        // RFC 6763 9: service type enumeration; several services of one type
        // share one PTR.
        let meta = record(
            services_meta(),
            OTHER_TTL,
            RData::PTR(PTR(t.clone())),
            false,
            Owner::Shared,
        );
        if !out.iter().any(|p| same(&p.record, &meta.record)) {
            out.push(meta);
        }
        out.push(record(
            t,
            OTHER_TTL,
            RData::PTR(PTR(inst.clone())),
            false,
            Owner::Shared,
        ));
        out.push(record(
            inst.clone(),
            HOST_TTL,
            RData::SRV(SRV::new(0, 0, s.port, host.clone())),
            true,
            Owner::Service(i),
        ));
        // RFC 6763 6.1: an empty TXT record is a single zero byte, i.e. one
        // empty string.
        let txt = if s.txt.is_empty() {
            TXT::new(vec![String::new()])
        } else {
            TXT::new(s.txt.clone())
        };
        out.push(record(
            inst,
            OTHER_TTL,
            RData::TXT(txt),
            true,
            Owner::Service(i),
        ));
    }
    out
}

/// The NSEC record (RFC 6762 6.1) saying that `name` has only the types
/// `present`: its next-name field is the name itself, its bitmap covers types
/// below 256 only. hickory-proto builds NSEC only with its DNSSEC features,
/// so the rdata is written here as the few bytes RFC 4034 4.1 defines.
pub(crate) fn nsec(name: &Name, present: &[RecordType]) -> Record {
    let mut rdata = Vec::with_capacity(64);
    {
        let mut enc = BinEncoder::new(&mut rdata);
        // Names in rdata are not compressed here: this encoder holds no
        // earlier name to point at.
        let _ = name.emit(&mut enc);
    }
    let codes: Vec<u16> = present
        .iter()
        .map(|t| u16::from(*t))
        .filter(|c| *c < 256)
        .collect();
    let len = codes
        .iter()
        .map(|c| usize::from(*c) / 8 + 1)
        .max()
        .unwrap_or(1);
    let mut bitmap = vec![0u8; len];
    for c in codes {
        bitmap[usize::from(c) / 8] |= 0x80 >> (c % 8);
    }
    rdata.push(0); // window block 0
    rdata.push(len as u8);
    rdata.extend_from_slice(&bitmap);
    let mut r = Record::from_rdata(
        name.clone(),
        HOST_TTL,
        RData::Unknown {
            code: RecordType::NSEC,
            rdata: NULL::with(rdata),
        },
    );
    r.mdns_cache_flush = true;
    r
}

/// The rdata as it is on the wire, uncompressed (names in rdata are written
/// whole by an encoder that holds no earlier name).
pub(crate) fn rdata_bytes(r: &Record) -> Vec<u8> {
    let mut buf = Vec::with_capacity(32);
    let mut enc = BinEncoder::new(&mut buf);
    let _ = r.data.emit(&mut enc);
    buf
}

/// Same name (case-insensitive), type, class and rdata: the same record for
/// known-answer suppression and conflict checks (TTL and cache-flush aside).
pub(crate) fn same(a: &Record, b: &Record) -> bool {
    a.name == b.name
        && a.record_type() == b.record_type()
        && a.dns_class == b.dns_class
        && rdata_bytes(a) == rdata_bytes(b)
}

/// RFC 6762 8.2's order on records for the simultaneous probe tie-break:
/// class (without the cache-flush bit), then type, then the raw rdata bytes.
pub(crate) fn lexicographic(a: &Record, b: &Record) -> Ordering {
    u16::from(a.dns_class)
        .cmp(&u16::from(b.dns_class))
        .then(u16::from(a.record_type()).cmp(&u16::from(b.record_type())))
        .then_with(|| rdata_bytes(a).cmp(&rdata_bytes(b)))
}

/// RFC 6762 8.2: sort both lists, compare pair by pair; a longer list with an
/// equal prefix is later. `Greater` means ours wins.
pub(crate) fn tie_break(ours: &[Record], theirs: &[Record]) -> Ordering {
    let mut a: Vec<&Record> = ours.iter().collect();
    let mut b: Vec<&Record> = theirs.iter().collect();
    a.sort_by(|x, y| lexicographic(x, y));
    b.sort_by(|x, y| lexicographic(x, y));
    for (x, y) in a.iter().zip(&b) {
        match lexicographic(x, y) {
            Ordering::Equal => continue,
            o => return o,
        }
    }
    a.len().cmp(&b.len())
}

/// Whether a record is in the IN class (or ANY, as a question may ask).
pub(crate) fn class_ok(c: DNSClass) -> bool {
    matches!(c, DNSClass::IN | DNSClass::ANY)
}
