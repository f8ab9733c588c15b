//! `netcontainer-fuzz TARGET --seconds N [--seed S] [--replay FILE]`
//!
//! A small mutation fuzzer (`scripts/fuzz --engine mutation`; the coverage-guided
//! libFuzzer build of the same targets is in fuzz/libfuzzer and is the default):
//! inputs are derived from built-in seeds by random mutations (bit flips, interesting
//! bytes and integers, truncation, extension, chunk duplication and deletion, splicing of
//! two seeds, and for DHCP raw options with absurd lengths). There is **no coverage
//! guidance**: the corpus does not grow, so depth comes from the seeds and the
//! structure-aware generators (the `dhcp` target drives the client through its states).
//!
//! The PRNG is seeded with a fixed seed by default, so a run is reproducible; `--seed`
//! varies it. Each input runs under `catch_unwind`; on the first panic the input is
//! written to `fuzz/crashes/<target>-<hash>.bin`, the path and the panic are printed, and
//! the exit status is 1. `--replay FILE` runs one saved input without catching the panic
//! (a crash input of the libFuzzer targets too: both read the same input formats).
//!
//! Targets: `frame` (control protocol framing), `packet` (raw IPv4/UDP parsing), `dhcp`
//! (the DHCP client state machine, after deterministic checks of ACKs with absurd values),
//! `dhcp6` (the DHCPv6 client state machine), `ra` (router advertisements and SLAAC),
//! `mdns` (the mDNS responder, from each of its states).
//!
//! For the strongest checks build with debug assertions and overflow checks
//! (scripts/fuzz --engine mutation does: `CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
//! CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true` in a separate target directory).

use netcontainer_fuzz::{dhcp, dhcp6, frame, last_panic, mdns, mutate, packet, rfc, rng};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const DEFAULT_SEED: u64 = 0x6e63_2d66_757a_7a01;
const USAGE: &str = "usage: netcontainer-fuzz frame|packet|dhcp|dhcp6|ra|mdns [--seconds N] [--seed S] [--replay FILE]";

enum Target {
    Frame(frame::FrameTarget),
    Packet(packet::PacketTarget),
    Dhcp(dhcp::DhcpTarget),
    Dhcp6(dhcp6::Dhcp6Target),
    Ra(dhcp6::RaTarget),
    Mdns(mdns::MdnsTarget),
}

impl Target {
    fn new(name: &str) -> Option<Target> {
        Some(match name {
            "frame" => Target::Frame(frame::FrameTarget::new()),
            "packet" => Target::Packet(packet::PacketTarget::new()),
            "dhcp" => Target::Dhcp(dhcp::DhcpTarget::new()),
            "dhcp6" => Target::Dhcp6(dhcp6::Dhcp6Target::new()),
            "ra" => Target::Ra(dhcp6::RaTarget::new()),
            "mdns" => Target::Mdns(mdns::MdnsTarget::new()),
            _ => return None,
        })
    }

    /// Generates one input into `input` and runs it.
    fn one(&mut self, rng: &mut rng::Rng, input: &mut Vec<u8>) {
        match self {
            Target::Frame(t) => {
                t.generate(rng, input);
                t.run(input);
            }
            Target::Packet(t) => {
                t.generate(rng, input);
                t.run(input);
            }
            Target::Dhcp(t) => t.generate_and_run(rng, input),
            Target::Dhcp6(t) => {
                t.generate(rng, input);
                t.run(input);
            }
            Target::Ra(t) => {
                t.generate(rng, input);
                t.run(input);
            }
            Target::Mdns(t) => {
                t.generate(rng, input);
                t.run(input);
            }
        }
    }

    fn replay(&mut self, input: &[u8]) {
        match self {
            Target::Frame(t) => t.run(input),
            Target::Packet(t) => t.run(input),
            Target::Dhcp(t) => t.replay(input),
            Target::Dhcp6(t) => t.run(input),
            Target::Ra(t) => t.run(input),
            Target::Mdns(t) => t.run(input),
        }
    }

    fn stats(&self) -> String {
        match self {
            Target::Frame(t) => format!("decoded messages: {}", t.decoded),
            Target::Packet(t) => format!("accepted frames: {}", t.accepted),
            Target::Dhcp6(t) => format!(
                "runs: {}, leases bound: {}, leases lost: {}",
                t.stats.runs, t.stats.bound, t.stats.lost
            ),
            Target::Ra(t) => format!("accepted advertisements: {}", t.accepted),
            Target::Mdns(t) => {
                let s = &t.stats;
                format!(
                    "runs: {}, packets fed: {}, transmits checked: {}, names claimed: {}, conflicts: {}",
                    s.runs, s.packets, s.transmits, s.claimed, s.conflicts
                )
            }
            Target::Dhcp(t) => {
                let s = &t.stats;
                format!(
                    "ops: {}, packets fed: {}, transmits checked: {}, leases bound: {} ({} infinite), leases lost: {}, steps in renewing: {}, in rebinding: {}",
                    s.ops,
                    s.packets,
                    s.transmits,
                    s.bound,
                    s.infinite,
                    s.lost,
                    s.renewing,
                    s.rebinding
                )
            }
        }
    }
}

fn crash_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crashes")
}

fn overflow_checks() -> bool {
    let r = catch_unwind(|| {
        let x: u8 = std::hint::black_box(255);
        std::hint::black_box(x + std::hint::black_box(1))
    });
    r.is_err()
}

struct Args {
    target: String,
    seconds: f64,
    seed: u64,
    replay: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        target: String::new(),
        seconds: 60.0,
        seed: DEFAULT_SEED,
        replay: None,
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--seconds" => {
                a.seconds = value("--seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?
            }
            "--seed" => {
                let v = value("--seed")?;
                a.seed = match v.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16),
                    None => v.parse(),
                }
                .map_err(|e| format!("--seed: {e}"))?;
            }
            "--replay" => a.replay = Some(value("--replay")?.into()),
            "-h" | "--help" => return Err(String::new()),
            t if !t.starts_with('-') && a.target.is_empty() => a.target = t.to_string(),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if a.target.is_empty() {
        return Err("no target".into());
    }
    if !(a.seconds >= 0.0 && a.seconds.is_finite()) {
        return Err("--seconds must be a non-negative number".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Some(mut target) = Target::new(&args.target) else {
        eprintln!("error: unknown target {:?}\n{USAGE}", args.target);
        return ExitCode::from(2);
    };

    if let Some(path) = &args.replay {
        let input = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        target.replay(&input);
        println!("{}: no crash", path.display());
        return ExitCode::SUCCESS;
    }

    netcontainer_fuzz::quiet_panics();
    let overflow = overflow_checks();
    println!(
        "netcontainer-fuzz: target {} for {} s, seed {:#x} (debug assertions {}, overflow checks {})",
        args.target,
        args.seconds,
        args.seed,
        if cfg!(debug_assertions) { "on" } else { "off" },
        if overflow { "on" } else { "off" },
    );

    let mut failed_checks = 0;
    if args.target == "dhcp" {
        let out = rfc::run();
        println!(
            "rfc checks: {} passed, {} failed",
            out.passed.len(),
            out.failed.len()
        );
        for (name, why) in &out.failed {
            println!("  FAILED: {name}: {why}");
        }
        for n in &out.notes {
            println!("  note: {n}");
        }
        failed_checks = out.failed.len();
    }

    let mut rng = rng::Rng::new(args.seed);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.seconds);
    let mut execs: u64 = 0;
    let mut input = Vec::with_capacity(4096);
    let mut crash: Option<(PathBuf, String)> = None;
    while Instant::now() < deadline {
        input.clear();
        let r = catch_unwind(AssertUnwindSafe(|| target.one(&mut rng, &mut input)));
        execs += 1;
        if r.is_err() {
            let dir = crash_dir();
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join(format!(
                "{}-{:016x}.bin",
                args.target,
                mutate::fnv1a(&input)
            ));
            if let Err(e) = std::fs::write(&path, &input) {
                eprintln!("error: cannot write {}: {e}", path.display());
            }
            crash = Some((path, last_panic()));
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rate = execs as f64 / elapsed.max(1e-9);
    println!("{}", target.stats());
    let crashes = u32::from(crash.is_some());
    println!(
        "RESULT target={} executions={execs} seconds={elapsed:.1} exec_per_sec={rate:.0} crashes={crashes} rfc_failures={failed_checks}",
        args.target
    );
    if let Some((path, msg)) = crash {
        println!("CRASH after {execs} executions: {msg}");
        println!("input written to {}", path.display());
        println!(
            "replay: cargo run --release -p netcontainer-fuzz -- {} --replay {}",
            args.target,
            path.display()
        );
        return ExitCode::FAILURE;
    }
    if failed_checks > 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
