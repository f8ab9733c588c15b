//! The committed seed corpus (fuzz/corpus, written by scripts/capture-fuzz-corpus) is what
//! its file names claim: real OFFER/ACK/NAK replies of dnsmasq and Kea as the agent's raw
//! socket receives them, scripts that take the DHCP client through them, and control
//! frames that decode. Also: any bytes are a `dhcp` script, and well-formed ones decode
//! exactly (libFuzzer's inputs rely on both).

use std::net::Ipv4Addr;

use dhcproto::v4::MessageType;
use netcontainer_fuzz::corpus::{self, check_packet_file, script_replies, type_name};
use netcontainer_fuzz::dhcp::{DhcpTarget, Op, decode_script, encode_header};
use netcontainer_proto::{Request, Response, decode_frame};

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

#[test]
fn packet_corpus_is_real_replies_of_both_servers() {
    let files = corpus::files("packet").expect("fuzz/corpus/packet");
    let mut seen = Vec::new();
    for (name, bytes) in &files {
        let reply = check_packet_file(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut words = name.trim_end_matches(".bin").split('-');
        let (server, kind) = (words.next().unwrap(), words.next().unwrap_or_default());
        assert!(
            corpus::SERVERS.contains(&server),
            "{name}: unknown server {server}"
        );
        assert_eq!(
            type_name(reply.message_type),
            kind,
            "{name}: the file name says {kind}, the reply is {:?}",
            reply.message_type
        );
        assert_eq!(reply.server_id, SERVER, "{name}: server identifier");
        if reply.message_type != MessageType::Nak {
            assert!(
                reply.yiaddr.octets()[..3] == [192, 0, 2] && reply.yiaddr != SERVER,
                "{name}: yiaddr {}",
                reply.yiaddr
            );
        }
        seen.push((server.to_string(), kind.to_string()));
    }
    for server in corpus::SERVERS {
        for kind in ["offer", "ack", "nak"] {
            assert!(
                seen.contains(&(server.to_string(), kind.to_string())),
                "no {kind} of {server} in fuzz/corpus/packet"
            );
        }
    }
}

#[test]
fn dhcp_corpus_scripts_bind_on_real_replies() {
    let files = corpus::files("dhcp").expect("fuzz/corpus/dhcp");
    for server in corpus::SERVERS {
        assert!(
            files
                .iter()
                .any(|(n, _)| n.starts_with(&format!("{server}-"))),
            "no script of {server} in fuzz/corpus/dhcp"
        );
    }
    for (name, bytes) in &files {
        let replies = script_replies(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let types: Vec<_> = replies.iter().map(|r| r.message_type).collect();
        assert!(
            types.contains(&MessageType::Offer) && types.contains(&MessageType::Ack),
            "{name}: replies {types:?}"
        );
        assert!(replies.iter().all(|r| r.server_id == SERVER), "{name}");
        // The client takes the real replies: the script binds at least once.
        let mut t = DhcpTarget::new();
        t.replay(bytes);
        assert!(t.stats.bound >= 1, "{name}: no lease bound ({:?})", t.stats);
    }
}

#[test]
fn frame_corpus_decodes() {
    let files = corpus::files("frame").expect("fuzz/corpus/frame");
    assert!(files.len() >= 4, "only {} frame seeds", files.len());
    for (name, bytes) in &files {
        let used = match decode_frame::<Request>(bytes) {
            Ok(Some((_, used))) => used,
            _ => match decode_frame::<Response>(bytes) {
                Ok(Some((_, used))) => used,
                other => panic!("{name}: decodes as neither request nor response: {other:?}"),
            },
        };
        assert!(used <= bytes.len(), "{name}");
    }
}

#[test]
fn scripts_round_trip_and_any_bytes_are_a_script() {
    let ops = vec![
        Op::Start(Some(Ipv4Addr::new(192, 0, 2, 50))),
        Op::Start(None),
        Op::Packet(vec![1, 2, 3]),
        Op::Reply(vec![4; 300]),
        Op::Advance(u64::MAX),
        Op::Timeout,
        Op::Release,
        Op::Decline,
    ];
    let mut b = Vec::new();
    encode_header(0x0102_0304_0506_0708, 0x21, &mut b);
    for op in &ops {
        op.encode(&mut b);
    }
    assert_eq!(decode_script(&b), (0x0102_0304_0506_0708, 0x21, ops));
    // Every prefix, and bytes that are no encoding at all, decode (and run) without panic.
    let mut t = DhcpTarget::new();
    for n in 0..b.len() {
        let _ = decode_script(&b[..n]);
    }
    let junk: Vec<u8> = (0..2000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    t.replay(&junk);
    // A packet whose length runs past the end takes what is left.
    let (_, _, ops) = decode_script(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0xff, 0xff, 0, 0, 9, 9]);
    assert_eq!(ops, vec![Op::Reply(vec![9, 9])]);
}

/// The v6 seed corpora are generated, not captured: the DHCPv6 target's seed scripts
/// (server answers to the client's own messages) and the RA target's sample messages.
/// `NETCONTAINER_WRITE_V6_SEEDS=1 cargo test -p netcontainer-fuzz --test corpus` rewrites
/// them after a change of the targets.
#[test]
fn v6_seed_corpora_are_the_targets_seeds() {
    use netcontainer_fuzz::dhcp6::{Dhcp6Target, RaTarget};
    let want = [
        ("dhcp6", Dhcp6Target::new().seed_scripts()),
        ("ra", RaTarget::new().seeds().to_vec()),
    ];
    for (target, seeds) in want {
        let dir = corpus::dir().join(target);
        if std::env::var_os("NETCONTAINER_WRITE_V6_SEEDS").is_some() {
            std::fs::create_dir_all(&dir).unwrap();
            for (i, s) in seeds.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}.bin")), s).unwrap();
            }
        }
        let files = corpus::files(target).expect("seed corpus");
        assert_eq!(files.len(), seeds.len(), "{target}");
        for ((_, bytes), seed) in files.iter().zip(&seeds) {
            assert_eq!(
                bytes, seed,
                "{target}: regenerate with NETCONTAINER_WRITE_V6_SEEDS=1"
            );
        }
        let mut t = Dhcp6Target::new();
        let mut r = RaTarget::new();
        for (_, bytes) in files {
            if target == "dhcp6" {
                t.run(&bytes);
            } else {
                r.run(&bytes);
            }
        }
        if target == "dhcp6" {
            assert!(t.stats.bound > 0, "the dhcp6 seeds reach a lease");
        }
    }
}

/// The mDNS seed corpus is generated too: hand-built packets as avahi,
/// python-zeroconf and dig send them (`fuzz/src/mdns.rs`), in scripts that
/// start the responder in the state each matters in.
/// `NETCONTAINER_WRITE_MDNS_SEEDS=1 cargo test -p netcontainer-fuzz --test corpus` rewrites
/// them after a change of the target.
#[test]
fn mdns_seed_corpus_is_the_targets_seeds_and_reaches_answers_and_conflicts() {
    use netcontainer_fuzz::mdns::MdnsTarget;
    use netcontainer_mdns::hickory_proto::op::Message;
    let target = MdnsTarget::new();
    let dir = corpus::dir().join("mdns");
    if std::env::var_os("NETCONTAINER_WRITE_MDNS_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, s) in target.seeds() {
            std::fs::write(dir.join(format!("{name}.bin")), s).unwrap();
        }
    }
    let files = corpus::files("mdns").expect("fuzz/corpus/mdns");
    let mut want: Vec<(String, Vec<u8>)> = target
        .seeds()
        .iter()
        .map(|(n, s)| (format!("{n}.bin"), s.clone()))
        .collect();
    want.sort();
    assert_eq!(
        files, want,
        "regenerate with NETCONTAINER_WRITE_MDNS_SEEDS=1"
    );
    for p in MdnsTarget::seed_packets() {
        Message::from_vec(&p).expect("a seed packet is DNS");
    }
    let mut t = MdnsTarget::new();
    for (_, bytes) in &files {
        t.run(bytes);
    }
    assert!(t.stats.claimed >= files.len() as u64 - 1, "{:?}", t.stats);
    assert!(
        t.stats.conflicts >= 2,
        "the conflict seeds rename: {:?}",
        t.stats
    );
    assert!(t.stats.transmits > 0);
}
