//! Port specs: what `--publish` and the `netcontainer.ports` label say,
//! parsed once and printed back the same way (the router's label round-trips).

use std::fmt;
use std::str::FromStr;

use netcontainer_proto::Protocol;

/// `[LAN[-LAN]:]PORT[-PORT][/PROTO]`, protocol tcp when omitted: LAN ports
/// `start..=end` forwarded to the container's ports from `target` on (a
/// range to a range of the same length). Without `LAN:` the LAN port is the
/// container's (`80/tcp` is `80:80/tcp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSpec {
    pub protocol: Protocol,
    pub start: u16,
    pub end: u16,
    /// First container port.
    pub target: u16,
}

impl PortSpec {
    /// Last container port.
    pub fn target_end(&self) -> u16 {
        self.target + (self.end - self.start)
    }
}

fn port_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let start: u16 = a.parse().ok()?;
    let end: u16 = b.parse().ok()?;
    (start != 0 && end >= start).then_some((start, end))
}

impl FromStr for PortSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid port {s:?} (expected [LAN[-LAN]:]PORT[-PORT]/PROTO, e.g. 80/tcp, 80:8080/tcp or 7000-7009/udp)"
            )
        };
        let (ports, proto) = match s.trim().split_once('/') {
            Some((p, proto)) => (p, proto.parse::<Protocol>()?),
            None => (s.trim(), Protocol::Tcp),
        };
        let (lan, container) = match ports.split_once(':') {
            Some((l, c)) => (
                port_range(l).ok_or_else(bad)?,
                port_range(c).ok_or_else(bad)?,
            ),
            None => {
                let r = port_range(ports).ok_or_else(bad)?;
                (r, r)
            }
        };
        if lan.1 - lan.0 != container.1 - container.0 {
            return Err(format!(
                "invalid port {s:?}: the LAN range and the container range differ in length"
            ));
        }
        Ok(PortSpec {
            protocol: proto,
            start: lan.0,
            end: lan.1,
            target: container.0,
        })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = |a: u16, b: u16| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        };
        let lan = range(self.start, self.end);
        if self.target == self.start {
            write!(f, "{lan}/{}", self.protocol)
        } else {
            let c = range(self.target, self.target_end());
            write!(f, "{lan}:{c}/{}", self.protocol)
        }
    }
}

/// Parses a comma- or space-separated port list (the `netcontainer.ports` label).
pub fn parse_port_list(s: &str) -> Result<Vec<PortSpec>, String> {
    s.split([',', ' '])
        .filter(|p| !p.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// Refuses two specs whose LAN ports overlap on one protocol, naming both.
pub fn check_overlaps(ports: &[PortSpec]) -> Result<(), String> {
    let mut sorted = ports.to_vec();
    sorted.sort();
    for w in sorted.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a.protocol == b.protocol && b.start <= a.end {
            return Err(format!("ports {a} and {b} overlap on the LAN side"));
        }
    }
    Ok(())
}

pub fn ports_text(ports: &[PortSpec]) -> String {
    ports
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        assert_eq!("80".parse::<PortSpec>().unwrap().to_string(), "80/tcp");
        assert_eq!(
            "7000-7009/udp".parse::<PortSpec>().unwrap().to_string(),
            "7000-7009/udp"
        );
        for bad in ["0/tcp", "9-8/tcp", "x/tcp", "80/sctp", ""] {
            assert!(bad.parse::<PortSpec>().is_err(), "{bad}");
        }
    }
    #[test]
    fn remapped_port_specs_parse_print_and_round_trip() {
        let p: PortSpec = "80:8080/tcp".parse().unwrap();
        assert_eq!((p.start, p.end, p.target), (80, 80, 8080));
        assert_eq!(p.to_string(), "80:8080/tcp");
        let r: PortSpec = "7000-7009:8000-8009/udp".parse().unwrap();
        assert_eq!(
            (r.start, r.end, r.target, r.target_end()),
            (7000, 7009, 8000, 8009)
        );
        assert_eq!(r.to_string(), "7000-7009:8000-8009/udp");
        // Plain keeps meaning LAN port = container port, printed as before.
        let plain: PortSpec = "80/tcp".parse().unwrap();
        assert_eq!(plain.target, 80);
        assert_eq!(plain, "80:80/tcp".parse().unwrap());
        assert_eq!("80:80".parse::<PortSpec>().unwrap().to_string(), "80/tcp");
        // The label round-trips (router::options_of parses it back).
        let list = parse_port_list("80:8080/tcp 7000-7009:8000-8009/udp 443/tcp").unwrap();
        assert_eq!(parse_port_list(&ports_text(&list)).unwrap(), list);
        for bad in [
            "80:/tcp",
            ":80/tcp",
            "80:0/tcp",
            "80:8080:9090/tcp",
            "80-81:8080/tcp",
            "7000-7009:8000-8001/udp",
            "80:65536/tcp",
            "80-90:65530-65540/tcp",
        ] {
            let e = bad.parse::<PortSpec>().unwrap_err();
            assert!(e.contains(bad), "{bad}: the error names the spec: {e}");
        }
    }
}
