//! Probe evaluation: one function per probe kind, each turning shared facts into an
//! [`Outcome`] with evidence. Read-only.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;

use regex::Regex;

use super::check::{
    AccountRule, AppArmorProperty, ConfSyntax, Expect, FileType, FirewallProperty, Missing,
    PgHbaRule, Probe,
};
use super::expect::{Outcome, describe, judge};
use super::facts::{AuditCx, Setting, module_name, normalize_ws, parse_ini};
use super::result::Status;
use crate::root::RelPath;
use crate::sshd_config::glob_match;
use crate::state::accounts::AgeingField;
use crate::state::firewall as fw;
use crate::state::pam::{self, PamLine};

mod firewall;
mod pam_probes;

use firewall::firewall_probe;
use pam_probes::{PamQuery, pam_option_probe, pam_probe, shadow_ageing_probe};

const LIST_MAX: usize = 8;

/// Lists up to a few items, then "and N more".
pub fn list_some<S: AsRef<str>>(items: &[S]) -> String {
    let mut s = items
        .iter()
        .take(LIST_MAX)
        .map(|x| x.as_ref().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > LIST_MAX {
        s.push_str(&format!(" and {} more", items.len() - LIST_MAX));
    }
    s
}

/// The expected state of a probe in words.
pub fn expected(p: &Probe) -> String {
    match p {
        Probe::File { .. } => expected_file(p),
        Probe::Line {
            path,
            pattern,
            present,
            ..
        } => format!(
            "{} line matching /{pattern}/ in {}",
            if *present { "a" } else { "no" },
            path.iter()
                .map(|p| format!("/{p}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Probe::Sshd { key, expect } => format!("sshd {key} {}", describe(expect)),
        Probe::Sysctl { key, expect } => {
            format!("{key} {} (configured and live)", describe(expect))
        }
        Probe::Package { name, installed } => {
            if *installed {
                format!("{} installed", name.join(" or "))
            } else {
                format!("{} not installed", name.join(", "))
            }
        }
        Probe::Service { .. } => expected_service(p),
        Probe::KernelModule { module } => {
            format!("kernel module {module} cannot be loaded (install /bin/false + blacklist)")
        }
        Probe::Mount {
            path,
            separate,
            options,
        } => {
            if *separate && options.is_empty() {
                format!("{path} is a separate mount")
            } else {
                format!("{path} mounted with {}", options.join(","))
            }
        }
        Probe::Conf {
            key,
            expect,
            section,
            ..
        } => match section {
            Some(s) => format!("[{s}] {key} {}", describe(expect)),
            None => format!("{key} {}", describe(expect)),
        },
        Probe::LoginDefs { key, expect } => format!("{key} {} (login.defs)", describe(expect)),
        Probe::ShadowAgeing { field, expect } => format!(
            "every account with a password: shadow {} {}",
            field.as_str(),
            describe(expect)
        ),
        Probe::PamOption {
            file,
            pam_type,
            module,
            option,
            expect,
        } => format!(
            "{pam_type} {module} in pam.d/{file} enforcing, effective {option} {}",
            describe(expect)
        ),
        Probe::Pam { .. } => expected_pam(p),
        Probe::Accounts { rule } => format!("{rule:?}"),
        Probe::WorldWritable { .. } => {
            "no world-writable files; world-writable directories sticky".into()
        }
        Probe::Unowned { .. } => "every file has an existing owner and group".into(),
        Probe::Firewall { property } => format!("firewall: {property:?}"),
        Probe::Fail2ban { .. } => expected_fail2ban(p),
        Probe::Postgres { setting, expect } => {
            format!("PostgreSQL {setting} {}", describe(expect))
        }
        Probe::PgHba { rule } => format!("pg_hba.conf: {rule:?}"),
        Probe::Logrotate { .. } => expected_logrotate(p),
        Probe::AptConf { key, expect } => format!("{key} {}", describe(expect)),
        Probe::UnitSetting {
            unit,
            section,
            key,
            expect,
        } => format!("{unit} [{section}] {key} {}", describe(expect)),
        Probe::Apparmor { property } => format!("AppArmor: {property:?}"),
        Probe::DockerDaemon { key, expect } => format!("{key} {} (daemon.json)", describe(expect)),
        Probe::OpenPorts {} => "every open port is allowed by the firewall".into(),
        Probe::All { probes } => probes
            .iter()
            .map(expected)
            .collect::<Vec<_>>()
            .join("; and "),
        Probe::Any { probes } => probes
            .iter()
            .map(expected)
            .collect::<Vec<_>>()
            .join("; or "),
        Probe::Command(_)
        | Probe::Port(_)
        | Probe::Http(_)
        | Probe::FileAge(_)
        | Probe::TlsCert(_) => super::custom::expected(p),
    }
}

/// The expected state of a `file` probe.
fn expected_file(p: &Probe) -> String {
    let Probe::File {
        path,
        file_type,
        mode_max,
        mode_min,
        owner,
        group,
        absent,
        from_profile,
        ..
    } = p
    else {
        return String::new();
    };
    let what = if path.is_empty() {
        format!(
            "paths from profile key {}",
            from_profile.as_deref().unwrap_or("")
        )
    } else {
        format!("/{path}")
    };
    if *absent {
        return format!("{what} does not exist");
    }
    let mut parts = Vec::new();
    if let Some(t) = file_type {
        parts.push(match t {
            FileType::File => "a regular file".to_string(),
            FileType::Dir => "a directory".to_string(),
        });
    }
    if let Some(m) = mode_max {
        parts.push(format!("mode {m} or stricter"));
    }
    if let Some(m) = mode_min {
        parts.push(format!("mode bits {m} set"));
    }
    if !owner.is_empty() {
        parts.push(format!("owner {}", owner.join("/")));
    }
    if !group.is_empty() {
        parts.push(format!("group {}", group.join("/")));
    }
    format!("{what}: {}", parts.join(", "))
}

/// The expected state of a `service` probe.
fn expected_service(p: &Probe) -> String {
    let Probe::Service {
        unit,
        enabled,
        active,
        ..
    } = p
    else {
        return String::new();
    };
    let mut parts = Vec::new();
    if let Some(e) = enabled {
        parts.push(if *e { "enabled" } else { "not enabled" });
    }
    if let Some(a) = active {
        parts.push(if *a { "active" } else { "not active" });
    }
    format!("{} {}", unit.join("/"), parts.join(" and "))
}

/// The expected state of a `pam` probe.
fn expected_pam(p: &Probe) -> String {
    let Probe::Pam {
        file,
        pam_type,
        module,
        present,
        args_present,
        args_absent,
        arg,
        expect,
        group_empty,
    } = p
    else {
        return String::new();
    };
    if !present {
        return format!("no {pam_type} {module} in pam.d/{file}");
    }
    if *group_empty {
        return format!(
            "{pam_type} {module} in pam.d/{file} with {} naming an empty group",
            arg.as_deref().unwrap_or("group")
        );
    }
    let mut s = format!("{pam_type} {module} in pam.d/{file}");
    if !args_present.is_empty() {
        s.push_str(&format!(" with {}", args_present.join(" ")));
    }
    if !args_absent.is_empty() {
        s.push_str(&format!(" without {}", args_absent.join(" ")));
    }
    if let (Some(a), Some(e)) = (arg, expect) {
        s.push_str(&format!(", {a} {}", describe(e)));
    }
    s
}

/// The expected state of a `fail2ban` probe.
fn expected_fail2ban(p: &Probe) -> String {
    let Probe::Fail2ban {
        jail,
        setting,
        expect,
        active,
    } = p
    else {
        return String::new();
    };
    let mut s = format!("fail2ban jail {jail} enabled");
    if let (Some(k), Some(e)) = (setting, expect) {
        s.push_str(&format!(", {k} {}", describe(e)));
    }
    if *active {
        s.push_str(" and running");
    }
    s
}

/// The expected state of a `logrotate` probe.
fn expected_logrotate(p: &Probe) -> String {
    let Probe::Logrotate {
        paths,
        from_profile,
    } = p
    else {
        return String::new();
    };
    let mut s = "logrotate rules for ".to_string();
    s.push_str(&paths.join(", "));
    if let Some(k) = from_profile {
        if !paths.is_empty() {
            s.push_str(" and ");
        }
        s.push_str(&format!("the profile's {k}"));
    }
    s
}

/// Evaluates a probe.
pub fn eval(cx: &AuditCx, p: &Probe) -> Outcome {
    match p {
        Probe::File {
            path,
            file_type,
            mode_max,
            mode_min,
            owner,
            group,
            missing,
            from_profile,
            absent,
        } => match probe_paths(cx, path, from_profile.as_deref()) {
            Err(o) => o,
            Ok(paths) => file_probe(
                cx, &paths, *file_type, mode_max, mode_min, owner, group, *missing, *absent,
            ),
        },
        Probe::Line {
            path,
            pattern,
            present,
            skip_comments,
            missing,
        } => line_probe(cx, path, pattern, *present, *skip_comments, *missing),
        Probe::Sshd { key, expect } => sshd_probe(cx, key, expect),
        Probe::Sysctl { key, expect } => sysctl_probe(cx, key, expect),
        Probe::Package { name, installed } => package_probe(cx, name, *installed),
        Probe::Service {
            unit,
            enabled,
            active,
            missing,
        } => service_probe(cx, unit, *enabled, *active, *missing),
        Probe::KernelModule { module } => kmod_probe(cx, module),
        Probe::Mount {
            path,
            separate,
            options,
        } => mount_probe(cx, path, *separate, options),
        Probe::Conf {
            path,
            syntax,
            section,
            key,
            expect,
        } => conf_probe(cx, path, *syntax, section.as_deref(), key, expect),
        Probe::LoginDefs { key, expect } => conf_probe(
            cx,
            &["etc/login.defs".to_string()],
            ConfSyntax::Space,
            None,
            key,
            expect,
        ),
        Probe::Pam {
            file,
            pam_type,
            module,
            present,
            args_present,
            args_absent,
            arg,
            expect,
            group_empty,
        } => pam_probe(
            cx,
            &PamQuery {
                file,
                pam_type,
                module,
                present: *present,
                args_present,
                args_absent,
                arg: arg.as_deref(),
                expect: expect.as_ref(),
                group_empty: *group_empty,
            },
        ),
        Probe::PamOption {
            file,
            pam_type,
            module,
            option,
            expect,
        } => pam_option_probe(cx, file, pam_type, module, option, expect),
        Probe::ShadowAgeing { field, expect } => shadow_ageing_probe(cx, *field, expect),
        Probe::Accounts { rule } => accounts_probe(cx, *rule),
        Probe::WorldWritable { roots } => world_writable_probe(cx, roots),
        Probe::Unowned { roots } => unowned_probe(cx, roots),
        Probe::Firewall { property } => firewall_probe(cx, *property),
        Probe::Fail2ban {
            jail,
            setting,
            expect,
            active,
        } => fail2ban_probe(cx, jail, setting.as_deref(), expect.as_ref(), *active),
        Probe::Postgres { setting, expect } => postgres_probe(cx, setting, expect),
        Probe::PgHba { rule } => pg_hba_probe(cx, *rule),
        Probe::Logrotate {
            paths,
            from_profile,
        } => logrotate_probe(cx, paths, from_profile.as_deref()),
        Probe::AptConf { key, expect } => apt_conf_probe(cx, key, expect),
        Probe::UnitSetting {
            unit,
            section,
            key,
            expect,
        } => unit_setting_probe(cx, unit, section, key, expect),
        Probe::Apparmor { property } => apparmor_probe(cx, *property),
        Probe::DockerDaemon { key, expect } => super::docker::daemon_probe(cx, key, expect),
        Probe::OpenPorts {} => super::probe_ports::open_ports_probe(cx),
        Probe::All { probes } => combine_all(probes.iter().map(|q| eval(cx, q)).collect()),
        Probe::Any { probes } => {
            let outs: Vec<Outcome> = probes.iter().map(|q| eval(cx, q)).collect();
            combine_any(outs)
        }
        Probe::Command(_)
        | Probe::Port(_)
        | Probe::Http(_)
        | Probe::FileAge(_)
        | Probe::TlsCert(_) => super::custom::eval(cx, p),
    }
}

/// The paths a file probe looks at: its own `path` and those the profile declares under
/// `from_profile`; not applicable when there are none.
fn probe_paths(
    cx: &AuditCx,
    path: &str,
    from_profile: Option<&str>,
) -> Result<Vec<String>, Outcome> {
    let mut paths: Vec<String> = Vec::new();
    if !path.is_empty() {
        paths.push(path.to_string());
    }
    if let Some(k) = from_profile {
        let declared = declared_paths(cx, k);
        if declared.is_empty() && path.is_empty() {
            return Err(Outcome::na(format!("the profile declares no {k}")));
        }
        paths.extend(declared);
    }
    Ok(paths)
}

fn sshd_probe(cx: &AuditCx, key: &str, expect: &Expect) -> Outcome {
    let s = cx.sshd();
    if !s.installed {
        return Outcome::na("the OpenSSH server is not installed (usr/sbin/sshd)");
    }
    let v = s.values.get(key).map(|v| v.join(" "));
    let global = judge(expect, key, v.as_deref(), &s.source);
    if global.status != Status::Pass {
        return global;
    }
    // A `Match` block may weaken the setting for some account: the worst context decides.
    let canonical = crate::sshd_config::canonical_keyword(key);
    for c in &s.contexts {
        let v = c
            .values
            .get(key)
            .or_else(|| c.values.get(canonical))
            .map(|v| v.join(" "));
        let o = judge(expect, key, v.as_deref(), &c.source);
        if o.status == Status::Fail {
            return Outcome::fail(format!(
                "{}; a Match block overrides the global value ({})",
                o.evidence, global.evidence
            ));
        }
    }
    global
}

fn world_writable_probe(cx: &AuditCx, roots: &[String]) -> Outcome {
    match cx.walk(roots) {
        Err(e) => Outcome::error(e),
        Ok(w) => {
            let mut bad: Vec<String> = w
                .ww_files
                .iter()
                .map(|h| format!("{} ({:04o})", h.path, h.mode))
                .collect();
            bad.extend(
                w.ww_dirs
                    .iter()
                    .map(|h| format!("{}/ ({:04o}, not sticky)", h.path, h.mode)),
            );
            Outcome::judge(
                bad.is_empty(),
                if bad.is_empty() {
                    format!(
                        "none among {} entries under {} (file system walk)",
                        w.visited,
                        w.roots.join(", ")
                    )
                } else {
                    format!("{} world-writable: {}", bad.len(), list_some(&bad))
                },
            )
        }
    }
}

fn unowned_probe(cx: &AuditCx, roots: &[String]) -> Outcome {
    match cx.walk(roots) {
        Err(e) => Outcome::error(e),
        Ok(w) => {
            let mut bad = w.no_user.clone();
            bad.extend(w.no_group.iter().cloned());
            Outcome::judge(
                bad.is_empty(),
                if bad.is_empty() {
                    format!(
                        "none among {} entries under {} (file system walk)",
                        w.visited,
                        w.roots.join(", ")
                    )
                } else {
                    format!("{} without owner/group: {}", bad.len(), list_some(&bad))
                },
            )
        }
    }
}

fn postgres_probe(cx: &AuditCx, setting: &str, expect: &Expect) -> Outcome {
    match cx.postgres() {
        Err(e) => Outcome::error(e),
        Ok(cs) if cs.is_empty() => {
            Outcome::na("no PostgreSQL cluster (etc/postgresql/*/*/postgresql.conf)")
        }
        Ok(cs) => combine_all(
            cs.iter()
                .map(|c| {
                    let s = c.settings.get(setting);
                    judge(
                        expect,
                        &format!("{}: {setting}", c.name),
                        s.map(|s| s.value.as_str()),
                        s.map_or("postgresql.conf", |s| s.at.as_str()),
                    )
                })
                .collect(),
        ),
    }
}

fn apt_conf_probe(cx: &AuditCx, key: &str, expect: &Expect) -> Outcome {
    match cx.apt() {
        Err(e) => Outcome::error(e),
        Ok(m) => {
            let s = m.get(&key.to_ascii_lowercase());
            judge(
                expect,
                key,
                s.map(|s| s.value.as_str()),
                s.map_or("etc/apt/apt.conf.d", |s| s.at.as_str()),
            )
        }
    }
}

fn package_probe(cx: &AuditCx, name: &[String], installed: bool) -> Outcome {
    let found: Vec<String> = name.iter().flat_map(|n| cx.installed(n)).collect();
    let ev = if found.is_empty() {
        format!("{} not installed (dpkg status)", name.join(", "))
    } else {
        format!(
            "installed: {} (dpkg status)",
            list_some(
                &found
                    .iter()
                    .map(|n| format!("{n} {}", cx.facts.package(n).unwrap_or("")))
                    .collect::<Vec<_>>()
            )
        )
    };
    Outcome::judge(found.is_empty() != installed, ev)
}

/// All must pass: the worst status wins (fail > error > not evaluated > skipped > n/a >
/// pass), evidence of every part.
fn combine_all(outs: Vec<Outcome>) -> Outcome {
    let rank = |s: Status| match s {
        Status::Fail => 5,
        Status::Error => 4,
        Status::NotEvaluated => 3,
        Status::Skipped | Status::Waived => 2,
        Status::NotApplicable => 1,
        Status::Pass => 0,
    };
    let worst = outs
        .iter()
        .map(|o| o.status)
        .max_by_key(|s| rank(*s))
        .unwrap_or(Status::Pass);
    // A part that does not apply does not make the whole not applicable when others passed.
    let status = if worst == Status::NotApplicable && outs.iter().any(|o| o.status == Status::Pass)
    {
        Status::Pass
    } else {
        worst
    };
    Outcome {
        status,
        evidence: outs
            .iter()
            .map(|o| o.evidence.as_str())
            .filter(|e| !e.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// One must pass: a pass wins; a fail only when every part failed; otherwise the part that
/// could not decide (error, not evaluated, …) says why, with the evidence of every part.
fn combine_any(outs: Vec<Outcome>) -> Outcome {
    if let Some(o) = outs.iter().find(|o| o.status == Status::Pass) {
        return o.clone();
    }
    let undecided: Vec<Outcome> = outs
        .iter()
        .filter(|o| o.status != Status::Fail)
        .cloned()
        .collect();
    if undecided.is_empty() {
        return combine_all(outs);
    }
    let status = combine_all(undecided).status;
    Outcome {
        status,
        ..combine_all(outs)
    }
}

fn declared_paths(cx: &AuditCx, key: &str) -> Vec<String> {
    cx.profile_values(key)
        .into_iter()
        .filter_map(|v| match v {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Object(o) => {
                o.get("path").and_then(|p| p.as_str()).map(str::to_string)
            }
            _ => None,
        })
        .map(|s| s.trim_start_matches('/').to_string())
        .collect()
}

fn resolve_owner(cx: &AuditCx, names: &[String], user: bool) -> Vec<u32> {
    names
        .iter()
        .filter_map(|n| {
            n.parse().ok().or_else(|| {
                if user {
                    cx.facts.accounts.uid(n)
                } else {
                    cx.facts.accounts.gid(n)
                }
            })
        })
        .collect()
}

fn user_name(cx: &AuditCx, uid: u32) -> String {
    cx.facts
        .accounts
        .passwd
        .entries()
        .find(|p| p.uid == uid)
        .map_or(uid.to_string(), |p| p.name.clone())
}

fn group_name(cx: &AuditCx, gid: u32) -> String {
    cx.facts
        .accounts
        .group
        .entries()
        .find(|g| g.gid == gid)
        .map_or(gid.to_string(), |g| g.name.clone())
}

#[allow(clippy::too_many_arguments)]
fn file_probe(
    cx: &AuditCx,
    patterns: &[String],
    file_type: Option<FileType>,
    mode_max: &Option<String>,
    mode_min: &Option<String>,
    owner: &[String],
    group: &[String],
    missing: Missing,
    absent: bool,
) -> Outcome {
    let mut matches = Vec::new();
    for p in patterns {
        matches.extend(cx.glob(p));
    }
    if absent {
        return Outcome::judge(
            matches.is_empty(),
            if matches.is_empty() {
                format!(
                    "{} does not exist",
                    patterns
                        .iter()
                        .map(|p| format!("/{p}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                format!(
                    "exists: {}",
                    list_some(&matches.iter().map(|m| format!("/{m}")).collect::<Vec<_>>())
                )
            },
        );
    }
    if matches.is_empty() {
        return Outcome::missing(missing, format!("/{} does not exist", patterns.join(", /")));
    }
    let max = mode_max
        .as_ref()
        .and_then(|m| u32::from_str_radix(m, 8).ok());
    let min = mode_min
        .as_ref()
        .and_then(|m| u32::from_str_radix(m, 8).ok());
    let uids = resolve_owner(cx, owner, true);
    let gids = resolve_owner(cx, group, false);
    let mut outs = Vec::new();
    for m in matches {
        let Ok(r) = RelPath::new(&m) else { continue };
        let host = cx.root.resolve(&r);
        let md = match std::fs::symlink_metadata(&host) {
            Ok(md) => md,
            Err(e) => {
                outs.push(Outcome::error(format!("inspecting /{m}: {e}")));
                continue;
            }
        };
        let mode = md.mode() & 0o7777;
        let kind = if md.is_dir() {
            "dir"
        } else if md.file_type().is_symlink() {
            "symlink"
        } else if md.is_file() {
            "file"
        } else {
            "special"
        };
        let ev = format!(
            "/{m}: {kind} {mode:04o} {}:{} (stat)",
            user_name(cx, md.uid()),
            group_name(cx, md.gid())
        );
        let mut why = Vec::new();
        match file_type {
            Some(FileType::File) if kind != "file" => why.push("not a regular file".to_string()),
            Some(FileType::Dir) if kind != "dir" => why.push("not a directory".to_string()),
            _ => {}
        }
        if kind != "symlink" {
            if let Some(max) = max
                && mode & !max & 0o7777 != 0
            {
                why.push(format!("mode more permissive than {max:04o}"));
            }
            if let Some(min) = min
                && mode & min != min
            {
                why.push(format!("lacks mode bits {min:04o}"));
            }
        }
        if !owner.is_empty() && !uids.contains(&md.uid()) {
            why.push(format!("owner not {}", owner.join("/")));
        }
        if !group.is_empty() && !gids.contains(&md.gid()) {
            why.push(format!("group not {}", group.join("/")));
        }
        outs.push(if why.is_empty() {
            Outcome::pass(ev)
        } else {
            Outcome::fail(format!("{ev}: {}", why.join(", ")))
        });
    }
    combine_all(outs)
}

fn line_probe(
    cx: &AuditCx,
    paths: &[String],
    pattern: &str,
    present: bool,
    skip_comments: bool,
    missing: Missing,
) -> Outcome {
    let re = match Regex::new(pattern) {
        Ok(r) => r,
        Err(e) => return Outcome::error(format!("bad pattern: {e}")),
    };
    let files: Vec<String> = paths.iter().flat_map(|p| cx.glob(p)).collect();
    let mut found = Vec::new();
    let mut any_file = false;
    for f in &files {
        match cx.read(f) {
            Err(e) => return Outcome::error(e),
            Ok(None) => {}
            Ok(Some(t)) => {
                any_file = true;
                for (i, l) in t.lines().enumerate() {
                    let l = l.trim_start();
                    if skip_comments && l.starts_with('#') {
                        continue;
                    }
                    if re.is_match(l) {
                        found.push(format!("/{f}:{}: {}", i + 1, l.trim_end()));
                    }
                }
            }
        }
    }
    if !any_file {
        return Outcome::missing(missing, format!("/{} does not exist", paths.join(", /")));
    }
    let shown_files = files.iter().map(|f| format!("/{f}")).collect::<Vec<_>>();
    let ev = if found.is_empty() {
        format!("no line matches /{pattern}/ in {}", list_some(&shown_files))
    } else {
        list_some(&found)
    };
    Outcome::judge(found.is_empty() != present, ev)
}

fn sysctl_probe(cx: &AuditCx, key: &str, expect: &Expect) -> Outcome {
    let conf = cx.sysctl_conf();
    let c = conf.get(key);
    let configured = judge(
        expect,
        &format!("{key} ="),
        c.map(|s| s.value.as_str()),
        c.map_or("sysctl.d", |s| s.at.as_str()),
    );
    let configured = if c.is_none() && expect.default.is_none() && expect.missing == Missing::Fail {
        Outcome::fail(format!("{key} not configured in sysctl.conf / sysctl.d"))
    } else {
        configured
    };
    match cx.sysctl_live(key) {
        None => configured,
        Some(Err(e)) => {
            if key.starts_with("net.ipv6.") {
                Outcome::na(format!("IPv6 is disabled in the kernel ({e})"))
            } else {
                combine_all(vec![configured, Outcome::error(e)])
            }
        }
        Some(Ok(v)) => {
            let live_expect = Expect {
                default: None,
                missing: Missing::Fail,
                ..expect.clone()
            };
            let live = judge(&live_expect, "live", Some(&v), "/proc/sys");
            combine_all(vec![configured, live])
        }
    }
}

fn service_probe(
    cx: &AuditCx,
    units: &[String],
    enabled: Option<bool>,
    active: Option<bool>,
    missing: Missing,
) -> Outcome {
    let mut outs = Vec::new();
    let mut any_exists = false;
    for u in units {
        let mut parts = Vec::new();
        let en = cx.unit_enabled(u);
        if en.is_some() {
            any_exists = true;
        }
        if let Some(want) = enabled
            && let Some((is, how)) = &en
        {
            parts.push(Outcome::judge(*is == want, format!("{u} {how}")));
        }
        if let Some(want) = active {
            match cx.unit_active(u) {
                None => {
                    parts.push(Outcome::not_evaluated(format!(
                        "{u} active: not evaluated (only a running systemd can say; the root is not a live system)"
                    )));
                }
                Some(Err(e)) => parts.push(Outcome::error(e)),
                Some(Ok(state)) => {
                    if en.is_some() || want {
                        parts.push(Outcome::judge(
                            (state == "active") == want,
                            format!("{u} {state} (systemctl is-active)"),
                        ))
                    }
                }
            }
        }
        if en.is_some() {
            outs.push(combine_all(parts));
        }
    }
    if !any_exists {
        return Outcome::missing(missing, format!("no unit file for {}", units.join(", ")));
    }
    // enabled/active = true: one unit suffices; = false: none may be.
    let want_on = enabled == Some(true) || (enabled.is_none() && active == Some(true));
    if want_on {
        if let Some(o) = outs.iter().find(|o| o.status == Status::Pass) {
            return o.clone();
        }
        combine_all(outs)
    } else {
        combine_all(outs)
    }
}

fn kmod_probe(cx: &AuditCx, module: &str) -> Outcome {
    let m = match cx.modprobe() {
        Ok(m) => m,
        Err(e) => return Outcome::error(e),
    };
    let name = module_name(module);
    let mut why = Vec::new();
    let mut ev = Vec::new();
    let install = m.install.get(&name);
    let disabled = install.is_some_and(|s| {
        let c = s.value.trim();
        ["/bin/false", "/usr/bin/false", "/bin/true", "/usr/bin/true"].contains(&c)
    });
    match install {
        Some(s) => ev.push(format!("install {module} {} ({})", s.value, s.at)),
        None => ev.push(format!("no `install {module}` in modprobe.d")),
    }
    match m.blacklist.get(&name) {
        Some(at) => ev.push(format!("blacklisted ({at})")),
        None => ev.push("not blacklisted".into()),
    }
    let shipped = m.shipped.contains(&name);
    if !(disabled && m.blacklist.contains_key(&name)) {
        if shipped {
            why.push("loadable");
        } else if m.kernels.is_empty() {
            if m.loaded.as_ref().is_some_and(|l| l.contains(&name)) {
                return Outcome::fail(format!("{}: loaded now (/proc/modules)", ev.join("; ")));
            }
            return Outcome::not_evaluated(format!(
                "{}; no kernel under lib/modules (no modules.dep): whether {module} can be loaded is not readable here",
                ev.join("; ")
            ));
        } else {
            ev.push(format!("not shipped by kernel {}", m.kernels.join(", ")));
        }
    }
    if let Some(loaded) = &m.loaded
        && loaded.contains(&name)
    {
        why.push("loaded now (/proc/modules)");
    }
    if why.is_empty() {
        Outcome::pass(ev.join("; "))
    } else {
        Outcome::fail(format!("{}: {}", ev.join("; "), why.join(", ")))
    }
}

fn mount_probe(cx: &AuditCx, path: &str, separate: bool, options: &[String]) -> Outcome {
    let m = match cx.mounts() {
        Ok(m) => m,
        Err(e) => return Outcome::error(e),
    };
    let Some((opts, src)) = m.points.get(path) else {
        if path == "/dev/shm" && !cx.live() {
            return Outcome::not_evaluated(
                "/dev/shm is not in etc/fstab: systemd mounts it at boot with options only the running system shows (not evaluated offline)",
            );
        }
        if separate {
            return Outcome::fail(format!(
                "{path} is not a separate mount (etc/fstab, mount units)"
            ));
        }
        return Outcome::na(format!(
            "{path} is not a separate mount, so its options are those of its parent (see the separate-partition check)"
        ));
    };
    let lacking: Vec<&String> = options.iter().filter(|o| !opts.contains(o)).collect();
    let ev = format!("{path} mounted with {} ({src})", opts.join(","));
    if lacking.is_empty() {
        Outcome::pass(ev)
    } else {
        Outcome::fail(format!(
            "{ev}: lacks {}",
            lacking
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ))
    }
}

fn conf_probe(
    cx: &AuditCx,
    paths: &[String],
    syntax: ConfSyntax,
    section: Option<&str>,
    key: &str,
    expect: &Expect,
) -> Outcome {
    let files: Vec<String> = paths.iter().flat_map(|p| cx.glob(p)).collect();
    let mut found: Option<Setting> = None;
    for f in &files {
        let text = match cx.read(f) {
            Err(e) => return Outcome::error(e),
            Ok(None) => continue,
            Ok(Some(t)) => t,
        };
        match syntax {
            ConfSyntax::Ini | ConfSyntax::Equals => {
                for (sec, k, v, line) in parse_ini(&text) {
                    if k.eq_ignore_ascii_case(key)
                        && section.is_none_or(|s| s.eq_ignore_ascii_case(&sec))
                    {
                        found = Some(Setting {
                            value: v.trim_matches('"').to_string(),
                            at: format!("{f}:{line}"),
                        });
                    }
                }
            }
            ConfSyntax::Space => {
                for (i, l) in text.lines().enumerate() {
                    let l = l.trim();
                    if l.starts_with('#') {
                        continue;
                    }
                    let mut w = l.splitn(2, char::is_whitespace);
                    if w.next().is_some_and(|k| k.eq_ignore_ascii_case(key)) {
                        found = Some(Setting {
                            value: normalize_ws(w.next().unwrap_or("")),
                            at: format!("{f}:{}", i + 1),
                        });
                    }
                }
            }
            ConfSyntax::Shell => {
                if let Some(s) = super::facts::shell_vars(&text, f).remove(key) {
                    found = Some(s);
                }
            }
        }
    }
    let src = found.as_ref().map_or_else(
        || {
            if files.is_empty() {
                format!("/{} absent", paths.join(", /"))
            } else {
                files
                    .iter()
                    .map(|f| format!("/{f}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        },
        |s| s.at.clone(),
    );
    judge(expect, key, found.as_ref().map(|s| s.value.as_str()), &src)
}

fn login_defs_int(cx: &AuditCx, key: &str, default: u32) -> u32 {
    cx.read("etc/login.defs")
        .ok()
        .flatten()
        .and_then(|t| {
            t.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .rev()
                .find_map(|l| {
                    let mut w = l.split_whitespace();
                    (w.next() == Some(key)).then(|| w.next().and_then(|v| v.parse().ok()))?
                })
        })
        .unwrap_or(default)
}

fn valid_shells(cx: &AuditCx) -> BTreeSet<String> {
    cx.read("etc/shells")
        .ok()
        .flatten()
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('/') && !l.ends_with("nologin") && !l.ends_with("/false"))
        .map(str::to_string)
        .collect()
}

/// Pass with `ok`, or fail listing `bad` after `what`.
fn verdict(bad: Vec<String>, ok: &str, what: &str) -> Outcome {
    if bad.is_empty() {
        Outcome::pass(format!("{ok} (etc/passwd, etc/group, etc/shadow)"))
    } else {
        Outcome::fail(format!("{what}: {}", list_some(&bad)))
    }
}

fn home_dirs_probe(cx: &AuditCx, interactive: &[&&crate::etcdb::Passwd]) -> Outcome {
    let mut bad = Vec::new();
    for p in interactive {
        let Ok(r) = RelPath::new(p.home.trim_start_matches('/')) else {
            bad.push(format!("{}: bad home {}", p.name, p.home));
            continue;
        };
        match std::fs::metadata(cx.root.resolve_follow(&r)) {
            Err(_) => bad.push(format!("{}: {} missing", p.name, p.home)),
            Ok(md) => {
                if md.uid() != p.uid {
                    bad.push(format!(
                        "{}: {} owned by {}",
                        p.name,
                        p.home,
                        user_name(cx, md.uid())
                    ));
                }
                if md.mode() & 0o022 != 0 {
                    bad.push(format!(
                        "{}: {} mode {:04o}",
                        p.name,
                        p.home,
                        md.mode() & 0o7777
                    ));
                }
            }
        }
    }
    verdict(
        bad,
        &format!(
            "{} interactive users' homes exist, owned, not group/world-writable",
            interactive.len()
        ),
        "home directories",
    )
}

fn dot_files_probe(cx: &AuditCx, interactive: &[&&crate::etcdb::Passwd]) -> Outcome {
    let mut bad = Vec::new();
    for p in interactive {
        let Ok(r) = RelPath::new(p.home.trim_start_matches('/')) else {
            continue;
        };
        for n in cx.root.list_dir(&r).unwrap_or_default() {
            if !n.starts_with('.') {
                continue;
            }
            let Ok(fr) = r.join(&n) else { continue };
            let Ok(md) = std::fs::symlink_metadata(cx.root.resolve(&fr)) else {
                continue;
            };
            if [".netrc", ".rhosts", ".forward"].contains(&n.as_str()) {
                bad.push(format!("{}/{n} exists", p.home));
            } else if md.is_file() && md.mode() & 0o022 != 0 {
                bad.push(format!("{}/{n} mode {:04o}", p.home, md.mode() & 0o7777));
            }
        }
    }
    verdict(
        bad,
        "no group/world-writable dot files, no .netrc/.rhosts/.forward",
        "dot files",
    )
}

fn root_path_probe(cx: &AuditCx) -> Outcome {
    let mut paths = Vec::new();
    for f in [
        "etc/environment",
        "root/.profile",
        "root/.bashrc",
        "etc/profile",
    ] {
        if let Ok(Some(t)) = cx.read(f) {
            for (i, l) in t.lines().enumerate() {
                let l = l.trim().trim_start_matches("export ").trim();
                if let Some(v) = l.strip_prefix("PATH=") {
                    paths.push((format!("/{f}:{}", i + 1), v.trim_matches('"').to_string()));
                }
            }
        }
    }
    if paths.is_empty() {
        return Outcome::pass(
            "no PATH set in etc/environment, root's .profile/.bashrc, etc/profile (default PATH)",
        );
    }
    let mut bad = Vec::new();
    for (at, p) in &paths {
        for d in p.split(':') {
            if d.contains('$') {
                continue;
            }
            if d.is_empty() || d == "." {
                bad.push(format!("{at}: empty or . entry"));
                continue;
            }
            let Ok(r) = RelPath::new(d.trim_start_matches('/')) else {
                continue;
            };
            if let Ok(md) = std::fs::metadata(cx.root.resolve_follow(&r))
                && (md.mode() & 0o022 != 0 || md.uid() != 0)
            {
                bad.push(format!(
                    "{at}: {d} mode {:04o} owner {}",
                    md.mode() & 0o7777,
                    user_name(cx, md.uid())
                ));
            }
        }
    }
    verdict(
        bad,
        &format!(
            "root PATH entries are safe ({})",
            paths
                .iter()
                .map(|(a, _)| a.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "unsafe root PATH entries",
    )
}

type PasswdEntries<'a> = [&'a crate::etcdb::Passwd];

fn accounts_probe(cx: &AuditCx, rule: AccountRule) -> Outcome {
    let a = &cx.facts.accounts;
    let passwd: Vec<&crate::etcdb::Passwd> = a.passwd.entries().collect();
    let groups: Vec<&crate::etcdb::Group> = a.group.entries().collect();
    if passwd.is_empty() {
        return Outcome::error("etc/passwd is missing or empty");
    }
    let uid_min = login_defs_int(cx, "UID_MIN", 1000);
    let shells = valid_shells(cx);
    let interactive: Vec<&&crate::etcdb::Passwd> = passwd
        .iter()
        .filter(|p| {
            (p.uid >= uid_min || p.uid == 0) && shells.contains(&p.shell) && p.name != "nobody"
        })
        .collect();
    match rule {
        AccountRule::Uid0OnlyRoot => verdict(
            passwd
                .iter()
                .filter(|p| p.uid == 0 && p.name != "root")
                .map(|p| p.name.clone())
                .collect(),
            "only root has uid 0",
            "other accounts with uid 0",
        ),
        AccountRule::RootGid0 => match a.passwd.get("root") {
            None => Outcome::fail("no root account in etc/passwd"),
            Some(r) => Outcome::judge(
                r.gid == 0,
                format!("root's primary gid is {} (etc/passwd)", r.gid),
            ),
        },
        AccountRule::Gid0OnlyRootGroup => verdict(
            groups
                .iter()
                .filter(|g| g.gid == 0 && g.name != "root")
                .map(|g| g.name.clone())
                .collect(),
            "only group root has gid 0",
            "other groups with gid 0",
        ),
        AccountRule::ShadowedPasswords => verdict(
            passwd
                .iter()
                .filter(|p| p.password != "x")
                .map(|p| p.name.clone())
                .collect(),
            "every account's password is in etc/shadow",
            "accounts with a password field other than x in etc/passwd",
        ),
        AccountRule::NoEmptyPasswords => no_empty_passwords(a),
        AccountRule::NoDuplicateUids
        | AccountRule::NoDuplicateGids
        | AccountRule::NoDuplicateUserNames
        | AccountRule::NoDuplicateGroupNames => no_duplicates(rule, &passwd, &groups),
        AccountRule::GroupsExist => groups_exist(&passwd, &groups),
        AccountRule::ShadowGroupEmpty => shadow_group_empty(a, &passwd),
        AccountRule::HomeDirs => home_dirs_probe(cx, &interactive),
        AccountRule::DotFiles => dot_files_probe(cx, &interactive),
        AccountRule::SystemAccountsNoShell => system_accounts_no_shell(&passwd, uid_min, &shells),
        AccountRule::NoShellAccountsLocked => no_shell_accounts_locked(a, &passwd, &shells),
        AccountRule::PasswordChangeInPast => password_change_in_past(a),
        AccountRule::RootAccessControlled => root_password(a, false),
        AccountRule::RootLocked => root_password(a, true),
        AccountRule::RootPath => root_path_probe(cx),
    }
}

fn no_empty_passwords(a: &crate::etcdb::Accounts) -> Outcome {
    match &a.shadow {
        None => Outcome::error("etc/shadow is missing"),
        Some(s) => verdict(
            s.entries()
                .filter(|e| e.hash.is_empty())
                .map(|e| e.name.clone())
                .collect(),
            "no empty password fields",
            "accounts with an empty password in etc/shadow",
        ),
    }
}

/// The four uniqueness rules: uids, gids, user names, group names.
fn no_duplicates(
    rule: AccountRule,
    passwd: &PasswdEntries,
    groups: &[&crate::etcdb::Group],
) -> Outcome {
    let (values, what): (Vec<String>, &str) = match rule {
        AccountRule::NoDuplicateUids => {
            (passwd.iter().map(|p| p.uid.to_string()).collect(), "uids")
        }
        AccountRule::NoDuplicateGids => {
            (groups.iter().map(|g| g.gid.to_string()).collect(), "gids")
        }
        AccountRule::NoDuplicateUserNames => (
            passwd.iter().map(|p| p.name.clone()).collect(),
            "user names",
        ),
        _ => (
            groups.iter().map(|g| g.name.clone()).collect(),
            "group names",
        ),
    };
    let mut seen = BTreeMap::new();
    for n in values {
        *seen.entry(n).or_insert(0) += 1;
    }
    let dups = seen
        .into_iter()
        .filter(|(_, c)| *c > 1)
        .map(|(n, c)| format!("{n} ×{c}"))
        .collect();
    verdict(
        dups,
        &format!("no duplicate {what}"),
        &format!("duplicate {what}"),
    )
}

fn groups_exist(passwd: &PasswdEntries, groups: &[&crate::etcdb::Group]) -> Outcome {
    let gids: BTreeSet<u32> = groups.iter().map(|g| g.gid).collect();
    verdict(
        passwd
            .iter()
            .filter(|p| !gids.contains(&p.gid))
            .map(|p| format!("{} (gid {})", p.name, p.gid))
            .collect(),
        "every primary group exists",
        "accounts whose primary group is not in etc/group",
    )
}

fn shadow_group_empty(a: &crate::etcdb::Accounts, passwd: &PasswdEntries) -> Outcome {
    let mut bad = Vec::new();
    if let Some(g) = a.group.get("shadow") {
        bad.extend(
            g.members
                .iter()
                .filter(|m| !m.is_empty())
                .map(|m| format!("{m} (member)")),
        );
        bad.extend(
            passwd
                .iter()
                .filter(|p| p.gid == g.gid)
                .map(|p| format!("{} (primary)", p.name)),
        );
    }
    verdict(
        bad,
        "the shadow group has no members",
        "shadow group members",
    )
}

fn system_accounts_no_shell(
    passwd: &PasswdEntries,
    uid_min: u32,
    shells: &BTreeSet<String>,
) -> Outcome {
    verdict(
        passwd
            .iter()
            .filter(|p| {
                p.uid < uid_min
                    && !["root", "sync", "shutdown", "halt"].contains(&p.name.as_str())
                    && shells.contains(&p.shell)
            })
            .map(|p| format!("{} ({})", p.name, p.shell))
            .collect(),
        "no system account has a login shell",
        "system accounts with a login shell",
    )
}

fn no_shell_accounts_locked(
    a: &crate::etcdb::Accounts,
    passwd: &PasswdEntries,
    shells: &BTreeSet<String>,
) -> Outcome {
    match &a.shadow {
        None => Outcome::error("etc/shadow is missing"),
        Some(s) => verdict(
            passwd
                .iter()
                .filter(|p| p.name != "root" && !shells.contains(&p.shell))
                .filter(|p| s.get(&p.name).is_some_and(|e| e.has_password()))
                .map(|p| p.name.clone())
                .collect(),
            "accounts without a login shell are locked",
            "accounts without a login shell but with a usable password",
        ),
    }
}

fn password_change_in_past(a: &crate::etcdb::Accounts) -> Outcome {
    match &a.shadow {
        None => Outcome::error("etc/shadow is missing"),
        Some(s) => {
            let today = crate::facts::days_since_epoch();
            verdict(
                s.entries()
                    .filter(|e| e.last_change.parse::<u64>().is_ok_and(|d| d > today))
                    .map(|e| format!("{} (day {})", e.name, e.last_change))
                    .collect(),
                "every last password change lies in the past",
                "accounts with a password change date in the future",
            )
        }
    }
}

/// root's password: not empty (`must_be_locked` false: access is controlled) or locked.
fn root_password(a: &crate::etcdb::Accounts, must_be_locked: bool) -> Outcome {
    let Some(r) = a.shadow.as_ref().and_then(|s| s.get("root")) else {
        return Outcome::error("no root entry in etc/shadow");
    };
    let locked = r.hash.starts_with('!') || r.hash.starts_with('*');
    let state = if locked {
        "locked"
    } else if r.hash.is_empty() {
        "empty"
    } else if must_be_locked {
        "set, not locked"
    } else {
        "set"
    };
    let ok = if must_be_locked {
        locked
    } else {
        state != "empty"
    };
    Outcome::judge(ok, format!("root password {state} (etc/shadow)"))
}

fn fail2ban_probe(
    cx: &AuditCx,
    jail: &str,
    setting: Option<&str>,
    expect: Option<&Expect>,
    active: bool,
) -> Outcome {
    if cx.installed("fail2ban").is_empty() {
        return Outcome::fail("fail2ban is not installed (dpkg status)");
    }
    let conf = match cx.fail2ban() {
        Ok(c) => c,
        Err(e) => return Outcome::error(e),
    };
    let get = |k: &str| -> Option<&Setting> {
        conf.get(jail)
            .and_then(|s| s.get(k))
            .or_else(|| conf.get("DEFAULT").and_then(|s| s.get(k)))
    };
    let mut outs = Vec::new();
    match get("enabled") {
        Some(s) if ["true", "yes", "1", "on"].contains(&s.value.to_ascii_lowercase().as_str()) => {
            outs.push(Outcome::pass(format!(
                "[{jail}] enabled = {} ({})",
                s.value, s.at
            )))
        }
        Some(s) => outs.push(Outcome::fail(format!(
            "[{jail}] enabled = {} ({})",
            s.value, s.at
        ))),
        None => outs.push(Outcome::fail(format!(
            "[{jail}] is not enabled in etc/fail2ban/jail.*"
        ))),
    }
    if let (Some(k), Some(e)) = (setting, expect) {
        let s = get(&k.to_ascii_lowercase());
        outs.push(judge(
            e,
            &format!("[{jail}] {k}"),
            s.map(|s| s.value.as_str()),
            s.map_or("etc/fail2ban/jail.*", |s| s.at.as_str()),
        ));
    }
    if active {
        if cx.systemd_running {
            let cmd = crate::exec::Cmd::in_root("/usr/bin/fail2ban-client", &["status", jail])
                .timeout(std::time::Duration::from_secs(10));
            outs.push(match cx.runner.run(&cx.root, &cmd) {
                Ok(o) if o.success() => {
                    Outcome::pass(format!("jail {jail} running (fail2ban-client status)"))
                }
                Ok(o) => Outcome::fail(format!(
                    "jail {jail} not running: {} (fail2ban-client status)",
                    o.combined().lines().next().unwrap_or("")
                )),
                Err(e) => Outcome::error(e.to_string()),
            });
        } else {
            outs.push(Outcome::not_evaluated(format!(
                "jail {jail} running: not evaluated (fail2ban-client needs the running system; the root is not live)"
            )));
        }
    }
    combine_all(outs)
}

fn pg_hba_probe(cx: &AuditCx, rule: PgHbaRule) -> Outcome {
    let cs = match cx.postgres() {
        Ok(c) => c,
        Err(e) => return Outcome::error(e),
    };
    if cs.is_empty() {
        return Outcome::na("no PostgreSQL cluster (etc/postgresql/*/*/postgresql.conf)");
    }
    let mut bad = Vec::new();
    let mut lines = 0;
    for c in cs {
        for (at, w) in &c.hba {
            lines += 1;
            let ty = w.first().map(String::as_str).unwrap_or("");
            let (addr, method) = if ty == "local" {
                (None, w.get(3))
            } else {
                // host db user address [mask] method
                let addr = w.get(3).map(String::as_str);
                let method = if w
                    .get(4)
                    .is_some_and(|m| m.contains('.') && !m.contains('/'))
                {
                    w.get(5)
                } else {
                    w.get(4)
                };
                (addr, method)
            };
            let method = method.map(String::as_str).unwrap_or("");
            let hit = match rule {
                PgHbaRule::NoTrustRemote => ty != "local" && method == "trust",
                PgHbaRule::NoWeakMethod => method == "password" || method == "md5",
                PgHbaRule::NoOpenAddress => {
                    ty != "local" && matches!(addr, Some("0.0.0.0/0" | "::/0" | "all" | "0.0.0.0"))
                }
            };
            if hit {
                bad.push(format!("{at}: {}", w.join(" ")));
            }
        }
    }
    Outcome::judge(
        bad.is_empty(),
        if bad.is_empty() {
            format!("{lines} pg_hba.conf rules checked, none offends")
        } else {
            list_some(&bad)
        },
    )
}

fn path_glob_match(pattern: &str, path: &str) -> bool {
    let p: Vec<&str> = pattern.trim_end_matches('/').split('/').collect();
    let n: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    p.len() == n.len() && p.iter().zip(&n).all(|(a, b)| glob_match(a, b))
}

fn logrotate_probe(cx: &AuditCx, paths: &[String], from_profile: Option<&str>) -> Outcome {
    let mut want: Vec<String> = paths
        .iter()
        .map(|p| format!("/{}", p.trim_start_matches('/')))
        .collect();
    if let Some(k) = from_profile {
        want.extend(declared_paths(cx, k).into_iter().map(|p| format!("/{p}")));
    }
    if want.is_empty() {
        return Outcome::na(format!(
            "the profile declares no {}",
            from_profile.unwrap_or("log paths")
        ));
    }
    let pats = match cx.logrotate() {
        Ok(p) => p,
        Err(e) => return Outcome::error(e),
    };
    let mut outs = Vec::new();
    for w in want {
        let hit = pats.iter().find(|p| {
            path_glob_match(p, &w)
                || p.rsplit_once('/')
                    .is_some_and(|(dir, _)| path_glob_match(dir, &w))
        });
        outs.push(match hit {
            Some(p) => Outcome::pass(format!("{w} covered by logrotate rule {p}")),
            None => Outcome::fail(format!(
                "{w}: no logrotate rule (etc/logrotate.conf, etc/logrotate.d/*)"
            )),
        });
    }
    combine_all(outs)
}

fn unit_setting_probe(
    cx: &AuditCx,
    unit: &str,
    section: &str,
    key: &str,
    expect: &Expect,
) -> Outcome {
    let mut files = Vec::new();
    match cx.unit_file(unit) {
        Some((f, false)) => files.push(f),
        Some((f, true)) => return Outcome::fail(format!("{unit} is masked ({f})")),
        None => {}
    }
    let mut drop: BTreeMap<String, String> = BTreeMap::new();
    for d in [
        "etc/systemd/system",
        "run/systemd/system",
        "usr/lib/systemd/system",
        "lib/systemd/system",
    ] {
        for f in cx.glob(&format!("{d}/{unit}.d/*.conf")) {
            let n = f.rsplit('/').next().unwrap_or("").to_string();
            drop.entry(n).or_insert(f);
        }
    }
    files.extend(drop.into_values());
    if files.is_empty() {
        return Outcome::missing(expect.missing, format!("no unit file for {unit}"));
    }
    let mut found: Option<Setting> = None;
    for f in &files {
        let Ok(Some(t)) = cx.read(f) else { continue };
        for (sec, k, v, line) in parse_ini(&t) {
            if sec == section && k == key {
                found = if v.is_empty() {
                    None
                } else {
                    Some(Setting {
                        value: v,
                        at: format!("{f}:{line}"),
                    })
                };
            }
        }
    }
    let src = found.as_ref().map_or(files.join(", "), |s| s.at.clone());
    judge(
        expect,
        &format!("{unit} {key}"),
        found.as_ref().map(|s| s.value.as_str()),
        &src,
    )
}

fn apparmor_probe(cx: &AuditCx, prop: AppArmorProperty) -> Outcome {
    let Some(sys) = &cx.sys_dir else {
        return Outcome::not_evaluated(
            "AppArmor state needs the running system (--root is not /): not evaluated",
        );
    };
    match prop {
        AppArmorProperty::Enabled => {
            let p = sys.join("module/apparmor/parameters/enabled");
            match std::fs::read_to_string(&p) {
                Ok(v) => Outcome::judge(v.trim() == "Y", format!("{} ({})", v.trim(), p.display())),
                Err(_) => Outcome::fail(format!(
                    "AppArmor is not in the kernel ({} missing)",
                    p.display()
                )),
            }
        }
        AppArmorProperty::ProfilesLoaded | AppArmorProperty::ProfilesEnforced => {
            let p = sys.join("kernel/security/apparmor/profiles");
            let text = match std::fs::read_to_string(&p) {
                Ok(t) => t,
                Err(e) => return Outcome::error(format!("reading {}: {e}", p.display())),
            };
            let mut modes: BTreeMap<String, u32> = BTreeMap::new();
            for l in text.lines() {
                if let Some(m) = l
                    .rsplit_once('(')
                    .map(|(_, m)| m.trim_end_matches(')').to_string())
                {
                    *modes.entry(m).or_default() += 1;
                }
            }
            let total: u32 = modes.values().sum();
            let ok = match prop {
                AppArmorProperty::ProfilesLoaded => {
                    total > 0 && modes.keys().all(|m| m == "enforce" || m == "complain")
                }
                _ => total > 0 && modes.keys().all(|m| m == "enforce"),
            };
            Outcome::judge(
                ok,
                format!(
                    "{total} profiles: {} ({})",
                    modes
                        .iter()
                        .map(|(m, n)| format!("{n} {m}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    p.display()
                ),
            )
        }
    }
}
