//! Tree tests of the services modules (packages, files, logs, journald, updates, postgres)
//! against the `debian12-services` and `ubuntu2204-services` fixture roots, in-process with a
//! fake runner: plans, apply results, idempotence, rollback, refusals. The real tools run in
//! `tests/services_system.rs`.

mod common;

use bollwerk::ExitStatus;
use bollwerk::exec::{Cmd, Output};
use bollwerk::root::Root;
use common::tree::{Tree, fake_runner};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPci/6iPPKNm3TqnlFNu0Zy6jtqtz5kw0YO3RjFH01v alice@laptop";

/// An admin user with a key, so the lockout guard is satisfied.
fn admin() -> String {
    format!(
        "[[users]]\nname = \"deploy\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{KEY}\"]\n"
    )
}

fn ok_output(stdout: &str) -> Output {
    Output {
        code: 0,
        stdout: stdout.into(),
        stderr: String::new(),
    }
}

/// A stand-in for apt-get: `install` appends the packages to the root's dpkg status, `remove`
/// and `purge` drop them, `update` does nothing. Everything else of the fake runner stays.
fn services_runner() -> bollwerk::exec::FakeRunner {
    let f = fake_runner();
    f.respond_with("/usr/bin/apt-get", fake_apt);
    f.respond_with("/usr/bin/apt-config dump", fake_apt_config_dump);
    f.respond_with(
        "/usr/sbin/runuser -u postgres -- /usr/lib/postgresql/",
        fake_postgres_c,
    );
    f
}

/// A stand-in for `postgres -C NAME`: the value of bollwerk's drop-in (else postgresql.conf's)
/// in PostgreSQL's base unit, as the real one prints it.
fn fake_postgres_c(root: &Root, cmd: &Cmd) -> Output {
    let Some(i) = cmd.args.iter().position(|a| a == "-C") else {
        return ok_output("");
    };
    let name = &cmd.args[i + 1];
    let mut value = None;
    for f in [
        "etc/postgresql/15/main/postgresql.conf",
        "etc/postgresql/15/main/conf.d/bollwerk.conf",
    ] {
        let text = std::fs::read_to_string(root.path().join(f)).unwrap_or_default();
        for l in text.lines() {
            let l = l.split('#').next().unwrap_or("");
            if let Some((k, v)) = l.split_once('=')
                && k.trim() == name
            {
                value = Some(v.trim().trim_matches('\'').to_string());
            }
        }
    }
    let v = value.unwrap_or_default();
    let out = match (name.as_str(), v.strip_suffix("MB"), v.strip_suffix("GB")) {
        ("shared_buffers", Some(mb), _) => (mb.parse::<u64>().unwrap() * 128).to_string(),
        ("shared_buffers", _, Some(gb)) => (gb.parse::<u64>().unwrap() * 131072).to_string(),
        _ => v,
    };
    ok_output(&format!("{out}\n"))
}

/// A stand-in for `apt-config dump`: the origin lists of bollwerk's drop-in, as apt prints them.
fn fake_apt_config_dump(root: &Root, _: &Cmd) -> Output {
    let text = std::fs::read_to_string(
        root.path()
            .join("etc/apt/apt.conf.d/52bollwerk-unattended-upgrades"),
    )
    .unwrap_or_default();
    let mut out = String::new();
    let mut key = None;
    for line in text.lines() {
        let l = line.trim();
        if let Some(k) = l.strip_suffix(" {") {
            key = Some(k.to_string());
            out.push_str(&format!("{k} \"\";\n"));
        } else if l == "};" {
            key = None;
        } else if let Some(k) = &key {
            out.push_str(&format!("{k}:: {l}\n"));
        }
    }
    ok_output(&out)
}

fn fake_apt(root: &Root, cmd: &Cmd) -> Output {
    let status = root.path().join("var/lib/dpkg/status");
    let text = std::fs::read_to_string(&status).unwrap_or_default();
    let verb = cmd
        .args
        .iter()
        .position(|a| ["install", "remove", "purge", "update"].contains(&a.as_str()));
    let Some(i) = verb else {
        return ok_output("");
    };
    let names: Vec<&str> = cmd.args[i + 1..]
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let new = match cmd.args[i].as_str() {
        "install" => {
            let mut t = text.clone();
            for n in &names {
                ship_files(root, n);
                t.push_str(&format!(
                    "Package: {n}\nStatus: install ok installed\nVersion: 1.0\n\n"
                ));
            }
            t
        }
        "remove" | "purge" => text
            .split("\n\n")
            .filter(|p| {
                !names
                    .iter()
                    .any(|n| p.lines().any(|l| l == format!("Package: {n}")))
            })
            .collect::<Vec<_>>()
            .join("\n\n"),
        _ => text.clone(),
    };
    std::fs::write(&status, new).unwrap();
    ok_output(&format!("fake apt-get {}\n", cmd.args[i]))
}

/// The files a real install of a network package ships, taken from the network fixture (so the
/// modules that configure them see what they would see after the real apt-get).
fn ship_files(root: &Root, package: &str) {
    if package == "aide" {
        // Like aide-common's postinst (adduser --system --group _aide): a new system group.
        for (f, line) in [
            ("etc/group", "_aide:x:998:\n"),
            ("etc/gshadow", "_aide:!::\n"),
        ] {
            let p = root.path().join(f);
            let mut t = std::fs::read_to_string(&p).unwrap_or_default();
            t.push_str(line);
            std::fs::write(&p, t).unwrap();
        }
        return;
    }
    let prefixes: &[&str] = match package {
        "nftables" => &[
            "etc/nftables.conf",
            "usr/sbin/nft",
            "lib/systemd/system/nftables.service",
        ],
        "fail2ban" => &[
            "etc/fail2ban",
            "usr/bin/fail2ban-client",
            "lib/systemd/system/fail2ban.service",
        ],
        "ufw" => &[
            "etc/ufw",
            "etc/default/ufw",
            "usr/sbin/ufw",
            "lib/systemd/system/ufw.service",
        ],
        _ => return,
    };
    let src = common::tree::fixtures().join("network");
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        if from.is_dir() {
            std::fs::create_dir_all(to).unwrap();
            for e in std::fs::read_dir(from).unwrap() {
                let e = e.unwrap();
                copy(&e.path(), &to.join(e.file_name()));
            }
        } else if !to.exists() {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(from, to).unwrap();
        }
    }
    for p in prefixes {
        copy(&src.join(p), &root.path().join(p));
    }
}

fn apt_lines(runner: &bollwerk::exec::FakeRunner) -> Vec<String> {
    runner
        .log()
        .into_iter()
        .filter(|l| l.starts_with("/usr/bin/apt-get"))
        .collect()
}

#[test]
fn packages_install_missing_remove_present_and_converge() {
    let t = Tree::fixture("debian12-services");
    let p = t.profile(
        "site",
        &format!(
            "[packages]\ninstall = [\"tree\", \"postgresql-15\", \"postgresql-contrib-15\"]\nremove = [\"netcat-openbsd\", \"telnet\"]\n{}",
            admin()
        ),
    );
    let runner = services_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    // Only what is missing is installed (postgresql-contrib-15 is provided by postgresql-15),
    // only what is installed is removed (telnet is not).
    assert!(
        plan.contains("run: /usr/bin/apt-get -q -y -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold install --no-install-recommends tree\n"),
        "{plan}"
    );
    assert!(plan.contains(" remove netcat-openbsd\n"), "{plan}");
    assert!(plan.contains(" update\n"), "{plan}");
    assert!(
        plan.contains("+exit 101"),
        "policy-rc.d in the plan:\n{plan}"
    );
    assert!(plan.contains("rollback restores files only"), "{plan}");
    assert!(apt_lines(&runner).is_empty(), "plan runs no apt");

    let before = t.snapshot();
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let apt = apt_lines(&runner);
    assert_eq!(apt.len(), 3, "{apt:?}");
    assert!(apt[0].ends_with(" update"));
    assert!(apt[1].ends_with(" install --no-install-recommends tree"));
    assert!(apt[2].ends_with(" remove netcat-openbsd"));
    assert!(
        !t.exists("usr/sbin/policy-rc.d"),
        "policy-rc.d removed again"
    );
    let status = t.read("var/lib/dpkg/status");
    assert!(status.contains("Package: tree\n"));
    assert!(!status.contains("Package: netcat-openbsd\n"));

    // Converged: nothing to do, no apt run.
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("0 changes"), "{out}");
    assert_eq!(apt_lines(&runner).len(), 3);

    // The journal lists the commands; rollback restores files and says what it did not undo.
    let (_, runs) = t.run(&runner, &["runs", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&runs).unwrap();
    let cmds = v["runs"][0]["commands"].as_array().unwrap();
    assert_eq!(cmds.len(), 3, "{runs}");
    let (st, out) = t.run(&runner, &["rollback"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("not undone: [packages] install tree"), "{out}");
    let mut after = t.snapshot();
    let mut before = before;
    // dpkg's database is not rolled back (packages stay installed): that is the point.
    after.remove("var/lib/dpkg/status");
    before.remove("var/lib/dpkg/status");
    assert_eq!(after, before);
}

#[test]
fn packages_on_the_live_root_write_no_policy_file_and_wait_for_locks() {
    // A held lock makes apt fail with "Could not get lock"; bollwerk waits and tries again.
    let t = Tree::fixture("debian12-services");
    let p = t.profile(
        "site",
        &format!(
            "[packages]\ninstall = [\"tree\"]\nlock_timeout = \"20s\"\n{}",
            admin()
        ),
    );
    let runner = services_runner();
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let m = n.clone();
    runner.respond_with("/usr/bin/apt-get -q -y -o DPkg::Lock::Timeout=20 -o Acquire::Retries=3 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold update", move |_, _| {
        if m.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Output { code: 100, stdout: String::new(), stderr: "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 812 (apt-get)\nE: Unable to lock directory /var/lib/apt/lists/\n".into() }
        } else {
            ok_output("")
        }
    });
    let start = std::time::Instant::now();
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert_eq!(
        n.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "retried once"
    );
    assert!(start.elapsed() >= std::time::Duration::from_millis(900));
    // Every apt command carries the lock wait for dpkg's own lock too.
    assert!(
        apt_lines(&runner)
            .iter()
            .all(|l| l.contains("DPkg::Lock::Timeout=20"))
    );
}

#[test]
fn packages_conflicts_are_refused_or_rejected() {
    let t = Tree::fixture("debian12-services");
    let p = t.profile(
        "bad",
        "[packages]\ninstall = [\"tree\"]\nremove = [\"tree\"]\n",
    );
    let e = bollwerk::profile::load(&p).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("packages.remove"));
    assert!(e.message.contains("both"), "{e}");
    let p = t.profile("bad", "[packages]\ninstall = [\"Not A Package\"]\n");
    let e = bollwerk::profile::load(&p).unwrap_err();
    assert_eq!(e.position.map(|p| p.0), Some(2), "{e}");
    assert!(e.message.contains("not a Debian package name"), "{e}");
}

/// Every file under the root's journal directory, as text.
fn journal_texts(t: &Tree) -> Vec<(String, String)> {
    fn walk(p: &std::path::Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), out);
            } else {
                let b = std::fs::read(e.path()).unwrap();
                out.push((
                    e.path().display().to_string(),
                    String::from_utf8_lossy(&b).into_owned(),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(&t.path("var/lib/bollwerk"), &mut out);
    out
}

#[test]
fn secret_files_get_permissions_and_their_content_never_shows() {
    let t = Tree::fixture("debian12-services");
    let secret = "s3cr3t-fixture";
    let content = t.read("srv/app/.env");
    let hash = bollwerk::root::sha256_hex(content.as_bytes());
    let p = t.profile(
        "site",
        &format!(
            "{}\n[[files]]\npath = \"/srv/app/.env\"\nmode = \"0600\"\nowner = \"deploy\"\ngroup = \"deploy\"\nensure = \"permissions\"\n\n[[files]]\npath = \"/srv/app/missing.env\"\nmode = \"0600\"\n",
            admin()
        ),
    );
    let runner = services_runner();
    let before = t.snapshot();
    for fmt in ["text", "json"] {
        let (st, plan) = t.run(&runner, &["plan", "--format", fmt, "--profile", &p]);
        assert_eq!(st, ExitStatus::Pending, "{plan}");
        assert!(!plan.contains(secret) && !plan.contains(&hash), "{plan}");
        assert!(plan.contains("/srv/app/.env"), "{plan}");
    }
    let (_, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert!(
        plan.contains("/srv/app/missing.env does not exist: nothing to do"),
        "{plan}"
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(!out.contains(secret));
    // deploy is created by the users module in the same run (uid 1000).
    assert_eq!(t.meta("srv/app/.env"), (0o600, 1000, 1000));
    assert_eq!(t.read("srv/app/.env"), content, "content untouched");
    assert!(!t.exists("srv/app/missing.env"), "never created");
    for (path, text) in journal_texts(&t) {
        assert!(!text.contains(secret), "secret in {path}");
        assert!(!text.contains(&hash), "hash of the secret in {path}");
    }
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok);
    assert!(out.contains("0 changes"), "{out}");
    // Rollback restores the permissions (and everything else), not the content.
    let (st, out) = t.run(&runner, &["rollback"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(
        out.contains("/srv/app/.env: permissions restored (secret)"),
        "{out}"
    );
    assert_eq!(t.snapshot(), before);
    for (path, text) in journal_texts(&t) {
        assert!(!text.contains(secret) && !text.contains(&hash), "{path}");
    }
}

#[test]
fn secret_files_reject_world_readable_modes_and_unknown_owners() {
    let t = Tree::fixture("debian12-services");
    let p = t.profile(
        "bad",
        "[[files]]\npath = \"/srv/app/.env\"\nmode = \"0644\"\n",
    );
    let e = bollwerk::profile::load(&p).unwrap_err();
    assert_eq!(e.key.as_deref(), Some("files./srv/app/.env.mode"), "{e}");
    assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");
    let p = t.profile(
        "site",
        &format!(
            "{}[[files]]\npath = \"/srv/app/.env\"\nowner = \"nobody-here\"\n",
            admin()
        ),
    );
    let (st, out) = t.run(&services_runner(), &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Refused, "{out}");
    assert!(
        out.contains("owner nobody-here of /srv/app/.env does not exist"),
        "{out}"
    );
}

const LOGS: &str = "[[users]]\nname = \"app\"\nsystem = true\n\n[[logs]]\nname = \"app\"\npath = \"/var/log/app\"\nowner = \"app\"\ngroup = \"app\"\nmode = \"0750\"\n[logs.rotate]\nfrequency = \"daily\"\nkeep = 52\ncompress = true\ndelaycompress = true\nnotifempty = true\nmissingok = true\ncreate = \"0640 app app\"\nmaxsize = \"100M\"\npostrotate = \"systemctl reload app\"\n\n[journald]\npersistent = true\nmax_use = \"1G\"\n";

#[test]
fn logs_directories_rotation_and_journald() {
    let t = Tree::fixture("debian12-services");
    let p = t.profile("site", &format!("{}{LOGS}", admin()));
    let runner = services_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(
        plan.contains("write /etc/logrotate.d/bollwerk-app (0644 0:0), checked with `logrotate -d` before activation"),
        "{plan}"
    );
    assert!(plan.contains("+    su app app\n"), "{plan}");
    assert!(
        plan.contains("/usr/bin/systemctl restart systemd-journald.service"),
        "{plan}"
    );
    let before = t.snapshot();
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    // app is a new system user (the highest free uid below 1000) with its own group.
    let passwd = t.read("etc/passwd");
    let app = passwd.lines().find(|l| l.starts_with("app:")).unwrap();
    let uid: u32 = app.split(':').nth(2).unwrap().parse().unwrap();
    let gid: u32 = app.split(':').nth(3).unwrap().parse().unwrap();
    assert_eq!(t.meta("var/log/app"), (0o750, uid, gid));
    assert_eq!(t.meta("etc/logrotate.d/bollwerk-app"), (0o644, 0, 0));
    assert!(
        t.read("etc/logrotate.d/bollwerk-app")
            .contains("    create 0640 app app\n")
    );
    assert_eq!(
        t.read("etc/systemd/journald.conf.d/50-bollwerk.conf"),
        "# Managed by bollwerk — local edits are overwritten\n[Journal]\nStorage=persistent\nSystemMaxUse=1G\n"
    );
    // logrotate -d ran on a copy where the not yet existing app user reads as root.
    let check = runner
        .log()
        .into_iter()
        .find(|l| l.starts_with("/usr/sbin/logrotate -d -s /var/lib/bollwerk/tmp/"))
        .expect("logrotate -d ran");
    assert!(check.ends_with("bollwerk-app.check"), "{check}");
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok);
    assert!(out.contains("0 changes"), "{out}");
    // Dropping the entry removes our logrotate file (the directory stays: it holds logs).
    let p2 = t.profile(
        "a",
        &format!(
            "{}[[logs]]\nname = \"other\"\npath = \"/var/log/other\"\n",
            admin()
        ),
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p2]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(!t.exists("etc/logrotate.d/bollwerk-app"));
    assert!(t.exists("var/log/app"));
    for _ in 0..2 {
        let (st, out) = t.run(&runner, &["rollback"]);
        assert_eq!(st, ExitStatus::Ok, "{out}");
    }
    assert_eq!(t.snapshot(), before);
}

#[test]
fn logrotate_rejection_stops_the_apply() {
    let t = Tree::fixture("debian12-services");
    let p = t.profile("site", &format!("{}{LOGS}", admin()));
    let runner = services_runner();
    // What logrotate 3.21 prints for a bad line (exit 1, like a merely missing log).
    runner.respond_with("/usr/sbin/logrotate -d", |_, cmd| Output {
        code: 1,
        stdout: String::new(),
        stderr: format!(
            "reading config file {0}\nerror: {0}:3 unknown option 'dailyx' -- ignoring line\n",
            cmd.args.last().unwrap()
        ),
    });
    let before = t.snapshot();
    let (st, _) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Failure);
    assert_eq!(t.snapshot(), before, "nothing activated");
    // A missing log is not a configuration error.
    runner.respond_with("/usr/sbin/logrotate -d", |_, _| Output {
        code: 1,
        stdout: String::new(),
        stderr: "error: stat of /var/log/app/*.log failed: No such file or directory\n".into(),
    });
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
}

#[test]
fn logs_profile_errors() {
    let t = Tree::fixture("debian12-services");
    for (bad, key) in [
        (
            "[[logs]]\nname = \"Bad Name\"\npath = \"/var/log/x\"\n",
            "logs.Bad Name.name",
        ),
        (
            "[[logs]]\nname = \"x\"\npath = \"/var/log\"\n",
            "logs.x.path",
        ),
        ("[[logs]]\nname = \"x\"\nmode = \"0750\"\n", "logs.x"),
        (
            "[[logs]]\nname = \"x\"\npath = \"/var/log/x\"\nrotate = { create = \"0640 a b c\" }\n",
            "logs.x.rotate",
        ),
        (
            "[[logs]]\nname = \"x\"\npath = \"/var/log/x\"\nrotate = { delaycompress = true }\n",
            "logs.x.rotate",
        ),
    ] {
        let p = t.profile("bad", bad);
        let e = bollwerk::profile::load(&p).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{e}");
        assert!(e.position.is_some(), "{e}");
    }
    let p = t.profile(
        "bad",
        "[[logs]]\nname = \"x\"\npath = \"/var/log/x\"\nrotate = { maxsize = \"1.5G\" }\n",
    );
    let e = bollwerk::profile::load(&p).unwrap_err();
    assert!(e.message.contains("size `1.5G`"), "{e}");
}

const UPDATES: &str = "[updates]\nunattended = true\norigins = [\"security\"]\nreboot = true\nreboot_time = \"03:00\"\nwindow = \"03:00\"\nremove_unused = true\nmail = \"ops@example.org\"\n";

#[test]
fn updates_debian_origins_timers_and_validators() {
    let t = Tree::fixture("debian12-services");
    let p = t.profile("site", &format!("{}{UPDATES}", admin()));
    let runner = services_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(
        plan.contains("reboot_time 03:00 lies inside the upgrade window"),
        "{plan}"
    );
    assert!(plan.contains("neither mail nor sendmail"), "{plan}");
    let before = t.snapshot();
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert_eq!(
        t.read("etc/apt/apt.conf.d/20auto-upgrades"),
        "// Managed by bollwerk — local edits are overwritten\nAPT::Periodic::Update-Package-Lists \"1\";\nAPT::Periodic::Unattended-Upgrade \"1\";\n"
    );
    let uu = t.read("etc/apt/apt.conf.d/52bollwerk-unattended-upgrades");
    for line in [
        "#clear Unattended-Upgrade::Origins-Pattern;\n",
        "Unattended-Upgrade::Origins-Pattern {\n    \"origin=Debian,codename=${distro_codename}-security,label=Debian-Security\";\n};\n",
        "Unattended-Upgrade::Automatic-Reboot \"true\";\n",
        "Unattended-Upgrade::Automatic-Reboot-Time \"03:00\";\n",
        "Unattended-Upgrade::Remove-Unused-Dependencies \"true\";\n",
        "Unattended-Upgrade::Mail \"ops@example.org\";\n",
    ] {
        assert!(uu.contains(line), "{line:?} missing in\n{uu}");
    }
    let timer = t.read("etc/systemd/system/apt-daily-upgrade.timer.d/50-bollwerk.conf");
    assert!(
        timer.ends_with(
            "[Timer]\nOnCalendar=\nOnCalendar=*-*-* 03:00:00\nRandomizedDelaySec=1800\n"
        ),
        "{timer}"
    );
    let dl = t.read("etc/systemd/system/apt-daily.timer.d/50-bollwerk.conf");
    assert!(dl.contains("OnCalendar=*-*-* 02:00:00\n"), "{dl}");
    let log = runner.log();
    assert!(
        log.iter().any(
            |l| l.starts_with("/usr/bin/apt-config -c /var/lib/bollwerk/tmp/")
                && l.ends_with(" dump Unattended-Upgrade")
        ),
        "{log:?}"
    );
    assert!(
        log.iter().any(|l| l
            == "/usr/bin/systemd-analyze verify --man=no apt-daily.timer apt-daily-upgrade.timer"),
        "{log:?}"
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok);
    assert!(out.contains("0 changes"), "{out}");
    // unattended = false switches the periodic runs off and removes the drop-ins.
    let p2 = t.profile("a", &format!("{}[updates]\nunattended = false\n", admin()));
    let (st, out) = t.run(&runner, &["apply", "--profile", &p2]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(
        t.read("etc/apt/apt.conf.d/20auto-upgrades")
            .contains("Unattended-Upgrade \"0\"")
    );
    assert!(!t.exists("etc/apt/apt.conf.d/52bollwerk-unattended-upgrades"));
    assert!(!t.exists("etc/systemd/system/apt-daily.timer.d/50-bollwerk.conf"));
    for _ in 0..2 {
        let (st, out) = t.run(&runner, &["rollback"]);
        assert_eq!(st, ExitStatus::Ok, "{out}");
    }
    assert_eq!(t.snapshot(), before);
}

#[test]
fn updates_ubuntu_uses_allowed_origins() {
    let t = Tree::fixture("ubuntu2204");
    let p = t.profile(
        "site",
        &format!(
            "{}[updates]\nunattended = true\norigins = [\"security\", \"updates\"]\n",
            admin()
        ),
    );
    let runner = services_runner();
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let uu = t.read("etc/apt/apt.conf.d/52bollwerk-unattended-upgrades");
    assert!(uu.contains("Unattended-Upgrade::Allowed-Origins {\n    \"${distro_id}:${distro_codename}-security\";\n"), "{uu}");
    assert!(
        uu.contains("    \"${distro_id}:${distro_codename}-updates\";\n"),
        "{uu}"
    );
    assert!(!uu.contains("origin=Debian"), "{uu}");
    assert!(
        !t.exists("etc/systemd/system/apt-daily-upgrade.timer.d"),
        "no window, no timer drop-in"
    );
}

#[test]
fn updates_verify_catches_origins_added_elsewhere() {
    let t = Tree::fixture("debian12-services");
    let p = t.profile("site", &format!("{}{UPDATES}", admin()));
    let runner = services_runner();
    runner.respond_with("/usr/bin/apt-config dump", |root, cmd| {
        let mut o = fake_apt_config_dump(root, cmd);
        o.stdout
            .push_str("Unattended-Upgrade::Origins-Pattern:: \"origin=*\";\n");
        o
    });
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Failure, "{out}");
}

#[test]
fn updates_profile_errors() {
    let t = Tree::fixture("debian12-services");
    for (bad, key) in [
        ("[updates]\nwindow = \"3:00\"\n", "updates.window"),
        (
            "[updates]\nreboot = true\nreboot_time = \"25:00\"\n",
            "updates.reboot_time",
        ),
        (
            "[updates]\nreboot_time = \"03:00\"\n",
            "updates.reboot_time",
        ),
        ("[updates]\nmail = \"ops\"\n", "updates.mail"),
        ("[updates]\norigins = []\n", "updates.origins"),
    ] {
        let p = t.profile("bad", bad);
        let e = bollwerk::profile::load(&p).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{bad}: {e}");
        assert!(e.position.is_some() && e.hint.is_some(), "{e}");
    }
    let p = t.profile("bad", "[updates]\norigins = [\"backports\"]\n");
    let e = bollwerk::profile::load(&p).unwrap_err();
    assert!(e.hint.clone().unwrap().contains("security"), "{e}");
}

const PG: &str = "[postgres]\nworkload = \"web\"\nmemory = \"auto\"\ncpus = \"auto\"\nstorage = \"ssd\"\nmax_connections = 200\nlisten_addresses = \"localhost\"\nsettings = { log_min_duration_statement = \"500ms\" }\n";

fn dropin(t: &Tree) -> String {
    t.read("etc/postgresql/15/main/conf.d/bollwerk.conf")
}

#[test]
fn postgres_tuned_from_host_facts_and_hardened() {
    // The fixture describes an 8 GiB / 4-CPU machine (proc/meminfo, proc/cpuinfo, no cgroup limit).
    let t = Tree::fixture("debian12-services");
    let hba = t.read("etc/postgresql/15/main/pg_hba.conf");
    t.write(
        "etc/postgresql/15/main/pg_hba.conf",
        &format!("{hba}host    all             all             0.0.0.0/0               trust\nlocal   all             all                                     trust\n"),
    );
    let p = t.profile("site", &format!("{}{PG}", admin()));
    let runner = services_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(
        plan.contains("checked with `postgres -C (PostgreSQL 15/main)` before activation"),
        "{plan}"
    );
    assert!(
        plan.contains("/usr/bin/systemctl restart postgresql@15-main.service"),
        "{plan}"
    );
    assert!(
        plan.contains("network clients on former trust lines now need a password"),
        "{plan}"
    );
    let before = t.snapshot();
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let d = dropin(&t);
    for line in [
        "max_connections = 200\n",
        "shared_buffers = 2GB\n",
        "effective_cache_size = 6GB\n",
        "maintenance_work_mem = 512MB\n",
        "work_mem = 10280kB\n",
        "wal_buffers = 16MB\n",
        "random_page_cost = 1.1\n",
        "effective_io_concurrency = 200\n",
        "max_parallel_workers_per_gather = 2\n",
        "password_encryption = 'scram-sha-256'\n",
        "ssl = on\n",
        "log_connections = on\n",
        "log_disconnections = on\n",
        "log_line_prefix = '%m [%p] %q%u@%d from %h '\n",
        "listen_addresses = localhost\n",
        "log_min_duration_statement = 500ms\n",
    ] {
        assert!(d.contains(line), "{line:?} missing in\n{d}");
    }
    assert!(d.contains("8 GiB (RAM), 4 CPUs (CPUs)"), "{d}");
    assert_eq!(
        t.meta("etc/postgresql/15/main/conf.d/bollwerk.conf"),
        (0o644, 101, 109)
    );
    let hba = t.read("etc/postgresql/15/main/pg_hba.conf");
    assert!(
        hba.contains(
            "host    all             all             0.0.0.0/0               scram-sha-256\n"
        ),
        "{hba}"
    );
    assert!(
        hba.contains("local   all             all                                     peer\n"),
        "{hba}"
    );
    assert_eq!(
        t.meta("etc/postgresql/15/main/pg_hba.conf"),
        (0o640, 101, 109)
    );
    // The candidate was parsed by postgres -C as the postgres user before activation.
    assert!(runner.log().iter().any(|l| l.starts_with("/usr/sbin/runuser -u postgres -- /usr/lib/postgresql/15/bin/postgres -C max_connections -c config_file=/tmp/bollwerk-pgcheck-")), "{:?}", runner.log());
    assert!(
        !t.snapshot()
            .keys()
            .any(|k| k.starts_with("tmp/bollwerk-pgcheck")),
        "check directory removed"
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok);
    assert!(out.contains("0 changes"), "{out}");
    // A setting that is not restart-only changes: reload, not restart.
    let p2 = t.profile("a", &format!("{}{}", admin(), PG.replace("500ms", "250ms")));
    let (_, plan) = t.run(&runner, &["plan", "--profile", &p2]);
    assert!(
        plan.contains("/usr/bin/systemctl reload postgresql@15-main.service"),
        "{plan}"
    );
    assert!(!plan.contains("systemctl restart postgresql"), "{plan}");
    let (st, out) = t.run(&runner, &["rollback"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert_eq!(t.snapshot(), before);
}

#[test]
fn postgres_in_a_2gib_lxc_on_a_64gib_host_is_tuned_for_2gib() {
    let t = Tree::fixture("debian12-services");
    t.write("proc/meminfo", "MemTotal:       67108864 kB\n");
    t.write("proc/cpuinfo", &"processor\t: 0\n\n".repeat(16));
    t.write("proc/self/cgroup", "0::/\n");
    t.write("sys/fs/cgroup/memory.max", "2147483648\n");
    t.write("sys/fs/cgroup/cpu.max", "200000 100000\n");
    t.write("run/systemd/container", "lxc\n");
    let p = t.profile("site", &format!("{}{PG}", admin()));
    let runner = services_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(
        plan.contains("tuned for 2 GiB (cgroup memory limit; the host has 64 GiB)"),
        "{plan}"
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let d = dropin(&t);
    assert!(d.contains("shared_buffers = 512MB\n"), "{d}");
    assert!(d.contains("effective_cache_size = 1536MB\n"), "{d}");
    // 2 CPUs (cpu.max quota) → no parallel settings.
    assert!(!d.contains("max_worker_processes"), "{d}");
    assert!(
        d.contains("2 CPUs (cgroup CPU limit; the host has 16)"),
        "{d}"
    );
    // (2 GiB − 512 MiB) / ((200 + 8) × 3) = 2520 kB → PGTune's 4 MB floor.
    assert!(d.contains("work_mem = 4MB\n"), "{d}");
}

#[test]
fn postgres_unknown_memory_hardens_only_and_explicit_values_win() {
    let t = Tree::fixture("debian12-services");
    std::fs::remove_file(t.path("proc/meminfo")).unwrap();
    std::fs::remove_file(t.path("proc/cpuinfo")).unwrap();
    std::fs::remove_dir_all(t.path("sys")).unwrap();
    let p = t.profile("site", &format!("{}{PG}", admin()));
    let runner = services_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(
        plan.contains("memory = \"auto\" but the target's RAM is unknown"),
        "{plan}"
    );
    assert!(!plan.contains("+shared_buffers"), "{plan}");
    assert!(plan.contains("+max_connections = 200"), "{plan}");
    assert!(
        plan.contains("+password_encryption = 'scram-sha-256'"),
        "{plan}"
    );
    // Explicit memory and settings: settings beat computed values.
    let p = t.profile(
        "site",
        &format!(
            "{}[postgres]\nmemory = \"4GiB\"\ncpus = 2\nsettings = {{ shared_buffers = \"1GB\", jit = true }}\n",
            admin()
        ),
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let d = dropin(&t);
    assert!(
        d.contains("shared_buffers = 1GB\n") && !d.contains("shared_buffers = 1GB\nshared"),
        "{d}"
    );
    assert_eq!(d.matches("shared_buffers").count(), 1, "{d}");
    assert!(d.contains("jit = on\n"), "{d}");
    assert!(d.contains("effective_cache_size = 3GB\n"), "{d}");
}

#[test]
fn postgres_include_dir_and_alter_system_overrides() {
    let t = Tree::fixture("debian12-services");
    let conf = t.read("etc/postgresql/15/main/postgresql.conf");
    t.write(
        "etc/postgresql/15/main/postgresql.conf",
        &conf.replace("include_dir = 'conf.d'", "#include_dir = 'conf.d'"),
    );
    t.write(
        "var/lib/postgresql/15/main/postgresql.auto.conf",
        "# Do not edit this file manually!\nwork_mem = '64MB'\n",
    );
    let p = t.profile("site", &format!("{}{PG}", admin()));
    let runner = services_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(
        plan.contains("activate include_dir = 'conf.d' in postgresql.conf"),
        "{plan}"
    );
    assert!(plan.contains("+include_dir = 'conf.d'"), "{plan}");
    assert!(
        plan.contains("work_mem (ALTER SYSTEM; `ALTER SYSTEM RESET work_mem` removes it)"),
        "{plan}"
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(
        t.read("etc/postgresql/15/main/postgresql.conf")
            .ends_with("include_dir = 'conf.d'\n")
    );
    assert_eq!(
        t.meta("etc/postgresql/15/main/postgresql.conf"),
        (0o644, 101, 109),
        "mode and owner kept"
    );
}

#[test]
fn postgres_verify_reports_values_postgres_does_not_read() {
    let t = Tree::fixture("debian12-services");
    let p = t.profile("site", &format!("{}{PG}", admin()));
    let runner = services_runner();
    // PostgreSQL answers with a value other than bollwerk.conf's (a later file wins).
    runner.respond_with("/usr/sbin/runuser -u postgres -- /usr/lib/postgresql/15/bin/postgres -C max_connections -c config_file=/etc/", |_, _| ok_output("100\n"));
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Failure, "{out}");
}

#[test]
fn postgres_profile_errors() {
    let t = Tree::fixture("debian12-services");
    for (bad, key) in [
        (
            "[postgres]\nmax_connections = 0\n",
            "postgres.max_connections",
        ),
        ("[postgres]\nmemory = \"100M\"\n", "postgres.memory"),
        (
            "[postgres]\nsettings = { \"Bad-Name\" = 1 }\n",
            "postgres.settings",
        ),
        (
            "[postgres]\nsettings = { data_directory = \"/x\" }\n",
            "postgres.settings",
        ),
        ("[postgres]\nclusters = [\"main\"]\n", "postgres.clusters"),
        (
            "[postgres]\nlisten_addresses = \"a;b\"\n",
            "postgres.listen_addresses",
        ),
    ] {
        let p = t.profile("bad", bad);
        let e = bollwerk::profile::load(&p).unwrap_err();
        assert_eq!(e.key.as_deref(), Some(key), "{bad}: {e}");
        assert!(e.position.is_some() && e.hint.is_some(), "{e}");
    }
    for bad in [
        "[postgres]\nmemory = \"lots\"\n",
        "[postgres]\ncpus = 0\n",
        "[postgres]\nworkload = \"webapp\"\n",
    ] {
        let p = t.profile("bad", bad);
        let e = bollwerk::profile::load(&p).unwrap_err();
        assert!(e.position.is_some(), "{bad}: {e}");
    }
}

#[test]
fn webapp_postgres_profile_on_the_fixture_converges() {
    let t = Tree::fixture("debian12-services");
    let p = t.profile(
        "site",
        &format!("extends = \"webapp-postgres\"\n{}", admin()),
    );
    let runner = services_runner();
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    // The fixture is an 8 GiB / 4-CPU machine: tuned; postgresql (the metapackage) installed.
    assert!(dropin(&t).contains("shared_buffers = 2GB\n"));
    assert!(
        t.read("var/lib/dpkg/status")
            .contains("Package: postgresql\n")
    );
    assert_eq!(t.meta("srv/app/.env").0, 0o600);
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok);
    assert!(out.contains("0 changes"), "{out}");
}

#[test]
fn software_installed_by_a_run_is_configured_in_a_follow_up_run() {
    let t = Tree::fixture("debian12-services");
    let status = t.read("var/lib/dpkg/status");
    t.write(
        "var/lib/dpkg/status",
        &status.replace(
            "Package: unattended-upgrades\nStatus: install ok installed\n",
            "Package: unattended-upgrades\nStatus: deinstall ok config-files\n",
        ),
    );
    let before = t.snapshot();
    let p = t.profile("site", &format!("{}{UPDATES}", admin()));
    let runner = services_runner();
    let (_, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert!(
        plan.contains("install --no-install-recommends unattended-upgrades\n"),
        "{plan}"
    );
    assert!(
        plan.contains("its configuration is planned and applied right after"),
        "{plan}"
    );
    assert!(!plan.contains("52bollwerk-unattended-upgrades"), "{plan}");
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let (first, second) = out
        .split_once("configuring what the packages installed (second run):\n")
        .unwrap_or_else(|| panic!("no second run:\n{out}"));
    assert!(
        first.contains("[packages] install unattended-upgrades (updates module)"),
        "{out}"
    );
    assert!(
        second.contains("[updates] unattended upgrades: security"),
        "{out}"
    );
    assert!(t.exists("etc/apt/apt.conf.d/52bollwerk-unattended-upgrades"));
    let (_, runs) = t.run(&runner, &["runs"]);
    assert_eq!(
        runs.lines().filter(|l| l.contains(" apply ")).count(),
        2,
        "{runs}"
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok);
    assert!(out.contains("0 changes"), "{out}");
    // Rollback, latest run first, restores every file; the package stays installed.
    for _ in 0..2 {
        let (st, out) = t.run(&runner, &["rollback"]);
        assert_eq!(st, ExitStatus::Ok, "{out}");
    }
    let mut after = t.snapshot();
    let mut before = before;
    after.remove("var/lib/dpkg/status");
    before.remove("var/lib/dpkg/status");
    assert_eq!(after, before);
}

#[test]
fn profiles_extending_webapp_postgres_merge_logs_files_and_settings() {
    let t = Tree::fixture("debian12-services");
    let p = t.profile(
        "site",
        "extends = \"webapp-postgres\"\n[[logs]]\nname = \"app\"\nrotate = { keep = 7 }\n\n[[logs]]\nname = \"worker\"\npath = \"/var/log/worker\"\n\n[[files]]\npath = \"/srv/app/.env\"\nmode = \"0640\"\n\n[postgres]\nsettings = { log_lock_waits = true }\n",
    );
    let l = bollwerk::profile::load(&p).unwrap();
    let logs = &l.profile.logs;
    assert_eq!(logs.len(), 2);
    let app = &logs[0];
    assert_eq!(app.name, "app");
    let r = app.rotate.as_ref().unwrap();
    assert_eq!(r.keep, Some(7), "overridden");
    assert_eq!(
        r.maxsize.map(|s| s.bytes()),
        Some(100 << 20),
        "kept from the base"
    );
    assert_eq!(l.profile.files.len(), 1);
    assert_eq!(l.profile.files[0].mode.map(|m| m.0), Some(0o640));
    assert_eq!(
        l.profile.files[0].owner.as_ref().map(|o| o.as_str()),
        Some("app")
    );
    let pg = l.profile.postgres.as_ref().unwrap();
    assert_eq!(pg.settings.len(), 2, "settings merge key by key");
}

#[test]
fn a_package_that_adds_a_group_does_not_break_the_users_change_of_the_same_apply() {
    // The package step runs first; aide's postinst adds the group _aide to etc/group, which the
    // users module planned against before. The run stops cleanly there and the follow-up run
    // plans the users change again on the new etc/group: both groups end up in it.
    let t = Tree::fixture("debian12-services");
    let p = t.profile(
        "site",
        &format!("[packages]\ninstall = [\"aide\"]\n{}", admin()),
    );
    let runner = services_runner();
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("stopped after"), "{out}");
    let group = t.read("etc/group");
    assert!(group.contains("\n_aide:x:998:\n"), "{group}");
    assert!(group.contains("\nsudo:x:27:deploy\n"), "{group}");
    assert!(t.read("etc/passwd").contains("\ndeploy:x:"));
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("0 changes"), "{out}");
}

/// Installs ufw into the fixture the way apt would (files + dpkg status), enabled or not.
fn with_ufw(t: &Tree, enabled: bool) {
    let root = bollwerk::root::Root::new(t.root()).unwrap();
    ship_files(&root, "ufw");
    let status = t.read("var/lib/dpkg/status");
    t.write(
        "var/lib/dpkg/status",
        &format!(
            "{}\n\nPackage: ufw\nStatus: install ok installed\nVersion: 0.36.2-1\n\n",
            status.trim_end()
        ),
    );
    let conf = t.read("etc/ufw/ufw.conf");
    t.write(
        "etc/ufw/ufw.conf",
        &conf.replace("ENABLED=yes", "ENABLED=no"),
    );
    if enabled {
        let conf = t.read("etc/ufw/ufw.conf");
        t.write(
            "etc/ufw/ufw.conf",
            &conf.replace("ENABLED=no", "ENABLED=yes"),
        );
    }
}

#[test]
fn firewall_remove_other_purges_a_disabled_ufw_and_leaves_an_enabled_one() {
    let fw = "[firewall]\nbackend = \"nftables\"\nremove_other = true\n";
    // ufw installed but not enabled: the packages step removes it, for the firewall module.
    let t = Tree::fixture("debian12-services");
    with_ufw(&t, false);
    let p = t.profile("site", &format!("{fw}{}", admin()));
    let runner = services_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(plan.contains("ufw (firewall module)"), "{plan}");
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(
        apt_lines(&runner)
            .iter()
            .any(|l| l.contains(" ufw") && (l.contains(" remove ") || l.contains(" purge "))),
        "{:?}",
        apt_lines(&runner)
    );
    assert!(!t.read("var/lib/dpkg/status").contains("Package: ufw\n"));
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("0 changes"), "{out}");

    // ufw enabled: not removed in this run (the host would be unfiltered in between); said so.
    let t = Tree::fixture("debian12-services");
    with_ufw(&t, true);
    let p = t.profile("site", &format!("{fw}{}", admin()));
    let runner = services_runner();
    let (_, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert!(!plan.contains("ufw (firewall module)"), "{plan}");
    assert!(
        plan.contains("ufw is enabled, so it is not removed"),
        "{plan}"
    );

    // Without the switch nothing is removed.
    let t = Tree::fixture("debian12-services");
    with_ufw(&t, false);
    let p = t.profile(
        "site",
        &format!("[firewall]\nbackend = \"nftables\"\n{}", admin()),
    );
    let (_, plan) = t.run(&services_runner(), &["plan", "--profile", &p]);
    assert!(!plan.contains("ufw (firewall module)"), "{plan}");
}
