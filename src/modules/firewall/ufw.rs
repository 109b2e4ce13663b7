//! The ufw backend: bollwerk writes ufw's own files the way ufw 0.36 writes them
//! (`etc/ufw/user.rules`, `user6.rules`, the policies in `etc/default/ufw`, `ENABLED=yes` in
//! `etc/ufw/ufw.conf`), so plans show real diffs and a re-apply changes nothing; a system test
//! compares the rendering with what the `ufw` command itself writes. bollwerk's rules carry
//! the comment `bollwerk…` (hex-encoded by ufw); other rules are kept after them and reported,
//! and removed only with `exclusive = true`. On a live host `ufw --force enable` loads them.

use super::Rule;
use crate::engine::{Context, Level, Planner};
use crate::error::Result;
use crate::exec::Cmd;
use crate::modules::firewall::rules::{FirewallSection, Policy, Proto};
use crate::root::{Perms, RelPath};

/// ufw's IPv4 rules file.
pub const USER_RULES: &str = "etc/ufw/user.rules";
/// ufw's IPv6 rules file.
pub const USER6_RULES: &str = "etc/ufw/user6.rules";
/// ufw's defaults.
pub const DEFAULTS: &str = "etc/default/ufw";
/// ufw's own configuration (ENABLED, LOGLEVEL).
pub const UFW_CONF: &str = "etc/ufw/ufw.conf";

/// One rule of a ufw rules file: its `### tuple ###` line and the iptables lines after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UfwRule {
    /// The tuple line, verbatim.
    pub tuple: String,
    /// The rule's iptables lines, verbatim.
    pub lines: Vec<String>,
    /// action (`allow`, `limit`, `deny`, …).
    pub action: String,
    /// protocol.
    pub proto: String,
    /// destination port(s).
    pub dport: String,
    /// source.
    pub src: String,
    /// direction (`in`, `out`).
    pub direction: String,
    /// The decoded comment.
    pub comment: Option<String>,
}

impl UfwRule {
    /// True when bollwerk wrote this rule.
    pub fn ours(&self) -> bool {
        self.comment
            .as_deref()
            .is_some_and(|c| c.starts_with("bollwerk"))
    }

    /// A short human description.
    pub fn describe(&self) -> String {
        let from = if self.src == "0.0.0.0/0" || self.src == "::/0" {
            "anywhere".to_string()
        } else {
            self.src.clone()
        };
        format!(
            "{} {} {} {} from {from}{}",
            self.action,
            self.direction,
            self.proto,
            self.dport,
            self.comment
                .as_ref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        )
    }
}

fn hex_encode(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect();
    bytes.and_then(|b| String::from_utf8(b).ok())
}

/// Parses the rules of a ufw rules file (between `### RULES ###` and `### END RULES ###`).
pub fn parse_rules(text: &str) -> Vec<UfwRule> {
    let mut out: Vec<UfwRule> = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line == "### RULES ###" {
            inside = true;
            continue;
        }
        if line == "### END RULES ###" {
            break;
        }
        if !inside {
            continue;
        }
        if let Some(t) = line.strip_prefix("### tuple ### ") {
            let (body, comment) = match t.split_once(" comment=") {
                Some((b, c)) => (b, hex_decode(c.trim())),
                None => (t, None),
            };
            let w: Vec<&str> = body.split_whitespace().collect();
            let get = |i: usize| w.get(i).copied().unwrap_or("").to_string();
            out.push(UfwRule {
                tuple: line.to_string(),
                lines: Vec::new(),
                action: get(0),
                proto: get(1),
                dport: get(2),
                src: get(5),
                direction: w.last().copied().unwrap_or("").to_string(),
                comment,
            });
        } else if (line.starts_with("-A ") || line.starts_with("-I "))
            && let Some(r) = out.last_mut()
        {
            r.lines.push(line.to_string());
        }
    }
    out
}

/// A source address as ufw writes it: host masks dropped, network bits applied.
fn ufw_src(r: &Rule, v6: bool) -> String {
    match &r.from {
        None => if v6 { "::/0" } else { "0.0.0.0/0" }.to_string(),
        Some(c) => {
            let full = if c.is_v6() { 128 } else { 32 };
            if c.prefix() == full {
                c.addr().to_string()
            } else {
                let net = match c.addr() {
                    std::net::IpAddr::V4(a) => {
                        let mask = u32::MAX << (32 - u32::from(c.prefix()));
                        std::net::Ipv4Addr::from(u32::from(a) & mask).to_string()
                    }
                    std::net::IpAddr::V6(a) => {
                        let mask = if c.prefix() == 0 {
                            0
                        } else {
                            u128::MAX << (128 - u32::from(c.prefix()))
                        };
                        std::net::Ipv6Addr::from(u128::from(a) & mask).to_string()
                    }
                };
                format!("{net}/{}", c.prefix())
            }
        }
    }
}

/// The CIS loopback rules as `ufw allow in on lo`, `ufw deny in from 127.0.0.0/8` and
/// `ufw deny in from ::1` (each with bollwerk's comment) write them: loopback accepted, and
/// loopback addresses arriving on any other interface (spoofed) dropped.
pub fn loopback_rules(v6: bool) -> String {
    let c = hex_encode("bollwerk");
    if v6 {
        format!(
            "\n### tuple ### allow any any ::/0 any ::/0 in_lo comment={c}\n-A ufw6-user-input -i lo -j ACCEPT\n\n### tuple ### deny any any ::/0 any ::1 in comment={c}\n-A ufw6-user-input -s ::1 -j DROP\n"
        )
    } else {
        format!(
            "\n### tuple ### allow any any 0.0.0.0/0 any 0.0.0.0/0 in_lo comment={c}\n-A ufw-user-input -i lo -j ACCEPT\n\n### tuple ### deny any any 0.0.0.0/0 any 127.0.0.0/8 in comment={c}\n-A ufw-user-input -s 127.0.0.0/8 -j DROP\n"
        )
    }
}

/// Renders one bollwerk rule as ufw writes it (tuple line plus iptables lines).
pub fn render_rule(r: &Rule, v6: bool) -> String {
    let chain = if v6 { "ufw6" } else { "ufw" };
    let action = if r.limit { "limit" } else { "allow" };
    let dport = if r.lo == r.hi {
        r.lo.to_string()
    } else {
        format!("{}:{}", r.lo, r.hi)
    };
    let src = ufw_src(r, v6);
    let dst = if v6 { "::/0" } else { "0.0.0.0/0" };
    let mut s = format!(
        "\n### tuple ### {action} {} {dport} {dst} any {src} in comment={}\n",
        r.proto.as_str(),
        hex_encode(&r.comment)
    );
    let multi = r.lo != r.hi;
    let protos: Vec<&str> = match r.proto {
        Proto::Any => vec!["tcp", "udp"],
        p => vec![p.as_str()],
    };
    for proto in protos {
        let mut m = format!("-A {chain}-user-input -p {proto}");
        if multi {
            m.push_str(&format!(" -m multiport --dports {dport}"));
        } else {
            m.push_str(&format!(" --dport {dport}"));
        }
        if r.from.is_some() {
            m.push_str(&format!(" -s {src}"));
        }
        if r.limit {
            s.push_str(&format!("{m} -m conntrack --ctstate NEW -m recent --set\n"));
            s.push_str(&format!(
                "{m} -m conntrack --ctstate NEW -m recent --update --seconds 30 --hitcount 6 -j {chain}-user-limit\n"
            ));
            s.push_str(&format!("{m} -j {chain}-user-limit-accept\n"));
        } else {
            s.push_str(&format!("{m} -j ACCEPT\n"));
        }
    }
    s
}

fn policy_word(p: Policy) -> &'static str {
    match p {
        Policy::Allow => "allow",
        Policy::Deny => "deny",
        Policy::Reject => "reject",
    }
}

/// The LOGGING section ufw writes for a log level and the default policies.
pub fn logging(level: &str, v6: bool, inp: Policy, out: Policy, fwd: Policy) -> Vec<String> {
    let p = if v6 { "ufw6" } else { "ufw" };
    let rank = |l: &str| match l {
        "off" => 0,
        "low" => 100,
        "medium" => 200,
        "high" => 300,
        "full" => 400,
        _ => 100,
    };
    let lv = rank(level);
    let mut v = Vec::new();
    if lv == 0 {
        for t in ["input", "output", "forward"] {
            v.push(format!("-I {p}-user-logging-{t} -j RETURN"));
        }
        return v;
    }
    let limit = " -m limit --limit 3/min --limit-burst 10";
    let largs = if lv < 300 { limit } else { "" };
    for (t, pol) in [("input", inp), ("output", out), ("forward", fwd)] {
        let w = policy_word(pol);
        if w == "deny" || w == "reject" {
            v.push(format!(
                "-A {p}-after-logging-{t} -j LOG --log-prefix \"[UFW BLOCK] \"{largs}"
            ));
        } else if lv >= 200 {
            v.push(format!(
                "-A {p}-after-logging-{t} -j LOG --log-prefix \"[UFW ALLOW] \"{largs}"
            ));
        }
    }
    if lv < 200 {
        v.push(format!(
            "-I {p}-logging-deny -m conntrack --ctstate INVALID -j RETURN{largs}"
        ));
    } else {
        v.push(format!(
            "-A {p}-logging-deny -m conntrack --ctstate INVALID -j LOG --log-prefix \"[UFW AUDIT INVALID] \"{largs}"
        ));
    }
    v.push(format!(
        "-A {p}-logging-deny -j LOG --log-prefix \"[UFW BLOCK] \"{largs}"
    ));
    v.push(format!(
        "-A {p}-logging-allow -j LOG --log-prefix \"[UFW ALLOW] \"{largs}"
    ));
    if lv >= 200 {
        let a = if lv >= 400 {
            String::new()
        } else if lv >= 300 {
            limit.to_string()
        } else {
            format!(" -m conntrack --ctstate NEW{limit}")
        };
        for t in ["input", "output", "forward"] {
            v.push(format!(
                "-I {p}-before-logging-{t} -j LOG --log-prefix \"[UFW AUDIT] \"{a}"
            ));
        }
    }
    v
}

/// Renders a complete rules file: header, `rules` (already rendered), logging, rate limiting.
pub fn render_file(v6: bool, rules: &str, level: &str, pol: (Policy, Policy, Policy)) -> String {
    let p = if v6 { "ufw6" } else { "ufw" };
    let mut s = String::from("*filter\n");
    for c in [
        "user-input",
        "user-output",
        "user-forward",
        "before-logging-input",
        "before-logging-output",
        "before-logging-forward",
        "user-logging-input",
        "user-logging-output",
        "user-logging-forward",
        "after-logging-input",
        "after-logging-output",
        "after-logging-forward",
        "logging-deny",
        "logging-allow",
        "user-limit",
        "user-limit-accept",
    ] {
        s.push_str(&format!(":{p}-{c} - [0:0]\n"));
    }
    s.push_str("### RULES ###\n");
    s.push_str(rules);
    s.push_str("\n### END RULES ###\n\n### LOGGING ###\n");
    for l in logging(level, v6, pol.0, pol.1, pol.2) {
        s.push_str(&l);
        s.push('\n');
    }
    s.push_str("### END LOGGING ###\n\n### RATE LIMITING ###\n");
    if level != "off" {
        s.push_str(&format!(
            "-A {p}-user-limit -m limit --limit 3/minute -j LOG --log-prefix \"[UFW LIMIT BLOCK] \"\n"
        ));
    }
    s.push_str(&format!(
        "-A {p}-user-limit -j REJECT\n-A {p}-user-limit-accept -j ACCEPT\n### END RATE LIMITING ###\nCOMMIT\n"
    ));
    s
}

/// Sets `KEY=value` lines in a shell-style config (replacing existing ones, appending new).
pub fn set_vars(text: &str, vars: &[(&str, String)]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for (k, v) in vars {
        let want = format!("{k}={v}");
        match lines
            .iter()
            .position(|l| l.trim_start().starts_with(&format!("{k}=")))
        {
            Some(i) => lines[i] = want,
            None => lines.push(want),
        }
    }
    let mut s = lines.join("\n");
    s.push('\n');
    s
}

fn read_var(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}=")))
        .map(|v| v.trim().trim_matches('"').to_string())
}

/// The live handler: (re)load ufw with its files.
pub fn enable_cmd() -> Cmd {
    Cmd::in_root("/usr/sbin/ufw", &["--force", "enable"])
}

/// Plans the ufw backend. Returns true when something changed.
///
/// # Errors
/// When the root cannot be read.
pub fn plan(
    cx: &Context,
    p: &mut Planner,
    s: &FirewallSection,
    forward: Policy,
    rules: &[Rule],
) -> Result<bool> {
    if !cx.root.exists(&RelPath::lit("usr/sbin/ufw")) {
        p.note(
            Level::Warning,
            "ufw is not installed in the target: the packages step installs it; run apply again afterwards to write its rules",
        );
        return Ok(false);
    }
    let exclusive = s.exclusive.unwrap_or(false);
    let conf = cx
        .root
        .read_string(&RelPath::lit(UFW_CONF))?
        .unwrap_or_default();
    let level = read_var(&conf, "LOGLEVEL").unwrap_or_else(|| "low".into());
    let pol = (s.incoming(), s.outgoing(), forward);
    let mut changed = false;
    for (path, v6) in [(USER_RULES, false), (USER6_RULES, true)] {
        let rel = RelPath::lit(path);
        let current = cx.root.read_string(&rel)?.unwrap_or_default();
        let existing = parse_rules(&current);
        let mut body = String::new();
        if !v6 || s.ipv6() {
            body.push_str(&loopback_rules(v6));
        }
        for r in rules {
            let fam_v6 = r.from.as_ref().map(|f| f.is_v6());
            let fits = match fam_v6 {
                Some(x) => x == v6,
                None => !v6 || s.ipv6(),
            };
            if fits {
                body.push_str(&render_rule(r, v6));
            }
        }
        for r in existing.iter().filter(|r| !r.ours()) {
            if exclusive {
                p.note(
                    Level::Info,
                    format!(
                        "ufw rule not created by bollwerk removed (exclusive = true): {}",
                        r.describe()
                    ),
                );
                continue;
            }
            p.note(
                Level::Warning,
                format!(
                    "ufw rule not created by bollwerk kept ({}): {} — set firewall.exclusive = true to remove it",
                    if v6 { "IPv6" } else { "IPv4" },
                    r.describe()
                ),
            );
            body.push('\n');
            body.push_str(&r.tuple);
            body.push('\n');
            for l in &r.lines {
                body.push_str(l);
                body.push('\n');
            }
        }
        let perms = match cx.root.entry(&rel)? {
            crate::root::Entry::File { perms, .. } => perms,
            _ => Perms::root(0o640),
        };
        changed |= p.file(
            &cx.root,
            &rel,
            render_file(v6, &body, &level, pol),
            perms,
            format!("ufw {} rules", if v6 { "IPv6" } else { "IPv4" }),
        )?;
    }
    let defaults_rel = RelPath::lit(DEFAULTS);
    let defaults = cx.root.read_string(&defaults_rel)?.unwrap_or_default();
    let q = |v: &str| format!("\"{v}\"");
    let new_defaults = set_vars(
        &defaults,
        &[
            ("IPV6", if s.ipv6() { "yes" } else { "no" }.to_string()),
            ("DEFAULT_INPUT_POLICY", q(pol.0.ufw_default())),
            ("DEFAULT_OUTPUT_POLICY", q(pol.1.ufw_default())),
            ("DEFAULT_FORWARD_POLICY", q(pol.2.ufw_default())),
        ],
    );
    let perms = match cx.root.entry(&defaults_rel)? {
        crate::root::Entry::File { perms, .. } => perms,
        _ => Perms::root(0o644),
    };
    changed |= p.file(
        &cx.root,
        &defaults_rel,
        new_defaults,
        perms,
        "ufw default policies".to_string(),
    )?;
    let conf_rel = RelPath::lit(UFW_CONF);
    let perms = match cx.root.entry(&conf_rel)? {
        crate::root::Entry::File { perms, .. } => perms,
        _ => Perms::root(0o644),
    };
    changed |= p.file(
        &cx.root,
        &conf_rel,
        set_vars(&conf, &[("ENABLED", "yes".into())]),
        perms,
        "enable ufw at boot".to_string(),
    )?;
    changed |= crate::modules::netcommon::enable_unit(cx, p, "ufw.service")?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex_encode("bollwerk"), "626f6c6c7765726b");
        assert_eq!(hex_decode("626f6c6c7765726b").as_deref(), Some("bollwerk"));
        assert_eq!(hex_decode("zz"), None);
    }

    #[test]
    fn rules_are_parsed() {
        let t = "*filter\n### RULES ###\n\n### tuple ### allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in comment=626f6c6c7765726b\n-A ufw-user-input -p tcp --dport 80 -j ACCEPT\n\n### tuple ### deny tcp 23 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp --dport 23 -j DROP\n\n### END RULES ###\n";
        let r = parse_rules(t);
        assert_eq!(r.len(), 2);
        assert!(r[0].ours());
        assert!(!r[1].ours());
        assert_eq!(
            r[1].lines,
            vec!["-A ufw-user-input -p tcp --dport 23 -j DROP"]
        );
        assert_eq!(r[1].describe(), "deny in tcp 23 from anywhere");
    }

    #[test]
    fn vars_are_replaced_in_place() {
        let t = "# c\nIPV6=yes\nDEFAULT_INPUT_POLICY=\"ACCEPT\"\n";
        assert_eq!(
            set_vars(
                t,
                &[
                    ("DEFAULT_INPUT_POLICY", "\"DROP\"".into()),
                    ("X", "1".into())
                ]
            ),
            "# c\nIPV6=yes\nDEFAULT_INPUT_POLICY=\"DROP\"\nX=1\n"
        );
    }
}
