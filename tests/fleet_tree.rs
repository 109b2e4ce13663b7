//! Fleet tests on fixture trees: `bollwerk report merge` over real audit reports of several
//! fixture hosts (per check the failing hosts, per host score and drift, per section pass
//! rate) in every format, lenient reading of reports from other bollwerk versions, bad input
//! (exit 2 with file:line:col), and the HTML fleet report in a real headless Chromium.

mod common;

use std::path::{Path, PathBuf};

use bollwerk::error::ExitStatus;
use bollwerk::exec::FakeRunner;
use clap::Parser;
use common::browser::{chromium, chromium_problems, run_chromium};
use common::tree::Tree;

const CHECKS: [&str; 5] = [
    "ssh.permit-root-login",
    "ssh.password-authentication",
    "pkg.telnet-client-absent",
    "accounts.uid0-only-root",
    "kmod.cramfs",
];

/// Runs the CLI in-process with `args`; returns (exit code, stdout).
fn cli(args: &[&str]) -> (u8, String) {
    let mut argv = vec!["bollwerk", "--color", "never"];
    argv.extend_from_slice(args);
    let c = bollwerk::cli::Cli::try_parse_from(argv).unwrap();
    let mut out = Vec::new();
    let st = bollwerk::app::run(&c, &FakeRunner::new(), &mut out);
    (st.code(), String::from_utf8(out).unwrap())
}

/// Audits a debian12 fixture named `host` (root login allowed or not, telnet installed or
/// not, an extra uid 0 account or not) and writes its JSON report to `dir/<file>`, with the
/// timestamp set to `ts` so the order of reports is deterministic.
fn audit(
    dir: &Path,
    file: &str,
    host: &str,
    root_login: bool,
    telnet: bool,
    toor: bool,
    ts: u64,
) -> PathBuf {
    let t = Tree::fixture("debian12");
    t.write("etc/hostname", &format!("{host}\n"));
    let mut status = String::from(
        "Package: openssh-server\nStatus: install ok installed\nVersion: 1:9.2p1-2\n\n",
    );
    if telnet {
        status.push_str("Package: telnet\nStatus: install ok installed\nVersion: 0.17-44\n\n");
    }
    t.write("var/lib/dpkg/status", &status);
    t.write("usr/sbin/sshd", "");
    if toor {
        let mut p = t.read("etc/passwd");
        p.push_str("toor:x:0:0::/root:/bin/sh\n");
        t.write("etc/passwd", &p);
    }
    let runner = FakeRunner::new();
    runner.respond(
        "/usr/sbin/sshd -T",
        0,
        &format!(
            "permitrootlogin {}\npasswordauthentication no\n",
            if root_login { "yes" } else { "no" }
        ),
    );
    let mut args: Vec<String> = ["audit", "--format", "json", "--root"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(t.root().display().to_string());
    for c in CHECKS {
        args.push("--check".into());
        args.push(c.into());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut full = vec!["bollwerk"];
    full.extend(argv);
    let c = bollwerk::cli::Cli::try_parse_from(full).unwrap();
    let mut out = Vec::new();
    let st = bollwerk::app::run(&c, &runner, &mut out);
    assert!(
        st.code() <= 1,
        "audit failed: {}",
        String::from_utf8_lossy(&out)
    );
    let mut v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    v["timestamp"] = ts.into();
    v["started"] = bollwerk::audit::rfc3339(ts).into();
    let p = dir.join(file);
    std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    p
}

/// Three hosts, web1 with two reports (older: compliant except telnet; newer: root login
/// and an extra uid 0 account), web2 failing root login, db1 compliant. Given out of order.
fn fleet_reports(dir: &Path) -> Vec<String> {
    let web1_new = audit(
        dir,
        "web1-new.json",
        "web1",
        true,
        true,
        true,
        2_000_000_000,
    );
    let web2 = audit(dir, "web2.json", "web2", true, false, false, 1_999_999_000);
    let web1_old = audit(
        dir,
        "web1-old.json",
        "web1",
        false,
        true,
        false,
        1_990_000_000,
    );
    let db1 = audit(dir, "db1.json", "db1", false, false, false, 1_999_999_500);
    [web1_new, web2, web1_old, db1]
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

fn merge(files: &[String], format: &str) -> (u8, String) {
    let mut args = vec!["report", "merge", "--format", format];
    args.extend(files.iter().map(String::as_str));
    cli(&args)
}

#[test]
fn json_fleet_report_has_failing_hosts_drift_and_section_rates() {
    let dir = tempfile::tempdir().unwrap();
    let files = fleet_reports(dir.path());
    let (code, out) = merge(&files, "json");
    assert_eq!(code, 0, "{out}");
    let f: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(f["schema"], "bollwerk.fleet/v1");
    assert_eq!(f["reports"], 4);
    let hosts = f["hosts"].as_array().unwrap();
    let names: Vec<&str> = hosts.iter().map(|h| h["host"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    // Lowest score first: web1 fails 3 of 5, web2 1 of 5, db1 none.
    assert_eq!(names, ["web1", "web2", "db1"]);
    let web1 = &hosts[0];
    assert!(web1["file"].as_str().unwrap().ends_with("web1-new.json"));
    assert_eq!(web1["counts"]["fail"], 3);
    assert_eq!(web1["reports"], 2);
    let d = &web1["drift"];
    assert!(
        d["baseline_file"]
            .as_str()
            .unwrap()
            .ends_with("web1-old.json")
    );
    let nf: Vec<&str> = d["newly_failing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(nf, ["ssh.permit-root-login", "accounts.uid0-only-root"]);
    assert_eq!(d["newly_passing"].as_array().unwrap().len(), 0);
    assert!(d["score_delta"].as_f64().unwrap() < 0.0, "{d}");
    assert!(hosts[1]["drift"].is_null(), "a single report has no drift");
    // Per check: the hosts failing it, most failing hosts first.
    let checks = f["checks"].as_array().unwrap();
    let root_login = &checks[0];
    assert_eq!(root_login["id"], "ssh.permit-root-login");
    let failing: Vec<&str> = root_login["failing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(failing, ["web1", "web2"]);
    assert_eq!(root_login["passing"], 1);
    assert!(
        root_login["failing"][0]["evidence"]
            .as_str()
            .unwrap()
            .contains("yes")
    );
    assert!(
        !checks.iter().any(|c| c["id"] == "kmod.cramfs"),
        "a check passing everywhere is not listed"
    );
    // Section 5 over three current reports: ssh (2 checks) + uid0 per host = 9 judged,
    // failures: web1 ×2 + web2 ×1 → 6/9 = 66.7 %.
    let s5 = f["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "5")
        .unwrap();
    let (p, fl) = (s5["pass"].as_u64().unwrap(), s5["fail"].as_u64().unwrap());
    assert_eq!((p, fl), (6, 3), "{s5}");
    assert_eq!(s5["pass_rate"], 66.7);
    assert_eq!(s5["hosts_failing"], 2);
}

#[test]
fn text_junit_and_prometheus_formats() {
    let dir = tempfile::tempdir().unwrap();
    let files = fleet_reports(dir.path());
    let (code, t) = merge(&files, "text");
    assert_eq!(code, 0);
    assert!(t.starts_with("Fleet: 3 hosts (4 reports)"), "{t}");
    assert!(t.contains("newly failing accounts.uid0-only-root"), "{t}");
    assert!(t.contains("ssh.permit-root-login (2/3): web1, web2"), "{t}");

    let (_, x) = merge(&files, "junit");
    assert_eq!(x.matches("<testsuite ").count(), 3, "{x}");
    assert_eq!(x.matches("<testcase ").count(), 15);
    assert_eq!(x.matches("<failure ").count(), 4);
    assert!(x.contains("<testsuites name=\"bollwerk fleet\" tests=\"15\" failures=\"4\">"));

    let (_, p) = merge(&files, "prometheus");
    for l in p.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = l.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "bad sample {l}");
        assert!(name.starts_with("bollwerk_fleet_"), "{l}");
    }
    assert!(p.contains("bollwerk_fleet_hosts 3\n"), "{p}");
    assert!(
        p.contains("bollwerk_fleet_pass_rate{section=\"5\"} 0.667\n"),
        "{p}"
    );
    assert!(p.contains("bollwerk_fleet_check_failing_hosts{id=\"ssh.permit-root-login\",severity=\"high\",section=\"5\"} 2\n"), "{p}");
    assert!(
        p.contains("bollwerk_fleet_host_score{host=\"db1\"} 1\n"),
        "{p}"
    );
    assert!(
        p.contains("bollwerk_fleet_host_score_delta{host=\"web1\"} -"),
        "{p}"
    );
}

#[test]
fn output_file_and_lenient_input() {
    let dir = tempfile::tempdir().unwrap();
    let files = fleet_reports(dir.path());
    // A report from a newer audit: unknown statuses and fields, no summary.
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[3]).unwrap()).unwrap();
    v["summary"] = serde_json::Value::Null;
    v.as_object_mut().unwrap().remove("summary");
    v["host"]["hostname"] = "db2".into();
    v["results"][0]["status"] = "waived".into();
    v["results"][0]["waiver"] = serde_json::json!({"reason": "accepted risk"});
    v["results"][1]["status"] = "not_evaluated".into();
    v["summary_v2"] = serde_json::json!({"not_evaluated": 1, "waived": 1});
    let newer = dir.path().join("db2.json");
    std::fs::write(&newer, v.to_string()).unwrap();
    let out = dir.path().join("fleet.json");
    let (code, stdout) = cli(&[
        "report",
        "merge",
        "--format",
        "json",
        "--output",
        out.to_str().unwrap(),
        &files[3],
        newer.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert!(stdout.is_empty(), "written to the file, not stdout");
    let f: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let db2 = f["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "db2")
        .unwrap();
    assert_eq!(db2["counts"]["other"]["waived"], 1, "{db2}");
    assert_eq!(db2["counts"]["other"]["not_evaluated"], 1);
    assert_eq!(db2["score"], 100.0);
}

#[test]
fn bad_input_exits_2_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        "{\n  \"schema\": \"bollwerk.report/v1\",\n  \"results\": [1]\n}\n",
    )
    .unwrap();
    let other = dir.path().join("plan.json");
    std::fs::write(
        &other,
        "{\"schema\": \"bollwerk.plan/v1\", \"results\": []}",
    )
    .unwrap();
    let missing = dir.path().join("missing.json");
    for (f, needle) in [
        (&bad, "bad.json:3:"),
        (&other, "schema is \"bollwerk.plan/v1\""),
        (&missing, "cannot read the report"),
    ] {
        let c = bollwerk::cli::Cli::try_parse_from([
            "bollwerk",
            "report",
            "merge",
            f.to_str().unwrap(),
        ])
        .unwrap();
        let bollwerk::cli::Command::Report(bollwerk::audit::merge::ReportCommand::Merge(a)) =
            &c.command
        else {
            panic!()
        };
        let e = bollwerk::audit::merge::merge_files(&a.reports).unwrap_err();
        assert_eq!(e.exit_status(), ExitStatus::Refused);
        assert!(e.to_string().contains(needle), "{e}");
        assert_eq!(cli(&["report", "merge", f.to_str().unwrap()]).0, 2);
    }
}

// ---- HTML in headless Chromium ------------------------------------------------------

#[test]
fn html_fleet_report_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = fleet_reports(dir.path());
    // A host name that must be escaped.
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[3]).unwrap()).unwrap();
    v["host"]["hostname"] = "<b>evil&</b>".into();
    let evil = dir.path().join("evil.json");
    std::fs::write(&evil, v.to_string()).unwrap();
    files.push(evil.display().to_string());
    let page = dir.path().join("fleet.html");
    let mut args = vec![
        "report",
        "merge",
        "--format",
        "html",
        "-o",
        page.to_str().unwrap(),
    ];
    args.extend(files.iter().map(String::as_str));
    assert_eq!(cli(&args).0, 0);
    let html = std::fs::read_to_string(&page).unwrap();
    for needle in [
        "<script", "src=", "<link", "url(", "@import", "http://", "https://",
    ] {
        assert!(!html.contains(needle), "external asset or script: {needle}");
    }
    assert!(
        html.contains("&lt;b&gt;evil&amp;&lt;&#x2f;b&gt;")
            || html.contains("&lt;b&gt;evil&amp;&lt;/b&gt;"),
        "host names are escaped"
    );
    let Some(bin) = chromium() else {
        let msg = "SKIPPED html_fleet_report_renders_in_headless_chromium: chromium is not installed (apt-get install chromium)";
        eprintln!("{msg}");
        assert!(
            std::env::var_os("BOLLWERK_REQUIRE_SYSTEM_TESTS").is_none(),
            "{msg}"
        );
        return;
    };
    let url = format!("file://{}", page.display());
    let out = run_chromium(&bin, &url, (1280, 1600), &["--dump-dom"]);
    let dom = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {stderr}");
    assert!(dom.contains("id=\"pass-rate\""), "{dom}");
    assert!(dom.contains("Fleet compliance — 4 hosts"), "{dom}");
    assert!(dom.contains("id=\"check-ssh.permit-root-login\""), "{dom}");
    assert!(
        dom.contains("newly failing: accounts.uid0-only-root"),
        "{dom}"
    );
    assert!(
        dom.contains("<span class=\"tag host\">web2</span>"),
        "{dom}"
    );
    assert!(
        dom.contains("&lt;b&gt;evil&amp;&lt;/b&gt;"),
        "escaped in the DOM"
    );
    assert!(!dom.contains("<b>evil&amp;</b>"), "not markup in the DOM");
    let problems = chromium_problems(&stderr);
    assert!(problems.is_empty(), "console errors: {problems:#?}");
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fleet-report.png");
    let _ = std::fs::remove_file(&shot);
    let out = run_chromium(
        &bin,
        &url,
        (1280, 1600),
        &[&format!("--screenshot={}", shot.display())],
    );
    assert!(chromium_problems(&String::from_utf8_lossy(&out.stderr)).is_empty());
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
}
