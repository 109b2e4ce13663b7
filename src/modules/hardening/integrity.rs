//! File integrity (`[integrity]`, opt-in: building the database reads every file): AIDE
//! installed, its database built by bollwerk's `bollwerk-aide-init.timer` a while after boot
//! (never inline while bollwerk or the first boot runs), and the distro's daily check timer
//! enabled (CIS 6.3.1–6.3.2). The units are checked with `systemd-analyze verify`.
//!
//! In `etc/aide/aide.conf` itself (the file OpenSCAP and Lynis read; aide.conf.d is not
//! theirs), edited in place with every other line byte-identical: `Checksums = sha512` (Lynis
//! FINT-4402) and a marked block that covers the audit tools with
//! `p+i+n+u+g+s+b+acl+xattrs+sha512` (CIS 6.3.3, OpenSCAP `aide_check_audit_tools`), checked
//! with `aide --config-check` before it is activated.
//!
//! By default the database is not built during apply: `aideinit` reads every file of the root
//! (9.7 s on the 1.1 GB testbed root with SHA-512 only, minutes on a full server), which would
//! make every first apply and first boot that slow; the timer builds it a while after boot.
//! `build_database_on_apply = true` runs `aideinit` during apply when there is no database
//! (the database files are journaled, so rollback removes them).

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Level, Plan, Planner, Validator, Visibility};
use crate::error::Result;
use crate::exec::Cmd;
use crate::modules::Module;
use crate::modules::users::MANAGED_HEADER;
use crate::profile::types::Duration;
use crate::root::{Perms, RelPath};

use super::util::{VerifyUnits, find_unit, is_enabled, plan_disable, plan_enable};

/// The database build service bollwerk owns.
pub const INIT_SERVICE: &str = "etc/systemd/system/bollwerk-aide-init.service";
/// Its timer.
pub const INIT_TIMER: &str = "etc/systemd/system/bollwerk-aide-init.timer";
const AIDEINIT: &str = "/usr/sbin/aideinit";
/// The distro's daily check timer (aide-common).
const CHECK_TIMER: &str = "dailyaidecheck.timer";
/// The database aideinit writes.
pub const DATABASE: &str = "var/lib/aide/aide.db";
/// AIDE's main configuration (edited in place).
pub const AIDE_CONF: &str = "etc/aide/aide.conf";
/// First line of bollwerk's block in aide.conf.
pub const BLOCK_BEGIN: &str =
    "# BEGIN bollwerk integrity (managed by bollwerk — local edits are overwritten)";
/// Last line of the block.
pub const BLOCK_END: &str = "# END bollwerk integrity";
/// The audit tools AIDE must cover (CIS 6.3.3).
pub const AUDIT_TOOLS: &[&str] = &[
    "/usr/sbin/auditctl",
    "/usr/sbin/auditd",
    "/usr/sbin/ausearch",
    "/usr/sbin/aureport",
    "/usr/sbin/autrace",
    "/usr/sbin/augenrules",
];

/// The block bollwerk keeps at the end of aide.conf.
pub fn render_block() -> String {
    let mut b = format!(
        "{BLOCK_BEGIN}\n# Audit tools (CIS 6.3.3): permissions, inode, links, owner, group, size, blocks, ACLs,\n# extended attributes and a SHA-512 checksum.\n"
    );
    for t in AUDIT_TOOLS {
        b.push_str(&format!("{t} p+i+n+u+g+s+b+acl+xattrs+sha512\n"));
    }
    b.push_str(BLOCK_END);
    b.push('\n');
    b
}

/// aide.conf with `Checksums = sha512` and bollwerk's block (replaced where it is, else
/// appended); every other line byte-identical.
pub fn edit_aide_conf(text: &str) -> String {
    let text = super::util::set_settings(
        text,
        super::util::Syntax::SpacedEq,
        &[("Checksums", super::util::Want::Value("sha512".into()))],
    );
    let block = render_block();
    if let (Some(b), Some(e)) = (text.find(BLOCK_BEGIN), text.find(BLOCK_END))
        && e > b
    {
        let end = text[e..].find('\n').map_or(text.len(), |i| e + i + 1);
        return format!("{}{block}{}", &text[..b], &text[end..]);
    }
    let sep = if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    format!("{text}{sep}{block}")
}

/// `[integrity]`: file integrity checking with AIDE.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegritySection {
    /// true: install AIDE, build its database from a timer and check daily; false: remove
    /// bollwerk's timer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aide: Option<bool>,
    /// How long after boot the database is built (default "15min").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_delay: Option<Duration>,
    /// true: build the database during apply when there is none (`aideinit`; it reads every
    /// file: about 10 s on a 1 GB root, minutes on a full server), so the baseline is taken
    /// when the host is hardened; the timer stays as the fallback. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_database_on_apply: Option<bool>,
}

/// Renders the database build service.
pub fn render_service() -> String {
    format!(
        "{MANAGED_HEADER}\n[Unit]\nDescription=Build the AIDE database (bollwerk [integrity])\nDocumentation=man:aideinit(8)\nConditionPathExists=!/var/lib/aide/aide.db\nAfter=local-fs.target\n\n[Service]\nType=oneshot\nNice=19\nIOSchedulingClass=idle\nExecStart={AIDEINIT} --yes --force\n"
    )
}

/// Renders the timer.
pub fn render_timer(delay_secs: u64) -> String {
    format!(
        "{MANAGED_HEADER}\n[Unit]\nDescription=Build the AIDE database a while after boot (bollwerk [integrity])\n\n[Timer]\nOnBootSec={delay_secs}s\nAccuracySec=1min\n\n[Install]\nWantedBy=timers.target\n"
    )
}

/// `aide --config-check` on the candidate aide.conf (its includes are read from the root).
#[derive(Debug)]
pub struct AideConfigCheck;

impl Validator for AideConfigCheck {
    fn slow(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        "aide --config-check".into()
    }

    fn validate(&self, cx: &Context, staged: &crate::engine::Staged) -> Result<()> {
        let rel = RelPath::lit(AIDE_CONF);
        let Some(cand) = staged.files.get(&rel) else {
            return Ok(());
        };
        let out = cx.runner.run(
            &cx.root,
            &Cmd::in_root("/usr/bin/aide", &["--config-check", "--config", cand]),
        )?;
        if out.success() {
            Ok(())
        } else {
            Err(crate::error::Error::Validation {
                path: rel.to_string(),
                validator: self.describe(),
                output: out.combined(),
            })
        }
    }
}

/// The integrity module.
pub struct Integrity;

impl Module for Integrity {
    fn name(&self) -> &'static str {
        "integrity"
    }

    fn required_packages(&self, cx: &Context) -> Vec<String> {
        match &cx.profile.profile.integrity {
            Some(IntegritySection {
                aide: Some(true), ..
            }) => {
                vec!["aide".into(), "aide-common".into()]
            }
            _ => Vec::new(),
        }
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(aide) = cx.profile.profile.integrity.as_ref().and_then(|s| s.aide) else {
            return Ok(());
        };
        let mut p = Planner::new(self.name(), plan);
        let service = RelPath::lit(INIT_SERVICE);
        let timer = RelPath::lit(INIT_TIMER);
        if !aide {
            plan_disable(cx, &mut p, "bollwerk-aide-init.timer")?;
            p.remove(&cx.root, &timer, format!("remove {timer}"))?;
            p.remove(&cx.root, &service, format!("remove {service}"))?;
            return Ok(());
        }
        let delay = cx
            .profile
            .profile
            .integrity
            .as_ref()
            .and_then(|s| s.init_delay)
            .map_or(900, |d| d.secs().max(60));
        let validator: Arc<dyn Validator> = Arc::new(VerifyUnits {
            units: vec![INIT_SERVICE, INIT_TIMER],
            requires: Some(AIDEINIT),
        });
        let mut changed = p.file_with(
            &cx.root,
            &service,
            render_service().into_bytes(),
            Perms::root(0o644),
            "AIDE database build (service)".into(),
            Visibility::Plain,
            Some(validator.clone()),
        )?;
        changed |= p.file_with(
            &cx.root,
            &timer,
            render_timer(delay).into_bytes(),
            Perms::root(0o644),
            format!("AIDE database build {delay} s after boot (timer)"),
            Visibility::Plain,
            Some(validator),
        )?;
        let conf = RelPath::lit(AIDE_CONF);
        if let Some(text) = cx.root.read_string(&conf)? {
            let perms = match cx.root.entry(&conf)? {
                crate::root::Entry::File { perms, .. } => perms,
                _ => Perms::root(0o644),
            };
            changed |= p.file_with(
                &cx.root,
                &conf,
                edit_aide_conf(&text).into_bytes(),
                perms,
                "AIDE: SHA-512 checksums, audit tools covered".into(),
                Visibility::Plain,
                Some(Arc::new(AideConfigCheck)),
            )?;
        }
        let on_apply = cx
            .profile
            .profile
            .integrity
            .as_ref()
            .and_then(|s| s.build_database_on_apply)
            == Some(true);
        if on_apply && !cx.root.exists(&RelPath::lit(DATABASE)) {
            if cx.root.exists(&RelPath::lit("usr/sbin/aideinit")) {
                // umask 027: aideinit's logs in /var/log/aide must not be world-readable (the
                // logging module would restrict them on the next run: no convergence).
                p.run(
                    Cmd::in_root(
                        "/bin/sh",
                        &["-c", "umask 027; exec /usr/sbin/aideinit --yes --force"],
                    ),
                    vec![RelPath::lit("var/lib/aide"), RelPath::lit("var/log/aide")],
                    "build the AIDE database now (aideinit reads every file)",
                );
            } else {
                p.note(
                    Level::Info,
                    "the AIDE database is built once aide is installed (a second run of this apply)",
                );
            }
        }
        if !is_enabled(cx, p.plan(), "bollwerk-aide-init.timer")? {
            changed |= plan_enable(cx, &mut p, "bollwerk-aide-init.timer")?;
        }
        if find_unit(cx, p.plan(), CHECK_TIMER)?.is_some() {
            if !is_enabled(cx, p.plan(), CHECK_TIMER)? {
                changed |= plan_enable(cx, &mut p, CHECK_TIMER)?;
            }
        } else {
            p.note(
                Level::Info,
                format!("{CHECK_TIMER} (daily AIDE check) is enabled by aide-common when it is installed"),
            );
        }
        if changed {
            p.handler(Cmd::in_root("/usr/bin/systemctl", &["daemon-reload"]));
            p.handler(Cmd::in_root(
                "/usr/bin/systemctl",
                &["start", "bollwerk-aide-init.timer"],
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aide_conf_edit_is_idempotent_and_keeps_other_lines() {
        let orig = "# head\nChecksums = H\nOwnerMode = p+u+g+ftype\n@@x_include /etc/aide/aide.conf.d ^[a-zA-Z0-9_-]+$\n";
        let once = edit_aide_conf(orig);
        assert!(once.contains("\nChecksums = sha512\n"));
        assert!(once.contains("\n/usr/sbin/auditctl p+i+n+u+g+s+b+acl+xattrs+sha512\n"));
        assert!(
            once.starts_with("# head\n") && once.contains("OwnerMode = p+u+g+ftype\n@@x_include")
        );
        assert_eq!(edit_aide_conf(&once), once);
        let stale = once.replace("/usr/sbin/autrace", "/usr/sbin/old");
        assert_eq!(edit_aide_conf(&stale), once);
    }
}
