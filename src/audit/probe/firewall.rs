//! Firewall probes: ufw files, and nftables rulesets judged by semantics
//! ([`crate::state::firewall`]); on a live host the loaded ruleset.

use super::*;

pub(super) fn ssh_ports(cx: &AuditCx) -> Vec<String> {
    let s = cx.sshd();
    let mut p: Vec<String> = s.values.get("port").cloned().unwrap_or_default();
    if p.is_empty() {
        p.push("22".into());
    }
    p
}

pub(super) fn firewall_probe(cx: &AuditCx, prop: FirewallProperty) -> Outcome {
    let f = match cx.firewall() {
        Ok(f) => f,
        Err(e) => return Outcome::error(e),
    };
    let backend = if f.ufw {
        "ufw"
    } else if f.nftables {
        "nftables"
    } else {
        ""
    };
    if prop == FirewallProperty::Enabled {
        if let Some(o) = live_enabled(f, backend) {
            return o;
        }
        return Outcome::judge(
            !backend.is_empty(),
            match backend {
                "ufw" => "ufw enabled (etc/ufw/ufw.conf ENABLED=yes)".to_string(),
                "nftables" => "nftables.service enabled".to_string(),
                _ => "no firewall enabled (ufw ENABLED=no or not installed; nftables.service not enabled)".to_string(),
            },
        );
    }
    if prop == FirewallProperty::SingleBackend {
        let mut on = Vec::new();
        if f.ufw {
            on.push("ufw");
        }
        if f.nftables {
            on.push("nftables.service");
        }
        if f.iptables_persistent {
            on.push("iptables-persistent");
        }
        return Outcome::judge(
            on.len() <= 1,
            if on.is_empty() {
                "no firewall backend enabled".into()
            } else {
                format!("enabled: {}", on.join(", "))
            },
        );
    }
    if backend.is_empty() {
        return Outcome::fail("no firewall enabled (ufw or nftables.service)");
    }
    let (chains, src) = match &f.live_nft {
        Some(Ok(t)) => (fw::parse_ruleset(t), "loaded ruleset: nft list ruleset"),
        Some(Err(e)) if backend == "nftables" => {
            return Outcome::error(format!("reading the loaded ruleset: {e}"));
        }
        _ => (
            fw::parse_ruleset(&f.nft_text),
            "etc/nftables.conf, includes followed",
        ),
    };
    match (prop, backend) {
        (FirewallProperty::DefaultDenyInput | FirewallProperty::DefaultDenyForward, "ufw") => {
            let key = if prop == FirewallProperty::DefaultDenyInput {
                "DEFAULT_INPUT_POLICY"
            } else {
                "DEFAULT_FORWARD_POLICY"
            };
            match f.ufw_defaults.get(key) {
                None => Outcome::fail(format!("{key} not set (etc/default/ufw)")),
                Some(s) => Outcome::judge(
                    ["drop", "reject"].contains(&s.value.to_ascii_lowercase().as_str()),
                    format!("{key}=\"{}\" ({})", s.value, s.at),
                ),
            }
        }
        (FirewallProperty::DefaultDenyInput | FirewallProperty::DefaultDenyForward, _) => {
            let hook = if prop == FirewallProperty::DefaultDenyInput {
                "input"
            } else {
                "forward"
            };
            nft_default_deny(&chains, hook, src)
        }
        (FirewallProperty::Loopback, "ufw") => {
            let rules = &f.ufw_rules;
            let lo = rules.iter().any(|r| r.contains("-i lo -j ACCEPT"));
            let v4 = rules.iter().any(|r| {
                r.contains("-s 127.0.0.0/8")
                    && (r.contains("DROP") || r.contains("REJECT") || r.contains("deny"))
            });
            let v6 = rules
                .iter()
                .any(|r| r.contains("-s ::1") && (r.contains("DROP") || r.contains("REJECT")));
            Outcome::judge(
                lo && v4 && v6,
                format!(
                    "ufw rules: in on lo accept {}, deny from 127.0.0.0/8 {}, deny from ::1 {} (etc/ufw/*.rules)",
                    yes_no(lo),
                    yes_no(v4),
                    yes_no(v6)
                ),
            )
        }
        (FirewallProperty::Loopback, _) => {
            let input: Vec<&fw::Rule> = chains
                .iter()
                .filter(|c| c.hook.as_deref() == Some("input"))
                .flat_map(|c| &c.rules)
                .collect();
            let lo = input.iter().any(|r| r.is_loopback_accept());
            let v4 = input.iter().any(|r| r.drops_source("ip", "127.0.0.0/8"));
            let v6 = input.iter().any(|r| r.drops_source("ip6", "::1"));
            Outcome::judge(
                lo && v4 && v6,
                format!(
                    "nftables input: loopback accepted {}, ip saddr 127.0.0.0/8 dropped {}, ip6 saddr ::1 dropped {} ({src})",
                    yes_no(lo),
                    yes_no(v4),
                    yes_no(v6)
                ),
            )
        }
        (FirewallProperty::SshAllowed, "ufw") => {
            let ports = ssh_ports(cx);
            let missing: Vec<&String> = ports
                .iter()
                .filter(|p| {
                    !f.ufw_rules.iter().any(|r| {
                        r.contains("ACCEPT")
                            && (r.contains(&format!("--dport {p} "))
                                || r.ends_with(&format!("--dport {p}"))
                                || r.contains(&format!("--dports {p}")))
                    })
                })
                .collect();
            Outcome::judge(
                missing.is_empty(),
                format!(
                    "ssh port(s) {} ({}); ufw allows: {}",
                    ports.join(","),
                    cx.sshd().source,
                    if missing.is_empty() { "all" } else { "not all" }
                ),
            )
        }
        (FirewallProperty::SshAllowed, _) => {
            let ports = ssh_ports(cx);
            let missing: Vec<&str> = ports
                .iter()
                .filter(|p| {
                    !chains
                        .iter()
                        .filter(|c| c.hook.as_deref() == Some("input"))
                        .flat_map(|c| &c.rules)
                        .any(|r| r.accepts_port(p))
                })
                .map(String::as_str)
                .collect();
            Outcome::judge(
                missing.is_empty(),
                format!(
                    "ssh port(s) {} ({}); accepted in the input chain ({src}): {}",
                    ports.join(","),
                    cx.sshd().source,
                    if missing.is_empty() {
                        "yes".to_string()
                    } else {
                        format!("not {}", missing.join(","))
                    }
                ),
            )
        }
        (FirewallProperty::Enabled | FirewallProperty::SingleBackend, _) => {
            Outcome::error("unreachable")
        }
    }
}

pub(super) fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// A packet passes a hook only when every base chain on it accepts it, so one base chain with
/// a drop policy makes the effective default "drop" even next to a chain with policy accept
/// (Debian's default `table inet filter`).
fn nft_default_deny(chains: &[fw::Chain], hook: &str, src: &str) -> Outcome {
    let hooked: Vec<&fw::Chain> = chains
        .iter()
        .filter(|c| c.hook.as_deref() == Some(hook))
        .collect();
    if hooked.is_empty() {
        return Outcome::fail(format!("no base chain with hook {hook} ({src})"));
    }
    let (dropping, accepting): (Vec<&fw::Chain>, Vec<&fw::Chain>) = hooked
        .iter()
        .partition(|c| matches!(c.effective_policy(), "drop" | "reject"));
    let names = |v: &[&fw::Chain]| {
        v.iter()
            .map(|c| format!("{} {}", c.table, c.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Outcome::judge(
        !dropping.is_empty(),
        if dropping.is_empty() {
            format!(
                "{hook} chain(s) {} accept by default, none drops ({src})",
                names(&accepting)
            )
        } else if accepting.is_empty() {
            format!("{hook} chain(s) {} policy drop ({src})", names(&dropping))
        } else {
            format!(
                "{hook} chain(s) {} policy drop, which decides over {} with policy accept ({src})",
                names(&dropping),
                names(&accepting)
            )
        },
    )
}

/// On a live host: the firewall enabled at boot must also be loaded now.
fn live_enabled(f: &crate::audit::facts::FirewallState, backend: &str) -> Option<Outcome> {
    match backend {
        "ufw" => match f.live_ufw.as_ref()? {
            Err(e) => Some(Outcome::error(format!("ufw status: {e}"))),
            Ok(t) => {
                let active = t.lines().any(|l| l.trim() == "Status: active");
                Some(Outcome::judge(
                    active,
                    format!(
                        "ufw enabled at boot (etc/ufw/ufw.conf); now: {} (ufw status verbose)",
                        t.lines().next().unwrap_or("no output").trim()
                    ),
                ))
            }
        },
        "nftables" => match f.live_nft.as_ref()? {
            Err(e) => Some(Outcome::error(format!("reading the loaded ruleset: {e}"))),
            Ok(t) => {
                let loaded = fw::parse_ruleset(t)
                    .iter()
                    .any(|c| c.hook.as_deref() == Some("input"));
                Some(Outcome::judge(
                    loaded,
                    if loaded {
                        "nftables.service enabled; an input base chain is loaded (nft list ruleset)"
                            .to_string()
                    } else {
                        "nftables.service enabled, but the loaded ruleset has no input base chain (nft list ruleset): flushed, or the service failed".to_string()
                    },
                ))
            }
        },
        _ => None,
    }
}
