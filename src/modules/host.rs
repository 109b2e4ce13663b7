//! Host identity: `etc/hostname`, the `127.0.1.1` line of `etc/hosts`, and the time zone
//! (`etc/localtime` symlink plus `etc/timezone` on Debian-family systems).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Plan, Planner};
use crate::error::Result;
use crate::exec::Cmd;
use crate::modules::Module;
use crate::profile::types::{Hostname, Timezone};
use crate::root::{Perms, RelPath};

/// `[host]`: host name, time zone, root password.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostSection {
    /// Host name; a dotted name is taken as the FQDN and its first label as the short name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<Hostname>,
    /// Fully qualified name for `etc/hosts` (default: `hostname` when it contains a dot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<Hostname>,
    /// Keep the `127.0.1.1` line of `etc/hosts` in line with the host name (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manage_etc_hosts: Option<bool>,
    /// IANA time zone (`Europe/Berlin`, `UTC`); must exist in the target's `usr/share/zoneinfo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<Timezone>,
    /// Lock root's password (prefix the hash with `!`): root can then log in only with a key,
    /// if sshd allows it at all. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_root_password: Option<bool>,
}

/// The host module.
pub struct Host;

const HOSTNAME: &str = "etc/hostname";
const HOSTS: &str = "etc/hosts";
const LOCALTIME: &str = "etc/localtime";
const TIMEZONE: &str = "etc/timezone";

impl Module for Host {
    fn name(&self) -> &'static str {
        "host"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let h = &cx.profile.profile.host;
        let mut p = Planner::new(self.name(), plan);
        if let Some(name) = &h.hostname {
            let short = name
                .as_str()
                .split('.')
                .next()
                .unwrap_or(name.as_str())
                .to_string();
            let fqdn = h.fqdn.as_ref().map(|f| f.as_str().to_string()).or_else(|| {
                name.as_str()
                    .contains('.')
                    .then(|| name.as_str().to_string())
            });
            let hostname = RelPath::lit(HOSTNAME);
            if p.file(
                &cx.root,
                &hostname,
                format!("{short}\n"),
                Perms::root(0o644),
                format!("set host name to {short}"),
            )? {
                p.handler(Cmd::in_root("/usr/bin/hostname", &[&short]));
            }
            if h.manage_etc_hosts.unwrap_or(true) {
                let hosts = RelPath::lit(HOSTS);
                let current = cx.root.read_string(&hosts)?.unwrap_or_default();
                let perms = match cx.root.entry(&hosts)? {
                    crate::root::Entry::File { perms, .. } => perms,
                    _ => Perms::root(0o644),
                };
                let new = render_hosts(&current, &short, fqdn.as_deref());
                p.file(
                    &cx.root,
                    &hosts,
                    new,
                    perms,
                    format!("map 127.0.1.1 to {}", fqdn.as_deref().unwrap_or(&short)),
                )?;
            }
        }
        if let Some(tz) = &h.timezone {
            let zone = RelPath::new(&format!("usr/share/zoneinfo/{tz}"))
                .map_err(crate::error::Error::Runtime)?;
            if !cx.root.exists(&zone) {
                p.refuse(
                    format!(
                        "time zone {tz} is not in {} of the target (is tzdata installed?)",
                        zone
                    ),
                    "fix `host.timezone` (e.g. \"Europe/Berlin\" or \"UTC\") or install tzdata",
                );
            } else {
                p.symlink(
                    &cx.root,
                    &RelPath::lit(LOCALTIME),
                    &format!("/usr/share/zoneinfo/{tz}"),
                    format!("set time zone to {tz}"),
                )?;
                if cx.facts.os.is_debian_family() {
                    p.file(
                        &cx.root,
                        &RelPath::lit(TIMEZONE),
                        format!("{tz}\n"),
                        Perms::root(0o644),
                        format!("record time zone {tz}"),
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// Returns `etc/hosts` with exactly one `127.0.1.1` line naming this host, keeping every
/// other line as it was.
pub fn render_hosts(current: &str, short: &str, fqdn: Option<&str>) -> String {
    let names = match fqdn {
        Some(f) if f != short => format!("{f} {short}"),
        _ => short.to_string(),
    };
    let wanted = format!("127.0.1.1\t{names}");
    let mut out = Vec::new();
    let mut placed = false;
    for line in current.lines() {
        if line.split_whitespace().next() == Some("127.0.1.1") {
            if !placed {
                out.push(wanted.clone());
                placed = true;
            }
            continue;
        }
        out.push(line.to_string());
        if !placed && line.split_whitespace().next() == Some("127.0.0.1") {
            out.push(wanted.clone());
            placed = true;
        }
    }
    if !placed {
        out.insert(0, wanted);
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_line_is_replaced_or_inserted() {
        let cur = "127.0.0.1\tlocalhost\n127.0.1.1\told\n::1\tlocalhost\n";
        assert_eq!(
            render_hosts(cur, "app01", Some("app01.example.org")),
            "127.0.0.1\tlocalhost\n127.0.1.1\tapp01.example.org app01\n::1\tlocalhost\n"
        );
        assert_eq!(
            render_hosts("127.0.0.1 localhost\n", "x", None),
            "127.0.0.1 localhost\n127.0.1.1\tx\n"
        );
        assert_eq!(render_hosts("", "x", None), "127.0.1.1\tx\n");
        let once = render_hosts(cur, "a", None);
        assert_eq!(render_hosts(&once, "a", None), once);
    }
}
