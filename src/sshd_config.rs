//! Reading OpenSSH server configuration: `sshd_config` files (keywords, `Include`, `Match`
//! blocks, with line numbers) and the effective configuration printed by `sshd -T`.
//!
//! OpenSSH keeps the *first* value it reads for most keywords, so where a setting comes from
//! matters; the truth about the effective value is always `sshd -T`.

use std::collections::BTreeMap;

/// Deepest `Include` nesting followed (OpenSSH's own limit is 16).
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// Most pieces (files and the text between their `Include` lines) one configuration expands to.
pub const MAX_INCLUDED_PIECES: usize = 1024;

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
