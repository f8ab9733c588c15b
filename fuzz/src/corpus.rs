//! The committed seed corpus (`fuzz/corpus/<target>/`) and what each file must be.
//!
//! - `packet/<server>-<type>[-<what>].bin`: a mode byte 0 (see [`crate::packet`]) and then
//!   an IPv4/UDP datagram as the agent's AF_PACKET SOCK_DGRAM socket receives it (no
//!   Ethernet header): a real reply (`offer`, `ack` or `nak`) of `dnsmasq` or `kea`.
//! - `dhcp/<server>-<scenario>.script`: a script for the `dhcp` target (see
//!   [`crate::dhcp::decode_script`]) whose [`Op::Reply`] payloads are those real replies.
//! - `frame/*.bin`: valid control frames, encoded by `netcontainer-proto`'s encoder.
//! - `mdns/*.bin`: scripts for the `mdns` target (see [`crate::mdns`]) around hand-built
//!   packets as avahi, python-zeroconf and dig send them (generated, not captured).
//!
//! `scripts/capture-fuzz-corpus` writes them (the replies are captured from real servers in
//! network namespaces by `fuzz/examples/capture-corpus.rs`).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder};
use netcontainer_lease::packet::{DHCP_CLIENT_PORT, DHCP_SERVER_PORT, parse_ipv4_udp};

use crate::dhcp::{Op, decode_script};

/// The servers whose replies the corpus holds (the first word of a file name).
pub const SERVERS: [&str; 2] = ["dnsmasq", "kea"];

/// `fuzz/corpus`.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// The files of `fuzz/corpus/<target>`, sorted by name.
pub fn files(target: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let d = dir().join(target);
    let rd = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    let mut out = Vec::new();
    for entry in rd {
        let path = entry.map_err(|e| format!("{}: {e}", d.display()))?.path();
        let name = file_name(&path);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        out.push((name, bytes));
    }
    out.sort();
    Ok(out)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A server reply as the corpus describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub message_type: MessageType,
    pub server_id: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
}

/// The lower-case name a file uses for a reply's message type.
pub fn type_name(mt: MessageType) -> &'static str {
    match mt {
        MessageType::Offer => "offer",
        MessageType::Ack => "ack",
        MessageType::Nak => "nak",
        _ => "other",
    }
}

/// Checks that `payload` is a DHCP reply from a server: it decodes, is a BOOTREPLY, has
/// a message type OFFER, ACK or NAK and a server identifier.
pub fn check_reply(payload: &[u8]) -> Result<Reply, String> {
    let m = Message::decode(&mut Decoder::new(payload))
        .map_err(|e| format!("does not decode as DHCP: {e}"))?;
    if m.opcode() != dhcproto::v4::Opcode::BootReply {
        return Err(format!("opcode {:?}, not BootReply", m.opcode()));
    }
    let mt = match m.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(mt)) => *mt,
        other => return Err(format!("message type option {other:?}")),
    };
    if !matches!(mt, MessageType::Offer | MessageType::Ack | MessageType::Nak) {
        return Err(format!("message type {mt:?}, not OFFER/ACK/NAK"));
    }
    let server_id = match m.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(s)) => *s,
        other => return Err(format!("server identifier option {other:?}")),
    };
    Ok(Reply {
        message_type: mt,
        server_id,
        yiaddr: m.yiaddr(),
    })
}

/// Checks a `packet` corpus file: mode byte 0, then an IPv4/UDP datagram from port 67 to
/// port 68 that the agent's parser accepts and whose payload is a server reply.
pub fn check_packet_file(bytes: &[u8]) -> Result<Reply, String> {
    let Some((&0, frame)) = bytes.split_first() else {
        return Err("does not start with mode byte 0".into());
    };
    // Checksum offload may leave the UDP checksum unfinished on a veth, as the socket's
    // auxdata would say: accept what the agent accepts then.
    let udp = parse_ipv4_udp(frame, true).map_err(|e| format!("IPv4/UDP: {e}"))?;
    if (udp.src_port, udp.dst_port) != (DHCP_SERVER_PORT, DHCP_CLIENT_PORT) {
        return Err(format!("UDP ports {} -> {}", udp.src_port, udp.dst_port));
    }
    check_reply(udp.payload)
}

/// The payloads of a script's [`Op::Reply`] ops, each checked with [`check_reply`].
pub fn script_replies(bytes: &[u8]) -> Result<Vec<Reply>, String> {
    let (_, _, ops) = decode_script(bytes);
    ops.iter()
        .filter_map(|op| match op {
            Op::Reply(p) => Some(check_reply(p)),
            _ => None,
        })
        .collect()
}
