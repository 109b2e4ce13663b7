//! Catalog tests: every check of the embedded catalog has a fixture case it passes and one it
//! fails (`tests/fixtures/audit/cases/*.toml`, format in `checks/README.md`), so a probe that
//! always passes (or always fails) is caught; and every check whose scope excludes containers
//! reports `not_applicable` with a reason on a root marked as a container.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bollwerk::audit::catalog::Catalog;
use bollwerk::audit::result::Status;
use bollwerk::audit::{AuditOptions, run};
use bollwerk::exec::FakeRunner;
use bollwerk::root::Root;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Case {
    #[serde(deserialize_with = "bollwerk::audit::check::one_or_many")]
    checks: Vec<String>,
    expect: Status,
    #[serde(default)]
    evidence: Option<String>,
    #[serde(default)]
    base: Option<String>,
    #[serde(default)]
    container: Option<String>,
    #[serde(default)]
    live: bool,
    #[serde(default)]
    packages: Vec<String>,
    #[serde(default)]
    sshd_t: Option<String>,
    /// Profile data as TOML (any sections, also those of modules this build lacks).
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    level: Option<u8>,
    #[serde(default)]
    dirs: Vec<String>,
    #[serde(default)]
    files: BTreeMap<String, String>,
    #[serde(default)]
    modes: BTreeMap<String, String>,
    #[serde(default)]
    symlinks: BTreeMap<String, String>,
    #[serde(default)]
    proc: BTreeMap<String, String>,
    #[serde(default)]
    sys: BTreeMap<String, String>,
    #[serde(default)]
    commands: BTreeMap<String, String>,
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audit/cases")
}

fn load_cases() -> Vec<(String, usize, Case)> {
    let mut out = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("cases dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    names.sort();
    for p in names {
        let text = std::fs::read_to_string(&p).unwrap();
        let f: CaseFile = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        for (i, c) in f.case.into_iter().enumerate() {
            out.push((name.clone(), i + 1, c));
        }
    }
    out
}

fn write(root: &Path, rel: &str, content: &[u8]) {
    let p = root.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    // Replace whatever the base fixture had (a symlink must not be followed).
    let _ = std::fs::remove_file(&p);
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
}

/// Builds the case's root; returns (root dir guard, proc dir, sys dir).
fn build(case: &Case) -> (TempRoot, Option<PathBuf>, Option<PathBuf>) {
    let t = match &case.base {
        Some(b) => TempRoot::Tree(common::tree::Tree::fixture(b)),
        None => {
            let d = tempfile::Builder::new()
                .prefix("bollwerk-case-")
                .tempdir()
                .unwrap();
            std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            TempRoot::Dir(d)
        }
    };
    let root = t.path().to_path_buf();
    for d in &case.dirs {
        let p = root.join(d.trim_start_matches('/'));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for (p, c) in &case.files {
        write(&root, p, c.as_bytes());
    }
    if !case.packages.is_empty() || !case.files.contains_key("var/lib/dpkg/status") {
        let mut status = String::new();
        for p in &case.packages {
            status.push_str(&format!(
                "Package: {p}\nStatus: install ok installed\nVersion: 1.0-1\n\n"
            ));
        }
        write(&root, "var/lib/dpkg/status", status.as_bytes());
    }
    if case.sshd_t.is_some() && !root.join("usr/sbin/sshd").exists() {
        write(&root, "usr/sbin/sshd", b"");
    }
    if let Some(c) = &case.container {
        write(&root, "run/systemd/container", format!("{c}\n").as_bytes());
    }
    for (p, target) in &case.symlinks {
        let l = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(l.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&l);
        std::os::unix::fs::symlink(target, &l).unwrap();
    }
    for (p, spec) in &case.modes {
        let path = root.join(p.trim_start_matches('/'));
        let mut w = spec.split_whitespace();
        let mode = u32::from_str_radix(w.next().unwrap(), 8).unwrap();
        if let Some(own) = w.next() {
            let (u, g) = own.split_once(':').unwrap();
            std::os::unix::fs::lchown(&path, Some(u.parse().unwrap()), Some(g.parse().unwrap()))
                .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    }
    let (proc_dir, sys_dir) = if case.live {
        let base = root.parent().unwrap().join(format!(
            "{}-live",
            root.file_name().unwrap().to_string_lossy()
        ));
        for (p, c) in &case.proc {
            write(&base.join("proc"), p, c.as_bytes());
        }
        for (p, c) in &case.sys {
            write(&base.join("sys"), p, c.as_bytes());
        }
        std::fs::create_dir_all(base.join("proc")).unwrap();
        std::fs::create_dir_all(base.join("sys")).unwrap();
        (Some(base.join("proc")), Some(base.join("sys")))
    } else {
        (None, None)
    };
    (t, proc_dir, sys_dir)
}

enum TempRoot {
    Tree(common::tree::Tree),
    Dir(tempfile::TempDir),
}

impl TempRoot {
    fn path(&self) -> &Path {
        match self {
            TempRoot::Tree(t) => t.root(),
            TempRoot::Dir(d) => d.path(),
        }
    }
}

fn expand(cat: &Catalog, pats: &[String], file: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for p in pats {
        let m: Vec<String> = cat
            .checks
            .iter()
            .filter(|c| bollwerk::sshd_config::glob_match(p, &c.id))
            .map(|c| c.id.clone())
            .collect();
        assert!(!m.is_empty(), "{file} case {n}: `{p}` matches no check");
        ids.extend(m);
    }
    ids.sort();
    ids.dedup();
    ids
}

fn run_case(cat: &Catalog, case: &Case, ids: &[String]) -> bollwerk::audit::result::Report {
    let (t, proc_dir, sys_dir) = build(case);
    let runner = FakeRunner::new();
    match &case.sshd_t {
        Some(t) => {
            runner.respond("/usr/sbin/sshd -T", 0, t);
        }
        None => {
            runner.push(
                "/usr/sbin/sshd -T",
                255,
                "",
                "sshd: no hostkeys available -- exiting.",
            );
        }
    }
    for (prefix, out) in &case.commands {
        runner.respond(prefix, 0, out);
    }
    let profile_data = case.profile.as_ref().map(|p| {
        let t: toml::Table = toml::from_str(p).expect("case profile TOML");
        serde_json::to_value(t).unwrap()
    });
    let opts = AuditOptions {
        level: case.level.unwrap_or(2),
        proc_dir,
        sys_dir,
        systemd_running: Some(case.live),
        only: Some(ids.to_vec()),
        threads: Some(2),
        profile_data,
    };
    let root = Root::new(t.path()).unwrap();
    let r = run(cat, root, &runner, None, &opts).expect("audit runs");
    if case.live
        && let Some(p) = t.path().parent()
    {
        let _ = std::fs::remove_dir_all(p.join(format!(
            "{}-live",
            t.path().file_name().unwrap().to_string_lossy()
        )));
    }
    r
}

#[test]
fn every_check_passes_one_case_and_fails_another() {
    let cat = Catalog::embedded().unwrap_or_else(|e| panic!("{e}"));
    let mut seen: BTreeMap<String, BTreeSet<Status>> = BTreeMap::new();
    let mut failures = Vec::new();
    let cases = load_cases();
    assert!(!cases.is_empty());
    for (file, n, case) in &cases {
        let ids = expand(&cat, &case.checks, file, *n);
        let report = run_case(&cat, case, &ids);
        for r in &report.results {
            seen.entry(r.id.clone()).or_default().insert(r.status);
            if r.status != case.expect {
                failures.push(format!(
                    "{file} case {n}: {} is {} (expected {}): {}",
                    r.id, r.status, case.expect, r.evidence
                ));
            } else if let Some(ev) = &case.evidence
                && !r.evidence.contains(ev.as_str())
            {
                failures.push(format!(
                    "{file} case {n}: {} evidence lacks `{ev}`: {}",
                    r.id, r.evidence
                ));
            }
            if r.evidence.trim().is_empty() {
                failures.push(format!("{file} case {n}: {} has no evidence", r.id));
            }
        }
    }
    let mut uncovered = Vec::new();
    for c in &cat.checks {
        let s = seen.get(&c.id).cloned().unwrap_or_default();
        if !s.contains(&Status::Pass) || !s.contains(&Status::Fail) {
            uncovered.push(format!(
                "{} (has: {})",
                c.id,
                s.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
    }
    assert!(
        failures.is_empty() && uncovered.is_empty(),
        "{} case mismatches:\n  {}\n{} checks without both a passing and a failing case:\n  {}",
        failures.len(),
        failures.join("\n  "),
        uncovered.len(),
        uncovered.join("\n  ")
    );
}

#[test]
fn vm_only_checks_are_not_applicable_in_a_container_with_a_reason() {
    let cat = Catalog::embedded().unwrap();
    let vm_only: Vec<String> = cat
        .checks
        .iter()
        .filter(|c| !c.applies_to_containers())
        .map(|c| c.id.clone())
        .collect();
    assert!(vm_only.len() > 20, "kernel/mount/module/boot checks exist");
    let case = Case {
        checks: vec![],
        expect: Status::NotApplicable,
        evidence: None,
        base: Some("debian12".into()),
        container: Some("lxc".into()),
        live: false,
        packages: vec!["apparmor".into()],
        sshd_t: None,
        profile: None,
        level: None,
        dirs: vec![],
        files: BTreeMap::new(),
        modes: BTreeMap::new(),
        symlinks: BTreeMap::new(),
        proc: BTreeMap::new(),
        sys: BTreeMap::new(),
        commands: BTreeMap::new(),
    };
    let r = run_case(&cat, &case, &vm_only);
    for x in &r.results {
        assert_eq!(x.status, Status::NotApplicable, "{}: {}", x.id, x.evidence);
        assert!(
            x.evidence.starts_with("container (lxc): ") && x.evidence.len() > 30,
            "{}: reason missing: {}",
            x.id,
            x.evidence
        );
    }
    // Kernel, module, mount and bootloader checks are among them.
    for id in [
        "kmod.cramfs",
        "mount.tmp-separate",
        "kernel.aslr",
        "boot.grub-cfg-perms",
    ] {
        assert!(vm_only.contains(&id.to_string()), "{id} is vm-only");
    }
    // The rest is still judged in a container: net.* sysctls and sshd, for example.
    let still: Vec<String> = ["net.tcp-syncookies", "accounts.uid0-only-root"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let r = run_case(&cat, &case, &still);
    for x in &r.results {
        assert_ne!(x.status, Status::NotApplicable, "{}: {}", x.id, x.evidence);
    }
}

/// `tests/testbed/openscap-map.toml` (issue 12: our audit against OpenSCAP's CIS content) names
/// only checks of the catalog, is sorted by rule id, and says why where a rule has no equivalent.
#[test]
fn openscap_map_names_catalog_checks() {
    let cat = Catalog::embedded().unwrap_or_else(|e| panic!("{e}"));
    let ids: BTreeSet<&str> = cat.checks.iter().map(|c| c.id.as_str()).collect();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testbed/openscap-map.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let map: BTreeMap<String, Vec<String>> = toml::from_str(&text).unwrap();
    assert!(map.len() > 200, "{} rules", map.len());
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(" = ").next().unwrap_or(l))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted, "sorted by rule id");
    for l in text.lines().filter(|l| l.contains("= []")) {
        assert!(l.contains("= []  # "), "no reason given: {l}");
    }
    for (rule, checks) in &map {
        for c in checks {
            assert!(
                ids.contains(c.as_str()),
                "{rule}: no check `{c}` in the catalog"
            );
        }
    }
}
