//! Docker daemon hardening: bollwerk's keys (`live-restore`, `no-new-privileges`,
//! `userland-proxy`, `icc`, log rotation, optional `userns-remap`) merged into
//! `etc/docker/daemon.json` — unknown keys are kept, bollwerk's keys win, keys are written in a
//! stable order so a re-apply changes nothing — validated with the target's
//! `dockerd --validate --config-file` (Docker ≥ 23) before activation, and a reload or restart
//! of `docker.service` only when it is safe (see [`handlers_for`]). Published container ports
//! (`allow_published`) are filtered by the firewall module (`firewall/docker.rs`).

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::engine::{Context, Level, Plan, Planner, Staged, Validator, Visibility};
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::modules::Module;
use crate::modules::firewall::RuleSpec;
use crate::modules::firewall::rules::Ports;
use crate::profile::{Layer, ProfileError};
use crate::root::{Entry, Perms, RelPath};

/// The Docker daemon's configuration file.
pub const DAEMON_JSON: &str = "etc/docker/daemon.json";

/// Log drivers bollwerk configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LogDriver {
    /// Docker's `local` driver (compressed, rotated files).
    Local,
    /// `json-file` (plain files `docker logs` and file-based tools read).
    JsonFile,
    /// The systemd journal (fail2ban reads container logs from it).
    Journald,
}

impl LogDriver {
    /// The name dockerd uses.
    pub fn as_str(self) -> &'static str {
        match self {
            LogDriver::Local => "local",
            LogDriver::JsonFile => "json-file",
            LogDriver::Journald => "journald",
        }
    }
}

/// `[docker]`: Docker daemon hardening (merged into `/etc/docker/daemon.json`) and the
/// container ports the firewall lets in. Unset keys take the defaults shown.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DockerSection {
    /// `live-restore`: containers keep running while dockerd restarts (default true; also what
    /// lets bollwerk restart dockerd for settings that need it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live_restore: Option<bool>,
    /// `no-new-privileges`: processes in containers cannot gain privileges through setuid
    /// binaries (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_new_privileges: Option<bool>,
    /// `userland-proxy`: published ports through the docker-proxy process instead of NAT rules
    /// (default false: NAT only, so the firewall's forward filter sees every connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userland_proxy: Option<bool>,
    /// `icc`: containers on the default bridge (docker0) may talk to each other (default false;
    /// compose networks are not affected). Set true to opt out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icc: Option<bool>,
    /// `log-driver`: "local" (default), "json-file" or "journald".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_driver: Option<LogDriver>,
    /// `log-opts.max-size` for local/json-file: size of a log file before it is rotated
    /// ("10m" default; a number with k, m or g).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_max_size: Option<String>,
    /// `log-opts.max-file` for local/json-file: rotated files kept per container (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_max_file: Option<u32>,
    /// `userns-remap`: "default" or a user name (container root mapped to an unprivileged
    /// range). Changing it hides existing containers and images, so bollwerk never restarts
    /// dockerd for it: restart it yourself and recreate the containers. Unset: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns_remap: Option<String>,
    /// Published container ports the firewall lets in, like the host rules: "443/tcp" or
    /// { port = "5432/tcp", from = "172.16.0.0/12" }. The port is the published (host) port.
    /// Any other published port is dropped before Docker's own forward rules (nftables: a
    /// forward chain at priority filter - 1; ufw: the DOCKER-USER chain). Unset: published
    /// ports are not filtered (Docker's default; the plan warns). Needs `[firewall]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_published: Option<Vec<RuleSpec>>,
}

impl DockerSection {
    /// The log driver (default local).
    pub fn log_driver(&self) -> LogDriver {
        self.log_driver.unwrap_or(LogDriver::Local)
    }
}

/// True when `s` is a size dockerd accepts for `max-size` (`10m`, `512k`, `1g`).
fn valid_size(s: &str) -> bool {
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    !num.is_empty()
        && num.len() <= 9
        && num.bytes().all(|b| b.is_ascii_digit())
        && num.parse::<u64>().is_ok_and(|n| n > 0)
        && matches!(unit, "k" | "m" | "g" | "K" | "M" | "G")
}

/// True for `default`, `user` or `user:group` with portable account names.
fn valid_remap(s: &str) -> bool {
    let name = |n: &str| {
        !n.is_empty()
            && n.len() <= 32
            && n.chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && n.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
    };
    match s.split_once(':') {
        Some((u, g)) => name(u) && name(g),
        None => name(s),
    }
}

/// Checks of `[docker]` a single key's type cannot express.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(s: &DockerSection, layers: &[Layer]) -> std::result::Result<(), ProfileError> {
    let err = |key: &str, msg: String, hint: &str| {
        Err(crate::profile::error_at(layers, &["docker", key], msg).with_hint(hint.to_string()))
    };
    if let Some(v) = &s.log_max_size
        && !valid_size(v)
    {
        return err(
            "log_max_size",
            format!("log_max_size {v:?} is not a size like \"10m\""),
            "a number followed by k, m or g, e.g. \"10m\"",
        );
    }
    if let Some(n) = s.log_max_file
        && !(1..=100).contains(&n)
    {
        return err(
            "log_max_file",
            format!("log_max_file {n} is outside 1-100"),
            "keep a few rotated files, e.g. 5",
        );
    }
    if s.log_driver() == LogDriver::Journald
        && (s.log_max_size.is_some() || s.log_max_file.is_some())
    {
        return err(
            "log_driver",
            "log_max_size and log_max_file do not apply to the journald log driver (the journal rotates itself)".into(),
            "remove them or use log_driver = \"local\"",
        );
    }
    if let Some(r) = &s.userns_remap
        && !valid_remap(r)
    {
        return err(
            "userns_remap",
            format!("userns_remap {r:?} is not \"default\", a user or user:group"),
            "use \"default\" (dockerd creates the dockremap user)",
        );
    }
    for r in s.allow_published.iter().flatten() {
        if r.port().ports == Ports::Ssh {
            return err(
                "allow_published",
                "\"ssh\" is not a published container port".into(),
                "name the published port, e.g. \"2222/tcp\"",
            );
        }
        if let Some(c) = r.comment()
            && (c.is_empty()
                || c.len() > 200
                || c.chars()
                    .any(|ch| ch.is_control() || ch == '"' || ch == '\''))
        {
            return err(
                "allow_published",
                format!(
                    "comment {c:?} is empty, too long or contains quotes or control characters"
                ),
                "use a short plain comment such as \"web\"",
            );
        }
    }
    Ok(())
}

/// The result of merging bollwerk's keys into a daemon.json.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// The new file content (pretty JSON, trailing newline).
    pub text: String,
    /// Top-level keys whose value changes, sorted.
    pub changed: Vec<String>,
    /// `live-restore` in the current file (false when absent: dockerd's default).
    pub live_restore_before: bool,
    /// `live-restore` in the new file.
    pub live_restore_after: bool,
}

fn parse_object(text: &str) -> std::result::Result<Map<String, Value>, String> {
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("it is valid JSON but not an object".into()),
        Err(e) => Err(format!("line {} column {}: {e}", e.line(), e.column())),
    }
}

/// Merges bollwerk's keys into the current daemon.json (`None`: absent). Unknown keys are kept;
/// bollwerk's keys win. `log-opts` are kept for the same log driver (bollwerk's `max-size` and
/// `max-file` win) and dropped when the driver changes (options of one driver are errors for
/// another). Keys are written sorted, so merging the result again changes nothing.
///
/// # Errors
/// When the current file is not a JSON object (nothing is written then).
pub fn merge(current: Option<&str>, s: &DockerSection) -> std::result::Result<Merged, String> {
    let old = parse_object(current.unwrap_or(""))?;
    let mut new: std::collections::BTreeMap<String, Value> =
        old.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let set = |m: &mut std::collections::BTreeMap<String, Value>, k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    set(
        &mut new,
        "live-restore",
        Value::Bool(s.live_restore.unwrap_or(true)),
    );
    set(
        &mut new,
        "no-new-privileges",
        Value::Bool(s.no_new_privileges.unwrap_or(true)),
    );
    set(
        &mut new,
        "userland-proxy",
        Value::Bool(s.userland_proxy.unwrap_or(false)),
    );
    set(&mut new, "icc", Value::Bool(s.icc.unwrap_or(false)));
    let driver = s.log_driver();
    let old_driver = old
        .get("log-driver")
        .and_then(Value::as_str)
        .unwrap_or("json-file");
    set(
        &mut new,
        "log-driver",
        Value::String(driver.as_str().into()),
    );
    let mut opts: Map<String, Value> = match old.get("log-opts") {
        Some(Value::Object(o)) if old_driver == driver.as_str() => o.clone(),
        _ => Map::new(),
    };
    if driver != LogDriver::Journald {
        opts.insert(
            "max-size".into(),
            Value::String(s.log_max_size.clone().unwrap_or_else(|| "10m".into())),
        );
        opts.insert(
            "max-file".into(),
            Value::String(s.log_max_file.unwrap_or(5).to_string()),
        );
    }
    if opts.is_empty() {
        new.remove("log-opts");
    } else {
        let sorted: Map<String, Value> = opts
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_iter()
            .collect();
        set(&mut new, "log-opts", Value::Object(sorted));
    }
    if let Some(r) = &s.userns_remap {
        set(&mut new, "userns-remap", Value::String(r.clone()));
    }
    let mut changed: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.get(k.as_str()) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    changed.extend(old.keys().filter(|k| !new.contains_key(*k)).cloned());
    changed.sort();
    let out: Map<String, Value> = new.into_iter().collect();
    let mut text = serde_json::to_string_pretty(&Value::Object(out))
        .map_err(|e| format!("rendering daemon.json: {e}"))?;
    text.push('\n');
    let flag =
        |m: &Map<String, Value>| m.get("live-restore").and_then(Value::as_bool) == Some(true);
    Ok(Merged {
        live_restore_before: flag(&old),
        live_restore_after: s.live_restore.unwrap_or(true),
        text,
        changed,
    })
}

/// daemon.json keys dockerd applies on SIGHUP (`systemctl reload docker`), per Docker's
/// "configuration reload behavior"; every other key needs a restart.
pub const RELOADABLE: &[&str] = &[
    "debug",
    "labels",
    "live-restore",
    "max-concurrent-downloads",
    "max-concurrent-uploads",
    "max-download-attempts",
    "default-runtime",
    "runtimes",
    "authorization-plugins",
    "insecure-registries",
    "registry-mirrors",
    "shutdown-timeout",
    "features",
];

/// What to do with the running daemon after daemon.json changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activation {
    /// Nothing changed.
    None,
    /// Only reloadable keys changed: `systemctl reload`.
    Reload,
    /// Keys that need a restart changed and live-restore is on in the new file: reload first
    /// (so the running daemon has live-restore before it stops), then restart; containers keep
    /// running.
    ReloadThenRestart,
    /// A restart is needed but not safe (live-restore off, or `userns-remap` changed): reload
    /// only, and say why the operator must restart in a maintenance window.
    Manual(String),
}

/// Decides how the running daemon picks up a change (see [`Activation`]).
pub fn handlers_for(m: &Merged) -> Activation {
    if m.changed.is_empty() {
        return Activation::None;
    }
    if m.changed.iter().any(|k| k == "userns-remap") {
        return Activation::Manual(
            "userns-remap changed: dockerd then uses a different data root, so existing containers and images disappear from view; restart docker yourself and recreate the containers".into(),
        );
    }
    let restart = m.changed.iter().any(|k| !RELOADABLE.contains(&k.as_str()));
    match (restart, m.live_restore_after) {
        (false, _) => Activation::Reload,
        (true, true) => Activation::ReloadThenRestart,
        (true, false) => Activation::Manual(format!(
            "{} take effect only after a dockerd restart, and live_restore = false means a restart stops every container: restart docker in a maintenance window",
            m.changed
                .iter()
                .filter(|k| !RELOADABLE.contains(&k.as_str()))
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The dockerd binary of the root, if installed.
pub fn dockerd_path(cx: &Context) -> Option<&'static str> {
    ["usr/bin/dockerd", "usr/sbin/dockerd"]
        .into_iter()
        .find(|p| cx.root.exists(&RelPath::lit(p)))
}

/// The installed Docker engine package and its major version (`docker.io` 20, `docker-ce` 24).
pub fn engine_version(cx: &Context) -> Option<(&'static str, u32)> {
    for pkg in ["docker-ce", "docker.io", "moby-engine"] {
        if let Some(v) = cx.facts.package(pkg) {
            let v = v.split_once(':').map_or(v, |(_, rest)| rest);
            let major = v
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            return Some((pkg, major));
        }
    }
    None
}

/// Validates the candidate daemon.json with the root's `dockerd --validate --config-file`.
#[derive(Debug)]
pub struct DaemonJsonValidator {
    /// The dockerd binary as seen inside the root (`/usr/sbin/dockerd`).
    pub dockerd: String,
}

impl Validator for DaemonJsonValidator {
    fn describe(&self) -> String {
        "dockerd --validate".into()
    }

    fn validate(&self, cx: &Context, staged: &Staged) -> Result<()> {
        let file = RelPath::lit(DAEMON_JSON);
        let Some(cand) = staged.files.get(&file) else {
            return Ok(());
        };
        let out = cx.runner.run(
            &cx.root,
            &Cmd::in_root(&self.dockerd, &["--validate", "--config-file", cand]),
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

/// Validates the candidate's JSON shape and bollwerk's keys' types, for engines without
/// `dockerd --validate` (Docker < 23, such as Debian 12's docker.io 20.10).
#[derive(Debug)]
pub struct DaemonJsonShape;

impl Validator for DaemonJsonShape {
    fn describe(&self) -> String {
        "daemon.json shape (dockerd has no --validate)".into()
    }

    fn validate(&self, _cx: &Context, staged: &Staged) -> Result<()> {
        let file = RelPath::lit(DAEMON_JSON);
        let Some(cand) = staged.files.get(&file) else {
            return Ok(());
        };
        let host = staged.host_path(cand);
        let text = std::fs::read_to_string(&host).map_err(|e| Error::io("reading", &host, e))?;
        let bad = |output: String| Error::Validation {
            path: file.to_string(),
            validator: self.describe(),
            output,
        };
        let m = parse_object(&text).map_err(bad)?;
        for k in ["live-restore", "no-new-privileges", "userland-proxy", "icc"] {
            if m.get(k).is_some_and(|v| !v.is_boolean()) {
                return Err(bad(format!("{k} must be true or false")));
            }
        }
        if let Some(o) = m.get("log-opts") {
            let Some(o) = o.as_object() else {
                return Err(bad("log-opts must be an object".into()));
            };
            if o.values().any(|v| !v.is_string()) {
                return Err(bad("log-opts values must be strings".into()));
            }
        }
        Ok(())
    }
}

/// `systemctl <verb> docker.service` inside the root.
fn systemctl(verb: &str) -> Cmd {
    Cmd::in_root("/usr/bin/systemctl", &[verb, "docker.service"])
}

/// The docker module.
pub struct Docker;

impl Module for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(s) = cx.profile.profile.docker.as_ref() else {
            return Ok(());
        };
        let mut p = Planner::new(self.name(), plan);
        let path = RelPath::lit(DAEMON_JSON);
        let current = cx.root.read_string(&path)?;
        let merged = merge(current.as_deref(), s).map_err(|e| {
            Error::Runtime(format!(
                "/{DAEMON_JSON} cannot be merged, nothing was changed: {e}; fix or remove the file"
            ))
        })?;
        let engine = engine_version(cx);
        let validator: Arc<dyn Validator> = match (dockerd_path(cx), engine) {
            (Some(d), Some((_, major))) if major >= 23 => Arc::new(DaemonJsonValidator {
                dockerd: format!("/{d}"),
            }),
            (Some(d), None) => Arc::new(DaemonJsonValidator {
                dockerd: format!("/{d}"),
            }),
            (d, engine) => {
                p.note(
                    Level::Info,
                    match (d, engine) {
                        (Some(_), Some((pkg, major))) => format!(
                            "{pkg} {major}.x has no `dockerd --validate` (Docker 23 and later): daemon.json is checked for its JSON shape only; dockerd reports other errors when it starts"
                        ),
                        _ => "Docker is not installed in the target: daemon.json is written for its first start and checked for its JSON shape only".into(),
                    },
                );
                Arc::new(DaemonJsonShape)
            }
        };
        let perms = match cx.root.entry(&path)? {
            Entry::File { perms, .. }
                if perms.uid == 0 && perms.gid == 0 && perms.mode & !0o644 == 0 =>
            {
                perms
            }
            _ => Perms::root(0o644),
        };
        let changed = p.file_with(
            &cx.root,
            &path,
            merged.text.clone().into_bytes(),
            perms,
            if merged.changed.is_empty() {
                "docker daemon.json permissions (root:root, at most 0644)".to_string()
            } else {
                format!("docker daemon.json: {}", merged.changed.join(", "))
            },
            Visibility::Plain,
            Some(validator),
        )?;
        if changed && dockerd_path(cx).is_some() {
            match handlers_for(&merged) {
                Activation::None => {}
                Activation::Reload => p.handler(systemctl("try-reload-or-restart")),
                Activation::ReloadThenRestart => {
                    if !merged.live_restore_before {
                        p.note(
                            Level::Info,
                            "live-restore is switched on by a reload first, so the restart that follows keeps the containers running",
                        );
                    }
                    p.handler(systemctl("try-reload-or-restart"));
                    p.handler(systemctl("try-restart"));
                }
                Activation::Manual(why) => {
                    p.handler(systemctl("try-reload-or-restart"));
                    p.note(Level::Warning, why);
                }
            }
        }
        match (&s.allow_published, cx.profile.profile.firewall.is_some()) {
            (None, _) => p.note(
                Level::Warning,
                "docker.allow_published is unset: ports containers publish are reachable from everywhere, whatever the firewall says",
            ),
            (Some(_), false) => p.note(
                Level::Warning,
                "docker.allow_published needs a [firewall] section: published ports are not filtered",
            ),
            (Some(_), true) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section() -> DockerSection {
        DockerSection::default()
    }

    #[test]
    fn merge_keeps_unknown_keys_and_ours_win() {
        let cur = "{\"data-root\": \"/srv/docker\", \"icc\": true, \"log-driver\": \"json-file\", \"log-opts\": {\"labels\": \"x\", \"max-size\": \"1g\"}}";
        let m = merge(Some(cur), &section()).unwrap();
        let v: Value = serde_json::from_str(&m.text).unwrap();
        assert_eq!(v["data-root"], "/srv/docker");
        assert_eq!(v["icc"], false);
        assert_eq!(v["log-driver"], "local");
        // another driver: the old driver's options are dropped
        assert_eq!(v["log-opts"]["labels"], Value::Null);
        assert_eq!(v["log-opts"]["max-size"], "10m");
        assert_eq!(v["log-opts"]["max-file"], "5");
        assert!(m.changed.contains(&"icc".to_string()));
        assert!(!m.changed.contains(&"data-root".to_string()));
        // idempotent
        let again = merge(Some(&m.text), &section()).unwrap();
        assert_eq!(again.text, m.text);
        assert!(again.changed.is_empty());
    }

    #[test]
    fn same_driver_keeps_its_options_and_journald_has_none() {
        let s = DockerSection {
            log_driver: Some(LogDriver::JsonFile),
            ..section()
        };
        let m = merge(Some("{\"log-opts\": {\"labels\": \"x\"}}"), &s).unwrap();
        let v: Value = serde_json::from_str(&m.text).unwrap();
        assert_eq!(v["log-opts"]["labels"], "x");
        let j = DockerSection {
            log_driver: Some(LogDriver::Journald),
            ..section()
        };
        let m = merge(Some(&m.text), &j).unwrap();
        let v: Value = serde_json::from_str(&m.text).unwrap();
        assert_eq!(v["log-driver"], "journald");
        assert!(v.get("log-opts").is_none(), "{}", m.text);
    }

    #[test]
    fn bad_files_are_errors() {
        assert!(merge(Some("[1]"), &section()).is_err());
        let e = merge(Some("{\"a\": }"), &section()).unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        assert!(merge(Some("  \n"), &section()).is_ok());
    }

    #[test]
    fn restart_only_with_live_restore() {
        let m = merge(None, &section()).unwrap();
        assert_eq!(handlers_for(&m), Activation::ReloadThenRestart);
        let off = DockerSection {
            live_restore: Some(false),
            ..section()
        };
        assert!(matches!(
            handlers_for(&merge(None, &off).unwrap()),
            Activation::Manual(_)
        ));
        // only live-restore changes: a reload is enough
        let cur = merge(None, &off).unwrap().text;
        let m = merge(Some(&cur), &section()).unwrap();
        assert_eq!(m.changed, vec!["live-restore"]);
        assert_eq!(handlers_for(&m), Activation::Reload);
        let remap = DockerSection {
            userns_remap: Some("default".into()),
            ..section()
        };
        assert!(matches!(
            handlers_for(&merge(Some(&cur), &remap).unwrap()),
            Activation::Manual(w) if w.contains("userns-remap")
        ));
    }

    #[test]
    fn sizes_and_remap_names() {
        assert!(valid_size("10m") && valid_size("1G") && valid_size("512k"));
        assert!(!valid_size("10") && !valid_size("m") && !valid_size("0m") && !valid_size("1t"));
        assert!(valid_remap("default") && valid_remap("dock:dock"));
        assert!(!valid_remap("Root") && !valid_remap("a:") && !valid_remap("../x"));
    }
}
