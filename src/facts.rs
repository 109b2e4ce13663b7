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
use crate::etcdb::{Accounts, Db};
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
        Ok(Facts {
            os,
            container,
            live,
            packages,
            accounts,
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
    Ok(Accounts {
        passwd: Db::parse(&read("etc/passwd")?.unwrap_or_default()),
        group: Db::parse(&read("etc/group")?.unwrap_or_default()),
        shadow: read("etc/shadow")?.map(|t| Db::parse(&t)),
        gshadow: read("etc/gshadow")?.map(|t| Db::parse(&t)),
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
