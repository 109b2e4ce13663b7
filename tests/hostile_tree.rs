//! Tree tests of a hostile target root: paths that users other than root control, symlink
//! loops and chains, links pointing out of the root, FIFOs and devices where files are
//! expected, and `~/.ssh` swapped between plan and write. Every case is refused or handled
//! safely, and a tripwire directory outside the root (a sibling temp dir with files) keeps the
//! same tree hash (content, mode, owner) before and after.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, lchown, symlink};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use bollwerk::ExitStatus;
use bollwerk::exec::{Cmd, FakeRunner, Output};
use common::tree::{Tree, fake_runner};
use sha2::{Digest, Sha256};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPci/6iPPKNm3TqnlFNu0Zy6jtqtz5kw0YO3RjFH01v alice@laptop";

/// The uid the users module gives the first new account (and "another user" of the corpus).
const USER: u32 = 1000;
/// `postgres` in the debian12-services fixture.
const PG_UID: u32 = 101;
const PG_GID: u32 = 109;

/// An admin with a key (the lockout guard wants one) and passwordless sudo: writes
/// `etc/passwd`, `home/deploy/.ssh/authorized_keys` and a drop-in in `etc/sudoers.d`.
fn site() -> String {
    format!(
        "[[users]]\nname = \"deploy\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{KEY}\"]\n"
    )
}

const PG: &str = "[postgres]\nworkload = \"web\"\nmemory = \"auto\"\ncpus = \"auto\"\nstorage = \"ssd\"\nmax_connections = 200\nlisten_addresses = \"localhost\"\n";

/// A directory outside the root with a few files; its hash must never change.
struct Tripwire {
    dir: tempfile::TempDir,
}

impl Tripwire {
    fn new() -> Tripwire {
        let dir = tempfile::Builder::new()
            .prefix("bollwerk-tripwire-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("keep"), "tripwire\n").unwrap();
        std::fs::write(dir.path().join("sub/keys"), "not yours\n").unwrap();
        std::fs::write(dir.path().join("passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        Tripwire { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The path below `/`, to build `../../..` links that would climb out of a naive root.
    fn climbing(&self) -> String {
        format!(
            "{}{}",
            "../".repeat(30),
            self.path().display().to_string().trim_start_matches('/')
        )
    }

    /// Content, kind, mode and owner of everything below the directory (and of itself).
    fn hash(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        hash_tree(self.path(), self.path(), &mut out);
        out
    }
}

fn hash_tree(base: &Path, p: &Path, out: &mut BTreeMap<String, String>) {
    let m = std::fs::symlink_metadata(p).unwrap();
    let rel = p.strip_prefix(base).unwrap().display().to_string();
    let what = if m.file_type().is_symlink() {
        format!("link {}", std::fs::read_link(p).unwrap().display())
    } else if m.is_file() {
        format!(
            "file {}",
            hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
        )
    } else if m.is_dir() {
        let mut names: Vec<PathBuf> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for n in names {
            hash_tree(base, &n, out);
        }
        "dir".into()
    } else {
        "special".into()
    };
    out.insert(
        rel,
        format!("{what} {:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid()),
    );
}

/// Runs the CLI in a thread and aborts the test binary when it does not finish in `secs` (a
/// FIFO or device must never make bollwerk wait; a hang would otherwise stall the whole run).
fn run_with_timeout(
    t: &Tree,
    runner: &FakeRunner,
    args: &[&str],
    secs: u64,
) -> (ExitStatus, String) {
    let (tx, rx) = mpsc::channel();
    let mut argv: Vec<String> = vec!["bollwerk".into()];
    argv.extend(args.iter().map(|s| s.to_string()));
    argv.push("--root".into());
    argv.push(t.root().display().to_string());
    std::thread::scope(|s| {
        let argv = &argv;
        let builder = std::thread::Builder::new().name(apply_thread(t));
        let _ = builder.spawn_scoped(s, move || {
            let cli = <bollwerk::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
            let mut out = Vec::new();
            let res = bollwerk::app::try_run(&cli, runner, &mut out);
            let mut text = String::from_utf8_lossy(&out).into_owned();
            let st = match res {
                Ok(st) => st,
                Err(e) => {
                    text.push_str(&format!("\nerror: {e}"));
                    let mut src = std::error::Error::source(&e);
                    while let Some(s) = src {
                        text.push_str(&format!("\n  caused by: {s}"));
                        src = s.source();
                    }
                    e.exit_status()
                }
            };
            let _ = tx.send((st, text));
        });
        match rx.recv_timeout(Duration::from_secs(secs)) {
            Ok(r) => r,
            Err(_) => {
                eprintln!("bollwerk {argv:?} did not finish within {secs}s: it hangs");
                std::process::abort();
            }
        }
    })
}

/// The name of the thread that runs bollwerk on `t` (fail point hooks act on their own run).
fn apply_thread(t: &Tree) -> String {
    format!("bollwerk-{}", t.root().display())
}

fn set_owner(p: &Path, uid: u32, gid: u32) {
    lchown(p, Some(uid), Some(gid)).unwrap();
}

/// Runs `apply` with the profile; returns (status, stdout and the error as the CLI prints it).
fn apply(t: &Tree, runner: &FakeRunner, profile: &str) -> (ExitStatus, String) {
    let p = t.profile("site", profile);
    run_with_timeout(t, runner, &["apply", "--profile", &p], 120)
}

fn pg_runner() -> FakeRunner {
    let f = fake_runner();
    f.respond_with("/usr/sbin/runuser -u postgres", fake_postgres_c);
    f
}

/// A stand-in for `postgres -C name`: the last value in the cluster's files, as PostgreSQL
/// prints it (shared_buffers in 8 kB pages).
fn fake_postgres_c(root: &bollwerk::root::Root, cmd: &Cmd) -> Output {
    let ok = |s: String| Output {
        code: 0,
        stdout: s,
        stderr: String::new(),
    };
    let Some(i) = cmd.args.iter().position(|a| a == "-C") else {
        return ok(String::new());
    };
    let name = &cmd.args[i + 1];
    let mut v = String::new();
    for f in ["postgresql.conf", "conf.d/bollwerk.conf"] {
        let p = root.path().join("etc/postgresql/15/main").join(f);
        for l in std::fs::read_to_string(p).unwrap_or_default().lines() {
            if let Some((k, val)) = l.split('#').next().unwrap_or("").split_once('=')
                && k.trim() == name
            {
                v = val.trim().trim_matches('\'').to_string();
            }
        }
    }
    let out = match (name.as_str(), v.strip_suffix("MB"), v.strip_suffix("GB")) {
        ("shared_buffers", Some(mb), _) => (mb.parse::<u64>().unwrap() * 128).to_string(),
        ("shared_buffers", _, Some(gb)) => (gb.parse::<u64>().unwrap() * 131072).to_string(),
        _ => v,
    };
    ok(format!("{out}\n"))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_postgres_owned_conf_d_symlink_never_leads_a_write_elsewhere() {
    let trip = Tripwire::new();
    let before = trip.hash();
    for target in [
        "/etc/apt/apt.conf.d".to_string(),
        "../../../apt/apt.conf.d".to_string(),
        trip.path().join("sub").display().to_string(),
        format!("{}/sub", trip.climbing()),
    ] {
        let t = Tree::fixture("debian12-services");
        let apt_before = files_in(&t.path("etc/apt/apt.conf.d"));
        let confd = t.path("etc/postgresql/15/main/conf.d");
        std::fs::remove_dir_all(&confd).unwrap();
        symlink(&target, &confd).unwrap();
        set_owner(&confd, PG_UID, PG_GID);
        // An absolute link to the tripwire resolves inside the root: make it exist there too.
        let inside = t.path(&trip.path().join("sub").display().to_string());
        std::fs::create_dir_all(&inside).unwrap();
        let runner = pg_runner();
        let tree_before = t.snapshot();
        let (st, out) = apply(&t, &runner, &format!("{}{PG}", site()));
        assert_eq!(st, ExitStatus::Refused, "{target}: {out}");
        assert!(
            out.contains("/etc/postgresql/15/main/conf.d is a symlink owned by uid 101"),
            "{target}: {out}"
        );
        assert_eq!(t.snapshot(), tree_before, "{target}: nothing changed");
        assert_eq!(
            files_in(&t.path("etc/apt/apt.conf.d")),
            apt_before,
            "{target}"
        );
        assert!(files_in(&inside).is_empty(), "{target}");
        // The validator never copied anything through the link either.
        assert!(
            !runner.log().iter().any(|l| l.contains("postgres -C")),
            "{target}: {:?}",
            runner.log()
        );
        assert!(
            !t.snapshot()
                .keys()
                .any(|k| k.starts_with("tmp/bollwerk-pgcheck")),
            "{target}"
        );
    }
    assert_eq!(trip.hash(), before);
}

#[test]
fn the_postgres_check_copy_belongs_to_root_and_is_cleaned_up() {
    let t = Tree::fixture("debian12-services");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let runner = fake_runner();
    let s2 = seen.clone();
    runner.respond_with("/usr/sbin/runuser -u postgres", move |root, cmd| {
        // The copy the cluster owner's postgres reads: root-owned, group-readable only.
        if let Some(conf) = cmd
            .args
            .iter()
            .find_map(|a| a.strip_prefix("config_file=/tmp/bollwerk-pgcheck"))
        {
            let conf = format!("tmp/bollwerk-pgcheck{conf}");
            let dir = root.path().join(&conf);
            let dir = dir.parent().unwrap();
            for p in [
                dir.to_path_buf(),
                dir.join("postgresql.conf"),
                dir.join("conf.d"),
            ] {
                let m = std::fs::symlink_metadata(&p).unwrap();
                s2.lock()
                    .unwrap()
                    .push((m.uid(), m.gid(), m.mode() & 0o777));
            }
        }
        fake_postgres_c(root, cmd)
    });
    let (st, out) = apply(&t, &runner, &format!("{}{PG}", site()));
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        vec![(0, PG_GID, 0o750), (0, PG_GID, 0o640), (0, PG_GID, 0o750)]
    );
    assert!(
        !t.snapshot()
            .keys()
            .any(|k| k.starts_with("tmp/bollwerk-pgcheck"))
    );
}

#[test]
fn a_conf_file_symlink_of_postgres_is_not_copied_for_the_check() {
    let trip = Tripwire::new();
    let before = trip.hash();
    let t = Tree::fixture("debian12-services");
    let link = t.path("etc/postgresql/15/main/conf.d/steal.conf");
    symlink("/etc/shadow", &link).unwrap();
    set_owner(&link, PG_UID, PG_GID);
    let runner = pg_runner();
    let (st, out) = apply(&t, &runner, &format!("{}{PG}", site()));
    assert_eq!(st, ExitStatus::Refused, "{out}");
    assert!(out.contains("symlink owned by uid 101"), "{out}");
    assert!(
        !t.snapshot()
            .keys()
            .any(|k| k.starts_with("tmp/bollwerk-pgcheck"))
    );
    assert_eq!(trip.hash(), before);
}

#[test]
fn a_sudoers_d_owned_by_another_user_gets_no_root_drop_in() {
    let trip = Tripwire::new();
    let before = trip.hash();
    let t = Tree::fixture("debian12");
    set_owner(&t.path("etc/sudoers.d"), USER, USER);
    let tree_before = t.snapshot();
    let (st, out) = apply(&t, &fake_runner(), &site());
    // Refused before anything is changed (the write itself would refuse again).
    assert_eq!(st, ExitStatus::Refused, "{out}");
    assert!(
        out.contains("refusing changing /etc/sudoers.d/bollwerk: it would be owned by uid 0"),
        "{out}"
    );
    assert_eq!(t.snapshot(), tree_before, "nothing changed");
    assert!(out.contains("uid 1000"), "{out}");
    assert_eq!(files_in(&t.path("etc/sudoers.d")), vec!["README"]);
    assert_eq!(trip.hash(), before);
}

#[test]
fn symlink_loops_and_long_chains_are_a_clear_error() {
    let trip = Tripwire::new();
    let before = trip.hash();
    for case in ["loop", "chain"] {
        let t = Tree::fixture("debian12");
        let d = t.path("etc/sudoers.d");
        std::fs::remove_dir_all(&d).unwrap();
        if case == "loop" {
            symlink("sudoers.e", &d).unwrap();
            symlink("sudoers.d", t.path("etc/sudoers.e")).unwrap();
        } else {
            // 45 root-owned links, the last one out of the root: far over the 40-hop limit.
            symlink("c0", &d).unwrap();
            for i in 0..45 {
                let next = if i == 44 {
                    trip.path().display().to_string()
                } else {
                    format!("c{}", i + 1)
                };
                symlink(next, t.path(&format!("etc/c{i}"))).unwrap();
            }
        }
        let (st, out) = apply(&t, &fake_runner(), &site());
        assert_ne!(st, ExitStatus::Ok, "{case}: {out}");
        assert!(
            matches!(st, ExitStatus::Refused | ExitStatus::Failure),
            "{case}: {st:?}"
        );
        assert!(
            out.contains("too many levels of symbolic links"),
            "{case}: {out}"
        );
    }
    assert_eq!(trip.hash(), before);
}

#[test]
fn absolute_links_out_of_the_root_resolve_inside_it() {
    let trip = Tripwire::new();
    let before = trip.hash();
    let t = Tree::fixture("debian12");
    // A root-owned absolute link (as an image might carry) to the tripwire's path: chroot
    // semantics put the drop-in below the root, at the same path.
    let d = t.path("etc/sudoers.d");
    std::fs::remove_dir_all(&d).unwrap();
    symlink(trip.path(), &d).unwrap();
    let inside = t.path(&trip.path().display().to_string());
    std::fs::create_dir_all(&inside).unwrap();
    let (st, out) = apply(&t, &fake_runner(), &site());
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(
        !files_in(&inside).is_empty(),
        "the drop-in landed inside the root"
    );
    assert_eq!(trip.hash(), before);
    // A climbing relative link does the same.
    let t = Tree::fixture("debian12");
    let d = t.path("etc/sudoers.d");
    std::fs::remove_dir_all(&d).unwrap();
    symlink(trip.climbing(), &d).unwrap();
    let inside = t.path(&trip.path().display().to_string());
    std::fs::create_dir_all(&inside).unwrap();
    let (st, out) = apply(&t, &fake_runner(), &site());
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(!files_in(&inside).is_empty());
    assert_eq!(trip.hash(), before);
}

/// `home/deploy/.ssh` made ready for the user the site profile creates (uid 1000).
fn prepared_home(t: &Tree) -> PathBuf {
    let ssh = t.path("home/deploy/.ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    for p in [t.path("home/deploy"), ssh.clone()] {
        set_owner(&p, USER, USER);
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    }
    ssh
}

#[test]
fn a_fifo_or_device_authorized_keys_never_hangs_apply() {
    let trip = Tripwire::new();
    let before = trip.hash();
    for kind in ["fifo", "device"] {
        let t = Tree::fixture("debian12");
        let ak = prepared_home(&t).join("authorized_keys");
        if kind == "fifo" {
            nix::unistd::mkfifo(&ak, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        } else if nix::sys::stat::mknod(
            &ak,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(1, 5), // /dev/zero: a read would never end
        )
        .is_err()
        {
            eprintln!("mknod not permitted here; skipping the device case");
            continue;
        }
        set_owner(&ak, USER, USER);
        for _ in 0..2 {
            // Twice: the first run must not leave the lock held either.
            let (st, out) = apply(&t, &fake_runner(), &site());
            assert_eq!(st, ExitStatus::Failure, "{kind}: {out}");
            let what = if kind == "fifo" {
                "FIFO"
            } else {
                "character device"
            };
            assert!(out.contains(what), "{kind}: {out}");
            assert!(out.contains("authorized_keys"), "{kind}: {out}");
        }
        let p = t.profile("site", &site());
        let (st, out) = run_with_timeout(&t, &fake_runner(), &["plan", "--profile", &p], 60);
        assert_eq!(st, ExitStatus::Failure, "{kind}: {out}");
    }
    assert_eq!(trip.hash(), before);
}

#[cfg(feature = "failpoints")]
#[test]
fn ssh_dir_swapped_for_a_symlink_between_plan_and_write() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let trip = Tripwire::new();
    let before = trip.hash();
    for target in [
        trip.path().join("sub").display().to_string(),
        format!("{}/sub", trip.climbing()),
        "/etc".to_string(),
    ] {
        let t = Tree::fixture("debian12");
        let ssh = prepared_home(&t);
        // Exists inside the root too, so the write would succeed if it followed the link.
        let inside = t.path(&trip.path().join("sub").display().to_string());
        std::fs::create_dir_all(&inside).unwrap();
        set_owner(&inside, USER, USER);
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let (ssh2, target2, done2) = (ssh.clone(), target.clone(), done.clone());
        let (thread, passwd) = (apply_thread(&t), t.path("etc/passwd"));
        bollwerk::engine::apply::set_failpoint_hook(move |name| {
            // In this test's own apply only, once the plan is being executed (the account is
            // written) and before the key is.
            if name == "apply.after-backup"
                && std::thread::current().name() == Some(thread.as_str())
                && std::fs::read_to_string(&passwd).is_ok_and(|p| p.contains("\ndeploy:"))
                && !done2.swap(true, Ordering::SeqCst)
            {
                // The user's move, after the plan checked .ssh and before the key is written.
                std::fs::remove_dir_all(&ssh2).unwrap();
                symlink(&target2, &ssh2).unwrap();
                lchown(&ssh2, Some(USER), Some(USER)).unwrap();
            }
        });
        let etc_before = files_in(&t.path("etc"));
        let (st, out) = apply(&t, &fake_runner(), &site());
        assert!(done.load(Ordering::SeqCst), "the swap happened");
        assert_eq!(st, ExitStatus::Failure, "{target}: {out}");
        assert!(
            out.contains("/home/deploy/.ssh is a symlink owned by uid 1000"),
            "{target}: {out}"
        );
        assert!(files_in(&inside).is_empty(), "{target}");
        assert_eq!(files_in(&t.path("etc")), etc_before, "{target}");
        assert!(
            std::fs::symlink_metadata(&ssh)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
    assert_eq!(trip.hash(), before);
}

#[test]
fn a_planted_lock_symlink_is_refused() {
    let trip = Tripwire::new();
    let before = trip.hash();
    let t = Tree::fixture("debian12");
    std::fs::create_dir_all(t.path("var/lib/bollwerk/runs")).unwrap();
    symlink(trip.path().join("keep"), t.path("var/lib/bollwerk/lock")).unwrap();
    let (st, out) = apply(&t, &fake_runner(), &site());
    assert_eq!(st, ExitStatus::Refused, "{out}");
    assert!(out.contains("lock"), "{out}");
    assert_eq!(trip.hash(), before);
}
