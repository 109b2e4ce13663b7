//! Log file access (`[logging]`): the mode rsyslog creates files with
//! (`etc/rsyslog.d/00-bollwerk-filemode.conf`, checked with `rsyslogd -N1`) and no more
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
use crate::modules::users::MANAGED_HEADER;
use crate::profile::types::Mode;
use crate::root::{Entry, Perms, RelPath};

/// The rsyslog drop-in bollwerk owns (sorted first: legacy directives apply to what follows).
pub const RSYSLOG_DROPIN: &str = "etc/rsyslog.d/00-bollwerk-filemode.conf";

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
        let Some(cand) = staged.files.get(&rel) else {
            return Ok(());
        };
        // A master file that reads the candidate, then the real configuration (which
        // includes etc/rsyslog.d): rsyslog checks them together, as it will run them.
        let master_host = staged.dir_host.join("rsyslog-check.conf");
        let master = format!("{}/rsyslog-check.conf", staged.dir_in_root);
        let main = if cx.root.exists(&RelPath::lit("etc/rsyslog.conf")) {
            "$IncludeConfig /etc/rsyslog.conf\n"
        } else {
            "*.* /dev/null\n"
        };
        std::fs::write(&master_host, format!("$IncludeConfig {cand}\n{main}"))
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
            } else {
                let validator: Arc<dyn Validator> = Arc::new(RsyslogCheck);
                if p.file_with(
                    &cx.root,
                    &RelPath::lit(RSYSLOG_DROPIN),
                    format!("{MANAGED_HEADER}\n$FileCreateMode {m}\n").into_bytes(),
                    Perms::root(0o644),
                    format!("rsyslog creates log files with mode {m}"),
                    Visibility::Plain,
                    Some(validator),
                )? {
                    p.handler(Cmd::in_root(
                        "/usr/bin/systemctl",
                        &["restart", "rsyslog.service"],
                    ));
                }
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
