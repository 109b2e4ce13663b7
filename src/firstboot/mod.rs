//! `bollwerk firstboot`: instance data → merged profile → per-instance actions → apply →
//! report → marker, once per instance-id.
//!
//! * [`datasource`] finds instance data (NoCloud, ConfigDrive, Hetzner/OpenStack/EC2).
//! * User-data is a bollwerk TOML profile (merged over `baseline` unless it names another
//!   profile in `extends`) or `#cloud-config` ([`cloudconfig`] turns it into a profile layer).
//! * [`netcfg`] turns network-config into systemd-networkd or netplan files.
//! * Per-instance actions go through the same Planner/journal as every module: new SSH host
//!   keys for a new instance, a new `/etc/machine-id` for a clone, network files, clear-text
//!   passwords (`chpasswd`, never written to a profile), `runcmd` (opt-in), and the marker
//!   `var/lib/bollwerk/instance-id` as the last change.
//! * Failure policy: when instance data cannot be read or the profile is invalid, nothing is
//!   applied and the exit code is non-zero; when apply fails midway, the run is rolled back, so
//!   sshd keeps its previous configuration. The unit never blocks sshd from starting.

pub mod cloudconfig;
pub mod datasource;
pub mod netcfg;
pub mod yaml;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::engine::journal::{self, RunKind, RunStatus};
use crate::engine::{Context, Level, Options, Plan, Planner, Visibility};
use crate::error::{Error, ExitStatus, Result};
use crate::exec::{Cmd, Runner};
use crate::profile::{self, Loaded, ProfileError};
use crate::root::{Entry, Perms, RelPath, Root};
use datasource::{Discovery, Found, InstanceData, Kind, NetworkText};

/// The marker: the instance-id the host was last provisioned for.
pub const MARKER: &str = "var/lib/bollwerk/instance-id";
/// The saved first-boot report (JSON, `bollwerk.firstboot/v1`).
pub const REPORT: &str = "var/lib/bollwerk/firstboot/report.json";
/// The unit started by the local stage when only a metadata service can provide instance data.
pub const NETWORK_UNIT: &str = "bollwerk-firstboot-network.service";

/// Host key types a live first boot generates before sshd starts: each takes well under a
/// second even under emulation. `ssh-keygen -A` adds the rest (RSA, seconds of prime search:
/// 4 to 9 s under QEMU's TCG) after sshd is up, in the audit stage ([`complete_host_keys`]);
/// sshd offers them from its next start.
const FAST_HOST_KEYS: &[&str] = &["ed25519", "ecdsa"];

/// SSH host key files `ssh-keygen -A` creates.
const HOST_KEYS: &[&str] = &[
    "etc/ssh/ssh_host_rsa_key",
    "etc/ssh/ssh_host_ecdsa_key",
    "etc/ssh/ssh_host_ed25519_key",
    "etc/ssh/ssh_host_dsa_key",
];

/// Which datasources a run may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Stage {
    /// Local sources, then metadata services (manual runs).
    #[default]
    All,
    /// Local sources only (early boot, before the network); hands over to
    /// `bollwerk-firstboot-network.service` when only a metadata service can help.
    Local,
    /// Everything, network included (the network unit).
    Network,
    /// The steps the local stage left for after the network (`package_update`,
    /// `package_upgrade`, `package_reboot_if_required`), with the stored effective profile
    /// (`bollwerk-firstboot-final.service`).
    Final,
    /// The audit of the provisioned instance with the stored effective profile: the local
    /// stage of a live system queues it (`bollwerk-firstboot-audit`, after sshd and the final
    /// stage), so the first SSH login does not wait for it; it fills in the report's `audit`.
    Audit,
}

/// Arguments of `bollwerk firstboot`.
#[derive(Debug, Clone, clap::Args)]
pub struct FirstbootArgs {
    /// Read instance data from this directory (NoCloud `meta-data`/`user-data`/`network-config`,
    /// or a ConfigDrive tree with `openstack/latest/`) instead of discovering it.
    #[arg(long, value_name = "DIR")]
    pub seed: Option<PathBuf>,
    /// Use only this datasource (default: discover).
    #[arg(long, value_enum)]
    pub datasource: Option<Kind>,
    /// Base URL of metadata services.
    #[arg(
        long,
        value_name = "URL",
        env = "BOLLWERK_METADATA_URL",
        default_value = datasource::DEFAULT_METADATA_URL
    )]
    pub metadata_url: String,
    /// Which datasources this run may use.
    #[arg(long, value_enum, default_value_t)]
    pub stage: Stage,
    /// Run `runcmd` from user-data (off by default: user-data is then data, not code).
    #[arg(long, env = "BOLLWERK_ALLOW_RUNCMD")]
    pub allow_runcmd: bool,
    /// Provision even when the marker says this instance is done.
    #[arg(long)]
    pub force: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: crate::format::Format,
}

fn w(out: &mut dyn Write, s: &str) -> Result<()> {
    out.write_all(s.as_bytes())
        .map_err(|e| Error::io("writing output", "stdout", e))
}

/// Everything user-data and network-config turned into, before anything is planned.
pub struct Prepared {
    /// The merged, validated profile.
    pub loaded: Loaded,
    /// Warnings (unsupported keys, skipped values).
    pub warnings: Vec<String>,
    /// Clear-text passwords for `chpasswd`.
    pub clear_passwords: Vec<(String, String)>,
    /// Users whose password expires (`chpasswd.expire`).
    pub expire: Vec<String>,
    /// Network configuration, if the instance data has one.
    pub network: Option<netcfg::NetworkConfig>,
    /// What user-data was (`toml`, `cloud-config`, `none`).
    pub user_data_kind: &'static str,
}

/// The name of the distro's cloud default user.
fn default_user(facts: &crate::facts::Facts) -> &'static str {
    if facts.os.is_ubuntu() {
        "ubuntu"
    } else if facts.os.id == "debian" {
        "debian"
    } else {
        "cloud-user"
    }
}

/// Largest user-data accepted, after gzip decompression (1 MiB).
pub const MAX_USER_DATA: usize = 1 << 20;

fn user_data_error(message: impl Into<String>, hint: &str) -> Error {
    Error::Profile(ProfileError::located("user-data", None, None, message).with_hint(hint))
}

/// Turns instance data into a profile and network configuration.
///
/// # Errors
/// [`Error::Profile`] (exit 2) for invalid user-data or network-config.
pub fn prepare(data: &InstanceData, facts: &crate::facts::Facts) -> Result<Prepared> {
    let mut raw = data.user_data.clone().unwrap_or_default();
    if raw.starts_with(&[0x1f, 0x8b]) {
        raw = cloudconfig::gunzip(&raw)
            .map_err(|e| user_data_error(e, "user-data looked gzip-compressed"))?;
    }
    if raw.len() > MAX_USER_DATA {
        return Err(user_data_error(
            format!(
                "user-data is {} bytes (after decompression), more than the limit of {MAX_USER_DATA} bytes",
                raw.len()
            ),
            "cloud providers cap user-data at 16-256 KiB: give a smaller profile or #cloud-config",
        ));
    }
    let text = String::from_utf8(raw).map_err(|_| {
        user_data_error(
            "user-data is not UTF-8 text",
            "give a TOML profile or #cloud-config",
        )
    })?;
    let trimmed = text.trim_start();
    let first = trimmed.lines().next().unwrap_or("").trim();
    let mut warnings = Vec::new();
    let mime = cloudconfig::is_mime(&text);
    let (loaded, clear, expire, kind) = if first.starts_with("#cloud-config")
        || trimmed.is_empty()
        || mime
    {
        let c = cloudconfig::convert_user_data(
            &text,
            &data.meta,
            cloudconfig::Defaults {
                user: default_user(facts),
            },
        )
        .map_err(|e| {
            Error::Profile(
                ProfileError::located(
                    "user-data",
                    e.position,
                    Some(e.key.clone()),
                    e.message.clone(),
                )
                .with_hint("see docs/firstboot.md for the supported #cloud-config subset"),
            )
        })?;
        warnings.extend(c.warnings.iter().cloned());
        let loaded =
            profile::load_text("user-data (from #cloud-config)", &c.toml, Some("baseline"))
                .map_err(|mut e| {
                    // Never print the generated profile: it holds write_files contents and
                    // password hashes. The key names the cloud-config entry.
                    e.hint = Some(
                        "the key is in the profile generated from #cloud-config (users → [[users]], write_files → firstboot.write_files; see docs/firstboot.md)".into(),
                    );
                    Error::Profile(e)
                })?;
        let kind = if trimmed.is_empty() {
            "none"
        } else if mime {
            "multipart"
        } else {
            "cloud-config"
        };
        (loaded, c.clear_passwords, c.expire, kind)
    } else if first.starts_with("#!") {
        return Err(user_data_error(
            "user-data is a shell script; bollwerk does not run scripts",
            "give a bollwerk TOML profile or #cloud-config (runcmd runs with --allow-runcmd)",
        ));
    } else if first.starts_with("#include")
        || first.starts_with("## template")
        || first.to_ascii_lowercase().starts_with("content-type:")
        || first.starts_with("#cloud-boothook")
        || first.starts_with("#part-handler")
    {
        return Err(user_data_error(
            format!("user-data of type `{first}` is not supported"),
            "give a bollwerk TOML profile or a single #cloud-config document",
        ));
    } else {
        let mut loaded = profile::load_text("user-data", &text, Some("baseline"))?;
        if loaded.profile.host.hostname.is_none()
            && let Some(h) = &data.meta.local_hostname
        {
            match crate::profile::types::Hostname::try_from(h.clone()) {
                Ok(h) => {
                    loaded.profile.host.hostname = Some(h);
                    loaded.digest = crate::root::sha256_hex(
                        serde_json::to_string(&loaded.profile)
                            .unwrap_or_default()
                            .as_bytes(),
                    );
                }
                Err(e) => warnings.push(format!("meta-data local-hostname not used: {e}")),
            }
        }
        if !data.meta.public_keys.is_empty() {
            warnings.push(format!(
                "{} public key(s) from meta-data are not used: a TOML profile names its users' keys itself",
                data.meta.public_keys.len()
            ));
        }
        (loaded, Vec::new(), Vec::new(), "toml")
    };
    let network = match &data.network {
        None => None,
        Some(n) => {
            let parsed =
                match n {
                    NetworkText::Yaml(t) => netcfg::parse_yaml(t),
                    NetworkText::Eni(t) => netcfg::parse_eni(t).map(Some),
                    NetworkText::OpenStack(t) => netcfg::parse_openstack(t).map(Some),
                    NetworkText::YamlKey(t, key) => yaml::parse(t)
                        .map_err(|e| e.to_string())
                        .and_then(|d| match d.as_ref().and_then(|d| d.get(key)) {
                            Some(n) => netcfg::parse_node(n),
                            None => Ok(None),
                        }),
                };
            let nc = parsed.map_err(|e| {
                Error::Profile(
                    ProfileError::located("network-config", None, None, e)
                        .with_hint("network-config v1/v2 as cloud-init documents it"),
                )
            })?;
            if let Some(nc) = &nc
                && !nc.unsupported.is_empty()
            {
                warnings.push(format!(
                    "network-config: not applied: {}",
                    nc.unsupported.join(", ")
                ));
            }
            nc
        }
    };
    Ok(Prepared {
        loaded,
        warnings,
        clear_passwords: clear,
        expire,
        network,
        user_data_kind: kind,
    })
}

/// Which renderer the image uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Renderer {
    Netplan,
    Networkd,
}

fn renderer(root: &Root) -> Renderer {
    if root.exists(&RelPath::lit("usr/sbin/netplan")) {
        Renderer::Netplan
    } else {
        Renderer::Networkd
    }
}

fn has_network_config(root: &Root) -> Result<bool> {
    for dir in ["etc/systemd/network", "etc/netplan"] {
        let rel = RelPath::new(dir).map_err(Error::Runtime)?;
        if root
            .list_dir(&rel)?
            .iter()
            .any(|f| f.ends_with(".network") || f.ends_with(".yaml"))
        {
            return Ok(true);
        }
    }
    let eni = root
        .read_string(&RelPath::lit("etc/network/interfaces"))?
        .unwrap_or_default();
    Ok(eni
        .lines()
        .any(|l| l.trim_start().starts_with("iface ") && !l.contains(" lo ")))
}

/// Plans network files for the instance's configuration (or DHCP when there is none and the
/// image has no network configuration of its own).
fn plan_network(cx: &Context, plan: &mut Plan, nc: Option<&netcfg::NetworkConfig>) -> Result<()> {
    let fallback;
    let nc = match nc {
        Some(n) => n,
        None => {
            if has_network_config(&cx.root)? {
                return Ok(());
            }
            fallback = netcfg::dhcp_fallback();
            &fallback
        }
    };
    let mut p = Planner::new("firstboot", plan);
    for i in nc
        .ifaces
        .iter()
        .filter(|i| i.set_name.is_some() && i.mac.is_some())
    {
        p.note(
            Level::Info,
            format!(
                "network: the NIC with MAC {} is matched by MAC, not renamed to {}",
                i.mac.as_deref().unwrap_or(""),
                i.set_name.as_deref().unwrap_or("")
            ),
        );
    }
    match renderer(&cx.root) {
        Renderer::Netplan => {
            let rel = RelPath::lit("etc/netplan/50-bollwerk.yaml");
            if p.file(
                &cx.root,
                &rel,
                netcfg::render_netplan(nc),
                Perms::root(0o600),
                "network configuration (netplan)",
            )? {
                p.handler(Cmd::in_root("/usr/sbin/netplan", &["generate"]));
                p.handler(Cmd::in_root(
                    "/usr/bin/systemctl",
                    &["try-reload-or-restart", "systemd-networkd.service"],
                ));
            }
        }
        Renderer::Networkd => {
            let mut changed = false;
            for (name, content) in netcfg::render_networkd(nc) {
                let rel =
                    RelPath::new(&format!("etc/systemd/network/{name}")).map_err(Error::Runtime)?;
                changed |= p.file(
                    &cx.root,
                    &rel,
                    content,
                    Perms::root(0o644),
                    format!("network configuration {name} (systemd-networkd)"),
                )?;
            }
            let wants =
                RelPath::lit("etc/systemd/system/multi-user.target.wants/systemd-networkd.service");
            if !cx.root.exists(&wants)
                && cx
                    .root
                    .exists(&RelPath::lit("lib/systemd/system/systemd-networkd.service"))
            {
                p.note(
                    Level::Warning,
                    "network: systemd-networkd is not enabled in this image; the .network files take effect once it is",
                );
            }
            if changed {
                p.handler(Cmd::in_root(
                    "/usr/bin/systemctl",
                    &["try-reload-or-restart", "systemd-networkd.service"],
                ));
            }
        }
    }
    let resolv = RelPath::lit("etc/resolv.conf");
    let static_dns = nc.ifaces.iter().any(|i| !i.addresses.is_empty());
    if static_dns
        && matches!(cx.root.entry(&resolv)?, Entry::File { .. } | Entry::Absent)
        && let Some(text) = netcfg::render_resolv_conf(nc)
    {
        p.file(
            &cx.root,
            &resolv,
            text,
            Perms::root(0o644),
            "DNS servers in /etc/resolv.conf",
        )?;
    }
    Ok(())
}

/// A fresh random machine id (32 lower-case hex digits, a version 4 UUID as systemd makes).
fn new_machine_id() -> Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .map_err(|e| Error::io("reading", "/dev/urandom", e))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(hex::encode(b))
}

/// The previous report, if any.
fn previous_report(root: &Root) -> Option<serde_json::Value> {
    root.read(&RelPath::lit(REPORT))
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

fn read_trim(root: &Root, p: &'static str) -> Result<Option<String>> {
    Ok(root
        .read_string(&RelPath::lit(p))?
        .map(|s| s.trim().to_string()))
}

/// What happened to per-instance state.
#[derive(Debug, Default, serde::Serialize)]
struct InstanceActions {
    host_keys_regenerated: bool,
    /// Host key types left for after sshd starts (`ssh-keygen -A` in the audit stage).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    host_keys_deferred: Vec<&'static str>,
    machine_id_regenerated: bool,
    network: Option<String>,
}

/// Plans per-instance actions that come before the profile's changes. `before_sshd`: a live
/// boot's local stage, where only the fast host key types are generated (the rest after sshd).
fn plan_instance_pre(
    cx: &Context,
    plan: &mut Plan,
    prep: &Prepared,
    previous: Option<&serde_json::Value>,
    actions: &mut InstanceActions,
    before_sshd: bool,
) -> Result<()> {
    let regen = cx
        .profile
        .profile
        .firstboot
        .as_ref()
        .and_then(|f| f.regenerate_host_keys)
        .unwrap_or(true);
    let keygen = RelPath::lit("usr/bin/ssh-keygen");
    if regen && cx.root.exists(&keygen) {
        let mut p = Planner::new("firstboot", plan);
        let mut watch = Vec::new();
        for k in HOST_KEYS {
            for suffix in ["", ".pub"] {
                let rel = RelPath::new(&format!("{k}{suffix}")).map_err(Error::Runtime)?;
                p.remove(
                    &cx.root,
                    &rel,
                    format!("remove the template's SSH host key {rel}"),
                )?;
                watch.push(rel);
            }
        }
        if before_sshd {
            for t in FAST_HOST_KEYS {
                let key = format!("/etc/ssh/ssh_host_{t}_key");
                let rel = RelPath::new(&key[1..]).map_err(Error::Runtime)?;
                let public = RelPath::new(&format!("{rel}.pub")).map_err(Error::Runtime)?;
                let files = vec![rel, public];
                p.run(
                    Cmd::in_root(
                        "/usr/bin/ssh-keygen",
                        &["-q", "-t", t, "-N", "", "-f", &key],
                    ),
                    files,
                    format!("generate a new {t} SSH host key for this instance"),
                );
            }
            actions.host_keys_deferred = vec!["rsa"];
        } else {
            p.run(
                Cmd::in_root("/usr/bin/ssh-keygen", &["-A"]),
                watch,
                "generate new SSH host keys for this instance",
            );
        }
        actions.host_keys_regenerated = true;
    }
    // A clone: the previous instance's machine-id is still here.
    let mid = read_trim(&cx.root, "etc/machine-id")?.unwrap_or_default();
    let prev_mid = previous
        .and_then(|r| r["machine_id"].as_str())
        .unwrap_or_default();
    if !mid.is_empty() && mid != "uninitialized" && mid == prev_mid {
        let id = new_machine_id()?;
        let mut p = Planner::new("firstboot", plan);
        p.file_with(
            &cx.root,
            &RelPath::lit("etc/machine-id"),
            format!("{id}\n").into_bytes(),
            Perms::root(0o444),
            "new /etc/machine-id (this instance is a clone)".into(),
            Visibility::Plain,
            None,
        )?;
        let dbus = RelPath::lit("var/lib/dbus/machine-id");
        if let Entry::File { perms, .. } = cx.root.entry(&dbus)? {
            p.file(
                &cx.root,
                &dbus,
                format!("{id}\n"),
                perms,
                "new D-Bus machine id",
            )?;
        }
        actions.machine_id_regenerated = true;
    }
    let before = plan.changes.len();
    plan_network(cx, plan, prep.network.as_ref())?;
    if plan.changes.len() > before {
        actions.network = Some(
            match (prep.network.is_some(), renderer(&cx.root)) {
                (false, _) => "dhcp fallback",
                (true, Renderer::Netplan) => "netplan",
                (true, Renderer::Networkd) => "systemd-networkd",
            }
            .to_string(),
        );
    }
    Ok(())
}

/// Plans per-instance actions after the profile's changes: passwords, runcmd, marker.
fn plan_instance_post(
    cx: &Context,
    plan: &mut Plan,
    prep: &Prepared,
    instance_id: &str,
    allow_runcmd: bool,
    defer_packages: bool,
) -> Result<Vec<&'static str>> {
    let deferred = crate::modules::firstboot::plan_instance_post(cx, plan, defer_packages)?;
    let shadow = vec![RelPath::lit("etc/shadow")];
    if !prep.clear_passwords.is_empty() {
        let input: String = prep
            .clear_passwords
            .iter()
            .map(|(u, pw)| format!("{u}:{pw}\n"))
            .collect();
        let users: Vec<&str> = prep
            .clear_passwords
            .iter()
            .map(|(u, _)| u.as_str())
            .collect();
        Planner::new("firstboot", plan).run(
            Cmd::in_root("/usr/sbin/chpasswd", &[]).stdin(input),
            shadow.clone(),
            format!(
                "set the clear-text password(s) of {} from user-data",
                users.join(", ")
            ),
        );
    }
    for u in &prep.expire {
        Planner::new("firstboot", plan).run(
            Cmd::in_root("/usr/bin/chage", &["-d", "0", u]),
            shadow.clone(),
            format!("expire the password of {u} (chpasswd.expire)"),
        );
    }
    let runcmd = cx
        .profile
        .profile
        .firstboot
        .as_ref()
        .map(|f| f.runcmd.clone())
        .unwrap_or_default();
    if !runcmd.is_empty() {
        if allow_runcmd {
            crate::modules::firstboot::plan_runcmd(cx, plan, &runcmd)?;
        } else {
            Planner::new("firstboot", plan).note(
                Level::Warning,
                format!(
                    "runcmd: {} command(s) not run (user-data is treated as data; pass --allow-runcmd or set BOLLWERK_ALLOW_RUNCMD=1 in the unit)",
                    runcmd.len()
                ),
            );
        }
    }
    Planner::new("firstboot", plan).file(
        &cx.root,
        &RelPath::lit(MARKER),
        format!("{instance_id}\n"),
        Perms::root(0o644),
        format!("mark instance {instance_id} as provisioned"),
    )?;
    Ok(deferred)
}

/// `systemctl` handlers must not wait for jobs at boot: the first-boot unit is ordered before
/// sshd and the network, so a blocking reload of a unit queued after it would deadlock.
///
/// Before sshd starts (`before_sshd`, and no `/run/sshd.pid`), reloading it is dropped: it
/// reads the new configuration when it starts, and each command costs time before the first
/// login.
fn no_block_handlers(plan: &mut Plan, root: &Root, before_sshd: bool) {
    if before_sshd && !root.exists(&RelPath::lit("run/sshd.pid")) {
        let unit = format!("{}.service", crate::modules::sshd::service_unit(root));
        plan.handlers.retain(|h| {
            !(h.cmd.program.ends_with("/systemctl")
                && h.cmd.args.first().map(String::as_str) == Some("reload")
                && h.cmd.args.get(1) == Some(&unit))
        });
    }
    for h in &mut plan.handlers {
        if h.cmd.program.ends_with("/systemctl")
            && h.cmd.args.first().map(String::as_str) != Some("--no-block")
        {
            h.cmd.args.insert(0, "--no-block".into());
        }
    }
}

fn describe_found(f: &Found) -> &'static str {
    match f {
        Found::Data(_) => "data",
        Found::NeedsNetwork(_) => "needs-network",
        Found::Nothing => "nothing",
    }
}

/// Runs `bollwerk firstboot`.
///
/// # Errors
/// Profile errors (exit 2), unreadable instance data and failed applies (exit 3).
pub fn run(
    root_path: &std::path::Path,
    args: &FirstbootArgs,
    runner: &dyn Runner,
    out: &mut dyn Write,
) -> Result<ExitStatus> {
    if args.stage == Stage::Final {
        return crate::modules::firstboot::run_final(root_path, runner, out);
    }
    if args.stage == Stage::Audit {
        return run_audit(root_path, runner, out);
    }
    let started = Instant::now();
    let started_at = journal::now_rfc3339();
    let root = Root::new(root_path)?;
    let live_root = root.is_host();
    let allow_network = args.stage != Stage::Local;
    let disc = Discovery {
        root: &root,
        runner,
        seed: args.seed.clone(),
        force: args.datasource,
        metadata_url: args.metadata_url.clone(),
        allow_network,
        scan_devices: live_root,
        timeout: Duration::from_secs(5),
        attempts: 3,
    };
    let found = disc.discover()?;
    let t_discovered = started.elapsed();
    tracing::info!(found = describe_found(&found), "instance data discovery");
    let data = match found {
        Found::Nothing => {
            w(
                out,
                "firstboot: no instance data (no NoCloud seed, cidata/config-2 volume, ds=nocloud, or metadata service of a known cloud); nothing to do\n",
            )?;
            return Ok(ExitStatus::Ok);
        }
        Found::NeedsNetwork(kind) => {
            let facts = crate::facts::Facts::gather(&root, runner)?;
            if facts.live && args.stage == Stage::Local {
                runner.run_ok(
                    &root,
                    &Cmd::in_root("/usr/bin/systemctl", &["--no-block", "start", NETWORK_UNIT]),
                )?;
                w(
                    out,
                    &format!(
                        "firstboot: no local instance data; {kind:?} metadata service indicated, handing over to {NETWORK_UNIT}\n"
                    ),
                )?;
            } else {
                w(
                    out,
                    &format!(
                        "firstboot: no local instance data; the {kind:?} metadata service needs the network (run with --stage network)\n"
                    ),
                )?;
            }
            return Ok(ExitStatus::Ok);
        }
        Found::Data(d) => *d,
    };
    let instance_id = data
        .meta
        .instance_id
        .clone()
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| {
            Error::Runtime(format!(
                "instance data from {} has no instance-id; nothing applied",
                data.source
            ))
        })?;
    if instance_id.contains(['\n', '\0']) || instance_id.len() > 256 {
        return Err(Error::Runtime(format!(
            "instance-id from {} is not a single line; nothing applied",
            data.source
        )));
    }
    let marker = read_trim(&root, MARKER)?;
    if marker.as_deref() == Some(instance_id.as_str()) && !args.force {
        let msg = format!(
            "firstboot: instance {instance_id} is already provisioned ({}); nothing to do ({:.2} s)\n",
            MARKER,
            started.elapsed().as_secs_f64()
        );
        if args.format == crate::format::Format::Json {
            w(
                out,
                &format!(
                    "{:#}\n",
                    json!({"schema": "bollwerk.firstboot/v1", "instance_id": instance_id, "status": "already-provisioned"})
                ),
            )?;
        } else {
            w(out, &msg)?;
        }
        // Package steps a previous boot could not finish are retried (and only they).
        if let Some(line) = crate::modules::firstboot::resume_final(&root, runner)
            && args.format != crate::format::Format::Json
        {
            w(out, &line)?;
        }
        return Ok(ExitStatus::Ok);
    }
    let facts = crate::facts::Facts::gather(&root, runner)?;
    let prep = prepare(&data, &facts)?;
    for wmsg in &prep.warnings {
        tracing::warn!("{wmsg}");
    }
    let _lock = journal::lock(&root)?;
    // Before the network, apt cannot reach a mirror: package changes go to the final stage.
    let options = Options {
        offline: args.stage == Stage::Local,
        ..Options::default()
    };
    let cx = Context::new(root.clone(), runner, &prep.loaded, options)?;
    let previous = previous_report(&root);
    let mut actions = InstanceActions::default();
    let mut pre = Plan::default();
    let before_sshd = live_root && args.stage == Stage::Local;
    plan_instance_pre(
        &cx,
        &mut pre,
        &prep,
        previous.as_ref(),
        &mut actions,
        before_sshd,
    )?;
    crate::modules::firstboot::plan_instance_pre(&cx, &mut pre, args.allow_runcmd)?;
    let modules_plan = crate::modules::plan_all(&cx)?;
    let mut plan = pre;
    plan.changes.extend(modules_plan.changes);
    for h in modules_plan.handlers {
        if !plan.handlers.contains(&h) {
            plan.handlers.push(h);
        }
    }
    plan.notes.extend(modules_plan.notes);
    plan.refusals.extend(modules_plan.refusals);
    plan.ssh_access = modules_plan.ssh_access;
    plan.requested_packages = modules_plan.requested_packages;
    let mut deferred = plan_instance_post(
        &cx,
        &mut plan,
        &prep,
        &instance_id,
        args.allow_runcmd,
        args.stage == Stage::Local,
    )?;
    if crate::modules::packages::deferred(&plan) {
        deferred.insert(0, "packages");
    }
    no_block_handlers(&mut plan, &root, before_sshd);
    if let Some(r) = plan.refusals.first() {
        return Err(Error::Unsafe {
            reason: format!(
                "{}\n  nothing was changed; sshd keeps its current configuration",
                r.reason
            ),
            hint: r.hint.clone(),
        });
    }
    for n in plan.notes.iter().filter(|n| n.level == Level::Warning) {
        tracing::warn!(module = n.module, "{}", n.message);
    }
    let t_planned = started.elapsed();
    let runs_before: Vec<String> = journal::list_runs(&root)?
        .into_iter()
        .map(|m| m.id)
        .collect();
    let report = match crate::engine::apply::apply(&cx, &plan) {
        Ok(r) => r,
        Err(e) => {
            // Roll back whatever a failed run changed, so sshd keeps its configuration.
            let failed = journal::list_runs(&root)?.into_iter().find(|m| {
                !runs_before.contains(&m.id)
                    && m.kind == RunKind::Apply
                    && m.status == RunStatus::Failed
                    && !m.entries.is_empty()
            });
            let mut msg = format!("firstboot for instance {instance_id} failed: {e}");
            if let Some(m) = failed {
                match journal::rollback(&root, &m.id, true) {
                    Ok(rb) => msg.push_str(&format!(
                        "\n  run {} was rolled back ({} paths restored); the host is as before",
                        m.id,
                        rb.restored.len()
                    )),
                    Err(re) => {
                        msg.push_str(&format!("\n  rolling back run {} failed too: {re}", m.id))
                    }
                }
            } else {
                msg.push_str("\n  nothing was changed");
            }
            return Err(Error::Runtime(msg));
        }
    };
    // Like `apply`: configure what the package step installed (a follow-up run), then verify
    // that the host converged and the modules' live checks pass. Before sshd starts only what
    // a safe first login needs: on a live boot the verification runs after sshd, in the audit
    // stage (`findings` is `None` until then).
    let needs_follow_up =
        crate::modules::packages::changes_software(&plan) || report.stopped.is_some();
    let (findings, follow_up, t_applied) = if before_sshd && !needs_follow_up {
        (None, None, started.elapsed())
    } else {
        let (cx2, follow_up) = crate::modules::follow_up_run(&cx, &plan, &report, false)?;
        let t_applied = started.elapsed();
        let findings = if before_sshd {
            None
        } else {
            Some(verify_host(&cx2)?)
        };
        (findings, follow_up, t_applied)
    };
    // The audit of the provisioned host: saved next to the first-boot report and in the
    // report history (`--compare last` starts from it); its summary goes into the report. An
    // audit problem is recorded, never a reason to fail first boot.
    let t_verified = started.elapsed();
    // Before sshd starts only what a safe first login needs: on a live system the audit runs
    // later, in its own unit (it is read-only, the host is hardened already).
    let audit = if before_sshd {
        json!({ "queued": AUDIT_UNIT })
    } else {
        firstboot_audit(&root, runner, &prep.loaded)
    };
    let elapsed = started.elapsed();
    let mid = read_trim(&root, "etc/machine-id")?.unwrap_or_default();
    let mut doc = json!({
        "schema": "bollwerk.firstboot/v1",
        "status": status_for(findings.as_deref()),
        "instance_id": instance_id,
        "datasource": data.source,
        "user_data": prep.user_data_kind,
        "profile": {"name": prep.loaded.name(), "digest": prep.loaded.digest},
        "run_id": report.run_id,
        "follow_up_run_id": follow_up.as_ref().and_then(|(r, _)| r.run_id.clone()),
        "changes": report.applied.len(),
        "instance": actions,
        "machine_id": mid,
        "warnings": prep.warnings,
        "deferred_to_final": deferred,
        "notes": plan.notes,
        "findings": findings.as_deref().unwrap_or_default(),
        "verify": if findings.is_some() { "done" } else { "queued" },
        "handlers": report.handlers.iter().map(|(c, r)| json!({"command": c, "ok": r.is_ok(), "error": r.as_ref().err()})).collect::<Vec<_>>(),
        "audit": audit,
        "started": started_at,
        "duration_ms": elapsed.as_millis() as u64,
        "phases_ms": {
            "discover": t_discovered.as_millis() as u64,
            "prepare_and_plan": (t_planned - t_discovered).as_millis() as u64,
            "apply": (t_applied - t_planned).as_millis() as u64,
            "verify": (t_verified - t_applied).as_millis() as u64,
            "audit": (elapsed - t_verified).as_millis() as u64,
        },
    });
    let dir = RelPath::lit("var/lib/bollwerk/firstboot");
    if !root.exists(&dir) {
        root.create_dir(&dir, Perms::root(0o700))?;
    }
    crate::modules::firstboot::store_effective_profile(&root, &prep.loaded)?;
    let final_note =
        crate::modules::firstboot::hand_over_final(&root, runner, &instance_id, &deferred)?;
    // Queued after the final stage (ordered after it) and with the profile stored.
    if before_sshd && !queue_audit(&root, runner) {
        if !actions.host_keys_deferred.is_empty() {
            doc["instance"]["host_keys_completed"] = complete_host_keys(&root, runner);
        }
        doc["audit"] = firstboot_audit(&root, runner, &prep.loaded);
    }
    root.write_atomic(
        &RelPath::lit(REPORT),
        format!("{doc:#}\n").as_bytes(),
        Perms::root(0o600),
    )?;
    match args.format {
        crate::format::Format::Json => w(out, &format!("{doc:#}\n"))?,
        crate::format::Format::Text => {
            let mut s = String::new();
            for wmsg in &prep.warnings {
                s.push_str(&format!("warning: {wmsg}\n"));
            }
            for n in plan.notes.iter().filter(|n| n.level == Level::Warning) {
                s.push_str(&format!("warning [{}]: {}\n", n.module, n.message));
            }
            for (m, summary) in &report.applied {
                s.push_str(&format!("[{m}] {summary}\n"));
            }
            for (c, r) in &report.handlers {
                if let Err(e) = r {
                    s.push_str(&format!("failed: {c}: {e}\n"));
                }
            }
            for f in findings.iter().flatten() {
                s.push_str(&format!("finding: {f}\n"));
            }
            s.push_str(&format!(
                "firstboot: instance {instance_id} from {} provisioned: {} change{} (run {}) in {:.2} s; report {}\n",
                data.source,
                report.applied.len(),
                if report.applied.len() == 1 { "" } else { "s" },
                report.run_id.as_deref().unwrap_or("-"),
                elapsed.as_secs_f64(),
                REPORT
            ));
            if let Some(line) = &final_note {
                s.push_str(line);
            }
            w(out, &s)?;
        }
    }
    match findings {
        Some(f) if !f.is_empty() => Err(Error::Runtime(format!(
            "instance {instance_id} provisioned (run {}), but verification found:\n  {}",
            report.run_id.unwrap_or_default(),
            f.join("\n  ")
        ))),
        _ => Ok(ExitStatus::Ok),
    }
}

/// The report's status for verification findings (`None`: not verified yet).
fn status_for(findings: Option<&[String]>) -> &'static str {
    match findings {
        Some(f) if !f.is_empty() => "provisioned-with-findings",
        _ => "provisioned",
    }
}

/// Verifies a provisioned host: the plan is empty (converged) and the modules' live checks
/// pass; each problem as one line.
///
/// # Errors
/// When planning or a check cannot run.
fn verify_host(cx: &Context) -> Result<Vec<String>> {
    let mut findings: Vec<String> = crate::modules::plan_all(cx)?
        .changes
        .iter()
        .map(|c| format!("not converged: {}: {}", c.module, c.summary))
        .collect();
    findings.extend(
        crate::modules::verify_all(cx)?
            .into_iter()
            .map(|f| format!("{}: {}", f.module, f.message)),
    );
    Ok(findings)
}

/// The transient unit the local stage queues for the audit.
pub const AUDIT_UNIT: &str = "bollwerk-firstboot-audit.service";

/// Queues [`AUDIT_UNIT`] (`bollwerk firstboot --stage audit`, ordered after sshd and the final
/// stage, at a low CPU priority); false when it could not be queued (the caller then audits at
/// once).
fn queue_audit(root: &Root, runner: &dyn Runner) -> bool {
    let Ok(exe) = std::env::current_exe() else {
        return false;
    };
    let exe = exe.to_string_lossy();
    let after = format!(
        "--property=After=ssh.service sshd.service {}",
        crate::modules::firstboot::FINAL_UNIT
    );
    let unit = format!("--unit={AUDIT_UNIT}");
    let cmd = Cmd::in_root(
        "/usr/bin/systemd-run",
        &[
            "--no-block",
            &unit,
            "--description=bollwerk first boot: audit of the provisioned instance",
            "--property=Type=oneshot",
            "--property=RemainAfterExit=yes",
            "--property=Nice=10",
            &after,
            &exe,
            "firstboot",
            "--stage",
            "audit",
        ],
    );
    match runner.run_ok(root, &cmd) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!("queueing {AUDIT_UNIT}: {e}; auditing now");
            false
        }
    }
}

/// `bollwerk firstboot --stage audit`: audits with the stored effective profile and puts the
/// summary into the saved report (`audit`, `phases_ms.audit`).
///
/// # Errors
/// No stored profile, or the report cannot be written.
fn run_audit(
    root_path: &std::path::Path,
    runner: &dyn Runner,
    out: &mut dyn Write,
) -> Result<ExitStatus> {
    let root = Root::new(root_path)?;
    let path = crate::modules::firstboot::stored_profile(root_path).ok_or_else(|| {
        Error::Runtime(format!(
            "no effective profile stored ({}); run first boot first",
            crate::modules::firstboot::EFFECTIVE_PROFILE
        ))
    })?;
    let loaded = profile::load(&path)?;
    let previous = previous_report(&root);
    let instance = previous.as_ref().map(|d| &d["instance"]);
    // The host keys the local stage left for after sshd come first: the audit checks them.
    let keys = instance
        .filter(|i| {
            i["host_keys_deferred"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
                && i["host_keys_completed"].is_null()
        })
        .map(|_| complete_host_keys(&root, runner));
    // Then the verification the local stage left for after sshd.
    let verify_started = Instant::now();
    let findings = previous
        .as_ref()
        .filter(|d| d["verify"] == "queued")
        .map(|_| {
            verify_stored(&root, runner, &loaded)
                .unwrap_or_else(|e| vec![format!("verification could not run: {e}")])
        });
    let verify_ms = verify_started.elapsed().as_millis() as u64;
    let audit_started = Instant::now();
    let summary = firstboot_audit(&root, runner, &loaded);
    let ms = audit_started.elapsed().as_millis() as u64;
    if let Some(mut doc) = previous {
        if let Some(k) = &keys {
            doc["instance"]["host_keys_completed"] = k.clone();
        }
        if let Some(f) = &findings {
            doc["findings"] = json!(f);
            doc["status"] = json!(status_for(Some(f)));
            doc["verify"] = json!("done");
        }
        doc["audit"] = summary.clone();
        if let Some(p) = doc["phases_ms"].as_object_mut() {
            if findings.is_some() {
                p.insert("verify".into(), json!(verify_ms));
            }
            p.insert("audit".into(), json!(ms));
        }
        root.write_atomic(
            &RelPath::lit(REPORT),
            format!("{doc:#}\n").as_bytes(),
            Perms::root(0o600),
        )?;
    }
    w(
        out,
        &format!(
            "firstboot (audit): {} in {:.2} s; report {}\n",
            match summary.get("score") {
                None => format!("failed: {}", summary["error"]),
                Some(_) => format!(
                    "score {}, {} pass, {} fail, {} covered by the profile failing",
                    summary["score"],
                    summary["pass"],
                    summary["fail"],
                    summary["covered_failing"].as_array().map_or(0, Vec::len)
                ),
            },
            ms as f64 / 1000.0,
            AUDIT_REPORT
        ),
    )?;
    match findings {
        Some(f) if !f.is_empty() => Err(Error::Runtime(format!(
            "the provisioned host did not verify:\n  {}",
            f.join("\n  ")
        ))),
        _ => Ok(ExitStatus::Ok),
    }
}

/// The verification a live boot's local stage left for after sshd, with the stored profile.
/// Package steps still waiting for the final stage are not findings: final.json has them and
/// the next boot retries them.
///
/// # Errors
/// When facts cannot be read or a check cannot run.
fn verify_stored(root: &Root, runner: &dyn Runner, loaded: &Loaded) -> Result<Vec<String>> {
    let options = Options {
        offline: root.exists(&RelPath::lit(crate::modules::firstboot::PENDING_FINAL)),
        converging: true,
        ..Options::default()
    };
    let cx = Context::new(root.clone(), runner, loaded, options)?;
    verify_host(&cx)
}

/// Generates the host key types the local stage left for after sshd (`ssh-keygen -A` creates
/// only the missing ones); the outcome, for the first-boot report. sshd is not reloaded: a
/// reload re-executes it, and connections being opened at that moment (automation logging in
/// right after boot) are reset. It offers them from its next start; ed25519 and ECDSA, which
/// every current client speaks, it offers from the first login.
fn complete_host_keys(root: &Root, runner: &dyn Runner) -> serde_json::Value {
    let started = Instant::now();
    match runner.run_ok(root, &Cmd::in_root("/usr/bin/ssh-keygen", &["-A"])) {
        Ok(_) => json!({ "ok": true, "ms": started.elapsed().as_millis() as u64 }),
        Err(e) => {
            tracing::warn!("completing the SSH host keys: {e}");
            json!({ "ok": false, "error": e.to_string() })
        }
    }
}

/// Where first boot saves its audit report.
pub const AUDIT_REPORT: &str = "var/lib/bollwerk/firstboot/audit.json";

/// Runs the audit with the first-boot profile and saves the report; returns the summary for
/// the first-boot report (`{"error": …}` when the audit could not run).
fn firstboot_audit(
    root: &Root,
    runner: &dyn Runner,
    loaded: &crate::profile::Loaded,
) -> serde_json::Value {
    use crate::audit::result::Status;
    let res = (|| -> Result<serde_json::Value> {
        let cat = crate::audit::cmd::catalog()?;
        let r = crate::audit::run(
            &cat,
            root.clone(),
            runner,
            Some(loaded),
            &crate::audit::AuditOptions::default(),
        )?;
        let dir = RelPath::lit("var/lib/bollwerk/firstboot");
        if !root.exists(&dir) {
            root.create_dir(&dir, Perms::root(0o700))?;
        }
        root.write_atomic(
            &RelPath::lit(AUDIT_REPORT),
            crate::audit::report::json(&r).as_bytes(),
            Perms::root(0o600),
        )?;
        let saved = crate::audit::report::save(root, &r)?;
        let covered_failing: Vec<&str> = r
            .results
            .iter()
            .filter(|x| {
                x.covered_by_profile == Some(true)
                    && matches!(x.status, Status::Fail | Status::Error)
            })
            .map(|x| x.id.as_str())
            .collect();
        let c = &r.summary.counts;
        Ok(json!({
            "report": RelPath::lit(AUDIT_REPORT).to_string(),
            "saved": saved.to_string(),
            "score": c.score,
            "pass": c.pass,
            "fail": c.fail,
            "error": c.error,
            "covered_by_profile": r.results.iter().filter(|x| x.covered_by_profile == Some(true)).count(),
            "covered_failing": covered_failing,
        }))
    })();
    res.unwrap_or_else(|e| json!({ "error": e.to_string() }))
}
