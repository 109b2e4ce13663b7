//! PAM (`[pam]`): password quality (`etc/security/pwquality.conf.d/bollwerk.conf`, and the
//! same values edited in place in `etc/security/pwquality.conf`, which libpwquality reads after
//! its drop-ins and the only file OpenSCAP's CIS content reads), lockout
//! after failed logins (settings in `etc/security/faillock.conf`, edited in place: it has no
//! drop-in directory), password history, `pam_unix` without `nullok`, and `su` restricted to an
//! empty group with `pam_wheel` (CIS 5.3.x, 5.2.7).
//!
//! The stack is changed the distro's way, never by editing `etc/pam.d/common-*`: bollwerk
//! writes its own profiles `usr/share/pam-configs/bollwerk-*` (`bollwerk-unix` is the distro's
//! `unix` profile without `nullok`, which then replaces `unix`) and activates them with
//! `pam-auth-update`. Before anything becomes active, [`PamStackCheck`] runs
//! `pam-auth-update` on copies of `etc/pam.d`, `var/lib/pam`, debconf's database and the
//! candidates in a private mount namespace (copies in the run's staging directory, which the
//! runner bind-mounts over the originals; the scripts are fixed texts that get every path and
//! name as a separate argument, so nothing from a profile is ever parsed by a shell),
//! checks that the new stack has the expected modules and, with `pamtester`, that a password
//! account still authenticates (and a wrong password does not) and a key-only account passes
//! the account stage, i.e. that key-based SSH keeps working. Only then does the real
//! `pam-auth-update` run, journaled with its watched paths so rollback restores them
//! byte-identically.
//!
//! `etc/pam.d/su` has no drop-in mechanism either: the `pam_wheel` line is inserted after
//! `pam_rootok` (root keeps `su`), every other line stays byte-identical.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Level, Plan, Planner, Staged, Validator, Visibility};
use crate::error::{Error, Result};
use crate::etcdb::{Db, GShadow, Group};
use crate::exec::{Cmd, ExecError};
use crate::modules::Module;
use crate::modules::users::MANAGED_HEADER;
use crate::profile::types::GroupName;
use crate::profile::{Layer, ProfileError};
use crate::root::{Entry, Perms, RelPath};

use super::util::{Syntax, Want, set_settings};

/// The pwquality drop-in bollwerk owns.
pub const PWQUALITY_DROPIN: &str = "etc/security/pwquality.conf.d/bollwerk.conf";
/// libpwquality's main file (a conffile of libpam-pwquality): read after the drop-ins, so it
/// gets the same values, edited in place.
pub const PWQUALITY_CONF: &str = "etc/security/pwquality.conf";
const FAILLOCK_CONF: &str = "etc/security/faillock.conf";
const PAM_CONFIGS: &str = "usr/share/pam-configs";
const SU: &str = "etc/pam.d/su";
const PAM_AUTH_UPDATE: &str = "/usr/sbin/pam-auth-update";
const PAMTESTER: &str = "/usr/bin/pamtester";
/// cracklib's dictionary (built by cracklib-runtime); pwquality's dictcheck needs it.
const CRACKLIB_DICT: &str = "var/cache/cracklib/cracklib_dict.pwd";
/// Paths `pam-auth-update` changes (journaled around the command).
pub const WATCH: &[&str] = &["etc/pam.d", "var/lib/pam", "var/cache/debconf"];

/// `[pam.pwquality]`: password quality (`pam_pwquality`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PwqualitySection {
    /// Minimum length (CIS 5.3.3.2.2: 14 or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minlen: Option<u32>,
    /// Minimum number of character classes (CIS 5.3.3.2.3: 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minclass: Option<u32>,
    /// Characters that must differ from the old password (CIS 5.3.3.2.1: 2 or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difok: Option<u32>,
    /// Maximum identical consecutive characters (CIS 5.3.3.2.4: 3 or less, not 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxrepeat: Option<u32>,
    /// Maximum length of monotonic sequences like "1234" (CIS 5.3.3.2.5: 3 or less, not 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxsequence: Option<u32>,
    /// Digit credit: negative = at least that many digits (CIS 5.3.3.2.3 with the other
    /// credits or `minclass`; -1 is what OpenSCAP's CIS content asks for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dcredit: Option<i32>,
    /// Upper-case credit: negative = at least that many upper-case letters (see `dcredit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ucredit: Option<i32>,
    /// Lower-case credit: negative = at least that many lower-case letters (see `dcredit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lcredit: Option<i32>,
    /// Other-character credit: negative = at least that many other characters (see
    /// `dcredit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocredit: Option<i32>,
    /// Reject dictionary words (CIS 5.3.3.2.6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dictcheck: Option<bool>,
    /// Reject (not just warn about) weak passwords (CIS 5.3.3.2.7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcing: Option<bool>,
    /// Apply the rules to root too (CIS 5.3.3.2.8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce_for_root: Option<bool>,
    /// Prompts before `passwd` gives up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u32>,
}

/// `[pam.faillock]`: lock an account after failed logins (`pam_faillock`). Key-based SSH
/// logins do not go through PAM's auth stack and are never locked.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaillockSection {
    /// Failures that lock the account (CIS 5.3.3.1.1: 5 or less).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny: Option<u32>,
    /// Seconds until a locked account unlocks (CIS 5.3.3.1.2: 900 or more, or 0 = never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlock_time: Option<u32>,
    /// Seconds in which `deny` failures must happen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_interval: Option<u32>,
    /// Lock root too (CIS 5.3.3.1.3, level 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub even_deny_root: Option<bool>,
    /// Seconds until a locked root unlocks (with `even_deny_root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_unlock_time: Option<u32>,
}

/// `[pam.history]`: password history (`pam_pwhistory`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistorySection {
    /// Old passwords that may not be reused (CIS 5.3.3.3.1: 24 or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remember: Option<u32>,
    /// Apply to root too (CIS 5.3.3.3.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce_for_root: Option<bool>,
}

/// `[pam]`: the PAM stack.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PamSection {
    /// Only members of this group may use `su` (`pam_wheel`; CIS 5.2.7 wants it empty, so
    /// `su` is left to root, and admins use sudo). The group is created when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub su_group: Option<GroupName>,
    /// false: `pam_unix` without `nullok`, so an empty password never logs in (CIS
    /// 5.3.3.4.1); true: the distro's `unix` profile again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nullok: Option<bool>,
    /// Password quality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pwquality: Option<PwqualitySection>,
    /// Lockout after failed logins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faillock: Option<FaillockSection>,
    /// Password history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistorySection>,
}

/// Range checks of `[pam]`.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(s: &PamSection, layers: &[Layer]) -> std::result::Result<(), ProfileError> {
    if let Some(f) = &s.faillock
        && f.deny == Some(0)
    {
        return Err(crate::profile::error_at(
            layers,
            &["pam", "faillock", "deny"],
            "faillock.deny = 0 would lock every account at its first failed login",
        )
        .with_hint("CIS asks for 1-5; leave [pam.faillock] out to not manage it"));
    }
    if let Some(q) = &s.pwquality {
        if q.minlen.is_some_and(|n| n > 256) {
            return Err(crate::profile::error_at(
                layers,
                &["pam", "pwquality", "minlen"],
                "minlen above 256 cannot be met",
            )
            .with_hint("CIS asks for 14"));
        }
        if q.minclass.is_some_and(|n| n > 4) {
            return Err(crate::profile::error_at(
                layers,
                &["pam", "pwquality", "minclass"],
                "there are only 4 character classes",
            )
            .with_hint("use 1-4"));
        }
    }
    Ok(())
}

/// Renders the pwquality drop-in.
pub fn render_pwquality(q: &PwqualitySection) -> String {
    let mut s = format!("{MANAGED_HEADER}\n");
    let mut kv = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            s.push_str(&format!("{k} = {v}\n"));
        }
    };
    kv("minlen", q.minlen.map(|v| v.to_string()));
    kv("minclass", q.minclass.map(|v| v.to_string()));
    kv("difok", q.difok.map(|v| v.to_string()));
    kv("maxrepeat", q.maxrepeat.map(|v| v.to_string()));
    kv("maxsequence", q.maxsequence.map(|v| v.to_string()));
    kv("dcredit", q.dcredit.map(|v| v.to_string()));
    kv("ucredit", q.ucredit.map(|v| v.to_string()));
    kv("lcredit", q.lcredit.map(|v| v.to_string()));
    kv("ocredit", q.ocredit.map(|v| v.to_string()));
    kv("dictcheck", q.dictcheck.map(|v| u8::from(v).to_string()));
    kv("enforcing", q.enforcing.map(|v| u8::from(v).to_string()));
    kv("retry", q.retry.map(|v| v.to_string()));
    if q.enforce_for_root == Some(true) {
        s.push_str("enforce_for_root\n");
    }
    s
}

/// The `etc/security/pwquality.conf` settings of a section (the drop-in's values, edited in
/// place: every other line of the distro's file stays byte-identical).
pub fn pwquality_settings(q: &PwqualitySection) -> Vec<(&'static str, Want)> {
    let mut out = Vec::new();
    let mut kv = |k: &'static str, v: Option<String>| {
        if let Some(v) = v {
            out.push((k, Want::Value(v)));
        }
    };
    kv("minlen", q.minlen.map(|v| v.to_string()));
    kv("minclass", q.minclass.map(|v| v.to_string()));
    kv("difok", q.difok.map(|v| v.to_string()));
    kv("maxrepeat", q.maxrepeat.map(|v| v.to_string()));
    kv("maxsequence", q.maxsequence.map(|v| v.to_string()));
    kv("dcredit", q.dcredit.map(|v| v.to_string()));
    kv("ucredit", q.ucredit.map(|v| v.to_string()));
    kv("lcredit", q.lcredit.map(|v| v.to_string()));
    kv("ocredit", q.ocredit.map(|v| v.to_string()));
    kv("dictcheck", q.dictcheck.map(|v| u8::from(v).to_string()));
    kv("enforcing", q.enforcing.map(|v| u8::from(v).to_string()));
    kv("retry", q.retry.map(|v| v.to_string()));
    match q.enforce_for_root {
        Some(true) => out.push(("enforce_for_root", Want::Flag)),
        Some(false) => out.push(("enforce_for_root", Want::Absent)),
        None => {}
    }
    out
}

/// The faillock.conf settings of a section.
fn faillock_settings(f: &FaillockSection) -> Vec<(&'static str, Want)> {
    let mut out = Vec::new();
    let mut num = |k: &'static str, v: Option<u32>| {
        if let Some(v) = v {
            out.push((k, Want::Value(v.to_string())));
        }
    };
    num("deny", f.deny);
    num("unlock_time", f.unlock_time);
    num("fail_interval", f.fail_interval);
    num("root_unlock_time", f.root_unlock_time);
    match f.even_deny_root {
        Some(true) => out.push(("even_deny_root", Want::Flag)),
        Some(false) => out.push(("even_deny_root", Want::Absent)),
        None => {}
    }
    out
}

const FAILLOCK_PROFILE: &str = "Name: bollwerk: lock accounts after failed logins (pam_faillock authfail)\nDefault: no\nPriority: 0\nAuth-Type: Primary\nAuth:\n\t[default=die]\tpam_faillock.so authfail\n";
const FAILLOCK_NOTIFY_PROFILE: &str = "Name: bollwerk: lock accounts after failed logins (pam_faillock preauth, reset on success)\nDefault: no\nPriority: 1024\nAuth-Type: Primary\nAuth:\n\trequisite\tpam_faillock.so preauth\nAccount-Type: Primary\nAccount:\n\trequired\tpam_faillock.so\n";

fn pwhistory_profile(h: &HistorySection) -> String {
    let mut args = Vec::new();
    if let Some(r) = h.remember {
        args.push(format!("remember={r}"));
    }
    if h.enforce_for_root == Some(true) {
        args.push("enforce_for_root".into());
    }
    args.push("try_first_pass".into());
    args.push("use_authtok".into());
    format!(
        "Name: bollwerk: password history (pam_pwhistory)\nDefault: no\nPriority: 1024\nPassword-Type: Primary\nPassword:\n\trequisite\tpam_pwhistory.so {}\n",
        args.join(" ")
    )
}

/// The distro's `unix` profile without `nullok` (a profile line's arguments after the module).
pub fn unix_without_nullok(unix: &str) -> String {
    unix.lines()
        .map(|l| {
            if let Some(rest) = l.strip_prefix("Name:") {
                format!(
                    "Name:{} (bollwerk: empty passwords refused)",
                    rest.trim_end()
                )
            } else if l.contains("pam_unix.so") {
                l.split(' ')
                    .filter(|w| *w != "nullok")
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Profiles `pam-auth-update` has activated (`var/lib/pam/*`, `Module:` lines).
fn active_profiles(cx: &Context) -> Result<Option<Vec<String>>> {
    let dir = RelPath::lit("var/lib/pam");
    if !cx.root.exists(&dir) {
        return Ok(None);
    }
    let mut out = Vec::new();
    for t in [
        "auth",
        "account",
        "password",
        "session",
        "session-noninteractive",
    ] {
        let text = cx
            .root
            .read_string(&dir.join(t).map_err(Error::Runtime)?)?
            .unwrap_or_default();
        for l in text.lines() {
            if let Some(m) = l.strip_prefix("Module: ") {
                let m = m.trim().to_string();
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
    }
    Ok(Some(out))
}

/// Module lines the stack must contain after `pam-auth-update` (file, words that must appear
/// on one active line), and words that must not.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    /// (common-* file, words of one line).
    pub present: Vec<(String, Vec<String>)>,
    /// (common-* file, module, argument that must not appear with it).
    pub absent: Vec<(String, String, String)>,
}

fn stack_has(text: &str, words: &[String]) -> bool {
    text.lines().any(|l| {
        let t = l.trim_start();
        !t.starts_with('#') && words.iter().all(|w| t.split_whitespace().any(|x| x == w))
    })
}

fn stack_has_arg(text: &str, module: &str, arg: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim_start();
        !t.starts_with('#')
            && t.split_whitespace().any(|x| x == module)
            && t.split_whitespace().any(|x| x == arg)
    })
}

/// Dry-runs `pam-auth-update` in a sandbox and tests the resulting stack with `pamtester`.
#[derive(Debug)]
pub struct PamStackCheck {
    /// `--enable` profiles.
    pub enable: Vec<String>,
    /// `--disable` profiles.
    pub disable: Vec<String>,
    /// Lines the result must (not) have.
    pub expect: Expectations,
    /// pamtester is installed or installed by this plan: without it, validation fails (and is
    /// deferred past the package step) instead of falling back to the static check.
    pub require_pamtester: bool,
    /// Files a package installed earlier in this plan provides (cracklib's dictionary): while
    /// they are missing, validation is deferred past the package step.
    pub wait_for: Vec<String>,
}

fn random_hex(n: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_ok();
    if !ok {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        buf =
            crate::root::sha256_hex(format!("{t}-{}", std::process::id()).as_bytes()).into_bytes();
        buf.truncate(n);
    }
    hex::encode(buf)
}

/// Copies the configuration into the sandbox directory (`$1`) and stages the candidates: the
/// remaining arguments are (target, candidate) pairs. A fixed text: every input arrives as a
/// separate argument and is only ever expanded inside double quotes, never re-parsed.
pub const COPY_SCRIPT: &str = r#"# bollwerk-pam-copy
set -u
fail() { code=$1; shift; printf 'bollwerk-pam-sandbox: %s\n' "$*" >&2; exit "$code"; }
S=$1; shift
mkdir -p -- "$S/etc" "$S/varlibpam" "$S/configs" "$S/debconf" || fail 2 "cannot create the sandbox"
cp -a /etc/. "$S/etc/" && cp -a /usr/share/pam-configs/. "$S/configs/" \
  || fail 2 "cannot copy the configuration into the sandbox"
if [ -d /var/lib/pam ]; then cp -a /var/lib/pam/. "$S/varlibpam/" || fail 2 "cannot copy var/lib/pam"; fi
if [ -d /var/cache/debconf ]; then cp -a /var/cache/debconf/. "$S/debconf/" || fail 2 "cannot copy debconf"; fi
while [ "$#" -ge 2 ]; do
  t=$1; c=$2; shift 2
  case $t in
    usr/share/pam-configs/*) d="$S/configs/${t#usr/share/pam-configs/}" ;;
    *) d="$S/$t" ;;
  esac
  mkdir -p -- "$(dirname -- "$d")" && cp --remove-destination -- "$c" "$d" || fail 2 "cannot stage $t"
done
"#;

/// Runs `pam-auth-update` on the sandbox's private configuration and tests the result with
/// `pamtester`. The configuration is either a copy-on-write layer over the real directories
/// (the runner's overlays; the script stages the candidates in it) or the copies of
/// [`COPY_SCRIPT`] bind-mounted over the originals. Arguments: the script's work directory,
/// password, salt, new password, today (days since the epoch), the number N of candidates to
/// stage, N (target, candidate) pairs, then `pam-auth-update`'s own arguments.
/// Exit codes 10-11 for the stack, 20-24 for pamtester; prints every `common-*` file between
/// `==> NAME` markers and `bollwerk-pam-sandbox: ok` at the end. Like [`COPY_SCRIPT`], a fixed
/// text whose inputs are arguments only. `pam_unix` and `pam_faillock` (which asks for its own
/// fail delay) get `nodelay` in the sandbox copy after the stack was printed: the
/// wrong-password test then costs no 2 s delay.
pub const TEST_SCRIPT: &str = r#"# bollwerk-pam-sandbox
set -u
fail() { code=$1; shift; printf 'bollwerk-pam-sandbox: %s\n' "$*" >&2; exit "$code"; }
S=$1; PW=$2; SALT=$3; NEW=$4; TODAY=$5; N=$6; shift 6
mkdir -p -- "$S" || fail 2 "cannot create the work directory"
while [ "$N" -gt 0 ]; do
  t=$1; c=$2; shift 2; N=$((N - 1))
  case "/$t/" in */../*|*/./*) fail 2 "refusing to stage $t" ;; esac
  case $t in etc/*|usr/share/pam-configs/*) ;; *) fail 2 "refusing to stage $t" ;; esac
  # --remove-destination: a symlink at the target is replaced, never written through.
  mkdir -p -- "$(dirname -- "/$t")" && cp --remove-destination -- "$c" "/$t" || fail 2 "cannot stage $t"
done
DEBIAN_FRONTEND=noninteractive /usr/sbin/pam-auth-update "$@" >"$S/pau.out" 2>&1 \
  || { cat "$S/pau.out" >&2; fail 10 "pam-auth-update failed"; }
if grep -q 'Local modifications' "$S/pau.out"; then
  cat "$S/pau.out" >&2
  fail 11 "etc/pam.d/common-* were edited by hand: pam-auth-update does not overwrite them"
fi
for f in /etc/pam.d/common-*; do
  [ -f "$f" ] || continue
  printf '==> %s\n' "${f##*/}"; cat "$f"
done
echo '==> end'
if [ -x /usr/bin/pamtester ]; then
  sed -i '/^[[:space:]]*auth[[:space:]].*pam_\(unix\|faillock\)\.so/s/$/ nodelay/' /etc/pam.d/common-auth \
    || fail 2 "cannot add nodelay to the sandbox copy of common-auth"
  hash=$(perl -e 'print crypt($ARGV[0], "\$6\$" . $ARGV[1] . "\$")' "$PW" "$SALT") || fail 2 "perl crypt failed"
  echo "bollwerk-pamtest:x:64999:64999::/nonexistent:/bin/sh" >> /etc/passwd
  echo "bollwerk-pamkey:x:64998:64999::/nonexistent:/bin/sh" >> /etc/passwd
  echo "bollwerk-pamtest:x:64999:" >> /etc/group
  printf 'bollwerk-pamtest:%s:%s:0:99999:7:::\n' "$hash" "$TODAY" >> /etc/shadow
  printf 'bollwerk-pamkey:!:%s:0:99999:7:::\n' "$TODAY" >> /etc/shadow
  printf '%s\n' "$PW" | /usr/bin/pamtester sshd bollwerk-pamtest authenticate acct_mgmt >"$S/t1" 2>&1 \
    || { cat "$S/t1" >&2; fail 20 "the new stack rejects a correct password (service sshd)"; }
  printf '%s\n' "$PW" | /usr/bin/pamtester sudo bollwerk-pamtest authenticate >"$S/t2" 2>&1 \
    || { cat "$S/t2" >&2; fail 23 "the new stack rejects a correct password (service sudo)"; }
  /usr/bin/pamtester sshd bollwerk-pamkey acct_mgmt >"$S/t3" 2>&1 \
    || { cat "$S/t3" >&2; fail 22 "the new account stack rejects a key-only account: key-based SSH logins would fail"; }
  if printf 'wrong-%s\n' "$PW" | /usr/bin/pamtester sshd bollwerk-pamtest authenticate >"$S/t4" 2>&1; then
    fail 21 "the new stack accepts a wrong password"
  fi
  printf '%s\n%s\n' "$NEW" "$NEW" | /usr/bin/pamtester passwd bollwerk-pamtest chauthtok >"$S/t5" 2>&1 \
    || { cat "$S/t5" >&2; fail 24 "the new password stack refuses a strong new password: nobody could change an expiring password"; }
  echo "bollwerk-pam-sandbox: ok (pamtester)"
else
  echo "bollwerk-pam-sandbox: ok (static)"
fi
"#;

impl PamStackCheck {
    /// The two sandbox commands: copy and stage (`candidates` are (target path, staged
    /// candidate) pairs below `etc/` and `usr/share/pam-configs/`), then `pam-auth-update`
    /// and `pamtester` with the copies bind-mounted over `/etc`, `/usr/share/pam-configs`,
    /// `/var/lib/pam` and `/var/cache/debconf` (`has` says which of the last two exist) and a
    /// private `/run` (faillock records). Both run fixed scripts; paths, profile names and
    /// passwords are separate arguments.
    pub fn commands(
        &self,
        sandbox: &str,
        candidates: &[(String, String)],
        password: &str,
        has: impl Fn(&str) -> bool,
    ) -> (Cmd, Cmd) {
        let timeout = std::time::Duration::from_secs(180);
        let mut copy = Cmd::in_root(
            "/bin/sh",
            &["-c", COPY_SCRIPT, "bollwerk-pam-copy", sandbox],
        )
        .timeout(timeout);
        for (target, cand) in candidates {
            copy = copy.arg(target.as_str()).arg(cand.as_str());
        }
        let today = crate::facts::days_since_epoch().to_string();
        let mut test = Cmd::in_root(
            "/bin/sh",
            &[
                "-c",
                TEST_SCRIPT,
                "bollwerk-pam-sandbox",
                sandbox,
                password,
                &random_hex(8),
                &strong_password(),
                &today,
                "0",
            ],
        )
        .timeout(timeout)
        .bind(&format!("{sandbox}/etc"), "/etc")
        .bind(&format!("{sandbox}/configs"), "/usr/share/pam-configs")
        .tmpfs("/run");
        if has("var/lib/pam") {
            test = test.bind(&format!("{sandbox}/varlibpam"), "/var/lib/pam");
        }
        if has("var/cache/debconf") {
            test = test.bind(&format!("{sandbox}/debconf"), "/var/cache/debconf");
        }
        (copy, self.pam_auth_update_args(test))
    }

    /// The sandbox as one command (the fast way, no copy): copy-on-write layers over `/etc`,
    /// `/usr/share/pam-configs`, `/var/lib/pam` and `/var/cache/debconf` (`has` says which of
    /// the last two exist), in which the script stages the `candidates` and then runs
    /// [`TEST_SCRIPT`]. Every write stays in the command's namespace. Where the kernel refuses
    /// the overlay, [`PamStackCheck::commands`] does the same with copies.
    pub fn overlay_command(
        &self,
        candidates: &[(String, String)],
        password: &str,
        has: impl Fn(&str) -> bool,
    ) -> Cmd {
        let today = crate::facts::days_since_epoch().to_string();
        let n = candidates.len().to_string();
        let mut test = Cmd::in_root(
            "/bin/sh",
            &[
                "-c",
                TEST_SCRIPT,
                "bollwerk-pam-sandbox",
                "/run/bollwerk-pam-sandbox",
                password,
                &random_hex(8),
                &strong_password(),
                &today,
                &n,
            ],
        )
        .timeout(std::time::Duration::from_secs(180))
        .overlay("/etc")
        .overlay("/usr/share/pam-configs");
        for (rel, dir) in [
            ("var/lib/pam", "/var/lib/pam"),
            ("var/cache/debconf", "/var/cache/debconf"),
        ] {
            if has(rel) {
                test = test.overlay(dir);
            }
        }
        for (target, cand) in candidates {
            test = test.arg(target.as_str()).arg(cand.as_str());
        }
        self.pam_auth_update_args(test)
    }

    /// Appends `--enable …` and `--disable …`.
    fn pam_auth_update_args(&self, mut test: Cmd) -> Cmd {
        if !self.enable.is_empty() {
            test = test.arg("--enable");
            for p in &self.enable {
                test = test.arg(p.as_str());
            }
        }
        if !self.disable.is_empty() {
            test = test.arg("--disable");
            for p in &self.disable {
                test = test.arg(p.as_str());
            }
        }
        test
    }

    /// Runs the sandbox: the overlay command, or copies where the kernel refuses overlays.
    fn run_sandbox(
        &self,
        cx: &Context,
        staged: &Staged,
        candidates: &[(String, String)],
        password: &str,
    ) -> Result<crate::exec::Output> {
        let has = |p: &str| RelPath::new(p).is_ok_and(|r| cx.root.exists(&r));
        match cx
            .runner
            .run(&cx.root, &self.overlay_command(candidates, password, has))
        {
            Err(ExecError::Spawn { source, .. }) => {
                tracing::info!(error = %source, "no overlay for the PAM sandbox; copying the configuration instead");
            }
            other => return Ok(other?),
        }
        let sandbox_host = staged.dir_host.join("pam-sandbox");
        std::fs::create_dir_all(&sandbox_host)
            .map_err(|e| Error::io("creating", &sandbox_host, e))?;
        let sandbox = format!("{}/pam-sandbox", staged.dir_in_root);
        let (copy, test) = self.commands(&sandbox, candidates, password, has);
        let copied = cx.runner.run(&cx.root, &copy)?;
        if copied.success() {
            Ok(cx.runner.run(&cx.root, &test)?)
        } else {
            Ok(copied)
        }
    }
}

/// A random password any sane policy accepts: 24 characters cycling through four classes (no
/// repeats, no sequences, no dictionary words).
fn strong_password() -> String {
    const CLASSES: [&[u8]; 4] = [b"ACEGJLNQSUWY", b"bdfhkmprtvxz", b"2468", b"#%+="];
    let bytes = hex::decode(random_hex(24)).unwrap_or_default();
    bytes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let class = CLASSES[i % 4];
            class[usize::from(*b) % class.len()] as char
        })
        .collect()
}

impl Validator for PamStackCheck {
    fn slow(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        "pam-auth-update + pamtester in a sandbox".into()
    }

    fn validate(&self, cx: &Context, staged: &Staged) -> Result<()> {
        let path = "etc/pam.d/common-*".to_string();
        if self.require_pamtester && !cx.runner.available(&cx.root, &Cmd::in_root(PAMTESTER, &[])) {
            // Installed by an earlier step of the plan: validate after it.
            return Err(Error::Exec(ExecError::NotFound {
                program: PAMTESTER.into(),
                place: "the target root".into(),
            }));
        }
        for f in &self.wait_for {
            if !cx.root.exists(&RelPath::new(f).map_err(Error::Runtime)?) {
                return Err(Error::Exec(ExecError::NotFound {
                    program: format!("/{f}"),
                    place: "the target root".into(),
                }));
            }
        }
        // Every candidate below etc/ (pam.d/su, security/*, passwd, shadow, group) and the
        // PAM profiles: the sandbox sees the system as it will be after the plan.
        let candidates: Vec<(String, String)> = staged
            .files
            .iter()
            .filter(|(t, _)| {
                t.as_str().starts_with("etc/") || t.as_str().starts_with("usr/share/pam-configs/")
            })
            .map(|(t, c)| (t.as_str().to_string(), c.clone()))
            .collect();
        let password = format!("Bw-{}-Aa1!", random_hex(12));
        let out = self.run_sandbox(cx, staged, &candidates, &password)?;
        let fail = |msg: String| Error::Validation {
            path: path.clone(),
            validator: self.describe(),
            output: msg,
        };
        if !out.success() {
            return Err(fail(out.combined().replace(&password, "[password]")));
        }
        if !out.stdout.contains("bollwerk-pam-sandbox: ok") {
            return Err(fail(format!(
                "the sandbox did not finish: {}",
                out.combined()
            )));
        }
        // The resulting files, as printed by the script.
        let mut files: Vec<(String, String)> = Vec::new();
        for block in out.stdout.split("==> ").skip(1) {
            let (name, body) = block.split_once('\n').unwrap_or((block, ""));
            files.push((name.trim().to_string(), body.to_string()));
        }
        let file = |n: &str| {
            files
                .iter()
                .find(|(f, _)| f == n)
                .map(|(_, b)| b.as_str())
                .unwrap_or("")
        };
        for (f, words) in &self.expect.present {
            if !stack_has(file(f), words) {
                return Err(fail(format!(
                    "after pam-auth-update, etc/pam.d/{f} lacks `{}`:\n{}",
                    words.join(" "),
                    file(f)
                )));
            }
        }
        for (f, module, arg) in &self.expect.absent {
            if stack_has_arg(file(f), module, arg) {
                return Err(fail(format!(
                    "after pam-auth-update, etc/pam.d/{f} still has {module} {arg}"
                )));
            }
        }
        if out.stdout.contains("ok (static)") {
            tracing::warn!(
                "pamtester is not installed in the target: the new PAM stack was checked statically only"
            );
        }
        Ok(())
    }
}

/// True when the plan installs `package` (a planned command names it, e.g. `apt-get install`).
fn installs(plan: &Plan, package: &str) -> bool {
    crate::modules::packages::installs(plan, package)
}

/// Inserts or rewrites the `pam_wheel` line of `etc/pam.d/su`.
pub fn su_with_wheel(text: &str, group: &str) -> String {
    let want = format!("auth       required   pam_wheel.so use_uid group={group}");
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    let active = |l: &str| {
        let t = l.trim_start();
        !t.starts_with('#') && t.split_whitespace().any(|w| w == "pam_wheel.so")
    };
    if let Some(i) = lines.iter().position(|l| active(l)) {
        let nl = if lines[i].ends_with('\n') { "\n" } else { "" };
        lines[i] = format!("{want}{nl}");
        // A second active pam_wheel line would keep its own rules: drop it.
        let mut j = i + 1;
        while j < lines.len() {
            if active(&lines[j]) {
                lines.remove(j);
            } else {
                j += 1;
            }
        }
        return lines.concat();
    }
    let rootok = lines.iter().position(|l| {
        let t = l.trim_start();
        !t.starts_with('#') && t.contains("pam_rootok.so")
    });
    let at = match rootok {
        Some(i) => i + 1,
        None => lines
            .iter()
            .position(|l| {
                l.trim_start().starts_with("auth") || l.trim_start().starts_with("@include")
            })
            .unwrap_or(lines.len()),
    };
    if at > 0 && !lines[at - 1].ends_with('\n') {
        lines[at - 1].push('\n');
    }
    lines.insert(at, format!("{want}\n"));
    lines.concat()
}

/// The PAM module.
pub struct Pam;

impl Module for Pam {
    fn name(&self) -> &'static str {
        "pam"
    }

    fn required_packages(&self, cx: &Context) -> Vec<String> {
        let Some(s) = &cx.profile.profile.pam else {
            return Vec::new();
        };
        let mut out = vec!["libpam-runtime".to_string(), "libpam-modules".to_string()];
        if let Some(q) = &s.pwquality {
            out.push("libpam-pwquality".into());
            if q.dictcheck != Some(false) {
                out.push("cracklib-runtime".into());
            }
        }
        if s.faillock.is_some() || s.history.is_some() || s.nullok.is_some() {
            // The validator's auth test.
            out.push("pamtester".into());
        }
        out
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(s) = &cx.profile.profile.pam else {
            return Ok(());
        };
        let group_text = cx.after(plan, &RelPath::lit("etc/group"))?;
        let gshadow_text = cx.after(plan, &RelPath::lit("etc/gshadow"))?;
        let mut p = Planner::new(self.name(), plan);
        let configs = RelPath::lit(PAM_CONFIGS);
        let has_pau = cx.root.exists(
            &RelPath::new(PAM_AUTH_UPDATE.trim_start_matches('/')).map_err(Error::Runtime)?,
        );
        let requested =
            |p: &Planner, n: &str| p.plan().requested_packages.iter().any(|(_, x)| x == n);

        let mut enable: Vec<String> = Vec::new();
        let mut disable: Vec<String> = Vec::new();
        let mut expect = Expectations::default();
        let mut configs_changed = false;
        let mut wait_for: Vec<String> = Vec::new();

        // Password quality.
        if let Some(q) = &s.pwquality {
            let installed = cx.facts.package("libpam-pwquality").is_some()
                || cx
                    .root
                    .exists(&configs.join("pwquality").map_err(Error::Runtime)?);
            if !installed && !requested(&p, "libpam-pwquality") {
                p.note(
                    Level::Warning,
                    "libpam-pwquality is not installed: [pam.pwquality] has no effect until it is",
                );
            }
            // Without cracklib's dictionary, dictcheck refuses every new password ("error
            // loading dictionary"): users whose password expires could never log in again.
            let dictionary = cx.root.exists(&RelPath::lit(CRACKLIB_DICT))
                || installs(p.plan(), "cracklib-runtime");
            if q.dictcheck != Some(false)
                && !cx.root.exists(&RelPath::lit(CRACKLIB_DICT))
                && dictionary
            {
                wait_for.push(CRACKLIB_DICT.to_string());
            }
            let mut q = q.clone();
            if q.dictcheck != Some(false) && !dictionary {
                p.note(
                    Level::Warning,
                    "the cracklib dictionary (cracklib-runtime) is missing: pwquality would refuse every new password, so dictcheck = 0 is written until it is installed",
                );
                q.dictcheck = Some(false);
            }
            p.file(
                &cx.root,
                &RelPath::lit(PWQUALITY_DROPIN),
                render_pwquality(&q),
                Perms::root(0o644),
                "password quality rules (pwquality)",
            )?;
            let main = RelPath::lit(PWQUALITY_CONF);
            match cx.root.entry(&main)? {
                Entry::File { perms, .. } => {
                    let text = cx.root.read_string(&main)?.unwrap_or_default();
                    p.file(
                        &cx.root,
                        &main,
                        set_settings(&text, Syntax::SpacedEq, &pwquality_settings(&q)),
                        perms,
                        "password quality rules in pwquality.conf too (read after the drop-ins)",
                    )?;
                }
                _ => p.note(
                    Level::Info,
                    "etc/security/pwquality.conf does not exist (yet): its values are set once libpam-pwquality created it; the drop-in applies now",
                ),
            }
            if cx
                .root
                .exists(&configs.join("pwquality").map_err(Error::Runtime)?)
            {
                enable.push("pwquality".into());
                expect
                    .present
                    .push(("common-password".into(), vec!["pam_pwquality.so".into()]));
            }
        }

        // Lockout.
        if let Some(f) = &s.faillock {
            let rel = RelPath::lit(FAILLOCK_CONF);
            let (text, perms) = match cx.root.entry(&rel)? {
                Entry::File { perms, .. } => {
                    (cx.root.read_string(&rel)?.unwrap_or_default(), perms)
                }
                _ => (format!("{MANAGED_HEADER}\n"), Perms::root(0o644)),
            };
            let new = set_settings(&text, Syntax::SpacedEq, &faillock_settings(f));
            p.file(
                &cx.root,
                &rel,
                new,
                perms,
                "lockout after failed logins (faillock.conf)",
            )?;
            for (name, content) in [
                ("bollwerk-faillock", FAILLOCK_PROFILE.to_string()),
                (
                    "bollwerk-faillock-notify",
                    FAILLOCK_NOTIFY_PROFILE.to_string(),
                ),
            ] {
                configs_changed |= p.file(
                    &cx.root,
                    &configs.join(name).map_err(Error::Runtime)?,
                    content,
                    Perms::root(0o644),
                    format!("PAM profile {name}"),
                )?;
                enable.push(name.into());
            }
            expect.present.push((
                "common-auth".into(),
                vec!["pam_faillock.so".into(), "preauth".into()],
            ));
            expect.present.push((
                "common-auth".into(),
                vec!["pam_faillock.so".into(), "authfail".into()],
            ));
            expect
                .present
                .push(("common-account".into(), vec!["pam_faillock.so".into()]));
        }

        // Password history.
        if let Some(h) = &s.history {
            configs_changed |= p.file(
                &cx.root,
                &configs.join("bollwerk-pwhistory").map_err(Error::Runtime)?,
                pwhistory_profile(h),
                Perms::root(0o644),
                "PAM profile bollwerk-pwhistory",
            )?;
            enable.push("bollwerk-pwhistory".into());
            let mut words = vec!["pam_pwhistory.so".to_string(), "use_authtok".to_string()];
            if let Some(r) = h.remember {
                words.push(format!("remember={r}"));
            }
            expect.present.push(("common-password".into(), words));
            let opasswd = RelPath::lit("etc/security/opasswd");
            if let Entry::File { perms, .. } = cx.root.entry(&opasswd)? {
                p.perms(
                    &cx.root,
                    &opasswd,
                    Perms {
                        mode: perms.mode & 0o600,
                        uid: 0,
                        gid: 0,
                    },
                    "restrict the password history file",
                )?;
            }
        }

        // pam_unix without nullok.
        let bw_unix = configs.join("bollwerk-unix").map_err(Error::Runtime)?;
        match s.nullok {
            Some(false) => match cx
                .root
                .read_string(&configs.join("unix").map_err(Error::Runtime)?)?
            {
                Some(unix) => {
                    configs_changed |= p.file(
                        &cx.root,
                        &bw_unix,
                        unix_without_nullok(&unix),
                        Perms::root(0o644),
                        "PAM profile bollwerk-unix (pam_unix without nullok)",
                    )?;
                    enable.push("bollwerk-unix".into());
                    disable.push("unix".into());
                    expect
                        .present
                        .push(("common-auth".into(), vec!["pam_unix.so".into()]));
                    expect.absent.push((
                        "common-auth".into(),
                        "pam_unix.so".into(),
                        "nullok".into(),
                    ));
                    expect.absent.push((
                        "common-password".into(),
                        "pam_unix.so".into(),
                        "nullok".into(),
                    ));
                }
                None => p.note(
                    Level::Warning,
                    "usr/share/pam-configs/unix does not exist: pam.nullok is not applied",
                ),
            },
            Some(true) if cx.root.exists(&bw_unix) => {
                enable.push("unix".into());
                disable.push("bollwerk-unix".into());
            }
            _ => {}
        }

        // su restricted to an (empty) group.
        if let Some(g) = &s.su_group {
            plan_su_group(cx, &mut p, g.as_str(), group_text, gshadow_text)?;
            let su = RelPath::lit(SU);
            match cx.root.read_string(&su)? {
                Some(text) => {
                    let perms = match cx.root.entry(&su)? {
                        Entry::File { perms, .. } => perms,
                        _ => Perms::root(0o644),
                    };
                    p.file(
                        &cx.root,
                        &su,
                        su_with_wheel(&text, g.as_str()),
                        perms,
                        format!("su only for members of {g} (pam_wheel)"),
                    )?;
                }
                None => p.note(
                    Level::Warning,
                    "etc/pam.d/su does not exist: su is not restricted",
                ),
            }
        }

        // Activate with pam-auth-update when the stack does not have it yet.
        if enable.is_empty() && disable.is_empty() {
            return Ok(());
        }
        if !has_pau {
            p.note(Level::Warning, "pam-auth-update is not installed in the target (libpam-runtime): the PAM profiles are written but not activated");
            return Ok(());
        }
        let active = active_profiles(cx)?;
        let mut reasons: Vec<String> = Vec::new();
        if configs_changed {
            reasons.push("profiles changed".into());
        }
        match &active {
            None => reasons.push("var/lib/pam does not exist yet".into()),
            Some(a) => {
                for e in &enable {
                    if !a.contains(e) {
                        reasons.push(format!("{e} not active"));
                    }
                }
                for d in &disable {
                    if a.contains(d) {
                        reasons.push(format!("{d} still active"));
                    }
                }
            }
        }
        for (f, words) in &expect.present {
            let text = cx
                .root
                .read_string(&RelPath::new(&format!("etc/pam.d/{f}")).map_err(Error::Runtime)?)?
                .unwrap_or_default();
            if !stack_has(&text, words) {
                reasons.push(format!("{f} lacks {}", words.join(" ")));
            }
        }
        for (f, module, arg) in &expect.absent {
            let text = cx
                .root
                .read_string(&RelPath::new(&format!("etc/pam.d/{f}")).map_err(Error::Runtime)?)?
                .unwrap_or_default();
            if stack_has_arg(&text, module, arg) {
                reasons.push(format!("{f} has {module} {arg}"));
            }
        }
        reasons.dedup();
        if reasons.is_empty() {
            return Ok(());
        }
        if reasons.len() > 3 {
            let more = reasons.len() - 3;
            reasons.truncate(3);
            reasons.push(format!("{more} more"));
        }
        let pamtester_there = cx.runner.available(&cx.root, &Cmd::in_root(PAMTESTER, &[]));
        let require_pamtester = pamtester_there || requested(&p, "pamtester");
        if !require_pamtester {
            p.note(Level::Warning, "pamtester is not installed: the new PAM stack is checked statically only (no test login)");
        }
        let mut cmd = Cmd::in_root(PAM_AUTH_UPDATE, &[]).env("DEBIAN_FRONTEND", "noninteractive");
        if !enable.is_empty() {
            cmd = cmd.arg("--enable");
            for e in &enable {
                cmd = cmd.arg(e.clone());
            }
        }
        if !disable.is_empty() {
            cmd = cmd.arg("--disable");
            for d in &disable {
                cmd = cmd.arg(d.clone());
            }
        }
        let validator: Arc<dyn Validator> = Arc::new(PamStackCheck {
            enable: enable.clone(),
            disable: disable.clone(),
            expect,
            require_pamtester,
            wait_for,
        });
        p.run_validated(
            cmd,
            WATCH
                .iter()
                .map(|w| RelPath::new(w))
                .collect::<std::result::Result<_, _>>()
                .map_err(Error::Runtime)?,
            format!(
                "activate the PAM profiles with pam-auth-update ({})",
                reasons.join("; ")
            ),
            Some(validator),
        );
        Ok(())
    }
}

/// Creates the su group (empty) in `etc/group` and `etc/gshadow`, from the planned content.
fn plan_su_group(
    cx: &Context,
    p: &mut Planner,
    name: &str,
    group_text: Option<Vec<u8>>,
    gshadow_text: Option<Vec<u8>>,
) -> Result<()> {
    let mut group: Db<Group> = Db::parse(&String::from_utf8_lossy(&group_text.unwrap_or_default()));
    if let Some(g) = group.get(name) {
        if !g.members.is_empty() {
            p.note(
                Level::Warning,
                format!(
                    "group {name} has members ({}): they may use su; CIS 5.2.7 wants it empty",
                    g.members.join(", ")
                ),
            );
        }
        return Ok(());
    }
    let defs = cx
        .root
        .read_string(&RelPath::lit("etc/login.defs"))?
        .unwrap_or_default();
    let get = |k: &str, d: u32| {
        super::util::get_setting(&defs, k)
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (lo, hi) = (get("SYS_GID_MIN", 100), get("SYS_GID_MAX", 999));
    let gid = (lo..=hi)
        .rev()
        .find(|id| group.entries().all(|e| e.gid != *id))
        .ok_or_else(|| Error::Runtime(format!("no free system gid for group {name}")))?;
    group.push(Group {
        name: name.to_string(),
        password: "x".into(),
        gid,
        members: Vec::new(),
    });
    let rel = RelPath::lit("etc/group");
    let perms = match cx.root.entry(&rel)? {
        Entry::File { perms, .. } => perms,
        _ => Perms::root(0o644),
    };
    p.file(
        &cx.root,
        &rel,
        group.render(),
        perms,
        format!("create the empty group {name} (gid {gid}) for su"),
    )?;
    if let Some(gs) = gshadow_text {
        let mut gshadow: Db<GShadow> = Db::parse(&String::from_utf8_lossy(&gs));
        if gshadow.get(name).is_none() {
            gshadow.push(GShadow {
                name: name.to_string(),
                password: "!".into(),
                admins: Vec::new(),
                members: Vec::new(),
            });
            let rel = RelPath::lit("etc/gshadow");
            let perms = crate::modules::users::shadow_perms(cx, &rel)?;
            p.file_with(
                &cx.root,
                &rel,
                gshadow.render().into_bytes(),
                perms,
                format!("create the empty group {name} for su"),
                Visibility::MaskHashes,
                None,
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn su_gets_pam_wheel_after_rootok() {
        let su = "#\n# The PAM configuration file for the Shadow `su' service\n#\n\n# This allows root to su without passwords (normal operation)\nauth       sufficient pam_rootok.so\n\n# Uncomment this to force users to be a member of group wheel\n# before they can use `su'.\n# auth       required   pam_wheel.so\n\n@include common-auth\n";
        let out = su_with_wheel(su, "sugroup");
        assert_eq!(
            out,
            su.replace(
                "auth       sufficient pam_rootok.so\n",
                "auth       sufficient pam_rootok.so\nauth       required   pam_wheel.so use_uid group=sugroup\n"
            )
        );
        assert_eq!(su_with_wheel(&out, "sugroup"), out, "idempotent");
        let other = su_with_wheel(&out, "admins");
        assert!(
            other.contains("pam_wheel.so use_uid group=admins\n") && !other.contains("sugroup")
        );
    }

    #[test]
    fn unix_profile_loses_nullok_only() {
        let unix = "Name: Unix authentication\nDefault: yes\nPriority: 256\nAuth-Type: Primary\nAuth:\n\t[success=end default=ignore]\tpam_unix.so nullok try_first_pass\nAuth-Initial:\n\t[success=end default=ignore]\tpam_unix.so nullok\nPassword:\n\t[success=end default=ignore]\tpam_unix.so obscure use_authtok try_first_pass yescrypt\n";
        let out = unix_without_nullok(unix);
        assert!(!out.contains("nullok"));
        assert!(out.starts_with("Name: Unix authentication (bollwerk: empty passwords refused)\n"));
        assert!(out.contains("\t[success=end default=ignore]\tpam_unix.so try_first_pass\n"));
        assert!(out.contains("\t[success=end default=ignore]\tpam_unix.so\n"));
        assert!(out.contains("obscure use_authtok try_first_pass yescrypt\n"));
    }

    #[test]
    fn sandbox_inputs_are_arguments_never_script_text() {
        let check = PamStackCheck {
            enable: vec!["bollwerk-faillock$(id)".into()],
            disable: vec!["unix`id`".into()],
            expect: Expectations::default(),
            require_pamtester: true,
            wait_for: Vec::new(),
        };
        let hostile = "etc/motd$(touch /tmp/x);`id`";
        let cands = vec![(hostile.to_string(), "/var/x/cand 1".to_string())];
        let (copy, test) = check.commands("/var/sb $(id)", &cands, "pw'$(id)", |_| true);
        // The scripts are the constants, byte for byte; every input is its own argument.
        assert_eq!(copy.program, "/bin/sh");
        assert_eq!(copy.args[..2], ["-c".to_string(), COPY_SCRIPT.to_string()]);
        assert_eq!(test.args[..2], ["-c".to_string(), TEST_SCRIPT.to_string()]);
        assert_eq!(
            copy.args[2..],
            [
                "bollwerk-pam-copy",
                "/var/sb $(id)",
                hostile,
                "/var/x/cand 1"
            ]
        );
        assert_eq!(test.args[3], "/var/sb $(id)");
        assert_eq!(test.args[4], "pw'$(id)");
        assert_eq!(
            test.args[8], "0",
            "the copies are staged by the copy script"
        );
        assert!(test.args.ends_with(&[
            "--enable".to_string(),
            "bollwerk-faillock$(id)".to_string(),
            "--disable".to_string(),
            "unix`id`".to_string()
        ]));
        // The sandbox copies are mounted by the runner, not by the script.
        assert!(
            test.binds
                .contains(&("/var/sb $(id)/etc".to_string(), "/etc".to_string()))
        );
        assert_eq!(test.tmpfs, vec!["/run".to_string()]);
        for script in [COPY_SCRIPT, TEST_SCRIPT] {
            assert!(
                !script.contains("mount")
                    && !script.contains("unshare")
                    && !script.contains("eval")
            );
        }
        // pamtester's wrong-password test runs without pam_unix's or pam_faillock's 2 s delay.
        assert!(TEST_SCRIPT.contains(r"pam_\(unix\|faillock\)\.so/s/$/ nodelay/"));
    }

    #[test]
    fn overlay_sandbox_is_one_command_with_private_layers_and_arguments_as_data() {
        let check = PamStackCheck {
            enable: vec!["bollwerk-faillock$(id)".into()],
            disable: Vec::new(),
            expect: Expectations::default(),
            require_pamtester: true,
            wait_for: Vec::new(),
        };
        let hostile = "etc/motd$(touch /tmp/x);`id`";
        let cands = vec![(hostile.to_string(), "/var/x/cand 1".to_string())];
        let cmd = check.overlay_command(&cands, "pw'$(id)", |p| p == "var/lib/pam");
        assert_eq!(cmd.args[..2], ["-c".to_string(), TEST_SCRIPT.to_string()]);
        assert_eq!(cmd.args[3], "/run/bollwerk-pam-sandbox");
        assert_eq!(cmd.args[4], "pw'$(id)");
        // N = 1 candidate pair, then pam-auth-update's arguments.
        assert_eq!(
            cmd.args[8..],
            [
                "1",
                hostile,
                "/var/x/cand 1",
                "--enable",
                "bollwerk-faillock$(id)"
            ]
        );
        assert_eq!(
            cmd.overlays,
            ["/etc", "/usr/share/pam-configs", "/var/lib/pam"]
        );
        assert!(cmd.binds.is_empty());
        assert_eq!(cmd.tmpfs, vec!["/run".to_string()]);
        // The script stages only below the overlaid directories.
        assert!(TEST_SCRIPT.contains("etc/*|usr/share/pam-configs/*) ;;"));
    }

    #[test]
    fn pwquality_dropin() {
        let q = PwqualitySection {
            minlen: Some(14),
            minclass: Some(4),
            dictcheck: Some(true),
            enforce_for_root: Some(true),
            ..Default::default()
        };
        assert_eq!(
            render_pwquality(&q),
            format!(
                "{MANAGED_HEADER}\nminlen = 14\nminclass = 4\ndictcheck = 1\nenforce_for_root\n"
            )
        );
    }
}
