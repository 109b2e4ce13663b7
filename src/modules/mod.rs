//! Modules: one per concern, each a function of (its profile section, facts) → changes.
//!
//! Modules plan in a fixed order (host, users, sshd) so later modules can see what earlier
//! ones will write (e.g. the lockout guard reads the planned `etc/passwd` and
//! `authorized_keys`). Cross-module safety checks run after all modules planned.

pub mod firstboot;
pub mod host;
pub mod lockout;
pub mod sshd;
pub mod users;

// -- network modules (issue 3) --
pub mod fail2ban;
pub mod firewall;
pub mod netcommon;
pub mod sysctl;

// -- services modules (issue 4) --
pub mod files;
pub mod logs;
pub mod packages;
pub mod pgtune;
pub mod postgres;
pub mod sizes;
pub mod updates;

// -- OS hardening modules (issue 7) --
pub mod hardening;

// -- day one (issue 13): apt repositories, storage --
pub mod apt_sources;
pub mod storage;
// -- docker (issue 14) --
pub mod docker;

use crate::engine::{Context, Finding, Plan};
use crate::error::Result;

/// A concern bollwerk manages.
pub trait Module: Sync {
    /// Short name (`sshd`), used in plans and journals.
    fn name(&self) -> &'static str;
    /// Adds this module's changes to `plan`. Read-only: never touches the target.
    ///
    /// # Errors
    /// When the target's state cannot be read or the profile conflicts with it.
    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()>;
    /// Packages this module needs for the profile at hand (installed by the packages module
    /// before anything else, so profiles need not list them).
    fn required_packages(&self, _cx: &Context) -> Vec<String> {
        Vec::new()
    }
    /// Installed packages this module needs gone for the profile at hand (removed by the
    /// packages module before anything else).
    fn unwanted_packages(&self, _cx: &Context) -> Vec<String> {
        Vec::new()
    }
    /// Checks the target after apply (re-reads state; e.g. `sshd -T`).
    ///
    /// # Errors
    /// When the state cannot be read.
    fn verify(&self, _cx: &Context) -> Result<Vec<Finding>> {
        Ok(Vec::new())
    }
}

/// All modules in planning order (packages first, so later modules' tools exist when their
/// candidates are validated; firewall after sshd, so it knows the SSH port).
#[allow(clippy::vec_init_then_push)] // one push per line keeps parallel additions mergeable
pub fn all() -> Vec<&'static dyn Module> {
    let mut m: Vec<&'static dyn Module> = Vec::new();

    // -- day one (issue 13): write_files without `defer`, disk and swap, apt sources: before
    // packages, as cloud-init orders them --
    m.push(&firstboot::EarlyFiles);
    m.push(&storage::Storage);
    m.push(&apt_sources::AptSources);

    // -- packages (issue 4) --
    m.push(&packages::Packages);

    m.push(&host::Host);
    m.push(&users::Users);
    m.push(&sshd::Sshd);

    // -- network (issue 3) --
    m.push(&sysctl::Sysctl);
    m.push(&firewall::Firewall);
    m.push(&fail2ban::Fail2ban);
    // -- docker (issue 14) --
    m.push(&docker::Docker);

    // -- services (issue 4) --
    m.push(&files::Files);
    m.push(&logs::Logs);
    m.push(&updates::Updates);
    m.push(&postgres::Postgres);

    // -- OS hardening (issue 7) --
    m.push(&hardening::sudo::Sudo);
    m.push(&hardening::banners::Banners);
    m.push(&hardening::kernel_modules::KernelModules);
    m.push(&hardening::cron::Cron);
    m.push(&hardening::coredump::Coredump);
    m.push(&hardening::tmp::Tmp);
    m.push(&hardening::time::Time);
    m.push(&hardening::accounts::Accounts);
    m.push(&hardening::pam::Pam);
    m.push(&hardening::apparmor::AppArmor);
    m.push(&hardening::integrity::Integrity);
    m.push(&hardening::tools::Tools);
    m.push(&hardening::logging::Logging);
    m.push(&hardening::auditd::Auditd);
    m.push(&hardening::accounting::Accounting);
    // After every module that edits files: it reads their planned conffile edits.
    m.push(&updates::ConffilePolicy);

    // -- firstboot (issue 6): deferred write_files last, so owners may be users created above --
    m.push(&firstboot::Firstboot);

    m
}

/// Plans every module, then runs the cross-module safety checks.
///
/// # Errors
/// The first module error.
pub fn plan_all(cx: &Context) -> Result<Plan> {
    let mut plan = Plan::default();
    for m in all() {
        for p in m.required_packages(cx) {
            if !plan.requested_packages.iter().any(|(_, q)| *q == p) {
                plan.requested_packages.push((m.name(), p));
            }
        }
        for p in m.unwanted_packages(cx) {
            if !plan.requested_removals.iter().any(|(_, q)| *q == p) {
                plan.requested_removals.push((m.name(), p));
            }
        }
    }
    for m in all() {
        let _span = tracing::info_span!("plan", module = m.name()).entered();
        m.plan(cx, &mut plan)?;
    }
    lockout::check(cx, &mut plan)?;
    Ok(plan)
}

/// Runs every module's verification.
///
/// # Errors
/// The first module error.
pub fn verify_all(cx: &Context) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    for m in all() {
        out.extend(m.verify(cx)?);
    }
    Ok(out)
}

/// After a run that changed software (package installs) or stopped because a command made the
/// rest of its plan stale: plans again with the verifier context and applies what became
/// possible as a second, separately journaled run. Returns the context to verify with and the
/// follow-up run, if one was needed.
///
/// The re-plan uses the verifier context (`converging`): work a module defers on purpose, like
/// closing an old SSH port after a move, stays for a later run.
///
/// # Errors
/// [`Error::Unsafe`] when the follow-up plan is refused (and not forced); apply errors.
pub fn follow_up_run<'a>(
    cx: &Context<'a>,
    plan: &Plan,
    report: &crate::engine::apply::ApplyReport,
    force: bool,
) -> Result<(
    Context<'a>,
    Option<(crate::engine::apply::ApplyReport, Plan)>,
)> {
    let cx2 = cx.verifier()?;
    // -- packages (issue 4) --
    // Software this run installed (a PostgreSQL cluster, a tool's configuration directory)
    // could not be planned for before it existed: configure it now, as a second run.
    if !(crate::modules::packages::changes_software(plan) || report.stopped.is_some()) {
        return Ok((cx2, None));
    }
    let vp = crate::modules::plan_all(&cx2)?;
    if vp.is_empty() {
        return Ok((cx2, None));
    }
    if !vp.refusals.is_empty() && !force {
        let r = &vp.refusals[0];
        return Err(crate::error::Error::Unsafe {
            reason: format!(
                "packages were changed (run {}), but configuring them is refused: {}",
                report.run_id.clone().unwrap_or_default(),
                r.reason
            ),
            hint: r.hint.clone(),
        });
    }
    let second = crate::engine::apply::apply(&cx2, &vp)?;
    if let Some(why) = &second.stopped {
        return Err(crate::error::Error::Runtime(format!(
            "the follow-up run {} stopped again ({why}); run apply once more",
            second.run_id.clone().unwrap_or_default()
        )));
    }
    Ok((cx2.verifier()?, Some((second, vp))))
}
