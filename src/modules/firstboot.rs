//! `[firstboot]`: files and commands from instance user-data (cloud-config `write_files` and
//! `runcmd`, or the same keys in a TOML profile).
//!
//! `write_files` entries are ordinary planned files (in the plan with their diff, journaled,
//! rolled back like any other change); they are planned after users, so owners may be users the
//! profile creates. An `append` entry adds its content once (no change when the file already
//! ends with it), so a second apply stays at "0 changes". Paths owned by the sshd and sudo
//! modules are refused: writing them directly would bypass the lockout guard and `visudo`.
//!
//! Entries with `defer = false` (the default) are planned by [`EarlyFiles`], before packages and
//! users, as cloud-init's `write_files` runs before them; `defer = true` entries are planned
//! last by [`Firstboot`], after users and packages (their owners may be users the profile
//! creates).
//!
//! `runcmd` and `bootcmd` run only under `bollwerk firstboot --allow-runcmd` (once per
//! instance, see [`plan_runcmd`] and [`plan_instance_pre`]); `bollwerk apply` notes that it
//! skipped them. The other per-instance actions (`package_update`, `package_upgrade`,
//! `package_reboot_if_required`, `power_state`) are planned by first boot only
//! ([`plan_instance_post`]): once per instance, like cloud-init, never on a re-apply.

use base64::Engine;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Level, Plan, Planner, Visibility};
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::modules::Module;
use crate::modules::users::MANAGED_HEADER;
use crate::profile::types::{AbsPath, Mode};
use crate::profile::{Layer, ProfileError};
use crate::root::{Perms, RelPath};

/// How `content` of a `write_files` entry is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileEncoding {
    /// UTF-8 text as written.
    Text,
    /// Base64 (binary content).
    Base64,
}

/// A file to write (cloud-config `write_files`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteFileSpec {
    /// Absolute path in the target (identity for merging).
    pub path: AbsPath,
    /// Content (default empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// "text" (default) or "base64".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<FileEncoding>,
    /// Mode as an octal string (default "0644").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Owner as `user:group` (names from the target or numbers; default root:root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Append the content to the file instead of replacing it (once: no change when the file
    /// already ends with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<bool>,
    /// Write the file after users and packages (cloud-config `defer`). Default false: it is
    /// written before them, so its owner must already exist in the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defer: Option<bool>,
}

impl WriteFileSpec {
    fn deferred(&self) -> bool {
        self.defer == Some(true)
    }
}

/// What `power_state` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PowerMode {
    /// `shutdown -r`.
    Reboot,
    /// `shutdown -P`.
    Poweroff,
    /// `shutdown -H`.
    Halt,
}

impl PowerMode {
    fn flag(self) -> &'static str {
        match self {
            PowerMode::Reboot => "-r",
            PowerMode::Poweroff => "-P",
            PowerMode::Halt => "-H",
        }
    }
}

/// cloud-config `power_state`: reboot or power off once first boot is done.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PowerState {
    /// "reboot", "poweroff" or "halt".
    pub mode: PowerMode,
    /// Minutes to wait after the boot has finished (default 0: at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_minutes: Option<u32>,
    /// Message broadcast to logged-in users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A command of `runcmd`: a shell line or an argument vector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RunCmd {
    /// Run with `/bin/sh -c`.
    Shell(String),
    /// Run as is (the first word is looked up in `PATH`).
    Argv(Vec<String>),
}

/// `[firstboot]`: what first boot does besides applying the profile.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FirstbootSection {
    /// Files to write (cloud-config `write_files`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_files: Vec<WriteFileSpec>,
    /// Commands run once per instance, last, only by `bollwerk firstboot --allow-runcmd`
    /// (cloud-config `runcmd`); their output goes to `/var/log/bollwerk-runcmd.log`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runcmd: Vec<RunCmd>,
    /// Regenerate SSH host keys when the instance is new (default true; cloud-config
    /// `ssh_deletekeys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regenerate_host_keys: Option<bool>,
    /// Commands run once per instance before anything else, only by `bollwerk firstboot
    /// --allow-runcmd` (cloud-config `bootcmd`; cloud-init also runs them on later boots,
    /// bollwerk does not); output in `/var/log/bollwerk-runcmd.log`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bootcmd: Vec<RunCmd>,
    /// `apt-get update` once per instance (cloud-config `package_update`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_update: Option<bool>,
    /// `apt-get update` and `apt-get dist-upgrade` once per instance (cloud-config
    /// `package_upgrade`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_upgrade: Option<bool>,
    /// Reboot after first boot when a package asks for it (`/run/reboot-required`; cloud-config
    /// `package_reboot_if_required`). Live systems only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_reboot_if_required: Option<bool>,
    /// Reboot or power off once the boot has finished (cloud-config `power_state`). Live
    /// systems only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_state: Option<PowerState>,
}

/// Paths `write_files` may not write (owned by modules with safety checks).
const PROTECTED: &[(&str, &str)] = &[
    (
        "etc/ssh/sshd_config",
        "[ssh] (checked by the lockout guard and `sshd -t`)",
    ),
    ("etc/sudoers", "users' `sudo` (checked by `visudo`)"),
    ("etc/passwd", "[[users]]"),
    ("etc/shadow", "[[users]]"),
    ("etc/group", "[[users]] / [[groups]]"),
    ("etc/gshadow", "[[users]] / [[groups]]"),
];

fn protected(path: &str) -> Option<&'static str> {
    let rel = path.trim_start_matches('/');
    PROTECTED
        .iter()
        .find(|(p, _)| {
            rel == *p || rel.starts_with(&format!("{p}.d/")) || rel.starts_with(&format!("{p}/"))
        })
        .map(|(_, why)| *why)
}

/// Checks of `[firstboot]` that types cannot express.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(s: &FirstbootSection, layers: &[Layer]) -> Result<(), ProfileError> {
    for f in &s.write_files {
        let p = f.path.as_str();
        if let Some(owner) = protected(p) {
            return Err(crate::profile::error_at(
                layers,
                &["firstboot", "write_files", p],
                format!("write_files may not write {p}: it is managed by {owner}"),
            )
            .with_hint("express the setting with the profile keys instead"));
        }
        if let Some(o) = &f.owner {
            let (u, g) = o.split_once(':').unwrap_or((o, o));
            if u.is_empty() || g.is_empty() || o.matches(':').count() > 1 {
                return Err(crate::profile::error_at(
                    layers,
                    &["firstboot", "write_files", p, "owner"],
                    format!("owner {o:?} is not `user:group`"),
                )
                .with_hint("write e.g. \"root:adm\" or \"1000:1000\""));
            }
        }
        if f.encoding == Some(FileEncoding::Base64)
            && base64::engine::general_purpose::STANDARD
                .decode(f.content.as_deref().unwrap_or("").trim())
                .is_err()
        {
            return Err(crate::profile::error_at(
                layers,
                &["firstboot", "write_files", p, "content"],
                format!("content of {p} is not valid base64"),
            ));
        }
    }
    for (key, list) in [("runcmd", &s.runcmd), ("bootcmd", &s.bootcmd)] {
        for c in list {
            if let RunCmd::Argv(a) = c
                && a.is_empty()
            {
                return Err(crate::profile::error_at(
                    layers,
                    &["firstboot", key],
                    format!("an empty command in {key}"),
                ));
            }
        }
    }
    if let Some(m) = s.power_state.as_ref().and_then(|p| p.message.as_ref())
        && (m.contains(['\n', '\0']) || m.len() > 200)
    {
        return Err(crate::profile::error_at(
            layers,
            &["firstboot", "power_state", "message"],
            "power_state.message must be one line of at most 200 characters",
        ));
    }
    Ok(())
}

/// The firstboot module's late part: `write_files` entries with `defer = true`.
pub struct Firstboot;

/// The firstboot module's early part: `write_files` entries without `defer`, planned before
/// packages and users.
pub struct EarlyFiles;

impl Module for EarlyFiles {
    fn name(&self) -> &'static str {
        "firstboot"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        plan_write_files(cx, plan, false)
    }
}

/// A number, or the id `lookup` finds for a name.
fn resolve_id(name: &str, lookup: impl Fn(&str) -> Option<u32>) -> Option<u32> {
    name.parse().ok().or_else(|| lookup(name))
}

impl Module for Firstboot {
    fn name(&self) -> &'static str {
        "firstboot"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        plan_write_files(cx, plan, true)?;
        let Some(s) = cx.profile.profile.firstboot.as_ref() else {
            return Ok(());
        };
        for (key, list) in [("runcmd", &s.runcmd), ("bootcmd", &s.bootcmd)] {
            if !list.is_empty() {
                Planner::new(self.name(), plan).note(
                    Level::Info,
                    format!(
                        "firstboot.{key} ({} command{}) runs only under `bollwerk firstboot --allow-runcmd`, once per instance",
                        list.len(),
                        if list.len() == 1 { "" } else { "s" }
                    ),
                );
            }
        }
        Ok(())
    }
}

/// Plans the `write_files` entries whose `defer` equals `deferred`.
fn plan_write_files(cx: &Context, plan: &mut Plan, deferred: bool) -> Result<()> {
    let Some(s) = cx.profile.profile.firstboot.as_ref() else {
        return Ok(());
    };
    if !s.write_files.iter().any(|f| f.deferred() == deferred) {
        return Ok(());
    }
    // Accounts as the users module will leave them (new users may own deferred files).
    let passwd = cx
        .after(plan, &RelPath::lit("etc/passwd"))?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let group = cx
        .after(plan, &RelPath::lit("etc/group"))?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let passwd: crate::etcdb::Db<crate::etcdb::Passwd> = crate::etcdb::Db::parse(&passwd);
    let group: crate::etcdb::Db<crate::etcdb::Group> = crate::etcdb::Db::parse(&group);
    let mut p = Planner::new("firstboot", plan);
    let hint = if deferred {
        "create the user in the profile, or fix firstboot.write_files.owner"
    } else {
        "an owner the profile creates needs `defer = true` (written after users)"
    };
    for f in s.write_files.iter().filter(|f| f.deferred() == deferred) {
        let rel = f.path.rel();
        let content: Vec<u8> = match f.encoding.unwrap_or(FileEncoding::Text) {
            FileEncoding::Text => f.content.clone().unwrap_or_default().into_bytes(),
            FileEncoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(f.content.as_deref().unwrap_or("").trim())
                .map_err(|e| Error::Runtime(format!("content of {rel}: {e}")))?,
        };
        let (uid, gid) = match &f.owner {
            None => (0, 0),
            Some(o) => {
                let (u, g) = o.split_once(':').unwrap_or((o, o));
                let uid = resolve_id(u, |n| passwd.get(n).map(|e| e.uid)).ok_or_else(|| {
                    Error::Unsafe {
                        reason: format!("owner {u} of {rel} does not exist in the target"),
                        hint: hint.into(),
                    }
                })?;
                let gid = resolve_id(g, |n| group.get(n).map(|e| e.gid)).ok_or_else(|| {
                    Error::Unsafe {
                        reason: format!("group {g} of {rel} does not exist in the target"),
                        hint: "fix firstboot.write_files.owner".into(),
                    }
                })?;
                (uid, gid)
            }
        };
        let perms = Perms {
            mode: f.mode.map(|m| m.0).unwrap_or(0o644),
            uid,
            gid,
        };
        // user-data files often hold secrets (tokens, keys): never in plans or journals.
        let vis = Visibility::Secret;
        if f.append == Some(true) {
            let current = cx.after(p.plan(), &rel)?.unwrap_or_default();
            if !content.is_empty() && current.ends_with(&content) {
                continue;
            }
            let mut new = current.clone();
            new.extend_from_slice(&content);
            let perms = match cx.root.entry(&rel)? {
                crate::root::Entry::File { perms: cur, .. }
                    if f.mode.is_none() && f.owner.is_none() =>
                {
                    cur
                }
                _ => perms,
            };
            p.file_with(
                &cx.root,
                &rel,
                new,
                perms,
                format!("append to {rel} (write_files)"),
                vis,
                None,
            )?;
        } else {
            p.file_with(
                &cx.root,
                &rel,
                content,
                perms,
                format!("write {rel} (write_files)"),
                vis,
                None,
            )?;
        }
    }
    Ok(())
}

/// Where `runcmd` is written before it runs.
pub const RUNCMD_SCRIPT: &str = "var/lib/bollwerk/firstboot/runcmd.sh";
/// Where its output goes.
pub const RUNCMD_LOG: &str = "var/log/bollwerk-runcmd.log";

/// Where `bootcmd` is written before it runs.
pub const BOOTCMD_SCRIPT: &str = "var/lib/bollwerk/firstboot/bootcmd.sh";

/// Renders `runcmd` as one shell script: traced (`set -x`), output appended to the log, stops at
/// the first failing command.
pub fn render_runcmd(cmds: &[RunCmd]) -> String {
    render_script("runcmd", cmds)
}

fn render_script(kind: &str, cmds: &[RunCmd]) -> String {
    let mut s = format!(
        "#!/bin/sh\n{MANAGED_HEADER}\n# {kind} from instance user-data, run once per instance by `bollwerk firstboot`.\n# The trace may show secrets: the log is root's alone (0600), the commands get umask 022.\numask 077\nexec >>/{RUNCMD_LOG} 2>&1\nchmod 0600 /{RUNCMD_LOG}\numask 022\necho \"== {kind} $(date -u +%Y-%m-%dT%H:%M:%SZ)\"\nset -ex\n"
    );
    for c in cmds {
        match c {
            RunCmd::Shell(line) => {
                s.push_str(line);
                s.push('\n');
            }
            RunCmd::Argv(argv) => {
                s.push_str(
                    &argv
                        .iter()
                        .map(|a| crate::exec::shell_quote(a))
                        .collect::<Vec<_>>()
                        .join(" "),
                );
                s.push('\n');
            }
        }
    }
    s
}

/// Plans `runcmd` (firstboot only): the script as a planned file, then one command running it.
///
/// # Errors
/// When the current state cannot be read.
pub fn plan_runcmd(cx: &Context, plan: &mut Plan, cmds: &[RunCmd]) -> Result<()> {
    plan_script(cx, plan, "runcmd", RUNCMD_SCRIPT, cmds)
}

fn plan_script(
    cx: &Context,
    plan: &mut Plan,
    kind: &str,
    path: &'static str,
    cmds: &[RunCmd],
) -> Result<()> {
    if cmds.is_empty() {
        return Ok(());
    }
    let mut p = Planner::new("firstboot", plan);
    let script = RelPath::lit(path);
    p.file(
        &cx.root,
        &script,
        render_script(kind, cmds),
        Perms::root(0o700),
        format!("{kind} script"),
    )?;
    let log = RelPath::lit(RUNCMD_LOG);
    p.run(
        Cmd::in_root("/bin/sh", &[&script.absolute()])
            .timeout(std::time::Duration::from_secs(1800)),
        vec![log],
        format!(
            "run {} {kind} command{} (output in /{RUNCMD_LOG})",
            cmds.len(),
            if cmds.len() == 1 { "" } else { "s" }
        ),
    );
    Ok(())
}

/// Plans what first boot does before the profile (once per instance): `bootcmd`, under the same
/// opt-in as `runcmd`.
///
/// # Errors
/// When the current state cannot be read.
pub fn plan_instance_pre(cx: &Context, plan: &mut Plan, allow_runcmd: bool) -> Result<()> {
    let Some(s) = cx.profile.profile.firstboot.as_ref() else {
        return Ok(());
    };
    if s.bootcmd.is_empty() {
        return Ok(());
    }
    if allow_runcmd {
        plan_script(cx, plan, "bootcmd", BOOTCMD_SCRIPT, &s.bootcmd)
    } else {
        Planner::new("firstboot", plan).note(
            Level::Warning,
            format!(
                "bootcmd: {} command(s) not run (user-data is treated as data; pass --allow-runcmd or set BOLLWERK_ALLOW_RUNCMD=1 in the unit)",
                s.bootcmd.len()
            ),
        );
        Ok(())
    }
}

/// Plans what first boot does after the profile (once per instance): `package_update`,
/// `package_upgrade`, and on a live system `package_reboot_if_required` and `power_state`
/// (a transient unit ordered after `multi-user.target`, so first boot finishes and saves its
/// report before the machine goes down).
///
/// # Errors
/// When the current state cannot be read.
///
/// With `defer_packages` (the local stage, before the network) the package steps are not
/// planned: their names are returned, and [`hand_over_final`] leaves them to
/// [`FINAL_UNIT`], which runs after `network-online.target`.
///
/// # Errors
/// When the current state cannot be read.
pub fn plan_instance_post(
    cx: &Context,
    plan: &mut Plan,
    defer_packages: bool,
) -> Result<Vec<&'static str>> {
    let steps = package_steps(&cx.profile.profile);
    if defer_packages {
        plan_power_state(cx, plan, false)?;
        return Ok(steps);
    }
    plan_package_steps(cx, plan)?;
    plan_power_state(cx, plan, false)?;
    Ok(Vec::new())
}

/// The per-instance package steps a profile asks for.
pub fn package_steps(p: &crate::profile::Profile) -> Vec<&'static str> {
    let Some(s) = p.firstboot.as_ref() else {
        return Vec::new();
    };
    [
        ("package_update", s.package_update),
        ("package_upgrade", s.package_upgrade),
        ("package_reboot_if_required", s.package_reboot_if_required),
    ]
    .into_iter()
    .filter(|(_, v)| *v == Some(true))
    .map(|(k, _)| k)
    .collect()
}

/// `package_update` / `package_upgrade`, then `package_reboot_if_required`.
fn plan_package_steps(cx: &Context, plan: &mut Plan) -> Result<()> {
    let Some(s) = cx.profile.profile.firstboot.as_ref() else {
        return Ok(());
    };
    let upgrade = s.package_upgrade == Some(true);
    if upgrade || s.package_update == Some(true) {
        plan_package_refresh(cx, plan, upgrade)?;
    }
    plan_power_state(cx, plan, true)
}

/// `power_state` (`reboot_step` false) or `package_reboot_if_required` (true).
fn plan_power_state(cx: &Context, plan: &mut Plan, reboot_step: bool) -> Result<()> {
    let Some(s) = cx.profile.profile.firstboot.as_ref() else {
        return Ok(());
    };
    let reboot_if_required = reboot_step && s.package_reboot_if_required == Some(true);
    let power = if reboot_step {
        None
    } else {
        s.power_state.as_ref()
    };
    if power.is_none() && !reboot_if_required {
        return Ok(());
    }
    let mut p = Planner::new("firstboot", plan);
    if !cx.root.is_host() {
        p.note(
            Level::Info,
            "power_state / package_reboot_if_required: skipped (not a live system)",
        );
        return Ok(());
    }
    let (mode, delay, message, condition) = match power {
        Some(ps) => (
            ps.mode,
            ps.delay_minutes.unwrap_or(0),
            ps.message.clone(),
            None,
        ),
        None => (
            PowerMode::Reboot,
            0,
            Some("rebooting: a package upgrade requires it".into()),
            Some("ConditionPathExists=/run/reboot-required"),
        ),
    };
    p.run(
        power_cmd(mode, delay, message.as_deref(), condition),
        Vec::new(),
        format!(
            "{} {} after the boot has finished{}",
            match mode {
                PowerMode::Reboot => "reboot",
                PowerMode::Poweroff => "power off",
                PowerMode::Halt => "halt",
            },
            if delay == 0 {
                "at once".to_string()
            } else {
                format!("{delay} minute(s)")
            },
            if condition.is_some() {
                " if a package requires it"
            } else {
                ""
            }
        ),
    );
    Ok(())
}

/// The transient unit that powers the machine off or reboots it once the boot is done.
pub fn power_cmd(
    mode: PowerMode,
    delay: u32,
    message: Option<&str>,
    condition: Option<&str>,
) -> Cmd {
    let mut args: Vec<String> = vec![
        "--no-block".into(),
        "--unit=bollwerk-power-state".into(),
        "--description=bollwerk first boot power_state".into(),
        "--property=Type=oneshot".into(),
        format!(
            "--property=After=multi-user.target bollwerk-firstboot.service bollwerk-firstboot-network.service {FINAL_UNIT}"
        ),
    ];
    if let Some(c) = condition {
        args.push(format!("--property={c}"));
    }
    args.push("/usr/sbin/shutdown".into());
    args.push(mode.flag().into());
    args.push(if delay == 0 {
        "now".into()
    } else {
        format!("+{delay}")
    });
    if let Some(m) = message {
        args.push(m.to_string());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Cmd::in_root("/usr/bin/systemd-run", &refs)
}

/// `apt-get update` (and `dist-upgrade`), with `policy-rc.d` in a root that is not `/`.
fn plan_package_refresh(cx: &Context, plan: &mut Plan, upgrade: bool) -> Result<()> {
    use crate::modules::packages;
    let mut p = Planner::new("firstboot", plan);
    if !cx.root.exists(&RelPath::lit("usr/bin/apt-get")) {
        p.note(
            Level::Warning,
            "package_update / package_upgrade: apt-get is not installed in the target; nothing updated",
        );
        return Ok(());
    }
    let lock = cx
        .profile
        .profile
        .packages
        .as_ref()
        .and_then(|s| s.lock_timeout)
        .map(|d| d.0)
        .unwrap_or(std::time::Duration::from_secs(600));
    let policy = RelPath::lit(packages::POLICY_RC_D);
    let wrote_policy = upgrade && !cx.root.is_host() && !cx.root.exists(&policy);
    if wrote_policy {
        p.file(
            &cx.root,
            &policy,
            packages::policy_rc_d(),
            Perms::root(0o755),
            format!("{policy}: no services start inside the chroot while packages change"),
        )?;
    }
    p.run(
        packages::apt_update_checked(lock, std::time::Duration::from_secs(600)),
        Vec::new(),
        "refresh the package lists (package_update)",
    );
    if upgrade {
        p.run(
            packages::apt_get(
                &["dist-upgrade"],
                lock,
                std::time::Duration::from_secs(3600),
            ),
            Vec::new(),
            "upgrade the installed packages (package_upgrade)",
        );
    }
    if wrote_policy {
        p.remove(&cx.root, &policy, format!("remove {policy} again"))?;
    }
    Ok(())
}

/// The unit that runs the steps first boot left for after the network.
pub const FINAL_UNIT: &str = "bollwerk-firstboot-final.service";
/// Written by the local stage while package steps wait for [`FINAL_UNIT`]: the instance-id
/// and the steps, one per line. Removed when they succeeded; a failure keeps it, so the next
/// boot retries them (and only them).
pub const PENDING_FINAL: &str = "var/lib/bollwerk/firstboot/pending-final";
/// The report of the last final-stage run (`bollwerk.firstboot-final/v1`).
pub const FINAL_REPORT: &str = "var/lib/bollwerk/firstboot/final.json";

/// After a successful local stage: records the deferred steps in [`PENDING_FINAL`] and, on a
/// live system, queues [`FINAL_UNIT`] (it waits for `network-online.target`; sshd does not
/// wait for it). Returns a line for the output.
///
/// # Errors
/// When the pending file cannot be written.
pub fn hand_over_final(
    root: &crate::root::Root,
    runner: &dyn crate::exec::Runner,
    instance_id: &str,
    steps: &[&str],
) -> Result<Option<String>> {
    if steps.is_empty() {
        return Ok(None);
    }
    root.write_atomic(
        &RelPath::lit(PENDING_FINAL),
        format!("{instance_id}\n{}\n", steps.join("\n")).as_bytes(),
        Perms::root(0o600),
    )?;
    Ok(Some(start_final(root, runner, steps)))
}

/// Queues [`FINAL_UNIT`] when steps are pending (the next boot of an already provisioned
/// instance calls this: a failed step is retried). Returns a line for the output, if any.
pub fn resume_final(root: &crate::root::Root, runner: &dyn crate::exec::Runner) -> Option<String> {
    let text = root.read_string(&RelPath::lit(PENDING_FINAL)).ok()??;
    let steps: Vec<&str> = text.lines().skip(1).filter(|l| !l.is_empty()).collect();
    Some(start_final(root, runner, &steps))
}

fn start_final(
    root: &crate::root::Root,
    runner: &dyn crate::exec::Runner,
    steps: &[&str],
) -> String {
    if !root.is_host() {
        return format!(
            "firstboot: {} wait for the network: run `bollwerk firstboot --stage final` (the {FINAL_UNIT} unit does on a live system)\n",
            steps.join(", ")
        );
    }
    match runner.run_ok(
        root,
        &Cmd::in_root("/usr/bin/systemctl", &["--no-block", "start", FINAL_UNIT]),
    ) {
        Ok(_) => format!(
            "firstboot: {} queued in {FINAL_UNIT} (after network-online.target)\n",
            steps.join(", ")
        ),
        Err(e) => {
            tracing::warn!("starting {FINAL_UNIT}: {e}");
            format!(
                "warning: {} not started ({e}); they stay pending for the next boot\n",
                FINAL_UNIT
            )
        }
    }
}

/// `bollwerk firstboot --stage final`: runs the pending package steps with the stored
/// effective profile, as one journaled run. Success removes [`PENDING_FINAL`]; a failure rolls
/// back that run's files (never the users and keys of the local stage), keeps the pending file
/// for the next boot, and is recorded in [`FINAL_REPORT`] and the journal.
///
/// # Errors
/// A failed step (exit 3), an unreadable stored profile.
pub fn run_final(
    root_path: &std::path::Path,
    runner: &dyn crate::exec::Runner,
    out: &mut dyn std::io::Write,
) -> Result<crate::error::ExitStatus> {
    use crate::engine::journal;
    let root = crate::root::Root::new(root_path)?;
    let w = |out: &mut dyn std::io::Write, s: &str| {
        out.write_all(s.as_bytes())
            .map_err(|e| Error::io("writing output", "stdout", e))
    };
    let Some(pending) = root.read_string(&RelPath::lit(PENDING_FINAL))? else {
        w(out, "firstboot (final): nothing pending\n")?;
        return Ok(crate::error::ExitStatus::Ok);
    };
    let instance_id = pending.lines().next().unwrap_or_default().to_string();
    let profile_path = stored_profile(root_path).ok_or_else(|| {
        Error::Runtime(format!(
            "steps are pending but {EFFECTIVE_PROFILE} is missing; nothing run"
        ))
    })?;
    let loaded = crate::profile::load(&profile_path)?;
    let _lock = journal::lock(&root)?;
    let cx = Context::new(
        root.clone(),
        runner,
        &loaded,
        crate::engine::Options::default(),
    )?;
    let steps: Vec<String> = pending
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    // Package installs the local stage left: the whole stored profile again (it installs them,
    // and a follow-up run configures what they brought); then the once-per-instance steps.
    let mut plan = if steps.iter().any(|s| s == "packages") {
        let p = crate::modules::plan_all(&cx)?;
        if let Some(r) = p.refusals.first() {
            return Err(Error::Unsafe {
                reason: r.reason.clone(),
                hint: r.hint.clone(),
            });
        }
        p
    } else {
        Plan::default()
    };
    plan_package_steps(&cx, &mut plan)?;
    let runs_before: Vec<String> = journal::list_runs(&root)?
        .into_iter()
        .map(|m| m.id)
        .collect();
    let result = crate::engine::apply::apply(&cx, &plan).and_then(|r| {
        crate::modules::follow_up_run(&cx, &plan, &r, false)?;
        Ok(r)
    });
    let (status, error) = match &result {
        Ok(_) => ("done", None),
        Err(e) => ("failed", Some(e.to_string())),
    };
    // The step that failed, by its plan summary (apply's error starts with it).
    let failed_step = error.as_deref().and_then(|e| {
        plan.changes
            .iter()
            .find(|c| e.starts_with(&format!("{}: ", c.summary)))
            .map(|c| format!("{}: {}", c.module, c.summary))
    });
    if result.is_err()
        && let Some(m) = journal::list_runs(&root)?
            .into_iter()
            .find(|m| !runs_before.contains(&m.id) && !m.entries.is_empty())
    {
        let _ = journal::rollback(&root, &m.id, true);
    }
    let doc = serde_json::json!({
        "schema": "bollwerk.firstboot-final/v1",
        "instance_id": instance_id,
        "steps": steps,
        "status": status,
        "failed_step": failed_step,
        "error": error,
        "finished": journal::now_rfc3339(),
    });
    root.write_atomic(
        &RelPath::lit(FINAL_REPORT),
        format!("{doc:#}\n").as_bytes(),
        Perms::root(0o600),
    )?;
    match result {
        Ok(r) => {
            root.remove(&RelPath::lit(PENDING_FINAL))?;
            w(
                out,
                &format!(
                    "firstboot (final): instance {instance_id}: {} done ({} change{})\n",
                    steps.join(", "),
                    r.applied.len(),
                    if r.applied.len() == 1 { "" } else { "s" }
                ),
            )?;
            Ok(crate::error::ExitStatus::Ok)
        }
        Err(e) => Err(Error::Runtime(format!(
            "firstboot (final) for instance {instance_id}: {} failed: {e}\n  users, keys and the rest of first boot stay; the step is retried on the next boot ({FINAL_REPORT})",
            steps.join(", ")
        ))),
    }
}

/// Where first boot keeps the effective profile (mode 0600): the merged, validated profile it
/// applied, without secrets, so `bollwerk apply`, `plan`, `validate` and `audit` use it when
/// no `--profile` is given.
pub const EFFECTIVE_PROFILE: &str = "var/lib/bollwerk/profile.toml";

/// The effective profile as TOML: `extends` resolved (the profile is complete), password hashes
/// and the per-instance data of `[firstboot]` (`write_files` contents, `runcmd`, `bootcmd`)
/// left out. Re-applying it leaves existing passwords and written files alone.
///
/// # Errors
/// When the profile cannot be rendered as TOML.
pub fn render_effective_profile(loaded: &crate::profile::Loaded) -> Result<String> {
    let mut p = loaded.profile.clone();
    p.extends = None;
    for u in &mut p.users {
        u.password_hash = None;
    }
    if let Some(f) = p.firstboot.as_mut() {
        f.write_files.clear();
        f.runcmd.clear();
        f.bootcmd.clear();
    }
    let text = toml::to_string(&p)
        .map_err(|e| Error::Runtime(format!("rendering the effective profile: {e}")))?;
    Ok(format!(
        "{}{}, digest {}).\n# Password hashes, write_files, runcmd and bootcmd are not stored. `bollwerk apply`,\n# `plan`, `validate` and `audit` use this file when no --profile is given.\n{text}",
        crate::profile::STORED_PROFILE_HEADER,
        loaded.name(),
        loaded.digest
    ))
}

/// Writes [`EFFECTIVE_PROFILE`] (0600) into the root.
///
/// # Errors
/// When the profile cannot be rendered or written.
pub fn store_effective_profile(
    root: &crate::root::Root,
    loaded: &crate::profile::Loaded,
) -> Result<()> {
    let text = render_effective_profile(loaded)?;
    let rel = RelPath::lit(EFFECTIVE_PROFILE);
    if let Some(parent) = rel.parent() {
        for d in root.missing_dirs(&parent)? {
            root.create_dir(&d, Perms::root(0o700))?;
        }
    }
    root.write_atomic(&rel, text.as_bytes(), Perms::root(0o600))
}

/// The profile to use: the one given, or the effective profile first boot stored under `root`.
///
/// # Errors
/// [`Error::Usage`] (exit 2) when none is given and none is stored.
pub fn profile_or_stored(root: &std::path::Path, given: Option<&str>) -> Result<String> {
    if let Some(g) = given {
        return Ok(g.to_string());
    }
    stored_profile(root).ok_or_else(|| {
        Error::Usage(format!(
            "no --profile given and no profile stored by first boot ({})",
            root.join(EFFECTIVE_PROFILE).display()
        ))
    })
}

/// The path of the stored effective profile under `root`, when there is one.
pub fn stored_profile(root: &std::path::Path) -> Option<String> {
    let p = root.join(EFFECTIVE_PROFILE);
    p.is_file().then(|| p.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runcmd_script_quotes_argv() {
        let s = render_runcmd(&[
            RunCmd::Shell("echo hi > /tmp/x".into()),
            RunCmd::Argv(vec!["touch".into(), "/tmp/a b".into()]),
        ]);
        assert!(
            s.contains("set -ex\necho hi > /tmp/x\ntouch '/tmp/a b'\n"),
            "{s}"
        );
        assert!(
            s.contains("umask 077\nexec >>/var/log/bollwerk-runcmd.log 2>&1\nchmod 0600 /var/log/bollwerk-runcmd.log\numask 022\n"),
            "the trace log is 0600: {s}"
        );
        // The log really ends up 0600 (run the header with a scratch log path).
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("runcmd.log");
        std::fs::write(&log, "old\n").unwrap();
        std::fs::set_permissions(&log, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let script = s
            .replace(&format!("/{RUNCMD_LOG}"), &log.to_string_lossy())
            .replace("echo hi > /tmp/x\ntouch '/tmp/a b'\n", "echo traced\n");
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .status()
            .unwrap();
        assert!(st.success());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(
            std::fs::read_to_string(&log)
                .unwrap()
                .contains("echo traced")
        );
    }

    #[test]
    fn protected_paths() {
        assert!(protected("/etc/ssh/sshd_config.d/99-x.conf").is_some());
        assert!(protected("/etc/sudoers.d/x").is_some());
        assert!(protected("/etc/motd").is_none());
    }
}
