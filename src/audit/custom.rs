//! Checks of your own: loading `etc/bollwerk/checks.d/*.toml` of the target, `audit --checks
//! DIR` and a profile's `audit.checks_dir` with the built-in catalog's schema and validation
//! (errors carry file:line:col; ids may not collide with built-in ones), and the probe kinds
//! made for them:
//!
//! - `command`: runs a program of the root (argv, never a shell) with a timeout and judges
//!   its exit code and stdout;
//! - `port`: who listens on a TCP port, and on which addresses (`/proc/net/tcp*` of the running
//!   system; skipped for an image);
//! - `http`: status and body of a loopback URL (other hosts are refused at load time);
//! - `file_age`: the newest file under a path is younger than `max_age`;
//! - `tls_cert`: a PEM certificate expires in more than `min_days` days.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::catalog::Catalog;
use super::check::{CatalogFile, Check, Probe};
use super::expect::Outcome;
use super::facts::AuditCx;
use crate::error::{Error, Result};
use crate::exec::{Cmd, ExecError};
use crate::profile::Loaded;
use crate::root::{RelPath, Root};

/// Where the target keeps its own checks.
pub const CHECKS_D: &str = "etc/bollwerk/checks.d";
/// Largest check file read.
const MAX_FILE: u64 = 1 << 20;

// ---- probe definitions ---------------------------------------------------------------

/// `{ kind = "command", argv = ["/usr/bin/x", "…"], expect = { exit = 0, stdout_matches = "…" } }`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandProbe {
    /// Program (absolute path inside the root) and arguments, passed as they are (no shell).
    pub argv: Vec<String>,
    /// Killed after this long (`"10s"`, default 10 s, at most 5 min).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// What a passing run looks like.
    #[serde(default)]
    pub expect: CommandExpect,
}

/// Expected result of a `command` probe.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandExpect {
    /// Exit code (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    /// A regular expression stdout must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_matches: Option<String>,
    /// A regular expression stdout must not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_not_matches: Option<String>,
}

/// `{ kind = "port", port = 5432, only_on = ["127.0.0.1", "::1"] }`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortProbe {
    /// TCP port.
    pub port: u16,
    /// Something must listen (default), or nothing may (`false`).
    #[serde(default = "yes")]
    pub listening: bool,
    /// When listening: the only addresses it may listen on (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only_on: Vec<String>,
}

fn yes() -> bool {
    true
}

/// `{ kind = "http", url = "http://127.0.0.1:8080/health", status = 200, body_matches = "ok" }`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    /// A loopback `http://` URL (127.0.0.0/8, `[::1]`, `localhost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Or: the profile key naming the URL (the check is not applicable until it is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_profile: Option<String>,
    /// Expected status (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// A regular expression the body must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_matches: Option<String>,
    /// Timeout (default 5 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// `{ kind = "file_age", path = "/var/backups/app", max_age = "26h" }`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileAgeProbe {
    /// A file, or a directory whose newest file (recursively) is judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Or: the profile key naming the path (the check is not applicable until it is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_profile: Option<String>,
    /// Maximum age (`"26h"`, `"7d"`).
    pub max_age: String,
}

/// `{ kind = "tls_cert", path = "/etc/ssl/certs/app.pem", min_days = 14 }`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsCertProbe {
    /// PEM file; its first certificate is judged.
    pub path: String,
    /// It must still be valid this many days from now.
    pub min_days: u32,
}

// ---- validation ----------------------------------------------------------------------

fn duration(s: &str, what: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{what} `{s}`: {e} (like \"30s\", \"26h\")"))
}

fn regex(r: &Option<String>) -> std::result::Result<(), String> {
    if let Some(r) = r {
        Regex::new(r).map_err(|e| format!("bad regular expression `{r}`: {e}"))?;
    }
    Ok(())
}

fn path_ok(p: &str) -> std::result::Result<(), String> {
    if p.trim_matches('/').is_empty() || p.split('/').any(|c| c == "..") {
        return Err(format!(
            "path `{p}` must name something under the root, without `..`"
        ));
    }
    Ok(())
}

/// Checks a loopback `http://` URL; returns it parsed.
pub fn loopback_url(u: &str) -> std::result::Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(u).map_err(|e| format!("url `{u}`: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!("url `{u}`: only http:// on loopback is probed"));
    }
    let host = url.host_str().unwrap_or("");
    let ok = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|a| a.is_loopback());
    if !ok || !url.username().is_empty() {
        return Err(format!(
            "url `{u}`: refused, the http probe only asks this host (127.0.0.0/8, [::1], localhost)"
        ));
    }
    Ok(url)
}

/// Validates a custom probe (the catalog calls this for the kinds of this module).
///
/// # Errors
/// What is wrong, in words.
pub fn validate(p: &Probe) -> std::result::Result<(), String> {
    match p {
        Probe::Command(c) => {
            let Some(prog) = c.argv.first() else {
                return Err("command probe: `argv` needs the program".into());
            };
            if !prog.starts_with('/') || prog.split('/').any(|c| c == "..") {
                return Err(format!(
                    "command probe: program `{prog}` must be an absolute path (no shell, no PATH lookup)"
                ));
            }
            if let Some(t) = &c.timeout {
                let d = duration(t, "timeout")?;
                if d > Duration::from_secs(300) || d.is_zero() {
                    return Err(format!("timeout `{t}` must be between 1s and 5m"));
                }
            }
            regex(&c.expect.stdout_matches)?;
            regex(&c.expect.stdout_not_matches)
        }
        Probe::Port(p) => {
            if p.port == 0 {
                return Err("port probe: port 0".into());
            }
            for a in &p.only_on {
                a.parse::<IpAddr>()
                    .map_err(|_| format!("only_on `{a}` is not an IP address"))?;
            }
            if !p.listening && !p.only_on.is_empty() {
                return Err("port probe: `only_on` needs `listening = true`".into());
            }
            Ok(())
        }
        Probe::Http(h) => {
            match (&h.url, &h.from_profile) {
                (Some(u), None) => {
                    loopback_url(u)?;
                }
                (None, Some(_)) => {}
                _ => return Err("http probe needs `url` or `from_profile` (one of them)".into()),
            }
            if let Some(t) = &h.timeout {
                duration(t, "timeout")?;
            }
            regex(&h.body_matches)
        }
        Probe::FileAge(f) => {
            match (&f.path, &f.from_profile) {
                (Some(p), None) => path_ok(p)?,
                (None, Some(_)) => {}
                _ => {
                    return Err(
                        "file_age probe needs `path` or `from_profile` (one of them)".into(),
                    );
                }
            }
            duration(&f.max_age, "max_age").map(|_| ())
        }
        Probe::TlsCert(t) => path_ok(&t.path),
        _ => Ok(()),
    }
}

/// What a passing custom probe looks like, for reports.
pub fn expected(p: &Probe) -> String {
    match p {
        Probe::Command(c) => {
            let mut s = format!(
                "`{}` exits {}",
                c.argv.join(" "),
                c.expect.exit.unwrap_or(0)
            );
            if let Some(r) = &c.expect.stdout_matches {
                s.push_str(&format!(", stdout matches /{r}/"));
            }
            if let Some(r) = &c.expect.stdout_not_matches {
                s.push_str(&format!(", stdout does not match /{r}/"));
            }
            s
        }
        Probe::Port(p) if !p.listening => format!("nothing listens on TCP port {}", p.port),
        Probe::Port(p) if p.only_on.is_empty() => format!("TCP port {} is listening", p.port),
        Probe::Port(p) => format!(
            "TCP port {} listens only on {}",
            p.port,
            p.only_on.join(", ")
        ),
        Probe::Http(h) => format!(
            "{} answers {}{}",
            h.url
                .clone()
                .or_else(|| h.from_profile.clone())
                .unwrap_or_default(),
            h.status.unwrap_or(200),
            h.body_matches
                .as_ref()
                .map(|r| format!(" with a body matching /{r}/"))
                .unwrap_or_default()
        ),
        Probe::FileAge(f) => format!(
            "the newest file under {} is younger than {}",
            f.path
                .clone()
                .or_else(|| f.from_profile.clone())
                .unwrap_or_default(),
            f.max_age
        ),
        Probe::TlsCert(t) => format!(
            "the certificate {} is valid for more than {} days",
            t.path, t.min_days
        ),
        _ => String::new(),
    }
}

// ---- evaluation ----------------------------------------------------------------------

/// Evaluates a custom probe.
pub fn eval(cx: &AuditCx, p: &Probe) -> Outcome {
    match p {
        Probe::Command(c) => command(cx, c),
        Probe::Port(p) => port(cx, p),
        Probe::Http(h) => http(cx, h),
        Probe::FileAge(f) => file_age(cx, f),
        Probe::TlsCert(t) => tls_cert(cx, t),
        _ => Outcome::error("not a custom probe"),
    }
}

fn first_line(s: &str) -> String {
    let l = s
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    if l.chars().count() > 160 {
        format!("{}…", l.chars().take(160).collect::<String>())
    } else {
        l.to_string()
    }
}

fn command(cx: &AuditCx, c: &CommandProbe) -> Outcome {
    let timeout = c
        .timeout
        .as_deref()
        .and_then(|t| humantime::parse_duration(t).ok())
        .unwrap_or(Duration::from_secs(10));
    let args: Vec<&str> = c.argv[1..].iter().map(String::as_str).collect();
    let cmd = Cmd::in_root(&c.argv[0], &args).timeout(timeout);
    let shown = cmd.display();
    let out = match cx.runner.run(&cx.root, &cmd) {
        Ok(o) => o,
        Err(ExecError::Timeout { secs, .. }) => {
            return Outcome::fail(format!("`{shown}` timed out after {secs}s"));
        }
        Err(e) => return Outcome::error(format!("`{shown}`: {e}")),
    };
    let want = c.expect.exit.unwrap_or(0);
    let ev = format!(
        "`{shown}` exited {}; stdout: {:?}",
        out.code,
        first_line(&out.stdout)
    );
    if out.code != want {
        let err = first_line(&out.stderr);
        return Outcome::fail(if err.is_empty() {
            ev
        } else {
            format!("{ev}; stderr: {err:?}")
        });
    }
    let re = |r: &String| Regex::new(r).map(|re| re.is_match(&out.stdout));
    if let Some(r) = &c.expect.stdout_matches {
        match re(r) {
            Ok(true) => {}
            Ok(false) => return Outcome::fail(format!("{ev}; does not match /{r}/")),
            Err(e) => return Outcome::error(e.to_string()),
        }
    }
    if let Some(r) = &c.expect.stdout_not_matches {
        match re(r) {
            Ok(false) => {}
            Ok(true) => return Outcome::fail(format!("{ev}; matches /{r}/")),
            Err(e) => return Outcome::error(e.to_string()),
        }
    }
    Outcome::pass(ev)
}

/// Parses `/proc/net/tcp` or `tcp6`: the addresses listening on `port`.
pub fn listeners(text: &str, port: u16) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for s in crate::state::sockets::listening(text, false) {
        if s.port == port && !out.contains(&s.addr) {
            out.push(s.addr);
        }
    }
    out
}

fn port(cx: &AuditCx, p: &PortProbe) -> Outcome {
    let Some(proc_dir) = &cx.proc_dir else {
        return Outcome::skipped(
            "needs the running system (--root /): listening sockets are not visible in an image",
        );
    };
    let mut addrs = Vec::new();
    for f in ["net/tcp", "net/tcp6"] {
        match std::fs::read_to_string(proc_dir.join(f)) {
            Ok(t) => addrs.extend(listeners(&t, p.port)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Outcome::error(format!("{}/{f}: {e}", proc_dir.display())),
        }
    }
    let shown: Vec<String> = addrs.iter().map(IpAddr::to_string).collect();
    let ev = if addrs.is_empty() {
        format!("nothing listens on TCP port {} (/proc/net/tcp*)", p.port)
    } else {
        format!(
            "TCP port {} listens on {} (/proc/net/tcp*)",
            p.port,
            shown.join(", ")
        )
    };
    if !p.listening {
        return if addrs.is_empty() {
            Outcome::pass(ev)
        } else {
            Outcome::fail(ev)
        };
    }
    if addrs.is_empty() {
        return Outcome::fail(ev);
    }
    let allowed: Vec<IpAddr> = p.only_on.iter().filter_map(|a| a.parse().ok()).collect();
    if !allowed.is_empty() && addrs.iter().any(|a| !allowed.contains(a)) {
        return Outcome::fail(ev);
    }
    Outcome::pass(ev)
}

fn profile_str(cx: &AuditCx, key: &str) -> Option<String> {
    cx.profile_values(key)
        .into_iter()
        .find_map(|v| v.as_str().map(str::to_string))
}

fn http(cx: &AuditCx, h: &HttpProbe) -> Outcome {
    let url = match (&h.url, &h.from_profile) {
        (Some(u), _) => u.clone(),
        (None, Some(k)) => match profile_str(cx, k) {
            Some(u) => u,
            None => return Outcome::na(format!("the profile does not name {k}")),
        },
        (None, None) => return Outcome::error("no url"),
    };
    let parsed = match loopback_url(&url) {
        Ok(u) => u,
        Err(e) => return Outcome::error(e),
    };
    if !cx.live() {
        return Outcome::skipped("needs the running system (--root /): the URL is on this host");
    }
    let timeout = h
        .timeout
        .as_deref()
        .and_then(|t| humantime::parse_duration(t).ok())
        .unwrap_or(Duration::from_secs(5));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let port = parsed.port_or_known_default().unwrap_or(80);
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .resolve(
            "localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .user_agent(concat!("bollwerk-audit/", env!("CARGO_PKG_VERSION")))
        .build();
    let client = match client {
        Ok(c) => c,
        Err(e) => return Outcome::error(format!("initialising the HTTP client: {e}")),
    };
    let resp = match client.get(parsed).send() {
        Ok(r) => r,
        Err(e) => return Outcome::fail(format!("GET {url}: {e}")),
    };
    let status = resp.status().as_u16();
    let mut body = String::new();
    let _ = std::io::Read::read_to_string(&mut std::io::Read::take(resp, 1 << 20), &mut body);
    let ev = format!("GET {url}: {status}; body: {:?}", first_line(&body));
    if status != h.status.unwrap_or(200) {
        return Outcome::fail(ev);
    }
    if let Some(r) = &h.body_matches {
        match Regex::new(r) {
            Ok(re) if re.is_match(&body) => {}
            Ok(_) => return Outcome::fail(format!("{ev}; does not match /{r}/")),
            Err(e) => return Outcome::error(e.to_string()),
        }
    }
    Outcome::pass(ev)
}

/// The newest regular file under `dir` (not following symlinks): (path, mtime).
fn newest(
    dir: &Path,
    depth: u32,
    budget: &mut u32,
) -> std::io::Result<Option<(PathBuf, SystemTime)>> {
    let mut best: Option<(PathBuf, SystemTime)> = None;
    for e in std::fs::read_dir(dir)? {
        if *budget == 0 {
            break;
        }
        *budget -= 1;
        let e = e?;
        let md = e.path().symlink_metadata()?;
        let cand = if md.is_file() {
            Some((e.path(), md.modified()?))
        } else if md.is_dir() && depth < 16 {
            newest(&e.path(), depth + 1, budget)?
        } else {
            None
        };
        if let Some(c) = cand
            && best.as_ref().is_none_or(|b| c.1 > b.1)
        {
            best = Some(c);
        }
    }
    Ok(best)
}

fn file_age(cx: &AuditCx, f: &FileAgeProbe) -> Outcome {
    let path = match (&f.path, &f.from_profile) {
        (Some(p), _) => p.clone(),
        (None, Some(k)) => match profile_str(cx, k) {
            Some(p) => p,
            None => return Outcome::na(format!("the profile does not name {k}")),
        },
        (None, None) => return Outcome::error("no path"),
    };
    let Ok(max) = humantime::parse_duration(&f.max_age) else {
        return Outcome::error(format!("bad max_age {}", f.max_age));
    };
    let rel = match RelPath::new(path.trim_start_matches('/')) {
        Ok(r) => r,
        Err(e) => return Outcome::error(format!("path {path}: {e}")),
    };
    // A symlinked backup directory is followed as a chroot would (never out of the root);
    // symlinks below it are not.
    let full = cx.root.resolve_follow(&rel);
    let md = match full.symlink_metadata() {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Outcome::fail(format!("/{rel} does not exist"));
        }
        Err(e) => return Outcome::error(format!("/{rel}: {e}")),
    };
    let mut budget = 200_000;
    let found = if md.is_file() {
        md.modified().map(|t| Some((full.clone(), t)))
    } else if md.is_dir() {
        newest(&full, 0, &mut budget)
    } else {
        return Outcome::fail(format!("/{rel} is neither a file nor a directory"));
    };
    let (p, t) = match found {
        Ok(Some(x)) => x,
        Ok(None) => return Outcome::fail(format!("no file under /{rel}")),
        Err(e) => return Outcome::error(format!("/{rel}: {e}")),
    };
    let age = SystemTime::now().duration_since(t).unwrap_or_default();
    let shown = p
        .strip_prefix(cx.root.path())
        .map(|x| format!("/{}", x.display()))
        .unwrap_or_else(|_| p.display().to_string());
    let ev = format!(
        "newest file {shown} is {} old",
        humantime::format_duration(Duration::from_secs(age.as_secs()))
    );
    if age <= max {
        Outcome::pass(ev)
    } else {
        Outcome::fail(ev)
    }
}

// ---- certificates --------------------------------------------------------------------

/// One DER element at `pos`: (tag, content start, content end).
fn tlv(b: &[u8], pos: usize) -> Option<(u8, usize, usize)> {
    let tag = *b.get(pos)?;
    let l0 = *b.get(pos + 1)? as usize;
    let (len, start) = if l0 < 0x80 {
        (l0, pos + 2)
    } else {
        let n = l0 & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(pos + 2 + i)? as usize;
        }
        (len, pos + 2 + n)
    };
    let end = start.checked_add(len)?;
    (end <= b.len()).then_some((tag, start, end))
}

/// Days from the civil date (Howard Hinnant's algorithm) to seconds since the epoch.
fn epoch(y: i64, m: i64, d: i64, hh: i64, mm: i64, ss: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * 86_400 + hh * 3600 + mm * 60 + ss
}

fn asn1_time(tag: u8, s: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(s).ok()?.strip_suffix('Z')?;
    let n = |a: usize, b: usize| s.get(a..b)?.parse::<i64>().ok();
    let (y, rest) = match tag {
        0x17 => {
            let yy = n(0, 2)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, 2)
        }
        0x18 => (n(0, 4)?, 4),
        _ => return None,
    };
    if s.len() != rest + 10 {
        return None;
    }
    Some(epoch(
        y,
        n(rest, rest + 2)?,
        n(rest + 2, rest + 4)?,
        n(rest + 4, rest + 6)?,
        n(rest + 6, rest + 8)?,
        n(rest + 8, rest + 10)?,
    ))
}

/// `notAfter` of the first certificate of a PEM text, seconds since the epoch.
///
/// # Errors
/// No certificate, bad base64 or DER.
pub fn not_after(pem: &str) -> std::result::Result<i64, String> {
    use base64::Engine;
    let begin = "-----BEGIN CERTIFICATE-----";
    let start = pem.find(begin).ok_or("no PEM certificate")? + begin.len();
    let end = pem[start..]
        .find("-----END CERTIFICATE-----")
        .ok_or("unterminated PEM certificate")?;
    let b64: String = pem[start..start + end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("bad base64: {e}"))?;
    let bad = || "not an X.509 certificate (DER)".to_string();
    let (t, cs, _) = tlv(&der, 0).filter(|x| x.0 == 0x30).ok_or_else(bad)?;
    let _ = t;
    let (_, ts, te) = tlv(&der, cs).filter(|x| x.0 == 0x30).ok_or_else(bad)?;
    let mut pos = ts;
    // [0] version (optional), serial, signature algorithm, issuer, then validity.
    if tlv(&der, pos).ok_or_else(bad)?.0 == 0xa0 {
        pos = tlv(&der, pos).ok_or_else(bad)?.2;
    }
    for _ in 0..3 {
        pos = tlv(&der, pos).ok_or_else(bad)?.2;
    }
    let (vt, vs, ve) = tlv(&der, pos).ok_or_else(bad)?;
    if vt != 0x30 || ve > te {
        return Err(bad());
    }
    let nb = tlv(&der, vs).ok_or_else(bad)?;
    let (tag, s, e) = tlv(&der, nb.2).ok_or_else(bad)?;
    asn1_time(tag, &der[s..e]).ok_or_else(|| "unreadable notAfter time".into())
}

fn tls_cert(cx: &AuditCx, t: &TlsCertProbe) -> Outcome {
    let text = match cx.read(t.path.trim_start_matches('/')) {
        Ok(Some(s)) => s,
        Ok(None) => return Outcome::fail(format!("{} does not exist", t.path)),
        Err(e) => return Outcome::error(format!("{}: {e}", t.path)),
    };
    let end = match not_after(&text) {
        Ok(x) => x,
        Err(e) => return Outcome::error(format!("{}: {e}", t.path)),
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = (end - now).div_euclid(86_400);
    let when = super::rfc3339(end.max(0) as u64);
    if end - now > i64::from(t.min_days) * 86_400 {
        Outcome::pass(format!("{}: expires {when} (in {days} days)", t.path))
    } else if end <= now {
        Outcome::fail(format!("{}: expired {when}", t.path))
    } else {
        Outcome::fail(format!("{}: expires {when} (in {days} days)", t.path))
    }
}

// ---- loading -------------------------------------------------------------------------

/// The checks of a profile's `[[audit.checks]]`, parsed and validated; `taken` collects ids.
fn profile_checks(
    a: &super::profile::AuditSection,
    taken: &mut BTreeSet<String>,
) -> std::result::Result<Vec<Check>, String> {
    let mut out = Vec::new();
    for (i, v) in a.checks.iter().flatten().enumerate() {
        let c: Check =
            serde_json::from_value(v.clone()).map_err(|e| format!("audit.checks[{i}]: {e}"))?;
        super::catalog::validate(&c).map_err(|m| format!("audit.checks[{i}] `{}`: {m}", c.id))?;
        if !taken.insert(c.id.clone()) {
            return Err(format!(
                "audit.checks[{i}]: check id `{}` is already taken (built-in or listed twice)",
                c.id
            ));
        }
        out.push(c);
    }
    Ok(out)
}

/// Profile validation of the `[audit]` keys this module owns: `checks` (the catalog's rules,
/// no id collisions) and `health_url` (loopback only).
///
/// # Errors
/// A [`crate::profile::ProfileError`] at `audit.checks` / `audit.health_url`.
pub fn check_profile(
    a: &super::profile::AuditSection,
    layers: &[crate::profile::Layer],
) -> std::result::Result<(), crate::profile::ProfileError> {
    if let Some(u) = &a.health_url
        && let Err(m) = loopback_url(u)
    {
        return Err(crate::profile::error_at(layers, &["audit", "health_url"], m)
            .with_hint("name the application's health endpoint on this host, e.g. http://127.0.0.1:8080/health"));
    }
    let mut taken: BTreeSet<String> = Catalog::embedded()
        .map(|c| c.checks.into_iter().map(|c| c.id).collect())
        .unwrap_or_default();
    profile_checks(a, &mut taken).map(|_| ()).map_err(|m| {
        crate::profile::error_at(layers, &["audit", "checks"], m)
            .with_hint("use the check catalog's format (checks/README.md, docs/fleet.md)")
    })
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[derive(Deserialize)]
struct Spans {
    #[serde(default)]
    check: Vec<toml::Spanned<toml::Table>>,
}

/// Parses and validates one check file; `shown` is its name in errors, `taken` the ids
/// already in use (built-in and earlier files).
///
/// # Errors
/// A parse or validation error with `shown:line:col` (exit 2).
pub fn parse_file(shown: &str, text: &str, taken: &mut BTreeSet<String>) -> Result<Vec<Check>> {
    let usage = |off: usize, msg: &str| {
        let (l, c) = line_col(text, off);
        Error::Usage(format!(
            "{shown}:{l}:{c}: {msg}\n  hint: the format is the built-in catalog's (checks/README.md, docs/fleet.md)"
        ))
    };
    let file: CatalogFile = toml::from_str(text).map_err(|e| {
        let off = e.span().map_or(0, |s| s.start);
        usage(off, e.message())
    })?;
    let spans: Spans = toml::from_str(text).map_err(|e| usage(0, e.message()))?;
    for (i, c) in file.check.iter().enumerate() {
        let off = spans.check.get(i).map_or(0, |s| s.span().start);
        // The built-in catalog's validation.
        super::catalog::validate(c).map_err(|m| usage(off, &format!("check `{}`: {m}", c.id)))?;
        if !taken.insert(c.id.clone()) {
            return Err(usage(
                off,
                &format!(
                    "check id `{}` is already taken (built-in or another file); choose another",
                    c.id
                ),
            ));
        }
    }
    Ok(file.check)
}

/// Loads every `*.toml` of a directory, in name order; a missing directory has no checks.
///
/// # Errors
/// An unreadable file, a symlink or oversized file, or an invalid check (exit 2).
pub fn load_dir(dir: &Path, shown: &str, taken: &mut BTreeSet<String>) -> Result<Vec<Check>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("reading", dir, e)),
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml") && !n.starts_with('.'))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let p = dir.join(&n);
        let label = format!("{}/{n}", shown.trim_end_matches('/'));
        let md = p
            .symlink_metadata()
            .map_err(|e| Error::io("reading", &p, e))?;
        if !md.is_file() || md.len() > MAX_FILE {
            return Err(Error::Usage(format!(
                "{label}: not a regular file of at most 1 MiB; refusing to read it"
            )));
        }
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io("reading", &p, e))?;
        out.extend(parse_file(&label, &text, taken)?);
    }
    Ok(out)
}

/// The catalog for an audit: the built-in checks, then the target's `etc/bollwerk/checks.d`,
/// the profile's `audit.checks_dir` (a path on the machine running bollwerk), and `--checks DIR`.
///
/// # Errors
/// An invalid check file (exit 2).
pub fn with_custom(
    mut cat: Catalog,
    root: &Path,
    checks: Option<&Path>,
    profile: Option<&Loaded>,
) -> Result<Catalog> {
    let mut taken: BTreeSet<String> = cat.checks.iter().map(|c| c.id.clone()).collect();
    if let Some(l) = profile
        && let Some(a) = &l.profile.audit
    {
        let c = profile_checks(a, &mut taken)
            .map_err(|m| Error::Usage(format!("{}: {m}", l.name())))?;
        cat.checks.extend(c);
    }
    let root = Root::new(root)?;
    let on_target = root.resolve(&RelPath::lit(CHECKS_D));
    cat.checks
        .extend(load_dir(&on_target, &format!("/{CHECKS_D}"), &mut taken)?);
    if let Some(d) = profile
        .and_then(|l| l.profile.audit.as_ref())
        .and_then(|a| a.checks_dir.as_ref())
    {
        let d = PathBuf::from(d.to_string());
        cat.checks
            .extend(load_dir(&d, &d.display().to_string(), &mut taken)?);
    }
    if let Some(d) = checks {
        if !d.is_dir() {
            return Err(Error::Usage(format!(
                "--checks {}: not a directory",
                d.display()
            )));
        }
        cat.checks
            .extend(load_dir(d, &d.display().to_string(), &mut taken)?);
    }
    Ok(cat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_addresses() {
        let v4 = "  sl  local_address rem_address   st\n   0: 0100007F:1538 00000000:0000 0A 0\n   1: 00000000:0016 00000000:0000 0A 0\n   2: 0100007F:1538 0100007F:9C40 01 0\n";
        assert_eq!(
            listeners(v4, 5432),
            ["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(listeners(v4, 22), ["0.0.0.0".parse::<IpAddr>().unwrap()]);
        let v6 = "  sl  local_address\n   0: 00000000000000000000000001000000:1538 00000000000000000000000000000000:0000 0A 0\n";
        assert_eq!(listeners(v6, 5432), ["::1".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn epoch_and_asn1_times() {
        assert_eq!(epoch(1970, 1, 1, 0, 0, 0), 0);
        assert_eq!(asn1_time(0x17, b"260921141320Z"), Some(1_790_000_000));
        assert_eq!(asn1_time(0x18, b"20260921141320Z"), Some(1_790_000_000));
        assert_eq!(asn1_time(0x17, b"2609211413Z"), None);
    }

    #[test]
    fn only_loopback_urls() {
        assert!(loopback_url("http://127.0.0.1:8080/health").is_ok());
        assert!(loopback_url("http://[::1]/").is_ok());
        assert!(loopback_url("http://localhost:3000/").is_ok());
        for bad in [
            "http://example.org/",
            "http://10.0.0.1/",
            "https://127.0.0.1/",
            "http://127.0.0.1.nip.io/",
            "file:///etc/passwd",
        ] {
            assert!(loopback_url(bad).is_err(), "{bad}");
        }
    }
}
