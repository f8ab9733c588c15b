//! Probes for "the router is no gateway from the Docker side onto the LAN": a counter of
//! what arrives at a listener's namespace, and a knock (TCP connect, UDP datagrams) from
//! another namespace, with its own or a spoofed source address.
//!
//! The counter is an nftables table of its own (`ip nc_arrivals`) in the listener's
//! namespace, counting on input every TCP and UDP packet to the port; it sees a packet
//! whether or not anything answers it, so "nothing arrived" is a count of zero, not a
//! missing reply.

use crate::netns::Netns;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::Stdio;
use std::time::Duration;

const TABLE: &str = "nc_arrivals";

/// Counts TCP and UDP packets to `port` arriving in `ns`; the table goes on drop.
pub struct Arrivals<'a> {
    ns: &'a Netns,
}

impl<'a> Arrivals<'a> {
    pub fn start(ns: &'a Netns, port: u16) -> Arrivals<'a> {
        ns.nft(&format!(
            "table ip {TABLE} {{\n\
               chain input {{ type filter hook input priority -300; policy accept;\n\
                 tcp dport {port} counter\n\
                 udp dport {port} counter\n\
               }}\n\
             }}\n"
        ));
        Arrivals { ns }
    }

    /// Packets counted so far (TCP and UDP together).
    pub fn count(&self) -> u64 {
        let out = self
            .ns
            .exec_ok(&["nft", "-j", "list", "table", "ip", TABLE]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("nft -j json");
        let mut n = 0;
        for o in v["nftables"].as_array().into_iter().flatten() {
            for e in o["rule"]["expr"].as_array().into_iter().flatten() {
                n += e["counter"]["packets"].as_u64().unwrap_or(0);
            }
        }
        n
    }
}

impl Drop for Arrivals<'_> {
    fn drop(&mut self) {
        let _ = self
            .ns
            .command(&["nft", "delete", "table", "ip", TABLE])
            .stderr(Stdio::null())
            .status();
    }
}

/// From `from`, one TCP connection attempt (curl, 2 s) and three UDP datagrams to
/// `target:port`, with source `src` (an address `from` holds) or the kernel's choice.
/// Bounded; the outcome is read from an [`Arrivals`] at the target.
pub fn knock(from: &Netns, src: Option<Ipv4Addr>, target: Ipv4Addr, port: u16) {
    let url = format!("http://{target}:{port}/");
    let mut args = vec!["curl", "-sS", "--noproxy", "*", "--max-time", "2"];
    let src_s = src.map(|s| s.to_string());
    if let Some(s) = &src_s {
        args.extend_from_slice(&["--interface", s]);
    }
    args.push(&url);
    let _ = from
        .command(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let sent = from.run_in(|| -> std::io::Result<()> {
        let sock = UdpSocket::bind((src.unwrap_or(Ipv4Addr::UNSPECIFIED), 0))?;
        for _ in 0..3 {
            // A send can fail (no route, EPERM from a local filter): that is a result too.
            let _ = sock.send_to(b"knock", SocketAddrV4::new(target, port));
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    });
    sent.expect("enter netns")
        .unwrap_or_else(|e| panic!("udp socket in {} (source {src:?}): {e}", from.name()));
}
