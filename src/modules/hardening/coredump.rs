//! Core dumps (`[coredump]`): `etc/security/limits.d/bollwerk-coredump.conf` (`* hard core 0`),
//! `etc/systemd/coredump.conf.d/bollwerk.conf` (`Storage=none`, `ProcessSizeMax=0`) and
//! `etc/profile.d/bollwerk-coredump.sh` (`ulimit -c 0` for login shells, also where no PAM
//! session set the limit; Lynis KRNL-5820 looks for it), so no process leaves memory images
//! with secrets on disk (CIS 1.5.3). `fs.suid_dumpable = 0` is the sysctl module's
//! (`[sysctl]`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Plan, Planner};
use crate::error::Result;
use crate::modules::Module;
use crate::modules::users::MANAGED_HEADER;
use crate::root::{Perms, RelPath};

/// The limits drop-in bollwerk owns.
pub const LIMITS_DROPIN: &str = "etc/security/limits.d/bollwerk-coredump.conf";
/// The systemd-coredump drop-in bollwerk owns.
pub const COREDUMP_DROPIN: &str = "etc/systemd/coredump.conf.d/bollwerk.conf";
/// The login shell snippet bollwerk owns.
pub const PROFILE_SNIPPET: &str = "etc/profile.d/bollwerk-coredump.sh";

/// `[coredump]`: core dump restrictions.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CoredumpSection {
    /// true: no core dumps (`* hard core 0` for PAM sessions, `ulimit -c 0` for login shells,
    /// systemd-coredump stores nothing); false: remove bollwerk's drop-ins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable: Option<bool>,
}

/// The core dump module.
pub struct Coredump;

impl Module for Coredump {
    fn name(&self) -> &'static str {
        "coredump"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(disable) = cx.profile.profile.coredump.as_ref().and_then(|s| s.disable) else {
            return Ok(());
        };
        let mut p = Planner::new(self.name(), plan);
        let limits = RelPath::lit(LIMITS_DROPIN);
        let systemd = RelPath::lit(COREDUMP_DROPIN);
        let shell = RelPath::lit(PROFILE_SNIPPET);
        if !disable {
            for path in [&limits, &systemd, &shell] {
                p.remove(&cx.root, path, format!("remove {path}"))?;
            }
            return Ok(());
        }
        p.file(
            &cx.root,
            &limits,
            format!("{MANAGED_HEADER}\n# No core dumps for login sessions (pam_limits).\n*\thard\tcore\t0\n"),
            Perms::root(0o644),
            "no core dumps for login sessions",
        )?;
        p.file(
            &cx.root,
            &systemd,
            format!("{MANAGED_HEADER}\n[Coredump]\nStorage=none\nProcessSizeMax=0\n"),
            Perms::root(0o644),
            "systemd-coredump stores no core dumps",
        )?;
        p.file(
            &cx.root,
            &shell,
            format!("{MANAGED_HEADER}\n# No core files from login shells (the hard limit of PAM sessions is 0 already).\nulimit -c 0 2>/dev/null || true\n"),
            Perms::root(0o644),
            "no core files from login shells",
        )?;
        Ok(())
    }
}
