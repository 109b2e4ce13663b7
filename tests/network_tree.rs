//! Tree tests of the network modules (sysctl, fail2ban, firewall with the nftables and ufw
//! backends) against the Debian 12 / Ubuntu 22.04 fixture roots, in-process with a fake
//! runner: rendered files (snapshots), idempotence, rollback, anti-lockout refusals and
//! container awareness. The real tools check the same files in `network_system.rs`.

mod common;

use bollwerk::ExitStatus;
use common::tree::{Tree, fake_runner};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPci/6iPPKNm3TqnlFNu0Zy6jtqtz5kw0YO3RjFH01v alice@laptop";

/// A site profile with an admin user (so the SSH lockout guard is satisfied) plus `extra`.
fn site(extra: &str) -> String {
    format!(
        "extends = \"baseline\"\n[[users]]\nname = \"deploy\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{KEY}\"]\n\n{extra}"
    )
}

/// The run id in `apply`'s output ("… (run ID; undo with …").
fn run_id(out: &str) -> String {
    out.split("(run ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or_else(|| panic!("no run id in {out}"))
        .to_string()
}

fn redact(t: &Tree, s: &str) -> String {
    s.replace(
        &t.root()
            .with_extension("site.toml")
            .to_string_lossy()
            .to_string(),
        "[PROFILE]",
    )
    .replace(&t.root().to_string_lossy().to_string(), "[ROOT]")
}

/// Only the lines of a plan that belong to `module` (its changes with diffs, and its notes).
fn module_part(plan: &str, module: &str) -> String {
    let tag = format!("[{module}]");
    let mut out = String::new();
    let mut on = false;
    for line in plan.lines() {
        if line.starts_with('[') {
            on = line.starts_with(&tag);
        } else if line.starts_with("note [") || line.starts_with("warning [") {
            on = line.contains(&tag);
        } else if line.is_empty() || line.ends_with("pending.") {
            on = false;
        }
        if on {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// sysctl
// ---------------------------------------------------------------------------------------------

#[test]
fn sysctl_cis_preset_plan_apply_reapply_rollback() {
    let t = Tree::fixture("debian12");
    let p = t.profile("site", &site("[sysctl]\npreset = \"cis\"\n"));
    let before = t.snapshot();
    let runner = fake_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    insta::assert_snapshot!("sysctl_cis_plan", module_part(&redact(&t, &plan), "sysctl"));

    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let conf = t.read("etc/sysctl.d/60-bollwerk.conf");
    assert_eq!(t.meta("etc/sysctl.d/60-bollwerk.conf"), (0o644, 0, 0));
    for line in [
        "net.ipv4.conf.all.send_redirects = 0\n",
        "net.ipv4.tcp_syncookies = 1\n",
        "net.ipv4.conf.all.log_martians = 1\n",
        "net.ipv4.ip_forward = 0\n",
        "kernel.randomize_va_space = 2\n",
        "fs.suid_dumpable = 0\n",
        "kernel.yama.ptrace_scope = 1\n",
    ] {
        assert!(conf.contains(line), "missing {line:?} in\n{conf}");
    }
    assert!(!conf.contains("accept_ra"), "SLAAC is opt-in:\n{conf}");
    assert!(
        !runner.log().iter().any(|c| c.contains("sysctl-load")),
        "never live on a tree: {:?}",
        runner.log()
    );

    let after = t.snapshot_with_mtime(true);
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("0 changes"), "{out}");
    assert_eq!(t.snapshot_with_mtime(true), after);

    let (st, out) = t.run(&runner, &["rollback"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert_eq!(t.snapshot(), before);
}

#[test]
fn sysctl_opt_ins_overrides_and_docker() {
    let t = Tree::fixture("debian12");
    // Docker installed: forwarding stays as it is unless the profile decides.
    t.write("usr/bin/dockerd", "");
    // A later file overriding one of our keys is reported.
    t.write("etc/sysctl.conf", "net.ipv4.conf.all.log_martians=0\n");
    std::fs::create_dir_all(t.path("etc/sysctl.d")).unwrap();
    std::os::unix::fs::symlink("../sysctl.conf", t.path("etc/sysctl.d/99-sysctl.conf")).unwrap();
    let p = t.profile(
        "site",
        &site("[sysctl]\npreset = \"cis\"\naccept_ra = false\nsettings = { \"vm.swappiness\" = 10, \"net.ipv4.tcp_rmem\" = \"4096 87380 6291456\" }\n"),
    );
    let (st, plan) = t.run(&fake_runner(), &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(plan.contains("+net.ipv6.conf.all.accept_ra = 0"), "{plan}");
    assert!(
        plan.contains("no SLAAC"),
        "the trade-off is explained in the file: {plan}"
    );
    assert!(!plan.contains("+net.ipv4.ip_forward"), "{plan}");
    assert!(
        plan.contains("Docker is installed: forwarding is left as it is"),
        "{plan}"
    );
    assert!(
        plan.contains("/etc/sysctl.d/99-sysctl.conf sets net.ipv4.conf.all.log_martians = 0 after"),
        "{plan}"
    );
    assert!(plan.contains("+vm.swappiness = 10\n"), "{plan}");
    assert!(
        plan.contains("+net.ipv4.tcp_rmem = 4096 87380 6291456\n"),
        "{plan}"
    );
    // Opting in to forwarding on a Docker host.
    let p = t.profile(
        "site",
        &site("[sysctl]\npreset = \"cis\"\nip_forward = true\n"),
    );
    let (_, plan) = t.run(&fake_runner(), &["plan", "--profile", &p]);
    assert!(plan.contains("+net.ipv4.ip_forward = 1"), "{plan}");
}

#[test]
fn sysctl_in_a_container_writes_only_network_keys() {
    let t = Tree::fixture("debian12");
    t.write("run/systemd/container", "lxc\n");
    let p = t.profile("site", &site("[sysctl]\npreset = \"cis\"\n"));
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let conf = t.read("etc/sysctl.d/60-bollwerk.conf");
    assert!(conf.contains("net.ipv4.tcp_syncookies = 1"), "{conf}");
    assert!(!conf.contains("kernel."), "{conf}");
    assert!(!conf.contains("fs."), "{conf}");
    let (_, plan) = t.run(&fake_runner(), &["plan", "--profile", &p]);
    assert!(
        plan.contains("not applicable here (kernel-wide key, read-only inside a lxc container"),
        "{plan}"
    );
    assert!(plan.contains("kernel.randomize_va_space"), "{plan}");
}

#[test]
fn sysctl_bad_keys_and_values_are_profile_errors() {
    let t = Tree::fixture("debian12");
    for (bad, want) in [
        (
            "[sysctl]\nsettings = { \"../etc/passwd\" = 1 }\n",
            "not a sysctl key",
        ),
        (
            "[sysctl]\nsettings = { \"vm.swappiness\" = \"\" }\n",
            "one non-empty line",
        ),
        ("[sysctl]\npreset = \"nsa\"\n", "invalid value"),
    ] {
        let p = t.profile("bad", bad);
        let (st, _) = t.run(&fake_runner(), &["validate", "--profile", &p]);
        assert_eq!(st, ExitStatus::Refused, "{bad}");
        let e = bollwerk::profile::load(&p).unwrap_err();
        assert!(e.to_string().contains(want), "{bad}: {e}");
        assert!(e.position.is_some(), "{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// fixtures with fail2ban, nftables and ufw installed
// ---------------------------------------------------------------------------------------------

fn copy_into(src: &std::path::Path, dst: &std::path::Path) {
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        let ft = e.file_type().unwrap();
        if ft.is_symlink() {
            let _ = std::fs::remove_file(&to);
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &to).unwrap();
        } else if ft.is_dir() {
            std::fs::create_dir_all(&to).unwrap();
            copy_into(&e.path(), &to);
        } else if e.file_name() != "dpkg-status-extra" && e.file_name() != ".perms" {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// A fixture root with fail2ban, nftables and ufw (config files, binaries as stand-ins,
/// dpkg entries) from `tests/fixtures/network/`.
fn net_tree(base: &str) -> Tree {
    let t = Tree::fixture(base);
    let extra = common::tree::fixtures().join("network");
    copy_into(&extra, t.root());
    // git keeps no modes beyond the exec bit: `.perms` says what the packages ship.
    for line in std::fs::read_to_string(extra.join(".perms"))
        .unwrap()
        .lines()
    {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() == 2 && !line.starts_with('#') {
            let mode = u32::from_str_radix(w[1], 8).unwrap();
            std::fs::set_permissions(
                t.path(w[0]),
                std::os::unix::fs::PermissionsExt::from_mode(mode),
            )
            .unwrap();
        }
    }
    let status = t.read("var/lib/dpkg/status");
    let more = std::fs::read_to_string(extra.join("dpkg-status-extra")).unwrap();
    t.write(
        "var/lib/dpkg/status",
        &format!("{}\n\n{more}", status.trim_end()),
    );
    t
}

// ---------------------------------------------------------------------------------------------
// fail2ban
// ---------------------------------------------------------------------------------------------

const F2B: &str = "[fail2ban]\njails = [\"sshd\", \"recidive\", \"nginx-http-auth\", \"nginx-limit-req\"]\nbantime = \"1h\"\nfindtime = \"10m\"\nmaxretry = 3\nbantime_increment = true\nignoreip = [\"203.0.113.7\"]\n";

#[test]
fn fail2ban_debian12_uses_the_journal_and_skips_absent_services() {
    let t = net_tree("debian12");
    let p = t.profile("site", &site(F2B));
    let before = t.snapshot();
    let runner = fake_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    insta::assert_snapshot!(
        "fail2ban_debian12_plan",
        module_part(&redact(&t, &plan), "fail2ban")
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let f = t.read("etc/fail2ban/jail.d/bollwerk.local");
    assert!(f.contains("[sshd]\n# the journal (/var/log/auth.log does not exist: no rsyslog)\nenabled = true\nport = 22\nbackend = systemd\n"), "{f}");
    assert!(
        f.contains(
            "[recidive]\n# fail2ban's own log /var/log/fail2ban.log\nenabled = true\nbackend = auto\n"
        ),
        "{f}"
    );
    assert!(!f.contains("[nginx"), "{f}");
    assert!(f.contains("bantime = 3600\nfindtime = 600\nmaxretry = 3\nbantime.increment = true\nignoreip = 127.0.0.1/8 ::1 203.0.113.7\n"), "{f}");
    assert!(
        f.contains("banaction = nftables-multiport\nbanaction_allports = nftables-allports\n"),
        "{f}"
    );
    assert!(
        runner.log().iter().any(|c| c
            .starts_with("/usr/bin/fail2ban-client -c /var/lib/bollwerk/tmp/")
            && c.ends_with("/fail2ban -t")),
        "{:?}",
        runner.log()
    );
    let after = t.snapshot_with_mtime(true);
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("0 changes"), "{out}");
    assert_eq!(t.snapshot_with_mtime(true), after);
    let (st, _) = t.run(&runner, &["rollback"]);
    assert_eq!(st, ExitStatus::Ok);
    assert_eq!(t.snapshot(), before);
}

#[test]
fn fail2ban_auth_log_variant_follows_the_ssh_port_and_ufw() {
    let t = net_tree("ubuntu2204");
    t.write("var/log/auth.log", "");
    t.write("var/log/nginx/error.log", "");
    t.write(
        "etc/ufw/ufw.conf",
        &t.read("etc/ufw/ufw.conf")
            .replace("ENABLED=no", "ENABLED=yes"),
    );
    let p = t.profile("site", &site(&format!("[ssh]\nport = 2222\n{F2B}")));
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let f = t.read("etc/fail2ban/jail.d/bollwerk.local");
    // The port moves: the jail watches both until the old port is closed.
    assert!(
        f.contains(
            "[sshd]\n# log file /var/log/auth.log\nenabled = true\n# old ssh ports, kept open until the next run: 22\nport = 22,2222\nbackend = auto\n"
        ),
        "{f}"
    );
    // A later run: sshd listens on 2222 only now, and the jail follows.
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let f = t.read("etc/fail2ban/jail.d/bollwerk.local");
    assert!(
        f.contains("enabled = true\nport = 2222\nbackend = auto\n"),
        "{f}"
    );
    assert!(f.contains("[nginx-http-auth]\n# log file /var/log/nginx/*error.log\nenabled = true\nbackend = auto\n"), "{f}");
    assert!(
        f.contains("banaction = ufw\nbanaction_allports = ufw\n"),
        "{f}"
    );
}

#[test]
fn fail2ban_unknown_jail_is_a_profile_error_and_missing_sshd_disables_the_distro_jail() {
    let t = net_tree("debian12");
    let p = t.profile(
        "site",
        &site("[fail2ban]\njails = [\"sshd\", \"nginx-htp-auth\"]\n"),
    );
    let before = t.snapshot_with_mtime(true);
    let (st, _) = t.run(&fake_runner(), &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Refused);
    let e = t.run(&fake_runner(), &["plan", "--profile", &p]);
    assert_eq!(e.0, ExitStatus::Refused);
    let mut now = t.snapshot_with_mtime(true);
    now.retain(|k, _| !k.starts_with("var"));
    let mut b = before;
    b.retain(|k, _| !k.starts_with("var"));
    assert_eq!(now, b);
    // No sshd: the Debian default `[sshd] enabled = true` would stop fail2ban.
    let t = net_tree("debian12");
    std::fs::remove_file(t.path("usr/sbin/sshd")).unwrap();
    let p = t.profile("site", "[fail2ban]\njails = [\"recidive\"]\n");
    let (st, plan) = t.run(&fake_runner(), &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(
        plan.contains("+[sshd]\n+# enabled elsewhere, but /usr/sbin/sshd is not installed: it would stop fail2ban\n+enabled = false\n"),
        "{plan}"
    );
    assert!(plan.contains("+enabled = false"), "{plan}");
}

// ---------------------------------------------------------------------------------------------
// firewall
// ---------------------------------------------------------------------------------------------

const FW: &str = "[firewall]\nbackend = \"nftables\"\ndefault_incoming = \"deny\"\nallow = [\"80/tcp\", \"443/tcp\", { port = \"5432/tcp\", from = \"10.0.0.0/8\", comment = \"app network\" }]\nlimit = [\"ssh\"]\nipv6 = true\n";

#[test]
fn firewall_nftables_plan_apply_reapply_rollback() {
    let t = net_tree("debian12");
    let p = t.profile("site", &site(FW));
    let before = t.snapshot();
    let runner = fake_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    insta::assert_snapshot!(
        "firewall_nftables_plan",
        module_part(&redact(&t, &plan), "firewall")
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let rs = t.read("etc/nftables.d/bollwerk.nft");
    for want in [
        "table inet bollwerk\ndelete table inet bollwerk\n",
        "policy drop;",
        "iif \"lo\" accept",
        "ct state established,related accept",
        "nd-neighbor-solicit",
        "tcp dport 22 ct state new update @limit_v4",
        "tcp dport 22 accept comment \"bollwerk: ssh (always open)\"",
        "tcp dport 443 accept",
        "ip saddr 10.0.0.0/8 tcp dport 5432 accept comment \"bollwerk: app network\"",
    ] {
        assert!(rs.contains(want), "missing {want:?} in\n{rs}");
    }
    assert!(
        t.read("etc/nftables.conf")
            .ends_with("include \"/etc/nftables.d/bollwerk.nft\"\n")
    );
    assert_eq!(
        std::fs::read_link(t.path("etc/systemd/system/sysinit.target.wants/nftables.service"))
            .unwrap()
            .to_string_lossy(),
        "/lib/systemd/system/nftables.service"
    );
    let log = runner.log();
    assert!(
        log.iter()
            .filter(|c| c.starts_with("/usr/sbin/nft -c -f /var/lib/bollwerk/tmp/"))
            .count()
            >= 2,
        "the file and the main config are both checked: {log:?}"
    );
    assert!(
        !log.iter().any(|c| c.starts_with("/usr/sbin/nft -f")),
        "never loaded on a tree: {log:?}"
    );
    let after = t.snapshot_with_mtime(true);
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("0 changes"), "{out}");
    assert_eq!(t.snapshot_with_mtime(true), after);
    let (st, _) = t.run(&runner, &["rollback"]);
    assert_eq!(st, ExitStatus::Ok);
    assert_eq!(t.snapshot(), before);
}

#[test]
fn firewall_ssh_port_move_opens_the_new_port_first_and_closes_the_old_one_later() {
    let t = net_tree("debian12");
    let p = t.profile("site", &site(&format!("[ssh]\nport = 2222\n{FW}")));
    let (st, plan) = t.run(&fake_runner(), &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(
        plan.contains("SSH moves to port 2222: port 22 stays open until a later run"),
        "{plan}"
    );
    // On a live host the firewall opens the new port before sshd is reloaded onto it.
    let nft = plan
        .find("/usr/sbin/nft -f /etc/nftables.d/bollwerk.nft")
        .expect("nft handler");
    let ssh = plan
        .find("/usr/bin/systemctl reload ssh.service")
        .expect("sshd handler");
    assert!(nft < ssh, "{plan}");
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let rs = t.read("etc/nftables.d/bollwerk.nft");
    assert!(rs.contains("tcp dport 2222 accept"), "{rs}");
    assert!(
        rs.contains(
            "tcp dport 22 accept comment \"bollwerk: old ssh port, closed on the next run\""
        ),
        "{rs}"
    );
    // The next run closes the old port.
    let (st, plan) = t.run(&fake_runner(), &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(plan.contains("-\t\ttcp dport 22 accept"), "{plan}");
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let rs = t.read("etc/nftables.d/bollwerk.nft");
    assert!(!rs.contains("dport 22 "), "{rs}");
    assert!(rs.contains("tcp dport 2222 accept"), "{rs}");
    let (st, _) = t.run(&fake_runner(), &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok);
}

#[test]
fn firewall_refuses_when_another_table_drops_the_ssh_port() {
    let t = net_tree("debian12");
    t.write(
        "etc/nftables.conf",
        "#!/usr/sbin/nft -f\nflush ruleset\ntable inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\ttcp dport 443 accept\n\t}\n}\n",
    );
    let p = t.profile("site", &site(FW));
    let before = t.snapshot_with_mtime(true);
    let (st, plan) = t.run(&fake_runner(), &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Refused, "{plan}");
    assert!(plan.contains("REFUSED: table inet filter chain input in /etc/nftables.conf drops incoming traffic by default and never accepts the SSH port 22"), "{plan}");
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Refused, "{out}");
    let mut now = t.snapshot_with_mtime(true);
    now.retain(|k, _| !k.starts_with("var"));
    let mut before = before;
    before.retain(|k, _| !k.starts_with("var"));
    assert_eq!(now, before, "nothing changed");
}

#[test]
fn firewall_ufw_rules_idempotent_foreign_rules_reported_and_exclusive() {
    let t = net_tree("ubuntu2204");
    // An operator's own rule, added with `ufw deny 23/tcp`.
    let rules = t.read("etc/ufw/user.rules").replace(
        "### RULES ###\n",
        "### RULES ###\n\n### tuple ### deny tcp 23 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input -p tcp --dport 23 -j DROP\n\n### END RULES ###\n",
    );
    t.write("etc/ufw/user.rules", &rules);
    t.write("usr/bin/dockerd", "");
    let fw = FW.replace("backend = \"nftables\"", "backend = \"ufw\"");
    let p = t.profile("site", &site(&fw));
    let before = t.snapshot();
    let runner = fake_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    insta::assert_snapshot!(
        "firewall_ufw_plan",
        module_part(&redact(&t, &plan), "firewall")
    );
    assert!(
        plan.contains("ufw rule not created by bollwerk kept (IPv4): deny in tcp 23 from anywhere"),
        "{plan}"
    );
    assert!(plan.contains("(docker run -p) bypass ufw"), "{plan}");
    let (st, first) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{first}");
    let r4 = t.read("etc/ufw/user.rules");
    assert!(
        r4.contains("### tuple ### limit tcp 22 0.0.0.0/0 any 0.0.0.0/0 in comment="),
        "{r4}"
    );
    assert!(
        r4.contains("-A ufw-user-input -p tcp --dport 5432 -s 10.0.0.0/8 -j ACCEPT\n"),
        "{r4}"
    );
    assert!(
        r4.contains("-A ufw-user-input -p tcp --dport 23 -j DROP\n"),
        "kept: {r4}"
    );
    let r6 = t.read("etc/ufw/user6.rules");
    assert!(
        r6.contains("-A ufw6-user-input -p tcp --dport 443 -j ACCEPT\n"),
        "{r6}"
    );
    assert!(
        !r6.contains("5432"),
        "an IPv4 source stays in user.rules: {r6}"
    );
    assert!(t.read("etc/ufw/ufw.conf").contains("\nENABLED=yes\n"));
    assert!(
        t.read("etc/default/ufw")
            .contains("\nDEFAULT_INPUT_POLICY=\"DROP\"\n")
    );
    // Idempotent: no duplicate rule, nothing touched.
    let after = t.snapshot_with_mtime(true);
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("0 changes"), "{out}");
    assert_eq!(t.snapshot_with_mtime(true), after);
    // exclusive = true removes the foreign rule.
    let p2 = t.profile("a", &site(&format!("{fw}exclusive = true\n")));
    let (st, out) = t.run(&runner, &["apply", "--profile", &p2]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(!t.read("etc/ufw/user.rules").contains("--dport 23 "));
    // Roll back newest first (run ids are named explicitly: two runs in the same second do
    // not sort by time).
    for o in [&out, &first] {
        let (st, msg) = t.run(&runner, &["rollback", &run_id(o)]);
        assert_eq!(st, ExitStatus::Ok, "{msg}");
    }
    assert_eq!(t.snapshot(), before);
}

#[test]
fn firewall_profile_errors() {
    let t = Tree::fixture("debian12");
    for (bad, want) in [
        ("[firewall]\nallow = [\"80/icmp\"]\n", "unknown protocol"),
        (
            "[firewall]\nallow = [{ port = \"22/tcp\", from = \"10.0.0.0/33\" }]\n",
            "not an IP address",
        ),
        (
            "[firewall]\nipv6 = false\nallow = [{ port = \"443/tcp\", from = \"2001:db8::/32\" }]\n",
            "ipv6 = false",
        ),
        ("[firewall]\nssh_from = []\n", "nobody could reach SSH"),
        ("[firewall]\ndefault_incoming = \"drop\"\n", "invalid value"),
    ] {
        let p = t.profile("bad", bad);
        let e = bollwerk::profile::load(&p).unwrap_err();
        assert!(e.to_string().contains(want), "{bad}: {e}");
        assert!(e.position.is_some(), "{e}");
    }
}

#[test]
fn confirm_needs_the_live_host_and_something_pending() {
    let t = net_tree("debian12");
    let p = t.profile("site", &site(FW));
    let before = t.snapshot_with_mtime(true);
    let (st, out) = t.run(
        &fake_runner(),
        &["apply", "--confirm", "30s", "--profile", &p],
    );
    assert_eq!(st, ExitStatus::Refused, "{out}");
    let mut now = t.snapshot_with_mtime(true);
    now.retain(|k, _| !k.starts_with("var"));
    let mut b = before;
    b.retain(|k, _| !k.starts_with("var"));
    assert_eq!(now, b, "nothing applied");
    let (st, _) = t.run(&fake_runner(), &["confirm"]);
    assert_eq!(st, ExitStatus::Refused);
    let (st, _) = t.run(&fake_runner(), &["confirm", "--revert"]);
    assert_eq!(st, ExitStatus::Refused);
}
