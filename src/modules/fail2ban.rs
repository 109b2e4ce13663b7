//! fail2ban: the drop-in `etc/fail2ban/jail.d/bollwerk.local`, with jails fitted to the host.
//!
//! * Log source per jail: a log file that exists is read with the file backend (Ubuntu 22.04
//!   with rsyslog's `/var/log/auth.log`); a syslog file that does not exist (Debian 12 has no
//!   `auth.log`) means the journal (`backend = systemd`, which needs python3-systemd).
//! * A jail whose service or log is absent (no nginx) is skipped with a note: one missing log
//!   stops the whole fail2ban service. Jails enabled by other files whose log is missing are
//!   disabled in the drop-in for the same reason.
//! * The sshd jail follows the SSH port(s); the ban action follows the firewall backend
//!   (`nftables-multiport` / `ufw`).
//! * Candidates are checked with the real `fail2ban-client -t` on a copy of the configuration
//!   before they are activated.

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Finding, Level, Plan, Planner, Staged, Validator, Visibility};
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::modules::Module;
use crate::modules::firewall::{self, Backend};
use crate::modules::netcommon::{self, Cidr};
use crate::modules::users::MANAGED_HEADER;
use crate::profile::types::Duration;
use crate::profile::{Layer, ProfileError};
use crate::root::{Entry, Perms, RelPath};

/// The drop-in bollwerk owns.
pub const DROPIN: &str = "etc/fail2ban/jail.d/bollwerk.local";
const CONF_DIR: &str = "etc/fail2ban";

/// A jail name (`sshd`, `nginx-http-auth`).
pub type JailName = String;

/// `[fail2ban]`: brute-force protection. Unset keys are not managed (fail2ban's defaults).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fail2banSection {
    /// Jails to enable (names from fail2ban's jail.conf), default ["sshd"]. A jail whose
    /// service or log is absent on the host is skipped with a note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jails: Option<Vec<JailName>>,
    /// How long a ban lasts ("1h").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bantime: Option<Duration>,
    /// The window in which `maxretry` failures lead to a ban ("10m").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findtime: Option<Duration>,
    /// Failures within `findtime` that lead to a ban.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxretry: Option<u32>,
    /// Longer bans for repeat offenders (`bantime.increment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bantime_increment: Option<bool>,
    /// Addresses and networks never banned (loopback is always added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignoreip: Option<Vec<Cidr>>,
    /// nginx runs in a Docker container (issue 14): where the nginx-* jails read its log, and
    /// bans go to the forward path (published ports never reach the input chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nginx_container: Option<NginxContainer>,
}

/// `[fail2ban.nginx_container]`: the log of an nginx running in a container — files bind-mounted
/// to the host, or the journal (Docker's journald log driver). Exactly one of the two.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NginxContainer {
    /// Host path of nginx's error log in a bind mount ("/var/log/app/nginx/error.log").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_log: Option<crate::profile::types::AbsPath>,
    /// Host path of nginx's access log in a bind mount (for nginx-bad-request, nginx-botsearch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<crate::profile::types::AbsPath>,
    /// Container name whose output the journald log driver writes (`CONTAINER_NAME=` in the
    /// journal; needs `[docker] log_driver = "journald"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
}

impl Fail2banSection {
    fn jail_names(&self) -> Vec<String> {
        self.jails.clone().unwrap_or_else(|| vec!["sshd".into()])
    }
}

/// Checks of `[fail2ban]` a single key's type cannot express.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(s: &Fail2banSection, layers: &[Layer]) -> Result<(), ProfileError> {
    let err = |key: &str, msg: String, hint: &str| {
        Err(crate::profile::error_at(layers, &["fail2ban", key], msg).with_hint(hint.to_string()))
    };
    for j in s.jails.iter().flatten() {
        if j.is_empty()
            || !j
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return err(
                "jails",
                format!("jail name {j:?} is not a fail2ban jail name"),
                "use names from /etc/fail2ban/jail.conf such as \"sshd\" or \"nginx-http-auth\"",
            );
        }
    }
    if let Some(n) = &s.nginx_container {
        let files = n.error_log.is_some() || n.access_log.is_some();
        if files == n.journal.is_some() {
            return err(
                "nginx_container",
                "nginx_container needs either log files (error_log/access_log) or journal, not both or none".into(),
                "bind-mounted logs: error_log = \"/var/log/app/nginx/error.log\"; journald log driver: journal = \"nginx\"",
            );
        }
        if let Some(j) = &n.journal
            && (j.is_empty()
                || j.len() > 128
                || !j
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)))
        {
            return err(
                "nginx_container",
                format!("journal {j:?} is not a container name"),
                "the container's name as `docker ps` shows it",
            );
        }
    }
    if s.maxretry == Some(0) {
        return err(
            "maxretry",
            "maxretry = 0 bans on the first packet".into(),
            "use 3-10",
        );
    }
    for (k, d) in [("bantime", s.bantime), ("findtime", s.findtime)] {
        if d.is_some_and(|d| d.secs() == 0) {
            return err(
                k,
                format!("{k} must be at least one second"),
                "e.g. \"10m\" or \"1h\"",
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reading fail2ban's configuration
// ---------------------------------------------------------------------------------------------

/// fail2ban's configuration as read by its own rules: sections of keys, later files override,
/// values may continue on indented lines, `%(name)s` refers to the section or `[DEFAULT]`.
#[derive(Debug, Default, Clone)]
pub struct F2bConfig {
    /// Section → key → raw value.
    pub sections: BTreeMap<String, BTreeMap<String, String>>,
}

impl F2bConfig {
    /// Merges one file's text into the configuration.
    pub fn merge(&mut self, text: &str) {
        let mut section = String::new();
        let mut last: Option<String> = None;
        for line in text.lines() {
            let t = line.trim();
            if t.starts_with('#') || t.starts_with(';') {
                continue;
            }
            if t.is_empty() {
                last = None;
                continue;
            }
            if line.starts_with([' ', '\t']) {
                if let Some(k) = &last
                    && let Some(v) = self.sections.get_mut(&section).and_then(|s| s.get_mut(k))
                {
                    v.push('\n');
                    v.push_str(t);
                }
                continue;
            }
            if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                section = name.trim().to_string();
                last = None;
                continue;
            }
            if let Some((k, v)) = t.split_once(['=', ':']) {
                let k = k.trim().to_string();
                self.sections
                    .entry(section.clone())
                    .or_default()
                    .insert(k.clone(), v.trim().to_string());
                last = Some(k);
            }
        }
    }

    /// A key of a section (falling back to `[DEFAULT]`), interpolated.
    pub fn get(&self, section: &str, key: &str) -> Option<String> {
        let raw = self
            .sections
            .get(section)
            .and_then(|s| s.get(key))
            .or_else(|| self.sections.get("DEFAULT").and_then(|s| s.get(key)))?;
        Some(self.interpolate(section, raw, 0))
    }

    fn interpolate(&self, section: &str, v: &str, depth: usize) -> String {
        if depth > 10 || !v.contains("%(") {
            return v.to_string();
        }
        let mut out = String::new();
        let mut rest = v;
        while let Some(i) = rest.find("%(") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let Some(end) = after.find(")s") else {
                out.push_str(&rest[i..]);
                return out;
            };
            let name = &after[..end];
            let value = if name == "__name__" {
                section.to_string()
            } else {
                let (sec, key) = match name.split_once('/') {
                    Some(("default", k)) | Some(("known", k)) => ("DEFAULT", k),
                    _ => (section, name),
                };
                self.sections
                    .get(sec)
                    .and_then(|s| s.get(key))
                    .or_else(|| self.sections.get("DEFAULT").and_then(|s| s.get(key)))
                    .map(|r| self.interpolate(section, r, depth + 1))
                    .unwrap_or_default()
            };
            out.push_str(&value);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        out
    }

    /// True when a section enables its jail.
    pub fn enabled(&self, section: &str) -> bool {
        self.sections
            .get(section)
            .and_then(|s| s.get("enabled"))
            .is_some_and(|v| matches!(v.trim(), "true" | "yes" | "1" | "on"))
    }
}

/// Reads the root's fail2ban configuration in fail2ban's order, without bollwerk's drop-in.
///
/// # Errors
/// When a file cannot be read.
pub fn read_config(cx: &Context) -> Result<F2bConfig> {
    let mut c = F2bConfig::default();
    let read = |rel: &str| -> Result<Option<String>> {
        cx.root
            .read_string(&RelPath::new(&format!("{CONF_DIR}/{rel}")).map_err(Error::Runtime)?)
    };
    let paths = if cx.facts.os.is_debian_family() || cx.facts.os.id.is_empty() {
        "paths-debian.conf"
    } else {
        "paths-common.conf"
    };
    for f in ["paths-common.conf", paths, "jail.conf"] {
        if let Some(t) = read(f)? {
            c.merge(&t);
        }
    }
    let dir = RelPath::lit("etc/fail2ban/jail.d");
    let mut names = cx.root.list_dir(&dir)?;
    names.sort();
    for n in names.iter().filter(|n| n.ends_with(".conf")) {
        if let Some(t) = read(&format!("jail.d/{n}"))? {
            c.merge(&t);
        }
    }
    if let Some(t) = read("jail.local")? {
        c.merge(&t);
    }
    for n in names
        .iter()
        .filter(|n| n.ends_with(".local") && n.as_str() != "bollwerk.local")
    {
        if let Some(t) = read(&format!("jail.d/{n}"))? {
            c.merge(&t);
        }
    }
    Ok(c)
}

// ---------------------------------------------------------------------------------------------
// Deciding the jails
// ---------------------------------------------------------------------------------------------

/// Syslog files that systemd-journald holds when rsyslog does not write them.
const SYSLOG_FILES: &[&str] = &[
    "/var/log/auth.log",
    "/var/log/syslog",
    "/var/log/messages",
    "/var/log/mail.log",
    "/var/log/mail.warn",
    "/var/log/daemon.log",
    "/var/log/user.log",
];

/// Programs whose absence means a journal-backed jail has nothing to watch.
const JAIL_SERVICES: &[(&str, &str)] = &[
    ("sshd", "usr/sbin/sshd"),
    ("dropbear", "usr/sbin/dropbear"),
    ("postfix", "usr/sbin/postfix"),
    ("dovecot", "usr/sbin/dovecot"),
    ("proftpd", "usr/sbin/proftpd"),
    ("pure-ftpd", "usr/sbin/pure-ftpd"),
];

/// Where a jail reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The systemd journal.
    Journal,
    /// Log files (paths as configured).
    Files(Vec<String>),
}

/// A jail bollwerk writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jail {
    /// Name.
    pub name: String,
    /// Enabled, or disabled because it would stop fail2ban.
    pub enabled: bool,
    /// Log source (when enabled).
    pub source: Source,
    /// Port override (the sshd jail follows sshd).
    pub port: Option<String>,
    /// Old SSH ports still watched during a port move.
    pub old_ports: Vec<u16>,
    /// Why it is written this way (comment in the file).
    pub why: String,
    /// More lines for the jail (containerised nginx: its log and a forward-path ban action).
    pub extra: Vec<String>,
}

/// The result of fitting the jails to the host.
#[derive(Debug, Default)]
pub struct Fitted {
    /// Jails to write.
    pub jails: Vec<Jail>,
    /// Skipped jails with the reason.
    pub skipped: Vec<(String, String)>,
    /// Log files to create because fail2ban writes them itself (its own log, for recidive).
    pub create_logs: Vec<String>,
}

fn glob_exists(cx: &Context, pattern: &str) -> bool {
    let Some((dir, name)) = pattern.rsplit_once('/') else {
        return false;
    };
    let Ok(d) = RelPath::new(dir) else {
        return false;
    };
    if !name.contains(['*', '?', '[']) {
        return d.join(name).map(|p| cx.root.exists(&p)).unwrap_or(false);
    }
    cx.root
        .list_dir(&d)
        .map(|names| {
            names
                .iter()
                .any(|n| crate::sshd_config::glob_match(name, n))
        })
        .unwrap_or(false)
}

/// fail2ban's own log file (`logtarget` in fail2ban.conf), when it is a file.
fn own_log(cx: &Context) -> Option<String> {
    let mut c = F2bConfig::default();
    for f in ["etc/fail2ban/fail2ban.conf", "etc/fail2ban/fail2ban.local"] {
        if let Ok(Some(t)) = cx.root.read_string(&RelPath::new(f).ok()?) {
            c.merge(&t);
        }
    }
    c.get("Definition", "logtarget")
        .map(|v| v.trim().to_string())
        .filter(|v| v.starts_with('/'))
}

/// Fits the profile's jails to the host.
///
/// # Errors
/// [`Error::Profile`] for a jail fail2ban does not know; I/O errors.
pub fn fit(cx: &Context, s: &Fail2banSection, plan: &Plan) -> Result<Fitted> {
    let cfg = read_config(cx)?;
    let own = own_log(cx);
    let mut out = Fitted::default();
    let ssh = firewall::ssh_ports(cx, plan)?;
    let ssh_ports = ssh
        .as_ref()
        .map(|s| {
            s.all()
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let wanted = s.jail_names();
    for name in &wanted {
        if !cfg.sections.contains_key(name) {
            return Err(Error::Profile(
                crate::profile::error_at(
                    &cx.profile.layers,
                    &["fail2ban", "jails"],
                    format!("fail2ban on this host has no jail `{name}` (not in /etc/fail2ban/jail.conf)"),
                )
                .with_hint(match crate::profile::did_you_mean(
                    name,
                    cfg.sections.keys().map(String::as_str),
                ) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => "use a jail name from /etc/fail2ban/jail.conf".into(),
                }),
            ));
        }
        if let Some((_, bin)) = JAIL_SERVICES.iter().find(|(j, _)| j == name)
            && !cx.root.exists(&RelPath::lit(bin))
        {
            out.skipped
                .push((name.clone(), format!("/{bin} is not installed")));
            continue;
        }
        if let (Some(n), true) = (&s.nginx_container, name.starts_with("nginx")) {
            match container_nginx(cx, &cfg, name, n) {
                Ok(j) => out.jails.push(j),
                Err(reason) => out.skipped.push((name.clone(), reason)),
            }
            continue;
        }
        let port = if name == "sshd" && !ssh_ports.is_empty() {
            Some(ssh_ports.clone())
        } else {
            None
        };
        match log_source(cx, &cfg, name, own.as_deref()) {
            Ok((source, why, create)) => {
                out.create_logs.extend(create);
                out.jails.push(Jail {
                    name: name.clone(),
                    enabled: true,
                    source,
                    port,
                    old_ports: match (&ssh, name.as_str()) {
                        (Some(s), "sshd") => s.transition.clone(),
                        _ => Vec::new(),
                    },
                    why,
                    extra: Vec::new(),
                })
            }
            Err(reason) => out.skipped.push((name.clone(), reason)),
        }
    }
    // Jails other files enable whose logs are missing would stop the whole service.
    for (name, _) in cfg.sections.iter() {
        if name == "DEFAULT" || name == "INCLUDES" || wanted.contains(name) || !cfg.enabled(name) {
            continue;
        }
        let configured_systemd = cfg
            .get(name, "backend")
            .is_some_and(|b| b.trim() == "systemd");
        let missing_service = JAIL_SERVICES
            .iter()
            .find(|(j, _)| j == name)
            .filter(|(_, bin)| !cx.root.exists(&RelPath::lit(bin)))
            .map(|(_, bin)| format!("/{bin} is not installed"));
        let jail = match (missing_service, log_source(cx, &cfg, name, own.as_deref())) {
            (Some(reason), _) | (None, Err(reason)) => Jail {
                name: name.clone(),
                enabled: false,
                source: Source::Journal,
                port: None,
                old_ports: Vec::new(),
                why: format!("enabled elsewhere, but {reason}: it would stop fail2ban"),
                extra: Vec::new(),
            },
            (None, Ok((Source::Journal, why, _))) if !configured_systemd => Jail {
                name: name.clone(),
                enabled: true,
                source: Source::Journal,
                port: None,
                old_ports: Vec::new(),
                why: format!("enabled elsewhere; reads {why}"),
                extra: Vec::new(),
            },
            _ => continue,
        };
        out.jails.push(jail);
    }
    Ok(out)
}

/// An nginx jail for nginx in a container: its log from a bind mount or the journal, and bans
/// on the forward path (nftables: a chain hooked on forward before Docker's; ufw/iptables: the
/// DOCKER-USER chain), since published ports never pass the input chain.
fn container_nginx(
    cx: &Context,
    cfg: &F2bConfig,
    name: &str,
    n: &NginxContainer,
) -> std::result::Result<Jail, String> {
    let action = match firewall::resolve_backend(cx) {
        Backend::Nftables => {
            "action = nftables-allports[chain=\"f2b-docker\", chain_hook=\"forward\"]"
        }
        Backend::Ufw => "action = iptables-allports[chain=\"DOCKER-USER\"]",
    };
    let mut extra = Vec::new();
    let (source, why) = match &n.journal {
        Some(c) => {
            extra.push(format!("journalmatch = CONTAINER_NAME={c}"));
            (
                Source::Journal,
                format!("nginx in container {c}: the journal (journald log driver)"),
            )
        }
        None => {
            let stock = cfg.get(name, "logpath").unwrap_or_default();
            let log = if stock.contains("access") {
                n.access_log.as_ref().or(n.error_log.as_ref())
            } else {
                n.error_log.as_ref().or(n.access_log.as_ref())
            }
            .map(|p| p.as_str().to_string())
            .ok_or("nginx_container names no log")?;
            if !glob_exists(cx, log.trim_start_matches('/')) {
                return Err(format!(
                    "no log at {log} (bind-mounted from the nginx container; start it first)"
                ));
            }
            extra.push(format!("logpath = {log}"));
            (
                Source::Files(vec![log.clone()]),
                format!("nginx in a container: bind-mounted log {log}"),
            )
        }
    };
    extra.push(action.to_string());
    Ok(Jail {
        name: name.to_string(),
        enabled: true,
        source,
        port: None,
        old_ports: Vec::new(),
        why: format!("{why}; bans on the forward path (published ports bypass input)"),
        extra,
    })
}

/// Where jail `name` can read its log on this host, or why it cannot.
fn log_source(
    cx: &Context,
    cfg: &F2bConfig,
    name: &str,
    own: Option<&str>,
) -> std::result::Result<(Source, String, Vec<String>), String> {
    let logpath = cfg.get(name, "logpath").unwrap_or_default();
    let paths: Vec<String> = logpath
        .split_whitespace()
        .filter(|p| p.starts_with('/'))
        .map(str::to_string)
        .collect();
    let explicit_systemd = cfg
        .sections
        .get(name)
        .and_then(|s| s.get("backend"))
        .is_some_and(|b| b.trim() == "systemd");
    if explicit_systemd {
        return Ok((
            Source::Journal,
            "the journal (backend = systemd in jail.conf)".into(),
            vec![],
        ));
    }
    if paths.is_empty() {
        return Err("it names no log file".into());
    }
    // fail2ban's own log: described the same way whether it exists yet or not (the text goes
    // into the rendered file, which must not change once the log appears); created when missing.
    if let Some(o) = own
        && paths.iter().any(|p| p == o)
    {
        let create = if glob_exists(cx, o) {
            vec![]
        } else {
            vec![o.to_string()]
        };
        return Ok((
            Source::Files(paths.clone()),
            format!("fail2ban's own log {o}"),
            create,
        ));
    }
    let present: Vec<String> = paths
        .iter()
        .filter(|p| glob_exists(cx, p))
        .cloned()
        .collect();
    if !present.is_empty() {
        return Ok((
            Source::Files(paths.clone()),
            format!("log file {}", present.join(" ")),
            vec![],
        ));
    }
    if paths.iter().all(|p| SYSLOG_FILES.contains(&p.as_str())) {
        return Ok((
            Source::Journal,
            format!(
                "the journal ({} does not exist: no rsyslog)",
                paths.join(" ")
            ),
            vec![],
        ));
    }
    Err(format!("no log at {}", paths.join(" ")))
}

/// Ban actions matching the firewall backend: (banaction, banaction_allports).
pub fn ban_actions(b: Backend) -> (&'static str, &'static str) {
    match b {
        Backend::Nftables => ("nftables-multiport", "nftables-allports"),
        Backend::Ufw => ("ufw", "ufw"),
    }
}

/// Renders the drop-in.
pub fn render(profile_name: &str, s: &Fail2banSection, backend: Backend, jails: &[Jail]) -> String {
    let mut o = format!("{MANAGED_HEADER}\n# Profile: {profile_name}\n\n[DEFAULT]\n");
    if let Some(d) = s.bantime {
        o.push_str(&format!("bantime = {}\n", d.secs()));
    }
    if let Some(d) = s.findtime {
        o.push_str(&format!("findtime = {}\n", d.secs()));
    }
    if let Some(n) = s.maxretry {
        o.push_str(&format!("maxretry = {n}\n"));
    }
    if let Some(b) = s.bantime_increment {
        o.push_str(&format!("bantime.increment = {b}\n"));
    }
    if let Some(ips) = &s.ignoreip {
        let mut all = vec!["127.0.0.1/8".to_string(), "::1".to_string()];
        all.extend(ips.iter().map(|c| c.to_string()));
        o.push_str(&format!("ignoreip = {}\n", all.join(" ")));
    }
    let (ba, baa) = ban_actions(backend);
    o.push_str(&format!(
        "# ban action of the firewall backend ({})\nbanaction = {ba}\nbanaction_allports = {baa}\n",
        match backend {
            Backend::Nftables => "nftables",
            Backend::Ufw => "ufw",
        }
    ));
    for j in jails {
        o.push_str(&format!("\n[{}]\n# {}\n", j.name, j.why));
        if !j.enabled {
            o.push_str("enabled = false\n");
            continue;
        }
        o.push_str("enabled = true\n");
        if !j.old_ports.is_empty() {
            let old: Vec<String> = j.old_ports.iter().map(u16::to_string).collect();
            o.push_str(&format!(
                "{} {}\n",
                firewall::TRANSITION_MARKER,
                old.join(" ")
            ));
        }
        if let Some(p) = &j.port {
            o.push_str(&format!("port = {p}\n"));
        }
        match &j.source {
            Source::Journal => o.push_str("backend = systemd\n"),
            Source::Files(_) => o.push_str("backend = auto\n"),
        }
        for l in &j.extra {
            o.push_str(l);
            o.push('\n');
        }
    }
    o
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// Checks the candidate with the root's own `fail2ban-client -t`, on a copy of
/// `etc/fail2ban` with the candidate in place (logs this run creates are stood in for by
/// empty files in the scratch directory).
#[derive(Debug)]
pub struct Fail2banValidator {
    /// Log files the run creates (not there yet when validating).
    pub created_logs: Vec<String>,
}

/// Copies a directory of the root into the scratch directory, reading through the root's
/// handles (links inside are skipped, as before; nothing is followed on the host).
fn copy_dir(root: &crate::root::Root, src: &RelPath, dst: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dst).map_err(|e| Error::io("creating", dst, e))?;
    for name in root.list_dir(src)? {
        let rel = src.join(&name).map_err(Error::Runtime)?;
        let to = dst.join(&name);
        match root.entry(&rel)? {
            Entry::Dir { .. } => copy_dir(root, &rel, &to)?,
            Entry::File { .. } => {
                if let Some(bytes) = root.read(&rel)? {
                    std::fs::write(&to, bytes).map_err(|e| Error::io("copying", &to, e))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

impl Validator for Fail2banValidator {
    fn describe(&self) -> String {
        "fail2ban-client -t".into()
    }

    fn validate(&self, cx: &Context, staged: &Staged) -> Result<()> {
        let conf_host = staged.dir_host.join("fail2ban");
        let conf_in_root = format!("{}/fail2ban", staged.dir_in_root);
        let src = RelPath::lit(CONF_DIR);
        if cx.root.exists(&src) {
            copy_dir(&cx.root, &src, &conf_host)?;
        }
        let dropin = RelPath::lit(DROPIN);
        let cand = staged
            .files
            .get(&dropin)
            .ok_or_else(|| Error::Runtime("fail2ban candidate was not staged".into()))?;
        let dest = conf_host.join("jail.d/bollwerk.local");
        std::fs::create_dir_all(conf_host.join("jail.d"))
            .map_err(|e| Error::io("creating", conf_host.join("jail.d"), e))?;
        std::fs::copy(staged.host_path(cand), &dest).map_err(|e| Error::io("copying", &dest, e))?;
        if !self.created_logs.is_empty() {
            let mut extra = String::from("# validation only: logs this run creates\n");
            for (i, log) in self.created_logs.iter().enumerate() {
                let stand_in = format!("created-{i}.log");
                std::fs::write(staged.dir_host.join(&stand_in), "")
                    .map_err(|e| Error::io("writing", staged.dir_host.join(&stand_in), e))?;
                extra.push_str(&format!(
                    "# {log}\n[recidive]\nlogpath = {}/{stand_in}\n",
                    staged.dir_in_root
                ));
            }
            let p = conf_host.join("jail.d/zzz-bollwerk-validate.local");
            std::fs::write(&p, extra).map_err(|e| Error::io("writing", &p, e))?;
        }
        let out = cx.runner.run(
            &cx.root,
            &Cmd::in_root("/usr/bin/fail2ban-client", &["-c", &conf_in_root, "-t"]),
        )?;
        if out.success() {
            Ok(())
        } else {
            Err(Error::Validation {
                path: dropin.to_string(),
                validator: self.describe(),
                output: out.combined().replace(&conf_in_root, "/etc/fail2ban"),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The module
// ---------------------------------------------------------------------------------------------

/// The fail2ban module.
pub struct Fail2ban;

impl Module for Fail2ban {
    fn name(&self) -> &'static str {
        "fail2ban"
    }

    fn required_packages(&self, cx: &Context) -> Vec<String> {
        if cx.profile.profile.fail2ban.is_none() {
            return Vec::new();
        }
        let mut p = vec!["fail2ban".to_string()];
        if !cx.root.exists(&RelPath::lit("var/log/auth.log")) {
            p.push("python3-systemd".into());
        }
        if firewall::resolve_backend(cx) == Backend::Nftables {
            p.push("nftables".into());
        }
        p
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(s) = cx.profile.profile.fail2ban.as_ref() else {
            return Ok(());
        };
        let installed = cx.root.exists(&RelPath::lit("usr/bin/fail2ban-client"));
        if !installed && !cx.root.exists(&RelPath::lit("etc/fail2ban/jail.conf")) {
            // Jails are fitted to the filters and logs of the installed fail2ban; without it
            // there is nothing to fit to yet. The packages step installs it and the follow-up
            // run of the same apply writes the jails.
            Planner::new(self.name(), plan).note(
                Level::Info,
                "fail2ban is not installed yet: the packages step installs it, then the jails are fitted and written (follow-up run of the same apply)",
            );
            return Ok(());
        }
        let fitted = fit(cx, s, plan)?;
        let backend = firewall::resolve_backend(cx);
        let mut p = Planner::new(self.name(), plan);
        if !installed {
            p.note(
                Level::Info,
                "fail2ban is not installed yet: the packages step installs it; the jails are validated after it",
            );
        }
        for (j, why) in &fitted.skipped {
            p.note(Level::Info, format!("jail {j} skipped: {why}"));
        }
        for j in fitted.jails.iter().filter(|j| !j.enabled) {
            p.note(
                Level::Warning,
                format!("jail {} disabled: {}", j.name, j.why),
            );
        }
        let enabled: Vec<&Jail> = fitted.jails.iter().filter(|j| j.enabled).collect();
        if enabled.is_empty() {
            p.note(
                Level::Warning,
                "no jail can run on this host: fail2ban protects nothing",
            );
        }
        let journal = enabled.iter().any(|j| j.source == Source::Journal);
        if journal && cx.facts.package("python3-systemd").is_none() {
            p.note(
                Level::Info,
                "the journal backend needs python3-systemd: the packages step installs it",
            );
        }
        let mut changed = false;
        for log in &fitted.create_logs {
            let rel = RelPath::new(log).map_err(Error::Runtime)?;
            let adm = cx.facts.accounts.gid("adm").unwrap_or(0);
            changed |= p.file(
                &cx.root,
                &rel,
                Vec::new(),
                Perms {
                    mode: 0o640,
                    uid: 0,
                    gid: adm,
                },
                format!("create fail2ban's log {log} (the recidive jail reads it)"),
            )?;
        }
        let validator: Arc<dyn Validator> = Arc::new(Fail2banValidator {
            created_logs: fitted.create_logs.clone(),
        });
        changed |= p.file_with(
            &cx.root,
            &RelPath::lit(DROPIN),
            render(&cx.profile.name(), s, backend, &fitted.jails).into_bytes(),
            Perms::root(0o644),
            format!(
                "fail2ban jails: {}",
                enabled
                    .iter()
                    .map(|j| j.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Visibility::Plain,
            Some(validator),
        )?;
        changed |= netcommon::enable_unit(cx, &mut p, "fail2ban.service")?;
        if changed {
            p.handler(Cmd::in_root(
                "/usr/bin/systemctl",
                &["reload-or-restart", "fail2ban.service"],
            ));
        }
        Ok(())
    }

    fn verify(&self, cx: &Context) -> Result<Vec<Finding>> {
        let Some(s) = cx.profile.profile.fail2ban.as_ref() else {
            return Ok(Vec::new());
        };
        if !cx.live() {
            return Ok(Vec::new());
        }
        let fitted = fit(cx, s, &Plan::default())?;
        let out = cx.runner.run(
            &cx.root,
            &Cmd::in_root("/usr/bin/fail2ban-client", &["status"]),
        )?;
        if !out.success() {
            return Ok(vec![Finding {
                module: "fail2ban",
                message: format!("fail2ban is not running: {}", out.combined()),
            }]);
        }
        let list = out
            .stdout
            .lines()
            .find_map(|l| l.split_once("Jail list:").map(|(_, r)| r.to_string()))
            .unwrap_or_default();
        let running: Vec<&str> = list
            .split([',', ' ', '\t'])
            .filter(|s| !s.is_empty())
            .collect();
        Ok(fitted
            .jails
            .iter()
            .filter(|j| j.enabled && !running.contains(&j.name.as_str()))
            .map(|j| Finding {
                module: "fail2ban",
                message: format!("jail {} is not running (fail2ban-client status)", j.name),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reading_and_interpolation() {
        let mut c = F2bConfig::default();
        c.merge("[DEFAULT]\ndefault_backend = %(default/backend)s\nsyslog_authpriv = /var/log/auth.log\nsshd_log = %(syslog_authpriv)s\nsshd_backend = %(default_backend)s\n");
        c.merge("[DEFAULT]\nbackend = auto\n# c\n[sshd]\nport    = ssh\nlogpath = %(sshd_log)s\nbackend = %(sshd_backend)s\n\n[suhosin]\nlogpath = %(a)s\n          /var/log/b.log\n");
        assert_eq!(
            c.get("sshd", "logpath").as_deref(),
            Some("/var/log/auth.log")
        );
        assert_eq!(c.get("sshd", "backend").as_deref(), Some("auto"));
        assert_eq!(
            c.get("suhosin", "logpath").as_deref(),
            Some("\n/var/log/b.log")
        );
        c.merge("[sshd]\nenabled = true\n");
        assert!(c.enabled("sshd"));
        assert!(!c.enabled("suhosin"));
    }
}
