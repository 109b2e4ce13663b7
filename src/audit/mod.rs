//! The compliance audit: the check catalog ([`check`], [`catalog`]), the result model
//! ([`result`]), shared facts ([`facts`]), probes ([`probe`]) and the engine ([`run`]) that
//! judges every check in parallel.
//!
//! Read-only: nothing in this module writes to the target (only `--save` in the CLI writes
//! reports, under `var/lib/bollwerk/reports/`).

pub mod catalog;
pub mod check;
pub mod cmd;
pub mod custom;
pub mod docker;
pub mod expect;
pub mod facts;
pub mod merge;
pub mod probe;
pub mod probe_ports;
pub mod profile;
pub mod report;
pub mod result;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use catalog::Catalog;
use check::{Check, Probe};
use expect::Outcome;
use facts::AuditCx;
use result::{
    BenchmarkInfo, CheckResult, HostInfo, ProfileInfo, REPORT_SCHEMA, Report, Status, Summary,
    ToolInfo, WaiverInfo,
};

use crate::exec::Runner;
use crate::profile::Loaded;
use crate::root::{RelPath, Root};

/// How to run an audit.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Highest CIS level to judge (checks above it are `skipped`).
    pub level: u8,
    /// Live kernel state (`/proc`); default: `/proc` when the root is `/`.
    pub proc_dir: Option<PathBuf>,
    /// Live `/sys`; default: `/sys` when the root is `/`.
    pub sys_dir: Option<PathBuf>,
    /// systemd runs on the audited system (live `systemctl`/`fail2ban-client` queries);
    /// default: the root is `/` and `/run/systemd/system` exists.
    pub systemd_running: Option<bool>,
    /// Only these check ids (tests, `checks` subsets); `None`: all.
    pub only: Option<Vec<String>>,
    /// Worker threads (default: 2 × CPUs, at most 8).
    pub threads: Option<usize>,
    /// Profile data as JSON, instead of the loaded profile's (tests; profile sections this
    /// build does not know yet).
    pub profile_data: Option<serde_json::Value>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            level: 1,
            proc_dir: None,
            sys_dir: None,
            systemd_running: None,
            only: None,
            threads: None,
            profile_data: None,
        }
    }
}

/// Runs the audit of `root` with `catalog`.
///
/// # Errors
/// When the root's basic files cannot be read (every probe problem is an `error` result).
pub fn run(
    catalog: &Catalog,
    root: Root,
    runner: &dyn Runner,
    profile: Option<&Loaded>,
    opts: &AuditOptions,
) -> crate::Result<Report> {
    let started = std::time::SystemTime::now();
    let t0 = Instant::now();
    let host = root.is_host();
    let proc_dir = opts
        .proc_dir
        .clone()
        .or_else(|| host.then(|| PathBuf::from("/proc")));
    let sys_dir = opts
        .sys_dir
        .clone()
        .or_else(|| host.then(|| PathBuf::from("/sys")));
    let systemd_running = opts
        .systemd_running
        .unwrap_or_else(|| host && std::path::Path::new("/run/systemd/system").is_dir());
    let mut cx = AuditCx::new(root, runner, profile, proc_dir, sys_dir, systemd_running)?;
    if let Some(d) = &opts.profile_data {
        cx.set_profile_data(d.clone());
    }
    let checks: Vec<&Check> = catalog
        .checks
        .iter()
        .filter(|c| opts.only.as_ref().is_none_or(|o| o.contains(&c.id)))
        .collect();
    let today = rfc3339(
        started
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )[..10]
        .to_string();
    let (waivers, mut warnings) = Waivers::from_profile(&cx, catalog, &today);
    // Expensive shared facts first, so they start while cheap checks run.
    let mut order: Vec<usize> = (0..checks.len()).collect();
    order.sort_by_key(|i| cost_rank(&checks[*i].probe));
    let slots: Vec<Mutex<Option<(CheckResult, f64)>>> =
        (0..checks.len()).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let threads = opts.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map_or(2, |n| n.get() * 2)
            .min(8)
    });
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = order.get(k) else { break };
                    let t = Instant::now();
                    let r = waivers.apply(judge_check(&cx, checks[i], opts.level));
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some((r, ms));
                    }
                }
            });
        }
    });
    let mut results = Vec::with_capacity(checks.len());
    let mut probe_ms = BTreeMap::new();
    for (slot, c) in slots.into_iter().zip(&checks) {
        let (r, ms) = slot.into_inner().ok().flatten().unwrap_or_else(|| {
            (
                CheckResult::new(c, Status::Error, "the probe panicked".into(), String::new()),
                0.0,
            )
        });
        probe_ms.insert(r.id.clone(), ms);
        results.push(r);
    }
    let summary = Summary::of(&results, &probe_ms);
    if !cx.live() {
        warnings.push(
            "audited offline: facts only a running system can give (live kernel, loaded firewall, service activity) are not evaluated".into(),
        );
    }
    let timestamp = started
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let hostname = cx
        .root
        .read_string(&RelPath::lit("etc/hostname"))
        .ok()
        .flatten()
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let os_id = format!("{} {}", cx.facts.os.id, cx.facts.os.version_id)
        .trim()
        .to_string();
    Ok(Report {
        schema: REPORT_SCHEMA.into(),
        benchmark: BenchmarkInfo::for_os(&os_id, &cx.facts.os.pretty_name),
        warnings,
        tool: ToolInfo {
            name: "bollwerk".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            catalog_checks: catalog.checks.len(),
        },
        host: HostInfo {
            hostname,
            os: cx.facts.os.pretty_name.clone(),
            os_id,
            container: cx.facts.container.clone(),
            root: cx.root.path().display().to_string(),
            live: cx.live(),
        },
        profile: profile.map(|l| ProfileInfo {
            name: l.name(),
            digest: l.digest.clone(),
        }),
        level: opts.level,
        started: rfc3339(timestamp),
        timestamp,
        duration_seconds: (t0.elapsed().as_secs_f64() * 1e4).round() / 1e4,
        summary,
        results,
    })
}

fn cost_rank(p: &Probe) -> u8 {
    match p {
        Probe::WorldWritable { .. } | Probe::Unowned { .. } => 0,
        Probe::Sshd { .. } => 1,
        Probe::Firewall { .. } => 2,
        Probe::All { probes } | Probe::Any { probes } => {
            probes.iter().map(cost_rank).min().unwrap_or(9)
        }
        _ => 9,
    }
}

/// Judges one check: level, scope, preconditions, then the probe.
pub fn judge_check(cx: &AuditCx, c: &Check, level: u8) -> CheckResult {
    let expected = c.expected.clone().unwrap_or_else(|| match c.probe {
        // Rule-like probes: the title says it best.
        Probe::Accounts { .. }
        | Probe::Firewall { .. }
        | Probe::PgHba { .. }
        | Probe::Apparmor { .. }
        | Probe::OpenPorts { .. }
        | Probe::WorldWritable { .. }
        | Probe::Unowned { .. } => c.title.clone(),
        _ => probe::expected(&c.probe),
    });
    let covered = cx.profile_json.as_ref().map(|_| covered_by(cx, c));
    let o = if let (Some(ct), false) = (&cx.facts.container, c.applies_to_containers()) {
        Outcome::na(format!(
            "container ({ct}): {}",
            c.container_reason()
                .unwrap_or_else(|| "does not apply in containers".into())
        ))
    } else if c.level > level {
        Outcome::skipped(format!(
            "level {} check; the audit judges level {level}",
            c.level
        ))
    } else if let Some(reason) = unmet(cx, c) {
        Outcome::na(reason)
    } else {
        probe::eval(cx, &c.probe)
    };
    let mut r = CheckResult::new(c, o.status, o.evidence, expected);
    r.covered_by_profile = covered;
    r
}

/// The profile's waivers in force today (`[[audit.waivers]]`, and the deprecated
/// `audit.exclude`), by check id.
struct Waivers {
    by_check: BTreeMap<String, WaiverInfo>,
}

impl Waivers {
    /// Reads the waivers; returns them with the warnings about them (expired, expiring within
    /// 30 days, unknown check ids, the deprecated `audit.exclude`).
    fn from_profile(cx: &AuditCx, catalog: &Catalog, today: &str) -> (Waivers, Vec<String>) {
        let mut by_check = BTreeMap::new();
        let mut warnings = Vec::new();
        let soon = days_after(today, 30);
        let known = |id: &str| catalog.checks.iter().any(|c| c.id == id);
        let excluded: Vec<String> = cx
            .profile_values("audit.exclude")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        if !excluded.is_empty() {
            warnings.push(format!(
                "audit.exclude is deprecated: write [[audit.waivers]] with check, reason, approved_by and expires instead (excluded: {})",
                excluded.join(", ")
            ));
        }
        for id in excluded {
            if !known(&id) {
                warnings.push(format!("audit.exclude names no check of the catalog: {id}"));
            }
            by_check.insert(
                id,
                WaiverInfo {
                    reason: "excluded by the profile (audit.exclude, deprecated)".into(),
                    approved_by: String::new(),
                    expires: None,
                    verdict: Status::Skipped,
                },
            );
        }
        for v in cx.profile_values("audit.waivers") {
            let w: profile::Waiver = match serde_json::from_value(v) {
                Ok(w) => w,
                Err(e) => {
                    warnings.push(format!("ignoring an invalid audit waiver: {e}"));
                    continue;
                }
            };
            let id = w.check.as_str().to_string();
            let expires = w.expires.as_str().to_string();
            if !known(&id) {
                warnings.push(format!("waiver names no check of the catalog: {id}"));
            }
            if expires.as_str() < today {
                warnings.push(format!(
                    "waiver for {id} expired on {expires}: the check's own verdict is reported"
                ));
                continue;
            }
            if expires <= soon {
                warnings.push(format!(
                    "waiver for {id} expires on {expires} (within 30 days; approved by {})",
                    w.approved_by.as_str()
                ));
            }
            by_check.insert(
                id,
                WaiverInfo {
                    reason: w.reason.as_str().to_string(),
                    approved_by: w.approved_by.as_str().to_string(),
                    expires: Some(expires),
                    verdict: Status::Skipped,
                },
            );
        }
        (Waivers { by_check }, warnings)
    }

    /// Turns `r` into `waived` when a waiver in force names it; the verdict stays recorded.
    /// A check that does not apply or is above the level stays as it is.
    fn apply(&self, mut r: CheckResult) -> CheckResult {
        let Some(w) = self.by_check.get(&r.id) else {
            return r;
        };
        if matches!(r.status, Status::NotApplicable | Status::Skipped) {
            return r;
        }
        let mut w = w.clone();
        w.verdict = r.status;
        r.evidence = format!(
            "{}{}{} (verdict without the waiver: {}: {})",
            w.reason,
            if w.approved_by.is_empty() {
                String::new()
            } else {
                format!("; approved by {}", w.approved_by)
            },
            w.expires
                .as_ref()
                .map(|e| format!(", until {e}"))
                .unwrap_or_default(),
            r.status,
            r.evidence
        );
        r.status = Status::Waived;
        r.waiver = Some(w);
        r
    }
}

/// `YYYY-MM-DD` of `days` after the date `today` (`YYYY-MM-DD`).
fn days_after(today: &str, days: u64) -> String {
    let parse = |r: std::ops::Range<usize>| today.get(r).and_then(|x| x.parse::<i64>().ok());
    let (Some(y), Some(m), Some(d)) = (parse(0..4), parse(5..7), parse(8..10)) else {
        return today.to_string();
    };
    // Days from civil (Howard Hinnant's algorithm), the inverse of `rfc3339`.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let epoch_days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(epoch_days).unwrap_or(0) + days;
    rfc3339(secs * 86_400)[..10].to_string()
}

/// True when the profile sets the key that fixes the check. A package or module list
/// (`packages.install`, `packages.remove`, `kernel_modules.disable`) covers a check only when it
/// names one of the check's packages or its module: installing *something* does not fix "aide
/// is installed".
fn covered_by(cx: &AuditCx, c: &Check) -> bool {
    let Some(k) = c.fix.key.as_ref() else {
        return false;
    };
    let values = cx.profile_values(k);
    if values.is_empty() {
        return false;
    }
    if matches!(
        k.as_str(),
        "packages.install" | "packages.remove" | "kernel_modules.disable"
    ) {
        let names: Vec<&String> = match &c.probe {
            Probe::Package { name, .. } => name.iter().collect(),
            Probe::KernelModule { module } => vec![module],
            _ => Vec::new(),
        };
        if !names.is_empty() {
            return values.iter().filter_map(|v| v.as_str()).any(|listed| {
                names
                    .iter()
                    .any(|n| crate::sshd_config::glob_match(n, listed))
            });
        }
    }
    true
}

/// Why a check's preconditions do not hold (`None`: they hold).
fn unmet(cx: &AuditCx, c: &Check) -> Option<String> {
    let w = &c.when;
    if !w.package.is_empty() && w.package.iter().all(|p| cx.installed(p).is_empty()) {
        return Some(format!("{} not installed", w.package.join(" / ")));
    }
    if let Some(p) = w
        .absent_package
        .iter()
        .find(|p| !cx.installed(p).is_empty())
    {
        return Some(format!("{p} is installed"));
    }
    if let Some(fw) = w.firewall {
        let active = match cx.firewall() {
            Ok(f) => match fw {
                check::FirewallBackend::Ufw => f.ufw,
                check::FirewallBackend::Nftables => f.nftables && !f.ufw,
            },
            Err(e) => return Some(format!("firewall configuration unreadable: {e}")),
        };
        if !active {
            return Some(format!("{} is not the active firewall", fw.as_str()));
        }
    }
    if let Some(k) = &w.profile_key {
        if cx.profile_json.is_none() {
            return Some(format!("needs a profile declaring {k} (--profile)"));
        }
        // A switch set to false counts as not set: `when = { profile_key = "firewall.remove_other" }`
        // means "when the profile turns it on".
        let values = cx.profile_values(k);
        if values.iter().all(|v| *v == serde_json::Value::Bool(false)) {
            return Some(format!("the profile does not set {k}"));
        }
    }
    None
}

/// Seconds since the epoch as RFC 3339 UTC (`2026-11-24T22:13:15Z`).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_790_000_000), "2026-09-21T14:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn days_after_crosses_months_and_years() {
        assert_eq!(days_after("2026-12-06", 30), "2027-01-05");
        assert_eq!(days_after("2024-02-28", 1), "2024-02-29");
        assert_eq!(days_after("1970-01-01", 0), "1970-01-01");
    }
}
