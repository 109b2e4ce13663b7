//! Published container ports follow the firewall (`[docker] allow_published`).
//!
//! Docker publishes a port with a DNAT rule in `PREROUTING` and accepts the translated packet
//! in its own `FORWARD` chains, so the host's input chain never sees it. bollwerk filters the
//! forwarded packet *before* Docker's rules, without ever editing Docker's chains:
//!
//! * nftables backend: a base chain `docker_published` in `table inet bollwerk`, hooked on
//!   `forward` at priority `filter - 1` (Docker's iptables-nft `FORWARD` chain sits at
//!   `filter`). It accepts established/related traffic, everything coming from a Docker bridge
//!   (`docker0`, `br-*`: container egress and container to container) and everything not going
//!   to one; toward a bridge it accepts new connections only when their original (pre-DNAT)
//!   destination port is allowed (`ct status dnat` + `ct original proto-dst`), and drops the
//!   rest. A drop in any base chain is final; an accept lets Docker's own chain decide next.
//! * ufw backend (iptables): the same rules in the `DOCKER-USER` chain, which Docker jumps to
//!   first from `FORWARD` and never flushes. bollwerk owns the rules file
//!   [`DOCKER_USER_RULES`] (iptables-restore format, the chain declared so `--noflush` replaces
//!   exactly its content) and the unit [`DOCKER_USER_UNIT`], wanted by and ordered after
//!   `docker.service` and restarted with it, so the rules survive dockerd restarts and reboots.

use super::Rule;
use super::rules::{Ports, Proto};
use crate::engine::{Context, Planner, Staged, Validator, Visibility};
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::modules::users::MANAGED_HEADER;
use crate::root::{Perms, RelPath};
use std::sync::Arc;

/// bollwerk's DOCKER-USER rules (ufw backend).
pub const DOCKER_USER_RULES: &str = "etc/bollwerk/docker-user.rules";
/// The unit loading [`DOCKER_USER_RULES`] after dockerd.
pub const DOCKER_USER_UNIT: &str = "etc/systemd/system/bollwerk-docker-user.service";
/// The link enabling [`DOCKER_USER_UNIT`].
pub const DOCKER_USER_WANTS: &str =
    "etc/systemd/system/docker.service.wants/bollwerk-docker-user.service";
/// The nftables chain name.
pub const NFT_CHAIN: &str = "docker_published";

/// The published-port rules of the profile; `None` when `[docker] allow_published` is unset
/// (published ports are then not filtered).
pub fn published_rules(cx: &Context) -> Option<Vec<Rule>> {
    let list = cx
        .profile
        .profile
        .docker
        .as_ref()?
        .allow_published
        .as_ref()?;
    let mut out: Vec<Rule> = Vec::new();
    for r in list {
        let Ports::Range(lo, hi) = r.port().ports else {
            continue; // "ssh" is refused when the profile is loaded
        };
        let rule = Rule {
            lo,
            hi,
            proto: r.port().proto,
            from: r.from().cloned(),
            limit: false,
            comment: match r.comment() {
                Some(c) => format!("bollwerk: {c}"),
                None => format!("bollwerk: published {}", r.port()),
            },
        };
        if !out.iter().any(|o| {
            o.lo == rule.lo && o.hi == rule.hi && o.proto == rule.proto && o.from == rule.from
        }) {
            out.push(rule);
        }
    }
    Some(out)
}

fn ports_expr(lo: u16, hi: u16, sep: char) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}{sep}{hi}")
    }
}

/// The `docker_published` chain of bollwerk's nftables table (tab-indented, inside the table).
pub fn nft_chain(rules: &[Rule], ipv6: bool) -> String {
    let mut o = String::from(
        "\t# Docker: new connections to published container ports only as [docker] allow_published says.\n\t# Runs before Docker's own forward rules (iptables-nft, priority filter); Docker's chains are never edited.\n",
    );
    o.push_str(&format!(
        "\tchain {NFT_CHAIN} {{\n\t\ttype filter hook forward priority filter - 1; policy accept;\n"
    ));
    o.push_str("\t\tct state established,related accept\n");
    o.push_str("\t\tiifname \"docker0\" accept comment \"from containers: egress and container to container\"\n");
    o.push_str("\t\tiifname \"br-*\" accept comment \"from containers: egress and container to container\"\n");
    o.push_str("\t\toifname != \"docker0\" oifname != \"br-*\" accept comment \"not toward a container\"\n");
    if !ipv6 {
        o.push_str("\t\tmeta nfproto ipv6 accept comment \"ipv6 = false: IPv6 is not filtered\"\n");
    }
    for r in rules {
        if r.from.as_ref().is_some_and(|f| f.is_v6()) && !ipv6 {
            continue;
        }
        let mut m = String::new();
        if let Some(f) = &r.from {
            m.push_str(if f.is_v6() { "ip6 saddr " } else { "ip saddr " });
            m.push_str(&f.network());
            m.push(' ');
        }
        m.push_str(match r.proto {
            Proto::Tcp => "meta l4proto tcp ",
            Proto::Udp => "meta l4proto udp ",
            Proto::Any => "meta l4proto { tcp, udp } ",
        });
        o.push_str(&format!(
            "\t\t{m}ct status dnat ct original proto-dst {} accept comment \"{}\"\n",
            ports_expr(r.lo, r.hi, '-'),
            r.comment.replace('"', "")
        ));
    }
    o.push_str("\t\tdrop comment \"toward a container: published port not allowed, or not published\"\n\t}\n");
    o
}

/// Lines for bollwerk's own forward chain when it drops by default: traffic from and to the
/// Docker bridges is accepted there, because `docker_published` already filtered it.
pub fn nft_forward_accepts() -> &'static str {
    "\t\tiifname \"docker0\" accept comment \"Docker bridge (filtered by docker_published)\"\n\t\tiifname \"br-*\" accept comment \"Docker bridge (filtered by docker_published)\"\n\t\toifname \"docker0\" accept comment \"Docker bridge (filtered by docker_published)\"\n\t\toifname \"br-*\" accept comment \"Docker bridge (filtered by docker_published)\"\n"
}

/// bollwerk's DOCKER-USER rules in iptables-restore format (IPv4; Docker's IPv6 NAT is
/// experimental and off by default).
pub fn docker_user_rules(profile_name: &str, rules: &[Rule]) -> String {
    let mut o = format!(
        "{MANAGED_HEADER}\n# Profile: {profile_name}\n# Loaded by bollwerk-docker-user.service after docker.service with `iptables-restore --noflush`:\n# only the DOCKER-USER chain is replaced; Docker's own chains are never edited.\n*filter\n:DOCKER-USER - [0:0]\n-A DOCKER-USER -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n-A DOCKER-USER -i docker0 -j RETURN\n-A DOCKER-USER -i br-+ -j RETURN\n"
    );
    for r in rules {
        if r.from.as_ref().is_some_and(|f| f.is_v6()) {
            continue;
        }
        let protos: &[&str] = match r.proto {
            Proto::Tcp => &["tcp"],
            Proto::Udp => &["udp"],
            Proto::Any => &["tcp", "udp"],
        };
        for proto in protos {
            let src = r
                .from
                .as_ref()
                .map(|f| format!(" -s {}", f.network()))
                .unwrap_or_default();
            o.push_str(&format!(
                "-A DOCKER-USER{src} -p {proto} -m conntrack --ctstate DNAT --ctorigdstport {} -m comment --comment \"{}\" -j RETURN\n",
                ports_expr(r.lo, r.hi, ':'),
                r.comment.replace('"', "")
            ));
        }
    }
    o.push_str("-A DOCKER-USER -o docker0 -j DROP\n-A DOCKER-USER -o br-+ -j DROP\n-A DOCKER-USER -j RETURN\nCOMMIT\n");
    o
}

/// The unit that loads [`DOCKER_USER_RULES`] whenever docker.service starts.
pub fn docker_user_unit() -> String {
    format!(
        "{MANAGED_HEADER}\n[Unit]\nDescription=bollwerk: filter published Docker ports (DOCKER-USER)\nDocumentation=file:/usr/share/doc/bollwerk/docker.md\nAfter=docker.service\nPartOf=docker.service\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/sbin/iptables-restore --noflush /{DOCKER_USER_RULES}\n\n[Install]\nWantedBy=docker.service\n"
    )
}

/// Checks the DOCKER-USER rules with the root's `iptables-restore --test --noflush` (parses and
/// builds the rules without committing them).
#[derive(Debug)]
pub struct DockerUserValidator;

impl Validator for DockerUserValidator {
    fn describe(&self) -> String {
        "iptables-restore --test".into()
    }

    fn validate(&self, cx: &Context, staged: &Staged) -> Result<()> {
        let file = RelPath::lit(DOCKER_USER_RULES);
        let Some(cand) = staged.files.get(&file) else {
            return Ok(());
        };
        let out = cx.runner.run(
            &cx.root,
            &Cmd::in_root("/usr/sbin/iptables-restore", &["--test", "--noflush", cand]),
        )?;
        if !out.success() {
            return Err(Error::Validation {
                path: file.to_string(),
                validator: self.describe(),
                output: out.combined(),
            });
        }
        Ok(())
    }
}

/// Plans the ufw backend's DOCKER-USER rules (or removes them when `rules` is `None`).
/// Returns true when something changed.
///
/// # Errors
/// When the root cannot be read.
pub fn plan_ufw(cx: &Context, p: &mut Planner, rules: Option<&[Rule]>) -> Result<bool> {
    let file = RelPath::lit(DOCKER_USER_RULES);
    let unit = RelPath::lit(DOCKER_USER_UNIT);
    let wants = RelPath::lit(DOCKER_USER_WANTS);
    let Some(rules) = rules else {
        return plan_remove(cx, p);
    };
    let mut changed = p.file_with(
        &cx.root,
        &file,
        docker_user_rules(&cx.profile.name(), rules).into_bytes(),
        Perms::root(0o644),
        format!(
            "DOCKER-USER rules for published container ports ({} allowed)",
            rules.len()
        ),
        Visibility::Plain,
        Some(Arc::new(DockerUserValidator)),
    )?;
    changed |= p.file(
        &cx.root,
        &unit,
        docker_user_unit(),
        Perms::root(0o644),
        "unit loading the DOCKER-USER rules after docker.service",
    )?;
    if let Some(parent) = wants.parent() {
        p.dirs(&cx.root, &parent, Perms::root(0o755))?;
    }
    changed |= p.symlink(
        &cx.root,
        &wants,
        &format!("/{DOCKER_USER_UNIT}"),
        "enable bollwerk-docker-user.service (wanted by docker.service)",
    )?;
    if changed {
        p.handler(Cmd::in_root("/usr/bin/systemctl", &["daemon-reload"]));
        p.handler(Cmd::in_root(
            "/usr/bin/systemctl",
            &["restart", "bollwerk-docker-user.service"],
        ));
    }
    Ok(changed)
}

/// Removes the DOCKER-USER rules, unit and link (backend switched or filter dropped).
///
/// # Errors
/// When the root cannot be read.
pub fn plan_remove(cx: &Context, p: &mut Planner) -> Result<bool> {
    let mut changed = false;
    for (path, what) in [
        (DOCKER_USER_WANTS, "bollwerk-docker-user.service link"),
        (DOCKER_USER_UNIT, "bollwerk-docker-user.service"),
        (DOCKER_USER_RULES, "DOCKER-USER rules"),
    ] {
        changed |= p.remove(
            &cx.root,
            &RelPath::lit(path),
            format!("remove {what} (published ports are no longer filtered through DOCKER-USER)"),
        )?;
    }
    if changed {
        p.handler(Cmd::in_root(
            "/bin/sh",
            &[
                "-c",
                "/usr/bin/systemctl daemon-reload; if /usr/sbin/iptables -n -L DOCKER-USER >/dev/null 2>&1; then /usr/sbin/iptables -F DOCKER-USER && /usr/sbin/iptables -A DOCKER-USER -j RETURN; fi",
            ],
        ));
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::netcommon::Cidr;

    fn rules() -> Vec<Rule> {
        vec![
            Rule {
                lo: 443,
                hi: 443,
                proto: Proto::Tcp,
                from: None,
                limit: false,
                comment: "bollwerk: published 443/tcp".into(),
            },
            Rule {
                lo: 5432,
                hi: 5432,
                proto: Proto::Tcp,
                from: Some(Cidr::try_from("172.16.0.0/12".to_string()).unwrap()),
                limit: false,
                comment: "bollwerk: db".into(),
            },
        ]
    }

    #[test]
    fn nft_chain_matches_the_original_port() {
        let c = nft_chain(&rules(), true);
        assert!(c.contains("type filter hook forward priority filter - 1; policy accept;"));
        assert!(c.contains("meta l4proto tcp ct status dnat ct original proto-dst 443 accept"));
        assert!(c.contains("ip saddr 172.16.0.0/12 meta l4proto tcp ct status dnat ct original proto-dst 5432 accept"));
        assert!(c.trim_end().ends_with(
            "drop comment \"toward a container: published port not allowed, or not published\"\n\t}"
        ));
    }

    #[test]
    fn docker_user_rules_return_allowed_and_drop_the_rest() {
        let t = docker_user_rules("p", &rules());
        assert!(t.contains(":DOCKER-USER - [0:0]\n"));
        assert!(
            t.contains("-A DOCKER-USER -p tcp -m conntrack --ctstate DNAT --ctorigdstport 443 ")
        );
        assert!(t.contains("-A DOCKER-USER -s 172.16.0.0/12 -p tcp -m conntrack --ctstate DNAT --ctorigdstport 5432 "));
        let drop = t.find("-o docker0 -j DROP").unwrap();
        assert!(t.find("--ctorigdstport 443").unwrap() < drop);
        assert!(t.ends_with("COMMIT\n"));
    }
}
