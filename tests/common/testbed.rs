//! Harness for system tests against a real Debian 12 root filesystem.
//!
//! * [`Testbed`] is the shared, extracted, read-only rootfs (built by `tests/testbed/build-rootfs.sh`).
//! * [`Instance`] is a throw-away writable copy of it (an overlayfs mount in the host's mount
//!   namespace, so a bollwerk binary run with `--root <instance.root>` sees it), with a runner that
//!   executes commands inside it in private mount/PID (and optionally network) namespaces.
//! * [`Sshd`] is the rootfs's own sshd running in a network namespace created for one test, with
//!   helpers that log in with the host's OpenSSH client.
//!
//! Safety: nothing here changes the machine it runs on. Commands run inside the instance see a fresh
//! `/proc`, a read-only `/sys`, their own tmpfs `/run` and `/dev/shm` and a private devpts; the host's
//! `/dev` and `/run` are never bind-mounted into the root. Every background process is started as
//! `setpriv --pdeathsig KILL -- [nsenter --net=NS --] unshare --kill-child ...` through `exec`, so the
//! PID we hold is `unshare`'s: SIGKILL to it (or the death of the thread that started it) takes the
//! whole PID namespace down.
//!
//! Environment variables:
//! * `BOLLWERK_TESTBED_CACHE`: cache directory (default `<crate>/target/testbed`).
//! * `BOLLWERK_TESTBED_ROOTFS`: use this rootfs tarball (`.tar.zst`) instead of running
//!   `build-rootfs.sh`.
//! * `BOLLWERK_REQUIRE_SYSTEM_TESTS=1`: missing prerequisites make [`testbed_or_skip`] panic instead
//!   of skipping (CI sets it).

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// Time limit for one command run through the harness unless the caller sets another
/// ([`ChrootCmd::timeout`]). On expiry the command's process tree is SIGKILLed and the returned
/// [`Output`] says so in its stderr.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Time limit for one `ssh` client invocation.
pub const SSH_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`Instance::start_sshd`] waits for the port to listen.
pub const SSHD_START_TIMEOUT: Duration = Duration::from_secs(30);

/// `PATH` used inside the root (and for the host tools of the runner).
const ROOT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Prefix of the network namespaces the harness creates (`bw-<pid>-<n>`).
pub const NETNS_PREFIX: &str = "bw-";

/// Host tools the harness needs (besides `mmdebstrap`, needed only to build the tarball).
const REQUIRED_TOOLS: &[&str] = &[
    "bash",
    "sh",
    "tar",
    "zstd",
    "mount",
    "umount",
    "unshare",
    "nsenter",
    "setpriv",
    "chroot",
    "ip",
    "ssh",
    "ssh-keygen",
    "sshpass",
];

/// Runs inside `unshare`: mounts the API file systems into the root, then `exec chroot`.
/// Arguments: `$1` = root, `$2` = 1 to bring `lo` up (fresh network namespace), rest = argv.
const RUNNER_SCRIPT: &str = r#"set -e
root=$1 lo=$2
shift 2
fail() { echo "testbed runner: $*" >&2; exit 125; }
mount -t proc -o nosuid,nodev,noexec proc "$root/proc" || fail "mount /proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys" || fail "mount /sys"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$root/run" || fail "mount /run"
mkdir -m 0755 "$root/run/sshd"
mkdir -m 1777 "$root/run/lock"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$root/dev/shm" || fail "mount /dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$root/dev/pts" \
  || fail "mount /dev/pts"
if [ "$lo" = 1 ]; then ip link set lo up || fail "ip link set lo up"; fi
exec chroot "$root" "$@"
"#;

/// `eprintln!` that libtest cannot capture: it writes to the process's real stderr, so skips,
/// builds and cleanup notes show up even for passing tests run without `--nocapture`.
macro_rules! loud {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name unique among all threads and test processes running at the same time: `<pid>-<n>`.
fn unique_id() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

// ---------------------------------------------------------------------------------------------
// Testbed
// ---------------------------------------------------------------------------------------------

/// Shared, extracted, read-only copy of the Debian 12 rootfs (the overlay "lower" dir).
///
/// Never write below [`Testbed::lower`]: every test process shares it. Get a writable copy with
/// [`Testbed::instance`].
#[derive(Clone, Debug)]
pub struct Testbed {
    cache: PathBuf,
    tarball: PathBuf,
    lower: PathBuf,
}

impl Testbed {
    /// Ensure the tarball exists (run tests/testbed/build-rootfs.sh if missing), extract it ONCE to
    /// $CACHE/lower-<tarball-key>/ (atomic: extract to a temp dir, then rename; a file lock so several
    /// test processes running in parallel extract only once). Returns Err(reason) when a prerequisite
    /// is missing (not root, no mmdebstrap/zstd, no overlayfs...).
    ///
    /// `build-rootfs.sh` is run on every first call in a process: it returns at once when the
    /// tarball for its current package list is cached, and rebuilds it when the list changed. Set
    /// `BOLLWERK_TESTBED_ROOTFS` to use a given tarball instead. The result is memoised per process;
    /// the first call also cleans up what crashed test processes left in the cache (instance
    /// directories, overlay mounts, `bw-<pid>-*` network namespaces whose process is gone).
    pub fn acquire() -> Result<Testbed, String> {
        static ONCE: OnceLock<Result<Testbed, String>> = OnceLock::new();
        ONCE.get_or_init(acquire_uncached).clone()
    }

    /// The extracted rootfs (overlay lower dir). Read it, never write to it.
    pub fn lower(&self) -> &Path {
        &self.lower
    }

    /// The cache directory (`$BOLLWERK_TESTBED_CACHE` or `target/testbed`).
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    /// The rootfs tarball the lower dir was extracted from (symlinks resolved).
    pub fn tarball(&self) -> &Path {
        &self.tarball
    }

    /// A fresh writable copy: overlayfs mount (lower = extracted rootfs, upper/work in a new temp dir).
    /// Host keys are generated inside (ssh-keygen -A in the chroot) because the tarball has none.
    ///
    /// The temp dir is `$CACHE/run/<pid>-<n>/` with `root/` (the mount point), `upper/`, `work/`
    /// and room for logs. Panics when the mount or the key generation fails.
    pub fn instance(&self) -> Instance {
        let runs = self.cache.join("run");
        fs::create_dir_all(&runs).unwrap_or_else(|e| panic!("create {}: {e}", runs.display()));
        let dir = loop {
            let d = runs.join(unique_id());
            match fs::create_dir(&d) {
                Ok(()) => break d,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("create {}: {e}", d.display()),
            }
        };
        let root = dir.join("root");
        let upper = dir.join("upper");
        let work = dir.join("work");
        for d in [&root, &upper, &work] {
            fs::create_dir(d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        }
        // The merged root directory takes its owner and mode from the upper dir: it must be
        // root:root 0755 like a real `/`, whatever the umask, or non-root logins break.
        fs::set_permissions(&upper, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", upper.display()));

        let mut inner = InstanceDir {
            dir: dir.clone(),
            root: root.clone(),
            mounted: false,
        };
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.lower.display(),
            upper.display(),
            work.display()
        );
        for p in [&self.lower, &upper, &work] {
            let s = p.to_string_lossy();
            assert!(
                !s.contains([',', ':', '\\']),
                "overlay path {s:?} contains a character mount options cannot carry"
            );
        }
        let out = run_capture(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &opts])
                .arg(&root),
            None,
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "overlay mount on {} failed:\n{}",
            root.display(),
            describe(&out)
        );
        inner.mounted = true;

        let inst = Instance {
            root,
            inner: Arc::new(inner),
        };
        let out = inst.chroot(&["ssh-keygen", "-A"]);
        assert!(
            out.status.success(),
            "ssh-keygen -A in the instance failed:\n{}",
            describe(&out)
        );
        inst
    }
}

impl Testbed {
    /// A fresh writable copy as a plain directory (`cp -a` of the extracted rootfs), not a
    /// mount point: the way an unpacked image tarball looks. Slower than [`Testbed::instance`]
    /// (a full copy); use it where the difference matters (mount namespaces, propagation).
    pub fn plain_instance(&self) -> Instance {
        let runs = self.cache.join("run");
        fs::create_dir_all(&runs).unwrap_or_else(|e| panic!("create {}: {e}", runs.display()));
        let dir = loop {
            let d = runs.join(unique_id());
            match fs::create_dir(&d) {
                Ok(()) => break d,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("create {}: {e}", d.display()),
            }
        };
        let root = dir.join("root");
        let inner = InstanceDir {
            dir: dir.clone(),
            root: root.clone(),
            mounted: false,
        };
        let out = run_capture(
            Command::new("cp")
                .args(["-a", "--reflink=auto"])
                .arg(&self.lower)
                .arg(&root),
            None,
            Duration::from_secs(600),
        );
        assert!(
            out.status.success(),
            "copying the rootfs to {} failed:\n{}",
            root.display(),
            describe(&out)
        );
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", root.display()));
        assert!(!is_mounted(&root), "{} is a mount point", root.display());
        let inst = Instance {
            root,
            inner: Arc::new(inner),
        };
        let out = inst.chroot(&["ssh-keygen", "-A"]);
        assert!(
            out.status.success(),
            "ssh-keygen -A in the instance failed:\n{}",
            describe(&out)
        );
        inst
    }
}

fn acquire_uncached() -> Result<Testbed, String> {
    check_root()?;
    let missing: Vec<&str> = REQUIRED_TOOLS
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing host tools in $PATH: {} (run tests/testbed/install-deps.sh)",
            missing.join(", ")
        ));
    }
    check_overlay()?;

    let cache = cache_dir();
    fs::create_dir_all(&cache).map_err(|e| format!("create cache dir {}: {e}", cache.display()))?;
    let cache = cache
        .canonicalize()
        .map_err(|e| format!("resolve {}: {e}", cache.display()))?;

    // One process at a time builds, extracts and cleans up.
    let lock = lock_cache(&cache)?;

    let tarball = ensure_tarball(&cache)?;
    let key = tarball_key(&tarball)?;
    let lower = cache.join(format!("lower-{key}"));
    if !lower.is_dir() {
        extract(&cache, &tarball, &lower)?;
    }
    cleanup_stale(&cache, true);
    drop(lock);
    Ok(Testbed {
        cache,
        tarball,
        lower,
    })
}

fn check_root() -> Result<(), String> {
    let status = fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    if euid == "0" {
        Ok(())
    } else {
        Err(format!("not running as root (euid {euid})"))
    }
}

fn check_overlay() -> Result<(), String> {
    let has = || {
        fs::read_to_string("/proc/filesystems")
            .map(|s| {
                s.lines()
                    .any(|l| l.split_whitespace().last() == Some("overlay"))
            })
            .unwrap_or(false)
    };
    if has() {
        return Ok(());
    }
    if which("modprobe").is_some() {
        let _ = run_capture(
            Command::new("modprobe").arg("overlay"),
            None,
            Duration::from_secs(30),
        );
    }
    if has() {
        Ok(())
    } else {
        Err(
            "the kernel has no overlayfs (not in /proc/filesystems, modprobe overlay failed)"
                .into(),
        )
    }
}

/// Full path of `tool` in `$PATH`, if any.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(tool))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

fn cache_dir() -> PathBuf {
    match std::env::var_os("BOLLWERK_TESTBED_CACHE") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                Path::new(env!("CARGO_MANIFEST_DIR")).join(d)
            }
        }
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/testbed"),
    }
}

/// Run build-rootfs.sh (a no-op when cached) and return the resolved tarball path.
fn ensure_tarball(cache: &Path) -> Result<PathBuf, String> {
    if let Some(t) = std::env::var_os("BOLLWERK_TESTBED_ROOTFS").filter(|t| !t.is_empty()) {
        let t = PathBuf::from(t);
        return t.canonicalize().map_err(|e| {
            format!(
                "BOLLWERK_TESTBED_ROOTFS={}: {e}",
                Path::new(&t).to_string_lossy()
            )
        });
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/testbed/build-rootfs.sh");
    let link = cache.join("rootfs.tar.zst");
    let had_tarball = link.exists();
    if !had_tarball {
        loud!(
            "testbed: no rootfs tarball in {}; building it with {} (2-3 minutes)",
            cache.display(),
            script.display()
        );
    }
    let started = Instant::now();
    // stderr is inherited so that a build shows its progress.
    let out = Command::new("bash")
        .arg(&script)
        .arg(cache)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("run {}: {e}", script.display()))?;
    if !out.status.success() {
        let mut reason = format!(
            "{} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim()
        );
        if which("mmdebstrap").is_none() {
            reason = format!(
                "the rootfs tarball is missing or outdated and mmdebstrap is not installed \
                 (run tests/testbed/install-deps.sh); {reason}"
            );
        }
        return Err(reason);
    }
    if !had_tarball {
        loud!(
            "testbed: rootfs built in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    link.canonicalize()
        .map_err(|e| format!("{} after build-rootfs.sh: {e}", link.display()))
}

/// `rootfs-<key>.tar.zst` gives `<key>`; any other name gives a key made of size and mtime.
fn tarball_key(tarball: &Path) -> Result<String, String> {
    let name = tarball
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(k) = name
        .strip_prefix("rootfs-")
        .and_then(|n| n.strip_suffix(".tar.zst"))
        .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric()))
    {
        return Ok(k.to_string());
    }
    let m = tarball
        .metadata()
        .map_err(|e| format!("{}: {e}", tarball.display()))?;
    Ok(format!("{:x}-{:x}", m.size(), m.mtime()))
}

/// Extract `tarball` to a temp dir beside `lower`, then rename it into place. Called under the lock.
fn extract(cache: &Path, tarball: &Path, lower: &Path) -> Result<(), String> {
    // Leftovers of an extraction that was killed half-way (we hold the lock: nobody else extracts).
    if let Ok(entries) = fs::read_dir(cache) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(".extract-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    let tmp = cache.join(format!(".extract-{}", unique_id()));
    fs::create_dir(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", tmp.display()))?;
    loud!(
        "testbed: extracting {} to {}",
        tarball.display(),
        lower.display()
    );
    let started = Instant::now();
    let result = (|| -> Result<(), String> {
        let input = File::open(tarball).map_err(|e| format!("open {}: {e}", tarball.display()))?;
        // zstd refuses to read through a symlink given by name; stdin avoids that.
        let mut zstd = Command::new("zstd")
            .args(["-q", "-d", "-c"])
            .stdin(input)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn zstd: {e}"))?;
        let zout = zstd.stdout.take().expect("zstd stdout");
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&tmp)
            .args([
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=*",
                "-xpf",
                "-",
            ])
            .stdin(zout)
            .output()
            .map_err(|e| format!("run tar: {e}"))?;
        let zst = zstd.wait_with_output().map_err(|e| format!("zstd: {e}"))?;
        if !zst.status.success() {
            return Err(format!(
                "zstd -d {} failed: {}",
                tarball.display(),
                String::from_utf8_lossy(&zst.stderr)
            ));
        }
        if !tar.status.success() {
            return Err(format!(
                "tar -x of {} failed: {}",
                tarball.display(),
                String::from_utf8_lossy(&tar.stderr)
            ));
        }
        if !tmp.join("usr/sbin/sshd").exists() {
            return Err(format!(
                "{} does not look like the testbed rootfs (no /usr/sbin/sshd)",
                tarball.display()
            ));
        }
        fs::rename(&tmp, lower)
            .map_err(|e| format!("rename {} -> {}: {e}", tmp.display(), lower.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    } else {
        loud!(
            "testbed: extracted in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    result
}

/// Remove what test processes that died without running their destructors left behind:
/// `$CACHE/run/<pid>-<n>` (unmounting its overlay), `bw-<pid>-<n>` network namespaces and
/// `bw-<pid>-…` cgroups of booted containers (every process in them killed first: a container's
/// PID 1 outlives a killed systemd-nspawn), for PIDs that no longer exist. Called under the
/// lock, before this process creates anything.
fn cleanup_stale(cache: &Path, first_use: bool) {
    let me = std::process::id();
    let stale_pid = |name: &str| -> bool {
        let Some(pid) = name.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            return false;
        };
        // At the first use our own PID can only be a leftover of an earlier process: we have
        // created nothing yet. Later, it is ours and in use.
        (first_use && pid == me) || !Path::new(&format!("/proc/{pid}")).exists()
    };
    if let Ok(entries) = fs::read_dir(cache.join("run")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !stale_pid(&name) {
                continue;
            }
            let root = e.path().join("root");
            if is_mounted(&root) {
                let _ = run_capture(
                    Command::new("umount").arg("-l").arg(&root),
                    None,
                    Duration::from_secs(60),
                );
            }
            if !is_mounted(&root) {
                loud!(
                    "testbed: removing stale instance dir {}",
                    e.path().display()
                );
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    for base in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let Ok(entries) = fs::read_dir(base) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(NETNS_PREFIX)
                && stale_pid(rest)
                && e.path().join("cgroup.kill").exists()
            {
                loud!("testbed: killing and removing stale container cgroup {name}");
                kill_cgroup(&e.path());
                remove_cgroup_tree(&e.path());
            }
        }
    }
    if let Ok(entries) = fs::read_dir("/run/netns") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(NETNS_PREFIX)
                && stale_pid(rest)
            {
                loud!("testbed: deleting stale network namespace {name}");
                let _ = run_capture(
                    Command::new("ip").args(["netns", "del", &name]),
                    None,
                    Duration::from_secs(30),
                );
            }
        }
    }
}

/// Runs the cleanup of what dead test processes left behind now, under the testbed lock, as a
/// test process's first testbed use does (for the harness's self-test); what this process made
/// is left alone.
pub fn cleanup_stale_now(tb: &Testbed) -> Result<(), String> {
    let _lock = lock_cache(&tb.cache)?;
    cleanup_stale(&tb.cache, false);
    Ok(())
}

/// Takes the cache's exclusive lock (`$CACHE/.testbed.lock`), held until the file is dropped.
fn lock_cache(cache: &Path) -> Result<File, String> {
    let lock_path = cache.join(".testbed.lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("open {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("lock {}: {e}", lock_path.display()))?;
    Ok(lock)
}

/// SIGKILLs every process in the cgroup v2 tree `dir` (`cgroup.kill`, Linux 5.14) and waits
/// up to 10 s until it is empty. A booted container's PID 1 lives in its own PID namespace:
/// killing systemd-nspawn does not end it, this does.
pub fn kill_cgroup(dir: &Path) {
    if fs::write(dir.join("cgroup.kill"), "1").is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let populated = fs::read_to_string(dir.join("cgroup.events"))
            .map(|e| e.lines().any(|l| l == "populated 1"))
            .unwrap_or(false);
        if !populated {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes a cgroup directory tree (deepest first; a populated one stays).
pub fn remove_cgroup_tree(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

// ---------------------------------------------------------------------------------------------
// Instance
// ---------------------------------------------------------------------------------------------

/// Owns the instance's temp dir and overlay mount; shared by [`Instance`] and its [`Sshd`]s so the
/// mount outlives every process running in it.
#[derive(Debug)]
struct InstanceDir {
    dir: PathBuf,
    root: PathBuf,
    mounted: bool,
}

impl Drop for InstanceDir {
    fn drop(&mut self) {
        if self.mounted {
            let out = run_capture(
                Command::new("umount").arg(&self.root),
                None,
                Duration::from_secs(60),
            );
            if !out.status.success() {
                loud!(
                    "testbed: umount {} failed ({}), detaching lazily",
                    self.root.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                let _ = run_capture(
                    Command::new("umount").arg("-l").arg(&self.root),
                    None,
                    Duration::from_secs(60),
                );
            }
        }
        // Never recurse into a live mount.
        if is_mounted(&self.root) {
            loud!(
                "testbed: {} is still mounted; leaving {} behind",
                self.root.display(),
                self.dir.display()
            );
        } else if let Err(e) = fs::remove_dir_all(&self.dir) {
            loud!("testbed: remove {}: {e}", self.dir.display());
        }
    }
}

/// A writable copy of the rootfs: an overlayfs mounted at [`Instance::root`] in the host's mount
/// namespace. Drop: unmount (lazily if busy) and remove the temp dirs.
#[derive(Debug)]
pub struct Instance {
    /// The merged root directory (pass it to bollwerk as `--root`).
    pub root: PathBuf,
    inner: Arc<InstanceDir>,
}

impl Instance {
    /// The instance's temp dir (`root/`, `upper/`, `work/`, logs); removed on drop.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The host path of `path` inside the root (`/etc/passwd` → `<root>/etc/passwd`), with
    /// symlinks resolved the way a process chrooted into the root sees them.
    ///
    /// Never build such paths with `root.join(..)` when writing: the rootfs has absolute symlinks
    /// (`/etc/localtime`, `/var/run`, every `/etc/systemd/system/*.wants/*`), and the host would
    /// follow them to the *host's* files. Use `inst.root.join(rel)` only to look at a link itself.
    pub fn path(&self, path: impl AsRef<Path>) -> PathBuf {
        resolve_in_root(&self.root, path.as_ref())
    }

    /// Write `contents` to `path` inside the root from the host. A new file is owned by root with
    /// mode 0644 (an existing one keeps owner and mode); missing parent dirs are created 0755.
    pub fn write(&self, path: impl AsRef<Path>, contents: impl AsRef<[u8]>) {
        let p = self.path(path);
        if let Some(parent) = p.parent()
            && !parent.is_dir()
        {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
        }
        let existed = p.exists();
        fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        if !existed {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o644))
                .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
        }
    }

    /// Boots the copy with systemd-nspawn (its own network namespace with only `lo`, not
    /// registered with machined) until it powers itself off; SIGKILLed after `limit`. A unit
    /// the test enabled does the work and ends with `systemctl poweroff`.
    pub fn boot_nspawn(&self, limit: Duration) -> Output {
        run_capture(
            Command::new("setpriv")
                .args(["--pdeathsig", "KILL", "--", "systemd-nspawn", "--boot"])
                .args([
                    "--register=no",
                    "--keep-unit",
                    "--private-network",
                    "--quiet",
                    "-D",
                ])
                .arg(&self.root),
            None,
            limit,
        )
    }

    /// Read `path` inside the root from the host (panics when it cannot be read).
    pub fn read(&self, path: impl AsRef<Path>) -> String {
        let p = self.path(path);
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    }

    /// A command to run inside the root, to configure before [`ChrootCmd::output`].
    pub fn cmd(&self, argv: &[&str]) -> ChrootCmd<'_> {
        ChrootCmd {
            instance: self,
            argv: argv.iter().map(|s| s.to_string()).collect(),
            net: false,
            stdin: None,
            env: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Run argv inside the root: `unshare -m -p -f --kill-child --propagation private [-n]`, then mount a
    /// fresh /proc, read-only /sys, tmpfs /run (+ /run/sshd), tmpfs 1777 /dev/shm, then chroot. Returns Output.
    ///
    /// Also mounts a private devpts on /dev/pts and creates /run/lock. The environment is cleared
    /// except `PATH`, `HOME=/root` and `LANG=C.UTF-8`; stdin is empty; the time limit is
    /// [`DEFAULT_TIMEOUT`]. The host's network namespace is shared: use [`Instance::chroot_net`]
    /// for anything that touches the network configuration (ufw, nft, sysctl net.*).
    ///
    /// Every call gets its own PID namespace with argv as PID 1: whatever it starts in the
    /// background (a daemon, `pg_ctlcluster start`) is killed when it returns, so start a server
    /// and query it in one [`Instance::sh`] script. Files written persist in the instance.
    pub fn chroot(&self, argv: &[&str]) -> Output {
        self.cmd(argv).output()
    }

    /// Same as [`Instance::chroot`], with an empty network namespace (-n) whose `lo` is up.
    pub fn chroot_net(&self, argv: &[&str]) -> Output {
        self.cmd(argv).net(true).output()
    }

    /// `chroot sh -c script`.
    pub fn sh(&self, script: &str) -> Output {
        self.cmd(&["sh", "-c", script]).output()
    }

    /// `chroot sh -c script` in an empty network namespace.
    pub fn sh_net(&self, script: &str) -> Output {
        self.cmd(&["sh", "-c", script]).net(true).output()
    }

    /// `chroot sh -c script`, panicking with the full output unless it succeeds; returns stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in the instance: sh -c {script:?}\n{}",
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Start the rootfs's own sshd (`/usr/sbin/sshd -D -e -p PORT`) in a network namespace created for this
    /// test (ip netns add bw-<unique>, lo up), inside the chroot. Waits until the port accepts connections.
    pub fn start_sshd(&self, port: u16) -> Sshd {
        self.start_sshd_with(port, &[])
    }

    /// [`Instance::start_sshd`] with extra sshd arguments (e.g. `["-o", "LogLevel=DEBUG1"]`).
    ///
    /// Panics (with sshd's log) if sshd exits or the port does not listen within
    /// [`SSHD_START_TIMEOUT`]. The returned [`Sshd`] must be dropped by the thread that started it
    /// or earlier: the process is also killed when that thread ends.
    pub fn start_sshd_with(&self, port: u16, extra_args: &[&str]) -> Sshd {
        let id = unique_id();
        let netns = format!("{NETNS_PREFIX}{id}");
        let log = self.inner.dir.join(format!("sshd-{id}.log"));

        let out = run_capture(
            Command::new("ip").args(["netns", "add", &netns]),
            None,
            Duration::from_secs(30),
        );
        assert!(
            out.status.success(),
            "ip netns add {netns}:\n{}",
            describe(&out)
        );
        // From here on, Sshd's Drop deletes the namespace.
        let out = run_capture(
            Command::new("ip").args(["-n", &netns, "link", "set", "lo", "up"]),
            None,
            Duration::from_secs(30),
        );
        if !out.status.success() {
            let _ = run_capture(
                Command::new("ip").args(["netns", "del", &netns]),
                None,
                Duration::from_secs(30),
            );
            panic!("ip -n {netns} link set lo up:\n{}", describe(&out));
        }

        let logfile =
            File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let logfile2 = logfile.try_clone().expect("dup log file");
        let port_s = port.to_string();
        let mut argv = vec!["/usr/sbin/sshd", "-D", "-e", "-p", &port_s];
        argv.extend_from_slice(extra_args);
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--", "nsenter"])
            .arg(format!("--net=/run/netns/{netns}"))
            .arg("--");
        add_runner(&mut cmd, &self.root, false, &argv);
        cmd.env_clear()
            .envs(base_env())
            .stdin(Stdio::null())
            .stdout(logfile)
            .stderr(logfile2);
        let started = Instant::now();
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = run_capture(
                    Command::new("ip").args(["netns", "del", &netns]),
                    None,
                    Duration::from_secs(30),
                );
                panic!("spawn sshd: {e}");
            }
        };
        let mut sshd = Sshd {
            child,
            netns,
            port,
            log,
            sshd_pid: None,
            _instance: Arc::clone(&self.inner),
        };
        let pid = sshd.child.id();
        loop {
            if let Ok(Some(status)) = sshd.child.try_wait() {
                panic!(
                    "sshd exited ({status}) before listening on port {port}; its log:\n{}",
                    sshd.stderr_log()
                );
            }
            if is_listening(pid, port) {
                break;
            }
            if started.elapsed() > SSHD_START_TIMEOUT {
                panic!(
                    "sshd did not listen on port {port} within {SSHD_START_TIMEOUT:?}; its log:\n{}",
                    sshd.stderr_log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
        sshd.sshd_pid = children_of(pid).into_iter().next();
        sshd
    }
}

/// A command to run inside an [`Instance`] (see [`Instance::chroot`] for the environment it gets).
#[derive(Debug)]
pub struct ChrootCmd<'a> {
    instance: &'a Instance,
    argv: Vec<String>,
    net: bool,
    stdin: Option<Vec<u8>>,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl ChrootCmd<'_> {
    /// Run in a new, empty network namespace (`unshare -n`, `lo` up).
    pub fn net(mut self, net: bool) -> Self {
        self.net = net;
        self
    }

    /// Feed `data` on stdin (default: empty stdin).
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// Add an environment variable (on top of `PATH`, `HOME`, `LANG`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Time limit (default [`DEFAULT_TIMEOUT`]); on expiry the process tree is SIGKILLed.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Run it and collect its output.
    pub fn output(self) -> Output {
        let argv: Vec<&str> = self.argv.iter().map(String::as_str).collect();
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--"]);
        add_runner(&mut cmd, &self.instance.root, self.net, &argv);
        cmd.env_clear()
            .envs(base_env())
            .envs(self.env.iter().cloned());
        run_capture(&mut cmd, self.stdin.as_deref(), self.timeout)
    }
}

fn base_env() -> Vec<(&'static str, &'static str)> {
    vec![("PATH", ROOT_PATH), ("HOME", "/root"), ("LANG", "C.UTF-8")]
}

/// Append `unshare ... sh -c RUNNER_SCRIPT sh ROOT LO argv...` to `cmd`.
fn add_runner(cmd: &mut Command, root: &Path, net: bool, argv: &[&str]) {
    cmd.args([
        "unshare",
        "--mount",
        "--pid",
        "--fork",
        "--kill-child",
        "--propagation",
        "private",
    ]);
    if net {
        cmd.arg("--net");
    }
    cmd.args(["--", "/bin/sh", "-c", RUNNER_SCRIPT, "testbed-runner"])
        .arg(root)
        .arg(if net { "1" } else { "0" })
        .args(argv);
}

// ---------------------------------------------------------------------------------------------
// Sshd
// ---------------------------------------------------------------------------------------------

/// The rootfs's sshd running in its own network namespace. Drop: SIGKILL the whole process tree
/// (the PID held is `unshare`'s, and it was started with `--kill-child`), then `ip netns del`.
#[derive(Debug)]
pub struct Sshd {
    child: Child,
    netns: String,
    port: u16,
    log: PathBuf,
    sshd_pid: Option<u32>,
    _instance: Arc<InstanceDir>,
}

impl Sshd {
    /// ssh from the host's OpenSSH client, run inside the same netns: BatchMode, no known_hosts, -i key, -p port, user@127.0.0.1 cmd
    pub fn ssh(&self, user: &str, key: &Path, cmd: &str) -> Output {
        let mut c = self.ssh_command();
        c.args(["-o", "BatchMode=yes", "-o", "PasswordAuthentication=no"])
            .args(["-o", "KbdInteractiveAuthentication=no", "-i"])
            .arg(key)
            .arg(format!("{user}@127.0.0.1"))
            .arg("--")
            .arg(cmd);
        run_capture(&mut c, None, SSH_TIMEOUT)
    }

    /// Password login attempt with sshpass (PreferredAuthentications=password,keyboard-interactive; PubkeyAuthentication=no)
    pub fn ssh_password(&self, user: &str, password: &str, cmd: &str) -> Output {
        let mut c = Command::new("setpriv");
        c.args(["--pdeathsig", "KILL", "--", "nsenter"])
            .arg(format!("--net=/run/netns/{}", self.netns))
            .args(["--", "sshpass", "-e", "ssh"])
            .args(self.ssh_options())
            .args([
                "-o",
                "PreferredAuthentications=password,keyboard-interactive",
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "NumberOfPasswordPrompts=1",
            ])
            .arg(format!("{user}@127.0.0.1"))
            .arg("--")
            .arg(cmd)
            .env_remove("SSH_AUTH_SOCK")
            .env("SSHPASS", password);
        run_capture(&mut c, None, SSH_TIMEOUT)
    }

    /// sshd's -e output so far (for assertion messages)
    pub fn stderr_log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log.display()))
    }

    /// The network namespace (`bw-<pid>-<n>`); run host tools in it with
    /// `ip netns exec NAME ...` or `nsenter --net=/run/netns/NAME ...`.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The port sshd listens on (on 127.0.0.1 and ::1 inside [`Sshd::netns`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// PID of the `unshare` process that holds the tree (what Drop SIGKILLs).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Host PID of sshd itself (PID 1 of its PID namespace), if it could be found.
    pub fn sshd_pid(&self) -> Option<u32> {
        self.sshd_pid
    }

    /// A `setpriv … nsenter --net=NS -- ssh <options>` command without user/host/auth options.
    fn ssh_command(&self) -> Command {
        let mut c = Command::new("setpriv");
        c.args(["--pdeathsig", "KILL", "--", "nsenter"])
            .arg(format!("--net=/run/netns/{}", self.netns))
            .args(["--", "ssh"])
            .args(self.ssh_options())
            .env_remove("SSH_AUTH_SOCK");
        c
    }

    fn ssh_options(&self) -> Vec<String> {
        [
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "IdentitiesOnly=yes",
            "-p",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([self.port.to_string()])
        .collect()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // SIGKILL unshare; --kill-child takes sshd (PID 1 of its namespace) and so the namespace.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(pid) = self.sshd_pid {
            let deadline = Instant::now() + Duration::from_secs(10);
            while pid_alive(pid) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if pid_alive(pid) {
                loud!("testbed: sshd (pid {pid}) still alive after SIGKILL of its unshare");
            }
        }
        let out = run_capture(
            Command::new("ip").args(["netns", "del", &self.netns]),
            None,
            Duration::from_secs(30),
        );
        if !out.status.success() {
            loud!(
                "testbed: ip netns del {}: {}",
                self.netns,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Free functions
// ---------------------------------------------------------------------------------------------

/// Generate an ed25519 key pair in a temp dir with the host's ssh-keygen: (private key path, public key line).
///
/// An existing key of the same name in `dir` is replaced.
pub fn keypair(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let public = dir.join(format!("{name}.pub"));
    let _ = fs::remove_file(&key);
    let _ = fs::remove_file(&public);
    let out = run_capture(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", ""])
            .arg("-C")
            .arg(format!("bollwerk-test-{name}"))
            .arg("-f")
            .arg(&key),
        None,
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "ssh-keygen for {}:\n{}",
        key.display(),
        describe(&out)
    );
    let line = fs::read_to_string(&public)
        .unwrap_or_else(|e| panic!("read {}: {e}", public.display()))
        .trim()
        .to_string();
    (key, line)
}

/// Call at the top of every system test: returns Some(Testbed) or, when prerequisites are missing, prints
/// a loud "SKIPPED (system test): <reason>" to stderr and returns None — EXCEPT when the env var
/// BOLLWERK_REQUIRE_SYSTEM_TESTS=1 is set (CI sets it): then it panics with the reason, so CI can never pass by skipping.
pub fn testbed_or_skip(test_name: &str) -> Option<Testbed> {
    match Testbed::acquire() {
        Ok(tb) => Some(tb),
        Err(reason) => {
            if std::env::var("BOLLWERK_REQUIRE_SYSTEM_TESTS").as_deref() == Ok("1") {
                panic!(
                    "{test_name}: system test prerequisites missing and \
                     BOLLWERK_REQUIRE_SYSTEM_TESTS=1: {reason}"
                );
            }
            loud!(
                "\n**********\nSKIPPED (system test): {reason}\n  test: {test_name}\n  \
                 (set BOLLWERK_REQUIRE_SYSTEM_TESTS=1 to make this a failure)\n**********\n"
            );
            None
        }
    }
}

/// The bollwerk binary built for this test run.
pub fn bollwerk_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bollwerk"))
}

/// A temporary directory removed on drop: `$TMPDIR/bollwerk-test-<pid>-<n>-<tag>`, mode 0700.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Create a new, empty temporary directory.
    pub fn new(tag: &str) -> TempDir {
        loop {
            let p = std::env::temp_dir().join(format!("bollwerk-test-{}-{tag}", unique_id()));
            match fs::create_dir(&p) {
                Ok(()) => {
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o700))
                        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
                    return TempDir(p);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("create {}: {e}", p.display()),
            }
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Status, stdout and stderr of `out`, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

/// stdout of `out` as a string, panicking with [`describe`] unless it succeeded.
pub fn stdout_ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed:\n{}", describe(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `path` is a mount point in this process's mount namespace.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.as_os_str();
    info.lines().any(|l| {
        l.split(' ')
            .nth(4)
            .map(|m| OsStr::new(&unescape_mountinfo(m)) == want)
            .unwrap_or(false)
    })
}

/// Names of the network namespaces in /run/netns.
pub fn netns_list() -> Vec<String> {
    fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `pid` exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(stat_field(&stat, 0), Some("Z") | Some("X") | None),
        Err(_) => false,
    }
}

/// `path` resolved inside `root` like `chroot root realpath -m path` would: absolute symlinks
/// restart at `root`, `..` never climbs above it. Missing components are kept as they are.
pub fn resolve_in_root(root: &Path, path: &Path) -> PathBuf {
    use std::path::Component;
    let push_rev = |stack: &mut Vec<std::ffi::OsString>, p: &Path| {
        for c in p.components().rev() {
            match c {
                Component::Normal(n) => stack.push(n.to_os_string()),
                Component::ParentDir => stack.push("..".into()),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
    };
    let mut pending = Vec::new();
    push_rev(&mut pending, path);
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(c) = pending.pop() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&c);
        let host = root.join(&candidate);
        let is_link = fs::symlink_metadata(&host)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        if !is_link {
            resolved = candidate;
            continue;
        }
        links += 1;
        assert!(
            links <= 40,
            "too many symlinks resolving {} in {}",
            path.display(),
            root.display()
        );
        let target =
            fs::read_link(&host).unwrap_or_else(|e| panic!("readlink {}: {e}", host.display()));
        if target.is_absolute() {
            resolved = PathBuf::new();
        }
        push_rev(&mut pending, &target);
    }
    root.join(resolved)
}

/// Field `n` (0 = state, 1 = ppid, ...) after the `(comm)` of a /proc/PID/stat line.
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(n))
}

/// PIDs whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let want = pid.to_string();
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|p| {
            fs::read_to_string(format!("/proc/{p}/stat"))
                .map(|s| stat_field(&s, 1) == Some(want.as_str()))
                .unwrap_or(false)
        })
        .collect()
}

/// Whether a TCP socket is listening on `port` in the network namespace of `pid`.
fn is_listening(pid: u32, port: u16) -> bool {
    let port_hex = format!(":{port:04X}");
    ["tcp", "tcp6"].iter().any(|f| {
        fs::read_to_string(format!("/proc/{pid}/net/{f}"))
            .map(|s| {
                s.lines().skip(1).any(|l| {
                    let mut it = l.split_whitespace();
                    let local = it.nth(1).unwrap_or("");
                    let state = it.nth(1).unwrap_or("");
                    local.ends_with(&port_hex) && state == "0A"
                })
            })
            .unwrap_or(false)
    })
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Run `cmd` with `stdin` (or an empty stdin), capturing stdout and stderr, SIGKILLing it after `timeout` (noted in the returned stderr).
/// Panics only when the command cannot be started.
pub fn run_capture(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let data = data.to_vec();
        thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let read_all = |r: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out_reader = read_all(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err_reader = read_all(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    let mut timed_out = false;
    let status: ExitStatus = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => panic!("wait for {:?}: {e}", cmd.get_program()),
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait after kill");
        }
        thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    let stdout = out_reader.join().unwrap_or_default();
    let mut stderr = err_reader.join().unwrap_or_default();
    if timed_out {
        stderr.extend_from_slice(
            format!("\n[testbed: killed after the time limit of {timeout:?}]\n").as_bytes(),
        );
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

/// Lists every path of a tree with type, mode, owner and content hash (for byte-identity);
/// `var/log` is left out (sshd records logins there).
pub fn tree_state(root: &std::path::Path) -> String {
    let out = run_capture(
        Command::new("sh").arg("-c").arg(
            "cd \"$1\" && find . -xdev \\( -path ./proc -o -path ./sys -o -path ./dev -o -path ./run -o -path ./var/lib/bollwerk -o -path ./var/log \\) -prune -o -printf '%p %y %m %U:%G %l\\n' | sort && find . -xdev \\( -path ./proc -o -path ./sys -o -path ./dev -o -path ./run -o -path ./var/lib/bollwerk -o -path ./var/log \\) -prune -o -type f -print0 | sort -z | xargs -0 sha256sum",
        ).arg("sh").arg(root),
        None,
        DEFAULT_TIMEOUT,
    );
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
