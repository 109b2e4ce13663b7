//! Log directories and rotation: `[[logs]]` creates each directory with its owner, group and
//! mode (owners resolved in the target root) and writes `etc/logrotate.d/bollwerk-<name>`
//! (with `su owner group` when the directory is not root's), validated with the target's
//! `logrotate -d` before activation; `[journald]` writes the drop-in
//! `etc/systemd/journald.conf.d/50-bollwerk.conf` and repeats its `Storage=` and `Compress=`
//! in `etc/systemd/journald.conf` itself (in place, every other line kept): OpenSCAP's CIS
//! content reads only the main file. Drop-ins override the main file, so the drop-in stays the
//! effective source and both say the same.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Level, Plan, Planner, Staged, Validator, Visibility};
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::modules::Module;
use crate::modules::files::planned_accounts;
use crate::modules::hardening::util::{Syntax, Want, set_settings};
use crate::modules::sizes::ByteSize;
use crate::modules::users::MANAGED_HEADER;
use crate::profile::types::{AbsPath, Duration, GroupName, Mode, UserName};
use crate::profile::{Layer, Profile, ProfileError};
use crate::root::{Perms, RelPath};

/// How often logrotate rotates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Frequency {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Frequency {
    fn word(self) -> &'static str {
        match self {
            Frequency::Hourly => "hourly",
            Frequency::Daily => "daily",
            Frequency::Weekly => "weekly",
            Frequency::Monthly => "monthly",
            Frequency::Yearly => "yearly",
        }
    }
}

/// `[logs.rotate]` (or inline `rotate = { … }`): logrotate settings for the directory's logs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSpec {
    /// "hourly", "daily", "weekly", "monthly" or "yearly".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency: Option<Frequency>,
    /// Rotated files to keep (`rotate N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    /// gzip rotated files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<bool>,
    /// Compress one rotation later (the newest rotated file stays plain, for programs still
    /// writing to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delaycompress: Option<bool>,
    /// Do not rotate empty files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifempty: Option<bool>,
    /// No error when a log is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missingok: Option<bool>,
    /// Create the new log as "MODE OWNER GROUP", e.g. "0640 app app".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create: Option<String>,
    /// Copy and truncate instead of renaming (for programs that cannot reopen their log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copytruncate: Option<bool>,
    /// Rotate earlier once a log is larger than this ("100M").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxsize: Option<ByteSize>,
    /// Rotated files get a date suffix instead of a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dateext: Option<bool>,
    /// Shell commands run once after rotation (e.g. "systemctl reload app").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postrotate: Option<String>,
}

/// `[[logs]]`: a log directory and how its logs rotate.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    /// Short name (identity; the logrotate file is `etc/logrotate.d/bollwerk-<name>`).
    pub name: String,
    /// The directory, e.g. "/var/log/app" (required; optional only so that a profile
    /// extending another can change an entry without repeating it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<AbsPath>,
    /// Owner of the directory (default root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<UserName>,
    /// Group of the directory (default root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupName>,
    /// Mode of the directory (default "0755").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Which files in the directory rotate (default "*.log").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<String>,
    /// Rotation (`[logs.rotate]` or inline `rotate = { … }`) with the keys `frequency`
    /// ("hourly"…"yearly"), `keep`, `compress`, `delaycompress`, `notifempty`, `missingok`,
    /// `create` ("0640 app app"), `copytruncate`, `maxsize` ("100M"), `dateext` and `postrotate`
    /// (shell commands). Without it only the directory is managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate: Option<RotateSpec>,
}

/// `[journald]`: systemd-journald settings (drop-in `etc/systemd/journald.conf.d/50-bollwerk.conf`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JournaldSection {
    /// Keep the journal on disk across reboots (`Storage=persistent`; false: `volatile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent: Option<bool>,
    /// Disk space the journal may use (`SystemMaxUse`, e.g. "1G").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_use: Option<ByteSize>,
    /// Largest single journal file (`SystemMaxFileSize`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_size: Option<ByteSize>,
    /// Drop entries older than this (`MaxRetentionSec`, e.g. "90d").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retention: Option<Duration>,
    /// Compress large journal objects (`Compress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compress: Option<bool>,
    /// Also hand messages to a syslog daemon (`ForwardToSyslog`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_to_syslog: Option<bool>,
}

/// The journald drop-in bollwerk owns.
pub const JOURNALD_DROPIN: &str = "etc/systemd/journald.conf.d/50-bollwerk.conf";
/// journald's main file (a dpkg conffile of `systemd`).
pub const JOURNALD_MAIN: &str = "etc/systemd/journald.conf";
const LOGROTATE_DIR: &str = "etc/logrotate.d";

/// The parsed `create` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSpec {
    /// Mode.
    pub mode: u32,
    /// Owner name.
    pub owner: Option<String>,
    /// Group name.
    pub group: Option<String>,
}

/// Parses `"0640 app app"` (owner and group optional).
///
/// # Errors
/// A message for the profile error.
pub fn parse_create(s: &str) -> std::result::Result<CreateSpec, String> {
    let w: Vec<&str> = s.split_whitespace().collect();
    if w.is_empty() || w.len() > 3 {
        return Err(format!(
            "create = {s:?} must be \"MODE [OWNER [GROUP]]\", e.g. \"0640 app app\""
        ));
    }
    let mode = Mode::try_from(w[0].to_string())?;
    for n in &w[1..] {
        UserName::try_from(n.to_string())?;
    }
    Ok(CreateSpec {
        mode: mode.0,
        owner: w.get(1).map(|s| s.to_string()),
        group: w.get(2).map(|s| s.to_string()),
    })
}

/// Checks of `[[logs]]` and `[journald]`.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(p: &Profile, layers: &[Layer]) -> Result<(), ProfileError> {
    for l in &p.logs {
        let name = l.name.as_str();
        let err = |key: &str, msg: String, hint: &str| {
            let mut path = vec!["logs", name];
            if !key.is_empty() {
                path.push(key);
            }
            Err(crate::profile::error_at(layers, &path, msg).with_hint(hint.to_string()))
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c))
        {
            return err(
                "name",
                format!("log name {name:?} is not usable in a file name"),
                "use lower-case letters, digits, `-` and `_`",
            );
        }
        let Some(path) = &l.path else {
            return err(
                "",
                format!("logs entry {name} has no path"),
                "add path = \"/var/log/<app>\"",
            );
        };
        if matches!(path.as_str(), "/var/log" | "/" | "/etc" | "/var") {
            return err(
                "path",
                format!("{path} is a system directory"),
                "give the application its own directory, e.g. /var/log/app",
            );
        }
        if let Some(f) = &l.files
            && (f.is_empty()
                || f.contains('/')
                || f.contains(char::is_whitespace)
                || f.contains('{'))
        {
            return err(
                "files",
                format!("files = {f:?} must be a file name pattern without `/`, spaces or braces"),
                "e.g. \"*.log\"",
            );
        }
        if let Some(r) = &l.rotate {
            if let Some(c) = &r.create
                && let Err(e) = parse_create(c)
            {
                return err("rotate", e, "write it like \"0640 app app\"");
            }
            if let Some(s) = &r.postrotate
                && s.lines().any(|l| l.trim() == "endscript")
            {
                return err(
                    "rotate",
                    "postrotate must not contain an `endscript` line".into(),
                    "bollwerk closes the script itself",
                );
            }
            if r.delaycompress == Some(true) && r.compress != Some(true) {
                return err(
                    "rotate",
                    "delaycompress needs compress = true".into(),
                    "set compress = true or drop delaycompress",
                );
            }
        }
    }
    Ok(())
}

fn bool_word(b: Option<bool>, yes: &'static str, no: Option<&'static str>) -> Option<&'static str> {
    match b {
        Some(true) => Some(yes),
        Some(false) => no,
        None => None,
    }
}

/// Renders `etc/logrotate.d/bollwerk-<name>` for the directory `dir`.
pub fn render_logrotate(l: &LogSpec, dir: &AbsPath, su: Option<(&str, &str)>) -> String {
    let r = l.rotate.clone().unwrap_or_default();
    let pattern = format!(
        "{}/{}",
        dir.as_str().trim_end_matches('/'),
        l.files.as_deref().unwrap_or("*.log")
    );
    let mut out = format!(
        "{MANAGED_HEADER}\n# Log rotation for [[logs]] {}\n{pattern} {{\n",
        l.name
    );
    let mut line = |s: &str| {
        out.push_str("    ");
        out.push_str(s);
        out.push('\n');
    };
    if let Some((u, g)) = su {
        line(&format!("su {u} {g}"));
    }
    if let Some(f) = r.frequency {
        line(f.word());
    }
    if let Some(k) = r.keep {
        line(&format!("rotate {k}"));
    }
    if let Some(s) = r.maxsize {
        line(&format!("maxsize {}", s.logrotate()));
    }
    for w in [
        bool_word(r.compress, "compress", Some("nocompress")),
        bool_word(r.delaycompress, "delaycompress", Some("nodelaycompress")),
        bool_word(r.notifempty, "notifempty", Some("ifempty")),
        bool_word(r.missingok, "missingok", Some("nomissingok")),
        bool_word(r.copytruncate, "copytruncate", Some("nocopytruncate")),
        bool_word(r.dateext, "dateext", Some("nodateext")),
    ]
    .into_iter()
    .flatten()
    {
        line(w);
    }
    if let Some(c) = &r.create {
        line(&format!(
            "create {}",
            c.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
    }
    if let Some(script) = &r.postrotate {
        line("sharedscripts");
        line("postrotate");
        for s in script.lines().filter(|s| !s.trim().is_empty()) {
            line(&format!("    {}", s.trim()));
        }
        line("endscript");
    }
    out.push_str("}\n");
    out
}

/// Renders the journald drop-in.
pub fn render_journald(j: &JournaldSection) -> String {
    let mut out = format!("{MANAGED_HEADER}\n[Journal]\n");
    if let Some(p) = j.persistent {
        out.push_str(&format!(
            "Storage={}\n",
            if p { "persistent" } else { "volatile" }
        ));
    }
    if let Some(s) = j.max_use {
        out.push_str(&format!("SystemMaxUse={}\n", s.systemd()));
    }
    if let Some(s) = j.max_file_size {
        out.push_str(&format!("SystemMaxFileSize={}\n", s.systemd()));
    }
    if let Some(d) = j.max_retention {
        out.push_str(&format!("MaxRetentionSec={}s\n", d.secs()));
    }
    if let Some(b) = j.compress {
        out.push_str(&format!("Compress={}\n", if b { "yes" } else { "no" }));
    }
    if let Some(b) = j.forward_to_syslog {
        out.push_str(&format!(
            "ForwardToSyslog={}\n",
            if b { "yes" } else { "no" }
        ));
    }
    out
}

/// The settings of `j` that are repeated in `etc/systemd/journald.conf` (the ones scanners
/// read only there): `Storage=` and `Compress=`.
pub fn journald_main_settings(j: &JournaldSection) -> Vec<(&'static str, Want)> {
    let mut out = Vec::new();
    if let Some(p) = j.persistent {
        let v = if p { "persistent" } else { "volatile" };
        out.push(("Storage", Want::Value(v.into())));
    }
    if let Some(b) = j.compress {
        out.push(("Compress", Want::Value(if b { "yes" } else { "no" }.into())));
    }
    out
}

/// The logs module (`[[logs]]` and `[journald]`).
pub struct Logs;

impl Module for Logs {
    fn name(&self) -> &'static str {
        "logs"
    }

    fn required_packages(&self, cx: &Context) -> Vec<String> {
        if cx.profile.profile.logs.iter().any(|l| l.rotate.is_some()) {
            vec!["logrotate".into()]
        } else {
            Vec::new()
        }
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let profile = &cx.profile.profile;
        if profile.logs.is_empty() && profile.journald.is_none() {
            return Ok(());
        }
        let acc = planned_accounts(cx, plan)?;
        let mut p = Planner::new(self.name(), plan);
        let mut wanted_files = Vec::new();
        let lookup = |p: &mut Planner, what: &str, name: &str, is_group: bool| -> Option<u32> {
            let id = if is_group {
                acc.gid(name)
            } else {
                acc.uid(name)
            };
            match id {
                Some(id) => Some(id),
                None => {
                    p.refuse(
                        format!(
                            "{} {name} of {what} does not exist in the target",
                            if is_group { "group" } else { "owner" }
                        ),
                        format!(
                            "create it with [[{}]], or fix {what}",
                            if is_group { "groups" } else { "users" }
                        ),
                    );
                    None
                }
            }
        };
        let validator: Arc<dyn Validator> = Arc::new(LogrotateCheck);
        for l in &profile.logs {
            let what = format!("logs.{}", l.name);
            let uid = match &l.owner {
                Some(o) => lookup(&mut p, &what, o.as_str(), false),
                None => Some(0),
            };
            let gid = match &l.group {
                Some(g) => lookup(&mut p, &what, g.as_str(), true),
                None => Some(0),
            };
            let (Some(uid), Some(gid)) = (uid, gid) else {
                continue;
            };
            let perms = Perms {
                mode: l.mode.map(|m| m.0).unwrap_or(0o755),
                uid,
                gid,
            };
            let Some(abs) = &l.path else {
                continue; // rejected when the profile was loaded
            };
            let dir = abs.rel();
            p.dir(&cx.root, &dir, perms, format!("log directory {dir}"))?;
            let Some(r) = &l.rotate else { continue };
            if let Some(c) = &r.create {
                let c = parse_create(c).map_err(Error::Runtime)?;
                let mut ok = true;
                if let Some(o) = &c.owner {
                    ok &= lookup(&mut p, &format!("{what}.rotate.create"), o, false).is_some();
                }
                if let Some(g) = &c.group {
                    ok &= lookup(&mut p, &format!("{what}.rotate.create"), g, true).is_some();
                }
                if !ok {
                    continue;
                }
            }
            // logrotate refuses directories writable by anyone but root unless told whom to
            // rotate as.
            let su_names = (uid != 0 || gid != 0 || perms.mode & 0o022 != 0).then(|| {
                (
                    l.owner.as_ref().map_or("root", |o| o.as_str()),
                    l.group.as_ref().map_or("root", |g| g.as_str()),
                )
            });
            if r.frequency == Some(Frequency::Hourly) {
                p.note(
                    Level::Info,
                    format!("{what}: hourly rotation needs logrotate to run hourly (Debian's logrotate.timer runs daily)"),
                );
            }
            let rel = RelPath::new(&format!("{LOGROTATE_DIR}/bollwerk-{}", l.name))
                .map_err(Error::Runtime)?;
            wanted_files.push(rel.clone());
            p.file_with(
                &cx.root,
                &rel,
                render_logrotate(l, abs, su_names).into_bytes(),
                Perms::root(0o644),
                format!("rotation of {abs}"),
                Visibility::Plain,
                Some(validator.clone()),
            )?;
        }
        if !profile.logs.is_empty() {
            // Our files for [[logs]] entries the profile no longer has.
            for n in cx.root.list_dir(&RelPath::lit(LOGROTATE_DIR))? {
                let rel = RelPath::lit(LOGROTATE_DIR)
                    .join(&n)
                    .map_err(Error::Runtime)?;
                if n.starts_with("bollwerk-")
                    && !wanted_files.contains(&rel)
                    && cx
                        .root
                        .read_string(&rel)?
                        .is_some_and(|t| t.starts_with(MANAGED_HEADER))
                {
                    p.remove(
                        &cx.root,
                        &rel,
                        format!("remove {rel} (no such [[logs]] entry any more)"),
                    )?;
                }
            }
        }
        if let Some(j) = &profile.journald {
            let mut changed = p.file(
                &cx.root,
                &RelPath::lit(JOURNALD_DROPIN),
                render_journald(j),
                Perms::root(0o644),
                "journald settings",
            )?;
            let main = RelPath::lit(JOURNALD_MAIN);
            let settings = journald_main_settings(j);
            if !settings.is_empty()
                && let Some(text) = cx.root.read_string(&main)?
            {
                let new = set_settings(&text, Syntax::Assign, &settings);
                if new != text {
                    changed |= p.file(
                        &cx.root,
                        &main,
                        new,
                        Perms::root(0o644),
                        format!(
                            "repeat {} in {main} (scanners read only the main file)",
                            settings
                                .iter()
                                .map(|(k, _)| format!("{k}="))
                                .collect::<Vec<_>>()
                                .join(" and ")
                        ),
                    )?;
                }
            }
            if changed {
                p.handler(Cmd::in_root(
                    "/usr/bin/systemctl",
                    &["restart", "systemd-journald.service"],
                ));
            }
        }
        Ok(())
    }
}

/// Validates logrotate candidates with the target's `logrotate -d`. Configuration errors
/// (`error: <file>:<line> …`) fail the validation; "stat … failed" for logs that do not exist
/// yet does not. User and group names that this run creates are replaced by `root` in the copy
/// logrotate reads, since they do not exist in the target's databases yet.
#[derive(Debug)]
pub struct LogrotateCheck;

impl Validator for LogrotateCheck {
    fn describe(&self) -> String {
        "logrotate -d".into()
    }

    fn validate(&self, cx: &Context, staged: &Staged) -> Result<()> {
        let new_names: Vec<String> = cx
            .profile
            .profile
            .logs
            .iter()
            .flat_map(|l| {
                let mut v: Vec<String> = Vec::new();
                v.extend(l.owner.iter().map(|o| o.as_str().to_string()));
                v.extend(l.group.iter().map(|g| g.as_str().to_string()));
                if let Some(c) = l.rotate.as_ref().and_then(|r| r.create.as_deref()) {
                    v.extend(c.split_whitespace().skip(1).map(str::to_string));
                }
                v
            })
            .filter(|n| cx.facts.accounts.uid(n).is_none() && cx.facts.accounts.gid(n).is_none())
            .collect();
        for (target, cand) in &staged.files {
            if !target.as_str().starts_with("etc/logrotate.d/bollwerk-") {
                continue;
            }
            let host = staged.host_path(cand);
            let text =
                std::fs::read_to_string(&host).map_err(|e| Error::io("reading", &host, e))?;
            let checked = substitute_new_names(&text, &new_names);
            let name = format!("{}.check", target.file_name());
            let check_host = staged.dir_host.join(&name);
            std::fs::write(&check_host, checked)
                .map_err(|e| Error::io("writing", &check_host, e))?;
            let check_in_root = format!("{}/{name}", staged.dir_in_root);
            let state = format!("{}/logrotate.state", staged.dir_in_root);
            let out = cx.runner.run(
                &cx.root,
                &Cmd::in_root("/usr/sbin/logrotate", &["-d", "-s", &state, &check_in_root]),
            )?;
            let errors: Vec<&str> = out
                .stderr
                .lines()
                .chain(out.stdout.lines())
                .filter(|l| {
                    (l.starts_with("error:") && l.contains(&check_in_root))
                        || l.contains("found error in")
                        || l.contains("insecure permissions")
                })
                .collect();
            if !errors.is_empty() || (out.code != 0 && out.combined().is_empty()) {
                return Err(Error::Validation {
                    path: target.to_string(),
                    validator: self.describe(),
                    output: errors
                        .join("\n")
                        .replace(&check_in_root, &target.absolute()),
                });
            }
        }
        Ok(())
    }
}

/// Replaces whole-word user/group names in `su` and `create` lines.
fn substitute_new_names(text: &str, names: &[String]) -> String {
    text.lines()
        .map(|l| {
            let t = l.trim_start();
            if !(t.starts_with("su ") || t.starts_with("create ")) {
                return l.to_string();
            }
            let indent = &l[..l.len() - t.len()];
            let words: Vec<String> = t
                .split_whitespace()
                .map(|w| {
                    if names.iter().any(|n| n == w) {
                        "root".to_string()
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            format!("{indent}{}", words.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> LogSpec {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn renders_the_issue_example() {
        let l = spec(
            "name = \"app\"\npath = \"/var/log/app\"\nowner = \"app\"\ngroup = \"app\"\nmode = \"0750\"\n[rotate]\nfrequency = \"daily\"\nkeep = 52\ncompress = true\ndelaycompress = true\nnotifempty = true\nmissingok = true\ncreate = \"0640 app app\"\nmaxsize = \"100M\"\npostrotate = \"systemctl reload app\"\n",
        );
        let text = render_logrotate(&l, l.path.as_ref().unwrap(), Some(("app", "app")));
        assert_eq!(
            text,
            format!(
                "{MANAGED_HEADER}\n# Log rotation for [[logs]] app\n/var/log/app/*.log {{\n    su app app\n    daily\n    rotate 52\n    maxsize 100M\n    compress\n    delaycompress\n    notifempty\n    missingok\n    create 0640 app app\n    sharedscripts\n    postrotate\n        systemctl reload app\n    endscript\n}}\n"
            )
        );
    }

    #[test]
    fn create_values() {
        assert_eq!(
            parse_create("0640 app adm").unwrap(),
            CreateSpec {
                mode: 0o640,
                owner: Some("app".into()),
                group: Some("adm".into())
            }
        );
        assert!(parse_create("640x").is_err());
        assert!(parse_create("0640 a b c").is_err());
        assert!(parse_create("0640 Bad").is_err());
    }

    #[test]
    fn new_names_become_root_only_in_su_and_create() {
        let t = "/var/log/app/*.log {\n    su app app\n    create 0640 app adm\n    postrotate\n        systemctl reload app\n    endscript\n}\n";
        let s = substitute_new_names(t, &["app".into()]);
        assert!(s.contains("    su root root\n"));
        assert!(s.contains("    create 0640 root adm\n"));
        assert!(s.contains("systemctl reload app"));
    }

    #[test]
    fn journald_dropin() {
        let j: JournaldSection =
            toml::from_str("persistent = true\nmax_use = \"1G\"\nmax_retention = \"90d\"\n")
                .unwrap();
        assert_eq!(
            render_journald(&j),
            format!(
                "{MANAGED_HEADER}\n[Journal]\nStorage=persistent\nSystemMaxUse=1G\nMaxRetentionSec=7776000s\n"
            )
        );
    }
}
