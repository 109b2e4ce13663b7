//! Process and system accounting (`[accounting]`, level 2; Lynis ACCT-9622/9626): `acct`
//! installed with `acct.service` enabled (the kernel records every finished process; not
//! applicable in containers, where `acct(2)` needs the host's `CAP_SYS_PACCT`), and `sysstat`
//! installed with `ENABLED="true"` in `etc/default/sysstat` (edited in place, every other line
//! byte-identical) and `sysstat.service` enabled, so `sa1` collects activity data.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Level, Plan, Planner};
use crate::error::Result;
use crate::exec::Cmd;
use crate::modules::Module;
use crate::root::{Entry, Perms, RelPath};

use super::util::{Syntax, Want, find_unit, is_enabled, plan_enable, set_settings};

/// sysstat's switch file (edited in place).
pub const SYSSTAT_DEFAULT: &str = "etc/default/sysstat";

/// `[accounting]`: process accounting and system activity data.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountingSection {
    /// true: install `acct` and enable `acct.service` (process accounting; not applicable in
    /// containers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<bool>,
    /// true: install `sysstat` and enable its data collection (`ENABLED="true"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sysstat: Option<bool>,
}

/// The accounting module.
pub struct Accounting;

impl Accounting {
    fn process(cx: &Context) -> bool {
        cx.facts.container.is_none()
            && cx
                .profile
                .profile
                .accounting
                .as_ref()
                .and_then(|s| s.process)
                == Some(true)
    }

    fn sysstat(cx: &Context) -> bool {
        cx.profile
            .profile
            .accounting
            .as_ref()
            .and_then(|s| s.sysstat)
            == Some(true)
    }

    /// Enables `unit` when it exists (a package not installed yet enables its own unit).
    fn enable(cx: &Context, p: &mut Planner, unit: &str) -> Result<bool> {
        if find_unit(cx, p.plan(), unit)?.is_some() && !is_enabled(cx, p.plan(), unit)? {
            return plan_enable(cx, p, unit);
        }
        Ok(false)
    }
}

impl Module for Accounting {
    fn name(&self) -> &'static str {
        "accounting"
    }

    fn required_packages(&self, cx: &Context) -> Vec<String> {
        let mut v = Vec::new();
        if Self::process(cx) {
            v.push("acct".into());
        }
        if Self::sysstat(cx) {
            v.push("sysstat".into());
        }
        v
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        if cx.profile.profile.accounting.is_none() {
            return Ok(());
        }
        let mut p = Planner::new(self.name(), plan);
        let wants_process = cx
            .profile
            .profile
            .accounting
            .as_ref()
            .and_then(|s| s.process)
            == Some(true);
        if wants_process && cx.facts.container.is_some() {
            super::util::not_applicable_in_container(
                cx,
                &mut p,
                "process accounting",
                "acct(2) needs CAP_SYS_PACCT, which the host keeps",
            );
        }
        if Self::process(cx) && Self::enable(cx, &mut p, "acct.service")? {
            p.handler(Cmd::in_root(
                "/usr/bin/systemctl",
                &["start", "acct.service"],
            ));
        }
        if !Self::sysstat(cx) {
            return Ok(());
        }
        let rel = RelPath::lit(SYSSTAT_DEFAULT);
        let Some(text) = cx.root.read_string(&rel)? else {
            p.note(
                Level::Info,
                "sysstat is enabled once the sysstat package is installed (a second run of this apply)",
            );
            return Ok(());
        };
        let perms = match cx.root.entry(&rel)? {
            Entry::File { perms, .. } => perms,
            _ => Perms::root(0o644),
        };
        let new = set_settings(
            &text,
            Syntax::Assign,
            &[("ENABLED", Want::Value("\"true\"".into()))],
        );
        let mut changed = p.file_with(
            &cx.root,
            &rel,
            new.into_bytes(),
            perms,
            "sysstat collects system activity data".into(),
            crate::engine::Visibility::Plain,
            None,
        )?;
        changed |= Self::enable(cx, &mut p, "sysstat.service")?;
        if changed {
            p.handler(Cmd::in_root(
                "/usr/bin/systemctl",
                &["restart", "sysstat.service"],
            ));
        }
        Ok(())
    }
}
