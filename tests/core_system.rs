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

/// A lockout case the guard refuses, proven right: plan and apply exit 2 and leave the tree as
/// it was; `apply --force` on the same copy goes through, and the real sshd then refuses the
/// admin's key. `undo` (a shell script in the root) removes the cause, and the key works again,
/// so the refusal was sshd's answer to that cause and nothing else.
fn refusal_proven_by_real_sshd(name: &str, prepare: &str, extra: &str, undo: &str, want: &str) {
    let Some(tb) = testbed_or_skip(name) else {
        return;
    };
    let inst = tb.instance();
    let tmp = TempDir::new("lockout-system");
    let (key, pubkey) = keypair(tmp.path(), "deploy");
    let site = profile(tmp.path(), &pubkey, extra);
    let root = inst.root.to_string_lossy().into_owned();
    if !prepare.is_empty() {
        inst.sh_ok(prepare);
    }
    let before = tree_state(&inst.root);
    let out = bollwerk(&["plan", "--profile", &site, "--root", &root]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(want),
        "{}",
        describe(&out)
    );
    let out = bollwerk(&["apply", "--profile", &site, "--root", &root]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_eq!(
        tree_state(&inst.root),
        before,
        "a refused apply changed the tree"
    );

    let out = bollwerk(&["apply", "--force", "--profile", &site, "--root", &root]);
    assert!(
        out.status.code() == Some(0) || out.status.code() == Some(3),
        "{}",
        describe(&out)
    );
    stdout_ok(&inst.chroot(&["/usr/sbin/sshd", "-t"]), "sshd -t");
    let sshd = inst.start_sshd(2222);
    let out = sshd.ssh("deploy", &key, "id -un");
    // sshd answers "Permission denied", or disconnects when no method is left for the user;
    // either way after it accepted the connection.
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success()
            && (err.contains("Permission denied")
                || err.contains("no authentication methods enabled")),
        "the real sshd must refuse the key: {}\n{}",
        describe(&out),
        sshd.stderr_log()
    );
    drop(sshd);
    inst.sh_ok(undo);
    let sshd = inst.start_sshd(2222);
    let out = sshd.ssh("deploy", &key, "id -un");
    assert!(
        out.status.success(),
        "control: without the cause the key works: {}\n{}",
        describe(&out),
        sshd.stderr_log()
    );
}

#[test]
fn lockout_match_block_demanding_a_password_is_refused_and_real_sshd_agrees() {
    refusal_proven_by_real_sshd(
        "lockout_match_block_demanding_a_password_is_refused_and_real_sshd_agrees",
        "printf 'Match User deploy\\n  AuthenticationMethods publickey,password\\n' > /etc/ssh/sshd_config.d/60-deploy.conf",
        "",
        "rm /etc/ssh/sshd_config.d/60-deploy.conf",
        "AuthenticationMethods publickey,password [/etc/ssh/sshd_config.d/60-deploy.conf:2",
    );
}

#[test]
fn lockout_use_pam_no_with_a_locked_password_is_refused_and_real_sshd_agrees() {
    refusal_proven_by_real_sshd(
        "lockout_use_pam_no_with_a_locked_password_is_refused_and_real_sshd_agrees",
        "",
        "[ssh]\nuse_pam = false\n",
        // `*` is "no password", not locked: sshd without PAM accepts the key then.
        "usermod -p '*' deploy",
        "deploy: UsePAM no [/etc/ssh/sshd_config.d/00-bollwerk.conf:",
    );
}

#[test]
fn lockout_group_writable_home_is_refused_and_real_sshd_agrees() {
    refusal_proven_by_real_sshd(
        "lockout_group_writable_home_is_refused_and_real_sshd_agrees",
        "",
        // Debian's OpenSSH allows a group-writable home when the group is the user's own
        // (no other member); a second member makes it unsafe.
        "home_mode = \"0775\"\n[[users]]\nname = \"ci\"\ngroups = [\"deploy\"]\n",
        "chmod 0750 /home/deploy",
        "/home/deploy is group-writable (mode 0775)",
    );
}

/// Reads an instance's files for the static evaluator.
struct InstFiles(std::path::PathBuf);

impl bollwerk::sshd_config::ConfigSource for InstFiles {
    fn read(&self, abs: &str) -> Result<Option<Vec<u8>>, String> {
        match std::fs::read(self.0.join(abs.trim_start_matches('/'))) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
    fn list(&self, dir: &str) -> Result<Vec<String>, String> {
        Ok(std::fs::read_dir(self.0.join(dir.trim_start_matches('/')))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default())
    }
}

#[test]
fn static_match_evaluation_agrees_with_real_sshd_t_c() {
    let Some(tb) = testbed_or_skip("static_match_evaluation_agrees_with_real_sshd_t_c") else {
        return;
    };
    let inst = tb.instance();
    inst.sh_ok(
        "useradd -m -G sudo alice && useradd -m bob && groupadd ops && useradd -m -G ops carol",
    );
    inst.write(
        "etc/ssh/sshd_config.d/10-a.conf",
        "PasswordAuthentication no\nAllowGroups sudo ops\nMatch Group ops\n  AllowGroups ops\n  AuthenticationMethods publickey,password\n",
    );
    inst.write(
        "etc/ssh/sshd_config.d/20-b.conf",
        "PermitRootLogin no\nMatch User bob Address 10.0.0.0/8,!10.1.0.0/16\n  PubkeyAuthentication no\n  PasswordAuthentication yes\nMatch LocalPort 2222\n  PermitRootLogin prohibit-password\n",
    );
    let main = inst.read("etc/ssh/sshd_config");
    inst.write(
        "etc/ssh/sshd_config",
        format!("{main}\nMatch User alice,!root Host *.example.org\n  KbdInteractiveAuthentication yes\n  AuthenticationMethods keyboard-interactive\nMatch All\n  PermitRootLogin yes\n"),
    );
    let flat =
        bollwerk::sshd_config::load("/etc/ssh/sshd_config", &InstFiles(inst.root.clone())).unwrap();
    let group = std::fs::read_to_string(inst.root.join("etc/group")).unwrap();
    let passwd = std::fs::read_to_string(inst.root.join("etc/passwd")).unwrap();
    let groups_of = |user: &str| -> Vec<String> {
        let gid = passwd
            .lines()
            .find(|l| l.starts_with(&format!("{user}:")))
            .and_then(|l| l.split(':').nth(3))
            .unwrap_or("")
            .to_string();
        group
            .lines()
            .filter(|l| {
                let f: Vec<&str> = l.split(':').collect();
                f.len() == 4 && (f[2] == gid || f[3].split(',').any(|m| m == user))
            })
            .map(|l| l.split(':').next().unwrap_or("").to_string())
            .collect()
    };
    let mut compared = 0;
    for user in ["root", "alice", "bob", "carol"] {
        for (addr, host) in [
            ("192.0.2.1", "192.0.2.1"),
            ("10.2.3.4", "10.2.3.4"),
            ("10.1.2.3", "10.1.2.3"),
            ("198.51.100.9", "ws1.example.org"),
        ] {
            for lport in [22u16, 2222] {
                let ci = bollwerk::sshd_config::ConnInfo {
                    user: user.into(),
                    groups: groups_of(user),
                    host: host.into(),
                    addr: addr.parse().unwrap(),
                    laddr: None,
                    lport,
                };
                let spec = bollwerk::state::sshd::conn_spec(&ci);
                let real = stdout_ok(
                    &inst.chroot(&["/usr/sbin/sshd", "-T", "-C", &spec]),
                    "sshd -T -C",
                );
                let real = bollwerk::state::sshd::SshAccess::from_values(
                    &bollwerk::state::sshd::values_from_tool(
                        &bollwerk::sshd_config::Effective::parse(&real),
                        "sshd",
                    ),
                );
                let stat = bollwerk::state::sshd::SshAccess::from_values(
                    &bollwerk::sshd_config::evaluate(&flat, Some(&ci)),
                );
                let view = |a: &bollwerk::state::sshd::SshAccess| {
                    let mut g = a.allow_groups.clone();
                    g.sort();
                    format!(
                        "root={} pw={} kbd={} pubkey={} methods={:?} allowgroups={g:?} pam={} strict={}",
                        a.permit_root_login,
                        a.password_authentication,
                        a.kbd_interactive,
                        a.pubkey,
                        a.methods,
                        a.use_pam,
                        a.strict_modes
                    )
                };
                assert_eq!(view(&stat), view(&real), "for {spec}");
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 32);
}
