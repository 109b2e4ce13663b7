//! cron and at (`[cron]`): `etc/cron.allow` and `etc/at.allow` listing the users who may
//! schedule jobs (CIS 2.4.1.8, 2.4.2.1), restrictive modes on `etc/cron.deny` / `etc/at.deny`
//! where they exist, and mode 0600 on `etc/crontab`, 0700 on `etc/cron.{hourly,daily,weekly,
//! monthly,yearly,d}` (CIS 2.4.1.2–2.4.1.7).
//!
//! The allow files are group-readable by `crontab` (resp. `daemon`): the setgid `crontab` and
//! `at` binaries must read them to let a listed non-root user in.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Level, Plan, Planner};
use crate::error::Result;
use crate::etcdb::Db;
use crate::modules::Module;
use crate::modules::users::MANAGED_HEADER;
use crate::profile::types::UserName;
use crate::root::{Entry, Perms, RelPath};

/// `[cron]`: who may use cron and at, and the modes of cron's files.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CronSection {
    /// Users allowed to use `crontab` and `at`, written to `/etc/cron.allow` and
    /// `/etc/at.allow` (everyone else is refused), e.g. ["root"].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<UserName>>,
    /// true: `/etc/crontab` 0600 and `/etc/cron.{hourly,daily,weekly,monthly,yearly,d}` 0700,
    /// owned by root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub harden_permissions: Option<bool>,
}

const CRON_DIRS: &[&str] = &[
    "etc/cron.hourly",
    "etc/cron.daily",
    "etc/cron.weekly",
    "etc/cron.monthly",
    "etc/cron.yearly",
    "etc/cron.d",
];

/// The cron module.
pub struct Cron;

fn render_allow(users: &[UserName]) -> String {
    // cron and at compare whole lines with the user name: the header line matches nobody.
    let mut s = format!("{MANAGED_HEADER}\n");
    for u in users {
        s.push_str(u.as_str());
        s.push('\n');
    }
    s
}

impl Module for Cron {
    fn name(&self) -> &'static str {
        "cron"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(s) = &cx.profile.profile.cron else {
            return Ok(());
        };
        let passwd: Db<crate::etcdb::Passwd> = Db::parse(&String::from_utf8_lossy(
            &cx.after(plan, &RelPath::lit("etc/passwd"))?
                .unwrap_or_default(),
        ));
        let mut p = Planner::new(self.name(), plan);
        let cron = cx.root.exists(&RelPath::lit("usr/sbin/cron"))
            || cx.root.exists(&RelPath::lit("etc/crontab"));
        let at = cx.root.exists(&RelPath::lit("usr/bin/at"));
        if !cron {
            p.note(
                Level::Info,
                "cron is not installed in the target: [cron] applies to at only",
            );
        }
        let gid = |g: &str| cx.facts.accounts.gid(g).unwrap_or(0);
        if let Some(users) = &s.allow {
            for u in users {
                if passwd.get(u.as_str()).is_none() {
                    p.note(
                        Level::Warning,
                        format!("cron.allow lists {u}, who does not exist in the target"),
                    );
                }
            }
            let mut targets = Vec::new();
            if cron {
                targets.push(("etc/cron.allow", "etc/cron.deny", gid("crontab")));
            }
            if at {
                targets.push(("etc/at.allow", "etc/at.deny", gid("daemon")));
            } else {
                p.note(
                    Level::Info,
                    "at is not installed in the target: etc/at.allow is not written",
                );
            }
            for (allow, deny, g) in targets {
                p.file(
                    &cx.root,
                    &RelPath::lit(allow),
                    render_allow(users),
                    Perms {
                        mode: 0o640,
                        uid: 0,
                        gid: g,
                    },
                    format!("only {} may use {allow}", list(users)),
                )?;
                let deny = RelPath::lit(deny);
                if let Entry::File { perms, .. } = cx.root.entry(&deny)? {
                    p.perms(
                        &cx.root,
                        &deny,
                        Perms {
                            mode: perms.mode & 0o640,
                            uid: 0,
                            gid: if perms.gid == g { g } else { 0 },
                        },
                        format!("restrict {deny}"),
                    )?;
                }
            }
        }
        if s.harden_permissions == Some(true) && cron {
            p.perms(
                &cx.root,
                &RelPath::lit("etc/crontab"),
                Perms::root(0o600),
                "restrict /etc/crontab",
            )?;
            for d in CRON_DIRS {
                p.perms(
                    &cx.root,
                    &RelPath::lit(d),
                    Perms::root(0o700),
                    format!("restrict /{d}"),
                )?;
            }
        }
        Ok(())
    }
}

fn list(users: &[UserName]) -> String {
    if users.is_empty() {
        "nobody but root".into()
    } else {
        users
            .iter()
            .map(UserName::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}
