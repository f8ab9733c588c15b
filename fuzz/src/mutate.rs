//! Byte-level mutations (no coverage feedback: inputs are always derived from the seeds).

use crate::rng::Rng;

pub const INTERESTING_U8: [u8; 7] = [0, 1, 0x7f, 0x80, 0xfe, 0xff, 0x40];
pub const INTERESTING_U16: [u16; 8] = [0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff];
pub const INTERESTING_U32: [u32; 9] = [
    0,
    1,
    0xff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x0040_0000, // MAX_FRAME_LEN
    0x0040_0001,
    0xffff_fffe,
];

/// Applies 1 to `max` stacked mutations to `data`. `other` is a second seed for splicing.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], max: usize) {
    let n = rng.range(1, max.max(1));
    for _ in 0..n {
        mutate_once(rng, data, other);
    }
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    let len = data.len();
    match rng.below(11) {
        // Bit flip.
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        // Interesting byte.
        1 if len > 0 => {
            let i = rng.below(len);
            data[i] = *rng.pick(&INTERESTING_U8);
        }
        // Interesting big-endian u16 / u32 (length fields).
        2 if len >= 2 => {
            let i = rng.below(len - 1);
            let v = *rng.pick(&INTERESTING_U16);
            data[i..i + 2].copy_from_slice(&v.to_be_bytes());
        }
        3 if len >= 4 => {
            let i = rng.below(len - 3);
            let v = *rng.pick(&INTERESTING_U32);
            data[i..i + 4].copy_from_slice(&v.to_be_bytes());
        }
        // Truncation.
        4 => data.truncate(rng.below(len + 1)),
        // Extension with random bytes (now and then a lot).
        5 => {
            let n = if rng.chance(5) {
                rng.range(256, 4096)
            } else {
                rng.range(1, 32)
            };
            let extra = rng.bytes(n);
            data.extend_from_slice(&extra);
        }
        // Chunk duplication.
        6 if len > 0 => {
            let a = rng.below(len);
            let l = rng.range(1, (len - a).min(64));
            let chunk = data[a..a + l].to_vec();
            let at = rng.below(len + 1);
            data.splice(at..at, chunk);
        }
        // Splice with the other seed.
        7 if !other.is_empty() => {
            let i = rng.below(len + 1);
            let j = rng.below(other.len());
            data.truncate(i);
            data.extend_from_slice(&other[j..]);
        }
        // Random byte.
        8 if len > 0 => {
            let i = rng.below(len);
            data[i] = rng.u8();
        }
        // Chunk deletion.
        9 if len > 0 => {
            let a = rng.below(len);
            let l = rng.range(1, (len - a).min(16));
            data.drain(a..a + l);
        }
        // Random bytes inserted.
        10 => {
            let at = rng.below(len + 1);
            let n = rng.range(1, 8);
            let extra = rng.bytes(n);
            data.splice(at..at, extra);
        }
        _ => {
            let extra = rng.u8();
            data.push(extra);
        }
    }
}

/// FNV-1a, for crash file names.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
