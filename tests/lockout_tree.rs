//! Tree tests of the lockout guard on the effective sshd model: every case after which sshd
//! would no longer accept the admin's key is refused (exit 2, the tree unchanged to the
//! mtime), and `plan` says who can log in (and warns about key holders who are cut off).

mod common;

use bollwerk::ExitStatus;
use common::tree::{Tree, fake_runner};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPci/6iPPKNm3TqnlFNu0Zy6jtqtz5kw0YO3RjFH01v alice@laptop";
const KEY2: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh3c2kB0sC9s7Y0n2JqF1GJpfZ3bGm0vQm0d7mE2wVn bob@desk";

/// `baseline` plus one password-less admin `deploy` (sudo group) with a key.
fn site(extra: &str) -> String {
    format!(
        "extends = \"baseline\"\n[[users]]\nname = \"deploy\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{KEY}\"]\n{extra}"
    )
}

/// The tree with mtimes, except `var/lib` (whose mtime the run lock's state directory
/// `var/lib/bollwerk` touches).
fn snap(t: &Tree) -> std::collections::BTreeMap<String, String> {
    let mut s = t.snapshot_with_mtime(true);
    s.remove("var/lib");
    s
}

/// Applies `profile`, expects exit 2 and an unchanged tree (contents, modes, owners, mtimes);
/// returns the output.
fn refused(t: &Tree, profile: &str) -> String {
    let before = snap(t);
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", profile]);
    assert_eq!(st, ExitStatus::Refused, "{out}");
    assert_eq!(snap(t), before, "a refused apply changed the tree");
    out
}

fn plan(t: &Tree, profile: &str) -> (ExitStatus, String) {
    t.run(&fake_runner(), &["plan", "--profile", profile])
}

#[test]
fn plan_prints_who_can_log_in() {
    let t = Tree::fixture("debian12");
    let p = t.profile("site", &site(""));
    let (st, out) = plan(&t, &p);
    assert_eq!(st, ExitStatus::Pending, "{out}");
    assert!(
        out.contains("after apply, SSH logins: root: refused (PermitRootLogin no [/etc/ssh/sshd_config.d/00-bollwerk.conf:"),
        "{out}"
    );
    assert!(out.contains("deploy (publickey, any address)"), "{out}");
}

#[test]
fn match_block_demanding_a_password_the_admin_lacks() {
    let t = Tree::fixture("debian12");
    t.write(
        "etc/ssh/sshd_config.d/60-deploy.conf",
        "# an old drop-in\nMatch User deploy\n  AuthenticationMethods publickey,password\n",
    );
    let p = t.profile("site", &site(""));
    let out = refused(&t, &p);
    assert!(
        out.contains("AuthenticationMethods publickey,password [/etc/ssh/sshd_config.d/60-deploy.conf:3 (in /etc/ssh/sshd_config.d/60-deploy.conf:2 Match User deploy)] cannot be satisfied: deploy has only a key"),
        "{out}"
    );
    // The global reading (sshd -T without -C) sees no AuthenticationMethods at all.
    assert!(!out.contains("AuthenticationMethods is"), "{out}");
}

#[test]
fn match_block_turning_off_public_keys() {
    let t = Tree::fixture("debian12");
    // The main file's Match (after the Include) applies to the sudo group.
    let main = t.read("etc/ssh/sshd_config");
    t.write(
        "etc/ssh/sshd_config",
        &format!("{main}Match Group sudo\n  PubkeyAuthentication no\n"),
    );
    let p = t.profile("site", &site(""));
    let out = refused(&t, &p);
    assert!(
        out.contains("deploy: public key authentication is off [/etc/ssh/sshd_config:"),
        "{out}"
    );

    // Off only from one network: the admin can still log in from elsewhere, and plan says
    // from where.
    let t = Tree::fixture("debian12");
    t.write(
        "etc/ssh/sshd_config.d/60-net.conf",
        "Match Address 10.0.0.0/8,!10.1.0.0/16\n  PubkeyAuthentication no\n",
    );
    let (st, out) = plan(&t, &p);
    assert_eq!(st, ExitStatus::Pending, "{out}");
    assert!(
        out.contains("deploy (publickey, any address except 10.0.0.0/8)"),
        "{out}"
    );
}

#[test]
fn use_pam_no_with_a_locked_password() {
    let t = Tree::fixture("debian12");
    let p = t.profile("site", &site("[ssh]\nuse_pam = false\n"));
    let out = refused(&t, &p);
    assert!(
        out.contains("deploy: UsePAM no [/etc/ssh/sshd_config.d/00-bollwerk.conf:"),
        "{out}"
    );
    assert!(
        out.contains("sshd without PAM refuses locked accounts"),
        "{out}"
    );
    // With a usable password hash the account is not locked.
    let p = t.profile(
        "site",
        &site("password_hash = \"$6$saltsalt$Fd2g3mIY9jNBs7Z6lR0yUO/t5dA5Ss7uKRrWcWnqJr5XcV0G6G1vPZjQfS3jJb8vYbXwQm1T3p9RFh7m2a4VG1\"\n[ssh]\nuse_pam = false\n"),
    );
    let (st, out) = plan(&t, &p);
    assert_eq!(st, ExitStatus::Pending, "{out}");
}

#[test]
fn strict_modes_group_writable_home_from_the_profile() {
    let t = Tree::fixture("debian12");
    // Debian's OpenSSH accepts a group-writable home whose group is the user's own…
    let p = t.profile("site", &site("home_mode = \"0775\"\n"));
    let (st, out) = plan(&t, &p);
    assert_eq!(st, ExitStatus::Pending, "{out}");
    // …not when another user is in that group.
    let shared = "home_mode = \"0775\"\n[[users]]\nname = \"ci\"\ngroups = [\"deploy\"]\n";
    let p = t.profile("site", &site(shared));
    let out = refused(&t, &p);
    assert!(
        out.contains("sshd ignores its authorized_keys (StrictModes): /home/deploy is group-writable (mode 0775)"),
        "{out}"
    );
    // StrictModes no in the profile's extra directives: sshd does not check, nor does the guard.
    let p = t.profile(
        "site",
        &site(&format!("{shared}[ssh.extra]\nStrictModes = \"no\"\n")),
    );
    let (st, out) = plan(&t, &p);
    assert_eq!(st, ExitStatus::Pending, "{out}");
}

#[test]
fn strict_modes_existing_key_file_mode_and_owner() {
    // The Ubuntu image's user holds the only key.
    let profile = "extends = \"baseline\"\n[[users]]\nname = \"ubuntu\"\ngroups = [\"sudo\"]\n";
    let t = Tree::fixture("ubuntu2204");
    let keys = t.path("home/ubuntu/.ssh/authorized_keys");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o666)).unwrap();
    let p = t.profile("site", profile);
    let out = refused(&t, &p);
    assert!(
        out.contains("/home/ubuntu/.ssh/authorized_keys is world-writable (mode 0666)"),
        "{out}"
    );
    // Wrong owner of .ssh.
    let t = Tree::fixture("ubuntu2204");
    std::os::unix::fs::chown(t.path("home/ubuntu/.ssh"), Some(4242), None).unwrap();
    let p = t.profile("site", profile);
    let out = refused(&t, &p);
    assert!(
        out.contains("/home/ubuntu/.ssh is owned by uid 4242"),
        "{out}"
    );
}

#[test]
fn login_shell_missing_or_not_executable() {
    let t = Tree::fixture("debian12");
    let p = t.profile("site", &site("shell = \"/bin/zsh\"\n"));
    let out = refused(&t, &p);
    assert!(
        out.contains("deploy: login shell /bin/zsh does not exist in the root"),
        "{out}"
    );
    t.write("bin/zsh", "#!/bin/sh\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(t.path("bin/zsh"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = refused(&t, &p);
    assert!(
        out.contains("deploy: login shell /bin/zsh is not executable"),
        "{out}"
    );
    std::fs::set_permissions(t.path("bin/zsh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (st, out) = plan(&t, &p);
    assert_eq!(st, ExitStatus::Pending, "{out}");
}

#[test]
fn socket_activated_ssh_with_a_new_port() {
    let t = Tree::fixture("debian12");
    t.write(
        "lib/systemd/system/ssh.socket",
        "[Socket]\nListenStream=22\nAccept=yes\n",
    );
    std::fs::create_dir_all(t.path("etc/systemd/system/sockets.target.wants")).unwrap();
    std::os::unix::fs::symlink(
        "/lib/systemd/system/ssh.socket",
        t.path("etc/systemd/system/sockets.target.wants/ssh.socket"),
    )
    .unwrap();
    let p = t.profile("site", &site("[ssh]\nport = 2222\n"));
    let out = refused(&t, &p);
    assert!(
        out.contains(
            "ssh.socket is enabled: systemd listens on port(s) 22 (ListenStream in ssh.socket)"
        ),
        "{out}"
    );
    assert!(out.contains("profile wants port(s) 2222"), "{out}");
    // The socket's own port: nothing the socket ignores, the plan goes through.
    let p = t.profile("site", &site(""));
    let (st, out) = plan(&t, &p);
    assert_eq!(st, ExitStatus::Pending, "{out}");
}

#[test]
fn removing_openssh_server() {
    let t = Tree::fixture("debian12");
    let p = t.profile("site", &site("[packages]\nremove = [\"openssh-server\"]\n"));
    let out = refused(&t, &p);
    assert!(
        out.contains(
            "packages.remove removes openssh-server: nobody could log in over SSH afterwards"
        ),
        "{out}"
    );
}

#[test]
fn files_and_write_files_replacing_guarded_files() {
    // [[files]] changing the mode of the PAM stack sshd uses.
    let t = Tree::fixture("debian12");
    t.write("etc/pam.d/sshd", "@include common-auth\n");
    let p = t.profile(
        "site",
        &site("[[files]]\npath = \"/etc/pam.d/sshd\"\nmode = \"0600\"\n"),
    );
    let out = refused(&t, &p);
    assert!(
        out.contains("[[files]] /etc/pam.d/sshd replaces /etc/pam.d, which the lockout guard and the validators reason about"),
        "{out}"
    );
    // First-boot write_files replacing the nftables ruleset or a PAM file.
    for path in ["/etc/nftables.conf", "/etc/pam.d/common-auth"] {
        let t = Tree::fixture("debian12");
        let p = t.profile(
            "site",
            &site(&format!(
                "[firstboot]\n[[firstboot.write_files]]\npath = \"{path}\"\ncontent = \"flush ruleset\\n\"\n"
            )),
        );
        let out = refused(&t, &p);
        assert!(
            out.contains(&format!("write_files {path} replaces")),
            "{out}"
        );
    }
    // write_files into sshd_config.d is refused when the profile loads (exit 2 as well).
    let t = Tree::fixture("debian12");
    let p = t.profile(
        "site",
        &site("[firstboot]\n[[firstboot.write_files]]\npath = \"/etc/ssh/sshd_config.d/01-x.conf\"\ncontent = \"PubkeyAuthentication no\\n\"\n"),
    );
    refused(&t, &p);
}

#[test]
fn deploy_user_cut_off_by_allow_groups_is_warned_with_a_fix_that_works() {
    let t = Tree::fixture("debian12");
    let ci = format!("[[users]]\nname = \"ci\"\nssh_keys = [\"{KEY2}\"]\n");
    let p = t.profile("site", &site(&ci));
    let (st, out) = plan(&t, &p);
    assert_eq!(st, ExitStatus::Pending, "{out}");
    assert!(
        out.contains("warning [lockout]: ci has an SSH key but cannot log in after apply: not in AllowGroups sudo"),
        "{out}"
    );
    assert!(
        out.contains("ssh.allow_groups = [\"sudo\", \"ci\"]"),
        "{out}"
    );
    assert!(
        out.contains("ci: refused (not in AllowGroups sudo"),
        "{out}"
    );
    // The named fix lets ci in, and the warning goes away.
    let p = t.profile(
        "site",
        &site(&format!("{ci}[ssh]\nallow_groups = [\"sudo\", \"ci\"]\n")),
    );
    let (st, out) = plan(&t, &p);
    assert_eq!(st, ExitStatus::Pending, "{out}");
    assert!(!out.contains("cannot log in after apply"), "{out}");
    assert!(out.contains("ci (publickey, any address)"), "{out}");
}

#[test]
fn after_apply_the_real_sshd_t_c_is_asked_who_can_log_in() {
    let t = Tree::fixture("debian12");
    let p = t.profile("site", &site(""));
    // An sshd whose per-connection answer disagrees with the files (say, a Match block in a
    // file the static reading could not see): verification reports it instead of "ok".
    let runner = fake_runner();
    runner.respond_with("/usr/sbin/sshd -T -C", |_, _| bollwerk::exec::Output {
        code: 0,
        stdout: "permitrootlogin no\npubkeyauthentication no\npasswordauthentication no\nkbdinteractiveauthentication no\nusepam yes\nstrictmodes yes\nallowgroups sudo\n".into(),
        stderr: String::new(),
    });
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_ne!(st, ExitStatus::Ok, "{out}");
    assert!(
        runner.log().iter().any(|l| l.starts_with(
            "/usr/sbin/sshd -T -C user=deploy,host=203.0.113.7,addr=203.0.113.7,lport=22"
        )),
        "{:?}",
        runner.log()
    );
    // The plain fake (sshd -T -C agreeing with the drop-in) verifies fine.
    let t = Tree::fixture("debian12");
    let p = t.profile("site", &site(""));
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
}

#[test]
fn an_admin_who_logs_in_with_a_key_today_keeps_that_login() {
    // ubuntu (sudo, with a key) logs in today; a new admin would still get in, but the profile
    // would cut ubuntu off: refused all the same.
    let t = Tree::fixture("ubuntu2204");
    let p = t.profile("site", &site("[ssh]\nallow_users = [\"deploy\"]\n"));
    let out = refused(&t, &p);
    assert!(
        out.contains("ubuntu logs in with a key today and could not after this plan: not in AllowUsers deploy"),
        "{out}"
    );
    // Letting ubuntu in too is fine.
    let p = t.profile(
        "site",
        &site("[ssh]\nallow_users = [\"deploy\", \"ubuntu\"]\n"),
    );
    let (st, out) = plan(&t, &p);
    assert_eq!(st, ExitStatus::Pending, "{out}");
}
