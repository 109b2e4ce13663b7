//! Checks of your own on fixture trees: loading (`/etc/bollwerk/checks.d` of the target,
//! `--checks DIR`, a profile's `audit.checks_dir`) with file:line:col errors and no id
//! collisions, and a passing and a failing fixture for every new probe kind (`command`,
//! `port`, `http`, `file_age`, `tls_cert`); the `command` probe is shown to pass its argv
//! literally, never through a shell.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bollwerk::audit::catalog::Catalog;
use bollwerk::audit::custom;
use bollwerk::audit::result::{Report, Status};
use bollwerk::audit::{AuditOptions, run};
use bollwerk::exec::{FakeRunner, Runner, SystemRunner};
use bollwerk::root::Root;
use clap::Parser;
use common::tree::Tree;

const HEAD: &str =
    "title = \"t\"\nrationale = \"r\"\nseverity = \"high\"\nfix = { manual = \"fix it\" }\n";

/// A `[[check]]` table with the given id and probe.
fn check(id: &str, probe: &str) -> String {
    format!("[[check]]\nid = \"{id}\"\n{HEAD}probe = {probe}\n\n")
}

/// Audits `root` with only the checks in `toml` (a catalog of its own); `proc_dir` makes it
/// a live audit.
fn audit_with(root: &Path, toml: &str, runner: &dyn Runner, proc_dir: Option<PathBuf>) -> Report {
    let mut taken = BTreeSet::new();
    let checks = custom::parse_file("test.toml", toml, &mut taken).unwrap();
    let cat = Catalog { checks };
    let opts = AuditOptions {
        proc_dir,
        threads: Some(1),
        ..Default::default()
    };
    run(&cat, Root::new(root).unwrap(), runner, None, &opts).unwrap()
}

fn result<'a>(r: &'a Report, id: &str) -> (&'a Status, &'a str) {
    let x = r.results.iter().find(|x| x.id == id).unwrap();
    (&x.status, &x.evidence)
}

fn assert_status(r: &Report, id: &str, want: Status, needle: &str) {
    let (st, ev) = result(r, id);
    assert_eq!(*st, want, "{id}: {ev}");
    assert!(ev.contains(needle), "{id}: {ev:?} lacks {needle:?}");
}

fn cli(args: &[&str]) -> (u8, String) {
    let mut argv = vec!["bollwerk", "--color", "never"];
    argv.extend_from_slice(args);
    let c = bollwerk::cli::Cli::try_parse_from(argv).unwrap();
    let mut out = Vec::new();
    let st = bollwerk::app::run(&c, &FakeRunner::new(), &mut out);
    (st.code(), String::from_utf8(out).unwrap())
}

fn usage_error(toml: &str) -> String {
    let mut taken: BTreeSet<String> = Catalog::embedded()
        .unwrap()
        .checks
        .iter()
        .map(|c| c.id.clone())
        .collect();
    let e = custom::parse_file("/etc/bollwerk/checks.d/app.toml", toml, &mut taken).unwrap_err();
    assert_eq!(e.exit_status(), bollwerk::error::ExitStatus::Refused);
    e.to_string()
}

#[test]
fn load_errors_carry_file_line_col() {
    let typo = format!(
        "{}[[check]]\nid = \"app.b\"\n{HEAD}probe = {{ kind = \"file_age\", path = \"/x\", max_aeg = \"1h\" }}\n",
        check("app.a", "{ kind = \"port\", port = 22 }")
    );
    let e = usage_error(&typo);
    assert!(
        e.starts_with("/etc/bollwerk/checks.d/app.toml:15:9:"),
        "{e}"
    );
    assert!(e.contains("max_aeg"), "{e}");
    // A collision with a built-in id points at the table.
    let e = usage_error(&format!(
        "{}{}",
        check("app.a", "{ kind = \"port\", port = 22 }"),
        check("ssh.permit-root-login", "{ kind = \"port\", port = 22 }")
    ));
    assert!(e.starts_with("/etc/bollwerk/checks.d/app.toml:9:1:"), "{e}");
    assert!(e.contains("already taken"), "{e}");
    // Probe validation: other hosts, relative programs, bad durations and regexes.
    for (probe, needle) in [
        (
            "{ kind = \"http\", url = \"http://example.org/\" }",
            "refused",
        ),
        (
            "{ kind = \"http\", url = \"http://10.1.2.3:80/\" }",
            "refused",
        ),
        (
            "{ kind = \"command\", argv = [\"sh\", \"-c\", \"x\"] }",
            "absolute path",
        ),
        ("{ kind = \"command\", argv = [] }", "needs the program"),
        (
            "{ kind = \"command\", argv = [\"/bin/true\"], timeout = \"1h\" }",
            "between 1s and 5m",
        ),
        (
            "{ kind = \"file_age\", path = \"/var/backups\", max_age = \"soon\" }",
            "max_age",
        ),
        (
            "{ kind = \"file_age\", path = \"/../etc\", max_age = \"1h\" }",
            "without `..`",
        ),
        (
            "{ kind = \"port\", port = 80, only_on = [\"localhost\"] }",
            "not an IP address",
        ),
        (
            "{ kind = \"command\", argv = [\"/bin/true\"], expect = { stdout_matches = \"(\" } }",
            "bad regular expression",
        ),
    ] {
        let e = usage_error(&check("app.bad", probe));
        assert!(
            e.starts_with("/etc/bollwerk/checks.d/app.toml:1:1: check `app.bad`"),
            "{e}"
        );
        assert!(e.contains(needle), "{probe}: {e}");
    }
}

#[test]
fn target_checks_d_and_checks_dir_are_loaded_by_audit() {
    let t = Tree::fixture("debian12");
    t.write("var/backups/app/db.sql.gz", "x");
    t.write(
        "etc/bollwerk/checks.d/10-app.toml",
        &check(
            "app.backup-fresh",
            "{ kind = \"file_age\", path = \"/var/backups/app\", max_age = \"26h\" }",
        ),
    );
    let extra = tempfile::tempdir().unwrap();
    std::fs::write(
        extra.path().join("cert.toml"),
        check(
            "app.cert",
            "{ kind = \"tls_cert\", path = \"/etc/ssl/app.pem\", min_days = 14 }",
        ),
    )
    .unwrap();
    let (code, out) = cli(&[
        "audit",
        "--root",
        t.root().to_str().unwrap(),
        "--format",
        "json",
        "--checks",
        extra.path().to_str().unwrap(),
        "--check",
        "app.backup-fresh",
        "--check",
        "app.cert",
    ]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
    let rs = r["results"].as_array().unwrap();
    assert_eq!(rs.len(), 2, "{out}");
    assert_eq!(rs[0]["id"], "app.backup-fresh");
    assert_eq!(rs[0]["status"], "pass", "{}", rs[0]);
    assert_eq!(rs[1]["status"], "fail", "no certificate file: {}", rs[1]);
    assert_eq!(code, 1, "a high-severity failure");
    // A collision between the target's files and --checks is refused, exit 2.
    std::fs::write(
        extra.path().join("dup.toml"),
        check("app.backup-fresh", "{ kind = \"port\", port = 1 }"),
    )
    .unwrap();
    let c = bollwerk::cli::Cli::try_parse_from([
        "bollwerk",
        "audit",
        "--root",
        t.root().to_str().unwrap(),
        "--checks",
        extra.path().to_str().unwrap(),
    ])
    .unwrap();
    let mut out = Vec::new();
    assert_eq!(
        bollwerk::app::run(&c, &FakeRunner::new(), &mut out).code(),
        2
    );
}

#[test]
fn command_probe_pass_fail_and_argv_is_literal() {
    let t = Tree::fixture("debian12");
    let runner = FakeRunner::new();
    runner.respond("/usr/local/bin/app-check", 0, "status: ok\n");
    runner.respond("/usr/local/bin/app-broken", 3, "");
    let toml = format!(
        "{}{}{}",
        check(
            "app.cmd-ok",
            "{ kind = \"command\", argv = [\"/usr/local/bin/app-check\", \"a; rm -rf /\", \"$(id)\"], expect = { exit = 0, stdout_matches = \"^status: ok\" } }"
        ),
        check(
            "app.cmd-fail",
            "{ kind = \"command\", argv = [\"/usr/local/bin/app-broken\"], expect = { exit = 0 } }"
        ),
        check(
            "app.cmd-nomatch",
            "{ kind = \"command\", argv = [\"/usr/local/bin/app-check\", \"x\"], expect = { stdout_matches = \"healthy\" } }"
        ),
    );
    let r = audit_with(t.root(), &toml, &runner, None);
    assert_status(&r, "app.cmd-ok", Status::Pass, "exited 0");
    assert_status(&r, "app.cmd-fail", Status::Fail, "exited 3");
    assert_status(
        &r,
        "app.cmd-nomatch",
        Status::Fail,
        "does not match /healthy/",
    );
    // The runner got the argv as given: one program, literal arguments.
    let log = runner.log();
    assert!(
        log.iter()
            .any(|l| l.contains("/usr/local/bin/app-check 'a; rm -rf /' '$(id)'")),
        "{log:?}"
    );
}

#[test]
fn command_probe_runs_without_a_shell() {
    // The real runner against `/`: /bin/echo gets `;`, `$(…)` and backticks literally; a
    // shell would have run `touch`.
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("shell-ran");
    let m = marker.display().to_string();
    let toml = check(
        "app.no-shell",
        &format!(
            "{{ kind = \"command\", argv = [\"/bin/echo\", \"x; touch {m}\", \"$(touch {m})\", \"`touch {m}`\"], timeout = \"5s\", expect = {{ stdout_matches = '^x; touch .*\\$\\(touch .*\\)' }} }}"
        ),
    );
    let r = audit_with(Path::new("/"), &toml, &SystemRunner::default(), None);
    assert_status(&r, "app.no-shell", Status::Pass, "$(touch");
    assert!(!marker.exists(), "no shell ran the argv");
    // Timeouts fail the check.
    let toml = check(
        "app.slow",
        "{ kind = \"command\", argv = [\"/bin/sleep\", \"5\"], timeout = \"1s\" }",
    );
    let r = audit_with(Path::new("/"), &toml, &SystemRunner::default(), None);
    assert_status(&r, "app.slow", Status::Fail, "timed out");
}

fn fake_proc(tcp: &str, tcp6: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("net")).unwrap();
    std::fs::write(d.path().join("net/tcp"), tcp).unwrap();
    std::fs::write(d.path().join("net/tcp6"), tcp6).unwrap();
    d
}

const TCP_HEAD: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";

#[test]
fn port_probe_pass_fail_and_image() {
    let t = Tree::fixture("debian12");
    // PostgreSQL on 127.0.0.1:5432 and [::1]:5432, sshd on 0.0.0.0:22, a client socket on 8080.
    let tcp = format!(
        "{TCP_HEAD}   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   105        0 1 1\n   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1\n   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n"
    );
    let tcp6 = format!(
        "{TCP_HEAD}   0: 00000000000000000000000001000000:1538 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000   105        0 4 1\n"
    );
    let proc_dir = fake_proc(&tcp, &tcp6);
    let toml = format!(
        "{}{}{}{}",
        check(
            "app.pg-local",
            "{ kind = \"port\", port = 5432, only_on = [\"127.0.0.1\", \"::1\"] }"
        ),
        check(
            "app.ssh-local",
            "{ kind = \"port\", port = 22, only_on = [\"127.0.0.1\"] }"
        ),
        check("app.app-up", "{ kind = \"port\", port = 8080 }"),
        check(
            "app.no-telnet",
            "{ kind = \"port\", port = 23, listening = false }"
        ),
    );
    let r = audit_with(
        t.root(),
        &toml,
        &FakeRunner::new(),
        Some(proc_dir.path().to_path_buf()),
    );
    assert_status(&r, "app.pg-local", Status::Pass, "127.0.0.1, ::1");
    assert_status(&r, "app.ssh-local", Status::Fail, "listens on 0.0.0.0");
    assert_status(&r, "app.app-up", Status::Fail, "nothing listens");
    assert_status(&r, "app.no-telnet", Status::Pass, "nothing listens");
    // An image (no running system): not judged.
    let r = audit_with(t.root(), &toml, &FakeRunner::new(), None);
    assert_status(&r, "app.pg-local", Status::Skipped, "running system");
}

/// Serves `n` requests on a loopback port with a fixed response; returns the port.
fn serve(response: &'static str, n: usize) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(n) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(response.as_bytes());
        }
    });
    port
}

#[test]
fn http_probe_pass_fail_and_refusal() {
    let t = Tree::fixture("debian12");
    let ok = serve(
        "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nstatus: ok\r\n",
        1,
    );
    let down = serve(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndown",
        1,
    );
    let redirect = serve(
        "HTTP/1.1 302 Found\r\nLocation: http://example.org/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        1,
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let toml = format!(
        "{}{}{}{}",
        check(
            "app.health",
            &format!(
                "{{ kind = \"http\", url = \"http://127.0.0.1:{ok}/health\", status = 200, body_matches = \"status: ok\" }}"
            )
        ),
        check(
            "app.health-down",
            &format!("{{ kind = \"http\", url = \"http://localhost:{down}/health\" }}")
        ),
        check(
            "app.health-redirect",
            &format!("{{ kind = \"http\", url = \"http://127.0.0.1:{redirect}/\" }}")
        ),
        check(
            "app.health-closed",
            &format!(
                "{{ kind = \"http\", url = \"http://127.0.0.1:{closed}/\", timeout = \"2s\" }}"
            )
        ),
    );
    let proc_dir = fake_proc(TCP_HEAD, TCP_HEAD);
    let r = audit_with(
        t.root(),
        &toml,
        &FakeRunner::new(),
        Some(proc_dir.path().to_path_buf()),
    );
    assert_status(&r, "app.health", Status::Pass, ": 200");
    assert_status(&r, "app.health-down", Status::Fail, ": 503");
    assert_status(&r, "app.health-redirect", Status::Fail, ": 302");
    assert_status(
        &r,
        "app.health-closed",
        Status::Fail,
        "GET http://127.0.0.1",
    );
}

fn set_mtime(p: &Path, ago: Duration) {
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::now() - ago).unwrap();
}

#[test]
fn file_age_probe_pass_and_fail() {
    let t = Tree::fixture("debian12");
    t.write("var/backups/fresh/2026/db.sql.gz", "x");
    t.write("var/backups/fresh/old.sql.gz", "x");
    set_mtime(
        &t.path("var/backups/fresh/old.sql.gz"),
        Duration::from_secs(90 * 3600),
    );
    set_mtime(
        &t.path("var/backups/fresh/2026/db.sql.gz"),
        Duration::from_secs(3600),
    );
    t.write("var/backups/stale/db.sql.gz", "x");
    set_mtime(
        &t.path("var/backups/stale/db.sql.gz"),
        Duration::from_secs(30 * 3600),
    );
    std::fs::create_dir_all(t.path("var/backups/empty")).unwrap();
    // A symlink to a fresh file outside the tree is not followed.
    std::os::unix::fs::symlink("/proc/self/stat", t.path("var/backups/stale/link")).unwrap();
    let toml = format!(
        "{}{}{}{}",
        check(
            "app.backup-fresh",
            "{ kind = \"file_age\", path = \"/var/backups/fresh\", max_age = \"26h\" }"
        ),
        check(
            "app.backup-stale",
            "{ kind = \"file_age\", path = \"/var/backups/stale\", max_age = \"26h\" }"
        ),
        check(
            "app.backup-empty",
            "{ kind = \"file_age\", path = \"/var/backups/empty\", max_age = \"26h\" }"
        ),
        check(
            "app.backup-missing",
            "{ kind = \"file_age\", path = \"/var/backups/none\", max_age = \"26h\" }"
        ),
    );
    let r = audit_with(t.root(), &toml, &FakeRunner::new(), None);
    assert_status(
        &r,
        "app.backup-fresh",
        Status::Pass,
        "/var/backups/fresh/2026/db.sql.gz is 1h",
    );
    assert_status(&r, "app.backup-stale", Status::Fail, "is 1day 6h");
    assert_status(&r, "app.backup-empty", Status::Fail, "no file under");
    assert_status(&r, "app.backup-missing", Status::Fail, "does not exist");
    // A symlinked backup directory is followed inside the root, even when absolute.
    std::os::unix::fs::symlink("/var/backups/fresh", t.path("var/backups/current")).unwrap();
    let toml = check(
        "app.backup-link",
        "{ kind = \"file_age\", path = \"/var/backups/current\", max_age = \"26h\" }",
    );
    let r = audit_with(t.root(), &toml, &FakeRunner::new(), None);
    assert_status(
        &r,
        "app.backup-link",
        Status::Pass,
        "/var/backups/fresh/2026/db.sql.gz",
    );
}

#[test]
fn tls_cert_probe_pass_and_fail() {
    let t = Tree::fixture("debian12");
    let fx = common::tree::fixtures().join("fleet");
    t.write(
        "etc/ssl/long.pem",
        &std::fs::read_to_string(fx.join("cert-long.pem")).unwrap(),
    );
    t.write(
        "etc/ssl/short.pem",
        &std::fs::read_to_string(fx.join("cert-short.pem")).unwrap(),
    );
    t.write(
        "etc/ssl/garbage.pem",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let toml = format!(
        "{}{}{}",
        check(
            "app.cert-long",
            "{ kind = \"tls_cert\", path = \"/etc/ssl/long.pem\", min_days = 30 }"
        ),
        check(
            "app.cert-short",
            "{ kind = \"tls_cert\", path = \"/etc/ssl/short.pem\", min_days = 30 }"
        ),
        check(
            "app.cert-garbage",
            "{ kind = \"tls_cert\", path = \"/etc/ssl/garbage.pem\", min_days = 30 }"
        ),
    );
    let r = audit_with(t.root(), &toml, &FakeRunner::new(), None);
    // cert-long.pem: notAfter 2126-11-12 (GeneralizedTime); cert-short.pem: 2026-12-07 (UTCTime).
    assert_status(
        &r,
        "app.cert-long",
        Status::Pass,
        "expires 2126-11-12T02:35:51Z",
    );
    let (st, ev) = result(&r, "app.cert-short");
    assert_eq!(*st, Status::Fail, "{ev}");
    assert!(ev.contains("2026-12-07T02:35:51Z"), "{ev}");
    assert_status(
        &r,
        "app.cert-garbage",
        Status::Error,
        "not an X.509 certificate",
    );
    // The parser agrees with openssl where it is installed.
    if Path::new("/usr/bin/openssl").exists() {
        let out = std::process::Command::new("/usr/bin/openssl")
            .args(["x509", "-enddate", "-noout", "-in"])
            .arg(fx.join("cert-long.pem"))
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("Nov 12 02:35:51 2126 GMT"));
    }
}

#[test]
fn profile_ships_checks_disabled_until_named() {
    let t = Tree::fixture("debian12");
    t.write("var/backups/app/db.sql.gz", "x");
    let audit = |profile: &str| {
        let (_, out) = cli(&[
            "audit",
            "--root",
            t.root().to_str().unwrap(),
            "--format",
            "json",
            "--profile",
            profile,
            "--check",
            "app.backup-fresh",
            "--check",
            "app.local-health",
        ]);
        let r: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}"));
        r["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["status"].as_str().unwrap().to_string(),
                    x["evidence"].as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    // The built-in web-app profile: both checks present, not applicable.
    let r = audit("webapp-postgres");
    assert_eq!(r[0].0, "not_applicable", "{r:?}");
    assert!(r[0].1.contains("audit.backup_dir"), "{r:?}");
    assert_eq!(r[1].0, "not_applicable", "{r:?}");
    // A site profile names the backup directory and the URL: judged (the URL only on the
    // running system, so skipped for this image).
    let p = t.profile(
        "site.toml",
        "extends = \"webapp-postgres\"\n[audit]\nbackup_dir = \"/var/backups/app\"\nhealth_url = \"http://127.0.0.1:8080/health\"\n",
    );
    let r = audit(&p);
    assert_eq!(r[0].0, "pass", "{r:?}");
    assert!(r[0].1.contains("/var/backups/app/db.sql.gz"), "{r:?}");
    assert_eq!(r[1].0, "skipped", "{r:?}");
    // A profile's own check with a bad probe, and a non-loopback health URL: exit 2 at
    // `validate`, with the position.
    let bad = t.profile(
        "bad.toml",
        "extends = \"webapp-postgres\"\n[[audit.checks]]\nid = \"app.x\"\ntitle = \"t\"\nrationale = \"r\"\nseverity = \"low\"\nfix = { manual = \"m\" }\nprobe = { kind = \"command\", argv = [\"curl\"] }\n",
    );
    let (code, _) = cli(&["validate", "--profile", &bad]);
    assert_eq!(code, 2);
    let e = bollwerk::profile::load(&bad).unwrap_err().to_string();
    assert!(e.contains(".toml:2:") && e.contains("absolute path"), "{e}");
    let remote = t.profile(
        "remote.toml",
        "extends = \"webapp-postgres\"\n[audit]\nhealth_url = \"http://192.0.2.1/health\"\n",
    );
    let e = bollwerk::profile::load(&remote).unwrap_err().to_string();
    assert!(e.contains(".toml:3:") && e.contains("refused"), "{e}");
}
