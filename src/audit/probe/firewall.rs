//! Firewall probes: ufw files, and nftables rulesets judged by semantics
//! ([`crate::state::firewall`]); on a live host the loaded ruleset.

use super::*;
use crate::audit::facts::FirewallState;

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
    match prop {
        FirewallProperty::Enabled => enabled(f, backend),
        FirewallProperty::SingleBackend => single_backend(f),
        _ if backend.is_empty() => Outcome::fail("no firewall enabled (ufw or nftables.service)"),
        _ if backend == "ufw" => ufw_property(cx, f, prop),
        _ => nft_property(cx, f, prop),
    }
}

/// Some firewall starts at boot and, on a live host, is loaded now.
fn enabled(f: &FirewallState, backend: &str) -> Outcome {
    if let Some(o) = live_enabled(f, backend) {
        return o;
    }
    Outcome::judge(
        !backend.is_empty(),
        match backend {
            "ufw" => "ufw enabled (etc/ufw/ufw.conf ENABLED=yes)".to_string(),
            "nftables" => "nftables.service enabled".to_string(),
            _ => "no firewall enabled (ufw ENABLED=no or not installed; nftables.service not enabled)".to_string(),
        },
    )
}

fn single_backend(f: &FirewallState) -> Outcome {
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
    Outcome::judge(
        on.len() <= 1,
        if on.is_empty() {
            "no firewall backend enabled".into()
        } else {
            format!("enabled: {}", on.join(", "))
        },
    )
}

/// ufw: policies and rules from its files; on a live host an inactive ufw (`ufw status
/// verbose`) filters nothing, and the default policies are those ufw reports.
fn ufw_property(cx: &AuditCx, f: &FirewallState, prop: FirewallProperty) -> Outcome {
    let live = match &f.live_ufw {
        Some(Err(e)) => return Outcome::error(format!("ufw status: {e}")),
        Some(Ok(st)) if !st.active => {
            return Outcome::fail(format!(
                "ufw enabled at boot, but not filtering now ({}; ufw status verbose)",
                st.status_line
            ));
        }
        Some(Ok(st)) => Some(st),
        None => None,
    };
    match prop {
        FirewallProperty::DefaultDenyInput => ufw_default_deny(f, live, "DEFAULT_INPUT_POLICY"),
        FirewallProperty::DefaultDenyForward => ufw_default_deny(f, live, "DEFAULT_FORWARD_POLICY"),
        FirewallProperty::Loopback => ufw_loopback(&f.ufw_rules),
        FirewallProperty::SshAllowed => ufw_ssh_allowed(cx, &f.ufw_rules),
        FirewallProperty::Enabled | FirewallProperty::SingleBackend => {
            Outcome::error("unreachable")
        }
    }
}

fn ufw_default_deny(f: &FirewallState, live: Option<&fw::UfwStatus>, key: &str) -> Outcome {
    let deny = |p: &str| ["drop", "reject", "deny"].contains(&p.to_ascii_lowercase().as_str());
    let direction = if key == "DEFAULT_INPUT_POLICY" {
        "incoming"
    } else {
        "routed"
    };
    if let Some(p) = live.and_then(|st| st.default_for(direction)) {
        return Outcome::judge(
            deny(p),
            format!("ufw active, default {p} ({direction}) (ufw status verbose)"),
        );
    }
    match f.ufw_defaults.get(key) {
        None => Outcome::fail(format!("{key} not set (etc/default/ufw)")),
        Some(s) => Outcome::judge(deny(&s.value), format!("{key}=\"{}\" ({})", s.value, s.at)),
    }
}

fn ufw_loopback(rules: &[String]) -> Outcome {
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

fn ufw_ssh_allowed(cx: &AuditCx, rules: &[String]) -> Outcome {
    let ports = ssh_ports(cx);
    let missing: Vec<&String> = ports
        .iter()
        .filter(|p| {
            !rules.iter().any(|r| {
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

/// nftables: the loaded ruleset on a live host, the next-boot configuration offline.
fn nft_property(cx: &AuditCx, f: &FirewallState, prop: FirewallProperty) -> Outcome {
    let config;
    let loaded_src;
    let (chains, src): (&[fw::Chain], &str) = match &f.live_nft {
        Some(Ok(l)) => {
            loaded_src = format!("loaded ruleset: {}", l.source);
            (&l.chains, &loaded_src)
        }
        Some(Err(e)) => return Outcome::error(format!("reading the loaded ruleset: {e}")),
        None => {
            config = fw::parse_ruleset(&f.nft_text);
            (&config, "etc/nftables.conf, includes followed")
        }
    };
    match prop {
        FirewallProperty::DefaultDenyInput => nft_default_deny(chains, "input", src),
        FirewallProperty::DefaultDenyForward => nft_default_deny(chains, "forward", src),
        FirewallProperty::Loopback => nft_loopback(chains, src),
        FirewallProperty::SshAllowed => nft_ssh_allowed(cx, chains, src),
        FirewallProperty::Enabled | FirewallProperty::SingleBackend => {
            Outcome::error("unreachable")
        }
    }
}

fn input_rules(chains: &[fw::Chain]) -> impl Iterator<Item = &fw::Rule> {
    chains
        .iter()
        .filter(|c| c.hook.as_deref() == Some("input"))
        .flat_map(|c| &c.rules)
}

fn nft_loopback(chains: &[fw::Chain], src: &str) -> Outcome {
    let lo = input_rules(chains).any(|r| r.is_loopback_accept());
    let v4 = input_rules(chains).any(|r| r.drops_source("ip", "127.0.0.0/8"));
    let v6 = input_rules(chains).any(|r| r.drops_source("ip6", "::1"));
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

fn nft_ssh_allowed(cx: &AuditCx, chains: &[fw::Chain], src: &str) -> Outcome {
    let ports = ssh_ports(cx);
    let missing: Vec<&str> = ports
        .iter()
        .filter(|p| !input_rules(chains).any(|r| r.accepts_port(p)))
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
fn live_enabled(f: &FirewallState, backend: &str) -> Option<Outcome> {
    match backend {
        "ufw" => match f.live_ufw.as_ref()? {
            Err(e) => Some(Outcome::error(format!("ufw status: {e}"))),
            Ok(st) => Some(Outcome::judge(
                st.active,
                format!(
                    "ufw enabled at boot (etc/ufw/ufw.conf); now: {} (ufw status verbose)",
                    st.status_line
                ),
            )),
        },
        "nftables" => match f.live_nft.as_ref()? {
            Err(e) => Some(Outcome::error(format!("reading the loaded ruleset: {e}"))),
            Ok(l) => {
                let loaded = l.chains.iter().any(|c| c.hook.as_deref() == Some("input"));
                Some(Outcome::judge(
                    loaded,
                    if loaded {
                        format!(
                            "nftables.service enabled; an input base chain is loaded ({})",
                            l.source
                        )
                    } else {
                        format!(
                            "nftables.service enabled, but the loaded ruleset has no input base chain ({}): flushed, or the service failed",
                            l.source
                        )
                    },
                ))
            }
        },
        _ => None,
    }
}
