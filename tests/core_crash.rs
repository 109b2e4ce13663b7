//! Crash consistency: abort `bollwerk apply` at every step (fail points, `--features failpoints`)
//! on a real Debian 12 root, command steps included (`pam-auth-update`, watched paths), and
//! prove that every managed path is either exactly as before or exactly as after, and that the
//! interrupted run is undone: by the next `apply` by itself (it rolls the run back before it
//! plans), or by `bollwerk rollback`.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use common::testbed::*;

/// (kind, mode, owner, content hash or link target) of a path, or "absent".
fn state(root: &std::path::Path, rel: &str) -> String {
    let p = root.join(rel.trim_start_matches('/'));
    match std::fs::symlink_metadata(&p) {
        Err(_) => "absent".into(),
        Ok(m) if m.file_type().is_symlink() => {
            format!("link {}", std::fs::read_link(&p).unwrap().display())
        }
        Ok(m) if m.is_dir() => format!("dir {:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid()),
        Ok(m) => format!(
            "file {:o} {}:{} {}",
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
            bollwerk::root::sha256_hex(&std::fs::read(&p).unwrap())
        ),
    }
}

fn bollwerk(args: &[&str], failpoint: Option<&str>) -> std::process::Output {
    let mut c = Command::new(bollwerk_bin());
    c.args(args);
    if let Some(f) = failpoint {
        c.env("BOLLWERK_FAILPOINT", f);
    }
    run_capture(&mut c, None, DEFAULT_TIMEOUT)
}

#[test]
fn killed_at_every_step_leaves_old_or_new_and_rolls_back() {
    if !cfg!(feature = "failpoints") {
        let msg = "SKIPPED (system test): killed_at_every_step_leaves_old_or_new_and_rolls_back needs `cargo test --features failpoints`";
        if std::env::var("BOLLWERK_REQUIRE_SYSTEM_TESTS").as_deref() == Ok("1") {
            panic!("{msg}");
        }
        eprintln!("{msg}");
        return;
    }
    let Some(tb) = testbed_or_skip("killed_at_every_step_leaves_old_or_new_and_rolls_back") else {
        return;
    };
    let inst = tb.instance();
    let tmp = TempDir::new("core-crash");
    let (_key, pubkey) = keypair(tmp.path(), "deploy");
    let site = tmp.path().join("site.toml");
    std::fs::write(
        &site,
        format!("extends = \"baseline\"\n[host]\nhostname = \"crash\"\ntimezone = \"Europe/Berlin\"\n[[users]]\nname = \"deploy\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{pubkey}\"]\n[pam.faillock]\ndeny = 5\n"),
    )
    .unwrap();
    let site = site.to_string_lossy().into_owned();
    let root = inst.root.to_string_lossy().into_owned();

    // A complete run tells which paths are managed and what "new" looks like.
    let out = bollwerk(&["apply", "--profile", &site, "--root", &root], None);
    assert!(out.status.success(), "{}", describe(&out));
    let runs = bollwerk(&["runs", "--format", "json", "--root", &root], None);
    let v: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    let entries = v["runs"][0]["entries"].as_array().unwrap().clone();
    let paths: Vec<String> = entries
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert!(paths.len() >= 15, "{paths:?}");
    let new: BTreeMap<&String, String> = paths.iter().map(|p| (p, state(&inst.root, p))).collect();
    let out = bollwerk(&["rollback", "--root", &root], None);
    assert!(out.status.success(), "{}", describe(&out));
    let old: BTreeMap<&String, String> = paths.iter().map(|p| (p, state(&inst.root, p))).collect();
    assert_ne!(old, new);

    // The plan has a command step: pam-auth-update, journaled with its watched paths.
    let commands = v["runs"][0]["commands"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        commands.iter().any(|c| c["command"]
            .as_str()
            .unwrap_or("")
            .contains("pam-auth-update")),
        "no command step in the run: {commands:?}"
    );
    assert!(
        paths.iter().any(|p| p.contains("pam.d/common-")),
        "{paths:?}"
    );

    let check_old_or_new = |fp: &str| {
        let mut changed = 0;
        for p in &paths {
            let now = state(&inst.root, p);
            assert!(
                now == old[p] || now == new[p],
                "{fp}: {p} is neither old nor new: {now}\nold: {}\nnew: {}",
                old[p],
                new[p]
            );
            if now != old[p] {
                changed += 1;
            }
        }
        changed
    };
    let all_old = |fp: &str, how: &str| {
        for p in &paths {
            assert_eq!(state(&inst.root, p), old[p], "{fp}: {how} left {p} changed");
        }
    };
    let mut crashes = 0;
    let mut recovered_by_apply = 0;
    for point in [
        "apply.after-backup",
        "apply.after-change",
        "apply.before-command",
    ] {
        let mut n = 1;
        loop {
            let fp = format!("{point}:{n}");
            let out = bollwerk(&["apply", "--profile", &site, "--root", &root], Some(&fp));
            if !String::from_utf8_lossy(&out.stderr).contains(&format!("failpoint {fp} hit")) {
                // Past the last step of this kind: the run completed.
                assert!(out.status.success(), "{fp}: {}", describe(&out));
                assert!(n > 1, "{point} was never reached: {}", describe(&out));
                let out = bollwerk(&["rollback", "--root", &root], None);
                assert!(out.status.success(), "{}", describe(&out));
                all_old(&fp, "rollback");
                break;
            }
            assert!(!out.status.success(), "{fp}: {}", describe(&out));
            crashes += 1;
            let changed = check_old_or_new(&fp);
            let list = bollwerk(&["runs", "--root", &root], None);
            assert!(
                String::from_utf8_lossy(&list.stdout).contains("in-progress"),
                "{}",
                describe(&list)
            );
            if point == "apply.before-command" || n == 1 {
                // The next apply rolls the interrupted run back by itself, then applies.
                let out = bollwerk(&["apply", "--profile", &site, "--root", &root], None);
                assert!(out.status.success(), "{fp}: {}", describe(&out));
                assert!(
                    String::from_utf8_lossy(&out.stderr)
                        .contains("was interrupted; rolled it back"),
                    "{fp}: {}",
                    describe(&out)
                );
                recovered_by_apply += 1;
                for p in &paths {
                    assert_eq!(state(&inst.root, p), new[p], "{fp}: after recovery, {p}");
                }
                let out = bollwerk(&["rollback", "--root", &root], None);
                assert!(out.status.success(), "{}", describe(&out));
                all_old(&fp, "recovery + rollback");
            } else {
                // (Even when nothing was changed yet, the rollback succeeds: it restores nothing.)
                let out = bollwerk(&["rollback", "--root", &root], None);
                assert!(
                    out.status.success(),
                    "{fp} ({changed} paths changed): {}",
                    describe(&out)
                );
                all_old(&fp, "rollback");
            }
            n += 1;
        }
    }
    assert!(crashes > 2 * 15, "{crashes}");
    assert!(recovered_by_apply >= 2, "{recovered_by_apply}");
    // After all that, a normal apply still converges.
    let out = bollwerk(&["apply", "--profile", &site, "--root", &root], None);
    assert!(out.status.success(), "{}", describe(&out));
    for p in &paths {
        assert_eq!(state(&inst.root, p), new[p], "{p}");
    }
}
