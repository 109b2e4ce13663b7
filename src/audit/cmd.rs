//! The `audit`, `checks` and `install-units` commands: arguments (clap) and implementations.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::catalog::Catalog;
use super::check::Severity;
use super::report::{self, ReportFormat};
use super::result::{Report, Status};
use super::{AuditOptions, run};
use crate::error::{Error, ExitStatus, Result};
use crate::exec::Runner;
use crate::root::{Perms, RelPath, Root};

/// `bollwerk audit` arguments.
#[derive(Debug, Args, Clone)]
pub struct AuditArgs {
    /// Profile whose settings the audit relates to (marks the checks it covers; supplies
    /// declared log directories, secrets, scan roots). Default: the profile first boot stored
    /// (`/var/lib/bollwerk/profile.toml` in the root), if any.
    #[arg(short, long, value_name = "PATH|NAME")]
    pub profile: Option<String>,
    /// Highest CIS level to judge (level 2 checks are skipped at level 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub level: u8,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Write the report to this file (atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Exit 1 when the score (pass / (pass + fail), in %) is below this; default: exit 1
    /// when any check of severity high or critical fails.
    #[arg(long, value_name = "PERCENT")]
    pub fail_under: Option<f64>,
    /// Keep the JSON report under `var/lib/bollwerk/reports/` of the root (bounded history).
    #[arg(long)]
    pub save: bool,
    /// Show what newly fails and newly passes since a saved report: `last` or a JSON report
    /// file.
    #[arg(long, value_name = "last|FILE")]
    pub compare: Option<String>,
    /// Only these check ids (repeatable).
    #[arg(long = "check", value_name = "ID")]
    pub only: Vec<String>,
    /// Also load the checks of your own in this directory (`*.toml`, the catalog's format),
    /// after the target's `/etc/bollwerk/checks.d`.
    #[arg(long = "checks", value_name = "DIR")]
    pub checks_dir: Option<PathBuf>,
}

/// `bollwerk checks …`.
#[derive(Debug, Subcommand, Clone)]
pub enum ChecksCommand {
    /// List the catalog: id, CIS number, level, severity, the profile key that fixes it.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: crate::format::Format,
    },
    /// Print the catalog as a Markdown reference (docs/checks.md).
    Reference,
    /// Show one check in full.
    Show {
        /// Check id (`ssh.permit-root-login`) or CIS number (`5.1.20`).
        id: String,
    },
}

/// `bollwerk install-units` arguments.
#[derive(Debug, Args, Clone)]
pub struct InstallUnitsArgs {
    /// Directory for the Prometheus textfile (node_exporter's textfile collector).
    #[arg(
        long,
        default_value = "/var/lib/prometheus/node-exporter",
        value_name = "DIR"
    )]
    pub textfile_dir: PathBuf,
    /// Path of the bollwerk binary on the target.
    #[arg(long, default_value = "/usr/sbin/bollwerk", value_name = "PATH")]
    pub binary: PathBuf,
    /// Do not enable the timer (no `timers.target.wants` link).
    #[arg(long)]
    pub no_enable: bool,
}

fn w(out: &mut dyn Write, s: &str) -> Result<()> {
    out.write_all(s.as_bytes())
        .map_err(|e| Error::io("writing output", "stdout", e))
}

/// Loads the embedded catalog (an invalid catalog is a build defect: exit 3).
///
/// # Errors
/// When an embedded catalog file is invalid.
pub fn catalog() -> Result<Catalog> {
    Catalog::embedded().map_err(|e| Error::Runtime(format!("embedded check catalog: {e}")))
}

/// Writes `bytes` to a host path atomically (temp file in the same directory, rename).
///
/// # Errors
/// When the directory is not writable.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".bollwerk-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| Error::io("creating temp file in", &dir, e))?;
    tmp.write_all(bytes)
        .map_err(|e| Error::io("writing", tmp.path(), e))?;
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(|e| Error::io("setting mode of", tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("syncing", tmp.path(), e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("replacing", path, e.error))?;
    Ok(())
}

/// The exit status for a report: 3 when a check ended in `error` (the audit could not judge
/// everything it should have); else 1 when below `--fail-under` (also when nothing was judged,
/// so there is no score), or (default) when a check of severity high or critical fails.
pub fn exit_for(r: &Report, fail_under: Option<f64>) -> ExitStatus {
    if r.summary.counts.error > 0 {
        return ExitStatus::Failure;
    }
    let bad = match fail_under {
        Some(t) => r.summary.counts.score.is_none_or(|s| s < t),
        None => r
            .results
            .iter()
            .any(|x| x.status == Status::Fail && x.severity >= Severity::High),
    };
    if bad {
        ExitStatus::Pending
    } else {
        ExitStatus::Ok
    }
}

/// Runs `bollwerk audit`.
///
/// # Errors
/// Bad profile or arguments (exit 2), unreadable root or unwritable output (exit 3).
pub fn audit(
    root_path: &Path,
    a: &AuditArgs,
    runner: &dyn Runner,
    out: &mut dyn Write,
    color: bool,
) -> Result<ExitStatus> {
    if let Some(t) = a.fail_under
        && !(0.0..=100.0).contains(&t)
    {
        return Err(Error::Usage(format!(
            "--fail-under {t}: give a percentage between 0 and 100"
        )));
    }
    // Without --profile: the profile first boot stored, when there is one.
    let loaded = match a
        .profile
        .clone()
        .or_else(|| crate::modules::firstboot::stored_profile(root_path))
    {
        Some(p) => Some(crate::profile::load(&p)?),
        None => None,
    };
    let cat = super::custom::with_custom(
        catalog()?,
        root_path,
        a.checks_dir.as_deref(),
        loaded.as_ref(),
    )?;
    if let Some(l) = &loaded
        && let Some(ex) = l.profile.audit.as_ref().and_then(|x| x.exclude.as_ref())
    {
        for id in ex {
            if cat.get(id).is_none() {
                return Err(Error::Usage(format!(
                    "{}: audit.exclude names no check `{id}` (see `bollwerk checks list`)",
                    l.name()
                )));
            }
        }
    }
    if let Some(l) = &loaded
        && let Some(ws) = l.profile.audit.as_ref().and_then(|x| x.waivers.as_ref())
    {
        for wv in ws {
            if cat.get(wv.check.as_str()).is_none() {
                return Err(Error::Usage(format!(
                    "{}: an audit waiver names no check `{}` (see `bollwerk checks list`)",
                    l.name(),
                    wv.check.as_str()
                )));
            }
        }
    }
    let fail_under = a.fail_under.or_else(|| {
        loaded
            .as_ref()
            .and_then(|l| l.profile.audit.as_ref().and_then(|x| x.fail_under))
    });
    for id in &a.only {
        if cat.get(id).is_none() {
            return Err(Error::Usage(format!(
                "no check `{id}` (see `bollwerk checks list`)"
            )));
        }
    }
    let root = Root::new(root_path)?;
    // Read the comparison base before saving anything.
    let before = match a.compare.as_deref() {
        None => None,
        Some("last") => match report::saved_reports(&root)?.last() {
            None => {
                return Err(Error::Usage(format!(
                    "--compare last: no saved report under {} (run once with --save)",
                    report::REPORTS_DIR
                )));
            }
            Some(p) => {
                let text = root.read_string(p)?.unwrap_or_default();
                Some(report::load(&text, &p.to_string())?)
            }
        },
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| Error::Usage(format!("--compare {f}: {e}")))?;
            Some(report::load(&text, f)?)
        }
    };
    let opts = AuditOptions {
        level: a.level,
        only: (!a.only.is_empty()).then(|| a.only.clone()),
        ..Default::default()
    };
    let report = run(&cat, root.clone(), runner, loaded.as_ref(), &opts)?;
    for warning in &report.warnings {
        tracing::warn!("{warning}");
    }
    let rendered = report::render(
        &report,
        a.format,
        color && a.output.is_none() && a.format == ReportFormat::Text,
    )?;
    let comparison = before
        .as_ref()
        .map(|b| report::comparison_text(&report::compare(b, &report), color));
    match &a.output {
        Some(p) => {
            write_file_atomic(p, rendered.as_bytes())?;
            let c = &report.summary.counts;
            w(
                out,
                &format!(
                    "wrote {} ({:?}): score {}, {} fail\n",
                    p.display(),
                    a.format,
                    c.score_text(),
                    c.fail
                ),
            )?;
            if let Some(c) = &comparison {
                w(out, c)?;
            }
        }
        None => {
            w(out, &rendered)?;
            if let Some(c) = &comparison {
                if a.format == ReportFormat::Text {
                    w(out, c)?;
                } else {
                    eprint!("{c}");
                }
            }
        }
    }
    if a.save {
        let p = report::save(&root, &report)?;
        tracing::info!(path = %p, "saved report");
        if a.format == ReportFormat::Text || a.output.is_some() {
            w(out, &format!("saved {p}\n"))?;
        }
    }
    Ok(exit_for(&report, fail_under))
}

/// The audit after a successful `apply` (`audit.after_apply = true`): judges the root with
/// the profile, saves the JSON report and returns a one-line summary for stderr. Failures of the
/// audit itself are returned as text too: they never change apply's outcome.
pub fn after_apply(
    root: &Root,
    runner: &dyn Runner,
    loaded: &crate::profile::Loaded,
) -> Option<String> {
    if loaded.profile.audit.as_ref().and_then(|a| a.after_apply) != Some(true) {
        return None;
    }
    let res = (|| -> Result<String> {
        let cat = catalog()?;
        let r = run(
            &cat,
            root.clone(),
            runner,
            Some(loaded),
            &AuditOptions::default(),
        )?;
        let p = report::save(root, &r)?;
        let c = &r.summary.counts;
        Ok(format!(
            "audit: score {}, {} fail; report saved as {p}",
            c.score_text(),
            c.fail
        ))
    })();
    Some(match res {
        Ok(s) => s,
        Err(e) => format!("audit after apply failed: {e}"),
    })
}

/// Runs `bollwerk checks …`.
///
/// # Errors
/// An unknown check id (exit 2).
pub fn checks(c: &ChecksCommand, out: &mut dyn Write) -> Result<ExitStatus> {
    let cat = catalog()?;
    match c {
        ChecksCommand::List { format } => match format {
            crate::format::Format::Json => {
                let v = serde_json::json!({"schema": "bollwerk.checks/v1", "checks": cat.checks});
                w(out, &format!("{v:#}\n"))?;
            }
            crate::format::Format::Text => {
                let mut s = format!(
                    "{:<40} {:<12} {:<2} {:<8} {:<10} {}\n",
                    "ID", "CIS", "L", "SEVERITY", "SCOPE", "FIX"
                );
                for k in &cat.checks {
                    s.push_str(&format!(
                        "{:<40} {:<12} {:<2} {:<8} {:<10} {}\n",
                        k.id,
                        k.cis_ref().as_deref().unwrap_or("-"),
                        k.level,
                        k.severity,
                        if k.applies_to_containers() {
                            "vm,ct"
                        } else {
                            "vm"
                        },
                        k.fix.key.clone().unwrap_or_else(|| "(manual)".to_string())
                    ));
                }
                s.push_str(&format!("{} checks\n", cat.checks.len()));
                w(out, &s)?;
            }
        },
        ChecksCommand::Reference => w(out, &catalog_markdown(&cat))?,
        ChecksCommand::Show { id } => {
            let k = cat
                .get(id)
                .or_else(|| cat.checks.iter().find(|k| k.cis.as_deref() == Some(id)))
                .ok_or_else(|| {
                    let hint =
                        crate::profile::did_you_mean(id, cat.checks.iter().map(|k| k.id.as_str()))
                            .map(|d| format!(" (did you mean `{d}`?)"))
                            .unwrap_or_default();
                    Error::Usage(format!("no check `{id}`{hint}"))
                })?;
            let mut s = format!("{}\n  {}\n\n", k.id, k.title);
            if let Some(d) = &k.cis_docker {
                s.push_str(&format!("CIS Docker: {d} (CIS Docker Benchmark v1.6.0)\n"));
            }
            if let Some(c) = &k.cis {
                s.push_str(&format!(
                    "CIS:        {c} (CIS Ubuntu Linux 22.04 LTS Benchmark v2.0.0), level {}\n",
                    k.level
                ));
            }
            s.push_str(&format!("Severity:   {}\n", k.severity));
            s.push_str(&format!(
                "Scope:      {}\n",
                k.scope
                    .iter()
                    .map(|x| format!("{x:?}").to_lowercase())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            if let Some(r) = k.container_reason()
                && !k.applies_to_containers()
            {
                s.push_str(&format!("Container:  not applicable: {r}\n"));
            }
            s.push_str(&format!(
                "Expected:   {}\n",
                k.expected
                    .clone()
                    .unwrap_or_else(|| super::probe::expected(&k.probe))
            ));
            s.push_str(&format!("Fix:        {}\n", k.fix));
            if let Some(d) = k.disposition() {
                s.push_str(&format!(
                    "{:<11} {}\n",
                    format!("{}:", d.kind.as_str()),
                    d.reason
                ));
            }
            if let Some(n) = &k.scanners {
                s.push_str(&format!("Scanners:   {n}\n"));
            }
            if !k.iso27001.is_empty() {
                s.push_str(&format!("ISO 27001:  {}\n", k.iso27001.join(", ")));
            }
            if !k.gdpr.is_empty() {
                s.push_str(&format!("GDPR:       Art. {}\n", k.gdpr.join(", ")));
            }
            s.push_str(&format!("\nRationale: {}\n", k.rationale));
            let probe = toml::to_string(&serde_json::json!({"probe": k.probe})).unwrap_or_default();
            s.push_str(&format!("\n{probe}"));
            w(out, &s)?;
        }
    }
    Ok(ExitStatus::Ok)
}

/// The catalog as a Markdown reference, grouped by section (`docs/checks.md`).
pub fn catalog_markdown(cat: &Catalog) -> String {
    let mut s = String::from(
        "# Check catalog\n\nGenerated by `bollwerk checks reference` from `checks/*.toml` (format: \
         `checks/README.md`). CIS numbers refer to the CIS Ubuntu Linux 22.04 LTS Benchmark v2.0.0. \
         Scope `vm` = not applicable in containers.\n",
    );
    let mut sections: Vec<&str> = Vec::new();
    for c in &cat.checks {
        if !sections.contains(&c.section()) {
            sections.push(c.section());
        }
    }
    sections.sort_by_key(|s| (s.parse::<u32>().unwrap_or(u32::MAX), s.to_string()));
    let cell = |x: &str| x.replace('|', "\\|").replace('\n', " ");
    for sec in sections {
        let checks: Vec<_> = cat.checks.iter().filter(|c| c.section() == sec).collect();
        s.push_str(&format!(
            "\n## {sec} {} ({} checks)\n\n| ID | CIS | L | Severity | Scope | Title | Fix |\n|---|---|---|---|---|---|---|\n",
            super::check::section_name(sec),
            checks.len()
        ));
        for c in checks {
            s.push_str(&format!(
                "| `{}` | {} | {} | {} | {} | {} | {} |\n",
                c.id,
                c.cis_ref().as_deref().unwrap_or(""),
                c.level,
                c.severity,
                if c.applies_to_containers() {
                    "vm, container"
                } else {
                    "vm"
                },
                cell(&c.title),
                cell(
                    &c.fix
                        .key
                        .as_ref()
                        .map(|k| format!("`{k}`"))
                        .unwrap_or_else(|| "manual".into())
                )
            ));
        }
    }
    let marked: Vec<_> = cat
        .checks
        .iter()
        .filter_map(|c| c.disposition().map(|d| (c, d)))
        .collect();
    if !marked.is_empty() {
        s.push_str(&format!(
            "\n## Manual and site-specific checks ({})\n\nThese can fail on a host a profile hardened; reports show them with this reason.\n\n| ID | Kind | Reason |\n|---|---|---|\n",
            marked.len()
        ));
        for (c, d) in marked {
            s.push_str(&format!(
                "| `{}` | {} | {} |\n",
                c.id,
                d.kind.as_str(),
                cell(&d.reason)
            ));
        }
    }
    s.push_str(&format!("\n{} checks in total.\n", cat.checks.len()));
    s
}

/// The audit service unit, as shipped in `units/`.
pub const AUDIT_SERVICE: &str = include_str!("../../units/bollwerk-audit.service");
/// The audit timer unit.
pub const AUDIT_TIMER: &str = include_str!("../../units/bollwerk-audit.timer");

/// The units with the binary and textfile directory substituted.
pub fn render_units(a: &InstallUnitsArgs) -> (String, String) {
    let svc = AUDIT_SERVICE
        .replace("/usr/sbin/bollwerk", &a.binary.display().to_string())
        .replace(
            "/var/lib/prometheus/node-exporter",
            &a.textfile_dir.display().to_string(),
        );
    (svc, AUDIT_TIMER.to_string())
}

/// Runs `bollwerk install-units`: writes the units into the root's `etc/systemd/system` and
/// enables the timer with a `timers.target.wants` link (works offline; on a live system run
/// `systemctl daemon-reload` and start the timer afterwards, as printed).
///
/// # Errors
/// When the files cannot be written.
pub fn install_units(
    root_path: &Path,
    a: &InstallUnitsArgs,
    out: &mut dyn Write,
) -> Result<ExitStatus> {
    for p in [&a.textfile_dir, &a.binary] {
        if !p.is_absolute() {
            return Err(Error::Usage(format!(
                "{} must be an absolute path",
                p.display()
            )));
        }
    }
    let root = Root::new(root_path)?;
    let (svc, timer) = render_units(a);
    let dir = RelPath::lit("etc/systemd/system");
    for d in root.missing_dirs(&dir)? {
        root.create_dir(&d, Perms::root(0o755))?;
    }
    let mut s = String::new();
    for (name, text) in [
        ("bollwerk-audit.service", &svc),
        ("bollwerk-audit.timer", &timer),
    ] {
        let p = dir.join(name).map_err(Error::Runtime)?;
        if root.read_string(&p)?.as_deref() == Some(text.as_str()) {
            s.push_str(&format!("unchanged {p}\n"));
        } else {
            root.write_atomic(&p, text.as_bytes(), Perms::root(0o644))?;
            s.push_str(&format!("wrote {p}\n"));
        }
    }
    if !a.no_enable {
        let wants = RelPath::lit("etc/systemd/system/timers.target.wants");
        for d in root.missing_dirs(&wants)? {
            root.create_dir(&d, Perms::root(0o755))?;
        }
        let link = wants.join("bollwerk-audit.timer").map_err(Error::Runtime)?;
        if !root.exists(&link) {
            root.symlink_atomic(&link, "/etc/systemd/system/bollwerk-audit.timer")?;
            s.push_str(&format!("enabled {link}\n"));
        }
    }
    let tf = RelPath::new(a.textfile_dir.to_string_lossy().trim_start_matches('/'))
        .map_err(Error::Usage)?;
    for d in root.missing_dirs(&tf)? {
        root.create_dir(&d, Perms::root(0o755))?;
        s.push_str(&format!("created {d}\n"));
    }
    if root.is_host() {
        s.push_str("now run: systemctl daemon-reload && systemctl start bollwerk-audit.timer\n");
    }
    w(out, &s)?;
    Ok(ExitStatus::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_checks_md_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/checks.md");
        let want = catalog_markdown(&catalog().unwrap());
        if std::env::var_os("BOLLWERK_UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/checks.md is stale: run BOLLWERK_UPDATE_SCHEMA=1 cargo test --lib docs_checks_md"
        );
    }

    #[test]
    fn catalog_has_at_least_200_checks_and_covers_the_module_keys() {
        let cat = catalog().unwrap();
        assert!(cat.checks.len() >= 200, "{}", cat.checks.len());
        let keys: std::collections::BTreeSet<&str> = cat
            .checks
            .iter()
            .filter_map(|c| c.fix.key.as_deref())
            .collect();
        // Every setting the core modules apply has a check naming its profile key.
        for k in [
            "ssh.permit_root_login",
            "ssh.password_authentication",
            "ssh.kbd_interactive_authentication",
            "ssh.pubkey_authentication",
            "ssh.permit_empty_passwords",
            "ssh.hostbased_authentication",
            "ssh.ignore_rhosts",
            "ssh.use_pam",
            "ssh.allow_groups",
            "ssh.max_auth_tries",
            "ssh.max_sessions",
            "ssh.max_startups",
            "ssh.login_grace_time",
            "ssh.client_alive_interval",
            "ssh.client_alive_count_max",
            "ssh.x11_forwarding",
            "ssh.allow_tcp_forwarding",
            "ssh.allow_agent_forwarding",
            "ssh.permit_user_environment",
            "ssh.log_level",
            "ssh.banner",
            "ssh.crypto",
            "host.lock_root_password",
            "users[].sudo",
            "users[].ssh_keys",
            "sysctl.preset",
            "firewall.backend",
            "fail2ban.jails",
            "updates.unattended",
            "files[].mode",
        ] {
            assert!(keys.contains(k), "no check names {k}");
        }
    }
}
