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

fn seed_path(s: &Seed) -> PathBuf {
    s.path().to_path_buf()
}

#[test]
fn proxmox_cloud_config_provisions_once() {
    let t = image();
    let seed = Seed::new("iid-pve-1", &proxmox_user_data(), Some(NETWORK_V1));
    let (st, out, log) = firstboot(&t, &seed_path(&seed), &[]);
    assert_eq!(st, ExitStatus::Ok, "{out}");
    assert!(
        out.contains("firstboot: instance iid-pve-1 from NoCloud"),
        "{out}"
    );
    assert!(
        out.contains("warning: package_upgrade: not supported until the packages module exists"),
        "unsupported keys are listed, never silently ignored: {out}"
    );
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
