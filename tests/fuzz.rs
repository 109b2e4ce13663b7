//! A stable-Rust fuzz harness (cargo-fuzz needs nightly) for every parser of hostile input: the
//! profile loader, cloud-config (YAML → profile), network-config (v1/v2 YAML, ENI, OpenStack
//! JSON), sshd_config, passwd/group/shadow/gshadow and authorized_keys.
//!
//! `fuzz_all_targets` (ignored; `tests/run-all.sh` runs it) starts one child process per target.
//! The child runs a mutation loop seeded from `tests/fuzz-corpus/<target>/` (bit flips, byte
//! and token inserts, deletions, duplications, splices, and generators for YAML anchor bombs,
//! deep nesting and long lines) for `BOLLWERK_FUZZ_SECS` seconds (default 50: six targets ≈ 5
//! minutes), catches panics, and prints one `FUZZ-RESULT` line. The parent reads the child's
//! peak memory with `wait4` and prints per target: executions, panics, aborts (the child died
//! by a signal or did not finish) and peak RSS; it fails on any panic or abort and on a peak
//! over 256 MB. Inputs that panicked are saved under `target/fuzz-crashes/<target>/`.
//!
//! `fuzz_smoke` (not ignored) runs every target in-process for a moment, so a normal
//! `cargo test` catches a regression without the five-minute run.

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The targets, in run order.
const TARGETS: &[&str] = &[
    "profile",
    "cloudconfig",
    "netcfg",
    "sshd_config",
    "etcdb",
    "authorized_keys",
];

/// Peak memory a target may use.
const MAX_RSS_MB: u64 = 256;

/// A small, fast PRNG (xorshift64*): reproducible runs from `BOLLWERK_FUZZ_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Tokens that matter to the parsers under test.
const TOKENS: &[&str] = &[
    "\n",
    ":",
    ",",
    "=",
    "\"",
    "'",
    "#",
    "[",
    "]",
    "{",
    "}",
    "[[",
    "]]",
    "&a ",
    "*a",
    "- ",
    "  ",
    "\t",
    "\0",
    "\r",
    "\u{1b}",
    "\u{feff}",
    "é",
    "..",
    "/",
    "\\",
    "$6$",
    "ssh-ed25519 ",
    "AAAA",
    "0644",
    "yes",
    "~",
    "null",
    "!!binary ",
    "<<: *a",
    "---\n",
    "...\n",
    "|\n  ",
    ">\n  ",
    "#cloud-config\n",
    "users:\n  - name: a\n",
    "write_files:\n",
    "Match ",
    "Include ",
    "[[users]]\n",
    "name = \"a\"\n",
    "extends = \"baseline\"\n",
    "version: 2\n",
    "auto eth0\n",
    "iface eth0 inet static\n",
    "\"links\": [",
    "root:x:0:0:root:/root:/bin/bash\n",
    "9999999999999999999999",
    "-1",
    "1e400",
];

/// One mutation of `data`; `corpus` feeds splices.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let len = data.len();
    match rng.below(11) {
        0 if len > 0 => {
            let i = rng.below(len);
            data[i] ^= 1 << rng.below(8);
        }
        1 => {
            let i = rng.below(len + 1);
            data.insert(i, rng.next() as u8);
        }
        2 | 3 => {
            let i = rng.below(len + 1);
            let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
            data.splice(i..i, t.iter().copied());
        }
        4 if len > 0 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(64)).min(len);
            data.drain(a..b);
        }
        5 if len > 0 => {
            // Duplicate a range, sometimes many times (long lines, repeated keys).
            let a = rng.below(len);
            let b = (a + 1 + rng.below(128)).min(len);
            let chunk = data[a..b].to_vec();
            let times = if rng.chance(8) { 1 + rng.below(200) } else { 1 };
            let at = rng.below(len + 1);
            for _ in 0..times {
                data.splice(at..at, chunk.iter().copied());
            }
        }
        6 if !corpus.is_empty() => {
            // Splice: our head, another input's tail.
            let other = &corpus[rng.below(corpus.len())];
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
        }
        7 if len > 0 => {
            // Replace a byte with an interesting one.
            let i = rng.below(len);
            data[i] = b":\n\"'[]{}&*#=,\0\r\\"[rng.below(16)];
        }
        8 if len > 1 => {
            // Swap two lines' worth of bytes.
            let a = rng.below(len);
            let b = rng.below(len);
            data.swap(a, b);
        }
        _ => {
            let i = rng.below(len + 1);
            let g = generated(rng);
            data.splice(i..i, g.into_bytes());
        }
    }
    data.truncate(256 * 1024);
}

/// Structured hostile snippets: YAML anchor bombs, deep nesting in YAML/TOML/JSON, long lines.
fn generated(rng: &mut Rng) -> String {
    let n = 1 + rng.below(12);
    match rng.below(6) {
        0 => {
            let mut s = String::from("a0: &a0 [x]\n");
            for i in 1..n {
                let refs = vec![format!("*a{}", i - 1); 2 + rng.below(9)].join(",");
                s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
            }
            s
        }
        1 => {
            let d = rng.below(3000);
            format!("k: {}{}\n", "[".repeat(d), "]".repeat(rng.below(d + 1)))
        }
        2 => {
            let d = rng.below(3000);
            format!("x = {}1{}\n", "[".repeat(d), "]".repeat(rng.below(d + 1)))
        }
        3 => {
            let d = rng.below(3000);
            format!("{}{}", "{\"a\":".repeat(d), "}".repeat(rng.below(d + 1)))
        }
        4 => "x".repeat(rng.below(70_000)),
        _ => {
            let d = rng.below(500);
            format!("t = {}\n", "{a = ".repeat(d) + "1" + &"}".repeat(d))
        }
    }
}

/// Runs one input through a target. Errors are fine; panics are what we look for. Invariants
/// that must hold for every input are asserted (an assertion failure counts as a panic).
fn run_target(target: &str, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match target {
        "profile" => {
            // Never `extends` a file of the machine running the fuzzer: built-ins only.
            if !text.contains("extends") || !text.contains('/') {
                let _ = bollwerk::profile::load_text("fuzz.toml", &text, None);
            }
        }
        "cloudconfig" => {
            use bollwerk::firstboot::cloudconfig::{Defaults, MetaData, convert, parse_meta_data};
            let _ = parse_meta_data(&text);
            let d = Defaults { user: "debian" };
            if let Ok(c) = convert(&text, &MetaData::default(), d) {
                // The generated profile goes through the same validation as a profile.
                let _ = bollwerk::profile::load_text("user-data", &c.toml, None);
            }
        }
        "netcfg" => {
            use bollwerk::firstboot::netcfg;
            for nc in [
                netcfg::parse_yaml(&text).ok().flatten(),
                netcfg::parse_eni(&text).ok(),
                netcfg::parse_openstack(&text).ok(),
            ]
            .into_iter()
            .flatten()
            {
                let _ = netcfg::render_networkd(&nc);
                let _ = netcfg::render_netplan(&nc);
                let _ = netcfg::render_resolv_conf(&nc);
            }
        }
        "sshd_config" => {
            use bollwerk::sshd_config::{SshdConfig, glob_match};
            let cfg = SshdConfig::parse(&text);
            let _ = cfg.includes().count();
            let _ = bollwerk::modules::sshd::ensure_include(&text);
            // Include globs from a hostile root are matched against file names.
            let mut words = text.split_whitespace();
            if let (Some(p), Some(n)) = (words.next(), words.next()) {
                let _ = glob_match(&p[..p.len().min(64)], &n[..n.len().min(256)]);
            }
        }
        "etcdb" => {
            use bollwerk::etcdb::{Db, GShadow, Group, Passwd, Shadow};
            fn roundtrip<T: bollwerk::etcdb::Record + std::fmt::Debug>(text: &str) {
                let db: Db<T> = Db::parse(text);
                assert_eq!(db.render(), text, "parse/render is lossless");
                assert!(db.check().is_ok(), "parsed entries are always writable");
            }
            roundtrip::<Passwd>(&text);
            roundtrip::<Group>(&text);
            roundtrip::<Shadow>(&text);
            roundtrip::<GShadow>(&text);
        }
        "authorized_keys" => {
            use bollwerk::sshkeys::{AuthorizedLine, PublicKey, parse_authorized_keys};
            for l in parse_authorized_keys(&text) {
                if let AuthorizedLine::Key(k) = l {
                    let line = k.to_line();
                    assert!(!line.contains('\n'), "a key renders as one line");
                    let again = PublicKey::parse(&line).expect("a parsed key parses again");
                    assert!(again.same_key(&k));
                }
            }
        }
        other => panic!("unknown fuzz target {other}"),
    }
}

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target)
}

fn load_corpus(target: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(corpus_dir(target))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    if out.is_empty() {
        out.push(Vec::new());
    }
    out
}

/// Counters of one fuzz run.
#[derive(Debug, Default)]
struct Stats {
    execs: u64,
    panics: u64,
    slowest_ms: u128,
}

/// The mutation loop of one target for `secs` seconds, in this process.
fn fuzz_loop(target: &str, secs: f64, seed: u64, save_crashes: bool) -> Stats {
    let corpus = load_corpus(target);
    let mut rng = Rng(seed | 1);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut st = Stats::default();
    let mut saved = 0;
    // Corpus entries as they are first.
    let mut queue: Vec<Vec<u8>> = corpus.clone();
    while Instant::now() < deadline {
        let mut data = match queue.pop() {
            Some(d) => d,
            None => {
                let mut d = corpus[rng.below(corpus.len())].clone();
                for _ in 0..1 + rng.below(8) {
                    mutate(&mut rng, &mut d, &corpus);
                }
                d
            }
        };
        if rng.chance(64) {
            mutate(&mut rng, &mut data, &corpus);
        }
        let t = Instant::now();
        let r = std::panic::catch_unwind(|| run_target(target, &data));
        let ms = t.elapsed().as_millis();
        if ms > st.slowest_ms {
            st.slowest_ms = ms;
            if save_crashes {
                let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-slowest");
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::fs::write(dir.join(target), &data);
            }
        }
        st.execs += 1;
        if r.is_err() {
            st.panics += 1;
            if save_crashes && saved < 20 {
                let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("target/fuzz-crashes")
                    .join(target);
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::fs::write(dir.join(format!("crash-{}", st.execs)), &data);
                saved += 1;
            }
        }
    }
    st
}

/// The child side: `BOLLWERK_FUZZ_CHILD=<target>` runs the loop and prints the result line.
#[test]
#[ignore = "run by fuzz_all_targets in a child process"]
fn fuzz_child() {
    let Ok(target) = std::env::var("BOLLWERK_FUZZ_CHILD") else {
        return;
    };
    let secs: f64 = std::env::var("BOLLWERK_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50.0);
    let seed: u64 = std::env::var("BOLLWERK_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_b011_3e4c);
    // Panics are counted, not printed 10,000 times.
    std::panic::set_hook(Box::new(|_| {}));
    let st = fuzz_loop(&target, secs, seed, true);
    println!(
        "\nFUZZ-RESULT execs={} panics={} slowest_ms={}",
        st.execs, st.panics, st.slowest_ms
    );
}

/// Runs the child for `target`; returns (its stdout, exited normally, peak RSS in KiB).
// The child is reaped with wait4 (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run_child(target: &str, secs: f64) -> (String, bool, u64) {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fuzz_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("BOLLWERK_FUZZ_CHILD", target)
        .env("BOLLWERK_FUZZ_SECS", secs.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    // Watchdog: a hang (one input that never ends) is killed and counted as an abort.
    let limit = Duration::from_secs_f64(secs + 60.0);
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        // SAFETY: signals our own child; if it already exited and was reaped, the pid is
        // not reused within this short window in practice, and the test then fails anyway.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    });
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    let mut status = 0;
    // SAFETY: plain FFI with valid pointers; `ru` is fully written by wait4 on success.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4 failed");
    let normal = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (out, normal, ru.ru_maxrss as u64)
}

fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "five minutes: run by tests/run-all.sh (BOLLWERK_FUZZ_SECS per target, default 50)"]
fn fuzz_all_targets() {
    let secs: f64 = std::env::var("BOLLWERK_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50.0);
    let only = std::env::var("BOLLWERK_FUZZ_TARGETS").ok();
    let mut failures = Vec::new();
    println!(
        "{:<16} {:>10} {:>7} {:>7} {:>12} {:>10}",
        "target", "executions", "panics", "aborts", "peak MB", "slowest ms"
    );
    for target in TARGETS {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|t| t == *target))
        {
            continue;
        }
        let (out, normal, rss_kb) = run_child(target, secs);
        let line = out
            .lines()
            .find_map(|l| l.find("FUZZ-RESULT").map(|i| &l[i..]))
            .unwrap_or("");
        let aborts = u64::from(!normal || line.is_empty());
        let (execs, panics) = (field(line, "execs"), field(line, "panics"));
        let peak_mb = rss_kb as f64 / 1024.0;
        println!(
            "{target:<16} {execs:>10} {panics:>7} {aborts:>7} {peak_mb:>12.1} {:>10}",
            field(line, "slowest_ms")
        );
        if panics > 0 {
            failures.push(format!(
                "{target}: {panics} panics (inputs in target/fuzz-crashes/{target}/)"
            ));
        }
        if aborts > 0 {
            failures.push(format!("{target}: the child aborted or hung"));
        }
        if peak_mb >= MAX_RSS_MB as f64 {
            failures.push(format!("{target}: peak memory {peak_mb:.0} MB"));
        }
        if execs == 0 && aborts == 0 {
            failures.push(format!("{target}: no executions"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn fuzz_smoke() {
    for target in TARGETS {
        let st = fuzz_loop(target, 0.3, 42, false);
        assert!(st.execs > 0, "{target}");
        assert_eq!(
            st.panics, 0,
            "{target}: a panic (run fuzz_all_targets to save the input)"
        );
    }
}

#[test]
fn corpus_inputs_do_not_panic() {
    for target in TARGETS {
        let corpus = load_corpus(target);
        assert!(
            corpus.len() >= 2,
            "{target}: seed corpus missing in tests/fuzz-corpus/{target}/"
        );
        for c in corpus {
            run_target(target, &c);
        }
    }
}
