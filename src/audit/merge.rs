//! The fleet report (`bollwerk report merge A.json B.json …`): many hosts' audit reports
//! combined into one view — per check the hosts failing it, per host its score and the drift
//! since its previous report, and the fleet's pass rate per CIS section — rendered as text,
//! JSON (`bollwerk.fleet/v1`), one self-contained HTML file, JUnit XML or a Prometheus
//! textfile.
//!
//! The input is read leniently: unknown fields are ignored, statuses are kept as strings
//! (a newer audit may add statuses such as `not_evaluated` or `waived`), and missing counts
//! default to zero. Only the schema id, the host and the results are required.
//!
//! **Which report is current.** Reports are grouped by host name (`host.hostname`; when that
//! is empty, `host.root`). Within a host they are ordered by `timestamp` (then `started`,
//! then command-line order): the newest is the host's current report, the one before it is
//! the baseline its drift is measured against. A host given once has no drift.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use super::check::section_name;
use super::report::xml_escape;
use super::result::REPORT_SCHEMA;
use crate::error::{Error, ExitStatus, Result};

/// Schema id of the fleet report's JSON.
pub const FLEET_SCHEMA: &str = "bollwerk.fleet/v1";

/// `bollwerk report …`.
#[derive(Debug, Subcommand, Clone)]
pub enum ReportCommand {
    /// Combine the JSON audit reports of many hosts into one fleet report (the newest report
    /// of a host is current, the one before it the baseline for its drift).
    Merge(MergeArgs),
}

/// `bollwerk report merge` arguments.
#[derive(Debug, Args, Clone)]
pub struct MergeArgs {
    /// JSON audit reports (`bollwerk audit --format json`), any number of hosts, several
    /// reports of one host allowed.
    #[arg(required = true, value_name = "REPORT.json")]
    pub reports: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FleetFormat::Text)]
    pub format: FleetFormat,
    /// Write the fleet report to this file (atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Fleet report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FleetFormat {
    /// A summary for a terminal.
    Text,
    /// `bollwerk.fleet/v1` JSON.
    Json,
    /// One self-contained HTML file.
    Html,
    /// JUnit XML: one testsuite per host, one testcase per check.
    Junit,
    /// Prometheus textfile: per-host scores, failing hosts per check, section pass rates.
    Prometheus,
}

// ---- lenient input model -------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct InReport {
    schema: String,
    #[serde(default)]
    host: InHost,
    #[serde(default)]
    started: String,
    #[serde(default)]
    timestamp: u64,
    #[serde(default)]
    summary: Option<InSummary>,
    results: Vec<InResult>,
}

#[derive(Debug, Default, Deserialize)]
struct InHost {
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    root: String,
}

#[derive(Debug, Deserialize)]
struct InSummary {
    #[serde(default)]
    score: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct InResult {
    id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    section: String,
    #[serde(default)]
    cis: Option<String>,
    #[serde(default)]
    severity: String,
    status: String,
    #[serde(default)]
    evidence: String,
}

// ---- fleet model ---------------------------------------------------------------------

/// Status counts of one host's current report (any status name is counted).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostCounts {
    /// Passed.
    pub pass: u32,
    /// Failed.
    pub fail: u32,
    /// Every other status by name (`not_applicable`, `error`, `skipped`, …).
    pub other: BTreeMap<String, u32>,
}

/// One result of a host's current report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostResult {
    /// Check id.
    pub id: String,
    /// Section.
    pub section: String,
    /// Status name.
    pub status: String,
    /// Evidence.
    pub evidence: String,
    /// Severity name.
    pub severity: String,
    /// Title.
    pub title: String,
}

/// What changed on a host since its baseline report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Drift {
    /// `started` of the baseline report.
    pub since: String,
    /// The baseline's file.
    pub baseline_file: String,
    /// The baseline's score.
    pub score_before: Option<f64>,
    /// Score now minus score before (percentage points), when both exist.
    pub score_delta: Option<f64>,
    /// Checks failing now that did not fail before.
    pub newly_failing: Vec<String>,
    /// Checks that failed before and do not now.
    pub newly_passing: Vec<String>,
}

/// One host of the fleet.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetHost {
    /// Host name (or root when the report has no host name).
    pub host: String,
    /// The current report's file.
    pub file: String,
    /// Its start time.
    pub started: String,
    /// Its timestamp.
    pub timestamp: u64,
    /// Score of the current report (pass / (pass + fail), %).
    pub score: Option<f64>,
    /// Counts of the current report.
    pub counts: HostCounts,
    /// Reports of this host given.
    pub reports: usize,
    /// Drift since the previous report, when there is one.
    pub drift: Option<Drift>,
    /// The current report's results.
    #[serde(skip)]
    pub results: Vec<HostResult>,
}

/// A check failing on at least one host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetCheck {
    /// Check id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Section.
    pub section: String,
    /// CIS number.
    pub cis: Option<String>,
    /// Severity name.
    pub severity: String,
    /// Hosts where it fails, with their evidence.
    pub failing: Vec<HostEvidence>,
    /// Hosts where it passes.
    pub passing: u32,
}

/// A host and the evidence of one result there.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostEvidence {
    /// Host.
    pub host: String,
    /// Evidence.
    pub evidence: String,
}

/// The fleet's pass rate in one section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetSection {
    /// Section id.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Passed results over all hosts.
    pub pass: u32,
    /// Failed results over all hosts.
    pub fail: u32,
    /// pass / (pass + fail) in %, one decimal; `None` when nothing was judged.
    pub pass_rate: Option<f64>,
    /// Hosts with at least one failure in the section.
    pub hosts_failing: u32,
}

/// The fleet report (`bollwerk.fleet/v1`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fleet {
    /// `bollwerk.fleet/v1`.
    pub schema: String,
    /// Reports read.
    pub reports: usize,
    /// pass / (pass + fail) over every host's current report, %.
    pub pass_rate: Option<f64>,
    /// Hosts, lowest score first.
    pub hosts: Vec<FleetHost>,
    /// Checks failing somewhere, most failing hosts first (then severity).
    pub checks: Vec<FleetCheck>,
    /// Pass rate per section, in section order.
    pub sections: Vec<FleetSection>,
}

fn rate(pass: u32, fail: u32) -> Option<f64> {
    let judged = pass + fail;
    (judged > 0).then(|| (f64::from(pass) * 1000.0 / f64::from(judged)).round() / 10.0)
}

fn severity_rank(s: &str) -> u8 {
    match s {
        "critical" => 4,
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    }
}

fn section_key(s: &str) -> (u32, String) {
    (s.parse::<u32>().unwrap_or(u32::MAX), s.to_string())
}

/// A parsed input report with the file it came from and its command-line position.
struct Input {
    file: String,
    pos: usize,
    r: InReport,
}

fn parse(text: &str, file: &str, pos: usize) -> Result<Input> {
    let r: InReport = serde_json::from_str(text).map_err(|e| {
        Error::Usage(format!(
            "{file}:{}:{}: not a bollwerk audit report: {e}\n  hint: pass the output of `bollwerk audit --format json`",
            e.line(),
            e.column()
        ))
    })?;
    if r.schema != REPORT_SCHEMA {
        return Err(Error::Usage(format!(
            "{file}: schema is {:?}, expected {REPORT_SCHEMA}\n  hint: pass the output of `bollwerk audit --format json`",
            r.schema
        )));
    }
    Ok(Input {
        file: file.to_string(),
        pos,
        r,
    })
}

fn host_name(r: &InReport) -> String {
    if !r.host.hostname.trim().is_empty() {
        r.host.hostname.trim().to_string()
    } else if !r.host.root.is_empty() {
        r.host.root.clone()
    } else {
        "unknown".into()
    }
}

fn score_of(r: &InReport) -> Option<f64> {
    r.summary.as_ref().and_then(|s| s.score).or_else(|| {
        let pass = r.results.iter().filter(|x| x.status == "pass").count() as u32;
        let fail = r.results.iter().filter(|x| x.status == "fail").count() as u32;
        rate(pass, fail)
    })
}

fn failing_ids(r: &InReport) -> Vec<String> {
    r.results
        .iter()
        .filter(|x| x.status == "fail")
        .map(|x| x.id.clone())
        .collect()
}

fn drift(base: &Input, now: &Input) -> Drift {
    let before = failing_ids(&base.r);
    let now_failing = failing_ids(&now.r);
    let score_before = score_of(&base.r);
    let score_now = score_of(&now.r);
    Drift {
        since: base.r.started.clone(),
        baseline_file: base.file.clone(),
        score_before,
        score_delta: score_before
            .zip(score_now)
            .map(|(b, n)| ((n - b) * 10.0).round() / 10.0),
        newly_failing: now_failing
            .iter()
            .filter(|id| !before.contains(id))
            .cloned()
            .collect(),
        // Failed before, and now judged something other than fail (a check that left the
        // catalog does not count as fixed).
        newly_passing: before
            .iter()
            .filter(|id| {
                now.r
                    .results
                    .iter()
                    .any(|x| &x.id == *id && x.status != "fail")
            })
            .cloned()
            .collect(),
    }
}

fn fleet_host(host: String, list: &[Input]) -> FleetHost {
    let cur = &list[list.len() - 1];
    let mut counts = HostCounts::default();
    for x in &cur.r.results {
        match x.status.as_str() {
            "pass" => counts.pass += 1,
            "fail" => counts.fail += 1,
            other => *counts.other.entry(other.to_string()).or_default() += 1,
        }
    }
    FleetHost {
        host,
        file: cur.file.clone(),
        started: cur.r.started.clone(),
        timestamp: cur.r.timestamp,
        score: score_of(&cur.r),
        counts,
        reports: list.len(),
        drift: (list.len() > 1).then(|| drift(&list[list.len() - 2], cur)),
        results: cur
            .r
            .results
            .iter()
            .map(|x| HostResult {
                id: x.id.clone(),
                section: x.section.clone(),
                status: x.status.clone(),
                evidence: x.evidence.clone(),
                severity: x.severity.clone(),
                title: x.title.clone(),
            })
            .collect(),
    }
}

/// Merges parsed reports: groups by host, picks current and baseline, aggregates.
fn merge_inputs(inputs: Vec<Input>) -> Fleet {
    let n = inputs.len();
    let mut by_host: BTreeMap<String, Vec<Input>> = BTreeMap::new();
    for i in inputs {
        by_host.entry(host_name(&i.r)).or_default().push(i);
    }
    let mut hosts = Vec::new();
    let mut meta: BTreeMap<String, (String, String, Option<String>, String)> = BTreeMap::new();
    for (h, mut list) in by_host {
        list.sort_by(|a, b| {
            (a.r.timestamp, &a.r.started, a.pos).cmp(&(b.r.timestamp, &b.r.started, b.pos))
        });
        if let Some(cur) = list.last() {
            for x in &cur.r.results {
                meta.entry(x.id.clone()).or_insert_with(|| {
                    (
                        x.title.clone(),
                        x.section.clone(),
                        x.cis.clone(),
                        x.severity.clone(),
                    )
                });
            }
        }
        hosts.push(fleet_host(h, &list));
    }
    let mut checks: Vec<FleetCheck> = Vec::new();
    for (id, (title, section, cis, severity)) in meta {
        let mut failing = Vec::new();
        let mut passing = 0;
        for h in &hosts {
            if let Some(x) = h.results.iter().find(|x| x.id == id) {
                match x.status.as_str() {
                    "fail" => failing.push(HostEvidence {
                        host: h.host.clone(),
                        evidence: x.evidence.clone(),
                    }),
                    "pass" => passing += 1,
                    _ => {}
                }
            }
        }
        if !failing.is_empty() {
            checks.push(FleetCheck {
                id,
                title,
                section,
                cis,
                severity,
                failing,
                passing,
            });
        }
    }
    checks.sort_by(|a, b| {
        b.failing
            .len()
            .cmp(&a.failing.len())
            .then(severity_rank(&b.severity).cmp(&severity_rank(&a.severity)))
            .then(a.id.cmp(&b.id))
    });
    let mut secs: BTreeMap<(u32, String), FleetSection> = BTreeMap::new();
    for h in &hosts {
        let mut failed_here: Vec<&str> = Vec::new();
        for x in &h.results {
            let s = secs
                .entry(section_key(&x.section))
                .or_insert_with(|| FleetSection {
                    id: x.section.clone(),
                    name: section_name(&x.section).to_string(),
                    pass: 0,
                    fail: 0,
                    pass_rate: None,
                    hosts_failing: 0,
                });
            match x.status.as_str() {
                "pass" => s.pass += 1,
                "fail" => {
                    s.fail += 1;
                    if !failed_here.contains(&x.section.as_str()) {
                        failed_here.push(&x.section);
                        s.hosts_failing += 1;
                    }
                }
                _ => {}
            }
        }
    }
    let mut sections: Vec<FleetSection> = secs.into_values().collect();
    for s in &mut sections {
        s.pass_rate = rate(s.pass, s.fail);
    }
    let pass = sections.iter().map(|s| s.pass).sum();
    let fail = sections.iter().map(|s| s.fail).sum();
    hosts.sort_by(|a, b| {
        a.score
            .unwrap_or(f64::INFINITY)
            .total_cmp(&b.score.unwrap_or(f64::INFINITY))
            .then(a.host.cmp(&b.host))
    });
    Fleet {
        schema: FLEET_SCHEMA.into(),
        reports: n,
        pass_rate: rate(pass, fail),
        hosts,
        checks,
        sections,
    }
}

/// Merges reports given as `(file name, JSON text)`, in command-line order.
///
/// # Errors
/// A text that is not a `bollwerk.report/v1` document (exit 2, with file:line:col).
pub fn merge_texts(texts: &[(String, String)]) -> Result<Fleet> {
    let inputs = texts
        .iter()
        .enumerate()
        .map(|(i, (f, t))| parse(t, f, i))
        .collect::<Result<Vec<_>>>()?;
    Ok(merge_inputs(inputs))
}

/// Reads and merges report files.
///
/// # Errors
/// An unreadable file or one that is not a report (exit 2).
pub fn merge_files(files: &[PathBuf]) -> Result<Fleet> {
    let mut texts = Vec::new();
    for f in files {
        let t = std::fs::read_to_string(f).map_err(|e| {
            Error::Usage(format!(
                "{}: cannot read the report: {e}\n  hint: pass JSON reports written by `bollwerk audit --format json`",
                f.display()
            ))
        })?;
        texts.push((f.display().to_string(), t));
    }
    merge_texts(&texts)
}

// ---- renderers -----------------------------------------------------------------------

fn pct(s: Option<f64>) -> String {
    s.map_or_else(|| "–".into(), |x| format!("{x:.1} %"))
}

fn delta(d: Option<f64>) -> String {
    match d {
        Some(x) if x > 0.0 => format!("+{x:.1}"),
        Some(x) => format!("{x:.1}"),
        None => "–".into(),
    }
}

/// Renders the fleet in `format`.
///
/// # Errors
/// Only when the HTML template fails to render.
pub fn render(f: &Fleet, format: FleetFormat) -> Result<String> {
    Ok(match format {
        FleetFormat::Text => text(f),
        FleetFormat::Json => {
            let mut s = serde_json::to_string_pretty(f).unwrap_or_else(|_| "{}".into());
            s.push('\n');
            s
        }
        FleetFormat::Html => html(f)?,
        FleetFormat::Junit => junit(f),
        FleetFormat::Prometheus => prometheus(f),
    })
}

/// The terminal summary.
pub fn text(f: &Fleet) -> String {
    let mut s = format!(
        "Fleet: {} host{} ({} report{}), pass rate {}\n\nHosts (lowest score first):\n",
        f.hosts.len(),
        if f.hosts.len() == 1 { "" } else { "s" },
        f.reports,
        if f.reports == 1 { "" } else { "s" },
        pct(f.pass_rate)
    );
    for h in &f.hosts {
        let _ = write!(
            s,
            "  {:<24} {:>8}  {} fail  {}",
            h.host,
            pct(h.score),
            h.counts.fail,
            h.started
        );
        match &h.drift {
            Some(d) => {
                let _ = writeln!(
                    s,
                    "  drift since {}: {} ({} newly failing, {} newly passing)",
                    d.since,
                    delta(d.score_delta),
                    d.newly_failing.len(),
                    d.newly_passing.len()
                );
                for id in &d.newly_failing {
                    let _ = writeln!(s, "      newly failing {id}");
                }
            }
            None => s.push('\n'),
        }
    }
    s.push_str("\nSections:\n");
    for x in &f.sections {
        let _ = writeln!(
            s,
            "  {:<10} {:>8}  {} hosts failing  {}",
            x.id,
            pct(x.pass_rate),
            x.hosts_failing,
            x.name
        );
    }
    if f.checks.is_empty() {
        s.push_str("\nNo check fails on any host.\n");
    } else {
        s.push_str("\nFailing checks (most hosts first):\n");
        for c in &f.checks {
            let hosts: Vec<&str> = c.failing.iter().map(|h| h.host.as_str()).collect();
            let _ = writeln!(
                s,
                "  {:<8} {} ({}/{}): {}",
                c.severity,
                c.id,
                c.failing.len(),
                c.failing.len() as u32 + c.passing,
                hosts.join(", ")
            );
        }
    }
    s
}

const HTML_TEMPLATE: &str = include_str!("merge.html.j2");

/// The self-contained HTML fleet report.
///
/// # Errors
/// When the template fails to render.
pub fn html(f: &Fleet) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_template("merge.html", HTML_TEMPLATE)
        .map_err(|e| Error::Runtime(format!("html template: {e}")))?;
    let t = env
        .get_template("merge.html")
        .map_err(|e| Error::Runtime(format!("html template: {e}")))?;
    let hosts: Vec<serde_json::Value> = f
        .hosts
        .iter()
        .map(|h| {
            serde_json::json!({
                "host": h.host, "file": h.file, "started": h.started,
                "score": pct(h.score), "score_num": h.score.unwrap_or(0.0),
                "pass": h.counts.pass, "fail": h.counts.fail,
                "other": h.counts.other, "reports": h.reports,
                "drift": h.drift.as_ref().map(|d| serde_json::json!({
                    "since": d.since, "delta": delta(d.score_delta),
                    "up": d.score_delta.is_some_and(|x| x > 0.0),
                    "down": d.score_delta.is_some_and(|x| x < 0.0),
                    "newly_failing": d.newly_failing, "newly_passing": d.newly_passing,
                })),
            })
        })
        .collect();
    let sections: Vec<serde_json::Value> = f
        .sections
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": s.id, "name": s.name, "pass": s.pass, "fail": s.fail,
                "rate": pct(s.pass_rate), "rate_num": s.pass_rate.unwrap_or(0.0),
                "hosts_failing": s.hosts_failing,
            })
        })
        .collect();
    t.render(minijinja::context! {
        f => minijinja::Value::from_serialize(f),
        hosts => minijinja::Value::from_serialize(&hosts),
        sections => minijinja::Value::from_serialize(&sections),
        pass_rate => pct(f.pass_rate),
        version => env!("CARGO_PKG_VERSION"),
    })
    .map_err(|e| Error::Runtime(format!("rendering html: {e:#}")))
}

/// JUnit XML: one testsuite per host (its current report), one testcase per result.
pub fn junit(f: &Fleet) -> String {
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let total: usize = f.hosts.iter().map(|h| h.results.len()).sum();
    let fails: u32 = f.hosts.iter().map(|h| h.counts.fail).sum();
    let _ = writeln!(
        s,
        "<testsuites name=\"bollwerk fleet\" tests=\"{total}\" failures=\"{fails}\">"
    );
    for h in &f.hosts {
        let errors = h.counts.other.get("error").copied().unwrap_or(0);
        let skipped = h.results.len() as u32 - h.counts.pass - h.counts.fail - errors;
        let _ = writeln!(
            s,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{errors}\" skipped=\"{skipped}\" timestamp=\"{}\">",
            xml_escape(&h.host),
            h.results.len(),
            h.counts.fail,
            xml_escape(&h.started)
        );
        for x in &h.results {
            let _ = write!(
                s,
                "    <testcase classname=\"{}.{}\" name=\"{}\"",
                xml_escape(&h.host),
                xml_escape(&x.section),
                xml_escape(&format!("{} {}", x.id, x.title))
            );
            match x.status.as_str() {
                "pass" => s.push_str("/>\n"),
                "fail" => {
                    let _ = writeln!(
                        s,
                        ">\n      <failure message=\"{}\" type=\"{}\"/>\n    </testcase>",
                        xml_escape(&x.evidence),
                        xml_escape(&x.severity)
                    );
                }
                "error" => {
                    let _ = writeln!(
                        s,
                        ">\n      <error message=\"{}\" type=\"error\"/>\n    </testcase>",
                        xml_escape(&x.evidence)
                    );
                }
                other => {
                    let _ = writeln!(
                        s,
                        ">\n      <skipped message=\"{}: {}\"/>\n    </testcase>",
                        xml_escape(other),
                        xml_escape(&x.evidence)
                    );
                }
            }
        }
        s.push_str("  </testsuite>\n");
    }
    s.push_str("</testsuites>\n");
    s
}

fn prom_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text format: fleet and per-host scores, failing hosts per check, section
/// pass rates (0..1).
pub fn prometheus(f: &Fleet) -> String {
    let mut s = String::from(
        "# HELP bollwerk_fleet_hosts Hosts in the fleet report.\n# TYPE bollwerk_fleet_hosts gauge\n",
    );
    let _ = writeln!(s, "bollwerk_fleet_hosts {}", f.hosts.len());
    s.push_str("# HELP bollwerk_fleet_pass_rate Passed / (passed + failed) over every host, 0..1.\n# TYPE bollwerk_fleet_pass_rate gauge\n");
    let _ = writeln!(
        s,
        "bollwerk_fleet_pass_rate {}",
        f.pass_rate.map_or(0.0, |x| x / 100.0)
    );
    for x in &f.sections {
        if let Some(r) = x.pass_rate {
            let _ = writeln!(
                s,
                "bollwerk_fleet_pass_rate{{section=\"{}\"}} {}",
                prom_label(&x.id),
                r / 100.0
            );
        }
    }
    s.push_str("# HELP bollwerk_fleet_host_score Compliance score of a host's newest report, 0..1.\n# TYPE bollwerk_fleet_host_score gauge\n");
    for h in &f.hosts {
        if let Some(sc) = h.score {
            let _ = writeln!(
                s,
                "bollwerk_fleet_host_score{{host=\"{}\"}} {}",
                prom_label(&h.host),
                sc / 100.0
            );
        }
    }
    s.push_str("# HELP bollwerk_fleet_host_score_delta Score change since the host's previous report, percentage points.\n# TYPE bollwerk_fleet_host_score_delta gauge\n");
    for h in &f.hosts {
        if let Some(d) = h.drift.as_ref().and_then(|d| d.score_delta) {
            let _ = writeln!(
                s,
                "bollwerk_fleet_host_score_delta{{host=\"{}\"}} {d}",
                prom_label(&h.host)
            );
        }
    }
    s.push_str("# HELP bollwerk_fleet_check_failing_hosts Hosts on which a check fails.\n# TYPE bollwerk_fleet_check_failing_hosts gauge\n");
    for c in &f.checks {
        let _ = writeln!(
            s,
            "bollwerk_fleet_check_failing_hosts{{id=\"{}\",severity=\"{}\",section=\"{}\"}} {}",
            prom_label(&c.id),
            prom_label(&c.severity),
            prom_label(&c.section),
            c.failing.len()
        );
    }
    s
}

/// `bollwerk report merge`: reads, merges, renders to stdout or `--output` (atomically).
///
/// # Errors
/// Bad input (exit 2) or an unwritable output file.
pub fn cmd(a: &MergeArgs, out: &mut dyn std::io::Write) -> Result<ExitStatus> {
    let fleet = merge_files(&a.reports)?;
    let body = render(&fleet, a.format)?;
    match &a.output {
        Some(p) => super::cmd::write_file_atomic(Path::new(p), body.as_bytes())?,
        None => out
            .write_all(body.as_bytes())
            .map_err(|e| Error::io("writing output", "stdout", e))?,
    }
    Ok(ExitStatus::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(host: &str, ts: u64, results: &[(&str, &str, &str)]) -> String {
        let rs: Vec<serde_json::Value> = results
            .iter()
            .map(|(id, sec, st)| {
                serde_json::json!({"id": id, "title": id, "section": sec, "severity": "high",
                    "status": st, "evidence": "e", "future_field": 1})
            })
            .collect();
        serde_json::json!({"schema": REPORT_SCHEMA, "host": {"hostname": host, "root": "/"},
            "started": format!("t{ts}"), "timestamp": ts, "results": rs})
        .to_string()
    }

    #[test]
    fn newest_is_current_previous_is_baseline() {
        let texts = vec![
            (
                "new.json".into(),
                rep("a", 20, &[("x", "5", "fail"), ("y", "5", "pass")]),
            ),
            (
                "old.json".into(),
                rep("a", 10, &[("x", "5", "pass"), ("y", "5", "fail")]),
            ),
            (
                "oldest.json".into(),
                rep("a", 5, &[("x", "5", "fail"), ("y", "5", "fail")]),
            ),
        ];
        let f = merge_texts(&texts).unwrap();
        assert_eq!(f.hosts.len(), 1);
        let h = &f.hosts[0];
        assert_eq!(h.file, "new.json");
        let d = h.drift.as_ref().unwrap();
        assert_eq!(d.baseline_file, "old.json");
        assert_eq!(d.newly_failing, ["x"]);
        assert_eq!(d.newly_passing, ["y"]);
        assert_eq!(d.score_delta, Some(0.0));
    }

    #[test]
    fn unknown_statuses_are_counted_not_judged() {
        let texts = vec![(
            "a.json".into(),
            rep(
                "a",
                1,
                &[
                    ("x", "5", "waived"),
                    ("y", "5", "not_evaluated"),
                    ("z", "5", "pass"),
                ],
            ),
        )];
        let f = merge_texts(&texts).unwrap();
        assert_eq!(f.hosts[0].score, Some(100.0));
        assert_eq!(f.hosts[0].counts.other.get("waived"), Some(&1));
        assert_eq!(f.sections[0].pass_rate, Some(100.0));
    }
}
