//! Image references and registry credentials, for pulling the router image
//! the way `docker pull` would: the registry a reference names, its tag, and
//! the login `docker login` left in `~/.docker/config.json`; and the pins
//! that say which content a router image reference must be (see [`Pin`]).

use std::path::{Path, PathBuf};

use base64::Engine;
use bollard::auth::DockerCredentials;

/// Docker Hub, as references name it when they name no registry.
pub const DOCKER_HUB: &str = "docker.io";
/// The key `docker login` uses for Docker Hub in `config.json`.
const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// An image reference split the way the daemon's pull needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Repository with its registry, without tag or digest
    /// (`127.0.0.1:5000/netcontainer/router`, `netcontainer/router`).
    pub repository: String,
    /// Tag or digest (`0.1.0`, `sha256:…`); `latest` when the reference has neither.
    pub tag: String,
    /// Registry host (and port): the first path component when it has a `.`
    /// or a `:` or is `localhost`, else Docker Hub.
    pub registry: String,
}

impl Reference {
    /// Parses `[REGISTRY/]PATH[:TAG][@DIGEST]`. Only splits: whether the
    /// name is valid is the daemon's call.
    pub fn parse(reference: &str) -> Result<Reference, String> {
        let r = reference.trim();
        if r.is_empty() || r.chars().any(char::is_whitespace) {
            return Err(format!("invalid image reference {reference:?}"));
        }
        let (name, digest) = match r.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (r, None),
        };
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
            None => (name, None),
        };
        if repository.is_empty()
            || repository.starts_with('/')
            || repository.ends_with('/')
            || tag == Some("")
            || digest == Some("")
        {
            return Err(format!("invalid image reference {reference:?}"));
        }
        // A digest pins the content; a tag next to it means nothing to a pull.
        let tag = digest.or(tag).unwrap_or("latest").to_string();
        Ok(Reference {
            repository: repository.to_string(),
            tag,
            registry: registry_of(repository),
        })
    }
}

/// `sha256:` and 64 lowercase hex digits: an image ID or a manifest digest.
pub fn is_sha256(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The content a router image reference must be. A tag can be moved to
/// other content (by whoever can push to the registry, or tag on the host);
/// a pin cannot, so a router is created from the pin, never from the tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    /// A local image's ID (`sha256:…`, the digest of its configuration):
    /// what `scripts/build-router-image` made on this host. No registry has
    /// it, so it cannot be pulled.
    ImageId(String),
    /// A registry's manifest digest: pulled and run as `repository@digest`
    /// (the daemon checks the content against the digest).
    Digest { repository: String, digest: String },
}

impl Pin {
    /// `sha256:…` (an image ID) or `REPOSITORY@sha256:…` (a digest in a
    /// registry), as `scripts/build-router-image` and
    /// `scripts/publish-router-image` record them.
    pub fn parse(s: &str) -> Result<Pin, String> {
        if is_sha256(s) {
            return Ok(Pin::ImageId(s.to_string()));
        }
        let Some((repository, digest)) = s.split_once('@') else {
            return Err(format!(
                "{s:?} is neither an image ID (sha256:<64 hex digits>) nor REPOSITORY@sha256:<64 hex digits>"
            ));
        };
        if !is_sha256(digest) {
            return Err(format!("{digest:?} is not sha256:<64 hex digits>"));
        }
        let r = Reference::parse(s)?;
        if r.repository != repository {
            return Err(format!("{repository:?} is not a repository (it has a tag)"));
        }
        Ok(Pin::Digest {
            repository: r.repository,
            digest: digest.to_string(),
        })
    }
}

/// Where the pins of the router images built or published on this host are
/// recorded (`NETCONTAINER_ROUTER_IMAGES`, for tests, or
/// `/var/lib/netcontainer/.router-images`): one `REFERENCE PIN` a line.
pub fn pins_path() -> PathBuf {
    std::env::var_os("NETCONTAINER_ROUTER_IMAGES")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/netcontainer/.router-images"))
}

/// The pin a release was built with, for the default image only
/// (`NETCONTAINER_ROUTER_IMAGE_DIGEST` when the driver was compiled:
/// `sha256:…` of `netcontainer/router:<version>` in its registry, or
/// `REPOSITORY@sha256:…`).
pub const BUILT_WITH: Option<&str> = option_env!("NETCONTAINER_ROUTER_IMAGE_DIGEST");

/// The pin of router image `reference`, first found of: a digest in the
/// reference itself (`--image REF@sha256:…`, the operator's own pin); the
/// last line for exactly `reference` in the record (`record`, the text of
/// [`pins_path`], named `record_name` in errors); the digest the driver was
/// built with, for the default image (`default`) only. `None`: unpinned
/// (the tag is used as it is). A record line that does not parse is an
/// error, never skipped: it was meant to pin something.
pub fn pin_of(
    reference: &str,
    record: &str,
    record_name: &Path,
    built_with: Option<&str>,
    default: &str,
) -> Result<Option<Pin>, String> {
    let reference = reference.trim();
    if reference.contains('@') {
        let r = Reference::parse(reference)?;
        if !is_sha256(&r.tag) {
            return Err(format!(
                "invalid image reference {reference:?}: the digest is not sha256:<64 hex digits>"
            ));
        }
        return Ok(Some(Pin::Digest {
            repository: r.repository,
            digest: r.tag,
        }));
    }
    let mut found = None;
    for (n, line) in record.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |e: String| format!("{} line {}: {e}", record_name.display(), n + 1);
        let mut fields = line.split_whitespace();
        let (Some(r), Some(pin), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(at("not REFERENCE PIN".into()));
        };
        let pin = Pin::parse(pin).map_err(at)?;
        if r == reference {
            found = Some(pin);
        }
    }
    if found.is_some() {
        return Ok(found);
    }
    match built_with.map(str::trim).filter(|b| !b.is_empty()) {
        Some(b) if reference == default => {
            let pin = if is_sha256(b) {
                Pin::Digest {
                    repository: Reference::parse(default)?.repository,
                    digest: b.to_string(),
                }
            } else {
                Pin::parse(b)?
            };
            Ok(Some(pin))
        }
        _ => Ok(None),
    }
}

/// The text of the pin record at `path` ("" when there is none). A record
/// that another user could have written is refused: it decides which image
/// runs, as root, with `NET_ADMIN`.
pub fn read_pins(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let euid = nix::unistd::geteuid().as_raw();
    if !meta.file_type().is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(format!(
            "{} is owned by uid {}, not root",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {:o})",
            path.display(),
            meta.mode() & 0o7777
        ));
    }
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The registry a repository lives in.
fn registry_of(repository: &str) -> String {
    match repository.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first.to_string(),
        _ => DOCKER_HUB.to_string(),
    }
}

/// A `config.json` key (`https://host:port/v1/`, `host:port`, …) reduced to
/// the host and port, as the docker CLI compares them.
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    )
}

/// What `config.json` says about a registry.
#[derive(Clone, Debug, PartialEq)]
pub enum Login {
    /// Credentials from `auths` (`auth`: base64 of `user:password`, or
    /// `username`/`password`, or an `identitytoken`).
    Found(DockerCredentials),
    /// No usable `auths` entry, but a credential helper (`credHelpers` or
    /// `credsStore`) holds the login; this driver does not run helpers.
    Helper(String),
    /// Nothing: pull anonymously.
    None,
}

/// Looks `registry` up in the text of a Docker `config.json`.
pub fn login_for(config_json: &str, registry: &str) -> Result<Login, String> {
    let v: serde_json::Value =
        serde_json::from_str(config_json).map_err(|e| format!("not JSON: {e}"))?;
    let hub = is_docker_hub(registry);
    let matches = |key: &str| {
        let h = key_host(key);
        h == registry || (hub && is_docker_hub(h))
    };
    if let Some(auths) = v.get("auths").and_then(|a| a.as_object()) {
        // The exact key first (`docker login` writes it), then any equivalent one.
        let mut entries: Vec<(&String, &serde_json::Value)> =
            auths.iter().filter(|(k, _)| matches(k)).collect();
        entries.sort_by_key(|(k, _)| k.as_str() != registry);
        for (key, entry) in entries {
            let field = |f: &str| {
                entry
                    .get(f)
                    .and_then(|x| x.as_str())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            };
            let mut username = field("username");
            let mut password = field("password");
            if let Some(auth) = field("auth") {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|e| format!("auths.{key:?}.auth is not base64: {e}"))?;
                let text = String::from_utf8(raw)
                    .map_err(|_| format!("auths.{key:?}.auth is not UTF-8"))?;
                let (u, p) = text
                    .split_once(':')
                    .ok_or_else(|| format!("auths.{key:?}.auth is not USER:PASSWORD"))?;
                username = Some(u.to_string());
                password = Some(p.to_string());
            }
            let identitytoken = field("identitytoken");
            if username.is_none() && password.is_none() && identitytoken.is_none() {
                // `docker login` with a helper leaves an empty entry here.
                continue;
            }
            return Ok(Login::Found(DockerCredentials {
                username,
                password,
                identitytoken,
                serveraddress: Some(if hub {
                    DOCKER_HUB_AUTH_KEY.to_string()
                } else {
                    registry.to_string()
                }),
                ..Default::default()
            }));
        }
    }
    let helper = v
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|h| h.iter().find(|(k, _)| matches(k)))
        .and_then(|(_, name)| name.as_str())
        .or_else(|| v.get("credsStore").and_then(|s| s.as_str()))
        .filter(|s| !s.is_empty());
    Ok(match helper {
        Some(h) => Login::Helper(h.to_string()),
        None => Login::None,
    })
}

/// Where the docker CLI keeps its config: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json` (root's, as netcontainer runs as root).
pub fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })?;
    Some(home.join(".docker").join("config.json"))
}

/// The credentials for `registry` from the docker CLI's config, if any. A
/// missing file means none; an unreadable or broken one is reported and
/// ignored (the pull may not need a login).
pub fn credentials(registry: &str) -> Option<DockerCredentials> {
    let path = config_path()?;
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the Docker config; pulling without credentials");
            return None;
        }
    };
    match login_for(&text, registry) {
        Ok(Login::Found(c)) => Some(c),
        Ok(Login::Helper(h)) => {
            tracing::warn!(
                path = %path.display(),
                %registry,
                "the login for this registry is in the credential helper docker-credential-{h}, which netcontainer does not run; pulling without credentials (put the login in `auths`, or `docker pull` the image first)"
            );
            None
        }
        Ok(Login::None) => None,
        Err(e) => {
            tracing::warn!(path = %path.display(), "ignoring the Docker config: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> (String, String, String) {
        let r = Reference::parse(s).unwrap();
        (r.registry, r.repository, r.tag)
    }

    fn t(a: &str, b: &str, c: &str) -> (String, String, String) {
        (a.into(), b.into(), c.into())
    }

    #[test]
    fn registry_tag_and_repository() {
        assert_eq!(
            r("netcontainer/router:0.1.0"),
            t("docker.io", "netcontainer/router", "0.1.0")
        );
        assert_eq!(r("busybox"), t("docker.io", "busybox", "latest"));
        assert_eq!(
            r("127.0.0.1:5000/netcontainer/router:0.1.0"),
            t(
                "127.0.0.1:5000",
                "127.0.0.1:5000/netcontainer/router",
                "0.1.0"
            )
        );
        // A port is not a tag.
        assert_eq!(
            r("127.0.0.1:5000/router"),
            t("127.0.0.1:5000", "127.0.0.1:5000/router", "latest")
        );
        assert_eq!(
            r("localhost/router:x"),
            t("localhost", "localhost/router", "x")
        );
        assert_eq!(
            r("ghcr.io/owner/netcontainer-router:1.2.3"),
            t("ghcr.io", "ghcr.io/owner/netcontainer-router", "1.2.3")
        );
        // Without a dot, colon or `localhost` the first component is a path.
        assert_eq!(
            r("library/debian:12"),
            t("docker.io", "library/debian", "12")
        );
        assert_eq!(
            r("docker.io/netcontainer/router:0.1.0"),
            t("docker.io", "docker.io/netcontainer/router", "0.1.0")
        );
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            r(&format!("reg.example:443/r@{digest}")),
            t("reg.example:443", "reg.example:443/r", digest)
        );
        assert_eq!(
            r(&format!("reg.example/r:1@{digest}")),
            t("reg.example", "reg.example/r", digest)
        );
    }

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const DEFAULT: &str = "netcontainer/router:1.0.0";

    fn pin(reference: &str, record: &str, built_with: Option<&str>) -> Result<Option<Pin>, String> {
        pin_of(
            reference,
            record,
            Path::new("/var/lib/netcontainer/.router-images"),
            built_with,
            DEFAULT,
        )
    }

    fn digest(repository: &str, d: &str) -> Option<Pin> {
        Some(Pin::Digest {
            repository: repository.into(),
            digest: d.into(),
        })
    }

    #[test]
    fn pins_come_from_the_reference_the_record_or_the_build() {
        // Nothing recorded, nothing built in: the tag as it is.
        assert_eq!(pin(DEFAULT, "", None).unwrap(), None);
        // The build's digest pins the default image only.
        assert_eq!(
            pin(DEFAULT, "", Some(A)).unwrap(),
            digest("netcontainer/router", A)
        );
        assert_eq!(
            pin(DEFAULT, "", Some(&format!("ghcr.io/o/r@{A}"))).unwrap(),
            digest("ghcr.io/o/r", A)
        );
        assert_eq!(pin("other/router:1.0.0", "", Some(A)).unwrap(), None);
        // The record: image IDs (local builds) and digests (published), the
        // last line for the exact reference wins, and beats the build's.
        let record = format!(
            "# written by scripts/build-router-image\n\n{DEFAULT} {B}\n\
             127.0.0.1:5000/x/netcontainer/router:1.0.0 127.0.0.1:5000/x/netcontainer/router@{A}\n\
             {DEFAULT}   {A}\n"
        );
        assert_eq!(
            pin(DEFAULT, &record, Some(B)).unwrap(),
            Some(Pin::ImageId(A.into()))
        );
        assert_eq!(
            pin("127.0.0.1:5000/x/netcontainer/router:1.0.0", &record, None).unwrap(),
            digest("127.0.0.1:5000/x/netcontainer/router", A)
        );
        // Another tag of a recorded repository is not pinned by it.
        assert_eq!(
            pin("netcontainer/router:latest", &record, None).unwrap(),
            None
        );
        // The operator's own digest beats everything.
        assert_eq!(
            pin(&format!("reg.example/r:1@{B}"), &record, Some(A)).unwrap(),
            digest("reg.example/r", B)
        );
    }

    #[test]
    fn bad_pins_are_errors_not_skipped() {
        let e = pin(DEFAULT, "netcontainer/router:1.0.0 sha256:abc\n", None).unwrap_err();
        assert_eq!(
            e,
            "/var/lib/netcontainer/.router-images line 1: \"sha256:abc\" is neither an image ID (sha256:<64 hex digits>) nor REPOSITORY@sha256:<64 hex digits>"
        );
        // Even on a line for another reference: the record is broken.
        assert!(pin(DEFAULT, &format!("a:1 {A}\nb:1\n"), None).is_err());
        assert!(pin(DEFAULT, &format!("a:1 {A} extra\n"), None).is_err());
        assert!(pin(DEFAULT, &format!("a:1 r:1@{A}\n"), None).is_err());
        assert!(pin(DEFAULT, &format!("a:1 r@{}\n", A.to_uppercase()), None).is_err());
        assert!(pin("r@sha256:xyz", "", None).is_err());
        assert!(pin("r@md5:0123", "", None).is_err());
        assert!(pin(DEFAULT, "", Some("sha256:short")).is_err());
    }

    #[test]
    fn the_record_must_be_roots_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("nc-pins-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("router-images");
        assert_eq!(read_pins(&f).unwrap(), "", "a missing record is empty");
        std::fs::write(&f, format!("{DEFAULT} {A}\n")).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_pins(&f).unwrap(), format!("{DEFAULT} {A}\n"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(
            read_pins(&f)
                .unwrap_err()
                .contains("writable by group or others")
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o620)).unwrap();
        assert!(read_pins(&f).is_err());
        std::fs::remove_file(&f).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &f).unwrap();
        assert!(read_pins(&f).unwrap_err().contains("not a regular file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_references() {
        for bad in [
            "", " ", "a b", "router:", "/router", "router/", "r@", ":tag",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    fn auth(user_pass: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    }

    fn found(l: Login) -> DockerCredentials {
        match l {
            Login::Found(c) => c,
            other => panic!("expected credentials, got {other:?}"),
        }
    }

    #[test]
    fn credentials_from_auths() {
        let config = format!(
            r#"{{"auths": {{
                "127.0.0.1:5000": {{"auth": "{}"}},
                "https://registry.example.com/v1/": {{"auth": "{}"}},
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "plain.example": {{"username": "u", "password": "p"}},
                "token.example": {{"identitytoken": "tok"}}
            }}}}"#,
            auth("alice:s3cr:et"),
            auth("bob:pw"),
            auth("hubuser:hubpw")
        );
        let c = found(login_for(&config, "127.0.0.1:5000").unwrap());
        assert_eq!(c.username.as_deref(), Some("alice"));
        // Only the first colon separates: passwords may hold colons.
        assert_eq!(c.password.as_deref(), Some("s3cr:et"));
        assert_eq!(c.serveraddress.as_deref(), Some("127.0.0.1:5000"));

        // Keys with a scheme and a path match their host.
        let c = found(login_for(&config, "registry.example.com").unwrap());
        assert_eq!(c.username.as_deref(), Some("bob"));

        let c = found(login_for(&config, DOCKER_HUB).unwrap());
        assert_eq!(c.username.as_deref(), Some("hubuser"));
        assert_eq!(c.serveraddress.as_deref(), Some(DOCKER_HUB_AUTH_KEY));

        let c = found(login_for(&config, "plain.example").unwrap());
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("u"), Some("p"))
        );
        let c = found(login_for(&config, "token.example").unwrap());
        assert_eq!(c.identitytoken.as_deref(), Some("tok"));

        // Another port is another registry.
        assert_eq!(login_for(&config, "127.0.0.1:5001").unwrap(), Login::None);
        assert_eq!(login_for(&config, "ghcr.io").unwrap(), Login::None);
    }

    #[test]
    fn exact_key_wins() {
        let config = format!(
            r#"{{"auths": {{"https://reg.example/v2/": {{"auth": "{}"}}, "reg.example": {{"auth": "{}"}}}}}}"#,
            auth("old:1"),
            auth("new:2")
        );
        let c = found(login_for(&config, "reg.example").unwrap());
        assert_eq!(c.username.as_deref(), Some("new"));
    }

    #[test]
    fn helpers_and_nothing() {
        assert_eq!(login_for("{}", "ghcr.io").unwrap(), Login::None);
        let c = r#"{"auths": {"ghcr.io": {}}, "credHelpers": {"ghcr.io": "gh"}, "credsStore": "desktop"}"#;
        assert_eq!(login_for(c, "ghcr.io").unwrap(), Login::Helper("gh".into()));
        assert_eq!(
            login_for(c, "quay.io").unwrap(),
            Login::Helper("desktop".into())
        );
        assert!(login_for("not json", "ghcr.io").is_err());
        let bad = r#"{"auths": {"ghcr.io": {"auth": "***"}}}"#;
        assert!(login_for(bad, "ghcr.io").is_err());
        let no_colon = format!(r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}}}}}"#, auth("x"));
        assert!(login_for(&no_colon, "ghcr.io").is_err());
    }
}
