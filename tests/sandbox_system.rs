//! The jail commands run in inside a target root (issue 10): a plain directory (not a mount
//! point) works as a root, the command is PID 1 of its own PID namespace with its own `/proc`,
//! the host's processes and tree are out of reach, a timeout kills the whole namespace,
//! read-only privileges really drop every capability, no profile string reaches a shell, and
//! `cis-level1-server` applies to a plain directory and converges.

mod common;

use std::path::Path;
use std::time::Duration;

use bollwerk::exec::{Cmd, Privilege, Runner, SystemRunner};
use bollwerk::root::Root;
use common::testbed::*;

fn run(root: &Root, privilege: Privilege, argv: &[&str]) -> bollwerk::exec::Output {
    SystemRunner::with_privilege(privilege)
        .run(root, &Cmd::in_root(argv[0], &argv[1..]))
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

/// Host PIDs whose root directory is `root` (processes left running in the jail).
fn processes_in(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        if let Ok(r) = std::fs::read_link(e.path().join("root"))
            && r == root
        {
            found.push(name);
        }
    }
    found
}

/// One plain-directory copy of the testbed (a full copy costs seconds) for the jail checks.
#[test]
fn jail_on_a_plain_directory() {
    let Some(tb) = testbed_or_skip("jail_on_a_plain_directory") else {
        return;
    };
    let t = std::time::Instant::now();
    let inst = tb.plain_instance();
    assert!(!is_mounted(&inst.root));
    eprintln!("plain copy: {:.1} s", t.elapsed().as_secs_f64());
    own_pid_namespace_and_proc(&tb, &inst);
    eprintln!(
        "pid namespace and /proc: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    privileges_and_timeouts(&inst);
    eprintln!(
        "privileges and timeouts: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    pam_sandbox_treats_paths_and_names_as_data(&inst);
    pam_sandbox_overlay_keeps_every_write_private(&inst);
    eprintln!("pam sandbox: {:.1} s", t.elapsed().as_secs_f64());
}

/// `/proc/1` is the jailed command, `/proc/1/root` the jail's own root, the host's processes
/// and tree are out of sight, and nothing is mounted in the host's namespace.
fn own_pid_namespace_and_proc(tb: &Testbed, inst: &Instance) {
    let root = Root::new(&inst.root).unwrap();

    // The command is PID 1 of its namespace: /proc/1 is the command itself, not the host's init.
    let out = run(&root, Privilege::Full, &["/bin/cat", "/proc/1/cmdline"]);
    assert!(out.success(), "{}", out.combined());
    assert_eq!(out.stdout, "/bin/cat\0/proc/1/cmdline\0");
    let out = run(&root, Privilege::Full, &["/bin/readlink", "/proc/1/root"]);
    assert_eq!(out.stdout.trim(), "/", "{}", out.combined());
    // Only the namespace's processes are visible, and the host's tree is not reachable
    // through /proc/1/root: it is the jail's own root.
    let out = run(
        &root,
        Privilege::Full,
        &["/bin/sh", "-c", "ls /proc | grep -c '^[0-9]'"],
    );
    let n: u32 = out.stdout.trim().parse().unwrap_or(99);
    assert!(n <= 3, "{n} processes visible: {}", out.combined());
    let marker = inst
        .dir()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let out = run(&root, Privilege::Full, &["/bin/ls", "/proc/1/root/"]);
    assert!(
        out.success() && out.stdout.contains("etc"),
        "{}",
        out.combined()
    );
    let host_only = std::fs::read_dir(tb.cache_dir().join("run"))
        .unwrap()
        .count();
    assert!(host_only > 0);
    let out = run(
        &root,
        Privilege::Full,
        &[
            "/bin/sh",
            "-c",
            "ls -d /proc/1/root/var/cache/bollwerk-testbed/run/* 2>/dev/null; true",
        ],
    );
    assert!(
        !out.stdout.contains(&marker),
        "the host's tree is reachable from the jail: {}",
        out.combined()
    );
    // The root is a mount point inside the jail (bind-mounted onto itself), so a nested
    // private mount namespace works on a plain directory too.
    let out = run(
        &root,
        Privilege::Full,
        &[
            "/usr/bin/unshare",
            "-m",
            "--propagation",
            "private",
            "/bin/true",
        ],
    );
    assert!(out.success(), "nested unshare: {}", out.combined());
    // Nothing was mounted in the host's namespace.
    assert!(!is_mounted(&inst.root.join("proc")));
    assert!(!is_mounted(&inst.root));
}

/// Read-only privileges really are empty capability sets (and `nobody`); a timeout kills the
/// whole namespace.
fn privileges_and_timeouts(inst: &Instance) {
    let root = Root::new(&inst.root).unwrap();
    let caps = |p| {
        let out = run(
            &root,
            p,
            &[
                "/bin/grep",
                "-E",
                "^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Uid)",
                "/proc/self/status",
            ],
        );
        assert!(out.success(), "{}", out.combined());
        out.stdout
    };
    let full = caps(Privilege::Full);
    assert!(!full.contains("CapEff:\t0000000000000000"), "{full}");
    for p in [Privilege::NoCaps, Privilege::Nobody] {
        let s = caps(p);
        for f in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert!(
                s.contains(&format!("{f}:\t0000000000000000")),
                "{p:?}: {f} not empty: {s}"
            );
        }
        assert!(s.contains("NoNewPrivs:\t1"), "{p:?}: {s}");
    }
    assert!(caps(Privilege::Nobody).contains("Uid:\t65534\t65534\t65534\t65534"));
    assert!(caps(Privilege::NoCaps).contains("Uid:\t0\t0\t0\t0"));
    // Without capabilities, root in the jail cannot mount (and so cannot reach the host's
    // devices or remount anything).
    let out = run(
        &root,
        Privilege::NoCaps,
        &["/bin/mount", "-t", "tmpfs", "x", "/mnt"],
    );
    assert!(!out.success(), "mount worked without capabilities");

    // A timeout kills the whole namespace, background processes included.
    let err = SystemRunner::default()
        .run(
            &root,
            &Cmd::in_root("/bin/sh", &["-c", "sleep 300 & sleep 300 & wait"])
                .timeout(Duration::from_secs(1)),
        )
        .unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_in(&inst.root);
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "processes left in the jail after the timeout: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Paths, profile names and passwords with shell syntax stay data in the PAM sandbox's
/// commands: nothing they spell runs, in the root or on the host.
fn pam_sandbox_treats_paths_and_names_as_data(inst: &Instance) {
    let root = Root::new(&inst.root).unwrap();
    let runner = SystemRunner::default();
    let hostile = [
        "etc/motd$(touch /tmp/pwned1)",
        "etc/motd`touch /tmp/pwned2`",
        "etc/motd;touch /tmp/pwned3",
        "etc/x\" ; touch /tmp/pwned4 ; \"",
        "etc/it's'$(touch /tmp/pwned5)'",
    ];
    let mut candidates = Vec::new();
    for (i, h) in hostile.iter().enumerate() {
        let cand = format!("/tmp/bw-cand-{i}");
        inst.write(&cand, format!("candidate {i}\n"));
        candidates.push((h.to_string(), cand));
    }
    let check = bollwerk::modules::hardening::pam::PamStackCheck {
        enable: vec!["unix$(touch /tmp/pwned6)".into()],
        disable: Vec::new(),
        expect: Default::default(),
        require_pamtester: false,
        wait_for: Vec::new(),
    };
    let sandbox = "/tmp/sb $(touch /tmp/pwned7)";
    std::fs::create_dir_all(inst.root.join(sandbox.trim_start_matches('/'))).unwrap();
    let (copy, test) = check.commands(sandbox, &candidates, "pw'$(touch /tmp/pwned8)", |p| {
        inst.root.join(p).exists()
    });
    let out = runner.run(&root, &copy).unwrap();
    assert!(out.success(), "{}", out.combined());
    for (i, h) in hostile.iter().enumerate() {
        let staged = inst.root.join(sandbox.trim_start_matches('/')).join(h);
        assert_eq!(
            std::fs::read_to_string(&staged).unwrap_or_default(),
            format!("candidate {i}\n"),
            "{h} was not staged literally"
        );
    }
    let _ = runner.run(&root, &test).unwrap();
    for n in 1..=8 {
        let f = format!("tmp/pwned{n}");
        assert!(!inst.root.join(&f).exists(), "{f} was created in the root");
        assert!(
            !Path::new("/").join(&f).exists(),
            "{f} was created on the host"
        );
    }
    // The bind mounts lived in the command's namespace only.
    assert!(!is_mounted(&inst.root.join("etc")));
}

/// The PAM sandbox's fast form: copy-on-write layers instead of copies. Hostile candidate names
/// are staged as data inside the layer, the stack is tested there, and nothing of it reaches
/// the root or the host: no file, no mount, the root's `/etc` byte-identical.
fn pam_sandbox_overlay_keeps_every_write_private(inst: &Instance) {
    let root = Root::new(&inst.root).unwrap();
    let runner = SystemRunner::default();
    let hostile = [
        "etc/motd$(touch /tmp/pwned11)",
        "etc/x\" ; touch /tmp/pwned12 ; \"",
        "etc/pam.d/bollwerk-staged",
        "etc/pam.d/bollwerk-link",
    ];
    // A target that is a symlink out of the layer is replaced, not written through.
    inst.write("/usr/share/bollwerk-victim", "victim\n");
    std::os::unix::fs::symlink(
        "/usr/share/bollwerk-victim",
        inst.root.join("etc/pam.d/bollwerk-link"),
    )
    .unwrap();
    let before = tree_state(&inst.root.join("etc"));
    let mut candidates = Vec::new();
    for (i, h) in hostile.iter().enumerate() {
        let cand = format!("/tmp/bw-ovl-cand-{i}");
        inst.write(&cand, format!("candidate {i}\n"));
        candidates.push((h.to_string(), cand));
    }
    let check = bollwerk::modules::hardening::pam::PamStackCheck {
        enable: vec!["unix".into()],
        disable: Vec::new(),
        expect: Default::default(),
        require_pamtester: false,
        wait_for: Vec::new(),
    };
    let cmd = check.overlay_command(&candidates, "pw'$(touch /tmp/pwned13)", |p| {
        inst.root.join(p).exists()
    });
    let out = runner.run(&root, &cmd).unwrap();
    assert!(out.success(), "{}", out.combined());
    assert!(out.stdout.contains("==> common-auth"), "{}", out.stdout);
    assert!(
        out.stdout.contains("bollwerk-pam-sandbox: ok"),
        "{}",
        out.stdout
    );
    for n in 11..=13 {
        let f = format!("tmp/pwned{n}");
        assert!(!inst.root.join(&f).exists(), "{f} was created in the root");
        assert!(
            !Path::new("/").join(&f).exists(),
            "{f} was created on the host"
        );
    }
    assert!(!inst.root.join("etc/pam.d/bollwerk-staged").exists());
    assert_eq!(inst.read("/usr/share/bollwerk-victim"), "victim\n");
    assert_eq!(
        before,
        tree_state(&inst.root.join("etc")),
        "the sandbox changed the root's etc"
    );
    assert!(!is_mounted(&inst.root.join("etc")));
    std::fs::remove_file(inst.root.join("etc/pam.d/bollwerk-link")).unwrap();
}

#[test]
fn cis_level1_server_applies_to_a_plain_directory_and_converges() {
    let Some(tb) = testbed_or_skip("cis_level1_server_applies_to_a_plain_directory_and_converges")
    else {
        return;
    };
    let inst = tb.plain_instance();
    assert!(
        !is_mounted(&inst.root),
        "the root must be a plain directory"
    );
    let tmp = TempDir::new("sandbox-cis-plain");
    let (_key, pubkey) = keypair(tmp.path(), "admin");
    let site = tmp.path().join("site.toml");
    std::fs::write(
        &site,
        format!(
            "extends = \"cis-level1-server\"\n[[users]]\nname = \"admin\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{pubkey}\"]\n"
        ),
    )
    .unwrap();
    let site = site.to_string_lossy().into_owned();
    let root = inst.root.to_string_lossy().into_owned();
    let bollwerk = |args: &[&str]| {
        run_capture(
            std::process::Command::new(bollwerk_bin()).args(args),
            None,
            Duration::from_secs(1200),
        )
    };
    let started = std::time::Instant::now();
    let out = bollwerk(&["apply", "--profile", &site, "--root", &root]);
    assert!(out.status.success(), "{}", describe(&out));
    eprintln!(
        "cis-level1-server apply on a plain directory: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let out = bollwerk(&["apply", "--profile", &site, "--root", &root]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 changes"),
        "a re-apply must change nothing: {}",
        describe(&out)
    );
    // The PAM stack the sandbox tested is the one in place, and nothing was left mounted.
    assert!(
        inst.read("/etc/pam.d/common-auth")
            .contains("pam_faillock.so")
    );
    assert!(!inst.read("/etc/pam.d/common-auth").contains("nodelay"));
    for d in ["proc", "run", "dev/shm", "etc", ""] {
        assert!(!is_mounted(&inst.root.join(d)), "{d} is mounted");
    }
}

/// Where the kernel refuses the PAM sandbox's overlay (here: a root that is already two
/// overlays deep, past overlayfs' stacking limit), the spawn fails with `ExecError::Spawn`,
/// the error on which the validator falls back to copies, and nothing is left mounted.
#[test]
fn pam_sandbox_overlay_refused_is_a_spawn_error() {
    let Some(tb) = testbed_or_skip("pam_sandbox_overlay_refused_is_a_spawn_error") else {
        return;
    };
    let inst = tb.instance();
    let tmp = TempDir::new("sandbox-stacked");
    let (upper, work, top) = (
        tmp.path().join("upper"),
        tmp.path().join("work"),
        tmp.path().join("top"),
    );
    for d in [&upper, &work, &top] {
        std::fs::create_dir_all(d).unwrap();
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        inst.root.display(),
        upper.display(),
        work.display()
    );
    let st = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&top)
        .status()
        .unwrap();
    assert!(st.success(), "mount the second overlay");
    let root = Root::new(&top).unwrap();
    let check = bollwerk::modules::hardening::pam::PamStackCheck {
        enable: Vec::new(),
        disable: Vec::new(),
        expect: Default::default(),
        require_pamtester: false,
        wait_for: Vec::new(),
    };
    let res = SystemRunner::default().run(&root, &check.overlay_command(&[], "pw", |_| false));
    drop(root); // its directory handle keeps the mount busy
    let st = std::process::Command::new("umount")
        .arg(&top)
        .status()
        .unwrap();
    assert!(st.success(), "umount the second overlay");
    match res {
        Err(bollwerk::exec::ExecError::Spawn { .. }) => {}
        other => panic!("expected a spawn error from the refused overlay, got {other:?}"),
    }
    assert!(!is_mounted(&inst.root.join("etc")));
}
