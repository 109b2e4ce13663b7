//! The check catalog's data model: one [`Check`] per `[[check]]` table of `checks/*.toml`,
//! with its typed [`Probe`]. Everything is `deny_unknown_fields`, so a typo in a catalog file
//! is a load error (the catalog is embedded in the binary and tested to load).
//!
//! `checks/README.md` documents the TOML form of every field and probe kind.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// One catalog file: `[[check]]` tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    /// The checks, in file order.
    #[serde(default)]
    pub check: Vec<Check>,
}

/// One check of the catalog.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// Stable id, `area.what` in lower-case words with `-` (`ssh.permit-root-login`).
    pub id: String,
    /// What is true when the check passes ("SSH root login is disabled").
    pub title: String,
    /// Why it matters.
    pub rationale: String,
    /// CIS Ubuntu Linux 22.04 LTS Benchmark v2.0.0 recommendation number (`5.1.20`); absent for
    /// bollwerk's own checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cis: Option<String>,
    /// CIS Docker Benchmark v1.6.0 recommendation number (`2.15`) of a `docker.` check;
    /// results show it as `Docker 2.15` when `cis` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cis_docker: Option<String>,
    /// CIS profile level (1 or 2); bollwerk's own checks are level 1.
    #[serde(default = "level_one")]
    pub level: u8,
    /// How bad a failure is.
    pub severity: Severity,
    /// Where the check applies: `vm` (a full machine) and/or `container` (LXC, nspawn).
    #[serde(default = "all_scopes")]
    pub scope: Vec<Scope>,
    /// Why the check does not apply in a container (required when `scope` lacks
    /// `container` and the probe kind has no built-in reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub na_reason: Option<String>,
    /// Report section (default: the first component of `cis`, else `bollwerk`); lets
    /// bollwerk's own checks sit next to the CIS ones they complement (`5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    /// Preconditions; when one does not hold the result is `not_applicable`.
    #[serde(default, skip_serializing_if = "When::is_empty")]
    pub when: When,
    /// How to fix a failure.
    pub fix: Fix,
    /// The expected state in words, for reports (default: derived from the probe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// ISO/IEC 27001:2022 Annex A controls (`8.20`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub iso27001: Vec<String>,
    /// GDPR articles (`32(1)(b)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gdpr: Vec<String>,
    /// The check needs a manual step no profile can take (a bootloader password); a failure
    /// is reported with this reason. Exclusive with `site_specific`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<String>,
    /// Whether the check should pass depends on the site (a remote log host, separate
    /// partitions, IPv6 by SLAAC); a failure is reported with this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_specific: Option<String>,
    /// Where an independent scanner (OpenSCAP with the ComplianceAsCode CIS content, Lynis)
    /// judges this recommendation differently, and why (it reads another file or form, or cannot
    /// evaluate an offline root); shown by `checks show`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scanners: Option<String>,
    /// How the state is observed and judged.
    pub probe: Probe,
}

fn level_one() -> u8 {
    1
}

fn all_scopes() -> Vec<Scope> {
    vec![Scope::Vm, Scope::Container]
}

/// Severity of a failed check.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Hygiene.
    Low,
    /// Weakens defence in depth.
    Medium,
    /// Directly exploitable or hides attacks.
    High,
    /// Remote compromise likely.
    Critical,
}

impl Severity {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kind of machine a check applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// A VM or bare metal: own kernel, mounts, bootloader.
    Vm,
    /// A system container (LXC, systemd-nspawn): the host's kernel.
    Container,
}

/// Preconditions of a check.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    /// At least one of these packages (globs allowed: `postgresql-*`) is installed.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub package: Vec<String>,
    /// None of these packages (globs allowed) is installed.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub absent_package: Vec<String>,
    /// The active firewall backend is this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firewall: Option<FirewallBackend>,
    /// This dotted key of the profile is set (needs `--profile`): `logs.dirs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_key: Option<String>,
}

impl When {
    /// True when there are no preconditions.
    pub fn is_empty(&self) -> bool {
        self.package.is_empty()
            && self.absent_package.is_empty()
            && self.firewall.is_none()
            && self.profile_key.is_none()
    }
}

/// A firewall backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FirewallBackend {
    /// ufw (`etc/ufw/ufw.conf` `ENABLED=yes`).
    Ufw,
    /// nftables (`nftables.service` enabled, rules in `etc/nftables.conf`).
    Nftables,
}

impl FirewallBackend {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FirewallBackend::Ufw => "ufw",
            FirewallBackend::Nftables => "nftables",
        }
    }
}

/// How to fix a failure: the profile key that fixes it and/or a manual step.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fix {
    /// Dotted profile key (`ssh.permit_root_login`; `[]` for "each element": `users[].shell`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What to do by hand when no profile key covers it (or in addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<String>,
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.key, &self.manual) {
            (Some(k), Some(m)) => write!(f, "profile key `{k}`; {m}"),
            (Some(k), None) => write!(f, "profile key `{k}`"),
            (None, Some(m)) => f.write_str(m),
            (None, None) => Ok(()),
        }
    }
}

/// What a probe reports when the thing it looks at does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    /// The check fails (default).
    #[default]
    Fail,
    /// The check passes ("if it exists, it must …").
    Pass,
    /// The check does not apply.
    NotApplicable,
}

/// Kind of filesystem entry a `file` probe expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// Syntax of a configuration file read by the `conf` probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfSyntax {
    /// `key = value` (spaces around `=` optional); `[section]` headers honoured.
    #[default]
    Equals,
    /// `KEY value` separated by white space (`login.defs`).
    Space,
    /// systemd unit/INI files: `[Section]` then `Key=value`.
    Ini,
    /// shell-style `KEY="value"` (`etc/default/ufw`).
    Shell,
}

/// A judgement of one observed value (a string; numbers are parsed when compared).
/// All comparisons of words are case-insensitive. Several conditions must all hold.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// The value is one of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub one_of: Vec<String>,
    /// The value is none of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_one_of: Vec<String>,
    /// The value (an integer) is at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// The value (an integer) is at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// The value matches this regular expression (Rust `regex` syntax, unanchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<String>,
    /// The value does not match this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_matches: Option<String>,
    /// The value is a list (separated by `,` or white space) containing none of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub list_none_of: Vec<String>,
    /// The value is a list containing all of these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub list_all_of: Vec<String>,
    /// The value is a non-empty list all of whose items are among these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub list_subset_of: Vec<String>,
    /// The integers in the value (`10:30:60` → 10, 30, 60) are at most these, position by
    /// position (a missing bound: use a very large number).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub numbers_max: Vec<i64>,
    /// The integers in the value are at least these, position by position.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub numbers_min: Vec<i64>,
    /// The value is a duration (`600`, `10m`, `1h`, `1d`, `1w`; plain numbers are seconds) of at
    /// least this many seconds (`-1` counts as forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_seconds: Option<i64>,
    /// The value is a duration of at most this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<i64>,
    /// The value to judge when the setting is not set anywhere (the program's built-in default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// What to report when the setting is not set and there is no `default` (default: fail).
    #[serde(default)]
    pub missing: Missing,
}

/// Passwd/group/shadow integrity rules of the `accounts` probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountRule {
    /// Only `root` has uid 0.
    Uid0OnlyRoot,
    /// `root`'s primary gid is 0.
    RootGid0,
    /// Only the group `root` has gid 0.
    Gid0OnlyRootGroup,
    /// Every account has an `x` in `etc/passwd` (password in shadow).
    ShadowedPasswords,
    /// No `etc/shadow` entry has an empty password field.
    NoEmptyPasswords,
    /// No two accounts share a uid.
    NoDuplicateUids,
    /// No two groups share a gid.
    NoDuplicateGids,
    /// No two accounts share a name.
    NoDuplicateUserNames,
    /// No two groups share a name.
    NoDuplicateGroupNames,
    /// Every primary gid in `etc/passwd` exists in `etc/group`.
    GroupsExist,
    /// The `shadow` group has no members.
    ShadowGroupEmpty,
    /// Interactive users' home directories exist, are owned by them and not group/world
    /// writable.
    HomeDirs,
    /// Interactive users' dot files are not group/world writable; `.netrc`, `.rhosts`,
    /// `.forward` are absent.
    DotFiles,
    /// System accounts (uid < UID_MIN, except root, sync, shutdown, halt) have no login shell.
    SystemAccountsNoShell,
    /// Accounts without a valid login shell have locked passwords.
    NoShellAccountsLocked,
    /// Every password change date in `etc/shadow` lies in the past.
    PasswordChangeInPast,
    /// Root's password is set or locked (root access is controlled).
    RootAccessControlled,
    /// Root's password is locked (`!`/`*` in `etc/shadow`): root logs in with keys only.
    RootLocked,
    /// Root's `PATH` (from `etc/environment`, `root/.profile`, `root/.bashrc`) has no empty,
    /// `.` or group/world-writable entry.
    RootPath,
}

/// A firewall property judged by the `firewall` probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FirewallProperty {
    /// Some firewall (ufw or nftables) is enabled at boot.
    Enabled,
    /// The input chain's default policy drops (or rejects).
    DefaultDenyInput,
    /// The forward chain's default policy drops.
    DefaultDenyForward,
    /// Loopback traffic is accepted and spoofed 127.0.0.0/8 / ::1 from other interfaces dropped.
    Loopback,
    /// The SSH port(s) (`sshd -T`) are allowed in.
    SshAllowed,
    /// Only one firewall backend is enabled (not ufw and nftables.service together, not
    /// iptables-persistent with either).
    SingleBackend,
}

/// A PostgreSQL `pg_hba.conf` rule the `pg_hba` probe forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PgHbaRule {
    /// No line uses `trust` for non-local connections.
    NoTrustRemote,
    /// No line uses `password` (clear text) or `md5`.
    NoWeakMethod,
    /// No `host` line allows all addresses (`0.0.0.0/0`, `::/0`, `all`).
    NoOpenAddress,
}

/// An AppArmor property (live system only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppArmorProperty {
    /// The kernel has AppArmor enabled (`/sys/module/apparmor/parameters/enabled` = `Y`).
    Enabled,
    /// Every loaded profile is in enforce or complain mode.
    ProfilesLoaded,
    /// Every loaded profile is in enforce mode.
    ProfilesEnforced,
}

/// How a check observes the target. The `kind` field selects the variant.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Probe {
    /// Existence, type, mode and owner of paths (`path` may contain `*`/`?` globs in any
    /// component; every match is judged; no match counts as missing).
    File {
        /// Path relative to the root (`etc/ssh/ssh_host_*_key`).
        path: String,
        /// Expected type.
        #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
        file_type: Option<FileType>,
        /// No permission bits beyond these (octal string, `"0640"`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode_max: Option<String>,
        /// All these bits are set (octal string, `"1000"` for the sticky bit).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode_min: Option<String>,
        /// Owner is one of these (names from the target's `etc/passwd`, or numbers).
        #[serde(
            default,
            deserialize_with = "one_or_many",
            skip_serializing_if = "Vec::is_empty"
        )]
        owner: Vec<String>,
        /// Group is one of these.
        #[serde(
            default,
            deserialize_with = "one_or_many",
            skip_serializing_if = "Vec::is_empty"
        )]
        group: Vec<String>,
        /// When nothing exists at `path`.
        #[serde(default)]
        missing: Missing,
        /// Paths come from this profile key (strings or tables with a `path`), instead of
        /// (or besides) `path`; nothing declared → not applicable.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_profile: Option<String>,
        /// Nothing must exist at `path` (for `.rhosts`-like files and `at.deny`).
        #[serde(default)]
        absent: bool,
    },
    /// A line matching a regular expression is present (or absent) in files.
    Line {
        /// Files (globs allowed); all are searched.
        #[serde(deserialize_with = "one_or_many")]
        path: Vec<String>,
        /// Regular expression, matched against each line (leading white space trimmed).
        pattern: String,
        /// `true`: some line matches; `false`: no line matches.
        #[serde(default = "yes")]
        present: bool,
        /// Skip lines starting with `#` (default true).
        #[serde(default = "yes")]
        skip_comments: bool,
        /// When none of the files exists.
        #[serde(default)]
        missing: Missing,
    },
    /// An effective sshd setting (from one `sshd -T` run shared by all checks; static
    /// evaluation of the configuration when sshd cannot run).
    Sshd {
        /// Lower-case keyword as `sshd -T` prints it (`permitrootlogin`).
        key: String,
        /// The judgement.
        expect: Expect,
    },
    /// A kernel parameter: configured in `sysctl.d` / `sysctl.conf` (systemd-sysctl order),
    /// and the live value under `/proc/sys` when auditing the running system. Both must hold.
    Sysctl {
        /// Dotted key (`net.ipv4.ip_forward`).
        key: String,
        /// The judgement (applied to the configured and the live value).
        expect: Expect,
    },
    /// A package (dpkg status `install ok installed`).
    Package {
        /// Package names (globs allowed); the probe looks at all of them.
        #[serde(deserialize_with = "one_or_many")]
        name: Vec<String>,
        /// `true`: at least one is installed; `false`: none is installed.
        installed: bool,
    },
    /// A systemd unit: enabled (from the unit files and `.wants` links in the root) and
    /// active (running system only; `systemctl is-active`, read-only).
    Service {
        /// Unit names (`ssh.service`); for `enabled = true` one must be enabled, for
        /// `enabled = false` none may be.
        #[serde(deserialize_with = "one_or_many")]
        unit: Vec<String>,
        /// Expected enablement (masked counts as disabled).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enabled: Option<bool>,
        /// Expected activity (live system only; otherwise not judged and said so).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        active: Option<bool>,
        /// When no unit file exists.
        #[serde(default)]
        missing: Missing,
    },
    /// A kernel module cannot be loaded: `install <m> /bin/false` (or `/bin/true`) and
    /// `blacklist <m>` in `modprobe.d`, or the module is not shipped by any kernel in
    /// `lib/modules`; and (live) it is not loaded. Not applicable in containers.
    KernelModule {
        /// Module name (`cramfs`; `-` and `_` are equivalent).
        module: String,
    },
    /// A mount point: a separate file system and/or mount options (from `/proc/self/mountinfo`
    /// on the running system, else `etc/fstab` and systemd `.mount` units). Not applicable in
    /// containers.
    Mount {
        /// Mount point (`/tmp`).
        path: String,
        /// The path must be its own mount.
        #[serde(default)]
        separate: bool,
        /// Options that must be present (`nodev`); judged only when it is a separate mount,
        /// otherwise not applicable (the `separate` check reports that).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        options: Vec<String>,
    },
    /// A value in configuration files: the last setting wins, files read in the given order
    /// (globs expand sorted).
    Conf {
        /// Files in reading order (`etc/systemd/journald.conf`,
        /// `etc/systemd/journald.conf.d/*.conf`).
        #[serde(deserialize_with = "one_or_many")]
        path: Vec<String>,
        /// File syntax.
        #[serde(default)]
        syntax: ConfSyntax,
        /// `[section]` the key must be in (INI syntax); none: any section.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        section: Option<String>,
        /// The key (case-insensitive).
        key: String,
        /// The judgement.
        expect: Expect,
    },
    /// A value of `etc/login.defs` (same as `conf` with `syntax = "space"`).
    LoginDefs {
        /// The key (`PASS_MAX_DAYS`).
        key: String,
        /// The judgement.
        expect: Expect,
    },
    /// A PAM module line in a `pam.d` file (`@include`s followed).
    Pam {
        /// File below `etc/pam.d` (`common-password`).
        file: String,
        /// Management group (`auth`, `account`, `password`, `session`).
        #[serde(rename = "type")]
        pam_type: String,
        /// Module (`pam_unix.so`).
        module: String,
        /// The module line must exist (`true`) or not (`false`).
        #[serde(default = "yes")]
        present: bool,
        /// Arguments that must be present (`use_authtok`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args_present: Vec<String>,
        /// Arguments that must be absent (`nullok`, `remember=`: prefix match before `=`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args_absent: Vec<String>,
        /// `name=value` argument to judge with `expect`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arg: Option<String>,
        /// Judgement of `arg`'s value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect: Option<Expect>,
        /// `arg` names a group that must exist and have no members (`etc/group`, and no
        /// user with it as primary group): `pam_wheel.so group=…` for `su`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        group_empty: bool,
    },
    /// A PAM module's effective option as the module sees it: its conf file and drop-ins
    /// (`pwquality.conf.d/*.conf` then `pwquality.conf`; `faillock.conf`), overridden by the
    /// arguments on the PAM line; judged on every line of the module whose failure counts
    /// (`optional` lines enforce nothing and fail the check).
    PamOption {
        /// File below `etc/pam.d` (`common-password`).
        file: String,
        /// Management group (`password`).
        #[serde(rename = "type")]
        pam_type: String,
        /// Module (`pam_pwquality.so`).
        module: String,
        /// Option name (`minlen`; a flag such as `enforce_for_root` has the value "").
        option: String,
        /// Judgement of the effective value.
        expect: Expect,
    },
    /// A password-ageing field of every existing account with a usable password, from the
    /// root's `etc/shadow` (state layer); an empty field fails unless `expect` has a default.
    ShadowAgeing {
        /// `min`, `max`, `warn` or `inactive`.
        field: crate::state::accounts::AgeingField,
        /// Judgement of each account's value.
        expect: Expect,
    },
    /// Passwd/group/shadow integrity (one read of the databases shared by all checks).
    Accounts {
        /// The rule.
        rule: AccountRule,
    },
    /// World-writable files, and world-writable directories without the sticky bit, under
    /// the scan roots (one walk shared with `unowned`).
    WorldWritable {
        /// Directories to scan (default `/`; the profile's `audit.scan_roots` overrides).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        roots: Vec<String>,
    },
    /// Files whose owner or group does not exist in the target's databases.
    Unowned {
        /// Directories to scan (default `/`; the profile's `audit.scan_roots` overrides).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        roots: Vec<String>,
    },
    /// A firewall property (configuration files; the live ruleset on the running system).
    Firewall {
        /// The property.
        property: FirewallProperty,
    },
    /// A fail2ban jail: enabled in the merged `jail.conf`/`jail.d`/`jail.local`
    /// configuration, optionally a setting of it, and (live) active.
    Fail2ban {
        /// Jail name (`sshd`).
        jail: String,
        /// A jail setting to judge (`maxretry`, `bantime`, `backend`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        setting: Option<String>,
        /// Judgement of `setting`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect: Option<Expect>,
        /// Also require the jail to be running (live system only).
        #[serde(default)]
        active: bool,
    },
    /// An effective PostgreSQL setting of every cluster in `etc/postgresql/*/*/`
    /// (`postgresql.conf`, its `include`/`include_dir`, `postgresql.auto.conf`; last wins).
    /// Not applicable without a cluster.
    Postgres {
        /// Setting name (`ssl`, `password_encryption`).
        setting: String,
        /// The judgement.
        expect: Expect,
    },
    /// `pg_hba.conf` of every cluster.
    PgHba {
        /// The rule.
        rule: PgHbaRule,
    },
    /// Every path is covered by a logrotate rule (`etc/logrotate.conf`, `etc/logrotate.d/*`).
    Logrotate {
        /// Log files or directories (a directory is covered by a rule for a file in it).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        paths: Vec<String>,
        /// Paths come from this profile key (strings or tables with a `path`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_profile: Option<String>,
    },
    /// An APT configuration value (`etc/apt/apt.conf`, `etc/apt/apt.conf.d/*`, last wins).
    AptConf {
        /// Key (`APT::Periodic::Unattended-Upgrade`, case-insensitive).
        key: String,
        /// The judgement.
        expect: Expect,
    },
    /// A systemd unit setting, unit file plus drop-ins (`<unit>.d/*.conf`; last wins).
    UnitSetting {
        /// Unit (`apt-daily-upgrade.timer`).
        unit: String,
        /// Section (`Timer`).
        section: String,
        /// Key (`OnCalendar`).
        key: String,
        /// The judgement.
        expect: Expect,
    },
    /// A Docker daemon setting: `etc/docker/daemon.json` (dotted keys reach into objects),
    /// else dockerd's flags in docker.service's `ExecStart` (issue 14; `audit/docker.rs`).
    DockerDaemon {
        /// daemon.json key (`live-restore`, `log-opts.max-size`).
        key: String,
        /// The judgement.
        expect: Expect,
    },
    /// Every non-loopback listening socket and published container port is allowed by the
    /// firewall (running system only; `audit/probe_ports.rs`).
    OpenPorts {},
    /// AppArmor state (running system only).
    Apparmor {
        /// The property.
        property: AppArmorProperty,
    },
    /// All of these probes pass.
    All {
        /// The probes.
        probes: Vec<Probe>,
    },
    /// At least one of these probes passes.
    Any {
        /// The probes.
        probes: Vec<Probe>,
    },
    // -- fleet (issue 15): probes for checks of your own, in audit/custom.rs --
    /// Runs a program of the root (argv, no shell) with a timeout; judges exit code and stdout.
    Command(super::custom::CommandProbe),
    /// Who listens on a TCP port, on which addresses (running system only).
    Port(super::custom::PortProbe),
    /// Status and body of a loopback `http://` URL (running system only).
    Http(super::custom::HttpProbe),
    /// The newest file under a path is younger than `max_age`.
    FileAge(super::custom::FileAgeProbe),
    /// A PEM certificate expires in more than `min_days` days.
    TlsCert(super::custom::TlsCertProbe),
}

fn yes() -> bool {
    true
}

impl Probe {
    /// The `kind` name.
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::File { .. } => "file",
            Probe::Line { .. } => "line",
            Probe::Sshd { .. } => "sshd",
            Probe::Sysctl { .. } => "sysctl",
            Probe::Package { .. } => "package",
            Probe::Service { .. } => "service",
            Probe::KernelModule { .. } => "kernel_module",
            Probe::Mount { .. } => "mount",
            Probe::Conf { .. } => "conf",
            Probe::LoginDefs { .. } => "login_defs",
            Probe::Pam { .. } => "pam",
            Probe::PamOption { .. } => "pam_option",
            Probe::ShadowAgeing { .. } => "shadow_ageing",
            Probe::Accounts { .. } => "accounts",
            Probe::WorldWritable { .. } => "world_writable",
            Probe::Unowned { .. } => "unowned",
            Probe::Firewall { .. } => "firewall",
            Probe::Fail2ban { .. } => "fail2ban",
            Probe::Postgres { .. } => "postgres",
            Probe::PgHba { .. } => "pg_hba",
            Probe::Logrotate { .. } => "logrotate",
            Probe::AptConf { .. } => "apt_conf",
            Probe::UnitSetting { .. } => "unit_setting",
            Probe::Apparmor { .. } => "apparmor",
            Probe::DockerDaemon { .. } => "docker_daemon",
            Probe::OpenPorts { .. } => "open_ports",
            Probe::All { .. } => "all",
            Probe::Any { .. } => "any",
            Probe::Command(_) => "command",
            Probe::Port(_) => "port",
            Probe::Http(_) => "http",
            Probe::FileAge(_) => "file_age",
            Probe::TlsCert(_) => "tls_cert",
        }
    }

    /// Why this probe does not apply in a container, when that follows from its kind
    /// (kernel modules, mounts, kernel parameters outside the network namespace).
    pub fn container_reason(&self) -> Option<String> {
        match self {
            Probe::KernelModule { .. } => Some(
                "kernel modules belong to the host in a container; check them on the host".into(),
            ),
            Probe::Mount { .. } => Some(
                "mounts of a container are set up by the host (LXC/nspawn configuration)".into(),
            ),
            Probe::Sysctl { key, .. } if !key.starts_with("net.") => Some(format!(
                "{key} is a host kernel parameter, read-only in a container (only net.* is per network namespace)"
            )),
            Probe::Apparmor { .. } => {
                Some("AppArmor is enabled and loaded by the host kernel".into())
            }
            Probe::All { probes } | Probe::Any { probes } => {
                probes.iter().find_map(Probe::container_reason)
            }
            _ => None,
        }
    }
}

/// Accepts `"x"` or `["x", "y"]`.
pub fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d) {
        Ok(OneOrMany::One(s)) => Ok(vec![s]),
        Ok(OneOrMany::Many(v)) => Ok(v),
        Err(_) => Err(serde::de::Error::custom(
            "expected a string or an array of strings",
        )),
    }
}

impl Check {
    /// The check's disposition, when it is marked `manual` or `site_specific`.
    pub fn disposition(&self) -> Option<crate::audit::result::Disposition> {
        use crate::audit::result::{Disposition, DispositionKind};
        match (&self.manual, &self.site_specific) {
            (Some(r), _) => Some(Disposition {
                kind: DispositionKind::Manual,
                reason: r.clone(),
            }),
            (None, Some(r)) => Some(Disposition {
                kind: DispositionKind::SiteSpecific,
                reason: r.clone(),
            }),
            (None, None) => None,
        }
    }

    /// The report section: the first component of the CIS number (`5`), or `bollwerk` for
    /// bollwerk's own checks.
    pub fn section(&self) -> &str {
        if let Some(s) = &self.section {
            return s;
        }
        match &self.cis {
            Some(c) => c.split('.').next().unwrap_or("bollwerk"),
            None => "bollwerk",
        }
    }

    /// The benchmark reference shown in lists and results: the CIS Ubuntu number, else
    /// `Docker <n>` for a CIS Docker Benchmark check.
    pub fn cis_ref(&self) -> Option<String> {
        self.cis
            .clone()
            .or_else(|| self.cis_docker.as_ref().map(|d| format!("Docker {d}")))
    }

    /// True when the check applies to containers.
    pub fn applies_to_containers(&self) -> bool {
        self.scope.contains(&Scope::Container)
    }

    /// Why the check is not applicable in a container (its `na_reason`, else the probe kind's).
    pub fn container_reason(&self) -> Option<String> {
        self.na_reason
            .clone()
            .or_else(|| self.probe.container_reason())
    }
}

/// Human names of the report sections.
pub const SECTIONS: &[(&str, &str)] = &[
    (
        "1",
        "Initial setup: file systems, modules, AppArmor, bootloader",
    ),
    ("2", "Services"),
    ("3", "Network"),
    ("4", "Host-based firewall"),
    ("5", "Access control: SSH, sudo, PAM, accounts"),
    ("6", "Logging and auditing"),
    (
        "7",
        "System maintenance: file permissions, users and groups",
    ),
    (
        "bollwerk",
        "bollwerk: fail2ban, updates, PostgreSQL, logs, secrets",
    ),
    ("docker", "Docker daemon (CIS Docker Benchmark v1.6.0)"),
];

/// The human name of a section id.
pub fn section_name(id: &str) -> &'static str {
    SECTIONS
        .iter()
        .find(|(s, _)| *s == id)
        .map(|(_, n)| *n)
        .unwrap_or("other")
}
