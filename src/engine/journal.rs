//! The run journal under `var/lib/bollwerk/runs/<run-id>/`: a manifest (`manifest.json`) with
//! sha256/mode/owner before and after of every path a run touched, content-addressed backups
//! (`backup/<sha256>`), the lock file, and rollback.
//!
//! Before a path changes, its backup and a pending entry are durable; after a crash the
//! manifest says which changes may have been in flight, and rollback restores byte-identical
//! content, mode and owner, and removes what the run created. `apply` group-commits: it stages
//! the entries of a batch of changes ([`Journal::stage`]), makes them durable with one commit
//! ([`Journal::commit`]: the new backups, their directory and the manifest), applies the
//! batch, syncs what it changed and commits again with the entries done.

use std::fs::File;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::root::{Entry, Perms, RelPath, Root};

/// bollwerk's state directory in the target.
pub const STATE_DIR: &str = "var/lib/bollwerk";
/// The runs directory.
pub const RUNS_DIR: &str = "var/lib/bollwerk/runs";
const LOCK_FILE: &str = "var/lib/bollwerk/lock";
/// Manifest schema identifier.
pub const SCHEMA: &str = "bollwerk.run/v1";

/// What kind of run this was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// `bollwerk apply`.
    Apply,
    /// `bollwerk rollback`.
    Rollback,
}

/// Where a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Still running, or the process died (crash).
    InProgress,
    /// Every change was applied.
    Applied,
    /// A candidate failed validation; nothing was changed.
    ValidationFailed,
    /// Failed part-way; the entries say what was applied.
    Failed,
}

/// State of one journal entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    /// Backed up, change about to happen (or interrupted).
    Pending,
    /// Change done; `after` recorded.
    Done,
}

/// One path a run changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Order within the run.
    pub seq: usize,
    /// Module that planned the change.
    pub module: String,
    /// Human summary.
    pub summary: String,
    /// Path.
    pub path: RelPath,
    /// What was there before.
    pub before: Entry,
    /// What is there after (when done).
    pub after: Option<Entry>,
    /// Pending or done.
    pub state: EntryState,
    /// The command that caused it, for effects of commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The path holds a secret: `before`/`after` carry permissions only (no content hash),
    /// no backup exists, and rollback restores the permissions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

/// An entry as recorded for a secret path: kind and permissions, never a content hash.
fn secret_entry(e: Entry) -> Entry {
    match e {
        Entry::File { perms, .. } => Entry::File {
            sha256: "secret".into(),
            size: 0,
            perms,
        },
        other => other,
    }
}

/// A handler recorded in the journal so rollback can re-run it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JournalHandler {
    /// Module.
    pub module: String,
    /// Program.
    pub program: String,
    /// Arguments.
    pub args: Vec<String>,
}

/// A command a run executed. Rollback restores the command's watched paths, nothing else: what
/// the command did beyond them (packages installed or removed) stays, and rollback says so.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JournalCommand {
    /// Module.
    pub module: String,
    /// Human summary.
    pub summary: String,
    /// The command line.
    pub command: String,
    /// True when it exited 0.
    pub ok: bool,
}

/// The manifest of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// `bollwerk.run/v1`.
    pub schema: String,
    /// Run id (sortable by time).
    pub id: String,
    /// Apply or rollback.
    pub kind: RunKind,
    /// Start time, RFC 3339.
    pub started: String,
    /// End time, RFC 3339.
    #[serde(default)]
    pub finished: Option<String>,
    /// Status.
    pub status: RunStatus,
    /// bollwerk version.
    pub tool_version: String,
    /// Profile name and digest.
    #[serde(default)]
    pub profile: Option<ProfileRef>,
    /// The run this one rolled back.
    #[serde(default)]
    pub rollback_of: Option<String>,
    /// The rollback run that undid this one.
    #[serde(default)]
    pub rolled_back_by: Option<String>,
    /// Error message for failed runs.
    #[serde(default)]
    pub error: Option<String>,
    /// Handlers that ran (or would run on a live system) after the changes.
    #[serde(default)]
    pub handlers: Vec<JournalHandler>,
    /// Changed paths.
    pub entries: Vec<JournalEntry>,
    /// Commands the run executed (effects outside their watched paths are not undone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<JournalCommand>,
}

/// The profile a run applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileRef {
    /// Name or path.
    pub name: String,
    /// sha256 of the merged profile.
    pub digest: String,
}

/// Current time as RFC 3339 (seconds).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A run id that sorts by time: `YYYYMMDDTHHMMSSZ-` plus the microseconds within that second
/// (so runs started in the same second still sort in order).
fn new_run_id() -> String {
    let now = SystemTime::now();
    let ts: String = humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let micros = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_micros())
        .unwrap_or(0);
    format!("{ts}-{micros:06}")
}

/// Holds the exclusive lock on a root's state directory.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Creates the state directory (root-only) if needed.
///
/// # Errors
/// On I/O errors.
pub fn ensure_state_dir(root: &Root) -> Result<()> {
    for d in ["var", "var/lib"] {
        let rel = RelPath::lit(d);
        if !root.entry(&rel)?.exists() {
            root.create_dir(&rel, Perms::root(0o755))?;
        }
    }
    for d in [STATE_DIR, RUNS_DIR] {
        let rel = RelPath::lit(d);
        if !root.entry(&rel)?.exists() {
            root.create_dir(&rel, Perms::root(0o700))?;
        }
    }
    Ok(())
}

/// Takes the run lock of a root (non-blocking `flock` on `var/lib/bollwerk/lock`; the file's
/// content is never written, so a run with nothing to do touches nothing).
///
/// # Errors
/// [`Error::Locked`] when another run holds it.
pub fn lock(root: &Root) -> Result<Lock> {
    ensure_state_dir(root)?;
    let path = root.path().join(LOCK_FILE);
    // On the root's directory handles: a link planted at the lock's path is never followed.
    let file = root.open_private(&RelPath::lit(LOCK_FILE))?;
    // A lock can look held for a moment without another run: a process forked by a thread of
    // ours (or of the caller) shares the lock's open file description until its exec. Retry for
    // a short grace period before reporting another run.
    let start = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Lock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_GRACE => {
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path,
                    holder: "another bollwerk apply or rollback is running on this root".into(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("locking", &path, e)),
        }
    }
}

/// Largest file the journal backs up and restores (the default read limit is for parsed
/// configuration; a journaled file may be bigger, e.g. a payload of `[[files]]`).
const BACKUP_LIMIT: u64 = 1 << 30;

/// How long [`lock`] waits for a lock that looks held before giving up.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// An open run journal being written.
#[derive(Debug)]
pub struct Journal {
    root: Root,
    dir: RelPath,
    /// Backups written since the last [`Journal::commit`], not durable yet.
    unsynced: Vec<RelPath>,
    /// The manifest as written so far.
    pub manifest: Manifest,
}

impl Journal {
    /// Creates a new run directory and its initial manifest.
    ///
    /// # Errors
    /// On I/O errors.
    pub fn create(root: &Root, kind: RunKind, profile: Option<ProfileRef>) -> Result<Journal> {
        ensure_state_dir(root)?;
        let mut id = new_run_id();
        while root
            .entry(&RelPath::lit(RUNS_DIR).join(&id).map_err(Error::Runtime)?)?
            .exists()
        {
            id = new_run_id();
        }
        let dir = RelPath::lit(RUNS_DIR).join(&id).map_err(Error::Runtime)?;
        root.create_dir(&dir, Perms::root(0o700))?;
        root.create_dir(
            &dir.join("backup").map_err(Error::Runtime)?,
            Perms::root(0o700),
        )?;
        let manifest = Manifest {
            schema: SCHEMA.into(),
            id,
            kind,
            started: now_rfc3339(),
            finished: None,
            status: RunStatus::InProgress,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            profile,
            rollback_of: None,
            rolled_back_by: None,
            error: None,
            handlers: Vec::new(),
            entries: Vec::new(),
            commands: Vec::new(),
        };
        let j = Journal {
            root: root.clone(),
            dir,
            unsynced: Vec::new(),
            manifest,
        };
        j.save()?;
        Ok(j)
    }

    /// The run id.
    pub fn id(&self) -> &str {
        &self.manifest.id
    }

    /// Writes the manifest atomically.
    ///
    /// # Errors
    /// On I/O errors.
    pub fn save(&self) -> Result<()> {
        save_manifest(&self.root, &self.manifest)
    }

    /// Backs up the current content of `path` (if a file) and records a pending entry, both
    /// durable when this returns.
    ///
    /// # Errors
    /// On I/O errors.
    pub fn begin(
        &mut self,
        module: &str,
        summary: &str,
        path: &RelPath,
        command: Option<String>,
    ) -> Result<usize> {
        let before = self.root.entry(path)?;
        let seq = self.stage(module, summary, path, before, command, false)?;
        self.commit()?;
        Ok(seq)
    }

    /// Records a pending permission change of a secret path: no backup, no content hash.
    ///
    /// # Errors
    /// On I/O errors.
    pub fn begin_secret(&mut self, module: &str, summary: &str, path: &RelPath) -> Result<usize> {
        let before = self.root.entry(path)?;
        let seq = self.stage(module, summary, path, before, None, true)?;
        self.commit()?;
        Ok(seq)
    }

    /// Records a pending entry for `path`, whose state the caller just read as `before`, and
    /// writes its backup (none for a secret path: `before` then keeps the permissions only),
    /// neither of them durable yet: [`Journal::commit`] makes every staged entry durable at
    /// once (group commit) and must return before `path` is changed.
    ///
    /// # Errors
    /// On I/O errors.
    pub fn stage(
        &mut self,
        module: &str,
        summary: &str,
        path: &RelPath,
        before: Entry,
        command: Option<String>,
        secret: bool,
    ) -> Result<usize> {
        let before = if secret {
            secret_entry(before)
        } else {
            self.backup(path, &before)?;
            before
        };
        let seq = self.manifest.entries.len() + 1;
        self.manifest.entries.push(JournalEntry {
            seq,
            module: module.to_string(),
            summary: summary.to_string(),
            path: path.clone(),
            before,
            after: None,
            state: EntryState::Pending,
            command,
            secret,
        });
        Ok(seq)
    }

    /// Makes the staged entries, their backups and every recorded `after` durable: one `fsync`
    /// per backup written since the last commit, of the backup directory, and of the manifest.
    ///
    /// # Errors
    /// On I/O errors.
    pub fn commit(&mut self) -> Result<()> {
        if !self.unsynced.is_empty() {
            self.root.sync_paths(&self.unsynced)?;
            self.unsynced.clear();
        }
        self.save()
    }

    /// Records the state of an entry's path after the change, in memory only: the next
    /// [`Journal::commit`], [`Journal::save`] or [`Journal::close`] writes it, after the
    /// caller made the change itself durable.
    ///
    /// # Errors
    /// On I/O errors.
    pub fn record_after(&mut self, seq: usize) -> Result<()> {
        let idx = seq - 1;
        let path = self.manifest.entries[idx].path.clone();
        let mut after = self.root.entry(&path)?;
        if self.manifest.entries[idx].secret {
            after = secret_entry(after);
        }
        let e = &mut self.manifest.entries[idx];
        e.after = Some(after);
        e.state = EntryState::Done;
        Ok(())
    }

    /// Forgets the entries from `seq` on: staged, but their changes were never started (a
    /// batch cut short by an error). Their backups stay, unreferenced.
    pub fn discard_from(&mut self, seq: usize) {
        self.manifest.entries.truncate(seq.saturating_sub(1));
    }

    /// Records the state of an entry's path after the change.
    ///
    /// # Errors
    /// On I/O errors.
    pub fn finish(&mut self, seq: usize) -> Result<()> {
        self.record_after(seq)?;
        // The rename need not be durable: losing it in a crash leaves the entry pending, which
        // recovery restores like a crash just before this call; the next `begin` and `close`
        // save durably and carry this state along.
        let json = serde_json::to_vec_pretty(&self.manifest)
            .map_err(|e| Error::Runtime(format!("serialising manifest: {e}")))?;
        self.root.write_atomic_lazy(
            &manifest_path(&self.manifest.id)?,
            &json,
            Perms::root(0o600),
        )
    }

    /// Drops entries whose path did not actually change (effects of commands).
    pub fn prune_unchanged(&mut self) {
        self.manifest
            .entries
            .retain(|e| e.state == EntryState::Pending || e.after.as_ref() != Some(&e.before));
        for (i, e) in self.manifest.entries.iter_mut().enumerate() {
            e.seq = i + 1;
        }
    }

    /// Writes the backup of `path` (content-addressed, once per content), not yet durable: the
    /// next [`Journal::commit`] syncs it.
    fn backup(&mut self, path: &RelPath, entry: &Entry) -> Result<()> {
        if let Entry::File { sha256, .. } = entry {
            let dest = self
                .dir
                .join(&format!("backup/{sha256}"))
                .map_err(Error::Runtime)?;
            if !self.root.entry(&dest)?.exists() {
                let content = self.root.read_limited(path, BACKUP_LIMIT)?.ok_or_else(|| {
                    Error::Runtime(format!("{path} vanished while backing it up"))
                })?;
                if crate::root::sha256_hex(&content) != *sha256 {
                    return Err(Error::Runtime(format!(
                        "{path} changed while backing it up"
                    )));
                }
                self.root
                    .write_unsynced(&dest, &content, Perms::root(0o600))?;
                self.unsynced.push(dest);
            }
        }
        Ok(())
    }

    /// Marks the run finished with a status.
    ///
    /// # Errors
    /// On I/O errors.
    pub fn close(&mut self, status: RunStatus, error: Option<String>) -> Result<()> {
        self.manifest.status = status;
        self.manifest.error = error;
        self.manifest.finished = Some(now_rfc3339());
        self.commit()
    }
}

fn manifest_path(id: &str) -> Result<RelPath> {
    RelPath::lit(RUNS_DIR)
        .join(&format!("{id}/manifest.json"))
        .map_err(Error::Runtime)
}

fn save_manifest(root: &Root, m: &Manifest) -> Result<()> {
    let json = serde_json::to_vec_pretty(m)
        .map_err(|e| Error::Runtime(format!("serialising manifest: {e}")))?;
    root.write_atomic(&manifest_path(&m.id)?, &json, Perms::root(0o600))
}

/// Reads one run's manifest.
///
/// # Errors
/// [`Error::Usage`] for an unknown run id, I/O and parse errors otherwise.
pub fn read_manifest(root: &Root, id: &str) -> Result<Manifest> {
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        return Err(Error::Usage(format!("`{id}` is not a run id")));
    }
    let p = manifest_path(id)?;
    let bytes = root.read(&p)?.ok_or_else(|| {
        Error::Usage(format!(
            "no run `{id}` in {}",
            root.resolve(&RelPath::lit(RUNS_DIR)).display()
        ))
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Runtime(format!("reading {p}: {e}")))
}

/// Lists all runs, oldest first.
///
/// # Errors
/// On I/O or parse errors.
pub fn list_runs(root: &Root) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for name in root.list_dir(&RelPath::lit(RUNS_DIR))? {
        if name.starts_with('.') {
            continue;
        }
        if let Ok(m) = read_manifest(root, &name) {
            out.push(m);
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// What a rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    /// The run that was rolled back.
    pub rolled_back: String,
    /// The id of the rollback's own journal entry.
    pub run_id: String,
    /// Restored paths with what was done.
    pub restored: Vec<(RelPath, String)>,
    /// Handlers to run (live systems).
    pub handlers: Vec<JournalHandler>,
    /// Commands of the rolled-back run whose effects beyond their watched paths rollback does
    /// not undo (e.g. `apt-get install`: the packages stay installed).
    pub not_undone: Vec<JournalCommand>,
}

/// Picks the run a bare `bollwerk rollback` undoes: the latest apply run that changed
/// something and is not rolled back yet.
///
/// # Errors
/// [`Error::Usage`] when there is none.
pub fn default_rollback_target(root: &Root) -> Result<String> {
    list_runs(root)?
        .into_iter()
        .rev()
        .find(|m| m.kind == RunKind::Apply && m.rolled_back_by.is_none() && !m.entries.is_empty())
        .map(|m| m.id)
        .ok_or_else(|| Error::Usage("no run to roll back: no apply run that changed something and is not rolled back yet".into()))
}

/// Restores every path of run `id` to its state before the run, byte-identical, in reverse
/// order. Refuses (exit 2) when a path changed since the run, unless `force`.
///
/// # Errors
/// [`Error::Unsafe`] on conflicts, [`Error::Usage`] for unknown or already rolled back runs,
/// I/O errors otherwise.
pub fn rollback(root: &Root, id: &str, force: bool) -> Result<RollbackReport> {
    let mut target = read_manifest(root, id)?;
    if let Some(by) = &target.rolled_back_by {
        return Err(Error::Usage(format!(
            "run {id} was already rolled back by run {by}"
        )));
    }
    let backup_dir = RelPath::lit(RUNS_DIR)
        .join(&format!("{id}/backup"))
        .map_err(Error::Runtime)?;
    // Conflicts first: nothing is touched when any path changed since the run.
    let mut conflicts = Vec::new();
    for (i, e) in target.entries.iter().enumerate().rev() {
        let mut cur = root.entry(&e.path)?;
        if e.secret {
            cur = secret_entry(cur);
        }
        // A path two modules changed in one run has one entry per change: only the last one's
        // `after` is what the run left there.
        let superseded = target.entries[i + 1..].iter().any(|o| o.path == e.path);
        let ok = superseded
            || match (&e.state, &e.after) {
                (EntryState::Done, Some(after)) => same(&cur, after) || same(&cur, &e.before),
                _ => true, // interrupted: either old or new; restore old
            };
        if !ok {
            conflicts.push(format!("{} changed since run {id}", e.path));
        }
        if let Entry::File { sha256, .. } = &e.before
            && !e.secret
        {
            let b = backup_dir.join(sha256).map_err(Error::Runtime)?;
            match root.read_limited(&b, BACKUP_LIMIT)? {
                Some(bytes) if crate::root::sha256_hex(&bytes) == *sha256 => {}
                _ => conflicts.push(format!("backup of {} is missing or corrupt", e.path)),
            }
        }
        if matches!(e.before, Entry::Absent) && matches!(cur, Entry::Dir { .. }) {
            let created: Vec<&RelPath> = target
                .entries
                .iter()
                .filter(|o| matches!(o.before, Entry::Absent))
                .map(|o| &o.path)
                .collect();
            for child in root.list_dir(&e.path)? {
                let cp = e.path.join(&child).map_err(Error::Runtime)?;
                if !created.contains(&&cp) {
                    conflicts.push(format!(
                        "{} contains {cp}, which run {id} did not create",
                        e.path
                    ));
                }
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(Error::Unsafe {
            reason: format!("cannot roll back run {id} byte-identically:\n  - {}", conflicts.join("\n  - ")),
            hint: "roll back later runs first, or pass --force to restore anyway (changes made since are lost)".into(),
        });
    }
    let mut journal = Journal::create(root, RunKind::Rollback, target.profile.clone())?;
    journal.manifest.rollback_of = Some(id.to_string());
    let mut restored = Vec::new();
    for e in target.entries.iter().rev() {
        let mut cur = root.entry(&e.path)?;
        if e.secret {
            cur = secret_entry(cur);
        }
        if same(&cur, &e.before) {
            continue;
        }
        if e.secret {
            // Permissions only: the content was never recorded and is not touched.
            let summary = format!("restore permissions of {}", e.path);
            let seq = journal.begin_secret(&e.module, &summary, &e.path)?;
            match &e.before {
                Entry::File { perms, .. } | Entry::Dir { perms } => {
                    root.set_perms(&e.path, *perms)?
                }
                _ => {}
            }
            journal.finish(seq)?;
            restored.push((e.path.clone(), "permissions restored (secret)".to_string()));
            continue;
        }
        let seq = journal.begin(&e.module, &format!("restore {}", e.path), &e.path, None)?;
        let what = restore(root, &backup_dir, &e.path, &e.before, &cur, force)?;
        journal.finish(seq)?;
        restored.push((e.path.clone(), what));
    }
    journal.manifest.handlers = target.handlers.clone();
    journal.close(RunStatus::Applied, None)?;
    target.rolled_back_by = Some(journal.id().to_string());
    save_manifest(root, &target)?;
    Ok(RollbackReport {
        rolled_back: id.to_string(),
        run_id: journal.id().to_string(),
        restored,
        handlers: target.handlers,
        not_undone: target.commands.into_iter().filter(|c| c.ok).collect(),
    })
}

/// Entries compare equal on content, kind, mode and owner.
fn same(a: &Entry, b: &Entry) -> bool {
    a == b
}

fn restore(
    root: &Root,
    backup_dir: &RelPath,
    path: &RelPath,
    before: &Entry,
    cur: &Entry,
    force: bool,
) -> Result<String> {
    match before {
        Entry::Absent => {
            if let Entry::Dir { .. } = cur
                && force
            {
                root.remove_all(path)?;
            } else {
                root.remove(path)?;
            }
            Ok("removed (created by the run)".into())
        }
        Entry::File { sha256, perms, .. } => {
            let bytes = root
                .read_limited(
                    &backup_dir.join(sha256).map_err(Error::Runtime)?,
                    BACKUP_LIMIT,
                )?
                .ok_or_else(|| Error::Runtime(format!("backup of {path} is missing")))?;
            if let Entry::Dir { .. } = cur {
                root.remove(path)?;
            }
            root.write_atomic(path, &bytes, *perms)?;
            Ok(
                if matches!(cur, Entry::File { sha256: s, .. } if s == sha256) {
                    "permissions restored".into()
                } else {
                    "content restored".into()
                },
            )
        }
        Entry::Dir { perms } => {
            if cur.exists() && !matches!(cur, Entry::Dir { .. }) {
                root.remove(path)?;
            }
            root.create_dir(path, *perms)?;
            Ok("directory restored".into())
        }
        Entry::Symlink { target, uid, gid } => {
            if let Entry::Dir { .. } = cur {
                root.remove(path)?;
            }
            root.symlink_atomic(path, target)?;
            root.lchown(path, *uid, *gid)?;
            Ok(format!("symlink -> {target} restored"))
        }
        Entry::Other => Err(Error::Runtime(format!(
            "{path} was a special file; bollwerk does not restore those"
        ))),
    }
}

/// The host path of a run directory (for messages).
pub fn run_dir(root: &Root, id: &str) -> PathBuf {
    root.resolve(&RelPath::lit(RUNS_DIR)).join(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_time_within_a_second() {
        let ids: Vec<String> = (0..50)
            .map(|_| {
                std::thread::sleep(std::time::Duration::from_micros(3));
                new_run_id()
            })
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(
            ids[0].len() == "20261124T221348Z-123456".len(),
            "{}",
            ids[0]
        );
    }
}
