//! `[firstboot]`: files and commands from instance user-data (cloud-config `write_files` and
//! `runcmd`, or the same keys in a TOML profile).
//!
//! `write_files` entries are ordinary planned files (in the plan with their diff, journaled,
//! rolled back like any other change); they are planned after users, so owners may be users the
//! profile creates. An `append` entry adds its content once (no change when the file already
//! ends with it), so a second apply stays at "0 changes". Paths owned by the sshd and sudo
//! modules are refused: writing them directly would bypass the lockout guard and `visudo`.
//!
//! `runcmd` runs only under `bollwerk firstboot --allow-runcmd` (once per instance, see
//! [`plan_runcmd`]); `bollwerk apply` notes that it skipped them.

use base64::Engine;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Level, Plan, Planner, Visibility};
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::modules::Module;
use crate::modules::users::MANAGED_HEADER;
use crate::profile::types::{AbsPath, Mode};
use crate::profile::{Layer, ProfileError};
use crate::root::{Perms, RelPath};

/// How `content` of a `write_files` entry is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileEncoding {
    /// UTF-8 text as written.
    Text,
    /// Base64 (binary content).
    Base64,
}

/// A file to write (cloud-config `write_files`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFileSpec {
    /// Absolute path in the target (identity for merging).
    pub path: AbsPath,
    /// Content (default empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// "text" (default) or "base64".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<FileEncoding>,
    /// Mode as an octal string (default "0644").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Owner as `user:group` (names from the target or numbers; default root:root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Append the content to the file instead of replacing it (once: no change when the file
    /// already ends with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<bool>,
}

/// A command of `runcmd`: a shell line or an argument vector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RunCmd {
    /// Run with `/bin/sh -c`.
    Shell(String),
    /// Run as is (the first word is looked up in `PATH`).
    Argv(Vec<String>),
}

/// `[firstboot]`: what first boot does besides applying the profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirstbootSection {
    /// Files to write (cloud-config `write_files`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_files: Vec<WriteFileSpec>,
    /// Commands run once per instance, last, only by `bollwerk firstboot --allow-runcmd`
    /// (cloud-config `runcmd`); their output goes to `/var/log/bollwerk-runcmd.log`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runcmd: Vec<RunCmd>,
    /// Regenerate SSH host keys when the instance is new (default true; cloud-config
    /// `ssh_deletekeys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regenerate_host_keys: Option<bool>,
}

/// Paths `write_files` may not write (owned by modules with safety checks).
const PROTECTED: &[(&str, &str)] = &[
    (
        "etc/ssh/sshd_config",
        "[ssh] (checked by the lockout guard and `sshd -t`)",
    ),
    ("etc/sudoers", "users' `sudo` (checked by `visudo`)"),
    ("etc/passwd", "[[users]]"),
    ("etc/shadow", "[[users]]"),
    ("etc/group", "[[users]] / [[groups]]"),
    ("etc/gshadow", "[[users]] / [[groups]]"),
];

fn protected(path: &str) -> Option<&'static str> {
    let rel = path.trim_start_matches('/');
    PROTECTED
        .iter()
        .find(|(p, _)| {
            rel == *p || rel.starts_with(&format!("{p}.d/")) || rel.starts_with(&format!("{p}/"))
        })
        .map(|(_, why)| *why)
}

/// Checks of `[firstboot]` that types cannot express.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(s: &FirstbootSection, layers: &[Layer]) -> Result<(), ProfileError> {
    for f in &s.write_files {
        let p = f.path.as_str();
        if let Some(owner) = protected(p) {
            return Err(crate::profile::error_at(
                layers,
                &["firstboot", "write_files", p],
                format!("write_files may not write {p}: it is managed by {owner}"),
            )
            .with_hint("express the setting with the profile keys instead"));
        }
        if let Some(o) = &f.owner {
            let (u, g) = o.split_once(':').unwrap_or((o, o));
            if u.is_empty() || g.is_empty() || o.matches(':').count() > 1 {
                return Err(crate::profile::error_at(
                    layers,
                    &["firstboot", "write_files", p, "owner"],
                    format!("owner {o:?} is not `user:group`"),
                )
                .with_hint("write e.g. \"root:adm\" or \"1000:1000\""));
            }
        }
        if f.encoding == Some(FileEncoding::Base64)
            && base64::engine::general_purpose::STANDARD
                .decode(f.content.as_deref().unwrap_or("").trim())
                .is_err()
        {
            return Err(crate::profile::error_at(
                layers,
                &["firstboot", "write_files", p, "content"],
                format!("content of {p} is not valid base64"),
            ));
        }
    }
    for c in &s.runcmd {
        if let RunCmd::Argv(a) = c
            && a.is_empty()
        {
            return Err(crate::profile::error_at(
                layers,
                &["firstboot", "runcmd"],
                "an empty command in runcmd",
            ));
        }
    }
    Ok(())
}

/// The firstboot module (`write_files`).
pub struct Firstboot;

/// A number, or the id `lookup` finds for a name.
fn resolve_id(name: &str, lookup: impl Fn(&str) -> Option<u32>) -> Option<u32> {
    name.parse().ok().or_else(|| lookup(name))
}

impl Module for Firstboot {
    fn name(&self) -> &'static str {
        "firstboot"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(s) = cx.profile.profile.firstboot.as_ref() else {
            return Ok(());
        };
        // Accounts as the users module will leave them (new users may own files).
        let passwd = cx
            .after(plan, &RelPath::lit("etc/passwd"))?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let group = cx
            .after(plan, &RelPath::lit("etc/group"))?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let passwd: crate::etcdb::Db<crate::etcdb::Passwd> = crate::etcdb::Db::parse(&passwd);
        let group: crate::etcdb::Db<crate::etcdb::Group> = crate::etcdb::Db::parse(&group);
        let mut p = Planner::new(self.name(), plan);
        for f in &s.write_files {
            let rel = f.path.rel();
            let content: Vec<u8> = match f.encoding.unwrap_or(FileEncoding::Text) {
                FileEncoding::Text => f.content.clone().unwrap_or_default().into_bytes(),
                FileEncoding::Base64 => base64::engine::general_purpose::STANDARD
                    .decode(f.content.as_deref().unwrap_or("").trim())
                    .map_err(|e| Error::Runtime(format!("content of {rel}: {e}")))?,
            };
            let (uid, gid) = match &f.owner {
                None => (0, 0),
                Some(o) => {
                    let (u, g) = o.split_once(':').unwrap_or((o, o));
                    let uid = resolve_id(u, |n| passwd.get(n).map(|e| e.uid)).ok_or_else(|| {
                        Error::Unsafe {
                            reason: format!("owner {u} of {rel} does not exist in the target"),
                            hint:
                                "create the user in the profile, or fix firstboot.write_files.owner"
                                    .into(),
                        }
                    })?;
                    let gid = resolve_id(g, |n| group.get(n).map(|e| e.gid)).ok_or_else(|| {
                        Error::Unsafe {
                            reason: format!("group {g} of {rel} does not exist in the target"),
                            hint: "fix firstboot.write_files.owner".into(),
                        }
                    })?;
                    (uid, gid)
                }
            };
            let perms = Perms {
                mode: f.mode.map(|m| m.0).unwrap_or(0o644),
                uid,
                gid,
            };
            // user-data files often hold secrets (tokens, keys): never in plans or journals.
            let vis = Visibility::Secret;
            if f.append == Some(true) {
                let current = cx.after(p.plan(), &rel)?.unwrap_or_default();
                if !content.is_empty() && current.ends_with(&content) {
                    continue;
                }
                let mut new = current.clone();
                new.extend_from_slice(&content);
                let perms = match cx.root.entry(&rel)? {
                    crate::root::Entry::File { perms: cur, .. }
                        if f.mode.is_none() && f.owner.is_none() =>
                    {
                        cur
                    }
                    _ => perms,
                };
                p.file_with(
                    &cx.root,
                    &rel,
                    new,
                    perms,
                    format!("append to {rel} (write_files)"),
                    vis,
                    None,
                )?;
            } else {
                p.file_with(
                    &cx.root,
                    &rel,
                    content,
                    perms,
                    format!("write {rel} (write_files)"),
                    vis,
                    None,
                )?;
            }
        }
        if !s.runcmd.is_empty() {
            p.note(
                Level::Info,
                format!(
                    "firstboot.runcmd ({} command{}) runs only under `bollwerk firstboot --allow-runcmd`, once per instance",
                    s.runcmd.len(),
                    if s.runcmd.len() == 1 { "" } else { "s" }
                ),
            );
        }
        Ok(())
    }
}

/// Where `runcmd` is written before it runs.
pub const RUNCMD_SCRIPT: &str = "var/lib/bollwerk/firstboot/runcmd.sh";
/// Where its output goes.
pub const RUNCMD_LOG: &str = "var/log/bollwerk-runcmd.log";

/// Renders `runcmd` as one shell script: traced (`set -x`), output appended to the log, stops at
/// the first failing command.
pub fn render_runcmd(cmds: &[RunCmd]) -> String {
    let mut s = format!(
        "#!/bin/sh\n{MANAGED_HEADER}\n# runcmd from instance user-data, run once per instance by `bollwerk firstboot`.\n# The trace may show secrets: the log is root's alone (0600), the commands get umask 022.\numask 077\nexec >>/{RUNCMD_LOG} 2>&1\nchmod 0600 /{RUNCMD_LOG}\numask 022\necho \"== runcmd $(date -u +%Y-%m-%dT%H:%M:%SZ)\"\nset -ex\n"
    );
    for c in cmds {
        match c {
            RunCmd::Shell(line) => {
                s.push_str(line);
                s.push('\n');
            }
            RunCmd::Argv(argv) => {
                s.push_str(
                    &argv
                        .iter()
                        .map(|a| crate::exec::shell_quote(a))
                        .collect::<Vec<_>>()
                        .join(" "),
                );
                s.push('\n');
            }
        }
    }
    s
}

/// Plans `runcmd` (firstboot only): the script as a planned file, then one command running it.
///
/// # Errors
/// When the current state cannot be read.
pub fn plan_runcmd(cx: &Context, plan: &mut Plan, cmds: &[RunCmd]) -> Result<()> {
    if cmds.is_empty() {
        return Ok(());
    }
    let mut p = Planner::new("firstboot", plan);
    let script = RelPath::lit(RUNCMD_SCRIPT);
    p.file(
        &cx.root,
        &script,
        render_runcmd(cmds),
        Perms::root(0o700),
        "runcmd script",
    )?;
    let log = RelPath::lit(RUNCMD_LOG);
    p.run(
        Cmd::in_root("/bin/sh", &[&script.absolute()])
            .timeout(std::time::Duration::from_secs(1800)),
        vec![log],
        format!(
            "run {} runcmd command{} (output in /{RUNCMD_LOG})",
            cmds.len(),
            if cmds.len() == 1 { "" } else { "s" }
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runcmd_script_quotes_argv() {
        let s = render_runcmd(&[
            RunCmd::Shell("echo hi > /tmp/x".into()),
            RunCmd::Argv(vec!["touch".into(), "/tmp/a b".into()]),
        ]);
        assert!(
            s.contains("set -ex\necho hi > /tmp/x\ntouch '/tmp/a b'\n"),
            "{s}"
        );
        assert!(
            s.contains("umask 077\nexec >>/var/log/bollwerk-runcmd.log 2>&1\nchmod 0600 /var/log/bollwerk-runcmd.log\numask 022\n"),
            "the trace log is 0600: {s}"
        );
        // The log really ends up 0600 (run the header with a scratch log path).
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runcmd.log");
        std::fs::write(&log, "old\n").unwrap();
        std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let script = s
            .replace(&format!("/{RUNCMD_LOG}"), &log.to_string_lossy())
            .replace("echo hi > /tmp/x\ntouch '/tmp/a b'\n", "echo traced\n");
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .status()
            .unwrap();
        assert!(st.success());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            std::fs::read_to_string(&log)
                .unwrap()
                .contains("echo traced")
        );
    }

    #[test]
    fn protected_paths() {
        assert!(protected("/etc/ssh/sshd_config.d/99-x.conf").is_some());
        assert!(protected("/etc/sudoers.d/x").is_some());
        assert!(protected("/etc/motd").is_none());
    }
}
