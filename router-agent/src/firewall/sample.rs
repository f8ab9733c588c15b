//! The benchmark's plan generator, shared by the unit tests and
//! `examples/firewall_bench.rs` (which includes this file with `#[path]`):
//! test data, not part of the agent.

use std::net::Ipv4Addr;

use netcontainer_proto::{Forward, Protocol};

/// A mix of `n` forwards for the benchmark and the tests: two thirds single
/// ports with another target port, one third port-preserving ranges of 10,
/// alternating tcp/udp, over `addresses` target addresses (1 to 250).
pub fn sample_forwards(n: usize, addresses: usize) -> Vec<Forward> {
    let addresses = addresses.clamp(1, 250);
    let mut next = [1024u16, 1024u16];
    (0..n)
        .map(|i| {
            let (protocol, slot) = if i % 2 == 0 {
                (Protocol::Tcp, 0)
            } else {
                (Protocol::Udp, 1)
            };
            let start = next[slot];
            let target_address = Ipv4Addr::new(192, 0, 2, 2 + (i % addresses) as u8);
            if i % 3 == 2 {
                next[slot] += 10;
                Forward {
                    protocol,
                    public_port: start,
                    public_port_end: start + 9,
                    target_address,
                    target_port: start,
                }
            } else {
                next[slot] += 1;
                Forward {
                    protocol,
                    public_port: start,
                    public_port_end: start,
                    target_address,
                    target_port: start.wrapping_add(30000).max(1),
                }
            }
        })
        .collect()
}
