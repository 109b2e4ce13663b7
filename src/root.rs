//! The target root: every file bollwerk reads or writes goes through [`Root`].
//!
//! Paths are [`RelPath`]s relative to the root (`etc/ssh/sshd_config`), never absolute host paths.
//! Symlinks inside the root are resolved the way a `chroot` would see them (an absolute link target
//! is re-based on the root), so a link can never lead a write out of the target. Writes are atomic:
//! temp file in the target directory, mode and owner set on the open file, `fsync`, `rename`, then
//! `fsync` of the directory.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, fchown, lchown, symlink};
use std::path::{Component, Path, PathBuf};

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

/// The target root directory.
#[derive(Debug, Clone)]
pub struct Root {
    path: PathBuf,
}

const MAX_SYMLINK_HOPS: usize = 40;

impl Root {
    /// Opens a root directory; it must exist and be a directory.
    ///
    /// # Errors
    /// When the directory does not exist or cannot be canonicalised.
    pub fn new(path: impl AsRef<Path>) -> Result<Root> {
        let path = path.as_ref();
        let canonical = fs::canonicalize(path)
            .map_err(|e| Error::Usage(format!("root {}: {e}", path.display())))?;
        if !canonical.is_dir() {
            return Err(Error::Usage(format!(
                "root {} is not a directory",
                path.display()
            )));
        }
        Ok(Root { path: canonical })
    }

    /// The root's path on the host.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the root is the running system's `/`.
    pub fn is_host(&self) -> bool {
        self.path == Path::new("/")
    }

    /// Resolves `rel` to a host path, following symlinks in every component but the last as a
    /// `chroot` would (absolute targets are re-based on the root, `..` never climbs above it).
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
                && hops < MAX_SYMLINK_HOPS
                && let Ok(target) = fs::read_link(&candidate)
            {
                hops += 1;
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

    /// Reads a file, following symlinks within the root. `None` when it does not exist.
    ///
    /// # Errors
    /// Any I/O error other than "not found".
    pub fn read(&self, rel: &RelPath) -> Result<Option<Vec<u8>>> {
        let p = self.resolve_follow(rel);
        match fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(20) => Ok(None),
            Err(e) => Err(Error::io("reading", p, e)),
        }
    }

    /// Reads a file as UTF-8 (lossily). `None` when it does not exist.
    ///
    /// # Errors
    /// Any I/O error other than "not found".
    pub fn read_string(&self, rel: &RelPath) -> Result<Option<String>> {
        Ok(self
            .read(rel)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// True when something exists at `rel` (following symlinks within the root).
    pub fn exists(&self, rel: &RelPath) -> bool {
        fs::symlink_metadata(self.resolve_follow(rel)).is_ok()
    }

    /// `lstat` of `rel`, with the content hash for regular files.
    ///
    /// # Errors
    /// Any I/O error other than "not found".
    pub fn entry(&self, rel: &RelPath) -> Result<Entry> {
        let p = self.resolve(rel);
        let md = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(20) => {
                return Ok(Entry::Absent);
            }
            Err(e) => return Err(Error::io("inspecting", p, e)),
        };
        let perms = Perms {
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
        };
        let ft = md.file_type();
        Ok(if ft.is_file() {
            let mut f = File::open(&p).map_err(|e| Error::io("reading", &p, e))?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = f.read(&mut buf).map_err(|e| Error::io("reading", &p, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            Entry::File {
                sha256: hex::encode(hasher.finalize()),
                size: md.len(),
                perms,
            }
        } else if ft.is_dir() {
            Entry::Dir { perms }
        } else if ft.is_symlink() {
            let target = fs::read_link(&p).map_err(|e| Error::io("reading link", &p, e))?;
            Entry::Symlink {
                target: target.to_string_lossy().into_owned(),
                uid: md.uid(),
                gid: md.gid(),
            }
        } else {
            Entry::Other
        })
    }

    /// Lists the names in a directory (sorted). Empty when the directory does not exist.
    ///
    /// # Errors
    /// Any I/O error other than "not found".
    pub fn list_dir(&self, rel: &RelPath) -> Result<Vec<String>> {
        let p = self.resolve_follow(rel);
        let rd = match fs::read_dir(&p) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(20) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(Error::io("listing", p, e)),
        };
        let mut names = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| Error::io("listing", &p, e))?;
            names.push(ent.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    /// Writes `bytes` to `rel` atomically with the given mode and owner. Parent directories must
    /// exist. A symlink at `rel` is replaced, never followed.
    ///
    /// # Errors
    /// Any I/O error; on error the old file is untouched.
    pub fn write_atomic(&self, rel: &RelPath, bytes: &[u8], perms: Perms) -> Result<()> {
        let staged = self.stage(rel, bytes, perms)?;
        staged.commit()
    }

    /// Writes `bytes` to a temp file next to `rel` (same directory, so the final rename is
    /// atomic) with mode and owner set and data synced, without replacing `rel` yet.
    ///
    /// # Errors
    /// Any I/O error.
    pub fn stage(&self, rel: &RelPath, bytes: &[u8], perms: Perms) -> Result<Staged> {
        let target = self.resolve(rel);
        let dir = target
            .parent()
            .ok_or_else(|| Error::Runtime(format!("{rel} has no parent directory")))?
            .to_path_buf();
        let mut tmp = tempfile::Builder::new()
            .prefix(".bollwerk-")
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(|e| Error::io("creating temp file in", &dir, e))?;
        tmp.write_all(bytes)
            .map_err(|e| Error::io("writing", tmp.path(), e))?;
        let f = tmp.as_file();
        fchown(f, Some(perms.uid), Some(perms.gid))
            .map_err(|e| Error::io("setting owner of", tmp.path(), e))?;
        f.set_permissions(fs::Permissions::from_mode(perms.mode))
            .map_err(|e| Error::io("setting mode of", tmp.path(), e))?;
        f.sync_all()
            .map_err(|e| Error::io("syncing", tmp.path(), e))?;
        Ok(Staged {
            tmp: tmp.into_temp_path(),
            target,
            dir,
        })
    }

    /// Replaces whatever is at `rel` by a symlink to `target`, atomically.
    ///
    /// # Errors
    /// Any I/O error.
    pub fn symlink_atomic(&self, rel: &RelPath, target: &str) -> Result<()> {
        let dest = self.resolve(rel);
        let dir = dest
            .parent()
            .ok_or_else(|| Error::Runtime(format!("{rel} has no parent directory")))?
            .to_path_buf();
        let tmp = dir.join(format!(
            ".bollwerk-{}-{}.lnk",
            std::process::id(),
            rel.file_name()
        ));
        let _ = fs::remove_file(&tmp);
        symlink(target, &tmp).map_err(|e| Error::io("creating symlink", &tmp, e))?;
        fs::rename(&tmp, &dest).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io("renaming symlink onto", &dest, e)
        })?;
        sync_dir(&dir)
    }

    /// Sets owner of a symlink itself (not its target).
    ///
    /// # Errors
    /// Any I/O error.
    pub fn lchown(&self, rel: &RelPath, uid: u32, gid: u32) -> Result<()> {
        let p = self.resolve(rel);
        lchown(&p, Some(uid), Some(gid)).map_err(|e| Error::io("setting owner of", p, e))
    }

    /// Creates a directory (the parent must exist) with mode and owner. Succeeds when a
    /// directory already exists (its permissions are then set).
    ///
    /// # Errors
    /// Any I/O error, or when a non-directory is in the way.
    pub fn create_dir(&self, rel: &RelPath, perms: Perms) -> Result<()> {
        let p = self.resolve(rel);
        match fs::create_dir(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists && p.is_dir() => {}
            Err(e) => return Err(Error::io("creating directory", p, e)),
        }
        self.set_perms(rel, perms)?;
        if let Some(parent) = p.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    }

    /// Sets mode and owner of an existing path (no symlink following at the last component).
    ///
    /// # Errors
    /// Any I/O error.
    pub fn set_perms(&self, rel: &RelPath, perms: Perms) -> Result<()> {
        let p = self.resolve(rel);
        let md = fs::symlink_metadata(&p).map_err(|e| Error::io("inspecting", &p, e))?;
        if md.file_type().is_symlink() {
            return Err(Error::Runtime(format!(
                "refusing to change permissions through the symlink {rel}"
            )));
        }
        lchown(&p, Some(perms.uid), Some(perms.gid))
            .map_err(|e| Error::io("setting owner of", &p, e))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(perms.mode))
            .map_err(|e| Error::io("setting mode of", &p, e))
    }

    /// Removes a file or symlink (or an empty directory). Absent is fine.
    ///
    /// # Errors
    /// Any I/O error other than "not found".
    pub fn remove(&self, rel: &RelPath) -> Result<()> {
        let p = self.resolve(rel);
        let res = match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => fs::remove_dir(&p),
            Ok(_) => fs::remove_file(&p),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => Err(e),
        };
        res.map_err(|e| Error::io("removing", &p, e))?;
        if let Some(parent) = p.parent() {
            sync_dir(parent)?;
        }
        Ok(())
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

/// A temp file written next to its target, not yet renamed into place. Dropping it removes the
/// temp file.
#[derive(Debug)]
pub struct Staged {
    tmp: tempfile::TempPath,
    target: PathBuf,
    dir: PathBuf,
}

impl Staged {
    /// The temp file's host path (for validators that read the candidate).
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Renames the temp file over the target and syncs the directory.
    ///
    /// # Errors
    /// When the rename or the directory sync fails.
    pub fn commit(self) -> Result<()> {
        let Staged { tmp, target, dir } = self;
        tmp.persist(&target)
            .map_err(|e| Error::io("renaming into place", &target, e.error))?;
        sync_dir(&dir)
    }
}

/// `fsync` a directory so a rename in it is durable.
///
/// # Errors
/// When the directory cannot be opened or synced.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let f = OpenOptions::new()
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
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        fs::create_dir_all(dir.path().join("real")).unwrap();
        symlink("/real", dir.path().join("etc")).unwrap();
        symlink("../../../../../outside", dir.path().join("real/up")).unwrap();
        let p = root.resolve(&RelPath::lit("etc/file"));
        assert_eq!(p, root.path().join("real/file"));
        let p = root.resolve(&RelPath::lit("etc/up/x"));
        assert_eq!(p, root.path().join("outside/x"));
    }

    #[test]
    fn atomic_write_sets_mode_and_replaces_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
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
        // No temp files left behind.
        let names = root.list_dir(&RelPath::lit("f").parent().unwrap_or(RelPath::lit("f")));
        assert!(names.is_ok());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".bollwerk-"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
