//! sudo defaults (`[sudo]`): the drop-in `etc/sudoers.d/bollwerk-defaults` with `use_pty`,
//! `logfile` and `timestamp_timeout` (CIS 5.2.2, 5.2.3, 5.2.6), validated with the target's
//! own `visudo -c -f` before it is activated. Who may use sudo stays with the users module
//! (`etc/sudoers.d/bollwerk`).

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Level, Plan, Planner, Validator, Visibility};
use crate::error::{Error, Result};
use crate::modules::Module;
use crate::modules::users::MANAGED_HEADER;
use crate::profile::types::AbsPath;
use crate::profile::{Layer, ProfileError};
use crate::root::{Perms, RelPath};

/// The drop-in bollwerk owns (no dot in the name: sudo skips such files).
pub const DROPIN: &str = "etc/sudoers.d/bollwerk-defaults";

/// `[sudo]`: global sudo defaults. Unset keys are not written.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SudoSection {
    /// `Defaults use_pty`: run commands in a pseudo-terminal, so a background process cannot
    /// keep reading the terminal after sudo ends (CIS 5.2.2). `false` writes `!use_pty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_pty: Option<bool>,
    /// `Defaults logfile="…"`: sudo's own log of every command (CIS 5.2.3), e.g.
    /// "/var/log/sudo.log".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logfile: Option<AbsPath>,
    /// `Defaults timestamp_timeout=N`: minutes a successful authentication is remembered
    /// (CIS 5.2.6: 15 or less; 0 asks every time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_timeout: Option<u32>,
}

/// Range checks of `[sudo]`.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(s: &SudoSection, layers: &[Layer]) -> std::result::Result<(), ProfileError> {
    if let Some(t) = s.timestamp_timeout
        && t > 1440
    {
        return Err(crate::profile::error_at(
            layers,
            &["sudo", "timestamp_timeout"],
            format!("timestamp_timeout = {t} minutes is more than a day"),
        )
        .with_hint("CIS asks for 15 minutes or less"));
    }
    if let Some(l) = &s.logfile
        && l.as_str().contains(['"', '\\', ',', ' '])
    {
        return Err(crate::profile::error_at(
            layers,
            &["sudo", "logfile"],
            format!("logfile {l} contains a quote, backslash, comma or space"),
        )
        .with_hint("use a plain path such as \"/var/log/sudo.log\""));
    }
    Ok(())
}

/// Renders the drop-in.
pub fn render(s: &SudoSection) -> String {
    let mut out = format!("{MANAGED_HEADER}\n");
    match s.use_pty {
        Some(true) => out.push_str("Defaults use_pty\n"),
        Some(false) => out.push_str("Defaults !use_pty\n"),
        None => {}
    }
    if let Some(l) = &s.logfile {
        out.push_str(&format!("Defaults logfile=\"{l}\"\n"));
    }
    if let Some(t) = s.timestamp_timeout {
        out.push_str(&format!("Defaults timestamp_timeout={t}\n"));
    }
    out
}

/// Lines of the target's sudoers files that switch re-authentication off globally.
fn authenticate_disabled(cx: &Context) -> Result<Vec<String>> {
    let mut files = vec![RelPath::lit("etc/sudoers")];
    for n in cx.root.list_dir(&RelPath::lit("etc/sudoers.d"))? {
        if !n.contains('.') && !n.ends_with('~') && n != "bollwerk-defaults" {
            files.push(RelPath::new(&format!("etc/sudoers.d/{n}")).map_err(Error::Runtime)?);
        }
    }
    let mut out = Vec::new();
    for f in files {
        let text = cx.root.read_string(&f)?.unwrap_or_default();
        for (i, l) in text.lines().enumerate() {
            let t = l.trim_start();
            if t.starts_with("Defaults") && t.contains("!authenticate") {
                out.push(format!("{f}:{}", i + 1));
            }
        }
    }
    Ok(out)
}

/// The sudo defaults module.
pub struct Sudo;

impl Module for Sudo {
    fn name(&self) -> &'static str {
        "sudo"
    }

    fn required_packages(&self, cx: &Context) -> Vec<String> {
        match &cx.profile.profile.sudo {
            Some(_) => vec!["sudo".into()],
            None => Vec::new(),
        }
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(s) = &cx.profile.profile.sudo else {
            return Ok(());
        };
        let mut p = Planner::new(self.name(), plan);
        let rel = RelPath::lit(DROPIN);
        if s.use_pty.is_none() && s.logfile.is_none() && s.timestamp_timeout.is_none() {
            p.remove(
                &cx.root,
                &rel,
                format!("remove {rel} ([sudo] sets nothing)"),
            )?;
            return Ok(());
        }
        let installed = cx.root.exists(&RelPath::lit("usr/bin/sudo"))
            || p.plan().requested_packages.iter().any(|(_, n)| n == "sudo");
        if !installed {
            p.note(
                Level::Warning,
                "sudo is not installed in the target: the defaults drop-in has no effect until it is",
            );
        }
        for at in authenticate_disabled(cx)? {
            p.note(
                Level::Warning,
                format!(
                    "{at} disables re-authentication (`!authenticate`); CIS 5.2.5 asks to remove it"
                ),
            );
        }
        let validator: Arc<dyn Validator> = Arc::new(crate::modules::users::Visudo(DROPIN));
        p.file_with(
            &cx.root,
            &rel,
            render(s).into_bytes(),
            Perms::root(0o440),
            format!("sudo defaults in {rel}"),
            Visibility::Plain,
            Some(validator),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cis_defaults() {
        let s = SudoSection {
            use_pty: Some(true),
            logfile: Some("/var/log/sudo.log".parse().unwrap()),
            timestamp_timeout: Some(15),
        };
        assert_eq!(
            render(&s),
            format!(
                "{MANAGED_HEADER}\nDefaults use_pty\nDefaults logfile=\"/var/log/sudo.log\"\nDefaults timestamp_timeout=15\n"
            )
        );
    }
}
