//! Apply time of the agent's nftables table for 1, 100, 1,000 and 10,000
//! forwards, in a network namespace of its own (needs root).
//!
//! `cargo run --release -p netcontainer-agent --example firewall_bench [RUNS]`
//!
//! The render column is building the model and rendering it as nft's batch.
//!
//! The mix: two thirds single ports with another target port, one third
//! port-preserving ranges of 10 ports, alternating tcp/udp, 50 target
//! addresses (or one: the usual case, a single service container). The time
//! is from calling `Firewall::apply` (validation, rendering, `nft -j -f -`)
//! to its return (rules in the kernel). The floor lines show nft's fixed
//! cost: an empty batch, and the grace-period wait of any batch that
//! deletes. nft runs directly (the process enters the namespace), not
//! through `ip netns exec`.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use netcontainer_agent::firewall::nft::{Nft, build::build4, render};
use netcontainer_agent::firewall::{Firewall, Ipv4Policy, Ipv6Policy, Policy, Runner};
use netcontainer_proto::Forward;

// Test data, shared with the firewall's unit tests but not compiled into
// the agent.
#[path = "../src/firewall/sample.rs"]
mod sample;
use sample::sample_forwards;

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let name = format!("nc-fwbench-{}", std::process::id());
    let ok = Command::new("ip")
        .args(["netns", "add", &name])
        .status()
        .expect("run ip");
    assert!(ok.success(), "ip netns add failed (needs root)");
    let ns = Netns(name);
    // Enter the namespace on this thread before any other thread exists, so
    // that the runtime and every nft it spawns live in it.
    let f = std::fs::File::open(format!("/run/netns/{}", ns.0)).expect("open netns");
    // SAFETY: valid fd, single-threaded at this point.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let lease = Ipv4Addr::new(198, 51, 100, 10);
    let fw = Firewall::by_name(Nft::NAME, Runner::default()).expect("the nft backend");
    let nft = Nft::new(Runner::default());
    // The floor: starting nft, and the RCU grace period that any batch
    // deleting something waits for when nft closes its netlink socket.
    for (what, batch) in [
        ("empty batch", r#"{"nftables":[]}"#.to_string()),
        (
            "add+delete of an empty table",
            r#"{"nftables":[{"add":{"table":{"family":"ip","name":"nc_floor"}}},{"delete":{"table":{"family":"ip","name":"nc_floor"}}}]}"#
                .to_string(),
        ),
    ] {
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                rt.block_on(nft.apply_batch(&batch)).expect("floor batch");
                t.elapsed()
            })
            .collect();
        println!("floor, {what}: median {} ms", ms(median(&mut times)));
    }
    for (counters, addresses) in [(true, 1), (true, 50), (false, 1)] {
        let fw = fw.clone().with_counters(counters);
        println!(
            "\ncounters={counters} target-addresses={addresses} (runs={runs})\n\
             forwards  ports  elements  batch-bytes  render-ms  apply-median-ms  min-ms  max-ms"
        );
        for n in [1usize, 100, 1_000, 10_000] {
            let forwards = sample_forwards(n, addresses);
            let ports: u32 = forwards.iter().map(Forward::len).sum();
            // As the agent applies it: with the (isolating) IPv6 twin.
            let policy = Policy {
                lan_if: "lan0".into(),
                v4: Ipv4Policy {
                    lease: Some(lease),
                    forwards,
                    gateway_for: None,
                    mss: None,
                },
                v6: Some(Ipv6Policy::default()),
            };
            // The render column and the sizes are the IPv4 table's.
            let v4 = || build4(fw.settings(), &policy.lan_if, &policy.v4);
            let mut renders: Vec<Duration> = (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(render(&v4()));
                    t.elapsed()
                })
                .collect();
            let render_t = median(&mut renders);
            let batch = render(&v4());
            let doc: serde_json::Value = serde_json::from_str(&batch).unwrap();
            let elements: usize = doc["nftables"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|c| c["add"].get("set").or_else(|| c["add"].get("map")))
                .map(|s| s["elem"].as_array().map_or(0, Vec::len))
                .sum();
            let bytes = batch.len();
            rt.block_on(fw.apply(&policy)).expect("warm-up apply");
            let mut times: Vec<Duration> = (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    rt.block_on(fw.apply(&policy)).expect("apply");
                    t.elapsed()
                })
                .collect();
            let med = median(&mut times);
            println!(
                "{n:>8}  {ports:>5}  {elements:>8}  {bytes:>11}  {:>9}  {:>15}  {:>6}  {:>6}",
                ms(render_t),
                ms(med),
                ms(times[0]),
                ms(times[times.len() - 1])
            );
        }
    }
    rt.block_on(fw.remove()).expect("remove");
    drop(ns);
}
