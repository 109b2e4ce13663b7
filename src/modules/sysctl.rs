//! Kernel parameters: the drop-in `etc/sysctl.d/60-bollwerk.conf` (the CIS Ubuntu 22.04
//! network and kernel parameters as a preset, plus profile keys), applied live through the
//! `sysctl` crate only on the live system, and reported as not applicable where a container
//! cannot change them.
//!
//! Keys outside `net.*` belong to the host kernel and are read-only in a container; `net.*`
//! keys are per network namespace and need `CAP_NET_ADMIN` there. A key the running kernel
//! lacks is a warning, never a failure (keys differ between kernels). Two changes that break
//! common VPS setups are opt-in: ignoring IPv6 router advertisements (`accept_ra`, SLAAC) and
//! turning off forwarding on hosts that run Docker.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Finding, Level, Plan, Planner};
use crate::error::Result;
use crate::exec::Cmd;
use crate::modules::Module;
use crate::modules::netcommon;
use crate::modules::users::MANAGED_HEADER;
use crate::profile::{Layer, ProfileError};
use crate::root::{Perms, RelPath};

/// The drop-in bollwerk owns.
pub const DROPIN: &str = "etc/sysctl.d/60-bollwerk.conf";
/// Keys a vendor file (`usr/lib/sysctl.d`) sorting after [`DROPIN`] would override, repeated in a
/// drop-in that sorts after every vendor file.
pub const OVERRIDES: &str = "etc/sysctl.d/99-zz-bollwerk-overrides.conf";

/// A sysctl key (`net.ipv4.tcp_syncookies`): dot-separated segments of `[A-Za-z0-9_-]`; slashes
/// are accepted and turned into dots.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SysctlKey(String);

impl SysctlKey {
    /// The key with dots.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path below `/proc/sys`.
    pub fn proc_path(&self) -> String {
        format!("proc/sys/{}", self.0.replace('.', "/"))
    }
}

impl TryFrom<String> for SysctlKey {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        let k = s.trim().replace('/', ".");
        let ok = !k.is_empty()
            && k.split('.').all(|seg| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if ok && k.contains('.') {
            Ok(SysctlKey(k))
        } else {
            Err(format!(
                "`{s}` is not a sysctl key like `net.ipv4.tcp_syncookies` (dot-separated names of letters, digits, `_`, `-`)"
            ))
        }
    }
}

impl From<SysctlKey> for String {
    fn from(k: SysctlKey) -> String {
        k.0
    }
}

impl fmt::Display for SysctlKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for SysctlKey {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SysctlKey".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": "^[A-Za-z0-9_-]+([./][A-Za-z0-9_-]+)+$", "description": "sysctl key, e.g. net.ipv4.tcp_syncookies"})
    }
}

/// A sysctl value: a number or a string (`"4096 87380 6291456"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SysctlValue {
    /// A number.
    Int(i64),
    /// Text, written as is (one line).
    Text(String),
}

impl fmt::Display for SysctlValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysctlValue::Int(i) => write!(f, "{i}"),
            SysctlValue::Text(s) => f.write_str(s.trim()),
        }
    }
}

/// Built-in parameter sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SysctlPreset {
    /// CIS Ubuntu 22.04 network (3.2, 3.3) and kernel (1.5) parameters, without the two
    /// opt-in changes (`accept_ra`, forwarding on Docker hosts).
    Cis,
    /// No preset: only `settings`.
    None,
}

/// `[sysctl]`: kernel parameters. Unset keys are not managed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SysctlSection {
    /// "cis" (CIS Ubuntu 22.04 network and kernel parameters) or "none".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<SysctlPreset>,
    /// `net.ipv6.conf.{all,default}.accept_ra`. false (CIS) ignores IPv6 router
    /// advertisements, which turns off SLAAC: most VPS get their IPv6 address and default
    /// route that way, so set it only on hosts with static IPv6. Unset: not managed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_ra: Option<bool>,
    /// IP forwarding (`net.ipv4.ip_forward`, `net.ipv6.conf.all.forwarding`). false (CIS) stops
    /// Docker's container networking; unset: the preset turns forwarding off unless Docker is
    /// installed. true for routers, VPN gateways and container hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_forward: Option<bool>,
    /// Further keys, overriding the preset: `settings = { "vm.swappiness" = 10 }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<BTreeMap<SysctlKey, SysctlValue>>,
}

/// Checks of `[sysctl]` a single key's type cannot express.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(s: &SysctlSection, layers: &[Layer]) -> std::result::Result<(), ProfileError> {
    for (k, v) in s.settings.iter().flatten() {
        if let SysctlValue::Text(t) = v
            && (t.trim().is_empty() || t.contains('\n') || t.contains('#'))
        {
            return Err(crate::profile::error_at(
                layers,
                &["sysctl", "settings", k.as_str()],
                format!("sysctl value for {k} must be one non-empty line without `#`"),
            )
            .with_hint("write numbers as numbers and lists as \"4096 87380 6291456\""));
        }
    }
    Ok(())
}

/// One parameter of the file, with the group comment it is written under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Key.
    pub key: String,
    /// Value as written.
    pub value: String,
    /// Group heading.
    pub group: &'static str,
}

const G_NET: &str = "CIS 3.2/3.3: network parameters (host, not router)";
const G_KERNEL: &str =
    "CIS 1.5: kernel hardening (ASLR, core dumps, kernel pointers, ptrace, links)";
const G_RA: &str = "Opt-in (accept_ra = false): ignore IPv6 router advertisements. Trade-off: no SLAAC, \
so a VPS that gets its IPv6 address or default route from router advertisements loses IPv6";
const G_FWD: &str = "Forwarding (ip_forward). Trade-off: off is CIS, but Docker, VPN gateways and \
routers need it on";
const G_PROFILE: &str = "Profile settings";

/// The CIS Ubuntu 22.04 network and kernel parameters, without the opt-in ones.
pub const CIS_NET: &[(&str, &str)] = &[
    ("net.ipv4.conf.all.send_redirects", "0"),
    ("net.ipv4.conf.default.send_redirects", "0"),
    ("net.ipv4.conf.all.accept_source_route", "0"),
    ("net.ipv4.conf.default.accept_source_route", "0"),
    ("net.ipv6.conf.all.accept_source_route", "0"),
    ("net.ipv6.conf.default.accept_source_route", "0"),
    ("net.ipv4.conf.all.accept_redirects", "0"),
    ("net.ipv4.conf.default.accept_redirects", "0"),
    ("net.ipv6.conf.all.accept_redirects", "0"),
    ("net.ipv6.conf.default.accept_redirects", "0"),
    ("net.ipv4.conf.all.secure_redirects", "0"),
    ("net.ipv4.conf.default.secure_redirects", "0"),
    ("net.ipv4.conf.all.log_martians", "1"),
    ("net.ipv4.conf.default.log_martians", "1"),
    ("net.ipv4.icmp_echo_ignore_broadcasts", "1"),
    ("net.ipv4.icmp_ignore_bogus_error_responses", "1"),
    ("net.ipv4.conf.all.rp_filter", "1"),
    ("net.ipv4.conf.default.rp_filter", "1"),
    ("net.ipv4.tcp_syncookies", "1"),
];

/// CIS 1.5.x and common kernel hardening.
pub const CIS_KERNEL: &[(&str, &str)] = &[
    ("kernel.randomize_va_space", "2"),
    ("fs.suid_dumpable", "0"),
    ("kernel.kptr_restrict", "2"),
    ("kernel.dmesg_restrict", "1"),
    ("kernel.yama.ptrace_scope", "1"),
    ("fs.protected_hardlinks", "1"),
    ("fs.protected_symlinks", "1"),
    ("fs.protected_fifos", "2"),
    ("fs.protected_regular", "2"),
    // Beyond CIS, what Lynis' KRNL-6000 and the kernel self-protection project ask for and a
    // server does not miss: no line-discipline autoloading from user space (CVE-2017-2636
    // class), no unprivileged eBPF, perf events for root only.
    ("dev.tty.ldisc_autoload", "0"),
    ("kernel.unprivileged_bpf_disabled", "1"),
    ("kernel.perf_event_paranoid", "3"),
];

/// The parameters a section asks for on this target, in file order (later entries of the
/// same key replace earlier ones), plus notes for the plan.
pub fn wanted(s: &SysctlSection, docker: bool) -> (Vec<Param>, Vec<(Level, String)>) {
    let mut out: Vec<Param> = Vec::new();
    let mut notes = Vec::new();
    let mut put = |key: &str, value: String, group: &'static str| {
        out.retain(|p| p.key != key);
        out.push(Param {
            key: key.to_string(),
            value,
            group,
        });
    };
    let cis = s.preset == Some(SysctlPreset::Cis);
    if cis {
        for (k, v) in CIS_NET {
            put(k, v.to_string(), G_NET);
        }
        for (k, v) in CIS_KERNEL {
            put(k, v.to_string(), G_KERNEL);
        }
    }
    if let Some(ra) = s.accept_ra {
        let v = if ra { "1" } else { "0" };
        put("net.ipv6.conf.all.accept_ra", v.into(), G_RA);
        put("net.ipv6.conf.default.accept_ra", v.into(), G_RA);
    } else if cis {
        notes.push((
            Level::Info,
            "accept_ra is not managed: CIS wants IPv6 router advertisements ignored, which breaks SLAAC on most VPS; set sysctl.accept_ra = false on hosts with static IPv6".to_string(),
        ));
    }
    match (s.ip_forward, cis, docker) {
        (Some(f), _, _) => {
            let v = if f { "1" } else { "0" };
            put("net.ipv4.ip_forward", v.into(), G_FWD);
            put("net.ipv6.conf.all.forwarding", v.into(), G_FWD);
            if !f && docker {
                notes.push((
                    Level::Warning,
                    "ip_forward = false on a host with Docker: containers lose network access".to_string(),
                ));
            }
        }
        (None, true, false) => {
            put("net.ipv4.ip_forward", "0".into(), G_FWD);
            put("net.ipv6.conf.all.forwarding", "0".into(), G_FWD);
        }
        (None, true, true) => notes.push((
            Level::Warning,
            "Docker is installed: forwarding is left as it is (CIS wants it off, Docker needs it on); set sysctl.ip_forward to decide".to_string(),
        )),
        (None, false, _) => {}
    }
    for (k, v) in s.settings.iter().flatten() {
        put(k.as_str(), v.to_string(), G_PROFILE);
    }
    (out, notes)
}

/// Why a key cannot be set on this target, or `None` when it can.
fn not_applicable(cx: &Context, key: &str, net_denied: &Option<String>) -> Option<String> {
    let net = key.starts_with("net.");
    if let Some(c) = &cx.facts.container
        && !net
    {
        return Some(format!(
            "kernel-wide key, read-only inside a {c} container (it belongs to the host kernel)"
        ));
    }
    if !cx.root.is_host() {
        return None;
    }
    if let Some(reason) = net_denied {
        return Some(reason.clone());
    }
    if cx.facts.container.is_some() {
        let path = std::path::Path::new("/").join(key_proc_path(key));
        if path.exists() && nix::unistd::access(&path, nix::unistd::AccessFlags::W_OK).is_err() {
            return Some("read-only in this container (/proc/sys is mounted read-only)".into());
        }
    }
    None
}

fn key_proc_path(key: &str) -> String {
    format!("proc/sys/{}", key.replace('.', "/"))
}

/// Normalises a value for comparison (the kernel separates lists with tabs).
fn norm(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Renders the drop-in.
pub fn render(profile_name: &str, params: &[Param]) -> String {
    let mut s = format!(
        "{MANAGED_HEADER}\n# Profile: {profile_name}\n# Kernel parameters, applied at boot by systemd-sysctl (a later file in sysctl.d wins).\n"
    );
    let mut group = "";
    for p in params {
        if p.group != group {
            group = p.group;
            s.push_str(&format!("\n# {group}\n"));
        }
        s.push_str(&format!("{} = {}\n", p.key, p.value));
    }
    s
}

/// Parses `key = value` lines of a sysctl.d file (comments and blank lines skipped; a leading
/// `-` marks a key whose errors are ignored).
pub fn parse_conf(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().trim_start_matches('-').replace('/', "."),
                v.trim().to_string(),
            )
        })
        .collect()
}

/// Files applied after ours that set one of our keys to another value: (file, key, value).
fn overrides(cx: &Context, params: &[Param]) -> Result<Vec<(String, String, String)>> {
    let mut files: BTreeMap<String, RelPath> = BTreeMap::new();
    for dir in [
        "usr/lib/sysctl.d",
        "lib/sysctl.d",
        "usr/local/lib/sysctl.d",
        "run/sysctl.d",
        "etc/sysctl.d",
    ] {
        let d = RelPath::lit(dir);
        for name in cx.root.list_dir(&d)? {
            if name.ends_with(".conf") && name.as_str() > "60-bollwerk.conf" {
                files.insert(
                    name.clone(),
                    d.join(&name).map_err(crate::error::Error::Runtime)?,
                );
            }
        }
    }
    let mut out = Vec::new();
    let mut check = |label: String, text: String| {
        for (k, v) in parse_conf(&text) {
            if let Some(p) = params.iter().find(|p| p.key == k)
                && norm(&p.value) != norm(&v)
            {
                out.push((label.clone(), k, v));
            }
        }
    };
    for rel in files.values() {
        // Follow the link `99-sysctl.conf -> ../sysctl.conf` inside the root.
        let text = match cx.root.entry(rel)? {
            crate::root::Entry::Symlink { target, .. } => {
                let t = if target.starts_with('/') {
                    target
                } else {
                    format!(
                        "{}/{target}",
                        rel.parent().map(|p| p.absolute()).unwrap_or_default()
                    )
                };
                let norm_path = normalize_path(&t);
                RelPath::new(&norm_path)
                    .ok()
                    .and_then(|p| cx.root.read_string(&p).ok().flatten())
            }
            _ => cx.root.read_string(rel)?,
        };
        if let Some(t) = text {
            check(rel.absolute(), t);
        }
    }
    // ufw re-applies its own sysctl file whenever it starts (IPT_SYSCTL in /etc/default/ufw).
    if let Some(def) = cx.root.read_string(&RelPath::lit("etc/default/ufw"))?
        && let Some(path) = def
            .lines()
            .find_map(|l| l.trim().strip_prefix("IPT_SYSCTL="))
            .map(|v| v.trim().trim_matches('"').to_string())
        && path != format!("/{DROPIN}")
        && let Ok(rel) = RelPath::new(&path)
        && let Some(t) = cx.root.read_string(&rel)?
    {
        check(format!("{path} (applied by ufw when it starts)"), t);
    }
    Ok(out)
}

fn normalize_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The live value of a key (`None` when the kernel lacks it or it cannot be read).
pub fn live_value(key: &str) -> Option<String> {
    use sysctl::Sysctl;
    let ctl = sysctl::Ctl::new(key).ok()?;
    ctl.value_string().ok().map(|v| norm(&v))
}

/// What the plan decided: the keys written and the ones left out.
#[derive(Debug, Default)]
pub struct Decision {
    /// Parameters written to the drop-in.
    pub params: Vec<Param>,
    /// Parameters applied live (written ones the running kernel has; live systems only).
    pub live: Vec<Param>,
}

/// Computes the parameters for this target and adds notes; shared by plan and verify.
fn decide(cx: &Context, s: &SysctlSection, p: &mut Planner) -> Decision {
    let docker = netcommon::docker_installed(cx);
    let (all, notes) = wanted(s, docker);
    for (l, n) in notes {
        p.note(l, n);
    }
    let net_denied = netcommon::net_admin_denied(cx);
    let mut params = Vec::new();
    let mut skipped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for prm in all {
        match not_applicable(cx, &prm.key, &net_denied) {
            Some(reason) => skipped.entry(reason).or_default().push(prm.key),
            None => params.push(prm),
        }
    }
    for (reason, keys) in skipped {
        p.note(
            Level::Info,
            format!("not applicable here ({reason}): {}", keys.join(", ")),
        );
    }
    let mut live = Vec::new();
    if cx.live() {
        let mut missing = Vec::new();
        for prm in &params {
            if std::path::Path::new("/")
                .join(key_proc_path(&prm.key))
                .exists()
            {
                live.push(prm.clone());
            } else {
                missing.push(prm.key.clone());
            }
        }
        if !missing.is_empty() {
            p.note(
                Level::Warning,
                format!(
                    "the running kernel has no {}: kept in {DROPIN} for kernels that have them, not applied now",
                    missing.join(", ")
                ),
            );
        }
    }
    Decision { params, live }
}

/// The command that loads the drop-in into the running kernel with the `sysctl` crate
/// (`bollwerk sysctl-load`, hidden); used as a handler on live systems only.
pub fn load_cmd() -> Cmd {
    let exe = std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "/usr/sbin/bollwerk".into());
    Cmd::host(&exe, &["--root", "/", "sysctl-load", &format!("/{DROPIN}")])
}

/// What `sysctl-load` did.
#[derive(Debug, Default, Serialize)]
pub struct LoadReport {
    /// Keys set: (key, value).
    pub set: Vec<(String, String)>,
    /// Keys the kernel lacks.
    pub missing: Vec<String>,
    /// Keys the kernel refused (read-only here): (key, error).
    pub denied: Vec<(String, String)>,
}

/// Writes the keys of a sysctl.d-format text into the running kernel. Unknown keys and keys
/// this process may not write are reported, not errors.
///
/// # Errors
/// Other errors writing a key.
pub fn load_live(text: &str) -> Result<LoadReport> {
    use sysctl::Sysctl;
    let mut r = LoadReport::default();
    for (k, v) in parse_conf(text) {
        let ctl = match sysctl::Ctl::new(&k) {
            Ok(c) => c,
            Err(sysctl::SysctlError::NotFound(_)) => {
                r.missing.push(k);
                continue;
            }
            Err(e) => {
                r.denied.push((k, e.to_string()));
                continue;
            }
        };
        match ctl.set_value_string(&v) {
            Ok(_) => r.set.push((k, v)),
            Err(sysctl::SysctlError::NotFound(_)) => r.missing.push(k),
            Err(sysctl::SysctlError::IoError(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
                ) || e.raw_os_error() == Some(nix::libc::EROFS)
                    || e.raw_os_error() == Some(nix::libc::EPERM)
                    || e.raw_os_error() == Some(nix::libc::EACCES) =>
            {
                r.denied.push((k, e.to_string()))
            }
            Err(sysctl::SysctlError::NoWriteAccess) => r.denied.push((k, "not writable".into())),
            Err(e) => {
                return Err(crate::error::Error::Runtime(format!(
                    "setting {k} = {v}: {e}"
                )));
            }
        }
    }
    Ok(r)
}

/// The sysctl module.
pub struct Sysctl;

impl Module for Sysctl {
    fn name(&self) -> &'static str {
        "sysctl"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(s) = cx.profile.profile.sysctl.as_ref() else {
            return Ok(());
        };
        let mut p = Planner::new(self.name(), plan);
        let d = decide(cx, s, &mut p);
        let rel = RelPath::lit(DROPIN);
        if d.params.is_empty() {
            p.note(
                Level::Info,
                format!("no kernel parameter applies here; {DROPIN} is not written"),
            );
            p.remove(
                &cx.root,
                &rel,
                format!("remove {DROPIN} (nothing applies here)"),
            )?;
            return Ok(());
        }
        // A vendor file that sorts after ours (Debian's usr/lib/sysctl.d/99-protect-links.conf
        // sets fs.protected_fifos = 1) would undo our value at every boot: those keys are
        // repeated in a second drop-in that sorts after the vendor files. Files under etc/ are
        // the administrator's: reported, not overridden.
        let mut vendor: Vec<(String, String)> = Vec::new();
        for (file, key, value) in overrides(cx, &d.params)? {
            if file.starts_with("/usr/lib/") || file.starts_with("/lib/") {
                if let Some(prm) = d.params.iter().find(|prm| prm.key == key) {
                    vendor.push((
                        format!("{key} = {} (instead of {value} from {file})", prm.value),
                        key,
                    ));
                }
            } else {
                p.note(
                    Level::Warning,
                    format!(
                        "{file} sets {key} = {value} after {DROPIN}, so it wins; remove it there"
                    ),
                );
            }
        }
        let over_rel = RelPath::lit(OVERRIDES);
        if vendor.is_empty() {
            p.remove(
                &cx.root,
                &over_rel,
                format!("remove {OVERRIDES} (no vendor file overrides a key)"),
            )?;
        } else {
            let mut text = format!(
                "{MANAGED_HEADER}\n# Profile: {}\n# Keys of {DROPIN} that a vendor file sorting after it would set otherwise:\n",
                cx.profile.name()
            );
            for (why, key) in &vendor {
                text.push_str(&format!("# {why}\n"));
                if let Some(prm) = d.params.iter().find(|prm| prm.key == *key) {
                    text.push_str(&format!("{} = {}\n", prm.key, prm.value));
                }
            }
            p.file(
                &cx.root,
                &over_rel,
                text,
                Perms::root(0o644),
                format!(
                    "kernel parameters vendor files would override ({})",
                    vendor.len()
                ),
            )?;
        }
        let changed = p.file(
            &cx.root,
            &rel,
            render(&cx.profile.name(), &d.params),
            Perms::root(0o644),
            format!("kernel parameters ({} keys)", d.params.len()),
        )?;
        if cx.live() {
            if changed {
                p.handler(load_cmd());
            } else {
                let drift: Vec<String> = d
                    .live
                    .iter()
                    .filter(|prm| live_value(&prm.key).is_some_and(|v| v != norm(&prm.value)))
                    .map(|prm| prm.key.clone())
                    .collect();
                if !drift.is_empty() {
                    p.run(
                        load_cmd(),
                        Vec::new(),
                        format!(
                            "apply kernel parameters live ({} differ: {})",
                            drift.len(),
                            drift.join(", ")
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    fn verify(&self, cx: &Context) -> Result<Vec<Finding>> {
        let Some(s) = cx.profile.profile.sysctl.as_ref() else {
            return Ok(Vec::new());
        };
        if !cx.live() {
            return Ok(Vec::new());
        }
        let mut dummy = Plan::default();
        let mut p = Planner::new("sysctl", &mut dummy);
        let d = decide(cx, s, &mut p);
        let mut out = Vec::new();
        for prm in &d.live {
            match live_value(&prm.key) {
                Some(v) if v == norm(&prm.value) => {}
                v => out.push(Finding {
                    module: "sysctl",
                    message: format!(
                        "{} is {} in the running kernel, the profile wants {}",
                        prm.key,
                        v.as_deref().unwrap_or("(unreadable)"),
                        prm.value
                    ),
                }),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        assert!(SysctlKey::try_from("net.ipv4.tcp_syncookies".to_string()).is_ok());
        assert_eq!(
            SysctlKey::try_from("net/ipv4/ip_forward".to_string())
                .unwrap()
                .as_str(),
            "net.ipv4.ip_forward"
        );
        for bad in [
            "",
            "net",
            "net..x",
            "../etc/passwd",
            "net.ipv4.x y",
            "a.b=c",
        ] {
            assert!(SysctlKey::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn opt_in_changes_are_not_in_the_preset() {
        let s = SysctlSection {
            preset: Some(SysctlPreset::Cis),
            ..Default::default()
        };
        let (p, notes) = wanted(&s, false);
        assert!(!p.iter().any(|p| p.key.contains("accept_ra")));
        assert!(
            p.iter()
                .any(|p| p.key == "net.ipv4.ip_forward" && p.value == "0")
        );
        assert!(notes.iter().any(|(_, n)| n.contains("SLAAC")));
        // Docker: forwarding left alone unless the profile says so.
        let (p, notes) = wanted(&s, true);
        assert!(!p.iter().any(|p| p.key == "net.ipv4.ip_forward"));
        assert!(
            notes
                .iter()
                .any(|(l, n)| *l == Level::Warning && n.contains("Docker"))
        );
        let s = SysctlSection {
            preset: Some(SysctlPreset::Cis),
            accept_ra: Some(false),
            ip_forward: Some(true),
            settings: Some(BTreeMap::from([(
                SysctlKey::try_from("net.ipv4.tcp_syncookies".to_string()).unwrap(),
                SysctlValue::Int(0),
            )])),
        };
        let (p, _) = wanted(&s, true);
        assert!(
            p.iter()
                .any(|p| p.key == "net.ipv6.conf.all.accept_ra" && p.value == "0")
        );
        assert!(
            p.iter()
                .any(|p| p.key == "net.ipv4.ip_forward" && p.value == "1")
        );
        let syn: Vec<_> = p
            .iter()
            .filter(|p| p.key == "net.ipv4.tcp_syncookies")
            .collect();
        assert_eq!(syn.len(), 1, "profile settings replace preset values");
        assert_eq!(syn[0].value, "0");
    }

    #[test]
    fn conf_parsing() {
        let t = "# c\n; c\nnet.ipv4.ip_forward = 1\n-net/ipv4/conf/all/rp_filter=2\n\nbad line\n";
        assert_eq!(
            parse_conf(t),
            vec![
                ("net.ipv4.ip_forward".to_string(), "1".to_string()),
                ("net.ipv4.conf.all.rp_filter".to_string(), "2".to_string())
            ]
        );
        assert_eq!(
            normalize_path("/etc/sysctl.d/../sysctl.conf"),
            "/etc/sysctl.conf"
        );
    }
}
