//! MAC addresses as the driver reads and prints them. A MAC given by the
//! operator (`--mac`, label `netcontainer.mac`) must be unicast and locally
//! administered.

pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let bad = || format!("invalid MAC address {s:?} (expected 6 hex bytes like 02:00:00:00:00:01)");
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(bad());
        }
        mac[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 == 1 {
        return Err(format!("{s} is a multicast MAC address"));
    }
    // A universally administered MAC belongs to some vendor's device (the
    // LAN's gateway, say): taking it would steal that device's traffic.
    if mac[0] & 2 == 0 {
        return Err(format!(
            "{s} is not a locally administered MAC address (its first byte must have bit 0x02 set, e.g. 02:...)"
        ));
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_and_print() {
        let m = parse_mac("02:42:ac:11:00:02").unwrap();
        assert_eq!(format_mac(&m), "02:42:ac:11:00:02");
        assert!(parse_mac("01:00:5e:00:00:01").is_err());
        assert!(parse_mac("03:00:00:00:00:01").is_err(), "multicast");
        let e = parse_mac("00:11:22:33:44:55").unwrap_err();
        assert!(e.contains("not a locally administered"), "{e}");
        assert!(parse_mac("00:00:00:00:00:00").is_err());
        assert!(parse_mac("02:42:ac:11:00").is_err());
        assert!(parse_mac("zz:42:ac:11:00:02").is_err());
    }
}
