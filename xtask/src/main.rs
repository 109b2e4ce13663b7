//! `cargo xtask dist`: bollwerk's release artefacts in `target/dist/`.
//!
//! * `bollwerk_<version>_amd64.deb`: built with `dpkg-deb --build --root-owner-group` from a staged
//!   tree (no cargo-deb to compile in CI): the binary in `/usr/sbin`, the units in
//!   `/lib/systemd/system`, the man page, bash/zsh/fish completions and the docs. Its only
//!   maintainer script (`postinst`) runs `systemctl daemon-reload` when systemd is running;
//!   nothing is enabled or started, and `dpkg -r` leaves nothing behind.
//! * `bollwerk-<version>-x86_64-linux-musl.tar.gz`: the same tree under `bollwerk-<version>/`.
//! * `bollwerk-<version>-x86_64-linux-musl`: the bare static binary.
//! * `SHA256SUMS` over the three (`sha256sum -c SHA256SUMS` in `target/dist/`).
//!
//! The man page and completions come from the packaged binary itself (`bollwerk man`,
//! `bollwerk completions SHELL`), so they always match it. Dependency-free on purpose: it drives
//! `cargo`, `dpkg-deb`, `tar`, `gzip`, `md5sum` and `sha256sum` (all on a Debian build host).

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// The Rust target of the release binary.
const TARGET: &str = "x86_64-unknown-linux-musl";
/// Where the binary lives on the target system (units, docs and `install-units` use it too).
const BIN_PATH: &str = "usr/sbin/bollwerk";
/// The systemd units shipped (from `units/`).
const UNITS: &[&str] = &[
    "bollwerk-firstboot.service",
    "bollwerk-firstboot-network.service",
    "bollwerk-firstboot-final.service",
    "bollwerk-audit.service",
    "bollwerk-audit.timer",
];
/// Docs shipped under `usr/share/doc/bollwerk/` (paths relative to the repository).
const DOCS: &[&str] = &[
    "README.md",
    "docs/architecture.md",
    "docs/audit.md",
    "docs/checks.md",
    "docs/firstboot.md",
    "docs/network.md",
    "docs/profile.md",
    "docs/services.md",
    "docs/report-schema.json",
];

/// Runs only when systemd is PID 1 (never in a chroot or image build): no surprises.
const MAINT_SCRIPT: &str = "#!/bin/sh\n\
# bollwerk: make systemd see the new units. Nothing is enabled or started.\n\
set -e\n\
if [ -d /run/systemd/system ]; then\n\
\tsystemctl --system daemon-reload >/dev/null || true\n\
fi\n\
exit 0\n";

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("dist") => parse_dist(&args[1..]).and_then(|o| dist(&o)),
        _ => Err(usage()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::from(2)
        }
    }
}

fn usage() -> String {
    "usage: cargo xtask dist [--bin PATH] [--out DIR]\n  \
     --bin PATH  package this static musl binary instead of building it\n  \
     --out DIR   output directory (default target/dist)"
        .into()
}

/// Options of `dist`.
struct DistOpts {
    bin: Option<PathBuf>,
    out: Option<PathBuf>,
}

fn parse_dist(args: &[String]) -> Result<DistOpts> {
    let mut o = DistOpts {
        bin: None,
        out: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let val = |it: &mut std::slice::Iter<String>| {
            it.next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{a} needs a value\n{}", usage()))
        };
        match a.as_str() {
            "--bin" => o.bin = Some(val(&mut it)?),
            "--out" => o.out = Some(val(&mut it)?),
            _ => return Err(format!("unknown argument {a:?}\n{}", usage())),
        }
    }
    Ok(o)
}

/// The repository root (xtask lives in `<repo>/xtask`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn dist(o: &DistOpts) -> Result<()> {
    let repo = repo_root();
    let version = package_version(&repo.join("Cargo.toml"))?;
    let out = o
        .out
        .clone()
        .unwrap_or_else(|| repo.join("target").join("dist"));
    let bin = match &o.bin {
        Some(b) => b.clone(),
        None => build_release(&repo)?,
    };
    check_static(&bin)?;
    let reported = capture(Command::new(&bin).arg("--version"))?;
    if !reported.split_whitespace().any(|w| w == version) {
        return Err(format!(
            "{} reports {:?}, Cargo.toml says {version}",
            bin.display(),
            reported.trim()
        ));
    }
    if out.exists() {
        fs::remove_dir_all(&out).map_err(|e| format!("removing {}: {e}", out.display()))?;
    }
    let stage = out.join("stage");
    let pkg = stage.join(format!("bollwerk_{version}_amd64"));
    stage_tree(&repo, &bin, &pkg)?;
    let tar_name = format!("bollwerk-{version}-x86_64-linux-musl");
    let tree = stage.join(format!("bollwerk-{version}"));
    copy_tree(&pkg, &tree)?;
    write_control(&pkg, &version)?;

    let epoch = source_date_epoch(&repo);
    let deb = out.join(format!("bollwerk_{version}_amd64.deb"));
    run(Command::new("dpkg-deb")
        .env("SOURCE_DATE_EPOCH", &epoch)
        .args(["--build", "--root-owner-group", "-Zxz"])
        .arg(&pkg)
        .arg(&deb))?;
    let tarball = out.join(format!("{tar_name}.tar.gz"));
    run(Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            &format!("--mtime=@{epoch}"),
            "--use-compress-program=gzip -9n",
            "-cf",
        ])
        .arg(&tarball)
        .arg("-C")
        .arg(&stage)
        .arg(format!("bollwerk-{version}")))?;
    install_file(&bin, &out.join(&tar_name), 0o755)?;
    let sums = capture(
        Command::new("sha256sum")
            .current_dir(&out)
            .arg(deb.file_name().unwrap_or_default())
            .arg(tarball.file_name().unwrap_or_default())
            .arg(&tar_name),
    )?;
    fs::write(out.join("SHA256SUMS"), &sums).map_err(|e| format!("writing SHA256SUMS: {e}"))?;
    fs::remove_dir_all(&stage).map_err(|e| format!("removing {}: {e}", stage.display()))?;
    println!("{}:\n{sums}", out.display());
    Ok(())
}

/// `version = "…"` of the `[package]` table of the root manifest.
fn package_version(manifest: &Path) -> Result<String> {
    let text =
        fs::read_to_string(manifest).map_err(|e| format!("reading {}: {e}", manifest.display()))?;
    let mut in_package = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(v) = line.strip_prefix("version") {
            let v = v.trim_start().trim_start_matches('=').trim();
            return Ok(v.trim_matches('"').to_string());
        }
    }
    Err(format!("no [package] version in {}", manifest.display()))
}

/// `cargo build --release --target x86_64-unknown-linux-musl -p bollwerk`; returns the binary.
fn build_release(repo: &Path) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo).current_dir(repo).args([
        "build",
        "--release",
        "--package",
        "bollwerk",
        "--target",
        TARGET,
    ]))?;
    Ok(repo
        .join("target")
        .join(TARGET)
        .join("release")
        .join("bollwerk"))
}

/// Refuses a binary with an ELF interpreter (dynamically linked): the release must run on any
/// distribution. Reads the ELF64 program headers (no dependency needed for that).
fn check_static(bin: &Path) -> Result<()> {
    let mut f = fs::File::open(bin).map_err(|e| format!("opening {}: {e}", bin.display()))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(|e| format!("reading {}: {e}", bin.display()))?;
    let not = |why: &str| format!("{}: {why}", bin.display());
    if buf.len() < 64 || &buf[..4] != b"\x7fELF" || buf[4] != 2 || buf[5] != 1 {
        return Err(not("not a little-endian ELF64 file"));
    }
    let u16_at = |o: usize| u16::from_le_bytes([buf[o], buf[o + 1]]) as usize;
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[o..o + 8]);
        u64::from_le_bytes(b) as usize
    };
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54), u16_at(56));
    for i in 0..phnum {
        let o = phoff + i * phentsize;
        if o + 4 > buf.len() {
            return Err(not("truncated program headers"));
        }
        // PT_INTERP = 3: a dynamic loader is named.
        if u32::from_le_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]) == 3 {
            return Err(not(
                "dynamically linked (has PT_INTERP); build with --target x86_64-unknown-linux-musl",
            ));
        }
    }
    Ok(())
}

/// Stages the installed tree (without `DEBIAN/`) under `pkg`.
fn stage_tree(repo: &Path, bin: &Path, pkg: &Path) -> Result<()> {
    install_file(bin, &pkg.join(BIN_PATH), 0o755)?;
    for u in UNITS {
        install_file(
            &repo.join("units").join(u),
            &pkg.join("lib/systemd/system").join(u),
            0o644,
        )?;
    }
    let man = capture_bytes(Command::new(bin).arg("man"))?;
    let man_gz = pkg.join("usr/share/man/man1/bollwerk.1.gz");
    write_file(&man_gz, &gzip(&man)?, 0o644)?;
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/bollwerk"),
        ("zsh", "usr/share/zsh/vendor-completions/_bollwerk"),
        ("fish", "usr/share/fish/vendor_completions.d/bollwerk.fish"),
    ] {
        let text = capture_bytes(Command::new(bin).args(["completions", shell]))?;
        write_file(&pkg.join(path), &text, 0o644)?;
    }
    let doc = pkg.join("usr/share/doc/bollwerk");
    for d in DOCS {
        let name = Path::new(d).file_name().unwrap_or_default();
        install_file(&repo.join(d), &doc.join(name), 0o644)?;
    }
    write_file(&doc.join("copyright"), COPYRIGHT.as_bytes(), 0o644)?;
    Ok(())
}

const COPYRIGHT: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
Upstream-Name: bollwerk\n\
\n\
Files: *\n\
Copyright: the bollwerk authors\n\
License: none-declared\n \
The project's Cargo.toml declares no license yet.\n";

/// Writes `DEBIAN/control`, `md5sums` and `postinst`. No `postrm`: with neither conffiles nor
/// a `postrm`, `dpkg -r` removes the package completely (no `config-files` state left).
fn write_control(pkg: &Path, version: &str) -> Result<()> {
    let listing = capture(
        Command::new("find")
            .current_dir(pkg)
            .args([".", "-type", "f", "-printf", "%P\\n"]),
    )?;
    let mut files: Vec<&str> = listing.lines().collect();
    files.sort_unstable();
    let sums = capture(Command::new("md5sum").current_dir(pkg).args(&files))?;
    let kib = capture(
        Command::new("du")
            .current_dir(pkg)
            .args(["-sk", "--apparent-size", "."]),
    )?;
    let kib = kib.split_whitespace().next().unwrap_or("0").to_string();
    let mut control = String::new();
    let _ = write!(
        control,
        "Package: bollwerk\n\
         Version: {version}\n\
         Architecture: amd64\n\
         Maintainer: bollwerk maintainers <maintainers@bollwerk.invalid>\n\
         Installed-Size: {kib}\n\
         Section: admin\n\
         Priority: optional\n\
         Description: host provisioning, hardening and CIS audit in one static binary\n \
         bollwerk applies a TOML profile (users and keys, sshd, firewall, fail2ban, sysctl,\n \
         updates, PostgreSQL, logs) with a plan, validation by the real tools, an atomic\n \
         journal and byte-identical rollback, audits the host against CIS Ubuntu 22.04\n \
         level 1, and replaces cloud-init on first boot.\n \
         .\n \
         The systemd units are installed, not enabled: enable bollwerk-firstboot.service\n \
         and bollwerk-audit.timer as docs/firstboot.md and docs/audit.md describe.\n"
    );
    let debian = pkg.join("DEBIAN");
    write_file(&debian.join("control"), control.as_bytes(), 0o644)?;
    write_file(&debian.join("md5sums"), sums.as_bytes(), 0o644)?;
    write_file(&debian.join("postinst"), MAINT_SCRIPT.as_bytes(), 0o755)?;
    Ok(())
}

/// The last commit's time (reproducible archives), or 0 outside git.
fn source_date_epoch(repo: &Path) -> String {
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH") {
        return v;
    }
    capture(
        Command::new("git")
            .current_dir(repo)
            .args(["log", "-1", "--format=%ct"]),
    )
    .map(|s| s.trim().to_string())
    .ok()
    .filter(|s| !s.is_empty())
    .unwrap_or_else(|| "0".into())
}

fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("xtask-gzip-{}", std::process::id()));
    fs::write(&dir, data).map_err(|e| format!("writing {}: {e}", dir.display()))?;
    let out = capture_bytes(Command::new("gzip").args(["-9n", "-c"]).arg(&dir));
    let _ = fs::remove_file(&dir);
    out
}

/// Copies `src` to `dst` (parents created 0755) with `mode`.
fn install_file(src: &Path, dst: &Path, mode: u32) -> Result<()> {
    let data = fs::read(src).map_err(|e| format!("reading {}: {e}", src.display()))?;
    write_file(dst, &data, mode)
}

fn write_file(dst: &Path, data: &[u8], mode: u32) -> Result<()> {
    if let Some(parent) = dst.parent() {
        mkdirs(parent)?;
    }
    fs::write(dst, data).map_err(|e| format!("writing {}: {e}", dst.display()))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", dst.display()))
}

/// `mkdir -p` with 0755 on every directory it creates (whatever the umask).
fn mkdirs(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        mkdirs(parent)?;
    }
    fs::create_dir(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", dir.display()))
}

/// Copies the regular files and directories below `src` to `dst` with their modes.
fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    mkdirs(dst)?;
    let entries = fs::read_dir(src).map_err(|e| format!("reading {}: {e}", src.display()))?;
    for e in entries {
        let e = e.map_err(|e| format!("reading {}: {e}", src.display()))?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let meta = e
            .metadata()
            .map_err(|err| format!("stat {}: {err}", from.display()))?;
        if meta.is_dir() {
            copy_tree(&from, &to)?;
        } else {
            install_file(&from, &to, meta.permissions().mode() & 0o7777)?;
        }
    }
    Ok(())
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .map_err(|e| format!("running {}: {e}", describe(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed: {status}", describe(cmd)))
    }
}

fn capture_bytes(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", describe(cmd)))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!("{} failed: {}", describe(cmd), out.status))
    }
}

fn capture(cmd: &mut Command) -> Result<String> {
    capture_bytes(cmd).map(|b| String::from_utf8_lossy(&b).into_owned())
}
