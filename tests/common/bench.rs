//! Helpers for the benchmarks (`benches/*.rs`): run the real binary and measure wall time and
//! peak RSS of that one process.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::testbed::bollwerk_bin;

/// Runs `bollwerk <args>`, returning (wall time, peak RSS in KiB, success).
pub fn measure(args: &[&str]) -> (Duration, i64, bool) {
    measure_to(args, Stdio::null())
}

/// [`measure`], also returning what the command printed on stdout (kept in a file meanwhile,
/// so a large output never blocks the child).
#[allow(dead_code)] // not every benchmark reads the output
pub fn measure_output(args: &[&str]) -> (Duration, i64, bool, Vec<u8>) {
    let mut file = tempfile_for_output();
    let out = file.try_clone().unwrap();
    let (t, rss, ok) = measure_to(args, Stdio::from(out));
    use std::io::{Read, Seek};
    let mut buf = Vec::new();
    file.seek(std::io::SeekFrom::Start(0)).unwrap();
    file.read_to_end(&mut buf).unwrap();
    (t, rss, ok, buf)
}

/// An anonymous, already unlinked file for a child's stdout.
fn tempfile_for_output() -> std::fs::File {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let path = std::env::temp_dir().join(format!("bollwerk-bench-out-{}-{n}", std::process::id()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    f
}

fn measure_to(args: &[&str], stdout: Stdio) -> (Duration, i64, bool) {
    let start = Instant::now();
    #[allow(clippy::zombie_processes)] // reaped by wait4 below, which also yields the rusage
    let child = Command::new(bollwerk_bin())
        .args(args)
        .stdout(stdout)
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
