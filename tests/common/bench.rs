//! Helpers for the benchmarks (`benches/*.rs`): run the real binary and measure wall time and
//! peak RSS of that one process.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::testbed::bollwerk_bin;

/// Runs `bollwerk <args>`, returning (wall time, peak RSS in KiB, success).
pub fn measure(args: &[&str]) -> (Duration, i64, bool) {
    let start = Instant::now();
    #[allow(clippy::zombie_processes)] // reaped by wait4 below, which also yields the rusage
    let child = Command::new(bollwerk_bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value; wait4 on our own child with valid pointers.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(pid, child.id() as i32);
    let ok = std::process::ExitStatus::from_raw(status).success();
    (start.elapsed(), ru.ru_maxrss, ok)
}

/// The median of a set of durations.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
