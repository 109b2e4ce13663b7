//! `[storage]`: the root file system grown onto a bigger disk (`grow_root`, cloud-config
//! `growpart` + `resize_rootfs`), a swap file (`swap`) and extra mounts (`mounts`).
//!
//! * `grow_root` acts on a live system only (root `/`, not a container): it reads the root
//!   mount's device from `/proc/self/mountinfo` and `/sys/dev/block`, grows its partition with
//!   `growpart` (cloud-guest-utils) when the disk has room after it, then the file system with
//!   `resize2fs` (ext2/3/4) or `xfs_growfs` (xfs). It plans nothing when the file system already
//!   fills its device (within 5 % + 64 MiB, the file system's own overhead), so a re-apply is
//!   "0 changes".
//! * `swap` creates the file (`fallocate`, mode 0600, `mkswap`) when it is missing, and on a live
//!   system turns it on with `swapon`; an existing file is left as it is.
//! * `mounts` and the swap file are lines in a block of `etc/fstab` bollwerk owns (between
//!   `# BEGIN bollwerk storage` and `# END bollwerk storage`); mount points are created. They
//!   are mounted at the next boot (`mount -a` mounts them at once).
//!
//! Rollback restores `etc/fstab`; it does not shrink a grown file system or delete a swap file.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::{Context, Level, Plan, Planner};
use crate::error::{Error, Result};
use crate::exec::Cmd;
use crate::modules::Module;
use crate::profile::types::AbsPath;
use crate::profile::{Layer, ProfileError};
use crate::root::{Perms, RelPath};

/// `[storage]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Grow the root partition and file system onto the whole disk (live systems only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grow_root: Option<bool>,
    /// A swap file, e.g. { path = "/swap.img", size = "2G" }.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<SwapSpec>,
    /// Extra `etc/fstab` entries (cloud-config `mounts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountSpec>,
}

/// A swap file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwapSpec {
    /// Where (default "/swap.img").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<AbsPath>,
    /// Size in bytes or with a suffix: "512M", "2G".
    pub size: String,
}

/// One `etc/fstab` line.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MountSpec {
    /// The device: a path, `LABEL=…`, `UUID=…` or a network source.
    pub what: String,
    /// The mount point (created when missing).
    #[serde(rename = "where")]
    pub where_: AbsPath,
    /// File system type (default "auto").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fstype: Option<String>,
    /// Mount options (default "defaults,nofail").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<String>,
    /// fstab's dump field (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump: Option<u8>,
    /// fstab's pass field (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass: Option<u8>,
}

const FSTAB: &str = "etc/fstab";
const BEGIN: &str = "# BEGIN bollwerk storage (managed by bollwerk — local edits are overwritten)";
const END: &str = "# END bollwerk storage";
const DEFAULT_SWAP: &str = "/swap.img";

/// Parses "2G", "512M", "1024K" or a plain number of bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (s, 1u64),
        Some((i, _)) => {
            let m = match s[i..]
                .trim()
                .to_ascii_uppercase()
                .trim_end_matches("IB")
                .trim_end_matches('B')
            {
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                "T" => 1 << 40,
                "" => 1,
                _ => return None,
            };
            (&s[..i], m)
        }
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn field_ok(w: &str) -> bool {
    !w.is_empty()
        && !w
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '#')
}

/// Checks of `[storage]` that types cannot express.
///
/// # Errors
/// A located [`ProfileError`].
pub fn check_profile(
    s: &StorageSection,
    layers: &[Layer],
) -> std::result::Result<(), ProfileError> {
    if let Some(sw) = &s.swap {
        match parse_size(&sw.size) {
            Some(b) if (1 << 20..=1 << 40).contains(&b) => {}
            _ => {
                return Err(crate::profile::error_at(
                    layers,
                    &["storage", "swap", "size"],
                    format!("swap size {:?} is not between 1M and 1T", sw.size),
                )
                .with_hint("write e.g. \"2G\" or \"512M\""));
            }
        }
    }
    for (i, m) in s.mounts.iter().enumerate() {
        let idx = i.to_string();
        let fields = [
            Some(m.what.as_str()),
            m.fstype.as_deref(),
            m.options.as_deref(),
        ];
        if let Some(bad) = fields.into_iter().flatten().find(|f| !field_ok(f)) {
            return Err(crate::profile::error_at(
                layers,
                &["storage", "mounts", idx.as_str()],
                format!("{bad:?} is not a single fstab field (no spaces or `#`)"),
            ));
        }
        if m.where_.as_str().contains(char::is_whitespace) {
            return Err(crate::profile::error_at(
                layers,
                &["storage", "mounts", idx.as_str(), "where"],
                "a mount point with spaces is not supported",
            ));
        }
    }
    Ok(())
}

/// The fstab block for the section (empty when there is nothing to mount).
pub fn render_block(s: &StorageSection) -> String {
    let mut lines = Vec::new();
    if let Some(sw) = &s.swap {
        let path = sw.path.as_ref().map_or(DEFAULT_SWAP, |p| p.as_str());
        lines.push(format!("{path} none swap sw 0 0"));
    }
    for m in &s.mounts {
        lines.push(format!(
            "{} {} {} {} {} {}",
            m.what,
            m.where_.as_str(),
            m.fstype.as_deref().unwrap_or("auto"),
            m.options.as_deref().unwrap_or("defaults,nofail"),
            m.dump.unwrap_or(0),
            m.pass.unwrap_or(2)
        ));
    }
    if lines.is_empty() {
        return String::new();
    }
    format!("{BEGIN}\n{}\n{END}\n", lines.join("\n"))
}

/// `fstab` with bollwerk's block replaced by `block` (appended when absent, dropped when empty).
pub fn splice_fstab(fstab: &str, block: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    let mut placed = false;
    for line in fstab.lines() {
        if line == BEGIN {
            inside = true;
            if !placed {
                out.push_str(block);
                placed = true;
            }
            continue;
        }
        if inside {
            if line == END {
                inside = false;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !placed && !block.is_empty() {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(block);
    }
    out
}

/// What growing the root needs, from `/sys/dev/block` (`sys` is its directory) and the file
/// system's size: (device name, partition to grow as (disk, number)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrowNeed {
    /// Kernel name of the root device (`vda1`).
    pub device: String,
    /// `(disk, partition number)` when the partition must grow first.
    pub partition: Option<(String, String)>,
    /// True when the file system is smaller than its (grown) device.
    pub filesystem: bool,
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Decides what to grow for the block device `maj_min` (`"254:1"`) holding a file system of
/// `fs_bytes`, reading `sys` (normally `/sys/dev/block`). None when nothing needs to grow.
pub fn grow_need(sys: &Path, maj_min: &str, fs_bytes: u64) -> Option<GrowNeed> {
    let dev = sys.join(maj_min);
    let real = std::fs::canonicalize(&dev).ok()?;
    let name = real.file_name()?.to_string_lossy().into_owned();
    let sectors = read_u64(&real.join("size"))?;
    let mut dev_bytes = sectors * 512;
    let mut partition = None;
    if let Ok(num) = std::fs::read_to_string(real.join("partition")) {
        let parent = real.parent()?;
        let disk = parent.file_name()?.to_string_lossy().into_owned();
        let disk_sectors = read_u64(&parent.join("size"))?;
        let start = read_u64(&real.join("start"))?;
        // growpart leaves alignment gaps; 16 MiB of free space after the partition is room.
        if disk_sectors > start + sectors + 32 * 1024 {
            partition = Some((disk, num.trim().to_string()));
            dev_bytes = (disk_sectors - start) * 512;
        }
    }
    let slack = (dev_bytes / 20).max(64 << 20);
    let filesystem = dev_bytes > fs_bytes.saturating_add(slack);
    (partition.is_some() || filesystem).then_some(GrowNeed {
        device: name,
        partition,
        filesystem,
    })
}

/// The root mount from `/proc/self/mountinfo` text: (maj:min, fstype).
pub fn root_mount(mountinfo: &str) -> Option<(String, String)> {
    mountinfo.lines().rev().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let f: Vec<&str> = pre.split_whitespace().collect();
        if f.get(4) != Some(&"/") {
            return None;
        }
        let fstype = post.split_whitespace().next()?;
        Some((f.get(2)?.to_string(), fstype.to_string()))
    })
}

/// The storage module.
pub struct Storage;

impl Module for Storage {
    fn name(&self) -> &'static str {
        "storage"
    }

    fn plan(&self, cx: &Context, plan: &mut Plan) -> Result<()> {
        let Some(s) = cx.profile.profile.storage.as_ref() else {
            return Ok(());
        };
        if s.grow_root == Some(true) {
            plan_grow(cx, plan)?;
        }
        let mut p = Planner::new(self.name(), plan);
        if let Some(sw) = &s.swap {
            plan_swap(cx, &mut p, sw)?;
        }
        for m in &s.mounts {
            let rel = m.where_.rel();
            if !cx.root.exists(&rel) {
                p.dirs(&cx.root, &rel, Perms::root(0o755))?;
            }
        }
        let fstab = RelPath::lit(FSTAB);
        let current = cx
            .after(p.plan(), &fstab)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let new = splice_fstab(&current, &render_block(s));
        if new != current {
            let perms = match cx.root.entry(&fstab)? {
                crate::root::Entry::File { perms, .. } => perms,
                _ => Perms::root(0o644),
            };
            p.file(
                &cx.root,
                &fstab,
                new,
                perms,
                "swap and mounts in etc/fstab ([storage])",
            )?;
            if !s.mounts.is_empty() {
                p.note(
                    Level::Info,
                    "storage.mounts are mounted at the next boot (`mount -a` mounts them now)",
                );
            }
        }
        Ok(())
    }
}

fn plan_swap(cx: &Context, p: &mut Planner, sw: &SwapSpec) -> Result<()> {
    let path = sw
        .path
        .as_ref()
        .map_or(DEFAULT_SWAP, |p| p.as_str())
        .to_string();
    let rel = RelPath::new(path.trim_start_matches('/')).map_err(Error::Runtime)?;
    let bytes =
        parse_size(&sw.size).ok_or_else(|| Error::Runtime(format!("swap size {:?}", sw.size)))?;
    if cx.root.exists(&rel) {
        return Ok(());
    }
    let script = format!(
        "umask 077 && /usr/bin/fallocate -l {bytes} '{path}' && /bin/chmod 0600 '{path}' && /sbin/mkswap '{path}' >/dev/null"
    );
    p.run(
        Cmd::in_root("/bin/sh", &["-c", &script]),
        Vec::new(),
        format!("create the swap file {path} ({})", sw.size),
    );
    if cx.root.is_host() && cx.facts.container.is_none() {
        p.run(
            Cmd::in_root("/sbin/swapon", &[&path]),
            Vec::new(),
            format!("turn on swap {path}"),
        );
    }
    Ok(())
}

fn plan_grow(cx: &Context, plan: &mut Plan) -> Result<()> {
    let mut p = Planner::new("storage", plan);
    if !cx.root.is_host() {
        p.note(
            Level::Info,
            "storage.grow_root: applies on a live system only (skipped for --root)",
        );
        return Ok(());
    }
    if let Some(c) = &cx.facts.container {
        p.note(
            Level::Info,
            format!("storage.grow_root: not applicable in a container ({c})"),
        );
        return Ok(());
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("reading", "/proc/self/mountinfo", e))?;
    let Some((maj_min, fstype)) = root_mount(&mountinfo) else {
        p.note(
            Level::Warning,
            "storage.grow_root: the root mount was not found",
        );
        return Ok(());
    };
    let st =
        nix::sys::statvfs::statvfs("/").map_err(|e| Error::Runtime(format!("statvfs /: {e}")))?;
    let fs_bytes = st.blocks() * st.fragment_size();
    let Some(need) = grow_need(Path::new("/sys/dev/block"), &maj_min, fs_bytes) else {
        return Ok(());
    };
    let grow_fs = match fstype.as_str() {
        "ext2" | "ext3" | "ext4" => {
            Cmd::in_root("/sbin/resize2fs", &[&format!("/dev/{}", need.device)])
        }
        "xfs" => Cmd::in_root("/usr/sbin/xfs_growfs", &["/"]),
        other => {
            p.note(
                Level::Warning,
                format!("storage.grow_root: {other} file systems are not grown (ext4 and xfs are)"),
            );
            return Ok(());
        }
    };
    if let Some((disk, num)) = &need.partition {
        if !cx.root.exists(&RelPath::lit("usr/bin/growpart")) {
            p.note(
                Level::Warning,
                format!("storage.grow_root: /dev/{disk} has room, but growpart is not installed (package cloud-guest-utils)"),
            );
            return Ok(());
        }
        p.run(
            Cmd::in_root("/usr/bin/growpart", &[&format!("/dev/{disk}"), num]),
            Vec::new(),
            format!("grow partition {num} of /dev/{disk} onto the whole disk"),
        );
    }
    p.run(
        grow_fs,
        Vec::new(),
        format!("grow the {fstype} root file system on /dev/{}", need.device),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("2X"), None);
        assert_eq!(parse_size("auto"), None);
    }

    #[test]
    fn fstab_block_is_replaced_in_place() {
        let s = StorageSection {
            swap: Some(SwapSpec {
                path: None,
                size: "1G".into(),
            }),
            ..StorageSection::default()
        };
        let block = render_block(&s);
        let a = splice_fstab("/dev/vda / ext4 defaults 0 1\n", &block);
        assert_eq!(
            a,
            format!("/dev/vda / ext4 defaults 0 1\n\n{BEGIN}\n/swap.img none swap sw 0 0\n{END}\n")
        );
        assert_eq!(splice_fstab(&a, &block), a, "idempotent");
        assert_eq!(splice_fstab(&a, ""), "/dev/vda / ext4 defaults 0 1\n\n");
    }

    #[test]
    fn root_device_and_growth() {
        let mi = "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n23 22 0:5 / /proc rw - proc proc rw\n";
        assert_eq!(root_mount(mi), Some(("254:1".into(), "ext4".into())));
        // A fake /sys: disk vda of 16 GiB, partition vda1 from sector 2048 of 4 GiB.
        let t = tempfile::tempdir().unwrap();
        let disk = t.path().join("devices/vda");
        let part = disk.join("vda1");
        std::fs::create_dir_all(&part).unwrap();
        std::fs::write(disk.join("size"), format!("{}\n", 32u64 << 20)).unwrap();
        std::fs::write(part.join("size"), format!("{}\n", 8u64 << 20)).unwrap();
        std::fs::write(part.join("start"), "2048\n").unwrap();
        std::fs::write(part.join("partition"), "1\n").unwrap();
        let blk = t.path().join("dev-block");
        std::fs::create_dir_all(&blk).unwrap();
        std::os::unix::fs::symlink(&part, blk.join("254:1")).unwrap();
        let need = grow_need(&blk, "254:1", 4 << 30).unwrap();
        assert_eq!(need.partition, Some(("vda".into(), "1".into())));
        assert!(need.filesystem);
        // Partition already fills the disk, file system fills the partition: nothing to do.
        std::fs::write(part.join("size"), format!("{}\n", (32u64 << 20) - 2048)).unwrap();
        assert_eq!(grow_need(&blk, "254:1", (16u64 << 30) * 97 / 100), None);
        // Same partition, file system still the template's 4 GiB: only resize2fs.
        let need = grow_need(&blk, "254:1", 4 << 30).unwrap();
        assert_eq!(need.partition, None);
        assert!(need.filesystem);
    }
}
