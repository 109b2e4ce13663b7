//! Benchmark (prints figures, asserts only correctness): `bollwerk apply --profile
//! cis-level1-server` plus an admin user on a fresh Debian 12 testbed root, the re-apply
//! (nothing to do), and `plan`, with wall time and peak RSS of the process.
//! Run: `cargo bench --bench hardening`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;

use common::bench::{measure, median};
use common::testbed::*;

fn main() {
    let Some(tb) = testbed_or_skip("bench hardening") else {
        return;
    };
    let tmp = TempDir::new("bench-hardening");
    let (_key, pubkey) = keypair(tmp.path(), "admin");
    let site = tmp.path().join("site.toml");
    std::fs::write(
        &site,
        format!("extends = \"cis-level1-server\"\n[[users]]\nname = \"admin\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{pubkey}\"]\n"),
    )
    .unwrap();
    let site = site.to_string_lossy().into_owned();
    let (mut plan, mut apply, mut reapply) = (Vec::new(), Vec::new(), Vec::new());
    let mut rss = 0;
    let runs = 5;
    let changes = {
        let inst = tb.instance();
        let root = inst.root.to_string_lossy().into_owned();
        let out = Command::new(bollwerk_bin())
            .args([
                "plan",
                "--format",
                "json",
                "--profile",
                &site,
                "--root",
                &root,
            ])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
        v["changes"].as_array().map_or(0, Vec::len)
    };
    for _ in 0..runs {
        let inst = tb.instance();
        let root = inst.root.to_string_lossy().into_owned();
        let (t, r, _) = measure(&["plan", "--profile", &site, "--root", &root]);
        plan.push(t);
        rss = rss.max(r);
        let (t, r, ok) = measure(&["apply", "--profile", &site, "--root", &root]);
        assert!(ok, "apply failed");
        apply.push(t);
        rss = rss.max(r);
        let (t, r, ok) = measure(&["apply", "--profile", &site, "--root", &root]);
        assert!(ok, "re-apply failed");
        reapply.push(t);
        rss = rss.max(r);
    }
    println!(
        "bollwerk hardening benchmark (Debian 12 testbed root, cis-level1-server + admin user, {runs} runs, median):"
    );
    println!("  plan      {:>7.1} ms", median(plan).as_secs_f64() * 1e3);
    println!(
        "  apply     {:>7.1} ms  ({changes} changes; checked with visudo, modprobe, systemd-analyze, findmnt, rsyslogd, sshd -t and the PAM sandbox with pamtester)",
        median(apply).as_secs_f64() * 1e3
    );
    println!(
        "  re-apply  {:>7.1} ms  (0 changes)",
        median(reapply).as_secs_f64() * 1e3
    );
    println!("  peak RSS  {:>7.1} MiB", rss as f64 / 1024.0);
}
