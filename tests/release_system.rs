//! System tests of the release artefacts that `cargo xtask dist` writes to `target/dist/`.
//!
//! * The `.deb` installs with `dpkg -i` into a copy of the Debian 12 testbed root (an overlay
//!   instance, commands in a chroot inside private mount and PID namespaces), `bollwerk
//!   --version` works there, `systemd-analyze verify` passes for every unit, every unit's
//!   `ExecStart`/`ExecStartPre` program exists, and `dpkg -r` leaves no file of ours behind.
//! * The tarball has the `.deb`'s layout, its binary is `static-pie linked` and matches
//!   `SHA256SUMS`, and every file in `SHA256SUMS` checks.
//!
//! Both are `#[ignore]`d in a plain `cargo test` because they need the dist output:
//! `tests/run-all.sh` runs them right after `cargo xtask dist --bin <the static binary>`.
//! Without `target/dist/` they skip loudly, and fail when `BOLLWERK_REQUIRE_SYSTEM_TESTS=1`.

mod common;

use common::testbed::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The artefacts of one `cargo xtask dist` run.
struct Dist {
    dir: PathBuf,
    version: String,
    deb: PathBuf,
    tarball: PathBuf,
}

const UNITS: &[&str] = &[
    "bollwerk-firstboot.service",
    "bollwerk-firstboot-network.service",
    "bollwerk-firstboot-final.service",
    "bollwerk-audit.service",
    "bollwerk-audit.timer",
];

/// `target/dist/` with the files for the crate's version, or None (loud skip; a panic in CI).
fn dist_or_skip(test: &str) -> Option<Dist> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dist");
    let version = env!("CARGO_PKG_VERSION").to_string();
    let dist = Dist {
        deb: dir.join(format!("bollwerk_{version}_amd64.deb")),
        tarball: dir.join(format!("bollwerk-{version}-x86_64-linux-musl.tar.gz")),
        dir,
        version,
    };
    let missing: Vec<_> = [&dist.deb, &dist.tarball, &dist.dir.join("SHA256SUMS")]
        .into_iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return Some(dist);
    }
    let reason = format!(
        "release artefacts missing ({}); run `cargo xtask dist` first",
        missing.join(", ")
    );
    if std::env::var("BOLLWERK_REQUIRE_SYSTEM_TESTS").as_deref() == Ok("1") {
        panic!("{test}: {reason} (BOLLWERK_REQUIRE_SYSTEM_TESTS=1)");
    }
    let _ = writeln!(
        std::io::stderr().lock(),
        "\n**********\nSKIPPED (release test): {reason}\n  test: {test}\n**********\n"
    );
    None
}

/// Runs a host command, panicking with its output unless it succeeds; returns stdout.
fn host_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}\n{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The regular files (and symlinks) a `.deb` installs, as absolute paths.
fn deb_files(deb: &Path) -> Vec<String> {
    let listing = host_ok(Command::new("dpkg-deb").arg("--contents").arg(deb));
    listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_string())
        .collect()
}

/// Programs a unit runs: the first word of every `ExecStart*=` line, without the prefixes
/// (`-`, `@`, `:`, `+`, `!`) systemd allows.
fn unit_programs(unit: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().starts_with("ExecStart").then_some(v)
        })
        .filter_map(|v| {
            v.trim()
                .trim_start_matches(['-', '@', ':', '+', '!'])
                .split_whitespace()
                .next()
                .map(str::to_string)
        })
        .collect()
}

#[test]
#[ignore = "needs `cargo xtask dist` output; tests/run-all.sh runs it after the static build"]
fn deb_installs_verifies_and_removes_cleanly_in_the_testbed() {
    let Some(dist) = dist_or_skip("deb_installs_verifies_and_removes_cleanly_in_the_testbed")
    else {
        return;
    };
    let Some(tb) = testbed_or_skip("deb_installs_verifies_and_removes_cleanly_in_the_testbed")
    else {
        return;
    };
    let files = deb_files(&dist.deb);
    for want in [
        "/usr/sbin/bollwerk",
        "/usr/share/man/man1/bollwerk.1.gz",
        "/usr/share/bash-completion/completions/bollwerk",
        "/usr/share/zsh/vendor-completions/_bollwerk",
        "/usr/share/fish/vendor_completions.d/bollwerk.fish",
        "/usr/share/doc/bollwerk/README.md",
        "/usr/share/doc/bollwerk/firstboot.md",
        "/usr/share/doc/bollwerk/copyright",
    ]
    .into_iter()
    .map(String::from)
    .chain(UNITS.iter().map(|u| format!("/lib/systemd/system/{u}")))
    {
        assert!(files.contains(&want), "{want} not in the .deb: {files:#?}");
    }
    // Maintainer scripts: nothing enabled or started, only a daemon-reload under systemd.
    let ctl = TempDir::new("deb-control");
    host_ok(
        Command::new("dpkg-deb")
            .arg("--control")
            .arg(&dist.deb)
            .arg(ctl.path()),
    );
    for script in ["preinst", "prerm", "postinst", "postrm"] {
        let Ok(text) = std::fs::read_to_string(ctl.path().join(script)) else {
            continue;
        };
        let words: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(str::split_whitespace)
            .collect();
        for bad in [
            "enable",
            "start",
            "restart",
            "useradd",
            "adduser",
            "deb-systemd-invoke",
            "deb-systemd-helper",
        ] {
            assert!(!words.contains(&bad), "{script} runs {bad}:\n{text}");
        }
        assert!(words.contains(&"daemon-reload"), "{script}:\n{text}");
    }

    let inst = tb.instance();
    // The testbed's dpkg skips docs and man pages (mmdebstrap's path-exclude); a real system
    // installs them, so the copy does too.
    let _ = std::fs::remove_file(inst.path("/etc/dpkg/dpkg.cfg.d/99mmdebstrap"));
    std::fs::copy(&dist.deb, inst.path("/x.deb")).expect("copy the .deb into the root");
    let out = inst.chroot(&["dpkg", "-i", "/x.deb"]);
    assert!(out.status.success(), "dpkg -i:\n{}", describe(&out));
    std::fs::remove_file(inst.path("/x.deb")).expect("remove /x.deb");

    let v = stdout_ok(
        &inst.chroot(&["bollwerk", "--version"]),
        "bollwerk --version",
    );
    assert_eq!(v.trim(), format!("bollwerk {}", dist.version));
    for f in &files {
        assert!(inst.path(f).symlink_metadata().is_ok(), "{f} not installed");
    }
    let status = stdout_ok(
        &inst.chroot(&["dpkg-query", "-W", "-f=${Status} ${Version}", "bollwerk"]),
        "dpkg-query",
    );
    assert_eq!(status, format!("install ok installed {}", dist.version));

    // systemd's own checks, and every program a unit starts exists in the root.
    let mut argv = vec!["systemd-analyze", "verify", "--man=no"];
    let paths: Vec<String> = UNITS
        .iter()
        .map(|u| format!("/lib/systemd/system/{u}"))
        .collect();
    argv.extend(paths.iter().map(String::as_str));
    let out = inst.chroot(&argv);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !err.contains("bollwerk"),
        "systemd-analyze verify:\n{}",
        describe(&out)
    );
    for u in UNITS {
        let text = inst.read(format!("/lib/systemd/system/{u}"));
        for prog in unit_programs(&text) {
            let meta = std::fs::metadata(inst.path(&prog))
                .unwrap_or_else(|e| panic!("{u}: {prog} does not exist in the root: {e}"));
            use std::os::unix::fs::PermissionsExt;
            assert!(
                meta.permissions().mode() & 0o111 != 0,
                "{u}: {prog} is not executable"
            );
        }
        if u.ends_with(".service") {
            assert!(
                text.contains("ExecStart=/usr/sbin/bollwerk "),
                "{u} must run /usr/sbin/bollwerk:\n{text}"
            );
        }
    }
    // The man page and a completion are what `bollwerk` itself generates.
    let man = stdout_ok(&inst.chroot(&["bollwerk", "man"]), "bollwerk man");
    let gz = stdout_ok(
        &inst.chroot(&["sh", "-c", "zcat /usr/share/man/man1/bollwerk.1.gz"]),
        "zcat man page",
    );
    assert_eq!(man, gz, "packaged man page differs from `bollwerk man`");

    // Removal: every file of ours is gone, and nothing named after us is left anywhere in the
    // copy's changed files (the overlay's upper dir holds exactly what dpkg touched).
    let out = inst.chroot(&["dpkg", "-r", "bollwerk"]);
    assert!(out.status.success(), "dpkg -r:\n{}", describe(&out));
    for f in &files {
        assert!(
            inst.path(f).symlink_metadata().is_err(),
            "{f} left after dpkg -r"
        );
    }
    let left = host_ok(Command::new("find").arg(inst.dir().join("upper")).args([
        "-name",
        "*bollwerk*",
        "-printf",
        "%P\\n",
    ]));
    assert!(left.trim().is_empty(), "left after dpkg -r:\n{left}");
    let out = inst.chroot(&["dpkg-query", "-W", "-f=${Status}", "bollwerk"]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() || status.contains("not-installed"),
        "package still known after dpkg -r: {status}"
    );
}

#[test]
#[ignore = "needs `cargo xtask dist` output; tests/run-all.sh runs it after the static build"]
fn tarball_is_static_pie_matches_sha256sums_and_has_the_deb_layout() {
    let Some(dist) =
        dist_or_skip("tarball_is_static_pie_matches_sha256sums_and_has_the_deb_layout")
    else {
        return;
    };
    // Every file listed checks, and the list names the three artefacts.
    host_ok(Command::new("sha256sum").current_dir(&dist.dir).args([
        "--check",
        "--strict",
        "SHA256SUMS",
    ]));
    let sums = std::fs::read_to_string(dist.dir.join("SHA256SUMS")).expect("read SHA256SUMS");
    let bare = format!("bollwerk-{}-x86_64-linux-musl", dist.version);
    let sum_of = |name: &str| {
        sums.lines()
            .find_map(|l| {
                let (h, f) = l.split_once("  ")?;
                (f == name).then(|| h.to_string())
            })
            .unwrap_or_else(|| panic!("{name} not in SHA256SUMS:\n{sums}"))
    };
    for f in [&dist.deb, &dist.tarball] {
        sum_of(&f.file_name().unwrap().to_string_lossy());
    }
    let bin_sum = sum_of(&bare);

    let tmp = TempDir::new("tarball");
    host_ok(
        Command::new("tar")
            .arg("-xzf")
            .arg(&dist.tarball)
            .arg("-C")
            .arg(tmp.path()),
    );
    let top = tmp.path().join(format!("bollwerk-{}", dist.version));
    let bin = top.join("usr/sbin/bollwerk");
    let file = host_ok(Command::new("file").arg(&bin));
    assert!(file.contains("static-pie linked"), "{file}");
    let got = host_ok(Command::new("sha256sum").arg(&bin));
    assert_eq!(
        got.split_whitespace().next(),
        Some(bin_sum.as_str()),
        "tarball binary differs from SHA256SUMS' {bare}"
    );
    let v = host_ok(Command::new(&bin).arg("--version"));
    assert_eq!(v.trim(), format!("bollwerk {}", dist.version));

    // Same layout as the .deb, and owned by root in the archive.
    let listing = host_ok(Command::new("tar").args(["-tvzf"]).arg(&dist.tarball));
    let mut tar_files: Vec<String> = listing
        .lines()
        .filter(|l| !l.starts_with('d'))
        .inspect(|l| {
            assert!(
                l.contains(" root/root ") || l.contains(" 0/0 "),
                "not root-owned: {l}"
            )
        })
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| {
            p.strip_prefix(&format!("bollwerk-{}", dist.version))
                .unwrap_or(p)
                .to_string()
        })
        .collect();
    let mut deb = deb_files(&dist.deb);
    tar_files.sort();
    deb.sort();
    assert_eq!(tar_files, deb, "tarball and .deb layouts differ");
}
