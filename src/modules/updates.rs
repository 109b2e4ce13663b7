//! Unattended upgrades: `etc/apt/apt.conf.d/20auto-upgrades` (the periodic switches),
//! bollwerk's drop-in `etc/apt/apt.conf.d/52bollwerk-unattended-upgrades` (origins written for
//! the detected distribution, reboot, cleanup, mail) and systemd drop-ins that move
//! `apt-daily.timer` (download) and `apt-daily-upgrade.timer` (install) into a maintenance
//! window with a randomized delay.
//!
//! apt configuration lists accumulate across files, so the drop-in starts with `#clear` for
//! the origin lists: only the profile's origins remain. Candidates are checked with the target's
//! `apt-config` and `systemd-analyze verify` before activation; after apply, `apt-config dump`
//! must show exactly the profile's origins.
//!
//! [`ConffilePolicy`] keeps unattended upgrades going on a host whose dpkg conffiles bollwerk
//! edits (`etc/systemd/journald.conf`, `etc/issue`, …): unattended-upgrades skips every package
//! whose conffile would prompt, unless `Dpkg::Options` has `--force-confold`. It writes
//! `etc/apt/apt.conf.d/51bollwerk-dpkg-conffiles` (keep the local file, take the maintainer's
//! version where the local one is unchanged). See docs/services.md ("Edited distro files and upgrades").

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Finding, Level, Plan, Planner, Staged, Validator, Visibility};
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::facts::OsRelease;
use crate::modules::Module;
use crate::profile::types::Duration;
use crate::profile::{Layer, ProfileError};
use crate::root::{Perms, RelPath};

/// Which updates are installed unattended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Security updates (`-security`).
    Security,
    /// Other stable updates (Debian point releases and `-updates`, Ubuntu `-updates`).
    Updates,
}

/// When unattended-upgrades mails a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MailReport {
    /// After every run.
    Always,
    /// When packages were upgraded (or something failed).
    OnChange,
    /// Only when something failed.
    OnlyOnError,
}

/// `[updates]`: unattended upgrades and their maintenance window.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatesSection {
    /// Install updates automatically (`APT::Periodic::Unattended-Upgrade`). false turns the
    /// periodic runs off and removes bollwerk's drop-ins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unattended: Option<bool>,
    /// What to install: ["security"] (default) or ["security", "updates"].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origins: Option<Vec<Origin>>,
    /// Reboot automatically when an update needs it (`Automatic-Reboot`). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot: Option<bool>,
    /// When to reboot, "HH:MM" local time (`Automatic-Reboot-Time`; default: right away).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_time: Option<String>,
    /// Start of the upgrade window, "HH:MM" local time: `apt-daily-upgrade.timer` fires then
    /// (plus the randomized delay); the package lists are downloaded an hour earlier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Random delay added to the window's start (`RandomizedDelaySec`). Default "30m".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub randomized_delay: Option<Duration>,
    /// Remove dependencies and old kernels no longer needed (`Remove-Unused-Dependencies`,
    /// `Remove-Unused-Kernel-Packages`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove_unused: Option<bool>,
    /// Mail reports to this address (needs a working `mail`/`sendmail` on the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    /// When to mail: "always", "on-change" (default) or "only-on-error".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail_report: Option<MailReport>,
}

/// The periodic switches file (the name Debian's debconf question writes).
pub const AUTO_UPGRADES: &str = "etc/apt/apt.conf.d/20auto-upgrades";
/// bollwerk's unattended-upgrades drop-in (sorts after the distro's `50unattended-upgrades`).
pub const UU_DROPIN: &str = "etc/apt/apt.conf.d/52bollwerk-unattended-upgrades";
/// bollwerk's dpkg conffile policy (see [`ConffilePolicy`]).
pub const DPKG_OPTIONS_DROPIN: &str = "etc/apt/apt.conf.d/51bollwerk-dpkg-conffiles";
/// The timers bollwerk moves into the window.
pub const TIMERS: [&str; 2] = ["apt-daily.timer", "apt-daily-upgrade.timer"];
const APT_HEADER: &str = "// Managed by bollwerk — local edits are overwritten";
const UNIT_HEADER: &str = "# Managed by bollwerk — local edits are overwritten";

fn timer_dropin(timer: &str) -> RelPath {
    RelPath::new(&format!("etc/systemd/system/{timer}.d/50-bollwerk.conf"))
        .unwrap_or_else(|_| RelPath::lit("etc/systemd/system/invalid"))
}

/// Parses "HH:MM" into minutes after midnight.
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

fn hhmm(min: u32) -> String {
    format!("{:02}:{:02}", min / 60 % 24, min % 60)
}

/// Cross-field checks of `[updates]`.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(u: &UpdatesSection, layers: &[Layer]) -> Result<(), ProfileError> {
    let err = |key: &str, msg: String, hint: &str| {
        Err(crate::profile::error_at(layers, &["updates", key], msg).with_hint(hint.to_string()))
    };
    for (key, v) in [("window", &u.window), ("reboot_time", &u.reboot_time)] {
        if let Some(t) = v
            && parse_hhmm(t).is_none()
        {
            return err(
                key,
                format!("{key} = {t:?} is not a time of day"),
                "write it as \"HH:MM\" in 24-hour local time, e.g. \"03:00\"",
            );
        }
    }
    if let Some(o) = &u.origins
        && o.is_empty()
    {
        return err(
            "origins",
            "origins is empty: nothing would be installed".into(),
            "use [\"security\"], or set unattended = false",
        );
    }
    if let Some(m) = &u.mail {
        let ok = m.split_once('@').is_some_and(|(a, d)| {
            !a.is_empty()
                && d.contains('.')
                && !m.contains(|c: char| c.is_whitespace() || "\"';\\{}".contains(c))
        });
        if !ok {
            return err(
                "mail",
                format!("mail = {m:?} is not an e-mail address"),
                "e.g. \"ops@example.org\"",
            );
        }
    }
    if let Some(d) = u.randomized_delay
        && d.secs() > 6 * 3600
    {
        return err(
            "randomized_delay",
            format!("a randomized delay of {} s is more than 6 hours", d.secs()),
            "keep the window short, e.g. \"30m\"",
        );
    }
    if u.reboot_time.is_some() && u.reboot != Some(true) {
        return err(
            "reboot_time",
            "reboot_time is set but reboot is not true".into(),
            "set reboot = true, or drop reboot_time",
        );
    }
    Ok(())
}

/// The origin lines for a distribution: (apt key, patterns).
pub fn origin_lines(os: &OsRelease, origins: &[Origin]) -> Option<(&'static str, Vec<String>)> {
    let has = |o: Origin| origins.contains(&o);
    if os.is_ubuntu() {
        let mut v = Vec::new();
        if has(Origin::Security) {
            v.push("${distro_id}:${distro_codename}-security".to_string());
            v.push("${distro_id}ESMApps:${distro_codename}-apps-security".to_string());
            v.push("${distro_id}ESM:${distro_codename}-infra-security".to_string());
        }
        if has(Origin::Updates) {
            v.push("${distro_id}:${distro_codename}-updates".to_string());
        }
        return Some(("Unattended-Upgrade::Allowed-Origins", v));
    }
    if os.id == "debian" || os.is_debian_family() {
        let old = os
            .version_id
            .split('.')
            .next()
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|v| v < 11);
        let mut v = Vec::new();
        if has(Origin::Security) {
            v.push(if old {
                "origin=Debian,codename=${distro_codename},label=Debian-Security".to_string()
            } else {
                "origin=Debian,codename=${distro_codename}-security,label=Debian-Security"
                    .to_string()
            });
        }
        if has(Origin::Updates) {
            v.push("origin=Debian,codename=${distro_codename},label=Debian".to_string());
            v.push("origin=Debian,codename=${distro_codename}-updates".to_string());
        }
        return Some(("Unattended-Upgrade::Origins-Pattern", v));
    }
    None
}

fn tf(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// Renders `20auto-upgrades`.
pub fn render_auto_upgrades(on: bool) -> String {
    let v = if on { "1" } else { "0" };
    format!(
        "{APT_HEADER}\nAPT::Periodic::Update-Package-Lists \"{v}\";\nAPT::Periodic::Unattended-Upgrade \"{v}\";\n"
    )
}

/// Renders the unattended-upgrades drop-in.
pub fn render_uu(os: &OsRelease, u: &UpdatesSection, key: &str, lines: &[String]) -> String {
    let mut out = format!(
        "{APT_HEADER}\n// Origins for {} ({}); the lists are cleared first so that only these remain.\n#clear Unattended-Upgrade::Origins-Pattern;\n#clear Unattended-Upgrade::Allowed-Origins;\n{key} {{\n",
        if os.pretty_name.is_empty() {
            &os.id
        } else {
            &os.pretty_name
        },
        if os.is_ubuntu() {
            "Ubuntu syntax"
        } else {
            "Debian syntax"
        }
    );
    for l in lines {
        out.push_str(&format!("    \"{l}\";\n"));
    }
    out.push_str("};\n");
    if let Some(r) = u.reboot {
        out.push_str(&format!(
            "Unattended-Upgrade::Automatic-Reboot \"{}\";\n",
            tf(r)
        ));
    }
    if let Some(t) = &u.reboot_time {
        out.push_str(&format!(
            "Unattended-Upgrade::Automatic-Reboot-Time \"{t}\";\n"
        ));
    }
    if let Some(r) = u.remove_unused {
        out.push_str(&format!(
            "Unattended-Upgrade::Remove-Unused-Dependencies \"{}\";\nUnattended-Upgrade::Remove-Unused-Kernel-Packages \"{}\";\nUnattended-Upgrade::Remove-New-Unused-Dependencies \"{}\";\n",
            tf(r),
            tf(r),
            tf(r)
        ));
    }
    if let Some(m) = &u.mail {
        out.push_str(&format!("Unattended-Upgrade::Mail \"{m}\";\n"));
        let report = match u.mail_report.unwrap_or(MailReport::OnChange) {
            MailReport::Always => "always",
            MailReport::OnChange => "on-change",
            MailReport::OnlyOnError => "only-on-error",
        };
        out.push_str(&format!("Unattended-Upgrade::MailReport \"{report}\";\n"));
    }
    out
}

/// Renders a timer drop-in: `OnCalendar` reset, then the daily time, with a random delay.
pub fn render_timer(minutes: u32, delay_secs: u64, what: &str) -> String {
    format!(
        "{UNIT_HEADER}\n# {what}\n[Timer]\nOnCalendar=\nOnCalendar=*-*-* {}:00\nRandomizedDelaySec={delay_secs}\n",
        hhmm(minutes)
    )
}

/// The updates module.
pub struct Updates;

impl Module for Updates {
    fn name(&self) -> &'static str {
        "updates"
    }

    fn required_packages(&self, cx: &Context) -> Vec<String> {
        match &cx.profile.profile.updates {
            Some(u) if u.unattended == Some(true) => vec!["unattended-upgrades".into()],
            _ => Vec::new(),
        }
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(u) = &cx.profile.profile.updates else {
            return Ok(());
        };
        let mut p = Planner::new(self.name(), plan);
        let os = &cx.facts.os;
        let origins = u.origins.clone().unwrap_or_else(|| vec![Origin::Security]);
        let Some((key, lines)) = origin_lines(os, &origins) else {
            p.note(
                Level::Warning,
                format!(
                    "[updates] needs Debian or Ubuntu (unattended-upgrades); the target is {}: not applied",
                    if os.pretty_name.is_empty() { "unknown" } else { &os.pretty_name }
                ),
            );
            return Ok(());
        };
        let on = u.unattended.unwrap_or(true);
        if on && cx.facts.package("unattended-upgrades").is_none() {
            if cx.root.exists(&RelPath::lit("usr/bin/apt-get")) {
                // Its postinst writes 20auto-upgrades: configure it once it is there.
                p.note(
                    Level::Info,
                    "unattended-upgrades is installed by this run; its configuration is planned and applied right after, in the follow-up run",
                );
                return Ok(());
            }
            p.note(
                Level::Warning,
                "unattended-upgrades is not installed and apt-get is missing: the configuration is written, but nothing runs it",
            );
        }
        let apt_check: Arc<dyn Validator> = Arc::new(AptConfigCheck);
        let timer_check: Arc<dyn Validator> = Arc::new(TimerCheck);
        let mut changed = p.file_with(
            &cx.root,
            &RelPath::lit(AUTO_UPGRADES),
            render_auto_upgrades(on).into_bytes(),
            Perms::root(0o644),
            format!(
                "periodic apt runs {}",
                if on {
                    "on (lists + unattended upgrades)"
                } else {
                    "off"
                }
            ),
            Visibility::Plain,
            Some(apt_check.clone()),
        )?;
        let uu = RelPath::lit(UU_DROPIN);
        if !on {
            changed |= p.remove(&cx.root, &uu, format!("remove {uu} (unattended = false)"))?;
            for t in TIMERS {
                changed |= p.remove(
                    &cx.root,
                    &timer_dropin(t),
                    format!("remove bollwerk's {t} drop-in (unattended = false)"),
                )?;
            }
        } else {
            changed |= p.file_with(
                &cx.root,
                &uu,
                render_uu(os, u, key, &lines).into_bytes(),
                Perms::root(0o644),
                format!(
                    "unattended upgrades: {} for {}",
                    origins
                        .iter()
                        .map(|o| format!("{o:?}").to_lowercase())
                        .collect::<Vec<_>>()
                        .join(" + "),
                    if os.pretty_name.is_empty() {
                        &os.id
                    } else {
                        &os.pretty_name
                    }
                ),
                Visibility::Plain,
                Some(apt_check),
            )?;
            if let Some(w) = u.window.as_deref().and_then(parse_hhmm) {
                let delay = u.randomized_delay.map(|d| d.secs()).unwrap_or(1800);
                let download = (w + 24 * 60 - 60) % (24 * 60);
                for (timer, minutes, what) in [
                    (
                        "apt-daily.timer",
                        download,
                        "download package lists and updates an hour before the upgrade window",
                    ),
                    ("apt-daily-upgrade.timer", w, "the upgrade window"),
                ] {
                    changed |= p.file_with(
                        &cx.root,
                        &timer_dropin(timer),
                        render_timer(minutes, delay, what).into_bytes(),
                        Perms::root(0o644),
                        format!("{timer} at {} (+ up to {} s)", hhmm(minutes), delay),
                        Visibility::Plain,
                        Some(timer_check.clone()),
                    )?;
                }
                if let Some(r) = u.reboot_time.as_deref().and_then(parse_hhmm)
                    && u.reboot == Some(true)
                {
                    let end = w + (delay / 60) as u32 + 1;
                    let inside = (w..end).contains(&r) || (w..end).contains(&(r + 24 * 60));
                    if inside {
                        p.note(
                            Level::Info,
                            format!(
                                "reboot_time {} lies inside the upgrade window {}–{}: a reboot an upgrade needs after {} waits for the next day's {}",
                                hhmm(r), hhmm(w), hhmm(end), hhmm(r), hhmm(r)
                            ),
                        );
                    }
                }
            }
            if u.reboot == Some(true)
                && let Some(ct) = &cx.facts.container
            {
                p.note(
                    Level::Info,
                    format!("the target runs in a container ({ct}): Automatic-Reboot restarts the container only; the kernel is the host's and is updated there"),
                );
            }
            if u.mail.is_some()
                && !cx.root.exists(&RelPath::lit("usr/bin/mail"))
                && !cx.root.exists(&RelPath::lit("usr/sbin/sendmail"))
            {
                p.note(
                    Level::Warning,
                    "updates.mail is set but the target has neither mail nor sendmail: reports are not sent until a mail transport is installed (e.g. bsd-mailx with an MTA)",
                );
            }
        }
        if changed {
            p.handler(Cmd::in_root("/usr/bin/systemctl", &["daemon-reload"]));
            p.handler(Cmd::in_root(
                "/usr/bin/systemctl",
                &["restart", "apt-daily.timer", "apt-daily-upgrade.timer"],
            ));
        }
        Ok(())
    }

    fn verify(&self, cx: &Context) -> Result<Vec<Finding>> {
        let Some(u) = &cx.profile.profile.updates else {
            return Ok(Vec::new());
        };
        if u.unattended == Some(false) {
            return Ok(Vec::new());
        }
        let origins = u.origins.clone().unwrap_or_else(|| vec![Origin::Security]);
        let Some((key, want)) = origin_lines(&cx.facts.os, &origins) else {
            return Ok(Vec::new());
        };
        let cmd = Cmd::in_root("/usr/bin/apt-config", &["dump", "Unattended-Upgrade"]);
        if !cx.runner.available(&cx.root, &cmd) {
            return Ok(Vec::new());
        }
        let out = cx.runner.run_ok(&cx.root, &cmd)?;
        let mut have: Vec<String> = Vec::new();
        let mut others: Vec<String> = Vec::new();
        for line in out.stdout.lines() {
            let Some((k, v)) = line.split_once(' ') else {
                continue;
            };
            let v = v.trim_end_matches(';').trim_matches('"').to_string();
            if k == format!("{key}::") {
                have.push(v);
            } else if k.ends_with("-Origins::") || k.ends_with("Origins-Pattern::") {
                others.push(format!("{k} {v}"));
            }
        }
        let mut out = Vec::new();
        if have != want {
            out.push(Finding {
                module: "updates",
                message: format!(
                    "apt-config shows {key} = {have:?}, the profile wants {want:?} (another file in etc/apt/apt.conf.d sorting after {UU_DROPIN} adds to the list?)"
                ),
            });
        }
        if !others.is_empty() {
            out.push(Finding {
                module: "updates",
                message: format!(
                    "more origins are allowed than the profile lists: {}",
                    others.join(", ")
                ),
            });
        }
        Ok(out)
    }
}

/// Renders the dpkg conffile policy for unattended upgrades.
pub fn render_dpkg_options() -> String {
    format!(
        "{APT_HEADER}
// bollwerk edits files that dpkg ships as conffiles (journald.conf, issue, ...).
// unattended-upgrades skips a package whose conffile would prompt unless one of these
// options is set, and those packages would then never be upgraded. --force-confdef takes
// the maintainer's version where the local file was not changed; --force-confold keeps
// the local file where it was (the maintainer's version is saved as *.dpkg-dist).
Dpkg::Options {{
    \"--force-confdef\";
    \"--force-confold\";
}};
"
    )
}

/// The conffiles of the installed packages, from `var/lib/dpkg/status` (`Conffiles:` fields),
/// as paths relative to the root.
pub fn dpkg_conffiles(status: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let mut in_conffiles = false;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix(' ') {
            if in_conffiles && let Some(path) = rest.split_whitespace().next() {
                out.insert(path.trim_start_matches('/').to_string());
            }
            continue;
        }
        in_conffiles = line.starts_with("Conffiles:");
    }
    out
}

/// Writes [`DPKG_OPTIONS_DROPIN`] when unattended-upgrades is (or is being) installed and
/// this run changes the content of a dpkg conffile (or the file is already ours: it stays).
/// Runs after every module that edits files, so it sees their planned changes.
pub struct ConffilePolicy;

impl Module for ConffilePolicy {
    fn name(&self) -> &'static str {
        "conffiles"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        // Installed, or installed by this run (then the edits happen in this run, before the
        // packages' follow-up run would see it installed).
        const UU: &str = "unattended-upgrades";
        let profile = &cx.profile.profile;
        let uu = cx.facts.package(UU).is_some()
            || plan.requested_packages.iter().any(|(_, p)| p == UU)
            || profile
                .packages
                .as_ref()
                .and_then(|p| p.install.as_ref())
                .is_some_and(|l| l.iter().any(|p| p.as_str() == UU))
            || profile
                .updates
                .as_ref()
                .is_some_and(|u| u.unattended == Some(true));
        if !uu {
            return Ok(());
        }
        let rel = RelPath::lit(DPKG_OPTIONS_DROPIN);
        let ours = cx
            .root
            .read_string(&rel)?
            .is_some_and(|t| t.starts_with(APT_HEADER));
        let edited: Vec<String> = if ours {
            Vec::new()
        } else {
            let status = cx
                .root
                .read_string(&RelPath::lit("var/lib/dpkg/status"))?
                .unwrap_or_default();
            let conffiles = dpkg_conffiles(&status);
            plan.changes
                .iter()
                .filter_map(|c| match &c.action {
                    crate::engine::Action::WriteFile { path, .. }
                        if conffiles.contains(path.as_str()) =>
                    {
                        Some(path.absolute())
                    }
                    _ => None,
                })
                .collect()
        };
        if !ours && edited.is_empty() {
            return Ok(());
        }
        let mut p = Planner::new(self.name(), plan);
        p.file_with(
            &cx.root,
            &rel,
            render_dpkg_options().into_bytes(),
            Perms::root(0o644),
            if edited.is_empty() {
                "dpkg keeps edited conffiles during unattended upgrades".to_string()
            } else {
                format!(
                    "dpkg keeps edited conffiles during unattended upgrades ({} edited by this run)",
                    edited.join(", ")
                )
            },
            Visibility::Plain,
            Some(Arc::new(AptConfigCheck)),
        )?;
        Ok(())
    }
}

/// Checks the apt candidates with the target's `apt-config` (syntax; it reads the system's
/// configuration, then the candidates).
#[derive(Debug)]
pub struct AptConfigCheck;

impl Validator for AptConfigCheck {
    fn describe(&self) -> String {
        "apt-config dump".into()
    }

    fn validate(&self, cx: &Context, staged: &Staged) -> Result<()> {
        let mut cmd = Cmd::in_root("/usr/bin/apt-config", &[]);
        let mut any = false;
        for rel in [AUTO_UPGRADES, UU_DROPIN, DPKG_OPTIONS_DROPIN] {
            if let Some(c) = staged.files.get(&RelPath::lit(rel)) {
                cmd = cmd.arg("-c").arg(c.clone());
                any = true;
            }
        }
        if !any {
            return Ok(());
        }
        let out = cx
            .runner
            .run(&cx.root, &cmd.arg("dump").arg("Unattended-Upgrade"))?;
        if out.success() && !out.stderr.contains("E: ") {
            Ok(())
        } else {
            Err(Error::Validation {
                path: UU_DROPIN.to_string(),
                validator: self.describe(),
                output: out.combined(),
            })
        }
    }
}

/// Checks the timer drop-ins with the target's `systemd-analyze verify`: the candidates are
/// placed as drop-ins in a unit directory searched first (`SYSTEMD_UNIT_PATH`), where they
/// mask bollwerk's current ones; any complaint naming a candidate fails the check.
#[derive(Debug)]
pub struct TimerCheck;

impl Validator for TimerCheck {
    fn describe(&self) -> String {
        "systemd-analyze verify".into()
    }

    fn validate(&self, cx: &Context, staged: &Staged) -> Result<()> {
        let units_host = staged.dir_host.join("units");
        let units_in_root = format!("{}/units", staged.dir_in_root);
        let mut timers = Vec::new();
        for t in TIMERS {
            let Some(cand) = staged.files.get(&timer_dropin(t)) else {
                continue;
            };
            let d = units_host.join(format!("{t}.d"));
            std::fs::create_dir_all(&d).map_err(|e| Error::io("creating", &d, e))?;
            let src = staged.host_path(cand);
            std::fs::copy(&src, d.join("50-bollwerk.conf"))
                .map_err(|e| Error::io("copying", &src, e))?;
            timers.push(t);
        }
        if timers.is_empty() {
            return Ok(());
        }
        let mut cmd = Cmd::in_root("/usr/bin/systemd-analyze", &["verify", "--man=no"])
            .env("SYSTEMD_UNIT_PATH", &format!("{units_in_root}:"));
        for t in &timers {
            cmd = cmd.arg(*t);
        }
        let out = cx.runner.run(&cx.root, &cmd)?;
        let complaint = out.combined().lines().any(|l| l.contains(&units_in_root));
        if out.success() && !complaint {
            Ok(())
        } else {
            Err(Error::Validation {
                path: timer_dropin("apt-daily-upgrade.timer").to_string(),
                validator: self.describe(),
                output: out
                    .combined()
                    .replace(&units_in_root, "/etc/systemd/system"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(text: &str) -> OsRelease {
        OsRelease::parse(text)
    }

    #[test]
    fn times() {
        assert_eq!(parse_hhmm("03:00"), Some(180));
        assert_eq!(parse_hhmm("23:59"), Some(1439));
        for bad in ["3:00", "24:00", "03:60", "0300", "03:00:00", "aa:bb"] {
            assert_eq!(parse_hhmm(bad), None, "{bad}");
        }
        assert_eq!(hhmm(1410), "23:30");
        assert_eq!(hhmm(24 * 60 + 30), "00:30");
    }

    #[test]
    fn origins_per_distro() {
        let deb = os("ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n");
        let (k, l) = origin_lines(&deb, &[Origin::Security]).unwrap();
        assert_eq!(k, "Unattended-Upgrade::Origins-Pattern");
        assert_eq!(
            l,
            vec!["origin=Debian,codename=${distro_codename}-security,label=Debian-Security"]
        );
        let (_, l) = origin_lines(&deb, &[Origin::Security, Origin::Updates]).unwrap();
        assert_eq!(l.len(), 3);
        let buster = os("ID=debian\nVERSION_ID=\"10\"\n");
        let (_, l) = origin_lines(&buster, &[Origin::Security]).unwrap();
        assert_eq!(
            l,
            vec!["origin=Debian,codename=${distro_codename},label=Debian-Security"]
        );
        let ubu = os("ID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"22.04\"\n");
        let (k, l) = origin_lines(&ubu, &[Origin::Security]).unwrap();
        assert_eq!(k, "Unattended-Upgrade::Allowed-Origins");
        assert_eq!(l[0], "${distro_id}:${distro_codename}-security");
        assert!(origin_lines(&os("ID=fedora\n"), &[Origin::Security]).is_none());
    }
}
