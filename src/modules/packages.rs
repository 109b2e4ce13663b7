//! Packages: installs what the profile (`[packages].install`) and the other modules
//! ([`crate::modules::Module::required_packages`]) need and removes what `[packages].remove`
//! lists, with the target's own `apt-get`.
//!
//! Only missing packages are installed and only installed ones removed (read from the root's
//! dpkg status), so a converged host plans nothing. apt runs noninteractively with
//! `--no-install-recommends`, waits for a dpkg lock held by another apt (`apt-daily` on first
//! boot) instead of failing, and is retried on transient failures. Inside a root other than `/`
//! it uses the host's network and `usr/sbin/policy-rc.d` (exit 101) keeps maintainer scripts
//! from starting services for the duration; the file is journaled and removed afterwards.
//!
//! Rollback restores files only: packages installed or removed by a run stay as they are (the
//! journal lists the commands, `bollwerk rollback` says what it did not undo). Restoring dpkg's
//! files byte-for-byte behind dpkg's back would leave its database lying, so apt's commands
//! watch no paths.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration as StdDuration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Level, Plan, Planner};
use crate::error::Result;
use crate::exec::{Cmd, Retry};
use crate::modules::Module;
use crate::modules::users::MANAGED_HEADER;
use crate::profile::types::Duration;
use crate::profile::{Layer, ProfileError};
use crate::root::{Entry, Perms, RelPath};

/// A Debian package name (`[a-z0-9][a-z0-9+.-]+`, optionally `:arch`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PackageName(String);

impl PackageName {
    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name without an `:arch` qualifier.
    pub fn base(&self) -> &str {
        self.0.split(':').next().unwrap_or(&self.0)
    }
}

impl TryFrom<String> for PackageName {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        let (name, arch) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s.as_str(), None),
        };
        let ok_name = name.len() >= 2
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c));
        let ok_arch = arch.is_none_or(|a| {
            !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        });
        if ok_name && ok_arch {
            Ok(PackageName(s))
        } else {
            Err(format!(
                "`{s}` is not a Debian package name (lower-case letters, digits, `+`, `-`, `.`; at least 2 characters; optionally `:arch`)"
            ))
        }
    }
}

impl From<PackageName> for String {
    fn from(p: PackageName) -> String {
        p.0
    }
}

impl fmt::Display for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PackageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl JsonSchema for PackageName {
    fn schema_name() -> Cow<'static, str> {
        "PackageName".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "pattern": "^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?$", "description": "Debian package name"})
    }
}

/// `[packages]`: packages installed and removed with apt-get. Packages other modules need
/// (fail2ban, unattended-upgrades, logrotate …) are installed without being listed here.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PackagesSection {
    /// Packages to install when missing (`apt-get install --no-install-recommends`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<Vec<PackageName>>,
    /// Packages to remove when installed (`apt-get remove`; configuration files stay unless
    /// `purge = true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<Vec<PackageName>>,
    /// Remove with `apt-get purge`, deleting the packages' configuration files too. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge: Option<bool>,
    /// Install recommended packages too. Default false (`--no-install-recommends`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_recommends: Option<bool>,
    /// How long to wait while another apt or dpkg holds its lock (on first boot `apt-daily`
    /// often does) and to retry transient download failures. Default "10m".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_timeout: Option<Duration>,
}

/// The start of the note the packages module leaves when it runs before the network
/// ([`crate::engine::Options::offline`]): first boot's final stage installs them.
pub const DEFERRED_NOTE: &str = "package changes wait for the network (first boot's final stage)";

/// True when `plan` left package changes for later ([`DEFERRED_NOTE`]).
pub fn deferred(plan: &Plan) -> bool {
    plan.notes
        .iter()
        .any(|n| n.module == "packages" && n.message.starts_with(DEFERRED_NOTE))
}

/// The policy file that keeps maintainer scripts from starting services in a chroot.
pub const POLICY_RC_D: &str = "usr/sbin/policy-rc.d";
const APT_GET: &str = "/usr/bin/apt-get";
const DEFAULT_LOCK_TIMEOUT: StdDuration = StdDuration::from_secs(600);

/// Output of apt/dpkg that marks a failure as transient: worth waiting and trying again.
const TRANSIENT: &[&str] = &[
    "Could not get lock",
    "Unable to lock",
    "Unable to acquire the dpkg frontend lock",
    "is another process using it",
    "Temporary failure resolving",
    "Could not resolve",
    "Could not connect to",
    "Connection timed out",
    "Connection failed",
    "Failed to fetch",
    "Hash Sum mismatch",
    "Some index files failed to download",
];

/// Cross-field checks of `[packages]`.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(s: &PackagesSection, layers: &[Layer]) -> Result<(), ProfileError> {
    let install: BTreeSet<&str> = s.install.iter().flatten().map(|p| p.base()).collect();
    if let Some(both) = s
        .remove
        .iter()
        .flatten()
        .find(|p| install.contains(p.base()))
    {
        return Err(crate::profile::error_at(
            layers,
            &["packages", "remove"],
            format!("{both} is listed in both packages.install and packages.remove"),
        )
        .with_hint("keep it in one of the two lists"));
    }
    if let Some(t) = s.lock_timeout
        && t.secs() > 6 * 3600
    {
        return Err(crate::profile::error_at(
            layers,
            &["packages", "lock_timeout"],
            format!("lock_timeout of {} s is more than 6 hours", t.secs()),
        )
        .with_hint("a few minutes is enough for apt-daily to finish; the default is \"10m\""));
    }
    Ok(())
}

/// What dpkg says is on the target: installed packages, the virtual names they provide, and
/// packages left half-installed by an interrupted dpkg.
#[derive(Debug, Clone, Default)]
pub struct DpkgState {
    /// Installed package → version.
    pub installed: BTreeMap<String, String>,
    /// Virtual names provided by installed packages.
    pub provided: BTreeSet<String>,
    /// Packages in a state `dpkg --configure -a` must finish (unpacked, half-configured …).
    pub interrupted: Vec<String>,
}

impl DpkgState {
    /// Parses `var/lib/dpkg/status`.
    pub fn parse(text: &str) -> DpkgState {
        let mut st = DpkgState::default();
        for para in text.split("\n\n") {
            let (mut name, mut version, mut status, mut provides) = (None, None, None, None);
            for line in para.lines() {
                if let Some(v) = line.strip_prefix("Package: ") {
                    name = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("Version: ") {
                    version = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("Status: ") {
                    status = Some(v.trim().to_string());
                } else if let Some(v) = line.strip_prefix("Provides: ") {
                    provides = Some(v.to_string());
                }
            }
            let (Some(name), Some(status)) = (name, status) else {
                continue;
            };
            let state = status.rsplit(' ').next().unwrap_or("");
            match state {
                "installed" => {
                    st.installed.insert(name, version.unwrap_or_default());
                    for p in provides.iter().flat_map(|p| p.split(',')) {
                        if let Some(n) = p.split_whitespace().next() {
                            st.provided
                                .insert(n.split(':').next().unwrap_or(n).to_string());
                        }
                    }
                }
                "half-installed" | "unpacked" | "half-configured" | "triggers-awaited"
                | "triggers-pending" => st.interrupted.push(name),
                _ => {}
            }
        }
        st
    }

    /// Reads the root's dpkg status.
    ///
    /// # Errors
    /// When the file exists but cannot be read.
    pub fn read(cx: &Context) -> Result<DpkgState> {
        Ok(DpkgState::parse(
            &cx.root
                .read_string(&RelPath::lit("var/lib/dpkg/status"))?
                .unwrap_or_default(),
        ))
    }

    /// True when `name` (or a package providing it) is installed.
    pub fn has(&self, name: &str) -> bool {
        let base = name.split(':').next().unwrap_or(name);
        self.installed.contains_key(base) || self.provided.contains(base)
    }
}

/// The packages module.
pub struct Packages;

/// True when `plan` installs or removes packages: other modules may then have more to do once
/// it is applied (`bollwerk apply` re-plans and applies that as a second run).
pub fn changes_software(plan: &Plan) -> bool {
    plan.changes
        .iter()
        .any(|c| c.module == "packages" && matches!(c.action, crate::engine::Action::Run { .. }))
}

/// The retry policy for apt commands: while the output shows a lock held by another process
/// or a network hiccup, try again every few seconds until `total` has passed.
pub fn apt_retry(total: StdDuration) -> Retry {
    let delay = (total / 30).clamp(StdDuration::from_secs(1), StdDuration::from_secs(10));
    Retry {
        when_output_contains: TRANSIENT.iter().map(|s| s.to_string()).collect(),
        delay,
        total,
    }
}

/// An apt-get command as bollwerk runs it: noninteractive, keeping local configuration files,
/// waiting for the dpkg lock, with download retries, never restarting services by itself.
pub fn apt_get(args: &[&str], lock_timeout: StdDuration, cmd_timeout: StdDuration) -> Cmd {
    let lock = format!("DPkg::Lock::Timeout={}", lock_timeout.as_secs());
    let mut cmd = Cmd::in_root(
        APT_GET,
        &[
            "-q",
            "-y",
            "-o",
            &lock,
            "-o",
            "Acquire::Retries=3",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
        ],
    )
    .env("DEBIAN_FRONTEND", "noninteractive")
    .env("APT_LISTCHANGES_FRONTEND", "none")
    .env("NEEDRESTART_SUSPEND", "1")
    .with_network()
    .retry(apt_retry(lock_timeout))
    .timeout(cmd_timeout + lock_timeout);
    for a in args {
        cmd = cmd.arg(*a);
    }
    cmd
}

/// `apt-get update` that fails when any source could not be fetched
/// (`APT::Update::Error-Mode=any`, apt 2.6). Plain `apt-get update` exits 0 with only a warning
/// when a repository is unreachable, so cloud-config `package_update` would report success
/// although nothing was refreshed; first boot uses this one, so the step is reported as failed
/// and retried on the next boot. (Older apt ignores the option: same as plain `update`.)
pub fn apt_update_checked(lock_timeout: StdDuration, cmd_timeout: StdDuration) -> Cmd {
    apt_get(
        &["-o", "APT::Update::Error-Mode=any", "update"],
        lock_timeout,
        cmd_timeout,
    )
}

/// The `policy-rc.d` bollwerk writes while packages change inside a root that is not `/`.
pub fn policy_rc_d() -> String {
    format!(
        "#!/bin/sh\n{MANAGED_HEADER}\n# Present only while bollwerk changes packages in this root: maintainer scripts must\n# not start services inside a chroot (101 = action forbidden by policy).\nexit 101\n"
    )
}

impl Module for Packages {
    fn name(&self) -> &'static str {
        "packages"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let section = cx.profile.profile.packages.clone().unwrap_or_default();
        let requested = plan.requested_packages.clone();
        let plan_removals = plan.requested_removals.clone();
        let state = DpkgState::read(cx)?;
        let mut p = Planner::new(self.name(), plan);
        let policy = RelPath::lit(POLICY_RC_D);
        let ours = cx.root.read_string(&policy)?.as_deref() == Some(policy_rc_d().as_str());

        // Who wants what: modules first, then the profile's own list.
        let mut wanted: Vec<(String, String)> = Vec::new();
        for (module, pkg) in &requested {
            if !wanted.iter().any(|(n, _)| n == pkg) {
                wanted.push((pkg.clone(), format!("{module} module")));
            }
        }
        for pkg in section.install.iter().flatten() {
            if !wanted.iter().any(|(n, _)| n == pkg.as_str()) {
                wanted.push((pkg.as_str().to_string(), "packages.install".into()));
            }
        }
        // What to remove: the profile's list, then what modules need gone.
        let mut removals: Vec<(String, String)> = section
            .remove
            .iter()
            .flatten()
            .map(|r| (r.as_str().to_string(), "packages.remove".to_string()))
            .collect();
        for (module, pkg) in &plan_removals {
            if !removals.iter().any(|(n, _)| n == pkg) {
                removals.push((pkg.clone(), format!("{module} module")));
            }
        }
        let base = |n: &str| n.split(':').next().unwrap_or(n).to_string();
        for (pkg, who) in &wanted {
            if let Some((_, by)) = removals.iter().find(|(r, _)| base(r) == base(pkg)) {
                p.refuse(
                    format!("{by} removes {pkg}, which the {who} needs"),
                    format!(
                        "drop {pkg} from packages.remove, or the profile section that needs it"
                    ),
                );
            }
        }
        let install: Vec<&(String, String)> =
            wanted.iter().filter(|(n, _)| !state.has(n)).collect();
        let remove: Vec<&(String, String)> = removals
            .iter()
            .filter(|(r, _)| state.installed.contains_key(&base(r)))
            .collect();

        if install.is_empty() && remove.is_empty() {
            if ours {
                p.remove(
                    &cx.root,
                    &policy,
                    format!("remove {policy} left behind by an interrupted run"),
                )?;
            }
            return Ok(());
        }
        if cx.options.offline {
            let names: Vec<&str> = install
                .iter()
                .chain(remove.iter())
                .map(|(n, _)| n.as_str())
                .collect();
            p.note(
                Level::Info,
                format!("{DEFERRED_NOTE}: {}", names.join(", ")),
            );
            return Ok(());
        }
        if !cx.facts.os.is_debian_family() {
            p.note(
                Level::Warning,
                format!(
                    "packages are managed with apt only; {} is not Debian-based: not installing {}",
                    if cx.facts.os.pretty_name.is_empty() {
                        "the target"
                    } else {
                        &cx.facts.os.pretty_name
                    },
                    install
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            return Ok(());
        }
        if !cx.root.exists(&RelPath::lit("usr/bin/apt-get")) {
            p.note(
                Level::Warning,
                "apt-get is not installed in the target: packages are not changed",
            );
            return Ok(());
        }
        let lock_timeout = section
            .lock_timeout
            .map(|d| d.0)
            .unwrap_or(DEFAULT_LOCK_TIMEOUT);
        let chroot = !cx.root.is_host();
        let mut wrote_policy = false;
        if chroot {
            if !install.is_empty() && !cx.root.exists(&RelPath::lit("etc/resolv.conf")) {
                p.note(
                    Level::Warning,
                    "the target has no etc/resolv.conf: apt inside it cannot resolve the mirror's name (copy the host's resolv.conf into the root first)",
                );
            }
            match cx.root.entry(&policy)? {
                Entry::Absent => {
                    p.file(
                        &cx.root,
                        &policy,
                        policy_rc_d(),
                        Perms::root(0o755),
                        format!("{policy}: no services start inside the chroot while packages change"),
                    )?;
                    wrote_policy = true;
                }
                _ if ours => wrote_policy = true,
                _ => p.note(
                    Level::Info,
                    format!("{policy} exists and is not bollwerk's: left as it is (it decides whether maintainer scripts start services in the chroot)"),
                ),
            }
        }
        if !state.interrupted.is_empty() {
            p.run(
                Cmd::in_root("/usr/bin/dpkg", &["--configure", "-a"])
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .timeout(StdDuration::from_secs(1800)),
                Vec::new(),
                format!(
                    "finish the interrupted dpkg run first ({} half-installed)",
                    state.interrupted.join(", ")
                ),
            );
        }
        if !install.is_empty() {
            p.run(
                apt_get(&["update"], lock_timeout, StdDuration::from_secs(600)),
                Vec::new(),
                "refresh the package lists",
            );
            let mut args = vec!["install"];
            if !section.install_recommends.unwrap_or(false) {
                args.push("--no-install-recommends");
            }
            let names: Vec<&str> = install.iter().map(|(n, _)| n.as_str()).collect();
            args.extend(names.iter().copied());
            let why: Vec<String> = install.iter().map(|(n, w)| format!("{n} ({w})")).collect();
            p.run(
                apt_get(&args, lock_timeout, StdDuration::from_secs(1800)),
                Vec::new(),
                format!("install {}", why.join(", ")),
            );
        }
        if !remove.is_empty() {
            let purge = section.purge.unwrap_or(false);
            let mut args = vec![if purge { "purge" } else { "remove" }];
            let names: Vec<&str> = remove.iter().map(|(r, _)| r.as_str()).collect();
            args.extend(names.iter().copied());
            let why: Vec<String> = remove.iter().map(|(n, w)| format!("{n} ({w})")).collect();
            p.run(
                apt_get(&args, lock_timeout, StdDuration::from_secs(1800)),
                Vec::new(),
                format!(
                    "{} {}",
                    if purge { "purge" } else { "remove" },
                    why.join(", ")
                ),
            );
        }
        if wrote_policy {
            p.remove(&cx.root, &policy, format!("remove {policy} again"))?;
        }
        p.note(
            Level::Info,
            "rollback restores files only: packages installed or removed by this run stay as they are (undo with apt-get)",
        );
        Ok(())
    }
}

/// True when `plan` installs `package` (an `apt-get install` the packages module planned).
/// Modules that configure software which is not installed yet use it to tell "installed by this
/// run" from "will not be there".
pub fn installs(plan: &crate::engine::Plan, package: &str) -> bool {
    plan.changes.iter().any(|c| {
        c.module == "packages"
            && matches!(&c.action, crate::engine::Action::Run { cmd, .. }
                if cmd.args.iter().any(|a| a == "install") && cmd.args.iter().any(|a| a == package))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names() {
        for ok in ["fail2ban", "libc6:amd64", "g++", "python3.11", "0ad"] {
            assert!(PackageName::try_from(ok.to_string()).is_ok(), "{ok}");
        }
        for bad in ["Fail2ban", "a", "-x", "x y", "x;rm", "x:"] {
            assert!(PackageName::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn dpkg_state_knows_provides_and_interrupted_runs() {
        let s = DpkgState::parse(
            "Package: exim4-daemon-light\nStatus: install ok installed\nVersion: 4.96\nProvides: mail-transport-agent, exim4-localscanapi-6.0\n\nPackage: telnet\nStatus: deinstall ok config-files\nVersion: 0.17\n\nPackage: tree\nStatus: install ok half-configured\nVersion: 2.1\n",
        );
        assert!(s.has("exim4-daemon-light"));
        assert!(s.has("mail-transport-agent"));
        assert!(s.has("exim4-daemon-light:amd64"));
        assert!(!s.has("telnet"));
        assert!(!s.has("tree"));
        assert_eq!(s.interrupted, vec!["tree".to_string()]);
    }

    #[test]
    fn apt_commands_wait_and_retry() {
        let c = apt_get(
            &["install", "tree"],
            StdDuration::from_secs(300),
            StdDuration::from_secs(60),
        );
        let line = c.display();
        assert!(
            line.starts_with("/usr/bin/apt-get -q -y -o DPkg::Lock::Timeout=300 "),
            "{line}"
        );
        assert!(line.ends_with(" install tree"), "{line}");
        assert!(c.network);
        let r = c.retry.unwrap();
        assert_eq!(r.delay, StdDuration::from_secs(10));
        assert!(r.transient(
            "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 8 (python3)"
        ));
        assert!(!r.transient("E: Unable to locate package nope"));
        let u = apt_update_checked(StdDuration::from_secs(60), StdDuration::from_secs(60));
        assert!(
            u.display()
                .ends_with(" -o APT::Update::Error-Mode=any update"),
            "{}",
            u.display()
        );
        assert_eq!(
            apt_retry(StdDuration::from_secs(3)).delay,
            StdDuration::from_secs(1)
        );
    }
}
