//! Tree tests of the OS hardening modules (issue 7) against a Debian 12 fixture made of the
//! testbed rootfs's own files (`tests/fixtures/debian12-hardening`), in-process with a fake
//! runner: contents, modes, owners, in-place edits that keep every other line, idempotence,
//! rollback, container awareness.

mod common;

use bollwerk::ExitStatus;
use common::tree::{Tree, fake_runner};

const HEADER: &str = "# Managed by bollwerk — local edits are overwritten";
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPci/6iPPKNm3TqnlFNu0Zy6jtqtz5kw0YO3RjFH01v alice@laptop";

/// A profile with an admin who can log in with a key (so the lockout guard is satisfied),
/// plus `extra`.
fn site(extra: &str) -> String {
    format!(
        "[[users]]\nname = \"admin\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{KEY}\"]\n\n{extra}"
    )
}

/// Applies `profile` to a fresh fixture, then checks: a second apply changes nothing, and a
/// rollback restores the tree byte-identically. Returns the tree after the first apply (it is
/// re-applied after the rollback so the caller can assert on it) and the plan's text.
fn apply_idempotent_rollback(
    fixture: &str,
    profile: &str,
    prepare: impl Fn(&Tree),
) -> (Tree, String) {
    let t = Tree::fixture(fixture);
    prepare(&t);
    let p = t.profile("site", &site(profile));
    let before = t.snapshot();
    let runner = fake_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let (st, again) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{again}");
    assert!(
        again.contains("0 changes"),
        "second apply must change nothing:\n{again}"
    );
    let (st, rb) = t.run(&runner, &["rollback"]);
    assert_eq!(st, ExitStatus::Ok, "{rb}");
    assert_eq!(t.snapshot(), before, "rollback must restore the tree");
    let (st, out2) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out2}");
    (t, plan)
}

#[test]
fn sudo_defaults_dropin_validated_with_visudo() {
    let profile =
        "[sudo]\nuse_pty = true\nlogfile = \"/var/log/sudo.log\"\ntimestamp_timeout = 15\n";
    let (t, _) = apply_idempotent_rollback("debian12-hardening", profile, |_| {});
    assert_eq!(
        t.read("etc/sudoers.d/bollwerk-defaults"),
        format!(
            "{HEADER}\nDefaults use_pty\nDefaults logfile=\"/var/log/sudo.log\"\nDefaults timestamp_timeout=15\n"
        )
    );
    assert_eq!(t.meta("etc/sudoers.d/bollwerk-defaults"), (0o440, 0, 0));

    // A candidate visudo rejects is never activated.
    let t = Tree::fixture("debian12-hardening");
    let runner = fake_runner();
    runner.push(
        "/usr/sbin/visudo -c -q -f /var/lib/bollwerk/tmp/",
        1,
        "",
        ">>> bollwerk-defaults: syntax error near line 2 <<<",
    );
    let p = t.profile("site", &site(profile));
    let before = t.snapshot();
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Failure, "{out}");
    assert_eq!(t.snapshot(), before);
    assert!(
        runner
            .log()
            .iter()
            .any(|c| c.starts_with("/usr/sbin/visudo -c -q -f"))
    );
}

#[test]
fn sudo_timeout_out_of_range_is_a_profile_error() {
    let t = Tree::fixture("debian12-hardening");
    let p = t.profile("bad", "[sudo]\ntimestamp_timeout = 99999\n");
    let (st, out) = t.run(&fake_runner(), &["validate", "--profile", &p]);
    assert_eq!(st, ExitStatus::Refused, "{out}");
}

#[test]
fn banners_replace_os_leaking_texts_and_silence_motd_scripts() {
    let profile = "[banners]\nissue = \"Authorized uses only. All activity may be monitored and reported.\"\nissue_net = \"Authorized uses only. All activity may be monitored and reported.\\n\"\nmotd = \"\"\ndynamic_motd = false\n";
    let t0 = Tree::fixture("debian12-hardening");
    assert!(t0.read("etc/issue").contains("Debian GNU/Linux 12 \\n \\l"));
    let (t, out) = apply_idempotent_rollback("debian12-hardening", profile, |_| {});
    let want = "Authorized uses only. All activity may be monitored and reported.\n";
    assert_eq!(t.read("etc/issue"), want);
    assert_eq!(t.read("etc/issue.net"), want);
    // An empty motd is removed: OpenSCAP accepts only an absent file (or its sentence).
    assert!(!t.exists("etc/motd"), "motd = \"\" removes /etc/motd");
    for f in ["etc/issue", "etc/issue.net"] {
        assert_eq!(t.meta(f), (0o644, 0, 0), "{f}");
    }
    assert_eq!(t.meta("etc/update-motd.d/10-uname").0, 0o644);
    assert_eq!(t.meta("etc/update-motd.d/92-unattended-upgrades").0, 0o644);
    assert!(out.contains("[ssh] banner = \"/etc/issue.net\""), "{out}");
}

#[test]
fn banner_with_getty_escapes_is_rejected_with_position() {
    let t = Tree::fixture("debian12-hardening");
    let p = t.profile("bad", "[banners]\nissue = \"Welcome to \\\\s \\\\r\"\n");
    let (st, out) = t.run(&fake_runner(), &["validate", "--profile", &p]);
    assert_eq!(st, ExitStatus::Refused, "{out}");
}

const CIS_MODULES: &str = "[kernel_modules]\ndisable = [\"cramfs\", \"freevxfs\", \"jffs2\", \"hfs\", \"hfsplus\", \"squashfs\", \"udf\", \"usb-storage\", \"dccp\", \"sctp\", \"rds\", \"tipc\"]\n";

#[test]
fn kernel_modules_blacklisted_and_checked_with_modprobe() {
    let (t, _) = apply_idempotent_rollback("debian12-hardening", CIS_MODULES, |_| {});
    let f = t.read("etc/modprobe.d/bollwerk-blacklist.conf");
    for m in ["cramfs", "squashfs", "usb-storage", "tipc"] {
        assert!(
            f.contains(&format!("install {m} /bin/false\nblacklist {m}\n")),
            "{f}"
        );
    }
    assert_eq!(
        t.meta("etc/modprobe.d/bollwerk-blacklist.conf"),
        (0o644, 0, 0)
    );

    // snapd keeps squashfs (with a warning); `keep` opts out without one.
    let t = Tree::fixture("debian12-hardening");
    let mut status = t.read("var/lib/dpkg/status");
    status.push_str("\nPackage: snapd\nStatus: install ok installed\nVersion: 2.57.6-1\n");
    t.write("var/lib/dpkg/status", &status);
    let p = t.profile(
        "site",
        &site(&format!("{CIS_MODULES}keep = [\"usb_storage\"]\n")),
    );
    let runner = fake_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(
        plan.contains("squashfs stays loadable: snapd is installed"),
        "{plan}"
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let f = t.read("etc/modprobe.d/bollwerk-blacklist.conf");
    assert!(!f.contains("squashfs") && !f.contains("usb"), "{f}");
    assert!(
        runner.log().iter().any(
            |c| c.starts_with("/usr/sbin/modprobe -C /var/lib/bollwerk/tmp/")
                && c.ends_with("--showconfig")
        ),
        "{:?}",
        runner.log()
    );
}

/// CIS level 2 disables `overlay`; a host that runs containers keeps it (Docker's overlay2
/// storage would be gone at the next boot), with a warning, and disables the rest.
#[test]
fn kernel_modules_keep_overlay_on_a_container_host() {
    let list = CIS_MODULES.replace("\"tipc\"]", "\"tipc\", \"overlay\"]");
    // Without a container engine, overlay is disabled like the others.
    let t = Tree::fixture("debian12-hardening");
    let p = t.profile("site", &site(&list));
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let f = t.read("etc/modprobe.d/bollwerk-blacklist.conf");
    assert!(f.contains("install overlay /bin/false\n"), "{f}");
    // docker.io installed: overlay stays loadable, the warning says why and how to silence it.
    let t = Tree::fixture("debian12-hardening");
    let mut status = t.read("var/lib/dpkg/status");
    status.push_str(
        "\nPackage: docker.io\nStatus: install ok installed\nVersion: 20.10.24+dfsg1-1+b3\n",
    );
    t.write("var/lib/dpkg/status", &status);
    let p = t.profile("site", &site(&list));
    let (st, plan) = t.run(&fake_runner(), &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(
        plan.contains("overlay stays loadable: docker.io is installed"),
        "{plan}"
    );
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let f = t.read("etc/modprobe.d/bollwerk-blacklist.conf");
    assert!(!f.contains("overlay"), "{f}");
    assert!(f.contains("install tipc /bin/false\n"), "{f}");
}

#[test]
fn kernel_modules_not_applicable_in_a_container() {
    let t = Tree::fixture("debian12-hardening");
    t.write("run/systemd/container", "lxc\n");
    let p = t.profile("site", &site(CIS_MODULES));
    let (_, plan) = t.run(&fake_runner(), &["plan", "--profile", &p]);
    assert!(
        plan.contains("kernel_modules: not applicable in a container (lxc): modules are loaded by the host's kernel"),
        "{plan}"
    );
    assert!(!plan.contains("modprobe.d"), "{plan}");
}

#[test]
fn cron_allow_root_only_and_restrictive_modes() {
    let profile = "[cron]\nallow = [\"root\"]\nharden_permissions = true\n";
    let (t, plan) = apply_idempotent_rollback("debian12-hardening", profile, |t| {
        t.write("etc/cron.deny", "baduser\n");
    });
    assert_eq!(t.read("etc/cron.allow"), format!("{HEADER}\nroot\n"));
    assert_eq!(t.meta("etc/cron.allow"), (0o640, 0, 101), "group crontab");
    assert_eq!(t.meta("etc/cron.deny"), (0o640, 0, 0));
    assert!(!t.exists("etc/at.allow"), "at is not installed");
    assert!(plan.contains("at is not installed"), "{plan}");
    assert_eq!(t.meta("etc/crontab"), (0o600, 0, 0));
    for d in ["hourly", "daily", "weekly", "monthly", "yearly", "d"] {
        assert_eq!(t.meta(&format!("etc/cron.{d}")), (0o700, 0, 0), "{d}");
    }
}

#[test]
fn coredumps_disabled_by_drop_ins() {
    let (t, _) =
        apply_idempotent_rollback("debian12-hardening", "[coredump]\ndisable = true\n", |_| {});
    assert!(
        t.read("etc/security/limits.d/bollwerk-coredump.conf")
            .ends_with("*\thard\tcore\t0\n")
    );
    assert_eq!(
        t.read("etc/systemd/coredump.conf.d/bollwerk.conf"),
        format!("{HEADER}\n[Coredump]\nStorage=none\nProcessSizeMax=0\n")
    );
    assert_eq!(t.meta("etc/systemd/coredump.conf.d"), (0o755, 0, 0));
    // Login shells too, in the form Lynis (KRNL-5820) reads: `ulimit -c 0` in profile.d.
    let shell = t.read("etc/profile.d/bollwerk-coredump.sh");
    assert!(shell.starts_with(HEADER), "{shell}");
    assert!(
        shell.lines().any(|l| l.starts_with("ulimit -c 0")),
        "{shell}"
    );
    assert_eq!(t.meta("etc/profile.d/bollwerk-coredump.sh"), (0o644, 0, 0));
}

const TMP: &str = "[tmp]\ntmpfs = true\noptions = [\"nodev\", \"nosuid\", \"noexec\"]\nsize = \"25%\"\ndev_shm_options = [\"nodev\", \"nosuid\", \"noexec\"]\n";

#[test]
fn tmp_as_hardened_tmpfs_and_dev_shm_in_fstab() {
    let (t, plan) = apply_idempotent_rollback("debian12-hardening", TMP, |_| {});
    let unit = t.read("etc/systemd/system/tmp.mount");
    assert!(unit.starts_with(HEADER));
    assert!(
        unit.contains(
            "\nOptions=mode=1777,strictatime,nodev,nosuid,noexec,size=25%%,nr_inodes=1m\n"
        ),
        "{unit}"
    );
    assert_eq!(
        std::fs::read_link(t.path("etc/systemd/system/local-fs.target.wants/tmp.mount"))
            .unwrap()
            .to_string_lossy(),
        "/etc/systemd/system/tmp.mount"
    );
    assert_eq!(
        t.read("etc/fstab"),
        "# UNCONFIGURED FSTAB FOR BASE SYSTEM\ntmpfs\t/dev/shm\ttmpfs\tdefaults,nodev,nosuid,noexec\t0\t0\n"
    );
    assert!(
        t.read("etc/apt/apt.conf.d/50bollwerk-tmp-noexec")
            .contains("APT::ExtractTemplates::TempDir \"/var/tmp\";")
    );
    assert!(
        plan.contains("checked with `systemd-analyze verify`"),
        "{plan}"
    );
    assert!(plan.contains("checked with `findmnt --verify`"), "{plan}");
}

#[test]
fn tmp_on_its_own_partition_gets_options_in_fstab() {
    let (t, plan) = apply_idempotent_rollback("debian12-hardening", TMP, |t| {
        t.write(
            "etc/fstab",
            "# <file system> <mount point> <type> <options> <dump> <pass>\nUUID=aa /               ext4    errors=remount-ro 0       1\nUUID=bb /tmp            ext4    defaults,exec        0       2\n",
        );
    });
    assert_eq!(
        t.read("etc/fstab"),
        "# <file system> <mount point> <type> <options> <dump> <pass>\nUUID=aa /               ext4    errors=remount-ro 0       1\nUUID=bb /tmp            ext4    defaults,nodev,nosuid,noexec        0       2\ntmpfs\t/dev/shm\ttmpfs\tdefaults,nodev,nosuid,noexec\t0\t0\n"
    );
    assert!(!t.exists("etc/systemd/system/tmp.mount"));
    assert!(plan.contains("/etc/fstab mounts /tmp itself"), "{plan}");
}

#[test]
fn tmp_not_applicable_in_a_container() {
    let t = Tree::fixture("debian12-hardening");
    t.write("run/systemd/container", "systemd-nspawn\n");
    let p = t.profile("site", &site(TMP));
    let (_, plan) = t.run(&fake_runner(), &["plan", "--profile", &p]);
    assert!(
        plan.contains("tmp: not applicable in a container (systemd-nspawn)"),
        "{plan}"
    );
    assert!(
        !plan.contains("tmp.mount") && !plan.contains("fstab"),
        "{plan}"
    );
}

#[test]
fn time_timesyncd_with_servers_and_other_daemons_disabled() {
    let profile = "[time]\ndaemon = \"timesyncd\"\nservers = [\"0.de.pool.ntp.org\", \"1.de.pool.ntp.org\"]\nfallback_servers = [\"192.0.2.1\"]\n";
    let (t, _) = apply_idempotent_rollback("debian12-hardening", profile, |t| {
        // A second daemon enabled next to timesyncd: CIS wants one.
        t.write("lib/systemd/system/chrony.service", "[Unit]\nDescription=chrony\n[Install]\nWantedBy=multi-user.target\nAlias=chronyd.service\n");
        std::os::unix::fs::symlink(
            "/lib/systemd/system/chrony.service",
            t.path("etc/systemd/system/multi-user.target.wants/chrony.service"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            "/lib/systemd/system/chrony.service",
            t.path("etc/systemd/system/chronyd.service"),
        )
        .unwrap();
    });
    assert_eq!(
        t.read("etc/systemd/timesyncd.conf.d/bollwerk.conf"),
        format!(
            "{HEADER}\n[Time]\nNTP=0.de.pool.ntp.org 1.de.pool.ntp.org\nFallbackNTP=192.0.2.1\n"
        )
    );
    assert!(!t.exists("etc/systemd/system/multi-user.target.wants/chrony.service"));
    assert!(!t.exists("etc/systemd/system/chronyd.service"));
    assert!(t.exists("etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service"));
}

#[test]
fn time_enables_a_disabled_timesyncd() {
    let (t, _) = apply_idempotent_rollback(
        "debian12-hardening",
        "[time]\ndaemon = \"timesyncd\"\n",
        |t| {
            std::fs::remove_file(
                t.path("etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service"),
            )
            .unwrap();
            std::fs::remove_file(
                t.path("etc/systemd/system/dbus-org.freedesktop.timesync1.service"),
            )
            .unwrap();
        },
    );
    assert_eq!(
        std::fs::read_link(
            t.path("etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service")
        )
        .unwrap()
        .to_string_lossy(),
        "/lib/systemd/system/systemd-timesyncd.service"
    );
    assert!(t.exists("etc/systemd/system/dbus-org.freedesktop.timesync1.service"));
}

#[test]
fn time_not_applicable_in_a_container() {
    let t = Tree::fixture("debian12-hardening");
    t.write("run/systemd/container", "lxc\n");
    let p = t.profile(
        "site",
        &site("[time]\ndaemon = \"timesyncd\"\nservers = [\"192.0.2.1\"]\n"),
    );
    let (_, plan) = t.run(&fake_runner(), &["plan", "--profile", &p]);
    assert!(
        plan.contains("time: not applicable in a container (lxc)"),
        "{plan}"
    );
    assert!(!plan.contains("timesyncd.conf.d"), "{plan}");
}

const ACCOUNTS: &str = "[accounts]\npass_max_days = 365\npass_min_days = 1\npass_warn_age = 7\ninactive = 30\nencrypt_method = \"auto\"\numask = \"027\"\nshell_timeout = \"15m\"\nsystem_accounts_nologin = true\nroot_path = \"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\nsha_crypt_rounds = 65536\n";

#[test]
fn accounts_policy_in_login_defs_useradd_profile_d_and_shadow() {
    let fixture = Tree::fixture("debian12-hardening");
    let defs_before = fixture.read("etc/login.defs");
    let today = bollwerk::facts::days_since_epoch();
    let (t, plan) = apply_idempotent_rollback("debian12-hardening", ACCOUNTS, |t| {
        // A password user (ageing applies), one whose password is too old for the new
        // maximum (left alone, with a warning), and a writable directory in root's PATH.
        let mut shadow = t.read("etc/shadow");
        shadow.push_str(&format!(
            "olduser:$y$j9T$old:{}:0:99999:7:::\n",
            today - 400
        ));
        shadow.push_str(&format!(
            "pwuser:$y$j9T$fresh:{}:0:99999:7:::\n",
            today - 10
        ));
        t.write("etc/shadow", &shadow);
        let mut passwd = t.read("etc/passwd");
        passwd.push_str("olduser:x:1001:1001::/home/olduser:/bin/bash\npwuser:x:1002:1002::/home/pwuser:/bin/bash\n");
        t.write("etc/passwd", &passwd);
        std::fs::create_dir_all(t.path("usr/local/bin")).unwrap();
        std::fs::set_permissions(
            t.path("usr/local/bin"),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
    });
    // login.defs: the rounds are added after their commented examples (what Lynis AUTH-9230
    // reads), otherwise only the managed lines differ.
    let defs_all = t.read("etc/login.defs");
    assert!(
        defs_all.contains("#SHA_CRYPT_MIN_ROUNDS 5000\nSHA_CRYPT_MIN_ROUNDS 65536\n#SHA_CRYPT_MAX_ROUNDS 5000\nSHA_CRYPT_MAX_ROUNDS 65536\n"),
        "{defs_all}"
    );
    let defs: String = defs_all
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("SHA_CRYPT_"))
        .collect();
    let changed: Vec<(&str, &str)> = defs_before
        .lines()
        .zip(defs.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        changed,
        vec![
            (
                "ENV_SUPATH\tPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV_SUPATH\tPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            ),
            ("UMASK\t\t022", "UMASK\t\t027"),
            ("PASS_MAX_DAYS\t99999", "PASS_MAX_DAYS\t365"),
            ("PASS_MIN_DAYS\t0", "PASS_MIN_DAYS\t1"),
            ("ENCRYPT_METHOD SHA512", "ENCRYPT_METHOD YESCRYPT"),
        ]
        .into_iter()
        .filter(|(a, b)| a != b)
        .collect::<Vec<_>>()
    );
    assert_eq!(defs.lines().count(), defs_before.lines().count());
    assert!(
        t.read("etc/default/useradd")
            .contains("# INACTIVE=-1\nINACTIVE=30\n")
    );
    let sh = t.read("etc/profile.d/bollwerk-shell.sh");
    assert!(
        sh.contains("umask 027\n") && sh.contains("readonly TMOUT\nexport TMOUT\n"),
        "{sh}"
    );
    // The form OpenSCAP's accounts_tmout looks for (TMOUT=, readonly, export in a row).
    assert!(
        sh.contains("\n    TMOUT=900\n    readonly TMOUT\n    export TMOUT\n"),
        "{sh}"
    );
    // bash.bashrc and profile: the distro text stays byte-identical, the umask is a marked block
    // at the end (OpenSCAP's accounts_umask_etc_bashrc reads only bash.bashrc, Lynis both).
    for file in ["etc/bash.bashrc", "etc/profile"] {
        let before = Tree::fixture("debian12-hardening").read(file);
        assert_eq!(
            t.read(file),
            format!(
                "{before}# BEGIN bollwerk accounts (managed by bollwerk — local edits are overwritten)\numask 027\n# END bollwerk accounts\n"
            ),
            "{file}"
        );
    }
    // Ageing: password users tightened, locked/no-password accounts untouched.
    let shadow = t.read("etc/shadow");
    assert!(
        shadow.contains(&format!(
            "pwuser:$y$j9T$fresh:{}:1:365:7:30::\n",
            today - 10
        )),
        "{shadow}"
    );
    assert!(
        shadow.contains(&format!(
            "olduser:$y$j9T$old:{}:0:99999:7:::\n",
            today - 400
        )),
        "{shadow}"
    );
    assert!(
        shadow.contains("daemon:*:19700:0:99999:7:::\n"),
        "no hash, no ageing: {shadow}"
    );
    assert!(
        plan.contains("the password of olduser was last changed 400 days ago"),
        "{plan}"
    );
    // postgres (uid 101, /bin/bash) loses its login shell; the admin from [[users]] keeps bash.
    let passwd = t.read("etc/passwd");
    assert!(
        passwd.contains(
            "postgres:x:101:109:PostgreSQL administrator,,,:/var/lib/postgresql:/usr/sbin/nologin\n"
        ),
        "{passwd}"
    );
    assert!(
        passwd.contains("admin:x:1000:1000::/home/admin:/bin/bash\n"),
        "{passwd}"
    );
    assert!(passwd.contains("sync:x:4:65534:sync:/bin:/bin/sync\n"));
    assert_eq!(t.meta("etc/shadow"), (0o640, 0, 42));
    // root's PATH directory no longer world-writable.
    assert_eq!(t.meta("usr/local/bin").0, 0o755);
}

#[test]
fn accounts_sha_crypt_rounds_out_of_range_is_a_profile_error() {
    let t = Tree::fixture("debian12-hardening");
    let p = t.profile("bad", "[accounts]\nsha_crypt_rounds = 1000\n");
    let (st, out) = t.run(&fake_runner(), &["validate", "--profile", &p]);
    assert_eq!(st, ExitStatus::Refused, "{out}");
    // Control: the key itself is known, an in-range value validates.
    let p = t.profile("a", "[accounts]\nsha_crypt_rounds = 65536\n");
    let (st, out) = t.run(&fake_runner(), &["validate", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
}

#[test]
fn accounts_exempt_system_account_keeps_its_shell() {
    let (t, plan) = apply_idempotent_rollback(
        "debian12-hardening",
        "[accounts]\nsystem_accounts_nologin = true\nnologin_exempt = [\"postgres\"]\n",
        |_| {},
    );
    assert!(
        t.read("etc/passwd")
            .contains(":/var/lib/postgresql:/bin/bash\n")
    );
    assert!(
        plan.contains(
            "system account postgres keeps its login shell /bin/bash (accounts.nologin_exempt)"
        ),
        "{plan}"
    );
}

const PAM: &str = "[pam]\nsu_group = \"sugroup\"\nnullok = false\n[pam.pwquality]\nminlen = 14\nminclass = 4\ndcredit = -1\nucredit = -1\nlcredit = -1\nocredit = -1\ndifok = 2\nmaxrepeat = 3\nmaxsequence = 3\ndictcheck = true\nenforcing = true\nenforce_for_root = true\nretry = 3\n[pam.faillock]\ndeny = 5\nunlock_time = 900\nfail_interval = 900\n[pam.history]\nremember = 24\nenforce_for_root = true\n";

/// `etc/pam.d/common-*` as the real pam-auth-update writes them for [`PAM`] on Debian 12
/// (recorded from the testbed rootfs).
const AUTH_AFTER: &str = "auth\trequisite\tpam_faillock.so preauth\nauth\t[success=2 default=ignore]\tpam_unix.so try_first_pass\nauth\t[default=die]\tpam_faillock.so authfail\nauth\trequisite\t\t\tpam_deny.so\nauth\trequired\t\t\tpam_permit.so\n";
const ACCOUNT_AFTER: &str = "account\trequired\tpam_faillock.so \naccount\t[success=1 new_authtok_reqd=done default=ignore]\tpam_unix.so \naccount\trequisite\t\t\tpam_deny.so\naccount\trequired\t\t\tpam_permit.so\n";
const PASSWORD_AFTER: &str = "password\trequisite\t\t\tpam_pwquality.so retry=3\npassword\trequisite\tpam_pwhistory.so remember=24 enforce_for_root try_first_pass use_authtok\npassword\t[success=1 default=ignore]\tpam_unix.so obscure use_authtok try_first_pass yescrypt\npassword\trequisite\t\t\tpam_deny.so\npassword\trequired\t\t\tpam_permit.so\n";

/// A fake runner whose sandbox check reports the recorded result, and whose pam-auth-update
/// writes what the real one writes (so re-planning converges).
fn pam_runner() -> bollwerk::exec::FakeRunner {
    let r = fake_runner();
    r.respond_with("/bin/sh -c '# bollwerk-pam-sandbox", |_, _| {
        bollwerk::exec::Output {
            code: 0,
            stdout: format!(
                "==> common-password\n{PASSWORD_AFTER}==> common-auth\n{AUTH_AFTER}==> common-account\n{ACCOUNT_AFTER}==> end\nbollwerk-pam-sandbox: ok (pamtester)\n"
            ),
            stderr: String::new(),
        }
    });
    r.respond_with("/usr/sbin/pam-auth-update", |root, cmd| {
        let enabled: Vec<&String> = cmd
            .args
            .iter()
            .skip_while(|a| *a != "--enable")
            .skip(1)
            .take_while(|a| !a.starts_with("--"))
            .collect();
        let mut mods = String::new();
        for m in [
            "pwquality",
            "bollwerk-pwhistory",
            "bollwerk-faillock-notify",
            "bollwerk-unix",
            "bollwerk-faillock",
            "systemd",
            "mkhomedir",
        ] {
            if enabled.iter().any(|e| *e == m) || m == "systemd" {
                mods.push_str(&format!("Module: {m}\n"));
            }
        }
        for t in [
            "auth",
            "account",
            "password",
            "session",
            "session-noninteractive",
        ] {
            std::fs::write(root.path().join(format!("var/lib/pam/{t}")), &mods).unwrap();
        }
        for (t, body) in [
            ("auth", AUTH_AFTER),
            ("account", ACCOUNT_AFTER),
            ("password", PASSWORD_AFTER),
        ] {
            std::fs::write(root.path().join(format!("etc/pam.d/common-{t}")), body).unwrap();
        }
        bollwerk::exec::Output::default()
    });
    r
}

#[test]
fn pam_profiles_activated_with_pam_auth_update_after_the_sandbox_check() {
    let t = Tree::fixture("debian12-hardening");
    let p = t.profile("site", &site(PAM));
    let before = t.snapshot();
    let runner = pam_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(
        plan.contains("run: /usr/sbin/pam-auth-update --enable pwquality bollwerk-faillock bollwerk-faillock-notify bollwerk-pwhistory bollwerk-unix --disable unix"),
        "{plan}"
    );
    assert!(
        plan.contains("checked with `pam-auth-update + pamtester in a sandbox` before activation"),
        "{plan}"
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let log = runner.log();
    let sandbox = log
        .iter()
        .position(|c| c.starts_with("/bin/sh -c '# bollwerk-pam-sandbox"))
        .expect("sandbox ran");
    let real = log
        .iter()
        .position(|c| c.starts_with("/usr/sbin/pam-auth-update"))
        .expect("pam-auth-update ran");
    assert!(sandbox < real, "validation before activation: {log:?}");

    // Files bollwerk owns, and the in-place edits.
    assert_eq!(
        t.read("etc/security/pwquality.conf.d/bollwerk.conf"),
        format!(
            "{HEADER}\nminlen = 14\nminclass = 4\ndifok = 2\nmaxrepeat = 3\nmaxsequence = 3\ndcredit = -1\nucredit = -1\nlcredit = -1\nocredit = -1\ndictcheck = 1\nenforcing = 1\nretry = 3\nenforce_for_root\n"
        )
    );
    // The same values in pwquality.conf (read after the drop-ins; the only file OpenSCAP's
    // CIS content reads), each after its commented example; no other line changes.
    let pwq_before = Tree::fixture("debian12-hardening").read("etc/security/pwquality.conf");
    let pwq = t.read("etc/security/pwquality.conf");
    for (k, v) in [
        ("minlen", "14"),
        ("minclass", "4"),
        ("difok", "2"),
        ("dcredit", "-1"),
        ("ucredit", "-1"),
        ("lcredit", "-1"),
        ("ocredit", "-1"),
        ("maxrepeat", "3"),
        ("maxsequence", "3"),
        ("dictcheck", "1"),
        ("enforcing", "1"),
        ("retry", "3"),
    ] {
        let line = format!("{k} = {v}\n");
        assert_eq!(pwq.matches(&format!("\n{line}")).count(), 1, "{k}: {pwq}");
    }
    assert!(
        pwq.contains("# enforce_for_root\nenforce_for_root\n"),
        "{pwq}"
    );
    let kept: Vec<&str> = pwq
        .lines()
        .filter(|l| l.starts_with('#') || l.is_empty())
        .collect();
    let orig: Vec<&str> = pwq_before
        .lines()
        .filter(|l| l.starts_with('#') || l.is_empty())
        .collect();
    assert_eq!(kept, orig, "comments and blank lines stay byte-identical");
    let fl = t.read("etc/security/faillock.conf");
    assert!(
        fl.contains("# deny = 3\ndeny = 5\n")
            && fl.contains("# unlock_time = 600\nunlock_time = 900\n")
            && fl.contains("# fail_interval = 900\nfail_interval = 900\n"),
        "{fl}"
    );
    assert!(
        !t.read("usr/share/pam-configs/bollwerk-unix")
            .contains("nullok")
    );
    assert!(
        t.read("usr/share/pam-configs/bollwerk-pwhistory")
            .contains("pam_pwhistory.so remember=24 enforce_for_root try_first_pass use_authtok")
    );
    assert!(t.read("etc/pam.d/su").contains("auth       sufficient pam_rootok.so\nauth       required   pam_wheel.so use_uid group=sugroup\n"));
    assert!(
        t.read("etc/group").contains("\nsugroup:x:996:\n"),
        "{}",
        t.read("etc/group")
    );
    assert!(t.read("etc/gshadow").contains("\nsugroup:!::\n"));
    assert_eq!(t.read("etc/pam.d/common-auth"), AUTH_AFTER);

    // Converged; rollback restores etc/pam.d, var/lib/pam byte-identically.
    let (_, again) = t.run(&runner, &["apply", "--profile", &p]);
    assert!(again.contains("0 changes"), "{again}");
    let (st, rb) = t.run(&runner, &["rollback"]);
    assert_eq!(st, ExitStatus::Ok, "{rb}");
    assert_eq!(t.snapshot(), before);
}

/// libpam-tmpdir (Lynis DEB-0280) installed after the PAM stack was set up: its postinst runs
/// `pam-auth-update --package`, which adds its own profile to the session stack. bollwerk's
/// plan neither disables it nor sees a reason to run pam-auth-update again.
#[test]
fn pam_tmpdir_profile_added_later_is_left_alone() {
    let t = Tree::fixture("debian12-hardening");
    let p = t.profile("site", &site(PAM));
    let runner = pam_runner();
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    // What libpam-tmpdir's postinst leaves behind (as on the testbed rootfs).
    t.write(
        "usr/share/pam-configs/tmpdir",
        "Name: Set $TMPDIR and $TMP for PAM sessions\nDefault: yes\nPriority: 0\nSession-Type: Additional\nSession-Interactive-Only: yes\nSession:\n\toptional\t\t\tpam_tmpdir.so\n",
    );
    let mut vl = t.read("var/lib/pam/session");
    vl.push_str("Module: tmpdir\noptional\t\t\tpam_tmpdir.so\n");
    t.write("var/lib/pam/session", &vl);
    let mut cs = t.read("etc/pam.d/common-session");
    cs.push_str("session\toptional pam_tmpdir.so \n");
    t.write("etc/pam.d/common-session", &cs);
    let calls = runner.log().len();
    let (st, again) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{again}");
    assert!(again.contains("0 changes"), "{again}");
    assert!(
        !runner.log()[calls..]
            .iter()
            .any(|c| c.starts_with("/usr/sbin/pam-auth-update")),
        "{:?}",
        &runner.log()[calls..]
    );
    assert!(t.read("etc/pam.d/common-session").contains("pam_tmpdir.so"));
}

#[test]
fn pam_sandbox_failure_activates_nothing() {
    let t = Tree::fixture("debian12-hardening");
    let p = t.profile("site", &site(PAM));
    let before = t.snapshot();
    let runner = pam_runner();
    runner.respond_with("/bin/sh -c '# bollwerk-pam-sandbox", |_, _| bollwerk::exec::Output {
        code: 11,
        stdout: String::new(),
        stderr: "pam-auth-update: Local modifications to /etc/pam.d/common-*, not updating.\nbollwerk-pam-sandbox: etc/pam.d/common-* were edited by hand: pam-auth-update does not overwrite them\n".into(),
    });
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Failure, "{out}");
    assert_eq!(
        t.snapshot(),
        before,
        "nothing may change when the PAM check fails"
    );
    assert!(
        !runner
            .log()
            .iter()
            .any(|c| c.starts_with("/usr/sbin/pam-auth-update"))
    );
}

#[test]
fn pwquality_dictcheck_stays_off_without_the_cracklib_dictionary() {
    let t = Tree::fixture("debian12-hardening");
    std::fs::remove_file(t.path("var/cache/cracklib/cracklib_dict.pwd")).unwrap();
    let p = t.profile(
        "site",
        &site("[pam.pwquality]\nminlen = 14\ndictcheck = true\n"),
    );
    let runner = pam_runner();
    let (_, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert!(
        plan.contains("the cracklib dictionary (cracklib-runtime) is missing"),
        "{plan}"
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(
        t.read("etc/security/pwquality.conf.d/bollwerk.conf")
            .contains("dictcheck = 0\n")
    );
}

#[test]
fn apparmor_complain_links_grub_dropin_and_enforce_again() {
    let (t, plan) = apply_idempotent_rollback(
        "debian12-hardening",
        "[apparmor]\nenabled = true\nmode = \"complain\"\n",
        |t| {
            t.write("boot/grub/grub.cfg", "# grub\n");
            t.write("etc/apparmor.d/usr.bin.old.dpkg-old", "profile old {}\n");
            std::fs::remove_file(
                t.path("etc/systemd/system/sysinit.target.wants/apparmor.service"),
            )
            .unwrap();
        },
    );
    for p in ["lsb_release", "nvidia_modprobe"] {
        assert_eq!(
            std::fs::read_link(t.path(&format!("etc/apparmor.d/force-complain/{p}")))
                .unwrap()
                .to_string_lossy(),
            format!("/etc/apparmor.d/{p}")
        );
    }
    assert!(!t.exists("etc/apparmor.d/force-complain/usr.bin.old.dpkg-old"));
    assert!(t.exists("etc/systemd/system/sysinit.target.wants/apparmor.service"));
    assert!(
        t.read("etc/default/grub.d/bollwerk-apparmor.cfg")
            .contains("GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX apparmor=1 security=apparmor\"\n")
    );
    assert!(
        plan.contains("run `update-grub` on the booted host"),
        "{plan}"
    );
    assert!(plan.contains("checked with `sh -n`"), "{plan}");

    // Switching to enforce removes bollwerk's complain links; a profile that says complain
    // itself is reported.
    t.write(
        "etc/apparmor.d/usr.sbin.x",
        "profile x /usr/sbin/x flags=(complain) {\n}\n",
    );
    let p = t.profile(
        "site",
        &site("[apparmor]\nenabled = true\nmode = \"enforce\"\n"),
    );
    let runner = fake_runner();
    let (_, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert!(
        plan.contains("stay in it") && plan.contains("usr.sbin.x"),
        "{plan}"
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(!t.exists("etc/apparmor.d/force-complain/lsb_release"));
}

#[test]
fn apparmor_not_applicable_in_a_container() {
    let t = Tree::fixture("debian12-hardening");
    t.write("run/systemd/container", "lxc\n");
    let p = t.profile(
        "site",
        &site("[apparmor]\nenabled = true\nmode = \"complain\"\n"),
    );
    let (_, plan) = t.run(&fake_runner(), &["plan", "--profile", &p]);
    assert!(
        plan.contains("apparmor: not applicable in a container (lxc)"),
        "{plan}"
    );
    assert!(!plan.contains("force-complain"), "{plan}");
}

#[test]
fn integrity_aide_database_built_by_a_timer_not_inline() {
    let (t, plan) =
        apply_idempotent_rollback("debian12-hardening", "[integrity]\naide = true\n", |t| {
            t.write(
                "lib/systemd/system/dailyaidecheck.timer",
                "[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n",
            );
        });
    let service = t.read("etc/systemd/system/bollwerk-aide-init.service");
    assert!(
        service.contains("ConditionPathExists=!/var/lib/aide/aide.db\n")
            && service.contains("ExecStart=/usr/sbin/aideinit --yes --force\n"),
        "{service}"
    );
    assert!(
        t.read("etc/systemd/system/bollwerk-aide-init.timer")
            .contains("OnBootSec=900s\n")
    );
    assert_eq!(
        std::fs::read_link(
            t.path("etc/systemd/system/timers.target.wants/bollwerk-aide-init.timer")
        )
        .unwrap()
        .to_string_lossy(),
        "/etc/systemd/system/bollwerk-aide-init.timer"
    );
    assert!(t.exists("etc/systemd/system/timers.target.wants/dailyaidecheck.timer"));
    assert!(
        plan.contains("checked with `systemd-analyze verify`"),
        "{plan}"
    );
    assert!(
        !plan.contains("run: /usr/sbin/aideinit"),
        "never built inline: {plan}"
    );
}

/// Every `$FileCreateMode` line in rsyslog.conf and rsyslog.d/*.conf (OpenSCAP wants one).
fn file_create_modes(t: &Tree) -> Vec<String> {
    let mut files = vec!["etc/rsyslog.conf".to_string()];
    for e in std::fs::read_dir(t.path("etc/rsyslog.d")).unwrap() {
        let n = e.unwrap().file_name().into_string().unwrap();
        if n.ends_with(".conf") {
            files.push(format!("etc/rsyslog.d/{n}"));
        }
    }
    files
        .iter()
        .filter(|f| t.exists(f))
        .flat_map(|f| {
            t.read(f)
                .lines()
                .filter(|l| l.starts_with("$FileCreateMode"))
                .map(|l| format!("{f}: {l}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn rsyslog_mode_set_once_in_the_main_file_when_it_has_the_line() {
    // Debian's rsyslog.conf already says 0640: nothing to do, and no second place.
    let (t, _) = apply_idempotent_rollback(
        "debian12-hardening",
        "[logging]\nrsyslog_file_mode = \"0640\"\n",
        |_| {},
    );
    assert!(!t.exists("etc/rsyslog.d/00-bollwerk-filemode.conf"));
    assert_eq!(
        file_create_modes(&t),
        vec!["etc/rsyslog.conf: $FileCreateMode 0640"]
    );
    // Stricter: edited in place, every other line kept; an older bollwerk drop-in goes.
    let orig = Tree::fixture("debian12-hardening").read("etc/rsyslog.conf");
    let (t, plan) = apply_idempotent_rollback(
        "debian12-hardening",
        "[logging]\nrsyslog_file_mode = \"0600\"\n",
        |t| {
            t.write(
                "etc/rsyslog.d/00-bollwerk-filemode.conf",
                &format!("{HEADER}\n$FileCreateMode 0640\n"),
            )
        },
    );
    assert_eq!(
        t.read("etc/rsyslog.conf"),
        orig.replace("$FileCreateMode 0640\n", "$FileCreateMode 0600\n")
    );
    assert!(!t.exists("etc/rsyslog.d/00-bollwerk-filemode.conf"));
    assert_eq!(
        file_create_modes(&t),
        vec!["etc/rsyslog.conf: $FileCreateMode 0600"]
    );
    assert!(plan.contains("checked with `rsyslogd -N1`"), "{plan}");
}

#[test]
fn logging_rsyslog_mode_and_var_log_permissions() {
    // A main file without the directive: the drop-in (read before the rules) carries it.
    let (t, plan) = apply_idempotent_rollback(
        "debian12-hardening",
        "[logging]\nrsyslog_file_mode = \"0640\"\nrestrict_var_log = true\n",
        |t| {
            let main = t
                .read("etc/rsyslog.conf")
                .replace("$FileCreateMode 0640\n", "");
            t.write("etc/rsyslog.conf", &main);
            use std::os::unix::fs::PermissionsExt;
            for (f, mode) in [
                ("var/log/syslog", 0o644),
                ("var/log/wtmp", 0o666),
                ("var/log/btmp", 0o664),
                ("var/log/apt/history.log", 0o644),
                ("var/log/ok.log", 0o600),
            ] {
                t.write(f, "x\n");
                std::fs::set_permissions(t.path(f), std::fs::Permissions::from_mode(mode)).unwrap();
            }
        },
    );
    assert_eq!(
        t.read("etc/rsyslog.d/00-bollwerk-filemode.conf"),
        format!("{HEADER}\n$FileCreateMode 0640\n")
    );
    assert_eq!(
        file_create_modes(&t).len(),
        1,
        "{:?}",
        file_create_modes(&t)
    );
    assert!(plan.contains("checked with `rsyslogd -N1`"), "{plan}");
    assert_eq!(t.meta("var/log/syslog").0, 0o640);
    assert_eq!(t.meta("var/log/wtmp").0, 0o664);
    assert_eq!(t.meta("var/log/btmp").0, 0o660);
    assert_eq!(t.meta("var/log/apt/history.log").0, 0o640);
    assert_eq!(t.meta("var/log/ok.log").0, 0o600);
}

/// The admin's profile for the built-in CIS profile.
fn cis_site() -> String {
    format!(
        "extends = \"cis-level1-server\"\n[[users]]\nname = \"admin\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{KEY}\"]\n"
    )
}

#[test]
fn cis_level1_server_applies_converges_and_rolls_back() {
    let t = Tree::fixture("debian12-hardening");
    let p = t.profile("site", &cis_site());
    let before = t.snapshot();
    let runner = pam_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    for module in [
        "[sudo]",
        "[banners]",
        "[kernel_modules]",
        "[cron]",
        "[coredump]",
        "[tmp]",
        "[time]",
        "[accounts]",
        "[pam]",
        "[apparmor]",
        "[logs]",
        "[sshd]",
    ] {
        assert!(plan.contains(module), "{module} plans nothing:\n{plan}");
    }
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let (_, again) = t.run(&runner, &["apply", "--profile", &p]);
    assert!(again.contains("0 changes"), "{again}");
    let dropin = t.read("etc/ssh/sshd_config.d/00-bollwerk.conf");
    assert!(dropin.contains("Banner /etc/issue.net\n"));
    for line in [
        "LogLevel INFO\n",
        "ClientAliveCountMax 3\n",
        "Compression no\n",
        "TCPKeepAlive no\n",
    ] {
        assert!(dropin.contains(line), "{line}: {dropin}");
    }
    // The main file repeats the algorithm lists in a marked block right after the Include,
    // with the drop-in's exact lines (OpenSCAP reads only the main file).
    let main = t.read("etc/ssh/sshd_config");
    let orig_main = Tree::fixture("debian12-hardening").read("etc/ssh/sshd_config");
    let block: Vec<&str> = dropin
        .lines()
        .filter(|l| {
            l.starts_with("KexAlgorithms ") || l.starts_with("Ciphers ") || l.starts_with("MACs ")
        })
        .collect();
    assert_eq!(block.len(), 3, "{dropin}");
    let include = "Include /etc/ssh/sshd_config.d/*.conf\n";
    let want_main = orig_main.replacen(
        include,
        &format!(
            "{include}{}\n{}\n{}\n",
            bollwerk::modules::sshd::MAIN_BLOCK_BEGIN,
            block.join("\n"),
            bollwerk::modules::sshd::MAIN_BLOCK_END
        ),
        1,
    );
    assert_eq!(main, want_main);
    assert_eq!(t.meta("etc/ssh/sshd_config").0, 0o600);
    // journald: the drop-in and the main file's own lines say the same.
    let journald = t.read("etc/systemd/journald.conf");
    assert!(
        journald.contains("#Storage=auto\nStorage=persistent\n"),
        "{journald}"
    );
    assert!(
        journald.contains("#Compress=yes\nCompress=yes\n"),
        "{journald}"
    );
    assert!(!t.exists("etc/motd"));
    assert_eq!(
        t.read("etc/issue"),
        "Authorized users only. All activity may be monitored and reported.\n"
    );
    let (st, rb) = t.run(&runner, &["rollback"]);
    assert_eq!(st, ExitStatus::Ok, "{rb}");
    assert_eq!(t.snapshot(), before);
}

#[test]
fn cis_level1_server_in_a_container_reports_kernel_items_not_applicable() {
    let t = Tree::fixture("debian12-hardening");
    t.write("run/systemd/container", "lxc\n");
    let p = t.profile("site", &cis_site());
    let runner = pam_runner();
    let (_, plan) = t.run(&runner, &["plan", "--profile", &p]);
    for what in ["kernel_modules", "tmp", "time", "apparmor"] {
        assert!(
            plan.contains(&format!("{what}: not applicable in a container (lxc)")),
            "{what}:\n{plan}"
        );
    }
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(!t.exists("etc/modprobe.d/bollwerk-blacklist.conf"));
    assert!(!t.exists("etc/systemd/system/tmp.mount"));
    assert!(
        t.exists("etc/security/pwquality.conf.d/bollwerk.conf"),
        "PAM applies in containers"
    );
    let (_, again) = t.run(&runner, &["apply", "--profile", &p]);
    assert!(again.contains("0 changes"), "{again}");
}

const TOOLS: &str = "[tools]\nneedrestart = \"list\"\ndebsums = true\napt_show_versions = true\napt_listchanges = true\nmalware_scanner = \"chkrootkit\"\n";
const TOOL_PACKAGES: [&str; 5] = [
    "needrestart",
    "debsums",
    "apt-show-versions",
    "apt-listchanges",
    "chkrootkit",
];

/// Marks the tools' packages installed in the fixture's dpkg status.
fn tools_installed(t: &Tree) {
    let mut status = t.read("var/lib/dpkg/status");
    for pkg in TOOL_PACKAGES {
        status.push_str(&format!(
            "\nPackage: {pkg}\nStatus: install ok installed\nVersion: 1\n"
        ));
    }
    t.write("var/lib/dpkg/status", &status);
}

#[test]
fn tools_installed_needrestart_lists_only_and_a_weekly_scan_timer() {
    // The plan installs the tools' packages with the root's apt.
    let t = Tree::fixture("debian12-hardening");
    t.write("usr/bin/apt-get", "#!/bin/sh\n");
    let p = t.profile("site", &site(TOOLS));
    let (st, plan) = t.run(&fake_runner(), &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    for pkg in TOOL_PACKAGES {
        assert!(
            plan.contains(&format!("{pkg} (tools module)")),
            "{pkg}:\n{plan}"
        );
    }

    // Once they are installed: the drop-in and the timer, idempotent, rolled back exactly.
    let (t, plan) = apply_idempotent_rollback("debian12-hardening", TOOLS, tools_installed);
    assert_eq!(
        t.read("etc/needrestart/conf.d/bollwerk.conf")
            .lines()
            .last(),
        Some("$nrconf{restart} = 'l';")
    );
    let timer = t.read("etc/systemd/system/bollwerk-chkrootkit.timer");
    assert!(timer.contains("OnCalendar=weekly"), "{timer}");
    assert!(
        t.read("etc/systemd/system/bollwerk-chkrootkit.service")
            .contains("ExecStart=/usr/sbin/chkrootkit -q")
    );
    assert!(t.exists("etc/systemd/system/timers.target.wants/bollwerk-chkrootkit.timer"));
    assert!(plan.contains("perl -c"), "{plan}");

    // "none" takes bollwerk's files away again (the packages stay).
    let p = t.profile(
        "off",
        &site("[tools]\nneedrestart = \"none\"\nmalware_scanner = \"none\"\n"),
    );
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    for f in [
        "etc/needrestart/conf.d/bollwerk.conf",
        "etc/systemd/system/bollwerk-chkrootkit.timer",
        "etc/systemd/system/bollwerk-chkrootkit.service",
        "etc/systemd/system/timers.target.wants/bollwerk-chkrootkit.timer",
    ] {
        assert!(!t.exists(f), "{f} left behind:\n{out}");
    }
}

#[test]
fn tools_needrestart_dropin_rejected_by_perl_is_never_activated() {
    let t = Tree::fixture("debian12-hardening");
    tools_installed(&t);
    let p = t.profile("site", &site(TOOLS));
    let runner = fake_runner();
    runner.push("/usr/bin/perl -c", 255, "", "syntax error at line 3");
    let before = t.snapshot();
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Failure, "{out}");
    assert_eq!(t.snapshot(), before, "nothing activated");
    assert!(
        runner
            .log()
            .iter()
            .any(|c| c.starts_with("/usr/bin/perl -c "))
    );
}

/// Adds systemd's `Conffiles:` to the fixture's dpkg status.
fn with_conffiles(t: &Tree) {
    let status = t.read("var/lib/dpkg/status");
    let status = status.replacen(
        "Package: systemd\n",
        "Package: systemd\nConffiles:\n /etc/systemd/journald.conf 9c8b2f5a3a1d5c1f1e6c0a7b5d4e3f21\n /etc/systemd/logind.conf 0123456789abcdef0123456789abcdef\n",
        1,
    );
    t.write("var/lib/dpkg/status", &status);
}

/// [`with_conffiles`] plus unattended-upgrades installed.
fn with_unattended_upgrades(t: &Tree) {
    with_conffiles(t);
    let status = t.read("var/lib/dpkg/status");
    t.write(
        "var/lib/dpkg/status",
        &format!("{status}\nPackage: unattended-upgrades\nStatus: install ok installed\nVersion: 2.9.1+nmu3\n"),
    );
}

#[test]
fn journald_main_file_edit_keeps_unattended_upgrades_going() {
    let profile = "[journald]\npersistent = true\ncompress = true\nmax_use = \"1G\"\n";
    let orig = Tree::fixture("debian12-hardening").read("etc/systemd/journald.conf");
    let (t, plan) =
        apply_idempotent_rollback("debian12-hardening", profile, with_unattended_upgrades);
    // Only Storage= and Compress= are repeated in the main file, after their examples.
    assert_eq!(
        t.read("etc/systemd/journald.conf"),
        orig.replace("#Storage=auto\n", "#Storage=auto\nStorage=persistent\n")
            .replace("#Compress=yes\n", "#Compress=yes\nCompress=yes\n")
    );
    assert!(
        t.read("etc/systemd/journald.conf.d/50-bollwerk.conf")
            .contains("Storage=persistent\nSystemMaxUse=1G\nCompress=yes\n")
    );
    // journald.conf is a conffile of systemd: unattended-upgrades would skip systemd on a
    // conffile prompt without --force-confold.
    let opts = t.read("etc/apt/apt.conf.d/51bollwerk-dpkg-conffiles");
    assert!(opts.starts_with("// Managed by bollwerk"), "{opts}");
    assert!(
        opts.contains("Dpkg::Options {\n    \"--force-confdef\";\n    \"--force-confold\";\n};\n"),
        "{opts}"
    );
    assert!(
        plan.contains("(/etc/systemd/journald.conf edited by this run)"),
        "{plan}"
    );
    assert!(plan.contains("[conffiles]"), "{plan}");

    // unattended-upgrades installed by this same run counts too.
    let t = Tree::fixture("debian12-hardening");
    with_conffiles(&t);
    let p = t.profile(
        "site",
        &site(&format!(
            "[packages]\ninstall = [\"unattended-upgrades\"]\n{profile}"
        )),
    );
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(
        t.exists("etc/apt/apt.conf.d/51bollwerk-dpkg-conffiles"),
        "{out}"
    );

    // Without unattended-upgrades nothing needs the policy.
    let (t, _) = apply_idempotent_rollback("debian12-hardening", profile, with_conffiles);
    assert!(!t.exists("etc/apt/apt.conf.d/51bollwerk-dpkg-conffiles"));
}

#[test]
fn dpkg_conffiles_parsed_from_status() {
    let s = "Package: a\nConffiles:\n /etc/a.conf 0123 obsolete\n /etc/b 4567\nDescription: x\n y\nPackage: b\nConffiles:\n /etc/issue 89ab\n";
    let c = bollwerk::modules::updates::dpkg_conffiles(s);
    assert_eq!(
        c.into_iter().collect::<Vec<_>>(),
        vec!["etc/a.conf", "etc/b", "etc/issue"]
    );
}

// -- issue 12: cis-level2-server (auditd, accounting, AIDE) --

const AUDITD_CONF: &str = "local_events = yes\nwrite_logs = yes\nlog_file = /var/log/audit/audit.log\nlog_group = adm\nmax_log_file = 8\nnum_logs = 5\nmax_log_file_action = ROTATE\nspace_left = 75\nspace_left_action = SYSLOG\nverify_email = yes\naction_mail_acct = root\nadmin_space_left = 50\nadmin_space_left_action = SUSPEND\ndisk_full_action = SUSPEND\ndisk_error_action = SUSPEND\nplugin_dir = /etc/audit/plugins.d\n";
const DEBIAN_AUDIT_RULES: &str =
    "## First rule - delete all\n-D\n\n-b 8192\n\n--backlog_wait_time 60000\n\n-f 1\n";
const AIDE_CONF: &str = "# AIDE conf\n@@x_include_setenv PATH /bin:/usr/bin\n# the checksums used\nChecksums = H\n\ndatabase_attrs = Checksums\nOwnerMode = p+u+g+ftype\n@@x_include /etc/aide/aide.conf.d ^[a-zA-Z0-9_-]+$\n";

/// The level-2 packages as installed (what their packages ship that bollwerk edits), and a
/// setuid and a setgid program.
fn seed_level2(t: &Tree) {
    use std::os::unix::fs::PermissionsExt;
    let mut status = t.read("var/lib/dpkg/status");
    for pkg in [
        "auditd",
        "audispd-plugins",
        "acct",
        "sysstat",
        "aide",
        "aide-common",
    ] {
        status.push_str(&format!(
            "\nPackage: {pkg}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1\n"
        ));
    }
    t.write("var/lib/dpkg/status", &status);
    t.write("etc/audit/auditd.conf", AUDITD_CONF);
    t.write("etc/audit/rules.d/audit.rules", DEBIAN_AUDIT_RULES);
    t.write("etc/default/sysstat", "# sysstat\nENABLED=\"false\"\n");
    t.write("etc/aide/aide.conf", AIDE_CONF);
    for unit in ["auditd", "acct", "sysstat"] {
        t.write(
            &format!("lib/systemd/system/{unit}.service"),
            "[Unit]\nDescription=x\n\n[Service]\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n",
        );
    }
    for (f, mode) in [("usr/bin/sudo", 0o4755), ("usr/bin/crontab", 0o2755)] {
        std::fs::set_permissions(t.path(f), std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

const LEVEL2: &str = "[auditd]\nenabled = true\n\n[accounting]\nprocess = true\nsysstat = true\n\n[integrity]\naide = true\n\n[sudo]\nlogfile = \"/var/log/sudo.log\"\n";

#[test]
fn auditd_rules_retention_accounting_and_aide_converge_and_roll_back() {
    let (t, plan) = apply_idempotent_rollback("debian12-hardening", LEVEL2, |t| {
        seed_level2(t);
        t.write("usr/sbin/update-grub", "#!/bin/sh\n");
    });
    assert!(
        plan.contains("checked with `audit rules syntax (bollwerk)`"),
        "{plan}"
    );
    assert!(
        plan.contains("checked with `aide --config-check`"),
        "{plan}"
    );
    let rules = t.read("etc/audit/rules.d/50-bollwerk-cis.rules");
    for want in [
        "-w /etc/sudoers -p wa -k scope\n",
        "-w /var/log/sudo.log -p wa -k sudo_log_file\n",
        "-a always,exit -F arch=b64 -S adjtimex,settimeofday,clock_settime -k time-change\n",
        "-a always,exit -F arch=b32 -S sethostname,setdomainname -k system-locale\n",
        "-a always,exit -F arch=b64 -S creat,open,openat,truncate,ftruncate -F exit=-EACCES -F auid>=1000 -F auid!=unset -k access\n",
        "-w /etc/shadow -p wa -k identity\n",
        "-a always,exit -F arch=b64 -S mount -F auid>=1000 -F auid!=unset -k mounts\n",
        "-w /var/log/wtmp -p wa -k session\n",
        "-w /var/run/faillock -p wa -k logins\n",
        "-w /etc/apparmor.d -p wa -k MAC-policy\n",
        "-a always,exit -F path=/usr/bin/sudo -F perm=x -F auid>=1000 -F auid!=unset -k privileged\n",
        "-a always,exit -F path=/usr/bin/crontab -F perm=x -F auid>=1000 -F auid!=unset -k privileged\n",
        "-k kernel_modules\n",
    ] {
        assert!(rules.contains(want), "missing {want:?} in\n{rules}");
    }
    assert!(!rules.contains("path=/usr/bin/ssh "), "not setuid: {rules}");
    assert!(
        t.read("etc/audit/rules.d/99-bollwerk-finalize.rules")
            .ends_with("\n-e 2\n")
    );
    assert_eq!(
        t.read("etc/audit/rules.d/audit.rules"),
        DEBIAN_AUDIT_RULES,
        "the distro's rules stay"
    );
    assert_eq!(t.meta("etc/audit/rules.d/50-bollwerk-cis.rules").0, 0o640);
    let conf = t.read("etc/audit/auditd.conf");
    for want in [
        "\nmax_log_file = 8\n",
        "\nmax_log_file_action = keep_logs\n",
        "\nspace_left_action = email\n",
        "\nadmin_space_left_action = single\n",
        "\ndisk_full_action = halt\n",
        "\ndisk_error_action = syslog\n",
        "\nlog_group = adm\n",
    ] {
        assert!(conf.contains(want), "{want:?} in\n{conf}");
    }
    assert_eq!(conf.lines().count(), AUDITD_CONF.lines().count(), "{conf}");
    assert!(
        t.read("etc/default/grub.d/bollwerk-audit.cfg").contains(
            "GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX audit=1 audit_backlog_limit=8192\""
        )
    );
    assert_eq!(
        t.read("etc/default/sysstat"),
        "# sysstat\nENABLED=\"true\"\n"
    );
    for unit in ["auditd", "acct", "sysstat"] {
        assert!(
            t.exists(&format!(
                "etc/systemd/system/multi-user.target.wants/{unit}.service"
            )),
            "{unit} enabled"
        );
    }
    let aide = t.read("etc/aide/aide.conf");
    assert!(aide.starts_with("# AIDE conf\n@@x_include_setenv PATH /bin:/usr/bin\n# the checksums used\nChecksums = sha512\n\ndatabase_attrs = Checksums\n"), "{aide}");
    for tool in [
        "auditctl",
        "auditd",
        "ausearch",
        "aureport",
        "autrace",
        "augenrules",
    ] {
        assert!(
            aide.contains(&format!(
                "\n/usr/sbin/{tool} p+i+n+u+g+s+b+acl+xattrs+sha512\n"
            )),
            "{aide}"
        );
    }
}

#[test]
fn audit_rules_a_later_file_cannot_undo_immutability() {
    let t = Tree::fixture("debian12-hardening");
    seed_level2(&t);
    t.write("etc/audit/rules.d/zz-local.rules", "-e 1\n");
    let p = t.profile("site", &site(LEVEL2));
    let before = t.snapshot();
    let runner = fake_runner();
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Failure, "{out}");
    // (stderr names the file: "etc/audit/rules.d/zz-local.rules sets `-e 1` after bollwerk's `-e 2`")
    assert!(!t.exists("etc/audit/rules.d/50-bollwerk-cis.rules"));
    let after = t.snapshot();
    assert_eq!(after, before, "nothing changed");
}

#[test]
fn auditd_and_process_accounting_are_not_applicable_in_a_container() {
    let t = Tree::fixture("debian12-hardening");
    seed_level2(&t);
    t.write("run/systemd/container", "lxc\n");
    let p = t.profile("site", &site(LEVEL2));
    let runner = fake_runner();
    let (_, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert!(
        plan.contains("auditd: not applicable in a container (lxc): the kernel's audit subsystem belongs to the host"),
        "{plan}"
    );
    assert!(
        plan.contains("process accounting: not applicable in a container (lxc)"),
        "{plan}"
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(!t.exists("etc/audit/rules.d/50-bollwerk-cis.rules"));
    assert!(!t.exists("etc/systemd/system/multi-user.target.wants/acct.service"));
    assert_eq!(
        t.read("etc/default/sysstat"),
        "# sysstat\nENABLED=\"true\"\n"
    );
}

/// The admin's profile for the built-in level-2 profile.
fn cis2_site() -> String {
    cis_site().replace("cis-level1-server", "cis-level2-server")
}

#[test]
fn cis_level2_server_applies_converges_and_rolls_back() {
    let t = Tree::fixture("debian12-hardening");
    seed_level2(&t);
    let p = t.profile("site", &cis2_site());
    let before = t.snapshot();
    let runner = pam_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    for module in [
        "[auditd]",
        "[accounting]",
        "[integrity]",
        "[apparmor]",
        "[pam]",
    ] {
        assert!(plan.contains(module), "{module} plans nothing:\n{plan}");
    }
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(t.exists("etc/audit/rules.d/50-bollwerk-cis.rules"));
    assert!(
        t.read("etc/modprobe.d/bollwerk-blacklist.conf")
            .contains("install overlay /bin/false")
    );
    let (_, again) = t.run(&runner, &["apply", "--profile", &p]);
    assert!(again.contains("0 changes"), "{again}");
    let (st, rb) = t.run(&runner, &["rollback"]);
    assert_eq!(st, ExitStatus::Ok, "{rb}");
    assert_eq!(t.snapshot(), before);
}

#[test]
fn aide_database_built_on_apply_when_asked_journaled_and_rolled_back() {
    let t = Tree::fixture("debian12-hardening");
    seed_level2(&t);
    t.write("usr/sbin/aideinit", "#!/bin/sh\n");
    let p = t.profile(
        "site",
        &site("[integrity]\naide = true\nbuild_database_on_apply = true\n"),
    );
    let before = t.snapshot();
    let runner = fake_runner();
    runner.respond_with(
        "/bin/sh -c 'umask 027; exec /usr/sbin/aideinit --yes --force'",
        |root, _| {
            // What aideinit does: aide --init writes aide.db.new, aideinit copies it to aide.db;
            // the configuration must already be the edited one.
            let conf = std::fs::read_to_string(root.path().join("etc/aide/aide.conf")).unwrap();
            assert!(conf.contains("Checksums = sha512"), "{conf}");
            let dir = root.path().join("var/lib/aide");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("aide.db.new"), "db").unwrap();
            std::fs::write(dir.join("aide.db"), "db").unwrap();
            bollwerk::exec::Output::default()
        },
    );
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(plan.contains("build the AIDE database now"), "{plan}");
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}\n{:?}", runner.log());
    assert_eq!(t.read("var/lib/aide/aide.db"), "db");
    let (_, again) = t.run(&runner, &["apply", "--profile", &p]);
    assert!(again.contains("0 changes"), "{again}");
    let (st, rb) = t.run(&runner, &["rollback"]);
    assert_eq!(st, ExitStatus::Ok, "{rb}");
    assert!(!t.exists("var/lib/aide/aide.db"));
    assert_eq!(t.snapshot(), before);
}
