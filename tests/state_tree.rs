//! Effective-state tree tests: an offline root judged only from evidence (kernel-less tree,
//! offline services), and the state layer read directly on the Debian 12 fixture.

mod common;

use bollwerk::audit::catalog::Catalog;
use bollwerk::audit::result::Status;
use bollwerk::audit::{AuditOptions, run};
use bollwerk::exec::FakeRunner;
use bollwerk::root::Root;
use common::tree::Tree;

fn offline_report(t: &Tree) -> bollwerk::audit::result::Report {
    let runner = FakeRunner::new();
    runner.push(
        "/usr/sbin/sshd -T",
        255,
        "",
        "sshd: no hostkeys available -- exiting.",
    );
    let opts = AuditOptions {
        level: 2,
        threads: Some(2),
        ..Default::default()
    };
    run(
        &Catalog::embedded().unwrap(),
        Root::new(t.root()).unwrap(),
        &runner,
        None,
        &opts,
    )
    .unwrap()
}

#[test]
fn offline_tree_without_kernel_invents_no_evidence() {
    let t = Tree::fixture("debian12");
    let _ = std::fs::remove_dir_all(t.root().join("lib/modules"));
    t.write(
        "var/lib/dpkg/status",
        "Package: fail2ban\nStatus: install ok installed\nVersion: 1.0.1-1\n\nPackage: cron\nStatus: install ok installed\nVersion: 3.0-1\n\n",
    );
    t.write(
        "lib/systemd/system/cron.service",
        "[Unit]\nDescription=cron\n[Service]\nExecStart=/usr/sbin/cron\n[Install]\nWantedBy=multi-user.target\n",
    );
    let wants = t.path("etc/systemd/system/multi-user.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(
        "/lib/systemd/system/cron.service",
        wants.join("cron.service"),
    )
    .unwrap();
    t.write("etc/fail2ban/jail.local", "[sshd]\nenabled = true\n");
    let r = offline_report(&t);
    let by = |id: &str| r.results.iter().find(|x| x.id == id).unwrap();
    // No kernel under lib/modules: no kernel-module check passes.
    let kmods: Vec<_> = r
        .results
        .iter()
        .filter(|x| x.id.starts_with("kmod."))
        .collect();
    assert!(!kmods.is_empty());
    for k in &kmods {
        assert_eq!(k.status, Status::NotEvaluated, "{}: {}", k.id, k.evidence);
        assert!(
            k.evidence.contains("no kernel under lib/modules"),
            "{}",
            k.evidence
        );
    }
    // Offline services: enabled is read from the links, activity is not evaluated.
    let cron = by("cron.enabled");
    assert_eq!(cron.status, Status::NotEvaluated, "{}", cron.evidence);
    assert!(
        cron.evidence.contains("cron.service enabled"),
        "{}",
        cron.evidence
    );
    assert!(
        cron.evidence.contains("active: not evaluated"),
        "{}",
        cron.evidence
    );
    // The fail2ban jail's running half is not a hard-coded pass.
    let jail = by("fail2ban.sshd-jail");
    assert_ne!(jail.status, Status::Pass, "{}", jail.evidence);
    assert!(
        jail.evidence.contains("running: not evaluated"),
        "{}",
        jail.evidence
    );
    // No fabricated /dev/shm mount.
    for id in ["mount.dev-shm-nodev", "mount.dev-shm-nosuid"] {
        assert_ne!(by(id).status, Status::Pass, "{id}: {}", by(id).evidence);
    }
    assert!(
        !r.results
            .iter()
            .any(|x| x.evidence.contains("systemd's built-in"))
    );
    // The score's denominator is named and not-evaluated checks are outside it.
    let c = &r.summary.counts;
    assert!(c.not_evaluated >= kmods.len() as u32);
    assert_eq!(c.judged, c.pass + c.fail);
    assert!(
        c.score_text()
            .contains(&format!("{} not evaluated", c.not_evaluated))
    );
}

#[test]
fn pam_state_follows_debian_includes() {
    let t = Tree::fixture("debian12");
    // Debian's stock layout: sshd includes common-auth.
    t.write(
        "etc/pam.d/sshd",
        "@include common-auth\naccount required pam_nologin.so\n",
    );
    t.write(
        "etc/pam.d/common-auth",
        "auth\t[success=1 default=ignore]\tpam_unix.so nullok\nauth\trequisite\t\t\tpam_deny.so\nauth\trequired\t\t\tpam_permit.so\n",
    );
    let root = Root::new(t.root()).unwrap();
    let lines = bollwerk::state::pam::stack(&root, "sshd")
        .unwrap()
        .expect("sshd pam service");
    // @include common-auth is followed: pam_unix appears with its source file.
    let unix = lines
        .iter()
        .find(|l| l.pam_type == "auth" && l.module == "pam_unix.so")
        .expect("pam_unix in the auth stack");
    assert!(unix.at.contains("common-auth"), "{}", unix.at);
    assert!(unix.enforcing(), "{unix:?}");
}
