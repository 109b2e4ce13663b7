//! Audit benchmark: the full catalog against the Debian 12 testbed rootfs (a fresh overlay
//! instance with host keys, so the real `sshd -T` runs). Prints the median wall time, the peak
//! RSS and the time per section. Run: `cargo bench --bench audit` (as root; set
//! `BOLLWERK_TESTBED_CACHE`). Targets: ≤ 0.3 s wall, ≤ 30 MB RSS.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Instant;

use common::testbed::*;

fn main() {
    let Some(tb) = testbed_or_skip("bench audit") else {
        return;
    };
    let inst = tb.instance();
    let bin = bollwerk_bin();
    let runs = std::env::var("BOLLWERK_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15usize);
    // Warm the page cache once.
    let _ = Command::new(&bin)
        .arg("--root")
        .arg(&inst.root)
        .arg("audit")
        .output();
    let mut walls = Vec::new();
    let mut last_json = String::new();
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new(&bin)
            .arg("--root")
            .arg(&inst.root)
            .args(["audit", "--format", "json"])
            .output()
            .expect("running bollwerk");
        walls.push(t.elapsed().as_secs_f64());
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{}",
            describe(&out)
        );
        last_json = String::from_utf8_lossy(&out.stdout).into_owned();
    }
    // ru_maxrss of the largest waited-for child (bollwerk itself; sshd -T is far smaller).
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    let rss_mb = usage.max_rss() as f64 / 1024.0;
    walls.sort_by(|a, b| a.total_cmp(b));
    let median = walls[walls.len() / 2];
    let r: serde_json::Value = serde_json::from_str(&last_json).unwrap();
    println!(
        "bollwerk audit, {} checks, Debian 12 testbed rootfs ({} runs, {}):",
        r["results"].as_array().map_or(0, |a| a.len()),
        runs,
        if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release build"
        }
    );
    println!(
        "  wall time: median {:.3} s (min {:.3} s, max {:.3} s)   [target ≤ 0.300 s]",
        median,
        walls[0],
        walls[walls.len() - 1]
    );
    println!("  peak RSS:  {rss_mb:.1} MB   [target ≤ 30 MB]");
    println!("  time per section (sum of probe times; probes run in parallel):");
    for s in r["summary"]["sections"].as_array().unwrap() {
        println!(
            "    {:<9} {:>8.1} ms  {}",
            s["id"].as_str().unwrap_or(""),
            s["probe_ms"].as_f64().unwrap_or(0.0),
            s["name"].as_str().unwrap_or("")
        );
    }
    println!(
        "  audit's own duration_seconds (last run): {:.3} s",
        r["duration_seconds"].as_f64().unwrap_or(0.0)
    );
}
