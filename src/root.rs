//! The target root: every file bollwerk reads or writes goes through [`Root`].
//!
//! Paths are [`RelPath`]s relative to the root (`etc/ssh/sshd_config`), never absolute host paths.
//! `Root` holds the root directory open and resolves every path beneath that handle the way a
//! `chroot` would: reads with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` (absolute link
//! targets are re-based on the root, `..` never climbs above it, a loop is `ELOOP`), changes with
//! a component-by-component walk on directory handles that also refuses unsafe path transitions
//! like systemd's `chase(CHASE_SAFE)`: no symlink owned by anyone but root is followed, and
//! nothing is reached through a directory another user owns unless it belongs to that user.
//! Changes act on descriptors: the final component is never followed (`O_NOFOLLOW`), modes and
//! owners are set with `fchmod`/`fchown` on the open file, writes are atomic (temp file in the
//! held directory, `fsync`, `renameat` relative to that same handle, `fsync` of the directory).
//! Reads open only regular files, never block on a FIFO, and have a size limit.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A path relative to the target root, without `..` or absolute components.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RelPath(String);

impl RelPath {
    /// Parses `etc/x` or `/etc/x` (the leading slash is dropped).
    ///
    /// # Errors
    /// Rejects empty paths and paths with `..`, `.` or empty components.
    pub fn new(s: &str) -> std::result::Result<RelPath, String> {
        let trimmed = s.trim_start_matches('/').trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(format!("path `{s}` names the root itself"));
        }
        for part in trimmed.split('/') {
            if part.is_empty() || part == "." || part == ".." {
                return Err(format!(
                    "path `{s}` must be normalised (no `..`, `.` or `//`)"
                ));
            }
            if part.contains('\0') {
                return Err(format!("path `{s}` contains a NUL byte"));
            }
        }
        Ok(RelPath(trimmed.to_string()))
    }

    /// Builds a path from a compile-time constant; panics only on a programming error.
    pub fn lit(s: &'static str) -> RelPath {
        match RelPath::new(s) {
            Ok(p) => p,
            Err(e) => panic!("invalid RelPath literal: {e}"),
        }
    }

    /// The path without a leading slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Appends a relative component (which may contain slashes).
    ///
    /// # Errors
    /// When `child` is not a valid relative path.
    pub fn join(&self, child: &str) -> std::result::Result<RelPath, String> {
        RelPath::new(&format!("{}/{}", self.0, child.trim_start_matches('/')))
    }

    /// The parent directory, or `None` for a top-level entry.
    pub fn parent(&self) -> Option<RelPath> {
        self.0.rsplit_once('/').map(|(p, _)| RelPath(p.to_string()))
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The absolute path as seen inside the target (`/etc/x`).
    pub fn absolute(&self) -> String {
        format!("/{}", self.0)
    }
}

impl TryFrom<String> for RelPath {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        RelPath::new(&s)
    }
}

impl From<RelPath> for String {
    fn from(p: RelPath) -> String {
        p.0
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0)
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Numeric ownership and permission bits of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Perms {
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    /// Owner uid, as numbers in the target's own `etc/passwd`.
    pub uid: u32,
    /// Group gid, as numbers in the target's own `etc/group`.
    pub gid: u32,
}

impl Perms {
    /// `mode`, owned by root:root.
    pub fn root(mode: u32) -> Perms {
        Perms {
            mode,
            uid: 0,
            gid: 0,
        }
    }
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o} {}:{}", self.mode, self.uid, self.gid)
    }
}

/// What is at a path, as observed with `lstat` (the final component is not followed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// Nothing.
    Absent,
    /// A regular file.
    File {
        /// Hex sha256 of the content.
        sha256: String,
        /// Size in bytes.
        size: u64,
        /// Mode and owner.
        perms: Perms,
    },
    /// A directory.
    Dir {
        /// Mode and owner.
        perms: Perms,
    },
    /// A symbolic link.
    Symlink {
        /// The link target, verbatim.
        target: String,
        /// Owner of the link itself.
        uid: u32,
        /// Group of the link itself.
        gid: u32,
    },
    /// A device, socket or FIFO: never touched by bollwerk.
    Other,
}

impl Entry {
    /// True unless [`Entry::Absent`].
    pub fn exists(&self) -> bool {
        !matches!(self, Entry::Absent)
    }
}

/// Hex-encoded sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The target root directory, held open: every operation resolves its path beneath this handle
/// the way a `chroot` would, and acts on file descriptors, never on host path strings.
#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
    dir: Arc<OwnedFd>,
}

const MAX_SYMLINK_HOPS: usize = 40;

/// How much [`Root::read`] reads at most (configuration files are far smaller); larger files
/// are an error, never a truncated read. [`Root::read_limited`] takes another limit.
pub const DEFAULT_READ_LIMIT: u64 = 16 * 1024 * 1024;

/// Whether the kernel has `openat2` (Linux ≥ 5.6); cleared on the first `ENOSYS`.
static HAVE_OPENAT2: AtomicBool = AtomicBool::new(true);

/// Why a path could not be resolved.
#[derive(Debug)]
enum WalkErr {
    /// A system call failed.
    Os(Errno),
    /// An unsafe path transition (see [`unsafe_transition`]).
    Unsafe(String),
}

impl From<Errno> for WalkErr {
    fn from(e: Errno) -> WalkErr {
        WalkErr::Os(e)
    }
}

/// systemd's `unsafe_transition` (src/basic/chase.c): stepping from an object owned by
/// `from` to one owned by `to` is unsafe when `from` is not root and `to` has another owner.
/// A user who owns a directory can swap what is inside it; nothing they control may lead to an
/// object of someone else.
fn unsafe_transition(from: u32, to: u32) -> bool {
    from != 0 && from != to
}

/// The end of a path walk: an open directory, its owner, and the final component (`None` when
/// the path resolves to the root itself).
struct Walk {
    dir: OwnedFd,
    uid: u32,
    name: Option<String>,
}

/// A path about to be changed: its directory held open (from the check to the change) and what
/// is there now (`lstat`).
struct Target {
    dir: OwnedFd,
    name: String,
    existing: Option<rfs::Stat>,
}

fn kind_of(st: &rfs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

fn describe_kind(ft: FileType) -> &'static str {
    match ft {
        FileType::Fifo => "a FIFO (named pipe)",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Socket => "a socket",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::RegularFile => "a regular file",
        _ => "a special file",
    }
}

fn same_object(a: &rfs::Stat, b: &rfs::Stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

fn uid(u: u32) -> Option<rfs::Uid> {
    Some(rfs::Uid::from_raw(u))
}

fn gid(g: u32) -> Option<rfs::Gid> {
    Some(rfs::Gid::from_raw(g))
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

/// Flags for opening an existing object for reading or `fchmod` without side effects: no
/// following of a final link, no blocking on a FIFO, no controlling terminal.
const PLAIN_OPEN: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

impl Root {
    /// Opens a root directory; it must exist and be a directory. The directory stays open for
    /// the lifetime of the `Root` (and its clones).
    ///
    /// # Errors
    /// When the directory does not exist, cannot be canonicalised or opened.
    pub fn new(path: impl AsRef<Path>) -> Result<Root> {
        let path = path.as_ref();
        let canonical = std::fs::canonicalize(path)
            .map_err(|e| Error::Usage(format!("root {}: {e}", path.display())))?;
        if !canonical.is_dir() {
            return Err(Error::Usage(format!(
                "root {} is not a directory",
                path.display()
            )));
        }
        let dir = rfs::open(&canonical, DIR_FLAGS, Mode::empty())
            .map_err(|e| Error::Usage(format!("root {}: {}", path.display(), errno_io(e))))?;
        Ok(Root {
            path: canonical,
            dir: Arc::new(dir),
        })
    }

    /// The root's path on the host (for messages and for tools that need a path string).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the root is the running system's `/`.
    pub fn is_host(&self) -> bool {
        self.path == Path::new("/")
    }

    /// The host path of `rel`, lexically (for messages only).
    fn shown(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    fn fail(&self, e: WalkErr, action: &'static str, rel: &str) -> Error {
        match e {
            WalkErr::Unsafe(reason) => Error::Unsafe {
                reason: format!("refusing {action} /{rel}: {reason}"),
                hint: "a path another user controls must not lead to a file bollwerk writes: \
                       fix the ownership or remove the symlink inside the target root"
                    .into(),
            },
            WalkErr::Os(Errno::LOOP) => Error::Runtime(format!(
                "{action} /{rel}: too many levels of symbolic links (a loop, or a chain longer \
                 than {MAX_SYMLINK_HOPS}) inside the target root {}",
                self.path.display()
            )),
            WalkErr::Os(e) => Error::io(action, self.shown(rel), errno_io(e)),
        }
    }

    /// A new handle on the root directory itself.
    fn root_dir(&self) -> std::result::Result<OwnedFd, Errno> {
        rfs::openat(&*self.dir, ".", DIR_FLAGS, Mode::empty())
    }

    /// Opens `rel` beneath the root as a `chroot` would see it: `openat2` with
    /// `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` (absolute links and `..` never leave the root),
    /// or the same walk in user space on kernels without `openat2`.
    fn open_beneath(&self, rel: &str, flags: OFlags) -> std::result::Result<OwnedFd, WalkErr> {
        let flags = flags | OFlags::CLOEXEC;
        if HAVE_OPENAT2.load(Ordering::Relaxed) {
            let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
            for _ in 0..16 {
                match rfs::openat2(&*self.dir, rel, flags, Mode::empty(), how) {
                    // A concurrent rename inside the root: the kernel asks to retry.
                    Err(Errno::AGAIN) => continue,
                    Err(Errno::NOSYS) => {
                        HAVE_OPENAT2.store(false, Ordering::Relaxed);
                        break;
                    }
                    r => return r.map_err(WalkErr::Os),
                }
            }
            if HAVE_OPENAT2.load(Ordering::Relaxed) {
                return Err(WalkErr::Os(Errno::AGAIN));
            }
        }
        let w = self.walk(rel, !flags.contains(OFlags::NOFOLLOW), false)?;
        match w.name {
            Some(name) => Ok(rfs::openat(
                &w.dir,
                name.as_str(),
                flags | OFlags::NOFOLLOW,
                Mode::empty(),
            )?),
            None => Ok(rfs::openat(&w.dir, ".", flags, Mode::empty())?),
        }
    }

    /// Walks `rel` component by component on directory handles, like systemd's `chase`:
    /// absolute link targets restart at the root, `..` stops at the root, more than
    /// [`MAX_SYMLINK_HOPS`] links is `ELOOP`. With `safe`, every step is checked on the open
    /// handle: no symlink owned by anyone but root is followed, and no unsafe transition
    /// ([`unsafe_transition`]) is made. The final component is followed only with
    /// `follow_last`; it may be absent.
    fn walk(&self, rel: &str, follow_last: bool, safe: bool) -> std::result::Result<Walk, WalkErr> {
        // The root itself is the operator's choice: trusted as if root-owned.
        let mut cur = self.root_dir()?;
        let mut cur_uid = 0u32;
        let mut ancestors: Vec<(OwnedFd, u32)> = Vec::new();
        let mut pending: Vec<String> = rel.split('/').rev().map(str::to_string).collect();
        let mut hops = 0;
        let mut seen = String::new();
        while let Some(comp) = pending.pop() {
            if comp.is_empty() || comp == "." {
                continue;
            }
            if comp == ".." {
                if let Some((fd, uid)) = ancestors.pop() {
                    if safe && unsafe_transition(cur_uid, uid) {
                        return Err(WalkErr::Unsafe(format!(
                            "`..` below {seen} leads from a directory of uid {cur_uid} to one of uid {uid}"
                        )));
                    }
                    cur = fd;
                    cur_uid = uid;
                }
                seen = format!("{seen}/..");
                continue;
            }
            let last = pending.is_empty();
            if last && !follow_last {
                return Ok(Walk {
                    dir: cur,
                    uid: cur_uid,
                    name: Some(comp),
                });
            }
            let fd = match rfs::openat(
                &cur,
                comp.as_str(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if last => {
                    return Ok(Walk {
                        dir: cur,
                        uid: cur_uid,
                        name: Some(comp),
                    });
                }
                Err(e) => return Err(e.into()),
            };
            seen = format!("{seen}/{comp}");
            let st = rfs::fstat(&fd)?;
            match kind_of(&st) {
                FileType::Symlink => {
                    if safe && (st.st_uid != 0 || unsafe_transition(cur_uid, st.st_uid)) {
                        return Err(WalkErr::Unsafe(format!(
                            "{seen} is a symlink owned by uid {}, in a directory of uid {cur_uid}",
                            st.st_uid
                        )));
                    }
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(WalkErr::Os(Errno::LOOP));
                    }
                    let target = rfs::readlinkat(&fd, "", Vec::new())?;
                    let target = target.to_string_lossy().into_owned();
                    if target.starts_with('/') {
                        if safe && unsafe_transition(cur_uid, 0) {
                            return Err(WalkErr::Unsafe(format!(
                                "{seen} leads from a directory of uid {cur_uid} to the root"
                            )));
                        }
                        ancestors.clear();
                        cur = self.root_dir()?;
                        cur_uid = 0;
                    }
                    pending.extend(target.split('/').rev().map(str::to_string));
                }
                _ if last => {
                    return Ok(Walk {
                        dir: cur,
                        uid: cur_uid,
                        name: Some(comp),
                    });
                }
                FileType::Directory => {
                    if safe && unsafe_transition(cur_uid, st.st_uid) {
                        return Err(WalkErr::Unsafe(format!(
                            "{seen} is owned by uid {}, inside a directory of uid {cur_uid}",
                            st.st_uid
                        )));
                    }
                    let dir = rfs::openat(&fd, ".", DIR_FLAGS, Mode::empty())?;
                    ancestors.push((cur, cur_uid));
                    cur = dir;
                    cur_uid = st.st_uid;
                }
                _ => return Err(WalkErr::Os(Errno::NOTDIR)),
            }
        }
        Ok(Walk {
            dir: cur,
            uid: cur_uid,
            name: None,
        })
    }

    /// Resolves `rel` for a change (the final component is never followed) with the safe walk,
    /// and checks the final step: in a directory owned by a user other than root, only that
    /// user's objects are created (`new_uid` is the owner the object will have) or, with
    /// `in_place` (mode and owner changed on the existing object), changed.
    fn target(
        &self,
        rel: &RelPath,
        new_uid: Option<u32>,
        in_place: bool,
    ) -> std::result::Result<Target, WalkErr> {
        let w = self.walk(rel.as_str(), false, true)?;
        let Some(name) = w.name else {
            return Err(WalkErr::Unsafe(
                "the path resolves to the root directory itself".into(),
            ));
        };
        let existing = match rfs::statat(&w.dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(st),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(e.into()),
        };
        if w.uid != 0 {
            if let Some(u) = new_uid
                && u != w.uid
            {
                return Err(WalkErr::Unsafe(format!(
                    "it would be owned by uid {u}, but its directory belongs to uid {}, who could redirect it",
                    w.uid
                )));
            }
            if let Some(st) = &existing
                && in_place
                && st.st_uid != w.uid
            {
                return Err(WalkErr::Unsafe(format!(
                    "it is owned by uid {}, inside a directory of uid {}",
                    st.st_uid, w.uid
                )));
            }
        }
        Ok(Target {
            dir: w.dir,
            name,
            existing,
        })
    }

    /// Checks, without changing anything, that `rel` could be changed now: the safe walk and
    /// the final-step rules of every change (see [`Root::write_atomic`]). A path whose
    /// directories do not exist yet passes (they are checked when they are created and when
    /// the change is made).
    ///
    /// # Errors
    /// [`Error::Unsafe`] for an unsafe path transition, a clear error for a symlink loop.
    pub fn check_change(&self, rel: &RelPath, new_uid: Option<u32>, in_place: bool) -> Result<()> {
        match self.target(rel, new_uid, in_place) {
            Ok(_) | Err(WalkErr::Os(Errno::NOENT | Errno::NOTDIR)) => Ok(()),
            Err(e) => Err(self.fail(e, "changing", rel.as_str())),
        }
    }

    /// Resolves `rel` to a host path, following symlinks in every component but the last as a
    /// `chroot` would (absolute targets are re-based on the root, `..` never climbs above it).
    ///
    /// Only for commands that need a path string (e.g. a tool run chrooted): nothing is written
    /// or `chmod`ed through the result. A loop or a chain longer than 40 links yields a path
    /// that cannot exist (`/dev/null/…`), never the link itself.
    pub fn resolve(&self, rel: &RelPath) -> PathBuf {
        self.resolve_inner(rel.as_str(), false)
    }

    /// Like [`Root::resolve`], but also follows a symlink in the last component.
    pub fn resolve_follow(&self, rel: &RelPath) -> PathBuf {
        self.resolve_inner(rel.as_str(), true)
    }

    fn resolve_inner(&self, rel: &str, follow_last: bool) -> PathBuf {
        // `stack` holds the resolved components below the root.
        let mut stack: Vec<std::ffi::OsString> = Vec::new();
        let mut pending: Vec<std::ffi::OsString> = rel
            .split('/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(Into::into)
            .collect();
        let mut hops = 0;
        while let Some(comp) = pending.pop() {
            let comp_str = comp.to_string_lossy();
            if comp_str == "." {
                continue;
            }
            if comp_str == ".." {
                stack.pop();
                continue;
            }
            let is_last = pending.is_empty();
            let mut candidate = self.path.clone();
            candidate.extend(stack.iter());
            candidate.push(&comp);
            if (!is_last || follow_last)
                && let Ok(target) = std::fs::read_link(&candidate)
            {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return PathBuf::from("/dev/null/bollwerk-too-many-symlinks");
                }
                if target.is_absolute() {
                    stack.clear();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => pending.push(n.to_os_string()),
                        Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
                continue;
            }
            stack.push(comp);
        }
        let mut out = self.path.clone();
        out.extend(stack.iter());
        out
    }

    /// Reads a regular file, following symlinks within the root, up to
    /// [`DEFAULT_READ_LIMIT`] bytes. `None` when it does not exist.
    ///
    /// # Errors
    /// Any I/O error other than "not found"; a FIFO, device or socket (never opened for more
    /// than an `fstat`, never waited on); a file over the limit; a symlink loop.
    pub fn read(&self, rel: &RelPath) -> Result<Option<Vec<u8>>> {
        self.read_limited(rel, DEFAULT_READ_LIMIT)
    }

    /// [`Root::read`] with an explicit size limit in bytes.
    ///
    /// # Errors
    /// As [`Root::read`].
    pub fn read_limited(&self, rel: &RelPath, limit: u64) -> Result<Option<Vec<u8>>> {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
        match self.open_beneath(rel.as_str(), flags) {
            Ok(fd) => self.read_fd(fd, rel, limit).map(Some),
            Err(WalkErr::Os(Errno::NOENT | Errno::NOTDIR)) => Ok(None),
            Err(e) => Err(self.fail(e, "reading", rel.as_str())),
        }
    }

    /// Reads a file without following any symlink or directory that a user other than root
    /// owns (the safe walk of writes): for copying files out of user-controlled directories
    /// (e.g. a PostgreSQL cluster's `conf.d`). `None` when it does not exist.
    ///
    /// # Errors
    /// As [`Root::read`], and [`Error::Unsafe`] for an unsafe path transition.
    pub fn read_safe(&self, rel: &RelPath, limit: u64) -> Result<Option<Vec<u8>>> {
        let fail = |e| self.fail(e, "reading", rel.as_str());
        let w = match self.walk(rel.as_str(), true, true) {
            Ok(w) => w,
            Err(WalkErr::Os(Errno::NOENT | Errno::NOTDIR)) => return Ok(None),
            Err(e) => return Err(fail(e)),
        };
        let Some(name) = w.name else {
            return Err(fail(WalkErr::Os(Errno::ISDIR)));
        };
        let fd = match rfs::openat(&w.dir, name.as_str(), PLAIN_OPEN, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(fail(e.into())),
        };
        let st = rfs::fstat(&fd).map_err(|e| fail(e.into()))?;
        if unsafe_transition(w.uid, st.st_uid) {
            return Err(fail(WalkErr::Unsafe(format!(
                "it is owned by uid {}, inside a directory of uid {}",
                st.st_uid, w.uid
            ))));
        }
        self.read_fd(fd, rel, limit).map(Some)
    }

    /// Reads an open file: only a regular file, only up to `limit` bytes.
    fn read_fd(&self, fd: OwnedFd, rel: &RelPath, limit: u64) -> Result<Vec<u8>> {
        let st = rfs::fstat(&fd)
            .map_err(|e| Error::io("reading", self.shown(rel.as_str()), errno_io(e)))?;
        check_regular(&st, rel, "read")?;
        let too_big = || {
            Error::Runtime(format!(
                "refusing to read {rel}: it is larger than the limit of {limit} bytes"
            ))
        };
        if st.st_size as u64 > limit {
            return Err(too_big());
        }
        let mut buf = Vec::with_capacity(st.st_size as usize);
        File::from(fd)
            .take(limit + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::io("reading", self.shown(rel.as_str()), e))?;
        if buf.len() as u64 > limit {
            return Err(too_big());
        }
        Ok(buf)
    }

    /// Reads a file as UTF-8 (lossily). `None` when it does not exist.
    ///
    /// # Errors
    /// As [`Root::read`].
    pub fn read_string(&self, rel: &RelPath) -> Result<Option<String>> {
        Ok(self
            .read(rel)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// True when something exists at `rel` (following symlinks within the root).
    pub fn exists(&self, rel: &RelPath) -> bool {
        self.open_beneath(rel.as_str(), OFlags::PATH).is_ok()
    }

    /// The directory of `rel` (resolved within the root) and the final name.
    fn open_parent(&self, rel: &RelPath) -> std::result::Result<OwnedFd, WalkErr> {
        match rel.parent() {
            Some(p) => self.open_beneath(p.as_str(), OFlags::PATH | OFlags::DIRECTORY),
            None => Ok(self.root_dir()?),
        }
    }

    /// `lstat` of `rel`, with the content hash for regular files (a FIFO, device or socket is
    /// [`Entry::Other`] and never opened).
    ///
    /// # Errors
    /// Any I/O error other than "not found".
    pub fn entry(&self, rel: &RelPath) -> Result<Entry> {
        let fail = |e| self.fail(e, "inspecting", rel.as_str());
        let dir = match self.open_parent(rel) {
            Ok(d) => d,
            Err(WalkErr::Os(Errno::NOENT | Errno::NOTDIR)) => return Ok(Entry::Absent),
            Err(e) => return Err(fail(e)),
        };
        let name = rel.file_name();
        let st = match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(Entry::Absent),
            Err(e) => return Err(fail(e.into())),
        };
        let perms = Perms {
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
        };
        Ok(match kind_of(&st) {
            FileType::RegularFile => {
                let fd = rfs::openat(&dir, name, PLAIN_OPEN, Mode::empty())
                    .map_err(|e| fail(e.into()))?;
                let now = rfs::fstat(&fd).map_err(|e| fail(e.into()))?;
                if !same_object(&st, &now) {
                    return Err(Error::Runtime(format!(
                        "{rel} was replaced while it was inspected; re-run"
                    )));
                }
                let mut f = File::from(fd);
                let mut hasher = Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = f
                        .read(&mut buf)
                        .map_err(|e| Error::io("reading", self.shown(rel.as_str()), e))?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
                Entry::File {
                    sha256: hex::encode(hasher.finalize()),
                    size: now.st_size as u64,
                    perms,
                }
            }
            FileType::Directory => Entry::Dir { perms },
            FileType::Symlink => {
                let target = rfs::readlinkat(&dir, name, Vec::new()).map_err(|e| fail(e.into()))?;
                Entry::Symlink {
                    target: target.to_string_lossy().into_owned(),
                    uid: st.st_uid,
                    gid: st.st_gid,
                }
            }
            _ => Entry::Other,
        })
    }

    /// Lists the names in a directory (sorted). Empty when the directory does not exist.
    ///
    /// # Errors
    /// Any I/O error other than "not found".
    pub fn list_dir(&self, rel: &RelPath) -> Result<Vec<String>> {
        match self.open_beneath(rel.as_str(), DIR_FLAGS) {
            Ok(fd) => self.list_fd(fd, rel),
            Err(WalkErr::Os(Errno::NOENT | Errno::NOTDIR)) => Ok(Vec::new()),
            Err(e) => Err(self.fail(e, "listing", rel.as_str())),
        }
    }

    /// [`Root::list_dir`] through the safe walk: no symlink or directory of another user is
    /// followed on the way, and `rel` itself must be a real directory.
    ///
    /// # Errors
    /// As [`Root::list_dir`], and [`Error::Unsafe`] for an unsafe path transition.
    pub fn list_dir_safe(&self, rel: &RelPath) -> Result<Vec<String>> {
        let fail = |e| self.fail(e, "listing", rel.as_str());
        let t = match self.target(rel, None, false) {
            Ok(t) => t,
            Err(WalkErr::Os(Errno::NOENT | Errno::NOTDIR)) => return Ok(Vec::new()),
            Err(e) => return Err(fail(e)),
        };
        match t.existing.as_ref().map(kind_of) {
            None => Ok(Vec::new()),
            Some(FileType::Directory) => {
                let fd = rfs::openat(
                    &t.dir,
                    t.name.as_str(),
                    DIR_FLAGS | OFlags::NOFOLLOW,
                    Mode::empty(),
                )
                .map_err(|e| fail(e.into()))?;
                self.list_fd(fd, rel)
            }
            Some(k) => Err(Error::Unsafe {
                reason: format!(
                    "refusing to list {rel}: it is {}, not a directory",
                    describe_kind(k)
                ),
                hint: "replace it by a real directory".into(),
            }),
        }
    }

    fn list_fd(&self, fd: OwnedFd, rel: &RelPath) -> Result<Vec<String>> {
        let fail = |e| Error::io("listing", self.shown(rel.as_str()), errno_io(e));
        let mut names = Vec::new();
        for ent in rfs::Dir::new(fd).map_err(fail)? {
            let ent = ent.map_err(fail)?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Writes `bytes` to `rel` atomically with the given mode and owner. Parent directories must
    /// exist. A symlink at `rel` is replaced, never followed; the directory is reached by the
    /// safe walk (no symlink of another user, no unsafe transition).
    ///
    /// # Errors
    /// Any I/O error, [`Error::Unsafe`] for an unsafe path; on error the old file is untouched.
    pub fn write_atomic(&self, rel: &RelPath, bytes: &[u8], perms: Perms) -> Result<()> {
        let staged = self.stage(rel, bytes, perms)?;
        staged.commit()
    }

    /// Writes `bytes` to a temp file next to `rel` (same directory, held open, so the final
    /// rename is atomic and lands where the check was made) with mode and owner set and data
    /// synced, without replacing `rel` yet.
    ///
    /// # Errors
    /// Any I/O error, [`Error::Unsafe`] for an unsafe path.
    pub fn stage(&self, rel: &RelPath, bytes: &[u8], perms: Perms) -> Result<Staged> {
        self.stage_with(rel, bytes, perms, true)
    }

    /// [`Root::write_atomic`] without the two `fsync`s: the same safe walk and atomic rename,
    /// nothing durable yet. For throw-away files (validation candidates in a scratch
    /// directory that is removed at the end of the run), or for a group commit that makes
    /// many writes durable at once with [`Root::sync_paths`].
    ///
    /// # Errors
    /// As [`Root::write_atomic`].
    pub fn write_unsynced(&self, rel: &RelPath, bytes: &[u8], perms: Perms) -> Result<()> {
        let mut staged = self.stage_with(rel, bytes, perms, false)?;
        let host = staged.tmp_host.with_file_name(&staged.name);
        rfs::renameat(
            &staged.dir,
            staged.tmp.as_str(),
            &staged.dir,
            staged.name.as_str(),
        )
        .map_err(|e| Error::io("renaming into place", &host, errno_io(e)))?;
        staged.done = true;
        Ok(())
    }

    /// [`Root::write_atomic`] whose data is synced but whose rename is not made durable (no
    /// `fsync` of the directory): after a crash the path holds either the old or the new
    /// content, never a torn one. For files a later durable write supersedes anyway (the
    /// journal manifest between two steps).
    ///
    /// # Errors
    /// As [`Root::write_atomic`].
    pub fn write_atomic_lazy(&self, rel: &RelPath, bytes: &[u8], perms: Perms) -> Result<()> {
        let mut staged = self.stage_with(rel, bytes, perms, true)?;
        let host = staged.tmp_host.with_file_name(&staged.name);
        rfs::renameat(
            &staged.dir,
            staged.tmp.as_str(),
            &staged.dir,
            staged.name.as_str(),
        )
        .map_err(|e| Error::io("renaming into place", &host, errno_io(e)))?;
        staged.done = true;
        Ok(())
    }

    fn stage_with(&self, rel: &RelPath, bytes: &[u8], perms: Perms, sync: bool) -> Result<Staged> {
        let t = self
            .target(rel, Some(perms.uid), false)
            .map_err(|e| self.fail(e, "writing", rel.as_str()))?;
        if let Some(st) = &t.existing
            && kind_of(st) == FileType::Directory
        {
            return Err(Error::Runtime(format!(
                "refusing to write {rel}: it is a directory"
            )));
        }
        let host = self.shown(rel.as_str());
        let io = |e: Errno| Error::io("writing", &host, errno_io(e));
        let (tmp, fd) = create_temp(&t.dir, |name| {
            rfs::openat(
                &t.dir,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        })
        .map_err(io)?;
        let staged = Staged {
            tmp_host: host.with_file_name(&tmp),
            dir: t.dir,
            tmp,
            name: t.name,
            done: false,
        };
        let mut f = File::from(fd);
        f.write_all(bytes)
            .map_err(|e| Error::io("writing", &staged.tmp_host, e))?;
        rfs::fchown(&f, uid(perms.uid), gid(perms.gid)).map_err(io)?;
        rfs::fchmod(&f, Mode::from_raw_mode(perms.mode)).map_err(io)?;
        if sync {
            f.sync_all()
                .map_err(|e| Error::io("syncing", &staged.tmp_host, e))?;
        }
        Ok(staged)
    }

    /// Makes earlier unsynced changes durable (the group commit that follows
    /// [`Root::write_unsynced`] and other changes): `fsync` of every regular file and directory among `paths`, then of the
    /// directory holding each of them (where a rename, creation or removal is recorded).
    /// Writeback of every file is started first (`sync_file_range`), so the `fsync`s mostly
    /// share one journal commit instead of paying one each. A path that no longer exists, or
    /// is a symlink or a special file, only gets its directory synced.
    ///
    /// # Errors
    /// Any I/O error other than "not found".
    pub fn sync_paths<'a>(&self, paths: impl IntoIterator<Item = &'a RelPath>) -> Result<()> {
        let mut objects: Vec<(OwnedFd, &RelPath, bool)> = Vec::new();
        let mut dirs: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        for rel in paths {
            let fail = |e| self.fail(e, "syncing", rel.as_str());
            dirs.insert(rel.parent().map(|p| p.0).unwrap_or_default());
            let parent = match self.open_parent(rel) {
                Ok(d) => d,
                Err(WalkErr::Os(Errno::NOENT | Errno::NOTDIR)) => continue,
                Err(e) => return Err(fail(e)),
            };
            let st = match rfs::statat(&parent, rel.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT | Errno::NOTDIR) => continue,
                Err(e) => return Err(fail(e.into())),
            };
            let is_file = match kind_of(&st) {
                FileType::RegularFile => true,
                FileType::Directory => false,
                _ => continue,
            };
            let fd = rfs::openat(&parent, rel.file_name(), PLAIN_OPEN, Mode::empty())
                .map_err(|e| fail(e.into()))?;
            if is_file {
                // SAFETY: an open descriptor and integer arguments; only starts writeback.
                unsafe {
                    nix::libc::sync_file_range(
                        std::os::fd::AsRawFd::as_raw_fd(&fd),
                        0,
                        0,
                        nix::libc::SYNC_FILE_RANGE_WRITE,
                    );
                }
            }
            objects.push((fd, rel, is_file));
        }
        sync_parallel(
            objects.iter().map(|(fd, rel, _)| (fd, rel.as_str())),
            |rel, e| Error::io("syncing", self.shown(rel), errno_io(e)),
        )?;
        let mut dir_fds = Vec::with_capacity(dirs.len());
        for d in &dirs {
            let opened = if d.is_empty() {
                self.root_dir().map_err(WalkErr::Os)
            } else {
                self.open_beneath(d, DIR_FLAGS)
            };
            match opened {
                Ok(fd) => dir_fds.push((fd, d.as_str())),
                Err(WalkErr::Os(Errno::NOENT | Errno::NOTDIR)) => {}
                Err(e) => return Err(self.fail(e, "syncing directory", d)),
            }
        }
        sync_parallel(dir_fds.iter().map(|(fd, d)| (fd, *d)), |d, e| {
            Error::io("syncing directory", self.shown(d), errno_io(e))
        })
    }

    /// Replaces whatever is at `rel` by a symlink to `target`, atomically.
    ///
    /// # Errors
    /// Any I/O error, [`Error::Unsafe`] for an unsafe path.
    pub fn symlink_atomic(&self, rel: &RelPath, target: &str) -> Result<()> {
        let t = self
            .target(rel, Some(0), false)
            .map_err(|e| self.fail(e, "creating symlink", rel.as_str()))?;
        let host = self.shown(rel.as_str());
        let io = |e: Errno| Error::io("creating symlink", &host, errno_io(e));
        let (tmp, ()) =
            create_temp(&t.dir, |name| rfs::symlinkat(target, &t.dir, name)).map_err(io)?;
        if let Err(e) = rfs::renameat(&t.dir, tmp.as_str(), &t.dir, t.name.as_str()) {
            let _ = rfs::unlinkat(&t.dir, tmp.as_str(), AtFlags::empty());
            return Err(io(e));
        }
        rfs::fsync(&t.dir).map_err(io)
    }

    /// Sets owner of a symlink itself (not its target).
    ///
    /// # Errors
    /// Any I/O error, [`Error::Unsafe`] for an unsafe path.
    pub fn lchown(&self, rel: &RelPath, uid_: u32, gid_: u32) -> Result<()> {
        let t = self
            .target(rel, Some(uid_), true)
            .map_err(|e| self.fail(e, "setting owner of", rel.as_str()))?;
        rfs::chownat(
            &t.dir,
            t.name.as_str(),
            uid(uid_),
            gid(gid_),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| Error::io("setting owner of", self.shown(rel.as_str()), errno_io(e)))
    }

    /// Creates a directory (the parent must exist) with mode and owner. Succeeds when a
    /// directory already exists (its permissions are then set).
    ///
    /// # Errors
    /// Any I/O error, or when a non-directory (a symlink included) is in the way.
    pub fn create_dir(&self, rel: &RelPath, perms: Perms) -> Result<()> {
        self.mkdir(rel, perms, false)
    }

    /// Creates a new directory; fails when anything already exists at `rel` (for scratch
    /// directories in shared places like `/tmp`, where another user may have planted a name).
    ///
    /// # Errors
    /// Any I/O error, `EEXIST` included.
    pub fn create_dir_new(&self, rel: &RelPath, perms: Perms) -> Result<()> {
        self.mkdir(rel, perms, true)
    }

    /// [`Root::create_dir_new`] without the `fsync` of the parent: for throw-away scratch
    /// directories removed at the end of the run.
    ///
    /// # Errors
    /// As [`Root::create_dir_new`].
    pub fn create_scratch_dir(&self, rel: &RelPath, perms: Perms) -> Result<()> {
        self.mkdir_unsynced(rel, perms, true).map(drop)
    }

    fn mkdir(&self, rel: &RelPath, perms: Perms, exclusive: bool) -> Result<()> {
        let dir = self.mkdir_unsynced(rel, perms, exclusive)?;
        rfs::fsync(&dir)
            .map_err(|e| Error::io("creating directory", self.shown(rel.as_str()), errno_io(e)))
    }

    /// Creates the directory and returns its parent's handle, not synced.
    fn mkdir_unsynced(&self, rel: &RelPath, perms: Perms, exclusive: bool) -> Result<OwnedFd> {
        let t = self
            .target(rel, Some(perms.uid), true)
            .map_err(|e| self.fail(e, "creating directory", rel.as_str()))?;
        let io = |e: Errno| Error::io("creating directory", self.shown(rel.as_str()), errno_io(e));
        match t.existing.as_ref().map(kind_of) {
            None => {
                rfs::mkdirat(&t.dir, t.name.as_str(), Mode::from_raw_mode(0o700)).map_err(io)?
            }
            Some(FileType::Directory) if !exclusive => {}
            Some(_) => return Err(io(Errno::EXIST)),
        }
        let fd = rfs::openat(
            &t.dir,
            t.name.as_str(),
            DIR_FLAGS | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(io)?;
        rfs::fchown(&fd, uid(perms.uid), gid(perms.gid)).map_err(io)?;
        rfs::fchmod(&fd, Mode::from_raw_mode(perms.mode)).map_err(io)?;
        Ok(t.dir)
    }

    /// Sets mode and owner of an existing regular file or directory, on an open descriptor (a
    /// symlink, FIFO, device or socket at `rel` is refused).
    ///
    /// # Errors
    /// Any I/O error, [`Error::Unsafe`] for an unsafe path.
    pub fn set_perms(&self, rel: &RelPath, perms: Perms) -> Result<()> {
        let t = self
            .target(rel, Some(perms.uid), true)
            .map_err(|e| self.fail(e, "changing permissions of", rel.as_str()))?;
        let io = |e: Errno| Error::io("setting mode of", self.shown(rel.as_str()), errno_io(e));
        let st = t.existing.ok_or_else(|| io(Errno::NOENT))?;
        let flags = match kind_of(&st) {
            FileType::RegularFile => PLAIN_OPEN,
            FileType::Directory => PLAIN_OPEN | OFlags::DIRECTORY,
            FileType::Symlink => {
                return Err(Error::Runtime(format!(
                    "refusing to change permissions through the symlink {rel}"
                )));
            }
            k => {
                return Err(Error::Runtime(format!(
                    "refusing to change permissions of {rel}: it is {}",
                    describe_kind(k)
                )));
            }
        };
        let fd = rfs::openat(&t.dir, t.name.as_str(), flags, Mode::empty()).map_err(io)?;
        if !same_object(&st, &rfs::fstat(&fd).map_err(io)?) {
            return Err(Error::Runtime(format!(
                "{rel} was replaced while its permissions were changed; re-run"
            )));
        }
        rfs::fchown(&fd, uid(perms.uid), gid(perms.gid)).map_err(io)?;
        rfs::fchmod(&fd, Mode::from_raw_mode(perms.mode)).map_err(io)
    }

    /// Removes a file or symlink (or an empty directory). Absent is fine.
    ///
    /// # Errors
    /// Any I/O error other than "not found".
    pub fn remove(&self, rel: &RelPath) -> Result<()> {
        self.remove_inner(rel, false, true)
    }

    /// Removes `rel` and, for a directory, everything below it, on directory handles (no link
    /// inside is followed). Absent is fine.
    ///
    /// # Errors
    /// Any I/O error other than "not found".
    pub fn remove_all(&self, rel: &RelPath) -> Result<()> {
        self.remove_inner(rel, true, true)
    }

    /// [`Root::remove_all`] without the `fsync` of the parent: for throw-away scratch
    /// directories (a crash leaves them behind, and the next run ignores them).
    ///
    /// # Errors
    /// As [`Root::remove_all`].
    pub fn remove_scratch(&self, rel: &RelPath) -> Result<()> {
        self.remove_inner(rel, true, false)
    }

    fn remove_inner(&self, rel: &RelPath, recursive: bool, sync: bool) -> Result<()> {
        let t = match self.target(rel, None, false) {
            Ok(t) => t,
            Err(WalkErr::Os(Errno::NOENT | Errno::NOTDIR)) => return Ok(()),
            Err(e) => return Err(self.fail(e, "removing", rel.as_str())),
        };
        let io = |e: Errno| Error::io("removing", self.shown(rel.as_str()), errno_io(e));
        let res = match t.existing.as_ref().map(kind_of) {
            None => return Ok(()),
            Some(FileType::Directory) => {
                if recursive {
                    let fd = rfs::openat(
                        &t.dir,
                        t.name.as_str(),
                        DIR_FLAGS | OFlags::NOFOLLOW,
                        Mode::empty(),
                    )
                    .map_err(io)?;
                    empty_dir(fd, 0).map_err(io)?;
                }
                rfs::unlinkat(&t.dir, t.name.as_str(), AtFlags::REMOVEDIR)
            }
            Some(_) => rfs::unlinkat(&t.dir, t.name.as_str(), AtFlags::empty()),
        };
        match res {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(io(e)),
        }
        if sync {
            rfs::fsync(&t.dir).map_err(io)?;
        }
        Ok(())
    }

    /// Opens (creating it 0600 root:root when missing) a root-owned regular file for reading
    /// and writing without following a link at any step the safe walk refuses, nor at the last
    /// component: for lock files.
    ///
    /// # Errors
    /// Any I/O error; [`Error::Unsafe`] for an unsafe path, or when the file is not a regular
    /// file owned by root.
    pub fn open_private(&self, rel: &RelPath) -> Result<File> {
        let t = self
            .target(rel, Some(0), true)
            .map_err(|e| self.fail(e, "opening", rel.as_str()))?;
        let io = |e: Errno| Error::io("opening", self.shown(rel.as_str()), errno_io(e));
        if let Some(st) = &t.existing
            && kind_of(st) != FileType::RegularFile
        {
            return Err(Error::Unsafe {
                reason: format!(
                    "refusing to open {rel}: it is {}, not a regular file",
                    describe_kind(kind_of(st))
                ),
                hint: "remove it; bollwerk creates it again".into(),
            });
        }
        let fd = rfs::openat(
            &t.dir,
            t.name.as_str(),
            OFlags::RDWR
                | OFlags::CREATE
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | OFlags::NOCTTY
                | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io)?;
        let st = rfs::fstat(&fd).map_err(io)?;
        check_regular(&st, rel, "open")?;
        if st.st_uid != 0 {
            return Err(Error::Unsafe {
                reason: format!(
                    "refusing to use {rel}: it is owned by uid {}, not root",
                    st.st_uid
                ),
                hint: "remove it; bollwerk creates it again".into(),
            });
        }
        Ok(File::from(fd))
    }

    /// Creates every missing directory of `rel` (itself included) as root-owned 0755.
    /// Returns the directories that were missing, outermost first.
    ///
    /// # Errors
    /// Any I/O error.
    pub fn missing_dirs(&self, rel: &RelPath) -> Result<Vec<RelPath>> {
        let mut missing = Vec::new();
        let mut cur = Some(rel.clone());
        while let Some(p) = cur {
            if self.entry(&p)? != Entry::Absent {
                break;
            }
            cur = p.parent();
            missing.push(p);
        }
        missing.reverse();
        Ok(missing)
    }
}

fn errno_io(e: Errno) -> std::io::Error {
    e.into()
}

/// Refuses anything but a regular file with a message naming what it is.
fn check_regular(st: &rfs::Stat, rel: &RelPath, verb: &str) -> Result<()> {
    match kind_of(st) {
        FileType::RegularFile => Ok(()),
        FileType::Directory => Err(Error::Runtime(format!(
            "cannot {verb} {rel}: it is a directory"
        ))),
        k => Err(Error::Runtime(format!(
            "refusing to {verb} {rel}: it is {}, not a regular file",
            describe_kind(k)
        ))),
    }
}

/// Creates a temp entry with an unpredictable name in `dir` (`make` must fail with `EEXIST`
/// when the name is taken).
fn create_temp<T>(
    _dir: &OwnedFd,
    mut make: impl FnMut(&str) -> std::result::Result<T, Errno>,
) -> std::result::Result<(String, T), Errno> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    for _ in 0..64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            ".bollwerk-{}-{:x}.tmp",
            std::process::id(),
            nanos ^ n.rotate_left(32)
        );
        match make(&name) {
            Ok(v) => return Ok((name, v)),
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Errno::EXIST)
}

/// Removes everything inside an open directory, on handles (links are removed, not followed).
fn empty_dir(fd: OwnedFd, depth: usize) -> std::result::Result<(), Errno> {
    if depth > 256 {
        return Err(Errno::LOOP);
    }
    let mut names = Vec::new();
    for ent in rfs::Dir::read_from(&fd)? {
        let ent = ent?;
        let name = ent.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            names.push(name);
        }
    }
    for name in names {
        let st = match rfs::statat(&fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(e),
        };
        if kind_of(&st) == FileType::Directory {
            let sub = rfs::openat(
                &fd,
                name.as_str(),
                DIR_FLAGS | OFlags::NOFOLLOW,
                Mode::empty(),
            )?;
            empty_dir(sub, depth + 1)?;
            rfs::unlinkat(&fd, name.as_str(), AtFlags::REMOVEDIR)?;
        } else {
            rfs::unlinkat(&fd, name.as_str(), AtFlags::empty())?;
        }
    }
    Ok(())
}

/// A temp file written next to its target, not yet renamed into place. It holds the target's
/// directory open, so the rename lands in the directory that was checked. Dropping it removes
/// the temp file.
#[derive(Debug)]
pub struct Staged {
    dir: OwnedFd,
    tmp: String,
    name: String,
    tmp_host: PathBuf,
    done: bool,
}

impl Staged {
    /// The temp file's host path (for messages; reads go through the root).
    pub fn path(&self) -> &Path {
        &self.tmp_host
    }

    /// Renames the temp file over the target (relative to the held directory) and syncs the
    /// directory.
    ///
    /// # Errors
    /// When the rename or the directory sync fails.
    pub fn commit(mut self) -> Result<()> {
        let host = self.tmp_host.with_file_name(&self.name);
        rfs::renameat(&self.dir, self.tmp.as_str(), &self.dir, self.name.as_str())
            .map_err(|e| Error::io("renaming into place", &host, errno_io(e)))?;
        self.done = true;
        rfs::fsync(&self.dir).map_err(|e| Error::io("syncing directory of", &host, errno_io(e)))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = rfs::unlinkat(&self.dir, self.tmp.as_str(), AtFlags::empty());
        }
    }
}

/// `fsync`s every descriptor, several at a time: the file system's journal then commits
/// concurrent `fsync`s together (one commit for many files) instead of one after another. The
/// first error (in the given order) is returned.
fn sync_parallel<'a>(
    fds: impl Iterator<Item = (&'a OwnedFd, &'a str)>,
    err: impl Fn(&str, Errno) -> Error + Sync,
) -> Result<()> {
    const THREADS: usize = 16;
    let fds: Vec<(&OwnedFd, &str)> = fds.collect();
    if fds.len() <= 1 {
        return fds
            .iter()
            .try_for_each(|(fd, rel)| rfs::fsync(fd).map_err(|e| err(rel, e)));
    }
    let per = fds.len().div_ceil(THREADS);
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = fds
            .chunks(per)
            .map(|chunk| {
                let err = &err;
                s.spawn(move || {
                    chunk
                        .iter()
                        .try_for_each(|(fd, rel)| rfs::fsync(fd).map_err(|e| err(rel, e)))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Runtime("a sync thread panicked".into())))
            })
            .collect()
    });
    results.into_iter().collect()
}

/// `fsync` a directory so a rename in it is durable.
///
/// # Errors
/// When the directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .open(dir)
        .map_err(|e| Error::io("opening directory", dir, e))?;
    f.sync_all()
        .map_err(|e| Error::io("syncing directory", dir, e))
}

/// Returns true when `name` is a plain file name (no slash, not `.`/`..`).
pub fn is_plain_name(name: &OsStr) -> bool {
    let s = name.to_string_lossy();
    !s.is_empty() && s != "." && s != ".." && !s.contains('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, chown, symlink};

    const USER: u32 = 1000;

    fn setup() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        (dir, root)
    }

    fn user_dir(p: &Path) {
        fs::create_dir_all(p).unwrap();
        chown(p, Some(USER), Some(USER)).unwrap();
    }

    fn is_unsafe(r: Result<impl fmt::Debug>) -> String {
        match r {
            Err(e @ Error::Unsafe { .. }) => e.to_string(),
            other => panic!("expected an unsafe-path refusal, got {other:?}"),
        }
    }

    #[test]
    fn relpath_rejects_traversal() {
        assert!(RelPath::new("etc/../../x").is_err());
        assert!(RelPath::new("etc/./x").is_err());
        assert!(RelPath::new("/").is_err());
        assert!(RelPath::new("etc//x").is_err());
        assert_eq!(RelPath::new("/etc/x/").unwrap().as_str(), "etc/x");
        assert_eq!(RelPath::new("etc/x").unwrap().to_string(), "/etc/x");
    }

    #[test]
    fn absolute_symlinks_stay_inside_the_root() {
        let (dir, root) = setup();
        fs::create_dir_all(dir.path().join("real")).unwrap();
        symlink("/real", dir.path().join("etc")).unwrap();
        symlink("../../../../../outside", dir.path().join("real/up")).unwrap();
        let p = root.resolve(&RelPath::lit("etc/file"));
        assert_eq!(p, root.path().join("real/file"));
        let p = root.resolve(&RelPath::lit("etc/up/x"));
        assert_eq!(p, root.path().join("outside/x"));
        // Reads and writes see the same: the link targets are re-based on the root.
        fs::create_dir_all(dir.path().join("outside")).unwrap();
        fs::write(dir.path().join("outside/x"), "inside").unwrap();
        assert_eq!(
            root.read_string(&RelPath::lit("etc/up/x"))
                .unwrap()
                .as_deref(),
            Some("inside")
        );
        root.write_atomic(&RelPath::lit("etc/new"), b"n", Perms::root(0o644))
            .unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("real/new")).unwrap(),
            "n"
        );
    }

    #[test]
    fn links_out_of_the_root_never_reach_the_host() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "host").unwrap();
        let (dir, root) = setup();
        let abs = outside.path().display().to_string();
        symlink(&abs, dir.path().join("out")).unwrap();
        symlink(format!("{abs}/secret"), dir.path().join("sec")).unwrap();
        symlink("../../../../../../../..", dir.path().join("up")).unwrap();
        let up = RelPath::new(&format!("up/{}/secret", abs.trim_start_matches('/'))).unwrap();
        for p in [RelPath::lit("out/secret"), RelPath::lit("sec"), up.clone()] {
            assert_eq!(root.read(&p).unwrap(), None, "{p}");
            assert!(!root.exists(&p), "{p}");
        }
        assert_eq!(root.entry(&up).unwrap(), Entry::Absent);
        // A write through such a link needs the path inside the root: it fails there.
        assert!(
            root.write_atomic(&RelPath::lit("out/secret"), b"x", Perms::root(0o644))
                .is_err()
        );
        assert!(root.write_atomic(&up, b"x", Perms::root(0o644)).is_err());
        assert_eq!(
            fs::read_to_string(outside.path().join("secret")).unwrap(),
            "host"
        );
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_user_space_walk_agrees_with_openat2() {
        let (dir, root) = setup();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        fs::write(dir.path().join("a/b/f"), "x").unwrap();
        symlink("/a", dir.path().join("l")).unwrap();
        symlink("../../../a/b/f", dir.path().join("a/b/rel")).unwrap();
        for p in ["l/b/f", "l/b/rel", "a/b/rel"] {
            let w = root.walk(p, true, false).unwrap();
            let st =
                rfs::statat(&w.dir, w.name.unwrap().as_str(), AtFlags::SYMLINK_NOFOLLOW).unwrap();
            let direct = rfs::fstat(root.open_beneath(p, OFlags::PATH).unwrap()).unwrap();
            assert!(same_object(&st, &direct), "{p}");
        }
    }

    #[test]
    fn without_openat2_the_user_space_walk_keeps_the_same_rules() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "host").unwrap();
        let (dir, root) = setup();
        symlink(outside.path(), dir.path().join("out")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        symlink("b", dir.path().join("a")).unwrap();
        nix::unistd::mkfifo(
            &dir.path().join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        // Other tests may run meanwhile: they must see the same results either way.
        HAVE_OPENAT2.store(false, Ordering::Relaxed);
        let out = root.read(&RelPath::lit("out/secret"));
        let lp = root.read(&RelPath::lit("a/x"));
        let fifo = root.read(&RelPath::lit("fifo"));
        HAVE_OPENAT2.store(true, Ordering::Relaxed);
        assert_eq!(out.unwrap(), None);
        assert!(lp.unwrap_err().to_string().contains("too many levels"));
        assert!(fifo.unwrap_err().to_string().contains("FIFO"));
    }

    #[test]
    fn symlink_loops_and_long_chains_are_a_clear_error() {
        let (dir, root) = setup();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        fs::create_dir(dir.path().join("real")).unwrap();
        for i in 0..45 {
            let next = if i == 44 {
                "real".to_string()
            } else {
                format!("c{}", i + 1)
            };
            symlink(next, dir.path().join(format!("c{i}"))).unwrap();
        }
        for p in ["a/x", "c0/x"] {
            let rel = RelPath::new(p).unwrap();
            let e = root.read(&rel).unwrap_err().to_string();
            assert!(e.contains("too many levels of symbolic links"), "{e}");
            let e = root
                .write_atomic(&rel, b"x", Perms::root(0o644))
                .unwrap_err()
                .to_string();
            assert!(e.contains("too many levels of symbolic links"), "{e}");
            assert!(root.entry(&rel).is_err());
            assert_eq!(
                root.resolve_follow(&rel),
                PathBuf::from("/dev/null/bollwerk-too-many-symlinks")
            );
        }
        assert!(
            fs::read_dir(dir.path().join("real"))
                .unwrap()
                .next()
                .is_none()
        );
        // 40 links are fine.
        symlink("c6", dir.path().join("ok")).unwrap();
        assert!(root.exists(&RelPath::lit("ok")));
    }

    #[test]
    fn fifos_and_devices_are_never_read_or_waited_on() {
        let (dir, root) = setup();
        nix::unistd::mkfifo(
            &dir.path().join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        let rel = RelPath::lit("fifo");
        let e = root.read(&rel).unwrap_err().to_string();
        assert!(e.contains("FIFO"), "{e}");
        assert_eq!(root.entry(&rel).unwrap(), Entry::Other);
        let e = root
            .set_perms(&rel, Perms::root(0o600))
            .unwrap_err()
            .to_string();
        assert!(e.contains("FIFO"), "{e}");
        // /dev/null as a device node inside the root, when the kernel lets us make one.
        if rfs::mknodat(
            &*root.dir,
            "null",
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .is_ok()
        {
            let e = root.read(&RelPath::lit("null")).unwrap_err().to_string();
            assert!(e.contains("character device"), "{e}");
        }
    }

    #[test]
    fn reads_have_a_size_limit() {
        let (dir, root) = setup();
        fs::write(dir.path().join("big"), "0123456789").unwrap();
        let rel = RelPath::lit("big");
        assert_eq!(root.read_limited(&rel, 10).unwrap().unwrap().len(), 10);
        let e = root.read_limited(&rel, 9).unwrap_err().to_string();
        assert!(e.contains("larger than the limit"), "{e}");
    }

    #[test]
    fn atomic_write_sets_mode_and_replaces_symlinks() {
        let (dir, root) = setup();
        fs::write(dir.path().join("victim"), "keep").unwrap();
        symlink("victim", dir.path().join("f")).unwrap();
        root.write_atomic(&RelPath::lit("f"), b"new", Perms::root(0o640))
            .unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("victim")).unwrap(),
            "keep"
        );
        assert_eq!(fs::read_to_string(dir.path().join("f")).unwrap(), "new");
        match root.entry(&RelPath::lit("f")).unwrap() {
            Entry::File { perms, size, .. } => {
                assert_eq!(perms.mode, 0o640);
                assert_eq!(size, 3);
            }
            other => panic!("unexpected {other:?}"),
        }
        // No temp files left behind, also when a staged write is dropped.
        drop(
            root.stage(&RelPath::lit("g"), b"x", Perms::root(0o600))
                .unwrap(),
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".bollwerk-"))
            .collect();
        assert!(leftovers.is_empty());
        assert!(!dir.path().join("g").exists());
    }

    #[test]
    fn root_files_are_never_changed_through_another_users_paths() {
        let (dir, root) = setup();
        let d = dir.path();
        fs::create_dir_all(d.join("etc/apt/apt.conf.d")).unwrap();
        user_dir(&d.join("etc/postgresql/15/main"));
        // The cluster owner replaced conf.d by links out of its directory.
        let confd = d.join("etc/postgresql/15/main/conf.d");
        symlink("/etc/apt/apt.conf.d", &confd).unwrap();
        rustix::fs::chownat(
            &*root.dir,
            "etc/postgresql/15/main/conf.d",
            uid(USER),
            gid(USER),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        let pg = Perms {
            mode: 0o644,
            uid: USER,
            gid: USER,
        };
        let rel = RelPath::lit("etc/postgresql/15/main/conf.d/bollwerk.conf");
        let e = is_unsafe(root.write_atomic(&rel, b"x", pg));
        assert!(e.contains("symlink owned by uid 1000"), "{e}");
        fs::remove_file(&confd).unwrap();
        symlink("../../../apt/apt.conf.d", &confd).unwrap();
        is_unsafe(root.write_atomic(&rel, b"x", pg));
        is_unsafe(root.read_safe(&rel, 100));
        is_unsafe(root.list_dir_safe(&RelPath::lit("etc/postgresql/15/main/conf.d")));
        assert!(
            fs::read_dir(d.join("etc/apt/apt.conf.d"))
                .unwrap()
                .next()
                .is_none()
        );
        // A root-owned file is never created in (or changed inside) a user's directory.
        fs::remove_file(&confd).unwrap();
        let root_file = RelPath::lit("etc/postgresql/15/main/root.conf");
        let e = is_unsafe(root.write_atomic(&root_file, b"x", Perms::root(0o644)));
        assert!(e.contains("uid 1000"), "{e}");
        fs::write(d.join("etc/postgresql/15/main/hard"), "root's").unwrap();
        is_unsafe(root.set_perms(&RelPath::lit("etc/postgresql/15/main/hard"), pg));
        is_unsafe(root.create_dir(
            &RelPath::lit("etc/postgresql/15/main/sub"),
            Perms::root(0o755),
        ));
        // The user's own files in the user's directory are fine.
        root.write_atomic(&RelPath::lit("etc/postgresql/15/main/mine.conf"), b"ok", pg)
            .unwrap();
        assert_eq!(
            fs::metadata(d.join("etc/postgresql/15/main/mine.conf"))
                .unwrap()
                .uid(),
            USER
        );
        // A non-root-owned etc/sudoers.d: no root-owned drop-in goes in there.
        user_dir(&d.join("etc/sudoers.d"));
        is_unsafe(root.write_atomic(&RelPath::lit("etc/sudoers.d/x"), b"x", Perms::root(0o440)));
        assert!(
            fs::read_dir(d.join("etc/sudoers.d"))
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn user_files_are_written_without_following_the_users_links() {
        let outside = tempfile::tempdir().unwrap();
        let (dir, root) = setup();
        let d = dir.path();
        fs::create_dir_all(d.join("home")).unwrap();
        user_dir(&d.join("home/alice"));
        fs::create_dir_all(d.join("etc")).unwrap();
        let ssh = d.join("home/alice/.ssh");
        let alice = Perms {
            mode: 0o600,
            uid: USER,
            gid: USER,
        };
        let ak = RelPath::lit("home/alice/.ssh/authorized_keys");
        for target in ["/etc", outside.path().to_str().unwrap(), "../../etc"] {
            let _ = fs::remove_file(&ssh);
            symlink(target, &ssh).unwrap();
            rfs::chownat(
                &*root.dir,
                "home/alice/.ssh",
                uid(USER),
                gid(USER),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .unwrap();
            is_unsafe(root.write_atomic(&ak, b"key", alice));
            is_unsafe(root.create_dir(&RelPath::lit("home/alice/.ssh/x"), alice));
        }
        assert!(fs::read_dir(d.join("etc")).unwrap().next().is_none());
        assert!(fs::read_dir(outside.path()).unwrap().next().is_none());
        // A real .ssh owned by alice: the key file replaces a link alice put there.
        fs::remove_file(&ssh).unwrap();
        user_dir(&ssh);
        symlink("/etc/passwd", ssh.join("authorized_keys")).unwrap();
        root.write_atomic(&ak, b"key", alice).unwrap();
        assert_eq!(
            fs::read_to_string(ssh.join("authorized_keys")).unwrap(),
            "key"
        );
        assert!(!d.join("etc/passwd").exists());
        // set_perms on a link is refused; on the file it acts on the descriptor.
        symlink("authorized_keys", ssh.join("l")).unwrap();
        assert!(
            root.set_perms(&RelPath::lit("home/alice/.ssh/l"), alice)
                .is_err()
        );
        root.set_perms(
            &ak,
            Perms {
                mode: 0o644,
                ..alice
            },
        )
        .unwrap();
        assert_eq!(
            fs::metadata(ssh.join("authorized_keys")).unwrap().mode() & 0o777,
            0o644
        );
    }

    #[test]
    fn remove_all_does_not_follow_links() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("keep"), "x").unwrap();
        let (dir, root) = setup();
        fs::create_dir_all(dir.path().join("t/a/b")).unwrap();
        fs::write(dir.path().join("t/a/b/f"), "x").unwrap();
        symlink(outside.path(), dir.path().join("t/a/out")).unwrap();
        root.remove_all(&RelPath::lit("t")).unwrap();
        assert!(!dir.path().join("t").exists());
        assert!(outside.path().join("keep").exists());
        root.remove_all(&RelPath::lit("t")).unwrap();
    }

    #[test]
    fn create_dir_new_refuses_a_planted_name() {
        let (dir, root) = setup();
        fs::create_dir(dir.path().join("tmp")).unwrap();
        symlink("/etc", dir.path().join("tmp/x")).unwrap();
        assert!(
            root.create_dir_new(&RelPath::lit("tmp/x"), Perms::root(0o700))
                .is_err()
        );
        assert!(
            root.create_dir(&RelPath::lit("tmp/x"), Perms::root(0o700))
                .is_err()
        );
        root.create_dir_new(&RelPath::lit("tmp/y"), Perms::root(0o710))
            .unwrap();
        assert_eq!(
            fs::metadata(dir.path().join("tmp/y")).unwrap().mode() & 0o777,
            0o710
        );
    }
}
