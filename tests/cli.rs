//! CLI contract tests through the real binary: exit codes, error messages on stderr, results on
//! stdout, built-in profiles, schema, generated docs.

mod common;

use std::process::Command;

fn bollwerk(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bollwerk"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn profile_typo_gives_position_key_and_hint_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("site.toml");
    std::fs::write(
        &p,
        "extends = \"baseline\"\n[ssh]\npasword_authentication = false\n",
    )
    .unwrap();
    let out = bollwerk(&["validate", "--profile", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "errors go to stderr");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("site.toml:3:1: `ssh.pasword_authentication`: unknown key `pasword_authentication` in [ssh]"), "{err}");
    assert!(
        err.contains("hint: did you mean `password_authentication`?"),
        "{err}"
    );
    assert!(err.contains(" 3 | pasword_authentication = false"), "{err}");
}

#[test]
fn builtins_schema_and_reference() {
    let out = bollwerk(&["profiles"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("baseline "));
    let out = bollwerk(&["profile", "show", "baseline"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        include_str!("../profiles/baseline.toml")
    );
    let out = bollwerk(&["profile", "show", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let out = bollwerk(&["validate", "--profile", "baseline"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bollwerk(&["schema"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["title"], "bollwerk profile");
    assert!(v["properties"]["ssh"].is_object());
    for args in [&["man"][..], &["completions", "bash"]] {
        let out = bollwerk(args);
        assert!(out.status.success() && !out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn docs_profile_md_is_generated_from_the_schema() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/profile.md")).unwrap();
    let generated = bollwerk::profile::reference::markdown();
    assert!(
        committed == generated,
        "docs/profile.md is out of date: run `cargo run -q -- profile reference > docs/profile.md`"
    );
    // Every key of every section is documented.
    let schema = bollwerk::profile::schema();
    for section in ["ssh", "host"] {
        let def = schema["$defs"].as_object().unwrap().values().find(|d| {
            d["properties"].as_object().is_some_and(|p| {
                p.contains_key(if section == "ssh" {
                    "permit_root_login"
                } else {
                    "timezone"
                })
            })
        });
        for key in def.unwrap()["properties"].as_object().unwrap().keys() {
            assert!(
                generated.contains(&format!("| `{key}` |")),
                "{section}.{key} missing from the reference"
            );
        }
    }
}

#[test]
fn unknown_root_and_run_ids_are_usage_errors() {
    let out = bollwerk(&["runs", "--root", "/nonexistent/dir"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let out = bollwerk(&[
        "rollback",
        "no-such-run",
        "--root",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run `no-such-run`"));
}

/// `checks show` prints a check's note on independent scanners (issue 12), and only where the
/// catalog has one.
#[test]
fn checks_show_prints_the_scanners_note() {
    let out = bollwerk(&["checks", "show", "ssh.ciphers"]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("\nScanners:   OpenSCAP (ComplianceAsCode CIS content) reads Ciphers from /etc/ssh/sshd_config only"),
        "{s}"
    );
    let out = bollwerk(&["checks", "show", "ssh.permit-root-login"]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Scanners:"));
}
