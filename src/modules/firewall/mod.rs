//! Host firewall: bollwerk's own nftables table (`table inet bollwerk` in
//! `etc/nftables.d/bollwerk.nft`, included from `etc/nftables.conf`) or ufw (its own rules
//! files), chosen by `firewall.backend`. Never locks the operator out: the ports sshd will
//! listen on are always open, a port move keeps the old port open until a later run, and
//! `apply --confirm` restores the previous ruleset unless `bollwerk confirm` follows in time.

pub mod confirm;
pub mod docker;
pub mod nft;
pub mod rules;
pub mod ufw;

pub use rules::{Backend, BackendChoice, FirewallSection, Policy, PortSpec, RuleSpec};

use crate::engine::{Context, Finding, Level, Plan, Planner};
use crate::error::Result;
use crate::exec::Cmd;
use crate::modules::Module;
use crate::modules::netcommon::{self, Cidr};
use crate::root::RelPath;
use rules::{Ports, Proto};

/// The backend the firewall uses on this target: the profile's choice, `auto` meaning ufw when
/// it is installed and enabled, nftables otherwise. Without a `[firewall]` section the same
/// detection tells fail2ban which ban action fits.
pub fn resolve_backend(cx: &Context) -> Backend {
    let choice = cx
        .profile
        .profile
        .firewall
        .as_ref()
        .and_then(|f| f.backend)
        .unwrap_or(BackendChoice::Auto);
    match choice {
        BackendChoice::Nftables => Backend::Nftables,
        BackendChoice::Ufw => Backend::Ufw,
        BackendChoice::Auto => {
            if netcommon::ufw_active(cx) {
                Backend::Ufw
            } else {
                Backend::Nftables
            }
        }
    }
}

/// bollwerk's nftables ruleset file.
pub const NFT_FILE: &str = "etc/nftables.d/bollwerk.nft";
/// Marker line (in [`NFT_FILE`] and the fail2ban drop-in) naming the old SSH ports kept open
/// during a port move.
pub const TRANSITION_MARKER: &str = "# old ssh ports, kept open until the next run:";
/// Comment of ufw rules that keep an old SSH port open during a port move.
pub const UFW_TRANSITION_COMMENT: &str = "bollwerk: old ssh port, closed on the next run";

/// The SSH ports the firewall keeps open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SshPorts {
    /// Ports sshd will listen on after this plan.
    pub wanted: Vec<u16>,
    /// Ports sshd listens on now but will not after the plan (a port move): kept open until a
    /// later run, so the session that applies the move is not cut off.
    pub transition: Vec<u16>,
}

impl SshPorts {
    /// Every port to open.
    pub fn all(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .wanted
            .iter()
            .chain(&self.transition)
            .copied()
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Ports named by `Port` and by `ListenAddress addr:port` in an sshd static evaluation.
fn ports_of(eff: &std::collections::BTreeMap<String, Vec<String>>) -> Vec<u16> {
    let mut ports: Vec<u16> = eff
        .get("port")
        .map(|v| {
            v.iter()
                .flat_map(|p| p.split_whitespace())
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if ports.is_empty() {
        ports.push(22);
    }
    for la in eff.get("listenaddress").into_iter().flatten() {
        let la = la.split_whitespace().next().unwrap_or("");
        // `[::]:2222`, `0.0.0.0:2222`; a bare IPv6 address has more than one colon.
        let port = if let Some(rest) = la.strip_prefix('[') {
            rest.split_once("]:").and_then(|(_, p)| p.parse().ok())
        } else if la.matches(':').count() == 1 {
            la.split_once(':').and_then(|(_, p)| p.parse().ok())
        } else {
            None
        };
        if let Some(p) = port {
            ports.push(p);
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Old SSH ports the current firewall and fail2ban files keep open (see
/// [`TRANSITION_MARKER`]).
fn marked_transition(cx: &Context) -> Vec<u16> {
    let mut out = Vec::new();
    for f in [NFT_FILE, crate::modules::fail2ban::DROPIN] {
        if let Ok(Some(t)) = cx.root.read_string(&crate::root::RelPath::lit(f)) {
            for l in t.lines() {
                if let Some(rest) = l.strip_prefix(TRANSITION_MARKER) {
                    out.extend(
                        rest.split_whitespace()
                            .filter_map(|p| p.parse::<u16>().ok()),
                    );
                }
            }
        }
    }
    for f in ["etc/ufw/user.rules", "etc/ufw/user6.rules"] {
        if let Ok(Some(t)) = cx.root.read_string(&crate::root::RelPath::lit(f)) {
            for r in ufw::parse_rules(&t) {
                if r.comment.as_deref() == Some(UFW_TRANSITION_COMMENT)
                    && let Some(p) = r.dport.parse::<u16>().ok()
                {
                    out.push(p);
                }
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The SSH ports to keep open: what sshd will listen on after the plan (from the sshd
/// module's static evaluation, including `ListenAddress addr:port`), plus the ports it
/// listens on now (from the current files and, on the live host, `sshd -T`) during a move.
/// `None` when sshd is not installed.
///
/// # Errors
/// When the sshd configuration cannot be read.
pub fn ssh_ports(
    cx: &Context,
    plan: &crate::engine::Plan,
) -> crate::error::Result<Option<SshPorts>> {
    let Some(access) = plan.ssh_access.as_ref() else {
        return Ok(None);
    };
    let mut wanted = access.ports.clone();
    wanted.extend(ports_of(&crate::modules::sshd::static_effective(cx, plan)?));
    wanted.sort_unstable();
    wanted.dedup();
    let mut now = ports_of(&crate::modules::sshd::static_effective(
        cx,
        &crate::engine::Plan::default(),
    )?);
    if cx.live()
        && let Ok(eff) = crate::modules::sshd::effective_config(cx)
    {
        now.extend(eff.all("port").iter().filter_map(|p| p.parse::<u16>().ok()));
    }
    if cx.options.converging {
        now.extend(marked_transition(cx));
    }
    let mut transition: Vec<u16> = now.into_iter().filter(|p| !wanted.contains(p)).collect();
    transition.sort_unstable();
    transition.dedup();
    Ok(Some(SshPorts { wanted, transition }))
}

/// One port rule both backends render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// First port.
    pub lo: u16,
    /// Last port (same as `lo` for one port).
    pub hi: u16,
    /// Protocol(s).
    pub proto: Proto,
    /// Source restriction.
    pub from: Option<Cidr>,
    /// Rate-limit new connections.
    pub limit: bool,
    /// Comment (`bollwerk…`).
    pub comment: String,
}

/// Builds the rules of a section: the SSH ports first (anti-lockout; restricted to
/// `ssh_from` when set), then `limit` and `allow` entries in order, without duplicates.
pub fn build_rules(s: &FirewallSection, ssh: Option<&SshPorts>) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    let push = |r: Rule, out: &mut Vec<Rule>| {
        if !out
            .iter()
            .any(|o| o.lo == r.lo && o.hi == r.hi && o.proto == r.proto && o.from == r.from)
        {
            out.push(r);
        }
    };
    let limit_list = s.limit.clone().unwrap_or_default();
    let ssh_limited = limit_list
        .iter()
        .any(|r| r.port().ports == Ports::Ssh && r.from().is_none());
    if let Some(ssh) = ssh {
        let sources: Vec<Option<Cidr>> = match &s.ssh_from {
            Some(nets) => nets
                .iter()
                .filter(|n| s.ipv6() || !n.is_v6())
                .cloned()
                .map(Some)
                .collect(),
            None => vec![None],
        };
        for port in ssh.all() {
            let old = ssh.transition.contains(&port);
            for from in &sources {
                push(
                    Rule {
                        lo: port,
                        hi: port,
                        proto: Proto::Tcp,
                        from: from.clone(),
                        limit: ssh_limited && !old,
                        comment: if old {
                            UFW_TRANSITION_COMMENT.to_string()
                        } else {
                            "bollwerk: ssh (always open)".to_string()
                        },
                    },
                    &mut out,
                );
            }
        }
    }
    for (list, limit) in [(&s.limit, true), (&s.allow, false)] {
        for r in list.iter().flatten() {
            let comment = match r.comment() {
                Some(c) => format!("bollwerk: {c}"),
                None => "bollwerk".to_string(),
            };
            match r.port().ports {
                Ports::Ssh => {} // covered above
                Ports::Range(lo, hi) => push(
                    Rule {
                        lo,
                        hi,
                        proto: r.port().proto,
                        from: r.from().cloned(),
                        limit,
                        comment,
                    },
                    &mut out,
                ),
            }
        }
    }
    out
}

/// The address of the SSH client running this process, from `SSH_CONNECTION`.
pub fn ssh_client() -> Option<std::net::IpAddr> {
    std::env::var("SSH_CONNECTION")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The forward policy: the profile's, else deny, except on Docker hosts (allow, with a note).
fn forward_policy(cx: &Context, s: &FirewallSection, p: &mut Planner) -> Policy {
    let docker = netcommon::docker_installed(cx);
    // [docker] allow_published: the Docker bridges are accepted in the forward chain and
    // filtered by the docker chain, so a dropping forward policy keeps containers working.
    if docker::published_rules(cx).is_some() {
        return s.default_forward.unwrap_or(Policy::Deny);
    }
    match (s.default_forward, docker) {
        (Some(f), true) if f != Policy::Allow => {
            p.note(
                Level::Warning,
                "Docker is installed and default_forward is not allow: containers lose their network",
            );
            f
        }
        (Some(f), _) => f,
        (None, true) => {
            p.note(
                Level::Info,
                "Docker is installed: forwarded traffic is not filtered (default_forward unset); Docker manages it",
            );
            Policy::Allow
        }
        (None, false) => Policy::Deny,
    }
}

/// Why the firewall cannot act on this target (containers without CAP_NET_ADMIN or without
/// nftables in the kernel), if it cannot.
fn cannot_act(cx: &Context, backend: Backend) -> Option<String> {
    if let Some(r) = netcommon::net_admin_denied(cx) {
        return Some(r);
    }
    if cx.root.is_host() && cx.facts.container.is_some() {
        let probe = match backend {
            Backend::Nftables => Cmd::in_root("/usr/sbin/nft", &["list", "tables"]),
            Backend::Ufw => Cmd::in_root("/usr/sbin/iptables", &["-n", "-L", "INPUT"]),
        };
        if let Ok(out) = cx.runner.run(&cx.root, &probe)
            && !out.success()
        {
            return Some(format!(
                "the kernel refused `{}` in this container: {}",
                probe.display(),
                out.combined()
            ));
        }
    }
    None
}

/// With `remove_other`: the installed firewall utility not chosen, and whether it is enabled.
fn other_utility(cx: &Context) -> Option<(&'static str, bool)> {
    let s = cx.profile.profile.firewall.as_ref()?;
    if s.remove_other != Some(true) || cannot_act(cx, resolve_backend(cx)).is_some() {
        return None;
    }
    let (pkg, enabled) = match resolve_backend(cx) {
        Backend::Nftables => ("ufw", netcommon::ufw_active(cx)),
        Backend::Ufw => ("nftables", netcommon::unit_enabled(cx, "nftables.service")),
    };
    cx.facts.package(pkg).map(|_| (pkg, enabled))
}

/// The firewall module.
pub struct Firewall;

impl Module for Firewall {
    fn name(&self) -> &'static str {
        "firewall"
    }

    fn unwanted_packages(&self, cx: &Context) -> Vec<String> {
        match other_utility(cx) {
            Some((pkg, false)) => vec![pkg.to_string()],
            _ => Vec::new(),
        }
    }

    fn required_packages(&self, cx: &Context) -> Vec<String> {
        if cx.profile.profile.firewall.is_none() {
            return Vec::new();
        }
        match resolve_backend(cx) {
            Backend::Nftables => vec!["nftables".into()],
            Backend::Ufw => vec!["ufw".into()],
        }
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(s) = cx.profile.profile.firewall.as_ref() else {
            return Ok(());
        };
        let backend = resolve_backend(cx);
        let ssh = ssh_ports(cx, plan)?;
        let mut p = Planner::new(self.name(), plan);
        if let Some(reason) = cannot_act(cx, backend) {
            p.note(
                Level::Warning,
                format!("the firewall cannot act here and is skipped, nothing changed: {reason}"),
            );
            return Ok(());
        }
        if let Some((other, true)) = other_utility(cx) {
            p.note(
                Level::Warning,
                format!("firewall.remove_other: {other} is enabled, so it is not removed in this run (the host would be unfiltered in between); disable it once the new ruleset is checked, then apply again"),
            );
        }
        let (tool, package) = match backend {
            Backend::Nftables => ("usr/sbin/nft", "nftables"),
            Backend::Ufw => ("usr/sbin/ufw", "ufw"),
        };
        if !cx.root.exists(&RelPath::lit(tool))
            && !crate::modules::packages::installs(p.plan(), package)
        {
            p.note(
                Level::Warning,
                format!("{package} is not installed and this run does not install it (see the packages notes): the firewall is not configured"),
            );
            return Ok(());
        }
        // Anti-lockout.
        match &ssh {
            None => p.note(
                Level::Info,
                "openssh-server is not installed: no SSH port is opened",
            ),
            Some(sp) => {
                if !sp.transition.is_empty() {
                    p.note(
                        Level::Warning,
                        format!(
                            "SSH moves to port {}: port {} stays open until a later run, so this session is not cut off",
                            join(&sp.wanted),
                            join(&sp.transition)
                        ),
                    );
                }
                if let Some(nets) = &s.ssh_from {
                    let list: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
                    match (cx.root.is_host(), ssh_client()) {
                        (true, Some(ip)) if !nets.iter().any(|n| n.contains(ip)) => p.refuse(
                            format!(
                                "your SSH session comes from {ip}, which firewall.ssh_from ({}) does not include: the firewall would cut you off",
                                list.join(", ")
                            ),
                            "add your address or network to firewall.ssh_from",
                        ),
                        (true, Some(_)) => {}
                        _ => p.note(
                            Level::Warning,
                            format!(
                                "SSH is reachable only from {}: make sure every admin host is inside",
                                list.join(", ")
                            ),
                        ),
                    }
                }
                for r in s.allow.iter().flatten().chain(s.limit.iter().flatten()) {
                    if let (Ports::Range(lo, hi), Some(_)) = (r.port().ports, r.from())
                        && s.ssh_from.is_none()
                        && sp.all().iter().any(|p| (lo..=hi).contains(p))
                    {
                        p.note(
                            Level::Info,
                            format!(
                                "rule {} restricts an SSH port, but SSH stays open from anywhere (anti-lockout); narrow it with firewall.ssh_from",
                                r.port()
                            ),
                        );
                    }
                }
            }
        }
        if s.incoming() == Policy::Allow {
            p.note(
                Level::Warning,
                "default_incoming = allow: incoming traffic is not filtered",
            );
        }
        if s.outgoing() != Policy::Allow {
            p.note(
                Level::Warning,
                "default_outgoing blocks new outgoing connections: DNS, NTP and package downloads fail unless something else allows them",
            );
        }
        let docker = netcommon::docker_installed(cx);
        let forward = forward_policy(cx, s, &mut p);
        let rules = build_rules(s, ssh.as_ref());
        let transition = ssh
            .as_ref()
            .map(|s| s.transition.clone())
            .unwrap_or_default();
        let nft_file = RelPath::lit(NFT_FILE);
        let changed = match backend {
            Backend::Nftables => {
                if netcommon::ufw_active(cx) {
                    p.note(
                        Level::Warning,
                        "ufw is enabled too and filters on its own: a port must be open in both (disable ufw or use backend = \"ufw\")",
                    );
                }
                // Another table dropping input without the SSH port overrides our accept.
                let main = cx
                    .root
                    .read_string(&RelPath::lit(nft::MAIN))?
                    .unwrap_or_default();
                if let Some(sp) = &ssh {
                    for port in &sp.wanted {
                        let blocking = nft::blocking_chains(&main, *port);
                        if !blocking.is_empty() {
                            p.refuse(
                                format!(
                                    "{} in /{} drops incoming traffic by default and never accepts the SSH port {port}; bollwerk's accept cannot override another table's drop",
                                    blocking.join(", "),
                                    nft::MAIN
                                ),
                                format!("accept port {port} there or remove that table from /{}", nft::MAIN),
                            );
                        }
                    }
                }
                let c = nft::plan(cx, &mut p, s, forward, &rules, &transition)?;
                if c {
                    p.handler(nft::load_cmd());
                }
                // Switching from ufw: the DOCKER-USER rules are no longer bollwerk's filter.
                let d = docker::plan_remove(cx, &mut p)?;
                c | d
            }
            Backend::Ufw => {
                if docker && docker::published_rules(cx).is_none() {
                    p.note(
                        Level::Warning,
                        "Docker is installed and the firewall is ufw: ports Docker publishes (docker run -p) bypass ufw's rules entirely; bind them to 127.0.0.1 or use backend = \"nftables\"",
                    );
                }
                // Switching from nftables: remove bollwerk's table and its include.
                let mut c = p.remove(
                    &cx.root,
                    &nft_file,
                    format!("remove {NFT_FILE} (the firewall backend is now ufw)"),
                )?;
                let main = RelPath::lit(nft::MAIN);
                if let Some(text) = cx.root.read_string(&main)?
                    && let Some(new) = nft::without_include(&text)
                {
                    let perms = match cx.root.entry(&main)? {
                        crate::root::Entry::File { perms, .. } => perms,
                        _ => crate::root::Perms::root(0o755),
                    };
                    c |= p.file(
                        &cx.root,
                        &main,
                        new,
                        perms,
                        format!("drop bollwerk's include from {}", nft::MAIN),
                    )?;
                }
                if c {
                    p.handler(nft::delete_cmd());
                }
                let u = ufw::plan(cx, &mut p, s, forward, &rules)?;
                if u {
                    p.handler(ufw::enable_cmd());
                }
                let published = docker::published_rules(cx);
                let d = docker::plan_ufw(cx, &mut p, published.as_deref())?;
                c | u | d
            }
        };
        let _ = changed;
        // Open the new SSH port before sshd moves to it: the firewall's handlers run first.
        let (mut fw, rest): (Vec<_>, Vec<_>) = plan
            .handlers
            .drain(..)
            .partition(|h| h.module == "firewall");
        fw.extend(rest);
        plan.handlers = fw;
        Ok(())
    }

    fn verify(&self, cx: &Context) -> Result<Vec<Finding>> {
        if cx.profile.profile.firewall.is_none() || !cx.live() {
            return Ok(Vec::new());
        }
        let backend = resolve_backend(cx);
        if cannot_act(cx, backend).is_some() {
            return Ok(Vec::new());
        }
        let (cmd, ok): (Cmd, fn(&str) -> bool) = match backend {
            Backend::Nftables => (
                Cmd::in_root("/usr/sbin/nft", &["list", "table", "inet", "bollwerk"]),
                |o| o.contains("table inet bollwerk"),
            ),
            Backend::Ufw => (Cmd::in_root("/usr/sbin/ufw", &["status"]), |o| {
                o.contains("Status: active")
            }),
        };
        let out = cx.runner.run(&cx.root, &cmd)?;
        if out.success() && ok(&out.stdout) {
            Ok(Vec::new())
        } else {
            Ok(vec![Finding {
                module: "firewall",
                message: format!(
                    "`{}` does not show the ruleset: {}",
                    cmd.display(),
                    out.combined()
                ),
            }])
        }
    }
}

fn join(v: &[u16]) -> String {
    v.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(toml_text: &str) -> FirewallSection {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn ssh_rules_come_first_follow_ssh_from_and_keep_old_ports() {
        let s = section(
            "allow = [\"443/tcp\", \"ssh\", { port = \"5432/tcp\", from = \"10.0.0.0/8\" }]\nlimit = [\"ssh\"]\nssh_from = [\"198.51.100.0/24\", \"2001:db8::/32\"]\n",
        );
        let ssh = SshPorts {
            wanted: vec![2222],
            transition: vec![22],
        };
        let r = build_rules(&s, Some(&ssh));
        let ssh_rules: Vec<_> = r.iter().filter(|r| r.lo == 22 || r.lo == 2222).collect();
        assert_eq!(ssh_rules.len(), 4, "two ports x two admin networks: {r:?}");
        assert!(ssh_rules.iter().all(|r| r.from.is_some()));
        assert!(
            r.iter().any(|r| r.lo == 2222 && r.limit),
            "the new port is rate-limited"
        );
        assert!(
            r.iter()
                .any(|r| r.lo == 22 && !r.limit && r.comment == UFW_TRANSITION_COMMENT),
            "the old port stays open, marked: {r:?}"
        );
        assert!(
            r[..4].iter().all(|r| r.lo == 22 || r.lo == 2222),
            "SSH first: {r:?}"
        );
        assert!(r.iter().any(|r| r.lo == 443 && r.from.is_none()));
        assert!(r.iter().any(|r| {
            r.lo == 5432
                && r.from
                    .as_ref()
                    .is_some_and(|f| f.to_string() == "10.0.0.0/8")
        }));
        // Without ssh_from: open from anywhere; no sshd: no SSH rule at all.
        let s = section("allow = [\"443/tcp\", \"443/tcp\"]\n");
        let r = build_rules(
            &s,
            Some(&SshPorts {
                wanted: vec![22],
                transition: vec![],
            }),
        );
        assert_eq!(r.len(), 2, "duplicates dropped: {r:?}");
        assert!(r[0].from.is_none() && r[0].lo == 22);
        assert_eq!(build_rules(&s, None).len(), 1);
    }

    #[test]
    fn listen_addresses_with_ports_count() {
        let mut eff = std::collections::BTreeMap::new();
        eff.insert("port".to_string(), vec!["22".to_string()]);
        eff.insert(
            "listenaddress".to_string(),
            vec![
                "0.0.0.0:2200".into(),
                "[::]:2201".into(),
                "192.0.2.1".into(),
                "::1".into(),
            ],
        );
        assert_eq!(ports_of(&eff), vec![22, 2200, 2201]);
        assert_eq!(ports_of(&std::collections::BTreeMap::new()), vec![22]);
    }
}
