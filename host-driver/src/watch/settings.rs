//! watch's settings ([`Settings`]): its flags, over its configuration file,
//! over the defaults.
//!
//! The configuration file holds watch's defaults, so that a unit's
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
//! ddns-server = "192.0.2.53"
//! ddns-zone = "lan.example"
//! ddns-key = "/etc/netcontainer/ddns.key"
//! ```
//!
//! A bad file (a syntax error, an unknown key, a value of the wrong type) is
//! one error line naming the file, the line and the key: watch refuses to
//! start rather than run with half of what the operator wrote.
//!
//! The file can name a command watch runs as root (`on-change`) and the
//! router image it runs with `NET_ADMIN`, so whoever can write it is root:
//! a file not owned by root (or by the user watch runs as), or writable by
//! its group or by others, is refused ([`check_owner`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::docker::default_image;
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
    pub dhcp_server: Option<String>,
    pub deny_dhcp_server: Option<String>,
    /// `"off"` (or `false`): no mDNS for services without the label (flag
    /// `--mdns off`).
    #[serde(default, deserialize_with = "on_off")]
    pub mdns: Option<bool>,
    /// Dynamic DNS (`crate::ddns`): all three or none.
    pub ddns_server: Option<String>,
    pub ddns_zone: Option<String>,
    pub ddns_key: Option<PathBuf>,
    // The routing mode goes here when `watch --source gateway|masquerade`
    // lands: `pub source: Option<Source>,` (key `source`), resolved like
    // `mode` in `Settings::resolve`.
}

impl WatchConfig {
    /// `self` where it says something, else `below`.
    pub fn over(self, below: WatchConfig) -> WatchConfig {
        WatchConfig {
            parent: self.parent.or(below.parent),
            mode: self.mode.or(below.mode),
            image: self.image.or(below.image),
            timeout: self.timeout.or(below.timeout),
            resync: self.resync.or(below.resync),
            release_when_stopped: self.release_when_stopped.or(below.release_when_stopped),
            metrics: self.metrics.or(below.metrics),
            on_change: self.on_change.or(below.on_change),
            no_whoami: self.no_whoami.or(below.no_whoami),
            host_address: self.host_address.or(below.host_address),
            no_host_route: self.no_host_route.or(below.no_host_route),
            dhcp_server: self.dhcp_server.or(below.dhcp_server),
            deny_dhcp_server: self.deny_dhcp_server.or(below.deny_dhcp_server),
            mdns: self.mdns.or(below.mdns),
            ddns_server: self.ddns_server.or(below.ddns_server),
            ddns_zone: self.ddns_zone.or(below.ddns_zone),
            ddns_key: self.ddns_key.or(below.ddns_key),
        }
    }
}

/// `"on"`/`"off"` as the flag spells it, or a TOML boolean.
fn on_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("\"on\", \"off\" or a boolean")
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
            match v {
                "on" => Ok(true),
                "off" => Ok(false),
                _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
            }
        }
    }
    d.deserialize_any(V).map(Some)
}

/// Watch's settings: the flags, over the configuration file, over the
/// defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub parent: Option<String>,
    pub mode: Option<Kind>,
    pub image: String,
    pub release_when_stopped: bool,
    pub timeout: u64,
    pub resync: u64,
    pub metrics: Option<SocketAddr>,
    pub on_change: Option<String>,
    pub poll: u64,
    pub no_whoami: bool,
    pub host_address: Option<std::net::Ipv4Addr>,
    pub no_host_route: bool,
    /// The DHCP servers of labelled services without their own list.
    pub dhcp_servers: netcontainer_proto::DhcpServers,
    /// mDNS for labelled services without `netcontainer.mdns`.
    pub mdns: bool,
    /// Where the dynamic DNS updates go (the key is read at start).
    pub ddns: Option<crate::ddns::Target>,
}

impl Settings {
    /// `flags` (the command line, as the keys of the file: a switch not
    /// given is `None`) over `file` over the defaults; `poll` is a flag
    /// only. A bad server list is an error.
    pub fn resolve(flags: WatchConfig, file: WatchConfig, poll: u64) -> Result<Settings, Error> {
        let c = flags.over(file);
        // A flag's list and the file's other list together are refused
        // as both flags together are.
        let dhcp_servers = crate::commands::dhcp_servers_args(
            c.dhcp_server.as_deref(),
            c.deny_dhcp_server.as_deref(),
        )?;
        // The three may come from the flags and the file mixed; together
        // they must be all or nothing.
        let ddns = crate::ddns::DdnsArgs {
            ddns_server: c.ddns_server,
            ddns_zone: c.ddns_zone,
            ddns_key: c.ddns_key,
        }
        .target()?;
        Ok(Settings {
            parent: c.parent,
            mode: c.mode,
            image: c.image.unwrap_or_else(default_image),
            release_when_stopped: c.release_when_stopped.unwrap_or(false),
            timeout: c.timeout.unwrap_or(30),
            resync: c.resync.unwrap_or(60),
            metrics: c.metrics,
            on_change: c.on_change.filter(|c| !c.trim().is_empty()),
            poll: poll.max(1),
            no_whoami: c.no_whoami.unwrap_or(false),
            host_address: c.host_address,
            no_host_route: c.no_host_route.unwrap_or(false),
            dhcp_servers,
            mdns: c.mdns.unwrap_or(true),
            ddns,
        })
    }
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
    let cannot_read = |e: std::io::Error| {
        Error::Config(format!(
            "cannot read the configuration file {}: {e}",
            path.display()
        ))
    };
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(e) => return Err(cannot_read(e)),
    };
    // The opened file's own metadata: what is checked is what is read.
    let meta = file.metadata().map_err(cannot_read)?;
    check_owner(&meta, nix::unistd::geteuid().as_raw())
        .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text).map_err(cannot_read)?;
    let config = parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
    Ok(Some((path, config)))
}

/// Refuses a file that someone other than root could have written: owned
/// by neither root nor `euid` (the user watch runs as, root in service), or
/// writable by its group or by others. The error is one line with the fix.
pub fn check_owner(meta: &std::fs::Metadata, euid: u32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let (uid, mode) = (meta.uid(), meta.mode() & 0o7777);
    if uid != 0 && uid != euid {
        return Err(format!(
            "owned by uid {uid}, not root: it can name a command watch runs as root \
             (chown root: the file)"
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "writable by its group or by others (mode {mode:04o}): it can name a command \
             watch runs as root (chmod go-w the file)"
        ));
    }
    Ok(())
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

    /// `mdns` in the file is spelled as the flag (`"on"`/`"off"`) or a boolean; off
    /// reaches the settings, absent is on, anything else is a one-line error.
    #[test]
    fn mdns_key_on_off_or_boolean() {
        for (text, want) in [
            ("mdns = \"off\"", Some(false)),
            ("mdns = \"on\"", Some(true)),
            ("mdns = false", Some(false)),
            ("", None),
        ] {
            let c = parse(text).unwrap();
            assert_eq!(c.mdns, want, "{text}");
            let s = Settings::resolve(WatchConfig::default(), c, 5).unwrap();
            assert_eq!(s.mdns, want.unwrap_or(true), "{text}");
        }
        let e = parse("mdns = \"maybe\"").unwrap_err();
        assert!(e.contains("line 1") && e.contains("mdns"), "{e}");
    }

    #[test]
    fn flags_beat_the_file_which_beats_the_defaults() {
        let file = parse(
            "parent = \"eth1\"\nmode = \"ipvlan\"\ntimeout = 45\nresync = 120\n\
             metrics = \"127.0.0.1:9311\"\non-change = \"true\"\nrelease-when-stopped = true\n",
        )
        .unwrap();
        let s = Settings::resolve(WatchConfig::default(), file.clone(), 5).unwrap();
        assert_eq!(
            s,
            Settings {
                parent: Some("eth1".into()),
                mode: Some(crate::leg::IPVLAN),
                image: default_image(),
                release_when_stopped: true,
                timeout: 45,
                resync: 120,
                metrics: Some("127.0.0.1:9311".parse().unwrap()),
                on_change: Some("true".into()),
                poll: 5,
                no_whoami: false,
                host_address: None,
                no_host_route: false,
                dhcp_servers: Default::default(),
                mdns: true,
                ddns: None,
            }
        );
        let flags = WatchConfig {
            parent: Some("eth0".into()),
            mode: Some(crate::leg::MACVLAN),
            timeout: Some(5),
            metrics: Some("127.0.0.1:9400".parse().unwrap()),
            image: Some("r:1".into()),
            on_change: Some(" ".into()),
            ..WatchConfig::default()
        };
        let s = Settings::resolve(flags, file, 0).unwrap();
        assert_eq!(s.parent.as_deref(), Some("eth0"));
        assert_eq!(s.mode, Some(crate::leg::MACVLAN));
        assert_eq!((s.timeout, s.resync, s.poll), (5, 120, 1));
        assert_eq!(s.metrics, Some("127.0.0.1:9400".parse().unwrap()));
        assert_eq!(s.image, "r:1");
        assert_eq!(s.on_change, None, "a blank command is none");
        assert!(s.release_when_stopped, "the file's, no flag said otherwise");
        // No file: the defaults; no metrics, no command.
        let d = Settings::resolve(WatchConfig::default(), WatchConfig::default(), 5).unwrap();
        assert_eq!((d.timeout, d.resync, d.poll), (30, 60, 5));
        assert_eq!((d.metrics, d.on_change, d.mode), (None, None, None));
        assert!(!d.release_when_stopped && !d.no_whoami && !d.no_host_route);
    }

    /// The dynamic DNS keys may come from the file and the flags mixed;
    /// together they are all three or none.
    #[test]
    fn ddns_keys_are_all_or_none() {
        let file =
            parse("ddns-zone = \"lan.example\"\nddns-key = \"/etc/netcontainer/ddns.key\"\n")
                .unwrap();
        let e = Settings::resolve(WatchConfig::default(), file.clone(), 5).unwrap_err();
        assert!(e.to_string().contains("all three or none"), "{e}");
        let flags = WatchConfig {
            ddns_server: Some("203.0.113.53:5353".into()),
            ..WatchConfig::default()
        };
        let t = Settings::resolve(flags, file, 5).unwrap().ddns.unwrap();
        assert_eq!(t.server, "203.0.113.53:5353".parse().unwrap());
        assert_eq!(t.zone.to_string(), "lan.example.");
        assert_eq!(t.key, PathBuf::from("/etc/netcontainer/ddns.key"));
    }

    #[test]
    fn dhcp_server_lists_are_checked() {
        let file = parse("deny-dhcp-server = \"192.0.2.1, 192.0.2.9\"\n").unwrap();
        let s = Settings::resolve(WatchConfig::default(), file.clone(), 5).unwrap();
        assert_eq!(
            s.dhcp_servers.deny,
            vec![
                "192.0.2.1".parse::<std::net::Ipv4Addr>().unwrap(),
                "192.0.2.9".parse().unwrap()
            ]
        );
        let both = WatchConfig {
            dhcp_server: Some("192.0.2.2".into()),
            ..WatchConfig::default()
        };
        assert!(Settings::resolve(both, file, 5).is_err());
        let bad = WatchConfig {
            dhcp_server: Some("dhcp.lan".into()),
            ..WatchConfig::default()
        };
        let e = Settings::resolve(bad, WatchConfig::default(), 5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--dhcp-server") && !e.contains('\n'), "{e}");
    }

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

    /// A file another user could have written is refused with one line; the
    /// same file owned by root and written only by its owner is read.
    #[test]
    fn a_file_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("nc-config-own-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("config.toml");
        std::fs::write(&f, "on-change = \"/usr/local/bin/hook\"\n").unwrap();
        let chmod =
            |m: u32| std::fs::set_permissions(&f, std::fs::Permissions::from_mode(m)).unwrap();
        chmod(0o644);
        assert!(load(Some(&f)).is_ok());
        for (mode, want) in [
            (0o664, "mode 0664"),
            (0o646, "mode 0646"),
            (0o666, "mode 0666"),
        ] {
            chmod(mode);
            let e = load(Some(&f)).unwrap_err().to_string();
            assert!(
                e.contains(want) && e.contains("config.toml") && !e.contains('\n'),
                "{e}"
            );
        }
        chmod(0o600);
        // Another owner: by chown where we are root, else the rule itself
        // on the file's metadata (we own it, so it stands for "not root").
        let meta = std::fs::metadata(&f).unwrap();
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&f, Some(65534), Some(65534)).unwrap();
            let e = load(Some(&f)).unwrap_err().to_string();
            assert!(
                e.contains("owned by uid 65534, not root") && !e.contains('\n'),
                "{e}"
            );
        } else {
            let e = check_owner(&meta, 0).unwrap_err();
            assert!(e.contains("not root"), "{e}");
        }
        assert!(check_owner(&meta, nix::unistd::geteuid().as_raw()).is_ok());
        let e = check_owner(&std::fs::metadata(&dir).unwrap(), 0).unwrap_err();
        assert_eq!(e, "not a regular file");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
