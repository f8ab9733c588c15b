//! The UPDATE messages (RFC 2136) and the check of their answers, without
//! I/O: hickory-proto's message types, signed and verified with its TSIG
//! (RFC 8945) signer.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage};
use hickory_proto::rr::rdata::tsig::{TSIG, TsigError};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigVerifier, TSigner};

/// TTL of the records when the lease is longer: short, because an address
/// can change at any renewal and resolvers should not hold the old one for
/// long.
pub const DEFAULT_TTL: u32 = 60;

/// What one name should hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Records {
    /// The A record: the IPv4 lease.
    pub v4: Option<Ipv4Addr>,
    /// The AAAA records: the router's IPv6 addresses (never link-local).
    pub v6: BTreeSet<Ipv6Addr>,
    pub ttl: u32,
}

impl Records {
    /// The records of a router's status: its lease and its IPv6 addresses,
    /// with the TTL no longer than the lease.
    pub fn of(status: &netcontainer_proto::Status) -> Records {
        let lease = status.lease.as_ref();
        let ttl = lease
            .and_then(|l| l.lease_secs)
            .map_or(DEFAULT_TTL, |s| DEFAULT_TTL.min(s.max(1)));
        Records {
            v4: lease.map(|l| l.address),
            v6: status
                .ipv6
                .iter()
                .map(|a| a.address)
                // A link-local address means nothing outside the link.
                .filter(|a| !a.is_unicast_link_local())
                .collect(),
            ttl,
        }
    }
}

/// What an answer says, when it is not success. The texts end a line that
/// names the server, the zone and the name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("the server answered {}{}", rcode_name(*.0), rcode_hint(*.0))]
    Rcode(ResponseCode),
    #[error("the server refused the TSIG signature: {}", tsig_error_text(*.0))]
    Tsig(TsigError),
    #[error("the answer is not signed with the key (not trusted): {0}")]
    NotSigned(String),
    #[error("malformed answer: {0}")]
    Malformed(String),
}

/// The zone name, the name and the message for "`name` holds `records`":
/// one UPDATE that deletes the A and AAAA RRsets of `name` and adds the
/// new ones (RFC 2136 sections 2.5.2 and 2.5.1), with no prerequisite, so
/// whatever the name held before (an old lease) is replaced in one step:
/// the server applies an UPDATE's section atomically (section 3.4.2).
pub fn replace(zone: &Name, name: &Name, records: &Records) -> Message {
    let mut m = update(zone);
    delete_rrsets(&mut m, name);
    if let Some(v4) = records.v4 {
        m.add_update(Record::from_rdata(
            name.clone(),
            records.ttl,
            RData::A(A(v4)),
        ));
    }
    for v6 in &records.v6 {
        m.add_update(Record::from_rdata(
            name.clone(),
            records.ttl,
            RData::AAAA(AAAA(*v6)),
        ));
    }
    m
}

/// The UPDATE that deletes the A and AAAA RRsets of `name`, and nothing
/// else the name may hold (records someone else put there).
pub fn delete(zone: &Name, name: &Name) -> Message {
    let mut m = update(zone);
    delete_rrsets(&mut m, name);
    m
}

fn update(zone: &Name) -> Message {
    // A random ID (hickory's `query`), then made an UPDATE.
    let mut m = Message::query();
    m.metadata.op_code = OpCode::Update;
    m.metadata.recursion_desired = false;
    // Zone section: ZNAME, ZTYPE SOA, ZCLASS IN (section 2.3).
    let mut z = Query::new();
    z.set_name(zone.clone())
        .set_query_type(RecordType::SOA)
        .set_query_class(DNSClass::IN);
    m.add_zone(z);
    m
}

/// "Delete an RRset" (section 2.5.2): CLASS ANY, TTL 0, no RDATA.
fn delete_rrsets(m: &mut Message, name: &Name) {
    for t in [RecordType::A, RecordType::AAAA] {
        let mut r = Record::update0(name.clone(), 0, t);
        r.dns_class = DNSClass::ANY;
        m.add_update(r);
    }
}

/// Signs `m` (TSIG at time `now`, seconds since the epoch): its wire form
/// and the verifier of the answer.
pub fn sign(
    mut m: Message,
    signer: &TSigner,
    now: u64,
) -> Result<(u16, Vec<u8>, TSigVerifier), Refusal> {
    let verifier = m
        .finalize(signer, now)
        .map_err(|e| Refusal::Malformed(format!("signing: {e}")))?
        .ok_or_else(|| Refusal::Malformed("signing: no verifier".into()))?;
    let bytes = m
        .to_vec()
        .map_err(|e| Refusal::Malformed(format!("encoding: {e}")))?;
    Ok((m.metadata.id, bytes, verifier))
}

/// Checks the answer to the UPDATE with ID `id`: that it answers it, that
/// its TSIG verifies (a forged "success" would leave the zone wrong
/// unnoticed), and its RCODE. An error the server reports in an unsigned
/// answer (RFC 8945 section 5.3.2: BADKEY, BADSIG) is taken as the error
/// it is: nothing is lost by believing a failure.
pub fn check_answer(bytes: &[u8], id: u16, verifier: &mut TSigVerifier) -> Result<(), Refusal> {
    let m = Message::from_vec(bytes).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if m.metadata.id != id
        || m.metadata.message_type != MessageType::Response
        || m.metadata.op_code != OpCode::Update
    {
        return Err(Refusal::Malformed(format!(
            "not the answer to this UPDATE (id {}, {:?} {:?})",
            m.metadata.id, m.metadata.message_type, m.metadata.op_code
        )));
    }
    let rcode = m.metadata.response_code;
    let tsig: Option<&TSIG> = m.signature.as_ref().map(|s| &s.data);
    if let Some(e) = tsig.and_then(|t| t.error) {
        return Err(Refusal::Tsig(e));
    }
    if rcode != ResponseCode::NoError && tsig.is_none_or(|t| t.mac.is_empty()) {
        return Err(Refusal::Rcode(rcode));
    }
    match tsig {
        None => return Err(Refusal::NotSigned("no TSIG record".into())),
        Some(_) => {
            verifier
                .verify(bytes)
                .map_err(|e| Refusal::NotSigned(e.to_string()))?;
        }
    }
    if rcode != ResponseCode::NoError {
        return Err(Refusal::Rcode(rcode));
    }
    Ok(())
}

/// The mnemonic of RFC 2136's and RFC 1035's RCODEs, as `dig` and named's
/// log print them.
fn rcode_name(r: ResponseCode) -> String {
    match u16::from(r) {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        6 => "YXDOMAIN".into(),
        7 => "YXRRSET".into(),
        8 => "NXRRSET".into(),
        9 => "NOTAUTH".into(),
        10 => "NOTZONE".into(),
        n => format!("RCODE {n}"),
    }
}

fn rcode_hint(r: ResponseCode) -> &'static str {
    match u16::from(r) {
        2 => " (see the server's log)",
        4 => " (the server takes no dynamic updates)",
        5 => " (the zone's update-policy or allow-update does not let this key change this name)",
        9 => " (the server is not authoritative for the zone)",
        10 => " (the name is not in the zone)",
        _ => "",
    }
}

fn tsig_error_text(e: TsigError) -> &'static str {
    match e {
        TsigError::BadKey => "BADKEY (the server knows no key of this name and algorithm)",
        TsigError::BadSig => "BADSIG (the server's secret for this key differs)",
        TsigError::BadTime => "BADTIME (this host's clock and the server's differ too much)",
        TsigError::BadTrunc => "BADTRUNC",
        TsigError::Unknown(_) => "an unknown TSIG error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
    use hickory_proto::rr::{Record, TSigResponseContext};
    use netcontainer_proto::{Ipv6AddressStatus, Ipv6Origin};

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    fn signer(secret: &[u8]) -> TSigner {
        TSigner::new(
            secret.to_vec(),
            TsigAlgorithm::HmacSha256,
            n("nc-test."),
            300,
        )
        .unwrap()
    }

    fn records() -> Records {
        Records {
            v4: Some(Ipv4Addr::new(203, 0, 113, 57)),
            v6: ["2001:db8::57".parse().unwrap()].into(),
            ttl: 60,
        }
    }

    #[test]
    fn records_of_a_status() {
        let mut st = crate::ddns::testkit::bound("web1", 57);
        st.ipv6 = ["fe80::1", "2001:db8::57"]
            .iter()
            .map(|a| Ipv6AddressStatus {
                address: a.parse().unwrap(),
                prefix_len: 64,
                origin: Ipv6Origin::Slaac,
                preferred_in_secs: None,
                valid_in_secs: None,
            })
            .collect();
        assert_eq!(Records::of(&st), records(), "no link-local AAAA");
        // A lease shorter than the TTL shortens it.
        st.lease.as_mut().unwrap().lease_secs = Some(30);
        assert_eq!(Records::of(&st).ttl, 30);
        st.lease = None;
        assert_eq!(Records::of(&st).v4, None);
    }

    /// The wire form: one zone (SOA IN), no prerequisite, the two RRset
    /// deletions (class ANY, TTL 0, no RDATA) then the additions.
    #[test]
    fn replace_deletes_then_adds_in_one_update() {
        let m = replace(&n("lan.example."), &n("web1.lan.example."), &records());
        let m = Message::from_vec(&m.to_vec().unwrap()).unwrap();
        assert_eq!(m.metadata.op_code, OpCode::Update);
        assert_eq!(m.zones().len(), 1);
        assert_eq!(m.zones()[0].name(), &n("lan.example."));
        assert_eq!(m.zones()[0].query_type(), RecordType::SOA);
        assert!(m.prerequisites().is_empty());
        let u: Vec<(RecordType, DNSClass, u32, String)> = m
            .updates()
            .iter()
            .map(|r: &Record| {
                (
                    r.record_type(),
                    r.dns_class,
                    r.ttl,
                    match &r.data {
                        RData::A(a) => a.to_string(),
                        RData::AAAA(a) => a.to_string(),
                        _ => String::new(),
                    },
                )
            })
            .collect();
        assert_eq!(
            u,
            [
                (RecordType::A, DNSClass::ANY, 0, String::new()),
                (RecordType::AAAA, DNSClass::ANY, 0, String::new()),
                (RecordType::A, DNSClass::IN, 60, "203.0.113.57".into()),
                (RecordType::AAAA, DNSClass::IN, 60, "2001:db8::57".into()),
            ]
        );
        assert!(m.updates().iter().all(|r| r.name == n("web1.lan.example.")));
        let d = delete(&n("lan.example."), &n("web1.lan.example."));
        assert_eq!(d.updates().len(), 2);
        assert!(d.updates().iter().all(|r| r.dns_class == DNSClass::ANY));
    }

    /// The server's side played by hickory's own response signer: a signed
    /// NOERROR passes; the same answer with a byte changed, or signed with
    /// another secret, or unsigned, does not; REFUSED and BADKEY are named.
    #[test]
    fn answers_are_verified_before_believed() {
        let key = signer(b"0123456789abcdef0123456789abcdef");
        let now = 1_800_000_000;
        // A fresh signed request; `answer` makes the server's reply to it
        // from its ID and MAC; the reply is checked with its verifier.
        let exchange = |answer: &dyn Fn(u16, Vec<u8>) -> Vec<u8>, id_shift: u16| {
            let m = replace(&n("lan.example."), &n("web1.lan.example."), &records());
            let (id, req, mut verifier) = sign(m, &key, now).unwrap();
            let mac = Message::from_vec(&req).unwrap().signature.unwrap().data.mac;
            check_answer(&answer(id, mac), id.wrapping_add(id_shift), &mut verifier)
        };
        let signed = |rcode: ResponseCode, server_key: TSigner| {
            move |id: u16, mac: Vec<u8>| {
                let mut a = Message::response(id, OpCode::Update);
                a.metadata.response_code = rcode;
                let ctx = TSigResponseContext::new(id, now + 1, server_key.clone(), mac, None);
                a.set_signature(ctx.sign(&a.to_vec().unwrap()).unwrap());
                a.to_vec().unwrap()
            }
        };
        let ok = signed(ResponseCode::NoError, key.clone());
        assert_eq!(exchange(&ok, 0), Ok(()));
        let tampered = |id, mac| {
            let mut b = ok(id, mac);
            // A bit of the MAC itself.
            let at = b.len() - 10;
            b[at] ^= 1;
            b
        };
        assert!(matches!(exchange(&tampered, 0), Err(Refusal::NotSigned(_))));
        let forged = signed(ResponseCode::NoError, signer(b"not the secret"));
        assert!(matches!(exchange(&forged, 0), Err(Refusal::NotSigned(_))));
        let unsigned = |id, _| Message::response(id, OpCode::Update).to_vec().unwrap();
        assert_eq!(
            exchange(&unsigned, 0),
            Err(Refusal::NotSigned("no TSIG record".into()))
        );
        assert!(matches!(exchange(&ok, 1), Err(Refusal::Malformed(_))));
        let e = exchange(&signed(ResponseCode::Refused, key.clone()), 0).unwrap_err();
        assert_eq!(e, Refusal::Rcode(ResponseCode::Refused));
        assert!(
            e.to_string()
                .starts_with("the server answered REFUSED (the zone's update-policy"),
            "{e}"
        );
        let badkey = |id, _| {
            let mut a = Message::error_msg(id, OpCode::Update, ResponseCode::NotAuth);
            let ctx = TSigResponseContext::unknown_key(id, now, n("nc-test."));
            a.set_signature(ctx.sign(&a.to_vec().unwrap()).unwrap());
            a.to_vec().unwrap()
        };
        let e = exchange(&badkey, 0).unwrap_err();
        assert_eq!(e, Refusal::Tsig(TsigError::BadKey));
        assert!(e.to_string().contains("BADKEY"), "{e}");
    }
}
