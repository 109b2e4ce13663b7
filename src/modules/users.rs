//! Users and groups: `etc/passwd`, `etc/group`, `etc/shadow`, `etc/gshadow` edited natively
//! (so every change is a reviewable diff and rolls back byte-identically), home directories
//! from `etc/skel`, `authorized_keys` (inline and fetched keys, optionally exclusive), the
//! sudoers drop-in `etc/sudoers.d/bollwerk` (validated with `visudo -c`), and root's password
//! lock.
//!
//! Ids come from the target's own databases and `etc/login.defs`, never from the host's NSS.

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Level, Plan, Planner, Validator, Visibility};
use crate::error::{Error, Result};
use crate::etcdb::{Accounts, GShadow, Group, Passwd, Shadow};
use crate::exec::Cmd;
use crate::modules::Module;
use crate::profile::types::{AccountPath, Gecos, GroupName, Mode, PasswordHash, UserName};
use crate::profile::{Layer, Profile, ProfileError};
use crate::root::{Entry, Perms, RelPath};
use crate::sshkeys::{AuthorizedLine, KeySource, PublicKey, parse_authorized_keys};

/// Header of files bollwerk owns entirely.
pub const MANAGED_HEADER: &str = "# Managed by bollwerk — local edits are overwritten";

/// sudo rights given by the sudoers drop-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SudoMode {
    /// `ALL=(ALL:ALL) ALL`: sudo asks for the user's password.
    Password,
    /// `ALL=(ALL:ALL) NOPASSWD: ALL`.
    Nopasswd,
    /// No sudo line (and no membership in `sudo`/`admin`/`wheel`).
    None,
}

/// `[[users]]`: a local user.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// Login name (identity for merging with a base profile).
    pub name: UserName,
    /// Fixed uid (default: the next free one from `UID_MIN` of the target's `login.defs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// GECOS comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<Gecos>,
    /// Home directory (default `/home/<name>`; system users: none is created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<AccountPath>,
    /// Mode of a newly created home directory (default "0750").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_mode: Option<Mode>,
    /// Login shell (default `/bin/bash`; system users `/usr/sbin/nologin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<AccountPath>,
    /// Primary group (default: a group named like the user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_group: Option<GroupName>,
    /// Supplementary groups (created when missing). Memberships not listed are left alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupName>,
    /// sudo rights via `etc/sudoers.d/bollwerk`: "password", "nopasswd" or "none".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo: Option<SudoMode>,
    /// Restricted sudo rules, each a sudoers rule for this user without the user name, e.g.
    /// "ALL=(root) NOPASSWD: /usr/bin/systemctl restart app" (cloud-config `sudo:` rules);
    /// written to `etc/sudoers.d/bollwerk` and validated with `visudo -c`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sudo_rules: Vec<SudoRule>,
    /// SSH public keys (`authorized_keys` lines; options allowed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub ssh_keys: Vec<PublicKey>,
    /// Key sources fetched at plan time: `gh:<user>`, `lp:<user>`, an `https://` URL, or
    /// `{ url = "...", sha256 = "<hex of the response>" }`. A failed fetch is an error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ssh_keys_from: Vec<KeySource>,
    /// Remove keys not listed here from `authorized_keys` (default false: unlisted keys stay).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusive_keys: Option<bool>,
    /// crypt(3) password hash (`mkpasswd -m yescrypt`). Default: no password (key only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<PasswordHash>,
    /// A system account (uid below 1000, no home created, nologin shell by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<bool>,
}

/// One sudoers rule for a user (`HOSTS=(RUNAS) [TAGS:] COMMANDS`), without the user name: a
/// single line with `=`; `visudo -c` judges the rest before the drop-in is activated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SudoRule(String);

impl SudoRule {
    /// The rule as written (whitespace runs collapsed).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SudoRule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let norm = s.split_whitespace().collect::<Vec<_>>().join(" ");
        if s.contains(['\n', '\r', '\0', '\\']) {
            return Err(format!(
                "sudo rule {s:?} must be one line without `\\` (line continuations could add rules for other users)"
            ));
        }
        if norm.starts_with('#') || norm.starts_with('@') || !norm.contains('=') {
            return Err(format!(
                "sudo rule {s:?} is not `HOSTS=(RUNAS) COMMANDS`, e.g. \"ALL=(root) NOPASSWD: /usr/bin/systemctl restart app\""
            ));
        }
        Ok(SudoRule(norm))
    }
}

impl From<SudoRule> for String {
    fn from(r: SudoRule) -> String {
        r.0
    }
}

impl JsonSchema for SudoRule {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SudoRule".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": "^[^#@\\n\\\\][^\\n\\\\]*=[^\\n\\\\]*$", "description": "sudoers rule without the user name, e.g. ALL=(root) NOPASSWD: /usr/bin/systemctl restart app"})
    }
}

/// `[[groups]]`: a local group.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Group name.
    pub name: GroupName,
    /// Fixed gid (default: next free).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// A system group (gid below 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<bool>,
}

/// Groups that grant sudo on Debian/Ubuntu (`%sudo`, `%admin`) and elsewhere (`%wheel`).
pub const SUDO_GROUPS: &[&str] = &["sudo", "admin", "wheel"];

/// Cross-field checks of the users section.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(p: &Profile, layers: &[Layer]) -> Result<(), ProfileError> {
    for u in &p.users {
        if u.sudo == Some(SudoMode::None)
            && let Some(g) = u.groups.iter().find(|g| SUDO_GROUPS.contains(&g.as_str()))
        {
            return Err(crate::profile::error_at(
                layers,
                &["users", u.name.as_str(), "sudo"],
                format!(
                    "user {} has sudo = \"none\" but is in group `{g}`, which grants sudo",
                    u.name
                ),
            )
            .with_hint(format!(
                "remove `{g}` from users.{}.groups, or set sudo = \"password\"",
                u.name
            )));
        }
        if let Some(k) = u.ssh_keys.iter().find(|k| !k.strong_enough()) {
            return Err(crate::profile::error_at(
                layers,
                &["users", u.name.as_str(), "ssh_keys"],
                format!(
                    "{} of {} has only {} bits",
                    k.label(),
                    u.name,
                    k.rsa_bits.unwrap_or(0)
                ),
            )
            .with_hint(
                "use an ed25519 key (ssh-keygen -t ed25519) or RSA with at least 2048 bits",
            ));
        }
        if u.system == Some(true) && u.home.is_none() && !u.ssh_keys.is_empty() {
            return Err(crate::profile::error_at(
                layers,
                &["users", u.name.as_str(), "ssh_keys"],
                format!("system user {} has SSH keys but no home directory", u.name),
            )
            .with_hint("set `home` for this user, or drop `system = true`"));
        }
        if u.name.as_str() == "root" && (u.uid.is_some_and(|i| i != 0) || u.system.is_some()) {
            return Err(crate::profile::error_at(layers, &["users", "root"], "root's uid and system flag cannot be changed")
                .with_hint("only `ssh_keys`, `ssh_keys_from`, `exclusive_keys`, `shell` and `password_hash` make sense for root"));
        }
    }
    Ok(())
}

/// Id ranges from the target's `etc/login.defs`.
#[derive(Debug, Clone, Copy)]
struct IdRanges {
    uid_min: u32,
    uid_max: u32,
    sys_min: u32,
    sys_max: u32,
}

fn id_ranges(cx: &Context) -> Result<IdRanges> {
    let text = cx
        .root
        .read_string(&RelPath::lit("etc/login.defs"))?
        .unwrap_or_default();
    let get = |k: &str, d: u32| {
        text.lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(k)).then(|| w.next()).flatten()
            })
            .next_back()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    Ok(IdRanges {
        uid_min: get("UID_MIN", 1000),
        uid_max: get("UID_MAX", 60000),
        sys_min: get("SYS_UID_MIN", 100),
        sys_max: get("SYS_UID_MAX", 999),
    })
}

/// The users module.
pub struct Users;

const PASSWD: &str = "etc/passwd";
const GROUP: &str = "etc/group";
const SHADOW: &str = "etc/shadow";
const GSHADOW: &str = "etc/gshadow";
/// The sudoers drop-in bollwerk owns (no dot in the name: sudo skips such files).
pub const SUDOERS_DROPIN: &str = "etc/sudoers.d/bollwerk";

impl Module for Users {
    fn name(&self) -> &'static str {
        "users"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let profile = &cx.profile.profile;
        let lock_root = profile.host.lock_root_password.unwrap_or(false);
        if profile.users.is_empty() && profile.groups.is_empty() && !lock_root {
            return Ok(());
        }
        let ranges = id_ranges(cx)?;
        let mut acc = cx.facts.accounts.clone();
        let mut p = Planner::new(self.name(), plan);
        let today = crate::facts::days_since_epoch().to_string();
        let mut summary: Vec<String> = Vec::new();

        for g in &profile.groups {
            ensure_group(
                &mut acc,
                g.name.as_str(),
                g.gid,
                g.system.unwrap_or(false),
                ranges,
                &mut summary,
            )?;
        }
        let mut new_users = Vec::new();
        for u in &profile.users {
            let system = u.system.unwrap_or(false);
            let name = u.name.as_str();
            // Primary group.
            let primary = u
                .primary_group
                .as_ref()
                .map(|g| g.as_str().to_string())
                .unwrap_or_else(|| name.to_string());
            let existing = acc.passwd.get(name).cloned();
            let want_uid = u.uid.or(existing.as_ref().map(|e| e.uid));
            ensure_group(
                &mut acc,
                &primary,
                if u.primary_group.is_none() {
                    want_uid
                } else {
                    None
                },
                system,
                ranges,
                &mut summary,
            )?;
            let gid = acc.gid(&primary).unwrap_or(0);
            for g in &u.groups {
                ensure_group(&mut acc, g.as_str(), None, false, ranges, &mut summary)?;
            }
            match existing {
                None => {
                    let uid = match u.uid {
                        Some(uid) => {
                            if let Some(other) = acc.passwd.entries().find(|e| e.uid == uid) {
                                return Err(Error::Unsafe {
                                    reason: format!(
                                        "uid {uid} for new user {name} is already used by {}",
                                        other.name
                                    ),
                                    hint: format!("change users.{name}.uid or leave it out"),
                                });
                            }
                            uid
                        }
                        None => {
                            let (lo, hi) = if system {
                                (ranges.sys_min, ranges.sys_max)
                            } else {
                                (ranges.uid_min, ranges.uid_max)
                            };
                            let free = if system {
                                (lo..=hi)
                                    .rev()
                                    .find(|id| !acc.passwd.entries().any(|e| e.uid == *id))
                            } else if acc.passwd.entries().all(|e| e.uid != gid)
                                && (lo..=hi).contains(&gid)
                            {
                                Some(gid)
                            } else {
                                (lo..=hi).find(|id| !acc.passwd.entries().any(|e| e.uid == *id))
                            };
                            free.ok_or_else(|| {
                                Error::Runtime(format!("no free uid in {lo}-{hi} for {name}"))
                            })?
                        }
                    };
                    let home = u
                        .home
                        .as_ref()
                        .map(|h| h.as_str().to_string())
                        .unwrap_or_else(|| {
                            if system {
                                "/nonexistent".to_string()
                            } else {
                                format!("/home/{name}")
                            }
                        });
                    let shell = u
                        .shell
                        .as_ref()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_else(|| {
                            if system {
                                "/usr/sbin/nologin".to_string()
                            } else {
                                "/bin/bash".to_string()
                            }
                        });
                    acc.passwd.push(Passwd {
                        name: name.to_string(),
                        password: "x".into(),
                        uid,
                        gid,
                        gecos: u
                            .comment
                            .as_ref()
                            .map(|c| c.to_string())
                            .unwrap_or_default(),
                        home,
                        shell,
                    });
                    if let Some(sh) = acc.shadow.as_mut() {
                        sh.push(Shadow {
                            name: name.to_string(),
                            hash: u
                                .password_hash
                                .as_ref()
                                .map(|h| h.as_str().to_string())
                                .unwrap_or_else(|| "!".into()),
                            last_change: today.clone(),
                            min: if system { String::new() } else { "0".into() },
                            max: if system {
                                String::new()
                            } else {
                                "99999".into()
                            },
                            warn: if system { String::new() } else { "7".into() },
                            inactive: String::new(),
                            expire: String::new(),
                            reserved: String::new(),
                        });
                    }
                    summary.push(format!("create user {name} (uid {uid})"));
                    new_users.push(name.to_string());
                }
                Some(e) => {
                    if let Some(uid) = u.uid
                        && uid != e.uid
                    {
                        return Err(Error::Unsafe {
                            reason: format!(
                                "user {name} exists with uid {}, the profile says {uid}",
                                e.uid
                            ),
                            hint: format!(
                                "remove users.{name}.uid or set it to {} (bollwerk does not renumber users)",
                                e.uid
                            ),
                        });
                    }
                    if let Some(h) = &u.home
                        && h.as_str() != e.home
                    {
                        return Err(Error::Unsafe {
                            reason: format!(
                                "user {name} has home {}, the profile says {h}",
                                e.home
                            ),
                            hint: format!(
                                "remove users.{name}.home or set it to {} (bollwerk does not move homes)",
                                e.home
                            ),
                        });
                    }
                    let entry = acc
                        .passwd
                        .get_mut(name)
                        .ok_or_else(|| Error::Runtime("user vanished".into()))?;
                    if let Some(s) = &u.shell
                        && s.as_str() != entry.shell
                    {
                        summary.push(format!("set shell of {name} to {s}"));
                        entry.shell = s.as_str().to_string();
                    }
                    if let Some(c) = &u.comment
                        && c.as_str() != entry.gecos
                    {
                        summary.push(format!("set comment of {name}"));
                        entry.gecos = c.to_string();
                    }
                    if u.primary_group.is_some() && entry.gid != gid {
                        summary.push(format!("set primary group of {name} to {primary}"));
                        entry.gid = gid;
                    }
                    if let (Some(h), Some(sh)) = (&u.password_hash, acc.shadow.as_mut())
                        && let Some(s) = sh.get_mut(name)
                        && s.hash != h.as_str()
                    {
                        summary.push(format!("set password hash of {name}"));
                        s.hash = h.as_str().to_string();
                        s.last_change = today.clone();
                    }
                }
            }
            for g in &u.groups {
                add_member(&mut acc, g.as_str(), name, &mut summary);
            }
        }
        if lock_root
            && let Some(sh) = acc.shadow.as_mut()
            && let Some(r) = sh.get_mut("root")
            && r.has_password()
        {
            r.hash = format!("!{}", r.hash);
            summary.push("lock root's password".into());
        }

        validate_accounts(&acc)?;
        let shadow_gid = acc.gid("shadow").unwrap_or(0);
        let files: [(&str, Option<String>, u32, u32, Visibility); 4] = [
            (GROUP, Some(acc.group.render()), 0o644, 0, Visibility::Plain),
            (
                GSHADOW,
                acc.gshadow.as_ref().map(|d| d.render()),
                0o640,
                shadow_gid,
                Visibility::MaskHashes,
            ),
            (
                PASSWD,
                Some(acc.passwd.render()),
                0o644,
                0,
                Visibility::Plain,
            ),
            (
                SHADOW,
                acc.shadow.as_ref().map(|d| d.render()),
                0o640,
                shadow_gid,
                Visibility::MaskHashes,
            ),
        ];
        let what = if summary.is_empty() {
            "accounts".to_string()
        } else {
            summary.join("; ")
        };
        for (path, content, mode, gid, vis) in files {
            let Some(content) = content else { continue };
            let rel = RelPath::lit(path);
            let perms = match cx.root.entry(&rel)? {
                Entry::File { perms, .. } => perms,
                _ => Perms { mode, uid: 0, gid },
            };
            p.file_with(
                &cx.root,
                &rel,
                content.into_bytes(),
                perms,
                format!("{path}: {what}"),
                vis,
                None,
            )?;
        }

        // Homes and keys.
        for u in &profile.users {
            let name = u.name.as_str();
            let Some(pw) = acc.passwd.get(name).cloned() else {
                continue;
            };
            let new = new_users.iter().any(|n| n == name);
            let creates_home = new && (u.system != Some(true) || u.home.is_some());
            let home_rel = RelPath::new(&pw.home).ok();
            if creates_home
                && let Some(home) = &home_rel
                && !cx.root.exists(home)
            {
                let mode = u.home_mode.map(|m| m.0).unwrap_or(0o750);
                p.dirs(
                    &cx.root,
                    home,
                    Perms {
                        mode,
                        uid: pw.uid,
                        gid: pw.gid,
                    },
                )?;
                copy_skel(cx, &mut p, home, pw.uid, pw.gid)?;
            }
            plan_keys(cx, &mut p, u, &pw)?;
        }

        plan_sudoers(cx, &mut p, profile)?;
        Ok(())
    }
}

fn ensure_group(
    acc: &mut Accounts,
    name: &str,
    gid: Option<u32>,
    system: bool,
    r: IdRanges,
    summary: &mut Vec<String>,
) -> Result<()> {
    if acc.group.get(name).is_some() {
        return Ok(());
    }
    let gid = match gid {
        Some(g) if acc.group.entries().all(|e| e.gid != g) => g,
        Some(g)
            if acc.group.entries().any(|e| e.gid == g && e.name != name)
                && gid.is_some()
                && !system =>
        {
            // The wanted gid (e.g. uid == gid convention) is taken: fall back to a free one.
            (r.uid_min..=r.uid_max)
                .find(|id| acc.group.entries().all(|e| e.gid != *id))
                .ok_or_else(|| Error::Runtime(format!("no free gid for {name}")))?
        }
        _ => {
            let free = if system {
                (r.sys_min..=r.sys_max)
                    .rev()
                    .find(|id| acc.group.entries().all(|e| e.gid != *id))
            } else {
                (r.uid_min..=r.uid_max).find(|id| {
                    acc.group.entries().all(|e| e.gid != *id)
                        && acc.passwd.entries().all(|p| p.uid != *id)
                })
            };
            free.ok_or_else(|| Error::Runtime(format!("no free gid for {name}")))?
        }
    };
    acc.group.push(Group {
        name: name.to_string(),
        password: "x".into(),
        gid,
        members: Vec::new(),
    });
    if let Some(gs) = acc.gshadow.as_mut() {
        gs.push(GShadow {
            name: name.to_string(),
            password: "!".into(),
            admins: Vec::new(),
            members: Vec::new(),
        });
    }
    summary.push(format!("create group {name} (gid {gid})"));
    Ok(())
}

fn add_member(acc: &mut Accounts, group: &str, user: &str, summary: &mut Vec<String>) {
    if let Some(g) = acc.group.get_mut(group)
        && !g.members.iter().any(|m| m == user)
    {
        g.members.push(user.to_string());
        summary.push(format!("add {user} to {group}"));
    }
    if let Some(gs) = acc.gshadow.as_mut()
        && let Some(g) = gs.get_mut(group)
        && !g.members.iter().any(|m| m == user)
    {
        g.members.push(user.to_string());
    }
}

/// Rejects databases with duplicate names or (for new entries) duplicate ids.
fn validate_accounts(acc: &Accounts) -> Result<()> {
    acc.passwd.check().map_err(Error::Runtime)?;
    acc.group.check().map_err(Error::Runtime)?;
    if let Some(d) = &acc.shadow {
        d.check().map_err(Error::Runtime)?;
    }
    if let Some(d) = &acc.gshadow {
        d.check().map_err(Error::Runtime)?;
    }
    let mut names = BTreeMap::new();
    for e in acc.passwd.entries() {
        if names.insert(e.name.clone(), ()).is_some() {
            return Err(Error::Runtime(format!(
                "etc/passwd would contain {} twice",
                e.name
            )));
        }
    }
    let mut gnames = BTreeMap::new();
    for g in acc.group.entries() {
        if gnames.insert(g.name.clone(), ()).is_some() {
            return Err(Error::Runtime(format!(
                "etc/group would contain {} twice",
                g.name
            )));
        }
    }
    Ok(())
}

/// Plans copies of `etc/skel` into a new home.
fn copy_skel(cx: &Context, p: &mut Planner, home: &RelPath, uid: u32, gid: u32) -> Result<()> {
    fn walk(
        cx: &Context,
        p: &mut Planner,
        src: &RelPath,
        dst: &RelPath,
        uid: u32,
        gid: u32,
    ) -> Result<()> {
        for name in cx.root.list_dir(src)? {
            let s = src.join(&name).map_err(Error::Runtime)?;
            let d = dst.join(&name).map_err(Error::Runtime)?;
            match cx.root.entry(&s)? {
                Entry::File { perms, .. } => {
                    let content = cx.root.read(&s)?.unwrap_or_default();
                    p.file_with(
                        &cx.root,
                        &d,
                        content,
                        Perms {
                            mode: perms.mode,
                            uid,
                            gid,
                        },
                        format!("copy {s} to {d}"),
                        Visibility::Brief,
                        None,
                    )?;
                }
                Entry::Dir { perms } => {
                    p.dirs(
                        &cx.root,
                        &d,
                        Perms {
                            mode: perms.mode,
                            uid,
                            gid,
                        },
                    )?;
                    walk(cx, p, &s, &d, uid, gid)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
    walk(cx, p, &RelPath::lit("etc/skel"), home, uid, gid)
}

/// The keys a profile user should have: inline keys plus fetched ones, deduplicated.
///
/// # Errors
/// When a fetch fails.
pub fn wanted_keys(cx: &Context, u: &UserSpec) -> Result<Vec<PublicKey>> {
    let mut keys: Vec<PublicKey> = Vec::new();
    let mut add = |k: PublicKey| {
        if !keys.iter().any(|o| o.same_key(&k)) {
            keys.push(k);
        }
    };
    for k in &u.ssh_keys {
        add(k.clone());
    }
    for src in &u.ssh_keys_from {
        for k in cx.fetch_keys(src)? {
            add(k);
        }
    }
    Ok(keys)
}

/// Renders `authorized_keys` for the wanted keys, given the current file.
pub fn render_authorized_keys(
    current: Option<&str>,
    wanted: &[PublicKey],
    exclusive: bool,
) -> String {
    if exclusive {
        let mut s = String::from(MANAGED_HEADER);
        s.push('\n');
        for k in wanted {
            s.push_str(&k.to_line());
            s.push('\n');
        }
        return s;
    }
    let cur = current.unwrap_or_default();
    let present: Vec<PublicKey> = parse_authorized_keys(cur)
        .into_iter()
        .filter_map(|l| match l {
            AuthorizedLine::Key(k) => Some(k),
            _ => None,
        })
        .collect();
    let mut s = cur.to_string();
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    for k in wanted {
        if !present.iter().any(|p| p.same_key(k)) {
            s.push_str(&k.to_line());
            s.push('\n');
        }
    }
    s
}

/// The `authorized_keys` path of a home directory.
pub fn authorized_keys_path(home: &str) -> Option<RelPath> {
    RelPath::new(&format!(
        "{}/.ssh/authorized_keys",
        home.trim_end_matches('/')
    ))
    .ok()
}

fn plan_keys(cx: &Context, p: &mut Planner, u: &UserSpec, pw: &Passwd) -> Result<()> {
    let exclusive = u.exclusive_keys.unwrap_or(false);
    if u.ssh_keys.is_empty() && u.ssh_keys_from.is_empty() && !exclusive {
        return Ok(());
    }
    let wanted = wanted_keys(cx, u)?;
    let Some(ak) = authorized_keys_path(&pw.home) else {
        return Err(Error::Runtime(format!(
            "home of {} is not a usable path: {}",
            pw.name, pw.home
        )));
    };
    let ssh_dir = ak
        .parent()
        .ok_or_else(|| Error::Runtime("no .ssh dir".into()))?;
    for path in [&ssh_dir, &ak] {
        if let Entry::Symlink { target, .. } = cx.root.entry(path)? {
            return Err(Error::Unsafe {
                reason: format!(
                    "{path} is a symlink to {target}; writing keys through it could overwrite another file"
                ),
                hint: format!(
                    "replace the symlink by a real directory/file for {}",
                    pw.name
                ),
            });
        }
    }
    let home = ssh_dir
        .parent()
        .ok_or_else(|| Error::Runtime("no home".into()))?;
    if !cx.root.exists(&home)
        && p.plan().planned_content(&home).is_none()
        && !p
            .plan()
            .changes
            .iter()
            .any(|c| c.action.path() == Some(&home))
    {
        p.note(
            Level::Warning,
            format!(
                "home {home} of {} does not exist; creating it for the SSH keys",
                pw.name
            ),
        );
        p.dirs(
            &cx.root,
            &home,
            Perms {
                mode: 0o750,
                uid: pw.uid,
                gid: pw.gid,
            },
        )?;
    }
    let user_perms = |mode| Perms {
        mode,
        uid: pw.uid,
        gid: pw.gid,
    };
    p.dir(
        &cx.root,
        &ssh_dir,
        user_perms(0o700),
        format!("{ssh_dir} for {}", pw.name),
    )?;
    let current = cx.root.read_string(&ak)?;
    let content = render_authorized_keys(current.as_deref(), &wanted, exclusive);
    let n = wanted.len();
    p.file(
        &cx.root,
        &ak,
        content,
        user_perms(0o600),
        format!(
            "authorized_keys of {} ({n} key{})",
            pw.name,
            if n == 1 { "" } else { "s" }
        ),
    )?;
    Ok(())
}

/// Mode and owner for rewriting `etc/shadow` or `etc/gshadow`: the file's current ones, else
/// the distribution's 0640 root:shadow.
///
/// # Errors
/// When the file cannot be inspected.
pub fn shadow_perms(cx: &Context, rel: &RelPath) -> Result<Perms> {
    Ok(match cx.root.entry(rel)? {
        Entry::File { perms, .. } => perms,
        _ => Perms {
            mode: 0o640,
            uid: 0,
            gid: cx.facts.accounts.gid("shadow").unwrap_or(0),
        },
    })
}

/// Validates the staged candidate of one sudoers file (the path it is for) with the root's own
/// `visudo -c -q -f`; used for every sudoers drop-in bollwerk writes.
#[derive(Debug)]
pub struct Visudo(pub &'static str);

impl Validator for Visudo {
    fn describe(&self) -> String {
        "visudo -c".into()
    }

    fn validate(&self, cx: &Context, staged: &crate::engine::Staged) -> Result<()> {
        let rel = RelPath::lit(self.0);
        let Some(path) = staged.files.get(&rel) else {
            return Ok(());
        };
        let out = cx.runner.run(
            &cx.root,
            &Cmd::in_root("/usr/sbin/visudo", &["-c", "-q", "-f", path]),
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

fn plan_sudoers(cx: &Context, p: &mut Planner, profile: &Profile) -> Result<()> {
    let rel = RelPath::lit(SUDOERS_DROPIN);
    let lines: Vec<String> = profile
        .users
        .iter()
        .flat_map(|u| {
            let full = match u.sudo {
                Some(SudoMode::Password) => Some(format!("{} ALL=(ALL:ALL) ALL", u.name)),
                Some(SudoMode::Nopasswd) => Some(format!("{} ALL=(ALL:ALL) NOPASSWD: ALL", u.name)),
                _ => None,
            };
            full.into_iter().chain(
                u.sudo_rules
                    .iter()
                    .map(move |r| format!("{} {}", u.name, r.as_str())),
            )
        })
        .collect();
    for u in &profile.users {
        if u.sudo == Some(SudoMode::Password) && u.password_hash.is_none() {
            let has_pw = cx
                .facts
                .accounts
                .shadow
                .as_ref()
                .and_then(|s| s.get(u.name.as_str()))
                .is_some_and(Shadow::has_password);
            if !has_pw {
                p.note(
                    Level::Warning,
                    format!("{} has sudo = \"password\" but no password: sudo will not work until `passwd {}` is run (or set password_hash, or sudo = \"nopasswd\")", u.name, u.name),
                );
            }
        }
    }
    if lines.is_empty() {
        p.remove(
            &cx.root,
            &rel,
            format!("remove {rel} (no user needs sudo rights from it)"),
        )?;
        return Ok(());
    }
    if !cx.root.exists(&RelPath::lit("usr/sbin/visudo"))
        && !cx.root.exists(&RelPath::lit("usr/bin/sudo"))
    {
        p.note(
            Level::Warning,
            "sudo is not installed in the target: the sudoers drop-in has no effect until it is",
        );
    }
    let sudoers = cx
        .root
        .read_string(&RelPath::lit("etc/sudoers"))?
        .unwrap_or_default();
    if !sudoers.lines().any(|l| {
        let t = l.trim_start();
        t.starts_with("@includedir /etc/sudoers.d") || t.starts_with("#includedir /etc/sudoers.d")
    }) {
        p.note(
            Level::Warning,
            "etc/sudoers has no `@includedir /etc/sudoers.d`: the drop-in is not read",
        );
    }
    let mut content = format!("{MANAGED_HEADER}\n");
    for l in lines {
        content.push_str(&l);
        content.push('\n');
    }
    let validator: Arc<dyn Validator> = Arc::new(Visudo(SUDOERS_DROPIN));
    p.file_with(
        &cx.root,
        &rel,
        content.into_bytes(),
        Perms::root(0o440),
        format!("sudo rights in {rel}"),
        Visibility::Plain,
        Some(validator),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sshkeys::tests::ED25519;

    #[test]
    fn exclusive_keys_replace_and_non_exclusive_append() {
        let k = PublicKey::parse(ED25519).unwrap();
        let excl = render_authorized_keys(
            Some("ssh-ed25519 OTHER x\n"),
            std::slice::from_ref(&k),
            true,
        );
        assert_eq!(excl, format!("{MANAGED_HEADER}\n{ED25519}\n"));
        let app = render_authorized_keys(Some("# mine\n"), std::slice::from_ref(&k), false);
        assert_eq!(app, format!("# mine\n{ED25519}\n"));
        assert_eq!(
            render_authorized_keys(Some(&app), &[k], false),
            app,
            "idempotent"
        );
    }
}
