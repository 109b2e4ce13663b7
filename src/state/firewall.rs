//! The nftables ruleset as nftables evaluates it: tables, base chains with their hook and
//! policy, and rules with their verdicts. Two readings give the same model: the ruleset text
//! of the next-boot configuration (`include` followed, [`parse_ruleset`]) and, on a live host,
//! the loaded ruleset as `nft -j list ruleset` prints it ([`parse_json_ruleset`], read by
//! [`read_loaded`], which falls back to the text form only when nft refuses `-j`). Judging is
//! by semantics (`iifname "lo" counter accept` accepts loopback like `iif lo accept`), not by
//! regular expressions on one writing style. `ufw status verbose` of a live host is read by
//! [`UfwStatus::parse`].

mod json;

pub use json::parse_json_ruleset;

/// A chain of a ruleset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chain {
    /// `inet filter`.
    pub table: String,
    /// Chain name.
    pub name: String,
    /// The hook of a base chain (`input`, `forward`, …).
    pub hook: Option<String>,
    /// The policy of a base chain (`accept` when not given).
    pub policy: Option<String>,
    /// The rules in order.
    pub rules: Vec<Rule>,
}

impl Chain {
    /// The effective policy of a base chain (nftables' default is accept).
    pub fn effective_policy(&self) -> &str {
        self.policy.as_deref().unwrap_or("accept")
    }
}

/// One rule: its words (quotes removed, `counter packets N bytes M`, `comment "…"` and `log …`
/// statements dropped: they do not change what the rule matches or decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The rule as written.
    pub text: String,
    /// Matching words and the verdict.
    pub words: Vec<String>,
}

const VERDICTS: [&str; 6] = ["accept", "drop", "reject", "jump", "goto", "return"];

impl Rule {
    fn parse(text: &str) -> Rule {
        let raw: Vec<String> = split_words(text);
        let mut words = Vec::new();
        let mut i = 0;
        while i < raw.len() {
            match raw[i].as_str() {
                "counter" => {
                    i += 1;
                    while i + 1 < raw.len() && matches!(raw[i].as_str(), "packets" | "bytes") {
                        i += 2;
                    }
                }
                "comment" => i += 2,
                "log" => {
                    i += 1;
                    while i + 1 < raw.len()
                        && matches!(raw[i].as_str(), "prefix" | "level" | "flags" | "group")
                    {
                        i += 2;
                    }
                }
                _ => {
                    words.push(raw[i].clone());
                    i += 1;
                }
            }
        }
        Rule {
            text: text.trim().to_string(),
            words,
        }
    }

    /// The verdict (`accept`, `drop`, …), if the rule has one. A verdict map (`ct state vmap
    /// { established : accept, invalid : drop }`) has no single verdict.
    pub fn verdict(&self) -> Option<&str> {
        if self.words.iter().any(|w| w == "vmap") {
            return None;
        }
        self.words
            .iter()
            .rev()
            .find(|w| VERDICTS.contains(&w.as_str()))
            .map(String::as_str)
    }

    /// The matching words (everything before the verdict).
    pub fn matches(&self) -> &[String] {
        let end = self
            .words
            .iter()
            .position(|w| VERDICTS.contains(&w.as_str()))
            .unwrap_or(self.words.len());
        &self.words[..end]
    }

    /// Accepts everything that arrives on the loopback interface and nothing else
    /// (`iif lo accept`, `iifname "lo" counter accept`, `meta iifname lo accept`).
    pub fn is_loopback_accept(&self) -> bool {
        let m: Vec<&str> = self
            .matches()
            .iter()
            .map(String::as_str)
            .filter(|w| *w != "meta")
            .collect();
        self.verdict() == Some("accept")
            && matches!(
                m.as_slice(),
                ["iif" | "iifname", "lo"] | ["iif" | "iifname", "==", "lo"]
            )
    }

    /// Drops (or rejects) packets with source `addr` (`ip saddr 127.0.0.0/8`), whatever
    /// else it matches (usually `iif != lo`).
    pub fn drops_source(&self, family: &str, addr: &str) -> bool {
        matches!(self.verdict(), Some("drop" | "reject"))
            && self
                .matches()
                .windows(3)
                .any(|w| w[0] == family && w[1] == "saddr" && w[2] == addr)
    }

    /// Accepts new TCP connections to `port` (`tcp dport 22 accept`, `tcp dport { 22, 443 }
    /// ct state new counter accept`).
    pub fn accepts_port(&self, port: &str) -> bool {
        if self.verdict() != Some("accept") {
            return false;
        }
        let m = self.matches();
        m.iter().enumerate().any(|(i, w)| {
            w == "dport"
                && match m.get(i + 1).map(String::as_str) {
                    Some("{") => m[i + 2..]
                        .iter()
                        .take_while(|x| *x != "}")
                        .any(|x| x.trim_end_matches(',') == port),
                    Some(p) => p == port,
                    None => false,
                }
        })
    }
}

/// A port number; nft 1.0.6 prints `ct original proto-dst` of an `inet` table in hex
/// (`0x1f90 [invalid type]`), both as text and as JSON.
fn parse_port(word: &str) -> Option<u16> {
    match word.strip_prefix("0x") {
        Some(hex) => u16::from_str_radix(hex, 16).ok(),
        None => word.parse().ok(),
    }
}

/// Splits a statement into words: quotes removed, `{`, `}` and `,` separate.
fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            c if quoted => cur.push(c),
            c if c.is_whitespace() || c == ',' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            '{' | '}' => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                out.push(c.to_string());
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl Rule {
    /// The port ranges that follow the word `key` (`dport`, `proto-dst`): `22`, `6000-6007`,
    /// `{ 22, 443 }`; empty when the rule does not name one.
    pub fn ports_after(&self, key: &str) -> Vec<(u16, u16)> {
        let m = self.matches();
        let Some(i) = m.iter().position(|w| w == key) else {
            return Vec::new();
        };
        let items: Vec<&str> = match m.get(i + 1).map(String::as_str) {
            Some("{") => m[i + 2..]
                .iter()
                .take_while(|x| *x != "}")
                .map(|x| x.trim_end_matches(','))
                .collect(),
            Some(p) => p.split(',').collect(),
            None => Vec::new(),
        };
        items
            .iter()
            .filter_map(|p| match p.split_once(['-', ':']) {
                Some((a, b)) => Some((parse_port(a)?, parse_port(b)?)),
                None => parse_port(p).map(|x| (x, x)),
            })
            .collect()
    }

    /// The transport protocol a port match is for: the word before `dport` (`tcp`, `udp`; `th`
    /// means either) or after `l4proto`; `any` when the rule names none or both.
    pub fn transport(&self) -> &'static str {
        let m = self.matches();
        let word = m
            .iter()
            .position(|w| w == "dport")
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| m.get(i))
            .or_else(|| {
                m.iter()
                    .position(|w| w == "l4proto")
                    .and_then(|i| m.get(i + 1))
            });
        match word.map(String::as_str) {
            Some("tcp") => "tcp",
            Some("udp") => "udp",
            _ => "any",
        }
    }
}

/// Splits a ruleset into statements: a newline or `;` ends one; `{` after `table`, `chain`,
/// `set`, `map`, `flowtable`, `ct`, `counter`, `quota`, `limit` or `synproxy` opens a block
/// (its own statement, ending in `{`), its `}` is a statement of its own; other braces are
/// anonymous sets inside a rule.
fn statements(text: &str) -> Vec<String> {
    const BLOCKS: [&str; 10] = [
        "table",
        "chain",
        "set",
        "map",
        "flowtable",
        "ct",
        "counter",
        "quota",
        "limit",
        "synproxy",
    ];
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut anon = 0usize;
    let mut quoted = false;
    let flush = |cur: &mut String, out: &mut Vec<String>| {
        let t = cur.trim();
        if !t.is_empty() {
            out.push(t.to_string());
        }
        cur.clear();
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        for c in line.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    cur.push(c);
                }
                _ if quoted => cur.push(c),
                ';' if anon == 0 => flush(&mut cur, &mut out),
                '{' => {
                    if anon == 0 && opens_block(&cur, &BLOCKS) {
                        cur.push('{');
                        flush(&mut cur, &mut out);
                    } else {
                        anon += 1;
                        cur.push(c);
                    }
                }
                '}' if anon > 0 => {
                    anon -= 1;
                    cur.push(c);
                }
                '}' => {
                    flush(&mut cur, &mut out);
                    out.push("}".into());
                }
                c => cur.push(c),
            }
        }
        if anon == 0 {
            flush(&mut cur, &mut out);
        } else {
            cur.push(' ');
        }
    }
    flush(&mut cur, &mut out);
    out
}

/// Whether `{` after `head` opens a block (`table inet f {`, `ct helper ftp {`) rather than an
/// anonymous set or map inside a rule (`ct state vmap {`).
fn opens_block(head: &str, blocks: &[&str]) -> bool {
    let mut words = head.split_whitespace();
    match words.next() {
        Some("ct") => matches!(words.next(), Some("helper" | "timeout" | "expectation")),
        Some(first) => blocks.contains(&first),
        None => false,
    }
}

/// The chains of a ruleset text (comments removed; sets, maps and other blocks skipped).
pub fn parse_ruleset(text: &str) -> Vec<Chain> {
    let mut chains = Vec::new();
    let mut table: Option<String> = None;
    let mut chain: Option<Chain> = None;
    let mut skip_depth = 0usize;
    for s in statements(text) {
        let words = split_words(&s);
        let opens = s.ends_with('{');
        if skip_depth > 0 {
            if opens {
                skip_depth += 1;
            } else if s == "}" {
                skip_depth -= 1;
            }
            continue;
        }
        if let Some(c) = chain.as_mut() {
            match words.first().map(String::as_str) {
                _ if s == "}" => chains.push(chain.take().unwrap_or_default()),
                Some("type") => {
                    c.hook = words
                        .iter()
                        .position(|w| w == "hook")
                        .and_then(|i| words.get(i + 1).cloned());
                }
                Some("policy") => c.policy = words.get(1).cloned(),
                Some("comment" | "devices" | "priority") => {}
                _ if opens => skip_depth = 1,
                _ => c.rules.push(Rule::parse(&s)),
            }
            continue;
        }
        match words.first().map(String::as_str) {
            Some("table") if opens => {
                let name: Vec<&str> = words[1..]
                    .iter()
                    .map(String::as_str)
                    .take_while(|w| *w != "{")
                    .collect();
                table = Some(name.join(" "));
            }
            Some("chain") if opens && table.is_some() => {
                chain = Some(Chain {
                    table: table.clone().unwrap_or_default(),
                    name: words.get(1).cloned().unwrap_or_default(),
                    ..Chain::default()
                });
            }
            _ if s == "}" => table = None,
            _ if opens => skip_depth = 1,
            _ => {}
        }
    }
    chains
}

/// The ruleset the kernel has loaded, and the command it was read with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedRuleset {
    /// The chains with their rules.
    pub chains: Vec<Chain>,
    /// How it was read: `nft -j list ruleset`, or the text form and why `-j` was not used.
    pub source: String,
}

/// Reads the loaded ruleset through `nft`: `run` gets nft's arguments and returns its stdout
/// or why it failed. `nft -j list ruleset` first; only when nft refuses `-j` (an nft built
/// without JSON support) or prints no JSON, the text form `nft list ruleset`, and the source
/// says so.
///
/// # Errors
/// When nft cannot list the ruleset at all (not installed, no permission): the error of the
/// `-j` call, and that of the text call when it differs.
pub fn read_loaded(
    run: impl Fn(&[&str]) -> Result<String, String>,
) -> Result<LoadedRuleset, String> {
    let (why, refused) = match run(&["-j", "list", "ruleset"]) {
        Ok(out) => match parse_json_ruleset(&out) {
            Ok(chains) => {
                return Ok(LoadedRuleset {
                    chains,
                    source: "nft -j list ruleset".into(),
                });
            }
            Err(e) => (format!("nft -j printed no JSON ruleset: {e}"), e),
        },
        Err(e) => (format!("nft -j refused: {e}"), e),
    };
    match run(&["list", "ruleset"]) {
        Ok(out) => Ok(LoadedRuleset {
            chains: parse_ruleset(&out),
            source: format!("nft list ruleset (text form; {why})"),
        }),
        Err(e) => Err(format!("{refused}; without -j: {e}")),
    }
}

/// `ufw status verbose` of a live host: whether ufw filters now, and the default policies it
/// reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UfwStatus {
    /// `Status: active`.
    pub active: bool,
    /// The first line as printed (`Status: active`, `Status: inactive`).
    pub status_line: String,
    /// `Default: deny (incoming), …`: direction (`incoming`, `outgoing`, `routed`) → policy.
    pub defaults: Vec<(String, String)>,
}

impl UfwStatus {
    /// Parses the output of `ufw status verbose`.
    pub fn parse(text: &str) -> UfwStatus {
        let status_line = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("Status:"))
            .unwrap_or("no status line")
            .to_string();
        let defaults = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Default:"))
            .map(|d| {
                d.split(',')
                    .filter_map(|part| {
                        let (policy, dir) = part.trim().split_once(' ')?;
                        let dir = dir.trim().trim_start_matches('(').trim_end_matches(')');
                        Some((dir.to_string(), policy.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        UfwStatus {
            active: status_line == "Status: active",
            status_line,
            defaults,
        }
    }

    /// The default policy for `direction` (`incoming`, `routed`), if ufw reported one.
    pub fn default_for(&self, direction: &str) -> Option<&str> {
        self.defaults
            .iter()
            .find(|(d, _)| d == direction)
            .map(|(_, p)| p.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_transport_of_accepting_rules() {
        let chains = parse_ruleset(
            "table inet f {\n chain input {\n type filter hook input priority 0; policy drop;\n tcp dport { 22, 443, 6000-6007 } ct state new counter accept\n udp dport 51820 accept\n th dport 53 accept\n }\n chain docker_published {\n type filter hook forward priority -1;\n meta l4proto tcp ct status dnat ct original proto-dst { 80, 443 } accept\n }\n}\n",
        );
        let input = &chains[0].rules;
        assert_eq!(input[0].transport(), "tcp");
        assert_eq!(
            input[0].ports_after("dport"),
            vec![(22, 22), (443, 443), (6000, 6007)]
        );
        assert_eq!(input[1].transport(), "udp");
        assert_eq!(input[1].ports_after("dport"), vec![(51820, 51820)]);
        assert_eq!(input[2].transport(), "any");
        let fwd = &chains[1].rules[0];
        assert_eq!(fwd.transport(), "tcp");
        assert_eq!(fwd.ports_after("proto-dst"), vec![(80, 80), (443, 443)]);
    }

    #[test]
    fn semantics_not_style() {
        let text = "table inet filter {\n set ok { type ipv4_addr; elements = { 10.0.0.1 } }\n chain input { type filter hook input priority 0; policy drop;\n  iifname \"lo\" counter packets 0 bytes 0 accept comment \"loopback\"\n  iifname != \"lo\" ip saddr 127.0.0.0/8 counter drop\n  tcp dport { 80, 22 } ct state new accept\n }\n chain fwd { type filter hook forward priority 0; }\n}\n";
        let c = parse_ruleset(text);
        assert_eq!(c.len(), 2, "{c:#?}");
        let input = &c[0];
        assert_eq!(input.hook.as_deref(), Some("input"));
        assert_eq!(input.effective_policy(), "drop");
        assert!(input.rules[0].is_loopback_accept(), "{:?}", input.rules[0]);
        assert!(!input.rules[1].is_loopback_accept());
        assert!(input.rules[1].drops_source("ip", "127.0.0.0/8"));
        assert!(input.rules[2].accepts_port("22"));
        assert!(!input.rules[2].accepts_port("2"));
        assert_eq!(c[1].effective_policy(), "accept");
        // A loopback rule that also restricts something else is not "accept loopback".
        assert!(!Rule::parse("iif lo tcp dport 22 accept").is_loopback_accept());
        assert!(Rule::parse("meta iif lo accept").is_loopback_accept());
    }

    const JSON_DROP: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "f", "handle": 1}}, {"chain": {"family": "inet", "table": "f", "name": "in", "handle": 1, "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}}, {"rule": {"family": "inet", "table": "f", "chain": "in", "handle": 2, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lo"}}, {"counter": {"packets": 3, "bytes": 180}}, {"accept": null}]}}]}"#;

    #[test]
    fn read_loaded_prefers_json_and_says_when_it_fell_back() {
        let json = read_loaded(|args| match args {
            ["-j", ..] => Ok(JSON_DROP.to_string()),
            _ => Err("text form must not be asked".into()),
        })
        .unwrap();
        assert_eq!(json.source, "nft -j list ruleset");
        assert_eq!(json.chains[0].effective_policy(), "drop");
        assert!(json.chains[0].rules[0].is_loopback_accept());

        let text = read_loaded(|args| match args {
            ["-j", ..] => Err("/usr/sbin/nft -j list ruleset failed: Error: JSON support not compiled-in".into()),
            _ => Ok("table inet f {\n chain in {\n  type filter hook input priority 0; policy drop;\n }\n}\n".into()),
        })
        .unwrap();
        assert!(
            text.source
                .starts_with("nft list ruleset (text form; nft -j refused: ")
                && text.source.contains("JSON support not compiled-in"),
            "{}",
            text.source
        );
        assert_eq!(text.chains[0].effective_policy(), "drop");

        // An nft that ignores -j and prints text: read as text, and the source says why.
        let ignored = read_loaded(|_| Ok("table inet f {\n}\n".into())).unwrap();
        assert!(
            ignored.source.contains("nft -j printed no JSON ruleset"),
            "{}",
            ignored.source
        );

        let err = read_loaded(|args| {
            Err(format!(
                "nft {} failed: Operation not permitted",
                args.join(" ")
            ))
        })
        .unwrap_err();
        assert!(
            err.contains("nft -j list ruleset failed") && err.contains("without -j"),
            "{err}"
        );
    }

    #[test]
    fn json_that_is_not_a_ruleset_is_an_error() {
        assert!(parse_json_ruleset("").is_err());
        assert!(parse_json_ruleset("{\"other\": []}").is_err());
        assert_eq!(
            parse_json_ruleset("{\"nftables\": [{\"metainfo\": {}}]}").unwrap(),
            Vec::new()
        );
    }

    #[test]
    fn verdict_maps_and_hex_ports() {
        let vmap = Rule::parse("ct state vmap { invalid : drop, established : accept }");
        assert_eq!(vmap.verdict(), None);
        let r = Rule::parse(
            "meta l4proto tcp ct status dnat ct original proto-dst { 0x1f90 [invalid type], 0x20fb [invalid type] } accept",
        );
        assert_eq!(r.ports_after("proto-dst"), vec![(8080, 8080), (8443, 8443)]);
        // `ct state vmap {` is a rule, `ct helper ftp {` a block.
        let c = parse_ruleset(
            "table ip t {\n ct helper ftp {\n  type \"ftp\" protocol tcp\n }\n chain c {\n  type filter hook input priority 0;\n  ct state vmap { established : accept }\n }\n}\n",
        );
        assert_eq!(c.len(), 1, "{c:#?}");
        assert_eq!(c[0].rules.len(), 1);
    }

    #[test]
    fn ufw_status_verbose() {
        let st = UfwStatus::parse(
            "Status: active\nLogging: on (low)\nDefault: deny (incoming), allow (outgoing), disabled (routed)\nNew profiles: skip\n\nTo                         Action      From\n--                         ------      ----\n22/tcp                     ALLOW IN    Anywhere\n",
        );
        assert!(st.active);
        assert_eq!(st.default_for("incoming"), Some("deny"));
        assert_eq!(st.default_for("routed"), Some("disabled"));
        let off = UfwStatus::parse("Status: inactive\n");
        assert!(!off.active);
        assert_eq!(off.status_line, "Status: inactive");
        assert_eq!(off.default_for("incoming"), None);
    }
}
