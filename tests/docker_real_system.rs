//! Published container ports follow the profile with a real `dockerd` (issue 14): Debian 12's
//! `docker.io` in a booted systemd-nspawn container of the testbed root, never on the machine
//! running the tests.
//!
//! Per firewall backend (nftables chain `docker_published`; ufw with the `DOCKER-USER` rules),
//! one copy of the testbed root gets `docker.io` and `busybox-static` from its own apt cache
//! (predownloaded by tests/testbed/build-rootfs.sh, installed offline) and boots with
//! `systemd-nspawn --boot` in a network namespace of its own, joined by a veth pair to a
//! "client" namespace that stands for the internet. Inside, dockerd imports a container image
//! made from busybox (`docker import` of a tar: no registry; with the root's glibc for the
//! name lookups static busybox makes through NSS), and a container `web` on a compose
//! network publishes 8080 (allowed by `[docker] allow_published`) and 6379 (not allowed).
//! From the client namespace: before `bollwerk apply` both ports answer; after it only 8080
//! does, while container egress (to the client) and container-to-container traffic keep
//! working — and the same after `systemctl restart docker` and after a reboot of the container
//! (a fresh network namespace, so nothing of the running kernel state survives: the rules come
//! back from the files bollwerk wrote). `firewall.open-ports` fails before apply naming the
//! container; after apply it judges 8080 allowed and still reports 6379 (published but not in
//! `allow_published`: the compose file and the profile disagree), and passes once the container
//! publishes only what the profile allows.
//!
//! Why nspawn and how: this machine's kernel has cgroup v1 controllers and a controller-less
//! cgroup v2 hierarchy, and nspawn mounts v1 controllers read-only, where runc cannot create a
//! container's cgroup. The container therefore runs with the unified hierarchy
//! (`SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1`): systemd and runc manage cgroup v2 without resource
//! controllers, which is all this test needs. `--capability=all` and the `@keyring bpf` system
//! calls let dockerd create bridges, iptables rules and runc's namespaces. Storage is Docker's
//! `vfs` driver (`overlay2` cannot sit on the testbed's overlayfs), set in a `daemon.json` the
//! test writes first, which also shows bollwerk keeping keys it does not manage.
//!
//! Both backends run concurrently in two containers. Nothing touches the machine's own network,
//! firewall or Docker: every rule lives in the namespaces this test creates.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::testbed::*;

/// From `systemd-nspawn --boot` until `systemctl is-system-running --wait` answers.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// The host's cgroup v2 hierarchy (next to the v1 controllers).
const CGROUP2: &str = "/sys/fs/cgroup/unified";
/// One command inside the container.
const CMD_TIMEOUT: Duration = Duration::from_secs(300);

/// A network namespace the test created (`bw-<pid>-<tag>`: the harness removes leftovers of a
/// crashed run); `lo` up; deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let ns = Netns(format!("{NETNS_PREFIX}{}-{tag}", std::process::id()));
        ip(&["netns", "add", &ns.0]);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run_capture(
            Command::new("ip").args(["netns", "del", &self.0]),
            None,
            Duration::from_secs(30),
        );
    }
}

/// `ip ARGS`, panicking unless it succeeds.
fn ip(args: &[&str]) {
    let out = run_capture(Command::new("ip").args(args), None, Duration::from_secs(30));
    assert!(out.status.success(), "ip {args:?}:\n{}", describe(&out));
}

/// A background process killed on drop (the client's HTTP server).
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The firewall backend a scenario covers.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Nftables,
    Ufw,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Nftables => "nftables",
            Backend::Ufw => "ufw",
        }
    }
}

/// An admin's key: the lockout guard wants someone able to log in after apply.
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPci/6iPPKNm3TqnlFNu0Zy6jtqtz5kw0YO3RjFH01v alice@laptop";

/// The profile: SSH rate-limited on input, only 8080 of the published ports.
fn profile(b: Backend) -> String {
    format!(
        "[[users]]\nname = \"deploy\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{KEY}\"]\n\n[firewall]\nbackend = \"{}\"\nlimit = [\"ssh\"]\n\n[docker]\nallow_published = [\"8080/tcp\"]\n",
        b.name()
    )
}

/// One copy of the testbed root with docker.io, booted in its own network namespace.
///
/// The subnet is `10.79.<n>.0/24`: client `.1`, container `.2`. Drop: SIGKILL to nspawn (it
/// runs under `setpriv --pdeathsig KILL` too), then the namespaces and the overlay go.
struct Machine {
    n: u8,
    backend: Backend,
    child: Option<Child>,
    log: PathBuf,
    ns: Option<Netns>,
    _server: Bg,
    client: Netns,
    busybox: PathBuf,
    boots: u32,
    cgroups: Vec<PathBuf>,
    inst: Instance,
}

impl Machine {
    /// Installs docker.io and busybox-static offline, writes the image tar, a `daemon.json`
    /// with `vfs`, the profile and bollwerk into the copy; starts the client's HTTP server.
    fn prepare(tb: &Testbed, n: u8, backend: Backend) -> Machine {
        let inst = tb.instance();
        let out = inst
            .cmd(&[
                "sh",
                "-c",
                "set -e; printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; \
                 sed -i 's/^update_initramfs=.*/update_initramfs=no/' /etc/initramfs-tools/update-initramfs.conf; \
                 DEBIAN_FRONTEND=noninteractive apt-get install -q -y -o Dpkg::Options::=--force-unsafe-io --no-download --no-install-recommends docker.io busybox-static; \
                 rm /usr/sbin/policy-rc.d; \
                 mkdir -p /root/img/bin /root/img/www; cp /bin/busybox /root/img/bin/busybox; \
                 for a in sh httpd nc sleep cat; do ln -s busybox /root/img/bin/$a; done; \
                 mkdir -p /root/img/lib/x86_64-linux-gnu /root/img/lib64 /root/img/etc; \
                 cp -L /lib64/ld-linux-x86-64.so.2 /root/img/lib64/; \
                 cp -L /lib/x86_64-linux-gnu/libc.so.6 /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libnss_dns.so.2 /lib/x86_64-linux-gnu/libresolv.so.2 /root/img/lib/x86_64-linux-gnu/; \
                 printf 'hosts: files dns\\n' > /root/img/etc/nsswitch.conf; \
                 echo hello-from-web > /root/img/www/index.html; tar -C /root/img -cf /root/img.tar .",
            ])
            .timeout(Duration::from_secs(600))
            .output();
        assert!(
            out.status.success(),
            "installing docker.io offline: {}",
            describe(&out)
        );
        inst.write(
            "/etc/docker/daemon.json",
            "{\n  \"storage-driver\": \"vfs\"\n}\n",
        );
        inst.write("/root/profile.toml", profile(backend));
        std::fs::copy(bollwerk_bin(), inst.path("/usr/local/sbin/bollwerk")).unwrap();
        // With --network-namespace-path nspawn leaves /proc/sys/net read-only; dockerd writes
        // ip_forward and per-bridge keys there. The namespace is the container's own, so make
        // it writable as nspawn does for --private-network, before anything needs it.
        inst.write(
            "/etc/systemd/system/bw-testnet.service",
            "[Unit]\nDescription=writable /proc/sys/net (own network namespace)\nDefaultDependencies=no\nBefore=systemd-sysctl.service network-pre.target nftables.service ufw.service docker.service\nWants=network-pre.target\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh -c 'mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,rw /proc/sys/net'\n\n[Install]\nWantedBy=sysinit.target\n",
        );
        inst.sh_ok("systemctl enable bw-testnet.service >/dev/null 2>&1");

        let busybox = inst.dir().join("busybox");
        std::fs::copy(inst.path("/bin/busybox"), &busybox).unwrap();
        let www = inst.dir().join("client-www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("egress.txt"), "egress-reached-client\n").unwrap();
        let client = Netns::new(&format!("dc{n}"));
        let server = Command::new("setpriv")
            .args([
                "--pdeathsig",
                "KILL",
                "--",
                "ip",
                "netns",
                "exec",
                &client.0,
            ])
            .arg(&busybox)
            .args(["httpd", "-f", "-p", "9000", "-h"])
            .arg(&www)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the client's busybox httpd");
        Machine {
            n,
            backend,
            child: None,
            log: inst.dir().join("nspawn.log"),
            ns: None,
            _server: Bg(server),
            client,
            busybox,
            boots: 0,
            cgroups: Vec::new(),
            inst,
        }
    }

    /// A fresh network namespace for the container (nothing of the previous boot's kernel
    /// state survives), joined to the client's by a veth pair: `bwdk<n>` (client, `.1`) and
    /// `host0` (container, `.2`, default route to the client).
    fn wire(&mut self) {
        self.ns = None;
        let n = self.n;
        let ns = Netns::new(&format!("dk{n}"));
        let veth = format!("bwdk{n}");
        let _ = run_capture(
            Command::new("ip").args(["-n", &self.client.0, "link", "del", &veth]),
            None,
            Duration::from_secs(30),
        );
        ip(&[
            "-n",
            &self.client.0,
            "link",
            "add",
            &veth,
            "type",
            "veth",
            "peer",
            "name",
            "host0",
            "netns",
            &ns.0,
        ]);
        ip(&[
            "-n",
            &self.client.0,
            "addr",
            "add",
            &format!("10.79.{n}.1/24"),
            "dev",
            &veth,
        ]);
        ip(&["-n", &self.client.0, "link", "set", &veth, "up"]);
        let addr = format!("10.79.{n}.2/24");
        ip(&["-n", &ns.0, "addr", "add", &addr, "dev", "host0"]);
        ip(&["-n", &ns.0, "link", "set", "host0", "up"]);
        let gw = format!("10.79.{n}.1");
        ip(&["-n", &ns.0, "route", "add", "default", "via", &gw]);
        self.ns = Some(ns);
    }

    /// Wires a fresh namespace, boots the copy and waits until systemd is up and dockerd answers.
    fn boot(&mut self) {
        self.wire();
        let ns = self.ns.as_ref().map(|n| n.0.clone()).unwrap_or_default();
        let logfile = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        // Its own cgroup v2 group, so the cgroup namespace nspawn makes is rooted there and the
        // container's systemd does not manage the v2 root that others share.
        self.boots += 1;
        let cg = PathBuf::from(format!(
            "{CGROUP2}/{NETNS_PREFIX}{}-dock{}-{}",
            std::process::id(),
            self.n,
            self.boots
        ));
        std::fs::create_dir(&cg).unwrap_or_else(|e| panic!("create {}: {e}", cg.display()));
        self.cgroups.push(cg.clone());
        let child = Command::new("sh")
            .args([
                "-c",
                "cg=$1; shift; echo $$ > \"$cg/cgroup.procs\" && exec \"$@\"",
                "sh",
            ])
            .arg(&cg)
            .args([
                "setpriv",
                "--pdeathsig",
                "KILL",
                "--",
                "systemd-nspawn",
                "--boot",
            ])
            .args(["--register=no", "--keep-unit", "--quiet"])
            .arg("--capability=all")
            .arg("--system-call-filter=@keyring bpf")
            .arg(format!("--network-namespace-path=/run/netns/{ns}"))
            .arg(format!("--machine=dock{}", self.n))
            .arg("-D")
            .arg(&self.inst.root)
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .stdin(Stdio::null())
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile)
            .spawn()
            .expect("start systemd-nspawn");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if self.leader().is_some() {
                let out = self.sh("systemctl is-system-running --wait");
                let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if state == "running" || state == "degraded" {
                    break;
                }
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "{}: systemd-nspawn exited ({st}):\n{}",
                    self.tag(),
                    self.log()
                );
            }
            assert!(
                started.elapsed() < BOOT_TIMEOUT,
                "{}: not booted within {BOOT_TIMEOUT:?}\n{}",
                self.tag(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let out = self.sh("systemctl --no-pager status docker.service; docker info --format '{{.Driver}} {{.CgroupVersion}}'");
        assert!(
            out.status.success(),
            "{}: dockerd is not running after boot: {}\n{}",
            self.tag(),
            describe(&out),
            self.sh("journalctl -b -u docker --no-pager | tail -n 40")
                .stdout
                .iter()
                .map(|&b| b as char)
                .collect::<String>()
        );
    }

    /// `systemctl reboot` inside; waits until nspawn has exited.
    fn reboot_and_wait_down(&mut self) {
        let _ = self.sh("systemctl reboot");
        let mut child = self.child.take().expect("booted");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{}: no reboot within 120 s\n{}", self.tag(), self.log());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn tag(&self) -> String {
        format!("docker/{}", self.backend.name())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The container's PID 1 (systemd), a child of systemd-nspawn.
    fn leader(&self) -> Option<u32> {
        let mut level = vec![self.child.as_ref()?.id()];
        for _ in 0..3 {
            level = level.into_iter().flat_map(children_of).collect();
            if let Some(p) = level.iter().copied().find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "systemd")
            }) {
                return Some(p);
            }
        }
        None
    }

    /// `sh -c script` inside the booted container (all its namespaces, a clean environment).
    fn sh(&self, script: &str) -> Output {
        let Some(pid) = self.leader() else {
            return Output {
                status: std::os::unix::process::ExitStatusExt::from_raw(1 << 8),
                stdout: Vec::new(),
                stderr: b"container not running".to_vec(),
            };
        };
        let mut c = Command::new("setpriv");
        c.args([
            "--pdeathsig",
            "KILL",
            "--",
            "nsenter",
            "-t",
            &pid.to_string(),
        ])
        .args([
            "-m",
            "-u",
            "-i",
            "-n",
            "-p",
            "-C",
            "--",
            "/usr/bin/env",
            "-i",
        ])
        .args([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG=C.UTF-8",
            "HOME=/root",
            "/bin/sh",
            "-c",
            script,
        ]);
        run_capture(&mut c, None, CMD_TIMEOUT)
    }

    /// [`Machine::sh`], panicking unless it succeeds; stdout.
    fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "{}: `{script}` failed: {}",
            self.tag(),
            describe(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// An HTTP GET from the client namespace to the container's published `port` (busybox
    /// `nc`; Debian's static busybox `wget` crashes in its name lookup): `ok` when the page
    /// came back, `no` otherwise.
    fn client_get(&self, port: u16) -> &'static str {
        let out = run_capture(
            Command::new("ip")
                .args(["netns", "exec", &self.client.0, "timeout", "8", "sh", "-c"])
                .arg(format!(
                    "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | \"$0\" nc -w 4 10.79.{}.2 {port}",
                    self.n
                ))
                .arg(&self.busybox),
            None,
            Duration::from_secs(20),
        );
        if String::from_utf8_lossy(&out.stdout).contains("hello-from-web") {
            "ok"
        } else {
            "no"
        }
    }

    /// `ok` when a throw-away container on the compose network gets `path` from `host:port`
    /// and sees `want`.
    fn probe_from_container(&self, host: &str, port: u16, path: &str, want: &str) -> &'static str {
        let out = self.sh(&format!(
            "docker run --rm --network bwnet bw/busybox sh -c \"printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc -w 4 {host} {port}\""
        ));
        if String::from_utf8_lossy(&out.stdout).contains(want) {
            "ok"
        } else {
            eprintln!(
                "{}: {host}:{port}{path} from a container: {}",
                self.tag(),
                describe(&out)
            );
            "no"
        }
    }

    /// Waits until `web` serves both ports inside its own network namespace.
    fn wait_web(&self) {
        let started = Instant::now();
        loop {
            let out = self.sh(
                "for p in 8080 6379; do docker exec web sh -c \"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 127.0.0.1 $p\" | grep -q hello-from-web || exit 1; done",
            );
            if out.status.success() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{}: container web not serving: {}",
                self.tag(),
                describe(&out)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `8080=.. 6379=.. egress=.. c2c=..` as seen right now.
    fn observe(&self) -> String {
        self.wait_web();
        format!(
            "8080={} 6379={} egress={} c2c={}",
            self.client_get(8080),
            self.client_get(6379),
            self.probe_from_container(
                &format!("10.79.{}.1", self.n),
                9000,
                "/egress.txt",
                "egress-reached-client"
            ),
            self.probe_from_container("web", 8080, "/", "hello-from-web"),
        )
    }

    /// `firewall.open-ports` of a live audit: (status, evidence).
    fn open_ports(&self) -> (String, String) {
        let out = self.sh("bollwerk audit --profile /root/profile.toml --format json");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{}: audit JSON: {e}: {}", self.tag(), describe(&out)));
        let r = v["results"]
            .as_array()
            .expect("results")
            .iter()
            .find(|r| r["id"] == "firewall.open-ports")
            .unwrap_or_else(|| panic!("{}: no firewall.open-ports in the report", self.tag()));
        (
            r["status"].as_str().unwrap_or_default().to_string(),
            r["evidence"].as_str().unwrap_or_default().to_string(),
        )
    }

    /// The live rules bollwerk's filter consists of, for the failure messages.
    fn live_rules(&self) -> String {
        let script = match self.backend {
            Backend::Nftables => "nft list chain inet bollwerk docker_published",
            Backend::Ufw => "iptables -S DOCKER-USER; iptables -S FORWARD | head -n 3",
        };
        String::from_utf8_lossy(&self.sh(script).stdout).into_owned()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // The container's processes first (see `kill_cgroup`): otherwise its systemd lives on,
        // reparented to the machine's init, with its services (a spinning rsyslogd,
        // PostgreSQL) eating the CPU of every later step.
        for cg in &self.cgroups {
            kill_cgroup(cg);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for cg in &self.cgroups {
            remove_cgroup_tree(cg);
        }
    }
}

/// The whole scenario for one backend; returns what it saw, for the summary line.
fn scenario(tb: &Testbed, n: u8, backend: Backend) -> String {
    let t0 = Instant::now();
    let mut m = Machine::prepare(tb, n, backend);
    let prepared = t0.elapsed().as_secs();
    m.boot();
    let tag = m.tag();
    // `--init` (Docker's tini): with live-restore the container outlives dockerd at shutdown,
    // and a PID 1 that ignores SIGTERM would hold the reboot for systemd's 90 s timeout.
    m.sh_ok(
        "set -e; docker import /root/img.tar bw/busybox >/dev/null; docker network create bwnet >/dev/null; \
         docker run -d --init --name web --restart unless-stopped --network bwnet -p 8080:8080 -p 6379:6379 bw/busybox \
           sh -c 'httpd -p 8080 -h /www && httpd -p 6379 -h /www && exec sleep 2147483647' >/dev/null",
    );

    let before = m.observe();
    assert_eq!(
        before, "8080=ok 6379=ok egress=ok c2c=ok",
        "{tag}: before apply both published ports must connect"
    );
    let (st, ev) = m.open_ports();
    assert_eq!(st, "fail", "{tag}: open-ports before apply: {ev}");
    assert!(
        ev.contains("6379/tcp") && ev.contains("by container web"),
        "{tag}: the evidence names the container: {ev}"
    );

    let out = m.sh("bollwerk apply --profile /root/profile.toml");
    assert!(out.status.success(), "{tag}: apply: {}", describe(&out));
    let daemon = m.sh_ok("cat /etc/docker/daemon.json");
    assert!(
        daemon.contains("\"storage-driver\": \"vfs\"") && daemon.contains("\"live-restore\": true"),
        "{tag}: daemon.json merged: {daemon}"
    );
    let expect = "8080=ok 6379=no egress=ok c2c=ok";
    let after = m.observe();
    assert_eq!(after, expect, "{tag}: after apply\n{}", m.live_rules());
    let (st, ev) = m.open_ports();
    assert!(
        ev.contains("6379/tcp on 0.0.0.0 by container web")
            && ev.contains("not in docker.allow_published")
            && !ev.contains("8080/tcp on 0.0.0.0 by container web (0.0.0.0:8080->8080/tcp) (not"),
        "{tag}: after apply 8080 is allowed and 6379 still reported ({st}): {ev}"
    );
    let again = m.sh("bollwerk plan --profile /root/profile.toml");
    assert!(
        again.status.success(),
        "{tag}: a second run has nothing to do: {}",
        describe(&again)
    );

    m.sh_ok("systemctl restart docker.service");
    let restarted = m.observe();
    assert_eq!(
        restarted,
        expect,
        "{tag}: after `systemctl restart docker`\n{}",
        m.live_rules()
    );

    m.reboot_and_wait_down();
    m.boot();
    let rebooted = m.observe();
    assert_eq!(
        rebooted,
        expect,
        "{tag}: after a reboot in a fresh network namespace\n{}",
        m.live_rules()
    );

    // The compose file now publishes only what the profile allows: the check passes.
    m.sh_ok(
        "set -e; docker rm -f web >/dev/null; \
         docker run -d --init --name web --network bwnet -p 8080:8080 bw/busybox \
           sh -c 'httpd -p 8080 -h /www && exec sleep 2147483647' >/dev/null",
    );
    let (st, ev) = m.open_ports();
    assert_eq!(
        st, "pass",
        "{tag}: open-ports with only 8080 published: {ev}"
    );
    assert!(
        ev.contains("8080/tcp") && ev.contains("by container web"),
        "{tag}: {ev}"
    );
    format!(
        "{tag}: prepared in {prepared} s, whole scenario {} s; before: {before}; after apply, docker restart, reboot: {after}; open-ports after: {ev}",
        t0.elapsed().as_secs()
    )
}

#[test]
fn real_dockerd_published_ports_follow_the_profile_on_both_backends() {
    const NAME: &str = "real_dockerd_published_ports_follow_the_profile_on_both_backends";
    let Some(tb) = testbed_or_skip(NAME) else {
        return;
    };
    assert!(
        which("systemd-nspawn").is_some(),
        "systemd-nspawn missing: run tests/testbed/install-deps.sh"
    );
    let docker_debs = tb.lower().join("var/cache/apt/archives");
    let has_docker = std::fs::read_dir(&docker_debs)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("docker.io_"))
        })
        .unwrap_or(false);
    assert!(
        has_docker,
        "the testbed root has no docker.io in {}: rebuild it with tests/testbed/build-rootfs.sh",
        docker_debs.display()
    );
    let started = Instant::now();
    let tb2 = tb.clone();
    let ufw = std::thread::spawn(move || scenario(&tb2, 2, Backend::Ufw));
    let nft = scenario(&tb, 1, Backend::Nftables);
    let ufw = ufw.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
    // Both machines are dropped: nothing of the containers may still run (their cgroups are
    // removable only once empty).
    let left: Vec<String> = std::fs::read_dir(CGROUP2)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("{NETNS_PREFIX}{}-dock", std::process::id())))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "containers still running after the test: {left:?}"
    );
    // Past libtest's capture (as the harness's notes are): CI's log shows the seconds.
    let _ = writeln!(
        std::io::stderr().lock(),
        "{nft}\n{ufw}\nreal dockerd, both backends: {} s",
        started.elapsed().as_secs()
    );
}
