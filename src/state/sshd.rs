//! sshd's effective configuration per connection context, with the source of every value.
//!
//! Two readings, one result type ([`SshAccess`]):
//! - where the root's own sshd can run, `sshd -T -C user=…,host=…,addr=…,lport=…` through
//!   `cx.runner` (chrooted by [`Cmd::in_root`]); the source of each value is that command;
//! - everywhere else, and for a *planned* configuration (files a plan will write, users it
//!   will create, which the installed sshd cannot see yet), the static evaluator of
//!   [`crate::sshd_config`]: `Include`s followed, `Match` blocks evaluated the way sshd does,
//!   each value citing `file:line` (and the `Match` line that applied).
//!
//! The lockout guard, `plan`'s "who can log in" and the firewall read sshd through here.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::engine::{Context, Plan};
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::root::{Perms, RelPath};
use crate::sshd_config::{ConfigSource, ConnInfo, Effective, Flattened, Value};

/// The main configuration file, as sshd names it.
pub const MAIN_ABS: &str = "/etc/ssh/sshd_config";

/// The settings that decide who can log in over one connection, with their sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAccess {
    /// Ports sshd will listen on.
    pub ports: Vec<u16>,
    /// `ListenAddress` entries (empty: every address).
    pub listen_addresses: Vec<String>,
    /// `PermitRootLogin` value.
    pub permit_root_login: String,
    /// `PasswordAuthentication`.
    pub password_authentication: bool,
    /// `KbdInteractiveAuthentication`.
    pub kbd_interactive: bool,
    /// `PubkeyAuthentication`.
    pub pubkey: bool,
    /// `AuthenticationMethods` chains (empty = any).
    pub methods: Vec<Vec<String>>,
    /// `AllowUsers`.
    pub allow_users: Vec<String>,
    /// `AllowGroups`.
    pub allow_groups: Vec<String>,
    /// `DenyUsers`.
    pub deny_users: Vec<String>,
    /// `DenyGroups`.
    pub deny_groups: Vec<String>,
    /// `AuthorizedKeysFile` patterns (`%h`, `%u`, `%%` tokens).
    pub authorized_keys_files: Vec<String>,
    /// `PubkeyAcceptedAlgorithms` (empty: OpenSSH default).
    pub pubkey_accepted: Vec<String>,
    /// `RequiredRSASize` (1024 unless set).
    pub rsa_min_bits: u32,
    /// `UsePAM` (without PAM, sshd refuses accounts whose password hash starts with `!`).
    pub use_pam: bool,
    /// `StrictModes` (sshd ignores `authorized_keys` when it, `.ssh` or the home directory is
    /// group/world-writable or owned by someone else).
    pub strict_modes: bool,
    /// Lower-case keyword → where its value came from (`file:line`, `sshd -T -C …`, or
    /// `default`).
    pub sources: BTreeMap<String, String>,
}

impl SshAccess {
    /// Where a keyword's value came from (`default` when nothing set it).
    pub fn source(&self, keyword: &str) -> &str {
        self.sources
            .get(keyword)
            .map(String::as_str)
            .unwrap_or("default")
    }

    /// Builds the access settings from evaluated values (defaults as in OpenSSH 9).
    pub fn from_values(eff: &BTreeMap<String, Value>) -> SshAccess {
        let first = |k: &str| {
            eff.get(k)
                .and_then(|v| v.values.first())
                .map(|s| s.to_ascii_lowercase())
        };
        let bool_of = |k: &str, default: bool| first(k).map(|v| v == "yes").unwrap_or(default);
        let list = |k: &str| -> Vec<String> {
            eff.get(k)
                .map(|v| {
                    v.values
                        .iter()
                        .flat_map(|x| x.split_whitespace().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let ports: Vec<u16> = list("port").iter().filter_map(|p| p.parse().ok()).collect();
        let methods = first("authenticationmethods")
            .filter(|m| m != "any")
            .map(|m| {
                m.split_whitespace()
                    .map(|c| c.split(',').map(str::to_string).collect())
                    .collect()
            })
            .unwrap_or_default();
        let mut akf = list("authorizedkeysfile");
        if akf.is_empty() {
            akf = vec![
                ".ssh/authorized_keys".into(),
                ".ssh/authorized_keys2".into(),
            ];
        }
        akf.retain(|f| !f.eq_ignore_ascii_case("none"));
        SshAccess {
            ports: if ports.is_empty() { vec![22] } else { ports },
            listen_addresses: list("listenaddress"),
            permit_root_login: first("permitrootlogin")
                .map(|v| {
                    if v == "without-password" {
                        "prohibit-password".into()
                    } else {
                        v
                    }
                })
                .unwrap_or_else(|| "prohibit-password".into()),
            password_authentication: bool_of("passwordauthentication", true),
            kbd_interactive: bool_of("kbdinteractiveauthentication", true),
            pubkey: bool_of("pubkeyauthentication", true),
            methods,
            allow_users: list("allowusers"),
            allow_groups: list("allowgroups"),
            deny_users: list("denyusers"),
            deny_groups: list("denygroups"),
            authorized_keys_files: akf,
            pubkey_accepted: first("pubkeyacceptedalgorithms")
                .map(|v| v.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
            rsa_min_bits: first("requiredrsasize")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1024),
            use_pam: bool_of("usepam", false),
            strict_modes: bool_of("strictmodes", true),
            sources: eff
                .iter()
                .map(|(k, v)| (k.clone(), v.source.clone()))
                .collect(),
        }
    }
}

/// Reads files as a plan leaves them: planned content first, else the root's current file;
/// directory listings include files the plan creates.
struct Planned<'a, 'c> {
    cx: &'a Context<'c>,
    plan: &'a Plan,
}

impl ConfigSource for Planned<'_, '_> {
    fn read(&self, abs: &str) -> std::result::Result<Option<Vec<u8>>, String> {
        let rel = RelPath::new(abs).map_err(|e| format!("{abs}: {e}"))?;
        self.cx.after(self.plan, &rel).map_err(|e| e.to_string())
    }

    fn list(&self, dir: &str) -> std::result::Result<Vec<String>, String> {
        let rel = RelPath::new(dir).map_err(|e| format!("{dir}: {e}"))?;
        let mut names = self.cx.root.list_dir(&rel).map_err(|e| e.to_string())?;
        for c in &self.plan.changes {
            if let Some(p) = c.action.path()
                && p.parent().as_ref() == Some(&rel)
                && !names.iter().any(|n| n == p.file_name())
            {
                names.push(p.file_name().to_string());
            }
        }
        names.retain(|n| rel.join(n).map(|p| !self.plan.removes(&p)).unwrap_or(false));
        Ok(names)
    }
}

/// The sshd configuration as `plan` leaves it, flattened (`Include`s followed, bounded).
///
/// # Errors
/// [`Error::Unsafe`] (exit 2, nothing changed) when a file cannot be read or a limit of
/// [`crate::sshd_config`] is exceeded: the guard cannot reason about such a configuration.
pub fn load_planned(cx: &Context, plan: &Plan) -> Result<Flattened> {
    crate::sshd_config::load(MAIN_ABS, &Planned { cx, plan }).map_err(|e| Error::Unsafe {
        reason: format!("cannot read the sshd configuration: {e}"),
        hint: "fix etc/ssh/sshd_config and its drop-ins in the root (an Include loop, an \
               oversized or unreadable file)"
            .into(),
    })
}

/// The global settings after `plan` (as `sshd -T` without `-C` would print them).
///
/// # Errors
/// As [`load_planned`].
pub fn global_access(cx: &Context, plan: &Plan) -> Result<SshAccess> {
    let flat = load_planned(cx, plan)?;
    Ok(SshAccess::from_values(&crate::sshd_config::evaluate(
        &flat, None,
    )))
}

/// The `-C` argument for one connection.
pub fn conn_spec(ci: &ConnInfo) -> String {
    let mut s = format!(
        "user={},host={},addr={},lport={}",
        ci.user, ci.host, ci.addr, ci.lport
    );
    if let Some(l) = ci.laddr {
        s.push_str(&format!(",laddr={l}"));
    }
    s
}

/// Converts `sshd -T` output into sourced values.
pub fn values_from_tool(e: &Effective, source: &str) -> BTreeMap<String, Value> {
    e.values
        .iter()
        .map(|(k, v)| {
            (
                crate::sshd_config::canonical_keyword(k).to_string(),
                Value {
                    values: v.clone(),
                    source: source.to_string(),
                },
            )
        })
        .collect()
}

/// Runs the root's own `sshd -T` (with `-C` for one connection), with a throwaway host key in
/// a scratch directory when the root has none (an image before first boot).
///
/// # Errors
/// When sshd cannot run or rejects its configuration.
pub fn run_sshd_t(cx: &Context, ci: Option<&ConnInfo>) -> Result<Effective> {
    let dir_rel = RelPath::lit("var/lib/bollwerk/tmp");
    crate::engine::journal::ensure_state_dir(&cx.root)?;
    if !cx.root.entry(&dir_rel)?.exists() {
        cx.root.create_dir(&dir_rel, Perms::root(0o700))?;
    }
    let sub = dir_rel
        .join(&format!("sshd-t-{}", std::process::id()))
        .map_err(Error::Runtime)?;
    if !cx.root.entry(&sub)?.exists() {
        cx.root.create_dir(&sub, Perms::root(0o700))?;
    }
    let host = cx.root.resolve(&sub);
    let res = (|| {
        let mut cmd = Cmd::in_root("/usr/sbin/sshd", &["-T"]);
        if let Some(ci) = ci {
            cmd = cmd.arg("-C").arg(conn_spec(ci));
        }
        if let Some(key) = scratch_host_key(cx, &sub.absolute(), &host)? {
            cmd = cmd.arg("-h").arg(key);
        }
        let out = cx
            .runner
            .run_ok(&cx.root, &cmd.timeout(std::time::Duration::from_secs(30)))?;
        Ok(Effective::parse(&out.stdout))
    })();
    let _ = cx.root.remove_all(&sub);
    res
}

/// `sshd -T -C` for one connection as the root's sshd is, writing nothing.
fn sshd_t_read_only(cx: &Context, ci: &ConnInfo) -> Result<Effective> {
    let cmd = Cmd::in_root("/usr/sbin/sshd", &["-T", "-C"])
        .arg(conn_spec(ci))
        .timeout(std::time::Duration::from_secs(30));
    let out = cx.runner.run_ok(&cx.root, &cmd)?;
    Ok(Effective::parse(&out.stdout))
}

/// When the root has no host keys, generates a throwaway one in `dir` so `sshd -t`/`-T` can
/// run; `None` when the root has keys.
///
/// # Errors
/// When `ssh-keygen` fails.
pub fn scratch_host_key(
    cx: &Context,
    dir_in_root: &str,
    dir_host: &std::path::Path,
) -> Result<Option<String>> {
    let has_keys = cx
        .root
        .list_dir(&RelPath::lit("etc/ssh"))?
        .iter()
        .any(|n| n.starts_with("ssh_host_") && n.ends_with("_key"));
    if has_keys {
        return Ok(None);
    }
    let key = format!("{dir_in_root}/hostkey");
    if !dir_host.join("hostkey").exists() {
        cx.runner.run_ok(
            &cx.root,
            &Cmd::in_root(
                "/usr/bin/ssh-keygen",
                &["-q", "-t", "ed25519", "-N", "", "-f", &key],
            ),
        )?;
    }
    Ok(Some(key))
}

/// A connection context for `user` from `addr` on `lport`, the groups read from the given
/// account files (as the plan leaves them).
pub fn conn_for(user: &str, groups: Vec<String>, addr: IpAddr, lport: u16) -> ConnInfo {
    ConnInfo {
        user: user.to_string(),
        groups,
        host: addr.to_string(),
        addr,
        laddr: None,
        lport,
    }
}

/// Keywords every real `sshd -T` prints; output without them is not trusted.
const COMPLETE: &[&str] = &[
    "usepam",
    "pubkeyauthentication",
    "permitrootlogin",
    "strictmodes",
];

/// One account's effective sshd settings on the root as it is now.
#[derive(Debug, Clone)]
pub struct UserSsh {
    /// The connection evaluated.
    pub conn: ConnInfo,
    /// Its settings.
    pub access: SshAccess,
}

/// One account's full effective sshd keyword values (canonical keywords).
#[derive(Debug, Clone)]
pub struct UserValues {
    /// The connection evaluated.
    pub conn: ConnInfo,
    /// Keyword → value and where it came from.
    pub values: BTreeMap<String, Value>,
}

/// sshd's settings on the root as it is now for every account that may log in (root and each
/// account with an `authorized_keys` file), from a client at `addr`: `sshd -T -C` where the
/// root's sshd runs, else the static evaluation. Returns the readings and which source
/// answered.
///
/// # Errors
/// When the configuration cannot be read at all.
pub fn per_user(cx: &Context, addr: IpAddr) -> Result<(Vec<UserSsh>, String)> {
    let (users, source) = per_user_values(cx, addr, SshdTool::WithScratchKey)?;
    let out = users
        .into_iter()
        .map(|u| UserSsh {
            access: SshAccess::from_values(&u.values),
            conn: u.conn,
        })
        .collect();
    Ok((out, source))
}

/// True when the root's sshd configuration has a `Match` block, i.e. when some connection
/// may see other settings than `sshd -T` without `-C` prints.
///
/// # Errors
/// As [`load_planned`].
pub fn has_match(cx: &Context) -> Result<bool> {
    Ok(load_planned(cx, &Plan::default())?
        .directives
        .iter()
        .any(|d| !d.conds.is_empty()))
}

/// How [`per_user_values`] may run the root's sshd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshdTool {
    /// `sshd -T -C`, with a throwaway host key in bollwerk's state directory when the root
    /// has none (planning and the lockout guard).
    WithScratchKey,
    /// `sshd -T -C` as it is, writing nothing in the root (the audit).
    ReadOnly,
    /// The static evaluation only (sshd is known not to run here).
    Static,
}

/// As [`per_user`], with every keyword's value.
///
/// # Errors
/// When the configuration cannot be read at all.
pub fn per_user_values(
    cx: &Context,
    addr: IpAddr,
    tool: SshdTool,
) -> Result<(Vec<UserValues>, String)> {
    let empty = Plan::default();
    let global = global_access(cx, &empty)?;
    let lport = global.ports.first().copied().unwrap_or(22);
    let acc = &cx.facts.accounts;
    let mut out = Vec::new();
    let flat = load_planned(cx, &empty)?;
    let mut tool_ok = tool != SshdTool::Static && cx.root.exists(&RelPath::lit("usr/sbin/sshd"));
    let mut why = String::new();
    for u in acc.passwd.entries() {
        let home = u.home.trim_end_matches('/');
        let has_keys = RelPath::new(&format!("{home}/.ssh/authorized_keys"))
            .map(|r| cx.root.exists(&r))
            .unwrap_or(false);
        if u.uid != 0 && !has_keys {
            continue;
        }
        let ci = conn_for(&u.name, acc.groups_of(&u.name), addr, lport);
        let mut values = None;
        if tool_ok {
            let ran = if tool == SshdTool::ReadOnly {
                sshd_t_read_only(cx, &ci)
            } else {
                run_sshd_t(cx, Some(&ci))
            };
            match ran {
                Ok(e) if COMPLETE.iter().all(|k| e.get(k).is_some()) => {
                    values = Some(values_from_tool(
                        &e,
                        &format!("sshd -T -C {}", conn_spec(&ci)),
                    ));
                }
                Ok(_) => {
                    tool_ok = false;
                    why = format!("its output lacks one of {}", COMPLETE.join(", "));
                }
                Err(e) => {
                    tool_ok = false;
                    why = e.to_string();
                }
            }
        }
        let values = values.unwrap_or_else(|| crate::sshd_config::evaluate(&flat, Some(&ci)));
        out.push(UserValues { conn: ci, values });
    }
    let source = if tool_ok {
        "sshd -T -C".to_string()
    } else if tool == SshdTool::Static {
        "static evaluation".to_string()
    } else if why.is_empty() {
        "static evaluation (no sshd in the root)".to_string()
    } else {
        format!("static evaluation (sshd -T could not run: {why})")
    };
    Ok((out, source))
}
