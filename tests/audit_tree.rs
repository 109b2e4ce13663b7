//! Audit tree tests on the Ubuntu 22.04 and Debian 12 fixtures: apply a profile in-process,
//! then audit with sshd unable to run (the static evaluation of the files, as for an image
//! without host keys): every check the profile covers passes, and the cloud-init drop-in that
//! re-enables passwords on a fresh Ubuntu is caught before.

mod common;

use bollwerk::audit::catalog::Catalog;
use bollwerk::audit::result::Status;
use bollwerk::audit::{AuditOptions, run};
use bollwerk::exec::FakeRunner;
use bollwerk::root::Root;
use common::tree::{Tree, fake_runner};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPci/6iPPKNm3TqnlFNu0Zy6jtqtz5kw0YO3RjFH01v alice@laptop";

fn static_runner() -> FakeRunner {
    let r = FakeRunner::new();
    r.push(
        "/usr/sbin/sshd -T",
        255,
        "",
        "sshd: no hostkeys available -- exiting.",
    );
    r
}

fn audit(t: &Tree, profile: Option<&bollwerk::profile::Loaded>) -> bollwerk::audit::result::Report {
    let cat = Catalog::embedded().unwrap();
    run(
        &cat,
        Root::new(t.root()).unwrap(),
        &static_runner(),
        profile,
        &AuditOptions::default(),
    )
    .unwrap()
}

fn apply_then_audit(fixture: &str) {
    let t = Tree::fixture(fixture);
    t.write("usr/sbin/sshd", "");
    t.write(
        "var/lib/dpkg/status",
        "Package: openssh-server\nStatus: install ok installed\nVersion: 1:8.9p1-3ubuntu0.10\n\nPackage: sudo\nStatus: install ok installed\nVersion: 1.9.9-1ubuntu2\n\n",
    );
    let before = audit(&t, None);
    let by = |r: &bollwerk::audit::result::Report, id: &str| {
        r.results.iter().find(|x| x.id == id).cloned().unwrap()
    };
    assert_eq!(by(&before, "ssh.permit-root-login").status, Status::Fail);
    assert!(
        by(&before, "ssh.permit-root-login")
            .evidence
            .contains("static configuration")
    );

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("site.toml");
    std::fs::write(
        &p,
        format!("extends = \"baseline\"\n[[users]]\nname = \"alice\"\ngroups = [\"sudo\"]\nsudo = \"password\"\nssh_keys = [\"{KEY}\"]\n"),
    )
    .unwrap();
    use clap::Parser;
    let cli = bollwerk::cli::Cli::try_parse_from([
        "bollwerk",
        "--root",
        t.root().to_str().unwrap(),
        "apply",
        "--profile",
        p.to_str().unwrap(),
    ])
    .unwrap();
    let mut out = Vec::new();
    let st = bollwerk::app::run(&cli, &fake_runner(), &mut out);
    assert_eq!(st.code(), 0, "{}", String::from_utf8_lossy(&out));

    let loaded = bollwerk::profile::load(p.to_str().unwrap()).unwrap();
    let after = audit(&t, Some(&loaded));
    let covered: Vec<_> = after
        .results
        .iter()
        .filter(|x| x.covered_by_profile == Some(true))
        .collect();
    assert!(covered.len() >= 25, "{}", covered.len());
    let bad: Vec<String> = covered
        .iter()
        .filter(|x| matches!(x.status, Status::Fail | Status::Error))
        .map(|x| format!("{} {}: {}", x.id, x.status, x.evidence))
        .collect();
    assert!(
        bad.is_empty(),
        "{fixture}: covered checks failing after apply:\n  {}",
        bad.join("\n  ")
    );
    assert_eq!(
        by(&after, "ssh.password-authentication").status,
        Status::Pass
    );
    assert!(after.summary.counts.score > before.summary.counts.score);
}

#[test]
fn ubuntu2204_apply_then_audit_static() {
    let t = Tree::fixture("ubuntu2204");
    // The cloud image's drop-in turns passwords back on: caught, and attributed.
    t.write("usr/sbin/sshd", "");
    t.write(
        "var/lib/dpkg/status",
        "Package: openssh-server\nStatus: install ok installed\nVersion: 1:8.9p1-3ubuntu0.10\n\n",
    );
    let r = audit(&t, None);
    let pw = r
        .results
        .iter()
        .find(|x| x.id == "ssh.password-authentication")
        .unwrap();
    if t.exists("etc/ssh/sshd_config.d/50-cloud-init.conf") {
        assert_eq!(pw.status, Status::Fail, "{}", pw.evidence);
    }
    apply_then_audit("ubuntu2204");
}

#[test]
fn debian12_apply_then_audit_static() {
    apply_then_audit("debian12");
}
