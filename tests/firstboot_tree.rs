//! Tree tests of `bollwerk firstboot` against the Debian 12 fixture: NoCloud seeds with
//! Proxmox-shaped and hand-written cloud-config and TOML user-data, the marker (second boot does
//! nothing), clones (new host keys and machine-id), network files, and the failure policy
//! (invalid instance data or a lockout changes nothing).

mod common;

use std::path::{Path, PathBuf};

use bollwerk::ExitStatus;
use common::tree::{Tree, fake_runner};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPci/6iPPKNm3TqnlFNu0Zy6jtqtz5kw0YO3RjFH01v alice@laptop";
const HASH: &str = "$5$rounds=5000$abcdefgh$0123456789abcdefghijklmnopqrstuvwxyzABCDE";

/// user-data exactly as Proxmox VE's generator writes it (`cloudinit_userdata`).
fn proxmox_user_data() -> String {
    format!(
        "#cloud-config\nhostname: vm100\nmanage_etc_hosts: true\nfqdn: vm100.example.org\nuser: admin\npassword: {HASH}\nssh_authorized_keys:\n  - {KEY}\nchpasswd:\n  expire: False\nusers:\n  - default\npackage_upgrade: true\n"
    )
}

/// The same host as a bollwerk TOML profile.
fn toml_user_data() -> String {
    format!(
        "[host]\nhostname = \"vm100\"\nfqdn = \"vm100.example.org\"\nmanage_etc_hosts = true\n\n[[users]]\nname = \"admin\"\nshell = \"/bin/bash\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{KEY}\"]\npassword_hash = \"{HASH}\"\n"
    )
}

/// network-config v1 as Proxmox writes it, for QEMU's user-mode network.
const NETWORK_V1: &str = "version: 1\nconfig:\n    - type: physical\n      name: eth0\n      mac_address: '52:54:00:12:34:56'\n      subnets:\n      - type: static\n        address: '10.0.2.15'\n        netmask: '255.255.255.0'\n        gateway: '10.0.2.2'\n    - type: nameserver\n      address:\n      - '10.0.2.3'\n";

struct Seed {
    dir: tempfile::TempDir,
}

impl Seed {
    fn new(instance_id: &str, user_data: &str, network: Option<&str>) -> Seed {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("meta-data"),
            format!("instance-id: {instance_id}\nlocal-hostname: fromMeta\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("user-data"), user_data).unwrap();
        if let Some(n) = network {
            std::fs::write(dir.path().join("network-config"), n).unwrap();
        }
        Seed { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The fixture plus what first boot needs: `ssh-keygen`, template host keys, a machine-id.
fn image() -> Tree {
    let t = Tree::fixture("debian12");
    t.write("usr/bin/ssh-keygen", "");
    t.write("usr/sbin/chpasswd", "");
    t.write("usr/bin/chage", "");
    t.write("bin/sh", "");
    for k in ["rsa", "ecdsa", "ed25519"] {
        t.write(
            &format!("etc/ssh/ssh_host_{k}_key"),
            "TEMPLATE PRIVATE KEY\n",
        );
        t.write(
            &format!("etc/ssh/ssh_host_{k}_key.pub"),
            "TEMPLATE PUBLIC KEY\n",
        );
    }
    t.write("etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    t
}

fn firstboot(t: &Tree, seed: &Path, extra: &[&str]) -> (ExitStatus, String, Vec<String>) {
    let runner = fake_runner();
    let seed = seed.to_string_lossy().into_owned();
    let mut args = vec!["firstboot", "--seed", &seed];
    args.extend_from_slice(extra);
    let (st, out) = t.run(&runner, &args);
    (st, out, runner.log())
}

/// A fake `apt-get install` that records the packages as installed in dpkg's status file.
fn fake_apt(root: &bollwerk::root::Root, cmd: &bollwerk::exec::Cmd) -> bollwerk::exec::Output {
    if let Some(i) = cmd.args.iter().position(|a| a == "install") {
        let status = root.path().join("var/lib/dpkg/status");
        let mut text = std::fs::read_to_string(&status).unwrap_or_default();
        for p in cmd.args[i + 1..].iter().filter(|a| !a.starts_with('-')) {
            text.push_str(&format!(
                "\nPackage: {p}\nStatus: install ok installed\nVersion: 1\n"
            ));
        }
        std::fs::write(&status, text).unwrap();
    }
    bollwerk::exec::Output {
        code: 0,
        stdout: String::new(),
        stderr: String::new(),
    }
}

/// [`firstboot`] with a fake apt that installs.
fn firstboot_apt(t: &Tree, seed: &Path, extra: &[&str]) -> (ExitStatus, String, Vec<String>) {
    let runner = fake_runner();
    runner.respond_with("/usr/bin/apt-get", fake_apt);
    let seed = seed.to_string_lossy().into_owned();
    let mut args = vec!["firstboot", "--seed", &seed];
    args.extend_from_slice(extra);
    let (st, out) = t.run(&runner, &args);
    (st, out, runner.log())
}

fn seed_path(s: &Seed) -> PathBuf {
    s.path().to_path_buf()
}

#[test]
fn proxmox_cloud_config_provisions_once() {
    let t = image();
    t.write("usr/bin/apt-get", "");
    let seed = Seed::new("iid-pve-1", &proxmox_user_data(), Some(NETWORK_V1));
    let (st, out, log) = firstboot(&t, &seed_path(&seed), &[]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(
        out.contains("firstboot: instance iid-pve-1 from NoCloud"),
        "{out}"
    );
    assert!(
        !out.contains("warning"),
        "Proxmox's keys are all supported: {out}"
    );
    // package_upgrade: the lists are refreshed and the packages upgraded, once per instance.
    let apt: Vec<&String> = log
        .iter()
        .filter(|l| l.starts_with("/usr/bin/apt-get"))
        .collect();
    assert_eq!(apt.len(), 2, "{log:?}");
    assert!(apt[0].ends_with(" update"), "{apt:?}");
    assert!(apt[1].ends_with(" dist-upgrade"), "{apt:?}");
    // Users, keys, sudo, password hash.
    assert!(
        t.read("etc/passwd")
            .contains("\nadmin:x:1000:1000::/home/admin:/bin/bash\n")
    );
    assert!(t.read("etc/group").contains("\nsudo:x:27:admin\n"));
    assert!(t.read("etc/shadow").contains(&format!("\nadmin:{HASH}:")));
    assert_eq!(
        t.read("etc/sudoers.d/bollwerk"),
        "# Managed by bollwerk — local edits are overwritten\nadmin ALL=(ALL:ALL) NOPASSWD: ALL\n"
    );
    assert!(t.read("home/admin/.ssh/authorized_keys").contains(KEY));
    // Baseline hardening came with it.
    let dropin = t.read("etc/ssh/sshd_config.d/00-bollwerk.conf");
    assert!(dropin.contains("PasswordAuthentication no\n"), "{dropin}");
    assert!(dropin.contains("PermitRootLogin no\n"), "{dropin}");
    // Host name from user-data (not meta-data's local-hostname), FQDN in hosts.
    assert_eq!(t.read("etc/hostname"), "vm100\n");
    assert!(
        t.read("etc/hosts")
            .contains("127.0.1.1\tvm100.example.org vm100\n")
    );
    // Static network for the NIC matched by MAC.
    let net = t.read("etc/systemd/network/10-bollwerk-eth0.network");
    assert!(net.contains("MACAddress=52:54:00:12:34:56\n"), "{net}");
    assert!(
        net.contains("Address=10.0.2.15/24\nGateway=10.0.2.2\nDNS=10.0.2.3\n"),
        "{net}"
    );
    assert!(t.read("etc/resolv.conf").contains("nameserver 10.0.2.3\n"));
    // New host keys: the template's are removed and ssh-keygen -A runs in the root.
    assert!(!t.exists("etc/ssh/ssh_host_ed25519_key"));
    assert!(log.iter().any(|l| l == "/usr/bin/ssh-keygen -A"), "{log:?}");
    // First instance: machine-id is left alone (systemd made it on this boot).
    assert_eq!(
        t.read("etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n"
    );
    // Marker and report.
    assert_eq!(t.read("var/lib/bollwerk/instance-id"), "iid-pve-1\n");
    let report: serde_json::Value =
        serde_json::from_str(&t.read("var/lib/bollwerk/firstboot/report.json")).unwrap();
    assert_eq!(report["schema"], "bollwerk.firstboot/v1");
    assert_eq!(report["status"], "provisioned");
    assert_eq!(report["user_data"], "cloud-config");
    assert_eq!(report["instance"]["host_keys_regenerated"], true);
    assert_eq!(report["findings"].as_array().unwrap().len(), 0);
    // The whole thing is one journaled run that rolls back.
    assert!(report["run_id"].as_str().is_some());
    // The audit ran on the provisioned host: its report is saved next to the first-boot
    // report and in the history, and every check the profile covers is green.
    let audit = &report["audit"];
    assert_eq!(
        audit["report"], "/var/lib/bollwerk/firstboot/audit.json",
        "{audit}"
    );
    assert!(
        audit["covered_by_profile"].as_u64().unwrap() > 20,
        "{audit}"
    );
    assert_eq!(
        audit["covered_failing"].as_array().unwrap().len(),
        0,
        "{audit}"
    );
    let saved: serde_json::Value =
        serde_json::from_str(&t.read("var/lib/bollwerk/firstboot/audit.json")).unwrap();
    assert_eq!(saved["schema"], "bollwerk.report/v1");
    assert!(t.exists(audit["saved"].as_str().unwrap()));

    // Second boot, same instance: nothing to do, nothing touched.
    let before = t.snapshot_with_mtime(true);
    let (st, out, log) = firstboot(&t, &seed_path(&seed), &[]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(
        out.contains("instance iid-pve-1 is already provisioned"),
        "{out}"
    );
    assert!(log.is_empty(), "no command on a second boot: {log:?}");
    assert_eq!(t.snapshot_with_mtime(true), before);
}

/// A live boot's local stage leaves the slow host key types (RSA) and the verification for
/// after sshd: the audit stage generates the keys (`ssh-keygen -A` adds only what is missing;
/// sshd offers them from its next start, no reload), verifies the host with the stored profile, records both in the report, and
/// does it once. A host that does not verify is reported and fails the stage. (The local
/// stage's split itself runs only on a live root: the QEMU harness proves it,
/// vagrant/qemu-firstboot.sh scenario 1.)
#[test]
fn the_audit_stage_completes_host_keys_and_verification_left_for_after_sshd() {
    let t = image();
    t.write("lib/systemd/system/ssh.service", "[Service]\n");
    let seed = Seed::new("iid-keys", &toml_user_data(), None);
    let (st, out, _) = firstboot(&t, &seed_path(&seed), &[]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    // As the local stage of a live boot writes it.
    let path = "var/lib/bollwerk/firstboot/report.json";
    let mut report: serde_json::Value = serde_json::from_str(&t.read(path)).unwrap();
    report["instance"]["host_keys_deferred"] = serde_json::json!(["rsa"]);
    report["verify"] = serde_json::json!("queued");
    t.write(path, &report.to_string());
    // The stored profile re-applies with nothing to change (the headers keep first boot's
    // profile name).
    let (st, out) = t.run(&fake_runner(), &["plan"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("0 changes"), "{out}");
    let runner = fake_runner();
    let (st, out) = t.run(&runner, &["firstboot", "--stage", "audit"]);
    assert_eq!(st, ExitStatus::Ok, "{out}\n{}", t.read(path));
    let log = runner.log();
    assert!(log.iter().any(|l| l == "/usr/bin/ssh-keygen -A"), "{log:?}");
    // No sshd reload: it would reset connections being opened right then.
    assert!(!log.iter().any(|l| l.contains("systemctl")), "{log:?}");
    let report: serde_json::Value = serde_json::from_str(&t.read(path)).unwrap();
    assert_eq!(
        report["instance"]["host_keys_completed"]["ok"], true,
        "{report}"
    );
    assert!(report["audit"]["score"].is_number(), "{report}");
    assert_eq!(report["verify"], "done", "{report}");
    assert_eq!(report["status"], "provisioned", "{report}");
    assert_eq!(report["findings"], serde_json::json!([]), "{report}");
    assert!(report["phases_ms"]["verify"].is_number(), "{report}");
    // Done once: a second audit stage leaves the keys alone.
    let runner = fake_runner();
    let (st, out) = t.run(&runner, &["firstboot", "--stage", "audit"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(
        !runner.log().iter().any(|l| l.contains("ssh-keygen")),
        "{:?}",
        runner.log()
    );
    // Verification that finds drift: reported, and the stage fails.
    let mut report: serde_json::Value = serde_json::from_str(&t.read(path)).unwrap();
    report["verify"] = serde_json::json!("queued");
    t.write(path, &report.to_string());
    t.write("etc/sudoers.d/bollwerk", "admin ALL=(ALL) ALL\n");
    let (st, out) = t.run(&fake_runner(), &["firstboot", "--stage", "audit"]);
    assert_ne!(st, ExitStatus::Ok, "{out}");
    let report: serde_json::Value = serde_json::from_str(&t.read(path)).unwrap();
    assert_eq!(report["status"], "provisioned-with-findings", "{report}");
    let findings = report["findings"].to_string();
    assert!(findings.contains("not converged: users"), "{findings}");
}

#[test]
fn cloud_config_and_toml_user_data_give_the_same_host() {
    let files = [
        "etc/passwd",
        "etc/group",
        "etc/sudoers.d/bollwerk",
        "home/admin/.ssh/authorized_keys",
        "etc/ssh/sshd_config.d/00-bollwerk.conf",
        "etc/hostname",
        "etc/hosts",
        "etc/systemd/network/10-bollwerk-eth0.network",
    ];
    let a = image();
    let b = image();
    let sa = Seed::new("iid-a", &proxmox_user_data(), Some(NETWORK_V1));
    let sb = Seed::new("iid-a", &toml_user_data(), Some(NETWORK_V1));
    assert_eq!(firstboot(&a, &seed_path(&sa), &[]).0, ExitStatus::Ok);
    let (st, out, _) = firstboot(&b, &seed_path(&sb), &[]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    for f in files {
        let (x, y) = (a.read(f), b.read(f));
        // The drop-in names its profile; everything else must be identical.
        let strip = |s: &str| {
            s.lines()
                .filter(|l| !l.starts_with("# Profile:"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip(&x), strip(&y), "{f} differs");
    }
    let shadow = |t: &Tree| {
        t.read("etc/shadow")
            .lines()
            .find(|l| l.starts_with("admin:"))
            .unwrap()
            .to_string()
    };
    assert_eq!(shadow(&a), shadow(&b));
    let ra: serde_json::Value =
        serde_json::from_str(&b.read("var/lib/bollwerk/firstboot/report.json")).unwrap();
    assert_eq!(ra["user_data"], "toml");
}

#[test]
fn a_clone_gets_new_host_keys_and_machine_id() {
    let t = image();
    let s1 = Seed::new("iid-template", &proxmox_user_data(), None);
    assert_eq!(firstboot(&t, &seed_path(&s1), &[]).0, ExitStatus::Ok);
    // What ssh-keygen -A would have made on the template.
    t.write("etc/ssh/ssh_host_ed25519_key", "TEMPLATE KEY 2\n");
    let mid = t.read("etc/machine-id");
    // Cloned: same disk, new instance-id.
    let s2 = Seed::new("iid-clone", &proxmox_user_data(), None);
    let (st, out, log) = firstboot(&t, &seed_path(&s2), &[]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(log.iter().any(|l| l == "/usr/bin/ssh-keygen -A"), "{log:?}");
    assert!(
        !t.exists("etc/ssh/ssh_host_ed25519_key"),
        "template key removed"
    );
    let new_mid = t.read("etc/machine-id");
    assert_ne!(new_mid, mid, "a clone gets a new machine-id");
    assert_eq!(new_mid.trim().len(), 32);
    assert!(new_mid.trim().chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(t.read("var/lib/bollwerk/instance-id"), "iid-clone\n");
    let report: serde_json::Value =
        serde_json::from_str(&t.read("var/lib/bollwerk/firstboot/report.json")).unwrap();
    assert_eq!(report["instance"]["machine_id_regenerated"], true);
}

#[test]
fn invalid_instance_data_changes_nothing() {
    let t = image();
    let before = t.snapshot_with_mtime(true);
    for (ud, want) in [
        (
            "#cloud-config\nusers:\n  - name: Bad Name\n",
            "user-data:3:5",
        ),
        ("#!/bin/sh\necho hi\n", "shell script"),
        ("[ssh\n", "TOML syntax error"),
        ("[ssh]\nport = 0\n", "out of range"),
    ] {
        let seed = Seed::new("iid-bad", ud, None);
        let (st, out, log) = firstboot(&t, &seed_path(&seed), &[]);
        assert_eq!(st, ExitStatus::Refused, "{ud}: {out}");
        assert!(log.is_empty(), "{ud}: {log:?}");
        assert_eq!(
            t.snapshot_with_mtime(true),
            before,
            "{ud}: nothing may change"
        );
        // The message (stderr, the journal under systemd) says where and what.
        let root = bollwerk::root::Root::new(t.root()).unwrap();
        let facts = bollwerk::facts::Facts::gather(&root, &fake_runner()).unwrap();
        let data = bollwerk::firstboot::datasource::read_host_dir(seed.path(), "test")
            .unwrap()
            .unwrap();
        let msg = match bollwerk::firstboot::prepare(&data, &facts) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{ud}: accepted"),
        };
        assert!(msg.contains(want), "{ud}: {msg}");
    }
    // Broken network-config is as bad as broken user-data.
    let seed = Seed::new(
        "iid-bad",
        &proxmox_user_data(),
        Some("version: 1\nconfig:\n  - type: physical\n    mac_address: nope\n"),
    );
    assert_eq!(firstboot(&t, &seed_path(&seed), &[]).0, ExitStatus::Refused);
    assert_eq!(t.snapshot_with_mtime(true), before);
    assert!(!t.exists("var/lib/bollwerk/instance-id"));
}

#[test]
fn no_admin_key_is_refused_and_sshd_stays_as_it_was() {
    let t = image();
    // (mtimes aside: taking the run lock creates var/lib/bollwerk)
    let before = t.snapshot();
    // No keys anywhere: baseline would lock everyone out of SSH.
    let seed = Seed::new("iid-nokey", "#cloud-config\nhostname: x\n", None);
    let (st, out, _) = firstboot(&t, &seed_path(&seed), &[]);
    assert_eq!(st, ExitStatus::Refused, "{out}");
    assert_eq!(t.snapshot(), before);
    assert!(!t.exists("etc/ssh/sshd_config.d/00-bollwerk.conf"));
}

#[test]
fn write_files_and_opt_in_runcmd() {
    let ud = format!(
        "#cloud-config\nssh_authorized_keys: ['{KEY}']\nwrite_files:\n  - path: /etc/motd\n    content: |\n      welcome\n    permissions: '0640'\n    owner: root:adm\n  - path: /etc/issue\n    content: \"extra\\n\"\n    append: true\nruncmd:\n  - echo hello\n"
    );
    let t = image();
    t.write("etc/issue", "Debian\n");
    let seed = Seed::new("iid-w", &ud, None);
    let (st, out, log) = firstboot(&t, &seed_path(&seed), &[]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert_eq!(t.read("etc/motd"), "welcome\n");
    assert_eq!(t.meta("etc/motd"), (0o640, 0, 4));
    assert_eq!(t.read("etc/issue"), "Debian\nextra\n");
    assert!(out.contains("runcmd: 1 command(s) not run"), "{out}");
    assert!(!log.iter().any(|l| l.contains("runcmd.sh")), "{log:?}");
    // The default user of Debian gets the key.
    assert!(t.read("home/debian/.ssh/authorized_keys").contains(KEY));

    // With the opt-in, runcmd runs (once, as a journaled script).
    let t = image();
    let (st, out, log) = firstboot(&t, &seed_path(&seed), &["--allow-runcmd"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(
        log.iter()
            .any(|l| l == "/bin/sh /var/lib/bollwerk/firstboot/runcmd.sh"),
        "{log:?}"
    );
    assert!(
        t.read("var/lib/bollwerk/firstboot/runcmd.sh")
            .contains("\necho hello\n")
    );
}

#[test]
fn apply_of_a_profile_with_write_files_is_idempotent() {
    let t = image();
    t.write("etc/issue", "Debian\n");
    let p = t.profile(
        "site",
        &format!("[[users]]\nname = \"ops\"\nssh_keys = [\"{KEY}\"]\n[firstboot]\nwrite_files = [{{ path = \"/etc/issue\", content = \"extra\\n\", append = true }}, {{ path = \"/etc/motd\", content = \"hi\\n\" }}]\nruncmd = [\"echo x\"]\n"),
    );
    let runner = fake_runner();
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert_eq!(t.read("etc/issue"), "Debian\nextra\n");
    let (st, out) = t.run(&runner, &["apply", "--profile", &p]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("0 changes"), "{out}");
    assert!(
        !runner.log().iter().any(|l| l.contains("echo")),
        "apply never runs runcmd"
    );
    // Protected paths are profile errors.
    let bad = t.profile(
        "bad",
        "[firstboot]\nwrite_files = [{ path = \"/etc/ssh/sshd_config.d/99-x.conf\", content = \"PermitRootLogin yes\\n\" }]\n",
    );
    let (st, _) = t.run(&runner, &["validate", "--profile", &bad]);
    assert_eq!(st, ExitStatus::Refused);
}

#[test]
fn no_instance_data_is_nothing_to_do() {
    let t = image();
    let before = t.snapshot_with_mtime(true);
    let (st, out) = t.run(&fake_runner(), &["firstboot"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("no instance data"), "{out}");
    assert_eq!(t.snapshot_with_mtime(true), before);
}

#[test]
fn configdrive_as_proxmox_writes_it() {
    let t = image();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("openstack/latest")).unwrap();
    std::fs::create_dir_all(d.join("openstack/content")).unwrap();
    std::fs::write(d.join("openstack/latest/user_data"), proxmox_user_data()).unwrap();
    std::fs::write(
        d.join("openstack/latest/meta_data.json"),
        "{\n     \"uuid\": \"1a2b3c\",\n     \"network_config\": { \"content_path\": \"/content/0000\" }\n}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("openstack/content/0000"),
        "auto lo\niface lo inet loopback\n\n        dns_nameservers 10.0.2.3\nauto eth0\niface eth0 inet static\n        address 10.0.2.15\n        netmask 255.255.255.0\n        gateway 10.0.2.2\n",
    )
    .unwrap();
    let (st, out, _) = firstboot(&t, d, &[]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("from ConfigDrive"), "{out}");
    let net = t.read("etc/systemd/network/10-bollwerk-eth0.network");
    assert!(
        net.contains("Name=eth0\n") && net.contains("Address=10.0.2.15/24\n"),
        "{net}"
    );
    assert_eq!(t.read("var/lib/bollwerk/instance-id"), "1a2b3c\n");
}

// ---------------------------------------------------------------------------------------------
// cloud-config parity (issue 13): every key has a profile equivalent; the tests read the
// effective profile first boot stores (var/lib/bollwerk/profile.toml) and the tree it wrote.
// ---------------------------------------------------------------------------------------------

/// The effective profile first boot stored, parsed.
fn stored(t: &Tree) -> toml::Table {
    toml::from_str(&t.read("var/lib/bollwerk/profile.toml")).unwrap()
}

/// The notes of the first-boot report (all levels).
fn report_notes(t: &Tree) -> String {
    let r: serde_json::Value =
        serde_json::from_str(&t.read("var/lib/bollwerk/firstboot/report.json")).unwrap();
    format!("{} {}", r["notes"], r["warnings"])
}

const ARMORED: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZWxhbXBsZRYJKwYBBAHaRw8BAQdA\n-----END PGP PUBLIC KEY BLOCK-----";

#[test]
fn packages_update_upgrade_and_reboot_if_required() {
    let ud = format!(
        "#cloud-config\nssh_authorized_keys: ['{KEY}']\npackages: [tree, [curl, '7.88.1-10']]\npackage_update: true\npackage_upgrade: true\npackage_reboot_if_required: true\n"
    );
    let t = image();
    t.write("usr/bin/apt-get", "");
    let seed = Seed::new("iid-pkg", &ud, None);
    let (st, out, log) = firstboot_apt(&t, &seed_path(&seed), &[]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let apt: Vec<&String> = log
        .iter()
        .filter(|l| l.starts_with("/usr/bin/apt-get"))
        .collect();
    // The packages module: update + install; first boot: update + dist-upgrade, once.
    assert!(
        apt.iter()
            .any(|l| l.ends_with(" install --no-install-recommends tree curl")),
        "{apt:?}"
    );
    assert!(
        out.contains("packages: the version pin of curl (7.88.1-10) is not applied"),
        "{out}"
    );
    assert!(apt.last().unwrap().ends_with(" dist-upgrade"), "{apt:?}");
    let p = stored(&t);
    assert_eq!(p["packages"]["install"][0].as_str(), Some("tree"));
    assert_eq!(p["firstboot"]["package_upgrade"].as_bool(), Some(true));
    assert_eq!(p["firstboot"]["package_update"].as_bool(), Some(true));
    assert_eq!(
        p["firstboot"]["package_reboot_if_required"].as_bool(),
        Some(true)
    );
    assert!(
        report_notes(&t).contains("package_reboot_if_required: skipped (not a live system)"),
        "{}",
        report_notes(&t)
    );
    // policy-rc.d was in place during the upgrade and is gone again.
    assert!(!t.exists("usr/sbin/policy-rc.d"));
    // A re-apply of the stored profile never upgrades again.
    let runner = fake_runner();
    let (st, out) = t.run(&runner, &["apply"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(
        !runner.log().iter().any(|l| l.contains("dist-upgrade")),
        "{:?}",
        runner.log()
    );
}

#[test]
fn apt_sources_with_signed_by_keyring() {
    let key = ARMORED.replace('\n', "\n        ");
    let ud = format!(
        "#cloud-config\nssh_authorized_keys: ['{KEY}']\napt:\n  sources:\n    docker.list:\n      source: deb [arch=amd64 signed-by=$KEY_FILE] https://download.example.com/linux/debian $RELEASE stable\n      key: |\n        {key}\n    other:\n      source: deb http://mirror.example.org/x bookworm main\n      keyid: 0123456789ABCDEF\n  primary:\n    - arches: [default]\npackages: [docker-ce]\n"
    );
    let t = image();
    t.write("usr/bin/apt-get", "");
    let seed = Seed::new("iid-apt", &ud, None);
    let (st, out, log) = firstboot_apt(&t, &seed_path(&seed), &[]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let src = t.read("etc/apt/sources.list.d/bollwerk-docker.sources");
    assert!(
        src.ends_with("Types: deb\nURIs: https://download.example.com/linux/debian\nSuites: bookworm\nComponents: stable\nArchitectures: amd64\nSigned-By: /etc/apt/keyrings/bollwerk-docker.asc\n"),
        "{src}"
    );
    assert_eq!(
        t.read("etc/apt/keyrings/bollwerk-docker.asc"),
        format!("{ARMORED}\n")
    );
    assert_eq!(t.meta("etc/apt/keyrings/bollwerk-docker.asc").0, 0o644);
    // Without a key in the data, apt's own keyrings decide; keyid is listed as not applied.
    let other = t.read("etc/apt/sources.list.d/bollwerk-other.sources");
    assert!(!other.contains("Signed-By"), "{other}");
    assert!(
        out.contains("apt.sources.other.keyid is not applied"),
        "{out}"
    );
    assert!(out.contains("apt.primary (line"), "{out}");
    // The sources are written before apt-get update runs for the package.
    assert!(
        log.iter()
            .any(|l| l.ends_with(" install --no-install-recommends docker-ce")),
        "{log:?}"
    );
    let p = stored(&t);
    assert_eq!(p["apt"]["sources"][0]["name"].as_str(), Some("docker"));
    // A profile without the source removes bollwerk's files again.
    let site = t.profile(
        "site",
        &format!("[[users]]\nname = \"debian\"\nssh_keys = [\"{KEY}\"]\n[apt]\nsources = []\n"),
    );
    let (st, out) = t.run(&fake_runner(), &["apply", "--profile", &site]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(!t.exists("etc/apt/sources.list.d/bollwerk-docker.sources"));
    assert!(!t.exists("etc/apt/keyrings/bollwerk-docker.asc"));
    // A key that is not an armored public key block is a profile error.
    let bad = t.profile(
        "bad",
        "[apt]\nsources = [{ name = \"x\", uris = [\"https://a.example\"], suites = [\"s\"], components = [\"main\"], key = \"not a key\" }]\n",
    );
    let (st, out) = t.run(&fake_runner(), &["validate", "--profile", &bad]);
    assert_eq!(st, ExitStatus::Refused, "{out}");
}

#[test]
fn bootcmd_runs_first_under_the_runcmd_opt_in() {
    let ud = format!(
        "#cloud-config\nssh_authorized_keys: ['{KEY}']\nbootcmd:\n  - echo early > /run/early\n  - [cloud-init-per, once, x, true]\nruncmd:\n  - echo late\n"
    );
    let seed = Seed::new("iid-boot", &ud, None);
    let t = image();
    let (st, out, log) = firstboot(&t, &seed_path(&seed), &[]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("bootcmd: 2 command(s) not run"), "{out}");
    assert!(!log.iter().any(|l| l.contains("bootcmd.sh")), "{log:?}");

    let t = image();
    let (st, out, log) = firstboot(&t, &seed_path(&seed), &["--allow-runcmd"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let boot = log
        .iter()
        .position(|l| l == "/bin/sh /var/lib/bollwerk/firstboot/bootcmd.sh")
        .unwrap_or_else(|| panic!("{log:?}"));
    let run = log
        .iter()
        .position(|l| l == "/bin/sh /var/lib/bollwerk/firstboot/runcmd.sh")
        .unwrap_or_else(|| panic!("{log:?}"));
    assert!(boot < run, "{log:?}");
    let script = t.read("var/lib/bollwerk/firstboot/bootcmd.sh");
    assert!(
        script.contains("\necho early > /run/early\ncloud-init-per once x true\n"),
        "{script}"
    );
    // Per-instance commands are not kept in the stored profile.
    assert!(stored(&t)["firstboot"].get("bootcmd").is_none());
}

/// MIME multipart user-data written with Python's `email` library, as Terraform's
/// `cloudinit_config` sends it: two cloud-config parts (merged), a shell script, a boothook.
fn multipart_user_data() -> Vec<u8> {
    let script = format!(
        r##"
import sys
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
m = MIMEMultipart()
a = MIMEText("#cloud-config\nhostname: first\nusers:\n  - name: ops\n    groups: [sudo]\n    sudo: ALL=(ALL) NOPASSWD:ALL\n    ssh_authorized_keys: ['{KEY}']\nwrite_files:\n  - path: /etc/motd\n    content: from part one\n", "cloud-config")
a.add_header("Content-Disposition", "attachment", filename="base.yaml")
m.attach(a)
b = MIMEText("#cloud-config\nhostname: second\ntimezone: Europe/Berlin\n", "cloud-config", "utf-8")
m.attach(b)
s = MIMEText("#!/bin/bash\necho from-the-script > /root/part.txt\n", "x-shellscript")
s.add_header("Content-Disposition", "attachment", filename="setup.sh")
m.attach(s)
m.attach(MIMEText("#cloud-boothook\necho hi\n", "cloud-boothook"))
sys.stdout.write(m.as_string())
"##
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 is needed to write MIME user-data");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn mime_multipart_user_data_is_merged() {
    let mime = multipart_user_data();
    assert!(mime.starts_with(b"Content-Type: multipart/mixed"));
    let seed = Seed::new("iid-mime", &String::from_utf8(mime.clone()).unwrap(), None);
    let t = image();
    let (st, out, log) = firstboot(&t, &seed_path(&seed), &[]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    // Later parts win key by key; the first part's users and files stay.
    assert_eq!(t.read("etc/hostname"), "second\n");
    assert!(t.read("home/ops/.ssh/authorized_keys").contains(KEY));
    assert_eq!(t.read("etc/motd"), "from part one");
    // The script obeys the runcmd opt-in; the boothook is listed as not applied.
    assert!(out.contains("runcmd: 1 command(s) not run"), "{out}");
    assert!(
        out.contains("part 004 of type text/cloud-boothook is not applied"),
        "{out}"
    );
    assert!(!log.iter().any(|l| l.contains("runcmd.sh")), "{log:?}");
    let report: serde_json::Value =
        serde_json::from_str(&t.read("var/lib/bollwerk/firstboot/report.json")).unwrap();
    assert_eq!(report["user_data"], "multipart");

    // gzip-compressed (Terraform's default), with the opt-in: the script runs by its own
    // interpreter from a file.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &mime).unwrap();
    let seed = Seed::new("iid-mime-gz", "", None);
    std::fs::write(seed.path().join("user-data"), gz.finish().unwrap()).unwrap();
    let t = image();
    let (st, out, log) = firstboot(&t, &seed_path(&seed), &["--allow-runcmd"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(
        log.iter()
            .any(|l| l == "/bin/sh /var/lib/bollwerk/firstboot/runcmd.sh"),
        "{log:?}"
    );
    let rc = t.read("var/lib/bollwerk/firstboot/runcmd.sh");
    assert!(
        rc.contains("f=/var/lib/bollwerk/firstboot/part-setup.sh\ncat > \"$f\" <<'BOLLWERK_PART_"),
        "{rc}"
    );
    assert!(
        rc.contains("#!/bin/bash\necho from-the-script > /root/part.txt\nBOLLWERK_PART_"),
        "{rc}"
    );
    assert_eq!(t.read("etc/timezone"), "Europe/Berlin\n");

    // A MIME message without its boundary is a clear error, not a TOML error.
    let seed = Seed::new(
        "iid-mime-bad",
        "MIME-Version: 1.0\nContent-Type: multipart/mixed\n\nhello\n",
        None,
    );
    let t = image();
    let (st, out, _) = firstboot(&t, &seed_path(&seed), &[]);
    assert_eq!(st, ExitStatus::Refused, "{out}");
}

#[test]
fn write_files_defer_is_written_after_users() {
    let ud = format!(
        "#cloud-config\nusers:\n  - default\n  - name: app\n    ssh_authorized_keys: ['{KEY}']\nssh_authorized_keys: ['{KEY}']\nwrite_files:\n  - path: /home/app/.env\n    content: TOKEN=x\n    owner: app:app\n    permissions: '0600'\n    defer: true\n  - path: /etc/early.conf\n    content: early\n"
    );
    let t = image();
    let seed = Seed::new("iid-defer", &ud, None);
    let (st, out, _) = firstboot(&t, &seed_path(&seed), &[]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let uid: u32 = t
        .read("etc/passwd")
        .lines()
        .find(|l| l.starts_with("app:"))
        .and_then(|l| l.split(':').nth(2))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(t.meta("home/app/.env"), (0o600, uid, uid));
    assert_eq!(t.read("etc/early.conf"), "early");
    // Without defer, an owner the data creates does not exist yet: refused, nothing changed.
    let ud = ud.replace("    defer: true\n", "");
    let t = image();
    let before = t.snapshot();
    let seed = Seed::new("iid-nodefer", &ud, None);
    let (st, out, _) = firstboot(&t, &seed_path(&seed), &[]);
    assert_ne!(st, ExitStatus::Ok, "{out}");
    assert_eq!(t.snapshot(), before);
}

#[test]
fn ssh_import_id_lp_fetches_launchpad_keys() {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming().take(4) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 2048];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            let _ = tx.send(req.lines().next().unwrap_or("").to_string());
            let body = format!("{KEY}\n");
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    // SAFETY: only this test reads BOLLWERK_LAUNCHPAD_URL.
    unsafe { std::env::set_var("BOLLWERK_LAUNCHPAD_URL", format!("http://{addr}")) };
    let ud = "#cloud-config\nssh_import_id: [lp:alice, sf:nobody]\n";
    let t = image();
    let seed = Seed::new("iid-lp", ud, None);
    let (st, out, _) = firstboot(&t, &seed_path(&seed), &[]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert_eq!(rx.try_recv().unwrap(), "GET /~alice/+sshkeys HTTP/1.1");
    assert!(t.read("home/debian/.ssh/authorized_keys").contains(KEY));
    assert!(out.contains("`sf:nobody` not imported"), "{out}");
    assert_eq!(
        stored(&t)["users"][0]["ssh_keys_from"][0].as_str(),
        Some("lp:alice")
    );
}

#[test]
fn restricted_sudo_rules_are_validated_with_visudo() {
    let ud = format!(
        "#cloud-config\nssh_authorized_keys: ['{KEY}']\nusers:\n  - default\n  - name: app\n    sudo: ['ALL=(root) NOPASSWD: /usr/bin/systemctl restart app', 'ALL=(root) NOPASSWD:   /usr/bin/journalctl -u app']\n"
    );
    let t = image();
    let seed = Seed::new("iid-sudo", &ud, None);
    let (st, out, log) = firstboot(&t, &seed_path(&seed), &[]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let sudoers = t.read("etc/sudoers.d/bollwerk");
    assert!(
        sudoers.ends_with("debian ALL=(ALL:ALL) NOPASSWD: ALL\napp ALL=(root) NOPASSWD: /usr/bin/systemctl restart app\napp ALL=(root) NOPASSWD: /usr/bin/journalctl -u app\n"),
        "{sudoers}"
    );
    assert!(log.iter().any(|l| l.contains("visudo -c")), "{log:?}");
    assert_eq!(
        stored(&t)["users"][1]["sudo_rules"][0].as_str(),
        Some("ALL=(root) NOPASSWD: /usr/bin/systemctl restart app")
    );
    // In a profile: a rule that smuggles a second line is refused before anything runs.
    let bad = t.profile(
        "bad",
        "[[users]]\nname = \"app\"\nsudo_rules = [\"ALL=(root) /bin/true\\nevil ALL=(ALL) ALL\"]\n",
    );
    let (st, out) = t.run(&fake_runner(), &["validate", "--profile", &bad]);
    assert_eq!(st, ExitStatus::Refused, "{out}");
}

fn make_swapfile(root: &bollwerk::root::Root, cmd: &bollwerk::exec::Cmd) -> bollwerk::exec::Output {
    if cmd.args.iter().any(|a| a.contains("fallocate")) {
        std::fs::write(root.path().join("swapfile"), "").unwrap();
    }
    bollwerk::exec::Output {
        code: 0,
        stdout: String::new(),
        stderr: String::new(),
    }
}

#[test]
fn growpart_swap_mounts_ntp_power_state() {
    let ud = format!(
        "#cloud-config\nssh_authorized_keys: ['{KEY}']\ngrowpart:\n  mode: auto\n  devices: ['/']\nresize_rootfs: true\nswap:\n  filename: /swapfile\n  size: 1G\nmounts:\n  - [ /dev/vdb1, /data, ext4, 'defaults,nofail', '0', '2' ]\n  - [ ephemeral0 ]\nntp:\n  enabled: true\n  ntp_client: chrony\n  servers: [ntp1.example.org]\n  pools: [pool.example.org]\npower_state:\n  mode: reboot\n  delay: '+2'\n  message: bye\n"
    );
    let t = image();
    let seed = Seed::new("iid-storage", &ud, None);
    // The fake `sh -c "fallocate … mkswap"` makes the file, as the real one does.
    let runner = fake_runner();
    runner.respond_with("/bin/sh -c ", make_swapfile);
    let sp = seed_path(&seed).to_string_lossy().into_owned();
    let (st, out) = t.run(&runner, &["firstboot", "--seed", &sp]);
    let log = runner.log();
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let p = stored(&t);
    assert_eq!(p["storage"]["grow_root"].as_bool(), Some(true));
    assert_eq!(p["storage"]["swap"]["path"].as_str(), Some("/swapfile"));
    assert_eq!(p["storage"]["mounts"][0]["where"].as_str(), Some("/data"));
    assert_eq!(p["time"]["daemon"].as_str(), Some("chrony"));
    assert_eq!(
        p["time"]["servers"].as_array().unwrap().len(),
        2,
        "servers and pools"
    );
    assert_eq!(
        p["firstboot"]["power_state"]["delay_minutes"].as_integer(),
        Some(2)
    );
    // The tree: fstab block, mount point, swap file made inside the root.
    let fstab = t.read("etc/fstab");
    assert!(
        fstab.contains("\n/swapfile none swap sw 0 0\n/dev/vdb1 /data ext4 defaults,nofail 0 2\n# END bollwerk storage\n"),
        "{fstab}"
    );
    assert!(t.path("data").is_dir());
    assert!(
        log.iter().any(|l| l
            .starts_with("/bin/sh -c 'umask 077 && /usr/bin/fallocate -l 1073741824 ")
            && l.contains("mkswap")),
        "{log:?}"
    );
    let notes = report_notes(&t);
    assert!(
        notes.contains("storage.grow_root: applies on a live system only"),
        "{notes}"
    );
    assert!(
        notes.contains("power_state / package_reboot_if_required: skipped (not a live system)"),
        "{notes}"
    );
    assert!(
        out.contains("mounts[1]: entries that remove a mount"),
        "{out}"
    );
    // Re-applying the stored profile does not make the swap file twice.
    let runner = fake_runner();
    let (st, out) = t.run(&runner, &["apply"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(
        !runner.log().iter().any(|l| l.contains("fallocate")),
        "{:?}",
        runner.log()
    );
}

#[test]
fn unsupported_keys_are_listed() {
    let ud = format!(
        "#cloud-config\nssh_authorized_keys: ['{KEY}']\nsnap:\n  commands: [x]\nntp:\n  ntp_client: ntpd\npower_state:\n  mode: poweroff\n  condition: test -f /x\n"
    );
    let t = image();
    let seed = Seed::new("iid-unsup", &ud, None);
    let (st, out, _) = firstboot(&t, &seed_path(&seed), &[]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(
        out.contains("unsupported cloud-config keys, not applied: snap (line 3)"),
        "{out}"
    );
    assert!(
        out.contains("ntp.ntp_client `ntpd` is not supported"),
        "{out}"
    );
    assert!(out.contains("power_state is not applied"), "{out}");
}

#[test]
fn the_effective_profile_is_kept_for_apply_and_audit() {
    let t = image();
    let seed = Seed::new("iid-keep", &proxmox_user_data(), None);
    let (st, out, _) = firstboot(&t, &seed_path(&seed), &[]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert_eq!(t.meta("var/lib/bollwerk/profile.toml").0, 0o600);
    let text = t.read("var/lib/bollwerk/profile.toml");
    assert!(!text.contains(HASH), "no password hashes: {text}");
    assert!(!text.contains("extends"), "{text}");
    // plan / apply without --profile use it. The host is converged: nothing to change, not
    // even the managed files' `# Profile:` headers (the stored profile keeps first boot's name).
    let runner = fake_runner();
    let (st, out) = t.run(&runner, &["plan"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("0 changes"), "{out}");
    assert!(
        out.contains("profile user-data (from #cloud-config)"),
        "{out}"
    );
    let (st, out) = t.run(&runner, &["apply"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("0 changes"), "{out}");
    assert!(t.read("etc/shadow").contains(HASH), "password left alone");
    let (st, out) = t.run(&runner, &["audit", "--format", "json"]);
    assert!(matches!(st, ExitStatus::Ok | ExitStatus::Pending), "{out}");
    assert!(out.contains("\"covered_by_profile\": true"), "{out}");
    // Without a stored profile, apply asks for one.
    let t = image();
    let (st, out) = t.run(&fake_runner(), &["apply"]);
    assert_eq!(st, ExitStatus::Refused, "{out}");
}

#[test]
fn package_steps_wait_for_the_network_and_a_failure_is_retried_alone() {
    let ud = format!(
        "#cloud-config\nssh_authorized_keys: ['{KEY}']\npackage_update: true\npackage_upgrade: true\n"
    );
    let t = image();
    t.write("usr/bin/apt-get", "");
    let seed = Seed::new("iid-stages", &ud, None);
    // Local stage (before the network): users, keys and sshd; apt waits.
    let (st, out, log) = firstboot(&t, &seed_path(&seed), &["--stage", "local"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(!log.iter().any(|l| l.contains("apt-get")), "{log:?}");
    assert!(t.read("home/debian/.ssh/authorized_keys").contains(KEY));
    assert_eq!(
        t.read("var/lib/bollwerk/firstboot/pending-final"),
        "iid-stages\npackage_update\npackage_upgrade\n"
    );
    assert!(
        out.contains("package_update, package_upgrade wait for the network"),
        "{out}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&t.read("var/lib/bollwerk/firstboot/report.json")).unwrap();
    assert_eq!(report["deferred_to_final"][1], "package_upgrade");

    // Final stage, the mirror unreachable: reported, users and keys stay, nothing left over.
    let runner = fake_runner();
    runner.respond("/usr/bin/apt-get", 100, "");
    let (st, out) = t.run(&runner, &["firstboot", "--stage", "final"]);
    assert_eq!(st, ExitStatus::Failure, "{out}");
    let fin: serde_json::Value =
        serde_json::from_str(&t.read("var/lib/bollwerk/firstboot/final.json")).unwrap();
    assert_eq!(fin["status"], "failed");
    assert!(fin["error"].as_str().unwrap().contains("apt-get"), "{fin}");
    assert_eq!(
        fin["failed_step"], "firstboot: refresh the package lists (package_update)",
        "{fin}"
    );
    assert!(t.exists("var/lib/bollwerk/firstboot/pending-final"));
    assert!(t.read("home/debian/.ssh/authorized_keys").contains(KEY));
    assert!(t.read("etc/passwd").contains("\ndebian:"));
    assert!(
        !t.exists("usr/sbin/policy-rc.d"),
        "the failed run was rolled back"
    );

    // Next boot: the instance is provisioned; only the pending steps are offered again.
    let (st, out, log) = firstboot(&t, &seed_path(&seed), &["--stage", "local"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("already provisioned"), "{out}");
    assert!(
        out.contains("package_update, package_upgrade wait for the network"),
        "{out}"
    );
    assert!(log.is_empty(), "{log:?}");
    let runner = fake_runner();
    let (st, out) = t.run(&runner, &["firstboot", "--stage", "final"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    let apt: Vec<String> = runner
        .log()
        .into_iter()
        .filter(|l| l.starts_with("/usr/bin/apt-get"))
        .collect();
    assert_eq!(apt.len(), 2, "{apt:?}");
    // An unreachable repository fails package_update (plain `apt-get update` exits 0).
    assert!(
        apt[0].ends_with(" -o APT::Update::Error-Mode=any update"),
        "{apt:?}"
    );
    assert!(apt[1].ends_with(" dist-upgrade"), "{apt:?}");
    assert!(!t.exists("var/lib/bollwerk/firstboot/pending-final"));
    let fin: serde_json::Value =
        serde_json::from_str(&t.read("var/lib/bollwerk/firstboot/final.json")).unwrap();
    assert_eq!(fin["status"], "done");
    // Nothing pending: the final stage has nothing to do.
    let (st, out) = t.run(&fake_runner(), &["firstboot", "--stage", "final"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.contains("nothing pending"), "{out}");
}

#[test]
fn package_installs_wait_for_the_network_in_the_local_stage() {
    let ud = format!(
        "#cloud-config\nssh_authorized_keys: ['{KEY}']\npackages: [tree]\npackage_update: true\n"
    );
    let t = image();
    t.write("usr/bin/apt-get", "");
    let seed = Seed::new("iid-pkg-local", &ud, None);
    let (st, out, log) = firstboot(&t, &seed_path(&seed), &["--stage", "local"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(!log.iter().any(|l| l.contains("apt-get")), "{log:?}");
    assert!(t.read("home/debian/.ssh/authorized_keys").contains(KEY));
    assert_eq!(
        t.read("var/lib/bollwerk/firstboot/pending-final"),
        "iid-pkg-local\npackages\npackage_update\n"
    );
    assert!(
        report_notes(&t).contains("package changes wait for the network"),
        "{}",
        report_notes(&t)
    );
    // The final stage installs them with the stored profile.
    let runner = fake_runner();
    runner.respond_with("/usr/bin/apt-get", fake_apt);
    let (st, out) = t.run(&runner, &["firstboot", "--stage", "final"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(
        runner
            .log()
            .iter()
            .any(|l| l.ends_with(" install --no-install-recommends tree")),
        "{:?}",
        runner.log()
    );
    assert!(t.read("var/lib/dpkg/status").contains("Package: tree\n"));
    assert!(!t.exists("var/lib/bollwerk/firstboot/pending-final"));
}

#[test]
fn a_failed_package_install_is_named_and_retried_on_the_next_boot() {
    let ud = format!("#cloud-config\nssh_authorized_keys: ['{KEY}']\npackages: [tree]\n");
    let t = image();
    t.write("usr/bin/apt-get", "");
    let seed = Seed::new("iid-pkg-fail", &ud, None);
    let (st, out, _) = firstboot(&t, &seed_path(&seed), &["--stage", "local"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    // The repository does not have the package (or could not be reached: `apt-get update`
    // only warns, the install fails).
    let runner = fake_runner();
    runner.respond_with("/usr/bin/apt-get", |_, cmd| bollwerk::exec::Output {
        code: if cmd.args.iter().any(|a| a == "install") {
            100
        } else {
            0
        },
        stdout: String::new(),
        stderr: "E: Unable to locate package tree\n".into(),
    });
    let (st, out) = t.run(&runner, &["firstboot", "--stage", "final"]);
    assert_eq!(st, ExitStatus::Failure, "{out}");
    let fin: serde_json::Value =
        serde_json::from_str(&t.read("var/lib/bollwerk/firstboot/final.json")).unwrap();
    assert_eq!(fin["status"], "failed");
    assert_eq!(
        fin["failed_step"], "packages: install tree (packages.install)",
        "{fin}"
    );
    assert_eq!(fin["steps"], serde_json::json!(["packages"]));
    assert!(t.read("home/debian/.ssh/authorized_keys").contains(KEY));
    assert_eq!(
        t.read("var/lib/bollwerk/firstboot/pending-final"),
        "iid-pkg-fail\npackages\n"
    );
    // Next boot, the repository back: only the install runs, and the pending file goes.
    let runner = fake_runner();
    runner.respond_with("/usr/bin/apt-get", fake_apt);
    let (st, out) = t.run(&runner, &["firstboot", "--stage", "final"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(t.read("var/lib/dpkg/status").contains("Package: tree\n"));
    assert!(!t.exists("var/lib/bollwerk/firstboot/pending-final"));
    let fin: serde_json::Value =
        serde_json::from_str(&t.read("var/lib/bollwerk/firstboot/final.json")).unwrap();
    assert_eq!(fin["status"], "done");
    assert!(fin["failed_step"].is_null(), "{fin}");
}

#[test]
fn the_audit_stage_fills_in_the_report() {
    let t = image();
    let seed = Seed::new("iid-audit", &toml_user_data(), None);
    let (st, out, _) = firstboot(&t, &seed_path(&seed), &[]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    // Not a live system: audited inline.
    let report: serde_json::Value =
        serde_json::from_str(&t.read("var/lib/bollwerk/firstboot/report.json")).unwrap();
    assert!(report["audit"]["score"].is_number(), "{report}");
    assert!(report["phases_ms"]["audit"].is_number(), "{report}");
    // As the local stage of a live system leaves it: the audit queued.
    let mut queued = report.clone();
    queued["audit"] = serde_json::json!({"queued": "bollwerk-firstboot-audit.service"});
    queued["phases_ms"]["audit"] = serde_json::json!(0);
    t.write(
        "var/lib/bollwerk/firstboot/report.json",
        &queued.to_string(),
    );
    std::fs::remove_file(t.path("var/lib/bollwerk/firstboot/audit.json")).unwrap();
    let (st, out) = t.run(&fake_runner(), &["firstboot", "--stage", "audit"]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(out.starts_with("firstboot (audit): score "), "{out}");
    let after: serde_json::Value =
        serde_json::from_str(&t.read("var/lib/bollwerk/firstboot/report.json")).unwrap();
    assert_eq!(after["audit"]["score"], report["audit"]["score"], "{after}");
    assert_eq!(
        after["audit"]["covered_failing"],
        report["audit"]["covered_failing"]
    );
    assert!(after["phases_ms"]["audit"].as_u64().unwrap() > 0, "{after}");
    assert_eq!(
        after["run_id"], report["run_id"],
        "the rest of the report stays"
    );
    assert!(t.exists("var/lib/bollwerk/firstboot/audit.json"));
}
