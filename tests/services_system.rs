//! System tests of the services modules against the real Debian 12 testbed rootfs (overlay
//! instances; see tests/testbed/README.md): apt installs and removals with the real apt and
//! the mirror, the deferred validation of a tool installed by the same run, logrotate really
//! rotating, unattended-upgrade and systemd accepting the update configuration, and
//! PostgreSQL started with the generated configuration.

mod common;

use std::process::{Command, Output};

use common::testbed::*;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPci/6iPPKNm3TqnlFNu0Zy6jtqtz5kw0YO3RjFH01v alice@laptop";

fn admin() -> String {
    format!(
        "[[users]]\nname = \"deploy\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{KEY}\"]\n"
    )
}

/// Runs the real bollwerk binary against the instance.
fn bollwerk(inst: &Instance, args: &[&str]) -> Output {
    run_capture(
        Command::new(bollwerk_bin())
            .args(args)
            .arg("--root")
            .arg(&inst.root)
            .env("NO_COLOR", "1"),
        None,
        std::time::Duration::from_secs(900),
    )
}

fn write_profile(dir: &TempDir, text: &str) -> String {
    let p = dir.path().join("site.toml");
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// apt inside the instance resolves the mirror with the root's own resolv.conf: give it the
/// host's (a provisioning pipeline does the same before it chroots).
fn give_dns(inst: &Instance) {
    let host = std::fs::read("/etc/resolv.conf").expect("host resolv.conf");
    inst.write("/etc/resolv.conf", host);
}

fn apply_ok(inst: &Instance, profile: &str) -> String {
    let out = bollwerk(inst, &["apply", "--profile", profile]);
    assert!(out.status.success(), "apply:\n{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_converged(inst: &Instance, profile: &str) {
    let out = bollwerk(inst, &["apply", "--profile", profile]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("0 changes"),
        "re-apply is not a no-op:\n{}",
        describe(&out)
    );
}

#[test]
fn logrotate_really_rotates_with_owner_mode_and_compression() {
    let Some(tb) = testbed_or_skip("logrotate_really_rotates_with_owner_mode_and_compression")
    else {
        return;
    };
    let inst = tb.instance();
    let dir = TempDir::new("logs");
    let profile = write_profile(
        &dir,
        &format!(
            "{}[[users]]\nname = \"app\"\nsystem = true\n\n[[logs]]\nname = \"app\"\npath = \"/var/log/app\"\nowner = \"app\"\ngroup = \"app\"\nmode = \"0750\"\nrotate = {{ frequency = \"daily\", keep = 52, compress = true, delaycompress = true, notifempty = true, missingok = true, create = \"0640 app app\", maxsize = \"100M\", postrotate = \"echo rotated >> /var/tmp/postrotate.log\" }}\n\n[journald]\npersistent = true\nmax_use = \"1G\"\n",
            admin()
        ),
    );
    let out = apply_ok(&inst, &profile);
    assert!(out.contains("[logs] rotation of /var/log/app"), "{out}");
    assert_converged(&inst, &profile);

    // Two forced rotations: the first leaves app.log.1 plain (delaycompress), the second
    // compresses it to app.log.2.gz; the new app.log is created 0640 app:app.
    let script = "set -e
        cd /var/log/app
        printf 'first\\n' > app.log; chown app:app app.log; chmod 0640 app.log
        logrotate -f -s /var/tmp/lr.state /etc/logrotate.d/bollwerk-app
        printf 'second\\n' >> app.log
        logrotate -f -s /var/tmp/lr.state /etc/logrotate.d/bollwerk-app
        ls -ln /var/log/app
        stat -c '%n %a %U:%G' /var/log/app /var/log/app/app.log /var/log/app/app.log.1 /var/log/app/app.log.2.gz
        gzip -t app.log.2.gz && zcat app.log.2.gz
        cat app.log.1
        cat /var/tmp/postrotate.log";
    let out = inst.sh_ok(script);
    assert!(out.contains("/var/log/app 750 app:app\n"), "{out}");
    assert!(out.contains("/var/log/app/app.log 640 app:app\n"), "{out}");
    assert!(
        out.contains("/var/log/app/app.log.1 640 app:app\n"),
        "{out}"
    );
    assert!(
        out.contains("/var/log/app/app.log.2.gz 640 app:app\n"),
        "{out}"
    );
    let tail: Vec<&str> = out.lines().rev().take(4).collect();
    assert_eq!(tail, vec!["rotated", "rotated", "second", "first"], "{out}");
    // The journald drop-in is what systemd reads.
    let cat = inst.sh_ok("systemd-analyze cat-config systemd/journald.conf | tail -n 4");
    assert!(cat.contains("Storage=persistent\nSystemMaxUse=1G"), "{cat}");
}

#[test]
fn apt_installs_and_removes_for_real_and_validates_a_tool_it_installed() {
    let Some(tb) =
        testbed_or_skip("apt_installs_and_removes_for_real_and_validates_a_tool_it_installed")
    else {
        return;
    };
    let inst = tb.instance();
    give_dns(&inst);
    // Take logrotate away: the logs section needs it, so the packages module installs it and
    // the logrotate -d validation waits until it is there.
    inst.sh_ok("dpkg --purge logrotate >/dev/null && ! test -e /usr/sbin/logrotate");
    // Take unattended-upgrades away too: its postinst writes 20auto-upgrades, so [updates] is
    // configured in the follow-up run, after the install.
    inst.sh_ok("dpkg --purge unattended-upgrades >/dev/null && ! test -e /etc/apt/apt.conf.d/20auto-upgrades");
    let dir = TempDir::new("apt");
    let profile = write_profile(
        &dir,
        &format!(
            "{}[packages]\ninstall = [\"tree\"]\nremove = [\"netcat-openbsd\"]\n\n[[logs]]\nname = \"web\"\npath = \"/var/log/web\"\nrotate = {{ frequency = \"weekly\", keep = 4, missingok = true }}\n\n[updates]\nunattended = true\nwindow = \"04:00\"\n",
            admin()
        ),
    );
    let plan = bollwerk(&inst, &["plan", "--profile", &profile]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(1), "{}", describe(&plan));
    assert!(
        text.contains("install --no-install-recommends logrotate unattended-upgrades tree\n"),
        "{text}"
    );
    assert!(text.contains(" remove netcat-openbsd\n"), "{text}");

    let started = std::time::Instant::now();
    let out = apply_ok(&inst, &profile);
    eprintln!(
        "timing: apply with apt update + install + remove: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(out.contains("[logs] rotation of /var/log/web"), "{out}");
    assert!(
        out.contains("configuring what the packages installed (second run):\n")
            && out.contains("[updates] unattended upgrades: security"),
        "{out}"
    );
    let origins = inst.sh_ok("unattended-upgrade --dry-run -d 2>&1 | grep '^Allowed origins are:'");
    assert_eq!(
        origins.trim(),
        "Allowed origins are: origin=Debian,codename=bookworm-security,label=Debian-Security"
    );
    let check = inst.sh_ok(
        "dpkg-query -W -f '${Package} ${db:Status-Abbrev}\\n' tree logrotate netcat-openbsd 2>&1; \
         test ! -e /usr/sbin/policy-rc.d && echo no-policy; \
         logrotate -d /etc/logrotate.d/bollwerk-web 2>&1 | grep -c 'rotating pattern: /var/log/web/\\*.log'",
    );
    assert!(check.contains("tree ii"), "{check}");
    assert!(check.contains("logrotate ii"), "{check}");
    assert!(!check.contains("netcat-openbsd ii"), "{check}");
    assert!(check.contains("no-policy"), "{check}");
    assert_eq!(check.lines().last(), Some("1"), "{check}");
    assert_converged(&inst, &profile);

    // Rollback, latest run first: the follow-up run restores 20auto-upgrades as the package
    // wrote it; the first run's rollback restores files and says that the packages stay.
    let out = bollwerk(&inst, &["rollback"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        text.contains("/etc/apt/apt.conf.d/20auto-upgrades: content restored"),
        "{text}"
    );
    let out = bollwerk(&inst, &["rollback"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        text.contains("not undone: [packages] install logrotate (logs module), unattended-upgrades (updates module), tree (packages.install)"),
        "{text}"
    );
    assert!(!inst.path("/etc/logrotate.d/bollwerk-web").exists());
    assert!(inst.path("/usr/sbin/logrotate").exists(), "packages stay");
}

#[test]
fn unattended_upgrade_and_systemd_accept_the_update_configuration() {
    let Some(tb) =
        testbed_or_skip("unattended_upgrade_and_systemd_accept_the_update_configuration")
    else {
        return;
    };
    let inst = tb.instance();
    let dir = TempDir::new("updates");
    let profile = write_profile(
        &dir,
        &format!(
            "{}[updates]\nunattended = true\norigins = [\"security\"]\nreboot = true\nreboot_time = \"03:00\"\nwindow = \"03:00\"\nremove_unused = true\nmail = \"ops@example.org\"\n",
            admin()
        ),
    );
    let out = apply_ok(&inst, &profile);
    assert!(
        out.contains("[updates] unattended upgrades: security for Debian GNU/Linux 12"),
        "{out}"
    );
    assert_converged(&inst, &profile);

    // unattended-upgrade reads the configuration and allows exactly the security origin.
    let out = inst.sh_ok("unattended-upgrade --dry-run -d 2>&1");
    let allowed = out
        .lines()
        .find(|l| l.starts_with("Allowed origins are:"))
        .unwrap_or_else(|| panic!("no origins line:\n{out}"));
    assert_eq!(
        allowed,
        "Allowed origins are: origin=Debian,codename=bookworm-security,label=Debian-Security"
    );
    let dump = inst.sh_ok("apt-config dump Unattended-Upgrade APT::Periodic");
    for line in [
        "Unattended-Upgrade::Automatic-Reboot \"true\";",
        "Unattended-Upgrade::Automatic-Reboot-Time \"03:00\";",
        "Unattended-Upgrade::Remove-Unused-Dependencies \"true\";",
        "Unattended-Upgrade::Mail \"ops@example.org\";",
        "APT::Periodic::Unattended-Upgrade \"1\";",
    ] {
        assert!(dump.contains(line), "{line} missing:\n{dump}");
    }
    // systemd accepts the timers with the drop-ins and computes the window.
    let out = inst.sh_ok(
        "systemd-analyze verify --man=no apt-daily.timer apt-daily-upgrade.timer 2>&1; \
         systemd-analyze cat-config systemd/system/apt-daily-upgrade.timer | grep OnCalendar; \
         systemd-analyze calendar \"$(sed -n 's/^OnCalendar=\\(.\\+\\)$/\\1/p' /etc/systemd/system/apt-daily-upgrade.timer.d/50-bollwerk.conf)\"",
    );
    assert!(!out.contains("rror"), "{out}");
    assert!(
        out.contains("OnCalendar=*-*-* 6:00\nOnCalendar=\nOnCalendar=*-*-* 03:00:00\n"),
        "{out}"
    );
    assert!(out.contains("Normalized form: *-*-* 03:00:00"), "{out}");
}

/// `name = value` lines of a postgresql.conf-style file (quotes removed).
fn conf_values(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains(" = "))
        .map(|l| {
            let (k, v) = l.split_once(" = ").unwrap();
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v)
                .replace("''", "'");
            (k.trim().to_string(), v)
        })
        .collect()
}

#[test]
fn postgres_starts_with_the_generated_configuration_and_shows_every_value() {
    let Some(tb) =
        testbed_or_skip("postgres_starts_with_the_generated_configuration_and_shows_every_value")
    else {
        return;
    };
    let inst = tb.instance();
    // A trust line for a network, as found on hosts set up by hand.
    let hba = inst.read("/etc/postgresql/15/main/pg_hba.conf");
    inst.write(
        "/etc/postgresql/15/main/pg_hba.conf",
        format!("{hba}host    all             all             10.1.0.0/16             trust\n"),
    );
    let dir = TempDir::new("pg");
    let profile = write_profile(
        &dir,
        &format!(
            "{}[postgres]\nworkload = \"web\"\nmemory = \"2GiB\"\ncpus = 4\nstorage = \"ssd\"\nmax_connections = 100\nlisten_addresses = \"localhost\"\nsettings = {{ log_min_duration_statement = \"500ms\", log_lock_waits = true }}\n",
            admin()
        ),
    );
    let plan = bollwerk(&inst, &["plan", "--profile", &profile]);
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains(
            "+host    all             all             10.1.0.0/16             scram-sha-256"
        ),
        "{text}"
    );
    let out = apply_ok(&inst, &profile);
    assert!(
        out.contains("[postgres] 15/main: tuning and hardening"),
        "{out}"
    );
    assert_converged(&inst, &profile);

    let dropin = inst.read("/etc/postgresql/15/main/conf.d/bollwerk.conf");
    let values = conf_values(&dropin);
    let get = |k: &str| values.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    // PGTune for 2 GiB / 4 CPUs / web / 100 connections.
    assert_eq!(get("shared_buffers"), Some("512MB"));
    assert_eq!(get("effective_cache_size"), Some("1536MB"));
    assert_eq!(get("maintenance_work_mem"), Some("128MB"));
    // 3 % of 512 MB is 15728 kB: PGTune rounds that up to 16 MB.
    assert_eq!(get("wal_buffers"), Some("16MB"));
    assert_eq!(get("max_connections"), Some("100"));
    assert_eq!(get("password_encryption"), Some("scram-sha-256"));
    assert_eq!(get("ssl"), Some("on"), "the snakeoil certificate exists");
    assert!(values.len() >= 25, "{dropin}");

    // Start the real server (as postgres, socket in a temp dir, own network namespace) and
    // read every value back.
    let names: Vec<&str> = values.iter().map(|(n, _)| n.as_str()).collect();
    let script = format!(
        "set -e
         D=/tmp/pgsock; mkdir -p $D /run/postgresql; chown postgres:postgres $D /run/postgresql
         PGBIN=/usr/lib/postgresql/15/bin
         if ! runuser -u postgres -- $PGBIN/pg_ctl -D /var/lib/postgresql/15/main -l /tmp/pg.log -w -t 60 \
              -o \"-c config_file=/etc/postgresql/15/main/postgresql.conf -c unix_socket_directories=$D\" start >/dev/null; then
           cat /tmp/pg.log; exit 1
         fi
         for n in {names}; do printf '%s=%s\\n' $n \"$(runuser -u postgres -- psql -h $D -XAtc \"SHOW $n\")\"; done
         Q=\"FROM pg_file_settings WHERE (error IS NOT NULL AND name <> 'unix_socket_directories') OR (sourcefile LIKE '%/bollwerk.conf' AND NOT applied)\"
         echo file_errors=$(runuser -u postgres -- psql -h $D -XAtc \"SELECT count(*) $Q\")
         runuser -u postgres -- psql -h $D -XAtc \"SELECT * $Q\"
         echo hba_methods=$(runuser -u postgres -- psql -h $D -XAtc \"SELECT string_agg(DISTINCT auth_method, ',' ORDER BY auth_method) FROM pg_hba_file_rules\")
         runuser -u postgres -- $PGBIN/pg_ctl -D /var/lib/postgresql/15/main -m fast -w stop >/dev/null",
        names = names.join(" ")
    );
    let started = std::time::Instant::now();
    let out = inst.sh_net(&script);
    eprintln!(
        "timing: postgres start + {} SHOWs + stop: {:.1}s",
        names.len(),
        started.elapsed().as_secs_f64()
    );
    let shown = stdout_ok(&out, "postgres with the generated configuration");
    for (name, want) in &values {
        let line = format!("{name}={want}");
        assert!(
            shown.lines().any(|l| l == line),
            "SHOW {name}: want {want:?}\n{shown}"
        );
    }
    // (unix_socket_directories is overridden on the command line above, so its file value
    // "could not be applied": that row is the test's doing, not the configuration's.)
    assert!(shown.contains("file_errors=0\n"), "{shown}");
    assert!(
        shown.contains("hba_methods=peer,scram-sha-256\n"),
        "{shown}"
    );
}

#[test]
fn webapp_postgres_profile_applies_cleanly_and_reapplies_with_zero_changes() {
    let Some(tb) =
        testbed_or_skip("webapp_postgres_profile_applies_cleanly_and_reapplies_with_zero_changes")
    else {
        return;
    };
    let inst = tb.instance();
    give_dns(&inst);
    // The app's secrets, deployed world-readable by mistake.
    inst.write(
        "/srv/app/.env",
        "DATABASE_URL=postgres://app:hunter2-system-test@localhost/app\n",
    );
    let dir = TempDir::new("webapp");
    let profile = write_profile(&dir, &format!("extends = \"webapp-postgres\"\n{}", admin()));

    let t = std::time::Instant::now();
    let plan = bollwerk(&inst, &["plan", "--profile", &profile]);
    let plan_s = t.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(1), "{}", describe(&plan));
    assert!(!text.contains("hunter2"), "secret in the plan");
    assert!(
        text.contains("permissions of /srv/app/.env (secret"),
        "{text}"
    );

    let t = std::time::Instant::now();
    let out = apply_ok(&inst, &profile);
    let apply_s = t.elapsed().as_secs_f64();
    assert!(!out.contains("hunter2"));
    let t = std::time::Instant::now();
    assert_converged(&inst, &profile);
    let reapply_s = t.elapsed().as_secs_f64();
    eprintln!(
        "timing: webapp-postgres on the testbed: plan {plan_s:.2}s, apply {apply_s:.2}s (incl. apt), re-apply {reapply_s:.2}s"
    );

    // What the profile promises, checked with the rootfs's own tools.
    let check = inst.sh_ok(
        "sshd -t && echo sshd-ok
         stat -c '%n %a %U:%G' /srv/app/.env /var/log/app
         logrotate -d /etc/logrotate.d/bollwerk-app 2>&1 | grep -c 'rotating pattern: /var/log/app/\\*.log'
         unattended-upgrade --dry-run -d 2>&1 | grep '^Allowed origins are:'
         runuser -u postgres -- /usr/lib/postgresql/15/bin/postgres -C password_encryption -c config_file=/etc/postgresql/15/main/postgresql.conf
         runuser -u postgres -- /usr/lib/postgresql/15/bin/postgres -C max_connections -c config_file=/etc/postgresql/15/main/postgresql.conf
         dpkg-query -W -f '${Package} ${db:Status-Abbrev}\\n' postgresql fail2ban unattended-upgrades
         test ! -e /usr/sbin/policy-rc.d && echo no-policy",
    );
    for want in [
        "sshd-ok\n",
        "/srv/app/.env 600 app:app\n",
        "/var/log/app 750 app:app\n",
        "\n1\n",
        "Allowed origins are: origin=Debian,codename=bookworm-security,label=Debian-Security\n",
        "scram-sha-256\n200\n",
        "postgresql ii",
        "fail2ban ii",
        "no-policy",
    ] {
        assert!(check.contains(want), "{want:?} missing:\n{check}");
    }
    // The secret's content is nowhere in bollwerk's journal.
    let journal = inst.sh_ok("grep -rl hunter2 /var/lib/bollwerk || true");
    assert!(journal.trim().is_empty(), "secret journaled in {journal}");

    // apply, then audit with the same profile: every check the profile covers is green
    // (the firewall, fail2ban, updates, PostgreSQL, logs and secrets checks included). The only
    // exception is what an offline root cannot show (a service or jail *running*): that is
    // `not_evaluated` with the reason, never an invented pass.
    let audit = bollwerk(&inst, &["audit", "--profile", &profile, "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&audit.stdout)
        .unwrap_or_else(|e| panic!("audit JSON: {e}\n{}", describe(&audit)));
    let covered: Vec<&serde_json::Value> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["covered_by_profile"] == true)
        .collect();
    assert!(covered.len() > 60, "only {} covered checks", covered.len());
    let bad: Vec<String> = covered
        .iter()
        .filter(|r| {
            let evidence = r["evidence"].to_string();
            let offline = r["status"] == "not_evaluated"
                && (evidence.contains("not a live system")
                    || evidence.contains("the root is not live"));
            !offline
                && !matches!(
                    r["status"].as_str(),
                    Some("pass" | "not_applicable" | "skipped")
                )
        })
        .map(|r| format!("{} {}: {}", r["id"], r["status"], r["evidence"]))
        .collect();
    assert!(
        bad.is_empty(),
        "covered checks not green after apply:\n  {}",
        bad.join("\n  ")
    );
    for id in [
        "firewall.default-deny-input",
        "firewall.loopback",
        "firewall.ssh-allowed",
        "secrets.file-mode",
    ] {
        let r = covered
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("{id} not covered"));
        assert_eq!(r["status"], "pass", "{id}: {}", r["evidence"]);
    }
}

#[test]
fn apt_waits_while_another_apt_holds_the_lists_lock() {
    let Some(tb) = testbed_or_skip("apt_waits_while_another_apt_holds_the_lists_lock") else {
        return;
    };
    let inst = tb.instance();
    give_dns(&inst);
    let dir = TempDir::new("aptlock");
    let profile = write_profile(
        &dir,
        &format!(
            "{}[packages]\ninstall = [\"tree\"]\nlock_timeout = \"2m\"\n",
            admin()
        ),
    );
    // Like apt-daily on first boot: another process holds apt's locks for a while.
    let holder = std::thread::scope(|s| {
        let h = s.spawn(|| {
            inst.cmd(&[
                "python3",
                "-c",
                "import fcntl, time\n\
                 l = open('/var/lib/apt/lists/lock', 'w'); fcntl.lockf(l, fcntl.LOCK_EX)\n\
                 f = open('/var/lib/dpkg/lock-frontend', 'w'); fcntl.lockf(f, fcntl.LOCK_EX)\n\
                 open('/var/tmp/locked', 'w').close()\n\
                 time.sleep(8)\n",
            ])
            .output()
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !inst.path("/var/tmp/locked").exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "lock holder did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let t = std::time::Instant::now();
        let out = bollwerk(&inst, &["apply", "--profile", &profile]);
        let waited = t.elapsed();
        (h.join().unwrap(), out, waited)
    });
    let (lock_out, out, waited) = holder;
    assert!(lock_out.status.success(), "{}", describe(&lock_out));
    assert!(
        out.status.success(),
        "apply failed instead of waiting:\n{}",
        describe(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("transient failure, retrying"),
        "{}",
        describe(&out)
    );
    eprintln!(
        "timing: apply waited for the lock holder: {:.1}s",
        waited.as_secs_f64()
    );
    assert!(waited >= std::time::Duration::from_secs(5), "{waited:?}");
    assert!(
        inst.sh_ok("dpkg-query -W -f '${db:Status-Abbrev}' tree")
            .starts_with("ii")
    );
}
