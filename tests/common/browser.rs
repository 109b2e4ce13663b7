//! Headless Chromium for the HTML report tests (single-host and fleet reports): finding the
//! browser, running it with the flags a closed network needs, and reading its complaints.

use std::path::{Path, PathBuf};

/// Console messages, load failures and crashes reported by Chromium on stderr.
pub fn chromium_problems(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught") || l.contains("net::ERR_"))
        .map(str::to_string)
        .collect()
}

/// Debian's Chromium, when installed.
pub fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Runs headless Chromium on `url` (window `width`x`height`, a fresh profile, no background
/// networking) with `extra` flags such as `--screenshot=…` or `--dump-dom`; killed after 60 s.
pub fn run_chromium(
    bin: &Path,
    url: &str,
    (width, height): (u32, u32),
    extra: &[&str],
) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new("timeout");
    cmd.args(["--kill-after=5", "60"]).arg(bin).args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ]);
    cmd.arg(format!("--window-size={width},{height}"));
    cmd.arg(format!("--user-data-dir={}", profile.path().display()));
    cmd.args(extra).arg(url);
    cmd.output().expect("running chromium")
}
