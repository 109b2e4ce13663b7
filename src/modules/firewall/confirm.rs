//! `apply --confirm DURATION` and `bollwerk confirm`: Junos-style "commit confirmed" for the
//! live host.
//!
//! Before anything is applied, bollwerk saves how the firewall looks now (the ruleset of
//! `table inet bollwerk`, or whether ufw is active), copies its own binary to
//! `/var/lib/bollwerk/confirm/bollwerk` and arms a **transient systemd timer**
//! (`systemd-run --on-active=DURATION`) that runs `bollwerk confirm --revert` at the deadline.
//! The timer lives in PID 1, so the revert happens even when bollwerk (or the SSH session
//! that ran it) dies. `bollwerk confirm` stops the timer. The revert rolls the whole run back
//! through the journal (files byte-identical, services reloaded), then loads the saved
//! firewall state. A transient timer does not survive a reboot: after a reboot before the
//! deadline the new files are active, and `bollwerk confirm --revert` undoes them by hand.
//!
//! An apply can outlive its window (a slow package install). The timer then fires while the
//! apply holds the run lock: the revert waits for the lock (up to [`REVERT_LOCK_WAIT`]) instead
//! of giving up. The apply itself checks the deadline ([`check_window`]) before every step and
//! handler and once at the end ([`finish_or_revert`]); once the window has passed it stops,
//! rolls back everything it applied, restores the firewall, removes the pending confirmation
//! and exits 3. Whichever of the two gets there first reverts; the other finds nothing pending.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{Backend, NFT_FILE, resolve_backend};
use crate::engine::{Context, Plan};
use crate::error::{Error, Result};
use crate::exec::{Cmd, Runner};
use crate::root::{Perms, RelPath, Root};

/// Where the pending confirmation lives.
pub const DIR: &str = "var/lib/bollwerk/confirm";
const PENDING: &str = "var/lib/bollwerk/confirm/pending.json";
const PREVIOUS_NFT: &str = "var/lib/bollwerk/confirm/previous.nft";
const EXE: &str = "var/lib/bollwerk/confirm/bollwerk";

/// A pending confirmation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending {
    /// The transient unit (`<unit>.timer` / `<unit>.service`).
    pub unit: String,
    /// When it was armed (RFC 3339).
    pub armed: String,
    /// The deadline (RFC 3339).
    pub deadline: String,
    /// The firewall backend at the time.
    pub backend: String,
    /// ufw was active before (ufw backend).
    pub ufw_was_active: bool,
    /// The run to roll back (set once the apply created its journal).
    pub run_id: Option<String>,
    /// Runs the same apply made after the first (configuring installed packages); rolled back
    /// first, newest first.
    #[serde(default)]
    pub later_runs: Vec<String>,
}

/// How long `bollwerk confirm --revert` waits for a running apply to release the lock.
pub const REVERT_LOCK_WAIT: Duration = Duration::from_secs(2 * 3600);

/// True when this process armed a confirmation whose window has passed.
pub fn window_passed() -> bool {
    crate::engine::deadline::passed()
}

/// Called by the apply engine before it activates a step or runs a handler (it lives in
/// [`crate::engine::deadline`]; kept here for callers that think in confirmations).
///
/// # Errors
/// [`Error::Runtime`] once the `--confirm` window this process armed has passed: the apply
/// must not activate anything more (its caller reverts, see [`finish_or_revert`]).
pub fn check_window() -> Result<()> {
    crate::engine::deadline::check()
}

fn read_pending(root: &Root) -> Result<Option<Pending>> {
    match root.read(&RelPath::lit(PENDING))? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::Runtime(format!("reading /{PENDING}: {e}"))),
    }
}

fn write_pending(root: &Root, p: &Pending) -> Result<()> {
    let json = serde_json::to_vec_pretty(p)
        .map_err(|e| Error::Runtime(format!("serialising the confirmation: {e}")))?;
    root.write_atomic(&RelPath::lit(PENDING), &json, Perms::root(0o600))
}

/// An armed confirmation; [`Armed::record`] adds the run id once apply made one.
#[derive(Debug)]
pub struct Armed {
    pending: Pending,
}

impl Armed {
    /// Records the run the revert rolls back.
    ///
    /// # Errors
    /// When the state file cannot be written.
    pub fn record(&mut self, root: &Root, run_id: Option<String>) -> Result<()> {
        self.pending.run_id = run_id;
        write_pending(root, &self.pending)
    }

    /// Records a further run of the same apply (reverted before the first one).
    ///
    /// # Errors
    /// When the state file cannot be written.
    pub fn record_more(&mut self, root: &Root, run_id: Option<String>) -> Result<()> {
        if let Some(id) = run_id {
            self.pending.later_runs.push(id);
        }
        write_pending(root, &self.pending)
    }

    /// A line for the operator.
    pub fn message(&self) -> String {
        format!(
            "run `bollwerk confirm` before {} or the previous state is restored (timer {}.timer)\n",
            self.pending.deadline, self.pending.unit
        )
    }
}

/// Arms the revert timer before a plan is applied on the live host. `Ok(None)` when the plan
/// changes nothing.
///
/// # Errors
/// [`Error::Usage`] when the target is not the live host or a confirmation is already
/// pending; runtime errors when the timer cannot be armed (then nothing was applied).
pub fn arm(cx: &Context, plan: &Plan, after: Duration) -> Result<Option<Armed>> {
    if !cx.live() {
        return Err(Error::Usage(
            "apply --confirm acts on the running system: it needs --root / on a host running systemd".into(),
        ));
    }
    if plan.is_empty() {
        return Ok(None);
    }
    if after < Duration::from_secs(1) {
        return Err(Error::Usage("--confirm needs at least 1s".into()));
    }
    let root = &cx.root;
    if let Some(p) = read_pending(root)? {
        return Err(Error::Usage(format!(
            "a confirmation is pending (deadline {}): run `bollwerk confirm` or `bollwerk confirm --revert` first",
            p.deadline
        )));
    }
    crate::engine::journal::ensure_state_dir(root)?;
    let dir = RelPath::lit(DIR);
    if !root.entry(&dir)?.exists() {
        root.create_dir(&dir, Perms::root(0o700))?;
    }
    // Our own binary, so the revert works even if the installed one is replaced or removed.
    let exe = std::env::current_exe().map_err(|e| Error::io("locating", "bollwerk binary", e))?;
    let bytes = std::fs::read(&exe).map_err(|e| Error::io("reading", &exe, e))?;
    root.write_atomic(&RelPath::lit(EXE), &bytes, Perms::root(0o700))?;
    // The firewall as it is now.
    let backend = resolve_backend(cx);
    let mut ufw_was_active = false;
    match backend {
        Backend::Nftables => {
            let live = cx.runner.run(
                root,
                &Cmd::in_root(
                    "/usr/sbin/nft",
                    &["-s", "list", "table", "inet", "bollwerk"],
                ),
            );
            let mut prev = String::from("table inet bollwerk\ndelete table inet bollwerk\n");
            if let Ok(o) = live
                && o.success()
            {
                match root.read_string(&RelPath::lit(NFT_FILE))? {
                    Some(file) => prev = file,
                    None => prev.push_str(&o.stdout),
                }
            }
            root.write_atomic(
                &RelPath::lit(PREVIOUS_NFT),
                prev.as_bytes(),
                Perms::root(0o600),
            )?;
        }
        Backend::Ufw => {
            ufw_was_active = cx
                .runner
                .run(root, &Cmd::in_root("/usr/sbin/ufw", &["status"]))
                .map(|o| o.stdout.contains("Status: active"))
                .unwrap_or(false);
        }
    }
    let now = SystemTime::now();
    let unit = format!(
        "bollwerk-confirm-{}",
        now.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    );
    let pending = Pending {
        unit: unit.clone(),
        armed: humantime::format_rfc3339_seconds(now).to_string(),
        deadline: humantime::format_rfc3339_seconds(now + after).to_string(),
        backend: format!("{backend:?}").to_lowercase(),
        ufw_was_active,
        run_id: None,
        later_runs: Vec::new(),
    };
    write_pending(root, &pending)?;
    let secs = format!("{}s", after.as_secs().max(1));
    let exe_in_root = RelPath::lit(EXE).absolute();
    let out = cx.runner.run(
        root,
        &Cmd::in_root(
            "/usr/bin/systemd-run",
            &[
                &format!("--unit={unit}"),
                "--description=bollwerk: restore the previous state unless confirmed",
                &format!("--on-active={secs}"),
                "--timer-property=AccuracySec=1s",
                "--collect",
                &exe_in_root,
                "--root",
                "/",
                "confirm",
                "--revert",
            ],
        ),
    );
    match out {
        Ok(o) if o.success() => {
            crate::engine::deadline::set(Some(now + after));
            Ok(Some(Armed { pending }))
        }
        other => {
            let _ = root.remove(&RelPath::lit(PENDING));
            let why = match other {
                Ok(o) => o.combined(),
                Err(e) => e.to_string(),
            };
            Err(Error::Runtime(format!(
                "could not arm the revert timer with systemd-run, nothing was applied: {why}"
            )))
        }
    }
}

/// `bollwerk confirm`: keeps the new state, stops the timer.
///
/// # Errors
/// [`Error::Usage`] when nothing is pending.
pub fn confirm(root: &Root, runner: &dyn Runner) -> Result<String> {
    let Some(p) = read_pending(root)? else {
        return Err(Error::Usage(
            "nothing to confirm: no `apply --confirm` is pending".into(),
        ));
    };
    let out = runner.run(
        root,
        &Cmd::in_root(
            "/usr/bin/systemctl",
            &["stop", &format!("{}.timer", p.unit)],
        ),
    )?;
    if !out.success() {
        return Err(Error::Runtime(format!(
            "could not stop {}.timer, the revert may still run: {}",
            p.unit,
            out.combined()
        )));
    }
    cleanup(root);
    Ok(format!(
        "confirmed{}; the revert timer {}.timer is stopped\n",
        p.run_id.map(|r| format!(" run {r}")).unwrap_or_default(),
        p.unit
    ))
}

fn cleanup(root: &Root) {
    for f in [PENDING, PREVIOUS_NFT, EXE] {
        let _ = root.remove(&RelPath::lit(f));
    }
}

/// What the apply does after its last step (and after a step refused by
/// [`check_window`]): when the `--confirm` window has passed, rolls back everything the apply
/// did, restores the firewall and removes the pending confirmation. The caller holds the lock.
///
/// # Errors
/// [`Error::Runtime`] when the window has passed (whether or not the revert succeeded: the
/// message says which), so the apply exits 3.
pub fn finish_or_revert(root: &Root, runner: &dyn Runner) -> Result<()> {
    if !window_passed() {
        return Ok(());
    }
    crate::engine::deadline::set(None);
    let outcome = match read_pending(root)? {
        Some(p) => revert_locked(root, runner, p),
        None => Ok("the revert timer already restored the previous state\n".into()),
    };
    Err(Error::Runtime(match outcome {
        Ok(report) => format!(
            "the --confirm window passed before apply finished: everything it applied was rolled back\n{}",
            report.trim_end()
        ),
        Err(e) => format!(
            "the --confirm window passed before apply finished, and rolling back failed: {e}"
        ),
    }))
}

/// `bollwerk confirm --revert`: rolls the run back and restores the previous firewall (what
/// the timer runs at the deadline; also usable by hand). Waits for a running apply to release
/// the lock; that apply may revert by itself, then nothing is left to do.
///
/// # Errors
/// [`Error::Usage`] when nothing is pending; errors restoring the firewall; the lock still held
/// after [`REVERT_LOCK_WAIT`].
pub fn revert(root: &Root, runner: &dyn Runner) -> Result<String> {
    if read_pending(root)?.is_none() {
        return Err(Error::Usage(
            "nothing to revert: no `apply --confirm` is pending".into(),
        ));
    }
    let start = std::time::Instant::now();
    let _lock = loop {
        match crate::engine::journal::lock(root) {
            Ok(l) => break l,
            Err(Error::Locked { .. }) if start.elapsed() < REVERT_LOCK_WAIT => {
                tracing::info!("an apply holds the lock; waiting to revert");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    };
    match read_pending(root)? {
        Some(p) => revert_locked(root, runner, p),
        None => Ok("nothing left to revert: the apply rolled itself back\n".into()),
    }
}

/// The revert itself; the caller holds the lock.
fn revert_locked(root: &Root, runner: &dyn Runner, p: Pending) -> Result<String> {
    let mut report = String::new();
    let mut problems = Vec::new();
    // 1. The files of the run, through the journal, and the services that read them.
    let run = p.run_id.clone().or_else(|| {
        crate::engine::journal::list_runs(root)
            .ok()
            .and_then(|runs| {
                runs.into_iter()
                    .rev()
                    .find(|m| m.started >= p.armed && m.rolled_back_by.is_none())
                    .map(|m| m.id)
            })
    });
    let runs: Vec<String> = p.later_runs.iter().rev().cloned().chain(run).collect();
    for id in runs {
        let rolled = crate::engine::journal::rollback(root, &id, false);
        match rolled {
            Ok(r) => {
                report.push_str(&format!(
                    "rolled back run {id} ({} paths restored)\n",
                    r.restored.len()
                ));
                for h in &r.handlers {
                    let cmd = Cmd::in_root(
                        &h.program,
                        &h.args.iter().map(String::as_str).collect::<Vec<_>>(),
                    );
                    if let Err(e) = runner.run_ok(root, &cmd) {
                        problems.push(format!("{}: {e}", cmd.display()));
                    }
                }
            }
            Err(e) => problems.push(format!("rolling back run {id}: {e}")),
        }
    }
    // 2. The firewall as it was, whatever happened above.
    let restored = if p.backend == "nftables" {
        let path = RelPath::lit(PREVIOUS_NFT).absolute();
        runner.run_ok(root, &Cmd::in_root("/usr/sbin/nft", &["-f", &path]))
    } else if p.ufw_was_active {
        runner.run_ok(root, &Cmd::in_root("/usr/sbin/ufw", &["--force", "enable"]))
    } else {
        runner.run_ok(root, &Cmd::in_root("/usr/sbin/ufw", &["disable"]))
    };
    match restored {
        Ok(_) => report.push_str("previous firewall ruleset restored\n"),
        Err(e) => problems.push(format!("restoring the firewall: {e}")),
    }
    let _ = runner.run(
        root,
        &Cmd::in_root(
            "/usr/bin/systemctl",
            &["stop", &format!("{}.timer", p.unit)],
        ),
    );
    cleanup(root);
    if problems.is_empty() {
        Ok(report)
    } else {
        Err(Error::Runtime(format!(
            "{report}revert incomplete: {}",
            problems.join("; ")
        )))
    }
}
