//! Tree tests: copy a fixture root from `tests/fixtures/<name>/` into a temp dir, run bollwerk
//! commands in-process against it with a [`FakeRunner`] (no real tools needed), and compare
//! trees.
//!
//! Fixtures cannot carry owners in git: `tests/fixtures/<name>/.perms` lists
//! `path mode uid gid` lines applied after copying. Empty directories carry a `.gitkeep`.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bollwerk::ExitStatus;
use bollwerk::cli::Cli;
use bollwerk::exec::FakeRunner;
use clap::Parser;

/// Algorithm lists as the Debian 12 OpenSSH 9.2 client prints them (`ssh -Q …`).
pub const KEX_92: &str = "diffie-hellman-group1-sha1\ndiffie-hellman-group14-sha1\ndiffie-hellman-group14-sha256\ndiffie-hellman-group16-sha512\ndiffie-hellman-group18-sha512\ndiffie-hellman-group-exchange-sha1\ndiffie-hellman-group-exchange-sha256\necdh-sha2-nistp256\necdh-sha2-nistp384\necdh-sha2-nistp521\ncurve25519-sha256\ncurve25519-sha256@libssh.org\nsntrup761x25519-sha512@openssh.com\n";
/// Ciphers of OpenSSH 9.2.
pub const CIPHERS_92: &str = "3des-cbc\naes128-cbc\naes192-cbc\naes256-cbc\naes128-ctr\naes192-ctr\naes256-ctr\naes128-gcm@openssh.com\naes256-gcm@openssh.com\nchacha20-poly1305@openssh.com\n";
/// MACs of OpenSSH 9.2.
pub const MACS_92: &str = "hmac-sha1\nhmac-sha1-96\nhmac-sha2-256\nhmac-sha2-512\nhmac-md5\nhmac-md5-96\numac-64@openssh.com\numac-128@openssh.com\nhmac-sha1-etm@openssh.com\nhmac-sha1-96-etm@openssh.com\nhmac-sha2-256-etm@openssh.com\nhmac-sha2-512-etm@openssh.com\nhmac-md5-etm@openssh.com\nhmac-md5-96-etm@openssh.com\numac-64-etm@openssh.com\numac-128-etm@openssh.com\n";
/// Host key algorithms of OpenSSH 9.2.
pub const HOSTKEY_92: &str = "ssh-ed25519\nssh-ed25519-cert-v01@openssh.com\nsk-ssh-ed25519@openssh.com\nsk-ssh-ed25519-cert-v01@openssh.com\necdsa-sha2-nistp256\nrsa-sha2-256\nrsa-sha2-256-cert-v01@openssh.com\nrsa-sha2-512\nrsa-sha2-512-cert-v01@openssh.com\nssh-rsa\n";

/// A fake runner that answers like a Debian 12 root: `ssh -Q` lists, validators succeed.
pub fn fake_runner() -> FakeRunner {
    let f = FakeRunner::new();
    f.respond("/usr/bin/ssh -Q kex", 0, KEX_92)
        .respond("/usr/bin/ssh -Q cipher", 0, CIPHERS_92)
        .respond("/usr/bin/ssh -Q mac", 0, MACS_92)
        .respond("/usr/bin/ssh -Q HostKeyAlgorithms", 0, HOSTKEY_92)
        .respond_with("/usr/sbin/sshd -T", fake_sshd_t);
    f
}

/// A stand-in for `sshd -T` in tree tests: prints the directives of bollwerk's drop-in (which
/// sorts first, so its values are the effective ones) lower-cased, as sshd does. System tests
/// use the real `sshd -T`.
pub fn fake_sshd_t(
    root: &bollwerk::root::Root,
    _cmd: &bollwerk::exec::Cmd,
) -> bollwerk::exec::Output {
    let text = std::fs::read_to_string(root.path().join("etc/ssh/sshd_config.d/00-bollwerk.conf"))
        .unwrap_or_default();
    let mut stdout = String::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        stdout.push_str(&format!("{} {v}\n", k.to_ascii_lowercase()));
    }
    bollwerk::exec::Output {
        code: 0,
        stdout,
        stderr: String::new(),
    }
}

/// The repository's fixture directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A temporary copy of a fixture root.
pub struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    /// Copies `tests/fixtures/<name>/` (symlinks kept, `.gitkeep` dropped, `.perms` applied).
    pub fn fixture(name: &str) -> Tree {
        let dir = tempfile::Builder::new()
            .prefix("bollwerk-tree-")
            .tempdir()
            .expect("tempdir");
        let src = fixtures().join(name);
        assert!(src.is_dir(), "no fixture {}", src.display());
        copy_tree(&src, dir.path());
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let perms = src.join(".perms");
        if let Ok(text) = std::fs::read_to_string(&perms) {
            for line in text
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            {
                let w: Vec<&str> = line.split_whitespace().collect();
                let p = dir.path().join(w[0]);
                let mode = u32::from_str_radix(w[1], 8).unwrap();
                std::os::unix::fs::lchown(
                    &p,
                    Some(w[2].parse().unwrap()),
                    Some(w[3].parse().unwrap()),
                )
                .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
        let _ = std::fs::remove_file(dir.path().join(".perms"));
        Tree { dir }
    }

    /// The root's host path.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A host path inside the root (no symlink resolution: fixtures use relative links only).
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel.trim_start_matches('/'))
    }

    /// Reads a file of the root.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
    }

    /// Writes a file into the root (parents created).
    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// True when the path exists (without following a final symlink).
    pub fn exists(&self, rel: &str) -> bool {
        std::fs::symlink_metadata(self.path(rel)).is_ok()
    }

    /// `(mode, uid, gid)` of a path.
    pub fn meta(&self, rel: &str) -> (u32, u32, u32) {
        let m = std::fs::symlink_metadata(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        (m.mode() & 0o7777, m.uid(), m.gid())
    }

    /// Every path with kind, mode, owner, content hash (or link target) and mtime, excluding
    /// bollwerk's own state directory.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        self.snapshot_with_mtime(false)
    }

    /// Like [`Tree::snapshot`], optionally including mtimes (to prove "nothing was touched").
    pub fn snapshot_with_mtime(&self, mtime: bool) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        walk(self.dir.path(), self.dir.path(), mtime, &mut out);
        out.retain(|k, _| !k.starts_with("var/lib/bollwerk"));
        out
    }

    /// Runs `bollwerk <args> --root <this root>` in-process; returns (exit status, stdout).
    pub fn run(&self, runner: &FakeRunner, args: &[&str]) -> (ExitStatus, String) {
        let mut argv: Vec<String> = vec!["bollwerk".into()];
        argv.extend(args.iter().map(|s| s.to_string()));
        argv.push("--root".into());
        argv.push(self.root().to_string_lossy().into_owned());
        let cli =
            Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("bad test args {argv:?}: {e}"));
        let mut out = Vec::new();
        let status = bollwerk::app::run(&cli, runner, &mut out);
        (status, String::from_utf8_lossy(&out).into_owned())
    }

    /// Writes a profile file next to (not inside) the root and returns its path.
    pub fn profile(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().with_extension(format!("{name}.toml"));
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        for ext in ["site.toml", "bad.toml", "a.toml", "b.toml"] {
            let _ = std::fs::remove_file(self.dir.path().with_extension(ext));
        }
    }
}

fn copy_tree(src: &Path, dst: &Path) {
    for ent in std::fs::read_dir(src).unwrap() {
        let ent = ent.unwrap();
        let name = ent.file_name();
        if name == ".gitkeep" {
            continue;
        }
        let s = ent.path();
        let d = dst.join(&name);
        let ft = ent.file_type().unwrap();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&s).unwrap(), &d).unwrap();
        } else if ft.is_dir() {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
            copy_tree(&s, &d);
        } else {
            std::fs::copy(&s, &d).unwrap();
            let exec = std::fs::metadata(&s).unwrap().mode() & 0o111 != 0;
            std::fs::set_permissions(
                &d,
                std::fs::Permissions::from_mode(if exec { 0o755 } else { 0o644 }),
            )
            .unwrap();
        }
    }
}

fn walk(base: &Path, dir: &Path, mtime: bool, out: &mut BTreeMap<String, String>) {
    let mut ents: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    ents.sort_by_key(|e| e.file_name());
    for e in ents {
        let p = e.path();
        let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
        let m = std::fs::symlink_metadata(&p).unwrap();
        let t = if mtime {
            format!(" mtime={}.{}", m.mtime(), m.mtime_nsec())
        } else {
            String::new()
        };
        let desc = if m.file_type().is_symlink() {
            format!("link -> {}", std::fs::read_link(&p).unwrap().display())
        } else if m.is_dir() {
            format!("dir {:04o} {}:{}{t}", m.mode() & 0o7777, m.uid(), m.gid())
        } else {
            let bytes = std::fs::read(&p).unwrap();
            format!(
                "file {:04o} {}:{} {}{t}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                bollwerk::root::sha256_hex(&bytes)
            )
        };
        out.insert(rel, desc);
        if m.is_dir() {
            walk(base, &p, mtime, out);
        }
    }
}
