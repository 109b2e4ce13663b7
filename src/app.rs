//! Command implementations: each turns parsed arguments into library calls, prints results on
//! the given writer (stdout) and logs/errors on stderr, and returns the [`ExitStatus`].

use std::io::{IsTerminal, Write};

use serde_json::json;

use crate::cli::{Cli, Color, Command, Format, ProfileCommand};
use crate::engine::apply::ApplyReport;
use crate::engine::journal::{self, Manifest};
use crate::engine::{Action, Context, Level, Options, Plan};
use crate::error::{Error, ExitStatus, Result};
use crate::exec::Runner;
use crate::profile::{self, Loaded};
use crate::root::Root;

/// Schema id of `plan --format json`.
pub const PLAN_SCHEMA: &str = "bollwerk.plan/v1";

/// The runner for `cli`: commands that change the target (`apply`, `rollback`, `confirm`,
/// `firstboot`, `install-units`, `sysctl-load`) run the root's binaries as root; every other
/// command only reads and runs them without capabilities, as `nobody` with
/// `--untrusted-root` (see [`crate::exec::Privilege`]). Only roots other than `/` are affected.
pub fn system_runner(cli: &Cli) -> crate::exec::SystemRunner {
    use crate::exec::Privilege;
    let changes = matches!(
        cli.command,
        Command::Apply { .. }
            | Command::Rollback { .. }
            | Command::Confirm { .. }
            | Command::Firstboot(_)
            | Command::InstallUnits(_)
            | Command::SysctlLoad { .. }
    );
    crate::exec::SystemRunner::with_privilege(if changes {
        Privilege::Full
    } else if cli.global.untrusted_root {
        Privilege::Nobody
    } else {
        Privilege::NoCaps
    })
}

/// Runs a command; prints errors to stderr.
pub fn run(cli: &Cli, runner: &dyn Runner, out: &mut dyn Write) -> ExitStatus {
    let color = use_color(cli.global.color);
    match dispatch(cli, runner, out, color) {
        Ok(s) => s,
        Err(e) => {
            let status = e.exit_status();
            let mut msg = format!("error: {e}");
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!("\n  caused by: {s}"));
                src = s.source();
            }
            eprintln!("{msg}");
            status
        }
    }
}

/// Like [`run`], but returns the error instead of printing it (for in-process tests that check
/// the message).
///
/// # Errors
/// Whatever the command fails with.
pub fn try_run(cli: &Cli, runner: &dyn Runner, out: &mut dyn Write) -> Result<ExitStatus> {
    dispatch(cli, runner, out, use_color(cli.global.color))
}

fn use_color(c: Color) -> bool {
    match c {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal(),
    }
}

fn w(out: &mut dyn Write, s: &str) -> Result<()> {
    out.write_all(s.as_bytes())
        .map_err(|e| Error::io("writing output", "stdout", e))
}

fn dispatch(
    cli: &Cli,
    runner: &dyn Runner,
    out: &mut dyn Write,
    color: bool,
) -> Result<ExitStatus> {
    let root_path = &cli.global.root;
    match &cli.command {
        Command::Validate(p) => {
            let l = profile::load(&crate::modules::firstboot::profile_or_stored(
                root_path,
                p.profile.as_deref(),
            )?)?;
            w(
                out,
                &format!(
                    "{}: valid ({} layer{})\n",
                    l.name(),
                    l.layers.len(),
                    if l.layers.len() == 1 { "" } else { "s" }
                ),
            )?;
            Ok(ExitStatus::Ok)
        }
        Command::Plan { profile, format } => {
            let loaded = profile::load(&crate::modules::firstboot::profile_or_stored(
                root_path,
                profile.profile.as_deref(),
            )?)?;
            let root = Root::new(root_path)?;
            let cx = Context::new(root, runner, &loaded, Options::default())?;
            let plan = crate::modules::plan_all(&cx)?;
            match format {
                Format::Json => w(out, &format!("{:#}\n", plan_json(&cx, &plan)))?,
                Format::Text => w(out, &plan_text(&cx, &plan, color))?,
            }
            Ok(if !plan.refusals.is_empty() {
                ExitStatus::Refused
            } else if plan.is_empty() {
                ExitStatus::Ok
            } else {
                ExitStatus::Pending
            })
        }
        Command::Apply {
            profile,
            format,
            force,
            confirm,
        } => apply(
            root_path,
            &crate::modules::firstboot::profile_or_stored(root_path, profile.profile.as_deref())?,
            *force,
            *confirm,
            *format,
            runner,
            out,
            color,
        ),
        Command::Rollback {
            run_id,
            force,
            format,
        } => {
            let root = Root::new(root_path)?;
            let _lock = journal::lock(&root)?;
            let id = match run_id {
                Some(id) => id.clone(),
                None => journal::default_rollback_target(&root)?,
            };
            let report = journal::rollback(&root, &id, *force)?;
            // Re-run the handlers of the modules whose files were restored, on a live system.
            let facts = crate::facts::Facts::gather(&root, runner)?;
            let mut handler_errors = Vec::new();
            for h in &report.handlers {
                let cmd = crate::exec::Cmd::in_root(
                    &h.program,
                    &h.args.iter().map(String::as_str).collect::<Vec<_>>(),
                );
                if facts.live
                    && let Err(e) = runner.run_ok(&root, &cmd)
                {
                    handler_errors.push(e.to_string());
                }
            }
            match format {
                Format::Json => w(
                    out,
                    &format!("{:#}\n", serde_json::to_value(&report).unwrap_or_default()),
                )?,
                Format::Text => {
                    let mut s = format!(
                        "rolled back run {} (journal: run {})\n",
                        report.rolled_back, report.run_id
                    );
                    for (p, what) in &report.restored {
                        s.push_str(&format!("  {p}: {what}\n"));
                    }
                    s.push_str(&format!(
                        "{} path{} restored\n",
                        report.restored.len(),
                        if report.restored.len() == 1 { "" } else { "s" }
                    ));
                    for c in &report.not_undone {
                        s.push_str(&format!(
                            "not undone: [{}] {} (`{}`; rollback restores files only)\n",
                            c.module, c.summary, c.command
                        ));
                    }
                    w(out, &s)?;
                }
            }
            if handler_errors.is_empty() {
                Ok(ExitStatus::Ok)
            } else {
                Err(Error::Runtime(format!(
                    "files restored, but reloading failed: {}",
                    handler_errors.join("; ")
                )))
            }
        }
        Command::Runs { format } => {
            let root = Root::new(root_path)?;
            let runs = journal::list_runs(&root)?;
            match format {
                Format::Json => w(
                    out,
                    &format!(
                        "{:#}\n",
                        json!({"schema": "bollwerk.runs/v1", "runs": runs})
                    ),
                )?,
                Format::Text => w(out, &runs_text(&runs))?,
            }
            Ok(ExitStatus::Ok)
        }
        Command::Profiles => {
            let mut s = String::new();
            for (name, text) in profile::BUILTIN {
                let desc = toml::from_str::<toml::Table>(text)
                    .ok()
                    .and_then(|t| {
                        t.get("description")
                            .and_then(|d| d.as_str())
                            .map(str::to_string)
                    })
                    .unwrap_or_default();
                s.push_str(&format!("{name:<20} {desc}\n"));
            }
            w(out, &s)?;
            Ok(ExitStatus::Ok)
        }
        Command::Profile(ProfileCommand::Show { name }) => match profile::builtin(name) {
            Some(t) => {
                w(out, t)?;
                Ok(ExitStatus::Ok)
            }
            None => Err(Error::Usage(format!(
                "no built-in profile `{name}` (built-ins: {})",
                profile::BUILTIN
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        },
        Command::Profile(ProfileCommand::Reference) => {
            w(out, &crate::profile::reference::markdown())?;
            Ok(ExitStatus::Ok)
        }
        Command::Schema => {
            w(out, &format!("{:#}\n", profile::schema()))?;
            Ok(ExitStatus::Ok)
        }
        Command::Facts { format } => {
            let root = Root::new(root_path)?;
            let facts = crate::facts::Facts::gather(&root, runner)?;
            let v = serde_json::to_value(&facts).unwrap_or_default();
            match format {
                Format::Json => w(out, &format!("{v:#}\n"))?,
                Format::Text => {
                    let r = &facts.resources;
                    let s = format!(
                        "os:        {} ({} {})\ncontainer: {}\nlive:      {}\npackages:  {} installed\nusers:     {}\nmemory:    {}\ncpus:      {}\n",
                        facts.os.pretty_name,
                        facts.os.id,
                        facts.os.version_id,
                        facts.container.as_deref().unwrap_or("none"),
                        facts.live,
                        facts.packages.len(),
                        facts.accounts.passwd.entries().count(),
                        r.memory()
                            .map(|m| format!("{} MiB (from {})", m >> 20, r.source))
                            .unwrap_or_else(|| "unknown (not the running system)".into()),
                        r.cpus()
                            .map(|c| c.to_string())
                            .unwrap_or_else(|| "unknown".into())
                    );
                    w(out, &s)?;
                }
            }
            Ok(ExitStatus::Ok)
        }
        // -- network (issue 3) --
        Command::Confirm { revert } => {
            let root = Root::new(root_path)?;
            let msg = if *revert {
                crate::modules::firewall::confirm::revert(&root, runner)?
            } else {
                crate::modules::firewall::confirm::confirm(&root, runner)?
            };
            w(out, &msg)?;
            Ok(ExitStatus::Ok)
        }
        Command::SysctlLoad { files } => {
            let root = Root::new(root_path)?;
            if !root.is_host() {
                return Err(Error::Usage(
                    "sysctl-load changes the running kernel and works only with --root /".into(),
                ));
            }
            let mut s = String::new();
            for f in files {
                let rel = crate::root::RelPath::new(f).map_err(Error::Usage)?;
                let text = root
                    .read_string(&rel)?
                    .ok_or_else(|| Error::Usage(format!("{rel} does not exist")))?;
                let r = crate::modules::sysctl::load_live(&text)?;
                for (k, v) in &r.set {
                    s.push_str(&format!("set {k} = {v}\n"));
                }
                for k in &r.missing {
                    s.push_str(&format!("warning: the running kernel has no {k}\n"));
                }
                for (k, e) in &r.denied {
                    s.push_str(&format!("warning: {k} cannot be set here: {e}\n"));
                }
            }
            w(out, &s)?;
            Ok(ExitStatus::Ok)
        }

        // -- audit (issue 5) --
        Command::Audit(a) => crate::audit::cmd::audit(root_path, a, runner, out, color),
        Command::Checks(c) => crate::audit::cmd::checks(c, out),
        Command::InstallUnits(a) => crate::audit::cmd::install_units(root_path, a, out),

        // -- fleet (issue 15) --
        Command::Report(crate::audit::merge::ReportCommand::Merge(a)) => {
            crate::audit::merge::cmd(a, out)
        }

        // -- firstboot (issue 6) --
        Command::Firstboot(args) => crate::firstboot::run(&cli.global.root, args, runner, out),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "bollwerk", &mut buf);
            out.write_all(&buf)
                .map_err(|e| Error::io("writing output", "stdout", e))?;
            Ok(ExitStatus::Ok)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .map_err(|e| Error::io("rendering man page", "stdout", e))?;
            out.write_all(&buf)
                .map_err(|e| Error::io("writing output", "stdout", e))?;
            Ok(ExitStatus::Ok)
        }
    }
}

/// Rolls back apply runs a killed process left `in-progress` (newest first) before a new apply
/// plans: the caller holds the lock, so nobody is still working on them. Every file of such a
/// run is old or new; the rollback makes it old again, then the new run starts from a known
/// state. A run whose rollback conflicts stops the apply (exit 2, nothing changed).
fn recover_interrupted(root: &Root, runner: &dyn Runner) -> Result<()> {
    let runs = journal::list_runs(root)?;
    let interrupted = runs.iter().rev().filter(|m| {
        m.kind == journal::RunKind::Apply
            && m.status == journal::RunStatus::InProgress
            && m.rolled_back_by.is_none()
    });
    for m in interrupted {
        let report = journal::rollback(root, &m.id, false).map_err(|e| {
            Error::Usage(format!(
                "run {} was interrupted and cannot be rolled back automatically: {e}\n  check the paths, then `bollwerk rollback {} --force`",
                m.id, m.id
            ))
        })?;
        tracing::warn!(
            "run {} was interrupted; rolled it back first ({} paths restored, journal: run {})",
            m.id,
            report.restored.len(),
            report.run_id
        );
        if crate::facts::Facts::gather(root, runner)?.live {
            for h in &report.handlers {
                let cmd = crate::exec::Cmd::in_root(
                    &h.program,
                    &h.args.iter().map(String::as_str).collect::<Vec<_>>(),
                );
                if let Err(e) = runner.run_ok(root, &cmd) {
                    tracing::warn!("after rolling back run {}: {e}", m.id);
                }
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn apply(
    root_path: &std::path::Path,
    spec: &str,
    force: bool,
    confirm: Option<std::time::Duration>,
    format: Format,
    runner: &dyn Runner,
    out: &mut dyn Write,
    color: bool,
) -> Result<ExitStatus> {
    let started = std::time::Instant::now();
    let _ = crate::exec::take_command_times();
    let loaded: Loaded = profile::load(spec)?;
    let root = Root::new(root_path)?;
    let _lock = journal::lock(&root)?;
    recover_interrupted(&root, runner)?;
    let cx = Context::new(
        root.clone(),
        runner,
        &loaded,
        Options {
            force,
            ..Options::default()
        },
    )?;
    let plan = crate::modules::plan_all(&cx)?;
    if !plan.refusals.is_empty() {
        if !force {
            if format == Format::Text {
                w(out, &plan_text(&cx, &plan, color))?;
            }
            let r = &plan.refusals[0];
            return Err(Error::Unsafe {
                reason: format!("{}\n  nothing was changed", r.reason),
                hint: r.hint.clone(),
            });
        }
        for r in &plan.refusals {
            tracing::warn!("--force: applying despite: {}", r.reason);
        }
    }
    for n in plan.notes.iter().filter(|n| n.level == Level::Warning) {
        tracing::warn!(module = n.module, "{}", n.message);
    }
    // `--confirm`: arm the revert timer before anything changes (network, issue 3).
    let mut armed = match confirm {
        Some(d) => crate::modules::firewall::confirm::arm(&cx, &plan, d)?,
        None => None,
    };
    let report = crate::engine::apply::apply(&cx, &plan);
    if let Some(a) = armed.as_mut() {
        if let Err(Error::Validation { .. }) = &report {
            // Nothing was activated: nothing to revert.
            crate::modules::firewall::confirm::confirm(&cx.root, runner)?;
        } else {
            let id = report.as_ref().ok().and_then(|r| r.run_id.clone());
            a.record(&cx.root, id)?;
        }
    }
    if armed.is_some() {
        // The window passed during the apply: roll everything back (exit 3).
        crate::modules::firewall::confirm::finish_or_revert(&cx.root, runner)?;
    }
    let report = report?;
    // Verify: re-read everything; a converged host plans nothing, and modules check live state.
    let (verify_plan, findings, follow_up) = if report.run_id.is_some() {
        let (cx2, follow_up) = crate::modules::follow_up_run(&cx, &plan, &report, force)?;
        if let (Some(a), Some((second, _))) = (armed.as_mut(), &follow_up) {
            // A pending `--confirm` reverts the follow-up run too.
            a.record_more(&cx.root, second.run_id.clone())?;
        }
        let vp = crate::modules::plan_all(&cx2)?;
        let findings = crate::modules::verify_all(&cx2)?;
        (Some(vp), findings, follow_up)
    } else {
        (None, Vec::new(), None)
    };
    let timing = crate::engine::timing::Timing::new(started, &crate::exec::take_command_times());
    tracing::info!("{}", timing.summary("apply"));
    match format {
        Format::Json => {
            let v = json!({
                "schema": "bollwerk.apply/v1",
                "timing": timing,
                "run_id": report.run_id,
                "changes": report.applied.iter().map(|(m, s)| json!({"module": m, "summary": s})).collect::<Vec<_>>(),
                "handlers": report.handlers.iter().map(|(c, r)| json!({"command": c, "ok": r.is_ok(), "error": r.as_ref().err()})).collect::<Vec<_>>(),
                "handlers_skipped": report.handlers_skipped,
                "findings": findings,
                "notes": plan.notes,
                "follow_up": follow_up.as_ref().map(|(r, p)| json!({
                    "run_id": r.run_id,
                    "changes": r.applied.iter().map(|(m, s)| json!({"module": m, "summary": s})).collect::<Vec<_>>(),
                    "handlers": r.handlers.iter().map(|(c, r)| json!({"command": c, "ok": r.is_ok(), "error": r.as_ref().err()})).collect::<Vec<_>>(),
                    "handlers_skipped": r.handlers_skipped,
                    "notes": p.notes,
                })),
            });
            w(out, &format!("{v:#}\n"))?;
        }
        Format::Text => {
            w(out, &apply_text(&report, &plan, color))?;
            if let Some((r, p)) = &follow_up {
                w(
                    out,
                    "configuring what the packages installed (second run):\n",
                )?;
                w(out, &apply_text(r, p, color))?;
            }
        }
    }
    if armed.is_some() {
        crate::modules::firewall::confirm::finish_or_revert(&cx.root, runner)?;
    }
    if let (Some(a), Format::Text) = (&armed, format) {
        w(out, &a.message())?;
    }
    if let Some(vp) = verify_plan
        && !vp.is_empty()
    {
        let left: Vec<String> = vp
            .changes
            .iter()
            .map(|c| format!("{}: {}", c.module, c.summary))
            .collect();
        return Err(Error::Runtime(format!(
            "applied (run {}), but the host did not converge; still pending:\n  {}",
            report.run_id.unwrap_or_default(),
            left.join("\n  ")
        )));
    }
    if !findings.is_empty() {
        let f: Vec<String> = findings
            .iter()
            .map(|f| format!("{}: {}", f.module, f.message))
            .collect();
        return Err(Error::Runtime(format!(
            "applied (run {}), but verification found:\n  {}",
            report.run_id.unwrap_or_default(),
            f.join("\n  ")
        )));
    }
    // audit (issue 5): the optional audit after apply (`audit.after_apply`); stderr only.
    if let Some(line) = crate::audit::cmd::after_apply(&root, runner, &loaded) {
        eprintln!("{line}");
    }
    Ok(ExitStatus::Ok)
}

fn paint(s: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn colour_diff(d: &str, color: bool) -> String {
    if !color {
        return d.to_string();
    }
    d.lines()
        .map(|l| {
            if l.starts_with("+++") || l.starts_with("---") {
                paint(l, "1", true)
            } else if l.starts_with('+') {
                paint(l, "32", true)
            } else if l.starts_with('-') {
                paint(l, "31", true)
            } else if l.starts_with("@@") {
                paint(l, "36", true)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Renders a plan for humans.
pub fn plan_text(cx: &Context, plan: &Plan, color: bool) -> String {
    let mut s = format!(
        "Plan for {} ({}), profile {}\n",
        cx.root.path().display(),
        if cx.facts.os.pretty_name.is_empty() {
            "unknown OS"
        } else {
            &cx.facts.os.pretty_name
        },
        cx.profile.name()
    );
    for c in &plan.changes {
        let mut line = format!("\n[{}] {}", c.module, c.summary);
        match &c.action {
            Action::WriteFile {
                path,
                perms,
                validator,
                ..
            } => {
                line.push_str(&format!("\n  write {path} ({perms})"));
                if let Some(v) = validator {
                    line.push_str(&format!(
                        ", checked with `{}` before activation",
                        v.describe()
                    ));
                }
            }
            Action::CreateDir { path, perms } => {
                line = format!("\n[{}] create directory {path} ({perms})", c.module)
            }
            Action::SetPerms { .. } | Action::Symlink { .. } | Action::Remove { .. } => {}
            Action::Run { cmd, validator, .. } => {
                line.push_str(&format!("\n  run: {}", cmd.display()));
                if let Some(v) = validator {
                    line.push_str(&format!(
                        "\n  checked with `{}` before activation",
                        v.describe()
                    ));
                }
            }
        }
        s.push_str(&line);
        s.push('\n');
        let d = crate::engine::diff::render(c);
        if !d.is_empty() {
            s.push_str(&colour_diff(&d, color));
        }
    }
    let changed = plan.changed_modules();
    let handlers: Vec<_> = plan
        .handlers
        .iter()
        .filter(|h| changed.contains(&h.module))
        .collect();
    if !handlers.is_empty() {
        s.push_str(&format!(
            "\nThen{}:\n",
            if cx.live() {
                ""
            } else {
                " (on a live system only; skipped for this root)"
            }
        ));
        for h in handlers {
            s.push_str(&format!("  {}\n", h.cmd.display()));
        }
    }
    if !plan.notes.is_empty() {
        s.push('\n');
    }
    for n in &plan.notes {
        let tag = match n.level {
            Level::Warning => paint("warning", "33", color),
            Level::Info => "note".to_string(),
        };
        s.push_str(&format!("{tag} [{}]: {}\n", n.module, n.message));
    }
    for r in &plan.refusals {
        s.push_str(&format!(
            "\n{}: {}\n  hint: {}\n",
            paint("REFUSED", "1;31", color),
            r.reason,
            r.hint
        ));
    }
    let n = plan.changes.len();
    s.push_str(&if n == 0 {
        "\n0 changes: the target already matches the profile.\n".to_string()
    } else {
        format!("\n{n} change{} pending.\n", if n == 1 { "" } else { "s" })
    });
    s
}

/// Renders a plan as JSON (`bollwerk.plan/v1`).
pub fn plan_json(cx: &Context, plan: &Plan) -> serde_json::Value {
    let changes: Vec<_> = plan
        .changes
        .iter()
        .map(|c| {
            let mut v = json!({
                "module": c.module,
                "kind": c.action.kind(),
                "summary": c.summary,
                "path": c.action.path().map(|p| p.to_string()),
                "diff": crate::engine::diff::render(c),
            });
            match &c.action {
                Action::WriteFile {
                    perms,
                    validator,
                    visibility,
                    ..
                } => {
                    v["mode"] = json!(format!("{:04o}", perms.mode));
                    v["uid"] = json!(perms.uid);
                    v["gid"] = json!(perms.gid);
                    v["validator"] = json!(validator.as_ref().map(|v| v.describe()));
                    v["visibility"] = json!(visibility);
                }
                Action::CreateDir { perms, .. } | Action::SetPerms { perms, .. } => {
                    v["mode"] = json!(format!("{:04o}", perms.mode));
                    v["uid"] = json!(perms.uid);
                    v["gid"] = json!(perms.gid);
                }
                Action::Symlink { target, .. } => v["target"] = json!(target),
                Action::Run { cmd, validator, .. } => {
                    v["command"] = json!(cmd.display());
                    v["validator"] = json!(validator.as_ref().map(|v| v.describe()));
                }
                Action::Remove { .. } => {}
            }
            v
        })
        .collect();
    let changed = plan.changed_modules();
    json!({
        "schema": PLAN_SCHEMA,
        "root": cx.root.path(),
        "profile": {"name": cx.profile.name(), "digest": cx.profile.digest},
        "live": cx.live(),
        "changes": changes,
        "handlers": plan.handlers.iter().filter(|h| changed.contains(&h.module)).map(|h| h.cmd.display()).collect::<Vec<_>>(),
        "notes": plan.notes,
        "refusals": plan.refusals,
    })
}

fn apply_text(report: &ApplyReport, plan: &Plan, color: bool) -> String {
    let mut s = String::new();
    for n in plan.notes.iter().filter(|n| n.level == Level::Warning) {
        s.push_str(&format!(
            "{} [{}]: {}\n",
            paint("warning", "33", color),
            n.module,
            n.message
        ));
    }
    let Some(id) = &report.run_id else {
        s.push_str("0 changes: the target already matches the profile.\n");
        return s;
    };
    for (m, summary) in &report.applied {
        s.push_str(&format!("[{m}] {summary}\n"));
    }
    for (c, r) in &report.handlers {
        match r {
            Ok(()) => s.push_str(&format!("ran: {c}\n")),
            Err(e) => s.push_str(&format!("{}: {c}: {e}\n", paint("failed", "31", color))),
        }
    }
    for c in &report.handlers_skipped {
        s.push_str(&format!("skipped (not a live system): {c}\n"));
    }
    if let Some(why) = &report.stopped {
        s.push_str(&format!(
            "stopped after {} changes: {why}; the rest is planned again\n",
            report.applied.len()
        ));
    }
    let n = report.applied.len();
    s.push_str(&format!(
        "{n} change{} applied (run {id}; undo with `bollwerk rollback {id}`).\n",
        if n == 1 { "" } else { "s" }
    ));
    s
}

fn runs_text(runs: &[Manifest]) -> String {
    if runs.is_empty() {
        return "no runs recorded\n".into();
    }
    let mut s = format!(
        "{:<22} {:<9} {:<18} {:>7}  {:<20} {}\n",
        "RUN", "KIND", "STATUS", "CHANGES", "STARTED", "PROFILE / NOTE"
    );
    for m in runs {
        let status = format!("{:?}", m.status)
            .to_lowercase()
            .replace("inprogress", "in-progress (interrupted?)")
            .replace("validationfailed", "validation-failed");
        let mut note = m
            .profile
            .as_ref()
            .map(|p| p.name.clone())
            .unwrap_or_default();
        if let Some(by) = &m.rolled_back_by {
            note.push_str(&format!(" (rolled back by {by})"));
        }
        if let Some(of) = &m.rollback_of {
            note = format!("undoes {of}");
        }
        s.push_str(&format!(
            "{:<22} {:<9} {:<18} {:>7}  {:<20} {}\n",
            m.id,
            format!("{:?}", m.kind).to_lowercase(),
            status,
            m.entries.len(),
            m.started,
            note
        ));
    }
    s
}
