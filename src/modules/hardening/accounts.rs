//! Account policy (`[accounts]`): password ageing, hashing and umask in `etc/login.defs`
//! (edited in place: it has no drop-in directory), `INACTIVE` in `etc/default/useradd` (what
//! `useradd -D -f` writes), the login shells' default umask and idle timeout in
//! `etc/profile.d/bollwerk-shell.sh` (the umask also as a marked block at the end of
//! `etc/profile` and `etc/bash.bashrc`, where OpenSCAP and Lynis look), existing users' password ageing in `etc/shadow` (only
//! accounts with a usable password hash, never loosening a stricter value), system accounts
//! without a login shell and with a locked password, and root's `PATH` (CIS 5.4.1.x,
//! 5.4.2.5–5.4.2.8, 5.4.3.2–5.4.3.3).
//!
//! Runs after the users module and starts from the `etc/passwd` and `etc/shadow` it plans;
//! accounts listed in `[[users]]` keep the shell the profile gives them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Level, Plan, Planner, Visibility};
use crate::error::Result;
use crate::etcdb::{Db, Passwd, Shadow};
use crate::modules::Module;
use crate::modules::users::MANAGED_HEADER;
use crate::profile::types::{Duration, Mode, UserName};
use crate::profile::{Layer, ProfileError};
use crate::root::{Entry, Perms, RelPath};

use super::util::{Syntax, Want, get_setting, set_settings, with_block};

const LOGIN_DEFS: &str = "etc/login.defs";
const USERADD: &str = "etc/default/useradd";
/// bash's system-wide interactive startup file (a conffile of bash): the umask goes into a
/// marked block at its end (OpenSCAP and Lynis read it).
const BASHRC: &str = "etc/bash.bashrc";
/// The login shells' startup file (base-files copies it, not a conffile; base-files leaves a
/// modified one alone): the same marked block (Lynis reads it).
const PROFILE: &str = "etc/profile";
/// The marked block's name in `etc/bash.bashrc` and `etc/profile`.
const UMASK_BLOCK: &str = "accounts";
/// The shell fragment bollwerk owns.
pub const SHELL_DROPIN: &str = "etc/profile.d/bollwerk-shell.sh";

/// Password hashing for new passwords (`ENCRYPT_METHOD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncryptMethod {
    /// yescrypt where the target's shadow tools support it (their `login.defs` documents
    /// it, as Debian 12's does), else SHA512.
    Auto,
    /// yescrypt.
    Yescrypt,
    /// SHA-512 crypt.
    Sha512,
}

/// `[accounts]`: password ageing, shell defaults, system accounts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountsSection {
    /// `PASS_MAX_DAYS`: days a password stays valid (CIS 5.4.1.1: 365 or less).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_max_days: Option<u32>,
    /// `PASS_MIN_DAYS`: days before a password may be changed again (CIS 5.4.1.2: 1 or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_min_days: Option<u32>,
    /// `PASS_WARN_AGE`: days of warning before a password expires (CIS 5.4.1.3: 7 or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_warn_age: Option<u32>,
    /// Days after a password expired until the account is disabled (`useradd -D -f`, CIS
    /// 5.4.1.5: 45 or less).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactive: Option<u32>,
    /// `ENCRYPT_METHOD`: "auto" (yescrypt where supported, else SHA512), "yescrypt", "sha512".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt_method: Option<EncryptMethod>,
    /// Default umask (`UMASK` in login.defs, `umask` for login shells in
    /// `etc/profile.d/bollwerk-shell.sh`, and in a marked block at the end of `etc/profile`
    /// and of `etc/bash.bashrc` (interactive bash shells; where OpenSCAP and Lynis look), e.g.
    /// "027".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub umask: Option<Mode>,
    /// `SHA_CRYPT_MIN_ROUNDS` and `SHA_CRYPT_MAX_ROUNDS` in login.defs: rounds of SHA-512
    /// password hashes (5000 to 999999999). Only used when the method is SHA512; yescrypt
    /// ignores it (Lynis AUTH-9230 looks for it whatever the method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha_crypt_rounds: Option<u32>,
    /// Idle timeout of interactive shells (`TMOUT`, read-only), e.g. "15m" (CIS 5.4.3.2: 900 s
    /// or less).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell_timeout: Option<Duration>,
    /// Apply `pass_*` and `inactive` to existing accounts that have a password hash (default
    /// true; never loosens a stricter value, skips passwords the new maximum would expire at
    /// once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_users: Option<bool>,
    /// Give system accounts (uid below `UID_MIN`) with a login shell `/usr/sbin/nologin` and
    /// lock the password of every non-root account without a login shell (CIS 5.4.2.7-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_accounts_nologin: Option<bool>,
    /// System accounts that keep their login shell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nologin_exempt: Vec<UserName>,
    /// root's `PATH` (`ENV_SUPATH` in login.defs); its directories are made root-owned and not
    /// group/world-writable (CIS 5.4.2.5), e.g.
    /// "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_path: Option<String>,
}

/// Range and syntax checks of `[accounts]`.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(
    s: &AccountsSection,
    layers: &[Layer],
) -> std::result::Result<(), ProfileError> {
    let err = |key: &str, msg: String, hint: &str| {
        Err(crate::profile::error_at(layers, &["accounts", key], msg).with_hint(hint.to_string()))
    };
    if let (Some(min), Some(max)) = (s.pass_min_days, s.pass_max_days)
        && min > max
    {
        return err(
            "pass_min_days",
            format!("pass_min_days = {min} is more than pass_max_days = {max}"),
            "users could never change their password in time",
        );
    }
    if let Some(m) = s.umask
        && m.0 > 0o777
    {
        return err(
            "umask",
            format!("umask {m} has more than permission bits"),
            "write e.g. \"027\"",
        );
    }
    if let Some(t) = s.shell_timeout
        && (t.secs() == 0 || t.secs() > 86_400)
    {
        return err(
            "shell_timeout",
            format!("shell_timeout = {} s is out of range", t.secs()),
            "use e.g. \"15m\" (CIS asks for 900 s or less)",
        );
    }
    if let Some(r) = s.sha_crypt_rounds
        && !(5000..=999_999_999).contains(&r)
    {
        return err(
            "sha_crypt_rounds",
            format!("sha_crypt_rounds = {r} is out of range"),
            "use 5000 to 999999999 (e.g. 65536)",
        );
    }
    if let Some(p) = &s.root_path {
        let bad = p.split(':').find(|d| {
            d.is_empty()
                || !d.starts_with('/')
                || d.split('/').any(|c| c == "." || c == "..")
                || d.contains(char::is_whitespace)
        });
        if let Some(d) = bad {
            return err(
                "root_path",
                format!("root_path has the entry {d:?}"),
                "only absolute directories, no empty entry, no `.`, no trailing `:`",
            );
        }
    }
    Ok(())
}

fn resolve_encrypt(m: EncryptMethod, login_defs: &str) -> &'static str {
    match m {
        EncryptMethod::Yescrypt => "YESCRYPT",
        EncryptMethod::Sha512 => "SHA512",
        EncryptMethod::Auto if login_defs.contains("YESCRYPT") => "YESCRYPT",
        EncryptMethod::Auto => "SHA512",
    }
}

/// Renders the login shell fragment.
pub fn render_shell(umask: Option<Mode>, timeout: Option<Duration>) -> String {
    let mut s = format!("{MANAGED_HEADER}\n# Login shell defaults ([accounts] of the profile).\n");
    if let Some(m) = umask {
        s.push_str(&format!("umask {:03o}\n", m.0));
    }
    if let Some(t) = timeout {
        let n = t.secs();
        s.push_str(&format!(
"# Idle interactive shells end after {n} s; read-only so a user cannot lift it (the\n# test keeps a second sourcing from failing on the read-only variable; the three lines\n# are the form CIS shows and OpenSCAP looks for).\nif [ \"${{TMOUT:-}}\" != {n} ]; then\n    TMOUT={n}\n    readonly TMOUT\n    export TMOUT\nfi\nreadonly TMOUT\nexport TMOUT\n"
        ));
    }
    s
}

/// Numeric value of a shadow field (`None` when empty or not a number).
fn num(v: &str) -> Option<i64> {
    v.trim().parse().ok()
}

/// Brings one account's ageing fields in line; returns what changed.
fn age_account(
    e: &mut Shadow,
    s: &AccountsSection,
    today: i64,
) -> std::result::Result<Vec<String>, String> {
    let mut changed = Vec::new();
    if let (Some(max), Some(last)) = (s.pass_max_days, num(&e.last_change))
        && last > 0
        && last + i64::from(max) < today
        && num(&e.max).is_none_or(|m| m > i64::from(max))
    {
        return Err(format!(
            "the password of {} was last changed {} days ago: pass_max_days = {max} would expire it at once",
            e.name,
            today - last
        ));
    }
    let mut set = |field: &mut String, want: u32, stricter_is_lower: bool, label: &str| {
        let cur = num(field);
        let ok = match cur {
            Some(c) if c >= 0 => {
                if stricter_is_lower {
                    c <= i64::from(want)
                } else {
                    c >= i64::from(want)
                }
            }
            _ => false,
        };
        if !ok {
            *field = want.to_string();
            changed.push(label.to_string());
        }
    };
    if let Some(v) = s.pass_max_days {
        set(&mut e.max, v, true, "max");
    }
    if let Some(v) = s.pass_min_days {
        set(&mut e.min, v, false, "min");
    }
    if let Some(v) = s.pass_warn_age {
        set(&mut e.warn, v, false, "warn");
    }
    if let Some(v) = s.inactive {
        set(&mut e.inactive, v, true, "inactive");
    }
    Ok(changed)
}

/// Valid login shells: `etc/shells` minus nologin/false.
fn login_shells(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('/') && !l.ends_with("/nologin") && !l.ends_with("/false"))
        .map(str::to_string)
        .collect()
}

/// The accounts module.
pub struct Accounts;

impl Module for Accounts {
    fn name(&self) -> &'static str {
        "accounts"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(s) = &cx.profile.profile.accounts else {
            return Ok(());
        };
        let passwd_rel = RelPath::lit("etc/passwd");
        let shadow_rel = RelPath::lit("etc/shadow");
        let passwd_text =
            String::from_utf8_lossy(&cx.after(plan, &passwd_rel)?.unwrap_or_default()).into_owned();
        let shadow_text = cx
            .after(plan, &shadow_rel)?
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let mut p = Planner::new(self.name(), plan);

        // login.defs
        let defs_rel = RelPath::lit(LOGIN_DEFS);
        let defs = cx.root.read_string(&defs_rel)?;
        let mut settings: Vec<(&str, Want)> = Vec::new();
        if let Some(v) = s.pass_max_days {
            settings.push(("PASS_MAX_DAYS", Want::Value(v.to_string())));
        }
        if let Some(v) = s.pass_min_days {
            settings.push(("PASS_MIN_DAYS", Want::Value(v.to_string())));
        }
        if let Some(v) = s.pass_warn_age {
            settings.push(("PASS_WARN_AGE", Want::Value(v.to_string())));
        }
        if let Some(m) = s.encrypt_method {
            let method = resolve_encrypt(m, defs.as_deref().unwrap_or_default());
            settings.push(("ENCRYPT_METHOD", Want::Value(method.to_string())));
        }
        if let Some(m) = s.umask {
            settings.push(("UMASK", Want::Value(format!("{:03o}", m.0))));
        }
        if let Some(r) = s.sha_crypt_rounds {
            settings.push(("SHA_CRYPT_MIN_ROUNDS", Want::Value(r.to_string())));
            settings.push(("SHA_CRYPT_MAX_ROUNDS", Want::Value(r.to_string())));
        }
        if let Some(path) = &s.root_path {
            settings.push(("ENV_SUPATH", Want::Value(format!("PATH={path}"))));
        }
        if !settings.is_empty() {
            match &defs {
                Some(text) => {
                    let new = set_settings(text, Syntax::Spaced, &settings);
                    let perms = match cx.root.entry(&defs_rel)? {
                        Entry::File { perms, .. } => perms,
                        _ => Perms::root(0o644),
                    };
                    p.file(
                        &cx.root,
                        &defs_rel,
                        new,
                        perms,
                        "password and umask policy in /etc/login.defs",
                    )?;
                }
                None => p.note(
                    Level::Warning,
                    "etc/login.defs does not exist: the shadow tools' policy is not set",
                ),
            }
        }

        // useradd -D -f
        if let Some(v) = s.inactive {
            let rel = RelPath::lit(USERADD);
            let text = cx.root.read_string(&rel)?.unwrap_or_default();
            let new = set_settings(
                &text,
                Syntax::Assign,
                &[("INACTIVE", Want::Value(v.to_string()))],
            );
            if get_setting(&text, "INACTIVE").as_deref() != Some(&v.to_string()) {
                let perms = match cx.root.entry(&rel)? {
                    Entry::File { perms, .. } => perms,
                    _ => Perms::root(0o644),
                };
                p.file(&cx.root, &rel, new, perms, format!("new accounts are disabled {v} days after their password expired (useradd -D -f {v})"))?;
            }
        }

        // Login shells.
        let shell_rel = RelPath::lit(SHELL_DROPIN);
        if s.umask.is_some() || s.shell_timeout.is_some() {
            p.file(
                &cx.root,
                &shell_rel,
                render_shell(s.umask, s.shell_timeout),
                Perms::root(0o644),
                "umask and idle timeout of login shells",
            )?;
        }
        if let Some(m) = s.umask {
            for (file, what) in [
                (BASHRC, "umask of interactive bash shells (etc/bash.bashrc)"),
                (PROFILE, "umask of login shells in etc/profile too"),
            ] {
                let rel = RelPath::lit(file);
                match (cx.root.entry(&rel)?, cx.root.read_string(&rel)?) {
                    (Entry::File { perms, .. }, Some(text)) => {
                        p.file(
                            &cx.root,
                            &rel,
                            with_block(&text, UMASK_BLOCK, &format!("umask {:03o}\n", m.0)),
                            perms,
                            what,
                        )?;
                    }
                    _ => p.note(
                        Level::Info,
                        format!("{file} does not exist: the umask is not added there"),
                    ),
                }
            }
        }

        // Accounts: system shells, locked passwords, ageing.
        let mut passwd: Db<Passwd> = Db::parse(&passwd_text);
        let mut shadow: Option<Db<Shadow>> = shadow_text.as_deref().map(Db::parse);
        let mut passwd_summary = Vec::new();
        let mut shadow_summary = Vec::new();
        if s.system_accounts_nologin == Some(true) {
            let defs_text = defs.clone().unwrap_or_default();
            let uid_min: u32 = get_setting(&defs_text, "UID_MIN")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            let shells = login_shells(
                &cx.root
                    .read_string(&RelPath::lit("etc/shells"))?
                    .unwrap_or_default(),
            );
            let nologin = if cx.root.exists(&RelPath::lit("usr/sbin/nologin")) {
                "/usr/sbin/nologin"
            } else {
                "/sbin/nologin"
            };
            let names: Vec<String> = passwd.entries().map(|e| e.name.clone()).collect();
            for name in names {
                let Some(e) = passwd.get_mut(&name) else {
                    continue;
                };
                if e.uid == 0 {
                    continue;
                }
                let system = (e.uid < uid_min || e.uid == 65534)
                    && !matches!(e.name.as_str(), "sync" | "shutdown" | "halt");
                let in_profile = cx
                    .profile
                    .profile
                    .users
                    .iter()
                    .any(|u| u.name.as_str() == name);
                let exempt = s.nologin_exempt.iter().any(|u| u.as_str() == name);
                if system && shells.contains(&e.shell) {
                    if in_profile || exempt {
                        p.note(
                            Level::Info,
                            format!(
                                "system account {name} keeps its login shell {} ({})",
                                e.shell,
                                if in_profile {
                                    "set in [[users]]"
                                } else {
                                    "accounts.nologin_exempt"
                                }
                            ),
                        );
                    } else {
                        passwd_summary.push(format!("{name}: shell {} → {nologin}", e.shell));
                        e.shell = nologin.to_string();
                    }
                }
                let login = shells.contains(&e.shell);
                if !login
                    && !in_profile
                    && let Some(sh) = shadow.as_mut()
                    && let Some(se) = sh.get_mut(&name)
                    && !se.password_locked()
                {
                    se.hash = format!("!{}", se.hash);
                    shadow_summary.push(format!("lock the password of {name} (no login shell)"));
                }
            }
        }
        let ageing = s.pass_max_days.is_some()
            || s.pass_min_days.is_some()
            || s.pass_warn_age.is_some()
            || s.inactive.is_some();
        if ageing && s.existing_users != Some(false) {
            let today = crate::facts::days_since_epoch() as i64;
            if let Some(sh) = shadow.as_mut() {
                let names: Vec<String> = sh.entries().map(|e| e.name.clone()).collect();
                for name in names {
                    let Some(e) = sh.get_mut(&name) else { continue };
                    if !e.has_password() {
                        continue;
                    }
                    if num(&e.last_change).is_some_and(|l| l > today) {
                        p.note(
                            Level::Warning,
                            format!("the password of {name} was changed in the future (day {}); check the clock", e.last_change),
                        );
                    }
                    match age_account(e, s, today) {
                        Ok(ch) if !ch.is_empty() => {
                            shadow_summary.push(format!("password ageing of {name} ({})", ch.join(", ")))
                        }
                        Ok(_) => {}
                        Err(why) => p.note(
                            Level::Warning,
                            format!("{why}; left unchanged (change the password with `passwd {name}`, then re-run)"),
                        ),
                    }
                }
            }
        }
        if !passwd_summary.is_empty() {
            let perms = match cx.root.entry(&passwd_rel)? {
                Entry::File { perms, .. } => perms,
                _ => Perms::root(0o644),
            };
            p.file(
                &cx.root,
                &passwd_rel,
                passwd.render(),
                perms,
                format!(
                    "system accounts without a login shell: {}",
                    passwd_summary.join("; ")
                ),
            )?;
        }
        if let (Some(sh), false) = (&shadow, shadow_summary.is_empty()) {
            let perms = crate::modules::users::shadow_perms(cx, &shadow_rel)?;
            p.file_with(
                &cx.root,
                &shadow_rel,
                sh.render().into_bytes(),
                perms,
                format!("etc/shadow: {}", shadow_summary.join("; ")),
                Visibility::MaskHashes,
                None,
            )?;
        }

        // root's PATH directories.
        if let Some(path) = &s.root_path {
            for d in path.split(':') {
                let Ok(rel) = RelPath::new(d) else { continue };
                if let Entry::Dir { perms } = cx.root.entry(&rel)? {
                    let want = Perms {
                        mode: perms.mode & !0o022,
                        uid: 0,
                        gid: perms.gid,
                    };
                    p.perms(
                        &cx.root,
                        &rel,
                        want,
                        format!("{d} in root's PATH: root-owned, not group/world-writable"),
                    )?;
                }
            }
            for f in ["root/.profile", "root/.bashrc", "root/.bash_profile"] {
                let text = cx
                    .root
                    .read_string(&RelPath::new(f).unwrap_or(RelPath::lit("root/.profile")))?
                    .unwrap_or_default();
                for (i, l) in text.lines().enumerate() {
                    let t = l.trim_start();
                    if t.starts_with('#') {
                        continue;
                    }
                    if let Some(v) = t.split("PATH=").nth(1) {
                        let v = v.trim_matches(|c| c == '"' || c == '\'');
                        if v.split(':').any(|c| c.is_empty() || c == ".") {
                            p.note(
                                Level::Warning,
                                format!(
                                    "/{f}:{} puts an empty or `.` entry into root's PATH",
                                    i + 1
                                ),
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(line: &str) -> Shadow {
        let db: Db<Shadow> = Db::parse(line);
        db.entries().next().unwrap().clone()
    }

    #[test]
    fn ageing_tightens_only_and_never_expires_at_once() {
        let s = AccountsSection {
            pass_max_days: Some(365),
            pass_min_days: Some(1),
            pass_warn_age: Some(7),
            inactive: Some(30),
            ..Default::default()
        };
        let mut e = sh("alice:$y$j9T$abc:20000:0:99999:7:::\n");
        assert_eq!(
            age_account(&mut e, &s, 20100).unwrap(),
            vec!["max", "min", "inactive"]
        );
        assert_eq!(
            (
                e.min.as_str(),
                e.max.as_str(),
                e.warn.as_str(),
                e.inactive.as_str()
            ),
            ("1", "365", "7", "30")
        );
        let mut strict = sh("bob:$y$x:20000:3:90:14:10::\n");
        assert!(age_account(&mut strict, &s, 20010).unwrap().is_empty());
        let mut old = sh("carol:$y$x:19000:0:99999:7:::\n");
        assert!(age_account(&mut old, &s, 20100).is_err());
    }

    #[test]
    fn shell_fragment() {
        let f = render_shell(
            Some(Mode(0o027)),
            Some("15m".to_string().try_into().unwrap()),
        );
        assert!(f.contains("\numask 027\n"));
        assert!(f.contains("\n    TMOUT=900\n    readonly TMOUT\n    export TMOUT\nfi\nreadonly TMOUT\nexport TMOUT\n"));
        // OpenSCAP's accounts_tmout pattern (multi-line; `\s` spans newlines), exactly once.
        let cac =
            regex::Regex::new(r"(?m)^[\s]*TMOUT=([\w$]+)[\s]*readonly TMOUT[\s]*export TMOUT$")
                .unwrap();
        let caps: Vec<_> = cac.captures_iter(&f).collect();
        assert_eq!(caps.len(), 1, "{f}");
        assert_eq!(&caps[0][1], "900");
    }
}
