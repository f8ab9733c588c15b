//! What the responder publishes: one host name and its DNS-SD services, checked
//! once ([`Config::validate`]) so that every name and record built from them is
//! valid on the wire, and the renaming rules applied after a lost conflict.

use thiserror::Error;

/// The longest DNS label (RFC 1035 2.3.4); the host label and an instance name
/// are each one label.
pub const MAX_LABEL: usize = 63;

/// The most TXT data per service: RFC 6763 6.2 asks for at most 1300 bytes, so
/// that a TXT record, with its SRV and addresses, fits a single packet.
pub const MAX_TXT_TOTAL: usize = 1300;

/// What the responder publishes on one link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The wanted host label, e.g. `web1` (published as `web1.local`); compared
    /// and published lower-case.
    pub hostname: String,
    pub services: Vec<Service>,
}

/// One DNS-SD service instance (RFC 6763 4.1): `<instance>.<service_type>.local`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// The user-visible instance name, any UTF-8 up to 63 bytes (RFC 6763 4.1.1).
    pub instance: String,
    /// `_<service>._tcp` or `_<service>._udp` (RFC 6763 7, RFC 6335 5.1).
    pub service_type: String,
    pub port: u16,
    /// `key=value` (or a bare boolean `key`) entries (RFC 6763 6.3, 6.4).
    pub txt: Vec<String>,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    #[error(
        "host name {0:?} is not a DNS label (1 to 63 of a-z, 0-9 and '-', not starting or ending with '-')"
    )]
    Hostname(String),
    #[error(
        "service type {0:?} is not _NAME._tcp or _NAME._udp (NAME: 1 to 15 of a-z, 0-9 and '-', not starting or ending with '-')"
    )]
    ServiceType(String),
    #[error("instance name {0:?} must be 1 to 63 bytes of UTF-8 without control characters")]
    Instance(String),
    #[error("TXT entry {entry:?} of {instance:?}: {why}")]
    Txt {
        instance: String,
        entry: String,
        why: &'static str,
    },
    #[error("TXT data of {0:?} is over {MAX_TXT_TOTAL} bytes (RFC 6763 6.2)")]
    TxtTooLong(String),
    #[error("service {instance:?} of type {service_type:?} is given twice")]
    Duplicate {
        instance: String,
        service_type: String,
    },
}

fn is_ldh(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl Config {
    /// Checks every name and TXT entry (see the field docs). Upper-case host
    /// names and service types are accepted: the responder lower-cases them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let host = self.hostname.to_ascii_lowercase();
        if host.is_empty() || host.len() > MAX_LABEL || !is_ldh(&host) {
            return Err(ConfigError::Hostname(self.hostname.clone()));
        }
        for (i, s) in self.services.iter().enumerate() {
            s.validate()?;
            let dup = self.services[..i].iter().any(|o| {
                o.instance == s.instance && o.service_type.eq_ignore_ascii_case(&s.service_type)
            });
            if dup {
                return Err(ConfigError::Duplicate {
                    instance: s.instance.clone(),
                    service_type: s.service_type.clone(),
                });
            }
        }
        Ok(())
    }

    /// The form the responder works with: host label and service types lower-case.
    pub(crate) fn normalized(mut self) -> Config {
        self.hostname.make_ascii_lowercase();
        for s in &mut self.services {
            s.service_type.make_ascii_lowercase();
        }
        self
    }
}

impl Service {
    fn validate(&self) -> Result<(), ConfigError> {
        let t = self.service_type.to_ascii_lowercase();
        let name = t
            .strip_suffix("._tcp")
            .or_else(|| t.strip_suffix("._udp"))
            .and_then(|n| n.strip_prefix('_'));
        match name {
            Some(n) if (1..=15).contains(&n.len()) && is_ldh(n) => {}
            _ => return Err(ConfigError::ServiceType(self.service_type.clone())),
        }
        let i = &self.instance;
        if i.is_empty() || i.len() > MAX_LABEL || i.chars().any(char::is_control) {
            return Err(ConfigError::Instance(i.clone()));
        }
        let txt_err = |entry: &String, why| ConfigError::Txt {
            instance: i.clone(),
            entry: entry.clone(),
            why,
        };
        let mut total = 0;
        for e in &self.txt {
            if e.len() > 255 {
                return Err(txt_err(e, "longer than 255 bytes (RFC 6763 6.1)"));
            }
            let key = e.split('=').next().unwrap_or_default();
            if key.is_empty() {
                return Err(txt_err(e, "no key (RFC 6763 6.4)"));
            }
            if !key.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
                return Err(txt_err(e, "key not printable ASCII (RFC 6763 6.4)"));
            }
            total += 1 + e.len();
        }
        if total > MAX_TXT_TOTAL {
            return Err(ConfigError::TxtTooLong(i.clone()));
        }
        Ok(())
    }
}

/// The host label after `n` conflicts lost (RFC 6762 9 leaves the new name to
/// the host; this is avahi's style): `web1`, `web1-2`, `web1-3`, ... The base is
/// shortened so that the result stays one label.
pub(crate) fn host_label(base: &str, n: u32) -> String {
    if n <= 1 {
        return base.to_string();
    }
    let suffix = format!("-{n}");
    let keep = base.len().min(MAX_LABEL - suffix.len());
    // The base is ASCII (validated), so any byte index is a char boundary; a
    // trailing '-' left by the cut would make `web--2`, harmless but ugly.
    format!("{}{suffix}", base[..keep].trim_end_matches('-'))
}

/// The instance name after `n` conflicts lost (RFC 6763 appendix D's style):
/// `web1`, `web1 (2)`, ... shortened on a character boundary to stay one label.
pub(crate) fn instance_name(base: &str, n: u32) -> String {
    if n <= 1 {
        return base.to_string();
    }
    let suffix = format!(" ({n})");
    let mut keep = base.len().min(MAX_LABEL - suffix.len());
    while !base.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", &base[..keep])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(instance: &str, t: &str, txt: &[&str]) -> Service {
        Service {
            instance: instance.into(),
            service_type: t.into(),
            port: 80,
            txt: txt.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn cfg(host: &str, services: Vec<Service>) -> Config {
        Config {
            hostname: host.into(),
            services,
        }
    }

    #[test]
    fn host_names() {
        for ok in ["web1", "a", "Web1", &"a".repeat(63), "a-b"] {
            assert_eq!(cfg(ok, vec![]).validate(), Ok(()), "{ok}");
        }
        for bad in ["", "-a", "a-", "a.b", "a_b", "ä", &"a".repeat(64), "a b"] {
            assert!(
                matches!(cfg(bad, vec![]).validate(), Err(ConfigError::Hostname(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn service_types() {
        for ok in [
            "_http._tcp",
            "_ipp._udp",
            "_HTTP._TCP",
            "_a234567890abcde._tcp",
        ] {
            assert_eq!(cfg("h", vec![svc("x", ok, &[])]).validate(), Ok(()), "{ok}");
        }
        for bad in [
            "http._tcp",
            "_http",
            "_._tcp",
            "_a234567890abcdef._tcp",
            "_-a._tcp",
            "_a_b._tcp",
            "_http._sctp",
            "_http._tcp.local",
        ] {
            assert!(
                matches!(
                    cfg("h", vec![svc("x", bad, &[])]).validate(),
                    Err(ConfigError::ServiceType(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn instances_and_txt() {
        let ok = cfg(
            "h",
            vec![svc("My Web (eu) ü.x", "_http._tcp", &["path=/", "b"])],
        );
        assert_eq!(ok.validate(), Ok(()));
        for bad in ["", "a\u{7}b", &"é".repeat(32)] {
            assert!(matches!(
                cfg("h", vec![svc(bad, "_http._tcp", &[])]).validate(),
                Err(ConfigError::Instance(_))
            ));
        }
        let long = "k=".to_string() + &"v".repeat(254);
        for bad in ["=v", long.as_str(), "ké=v"] {
            assert!(matches!(
                cfg("h", vec![svc("x", "_http._tcp", &[bad])]).validate(),
                Err(ConfigError::Txt { .. })
            ));
        }
        let many: Vec<String> = (0..6)
            .map(|i| format!("k{i}={}", "v".repeat(250)))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(matches!(
            cfg("h", vec![svc("x", "_http._tcp", &many)]).validate(),
            Err(ConfigError::TxtTooLong(_))
        ));
        let dup = cfg(
            "h",
            vec![svc("x", "_http._tcp", &[]), svc("x", "_HTTP._tcp", &[])],
        );
        assert!(matches!(dup.validate(), Err(ConfigError::Duplicate { .. })));
    }

    #[test]
    fn renames_stay_one_label() {
        assert_eq!(host_label("web1", 1), "web1");
        assert_eq!(host_label("web1", 2), "web1-2");
        assert_eq!(host_label("web1", 10), "web1-10");
        let long = "a".repeat(63);
        assert_eq!(host_label(&long, 2).len(), 63);
        assert!(host_label(&("a".repeat(61) + "-b"), 2).ends_with("a-2"));
        assert_eq!(instance_name("web1", 2), "web1 (2)");
        let wide = "é".repeat(31); // 62 bytes
        let n = instance_name(&wide, 3);
        assert!(n.len() <= 63 && n.ends_with(" (3)"), "{n}");
    }
}
