//! Report renderers (text, JSON, HTML, JUnit XML, Prometheus textfile, Markdown), the
//! comparison of two reports (`--compare`), and saved-report history (`--save`).

use std::fmt::Write as _;

use super::check::Severity;
use super::result::{CheckResult, Report, Status};
use crate::error::{Error, Result};
use crate::root::{Perms, RelPath, Root};

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// A grouped table for a terminal (colour only on a TTY), failures first with their fix.
    Text,
    /// `bollwerk.report/v1` JSON (docs/report-schema.json).
    Json,
    /// One self-contained HTML file for auditors.
    Html,
    /// JUnit XML, one testcase per check.
    Junit,
    /// Prometheus node_exporter textfile format.
    Prometheus,
    /// Markdown for a ticket or a wiki.
    Markdown,
}

/// Renders `report` in `format`.
///
/// # Errors
/// Only when the HTML template fails to render.
pub fn render(report: &Report, format: ReportFormat, color: bool) -> Result<String> {
    Ok(match format {
        ReportFormat::Text => text(report, color),
        ReportFormat::Json => json(report),
        ReportFormat::Html => html(report)?,
        ReportFormat::Junit => junit(report),
        ReportFormat::Prometheus => prometheus(report),
        ReportFormat::Markdown => markdown(report),
    })
}

fn paint(s: &str, code: &str, color: bool) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn status_color(s: Status) -> &'static str {
    match s {
        Status::Pass => "32",
        Status::Fail => "1;31",
        Status::Error => "33",
        Status::NotApplicable => "2",
        Status::NotEvaluated => "36",
        Status::Waived => "34",
        Status::Skipped => "35",
    }
}

fn score_text(score: Option<f64>) -> String {
    score.map_or("n/a".into(), |s| format!("{s:.1} %"))
}

/// Section counts in one line: `3 pass, 1 fail, …`.
fn counts_line(c: &super::result::Counts) -> String {
    format!(
        "{} pass, {} fail, {} error, {} not evaluated, {} waived, {} n/a, {} skipped",
        c.pass, c.fail, c.error, c.not_evaluated, c.waived, c.not_applicable, c.skipped
    )
}

/// Results with status `st`.
fn with_status(r: &Report, st: Status) -> Vec<&CheckResult> {
    r.results.iter().filter(|x| x.status == st).collect()
}

fn fix_text(r: &CheckResult) -> String {
    r.fix.to_string()
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!(
            "{}…",
            s.chars().take(n.saturating_sub(1)).collect::<String>()
        )
    }
}

/// The terminal report.
pub fn text(r: &Report, color: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} {} ({}{}), level {}{}",
        paint("Audit of", "1", color),
        if r.host.hostname.is_empty() {
            &r.host.root
        } else {
            &r.host.hostname
        },
        if r.host.os.is_empty() {
            "unknown OS"
        } else {
            &r.host.os
        },
        r.host
            .container
            .as_ref()
            .map(|c| format!(", container {c}"))
            .unwrap_or_default(),
        r.level,
        r.profile
            .as_ref()
            .map(|p| format!(", profile {}", p.name))
            .unwrap_or_default()
    );
    let _ = writeln!(s, "benchmark: {}", r.benchmark.note);
    for w in &r.warnings {
        let _ = writeln!(s, "{} {w}", paint("warning:", "33", color));
    }
    let fails = r.failures();
    if !fails.is_empty() {
        let _ = writeln!(
            s,
            "\n{}",
            paint(&format!("FAILURES ({})", fails.len()), "1;31", color)
        );
        for f in &fails {
            let _ = writeln!(
                s,
                "  {} {:<8} {}{}  {}",
                paint("✗", "31", color),
                f.severity.as_str(),
                paint(&f.id, "1", color),
                f.cis
                    .as_ref()
                    .map(|c| format!(" [CIS {c}]"))
                    .unwrap_or_default(),
                f.title
            );
            let _ = writeln!(s, "      found:    {}", f.evidence);
            let _ = writeln!(s, "      expected: {}", f.expected);
            let _ = writeln!(s, "      fix:      {}", fix_text(f));
            if let Some(d) = &f.disposition {
                let _ = writeln!(s, "      {}: {}", d.kind.as_str(), d.reason);
            }
        }
    }
    let errors = with_status(r, Status::Error);
    if !errors.is_empty() {
        let _ = writeln!(
            s,
            "\n{}",
            paint(&format!("ERRORS ({})", errors.len()), "33", color)
        );
        for e in errors {
            let _ = writeln!(s, "  ? {}  {}", e.id, e.evidence);
        }
    }
    let waived = with_status(r, Status::Waived);
    if !waived.is_empty() {
        let _ = writeln!(
            s,
            "\n{}",
            paint(&format!("WAIVED ({})", waived.len()), "34", color)
        );
        for x in waived {
            if let Some(w) = &x.waiver {
                let _ = writeln!(
                    s,
                    "  ~ {}  {} (approved by {}, until {}; verdict {})",
                    x.id,
                    w.reason,
                    if w.approved_by.is_empty() {
                        "-"
                    } else {
                        &w.approved_by
                    },
                    w.expires.as_deref().unwrap_or("-"),
                    w.verdict
                );
            }
        }
    }
    for sec in &r.summary.sections {
        let _ = writeln!(
            s,
            "\n{}",
            paint(
                &format!(
                    "{} {}  score {}  ({})",
                    sec.id,
                    sec.name,
                    score_text(sec.counts.score),
                    counts_line(&sec.counts)
                ),
                "1",
                color
            )
        );
        let mut rows: Vec<&CheckResult> =
            r.results.iter().filter(|x| x.section == sec.id).collect();
        rows.sort_by_key(|x| Status::ALL.iter().position(|s| *s == x.status));
        for x in rows {
            let st = format!(
                "{:<6}",
                match x.status {
                    Status::Pass => "pass",
                    Status::Fail => "FAIL",
                    Status::NotApplicable => "n/a",
                    Status::Error => "error",
                    Status::NotEvaluated => "n/eval",
                    Status::Waived => "waived",
                    Status::Skipped => "skip",
                }
            );
            let _ = writeln!(
                s,
                "  {} {:<10} {:<44} {}",
                paint(&st, status_color(x.status), color),
                x.cis.as_deref().unwrap_or("-"),
                truncate(&x.id, 44),
                truncate(&x.evidence, 110)
            );
        }
    }
    let c = &r.summary.counts;
    let _ = writeln!(
        s,
        "\n{} {}\n{}; {} checks in {:.3} s",
        paint("Score", "1", color),
        paint(
            &c.score_text(),
            if c.fail == 0 { "1;32" } else { "1;31" },
            color
        ),
        counts_line(c),
        c.total(),
        r.duration_seconds
    );
    s
}

/// The JSON report.
pub fn json(r: &Report) -> String {
    let mut s = serde_json::to_string_pretty(r).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

const HTML_TEMPLATE: &str = include_str!("report.html.j2");

/// The fix, followed by the catalog's `manual` / `site-specific` reason when there is one.
fn fix_with_disposition(x: &CheckResult) -> String {
    match &x.disposition {
        Some(d) => format!("{} ({}: {})", fix_text(x), d.kind.as_str(), d.reason),
        None => fix_text(x),
    }
}

/// The self-contained HTML report.
///
/// # Errors
/// When the template fails to render.
pub fn html(r: &Report) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.add_template("report.html", HTML_TEMPLATE)
        .map_err(|e| Error::Runtime(format!("html template: {e}")))?;
    let t = env
        .get_template("report.html")
        .map_err(|e| Error::Runtime(format!("html template: {e}")))?;
    let score_color = match r.summary.counts.score {
        Some(s) if s >= 90.0 => "#1a7f37",
        Some(s) if s >= 70.0 => "#9a6700",
        Some(_) => "#cf222e",
        None => "#57606a",
    };
    t.render(minijinja::context! {
        r => minijinja::Value::from_serialize(r),
        failures => minijinja::Value::from_serialize(r.failures()),
        score_text => score_text(r.summary.counts.score),
        score_basis => r.summary.counts.score_text(),
        score_color => score_color,
    })
    .map_err(|e| Error::Runtime(format!("rendering html: {e:#}")))
}

/// Escapes text for XML.
pub fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {}
            c => o.push(c),
        }
    }
    o
}

/// JUnit XML: one testsuite per section, one testcase per check.
pub fn junit(r: &Report) -> String {
    let c = &r.summary.counts;
    let mut s = String::new();
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"bollwerk audit\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\" timestamp=\"{}\">",
        c.total(),
        c.fail,
        c.error,
        c.not_applicable + c.skipped + c.not_evaluated + c.waived,
        r.duration_seconds,
        r.started
    );
    let _ = writeln!(
        s,
        "<!-- {}; score {}; {} -->",
        xml_escape(&r.benchmark.note).replace("--", "- -"),
        xml_escape(&c.score_text()).replace("--", "- -"),
        counts_line(c)
    );
    for sec in &r.summary.sections {
        let sc = &sec.counts;
        let _ = writeln!(
            s,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
            xml_escape(&format!("{} {}", sec.id, sec.name)),
            sc.total(),
            sc.fail,
            sc.error,
            sc.not_applicable + sc.skipped + sc.not_evaluated + sc.waived,
            sec.probe_ms / 1000.0
        );
        for x in r.results.iter().filter(|x| x.section == sec.id) {
            let name = match &x.cis {
                Some(cis) => format!("{} [CIS {cis}] {}", x.id, x.title),
                None => format!("{} {}", x.id, x.title),
            };
            let _ = write!(
                s,
                "    <testcase classname=\"bollwerk.{}\" name=\"{}\"",
                xml_escape(&sec.id),
                xml_escape(&name)
            );
            match x.status {
                Status::Pass => {
                    let _ = writeln!(
                        s,
                        ">\n      <system-out>{}</system-out>\n    </testcase>",
                        xml_escape(&x.evidence)
                    );
                }
                Status::Fail => {
                    let _ = writeln!(
                        s,
                        ">\n      <failure message=\"{}\" type=\"{}\">expected: {}\nfix: {}</failure>\n    </testcase>",
                        xml_escape(&x.evidence),
                        x.severity.as_str(),
                        xml_escape(&x.expected),
                        xml_escape(&fix_with_disposition(x))
                    );
                }
                Status::Error => {
                    let _ = writeln!(
                        s,
                        ">\n      <error message=\"{}\" type=\"error\"/>\n    </testcase>",
                        xml_escape(&x.evidence)
                    );
                }
                Status::NotApplicable | Status::Skipped | Status::NotEvaluated | Status::Waived => {
                    let _ = writeln!(
                        s,
                        ">\n      <skipped message=\"{}: {}\"/>\n    </testcase>",
                        x.status.as_str(),
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

/// Prometheus text exposition format for node_exporter's textfile collector.
pub fn prometheus(r: &Report) -> String {
    let mut s = String::new();
    s.push_str("# HELP bollwerk_check_status Result of one compliance check (1 when the check has this status).\n# TYPE bollwerk_check_status gauge\n");
    for x in &r.results {
        for st in Status::ALL {
            let _ = writeln!(
                s,
                "bollwerk_check_status{{id=\"{}\",cis=\"{}\",severity=\"{}\",section=\"{}\",status=\"{}\"}} {}",
                prom_label(&x.id),
                prom_label(x.cis.as_deref().unwrap_or("")),
                x.severity.as_str(),
                prom_label(&x.section),
                st.as_str(),
                u8::from(x.status == st)
            );
        }
    }
    s.push_str("# HELP bollwerk_compliance_score Passed checks / (passed + failed), 0..1; absent when nothing was judged (see bollwerk_judged_checks).\n# TYPE bollwerk_compliance_score gauge\n");
    if let Some(x) = r.summary.counts.score {
        let _ = writeln!(s, "bollwerk_compliance_score {}", x / 100.0);
    }
    for sec in &r.summary.sections {
        if let Some(sc) = sec.counts.score {
            let _ = writeln!(
                s,
                "bollwerk_compliance_score{{section=\"{}\"}} {}",
                prom_label(&sec.id),
                sc / 100.0
            );
        }
    }
    s.push_str("# HELP bollwerk_judged_checks Checks that passed or failed: the score's denominator.\n# TYPE bollwerk_judged_checks gauge\n");
    let _ = writeln!(s, "bollwerk_judged_checks {}", r.summary.counts.judged);
    s.push_str(
        "# HELP bollwerk_checks Number of checks by status.\n# TYPE bollwerk_checks gauge\n",
    );
    for st in Status::ALL {
        let _ = writeln!(
            s,
            "bollwerk_checks{{status=\"{}\"}} {}",
            st.as_str(),
            r.summary.counts.get(st)
        );
    }
    s.push_str("# HELP bollwerk_failed_checks Failed checks by severity.\n# TYPE bollwerk_failed_checks gauge\n");
    for sev in [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ] {
        let n = r
            .results
            .iter()
            .filter(|x| x.status == Status::Fail && x.severity == sev)
            .count();
        let _ = writeln!(
            s,
            "bollwerk_failed_checks{{severity=\"{}\"}} {n}",
            sev.as_str()
        );
    }
    s.push_str("# HELP bollwerk_audit_duration_seconds Wall time of the audit.\n# TYPE bollwerk_audit_duration_seconds gauge\n");
    let _ = writeln!(s, "bollwerk_audit_duration_seconds {}", r.duration_seconds);
    s.push_str("# HELP bollwerk_last_audit_timestamp_seconds Start of the audit, seconds since the epoch.\n# TYPE bollwerk_last_audit_timestamp_seconds gauge\n");
    let _ = writeln!(s, "bollwerk_last_audit_timestamp_seconds {}", r.timestamp);
    s
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Markdown for a ticket or a wiki.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let c = &r.summary.counts;
    let _ = writeln!(
        s,
        "# Compliance audit: {}\n",
        if r.host.hostname.is_empty() {
            &r.host.root
        } else {
            &r.host.hostname
        }
    );
    let _ = writeln!(s, "- **Score:** {}", c.score_text());
    let _ = writeln!(s, "- **Counts:** {}", counts_line(c));
    let _ = writeln!(
        s,
        "- **Host:** {}{}",
        if r.host.os.is_empty() {
            "unknown OS"
        } else {
            &r.host.os
        },
        r.host
            .container
            .as_ref()
            .map(|c| format!(" (container: {c})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "- **Benchmark:** {}, level {}",
        md_cell(&r.benchmark.note),
        r.level
    );
    for w in &r.warnings {
        let _ = writeln!(s, "- **Warning:** {}", md_cell(w));
    }
    if let Some(p) = &r.profile {
        let _ = writeln!(s, "- **Profile:** {}", p.name);
    }
    let _ = writeln!(
        s,
        "- **Audited:** {} by {} {} in {:.3} s\n",
        r.started, r.tool.name, r.tool.version, r.duration_seconds
    );
    s.push_str("## Sections\n\n| Section | Score | Pass | Fail | Error | Not evaluated | Waived | N/A | Skipped |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for sec in &r.summary.sections {
        let sc = &sec.counts;
        let _ = writeln!(
            s,
            "| {} {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            sec.id,
            md_cell(&sec.name),
            score_text(sc.score),
            sc.pass,
            sc.fail,
            sc.error,
            sc.not_evaluated,
            sc.waived,
            sc.not_applicable,
            sc.skipped
        );
    }
    let fails = r.failures();
    if !fails.is_empty() {
        let _ = writeln!(s, "\n## Failures ({})\n", fails.len());
        s.push_str("| Severity | Check | CIS | Evidence | Fix |\n|---|---|---|---|---|\n");
        for f in fails {
            let _ = writeln!(
                s,
                "| {} | `{}` {} | {} | {} | {} |",
                f.severity,
                f.id,
                md_cell(&f.title),
                f.cis.as_deref().unwrap_or(""),
                md_cell(&f.evidence),
                md_cell(&fix_with_disposition(f))
            );
        }
    }
    let errs = with_status(r, Status::Error);
    if !errs.is_empty() {
        let _ = writeln!(s, "\n## Errors ({})\n", errs.len());
        for e in errs {
            let _ = writeln!(s, "- `{}`: {}", e.id, md_cell(&e.evidence));
        }
    }
    let waived = with_status(r, Status::Waived);
    if !waived.is_empty() {
        let _ = writeln!(s, "\n## Waived ({})\n", waived.len());
        s.push_str("| Check | Reason | Approved by | Expires | Verdict |\n|---|---|---|---|---|\n");
        for x in waived {
            if let Some(w) = &x.waiver {
                let _ = writeln!(
                    s,
                    "| `{}` | {} | {} | {} | {} |",
                    x.id,
                    md_cell(&w.reason),
                    md_cell(&w.approved_by),
                    w.expires.as_deref().unwrap_or(""),
                    w.verdict
                );
            }
        }
    }
    s.push_str("\n<details><summary>All results</summary>\n\n| Status | Check | CIS | Evidence |\n|---|---|---|---|\n");
    for x in &r.results {
        let _ = writeln!(
            s,
            "| {} | `{}` | {} | {} |",
            x.status,
            x.id,
            x.cis.as_deref().unwrap_or(""),
            md_cell(&x.evidence)
        );
    }
    s.push_str("\n</details>\n");
    s
}

/// What changed between two reports.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Comparison {
    /// When the earlier report was made.
    pub since: String,
    /// Score before.
    pub score_before: Option<f64>,
    /// Score now.
    pub score_now: Option<f64>,
    /// Checks that fail now but did not before: (id, evidence now).
    pub newly_failing: Vec<(String, String)>,
    /// Checks that pass now but did not before: (id, evidence now).
    pub newly_passing: Vec<(String, String)>,
    /// Other status changes: (id, before, now).
    pub changed: Vec<(String, Status, Status)>,
    /// Checks only in the new report.
    pub new_checks: Vec<String>,
}

/// Compares `before` with `now`.
pub fn compare(before: &Report, now: &Report) -> Comparison {
    let mut c = Comparison {
        since: before.started.clone(),
        score_before: before.summary.counts.score,
        score_now: now.summary.counts.score,
        ..Default::default()
    };
    for x in &now.results {
        match before.results.iter().find(|b| b.id == x.id) {
            None => c.new_checks.push(x.id.clone()),
            Some(b) if b.status == x.status => {}
            Some(b) => {
                if x.status == Status::Fail {
                    c.newly_failing.push((x.id.clone(), x.evidence.clone()));
                } else if x.status == Status::Pass {
                    c.newly_passing.push((x.id.clone(), x.evidence.clone()));
                } else {
                    c.changed.push((x.id.clone(), b.status, x.status));
                }
            }
        }
    }
    c
}

/// The comparison as text.
pub fn comparison_text(c: &Comparison, color: bool) -> String {
    let mut s = format!(
        "\nSince {}: score {} → {}\n",
        c.since,
        score_text(c.score_before),
        score_text(c.score_now)
    );
    if c.newly_failing.is_empty() && c.newly_passing.is_empty() && c.changed.is_empty() {
        s.push_str("  no check changed status\n");
    }
    for (id, ev) in &c.newly_failing {
        let _ = writeln!(s, "  {} {id}: {ev}", paint("newly failing", "1;31", color));
    }
    for (id, ev) in &c.newly_passing {
        let _ = writeln!(s, "  {} {id}: {ev}", paint("newly passing", "32", color));
    }
    for (id, b, n) in &c.changed {
        let _ = writeln!(s, "  changed {id}: {b} → {n}");
    }
    if !c.new_checks.is_empty() {
        let _ = writeln!(s, "  {} checks new in the catalog", c.new_checks.len());
    }
    s
}

/// Where saved reports live.
pub const REPORTS_DIR: &str = "var/lib/bollwerk/reports";
/// How many saved reports are kept.
pub const KEEP_REPORTS: usize = 30;

/// Saves a report as `var/lib/bollwerk/reports/<timestamp>.json` (0600) and prunes to the
/// newest [`KEEP_REPORTS`]. Returns the path written.
///
/// # Errors
/// When the directory or file cannot be written.
pub fn save(root: &Root, r: &Report) -> Result<RelPath> {
    let dir = RelPath::lit(REPORTS_DIR);
    for d in root.missing_dirs(&dir)? {
        root.create_dir(&d, Perms::root(0o700))?;
    }
    let mut name = format!("{}.json", r.started.replace(':', ""));
    let mut n = 1;
    while root.exists(&dir.join(&name).map_err(Error::Runtime)?) {
        n += 1;
        name = format!("{}-{n}.json", r.started.replace(':', ""));
    }
    let path = dir.join(&name).map_err(Error::Runtime)?;
    root.write_atomic(&path, json(r).as_bytes(), Perms::root(0o600))?;
    let mut saved = saved_reports(root)?;
    while saved.len() > KEEP_REPORTS {
        let old = saved.remove(0);
        root.remove(&old)?;
    }
    Ok(path)
}

/// Saved reports, oldest first.
///
/// # Errors
/// When the directory cannot be listed.
pub fn saved_reports(root: &Root) -> Result<Vec<RelPath>> {
    let dir = RelPath::lit(REPORTS_DIR);
    let mut out = Vec::new();
    for n in root.list_dir(&dir)? {
        if n.ends_with(".json") && !n.starts_with('.') {
            out.push(dir.join(&n).map_err(Error::Runtime)?);
        }
    }
    // Names are timestamps (plus -N for the same second): sort by (timestamp, N).
    out.sort_by_key(|p| {
        let n = p.file_name().trim_end_matches(".json").to_string();
        let (ts, k) = match n.rsplit_once('-') {
            Some((a, b)) if b.len() < 4 && b.chars().all(|c| c.is_ascii_digit()) => {
                (a.to_string(), b.parse::<u32>().unwrap_or(0))
            }
            _ => (n.clone(), 1),
        };
        (ts, k)
    });
    Ok(out)
}

/// Loads a report from JSON text.
///
/// # Errors
/// When the text is not a `bollwerk.report/v1` document.
pub fn load(text: &str, what: &str) -> Result<Report> {
    let r: Report = serde_json::from_str(text)
        .map_err(|e| Error::Usage(format!("{what} is not a bollwerk report: {e}")))?;
    if r.schema != super::result::REPORT_SCHEMA {
        return Err(Error::Usage(format!(
            "{what} has schema {}, expected {}",
            r.schema,
            super::result::REPORT_SCHEMA
        )));
    }
    Ok(r)
}

/// The JSON Schema of `bollwerk.report/v1` (`docs/report-schema.json`), generated from the
/// result types.
pub fn report_schema() -> serde_json::Value {
    let mut v = serde_json::to_value(schemars::schema_for!(Report)).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "$id".into(),
            serde_json::json!("https://bollwerk.invalid/schema/bollwerk.report/v1.json"),
        );
        o.insert(
            "title".into(),
            serde_json::json!("bollwerk audit report (bollwerk.report/v1)"),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_schema_is_up_to_date() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report-schema.json");
        let want = format!("{:#}\n", report_schema());
        if std::env::var_os("BOLLWERK_UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/report-schema.json is stale: run BOLLWERK_UPDATE_SCHEMA=1 cargo test --lib report_schema"
        );
    }

    #[test]
    fn xml_and_labels_escape() {
        assert_eq!(xml_escape("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(prom_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
