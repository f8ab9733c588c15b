//! The status page of `watch --metrics` (issue 22, point 8), as an operator sees it: on
//! the real Docker engine, watch gives three labelled services their routers, and
//! headless Chromium opens `http://ADDR/`. The screenshot, read back by tesseract, lists
//! every service; the DOM Chromium built has every leased address and no script; the
//! server sends a policy that forbids scripts. Root only; the bed of `tests/watch.rs`
//! (LAN 203.0.113.0/24 behind a blackhole route), with its own state directories.

use netcontainer_tests::browser;
use netcontainer_tests::watch::{self, Watch};
use netcontainer_tests::*;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

/// `GET path` over HTTP/1.0 from 127.0.0.1: (status line and headers, body).
fn get(port: u16, path: &str) -> Result<(String, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let (head, body) = out.split_once("\r\n\r\n").ok_or("no header end")?;
    Ok((head.to_ascii_lowercase(), body.to_string()))
}

/// watch's status page lists the services it gave routers, with their addresses, in a
/// real browser (the old watch answered 404 at `/`).
#[test]
fn the_status_page_lists_the_services_in_a_browser() {
    require_root!();
    for tool in [browser::CHROMIUM, browser::TESSERACT] {
        assert!(
            have(tool),
            "{tool} is needed (sudo scripts/install-deps installs it)"
        );
    }
    let bed = watch::bed(11);
    bed.use_own_state_dirs();
    let port = watch::free_port();
    let metrics = format!("127.0.0.1:{port}");
    let env = bed.driver_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let w = Watch::start(&bed, &["--metrics", &metrics, "--poll", "1"], &env);
    // Words tesseract reads without doubt (no 1/l or 0/O pairs in the tags).
    let services: Vec<String> = ["alpha", "bravo", "delta"]
        .iter()
        .map(|t| watch::labelled_service(&bed, t, &[]).name)
        .collect();
    let mut leased: Vec<(String, Ipv4Addr)> = Vec::new();
    for s in &services {
        let a = watch::wait_bound(&bed, s, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("{s}: no lease:\n{}", w.log()));
        leased.push((s.clone(), a));
    }

    // The page, once watch's poll saw every lease.
    let url = format!("http://{metrics}/");
    let page = wait_for(Duration::from_secs(20), Duration::from_millis(250), || {
        let (head, body) = get(port, "/").ok()?;
        leased
            .iter()
            .all(|(_, a)| body.contains(&format!("{a}/")))
            .then_some((head, body))
    });
    let (head, body) = page.unwrap_or_else(|| {
        panic!(
            "{url} never showed every lease {leased:?}: {:?}\n{}",
            get(port, "/"),
            w.log()
        )
    });
    assert!(
        head.starts_with("http/1.") && head.contains(" 200 "),
        "{head}"
    );
    for h in [
        "content-type: text/html; charset=utf-8",
        "content-security-policy: default-src 'none'; style-src 'unsafe-inline'",
        "x-content-type-options: nosniff",
    ] {
        assert!(head.lines().any(|l| l == h), "{h:?} missing: {head}");
    }
    assert!(!body.to_ascii_lowercase().contains("<script"), "{body}");
    let (head404, body404) = get(port, "/index.html").expect("GET /index.html");
    assert!(head404.contains(" 404 "), "{head404}");
    assert_eq!(
        body404,
        "not found: the status page is at /, the metrics at /metrics\n"
    );

    // The DOM the browser built: every service with its lease, bound.
    let dom =
        browser::dump_dom(&url, &bed.tmp.join("chromium-dom")).unwrap_or_else(|e| panic!("{e}"));
    for (s, a) in &leased {
        let at = dom
            .find(&format!(">{s}<"))
            .unwrap_or_else(|| panic!("{s} not in the DOM:\n{dom}"));
        let row = &dom[at..at + dom[at..].find("</tr>").unwrap_or(dom.len() - at)];
        assert!(row.contains(&format!("{a}/24")), "{s}: {a} not in {row}");
        assert!(row.contains(">bound<"), "{s}: not bound in {row}");
    }

    // What a person sees: the screenshot lists every service.
    let png = bed.tmp.join("status-page.png");
    browser::screenshot(&url, &png, &bed.tmp.join("chromium-shot"), (1200, 800), 2)
        .unwrap_or_else(|e| panic!("{e}"));
    println!("screenshot of {url}: {}", png.display());
    let text = browser::ocr(&png).unwrap_or_else(|e| panic!("{e}"));
    // OCR confuses look-alike glyphs (0 and O, 1 and l) and may add a stray mark at a
    // word's end: both sides are compared with those folded, letters and digits only.
    let fold = |w: &str| -> String {
        w.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| match c.to_ascii_lowercase() {
                'o' => '0',
                'l' | 'i' => '1',
                c => c,
            })
            .collect()
    };
    let words: Vec<String> = text.split_whitespace().map(fold).collect();
    // And it may add or drop one glyph inside a word (CI read `x0alpha` as `x0Oalpha`):
    // one edit apart still counts; the three names are many edits apart.
    let near = |a: &str, b: &str| {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
        match long.len() - short.len() {
            0 => a.iter().zip(b).filter(|(x, y)| x != y).count() <= 1,
            1 => (0..long.len()).any(|i| long[..i] == short[..i] && long[i + 1..] == short[i..]),
            _ => false,
        }
    };
    for s in &services {
        assert!(
            words.iter().any(|w| near(w, &fold(s))),
            "tesseract did not read {s} in {}:\n{text}",
            png.display()
        );
    }
    assert!(text.contains("netcontainer watch"), "{text}");
}
