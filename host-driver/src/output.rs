//! Human and JSON rendering of agent status.

use std::borrow::Cow;
use std::fmt::Write;

use netcontainer_proto::Status;

pub fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("status serializes to JSON")
}

/// `s` with control characters escaped (`\u{1b}`), for a terminal: label
/// values and what an agent reports (which may come from the LAN) must not
/// move the cursor, recolour the screen or forge lines.
pub fn safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

fn secs(s: Option<u64>) -> String {
    s.map(|s| format!("{s}s")).unwrap_or_else(|| "never".into())
}

/// A short multi-line description of one agent.
pub fn status_text(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "state:      {}", s.state);
    if let Some(i) = &s.interface {
        let _ = writeln!(out, "interface:  {}", safe(i));
    }
    if let Some(h) = &s.hostname {
        let _ = writeln!(out, "hostname:   {}", safe(h));
    }
    if let Some(n) = &s.mdns {
        let _ = writeln!(out, "mdns name:  {}", safe(n));
    }
    match &s.lease {
        Some(l) => {
            let _ = writeln!(out, "address:    {}/{}", l.address, l.prefix_len);
            if let Some(gw) = l.gateway {
                let _ = writeln!(out, "gateway:    {gw}");
            }
            let _ = writeln!(out, "server:     {}", l.server_id);
            let _ = writeln!(
                out,
                "lease:      renew in {}, rebind in {}, expires in {}",
                secs(l.renew_in_secs),
                secs(l.rebind_in_secs),
                secs(l.expires_in_secs)
            );
        }
        None => {
            let _ = writeln!(out, "address:    (none)");
        }
    }
    for a in &s.ipv6 {
        let origin = match a.origin {
            netcontainer_proto::Ipv6Origin::Slaac => "slaac",
            netcontainer_proto::Ipv6Origin::Dhcpv6 => "dhcpv6",
        };
        let life = |s: Option<u64>| s.map_or_else(|| "forever".into(), |s| format!("{s}s"));
        let _ = writeln!(
            out,
            "address6:   {}/{} ({origin}, preferred {}, valid {})",
            a.address,
            a.prefix_len,
            life(a.preferred_in_secs),
            life(a.valid_in_secs)
        );
    }
    if !s.ipv6.is_empty() {
        let _ = writeln!(out, "ipv6 path:  {}", s.ipv6_path);
    }
    for f in &s.forwards {
        let ports = if f.public_port_end != f.public_port {
            format!("{}-{}", f.public_port, f.public_port_end)
        } else {
            f.public_port.to_string()
        };
        let _ = writeln!(
            out,
            "forward:    {}/{} -> {}:{}  {} packets, {} bytes",
            ports, f.protocol, f.target_address, f.target_port, f.packets, f.bytes
        );
    }
    if let Some(e) = &s.last_error {
        let _ = writeln!(out, "last error: {}", safe(e));
    }
    out
}

/// A router's standing problems, one line each (after [`status_text`]):
/// `last error` is the latest of them, these are all of them by subsystem.
pub fn problems_text(problems: &[netcontainer_proto::Problem]) -> String {
    let mut out = String::new();
    for p in problems {
        let _ = writeln!(out, "problem:    {}: {}", p.subsystem, safe(&p.message));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_are_listed() {
        let st = Status {
            state: State::Bound,
            interface: Some("lan0".into()),
            hostname: None,
            lease: None,
            forwards: Vec::new(),
            last_error: None,
            agent_version: String::new(),
            ipv6: vec![netcontainer_proto::Ipv6AddressStatus {
                address: "2001:db8:1::100".parse().unwrap(),
                prefix_len: 64,
                origin: netcontainer_proto::Ipv6Origin::Dhcpv6,
                preferred_in_secs: Some(299),
                valid_in_secs: None,
            }],
            source: Default::default(),
            ipv6_path: netcontainer_proto::Ipv6Path::Kernel,
            mdns: None,
        };
        assert!(
            status_text(&st)
                .contains("address6:   2001:db8:1::100/64 (dhcpv6, preferred 299s, valid forever)\nipv6 path:  kernel\n"),
            "{}",
            status_text(&st)
        );
    }
    use netcontainer_proto::State;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(safe("web1"), "web1");
        assert_eq!(safe("a\u{1b}[2Jb\nc"), "a\\u{1b}[2Jb\\u{a}c");
        let st = Status {
            state: State::Bound,
            interface: Some("lan0\r\u{1b}[31m".into()),
            hostname: Some("evil\nforged: line".into()),
            lease: None,
            forwards: Vec::new(),
            last_error: Some("server said \u{7}\u{1b}]0;title\u{7}".into()),
            agent_version: String::new(),
            source: Default::default(),
            ipv6: Vec::new(),
            ipv6_path: Default::default(),
            mdns: None,
        };
        let text = status_text(&st);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert_eq!(text.lines().count(), 5, "no forged lines: {text}");
        let problems = problems_text(&[
            netcontainer_proto::Problem {
                subsystem: netcontainer_proto::Subsystem::Firewall,
                message: "nft said\nforged: line".into(),
            },
            netcontainer_proto::Problem {
                subsystem: netcontainer_proto::Subsystem::Dhcp,
                message: "lease lost".into(),
            },
        ]);
        assert_eq!(
            problems,
            "problem:    firewall: nft said\\u{a}forged: line\nproblem:    dhcp: lease lost\n"
        );
    }
}
