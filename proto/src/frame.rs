use serde::Serialize;
use serde::de::DeserializeOwned;

/// Version of the control protocol. Bump on any incompatible change to the
/// message types.
pub const PROTOCOL_VERSION: u16 = 6;

/// Largest payload accepted, in bytes. A plan with 65,535 single-port forwards
/// encodes to well under this.
pub const MAX_FRAME_LEN: u32 = 4 << 20;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

const VERSION_LEN: usize = 2;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<{ MAX_FRAME_LEN as usize }>,
>;
const CONFIG: Config = bincode::config::standard().with_limit::<{ MAX_FRAME_LEN as usize }>();

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {MAX_FRAME_LEN} bytes")]
    TooLarge { len: u64 },
    #[error("frame too short ({len} bytes) to hold a protocol version")]
    TooShort { len: usize },
    #[error(
        "protocol version mismatch: peer speaks version {theirs}, this build speaks {PROTOCOL_VERSION} (upgrade the older of netcontainer and its router image)"
    )]
    Version { theirs: u16 },
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("trailing {0} bytes after the message")]
    Trailing(usize),
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// Encodes `msg` as one complete frame (length prefix, version, payload).
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; HEADER_LEN];
    out.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    bincode::serde::encode_into_std_write(msg, &mut out, CONFIG)
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = out.len() - HEADER_LEN;
    if len as u64 > u64::from(MAX_FRAME_LEN) {
        return Err(FrameError::TooLarge { len: len as u64 });
    }
    out[..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Reads the payload length from a frame header, refusing oversized frames
/// before anything is allocated.
pub fn payload_len(header: [u8; HEADER_LEN]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header);
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len: len.into() });
    }
    if (len as usize) < VERSION_LEN {
        return Err(FrameError::TooShort { len: len as usize });
    }
    Ok(len as usize)
}

/// Decodes a payload (the bytes after the length prefix).
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    if payload.len() < VERSION_LEN {
        return Err(FrameError::TooShort { len: payload.len() });
    }
    let theirs = u16::from_be_bytes([payload[0], payload[1]]);
    if theirs != PROTOCOL_VERSION {
        return Err(FrameError::Version { theirs });
    }
    let body = &payload[VERSION_LEN..];
    let (msg, used): (T, usize) = bincode::serde::decode_from_slice(body, CONFIG)
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(FrameError::Trailing(body.len() - used));
    }
    Ok(msg)
}

/// Decodes one frame from the front of `buf`. `Ok(None)` means more bytes are
/// needed; `Ok(Some((msg, consumed)))` returns the message and the bytes used.
pub fn decode_frame<T: DeserializeOwned>(buf: &[u8]) -> Result<Option<(T, usize)>, FrameError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let len = payload_len(header.try_into().expect("4 bytes"))?;
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    Ok(Some((decode_payload(payload)?, HEADER_LEN + len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;
    use std::net::Ipv4Addr;

    fn status() -> Status {
        Status {
            state: State::Bound,
            interface: Some("lan0".into()),
            hostname: Some("web1".into()),
            lease: Some(LeaseStatus {
                address: Ipv4Addr::new(192, 0, 2, 57),
                prefix_len: 24,
                gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
                server_id: Ipv4Addr::new(192, 0, 2, 1),
                lease_secs: Some(3600),
                renew_in_secs: Some(1800),
                rebind_in_secs: Some(3150),
                expires_in_secs: Some(3600),
                dns: vec![Ipv4Addr::new(192, 0, 2, 1)],
            }),
            forwards: vec![ForwardStatus {
                protocol: Protocol::Udp,
                public_port: 7000,
                public_port_end: 7009,
                target_address: Ipv4Addr::new(198, 51, 100, 2),
                target_port: 7000,
                packets: 12,
                bytes: 3400,
            }],
            last_error: Some("nft: boom".into()),
            agent_version: "0.1.0".into(),
            source: Default::default(),
            ipv6: vec![Ipv6AddressStatus {
                address: "2001:db8::57".parse().unwrap(),
                prefix_len: 64,
                origin: Ipv6Origin::Slaac,
                preferred_in_secs: Some(1800),
                valid_in_secs: None,
            }],
            ipv6_path: Ipv6Path::Relay,
            mdns: Some("web1-2.local".into()),
        }
    }

    fn plan() -> Plan {
        Plan {
            interface: "lan0".into(),
            hostname: Some("web1".into()),
            client_id: Some(b"netcontainer:web1".to_vec()),
            broadcast_flag: true,
            forwards: vec![Forward::parse("tcp:80=198.51.100.2:8080").unwrap()],
            source: Default::default(),
            service: None,
            ipv6: Ipv6Mode::Off,
            dhcp_servers: Default::default(),
            mdns: Some(Box::new(crate::Mdns {
                services: vec![crate::DnsSd {
                    service_type: "_http._tcp".into(),
                    port: 80,
                    txt: vec!["path=/".into()],
                }],
            })),
        }
    }

    fn round_trip<T>(msg: T)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let bytes = encode_frame(&msg).unwrap();
        let (back, used): (T, usize) = decode_frame(&bytes).unwrap().unwrap();
        assert_eq!(back, msg);
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(Request::Status);
        round_trip(Request::Apply(plan()));
        round_trip(Request::Shutdown);
        round_trip(Request::Wait { timeout_ms: 5000 });
        round_trip(Response::Status(status()));
        round_trip(Response::Applied(Status {
            lease: None,
            ..status()
        }));
        round_trip(Response::ShuttingDown);
        round_trip(Response::Error("no".into()));
    }

    #[test]
    fn truncated_frames_need_more_bytes() {
        let bytes = encode_frame(&Request::Apply(plan())).unwrap();
        for cut in 0..bytes.len() {
            assert_eq!(
                decode_frame::<Request>(&bytes[..cut]).unwrap(),
                None,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn truncated_payload_is_malformed_not_a_panic() {
        let bytes = encode_frame(&Request::Apply(plan())).unwrap();
        let payload = &bytes[HEADER_LEN..];
        for cut in 0..payload.len() {
            assert!(
                decode_payload::<Request>(&payload[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn oversized_length_is_refused_before_reading() {
        let header = (MAX_FRAME_LEN + 1).to_be_bytes();
        assert!(matches!(
            payload_len(header),
            Err(FrameError::TooLarge { .. })
        ));
        let mut buf = header.to_vec();
        buf.extend_from_slice(&[0; 16]);
        assert!(matches!(
            decode_frame::<Request>(&buf),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            payload_len(u32::MAX.to_be_bytes()),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn wrong_version_is_reported() {
        let mut bytes = encode_frame(&Request::Status).unwrap();
        bytes[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&7u16.to_be_bytes());
        let err = decode_frame::<Request>(&bytes).unwrap_err();
        assert_eq!(err, FrameError::Version { theirs: 7 });
        assert!(err.to_string().contains("version 7"));
    }

    #[test]
    fn garbage_is_refused() {
        let mut seed = 0x1234_5678_u32;
        for n in 0..2000usize {
            let len = n % 64;
            let mut payload = PROTOCOL_VERSION.to_be_bytes().to_vec();
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                payload.push(seed as u8);
            }
            // Must not panic; most garbage is an error, the rest a valid message.
            let _ = decode_payload::<Request>(&payload);
            let _ = decode_payload::<Response>(&payload);
        }
        // A huge claimed string length is refused by the decode limit.
        let mut payload = PROTOCOL_VERSION.to_be_bytes().to_vec();
        payload.extend_from_slice(&[1, 253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(decode_payload::<Request>(&payload).is_err());
        let mut trailing = encode_frame(&Request::Status).unwrap()[HEADER_LEN..].to_vec();
        trailing.push(0);
        assert_eq!(
            decode_payload::<Request>(&trailing),
            Err(FrameError::Trailing(1))
        );
    }
}
