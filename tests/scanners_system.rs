//! The scanners auditors already trust judge bollwerk's hardening (issue 12).
//!
//! Three copies of the Debian 12 testbed root: fresh, hardened with `cis-level1-server` and
//! hardened with `cis-level2-server` (each plus one admin with a key). Each copy is judged by
//! our own audit (levels 1 and 2), by OpenSCAP with ComplianceAsCode's CIS Ubuntu 22.04 content
//! (widened to Debian 12, `tests/testbed/scanners.sh`) and by Lynis inside the copy booted with
//! systemd-nspawn and, for the hardened copies, in a QEMU VM booted from the copy's own kernel
//! (`scanners.sh lynis-vm`: what Lynis sees on a VPS). The test prints every figure, then holds
//! the line:
//!
//! * the hardened roots reach the targets (Lynis and OpenSCAP minimums below);
//! * every OpenSCAP failure left on a hardened root maps (`tests/testbed/openscap-map.toml`) to a
//!   check of ours that names why it needs a human decision (`site_specific` / `manual`) or why
//!   the scanner reads it differently (`scanners`);
//! * on every mapped rule both judge, our verdict agrees with OpenSCAP's, unless one of the mapped
//!   checks carries a `scanners` note that says why not.
//!
//! Ignored by default (several minutes of scanning); `tests/run-all.sh` runs it in its own step.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::testbed::*;

/// The targets (issue 12), printed next to the figures: Lynis ≥ 85 after
/// `cis-level1-server`, ≥ 90 after `cis-level2-server`, OpenSCAP CIS L1 ≥ 95 %.
const TARGETS: (u32, u32, f64) = (85, 90, 95.0);
/// What the test holds: Lynis in a VM booted from the root's own kernel (what a VPS gets, the
/// figure the targets are about: the targets themselves, held whenever the VM scan runs) and
/// Lynis inside the nspawn container (where it judges the CI host's kernel, see
/// tests/testbed/README.md; some points lower than in the VM): the hardened roots must not
/// fall below these.
const LYNIS_L1_MIN: (u32, u32) = (TARGETS.0, 80);
const LYNIS_L2_MIN: (u32, u32) = (TARGETS.1, 80);
const OSCAP_L1_MIN: f64 = TARGETS.2;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bollwerk(args: &[&str]) -> Output {
    run_capture(
        Command::new(bollwerk_bin()).args(args),
        None,
        Duration::from_secs(900),
    )
}

fn scanners(cache: &Path, args: &[&str]) -> Output {
    // Lynis under TCG is slow (a fork-heavy shell script under emulation): the VM scan has
    // its own, longer limit (scanners.sh kills QEMU after 2400 s).
    let limit = if args.first() == Some(&"lynis-vm") {
        2700
    } else {
        900
    };
    run_capture(
        Command::new(manifest().join("tests/testbed/scanners.sh"))
            .args(args)
            .env("BOLLWERK_TESTBED_CACHE", cache),
        None,
        Duration::from_secs(limit),
    )
}

/// One OpenSCAP evaluation: pass/fail counts and the failing rule ids.
#[derive(Debug, Default, Clone)]
struct Oscap {
    pass: u32,
    fail: u32,
    /// rule id (without the `xccdf_org.ssgproject.content_rule_` prefix) → "pass" / "fail"
    verdicts: BTreeMap<String, String>,
}

impl Oscap {
    fn rate(&self) -> f64 {
        if self.pass + self.fail == 0 {
            0.0
        } else {
            100.0 * f64::from(self.pass) / f64::from(self.pass + self.fail)
        }
    }

    fn failing(&self) -> Vec<&str> {
        self.verdicts
            .iter()
            .filter(|(_, v)| *v == "fail")
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

/// Reads the results file scanners.sh wrote: every rule-result with pass or fail.
fn read_oscap(results: &Path) -> Oscap {
    let xml = std::fs::read_to_string(results)
        .unwrap_or_else(|e| panic!("read {}: {e}", results.display()));
    let mut o = Oscap::default();
    for chunk in xml.split("<rule-result ").skip(1) {
        let Some(id) = chunk
            .split("idref=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
        else {
            continue;
        };
        let Some(result) = chunk
            .split("<result>")
            .nth(1)
            .and_then(|s| s.split("</result>").next())
        else {
            continue;
        };
        let id = id.trim_start_matches("xccdf_org.ssgproject.content_rule_");
        match result {
            "pass" => o.pass += 1,
            "fail" => o.fail += 1,
            _ => continue,
        }
        o.verdicts.insert(id.to_string(), result.to_string());
    }
    o
}

/// What one root got from everyone.
#[derive(Debug, Default)]
struct Figures {
    ours_l1: Option<f64>,
    ours_l2: Option<f64>,
    /// check id → status, from `audit --level 2`
    ours: BTreeMap<String, String>,
    oscap_l1: Oscap,
    oscap_l2: Option<Oscap>,
    /// Lynis inside the booted nspawn container (the CI host's kernel).
    lynis: Option<u32>,
    /// Lynis inside a QEMU VM booted from the root's own kernel (what a VPS gets).
    lynis_vm: Option<u32>,
    /// Suggestions and lost points (`TEST N`) of the VM scan, or the container's without one.
    lynis_suggestions: Vec<String>,
    lynis_lost: Vec<String>,
    seconds: BTreeMap<&'static str, f64>,
}

fn audit(root: &str, level: &str) -> serde_json::Value {
    let out = bollwerk(&[
        "audit", "--root", root, "--level", level, "--format", "json",
    ]);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "audit --level {level}: {}",
        describe(&out)
    );
    serde_json::from_slice(&out.stdout).expect("audit JSON")
}

/// Applies `profile` plus an admin to the copy; a re-apply must change nothing.
fn harden(inst: &Instance, profile: &str, f: &mut Figures) {
    let root = inst.root.to_string_lossy().into_owned();
    let (_key, pubkey) = keypair(inst.dir(), "admin");
    let site = inst.dir().join("site.toml");
    std::fs::write(
        &site,
        format!(
            "extends = \"{profile}\"\n[[users]]\nname = \"admin\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{pubkey}\"]\n"
        ),
    )
    .unwrap();
    let site = site.to_string_lossy().into_owned();
    let t = Instant::now();
    let out = bollwerk(&["apply", "--profile", &site, "--root", &root]);
    assert!(out.status.success(), "apply {profile}: {}", describe(&out));
    f.seconds.insert("apply", t.elapsed().as_secs_f64());
    let out = bollwerk(&["apply", "--profile", &site, "--root", &root]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 changes"),
        "re-apply of {profile} must change nothing: {}",
        describe(&out)
    );
}

/// Runs one Lynis scan (`lynis` in nspawn or `lynis-vm`); returns the index and stdout.
fn lynis(cache: &Path, how: &str, root: &str, out_dir: &Path) -> (Option<u32>, String) {
    let out = scanners(cache, &[how, root, &out_dir.to_string_lossy()]);
    assert!(out.status.success(), "{how}: {}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let idx = text
        .lines()
        .find_map(|l| l.strip_prefix("lynis: hardening index "))
        .and_then(|n| n.trim().parse().ok());
    (idx, text)
}

/// Hardens (when `profile` is given) and scans one fresh copy of the testbed root; Lynis also
/// in a VM when `vm`.
fn judge(tb: &Testbed, profile: Option<&str>, oscap_l2: bool, vm: bool) -> Figures {
    // Reports stay for reading after the run: target/tmp/scanners/<root>/.
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("scanners")
        .join(profile.unwrap_or("fresh"));
    let _ = std::fs::remove_dir_all(&work);
    let mut f = Figures::default();
    let inst = tb.instance();
    let root = inst.root.to_string_lossy().into_owned();
    if let Some(profile) = profile {
        harden(&inst, profile, &mut f);
    }
    let t = Instant::now();
    let l1 = audit(&root, "1");
    let l2 = audit(&root, "2");
    f.seconds.insert("audit", t.elapsed().as_secs_f64());
    f.ours_l1 = l1["summary"]["score"].as_f64();
    f.ours_l2 = l2["summary"]["score"].as_f64();
    for r in l2["results"].as_array().expect("results") {
        f.ours.insert(
            r["id"].as_str().unwrap().to_string(),
            r["status"].as_str().unwrap().to_string(),
        );
    }

    let cache = tb.cache_dir();
    let mut profiles = vec!["cis_level1_server"];
    if oscap_l2 {
        profiles.push("cis_level2_server");
    }
    for p in profiles {
        let out_dir = work.join(p);
        let t = Instant::now();
        let out = scanners(cache, &["oscap", &root, &out_dir.to_string_lossy(), p]);
        assert!(out.status.success(), "oscap {p}: {}", describe(&out));
        f.seconds.insert(
            if p == "cis_level1_server" {
                "oscap L1"
            } else {
                "oscap L2"
            },
            t.elapsed().as_secs_f64(),
        );
        let o = read_oscap(&out_dir.join("oscap-results.xml"));
        if p == "cis_level1_server" {
            f.oscap_l1 = o;
        } else {
            f.oscap_l2 = Some(o);
        }
    }

    // Lynis last: it unpacks itself into the copy and boots it (container, then VM).
    let t = Instant::now();
    let (idx, mut text) = lynis(cache, "lynis", &root, &work.join("lynis"));
    f.seconds.insert("lynis nspawn", t.elapsed().as_secs_f64());
    f.lynis = idx;
    if vm {
        let t = Instant::now();
        let (idx, vm_text) = lynis(cache, "lynis-vm", &root, &work.join("lynis-vm"));
        f.seconds.insert("lynis VM", t.elapsed().as_secs_f64());
        if let Some(steps) = vm_text.lines().find(|l| l.starts_with("lynis-vm: ")) {
            eprintln!("{}: {steps}", profile.unwrap_or("fresh"));
        }
        f.lynis_vm = idx;
        text = vm_text;
    }
    f.lynis_lost = text
        .lines()
        .filter_map(|l| l.strip_prefix("lynis lost: "))
        .map(str::to_string)
        .collect();
    f.lynis_suggestions = text
        .lines()
        .filter_map(|l| l.strip_prefix("lynis suggestion: "))
        .map(|s| s.split('|').take(2).collect::<Vec<_>>().join(" "))
        .collect();
    f
}

/// Whether Lynis also runs in a VM: by default only where KVM really runs guests. Under TCG
/// Lynis (a fork-heavy shell script) takes 7-10 minutes per root on the quiet 2-core testbed
/// machine, about 22 when the two hardened roots scan side by side: more than CI's budget has
/// left. `BOLLWERK_LYNIS_VM=1` forces the VM scan, `0` turns it off.
fn lynis_vm_wanted() -> bool {
    match std::env::var("BOLLWERK_LYNIS_VM").as_deref() {
        Ok("1") => return true,
        Ok("0") => return false,
        _ => {}
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let modules = std::fs::read_to_string("/proc/modules").unwrap_or_default();
    let kvm = Path::new("/dev/kvm").exists()
        && cpu.split_whitespace().any(|w| w == "vmx" || w == "svm")
        && !modules.lines().any(|l| l.starts_with("kvm_pvm "));
    if !kvm {
        eprintln!(
            "SKIPPED: Lynis in a VM (no working KVM; under TCG it takes longer than CI allows; BOLLWERK_LYNIS_VM=1 runs it anyway): only the nspawn figure is measured and held"
        );
    }
    kvm
}

/// The Lynis figures of one hardened root below what the test holds (VM when it ran, nspawn).
fn lynis_below(name: &str, f: &Figures, min: (u32, u32)) -> Vec<String> {
    let mut out = Vec::new();
    for (how, got, want) in [("VM", f.lynis_vm, min.0), ("nspawn", f.lynis, min.1)] {
        if how == "VM" && got.is_none() {
            continue;
        }
        let got = got.unwrap_or(0);
        if got < want {
            out.push(format!("{name}: Lynis index ({how}) {got} < {want}"));
        }
    }
    out
}

/// What our catalog says about one check.
#[derive(Debug, Default, Clone)]
struct CatalogNote {
    /// `site_specific` or `manual` reason.
    human: Option<String>,
    /// `scanners` note.
    scanners: Option<String>,
}

fn catalog_notes() -> BTreeMap<String, CatalogNote> {
    let mut notes = BTreeMap::new();
    for entry in std::fs::read_dir(manifest().join("checks")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let v: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for c in v
            .get("check")
            .and_then(|c| c.as_array())
            .into_iter()
            .flatten()
        {
            let s = |k: &str| c.get(k).and_then(|x| x.as_str()).map(str::to_string);
            notes.insert(
                s("id").unwrap(),
                CatalogNote {
                    human: s("site_specific").or_else(|| s("manual")),
                    scanners: s("scanners"),
                },
            );
        }
    }
    notes
}

/// `tests/testbed/openscap-map.toml`: CaC rule id → our check ids.
fn openscap_map() -> BTreeMap<String, Vec<String>> {
    let path = manifest().join("tests/testbed/openscap-map.toml");
    toml::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Our verdict on the checks mapped to one rule: "fail" when any fails, "pass" when all that
/// are judged pass and at least one is, else None (not judged here).
fn our_verdict(ours: &BTreeMap<String, String>, ids: &[String]) -> Option<&'static str> {
    let st: Vec<&str> = ids
        .iter()
        .filter_map(|i| ours.get(i).map(String::as_str))
        .collect();
    if st.contains(&"fail") {
        Some("fail")
    } else if st.contains(&"pass") && st.iter().all(|s| matches!(*s, "pass" | "not_applicable")) {
        Some("pass")
    } else {
        None
    }
}

/// Disagreements between OpenSCAP and us that no `scanners` note explains.
fn unexplained_disagreements(
    name: &str,
    oscap: &Oscap,
    ours: &BTreeMap<String, String>,
    map: &BTreeMap<String, Vec<String>>,
    notes: &BTreeMap<String, CatalogNote>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (rule, theirs) in &oscap.verdicts {
        let Some(ids) = map.get(rule).filter(|ids| !ids.is_empty()) else {
            continue;
        };
        let Some(mine) = our_verdict(ours, ids) else {
            continue;
        };
        let explained = ids
            .iter()
            .any(|i| notes.get(i).is_some_and(|n| n.scanners.is_some()));
        if mine != theirs && !explained {
            out.push(format!(
                "{name}: {rule}: OpenSCAP {theirs}, ours {mine} ({})",
                ids.join(", ")
            ));
        }
    }
    out
}

/// OpenSCAP failures on a hardened root that our catalog does not explain.
fn unexplained_failures(
    name: &str,
    oscap: &Oscap,
    map: &BTreeMap<String, Vec<String>>,
    notes: &BTreeMap<String, CatalogNote>,
) -> Vec<String> {
    oscap
        .failing()
        .into_iter()
        .filter(|rule| {
            !map.get(*rule).is_some_and(|ids| {
                ids.iter().any(|i| {
                    notes
                        .get(i)
                        .is_some_and(|n| n.human.is_some() || n.scanners.is_some())
                })
            })
        })
        .map(|rule| format!("{name}: OpenSCAP fails {rule}: no check of ours says why"))
        .collect()
}

fn print_table(rows: &[(&str, &Figures)]) {
    let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.1} %"));
    eprintln!("\n=== independent scanners on the Debian 12 testbed root ===");
    eprintln!(
        "{:<22} {:>10} {:>10} {:>8} {:>8} {:>22} {:>22}",
        "root", "ours L1", "ours L2", "Lynis VM", "nspawn", "OpenSCAP CIS L1", "OpenSCAP CIS L2"
    );
    for (name, f) in rows {
        let l2 = f.oscap_l2.as_ref().map_or("-".to_string(), |o| {
            format!("{:.1} % ({}/{})", o.rate(), o.pass, o.pass + o.fail)
        });
        let n = |x: Option<u32>| x.map_or("-".to_string(), |n| n.to_string());
        eprintln!(
            "{:<22} {:>10} {:>10} {:>8} {:>8} {:>22} {:>22}",
            name,
            pct(f.ours_l1),
            pct(f.ours_l2),
            n(f.lynis_vm),
            n(f.lynis),
            format!(
                "{:.1} % ({}/{})",
                f.oscap_l1.rate(),
                f.oscap_l1.pass,
                f.oscap_l1.pass + f.oscap_l1.fail
            ),
            l2
        );
    }
    for (name, f) in rows {
        let secs: Vec<String> = f
            .seconds
            .iter()
            .map(|(k, v)| format!("{k} {v:.1} s"))
            .collect();
        eprintln!("{name}: {}", secs.join(", "));
        eprintln!(
            "{name}: OpenSCAP L1 failures: {}",
            f.oscap_l1.failing().join(" ")
        );
        if let Some(o) = &f.oscap_l2 {
            eprintln!("{name}: OpenSCAP L2 failures: {}", o.failing().join(" "));
        }
        eprintln!(
            "{name}: Lynis suggestions left: {}",
            f.lynis_suggestions.join("; ")
        );
        eprintln!(
            "{name}: Lynis points lost per test: {}",
            f.lynis_lost.join(", ")
        );
    }
}

#[test]
#[ignore = "several minutes of scanning: tests/run-all.sh runs it in its own step"]
fn independent_scanners_accept_the_hardened_roots() {
    let Some(tb) = testbed_or_skip("independent_scanners_accept_the_hardened_roots") else {
        return;
    };
    for tool in ["oscap", "systemd-nspawn", "python3", "dpkg-deb"] {
        assert!(
            which(tool).is_some(),
            "{tool} missing: run tests/testbed/install-deps.sh"
        );
    }
    let out = scanners(
        tb.cache_dir(),
        &["content", &tb.cache_dir().to_string_lossy()],
    );
    assert!(out.status.success(), "scanner content: {}", describe(&out));
    let level2 = manifest().join("profiles/cis-level2-server.toml").exists();
    let vm = lynis_vm_wanted();

    let started = Instant::now();
    let (fresh, l1, l2) = std::thread::scope(|s| {
        let fresh = s.spawn(|| judge(&tb, None, true, false));
        let l1 = s.spawn(|| judge(&tb, Some("cis-level1-server"), false, vm));
        let l2 = level2.then(|| s.spawn(|| judge(&tb, Some("cis-level2-server"), true, vm)));
        (
            fresh.join().expect("fresh root"),
            l1.join().expect("cis-level1-server root"),
            l2.map(|h| h.join().expect("cis-level2-server root")),
        )
    });
    let mut rows = vec![("fresh", &fresh), ("cis-level1-server", &l1)];
    if let Some(l2) = &l2 {
        rows.push(("cis-level2-server", l2));
    }
    print_table(&rows);
    eprintln!(
        "targets (issue 12): Lynis >= {} (L1) / >= {} (L2), OpenSCAP CIS L1 >= {} %; held here: Lynis VM {} / {}, nspawn {} / {}, OpenSCAP {OSCAP_L1_MIN} %",
        TARGETS.0,
        TARGETS.1,
        TARGETS.2,
        LYNIS_L1_MIN.0,
        LYNIS_L2_MIN.0,
        LYNIS_L1_MIN.1,
        LYNIS_L2_MIN.1
    );
    eprintln!("scanner step: {:.0} s", started.elapsed().as_secs_f64());

    let map = openscap_map();
    let notes = catalog_notes();
    let mut problems = Vec::new();
    for id in map.values().flatten() {
        if !notes.contains_key(id) {
            problems.push(format!("openscap-map.toml names unknown check {id}"));
        }
    }
    for (name, f) in &rows {
        problems.extend(unexplained_disagreements(
            name,
            &f.oscap_l1,
            &f.ours,
            &map,
            &notes,
        ));
        if let Some(o) = &f.oscap_l2 {
            problems.extend(unexplained_disagreements(name, o, &f.ours, &map, &notes));
        }
    }
    problems.extend(unexplained_failures(
        "cis-level1-server",
        &l1.oscap_l1,
        &map,
        &notes,
    ));
    problems.extend(lynis_below("cis-level1-server", &l1, LYNIS_L1_MIN));
    if l1.oscap_l1.rate() < OSCAP_L1_MIN {
        problems.push(format!(
            "cis-level1-server: OpenSCAP CIS L1 {:.1} % < {OSCAP_L1_MIN} %",
            l1.oscap_l1.rate()
        ));
    }
    if let Some(l2) = &l2 {
        problems.extend(lynis_below("cis-level2-server", l2, LYNIS_L2_MIN));
        // Level 2 is new: what OpenSCAP still fails there is printed, not yet held.
        for p in unexplained_failures("cis-level2-server", &l2.oscap_l1, &map, &notes) {
            eprintln!("not held yet: {p}");
        }
    }
    let fresh_lynis = fresh.lynis.unwrap_or(0);
    let l1_lynis = l1.lynis.unwrap_or(0);
    assert!(
        l1_lynis > fresh_lynis && l1.oscap_l1.rate() > fresh.oscap_l1.rate(),
        "hardening must raise both scanners' figures (Lynis {fresh_lynis} -> {l1_lynis})"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
