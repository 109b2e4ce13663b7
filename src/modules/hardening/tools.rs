//! Maintenance tools (`[tools]`): the package-hygiene and malware-scanning tools independent
//! scanners expect on a hardened Debian or Ubuntu host (Lynis DEB-0831, DEB-0811, PKGS-7370,
//! PKGS-7394, HRDN-7230), installed and configured so they never act on their own:
//!
//! | key | installs | bollwerk owns |
//! |---|---|---|
//! | `needrestart` | `needrestart` | `etc/needrestart/conf.d/bollwerk.conf` (`$nrconf{restart}`), checked with `perl -c` |
//! | `debsums` | `debsums` | — (`debsums -s` verifies installed files against the packages' checksums) |
//! | `apt_show_versions` | `apt-show-versions` | — |
//! | `apt_listchanges` | `apt-listchanges` | — (unattended upgrades run it without a frontend) |
//! | `malware_scanner` | `chkrootkit` | `etc/systemd/system/bollwerk-chkrootkit.{service,timer}` (a weekly scan at idle priority into the journal), checked with `systemd-analyze verify` |
//!
//! needrestart's default on Ubuntu restarts daemons by itself after every apt run, sshd and the
//! database included; `"list"` (the built-in profiles' choice) only reports them. A key left out
//! is not managed; `false` / `"none"` removes what bollwerk wrote (packages stay).

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Plan, Planner, Staged, Validator, Visibility};
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::modules::Module;
use crate::modules::users::MANAGED_HEADER;
use crate::root::{Perms, RelPath};

use super::util::{VerifyUnits, is_enabled, plan_disable, plan_enable};

/// needrestart's drop-in bollwerk owns.
pub const NEEDRESTART_DROPIN: &str = "etc/needrestart/conf.d/bollwerk.conf";
/// The malware scan service bollwerk owns.
pub const SCAN_SERVICE: &str = "etc/systemd/system/bollwerk-chkrootkit.service";
/// Its timer.
pub const SCAN_TIMER: &str = "etc/systemd/system/bollwerk-chkrootkit.timer";
const CHKROOTKIT: &str = "/usr/sbin/chkrootkit";

/// What needrestart does after apt replaced libraries that running daemons use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NeedrestartMode {
    /// Install needrestart; list the daemons to restart, restart none (`$nrconf{restart} = 'l'`).
    List,
    /// Install needrestart; restart the daemons by itself (`'a'`).
    Auto,
    /// Do not manage needrestart; remove bollwerk's drop-in.
    None,
}

/// Which malware scanner runs weekly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MalwareScanner {
    /// chkrootkit, run weekly by bollwerk's timer at idle priority; findings go to the journal
    /// (`journalctl -u bollwerk-chkrootkit`).
    Chkrootkit,
    /// No scanner; remove bollwerk's timer.
    None,
}

/// `[tools]`: package-hygiene and malware-scanning tools.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolsSection {
    /// needrestart after package upgrades: "list" (report daemons that use replaced libraries),
    /// "auto" (restart them) or "none".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needrestart: Option<NeedrestartMode>,
    /// Install debsums (verify installed files against the packages' checksums: `debsums -s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debsums: Option<bool>,
    /// Install apt-show-versions (which packages have upgrades, from which suite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apt_show_versions: Option<bool>,
    /// Install apt-listchanges (news and changelogs of upgrades, by mail to root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apt_listchanges: Option<bool>,
    /// A weekly malware scan: "chkrootkit" or "none".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malware_scanner: Option<MalwareScanner>,
}

impl ToolsSection {
    /// The packages this section installs.
    pub fn packages(&self) -> Vec<String> {
        let mut v = Vec::new();
        if matches!(
            self.needrestart,
            Some(NeedrestartMode::List | NeedrestartMode::Auto)
        ) {
            v.push("needrestart".to_string());
        }
        for (on, name) in [
            (self.debsums, "debsums"),
            (self.apt_show_versions, "apt-show-versions"),
            (self.apt_listchanges, "apt-listchanges"),
        ] {
            if on == Some(true) {
                v.push(name.to_string());
            }
        }
        if self.malware_scanner == Some(MalwareScanner::Chkrootkit) {
            v.push("chkrootkit".to_string());
        }
        v
    }
}

/// Renders needrestart's drop-in.
pub fn render_needrestart(mode: NeedrestartMode) -> String {
    let (letter, what) = match mode {
        NeedrestartMode::Auto => ('a', "restarts them"),
        _ => ('l', "lists them and restarts none"),
    };
    format!(
        "{MANAGED_HEADER}\n# After apt replaced libraries that running daemons use, needrestart {what}\n# ([tools] needrestart of the profile).\n$nrconf{{restart}} = '{letter}';\n"
    )
}

/// Renders the scan service.
pub fn render_scan_service() -> String {
    format!(
        "{MANAGED_HEADER}\n[Unit]\nDescription=Malware scan with chkrootkit (bollwerk [tools])\nDocumentation=man:chkrootkit(1)\nAfter=local-fs.target\n\n[Service]\nType=oneshot\nNice=19\nIOSchedulingClass=idle\nExecStart={CHKROOTKIT} -q\n"
    )
}

/// Renders the scan timer.
pub fn render_scan_timer() -> String {
    format!(
        "{MANAGED_HEADER}\n[Unit]\nDescription=Weekly malware scan with chkrootkit (bollwerk [tools])\n\n[Timer]\nOnCalendar=weekly\nRandomizedDelaySec=6h\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n"
    )
}

/// `perl -c` on a Perl configuration drop-in (needrestart reads its drop-ins with Perl's `do`).
#[derive(Debug)]
pub struct PerlSyntax(pub &'static str);

impl Validator for PerlSyntax {
    fn describe(&self) -> String {
        "perl -c".into()
    }

    fn validate(&self, cx: &Context, staged: &Staged) -> Result<()> {
        let rel = RelPath::lit(self.0);
        let Some(cand) = staged.files.get(&rel) else {
            return Ok(());
        };
        let out = cx
            .runner
            .run(&cx.root, &Cmd::in_root("/usr/bin/perl", &["-c", cand]))?;
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

/// The tools module.
pub struct Tools;

impl Tools {
    fn plan_needrestart(cx: &Context, p: &mut Planner, mode: NeedrestartMode) -> Result<()> {
        let dropin = RelPath::lit(NEEDRESTART_DROPIN);
        if mode == NeedrestartMode::None {
            p.remove(&cx.root, &dropin, format!("remove {dropin}"))?;
            return Ok(());
        }
        if let Some(parent) = dropin.parent() {
            p.dirs(&cx.root, &parent, Perms::root(0o755))?;
        }
        p.file_with(
            &cx.root,
            &dropin,
            render_needrestart(mode).into_bytes(),
            Perms::root(0o644),
            format!(
                "needrestart {}",
                if mode == NeedrestartMode::Auto {
                    "restarts daemons"
                } else {
                    "lists daemons to restart, restarts none"
                }
            ),
            Visibility::Plain,
            Some(Arc::new(PerlSyntax(NEEDRESTART_DROPIN))),
        )?;
        Ok(())
    }

    fn plan_scanner(cx: &Context, p: &mut Planner, scanner: MalwareScanner) -> Result<()> {
        let service = RelPath::lit(SCAN_SERVICE);
        let timer = RelPath::lit(SCAN_TIMER);
        if scanner == MalwareScanner::None {
            plan_disable(cx, p, "bollwerk-chkrootkit.timer")?;
            p.remove(&cx.root, &timer, format!("remove {timer}"))?;
            p.remove(&cx.root, &service, format!("remove {service}"))?;
            return Ok(());
        }
        let validator: Arc<dyn Validator> = Arc::new(VerifyUnits {
            units: vec![SCAN_SERVICE, SCAN_TIMER],
            requires: Some(CHKROOTKIT),
        });
        let mut changed = p.file_with(
            &cx.root,
            &service,
            render_scan_service().into_bytes(),
            Perms::root(0o644),
            "malware scan with chkrootkit (service)".into(),
            Visibility::Plain,
            Some(validator.clone()),
        )?;
        changed |= p.file_with(
            &cx.root,
            &timer,
            render_scan_timer().into_bytes(),
            Perms::root(0o644),
            "weekly malware scan (timer)".into(),
            Visibility::Plain,
            Some(validator),
        )?;
        if !is_enabled(cx, p.plan(), "bollwerk-chkrootkit.timer")? {
            changed |= plan_enable(cx, p, "bollwerk-chkrootkit.timer")?;
        }
        if changed {
            p.handler(Cmd::in_root("/usr/bin/systemctl", &["daemon-reload"]));
            p.handler(Cmd::in_root(
                "/usr/bin/systemctl",
                &["start", "bollwerk-chkrootkit.timer"],
            ));
        }
        Ok(())
    }
}

impl Module for Tools {
    fn name(&self) -> &'static str {
        "tools"
    }

    fn required_packages(&self, cx: &Context) -> Vec<String> {
        cx.profile
            .profile
            .tools
            .as_ref()
            .map(ToolsSection::packages)
            .unwrap_or_default()
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(s) = cx.profile.profile.tools.as_ref() else {
            return Ok(());
        };
        let mut p = Planner::new(self.name(), plan);
        if let Some(mode) = s.needrestart {
            Self::plan_needrestart(cx, &mut p, mode)?;
        }
        if let Some(scanner) = s.malware_scanner {
            Self::plan_scanner(cx, &mut p, scanner)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_follow_the_section() {
        let s = ToolsSection {
            needrestart: Some(NeedrestartMode::List),
            debsums: Some(true),
            apt_show_versions: Some(false),
            apt_listchanges: None,
            malware_scanner: Some(MalwareScanner::Chkrootkit),
        };
        assert_eq!(s.packages(), ["needrestart", "debsums", "chkrootkit"]);
        let none = ToolsSection {
            needrestart: Some(NeedrestartMode::None),
            malware_scanner: Some(MalwareScanner::None),
            ..ToolsSection::default()
        };
        assert!(none.packages().is_empty());
    }

    #[test]
    fn needrestart_list_mode_never_restarts() {
        assert!(render_needrestart(NeedrestartMode::List).contains("$nrconf{restart} = 'l';"));
        assert!(render_needrestart(NeedrestartMode::Auto).contains("$nrconf{restart} = 'a';"));
    }
}
