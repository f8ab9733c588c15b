//! The TSIG key file: BIND's own format, as `tsig-keygen NAME` prints it,
//! so the file named to `--ddns-key` can be the very file `named.conf`
//! includes:
//!
//! ```text
//! key "NAME" {
//!         algorithm hmac-sha256;
//!         secret "BASE64";
//! };
//! ```
//!
//! Parsed strictly: exactly one key, each of `algorithm` and `secret` once,
//! nothing else. A file with a typo must not half-work (a wrong secret only
//! shows as BADSIG on the first update, far from the file).
//!
//! The secret lets whoever reads it rewrite the zone's names, so a file
//! readable or writable by others, or writable by its group, is refused
//! ([`check_mode`]). Group read stays allowed: Debian's `named` reads its
//! keys as group `bind` (`root:bind 0640`), and one file can serve both.

use std::path::{Path, PathBuf};

use base64::Engine;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;

/// A TSIG key: its name (as the server knows it), algorithm and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    pub name: String,
    pub algorithm: TsigAlgorithm,
    pub secret: Vec<u8>,
}

// Never the secret, in a log or a panic message.
impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A key file that cannot be used: the file and what is wrong, one line.
#[derive(Debug, thiserror::Error)]
#[error("TSIG key file {}: {what}", path.display())]
pub struct KeyFileError {
    pub path: PathBuf,
    pub what: String,
}

/// The algorithms the signer has (hickory-proto's TSIG over ring).
/// hmac-md5 and hmac-sha1 are legacy (RFC 8945 section 6) and not offered.
const ALGORITHMS: [(&str, TsigAlgorithm); 3] = [
    ("hmac-sha256", TsigAlgorithm::HmacSha256),
    ("hmac-sha384", TsigAlgorithm::HmacSha384),
    ("hmac-sha512", TsigAlgorithm::HmacSha512),
];

/// Reads and parses the key file at `path`, refusing one others can read.
pub fn load(path: &Path) -> Result<TsigKey, KeyFileError> {
    let err = |what: String| KeyFileError {
        path: path.to_path_buf(),
        what,
    };
    let mut file = std::fs::File::open(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    // The opened file's own metadata: what is checked is what is read.
    let meta = file
        .metadata()
        .map_err(|e| err(format!("cannot read it: {e}")))?;
    check_mode(&meta).map_err(err)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut file, &mut text)
        .map_err(|e| err(format!("cannot read it: {e}")))?;
    parse(&text).map_err(err)
}

/// Refuses a file whose secret others could read or replace.
pub fn check_mode(meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o027 != 0 {
        return Err(format!(
            "readable or writable by others, or writable by its group (mode {mode:04o}): \
             whoever reads the secret can change the zone (chmod 0600, or 0640 for named's group)"
        ));
    }
    Ok(())
}

/// One token of BIND's configuration syntax.
#[derive(Debug, PartialEq)]
enum Token<'a> {
    Word(&'a str),
    Quoted(&'a str),
    Open,
    Close,
    Semi,
}

/// Splits `text` into tokens, dropping `#`, `//` and `/* */` comments.
fn tokens(text: &str) -> Result<Vec<Token<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        let Some(c) = rest.chars().next() else {
            return Ok(out);
        };
        if c == '#' || rest.starts_with("//") {
            rest = rest.split_once('\n').map_or("", |(_, r)| r);
            continue;
        }
        if let Some(r) = rest.strip_prefix("/*") {
            rest = r
                .split_once("*/")
                .map(|(_, r)| r)
                .ok_or("a comment /* is never closed")?;
            continue;
        }
        match c {
            '{' => out.push(Token::Open),
            '}' => out.push(Token::Close),
            ';' => out.push(Token::Semi),
            '"' => {
                let (q, r) = rest[1..]
                    .split_once('"')
                    .ok_or("a quoted string is never closed")?;
                out.push(Token::Quoted(q));
                rest = r;
                continue;
            }
            _ => {
                let end = rest
                    .find(|c: char| c.is_whitespace() || "{};\"#".contains(c))
                    .unwrap_or(rest.len());
                out.push(Token::Word(&rest[..end]));
                rest = &rest[end..];
                continue;
            }
        }
        rest = &rest[1..];
    }
}

/// Parses the text of a key file: exactly one `key` statement with its
/// `algorithm` and `secret`. The error says what is wrong, without the file.
pub fn parse(text: &str) -> Result<TsigKey, String> {
    let toks = tokens(text)?;
    let mut it = toks.into_iter();
    match it_next_word(&mut it)? {
        "key" => {}
        other => {
            return Err(format!(
                "expected `key \"NAME\" {{ ... }};`, found {other:?}"
            ));
        }
    }
    let name = match it.next() {
        Some(Token::Quoted(n) | Token::Word(n)) if !n.is_empty() => n.to_string(),
        _ => return Err("the key has no name (key \"NAME\" { ... };)".into()),
    };
    expect(&mut it, Token::Open, "`{` after the key's name")?;
    let (mut algorithm, mut secret) = (None, None);
    loop {
        let field = match it.next() {
            Some(Token::Close) => break,
            Some(Token::Word(w)) => w,
            Some(t) => return Err(format!("expected algorithm or secret, found {}", show(&t))),
            None => return Err("the key's `{` is never closed".into()),
        };
        let value = match it.next() {
            Some(Token::Word(v) | Token::Quoted(v)) => v,
            _ => return Err(format!("{field} has no value")),
        };
        match it.next() {
            Some(Token::Semi) => {}
            _ => return Err(format!("expected `;` after {field} {value}")),
        }
        match field {
            "algorithm" if algorithm.is_none() => algorithm = Some(algorithm_named(value)?),
            "secret" if secret.is_none() => secret = Some(decode_secret(value)?),
            "algorithm" | "secret" => return Err(format!("{field} is given twice")),
            other => {
                return Err(format!(
                    "unknown field {other:?} (only algorithm and secret)"
                ));
            }
        }
    }
    expect(&mut it, Token::Semi, "`;` after the key's `}`")?;
    if let Some(t) = it.next() {
        return Err(format!(
            "more after the key ({}): the file must hold exactly one key",
            show(&t)
        ));
    }
    Ok(TsigKey {
        name,
        algorithm: algorithm.ok_or("the key has no algorithm")?,
        secret: secret.ok_or("the key has no secret")?,
    })
}

fn expect<'a>(
    it: &mut impl Iterator<Item = Token<'a>>,
    want: Token<'static>,
    what: &str,
) -> Result<(), String> {
    match it.next() {
        Some(t) if t == want => Ok(()),
        Some(t) => Err(format!("expected {what}, found {}", show(&t))),
        None => Err(format!("expected {what}, found the end of the file")),
    }
}

fn it_next_word<'a>(it: &mut impl Iterator<Item = Token<'a>>) -> Result<&'a str, String> {
    match it.next() {
        Some(Token::Word(w)) => Ok(w),
        Some(t) => Err(format!(
            "expected `key \"NAME\" {{ ... }};`, found {}",
            show(&t)
        )),
        None => Err("the file holds no key".into()),
    }
}

fn show(t: &Token<'_>) -> String {
    match t {
        Token::Word(w) => format!("{w:?}"),
        Token::Quoted(q) => format!("\"{q}\""),
        Token::Open => "`{`".into(),
        Token::Close => "`}`".into(),
        Token::Semi => "`;`".into(),
    }
}

fn algorithm_named(name: &str) -> Result<TsigAlgorithm, String> {
    // BIND writes the short names; the long ones are the wire names.
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    ALGORITHMS
        .iter()
        .find(|(n, _)| *n == lower)
        .map(|(_, a)| a.clone())
        .ok_or_else(|| {
            format!(
                "unsupported algorithm {name:?} (supported: hmac-sha256, hmac-sha384, \
                 hmac-sha512; make one with tsig-keygen -a hmac-sha256 NAME)"
            )
        })
}

fn decode_secret(b64: &str) -> Result<Vec<u8>, String> {
    let secret = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("the secret is not valid base64 ({e})"))?;
    if secret.is_empty() {
        return Err("the secret is empty".into());
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `tsig-keygen -a hmac-sha256 nc-test` printed (bind9 9.18).
    const KEYGEN: &str = "key \"nc-test\" {\n\talgorithm hmac-sha256;\n\tsecret \"Oinyq484jlyrzFIuY0p0Cwl/qoVAgRDvBPw5tcuSXZM=\";\n};\n";

    #[test]
    fn reads_what_tsig_keygen_prints() {
        let k = parse(KEYGEN).unwrap();
        assert_eq!(k.name, "nc-test");
        assert_eq!(k.algorithm, TsigAlgorithm::HmacSha256);
        assert_eq!(k.secret.len(), 32);
        assert_eq!(&k.secret[..3], &[0x3a, 0x29, 0xf2]);
        // Comments and layout are free; the long wire name is accepted too.
        let k = parse(
            "# made by hand\nkey ddns.example { // the name unquoted\n algorithm HMAC-SHA512; \
             /* base64 of \"secret\" */ secret \"c2VjcmV0\"; };",
        )
        .unwrap();
        assert_eq!(
            (k.name.as_str(), k.algorithm.clone(), k.secret.clone()),
            (
                "ddns.example",
                TsigAlgorithm::HmacSha512,
                b"secret".to_vec()
            )
        );
        // The secret stays out of Debug.
        assert!(!format!("{k:?}").contains("secret\""));
        assert!(!format!("{k:?}").contains("115"));
    }

    #[test]
    fn refuses_anything_else_in_one_line() {
        for (text, want) in [
            ("", "the file holds no key"),
            (
                "key \"k\" { algorithm hmac-md5; secret \"c2VjcmV0\"; };",
                "unsupported algorithm \"hmac-md5\"",
            ),
            (
                "key \"k\" { algorithm hmac-sha1; secret \"c2VjcmV0\"; };",
                "unsupported algorithm",
            ),
            (
                "key \"k\" { algorithm hmac-sha256; secret \"c2Vj*mV0\"; };",
                "not valid base64",
            ),
            (
                "key \"k\" { algorithm hmac-sha256; secret \"\"; };",
                "the secret is empty",
            ),
            ("key \"k\" { algorithm hmac-sha256; };", "has no secret"),
            ("key \"k\" { secret \"c2VjcmV0\"; };", "has no algorithm"),
            (
                "key \"k\" { algorithm hmac-sha256; algorithm hmac-sha512; secret \"c2VjcmV0\"; };",
                "algorithm is given twice",
            ),
            (
                "key \"k\" { algorithm hmac-sha256; secret \"c2VjcmV0\"; owner x; };",
                "unknown field \"owner\"",
            ),
            (
                "key \"k\" { algorithm hmac-sha256 secret \"c2VjcmV0\"; };",
                "expected `;` after algorithm",
            ),
            (
                "key \"k\" { algorithm hmac-sha256; secret \"c2VjcmV0\"; }",
                "expected `;` after the key's `}`",
            ),
            (&format!("{KEYGEN}{KEYGEN}"), "exactly one key"),
            ("options { };", "expected `key"),
            (
                "key \"k\" { algorithm hmac-sha256; secret \"c2Vj",
                "never closed",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: want {want:?}, got {e:?}");
            assert!(!e.contains('\n'), "one line: {e:?}");
        }
    }

    #[test]
    fn a_file_others_can_read_is_refused_and_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("nc-ddns-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("ddns.key");
        std::fs::write(&f, KEYGEN).unwrap();
        let chmod =
            |m: u32| std::fs::set_permissions(&f, std::fs::Permissions::from_mode(m)).unwrap();
        for ok in [0o600, 0o640, 0o400] {
            chmod(ok);
            assert_eq!(load(&f).unwrap().name, "nc-test", "mode {ok:o}");
        }
        for bad in [0o644, 0o604, 0o660, 0o666] {
            chmod(bad);
            let e = load(&f).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("TSIG key file {}: ", f.display()))
                    && e.contains(&format!("mode {bad:04o}"))
                    && !e.contains('\n'),
                "{e}"
            );
        }
        chmod(0o600);
        std::fs::write(&f, "key \"k\" { algorithm hmac-sha256; secret \"!\"; };").unwrap();
        let e = load(&f).unwrap_err().to_string();
        assert!(e.contains("ddns.key") && e.contains("base64"), "{e}");
        let e = load(&dir.join("missing.key")).unwrap_err().to_string();
        assert!(e.contains("missing.key: cannot read it"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
