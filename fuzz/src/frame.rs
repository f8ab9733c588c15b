//! Target `frame`: the control protocol's framing (`decode_frame`, `decode_payload`,
//! `payload_len`) on mutated valid frames and random bytes, and `Plan::validate` on every
//! plan that decodes.
//!
//! Invariants: no panic; `Ok(None)` ("need more bytes") only when the buffer really is
//! shorter than the frame its header announces; a decoded frame reports the bytes it used;
//! every decoded message re-encodes and decodes to itself; `payload_len` refuses lengths
//! above `MAX_FRAME_LEN` and below the version's 2 bytes.

use std::net::Ipv4Addr;

use netcontainer_proto::{
    Forward, FrameError, HEADER_LEN, LeaseStatus, MAX_FRAME_LEN, Plan, Protocol, Request, Response,
    State, Status, decode_frame, decode_payload, encode_frame, payload_len,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::mutate::mutate;
use crate::rng::Rng;

pub struct FrameTarget {
    seeds: Vec<Vec<u8>>,
    pub decoded: u64,
}

fn plan(n: usize) -> Plan {
    Plan {
        ipv6: Default::default(),
        dhcp_servers: Default::default(),
        mdns: Some(Default::default()),
        interface: "lan0".into(),
        hostname: Some("web1".into()),
        client_id: Some(b"netcontainer:web1".to_vec()),
        broadcast_flag: n.is_multiple_of(2),
        forwards: (0..n)
            .map(|i| Forward {
                protocol: if i.is_multiple_of(2) {
                    Protocol::Tcp
                } else {
                    Protocol::Udp
                },
                public_port: 1000 + i as u16 * 10,
                public_port_end: 1000 + i as u16 * 10 + (i % 3) as u16,
                target_address: Ipv4Addr::new(198, 51, 100, 2 + (i % 200) as u8),
                target_port: 8000 + i as u16,
            })
            .collect(),
        source: Default::default(),
        service: None,
    }
}

fn status(with_lease: bool) -> Status {
    Status {
        state: State::Bound,
        interface: Some("lan0".into()),
        hostname: Some("web1".into()),
        lease: with_lease.then(|| LeaseStatus {
            address: Ipv4Addr::new(192, 0, 2, 57),
            prefix_len: 24,
            gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
            server_id: Ipv4Addr::new(192, 0, 2, 1),
            lease_secs: Some(3600),
            renew_in_secs: Some(1800),
            rebind_in_secs: Some(3150),
            expires_in_secs: None,
            dns: vec![Ipv4Addr::new(192, 0, 2, 1); 3],
        }),
        forwards: plan(3)
            .forwards
            .iter()
            .map(|f| netcontainer_proto::ForwardStatus::from_forward(f, 12, u64::MAX))
            .collect(),
        last_error: Some("nft: boom".into()),
        agent_version: "0.1.0".into(),
        source: Default::default(),
        ipv6: Vec::new(),
        ipv6_path: Default::default(),
        mdns: None,
    }
}

impl Default for FrameTarget {
    fn default() -> Self {
        FrameTarget::new()
    }
}

impl FrameTarget {
    pub fn new() -> FrameTarget {
        let mut seeds = Vec::new();
        let requests = [
            Request::Status,
            Request::Shutdown,
            Request::Wait { timeout_ms: 5000 },
            Request::Wait {
                timeout_ms: u64::MAX,
            },
            Request::Apply(plan(0)),
            Request::Apply(plan(1)),
            Request::Apply(plan(7)),
            Request::Apply(Plan {
                hostname: None,
                client_id: None,
                ..plan(2)
            }),
        ];
        for r in &requests {
            seeds.push(encode_frame(r).expect("encode request"));
        }
        let responses = [
            Response::Status(status(true)),
            Response::Status(status(false)),
            Response::Applied(status(true)),
            Response::ShuttingDown,
            Response::Error("invalid plan: forwards tcp:80 and tcp:80 overlap".into()),
        ];
        for r in &responses {
            seeds.push(encode_frame(r).expect("encode response"));
        }
        // Two frames back to back: decode_frame must take only the first.
        let mut two = seeds[0].clone();
        two.extend_from_slice(&seeds[5]);
        seeds.push(two);
        FrameTarget { seeds, decoded: 0 }
    }

    /// The built-in seeds: valid frames from proto's encoder (also the libFuzzer seed corpus).
    pub fn seeds(&self) -> &[Vec<u8>] {
        &self.seeds
    }

    /// Builds one input: a mutated seed (most of the time) or random bytes.
    pub fn generate(&mut self, rng: &mut Rng, input: &mut Vec<u8>) {
        if rng.chance(8) {
            let n = rng.below(48);
            input.extend(rng.bytes(n));
            if rng.chance(50) && input.len() >= HEADER_LEN {
                // A plausible header so the payload decoder is reached.
                let len = (input.len() - HEADER_LEN) as u32;
                input[..4].copy_from_slice(&len.to_be_bytes());
                if input.len() >= 6 {
                    input[4..6].copy_from_slice(&1u16.to_be_bytes());
                }
            }
            return;
        }
        let seed = rng.below(self.seeds.len());
        let other = rng.below(self.seeds.len());
        input.extend_from_slice(&self.seeds[seed]);
        mutate(rng, input, &self.seeds[other], 6);
        // Often keep the length prefix consistent with the mutated body, so mutations
        // reach bincode instead of stopping at "need more bytes".
        if rng.chance(60) && input.len() >= HEADER_LEN {
            let len = (input.len() - HEADER_LEN) as u32;
            input[..4].copy_from_slice(&len.to_be_bytes());
        }
        // And often the right version.
        if rng.chance(60) && input.len() >= HEADER_LEN + 2 {
            input[4..6].copy_from_slice(&1u16.to_be_bytes());
        }
    }

    pub fn run(&mut self, input: &[u8]) {
        if let Some(h) = input.get(..HEADER_LEN) {
            let header: [u8; 4] = h.try_into().unwrap();
            let announced = u32::from_be_bytes(header);
            match payload_len(header) {
                Ok(len) => assert!(
                    (2..=MAX_FRAME_LEN as usize).contains(&len) && len == announced as usize
                ),
                Err(FrameError::TooLarge { len }) => {
                    assert!(len > u64::from(MAX_FRAME_LEN) && len == u64::from(announced))
                }
                Err(FrameError::TooShort { len }) => assert!(len < 2),
                Err(e) => panic!("payload_len: unexpected error {e:?}"),
            }
        }
        self.decoded += u64::from(check_frame::<Request>(input, |r| {
            if let Request::Apply(p) = r {
                exercise_plan(p);
            }
        }));
        self.decoded += u64::from(check_frame::<Response>(input, |_| {}));
        for payload in [input, input.get(HEADER_LEN..).unwrap_or_default()] {
            if let Ok(r) = decode_payload::<Request>(payload) {
                round_trip(&r);
                if let Request::Apply(p) = &r {
                    exercise_plan(p);
                }
            }
            if let Ok(r) = decode_payload::<Response>(payload) {
                round_trip(&r);
            }
        }
    }
}

/// What the agent does with a decoded plan before trusting it.
fn exercise_plan(p: &Plan) {
    let _ = p.validate();
    for f in &p.forwards {
        let _ = f.to_string();
        if f.validate().is_ok() {
            // Only validated forwards are measured.
            let _ = f.len();
        }
    }
}

fn round_trip<T>(msg: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = encode_frame(msg).expect("a decoded message re-encodes");
    let (back, used): (T, usize) = decode_frame(&bytes)
        .expect("re-encoded frame decodes")
        .expect("re-encoded frame is complete");
    assert_eq!(used, bytes.len());
    assert_eq!(&back, msg, "round trip changed the message");
}

/// Runs `decode_frame::<T>` and checks its contract; true if a message was decoded.
fn check_frame<T>(input: &[u8], extra: impl FnOnce(&T)) -> bool
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let announced = input
        .get(..HEADER_LEN)
        .map(|h| u32::from_be_bytes(h.try_into().unwrap()) as usize);
    match decode_frame::<T>(input) {
        Ok(None) => {
            if let Some(len) = announced {
                assert!(
                    input.len() < HEADER_LEN + len,
                    "need-more-bytes with a complete frame of {len} in {} bytes",
                    input.len()
                );
            }
            false
        }
        Ok(Some((msg, used))) => {
            let len = announced.expect("a decoded frame has a header");
            assert_eq!(used, HEADER_LEN + len, "bytes used vs length prefix");
            assert!(used <= input.len());
            round_trip(&msg);
            extra(&msg);
            true
        }
        Err(FrameError::TooLarge { .. }) => {
            assert!(announced.unwrap_or(0) > MAX_FRAME_LEN as usize);
            false
        }
        Err(_) => false,
    }
}
