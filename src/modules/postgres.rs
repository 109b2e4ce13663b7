//! PostgreSQL tuning and hardening for the clusters found in `etc/postgresql/<ver>/<cluster>/`
//! (Debian's layout): PGTune's values ([`crate::modules::pgtune`]) from cgroup-aware memory
//! and CPUs, plus hardening (`password_encryption = scram-sha-256`, `ssl = on` where a
//! certificate exists, connection logging, `log_line_prefix`), in the drop-in
//! `conf.d/bollwerk.conf`; `include_dir = 'conf.d'` is added to `postgresql.conf` when it is not
//! active; `pg_hba.conf` loses its `trust` lines (`peer` for local, `scram-sha-256` for host).
//!
//! Candidates are checked by PostgreSQL itself before activation: the target's `postgres -C`
//! (as the postgres user) parses a copy of the cluster's configuration with the candidates in
//! place and fails on any invalid setting. On a live system the cluster is reloaded, or
//! restarted when a restart-only parameter (shared_buffers, max_connections, …) changed, and
//! then `pg_file_settings`/`pg_hba_file_rules` must show no errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Finding, Level, Plan, Planner, Staged, Validator, Visibility};
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::modules::Module;
use crate::modules::pgtune::{Storage, TuneInput, Workload, default_connections, pgtune};
use crate::modules::sizes::ByteSize;
use crate::modules::users::MANAGED_HEADER;
use crate::profile::{Layer, ProfileError};
use crate::root::{Entry, Perms, RelPath};

/// `memory`: "auto" or a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(try_from = "String", into = "String")]
pub enum MemorySetting {
    /// min(host RAM, cgroup memory.max).
    #[default]
    Auto,
    /// A fixed size ("4GiB").
    Size(ByteSize),
}

impl TryFrom<String> for MemorySetting {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        if s == "auto" {
            Ok(MemorySetting::Auto)
        } else {
            ByteSize::try_from(s)
                .map(MemorySetting::Size)
                .map_err(|e| format!("{e}, or \"auto\""))
        }
    }
}

impl From<MemorySetting> for String {
    fn from(m: MemorySetting) -> String {
        match m {
            MemorySetting::Auto => "auto".into(),
            MemorySetting::Size(s) => s.into(),
        }
    }
}

impl JsonSchema for MemorySetting {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MemorySetting".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "description": "\"auto\" or a size such as \"4GiB\""})
    }
}

/// `cpus`: "auto" or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub enum CpuSetting {
    /// min(host CPUs, cgroup cpu.max, cpuset).
    #[default]
    Auto,
    /// A fixed count.
    Count(u32),
}

impl<'de> Deserialize<'de> for CpuSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = CpuSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"auto\" or a number of CPUs (1-1024)")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> std::result::Result<CpuSetting, E> {
                if (1..=1024).contains(&n) {
                    Ok(CpuSetting::Count(n as u32))
                } else {
                    Err(E::custom(format!("cpus = {n} is out of range (1-1024)")))
                }
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> std::result::Result<CpuSetting, E> {
                self.visit_i64(n.min(i64::MAX as u64) as i64)
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<CpuSetting, E> {
                if s == "auto" {
                    Ok(CpuSetting::Auto)
                } else {
                    Err(E::custom(format!(
                        "cpus = {s:?} must be \"auto\" or a number"
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for CpuSetting {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CpuSetting".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"description": "\"auto\" or a number of CPUs", "anyOf": [{"type": "string", "enum": ["auto"]}, {"type": "integer", "minimum": 1}]})
    }
}

/// A value in `settings`: written as PostgreSQL expects it (strings quoted when needed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SettingValue {
    /// `on`/`off`.
    Bool(bool),
    /// A number.
    Int(i64),
    /// A decimal number.
    Float(f64),
    /// Text ("500ms", "all", "'%m [%p] '").
    Text(String),
}

impl SettingValue {
    /// The value in postgresql.conf syntax.
    pub fn render(&self) -> String {
        match self {
            SettingValue::Bool(b) => if *b { "on" } else { "off" }.into(),
            SettingValue::Int(n) => n.to_string(),
            SettingValue::Float(f) => f.to_string(),
            SettingValue::Text(s) => quote(s),
        }
    }
}

/// `[postgres]`: tuning and hardening of the PostgreSQL clusters on the target.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    /// "web" (default), "oltp", "dw", "mixed" or "desktop" (PGTune's workloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    /// Memory for PostgreSQL: "auto" (default; min(host RAM, cgroup memory.max), read on the
    /// running system only) or a size such as "4GiB".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemorySetting>,
    /// CPUs: "auto" (default; min(host CPUs, cgroup cpu.max, cpuset)) or a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<CpuSetting>,
    /// "ssd" (default), "hdd", "nvme" or "san".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Storage>,
    /// `max_connections` (default per workload: web 200, oltp 300, dw 40, mixed 100,
    /// desktop 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// `listen_addresses`, e.g. "localhost" or "localhost,10.0.0.5".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_addresses: Option<String>,
    /// Explicit settings (`{ log_min_duration_statement = "500ms" }`); they always win over
    /// computed values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, SettingValue>,
    /// Clusters to manage as "VERSION/NAME" (default: every cluster found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<Vec<String>>,
    /// Rewrite `trust` lines of pg_hba.conf (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harden_hba: Option<bool>,
}

/// Settings that bollwerk must own or that move the cluster's files: not allowed in `settings`.
const FORBIDDEN: &[&str] = &[
    "data_directory",
    "config_file",
    "hba_file",
    "ident_file",
    "include",
    "include_dir",
    "include_if_exists",
];

/// Parameters that take effect only at server start (context `postmaster`).
pub const RESTART_ONLY: &[&str] = &[
    "archive_mode",
    "autovacuum_max_workers",
    "bonjour",
    "cluster_name",
    "dynamic_shared_memory_type",
    "event_source",
    "external_pid_file",
    "huge_page_size",
    "huge_pages",
    "jit_provider",
    "listen_addresses",
    "logging_collector",
    "max_connections",
    "max_files_per_process",
    "max_locks_per_transaction",
    "max_logical_replication_workers",
    "max_pred_locks_per_transaction",
    "max_prepared_transactions",
    "max_replication_slots",
    "max_wal_senders",
    "max_worker_processes",
    "min_dynamic_shared_memory",
    "old_snapshot_threshold",
    "port",
    "recovery_prefetch",
    "shared_buffers",
    "shared_memory_type",
    "shared_preload_libraries",
    "superuser_reserved_connections",
    "track_activity_query_size",
    "track_commit_timestamp",
    "unix_socket_directories",
    "unix_socket_group",
    "unix_socket_permissions",
    "wal_buffers",
    "wal_decode_buffer_size",
    "wal_level",
    "wal_log_hints",
];

/// Checks of `[postgres]`.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(s: &PostgresSection, layers: &[Layer]) -> Result<(), ProfileError> {
    let err = |key: &[&str], msg: String, hint: &str| {
        let mut path = vec!["postgres"];
        path.extend_from_slice(key);
        Err(crate::profile::error_at(layers, &path, msg).with_hint(hint.to_string()))
    };
    if let Some(n) = s.max_connections
        && !(1..=262_143).contains(&n)
    {
        return err(
            &["max_connections"],
            format!("max_connections = {n} is out of range"),
            "PostgreSQL accepts 1-262143; a web app needs tens to a few hundred",
        );
    }
    if let Some(MemorySetting::Size(m)) = s.memory
        && m.bytes() < 256 << 20
    {
        return err(
            &["memory"],
            format!("memory = {m} is less than 256 MiB"),
            "PGTune's formulas are not meant for that little memory; give at least \"512M\"",
        );
    }
    if let Some(l) = &s.listen_addresses
        && (l.is_empty()
            || !l
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".,:-*_ ".contains(c)))
    {
        return err(
            &["listen_addresses"],
            format!("listen_addresses = {l:?} is not a list of host names or addresses"),
            "e.g. \"localhost\" or \"localhost,10.0.0.5\"",
        );
    }
    for k in s.settings.keys() {
        let ok = !k.is_empty()
            && k.split('.').count() <= 2
            && k.split('.').all(|p| {
                p.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            });
        if !ok {
            return err(
                &["settings"],
                format!("settings key {k:?} is not a PostgreSQL parameter name"),
                "names are lower-case letters, digits and `_` (e.g. log_min_duration_statement)",
            );
        }
        if FORBIDDEN.contains(&k.as_str()) {
            return err(
                &["settings"],
                format!("settings.{k} cannot be set by bollwerk"),
                "file locations and includes stay as the distribution set them",
            );
        }
    }
    if let Some(SettingValue::Text(t)) = s
        .settings
        .values()
        .find(|v| matches!(v, SettingValue::Text(t) if t.contains('\n')))
    {
        return err(
            &["settings"],
            format!("a settings value contains a line break: {t:?}"),
            "one line per value",
        );
    }
    for c in s.clusters.iter().flatten() {
        let ok = c.split_once('/').is_some_and(|(v, n)| {
            !v.is_empty()
                && v.chars().all(|x| x.is_ascii_digit() || x == '.')
                && !n.is_empty()
                && n.chars()
                    .all(|x| x.is_ascii_alphanumeric() || "_-".contains(x))
        });
        if !ok {
            return err(
                &["clusters"],
                format!("cluster {c:?} is not VERSION/NAME"),
                "e.g. \"15/main\" (see pg_lsclusters)",
            );
        }
    }
    Ok(())
}

/// Quotes a value for postgresql.conf unless it is a plain word or number.
pub fn quote(s: &str) -> String {
    let word = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let number = {
        let t = s.strip_prefix('-').unwrap_or(s);
        let digits: String = t
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        !digits.is_empty()
            && digits.chars().filter(|c| *c == '.').count() <= 1
            && t[digits.len()..].chars().all(|c| c.is_ascii_alphabetic())
    };
    if word || number {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// A cluster in Debian's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// Major version directory ("15", "9.6").
    pub version: String,
    /// Cluster name ("main").
    pub name: String,
    /// `etc/postgresql/<version>/<name>`.
    pub dir: RelPath,
    /// Owner of the cluster's postgresql.conf.
    pub owner: (u32, u32),
}

impl Cluster {
    /// (major, minor) of the version ("9.6" → (9, 6), "15" → (15, 0)).
    pub fn version_tuple(&self) -> (u32, u32) {
        let mut it = self
            .version
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    }

    fn file(&self, name: &str) -> RelPath {
        self.dir
            .join(name)
            .unwrap_or_else(|_| RelPath::lit("etc/postgresql/invalid"))
    }

    /// `postgresql.conf`.
    pub fn conf(&self) -> RelPath {
        self.file("postgresql.conf")
    }

    /// `conf.d/bollwerk.conf`.
    pub fn dropin(&self) -> RelPath {
        self.file("conf.d/bollwerk.conf")
    }

    /// `pg_hba.conf`.
    pub fn hba(&self) -> RelPath {
        self.file("pg_hba.conf")
    }

    /// The server binary, as seen inside the root.
    pub fn postgres_bin(&self) -> String {
        format!("/usr/lib/postgresql/{}/bin/postgres", self.version)
    }

    /// `15/main`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.version, self.name)
    }

    /// The systemd unit (`postgresql@15-main.service`).
    pub fn unit(&self) -> String {
        format!("postgresql@{}-{}.service", self.version, self.name)
    }
}

/// Finds the clusters under `etc/postgresql`.
///
/// # Errors
/// When the directories cannot be read.
pub fn clusters(cx: &Context) -> Result<Vec<Cluster>> {
    let base = RelPath::lit("etc/postgresql");
    let mut out = Vec::new();
    for v in cx.root.list_dir(&base)? {
        if !v.chars().all(|c| c.is_ascii_digit() || c == '.') || v.is_empty() {
            continue;
        }
        let vdir = base.join(&v).map_err(Error::Runtime)?;
        for n in cx.root.list_dir(&vdir)? {
            let dir = vdir.join(&n).map_err(Error::Runtime)?;
            let conf = dir.join("postgresql.conf").map_err(Error::Runtime)?;
            if let Entry::File { perms, .. } = cx.root.entry(&conf)? {
                out.push(Cluster {
                    version: v.clone(),
                    name: n,
                    dir,
                    owner: (perms.uid, perms.gid),
                });
            }
        }
    }
    out.sort_by(|a, b| {
        a.version_tuple()
            .cmp(&b.version_tuple())
            .then(a.name.cmp(&b.name))
    });
    Ok(out)
}

/// One active `name = value` line of a postgresql.conf-style file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfLine {
    /// 0-based line index.
    pub index: usize,
    /// Parameter name (lower-case).
    pub name: String,
    /// Value as written (quotes removed).
    pub value: String,
}

/// Parses the active settings of a postgresql.conf-style text.
pub fn parse_conf(text: &str) -> Vec<ConfLine> {
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (name, rest) = match line.find(|c: char| c == '=' || c.is_whitespace()) {
            Some(i) => (&line[..i], line[i..].trim_start()),
            None => continue,
        };
        let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
        let value = if let Some(q) = rest.strip_prefix('\'') {
            q.strip_suffix('\'').unwrap_or(q).replace("''", "'")
        } else {
            rest.to_string()
        };
        out.push(ConfLine {
            index,
            name: name.to_ascii_lowercase(),
            value,
        });
    }
    out
}

fn strip_comment(line: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '#' if !quoted => break,
            _ => out.push(c),
        }
    }
    out
}

/// Returns postgresql.conf with an active `include_dir = 'conf.d'`, or `None` when it has one.
pub fn ensure_include_dir(text: &str) -> Option<String> {
    if parse_conf(text)
        .iter()
        .any(|l| l.name == "include_dir" && l.value.trim_end_matches('/') == "conf.d")
    {
        return None;
    }
    let mut s = text.to_string();
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s.push_str("\n# Added by bollwerk: settings in conf.d/ (bollwerk.conf) are read last and win.\ninclude_dir = 'conf.d'\n");
    Some(s)
}

/// pg_hba.conf without `trust`: local lines get `peer`, network lines `scram-sha-256`
/// (`password`, clear text, too). Returns the new text and one description per changed line.
pub fn harden_hba(text: &str) -> (String, Vec<String>) {
    let mut changes = Vec::new();
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let code = strip_comment(raw);
        let words: Vec<&str> = code.split_whitespace().collect();
        let Some(kind) = words.first() else {
            out.push(raw.to_string());
            continue;
        };
        let method_at = match *kind {
            "local" => Some(3),
            "host" | "hostssl" | "hostnossl" | "hostgssenc" | "hostnogssenc" => {
                // An address with a separate netmask takes two fields.
                let addr = words.get(3).copied().unwrap_or("");
                let mask = words.get(4).copied().unwrap_or("");
                if !addr.contains('/') && mask.parse::<std::net::IpAddr>().is_ok() {
                    Some(5)
                } else {
                    Some(4)
                }
            }
            _ => None,
        };
        let Some(i) = method_at else {
            out.push(raw.to_string());
            continue;
        };
        let Some(method) = words.get(i) else {
            out.push(raw.to_string());
            continue;
        };
        let new_method = match (*kind, *method) {
            ("local", "trust") => Some("peer"),
            (k, "trust" | "password") if k != "local" => Some("scram-sha-256"),
            _ => None,
        };
        match new_method {
            Some(m) => {
                out.push(replace_word(raw, i, m));
                changes.push(format!(
                    "line {}: {} … {method} → {m}",
                    n + 1,
                    words[..i].join(" ")
                ));
            }
            None => out.push(raw.to_string()),
        }
    }
    let mut s = out.join("\n");
    if text.ends_with('\n') {
        s.push('\n');
    }
    (s, changes)
}

/// Replaces the `n`-th whitespace-separated word of `line`, keeping the spacing.
fn replace_word(line: &str, n: usize, with: &str) -> String {
    let mut ranges = Vec::new();
    let mut start = None;
    for (i, ch) in line.char_indices() {
        if ch.is_whitespace() {
            if let Some(s) = start.take() {
                ranges.push((s, i));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        ranges.push((s, line.len()));
    }
    match ranges.get(n) {
        Some((s, e)) => format!("{}{with}{}", &line[..*s], &line[*e..]),
        None => line.to_string(),
    }
}

/// The settings of one cluster, with where each came from.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    /// (name, value, origin) in file order.
    pub settings: Vec<(String, String, &'static str)>,
    /// Header comment lines.
    pub header: Vec<String>,
}

impl Rendered {
    fn set(&mut self, name: &str, value: String, origin: &'static str) {
        if let Some(e) = self.settings.iter_mut().find(|(n, _, _)| n == name) {
            e.1 = value;
            e.2 = origin;
        } else {
            self.settings.push((name.to_string(), value, origin));
        }
    }

    /// The value of a setting.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| v.as_str())
    }

    /// The drop-in text.
    pub fn text(&self) -> String {
        let mut out = format!("{MANAGED_HEADER}\n");
        for h in &self.header {
            out.push_str(&format!("# {h}\n"));
        }
        let mut last = "";
        for (n, v, origin) in &self.settings {
            if *origin != last {
                out.push_str(&format!("\n# {origin}\n"));
                last = origin;
            }
            out.push_str(&format!("{n} = {v}\n"));
        }
        out
    }
}

/// Where memory and CPU figures came from, for the header and notes.
fn human(bytes: u64) -> String {
    const G: u64 = 1 << 30;
    const M: u64 = 1 << 20;
    if bytes.is_multiple_of(G) {
        format!("{} GiB", bytes / G)
    } else if bytes >= G {
        format!("{:.1} GiB", bytes as f64 / G as f64)
    } else {
        format!("{} MiB", bytes / M)
    }
}

/// Computes the drop-in of one cluster. Notes go to `p`.
pub fn render(cx: &Context, s: &PostgresSection, c: &Cluster, p: &mut Planner) -> Result<Rendered> {
    let mut r = Rendered::default();
    let workload = s.workload.unwrap_or_default();
    let storage = s.storage.unwrap_or_default();
    let res = &cx.facts.resources;
    let memory = match s.memory.unwrap_or_default() {
        MemorySetting::Size(m) => {
            if let Some(avail) = res.memory()
                && m.bytes() > avail
            {
                p.note(
                    Level::Warning,
                    format!(
                        "postgres.memory = {m} is more than the {} available here ({})",
                        human(avail),
                        if res.cgroup_memory == Some(avail) {
                            "cgroup limit"
                        } else {
                            "RAM"
                        }
                    ),
                );
            }
            Some((m.bytes(), "postgres.memory".to_string()))
        }
        MemorySetting::Auto => res.memory().map(|m| {
            let why = match (res.host_memory, res.cgroup_memory) {
                (Some(h), Some(cg)) if cg < h => {
                    format!("cgroup memory limit; the host has {}", human(h))
                }
                _ => "RAM".to_string(),
            };
            (m, why)
        }),
    };
    let cpus = match s.cpus.unwrap_or_default() {
        CpuSetting::Count(n) => Some((n, "postgres.cpus".to_string())),
        CpuSetting::Auto => res.cpus().map(|n| {
            let why = match res.host_cpus {
                Some(h) if n < h => format!("cgroup CPU limit; the host has {h}"),
                _ => "CPUs".to_string(),
            };
            (n, why)
        }),
    };
    match &memory {
        Some((m, why)) => {
            r.header.push(format!(
                "PostgreSQL {} tuned with PGTune's formulas: workload {}, {} ({why}), {}, storage {}.",
                c.id(),
                workload.label(),
                human(*m),
                cpus.as_ref()
                    .map_or("CPUs unknown".to_string(), |(n, w)| format!("{n} CPUs ({w})")),
                storage.label()
            ));
            if why.starts_with("cgroup") {
                p.note(
                    Level::Info,
                    format!("postgres {}: tuned for {} ({why})", c.id(), human(*m)),
                );
            }
            for (k, v) in pgtune(&TuneInput {
                version: c.version_tuple(),
                memory: *m,
                cpus: cpus.as_ref().map(|(n, _)| *n),
                connections: s.max_connections,
                workload,
                storage,
            }) {
                r.set(k, v, "tuning (PGTune)");
            }
        }
        None => {
            p.note(
                Level::Warning,
                format!(
                    "postgres {}: memory = \"auto\" but the target's RAM is unknown ({}): tuning left out; set postgres.memory and postgres.cpus, or apply on the host itself (e.g. at first boot)",
                    c.id(),
                    if cx.root.is_host() { "no /proc/meminfo" } else { "the root is not the running system" }
                ),
            );
            r.header.push(format!(
                "PostgreSQL {}: not tuned (memory unknown); hardening only.",
                c.id()
            ));
            r.set(
                "max_connections",
                s.max_connections
                    .unwrap_or_else(|| default_connections(workload))
                    .to_string(),
                "connections",
            );
        }
    }
    // Hardening.
    if c.version_tuple() >= (10, 0) {
        r.set("password_encryption", quote("scram-sha-256"), "hardening");
    } else {
        p.note(
            Level::Warning,
            format!(
                "postgres {}: PostgreSQL before 10 has no SCRAM; password_encryption left as it is",
                c.id()
            ),
        );
    }
    let conf_text = cx.after(p.plan(), &c.conf())?.unwrap_or_default();
    let conf = parse_conf(&String::from_utf8_lossy(&conf_text));
    let data_dir = conf
        .iter()
        .rev()
        .find(|l| l.name == "data_directory")
        .map(|l| l.value.clone())
        .unwrap_or_else(|| format!("/var/lib/postgresql/{}/{}", c.version, c.name));
    let file_of = |name: &str, default: &str| -> String {
        let v = conf
            .iter()
            .rev()
            .find(|l| l.name == name)
            .map(|l| l.value.clone())
            .unwrap_or_else(|| default.to_string());
        if v.starts_with('/') {
            v
        } else {
            format!("{}/{v}", data_dir.trim_end_matches('/'))
        }
    };
    let cert = file_of("ssl_cert_file", "server.crt");
    let key = file_of("ssl_key_file", "server.key");
    let exists = |p: &str| RelPath::new(p).is_ok_and(|r| cx.root.exists(&r));
    if exists(&cert) && exists(&key) {
        r.set("ssl", "on".into(), "hardening");
    } else {
        p.note(
            Level::Info,
            format!(
                "postgres {}: no certificate ({cert} and {key}): ssl is not turned on",
                c.id()
            ),
        );
    }
    r.set("log_connections", "on".into(), "hardening");
    r.set("log_disconnections", "on".into(), "hardening");
    r.set(
        "log_line_prefix",
        quote("%m [%p] %q%u@%d from %h "),
        "hardening",
    );
    if let Some(l) = &s.listen_addresses {
        r.set("listen_addresses", quote(l), "postgres.listen_addresses");
    }
    for (k, v) in &s.settings {
        r.set(k, v.render(), "postgres.settings (explicit, wins)");
    }
    Ok(r)
}

/// The postgres module.
pub struct Postgres;

impl Module for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(s) = &cx.profile.profile.postgres else {
            return Ok(());
        };
        let mut p = Planner::new(self.name(), plan);
        let found = clusters(cx)?;
        let wanted: Vec<Cluster> = match &s.clusters {
            Some(list) => {
                for id in list {
                    if !found.iter().any(|c| &c.id() == id) {
                        p.note(
                            Level::Warning,
                            format!("postgres.clusters lists {id}, which is not in etc/postgresql"),
                        );
                    }
                }
                found
                    .into_iter()
                    .filter(|c| list.contains(&c.id()))
                    .collect()
            }
            None => found,
        };
        if wanted.is_empty() {
            p.note(
                Level::Warning,
                "[postgres]: no PostgreSQL cluster in etc/postgresql: nothing to tune (install postgresql; a cluster it creates in the same run is configured in the follow-up run)",
            );
            return Ok(());
        }
        for c in &wanted {
            plan_cluster(cx, s, c, &mut p)?;
        }
        Ok(())
    }

    fn verify(&self, cx: &Context) -> Result<Vec<Finding>> {
        let Some(s) = &cx.profile.profile.postgres else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for c in clusters(cx)? {
            if s.clusters.as_ref().is_some_and(|l| !l.contains(&c.id())) {
                continue;
            }
            let Some(text) = cx.root.read_string(&c.dropin())? else {
                continue;
            };
            let ours = parse_conf(&text);
            // PostgreSQL's own reading of the configuration (postgresql.conf, conf.d, and
            // postgresql.auto.conf): our values must be the effective ones.
            for name in ["max_connections", "shared_buffers"] {
                let Some(want) = ours.iter().find(|l| l.name == name) else {
                    continue;
                };
                let cmd = runuser_postgres(
                    &c,
                    &[
                        "-C",
                        name,
                        "-c",
                        &format!("config_file={}", c.conf().absolute()),
                    ],
                );
                if !cx.runner.available(&cx.root, &cmd) {
                    break;
                }
                let got = match cx.runner.run_ok(&cx.root, &cmd) {
                    Ok(o) => o.stdout.trim().to_string(),
                    Err(e) => {
                        out.push(Finding {
                            module: "postgres",
                            message: format!("{}: postgres -C {name} failed: {e}", c.id()),
                        });
                        break;
                    }
                };
                if !same_value(name, &want.value, &got) {
                    out.push(Finding {
                        module: "postgres",
                        message: format!(
                            "{}: PostgreSQL reads {name} = {got}, bollwerk.conf says {} (overridden later in postgresql.conf, conf.d or postgresql.auto.conf?)",
                            c.id(),
                            want.value
                        ),
                    });
                }
            }
            if cx.live() {
                let q = format!(
                    "SELECT name || ' from ' || sourcefile || ':' || sourceline FROM pg_file_settings WHERE sourcefile = '{}' AND NOT applied",
                    c.dropin().absolute()
                );
                match cx.runner.run_ok(&cx.root, &psql(&c, &q)) {
                    Ok(o) => {
                        for l in o.stdout.lines().filter(|l| !l.trim().is_empty()) {
                            out.push(Finding {
                                module: "postgres",
                                message: format!(
                                    "{}: not applied by the running server: {l}",
                                    c.id()
                                ),
                            });
                        }
                    }
                    Err(e) => out.push(Finding {
                        module: "postgres",
                        message: format!("{}: could not ask the running server: {e}", c.id()),
                    }),
                }
            }
        }
        Ok(out)
    }
}

/// True when `postgres -C` output `got` (in the parameter's base unit) equals `want` as written.
fn same_value(name: &str, want: &str, got: &str) -> bool {
    if name == "shared_buffers" {
        return match (to_bytes(want), got.parse::<u64>()) {
            (Some(b), Ok(pages)) => b / 8192 == pages,
            _ => want == got,
        };
    }
    want == got
}

fn to_bytes(v: &str) -> Option<u64> {
    let split = v.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().ok()?;
    let m = match unit {
        "kB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => return None,
    };
    Some(n * m)
}

fn runuser_postgres(c: &Cluster, args: &[&str]) -> Cmd {
    let mut cmd = Cmd::in_root(
        "/usr/sbin/runuser",
        &["-u", "postgres", "--", &c.postgres_bin()],
    );
    for a in args {
        cmd = cmd.arg(*a);
    }
    cmd
}

fn psql(c: &Cluster, sql: &str) -> Cmd {
    Cmd::in_root(
        "/usr/sbin/runuser",
        &[
            "-u",
            "postgres",
            "--",
            "/usr/bin/psql",
            "--cluster",
            &c.id(),
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
    )
}

/// The SQL run after a reload/restart: fails when PostgreSQL found errors in its
/// configuration files or pg_hba.conf.
pub const CHECK_SQL: &str = "DO $$ DECLARE e text; BEGIN SELECT string_agg(coalesce(sourcefile, '?') || ':' || coalesce(sourceline::text, '?') || ': ' || error, '; ') INTO e FROM pg_file_settings WHERE error IS NOT NULL; IF e IS NOT NULL THEN RAISE EXCEPTION 'configuration errors after reload: % (undo with bollwerk rollback)', e; END IF; SELECT string_agg(line_number::text || ': ' || error, '; ') INTO e FROM pg_hba_file_rules WHERE error IS NOT NULL; IF e IS NOT NULL THEN RAISE EXCEPTION 'pg_hba.conf errors: % (undo with bollwerk rollback)', e; END IF; END $$";

fn plan_cluster(cx: &Context, s: &PostgresSection, c: &Cluster, p: &mut Planner) -> Result<()> {
    let (uid, gid) = c.owner;
    let owned = |mode| Perms { mode, uid, gid };
    let validator: Arc<dyn Validator> = Arc::new(PostgresCheck { cluster: c.clone() });
    // 1. include_dir in postgresql.conf.
    let conf_rel = c.conf();
    let conf_text = cx.root.read_string(&conf_rel)?.unwrap_or_default();
    let mut restart = false;
    if let Some(new) = ensure_include_dir(&conf_text) {
        let perms = match cx.root.entry(&conf_rel)? {
            Entry::File { perms, .. } => perms,
            _ => owned(0o644),
        };
        p.file_with(
            &cx.root,
            &conf_rel,
            new.into_bytes(),
            perms,
            format!(
                "{}: activate include_dir = 'conf.d' in postgresql.conf",
                c.id()
            ),
            Visibility::Plain,
            Some(validator.clone()),
        )?;
        restart = true;
    }
    let confd = c.file("conf.d");
    p.dirs(&cx.root, &confd, owned(0o755))?;
    // 2. The drop-in.
    let rendered = render(cx, s, c, p)?;
    let dropin = c.dropin();
    let old = cx
        .root
        .read_string(&dropin)?
        .map(|t| parse_conf(&t))
        .unwrap_or_default();
    let changed = p.file_with(
        &cx.root,
        &dropin,
        rendered.text().into_bytes(),
        owned(0o644),
        format!("{}: tuning and hardening", c.id()),
        Visibility::Plain,
        Some(validator.clone()),
    )?;
    if changed {
        for (name, value, _) in &rendered.settings {
            let before = old
                .iter()
                .find(|l| &l.name == name)
                .map(|l| quote(&l.value));
            if RESTART_ONLY.contains(&name.as_str()) && before.as_deref() != Some(value.as_str()) {
                restart = true;
            }
        }
        for l in &old {
            if RESTART_ONLY.contains(&l.name.as_str()) && rendered.get(&l.name).is_none() {
                restart = true;
            }
        }
    }
    // 3. Who else sets our parameters after us.
    overridden_elsewhere(cx, c, &rendered, p)?;
    // 4. pg_hba.conf.
    let mut hba_changed = false;
    if s.harden_hba.unwrap_or(true) {
        let hba = c.hba();
        if let Some(text) = cx.root.read_string(&hba)? {
            let (new, changes) = harden_hba(&text);
            if !changes.is_empty() {
                let perms = match cx.root.entry(&hba)? {
                    Entry::File { perms, .. } => perms,
                    _ => owned(0o640),
                };
                hba_changed = p.file(
                    &cx.root,
                    &hba,
                    new,
                    perms,
                    format!(
                        "{}: pg_hba.conf without trust ({})",
                        c.id(),
                        changes.join("; ")
                    ),
                )?;
                if changes.iter().any(|c| c.contains("scram-sha-256")) {
                    p.note(
                        Level::Warning,
                        format!("postgres {}: network clients on former trust lines now need a password (scram-sha-256)", c.id()),
                    );
                }
            }
        }
    }
    // 5. Service actions, live systems only.
    if changed || hba_changed || restart {
        let verb = if restart { "restart" } else { "reload" };
        p.handler(Cmd::in_root("/usr/bin/systemctl", &[verb, &c.unit()]));
        p.handler(psql(c, CHECK_SQL));
        if restart && !cx.live() {
            p.note(
                Level::Info,
                format!("postgres {}: restart-only parameters changed; the server needs a restart when this image boots (handlers run on live systems only)", c.id()),
            );
        }
    }
    Ok(())
}

fn overridden_elsewhere(cx: &Context, c: &Cluster, r: &Rendered, p: &mut Planner) -> Result<()> {
    let ours = |n: &str| r.get(n).is_some();
    let mut found: Vec<String> = Vec::new();
    let conf = cx
        .after(p.plan(), &c.conf())?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines = parse_conf(&conf);
    if let Some(inc) = lines
        .iter()
        .rposition(|l| l.name == "include_dir" && l.value.trim_end_matches('/') == "conf.d")
    {
        for l in &lines[inc + 1..] {
            if ours(&l.name) {
                found.push(format!("{} (postgresql.conf line {})", l.name, l.index + 1));
            }
        }
    }
    let confd = c.file("conf.d");
    for n in cx.root.list_dir(&confd)? {
        if n.as_str() > "bollwerk.conf" && n.ends_with(".conf") {
            let rel = confd.join(&n).map_err(Error::Runtime)?;
            for l in parse_conf(&cx.root.read_string(&rel)?.unwrap_or_default()) {
                if ours(&l.name) {
                    found.push(format!("{} (conf.d/{n})", l.name));
                }
            }
        }
    }
    let data_dir = lines
        .iter()
        .rev()
        .find(|l| l.name == "data_directory")
        .map(|l| l.value.clone())
        .unwrap_or_else(|| format!("/var/lib/postgresql/{}/{}", c.version, c.name));
    if let Ok(auto) = RelPath::new(&format!(
        "{}/postgresql.auto.conf",
        data_dir.trim_end_matches('/')
    )) && let Some(t) = cx.root.read_string(&auto)?
    {
        for l in parse_conf(&t) {
            if ours(&l.name) {
                found.push(format!(
                    "{} (ALTER SYSTEM; `ALTER SYSTEM RESET {}` removes it)",
                    l.name, l.name
                ));
            }
        }
    }
    if !found.is_empty() {
        p.note(
            Level::Warning,
            format!(
                "postgres {}: set again after bollwerk.conf, so those values win: {}",
                c.id(),
                found.join(", ")
            ),
        );
    }
    Ok(())
}

/// Validates a cluster's candidates with PostgreSQL itself: a copy of the cluster's
/// configuration directory (candidates in place) in a fresh temporary directory under the
/// target's `/tmp` is parsed by `postgres -C` run as postgres. The copy belongs to root and is
/// only readable by the cluster's group (0750/0640), so the cluster owner can neither swap nor
/// redirect it; the originals are read without following anything the cluster owner controls
/// (a `conf.d` replaced by a symlink is refused). Any invalid setting makes `postgres -C` exit
/// non-zero with PostgreSQL's message.
#[derive(Debug)]
pub struct PostgresCheck {
    /// The cluster.
    pub cluster: Cluster,
}

/// Removes the check directory on drop (through the root's handles).
struct CheckDir(crate::root::Root, RelPath);

impl Drop for CheckDir {
    fn drop(&mut self) {
        let _ = self.0.remove_all(&self.1);
    }
}

/// Largest configuration file the check copies.
const CONF_LIMIT: u64 = 4 * 1024 * 1024;

impl Validator for PostgresCheck {
    fn describe(&self) -> String {
        format!("postgres -C (PostgreSQL {})", self.cluster.id())
    }

    fn validate(&self, cx: &Context, staged: &Staged) -> Result<()> {
        let c = &self.cluster;
        let conf_rel = c.conf();
        let dropin = c.dropin();
        if !staged.files.contains_key(&conf_rel) && !staged.files.contains_key(&dropin) {
            return Ok(());
        }
        let read_candidate = |rel: &RelPath| -> Result<Option<Vec<u8>>> {
            match staged.files.get(rel) {
                Some(p) => {
                    let h = staged.host_path(p);
                    std::fs::read(&h)
                        .map(Some)
                        .map_err(|e| Error::io("reading", &h, e))
                }
                None => cx.root.read_safe(rel, CONF_LIMIT),
            }
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "tmp/bollwerk-pgcheck-{}-{}-{nanos:x}",
            std::process::id(),
            staged.dir_in_root.rsplit('/').next().unwrap_or("x")
        );
        let dir_rel = RelPath::new(&name).map_err(Error::Runtime)?;
        let (_, gid) = c.owner;
        let owned = |mode| Perms { mode, uid: 0, gid };
        if !cx.root.exists(&RelPath::lit("tmp")) {
            return Err(Error::Runtime(
                "the target has no /tmp for PostgreSQL's configuration check".into(),
            ));
        }
        // A fresh name: fails when someone planted it.
        cx.root.create_dir_new(&dir_rel, owned(0o750))?;
        let _guard = CheckDir(cx.root.clone(), dir_rel.clone());
        let conf = read_candidate(&conf_rel)?.unwrap_or_default();
        let conf = absolutize_includes(&String::from_utf8_lossy(&conf), &c.dir.absolute());
        let sub = |n: &str| dir_rel.join(n).map_err(Error::Runtime);
        cx.root
            .write_atomic(&sub("postgresql.conf")?, conf.as_bytes(), owned(0o640))?;
        cx.root.create_dir(&sub("conf.d")?, owned(0o750))?;
        let confd = c.file("conf.d");
        let mut names = cx.root.list_dir_safe(&confd)?;
        if !names.iter().any(|n| n == "bollwerk.conf") {
            names.push("bollwerk.conf".into());
        }
        for n in names.iter().filter(|n| n.ends_with(".conf")) {
            let rel = confd.join(n).map_err(Error::Runtime)?;
            if let Some(b) = read_candidate(&rel)? {
                cx.root
                    .write_atomic(&sub(&format!("conf.d/{n}"))?, &b, owned(0o640))?;
            }
        }
        let cand = format!("/{name}/postgresql.conf");
        let out = cx.runner.run(
            &cx.root,
            &runuser_postgres(
                c,
                &[
                    "-C",
                    "max_connections",
                    "-c",
                    &format!("config_file={cand}"),
                ],
            ),
        )?;
        if out.success() {
            Ok(())
        } else {
            let msg = out
                .combined()
                .replace(
                    &format!("/{name}/conf.d/"),
                    &format!("{}/conf.d/", c.dir.absolute()),
                )
                .replace(&cand, &conf_rel.absolute());
            Err(Error::Validation {
                path: dropin.to_string(),
                validator: self.describe(),
                output: msg,
            })
        }
    }
}

/// Makes relative `include*` paths absolute (relative to the cluster directory), except
/// `include_dir = 'conf.d'`, which the check copies next to the candidate.
fn absolutize_includes(text: &str, cluster_dir: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let l = parse_conf(line);
        match l.first() {
            Some(cl)
                if matches!(
                    cl.name.as_str(),
                    "include" | "include_if_exists" | "include_dir"
                ) && !cl.value.starts_with('/')
                    && !(cl.name == "include_dir"
                        && cl.value.trim_end_matches('/') == "conf.d") =>
            {
                out.push_str(&format!(
                    "{} = '{}/{}'\n",
                    cl.name,
                    cluster_dir,
                    cl.value.replace('\'', "''")
                ));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("2GB"), "2GB");
        assert_eq!(quote("0.9"), "0.9");
        assert_eq!(quote("on"), "on");
        assert_eq!(quote("500ms"), "500ms");
        assert_eq!(quote("scram-sha-256"), "'scram-sha-256'");
        assert_eq!(quote("%m [%p] "), "'%m [%p] '");
        assert_eq!(quote("it's"), "'it''s'");
        assert_eq!(quote("localhost,10.0.0.5"), "'localhost,10.0.0.5'");
    }

    #[test]
    fn conf_parsing() {
        let t = "# c\nshared_buffers = 128MB\t# min\nlog_line_prefix = '%m [%p] # x'  # y\nlisten_addresses='*'\nport 5433\n#ssl = on\n";
        let l = parse_conf(t);
        assert_eq!(l.len(), 4);
        assert_eq!(l[0].name, "shared_buffers");
        assert_eq!(l[0].value, "128MB");
        assert_eq!(l[1].value, "%m [%p] # x");
        assert_eq!(l[2].value, "*");
        assert_eq!((l[3].name.as_str(), l[3].value.as_str()), ("port", "5433"));
    }

    #[test]
    fn include_dir_added_once() {
        let debian = "data_directory = '/x'\ninclude_dir = 'conf.d'\t\t\t# include files\n";
        assert_eq!(ensure_include_dir(debian), None);
        let commented = "data_directory = '/x'\n#include_dir = 'conf.d'\n";
        let new = ensure_include_dir(commented).unwrap();
        assert!(new.ends_with("include_dir = 'conf.d'\n"));
        assert_eq!(ensure_include_dir(&new), None);
    }

    #[test]
    fn hba_loses_trust() {
        let t = "# TYPE DATABASE USER ADDRESS METHOD\nlocal   all   postgres   peer\nlocal   all   all   trust\nhost    all   all   127.0.0.1/32   trust\nhost all all 10.0.0.0 255.0.0.0 password # legacy\nhostssl all all ::1/128 scram-sha-256\nhost all all 0.0.0.0/0 md5\n";
        let (new, changes) = harden_hba(t);
        assert_eq!(
            new,
            "# TYPE DATABASE USER ADDRESS METHOD\nlocal   all   postgres   peer\nlocal   all   all   peer\nhost    all   all   127.0.0.1/32   scram-sha-256\nhost all all 10.0.0.0 255.0.0.0 scram-sha-256 # legacy\nhostssl all all ::1/128 scram-sha-256\nhost all all 0.0.0.0/0 md5\n"
        );
        assert_eq!(changes.len(), 3);
        assert_eq!(harden_hba(&new).1.len(), 0, "idempotent");
    }

    #[test]
    fn relative_includes_become_absolute() {
        let t = "include = 'extra.conf'\ninclude_dir = 'conf.d'\ninclude_if_exists '/abs.conf'\n";
        let a = absolutize_includes(t, "/etc/postgresql/15/main");
        assert_eq!(
            a,
            "include = '/etc/postgresql/15/main/extra.conf'\ninclude_dir = 'conf.d'\ninclude_if_exists '/abs.conf'\n"
        );
    }

    #[test]
    fn shared_buffers_units() {
        assert!(same_value("shared_buffers", "2GB", "262144"));
        assert!(!same_value("shared_buffers", "2GB", "16384"));
        assert!(same_value("max_connections", "200", "200"));
    }
}
