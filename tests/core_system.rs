//! System tests of the core on a real Debian 12 root filesystem: the real `sshd -t`, `visudo`,
//! `sshd -T`, and a real sshd in a network namespace proving that the provisioned admin logs in
//! with a key while password and root logins are refused. Also: apply run inside the chroot,
//! rollback byte-identical on the real tree, and a validator rejecting a bad candidate.

mod common;

use std::process::Command;

use common::testbed::*;

fn profile(dir: &std::path::Path, pubkey: &str, extra: &str) -> String {
    let p = dir.join("site.toml");
    std::fs::write(
        &p,
        format!(
            "extends = \"baseline\"\n[host]\nhostname = \"app01\"\n[[users]]\nname = \"deploy\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{pubkey}\"]\nexclusive_keys = true\n{extra}"
        ),
    )
    .unwrap();
    p.to_string_lossy().into_owned()
}

fn bollwerk(args: &[&str]) -> std::process::Output {
    run_capture(
        Command::new(bollwerk_bin()).args(args),
        None,
        DEFAULT_TIMEOUT,
    )
}

#[test]
fn baseline_admin_key_login_works_password_and_root_refused() {
    let Some(tb) = testbed_or_skip("baseline_admin_key_login_works_password_and_root_refused")
    else {
        return;
    };
    let inst = tb.instance();
    let tmp = TempDir::new("core-system");
    let (key, pubkey) = keypair(tmp.path(), "deploy");
    let site = profile(tmp.path(), &pubkey, "");
    let root = inst.root.to_string_lossy().into_owned();
    // Give root a password and the same key, so refusals below are sshd's doing, not missing credentials.
    inst.sh_ok(&format!(
        "echo 'root:rootpw' | chpasswd && mkdir -p /root/.ssh && echo '{pubkey}' > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys"
    ));
    let pristine = tree_state(&inst.root);

    let out = bollwerk(&["plan", "--profile", &site, "--root", &root]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let out = bollwerk(&["apply", "--profile", &site, "--root", &root]);
    assert!(out.status.success(), "{}", describe(&out));

    // The real validators accept the result.
    stdout_ok(&inst.chroot(&["/usr/sbin/sshd", "-t"]), "sshd -t");
    stdout_ok(&inst.chroot(&["/usr/sbin/visudo", "-c"]), "visudo -c");
    let t = stdout_ok(&inst.chroot(&["/usr/sbin/sshd", "-T"]), "sshd -T");
    for want in [
        "permitrootlogin no",
        "passwordauthentication no",
        "kbdinteractiveauthentication no",
        "allowgroups sudo",
        "maxauthtries 3",
        "x11forwarding no",
        "loglevel VERBOSE",
        "ciphers aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-ctr",
        "macs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com",
    ] {
        assert!(t.lines().any(|l| l == want), "sshd -T lacks {want:?}:\n{t}");
    }
    // The password hash and user exist as the real tools see them.
    stdout_ok(&inst.chroot(&["/usr/bin/id", "deploy"]), "id deploy");
    stdout_ok(&inst.chroot(&["/usr/sbin/pwck", "-r", "-q"]), "pwck");
    stdout_ok(&inst.chroot(&["/usr/sbin/grpck", "-r"]), "grpck");
    let sudo = inst.chroot(&["/usr/bin/sudo", "-l", "-U", "deploy"]);
    assert!(
        String::from_utf8_lossy(&sudo.stdout).contains("NOPASSWD: ALL"),
        "{}",
        describe(&sudo)
    );

    // A real sshd: key login works, passwords and root are refused.
    let sshd = inst.start_sshd(2222);
    let out = sshd.ssh("deploy", &key, "id -un; sudo -n true && echo sudo-ok");
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        so.contains("deploy") && so.contains("sudo-ok"),
        "{}\n{}",
        describe(&out),
        sshd.stderr_log()
    );
    let out = sshd.ssh_password("deploy", "whatever", "true");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        describe(&out)
    );
    let out = sshd.ssh_password("root", "rootpw", "true");
    assert!(
        !out.status.success(),
        "root password login must fail: {}",
        describe(&out)
    );
    let out = sshd.ssh("root", &key, "true");
    assert!(
        !out.status.success(),
        "root key login must fail: {}",
        describe(&out)
    );
    drop(sshd);

    // Idempotent on the real tree.
    let out = bollwerk(&["apply", "--profile", &site, "--root", &root]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 changes"),
        "{}",
        describe(&out)
    );

    // The admin's sudo left a file in the home the run created: rollback refuses to delete data
    // it did not create, says which, and --force restores anyway.
    let out = bollwerk(&["rollback", "--root", &root]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/home/deploy/.sudo_as_admin_successful"),
        "{}",
        describe(&out)
    );
    let out = bollwerk(&["rollback", "--force", "--root", &root]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(tree_state(&inst.root), pristine);
    // And the pristine config still lets root in with a password (control for the refusals above).
    let sshd = inst.start_sshd(2222);
    let out = sshd.ssh("root", &key, "true");
    assert!(
        out.status.success(),
        "after rollback root's key works again: {}\n{}",
        describe(&out),
        sshd.stderr_log()
    );
}

#[test]
fn apply_inside_the_chroot_with_root_slash() {
    let Some(tb) = testbed_or_skip("apply_inside_the_chroot_with_root_slash") else {
        return;
    };
    let inst = tb.instance();
    let tmp = TempDir::new("core-chroot");
    let (_key, pubkey) = keypair(tmp.path(), "deploy");
    let site = profile(tmp.path(), &pubkey, "");
    std::fs::copy(bollwerk_bin(), inst.path("/usr/local/bin/bollwerk")).unwrap();
    std::fs::copy(&site, inst.path("/root/site.toml")).unwrap();
    let out = inst.chroot(&[
        "/usr/local/bin/bollwerk",
        "apply",
        "--profile",
        "/root/site.toml",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let so = String::from_utf8_lossy(&out.stdout);
    assert!(
        so.contains("skipped (not a live system): /usr/bin/systemctl reload ssh.service"),
        "{so}"
    );
    stdout_ok(&inst.chroot(&["/usr/sbin/sshd", "-t"]), "sshd -t");
    let out = inst.chroot(&[
        "/usr/local/bin/bollwerk",
        "plan",
        "--profile",
        "/root/site.toml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

#[test]
fn a_candidate_sshd_rejects_is_never_activated() {
    let Some(tb) = testbed_or_skip("a_candidate_sshd_rejects_is_never_activated") else {
        return;
    };
    let inst = tb.instance();
    let tmp = TempDir::new("core-invalid");
    let (_key, pubkey) = keypair(tmp.path(), "deploy");
    let site = profile(
        tmp.path(),
        &pubkey,
        "[ssh]\nextra = { PermitTunnel = \"sideways\" }\n",
    );
    let root = inst.root.to_string_lossy().into_owned();
    let before = tree_state(&inst.root);
    let out = bollwerk(&["apply", "--profile", &site, "--root", &root]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sshd -t") && err.contains("PermitTunnel"),
        "{err}"
    );
    assert!(
        err.contains("/etc/ssh/sshd_config.d/00-bollwerk.conf (candidate)"),
        "{err}"
    );
    assert_eq!(
        tree_state(&inst.root),
        before,
        "nothing may change when validation fails"
    );
    stdout_ok(
        &inst.chroot(&["/usr/sbin/sshd", "-t"]),
        "sshd -t on the untouched config",
    );
}

#[test]
fn every_typed_ssh_key_verifies_against_the_real_sshd_t() {
    let Some(tb) = testbed_or_skip("every_typed_ssh_key_verifies_against_the_real_sshd_t") else {
        return;
    };
    let inst = tb.instance();
    let tmp = TempDir::new("core-sshd-keys");
    let (key, pubkey) = keypair(tmp.path(), "deploy");
    inst.write("/etc/issue.net", "Authorised access only.\n");
    let extra = "[ssh]\nport = 2222\nlisten_addresses = [\"127.0.0.1\"]\nbanner = \"/etc/issue.net\"\nauthentication_methods = \"publickey\"\nrequired_rsa_size = 3072\nallow_users = [\"deploy\", \"ops\"]\ndeny_groups = [\"nologin\"]\nmax_sessions = 4\nclient_alive_count_max = 2\nextra = { PermitTunnel = \"no\", Compression = \"no\" }\n";
    let site = profile(tmp.path(), &pubkey, extra);
    let root = inst.root.to_string_lossy().into_owned();
    let out = bollwerk(&["apply", "--profile", &site, "--root", &root]);
    assert!(
        out.status.success(),
        "apply (with verification by sshd -T) failed: {}",
        describe(&out)
    );
    let t = stdout_ok(&inst.chroot(&["/usr/sbin/sshd", "-T"]), "sshd -T");
    for want in [
        "port 2222",
        "listenaddress 127.0.0.1:2222",
        "banner /etc/issue.net",
        "authenticationmethods publickey",
        "requiredrsasize 3072",
        "allowusers deploy",
        "allowusers ops",
        "maxsessions 4",
        "permittunnel no",
    ] {
        assert!(t.lines().any(|l| l == want), "sshd -T lacks {want:?}:\n{t}");
    }
    let sshd = inst.start_sshd_with(2222, &[]);
    let out = sshd.ssh("deploy", &key, "true");
    assert!(
        out.status.success(),
        "{}\n{}",
        describe(&out),
        sshd.stderr_log()
    );
}
