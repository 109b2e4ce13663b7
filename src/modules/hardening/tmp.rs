//! `/tmp` and `/dev/shm` (`[tmp]`): `/tmp` as a tmpfs with `nodev,nosuid,noexec` through
//! bollwerk's own `etc/systemd/system/tmp.mount` (checked with `systemd-analyze verify`), or,
//! when `etc/fstab` already mounts `/tmp` (a separate partition), the options of that line;
//! the `/dev/shm` line of `etc/fstab` (CIS 1.1.2.1.x, 1.1.2.2.x). Editing `etc/fstab` keeps
//! every other line byte-identical.
//!
//! Nothing is mounted on a running system (a new `/tmp` would hide the files of running
//! programs): the mounts take effect at the next boot. With `noexec`, apt is told to extract
//! debconf scripts to `/var/tmp` (`etc/apt/apt.conf.d/50bollwerk-tmp-noexec`), or package
//! installs would fail. Not applicable in containers (the container manager mounts them).

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Level, Plan, Planner, Staged, Validator, Visibility};
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::modules::Module;
use crate::modules::users::MANAGED_HEADER;
use crate::profile::{Layer, ProfileError};
use crate::root::{Perms, RelPath};

use super::util::{
    VerifyUnits, is_enabled, not_applicable_in_container, plan_disable, plan_enable,
};

/// The mount unit bollwerk owns.
pub const TMP_MOUNT: &str = "etc/systemd/system/tmp.mount";
/// The apt drop-in written when `/tmp` is `noexec`.
pub const APT_DROPIN: &str = "etc/apt/apt.conf.d/50bollwerk-tmp-noexec";
const FSTAB: &str = "etc/fstab";

/// `[tmp]`: how `/tmp` and `/dev/shm` are mounted.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TmpSection {
    /// true: `/tmp` is a tmpfs (bollwerk's `tmp.mount`, enabled); false: bollwerk's unit is
    /// removed. Ignored (with a note) when `/etc/fstab` mounts `/tmp` itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<bool>,
    /// Mount options of `/tmp` besides `mode=1777`, e.g. ["nodev", "nosuid", "noexec"].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    /// Size of the `/tmp` tmpfs: a percentage of RAM ("50%") or an absolute size ("2G").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Mount options of `/dev/shm` (a line in `/etc/fstab`), e.g. ["nodev", "nosuid", "noexec"].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_shm_options: Option<Vec<String>>,
}

fn valid_option(o: &str) -> bool {
    !o.is_empty()
        && o.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_=%.-:".contains(c))
        && !o.starts_with('=')
}

/// Checks option lists and the size.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(s: &TmpSection, layers: &[Layer]) -> std::result::Result<(), ProfileError> {
    for (key, list) in [
        ("options", &s.options),
        ("dev_shm_options", &s.dev_shm_options),
    ] {
        if let Some(bad) = list.iter().flatten().find(|o| !valid_option(o)) {
            return Err(crate::profile::error_at(
                layers,
                &["tmp", key],
                format!("{bad:?} is not a mount option"),
            )
            .with_hint("one option per entry, e.g. [\"nodev\", \"nosuid\", \"noexec\"]"));
        }
    }
    if let Some(size) = &s.size {
        let digits = size.trim_end_matches(['%', 'k', 'K', 'm', 'M', 'g', 'G']);
        let suffix = &size[digits.len()..];
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || suffix.len() > 1 {
            return Err(crate::profile::error_at(
                layers,
                &["tmp", "size"],
                format!("size {size:?} is neither a percentage nor a size"),
            )
            .with_hint("write \"50%\" (of RAM) or \"2G\""));
        }
    }
    Ok(())
}

/// Renders bollwerk's `tmp.mount` (systemd's own unit with the profile's options).
pub fn render_unit(options: &[String], size: &str) -> String {
    let mut opts = vec!["mode=1777".to_string(), "strictatime".to_string()];
    opts.extend(options.iter().cloned());
    opts.push(format!("size={}", size.replace('%', "%%")));
    opts.push("nr_inodes=1m".into());
    format!(
        "{MANAGED_HEADER}\n# /tmp as a tmpfs ([tmp] of the profile); systemd's tmp.mount with hardened options.\n[Unit]\nDescription=Temporary Directory /tmp\nDocumentation=https://systemd.io/TEMPORARY_DIRECTORIES\nConditionPathIsSymbolicLink=!/tmp\nDefaultDependencies=no\nConflicts=umount.target\nBefore=local-fs.target umount.target\nAfter=swap.target\n\n[Mount]\nWhat=tmpfs\nWhere=/tmp\nType=tmpfs\nOptions={}\n\n[Install]\nWantedBy=local-fs.target\n",
        opts.join(",")
    )
}

/// One uncommented fstab line split into fields, keeping the whitespace between them.
struct FstabLine {
    /// (field, whitespace after it)
    parts: Vec<(String, String)>,
}

impl FstabLine {
    fn parse(line: &str) -> Option<FstabLine> {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') || line.len() != t.len() {
            return None;
        }
        let mut parts = Vec::new();
        let mut rest = line;
        while !rest.is_empty() {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let (field, tail) = rest.split_at(end);
            let ws_end = tail
                .find(|c: char| !c.is_whitespace())
                .unwrap_or(tail.len());
            let (ws, next) = tail.split_at(ws_end);
            parts.push((field.to_string(), ws.to_string()));
            rest = next;
        }
        (parts.len() >= 4).then_some(FstabLine { parts })
    }

    fn render(&self) -> String {
        self.parts.iter().map(|(f, w)| format!("{f}{w}")).collect()
    }
}

/// The opposite of a hardening option (`exec` for `noexec`).
fn opposite(o: &str) -> Option<&'static str> {
    match o {
        "noexec" => Some("exec"),
        "nosuid" => Some("suid"),
        "nodev" => Some("dev"),
        "ro" => Some("rw"),
        _ => None,
    }
}

/// Merges wanted options into an fstab option field: adds missing ones, drops their opposites.
pub fn merge_options(current: &str, wanted: &[String]) -> String {
    let mut opts: Vec<String> = current
        .split(',')
        .filter(|o| !o.is_empty())
        .filter(|o| !wanted.iter().any(|w| opposite(w) == Some(*o)))
        .map(str::to_string)
        .collect();
    for w in wanted {
        let key = w.split('=').next().unwrap_or(w);
        if let Some(i) = opts
            .iter()
            .position(|o| o.split('=').next() == Some(key) && o.contains('='))
        {
            opts[i] = w.clone();
        } else if !opts.contains(w) {
            opts.push(w.clone());
        }
    }
    opts.join(",")
}

/// Sets the options of the fstab line mounting `mount_point` (or appends `new_line`).
/// Returns the new text and whether the mount point had a line.
pub fn set_fstab_options(
    text: &str,
    mount_point: &str,
    wanted: &[String],
    new_line: &str,
) -> (String, bool) {
    let mut found = false;
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches('\n');
        if let Some(mut f) = FstabLine::parse(body)
            && f.parts[1].0 == mount_point
        {
            found = true;
            let merged = merge_options(&f.parts[3].0, wanted);
            if merged != f.parts[3].0 {
                f.parts[3].0 = merged;
                out.push_str(&f.render());
                out.push_str(&line[body.len()..]);
                continue;
            }
        }
        out.push_str(line);
    }
    if !found {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(new_line);
        out.push('\n');
    }
    (out, found)
}

/// True when an uncommented fstab line mounts `mount_point`.
fn fstab_mounts(text: &str, mount_point: &str) -> bool {
    text.lines()
        .filter_map(FstabLine::parse)
        .any(|f| f.parts[1].0 == mount_point)
}

/// The `/tmp` and `/dev/shm` module.
pub struct Tmp;

const DEFAULT_OPTIONS: &[&str] = &["nodev", "nosuid", "noexec"];

impl Module for Tmp {
    fn name(&self) -> &'static str {
        "tmp"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(s) = &cx.profile.profile.tmp else {
            return Ok(());
        };
        let mut p = Planner::new(self.name(), plan);
        if not_applicable_in_container(
            cx,
            &mut p,
            "tmp",
            "/tmp and /dev/shm are mounted by the container manager",
        ) {
            return Ok(());
        }
        let fstab_rel = RelPath::lit(FSTAB);
        let mut fstab = cx.root.read_string(&fstab_rel)?.unwrap_or_default();
        let fstab_before = fstab.clone();
        let options: Vec<String> = s
            .options
            .clone()
            .unwrap_or_else(|| DEFAULT_OPTIONS.iter().map(|o| o.to_string()).collect());
        let unit = RelPath::lit(TMP_MOUNT);
        let mut unit_changed = false;
        if fstab_mounts(&fstab, "/tmp") {
            if s.tmpfs.is_some() {
                p.note(
                    Level::Info,
                    "/etc/fstab mounts /tmp itself: its options are set there and bollwerk's tmp.mount is not used",
                );
            }
            if s.options.is_some() || s.tmpfs == Some(true) {
                fstab = set_fstab_options(&fstab, "/tmp", &options, "").0;
            }
        } else {
            match s.tmpfs {
                Some(true) => {
                    let size = s.size.clone().unwrap_or_else(|| "50%".into());
                    let validator: Arc<dyn Validator> = Arc::new(VerifyUnits {
                        units: vec![TMP_MOUNT],
                        requires: None,
                    });
                    unit_changed |= p.file_with(
                        &cx.root,
                        &unit,
                        render_unit(&options, &size).into_bytes(),
                        Perms::root(0o644),
                        format!("/tmp as a tmpfs ({})", options.join(",")),
                        Visibility::Plain,
                        Some(validator),
                    )?;
                    if !is_enabled(cx, p.plan(), "tmp.mount")? {
                        unit_changed |= plan_enable(cx, &mut p, "tmp.mount")?;
                    }
                    if cx.live() && unit_changed {
                        p.note(
                            Level::Warning,
                            "/tmp becomes a tmpfs at the next boot (mounting it now would hide the files of running programs)",
                        );
                    }
                }
                Some(false) => {
                    unit_changed |= plan_disable(cx, &mut p, "tmp.mount")?;
                    if cx
                        .root
                        .read_string(&unit)?
                        .is_some_and(|t| t.starts_with(MANAGED_HEADER))
                    {
                        unit_changed |= p.remove(&cx.root, &unit, format!("remove {unit}"))?;
                    }
                }
                None => {}
            }
        }
        if let Some(shm) = &s.dev_shm_options {
            let line = format!("tmpfs\t/dev/shm\ttmpfs\tdefaults,{}\t0\t0", shm.join(","));
            fstab = set_fstab_options(&fstab, "/dev/shm", shm, &line).0;
        }
        if fstab != fstab_before {
            let perms = match cx.root.entry(&fstab_rel)? {
                crate::root::Entry::File { perms, .. } => perms,
                _ => Perms::root(0o644),
            };
            let validator: Arc<dyn Validator> = Arc::new(FindmntVerify);
            p.file_with(
                &cx.root,
                &fstab_rel,
                fstab.into_bytes(),
                perms,
                "mount options in /etc/fstab".into(),
                Visibility::Plain,
                Some(validator),
            )?;
            unit_changed = true;
        }
        if options.iter().any(|o| o == "noexec") && (s.tmpfs == Some(true) || s.options.is_some()) {
            p.file(
                &cx.root,
                &RelPath::lit(APT_DROPIN),
                format!("{MANAGED_HEADER}\n// /tmp is noexec: debconf's package scripts are extracted to /var/tmp instead.\nAPT::ExtractTemplates::TempDir \"/var/tmp\";\n"),
                Perms::root(0o644),
                "apt extracts package scripts to /var/tmp (/tmp is noexec)",
            )?;
        }
        if unit_changed {
            p.handler(Cmd::in_root("/usr/bin/systemctl", &["daemon-reload"]));
        }
        Ok(())
    }
}

/// `findmnt --verify --tab-file <candidate>`: util-linux's own fstab parser (parse errors
/// fail; unreachable devices do not, since a chroot or image cannot see them).
#[derive(Debug)]
pub struct FindmntVerify;

impl Validator for FindmntVerify {
    fn describe(&self) -> String {
        "findmnt --verify".into()
    }

    fn validate(&self, cx: &Context, staged: &Staged) -> Result<()> {
        let rel = RelPath::lit(FSTAB);
        let Some(cand) = staged.files.get(&rel) else {
            return Ok(());
        };
        let out = cx.runner.run(
            &cx.root,
            &Cmd::in_root("/usr/bin/findmnt", &["--verify", "--tab-file", cand]),
        )?;
        // Only parse errors count: in a chroot or image, sources (UUID=…) are unreachable.
        let parse_errors = out.stderr.lines().any(|l| l.contains("parse error"));
        if parse_errors {
            Err(Error::Validation {
                path: rel.to_string(),
                validator: self.describe(),
                output: out.combined(),
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fstab_options_are_merged_in_place() {
        let t = "# /etc/fstab\nUUID=1 /   ext4  errors=remount-ro 0 1\nUUID=2\t/tmp\text4\tdefaults,exec\t0\t2\n";
        let (out, found) = set_fstab_options(
            t,
            "/tmp",
            &["nodev".into(), "nosuid".into(), "noexec".into()],
            "",
        );
        assert!(found);
        assert_eq!(
            out,
            "# /etc/fstab\nUUID=1 /   ext4  errors=remount-ro 0 1\nUUID=2\t/tmp\text4\tdefaults,nodev,nosuid,noexec\t0\t2\n"
        );
        let (again, _) = set_fstab_options(
            &out,
            "/tmp",
            &["nodev".into(), "nosuid".into(), "noexec".into()],
            "",
        );
        assert_eq!(again, out);
        let (shm, found) = set_fstab_options(
            "# UNCONFIGURED FSTAB FOR BASE SYSTEM",
            "/dev/shm",
            &["noexec".into()],
            "tmpfs\t/dev/shm\ttmpfs\tdefaults,noexec\t0\t0",
        );
        assert!(!found);
        assert_eq!(
            shm,
            "# UNCONFIGURED FSTAB FOR BASE SYSTEM\ntmpfs\t/dev/shm\ttmpfs\tdefaults,noexec\t0\t0\n"
        );
    }

    #[test]
    fn unit_escapes_percent() {
        let u = render_unit(&["nodev".into(), "noexec".into()], "50%");
        assert!(u.contains("Options=mode=1777,strictatime,nodev,noexec,size=50%%,nr_inodes=1m\n"));
    }
}
