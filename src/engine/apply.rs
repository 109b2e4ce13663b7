//! Executing a plan: validate every candidate with the real tool first, then back up, write
//! atomically and journal each change, then run handlers (live systems only).
//!
//! Validation happens before anything is activated: candidates are written to a scratch
//! directory inside the root (`var/lib/bollwerk/tmp/<run>/`), validators read them there, and
//! only when all pass are the real files replaced, one atomic rename each.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::journal::{self, Journal, JournalHandler, ProfileRef, RunKind, RunStatus};
use super::{Action, Context, Plan, Validator};
use crate::error::{Error, Result};
use crate::root::{Entry, Perms, RelPath};

/// What an apply did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    /// The run id (none when there was nothing to do).
    pub run_id: Option<String>,
    /// Applied changes: (module, summary).
    pub applied: Vec<(String, String)>,
    /// Handlers that ran, with their outcome.
    pub handlers: Vec<(String, std::result::Result<(), String>)>,
    /// Handlers skipped because the target is not a live system.
    pub handlers_skipped: Vec<String>,
    /// Why the run stopped before the end of the plan: a command of this run (a package
    /// install) changed a file a later change was planned against, so the rest of the plan is
    /// stale and is planned again by the follow-up run.
    pub stopped: Option<String>,
}

/// A test callback run at every fail point (see [`set_failpoint_hook`]).
#[cfg(feature = "failpoints")]
type FailpointHook = Box<dyn Fn(&str) + Send + Sync>;

#[cfg(feature = "failpoints")]
static FAILPOINT_HOOKS: std::sync::Mutex<Vec<FailpointHook>> = std::sync::Mutex::new(Vec::new());

/// Test hook: registers a callback that every fail point calls with its name, so an in-process
/// test can change the target between plan and write (e.g. swap `~/.ssh` for a symlink at
/// `apply.after-backup`). Callbacks stay registered for the process; each must act only on
/// its own test's tree. Compiled only with the `failpoints` feature.
#[cfg(feature = "failpoints")]
pub fn set_failpoint_hook(hook: impl Fn(&str) + Send + Sync + 'static) {
    if let Ok(mut hooks) = FAILPOINT_HOOKS.lock() {
        hooks.push(Box::new(hook));
    }
}

/// Test hook: abort the process at a named step (`BOLLWERK_FAILPOINT=name:N` aborts on the
/// N-th hit), after running the callbacks of [`set_failpoint_hook`]. Compiled only with the
/// `failpoints` feature.
#[cfg(feature = "failpoints")]
pub fn failpoint(name: &str) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    if let Ok(hooks) = FAILPOINT_HOOKS.lock() {
        for h in hooks.iter() {
            h(name);
        }
    }
    static HITS: AtomicUsize = AtomicUsize::new(0);
    if let Ok(spec) = std::env::var("BOLLWERK_FAILPOINT")
        && let Some((n, count)) = spec.split_once(':')
        && n == name
    {
        let hit = HITS.fetch_add(1, Ordering::SeqCst) + 1;
        if count.parse::<usize>().ok() == Some(hit) {
            eprintln!("failpoint {name}:{count} hit, aborting");
            std::process::abort();
        }
    }
}

/// No-op without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn failpoint(_name: &str) {}

/// A scratch directory inside the root for validation candidates; removed on drop. It is
/// created, filled and removed through the root's directory handles, below the root-only state
/// directory (every directory on the way is checked to be root's).
struct Scratch {
    root: crate::root::Root,
    rel: RelPath,
    host: std::path::PathBuf,
    in_root: String,
}

impl Scratch {
    fn create(cx: &Context, run: &str) -> Result<Scratch> {
        journal::ensure_state_dir(&cx.root)?;
        let tmp = RelPath::lit("var/lib/bollwerk/tmp");
        if !cx.root.entry(&tmp)?.exists() {
            cx.root.create_dir(&tmp, Perms::root(0o700))?;
        }
        let rel = tmp.join(run).map_err(Error::Runtime)?;
        cx.root.create_scratch_dir(&rel, Perms::root(0o700))?;
        Ok(Scratch {
            root: cx.root.clone(),
            host: cx.root.resolve(&rel),
            in_root: rel.absolute(),
            rel,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.root.remove_scratch(&self.rel);
    }
}

/// Applies `plan` exactly. The caller holds the lock and has checked refusals.
///
/// # Errors
/// [`Error::Validation`] when a candidate is rejected (nothing changed), any other error when
/// a step fails (the journal records what was applied).
pub fn apply(cx: &Context, plan: &Plan) -> Result<ApplyReport> {
    let mut report = ApplyReport::default();
    if plan.is_empty() {
        return Ok(report);
    }
    preflight(cx, plan)?;
    let profile = Some(ProfileRef {
        name: cx.profile.name(),
        digest: cx.profile.digest.clone(),
    });
    let mut journal = Journal::create(&cx.root, RunKind::Apply, profile)?;
    report.run_id = Some(journal.id().to_string());

    // 1. Validate all candidates before anything becomes active.
    let mut validation = match validate(cx, plan, journal.id()) {
        Ok(v) => v,
        Err(e) => {
            journal.close(RunStatus::ValidationFailed, Some(e.to_string()))?;
            return Err(e);
        }
    };

    // 2. Execute in batches (see `Batch`): the journal entries and backups of a run of file
    // changes become durable with one commit before the first of them is applied, the changes
    // themselves with one sync after the last.
    let mut commands_ran = false;
    let mut batch = Batch::default();
    for (i, change) in plan.changes.iter().enumerate() {
        // `apply --confirm`: nothing more is activated once the window has passed.
        if let Err(e) = crate::engine::deadline::check() {
            stop(cx, &mut journal, &mut batch, e.to_string())?;
            return Err(e);
        }
        if let Some(v) = change.action.validator()
            && let Some(i) = validation
                .deferred
                .iter()
                .position(|(d, _)| Arc::ptr_eq(d, v))
        {
            let (v, staged) = validation.deferred.remove(i);
            if let Err(e) = run_validator(cx, &v, &staged) {
                stop(cx, &mut journal, &mut batch, e.to_string())?;
                return Err(Error::Runtime(format!(
                    "{e}\n  the candidate was not activated; earlier changes of run {} stay applied (bollwerk rollback {})",
                    journal.id(),
                    journal.id()
                )));
            }
        }
        let step = if let Action::Run { cmd, watch, .. } = &change.action {
            run_command(cx, &mut journal, change.module, &change.summary, cmd, watch)
        } else if i < batch.end {
            apply_change(cx, &mut journal, &mut batch, i, change)
        } else {
            match Batch::prepare(cx, &mut journal, &plan.changes, i, commands_ran) {
                Ok(Prepared::Batch(b)) => {
                    batch = b;
                    apply_change(cx, &mut journal, &mut batch, i, change)
                }
                Ok(Prepared::Stale(why)) => {
                    tracing::info!("{why}; the rest of the plan is planned again");
                    report.stopped = Some(why);
                    break;
                }
                Err(e) => Err(e),
            }
        };
        let step = step.and_then(|()| {
            if i + 1 == batch.end {
                batch.flush(cx, &mut journal)
            } else {
                Ok(())
            }
        });
        if let Err(e) = step {
            let msg = format!("{}: {e}", change.summary);
            stop(cx, &mut journal, &mut batch, msg.clone())?;
            return Err(Error::Runtime(format!(
                "{msg}\n  what was applied is recorded in run {} (bollwerk rollback {})",
                journal.id(),
                journal.id()
            )));
        }
        commands_ran |= matches!(change.action, Action::Run { .. });
        report
            .applied
            .push((change.module.to_string(), change.summary.clone()));
    }

    // 3. Handlers, only on a live system and only for modules whose changes were applied.
    let changed: Vec<&str> = report.applied.iter().map(|(m, _)| m.as_str()).collect();
    for h in plan.handlers.iter().filter(|h| changed.contains(&h.module)) {
        journal.manifest.handlers.push(JournalHandler {
            module: h.module.to_string(),
            program: h.cmd.program.clone(),
            args: h.cmd.args.clone(),
        });
        if let Err(e) = crate::engine::deadline::check() {
            journal.close(RunStatus::Failed, Some(e.to_string()))?;
            return Err(e);
        }
        if cx.live() {
            let res = cx
                .runner
                .run_ok(&cx.root, &h.cmd)
                .map(|_| ())
                .map_err(|e| e.to_string());
            report.handlers.push((h.cmd.display(), res));
        } else {
            report.handlers_skipped.push(h.cmd.display());
        }
    }
    let failed: Vec<String> = report
        .handlers
        .iter()
        .filter_map(|(c, r)| r.as_ref().err().map(|e| format!("{c}: {e}")))
        .collect();
    if failed.is_empty() {
        journal.close(RunStatus::Applied, None)?;
    } else {
        let msg = failed.join("; ");
        journal.close(RunStatus::Failed, Some(msg.clone()))?;
        return Err(Error::Runtime(format!(
            "changes applied (run {}), but a service action failed: {msg}",
            journal.id()
        )));
    }
    Ok(report)
}

/// Checks every path the plan changes for unsafe transitions before anything is changed, so a
/// path another user controls is refused with nothing written (exit 2). The same check runs
/// again on the held directory at each write, which closes the gap to a swap in between.
fn preflight(cx: &Context, plan: &Plan) -> Result<()> {
    for c in &plan.changes {
        let (path, uid, in_place) = match &c.action {
            Action::WriteFile { path, perms, .. } => (path, Some(perms.uid), false),
            Action::CreateDir { path, perms } | Action::SetPerms { path, perms } => {
                (path, Some(perms.uid), true)
            }
            Action::Symlink { path, .. } => (path, Some(0), false),
            Action::Remove { path } => (path, None, false),
            Action::Run { .. } => continue,
        };
        cx.root
            .check_change(path, uid, in_place)
            .map_err(|e| match e {
                Error::Unsafe { reason, hint } => Error::Unsafe {
                    reason: format!("{} ({}): {reason}", c.module, c.summary),
                    hint,
                },
                e => e,
            })?;
    }
    Ok(())
}

/// Candidates staged in a scratch directory, and the validators that still have to run.
struct Validation {
    _scratch: Option<Scratch>,
    /// Validators deferred until after a package step, each with its own staged view.
    deferred: Vec<(Arc<dyn Validator>, super::Staged)>,
}

/// Stages every candidate and runs every validator before anything is activated. A validator
/// whose tool is not installed yet, in a plan that runs commands (package installs) before the
/// files it covers, is deferred until just before the first of those files is activated.
///
/// Validators only read the candidates and write below their own scratch directory, so they
/// run side by side (see [`run_all`]); the first failure in plan order is reported, exactly
/// as when they ran one after another.
fn validate(cx: &Context, plan: &Plan, run: &str) -> Result<Validation> {
    let mut validators: Vec<Arc<dyn Validator>> = Vec::new();
    for c in &plan.changes {
        if let Some(v) = c.action.validator()
            && !validators.iter().any(|o| Arc::ptr_eq(o, v))
        {
            validators.push(v.clone());
        }
    }
    if validators.is_empty() {
        return Ok(Validation {
            _scratch: None,
            deferred: Vec::new(),
        });
    }
    let scratch = Scratch::create(cx, run)?;
    let mut files = BTreeMap::new();
    for (i, c) in plan.changes.iter().enumerate() {
        if let Action::WriteFile {
            path,
            content,
            perms,
            ..
        } = &c.action
        {
            let name = format!("{:03}-{}", i, path.file_name());
            let rel = scratch.rel.join(&name).map_err(Error::Runtime)?;
            // Throw-away copies: no fsync (the scratch directory is removed after the run).
            cx.root
                .write_unsynced(&rel, content, Perms::root(perms.mode & 0o777))?;
            files.insert(path.clone(), format!("{}/{name}", scratch.in_root));
        }
    }
    let mut staged = Vec::with_capacity(validators.len());
    for i in 0..validators.len() {
        let name = format!("v{i:02}");
        cx.root.create_scratch_dir(
            &scratch.rel.join(&name).map_err(Error::Runtime)?,
            Perms::root(0o700),
        )?;
        staged.push(super::Staged {
            files: files.clone(),
            dir_in_root: format!("{}/{name}", scratch.in_root),
            dir_host: scratch.host.join(&name),
            candidates_dir: (scratch.in_root.clone(), scratch.host.clone()),
        });
    }
    let results = run_all(cx, &validators, &staged);
    let mut deferred = Vec::new();
    for ((v, staged), result) in validators.into_iter().zip(staged).zip(results) {
        match result {
            Err(Error::Exec(crate::exec::ExecError::NotFound { .. }))
                if commands_before(plan, &v) =>
            {
                tracing::info!(validator = %v.describe(), "tool not installed yet; validating after the package step");
                deferred.push((v, staged));
            }
            other => other?,
        }
    }
    Ok(Validation {
        _scratch: Some(scratch),
        deferred,
    })
}

/// How many validators run at the same time: they mostly wait for the tools they start.
fn validation_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
}

/// Runs `validators[i]` with `staged[i]` for every `i`, side by side on a few threads, and
/// returns the results in the validators' order (never in the order they finished).
fn run_all(
    cx: &Context,
    validators: &[Arc<dyn Validator>],
    staged: &[super::Staged],
) -> Vec<Result<()>> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    // Slow validators first (see `Validator::slow`), each group in plan order.
    let mut order: Vec<usize> = (0..validators.len()).collect();
    order.sort_by_key(|&i| !validators[i].slow());
    let slots: Vec<Mutex<Option<Result<()>>>> =
        validators.iter().map(|_| Mutex::new(None)).collect();
    let work = || {
        while let Some(&i) = order.get(next.fetch_add(1, Ordering::SeqCst)) {
            let (Some(v), Some(st), Some(slot)) = (validators.get(i), staged.get(i), slots.get(i))
            else {
                break;
            };
            let r = run_validator(cx, v, st);
            if let Ok(mut s) = slot.lock() {
                *s = Some(r);
            }
        }
    };
    let threads = validation_threads().min(validators.len());
    std::thread::scope(|s| {
        for _ in 1..threads {
            s.spawn(work);
        }
        work();
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Err(Error::Runtime("a validator thread panicked".into())))
        })
        .collect()
}

/// True when the plan runs a command before the first file `v` validates.
fn commands_before(plan: &Plan, v: &Arc<dyn Validator>) -> bool {
    for c in &plan.changes {
        if c.action.validator().is_some_and(|o| Arc::ptr_eq(o, v)) {
            return false;
        }
        if let Action::Run { .. } = &c.action {
            return true;
        }
    }
    false
}

fn run_validator(cx: &Context, v: &Arc<dyn Validator>, staged: &super::Staged) -> Result<()> {
    tracing::info!(validator = %v.describe(), "validating candidates");
    match v.validate(cx, staged) {
        Ok(()) => Ok(()),
        Err(Error::Validation {
            path,
            validator,
            mut output,
        }) => {
            // Name the real targets, not the scratch copies, in the tool's message.
            for (target, cand) in &staged.files {
                output = output.replace(cand.as_str(), &format!("{target} (candidate)"));
            }
            Err(Error::Validation {
                path,
                validator,
                output,
            })
        }
        Err(e) => Err(e),
    }
}

/// A batch of consecutive file changes (no command between them, no path twice), journaled
/// with one group commit: [`Batch::prepare`] checks every change against the state it was
/// planned on, stages a pending entry and backup for each and commits them (durable) before
/// the first change is applied; [`apply_change`] then writes without syncing, and
/// [`Batch::flush`] syncs every changed path and commits the entries as done. A crash at any
/// point leaves each path of the batch old, new, or (before the sync) torn, with a durable
/// pending entry and backup that rollback restores it from.
#[derive(Debug, Default)]
struct Batch {
    /// The plan's changes `[start, end)` form the batch.
    start: usize,
    end: usize,
    /// The journal entry of each change (`None`: nothing to do).
    seqs: Vec<Option<usize>>,
    /// The first entry whose change has not started (everything after it is untouched).
    unstarted: Option<usize>,
    /// Paths changed and not synced yet.
    touched: Vec<RelPath>,
}

/// What [`Batch::prepare`] found.
enum Prepared {
    /// A batch, journaled and durable.
    Batch(Batch),
    /// The first change's path was changed by an earlier command of this run (a package
    /// install): the rest of the plan is stale.
    Stale(String),
}

impl Batch {
    /// Journals the batch that starts with change `start`: it ends before the next command,
    /// the second change of one path, or a change whose path drifted from the plan (which then
    /// starts the next batch and gets its verdict there, after this batch was applied).
    fn prepare(
        cx: &Context,
        journal: &mut Journal,
        changes: &[super::Change],
        start: usize,
        commands_ran: bool,
    ) -> Result<Prepared> {
        let first = journal.manifest.entries.len() + 1;
        let prepared = Batch::stage_all(cx, journal, changes, start, commands_ran)
            .and_then(|p| journal.commit().map(|()| p));
        if !matches!(prepared, Ok(Prepared::Batch(_))) {
            // Nothing of it is applied: no entry may stay behind.
            journal.discard_from(first);
        }
        prepared
    }

    /// Checks and stages the batch for [`Batch::prepare`], without committing.
    fn stage_all(
        cx: &Context,
        journal: &mut Journal,
        changes: &[super::Change],
        start: usize,
        commands_ran: bool,
    ) -> Result<Prepared> {
        let mut batch = Batch {
            start,
            end: start,
            ..Batch::default()
        };
        let mut paths = std::collections::BTreeSet::new();
        for change in &changes[start..] {
            if matches!(change.action, Action::Run { .. }) {
                break;
            }
            let Some(path) = change.action.path() else {
                batch.seqs.push(None);
                batch.end += 1;
                continue;
            };
            if !paths.insert(path) {
                break;
            }
            let seq = match check_drift(cx, change, path, commands_ran) {
                Ok(Drift::Same(now)) => Some(journal.stage(
                    change.module,
                    &change.summary,
                    path,
                    now,
                    None,
                    change.secret,
                )?),
                Ok(Drift::CreatedByCommand) => None,
                Ok(Drift::Stale(why)) if batch.end == start => return Ok(Prepared::Stale(why)),
                Err(e) if batch.end == start => return Err(e),
                Ok(Drift::Stale(_)) | Err(_) => break,
            };
            batch.unstarted = batch.unstarted.or(seq);
            batch.seqs.push(seq);
            batch.end += 1;
        }
        Ok(Prepared::Batch(batch))
    }

    /// Makes the batch's changes durable, then the journal entries that say they are done.
    fn flush(&mut self, cx: &Context, journal: &mut Journal) -> Result<()> {
        cx.root.sync_paths(&self.touched)?;
        self.touched.clear();
        journal.commit()
    }
}

/// Ends a run that failed at a change: what the batch applied is made durable, the entries
/// of changes never started are dropped, and the run is closed as failed with `msg`.
fn stop(cx: &Context, journal: &mut Journal, batch: &mut Batch, msg: String) -> Result<()> {
    let synced = cx.root.sync_paths(&batch.touched);
    batch.touched.clear();
    if let Some(seq) = batch.unstarted.take() {
        journal.discard_from(seq);
    }
    journal.close(RunStatus::Failed, Some(msg))?;
    synced
}

/// A change's path compared with the state it was planned on.
enum Drift {
    /// As planned; the current entry.
    Same(Entry),
    /// A directory to create that an earlier command of this run (a package install) created:
    /// it belongs to that package now, so it is kept as the package made it and not journaled.
    CreatedByCommand,
    /// Changed by an earlier command of this run: the rest of the plan is stale.
    Stale(String),
}

/// Drift between plan and apply means the plan is stale: refuse to act on it.
fn check_drift(
    cx: &Context,
    change: &super::Change,
    path: &RelPath,
    commands_ran: bool,
) -> Result<Drift> {
    let now = cx.root.entry(path)?;
    if commands_ran
        && matches!(change.action, Action::CreateDir { .. })
        && matches!(change.before, Entry::Absent)
        && matches!(now, Entry::Dir { .. })
    {
        tracing::info!(path = %path, "directory created by an earlier command of this run; kept as it is");
        return Ok(Drift::CreatedByCommand);
    }
    if now == change.before {
        return Ok(Drift::Same(now));
    }
    if commands_ran {
        // E.g. a package's postinst added a system group to etc/group: the users module's
        // planned etc/group predates it. Stop here; the follow-up run plans again.
        return Ok(Drift::Stale(format!(
            "{path} was changed by an earlier command of this run (a package install)"
        )));
    }
    Err(Error::Runtime(format!(
        "{path} changed since the plan was computed; re-run"
    )))
}

/// Applies change `i` of the plan, which [`Batch::prepare`] journaled, without syncing it.
fn apply_change(
    cx: &Context,
    journal: &mut Journal,
    batch: &mut Batch,
    i: usize,
    change: &super::Change,
) -> Result<()> {
    let (Some(Some(seq)), Some(path)) = (
        batch.seqs.get(i - batch.start).copied(),
        change.action.path(),
    ) else {
        return Ok(());
    };
    batch.unstarted = batch.seqs[i - batch.start + 1..]
        .iter()
        .flatten()
        .next()
        .copied();
    let root = &cx.root;
    failpoint("apply.after-backup");
    match &change.action {
        Action::WriteFile { content, perms, .. } => root.write_unsynced(path, content, *perms)?,
        Action::CreateDir { perms, .. } => root.create_dir(path, *perms)?,
        Action::SetPerms { perms, .. } => root.set_perms(path, *perms)?,
        Action::Symlink { target, .. } => root.symlink_atomic(path, target)?,
        Action::Remove { .. } => root.remove(path)?,
        Action::Run { .. } => {}
    }
    batch.touched.push(path.clone());
    failpoint("apply.after-change");
    journal.record_after(seq)
}

/// Runs a command, journaling the effect on its watched paths.
fn run_command(
    cx: &Context,
    journal: &mut Journal,
    module: &str,
    summary: &str,
    cmd: &crate::exec::Cmd,
    watch: &[RelPath],
) -> Result<()> {
    let root = &cx.root;
    let command = cmd.display();
    let mut before_paths = Vec::new();
    for w in watch {
        walk(root, w, &mut before_paths)?;
    }
    // One group commit for the entries of every watched path.
    let first = journal.manifest.entries.len();
    for p in &before_paths {
        let before = root.entry(p)?;
        journal.stage(module, summary, p, before, Some(command.clone()), false)?;
    }
    journal.commit()?;
    failpoint("apply.before-command");
    let result = cx.runner.run_ok(root, cmd);
    journal
        .manifest
        .commands
        .push(super::journal::JournalCommand {
            module: module.to_string(),
            summary: summary.to_string(),
            command: command.clone(),
            ok: result.is_ok(),
        });
    for seq in first + 1..=journal.manifest.entries.len() {
        journal.record_after(seq)?;
    }
    // Paths the command created.
    let mut after_paths = Vec::new();
    for w in watch {
        walk(root, w, &mut after_paths)?;
    }
    for p in after_paths.iter().filter(|p| !before_paths.contains(p)) {
        let seq = journal.stage(
            module,
            summary,
            p,
            Entry::Absent,
            Some(command.clone()),
            false,
        )?;
        journal.record_after(seq)?;
    }
    // What the command changed is made durable before the journal says it is done.
    let changed: Vec<RelPath> = journal.manifest.entries[first..]
        .iter()
        .filter(|e| e.after.as_ref() != Some(&e.before))
        .map(|e| e.path.clone())
        .collect();
    root.sync_paths(&changed)?;
    journal.prune_unchanged();
    journal.commit()?;
    result.map(|_| ()).map_err(Error::from)
}

/// Lists `path` and, for directories, everything below it (directories first).
fn walk(root: &crate::root::Root, path: &RelPath, out: &mut Vec<RelPath>) -> Result<()> {
    let e = root.entry(path)?;
    if !e.exists() {
        out.push(path.clone());
        return Ok(());
    }
    out.push(path.clone());
    if let Entry::Dir { .. } = e {
        for name in root.list_dir(path)? {
            walk(root, &path.join(&name).map_err(Error::Runtime)?, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::engine::{Planner, Staged, Visibility};

    /// A validator that waits until `met` validators have started (or 10 s passed), writes a
    /// file with a fixed name into its own scratch directory, reads it and its candidate back,
    /// then sleeps `delay` and fails when `fail` is set.
    #[derive(Debug)]
    struct Probe {
        name: &'static str,
        delay: Duration,
        fail: bool,
        started: Arc<AtomicUsize>,
        met: usize,
    }

    impl Validator for Probe {
        fn describe(&self) -> String {
            self.name.to_string()
        }

        fn validate(&self, _cx: &Context, staged: &Staged) -> Result<()> {
            self.started.fetch_add(1, Ordering::SeqCst);
            let t = Instant::now();
            while self.started.load(Ordering::SeqCst) < self.met {
                if t.elapsed() > Duration::from_secs(10) {
                    return Err(Error::Runtime(format!("{}: ran alone", self.name)));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let own = staged.dir_host.join("work");
            std::fs::write(&own, self.name).unwrap();
            std::thread::sleep(self.delay);
            assert_eq!(std::fs::read_to_string(&own).unwrap(), self.name);
            let cand = &staged.files[&RelPath::new(&format!("etc/{}", self.name)).unwrap()];
            let text = std::fs::read_to_string(staged.host_path(cand)).unwrap();
            assert_eq!(text, format!("{} candidate\n", self.name));
            if self.fail {
                return Err(Error::Validation {
                    path: format!("etc/{}", self.name),
                    validator: self.describe(),
                    output: format!("{} rejects {cand}", self.name),
                });
            }
            Ok(())
        }
    }

    fn run(probes: Vec<Probe>) -> (tempfile::TempDir, Result<ApplyReport>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        let root = crate::root::Root::new(dir.path()).unwrap();
        let runner = crate::exec::FakeRunner::new();
        let loaded = crate::profile::Loaded {
            profile: Default::default(),
            layers: Vec::new(),
            digest: String::new(),
        };
        let cx = Context::new(root.clone(), &runner, &loaded, Default::default()).unwrap();
        let mut plan = Plan::default();
        let mut p = Planner::new("test", &mut plan);
        for probe in probes {
            let path = RelPath::new(&format!("etc/{}", probe.name)).unwrap();
            let content = format!("{} candidate\n", probe.name).into_bytes();
            p.file_with(
                &root,
                &path,
                content,
                Perms::root(0o644),
                format!("write {path}"),
                Visibility::Plain,
                Some(Arc::new(probe)),
            )
            .unwrap();
        }
        let report = apply(&cx, &plan);
        (dir, report)
    }

    #[test]
    fn validators_run_side_by_side_and_the_first_failure_in_plan_order_wins() {
        let started = Arc::new(AtomicUsize::new(0));
        let probe = |name, delay, fail| Probe {
            name,
            delay: Duration::from_millis(delay),
            fail,
            started: started.clone(),
            met: 2,
        };
        // The first validator finishes last; its error is still the one reported.
        let (dir, report) = run(vec![probe("first", 300, true), probe("second", 0, true)]);
        match report {
            Err(Error::Validation {
                validator, output, ..
            }) => {
                assert_eq!(validator, "first");
                // The scratch copy is named by its target in the message.
                assert_eq!(output, "first rejects /etc/first (candidate)");
            }
            other => panic!("expected the first validator's error, got {other:?}"),
        }
        // Nothing was activated, and the scratch directory is gone.
        assert!(!dir.path().join("etc/first").exists());
        assert!(!dir.path().join("etc/second").exists());
        let tmp = dir.path().join("var/lib/bollwerk/tmp");
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn a_late_failure_blocks_activation_of_every_candidate() {
        let started = Arc::new(AtomicUsize::new(0));
        let probe = |name, fail| Probe {
            name,
            delay: Duration::ZERO,
            fail,
            started: started.clone(),
            met: 1,
        };
        let (dir, report) = run(vec![
            probe("a", false),
            probe("b", false),
            probe("c", true),
            probe("d", false),
            probe("e", false),
        ]);
        assert!(
            matches!(&report, Err(Error::Validation { validator, .. }) if validator == "c"),
            "{report:?}"
        );
        for n in ["a", "b", "c", "d", "e"] {
            assert!(
                !dir.path().join("etc").join(n).exists(),
                "{n} was activated"
            );
        }
        // All pass: everything is written.
        let (dir, report) = run(vec![probe("a", false), probe("b", false)]);
        assert_eq!(report.unwrap().applied.len(), 2);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/b")).unwrap(),
            "b candidate\n"
        );
    }
}
