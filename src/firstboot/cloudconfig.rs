//! `#cloud-config` user-data (and meta-data's host name and keys) → a bollwerk profile layer.
//!
//! The subset covers what Proxmox VE's generator writes (`hostname`, `fqdn`, `manage_etc_hosts`,
//! `user`, `password` as a hash, `ssh_authorized_keys`, `chpasswd.expire`, `users: [default]`,
//! `package_upgrade`) and what people commonly write by hand (`users` with `groups`, `sudo`,
//! `shell`, `lock_passwd`, `ssh_authorized_keys`/`ssh-authorized-keys`, `passwd`;
//! `chpasswd.list`/`chpasswd.users`, `ssh_pwauth`, `disable_root`, `timezone`, `packages`,
//! `write_files`, `runcmd`). Every other key is listed in a warning, never silently dropped.
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

/// Maps a cloud-init sudo rule to the users module's `sudo` mode.
fn sudo_mode(rules: &[String]) -> Result<Option<&'static str>, String> {
    let mut mode = None;
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
                return Err(format!(
                    "sudo rule {norm:?} cannot be expressed (bollwerk grants `ALL=(ALL:ALL) ALL` or `… NOPASSWD: ALL`)"
                ));
            }
        }
    }
    Ok(mode)
}

/// Target OS facts that choose cloud-init's defaults.
#[derive(Debug, Clone, Copy)]
pub struct Defaults<'a> {
    /// Name of the distro's default user (`debian`, `ubuntu`).
    pub user: &'a str,
    /// Whether the profile schema has `[packages] install` (the packages module exists).
    pub packages_install: bool,
}

/// Converts cloud-config text (and meta-data) into a profile layer.
///
/// # Errors
/// A [`ConvertError`] with position for YAML syntax errors and invalid values (user names,
/// keys, paths, modes, hashes); unsupported keys are warnings, not errors.
pub fn convert(text: &str, md: &MetaData, d: Defaults) -> Result<Converted, ConvertError> {
    let doc = yaml::parse(text).map_err(|e| ConvertError {
        position: Some((e.line, e.col)),
        key: "(syntax)".into(),
        message: format!("YAML syntax error: {}", e.message),
    })?;
    let empty = Node {
        line: 1,
        col: 1,
        value: yaml::Value::Map(Vec::new()),
    };
    let doc = doc.unwrap_or(empty);
    let Some(map) = doc.as_map() else {
        return Err(err(
            &doc,
            "(document)",
            "cloud-config must be a mapping of keys",
        ));
    };
    let mut out = Converted::default();
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
                (yaml::Value::Seq(pv), _) if pv.len() == 2 => pkgs.push(format!(
                    "{}={}",
                    pv[0].as_str().unwrap_or(""),
                    pv[1].as_str().unwrap_or("")
                )),
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
        if d.packages_install {
            let mut t = toml::Table::new();
            t.insert("install".into(), pkgs.clone().into());
            profile.insert("packages".into(), t.into());
        } else {
            out.warnings.push(format!(
                "packages: not supported until the packages module exists; not installed: {}",
                pkgs.join(", ")
            ));
        }
    }
    for key in [
        "package_update",
        "package_upgrade",
        "package_reboot_if_required",
    ] {
        if let Some(n) = doc.get(key)
            && n.as_bool() == Some(true)
        {
            out.warnings.push(format!(
                "{key}: not supported until the packages module exists; nothing is updated"
            ));
        }
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
    if let Some(n) = doc.get("runcmd") {
        let mut cmds = Vec::new();
        for (i, c) in n.as_seq().unwrap_or_default().iter().enumerate() {
            let key = format!("runcmd[{i}]");
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
        if !cmds.is_empty() {
            firstboot.insert("runcmd".into(), toml::Value::Array(cmds));
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
        if id.starts_with("gh:") {
            KeyUrl::try_from(id.clone()).map_err(|e| err(n, key, e))?;
            srcs.push(id);
        } else {
            out.warnings.push(format!(
                "{key}: `{id}` not imported (only `gh:<user>` is supported)"
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
        u.sudo = sudo_mode(&rules).map_err(|e| err(s, &format!("{key}.sudo"), e))?;
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
    if let Some(a) = f.get("append") {
        t.insert(
            "append".into(),
            a.as_bool()
                .ok_or_else(|| err(a, &format!("{key}.append"), "expected true or false"))?
                .into(),
        );
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
        Defaults {
            user: "debian",
            packages_install: false,
        }
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
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(c.warnings[0].starts_with("package_upgrade: not supported"));
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
        assert!(all.contains("packages: not supported until the packages module exists; not installed: htop, curl=7.88"), "{all}");
        assert!(all.contains("bootcmd (line"), "{all}");
        assert!(all.contains("apt (line"), "{all}");
        assert!(
            !c.toml.contains("s3cret"),
            "clear-text passwords never go into the profile"
        );
    }

    #[test]
    fn packages_go_to_the_packages_module_when_it_exists() {
        let c = convert(
            "#cloud-config\npackages: [htop]\n",
            &MetaData::default(),
            Defaults {
                user: "debian",
                packages_install: true,
            },
        )
        .unwrap();
        let t: toml::Table = toml::from_str(&c.toml).unwrap();
        assert_eq!(t["packages"]["install"][0].as_str(), Some("htop"));
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
            "#cloud-config\nusers:\n  - name: x\n    sudo: ALL=(ALL) /usr/bin/apt\n",
            &MetaData::default(),
            defaults(),
        )
        .unwrap_err();
        assert!(e.message.contains("cannot be expressed"), "{e}");
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
