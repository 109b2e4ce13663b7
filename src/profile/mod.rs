//! Profiles: loading TOML (a path or a built-in name), the `extends` chain and its merge rules,
//! strict validation with file:line:column errors and hints, and the JSON Schema.
//!
//! Merge rules (documented in `docs/profile.md`):
//! - tables merge key by key, the extending profile wins on every key it sets;
//! - arrays of tables with an identity merge by it: `users` and `groups` by `name` (an entry of
//!   the extending profile is merged into the base entry of the same name, new ones are appended);
//! - inside a user, `ssh_keys` and `ssh_keys_from` are unions (base first, duplicates dropped);
//! - `packages.install` and `packages.remove` are unions too, and a package the extending
//!   profile lists on one side leaves the base's other side (so `extends = "cis-level1-server"`
//!   plus `install = ["nginx"]` keeps the packages level 1 needs);
//! - every other array is replaced as a whole.

pub mod reference;
pub mod types;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::modules::host::HostSection;
use crate::modules::sshd::SshSection;
use crate::modules::users::{GroupSpec, UserSpec};

/// A complete, merged and validated profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "bollwerk profile")]
pub struct Profile {
    /// Profile this one builds on: a built-in name (`baseline`) or a path relative to this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// Free text shown in `bollwerk profiles`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Host identity: host name, time zone, root password.
    #[serde(default)]
    pub host: HostSection,
    /// Local groups to create (besides the users' own groups).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupSpec>,
    /// Local users with their groups, sudo rights and SSH keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserSpec>,
    /// OpenSSH server hardening. Absent: sshd is not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshSection>,
    // -- network (issue 3): firewall, fail2ban, sysctl --
    /// Kernel parameters (`etc/sysctl.d/60-bollwerk.conf`). Absent: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sysctl: Option<crate::modules::sysctl::SysctlSection>,
    /// Host firewall (nftables or ufw). Absent: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<crate::modules::firewall::FirewallSection>,
    /// fail2ban jails (`etc/fail2ban/jail.d/bollwerk.local`). Absent: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail2ban: Option<crate::modules::fail2ban::Fail2banSection>,
    // -- services (issue 4): packages, updates, postgres, logs, journald, files --
    /// Packages to install and remove (apt). Packages other sections need are installed
    /// without being listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<crate::modules::packages::PackagesSection>,
    /// Files holding secrets (`.env`): mode and owner only, contents never shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<crate::modules::files::FileSpec>,
    /// Log directories and their rotation (`etc/logrotate.d/bollwerk-<name>`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<crate::modules::logs::LogSpec>,
    /// systemd-journald settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journald: Option<crate::modules::logs::JournaldSection>,
    /// Unattended upgrades and their maintenance window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updates: Option<crate::modules::updates::UpdatesSection>,
    /// PostgreSQL tuning (PGTune, cgroup-aware) and hardening.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<crate::modules::postgres::PostgresSection>,
    // -- audit (issue 5) --
    /// Compliance audit settings: scan roots, excluded checks, threshold, audit after apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<crate::audit::profile::AuditSection>,
    // -- firstboot (issue 6) --
    /// First boot: files and commands from instance user-data (`write_files`, `runcmd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firstboot: Option<crate::modules::firstboot::FirstbootSection>,
    // -- OS hardening (issue 7) --
    /// sudo defaults: `use_pty`, `logfile`, `timestamp_timeout` (drop-in
    /// `etc/sudoers.d/bollwerk-defaults`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo: Option<crate::modules::hardening::sudo::SudoSection>,
    /// Login banners: /etc/issue, /etc/issue.net, /etc/motd and the update-motd scripts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banners: Option<crate::modules::hardening::banners::BannersSection>,
    /// Kernel modules that must not be loaded (etc/modprobe.d drop-in); not applicable in containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_modules: Option<crate::modules::hardening::kernel_modules::KernelModulesSection>,
    /// cron and at: allow lists and the modes of cron's files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<crate::modules::hardening::cron::CronSection>,
    /// Core dumps: pam_limits and systemd-coredump drop-ins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coredump: Option<crate::modules::hardening::coredump::CoredumpSection>,
    /// /tmp as a tmpfs and the mount options of /tmp and /dev/shm; not applicable in containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmp: Option<crate::modules::hardening::tmp::TmpSection>,
    /// Time synchronisation: one daemon (timesyncd or chrony) with the profile's servers; not applicable in containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<crate::modules::hardening::time::TimeSection>,
    /// Account policy: password ageing, hashing, umask, shell timeout, system accounts, root's PATH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<crate::modules::hardening::accounts::AccountsSection>,
    /// The PAM stack: password quality, lockout, history, nullok, su restricted to a group (pam-auth-update profiles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pam: Option<crate::modules::hardening::pam::PamSection>,
    /// AppArmor: service enabled, profiles in enforce or complain mode, kernel command line; not applicable in containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apparmor: Option<crate::modules::hardening::apparmor::AppArmorSection>,
    /// File integrity (opt-in): AIDE with its database built by a timer after boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<crate::modules::hardening::integrity::IntegritySection>,
    /// Maintenance tools: needrestart (listing only), debsums, apt-show-versions, apt-listchanges, a weekly malware scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<crate::modules::hardening::tools::ToolsSection>,
    /// Log file access: rsyslog's file creation mode and the modes of files in /var/log (journald: see [journald]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<crate::modules::hardening::logging::LoggingSection>,
    /// The Linux audit daemon with the CIS 6.2 rules, log retention and audit=1 on the kernel
    /// command line (CIS level 2); not applicable in containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auditd: Option<crate::modules::hardening::auditd::AuditdSection>,
    /// Process accounting (acct) and system activity data (sysstat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounting: Option<crate::modules::hardening::accounting::AccountingSection>,
    /// Extra apt repositories (`[[apt.sources]]`), each a deb822 file with its own `signed-by`
    /// keyring. Absent: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apt: Option<crate::modules::apt_sources::AptSection>,
    /// Root file system growth, a swap file and extra mounts. Absent: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<crate::modules::storage::StorageSection>,
    // -- docker (issue 14) --
    /// Docker daemon hardening (`/etc/docker/daemon.json`, merged) and the published container
    /// ports the firewall lets in. Absent: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<crate::modules::docker::DockerSection>,
}

/// Arrays of tables merged by an identity key: (array path, identity key).
const KEYED_ARRAYS: &[(&str, &str)] = &[
    ("users", "name"),
    ("groups", "name"),
    // -- services (issue 4) --
    ("files", "path"),
    ("logs", "name"),
    // -- firstboot (issue 6) --
    ("firstboot.write_files", "path"),
    // -- day one (issue 13) --
    ("apt.sources", "name"),
    // -- fleet (issue 15) --
    ("audit.checks", "id"),
];
/// Arrays merged as a union (path with `[]` standing for "any element of a keyed array").
const UNION_ARRAYS: &[&str] = &["users[].ssh_keys", "users[].ssh_keys_from"];

/// The built-in profiles, embedded from `profiles/`.
pub const BUILTIN: &[(&str, &str)] = &[
    ("baseline", include_str!("../../profiles/baseline.toml")),
    // -- issue 14: webapp-docker --
    (
        "webapp-docker",
        include_str!("../../profiles/webapp-docker.toml"),
    ),
    // -- issue 4: webapp-postgres --
    (
        "webapp-postgres",
        include_str!("../../profiles/webapp-postgres.toml"),
    ),
    // -- issue 7: cis-level1-server --
    (
        "cis-level1-server",
        include_str!("../../profiles/cis-level1-server.toml"),
    ),
    // -- issue 12: cis-level2-server --
    (
        "cis-level2-server",
        include_str!("../../profiles/cis-level2-server.toml"),
    ),
];

/// Where a profile's text came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Source {
    /// A built-in profile.
    Builtin(String),
    /// A file.
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Builtin(n) => write!(f, "profiles/{n}.toml (built-in)"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A profile error, with position, key and hint (boxed: errors stay small on the happy path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError(Box<ProfileErrorDetail>);

impl std::ops::Deref for ProfileError {
    type Target = ProfileErrorDetail;
    fn deref(&self) -> &ProfileErrorDetail {
        &self.0
    }
}

impl std::ops::DerefMut for ProfileError {
    fn deref_mut(&mut self) -> &mut ProfileErrorDetail {
        &mut self.0
    }
}

/// The details of a [`ProfileError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileErrorDetail {
    /// The file (or built-in) the error is in.
    pub source: String,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// Dotted key path (`ssh.port`, `users[0].ssh_keys[1]`), when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
    /// The offending source line, for context.
    pub excerpt: Option<String>,
}

impl std::fmt::Display for ProfileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.source)?;
        if let Some((l, c)) = self.position {
            write!(f, ":{l}:{c}")?;
        }
        write!(f, ": ")?;
        if let Some(k) = &self.key {
            write!(f, "`{k}`: ")?;
        }
        write!(f, "{}", self.message)?;
        if let (Some(ex), Some((l, c))) = (&self.excerpt, self.position) {
            let w = l.to_string().len();
            write!(
                f,
                "\n {:w$} |\n {l} | {ex}\n {:w$} | {:>c$}",
                "",
                "",
                "^",
                w = w,
                c = c
            )?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProfileError {}

impl ProfileError {
    fn new(source: &Source, message: impl Into<String>) -> ProfileError {
        ProfileError(Box::new(ProfileErrorDetail {
            source: source.to_string(),
            position: None,
            key: None,
            message: message.into(),
            hint: None,
            excerpt: None,
        }))
    }

    fn at(mut self, text: &str, offset: usize) -> ProfileError {
        let (line, col) = line_col(text, offset);
        self.position = Some((line, col));
        self.excerpt = text.lines().nth(line - 1).map(mask_secret_line);
        self
    }

    /// An error at a known position of a source that is not a profile file (e.g. user-data
    /// converted to a profile), for callers outside this module.
    pub fn located(
        source: &str,
        position: Option<(usize, usize)>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> ProfileError {
        ProfileError(Box::new(ProfileErrorDetail {
            source: source.to_string(),
            position,
            key,
            message: message.into(),
            hint: None,
            excerpt: None,
        }))
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> ProfileError {
        self.hint = Some(hint.into());
        self
    }
}

/// Keys whose values are secrets: an error excerpt never shows them.
pub const SECRET_KEYS: &[&str] = &["password_hash", "root_password_hash", "content", "contents"];

/// Largest profile text accepted (1 MiB; the built-in profiles are a few KiB).
pub const MAX_PROFILE_BYTES: usize = 1 << 20;

/// An excerpt line for an error message, with the value of a secret key (`password_hash =
/// "…"`, a file's `content`) replaced, and control characters escaped.
fn mask_secret_line(line: &str) -> String {
    let t = line.trim_start();
    let key_end = t
        .find(|c: char| c == '=' || c.is_whitespace())
        .unwrap_or(t.len());
    let key = t[..key_end].trim_matches('"');
    let leaf = key.rsplit('.').next().unwrap_or(key);
    if SECRET_KEYS.contains(&leaf) && t[key_end..].trim_start().starts_with('=') {
        let indent = &line[..line.len() - t.len()];
        return format!("{indent}{} = <secret, not shown>", &t[..key_end]);
    }
    line.chars()
        .take(200)
        .flat_map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_debug().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// One file of an `extends` chain, parsed and checked on its own.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Where it came from.
    pub source: Source,
    /// Its text.
    pub text: String,
    /// Its TOML table.
    pub table: toml::Table,
}

/// A loaded profile: the merged result plus the chain it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The merged, validated profile.
    pub profile: Profile,
    /// The chain, base first.
    pub layers: Vec<Layer>,
    /// sha256 of the merged profile (as canonical JSON), recorded in run journals.
    pub digest: String,
}

/// How the effective profile first boot stores begins; the name it was applied under follows,
/// up to `, digest `.
pub const STORED_PROFILE_HEADER: &str =
    "# The effective profile of this host, stored by `bollwerk firstboot` (profile ";

impl Loaded {
    /// A short name for reports and managed files' headers: the last layer's source. The
    /// effective profile first boot stored keeps the name it was first applied under, so
    /// re-applying it does not rewrite every managed file's `# Profile:` line.
    pub fn name(&self) -> String {
        let Some(l) = self.layers.last() else {
            return String::new();
        };
        l.text
            .strip_prefix(STORED_PROFILE_HEADER)
            .and_then(|rest| rest.split_once(", digest "))
            .map(|(name, _)| name)
            .filter(|name| !name.is_empty() && !name.contains('\n'))
            .map_or_else(|| l.source.to_string(), str::to_string)
    }
}

/// Finds a built-in profile by name.
pub fn builtin(name: &str) -> Option<&'static str> {
    BUILTIN.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

fn looks_like_path(spec: &str) -> bool {
    spec.contains('/') || spec.ends_with(".toml")
}

/// Loads a profile given as a path or a built-in name, resolving `extends`.
///
/// # Errors
/// A [`ProfileError`] for unreadable files, TOML syntax errors, unknown keys, invalid values,
/// `extends` cycles and semantic errors, each with file position and hint.
pub fn load(spec: &str) -> Result<Loaded, ProfileError> {
    load_chain(None, Some(spec.to_string()), None)
}

/// Loads a profile from text that is not a file (instance user-data, a profile generated from
/// `#cloud-config`), named `name` in messages (`user-data:3:1: …`). Without an `extends` key the
/// text extends `default_extends` (e.g. `baseline`); relative `extends` paths are resolved from
/// the current directory.
///
/// # Errors
/// As [`load`].
pub fn load_text(
    name: &str,
    text: &str,
    default_extends: Option<&str>,
) -> Result<Loaded, ProfileError> {
    load_chain(
        Some((Source::File(PathBuf::from(name)), text.to_string())),
        None,
        default_extends,
    )
}

fn load_chain(
    first: Option<(Source, String)>,
    spec: Option<String>,
    default_extends: Option<&str>,
) -> Result<Loaded, ProfileError> {
    let mut layers: Vec<Layer> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut first = first;
    let mut next = spec.map(|s| (s, None::<PathBuf>));
    while first.is_some() || next.is_some() {
        let (source, text) = match first.take() {
            Some(f) => f,
            None => {
                let Some((spec, base_dir)) = next.take() else {
                    break;
                };
                if layers.len() >= 8 {
                    return Err(ProfileError::new(
                        &Source::Builtin(spec),
                        "`extends` chain is deeper than 8 profiles",
                    ));
                }
                read_source(&spec, base_dir.as_deref(), layers.last())?
            }
        };
        let ident = source.to_string();
        if !seen.insert(ident.clone()) {
            return Err(
                ProfileError::new(&source, "`extends` forms a cycle").with_hint(
                    "remove the `extends` line that points back to a profile in the chain",
                ),
            );
        }
        let layer = parse_layer(source, text)?;
        if let Some(ext) = layer.table.get("extends").and_then(|v| v.as_str()) {
            let dir = match &layer.source {
                Source::File(p) => p.parent().map(Path::to_path_buf),
                Source::Builtin(_) => None,
            };
            next = Some((ext.to_string(), dir));
        } else if layers.is_empty()
            && let Some(d) = default_extends
        {
            next = Some((d.to_string(), None));
        }
        layers.push(layer);
    }
    layers.reverse();
    let mut merged = toml::Table::new();
    for layer in &layers {
        merge_table(&mut merged, layer.table.clone(), "");
    }
    merged.remove("extends");
    let profile: Profile =
        toml::Value::Table(merged.clone())
            .try_into()
            .map_err(|e: toml::de::Error| {
                let last = layers
                    .last()
                    .map(|l| l.source.clone())
                    .unwrap_or(Source::Builtin("?".into()));
                ProfileError::new(&last, format!("merged profile is invalid: {}", e.message()))
            })?;
    let profile = Profile {
        extends: layers
            .last()
            .and_then(|l| l.table.get("extends"))
            .and_then(|v| v.as_str())
            .map(str::to_string),
        ..profile
    };
    check_semantics(&profile, &layers)?;
    let digest = crate::root::sha256_hex(
        serde_json::to_string(&profile)
            .unwrap_or_default()
            .as_bytes(),
    );
    Ok(Loaded {
        profile,
        layers,
        digest,
    })
}

fn read_source(
    spec: &str,
    base_dir: Option<&Path>,
    child: Option<&Layer>,
) -> Result<(Source, String), ProfileError> {
    if !looks_like_path(spec) {
        if let Some(text) = builtin(spec) {
            return Ok((Source::Builtin(spec.to_string()), text.to_string()));
        }
        let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
        let mut err = match child {
            Some(c) => locate_err(
                c,
                &["extends"],
                format!("unknown built-in profile `{spec}`"),
            ),
            None => ProfileError::new(
                &Source::Builtin(spec.to_string()),
                format!("unknown built-in profile `{spec}`"),
            ),
        };
        let hint = match did_you_mean(spec, names.iter().copied()) {
            Some(s) => format!(
                "did you mean `{s}`? built-in profiles: {}; a file path needs a `/` or `.toml`",
                names.join(", ")
            ),
            None => format!(
                "built-in profiles: {}; a file path needs a `/` or `.toml`",
                names.join(", ")
            ),
        };
        err.hint = Some(hint);
        return Err(err);
    }
    let path = match base_dir {
        Some(d) if Path::new(spec).is_relative() => d.join(spec),
        _ => PathBuf::from(spec),
    };
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok((Source::File(path), t)),
        Err(e) => {
            let msg = format!("cannot read profile {}: {e}", path.display());
            Err(match child {
                Some(c) => locate_err(c, &["extends"], msg),
                None => ProfileError::new(&Source::File(path), format!("cannot read profile: {e}")),
            })
        }
    }
}

/// Parses one layer and checks it against the profile types on its own (so errors point into
/// the right file).
fn parse_layer(source: Source, text: String) -> Result<Layer, ProfileError> {
    if text.len() > MAX_PROFILE_BYTES {
        return Err(ProfileError::new(
            &source,
            format!(
                "profile is {} bytes, more than the limit of {MAX_PROFILE_BYTES} bytes",
                text.len()
            ),
        )
        .with_hint("a profile describes a host in a few KiB: split it or move data into files"));
    }
    let de = toml::Deserializer::parse(&text).map_err(|e| {
        let mut err = ProfileError::new(
            &source,
            format!("TOML syntax error: {}", first_line(e.message())),
        );
        if let Some(span) = e.span() {
            err = err.at(&text, span.start);
        }
        err.with_hint("check quotes, brackets and `key = value` syntax")
    })?;
    let checked: Result<Profile, _> = serde_path_to_error::deserialize(de);
    if let Err(e) = checked {
        let path = e.path().to_string();
        let inner = e.inner();
        let (message, hint) = explain(inner.message(), &path);
        let mut err = ProfileError::new(&source, message);
        if path != "." && !path.is_empty() {
            err.key = Some(path);
        }
        if let Some(span) = inner.span() {
            err = err.at(&text, span.start);
        }
        err.hint = hint;
        return Err(err);
    }
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| ProfileError::new(&source, e.message().to_string()))?;
    Ok(Layer {
        source,
        text,
        table,
    })
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Turns a serde message into our wording plus a hint.
fn explain(message: &str, path: &str) -> (String, Option<String>) {
    let section = path.rsplit_once('.').map(|(s, _)| s).unwrap_or("");
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let expected = backticked(tail);
        let place = if section.is_empty() {
            "at the top level".to_string()
        } else {
            format!("in [{section}]")
        };
        let msg = format!("unknown key `{name}` {place}");
        let hint = match did_you_mean(name, expected.iter().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`?"),
            None if expected.is_empty() => "this table takes no keys".to_string(),
            None => format!("valid keys: {}", expected.join(", ")),
        };
        return (msg, Some(hint));
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let expected = backticked(tail);
        let hint = match did_you_mean(name, expected.iter().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`? valid values: {}", expected.join(", ")),
            None => format!("valid values: {}", expected.join(", ")),
        };
        return (format!("invalid value `{name}`"), Some(hint));
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or(rest);
        return (
            format!("missing required key `{name}`"),
            Some(format!("add `{name} = …` to this entry")),
        );
    }
    if message.starts_with("invalid type") {
        return (message.to_string(), Some(type_hint(path)));
    }
    (message.to_string(), None)
}

fn type_hint(path: &str) -> String {
    let leaf = path.rsplit('.').next().unwrap_or(path);
    if leaf.contains("mode") {
        "write modes as quoted octal strings, e.g. \"0750\"".into()
    } else {
        "see `bollwerk schema` or docs/profile.md for the expected type".into()
    }
}

fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, w)| w.to_string())
        .collect()
}

/// The closest candidate by edit distance, if close enough to be a typo.
pub fn did_you_mean<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    // Edit distance is quadratic: a 50 KiB "key" is no typo (and must not take seconds).
    if name.len() > 64 {
        return None;
    }
    let prefix = |c: &str| {
        name.chars()
            .zip(c.chars())
            .take_while(|(a, b)| a == b)
            .count()
    };
    candidates
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 3.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, c)| (*d, usize::MAX - prefix(c)))
        .map(|(_, c)| c.to_string())
}

fn merge_table(base: &mut toml::Table, child: toml::Table, path: &str) {
    for (k, v) in child {
        let sub = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        let existing = base.remove(&k);
        let merged = match (existing, v) {
            (Some(toml::Value::Table(mut b)), toml::Value::Table(c)) if sub == "packages" => {
                merge_packages(&mut b, c);
                toml::Value::Table(b)
            }
            (Some(toml::Value::Table(mut b)), toml::Value::Table(c)) => {
                merge_table(&mut b, c, &sub);
                toml::Value::Table(b)
            }
            (Some(toml::Value::Array(b)), toml::Value::Array(c)) => {
                toml::Value::Array(merge_array(b, c, &sub))
            }
            (_, v) => v,
        };
        base.insert(k, merged);
    }
}

/// `[packages]` across `extends`: `install` and `remove` are unions; what the extending profile
/// installs leaves the base's `remove` and what it removes leaves the base's `install`. Other
/// keys merge as in any table.
fn merge_packages(base: &mut toml::Table, mut child: toml::Table) {
    let take = |t: &mut toml::Table, k: &str| match t.remove(k) {
        Some(toml::Value::Array(a)) => Some(a),
        Some(other) => {
            // A wrong type: keep it for validation to report with its position.
            t.insert(k.to_string(), other);
            None
        }
        None => None,
    };
    let (c_inst, c_rem) = (take(&mut child, "install"), take(&mut child, "remove"));
    let (b_inst, b_rem) = (take(base, "install"), take(base, "remove"));
    let union = |b: Option<Vec<toml::Value>>,
                 c: &Option<Vec<toml::Value>>,
                 drop: &Option<Vec<toml::Value>>| {
        if b.is_none() && c.is_none() {
            return None;
        }
        let mut out: Vec<toml::Value> = b
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !drop.as_ref().is_some_and(|d| d.contains(v)))
            .collect();
        for v in c.iter().flatten() {
            if !out.contains(v) {
                out.push(v.clone());
            }
        }
        Some(out)
    };
    let install = union(b_inst, &c_inst, &c_rem);
    let remove = union(b_rem, &c_rem, &c_inst);
    merge_table(base, child, "packages");
    for (k, v) in [("install", install), ("remove", remove)] {
        if let Some(v) = v {
            base.entry(k).or_insert(toml::Value::Array(v));
        }
    }
}

fn merge_array(base: Vec<toml::Value>, child: Vec<toml::Value>, path: &str) -> Vec<toml::Value> {
    let generic = generic_path(path);
    if let Some((_, key)) = KEYED_ARRAYS.iter().find(|(p, _)| *p == generic) {
        let mut out = base;
        for c in child {
            let id = c.get(*key).cloned();
            let pos = id
                .as_ref()
                .and_then(|id| out.iter().position(|b| b.get(*key) == Some(id)));
            match (pos, c) {
                (Some(i), toml::Value::Table(ct)) => {
                    if let toml::Value::Table(bt) = &mut out[i] {
                        merge_table(bt, ct, &format!("{path}[]"));
                    }
                }
                (_, c) => out.push(c),
            }
        }
        return out;
    }
    if UNION_ARRAYS.contains(&generic.as_str()) {
        let mut out = base;
        for c in child {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        return out;
    }
    child
}

/// `users[].ssh_keys` for `users[].ssh_keys` (paths carry `[]` for keyed-array elements).
fn generic_path(path: &str) -> String {
    path.to_string()
}

/// Builds an error located at a key path in a layer.
fn locate_err(layer: &Layer, path: &[&str], message: impl Into<String>) -> ProfileError {
    let mut err = ProfileError::new(&layer.source, message);
    err.key = Some(path.join("."));
    if let Some(off) = locate(&layer.text, path) {
        err = err.at(&layer.text, off);
    }
    err
}

/// Finds the byte offset of a key path (`["users", "deploy", "sudo"]`: array elements are
/// addressed by their `name`) in TOML text.
pub fn locate(text: &str, path: &[&str]) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut offset = None;
    let mut i = 0;
    while i < path.len() {
        let (k, v) = table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == path[i])?;
        offset = Some(k.span().start);
        i += 1;
        match v.get_ref() {
            toml::de::DeValue::Table(t) => table = t,
            toml::de::DeValue::Array(a) if i < path.len() => {
                let want = path[i];
                let elem = a.iter().find(|e| {
                    e.get_ref()
                        .as_table()
                        .and_then(|t| {
                            t.iter().find(|(k, _)| {
                                k.get_ref().as_ref() == "name" || k.get_ref().as_ref() == "path"
                            })
                        })
                        .and_then(|(_, v)| v.get_ref().as_str())
                        == Some(want)
                })?;
                offset = Some(elem.span().start);
                i += 1;
                match elem.get_ref().as_table() {
                    Some(t) => table = t,
                    None => return offset,
                }
            }
            _ => return offset,
        }
    }
    offset
}

/// The last layer that mentions a key path (for semantic errors in merged profiles).
fn owner_layer<'a>(layers: &'a [Layer], path: &[&str]) -> Option<&'a Layer> {
    layers
        .iter()
        .rev()
        .find(|l| locate(&l.text, path).is_some())
}

/// Builds an error for a key path, located in the last layer that sets it.
pub fn error_at(
    loaded_layers: &[Layer],
    path: &[&str],
    message: impl Into<String>,
) -> ProfileError {
    match owner_layer(loaded_layers, path).or_else(|| loaded_layers.last()) {
        Some(l) => locate_err(l, path, message),
        None => ProfileError::new(&Source::Builtin("?".into()), message),
    }
}

/// Cross-field checks that a single key's type cannot express.
fn check_semantics(p: &Profile, layers: &[Layer]) -> Result<(), ProfileError> {
    crate::modules::users::check_profile(p, layers)?;
    if let Some(ssh) = &p.ssh {
        crate::modules::sshd::check_profile(ssh, layers)?;
    }

    // -- network (issue 3) --
    if let Some(s) = &p.sysctl {
        crate::modules::sysctl::check_profile(s, layers)?;
    }
    if let Some(s) = &p.firewall {
        crate::modules::firewall::rules::check_profile(s, layers)?;
    }
    if let Some(s) = &p.fail2ban {
        crate::modules::fail2ban::check_profile(s, layers)?;
    }
    // -- docker (issue 14) --
    if let Some(s) = &p.docker {
        crate::modules::docker::check_profile(s, layers)?;
    }

    // -- services (issue 4) --
    if let Some(s) = &p.packages {
        crate::modules::packages::check_profile(s, layers)?;
    }
    crate::modules::files::check_profile(p, layers)?;
    crate::modules::logs::check_profile(p, layers)?;
    if let Some(u) = &p.updates {
        crate::modules::updates::check_profile(u, layers)?;
    }
    if let Some(pg) = &p.postgres {
        crate::modules::postgres::check_profile(pg, layers)?;
    }

    // -- OS hardening (issue 7) --
    if let Some(s) = &p.sudo {
        crate::modules::hardening::sudo::check_profile(s, layers)?;
    }
    if let Some(s) = &p.banners {
        crate::modules::hardening::banners::check_profile(s, layers)?;
    }
    if let Some(s) = &p.kernel_modules {
        crate::modules::hardening::kernel_modules::check_profile(s, layers)?;
    }
    if let Some(s) = &p.tmp {
        crate::modules::hardening::tmp::check_profile(s, layers)?;
    }
    if let Some(s) = &p.time {
        crate::modules::hardening::time::check_profile(s, layers)?;
    }
    if let Some(s) = &p.accounts {
        crate::modules::hardening::accounts::check_profile(s, layers)?;
    }
    if let Some(s) = &p.pam {
        crate::modules::hardening::pam::check_profile(s, layers)?;
    }

    // -- firstboot (issue 6) --
    if let Some(f) = &p.firstboot {
        crate::modules::firstboot::check_profile(f, layers)?;
    }

    // -- day one (issue 13) --
    if let Some(s) = &p.apt {
        crate::modules::apt_sources::check_profile(s, layers)?;
    }
    if let Some(s) = &p.storage {
        crate::modules::storage::check_profile(s, layers)?;
    }
    // -- fleet (issue 15): checks a profile ships --
    if let Some(a) = &p.audit {
        crate::audit::custom::check_profile(a, layers)?;
    }

    Ok(())
}

/// The JSON Schema of the profile.
pub fn schema() -> serde_json::Value {
    let s = schemars::schema_for!(Profile);
    serde_json::to_value(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }

    #[test]
    fn unknown_key_has_position_and_hint() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "site.toml",
            "[ssh]\nport = 22\npasword_authentication = false\n",
        );
        let e = load(&p).unwrap_err();
        assert_eq!(e.position, Some((3, 1)));
        assert_eq!(e.key.as_deref(), Some("ssh.pasword_authentication"));
        assert_eq!(
            e.hint.as_deref(),
            Some("did you mean `password_authentication`?")
        );
        let shown = e.to_string();
        assert!(shown.contains("site.toml:3:1"), "{shown}");
    }

    #[test]
    fn bad_values_are_rejected_with_position() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "a.toml", "[ssh]\nport = 70000\n");
        let e = load(&p).unwrap_err();
        assert_eq!(e.position, Some((2, 8)));
        assert!(e.message.contains("out of range"), "{}", e.message);
        let p = write(dir.path(), "b.toml", "[[users]]\nname = \"Bad Name\"\n");
        let e = load(&p).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("users[0].name"));
        let p = write(
            dir.path(),
            "c.toml",
            "[[users]]\nname = \"x\"\nsudo = \"nopassword\"\n",
        );
        let e = load(&p).unwrap_err();
        assert!(e.hint.as_ref().unwrap().contains("did you mean `nopasswd`"));
        let p = write(dir.path(), "d.toml", "[ssh\n");
        let e = load(&p).unwrap_err();
        assert!(e.message.starts_with("TOML syntax error"));
        assert!(e.position.is_some());
    }

    #[test]
    fn extends_unions_package_lists_and_a_child_moves_a_package_across() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "site.toml",
            "extends = \"cis-level1-server\"\n[packages]\ninstall = [\"nginx\", \"telnet\"]\nremove = [\"systemd-journal-remote\"]\n",
        );
        let l = load(&p).unwrap();
        let s = l.profile.packages.as_ref().unwrap();
        let names = |v: &Option<Vec<_>>| -> Vec<String> {
            v.iter()
                .flatten()
                .map(|n: &crate::modules::packages::PackageName| n.as_str().to_string())
                .collect()
        };
        // Level 1's own package stays; the child's is added; what the child removes leaves install.
        assert_eq!(names(&s.install), ["libpam-tmpdir", "nginx", "telnet"]);
        assert_eq!(names(&s.remove), ["systemd-journal-remote"]);
        // A base's removal leaves `remove` when the child installs it; other removals stay.
        write(
            dir.path(),
            "base.toml",
            "[packages]\ninstall = [\"curl\"]\nremove = [\"telnet\", \"nis\"]\ninstall_recommends = false\n",
        );
        let p = write(
            dir.path(),
            "child.toml",
            "extends = \"base.toml\"\n[packages]\ninstall = [\"telnet\"]\n",
        );
        let l = load(&p).unwrap();
        let s = l.profile.packages.as_ref().unwrap();
        assert_eq!(names(&s.install), ["curl", "telnet"]);
        assert_eq!(names(&s.remove), ["nis"]);
        assert_eq!(s.install_recommends, Some(false));
    }

    #[test]
    fn extends_merges_users_by_name_and_unions_keys() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = crate::sshkeys::tests::ED25519;
        write(
            dir.path(),
            "base.toml",
            &format!(
                "[ssh]\nport = 22\nmax_auth_tries = 3\n[[users]]\nname = \"deploy\"\ngroups = [\"sudo\"]\nssh_keys = [\"{k1}\"]\n"
            ),
        );
        let child = write(
            dir.path(),
            "child.toml",
            "extends = \"base.toml\"\n[ssh]\nport = 2222\n[[users]]\nname = \"deploy\"\nshell = \"/bin/zsh\"\n[[users]]\nname = \"app\"\n",
        );
        let l = load(&child).unwrap();
        let ssh = l.profile.ssh.unwrap();
        assert_eq!(ssh.port.map(|p| p.0), Some(2222));
        assert_eq!(ssh.max_auth_tries, Some(3));
        assert_eq!(l.profile.users.len(), 2);
        assert_eq!(l.profile.users[0].ssh_keys.len(), 1);
        assert_eq!(
            l.profile.users[0].shell.as_ref().unwrap().as_str(),
            "/bin/zsh"
        );
        assert_eq!(l.layers.len(), 2);
    }

    #[test]
    fn extends_cycles_and_unknown_builtins() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.toml", "extends = \"b.toml\"\n");
        let b = write(dir.path(), "b.toml", "extends = \"a.toml\"\n");
        assert!(load(&b).unwrap_err().message.contains("cycle"));
        let c = write(dir.path(), "c.toml", "extends = \"baselin\"\n");
        let e = load(&c).unwrap_err();
        assert_eq!(e.position, Some((1, 1)));
        assert!(e.hint.as_ref().unwrap().contains("did you mean `baseline`"));
    }

    #[test]
    fn builtins_load() {
        for (name, _) in BUILTIN {
            load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn schema_lists_sections() {
        let s = schema();
        let props = &s["properties"];
        assert!(props.get("ssh").is_some());
        assert!(props.get("users").is_some());
    }
}
