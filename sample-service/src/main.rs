//! A tiny service for the demo and the Docker tests, with no dependencies so
//! it links statically and runs in a `FROM scratch` image.
//!
//! ```text
//! netcontainer-sample [--http PORT[-PORT]]... [--udp-echo PORT[-PORT]]...
//! ```
//!
//! Every HTTP port answers any request with `hello from NAME (port P)`, where
//! NAME is `$SAMPLE_NAME`, else the container's hostname. Every UDP port
//! echoes what it receives. Default: `--http 80`.

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

fn serve_http(mut s: TcpStream, body: &str) {
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
    let resp = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes());
}

fn main() -> ExitCode {
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
        let l = match TcpListener::bind(("0.0.0.0", p)) {
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
        let s = match UdpSocket::bind(("0.0.0.0", p)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot bind udp port {p}: {e}");
                return ExitCode::FAILURE;
            }
        };
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        }));
    }
    eprintln!("netcontainer-sample: serving as {me}");
    for t in threads {
        let _ = t.join();
    }
    ExitCode::SUCCESS
}
