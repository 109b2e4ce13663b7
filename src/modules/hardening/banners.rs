//! Login banners (`[banners]`): `etc/issue` (local console), `etc/issue.net` (remote; what
//! sshd shows with `[ssh] banner = "/etc/issue.net"`) and `etc/motd`, written from the
//! profile's text with mode 0644 root:root (CIS 1.6.1–1.6.6; an empty motd removes the
//! file, which CIS allows and OpenSCAP accepts), and the executable bits of
//! `etc/update-motd.d/*`, whose scripts print the kernel and OS version at every login.
//!
//! Banner texts must not leak the OS: getty's `\m \r \s \v` escapes are rejected at load time,
//! and a text naming the target's distribution gets a warning.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Level, Plan, Planner};
use crate::error::{Error, Result};
use crate::modules::Module;
use crate::profile::{Layer, ProfileError};
use crate::root::{Entry, Perms, RelPath};

/// `[banners]`: login banners. Unset keys leave the file alone.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BannersSection {
    /// Text of `/etc/issue`, shown before a local console login (CIS 1.6.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue: Option<String>,
    /// Text of `/etc/issue.net`, shown before a remote login when sshd's `Banner` points to it
    /// (CIS 1.6.3; set `[ssh] banner = "/etc/issue.net"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_net: Option<String>,
    /// Text of `/etc/motd`, shown after login (CIS 1.6.1). An empty string removes the file:
    /// an absent motd prints the same nothing as an empty one, CIS allows removing it, and
    /// OpenSCAP's CIS content accepts only an absent file or its own exact sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motd: Option<String>,
    /// false: make the scripts in `/etc/update-motd.d` non-executable, so no login prints the
    /// kernel or OS version (Debian's `10-uname`, Ubuntu's `00-header`); true: make them
    /// executable again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_motd: Option<bool>,
}

/// getty escapes that print machine, release, OS name and version.
const LEAKY_ESCAPES: &[&str] = &["\\m", "\\r", "\\s", "\\v"];

/// Rejects banner texts with getty escapes that leak the OS.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(
    s: &BannersSection,
    layers: &[Layer],
) -> std::result::Result<(), ProfileError> {
    for (key, text) in [
        ("issue", &s.issue),
        ("issue_net", &s.issue_net),
        ("motd", &s.motd),
    ] {
        if let Some(t) = text
            && let Some(e) = LEAKY_ESCAPES.iter().find(|e| t.contains(*e))
        {
            return Err(crate::profile::error_at(
                layers,
                &["banners", key],
                format!("banners.{key} contains `{e}`, which prints the OS or kernel version"),
            )
            .with_hint(
                "write a plain legal notice without \\m, \\r, \\s or \\v (CIS 1.6.1-1.6.3)",
            ));
        }
    }
    Ok(())
}

fn with_newline(t: &str) -> String {
    if t.is_empty() || t.ends_with('\n') {
        t.to_string()
    } else {
        format!("{t}\n")
    }
}

/// The banners module.
pub struct Banners;

impl Module for Banners {
    fn name(&self) -> &'static str {
        "banners"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(s) = &cx.profile.profile.banners else {
            return Ok(());
        };
        let mut p = Planner::new(self.name(), plan);
        let os_id = cx.facts.os.id.to_ascii_lowercase();
        for (key, path, text) in [
            ("issue", "etc/issue", &s.issue),
            ("issue_net", "etc/issue.net", &s.issue_net),
            ("motd", "etc/motd", &s.motd),
        ] {
            let Some(text) = text else { continue };
            if key == "motd" && text.is_empty() {
                let rel = RelPath::lit(path);
                p.remove(
                    &cx.root,
                    &rel,
                    format!("remove {rel} (banners.motd is empty)"),
                )?;
                continue;
            }
            if !os_id.is_empty() && text.to_ascii_lowercase().contains(&os_id) {
                p.note(
                    Level::Warning,
                    format!("banners.{key} names the OS (`{os_id}`): CIS treats that as an information leak"),
                );
            }
            let rel = RelPath::lit(path);
            p.file(
                &cx.root,
                &rel,
                with_newline(text),
                Perms::root(0o644),
                format!("banner {rel}"),
            )?;
        }
        if s.issue_net.is_some()
            && cx
                .profile
                .profile
                .ssh
                .as_ref()
                .and_then(|x| x.banner.as_ref())
                .is_none()
        {
            p.note(
                Level::Info,
                "banners.issue_net is written, but sshd shows it only with `[ssh] banner = \"/etc/issue.net\"`",
            );
        }
        if let Some(dynamic) = s.dynamic_motd {
            let dir = RelPath::lit("etc/update-motd.d");
            for name in cx.root.list_dir(&dir)? {
                let rel = dir.join(&name).map_err(Error::Runtime)?;
                let Entry::File { perms, .. } = cx.root.entry(&rel)? else {
                    continue;
                };
                let mode = if dynamic {
                    perms.mode | 0o755
                } else {
                    perms.mode & !0o111
                };
                let verb = if dynamic { "enable" } else { "disable" };
                p.perms(
                    &cx.root,
                    &rel,
                    Perms { mode, ..perms },
                    format!("{verb} the login message script {rel}"),
                )?;
            }
        }
        Ok(())
    }
}
