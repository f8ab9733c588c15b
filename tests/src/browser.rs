//! A page as a person sees it: Debian's headless Chromium takes a screenshot
//! (or prints the DOM it built) of a page on 127.0.0.1, and tesseract reads the
//! screenshot's text back.
//!
//! Chromium runs with a profile of its own in the caller's directory, in a process
//! group of its own (killed as a group, by its id, when it overruns), and with every
//! name but loopback mapped to nothing and a dead proxy for anything else, so it
//! reaches nothing but the page (no update checks, no safe-browsing lists).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one Chromium run may take.
pub const LIMIT: Duration = Duration::from_secs(60);

/// The browser's and the OCR's programs.
pub const CHROMIUM: &str = "chromium";
pub const TESSERACT: &str = "tesseract";

fn chromium(profile: &Path, extra: &[&str], url: &str) -> Command {
    let mut c = Command::new(CHROMIUM);
    c.args([
        "--headless=new",
        // Root in a container has no user namespace sandbox to give.
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--metrics-recording-only",
        "--hide-scrollbars",
        // Nothing but the page: no name resolves, and whatever is not loopback (which
        // Chromium never proxies) goes to a port where nobody listens.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--proxy-server=http://127.0.0.1:9",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .env("HOME", profile)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    // Its own process group: the renderer and GPU helpers go with it.
    .process_group(0);
    c
}

/// Runs `cmd` (in a process group of its own) for at most [`LIMIT`]: its stdout, or
/// what went wrong with its stderr.
fn run_bounded(mut cmd: Command, what: &str) -> Result<String, String> {
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if start.elapsed() < LIMIT => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                // The leader is not reaped yet, so its group id is still ours.
                // SAFETY: kill(2) on the process group we created.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
                let _ = child.wait();
                break None;
            }
        }
    };
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    let stdout = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    match status {
        Some(st) if st.success() => Ok(stdout),
        Some(st) => Err(format!("{what}: {st}\n{stderr}")),
        None => Err(format!("{what}: killed after {LIMIT:?}\n{stderr}")),
    }
}

/// A PNG of `url` in `png` as a `width`x`height` window shows it, drawn at `scale`
/// device pixels per CSS pixel (2 gives tesseract letters twice as tall, which it
/// reads far more surely), with Chromium's profile in `profile`.
pub fn screenshot(
    url: &str,
    png: &Path,
    profile: &Path,
    (width, height): (u32, u32),
    scale: u32,
) -> Result<(), String> {
    let shot = format!("--screenshot={}", png.display());
    let size = format!("--window-size={width},{height}");
    let scale = format!("--force-device-scale-factor={scale}");
    run_bounded(
        chromium(profile, &[&shot, &size, &scale], url),
        "chromium --screenshot",
    )?;
    match std::fs::metadata(png) {
        Ok(m) if m.len() > 0 => Ok(()),
        _ => Err(format!("chromium wrote no screenshot at {}", png.display())),
    }
}

/// The DOM Chromium built from `url`, serialized.
pub fn dump_dom(url: &str, profile: &Path) -> Result<String, String> {
    run_bounded(
        chromium(profile, &["--dump-dom"], url),
        "chromium --dump-dom",
    )
}

/// The text tesseract reads in `png`.
pub fn ocr(png: &Path) -> Result<String, String> {
    let mut c = Command::new(TESSERACT);
    c.arg(png)
        .arg("-")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    run_bounded(c, "tesseract")
}
