//! Facts about the target root, read once per run: OS release, container type, whether the
//! target is the live system, installed packages, and the account databases.
//!
//! Everything is read from the root's own files (`etc/os-release`, `var/lib/dpkg/status`,
//! `etc/passwd` …). Live-system facts (`/proc`, `/run/systemd`) are only consulted when the
//! root is `/`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::etcdb::Accounts;
use crate::exec::Runner;
use crate::root::{RelPath, Root};

/// `etc/os-release` fields bollwerk uses.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID` (`debian`, `ubuntu`).
    pub id: String,
    /// `ID_LIKE`.
    pub id_like: String,
    /// `VERSION_ID` (`12`, `22.04`).
    pub version_id: String,
    /// `VERSION_CODENAME` (`bookworm`, `jammy`).
    pub codename: String,
    /// `PRETTY_NAME`.
    pub pretty_name: String,
}

impl OsRelease {
    /// Parses os-release text.
    pub fn parse(text: &str) -> OsRelease {
        let mut o = OsRelease::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
            match k.trim() {
                "ID" => o.id = v,
                "ID_LIKE" => o.id_like = v,
                "VERSION_ID" => o.version_id = v,
                "VERSION_CODENAME" => o.codename = v,
                "PRETTY_NAME" => o.pretty_name = v,
                _ => {}
            }
        }
        o
    }

    /// True for Debian and derivatives (Ubuntu included).
    pub fn is_debian_family(&self) -> bool {
        self.id == "debian" || self.id == "ubuntu" || self.id_like.split(' ').any(|s| s == "debian")
    }

    /// True for Ubuntu.
    pub fn is_ubuntu(&self) -> bool {
        self.id == "ubuntu"
    }
}

/// Facts about the target.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    /// OS release.
    pub os: OsRelease,
    /// Container technology the target runs in (`lxc`, `systemd-nspawn`, `docker` …), if any.
    pub container: Option<String>,
    /// True when the root is `/` and systemd is the running init: services may be reloaded
    /// and kernel settings applied.
    pub live: bool,
    /// Installed packages (dpkg status `install ok installed`): name → version.
    pub packages: BTreeMap<String, String>,
    /// The root's account databases.
    #[serde(skip)]
    pub accounts: Accounts,
    /// Memory and CPUs available, honouring cgroup limits (see [`Resources`]).
    pub resources: Resources,
}

impl Facts {
    /// Reads facts from `root`.
    ///
    /// # Errors
    /// When a present file cannot be read.
    pub fn gather(root: &Root, _runner: &dyn Runner) -> Result<Facts> {
        let os = OsRelease::parse(
            &root
                .read_string(&RelPath::lit("etc/os-release"))?
                .or(root.read_string(&RelPath::lit("usr/lib/os-release"))?)
                .unwrap_or_default(),
        );
        let container = detect_container(root)?;
        let live = root.is_host() && Path::new("/run/systemd/system").is_dir();
        let packages = parse_dpkg_status(
            &root
                .read_string(&RelPath::lit("var/lib/dpkg/status"))?
                .unwrap_or_default(),
        );
        let accounts = read_accounts(root)?;
        let resources = Resources::for_root(root);
        Ok(Facts {
            os,
            container,
            live,
            packages,
            accounts,
            resources,
        })
    }

    /// The installed version of a package.
    pub fn package(&self, name: &str) -> Option<&str> {
        self.packages.get(name).map(String::as_str)
    }
}

/// Reads the four account databases of a root (missing files are empty databases).
///
/// # Errors
/// When a present file cannot be read.
pub fn read_accounts(root: &Root) -> Result<Accounts> {
    let read = |p: &'static str| -> Result<Option<String>> { root.read_string(&RelPath::lit(p)) };
    use crate::etcdb::parse_db as bounded;
    Ok(Accounts {
        passwd: bounded("etc/passwd", &read("etc/passwd")?.unwrap_or_default())?,
        group: bounded("etc/group", &read("etc/group")?.unwrap_or_default())?,
        shadow: read("etc/shadow")?
            .map(|t| bounded("etc/shadow", &t))
            .transpose()?,
        gshadow: read("etc/gshadow")?
            .map(|t| bounded("etc/gshadow", &t))
            .transpose()?,
    })
}

/// Container detection: `run/systemd/container` in the root (written by systemd inside
/// containers, and usable as a marker in test roots), then, for the live system only,
/// `/proc/1/environ` and well-known marker files.
fn detect_container(root: &Root) -> Result<Option<String>> {
    if let Some(t) = root.read_string(&RelPath::lit("run/systemd/container"))? {
        let t = t.trim();
        if !t.is_empty() {
            return Ok(Some(t.to_string()));
        }
    }
    if !root.is_host() {
        return Ok(None);
    }
    if let Ok(env) = std::fs::read("/proc/1/environ") {
        for var in env.split(|b| *b == 0) {
            if let Some(v) = var.strip_prefix(b"container=") {
                let v = String::from_utf8_lossy(v).trim().to_string();
                if !v.is_empty() {
                    return Ok(Some(v));
                }
            }
        }
    }
    if Path::new("/.dockerenv").exists() {
        return Ok(Some("docker".into()));
    }
    if Path::new("/run/.containerenv").exists() {
        return Ok(Some("podman".into()));
    }
    Ok(None)
}

/// Parses dpkg's status database into installed package → version.
pub fn parse_dpkg_status(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for para in text.split("\n\n") {
        let mut name = None;
        let mut version = None;
        let mut installed = false;
        for line in para.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Status: ") {
                installed = v.trim().ends_with(" installed");
            }
        }
        if let (Some(n), Some(v), true) = (name, version, installed) {
            out.insert(n, v);
        }
    }
    out
}

// -- services (issue 4): memory and CPUs --

/// Memory and CPUs available to the target, each as the host's figure and the limits of the
/// cgroup bollwerk runs in (cgroup v2 `memory.max`, `cpu.max`, `cpuset.cpus.effective` along
/// the path to the cgroup namespace's root; v1 `memory.limit_in_bytes` and CFS quota at the
/// root). An LXC with 2 GiB on a 64 GiB host has `memory() == 2 GiB`.
///
/// Read from the live `/proc` and `/sys` only when the root is `/`. For another root they are
/// read from `<root>/proc` and `<root>/sys` when those hold plain files (a test fixture or an
/// image that describes its hardware), never from a mounted procfs/sysfs, which would describe
/// the machine running bollwerk rather than the target.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Resources {
    /// `MemTotal` of `proc/meminfo`, bytes.
    pub host_memory: Option<u64>,
    /// The lowest cgroup memory limit, bytes (`None`: unlimited or unknown).
    pub cgroup_memory: Option<u64>,
    /// Processors listed in `proc/cpuinfo`.
    pub host_cpus: Option<u32>,
    /// CPU quota of the cgroup (`cpu.max` quota / period, rounded up).
    pub cgroup_cpus: Option<u32>,
    /// CPUs in the cgroup's cpuset.
    pub cpuset_cpus: Option<u32>,
    /// Where the figures come from (`/proc and /sys`, `<root>/proc and <root>/sys`, or empty).
    pub source: String,
}

impl Resources {
    /// Usable memory in bytes: the host's, lowered to the cgroup limit.
    pub fn memory(&self) -> Option<u64> {
        match (self.host_memory, self.cgroup_memory) {
            (Some(h), Some(c)) => Some(h.min(c)),
            (h, c) => h.or(c),
        }
    }

    /// Usable CPUs: the host's, lowered to the cgroup quota and cpuset.
    pub fn cpus(&self) -> Option<u32> {
        [self.host_cpus, self.cgroup_cpus, self.cpuset_cpus]
            .into_iter()
            .flatten()
            .min()
    }

    /// Reads the resources that apply to `root` (see the type's documentation).
    pub fn for_root(root: &Root) -> Resources {
        if root.is_host() {
            return Resources::read(Path::new("/proc"), Path::new("/sys"), "/proc and /sys");
        }
        let (proc_dir, sys_dir) = (root.path().join("proc"), root.path().join("sys"));
        if is_kernel_fs(&proc_dir)
            || is_kernel_fs(&sys_dir.join("fs/cgroup"))
            || is_kernel_fs(&sys_dir)
        {
            return Resources::default();
        }
        let r = Resources::read(&proc_dir, &sys_dir, "<root>/proc and <root>/sys");
        if r.host_memory.is_none() && r.host_cpus.is_none() && r.cgroup_memory.is_none() {
            return Resources::default();
        }
        r
    }

    /// Reads `meminfo`, `cpuinfo` and `self/cgroup` below `proc_dir` and the cgroup files below
    /// `sys_dir/fs/cgroup`.
    pub fn read(proc_dir: &Path, sys_dir: &Path, source: &str) -> Resources {
        let read = |p: &Path| std::fs::read_to_string(p).ok();
        let host_memory = read(&proc_dir.join("meminfo")).and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map(|kb| kb * 1024)
        });
        let host_cpus = read(&proc_dir.join("cpuinfo"))
            .map(|t| t.lines().filter(|l| l.starts_with("processor")).count() as u32)
            .filter(|n| *n > 0);
        let cg = sys_dir.join("fs/cgroup");
        // The v2 path of this process, relative to the (namespace's) root.
        let own = read(&proc_dir.join("self/cgroup"))
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            })
            .unwrap_or_else(|| "/".into());
        let mut dirs = Vec::new();
        let mut cur = std::path::PathBuf::from(own.trim_start_matches('/'));
        loop {
            dirs.push(cg.join(&cur));
            if !cur.pop() {
                break;
            }
        }
        dirs.dedup();
        let mut cgroup_memory: Option<u64> = None;
        let mut cgroup_cpus: Option<u32> = None;
        let mut cpuset_cpus: Option<u32> = None;
        let lower64 = |cur: &mut Option<u64>, v: u64| *cur = Some(cur.map_or(v, |c| c.min(v)));
        let lower32 = |cur: &mut Option<u32>, v: u32| *cur = Some(cur.map_or(v, |c| c.min(v)));
        for d in &dirs {
            if let Some(v) = read(&d.join("memory.max")).and_then(|t| t.trim().parse::<u64>().ok())
            {
                lower64(&mut cgroup_memory, v);
            }
            if let Some(t) = read(&d.join("cpu.max")) {
                let mut w = t.split_whitespace();
                if let (Some(Ok(q)), Some(Ok(p))) = (
                    w.next().map(str::parse::<u64>),
                    w.next().map(str::parse::<u64>),
                ) && p > 0
                {
                    lower32(&mut cgroup_cpus, q.div_ceil(p).max(1) as u32);
                }
            }
            if let Some(n) = read(&d.join("cpuset.cpus.effective")).and_then(|t| count_cpu_list(&t))
            {
                lower32(&mut cpuset_cpus, n);
            }
        }
        // cgroup v1 (root of the hierarchy only).
        if let Some(v) = read(&cg.join("memory/memory.limit_in_bytes"))
            .and_then(|t| t.trim().parse::<u64>().ok())
            .filter(|v| *v < 1 << 60)
        {
            lower64(&mut cgroup_memory, v);
        }
        if let (Some(q), Some(p)) = (
            read(&cg.join("cpu/cpu.cfs_quota_us")).and_then(|t| t.trim().parse::<i64>().ok()),
            read(&cg.join("cpu/cpu.cfs_period_us")).and_then(|t| t.trim().parse::<i64>().ok()),
        ) && q > 0
            && p > 0
        {
            lower32(&mut cgroup_cpus, (q as u64).div_ceil(p as u64) as u32);
        }
        Resources {
            host_memory,
            cgroup_memory,
            host_cpus,
            cgroup_cpus,
            cpuset_cpus,
            source: source.to_string(),
        }
    }
}

/// Counts the CPUs of a list like `0-3,8,10-11`.
fn count_cpu_list(t: &str) -> Option<u32> {
    let mut n = 0;
    for part in t.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                n += b.checked_sub(a)? + 1;
            }
            None => {
                part.parse::<u32>().ok()?;
                n += 1;
            }
        }
    }
    (n > 0).then_some(n)
}

/// True when `p` is on procfs, sysfs or a cgroup file system (the live kernel's view).
fn is_kernel_fs(p: &Path) -> bool {
    use nix::sys::statfs::{
        CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, PROC_SUPER_MAGIC, SYSFS_MAGIC, statfs,
    };
    match statfs(p) {
        Ok(s) => {
            let t = s.filesystem_type();
            t == PROC_SUPER_MAGIC
                || t == SYSFS_MAGIC
                || t == CGROUP2_SUPER_MAGIC
                || t == CGROUP_SUPER_MAGIC
        }
        Err(_) => false,
    }
}

/// Days since 1970-01-01 (for `etc/shadow`).
pub fn days_since_epoch() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release() {
        let o = OsRelease::parse(
            "PRETTY_NAME=\"Ubuntu 22.04.4 LTS\"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"22.04\"\nVERSION_CODENAME=jammy\n",
        );
        assert_eq!(o.id, "ubuntu");
        assert_eq!(o.version_id, "22.04");
        assert!(o.is_debian_family());
    }

    #[test]
    fn resources_honour_cgroup_limits() {
        let d = tempfile::tempdir().unwrap();
        let w = |p: &str, t: &str| {
            let p = d.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, t).unwrap();
        };
        // A 2 GiB / 2-CPU LXC on a 64 GiB, 16-CPU host.
        w(
            "proc/meminfo",
            "MemTotal:       67108864 kB\nMemFree: 1 kB\n",
        );
        w("proc/cpuinfo", &"processor\t: 0\n\n".repeat(16));
        w("proc/self/cgroup", "0::/init.scope\n");
        w("sys/fs/cgroup/memory.max", "2147483648\n");
        w("sys/fs/cgroup/init.scope/memory.max", "max\n");
        w("sys/fs/cgroup/cpu.max", "200000 100000\n");
        w("sys/fs/cgroup/cpuset.cpus.effective", "0-3\n");
        let r = Resources::read(&d.path().join("proc"), &d.path().join("sys"), "test");
        assert_eq!(r.host_memory, Some(64 << 30));
        assert_eq!(r.memory(), Some(2 << 30));
        assert_eq!(r.host_cpus, Some(16));
        assert_eq!(r.cpuset_cpus, Some(4));
        assert_eq!(r.cpus(), Some(2));
        // Unlimited cgroups leave the host's figures; a fractional quota rounds up.
        w("sys/fs/cgroup/memory.max", "max\n");
        w("sys/fs/cgroup/cpu.max", "150000 100000\n");
        let r = Resources::read(&d.path().join("proc"), &d.path().join("sys"), "test");
        assert_eq!(r.memory(), Some(64 << 30));
        assert_eq!(r.cpus(), Some(2));
        assert_eq!(count_cpu_list("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpu_list(""), None);
    }

    #[test]
    fn live_kernel_files_are_not_taken_for_a_target_root() {
        assert!(is_kernel_fs(Path::new("/proc")));
        let d = tempfile::tempdir().unwrap();
        assert!(!is_kernel_fs(d.path()));
    }

    #[test]
    fn dpkg_status() {
        let s = "Package: openssh-server\nStatus: install ok installed\nVersion: 1:9.2p1-2+deb12u3\n\nPackage: telnet\nStatus: deinstall ok config-files\nVersion: 0.17\n";
        let p = parse_dpkg_status(s);
        assert_eq!(
            p.get("openssh-server").map(String::as_str),
            Some("1:9.2p1-2+deb12u3")
        );
        assert!(!p.contains_key("telnet"));
    }
}
