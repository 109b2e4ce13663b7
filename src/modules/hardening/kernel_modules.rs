//! Kernel modules (`[kernel_modules]`): the drop-in `etc/modprobe.d/bollwerk-blacklist.conf`
//! with `install <m> /bin/false` and `blacklist <m>` for every module to disable (rare file
//! systems, USB storage, rare network protocols: CIS 1.1.1.x, 3.2.x), checked with the root's
//! own `modprobe -C <candidate> --showconfig` before activation.
//!
//! Not applicable in containers (the host's kernel loads modules). `squashfs` is kept when
//! snapd is installed (snaps are squashfs images), and `overlay` when the host runs containers
//! (a `[docker]` section, or docker.io, docker-ce, containerd or podman installed: their
//! default storage driver is overlayfs, and a Docker host would lose its containers at the next
//! boot). Modules loaded right now stay loaded until the next boot: bollwerk never unloads them.

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

use super::util::not_applicable_in_container;

/// The drop-in bollwerk owns.
pub const DROPIN: &str = "etc/modprobe.d/bollwerk-blacklist.conf";

/// `[kernel_modules]`: kernel modules that must not be loaded.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KernelModulesSection {
    /// Modules to disable (`install <m> /bin/false` + `blacklist <m>`), e.g. ["cramfs",
    /// "freevxfs", "jffs2", "hfs", "hfsplus", "squashfs", "udf", "usb-storage", "dccp", "sctp",
    /// "rds", "tipc"]. An empty list removes the drop-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable: Option<Vec<String>>,
    /// Modules to keep loadable although `disable` lists them (an opt-out that survives
    /// `extends`, e.g. ["squashfs"] for snaps, ["usb-storage"] for USB disks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep: Vec<String>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Checks module names.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(
    s: &KernelModulesSection,
    layers: &[Layer],
) -> std::result::Result<(), ProfileError> {
    for (key, list) in [
        ("disable", s.disable.as_deref().unwrap_or_default()),
        ("keep", s.keep.as_slice()),
    ] {
        if let Some(bad) = list.iter().find(|n| !valid_name(n)) {
            return Err(crate::profile::error_at(
                layers,
                &["kernel_modules", key],
                format!("{bad:?} is not a kernel module name"),
            )
            .with_hint("module names are letters, digits, `_` and `-`, e.g. \"usb-storage\""));
        }
    }
    Ok(())
}

/// `usb-storage` and `usb_storage` name the same module.
fn same_module(a: &str, b: &str) -> bool {
    a.replace('-', "_") == b.replace('-', "_")
}

/// Packages whose container storage needs the `overlay` module.
const CONTAINER_ENGINES: [&str; 6] = [
    "docker.io",
    "docker-ce",
    "containerd",
    "containerd.io",
    "podman",
    "moby-engine",
];

/// Why `overlay` must stay loadable on this host, if it must.
fn overlay_needed(cx: &Context) -> Option<String> {
    if cx.profile.profile.docker.is_some() {
        return Some("the profile has [docker]".into());
    }
    CONTAINER_ENGINES
        .iter()
        .find(|p| cx.facts.package(p).is_some())
        .map(|p| format!("{p} is installed"))
}

/// The modules to disable after `keep` and the snapd and container-engine exceptions.
pub fn effective(cx: &Context, s: &KernelModulesSection, p: &mut Planner) -> Vec<String> {
    let snapd = cx.facts.package("snapd").is_some();
    let containers = overlay_needed(cx);
    let mut out: Vec<String> = Vec::new();
    for m in s.disable.as_deref().unwrap_or_default() {
        if s.keep.iter().any(|k| same_module(k, m)) || out.iter().any(|o| same_module(o, m)) {
            continue;
        }
        if snapd && same_module(m, "squashfs") {
            p.note(
                Level::Warning,
                "squashfs stays loadable: snapd is installed and snaps are squashfs images (add \"squashfs\" to kernel_modules.keep to silence this)",
            );
            continue;
        }
        if let Some(why) = containers.as_deref().filter(|_| same_module(m, "overlay")) {
            p.note(
                Level::Warning,
                format!("overlay stays loadable: {why} and container storage (overlay2) needs it (add \"overlay\" to kernel_modules.keep to silence this)"),
            );
            continue;
        }
        out.push(m.clone());
    }
    out
}

/// Renders the drop-in.
pub fn render(modules: &[String]) -> String {
    let mut s = format!(
        "{MANAGED_HEADER}\n# Kernel modules that must not be loaded ([kernel_modules] of the profile).\n"
    );
    for m in modules {
        s.push_str(&format!("install {m} /bin/false\nblacklist {m}\n"));
    }
    s
}

fn modprobe(cx: &Context) -> &'static str {
    if cx.root.exists(&RelPath::lit("usr/sbin/modprobe")) {
        "/usr/sbin/modprobe"
    } else {
        "/sbin/modprobe"
    }
}

/// `modprobe -C <candidate> --showconfig`: kmod's own parser; a line it ignores is an error.
#[derive(Debug)]
pub struct ModprobeCheck;

impl Validator for ModprobeCheck {
    fn describe(&self) -> String {
        "modprobe --showconfig".into()
    }

    fn validate(&self, cx: &Context, staged: &Staged) -> Result<()> {
        let rel = RelPath::lit(DROPIN);
        let Some(path) = staged.files.get(&rel) else {
            return Ok(());
        };
        let cmd = Cmd::in_root(modprobe(cx), &["-C", path, "--showconfig"]);
        if !cx.runner.available(&cx.root, &cmd) {
            tracing::warn!("modprobe is not installed in the target; {DROPIN} is not checked");
            return Ok(());
        }
        let out = cx.runner.run(&cx.root, &cmd)?;
        if out.success() && !out.stderr.contains("ignoring bad line") {
            Ok(())
        } else {
            Err(Error::Validation {
                path: rel.to_string(),
                validator: self.describe(),
                output: out.stderr.trim().to_string(),
            })
        }
    }
}

/// Modules loaded on the running system (`/proc/modules`), only when the root is `/`.
fn loaded_now(cx: &Context) -> Vec<String> {
    if !cx.root.is_host() {
        return Vec::new();
    }
    std::fs::read_to_string("/proc/modules")
        .map(|t| {
            t.lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The kernel modules module.
pub struct KernelModules;

impl Module for KernelModules {
    fn name(&self) -> &'static str {
        "kernel_modules"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(s) = &cx.profile.profile.kernel_modules else {
            return Ok(());
        };
        let mut p = Planner::new(self.name(), plan);
        if not_applicable_in_container(
            cx,
            &mut p,
            "kernel_modules",
            "modules are loaded by the host's kernel",
        ) {
            return Ok(());
        }
        let rel = RelPath::lit(DROPIN);
        let modules = effective(cx, s, &mut p);
        if modules.is_empty() {
            p.remove(
                &cx.root,
                &rel,
                format!("remove {rel} (no module to disable)"),
            )?;
            return Ok(());
        }
        let loaded = loaded_now(cx);
        for m in &modules {
            if loaded.iter().any(|l| same_module(l, m)) {
                p.note(
                    Level::Warning,
                    format!("kernel module {m} is loaded now; the blacklist takes effect at the next boot (bollwerk does not unload modules)"),
                );
            }
        }
        let validator: Arc<dyn Validator> = Arc::new(ModprobeCheck);
        p.file_with(
            &cx.root,
            &rel,
            render(&modules).into_bytes(),
            Perms::root(0o644),
            format!("disable kernel modules: {}", modules.join(", ")),
            Visibility::Plain,
            Some(validator),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_install_and_blacklist_lines() {
        let r = render(&["cramfs".into(), "usb-storage".into()]);
        assert!(r.starts_with(MANAGED_HEADER));
        assert!(r.contains("install cramfs /bin/false\nblacklist cramfs\n"));
        assert!(r.contains("install usb-storage /bin/false\nblacklist usb-storage\n"));
        assert!(same_module("usb_storage", "usb-storage"));
    }
}
