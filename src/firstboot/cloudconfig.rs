//! `#cloud-config` user-data (and meta-data's host name and keys) → a bollwerk profile layer.
//!
//! The subset covers what Proxmox VE's generator writes (`hostname`, `fqdn`, `manage_etc_hosts`,
//! `user`, `password` as a hash, `ssh_authorized_keys`, `chpasswd.expire`, `users: [default]`,
//! `package_upgrade`) and what people commonly write by hand (`users` with `groups`, `sudo`,
//! `shell`, `lock_passwd`, `ssh_authorized_keys`/`ssh-authorized-keys`, `passwd`;
//! `chpasswd.list`/`chpasswd.users`, `ssh_pwauth`, `disable_root`, `timezone`, `packages`,
//! `write_files`, `runcmd`), and what copied configs need on day one: `package_update`,
//! `package_upgrade`, `package_reboot_if_required`, `apt` sources with keys, `bootcmd`,
//! `write_files` `defer`, `ssh_import_id` `lp:`, restricted sudo rules, `growpart`,
//! `resize_rootfs`, `swap`, `mounts`, `ntp`, `power_state`, and MIME multipart user-data
//! ([`convert_user_data`]). Every other key is listed in a warning, never silently dropped.
//!
//! Values are validated here, so errors point at the user-data line; the result is TOML text
//! loaded through [`crate::profile::load_text`] over the built-in `baseline`.

use base64::Engine;

use super::yaml::{self, Node};
use crate::profile::types::{
    AbsPath, AccountPath, Gecos, GroupName, Hostname, Mode, PasswordHash, Timezone, UserName,
};
use crate::sshkeys::{KeyUrl, PublicKey};

/// The source name used in messages.
pub const SOURCE: &str = "user-data";

/// An error in user-data, with position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    /// 1-based line and column.
    pub position: Option<(usize, usize)>,
    /// Dotted key path.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{SOURCE}")?;
        if let Some((l, c)) = self.position {
            write!(f, ":{l}:{c}")?;
        }
        write!(f, ": `{}`: {}", self.key, self.message)
    }
}

fn err(n: &Node, key: &str, message: impl Into<String>) -> ConvertError {
    ConvertError {
        position: Some((n.line, n.col)),
        key: key.to_string(),
        message: message.into(),
    }
}

/// Instance meta-data bollwerk uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MetaData {
    /// `instance-id` (`uuid` on ConfigDrive).
    pub instance_id: Option<String>,
    /// `local-hostname` (`hostname` on ConfigDrive/Hetzner).
    pub local_hostname: Option<String>,
    /// `public-keys` / `public_keys` / `keys[].data`.
    pub public_keys: Vec<String>,
}

/// Parses NoCloud/Hetzner meta-data (YAML, JSON is YAML too) or ConfigDrive `meta_data.json`.
///
/// # Errors
/// A message for syntax errors.
pub fn parse_meta_data(text: &str) -> Result<MetaData, String> {
    let Some(doc) = yaml::parse(text).map_err(|e| format!("meta-data:{e}"))? else {
        return Ok(MetaData::default());
    };
    let s = |k: &str| doc.get(k).and_then(Node::as_str).map(str::to_string);
    let mut md = MetaData {
        instance_id: s("instance-id")
            .or_else(|| s("instance_id"))
            .or_else(|| s("uuid")),
        local_hostname: s("local-hostname")
            .or_else(|| s("local_hostname"))
            .or_else(|| s("hostname")),
        public_keys: Vec::new(),
    };
    for key in ["public-keys", "public_keys"] {
        if let Some(n) = doc.get(key) {
            collect_keys(n, &mut md.public_keys);
        }
    }
    if let Some(keys) = doc.get("keys").and_then(Node::as_seq) {
        for k in keys {
            if let Some(d) = k.get("data").and_then(Node::as_str) {
                md.public_keys.push(d.trim().to_string());
            }
        }
    }
    md.public_keys.dedup();
    Ok(md)
}

/// Keys as a string (one per line), a list, or a map of name → key (or → {openssh-key: …}).
fn collect_keys(n: &Node, out: &mut Vec<String>) {
    match &n.value {
        yaml::Value::Scalar { text, .. } => out.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        ),
        yaml::Value::Seq(items) => items.iter().for_each(|i| collect_keys(i, out)),
        yaml::Value::Map(entries) => entries.iter().for_each(|(_, v)| collect_keys(v, out)),
    }
}

/// What a cloud-config turned into.
#[derive(Debug, Clone, Default)]
pub struct Converted {
    /// The profile layer (TOML).
    pub toml: String,
    /// Keys and values that are not applied, one message each.
    pub warnings: Vec<String>,
    /// Clear-text passwords to set with `chpasswd` (user, password); never written to a profile.
    pub clear_passwords: Vec<(String, String)>,
    /// Users whose password must be changed at the next login (`chpasswd.expire`).
    pub expire: Vec<String>,
    set_by_chpasswd: Vec<String>,
}

/// Keys handled, for the unsupported-key warning.
const TOP_KEYS: &[&str] = &[
    "hostname",
    "fqdn",
    "manage_etc_hosts",
    "preserve_hostname",
    "prefer_fqdn_over_hostname",
    "user",
    "users",
    "groups",
    "password",
    "chpasswd",
    "ssh_authorized_keys",
    "ssh-authorized-keys",
    "ssh_import_id",
    "ssh_pwauth",
    "disable_root",
    "timezone",
    "packages",
    "package_update",
    "package_upgrade",
    "package_reboot_if_required",
    "write_files",
    "runcmd",
    "ssh_deletekeys",
    "bootcmd",
    "apt",
    "growpart",
    "resize_rootfs",
    "swap",
    "mounts",
    "mount_default_fields",
    "ntp",
    "power_state",
];

const USER_KEYS: &[&str] = &[
    "name",
    "groups",
    "sudo",
    "shell",
    "lock_passwd",
    "ssh_authorized_keys",
    "ssh-authorized-keys",
    "ssh_import_id",
    "passwd",
    "hashed_passwd",
    "plain_text_passwd",
    "gecos",
    "homedir",
    "primary_group",
    "system",
    "uid",
];

/// A cloud-init user as bollwerk will create it.
#[derive(Debug, Clone, Default)]
struct User {
    name: String,
    groups: Vec<String>,
    sudo: Option<&'static str>,
    sudo_rules: Vec<String>,
    shell: Option<String>,
    keys: Vec<String>,
    key_sources: Vec<String>,
    hash: Option<String>,
    comment: Option<String>,
    home: Option<String>,
    primary_group: Option<String>,
    system: Option<bool>,
    uid: Option<i64>,
}

fn hashed(pw: &str) -> bool {
    pw.starts_with('$') && pw.matches('$').count() >= 3
}

/// Maps cloud-init sudo rules to the users module's `sudo` mode (full rights) and
/// `sudo_rules` (restricted rules, validated here and by `visudo` before activation).
#[allow(clippy::type_complexity)]
fn sudo_mode(rules: &[String]) -> Result<(Option<&'static str>, Vec<String>), String> {
    let mut mode = None;
    let mut restricted = Vec::new();
    for r in rules {
        let norm: String = r.split_whitespace().collect::<Vec<_>>().join(" ");
        let compact = norm.replace(' ', "");
        let rest = compact
            .strip_prefix("ALL=(ALL)")
            .or_else(|| compact.strip_prefix("ALL=(ALL:ALL)"));
        match rest {
            Some("NOPASSWD:ALL") => mode = Some("nopasswd"),
            Some("ALL") if mode.is_none() => mode = Some("password"),
            Some("ALL") => {}
            _ => {
                let rule = crate::modules::users::SudoRule::try_from(norm)?;
                restricted.push(rule.as_str().to_string());
            }
        }
    }
    Ok((mode, restricted))
}

/// Target OS facts that choose cloud-init's defaults.
#[derive(Debug, Clone, Copy)]
pub struct Defaults<'a> {
    /// Name of the distro's default user (`debian`, `ubuntu`).
    pub user: &'a str,
}

/// Converts cloud-config text (and meta-data) into a profile layer.
///
/// # Errors
/// A [`ConvertError`] with position for YAML syntax errors and invalid values (user names,
/// keys, paths, modes, hashes); unsupported keys are warnings, not errors.
pub fn convert(text: &str, md: &MetaData, d: Defaults) -> Result<Converted, ConvertError> {
    let doc = parse_doc(text)?;
    convert_doc(doc, md, d, &[], Vec::new())
}

fn parse_doc(text: &str) -> Result<Node, ConvertError> {
    let doc = yaml::parse(text).map_err(|e| ConvertError {
        position: Some((e.line, e.col)),
        key: "(syntax)".into(),
        message: format!("YAML syntax error: {}", e.message),
    })?;
    Ok(doc.unwrap_or(Node {
        line: 1,
        col: 1,
        value: yaml::Value::Map(Vec::new()),
    }))
}

/// Converts a parsed cloud-config (one document, or the merge of a multipart's parts) plus
/// shell-script parts (run like `runcmd`, under the same opt-in) into a profile layer.
fn convert_doc(
    doc: Node,
    md: &MetaData,
    d: Defaults,
    scripts: &[Script],
    warnings: Vec<String>,
) -> Result<Converted, ConvertError> {
    let Some(map) = doc.as_map() else {
        return Err(err(
            &doc,
            "(document)",
            "cloud-config must be a mapping of keys",
        ));
    };
    let mut out = Converted {
        warnings,
        ..Converted::default()
    };
    let mut unsupported = Vec::new();
    for (k, _) in map {
        let name = k.as_scalar().unwrap_or("");
        if !TOP_KEYS.contains(&name) {
            unsupported.push(format!("{name} (line {})", k.line));
        }
    }
    let mut profile = toml::Table::new();
    let mut host = toml::Table::new();
    let mut ssh = toml::Table::new();
    let mut firstboot = toml::Table::new();

    // Host name.
    let preserve = doc.get("preserve_hostname").and_then(Node::as_bool) == Some(true);
    let fqdn = doc.get("fqdn").and_then(Node::as_str);
    let short = doc.get("hostname").and_then(Node::as_str);
    let prefer_fqdn = doc.get("prefer_fqdn_over_hostname").and_then(Node::as_bool) == Some(true);
    if !preserve {
        let check = |n: &Node, v: &str, key: &str| {
            Hostname::try_from(v.to_string()).map_err(|e| err(n, key, e))
        };
        let name = match (short, fqdn) {
            (_, Some(f)) if prefer_fqdn || short.is_none() => Some(f.to_string()),
            (Some(s), _) => Some(s.to_string()),
            (None, None) => md.local_hostname.clone(),
            (None, Some(f)) => Some(f.to_string()),
        };
        if let Some(n) = doc.get("hostname") {
            check(n, n.as_str().unwrap_or(""), "hostname")?;
        }
        if let Some(n) = doc.get("fqdn") {
            check(n, n.as_str().unwrap_or(""), "fqdn")?;
            host.insert("fqdn".into(), n.as_str().unwrap_or("").into());
        }
        if let Some(name) = name {
            match Hostname::try_from(name.clone()) {
                Ok(_) => {
                    host.insert("hostname".into(), name.into());
                }
                Err(e) => out
                    .warnings
                    .push(format!("meta-data local-hostname not used: {e}")),
            }
        }
    }
    if let Some(n) = doc.get("manage_etc_hosts") {
        let v = match (n.as_bool(), n.as_str()) {
            (Some(b), _) => b,
            (None, Some("localhost" | "template")) => true,
            _ => {
                return Err(err(
                    n,
                    "manage_etc_hosts",
                    "expected true, false, \"template\" or \"localhost\"",
                ));
            }
        };
        host.insert("manage_etc_hosts".into(), v.into());
    }
    if let Some(n) = doc.get("timezone") {
        let tz = n.as_str().unwrap_or("");
        Timezone::try_from(tz.to_string()).map_err(|e| err(n, "timezone", e))?;
        host.insert("timezone".into(), tz.into());
    }

    // Users.
    let mut users: Vec<User> = Vec::new();
    let mut default_cfg: Option<&Node> = None;
    let default_name = match doc.get("user") {
        Some(u) if u.as_map().is_some() => {
            default_cfg = Some(u);
            u.get("name")
                .and_then(Node::as_str)
                .unwrap_or(d.user)
                .to_string()
        }
        Some(u) => u
            .as_str()
            .ok_or_else(|| err(u, "user", "expected a user name or a mapping"))?
            .to_string(),
        None => d.user.to_string(),
    };
    let mut want_default = true;
    if let Some(list) = doc.get("users") {
        want_default = false;
        let items: Vec<Node> = match &list.value {
            yaml::Value::Seq(items) => items.clone(),
            yaml::Value::Scalar { .. } if list.is_null() => Vec::new(),
            yaml::Value::Scalar { text, .. } => text
                .split(',')
                .map(|s| Node {
                    line: list.line,
                    col: list.col,
                    value: yaml::Value::Scalar {
                        text: s.trim().to_string(),
                        plain: true,
                    },
                })
                .collect(),
            yaml::Value::Map(_) => return Err(err(list, "users", "expected a list")),
        };
        for (i, item) in items.iter().enumerate() {
            let key = format!("users[{i}]");
            match item.as_str() {
                Some("default") => want_default = true,
                Some(name) => users.push(user_from(item, name, &key, &mut out)?),
                None if item.as_map().is_some() => {
                    let name = item
                        .get("name")
                        .and_then(Node::as_str)
                        .ok_or_else(|| err(item, &key, "user without `name`"))?;
                    users.push(user_from(item, name, &key, &mut out)?);
                }
                None => return Err(err(item, &key, "expected \"default\", a name or a mapping")),
            }
        }
    }
    let mut default_user = if want_default && default_name != "root" {
        let mut u = match default_cfg {
            Some(cfg) => user_from(cfg, &default_name, "user", &mut out)?,
            None => User {
                name: default_name.clone(),
                ..User::default()
            },
        };
        if u.groups.is_empty() {
            u.groups.push("sudo".into());
        }
        if u.sudo.is_none() && default_cfg.and_then(|c| c.get("sudo")).is_none() {
            u.sudo = Some("nopasswd");
        }
        if u.shell.is_none() {
            u.shell = Some("/bin/bash".into());
        }
        Some(u)
    } else {
        None
    };
    let root_is_default = default_name == "root";
    // Keys for the default user (or root): top-level keys and meta-data's public keys.
    let mut top_keys: Vec<String> = Vec::new();
    for key in ["ssh_authorized_keys", "ssh-authorized-keys"] {
        if let Some(n) = doc.get(key) {
            for (i, k) in keys_at(n, key)?.into_iter().enumerate() {
                PublicKey::parse(&k).map_err(|e| err(n, &format!("{key}[{i}]"), e))?;
                top_keys.push(k);
            }
        }
    }
    for k in &md.public_keys {
        match PublicKey::parse(k) {
            Ok(_) => top_keys.push(k.clone()),
            Err(e) => out
                .warnings
                .push(format!("meta-data public key not used: {e}")),
        }
    }
    let mut top_sources = Vec::new();
    if let Some(n) = doc.get("ssh_import_id") {
        top_sources = import_ids(n, "ssh_import_id", &mut out)?;
    }
    let mut root_user: Option<User> = None;
    match (&mut default_user, root_is_default) {
        (Some(u), _) => {
            u.keys.extend(top_keys);
            u.key_sources.extend(top_sources);
        }
        (None, true) => {
            root_user = Some(User {
                name: "root".into(),
                keys: top_keys,
                key_sources: top_sources,
                ..User::default()
            })
        }
        (None, false) => {
            if !top_keys.is_empty() {
                out.warnings.push(
                    "ssh_authorized_keys / meta-data public keys are not used: `users` has no `default` entry"
                        .into(),
                );
            }
        }
    }
    if let Some(u) = default_user {
        users.insert(0, u);
    }
    if let Some(r) = root_user {
        users.push(r);
    }

    // Passwords.
    let mut set_any_password = false;
    if let Some(n) = doc.get("password") {
        let pw = n.as_str().unwrap_or("");
        let target = if root_is_default {
            "root"
        } else {
            default_name.as_str()
        };
        set_password(&mut users, &mut out, n, "password", target, pw)?;
        set_any_password = true;
    }
    let mut expire = true;
    if let Some(c) = doc.get("chpasswd") {
        if let Some(e) = c.get("expire") {
            expire = e
                .as_bool()
                .ok_or_else(|| err(e, "chpasswd.expire", "expected true or false"))?;
        }
        if let Some(list) = c.get("list") {
            let lines: Vec<String> = match &list.value {
                yaml::Value::Scalar { text, .. } => text.lines().map(str::to_string).collect(),
                _ => list.strings().unwrap_or_default(),
            };
            for l in lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
                let (user, pw) = l.split_once(':').ok_or_else(|| {
                    err(
                        list,
                        "chpasswd.list",
                        format!("{l:?} is not `user:password`"),
                    )
                })?;
                UserName::try_from(user.to_string()).map_err(|e| err(list, "chpasswd.list", e))?;
                set_password(&mut users, &mut out, list, "chpasswd.list", user, pw)?;
                set_any_password = true;
            }
        }
        if let Some(list) = c.get("users").and_then(Node::as_seq) {
            for (i, u) in list.iter().enumerate() {
                let key = format!("chpasswd.users[{i}]");
                let name = u
                    .get("name")
                    .and_then(Node::as_str)
                    .ok_or_else(|| err(u, &key, "entry without `name`"))?;
                UserName::try_from(name.to_string()).map_err(|e| err(u, &key, e))?;
                let pw = u.get("password").and_then(Node::as_str).unwrap_or("");
                let pw = match u.get("type").and_then(Node::as_str) {
                    Some("RANDOM") => "RANDOM",
                    _ => pw,
                };
                set_password(&mut users, &mut out, u, &key, name, pw)?;
                set_any_password = true;
            }
        }
        if let Some(m) = c.as_map() {
            for (k, _) in m {
                let k = k.as_scalar().unwrap_or("");
                if !matches!(k, "expire" | "list" | "users") {
                    unsupported.push(format!("chpasswd.{k} (line {})", c.line));
                }
            }
        }
    }
    if expire && set_any_password {
        // cloud-init expires what `password` and `chpasswd` set, not `users[].passwd`.
        out.expire = std::mem::take(&mut out.set_by_chpasswd);
    }

    // Groups.
    let mut groups = Vec::new();
    if let Some(g) = doc.get("groups") {
        let items: Vec<Node> = match &g.value {
            yaml::Value::Seq(items) => items.clone(),
            yaml::Value::Map(_) => vec![g.clone()],
            _ => vec![g.clone()],
        };
        for item in items {
            let entries: Vec<(String, Vec<String>)> = match &item.value {
                yaml::Value::Scalar { .. } => item
                    .str_list()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|n| (n, Vec::new()))
                    .collect(),
                yaml::Value::Map(m) => m
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_scalar().unwrap_or("").to_string(),
                            v.str_list().unwrap_or_default(),
                        )
                    })
                    .collect(),
                yaml::Value::Seq(_) => {
                    return Err(err(&item, "groups", "nested lists are not groups"));
                }
            };
            for (name, members) in entries {
                GroupName::try_from(name.clone()).map_err(|e| err(&item, "groups", e))?;
                groups.push(name.clone());
                for m in members {
                    match users.iter_mut().find(|u| u.name == m) {
                        Some(u) => {
                            if !u.groups.contains(&name) {
                                u.groups.push(name.clone());
                            }
                        }
                        None => out.warnings.push(format!(
                            "groups: {m} is not added to {name} (only users defined in this user-data can be)"
                        )),
                    }
                }
            }
        }
    }

    // SSH.
    if let Some(n) = doc.get("ssh_pwauth") {
        match (n.as_bool(), n.as_str()) {
            (Some(b), _) => {
                ssh.insert("password_authentication".into(), b.into());
                ssh.insert("kbd_interactive_authentication".into(), b.into());
            }
            (None, Some("unchanged")) => {}
            _ => {
                return Err(err(
                    n,
                    "ssh_pwauth",
                    "expected true, false or \"unchanged\"",
                ));
            }
        }
    }
    if let Some(n) = doc.get("disable_root") {
        let b = n
            .as_bool()
            .ok_or_else(|| err(n, "disable_root", "expected true or false"))?;
        if b {
            ssh.insert("permit_root_login".into(), false.into());
        } else {
            ssh.insert("permit_root_login".into(), "prohibit-password".into());
        }
    } else if root_is_default {
        ssh.insert("permit_root_login".into(), "prohibit-password".into());
    }
    if let Some(n) = doc.get("ssh_deletekeys") {
        let b = n
            .as_bool()
            .ok_or_else(|| err(n, "ssh_deletekeys", "expected true or false"))?;
        firstboot.insert("regenerate_host_keys".into(), b.into());
    }

    // Packages.
    let mut pkgs: Vec<String> = Vec::new();
    if let Some(n) = doc.get("packages") {
        for (i, p) in n.as_seq().unwrap_or_default().iter().enumerate() {
            match (&p.value, p.as_str()) {
                (_, Some(name)) => pkgs.push(name.to_string()),
                (yaml::Value::Seq(pv), _) if pv.len() == 2 => {
                    let name = pv[0].as_str().unwrap_or("").to_string();
                    out.warnings.push(format!(
                        "packages: the version pin of {name} ({}) is not applied; the candidate version is installed",
                        pv[1].as_str().unwrap_or("")
                    ));
                    pkgs.push(name);
                }
                _ => {
                    return Err(err(
                        p,
                        &format!("packages[{i}]"),
                        "expected a package name or [name, version]",
                    ));
                }
            }
        }
    }
    if !pkgs.is_empty() {
        let mut t = toml::Table::new();
        t.insert("install".into(), pkgs.clone().into());
        profile.insert("packages".into(), t.into());
    }
    for key in [
        "package_update",
        "package_upgrade",
        "package_reboot_if_required",
    ] {
        if let Some(n) = doc.get(key) {
            let b = n
                .as_bool()
                .ok_or_else(|| err(n, key, "expected true or false"))?;
            firstboot.insert(key.into(), b.into());
        }
    }
    if let Some(n) = doc.get("apt") {
        let sources = apt_sources(n, &mut out)?;
        if !sources.is_empty() {
            let mut t = toml::Table::new();
            t.insert("sources".into(), toml::Value::Array(sources));
            profile.insert("apt".into(), t.into());
        }
    }
    let storage = storage(&doc, &mut out)?;
    if !storage.is_empty() {
        profile.insert("storage".into(), storage.into());
    }
    if let Some(n) = doc.get("ntp")
        && let Some(t) = ntp(n, &mut out)?
    {
        profile.insert("time".into(), t.into());
    }
    if let Some(n) = doc.get("power_state")
        && let Some(t) = power_state(n, &mut out)?
    {
        firstboot.insert("power_state".into(), t.into());
    }

    // Files and commands.
    if let Some(n) = doc.get("write_files") {
        let mut files = Vec::new();
        for (i, f) in n.as_seq().unwrap_or_default().iter().enumerate() {
            files.push(write_file(f, &format!("write_files[{i}]"), &mut out)?.into());
        }
        if !files.is_empty() {
            firstboot.insert("write_files".into(), toml::Value::Array(files));
        }
    }
    let mut cmds = match doc.get("runcmd") {
        Some(n) => commands(n, "runcmd")?,
        None => Vec::new(),
    };
    cmds.extend(
        scripts
            .iter()
            .map(|s| toml::Value::String(s.runcmd_entry())),
    );
    if !cmds.is_empty() {
        firstboot.insert("runcmd".into(), toml::Value::Array(cmds));
    }
    if let Some(n) = doc.get("bootcmd") {
        let cmds = commands(n, "bootcmd")?;
        if !cmds.is_empty() {
            out.warnings.push(
                "bootcmd runs once per instance (cloud-init runs it on every boot), under the runcmd opt-in"
                    .into(),
            );
            firstboot.insert("bootcmd".into(), toml::Value::Array(cmds));
        }
    }

    // Assemble.
    if !host.is_empty() {
        profile.insert("host".into(), host.into());
    }
    if !groups.is_empty() {
        let g: Vec<toml::Value> = groups
            .into_iter()
            .map(|n| {
                let mut t = toml::Table::new();
                t.insert("name".into(), n.into());
                t.into()
            })
            .collect();
        profile.insert("groups".into(), toml::Value::Array(g));
    }
    if !users.is_empty() {
        let list: Vec<toml::Value> = users.iter().map(|u| user_table(u).into()).collect();
        profile.insert("users".into(), toml::Value::Array(list));
    }
    if !ssh.is_empty() {
        profile.insert("ssh".into(), ssh.into());
    }
    if !firstboot.is_empty() {
        profile.insert("firstboot".into(), firstboot.into());
    }
    if !unsupported.is_empty() {
        out.warnings.push(format!(
            "unsupported cloud-config keys, not applied: {}",
            unsupported.join(", ")
        ));
    }
    out.toml = format!(
        "# Generated by bollwerk from #cloud-config user-data.\n{}",
        toml::to_string(&profile).map_err(|e| ConvertError {
            position: None,
            key: "(document)".into(),
            message: format!("rendering the profile: {e}"),
        })?
    );
    Ok(out)
}

/// `runcmd` / `bootcmd` entries: shell lines or argument vectors.
fn commands(n: &Node, what: &str) -> Result<Vec<toml::Value>, ConvertError> {
    let mut cmds = Vec::new();
    for (i, c) in n.as_seq().unwrap_or_default().iter().enumerate() {
        let key = format!("{what}[{i}]");
        match &c.value {
            yaml::Value::Scalar { text, .. } => cmds.push(toml::Value::String(text.clone())),
            yaml::Value::Seq(argv) => {
                let argv: Vec<toml::Value> = argv
                    .iter()
                    .map(|a| a.as_str().map(|s| toml::Value::String(s.to_string())))
                    .collect::<Option<_>>()
                    .ok_or_else(|| err(c, &key, "command words must be strings"))?;
                cmds.push(toml::Value::Array(argv));
            }
            yaml::Value::Map(_) => return Err(err(c, &key, "expected a string or a list")),
        }
    }
    Ok(cmds)
}

fn keys_at(n: &Node, key: &str) -> Result<Vec<String>, ConvertError> {
    match &n.value {
        yaml::Value::Scalar { text, .. } if !n.is_null() => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()),
        _ => n
            .strings()
            .ok_or_else(|| err(n, key, "expected a list of keys")),
    }
}

fn import_ids(n: &Node, key: &str, out: &mut Converted) -> Result<Vec<String>, ConvertError> {
    let mut srcs = Vec::new();
    for id in n.str_list().unwrap_or_default() {
        if id.starts_with("gh:") || id.starts_with("lp:") {
            KeyUrl::try_from(id.clone()).map_err(|e| err(n, key, e))?;
            srcs.push(id);
        } else {
            out.warnings.push(format!(
                "{key}: `{id}` not imported (only `gh:<user>` and `lp:<user>` are supported)"
            ));
        }
    }
    Ok(srcs)
}

fn set_password(
    users: &mut Vec<User>,
    out: &mut Converted,
    n: &Node,
    key: &str,
    user: &str,
    pw: &str,
) -> Result<(), ConvertError> {
    if pw == "RANDOM" || pw == "R" {
        out.warnings.push(format!(
            "{key}: RANDOM password for {user} is not supported; no password set"
        ));
        return Ok(());
    }
    if pw.is_empty() {
        return Err(err(n, key, format!("empty password for {user}")));
    }
    if !out.set_by_chpasswd.iter().any(|u| u == user) {
        out.set_by_chpasswd.push(user.to_string());
    }
    if hashed(pw) {
        PasswordHash::try_from(pw.to_string()).map_err(|e| err(n, key, e))?;
        match users.iter_mut().find(|u| u.name == user) {
            Some(u) => u.hash = Some(pw.to_string()),
            None => users.push(User {
                name: user.to_string(),
                hash: Some(pw.to_string()),
                ..User::default()
            }),
        }
    } else {
        if pw.contains(['\n', ':']) {
            return Err(err(
                n,
                key,
                "a clear-text password cannot contain `:` or a newline",
            ));
        }
        out.clear_passwords.retain(|(u, _)| u != user);
        out.clear_passwords.push((user.to_string(), pw.to_string()));
    }
    Ok(())
}

fn user_from(n: &Node, name: &str, key: &str, out: &mut Converted) -> Result<User, ConvertError> {
    UserName::try_from(name.to_string()).map_err(|e| err(n, &format!("{key}.name"), e))?;
    let mut u = User {
        name: name.to_string(),
        ..User::default()
    };
    let Some(map) = n.as_map() else {
        return Ok(u);
    };
    let mut unknown = Vec::new();
    for (k, _) in map {
        let k = k.as_scalar().unwrap_or("");
        if !USER_KEYS.contains(&k) {
            unknown.push(k.to_string());
        }
    }
    if !unknown.is_empty() {
        out.warnings.push(format!(
            "unsupported keys of user {name}, not applied: {}",
            unknown.join(", ")
        ));
    }
    if let Some(g) = n.get("groups") {
        for gname in g.str_list().unwrap_or_default() {
            GroupName::try_from(gname.clone()).map_err(|e| err(g, &format!("{key}.groups"), e))?;
            u.groups.push(gname);
        }
    }
    if let Some(s) = n.get("sudo")
        && s.as_bool() != Some(false)
        && !s.is_null()
    {
        let rules = s.strings().unwrap_or_default();
        (u.sudo, u.sudo_rules) =
            sudo_mode(&rules).map_err(|e| err(s, &format!("{key}.sudo"), e))?;
    }
    if let Some(s) = n.get("shell").and_then(Node::as_str) {
        let at = n.get("shell").unwrap_or(n);
        AccountPath::try_from(s.to_string()).map_err(|e| err(at, &format!("{key}.shell"), e))?;
        u.shell = Some(s.to_string());
    }
    for k in ["ssh_authorized_keys", "ssh-authorized-keys"] {
        if let Some(ks) = n.get(k) {
            for (i, line) in keys_at(ks, k)?.into_iter().enumerate() {
                PublicKey::parse(&line).map_err(|e| err(ks, &format!("{key}.{k}[{i}]"), e))?;
                u.keys.push(line);
            }
        }
    }
    if let Some(ids) = n.get("ssh_import_id") {
        u.key_sources = import_ids(ids, &format!("{key}.ssh_import_id"), out)?;
    }
    let lock = n.get("lock_passwd").and_then(Node::as_bool).unwrap_or(true);
    for k in ["passwd", "hashed_passwd"] {
        if let Some(p) = n.get(k).and_then(Node::as_str) {
            if lock {
                out.warnings.push(format!(
                    "{key}.{k} of {name} is not set: lock_passwd is true (the default); set `lock_passwd: false`"
                ));
            } else {
                PasswordHash::try_from(p.to_string())
                    .map_err(|e| err(n, &format!("{key}.{k}"), e))?;
                u.hash = Some(p.to_string());
            }
        }
    }
    if let Some(p) = n.get("plain_text_passwd").and_then(Node::as_str) {
        if lock {
            out.warnings.push(format!(
                "{key}.plain_text_passwd of {name} is not set: lock_passwd is true (the default)"
            ));
        } else {
            out.clear_passwords.push((name.to_string(), p.to_string()));
        }
    }
    u.comment = n.get("gecos").and_then(Node::as_str).map(str::to_string);
    if let (Some(c), Some(at)) = (&u.comment, n.get("gecos")) {
        Gecos::try_from(c.clone()).map_err(|e| err(at, &format!("{key}.gecos"), e))?;
    }
    if let Some(h) = n.get("homedir").and_then(Node::as_str) {
        let at = n.get("homedir").unwrap_or(n);
        AccountPath::try_from(h.to_string()).map_err(|e| err(at, &format!("{key}.homedir"), e))?;
        u.home = Some(h.to_string());
    }
    if let Some(g) = n.get("primary_group").and_then(Node::as_str) {
        GroupName::try_from(g.to_string())
            .map_err(|e| err(n, &format!("{key}.primary_group"), e))?;
        u.primary_group = Some(g.to_string());
    }
    u.system = n.get("system").and_then(Node::as_bool);
    if let Some(uid) = n.get("uid") {
        u.uid = Some(
            uid.as_int()
                .filter(|v| (0..=i64::from(u32::MAX)).contains(v))
                .ok_or_else(|| err(uid, &format!("{key}.uid"), "expected a number"))?,
        );
    }
    Ok(u)
}

fn user_table(u: &User) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("name".into(), u.name.clone().into());
    if let Some(v) = u.uid {
        t.insert("uid".into(), v.into());
    }
    if let Some(v) = &u.comment {
        t.insert("comment".into(), v.clone().into());
    }
    if let Some(v) = &u.home {
        t.insert("home".into(), v.clone().into());
    }
    if let Some(v) = &u.shell {
        t.insert("shell".into(), v.clone().into());
    }
    if let Some(v) = &u.primary_group {
        t.insert("primary_group".into(), v.clone().into());
    }
    if !u.groups.is_empty() {
        t.insert("groups".into(), u.groups.clone().into());
    }
    if let Some(v) = u.sudo {
        t.insert("sudo".into(), v.into());
    }
    if !u.sudo_rules.is_empty() {
        t.insert("sudo_rules".into(), u.sudo_rules.clone().into());
    }
    if !u.keys.is_empty() {
        t.insert("ssh_keys".into(), u.keys.clone().into());
    }
    if !u.key_sources.is_empty() {
        t.insert("ssh_keys_from".into(), u.key_sources.clone().into());
    }
    if let Some(v) = &u.hash {
        t.insert("password_hash".into(), v.clone().into());
    }
    if let Some(v) = u.system {
        t.insert("system".into(), v.into());
    }
    t
}

fn write_file(f: &Node, key: &str, out: &mut Converted) -> Result<toml::Table, ConvertError> {
    let mut t = toml::Table::new();
    let path = f
        .get("path")
        .and_then(Node::as_str)
        .ok_or_else(|| err(f, key, "entry without `path`"))?;
    AbsPath::try_from(path.to_string()).map_err(|e| err(f, &format!("{key}.path"), e))?;
    t.insert("path".into(), path.into());
    let raw = f.get("content").and_then(Node::as_str).unwrap_or("");
    let enc = f
        .get("encoding")
        .and_then(Node::as_str)
        .unwrap_or("text")
        .to_ascii_lowercase();
    let bytes: Vec<u8> = match enc.as_str() {
        "text" | "text/plain" => raw.as_bytes().to_vec(),
        "b64" | "base64" => b64(raw).map_err(|e| err(f, &format!("{key}.content"), e))?,
        "gz" | "gzip" => {
            return Err(err(
                f,
                &format!("{key}.encoding"),
                "gzip content must be base64-encoded in YAML: use `gz+b64`",
            ));
        }
        "gz+b64" | "gzip+base64" | "gz+base64" | "gzip+b64" => {
            let z = b64(raw).map_err(|e| err(f, &format!("{key}.content"), e))?;
            gunzip(&z).map_err(|e| err(f, &format!("{key}.content"), e))?
        }
        other => {
            return Err(err(
                f,
                &format!("{key}.encoding"),
                format!("unknown encoding `{other}` (text, b64, gz+b64)"),
            ));
        }
    };
    match String::from_utf8(bytes) {
        Ok(s) => {
            t.insert("content".into(), s.into());
        }
        Err(e) => {
            t.insert(
                "content".into(),
                base64::engine::general_purpose::STANDARD
                    .encode(e.into_bytes())
                    .into(),
            );
            t.insert("encoding".into(), "base64".into());
        }
    }
    if let Some(p) = f.get("permissions") {
        let mode = match (p.as_int(), &p.value) {
            // YAML 1.1: `0644` is octal (420); a quoted "0644" is octal text.
            (Some(v), _) if (0..=0o7777).contains(&v) => v as u32,
            _ => {
                return Err(err(
                    p,
                    &format!("{key}.permissions"),
                    "expected an octal mode like '0644'",
                ));
            }
        };
        t.insert("mode".into(), String::from(Mode(mode)).into());
    }
    if let Some(o) = f.get("owner").and_then(Node::as_str) {
        let (u, g) = o.split_once(':').unwrap_or((o, o));
        for (what, v) in [("user", u), ("group", g)] {
            if v.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            UserName::try_from(v.to_string())
                .map_err(|e| err(f, &format!("{key}.owner"), format!("{what}: {e}")))?;
        }
        t.insert("owner".into(), o.into());
    }
    for k in ["append", "defer"] {
        if let Some(a) = f.get(k) {
            t.insert(
                k.into(),
                a.as_bool()
                    .ok_or_else(|| err(a, &format!("{key}.{k}"), "expected true or false"))?
                    .into(),
            );
        }
    }
    if let Some(m) = f.as_map() {
        for (k, _) in m {
            let k = k.as_scalar().unwrap_or("");
            if !matches!(
                k,
                "path" | "content" | "encoding" | "permissions" | "owner" | "append" | "defer"
            ) {
                out.warnings
                    .push(format!("{key}: unsupported key `{k}` not applied"));
            }
        }
    }
    Ok(t)
}

/// cloud-config `apt: sources:` → `[[apt.sources]]` (deb822 files with a `signed-by` keyring).
/// Other `apt` keys (mirrors, proxies, `conf`) are listed as not applied.
fn apt_sources(n: &Node, out: &mut Converted) -> Result<Vec<toml::Value>, ConvertError> {
    let mut list = Vec::new();
    let Some(map) = n.as_map() else {
        return Err(err(n, "apt", "expected a mapping"));
    };
    for (k, _) in map {
        let k = k.as_scalar().unwrap_or("");
        if k != "sources" {
            out.warnings
                .push(format!("apt.{k} (line {}) is not applied", n.line));
        }
    }
    let Some(sources) = n.get("sources") else {
        return Ok(list);
    };
    let Some(entries) = sources.as_map() else {
        return Err(err(
            sources,
            "apt.sources",
            "expected a mapping of name → source",
        ));
    };
    for (name_node, src) in entries {
        let raw_name = name_node.as_scalar().unwrap_or("");
        let key = format!("apt.sources.{raw_name}");
        // cloud-init names files after the key (`docker.list`); bollwerk's names are plain.
        let name: String = raw_name
            .trim_end_matches(".list")
            .trim_end_matches(".sources")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        if name.is_empty() {
            return Err(err(name_node, &key, "a source needs a name"));
        }
        for k in ["keyid", "keyserver", "filename", "append"] {
            if src.get(k).is_some() {
                out.warnings.push(format!(
                    "{key}.{k} is not applied (give the armored key in `key`)"
                ));
            }
        }
        let line = src.get("source").and_then(Node::as_str);
        let Some(line) = line else {
            out.warnings
                .push(format!("{key}: no `source` line; not applied"));
            continue;
        };
        let mut t = parse_source_line(line).map_err(|e| err(src, &format!("{key}.source"), e))?;
        t.insert("name".into(), name.into());
        if let Some(k) = src.get("key").and_then(Node::as_str) {
            t.insert("key".into(), k.to_string().into());
        }
        list.push(t.into());
    }
    Ok(list)
}

/// `deb [opts] URI SUITE COMPONENT…` → the fields of an `[[apt.sources]]` entry
/// (`$RELEASE` is kept: the module replaces it with the target's codename).
fn parse_source_line(line: &str) -> Result<toml::Table, String> {
    let line = line.trim();
    let (kind, rest) = line
        .split_once(char::is_whitespace)
        .ok_or_else(|| format!("{line:?} is not `deb URI SUITE COMPONENT…`"))?;
    if kind != "deb" && kind != "deb-src" {
        return Err(format!(
            "{line:?}: only `deb`/`deb-src` lines are supported (no ppa:)"
        ));
    }
    let mut rest = rest.trim_start();
    let mut t = toml::Table::new();
    t.insert("types".into(), vec![kind.to_string()].into());
    if let Some(r) = rest.strip_prefix('[') {
        let (opts, after) = r
            .split_once(']')
            .ok_or_else(|| format!("{line:?}: `[` without `]`"))?;
        for o in opts.split_whitespace() {
            match o.split_once('=') {
                Some(("arch", v)) => {
                    let archs: Vec<String> = v.split(',').map(str::to_string).collect();
                    t.insert("architectures".into(), archs.into());
                }
                // `signed-by=$KEY_FILE` (or a path): the keyring is the module's own file.
                Some(("signed-by", _)) => {}
                _ => return Err(format!("{line:?}: option `{o}` is not supported")),
            }
        }
        rest = after.trim_start();
    }
    let words: Vec<&str> = rest.split_whitespace().collect();
    if words.len() < 2 {
        return Err(format!("{line:?} is not `deb URI SUITE COMPONENT…`"));
    }
    t.insert("uris".into(), vec![words[0].to_string()].into());
    t.insert("suites".into(), vec![words[1].to_string()].into());
    if words.len() > 2 {
        let comps: Vec<String> = words[2..].iter().map(|w| w.to_string()).collect();
        t.insert("components".into(), comps.into());
    }
    Ok(t)
}

/// `growpart`, `resize_rootfs`, `swap`, `mounts` → `[storage]`.
fn storage(doc: &Node, out: &mut Converted) -> Result<toml::Table, ConvertError> {
    let mut t = toml::Table::new();
    let grow_mode = doc.get("growpart").map(|g| {
        let mode = g.get("mode");
        let off = mode.is_some_and(|m| m.as_bool() == Some(false) || m.as_str() == Some("off"));
        if let Some(devs) = g.get("devices").and_then(Node::strings)
            && devs.iter().any(|d| d != "/")
        {
            out.warnings.push(format!(
                "growpart.devices: only \"/\" is grown (line {})",
                g.line
            ));
        }
        !off
    });
    let resize = doc.get("resize_rootfs").map(|r| r.as_bool() != Some(false));
    if grow_mode.is_some() || resize.is_some() {
        t.insert(
            "grow_root".into(),
            (grow_mode.unwrap_or(true) && resize.unwrap_or(true)).into(),
        );
    }
    if let Some(sw) = doc.get("swap") {
        let size = sw.get("size");
        match size.map(|s| (s.as_int(), s.as_str())) {
            Some((Some(0), _)) | None => {}
            Some((_, Some("auto"))) => out.warnings.push(format!(
                "swap.size: \"auto\" is not supported; give a size like \"2G\" (line {})",
                sw.line
            )),
            Some((_, Some(v))) => {
                let mut s = toml::Table::new();
                s.insert(
                    "path".into(),
                    sw.get("filename")
                        .and_then(Node::as_str)
                        .unwrap_or("/swap.img")
                        .into(),
                );
                s.insert("size".into(), v.into());
                t.insert("swap".into(), s.into());
            }
            Some((_, None)) => return Err(err(sw, "swap.size", "expected a size like \"2G\"")),
        }
    }
    if let Some(m) = doc.get("mounts") {
        let mut list = Vec::new();
        for (i, e) in m.as_seq().unwrap_or_default().iter().enumerate() {
            let key = format!("mounts[{i}]");
            let f = e
                .strings()
                .ok_or_else(|| err(e, &key, "expected a list of fstab fields"))?;
            if f.len() < 2
                || f[1].is_empty()
                || f[1] == "none" && f.get(2).map(String::as_str) != Some("swap")
            {
                out.warnings.push(format!(
                    "{key}: entries that remove a mount or name cloud devices (ephemeral0) are not applied (line {})",
                    e.line
                ));
                continue;
            }
            let mut t = toml::Table::new();
            t.insert("what".into(), f[0].clone().into());
            t.insert("where".into(), f[1].clone().into());
            t.insert(
                "fstype".into(),
                f.get(2).cloned().unwrap_or_else(|| "auto".into()).into(),
            );
            t.insert(
                "options".into(),
                f.get(3)
                    .cloned()
                    .unwrap_or_else(|| "defaults,nofail".into())
                    .into(),
            );
            for (idx, name) in [(4, "dump"), (5, "pass")] {
                if let Some(v) = f.get(idx) {
                    let n: i64 = v
                        .parse()
                        .map_err(|_| err(e, &format!("{key}[{idx}]"), "expected a number"))?;
                    t.insert(name.into(), n.into());
                }
            }
            list.push(t.into());
        }
        if !list.is_empty() {
            t.insert("mounts".into(), toml::Value::Array(list));
        }
    }
    Ok(t)
}

/// `ntp` → `[time]` (servers and pools both become servers).
fn ntp(n: &Node, out: &mut Converted) -> Result<Option<toml::Table>, ConvertError> {
    if n.get("enabled").and_then(Node::as_bool) == Some(false) {
        return Ok(None);
    }
    let mut t = toml::Table::new();
    match n.get("ntp_client").and_then(Node::as_str) {
        Some("chrony") => {
            t.insert("daemon".into(), "chrony".into());
        }
        Some("systemd-timesyncd") => {
            t.insert("daemon".into(), "timesyncd".into());
        }
        None | Some("auto") => {}
        Some(other) => out.warnings.push(format!(
            "ntp.ntp_client `{other}` is not supported (chrony or systemd-timesyncd); the default is used"
        )),
    }
    let mut servers = Vec::new();
    for k in ["servers", "pools"] {
        if let Some(v) = n.get(k) {
            servers.extend(
                v.strings()
                    .ok_or_else(|| err(v, &format!("ntp.{k}"), "expected a list of host names"))?,
            );
        }
    }
    if !servers.is_empty() {
        t.insert("servers".into(), servers.into());
    }
    if n.get("config").is_some() {
        out.warnings
            .push("ntp.config (templates) is not applied".into());
    }
    Ok(Some(t))
}

/// `power_state` → `[firstboot] power_state`.
fn power_state(n: &Node, out: &mut Converted) -> Result<Option<toml::Table>, ConvertError> {
    let mode = n
        .get("mode")
        .and_then(Node::as_str)
        .ok_or_else(|| err(n, "power_state.mode", "expected reboot, poweroff or halt"))?;
    if !matches!(mode, "reboot" | "poweroff" | "halt") {
        return Err(err(
            n,
            "power_state.mode",
            "expected reboot, poweroff or halt",
        ));
    }
    if let Some(c) = n.get("condition")
        && c.as_bool() != Some(true)
    {
        out.warnings.push(format!(
            "power_state.condition other than true is not supported: power_state is not applied (line {})",
            c.line
        ));
        return Ok(None);
    }
    let mut t = toml::Table::new();
    t.insert("mode".into(), mode.into());
    if let Some(d) = n.get("delay") {
        let minutes = match (d.as_int(), d.as_str()) {
            (Some(m), _) => Some(m),
            (None, Some("now")) => Some(0),
            (None, Some(s)) => s.strip_prefix('+').and_then(|m| m.parse().ok()),
            _ => None,
        }
        .filter(|m| (0..=10_080).contains(m))
        .ok_or_else(|| err(d, "power_state.delay", "expected \"now\" or \"+MINUTES\""))?;
        t.insert("delay_minutes".into(), minutes.into());
    }
    if let Some(m) = n.get("message").and_then(Node::as_str) {
        t.insert("message".into(), m.into());
    }
    if n.get("timeout").is_some() {
        out.warnings.push(
            "power_state.timeout is not applied (bollwerk waits for the boot to finish)".into(),
        );
    }
    Ok(Some(t))
}

/// A `text/x-shellscript` part of multipart user-data.
#[derive(Debug, Clone)]
struct Script {
    name: String,
    body: String,
}

impl Script {
    /// The part as a `runcmd` entry: written to a file under `/var/lib/bollwerk/firstboot/`
    /// and run by its own interpreter (its `#!` line).
    fn runcmd_entry(&self) -> String {
        use sha2::Digest;
        let tag = hex::encode(&sha2::Sha256::digest(self.body.as_bytes())[..8]);
        let file: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut body = self.body.clone();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        format!(
            "# user-data part {name} (text/x-shellscript)\nf=/var/lib/bollwerk/firstboot/part-{file}\ncat > \"$f\" <<'BOLLWERK_PART_{tag}'\n{body}BOLLWERK_PART_{tag}\nchmod 0700 \"$f\"\n\"$f\"",
            name = self.name
        )
    }
}

/// True when user-data is a MIME message (starts with a `MIME-Version:` or `Content-Type:`
/// header), as Terraform's `cloudinit_config` and Python's `email` write it.
pub fn is_mime(text: &str) -> bool {
    let first = text
        .trim_start()
        .lines()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    first.starts_with("mime-version:") || first.starts_with("content-type:")
}

/// Converts user-data that is `#cloud-config` or a MIME message: `text/cloud-config` parts are
/// merged in order (later keys replace earlier ones, mappings merge key by key, lists are
/// replaced), `text/x-shellscript` parts become `runcmd` entries (same opt-in), other part
/// types are listed as not applied.
///
/// # Errors
/// A [`ConvertError`] for malformed MIME or cloud-config.
pub fn convert_user_data(
    text: &str,
    md: &MetaData,
    d: Defaults,
) -> Result<Converted, ConvertError> {
    if !is_mime(text) {
        return convert(text, md, d);
    }
    let mime_err = |message: String| ConvertError {
        position: None,
        key: "(MIME)".into(),
        message,
    };
    let mut leaves = Vec::new();
    let normalized = text.replace("\r\n", "\n");
    collect_parts(&normalized, 0, &mut leaves).map_err(mime_err)?;
    let mut doc: Option<Node> = None;
    let mut scripts = Vec::new();
    let mut warnings = Vec::new();
    for (i, leaf) in leaves.into_iter().enumerate() {
        let name = leaf
            .filename
            .clone()
            .unwrap_or_else(|| format!("{:03}", i + 1));
        let body = String::from_utf8(leaf.body)
            .map_err(|_| mime_err(format!("part {name} is not UTF-8 text")))?;
        let first = body
            .trim_start()
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let kind = match leaf.ctype.as_str() {
            "text/cloud-config" => "cloud-config",
            "text/x-shellscript" => "script",
            "text/plain" | "text/x-not-multipart" if first.starts_with("#cloud-config") => {
                "cloud-config"
            }
            "text/plain" | "text/x-not-multipart" if first.starts_with("#!") => "script",
            _ => "other",
        };
        match kind {
            "cloud-config" => {
                let part = parse_doc(&body).map_err(|mut e| {
                    e.key = format!("part {name}: {}", e.key);
                    e
                })?;
                if part.get("merge_how").is_some() || part.get("merge_type").is_some() {
                    warnings.push(format!(
                        "part {name}: merge_how/merge_type are not supported; later parts replace earlier keys"
                    ));
                }
                doc = Some(match doc {
                    None => part,
                    Some(prev) => merge(prev, part),
                });
            }
            "script" => scripts.push(Script { name, body }),
            _ => warnings.push(format!(
                "user-data part {name} of type {} is not applied (supported: text/cloud-config, text/x-shellscript)",
                leaf.ctype
            )),
        }
    }
    let mut doc = doc.unwrap_or(Node {
        line: 1,
        col: 1,
        value: yaml::Value::Map(Vec::new()),
    });
    // Already reported per part above.
    if let yaml::Value::Map(m) = &mut doc.value {
        m.retain(|(k, _)| !matches!(k.as_scalar(), Some("merge_how" | "merge_type")));
    }
    convert_doc(doc, md, d, &scripts, warnings)
}

/// Merges cloud-config `b` over `a`: mappings key by key (recursively), anything else replaced.
fn merge(a: Node, b: Node) -> Node {
    match (a.value, b.value) {
        (yaml::Value::Map(mut am), yaml::Value::Map(bm)) => {
            for (k, v) in bm {
                match am
                    .iter()
                    .position(|(ak, _)| ak.as_scalar().is_some() && ak.as_scalar() == k.as_scalar())
                {
                    Some(i) => {
                        let (ak, av) = am.remove(i);
                        am.insert(i, (ak, merge(av, v)));
                    }
                    None => am.push((k, v)),
                }
            }
            Node {
                line: a.line,
                col: a.col,
                value: yaml::Value::Map(am),
            }
        }
        (_, bv) => Node {
            line: b.line,
            col: b.col,
            value: bv,
        },
    }
}

/// One non-multipart part of a MIME message, decoded.
struct Leaf {
    ctype: String,
    filename: Option<String>,
    body: Vec<u8>,
}

/// Limits: MIME nesting depth and number of parts.
const MIME_MAX_DEPTH: usize = 4;
const MIME_MAX_PARTS: usize = 64;

/// Splits headers (unfolded, names lower-cased) from the body.
fn split_headers(msg: &str) -> (Vec<(String, String)>, &str) {
    let (head, body) = match msg.find("\n\n") {
        Some(i) => (&msg[..i], &msg[i + 2..]),
        None if msg.starts_with('\n') => ("", &msg[1..]),
        None => (msg, ""),
    };
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    (headers, body)
}

/// The value of `param` in a header like `multipart/mixed; boundary="x"`.
fn header_param(value: &str, param: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(param)).then(|| v.trim().trim_matches('"').to_string())
    })
}

fn collect_parts(msg: &str, depth: usize, out: &mut Vec<Leaf>) -> Result<(), String> {
    if depth > MIME_MAX_DEPTH {
        return Err(format!("MIME parts nested deeper than {MIME_MAX_DEPTH}"));
    }
    let (headers, body) = split_headers(msg);
    let h = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let ctype_full = h("content-type").unwrap_or("text/x-not-multipart");
    let ctype = ctype_full
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if ctype.starts_with("multipart/") {
        let boundary = header_param(ctype_full, "boundary")
            .filter(|b| !b.is_empty())
            .ok_or_else(|| format!("{ctype} without a boundary"))?;
        let delim = format!("--{boundary}");
        let mut parts: Vec<String> = Vec::new();
        let mut cur: Option<String> = None;
        for line in body.split('\n') {
            let l = line.trim_end();
            if l == delim || l == format!("{delim}--") {
                if let Some(p) = cur.take() {
                    parts.push(p);
                }
                if l.ends_with("--") && l != delim {
                    break;
                }
                cur = Some(String::new());
            } else if let Some(c) = cur.as_mut() {
                c.push_str(line);
                c.push('\n');
            }
        }
        if parts.is_empty() {
            return Err(format!(
                "{ctype} has no parts (boundary {boundary:?} not found)"
            ));
        }
        for p in parts {
            collect_parts(&p, depth + 1, out)?;
            if out.len() > MIME_MAX_PARTS {
                return Err(format!("more than {MIME_MAX_PARTS} MIME parts"));
            }
        }
        return Ok(());
    }
    let cte = h("content-transfer-encoding")
        .unwrap_or("7bit")
        .to_ascii_lowercase();
    // The part's body ends with the line break before the next boundary.
    let raw = body.strip_suffix('\n').unwrap_or(body);
    let mut bytes = match cte.as_str() {
        "7bit" | "8bit" | "binary" => raw.as_bytes().to_vec(),
        "base64" => b64(raw)?,
        "quoted-printable" => quoted_printable(raw),
        other => return Err(format!("part encoding {other:?} is not supported")),
    };
    if bytes.starts_with(&[0x1f, 0x8b]) {
        bytes = gunzip(&bytes)?;
    }
    let filename = h("content-disposition").and_then(|d| header_param(d, "filename"));
    out.push(Leaf {
        ctype,
        filename,
        body: bytes,
    });
    Ok(())
}

/// Decodes quoted-printable text (RFC 2045): `=XX` escapes and soft line breaks.
fn quoted_printable(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if let Some(h) = s.get(i + 1..i + 3)
                && let Ok(v) = u8::from_str_radix(h, 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(clean)
        .map_err(|e| format!("invalid base64: {e}"))
}

/// Decompresses gzip data (at most 16 MiB).
///
/// # Errors
/// When the data is not valid gzip or too large.
pub fn gunzip(z: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(z)
        .take(16 << 20)
        .read_to_end(&mut out)
        .map_err(|e| format!("invalid gzip data: {e}"))?;
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPci/6iPPKNm3TqnlFNu0Zy6jtqtz5kw0YO3RjFH01v alice@laptop";
    const HASH: &str = "$5$rounds=5000$abcdefgh$0123456789abcdefghijklmnopqrstuvwxyzABCDE";

    /// user-data exactly as Proxmox VE's `cloudinit_userdata` writes it.
    pub fn proxmox_user_data() -> String {
        format!(
            "#cloud-config\nhostname: vm100\nmanage_etc_hosts: true\nfqdn: vm100.example.org\nuser: admin\npassword: {HASH}\nssh_authorized_keys:\n  - {KEY}\nchpasswd:\n  expire: False\nusers:\n  - default\npackage_upgrade: true\n"
        )
    }

    fn defaults() -> Defaults<'static> {
        Defaults { user: "debian" }
    }

    #[test]
    fn proxmox_shape() {
        let c = convert(&proxmox_user_data(), &MetaData::default(), defaults()).unwrap();
        let t: toml::Table = toml::from_str(&c.toml).unwrap();
        assert_eq!(t["host"]["hostname"].as_str(), Some("vm100"));
        assert_eq!(t["host"]["fqdn"].as_str(), Some("vm100.example.org"));
        assert_eq!(t["host"]["manage_etc_hosts"].as_bool(), Some(true));
        let u = &t["users"][0];
        assert_eq!(u["name"].as_str(), Some("admin"));
        assert_eq!(u["sudo"].as_str(), Some("nopasswd"));
        assert_eq!(u["groups"][0].as_str(), Some("sudo"));
        assert_eq!(u["ssh_keys"][0].as_str(), Some(KEY));
        assert_eq!(u["password_hash"].as_str(), Some(HASH));
        assert!(c.expire.is_empty(), "chpasswd.expire: False");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(t["firstboot"]["package_upgrade"].as_bool(), Some(true));
    }

    #[test]
    fn hand_written_config() {
        let ud = format!(
            "#cloud-config\nusers:\n  - name: ops\n    groups: [adm, sudo]\n    sudo: ALL=(ALL) NOPASSWD:ALL\n    shell: /bin/zsh\n    ssh-authorized-keys: [\"{KEY}\"]\n  - name: dev\n    sudo: ['ALL=(ALL:ALL) ALL']\n    lock_passwd: false\n    passwd: {HASH}\nssh_pwauth: no\ndisable_root: true\ntimezone: Europe/Berlin\nchpasswd:\n  list: |\n    ops:s3cret\npackages: [htop, [curl, '7.88']]\nwrite_files:\n  - path: /etc/motd\n    content: aGVsbG8K\n    encoding: b64\n    permissions: 0640\n    owner: root:adm\n  - path: /etc/issue\n    content: hi\n    append: true\nruncmd:\n  - echo hi\n  - [touch, /tmp/x]\nbootcmd: [x]\napt: {{}}\n"
        );
        let c = convert(&ud, &MetaData::default(), defaults()).unwrap();
        let t: toml::Table = toml::from_str(&c.toml).unwrap();
        let users = t["users"].as_array().unwrap();
        assert_eq!(users.len(), 2, "no default user: `users` has no `default`");
        assert_eq!(users[0]["sudo"].as_str(), Some("nopasswd"));
        assert_eq!(users[0]["shell"].as_str(), Some("/bin/zsh"));
        assert_eq!(users[1]["sudo"].as_str(), Some("password"));
        assert_eq!(users[1]["password_hash"].as_str(), Some(HASH));
        assert_eq!(t["ssh"]["password_authentication"].as_bool(), Some(false));
        assert_eq!(t["ssh"]["permit_root_login"].as_bool(), Some(false));
        assert_eq!(t["host"]["timezone"].as_str(), Some("Europe/Berlin"));
        assert_eq!(
            c.clear_passwords,
            vec![("ops".to_string(), "s3cret".to_string())]
        );
        assert_eq!(c.expire, vec!["ops".to_string()], "expire defaults to true");
        let f = &t["firstboot"]["write_files"][0];
        assert_eq!(f["content"].as_str(), Some("hello\n"));
        assert_eq!(f["mode"].as_str(), Some("0640"), "YAML 1.1 octal");
        assert_eq!(f["owner"].as_str(), Some("root:adm"));
        assert_eq!(
            t["firstboot"]["write_files"][1]["append"].as_bool(),
            Some(true)
        );
        assert_eq!(t["firstboot"]["runcmd"][0].as_str(), Some("echo hi"));
        assert_eq!(t["firstboot"]["runcmd"][1][0].as_str(), Some("touch"));
        let all = c.warnings.join("\n");
        assert_eq!(
            t["packages"]["install"].as_array().unwrap(),
            &vec![toml::Value::from("htop"), toml::Value::from("curl")]
        );
        assert!(
            all.contains("the version pin of curl (7.88) is not applied"),
            "{all}"
        );
        assert_eq!(t["firstboot"]["bootcmd"][0].as_str(), Some("x"));
        assert!(all.contains("bootcmd runs once per instance"), "{all}");
        assert!(!all.contains("unsupported cloud-config keys"), "{all}");
        assert!(
            !c.toml.contains("s3cret"),
            "clear-text passwords never go into the profile"
        );
    }

    #[test]
    fn errors_point_at_the_line() {
        let e = convert(
            "#cloud-config\nusers:\n  - name: Bad User\n",
            &MetaData::default(),
            defaults(),
        )
        .unwrap_err();
        assert_eq!(e.key, "users[0].name");
        assert_eq!(e.position.map(|p| p.0), Some(3));
        let e = convert(
            "#cloud-config\nssh_authorized_keys:\n  - ssh-ed25519 garbage\n",
            &MetaData::default(),
            defaults(),
        )
        .unwrap_err();
        assert!(e.key.starts_with("ssh_authorized_keys"), "{e}");
        let e = convert(
            "#cloud-config\nusers:\n  - name: x\n    sudo: [\"ALL\"]\n",
            &MetaData::default(),
            defaults(),
        )
        .unwrap_err();
        assert!(e.message.contains("is not `HOSTS=(RUNAS) COMMANDS`"), "{e}");
        assert_eq!(e.key, "users[0].sudo");
        let e = convert("#cloud-config\na: [\n", &MetaData::default(), defaults()).unwrap_err();
        assert!(e.message.starts_with("YAML syntax error"), "{e}");
        assert!(e.to_string().starts_with("user-data:"), "{e}");
    }

    #[test]
    fn meta_data_keys_and_hostname() {
        let md = parse_meta_data(&format!(
            "instance-id: iid-1\nlocal-hostname: web1\npublic-keys:\n  - {KEY}\n"
        ))
        .unwrap();
        assert_eq!(md.instance_id.as_deref(), Some("iid-1"));
        let c = convert("", &md, defaults()).unwrap();
        let t: toml::Table = toml::from_str(&c.toml).unwrap();
        assert_eq!(t["host"]["hostname"].as_str(), Some("web1"));
        assert_eq!(t["users"][0]["name"].as_str(), Some("debian"));
        assert_eq!(t["users"][0]["ssh_keys"][0].as_str(), Some(KEY));
        // ConfigDrive meta_data.json.
        let md = parse_meta_data(&format!(
            r#"{{"uuid": "u-1", "hostname": "h1", "public_keys": {{"k": "{KEY}"}}}}"#
        ))
        .unwrap();
        assert_eq!(md.instance_id.as_deref(), Some("u-1"));
        assert_eq!(md.public_keys, vec![KEY.to_string()]);
    }

    #[test]
    fn mime_parts_base64_quoted_printable_nested_and_merge_how() {
        let b64 = base64::engine::general_purpose::STANDARD
            .encode("#cloud-config\nhostname: from-b64\ntimezone: Europe/Berlin\n");
        let text = format!(
            "MIME-Version: 1.0\r\nContent-Type: multipart/mixed;\r\n boundary=\"OUT\"\r\n\r\n--OUT\r\nContent-Type: text/cloud-config\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--OUT\r\nContent-Type: multipart/alternative; boundary=IN\r\n\r\n--IN\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n#cloud-config\r\nmerge_how: dict(recurse_array)+list(append)\r\nhostname: q=\r\np\r\n--IN--\r\n--OUT--\r\n"
        );
        assert!(is_mime(&text));
        let c = convert_user_data(&text, &MetaData::default(), defaults()).unwrap();
        let t: toml::Table = toml::from_str(&c.toml).unwrap();
        assert_eq!(
            t["host"]["hostname"].as_str(),
            Some("qp"),
            "later part wins"
        );
        assert_eq!(t["host"]["timezone"].as_str(), Some("Europe/Berlin"));
        let all = c.warnings.join("\n");
        assert!(
            all.contains("merge_how/merge_type are not supported"),
            "{all}"
        );
        assert!(!all.contains("unsupported cloud-config keys"), "{all}");
        // Not MIME after all: no boundary.
        let e = convert_user_data(
            "Content-Type: multipart/mixed\n\nx\n",
            &MetaData::default(),
            defaults(),
        )
        .unwrap_err();
        assert!(e.message.contains("without a boundary"), "{e}");
    }

    #[test]
    fn root_as_default_user() {
        let c = convert(
            &format!(
                "#cloud-config\nuser: root\ndisable_root: False\nssh_authorized_keys:\n  - {KEY}\n"
            ),
            &MetaData::default(),
            defaults(),
        )
        .unwrap();
        let t: toml::Table = toml::from_str(&c.toml).unwrap();
        assert_eq!(t["users"][0]["name"].as_str(), Some("root"));
        assert_eq!(
            t["ssh"]["permit_root_login"].as_str(),
            Some("prohibit-password")
        );
    }
}
