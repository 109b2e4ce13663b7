//! Tree tests of the core: users, keys, sudo, sshd and host against the Debian 12 and Ubuntu
//! 22.04 fixture roots, in-process with a fake runner: plan diffs, apply results (content,
//! modes, owners), idempotence, rollback, refusals, key fetching.

mod common;

use bollwerk::ExitStatus;
use common::tree::{Tree, fake_runner};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPci/6iPPKNm3TqnlFNu0Zy6jtqtz5kw0YO3RjFH01v alice@laptop";
const KEY2: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh3c2kB0sC9s7Y0n2JqF1GJpfZ3bGm0vQm0d7mE2wVn bob@desk";

fn site(extra: &str) -> String {
    format!(
        "extends = \"baseline\"\n[host]\nhostname = \"app01.example.org\"\ntimezone = \"Europe/Berlin\"\n\n[[users]]\nname = \"deploy\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{KEY}\"]\nexclusive_keys = true\n{extra}"
    )
}

fn redact(t: &Tree, s: &str) -> String {
    let days = bollwerk::facts::days_since_epoch().to_string();
    s.replace(&t.root().to_string_lossy().to_string(), "[ROOT]")
        .replace(
            &t.root()
                .with_extension("site.toml")
                .to_string_lossy()
                .to_string(),
            "[PROFILE]",
        )
        .replace(&format!(":{days}:"), ":[DAYS]:")
}

#[test]
fn debian12_plan_apply_reapply_rollback() {
    let t = Tree::fixture("debian12");
    let profile = t.profile("site", &site(""));
    let before = t.snapshot();
    let runner = fake_runner();

    let (st, plan) = t.run(&runner, &["plan", "--profile", &profile]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    insta::assert_snapshot!("debian12_plan", redact(&t, &plan));
    assert_eq!(t.snapshot(), before, "plan must not write");

    let (st, out) = t.run(&runner, &["apply", "--profile", &profile]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("changes applied (run "), "{out}");

    // Accounts.
    assert!(
        t.read("etc/passwd")
            .ends_with("deploy:x:1000:1000::/home/deploy:/bin/bash\n")
    );
    assert!(t.read("etc/group").contains("\nsudo:x:27:deploy\n"));
    assert!(t.read("etc/group").ends_with("deploy:x:1000:\n"));
    let shadow_line = t.read("etc/shadow").lines().last().unwrap().to_string();
    assert!(
        shadow_line.starts_with("deploy:!:") && shadow_line.ends_with(":0:99999:7:::"),
        "{shadow_line}"
    );
    assert_eq!(
        t.meta("etc/shadow"),
        (0o640, 0, 42),
        "shadow keeps its mode and group"
    );
    assert_eq!(t.meta("etc/gshadow"), (0o640, 0, 42));
    // Home, skel, keys.
    assert_eq!(t.meta("home/deploy"), (0o750, 1000, 1000));
    assert_eq!(t.meta("home/deploy/.bashrc"), (0o644, 1000, 1000));
    assert_eq!(t.read("home/deploy/.profile"), t.read("etc/skel/.profile"));
    assert_eq!(t.meta("home/deploy/.ssh"), (0o700, 1000, 1000));
    assert_eq!(
        t.meta("home/deploy/.ssh/authorized_keys"),
        (0o600, 1000, 1000)
    );
    assert_eq!(
        t.read("home/deploy/.ssh/authorized_keys"),
        format!("# Managed by bollwerk — local edits are overwritten\n{KEY}\n")
    );
    // sudo drop-in, validated with visudo.
    assert_eq!(t.meta("etc/sudoers.d/bollwerk"), (0o440, 0, 0));
    assert!(
        t.read("etc/sudoers.d/bollwerk")
            .contains("deploy ALL=(ALL:ALL) NOPASSWD: ALL\n")
    );
    assert!(
        runner
            .log()
            .iter()
            .any(|c| c.starts_with("/usr/sbin/visudo -c -q -f /var/lib/bollwerk/tmp/")),
        "{:?}",
        runner.log()
    );
    assert!(
        runner
            .log()
            .iter()
            .any(|c| c.starts_with("/usr/sbin/sshd -t -f /var/lib/bollwerk/tmp/")),
        "{:?}",
        runner.log()
    );
    // sshd drop-in; the Debian main config already includes sshd_config.d first.
    let dropin = t.read("etc/ssh/sshd_config.d/00-bollwerk.conf");
    assert_eq!(
        t.meta("etc/ssh/sshd_config.d/00-bollwerk.conf"),
        (0o600, 0, 0)
    );
    for line in [
        "PermitRootLogin no\n",
        "PasswordAuthentication no\n",
        "AllowGroups sudo\n",
        "RequiredRSASize",
        "MaxAuthTries 3\n",
    ] {
        if line == "RequiredRSASize" {
            assert!(!dropin.contains(line), "baseline does not set it");
        } else {
            assert!(dropin.contains(line), "missing {line:?} in\n{dropin}");
        }
    }
    assert!(dropin.contains("KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org,"));
    assert!(!dropin.contains("sntrup761"), "not on the CIS list");
    assert!(!dropin.contains("chacha20"), "not on the CIS list");
    assert!(!dropin.contains("umac"), "not on the CIS list");
    // The Debian main config already includes the drop-ins first: apart from the marked
    // block that repeats the drop-in's algorithm lists right after the Include (for scanners
    // that read only the main file), its content is untouched; its mode becomes root-only
    // (CIS 5.1.1).
    let main = t.read("etc/ssh/sshd_config");
    let orig =
        std::fs::read_to_string(common::tree::fixtures().join("debian12/etc/ssh/sshd_config"))
            .unwrap();
    assert_eq!(
        bollwerk::modules::sshd::strip_main_block(&main),
        orig,
        "main config content untouched outside the block"
    );
    for kw in ["KexAlgorithms ", "Ciphers ", "MACs "] {
        let line = dropin.lines().find(|l| l.starts_with(kw)).unwrap();
        assert!(
            main.contains(&format!("\n{line}\n")),
            "{kw} of the drop-in in the main file:\n{main}"
        );
    }
    assert!(main.contains("Include /etc/ssh/sshd_config.d/*.conf\n# BEGIN bollwerk"));
    assert_eq!(t.meta("etc/ssh/sshd_config"), (0o600, 0, 0));
    // Host.
    assert_eq!(t.read("etc/hostname"), "app01\n");
    assert!(
        t.read("etc/hosts")
            .contains("127.0.1.1\tapp01.example.org app01\n")
    );
    assert_eq!(
        std::fs::read_link(t.path("etc/localtime"))
            .unwrap()
            .to_string_lossy(),
        "/usr/share/zoneinfo/Europe/Berlin"
    );
    // Root's password was already locked (`*`), so shadow's root line is unchanged.
    assert!(t.read("etc/shadow").starts_with("root:*:"));

    // Idempotence: nothing pending, nothing touched (not even mtimes), no new run.
    let after = t.snapshot_with_mtime(true);
    let (st, plan2) = t.run(&runner, &["plan", "--profile", &profile]);
    assert_eq!(st, ExitStatus::Ok, "{plan2}");
    let (st, out2) = t.run(&runner, &["apply", "--profile", &profile]);
    assert_eq!(st, ExitStatus::Ok);
    assert!(out2.contains("0 changes"), "{out2}");
    assert_eq!(
        t.snapshot_with_mtime(true),
        after,
        "second apply touched something"
    );
    let (_, runs) = t.run(&runner, &["runs"]);
    assert_eq!(
        runs.lines().filter(|l| l.contains(" apply ")).count(),
        1,
        "{runs}"
    );

    // Rollback restores the original tree byte for byte, modes and owners included.
    let (st, out) = t.run(&runner, &["rollback"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert_eq!(t.snapshot(), before);
    let (st, _) = t.run(&runner, &["rollback"]);
    assert_eq!(st, ExitStatus::Refused, "nothing left to roll back");
}

#[test]
fn ubuntu_cloud_image_dropin_wins_over_cloud_init() {
    let t = Tree::fixture("ubuntu2204");
    let profile = t.profile("site", &site(""));
    let runner = fake_runner();
    let (st, out) = t.run(&runner, &["apply", "--profile", &profile]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    // 00-bollwerk.conf sorts before 50-cloud-init.conf, so its `PasswordAuthentication no` wins.
    let mut names: Vec<String> = std::fs::read_dir(t.path("etc/ssh/sshd_config.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["00-bollwerk.conf", "50-cloud-init.conf"]);
    let dropin = t.read("etc/ssh/sshd_config.d/00-bollwerk.conf");
    assert!(
        dropin.contains("KbdInteractiveAuthentication no\n"),
        "OpenSSH 8.9 knows the new keyword"
    );
    // The existing ubuntu user (uid 1000) pushes deploy to 1001; ubuntu's key is left alone.
    assert!(
        t.read("etc/passwd")
            .contains("deploy:x:1001:1001::/home/deploy:/bin/bash")
    );
    assert!(
        t.read("home/ubuntu/.ssh/authorized_keys")
            .contains("ubuntu@laptop")
    );
}

#[test]
fn openssh_89_gets_no_required_rsa_size() {
    let t = Tree::fixture("ubuntu2204");
    let profile = t.profile("site", &site("[ssh]\nrequired_rsa_size = 3072\n"));
    let (st, plan) = t.run(&fake_runner(), &["plan", "--profile", &profile]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    assert!(!plan.contains("+RequiredRSASize"), "{plan}");
    assert!(
        plan.contains("RequiredRSASize needs OpenSSH ≥ 9.1"),
        "{plan}"
    );
    let t = Tree::fixture("debian12");
    let profile = t.profile("site", &site("[ssh]\nrequired_rsa_size = 3072\n"));
    let (_, plan) = t.run(&fake_runner(), &["plan", "--profile", &profile]);
    assert!(plan.contains("+RequiredRSASize 3072"), "{plan}");
}

#[test]
fn debian_without_include_gets_it_at_the_top() {
    let t = Tree::fixture("debian12-noinclude");
    let original = t.read("etc/ssh/sshd_config");
    let profile = t.profile("site", &site(""));
    let before = t.snapshot();
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", &profile]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let main = t.read("etc/ssh/sshd_config");
    let first = main
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap();
    assert_eq!(first, "Include /etc/ssh/sshd_config.d/*.conf");
    assert!(main.ends_with(&original));
    assert_eq!(t.meta("etc/ssh/sshd_config.d"), (0o755, 0, 0));
    assert_eq!(
        t.meta("etc/ssh/sshd_config"),
        (0o600, 0, 0),
        "CIS 5.1.1: root only"
    );
    let (st, _) = t.run(&fake_runner(), &["rollback"]);
    assert_eq!(st, ExitStatus::Ok);
    assert_eq!(
        t.snapshot(),
        before,
        "the created directory is removed again"
    );
}

#[test]
fn invalid_profile_exits_2_and_writes_nothing() {
    let t = Tree::fixture("debian12");
    let before = t.snapshot_with_mtime(true);
    for bad in [
        "extends = \"baseline\"\n[ssh]\nport = 22\npasword_authentication = false\n",
        "[ssh]\nport = 70000\n",
        "[[users]]\nname = \"Bad Name\"\n",
        "[[users]]\nname = \"x\"\nssh_keys = [\"ssh-ed25519 AAAA\"]\n",
        "[[users]]\nname = \"x\"\ngroups = [\"sudo\"]\nsudo = \"none\"\n",
        "[[users]]\nname = \"x\"\nhome_mode = 750\n",
        "[ssh\n",
    ] {
        let p = t.profile("bad", bad);
        for cmd in ["validate", "plan", "apply"] {
            let (st, out) = t.run(&fake_runner(), &[cmd, "--profile", &p]);
            assert_eq!(st, ExitStatus::Refused, "{cmd} {bad:?}: {out}");
        }
    }
    assert_eq!(t.snapshot_with_mtime(true), before);
    assert!(
        !t.exists("var/lib/bollwerk"),
        "not even the state directory"
    );
}

fn refused(t: &Tree, profile: &str) -> String {
    let before = t.snapshot_with_mtime(true);
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", profile]);
    assert_eq!(st, ExitStatus::Refused, "{out}");
    let mut s = t.snapshot_with_mtime(true);
    s.retain(|k, _| !k.starts_with("var"));
    let mut b = before;
    b.retain(|k, _| !k.starts_with("var"));
    assert_eq!(s, b, "a refused apply changed the tree");
    out
}

#[test]
fn lockout_baseline_without_admin_user() {
    let t = Tree::fixture("debian12");
    let p = t.profile("site", "extends = \"baseline\"\n");
    let out = refused(&t, &p);
    assert!(out.contains("nobody could log in over SSH"), "{out}");
    assert!(out.contains("give an admin user a key"), "{out}");
    // plan says the same, with exit 2.
    let (st, plan) = t.run(&fake_runner(), &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Refused);
    assert!(plan.contains("REFUSED"), "{plan}");
    // --force applies anyway.
    let (st, out) = t.run(&fake_runner(), &["apply", "--force", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
}

#[test]
fn lockout_allow_groups_excluding_every_key_holder() {
    let t = Tree::fixture("debian12");
    let p = t.profile("site", &site("[ssh]\nallow_groups = [\"admins\"]\n"));
    let out = refused(&t, &p);
    assert!(out.contains("deploy: not in AllowGroups admins"), "{out}");
    let p = t.profile("site", &site("[ssh]\nallow_users = [\"alice\"]\n"));
    refused(&t, &p);
    let p = t.profile("site", &site("[ssh]\ndeny_users = [\"dep*\"]\n"));
    refused(&t, &p);
}

#[test]
fn lockout_removing_the_last_key() {
    // The Ubuntu image's user has the only key; an exclusive empty key list would remove it.
    let t = Tree::fixture("ubuntu2204");
    let p = t.profile(
        "site",
        "extends = \"baseline\"\n[[users]]\nname = \"ubuntu\"\nexclusive_keys = true\n",
    );
    let out = refused(&t, &p);
    assert!(out.contains("ubuntu: no SSH key"), "{out}");
    // Keeping the key is fine.
    let p = t.profile(
        "site",
        "extends = \"baseline\"\n[[users]]\nname = \"ubuntu\"\n",
    );
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
}

fn rsa_key(bits: usize) -> String {
    use base64::Engine;
    let mut raw = Vec::new();
    let mut n = vec![0u8; bits / 8 + 1];
    n[1] = 0xc3;
    for part in [b"ssh-rsa".to_vec(), vec![1, 0, 1], n] {
        raw.extend_from_slice(&(part.len() as u32).to_be_bytes());
        raw.extend_from_slice(&part);
    }
    format!(
        "ssh-rsa {} old@key",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[test]
fn weak_rsa_keys_are_rejected_in_profiles_and_do_not_count_on_the_host() {
    let t = Tree::fixture("debian12");
    let p = t.profile(
        "site",
        &format!("extends = \"baseline\"\n[[users]]\nname = \"deploy\"\ngroups = [\"sudo\"]\nssh_keys = [\"{}\"]\n", rsa_key(1024)),
    );
    let (st, _) = t.run(&fake_runner(), &["validate", "--profile", &p]);
    assert_eq!(st, ExitStatus::Refused);
    let e = bollwerk::profile::load(&p).unwrap_err();
    assert!(e.message.contains("only 1024 bits"), "{e}");
    assert_eq!(e.key.as_deref(), Some("users.deploy.ssh_keys"));
    assert_eq!(e.position.map(|p| p.0), Some(5));
    // On the host: the only admin's only key is a 1024-bit RSA key, and the profile raises the
    // minimum sshd accepts (OpenSSH 9.2 on Debian 12 supports RequiredRSASize).
    let t = Tree::fixture("debian12");
    let add = |f: &str, line: &str| {
        let cur = t.read(f);
        t.write(f, &format!("{cur}{line}\n"));
    };
    add("etc/passwd", "ops:x:1001:1001::/home/ops:/bin/bash");
    add("etc/group", "ops:x:1001:");
    add("etc/shadow", "ops:!:19000:0:99999:7:::");
    t.write(
        "etc/group",
        &t.read("etc/group")
            .replace("\nsudo:x:27:\n", "\nsudo:x:27:ops\n"),
    );
    t.write(
        "home/ops/.ssh/authorized_keys",
        &format!("{}\n", rsa_key(1024)),
    );
    let p = t.profile(
        "site",
        "extends = \"baseline\"\n[ssh]\nrequired_rsa_size = 2048\n",
    );
    let (st, plan) = t.run(&fake_runner(), &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Refused, "{plan}");
    // Without raising the minimum, OpenSSH 9.2 accepts 1024-bit keys, and so does the guard.
    let p2 = t.profile("a", "extends = \"baseline\"\n");
    let (st, plan) = t.run(&fake_runner(), &["plan", "--profile", &p2]);
    assert_eq!(st, ExitStatus::Pending, "{plan}");
    let out = refused(&t, &p);
    assert!(out.contains("too weak"), "{out}");
}

#[test]
fn lockout_crypto_list_the_sshd_does_not_support() {
    let t = Tree::fixture("debian12");
    let p = t.profile(
        "site",
        &site("[ssh]\nciphers = [\"rijndael-cbc@lysator.liu.se\"]\n"),
    );
    let out = refused(&t, &p);
    assert!(
        out.contains("Ciphers: none of rijndael-cbc@lysator.liu.se is supported"),
        "{out}"
    );
}

#[test]
fn json_plan_is_versioned() {
    let t = Tree::fixture("debian12");
    let p = t.profile("site", &site(""));
    let (st, out) = t.run(
        &fake_runner(),
        &["plan", "--format", "json", "--profile", &p],
    );
    assert_eq!(st, ExitStatus::Pending);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["schema"], "bollwerk.plan/v1");
    let changes = v["changes"].as_array().unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c["path"] == "/etc/ssh/sshd_config.d/00-bollwerk.conf"
                && c["validator"] == "sshd -t")
    );
    // Password hashes never appear in plans.
    let p = t.profile(
        "site",
        &site("password_hash = \"$6$rounds=5000$saltsalt$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZF4cLXdrBbWP.p0dhk3WJx5mQ1Bd5ErLnbxTuK6ZZ2iqz5fMC3.\"\n"),
    );
    let (_, out) = t.run(&fake_runner(), &["plan", "--profile", &p]);
    assert!(!out.contains("5B8vYYiY"), "hash leaked into the plan");
    assert!(out.contains("deploy:<hash>:"), "{out}");
}

/// A one-shot HTTP server on loopback answering every request with `status` and `body`.
fn serve(status: u16, body: &'static str) -> String {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().take(8) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

#[test]
fn keys_fetched_over_http_with_pin() {
    let body: &'static str = Box::leak(format!("{KEY2}\n").into_boxed_str());
    let url = format!("{}/bob.keys", serve(200, body));
    let t = Tree::fixture("debian12");
    let p = t.profile("site", &site(&format!("ssh_keys_from = [\"{url}\"]\n")));
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let ak = t.read("home/deploy/.ssh/authorized_keys");
    assert!(ak.contains(KEY) && ak.contains(KEY2), "{ak}");

    // A wrong pin is an error: exit 3, nothing written.
    let t = Tree::fixture("debian12");
    let url = format!("{}/bob.keys", serve(200, body));
    let p = t.profile(
        "site",
        &site(&format!(
            "ssh_keys_from = [{{ url = \"{url}\", sha256 = \"{}\" }}]\n",
            "0".repeat(64)
        )),
    );
    let before = t.snapshot();
    let (st, _) = t.run(&fake_runner(), &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Failure);
    assert_eq!(t.snapshot(), before);
    // A right pin works.
    let pin = bollwerk::root::sha256_hex(body.as_bytes());
    let p = t.profile(
        "site",
        &site(&format!(
            "ssh_keys_from = [{{ url = \"{url}\", sha256 = \"{pin}\" }}]\n"
        )),
    );
    let (st, out) = t.run(&fake_runner(), &["plan", "--profile", &p]);
    assert_eq!(st, ExitStatus::Pending, "{out}");

    // 404 and empty answers are errors, never "no keys".
    let t = Tree::fixture("debian12");
    for (status, b) in [(404u16, "nope"), (200, "\n")] {
        let url = format!("{}/x.keys", serve(status, b));
        let p = t.profile("site", &site(&format!("ssh_keys_from = [\"{url}\"]\n")));
        let (st, _) = t.run(&fake_runner(), &["plan", "--profile", &p]);
        assert_eq!(st, ExitStatus::Failure, "{status}");
    }
}

#[test]
fn a_second_run_on_the_same_root_is_locked_out() {
    let t = Tree::fixture("debian12");
    let p = t.profile("site", &site(""));
    let root = bollwerk::root::Root::new(t.root()).unwrap();
    let held = bollwerk::engine::journal::lock(&root).unwrap();
    let before = t.snapshot();
    let (st, _) = t.run(&fake_runner(), &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Failure);
    let (st, _) = t.run(&fake_runner(), &["rollback"]);
    assert_eq!(st, ExitStatus::Failure);
    assert_eq!(t.snapshot(), before);
    drop(held);
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
}
