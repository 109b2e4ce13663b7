//! Benchmark (prints figures, asserts only correctness): `bollwerk apply` of the baseline profile
//! plus an admin user on a fresh Debian 12 testbed root, the re-apply (nothing to do), and
//! `plan`, with wall time and peak RSS of the process. Run: `cargo bench --bench core`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::bench::{measure, median};
use common::testbed::*;

fn main() {
    let Some(tb) = testbed_or_skip("bench core") else {
        return;
    };
    let tmp = TempDir::new("bench-core");
    let (_key, pubkey) = keypair(tmp.path(), "deploy");
    let site = tmp.path().join("site.toml");
    std::fs::write(
        &site,
        format!("extends = \"baseline\"\n[host]\nhostname = \"bench\"\ntimezone = \"Europe/Berlin\"\n[[users]]\nname = \"deploy\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{pubkey}\"]\n"),
    )
    .unwrap();
    let site = site.to_string_lossy().into_owned();
    let (mut plan, mut apply, mut reapply) = (Vec::new(), Vec::new(), Vec::new());
    let mut rss = 0;
    let runs = 5;
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
        "bollwerk core benchmark (Debian 12 testbed root, baseline + admin user, {runs} runs, median):"
    );
    println!("  plan      {:>7.1} ms", median(plan).as_secs_f64() * 1e3);
    println!(
        "  apply     {:>7.1} ms  (16 changes, validated with the real sshd -t and visudo -c)",
        median(apply).as_secs_f64() * 1e3
    );
    println!(
        "  re-apply  {:>7.1} ms  (0 changes)",
        median(reapply).as_secs_f64() * 1e3
    );
    println!("  peak RSS  {:>7.1} MiB", rss as f64 / 1024.0);
}
