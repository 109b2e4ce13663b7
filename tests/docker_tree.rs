//! Tree tests of `[docker]` (issue 14) against the Debian 12 fixture root with Docker
//! stand-ins, in-process with a fake runner: daemon.json merging (unknown keys kept, ours win),
//! validation with `dockerd --validate` (and the shape check for engines without it),
//! idempotence, byte-identical rollback, the published-port filter rendered for both firewall
//! backends, and profile errors. `docker_system.rs` checks the same rules with the real tools.

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

const DOCKER: &str = "[docker]\nallow_published = [\"80/tcp\", \"443/tcp\", { port = \"5432/tcp\", from = \"172.16.0.0/12\", comment = \"compose db\" }]\n";
const FW_NFT: &str = "[firewall]\nbackend = \"nftables\"\ndefault_forward = \"deny\"\nallow = [\"80/tcp\", \"443/tcp\"]\nlimit = [\"ssh\"]\n";
const FW_UFW: &str =
    "[firewall]\nbackend = \"ufw\"\nallow = [\"80/tcp\", \"443/tcp\"]\nlimit = [\"ssh\"]\n";

/// An existing daemon.json an operator wrote: a key bollwerk does not know, a key it sets
/// differently, and options of another log driver.
const EXISTING: &str = "{\n    \"data-root\": \"/srv/docker\",\n    \"icc\": true,\n    \"log-driver\": \"json-file\",\n    \"log-opts\": { \"max-size\": \"1g\", \"labels\": \"app\" }\n}\n";

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

/// The Debian 12 fixture with the network tools (`tests/fixtures/network/`) and a Docker
/// engine (`tests/fixtures/docker/`): dockerd, iptables-restore and docker.service stand-ins,
/// the engine package `pkg` at `version` in dpkg's status.
fn docker_tree(pkg: &str, version: &str) -> Tree {
    let t = Tree::fixture("debian12");
    for extra in ["network", "docker"] {
        let dir = common::tree::fixtures().join(extra);
        copy_into(&dir, t.root());
        if let Ok(perms) = std::fs::read_to_string(dir.join(".perms")) {
            for line in perms.lines().filter(|l| !l.starts_with('#')) {
                let w: Vec<&str> = line.split_whitespace().collect();
                if w.len() == 2 {
                    let mode = u32::from_str_radix(w[1], 8).unwrap();
                    std::fs::set_permissions(
                        t.path(w[0]),
                        std::os::unix::fs::PermissionsExt::from_mode(mode),
                    )
                    .unwrap();
                }
            }
        }
    }
    let status = t.read("var/lib/dpkg/status");
    let more = std::fs::read_to_string(common::tree::fixtures().join("network/dpkg-status-extra"))
        .unwrap();
    t.write(
        "var/lib/dpkg/status",
        &format!(
            "{}\n\n{}\n\nPackage: {pkg}\nStatus: install ok installed\nArchitecture: amd64\nVersion: {version}\n",
            status.trim_end(),
            more.trim_end()
        ),
    );
    t
}

fn json(t: &Tree) -> serde_json::Value {
    serde_json::from_str(&t.read("etc/docker/daemon.json")).unwrap()
}

#[test]
fn daemon_json_merge_validate_reapply_rollback() {
    let t = docker_tree("docker-ce", "5:24.0.7-1~debian.12~bookworm");
    t.write("etc/docker/daemon.json", EXISTING);
    let p = t.profile("site", &site(DOCKER));
    let before = t.snapshot();
    let runner = fake_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(plan.contains("docker daemon.json: icc, live-restore, log-driver, log-opts, no-new-privileges, userland-proxy"), "{plan}");
    assert!(
        plan.contains("docker.allow_published needs a [firewall] section"),
        "{plan}"
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let v = json(&t);
    assert_eq!(v["data-root"], "/srv/docker", "unknown keys are kept");
    assert_eq!(v["icc"], false, "our keys win");
    assert_eq!(v["live-restore"], true);
    assert_eq!(v["no-new-privileges"], true);
    assert_eq!(v["userland-proxy"], false);
    assert_eq!(v["log-driver"], "local");
    assert_eq!(
        v["log-opts"],
        serde_json::json!({"max-file": "5", "max-size": "10m"})
    );
    assert!(v.get("userns-remap").is_none(), "not managed unless set");
    assert_eq!(t.meta("etc/docker/daemon.json").0 & 0o7777, 0o644);
    let log = runner.log();
    assert!(
        log.iter()
            .any(|c| c
                .starts_with("/usr/bin/dockerd --validate --config-file /var/lib/bollwerk/tmp/")),
        "the candidate is validated by dockerd: {log:?}"
    );
    assert!(
        !log.iter()
            .any(|c| c.contains("systemctl") && c.contains("docker")),
        "never reloaded on a tree: {log:?}"
    );
    let after = t.snapshot_with_mtime(true);
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("0 changes"), "{out}");
    assert_eq!(t.snapshot_with_mtime(true), after);
    let (st, out) = t.run(&runner, &["rollback"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert_eq!(t.snapshot(), before);
    assert_eq!(t.read("etc/docker/daemon.json"), EXISTING, "byte-identical");
}

#[test]
fn dockerd_rejecting_the_candidate_changes_nothing() {
    let t = docker_tree("docker-ce", "5:24.0.7-1~debian.12~bookworm");
    t.write("etc/docker/daemon.json", EXISTING);
    let p = t.profile("site", &site("[docker]\nuserns_remap = \"nosuchuser\"\n"));
    let before = t.snapshot();
    let runner = fake_runner();
    runner.push(
        "/usr/bin/dockerd --validate",
        1,
        "",
        "unable to configure the Docker daemon with file /var/lib/bollwerk/tmp/x: user \"nosuchuser\" not found",
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Failure, "{out}");
    assert_eq!(t.snapshot(), before, "nothing activated");
}

#[test]
fn old_engine_without_validate_gets_the_shape_check_and_a_note() {
    let t = docker_tree("docker.io", "20.10.24+dfsg1-1+deb12u1+b6");
    let p = t.profile(
        "site",
        &site("[docker]\nlog_driver = \"journald\"\nlive_restore = false\n"),
    );
    let runner = fake_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(
        plan.contains("docker.io 20.x has no `dockerd --validate`"),
        "{plan}"
    );
    assert!(plan.contains("daemon.json shape"), "{plan}");
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(
        !runner.log().iter().any(|c| c.contains("--validate")),
        "{:?}",
        runner.log()
    );
    let v = json(&t);
    assert_eq!(v["log-driver"], "journald");
    assert!(v.get("log-opts").is_none());
    assert_eq!(v["live-restore"], false);
}

#[test]
fn a_daemon_json_that_is_not_an_object_is_an_error_and_nothing_changes() {
    let t = docker_tree("docker-ce", "5:24.0.7-1~debian.12~bookworm");
    t.write("etc/docker/daemon.json", "{ \"icc\": false, }\n");
    let p = t.profile("site", &site("[docker]\n"));
    let before = t.snapshot();
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", &p]);
    assert_ne!(st, ExitStatus::Ok, "{out}");
    assert_eq!(t.snapshot(), before);
}

#[test]
fn nftables_filters_published_ports_before_docker() {
    let t = docker_tree("docker-ce", "5:24.0.7-1~debian.12~bookworm");
    let p = t.profile("site", &site(&format!("{FW_NFT}\n{DOCKER}")));
    let before = t.snapshot();
    let runner = fake_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(
        !plan.contains("containers lose their network"),
        "a dropping forward policy is fine with the docker chain: {plan}"
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let rs = t.read("etc/nftables.d/bollwerk.nft");
    for want in [
        "chain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n\t\tct state established,related accept\n\t\tiifname \"docker0\" accept",
        "\t\toifname \"br-*\" accept comment \"Docker bridge (filtered by docker_published)\"\n",
        "chain docker_published {\n\t\ttype filter hook forward priority filter - 1; policy accept;\n\t\tct state established,related accept\n",
        "iifname \"br-*\" accept comment \"from containers",
        "oifname != \"docker0\" oifname != \"br-*\" accept",
        "meta l4proto tcp ct status dnat ct original proto-dst 80 accept",
        "meta l4proto tcp ct status dnat ct original proto-dst 443 accept",
        "ip saddr 172.16.0.0/12 meta l4proto tcp ct status dnat ct original proto-dst 5432 accept comment \"bollwerk: compose db\"",
    ] {
        assert!(rs.contains(want), "missing {want:?} in\n{rs}");
    }
    let chain = rs.split("chain docker_published").nth(1).unwrap();
    let chain = chain.split("\n\t}").next().unwrap();
    assert!(
        chain.trim_end().ends_with(
            "drop comment \"toward a container: published port not allowed, or not published\""
        ),
        "the chain ends in a drop: {chain}"
    );
    assert!(!chain.contains("8080"), "nothing else is allowed");
    assert!(!t.exists("etc/bollwerk/docker-user.rules"));
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("0 changes"), "{out}");
    let (st, _) = t.run(&runner, &["rollback"]);
    assert_eq!(st, ExitStatus::Ok);
    assert_eq!(t.snapshot(), before);
}

#[test]
fn ufw_filters_published_ports_in_docker_user_loaded_after_dockerd() {
    let t = docker_tree("docker.io", "20.10.24+dfsg1-1+deb12u1+b6");
    let p = t.profile("site", &site(&format!("{FW_UFW}\n{DOCKER}")));
    let before = t.snapshot();
    let runner = fake_runner();
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(!plan.contains("bypass ufw"), "{plan}");
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let rules = t.read("etc/bollwerk/docker-user.rules");
    for want in [
        "*filter\n:DOCKER-USER - [0:0]\n-A DOCKER-USER -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n-A DOCKER-USER -i docker0 -j RETURN\n-A DOCKER-USER -i br-+ -j RETURN\n",
        "-A DOCKER-USER -p tcp -m conntrack --ctstate DNAT --ctorigdstport 80 ",
        "-A DOCKER-USER -s 172.16.0.0/12 -p tcp -m conntrack --ctstate DNAT --ctorigdstport 5432 ",
        "-A DOCKER-USER -o docker0 -j DROP\n-A DOCKER-USER -o br-+ -j DROP\n-A DOCKER-USER -j RETURN\nCOMMIT\n",
    ] {
        assert!(rules.contains(want), "missing {want:?} in\n{rules}");
    }
    let unit = t.read("etc/systemd/system/bollwerk-docker-user.service");
    assert!(unit.contains("After=docker.service\nPartOf=docker.service\n"));
    assert!(unit.contains(
        "ExecStart=/usr/sbin/iptables-restore --noflush /etc/bollwerk/docker-user.rules"
    ));
    assert!(unit.contains("WantedBy=docker.service"));
    assert_eq!(
        std::fs::read_link(
            t.path("etc/systemd/system/docker.service.wants/bollwerk-docker-user.service")
        )
        .unwrap()
        .to_string_lossy(),
        "/etc/systemd/system/bollwerk-docker-user.service"
    );
    let log = runner.log();
    assert!(
        log.iter()
            .any(|c| c
                .starts_with("/usr/sbin/iptables-restore --test --noflush /var/lib/bollwerk/tmp/")),
        "{log:?}"
    );
    assert!(
        !log.iter()
            .any(|c| c.contains("iptables-restore --noflush") || c.contains("systemctl restart")),
        "never loaded on a tree: {log:?}"
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("0 changes"), "{out}");
    // Switching to nftables removes the DOCKER-USER files.
    let p2 = t.profile(
        "b",
        &site(&format!(
            "{}\n{DOCKER}",
            FW_UFW.replace("\"ufw\"", "\"nftables\"")
        )),
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p2]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(!t.exists("etc/bollwerk/docker-user.rules"));
    assert!(!t.exists("etc/systemd/system/bollwerk-docker-user.service"));
    for _ in 0..2 {
        let (st, out) = t.run(&runner, &["rollback"]);
        assert_eq!(st, ExitStatus::Ok, "{out}");
    }
    assert_eq!(t.snapshot(), before);
}

#[test]
fn docker_profile_errors_have_positions() {
    let t = docker_tree("docker-ce", "5:24.0.7-1~debian.12~bookworm");
    for (bad, msg) in [
        (
            "[docker]\nallow_published = [\"ssh\"]\n",
            "not a published container port",
        ),
        ("[docker]\nlog_max_size = \"10\"\n", "not a size"),
        (
            "[docker]\nlog_driver = \"journald\"\nlog_max_file = 3\n",
            "do not apply to the journald",
        ),
        ("[docker]\nuserns_remap = \"../x\"\n", "userns_remap"),
        ("[docker]\nlog_driver = \"syslog\"\n", "syslog"),
        ("[docker]\nicc = \"no\"\n", "icc"),
    ] {
        let p = t.profile("bad", &site(bad));
        let e = bollwerk::profile::load(&p).unwrap_err();
        assert!(e.to_string().contains(msg), "{bad}: {e}");
        assert!(e.position.is_some(), "position given: {e}");
    }
}

#[test]
fn fail2ban_nginx_jails_read_a_containerised_nginx_and_ban_on_the_forward_path() {
    let t = docker_tree("docker-ce", "5:24.0.7-1~debian.12~bookworm");
    t.write("var/log/app/nginx/error.log", "");
    let f2b = "[fail2ban]\njails = [\"sshd\", \"nginx-http-auth\", \"nginx-limit-req\"]\n[fail2ban.nginx_container]\nerror_log = \"/var/log/app/nginx/error.log\"\n";
    let p = t.profile("site", &site(&format!("{FW_NFT}\n{DOCKER}\n{f2b}")));
    let runner = fake_runner();
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let d = t.read("etc/fail2ban/jail.d/bollwerk.local");
    for jail in ["nginx-http-auth", "nginx-limit-req"] {
        let part = d
            .split(&format!("[{jail}]\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("{jail} missing in\n{d}"));
        let part = part.split("\n[").next().unwrap();
        assert!(part.contains("enabled = true\n"), "{part}");
        assert!(
            part.contains("logpath = /var/log/app/nginx/error.log\n"),
            "{part}"
        );
        assert!(
            part.contains(
                "action = nftables-allports[chain=\"f2b-docker\", chain_hook=\"forward\"]\n"
            ),
            "{part}"
        );
    }
    let sshd = d
        .split("[sshd]\n")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap();
    assert!(!sshd.contains("f2b-docker"), "sshd bans on input: {d}");

    // The journald log driver with ufw: the container's journal entries, bans in DOCKER-USER.
    let t = docker_tree("docker-ce", "5:24.0.7-1~debian.12~bookworm");
    let f2b = "[fail2ban]\njails = [\"sshd\", \"nginx-http-auth\"]\n[fail2ban.nginx_container]\njournal = \"web-nginx-1\"\n";
    let p = t.profile(
        "site",
        &site(&format!(
            "{FW_UFW}\n{DOCKER}log_driver = \"journald\"\n{f2b}"
        )),
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let d = t.read("etc/fail2ban/jail.d/bollwerk.local");
    let part = d.split("[nginx-http-auth]\n").nth(1).unwrap();
    assert!(part.contains("backend = systemd\njournalmatch = CONTAINER_NAME=web-nginx-1\naction = iptables-allports[chain=\"DOCKER-USER\"]\n"), "{part}");

    // A missing bind-mounted log skips the jail (a missing log would stop fail2ban).
    let t = docker_tree("docker-ce", "5:24.0.7-1~debian.12~bookworm");
    let f2b = "[fail2ban]\njails = [\"sshd\", \"nginx-http-auth\"]\n[fail2ban.nginx_container]\nerror_log = \"/var/log/app/nginx/error.log\"\n";
    let p = t.profile("site", &site(&format!("{FW_NFT}\n{f2b}")));
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(plan.contains("start it first"), "{plan}");
    let bad = t.profile("bad", &site("[fail2ban]\n[fail2ban.nginx_container]\n"));
    let e = bollwerk::profile::load(&bad).unwrap_err();
    assert!(e.to_string().contains("either log files"), "{e}");
}

#[test]
fn webapp_docker_profile_applies_and_converges() {
    let t = docker_tree("docker-ce", "5:24.0.7-1~debian.12~bookworm");
    let p = t.profile(
        "site",
        &format!("extends = \"webapp-docker\"\n[[users]]\nname = \"deploy\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{KEY}\"]\n"),
    );
    let before = t.snapshot();
    let runner = fake_runner();
    runner.respond_with("/usr/bin/apt-config dump", fake_apt_config_dump);
    let (st, plan) = t.run(&runner, &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(
        plan.contains("start it first"),
        "nginx jails wait for the stack: {plan}"
    );
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let v = json(&t);
    assert_eq!(v["live-restore"], true);
    assert_eq!(v["icc"], false);
    let rs = t.read("etc/nftables.d/bollwerk.nft");
    assert!(rs.contains("chain docker_published"), "{rs}");
    assert!(rs.contains("ct original proto-dst 443 accept"), "{rs}");
    assert!(
        !rs.contains("proto-dst 5432"),
        "PostgreSQL stays on the compose network: {rs}"
    );
    assert!(t.exists("etc/logrotate.d/bollwerk-app"));
    assert!(t.exists("etc/logrotate.d/bollwerk-nginx"));
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("0 changes"), "{out}");
    let (st, _) = t.run(&runner, &["rollback"]);
    assert_eq!(st, ExitStatus::Ok);
    assert_eq!(t.snapshot(), before);
}

/// A stand-in for `apt-config dump` (as in services_tree.rs): the origin lists of bollwerk's
/// drop-in, as apt prints them, so the updates module's verification sees what it wrote.
fn fake_apt_config_dump(
    root: &bollwerk::root::Root,
    _: &bollwerk::exec::Cmd,
) -> bollwerk::exec::Output {
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
    bollwerk::exec::Output {
        code: 0,
        stdout: out,
        stderr: String::new(),
    }
}
