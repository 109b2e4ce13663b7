//! Audit daemon (`[auditd]`, CIS 6.2, level 2): `auditd` and `audispd-plugins` installed
//! (CIS 6.2.1.1), the CIS 6.2.3 rules in `etc/audit/rules.d/50-bollwerk-cis.rules` (privileged
//! commands found by walking the target root for setuid/setgid files) with `-e 2` alone in
//! `etc/audit/rules.d/99-bollwerk-finalize.rules`, log retention in `etc/audit/auditd.conf`
//! (CIS 6.2.2, edited in place: every other line stays byte-identical), and `audit=1
//! audit_backlog_limit=8192` on the kernel command line through
//! `etc/default/grub.d/bollwerk-audit.cfg` where GRUB exists (CIS 6.2.1.3–6.2.1.4).
//!
//! Validation: no tool can check audit rules without loading them into the running kernel
//! (`auditctl -R` loads; `augenrules --check` only compares files), so every rule line is
//! checked here, in Rust ([`check_rules`]): the option letters, `-a` action/list pairs, `-S`
//! syscall names against the x86_64 table the rules use, `-F` field names and operators, `-p`
//! permissions, `-k` key length, and that no other file of `etc/audit/rules.d` sets a later `-e`
//! (augenrules keeps the last one and moves it to the end). The rules are
//! loaded with `augenrules --load` by a handler (live systems only); with `-e 2` active, changed
//! rules take effect at the next boot. Not applicable in containers: the kernel's audit
//! subsystem belongs to the host.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Level, Plan, Planner, Staged, Validator, Visibility};
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::modules::Module;
use crate::modules::users::MANAGED_HEADER;
use crate::root::{Perms, RelPath};

use super::apparmor::ShellSyntax;
use super::util::{
    Syntax, Want, find_unit, is_enabled, not_applicable_in_container, plan_enable, set_settings,
};

/// The CIS rules file bollwerk owns.
pub const RULES: &str = "etc/audit/rules.d/50-bollwerk-cis.rules";
/// The file that makes the configuration immutable (`-e 2`), read last by augenrules.
pub const FINALIZE: &str = "etc/audit/rules.d/99-bollwerk-finalize.rules";
/// auditd's configuration (edited in place).
pub const AUDITD_CONF: &str = "etc/audit/auditd.conf";
/// The GRUB drop-in bollwerk owns.
pub const GRUB_DROPIN: &str = "etc/default/grub.d/bollwerk-audit.cfg";

/// `[auditd]`: the Linux audit daemon and the CIS audit rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditdSection {
    /// true: install auditd, write the CIS 6.2.3 rules, retention settings and the kernel
    /// command line options; false: remove bollwerk's rules files and GRUB drop-in (auditd
    /// stays installed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// `max_log_file` in auditd.conf: megabytes per log file before rotation (CIS 6.2.2.1: by
    /// site policy; default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_log_file: Option<u32>,
    /// `max_log_file_action`: "keep_logs" (CIS 6.2.2.2: never delete audit logs; default),
    /// "rotate", "ignore", "syslog", "suspend".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_log_file_action: Option<String>,
    /// `space_left_action` (CIS 6.2.2.4: "email", "exec", "single" or "halt"; default "email"
    /// to `action_mail_acct = root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_left_action: Option<String>,
    /// `admin_space_left_action` (CIS 6.2.2.4: "single" or "halt"; default "single"). Either
    /// makes a remote host unreachable when the audit partition fills: that is the point of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_space_left_action: Option<String>,
    /// `disk_full_action` (CIS 6.2.2.3: "halt" or "single"; default "halt").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_full_action: Option<String>,
    /// `disk_error_action` (CIS 6.2.2.3: "syslog", "single" or "halt"; default "syslog").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_error_action: Option<String>,
    /// `audit_backlog_limit` on the kernel command line (CIS 6.2.1.4: ≥ 8192; default 8192).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog_limit: Option<u32>,
}

/// The auditd.conf actions auditd accepts for each setting.
const ACTIONS: &[(&str, &[&str])] = &[
    (
        "max_log_file_action",
        &["ignore", "syslog", "suspend", "rotate", "keep_logs"],
    ),
    (
        "space_left_action",
        &[
            "ignore", "syslog", "rotate", "email", "exec", "suspend", "single", "halt",
        ],
    ),
    (
        "admin_space_left_action",
        &[
            "ignore", "syslog", "rotate", "email", "exec", "suspend", "single", "halt",
        ],
    ),
    (
        "disk_full_action",
        &[
            "ignore", "syslog", "rotate", "exec", "suspend", "single", "halt",
        ],
    ),
    (
        "disk_error_action",
        &["ignore", "syslog", "exec", "suspend", "single", "halt"],
    ),
];

/// The auditd.conf settings of a section (CIS defaults where the section leaves one out).
///
/// # Errors
/// An action auditd does not know.
pub fn conf_settings(s: &AuditdSection) -> Result<Vec<(&'static str, String)>> {
    let pick = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_string());
    let mut out = vec![(
        "max_log_file",
        s.max_log_file.unwrap_or(8).max(1).to_string(),
    )];
    let values = [
        pick(&s.max_log_file_action, "keep_logs"),
        pick(&s.space_left_action, "email"),
        pick(&s.admin_space_left_action, "single"),
        pick(&s.disk_full_action, "halt"),
        pick(&s.disk_error_action, "syslog"),
    ];
    for ((key, allowed), v) in ACTIONS.iter().zip(values) {
        if !allowed.contains(&v.as_str()) {
            return Err(Error::Runtime(format!(
                "auditd.{key} = {v:?}: auditd accepts {}",
                allowed.join(", ")
            )));
        }
        out.push((key, v));
    }
    out.push(("action_mail_acct", "root".into()));
    Ok(out)
}

/// Syscall rules for both ABIs: (syscalls, extra fields, key).
const SYSCALL_RULES: &[(&str, &str, &str)] = &[
    // 6.2.3.2 actions as another user
    ("execve", "-C euid!=uid -F auid!=unset", "user_emulation"),
    // 6.2.3.4 time
    ("adjtimex,settimeofday,clock_settime", "", "time-change"),
    // 6.2.3.5 network environment
    ("sethostname,setdomainname", "", "system-locale"),
    // 6.2.3.7 unsuccessful file access
    (
        "creat,open,openat,truncate,ftruncate",
        "-F exit=-EACCES -F auid>=1000 -F auid!=unset",
        "access",
    ),
    (
        "creat,open,openat,truncate,ftruncate",
        "-F exit=-EPERM -F auid>=1000 -F auid!=unset",
        "access",
    ),
    // 6.2.3.9 DAC permission changes
    (
        "chmod,fchmod,fchmodat",
        "-F auid>=1000 -F auid!=unset",
        "perm_mod",
    ),
    (
        "chown,fchown,lchown,fchownat",
        "-F auid>=1000 -F auid!=unset",
        "perm_mod",
    ),
    (
        "setxattr,lsetxattr,fsetxattr,removexattr,lremovexattr,fremovexattr",
        "-F auid>=1000 -F auid!=unset",
        "perm_mod",
    ),
    // 6.2.3.10 mounts
    ("mount", "-F auid>=1000 -F auid!=unset", "mounts"),
    // 6.2.3.13 deletions
    (
        "rename,unlink,unlinkat,renameat",
        "-F auid>=1000 -F auid!=unset",
        "delete",
    ),
];

/// Watches: (path, key), CIS order.
const WATCHES: &[(&str, &str)] = &[
    // 6.2.3.1 sudoers
    ("/etc/sudoers", "scope"),
    ("/etc/sudoers.d", "scope"),
    // 6.2.3.4 time
    ("/etc/localtime", "time-change"),
    // 6.2.3.5 network environment
    ("/etc/issue", "system-locale"),
    ("/etc/issue.net", "system-locale"),
    ("/etc/hosts", "system-locale"),
    ("/etc/networks", "system-locale"),
    ("/etc/network", "system-locale"),
    ("/etc/netplan", "system-locale"),
    // 6.2.3.8 identity
    ("/etc/group", "identity"),
    ("/etc/passwd", "identity"),
    ("/etc/gshadow", "identity"),
    ("/etc/shadow", "identity"),
    ("/etc/security/opasswd", "identity"),
    ("/etc/nsswitch.conf", "identity"),
    ("/etc/pam.conf", "identity"),
    ("/etc/pam.d", "identity"),
    // 6.2.3.11 session
    ("/var/run/utmp", "session"),
    ("/var/log/wtmp", "session"),
    ("/var/log/btmp", "session"),
    // 6.2.3.12 logins
    ("/var/log/lastlog", "logins"),
    ("/var/run/faillock", "logins"),
    // 6.2.3.14 MAC policy
    ("/etc/apparmor", "MAC-policy"),
    ("/etc/apparmor.d", "MAC-policy"),
];

/// Commands CIS audits by name (6.2.3.15–6.2.3.19): (path, key).
const COMMANDS: &[(&str, &str)] = &[
    ("/usr/bin/chcon", "perm_chng"),
    ("/usr/bin/setfacl", "perm_chng"),
    ("/usr/bin/chacl", "perm_chng"),
    ("/usr/sbin/usermod", "usermod"),
    ("/usr/bin/kmod", "kernel_modules"),
];

/// Renders the CIS rules file. `sudo_log` is the sudo log file (6.2.3.3), `privileged` the
/// setuid/setgid programs of the target (6.2.3.6).
pub fn render_rules(sudo_log: Option<&str>, privileged: &[String]) -> String {
    let mut o = format!(
        "{MANAGED_HEADER}\n# CIS Ubuntu 22.04 v2.0.0 section 6.2.3 ([auditd] of the profile). Loaded by augenrules;\n# `-e 2` is in 99-bollwerk-finalize.rules.\n"
    );
    for (path, key) in WATCHES {
        o.push_str(&format!("-w {path} -p wa -k {key}\n"));
    }
    if let Some(log) = sudo_log {
        o.push_str(&format!("-w {log} -p wa -k sudo_log_file\n"));
    }
    for (calls, extra, key) in SYSCALL_RULES {
        for arch in ["b64", "b32"] {
            let extra = if extra.is_empty() {
                String::new()
            } else {
                format!(" {extra}")
            };
            o.push_str(&format!(
                "-a always,exit -F arch={arch} -S {calls}{extra} -k {key}\n"
            ));
        }
    }
    o.push_str("-a always,exit -F arch=b64 -S init_module,finit_module,delete_module,create_module,query_module -F auid>=1000 -F auid!=unset -k kernel_modules\n");
    for (path, key) in COMMANDS {
        o.push_str(&format!(
            "-a always,exit -F path={path} -F perm=x -F auid>=1000 -F auid!=unset -k {key}\n"
        ));
    }
    for path in privileged {
        o.push_str(&format!(
            "-a always,exit -F path={path} -F perm=x -F auid>=1000 -F auid!=unset -k privileged\n"
        ));
    }
    o
}

/// The finalize file: `-e 2`, the configuration is immutable until reboot (CIS 6.2.3.20).
pub fn render_finalize() -> String {
    format!(
        "{MANAGED_HEADER}\n# Audit configuration immutable until reboot (CIS 6.2.3.20). Read last by augenrules.\n-e 2\n"
    )
}

/// The GRUB drop-in.
pub fn render_grub(backlog: u32) -> String {
    format!(
        "{MANAGED_HEADER}\n# Audit from early boot ([auditd] of the profile, CIS 6.2.1.3-6.2.1.4).\nGRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX audit=1 audit_backlog_limit={backlog}\"\n"
    )
}

/// Directories searched for setuid/setgid programs (not entered: symlinks, other mounts are
/// not distinguished, `usr/share`, `usr/include`, `usr/src`).
const PRIV_DIRS: &[&str] = &["usr", "opt", "bin", "sbin"];
const PRIV_SKIP: &[&str] = &["usr/share", "usr/include", "usr/src"];

/// Setuid/setgid regular files below the standard program directories of the target, as
/// absolute paths, sorted (lstat only: no file is opened, no symlink followed).
///
/// # Errors
/// An unreadable directory.
pub fn privileged_programs(cx: &Context) -> Result<Vec<String>> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack: Vec<String> = PRIV_DIRS.iter().map(|s| (*s).to_string()).collect();
    while let Some(dir) = stack.pop() {
        let host = cx.root.path().join(&dir);
        let Ok(meta) = std::fs::symlink_metadata(&host) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let rd = std::fs::read_dir(&host).map_err(|e| Error::io("reading", &host, e))?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = format!("{dir}/{name}");
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                if !PRIV_SKIP.contains(&rel.as_str()) {
                    stack.push(rel);
                }
            } else if m.is_file() && m.permissions().mode() & 0o6000 != 0 {
                out.push(format!("/{rel}"));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// x86_64 syscall names the rules may use (auditctl resolves them by the `arch=` table).
const SYSCALLS: &[&str] = &[
    "execve",
    "adjtimex",
    "settimeofday",
    "clock_settime",
    "sethostname",
    "setdomainname",
    "creat",
    "open",
    "openat",
    "truncate",
    "ftruncate",
    "chmod",
    "fchmod",
    "fchmodat",
    "chown",
    "fchown",
    "lchown",
    "fchownat",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "mount",
    "umount2",
    "rename",
    "unlink",
    "unlinkat",
    "renameat",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "query_module",
    "stime",
];
/// `-F` fields the rules may use.
const FIELDS: &[&str] = &[
    "arch", "auid", "uid", "euid", "gid", "egid", "exit", "success", "path", "dir", "perm", "key",
    "pid", "ppid",
];
/// Comparison operators of `-F` (longest first).
const OPS: &[&str] = &["!=", ">=", "<=", "&=", "=", ">", "<", "&"];

/// Checks one `-F` argument.
fn check_field(f: &str) -> std::result::Result<(), String> {
    let start = f
        .find(|c: char| "!<>=&".contains(c))
        .ok_or_else(|| format!("-F {f}: no operator"))?;
    let (name, rest) = f.split_at(start);
    if !FIELDS.contains(&name) {
        return Err(format!("-F {f}: unknown field {name:?}"));
    }
    let op = OPS
        .iter()
        .find(|o| rest.starts_with(**o))
        .ok_or_else(|| format!("-F {f}: bad operator"))?;
    let value = &rest[op.len()..];
    if value.is_empty() {
        return Err(format!("-F {f}: empty value"));
    }
    match name {
        "arch" if !["b64", "b32"].contains(&value) => Err(format!("-F {f}: arch is b64 or b32")),
        "perm" if !value.chars().all(|c| "rwxa".contains(c)) => {
            Err(format!("-F {f}: perm is made of r, w, x, a"))
        }
        "path" | "dir" if !value.starts_with('/') => Err(format!("-F {f}: not an absolute path")),
        "exit" if !(value.starts_with("-E") || value.parse::<i64>().is_ok()) => {
            Err(format!("-F {f}: exit is a number or -ERRNO"))
        }
        _ => Ok(()),
    }
}

/// Checks one rule line (comments and blank lines pass).
fn check_line(line: &str, last: bool) -> std::result::Result<(), String> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return Ok(());
    }
    let words: Vec<&str> = t.split_whitespace().collect();
    let arg = |i: usize| {
        words
            .get(i + 1)
            .copied()
            .ok_or_else(|| format!("{} needs an argument", words[i]))
    };
    match words[0] {
        "-e" => {
            let v = arg(0)?;
            if !["0", "1", "2"].contains(&v) || words.len() != 2 {
                return Err("-e takes 0, 1 or 2".into());
            }
            if v == "2" && !last {
                return Err("-e 2 must be the last rule (later rules cannot be loaded)".into());
            }
            return Ok(());
        }
        "-D" | "--backlog_wait_time" | "-b" | "-f" | "-r" | "--reset-lost" => return Ok(()),
        "-w" | "-a" => {}
        w => return Err(format!("unknown option {w}")),
    }
    let mut i = 0;
    let (mut syscall, mut watch, mut key) = (false, false, false);
    while i < words.len() {
        let v = arg(i)?;
        match words[i] {
            "-w" => {
                watch = true;
                if !v.starts_with('/') {
                    return Err(format!("-w {v}: not an absolute path"));
                }
            }
            "-p" => {
                if v.is_empty() || !v.chars().all(|c| "rwxa".contains(c)) {
                    return Err(format!("-p {v}: permissions are made of r, w, x, a"));
                }
            }
            "-a" => {
                let mut parts = v.split(',');
                let (a, b) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let acts = ["always", "never"];
                let lists = ["exit", "task", "user", "exclude", "filesystem"];
                let ok = parts.next().is_none()
                    && ((acts.contains(&a) && lists.contains(&b))
                        || (lists.contains(&a) && acts.contains(&b)));
                if !ok {
                    return Err(format!("-a {v}: expected action,list (always,exit)"));
                }
            }
            "-S" => {
                syscall = true;
                for s in v.split(',') {
                    if !SYSCALLS.contains(&s) {
                        return Err(format!("-S {v}: unknown syscall {s:?}"));
                    }
                }
            }
            "-F" => check_field(v)?,
            "-C" => {
                let ok = ["euid!=uid", "euid=uid", "auid!=uid", "auid=uid"].contains(&v);
                if !ok {
                    return Err(format!("-C {v}: unsupported comparison"));
                }
            }
            "-k" => {
                key = true;
                if v.len() > 31 || v.contains(char::is_whitespace) {
                    return Err(format!("-k {v}: keys are at most 31 characters"));
                }
            }
            w => return Err(format!("unknown option {w}")),
        }
        i += 2;
    }
    if watch && syscall {
        return Err("-w and -S cannot be mixed".into());
    }
    if words[0] == "-a" && syscall && !t.contains("-F arch=") {
        return Err("a syscall rule needs -F arch= (b64 or b32)".into());
    }
    if !key {
        return Err("every CIS rule carries a key (-k)".into());
    }
    Ok(())
}

/// Checks the rules files in augenrules' order (`files`: name → text, sorted by name): every
/// line's syntax, and `-e 2` only as the very last rule. Errors carry `file:line`.
///
/// # Errors
/// The first bad line.
pub fn check_rules(files: &[(String, String)]) -> std::result::Result<(), String> {
    let total = files.len();
    for (n, (name, text)) in files.iter().enumerate() {
        let lines: Vec<&str> = text.lines().collect();
        let last_rule = lines
            .iter()
            .rposition(|l| !l.trim().is_empty() && !l.trim().starts_with('#'));
        for (i, l) in lines.iter().enumerate() {
            let last = n + 1 == total && Some(i) == last_rule;
            check_line(l, last).map_err(|e| format!("{name}:{}: {e}", i + 1))?;
        }
    }
    Ok(())
}

/// [`check_rules`] on the staged rules files together with the other files of
/// `etc/audit/rules.d` (what augenrules would concatenate).
#[derive(Debug)]
pub struct RulesSyntax;

impl Validator for RulesSyntax {
    fn describe(&self) -> String {
        "audit rules syntax (bollwerk)".into()
    }

    fn validate(&self, cx: &Context, staged: &Staged) -> Result<()> {
        let dir = RelPath::lit("etc/audit/rules.d");
        let mut files: Vec<(String, String)> = Vec::new();
        for name in cx.root.list_dir(&dir)? {
            if !name.ends_with(".rules") {
                continue;
            }
            let rel = dir.join(&name).map_err(Error::Runtime)?;
            let text = match staged.files.get(&rel) {
                Some(c) => std::fs::read_to_string(staged.host_path(c))
                    .map_err(|e| Error::io("reading", staged.host_path(c), e))?,
                None => cx.root.read_string(&rel)?.unwrap_or_default(),
            };
            files.push((name, text));
        }
        for (rel, c) in &staged.files {
            let name = rel.file_name().to_string();
            if rel.parent().as_ref() == Some(&dir) && !files.iter().any(|(n, _)| *n == name) {
                let text = std::fs::read_to_string(staged.host_path(c))
                    .map_err(|e| Error::io("reading", staged.host_path(c), e))?;
                files.push((name, text));
            }
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        // Rules of other files are the operator's: only ours must be valid. augenrules moves
        // the last `-e` line of all files to the end, so no other file may set `-e` after ours.
        let ours: Vec<(String, String)> = files
            .iter()
            .filter(|(n, _)| n.starts_with("50-bollwerk") || n.starts_with("99-bollwerk"))
            .cloned()
            .collect();
        check_rules(&ours).map_err(|output| Error::Validation {
            path: RULES.into(),
            validator: self.describe(),
            output,
        })?;
        let last_e = files
            .iter()
            .flat_map(|(n, t)| t.lines().map(move |l| (n, l.trim())))
            .rfind(|(_, l)| l.starts_with("-e"));
        if let Some((name, line)) = last_e
            && line.split_whitespace().nth(1) != Some("2")
        {
            return Err(Error::Validation {
                path: FINALIZE.into(),
                validator: self.describe(),
                output: format!(
                    "etc/audit/rules.d/{name} sets `{line}` after bollwerk's `-e 2`: augenrules keeps the last -e, so the rules would stay changeable"
                ),
            });
        }
        Ok(())
    }
}

/// The auditd module.
pub struct Auditd;

impl Module for Auditd {
    fn name(&self) -> &'static str {
        "auditd"
    }

    fn required_packages(&self, cx: &Context) -> Vec<String> {
        match (&cx.profile.profile.auditd, &cx.facts.container) {
            (
                Some(AuditdSection {
                    enabled: Some(true),
                    ..
                }),
                None,
            ) => vec!["auditd".into(), "audispd-plugins".into()],
            _ => Vec::new(),
        }
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(s) = &cx.profile.profile.auditd else {
            return Ok(());
        };
        let Some(enabled) = s.enabled else {
            return Ok(());
        };
        let mut p = Planner::new(self.name(), plan);
        if not_applicable_in_container(
            cx,
            &mut p,
            "auditd",
            "the kernel's audit subsystem belongs to the host (a container cannot load rules or receive audit events)",
        ) {
            return Ok(());
        }
        if !enabled {
            for f in [RULES, FINALIZE, GRUB_DROPIN] {
                let rel = RelPath::lit(f);
                p.remove(&cx.root, &rel, format!("remove {rel}"))?;
            }
            return Ok(());
        }
        let settings = conf_settings(s)?;
        if std::env::consts::ARCH != "x86_64" {
            p.note(
                Level::Warning,
                "the audit rules use x86_64 syscall names (CIS Ubuntu's target); check them with `augenrules --load` on this architecture",
            );
        }
        let conf = RelPath::lit(AUDITD_CONF);
        let Some(text) = cx.root.read_string(&conf)? else {
            p.note(
                Level::Info,
                "auditd is configured once the auditd package is installed (a second run of this apply)",
            );
            return Ok(());
        };
        let mut changed = false;
        let wants: Vec<(&str, Want)> = settings
            .iter()
            .map(|(k, v)| (*k, Want::Value(v.clone())))
            .collect();
        let new = set_settings(&text, Syntax::SpacedEq, &wants);
        // 0640 root:root, as the package ships it (CIS 6.2.4.5-6.2.4.7), also where someone
        // opened it up.
        let perms = Perms::root(0o640);
        changed |= p.file_with(
            &cx.root,
            &conf,
            new.into_bytes(),
            perms,
            "audit log retention (auditd.conf)".into(),
            Visibility::Plain,
            None,
        )?;
        let sudo_log = cx
            .profile
            .profile
            .sudo
            .as_ref()
            .and_then(|s| s.logfile.clone());
        let privileged = privileged_programs(cx)?;
        let validator: Arc<dyn Validator> = Arc::new(RulesSyntax);
        p.dirs(
            &cx.root,
            &RelPath::lit("etc/audit/rules.d"),
            Perms::root(0o750),
        )?;
        changed |= p.file_with(
            &cx.root,
            &RelPath::lit(RULES),
            render_rules(sudo_log.as_ref().map(|l| l.as_str()), &privileged).into_bytes(),
            Perms::root(0o640),
            format!("CIS audit rules ({} privileged programs)", privileged.len()),
            Visibility::Plain,
            Some(validator.clone()),
        )?;
        changed |= p.file_with(
            &cx.root,
            &RelPath::lit(FINALIZE),
            render_finalize().into_bytes(),
            Perms::root(0o640),
            "audit configuration immutable (-e 2)".into(),
            Visibility::Plain,
            Some(validator),
        )?;
        if find_unit(cx, p.plan(), "auditd.service")?.is_some()
            && !is_enabled(cx, p.plan(), "auditd.service")?
        {
            changed |= plan_enable(cx, &mut p, "auditd.service")?;
        }
        let grub = cx.root.exists(&RelPath::lit("boot/grub/grub.cfg"))
            || cx.root.exists(&RelPath::lit("usr/sbin/update-grub"));
        if grub {
            let v: Arc<dyn Validator> = Arc::new(ShellSyntax(GRUB_DROPIN));
            if p.file_with(
                &cx.root,
                &RelPath::lit(GRUB_DROPIN),
                render_grub(s.backlog_limit.unwrap_or(8192).max(8192)).into_bytes(),
                Perms::root(0o644),
                "audit=1 and audit_backlog_limit on the kernel command line".into(),
                Visibility::Plain,
                Some(v),
            )? {
                p.handler(Cmd::in_root("/usr/sbin/update-grub", &[]));
                if !cx.live() {
                    p.note(
                        Level::Warning,
                        "run `update-grub` on the booted host: the kernel command line takes audit=1 only then",
                    );
                }
            }
        } else {
            p.note(
                Level::Info,
                "no GRUB in the target (boot/grub/grub.cfg, update-grub): audit=1 and audit_backlog_limit are not put on the kernel command line",
            );
        }
        if changed {
            p.handler(Cmd::in_root("/sbin/augenrules", &["--load"]));
            p.note(
                Level::Info,
                "with -e 2 loaded, changed audit rules take effect at the next boot",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_rules_pass_the_syntax_check() {
        let rules = render_rules(Some("/var/log/sudo.log"), &["/usr/bin/sudo".into()]);
        check_rules(&[
            ("50-bollwerk-cis.rules".into(), rules),
            ("99-bollwerk-finalize.rules".into(), render_finalize()),
        ])
        .unwrap();
    }

    #[test]
    fn syntax_check_rejects_bad_lines_with_file_and_line() {
        let bad = [
            (
                "-a always,exit -F arch=b64 -S nosuchcall -k x",
                "unknown syscall",
            ),
            ("-a always,exit -S mount -k x", "needs -F arch"),
            ("-a sometimes,exit -F arch=b64 -S mount -k x", "action,list"),
            ("-w etc/passwd -p wa -k x", "absolute"),
            ("-w /etc/passwd -p wz -k x", "permissions"),
            (
                "-a always,exit -F arch=b64 -F colour=red -S mount -k x",
                "unknown field",
            ),
            ("-w /etc/passwd -p wa", "key"),
            ("-x", "unknown option"),
        ];
        for (line, want) in bad {
            let e = check_rules(&[("a.rules".into(), format!("# c\n{line}\n"))]).unwrap_err();
            assert!(
                e.starts_with("a.rules:2: ") && e.contains(want),
                "{line}: {e}"
            );
        }
        let e = check_rules(&[
            ("50.rules".into(), "-e 2\n".into()),
            (
                "60.rules".into(),
                "-w /etc/passwd -p wa -k identity\n".into(),
            ),
        ])
        .unwrap_err();
        assert!(e.contains("last"), "{e}");
    }

    #[test]
    fn conf_settings_default_to_cis_and_reject_unknown_actions() {
        let s = conf_settings(&AuditdSection::default()).unwrap();
        assert!(s.contains(&("max_log_file_action", "keep_logs".into())));
        assert!(s.contains(&("disk_full_action", "halt".into())));
        let bad = AuditdSection {
            disk_full_action: Some("explode".into()),
            ..Default::default()
        };
        assert!(conf_settings(&bad).is_err());
    }
}
