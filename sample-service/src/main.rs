//! A tiny service for the demo and the Docker tests, with no dependencies so
//! it links statically and runs in a `FROM scratch` image.
//!
//! ```text
//! netcontainer-sample [--http PORT[-PORT]]... [--udp-echo PORT[-PORT]]...
//! ```
//!
//! Every HTTP port answers any request with `hello from NAME (port P)`, where
//! NAME is `$SAMPLE_NAME`, else the container's hostname, except `GET /peer`,
//! answered with the client's address and port as the service sees them
//! (`ADDR:PORT`). Every UDP port echoes what it receives, except the
//! datagram `peer`, answered with the sender's `ADDR:PORT`. Default:
//! `--http 80`.
//!
//! `netcontainer-sample fetch ADDR:PORT[/PATH]` is a client: one HTTP/1.0
//! GET (5 s bounds), the body on stdout; exit 1 on any failure. The tests run
//! it inside a service to see where its own connections come from.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

fn ports(spec: &str) -> Result<Vec<u16>, String> {
    let bad = || format!("invalid port or range {spec:?}");
    let (a, b) = spec.split_once('-').unwrap_or((spec, spec));
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a == 0 || b < a {
        return Err(bad());
    }
    Ok((a..=b).collect())
}

fn name() -> String {
    std::env::var("SAMPLE_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "sample".into())
}

fn serve_http(mut s: TcpStream, hello: &str) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    // Read the request head (bounded), then answer and close.
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 16384 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    let peer = s
        .peer_addr()
        .map(|a| format!("{}\n", canonical(a)))
        .unwrap_or_default();
    let body = if seen.starts_with(b"GET /peer ") {
        peer.as_str()
    } else {
        hello
    };
    let resp = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes());
}

fn fetch(target: &str) -> Result<String, String> {
    let (host, path) = match target.find('/') {
        Some(i) => (&target[..i], &target[i..]),
        None => (target, "/"),
    };
    let addr: std::net::SocketAddr = host
        .parse()
        .map_err(|_| format!("invalid address {host:?} (ADDR:PORT)"))?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&out);
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
            Ok(body.to_string())
        }
        _ => Err(format!("unexpected answer from {addr}: {text:?}")),
    }
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("fetch") {
        return match std::env::args().nth(2).as_deref().map(fetch) {
            Some(Ok(body)) => {
                print!("{body}");
                ExitCode::SUCCESS
            }
            Some(Err(e)) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
            None => {
                eprintln!("usage: netcontainer-sample fetch ADDR:PORT[/PATH]");
                ExitCode::from(2)
            }
        };
    }
    let mut http = Vec::new();
    let mut udp = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let target = match a.as_str() {
            "--http" => &mut http,
            "--udp-echo" => &mut udp,
            "-h" | "--help" => {
                println!(
                    "usage: netcontainer-sample [--http PORT[-PORT]]... [--udp-echo PORT[-PORT]]..."
                );
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("error: unknown argument {other:?}");
                return ExitCode::from(2);
            }
        };
        match args.next().as_deref().map(ports) {
            Some(Ok(p)) => target.extend(p),
            Some(Err(e)) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            None => {
                eprintln!("error: {a} needs a value");
                return ExitCode::from(2);
            }
        }
    }
    if http.is_empty() && udp.is_empty() {
        http.push(80);
    }
    let me = name();
    let mut threads = Vec::new();
    for p in http {
        // Dual-stack where the container has IPv6 (an IPv6 Docker network),
        // IPv4 where it has not.
        let l = match TcpListener::bind(("::", p)).or_else(|_| TcpListener::bind(("0.0.0.0", p))) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on tcp port {p}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let body = format!("hello from {me} (port {p})\n");
        threads.push(std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let body = body.clone();
                std::thread::spawn(move || serve_http(s, &body));
            }
        }));
    }
    for p in udp {
        let s = match UdpSocket::bind(("::", p)).or_else(|_| UdpSocket::bind(("0.0.0.0", p))) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot bind udp port {p}: {e}");
                return ExitCode::FAILURE;
            }
        };
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                if &buf[..n] == b"peer" {
                    let _ = s.send_to(canonical(from).as_bytes(), from);
                } else {
                    let _ = s.send_to(&buf[..n], from);
                }
            }
        }));
    }
    eprintln!("netcontainer-sample: serving as {me}");
    for t in threads {
        let _ = t.join();
    }
    ExitCode::SUCCESS
}

/// `ADDR:PORT`, an IPv4 client of a dual-stack socket in its IPv4 form.
fn canonical(a: std::net::SocketAddr) -> String {
    std::net::SocketAddr::new(a.ip().to_canonical(), a.port()).to_string()
}
