//! Reading OpenSSH server configuration: `sshd_config` files (keywords, `Include`, `Match`
//! blocks, with line numbers) and the effective configuration printed by `sshd -T`.
//!
//! OpenSSH keeps the *first* value it reads for most keywords, so where a setting comes from
//! matters; the truth about the effective value is always `sshd -T`. Where sshd cannot run
//! (a tree without its binary, a planned configuration), [`load`] flattens the main file and
//! its `Include`s into one ordered list and [`evaluate`] applies `Match` blocks for one
//! connection the way sshd's `parse_server_match_config` does. Reading is bounded:
//! [`MAX_FILE_BYTES`] per file, [`MAX_INCLUDE_DEPTH`] levels, [`MAX_INCLUDED_FILES`] files.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// Largest configuration file read (bytes); a bigger one is an error, not a truncation.
pub const MAX_FILE_BYTES: usize = 256 * 1024;
/// Deepest `Include` nesting followed (OpenSSH's own limit is 16).
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// Most files read through `Include`s in one configuration.
pub const MAX_INCLUDED_FILES: usize = 256;

/// One directive of an `sshd_config` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// 1-based line number.
    pub line: usize,
    /// Keyword, lower-cased (`passwordauthentication`).
    pub keyword: String,
    /// Arguments, unquoted.
    pub args: Vec<String>,
    /// True when the directive is inside a `Match` block.
    pub in_match: bool,
}

/// A parsed `sshd_config` file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SshdConfig {
    /// Directives in file order (`Match` lines themselves included, with `in_match = true`).
    pub directives: Vec<Directive>,
}

/// Splits a configuration line into words, honouring double quotes (as OpenSSH's `argv_split`).
pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut have = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                have = true;
            }
            '\\' if in_quotes && matches!(chars.peek(), Some('"') | Some('\\')) => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() && !in_quotes => {
                if have || !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            '=' if !in_quotes && words.is_empty() && !cur.is_empty() => {
                // `Keyword=value` form.
                words.push(std::mem::take(&mut cur));
                have = false;
            }
            c => cur.push(c),
        }
    }
    if have || !cur.is_empty() {
        words.push(cur);
    }
    words
}

impl SshdConfig {
    /// Parses file text; blank lines and comments are skipped.
    pub fn parse(text: &str) -> SshdConfig {
        let mut directives = Vec::new();
        let mut in_match = false;
        for (i, raw) in text.lines().enumerate() {
            let t = raw.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let mut words = split_words(t);
            if words.is_empty() {
                continue;
            }
            let keyword = words.remove(0).to_ascii_lowercase();
            if keyword == "match" {
                in_match = true;
            }
            directives.push(Directive {
                line: i + 1,
                keyword,
                args: words,
                in_match,
            });
        }
        SshdConfig { directives }
    }

    /// The first directive outside `Match` blocks with this (lower-case) keyword.
    pub fn first(&self, keyword: &str) -> Option<&Directive> {
        self.directives
            .iter()
            .find(|d| !d.in_match && d.keyword == keyword)
    }

    /// The first directive of the file, if any.
    pub fn first_directive(&self) -> Option<&Directive> {
        self.directives.first()
    }

    /// `Include` directives outside `Match` blocks.
    pub fn includes(&self) -> impl Iterator<Item = &Directive> {
        self.directives
            .iter()
            .filter(|d| !d.in_match && d.keyword == "include")
    }
}

/// Matches a file name against an `ssh`-style glob (`*` and `?`), in O(pattern × name) time
/// (a recursive matcher is exponential on `*a*a*a…b`, and include globs come from the root).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The effective server configuration as printed by `sshd -T`: lower-case keyword → values
/// (keywords that may repeat, like `port` or `hostkey`, keep every value in order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Effective {
    /// Keyword → values (each value is the rest of the line).
    pub values: BTreeMap<String, Vec<String>>,
}

impl Effective {
    /// Parses `sshd -T` output.
    pub fn parse(text: &str) -> Effective {
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (k, v) = line.split_once(' ').unwrap_or((line, ""));
            values
                .entry(k.to_ascii_lowercase())
                .or_default()
                .push(v.trim().to_string());
        }
        Effective { values }
    }

    /// The first value of a keyword.
    pub fn get(&self, keyword: &str) -> Option<&str> {
        self.values
            .get(keyword)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// All values of a keyword.
    pub fn all(&self, keyword: &str) -> &[String] {
        self.values.get(keyword).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Keyword aliases sshd treats as one option (the first value of either wins).
pub fn canonical_keyword(k: &str) -> &str {
    match k {
        "challengeresponseauthentication" => "kbdinteractiveauthentication",
        "pubkeyacceptedkeytypes" => "pubkeyacceptedalgorithms",
        "hostbasedacceptedkeytypes" => "hostbasedacceptedalgorithms",
        "dsaauthentication" => "pubkeyauthentication",
        other => other,
    }
}

/// Keywords whose lines accumulate instead of first-value-wins. For the Allow/Deny lists a
/// matching `Match` block's list replaces the global one.
pub fn accumulates(k: &str) -> bool {
    matches!(
        k,
        "port"
            | "listenaddress"
            | "hostkey"
            | "hostcertificate"
            | "acceptenv"
            | "allowusers"
            | "denyusers"
            | "allowgroups"
            | "denygroups"
            | "subsystem"
    )
}

/// One criterion of a `Match` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Criterion {
    /// `Match All`.
    All,
    /// `User` pattern list.
    User(String),
    /// `Group` pattern list.
    Group(String),
    /// `Host` pattern list.
    Host(String),
    /// `Address` list (CIDR or wildcard, `!` negates).
    Address(String),
    /// `LocalAddress` list.
    LocalAddress(String),
    /// `LocalPort` number.
    LocalPort(String),
    /// A criterion this evaluator does not know (it never matches).
    Unknown(String),
}

/// Parses the arguments of a `Match` line.
pub fn parse_match(args: &[String]) -> Vec<Criterion> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let k = k.to_ascii_lowercase();
        if k == "all" {
            out.push(Criterion::All);
            continue;
        }
        let v = it.next().cloned().unwrap_or_default();
        out.push(match k.as_str() {
            "user" => Criterion::User(v),
            "group" => Criterion::Group(v),
            "host" => Criterion::Host(v),
            "address" => Criterion::Address(v),
            "localaddress" => Criterion::LocalAddress(v),
            "localport" => Criterion::LocalPort(v),
            other => Criterion::Unknown(format!("{other} {v}")),
        });
    }
    out
}

/// One connection, as `sshd -T -C user=…,host=…,addr=…,lport=…` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// Login name.
    pub user: String,
    /// The user's groups (primary and supplementary), from the root's own files.
    pub groups: Vec<String>,
    /// Client host name (with `UseDNS no`, sshd's default, the address as text).
    pub host: String,
    /// Client address.
    pub addr: IpAddr,
    /// Local address the client connected to.
    pub laddr: Option<IpAddr>,
    /// Local port the client connected to.
    pub lport: u16,
}

/// OpenSSH's `match_pattern_list`: comma-separated patterns, `!` negates; a matching negated
/// pattern wins over everything.
pub fn match_pattern_list(s: &str, list: &str, lower: bool) -> bool {
    let s = if lower {
        s.to_ascii_lowercase()
    } else {
        s.to_string()
    };
    let mut positive = false;
    for p in list.split(',').filter(|p| !p.is_empty()) {
        let (neg, p) = p.strip_prefix('!').map_or((false, p), |r| (true, r));
        let p = if lower {
            p.to_ascii_lowercase()
        } else {
            p.to_string()
        };
        if glob_match(&p, &s) {
            if neg {
                return false;
            }
            positive = true;
        }
    }
    positive
}

fn cidr_contains(net: &str, addr: IpAddr) -> Option<bool> {
    let (a, bits) = match net.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u32>().ok()?)),
        None => (net, None),
    };
    let a: IpAddr = a.parse().ok()?;
    match (a, addr) {
        (IpAddr::V4(n), IpAddr::V4(x)) => {
            let bits = bits.unwrap_or(32);
            if bits > 32 {
                return None;
            }
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            Some(u32::from(n) & mask == u32::from(x) & mask)
        }
        (IpAddr::V6(n), IpAddr::V6(x)) => {
            let bits = bits.unwrap_or(128);
            if bits > 128 {
                return None;
            }
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            Some(u128::from(n) & mask == u128::from(x) & mask)
        }
        _ => Some(false),
    }
}

/// OpenSSH's `addr_match_list`: CIDR entries or wildcard patterns, `!` negates.
pub fn addr_match_list(addr: IpAddr, list: &str) -> bool {
    let text = addr.to_string();
    let mut positive = false;
    for p in list.split(',').filter(|p| !p.is_empty()) {
        let (neg, p) = p.strip_prefix('!').map_or((false, p), |r| (true, r));
        let hit = cidr_contains(p, addr).unwrap_or_else(|| glob_match(p, &text));
        if hit {
            if neg {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// True when every criterion of a `Match` line holds for `ci`.
pub fn match_line(crit: &[Criterion], ci: &ConnInfo) -> bool {
    !crit.is_empty()
        && crit.iter().all(|c| match c {
            Criterion::All => true,
            Criterion::User(l) => match_pattern_list(&ci.user, l, false),
            Criterion::Group(l) => {
                // A negated group only excludes; at least one group must match positively.
                let negs: Vec<&str> = l.split(',').filter_map(|p| p.strip_prefix('!')).collect();
                !ci.groups
                    .iter()
                    .any(|g| negs.iter().any(|n| glob_match(n, g)))
                    && ci.groups.iter().any(|g| match_pattern_list(g, l, false))
            }
            Criterion::Host(l) => match_pattern_list(&ci.host, l, true),
            Criterion::Address(l) => addr_match_list(ci.addr, l),
            Criterion::LocalAddress(l) => ci.laddr.is_some_and(|a| addr_match_list(a, l)),
            Criterion::LocalPort(p) => p.parse::<u16>().ok() == Some(ci.lport),
            Criterion::Unknown(_) => false,
        })
}

/// A `Match` line in force for a directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchCond {
    /// Its criteria.
    pub criteria: Vec<Criterion>,
    /// `file:line Match …` for provenance.
    pub origin: String,
}

/// One directive of the flattened configuration, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// File (as sshd names it, absolute).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// Canonical lower-case keyword.
    pub keyword: String,
    /// Arguments.
    pub args: Vec<String>,
    /// The `Match` lines that must all hold (empty: global). An `Include` inside a `Match`
    /// block adds the included file's own `Match` lines to the outer one.
    pub conds: Vec<MatchCond>,
}

/// The whole configuration in the order sshd reads it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Flattened {
    /// Directives (no `Include`/`Match` lines).
    pub directives: Vec<Located>,
    /// Files read, in order.
    pub files: Vec<String>,
}

/// Where [`load`] reads files from (the root now, or as a plan leaves it).
pub trait ConfigSource {
    /// An absolute path's content, `None` when absent.
    ///
    /// # Errors
    /// A message when it cannot be read.
    fn read(&self, abs: &str) -> Result<Option<Vec<u8>>, String>;
    /// The names in an absolute directory (empty when absent).
    ///
    /// # Errors
    /// A message when it cannot be listed.
    fn list(&self, dir: &str) -> Result<Vec<String>, String>;
}

/// Reads the main configuration file `main` (absolute) and every file its `Include`s pull in.
///
/// # Errors
/// A message naming the file when a limit is exceeded or a file cannot be read.
pub fn load(main: &str, src: &dyn ConfigSource) -> Result<Flattened, String> {
    let mut out = Flattened::default();
    let Some(text) = read_bounded(src, main)? else {
        return Ok(out);
    };
    out.files.push(main.to_string());
    flatten(src, main, &text, &[], 0, &mut out)?;
    Ok(out)
}

fn read_bounded(src: &dyn ConfigSource, path: &str) -> Result<Option<String>, String> {
    match src.read(path)? {
        None => Ok(None),
        Some(b) if b.len() > MAX_FILE_BYTES => Err(format!(
            "{path}: {} bytes, more than the {MAX_FILE_BYTES} bytes an sshd configuration file may have here",
            b.len()
        )),
        Some(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
    }
}

fn flatten(
    src: &dyn ConfigSource,
    file: &str,
    text: &str,
    outer: &[MatchCond],
    depth: usize,
    out: &mut Flattened,
) -> Result<(), String> {
    let mut conds: Vec<MatchCond> = outer.to_vec();
    for d in SshdConfig::parse(text).directives {
        match d.keyword.as_str() {
            "match" => {
                conds = outer.to_vec();
                conds.push(MatchCond {
                    criteria: parse_match(&d.args),
                    origin: format!("{file}:{} Match {}", d.line, d.args.join(" ")),
                });
            }
            "include" => {
                if depth + 1 > MAX_INCLUDE_DEPTH {
                    return Err(format!(
                        "{file}:{}: Include nested deeper than {MAX_INCLUDE_DEPTH} levels",
                        d.line
                    ));
                }
                for pat in &d.args {
                    for path in include_paths(src, pat)? {
                        if out.files.len() >= MAX_INCLUDED_FILES {
                            return Err(format!(
                                "{file}:{}: more than {MAX_INCLUDED_FILES} included files",
                                d.line
                            ));
                        }
                        if let Some(t) = read_bounded(src, &path)? {
                            out.files.push(path.clone());
                            flatten(src, &path, &t, &conds, depth + 1, out)?;
                        }
                    }
                }
            }
            kw => out.directives.push(Located {
                file: file.to_string(),
                line: d.line,
                keyword: canonical_keyword(kw).to_string(),
                args: d.args,
                conds: conds.clone(),
            }),
        }
    }
    Ok(())
}

fn include_paths(src: &dyn ConfigSource, pattern: &str) -> Result<Vec<String>, String> {
    let abs = if pattern.starts_with('/') {
        pattern.to_string()
    } else {
        format!("/etc/ssh/{pattern}")
    };
    let Some((dir, glob)) = abs.rsplit_once('/') else {
        return Ok(Vec::new());
    };
    if !glob.contains(['*', '?', '[']) {
        return Ok(vec![abs]);
    }
    let mut names: Vec<String> = src
        .list(if dir.is_empty() { "/" } else { dir })?
        .into_iter()
        .filter(|n| glob_match(glob, n))
        .collect();
    names.sort();
    Ok(names.into_iter().map(|n| format!("{dir}/{n}")).collect())
}

/// An effective value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The value (arguments joined by a space); accumulating keywords have one per line.
    pub values: Vec<String>,
    /// `file:line`, with the `Match` line when one applied.
    pub source: String,
}

/// Evaluates the flattened configuration for one connection (`None`: the global settings, as
/// `sshd -T` without `-C` prints them). As sshd: values from matching `Match` blocks override
/// global ones, and within each set the first value read wins (lists accumulate).
pub fn evaluate(flat: &Flattened, ci: Option<&ConnInfo>) -> BTreeMap<String, Value> {
    let mut global: BTreeMap<String, Value> = BTreeMap::new();
    let mut matched: BTreeMap<String, Value> = BTreeMap::new();
    for d in &flat.directives {
        let target = if d.conds.is_empty() {
            &mut global
        } else if ci.is_some_and(|ci| d.conds.iter().all(|c| match_line(&c.criteria, ci))) {
            &mut matched
        } else {
            continue;
        };
        let src = match d.conds.last() {
            Some(c) => format!("{}:{} (in {})", d.file, d.line, c.origin),
            None => format!("{}:{}", d.file, d.line),
        };
        let v = d.args.join(" ");
        match target.get_mut(&d.keyword) {
            Some(e) if accumulates(&d.keyword) => e.values.push(v),
            Some(_) => {}
            None => {
                target.insert(
                    d.keyword.clone(),
                    Value {
                        values: vec![v],
                        source: src,
                    },
                );
            }
        }
    }
    global.extend(matched);
    global
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_debian_default_shape() {
        let text = "# comment\nInclude /etc/ssh/sshd_config.d/*.conf\n\nKbdInteractiveAuthentication no\nUsePAM yes\nSubsystem sftp /usr/lib/openssh/sftp-server\nMatch User anoncvs\n  X11Forwarding no\n";
        let c = SshdConfig::parse(text);
        assert_eq!(c.first_directive().unwrap().keyword, "include");
        assert_eq!(c.includes().count(), 1);
        assert_eq!(c.first("usepam").unwrap().args, vec!["yes"]);
        assert_eq!(c.first("usepam").unwrap().line, 5);
        assert!(c.first("x11forwarding").is_none(), "inside Match only");
    }

    #[test]
    fn words_and_equals() {
        assert_eq!(
            split_words("Banner \"/etc/my banner\""),
            vec!["Banner", "/etc/my banner"]
        );
        assert_eq!(split_words("Port=2222"), vec!["Port", "2222"]);
        assert_eq!(
            split_words("AllowGroups  a b"),
            vec!["AllowGroups", "a", "b"]
        );
    }

    #[test]
    fn globbing() {
        assert!(glob_match("*.conf", "50-cloud-init.conf"));
        assert!(!glob_match("*.conf", "50-cloud-init.conf.bak"));
        assert!(glob_match("??-*.conf", "00-bollwerk.conf"));
    }

    #[test]
    fn effective_keeps_repeated_keys() {
        let e = Effective::parse("port 22\nport 2222\npermitrootlogin no\n");
        assert_eq!(e.all("port"), &["22".to_string(), "2222".to_string()]);
        assert_eq!(e.get("permitrootlogin"), Some("no"));
    }

    struct Mem(BTreeMap<String, String>);
    impl ConfigSource for Mem {
        fn read(&self, abs: &str) -> Result<Option<Vec<u8>>, String> {
            Ok(self.0.get(abs).map(|s| s.clone().into_bytes()))
        }
        fn list(&self, dir: &str) -> Result<Vec<String>, String> {
            Ok(self
                .0
                .keys()
                .filter_map(|k| k.strip_prefix(&format!("{dir}/")))
                .filter(|n| !n.contains('/'))
                .map(str::to_string)
                .collect())
        }
    }

    fn mem(files: &[(&str, &str)]) -> Mem {
        Mem(files
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    fn ci(user: &str, groups: &[&str], addr: &str) -> ConnInfo {
        ConnInfo {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            host: addr.into(),
            addr: addr.parse().unwrap(),
            laddr: None,
            lport: 22,
        }
    }

    #[test]
    fn match_blocks_override_globals_first_match_wins() {
        let m = mem(&[
            (
                "/etc/ssh/sshd_config",
                "Include /etc/ssh/sshd_config.d/*.conf\nPasswordAuthentication yes\nMatch User deploy\n  AuthenticationMethods publickey,password\nMatch Address 10.0.0.0/8,!10.1.0.0/16\n  PubkeyAuthentication no\n",
            ),
            (
                "/etc/ssh/sshd_config.d/00-a.conf",
                "PasswordAuthentication no\nAllowGroups sudo\nMatch Group ops\n  AllowGroups ops\n",
            ),
            (
                "/etc/ssh/sshd_config.d/10-b.conf",
                "AllowGroups admins\nMatch All\n  AuthenticationMethods publickey\n",
            ),
        ]);
        let f = load("/etc/ssh/sshd_config", &m).unwrap();
        assert_eq!(f.files.len(), 3);
        let g = evaluate(&f, None);
        assert_eq!(g["passwordauthentication"].values, ["no"]);
        assert_eq!(
            g["passwordauthentication"].source,
            "/etc/ssh/sshd_config.d/00-a.conf:1"
        );
        assert_eq!(g["allowgroups"].values, ["sudo", "admins"]);
        assert!(!g.contains_key("authenticationmethods"), "Match only");
        // The Match All of 10-b.conf ends at that file's end, and is read before the main
        // file's Match User block: first match wins.
        let d = evaluate(&f, Some(&ci("deploy", &["deploy"], "192.0.2.1")));
        assert_eq!(d["authenticationmethods"].values, ["publickey"]);
        assert!(d["authenticationmethods"].source.contains("10-b.conf:3"));
        assert!(!d.contains_key("pubkeyauthentication"));
        let n = evaluate(&f, Some(&ci("deploy", &["ops"], "10.2.3.4")));
        assert_eq!(n["pubkeyauthentication"].values, ["no"]);
        assert_eq!(n["allowgroups"].values, ["ops"], "a Match list replaces");
        let x = evaluate(&f, Some(&ci("deploy", &["deploy"], "10.1.2.3")));
        assert!(!x.contains_key("pubkeyauthentication"), "negated address");
    }

    #[test]
    fn patterns_and_addresses() {
        assert!(match_pattern_list("deploy", "dep*,!root", false));
        assert!(!match_pattern_list("root", "*,!root", false));
        assert!(!match_pattern_list("root", "!root", false));
        assert!(match_pattern_list("Host.Example", "*.example", true));
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(addr_match_list(a, "10.0.0.0/8"));
        assert!(!addr_match_list(a, "10.0.0.0/8,!10.1.0.0/16"));
        assert!(addr_match_list(a, "10.1.*"));
        assert!(addr_match_list("::1".parse().unwrap(), "::1/128"));
        assert!(!addr_match_list(a, "::/0"));
        let c = parse_match(&["User".into(), "a".into(), "LocalPort".into(), "2222".into()]);
        let mut i = ci("a", &[], "192.0.2.1");
        assert!(!match_line(&c, &i));
        i.lport = 2222;
        assert!(match_line(&c, &i));
        assert!(!match_line(
            &parse_match(&["Group".into(), "*,!wheel".into()]),
            &ci("a", &["a", "wheel"], "192.0.2.1")
        ));
    }

    #[test]
    fn limits() {
        let big = "#".repeat(MAX_FILE_BYTES + 1);
        let m = mem(&[("/etc/ssh/sshd_config", &big)]);
        assert!(
            load("/etc/ssh/sshd_config", &m)
                .unwrap_err()
                .contains("bytes")
        );
        let m = mem(&[("/etc/ssh/sshd_config", "Include /etc/ssh/sshd_config\n")]);
        let e = load("/etc/ssh/sshd_config", &m).unwrap_err();
        assert!(
            e.contains("deeper than 16") || e.contains("included files"),
            "{e}"
        );
        let m = mem(&[(
            "/etc/ssh/sshd_config",
            "Include /etc/ssh/sshd_config /etc/ssh/sshd_config /etc/ssh/sshd_config\n",
        )]);
        assert!(load("/etc/ssh/sshd_config", &m).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_counts_directives(lines in proptest::collection::vec("[A-Za-z]{1,12}( [a-z0-9/*.\"=-]{0,12}){0,3}", 0..20)) {
            let text = lines.join("\n");
            let c = SshdConfig::parse(&text);
            prop_assert_eq!(c.directives.len(), lines.len());
            for (d, l) in c.directives.iter().zip(&lines) {
                let first = l.split([' ', '=']).next().unwrap_or_default().to_ascii_lowercase();
                prop_assert_eq!(&d.keyword, &first);
            }
        }

        #[test]
        fn glob_star_matches_everything(name in "[a-z0-9.-]{0,20}") {
            prop_assert!(glob_match("*", &name));
            let with_conf = format!("{}.conf", name);
            prop_assert!(glob_match("*.conf", &with_conf));
        }
    }

    #[test]
    fn glob_match_is_linear() {
        assert!(glob_match("*.conf", "10-a.conf"));
        assert!(!glob_match("*.conf", "10-a.conf.bak"));
        assert!(glob_match("a?c*", "abcdef"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("?", ""));
        assert!(glob_match("**a", "bba"));
        let t = std::time::Instant::now();
        assert!(!glob_match("*a*a*a*a*a*a*a*a*a*a*a*a*b", &"a".repeat(4000)));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }
}
