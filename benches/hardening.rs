//! Benchmark (prints figures, asserts only correctness): `bollwerk apply --profile
//! cis-level1-server` plus an admin user on a fresh Debian 12 testbed root, the re-apply
//! (nothing to do), and `plan`, with wall time and peak RSS of the process. For apply and
//! re-apply it also prints the split that `apply --format json` reports in `timing`: the time
//! spent waiting for apt-get/dpkg and bollwerk's own time (the rest of the wall time).
//! Run: `cargo bench --bench hardening`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Duration;

use common::bench::{measure, measure_output, median};
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
    // Per run: (apt/dpkg time, number of external commands) of the apply and the re-apply.
    let (mut apply_pkg, mut reapply_pkg) = (Vec::new(), Vec::new());
    let mut apply_cmds = 0;
    // Peak RSS (KiB): of bollwerk alone (plan, re-apply), and of the apply, which counts the
    // largest process it waited for (apt-get, dpkg) as well.
    let (mut rss, mut rss_apply) = (0, 0);
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
        let apply_args = [
            "apply",
            "--format",
            "json",
            "--profile",
            &site,
            "--root",
            &root,
        ];
        let (t, r, ok, out) = measure_output(&apply_args);
        assert!(ok, "apply failed");
        let (pkg, cmds) = timing(&out);
        apply.push(t);
        apply_pkg.push(pkg);
        apply_cmds = cmds;
        rss_apply = rss_apply.max(r);
        let (t, r, ok, out) = measure_output(&apply_args);
        assert!(ok, "re-apply failed");
        reapply.push(t);
        reapply_pkg.push(timing(&out).0);
        rss = rss.max(r);
    }
    println!(
        "bollwerk hardening benchmark (Debian 12 testbed root, cis-level1-server + admin user, {runs} runs, median):"
    );
    println!("  plan      {:>7.1} ms", median(plan).as_secs_f64() * 1e3);
    println!(
        "  apply     {:>7.1} ms  ({changes} changes; checked with visudo, modprobe, systemd-analyze, findmnt, rsyslogd, sshd -t and the PAM sandbox with pamtester)",
        median(apply.clone()).as_secs_f64() * 1e3
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    // The split of the median run: own time = wall time - apt/dpkg time.
    let split = |walls: &[Duration], pkgs: &[Duration]| {
        let mut runs: Vec<(Duration, Duration)> =
            walls.iter().copied().zip(pkgs.iter().copied()).collect();
        runs.sort();
        let (wall, pkg) = runs[runs.len() / 2];
        (pkg, wall.saturating_sub(pkg))
    };
    let (pkg, own) = split(&apply, &apply_pkg);
    println!(
        "    apt/dpkg  {:>7.1} ms\n    bollwerk  {:>7.1} ms  (own time: wall time minus apt/dpkg; {apply_cmds} external commands)",
        ms(pkg),
        ms(own)
    );
    let (rpkg, rown) = split(&reapply, &reapply_pkg);
    println!(
        "  re-apply  {:>7.1} ms  (0 changes)",
        median(reapply.clone()).as_secs_f64() * 1e3
    );
    println!(
        "    apt/dpkg  {:>7.1} ms\n    bollwerk  {:>7.1} ms",
        ms(rpkg),
        ms(rown)
    );
    println!(
        "  peak RSS  {:>7.1} MiB  (plan, re-apply); apply {:.1} MiB (its largest process, apt-get/dpkg included)",
        rss as f64 / 1024.0,
        rss_apply as f64 / 1024.0
    );
}

/// The apt/dpkg time and the number of external commands from `apply --format json`'s
/// `timing` (the apply's own report, see `bollwerk::engine::timing`).
fn timing(stdout: &[u8]) -> (Duration, u64) {
    let v: serde_json::Value = serde_json::from_slice(stdout).expect("apply JSON");
    let t = &v["timing"];
    let pkg = t["package_tools_ms"]
        .as_u64()
        .expect("timing.package_tools_ms");
    let cmds = t["commands"].as_u64().expect("timing.commands");
    (Duration::from_millis(pkg), cmds)
}
