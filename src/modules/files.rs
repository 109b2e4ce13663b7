//! Application files that hold secrets (`.env`, keys): `[[files]]` manages their mode and
//! owner only. bollwerk never creates, reads into a plan, diffs, backs up or hashes their
//! content: plans and journals carry permissions only, and rollback restores permissions.
//!
//! Owners are resolved in the target's own account databases as they will be after the plan
//! (a user the `users` module creates in the same run counts).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Level, Plan, Planner};
use crate::error::Result;
use crate::etcdb::{Accounts, Db};
use crate::modules::Module;
use crate::profile::types::{AbsPath, GroupName, Mode, UserName};
use crate::profile::{Layer, Profile, ProfileError};
use crate::root::{Entry, Perms, RelPath};

/// What `[[files]]` ensures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ensure {
    /// Mode and owner only; the content is never created, shown, diffed or journaled.
    Permissions,
}

/// `[[files]]`: permissions of an application file that holds secrets (`/srv/app/.env`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Absolute path in the target (identity for merging with a base profile).
    pub path: AbsPath,
    /// Permission bits, e.g. "0600". Secrets must not be readable by others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Owner (a user of the target, or one the profile creates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<UserName>,
    /// Group (default: left as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupName>,
    /// "permissions" (the default and only mode): contents never appear in plans, diffs,
    /// journals or reports ("content hidden (N bytes, sha256 …)").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensure: Option<Ensure>,
}

/// Checks of `[[files]]`.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(p: &Profile, layers: &[Layer]) -> Result<(), ProfileError> {
    for f in &p.files {
        let path = f.path.as_str();
        if f.mode.is_none() && f.owner.is_none() && f.group.is_none() {
            return Err(crate::profile::error_at(
                layers,
                &["files", path],
                format!("files entry {path} sets neither mode, owner nor group"),
            )
            .with_hint("add mode = \"0600\" and owner = \"app\", or drop the entry"));
        }
        if let Some(m) = f.mode
            && m.0 & 0o007 != 0
        {
            return Err(crate::profile::error_at(
                layers,
                &["files", path, "mode"],
                format!("mode {m} lets every user of the host read or change {path}"),
            )
            .with_hint("secret files are kept at \"0600\" (or \"0640\" for a reading group)"));
        }
        if let Some(m) = f.mode
            && m.0 & 0o7000 != 0
        {
            return Err(crate::profile::error_at(
                layers,
                &["files", path, "mode"],
                format!("mode {m} sets setuid/setgid/sticky bits on {path}"),
            )
            .with_hint("use plain permission bits such as \"0600\""));
        }
    }
    Ok(())
}

/// The target's accounts as they will be after `plan` (users and groups created by the
/// `users` module in the same run included).
///
/// # Errors
/// When the files cannot be read.
pub fn planned_accounts(cx: &Context, plan: &Plan) -> Result<Accounts> {
    let read = |p: &'static str| -> Result<String> {
        Ok(cx
            .after(plan, &RelPath::lit(p))?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default())
    };
    Ok(Accounts {
        passwd: Db::parse(&read("etc/passwd")?),
        group: Db::parse(&read("etc/group")?),
        shadow: None,
        gshadow: None,
    })
}

/// The files module.
pub struct Files;

impl Module for Files {
    fn name(&self) -> &'static str {
        "files"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let specs = &cx.profile.profile.files;
        if specs.is_empty() {
            return Ok(());
        }
        let acc = planned_accounts(cx, plan)?;
        let mut p = Planner::new(self.name(), plan);
        for f in specs {
            let rel = f.path.rel();
            let cur = match cx.root.entry(&rel)? {
                Entry::File { perms, .. } | Entry::Dir { perms } => perms,
                Entry::Absent => {
                    p.note(
                        Level::Warning,
                        format!("{rel} does not exist: nothing to do (bollwerk never creates files that hold secrets; deploy it, then re-run)"),
                    );
                    continue;
                }
                Entry::Symlink { target, .. } => {
                    p.note(
                        Level::Warning,
                        format!("{rel} is a symlink to {target}: not followed; list the real file in [[files]]"),
                    );
                    continue;
                }
                Entry::Other => {
                    p.note(
                        Level::Warning,
                        format!("{rel} is not a regular file or directory: left alone"),
                    );
                    continue;
                }
            };
            let mut want = cur;
            if let Some(m) = f.mode {
                want.mode = m.0;
            }
            if let Some(o) = &f.owner {
                match acc.uid(o.as_str()) {
                    Some(uid) => want.uid = uid,
                    None => {
                        p.refuse(
                            format!("owner {o} of {rel} does not exist in the target"),
                            format!("create {o} with [[users]], or fix files.owner of {rel}"),
                        );
                        continue;
                    }
                }
            }
            if let Some(g) = &f.group {
                match acc.gid(g.as_str()) {
                    Some(gid) => want.gid = gid,
                    None => {
                        p.refuse(
                            format!("group {g} of {rel} does not exist in the target"),
                            format!("create {g} with [[groups]], or fix files.group of {rel}"),
                        );
                        continue;
                    }
                }
            }
            if want != cur {
                p.secret_perms(
                    &cx.root,
                    &rel,
                    Perms { ..want },
                    format!("permissions of {rel} (secret: content never shown or journaled)"),
                )?;
            }
        }
        Ok(())
    }
}
