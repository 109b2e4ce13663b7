//! The lockout guard: after every module planned, work out who could still log in over SSH
//! once the plan is applied, and refuse the plan when nobody could.
//!
//! It reads the *planned* state: `etc/passwd`, `etc/group`, `etc/shadow`, every user's
//! `authorized_keys` (with the modes and owners the plan leaves) and sshd's configuration as
//! the plan leaves it, evaluated per user by [`crate::state::sshd`] (`Include`s followed,
//! `Match` blocks applied for that user, from any address and from each address a `Match
//! Address` names). A user can log in when their shell is a login shell that exists and is
//! executable in the root, the Allow/Deny lists let them through, `UsePAM no` does not meet a
//! locked (`!`) password, and an enabled method works for them: a valid key of an accepted
//! type in an `authorized_keys` file that passes `StrictModes`, or a password hash with
//! password/keyboard-interactive authentication on. Root is gated by `PermitRootLogin`.
//!
//! Whole-plan refusals: removing `openssh-server`, `[[files]]`/`write_files` replacing files
//! the guard or the validators reason about (`sshd_config*`, `pam.d`, nftables), a socket-
//! activated sshd whose listening ports the profile would change, and on a live host a new
//! port that is already in use or a `ListenAddress` the host does not have.

use std::net::IpAddr;

use crate::engine::{Action, Context, Level, Note, Plan, Refusal};
use crate::error::Result;
use crate::etcdb::{Db, Group, Passwd, Shadow};
use crate::modules::users::SUDO_GROUPS;
use crate::root::{Entry, RelPath};
use crate::sshd_config::{Criterion, Flattened, glob_match};
use crate::sshkeys::{AuthorizedLine, PublicKey, parse_authorized_keys};
use crate::state::sshd::{SshAccess, conn_for};

/// A client address no configuration names (TEST-NET-3): "any other address".
const ANY_ADDR: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7));

/// Why one account can or cannot log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// User name.
    pub user: String,
    /// User id.
    pub uid: u32,
    /// True when the account could log in after the plan (from some address).
    pub can_login: bool,
    /// Number of usable keys.
    pub keys: usize,
    /// Reason when it cannot (from any other address).
    pub reason: String,
    /// Methods that work (`publickey`, `password`, `publickey+password` …).
    pub methods: Vec<String>,
    /// From where: `any address`, or the addresses/networks that may.
    pub from: String,
}

fn is_login_shell(shell: &str) -> bool {
    !(shell.ends_with("/nologin")
        || shell.ends_with("/false")
        || shell.ends_with("/sync")
        || shell.is_empty())
}

fn key_usable(k: &PublicKey, a: &SshAccess) -> bool {
    if k.rsa_bits.is_some_and(|b| b < a.rsa_min_bits.max(1024)) {
        return false;
    }
    if a.pubkey_accepted.is_empty() {
        return true;
    }
    let names: Vec<&str> = match k.base_kind() {
        "ssh-rsa" => vec!["ssh-rsa", "rsa-sha2-256", "rsa-sha2-512"],
        other => vec![other],
    };
    a.pubkey_accepted.iter().any(|acc| {
        names
            .iter()
            .any(|n| glob_match(acc, n) || acc.strip_suffix("-cert-v01@openssh.com") == Some(n))
    })
}

/// Matches `user` (and `user@host` patterns, host part ignored) against sshd patterns.
fn user_matches(patterns: &[String], user: &str) -> bool {
    patterns.iter().any(|p| {
        let (neg, p) = p
            .strip_prefix('!')
            .map_or((false, p.as_str()), |r| (true, r));
        let up = p.split('@').next().unwrap_or(p);
        glob_match(up, user) && !neg
    })
}

fn group_matches(patterns: &[String], groups: &[String]) -> bool {
    groups.iter().any(|g| {
        patterns
            .iter()
            .any(|p| glob_match(p.trim_start_matches('!'), g) && !p.starts_with('!'))
    })
}

/// The accounts as the plan leaves them.
struct PlannedAccounts {
    passwd: Db<Passwd>,
    group: Db<Group>,
    shadow: Db<Shadow>,
}

fn planned_accounts(cx: &Context, plan: &Plan) -> Result<PlannedAccounts> {
    let read = |p: &'static str| -> Result<String> {
        Ok(cx
            .after(plan, &RelPath::lit(p))?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default())
    };
    Ok(PlannedAccounts {
        passwd: Db::parse(&read("etc/passwd")?),
        group: Db::parse(&read("etc/group")?),
        shadow: Db::parse(&read("etc/shadow")?),
    })
}

impl PlannedAccounts {
    fn groups_of(&self, u: &Passwd) -> Vec<String> {
        self.group
            .entries()
            .filter(|g| g.gid == u.gid || g.members.contains(&u.name))
            .map(|g| g.name.clone())
            .collect()
    }
}

/// Mode, owner and group a path has after the plan (a final symlink followed on the root as
/// it is).
fn perms_after(cx: &Context, plan: &Plan, rel: &RelPath) -> Result<Option<(u32, u32, u32)>> {
    for c in plan.changes.iter().rev() {
        match &c.action {
            Action::WriteFile { path, perms, .. }
            | Action::CreateDir { path, perms }
            | Action::SetPerms { path, perms }
                if path == rel =>
            {
                return Ok(Some((perms.mode, perms.uid, perms.gid)));
            }
            Action::Remove { path } if path == rel => return Ok(None),
            _ => {}
        }
    }
    Ok(match cx.root.entry(rel)? {
        Entry::File { perms, .. } | Entry::Dir { perms } => {
            Some((perms.mode, perms.uid, perms.gid))
        }
        Entry::Symlink { .. } => {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(cx.root.resolve_follow(rel))
                .ok()
                .map(|m| (m.mode() & 0o7777, m.uid(), m.gid()))
        }
        _ => None,
    })
}

/// Debian's and Ubuntu's OpenSSH (patch `user-group-modes`) accept a group-writable path
/// when the group's only member, primary or supplementary, is the path's owner.
fn private_group_of(acc: &PlannedAccounts, gid: u32, owner: u32) -> bool {
    let Some(g) = acc.group.entries().find(|g| g.gid == gid) else {
        return false;
    };
    let Some(owner_name) = acc
        .passwd
        .entries()
        .find(|p| p.uid == owner)
        .map(|p| &p.name)
    else {
        return false;
    };
    let primary: Vec<&Passwd> = acc.passwd.entries().filter(|p| p.gid == gid).collect();
    primary.iter().all(|p| p.uid == owner)
        && g.members.iter().all(|m| m == owner_name)
        && (!primary.is_empty() || !g.members.is_empty())
}

/// sshd's `StrictModes` check of an `authorized_keys` file: the file and every directory up to
/// the home directory must be owned by root or the user and not group/world-writable (on
/// Debian/Ubuntu, group-writable is fine for a group whose only member is the owner).
fn strict_modes_problem(
    cx: &Context,
    plan: &Plan,
    acc: &PlannedAccounts,
    file: &RelPath,
    home: &str,
    uid: u32,
) -> Result<Option<String>> {
    let debian = cx.facts.os.is_debian_family();
    let bad = |p: &RelPath, (mode, owner, gid): (u32, u32, u32)| {
        let what = if owner != 0 && owner != uid {
            Some(format!("owned by uid {owner}"))
        } else if mode & 0o002 != 0
            || (mode & 0o020 != 0 && !(debian && private_group_of(acc, gid, owner)))
        {
            Some(format!(
                "{}-writable (mode {mode:04o})",
                if mode & 0o002 != 0 { "world" } else { "group" }
            ))
        } else {
            None
        };
        what.map(|w| format!("{} is {w}", p.absolute()))
    };
    let home = home.trim_end_matches('/');
    let mut cur = Some(file.clone());
    while let Some(p) = cur {
        if let Some(pm) = perms_after(cx, plan, &p)?
            && let Some(why) = bad(&p, pm)
        {
            return Ok(Some(why));
        }
        if p.absolute() == home {
            break;
        }
        cur = p.parent();
    }
    Ok(None)
}

/// Why a login shell cannot run, if it cannot.
fn shell_problem(cx: &Context, shell: &str) -> Option<String> {
    if !is_login_shell(shell) {
        return Some(format!("shell {shell} does not allow logins"));
    }
    let rel = RelPath::new(shell).ok()?;
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(cx.root.resolve_follow(&rel)) {
        Err(_) => Some(format!("login shell {shell} does not exist in the root")),
        Ok(m) if !m.is_file() || m.permissions().mode() & 0o111 == 0 => {
            Some(format!("login shell {shell} is not executable"))
        }
        Ok(_) => None,
    }
}

/// The outcome for one user over one connection.
struct Judged {
    ok: bool,
    reason: String,
    methods: Vec<String>,
    keys: usize,
}

fn src(a: &SshAccess, kw: &str) -> String {
    format!(" [{}]", a.source(kw))
}

fn judge(
    cx: &Context,
    plan: &Plan,
    acc: &PlannedAccounts,
    u: &Passwd,
    a: &SshAccess,
) -> Result<Judged> {
    let no = |reason: String, keys: usize| Judged {
        ok: false,
        reason,
        methods: Vec::new(),
        keys,
    };
    let groups = acc.groups_of(u);
    // Keys first: their count is reported even when something else refuses the user.
    let mut keys = 0usize;
    let mut weak = 0usize;
    let mut strict = Vec::new();
    for pattern in &a.authorized_keys_files {
        let path = pattern
            .replace("%h", &u.home)
            .replace("%u", &u.name)
            .replace("%U", &u.uid.to_string())
            .replace("%%", "%");
        let path = if path.starts_with('/') {
            path
        } else {
            format!("{}/{path}", u.home.trim_end_matches('/'))
        };
        let Ok(rel) = RelPath::new(&path) else {
            continue;
        };
        let Some(b) = cx.after(plan, &rel)? else {
            continue;
        };
        let (mut good, mut bad) = (0, 0);
        for l in parse_authorized_keys(&String::from_utf8_lossy(&b)) {
            if let AuthorizedLine::Key(k) = l {
                if key_usable(&k, a) {
                    good += 1;
                } else {
                    bad += 1;
                }
            }
        }
        if good > 0
            && a.strict_modes
            && let Some(why) = strict_modes_problem(cx, plan, acc, &rel, &u.home, u.uid)?
        {
            strict.push(format!("{why}{}", src(a, "strictmodes")));
            continue;
        }
        keys += good;
        weak += bad;
    }
    if let Some(why) = shell_problem(cx, &u.shell) {
        return Ok(no(why, keys));
    }
    let hash = acc
        .shadow
        .get(&u.name)
        .map(|s| s.hash.as_str())
        .unwrap_or("");
    let has_pw = acc.shadow.get(&u.name).is_some_and(Shadow::has_password);
    let mut key_ok = a.pubkey && keys > 0;
    let mut pw_ok = a.password_authentication && has_pw;
    let mut kbd_ok = a.kbd_interactive && has_pw;
    if u.uid == 0 {
        match a.permit_root_login.as_str() {
            "yes" => {}
            "prohibit-password" | "without-password" => {
                pw_ok = false;
                kbd_ok = false;
            }
            other => {
                return Ok(no(
                    format!("PermitRootLogin {other}{}", src(a, "permitrootlogin")),
                    keys,
                ));
            }
        }
    }
    if user_matches(&a.deny_users, &u.name) {
        return Ok(no(
            format!("listed in DenyUsers{}", src(a, "denyusers")),
            keys,
        ));
    }
    if !a.allow_users.is_empty() && !user_matches(&a.allow_users, &u.name) {
        return Ok(no(
            format!(
                "not in AllowUsers {}{}",
                a.allow_users.join(" "),
                src(a, "allowusers")
            ),
            keys,
        ));
    }
    if group_matches(&a.deny_groups, &groups) {
        return Ok(no(
            format!("a group is in DenyGroups{}", src(a, "denygroups")),
            keys,
        ));
    }
    if !a.allow_groups.is_empty() && !group_matches(&a.allow_groups, &groups) {
        return Ok(no(
            format!(
                "not in AllowGroups {}{}",
                a.allow_groups.join(" "),
                src(a, "allowgroups")
            ),
            keys,
        ));
    }
    if !a.use_pam && hash.starts_with('!') {
        return Ok(no(
            format!(
                "UsePAM no{} and a locked password (`!` in etc/shadow): sshd without PAM refuses locked accounts, keys included",
                src(a, "usepam")
            ),
            keys,
        ));
    }
    let mut methods = Vec::new();
    if !a.methods.is_empty() {
        for chain in &a.methods {
            let ok = chain
                .iter()
                .all(|m| match m.split(':').next().unwrap_or("") {
                    "publickey" => key_ok,
                    "password" => pw_ok,
                    "keyboard-interactive" => kbd_ok,
                    _ => false,
                });
            if ok {
                methods.push(chain.join("+"));
            }
        }
        key_ok = !methods.is_empty();
        pw_ok = false;
        kbd_ok = false;
    } else {
        for (ok, m) in [
            (key_ok, "publickey"),
            (pw_ok, "password"),
            (kbd_ok, "keyboard-interactive"),
        ] {
            if ok {
                methods.push(m.to_string());
            }
        }
    }
    if key_ok || pw_ok || kbd_ok {
        return Ok(Judged {
            ok: true,
            reason: String::new(),
            methods,
            keys,
        });
    }
    let reason = if !a.methods.is_empty() && (keys > 0 || has_pw) {
        let have: Vec<&str> = [(keys > 0, "a key"), (has_pw, "a password")]
            .iter()
            .filter(|(b, _)| *b)
            .map(|(_, s)| *s)
            .collect();
        format!(
            "AuthenticationMethods {}{} cannot be satisfied: {} has only {}",
            a.methods
                .iter()
                .map(|c| c.join(","))
                .collect::<Vec<_>>()
                .join(" "),
            src(a, "authenticationmethods"),
            u.name,
            have.join(" and ")
        )
    } else if keys == 0 && !strict.is_empty() {
        format!(
            "sshd ignores its authorized_keys (StrictModes): {}",
            strict.join("; ")
        )
    } else if keys == 0 && weak > 0 {
        format!("its {weak} key(s) are too weak or of a type sshd does not accept")
    } else if keys == 0 && !has_pw {
        "no SSH key and no password".to_string()
    } else if keys == 0 {
        "no SSH key, and password logins are off".to_string()
    } else {
        format!(
            "public key authentication is off{}",
            src(a, "pubkeyauthentication")
        )
    };
    Ok(no(reason, keys))
}

/// Client addresses worth evaluating: any other address first, then one address inside each
/// network or pattern a `Match Address` line names (with the text that names it).
fn probe_addresses(flat: &Flattened) -> Vec<(IpAddr, String)> {
    let mut out = vec![(ANY_ADDR, "any address".to_string())];
    for d in &flat.directives {
        for c in &d.conds {
            for cr in &c.criteria {
                let Criterion::Address(list) = cr else {
                    continue;
                };
                for p in list.split(',') {
                    let p = p.trim_start_matches('!');
                    let base = p.split('/').next().unwrap_or(p).replace(['*', '?'], "1");
                    if let Ok(ip) = base.parse::<IpAddr>()
                        && !out.iter().any(|(a, _)| *a == ip)
                    {
                        out.push((ip, p.to_string()));
                    }
                }
            }
        }
    }
    out
}

/// Evaluates every account against the planned state.
///
/// # Errors
/// When a planned or current file cannot be read.
pub fn verdicts(cx: &Context, plan: &Plan, flat: &Flattened, lport: u16) -> Result<Vec<Verdict>> {
    let acc = planned_accounts(cx, plan)?;
    let probes = probe_addresses(flat);
    let mut out = Vec::new();
    for u in acc.passwd.entries() {
        let mut results = Vec::new();
        for (addr, label) in &probes {
            let ci = conn_for(&u.name, acc.groups_of(u), *addr, lport);
            let a = SshAccess::from_values(&crate::sshd_config::evaluate(flat, Some(&ci)));
            results.push((label.as_str(), judge(cx, plan, &acc, u, &a)?));
        }
        let any = &results[0].1;
        let allowed: Vec<&str> = results.iter().filter(|r| r.1.ok).map(|r| r.0).collect();
        let denied: Vec<&str> = results.iter().filter(|r| !r.1.ok).map(|r| r.0).collect();
        let from = if denied.is_empty() {
            "any address".to_string()
        } else if any.ok {
            format!("any address except {}", denied.join(", "))
        } else {
            format!("only from {}", allowed.join(", "))
        };
        let methods = results
            .iter()
            .find(|r| r.1.ok)
            .map(|r| r.1.methods.clone())
            .unwrap_or_default();
        out.push(Verdict {
            user: u.name.clone(),
            uid: u.uid,
            can_login: !allowed.is_empty(),
            keys: results.iter().map(|r| r.1.keys).max().unwrap_or(0),
            reason: any.reason.clone(),
            methods,
            from,
        });
    }
    Ok(out)
}

/// Adds refusals to `plan` when nobody could log in over SSH after it (or when the plan
/// touches what keeps sshd reachable), a warning for key holders who are cut off, and a note
/// saying who can log in.
///
/// # Errors
/// When files cannot be read.
pub fn check(cx: &Context, plan: &mut Plan) -> Result<()> {
    whole_plan_refusals(cx, plan)?;
    let Some(a) = plan.ssh_access.clone() else {
        return Ok(());
    };
    let flat = match crate::state::sshd::load_planned(cx, plan) {
        Ok(f) => f,
        Err(e) => {
            plan.refusals.push(Refusal {
                reason: format!("the lockout guard cannot evaluate sshd's configuration: {e}"),
                hint: "fix or shrink the sshd configuration files (--force applies anyway)".into(),
            });
            return Ok(());
        }
    };
    let lport = a.ports.first().copied().unwrap_or(22);
    let v = verdicts(cx, plan, &flat, lport)?;
    plan.notes.push(Note {
        module: "lockout",
        level: Level::Info,
        message: logins_line(&v),
    });
    let can: Vec<&Verdict> = v.iter().filter(|x| x.can_login).collect();
    if can.is_empty() {
        nobody_refusal(plan, &a, &v);
        return Ok(());
    }
    cut_off_warnings(plan, &v);
    lost_admin_refusals(cx, plan, &v)?;
    let admins = Admins::read(cx, plan)?;
    let admin = can.iter().any(|x| admins.is(&x.user));
    if !admin {
        let names: Vec<&str> = can.iter().map(|x| x.user.as_str()).collect();
        plan.notes.push(Note {
            module: "lockout",
            level: Level::Warning,
            message: format!(
                "{} can log in over SSH, but none of them has sudo rights and root cannot log in",
                names.join(", ")
            ),
        });
    }
    Ok(())
}

/// Who has sudo rights in a state: members of the sudo groups, or a line in bollwerk's
/// sudoers drop-in; root always.
struct Admins {
    group: Db<Group>,
    sudoers: String,
}

impl Admins {
    fn read(cx: &Context, plan: &Plan) -> Result<Admins> {
        Ok(Admins {
            group: Db::parse(
                &cx.after(plan, &RelPath::lit("etc/group"))?
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default(),
            ),
            sudoers: cx
                .after(plan, &RelPath::lit(crate::modules::users::SUDOERS_DROPIN))?
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default(),
        })
    }

    fn is(&self, user: &str) -> bool {
        user == "root"
            || self.group.entries().any(|g| {
                SUDO_GROUPS.contains(&g.name.as_str()) && g.members.iter().any(|m| m == user)
            })
            || self
                .sudoers
                .lines()
                .any(|l| l.split_whitespace().next() == Some(user))
    }
}

/// Refuses a plan after which an admin (sudo rights, not root) who logs in with a key today
/// could not any more, even when somebody else still could: the admin's key is the operator's
/// way in. Root is left out: turning off root logins is what hardening profiles do.
fn lost_admin_refusals(cx: &Context, plan: &mut Plan, after: &[Verdict]) -> Result<()> {
    let empty = Plan::default();
    let Ok(flat) = crate::state::sshd::load_planned(cx, &empty) else {
        return Ok(());
    };
    let lport = crate::state::sshd::global_access(cx, &empty)
        .ok()
        .and_then(|a| a.ports.first().copied())
        .unwrap_or(22);
    let before = verdicts(cx, &empty, &flat, lport)?;
    let admins = Admins::read(cx, &empty)?;
    for b in before
        .iter()
        .filter(|b| b.uid != 0 && b.can_login && b.methods.iter().any(|m| m.contains("publickey")))
    {
        if !admins.is(&b.user) {
            continue;
        }
        let Some(a) = after.iter().find(|a| a.user == b.user) else {
            continue;
        };
        if a.can_login && a.methods.iter().any(|m| m.contains("publickey")) {
            continue;
        }
        let reason = if a.can_login {
            format!("only with {} then", a.methods.join(" or "))
        } else {
            a.reason.clone()
        };
        plan.refusals.push(Refusal {
            reason: format!(
                "{} logs in with a key today and could not after this plan: {reason}",
                b.user
            ),
            hint: format!(
                "keep {}'s key login working (fix what the reason names), or take away its sudo rights in the same profile if that is intended (--force applies anyway)",
                b.user
            ),
        });
    }
    Ok(())
}

/// After an apply: asks the root's own sshd (`sshd -T -C` for root and every account with an
/// `authorized_keys` file, through [`crate::state::sshd::per_user`]) who can log in now, and
/// reports a finding when nobody can, which the planned (static) reading did not foresee.
/// Nothing when the apply was forced (the operator accepted the refusal).
///
/// # Errors
/// When the accounts or the configuration cannot be read.
pub fn verify_logins(cx: &Context) -> Result<Vec<crate::engine::Finding>> {
    if cx.options.force {
        return Ok(Vec::new());
    }
    let empty = Plan::default();
    let (users, source) = crate::state::sshd::per_user(cx, ANY_ADDR)?;
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let acc = planned_accounts(cx, &empty)?;
    let mut why = Vec::new();
    for us in &users {
        let Some(u) = acc.passwd.get(&us.conn.user) else {
            continue;
        };
        let j = judge(cx, &empty, &acc, u, &us.access)?;
        if j.ok {
            return Ok(Vec::new());
        }
        why.push(format!("{}: {}", u.name, j.reason));
    }
    Ok(vec![crate::engine::Finding {
        module: "sshd",
        message: format!(
            "{source} says nobody can log in over SSH now: {}",
            why.join("; ")
        ),
    }])
}

/// "after apply, SSH logins: deploy (publickey, any address); root: refused (…)".
fn logins_line(v: &[Verdict]) -> String {
    let shown: Vec<String> = v
        .iter()
        .filter(|x| x.can_login || x.keys > 0 || x.uid == 0)
        .map(|x| {
            if x.can_login {
                format!("{} ({}, {})", x.user, x.methods.join(" or "), x.from)
            } else {
                format!("{}: refused ({})", x.user, x.reason)
            }
        })
        .collect();
    format!(
        "after apply, SSH logins: {}",
        if shown.is_empty() {
            "none".to_string()
        } else {
            shown.join("; ")
        }
    )
}

/// Warns about every key holder (other than root) who cannot log in, and says how to let them.
fn cut_off_warnings(plan: &mut Plan, v: &[Verdict]) {
    for x in v
        .iter()
        .filter(|x| !x.can_login && x.keys > 0 && x.uid != 0)
    {
        let fix = if x.reason.starts_with("not in AllowGroups") {
            format!(
                "to let them in, add one of their groups to ssh.allow_groups (e.g. ssh.allow_groups = [\"sudo\", \"{}\"], {} is the user's own group on Debian) or put them in an allowed group with [[users]] groups",
                x.user, x.user
            )
        } else if x.reason.starts_with("not in AllowUsers") {
            format!("to let them in, add \"{}\" to ssh.allow_users", x.user)
        } else if x.reason.contains("DenyUsers") || x.reason.contains("DenyGroups") {
            "to let them in, drop the matching ssh.deny_users / ssh.deny_groups entry".to_string()
        } else {
            "leave it so only if that is intended".to_string()
        };
        plan.notes.push(Note {
            module: "lockout",
            level: Level::Warning,
            message: format!(
                "{} has an SSH key but cannot log in after apply: {}; {fix}",
                x.user, x.reason
            ),
        });
    }
}

fn nobody_refusal(plan: &mut Plan, a: &SshAccess, v: &[Verdict]) {
    let holders: Vec<&Verdict> = v.iter().filter(|x| x.keys > 0).collect();
    let mut state = Vec::new();
    if !a.password_authentication && !a.kbd_interactive {
        state.push("password logins are off".to_string());
    }
    state.push(format!("PermitRootLogin is {}", a.permit_root_login));
    if !a.allow_groups.is_empty() {
        state.push(format!("AllowGroups is {}", a.allow_groups.join(" ")));
    }
    if !a.allow_users.is_empty() {
        state.push(format!("AllowUsers is {}", a.allow_users.join(" ")));
    }
    let why: Vec<String> = v
        .iter()
        .filter(|x| {
            x.keys > 0
                || x.uid == 0
                || (1000..60000).contains(&x.uid)
                || x.reason.starts_with("not in Allow")
        })
        .map(|x| format!("{}: {}", x.user, x.reason))
        .collect();
    let reason = format!(
        "after this plan nobody could log in over SSH ({}){}",
        state.join(", "),
        if why.is_empty() {
            String::new()
        } else {
            format!(":\n    {}", why.join("\n    "))
        }
    );
    let hint = if holders.is_empty() {
        "give an admin user a key in the profile, e.g.\n    [[users]]\n    name = \"admin\"\n    groups = [\"sudo\"]\n    sudo = \"nopasswd\"\n    ssh_keys = [\"ssh-ed25519 AAAA… you@laptop\"]\n  (or keep ssh.password_authentication = true; --force applies anyway)".to_string()
    } else {
        let names: Vec<&str> = holders.iter().map(|h| h.user.as_str()).collect();
        format!(
            "fix what the reason names for a key holder ({}): the Allow/Deny lists (ssh.allow_groups, ssh.allow_users), a Match block in sshd_config.d, modes of the home directory, the login shell, UsePAM (--force applies anyway)",
            names.join(", ")
        )
    };
    plan.refusals.push(Refusal { reason, hint });
}

/// Paths whose replacement by `[[files]]` / `write_files` the guard refuses: it (and the
/// validators) reason about them, and those modules write them unchecked.
const GUARDED: &[&str] = &[
    "etc/ssh/sshd_config",
    "etc/pam.d",
    "etc/nftables.conf",
    "etc/nftables.d",
];

/// Refusals that do not depend on who can log in.
fn whole_plan_refusals(cx: &Context, plan: &mut Plan) -> Result<()> {
    let mut refusals = Vec::new();
    // Removing the SSH server.
    if let Some(pk) = cx.profile.profile.packages.as_ref() {
        for r in pk.remove.iter().flatten() {
            let name = r.as_str().split(':').next().unwrap_or("");
            if matches!(name, "openssh-server" | "ssh") && cx.facts.package(name).is_some() {
                refusals.push(Refusal {
                    reason: format!(
                        "packages.remove removes {name}: nobody could log in over SSH afterwards"
                    ),
                    hint: format!("drop {name} from packages.remove (--force applies anyway)"),
                });
            }
        }
    }
    // Files written by modules that do not reason about sshd, PAM or the firewall.
    for c in &plan.changes {
        if !matches!(c.module, "files" | "firstboot") {
            continue;
        }
        let Some(p) = c.action.path() else { continue };
        if let Some(g) = GUARDED.iter().find(|g| {
            let s = p.as_str();
            s == **g || s.starts_with(&format!("{g}/")) || s.starts_with(&format!("{g}.d/"))
        }) {
            refusals.push(Refusal {
                reason: format!(
                    "{} {} replaces {}, which the lockout guard and the validators reason about",
                    if c.module == "files" {
                        "[[files]]"
                    } else {
                        "write_files"
                    },
                    p.absolute(),
                    format_args!("/{g}"),
                ),
                hint: "manage it through [ssh], [pam] or [firewall], which are validated and guarded (--force applies anyway)".into(),
            });
        }
    }
    if let Some(a) = plan.ssh_access.clone() {
        refusals.extend(socket_refusal(cx, plan, &a)?);
        if cx.root.is_host() {
            refusals.extend(live_refusals(cx, &a, std::path::Path::new("/proc")));
        }
    }
    plan.refusals.extend(refusals);
    Ok(())
}

/// `ssh.socket` enabled: systemd owns the listening socket (`ListenStream=`) and sshd's `Port` /
/// `ListenAddress` are not used. Refuses a plan whose ports differ from the socket's.
fn socket_refusal(cx: &Context, plan: &Plan, a: &SshAccess) -> Result<Option<Refusal>> {
    let link = RelPath::lit("etc/systemd/system/sockets.target.wants/ssh.socket");
    let planned_link = plan.changes.iter().rev().find_map(|c| match &c.action {
        Action::Symlink { path, .. } if *path == link => Some(true),
        Action::Remove { path } if *path == link => Some(false),
        _ => None,
    });
    if !planned_link.unwrap_or(cx.root.entry(&link)?.exists()) {
        return Ok(None);
    }
    let mut texts = Vec::new();
    for unit in [
        "lib/systemd/system/ssh.socket",
        "usr/lib/systemd/system/ssh.socket",
        "etc/systemd/system/ssh.socket",
    ] {
        if let Ok(r) = RelPath::new(unit)
            && let Some(t) = cx.after(plan, &r)?
        {
            texts.push(String::from_utf8_lossy(&t).into_owned());
        }
    }
    let dropins = RelPath::lit("etc/systemd/system/ssh.socket.d");
    let mut names = cx.root.list_dir(&dropins)?;
    names.sort();
    for n in names.iter().filter(|n| n.ends_with(".conf")) {
        if let Ok(r) = dropins.join(n)
            && let Some(t) = cx.after(plan, &r)?
        {
            texts.push(String::from_utf8_lossy(&t).into_owned());
        }
    }
    let socket_ports = listen_stream_ports(&texts);
    let mut want = a.ports.clone();
    want.sort_unstable();
    want.dedup();
    if socket_ports == want && a.listen_addresses.is_empty() {
        return Ok(None);
    }
    Ok(Some(Refusal {
        reason: format!(
            "ssh.socket is enabled: systemd listens on port(s) {} (ListenStream in ssh.socket) and sshd's Port/ListenAddress are not used, but the profile wants port(s) {}{}",
            join_ports(&socket_ports),
            join_ports(&want),
            if a.listen_addresses.is_empty() {
                String::new()
            } else {
                format!(" on {}", a.listen_addresses.join(", "))
            }
        ),
        hint: "disable socket activation first (systemctl disable --now ssh.socket; systemctl enable --now ssh.service), or leave ssh.port / ssh.listen_addresses unset (--force applies anyway)".into(),
    }))
}

fn join_ports(p: &[u16]) -> String {
    if p.is_empty() {
        return "(none)".into();
    }
    p.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
}

/// Ports of `ListenStream=` lines (an empty assignment resets the list, as in systemd).
pub fn listen_stream_ports(texts: &[String]) -> Vec<u16> {
    let mut ports = Vec::new();
    for t in texts {
        for l in t.lines() {
            let Some(v) = l.trim().strip_prefix("ListenStream=") else {
                continue;
            };
            let v = v.trim();
            if v.is_empty() {
                ports.clear();
                continue;
            }
            if let Some(p) = v.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()) {
                ports.push(p);
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// On the live host: a new port somebody else already listens on, or a `ListenAddress` the
/// host does not have, means sshd would not come back after the reload.
fn live_refusals(cx: &Context, a: &SshAccess, proc_dir: &std::path::Path) -> Vec<Refusal> {
    let read = |n: &str| std::fs::read_to_string(proc_dir.join(n)).unwrap_or_default();
    let now = crate::modules::sshd::static_effective(cx, &Plan::default())
        .ok()
        .and_then(|e| e.get("port").cloned())
        .map(|v| v.iter().filter_map(|p| p.parse::<u16>().ok()).collect())
        .unwrap_or_else(|| vec![22]);
    let listening = listening_ports(&[read("net/tcp"), read("net/tcp6")]);
    let mut out = Vec::new();
    for p in a.ports.iter().filter(|p| !now.contains(p)) {
        if listening.contains(p) {
            out.push(Refusal {
                reason: format!("ssh.port {p} is already in use on this host (a listening socket in /proc/net/tcp*): sshd could not bind it after the reload"),
                hint: "choose a free port, or stop what listens there first (--force applies anyway)".into(),
            });
        }
    }
    let addrs = host_addresses(&read("net/fib_trie"), &read("net/if_inet6"));
    for la in &a.listen_addresses {
        let host = la.split_whitespace().next().unwrap_or(la);
        let addr = match host.strip_prefix('[') {
            Some(r) => r.split(']').next().unwrap_or(r),
            None if host.matches(':').count() == 1 => host.split(':').next().unwrap_or(host),
            None => host,
        };
        if let Ok(ip) = addr.parse::<IpAddr>()
            && !ip.is_unspecified()
            && !addrs.contains(&ip)
        {
            out.push(Refusal {
                reason: format!("ListenAddress {la}: {ip} is not an address of this host, sshd could not bind it"),
                hint: "use an address `ip addr` shows, or leave ssh.listen_addresses unset (--force applies anyway)".into(),
            });
        }
    }
    out
}

/// Local ports in LISTEN state (`st` 0A) in `/proc/net/tcp` / `tcp6` texts.
pub fn listening_ports(texts: &[String]) -> Vec<u16> {
    texts
        .iter()
        .flat_map(|t| crate::state::sockets::listening(t, false))
        .map(|s| s.port)
        .collect()
}

/// The host's own addresses: `/32 host LOCAL` entries of `/proc/net/fib_trie`, and
/// `/proc/net/if_inet6`.
pub fn host_addresses(fib_trie: &str, if_inet6: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut last: Option<&str> = None;
    for l in fib_trie.lines() {
        let t = l.trim_start_matches([' ', '|', '+', '-']).trim();
        if t.contains("/32 host LOCAL") {
            if let Some(ip) = last.and_then(|a| a.parse::<IpAddr>().ok())
                && !out.contains(&ip)
            {
                out.push(ip);
            }
        } else if let Some(a) = t.split_whitespace().next() {
            last = Some(a);
        }
    }
    for l in if_inet6.lines() {
        if let Some(h) = l.split_whitespace().next()
            && h.len() == 32
            && let Ok(n) = u128::from_str_radix(h, 16)
        {
            out.push(IpAddr::V6(std::net::Ipv6Addr::from(n)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(user_matches(&["dep*".into()], "deploy"));
        assert!(user_matches(&["deploy@10.0.0.*".into()], "deploy"));
        assert!(!user_matches(&["alice".into()], "deploy"));
        assert!(group_matches(
            &["sudo".into()],
            &["deploy".into(), "sudo".into()]
        ));
        assert!(!group_matches(&["admins".into()], &["sudo".into()]));
    }

    #[test]
    fn live_host_readers() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n   1: 0100007F:08AE 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1\n";
        let tcp6 = "  sl  local_address\n   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 0:0 0 0\n";
        assert_eq!(
            listening_ports(&[tcp.to_string(), tcp6.to_string()]),
            vec![22, 8080],
            "2222 (08AE) is an established connection, not a listener"
        );
        let fib = "Main:\n  +-- 0.0.0.0/0 3 0 5\n     |-- 0.0.0.0\n        /0 universe UNICAST\n     +-- 127.0.0.0/8 2 0 2\n        +-- 127.0.0.0/31 1 0 0\n           |-- 127.0.0.0\n              /8 host LOCAL\n           |-- 127.0.0.1\n              /32 host LOCAL\n     |-- 192.0.2.10\n        /32 host LOCAL\n";
        let v6 = "00000000000000000000000000000001 01 80 10 80       lo\n";
        let a = host_addresses(fib, v6);
        assert!(a.contains(&"127.0.0.1".parse().unwrap()));
        assert!(a.contains(&"192.0.2.10".parse().unwrap()));
        assert!(a.contains(&"::1".parse().unwrap()));
        assert!(!a.contains(&"127.0.0.0".parse().unwrap()));
        assert_eq!(
            listen_stream_ports(&[
                "[Socket]\nListenStream=22\n".into(),
                "[Socket]\nListenStream=\nListenStream=0.0.0.0:2222\nListenStream=[::]:2222\n"
                    .into()
            ]),
            vec![2222]
        );
    }

    #[test]
    fn live_host_port_in_use_and_foreign_listen_address_are_refused() {
        let root_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root_dir.path().join("etc/ssh")).unwrap();
        std::fs::write(root_dir.path().join("etc/ssh/sshd_config"), "Port 22\n").unwrap();
        let proc_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(proc_dir.path().join("net")).unwrap();
        // Something listens on 2222 (0x08AE) and on 22 (sshd itself).
        std::fs::write(
            proc_dir.path().join("net/tcp"),
            "  sl  local_address rem_address   st\n   0: 00000000:0016 00000000:0000 0A 0\n   1: 00000000:08AE 00000000:0000 0A 0\n",
        )
        .unwrap();
        std::fs::write(
            proc_dir.path().join("net/fib_trie"),
            "Main:\n     |-- 192.0.2.10\n        /32 host LOCAL\n",
        )
        .unwrap();
        let root = crate::root::Root::new(root_dir.path()).unwrap();
        let runner = crate::exec::FakeRunner::new();
        let loaded = crate::profile::Loaded {
            profile: Default::default(),
            layers: Vec::new(),
            digest: String::new(),
        };
        let cx = Context::new(root, &runner, &loaded, Default::default()).unwrap();
        let mut a = crate::state::sshd::SshAccess::from_values(&Default::default());
        a.ports = vec![22, 2222];
        a.listen_addresses = vec![
            "192.0.2.10:2222".into(),
            "198.51.100.1".into(),
            "0.0.0.0".into(),
        ];
        let r = live_refusals(&cx, &a, proc_dir.path());
        let text: Vec<&str> = r.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(r.len(), 2, "{text:?}");
        assert!(
            text[0].starts_with("ssh.port 2222 is already in use"),
            "{text:?}"
        );
        assert!(
            text[1].starts_with(
                "ListenAddress 198.51.100.1: 198.51.100.1 is not an address of this host"
            ),
            "{text:?}"
        );
        // Port 22 is sshd's own (in the current configuration): not "in use" by someone else.
        a.ports = vec![22];
        a.listen_addresses.clear();
        assert!(live_refusals(&cx, &a, proc_dir.path()).is_empty());
    }
}
