//! Helpers shared by the network modules (sysctl, firewall, fail2ban): what else runs on the
//! host (Docker), whether this process may change kernel network state here (containers,
//! capabilities), and enabling systemd units inside a root.

use crate::engine::{Context, Planner};
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::root::RelPath;

/// Packages and binaries that mean "Docker (or a compatible engine) runs containers here".
const DOCKER_PACKAGES: &[&str] = &["docker-ce", "docker.io", "moby-engine", "podman-docker"];
const DOCKER_BINARIES: &[&str] = &["usr/bin/dockerd", "usr/sbin/dockerd"];

/// True when Docker is installed in the target (package or `dockerd` binary).
pub fn docker_installed(cx: &Context) -> bool {
    DOCKER_PACKAGES
        .iter()
        .any(|p| cx.facts.package(p).is_some())
        || DOCKER_BINARIES
            .iter()
            .any(|b| cx.root.exists(&RelPath::lit(b)))
}

/// Linux capability number of `CAP_NET_ADMIN`.
const CAP_NET_ADMIN: u32 = 12;

/// Whether this process holds `CAP_NET_ADMIN` (effective set), from `/proc/self/status`.
/// `None` when it cannot be read.
pub fn has_net_admin() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    let bits = u64::from_str_radix(hex, 16).ok()?;
    Some(bits & (1 << CAP_NET_ADMIN) != 0)
}

/// Why the kernel's network state (firewall, `net.*` sysctls) cannot be changed from here, if
/// it cannot: only judged for the live root (`/`), where bollwerk would act on the running
/// kernel. `None` means "go ahead".
pub fn net_admin_denied(cx: &Context) -> Option<String> {
    if !cx.root.is_host() {
        return None;
    }
    match has_net_admin() {
        Some(false) => Some(format!(
            "this process lacks CAP_NET_ADMIN{} (an unprivileged container or one sharing a network namespace it may not configure)",
            match &cx.facts.container {
                Some(c) => format!(" inside a {c} container"),
                None => String::new(),
            }
        )),
        _ => None,
    }
}

/// Where a unit file lives in the root (`/lib/systemd/system/x.service` …), as seen inside it.
pub fn unit_path(cx: &Context, unit: &str) -> Option<String> {
    // `/lib/systemd/system` first: that is the path Debian's `systemctl enable` links to.
    for dir in [
        "etc/systemd/system",
        "lib/systemd/system",
        "usr/lib/systemd/system",
    ] {
        let rel = RelPath::new(&format!("{dir}/{unit}")).ok()?;
        if matches!(cx.root.entry(&rel), Ok(e) if e.exists()) {
            return Some(rel.absolute());
        }
    }
    None
}

/// The `WantedBy=` targets of a unit file's `[Install]` section.
pub fn wanted_by(text: &str) -> Vec<String> {
    let mut in_install = false;
    let mut out = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_install = l == "[Install]";
            continue;
        }
        if in_install && let Some(v) = l.strip_prefix("WantedBy=") {
            out.extend(v.split_whitespace().map(str::to_string));
        }
    }
    out
}

/// Plans enabling `unit` in the root the way `systemctl enable` does: a symlink in each
/// `<target>.wants/` of its `WantedBy=`. When the unit is not installed yet (its package is
/// installed by this run), plans `systemctl enable` instead, watching `etc/systemd/system` so
/// rollback restores the links. Returns true when something was planned.
///
/// # Errors
/// When the root cannot be read.
pub fn enable_unit(cx: &Context, p: &mut Planner, unit: &str) -> Result<bool> {
    let Some(path) = unit_path(cx, unit) else {
        p.run(
            Cmd::in_root("/usr/bin/systemctl", &["enable", unit]),
            vec![RelPath::lit("etc/systemd/system")],
            format!("enable {unit} (installed in this run)"),
        );
        return Ok(true);
    };
    let rel = RelPath::new(&path).map_err(Error::Runtime)?;
    let text = cx.root.read_string(&rel)?.unwrap_or_default();
    let mut changed = false;
    for target in wanted_by(&text) {
        let link = RelPath::new(&format!("etc/systemd/system/{target}.wants/{unit}"))
            .map_err(Error::Runtime)?;
        // A link that is already there (to /lib/… or /usr/lib/…) means enabled: leave it.
        if let crate::root::Entry::Symlink { target: t, .. } = cx.root.entry(&link)?
            && t.ends_with(&format!("/{unit}"))
        {
            continue;
        }
        if let Some(parent) = link.parent() {
            p.dirs(&cx.root, &parent, crate::root::Perms::root(0o755))?;
        }
        changed |= p.symlink(&cx.root, &link, &path, format!("enable {unit} ({target})"))?;
    }
    Ok(changed)
}

/// True when `unit` is enabled in the root (a link in some `*.wants/` directory).
pub fn unit_enabled(cx: &Context, unit: &str) -> bool {
    let dir = RelPath::lit("etc/systemd/system");
    let Ok(names) = cx.root.list_dir(&dir) else {
        return false;
    };
    names.iter().filter(|n| n.ends_with(".wants")).any(|n| {
        dir.join(&format!("{n}/{unit}"))
            .map(|p| cx.root.exists(&p))
            .unwrap_or(false)
    })
}

/// An IPv4 or IPv6 address or network (`203.0.113.7`, `10.0.0.0/8`, `2001:db8::/32`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    addr: std::net::IpAddr,
    prefix: u8,
    text: String,
}

impl Cidr {
    /// The network address as written.
    pub fn addr(&self) -> std::net::IpAddr {
        self.addr
    }

    /// Prefix length (32/128 for a single address).
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True for IPv6.
    pub fn is_v6(&self) -> bool {
        self.addr.is_ipv6()
    }

    /// True when `ip` lies inside this network.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        match (self.addr, ip) {
            (std::net::IpAddr::V4(n), std::net::IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (std::net::IpAddr::V6(n), std::net::IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            (std::net::IpAddr::V6(_), std::net::IpAddr::V4(a)) => {
                self.contains(std::net::IpAddr::V6(a.to_ipv6_mapped()))
            }
            (std::net::IpAddr::V4(_), std::net::IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                Some(v4) => self.contains(std::net::IpAddr::V4(v4)),
                None => false,
            },
        }
    }

    /// `addr/prefix` (the prefix always written).
    pub fn network(&self) -> String {
        format!("{}/{}", self.addr, self.prefix)
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        let bad = || {
            format!(
                "`{s}` is not an IP address or network like 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32"
            )
        };
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.as_str(), None),
        };
        let addr: std::net::IpAddr = a.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv6() { 128 } else { 32 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr {
            addr,
            prefix,
            text: s.trim().to_string(),
        })
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.text
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::fmt::Debug for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl schemars::JsonSchema for Cidr {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Cidr".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "description": "IP address or network: 203.0.113.7, 10.0.0.0/8, 2001:db8::/32"})
    }
}

/// True when ufw is installed and enabled in the root (`ENABLED=yes` in `etc/ufw/ufw.conf`,
/// what `ufw.service` reads at boot and `ufw enable` writes).
pub fn ufw_active(cx: &Context) -> bool {
    cx.root.exists(&RelPath::lit("usr/sbin/ufw"))
        && cx
            .root
            .read_string(&RelPath::lit("etc/ufw/ufw.conf"))
            .ok()
            .flatten()
            .is_some_and(|t| {
                t.lines()
                    .any(|l| l.trim().trim_matches('"') == "ENABLED=yes")
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_section() {
        let unit = "[Unit]\nWantedBy=nope\n[Service]\nExecStart=x\n[Install]\nWantedBy=sysinit.target multi-user.target\nAlias=y\n";
        assert_eq!(wanted_by(unit), vec!["sysinit.target", "multi-user.target"]);
        assert!(wanted_by("[Service]\n").is_empty());
    }

    #[test]
    fn cidrs() {
        let c = Cidr::try_from("10.0.0.0/8".to_string()).unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        let c = Cidr::try_from("2001:db8::/32".to_string()).unwrap();
        assert!(c.is_v6() && c.contains("2001:db8:1::5".parse().unwrap()));
        let c = Cidr::try_from("203.0.113.7".to_string()).unwrap();
        assert_eq!(c.network(), "203.0.113.7/32");
        for bad in ["10.0.0.0/33", "x", "10.0.0", "::/129", "1.2.3.4/"] {
            assert!(Cidr::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
