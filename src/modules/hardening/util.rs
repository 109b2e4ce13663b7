//! Helpers shared by the OS hardening modules: the container check, in-place edits of distro
//! configuration files that keep every other line byte-identical, and systemd unit
//! enablement planned as symlinks (so it shows in the plan and rolls back like any file).

use crate::engine::{Context, Level, Plan, Planner, Staged, Validator};
use crate::error::{Error, Result};
use crate::exec::{Cmd, ExecError};
use crate::root::{Entry, Perms, RelPath};

/// When the target is a container, adds the Info note "`what`: not applicable in a container
/// (`kind`): `reason`" and returns true (the caller then plans nothing for it).
pub fn not_applicable_in_container(
    cx: &Context,
    p: &mut Planner,
    what: &str,
    reason: &str,
) -> bool {
    match &cx.facts.container {
        Some(kind) => {
            p.note(
                Level::Info,
                format!("{what}: not applicable in a container ({kind}): {reason}"),
            );
            true
        }
        None => false,
    }
}

/// How a distro configuration file spells a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// `KEY VALUE` (`etc/login.defs`); the whitespace after the key is kept.
    Spaced,
    /// `KEY=VALUE` (`etc/default/useradd`, shell fragments).
    Assign,
    /// `key = value` (`etc/security/faillock.conf`); flags are bare `key` lines.
    SpacedEq,
}

/// What a setting should look like after the edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// `key` with this value.
    Value(String),
    /// A bare flag line (`even_deny_root`), [`Syntax::SpacedEq`] only.
    Flag,
    /// No active line (existing ones are commented out).
    Absent,
}

/// The key of an active (uncommented) line.
fn active_key(line: &str) -> Option<&str> {
    let t = line.trim_start();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let end = t
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(t.len());
    Some(&t[..end])
}

/// The key of a commented-out example line (`# deny = 3`, `#INACTIVE=-1`).
fn commented_key(line: &str) -> Option<&str> {
    let t = line.trim_start().strip_prefix('#')?;
    let t = t.trim_start_matches('#').trim_start();
    let end = t
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(t.len());
    let k = &t[..end];
    (!k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    .then_some(k)
}

/// The separator between key and value of `line` (after `key`), without the value.
fn separator<'a>(line: &'a str, key: &str) -> &'a str {
    let t = line.trim_start().trim_start_matches('#').trim_start();
    let rest = t.get(key.len()..).unwrap_or("");
    let end = rest
        .find(|c: char| !(c.is_whitespace() && c != '\n') && c != '=')
        .unwrap_or(rest.len());
    &rest[..end]
}

fn render(syntax: Syntax, indent: &str, key: &str, sep: Option<&str>, want: &Want) -> String {
    match want {
        Want::Flag => format!("{indent}{key}"),
        Want::Absent => String::new(),
        Want::Value(v) => {
            let sep = match (syntax, sep) {
                (Syntax::Assign, _) => "=",
                (Syntax::Spaced, Some(s)) if !s.is_empty() && !s.contains('=') => s,
                (Syntax::Spaced, _) => " ",
                (Syntax::SpacedEq, Some(s)) if s.contains('=') => s,
                (Syntax::SpacedEq, _) => " = ",
            };
            format!("{indent}{key}{sep}{v}")
        }
    }
}

/// Applies `settings` to `text`: every active line of a key is rewritten to the wanted value
/// (keeping indentation and the separator's spacing); a missing key is added after its
/// commented-out example line, or at the end. Every other line stays byte-identical.
pub fn set_settings(text: &str, syntax: Syntax, settings: &[(&str, Want)]) -> String {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    for (key, want) in settings {
        let mut found = false;
        for line in lines.iter_mut() {
            if active_key(line) != Some(key) {
                continue;
            }
            found = true;
            let nl = if line.ends_with('\n') { "\n" } else { "" };
            let body = line.trim_end_matches('\n');
            let indent = &body[..body.len() - body.trim_start().len()];
            let new = match want {
                Want::Absent => format!("# {}{nl}", body.trim_start()),
                _ => {
                    let sep = separator(body, key);
                    format!("{}{nl}", render(syntax, indent, key, Some(sep), want))
                }
            };
            if *line != new {
                *line = new;
            }
        }
        if found || *want == Want::Absent {
            continue;
        }
        let example = lines
            .iter()
            .rposition(|l| active_key(l).is_none() && commented_key(l) == Some(key));
        match example {
            Some(i) => {
                let sep = separator(lines[i].trim_end_matches('\n'), key).to_string();
                let new = format!("{}\n", render(syntax, "", key, Some(&sep), want));
                if !lines[i].ends_with('\n') {
                    lines[i].push('\n');
                }
                lines.insert(i + 1, new);
            }
            None => {
                if let Some(last) = lines.last_mut()
                    && !last.ends_with('\n')
                {
                    last.push('\n');
                }
                lines.push(format!("{}\n", render(syntax, "", key, None, want)));
            }
        }
    }
    lines.concat()
}

/// `text` with the marked block `name` (`# BEGIN bollwerk NAME` … `# END bollwerk NAME`)
/// holding `body`: an existing block is replaced in place, a missing one is appended. Every
/// line outside the block stays byte-identical.
pub fn with_block(text: &str, name: &str, body: &str) -> String {
    let begin =
        format!("# BEGIN bollwerk {name} (managed by bollwerk — local edits are overwritten)");
    let end = format!("# END bollwerk {name}");
    let mut block = format!("{begin}\n{body}");
    if !block.ends_with('\n') {
        block.push('\n');
    }
    block.push_str(&end);
    block.push('\n');
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let is = |l: &str, m: &str| l.trim_end() == m;
    let b = lines.iter().position(|l| is(l, &begin));
    let e = b.and_then(|b| lines[b..].iter().position(|l| is(l, &end)).map(|e| b + e));
    match (b, e) {
        (Some(b), Some(e)) => {
            let mut out: String = lines[..b].concat();
            out.push_str(&block);
            out.push_str(&lines[e + 1..].concat());
            out
        }
        _ => {
            let mut out = text.to_string();
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&block);
            out
        }
    }
}

/// The value of the last active line of `key` (`None` when unset; `Some("")` for a flag).
pub fn get_setting(text: &str, key: &str) -> Option<String> {
    text.lines().rfind(|l| active_key(l) == Some(key)).map(|l| {
        let t = l.trim_start();
        let rest = &t[key.len()..];
        rest.trim_start_matches(|c: char| c.is_whitespace() || c == '=')
            .trim()
            .to_string()
    })
}

/// Where unit files live, in systemd's order of precedence.
const UNIT_DIRS: &[&str] = &[
    "etc/systemd/system",
    "lib/systemd/system",
    "usr/lib/systemd/system",
];

/// A unit file found in the root.
#[derive(Debug, Clone)]
pub struct UnitFile {
    /// Absolute path inside the root (`/lib/systemd/system/x.service`): the symlink target.
    pub path: String,
    /// Content.
    pub content: String,
}

/// Finds a unit file (planned content counts: a unit this run writes is found).
///
/// # Errors
/// When a file cannot be read.
pub fn find_unit(cx: &Context, plan: &Plan, name: &str) -> Result<Option<UnitFile>> {
    for d in UNIT_DIRS {
        let rel = RelPath::new(&format!("{d}/{name}")).map_err(Error::Runtime)?;
        if let Entry::Symlink { .. } = cx.root.entry(&rel)? {
            // An alias or a mask in etc: not the unit's own file.
            if *d == "etc/systemd/system" {
                continue;
            }
        }
        if let Some(c) = cx.after(plan, &rel)? {
            return Ok(Some(UnitFile {
                path: rel.absolute(),
                content: String::from_utf8_lossy(&c).into_owned(),
            }));
        }
    }
    Ok(None)
}

/// True when `etc/systemd/system/<name>` is a symlink to `/dev/null`.
///
/// # Errors
/// When the path cannot be inspected.
pub fn is_masked(cx: &Context, name: &str) -> Result<bool> {
    let rel = RelPath::new(&format!("etc/systemd/system/{name}")).map_err(Error::Runtime)?;
    Ok(matches!(cx.root.entry(&rel)?, Entry::Symlink { target, .. } if target == "/dev/null"))
}

/// The `[Install]` section's `WantedBy=`, `RequiredBy=` and `Alias=` values.
pub fn install_section(content: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut in_install = false;
    let mut links = Vec::new();
    let mut aliases = Vec::new();
    for line in content.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_install = t == "[Install]";
            continue;
        }
        if !in_install {
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            continue;
        };
        for w in v.split_whitespace() {
            match k.trim() {
                "WantedBy" => links.push((w.to_string(), "wants".to_string())),
                "RequiredBy" => links.push((w.to_string(), "requires".to_string())),
                "Alias" => aliases.push(w.to_string()),
                _ => {}
            }
        }
    }
    (links, aliases)
}

/// The symlinks `systemctl enable <name>` would create: (link path, target).
///
/// # Errors
/// When the unit cannot be read.
pub fn enable_links(cx: &Context, plan: &Plan, name: &str) -> Result<Vec<(RelPath, String)>> {
    let Some(unit) = find_unit(cx, plan, name)? else {
        return Ok(Vec::new());
    };
    let (links, aliases) = install_section(&unit.content);
    let mut out = Vec::new();
    for (target, kind) in links {
        out.push((
            RelPath::new(&format!("etc/systemd/system/{target}.{kind}/{name}"))
                .map_err(Error::Runtime)?,
            unit.path.clone(),
        ));
    }
    for a in aliases {
        out.push((
            RelPath::new(&format!("etc/systemd/system/{a}")).map_err(Error::Runtime)?,
            unit.path.clone(),
        ));
    }
    Ok(out)
}

/// True when the unit is enabled: one of its `[Install]` links exists in `etc/systemd/system`
/// (and it is not masked).
///
/// # Errors
/// When the unit cannot be read.
pub fn is_enabled(cx: &Context, plan: &Plan, name: &str) -> Result<bool> {
    if is_masked(cx, name)? {
        return Ok(false);
    }
    for d in cx.root.list_dir(&RelPath::lit("etc/systemd/system"))? {
        if !(d.ends_with(".wants") || d.ends_with(".requires")) {
            continue;
        }
        let rel =
            RelPath::new(&format!("etc/systemd/system/{d}/{name}")).map_err(Error::Runtime)?;
        if cx.root.entry(&rel)?.exists() && !plan.removes(&rel) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Plans `systemctl enable <name>` as symlinks. Returns false (with a warning) when the unit
/// is not installed or masked.
///
/// # Errors
/// When the state cannot be read.
pub fn plan_enable(cx: &Context, p: &mut Planner, name: &str) -> Result<bool> {
    if is_masked(cx, name)? {
        p.note(
            Level::Warning,
            format!("{name} is masked (etc/systemd/system/{name} → /dev/null): not enabling it; unmask it first if it is wanted"),
        );
        return Ok(false);
    }
    let links = enable_links(cx, p.plan(), name)?;
    if links.is_empty() {
        if find_unit(cx, p.plan(), name)?.is_none() {
            p.note(
                Level::Warning,
                format!("{name} is not installed in the target: cannot enable it"),
            );
        }
        return Ok(false);
    }
    for (link, target) in links {
        if let Some(parent) = link.parent() {
            p.dirs(&cx.root, &parent, Perms::root(0o755))?;
        }
        p.symlink(&cx.root, &link, &target, format!("enable {name} ({link})"))?;
    }
    Ok(true)
}

/// Plans `systemctl disable <name>`: removes its links in `etc/systemd/system/*.{wants,requires}`
/// and its aliases.
///
/// # Errors
/// When the state cannot be read.
pub fn plan_disable(cx: &Context, p: &mut Planner, name: &str) -> Result<bool> {
    let mut any = false;
    for d in cx.root.list_dir(&RelPath::lit("etc/systemd/system"))? {
        if !(d.ends_with(".wants") || d.ends_with(".requires")) {
            continue;
        }
        let rel =
            RelPath::new(&format!("etc/systemd/system/{d}/{name}")).map_err(Error::Runtime)?;
        any |= p.remove(&cx.root, &rel, format!("disable {name} ({rel})"))?;
    }
    if let Some(unit) = find_unit(cx, p.plan(), name)? {
        for alias in install_section(&unit.content).1 {
            let rel =
                RelPath::new(&format!("etc/systemd/system/{alias}")).map_err(Error::Runtime)?;
            if let Entry::Symlink { target, .. } = cx.root.entry(&rel)?
                && target.ends_with(&format!("/{name}"))
            {
                any |= p.remove(&cx.root, &rel, format!("disable {name} (alias {rel})"))?;
            }
        }
    }
    Ok(any)
}

/// `systemd-analyze verify` on candidate unit files, copied under their real names (a unit's
/// name is part of its meaning). Only messages about these units count: verify also loads
/// their dependencies, which may not be complete in an image. `requires` names a program the
/// units run: when it is missing (installed later in the same run) validation is deferred.
#[derive(Debug)]
pub struct VerifyUnits {
    /// Unit file paths (`etc/systemd/system/x.service`).
    pub units: Vec<&'static str>,
    /// A program the units execute.
    pub requires: Option<&'static str>,
}

impl Validator for VerifyUnits {
    fn describe(&self) -> String {
        "systemd-analyze verify".into()
    }

    fn validate(&self, cx: &Context, staged: &Staged) -> Result<()> {
        if let Some(prog) = self.requires
            && !cx.runner.available(&cx.root, &Cmd::in_root(prog, &[]))
        {
            return Err(Error::Exec(ExecError::NotFound {
                program: prog.to_string(),
                place: "the target root".into(),
            }));
        }
        let dir_host = staged.dir_host.join("verify-units");
        std::fs::create_dir_all(&dir_host).map_err(|e| Error::io("staging", &dir_host, e))?;
        let mut args = vec!["verify".to_string(), "--man=no".to_string()];
        let mut names = Vec::new();
        for u in &self.units {
            let rel = RelPath::new(u).map_err(Error::Runtime)?;
            let Some(cand) = staged.files.get(&rel) else {
                continue;
            };
            let name = rel.file_name().to_string();
            let to = dir_host.join(&name);
            std::fs::copy(staged.host_path(cand), &to).map_err(|e| Error::io("staging", &to, e))?;
            args.push(format!("{}/verify-units/{name}", staged.dir_in_root));
            names.push(name);
        }
        if names.is_empty() {
            return Ok(());
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cx
            .runner
            .run(&cx.root, &Cmd::in_root("/usr/bin/systemd-analyze", &argv))?;
        let ours: Vec<&str> = out
            .stderr
            .lines()
            .chain(out.stdout.lines())
            .filter(|l| names.iter().any(|n| l.contains(n.as_str())))
            .collect();
        if out.success() || ours.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation {
                path: self.units.join(", "),
                validator: self.describe(),
                output: ours.join("\n"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_block_is_appended_then_replaced_in_place() {
        let t = "# distro\n[ -z \"$PS1\" ] && return";
        let one = with_block(t, "accounts", "umask 027\n");
        assert!(one.starts_with("# distro\n[ -z \"$PS1\" ] && return\n# BEGIN bollwerk accounts"));
        assert!(one.ends_with("umask 027\n# END bollwerk accounts\n"));
        assert_eq!(
            with_block(&one, "accounts", "umask 027\n"),
            one,
            "idempotent"
        );
        let two = with_block(&format!("{one}# after\n"), "accounts", "umask 077");
        assert!(two.contains("umask 077\n# END bollwerk accounts\n# after\n"));
        assert!(!two.contains("umask 027"));
        assert_eq!(two.matches("# BEGIN bollwerk accounts").count(), 1);
    }

    #[test]
    fn spaced_settings_keep_other_lines_and_spacing() {
        let t = "# comment\nPASS_MAX_DAYS\t99999\nPASS_MIN_DAYS\t0\n#ENCRYPT_METHOD DES\nUMASK\t\t022\n";
        let out = set_settings(
            t,
            Syntax::Spaced,
            &[
                ("PASS_MAX_DAYS", Want::Value("365".into())),
                ("UMASK", Want::Value("027".into())),
                ("ENCRYPT_METHOD", Want::Value("YESCRYPT".into())),
                ("PASS_WARN_AGE", Want::Value("7".into())),
            ],
        );
        assert_eq!(
            out,
            "# comment\nPASS_MAX_DAYS\t365\nPASS_MIN_DAYS\t0\n#ENCRYPT_METHOD DES\nENCRYPT_METHOD YESCRYPT\nUMASK\t\t027\nPASS_WARN_AGE 7\n"
        );
        assert_eq!(get_setting(&out, "UMASK").as_deref(), Some("027"));
        assert_eq!(
            set_settings(
                &out,
                Syntax::Spaced,
                &[("UMASK", Want::Value("027".into()))]
            ),
            out,
            "idempotent"
        );
    }

    #[test]
    fn assign_and_eq_settings() {
        let t = "SHELL=/bin/sh\n# INACTIVE=-1\n#\n";
        assert_eq!(
            set_settings(t, Syntax::Assign, &[("INACTIVE", Want::Value("30".into()))]),
            "SHELL=/bin/sh\n# INACTIVE=-1\nINACTIVE=30\n#\n"
        );
        let f = "# deny = 3\n#\n# even_deny_root\n# unlock_time = 600\nsilent\n";
        let out = set_settings(
            f,
            Syntax::SpacedEq,
            &[
                ("deny", Want::Value("5".into())),
                ("even_deny_root", Want::Flag),
                ("unlock_time", Want::Value("900".into())),
                ("silent", Want::Absent),
                ("fail_interval", Want::Value("900".into())),
            ],
        );
        assert_eq!(
            out,
            "# deny = 3\ndeny = 5\n#\n# even_deny_root\neven_deny_root\n# unlock_time = 600\nunlock_time = 900\n# silent\nfail_interval = 900\n"
        );
        assert_eq!(get_setting(&out, "deny").as_deref(), Some("5"));
        assert_eq!(get_setting(&out, "even_deny_root").as_deref(), Some(""));
        assert_eq!(get_setting(&out, "silent"), None);
    }

    #[test]
    fn install_sections() {
        let (l, a) = install_section(
            "[Unit]\nWantedBy=nope\n[Install]\nWantedBy=sysinit.target multi-user.target\nAlias=dbus-org.x.service\n",
        );
        assert_eq!(
            l,
            vec![
                ("sysinit.target".to_string(), "wants".to_string()),
                ("multi-user.target".to_string(), "wants".to_string())
            ]
        );
        assert_eq!(a, vec!["dbus-org.x.service".to_string()]);
    }
}
