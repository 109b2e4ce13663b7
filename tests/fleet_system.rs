//! Fleet system test: Debian's `ansible-playbook` runs the collection in `ansible/` (role
//! `bollwerk.host.bollwerk`, modules `bollwerk_apply` / `bollwerk_audit`) against three hosts,
//! each a fresh copy of the Debian 12 testbed root, and `bollwerk report merge` renders the
//! fetched reports.
//!
//! The hosts are reached with Ansible's `local` connection and the role's `bollwerk_root`
//! (bollwerk's `--root`): every change lands in the test's overlay roots, nothing on this
//! machine (binary, profile, reports live in the test's temp dir). SSH to booted containers
//! is not part of this test (see docs/fleet.md); `apply --confirm` needs a live host and is off.
//!
//! Proven: the binary is installed from the release-style tarball with its checksum (and a
//! wrong checksum is refused); check mode shows bollwerk's unified diffs and changes nothing;
//! the first run applies, the second reports `changed=0` on every host; a host whose profile
//! would lock the admin out fails with bollwerk's refusal text and is left unchanged; the
//! reports end up on the controller and `report merge` renders them. `ansible-lint` is clean.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::testbed::*;

fn ansible_ok() -> bool {
    ["ansible-playbook", "ansible-lint"]
        .iter()
        .all(|t| which(t).is_some())
}

fn skip_without_ansible(test: &str) -> bool {
    if ansible_ok() {
        return false;
    }
    let msg = format!(
        "SKIPPED {test}: ansible-playbook / ansible-lint missing (apt-get install ansible ansible-lint)"
    );
    eprintln!("{msg}");
    assert!(
        std::env::var("BOLLWERK_REQUIRE_SYSTEM_TESTS").as_deref() != Ok("1"),
        "{msg}"
    );
    true
}

fn collection_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ansible")
}

/// `<tmp>/collections/ansible_collections/bollwerk/host` → the repository's `ansible/`.
fn collections_path(tmp: &Path) -> PathBuf {
    let c = tmp.join("collections");
    let ns = c.join("ansible_collections/bollwerk");
    std::fs::create_dir_all(&ns).unwrap();
    let link = ns.join("host");
    if !link.exists() {
        std::os::unix::fs::symlink(collection_dir(), &link).unwrap();
    }
    c
}

fn ansible_env(cmd: &mut Command, tmp: &Path) {
    cmd.env("ANSIBLE_COLLECTIONS_PATH", collections_path(tmp))
        .env("ANSIBLE_COLLECTIONS_PATHS", collections_path(tmp))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
        .env("ANSIBLE_LOCAL_TEMP", tmp.join("ansible-local"))
        .env("ANSIBLE_REMOTE_TEMP", tmp.join("ansible-remote"))
        .env("ANSIBLE_HOME", tmp.join("ansible-home"))
        .env("ANSIBLE_PYTHON_INTERPRETER", "/usr/bin/python3")
        .env("ANSIBLE_STDOUT_CALLBACK", "default")
        .env("ANSIBLE_DEPRECATION_WARNINGS", "0")
        .env("HOME", tmp.join("home"))
        .current_dir(tmp);
}

#[test]
fn ansible_lint_is_clean() {
    if skip_without_ansible("ansible_lint_is_clean") {
        return;
    }
    let tmp = TempDir::new("fleet-lint");
    let mut c = Command::new("ansible-lint");
    c.args(["-p", "--offline"]);
    ansible_env(&mut c, tmp.path());
    c.current_dir(collection_dir());
    let out = run_capture(&mut c, None, DEFAULT_TIMEOUT);
    assert!(out.status.success(), "ansible-lint:\n{}", describe(&out));
}

/// A tarball with the release's layout (`cargo xtask dist`: `bollwerk-<ver>/usr/sbin/bollwerk`) of
/// the binary under test, and its sha256.
fn tarball(tmp: &Path) -> (PathBuf, String) {
    let ver = env!("CARGO_PKG_VERSION");
    let stage = tmp.join(format!("stage/bollwerk-{ver}"));
    std::fs::create_dir_all(stage.join("usr/sbin")).unwrap();
    std::fs::copy(bollwerk_bin(), stage.join("usr/sbin/bollwerk")).unwrap();
    let tgz = tmp.join(format!("bollwerk-{ver}-x86_64-linux-musl.tar.gz"));
    let out = run_capture(
        Command::new("tar")
            .arg("-C")
            .arg(tmp.join("stage"))
            .arg("-czf")
            .arg(&tgz)
            .arg(format!("bollwerk-{ver}")),
        None,
        DEFAULT_TIMEOUT,
    );
    assert!(out.status.success(), "{}", describe(&out));
    let out = run_capture(Command::new("sha256sum").arg(&tgz), None, DEFAULT_TIMEOUT);
    let sum = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    (tgz, sum)
}

struct Fleet {
    tmp: TempDir,
    inventory: PathBuf,
    playbook: PathBuf,
}

/// Writes the inventory: one local host per (name, root, profile TOML extra), all state of
/// the role under `<tmp>/<name>/`.
fn fleet(hosts: &[(&str, &Path, String)], sha: Option<&str>) -> Fleet {
    let tmp = TempDir::new("fleet-ansible");
    let (tgz, sum) = tarball(tmp.path());
    let mut inv = String::from("all:\n  children:\n    bollwerk:\n      hosts:\n");
    for (name, root, users) in hosts {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        inv.push_str(&format!(
            "        {name}:\n          ansible_connection: local\n          bollwerk_root: {root}\n          bollwerk_install_dir: {d}/opt\n          bollwerk_link: {d}/bin/bollwerk\n          bollwerk_profile_path: {d}/etc/site.toml\n          bollwerk_audit_report: {d}/audit.json\n          bollwerk_hostname: {name}\n{users}",
            root = root.display(),
            d = d.display()
        ));
        std::fs::create_dir_all(d.join("bin")).unwrap();
    }
    inv.push_str(&format!(
        "      vars:\n        bollwerk_tarball: {}\n        bollwerk_sha256: \"{}\"\n        bollwerk_confirm: \"\"\n        bollwerk_reports_dir: {}/reports\n        bollwerk_extends: baseline\n",
        tgz.display(),
        sha.unwrap_or(&sum),
        tmp.path().display()
    ));
    let inventory = tmp.path().join("inventory.yml");
    std::fs::write(&inventory, inv).unwrap();
    let playbook = tmp.path().join("site.yml");
    std::fs::copy(collection_dir().join("playbooks/site.yml"), &playbook).unwrap();
    Fleet {
        tmp,
        inventory,
        playbook,
    }
}

impl Fleet {
    fn play(&self, extra: &[&str]) -> (Output, Duration) {
        let mut c = Command::new("ansible-playbook");
        c.arg("-i")
            .arg(&self.inventory)
            .arg(&self.playbook)
            .args(extra);
        ansible_env(&mut c, self.tmp.path());
        let t = Instant::now();
        let out = run_capture(&mut c, None, Duration::from_secs(900));
        (out, t.elapsed())
    }
}

/// `name : ok=… changed=N …` of the PLAY RECAP.
fn recap(out: &Output, host: &str) -> (u32, u32) {
    let s = String::from_utf8_lossy(&out.stdout);
    let line = s
        .lines()
        .skip_while(|l| !l.starts_with("PLAY RECAP"))
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no recap for {host}:\n{s}"));
    let field = |k: &str| -> u32 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(u32::MAX)
    };
    (field("changed"), field("failed"))
}

fn admin(pubkey: &str) -> String {
    format!(
        "          bollwerk_users:\n            - name: admin\n              groups: [sudo]\n              sudo: nopasswd\n              ssh_keys: [\"{pubkey}\"]\n"
    )
}

#[test]
fn playbook_check_apply_idempotent_refusal_reports_merge() {
    if skip_without_ansible("playbook_check_apply_idempotent_refusal_reports_merge") {
        return;
    }
    let Some(tb) = testbed_or_skip("playbook_check_apply_idempotent_refusal_reports_merge") else {
        return;
    };
    let keys = TempDir::new("fleet-keys");
    let (_key, pubkey) = keypair(keys.path(), "admin");
    let (web1, web2, locked) = (tb.instance(), tb.instance(), tb.instance());
    let hosts = [
        ("web1", web1.root.as_path(), admin(&pubkey)),
        ("web2", web2.root.as_path(), admin(&pubkey)),
        // No admin user: baseline turns off password and root logins, so bollwerk refuses.
        ("locked", locked.root.as_path(), String::new()),
    ];

    // A wrong checksum is refused before anything is copied.
    let bad = fleet(&hosts[..1], Some(&"0".repeat(64)));
    let (out, _) = bad.play(&["--tags", "bollwerk_install"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is not 0000"),
        "{}",
        describe(&out)
    );
    assert!(
        !bad.tmp
            .path()
            .join("web1/opt/0.1.0/usr/sbin/bollwerk")
            .exists()
    );

    let f = fleet(&hosts, None);
    let ver = env!("CARGO_PKG_VERSION");
    // Install only: one copy per version, the tarball copy removed, the link set.
    let (out, t_install) = f.play(&["--tags", "bollwerk_install"]);
    assert!(out.status.success(), "{}", describe(&out));
    for (h, ..) in &hosts {
        let d = f.tmp.path().join(h);
        assert!(
            d.join(format!("opt/{ver}/usr/sbin/bollwerk")).is_file(),
            "{h}"
        );
        assert!(!d.join(format!("opt/{ver}.tar.gz")).exists(), "{h}");
        assert_eq!(
            std::fs::read_link(d.join("bin/bollwerk")).unwrap(),
            d.join(format!("opt/{ver}/usr/sbin/bollwerk"))
        );
    }

    // Check mode: bollwerk's diffs, nothing changed in any root.
    let before: Vec<String> = [&web1, &web2, &locked]
        .iter()
        .map(|i| tree_state(&i.root))
        .collect();
    let (out, _) = f.play(&["--check", "--diff", "--limit", "web1,web2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout.contains("+PermitRootLogin no") || stdout.contains("+permitrootlogin no"),
        "unified diffs shown:\n{stdout}"
    );
    assert!(stdout.contains("--- "), "{stdout}");
    for (i, inst) in [&web1, &web2].iter().enumerate() {
        assert_eq!(
            tree_state(&inst.root),
            before[i],
            "check mode changed a root"
        );
    }

    // First run: applies on web1 and web2; `locked` fails with the refusal, unchanged.
    let (out, t_first) = f.play(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "the locked host fails the run");
    for h in ["web1", "web2"] {
        let (changed, failed) = recap(&out, h);
        assert!(
            changed > 0 && failed == 0,
            "{h}: changed={changed} failed={failed}\n{stdout}"
        );
    }
    let (_, failed) = recap(&out, "locked");
    assert_eq!(failed, 1, "{stdout}");
    assert!(stdout.contains("bollwerk refused:"), "{stdout}");
    assert!(stdout.contains("nothing was changed"), "{stdout}");
    assert_eq!(
        tree_state(&locked.root),
        before[2],
        "the refused host is unchanged"
    );
    let out2 = Command::new(bollwerk_bin())
        .args(["--root"])
        .arg(&web1.root)
        .args(["plan", "--profile"])
        .arg(f.tmp.path().join("web1/etc/site.toml"))
        .output()
        .unwrap();
    assert_eq!(
        out2.status.code(),
        Some(0),
        "web1 converged: {}",
        describe(&out2)
    );
    assert_eq!(
        std::fs::read_to_string(web1.root.join("etc/hostname"))
            .unwrap()
            .trim(),
        "web1"
    );

    // Second run: changed=0 everywhere it applied.
    let (out, t_second) = f.play(&["--limit", "web1,web2"]);
    assert!(out.status.success(), "{}", describe(&out));
    let second = String::from_utf8_lossy(&out.stdout).into_owned();
    for h in ["web1", "web2"] {
        assert_eq!(
            recap(&out, h),
            (0, 0),
            "{h}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // Reports on the controller; `report merge` renders them.
    let reports = f.tmp.path().join("reports");
    let files: Vec<String> = ["web1", "web2"]
        .iter()
        .map(|h| reports.join(format!("{h}.json")).display().to_string())
        .collect();
    for f in &files {
        assert!(Path::new(f).is_file(), "{f} fetched:\n{second}");
    }
    let html = f.tmp.path().join("fleet.html");
    let mut c = Command::new(bollwerk_bin());
    c.args(["report", "merge", "--format", "html", "--output"])
        .arg(&html)
        .args(&files);
    let out = run_capture(&mut c, None, DEFAULT_TIMEOUT);
    assert!(out.status.success(), "{}", describe(&out));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Fleet compliance — 2 hosts"), "{page}");
    let mut c = Command::new(bollwerk_bin());
    c.args(["report", "merge", "--format", "json"]).args(&files);
    let out = run_capture(&mut c, None, DEFAULT_TIMEOUT);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"web1") && names.contains(&"web2"),
        "{names:?}"
    );
    eprintln!(
        "fleet timings (3 hosts, local connection): install {:.1}s, first run {:.1}s, second run (2 hosts) {:.1}s",
        t_install.as_secs_f64(),
        t_first.as_secs_f64(),
        t_second.as_secs_f64()
    );
}

/// Benchmark (ignored by default): wall time of a full playbook run (install, apply, audit,
/// fetch) for 1 and for 3 hosts, and how it grows.
/// `cargo test --release --test fleet_system -- --ignored --nocapture bench`
#[test]
#[ignore]
fn bench_fleet_run_1_and_3_hosts() {
    if skip_without_ansible("bench_fleet_run_1_and_3_hosts") {
        return;
    }
    let Some(tb) = testbed_or_skip("bench_fleet_run_1_and_3_hosts") else {
        return;
    };
    let keys = TempDir::new("fleet-bench-keys");
    let (_key, pubkey) = keypair(keys.path(), "admin");
    let mut secs = Vec::new();
    for n in [1usize, 3] {
        let insts: Vec<_> = (0..n).map(|_| tb.instance()).collect();
        let names: Vec<String> = (1..=n).map(|i| format!("web{i}")).collect();
        let hosts: Vec<(&str, &Path, String)> = names
            .iter()
            .zip(&insts)
            .map(|(h, i)| (h.as_str(), i.root.as_path(), admin(&pubkey)))
            .collect();
        let f = fleet(&hosts, None);
        let (out, t) = f.play(&[]);
        assert!(out.status.success(), "{}", describe(&out));
        let (out2, t2) = f.play(&[]);
        assert!(out2.status.success(), "{}", describe(&out2));
        eprintln!(
            "BENCH fleet run, {n} host(s): first run {:.1} s, second (no changes) {:.1} s",
            t.as_secs_f64(),
            t2.as_secs_f64()
        );
        secs.push((t.as_secs_f64(), t2.as_secs_f64()));
    }
    eprintln!(
        "BENCH fleet run growth 1 → 3 hosts: first run ×{:.2}, second run ×{:.2} (Ansible forks 5: hosts run in parallel)",
        secs[1].0 / secs[0].0,
        secs[1].1 / secs[0].1
    );
}
