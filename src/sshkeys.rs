//! SSH public keys: parsing and validating `authorized_keys` lines, and fetching keys from
//! `https://` URLs and `gh:<user>` / `lp:<user>` (Launchpad).
//!
//! A key is valid when its base64 blob decodes, the type inside the blob matches the type
//! word, and the blob has the structure and size of that type (RSA modulus length, ed25519
//! point length, ECDSA curve). A failed fetch is an error, never "no keys".

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

/// Key types bollwerk accepts in profiles.
pub const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
    "ssh-ed25519-cert-v01@openssh.com",
    "ssh-rsa-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
];

/// Minimum RSA modulus size OpenSSH ≥ 9.1 accepts by default (`RequiredRSASize`).
pub const MIN_RSA_BITS: u32 = 2048;

/// A validated SSH public key, optionally with `authorized_keys` options and a comment.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PublicKey {
    /// `authorized_keys` options (`from="10.0.0.0/8",no-pty`), verbatim.
    pub options: Option<String>,
    /// Key type word (`ssh-ed25519`).
    pub kind: String,
    /// The base64 blob.
    pub blob: String,
    /// Trailing comment.
    pub comment: Option<String>,
    /// RSA modulus size in bits (RSA keys only).
    pub rsa_bits: Option<u32>,
}

impl PublicKey {
    /// Parses one `authorized_keys` / `.pub` line.
    ///
    /// # Errors
    /// A message saying what is wrong with the key.
    pub fn parse(line: &str) -> Result<PublicKey, String> {
        let line = line.trim();
        if line.is_empty() {
            return Err("empty key".into());
        }
        // One key is one line: a newline in a comment would add a second, unlisted key.
        if let Some(c) = line.chars().find(|c| c.is_control() && *c != '\t') {
            return Err(format!(
                "a key line must not contain the control character {c:?} (newlines included)"
            ));
        }
        if line.len() > MAX_LINE {
            return Err(format!(
                "key line is {} bytes, longer than {MAX_LINE}",
                line.len()
            ));
        }
        let (options, rest) = if KEY_TYPES.iter().any(|t| line.starts_with(&format!("{t} "))) {
            (None, line)
        } else {
            let (opts, rest) = split_options(line)?;
            (Some(opts.to_string()), rest.trim_start())
        };
        let mut parts = rest.splitn(3, char::is_whitespace);
        let kind = parts.next().unwrap_or_default().to_string();
        let blob = parts.next().unwrap_or_default().trim().to_string();
        let comment = parts
            .next()
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty());
        if kind == "ssh-dss" {
            return Err("DSA keys (ssh-dss) are disabled in OpenSSH ≥ 7.0; use ssh-ed25519".into());
        }
        if !KEY_TYPES.contains(&kind.as_str()) {
            let shown: String = line.chars().take(24).collect();
            return Err(format!(
                "`{shown}…` does not start with a known key type (ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256, …)"
            ));
        }
        if blob.is_empty() {
            return Err(format!("{kind} key has no base64 data"));
        }
        let raw = STANDARD
            .decode(blob.as_bytes())
            .map_err(|e| format!("{kind} key data is not valid base64: {e}"))?;
        let rsa_bits = check_blob(&kind, &raw)?;
        Ok(PublicKey {
            options,
            kind,
            blob,
            comment,
            rsa_bits,
        })
    }

    /// The OpenSSH fingerprint (`SHA256:…`, unpadded base64 of the blob's sha256).
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let raw = STANDARD.decode(self.blob.as_bytes()).unwrap_or_default();
        let digest = sha2::Sha256::digest(&raw);
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        )
    }

    /// True when both keys have the same type and blob (options and comments aside).
    pub fn same_key(&self, other: &PublicKey) -> bool {
        self.kind == other.kind && self.blob == other.blob
    }

    /// The base key type, without a certificate suffix.
    pub fn base_kind(&self) -> &str {
        self.kind
            .strip_suffix("-cert-v01@openssh.com")
            .unwrap_or(&self.kind)
    }

    /// True when an OpenSSH that enforces `RequiredRSASize` 2048 would accept the key.
    pub fn strong_enough(&self) -> bool {
        self.rsa_bits.is_none_or(|b| b >= MIN_RSA_BITS)
    }

    /// The key as one `authorized_keys` line.
    pub fn to_line(&self) -> String {
        let mut s = String::new();
        if let Some(o) = &self.options {
            s.push_str(o);
            s.push(' ');
        }
        s.push_str(&self.kind);
        s.push(' ');
        s.push_str(&self.blob);
        if let Some(c) = &self.comment {
            s.push(' ');
            s.push_str(c);
        }
        s
    }

    /// A short label for messages: type, fingerprint and comment.
    pub fn label(&self) -> String {
        match &self.comment {
            Some(c) => format!("{} {} ({c})", self.kind, self.fingerprint()),
            None => format!("{} {}", self.kind, self.fingerprint()),
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.label())
    }
}

impl TryFrom<String> for PublicKey {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        PublicKey::parse(&s)
    }
}

impl From<PublicKey> for String {
    fn from(k: PublicKey) -> String {
        k.to_line()
    }
}

/// Splits the options prefix of an `authorized_keys` line (quotes may contain spaces).
fn split_options(line: &str) -> Result<(&str, &str), String> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => in_quotes = !in_quotes,
            c if c.is_whitespace() && !in_quotes => return Ok((&line[..i], &line[i..])),
            _ => {}
        }
    }
    Err(format!(
        "`{}` is not a key: expected `<type> <base64> [comment]`",
        line.chars().take(24).collect::<String>()
    ))
}

/// Reads a length-prefixed string from an SSH wire-format blob.
fn read_string<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    if buf.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if buf.len() < 4 + len {
        return None;
    }
    let s = &buf[4..4 + len];
    *buf = &buf[4 + len..];
    Some(s)
}

/// Checks the blob's structure; returns the RSA modulus bits for RSA keys.
fn check_blob(kind: &str, raw: &[u8]) -> Result<Option<u32>, String> {
    let mut buf = raw;
    let inner = read_string(&mut buf).ok_or_else(|| format!("{kind} key data is truncated"))?;
    if inner != kind.as_bytes() {
        return Err(format!(
            "key data says `{}` but the line says `{kind}`",
            String::from_utf8_lossy(inner)
        ));
    }
    if kind.ends_with("-cert-v01@openssh.com") {
        // nonce + the base key; certificates are checked by sshd against the CA.
        read_string(&mut buf).ok_or_else(|| format!("{kind} certificate is truncated"))?;
        return Ok(None);
    }
    let bad = || format!("{kind} key data is truncated or malformed");
    match kind {
        "ssh-ed25519" | "sk-ssh-ed25519@openssh.com" => {
            let pk = read_string(&mut buf).ok_or_else(bad)?;
            if pk.len() != 32 {
                return Err(format!(
                    "ssh-ed25519 key must be 32 bytes, found {}",
                    pk.len()
                ));
            }
            Ok(None)
        }
        "ssh-rsa" => {
            let e = read_string(&mut buf).ok_or_else(bad)?;
            let n = read_string(&mut buf).ok_or_else(bad)?;
            if e.is_empty() || n.is_empty() {
                return Err(bad());
            }
            let n = match n.iter().position(|b| *b != 0) {
                Some(i) => &n[i..],
                None => return Err(bad()),
            };
            let bits = (n.len() as u32 - 1) * 8 + (8 - n[0].leading_zeros());
            if bits < 1024 {
                return Err(format!("ssh-rsa key has only {bits} bits (need ≥ 2048)"));
            }
            Ok(Some(bits))
        }
        _ => {
            // ECDSA variants: curve name then the point.
            let curve = read_string(&mut buf).ok_or_else(bad)?;
            let expected = kind
                .trim_start_matches("sk-")
                .trim_end_matches("@openssh.com")
                .trim_start_matches("ecdsa-sha2-");
            if curve != expected.as_bytes() {
                return Err(format!(
                    "{kind} key names curve `{}`",
                    String::from_utf8_lossy(curve)
                ));
            }
            let point = read_string(&mut buf).ok_or_else(bad)?;
            if point.first() != Some(&4) {
                return Err(bad());
            }
            Ok(None)
        }
    }
}

/// One line of an `authorized_keys` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizedLine {
    /// A valid key.
    Key(PublicKey),
    /// A comment or blank line.
    Comment(String),
    /// A line that is not a valid key (kept, reported).
    Invalid(String, String),
}

/// Parses an `authorized_keys` file, line by line.
pub fn parse_authorized_keys(text: &str) -> Vec<AuthorizedLine> {
    text.lines()
        .map(|l| {
            let t = l.trim();
            if t.is_empty() || t.starts_with('#') {
                AuthorizedLine::Comment(l.to_string())
            } else if l.len() > MAX_LINE {
                AuthorizedLine::Invalid(
                    l.to_string(),
                    format!("line is {} bytes, longer than {MAX_LINE}", l.len()),
                )
            } else {
                match PublicKey::parse(t) {
                    Ok(k) => AuthorizedLine::Key(k),
                    Err(e) => AuthorizedLine::Invalid(l.to_string(), e),
                }
            }
        })
        .collect()
}

/// Where to fetch keys from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum KeySource {
    /// `gh:<user>`, `lp:<user>` or an `https://` URL.
    Url(#[schemars(with = "String")] KeyUrl),
    /// A URL with a sha256 pin of the response body.
    Pinned {
        /// `gh:<user>`, `lp:<user>` or an `https://` URL.
        #[schemars(with = "String")]
        url: KeyUrl,
        /// Hex sha256 the fetched body must have.
        sha256: String,
    },
}

impl KeySource {
    /// The URL part.
    pub fn url(&self) -> &KeyUrl {
        match self {
            KeySource::Url(u) | KeySource::Pinned { url: u, .. } => u,
        }
    }

    /// The pin, if any.
    pub fn pin(&self) -> Option<&str> {
        match self {
            KeySource::Url(_) => None,
            KeySource::Pinned { sha256, .. } => Some(sha256),
        }
    }
}

/// A validated key source: `gh:<user>`, `lp:<user>` or an `https://` URL (plain `http://` only to loopback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyUrl(String);

impl KeyUrl {
    /// The URL to fetch (`gh:` expanded; the GitHub base can be overridden with
    /// `BOLLWERK_GITHUB_URL`, for mirrors and tests).
    pub fn resolved(&self) -> String {
        if let Some(user) = self.0.strip_prefix("lp:") {
            // Launchpad, as `ssh-import-id lp:<user>` fetches it (base overridable with
            // `BOLLWERK_LAUNCHPAD_URL`, for mirrors and tests).
            let base = std::env::var("BOLLWERK_LAUNCHPAD_URL")
                .unwrap_or_else(|_| "https://launchpad.net".to_string());
            return format!("{}/~{user}/+sshkeys", base.trim_end_matches('/'));
        }
        match self.0.strip_prefix("gh:") {
            Some(user) => {
                let base = std::env::var("BOLLWERK_GITHUB_URL")
                    .unwrap_or_else(|_| "https://github.com".to_string());
                format!("{}/{user}.keys", base.trim_end_matches('/'))
            }
            None => self.0.clone(),
        }
    }

    /// The source as written in the profile.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if let Some(user) = s.strip_prefix("gh:") {
            let ok = !user.is_empty()
                && user.len() <= 39
                && user.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !user.starts_with('-');
            return if ok {
                Ok(KeyUrl(s))
            } else {
                Err(format!("`{s}`: not a valid GitHub user name"))
            };
        }
        if let Some(user) = s.strip_prefix("lp:") {
            // Launchpad user names: lower-case letters, digits, `+`, `-`, `.`; 2–64 characters.
            let ok = (2..=64).contains(&user.len())
                && user
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && user
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
            return if ok {
                Ok(KeyUrl(s))
            } else {
                Err(format!("`{s}`: not a valid Launchpad user name"))
            };
        }
        if let Some(rest) = s.strip_prefix("https://") {
            if rest.is_empty() || rest.starts_with('/') {
                return Err(format!("`{s}`: URL has no host"));
            }
            return Ok(KeyUrl(s));
        }
        if let Some(rest) = s.strip_prefix("http://") {
            let host = rest.split(['/', ':']).next().unwrap_or_default();
            if matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
                return Ok(KeyUrl(s));
            }
            return Err(format!(
                "`{s}`: keys must come over https:// (plain http:// only from loopback)"
            ));
        }
        Err(format!(
            "`{s}`: expected `gh:<user>`, `lp:<user>` or an `https://` URL"
        ))
    }
}

impl From<KeyUrl> for String {
    fn from(u: KeyUrl) -> String {
        u.0
    }
}

/// Why fetching keys failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Network or HTTP failure after retries.
    #[error("fetching keys from {url}: {reason}")]
    Http {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The body did not match the sha256 pin.
    #[error("keys from {url} have sha256 {actual}, but the profile pins {expected}")]
    Pin {
        /// The URL.
        url: String,
        /// Pinned digest.
        expected: String,
        /// Actual digest.
        actual: String,
    },
    /// The body contains no valid key, or an invalid line.
    #[error("keys from {url}: {reason}")]
    Content {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
}

/// Builds the HTTP client used for key fetches and metadata (rustls with the ring provider).
///
/// # Errors
/// When the TLS backend cannot be initialised.
pub fn http_client(timeout: Duration) -> Result<reqwest::blocking::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::custom(redirect_policy))
        .user_agent(concat!("bollwerk/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("initialising the HTTP client: {e}"))
}

/// Most redirects followed for a key fetch.
pub const MAX_REDIRECTS: usize = 5;

/// True for `http://` URLs to the loopback interface (allowed for tests and local mirrors).
fn is_loopback_http(u: &reqwest::Url) -> bool {
    let host = u.host_str().unwrap_or_default();
    u.scheme() == "http"
        && (host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|a| a.is_loopback()))
}

/// Redirects stay on HTTPS: a hop to any other scheme is refused (plain `http://` only from a
/// loopback URL to a loopback URL), and at most [`MAX_REDIRECTS`] hops are followed.
fn redirect_policy(attempt: reqwest::redirect::Attempt) -> reqwest::redirect::Action {
    let next = attempt.url();
    let secure = next.scheme() == "https"
        || (is_loopback_http(next) && attempt.previous().iter().all(is_loopback_http));
    if !secure {
        let msg = format!("refusing a redirect to {next}: keys are fetched over https:// only");
        return attempt.error(msg);
    }
    if attempt.previous().len() > MAX_REDIRECTS {
        return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
    }
    attempt.follow()
}

/// Reads a response body of at most `cap` bytes: a declared `Content-Length` over the cap is
/// refused before reading; otherwise the body is read in chunks and reading stops at the cap
/// (never buffered whole before the check). A body still arriving at `deadline` (a server that
/// trickles bytes to keep each read under the client's timeout) is an error too.
///
/// # Errors
/// When the body is larger than `cap`, reading fails (a timeout included) or the deadline passes.
pub fn read_capped(
    body: &mut dyn std::io::Read,
    content_length: Option<u64>,
    cap: usize,
    deadline: std::time::Instant,
) -> Result<Vec<u8>, String> {
    if let Some(n) = content_length
        && n > cap as u64
    {
        return Err(format!(
            "response of {n} bytes is larger than the limit of {cap} bytes"
        ));
    }
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match body.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading the response: {e}")),
        };
        if std::time::Instant::now() > deadline {
            return Err("the response did not arrive in time (stopped reading)".into());
        }
        if out.len() + n > cap {
            return Err(format!(
                "response is larger than the limit of {cap} bytes (stopped reading)"
            ));
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Largest key list fetched (1 MiB).
pub const MAX_BODY: usize = 1 << 20;
/// Most keys taken from one source.
pub const MAX_KEYS: usize = 1_000;
/// Longest `authorized_keys` line (OpenSSH's own limit for a key line is 8 KiB; options and
/// comments fit in 16 KiB).
pub const MAX_LINE: usize = 16 * 1024;
const ATTEMPTS: u32 = 3;
/// Longest time one key fetch attempt may take, body included.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(30);

/// Fetches and validates the keys of one source. Transient failures (connection errors, HTTP
/// 5xx, 429) are retried with backoff; an empty or invalid answer is an error.
///
/// # Errors
/// [`FetchError`] when no valid key list could be obtained.
pub fn fetch(
    client: &reqwest::blocking::Client,
    source: &KeySource,
) -> Result<Vec<PublicKey>, FetchError> {
    let url = source.url().resolved();
    let mut last = String::new();
    let mut body = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(300 * u64::from(attempt)));
        }
        let started = std::time::Instant::now();
        match client.get(&url).send() {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    let len = resp.content_length();
                    let mut resp = resp;
                    match read_capped(&mut resp, len, MAX_BODY, started + FETCH_DEADLINE) {
                        Ok(b) => {
                            body = Some(b);
                            break;
                        }
                        // Too large is not transient: no retry.
                        Err(e) if e.contains("limit") => {
                            return Err(FetchError::Http { url, reason: e });
                        }
                        Err(e) => last = e,
                    }
                } else if status.is_server_error() || status.as_u16() == 429 {
                    last = format!("HTTP {status}");
                } else {
                    return Err(FetchError::Http {
                        url,
                        reason: format!("HTTP {status}"),
                    });
                }
            }
            Err(e) => last = error_chain(&e),
        }
        tracing::warn!(url = %url, attempt = attempt + 1, reason = %last, "key fetch failed");
    }
    let body = body.ok_or_else(|| FetchError::Http {
        url: url.clone(),
        reason: format!("{last} (after {ATTEMPTS} attempts)"),
    })?;
    if let Some(pin) = source.pin() {
        let actual = crate::root::sha256_hex(&body);
        if !actual.eq_ignore_ascii_case(pin) {
            return Err(FetchError::Pin {
                url,
                expected: pin.to_string(),
                actual,
            });
        }
    }
    let text = String::from_utf8_lossy(&body);
    let mut keys = Vec::new();
    for line in parse_authorized_keys(&text) {
        match line {
            AuthorizedLine::Key(k) => keys.push(k),
            AuthorizedLine::Comment(_) => {}
            AuthorizedLine::Invalid(l, e) => {
                return Err(FetchError::Content {
                    url,
                    reason: format!(
                        "invalid line `{}`: {e}",
                        l.chars().take(40).collect::<String>()
                    ),
                });
            }
        }
    }
    if keys.is_empty() {
        return Err(FetchError::Content {
            url,
            reason: "no keys in the response".into(),
        });
    }
    if keys.len() > MAX_KEYS {
        return Err(FetchError::Content {
            url,
            reason: format!("{} keys, more than the limit of {MAX_KEYS}", keys.len()),
        });
    }
    Ok(keys)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A real ed25519 public key (generated for these tests).
    pub const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh3c2kB0sC9s7Y0n2JqF1GJpfZ3bGm0vQm0d7mE2wVn alice@laptop";

    fn rsa_blob(bits: usize) -> String {
        let mut raw = Vec::new();
        let put = |raw: &mut Vec<u8>, s: &[u8]| {
            raw.extend_from_slice(&(s.len() as u32).to_be_bytes());
            raw.extend_from_slice(s);
        };
        put(&mut raw, b"ssh-rsa");
        put(&mut raw, &[1, 0, 1]);
        let mut n = vec![0u8; bits / 8 + 1];
        n[1] = 0xc3;
        put(&mut raw, &n);
        STANDARD.encode(raw)
    }

    #[test]
    fn parses_ed25519_with_comment_and_options() {
        let k = PublicKey::parse(ED25519).unwrap();
        assert_eq!(k.kind, "ssh-ed25519");
        assert_eq!(k.comment.as_deref(), Some("alice@laptop"));
        assert!(k.fingerprint().starts_with("SHA256:"));
        let with_opts = format!("from=\"10.0.0.0/8,192.168.0.1\",no-pty {ED25519}");
        let k2 = PublicKey::parse(&with_opts).unwrap();
        assert_eq!(
            k2.options.as_deref(),
            Some("from=\"10.0.0.0/8,192.168.0.1\",no-pty")
        );
        assert!(k.same_key(&k2));
        assert_eq!(k2.to_line(), with_opts);
    }

    #[test]
    fn rejects_bad_keys() {
        assert!(PublicKey::parse("ssh-ed25519 AAAA").is_err());
        assert!(PublicKey::parse("ssh-ed25519 not-base64!!").is_err());
        assert!(PublicKey::parse("ssh-dss AAAAB3NzaC1kc3MAAACB").is_err());
        assert!(PublicKey::parse("hello world").is_err());
        // type word and blob disagree
        let blob = ED25519.split(' ').nth(1).unwrap();
        assert!(PublicKey::parse(&format!("ssh-rsa {blob}")).is_err());
    }

    #[test]
    fn rsa_bits_are_measured() {
        let k = PublicKey::parse(&format!("ssh-rsa {}", rsa_blob(2048))).unwrap();
        assert_eq!(k.rsa_bits, Some(2048));
        assert!(k.strong_enough());
        let weak = PublicKey::parse(&format!("ssh-rsa {}", rsa_blob(1024))).unwrap();
        assert!(!weak.strong_enough());
        assert!(PublicKey::parse(&format!("ssh-rsa {}", rsa_blob(512))).is_err());
    }

    #[test]
    fn key_urls() {
        assert!(KeyUrl::try_from("gh:alice".to_string()).is_ok());
        assert!(KeyUrl::try_from("gh:-x".to_string()).is_err());
        let lp = KeyUrl::try_from("lp:alice.b".to_string()).unwrap();
        assert!(
            lp.resolved().ends_with("/~alice.b/+sshkeys"),
            "{}",
            lp.resolved()
        );
        assert!(KeyUrl::try_from("lp:Alice".to_string()).is_err());
        assert!(KeyUrl::try_from("http://example.org/k".to_string()).is_err());
        assert!(KeyUrl::try_from("http://127.0.0.1:8080/k".to_string()).is_ok());
        assert!(KeyUrl::try_from("ftp://x".to_string()).is_err());
    }

    #[test]
    fn authorized_keys_lines() {
        let text = format!("# hi\n{ED25519}\ngarbage here\n\n");
        let lines = parse_authorized_keys(&text);
        assert!(matches!(lines[0], AuthorizedLine::Comment(_)));
        assert!(matches!(lines[1], AuthorizedLine::Key(_)));
        assert!(matches!(lines[2], AuthorizedLine::Invalid(..)));
    }
}
