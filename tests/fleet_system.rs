//! Fleet system test: Debian's `ansible-playbook` runs the collection in `ansible/` (role
//! `bollwerk.host.bollwerk`, modules `bollwerk_apply` / `bollwerk_audit`) against three hosts,
//! each a fresh copy of the Debian 12 testbed root, and `bollwerk report merge` renders the
//! fetched reports.
//!
//! Two ways to reach the hosts:
//!
//! * `playbook_check_apply_idempotent_refusal_reports_merge`: Ansible's `local` connection and
//!   the role's `bollwerk_root` (bollwerk's `--root`): every change lands in the test's overlay
//!   roots, nothing on this machine (binary, profile, reports live in the test's temp dir);
//!   `apply --confirm` needs a live host and is off there.
//! * `playbook_over_ssh_to_booted_containers`: live hosts. Each is an overlay copy of the
//!   testbed root booted with `systemd-nspawn --boot` (systemd as PID 1, its own sshd) in a
//!   network namespace of its own (`bw-<pid>-f<n>`), joined by a veth pair with its own /30 to a
//!   controller namespace (`bw-<pid>-fc`) in which `ansible-playbook` runs and logs in as
//!   `admin` with a key (`become` through sudo). Nothing is added to this machine's own network
//!   namespace; the containers get `CAP_NET_ADMIN` for their own namespace only (the firewall
//!   they load). There the role runs `apply --confirm` and confirms over a new connection; a
//!   change that moves sshd to another port (which the lockout guard cannot call a lockout)
//!   makes that connection fail, and the host restores itself at the deadline.
//!
//! Proven (local connection): the binary is installed from the release-style tarball with its checksum (and a
//! wrong checksum is refused); check mode shows bollwerk's unified diffs and changes nothing;
//! the first run applies, the second reports `changed=0` on every host; a host whose profile
//! would lock the admin out fails with bollwerk's refusal text and is left unchanged; the
//! reports end up on the controller and `report merge` renders them. `ansible-lint` is clean.
//!
//! Proven over SSH (3 booted containers): check mode shows the diffs and writes nothing; the
//! first run applies and confirms over a new connection on every host (no pending confirmation,
//! no revert timer left); the second run reports `changed=0` everywhere; a profile that would
//! lock the admin out is refused with bollwerk's text and the host is unchanged; a change that
//! cuts the host off is not confirmed and is reverted by the host's own timer; the fetched
//! reports of the three hosts are merged.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::testbed::*;

fn ansible_ok() -> bool {
    ["ansible-playbook", "ansible-lint"]
        .iter()
        .all(|t| which(t).is_some())
}

fn skip_without_ansible(test: &str) -> bool {
    if ansible_ok() {
        return false;
    }
    let msg = format!(
        "SKIPPED {test}: ansible-playbook / ansible-lint missing (apt-get install ansible ansible-lint)"
    );
    eprintln!("{msg}");
    assert!(
        std::env::var("BOLLWERK_REQUIRE_SYSTEM_TESTS").as_deref() != Ok("1"),
        "{msg}"
    );
    true
}

fn collection_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ansible")
}

/// `<tmp>/collections/ansible_collections/bollwerk/host` → the repository's `ansible/`.
fn collections_path(tmp: &Path) -> PathBuf {
    let c = tmp.join("collections");
    let ns = c.join("ansible_collections/bollwerk");
    std::fs::create_dir_all(&ns).unwrap();
    let link = ns.join("host");
    if !link.exists() {
        std::os::unix::fs::symlink(collection_dir(), &link).unwrap();
    }
    c
}

fn ansible_env(cmd: &mut Command, tmp: &Path) {
    cmd.env("ANSIBLE_COLLECTIONS_PATH", collections_path(tmp))
        .env("ANSIBLE_COLLECTIONS_PATHS", collections_path(tmp))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
        .env("ANSIBLE_LOCAL_TEMP", tmp.join("ansible-local"))
        .env("ANSIBLE_REMOTE_TEMP", tmp.join("ansible-remote"))
        .env("ANSIBLE_HOME", tmp.join("ansible-home"))
        .env("ANSIBLE_PYTHON_INTERPRETER", "/usr/bin/python3")
        .env("ANSIBLE_STDOUT_CALLBACK", "default")
        .env("ANSIBLE_DEPRECATION_WARNINGS", "0")
        .env("HOME", tmp.join("home"))
        .current_dir(tmp);
}

#[test]
fn ansible_lint_is_clean() {
    if skip_without_ansible("ansible_lint_is_clean") {
        return;
    }
    let tmp = TempDir::new("fleet-lint");
    let mut c = Command::new("ansible-lint");
    c.args(["-p", "--offline"]);
    ansible_env(&mut c, tmp.path());
    c.current_dir(collection_dir());
    let out = run_capture(&mut c, None, DEFAULT_TIMEOUT);
    assert!(out.status.success(), "ansible-lint:\n{}", describe(&out));
}

/// A tarball with the release's layout (`cargo xtask dist`: `bollwerk-<ver>/usr/sbin/bollwerk`) of
/// the binary under test, and its sha256.
fn tarball(tmp: &Path) -> (PathBuf, String) {
    tarball_of(tmp, &bollwerk_bin())
}

/// [`tarball`] of `bin`.
fn tarball_of(tmp: &Path, bin: &Path) -> (PathBuf, String) {
    let ver = env!("CARGO_PKG_VERSION");
    let stage = tmp.join(format!("stage/bollwerk-{ver}"));
    std::fs::create_dir_all(stage.join("usr/sbin")).unwrap();
    std::fs::copy(bin, stage.join("usr/sbin/bollwerk")).unwrap();
    let tgz = tmp.join(format!("bollwerk-{ver}-x86_64-linux-musl.tar.gz"));
    let out = run_capture(
        Command::new("tar")
            .arg("-C")
            .arg(tmp.join("stage"))
            .arg("-czf")
            .arg(&tgz)
            .arg(format!("bollwerk-{ver}")),
        None,
        DEFAULT_TIMEOUT,
    );
    assert!(out.status.success(), "{}", describe(&out));
    let out = run_capture(Command::new("sha256sum").arg(&tgz), None, DEFAULT_TIMEOUT);
    let sum = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    (tgz, sum)
}

struct Fleet {
    tmp: TempDir,
    inventory: PathBuf,
    playbook: PathBuf,
}

/// Writes the inventory: one local host per (name, root, profile TOML extra), all state of
/// the role under `<tmp>/<name>/`.
fn fleet(hosts: &[(&str, &Path, String)], sha: Option<&str>) -> Fleet {
    let tmp = TempDir::new("fleet-ansible");
    let (tgz, sum) = tarball(tmp.path());
    let mut inv = String::from("all:\n  children:\n    bollwerk:\n      hosts:\n");
    for (name, root, users) in hosts {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        inv.push_str(&format!(
            "        {name}:\n          ansible_connection: local\n          bollwerk_root: {root}\n          bollwerk_install_dir: {d}/opt\n          bollwerk_link: {d}/bin/bollwerk\n          bollwerk_profile_path: {d}/etc/site.toml\n          bollwerk_audit_report: {d}/audit.json\n          bollwerk_hostname: {name}\n{users}",
            root = root.display(),
            d = d.display()
        ));
        std::fs::create_dir_all(d.join("bin")).unwrap();
    }
    inv.push_str(&format!(
        "      vars:\n        bollwerk_tarball: {}\n        bollwerk_sha256: \"{}\"\n        bollwerk_confirm: \"\"\n        bollwerk_reports_dir: {}/reports\n        bollwerk_extends: baseline\n",
        tgz.display(),
        sha.unwrap_or(&sum),
        tmp.path().display()
    ));
    let inventory = tmp.path().join("inventory.yml");
    std::fs::write(&inventory, inv).unwrap();
    let playbook = tmp.path().join("site.yml");
    std::fs::copy(collection_dir().join("playbooks/site.yml"), &playbook).unwrap();
    Fleet {
        tmp,
        inventory,
        playbook,
    }
}

impl Fleet {
    fn play(&self, extra: &[&str]) -> (Output, Duration) {
        let mut c = Command::new("ansible-playbook");
        c.arg("-i")
            .arg(&self.inventory)
            .arg(&self.playbook)
            .args(extra);
        ansible_env(&mut c, self.tmp.path());
        let t = Instant::now();
        let out = run_capture(&mut c, None, Duration::from_secs(900));
        (out, t.elapsed())
    }
}

/// `name : ok=… changed=N …` of the PLAY RECAP.
fn recap(out: &Output, host: &str) -> (u32, u32) {
    let s = String::from_utf8_lossy(&out.stdout);
    let line = s
        .lines()
        .skip_while(|l| !l.starts_with("PLAY RECAP"))
        .find(|l| l.split_whitespace().next() == Some(host))
        .unwrap_or_else(|| panic!("no recap for {host}:\n{s}"));
    let field = |k: &str| -> u32 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(u32::MAX)
    };
    (field("changed"), field("failed"))
}

fn admin(pubkey: &str) -> String {
    format!(
        "          bollwerk_users:\n            - name: admin\n              groups: [sudo]\n              sudo: nopasswd\n              ssh_keys: [\"{pubkey}\"]\n"
    )
}

#[test]
fn playbook_check_apply_idempotent_refusal_reports_merge() {
    if skip_without_ansible("playbook_check_apply_idempotent_refusal_reports_merge") {
        return;
    }
    let Some(tb) = testbed_or_skip("playbook_check_apply_idempotent_refusal_reports_merge") else {
        return;
    };
    let keys = TempDir::new("fleet-keys");
    let (_key, pubkey) = keypair(keys.path(), "admin");
    let (web1, web2, locked) = (tb.instance(), tb.instance(), tb.instance());
    let hosts = [
        ("web1", web1.root.as_path(), admin(&pubkey)),
        ("web2", web2.root.as_path(), admin(&pubkey)),
        // No admin user: baseline turns off password and root logins, so bollwerk refuses.
        ("locked", locked.root.as_path(), String::new()),
    ];

    // A wrong checksum is refused before anything is copied.
    let bad = fleet(&hosts[..1], Some(&"0".repeat(64)));
    let (out, _) = bad.play(&["--tags", "bollwerk_install"]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is not 0000"),
        "{}",
        describe(&out)
    );
    assert!(
        !bad.tmp
            .path()
            .join("web1/opt/0.1.0/usr/sbin/bollwerk")
            .exists()
    );

    let f = fleet(&hosts, None);
    let ver = env!("CARGO_PKG_VERSION");
    // Install only: one copy per version, the tarball copy removed, the link set.
    let (out, t_install) = f.play(&["--tags", "bollwerk_install"]);
    assert!(out.status.success(), "{}", describe(&out));
    for (h, ..) in &hosts {
        let d = f.tmp.path().join(h);
        assert!(
            d.join(format!("opt/{ver}/usr/sbin/bollwerk")).is_file(),
            "{h}"
        );
        assert!(!d.join(format!("opt/{ver}.tar.gz")).exists(), "{h}");
        assert_eq!(
            std::fs::read_link(d.join("bin/bollwerk")).unwrap(),
            d.join(format!("opt/{ver}/usr/sbin/bollwerk"))
        );
    }

    // Check mode: bollwerk's diffs, nothing changed in any root.
    let before: Vec<String> = [&web1, &web2, &locked]
        .iter()
        .map(|i| tree_state(&i.root))
        .collect();
    let (out, _) = f.play(&["--check", "--diff", "--limit", "web1,web2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout.contains("+PermitRootLogin no") || stdout.contains("+permitrootlogin no"),
        "unified diffs shown:\n{stdout}"
    );
    assert!(stdout.contains("--- "), "{stdout}");
    for (i, inst) in [&web1, &web2].iter().enumerate() {
        assert_eq!(
            tree_state(&inst.root),
            before[i],
            "check mode changed a root"
        );
    }

    // First run: applies on web1 and web2; `locked` fails with the refusal, unchanged.
    let (out, t_first) = f.play(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "the locked host fails the run");
    for h in ["web1", "web2"] {
        let (changed, failed) = recap(&out, h);
        assert!(
            changed > 0 && failed == 0,
            "{h}: changed={changed} failed={failed}\n{stdout}"
        );
    }
    let (_, failed) = recap(&out, "locked");
    assert_eq!(failed, 1, "{stdout}");
    assert!(stdout.contains("bollwerk refused:"), "{stdout}");
    assert!(stdout.contains("nothing was changed"), "{stdout}");
    assert_eq!(
        tree_state(&locked.root),
        before[2],
        "the refused host is unchanged"
    );
    let out2 = Command::new(bollwerk_bin())
        .args(["--root"])
        .arg(&web1.root)
        .args(["plan", "--profile"])
        .arg(f.tmp.path().join("web1/etc/site.toml"))
        .output()
        .unwrap();
    assert_eq!(
        out2.status.code(),
        Some(0),
        "web1 converged: {}",
        describe(&out2)
    );
    assert_eq!(
        std::fs::read_to_string(web1.root.join("etc/hostname"))
            .unwrap()
            .trim(),
        "web1"
    );

    // Second run: changed=0 everywhere it applied.
    let (out, t_second) = f.play(&["--limit", "web1,web2"]);
    assert!(out.status.success(), "{}", describe(&out));
    let second = String::from_utf8_lossy(&out.stdout).into_owned();
    for h in ["web1", "web2"] {
        assert_eq!(
            recap(&out, h),
            (0, 0),
            "{h}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // Reports on the controller; `report merge` renders them.
    let reports = f.tmp.path().join("reports");
    let files: Vec<String> = ["web1", "web2"]
        .iter()
        .map(|h| reports.join(format!("{h}.json")).display().to_string())
        .collect();
    for f in &files {
        assert!(Path::new(f).is_file(), "{f} fetched:\n{second}");
    }
    let html = f.tmp.path().join("fleet.html");
    let mut c = Command::new(bollwerk_bin());
    c.args(["report", "merge", "--format", "html", "--output"])
        .arg(&html)
        .args(&files);
    let out = run_capture(&mut c, None, DEFAULT_TIMEOUT);
    assert!(out.status.success(), "{}", describe(&out));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Fleet compliance — 2 hosts"), "{page}");
    let mut c = Command::new(bollwerk_bin());
    c.args(["report", "merge", "--format", "json"]).args(&files);
    let out = run_capture(&mut c, None, DEFAULT_TIMEOUT);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"web1") && names.contains(&"web2"),
        "{names:?}"
    );
    eprintln!(
        "fleet timings (3 hosts, local connection): install {:.1}s, first run {:.1}s, second run (2 hosts) {:.1}s",
        t_install.as_secs_f64(),
        t_first.as_secs_f64(),
        t_second.as_secs_f64()
    );
}

/// Benchmark (ignored by default): wall time of a full playbook run (install, apply, audit,
/// fetch) for 1 and for 3 hosts, and how it grows.
/// `cargo test --release --test fleet_system -- --ignored --nocapture bench`
#[test]
#[ignore]
fn bench_fleet_run_1_and_3_hosts() {
    if skip_without_ansible("bench_fleet_run_1_and_3_hosts") {
        return;
    }
    let Some(tb) = testbed_or_skip("bench_fleet_run_1_and_3_hosts") else {
        return;
    };
    let keys = TempDir::new("fleet-bench-keys");
    let (_key, pubkey) = keypair(keys.path(), "admin");
    let mut secs = Vec::new();
    for n in [1usize, 3] {
        let insts: Vec<_> = (0..n).map(|_| tb.instance()).collect();
        let names: Vec<String> = (1..=n).map(|i| format!("web{i}")).collect();
        let hosts: Vec<(&str, &Path, String)> = names
            .iter()
            .zip(&insts)
            .map(|(h, i)| (h.as_str(), i.root.as_path(), admin(&pubkey)))
            .collect();
        let f = fleet(&hosts, None);
        let (out, t) = f.play(&[]);
        assert!(out.status.success(), "{}", describe(&out));
        let (out2, t2) = f.play(&[]);
        assert!(out2.status.success(), "{}", describe(&out2));
        eprintln!(
            "BENCH fleet run, {n} host(s): first run {:.1} s, second (no changes) {:.1} s",
            t.as_secs_f64(),
            t2.as_secs_f64()
        );
        secs.push((t.as_secs_f64(), t2.as_secs_f64()));
    }
    eprintln!(
        "BENCH fleet run growth 1 → 3 hosts: first run ×{:.2}, second run ×{:.2} (Ansible forks 5: hosts run in parallel)",
        secs[1].0 / secs[0].0,
        secs[1].1 / secs[0].1
    );
}

// ---------------------------------------------------------------------------------------------
// Booted containers reached over SSH
// ---------------------------------------------------------------------------------------------

/// How long one container may take from `systemd-nspawn --boot` until its sshd lets the admin in.
const BOOT_TIMEOUT: Duration = Duration::from_secs(180);

/// A network namespace the test created (`bw-<pid>-<tag>`, so the harness and
/// tests/testbed/cleanup.sh remove it when this process is gone); `lo` up; deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("{NETNS_PREFIX}{}-{tag}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let out = run_capture(
            Command::new("ip").args(["netns", "del", &self.0]),
            None,
            Duration::from_secs(30),
        );
        if !out.status.success() {
            eprintln!("fleet: ip netns del {}: {}", self.0, describe(&out));
        }
    }
}

/// `ip ARGS`, panicking unless it succeeds.
fn ip(args: &[&str]) {
    let out = run_capture(Command::new("ip").args(args), None, Duration::from_secs(30));
    assert!(out.status.success(), "ip {args:?}:\n{}", describe(&out));
}

/// One host of the fleet: a copy of the testbed root booted with `systemd-nspawn --boot` in its
/// own network namespace, joined to the controller's namespace by a veth pair
/// (controller `10.77.<n>.1/30`, host `10.77.<n>.2/30` on `host0`).
///
/// Drop: SIGTERM to systemd-nspawn (an orderly poweroff of the container, SIGRTMIN+3 to its
/// init), SIGKILL after 30 s; then the overlay is unmounted and the namespace deleted (field
/// order). nspawn runs under `setpriv --pdeathsig KILL`, so it also dies with the test thread.
struct Booted {
    name: String,
    addr: String,
    child: std::process::Child,
    log: PathBuf,
    inst: Instance,
    _ns: Netns,
}

impl Booted {
    /// Prepares the copy (an `admin` with sudo and `pubkey`, as a provider's image has) and
    /// starts it; does not wait for the boot ([`Booted::wait_ssh`]).
    fn start(tb: &Testbed, ctrl: &Netns, n: u8, pubkey: &str) -> Booted {
        let name = format!("web{n}");
        let inst = tb.instance();
        let sh = format!(
            "set -e; useradd -m -s /bin/bash -G sudo admin; install -d -m 0700 -o admin -g admin /home/admin/.ssh; \
             printf '%s\\n' '{pubkey}' > /home/admin/.ssh/authorized_keys; \
             chown admin:admin /home/admin/.ssh/authorized_keys; chmod 0600 /home/admin/.ssh/authorized_keys; \
             printf 'admin ALL=(ALL) NOPASSWD:ALL\\n' > /etc/sudoers.d/90-admin; chmod 0440 /etc/sudoers.d/90-admin"
        );
        inst.sh_ok(&sh);

        let ns = Netns::new(&format!("f{n}"));
        let veth = format!("bwf{n}");
        ip(&[
            "-n", &ctrl.0, "link", "add", &veth, "type", "veth", "peer", "name", "host0", "netns",
            &ns.0,
        ]);
        ip(&[
            "-n",
            &ctrl.0,
            "addr",
            "add",
            &format!("10.77.{n}.1/30"),
            "dev",
            &veth,
        ]);
        ip(&["-n", &ctrl.0, "link", "set", &veth, "up"]);
        let addr = format!("10.77.{n}.2");
        ip(&[
            "-n",
            &ns.0,
            "addr",
            "add",
            &format!("{addr}/30"),
            "dev",
            "host0",
        ]);
        ip(&["-n", &ns.0, "link", "set", "host0", "up"]);

        let log = inst.dir().join("nspawn.log");
        let logfile = std::fs::File::create(&log).unwrap();
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--", "systemd-nspawn", "--boot"])
            .args(["--register=no", "--keep-unit", "--quiet"])
            // Its own network namespace: the firewall it loads is the container's alone.
            .arg("--capability=CAP_NET_ADMIN")
            .arg(format!("--network-namespace-path=/run/netns/{}", ns.0))
            .arg(format!("--machine={name}"))
            .arg("-D")
            .arg(&inst.root)
            .stdin(std::process::Stdio::null())
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile)
            .spawn()
            .expect("start systemd-nspawn");
        Booted {
            name,
            addr,
            child,
            log,
            inst,
            _ns: ns,
        }
    }

    /// `ssh admin@<addr> CMD` from the controller's namespace with `key`.
    fn ssh(&self, ctrl: &Netns, key: &Path, cmd: &str) -> Output {
        self.ssh_port(ctrl, key, 22, cmd)
    }

    /// [`Booted::ssh`] to `port`.
    fn ssh_port(&self, ctrl: &Netns, key: &Path, port: u16, cmd: &str) -> Output {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &ctrl.0, "ssh", "-F", "/dev/null"])
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .args(["-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes", "-p"])
            .arg(port.to_string())
            .arg("-i")
            .arg(key)
            .arg(format!("admin@{}", self.addr))
            .arg(cmd);
        run_capture(&mut c, None, SSH_TIMEOUT)
    }

    /// Waits until the admin logs in with `key` and systemd has finished booting.
    fn wait_ssh(&mut self, ctrl: &Netns, key: &Path, started: Instant) {
        loop {
            let out = self.ssh(ctrl, key, "systemctl is-system-running --wait");
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "{}: systemd-nspawn exited ({st}):\n{}",
                    self.name,
                    self.log()
                );
            }
            assert!(
                started.elapsed() < BOOT_TIMEOUT,
                "{}: no SSH login within {BOOT_TIMEOUT:?}: {}\nnspawn log:\n{}",
                self.name,
                describe(&out),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                _ => {
                    eprintln!("fleet: {} did not power off in 30 s, killing it", self.name);
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
    }
}

/// The inventory for the booted hosts: SSH as `admin` with `key`, `become` through sudo, no
/// `bollwerk_root` (so `apply --confirm` with the confirmation over a new connection).
fn ssh_inventory(tmp: &Path, hosts: &[Booted], key: &Path, pubkey: &str) -> PathBuf {
    // The debug build is ~200 MB, most of it symbols and debug info: ship it stripped, as a release is.
    let bin = tmp.join("bollwerk-stripped");
    let out = run_capture(
        Command::new("strip")
            .arg("-o")
            .arg(&bin)
            .arg(bollwerk_bin()),
        None,
        DEFAULT_TIMEOUT,
    );
    assert!(out.status.success(), "strip: {}", describe(&out));
    let (tgz, sum) = tarball_of(tmp, &bin);
    let mut inv = String::from("all:\n  children:\n    bollwerk:\n      hosts:\n");
    for h in hosts {
        inv.push_str(&format!(
            "        {}:\n          ansible_host: {}\n          bollwerk_hostname: {}\n",
            h.name, h.addr, h.name
        ));
    }
    inv.push_str(&format!(
        "      vars:\n        ansible_connection: ssh\n        ansible_user: admin\n        ansible_ssh_private_key_file: {key}\n        ansible_ssh_common_args: \"-o StrictHostKeyChecking=no -o UserKnownHostsFile={kh} -o ConnectTimeout=10\"\n        bollwerk_tarball: {tgz}\n        bollwerk_sha256: \"{sum}\"\n        bollwerk_confirm: 120s\n        bollwerk_reports_dir: {reports}\n        bollwerk_extends: baseline\n{users}",
        key = key.display(),
        kh = tmp.join("known_hosts").display(),
        tgz = tgz.display(),
        reports = tmp.join("reports").display(),
        users = admin(pubkey).replace("\n          ", "\n        ").replacen("          ", "        ", 1),
    ));
    let path = tmp.join("inventory.yml");
    std::fs::write(&path, inv).unwrap();
    path
}

/// `ansible-playbook` in the controller's namespace.
fn play_in(ctrl: &Netns, tmp: &Path, inventory: &Path, extra: &[&str]) -> (Output, Duration) {
    let playbook = tmp.join("site.yml");
    if !playbook.exists() {
        std::fs::copy(collection_dir().join("playbooks/site.yml"), &playbook).unwrap();
    }
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &ctrl.0, "ansible-playbook", "-i"])
        .arg(inventory)
        .arg(&playbook)
        .args(extra);
    ansible_env(&mut c, tmp);
    c.env("ANSIBLE_HOST_KEY_CHECKING", "False");
    let t = Instant::now();
    let out = run_capture(&mut c, None, Duration::from_secs(900));
    (out, t.elapsed())
}

/// The host names Ansible reported `changed` for in the task named `task`.
fn task_changed(out: &Output, task: &str) -> Vec<String> {
    let s = String::from_utf8_lossy(&out.stdout);
    s.split("TASK [")
        .filter(|b| b.split(']').next().is_some_and(|t| t.ends_with(task)))
        .flat_map(|b| {
            b.lines()
                .filter_map(|l| l.strip_prefix("changed: ["))
                .map(|l| l.split(']').next().unwrap_or("").to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The Done-when of issue 15 on live hosts: three booted nspawn containers of the testbed root,
/// each in its own network namespace joined to the controller's by veth, sshd started by their
/// systemd, reached over SSH with a key by Debian's `ansible-playbook` run in the controller's
/// namespace. Check mode changes nothing; the first run applies with `apply --confirm` and
/// confirms over a new connection (no revert timer and no pending confirmation is left);
/// the second run reports `changed=0` on every host; the reports are fetched and merged.
#[test]
fn playbook_over_ssh_to_booted_containers() {
    const NAME: &str = "playbook_over_ssh_to_booted_containers";
    if skip_without_ansible(NAME) {
        return;
    }
    let Some(tb) = testbed_or_skip(NAME) else {
        return;
    };
    if which("systemd-nspawn").is_none() {
        let msg =
            format!("SKIPPED {NAME}: systemd-nspawn missing (apt-get install systemd-container)");
        eprintln!("{msg}");
        assert!(
            std::env::var("BOLLWERK_REQUIRE_SYSTEM_TESTS").as_deref() != Ok("1"),
            "{msg}"
        );
        return;
    }
    let tmp = TempDir::new("fleet-ssh");
    let (key, pubkey) = keypair(tmp.path(), "admin");
    let ctrl = Netns::new("fc");
    let t_boot = Instant::now();
    // Spawned from this thread (pdeathsig), booting concurrently.
    let mut hosts: Vec<Booted> = (1..=3)
        .map(|n| Booted::start(&tb, &ctrl, n, &pubkey))
        .collect();
    for h in &mut hosts {
        h.wait_ssh(&ctrl, &key, t_boot);
    }
    let t_boot = t_boot.elapsed();
    let inventory = ssh_inventory(tmp.path(), &hosts, &key, &pubkey);
    let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();

    // Ship the binary first (as docs/fleet.md says): check mode plans with it.
    let (out, t_install) = play_in(
        &ctrl,
        tmp.path(),
        &inventory,
        &["--tags", "bollwerk_install"],
    );
    assert!(out.status.success(), "{}", describe(&out));

    // Check mode: bollwerk's diffs over SSH, nothing written on any host.
    let sshd_before: Vec<String> = hosts
        .iter()
        .map(|h| h.inst.read("/etc/ssh/sshd_config"))
        .collect();
    let (out, t_check) = play_in(&ctrl, tmp.path(), &inventory, &["--check", "--diff"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(stdout.contains("--- "), "unified diffs shown:\n{stdout}");
    for (h, before) in hosts.iter().zip(&sshd_before) {
        assert_eq!(&h.inst.read("/etc/ssh/sshd_config"), before, "{}", h.name);
        assert!(
            !h.inst.path("/etc/bollwerk/site.toml").exists(),
            "{}",
            h.name
        );
        assert_ne!(h.inst.read("/etc/hostname").trim(), h.name);
    }

    // First run: install, apply --confirm, confirm over a new connection, audit, fetch.
    let (out, t_first) = play_in(&ctrl, tmp.path(), &inventory, &[]);
    let first = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", describe(&out));
    let mut confirmed = task_changed(&out, "Confirm over a new connection");
    confirmed.sort();
    assert_eq!(confirmed, names, "confirmed on every host:\n{first}");
    for h in &hosts {
        let (changed, failed) = recap(&out, &h.name);
        assert!(
            changed > 0 && failed == 0,
            "{}: changed={changed} failed={failed}\n{first}",
            h.name
        );
        assert_eq!(h.inst.read("/etc/hostname").trim(), h.name);
        assert!(
            !h.inst
                .path("/var/lib/bollwerk/confirm/pending.json")
                .exists(),
            "{}: the confirmation is still pending",
            h.name
        );
        let timers = h.ssh(
            &ctrl,
            &key,
            "systemctl list-units --all --no-legend --plain 'bollwerk*'",
        );
        assert!(timers.status.success(), "{}", describe(&timers));
        assert!(
            !String::from_utf8_lossy(&timers.stdout).contains(".timer"),
            "{}: a revert timer is left: {}",
            h.name,
            describe(&timers)
        );
        // The admin still gets in over a fresh connection and may use sudo.
        let o = h.ssh(&ctrl, &key, "sudo -n true");
        assert!(
            o.status.success(),
            "{}: admin login after apply: {}",
            h.name,
            describe(&o)
        );
    }

    // Second run: nothing to change anywhere (also proves nothing was reverted meanwhile).
    let (out, t_second) = play_in(&ctrl, tmp.path(), &inventory, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    for h in &hosts {
        assert_eq!(
            recap(&out, &h.name),
            (0, 0),
            "{}:\n{}",
            h.name,
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // The reports on the controller; `report merge` renders them.
    let files: Vec<PathBuf> = names
        .iter()
        .map(|h| tmp.path().join(format!("reports/{h}.json")))
        .collect();
    for f in &files {
        assert!(f.is_file(), "{} fetched", f.display());
    }
    let html = tmp.path().join("fleet.html");
    let mut c = Command::new(bollwerk_bin());
    c.args(["report", "merge", "--format", "html", "--output"])
        .arg(&html)
        .args(&files);
    let out = run_capture(&mut c, None, DEFAULT_TIMEOUT);
    assert!(out.status.success(), "{}", describe(&out));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Fleet compliance — 3 hosts"), "{page}");

    // A profile that would lock the admin out: bollwerk refuses over SSH, the host is unchanged.
    let web1 = &hosts[0];
    let ssh_dir = |h: &Booted| tree_state(&h.inst.path("/etc/ssh"));
    let before = (ssh_dir(web1), web1.inst.read("/etc/passwd"));
    let (out, t_refused) = play_in(
        &ctrl,
        tmp.path(),
        &inventory,
        &[
            "--limit",
            "web1",
            "-e",
            r#"{"bollwerk_profile_extra": "[ssh]\ndeny_users = [\"admin\"]"}"#,
        ],
    );
    let refused = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{refused}");
    assert_eq!(recap(&out, "web1").1, 1, "{refused}");
    assert!(refused.contains("bollwerk refused:"), "{refused}");
    assert!(refused.contains("nothing was changed"), "{refused}");
    assert_eq!(
        (ssh_dir(web1), web1.inst.read("/etc/passwd")),
        before,
        "web1 unchanged"
    );
    assert!(web1.ssh(&ctrl, &key, "true").status.success());

    // A change that cuts the host off where the lockout guard cannot see it (sshd moves to
    // port 2222; the admin keeps a key login there): the confirmation over a new connection
    // to port 22 fails, nobody confirms, and the host restores itself at the deadline.
    let web3 = &hosts[2];
    let (out, t_cut) = play_in(
        &ctrl,
        tmp.path(),
        &inventory,
        &[
            "--limit",
            "web3",
            "-e",
            r#"{"bollwerk_confirm": "20s", "bollwerk_profile_extra": "[ssh]\nport = 2222"}"#,
        ],
    );
    let cut = String::from_utf8_lossy(&out.stdout).into_owned();
    let t_cut_end = Instant::now();
    assert!(
        !out.status.success(),
        "the cut-off host fails the run:\n{cut}"
    );
    assert_eq!(
        task_changed(&out, "Plan (check mode) or apply the profile"),
        ["web3"],
        "applied:\n{cut}"
    );
    assert!(
        cut.contains("UNREACHABLE!"),
        "the new connection fails:\n{cut}"
    );
    assert!(
        task_changed(&out, "Confirm over a new connection").is_empty(),
        "{cut}"
    );
    let pending = web3.inst.path("/var/lib/bollwerk/confirm/pending.json");
    // Until the deadline, the admin gets in on the new port only (a login confirms nothing).
    assert!(pending.exists(), "web3: no pending confirmation:\n{cut}");
    let o = web3.ssh_port(&ctrl, &key, 2222, "sudo -n sshd -T | grep -i '^port '");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "port 2222",
        "web3 before the deadline: {}",
        describe(&o)
    );
    let revert_wait = Duration::from_secs(90);
    loop {
        let o = web3.ssh(&ctrl, &key, "sudo -n sshd -T | grep -i '^port '");
        if o.status.success() && !pending.exists() {
            assert_eq!(
                String::from_utf8_lossy(&o.stdout).trim(),
                "port 22",
                "{}",
                describe(&o)
            );
            break;
        }
        assert!(
            t_cut_end.elapsed() < revert_wait,
            "web3 did not restore itself within {revert_wait:?} of the run: {}\nrun:\n{cut}",
            describe(&o)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let t_revert = t_cut_end.elapsed();

    let t_stop = Instant::now();
    drop(hosts);
    eprintln!(
        "fleet timings (3 booted containers over SSH): boot {:.1}s, install {:.1}s, check {:.1}s, first run {:.1}s, second run {:.1}s, refused run {:.1}s, cut-off run {:.1}s + {:.1}s until it reverted (20 s deadline), poweroff {:.1}s",
        t_boot.as_secs_f64(),
        t_install.as_secs_f64(),
        t_check.as_secs_f64(),
        t_first.as_secs_f64(),
        t_second.as_secs_f64(),
        t_refused.as_secs_f64(),
        t_cut.as_secs_f64(),
        t_revert.as_secs_f64(),
        t_stop.elapsed().as_secs_f64()
    );
}
