//! System tests of the OS hardening modules (issue 7) on the real Debian 12 rootfs: the real
//! `pam-auth-update`, `pamtester`, `visudo`, `modprobe`, `systemd-analyze`, `findmnt`, a real
//! sshd in a network namespace, and a booted systemd-nspawn container for the container case.

mod common;

use std::process::Command;

use common::testbed::*;

fn bollwerk(args: &[&str]) -> std::process::Output {
    run_capture(
        Command::new(bollwerk_bin()).args(args),
        None,
        DEFAULT_TIMEOUT,
    )
}

/// A SHA-512 crypt hash made by the rootfs's own libcrypt.
fn hash(inst: &Instance, password: &str) -> String {
    inst.sh_ok(&format!(
        "perl -e 'print crypt($ARGV[0], q($6$bollwerktest$))' '{password}'"
    ))
}

const PAM: &str = "[pam]\nsu_group = \"sugroup\"\nnullok = false\n[pam.pwquality]\nminlen = 14\nminclass = 4\ndifok = 2\nmaxrepeat = 3\nmaxsequence = 3\ndictcheck = true\nenforcing = true\nenforce_for_root = true\nretry = 3\n[pam.faillock]\ndeny = 3\nunlock_time = 900\nfail_interval = 900\n[pam.history]\nremember = 24\nenforce_for_root = true\n";

#[test]
fn pam_stack_locks_password_users_keeps_key_logins_and_sudo() {
    let Some(tb) = testbed_or_skip("pam_stack_locks_password_users_keeps_key_logins_and_sudo")
    else {
        return;
    };
    let inst = tb.instance();
    let tmp = TempDir::new("hardening-pam");
    let (key, pubkey) = keypair(tmp.path(), "admin");
    let pw_hash = hash(&inst, "Correct-Horse-Battery-42");
    let site = tmp.path().join("site.toml");
    std::fs::write(
        &site,
        format!(
            "extends = \"baseline\"\n[host]\nlock_root_password = false\n[[users]]\nname = \"admin\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{pubkey}\"]\n[[users]]\nname = \"carol\"\npassword_hash = \"{pw_hash}\"\n{PAM}"
        ),
    )
    .unwrap();
    let site = site.to_string_lossy().into_owned();
    let root = inst.root.to_string_lossy().into_owned();
    // Control for the su restriction: a plain user can su to root with root's password now.
    let su_to_root =
        "su -s /bin/sh dave -c 'echo Rootpw-Rootpw-1234 | su -c \"echo SU-OK\" root' 2>&1";
    inst.sh_ok("useradd -m dave && echo 'root:Rootpw-Rootpw-1234' | chpasswd 2>/dev/null");
    let control = inst.sh(su_to_root);
    assert!(
        String::from_utf8_lossy(&control.stdout).contains("SU-OK"),
        "{}",
        describe(&control)
    );
    let pristine = tree_state(&inst.root);

    let out = bollwerk(&["apply", "--profile", &site, "--root", &root]);
    assert!(out.status.success(), "{}", describe(&out));
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        so.contains("activate the PAM profiles with pam-auth-update"),
        "{so}"
    );
    let out = bollwerk(&["apply", "--profile", &site, "--root", &root]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 changes"),
        "{}",
        describe(&out)
    );

    // The stack pam-auth-update wrote.
    let auth = inst.read("/etc/pam.d/common-auth");
    assert!(
        auth.contains("pam_faillock.so preauth") && auth.contains("pam_faillock.so authfail"),
        "{auth}"
    );
    assert!(!auth.contains("nullok"), "{auth}");
    let password = inst.read("/etc/pam.d/common-password");
    assert!(
        password.contains("pam_pwhistory.so remember=24"),
        "{password}"
    );
    assert!(
        inst.read("/etc/pam.d/common-account")
            .contains("pam_faillock.so")
    );

    // A correct password authenticates; three wrong ones lock carol, and then even the
    // correct one is refused.
    let pamtester = |stdin: &str, args: &[&str]| {
        let mut argv = vec!["pamtester"];
        argv.extend_from_slice(args);
        inst.cmd(&argv).stdin(stdin.as_bytes().to_vec()).output()
    };
    let ok = pamtester(
        "Correct-Horse-Battery-42\n",
        &["sshd", "carol", "authenticate", "acct_mgmt"],
    );
    assert!(ok.status.success(), "{}", describe(&ok));
    // faillock keeps its records in /run, which lives as long as one harness call: one script.
    let lock = inst.sh(
        "for i in 1 2 3; do echo wrong | pamtester sshd carol authenticate && echo WRONG-ACCEPTED; done; \
         echo Correct-Horse-Battery-42 | pamtester sshd carol authenticate && echo LOCK-IGNORED; \
         faillock --user carol",
    );
    let lo = String::from_utf8_lossy(&lock.stdout);
    let le = String::from_utf8_lossy(&lock.stderr);
    assert!(
        !lo.contains("WRONG-ACCEPTED") && !lo.contains("LOCK-IGNORED"),
        "{}",
        describe(&lock)
    );
    assert!(
        format!("{lo}{le}").contains("The account is locked due to 3 failed logins"),
        "{}",
        describe(&lock)
    );
    assert_eq!(
        lo.lines().filter(|l| l.contains(" sshd ")).count(),
        3,
        "{lo}"
    );

    // Password quality and history, for root too (enforce_for_root).
    let short = pamtester(
        "Sh0rt!\nSh0rt!\nSh0rt!\nSh0rt!\nSh0rt!\nSh0rt!\n",
        &["passwd", "carol", "chauthtok"],
    );
    assert!(
        !short.status.success(),
        "a short password must be refused: {}",
        describe(&short)
    );
    let good = "Tr0ub4dor&3-Staple-Xyz\nTr0ub4dor&3-Staple-Xyz\n";
    let changed = pamtester(good, &["passwd", "carol", "chauthtok"]);
    assert!(changed.status.success(), "{}", describe(&changed));
    let reuse = pamtester(&good.repeat(3), &["passwd", "carol", "chauthtok"]);
    assert!(
        !reuse.status.success(),
        "a reused password must be refused: {}",
        describe(&reuse)
    );

    // su only for the (empty) sugroup: dave cannot su to root any more, even with root's
    // password (pam_wheel refuses before asking).
    let su = inst.read("/etc/pam.d/su");
    assert!(su.contains("pam_wheel.so use_uid group=sugroup"), "{su}");
    let denied = inst.sh(su_to_root);
    let so = String::from_utf8_lossy(&denied.stdout);
    assert!(
        so.contains("su: Permission denied") && !so.contains("SU-OK"),
        "{}",
        describe(&denied)
    );

    // A real sshd: the admin's key works, sudo works; carol's password is refused (baseline).
    let sshd = inst.start_sshd(2222);
    let out = sshd.ssh("admin", &key, "id -un; sudo -n true && echo sudo-ok");
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        so.contains("admin") && so.contains("sudo-ok"),
        "{}\n{}",
        describe(&out),
        sshd.stderr_log()
    );
    drop(sshd);

    // Rollback restores the PAM configuration byte-identically.
    let out = bollwerk(&["rollback", "--force", "--root", &root]);
    assert!(out.status.success(), "{}", describe(&out));
    let after = tree_state(&inst.root);
    let pristine: std::collections::HashSet<&str> = pristine.lines().collect();
    let diff: Vec<_> = after
        .lines()
        .filter(|l| !pristine.contains(l))
        // pam_pwhistory itself recorded carol's old password (a runtime effect, not bollwerk's).
        .filter(|l| !l.contains("./etc/security/opasswd"))
        .collect();
    assert!(diff.is_empty(), "rollback left differences: {diff:#?}");
    assert_eq!(
        inst.read("/etc/pam.d/common-auth"),
        std::fs::read_to_string(tb.lower().join("etc/pam.d/common-auth")).unwrap()
    );
}

/// The admin's site profile on top of the built-in CIS profile.
fn cis_site(dir: &std::path::Path, pubkey: &str) -> String {
    let p = dir.join("site.toml");
    std::fs::write(
        &p,
        format!(
            "extends = \"cis-level1-server\"\n[[users]]\nname = \"admin\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{pubkey}\"]\n"
        ),
    )
    .unwrap();
    p.to_string_lossy().into_owned()
}

/// True when this build has `bollwerk audit` (issue 5); says so loudly when it has not, and
/// fails under `BOLLWERK_REQUIRE_SYSTEM_TESTS=1`.
fn audit_available(what: &str) -> bool {
    let out = bollwerk(&["audit", "--help"]);
    if out.status.success() {
        return true;
    }
    let msg = format!(
        "PENDING ({what}): this build has no `bollwerk audit` (issue 5 not merged yet); the Level 1 score check did not run"
    );
    eprintln!("\n=== {msg} ===\n");
    assert!(
        std::env::var("BOLLWERK_REQUIRE_SYSTEM_TESTS").as_deref() != Ok("1"),
        "{msg}"
    );
    false
}

#[test]
fn cis_level1_server_on_the_testbed_rootfs() {
    let Some(tb) = testbed_or_skip("cis_level1_server_on_the_testbed_rootfs") else {
        return;
    };
    let inst = tb.instance();
    let tmp = TempDir::new("hardening-cis");
    let (key, pubkey) = keypair(tmp.path(), "admin");
    let site = cis_site(tmp.path(), &pubkey);
    let root = inst.root.to_string_lossy().into_owned();
    // Root gets the admin's key too, so the refusal below is sshd's doing.
    inst.sh_ok(&format!(
        "mkdir -p /root/.ssh && echo '{pubkey}' > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys"
    ));

    let out = bollwerk(&["plan", "--profile", &site, "--root", &root]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let started = std::time::Instant::now();
    let out = bollwerk(&["apply", "--profile", &site, "--root", &root]);
    let took = started.elapsed();
    assert!(out.status.success(), "{}", describe(&out));
    eprintln!(
        "cis-level1-server apply on the testbed rootfs: {:.2} s",
        took.as_secs_f64()
    );
    let out = bollwerk(&["apply", "--profile", &site, "--root", &root]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 changes"),
        "a re-apply must change nothing: {}",
        describe(&out)
    );

    // The real tools accept the result.
    stdout_ok(&inst.chroot(&["/usr/sbin/sshd", "-t"]), "sshd -t");
    stdout_ok(&inst.chroot(&["/usr/sbin/visudo", "-c"]), "visudo -c");
    stdout_ok(&inst.chroot(&["/usr/sbin/pwck", "-r", "-q"]), "pwck");
    stdout_ok(&inst.chroot(&["/usr/sbin/grpck", "-r"]), "grpck");
    stdout_ok(
        &inst.chroot(&[
            "/usr/bin/systemd-analyze",
            "verify",
            "--man=no",
            "/etc/systemd/system/tmp.mount",
        ]),
        "systemd-analyze verify tmp.mount",
    );
    let mp = stdout_ok(
        &inst.chroot(&["/sbin/modprobe", "--showconfig"]),
        "modprobe --showconfig",
    );
    assert!(
        mp.contains("blacklist usb_storage") || mp.contains("blacklist usb-storage"),
        "{mp}"
    );
    let t = stdout_ok(&inst.chroot(&["/usr/sbin/sshd", "-T"]), "sshd -T");
    assert!(t.lines().any(|l| l == "banner /etc/issue.net"), "{t}");
    // What the scanners are told (issue 12): OpenSCAP's INFO and ClientAliveCountMax 3,
    // Lynis' Compression/TCPKeepAlive no, the effective values sshd really uses.
    for want in [
        "loglevel INFO",
        "clientalivecountmax 3",
        "compression no",
        "tcpkeepalive no",
        "maxsessions 10",
    ] {
        assert!(t.lines().any(|l| l == want), "{want}:\n{t}");
    }
    // The main file's block repeats the drop-in's algorithm lists, and sshd's first-value
    // rule gives exactly those lists (the drop-in is read first, the block agrees with it).
    let main = inst.read("etc/ssh/sshd_config");
    let dropin = inst.read("etc/ssh/sshd_config.d/00-bollwerk.conf");
    for kw in ["KexAlgorithms", "Ciphers", "MACs"] {
        let line = dropin
            .lines()
            .find(|l| l.starts_with(&format!("{kw} ")))
            .unwrap_or_else(|| panic!("{kw} in the drop-in:\n{dropin}"));
        assert!(
            main.contains(&format!("\n{line}\n")),
            "{kw} in sshd_config:\n{main}"
        );
        let effective = format!("{} {}", kw.to_ascii_lowercase(), &line[kw.len() + 1..]);
        assert!(t.lines().any(|l| l == effective), "{effective}:\n{t}");
    }
    // journald.conf and rsyslog.conf say what the drop-ins say, each value once.
    let journald = inst.read("etc/systemd/journald.conf");
    assert!(
        journald.lines().any(|l| l == "Storage=persistent"),
        "{journald}"
    );
    assert!(journald.lines().any(|l| l == "Compress=yes"), "{journald}");
    let modes = inst.sh("grep -h '^\\$FileCreateMode' /etc/rsyslog.conf /etc/rsyslog.d/*.conf");
    assert_eq!(
        String::from_utf8_lossy(&modes.stdout),
        "$FileCreateMode 0640\n",
        "{}",
        describe(&modes)
    );
    assert!(
        !inst.root.join("etc/motd").exists(),
        "empty motd is removed"
    );
    // unattended-upgrades (installed in the testbed) keeps upgrading packages whose
    // conffiles this run edited.
    let dpkg = stdout_ok(
        &inst.chroot(&["/usr/bin/apt-config", "dump", "Dpkg::Options"]),
        "apt-config dump Dpkg::Options",
    );
    assert!(dpkg.contains("\"--force-confold\""), "{dpkg}");
    assert!(dpkg.contains("\"--force-confdef\""), "{dpkg}");
    // The shell fragment: sourced twice (login shell, then a subshell) without errors.
    let sh = inst.sh("bash -c '. /etc/profile.d/bollwerk-shell.sh; . /etc/profile.d/bollwerk-shell.sh; echo $TMOUT; umask' && dash -c '. /etc/profile.d/bollwerk-shell.sh; . /etc/profile.d/bollwerk-shell.sh; echo $TMOUT'");
    assert_eq!(
        String::from_utf8_lossy(&sh.stdout),
        "900\n0027\n900\n",
        "{}",
        describe(&sh)
    );
    assert!(sh.stderr.is_empty(), "{}", describe(&sh));
    // bash.bashrc's block gives interactive non-login shells the umask too (it returns early
    // for non-interactive ones, hence -i).
    let sh = inst.sh("bash -i -c umask </dev/null 2>/dev/null");
    assert_eq!(
        String::from_utf8_lossy(&sh.stdout),
        "0027\n",
        "{}",
        describe(&sh)
    );

    // pwquality.conf alone carries the policy (the file OpenSCAP reads): with bollwerk's
    // drop-in moved aside, the real stack still refuses a long password without a digit
    // (dcredit = -1 / minclass = 4) and one without an upper-case letter, and accepts a strong
    // one. One script: the drop-in and the test user are put back / removed at its end.
    let pw = inst.sh(
        "set -u; mv /etc/security/pwquality.conf.d/bollwerk.conf /tmp/bw-pwq.conf; useradd -M -s /bin/sh pwuser; \
         printf 'Correct-Horse-Battery-Staple\\n%.0s' 1 2 3 4 5 6 | pamtester passwd pwuser chauthtok && echo NODIGIT-ACCEPTED; \
         printf 'corr3ct-horse-battery-st4ple\\n%.0s' 1 2 3 4 5 6 | pamtester passwd pwuser chauthtok && echo NOUPPER-ACCEPTED; \
         printf 'Tr0ub4dor&3-Staple-Xyz\\n%.0s' 1 2 | pamtester passwd pwuser chauthtok && echo STRONG-ACCEPTED; \
         userdel pwuser; mv /tmp/bw-pwq.conf /etc/security/pwquality.conf.d/bollwerk.conf",
    );
    let po = String::from_utf8_lossy(&pw.stdout);
    assert!(
        po.contains("STRONG-ACCEPTED")
            && !po.contains("NODIGIT-ACCEPTED")
            && !po.contains("NOUPPER-ACCEPTED"),
        "{}",
        describe(&pw)
    );
    assert!(
        inst.read("/etc/security/pwquality.conf.d/bollwerk.conf")
            .contains("dcredit = -1")
    );

    // A real sshd: the admin's key works and sudo works; root cannot log in.
    let sshd = inst.start_sshd(2222);
    let out = sshd.ssh("admin", &key, "id -un; sudo -n true && echo sudo-ok; umask");
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        so.contains("admin") && so.contains("sudo-ok"),
        "{}\n{}",
        describe(&out),
        sshd.stderr_log()
    );
    let out = sshd.ssh("root", &key, "true");
    assert!(
        !out.status.success(),
        "root must not log in: {}",
        describe(&out)
    );
    let out = sshd.ssh_password("admin", "whatever", "true");
    assert!(!out.status.success());
    drop(sshd);

    // Level 1 audit of the result (issue 5).
    if audit_available("cis_level1_server_on_the_testbed_rootfs") {
        let out = bollwerk(&[
            "audit",
            "--level",
            "1",
            "--format",
            "json",
            "--profile",
            &site,
            "--root",
            &root,
        ]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("audit JSON: {e}\n{}", describe(&out)));
        let results = report["results"].as_array().expect("results");
        let count = |s: &str| results.iter().filter(|r| r["status"] == s).count();
        let (pass, fail) = (count("pass"), count("fail"));
        let score = pass as f64 / (pass + fail).max(1) as f64;
        let failing: Vec<String> = results
            .iter()
            .filter(|r| r["status"] == "fail")
            .map(|r| format!("{} ({}): {}", r["id"], r["cis"], r["evidence"]))
            .collect();
        eprintln!(
            "audit --level 1 after cis-level1-server: {pass} pass, {fail} fail, score {:.1} %\n  {}",
            score * 100.0,
            failing.join("\n  ")
        );
        assert!(
            score >= 0.95,
            "score {:.1} % < 95 %:\n{}",
            score * 100.0,
            failing.join("\n")
        );
        // Every remaining failure is marked in the catalog as manual or site-specific, with
        // its reason, and reported so (not a silent pass).
        let unmarked: Vec<String> = results
            .iter()
            .filter(|r| {
                r["status"] == "fail"
                    && r["disposition"]["reason"]
                        .as_str()
                        .is_none_or(str::is_empty)
            })
            .map(|r| format!("{} ({}): {}", r["id"], r["cis"], r["evidence"]))
            .collect();
        assert!(
            unmarked.is_empty(),
            "failures not marked manual/site-specific in the catalog:\n{}",
            unmarked.join("\n")
        );
    }
}

#[test]
fn cis_level1_server_in_a_booted_nspawn_container() {
    let Some(tb) = testbed_or_skip("cis_level1_server_in_a_booted_nspawn_container") else {
        return;
    };
    if which("systemd-nspawn").is_none() {
        let msg = "SKIPPED cis_level1_server_in_a_booted_nspawn_container: systemd-nspawn is not installed (tests/testbed/install-deps.sh)";
        eprintln!("\n=== {msg} ===\n");
        assert!(
            std::env::var("BOLLWERK_REQUIRE_SYSTEM_TESTS").as_deref() != Ok("1"),
            "{msg}"
        );
        return;
    }
    let inst = tb.instance();
    let tmp = TempDir::new("hardening-nspawn");
    let (_key, pubkey) = keypair(tmp.path(), "admin");
    let site = cis_site(tmp.path(), &pubkey);
    std::fs::copy(bollwerk_bin(), inst.path("/usr/local/bin/bollwerk")).unwrap();
    std::fs::copy(&site, inst.path("/root/site.toml")).unwrap();
    // The container runs bollwerk at boot, as an operator would inside an LXC, then powers off.
    inst.write(
        "/etc/systemd/system/bollwerk-test.service",
        "[Unit]\nDescription=bollwerk system test\n\n[Service]\nType=oneshot\nExecStart=/bin/sh -c 'B=/usr/local/bin/bollwerk; P=/root/site.toml; systemd-detect-virt -c >/root/virt.out 2>&1; $B plan --profile $P >/root/plan.out 2>&1; echo $? >/root/plan.rc; $B apply --profile $P >/root/apply.out 2>&1; echo $? >/root/apply.rc; $B apply --profile $P >/root/reapply.out 2>&1; echo $? >/root/reapply.rc'\nExecStartPost=/bin/systemctl poweroff --no-block\n\n[Install]\nWantedBy=multi-user.target\n",
    );
    inst.sh_ok(
        "systemctl enable bollwerk-test.service >/dev/null 2>&1 && echo 'testbed' > /etc/hostname",
    );
    let out = inst.boot_nspawn(std::time::Duration::from_secs(240));
    let rc = |f: &str| {
        std::fs::read_to_string(inst.path(f))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let text = |f: &str| std::fs::read_to_string(inst.path(f)).unwrap_or_default();
    assert_eq!(
        rc("/root/apply.rc"),
        "0",
        "apply in the container failed:\n{}\nnspawn: {}",
        text("/root/apply.out"),
        describe(&out)
    );
    assert_eq!(text("/root/virt.out").trim(), "systemd-nspawn");
    let plan = text("/root/plan.out");
    for what in ["kernel_modules", "tmp", "time", "apparmor"] {
        assert!(
            plan.contains(&format!(
                "{what}: not applicable in a container (systemd-nspawn)"
            )),
            "{what} not reported as not applicable:\n{plan}"
        );
    }
    assert!(
        text("/root/reapply.out").contains("0 changes"),
        "{}",
        text("/root/reapply.out")
    );
    assert!(
        !inst
            .path("/etc/modprobe.d/bollwerk-blacklist.conf")
            .exists()
    );
    assert!(!inst.path("/etc/systemd/system/tmp.mount").exists());
    assert!(
        inst.path("/etc/security/pwquality.conf.d/bollwerk.conf")
            .exists()
    );
    assert!(
        inst.read("/etc/pam.d/common-auth")
            .contains("pam_faillock.so preauth")
    );
}
