//! Services: whether a unit is installed, masked or enabled (from the root's unit files and
//! `.wants`/`.requires` links), and whether it is active — only where a running systemd can
//! say so (`None` otherwise, which the audit reports as not evaluated).

use std::path::Path;

use crate::exec::{Cmd, Runner};
use crate::root::{RelPath, Root};

fn rel(p: &str) -> Option<RelPath> {
    RelPath::new(p.trim_start_matches('/')).ok()
}

/// Where a unit file lives (first of `etc`, `run`, `usr/lib`, `lib`), and whether it is
/// masked.
pub fn unit_file(root: &Root, unit: &str) -> Option<(String, bool)> {
    for d in [
        "etc/systemd/system",
        "run/systemd/system",
        "usr/local/lib/systemd/system",
        "usr/lib/systemd/system",
        "lib/systemd/system",
    ] {
        let p = format!("{d}/{unit}");
        let Some(r) = rel(&p) else { continue };
        let host = root.resolve(&r);
        if let Ok(md) = std::fs::symlink_metadata(&host) {
            if md.file_type().is_symlink() {
                let t = std::fs::read_link(&host).unwrap_or_default();
                if t == Path::new("/dev/null") {
                    return Some((p, true));
                }
                // An alias link: follow it within the root.
                if root.resolve_follow(&r).is_file() {
                    return Some((p, false));
                }
                continue;
            }
            if md.len() == 0 && d.starts_with("etc") {
                return Some((p, true));
            }
            return Some((p, false));
        }
    }
    None
}

/// Whether a unit is enabled: (`enabled`, how we know).
pub fn unit_enabled(root: &Root, unit: &str) -> Option<(bool, String)> {
    let (file, masked) = unit_file(root, unit)?;
    if masked {
        return Some((false, format!("masked ({file})")));
    }
    for d in ["etc/systemd/system", "run/systemd/system"] {
        let Some(r) = rel(d) else { continue };
        for sub in root.list_dir(&r).unwrap_or_default() {
            if !(sub.ends_with(".wants") || sub.ends_with(".requires")) {
                continue;
            }
            let link = format!("{d}/{sub}/{unit}");
            if rel(&link).is_some_and(|l| std::fs::symlink_metadata(root.resolve(&l)).is_ok()) {
                return Some((true, format!("enabled ({link})")));
            }
        }
    }
    // A unit without an [Install] section is static: started as a dependency.
    let text = rel(&file)
        .and_then(|r| root.read_string(&r).ok().flatten())
        .unwrap_or_default();
    if !text.lines().any(|l| l.trim() == "[Install]") {
        return Some((true, format!("static ({file})")));
    }
    Some((false, format!("disabled ({file}, no .wants link)")))
}

/// `systemctl is-active UNIT` on the running system (`None`: not running systemd).
pub fn unit_active(
    root: &Root,
    runner: &dyn Runner,
    systemd_running: bool,
    unit: &str,
) -> Option<Result<String, String>> {
    if !systemd_running {
        return None;
    }
    let cmd = Cmd::in_root("/usr/bin/systemctl", &["is-active", unit])
        .timeout(std::time::Duration::from_secs(10));
    Some(match runner.run(root, &cmd) {
        Ok(o) => Ok(o.stdout.trim().to_string()),
        Err(e) => Err(e.to_string()),
    })
}
