//! Report tests: snapshots of every format for one deterministic report, the JSON report
//! against `docs/report-schema.json`, a strict parse of the Prometheus textfile, JUnit
//! structure, `--compare`, `--save` history, the CLI's exit codes, and the HTML report in a
//! real headless Chromium (renders, no console errors, screenshot).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bollwerk::audit::catalog::Catalog;
use bollwerk::audit::report::{self, ReportFormat};
use bollwerk::audit::result::{Report, Status};
use bollwerk::audit::{AuditOptions, run};
use bollwerk::exec::FakeRunner;
use bollwerk::root::Root;
use common::browser::{chromium, chromium_problems, run_chromium};
use common::tree::Tree;

const SSHD_T: &str = "port 22\npermitrootlogin yes\npasswordauthentication no\nmaxauthtries 6\nusepam yes\nciphers aes256-gcm@openssh.com,aes128-ctr\n";

/// A report over a handful of checks of every status, with the variable parts fixed.
fn sample_report() -> Report {
    let t = Tree::fixture("debian12");
    t.write("var/lib/dpkg/status", "Package: openssh-server\nStatus: install ok installed\nVersion: 1:9.2p1-2\n\nPackage: telnet\nStatus: install ok installed\nVersion: 0.17-44\n\n");
    t.write("usr/sbin/sshd", "");
    t.write("etc/motd", "Debian GNU/Linux <b>&</b>\n");
    let runner = FakeRunner::new();
    runner.respond("/usr/sbin/sshd -T", 0, SSHD_T);
    let ids = [
        "ssh.permit-root-login",
        "ssh.password-authentication",
        "ssh.max-auth-tries",
        "ssh.ciphers",
        "pkg.telnet-client-absent",
        "banner.motd-no-os-info",
        "accounts.uid0-only-root",
        "accounts.no-empty-passwords",
        "kmod.cramfs",
        "apparmor.enabled",
        "svc.mta-local-only",
        "kmod.udf",
    ];
    let opts = AuditOptions {
        level: 1,
        only: Some(ids.iter().map(|s| s.to_string()).collect()),
        threads: Some(2),
        profile_data: Some(serde_json::json!({"audit": {"waivers": [{
            "check": "banner.motd-no-os-info",
            "reason": "the motd names the OS on purpose (ticket OPS-12)",
            "approved_by": "security team",
            "expires": "2099-12-31"
        }]}})),
        ..Default::default()
    };
    let cat = Catalog::embedded().unwrap();
    let mut r = run(&cat, Root::new(t.root()).unwrap(), &runner, None, &opts).unwrap();
    r.started = "2026-01-02T03:04:05Z".into();
    r.timestamp = 1_767_323_045;
    r.duration_seconds = 0.0123;
    r.host.root = "/srv/images/web1".into();
    r.tool.version = "0.0.0-test".into();
    r.tool.catalog_checks = 0;
    for s in &mut r.summary.sections {
        s.probe_ms = 1.5;
    }
    r
}

#[test]
fn sample_covers_every_status() {
    let r = sample_report();
    for st in [
        Status::Pass,
        Status::Fail,
        Status::NotApplicable,
        Status::NotEvaluated,
        Status::Waived,
        Status::Skipped,
    ] {
        assert!(r.results.iter().any(|x| x.status == st), "{st} missing");
    }
    // kmod.cramfs is vm-only; on this offline root it judges the (absent) modules.
    let by: BTreeMap<&str, Status> = r
        .results
        .iter()
        .map(|x| (x.id.as_str(), x.status))
        .collect();
    assert_eq!(by["ssh.permit-root-login"], Status::Fail);
    assert_eq!(by["ssh.password-authentication"], Status::Pass);
    assert_eq!(by["kmod.udf"], Status::Skipped, "level 2 at level 1");
    // No kernel under lib/modules in the fixture: not evaluated, never a pass.
    assert_eq!(by["kmod.cramfs"], Status::NotEvaluated);
    assert_eq!(by["banner.motd-no-os-info"], Status::Waived);
}

#[test]
fn every_format_shows_errors_not_evaluated_and_waivers() {
    let r = sample_report();
    let c = &r.summary.counts;
    assert!(c.not_evaluated >= 2 && c.waived == 1, "{c:?}");
    let basis = c.score_text();
    assert!(
        basis.contains(&format!("passed of {} judged", c.pass + c.fail))
            && basis.contains("not evaluated")
            && basis.contains("errors")
            && basis.contains("1 waived"),
        "{basis}"
    );
    for fmt in [
        ReportFormat::Text,
        ReportFormat::Html,
        ReportFormat::Markdown,
        ReportFormat::Junit,
    ] {
        let out = report::render(&r, fmt, false).unwrap();
        assert!(out.contains(&basis), "{fmt:?} lacks the score basis");
        assert!(
            out.contains("ticket OPS-12"),
            "{fmt:?} lacks the waiver reason"
        );
        assert!(out.contains("not evaluated"), "{fmt:?}");
        assert!(
            out.contains("not a CIS assessment for this OS"),
            "{fmt:?} claims a benchmark the host is not"
        );
    }
    let prom = report::render(&r, ReportFormat::Prometheus, false).unwrap();
    for st in ["error", "not_evaluated", "waived"] {
        assert!(
            prom.contains(&format!("bollwerk_checks{{status=\"{st}\"}}")),
            "{st}"
        );
    }
    assert!(prom.contains(&format!("bollwerk_judged_checks {}", c.judged)));
    let json: serde_json::Value = serde_json::from_str(&report::json(&r)).unwrap();
    assert_eq!(json["summary"]["waived"], 1);
    assert_eq!(json["benchmark"]["for_host"], false);
    let w = r
        .results
        .iter()
        .find(|x| x.id == "banner.motd-no-os-info")
        .unwrap();
    let wv = w.waiver.as_ref().unwrap();
    assert_eq!(wv.approved_by, "security team");
    assert_eq!(wv.verdict, Status::Fail, "the hidden verdict is kept");
}

#[test]
fn expired_waivers_turn_back_and_expiring_ones_warn() {
    let t = Tree::fixture("debian12");
    t.write("etc/motd", "Debian GNU/Linux\n");
    let today = bollwerk::audit::rfc3339(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 10 * 86_400,
    )[..10]
        .to_string();
    let waiver = |id: &str, exp: &str| serde_json::json!({"check": id, "reason": "r", "approved_by": "a", "expires": exp});
    let opts = AuditOptions {
        only: Some(vec![
            "banner.motd-no-os-info".into(),
            "banner.issue-no-os-info".into(),
        ]),
        threads: Some(1),
        profile_data: Some(serde_json::json!({"audit": {
            "waivers": [waiver("banner.motd-no-os-info", "2020-01-31"), waiver("banner.issue-no-os-info", &today)],
            "exclude": ["accounts.root-locked"]
        }})),
        ..Default::default()
    };
    let cat = Catalog::embedded().unwrap();
    let r = run(
        &cat,
        Root::new(t.root()).unwrap(),
        &FakeRunner::new(),
        None,
        &opts,
    )
    .unwrap();
    let motd = r
        .results
        .iter()
        .find(|x| x.id == "banner.motd-no-os-info")
        .unwrap();
    assert_eq!(motd.status, Status::Fail, "expired waiver: own verdict");
    assert!(motd.waiver.is_none());
    let issue = r
        .results
        .iter()
        .find(|x| x.id == "banner.issue-no-os-info")
        .unwrap();
    assert_eq!(issue.status, Status::Waived, "{}", issue.evidence);
    let warns = r.warnings.join("\n");
    assert!(
        warns.contains("banner.motd-no-os-info expired on 2020-01-31"),
        "{warns}"
    );
    assert!(
        warns.contains(&format!(
            "banner.issue-no-os-info expires on {today} (within 30 days"
        )),
        "{warns}"
    );
    assert!(warns.contains("audit.exclude is deprecated"), "{warns}");
}

#[test]
fn snapshots_of_every_format() {
    let r = sample_report();
    for (fmt, name) in [
        (ReportFormat::Text, "text"),
        (ReportFormat::Json, "json"),
        (ReportFormat::Html, "html"),
        (ReportFormat::Junit, "junit"),
        (ReportFormat::Prometheus, "prometheus"),
        (ReportFormat::Markdown, "markdown"),
    ] {
        let out = report::render(&r, fmt, false).unwrap();
        insta::assert_snapshot!(format!("report_{name}"), out);
    }
    // Colour only when asked (on a TTY).
    assert!(
        !report::render(&r, ReportFormat::Text, false)
            .unwrap()
            .contains('\x1b')
    );
    assert!(
        report::render(&r, ReportFormat::Text, true)
            .unwrap()
            .contains("\x1b[1;31m")
    );
}

#[test]
fn json_report_validates_against_the_documented_schema() {
    let schema_text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report-schema.json"),
    )
    .unwrap();
    let schema: serde_json::Value = serde_json::from_str(&schema_text).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let r = sample_report();
    let doc: serde_json::Value = serde_json::from_str(&report::json(&r)).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(doc["schema"], "bollwerk.report/v1");
    // A broken document is rejected (the validator is not vacuous).
    let mut bad = doc.clone();
    bad["results"][0]["status"] = serde_json::json!("maybe");
    assert!(!validator.is_valid(&bad));
    // Round trip: a saved report loads back.
    let back = report::load(&report::json(&r), "test").unwrap();
    assert_eq!(back, r);
}

/// A strict parser for the Prometheus text exposition format (the subset we emit):
/// `# HELP`, `# TYPE` before the samples of a metric, `name{label="value",…} number`.
type Sample = (String, BTreeMap<String, String>, f64);

fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        if let Some(rest) = line.strip_prefix("# ") {
            let mut w = rest.splitn(3, ' ');
            let kind = w.next().unwrap_or("");
            let name = w.next().unwrap_or("");
            let val = w.next().unwrap_or("");
            if !name_ok(name) {
                return Err(format!("line {ln}: bad metric name in comment"));
            }
            match kind {
                "HELP" => {}
                "TYPE" => {
                    if !["gauge", "counter", "untyped"].contains(&val) {
                        return Err(format!("line {ln}: bad type {val}"));
                    }
                    if types.insert(name.into(), val.into()).is_some() {
                        return Err(format!("line {ln}: duplicate TYPE for {name}"));
                    }
                }
                _ => return Err(format!("line {ln}: unknown comment {kind}")),
            }
            continue;
        }
        if line.is_empty() {
            return Err(format!("line {ln}: empty line"));
        }
        let (head, value) = line
            .rsplit_once(' ')
            .ok_or(format!("line {ln}: no value"))?;
        let v: f64 = value
            .parse()
            .map_err(|_| format!("line {ln}: bad value {value}"))?;
        let (name, labels) = match head.split_once('{') {
            None => (head.to_string(), BTreeMap::new()),
            Some((n, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .ok_or(format!("line {ln}: unterminated labels"))?;
                let mut labels = BTreeMap::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    if !name_ok(&key) || chars.next() != Some('"') {
                        return Err(format!("line {ln}: bad label {key}"));
                    }
                    let mut val = String::new();
                    loop {
                        match chars.next() {
                            Some('\\') => match chars.next() {
                                Some('n') => val.push('\n'),
                                Some(c @ ('\\' | '"')) => val.push(c),
                                _ => return Err(format!("line {ln}: bad escape")),
                            },
                            Some('"') => break,
                            Some(c) => val.push(c),
                            None => return Err(format!("line {ln}: unterminated value")),
                        }
                    }
                    labels.insert(key, val);
                    match chars.next() {
                        Some(',') | None => {}
                        Some(c) => return Err(format!("line {ln}: unexpected {c}")),
                    }
                }
                (n.to_string(), labels)
            }
        };
        if !name_ok(&name) {
            return Err(format!("line {ln}: bad name {name}"));
        }
        if !types.contains_key(&name) {
            return Err(format!("line {ln}: {name} has no TYPE before its samples"));
        }
        samples.push((name, labels, v));
    }
    if !text.ends_with('\n') {
        return Err("no final newline".into());
    }
    Ok(samples)
}

#[test]
fn prometheus_textfile_parses_strictly() {
    let r = sample_report();
    let text = report::prometheus(&r);
    let samples = parse_prometheus(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let names: std::collections::BTreeSet<&str> = samples.iter().map(|s| s.0.as_str()).collect();
    for n in [
        "bollwerk_check_status",
        "bollwerk_compliance_score",
        "bollwerk_audit_duration_seconds",
        "bollwerk_last_audit_timestamp_seconds",
    ] {
        assert!(names.contains(n), "{n} missing");
    }
    // One status sample per check is 1, with id/cis/severity labels.
    let ones: Vec<_> = samples
        .iter()
        .filter(|s| s.0 == "bollwerk_check_status" && s.2 == 1.0)
        .collect();
    assert_eq!(ones.len(), r.results.len());
    let root_login = ones
        .iter()
        .find(|s| s.1["id"] == "ssh.permit-root-login")
        .unwrap();
    assert_eq!(root_login.1["cis"], "5.1.20");
    assert_eq!(root_login.1["severity"], "high");
    assert_eq!(root_login.1["status"], "fail");
    let score = samples
        .iter()
        .find(|s| s.0 == "bollwerk_compliance_score" && s.1.is_empty())
        .unwrap();
    assert!((score.2 * 100.0 - r.summary.counts.score.unwrap()).abs() < 1e-9);
    // The parser rejects what node_exporter would reject.
    assert!(parse_prometheus("x 1\n").is_err(), "sample without TYPE");
    assert!(parse_prometheus("# TYPE x gauge\nx{a=\"b} 1\n").is_err());
    assert!(parse_prometheus("# TYPE x gauge\nx one\n").is_err());
}

#[test]
fn junit_has_one_testcase_per_check() {
    let r = sample_report();
    let x = report::junit(&r);
    assert_eq!(x.matches("<testcase ").count(), r.results.len());
    assert_eq!(
        x.matches("<failure ").count(),
        r.summary.counts.fail as usize
    );
    assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites "));
    assert!(
        x.contains("&lt;b&gt;&amp;&lt;/b&gt;") || !x.contains("<b>"),
        "escaped"
    );
    assert_eq!(
        x.matches("<testsuite ").count(),
        x.matches("</testsuite>").count()
    );
}

#[test]
fn comparison_reports_newly_failing_and_passing() {
    let before = sample_report();
    let mut now = before.clone();
    for x in &mut now.results {
        if x.id == "ssh.permit-root-login" {
            x.status = Status::Pass;
            x.evidence = "permitrootlogin no (sshd -T)".into();
        }
        if x.id == "accounts.uid0-only-root" {
            x.status = Status::Fail;
            x.evidence = "other accounts with uid 0: toor".into();
        }
    }
    let c = report::compare(&before, &now);
    assert_eq!(c.newly_passing.len(), 1);
    assert_eq!(c.newly_passing[0].0, "ssh.permit-root-login");
    assert_eq!(c.newly_failing.len(), 1);
    assert_eq!(c.newly_failing[0].0, "accounts.uid0-only-root");
    let t = report::comparison_text(&c, false);
    assert!(
        t.contains("newly failing accounts.uid0-only-root: other accounts with uid 0: toor"),
        "{t}"
    );
    assert!(t.contains("newly passing ssh.permit-root-login"), "{t}");
}

fn cli(root: &Path, args: &[&str], runner: &FakeRunner) -> (u8, String) {
    use clap::Parser;
    let mut argv = vec![
        "bollwerk",
        "--root",
        root.to_str().unwrap(),
        "--color",
        "never",
    ];
    argv.extend_from_slice(args);
    let c = bollwerk::cli::Cli::try_parse_from(argv).unwrap();
    let mut out = Vec::new();
    let st = bollwerk::app::run(&c, runner, &mut out);
    (st.code(), String::from_utf8(out).unwrap())
}

fn file_snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, u32, Option<std::time::SystemTime>)> {
    use std::os::unix::fs::MetadataExt;
    let mut m = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let md = e.path().symlink_metadata().unwrap();
            m.insert(e.path(), (md.len(), md.mode(), md.modified().ok()));
            if md.is_dir() {
                stack.push(e.path());
            }
        }
    }
    m
}

#[test]
fn cli_exit_codes_save_compare_and_read_only() {
    let t = Tree::fixture("debian12");
    t.write(
        "var/lib/dpkg/status",
        "Package: openssh-server\nStatus: install ok installed\nVersion: 1:9.2p1-2\n\n",
    );
    t.write("usr/sbin/sshd", "");
    let runner = FakeRunner::new();
    runner.respond("/usr/sbin/sshd -T", 0, SSHD_T);
    // Read-only: nothing under the root changes without --save.
    let before = file_snapshot(t.root());
    let (code, out) = cli(t.root(), &["audit"], &runner);
    assert_eq!(code, 1, "a high-severity failure: exit 1\n{out}");
    assert!(out.contains("FAILURES"), "{out}");
    assert_eq!(before, file_snapshot(t.root()), "audit wrote to the root");
    // Threshold: 0 % always passes, 100 % fails.
    assert_eq!(cli(t.root(), &["audit", "--fail-under", "0"], &runner).0, 0);
    assert_eq!(
        cli(t.root(), &["audit", "--fail-under", "100"], &runner).0,
        1
    );
    // Nothing judged (a check that is not evaluated on this kernel-less tree): no score, so
    // --fail-under fails instead of passing with an imaginary 100 %.
    let (code, out) = cli(
        t.root(),
        &["audit", "--check", "kmod.cramfs", "--fail-under", "0"],
        &runner,
    );
    assert_eq!(code, 1, "nothing judged must fail --fail-under\n{out}");
    assert!(out.contains("n/a (nothing judged"), "{out}");
    // A check that ends in error (its file is a directory): exit 3.
    let te = Tree::fixture("debian12");
    std::fs::remove_file(te.root().join("etc/motd")).ok();
    std::fs::create_dir_all(te.root().join("etc/motd/x")).unwrap();
    let (code, out) = cli(
        te.root(),
        &["audit", "--check", "banner.motd-no-os-info"],
        &runner,
    );
    assert_eq!(code, 3, "an audit with errors exits 3\n{out}");
    assert!(out.contains("ERRORS (1)"), "{out}");
    // Only passing checks: exit 0 by default.
    let (code, _) = cli(
        t.root(),
        &["audit", "--check", "ssh.password-authentication"],
        &runner,
    );
    assert_eq!(code, 0);
    // Bad input: exit 2.
    assert_eq!(
        cli(t.root(), &["audit", "--fail-under", "120"], &runner).0,
        2
    );
    assert_eq!(
        cli(t.root(), &["audit", "--check", "no.such-check"], &runner).0,
        2
    );
    assert_eq!(
        cli(t.root(), &["audit", "--compare", "last"], &runner).0,
        2,
        "nothing saved yet"
    );
    // --save keeps a bounded history; --compare last shows the change.
    let (code, out) = cli(
        t.root(),
        &[
            "audit",
            "--save",
            "--format",
            "json",
            "--output",
            t.path("tmp/r.json").to_str().unwrap(),
        ],
        &runner,
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("saved /var/lib/bollwerk/reports/"), "{out}");
    let text = std::fs::read_to_string(t.path("tmp/r.json")).unwrap();
    assert!(text.contains("\"schema\": \"bollwerk.report/v1\""));
    runner.respond(
        "/usr/sbin/sshd -T",
        0,
        &SSHD_T.replace("permitrootlogin yes", "permitrootlogin no"),
    );
    let (_, out) = cli(t.root(), &["audit", "--compare", "last"], &runner);
    assert!(out.contains("newly passing ssh.permit-root-login"), "{out}");
    for _ in 0..(report::KEEP_REPORTS + 3) {
        cli(
            t.root(),
            &[
                "audit",
                "--save",
                "--format",
                "json",
                "--check",
                "ssh.permit-root-login",
            ],
            &runner,
        );
    }
    let saved = report::saved_reports(&Root::new(t.root()).unwrap()).unwrap();
    assert_eq!(saved.len(), report::KEEP_REPORTS, "bounded history");
    // Prometheus output is written atomically: no temp files left next to it.
    let prom = t.path("tmp/node/bollwerk.prom");
    std::fs::create_dir_all(prom.parent().unwrap()).unwrap();
    cli(
        t.root(),
        &[
            "audit",
            "--format",
            "prometheus",
            "--output",
            prom.to_str().unwrap(),
        ],
        &runner,
    );
    let names: Vec<String> = std::fs::read_dir(prom.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["bollwerk.prom".to_string()]);
    assert!(parse_prometheus(&std::fs::read_to_string(&prom).unwrap()).is_ok());
    // checks list/show.
    let (code, out) = cli(t.root(), &["checks", "list"], &runner);
    assert_eq!(code, 0);
    assert!(
        out.contains("ssh.permit-root-login")
            && out.contains("5.1.20")
            && out.contains("ssh.permit_root_login")
    );
    let (code, out) = cli(t.root(), &["checks", "show", "5.1.20"], &runner);
    assert_eq!(code, 0);
    assert!(
        out.contains("Rationale:") && out.contains("kind = \"sshd\""),
        "{out}"
    );
    assert_eq!(
        cli(
            t.root(),
            &["checks", "show", "ssh.permit-rot-login"],
            &runner
        )
        .0,
        2
    );
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let Some(bin) = chromium() else {
        let msg = "SKIPPED html_report_renders_in_headless_chromium: chromium is not installed (apt-get install chromium)";
        eprintln!("{msg}");
        assert!(
            std::env::var_os("BOLLWERK_REQUIRE_SYSTEM_TESTS").is_none(),
            "{msg}"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let html = report::html(&sample_report()).unwrap();
    // Self-contained: no external scripts, styles, images or fonts.
    for needle in [
        "<script", "src=", "<link", "url(", "@import", "http://", "https://",
    ] {
        assert!(!html.contains(needle), "external asset or script: {needle}");
    }
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).unwrap();
    let url = format!("file://{}", page.display());
    // The detector is not vacuous: a page with a console error is caught.
    let bad = dir.path().join("bad.html");
    std::fs::write(
        &bad,
        "<html><body><script>console.error('boom')</script></body></html>",
    )
    .unwrap();
    let out = run_chromium(
        &bin,
        &format!("file://{}", bad.display()),
        (1280, 2400),
        &["--dump-dom"],
    );
    assert!(
        !chromium_problems(&String::from_utf8_lossy(&out.stderr)).is_empty(),
        "console errors are detected"
    );
    // Renders: the DOM has the summary, sections and every result.
    let out = run_chromium(&bin, &url, (1280, 2400), &["--dump-dom"]);
    let dom = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {stderr}");
    assert!(dom.contains("id=\"score\""), "{dom}");
    assert!(
        dom.contains("ssh.permit-root-login")
            && dom.contains("ISO 27001 A.8.5")
            && dom.contains("GDPR Art. 32(1)(b)")
    );
    assert!(
        dom.contains("Debian GNU/Linux &lt;b&gt;&amp;&lt;/b&gt;"),
        "evidence is escaped"
    );
    let problems = chromium_problems(&stderr);
    assert!(problems.is_empty(), "console errors: {problems:#?}");
    // Screenshot.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("audit-report.png");
    let _ = std::fs::remove_file(&shot);
    let out = run_chromium(
        &bin,
        &url,
        (1280, 2400),
        &[&format!("--screenshot={}", shot.display())],
    );
    let problems = chromium_problems(&String::from_utf8_lossy(&out.stderr));
    assert!(problems.is_empty(), "console errors: {problems:#?}");
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot ({} bytes)",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn profile_audit_section_after_apply_exclude_and_threshold() {
    let t = Tree::fixture("debian12");
    let runner = common::tree::fake_runner();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.toml");
    std::fs::write(
        &p,
        "[host]\nlock_root_password = true\n[[users]]\nname = \"alice\"\ngroups = [\"sudo\"]\nsudo = \"password\"\nssh_keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPci/6iPPKNm3TqnlFNu0Zy6jtqtz5kw0YO3RjFH01v alice@laptop\"]\n[audit]\nafter_apply = true\nexclude = [\"accounts.root-locked\"]\nfail_under = 0\n",
    )
    .unwrap();
    let (code, out) = cli(
        t.root(),
        &["apply", "--profile", p.to_str().unwrap()],
        &runner,
    );
    assert_eq!(code, 0, "{out}");
    let root = Root::new(t.root()).unwrap();
    let saved = report::saved_reports(&root).unwrap();
    assert_eq!(saved.len(), 1, "apply saved an audit report");
    let r = report::load(&root.read_string(&saved[0]).unwrap().unwrap(), "saved").unwrap();
    let x = r
        .results
        .iter()
        .find(|x| x.id == "accounts.root-locked")
        .unwrap();
    assert_eq!(
        x.status,
        Status::Waived,
        "audit.exclude: a deprecated waiver"
    );
    assert!(x.evidence.contains("audit.exclude"));
    assert!(r.warnings.iter().any(|w| w.contains("deprecated")));
    // Checks the profile covers are marked.
    let covered = r
        .results
        .iter()
        .find(|x| x.id == "accounts.root-locked")
        .unwrap();
    assert_eq!(covered.covered_by_profile, Some(true));
    // fail_under = 0 from the profile: exit 0 despite high-severity failures.
    let (code, _) = cli(
        t.root(),
        &["audit", "--profile", p.to_str().unwrap()],
        &runner,
    );
    assert_eq!(code, 0);
    let (code, _) = cli(t.root(), &["audit"], &runner);
    assert_eq!(code, 1);
    // An unknown id in audit.exclude is bad input.
    std::fs::write(&p, "[audit]\nexclude = [\"no.such\"]\n").unwrap();
    assert_eq!(
        cli(
            t.root(),
            &["audit", "--profile", p.to_str().unwrap()],
            &runner
        )
        .0,
        2
    );
}
