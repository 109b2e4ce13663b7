//! The result model shared by every report format: one [`CheckResult`] per check, a
//! [`Summary`] (counts per status, score = pass / (pass + fail) with its denominator named, per
//! section), and the [`Report`] document (`bollwerk.report/v1`, documented in
//! `docs/report-schema.json`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::check::{Check, Fix, Severity, section_name};

/// Schema id of the JSON report.
pub const REPORT_SCHEMA: &str = "bollwerk.report/v1";

/// Outcome of one check.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The target is as expected.
    Pass,
    /// The target is not as expected.
    Fail,
    /// The check does not apply here (container, software not installed); the evidence says why.
    NotApplicable,
    /// The probe could not decide (unreadable file, tool failure); the evidence says why.
    Error,
    /// The fact the check needs cannot be read here (offline root, no kernel in the tree,
    /// systemd not running); the evidence says why. Never counted as a pass.
    NotEvaluated,
    /// Waived by the profile (`[[audit.waivers]]`): the result's `waiver` holds the reason,
    /// approver, expiry and the verdict the check would otherwise have had.
    Waived,
    /// Not judged in this run (above the requested level).
    Skipped,
}

impl Status {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NotApplicable => "not_applicable",
            Status::Error => "error",
            Status::NotEvaluated => "not_evaluated",
            Status::Waived => "waived",
            Status::Skipped => "skipped",
        }
    }

    /// All statuses, in report order.
    pub const ALL: [Status; 7] = [
        Status::Fail,
        Status::Error,
        Status::NotEvaluated,
        Status::Pass,
        Status::Waived,
        Status::NotApplicable,
        Status::Skipped,
    ];
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The judgement of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CheckResult {
    /// Check id.
    pub id: String,
    /// Check title.
    pub title: String,
    /// Report section (`5`, `bollwerk`).
    pub section: String,
    /// CIS number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cis: Option<String>,
    /// CIS level.
    pub level: u8,
    /// Severity.
    pub severity: Severity,
    /// Outcome.
    pub status: Status,
    /// What was observed and where (`PermitRootLogin yes (sshd -T)`), or why the check did
    /// not apply / could not decide.
    pub evidence: String,
    /// What was expected.
    pub expected: String,
    /// How to fix it.
    pub fix: Fix,
    /// ISO/IEC 27001:2022 Annex A controls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub iso27001: Vec<String>,
    /// GDPR articles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gdpr: Vec<String>,
    /// With `--profile`: the profile sets the key that fixes this check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered_by_profile: Option<bool>,
    /// The catalog marks the check `manual` or `site-specific`: a failure is expected on some
    /// hosts, for this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<Disposition>,
    /// With status `waived`: the profile's waiver and the verdict it hides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiver: Option<WaiverInfo>,
}

/// A waiver applied to a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WaiverInfo {
    /// Why the check is waived.
    pub reason: String,
    /// Who approved the waiver.
    pub approved_by: String,
    /// Last day the waiver holds (`YYYY-MM-DD`); `null` for the deprecated `audit.exclude`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// The verdict the check had without the waiver.
    pub verdict: Status,
}

/// Why a check may legitimately fail on a hardened host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Disposition {
    /// `manual` or `site-specific`.
    pub kind: DispositionKind,
    /// The reason, from the catalog.
    pub reason: String,
}

/// Kinds of [`Disposition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DispositionKind {
    /// Needs a manual step no profile can take.
    Manual,
    /// Depends on the site's setup.
    SiteSpecific,
}

impl DispositionKind {
    /// The word used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            DispositionKind::Manual => "manual",
            DispositionKind::SiteSpecific => "site-specific",
        }
    }
}

impl CheckResult {
    /// A result for `check` with everything but the judgement filled in.
    pub fn new(check: &Check, status: Status, evidence: String, expected: String) -> CheckResult {
        CheckResult {
            id: check.id.clone(),
            title: check.title.clone(),
            section: check.section().to_string(),
            cis: check.cis_ref(),
            level: check.level,
            severity: check.severity,
            status,
            evidence,
            expected,
            fix: check.fix.clone(),
            iso27001: check.iso27001.clone(),
            gdpr: check.gdpr.clone(),
            covered_by_profile: None,
            disposition: check.disposition(),
            waiver: None,
        }
    }
}

/// Counts and score of a set of results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Counts {
    /// Passed.
    pub pass: u32,
    /// Failed.
    pub fail: u32,
    /// Not applicable.
    pub not_applicable: u32,
    /// Could not decide.
    pub error: u32,
    /// The needed fact cannot be read here.
    #[serde(default)]
    pub not_evaluated: u32,
    /// Waived by the profile.
    #[serde(default)]
    pub waived: u32,
    /// Not judged.
    pub skipped: u32,
    /// The score's denominator: pass + fail.
    #[serde(default)]
    pub judged: u32,
    /// pass / (pass + fail) in percent, one decimal; `null` when nothing was judged.
    pub score: Option<f64>,
}

impl Counts {
    /// Counts `results`.
    pub fn of<'a>(results: impl IntoIterator<Item = &'a CheckResult>) -> Counts {
        let mut c = Counts::default();
        for r in results {
            match r.status {
                Status::Pass => c.pass += 1,
                Status::Fail => c.fail += 1,
                Status::NotApplicable => c.not_applicable += 1,
                Status::Error => c.error += 1,
                Status::NotEvaluated => c.not_evaluated += 1,
                Status::Waived => c.waived += 1,
                Status::Skipped => c.skipped += 1,
            }
        }
        c.judged = c.pass + c.fail;
        c.score = (c.judged > 0)
            .then(|| (f64::from(c.pass) * 1000.0 / f64::from(c.judged)).round() / 10.0);
        c
    }

    /// The score with its denominator named:
    /// `82.1 % (230 passed of 280 judged; 10 not evaluated, 2 errors, 3 waived)`, or
    /// `n/a (nothing judged; …)`.
    pub fn score_text(&self) -> String {
        let mut rest = vec![format!("{} not evaluated", self.not_evaluated)];
        rest.push(format!(
            "{} error{}",
            self.error,
            if self.error == 1 { "" } else { "s" }
        ));
        rest.push(format!("{} waived", self.waived));
        match self.score {
            Some(s) => format!(
                "{s:.1} % ({} passed of {} judged; {})",
                self.pass,
                self.judged,
                rest.join(", ")
            ),
            None => format!("n/a (nothing judged; {})", rest.join(", ")),
        }
    }

    /// The count of one status.
    pub fn get(&self, s: Status) -> u32 {
        match s {
            Status::Pass => self.pass,
            Status::Fail => self.fail,
            Status::NotApplicable => self.not_applicable,
            Status::Error => self.error,
            Status::NotEvaluated => self.not_evaluated,
            Status::Waived => self.waived,
            Status::Skipped => self.skipped,
        }
    }

    /// Total number of results.
    pub fn total(&self) -> u32 {
        self.pass
            + self.fail
            + self.not_applicable
            + self.error
            + self.not_evaluated
            + self.waived
            + self.skipped
    }
}

/// Counts of one report section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SectionSummary {
    /// Section id (`5`, `bollwerk`).
    pub id: String,
    /// Human name.
    pub name: String,
    /// Counts and score.
    #[serde(flatten)]
    pub counts: Counts,
    /// Time the section's probes took, summed (milliseconds; probes run in parallel, so the
    /// sum can exceed the wall time).
    pub probe_ms: f64,
}

/// Summary of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// Counts and score over all results.
    #[serde(flatten)]
    pub counts: Counts,
    /// Per section, in section order.
    pub sections: Vec<SectionSummary>,
}

impl Summary {
    /// Summarises `results`; `probe_ms` is the time per check id.
    pub fn of(results: &[CheckResult], probe_ms: &BTreeMap<String, f64>) -> Summary {
        let mut ids: Vec<&str> = Vec::new();
        for r in results {
            if !ids.contains(&r.section.as_str()) {
                ids.push(&r.section);
            }
        }
        ids.sort_by_key(|s| (s.parse::<u32>().unwrap_or(u32::MAX), s.to_string()));
        let sections = ids
            .into_iter()
            .map(|id| {
                let rs: Vec<&CheckResult> = results.iter().filter(|r| r.section == id).collect();
                SectionSummary {
                    id: id.to_string(),
                    name: section_name(id).to_string(),
                    counts: Counts::of(rs.iter().copied()),
                    probe_ms: rs
                        .iter()
                        .map(|r| probe_ms.get(&r.id).copied().unwrap_or(0.0))
                        .sum::<f64>(),
                }
            })
            .collect();
        Summary {
            counts: Counts::of(results),
            sections,
        }
    }
}

/// Facts about the audited host recorded in the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HostInfo {
    /// Host name (`etc/hostname`).
    pub hostname: String,
    /// `PRETTY_NAME` of `etc/os-release`.
    pub os: String,
    /// `ID` and `VERSION_ID`.
    pub os_id: String,
    /// Container technology, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The root audited (`/` for the running system).
    pub root: String,
    /// True when the running system was audited (live values judged).
    pub live: bool,
}

/// The benchmark a report's check numbers refer to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BenchmarkInfo {
    /// The benchmark whose numbers the results' `cis` fields carry.
    pub name: String,
    /// True when the audited OS is the one that benchmark is written for.
    pub for_host: bool,
    /// How to read the numbers on this host (one sentence).
    pub note: String,
}

/// The benchmark of the embedded catalog.
pub const CATALOG_BENCHMARK: &str = "CIS Ubuntu Linux 22.04 LTS Benchmark v2.0.0";

impl BenchmarkInfo {
    /// The label for a host with `os_id` (`ubuntu 22.04`) and pretty name `os`: the catalog
    /// carries CIS Ubuntu 22.04 numbers; on any other OS they are the reference only.
    pub fn for_os(os_id: &str, os: &str) -> BenchmarkInfo {
        let for_host = os_id == "ubuntu 22.04";
        let name = CATALOG_BENCHMARK.to_string();
        let note = if for_host {
            format!("{CATALOG_BENCHMARK}, judged on the OS it is written for")
        } else {
            let os = if os.is_empty() { "an unknown OS" } else { os };
            format!(
                "host runs {os}: not a CIS assessment for this OS; the {CATALOG_BENCHMARK} numbers are the reference for the equivalent controls"
            )
        };
        BenchmarkInfo {
            name,
            for_host,
            note,
        }
    }
}

/// The profile an audit was run against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProfileInfo {
    /// Its name (source).
    pub name: String,
    /// sha256 of the merged profile.
    pub digest: String,
}

/// The tool that made the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolInfo {
    /// `bollwerk`.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Checks in the catalog.
    pub catalog_checks: usize,
}

/// A complete audit report (`bollwerk.report/v1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// `bollwerk.report/v1`.
    pub schema: String,
    /// The tool.
    pub tool: ToolInfo,
    /// The host.
    pub host: HostInfo,
    /// The benchmark the check numbers come from, and whether it is the host's.
    #[serde(default)]
    pub benchmark: BenchmarkInfo,
    /// Warnings about the audit itself (waivers expiring soon, deprecated settings).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The profile, when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<ProfileInfo>,
    /// Highest CIS level judged (1 or 2).
    pub level: u8,
    /// Start time, RFC 3339 UTC.
    pub started: String,
    /// Start time, seconds since the epoch.
    pub timestamp: u64,
    /// Wall time of the audit in seconds.
    pub duration_seconds: f64,
    /// Counts and score.
    pub summary: Summary,
    /// One result per check, in catalog order.
    pub results: Vec<CheckResult>,
}

impl Report {
    /// Failed results, most severe first.
    pub fn failures(&self) -> Vec<&CheckResult> {
        let mut f: Vec<&CheckResult> = self
            .results
            .iter()
            .filter(|r| r.status == Status::Fail)
            .collect();
        f.sort_by_key(|r| std::cmp::Reverse(r.severity));
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: &str, section: &str, status: Status) -> CheckResult {
        CheckResult {
            id: id.into(),
            title: id.into(),
            section: section.into(),
            cis: None,
            level: 1,
            severity: Severity::High,
            status,
            evidence: String::new(),
            expected: String::new(),
            fix: Fix::default(),
            iso27001: vec![],
            gdpr: vec![],
            covered_by_profile: None,
            disposition: None,
            waiver: None,
        }
    }

    #[test]
    fn score_ignores_na_error_skipped() {
        let rs = vec![
            r("a.a", "5", Status::Pass),
            r("a.b", "5", Status::Pass),
            r("a.c", "5", Status::Fail),
            r("a.d", "1", Status::NotApplicable),
            r("a.e", "10", Status::Error),
            r("a.f", "bollwerk", Status::Skipped),
            r("a.g", "5", Status::NotEvaluated),
            r("a.h", "5", Status::Waived),
        ];
        let s = Summary::of(&rs, &BTreeMap::new());
        assert_eq!(s.counts.score, Some(66.7));
        assert_eq!(s.counts.total(), 8);
        assert_eq!(
            s.counts.score_text(),
            "66.7 % (2 passed of 3 judged; 1 not evaluated, 1 error, 1 waived)"
        );
        let order: Vec<&str> = s.sections.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(order, ["1", "5", "10", "bollwerk"]);
        assert_eq!(s.sections[0].counts.score, None);
    }
}
