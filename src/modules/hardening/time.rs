//! Time synchronisation (`[time]`): one daemon, enabled, with the profile's servers (CIS
//! 2.1.1.1, 2.1.2.x): systemd-timesyncd with the drop-in
//! `etc/systemd/timesyncd.conf.d/bollwerk.conf`, or chrony with
//! `etc/chrony/sources.d/bollwerk.sources`. The other time daemons' units are disabled, so
//! only one disciplines the clock. Enablement is planned as the symlinks `systemctl enable`
//! makes. Not applicable in containers (the host keeps the clock).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Level, Plan, Planner};
use crate::error::Result;
use crate::exec::Cmd;
use crate::modules::Module;
use crate::modules::users::MANAGED_HEADER;
use crate::profile::types::Hostname;
use crate::profile::{Layer, ProfileError};
use crate::root::{Perms, RelPath};

use super::util::{is_enabled, not_applicable_in_container, plan_disable, plan_enable};

/// The timesyncd drop-in bollwerk owns.
pub const TIMESYNCD_DROPIN: &str = "etc/systemd/timesyncd.conf.d/bollwerk.conf";
/// The chrony sources file bollwerk owns.
pub const CHRONY_SOURCES: &str = "etc/chrony/sources.d/bollwerk.sources";

/// The time synchronisation daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TimeDaemon {
    /// systemd-timesyncd (SNTP client; the Debian/Ubuntu default).
    Timesyncd,
    /// chrony (full NTP).
    Chrony,
}

impl TimeDaemon {
    fn unit(self) -> &'static str {
        match self {
            TimeDaemon::Timesyncd => "systemd-timesyncd.service",
            TimeDaemon::Chrony => "chrony.service",
        }
    }

    fn package(self) -> &'static str {
        match self {
            TimeDaemon::Timesyncd => "systemd-timesyncd",
            TimeDaemon::Chrony => "chrony",
        }
    }
}

/// Units of time daemons: only the chosen one may be enabled.
const TIME_UNITS: &[&str] = &[
    "systemd-timesyncd.service",
    "chrony.service",
    "ntp.service",
    "ntpsec.service",
    "openntpd.service",
];

/// `[time]`: clock synchronisation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeSection {
    /// "timesyncd" or "chrony": the one daemon that is enabled (the package is installed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<TimeDaemon>,
    /// NTP servers (host names or addresses), e.g. ["0.de.pool.ntp.org", "1.de.pool.ntp.org"].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<String>>,
    /// systemd-timesyncd only: servers used when none of `servers` answers (`FallbackNTP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_servers: Option<Vec<String>>,
}

fn valid_server(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok() || s.parse::<Hostname>().is_ok()
}

/// Checks server names.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(s: &TimeSection, layers: &[Layer]) -> std::result::Result<(), ProfileError> {
    for (key, list) in [
        ("servers", &s.servers),
        ("fallback_servers", &s.fallback_servers),
    ] {
        if let Some(bad) = list.iter().flatten().find(|v| !valid_server(v)) {
            return Err(crate::profile::error_at(
                layers,
                &["time", key],
                format!("{bad:?} is neither a host name nor an IP address"),
            )
            .with_hint("e.g. \"0.de.pool.ntp.org\" or \"192.0.2.10\""));
        }
    }
    if s.fallback_servers.is_some() && s.daemon == Some(TimeDaemon::Chrony) {
        return Err(crate::profile::error_at(
            layers,
            &["time", "fallback_servers"],
            "fallback_servers is a systemd-timesyncd setting",
        )
        .with_hint("with daemon = \"chrony\", list every server in `servers`"));
    }
    Ok(())
}

/// Renders the timesyncd drop-in.
pub fn render_timesyncd(s: &TimeSection) -> String {
    let mut out = format!("{MANAGED_HEADER}\n[Time]\n");
    if let Some(v) = &s.servers {
        out.push_str(&format!("NTP={}\n", v.join(" ")));
    }
    if let Some(v) = &s.fallback_servers {
        out.push_str(&format!("FallbackNTP={}\n", v.join(" ")));
    }
    out
}

/// Renders the chrony sources file.
pub fn render_chrony(s: &TimeSection) -> String {
    let mut out = format!("{MANAGED_HEADER}\n");
    for v in s.servers.iter().flatten() {
        out.push_str(&format!("server {v} iburst\n"));
    }
    out
}

/// The time module.
pub struct Time;

impl Module for Time {
    fn name(&self) -> &'static str {
        "time"
    }

    fn required_packages(&self, cx: &Context) -> Vec<String> {
        match (&cx.profile.profile.time, &cx.facts.container) {
            (
                Some(TimeSection {
                    daemon: Some(d), ..
                }),
                None,
            ) => vec![d.package().into()],
            _ => Vec::new(),
        }
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(s) = &cx.profile.profile.time else {
            return Ok(());
        };
        let mut p = Planner::new(self.name(), plan);
        if not_applicable_in_container(
            cx,
            &mut p,
            "time",
            "the host's kernel keeps the clock, time daemons do not run in containers",
        ) {
            return Ok(());
        }
        let daemon = s.daemon.unwrap_or(TimeDaemon::Timesyncd);
        let mut changed = false;
        match daemon {
            TimeDaemon::Timesyncd => {
                if s.servers.is_some() || s.fallback_servers.is_some() {
                    changed |= p.file(
                        &cx.root,
                        &RelPath::lit(TIMESYNCD_DROPIN),
                        render_timesyncd(s),
                        Perms::root(0o644),
                        "time servers for systemd-timesyncd",
                    )?;
                }
            }
            TimeDaemon::Chrony => {
                if s.servers.is_some() {
                    let conf = cx
                        .root
                        .read_string(&RelPath::lit("etc/chrony/chrony.conf"))?
                        .unwrap_or_default();
                    if !conf.is_empty()
                        && !conf.lines().any(|l| {
                            l.trim_start()
                                .starts_with("sourcedir /etc/chrony/sources.d")
                        })
                    {
                        p.note(
                            Level::Warning,
                            "etc/chrony/chrony.conf has no `sourcedir /etc/chrony/sources.d`: the servers in bollwerk.sources are not used",
                        );
                    }
                    changed |= p.file(
                        &cx.root,
                        &RelPath::lit(CHRONY_SOURCES),
                        render_chrony(s),
                        Perms::root(0o644),
                        "time servers for chrony",
                    )?;
                }
            }
        }
        if s.daemon.is_some() {
            for other in TIME_UNITS.iter().filter(|u| **u != daemon.unit()) {
                if plan_disable(cx, &mut p, other)? {
                    changed = true;
                }
            }
            let requested = p
                .plan()
                .requested_packages
                .iter()
                .any(|(_, n)| n == daemon.package());
            if !is_enabled(cx, p.plan(), daemon.unit())? {
                if super::util::find_unit(cx, p.plan(), daemon.unit())?.is_some() {
                    changed |= plan_enable(cx, &mut p, daemon.unit())?;
                } else if requested {
                    p.note(
                        Level::Info,
                        format!(
                            "{} is enabled by its package when it is installed",
                            daemon.unit()
                        ),
                    );
                } else {
                    p.note(
                        Level::Warning,
                        format!("{} is not installed in the target", daemon.package()),
                    );
                }
            }
        }
        if changed {
            p.handler(Cmd::in_root(
                "/usr/bin/systemctl",
                &["restart", daemon.unit()],
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_servers() {
        let s = TimeSection {
            daemon: Some(TimeDaemon::Timesyncd),
            servers: Some(vec!["0.de.pool.ntp.org".into(), "192.0.2.1".into()]),
            fallback_servers: Some(vec!["ntp.ubuntu.com".into()]),
        };
        assert_eq!(
            render_timesyncd(&s),
            format!(
                "{MANAGED_HEADER}\n[Time]\nNTP=0.de.pool.ntp.org 192.0.2.1\nFallbackNTP=ntp.ubuntu.com\n"
            )
        );
        assert!(render_chrony(&s).contains("server 192.0.2.1 iburst\n"));
        assert!(valid_server("2001:db8::1") && !valid_server("bad name"));
    }
}
