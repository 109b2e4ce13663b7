//! OpenSSH server hardening: the drop-in `etc/ssh/sshd_config.d/00-bollwerk.conf` (sorted
//! first, so its values win over `50-cloud-init.conf` and everything after it), the `Include`
//! line in `etc/ssh/sshd_config` when the distro's file lacks it, crypto lists fitted to the
//! installed OpenSSH, validation with `sshd -t` before activation and `sshd -T` after.
//!
//! The drop-in's algorithm lists are also written into `etc/ssh/sshd_config` itself, as a
//! marked block (`# BEGIN bollwerk` … `# END bollwerk`) right after the `Include` line:
//! OpenSCAP's CIS content reads `Ciphers`, `MACs` and `KexAlgorithms` from the main file only.
//! sshd keeps the first value it reads, so the drop-in (read through the `Include` before the
//! block) stays the effective source, and the block repeats the same values.
//!
//! The settings sshd will have after apply are computed statically (first value wins, as in
//! OpenSSH) and handed to the lockout guard through [`Plan::ssh_access`].

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Finding, Level, Plan, Planner, Validator, Visibility};
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::modules::Module;
use crate::modules::users::MANAGED_HEADER;
use crate::profile::types::{AbsPath, Port};
use crate::profile::{Layer, ProfileError};
use crate::root::{Perms, RelPath};
use crate::sshd_config::{SshdConfig, glob_match, split_words};

/// The drop-in bollwerk owns.
pub const DROPIN: &str = "etc/ssh/sshd_config.d/00-bollwerk.conf";
/// The main configuration file.
pub const MAIN: &str = "etc/ssh/sshd_config";
const DROPIN_DIR: &str = "etc/ssh/sshd_config.d";
const INCLUDE_LINE: &str = "Include /etc/ssh/sshd_config.d/*.conf";
/// First line of the block bollwerk manages in the main file.
pub const MAIN_BLOCK_BEGIN: &str = "# BEGIN bollwerk (managed, edits are overwritten): 00-bollwerk.conf's algorithm lists, read first, repeated for scanners that read only this file";
/// How every version of the first line starts (the rest of it is prose that may change).
const MAIN_BLOCK_MARK: &str = "# BEGIN bollwerk";
/// Last line of that block.
pub const MAIN_BLOCK_END: &str = "# END bollwerk";
/// Keywords repeated in the main file's block (OpenSCAP's `sshd_use_strong_{ciphers,kex,macs}`
/// read only `/etc/ssh/sshd_config`).
const MAIN_MIRRORED: &[&str] = &["kexalgorithms", "ciphers", "macs"];

/// Key exchange: ssh-audit's hardened list ∩ the CIS Ubuntu 22.04 list (no sntrup761, which
/// the CIS checks do not accept).
pub const HARDENED_KEX: &[&str] = &[
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group-exchange-sha256",
];
/// Ciphers: AEAD and CTR modes; chacha20-poly1305 is left out (CIS v2, Terrapin).
pub const HARDENED_CIPHERS: &[&str] = &[
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
];
/// MACs: encrypt-then-MAC SHA-2 only (umac-128-etm is not on the CIS list).
pub const HARDENED_MACS: &[&str] = &[
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
];
/// Host key algorithms: ed25519 and RSA with SHA-2 (plus their certificates).
pub const HARDENED_HOSTKEY: &[&str] = &[
    "ssh-ed25519",
    "ssh-ed25519-cert-v01@openssh.com",
    "sk-ssh-ed25519@openssh.com",
    "sk-ssh-ed25519-cert-v01@openssh.com",
    "rsa-sha2-512",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-256",
    "rsa-sha2-256-cert-v01@openssh.com",
];

/// `PermitRootLogin` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RootLogin {
    /// `yes` (also `true`).
    Yes,
    /// `no` (also `false`).
    No,
    /// `prohibit-password`: keys only.
    ProhibitPassword,
    /// `forced-commands-only`.
    ForcedCommandsOnly,
}

impl RootLogin {
    /// The sshd keyword value.
    pub fn as_sshd(&self) -> &'static str {
        match self {
            RootLogin::Yes => "yes",
            RootLogin::No => "no",
            RootLogin::ProhibitPassword => "prohibit-password",
            RootLogin::ForcedCommandsOnly => "forced-commands-only",
        }
    }
}

impl<'de> Deserialize<'de> for RootLogin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = RootLogin;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false, \"prohibit-password\" or \"forced-commands-only\"")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> std::result::Result<RootLogin, E> {
                Ok(if b { RootLogin::Yes } else { RootLogin::No })
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<RootLogin, E> {
                match s {
                    "yes" => Ok(RootLogin::Yes),
                    "no" => Ok(RootLogin::No),
                    "prohibit-password" | "without-password" => Ok(RootLogin::ProhibitPassword),
                    "forced-commands-only" => Ok(RootLogin::ForcedCommandsOnly),
                    _ => Err(E::unknown_variant(
                        s,
                        &["yes", "no", "prohibit-password", "forced-commands-only"],
                    )),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `LogLevel` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
#[allow(missing_docs)]
pub enum LogLevel {
    Quiet,
    Fatal,
    Error,
    Info,
    Verbose,
    Debug,
}

/// Crypto policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Crypto {
    /// Hardened ∩ CIS ∩ what the installed OpenSSH supports.
    Hardened,
    /// Leave the distribution's defaults.
    Distro,
}

/// `[ssh]`: OpenSSH server settings. Unset keys are not managed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshSection {
    /// `Port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// `ListenAddress` entries (addresses, optionally `addr:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_addresses: Option<Vec<String>>,
    /// `PermitRootLogin`: false, true, "prohibit-password" or "forced-commands-only".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permit_root_login: Option<RootLogin>,
    /// `PasswordAuthentication`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_authentication: Option<bool>,
    /// `KbdInteractiveAuthentication` (keyboard-interactive, e.g. PAM password prompts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kbd_interactive_authentication: Option<bool>,
    /// `PubkeyAuthentication`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pubkey_authentication: Option<bool>,
    /// `AuthenticationMethods`, e.g. "publickey" or "publickey,keyboard-interactive".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_methods: Option<String>,
    /// `AllowGroups`: only members of these groups may log in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_groups: Option<Vec<String>>,
    /// `AllowUsers`: only these users may log in (patterns allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_users: Option<Vec<String>>,
    /// `DenyGroups`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_groups: Option<Vec<String>>,
    /// `DenyUsers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_users: Option<Vec<String>>,
    /// `MaxAuthTries` (CIS: ≤ 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_auth_tries: Option<u32>,
    /// `MaxSessions` (CIS: ≤ 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<u32>,
    /// `MaxStartups` as `start:rate:full` (CIS: "10:30:60").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_startups: Option<String>,
    /// `LoginGraceTime` in seconds (CIS: 1-60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_grace_time: Option<u32>,
    /// `ClientAliveInterval` in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_alive_interval: Option<u32>,
    /// `ClientAliveCountMax`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_alive_count_max: Option<u32>,
    /// `X11Forwarding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x11_forwarding: Option<bool>,
    /// `AllowTcpForwarding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_tcp_forwarding: Option<bool>,
    /// `AllowAgentForwarding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_agent_forwarding: Option<bool>,
    /// `PermitEmptyPasswords`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permit_empty_passwords: Option<bool>,
    /// `PermitUserEnvironment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permit_user_environment: Option<bool>,
    /// `IgnoreRhosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_rhosts: Option<bool>,
    /// `HostbasedAuthentication`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostbased_authentication: Option<bool>,
    /// `UsePAM` (keep true on Debian/Ubuntu: a locked password then does not block key logins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_pam: Option<bool>,
    /// `LogLevel` (CIS: VERBOSE or INFO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<LogLevel>,
    /// `Banner`: a file shown before login, or unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banner: Option<AbsPath>,
    /// "hardened" (hardened ∩ CIS ∩ installed OpenSSH) or "distro" (leave defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crypto: Option<Crypto>,
    /// Explicit `KexAlgorithms` (overrides `crypto`; names the local sshd lacks are dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kex_algorithms: Option<Vec<String>>,
    /// Explicit `Ciphers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphers: Option<Vec<String>>,
    /// Explicit `MACs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macs: Option<Vec<String>>,
    /// Explicit `HostKeyAlgorithms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_algorithms: Option<Vec<String>>,
    /// `RequiredRSASize` (OpenSSH ≥ 9.1 only; ignored with a note on older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_rsa_size: Option<u32>,
    /// Further directives written verbatim (`{ PermitTunnel = "no" }`); checked by `sshd -t`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// Keywords bollwerk writes from typed keys; `extra` may not repeat them.
const TYPED_KEYWORDS: &[&str] = &[
    "port",
    "listenaddress",
    "permitrootlogin",
    "passwordauthentication",
    "kbdinteractiveauthentication",
    "challengeresponseauthentication",
    "pubkeyauthentication",
    "authenticationmethods",
    "allowgroups",
    "allowusers",
    "denygroups",
    "denyusers",
    "maxauthtries",
    "maxsessions",
    "maxstartups",
    "logingracetime",
    "clientaliveinterval",
    "clientalivecountmax",
    "x11forwarding",
    "allowtcpforwarding",
    "allowagentforwarding",
    "permitemptypasswords",
    "permituserenvironment",
    "ignorerhosts",
    "hostbasedauthentication",
    "usepam",
    "loglevel",
    "banner",
    "kexalgorithms",
    "ciphers",
    "macs",
    "hostkeyalgorithms",
    "requiredrsasize",
];

/// Cross-field and range checks of `[ssh]`.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(s: &SshSection, layers: &[Layer]) -> Result<(), ProfileError> {
    let err = |key: &str, msg: String, hint: &str| {
        Err(crate::profile::error_at(layers, &["ssh", key], msg).with_hint(hint.to_string()))
    };
    if let Some(n) = s.max_auth_tries
        && !(1..=100).contains(&n)
    {
        return err(
            "max_auth_tries",
            format!("max_auth_tries = {n} is out of range"),
            "use 1-10 (CIS asks for 4 or less)",
        );
    }
    if let Some(n) = s.login_grace_time
        && n > 3600
    {
        return err(
            "login_grace_time",
            format!("login_grace_time = {n} s is more than an hour"),
            "CIS asks for 1-60 seconds",
        );
    }
    if let Some(ms) = &s.max_startups {
        let parts: Vec<&str> = ms.split(':').collect();
        let ok = (parts.len() == 1 || parts.len() == 3)
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
        if !ok {
            return err(
                "max_startups",
                format!("max_startups = {ms:?} is not `start:rate:full` or a number"),
                "write it like \"10:30:60\"",
            );
        }
    }
    for (key, list) in [
        ("allow_groups", &s.allow_groups),
        ("allow_users", &s.allow_users),
        ("deny_groups", &s.deny_groups),
        ("deny_users", &s.deny_users),
        ("kex_algorithms", &s.kex_algorithms),
        ("ciphers", &s.ciphers),
        ("macs", &s.macs),
        ("host_key_algorithms", &s.host_key_algorithms),
        ("listen_addresses", &s.listen_addresses),
    ] {
        if let Some(l) = list {
            if let Some(bad) = l.iter().find(|v| {
                v.is_empty() || v.chars().any(|c| c.is_whitespace() || c == '"' || c == '#')
            }) {
                return err(
                    key,
                    format!("{key} entry {bad:?} contains whitespace, quotes or `#`"),
                    "one name or pattern per entry",
                );
            }
            if l.is_empty()
                && key.ends_with("algorithms") | key.ends_with("ciphers") | key.ends_with("macs")
            {
                return err(
                    key,
                    format!("{key} is empty"),
                    "leave the key out to use `crypto`, or list at least one algorithm",
                );
            }
        }
    }
    if let Some(m) = &s.authentication_methods
        && m.split_whitespace().flat_map(|c| c.split(',')).any(|x| {
            !matches!(
                x.split(':').next().unwrap_or(""),
                "any"
                    | "publickey"
                    | "password"
                    | "keyboard-interactive"
                    | "hostbased"
                    | "gssapi-with-mic"
            )
        })
    {
        return err(
            "authentication_methods",
            format!("authentication_methods = {m:?} names an unknown method"),
            "methods: publickey, password, keyboard-interactive, hostbased, gssapi-with-mic; chains joined with `,`, alternatives with spaces",
        );
    }
    for (k, v) in &s.extra {
        if !k.chars().all(|c| c.is_ascii_alphanumeric()) || k.is_empty() {
            return err(
                "extra",
                format!("extra key {k:?} is not an sshd keyword"),
                "keywords are letters and digits, e.g. PermitTunnel",
            );
        }
        if TYPED_KEYWORDS.contains(&k.to_ascii_lowercase().as_str()) {
            return err(
                "extra",
                format!("extra.{k} duplicates a typed key"),
                "use the typed key in [ssh] instead (see docs/profile.md)",
            );
        }
        if k.eq_ignore_ascii_case("match") || k.eq_ignore_ascii_case("include") {
            return err(
                "extra",
                format!("extra.{k} is not allowed"),
                "Match and Include blocks cannot be expressed in [ssh].extra",
            );
        }
        if v.contains('\n') || v.is_empty() {
            return err(
                "extra",
                format!("extra.{k} must be a non-empty single line"),
                "one value per keyword",
            );
        }
    }
    Ok(())
}

/// What the installed OpenSSH offers.
#[derive(Debug, Clone, Default)]
pub struct SshdFacts {
    /// `usr/sbin/sshd` exists in the root.
    pub installed: bool,
    /// (major, minor) from the package database.
    pub version: Option<(u32, u32)>,
    /// Algorithm lists from the root's `ssh -Q` (same OpenSSH build), if it could run.
    pub algorithms: Option<BTreeMap<&'static str, Vec<String>>>,
    /// systemd unit name (`ssh` on Debian/Ubuntu, `sshd` elsewhere).
    pub unit: String,
}

/// Parses a Debian OpenSSH version like `1:9.2p1-2+deb12u3` into (9, 2).
pub fn parse_version(v: &str) -> Option<(u32, u32)> {
    let v = v.split_once(':').map_or(v, |(_, r)| r);
    let mut it = v.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// sshd's systemd unit in `root`: `ssh` (Debian, Ubuntu) or `sshd`.
pub fn service_unit(root: &crate::root::Root) -> &'static str {
    let debian = [
        "lib/systemd/system/ssh.service",
        "usr/lib/systemd/system/ssh.service",
    ];
    if debian.iter().any(|p| root.exists(&RelPath::lit(p))) {
        "ssh"
    } else {
        "sshd"
    }
}

/// Reads what the installed OpenSSH supports.
pub fn sshd_facts(cx: &Context) -> SshdFacts {
    let installed = cx.root.exists(&RelPath::lit("usr/sbin/sshd"));
    let version = cx
        .facts
        .package("openssh-server")
        .or(cx.facts.package("openssh-client"))
        .and_then(parse_version);
    let unit = service_unit(&cx.root).to_string();
    let mut algorithms = BTreeMap::new();
    for (key, query) in [
        ("kex", "kex"),
        ("ciphers", "cipher"),
        ("macs", "mac"),
        ("hostkey", "HostKeyAlgorithms"),
    ] {
        // Cached per process: the plan, the follow-up run's plan and the lockout guard ask.
        match crate::exec::query_cached(
            cx.runner,
            &cx.root,
            &Cmd::in_root("/usr/bin/ssh", &["-Q", query]),
        ) {
            Ok(o) if o.success() && !o.stdout.trim().is_empty() => {
                algorithms.insert(
                    key,
                    o.stdout.split_whitespace().map(str::to_string).collect(),
                );
            }
            _ => {}
        }
    }
    SshdFacts {
        installed,
        version,
        algorithms: (algorithms.len() == 4).then_some(algorithms),
        unit,
    }
}

pub use crate::state::sshd::SshAccess;

/// The sshd module.
pub struct Sshd;

impl Module for Sshd {
    fn name(&self) -> &'static str {
        "sshd"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let f = sshd_facts(cx);
        let section = cx.profile.profile.ssh.as_ref();
        if !f.installed {
            if section.is_some() {
                Planner::new(self.name(), plan).note(
                    Level::Warning,
                    "openssh-server is not installed in the target: [ssh] is not applied (install it, then re-run)",
                );
            }
            return Ok(());
        }
        let mut p = Planner::new(self.name(), plan);
        let main_rel = RelPath::lit(MAIN);
        let main_now = cx.root.read_string(&main_rel)?;
        if let Some(s) = section {
            let dropin = render_dropin(cx, s, &f, &mut p)?;
            let validator: Arc<dyn Validator> = Arc::new(SshdValidator);
            // The main config must include the drop-in directory before any directive.
            // CIS 5.1.1: the server configuration is readable by root only.
            let main_perms = Perms::root(0o600);
            if let Some(text) = &main_now {
                let block = main_block(&dropin);
                let new_main = ensure_main(text, block.as_deref());
                if new_main != *text {
                    let what = match (ensure_include(&strip_main_block(text)), &block) {
                        (Some(_), _) => format!("make {MAIN} read {DROPIN_DIR}/*.conf first"),
                        (None, Some(_)) => {
                            format!(
                                "repeat the drop-in's algorithm lists in {main_rel} (marked block)"
                            )
                        }
                        (None, None) => format!("remove bollwerk's block from {main_rel}"),
                    };
                    p.file_with(
                        &cx.root,
                        &main_rel,
                        new_main.into_bytes(),
                        main_perms,
                        what,
                        Visibility::Plain,
                        Some(validator.clone()),
                    )?;
                } else {
                    p.perms(
                        &cx.root,
                        &main_rel,
                        main_perms,
                        format!("{main_rel} readable by root only"),
                    )?;
                }
            } else {
                p.note(Level::Warning, format!("{main_rel} does not exist; sshd uses only built-in defaults and the drop-in is not read"));
            }
            let changed = p.file_with(
                &cx.root,
                &RelPath::lit(DROPIN),
                dropin.into_bytes(),
                Perms::root(0o600),
                "sshd hardening drop-in".to_string(),
                Visibility::Plain,
                Some(validator),
            )?;
            let main_changed = p.plan().planned_content(&main_rel).is_some();
            if changed || main_changed {
                p.handler(Cmd::in_root(
                    "/usr/bin/systemctl",
                    &["reload", &format!("{}.service", f.unit)],
                ));
            }
        }
        let access = crate::state::sshd::global_access(cx, p.plan())?;
        plan.ssh_access = Some(access);
        Ok(())
    }

    fn verify(&self, cx: &Context) -> Result<Vec<Finding>> {
        let Some(s) = cx.profile.profile.ssh.as_ref() else {
            return Ok(Vec::new());
        };
        let f = sshd_facts(cx);
        if !f.installed {
            return Ok(Vec::new());
        }
        let effective = match effective_config(cx) {
            Ok(e) => e,
            Err(e) => {
                return Ok(vec![Finding {
                    module: "sshd",
                    message: format!("could not read the effective configuration: {e}"),
                }]);
            }
        };
        let mut out = crate::modules::lockout::verify_logins(cx)?;
        let mut dummy = Plan::default();
        let mut p = Planner::new("sshd", &mut dummy);
        let dropin = render_dropin(cx, s, &f, &mut p)?;
        // `extra` keywords are checked by `sshd -t` only: sshd normalises aliases and old
        // values in `-T` output, so a literal comparison would report false findings.
        let extra: Vec<String> = s.extra.keys().map(|k| k.to_ascii_lowercase()).collect();
        for line in dropin
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let words = split_words(line);
            let Some((kw, args)) = words.split_first() else {
                continue;
            };
            let kw = kw.to_ascii_lowercase();
            if extra.contains(&kw) {
                continue;
            }
            if matches!(
                kw.as_str(),
                "allowusers" | "allowgroups" | "denyusers" | "denygroups"
            ) {
                // sshd -T prints one line per name; compare the sets.
                let want: std::collections::BTreeSet<&str> =
                    args.iter().map(String::as_str).collect();
                let have: std::collections::BTreeSet<&str> = effective
                    .all(&kw)
                    .iter()
                    .flat_map(|v| v.split_whitespace())
                    .collect();
                if want != have {
                    out.push(Finding {
                        module: "sshd",
                        message: format!("sshd -T shows {kw} {have:?}, the profile wants {want:?}"),
                    });
                }
                continue;
            }
            if matches!(
                kw.as_str(),
                "port" | "listenaddress" | "authenticationmethods"
            ) {
                let want = args.join(" ");
                let have = effective.all(&kw);
                if !have
                    .iter()
                    .any(|h| normalize(&kw, h) == normalize(&kw, &want))
                {
                    out.push(Finding {
                        module: "sshd",
                        message: format!("sshd -T shows {kw} {:?}, the profile wants {want}", have),
                    });
                }
                continue;
            }
            let want = normalize(&kw, &args.join(" "));
            match effective.get(&kw) {
                Some(have) if normalize(&kw, have) == want => {}
                have => out.push(Finding {
                    module: "sshd",
                    message: format!(
                        "sshd -T shows {kw} {}, the profile wants {want}",
                        have.unwrap_or("(unset)")
                    ),
                }),
            }
        }
        Ok(out)
    }
}

fn normalize(kw: &str, v: &str) -> String {
    let v = v.trim();
    match kw {
        // `sshd -T` prints `listenaddress 10.0.0.1:22` / `[::1]:22`; compare the address only.
        "listenaddress" => {
            let addr = match v.strip_prefix('[') {
                Some(rest) => rest.split(']').next().unwrap_or(rest),
                None if v.matches(':').count() == 1 => v.split(':').next().unwrap_or(v),
                None => v,
            };
            addr.to_ascii_lowercase()
        }
        "loglevel" => v.to_ascii_uppercase(),
        "allowusers" | "allowgroups" | "denyusers" | "denygroups" | "authenticationmethods" => {
            v.split_whitespace().collect::<Vec<_>>().join(" ")
        }
        "permitrootlogin" if v == "without-password" => "prohibit-password".into(),
        _ => v.to_ascii_lowercase(),
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Filters a wanted algorithm list by what the installed OpenSSH supports.
fn fit(
    kind: &str,
    wanted: &[String],
    supported: Option<&Vec<String>>,
    p: &mut Planner,
) -> Vec<String> {
    match supported {
        None => wanted.to_vec(),
        Some(sup) => {
            let (keep, drop): (Vec<String>, Vec<String>) =
                wanted.iter().cloned().partition(|a| sup.contains(a));
            if !drop.is_empty() {
                p.note(
                    Level::Warning,
                    format!(
                        "{kind}: left out {} (not supported by the installed OpenSSH)",
                        drop.join(", ")
                    ),
                );
            }
            keep
        }
    }
}

/// Renders the drop-in for the profile's `[ssh]` section.
///
/// # Errors
/// Never in practice; refusals (e.g. an empty crypto list) are added to the plan.
pub fn render_dropin(
    cx: &Context,
    s: &SshSection,
    f: &SshdFacts,
    p: &mut Planner,
) -> Result<String> {
    let mut out = format!(
        "{MANAGED_HEADER}\n# Profile: {}\n# Sorted first in {DROPIN_DIR}: OpenSSH keeps the first value it reads.\n",
        cx.profile.name()
    );
    let mut kv = |k: &str, v: String| {
        out.push_str(k);
        out.push(' ');
        out.push_str(&v);
        out.push('\n');
    };
    if let Some(port) = s.port {
        kv("Port", port.to_string());
    }
    for a in s.listen_addresses.iter().flatten() {
        kv("ListenAddress", a.clone());
    }
    if let Some(v) = s.permit_root_login {
        kv("PermitRootLogin", v.as_sshd().into());
    }
    if let Some(v) = s.password_authentication {
        kv("PasswordAuthentication", yes(v).into());
    }
    if let Some(v) = s.kbd_interactive_authentication {
        let kw = if f.version.is_some_and(|v| v < (8, 7)) {
            "ChallengeResponseAuthentication"
        } else {
            "KbdInteractiveAuthentication"
        };
        kv(kw, yes(v).into());
    }
    if let Some(v) = s.pubkey_authentication {
        kv("PubkeyAuthentication", yes(v).into());
    }
    if let Some(v) = &s.authentication_methods {
        kv("AuthenticationMethods", v.clone());
    }
    for (k, v) in [
        ("PermitEmptyPasswords", s.permit_empty_passwords),
        ("HostbasedAuthentication", s.hostbased_authentication),
        ("IgnoreRhosts", s.ignore_rhosts),
        ("UsePAM", s.use_pam),
    ] {
        if let Some(v) = v {
            kv(k, yes(v).into());
        }
    }
    for (k, v) in [
        ("AllowUsers", &s.allow_users),
        ("AllowGroups", &s.allow_groups),
        ("DenyUsers", &s.deny_users),
        ("DenyGroups", &s.deny_groups),
    ] {
        if let Some(v) = v
            && !v.is_empty()
        {
            kv(k, v.join(" "));
        }
    }
    for (k, v) in [
        ("MaxAuthTries", s.max_auth_tries),
        ("MaxSessions", s.max_sessions),
        ("LoginGraceTime", s.login_grace_time),
        ("ClientAliveInterval", s.client_alive_interval),
        ("ClientAliveCountMax", s.client_alive_count_max),
    ] {
        if let Some(v) = v {
            kv(k, v.to_string());
        }
    }
    if let Some(v) = &s.max_startups {
        kv("MaxStartups", v.clone());
    }
    for (k, v) in [
        ("X11Forwarding", s.x11_forwarding),
        ("AllowTcpForwarding", s.allow_tcp_forwarding),
        ("AllowAgentForwarding", s.allow_agent_forwarding),
        ("PermitUserEnvironment", s.permit_user_environment),
    ] {
        if let Some(v) = v {
            kv(k, yes(v).into());
        }
    }
    if let Some(v) = s.log_level {
        kv("LogLevel", format!("{v:?}").to_ascii_uppercase());
    }
    if let Some(b) = &s.banner {
        if !cx.root.exists(&b.rel()) {
            p.note(
                Level::Warning,
                format!("banner file {b} does not exist in the target"),
            );
        }
        kv("Banner", b.to_string());
    }
    let hardened = s.crypto == Some(Crypto::Hardened);
    let algos = f.algorithms.as_ref();
    if algos.is_none() && (hardened || s.kex_algorithms.is_some()) {
        p.note(Level::Info, "could not query the installed OpenSSH for algorithms (`ssh -Q`); using the hardened lists unfiltered, `sshd -t` checks them");
    }
    for (kw, key, explicit, default) in [
        ("KexAlgorithms", "kex", &s.kex_algorithms, HARDENED_KEX),
        ("Ciphers", "ciphers", &s.ciphers, HARDENED_CIPHERS),
        ("MACs", "macs", &s.macs, HARDENED_MACS),
        (
            "HostKeyAlgorithms",
            "hostkey",
            &s.host_key_algorithms,
            HARDENED_HOSTKEY,
        ),
    ] {
        let wanted: Vec<String> = match explicit {
            Some(l) => l.clone(),
            None if hardened => default.iter().map(|s| s.to_string()).collect(),
            None => continue,
        };
        let list = fit(kw, &wanted, algos.and_then(|a| a.get(key)), p);
        if list.is_empty() {
            p.refuse(
                format!(
                    "{kw}: none of {} is supported by the installed OpenSSH; sshd would not start",
                    wanted.join(", ")
                ),
                format!(
                    "fix ssh.{} or use crypto = \"hardened\"",
                    match key {
                        "kex" => "kex_algorithms",
                        "hostkey" => "host_key_algorithms",
                        k => k,
                    }
                ),
            );
            continue;
        }
        kv(kw, list.join(","));
    }
    if let Some(bits) = s.required_rsa_size {
        if f.version.is_some_and(|v| v >= (9, 1)) {
            kv("RequiredRSASize", bits.to_string());
        } else {
            p.note(
                Level::Info,
                "RequiredRSASize needs OpenSSH ≥ 9.1; not written for this version",
            );
        }
    }
    for (k, v) in &s.extra {
        kv(k, v.clone());
    }
    Ok(out)
}

/// Returns the main config with `Include /etc/ssh/sshd_config.d/*.conf` as its first
/// directive, or `None` when it already is.
pub fn ensure_include(text: &str) -> Option<String> {
    let cfg = SshdConfig::parse(text);
    if let Some(first) = cfg.first_directive()
        && first.keyword == "include"
        && first.args.iter().any(|a| includes_dropin(a))
    {
        return None;
    }
    Some(format!(
        "# Added by bollwerk: drop-ins must be read first (OpenSSH keeps the first value)\n{INCLUDE_LINE}\n\n{text}"
    ))
}

/// The block for the main file: the drop-in's `KexAlgorithms`, `Ciphers` and `MACs` lines,
/// verbatim, between the markers; `None` when the drop-in sets none of them.
pub fn main_block(dropin: &str) -> Option<String> {
    let lines: Vec<&str> = dropin
        .lines()
        .filter(|l| {
            split_words(l.trim())
                .first()
                .is_some_and(|k| MAIN_MIRRORED.iter().any(|m| k.eq_ignore_ascii_case(m)))
        })
        .collect();
    if lines.is_empty() {
        return None;
    }
    Some(format!(
        "{MAIN_BLOCK_BEGIN}\n{}\n{MAIN_BLOCK_END}\n",
        lines.join("\n")
    ))
}

/// `text` without bollwerk's marked block: from the first line starting `# BEGIN bollwerk`
/// to the next `# END bollwerk` (an unterminated block is left alone).
pub fn strip_main_block(text: &str) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let begin = lines.iter().position(|l| l.starts_with(MAIN_BLOCK_MARK));
    let Some(b) = begin else {
        return text.to_string();
    };
    let Some(len) = lines[b..]
        .iter()
        .position(|l| l.trim_end() == MAIN_BLOCK_END)
    else {
        return text.to_string();
    };
    let mut out: String = lines[..b].concat();
    out.push_str(&lines[b + len + 1..].concat());
    out
}

/// The main config as bollwerk wants it: the drop-in `Include` as the first directive
/// ([`ensure_include`]), then `block` (if any) right after that line, every other line kept.
/// Applying it twice gives the same text.
pub fn ensure_main(text: &str, block: Option<&str>) -> String {
    let base = strip_main_block(text);
    let base = ensure_include(&base).unwrap_or(base);
    let Some(block) = block else {
        return base;
    };
    let mut out = String::with_capacity(base.len() + block.len());
    let mut placed = false;
    for line in base.split_inclusive('\n') {
        out.push_str(line);
        if !placed {
            let t = line.trim();
            if !t.is_empty() && !t.starts_with('#') {
                if !line.ends_with('\n') {
                    out.push('\n');
                }
                out.push_str(block);
                placed = true;
            }
        }
    }
    out
}

fn includes_dropin(pattern: &str) -> bool {
    let abs = if pattern.starts_with('/') {
        pattern.to_string()
    } else {
        format!("/etc/ssh/{pattern}")
    };
    match abs.rsplit_once('/') {
        Some((dir, glob)) => {
            dir == "/etc/ssh/sshd_config.d" && glob_match(glob, "00-bollwerk.conf")
        }
        None => false,
    }
}

/// Statically evaluates the global (non-`Match`) settings after `plan`, as `sshd -T` without
/// `-C` prints them: keyword → values (see [`crate::state::sshd`]).
///
/// # Errors
/// When the configuration cannot be read or exceeds the reader's limits.
pub fn static_effective(cx: &Context, plan: &Plan) -> Result<BTreeMap<String, Vec<String>>> {
    let flat = crate::state::sshd::load_planned(cx, plan)?;
    Ok(crate::sshd_config::evaluate(&flat, None)
        .into_iter()
        .map(|(k, v)| (k, v.values))
        .collect())
}

/// Validates sshd candidates: writes a candidate main config to the scratch directory whose
/// `Include`s are expanded to explicit paths with staged candidates substituted, then runs
/// the root's own `sshd -t -f` on it.
#[derive(Debug)]
pub struct SshdValidator;

impl Validator for SshdValidator {
    fn describe(&self) -> String {
        "sshd -t".into()
    }

    fn validate(&self, cx: &Context, staged: &crate::engine::Staged) -> Result<()> {
        let main_rel = RelPath::lit(MAIN);
        let main = match staged.files.get(&main_rel) {
            Some(p) => std::fs::read_to_string(staged.host_path(p))
                .map_err(|e| Error::io("reading", staged.host_path(p), e))?,
            None => cx.root.read_string(&main_rel)?.unwrap_or_default(),
        };
        let candidate = candidate_main(cx, &main, staged)?;
        let cand_name = "sshd_config.candidate";
        let host = staged.dir_host.join(cand_name);
        std::fs::write(&host, candidate).map_err(|e| Error::io("writing", &host, e))?;
        let cand_in_root = format!("{}/{cand_name}", staged.dir_in_root);
        let mut cmd = Cmd::in_root("/usr/sbin/sshd", &["-t", "-f", &cand_in_root]);
        if let Some(key) = scratch_host_key(cx, &staged.dir_in_root, &staged.dir_host)? {
            cmd = cmd.arg("-h").arg(key);
        }
        let out = cx.runner.run(&cx.root, &cmd)?;
        if out.success() {
            Ok(())
        } else {
            Err(Error::Validation {
                path: RelPath::lit(DROPIN).to_string(),
                validator: self.describe(),
                output: out.combined(),
            })
        }
    }
}

use crate::state::sshd::scratch_host_key;

/// The main config with every top-level `Include` expanded to explicit files, staged
/// candidates substituted for their targets.
fn candidate_main(cx: &Context, main: &str, staged: &crate::engine::Staged) -> Result<String> {
    let mut out = String::from("# candidate generated by bollwerk for validation\n");
    for line in main.lines() {
        let words = split_words(line.trim());
        if !words
            .first()
            .is_some_and(|w| w.eq_ignore_ascii_case("include"))
        {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        for pat in &words[1..] {
            let abs = if pat.starts_with('/') {
                pat.clone()
            } else {
                format!("/etc/ssh/{pat}")
            };
            let Some((dir, glob)) = abs.rsplit_once('/') else {
                continue;
            };
            let Ok(dir_rel) = RelPath::new(dir) else {
                continue;
            };
            let mut names = cx.root.list_dir(&dir_rel)?;
            for p in staged.files.keys() {
                if p.parent().as_ref() == Some(&dir_rel)
                    && !names.contains(&p.file_name().to_string())
                {
                    names.push(p.file_name().to_string());
                }
            }
            names.sort();
            for n in names.into_iter().filter(|n| glob_match(glob, n)) {
                let rel = dir_rel.join(&n).map_err(Error::Runtime)?;
                let path = staged
                    .files
                    .get(&rel)
                    .cloned()
                    .unwrap_or_else(|| rel.absolute());
                out.push_str(&format!("Include {path}\n"));
            }
        }
    }
    Ok(out)
}

/// Runs `sshd -T` in the root (with a throwaway host key when the root has none).
///
/// # Errors
/// When sshd cannot run or rejects its configuration.
pub fn effective_config(cx: &Context) -> Result<crate::sshd_config::Effective> {
    crate::state::sshd::run_sshd_t(cx, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_added_only_when_missing() {
        let debian = "Include /etc/ssh/sshd_config.d/*.conf\nUsePAM yes\n";
        assert_eq!(ensure_include(debian), None);
        let old = "# comment\nPort 22\nUsePAM yes\n";
        let new = ensure_include(old).unwrap();
        assert!(new.contains("\nInclude /etc/ssh/sshd_config.d/*.conf\n"));
        assert!(new.ends_with(old));
        assert_eq!(ensure_include(&new), None, "idempotent");
        // An Include in the middle does not count: settings before it would win.
        let mid = "Port 22\nInclude /etc/ssh/sshd_config.d/*.conf\n";
        assert!(ensure_include(mid).is_some());
        // Relative include.
        assert_eq!(ensure_include("Include sshd_config.d/*.conf\n"), None);
    }

    #[test]
    fn main_block_after_the_include_and_idempotent() {
        let dropin = "# Managed by bollwerk\nPort 22\nKexAlgorithms a,b\nCiphers c\nMACs d\nHostKeyAlgorithms e\n";
        let block = main_block(dropin).unwrap();
        assert_eq!(
            block,
            format!("{MAIN_BLOCK_BEGIN}\nKexAlgorithms a,b\nCiphers c\nMACs d\n{MAIN_BLOCK_END}\n")
        );
        assert_eq!(main_block("Port 22\n"), None);
        let debian = "# comment\n\nInclude /etc/ssh/sshd_config.d/*.conf\n\nUsePAM yes\n";
        let new = ensure_main(debian, Some(&block));
        assert_eq!(
            new,
            format!("# comment\n\nInclude /etc/ssh/sshd_config.d/*.conf\n{block}\nUsePAM yes\n")
        );
        assert_eq!(ensure_main(&new, Some(&block)), new, "idempotent");
        assert_eq!(strip_main_block(&new), debian);
        assert_eq!(ensure_main(&new, None), debian, "no lists: the block goes");
        // A changed list replaces the block in place.
        let other = main_block("Ciphers x\n").unwrap();
        assert_eq!(
            ensure_main(&new, Some(&other)),
            format!("# comment\n\nInclude /etc/ssh/sshd_config.d/*.conf\n{other}\nUsePAM yes\n")
        );
        // Without the Include, it is added first and the block follows it.
        let old = "Port 22\nUsePAM yes";
        let new = ensure_main(old, Some(&block));
        assert!(
            new.starts_with(&format!(
                "# Added by bollwerk: drop-ins must be read first (OpenSSH keeps the first value)\n{INCLUDE_LINE}\n{block}\nPort 22\n"
            )),
            "{new}"
        );
        assert_eq!(ensure_main(&new, Some(&block)), new, "idempotent");
        // A block written with another wording of the first line is still ours.
        let older = new.replace(MAIN_BLOCK_BEGIN, "# BEGIN bollwerk: older words");
        assert_eq!(ensure_main(&older, Some(&block)), new);
        // An unterminated marker is not ours to cut.
        let broken = format!("{debian}{MAIN_BLOCK_BEGIN}\nCiphers z\n");
        assert_eq!(strip_main_block(&broken), broken);
    }

    #[test]
    fn listen_addresses_compare_without_port() {
        assert_eq!(
            normalize("listenaddress", "10.0.0.1:22"),
            normalize("listenaddress", "10.0.0.1")
        );
        assert_eq!(
            normalize("listenaddress", "[::1]:2222"),
            normalize("listenaddress", "::1")
        );
        assert_eq!(normalize("loglevel", "verbose"), "VERBOSE");
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("1:9.2p1-2+deb12u3"), Some((9, 2)));
        assert_eq!(parse_version("1:8.9p1-3ubuntu0.10"), Some((8, 9)));
        assert_eq!(parse_version("x"), None);
    }

    #[test]
    fn root_login_accepts_bool_and_words() {
        #[derive(Deserialize)]
        struct T {
            v: RootLogin,
        }
        let t: T = toml::from_str("v = false").unwrap();
        assert_eq!(t.v, RootLogin::No);
        let t: T = toml::from_str("v = \"prohibit-password\"").unwrap();
        assert_eq!(t.v, RootLogin::ProhibitPassword);
        assert!(toml::from_str::<T>("v = \"nope\"").is_err());
    }
}
