//! Log file access (`[logging]`): the mode rsyslog creates files with, set exactly once
//! (OpenSCAP's CIS content fails a `$FileCreateMode` that appears in two files): in place on the
//! `$FileCreateMode` line of `etc/rsyslog.conf` where the distro has one (Debian's sets 0640
//! before its rules and `$IncludeConfig`), otherwise in the drop-in
//! `etc/rsyslog.d/00-bollwerk-filemode.conf`; checked with `rsyslogd -N1`. And no more
//! permission bits than CIS allows on the files already in `var/log` (CIS 6.1.2.x, 6.1.3.1):
//! 0640 in general, 0664 for `wtmp`/`lastlog`, 0660 for `btmp`. Owners are never changed
//! (services must keep writing their logs). journald's settings belong to `[journald]`.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Level, Plan, Planner, Staged, Validator, Visibility};
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::modules::Module;
use crate::modules::hardening::util::{Syntax, Want, get_setting, set_settings};
use crate::modules::users::MANAGED_HEADER;
use crate::profile::types::Mode;
use crate::root::{Entry, Perms, RelPath};

/// The rsyslog drop-in bollwerk owns (sorted first: legacy directives apply to what follows).
pub const RSYSLOG_DROPIN: &str = "etc/rsyslog.d/00-bollwerk-filemode.conf";
/// rsyslog's main file (a dpkg conffile of `rsyslog`).
pub const RSYSLOG_MAIN: &str = "etc/rsyslog.conf";
const FILE_CREATE_MODE: &str = "$FileCreateMode";

/// `[logging]`: log file modes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoggingSection {
    /// Mode of files rsyslog creates (`$FileCreateMode`), e.g. "0640" (CIS: 0640 or less).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rsyslog_file_mode: Option<Mode>,
    /// true: remove permission bits beyond 0640 (0664 `wtmp`/`lastlog`, 0660 `btmp`) from
    /// the files in /var/log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restrict_var_log: Option<bool>,
}

/// The most permissive mode CIS accepts for a log file of this name.
pub fn max_log_mode(name: &str) -> u32 {
    if name == "README" || name.starts_with("wtmp") || name.starts_with("lastlog") {
        0o664
    } else if name.starts_with("btmp") {
        0o660
    } else {
        0o640
    }
}

/// `rsyslogd -N1`: rsyslog's own config check, on the candidate together with the real
/// configuration.
#[derive(Debug)]
pub struct RsyslogCheck;

impl Validator for RsyslogCheck {
    fn describe(&self) -> String {
        "rsyslogd -N1".into()
    }

    fn validate(&self, cx: &Context, staged: &Staged) -> Result<()> {
        let rel = RelPath::lit(RSYSLOG_DROPIN);
        let dropin = staged.files.get(&rel);
        let main_cand = staged.files.get(&RelPath::lit(RSYSLOG_MAIN));
        if dropin.is_none() && main_cand.is_none() {
            return Ok(());
        }
        // A master file that reads the candidate drop-in, then the main configuration (the
        // candidate one if staged; it includes etc/rsyslog.d): rsyslog checks them together,
        // as it will run them.
        let master_host = staged.dir_host.join("rsyslog-check.conf");
        let master = format!("{}/rsyslog-check.conf", staged.dir_in_root);
        let first = dropin
            .map(|c| format!("$IncludeConfig {c}\n"))
            .unwrap_or_default();
        let main = match main_cand {
            Some(c) => format!("$IncludeConfig {c}\n"),
            None if cx.root.exists(&RelPath::lit(RSYSLOG_MAIN)) => {
                "$IncludeConfig /etc/rsyslog.conf\n".to_string()
            }
            None => "*.* /dev/null\n".to_string(),
        };
        std::fs::write(&master_host, format!("{first}{main}"))
            .map_err(|e| Error::io("staging", &master_host, e))?;
        let out = cx.runner.run(
            &cx.root,
            &Cmd::in_root("/usr/sbin/rsyslogd", &["-N1", "-f", &master]),
        )?;
        if out.success() {
            Ok(())
        } else {
            Err(Error::Validation {
                path: rel.to_string(),
                validator: self.describe(),
                output: out.combined(),
            })
        }
    }
}

fn walk(cx: &Context, dir: &RelPath, p: &mut Planner, depth: usize) -> Result<()> {
    if depth > 8 {
        return Ok(());
    }
    for name in cx.root.list_dir(dir)? {
        let rel = dir.join(&name).map_err(Error::Runtime)?;
        match cx.root.entry(&rel)? {
            Entry::File { perms, .. } => {
                let mode = perms.mode & max_log_mode(&name);
                if mode != perms.mode {
                    p.perms(
                        &cx.root,
                        &rel,
                        Perms { mode, ..perms },
                        format!("restrict log file {rel}"),
                    )?;
                }
            }
            Entry::Dir { .. } => walk(cx, &rel, p, depth + 1)?,
            _ => {}
        }
    }
    Ok(())
}

/// Plans `$FileCreateMode m` in exactly one place: the main file's own line when it has one
/// (and then no drop-in of ours), else our drop-in. Returns whether anything changes.
fn plan_file_create_mode(cx: &Context, p: &mut Planner, m: Mode) -> Result<bool> {
    let validator: Arc<dyn Validator> = Arc::new(RsyslogCheck);
    let main_rel = RelPath::lit(RSYSLOG_MAIN);
    let dropin = RelPath::lit(RSYSLOG_DROPIN);
    let main = cx.root.read_string(&main_rel)?;
    let in_main = main
        .as_deref()
        .is_some_and(|t| get_setting(t, FILE_CREATE_MODE).is_some());
    let mut changed = false;
    if let (true, Some(text)) = (in_main, &main) {
        let new = set_settings(
            text,
            Syntax::Spaced,
            &[(FILE_CREATE_MODE, Want::Value(m.to_string()))],
        );
        if new != *text {
            changed |= p.file_with(
                &cx.root,
                &main_rel,
                new.into_bytes(),
                Perms::root(0o644),
                format!("rsyslog creates log files with mode {m} ({main_rel}'s own $FileCreateMode line)"),
                Visibility::Plain,
                Some(validator),
            )?;
        }
        if cx
            .root
            .read_string(&dropin)?
            .is_some_and(|t| t.starts_with(MANAGED_HEADER))
        {
            changed |= p.remove(
                &cx.root,
                &dropin,
                format!("remove {dropin}: $FileCreateMode is set once, in {main_rel}"),
            )?;
        }
    } else {
        changed |= p.file_with(
            &cx.root,
            &dropin,
            format!("{MANAGED_HEADER}\n{FILE_CREATE_MODE} {m}\n").into_bytes(),
            Perms::root(0o644),
            format!("rsyslog creates log files with mode {m}"),
            Visibility::Plain,
            Some(validator),
        )?;
    }
    Ok(changed)
}

/// The logging module.
pub struct Logging;

impl Module for Logging {
    fn name(&self) -> &'static str {
        "logging"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(s) = &cx.profile.profile.logging else {
            return Ok(());
        };
        let mut p = Planner::new(self.name(), plan);
        if let Some(m) = s.rsyslog_file_mode {
            if !cx.root.exists(&RelPath::lit("usr/sbin/rsyslogd")) {
                p.note(
                    Level::Info,
                    "rsyslog is not installed in the target: logging.rsyslog_file_mode is not applied",
                );
            } else if plan_file_create_mode(cx, &mut p, m)? {
                p.handler(Cmd::in_root(
                    "/usr/bin/systemctl",
                    &["restart", "rsyslog.service"],
                ));
            }
        }
        if s.restrict_var_log == Some(true) {
            walk(cx, &RelPath::lit("var/log"), &mut p, 0)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_modes() {
        assert_eq!(max_log_mode("wtmp"), 0o664);
        assert_eq!(max_log_mode("btmp.1"), 0o660);
        assert_eq!(max_log_mode("syslog"), 0o640);
    }
}
