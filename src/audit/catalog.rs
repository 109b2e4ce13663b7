//! The check catalog: loading and validating `checks/*.toml` (embedded at build time by
//! `build.rs`, or read from a directory), with every rule the TOML schema cannot express
//! (unique ids, id syntax, compilable regexes, octal modes, a reason for every check that
//! does not apply in containers).

use std::collections::BTreeSet;

use regex::Regex;

use super::check::{CatalogFile, Check, Expect, Probe, Scope};

include!(concat!(env!("OUT_DIR"), "/catalog.rs"));

/// A catalog error: which file, where, what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("checks/{file}: {message}")]
pub struct CatalogError {
    /// Catalog file name (`50-ssh.toml`).
    pub file: String,
    /// What is wrong (TOML errors carry line and column).
    pub message: String,
}

/// The loaded catalog, in file then table order.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// All checks.
    pub checks: Vec<Check>,
}

impl Catalog {
    /// Loads the catalog embedded in the binary.
    ///
    /// # Errors
    /// When a file does not parse or a check is invalid.
    pub fn embedded() -> Result<Catalog, CatalogError> {
        let mut texts = Vec::with_capacity(CATALOG_FILES.len());
        for (n, gz) in CATALOG_FILES {
            let mut t = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(*gz), &mut t).map_err(
                |e| CatalogError {
                    file: n.to_string(),
                    message: format!("decompressing the embedded catalog: {e}"),
                },
            )?;
            texts.push((n.to_string(), t));
        }
        Catalog::from_texts(texts.iter().map(|(n, t)| (n.clone(), t.as_str())))
    }

    /// Loads catalog files given as (file name, text).
    ///
    /// # Errors
    /// When a file does not parse or a check is invalid.
    pub fn from_texts<'a>(
        files: impl IntoIterator<Item = (String, &'a str)>,
    ) -> Result<Catalog, CatalogError> {
        let mut checks = Vec::new();
        let mut ids = BTreeSet::new();
        for (name, text) in files {
            let f: CatalogFile = toml::from_str(text).map_err(|e| CatalogError {
                file: name.clone(),
                message: e.to_string(),
            })?;
            for c in f.check {
                validate(&c).map_err(|m| CatalogError {
                    file: name.clone(),
                    message: format!("check `{}`: {m}", c.id),
                })?;
                if !ids.insert(c.id.clone()) {
                    return Err(CatalogError {
                        file: name,
                        message: format!("duplicate check id `{}`", c.id),
                    });
                }
                checks.push(c);
            }
        }
        Ok(Catalog { checks })
    }

    /// The check with this id.
    pub fn get(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }
}

/// Validates one check (every rule the TOML schema cannot express).
///
/// # Errors
/// What is wrong, in words.
pub fn validate(c: &Check) -> Result<(), String> {
    let id_ok = c.id.split('.').count() >= 2
        && c.id.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        });
    if !id_ok {
        return Err("id must be `area.name` of lower-case letters, digits and `-`".into());
    }
    if c.title.trim().is_empty() || c.rationale.trim().is_empty() {
        return Err("title and rationale must not be empty".into());
    }
    if let Some(cis) = &c.cis
        && !cis
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|ch| ch.is_ascii_digit()))
    {
        return Err(format!("cis `{cis}` must be dotted numbers like `5.1.20`"));
    }
    if !(1..=2).contains(&c.level) {
        return Err("level must be 1 or 2".into());
    }
    if c.scope.is_empty() {
        return Err("scope must name `vm` and/or `container`".into());
    }
    if c.manual.is_some() && c.site_specific.is_some() {
        return Err("a check is `manual` or `site_specific`, not both".into());
    }
    if [&c.manual, &c.site_specific]
        .iter()
        .any(|r| r.as_ref().is_some_and(|r| r.trim().is_empty()))
    {
        return Err("`manual` / `site_specific` need the reason as their value".into());
    }
    if c.fix.key.is_none() && c.fix.manual.is_none() {
        return Err("fix needs `key` (profile key) or `manual`".into());
    }
    if !c.scope.contains(&Scope::Container) && c.container_reason().is_none() {
        return Err(
            "scope excludes containers: give `na_reason` (why it does not apply there)".into(),
        );
    }
    validate_probe(&c.probe)
}

fn validate_expect(e: &Expect) -> Result<(), String> {
    for r in [&e.matches, &e.not_matches].into_iter().flatten() {
        Regex::new(r).map_err(|err| format!("bad regular expression `{r}`: {err}"))?;
    }
    Ok(())
}

fn octal(s: &Option<String>) -> Result<(), String> {
    if let Some(m) = s {
        u32::from_str_radix(m, 8).map_err(|_| format!("mode `{m}` is not octal"))?;
    }
    Ok(())
}

fn rel(p: &str) -> Result<(), String> {
    if p.starts_with('/') || p.split('/').any(|c| c == "..") {
        return Err(format!(
            "path `{p}` must be relative to the root (no leading `/`, no `..`)"
        ));
    }
    Ok(())
}

fn validate_probe(p: &Probe) -> Result<(), String> {
    match p {
        Probe::File {
            path,
            mode_max,
            mode_min,
            from_profile,
            ..
        } => {
            if path.is_empty() && from_profile.is_none() {
                return Err("file probe needs `path` or `from_profile`".into());
            }
            if !path.is_empty() {
                rel(path)?;
            }
            octal(mode_max)?;
            octal(mode_min)
        }
        Probe::Line { path, pattern, .. } => {
            path.iter().try_for_each(|p| rel(p))?;
            Regex::new(pattern).map_err(|e| format!("bad pattern `{pattern}`: {e}"))?;
            Ok(())
        }
        Probe::Conf { path, expect, .. } => {
            path.iter().try_for_each(|p| rel(p))?;
            validate_expect(expect)
        }
        Probe::Sshd { expect, .. }
        | Probe::Sysctl { expect, .. }
        | Probe::LoginDefs { expect, .. }
        | Probe::Postgres { expect, .. }
        | Probe::AptConf { expect, .. }
        | Probe::UnitSetting { expect, .. }
        | Probe::PamOption { expect, .. }
        | Probe::ShadowAgeing { expect, .. } => validate_expect(expect),
        Probe::Pam { expect, arg, .. } => {
            if expect.is_some() != arg.is_some() {
                return Err("pam probe: `arg` and `expect` go together".into());
            }
            expect.as_ref().map_or(Ok(()), validate_expect)
        }
        Probe::Fail2ban {
            setting, expect, ..
        } => {
            if expect.is_some() != setting.is_some() {
                return Err("fail2ban probe: `setting` and `expect` go together".into());
            }
            expect.as_ref().map_or(Ok(()), validate_expect)
        }
        Probe::Service {
            enabled, active, ..
        } => {
            if enabled.is_none() && active.is_none() {
                return Err("service probe needs `enabled` and/or `active`".into());
            }
            Ok(())
        }
        Probe::Mount {
            path,
            separate,
            options,
        } => {
            if !path.starts_with('/') {
                return Err("mount path is the absolute mount point (`/tmp`)".into());
            }
            if !separate && options.is_empty() {
                return Err("mount probe needs `separate = true` and/or `options`".into());
            }
            Ok(())
        }
        Probe::Logrotate {
            paths,
            from_profile,
        } => {
            if paths.is_empty() && from_profile.is_none() {
                return Err("logrotate probe needs `paths` or `from_profile`".into());
            }
            Ok(())
        }
        Probe::All { probes } | Probe::Any { probes } => {
            if probes.is_empty() {
                return Err("all/any need at least one probe".into());
            }
            probes.iter().try_for_each(validate_probe)
        }
        Probe::Package { .. }
        | Probe::KernelModule { .. }
        | Probe::Accounts { .. }
        | Probe::WorldWritable { .. }
        | Probe::Unowned { .. }
        | Probe::Firewall { .. }
        | Probe::PgHba { .. }
        | Probe::Apparmor { .. }
        | Probe::DockerDaemon { .. }
        | Probe::OpenPorts { .. } => Ok(()),
        Probe::Command(_)
        | Probe::Port(_)
        | Probe::Http(_)
        | Probe::FileAge(_)
        | Probe::TlsCert(_) => super::custom::validate(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
[[check]]
id = "ssh.permit-root-login"
title = "SSH root login is disabled"
rationale = "Attackers guess root first."
cis = "5.1.20"
severity = "high"
fix.key = "ssh.permit_root_login"
probe = { kind = "sshd", key = "permitrootlogin", expect = { equals = "no" } }
"#;

    #[test]
    fn embedded_catalog_loads() {
        let c = Catalog::embedded().unwrap_or_else(|e| panic!("{e}"));
        assert!(!CATALOG_FILES.is_empty());
        assert!(!c.checks.is_empty());
    }

    /// A dotted profile key (`users[].sudo`) resolved in the profile's JSON Schema.
    fn schema_has(schema: &serde_json::Value, key: &str) -> bool {
        let defs = &schema["$defs"];
        let resolve = |v: &serde_json::Value| -> serde_json::Value {
            let mut v = v.clone();
            for _ in 0..4 {
                if let Some(r) = v.get("$ref").and_then(|r| r.as_str()) {
                    v = defs[r.rsplit('/').next().unwrap_or(r)].clone();
                } else if let Some(a) = v.get("anyOf").or(v.get("oneOf")).and_then(|a| a.as_array())
                {
                    match a.iter().find(|x| x["type"] != "null") {
                        Some(x) => v = x.clone(),
                        None => break,
                    }
                } else {
                    break;
                }
            }
            v
        };
        let mut cur = schema.clone();
        for part in key.split('.') {
            let (name, each) = part.strip_suffix("[]").map_or((part, false), |n| (n, true));
            cur = resolve(&cur);
            let Some(next) = cur["properties"].get(name) else {
                return false;
            };
            cur = resolve(next);
            if each {
                cur = resolve(&cur["items"]);
            }
        }
        true
    }

    #[test]
    fn every_fix_key_names_a_profile_key() {
        let schema = crate::profile::schema();
        let c = Catalog::embedded().unwrap_or_else(|e| panic!("{e}"));
        let bad: Vec<String> = c
            .checks
            .iter()
            .filter_map(|k| k.fix.key.as_ref().map(|f| (k, f)))
            .filter(|(_, f)| !schema_has(&schema, f))
            .map(|(k, f)| format!("{}: fix.key `{f}`", k.id))
            .collect();
        assert!(
            bad.is_empty(),
            "fix keys that are not profile keys:\n{}",
            bad.join("\n")
        );
        assert!(schema_has(&schema, "users[].sudo") && !schema_has(&schema, "postgres.hba"));
    }

    #[test]
    fn minimal_check_loads() {
        let c = Catalog::from_texts([("t.toml".to_string(), OK)]).unwrap();
        assert_eq!(c.checks[0].section(), "5");
        assert_eq!(c.checks[0].level, 1);
    }

    #[test]
    fn typos_are_errors() {
        for (typo, what) in [
            ("severity = \"high\"", "severity = \"hihg\""),
            ("fix.key", "fix.kye"),
            ("expect = {", "expect = { eqals = \"no\" }, x = {"),
            ("kind = \"sshd\"", "kind = \"sshdd\""),
            ("key = \"permitrootlogin\"", "keyy = \"permitrootlogin\""),
            ("title", "titel"),
            ("kind = \"sshd\"", "kind = \"sshd\", bogus = 1"),
        ] {
            let t = OK.replacen(typo, what, 1);
            let e = Catalog::from_texts([("t.toml".to_string(), t.as_str())]);
            assert!(e.is_err(), "{what} should not load");
        }
    }

    #[test]
    fn semantic_errors() {
        let dup = format!("{OK}\n{OK}");
        let e = Catalog::from_texts([("t.toml".to_string(), dup.as_str())]).unwrap_err();
        assert!(e.message.contains("duplicate"), "{e}");
        let vm_only = OK.replace("severity", "scope = [\"vm\"]\nseverity");
        let e = Catalog::from_texts([("t.toml".to_string(), vm_only.as_str())]).unwrap_err();
        assert!(e.message.contains("na_reason"), "{e}");
        let bad_re = OK.replace("equals = \"no\"", "matches = \"(\"");
        assert!(Catalog::from_texts([("t.toml".to_string(), bad_re.as_str())]).is_err());
        let bad_id = OK.replace("ssh.permit-root-login", "SSH_root");
        assert!(Catalog::from_texts([("t.toml".to_string(), bad_id.as_str())]).is_err());
    }
}
