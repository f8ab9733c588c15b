//! The status page `watch --metrics ADDR` serves at `/`: one table of every
//! router as of the last poll (service, state, IPv4 and IPv6 addresses,
//! ports, lease left, last change), for an operator at a glance.
//!
//! Plain HTML and inline CSS: no JavaScript at all (the page reloads itself
//! with `<meta http-equiv=refresh>`), so the server can send a
//! Content-Security-Policy that forbids every script ([`CSP`]). Every string
//! that comes from Docker or the LAN (service names, hostnames, the agent's
//! errors) goes through [`esc`]; the page is a pure function of the figures
//! and the time, [`render_page`].

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use netcontainer_proto::{Ipv6Origin, State};

use crate::watch::monitor::{Observed, StatsInner};

/// The content type of the page.
pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";
/// No script, no frame, no fetch, no image: only the page's own inline style.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'";
/// How often the page reloads itself, in seconds (the poll's default period).
const REFRESH_SECS: u32 = 5;

const STYLE: &str = "\
body{font-family:'DejaVu Sans',Verdana,sans-serif;margin:1.5em;color:#1c1c1c;background:#fafafa}\
h1{font-size:1.5em;margin:0 0 .2em}\
p.sub{color:#555;margin:0 0 1em}\
table{border-collapse:collapse;background:#fff;font-size:14px}\
th,td{padding:.4em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:baseline;white-space:nowrap}\
td.notes{white-space:normal;max-width:24em}\
th{background:#eee;font-weight:600}\
td.svc{font-weight:600;font-size:1.1em}\
.small{font-size:.8em;color:#666;font-weight:normal}\
.addr{font-family:'DejaVu Sans Mono',monospace;font-size:.92em}\
.ok{color:#17692b}.warn{color:#8a5a00}.bad{color:#a4161a}\
p.none{font-style:italic}";

/// `s` safe inside HTML text and inside a quoted attribute: the five
/// characters HTML gives a meaning, and control characters shown as
/// escapes (as `output::safe` does for a terminal).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in crate::output::safe(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A span of time the way a person reads it: `12s`, `4m 12s`, `2h 5m`, `3d 4h`.
pub fn span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// `t` in UTC as (`2026-12-07 07:40:12 UTC`, `2026-12-07T07:40:12Z`), by
/// `humantime` (a date is not worth code of our own).
fn utc(t: SystemTime) -> (String, String) {
    let t = t.max(UNIX_EPOCH);
    let machine = humantime::format_rfc3339_seconds(t).to_string();
    let person = format!(
        "{} UTC",
        machine.trim_end_matches('Z').replacen('T', " ", 1)
    );
    (person, machine)
}

/// Seconds from `earlier` to `later`, 0 when the clock went back.
fn since(later: SystemTime, earlier: SystemTime) -> u64 {
    later
        .duration_since(earlier)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// The state cell: its text and class.
fn state(o: &Observed) -> (String, &'static str) {
    let Some(st) = &o.status else {
        return ("agent not answering".into(), "bad");
    };
    let class = match st.state {
        State::Bound => "ok",
        State::Renewing | State::Rebinding => "warn",
        _ => "bad",
    };
    (esc(st.state.as_str()), class)
}

/// The lease left as of `now`: the agent's seconds at the poll, less the
/// time since the poll.
fn lease_left(o: &Observed, age: u64) -> (String, &'static str) {
    let Some(lease) = o.status.as_ref().and_then(|s| s.lease.as_ref()) else {
        return ("no lease".into(), "bad");
    };
    match lease.expires_in_secs {
        None => ("infinite".into(), "ok"),
        Some(left) if left <= age => ("expired".into(), "bad"),
        Some(left) => {
            let left = left - age;
            // A healthy lease is renewed at half its time: under a quarter
            // of it left means the server has not answered for a while.
            let low = lease.lease_secs.is_some_and(|l| left < u64::from(l) / 4);
            (span(left), if low { "warn" } else { "ok" })
        }
    }
}

fn row(out: &mut String, name: &str, o: &Observed, s: &StatsInner, now: SystemTime) {
    let st = o.status.as_ref();
    let age = s.polled_at.map_or(0, |p| since(now, p));
    let (state, state_class) = state(o);
    let _ = write!(out, "<tr><td class=\"svc\">{}", esc(name));
    if let Some(h) = st
        .and_then(|s| s.hostname.as_deref())
        .filter(|h| *h != name)
    {
        let _ = write!(out, "<div class=\"small\">host {}</div>", esc(h));
    }
    let _ = write!(out, "</td><td class=\"{state_class}\">{state}</td>");
    match st.and_then(|s| s.lease.as_ref()) {
        Some(l) => {
            let _ = write!(
                out,
                "<td class=\"addr\">{}/{}</td>",
                esc(&l.address.to_string()),
                l.prefix_len
            );
        }
        None => out.push_str("<td>-</td>"),
    }
    let v6 = st.map(|s| s.ipv6.as_slice()).unwrap_or_default();
    if v6.is_empty() {
        out.push_str("<td>-</td>");
    } else {
        out.push_str("<td class=\"addr\">");
        for (i, a) in v6.iter().enumerate() {
            let origin = match a.origin {
                Ipv6Origin::Slaac => "SLAAC",
                Ipv6Origin::Dhcpv6 => "DHCPv6",
            };
            let _ = write!(
                out,
                "{}{}/{} <span class=\"small\">{origin}</span>",
                if i > 0 { "<br>" } else { "" },
                esc(&a.address.to_string()),
                a.prefix_len
            );
        }
        out.push_str("</td>");
    }
    let ports = st
        .map(|s| crate::commands::ls::ports_column(&s.forwards))
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "-".into());
    let _ = write!(out, "<td>{}</td>", esc(&ports));
    let (left, left_class) = lease_left(o, age);
    let _ = write!(out, "<td class=\"{left_class}\">{left}</td>");
    match s.last_change.get(name) {
        Some(t) => {
            let (text, iso) = utc(*t);
            let _ = write!(
                out,
                "<td><time datetime=\"{iso}\" title=\"{text}\">{} ago</time></td>",
                span(since(now, *t))
            );
        }
        None => out.push_str("<td>-</td>"),
    }
    let mut notes = Vec::new();
    if let Some(e) = st.and_then(|s| s.last_error.as_deref()) {
        notes.push(esc(e));
    }
    if s.host_route_refused.contains(name) {
        notes.push("the host refused a route to the lease (see status)".into());
    }
    if let Some(n) = s.heals.get(name).filter(|n| **n > 0) {
        notes.push(format!("healed {n}&times;"));
    }
    let _ = writeln!(
        out,
        "<td class=\"small notes\">{}</td></tr>",
        notes.join("<br>")
    );
}

/// The whole page for the figures `s` at `now`.
pub fn render_page(s: &StatsInner, now: SystemTime) -> String {
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>netcontainer watch</title><style>{STYLE}</style></head>\n<body>\
         <h1>netcontainer watch</h1>\n"
    );
    let n = s.routers.len();
    let poll = match s.polled_at {
        Some(p) => format!("last poll {} ago", span(since(now, p))),
        None => "no poll yet".into(),
    };
    let _ = writeln!(
        out,
        "<p class=\"sub\">{n} service{} &middot; {poll} &middot; {} &middot; \
         reloads every {REFRESH_SECS} s &middot; Prometheus metrics at /metrics</p>",
        if n == 1 { "" } else { "s" },
        utc(now).0
    );
    if s.routers.is_empty() {
        out.push_str("<p class=\"none\">No network containers on this host yet.</p>\n");
    } else {
        out.push_str(
            "<table><thead><tr><th>service</th><th>state</th><th>IPv4</th><th>IPv6</th>\
             <th>ports</th><th>lease left</th><th>last change</th><th>notes</th></tr></thead>\n<tbody>\n",
        );
        for (name, o) in &s.routers {
            row(&mut out, name, o, s, now);
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use netcontainer_proto::{ForwardStatus, Ipv6AddressStatus, LeaseStatus, Protocol, Status};
    use std::net::Ipv4Addr;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn status(name: &str) -> Status {
        Status {
            state: State::Bound,
            interface: Some("lan0".into()),
            hostname: Some(name.into()),
            lease: Some(LeaseStatus {
                address: Ipv4Addr::new(203, 0, 113, 57),
                prefix_len: 24,
                gateway: None,
                server_id: Ipv4Addr::new(203, 0, 113, 1),
                lease_secs: Some(600),
                renew_in_secs: Some(290),
                rebind_in_secs: Some(515),
                expires_in_secs: Some(262),
                dns: vec![],
            }),
            forwards: vec![ForwardStatus {
                protocol: Protocol::Tcp,
                public_port: 80,
                public_port_end: 80,
                target_address: Ipv4Addr::new(198, 51, 100, 2),
                target_port: 8080,
                packets: 0,
                bytes: 0,
            }],
            last_error: None,
            agent_version: "0.1.0".into(),
            source: Default::default(),
            ipv6: vec![Ipv6AddressStatus {
                address: "2001:db8:1::5054:ff:fe12:3456".parse().unwrap(),
                prefix_len: 64,
                origin: Ipv6Origin::Slaac,
                preferred_in_secs: Some(100),
                valid_in_secs: Some(200),
            }],
            ipv6_path: Default::default(),
            mdns: None,
        }
    }

    fn observed(st: Option<Status>) -> Observed {
        Observed {
            status: st,
            counters: None,
        }
    }

    /// Polled at t=1000, shown at t=1010: the lease's 262 s are 252 s now.
    fn stats() -> StatsInner {
        let mut s = StatsInner::default();
        s.routers
            .insert("web1".into(), observed(Some(status("web1"))));
        let mut db = status("db");
        db.state = State::Selecting;
        db.lease = None;
        db.forwards.clear();
        db.ipv6.clear();
        s.routers.insert("db".into(), observed(Some(db)));
        s.routers.insert("cache".into(), observed(None));
        s.polled_at = Some(at(1000));
        s.last_change.insert("web1".into(), at(1010 - 252));
        s.last_change.insert("db".into(), at(1000));
        s.heals.insert("db".into(), 2);
        s
    }

    /// The row of `service` (from its `<tr>` to its `</tr>`).
    fn row_of<'a>(page: &'a str, service: &str) -> &'a str {
        let start = page
            .find(&format!("<tr><td class=\"svc\">{service}"))
            .unwrap_or_else(|| panic!("no row for {service}:\n{page}"));
        let len = page[start..].find("</tr>").unwrap();
        &page[start..start + len]
    }

    #[test]
    fn every_service_has_its_row() {
        let page = render_page(&stats(), at(1010));
        assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
        assert!(
            page.contains("3 services &middot; last poll 10s ago"),
            "{page}"
        );
        assert!(page.contains("1970-01-01 00:16:50 UTC"), "{page}");
        let web1 = row_of(&page, "web1");
        for want in [
            "<td class=\"ok\">bound</td>",
            "203.0.113.57/24",
            "2001:db8:1:0:5054:ff:fe12:3456/64 <span class=\"small\">SLAAC</span>",
            "<td>80-&gt;8080/tcp</td>",
            "<td class=\"ok\">4m 12s</td>",
            "datetime=\"1970-01-01T00:12:38Z\"",
            ">4m 12s ago</time>",
        ] {
            assert!(web1.contains(want), "{want:?} missing in {web1}");
        }
        assert!(
            !web1.contains("host web1"),
            "the hostname is the name: {web1}"
        );
        let db = row_of(&page, "db");
        for want in [
            "<td class=\"bad\">selecting</td>",
            "<td class=\"bad\">no lease</td>",
            ">10s ago</time>",
            "healed 2&times;",
        ] {
            assert!(db.contains(want), "{want:?} missing in {db}");
        }
        let cache = row_of(&page, "cache");
        assert!(cache.contains("agent not answering"), "{cache}");
        assert!(cache.contains("<td>-</td>"), "no last change: {cache}");
        // In name order.
        let pos = |s: &str| page.find(&format!("\"svc\">{s}")).unwrap();
        assert!(pos("cache") < pos("db") && pos("db") < pos("web1"));
    }

    #[test]
    fn lease_left_ages_with_the_poll() {
        let s = stats();
        let page = render_page(&s, at(1000 + 262));
        assert!(row_of(&page, "web1").contains(">expired<"), "{page}");
        let page = render_page(&s, at(1000 + 200));
        // 62 s of a 600 s lease: renewal has been failing.
        assert!(
            row_of(&page, "web1").contains("<td class=\"warn\">1m 2s</td>"),
            "{page}"
        );
        let mut s = stats();
        if let Some(l) = s.routers.get_mut("web1").and_then(|o| o.status.as_mut()) {
            l.lease.as_mut().unwrap().expires_in_secs = None;
        }
        assert!(row_of(&render_page(&s, at(1010)), "web1").contains(">infinite<"));
        // A clock that went back shows the poll's own figure, not a panic.
        assert!(row_of(&render_page(&stats(), at(0)), "web1").contains(">4m 22s<"));
    }

    /// Names, hostnames and errors come from whoever runs containers or
    /// answers DHCP: none of them can put markup on the page.
    #[test]
    fn hostile_strings_are_text() {
        let evil = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>&amp;\u{7}";
        let mut s = StatsInner::default();
        let mut st = status(evil);
        st.hostname = Some(format!("{evil}host"));
        st.last_error = Some(format!("{evil}error"));
        s.routers.insert(evil.into(), observed(Some(st)));
        s.last_change.insert(evil.into(), at(1));
        s.host_route_refused.insert(evil.into());
        s.heals.insert(evil.into(), 1);
        let page = render_page(&s, at(10));
        for bad in ["<script", "<img", "onerror=alert(1)>", "'x'", "\u{7}"] {
            assert!(!page.contains(bad), "{bad:?} in:\n{page}");
        }
        let shown = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&gt;&lt;img src=x \
                     onerror=alert(1)&gt;&amp;amp;\\u{7}";
        assert_eq!(page.matches(shown).count(), 3, "name, host, error:\n{page}");
        // The markup is only the page's own: every tag is one it writes.
        let tags: std::collections::BTreeSet<&str> = page
            .split('<')
            .skip(1)
            .map(|t| {
                t.split(|c: char| c.is_whitespace() || c == '>')
                    .next()
                    .unwrap()
            })
            .collect();
        let ours = [
            "!DOCTYPE", "html", "/html", "head", "/head", "meta", "title", "/title", "style",
            "/style", "body", "/body", "h1", "/h1", "p", "/p", "table", "/table", "thead",
            "/thead", "tbody", "/tbody", "tr", "/tr", "th", "/th", "td", "/td", "div", "/div",
            "span", "/span", "br", "time", "/time",
        ];
        for t in &tags {
            assert!(ours.contains(t), "tag {t:?} is not the page's own:\n{page}");
        }
    }

    #[test]
    fn no_routers_is_said() {
        let page = render_page(&StatsInner::default(), at(0));
        assert!(page.contains("0 services &middot; no poll yet"), "{page}");
        assert!(page.contains("No network containers on this host yet."));
        assert!(!page.contains("<table"));
    }

    #[test]
    fn spans_and_dates() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(59), "59s");
        assert_eq!(span(252), "4m 12s");
        assert_eq!(span(7500), "2h 5m");
        assert_eq!(span(3 * 86_400 + 4 * 3600 + 5), "3d 4h");
        assert_eq!(
            utc(at(1_796_629_212)),
            (
                "2026-12-07 07:40:12 UTC".to_string(),
                "2026-12-07T07:40:12Z".to_string()
            )
        );
        assert_eq!(utc(at(951_782_400)).1, "2000-02-29T00:00:00Z");
        assert_eq!(esc("a&b<c>\"d'"), "a&amp;b&lt;c&gt;&quot;d&#39;");
    }
}
