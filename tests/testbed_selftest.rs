//! Self-test of the system-test harness (tests/common/testbed.rs), using only the harness and the
//! Debian 12 rootfs's own tools (not bollwerk).
//!
//! Run: `BOLLWERK_TESTBED_CACHE=... cargo test --test testbed_selftest -- --nocapture`

mod common;

use common::testbed::*;
use std::path::Path;
use std::time::Instant;

/// A key login that must succeed, with sshd's log in the failure message.
fn assert_key_login(sshd: &Sshd, user: &str, key: &Path, cmd: &str) -> String {
    let out = sshd.ssh(user, key, cmd);
    assert!(
        out.status.success(),
        "key login as {user} failed:\n{}\n--- sshd log ---\n{}",
        describe(&out),
        sshd.stderr_log()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn sshd_config_check_passes_and_bogus_option_fails() {
    let Some(tb) = testbed_or_skip("sshd_config_check_passes_and_bogus_option_fails") else {
        return;
    };
    let t = Instant::now();
    let inst = tb.instance();
    eprintln!(
        "timing: instance() incl. ssh-keygen -A: {:.2}s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let out = inst.chroot(&["sshd", "-t"]);
    eprintln!("timing: chroot sshd -t: {:.2}s", t.elapsed().as_secs_f64());
    assert!(out.status.success(), "sshd -t:\n{}", describe(&out));

    inst.write("/etc/ssh/bogus.conf", "Bogus yes\n");
    let out = inst.chroot(&["sshd", "-t", "-f", "/etc/ssh/bogus.conf"]);
    assert!(
        !out.status.success(),
        "sshd -t accepted Bogus:\n{}",
        describe(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Bogus"),
        "unexpected error:\n{}",
        describe(&out)
    );
}

#[test]
fn runner_gives_private_namespaces_and_api_filesystems() {
    let Some(tb) = testbed_or_skip("runner_gives_private_namespaces_and_api_filesystems") else {
        return;
    };
    let inst = tb.instance();
    let out = inst.sh_ok(
        "echo pid=$$; \
         stat -c 'run_sshd=%a' /run/sshd; stat -c 'shm=%a' /dev/shm; \
         if touch /sys/x 2>/dev/null; then echo sys=rw; else echo sys=ro; fi; \
         test -r /proc/self/status && echo proc=ok; \
         cat /etc/debian_version",
    );
    assert!(
        out.contains("pid=1\n"),
        "not PID 1 of a new namespace:\n{out}"
    );
    assert!(out.contains("run_sshd=755"), "{out}");
    assert!(out.contains("shm=1777"), "{out}");
    assert!(out.contains("sys=ro"), "{out}");
    assert!(out.contains("proc=ok"), "{out}");
    assert!(out.lines().last().unwrap_or("").starts_with("12."), "{out}");

    // Mounts made by the runner stay in its namespace.
    assert!(!is_mounted(&inst.path("/proc")));
    assert!(!is_mounted(&inst.path("/run")));

    // -n: an empty network namespace with only lo (up).
    let out = inst.chroot_net(&["ip", "-o", "link"]);
    let links = stdout_ok(&out, "ip -o link in chroot_net");
    assert_eq!(links.lines().count(), 1, "expected only lo:\n{links}");
    assert!(
        links.contains("lo:") && links.contains("UP"),
        "lo not up:\n{links}"
    );

    // stdin and env reach the command.
    let out = inst
        .cmd(&["sh", "-c", "read x; echo \"$x $FOO\""])
        .stdin("hello\n")
        .env("FOO", "bar")
        .output();
    assert_eq!(stdout_ok(&out, "stdin/env").trim(), "hello bar");
}

#[test]
fn key_login_works_password_and_root_refused() {
    let Some(tb) = testbed_or_skip("key_login_works_password_and_root_refused") else {
        return;
    };
    let inst = tb.instance();
    let keys = TempDir::new("selftest-keys");
    let (key, public) = keypair(keys.path(), "alice");

    inst.sh_ok(
        "useradd -m -s /bin/bash -G sudo alice && \
         install -d -m 0700 -o alice -g alice /home/alice/.ssh",
    );
    inst.write("/home/alice/.ssh/authorized_keys", format!("{public}\n"));
    inst.sh_ok(
        "chown alice:alice /home/alice/.ssh/authorized_keys && \
         chmod 0600 /home/alice/.ssh/authorized_keys && \
         install -d -m 0700 /root/.ssh && \
         cp /home/alice/.ssh/authorized_keys /root/.ssh/authorized_keys && \
         chown root:root /root/.ssh/authorized_keys",
    );
    inst.write(
        "/etc/ssh/sshd_config.d/00-test.conf",
        "PasswordAuthentication no\nPermitRootLogin no\n",
    );
    let out = inst
        .cmd(&["chpasswd"])
        .stdin("alice:Correct-Horse-42\n")
        .output();
    stdout_ok(&out, "chpasswd");
    stdout_ok(&inst.chroot(&["sshd", "-t"]), "sshd -t");

    let t = Instant::now();
    let sshd = inst.start_sshd(2222);
    eprintln!(
        "timing: start_sshd until listening: {:.2}s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let who = assert_key_login(&sshd, "alice", &key, "id -un");
    eprintln!("timing: key login: {:.2}s", t.elapsed().as_secs_f64());
    assert_eq!(who.trim(), "alice");

    let out = sshd.ssh_password("alice", "Correct-Horse-42", "id -un");
    assert!(
        !out.status.success(),
        "password login was accepted:\n{}",
        describe(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Permission denied (publickey)"),
        "password login not refused by configuration:\n{}\n--- sshd log ---\n{}",
        describe(&out),
        sshd.stderr_log()
    );

    let out = sshd.ssh("root", &key, "id -un");
    assert!(
        !out.status.success(),
        "root login was accepted:\n{}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "root login failed for another reason:\n{}\n--- sshd log ---\n{}",
        describe(&out),
        sshd.stderr_log()
    );
    assert!(
        sshd.stderr_log().contains("ROOT LOGIN REFUSED"),
        "sshd log does not show the refused root login:\n{}",
        sshd.stderr_log()
    );
}

/// Control for the refusal above: without the drop-in, the same password login works, so the
/// refusal there comes from the configuration and not from the harness.
#[test]
fn password_login_works_without_dropin() {
    let Some(tb) = testbed_or_skip("password_login_works_without_dropin") else {
        return;
    };
    let inst = tb.instance();
    inst.sh_ok("useradd -m -s /bin/bash bob");
    stdout_ok(
        &inst
            .cmd(&["chpasswd"])
            .stdin("bob:Correct-Horse-42\n")
            .output(),
        "chpasswd",
    );
    let sshd = inst.start_sshd(2222);
    let out = sshd.ssh_password("bob", "Correct-Horse-42", "id -un");
    assert!(
        out.status.success(),
        "password login failed:\n{}\n--- sshd log ---\n{}",
        describe(&out),
        sshd.stderr_log()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "bob");
    let out = sshd.ssh_password("bob", "wrong", "id -un");
    assert!(!out.status.success(), "wrong password accepted");
}

#[test]
fn instances_are_independent_and_lower_untouched() {
    let Some(tb) = testbed_or_skip("instances_are_independent_and_lower_untouched") else {
        return;
    };
    let lower = tb.lower().to_path_buf();
    let passwd_before = std::fs::read(lower.join("etc/passwd")).unwrap();
    let etc_mtime_before = std::fs::metadata(lower.join("etc"))
        .unwrap()
        .modified()
        .unwrap();

    let a = tb.instance();
    let b = tb.instance();
    assert_ne!(a.root, b.root);
    a.sh_ok("useradd -m carol && echo only-in-a > /etc/testbed-marker");
    a.write("/root/from-host", "x");

    assert!(a.path("/etc/testbed-marker").exists());
    assert!(a.read("/etc/passwd").contains("carol:"));
    assert!(!b.path("/etc/testbed-marker").exists());
    assert!(!b.path("/root/from-host").exists());
    assert!(!b.read("/etc/passwd").contains("carol:"));
    let out = b.sh("test -e /etc/testbed-marker || test -d /home/carol");
    assert!(!out.status.success(), "b sees a's changes");

    assert!(!lower.join("etc/testbed-marker").exists());
    assert!(!lower.join("root/from-host").exists());
    assert!(!lower.join("home/carol").exists());
    assert_eq!(
        std::fs::read(lower.join("etc/passwd")).unwrap(),
        passwd_before
    );
    assert_eq!(
        std::fs::metadata(lower.join("etc"))
            .unwrap()
            .modified()
            .unwrap(),
        etc_mtime_before
    );
    // Host keys were generated per instance, not in the shared lower dir.
    assert!(a.path("/etc/ssh/ssh_host_ed25519_key").exists());
    assert!(!lower.join("etc/ssh/ssh_host_ed25519_key").exists());
    assert_ne!(
        a.read("/etc/ssh/ssh_host_ed25519_key.pub"),
        b.read("/etc/ssh/ssh_host_ed25519_key.pub")
    );
}

/// What must be gone once an instance and its sshd were dropped.
struct Traces {
    netns: String,
    unshare_pid: u32,
    sshd_pid: Option<u32>,
    root: std::path::PathBuf,
    dir: std::path::PathBuf,
}

fn assert_no_traces(t: &Traces) {
    assert!(
        !netns_list().contains(&t.netns),
        "netns {} remains",
        t.netns
    );
    assert!(!pid_alive(t.unshare_pid), "unshare {} alive", t.unshare_pid);
    if let Some(p) = t.sshd_pid {
        assert!(!pid_alive(p), "sshd {p} alive");
    }
    assert!(!is_mounted(&t.root), "{} still mounted", t.root.display());
    assert!(!t.dir.exists(), "{} remains", t.dir.display());
}

#[test]
fn drop_removes_netns_processes_and_mount() {
    let Some(tb) = testbed_or_skip("drop_removes_netns_processes_and_mount") else {
        return;
    };
    let traces = {
        let inst = tb.instance();
        let sshd = inst.start_sshd(22);
        let traces = Traces {
            netns: sshd.netns().to_string(),
            unshare_pid: sshd.pid(),
            sshd_pid: sshd.sshd_pid(),
            root: inst.root.clone(),
            dir: inst.dir().to_path_buf(),
        };
        assert!(traces.netns.starts_with("bw-"));
        assert!(netns_list().contains(&traces.netns));
        assert!(pid_alive(traces.unshare_pid));
        assert!(traces.sshd_pid.is_some_and(pid_alive), "sshd pid not found");
        assert!(is_mounted(&traces.root));
        // Dropping the instance first is allowed: the mount lives until sshd is gone.
        drop(inst);
        assert!(is_mounted(&traces.root), "unmounted under a running sshd");
        let t = Instant::now();
        drop(sshd);
        eprintln!(
            "timing: sshd + instance drop: {:.2}s",
            t.elapsed().as_secs_f64()
        );
        traces
    };
    assert_no_traces(&traces);
}

#[test]
fn drop_cleans_up_when_the_test_panics() {
    let Some(tb) = testbed_or_skip("drop_cleans_up_when_the_test_panics") else {
        return;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let inst = tb.instance();
        let sshd = inst.start_sshd(2222);
        tx.send(Traces {
            netns: sshd.netns().to_string(),
            unshare_pid: sshd.pid(),
            sshd_pid: sshd.sshd_pid(),
            root: inst.root.clone(),
            dir: inst.dir().to_path_buf(),
        })
        .unwrap();
        panic!("deliberate panic with a running sshd");
    })
    .join();
    assert!(result.is_err(), "the thread should have panicked");
    let traces = rx.recv().expect("traces from the panicking thread");
    assert_no_traces(&traces);
}

#[test]
fn paths_resolve_symlinks_inside_the_root() {
    let Some(tb) = testbed_or_skip("paths_resolve_symlinks_inside_the_root") else {
        return;
    };
    let inst = tb.instance();
    let root = &inst.root;
    // /etc/localtime -> /usr/share/zoneinfo/Etc/UTC (absolute): must stay in the root.
    assert_eq!(
        inst.path("/etc/localtime"),
        root.join("usr/share/zoneinfo/Etc/UTC")
    );
    // /var/run -> /run, /var/lock -> /run/lock; missing tails are kept.
    assert_eq!(inst.path("/var/run/x/y"), root.join("run/x/y"));
    assert_eq!(inst.path("/var/lock"), root.join("run/lock"));
    // `..` cannot climb out of the root.
    assert_eq!(inst.path("/../../etc/passwd"), root.join("etc/passwd"));
    // A link planted in the instance that points at a host path stays inside too.
    std::os::unix::fs::symlink("/etc/hostname", root.join("root/evil")).unwrap();
    inst.write("/root/evil", "changed\n");
    assert_eq!(inst.read("/etc/hostname"), "changed\n");
    assert_ne!(
        std::fs::read_to_string("/etc/hostname").unwrap(),
        "changed\n"
    );
}

/// What a test process killed mid-run leaves behind, a `bw-<pid>-…` cgroup whose processes still
/// run (a booted container's PID 1 outlives its killed systemd-nspawn), is killed and removed by
/// the next test process's first testbed use.
#[test]
fn a_dead_test_processs_container_cgroup_is_killed_and_removed() {
    use std::os::unix::process::ExitStatusExt;
    let Some(tb) = testbed_or_skip("a_dead_test_processs_container_cgroup_is_killed_and_removed")
    else {
        return;
    };
    // A PID that no longer exists: a child that has exited.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let cg = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(|b| Path::new(b).join(format!("{NETNS_PREFIX}{dead}-selftest")))
        .find(|cg| {
            let made = std::fs::create_dir(cg).is_ok();
            if made && !cg.join("cgroup.kill").exists() {
                let _ = std::fs::remove_dir(cg); // not a cgroup v2 group
            }
            made && cg.join("cgroup.kill").exists()
        })
        .expect("no cgroup v2 hierarchy with cgroup.kill (Linux 5.14) to create a group in");
    // The "container": a process moved into the group, as the container tests do with nspawn.
    let mut child = std::process::Command::new("sh")
        .args([
            "-c",
            "echo $$ > \"$1/cgroup.procs\" && exec sleep 600",
            "sh",
        ])
        .arg(&cg)
        .spawn()
        .unwrap();
    let populated = || {
        std::fs::read_to_string(cg.join("cgroup.events"))
            .is_ok_and(|e| e.lines().any(|l| l == "populated 1"))
    };
    let t = Instant::now();
    while !populated() && t.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(populated(), "the process did not join {}", cg.display());

    cleanup_stale_now(&tb).unwrap();

    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed().as_secs() < 15,
            "the process in the stale cgroup still runs"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert!(!cg.exists(), "{} was not removed", cg.display());
}
