//! The DHCPv6 wire format as the client sees it (RFC 8415 sections 8 and
//! 21): checking and decoding what servers send into a [`Received`], and
//! building what the client sends. Kept apart from the state machine
//! ([`super::client`]) so every rule about what a hostile or broken server
//! may send is in one place.
//!
//! dhcproto decodes and encodes the messages, but its option decoder trusts
//! lengths (a Status Code or Authentication option shorter than its fixed
//! part underflows, a non-UTF-8 status message ends the whole option list).
//! So received bytes first go through [`sanitize`]: our own walk of the
//! option TLVs keeps only the options the client reads, each with a length
//! its type allows, and re-encodes them; only that reaches dhcproto.
//! Everything here is total: no input may cause a panic (fuzzed).

use std::net::Ipv6Addr;
use std::time::Duration;

use dhcproto::v6::{
    DhcpOption, DhcpOptions, IAAddr, IANA, Message, MessageType, ORO, OptionCode, UnknownOption,
};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

/// Option codes (RFC 8415 section 21 and the registry).
pub mod code {
    pub const CLIENT_ID: u16 = 1;
    pub const SERVER_ID: u16 = 2;
    pub const IA_NA: u16 = 3;
    pub const IA_ADDR: u16 = 5;
    pub const ORO: u16 = 6;
    pub const PREFERENCE: u16 = 7;
    pub const ELAPSED_TIME: u16 = 8;
    pub const AUTH: u16 = 11;
    pub const STATUS_CODE: u16 = 13;
    pub const RAPID_COMMIT: u16 = 14;
    pub const RECONF_MSG: u16 = 19;
    pub const DNS_SERVERS: u16 = 23;
    pub const DOMAIN_LIST: u16 = 24;
    pub const INFORMATION_REFRESH_TIME: u16 = 32;
    pub const CLIENT_FQDN: u16 = 39;
    pub const SOL_MAX_RT: u16 = 82;
    pub const INF_MAX_RT: u16 = 83;
}

/// Status codes the client acts on (RFC 8415 section 21.13).
pub mod status {
    pub const SUCCESS: u16 = 0;
    pub const NO_ADDRS_AVAIL: u16 = 2;
    pub const NO_BINDING: u16 = 3;
    pub const NOT_ON_LINK: u16 = 4;
    pub const USE_MULTICAST: u16 = 5;
}

/// The options asked for in the Option Request option (section 21.7):
/// DNS servers and search list, and SOL_MAX_RT / INF_MAX_RT, which section
/// 18.2 requires in Solicit and Information-request ORO.
pub const REQUESTED: [u16; 4] = [
    code::DNS_SERVERS,
    code::DOMAIN_LIST,
    code::SOL_MAX_RT,
    code::INFORMATION_REFRESH_TIME,
];

/// The options of a DHCPv6 message (or of an option's payload) as
/// (code, data) in order, stopping at the first truncated option.
#[derive(Clone, Debug)]
pub struct OptionWalk<'a> {
    bytes: &'a [u8],
    truncated: bool,
}

impl<'a> OptionWalk<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        OptionWalk {
            bytes,
            truncated: false,
        }
    }

    /// The walk stopped at bytes that are not a whole option.
    pub fn truncated(&self) -> bool {
        self.truncated
    }
}

impl<'a> Iterator for OptionWalk<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<(u16, &'a [u8])> {
        if self.bytes.is_empty() {
            return None;
        }
        let Some(head) = self.bytes.get(..4) else {
            self.truncated = true;
            self.bytes = &[];
            return None;
        };
        let code = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let Some(data) = self.bytes.get(4..4 + len) else {
            self.truncated = true;
            self.bytes = &[];
            return None;
        };
        self.bytes = &self.bytes[4 + len..];
        Some((code, data))
    }
}

fn put(out: &mut Vec<u8>, code: u16, data: &[u8]) {
    // Lengths come from an option that was itself within a u16 length.
    let len = u16::try_from(data.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&data[..usize::from(len)]);
}

/// A status code option with its message made valid UTF-8 (dhcproto
/// refuses other text, and drops every later option with it).
fn clean_status(data: &[u8]) -> Option<Vec<u8>> {
    let (code, msg) = (data.get(..2)?, data.get(2..)?);
    let mut out = code.to_vec();
    out.extend_from_slice(String::from_utf8_lossy(msg).as_bytes());
    Some(out)
}

/// The IA_ADDR options and status of an IA_NA payload (after its fixed
/// twelve bytes), cleaned the same way.
fn clean_ia_na(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = data.get(..12)?.to_vec();
    let mut walk = OptionWalk::new(&data[12..]);
    for (c, d) in walk.by_ref() {
        match c {
            code::IA_ADDR if d.len() >= 24 => {
                let mut addr = d[..24].to_vec();
                for (c2, d2) in OptionWalk::new(&d[24..]) {
                    if c2 == code::STATUS_CODE
                        && let Some(s) = clean_status(d2)
                    {
                        put(&mut addr, c2, &s);
                    }
                }
                put(&mut out, c, &addr);
            }
            code::STATUS_CODE => {
                if let Some(s) = clean_status(d) {
                    put(&mut out, c, &s);
                }
            }
            _ => {}
        }
    }
    (!walk.truncated()).then_some(out)
}

/// Keeps what the client reads from a server message, each option with a
/// length its type allows, in a form dhcproto decodes without surprises.
/// `None` for anything that is not an Advertise, Reply or Reconfigure.
pub fn sanitize(payload: &[u8]) -> Option<Vec<u8>> {
    let head = payload.get(..4)?;
    if !matches!(head[0], 2 | 7 | 10) {
        return None;
    }
    let mut out = head.to_vec();
    let mut walk = OptionWalk::new(&payload[4..]);
    for (c, d) in walk.by_ref() {
        let keep = match c {
            code::CLIENT_ID | code::SERVER_ID => (1..=130).contains(&d.len()).then(|| d.to_vec()),
            code::IA_NA => clean_ia_na(d),
            code::PREFERENCE | code::RECONF_MSG => (d.len() == 1).then(|| d.to_vec()),
            code::RAPID_COMMIT => d.is_empty().then(Vec::new),
            code::STATUS_CODE => clean_status(d),
            code::AUTH => (d.len() >= 11).then(|| d.to_vec()),
            code::DNS_SERVERS => (d.len() % 16 == 0).then(|| d.to_vec()),
            code::INFORMATION_REFRESH_TIME | code::SOL_MAX_RT => (d.len() == 4).then(|| d.to_vec()),
            _ => None,
        };
        if let Some(k) = keep {
            put(&mut out, c, &k);
        }
    }
    // Section 16: a malformed message is dropped whole, not read in part.
    (!walk.truncated()).then_some(out)
}

/// One address of an IA_NA (section 21.6), lifetimes in seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IaAddress {
    pub address: Ipv6Addr,
    pub preferred: u32,
    pub valid: u32,
}

/// The client's IA_NA as a server returned it (section 21.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IaNa {
    pub t1: u32,
    pub t2: u32,
    /// Addresses whose preferred lifetime is not above the valid one
    /// (section 21.6 has the client discard the others).
    pub addresses: Vec<IaAddress>,
    /// The IA's status code, `SUCCESS` when absent.
    pub status: u16,
}

/// What kind of server message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Advertise,
    Reply,
    Reconfigure,
}

/// A server message the client may act on, decoded and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub kind: Kind,
    pub xid: u32,
    pub server_id: Vec<u8>,
    pub preference: u8,
    pub rapid_commit: bool,
    /// The message's top-level status code, `SUCCESS` when absent.
    pub status: u16,
    /// Our IA_NA (the one with our IAID), if present.
    pub ia_na: Option<IaNa>,
    pub dns: Vec<Ipv6Addr>,
    pub information_refresh: Option<u32>,
    pub sol_max_rt: Option<u32>,
    /// It carries an Authentication option. The client never verifies one
    /// (it does not take part in the Reconfigure Key protocol), so this only
    /// explains, in logs, why a Reconfigure was dropped.
    pub has_auth: bool,
}

/// Why a received message was dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not a server-to-client message, or malformed")]
    Malformed,
    #[error("transaction id {0:#08x} is not ours")]
    ForeignXid(u32),
    #[error("client identifier missing or not ours")]
    ForeignClient,
    #[error("no server identifier")]
    NoServerId,
}

fn status_of(opts: &DhcpOptions) -> u16 {
    match opts.get(OptionCode::StatusCode) {
        Some(DhcpOption::StatusCode(s)) => s.status.into(),
        _ => status::SUCCESS,
    }
}

fn u32_option(opts: &DhcpOptions, c: u16) -> Option<u32> {
    match opts.get(OptionCode::from(c)) {
        Some(DhcpOption::Unknown(u)) => u.data().try_into().ok().map(u32::from_be_bytes),
        Some(DhcpOption::InformationRefreshTime(t)) => Some(*t),
        _ => None,
    }
}

/// Decodes and checks a server message for the client with `duid` and
/// `iaid` in the exchange `xid` (section 16: a message for another client
/// or another exchange is dropped). A Reconfigure is checked for the client
/// id only (its xid is the server's, section 16.11).
pub fn receive(
    payload: &[u8],
    xid: Option<u32>,
    duid: &[u8],
    iaid: u32,
) -> Result<Received, Refused> {
    let clean = sanitize(payload).ok_or(Refused::Malformed)?;
    let msg = Message::decode(&mut Decoder::new(&clean)).map_err(|_| Refused::Malformed)?;
    let kind = match msg.msg_type() {
        MessageType::Advertise => Kind::Advertise,
        MessageType::Reply => Kind::Reply,
        MessageType::Reconfigure => Kind::Reconfigure,
        _ => return Err(Refused::Malformed),
    };
    let got = msg.xid_num();
    if kind != Kind::Reconfigure && xid != Some(got) {
        return Err(Refused::ForeignXid(got));
    }
    let opts = msg.opts();
    match opts.get(OptionCode::ClientId) {
        Some(DhcpOption::ClientId(id)) if id.as_slice() == duid => {}
        _ => return Err(Refused::ForeignClient),
    }
    let server_id = match opts.get(OptionCode::ServerId) {
        Some(DhcpOption::ServerId(id)) => id.clone(),
        _ => return Err(Refused::NoServerId),
    };
    let ia_na = opts
        .get_all(OptionCode::IANA)
        .unwrap_or_default()
        .iter()
        .find_map(|o| match o {
            DhcpOption::IANA(ia) if ia.id == iaid => Some(ia),
            _ => None,
        })
        .map(|ia| IaNa {
            t1: ia.t1,
            t2: ia.t2,
            status: status_of(&ia.opts),
            addresses: ia
                .opts
                .get_all(OptionCode::IAAddr)
                .unwrap_or_default()
                .iter()
                .filter_map(|o| match o {
                    // An address that can be no unicast of ours (multicast,
                    // link-local, ::/8) is as if the server had not sent it.
                    DhcpOption::IAAddr(a)
                        if a.preferred_life <= a.valid_life
                            && super::ra::usable_address(a.addr) =>
                    {
                        Some(IaAddress {
                            address: a.addr,
                            preferred: a.preferred_life,
                            valid: a.valid_life,
                        })
                    }
                    _ => None,
                })
                .collect(),
        });
    Ok(Received {
        kind,
        xid: got,
        server_id,
        preference: match opts.get(OptionCode::Preference) {
            Some(DhcpOption::Preference(p)) => *p,
            _ => 0,
        },
        rapid_commit: opts.get(OptionCode::RapidCommit).is_some(),
        status: status_of(opts),
        ia_na,
        dns: match opts.get(OptionCode::DomainNameServers) {
            Some(DhcpOption::DomainNameServers(d)) => d.clone(),
            _ => Vec::new(),
        },
        information_refresh: u32_option(opts, code::INFORMATION_REFRESH_TIME),
        sol_max_rt: u32_option(opts, code::SOL_MAX_RT),
        has_auth: opts.get(OptionCode::Authentication).is_some(),
    })
}

/// The Client FQDN option payload (RFC 4704 section 4): flags with S set
/// (the server updates the AAAA record), then the name in DNS wire format.
/// A single label is sent as a partial name (no root label) so the server
/// appends its domain.
pub fn fqdn_option(hostname: &str) -> Vec<u8> {
    let mut out = vec![0x01];
    let name = hostname.trim_end_matches('.');
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let l = &label.as_bytes()[..label.len().min(63)];
        out.push(l.len() as u8);
        out.extend_from_slice(l);
    }
    if hostname.ends_with('.') {
        out.push(0);
    }
    out
}

/// What goes into a message the client sends.
#[derive(Clone, Debug, Default)]
pub struct Outgoing<'a> {
    pub duid: &'a [u8],
    pub server_id: Option<&'a [u8]>,
    /// The IA_NA to include: IAID and the addresses (with lifetimes, zero in
    /// a Solicit or Request hint).
    pub ia_na: Option<(u32, Vec<IaAddress>)>,
    /// Hundredths of a second since the exchange began (section 21.9).
    pub elapsed: Duration,
    pub rapid_commit: bool,
    pub oro: bool,
    pub hostname: Option<&'a str>,
}

/// Encodes a client message. Never fails for the values the client builds;
/// an encoding error (a field over its size) is returned, not a panic.
pub fn build(
    mt: MessageType,
    xid: u32,
    o: &Outgoing<'_>,
) -> Result<Vec<u8>, dhcproto::error::EncodeError> {
    let mut m = Message::new_with_id(mt, [0; 3]);
    m.set_xid_num(xid & 0x00ff_ffff);
    let opts = m.opts_mut();
    opts.insert(DhcpOption::ClientId(o.duid.to_vec()));
    if let Some(s) = o.server_id {
        opts.insert(DhcpOption::ServerId(s.to_vec()));
    }
    let centis = (o.elapsed.as_millis() / 10).min(u128::from(u16::MAX)) as u16;
    opts.insert(DhcpOption::ElapsedTime(centis));
    if let Some((iaid, addrs)) = &o.ia_na {
        let mut ia_opts = DhcpOptions::new();
        for a in addrs {
            ia_opts.insert(DhcpOption::IAAddr(IAAddr {
                addr: a.address,
                preferred_life: a.preferred,
                valid_life: a.valid,
                opts: DhcpOptions::new(),
            }));
        }
        opts.insert(DhcpOption::IANA(IANA {
            id: *iaid,
            t1: 0,
            t2: 0,
            opts: ia_opts,
        }));
    }
    if o.rapid_commit {
        opts.insert(DhcpOption::RapidCommit);
    }
    if o.oro {
        opts.insert(DhcpOption::ORO(ORO {
            opts: REQUESTED.iter().map(|c| OptionCode::from(*c)).collect(),
        }));
    }
    if let Some(h) = o.hostname {
        opts.insert(DhcpOption::Unknown(UnknownOption::new(
            OptionCode::from(code::CLIENT_FQDN),
            fqdn_option(h),
        )));
    }
    let mut buf = Vec::new();
    m.encode(&mut Encoder::new(&mut buf))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_stops_at_a_truncated_option() {
        let bytes = [0, 1, 0, 2, 9, 9, 0, 2, 0, 9, 1];
        let mut walk = OptionWalk::new(&bytes);
        let got: Vec<_> = walk.by_ref().collect();
        assert_eq!(got, vec![(1, &[9u8, 9][..])]);
        assert!(walk.truncated());
    }

    #[test]
    fn short_fixed_options_are_dropped_not_decoded() {
        // Status code of one byte, auth of three, preference of zero: each
        // would underflow or misread in a trusting decoder.
        let mut p = vec![7, 0, 0, 1];
        put(&mut p, code::STATUS_CODE, &[1]);
        put(&mut p, code::AUTH, &[1, 2, 3]);
        put(&mut p, code::PREFERENCE, &[]);
        put(&mut p, code::CLIENT_ID, &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6]);
        put(&mut p, code::SERVER_ID, &[0, 3, 0, 1, 6, 5, 4, 3, 2, 1]);
        let r = receive(&p, Some(1), &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6], 0).unwrap();
        assert_eq!(
            (r.status, r.preference, r.has_auth),
            (status::SUCCESS, 0, false)
        );
    }

    #[test]
    fn non_utf8_status_text_keeps_later_options() {
        let mut p = vec![7, 0, 0, 1];
        put(&mut p, code::STATUS_CODE, &[0, 2, 0xff, 0xfe]);
        put(&mut p, code::CLIENT_ID, &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6]);
        put(&mut p, code::SERVER_ID, &[1]);
        let r = receive(&p, Some(1), &[0, 3, 0, 1, 1, 2, 3, 4, 5, 6], 0).unwrap();
        assert_eq!(r.status, status::NO_ADDRS_AVAIL);
        assert_eq!(r.server_id, vec![1]);
    }

    #[test]
    fn fqdn_is_a_partial_name_with_the_s_flag() {
        assert_eq!(fqdn_option("web1"), b"\x01\x04web1".to_vec());
        assert_eq!(fqdn_option("a.b."), b"\x01\x01a\x01b\x00".to_vec());
    }
}
