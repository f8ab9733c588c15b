//! A network namespace guard.

use crate::proc::ProcGuard;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

/// A network namespace created with `ip netns add`, deleted on drop. Processes spawned
/// through it ([`Netns::spawn`]) that still run at drop are killed by pid first.
pub struct Netns {
    name: String,
    children: Mutex<Vec<ProcGuard>>,
}

impl Netns {
    /// Create a namespace `name` (use [`crate::unique`]), with `lo` up.
    pub fn new(name: &str) -> std::io::Result<Netns> {
        // `ip netns add` can race with a concurrent first-time mount of /run/netns; retry.
        let mut last = String::new();
        for _ in 0..5 {
            match crate::try_run(Command::new("ip").args(["netns", "add", name])) {
                Ok(_) => {
                    let ns = Netns {
                        name: name.to_string(),
                        children: Mutex::new(Vec::new()),
                    };
                    crate::ip(&["-n", name, "link", "set", "lo", "up"]);
                    return Ok(ns);
                }
                Err(e) => {
                    last = e;
                    // A half-made namespace must not stay behind.
                    let _ = Command::new("ip")
                        .args(["netns", "del", name])
                        .stderr(Stdio::null())
                        .status();
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        Err(std::io::Error::other(last))
    }

    /// Names the network namespace of process `pid` (a container's, say) `name`
    /// (`ip netns attach`), so the helpers here run in it. Drop removes the name only;
    /// the namespace lives as long as its processes.
    pub fn attach(name: &str, pid: u32) -> std::io::Result<Netns> {
        crate::try_run(Command::new("ip").args(["netns", "attach", name, &pid.to_string()]))
            .map_err(std::io::Error::other)?;
        Ok(Netns {
            name: name.to_string(),
            children: Mutex::new(Vec::new()),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// A `Command` for `ip netns exec <name> args...`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    /// Run to completion inside the namespace; returns the output (never panics).
    pub fn exec(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {} {args:?}: {e}", self.name))
    }

    /// Run inside the namespace, panic unless it succeeds; returns stdout.
    pub fn exec_ok(&self, args: &[&str]) -> String {
        crate::run(self.command(args).stdin(Stdio::null()))
    }

    /// Spawn a long-running process inside the namespace (`ip netns exec` execs the
    /// program, so the child's pid is the program's pid). Output goes to `log` (both
    /// streams) if given. The namespace keeps a guard and kills it on drop; the returned
    /// pid can be used with [`Netns::signal`] / [`Netns::reap`].
    pub fn spawn(&self, args: &[&str], log: Option<&Path>) -> u32 {
        let mut c = self.command(args);
        c.stdin(Stdio::null());
        if let Some(p) = log {
            let f = File::create(p).expect("create log");
            c.stdout(f.try_clone().expect("dup")).stderr(f);
        }
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?} in {}: {e}", self.name));
        let pid = child.id();
        self.children
            .lock()
            .unwrap()
            .push(ProcGuard::new(child, args.join(" ")));
        pid
    }

    /// Spawn inside the namespace through `ip netns exec`, with extra environment, and
    /// return the guard to the caller (who then owns the process's life).
    pub fn spawn_guarded(
        &self,
        args: &[&str],
        envs: &[(&str, &str)],
        log: Option<&Path>,
    ) -> ProcGuard {
        let mut c = self.command(args);
        c.stdin(Stdio::null());
        for (k, v) in envs {
            c.env(k, v);
        }
        if let Some(p) = log {
            let f = File::create(p).expect("create log");
            c.stdout(f.try_clone().expect("dup")).stderr(f);
        }
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?} in {}: {e}", self.name));
        ProcGuard::new(child, args.join(" "))
    }

    /// Create an empty `/etc/netns/<name>/resolv.conf` (bind-mounted over /etc/resolv.conf
    /// by `ip netns exec`), so nothing run inside can touch the machine's resolver file.
    /// Removed on drop.
    pub fn isolate_resolv_conf(&self) {
        let dir = Path::new("/etc/netns").join(&self.name);
        std::fs::create_dir_all(&dir).expect("mkdir /etc/netns/NS");
        std::fs::write(dir.join("resolv.conf"), "").expect("write resolv.conf");
    }

    /// Spawn `cmd` with its network namespace set by `setns(2)` in a helper thread, without
    /// `ip netns exec` (no extra exec, no /etc/netns bind mounts, /sys stays the host's).
    /// Used where start-up latency is measured.
    pub fn spawn_direct(&self, cmd: &mut Command) -> std::io::Result<Child> {
        self.run_in(|| cmd.spawn())?
    }

    /// Run `f` in a fresh thread whose network namespace is this one. Sockets created in
    /// `f` belong to this namespace and stay so when moved out.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
        let file = File::open(self.path())?;
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a valid namespace fd; only this helper thread changes.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(f())
            })
            .join()
            .expect("netns thread panicked")
        })
    }

    /// Signal a process spawned through [`Netns::spawn`].
    pub fn signal(&self, pid: u32, sig: libc::c_int) {
        let mut ch = self.children.lock().unwrap();
        if let Some(g) = ch.iter_mut().find(|g| g.pid() == pid) {
            g.signal(sig);
        }
    }

    /// Wait up to `timeout` for a process spawned through [`Netns::spawn`] to exit.
    pub fn reap(&self, pid: u32, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut ch = self.children.lock().unwrap();
        let g = ch.iter_mut().find(|g| g.pid() == pid)?;
        g.wait_timeout(timeout)
    }

    /// `ip -n <name> args...`, panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        crate::ip(&a)
    }

    /// `nft -f -` inside the namespace with `ruleset` on stdin.
    pub fn nft(&self, ruleset: &str) {
        use std::io::Write;
        let mut c = self
            .command(&["nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nft");
        c.stdin
            .take()
            .unwrap()
            .write_all(ruleset.as_bytes())
            .unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft in {} failed: {}\n{ruleset}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill what we started in it, by pid, then delete the namespace.
        self.children.lock().unwrap().clear();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&self.name));
    }
}
