//! Human and JSON rendering of agent status.

use std::fmt::Write;

use netcontainer_proto::Status;

pub fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("status serializes to JSON")
}

fn secs(s: Option<u64>) -> String {
    s.map(|s| format!("{s}s")).unwrap_or_else(|| "never".into())
}

/// A short multi-line description of one agent.
pub fn status_text(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "state:      {}", s.state);
    if let Some(i) = &s.interface {
        let _ = writeln!(out, "interface:  {i}");
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
        let _ = writeln!(out, "last error: {e}");
    }
    out
}
