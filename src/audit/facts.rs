//! Facts shared by the probes, each computed at most once per audit (lazily, thread-safe):
//! one `sshd -T`, one read of the sysctl, modprobe, fail2ban, PostgreSQL, logrotate and APT
//! configuration, one walk of the file system. Everything here only reads.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::engine::{Context, Options as EngineOptions, Plan};
use crate::exec::{Cmd, Runner};
use crate::facts::Facts;
use crate::profile::Loaded;
use crate::root::{RelPath, Root};
use crate::sshd_config::glob_match;
use crate::state::services;

/// A value and where it was set (`etc/sysctl.d/60-x.conf:3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The value.
    pub value: String,
    /// `file:line`.
    pub at: String,
}

/// The effective sshd configuration.
#[derive(Debug, Clone, Default)]
pub struct SshdEff {
    /// False when `usr/sbin/sshd` is absent.
    pub installed: bool,
    /// Keyword → values.
    pub values: BTreeMap<String, Vec<String>>,
    /// `sshd -T`, or `static configuration (…why…)`.
    pub source: String,
    /// When the configuration has `Match` blocks: the settings each account that may log in
    /// gets (`sshd -T -C`, or the static evaluation), judged next to the global ones.
    pub contexts: Vec<SshdContext>,
}

/// The effective sshd settings for one connection (an account that may log in).
#[derive(Debug, Clone, Default)]
pub struct SshdContext {
    /// Keyword → values; keywords the context does not set carry the global value.
    pub values: BTreeMap<String, Vec<String>>,
    /// `sshd -T -C user=…,…` or `static evaluation for user=…`.
    pub source: String,
}

/// The client address the per-account contexts are evaluated for: a public one (TEST-NET-2),
/// as an attacker on the internet connects.
const CONTEXT_ADDR: std::net::IpAddr =
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7));

impl SshdEff {
    /// The first value of a keyword.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.values
            .get(k)
            .and_then(|v| v.first())
            .map(String::as_str)
    }
}

/// OpenSSH's compiled-in defaults (9.2/8.9) for the keywords the catalog judges, used by the
/// static evaluation when `sshd -T` cannot run.
pub const SSHD_DEFAULTS: &[(&str, &str)] = &[
    ("permitrootlogin", "without-password"),
    ("passwordauthentication", "yes"),
    ("permitemptypasswords", "no"),
    ("hostbasedauthentication", "no"),
    ("ignorerhosts", "yes"),
    ("x11forwarding", "no"),
    ("maxauthtries", "6"),
    ("maxsessions", "10"),
    ("maxstartups", "10:30:100"),
    ("logingracetime", "120"),
    ("clientaliveinterval", "0"),
    ("clientalivecountmax", "3"),
    ("loglevel", "INFO"),
    ("usepam", "no"),
    ("permituserenvironment", "no"),
    ("gssapiauthentication", "no"),
    ("kerberosauthentication", "no"),
    ("allowtcpforwarding", "yes"),
    ("allowagentforwarding", "yes"),
    ("allowstreamlocalforwarding", "yes"),
    ("disableforwarding", "no"),
    ("permittunnel", "no"),
    ("gatewayports", "no"),
    ("banner", "none"),
    ("pubkeyauthentication", "yes"),
    ("kbdinteractiveauthentication", "yes"),
    ("strictmodes", "yes"),
    ("compression", "yes"),
    ("port", "22"),
    (
        "hostkeyalgorithms",
        "ssh-ed25519-cert-v01@openssh.com,ecdsa-sha2-nistp256-cert-v01@openssh.com,ecdsa-sha2-nistp384-cert-v01@openssh.com,ecdsa-sha2-nistp521-cert-v01@openssh.com,sk-ssh-ed25519-cert-v01@openssh.com,sk-ecdsa-sha2-nistp256-cert-v01@openssh.com,rsa-sha2-512-cert-v01@openssh.com,rsa-sha2-256-cert-v01@openssh.com,ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,sk-ssh-ed25519@openssh.com,sk-ecdsa-sha2-nistp256@openssh.com,rsa-sha2-512,rsa-sha2-256",
    ),
    ("printlastlog", "yes"),
    ("usedns", "no"),
    (
        "ciphers",
        "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com",
    ),
    (
        "macs",
        "umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1",
    ),
    (
        "kexalgorithms",
        "sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256",
    ),
];

/// A file system entry seen by the walk.
#[derive(Debug, Clone)]
pub struct WalkHit {
    /// Absolute path inside the root (`/tmp/x`).
    pub path: String,
    /// Mode bits.
    pub mode: u32,
}

/// Results of the single file system walk.
#[derive(Debug, Clone, Default)]
pub struct Walk {
    /// Roots walked (`/`, `/srv`).
    pub roots: Vec<String>,
    /// World-writable regular files.
    pub ww_files: Vec<WalkHit>,
    /// World-writable directories without the sticky bit.
    pub ww_dirs: Vec<WalkHit>,
    /// Entries whose owner is not in passwd.
    pub no_user: Vec<String>,
    /// Entries whose group is not in group.
    pub no_group: Vec<String>,
    /// Entries visited.
    pub visited: u64,
}

/// The state of the firewall configuration.
#[derive(Debug, Clone, Default)]
pub struct FirewallState {
    /// ufw enabled at boot (`ENABLED=yes`), ufw installed.
    pub ufw: bool,
    /// `nftables.service` enabled.
    pub nftables: bool,
    /// `iptables-persistent` / `netfilter-persistent` installed.
    pub iptables_persistent: bool,
    /// `etc/default/ufw` values.
    pub ufw_defaults: BTreeMap<String, Setting>,
    /// `etc/ufw/user.rules` + `user6.rules` + `before.rules` lines.
    pub ufw_rules: Vec<String>,
    /// `etc/nftables.conf` with includes expanded.
    pub nft_text: String,
    /// On a live host (systemd running): the loaded ruleset (`nft -j list ruleset`) with the
    /// command it was read with, or why it could not be read; `None` offline.
    pub live_nft: Option<Result<crate::state::firewall::LoadedRuleset, String>>,
    /// On a live host with ufw enabled: `ufw status verbose`, or why it could not be read.
    pub live_ufw: Option<Result<crate::state::firewall::UfwStatus, String>>,
}

/// The merged fail2ban configuration: section → key → setting.
pub type Fail2banConf = BTreeMap<String, BTreeMap<String, Setting>>;

/// A PostgreSQL cluster's configuration.
#[derive(Debug, Clone, Default)]
pub struct PgCluster {
    /// `15/main`.
    pub name: String,
    /// Setting → value (last wins).
    pub settings: BTreeMap<String, Setting>,
    /// `pg_hba.conf` lines (file:line, words).
    pub hba: Vec<(String, Vec<String>)>,
}

/// Everything probes read, with lazily computed shared facts.
pub struct AuditCx<'a> {
    /// The audited root.
    pub root: Root,
    /// Command runner (read-only commands only: `sshd -T`, `systemctl is-active`, …).
    pub runner: &'a dyn Runner,
    /// Basic facts (OS, container, packages, accounts).
    pub facts: Facts,
    /// Live kernel state directory (`/proc`) when the running system is audited.
    pub proc_dir: Option<PathBuf>,
    /// Live `/sys` when the running system is audited.
    pub sys_dir: Option<PathBuf>,
    /// systemd runs as init on the audited system (live `systemctl` queries possible).
    pub systemd_running: bool,
    /// The profile, with `--profile`.
    pub profile: Option<&'a Loaded>,
    /// The merged profile as JSON (for dotted key lookups).
    pub profile_json: Option<serde_json::Value>,
    /// Scan roots for the walk from the profile (`audit.scan_roots`).
    pub scan_roots: Option<Vec<String>>,
    sshd: OnceLock<SshdEff>,
    sysctl: OnceLock<BTreeMap<String, Setting>>,
    modprobe: OnceLock<Result<Modprobe, String>>,
    walk: OnceLock<Result<Walk, String>>,
    mounts: OnceLock<Result<Mounts, String>>,
    firewall: OnceLock<Result<FirewallState, String>>,
    fail2ban: OnceLock<Result<Fail2banConf, String>>,
    pg: OnceLock<Result<Vec<PgCluster>, String>>,
    logrotate: OnceLock<Result<Vec<String>, String>>,
    apt: OnceLock<Result<BTreeMap<String, Setting>, String>>,
}

/// Kernel module configuration.
#[derive(Debug, Clone, Default)]
pub struct Modprobe {
    /// module → (`install` command, where).
    pub install: BTreeMap<String, Setting>,
    /// module → where blacklisted.
    pub blacklist: BTreeMap<String, String>,
    /// Modules shipped by the kernels in `lib/modules` (from `modules.dep`).
    pub shipped: BTreeSet<String>,
    /// Kernels found in `lib/modules`.
    pub kernels: Vec<String>,
    /// Loaded modules (live only).
    pub loaded: Option<BTreeSet<String>>,
}

/// Mounts of the target.
#[derive(Debug, Clone, Default)]
pub struct Mounts {
    /// Mount point → (options, source of the information).
    pub points: BTreeMap<String, (Vec<String>, String)>,
}

fn rel(p: &str) -> Option<RelPath> {
    RelPath::new(p.trim_start_matches('/')).ok()
}

/// Normalises a module name (`-` and `_` are equivalent).
pub fn module_name(m: &str) -> String {
    m.replace('-', "_")
}

impl<'a> AuditCx<'a> {
    /// Builds the context. `live` says whether to judge live kernel state (`/proc`, `/sys`).
    ///
    /// # Errors
    /// When the root's basic files cannot be read.
    pub fn new(
        root: Root,
        runner: &'a dyn Runner,
        profile: Option<&'a Loaded>,
        proc_dir: Option<PathBuf>,
        sys_dir: Option<PathBuf>,
        systemd_running: bool,
    ) -> crate::Result<AuditCx<'a>> {
        let facts = Facts::gather(&root, runner)?;
        let profile_json = profile.and_then(|l| serde_json::to_value(&l.profile).ok());
        let scan_roots = profile_json.as_ref().and_then(|j| {
            let v = profile_values(j, "audit.scan_roots");
            (!v.is_empty()).then(|| {
                v.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
        });
        Ok(AuditCx {
            root,
            runner,
            facts,
            proc_dir,
            sys_dir,
            systemd_running,
            profile,
            profile_json,
            scan_roots,
            sshd: OnceLock::new(),
            sysctl: OnceLock::new(),
            modprobe: OnceLock::new(),
            walk: OnceLock::new(),
            mounts: OnceLock::new(),
            firewall: OnceLock::new(),
            fail2ban: OnceLock::new(),
            pg: OnceLock::new(),
            logrotate: OnceLock::new(),
            apt: OnceLock::new(),
        })
    }

    /// Replaces the profile data the checks see (and the scan roots taken from it).
    pub fn set_profile_data(&mut self, j: serde_json::Value) {
        let v = profile_values(&j, "audit.scan_roots");
        self.scan_roots = (!v.is_empty()).then(|| {
            v.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        });
        self.profile_json = Some(j);
    }

    /// True when live kernel state is judged.
    pub fn live(&self) -> bool {
        self.proc_dir.is_some()
    }

    /// Reads a file of the root as text (`None`: absent).
    pub fn read(&self, path: &str) -> Result<Option<String>, String> {
        let Some(r) = rel(path) else {
            return Err(format!("bad path {path}"));
        };
        self.root.read_string(&r).map_err(|e| e.to_string())
    }

    /// Expands a path with `*`/`?` globs in any component to the existing paths (sorted),
    /// relative to the root, without a leading `/`.
    pub fn glob(&self, pattern: &str) -> Vec<String> {
        let pattern = pattern.trim_start_matches('/');
        let mut acc = vec![String::new()];
        let comps: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
        for (i, comp) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let mut next = Vec::new();
            for base in &acc {
                let join = |n: &str| {
                    if base.is_empty() {
                        n.to_string()
                    } else {
                        format!("{base}/{n}")
                    }
                };
                if comp.contains(['*', '?']) {
                    let dir = if base.is_empty() {
                        Some(self.root.path().to_path_buf())
                    } else {
                        rel(base).map(|r| self.root.resolve_follow(&r))
                    };
                    let mut names: Vec<String> = dir
                        .and_then(|d| std::fs::read_dir(d).ok())
                        .map(|rd| {
                            rd.filter_map(|e| e.ok())
                                .map(|e| e.file_name().to_string_lossy().into_owned())
                                .collect()
                        })
                        .unwrap_or_default();
                    names.sort();
                    for n in names {
                        if glob_match(comp, &n) && !n.starts_with('.') || *comp == n {
                            next.push(join(&n));
                        }
                    }
                } else {
                    let p = join(comp);
                    if last {
                        if rel(&p).is_some_and(|r| {
                            std::fs::symlink_metadata(self.root.resolve(&r)).is_ok()
                        }) {
                            next.push(p);
                        }
                    } else {
                        next.push(p);
                    }
                }
            }
            acc = next;
        }
        acc.retain(|p| !p.is_empty());
        acc.sort();
        acc.dedup();
        acc
    }

    /// The effective sshd configuration (one `sshd -T`, or static evaluation).
    pub fn sshd(&self) -> &SshdEff {
        self.sshd.get_or_init(|| self.compute_sshd())
    }

    fn compute_sshd(&self) -> SshdEff {
        let mut eff = self.compute_sshd_global();
        if eff.installed {
            // The tool answers per account only where it answered globally.
            let tool = if eff.source == "sshd -T" {
                crate::state::sshd::SshdTool::ReadOnly
            } else {
                crate::state::sshd::SshdTool::Static
            };
            eff.contexts = self.sshd_contexts(&eff.values, tool);
        }
        eff
    }

    /// Per-account settings, only when a `Match` block can make them differ from the global
    /// ones (one `sshd -T -C` per account that may log in otherwise costs time for nothing).
    fn sshd_contexts(
        &self,
        global: &BTreeMap<String, Vec<String>>,
        tool: crate::state::sshd::SshdTool,
    ) -> Vec<SshdContext> {
        let loaded = Loaded {
            profile: Default::default(),
            layers: Vec::new(),
            digest: String::new(),
        };
        let Ok(cx) = Context::new(
            self.root.clone(),
            self.runner,
            &loaded,
            EngineOptions::default(),
        ) else {
            return Vec::new();
        };
        if !crate::state::sshd::has_match(&cx).unwrap_or(false) {
            return Vec::new();
        }
        let Ok((users, source)) = crate::state::sshd::per_user_values(&cx, CONTEXT_ADDR, tool)
        else {
            return Vec::new();
        };
        users
            .into_iter()
            .map(|u| {
                let mut values = global.clone();
                for (k, v) in u.values {
                    values.insert(k, v.values);
                }
                let spec = crate::state::sshd::conn_spec(&u.conn);
                let source = if source.starts_with("sshd -T -C") {
                    format!("sshd -T -C {spec}")
                } else {
                    format!("{source} for {spec}")
                };
                SshdContext { values, source }
            })
            .collect()
    }

    fn compute_sshd_global(&self) -> SshdEff {
        if !self.root.exists(&RelPath::lit("usr/sbin/sshd")) {
            return SshdEff {
                installed: false,
                values: BTreeMap::new(),
                source: "usr/sbin/sshd is not installed".into(),
                contexts: Vec::new(),
            };
        }
        let cmd =
            Cmd::in_root("/usr/sbin/sshd", &["-T"]).timeout(std::time::Duration::from_secs(30));
        let why = match self.runner.run(&self.root, &cmd) {
            Ok(o) if o.success() && !o.stdout.trim().is_empty() => {
                let e = crate::sshd_config::Effective::parse(&o.stdout);
                return SshdEff {
                    installed: true,
                    values: e.values,
                    source: "sshd -T".into(),
                    contexts: Vec::new(),
                };
            }
            Ok(o) => o
                .combined()
                .lines()
                .next()
                .unwrap_or("no output")
                .to_string(),
            Err(e) => e.to_string(),
        };
        // Static evaluation: the same first-value-wins reading the sshd module plans with.
        let loaded = Loaded {
            profile: Default::default(),
            layers: Vec::new(),
            digest: String::new(),
        };
        let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let res = Context::new(
            self.root.clone(),
            self.runner,
            &loaded,
            EngineOptions::default(),
        )
        .and_then(|cx| crate::modules::sshd::static_effective(&cx, &Plan::default()));
        let source = match res {
            Ok(v) => {
                values = v;
                format!("static configuration; sshd -T could not run: {why}")
            }
            Err(e) => {
                format!("sshd -T could not run ({why}) and the configuration is unreadable: {e}")
            }
        };
        for (k, d) in SSHD_DEFAULTS {
            values
                .entry((*k).to_string())
                .or_insert_with(|| vec![(*d).to_string()]);
        }
        SshdEff {
            installed: true,
            values,
            source,
            contexts: Vec::new(),
        }
    }

    /// Configured kernel parameters (systemd-sysctl order; later files override).
    pub fn sysctl_conf(&self) -> &BTreeMap<String, Setting> {
        self.sysctl.get_or_init(|| {
            let dirs = [
                "etc/sysctl.d",
                "run/sysctl.d",
                "usr/local/lib/sysctl.d",
                "usr/lib/sysctl.d",
                "lib/sysctl.d",
            ];
            let mut by_name: BTreeMap<String, String> = BTreeMap::new();
            for d in dirs {
                if let Some(r) = rel(d) {
                    for n in self.root.list_dir(&r).unwrap_or_default() {
                        if n.ends_with(".conf") {
                            by_name.entry(n.clone()).or_insert(format!("{d}/{n}"));
                        }
                    }
                }
            }
            let mut files: Vec<String> = by_name.into_values().collect();
            if !self
                .root
                .exists(&RelPath::lit("etc/sysctl.d/99-sysctl.conf"))
            {
                files.push("etc/sysctl.conf".into());
            }
            let mut out = BTreeMap::new();
            for f in files {
                let Ok(Some(text)) = self.read(&f) else {
                    continue;
                };
                for (i, line) in text.lines().enumerate() {
                    let l = line.trim();
                    if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
                        continue;
                    }
                    let Some((k, v)) = l.split_once('=') else {
                        continue;
                    };
                    let k = k.trim().trim_start_matches('-').replace('/', ".");
                    out.insert(
                        k,
                        Setting {
                            value: normalize_ws(v),
                            at: format!("{f}:{}", i + 1),
                        },
                    );
                }
            }
            out
        })
    }

    /// The live value of a kernel parameter (`None`: not live, or no such key).
    pub fn sysctl_live(&self, key: &str) -> Option<Result<String, String>> {
        let proc_dir = self.proc_dir.as_ref()?;
        let p = proc_dir.join("sys").join(key.replace('.', "/"));
        match std::fs::read_to_string(&p) {
            Ok(s) => Some(Ok(normalize_ws(&s))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Some(Err(format!("{} does not exist", p.display())))
            }
            Err(e) => Some(Err(format!("reading {}: {e}", p.display()))),
        }
    }

    /// Packages matching `pattern` that are installed.
    pub fn installed(&self, pattern: &str) -> Vec<String> {
        if pattern.contains(['*', '?']) {
            self.facts
                .packages
                .keys()
                .filter(|n| glob_match(pattern, n))
                .cloned()
                .collect()
        } else if self.facts.packages.contains_key(pattern) {
            vec![pattern.to_string()]
        } else {
            Vec::new()
        }
    }

    /// Where a unit file lives and whether it is masked ([`crate::state::services`]).
    pub fn unit_file(&self, unit: &str) -> Option<(String, bool)> {
        services::unit_file(&self.root, unit)
    }

    /// Whether a unit is enabled: (`enabled`, how we know) ([`crate::state::services`]).
    pub fn unit_enabled(&self, unit: &str) -> Option<(bool, String)> {
        services::unit_enabled(&self.root, unit)
    }

    /// `systemctl is-active UNIT` on the running system (`None`: not running systemd).
    pub fn unit_active(&self, unit: &str) -> Option<Result<String, String>> {
        services::unit_active(&self.root, self.runner, self.systemd_running, unit)
    }

    /// Kernel module configuration.
    pub fn modprobe(&self) -> Result<&Modprobe, String> {
        self.modprobe
            .get_or_init(|| {
                let mut m = Modprobe::default();
                let mut by_name: BTreeMap<String, String> = BTreeMap::new();
                for d in [
                    "etc/modprobe.d",
                    "run/modprobe.d",
                    "usr/local/lib/modprobe.d",
                    "usr/lib/modprobe.d",
                    "lib/modprobe.d",
                ] {
                    if let Some(r) = rel(d) {
                        for n in self.root.list_dir(&r).unwrap_or_default() {
                            if n.ends_with(".conf") {
                                by_name.entry(n.clone()).or_insert(format!("{d}/{n}"));
                            }
                        }
                    }
                }
                for f in by_name.values() {
                    let text = self.read(f)?.unwrap_or_default();
                    for (i, line) in text.lines().enumerate() {
                        let w: Vec<&str> = line.split_whitespace().collect();
                        match w.as_slice() {
                            ["install", module, cmd @ ..] => {
                                m.install.insert(
                                    module_name(module),
                                    Setting {
                                        value: cmd.join(" "),
                                        at: format!("{f}:{}", i + 1),
                                    },
                                );
                            }
                            ["blacklist", module, ..] => {
                                m.blacklist
                                    .insert(module_name(module), format!("{f}:{}", i + 1));
                            }
                            _ => {}
                        }
                    }
                }
                for k in self
                    .root
                    .list_dir(&RelPath::lit("lib/modules"))
                    .unwrap_or_default()
                {
                    let dep = format!("lib/modules/{k}/modules.dep");
                    if let Some(text) = self.read(&dep)? {
                        m.kernels.push(k);
                        for line in text.lines() {
                            let Some((path, _)) = line.split_once(':') else {
                                continue;
                            };
                            let file = path.rsplit('/').next().unwrap_or(path);
                            let name = file.split(".ko").next().unwrap_or(file);
                            m.shipped.insert(module_name(name));
                        }
                    }
                }
                if let Some(p) = &self.proc_dir {
                    let text = std::fs::read_to_string(p.join("modules")).unwrap_or_default();
                    m.loaded = Some(
                        text.lines()
                            .filter_map(|l| l.split_whitespace().next())
                            .map(module_name)
                            .collect(),
                    );
                }
                Ok(m)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Mounts: live from `/proc/self/mountinfo`, else `etc/fstab` and mount units.
    pub fn mounts(&self) -> Result<&Mounts, String> {
        self.mounts
            .get_or_init(|| {
                let mut m = Mounts::default();
                if let Some(p) = &self.proc_dir {
                    let f = p.join("self/mountinfo");
                    let text = std::fs::read_to_string(&f)
                        .map_err(|e| format!("reading {}: {e}", f.display()))?;
                    for line in text.lines() {
                        let (left, right) = line.split_once(" - ").unwrap_or((line, ""));
                        let l: Vec<&str> = left.split_whitespace().collect();
                        if l.len() < 6 {
                            continue;
                        }
                        let mut opts: Vec<String> = l[5].split(',').map(str::to_string).collect();
                        if let Some(sopts) = right.split_whitespace().nth(2) {
                            opts.extend(sopts.split(',').map(str::to_string));
                        }
                        m.points
                            .insert(unescape_mount(l[4]), (opts, "/proc/self/mountinfo".into()));
                    }
                    return Ok(m);
                }
                let fstab = self.read("etc/fstab")?.unwrap_or_default();
                for (i, line) in fstab.lines().enumerate() {
                    let w: Vec<&str> = line.split_whitespace().collect();
                    if w.len() < 4 || w[0].starts_with('#') || w[2] == "swap" {
                        continue;
                    }
                    m.points.insert(
                        unescape_mount(w[1]),
                        (
                            w[3].split(',').map(str::to_string).collect(),
                            format!("etc/fstab:{}", i + 1),
                        ),
                    );
                }
                // systemd mount units enabled in the root (tmp.mount and friends).
                for d in ["etc/systemd/system"] {
                    let Some(r) = rel(d) else { continue };
                    for sub in self.root.list_dir(&r).unwrap_or_default() {
                        if !sub.ends_with(".wants") {
                            continue;
                        }
                        let Some(wr) = rel(&format!("{d}/{sub}")) else {
                            continue;
                        };
                        for unit in self.root.list_dir(&wr).unwrap_or_default() {
                            if !unit.ends_with(".mount") {
                                continue;
                            }
                            let Some((file, masked)) = self.unit_file(&unit) else {
                                continue;
                            };
                            if masked {
                                continue;
                            }
                            let text = self
                                .root
                                .read_string(&rel(&file).unwrap_or(RelPath::lit("x")))
                                .ok()
                                .flatten()
                                .unwrap_or_default();
                            let mut what = None;
                            let mut opts = Vec::new();
                            for l in text.lines() {
                                if let Some(v) = l.trim().strip_prefix("Where=") {
                                    what = Some(v.trim().to_string());
                                }
                                if let Some(v) = l.trim().strip_prefix("Options=") {
                                    opts = v.trim().split(',').map(str::to_string).collect();
                                }
                            }
                            if let Some(w) = what {
                                m.points
                                    .entry(w)
                                    .or_insert((opts, format!("{file} (enabled)")));
                            }
                        }
                    }
                }
                Ok(m)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The single file system walk over the scan roots.
    pub fn walk(&self, probe_roots: &[String]) -> Result<&Walk, String> {
        self.walk
            .get_or_init(|| {
                let roots: Vec<String> = match &self.scan_roots {
                    Some(r) => r.clone(),
                    None if !probe_roots.is_empty() => probe_roots.to_vec(),
                    None => vec!["/".into()],
                };
                walk(self, &roots)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The firewall: the configuration the next boot loads and, on a live host, what is loaded
    /// now (`nft -j list ruleset`, `ufw status verbose`).
    pub fn firewall(&self) -> Result<&FirewallState, String> {
        self.firewall
            .get_or_init(|| {
                let mut f = self.firewall_config()?;
                if self.systemd_running {
                    if f.nftables || !f.ufw {
                        f.live_nft = Some(crate::state::firewall::read_loaded(|args| {
                            self.run_tool("/usr/sbin/nft", args)
                        }));
                    }
                    if f.ufw {
                        f.live_ufw = Some(
                            self.run_tool("/usr/sbin/ufw", &["status", "verbose"])
                                .map(|t| crate::state::firewall::UfwStatus::parse(&t)),
                        );
                    }
                }
                Ok(f)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The firewall configuration files: ufw's switches, defaults and rules, which backends
    /// start at boot, and `etc/nftables.conf` with its includes.
    fn firewall_config(&self) -> Result<FirewallState, String> {
        let mut f = FirewallState::default();
        let ufw_conf = self.read("etc/ufw/ufw.conf")?.unwrap_or_default();
        f.ufw = !self.installed("ufw").is_empty()
            && shell_vars(&ufw_conf, "etc/ufw/ufw.conf")
                .get("ENABLED")
                .is_some_and(|s| s.value.eq_ignore_ascii_case("yes"));
        f.nftables = self
            .unit_enabled("nftables.service")
            .is_some_and(|(e, _)| e)
            && !self.installed("nftables").is_empty();
        f.iptables_persistent = !self.installed("iptables-persistent").is_empty()
            || !self.installed("netfilter-persistent").is_empty();
        f.ufw_defaults = shell_vars(
            &self.read("etc/default/ufw")?.unwrap_or_default(),
            "etc/default/ufw",
        );
        for p in [
            "etc/ufw/user.rules",
            "etc/ufw/user6.rules",
            "etc/ufw/before.rules",
            "etc/ufw/before6.rules",
        ] {
            if let Some(t) = self.read(p)? {
                f.ufw_rules.extend(
                    t.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(str::to_string),
                );
            }
        }
        let mut seen = BTreeSet::new();
        f.nft_text = self.nft_expand("etc/nftables.conf", &mut seen, 0)?;
        Ok(f)
    }

    /// Runs a firewall tool of the live host (10 s at most): its stdout, or why it failed.
    fn run_tool(&self, prog: &str, args: &[&str]) -> Result<String, String> {
        let cmd = Cmd::in_root(prog, args).timeout(std::time::Duration::from_secs(10));
        match self.runner.run(&self.root, &cmd) {
            Ok(o) if o.success() => Ok(o.stdout),
            Ok(o) => Err(format!(
                "{} failed: {}",
                cmd.display(),
                o.combined().lines().next().unwrap_or("")
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    fn nft_expand(
        &self,
        path: &str,
        seen: &mut BTreeSet<String>,
        depth: usize,
    ) -> Result<String, String> {
        if depth > 8 || !seen.insert(path.to_string()) {
            return Ok(String::new());
        }
        let mut out = String::new();
        for line in self.read(path)?.unwrap_or_default().lines() {
            let t = line.trim();
            if let Some(inc) = t.strip_prefix("include ") {
                let inc = inc.trim().trim_matches('"');
                for p in self.glob(inc) {
                    out.push_str(&self.nft_expand(&p, seen, depth + 1)?);
                }
                continue;
            }
            let t = t.split('#').next().unwrap_or("");
            out.push_str(t);
            out.push('\n');
        }
        Ok(out)
    }

    /// The merged fail2ban configuration.
    pub fn fail2ban(&self) -> Result<&Fail2banConf, String> {
        self.fail2ban
            .get_or_init(|| {
                let mut files = Vec::new();
                files.push("etc/fail2ban/jail.conf".to_string());
                files.extend(self.glob("etc/fail2ban/jail.d/*.conf"));
                files.push("etc/fail2ban/jail.local".to_string());
                files.extend(self.glob("etc/fail2ban/jail.d/*.local"));
                let mut conf: Fail2banConf = BTreeMap::new();
                for f in files {
                    let Some(text) = self.read(&f)? else { continue };
                    for (sec, k, v, line) in parse_ini(&text) {
                        conf.entry(sec).or_default().insert(
                            k.to_ascii_lowercase(),
                            Setting {
                                value: v,
                                at: format!("{f}:{line}"),
                            },
                        );
                    }
                }
                Ok(conf)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// PostgreSQL clusters in `etc/postgresql/<version>/<name>/`.
    pub fn postgres(&self) -> Result<&Vec<PgCluster>, String> {
        self.pg
            .get_or_init(|| {
                let mut out = Vec::new();
                for conf in self.glob("etc/postgresql/*/*/postgresql.conf") {
                    let dir = conf.trim_end_matches("/postgresql.conf").to_string();
                    let name = dir.trim_start_matches("etc/postgresql/").to_string();
                    let mut c = PgCluster {
                        name,
                        ..Default::default()
                    };
                    self.pg_read(&conf, &mut c.settings, 0)?;
                    let data_dir = c.settings.get("data_directory").map(|s| s.value.clone());
                    if let Some(d) = data_dir {
                        let auto = format!("{}/postgresql.auto.conf", d.trim_end_matches('/'));
                        self.pg_read(auto.trim_start_matches('/'), &mut c.settings, 0)?;
                    }
                    let hba = c
                        .settings
                        .get("hba_file")
                        .map(|s| s.value.trim_start_matches('/').to_string())
                        .unwrap_or(format!("{dir}/pg_hba.conf"));
                    for (i, line) in self.read(&hba)?.unwrap_or_default().lines().enumerate() {
                        let l = line.split('#').next().unwrap_or("").trim();
                        if l.is_empty() {
                            continue;
                        }
                        c.hba.push((
                            format!("{hba}:{}", i + 1),
                            l.split_whitespace().map(str::to_string).collect(),
                        ));
                    }
                    out.push(c);
                }
                Ok(out)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn pg_read(
        &self,
        file: &str,
        into: &mut BTreeMap<String, Setting>,
        depth: usize,
    ) -> Result<(), String> {
        if depth > 10 {
            return Ok(());
        }
        let Some(text) = self.read(file)? else {
            return Ok(());
        };
        let dir = file.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let resolve = |p: &str| -> String {
            if p.starts_with('/') {
                p.trim_start_matches('/').to_string()
            } else {
                format!("{dir}/{p}")
            }
        };
        for (i, line) in text.lines().enumerate() {
            let l = strip_pg_comment(line);
            let l = l.trim();
            if l.is_empty() {
                continue;
            }
            let (k, v) = match l.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => match l.split_once(char::is_whitespace) {
                    Some((k, v)) => (k.trim(), v.trim()),
                    None => continue,
                },
            };
            let v = v.trim_matches('\'').to_string();
            match k {
                "include" | "include_if_exists" => self.pg_read(&resolve(&v), into, depth + 1)?,
                "include_dir" => {
                    let d = resolve(&v);
                    for f in self.glob(&format!("{d}/*.conf")) {
                        self.pg_read(&f, into, depth + 1)?;
                    }
                }
                _ => {
                    into.insert(
                        k.to_ascii_lowercase(),
                        Setting {
                            value: v,
                            at: format!("{file}:{}", i + 1),
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Path patterns of every logrotate rule.
    pub fn logrotate(&self) -> Result<&Vec<String>, String> {
        self.logrotate
            .get_or_init(|| {
                let mut files = vec!["etc/logrotate.conf".to_string()];
                files.extend(self.glob("etc/logrotate.d/*"));
                let mut pats = Vec::new();
                for f in files {
                    let Some(text) = self.read(&f)? else { continue };
                    let mut depth = 0usize;
                    let mut header = String::new();
                    for line in text.lines() {
                        let l = line.split('#').next().unwrap_or("").trim();
                        if depth == 0 {
                            if let Some((before, _)) = l.split_once('{') {
                                header.push(' ');
                                header.push_str(before);
                                pats.extend(
                                    header
                                        .split_whitespace()
                                        .map(|p| p.trim_matches('"').to_string())
                                        .filter(|p| p.starts_with('/')),
                                );
                                header.clear();
                                depth += 1;
                            } else if l.starts_with('/') || l.starts_with('"') {
                                header.push(' ');
                                header.push_str(l);
                            } else {
                                header.clear();
                            }
                        } else {
                            if l.contains('{') {
                                depth += 1;
                            }
                            if l.contains('}') {
                                depth = depth.saturating_sub(1);
                            }
                        }
                    }
                }
                Ok(pats)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The merged APT configuration: lower-case key → setting.
    pub fn apt(&self) -> Result<&BTreeMap<String, Setting>, String> {
        self.apt
            .get_or_init(|| {
                let mut files: Vec<String> = self
                    .glob("etc/apt/apt.conf.d/*")
                    .into_iter()
                    .filter(|f| {
                        let n = f.rsplit('/').next().unwrap_or("");
                        n.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
                            && (!n.contains('.') || n.ends_with(".conf"))
                    })
                    .collect();
                files.push("etc/apt/apt.conf".into());
                let mut out = BTreeMap::new();
                for f in files {
                    let Some(text) = self.read(&f)? else { continue };
                    for (k, v, line) in parse_apt_conf(&text) {
                        out.insert(
                            k.to_ascii_lowercase(),
                            Setting {
                                value: v,
                                at: format!("{f}:{line}"),
                            },
                        );
                    }
                }
                Ok(out)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Values of a dotted profile key (`[]` maps over arrays); empty without a profile.
    pub fn profile_values(&self, key: &str) -> Vec<serde_json::Value> {
        self.profile_json
            .as_ref()
            .map(|j| profile_values(j, key))
            .unwrap_or_default()
    }
}

fn strip_pg_comment(line: &str) -> String {
    let mut out = String::new();
    let mut in_q = false;
    for c in line.chars() {
        if c == '\'' {
            in_q = !in_q;
        }
        if c == '#' && !in_q {
            break;
        }
        out.push(c);
    }
    out
}

fn unescape_mount(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t")
}

/// Collapses white space runs to one space and trims.
pub fn normalize_ws(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses shell-style `KEY="value"` assignments.
pub fn shell_vars(text: &str, file: &str) -> BTreeMap<String, Setting> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = l.split_once('=')
            && !k.contains(char::is_whitespace)
        {
            out.insert(
                k.trim().to_string(),
                Setting {
                    value: v.trim().trim_matches('"').trim_matches('\'').to_string(),
                    at: format!("{file}:{}", i + 1),
                },
            );
        }
    }
    out
}

/// Parses an INI file into (section, key, value, line) in order (`#`/`;` comments; keys
/// before any section are in section "").
pub fn parse_ini(text: &str) -> Vec<(String, String, String, usize)> {
    let mut out = Vec::new();
    let mut sec = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if l.starts_with('[') && l.ends_with(']') {
            sec = l[1..l.len() - 1].trim().to_string();
            continue;
        }
        if let Some((k, v)) = l.split_once('=') {
            out.push((
                sec.clone(),
                k.trim().to_string(),
                v.trim().to_string(),
                i + 1,
            ));
        }
    }
    out
}

/// Parses APT configuration syntax into (scoped key, value, line): `A::B "v";` and nested
/// `A { B "v"; };` forms; lists (`A { "x"; "y"; };`) become one `x, y` value.
pub fn parse_apt_conf(text: &str) -> Vec<(String, String, usize)> {
    // Tokenise: words, quoted strings, `{`, `}`, `;`, with line numbers; drop comments.
    #[derive(Debug, PartialEq)]
    enum Tok {
        Word(String),
        Str(String),
        Open,
        Close,
        Semi,
    }
    let mut toks: Vec<(Tok, usize)> = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut line = 1;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '#' || (c == '/' && chars.get(i + 1) == Some(&'/')) {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                if chars[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 2;
        } else if c == '"' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += 1;
            }
            toks.push((
                Tok::Str(chars[start..i.min(chars.len())].iter().collect()),
                line,
            ));
            i += 1;
        } else if c == '{' {
            toks.push((Tok::Open, line));
            i += 1;
        } else if c == '}' {
            toks.push((Tok::Close, line));
            i += 1;
        } else if c == ';' {
            toks.push((Tok::Semi, line));
            i += 1;
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !"\"{};".contains(chars[i]) {
                i += 1;
            }
            toks.push((Tok::Word(chars[start..i].iter().collect()), line));
        }
    }
    let mut out: Vec<(String, String, usize)> = Vec::new();
    let mut scope: Vec<String> = Vec::new();
    let mut lists: Vec<Vec<String>> = Vec::new();
    let mut k = 0;
    let join = |scope: &[String], w: &str| {
        let mut s = scope.join("::");
        if !s.is_empty() {
            s.push_str("::");
        }
        s.push_str(w);
        s
    };
    while k < toks.len() {
        match &toks[k].0 {
            Tok::Word(w) => match toks.get(k + 1).map(|t| &t.0) {
                Some(Tok::Str(v)) => {
                    out.push((join(&scope, w), v.clone(), toks[k].1));
                    k += 2;
                }
                Some(Tok::Open) => {
                    scope.push(w.clone());
                    lists.push(Vec::new());
                    k += 2;
                }
                _ => k += 1,
            },
            Tok::Str(v) => {
                if let Some(l) = lists.last_mut() {
                    l.push(v.clone());
                }
                k += 1;
            }
            Tok::Close => {
                if let (Some(items), Some(name)) = (lists.pop(), scope.last().cloned())
                    && !items.is_empty()
                {
                    scope.pop();
                    out.push((join(&scope, &name), items.join(", "), toks[k].1));
                } else {
                    scope.pop();
                }
                k += 1;
            }
            Tok::Open | Tok::Semi => k += 1,
        }
    }
    out
}

/// Values of a dotted key in a JSON document; `name[]` maps over an array.
pub fn profile_values(j: &serde_json::Value, key: &str) -> Vec<serde_json::Value> {
    let mut cur = vec![j.clone()];
    for part in key.split('.') {
        let (name, each) = match part.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (part, false),
        };
        let mut next = Vec::new();
        for v in cur {
            if let Some(x) = v.get(name) {
                if each {
                    if let Some(a) = x.as_array() {
                        next.extend(a.iter().cloned());
                    }
                } else if !x.is_null() {
                    next.push(x.clone());
                }
            }
        }
        cur = next;
    }
    // Flatten a trailing array of scalars.
    cur.into_iter()
        .flat_map(|v| match v {
            serde_json::Value::Array(a) => a,
            other => vec![other],
        })
        .collect()
}

fn walk(cx: &AuditCx, roots: &[String]) -> Result<Walk, String> {
    let uids: BTreeSet<u32> = cx.facts.accounts.passwd.entries().map(|p| p.uid).collect();
    let gids: BTreeSet<u32> = cx.facts.accounts.group.entries().map(|g| g.gid).collect();
    let base = cx.root.path().to_path_buf();
    let root_dev = std::fs::metadata(&base)
        .map_err(|e| format!("inspecting {}: {e}", base.display()))?
        .dev();
    // Split the work by first-level directory so both cores walk.
    let mut starts: Vec<PathBuf> = Vec::new();
    let mut top_hits = Walk::default();
    for r in roots {
        let p = if r.trim_matches('/').is_empty() {
            base.clone()
        } else {
            match rel(r) {
                Some(rr) => cx.root.resolve(&rr),
                None => continue,
            }
        };
        if p == base {
            for e in std::fs::read_dir(&p).map_err(|e| format!("listing {}: {e}", p.display()))? {
                let Ok(e) = e else { continue };
                let name = e.file_name().to_string_lossy().into_owned();
                if ["proc", "sys", "dev", "run"].contains(&name.as_str()) {
                    continue;
                }
                starts.push(e.path());
            }
            visit(&base, &p, root_dev, &uids, &gids, &mut top_hits, false);
        } else {
            starts.push(p);
        }
    }
    let n = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let parts: Vec<Walk> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    let mut w = Walk::default();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(p) = starts.get(i) else { break };
                        visit(&base, p, root_dev, &uids, &gids, &mut w, true);
                    }
                    w
                })
            })
            .collect();
        hs.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let mut out = top_hits;
    out.roots = roots.to_vec();
    for p in parts {
        out.ww_files.extend(p.ww_files);
        out.ww_dirs.extend(p.ww_dirs);
        out.no_user.extend(p.no_user);
        out.no_group.extend(p.no_group);
        out.visited += p.visited;
    }
    out.ww_files.sort_by(|a, b| a.path.cmp(&b.path));
    out.ww_dirs.sort_by(|a, b| a.path.cmp(&b.path));
    out.no_user.sort();
    out.no_group.sort();
    Ok(out)
}

fn visit(
    base: &Path,
    p: &Path,
    dev: u64,
    uids: &BTreeSet<u32>,
    gids: &BTreeSet<u32>,
    w: &mut Walk,
    recurse: bool,
) {
    let Ok(md) = std::fs::symlink_metadata(p) else {
        return;
    };
    w.visited += 1;
    let shown = || {
        let r = p.strip_prefix(base).unwrap_or(p);
        format!("/{}", r.display())
    };
    let ft = md.file_type();
    let mode = md.mode() & 0o7777;
    if !ft.is_symlink() {
        if ft.is_file() && mode & 0o002 != 0 {
            w.ww_files.push(WalkHit {
                path: shown(),
                mode,
            });
        }
        if ft.is_dir() && mode & 0o002 != 0 && mode & 0o1000 == 0 {
            w.ww_dirs.push(WalkHit {
                path: shown(),
                mode,
            });
        }
    }
    if !uids.contains(&md.uid()) {
        w.no_user.push(format!("{} (uid {})", shown(), md.uid()));
    }
    if !gids.contains(&md.gid()) {
        w.no_group.push(format!("{} (gid {})", shown(), md.gid()));
    }
    if recurse
        && ft.is_dir()
        && md.dev() == dev
        && let Ok(rd) = std::fs::read_dir(p)
    {
        for e in rd.flatten() {
            visit(base, &e.path(), dev, uids, gids, w, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_conf_forms() {
        let t = r#"// comment
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
Unattended-Upgrade::Allowed-Origins {
    "${distro_id}:${distro_codename}-security";
    "${distro_id}ESMApps:${distro_codename}-apps-security";
};
APT {
  Periodic {
    AutocleanInterval "7";
  };
};
/* block
comment */
Unattended-Upgrade::Automatic-Reboot "false";
"#;
        let v = parse_apt_conf(t);
        let get = |k: &str| {
            v.iter()
                .find(|(kk, _, _)| kk == k)
                .map(|(_, v, l)| (v.as_str(), *l))
        };
        assert_eq!(get("APT::Periodic::Unattended-Upgrade"), Some(("1", 3)));
        assert_eq!(get("APT::Periodic::AutocleanInterval"), Some(("7", 10)));
        assert_eq!(
            get("Unattended-Upgrade::Allowed-Origins").map(|x| x.0),
            Some(
                "${distro_id}:${distro_codename}-security, ${distro_id}ESMApps:${distro_codename}-apps-security"
            )
        );
        assert_eq!(
            get("Unattended-Upgrade::Automatic-Reboot"),
            Some(("false", 15))
        );
    }

    #[test]
    fn profile_lookup() {
        let j = serde_json::json!({"ssh": {"port": 22}, "users": [{"name": "a", "groups": ["sudo"]}, {"name": "b"}], "x": null});
        assert_eq!(profile_values(&j, "ssh.port"), vec![serde_json::json!(22)]);
        assert_eq!(profile_values(&j, "users[].name").len(), 2);
        assert_eq!(
            profile_values(&j, "users[].groups"),
            vec![serde_json::json!("sudo")]
        );
        assert!(profile_values(&j, "x").is_empty());
        assert!(profile_values(&j, "nope.x").is_empty());
    }

    #[test]
    fn ini() {
        let v = parse_ini("a = 1\n[sshd]\nenabled = true\n# c\n; d\nport=ssh\n");
        assert_eq!(v[0], ("".into(), "a".into(), "1".into(), 1));
        assert_eq!(v[2], ("sshd".into(), "port".into(), "ssh".into(), 6));
    }
}
