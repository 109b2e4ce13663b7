//! Helpers for the benchmarks (`benches/*.rs`): run the real binary and measure wall time and
//! peak RSS of that one process.
//!
//! The peak RSS comes from GNU time (`/usr/bin/time -f %M`), a small process that forks the
//! binary. A child's `ru_maxrss` also counts the memory of the process it was forked from at
//! the moment of `exec` (Linux records the old address space's high-water mark), so measuring
//! straight from the benchmark process reported the benchmark's own size (125 MB after it had
//! built the testbed root) instead of bollwerk's 12 MB. Without GNU time the figure falls back to
//! `wait4`'s and says so once.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::testbed::bollwerk_bin;

/// Runs `bollwerk <args>`, returning (wall time, peak RSS in KiB, success).
pub fn measure(args: &[&str]) -> (Duration, i64, bool) {
    let (t, rss, status) = measure_to(args, Stdio::null());
    (t, rss, status.success())
}

/// [`measure`], also returning what the command printed on stdout (kept in a file meanwhile,
/// so a large output never blocks the child).
#[allow(dead_code)] // not every benchmark reads the output
pub fn measure_output(args: &[&str]) -> (Duration, i64, bool, Vec<u8>) {
    let (t, rss, status, buf) = measure_status(args);
    (t, rss, status.success(), buf)
}

/// [`measure_output`] with the exit status (for commands where a non-zero exit is a result,
/// like an audit with findings).
pub fn measure_status(args: &[&str]) -> (Duration, i64, std::process::ExitStatus, Vec<u8>) {
    let mut file = tempfile_for_output();
    let out = file.try_clone().unwrap();
    let (t, rss, status) = measure_to(args, Stdio::from(out));
    use std::io::{Read, Seek};
    let mut buf = Vec::new();
    file.seek(std::io::SeekFrom::Start(0)).unwrap();
    file.read_to_end(&mut buf).unwrap();
    (t, rss, status, buf)
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

/// GNU time, when installed: see the module documentation.
const GNU_TIME: &str = "/usr/bin/time";

fn measure_to(args: &[&str], stdout: Stdio) -> (Duration, i64, std::process::ExitStatus) {
    let rss_file = std::env::temp_dir().join(format!(
        "bollwerk-bench-rss-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_file(&rss_file);
    let gnu_time = std::path::Path::new(GNU_TIME).exists();
    let mut cmd = if gnu_time {
        let mut c = Command::new(GNU_TIME);
        c.args(["-f", "%M", "-o"])
            .arg(&rss_file)
            .arg(bollwerk_bin());
        c
    } else {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            eprintln!(
                "bench: no {GNU_TIME} (package time): peak RSS includes the benchmark process"
            )
        });
        Command::new(bollwerk_bin())
    };
    let start = Instant::now();
    #[allow(clippy::zombie_processes)] // reaped by wait4 below, which also yields the rusage
    let child = cmd
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
    let took = start.elapsed();
    let status = std::process::ExitStatus::from_raw(status);
    let rss = if gnu_time {
        // The last line is the figure (a non-zero exit adds a line before it).
        let text = std::fs::read_to_string(&rss_file).unwrap_or_default();
        let _ = std::fs::remove_file(&rss_file);
        text.lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(ru.ru_maxrss)
    } else {
        ru.ru_maxrss
    };
    (took, rss, status)
}

/// The median of a set of durations.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
