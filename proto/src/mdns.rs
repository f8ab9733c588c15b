//! What a router publishes by multicast DNS (RFC 6762) and DNS-SD (RFC 6763)
//! on the LAN: the plan's part (`Plan::mdns`), one parser for the flags and
//! labels that shape it (`netcontainer.dnssd`, `netcontainer.dnssd-txt`), and
//! the service types the well-known ports get without asking.

use serde::{Deserialize, Serialize};

use crate::{Forward, Protocol};

/// Most DNS-SD services one router publishes: every one is probed and
/// announced in the same packets, which must stay small (RFC 6762 section 17).
pub const MAX_DNSSD: usize = 16;
/// Most TXT bytes per service (RFC 6763 section 6.2 recommends under 200,
/// and requires under 1300 for everything to fit one packet).
pub const MAX_TXT_BYTES: usize = 400;

/// mDNS on the LAN leg: the router answers for `<hostname>.local` (the
/// plan's hostname's first label) and browses as `services`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Mdns {
    pub services: Vec<DnsSd>,
}

/// One DNS-SD service: `<instance>.<service_type>.local`, an SRV to the
/// router's `.local` name and `port` (the LAN-side port), and a TXT.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DnsSd {
    /// `_http._tcp`.
    pub service_type: String,
    pub port: u16,
    /// `key=value` entries.
    pub txt: Vec<String>,
}

impl Mdns {
    pub fn validate(&self) -> Result<(), String> {
        if self.services.len() > MAX_DNSSD {
            return Err(format!("at most {MAX_DNSSD} DNS-SD services per router"));
        }
        for (i, s) in self.services.iter().enumerate() {
            check_service_type(&s.service_type)?;
            check_txt(&s.txt)?;
            if self.services[..i]
                .iter()
                .any(|o| o.service_type == s.service_type && o.port == s.port)
            {
                return Err(format!(
                    "DNS-SD service {}:{} given twice",
                    s.service_type, s.port
                ));
            }
        }
        Ok(())
    }
}

/// `_name._tcp` or `_name._udp`, the name 1 to 15 of `a-z`, `0-9`, `-`
/// (RFC 6335 section 5.1), not starting or ending with `-`.
pub fn check_service_type(t: &str) -> Result<(), String> {
    let bad = || {
        format!("{t:?} is not a DNS-SD service type (like _http._tcp: _NAME._tcp or _NAME._udp)")
    };
    let (name, proto) = t.rsplit_once('.').ok_or_else(bad)?;
    let name = name.strip_prefix('_').ok_or_else(bad)?;
    let name_ok = (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.bytes().any(|b| b.is_ascii_lowercase());
    if !name_ok || !matches!(proto, "_tcp" | "_udp") {
        return Err(bad());
    }
    Ok(())
}

/// TXT entries: `key=value` (or a bare `key`), the key 1 to 9 printable
/// ASCII characters without `=` (RFC 6763 section 6.4 recommends at most
/// 9), each entry at most 255 bytes, printable ASCII only (what a label can
/// carry safely into a log line), [`MAX_TXT_BYTES`] in all.
pub fn check_txt(txt: &[String]) -> Result<(), String> {
    let mut total = 0;
    for e in txt {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        if key.is_empty() || key.len() > 9 {
            return Err(format!(
                "TXT entry {e:?}: the key must be 1 to 9 characters"
            ));
        }
        if e.len() > 255 || !e.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(format!(
                "TXT entry {e:?}: at most 255 printable ASCII characters"
            ));
        }
        total += e.len() + 1;
    }
    if total > MAX_TXT_BYTES {
        return Err(format!(
            "TXT entries of {total} bytes: at most {MAX_TXT_BYTES}"
        ));
    }
    Ok(())
}

/// Parses `_TYPE._PROTO:PORT,...` (the label `netcontainer.dnssd`, the flag
/// `--dnssd`).
pub fn parse_dnssd(s: &str) -> Result<Vec<(String, u16)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let (t, port) = part
            .rsplit_once(':')
            .ok_or_else(|| format!("{part:?}: expected _TYPE._tcp:PORT"))?;
        check_service_type(t)?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{part:?}: {port:?} is not a port"))?;
        out.push((t.to_string(), port));
    }
    Ok(out)
}

/// Parses `key=value,...` (the label `netcontainer.dnssd-txt`).
pub fn parse_txt(s: &str) -> Result<Vec<String>, String> {
    let txt: Vec<String> = s.split(',').map(|e| e.trim().to_string()).collect();
    check_txt(&txt)?;
    Ok(txt)
}

/// The DNS-SD type a published port gets without a label: the few whose
/// meaning is near certain on a service's standard port.
pub fn well_known(protocol: Protocol, port: u16) -> Option<&'static str> {
    match (protocol, port) {
        (Protocol::Tcp, 80 | 8080) => Some("_http._tcp"),
        (Protocol::Tcp, 443) => Some("_https._tcp"),
        (Protocol::Tcp, 22) => Some("_ssh._tcp"),
        _ => None,
    }
}

/// The services a router publishes: one per forwarded single port of a
/// well-known type, then each `extra` (whose port must be forwarded: an
/// SRV record to a port nobody answers on is a lie), all with `txt`.
pub fn services(
    forwards: &[Forward],
    extra: &[(String, u16)],
    txt: &[String],
) -> Result<Vec<DnsSd>, String> {
    let mut out: Vec<DnsSd> = Vec::new();
    let mut push = |service_type: &str, port: u16| {
        if !out
            .iter()
            .any(|s| s.service_type == service_type && s.port == port)
        {
            out.push(DnsSd {
                service_type: service_type.to_string(),
                port,
                txt: txt.to_vec(),
            });
        }
    };
    for f in forwards {
        if f.public_port == f.public_port_end
            && let Some(t) = well_known(f.protocol, f.public_port)
        {
            push(t, f.public_port);
        }
    }
    for (t, port) in extra {
        let protocol = if t.ends_with("._udp") {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        let published = forwards
            .iter()
            .any(|f| f.protocol == protocol && (f.public_port..=f.public_port_end).contains(port));
        if !published {
            return Err(format!(
                "DNS-SD {t}:{port}: port {port}/{protocol} is not published by the router"
            ));
        }
        push(t, *port);
    }
    let m = Mdns { services: out };
    m.validate()?;
    Ok(m.services)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn fwd(protocol: Protocol, public: u16, target: u16) -> Forward {
        Forward {
            protocol,
            public_port: public,
            public_port_end: public,
            target_address: Ipv4Addr::new(172, 17, 0, 2),
            target_port: target,
        }
    }

    #[test]
    fn well_known_ports_get_their_types_by_the_lan_side_port() {
        // --publish 8080:80: the LAN sees 8080, and that is what SRV says.
        let f = [
            fwd(Protocol::Tcp, 8080, 80),
            fwd(Protocol::Tcp, 443, 443),
            fwd(Protocol::Tcp, 22, 22),
            fwd(Protocol::Udp, 80, 80),
            fwd(Protocol::Tcp, 5432, 5432),
        ];
        let s = services(&f, &[], &["path=/".into()]).unwrap();
        let got: Vec<(&str, u16)> = s
            .iter()
            .map(|s| (s.service_type.as_str(), s.port))
            .collect();
        assert_eq!(
            got,
            [
                ("_http._tcp", 8080),
                ("_https._tcp", 443),
                ("_ssh._tcp", 22)
            ]
        );
        assert!(s.iter().all(|s| s.txt == ["path=/"]));
    }

    #[test]
    fn a_label_names_other_types_only_for_published_ports() {
        let f = [
            fwd(Protocol::Tcp, 1883, 1883),
            fwd(Protocol::Udp, 5683, 5683),
        ];
        let extra = parse_dnssd("_mqtt._tcp:1883, _coap._udp:5683").unwrap();
        let s = services(&f, &extra, &[]).unwrap();
        assert_eq!(s.len(), 2);
        let e = services(&f, &parse_dnssd("_mqtt._tcp:1884").unwrap(), &[]).unwrap_err();
        assert!(e.contains("1884/tcp is not published"), "{e}");
        // The protocol is the type's: 5683/tcp is not published.
        assert!(services(&f, &parse_dnssd("_coap._tcp:5683").unwrap(), &[]).is_err());
    }

    #[test]
    fn bad_types_ports_and_txt_are_refused() {
        for bad in [
            "http._tcp:80",
            "_http._sctp:80",
            "_HTTP._tcp:80",
            "_._tcp:80",
            "_a-very-long-name-x._tcp:80",
            "_http._tcp",
            "_http._tcp:0",
            "_http._tcp:70000",
            "_http._tcp:80,",
            "_-x._tcp:80",
            "_123._tcp:80",
        ] {
            assert!(parse_dnssd(bad).is_err(), "{bad} accepted");
        }
        for bad in ["=x", "averylongkey=1", "k=a\u{7f}b", "k=a\nb"] {
            assert!(parse_txt(bad).is_err(), "{bad:?} accepted");
        }
        let long = vec!["k=xxxxxxxx"; 50].join(",");
        assert!(parse_txt(&long).unwrap_err().contains("at most 400"));
        assert_eq!(parse_txt("path=/a, v=1").unwrap(), ["path=/a", "v=1"]);
    }
}
