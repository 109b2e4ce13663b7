//! The lockout guard: after every module planned, work out who could still log in over SSH
//! once the plan is applied, and refuse the plan when nobody could.
//!
//! It reads the *planned* state: `etc/passwd`, `etc/group`, `etc/shadow` and every user's
//! `authorized_keys` as the plan leaves them, and the sshd settings the sshd module computed
//! ([`crate::modules::sshd::SshAccess`]). A user can log in when their shell is a login shell,
//! the Allow/Deny lists let them through, and an enabled method works for them: a valid key
//! of an accepted type (RSA keys below the minimum size do not count), or a password hash
//! with password/keyboard-interactive authentication on. Root is gated by `PermitRootLogin`.

use crate::engine::{Context, Level, Note, Plan, Refusal};
use crate::error::Result;
use crate::etcdb::{Db, Group, Passwd, Shadow};
use crate::state::sshd::SshAccess;
use crate::modules::users::SUDO_GROUPS;
use crate::root::RelPath;
use crate::sshd_config::glob_match;
use crate::sshkeys::{AuthorizedLine, PublicKey, parse_authorized_keys};

/// Why one account can or cannot log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// User name.
    pub user: String,
    /// User id.
    pub uid: u32,
    /// True when the account could log in after the plan.
    pub can_login: bool,
    /// Number of usable keys.
    pub keys: usize,
    /// Reason when it cannot.
    pub reason: String,
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

/// Evaluates every account against the planned state.
///
/// # Errors
/// When a planned or current file cannot be read.
pub fn verdicts(cx: &Context, plan: &Plan, a: &SshAccess) -> Result<Vec<Verdict>> {
    let read = |p: &'static str| -> Result<String> {
        Ok(cx
            .after(plan, &RelPath::lit(p))?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default())
    };
    let passwd: Db<Passwd> = Db::parse(&read("etc/passwd")?);
    let group: Db<Group> = Db::parse(&read("etc/group")?);
    let shadow: Db<Shadow> = Db::parse(&read("etc/shadow")?);
    let mut out = Vec::new();
    for u in passwd.entries() {
        let groups: Vec<String> = group
            .entries()
            .filter(|g| g.gid == u.gid || g.members.contains(&u.name))
            .map(|g| g.name.clone())
            .collect();
        let mut keys = 0usize;
        let mut weak = 0usize;
        for pattern in &a.authorized_keys_files {
            let path = pattern
                .replace("%h", &u.home)
                .replace("%u", &u.name)
                .replace("%%", "%");
            let path = if path.starts_with('/') {
                path
            } else {
                format!("{}/{path}", u.home.trim_end_matches('/'))
            };
            let Ok(rel) = RelPath::new(&path) else {
                continue;
            };
            if let Some(b) = cx.after(plan, &rel)? {
                for l in parse_authorized_keys(&String::from_utf8_lossy(&b)) {
                    if let AuthorizedLine::Key(k) = l {
                        if key_usable(&k, a) {
                            keys += 1;
                        } else {
                            weak += 1;
                        }
                    }
                }
            }
        }
        let has_pw = shadow.get(&u.name).is_some_and(Shadow::has_password);
        let mut key_ok = a.pubkey && keys > 0;
        let mut pw_ok = a.password_authentication && has_pw;
        let mut kbd_ok = a.kbd_interactive && has_pw;
        let verdict = |can: bool, reason: String| Verdict {
            user: u.name.clone(),
            uid: u.uid,
            can_login: can,
            keys,
            reason,
        };
        if !is_login_shell(&u.shell) {
            out.push(verdict(
                false,
                format!("shell {} does not allow logins", u.shell),
            ));
            continue;
        }
        if u.uid == 0 {
            match a.permit_root_login.as_str() {
                "yes" => {}
                "prohibit-password" | "without-password" => {
                    pw_ok = false;
                    kbd_ok = false;
                }
                _ => {
                    out.push(verdict(
                        false,
                        format!("PermitRootLogin {}", a.permit_root_login),
                    ));
                    continue;
                }
            }
        }
        if user_matches(&a.deny_users, &u.name) {
            out.push(verdict(false, "listed in DenyUsers".into()));
            continue;
        }
        if !a.allow_users.is_empty() && !user_matches(&a.allow_users, &u.name) {
            out.push(verdict(
                false,
                format!("not in AllowUsers {}", a.allow_users.join(" ")),
            ));
            continue;
        }
        if group_matches(&a.deny_groups, &groups) {
            out.push(verdict(false, "a group is in DenyGroups".into()));
            continue;
        }
        if !a.allow_groups.is_empty() && !group_matches(&a.allow_groups, &groups) {
            out.push(verdict(
                false,
                format!("not in AllowGroups {}", a.allow_groups.join(" ")),
            ));
            continue;
        }
        if !a.methods.is_empty() {
            let ok = a.methods.iter().any(|chain| {
                chain
                    .iter()
                    .all(|m| match m.split(':').next().unwrap_or("") {
                        "publickey" => key_ok,
                        "password" => pw_ok,
                        "keyboard-interactive" => kbd_ok,
                        _ => false,
                    })
            });
            key_ok = ok;
            pw_ok = false;
            kbd_ok = false;
        }
        if key_ok || pw_ok || kbd_ok {
            out.push(verdict(true, String::new()));
        } else {
            let reason = if keys == 0 && weak > 0 {
                format!("its {weak} key(s) are too weak or of a type sshd does not accept")
            } else if keys == 0 && !has_pw {
                "no SSH key and no password".to_string()
            } else if keys == 0 {
                "no SSH key, and password logins are off".to_string()
            } else {
                "public key authentication is off".to_string()
            };
            out.push(verdict(false, reason));
        }
    }
    Ok(out)
}

/// Adds a refusal to `plan` when nobody could log in over SSH after it, and a warning when
/// nobody who could log in has sudo rights.
///
/// # Errors
/// When files cannot be read.
pub fn check(cx: &Context, plan: &mut Plan) -> Result<()> {
    let Some(a) = plan.ssh_access.clone() else {
        return Ok(());
    };
    let v = verdicts(cx, plan, &a)?;
    let can: Vec<&Verdict> = v.iter().filter(|x| x.can_login).collect();
    if can.is_empty() {
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
                "let a key holder ({}) through: add them to a group in ssh.allow_groups / a name in ssh.allow_users, or change those lists (--force applies anyway)",
                names.join(", ")
            )
        };
        plan.refusals.push(Refusal { reason, hint });
        return Ok(());
    }
    let group = Db::<Group>::parse(
        &cx.after(plan, &RelPath::lit("etc/group"))?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default(),
    );
    let sudoers = cx
        .after(plan, &RelPath::lit(crate::modules::users::SUDOERS_DROPIN))?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let admin = can.iter().any(|x| {
        x.user == "root"
            || group
                .entries()
                .any(|g| SUDO_GROUPS.contains(&g.name.as_str()) && g.members.contains(&x.user))
            || sudoers
                .lines()
                .any(|l| l.split_whitespace().next() == Some(x.user.as_str()))
    });
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
}
