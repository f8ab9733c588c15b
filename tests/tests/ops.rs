//! The operator's tool, second part (issue 15), on the real Docker engine: `up --ip` and
//! the `netcontainer.ip` label, leases that survive a host reboot (persisted under the
//! lib directory), and `watch` with its configuration file, `--metrics` scraped over
//! HTTP, and `--on-change` fired by a renumbering. Root only; same bed as
//! `tests/docker.rs` (LAN 203.0.113.0/24 behind a blackhole route). Every test keeps
//! its driver state in directories of its own bed (`DockerBed::use_own_state_dirs`),
//! never in the host's `/run/netcontainer` or `/var/lib/netcontainer`.

use netcontainer_proto::contract;
use netcontainer_tests::docker::{self, DockerBed, SAMPLE_IMAGE, in_pool, router_name};
use netcontainer_tests::watch::{self, Watch, samples, scrape};
use netcontainer_tests::*;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn error_line(out: &agent::CmdOutput, msg: &str) {
    assert_eq!(
        out.status.and_then(|s| s.code()),
        Some(1),
        "expected exit 1: {out}"
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(msg),
        "expected `error: ...{msg}...`: {out}"
    );
    assert!(
        lines.len() == 1 || (lines.len() == 2 && lines[1].starts_with("hint: ")),
        "one error line (and a hint): {out}"
    );
}

/// `--ip` inside the pool gets that address; a taken one or one outside the pool is
/// another address (said on stderr), and with `--ip-strict` a failure that leaves
/// nothing behind and releases what the server gave; the label asks too.
#[test]
fn ip_asks_for_an_address_and_strict_refuses_another() {
    require_root!();
    let bed = DockerBed::new(12);
    bed.use_own_state_dirs();
    let want = Ipv4Addr::new(203, 0, 113, 77);
    let a = bed.run_service("a", &["--http", "80"]);
    let u = bed.up(&a.name, &["--ip", &want.to_string()]);
    assert_eq!(u.address, want, "{}", u.out);
    assert!(u.out.stderr.is_empty(), "nothing to say: {}", u.out);
    let label = docker::docker_ok(&[
        "inspect",
        "--format",
        "{{index .Config.Labels \"netcontainer.ip\"}}",
        &router_name(&a.name),
    ]);
    assert_eq!(label.trim(), want.to_string());

    // Taken by a: the server gives b another one.
    let b = bed.run_service("b", &["--http", "80"]);
    let out = bed.try_up(&b.name, &["--ip", &want.to_string(), "--ip-strict"]);
    error_line(
        &out,
        &format!("{}: asked the DHCP server for {want}, it gave ", b.name),
    );
    bed.assert_clean(&b.name);
    let given: Ipv4Addr = out
        .stderr
        .split(", it gave ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {out}"));
    assert!(in_pool(given) && given != want, "{out}");
    // The roll-back stopped the router: its agent released what it was given.
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(100), || bed
            .dnsmasq
            .lease_of(given)
            .is_none()),
        "{given} still leased after the roll-back: {:?}",
        bed.dnsmasq.leases()
    );

    // Outside the pool, not strict: up works and says what it got.
    let outside = Ipv4Addr::new(203, 0, 113, 200);
    let c = bed.run_service("c", &["--http", "80"]);
    let uc = bed.up(&c.name, &["--ip", &outside.to_string()]);
    assert!(in_pool(uc.address), "{}", uc.out);
    assert_eq!(
        uc.out.stderr.trim(),
        format!(
            "{}: asked the DHCP server for {outside}, it gave {} (taken, or outside its pool)",
            c.name, uc.address
        )
    );
    // ... and strict: refused, nothing left.
    let d = bed.run_service("d", &["--http", "80"]);
    let out = bed.try_up(&d.name, &["--ip", "203.0.113.201", "--ip-strict"]);
    error_line(&out, "asked the DHCP server for 203.0.113.201");
    assert!(out.stderr.contains("hint: "), "{out}");
    bed.assert_clean(&d.name);

    // The label asks as --ip does; a bad one is refused naming it, before anything.
    // (c's address came from dnsmasq's hash: the asked one steps aside if c holds it.)
    let ask = if uc.address == Ipv4Addr::new(203, 0, 113, 88) {
        Ipv4Addr::new(203, 0, 113, 89)
    } else {
        Ipv4Addr::new(203, 0, 113, 88)
    };
    let e = bed.container(
        "e",
        SAMPLE_IMAGE,
        &["--label", &format!("netcontainer.ip={ask}")],
        &["--http", "80"],
        true,
    );
    let ue = bed.up(&e.name, &[]);
    assert_eq!(ue.address, ask, "{}", ue.out);
    let f = bed.container(
        "f",
        SAMPLE_IMAGE,
        &["--label", "netcontainer.ip=203.0.113"],
        &["--http", "80"],
        true,
    );
    let out = bed.try_up(&f.name, &[]);
    error_line(&out, "label netcontainer.ip");
    bed.assert_clean(&f.name);

    let out = bed.nc(&["up", &a.name, "--ip", "203.0.113"]);
    assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{out}");
    assert!(out.stderr.contains("not an IPv4 address"), "{out}");
}

/// A reboot, simulated: the router is stopped as a host's shutdown stops it (SIGTERM from
/// dockerd: its agent keeps the lease, no RELEASE), `/run` is emptied; watch starts, heals
/// the router, and its agent claims its persisted lease again (INIT-REBOOT): the same
/// address. `down` then releases it and removes the lease directory.
#[test]
fn leases_survive_a_reboot() {
    require_root!();
    let bed = watch::bed(13);
    let (run, lib) = bed.use_own_state_dirs();
    let s = bed.run_service("s", &["--http", "80"]);
    let u = bed.up(&s.name, &[]);
    let (state, lease_dir) = bed.service_dirs(&s.name);
    let lease_file = lease_dir.join(contract::lease_file(contract::LAN_IF));
    let stored = std::fs::read_to_string(&lease_file)
        .unwrap_or_else(|e| panic!("{}: {e}", lease_file.display()));
    assert!(stored.contains(&format!("\"{}\"", u.address)), "{stored}");
    for d in [&lib, &lease_dir] {
        let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", d.display());
    }
    assert!(
        !state.join(contract::lease_file(contract::LAN_IF)).exists(),
        "the lease is not in /run"
    );

    // The "reboot": the router stopped as at a shutdown, the run directory gone.
    docker::docker_ok(&["stop", "-t", "10", &router_name(&s.name)]);
    assert!(
        !bed.dnsmasq.log().contains("DHCPRELEASE"),
        "a stop released the lease"
    );
    let stored = std::fs::read_to_string(&lease_file).unwrap();
    assert!(stored.contains("\"released\": false"), "{stored}");
    std::fs::remove_dir_all(&run).unwrap();

    let env = bed.driver_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut w = Watch::start(&bed, &[], &env);
    let again = watch::wait_bound(&bed, &s.name, Duration::from_secs(40));
    eprintln!(
        "after the reboot: bound again {:?} after watch started",
        w.started.elapsed()
    );
    w.assert_running();
    assert_eq!(again, Some(u.address), "{}", w.log());
    assert!(
        w.wait_line(Some(&s.name), "re-plumbed", Duration::from_secs(5)),
        "{}",
        w.log()
    );
    // INIT-REBOOT: the agent started from the persisted lease.
    let logs = all_logs(&router_name(&s.name));
    assert!(
        logs.contains(&format!("previous=Some({})", u.address)),
        "the agent did not claim its lease again:\n{logs}"
    );
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the run directory made again root-only");
    let served = watch::wait_serves(&bed, u.address, 80, &s.name, Duration::from_secs(10));
    assert!(served.is_ok(), "{served:?}");
    w.stop();

    let out = bed.nc(&["down", &s.name]);
    assert!(out.ok(), "{out}");
    assert!(!lease_dir.exists(), "down leaves the lease directory");
    bed.assert_clean(&s.name);
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(100), || bed
            .dnsmasq
            .log()
            .contains(&format!("DHCPRELEASE(br0) {}", u.address))),
        "down did not release the lease"
    );
}

/// Everything a container logged (the agent logs to stderr).
fn all_logs(container: &str) -> String {
    let o = std::process::Command::new("docker")
        .args(["logs", container])
        .output()
        .expect("docker logs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// watch takes its defaults from a configuration file (parent, metrics address,
/// on-change command), serves the metrics over HTTP (lease, state, traffic), and when
/// the LAN's DHCP server renumbers (a new pool, the router restarted) logs one WARN
/// with the old and new address and runs the command with them in its environment.
#[test]
fn watch_config_metrics_and_on_change() {
    require_root!();
    let mut bed = watch::bed(14);
    bed.use_own_state_dirs();
    let port = watch::free_port();
    let hook_out = bed.tmp.join("hook.env");
    let config = bed.tmp.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "# watch's defaults\nparent = \"{}\"\nmode = \"macvlan\"\ntimeout = 20\n\
             metrics = \"127.0.0.1:{port}\"\n\
             on-change = \"env | grep -E '^NETCONTAINER_(SERVICE|OLD_ADDRESS|NEW_ADDRESS)=' | sort \
             > {out}.tmp && mv {out}.tmp {out}\"\n",
            bed.parent,
            out = hook_out.display()
        ),
    )
    .unwrap();
    let env = bed.driver_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut w = Watch::start(
        &bed,
        &["--config", &config.display().to_string(), "--poll", "1"],
        &env,
    );
    let s = watch::labelled_service(&bed, "s", &[]);
    let addr = watch::wait_bound(&bed, &s.name, Duration::from_secs(40))
        .unwrap_or_else(|| panic!("no lease:\n{}", w.log()));
    assert!(w.log().contains("configuration file read"), "{}", w.log());

    // Metrics, once the poll saw the lease; then traffic through the router shows up.
    let svc = format!("service=\"{}\"", s.name);
    let key = |name: &str, extra: &str| format!("netcontainer_{name}{{{svc}{extra}}}");
    let got = wait_for(Duration::from_secs(15), Duration::from_millis(250), || {
        let m = samples(&scrape(port).ok()?);
        (m.get(&key("service_up", "")) == Some(&1.0)).then_some(m)
    });
    let m = got.unwrap_or_else(|| panic!("no service_up 1: {:?}\n{}", scrape(port), w.log()));
    let expiry = m[&key("lease_expiry_seconds", "")];
    assert!(expiry > 0.0 && expiry <= 600.0, "expiry {expiry}");
    assert_eq!(m[&key("lease_state", ",state=\"bound\"")], 1.0);
    assert_eq!(m[&key("lease_state", ",state=\"selecting\"")], 0.0);
    assert_eq!(m[&key("agent_up", "")], 1.0);
    for c in ["renewals_total", "naks_total", "rebinds_total"] {
        assert_eq!(m.get(&key(c, "")), Some(&0.0), "{c}");
    }
    let page = bed
        .fetch(addr, 80, 5)
        .expect("the service through its router");
    assert_eq!(page.trim(), watch::page(&s.name, 80));
    let fwd = key("forward_packets_total", ",protocol=\"tcp\",port=\"80\"");
    let traffic = wait_for(Duration::from_secs(10), Duration::from_millis(250), || {
        let m = samples(&scrape(port).ok()?);
        m.get(&fwd).copied().filter(|p| *p > 0.0)
    });
    assert!(traffic.is_some(), "{fwd} never above 0: {:?}", scrape(port));
    let bytes = key("forward_bytes_total", ",protocol=\"tcp\",port=\"80\"");
    assert!(samples(&scrape(port).unwrap())[&bytes] > 0.0);

    // The label netcontainer.ip under watch: a free address in the pool is given; one
    // outside it is not, and watch says so. dnsmasq picks s's address from a hash, so
    // the asked one steps aside when s holds it.
    let ask = if addr == Ipv4Addr::new(203, 0, 113, 90) {
        Ipv4Addr::new(203, 0, 113, 91)
    } else {
        Ipv4Addr::new(203, 0, 113, 90)
    };
    let t = watch::labelled_service(&bed, "t", &["--label", &format!("netcontainer.ip={ask}")]);
    let x = watch::labelled_service(&bed, "x", &["--label", "netcontainer.ip=203.0.113.201"]);
    assert_eq!(
        watch::wait_bound(&bed, &t.name, Duration::from_secs(40)),
        Some(ask),
        "{}",
        w.log()
    );
    let xa = watch::wait_bound(&bed, &x.name, Duration::from_secs(40))
        .unwrap_or_else(|| panic!("no lease for {}:\n{}", x.name, w.log()));
    assert!(in_pool(xa), "{xa}");
    assert!(
        w.wait_line(
            Some(&x.name),
            "another address than the label netcontainer.ip asks for",
            Duration::from_secs(5)
        ),
        "{}",
        w.log()
    );

    // Renumbering: the server moves to another pool; the router restarts (its agent
    // keeps the lease, claims it again, the server refuses it): another address.
    let mut opts = bed.dnsmasq.opts().clone();
    opts.range = (
        Ipv4Addr::new(203, 0, 113, 160),
        Ipv4Addr::new(203, 0, 113, 170),
    );
    bed.dnsmasq.stop();
    bed.dnsmasq = Dnsmasq::start(&bed.lan, opts);
    let restarted = std::time::Instant::now();
    docker::docker_ok(&["restart", "-t", "5", &router_name(&s.name)]);
    let hook = wait_for(Duration::from_secs(60), Duration::from_millis(250), || {
        std::fs::read_to_string(&hook_out).ok()
    })
    .unwrap_or_else(|| panic!("--on-change never ran:\n{}", w.log()));
    eprintln!(
        "renumbering: --on-change ran {:?} after the router restart began",
        restarted.elapsed()
    );
    let new: Ipv4Addr = hook
        .lines()
        .find_map(|l| l.strip_prefix("NETCONTAINER_NEW_ADDRESS="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{hook}"));
    assert_eq!(
        hook,
        format!(
            "NETCONTAINER_NEW_ADDRESS={new}\nNETCONTAINER_OLD_ADDRESS={addr}\nNETCONTAINER_SERVICE={}\n",
            s.name
        )
    );
    assert!((160..=170).contains(&new.octets()[3]), "{new}");
    let warns: Vec<String> = w
        .lines_of(&s.name)
        .into_iter()
        .filter(|l| l.contains("WARN") && l.contains("address changed"))
        .collect();
    assert_eq!(warns.len(), 1, "{}", w.log());
    assert!(
        warns[0].contains(&format!("old={addr}")) && warns[0].contains(&format!("new={new}")),
        "{}",
        warns[0]
    );
    let changes = wait_for(Duration::from_secs(5), Duration::from_millis(250), || {
        samples(&scrape(port).ok()?)
            .get(&key("address_changes_total", ""))
            .copied()
    });
    assert_eq!(changes, Some(1.0));
    let m = samples(&scrape(port).unwrap());
    assert!(
        m.get(&key("heals_total", "")).is_some_and(|h| *h >= 1.0),
        "the re-plumb after the restart is a heal"
    );
    // The old address claimed again (INIT-REBOOT) and refused by the new pool's server.
    assert!(
        bed.dnsmasq.log().contains("DHCPNAK"),
        "{}",
        bed.dnsmasq.log()
    );
    assert_eq!(m.get(&key("naks_total", "")), Some(&1.0), "{m:?}");
    w.assert_running();

    // The service goes: watch takes its router down, and the next poll drops every
    // series of it, its heals and address changes included.
    docker::docker_ok(&["rm", "-f", &s.name]);
    let gone = wait_for(Duration::from_secs(30), Duration::from_millis(250), || {
        let text = scrape(port).ok()?;
        (!text.contains(&svc)).then_some(())
    });
    assert!(
        gone.is_some(),
        "series of the removed service remain: {:?}",
        scrape(port)
    );
}

/// A bad configuration file stops watch at once with one line naming the file, the
/// line and the key; so does a missing file named with --config (the default one may
/// be missing).
#[test]
fn a_bad_config_file_is_one_line() {
    let dir = TempDir::new("config");
    let bad = dir.join("config.toml");
    std::fs::write(&bad, "parent = \"eth0\"\ntimeout = \"soon\"\n").unwrap();
    let run = |path: &std::path::Path| {
        let out = std::process::Command::new(bin("netcontainer"))
            .args(["watch", "--config"])
            .arg(path)
            .env("NETCONTAINER_LOG", "off")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&bad);
    assert_eq!(code, Some(1), "{err}");
    let first = err.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "error: {}: line 2: key `timeout`: invalid type: string \"soon\", expected u64",
            bad.display()
        )
    );
    assert!(
        err.lines().nth(1).is_some_and(|l| l.starts_with("hint: ")),
        "{err}"
    );
    assert_eq!(err.lines().count(), 2, "{err}");
    let (code, err) = run(&dir.join("missing.toml"));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.starts_with("error: cannot read the configuration file")
            && err.contains("missing.toml"),
        "{err}"
    );
    // A file others may write (it can name a command watch runs as root) is refused
    // before it is parsed, with one line naming it.
    use std::os::unix::fs::PermissionsExt;
    let open = dir.join("open.toml");
    std::fs::write(&open, "on-change = \"/bin/true\"\n").unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, err) = run(&open);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err.lines().next().unwrap_or_default(),
        format!(
            "error: {}: writable by its group or by others (mode 0666): it can name a command \
             watch runs as root (chmod go-w the file)",
            open.display()
        )
    );
}
