//! External commands: one [`Runner`] trait, the real [`SystemRunner`] and a scriptable
//! [`FakeRunner`] for tests.
//!
//! A command either runs on the host ([`Place::Host`]) or inside the target root
//! ([`Place::InRoot`]). Inside a root other than `/`, the program is the root's own binary and
//! runs in a private mount namespace with a fresh `/proc`, a tmpfs `/run` (with `/run/sshd`) and
//! a tmpfs `/dev/shm`, chrooted into the root; nothing is mounted in the host's namespace. Every
//! command gets `LC_ALL=C` and a timeout, and its stderr is carried into the error.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::libc;

use crate::root::{RelPath, Root};

/// Where a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The running host, with the host's binaries.
    Host,
    /// Inside the target root, with the root's own binaries (chroot when the root is not `/`).
    InRoot,
}

/// A command to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// Absolute program path (inside the root for [`Place::InRoot`]).
    pub program: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Extra environment variables (on top of a minimal, fixed environment).
    pub env: Vec<(String, String)>,
    /// Data for stdin.
    pub stdin: Option<Vec<u8>>,
    /// Host or target root.
    pub place: Place,
    /// Killed after this long.
    pub timeout: Duration,
    /// Keep the host's network namespace. By default a command inside a root other than `/` runs
    /// in a new, empty network namespace, so it can never change the host's firewall, addresses
    /// or `net.*` sysctls; only commands that must download (apt-get) set this.
    pub network: bool,
    /// Re-run on transient failures (see [`Retry`]); `None`: run once.
    pub retry: Option<Retry>,
    /// (source, target) directories, absolute as the command sees them, bind-mounted in the
    /// command's private mount namespace before it starts (the host never sees them).
    pub binds: Vec<(String, String)>,
    /// Directories that get a private, empty tmpfs in the command's mount namespace.
    pub tmpfs: Vec<String>,
    /// Directories that get a private copy-on-write layer (see [`Cmd::overlay`]).
    pub overlays: Vec<String>,
}

/// When to re-run a failed command: its output names a transient cause (a lock held by another
/// process, a network hiccup). [`Runner::run_ok`] retries every `delay` until `total` has passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Substrings of stdout/stderr that mark a failure as transient.
    pub when_output_contains: Vec<String>,
    /// Pause between attempts.
    pub delay: Duration,
    /// Give up once this much time has passed since the first attempt.
    pub total: Duration,
}

impl Retry {
    /// True when a failure with `output` is worth another attempt.
    pub fn transient(&self, output: &str) -> bool {
        self.when_output_contains
            .iter()
            .any(|p| output.contains(p.as_str()))
    }
}

impl Cmd {
    /// A command that runs inside the target root.
    pub fn in_root(program: &str, args: &[&str]) -> Cmd {
        Cmd {
            program: program.to_string(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            stdin: None,
            place: Place::InRoot,
            timeout: Duration::from_secs(120),
            network: false,
            retry: None,
            binds: Vec::new(),
            tmpfs: Vec::new(),
            overlays: Vec::new(),
        }
    }

    /// A command that runs on the host.
    pub fn host(program: &str, args: &[&str]) -> Cmd {
        Cmd {
            place: Place::Host,
            ..Cmd::in_root(program, args)
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, a: impl Into<String>) -> Cmd {
        self.args.push(a.into());
        self
    }

    /// Sets stdin.
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(data.into());
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, k: &str, v: &str) -> Cmd {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    /// Lets the command use the host's network (see [`Cmd::network`]).
    pub fn with_network(mut self) -> Cmd {
        self.network = true;
        self
    }

    /// Re-runs the command on transient failures (see [`Retry`]).
    pub fn retry(mut self, r: Retry) -> Cmd {
        self.retry = Some(r);
        self
    }

    /// Bind-mounts `source` over `target` for this command only (private mount namespace;
    /// both paths absolute as the command sees them). Paths arrive as data, never through a
    /// shell.
    pub fn bind(mut self, source: &str, target: &str) -> Cmd {
        self.binds.push((source.to_string(), target.to_string()));
        self
    }

    /// Mounts an empty tmpfs on `dir` for this command only.
    pub fn tmpfs(mut self, dir: &str) -> Cmd {
        self.tmpfs.push(dir.to_string());
        self
    }

    /// Gives `dir` a private copy-on-write layer for this command only: the command reads the
    /// directory as it is and may change it, but its writes land in an overlayfs upper layer on
    /// the command's tmpfs `/run` (added here) and vanish when it exits. The host and the root
    /// never see them, and nothing is copied up front. `dir` is absolute as the command sees it
    /// and may not contain `,`, `:` or `\` (overlayfs option syntax). A kernel that refuses the
    /// overlay (no overlayfs, too deep a stack) makes the spawn fail: see
    /// [`ExecError::Spawn`].
    pub fn overlay(mut self, dir: &str) -> Cmd {
        if !self.tmpfs.iter().any(|t| t == "/run") {
            self.tmpfs.push("/run".into());
        }
        self.overlays.push(dir.to_string());
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, t: Duration) -> Cmd {
        self.timeout = t;
        self
    }

    /// The command line, shell-quoted where needed, for plans, logs and errors.
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .map(shell_quote)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

/// Quotes a word for display in a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What a finished command produced.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
}

impl Output {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// stdout and stderr together, trimmed, for messages.
    pub fn combined(&self) -> String {
        let mut s = self.stdout.trim().to_string();
        if !self.stderr.trim().is_empty() {
            if !s.is_empty() {
                s.push('\n');
            }
            s.push_str(self.stderr.trim());
        }
        s
    }
}

/// Why a command could not run or failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The program does not exist where it should.
    #[error("`{program}` is not installed in {place}")]
    NotFound {
        /// Program path.
        program: String,
        /// "the target root" or "this host".
        place: String,
    },
    /// The program could not be started.
    #[error("starting `{argv}`")]
    Spawn {
        /// The command line.
        argv: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The program ran longer than its timeout and was killed.
    #[error("`{argv}` timed out after {secs} s")]
    Timeout {
        /// The command line.
        argv: String,
        /// The timeout.
        secs: u64,
    },
    /// The program exited non-zero (returned by [`Runner::run_ok`]).
    #[error("`{argv}` failed with exit code {code}: {output}")]
    Failed {
        /// The command line.
        argv: String,
        /// Exit code.
        code: i32,
        /// What it printed.
        output: String,
    },
}

/// Runs external commands against a root.
pub trait Runner: Send + Sync {
    /// Runs `cmd` and returns its output, whatever the exit code.
    ///
    /// # Errors
    /// When the program is missing, cannot be started or times out.
    fn run(&self, root: &Root, cmd: &Cmd) -> Result<Output, ExecError>;

    /// True when the program of `cmd` exists where it would run.
    fn available(&self, root: &Root, cmd: &Cmd) -> bool;

    /// Runs `cmd` and fails unless it exits 0; with a [`Cmd::retry`] policy, a failure whose
    /// output names a transient cause is retried until the policy's total time has passed.
    ///
    /// # Errors
    /// As [`Runner::run`], plus [`ExecError::Failed`] on a non-zero exit.
    fn run_ok(&self, root: &Root, cmd: &Cmd) -> Result<Output, ExecError> {
        let start = Instant::now();
        loop {
            let out = self.run(root, cmd)?;
            if out.success() {
                return Ok(out);
            }
            let combined = out.combined();
            if let Some(r) = &cmd.retry
                && r.transient(&combined)
                && start.elapsed() + r.delay <= r.total
            {
                tracing::warn!(command = %cmd.display(), "transient failure, retrying in {:?}: {}", r.delay, combined.lines().last().unwrap_or(""));
                std::thread::sleep(r.delay);
                continue;
            }
            return Err(ExecError::Failed {
                argv: cmd.display(),
                code: out.code,
                output: combined,
            });
        }
    }
}

/// Outputs of [`query_cached`]: (root, program identity, argv) → output.
type QueryKey = (std::path::PathBuf, (u64, u64, u64, i64, i64), String);
static QUERY_CACHE: Mutex<Vec<(QueryKey, Output)>> = Mutex::new(Vec::new());

/// Runs a query whose output depends only on the program's build and its arguments (`ssh -Q
/// kex`: what this OpenSSH supports) once per process and program: the result is cached under
/// the root, the program file's identity (device, inode, size, modification time: a package
/// upgrade replaces the file, so the next call asks the new build) and the command line. Only
/// successful outputs are cached; when the program's file cannot be inspected, nothing is.
///
/// # Errors
/// As [`Runner::run`].
pub fn query_cached(runner: &dyn Runner, root: &Root, cmd: &Cmd) -> Result<Output, ExecError> {
    use std::os::unix::fs::MetadataExt;
    let key = std::fs::metadata(program_path(root, cmd)).ok().map(|m| {
        let id = (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec());
        (root.path().to_path_buf(), id, cmd.display())
    });
    if let Some(k) = &key
        && let Ok(cache) = QUERY_CACHE.lock()
        && let Some((_, out)) = cache.iter().find(|(c, _)| c == k)
    {
        return Ok(out.clone());
    }
    let out = runner.run(root, cmd)?;
    if let Some(k) = key
        && out.success()
        && let Ok(mut cache) = QUERY_CACHE.lock()
    {
        cache.push((k, out.clone()));
    }
    Ok(out)
}

/// Wall time of every command [`SystemRunner`] ran in this process (see [`take_command_times`]).
static COMMAND_TIMES: Mutex<Vec<CommandTime>> = Mutex::new(Vec::new());

/// One finished command and how long it took, from spawn to exit (jail set-up included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTime {
    /// The program (absolute path as the command sees it).
    pub program: String,
    /// Wall time.
    pub took: Duration,
}

impl CommandTime {
    /// True for the package tools (`apt-get`, `apt`, `dpkg`, `aptitude`) whose time `apply`
    /// reports apart from its own: downloads and maintainer scripts are not bollwerk's work.
    pub fn is_package_tool(&self) -> bool {
        let name = self.program.rsplit('/').next().unwrap_or("");
        matches!(name, "apt-get" | "apt" | "dpkg" | "aptitude")
    }
}

/// Takes the commands recorded since the last call (or the start of the process).
pub fn take_command_times() -> Vec<CommandTime> {
    COMMAND_TIMES
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default()
}

fn record_command_time(program: &str, took: Duration) {
    if let Ok(mut v) = COMMAND_TIMES.lock() {
        v.push(CommandTime {
            program: program.to_string(),
            took,
        });
    }
}

/// Runs real processes. Commands inside a root other than `/` run in a jail (see the module
/// documentation) with [`SystemRunner::privilege`]; commands in `/` run as the host's root.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRunner {
    /// What commands inside a root other than `/` keep of root's power.
    pub privilege: Privilege,
}

impl SystemRunner {
    /// A runner whose commands inside a root other than `/` keep `privilege`.
    pub fn with_privilege(privilege: Privilege) -> SystemRunner {
        SystemRunner { privilege }
    }
}

fn program_path(root: &Root, cmd: &Cmd) -> std::path::PathBuf {
    match cmd.place {
        Place::Host => cmd.program.clone().into(),
        Place::InRoot => match RelPath::new(&cmd.program) {
            Ok(rel) => root.resolve_follow(&rel),
            Err(_) => cmd.program.clone().into(),
        },
    }
}

impl Runner for SystemRunner {
    fn available(&self, root: &Root, cmd: &Cmd) -> bool {
        program_path(root, cmd).is_file()
    }

    fn run(&self, root: &Root, cmd: &Cmd) -> Result<Output, ExecError> {
        let argv = cmd.display();
        if !self.available(root, cmd) {
            return Err(ExecError::NotFound {
                program: cmd.program.clone(),
                place: match cmd.place {
                    Place::Host => "this host".into(),
                    Place::InRoot => format!("the target root {}", root.path().display()),
                },
            });
        }
        let mut command = Command::new(&cmd.program);
        command
            .args(&cmd.args)
            .env_clear()
            .env("LC_ALL", "C")
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .current_dir("/");
        let privilege = if root.is_host() {
            Privilege::Full
        } else {
            self.privilege
        };
        let jail = Jail::prepare(root, cmd, privilege).map_err(|source| ExecError::Spawn {
            argv: argv.clone(),
            source,
        })?;
        if let Some(jail) = jail {
            // SAFETY: the closure only makes async-signal-safe system calls (unshare, fork,
            // mount, pivot_root, chdir, prctl, capset, waitpid) on data prepared before the fork.
            unsafe {
                command.pre_exec(move || jail.enter());
            }
        }
        tracing::debug!(command = %argv, "running");
        let spawned = Instant::now();
        let mut child = command.spawn().map_err(|source| ExecError::Spawn {
            argv: argv.clone(),
            source,
        })?;
        if let (Some(data), Some(mut stdin)) = (cmd.stdin.clone(), child.stdin.take()) {
            std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            });
        }
        let mut out_pipe = child.stdout.take();
        let mut err_pipe = child.stderr.take();
        let out_t = std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(p) = out_pipe.as_mut() {
                let _ = p.read_to_end(&mut s);
            }
            s
        });
        let err_t = std::thread::spawn(move || {
            let mut s = Vec::new();
            if let Some(p) = err_pipe.as_mut() {
                let _ = p.read_to_end(&mut s);
            }
            s
        });
        let start = Instant::now();
        // Short commands (most validators) end within milliseconds: poll often at first, then
        // back off to 5 ms so a long apt-get costs nothing.
        let mut pause = Duration::from_micros(200);
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if start.elapsed() > cmd.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ExecError::Timeout {
                        argv,
                        secs: cmd.timeout.as_secs(),
                    });
                }
                Ok(None) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(5));
                }
                Err(source) => return Err(ExecError::Spawn { argv, source }),
            }
        };
        let stdout = String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned();
        let code = status.code().unwrap_or(-1);
        let took = spawned.elapsed();
        record_command_time(&cmd.program, took);
        tracing::debug!(command = %argv, code, ms = took.as_millis() as u64, "finished");
        Ok(Output {
            code,
            stdout,
            stderr,
        })
    }
}

/// How much of root's power a command inside the target root keeps (see [`SystemRunner`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Privilege {
    /// uid 0 with every capability (what `apply` needs: apt-get, useradd, pam-auth-update).
    #[default]
    Full,
    /// uid 0 with empty capability sets (bounding, permitted, effective, inheritable, ambient)
    /// and `no_new_privs`: it can read what root owns but cannot mount, load modules, trace,
    /// change the clock or regain a capability through a set-uid or file-capability binary.
    /// Read-only commands (`plan`, `audit`, `facts`) use it for roots other than `/`.
    NoCaps,
    /// uid/gid 65534 (`nobody`/`nogroup`), no supplementary groups, no capabilities,
    /// `no_new_privs` (`--untrusted-root` for read-only commands).
    Nobody,
}

/// Everything the forked child needs to enter the root, prepared before the fork (after the
/// fork only async-signal-safe system calls run: no allocation, no locks).
struct Jail {
    /// `None`: the command runs in the host's `/` (only a private mount namespace when it asks
    /// for binds, and the privilege drop).
    root: Option<std::ffi::CString>,
    /// (source, target) pairs, absolute inside the root, bind-mounted after entering it.
    binds: Vec<(std::ffi::CString, std::ffi::CString)>,
    /// Directories that get a private tmpfs (mode 0755) after entering the root.
    tmpfs: Vec<std::ffi::CString>,
    /// Copy-on-write layers: (directories to create on `/run`, target, overlayfs options).
    overlays: Vec<Overlay>,
    new_net: bool,
    privilege: Privilege,
}

fn cstring(s: &str) -> std::io::Result<std::ffi::CString> {
    std::ffi::CString::new(s).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}

fn errno(e: nix::errno::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

impl Jail {
    /// `None` when the command needs no jail at all (host command, or `/` with nothing to do).
    fn prepare(root: &Root, cmd: &Cmd, privilege: Privilege) -> std::io::Result<Option<Jail>> {
        use std::os::unix::ffi::OsStrExt;
        if cmd.place == Place::Host {
            return Ok(None);
        }
        let binds = cmd
            .binds
            .iter()
            .map(|(a, b)| Ok((cstring(a)?, cstring(b)?)))
            .collect::<std::io::Result<Vec<_>>>()?;
        let tmpfs = cmd
            .tmpfs
            .iter()
            .map(|t| cstring(t))
            .collect::<std::io::Result<Vec<_>>>()?;
        let overlays = cmd
            .overlays
            .iter()
            .enumerate()
            .map(|(i, d)| Overlay::new(i, d))
            .collect::<std::io::Result<Vec<_>>>()?;
        if root.is_host() {
            if binds.is_empty() && tmpfs.is_empty() && privilege == Privilege::Full {
                return Ok(None);
            }
            return Ok(Some(Jail {
                root: None,
                binds,
                tmpfs,
                overlays,
                new_net: false,
                privilege,
            }));
        }
        let path = std::ffi::CString::new(root.path().as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        Ok(Some(Jail {
            root: Some(path),
            binds,
            tmpfs,
            overlays,
            new_net: !cmd.network,
            privilege,
        }))
    }

    /// Runs in the forked child before `exec`.
    ///
    /// Inside a root other than `/`: new mount, PID (and network) namespaces, then a second
    /// fork. This process stays outside as a supervisor that waits for the namespace's PID 1
    /// and exits with its status; the PID 1 child dies with it (`PR_SET_PDEATHSIG`), so a
    /// timeout kill ends the whole namespace. The child bind-mounts the root onto itself (so a
    /// plain directory works as well as a mount point), pivots into it and detaches the host's
    /// tree, mounts a fresh `/proc` (which shows only the namespace), a tmpfs `/run` with
    /// `/run/sshd` and a tmpfs `/dev/shm`, then the command's binds, drops privileges, and
    /// returns so the command is exec'd.
    fn enter(&self) -> std::io::Result<()> {
        use nix::mount::{MsFlags, mount};
        use nix::sched::{CloneFlags, unshare};
        let Some(root) = &self.root else {
            if !self.binds.is_empty() || !self.tmpfs.is_empty() || !self.overlays.is_empty() {
                unshare(CloneFlags::CLONE_NEWNS).map_err(errno)?;
                mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                    None::<&str>,
                )
                .map_err(errno)?;
                self.mount_extra()?;
            }
            return drop_privileges(self.privilege);
        };
        let mut flags = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID;
        if self.new_net {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        unshare(flags).map_err(errno)?;
        // Nothing mounted from here on may propagate back to the host.
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(errno)?;
        // SAFETY: fork in a single-threaded child of `Command::spawn`; both sides only make
        // async-signal-safe system calls afterwards.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid > 0 {
            supervise(pid);
        }
        // The namespace's PID 1.
        // SAFETY: prctl with integer arguments.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        }
        mount(
            Some(root.as_c_str()),
            root.as_c_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(errno)?;
        mount(
            None::<&str>,
            root.as_c_str(),
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(errno)?;
        nix::unistd::chdir(root.as_c_str()).map_err(errno)?;
        // pivot_root(".", "."): the old root ends up stacked on the new one and is detached;
        // the host's tree is then unreachable from the namespace. Where pivot_root is refused
        // (an initramfs root), chroot.
        // SAFETY: system calls with NUL-terminated constant strings.
        let pivoted = unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) };
        if pivoted == 0 {
            nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH).map_err(errno)?;
        } else {
            nix::unistd::chroot(".").map_err(errno)?;
        }
        nix::unistd::chdir("/").map_err(errno)?;
        let nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        if is_dir(c"/proc") {
            mount(
                Some("proc"),
                "/proc",
                Some("proc"),
                nodev | MsFlags::MS_NOEXEC,
                None::<&str>,
            )
            .map_err(errno)?;
        }
        if is_dir(c"/run") {
            mount(
                Some("tmpfs"),
                "/run",
                Some("tmpfs"),
                nodev,
                Some("mode=0755"),
            )
            .map_err(errno)?;
            nix::unistd::mkdir("/run/sshd", nix::sys::stat::Mode::from_bits_truncate(0o755))
                .map_err(errno)?;
        }
        if is_dir(c"/dev/shm") {
            mount(
                Some("tmpfs"),
                "/dev/shm",
                Some("tmpfs"),
                nodev,
                Some("mode=1777"),
            )
            .map_err(errno)?;
        }
        self.mount_extra()?;
        drop_privileges(self.privilege)
    }

    /// The command's own tmpfs, overlay and bind mounts (paths as the command sees them).
    fn mount_extra(&self) -> std::io::Result<()> {
        use nix::mount::{MsFlags, mount};
        for t in &self.tmpfs {
            mount(
                Some("tmpfs"),
                t.as_c_str(),
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some("mode=0755"),
            )
            .map_err(errno)?;
        }
        for o in &self.overlays {
            for d in &o.dirs {
                nix::unistd::mkdir(
                    d.as_c_str(),
                    nix::sys::stat::Mode::from_bits_truncate(0o700),
                )
                .map_err(errno)?;
            }
            mount(
                Some(c"overlay"),
                o.target.as_c_str(),
                Some(c"overlay"),
                MsFlags::empty(),
                Some(o.options.as_c_str()),
            )
            .map_err(errno)?;
        }
        for (src, dst) in &self.binds {
            mount(
                Some(src.as_c_str()),
                dst.as_c_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(errno)?;
        }
        Ok(())
    }
}

/// A private copy-on-write layer over a directory ([`Cmd::overlay`]), its strings made before
/// the fork.
struct Overlay {
    /// `/run/.bollwerk-overlay-N` and its `upper` and `work` directories, created in order.
    dirs: [std::ffi::CString; 3],
    target: std::ffi::CString,
    /// `lowerdir=…,upperdir=…,workdir=…`.
    options: std::ffi::CString,
}

impl Overlay {
    fn new(i: usize, dir: &str) -> std::io::Result<Overlay> {
        if !dir.starts_with('/') || dir.contains([',', ':', '\\']) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("overlay directory {dir:?}: absolute, without ',', ':' or '\\'"),
            ));
        }
        let base = format!("/run/.bollwerk-overlay-{i}");
        Ok(Overlay {
            dirs: [
                cstring(&base)?,
                cstring(&format!("{base}/upper"))?,
                cstring(&format!("{base}/work"))?,
            ],
            target: cstring(dir)?,
            options: cstring(&format!(
                "lowerdir={dir},upperdir={base}/upper,workdir={base}/work"
            ))?,
        })
    }
}

/// A directory that is not a symlink (lstat; the path is inside the new root already).
fn is_dir(p: &std::ffi::CStr) -> bool {
    nix::sys::stat::lstat(p)
        .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .unwrap_or(false)
}

/// The supervisor outside the namespace: closes every descriptor but stdio (so `spawn` sees
/// the exec of the real command, not this process), waits for the namespace's PID 1 and exits
/// as it did. Never returns.
fn supervise(pid: libc::pid_t) -> ! {
    // SAFETY: close_range, waitpid, signal, kill and _exit are async-signal-safe.
    unsafe {
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
            for fd in 3..1024 {
                libc::close(fd);
            }
        }
        let mut status = 0;
        loop {
            let r = libc::waitpid(pid, &mut status, 0);
            if r == pid {
                break;
            }
            if r < 0 && *libc::__errno_location() != libc::EINTR {
                libc::_exit(127);
            }
        }
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            libc::signal(sig, libc::SIG_DFL);
            libc::kill(libc::getpid(), sig);
        }
        libc::_exit(if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            127
        })
    }
}

/// Applies `p` to the calling process (async-signal-safe: prctl, capset, setres[ug]id).
fn drop_privileges(p: Privilege) -> std::io::Result<()> {
    if p == Privilege::Full {
        return Ok(());
    }
    let check = |r: libc::c_int| {
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // SAFETY: prctl/setgroups/setres[ug]id/capset with plain integers and a local struct.
    unsafe {
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
        // The bounding set first (needs CAP_SETPCAP); numbers beyond the kernel's last
        // capability fail with EINVAL and end the loop.
        for cap in 0..64 {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 {
                if *libc::__errno_location() == libc::EINVAL {
                    break;
                }
                return Err(std::io::Error::last_os_error());
            }
        }
        check(libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        ))?;
        if p == Privilege::Nobody {
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(65534, 65534, 65534))?;
            check(libc::setresuid(65534, 65534, 65534))?;
        }
        #[repr(C)]
        struct Header {
            version: u32,
            pid: libc::c_int,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut header = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let data = [Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        let r = libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr());
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A canned answer for [`FakeRunner`].
#[derive(Debug, Clone)]
pub struct FakeResponse {
    /// Matches when the command line starts with this prefix.
    pub prefix: String,
    /// The output to return.
    pub output: Output,
}

/// A computed answer for [`FakeRunner`].
pub type Responder = Box<dyn Fn(&Root, &Cmd) -> Output + Send + Sync>;

/// A runner for tests: records every command line and answers from canned responses (first
/// matching prefix wins; unmatched commands succeed with empty output).
#[derive(Default)]
pub struct FakeRunner {
    responses: Mutex<Vec<FakeResponse>>,
    responders: Mutex<Vec<(String, std::sync::Arc<Responder>)>>,
    log: Mutex<Vec<String>>,
    missing: Mutex<Vec<String>>,
}

impl fmt::Debug for FakeRunner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeRunner")
            .field("log", &self.log())
            .finish()
    }
}

impl FakeRunner {
    /// A runner where every command succeeds silently.
    pub fn new() -> FakeRunner {
        FakeRunner::default()
    }

    /// Answers commands starting with `prefix` with exit `code` and `stdout`.
    pub fn respond(&self, prefix: &str, code: i32, stdout: &str) -> &Self {
        self.push(prefix, code, stdout, "")
    }

    /// Answers commands starting with `prefix` with exit `code`, `stdout` and `stderr`.
    pub fn push(&self, prefix: &str, code: i32, stdout: &str, stderr: &str) -> &Self {
        if let Ok(mut r) = self.responses.lock() {
            r.insert(
                0,
                FakeResponse {
                    prefix: prefix.to_string(),
                    output: Output {
                        code,
                        stdout: stdout.to_string(),
                        stderr: stderr.to_string(),
                    },
                },
            );
        }
        self
    }

    /// Answers commands starting with `prefix` by calling `f` (checked before canned answers).
    pub fn respond_with(
        &self,
        prefix: &str,
        f: impl Fn(&Root, &Cmd) -> Output + Send + Sync + 'static,
    ) -> &Self {
        if let Ok(mut r) = self.responders.lock() {
            r.insert(0, (prefix.to_string(), std::sync::Arc::new(Box::new(f))));
        }
        self
    }

    /// Makes `program` unavailable.
    pub fn missing(&self, program: &str) -> &Self {
        if let Ok(mut m) = self.missing.lock() {
            m.push(program.to_string());
        }
        self
    }

    /// The command lines run so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Runner for FakeRunner {
    fn available(&self, _root: &Root, cmd: &Cmd) -> bool {
        self.missing
            .lock()
            .map(|m| !m.contains(&cmd.program))
            .unwrap_or(true)
    }

    fn run(&self, root: &Root, cmd: &Cmd) -> Result<Output, ExecError> {
        if !self.available(root, cmd) {
            return Err(ExecError::NotFound {
                program: cmd.program.clone(),
                place: "the target root".into(),
            });
        }
        let line = cmd.display();
        if let Ok(mut l) = self.log.lock() {
            l.push(line.clone());
        }
        let responder = self.responders.lock().ok().and_then(|r| {
            r.iter()
                .find(|(p, _)| line.starts_with(p))
                .map(|(_, f)| f.clone())
        });
        if let Some(f) = responder {
            return Ok(f(root, cmd));
        }
        let responses = self.responses.lock().map(|r| r.clone()).unwrap_or_default();
        Ok(responses
            .into_iter()
            .find(|r| line.starts_with(&r.prefix))
            .map(|r| r.output)
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("/usr/sbin/sshd"), "/usr/sbin/sshd");
    }

    #[test]
    fn system_runner_captures_output_and_exit_code() {
        let root = Root::new("/").unwrap();
        let out = SystemRunner::default()
            .run(
                &root,
                &Cmd::host("/bin/sh", &["-c", "echo out; echo err >&2; exit 3"]),
            )
            .unwrap();
        assert_eq!(out.code, 3);
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        let err = SystemRunner::default()
            .run(&root, &Cmd::host("/nonexistent/prog", &[]))
            .unwrap_err();
        assert!(matches!(err, ExecError::NotFound { .. }));
        let err = SystemRunner::default()
            .run(
                &root,
                &Cmd::host("/bin/sleep", &["5"]).timeout(Duration::from_millis(100)),
            )
            .unwrap_err();
        assert!(matches!(err, ExecError::Timeout { .. }));
    }

    #[test]
    fn run_ok_retries_transient_failures_only() {
        let root = Root::new("/").unwrap();
        let f = FakeRunner::new();
        let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let m = n.clone();
        f.respond_with("/usr/bin/apt-get update", move |_, _| {
            let i = m.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Output {
                code: if i < 2 { 100 } else { 0 },
                stdout: String::new(),
                stderr: "E: Could not get lock /var/lib/apt/lists/lock".into(),
            }
        });
        let retry = Retry {
            when_output_contains: vec!["Could not get lock".into()],
            delay: Duration::from_millis(10),
            total: Duration::from_secs(5),
        };
        let cmd = Cmd::in_root("/usr/bin/apt-get", &["update"]).retry(retry.clone());
        assert!(f.run_ok(&root, &cmd).is_ok());
        assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 3);
        // A failure that is not transient is not retried; nor is one past the total time.
        f.push(
            "/usr/bin/apt-get install",
            100,
            "",
            "E: Unable to locate package nope",
        );
        let cmd = Cmd::in_root("/usr/bin/apt-get", &["install", "nope"]).retry(retry.clone());
        assert!(f.run_ok(&root, &cmd).is_err());
        assert_eq!(f.log().iter().filter(|l| l.contains("install")).count(), 1);
        f.push(
            "/usr/bin/apt-get remove",
            100,
            "",
            "E: Could not get lock x",
        );
        let cmd = Cmd::in_root("/usr/bin/apt-get", &["remove", "x"]).retry(Retry {
            total: Duration::from_millis(25),
            ..retry
        });
        assert!(f.run_ok(&root, &cmd).is_err());
        let n = f.log().iter().filter(|l| l.contains("remove")).count();
        assert!((2..=4).contains(&n), "{n}");
    }

    #[test]
    fn fake_runner_matches_prefixes() {
        let root = Root::new("/").unwrap();
        let f = FakeRunner::new();
        f.respond("/usr/sbin/sshd -T", 0, "port 22\n");
        let out = f
            .run(&root, &Cmd::in_root("/usr/sbin/sshd", &["-T"]))
            .unwrap();
        assert_eq!(out.stdout, "port 22\n");
        assert_eq!(f.log(), vec!["/usr/sbin/sshd -T".to_string()]);
    }
}
