//! System tests in booted `systemd-nspawn` containers of the Debian 12 testbed rootfs, where
//! bollwerk runs as on a live host (`--root /`, systemd as PID 1):
//!
//! * without CAP_NET_ADMIN (`--network-namespace-path`, as an unprivileged LXC): the firewall
//!   and sysctl modules report that they cannot act, the run exits 0, nothing is half-applied;
//! * with it (`--private-network`): the firewall loads; `ssh_from` excluding the SSH client is
//!   refused; `apply --confirm` reverts to the previous ruleset when not confirmed in time,
//!   and keeps the new one after `bollwerk confirm`.
//!
//! The script runs inside the container as a oneshot unit, writes its log and a done-marker,
//! and powers the container off; the test then reads the results from the overlay.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::testbed::*;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPci/6iPPKNm3TqnlFNu0Zy6jtqtz5kw0YO3RjFH01v alice@laptop";

fn site(extra: &str) -> String {
    format!(
        "extends = \"baseline\"\n[[users]]\nname = \"deploy\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{KEY}\"]\n\n{extra}"
    )
}

const FW: &str = "[firewall]\nbackend = \"nftables\"\nallow = [\"443/tcp\"]\nlimit = [\"ssh\"]\n\n[sysctl]\npreset = \"cis\"\n";

/// How the container is networked.
enum Net {
    /// `--private-network`: own namespace, CAP_NET_ADMIN kept.
    Private,
    /// `--network-namespace-path`: a namespace the test made; nspawn drops CAP_NET_ADMIN.
    Joined(String),
}

/// A booted container; killed (and its namespace deleted) on drop.
struct Container {
    child: Child,
    netns: Option<String>,
}

impl Drop for Container {
    fn drop(&mut self) {
        let pid = self.child.id();
        if self.child.try_wait().ok().flatten().is_none() {
            // SIGTERM asks nspawn to power the container off; then make sure.
            let _ = Command::new("kill").arg(pid.to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && self.child.try_wait().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(ns) = &self.netns {
            let _ = run_capture(
                Command::new("ip").args(["netns", "del", ns]),
                None,
                Duration::from_secs(30),
            );
        }
    }
}

static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Boots `inst` with `script` as a oneshot unit, waits for it to finish (or `limit`), and
/// returns its log. The container is powered off and gone when this returns.
fn boot_and_run(inst: &Instance, net: Net, script: &str, limit: Duration) -> String {
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let machine = format!("bw-{}-{n}", std::process::id());
    inst.write(
        "/usr/local/sbin/bw-test",
        format!("#!/bin/sh\nexec >/root/bw-test.log 2>&1\n{script}\ntouch /root/bw-done\nsystemctl poweroff --no-block\n"),
    );
    std::fs::set_permissions(
        inst.path("/usr/local/sbin/bw-test"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    inst.write(
        "/etc/systemd/system/bw-test.service",
        "[Unit]\nDescription=bollwerk test script\nAfter=multi-user.target ssh.service\n[Service]\nType=oneshot\nExecStart=/usr/local/sbin/bw-test\nTimeoutStartSec=infinity\n[Install]\nWantedBy=multi-user.target\n",
    );
    let wants = inst.path("/etc/systemd/system/multi-user.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    let _ = std::fs::remove_file(wants.join("bw-test.service"));
    std::os::unix::fs::symlink(
        "/etc/systemd/system/bw-test.service",
        wants.join("bw-test.service"),
    )
    .unwrap();
    let _ = std::fs::remove_file(inst.path("/root/bw-done"));
    // The rootfs carries the build machine's hostname; the machine name is unique anyway.
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--pdeathsig",
        "KILL",
        "--",
        "systemd-nspawn",
        "--boot",
        "--register=no",
        "--keep-unit",
        "--quiet",
    ])
    .arg(format!("--machine={machine}"))
    .arg("-D")
    .arg(&inst.root)
    .arg(format!(
        "--bind-ro={}:/usr/local/sbin/bollwerk",
        bollwerk_bin().display()
    ));
    let netns = match net {
        Net::Private => {
            cmd.arg("--private-network");
            None
        }
        Net::Joined(ns) => {
            cmd.arg(format!("--network-namespace-path=/run/netns/{ns}"));
            Some(ns)
        }
    };
    let console = std::fs::File::create(inst.dir().join(format!("console-{n}.log"))).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(console.try_clone().unwrap())
        .stderr(console);
    let child = cmd.spawn().expect("systemd-nspawn");
    let mut c = Container { child, netns };
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && !inst.path("/root/bw-done").exists() {
        if c.child.try_wait().ok().flatten().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let done = inst.path("/root/bw-done").exists();
    // Give the poweroff a moment, then Drop makes sure.
    let stop = Instant::now() + Duration::from_secs(20);
    while Instant::now() < stop && c.child.try_wait().ok().flatten().is_none() {
        let console = std::fs::read_to_string(inst.dir().join(format!("console-{n}.log")))
            .unwrap_or_default();
        if console.contains("has been shut down") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(c);
    let log = std::fs::read_to_string(inst.path("/root/bw-test.log")).unwrap_or_default();
    assert!(
        done,
        "the test script did not finish within {limit:?}:\n{log}\n--- console ---\n{}",
        std::fs::read_to_string(inst.dir().join(format!("console-{n}.log"))).unwrap_or_default()
    );
    log
}

fn nspawn_or_skip(name: &str) -> Option<Testbed> {
    let tb = testbed_or_skip(name)?;
    if which("systemd-nspawn").is_none() {
        let msg = format!(
            "systemd-nspawn is not installed (tests/testbed/install-deps.sh); test: {name}"
        );
        if std::env::var("BOLLWERK_REQUIRE_SYSTEM_TESTS").as_deref() == Ok("1") {
            panic!("{msg}");
        }
        eprintln!("\n**********\nSKIPPED (system test): {msg}\n**********\n");
        return None;
    }
    Some(tb)
}

#[test]
fn without_cap_net_admin_firewall_and_sysctl_report_and_change_nothing() {
    let Some(tb) =
        nspawn_or_skip("without_cap_net_admin_firewall_and_sysctl_report_and_change_nothing")
    else {
        return;
    };
    let inst = tb.instance();
    inst.write("/root/profile.toml", site(FW));
    let ns = format!("{NETNS_PREFIX}{}-lxc", std::process::id());
    let out = run_capture(
        Command::new("ip").args(["netns", "add", &ns]),
        None,
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", describe(&out));
    let log = boot_and_run(
        &inst,
        Net::Joined(ns),
        "grep CapEff /proc/self/status\nbollwerk apply --profile /root/profile.toml\necho \"exit=$?\"\nnft list tables; echo \"nft=$?\"",
        Duration::from_secs(240),
    );
    assert!(log.contains("exit=0"), "the run exits cleanly:\n{log}");
    assert!(
        log.contains("the firewall cannot act here and is skipped, nothing changed"),
        "{log}"
    );
    assert!(
        log.contains("lacks CAP_NET_ADMIN inside a systemd-nspawn container"),
        "{log}"
    );
    assert!(
        !inst.path("/etc/nftables.d/bollwerk.nft").exists(),
        "no firewall file half-applied"
    );
    assert!(
        !inst.read("/etc/nftables.conf").contains("bollwerk"),
        "nftables.conf untouched"
    );
    assert!(
        !inst.path("/etc/sysctl.d/60-bollwerk.conf").exists(),
        "no sysctl key applies here:\n{log}"
    );
    // The rest of the profile did apply.
    assert!(
        inst.path("/etc/ssh/sshd_config.d/00-bollwerk.conf")
            .exists(),
        "{log}"
    );
}

#[test]
fn with_cap_net_admin_the_firewall_loads_and_confirm_reverts_unless_confirmed() {
    let Some(tb) = nspawn_or_skip(
        "with_cap_net_admin_the_firewall_loads_and_confirm_reverts_unless_confirmed",
    ) else {
        return;
    };
    let inst = tb.instance();
    inst.write("/root/profile.toml", site(FW));
    inst.write(
        "/root/wide.toml",
        site(&FW.replace(
            "allow = [\"443/tcp\"]",
            "allow = [\"443/tcp\", \"8080/tcp\"]",
        )),
    );
    inst.write(
        "/root/narrow.toml",
        site(&FW.replace("[firewall]\n", "[firewall]\nssh_from = [\"10.0.0.0/8\"]\n")),
    );
    let script = r#"
bollwerk apply --profile /root/profile.toml; echo "apply=$?"
nft list table inet bollwerk > /root/first.txt; echo "list=$?"
sysctl -n net.ipv4.tcp_syncookies net.ipv4.conf.all.log_martians
SSH_CONNECTION="198.51.100.9 50000 10.0.0.5 22" bollwerk apply --profile /root/narrow.toml; echo "narrow=$?"
bollwerk apply --confirm 4s --profile /root/wide.toml; echo "confirm-apply=$?"
nft list table inet bollwerk > /root/during.txt
sleep 12
nft list table inet bollwerk > /root/reverted.txt; echo "reverted-list=$?"
bollwerk apply --confirm 4s --profile /root/wide.toml; echo "confirm-apply2=$?"
bollwerk confirm; echo "confirm=$?"
sleep 10
nft list table inet bollwerk > /root/kept.txt
bollwerk runs
"#;
    let log = boot_and_run(&inst, Net::Private, script, Duration::from_secs(300));
    assert!(log.contains("apply=0"), "{log}");
    assert!(log.contains("list=0"), "the firewall is loaded:\n{log}");
    let first = inst.read("/root/first.txt");
    assert!(
        first.contains("tcp dport 22 accept") && first.contains("tcp dport 443 accept"),
        "{first}"
    );
    assert!(
        log.contains("1\n1\n"),
        "net.* sysctls applied live in the container's namespace:\n{log}"
    );
    // An SSH client outside ssh_from: refused, exit 2.
    assert!(log.contains("narrow=2"), "{log}");
    assert!(
        log.contains("your SSH session comes from 198.51.100.9"),
        "{log}"
    );
    // Not confirmed: the previous ruleset comes back by itself.
    assert!(log.contains("confirm-apply=0"), "{log}");
    assert!(log.contains("run `bollwerk confirm` before"), "{log}");
    assert!(
        inst.read("/root/during.txt")
            .contains("tcp dport 8080 accept"),
        "{log}"
    );
    let reverted = inst.read("/root/reverted.txt");
    assert!(log.contains("reverted-list=0"), "{log}");
    assert!(!reverted.contains("8080"), "reverted:\n{reverted}\n{log}");
    assert!(reverted.contains("tcp dport 443 accept"), "{reverted}");
    // Confirmed: the new ruleset stays.
    assert!(
        log.contains("confirm-apply2=0") && log.contains("confirm=0"),
        "{log}"
    );
    assert!(
        inst.read("/root/kept.txt")
            .contains("tcp dport 8080 accept"),
        "{log}"
    );
    assert!(inst.read("/etc/nftables.d/bollwerk.nft").contains("8080"));
}
