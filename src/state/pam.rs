//! The PAM stack as PAM evaluates it: `@include`, `include` and `substack` followed, the
//! control field kept (a module whose failure is ignored does not enforce anything), and a
//! module's effective options: its conf file and drop-ins, overridden by the arguments on the
//! PAM line (`password requisite pam_pwquality.so minlen=8` means minlen 8 whatever
//! `pwquality.conf` says). Every value carries its source (file:line).

use std::collections::BTreeMap;

use crate::root::{RelPath, Root};

/// One module line of a PAM stack, includes resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PamLine {
    /// `/etc/pam.d/common-auth:3`.
    pub at: String,
    /// `auth`, `account`, `password`, `session` (a leading `-` removed).
    pub pam_type: String,
    /// The control field: `required`, `requisite`, `sufficient`, `optional` or `[...]`.
    pub control: String,
    /// Module file name (`pam_unix.so`, directory removed).
    pub module: String,
    /// Module arguments.
    pub args: Vec<String>,
}

impl PamLine {
    /// True when a failure of this module can make the stack fail: `required`, `requisite`,
    /// or a `[...]` control whose failure actions are `bad`/`die`, or that jumps over the next
    /// line on success only (Debian's `[success=1 default=ignore]` in front of `pam_deny`).
    /// `optional`, `sufficient` and `[default=ignore]` without a success jump do not.
    pub fn enforcing(&self) -> bool {
        match self.control.as_str() {
            "required" | "requisite" => true,
            "optional" | "sufficient" => false,
            c if c.starts_with('[') => {
                let actions: BTreeMap<&str, &str> = c
                    .trim_matches(|x| x == '[' || x == ']')
                    .split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .collect();
                match actions.get("default").copied() {
                    Some("bad" | "die") | None => true,
                    Some("ignore") => actions
                        .get("success")
                        .is_some_and(|v| v.parse::<u32>().is_ok_and(|n| n >= 1)),
                    Some(_) => false,
                }
            }
            _ => false,
        }
    }

    /// The value of `name=value` on the line (last wins), or `Some("")` for a bare flag.
    pub fn arg(&self, name: &str) -> Option<String> {
        self.args
            .iter()
            .rev()
            .find_map(|a| match a.split_once('=') {
                Some((k, v)) if k == name => Some(v.to_string()),
                None if a == name => Some(String::new()),
                _ => None,
            })
    }
}

/// The lines of service `service` (`etc/pam.d/<service>`) with includes followed.
/// `Ok(None)` when the service file does not exist.
///
/// # Errors
/// When a file cannot be read.
pub fn stack(root: &Root, service: &str) -> Result<Option<Vec<PamLine>>, String> {
    let mut out = Vec::new();
    if !read_service(root, service, 0, &mut out)? {
        return Ok(None);
    }
    Ok(Some(out))
}

fn read_service(
    root: &Root,
    service: &str,
    depth: usize,
    out: &mut Vec<PamLine>,
) -> Result<bool, String> {
    if depth > 8 {
        return Err(format!(
            "etc/pam.d/{service}: includes nested more than 8 deep"
        ));
    }
    let name = service.rsplit('/').next().unwrap_or(service);
    let path = format!("etc/pam.d/{name}");
    let rel = RelPath::new(&path).map_err(|e| format!("{path}: {e}"))?;
    let Some(text) = root.read_string(&rel).map_err(|e| e.to_string())? else {
        return Ok(false);
    };
    // Continuation lines (`\` at the end) are joined, as libpam does.
    let mut logical: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("");
        let (n, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        if let Some(head) = line.strip_suffix('\\') {
            acc.push_str(head);
            acc.push(' ');
            pending = Some((n, acc));
            continue;
        }
        acc.push_str(line);
        logical.push((n, acc));
    }
    logical.extend(pending);
    for (n, l) in logical {
        let l = l.trim();
        if l.is_empty() {
            continue;
        }
        if let Some(inc) = l.strip_prefix("@include") {
            read_service(root, inc.trim(), depth + 1, out)?;
            continue;
        }
        let ty = l.split_whitespace().next().unwrap_or("");
        let rest = l[ty.len()..].trim_start();
        let (control, rest) = if rest.starts_with('[') {
            match rest.split_once(']') {
                Some((c, r)) => (format!("{c}]"), r.trim_start()),
                None => (rest.to_string(), ""),
            }
        } else {
            let mut w = rest.splitn(2, char::is_whitespace);
            (
                w.next().unwrap_or("").to_string(),
                w.next().unwrap_or("").trim_start(),
            )
        };
        let mut w = rest.split_whitespace();
        let module = w.next().unwrap_or("").to_string();
        let pam_type = ty.trim_start_matches('-').to_string();
        if control == "include" || control == "substack" {
            // `include`/`substack` pull the named service's lines of this type.
            let mut sub = Vec::new();
            read_service(root, &module, depth + 1, &mut sub)?;
            out.extend(sub.into_iter().filter(|x| x.pam_type == pam_type));
            continue;
        }
        out.push(PamLine {
            at: format!("/{path}:{n}"),
            pam_type,
            control,
            module: module.rsplit('/').next().unwrap_or(&module).to_string(),
            args: w.map(str::to_string).collect(),
        });
    }
    Ok(true)
}

/// An effective module option and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionValue {
    /// The value (`""` for a flag such as `enforce_for_root`).
    pub value: String,
    /// `/etc/security/pwquality.conf:4` or `/etc/pam.d/common-password:25 (argument)`.
    pub source: String,
}

/// The conf files a module reads, in the order it reads them (later ones override): for
/// `pam_pwquality.so`, `pwquality.conf.d/*.conf` in ASCII order, then `pwquality.conf`
/// (pwquality.conf(5)); for `pam_faillock.so`, `faillock.conf` or the `conf=` argument.
pub fn conf_files(root: &Root, line: &PamLine) -> Vec<String> {
    match line.module.as_str() {
        "pam_pwquality.so" => {
            let mut v: Vec<String> = root
                .list_dir(&RelPath::lit("etc/security/pwquality.conf.d"))
                .unwrap_or_default()
                .into_iter()
                .filter(|n| n.ends_with(".conf") && !n.starts_with('.'))
                .map(|n| format!("etc/security/pwquality.conf.d/{n}"))
                .collect();
            v.sort();
            v.push("etc/security/pwquality.conf".into());
            v
        }
        "pam_faillock.so" => vec![
            line.arg("conf")
                .map(|c| c.trim_start_matches('/').to_string())
                .unwrap_or_else(|| "etc/security/faillock.conf".into()),
        ],
        "pam_pwhistory.so" => vec!["etc/security/pwhistory.conf".into()],
        _ => Vec::new(),
    }
}

/// The module's effective options for `line`: its conf files in read order, then the line's
/// arguments (which PAM modules apply after their conf file).
///
/// # Errors
/// When a conf file cannot be read.
pub fn effective_options(
    root: &Root,
    line: &PamLine,
) -> Result<BTreeMap<String, OptionValue>, String> {
    let mut m = BTreeMap::new();
    for f in conf_files(root, line) {
        let Ok(rel) = RelPath::new(&f) else { continue };
        let Some(text) = root.read_string(&rel).map_err(|e| e.to_string())? else {
            continue;
        };
        for (i, l) in text.lines().enumerate() {
            let l = l.split('#').next().unwrap_or("").trim();
            if l.is_empty() {
                continue;
            }
            let (k, v) = match l.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => (l, ""),
            };
            m.insert(
                k.to_string(),
                OptionValue {
                    value: v.to_string(),
                    source: format!("/{f}:{}", i + 1),
                },
            );
        }
    }
    for a in &line.args {
        let (k, v) = a.split_once('=').unwrap_or((a.as_str(), ""));
        m.insert(
            k.to_string(),
            OptionValue {
                value: v.to_string(),
                source: format!("{} (argument)", line.at),
            },
        );
    }
    Ok(m)
}

/// Members of group `name` in the root's `etc/group` plus the users whose primary group it
/// is (`etc/passwd`). `Ok(None)` when the group does not exist.
///
/// # Errors
/// When the databases cannot be read.
pub fn group_members(root: &Root, name: &str) -> Result<Option<Vec<String>>, String> {
    let read = |p: &'static str| {
        root.read_string(&RelPath::lit(p))
            .map_err(|e| e.to_string())
            .map(Option::unwrap_or_default)
    };
    let group = read("etc/group")?;
    let Some((gid, listed)) = group.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == name).then(|| (f[2].to_string(), f[3].to_string()))
    }) else {
        return Ok(None);
    };
    let mut members: Vec<String> = listed
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    for l in read("etc/passwd")?.lines() {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 4 && f[3] == gid && !members.iter().any(|m| m == f[0]) {
            members.push(format!("{} (primary group)", f[0]));
        }
    }
    Ok(Some(members))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(control: &str) -> PamLine {
        PamLine {
            at: "x:1".into(),
            pam_type: "password".into(),
            control: control.into(),
            module: "pam_pwquality.so".into(),
            args: vec!["minlen=8".into(), "enforce_for_root".into()],
        }
    }

    #[test]
    fn control_decides_enforcement() {
        assert!(line("requisite").enforcing());
        assert!(line("[success=1 default=ignore]").enforcing());
        assert!(line("[default=die]").enforcing());
        assert!(!line("optional").enforcing());
        assert!(!line("sufficient").enforcing());
        assert!(!line("[default=ignore]").enforcing());
        assert_eq!(line("x").arg("minlen").as_deref(), Some("8"));
        assert_eq!(line("x").arg("enforce_for_root").as_deref(), Some(""));
        assert_eq!(line("x").arg("difok"), None);
    }

    #[test]
    fn includes_substacks_and_line_args_over_conf() {
        let d = tempfile::tempdir().unwrap();
        let w = |p: &str, t: &str| {
            let f = d.path().join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, t).unwrap();
        };
        w(
            "etc/pam.d/passwd",
            "@include common-password\nauth substack common-auth\n",
        );
        w(
            "etc/pam.d/common-password",
            "password optional pam_pwquality.so \\\n  minlen=8\npassword [success=1 default=ignore] pam_unix.so\n",
        );
        w(
            "etc/pam.d/common-auth",
            "auth required pam_faillock.so preauth\naccount required pam_x.so\n",
        );
        w("etc/security/pwquality.conf", "minlen = 14\ndifok = 3\n");
        w(
            "etc/security/pwquality.conf.d/50.conf",
            "difok = 5\nmaxrepeat = 2\n",
        );
        let root = Root::new(d.path()).unwrap();
        let s = stack(&root, "passwd").unwrap().unwrap();
        let names: Vec<&str> = s.iter().map(|l| l.module.as_str()).collect();
        assert_eq!(
            names,
            ["pam_pwquality.so", "pam_unix.so", "pam_faillock.so"]
        );
        assert!(!s[0].enforcing());
        let o = effective_options(&root, &s[0]).unwrap();
        assert_eq!(o["minlen"].value, "8", "the line argument wins");
        assert!(o["minlen"].source.ends_with("common-password:1 (argument)"));
        assert_eq!(
            o["difok"].value, "3",
            "pwquality.conf is read after its drop-ins"
        );
        assert_eq!(o["maxrepeat"].value, "2");
        assert!(stack(&root, "nothere").unwrap().is_none());
    }
}
