//! File integrity (`[integrity]`, opt-in: building the database reads every file): AIDE
//! installed, its database built by bollwerk's `bollwerk-aide-init.timer` a while after boot
//! (never inline while bollwerk or the first boot runs), and the distro's daily check timer
//! enabled (CIS 6.3.1–6.3.2). The units are checked with `systemd-analyze verify`.

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
