//! The nftables backend: bollwerk's own table `inet bollwerk` in [`super::NFT_FILE`], included
//! from `etc/nftables.conf` (loaded at boot by `nftables.service`), checked with `nft -c -f`
//! before it is activated, loaded on a live host with `nft -f` of that file alone, which
//! replaces only bollwerk's table (fail2ban's and Docker's tables stay).

use std::sync::Arc;

use super::{NFT_FILE, Rule, TRANSITION_MARKER};
use crate::engine::{Context, Planner, Staged, Validator, Visibility};
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::modules::firewall::rules::{FirewallSection, Policy, Proto};
use crate::modules::users::MANAGED_HEADER;
use crate::root::{Perms, RelPath};

/// The distribution's main nftables configuration.
pub const MAIN: &str = "etc/nftables.conf";
/// The line bollwerk adds to [`MAIN`].
pub const INCLUDE: &str = "include \"/etc/nftables.d/bollwerk.nft\"";
const INCLUDE_COMMENT: &str =
    "# Added by bollwerk: its own table (inet bollwerk), see /etc/nftables.d/bollwerk.nft";
/// Debian's default `etc/nftables.conf`, used when nftables is installed in this run.
pub const DEBIAN_DEFAULT_MAIN: &str = "#!/usr/sbin/nft -f\n\nflush ruleset\n\ntable inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter;\n\t}\n\tchain forward {\n\t\ttype filter hook forward priority filter;\n\t}\n\tchain output {\n\t\ttype filter hook output priority filter;\n\t}\n}\n";

/// Chain policy word.
fn policy(p: Policy) -> &'static str {
    match p {
        Policy::Allow => "accept",
        Policy::Deny | Policy::Reject => "drop",
    }
}

fn ports_expr(lo: u16, hi: u16) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', ""))
}

/// The match part of a rule without the verdict: `ip saddr 10.0.0.0/8 tcp dport 5432`.
fn matcher(r: &Rule) -> String {
    let mut m = String::new();
    if let Some(f) = &r.from {
        m.push_str(if f.is_v6() { "ip6 saddr " } else { "ip saddr " });
        m.push_str(&f.network());
        m.push(' ');
    }
    let ports = ports_expr(r.lo, r.hi);
    match r.proto {
        Proto::Tcp => m.push_str(&format!("tcp dport {ports}")),
        Proto::Udp => m.push_str(&format!("udp dport {ports}")),
        Proto::Any => m.push_str(&format!("meta l4proto {{ tcp, udp }} th dport {ports}")),
    }
    m
}

/// Renders bollwerk's table.
pub fn render(
    profile_name: &str,
    s: &FirewallSection,
    forward: Policy,
    rules: &[Rule],
    transition: &[u16],
) -> String {
    render_with_docker(profile_name, s, forward, rules, transition, None)
}

/// [`render`] plus, with `[docker] allow_published`, the chain filtering published container
/// ports (see `firewall/docker.rs`).
pub fn render_with_docker(
    profile_name: &str,
    s: &FirewallSection,
    forward: Policy,
    rules: &[Rule],
    transition: &[u16],
    published: Option<&[Rule]>,
) -> String {
    let mut o = format!(
        "#!/usr/sbin/nft -f\n{MANAGED_HEADER}\n# Profile: {profile_name}\n# Loaded at boot through /etc/nftables.conf; `nft -f` of this file alone replaces only this table.\n"
    );
    if !transition.is_empty() {
        let t: Vec<String> = transition.iter().map(u16::to_string).collect();
        o.push_str(&format!("{TRANSITION_MARKER} {}\n", t.join(" ")));
    }
    o.push_str("\ntable inet bollwerk\ndelete table inet bollwerk\n\ntable inet bollwerk {\n");
    let limited = rules.iter().any(|r| r.limit);
    if limited {
        for (name, ty) in [("limit_v4", "ipv4_addr"), ("limit_v6", "ipv6_addr")] {
            o.push_str(&format!(
                "\t# sources opening new connections to rate-limited ports (about 6 per 30 s, as ufw's limit)\n\tset {name} {{\n\t\ttype {ty}\n\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout 30s\n\t}}\n\n"
            ));
        }
    }
    let ipv6 = s.ipv6();
    // input
    o.push_str(&format!(
        "\tchain input {{\n\t\ttype filter hook input priority filter; policy {};\n",
        policy(s.incoming())
    ));
    o.push_str("\t\tiif \"lo\" accept comment \"loopback\"\n");
    o.push_str("\t\tiif != \"lo\" ip saddr 127.0.0.0/8 drop comment \"loopback address from outside (spoofed)\"\n");
    o.push_str("\t\tiif != \"lo\" ip6 saddr ::1 drop comment \"loopback address from outside (spoofed)\"\n");
    o.push_str("\t\tct state established,related accept\n\t\tct state invalid drop\n");
    if !ipv6 {
        o.push_str("\t\tmeta nfproto ipv6 accept comment \"ipv6 = false: IPv6 is not filtered\"\n");
    }
    o.push_str("\t\ticmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept comment \"essential ICMP\"\n");
    if ipv6 {
        o.push_str("\t\ticmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, echo-request, mld-listener-query, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept comment \"essential ICMPv6 (neighbour discovery)\"\n");
        o.push_str("\t\tip6 saddr fe80::/10 udp dport 546 accept comment \"DHCPv6 client\"\n");
    }
    for r in rules {
        if r.from.as_ref().is_some_and(|f| f.is_v6()) && !ipv6 {
            continue;
        }
        let m = matcher(r);
        if r.limit {
            let fams: &[(&str, &str)] = match &r.from {
                Some(f) if f.is_v6() => &[("limit_v6", "ip6")],
                Some(_) => &[("limit_v4", "ip")],
                None if ipv6 => &[("limit_v4", "ip"), ("limit_v6", "ip6")],
                None => &[("limit_v4", "ip")],
            };
            for (set, fam) in fams {
                o.push_str(&format!(
                    "\t\t{m} ct state new update @{set} {{ {fam} saddr limit rate over 12/minute burst 6 packets }} drop\n"
                ));
            }
        }
        o.push_str(&format!("\t\t{m} accept comment {}\n", quote(&r.comment)));
    }
    if s.incoming() == Policy::Reject {
        o.push_str("\t\tmeta l4proto tcp reject with tcp reset\n\t\treject with icmpx type port-unreachable\n");
    }
    o.push_str("\t}\n\n");
    // forward
    o.push_str(&format!(
        "\tchain forward {{\n\t\ttype filter hook forward priority filter; policy {};\n",
        policy(forward)
    ));
    if forward != Policy::Allow {
        o.push_str("\t\tct state established,related accept\n");
        if !ipv6 {
            o.push_str("\t\tmeta nfproto ipv6 accept\n");
        }
        if published.is_some() {
            o.push_str(super::docker::nft_forward_accepts());
        }
        if forward == Policy::Reject {
            o.push_str("\t\treject with icmpx type admin-prohibited\n");
        }
    }
    o.push_str("\t}\n\n");
    if let Some(pr) = published {
        o.push_str(&super::docker::nft_chain(pr, ipv6));
        o.push('\n');
    }
    // output
    let out = s.outgoing();
    o.push_str(&format!(
        "\tchain output {{\n\t\ttype filter hook output priority filter; policy {};\n",
        policy(out)
    ));
    if out != Policy::Allow {
        o.push_str("\t\toif \"lo\" accept\n\t\tct state established,related accept\n");
        if !ipv6 {
            o.push_str("\t\tmeta nfproto ipv6 accept\n");
        }
        o.push_str("\t\ticmp type { echo-request, destination-unreachable, time-exceeded, parameter-problem } accept\n");
        if ipv6 {
            o.push_str("\t\ticmpv6 type { destination-unreachable, packet-too-big, time-exceeded, parameter-problem, echo-request, mld-listener-report, nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept\n");
        }
        if out == Policy::Reject {
            o.push_str("\t\treject with icmpx type admin-prohibited\n");
        }
    }
    o.push_str("\t}\n}\n");
    o
}

/// The main configuration with the include line (appended when missing).
pub fn with_include(main: &str) -> Option<String> {
    if main.lines().any(|l| l.trim() == INCLUDE) {
        return None;
    }
    let mut s = main.to_string();
    if !s.ends_with('\n') && !s.is_empty() {
        s.push('\n');
    }
    s.push_str(&format!("\n{INCLUDE_COMMENT}\n{INCLUDE}\n"));
    Some(s)
}

/// The main configuration without bollwerk's include line (backend switched to ufw).
pub fn without_include(main: &str) -> Option<String> {
    if !main.lines().any(|l| l.trim() == INCLUDE) {
        return None;
    }
    let kept: Vec<&str> = main
        .lines()
        .filter(|l| l.trim() != INCLUDE && l.trim() != INCLUDE_COMMENT)
        .collect();
    let mut s = kept.join("\n");
    while s.ends_with('\n') {
        s.pop();
    }
    s.push('\n');
    Some(s)
}

/// Base chains of other tables in a ruleset text that drop incoming traffic by default and
/// never mention `port`: bollwerk's accept cannot override another table's drop.
pub fn blocking_chains(text: &str, port: u16) -> Vec<String> {
    let mut out = Vec::new();
    let mut table = String::new();
    let mut chain: Option<(String, String)> = None;
    let mut depth = 0usize;
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        if depth == 0 && words.first() == Some(&"table") && line.ends_with('{') {
            table = words[1..words.len() - 1].join(" ");
        }
        if depth == 1 && words.first() == Some(&"chain") && line.ends_with('{') {
            chain = Some((words.get(1).unwrap_or(&"").to_string(), String::new()));
        }
        if let Some((_, body)) = chain.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
        depth += line.matches('{').count();
        depth = depth.saturating_sub(line.matches('}').count());
        if depth <= 1
            && let Some((name, body)) = chain.take()
        {
            let flat = body.replace(';', " ");
            let input = flat.contains("hook input");
            let drops = flat.contains("policy drop");
            let p = port.to_string();
            let mentions = flat
                .split(|c: char| !c.is_ascii_alphanumeric())
                .any(|w| w == p || w == "ssh");
            if input && drops && !mentions && table != "inet bollwerk" {
                out.push(format!("table {table} chain {name}"));
            }
        }
        if depth == 0 {
            table.clear();
        }
    }
    out
}

/// Validates the ruleset with the root's `nft -c -f`: bollwerk's file on its own, then the
/// main configuration as it will be at boot (the include pointing at the candidate).
#[derive(Debug)]
pub struct NftValidator;

impl Validator for NftValidator {
    fn describe(&self) -> String {
        "nft -c -f".into()
    }

    fn validate(&self, cx: &Context, staged: &Staged) -> Result<()> {
        let file = RelPath::lit(NFT_FILE);
        let main = RelPath::lit(MAIN);
        let mut checks = Vec::new();
        let cand = staged.files.get(&file).cloned();
        if let Some(c) = &cand {
            checks.push((file.clone(), c.clone()));
        }
        let main_text = match staged.files.get(&main) {
            Some(p) => std::fs::read_to_string(staged.host_path(p)).ok(),
            None => cx.root.read_string(&main)?,
        };
        if let Some(t) = main_text
            && t.lines().any(|l| l.trim() == INCLUDE)
        {
            let target = cand.clone().unwrap_or_else(|| file.absolute());
            let text = t.replace(INCLUDE, &format!("include \"{target}\""));
            let host = staged.dir_host.join("nftables.conf.candidate");
            std::fs::write(&host, text).map_err(|e| Error::io("writing", &host, e))?;
            checks.push((
                main.clone(),
                format!("{}/nftables.conf.candidate", staged.dir_in_root),
            ));
        }
        for (target, path) in checks {
            let out = cx.runner.run(
                &cx.root,
                &Cmd::in_root("/usr/sbin/nft", &["-c", "-f", &path]),
            )?;
            if !out.success() {
                return Err(Error::Validation {
                    path: target.to_string(),
                    validator: self.describe(),
                    output: out.combined(),
                });
            }
        }
        Ok(())
    }
}

/// The live handler: load bollwerk's table (only it).
pub fn load_cmd() -> Cmd {
    Cmd::in_root("/usr/sbin/nft", &["-f", &format!("/{NFT_FILE}")])
}

/// Removes bollwerk's table from the running kernel when present.
pub fn delete_cmd() -> Cmd {
    Cmd::in_root(
        "/bin/sh",
        &[
            "-c",
            "if /usr/sbin/nft list table inet bollwerk >/dev/null 2>&1; then /usr/sbin/nft delete table inet bollwerk; fi",
        ],
    )
}

/// Plans the nftables backend. Returns true when something changed.
///
/// # Errors
/// When the root cannot be read.
pub fn plan(
    cx: &Context,
    p: &mut Planner,
    s: &FirewallSection,
    forward: Policy,
    rules: &[Rule],
    transition: &[u16],
) -> Result<bool> {
    let validator: Arc<dyn Validator> = Arc::new(NftValidator);
    let file = RelPath::lit(NFT_FILE);
    let main = RelPath::lit(MAIN);
    let mut changed = p.file_with(
        &cx.root,
        &file,
        render_with_docker(
            &cx.profile.name(),
            s,
            forward,
            rules,
            transition,
            super::docker::published_rules(cx).as_deref(),
        )
        .into_bytes(),
        Perms::root(0o644),
        format!(
            "nftables ruleset (table inet bollwerk, {} rules)",
            rules.len()
        ),
        Visibility::Plain,
        Some(validator.clone()),
    )?;
    match cx.root.read_string(&main)? {
        Some(text) => {
            if let Some(new) = with_include(&text) {
                let perms = match cx.root.entry(&main)? {
                    crate::root::Entry::File { perms, .. } => perms,
                    _ => Perms::root(0o755),
                };
                changed |= p.file_with(
                    &cx.root,
                    &main,
                    new.into_bytes(),
                    perms,
                    format!("include {NFT_FILE} from {MAIN}"),
                    Visibility::Plain,
                    Some(validator),
                )?;
            }
        }
        None => {
            // nftables is installed by this run: dpkg creates the file, then the include is
            // appended (a command, so it does not race the package's conffile).
            p.run(
                Cmd::in_root(
                    "/bin/sh",
                    &[
                        "-c",
                        &format!(
                            "f=/{MAIN}; [ -e \"$f\" ] || printf '%s' '{}' > \"$f\"; grep -qxF '{INCLUDE}' \"$f\" || printf '\\n%s\\n%s\\n' '{INCLUDE_COMMENT}' '{INCLUDE}' >> \"$f\"",
                            DEBIAN_DEFAULT_MAIN.replace('\t', "    ")
                        ),
                    ],
                ),
                vec![main.clone()],
                format!("include {NFT_FILE} from {MAIN} (nftables is installed in this run)"),
            );
            changed = true;
        }
    }
    changed |= crate::modules::netcommon::enable_unit(cx, p, "nftables.service")?;
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_is_added_once_and_removed() {
        let with = with_include(DEBIAN_DEFAULT_MAIN).unwrap();
        assert!(with.ends_with(&format!("{INCLUDE}\n")));
        assert_eq!(with_include(&with), None);
        assert_eq!(without_include(&with).unwrap(), DEBIAN_DEFAULT_MAIN);
        assert_eq!(without_include(DEBIAN_DEFAULT_MAIN), None);
    }

    #[test]
    fn other_tables_that_drop_ssh_are_found() {
        let t = "flush ruleset\ntable inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\ttcp dport 443 accept\n\t}\n\tchain output {\n\t\ttype filter hook output priority filter; policy drop;\n\t}\n}\n";
        assert_eq!(
            blocking_chains(t, 22),
            vec!["table inet filter chain input"]
        );
        let ok = t.replace("dport 443", "dport { 22, 443 }");
        assert!(blocking_chains(&ok, 22).is_empty());
        assert!(blocking_chains(DEBIAN_DEFAULT_MAIN, 22).is_empty());
    }
}
