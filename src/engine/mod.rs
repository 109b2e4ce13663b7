//! The plan model: typed changes computed by modules, each able to show itself as a diff, plus
//! the context every module plans against.
//!
//! A [`Plan`] is pure data computed without touching the target; [`apply`] executes exactly
//! that plan (see `apply.rs`), [`journal`] records it and rolls it back.

pub mod apply;
pub mod deadline;
pub mod diff;
pub mod journal;
pub mod timing;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::exec::{Cmd, Runner};
use crate::facts::Facts;
use crate::profile::Loaded;
use crate::root::{Entry, Perms, RelPath, Root};

/// How a file's content may be shown in plans, diffs and journals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Show the diff.
    Plain,
    /// Never show content ("content hidden (N bytes, sha256 …)").
    Secret,
    /// `etc/shadow`-like: show the diff with the second field (the hash) masked.
    MaskHashes,
    /// Not worth a diff (e.g. copies of `etc/skel`): show the size only.
    Brief,
}

/// Checks a candidate file with the real tool before it becomes active.
pub trait Validator: Send + Sync + fmt::Debug {
    /// A short description for plans (`sshd -t`).
    fn describe(&self) -> String;
    /// Validates the staged candidates (see [`Staged`]).
    ///
    /// # Errors
    /// [`Error::Validation`] when the tool rejects the candidate, or an execution error.
    fn validate(&self, cx: &Context, staged: &Staged) -> Result<()>;
    /// True for validators that take hundreds of milliseconds (a sandbox, a tool that reads a
    /// large configuration): they start first, so the side-by-side run ends sooner. Only the
    /// start order changes; failures are still reported in plan order.
    fn slow(&self) -> bool {
        false
    }
}

/// Candidate files written to a scratch directory inside the root for validation.
#[derive(Debug, Clone)]
pub struct Staged {
    /// Target path → absolute path of its candidate as seen inside the root.
    pub files: BTreeMap<RelPath, String>,
    /// The validator's own scratch directory, as seen inside the root (validators may write
    /// more files there; validators run side by side, each with its own directory).
    pub dir_in_root: String,
    /// The validator's own scratch directory on the host.
    pub dir_host: std::path::PathBuf,
    /// The directory holding the candidates of `files`: (as seen inside the root, on the
    /// host).
    pub candidates_dir: (String, std::path::PathBuf),
}

impl Staged {
    /// The host path of an in-root path inside the scratch directory (a candidate or a file
    /// the validator wrote).
    pub fn host_path(&self, in_root: &str) -> std::path::PathBuf {
        let below = |dir: &str| {
            in_root
                .strip_prefix(dir)
                .filter(|rest| dir.is_empty() || rest.starts_with('/'))
                .map(|rest| rest.trim_start_matches('/').to_string())
        };
        if let Some(rest) = below(&self.dir_in_root) {
            return self.dir_host.join(rest);
        }
        if let Some(rest) = below(&self.candidates_dir.0) {
            return self.candidates_dir.1.join(rest);
        }
        self.dir_host
            .join(in_root.rsplit('/').next().unwrap_or(in_root))
    }
}

/// What a change does.
// A plan holds tens of actions, so the size of the `Run` variant (a whole `Cmd`) costs nothing
// worth a box at each of its construction sites.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Action {
    /// Create or replace a regular file.
    WriteFile {
        /// Target path.
        path: RelPath,
        /// New content.
        content: Vec<u8>,
        /// Mode and owner of the new file.
        perms: Perms,
        /// Content visibility.
        visibility: Visibility,
        /// Validator run on the staged candidate before it replaces the old file.
        validator: Option<Arc<dyn Validator>>,
    },
    /// Create a directory.
    CreateDir {
        /// Path.
        path: RelPath,
        /// Mode and owner.
        perms: Perms,
    },
    /// Change mode/owner of an existing file or directory.
    SetPerms {
        /// Path.
        path: RelPath,
        /// New mode and owner.
        perms: Perms,
    },
    /// Create or replace a symlink.
    Symlink {
        /// Path.
        path: RelPath,
        /// Link target.
        target: String,
    },
    /// Remove a file or symlink (or an empty directory).
    Remove {
        /// Path.
        path: RelPath,
    },
    /// Run a command. The watched paths are snapshotted before and after, so the journal can
    /// restore them on rollback.
    Run {
        /// The command.
        cmd: Cmd,
        /// Files/directories the command may modify.
        watch: Vec<RelPath>,
        /// Validator run with the other candidates before anything is activated (e.g. a dry
        /// run of the command in a sandbox).
        validator: Option<Arc<dyn Validator>>,
    },
}

impl Action {
    /// The path a file-level action works on.
    pub fn path(&self) -> Option<&RelPath> {
        match self {
            Action::WriteFile { path, .. }
            | Action::CreateDir { path, .. }
            | Action::SetPerms { path, .. }
            | Action::Symlink { path, .. }
            | Action::Remove { path } => Some(path),
            Action::Run { .. } => None,
        }
    }

    /// The validator of a file write or command, if any.
    pub fn validator(&self) -> Option<&Arc<dyn Validator>> {
        match self {
            Action::WriteFile { validator, .. } | Action::Run { validator, .. } => {
                validator.as_ref()
            }
            _ => None,
        }
    }

    /// A short kind word for output.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::WriteFile { .. } => "write",
            Action::CreateDir { .. } => "mkdir",
            Action::SetPerms { .. } => "perms",
            Action::Symlink { .. } => "symlink",
            Action::Remove { .. } => "remove",
            Action::Run { .. } => "run",
        }
    }
}

/// One planned change.
#[derive(Debug, Clone)]
pub struct Change {
    /// The module that planned it.
    pub module: &'static str,
    /// One line for humans ("create user deploy").
    pub summary: String,
    /// What to do.
    pub action: Action,
    /// What was at the path when planned (for diffs and drift detection).
    pub before: Entry,
    /// Old content of a file being rewritten (for the diff).
    pub old_content: Option<Vec<u8>>,
    /// The path holds a secret: only its permissions change, and its content (not even a
    /// hash of it) is never backed up or recorded in the journal.
    pub secret: bool,
}

/// A service action to run after a module's files changed, only on a live system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Handler {
    /// The module whose changes trigger it.
    pub module: &'static str,
    /// The command.
    #[serde(serialize_with = "ser_cmd")]
    pub cmd: Cmd,
}

fn ser_cmd<S: serde::Serializer>(c: &Cmd, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&c.display())
}

/// Severity of a plan note.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Informational.
    Info,
    /// Something the operator should look at.
    Warning,
}

/// A message attached to a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    /// The module.
    pub module: &'static str,
    /// Info or warning.
    pub level: Level,
    /// The message.
    pub message: String,
}

/// A reason the plan must not be applied (lockout and other safety refusals).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// What would happen.
    pub reason: String,
    /// Which profile key to change.
    pub hint: String,
}

/// The complete plan for one run.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// Ordered changes.
    pub changes: Vec<Change>,
    /// Handlers to run (live systems only) when their module changed something.
    pub handlers: Vec<Handler>,
    /// Notes and warnings.
    pub notes: Vec<Note>,
    /// Safety refusals (apply refuses unless forced).
    pub refusals: Vec<Refusal>,
    /// Who can log in over SSH after the plan (computed by the sshd module, read by the
    /// lockout guard).
    pub ssh_access: Option<crate::state::sshd::SshAccess>,
    /// Packages modules asked for: (module, package), collected before planning.
    pub requested_packages: Vec<(&'static str, String)>,
    /// Installed packages modules need removed: (module, package), collected before planning.
    pub requested_removals: Vec<(&'static str, String)>,
}

impl Plan {
    /// True when nothing would change.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The content a path will have after the plan, if the plan writes it.
    pub fn planned_content(&self, path: &RelPath) -> Option<&[u8]> {
        self.changes.iter().rev().find_map(|c| match &c.action {
            Action::WriteFile {
                path: p, content, ..
            } if p == path => Some(content.as_slice()),
            _ => None,
        })
    }

    /// True when the plan removes `path`.
    pub fn removes(&self, path: &RelPath) -> bool {
        self.changes
            .iter()
            .any(|c| matches!(&c.action, Action::Remove { path: p } if p == path))
    }

    /// The modules with at least one change.
    pub fn changed_modules(&self) -> Vec<&'static str> {
        let mut m: Vec<&'static str> = self.changes.iter().map(|c| c.module).collect();
        m.dedup();
        m
    }
}

/// Options of a run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Apply even when a safety check refuses.
    pub force: bool,
    /// True for the convergence re-plan right after an apply, in the same run: a module that
    /// spreads a change over two runs (the firewall keeps an old SSH port open until a later
    /// run) keeps its first stage instead of reporting the second as pending.
    pub converging: bool,
    /// Before the network (first boot's local stage): the packages module leaves installs and
    /// removals to first boot's final stage instead of running apt.
    pub offline: bool,
}

/// Everything a module plans against.
pub struct Context<'a> {
    /// The target root.
    pub root: Root,
    /// Command runner.
    pub runner: &'a dyn Runner,
    /// Facts about the target.
    pub facts: Facts,
    /// The loaded profile.
    pub profile: &'a Loaded,
    /// Run options.
    pub options: Options,
    http: OnceLock<std::result::Result<reqwest::blocking::Client, String>>,
    key_cache: Mutex<BTreeMap<String, Vec<crate::sshkeys::PublicKey>>>,
}

impl<'a> Context<'a> {
    /// Builds a context; facts are read from the root now.
    ///
    /// # Errors
    /// When the root's basic files cannot be read.
    pub fn new(
        root: Root,
        runner: &'a dyn Runner,
        profile: &'a Loaded,
        options: Options,
    ) -> Result<Context<'a>> {
        let facts = Facts::gather(&root, runner)?;
        Ok(Context {
            root,
            runner,
            facts,
            profile,
            options,
            http: OnceLock::new(),
            key_cache: Mutex::new(BTreeMap::new()),
        })
    }

    /// A new context on the same root and profile with freshly read facts (after apply),
    /// keeping fetched keys so verification does not fetch again.
    ///
    /// # Errors
    /// When facts cannot be read.
    pub fn fresh(&self) -> Result<Context<'a>> {
        let cache = self.key_cache.lock().map(|c| c.clone()).unwrap_or_default();
        let cx = Context::new(
            self.root.clone(),
            self.runner,
            self.profile,
            self.options.clone(),
        )?;
        if let Ok(mut c) = cx.key_cache.lock() {
            *c = cache;
        }
        Ok(cx)
    }

    /// The context for verifying right after an apply: fresh facts, and `converging` set (so
    /// modules do not report intentionally deferred work, like closing an old SSH port on a
    /// later run, as "not converged").
    ///
    /// # Errors
    /// When facts cannot be read.
    pub fn verifier(&self) -> Result<Context<'a>> {
        let mut cx = self.fresh()?;
        cx.options.converging = true;
        Ok(cx)
    }

    /// True when changes may touch the running system (services, kernel): the root is `/` and
    /// systemd runs as init.
    pub fn live(&self) -> bool {
        self.facts.live
    }

    /// Fetches keys of a source once per run (cached).
    ///
    /// # Errors
    /// When the fetch fails.
    pub fn fetch_keys(
        &self,
        src: &crate::sshkeys::KeySource,
    ) -> Result<Vec<crate::sshkeys::PublicKey>> {
        let id = format!("{}#{}", src.url().as_str(), src.pin().unwrap_or(""));
        if let Some(k) = self.key_cache.lock().ok().and_then(|c| c.get(&id).cloned()) {
            return Ok(k);
        }
        let client = self
            .http
            .get_or_init(|| crate::sshkeys::http_client(std::time::Duration::from_secs(15)))
            .as_ref()
            .map_err(|e| Error::Runtime(e.clone()))?;
        let keys = crate::sshkeys::fetch(client, src).map_err(|e| Error::Runtime(e.to_string()))?;
        if let Ok(mut c) = self.key_cache.lock() {
            c.insert(id, keys.clone());
        }
        Ok(keys)
    }

    /// A file's content as it will be after `plan` (planned content, else the root's current).
    ///
    /// # Errors
    /// When the current file cannot be read.
    pub fn after(&self, plan: &Plan, path: &RelPath) -> Result<Option<Vec<u8>>> {
        if let Some(c) = plan.planned_content(path) {
            return Ok(Some(c.to_vec()));
        }
        if plan.removes(path) {
            return Ok(None);
        }
        self.root.read(path)
    }
}

/// Builder used by modules to add changes, computing `before` and skipping no-ops.
pub struct Planner<'p> {
    module: &'static str,
    plan: &'p mut Plan,
}

impl<'p> Planner<'p> {
    /// Starts planning for `module`.
    pub fn new(module: &'static str, plan: &'p mut Plan) -> Planner<'p> {
        Planner { module, plan }
    }

    /// The plan so far.
    pub fn plan(&self) -> &Plan {
        self.plan
    }

    /// Adds a note.
    pub fn note(&mut self, level: Level, message: impl Into<String>) {
        self.plan.notes.push(Note {
            module: self.module,
            level,
            message: message.into(),
        });
    }

    /// Adds a safety refusal.
    pub fn refuse(&mut self, reason: impl Into<String>, hint: impl Into<String>) {
        self.plan.refusals.push(Refusal {
            reason: reason.into(),
            hint: hint.into(),
        });
    }

    /// Adds a handler (deduplicated).
    pub fn handler(&mut self, cmd: Cmd) {
        let h = Handler {
            module: self.module,
            cmd,
        };
        if !self.plan.handlers.contains(&h) {
            self.plan.handlers.push(h);
        }
    }

    /// Ensures `path` has exactly `content`, `perms` (creating parent directories as root 0755).
    /// No change when content and permissions already match. Returns true when a change was added.
    ///
    /// # Errors
    /// When the current state cannot be read.
    pub fn file(
        &mut self,
        root: &Root,
        path: &RelPath,
        content: impl Into<Vec<u8>>,
        perms: Perms,
        summary: impl Into<String>,
    ) -> Result<bool> {
        self.file_with(
            root,
            path,
            content.into(),
            perms,
            summary.into(),
            Visibility::Plain,
            None,
        )
    }

    /// [`Planner::file`] with visibility and validator.
    ///
    /// # Errors
    /// When the current state cannot be read.
    #[allow(clippy::too_many_arguments)]
    pub fn file_with(
        &mut self,
        root: &Root,
        path: &RelPath,
        content: Vec<u8>,
        perms: Perms,
        summary: String,
        visibility: Visibility,
        validator: Option<Arc<dyn Validator>>,
    ) -> Result<bool> {
        let before = self.current(root, path)?;
        let old = match &before {
            Entry::File {
                sha256, perms: p, ..
            } => {
                if *sha256 == crate::root::sha256_hex(&content) {
                    if *p != perms {
                        self.push(
                            format!("{summary} (permissions {p} → {perms})"),
                            Action::SetPerms {
                                path: path.clone(),
                                perms,
                            },
                            before.clone(),
                            None,
                        );
                        return Ok(true);
                    }
                    return Ok(false);
                }
                root.read(path)?
            }
            Entry::Absent => None,
            Entry::Dir { .. } | Entry::Other => {
                return Err(Error::Runtime(format!(
                    "{path} exists but is not a regular file; refusing to replace it"
                )));
            }
            Entry::Symlink { .. } => None,
        };
        if let Some(parent) = path.parent() {
            self.dirs(root, &parent, Perms::root(0o755))?;
        }
        self.push(
            summary,
            Action::WriteFile {
                path: path.clone(),
                content,
                perms,
                visibility,
                validator,
            },
            before,
            old,
        );
        Ok(true)
    }

    /// Ensures every missing directory up to `path` exists (`perms` for the last one, root 0755
    /// for intermediate ones).
    ///
    /// # Errors
    /// When the current state cannot be read.
    pub fn dirs(&mut self, root: &Root, path: &RelPath, perms: Perms) -> Result<()> {
        let missing = root.missing_dirs(path)?;
        for d in missing {
            if self
                .plan
                .changes
                .iter()
                .any(|c| matches!(&c.action, Action::CreateDir { path: p, .. } if *p == d))
            {
                continue;
            }
            let p = if d == *path {
                perms
            } else {
                Perms::root(0o755)
            };
            self.push(
                format!("create directory {d}"),
                Action::CreateDir {
                    path: d.clone(),
                    perms: p,
                },
                Entry::Absent,
                None,
            );
        }
        Ok(())
    }

    /// Ensures a directory exists with `perms` (created, or permissions fixed).
    ///
    /// # Errors
    /// When the current state cannot be read, or a non-directory is in the way.
    pub fn dir(
        &mut self,
        root: &Root,
        path: &RelPath,
        perms: Perms,
        summary: impl Into<String>,
    ) -> Result<()> {
        match self.current(root, path)? {
            Entry::Absent => self.dirs(root, path, perms),
            Entry::Dir { perms: p } if p == perms => Ok(()),
            before @ Entry::Dir { .. } => {
                self.push(
                    format!("{} (permissions)", summary.into()),
                    Action::SetPerms {
                        path: path.clone(),
                        perms,
                    },
                    before,
                    None,
                );
                Ok(())
            }
            _ => Err(Error::Runtime(format!(
                "{path} exists but is not a directory"
            ))),
        }
    }

    /// Ensures mode/owner of an existing path; absent paths are left alone.
    ///
    /// # Errors
    /// When the current state cannot be read.
    pub fn perms(
        &mut self,
        root: &Root,
        path: &RelPath,
        perms: Perms,
        summary: impl Into<String>,
    ) -> Result<bool> {
        let before = self.current(root, path)?;
        let cur = match &before {
            Entry::File { perms, .. } | Entry::Dir { perms } => *perms,
            _ => return Ok(false),
        };
        if cur == perms {
            return Ok(false);
        }
        self.push(
            format!("{} ({cur} → {perms})", summary.into()),
            Action::SetPerms {
                path: path.clone(),
                perms,
            },
            before,
            None,
        );
        Ok(true)
    }

    /// Like [`Planner::perms`] for a file holding a secret (`.env`, keys): the change is
    /// journaled without a backup or hash of the content, and rollback restores the
    /// permissions only.
    ///
    /// # Errors
    /// When the current state cannot be read.
    pub fn secret_perms(
        &mut self,
        root: &Root,
        path: &RelPath,
        perms: Perms,
        summary: impl Into<String>,
    ) -> Result<bool> {
        let changed = self.perms(root, path, perms, summary)?;
        if changed && let Some(c) = self.plan.changes.last_mut() {
            c.secret = true;
        }
        Ok(changed)
    }

    /// Ensures `path` is a symlink to `target`.
    ///
    /// # Errors
    /// When the current state cannot be read.
    pub fn symlink(
        &mut self,
        root: &Root,
        path: &RelPath,
        target: &str,
        summary: impl Into<String>,
    ) -> Result<bool> {
        let before = self.current(root, path)?;
        if let Entry::Symlink { target: t, .. } = &before
            && t == target
        {
            return Ok(false);
        }
        if let Entry::Dir { .. } = before {
            return Err(Error::Runtime(format!(
                "{path} is a directory; refusing to replace it by a symlink"
            )));
        }
        let old = match &before {
            Entry::File { .. } => root.read(path)?,
            _ => None,
        };
        self.push(
            summary.into(),
            Action::Symlink {
                path: path.clone(),
                target: target.to_string(),
            },
            before,
            old,
        );
        Ok(true)
    }

    /// Ensures `path` does not exist.
    ///
    /// # Errors
    /// When the current state cannot be read.
    pub fn remove(
        &mut self,
        root: &Root,
        path: &RelPath,
        summary: impl Into<String>,
    ) -> Result<bool> {
        let before = self.current(root, path)?;
        if !before.exists() {
            return Ok(false);
        }
        let old = match &before {
            Entry::File { .. } => root.read(path)?,
            _ => None,
        };
        self.push(
            summary.into(),
            Action::Remove { path: path.clone() },
            before,
            old,
        );
        Ok(true)
    }

    /// Adds a command (always a change: modules decide whether it is needed).
    pub fn run(&mut self, cmd: Cmd, watch: Vec<RelPath>, summary: impl Into<String>) {
        self.run_validated(cmd, watch, summary, None);
    }

    /// [`Planner::run`] with a validator that must pass, together with every file candidate,
    /// before anything of the plan is activated.
    pub fn run_validated(
        &mut self,
        cmd: Cmd,
        watch: Vec<RelPath>,
        summary: impl Into<String>,
        validator: Option<Arc<dyn Validator>>,
    ) {
        self.push(
            summary.into(),
            Action::Run {
                cmd,
                watch,
                validator,
            },
            Entry::Absent,
            None,
        );
    }

    /// The state of `path` after the changes planned so far (an earlier change in the same
    /// plan counts as done).
    fn current(&self, root: &Root, path: &RelPath) -> Result<Entry> {
        for c in self.plan.changes.iter().rev() {
            if c.action.path() == Some(path) {
                return Ok(match &c.action {
                    Action::WriteFile { content, perms, .. } => Entry::File {
                        sha256: crate::root::sha256_hex(content),
                        size: content.len() as u64,
                        perms: *perms,
                    },
                    Action::CreateDir { perms, .. } => Entry::Dir { perms: *perms },
                    Action::SetPerms { perms, .. } => match &c.before {
                        Entry::File { sha256, size, .. } => Entry::File {
                            sha256: sha256.clone(),
                            size: *size,
                            perms: *perms,
                        },
                        _ => Entry::Dir { perms: *perms },
                    },
                    Action::Symlink { target, .. } => Entry::Symlink {
                        target: target.clone(),
                        uid: 0,
                        gid: 0,
                    },
                    Action::Remove { .. } => Entry::Absent,
                    Action::Run { .. } => continue,
                });
            }
        }
        root.entry(path)
    }

    fn push(
        &mut self,
        summary: String,
        action: Action,
        before: Entry,
        old_content: Option<Vec<u8>>,
    ) {
        self.plan.changes.push(Change {
            module: self.module,
            summary,
            action,
            before,
            old_content,
            secret: false,
        });
    }
}

/// A check result after apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The module.
    pub module: &'static str,
    /// What is not as intended.
    pub message: String,
}
