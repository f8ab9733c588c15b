//! The configuration file of `watch`: its defaults, so that a unit's
//! `ExecStart` need not carry them. `/etc/netcontainer/config.toml` unless
//! `--config PATH` or `NETCONTAINER_CONFIG` names another; the default file
//! may be missing, a named one may not.
//!
//! The keys are watch's flags without the dashes, and a flag given on the
//! command line beats the file:
//!
//! ```toml
//! parent = "eth0"
//! mode = "macvlan"
//! image = "registry.example.com/netcontainer/router:0.1.0"
//! timeout = 30
//! resync = 60
//! release-when-stopped = false
//! metrics = "127.0.0.1:9311"
//! on-change = "/usr/local/bin/update-dns"
//! ```
//!
//! A bad file (a syntax error, an unknown key, a value of the wrong type) is
//! one error line naming the file, the line and the key: watch refuses to
//! start rather than run with half of what the operator wrote.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;
use crate::leg::Kind;

/// Where watch looks when no path is given.
pub const DEFAULT_PATH: &str = "/etc/netcontainer/config.toml";
/// Names the file when `--config` does not.
pub const ENV: &str = "NETCONTAINER_CONFIG";

/// What the file may set. Every field is optional: what it leaves out is
/// the flag's default.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WatchConfig {
    pub parent: Option<String>,
    pub mode: Option<Kind>,
    pub image: Option<String>,
    pub timeout: Option<u64>,
    pub resync: Option<u64>,
    pub release_when_stopped: Option<bool>,
    pub metrics: Option<SocketAddr>,
    pub on_change: Option<String>,
    pub no_whoami: Option<bool>,
    pub host_address: Option<std::net::Ipv4Addr>,
    pub no_host_route: Option<bool>,
    // The routing mode goes here when `watch --source gateway|masquerade`
    // lands: `pub source: Option<Source>,` (key `source`), resolved like
    // `mode` in `commands::watch::Settings::resolve`.
}

/// Which file, and whether it must exist: one named by `--config` or by
/// [`ENV`] must; the default one need not.
pub fn locate(flag: Option<&Path>) -> (PathBuf, bool) {
    match flag {
        Some(p) => (p.to_path_buf(), true),
        None => match std::env::var_os(ENV).filter(|v| !v.is_empty()) {
            Some(p) => (PathBuf::from(p), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        },
    }
}

/// Reads the file `flag` (or [`locate`]'s) names; `None` when the default
/// file is not there.
pub fn load(flag: Option<&Path>) -> Result<Option<(PathBuf, WatchConfig)>, Error> {
    let (path, required) = locate(flag);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot read the configuration file {}: {e}",
                path.display()
            )));
        }
    };
    let config = parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    Ok(Some((path, config)))
}

/// Parses a file's text; the error is one line: `line N: key K: what`.
pub fn parse(text: &str) -> Result<WatchConfig, String> {
    toml::from_str(text).map_err(|e| describe(text, &e))
}

fn describe(text: &str, e: &toml::de::Error) -> String {
    // One line, whatever the parser said.
    let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(span) = e.span() else {
        return message;
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].bytes().filter(|b| *b == b'\n').count() + 1;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or_default();
    // The key is what stands before `=` on that line (an unknown key's span
    // is the key itself; a wrong value's is the value).
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('#') && !k.starts_with('['));
    match key {
        Some(k) => format!(
            "line {line_no}: key `{}`: {message}",
            crate::output::safe(&k)
        ),
        None => format!("line {line_no}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key() {
        let c = parse(
            r#"
# watch's defaults
parent = "eth0"
mode = "ipvlan"
image = "registry.example.com/netcontainer/router:0.1.0"
timeout = 45
resync = 120
release-when-stopped = true
metrics = "127.0.0.1:9311"
on-change = "/usr/local/bin/update-dns"
"#,
        )
        .unwrap();
        assert_eq!(
            c,
            WatchConfig {
                parent: Some("eth0".into()),
                mode: Some(crate::leg::IPVLAN),
                image: Some("registry.example.com/netcontainer/router:0.1.0".into()),
                timeout: Some(45),
                resync: Some(120),
                release_when_stopped: Some(true),
                metrics: Some("127.0.0.1:9311".parse().unwrap()),
                on_change: Some("/usr/local/bin/update-dns".into()),
                ..WatchConfig::default()
            }
        );
        assert_eq!(parse("").unwrap(), WatchConfig::default());
        assert_eq!(parse("# nothing\n").unwrap(), WatchConfig::default());
    }

    /// Every bad file is one line naming the line and, where there is one, the key.
    #[test]
    fn bad_files_name_line_and_key() {
        for (text, want) in [
            (
                "parent = \"eth0\"\nparnt = \"eth1\"\n",
                "line 2: key `parnt`: unknown field `parnt`",
            ),
            (
                "parent = \"eth0\"\n\ntimeout = \"soon\"\n",
                "line 3: key `timeout`: invalid type: string \"soon\", expected u64",
            ),
            (
                "mode = \"bridge\"\n",
                "line 1: key `mode`: unknown variant `bridge`",
            ),
            (
                "metrics = \"localhost\"\n",
                "line 1: key `metrics`: invalid socket address",
            ),
            (
                "release-when-stopped = yes\n",
                "line 1: key `release-when-stopped`",
            ),
            ("parent = \"eth0\"\nparent \"eth1\"\n", "line 2: "),
            (
                "[watch]\nparent = \"eth0\"\n",
                "line 1: unknown field `watch`",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(!e.contains('\n'), "one line: {e:?}");
            assert!(e.starts_with(want), "{text:?}: want {want:?}, got {e:?}");
        }
    }

    #[test]
    fn the_default_file_may_be_missing_a_named_one_may_not() {
        let dir = std::env::temp_dir().join(format!("nc-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.toml");
        let e = load(Some(&missing)).unwrap_err().to_string();
        assert!(e.contains("missing.toml") && !e.contains('\n'), "{e}");
        let good = dir.join("good.toml");
        std::fs::write(&good, "timeout = 5\n").unwrap();
        let (p, c) = load(Some(&good)).unwrap().unwrap();
        assert_eq!((p, c.timeout), (good.clone(), Some(5)));
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "timeout = 5\ntimeout = 6\n").unwrap();
        let e = load(Some(&bad)).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: line 2", bad.display())), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
