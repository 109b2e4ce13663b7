//! Effective-state tree tests: an offline root judged only from evidence (kernel-less tree,
//! offline services), the state layer read directly on the Debian 12 fixture, and the loaded
//! ruleset of a live host as `nft -j list ruleset` prints it (output of nft 1.0.6 captured
//! in a network namespace: tests/fixtures/state/nft/capture.sh).

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

fn nft_fixture(case: &str, ext: &str) -> String {
    let p = format!(
        "{}/tests/fixtures/state/nft/{case}.{ext}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// A chain as judged: table, name, hook, effective policy, each rule's words.
type ChainModel = (String, String, Option<String>, String, Vec<Vec<String>>);

/// The model of a chain without the rule text as printed (counters, comments).
fn judged(chains: &[bollwerk::state::firewall::Chain]) -> Vec<ChainModel> {
    chains
        .iter()
        .map(|c| {
            (
                c.table.clone(),
                c.name.clone(),
                c.hook.clone(),
                c.effective_policy().to_string(),
                c.rules.iter().map(|r| r.words.clone()).collect(),
            )
        })
        .collect()
}

#[test]
fn loaded_ruleset_from_nft_json_is_the_model_the_text_gives() {
    use bollwerk::state::firewall::{parse_json_ruleset, parse_ruleset};
    for case in ["hardened", "other-style", "minimal", "flushed"] {
        let json = parse_json_ruleset(&nft_fixture(case, "json"))
            .unwrap_or_else(|e| panic!("{case}.json: {e}"));
        let text = parse_ruleset(&nft_fixture(case, "txt"));
        assert_eq!(
            judged(&json),
            judged(&text),
            "{case}: JSON and text readings differ"
        );
    }

    // bollwerk's style: policy drop, loopback, spoofed sources, established/related, port sets.
    let h = parse_json_ruleset(&nft_fixture("hardened", "json")).unwrap();
    let input = h.iter().find(|c| c.name == "input").unwrap();
    assert_eq!(
        (
            input.table.as_str(),
            input.hook.as_deref(),
            input.effective_policy()
        ),
        ("inet bollwerk", Some("input"), "drop")
    );
    assert!(input.rules[0].is_loopback_accept(), "{:?}", input.rules[0]);
    assert!(input.rules[1].drops_source("ip", "127.0.0.0/8"));
    assert!(input.rules[2].drops_source("ip6", "::1"));
    let est = &input.rules[3];
    assert_eq!(est.matches(), ["ct", "state", "established", "related"]);
    assert_eq!(est.verdict(), Some("accept"));
    let accepted: Vec<&str> = ["22", "80", "443", "51820", "8080"]
        .into_iter()
        .filter(|p| input.rules.iter().any(|r| r.accepts_port(p)))
        .collect();
    assert_eq!(accepted, ["22", "80", "443", "51820"]);
    // The rate-limit rule drops (its `update @limit_v4 { … }` is not an accept).
    let limit = input
        .rules
        .iter()
        .find(|r| r.words.contains(&"@limit_v4".to_string()))
        .unwrap();
    assert_eq!(limit.verdict(), Some("drop"));
    let ranges: Vec<(&str, Vec<(u16, u16)>)> = input
        .rules
        .iter()
        .filter(|r| r.verdict() == Some("accept") && !r.ports_after("dport").is_empty())
        .map(|r| (r.transport(), r.ports_after("dport")))
        .collect();
    assert_eq!(
        ranges,
        [
            ("udp", vec![(546, 546)]),
            ("tcp", vec![(22, 22)]),
            ("tcp", vec![(80, 80), (443, 443)]),
            ("tcp", vec![(6000, 6007)]),
            ("udp", vec![(51820, 51820)]),
        ]
    );
    let forward: Vec<_> = h
        .iter()
        .filter(|c| c.hook.as_deref() == Some("forward"))
        .collect();
    assert_eq!(
        forward
            .iter()
            .map(|c| (c.name.as_str(), c.effective_policy()))
            .collect::<Vec<_>>(),
        [("forward", "drop"), ("docker_published", "accept")]
    );
    // nft 1.0.6 prints `ct original proto-dst` of an inet table in hex: still ports.
    let published: Vec<(u16, u16)> = forward[1]
        .rules
        .iter()
        .flat_map(|r| r.ports_after("proto-dst"))
        .collect();
    assert_eq!(published, [(8080, 8080), (8443, 8443), (53, 53)]);

    // Another style: `iifname "lo" counter accept`, a verdict map, a jump, a set reference,
    // and a second table whose input chain has the default policy accept.
    let o = parse_json_ruleset(&nft_fixture("other-style", "json")).unwrap();
    let inputs: Vec<_> = o
        .iter()
        .filter(|c| c.hook.as_deref() == Some("input"))
        .collect();
    assert_eq!(
        inputs
            .iter()
            .map(|c| (c.table.as_str(), c.effective_policy()))
            .collect::<Vec<_>>(),
        [("ip fw", "drop"), ("inet filter", "accept")]
    );
    assert!(inputs[0].rules[0].is_loopback_accept());
    assert_eq!(
        inputs[0].rules[2].verdict(),
        None,
        "a verdict map has no single verdict"
    );
    assert_eq!(inputs[0].rules[3].words, ["jump", "services"]);
    let services = o.iter().find(|c| c.name == "services").unwrap();
    assert_eq!(services.hook, None);
    assert!(services.rules[0].accepts_port("2222"));
    assert_eq!(
        services.rules[1].matches(),
        ["ip", "saddr", "@admins", "tcp", "dport", "5432"]
    );
    assert!(
        !services.rules[3].is_loopback_accept(),
        "lo and a port is not all of loopback"
    );

    // A flushed ruleset: nothing loaded.
    assert!(
        parse_json_ruleset(&nft_fixture("flushed", "json"))
            .unwrap()
            .is_empty()
    );
}

/// A live audit (systemd running) of a root whose files say "drop" while nft answers with
/// `answer`: the loaded ruleset decides, and the evidence names how it was read.
fn live_firewall_audit(
    runner: &FakeRunner,
) -> std::collections::BTreeMap<String, (Status, String)> {
    let t = Tree::fixture("debian12");
    t.write(
        "var/lib/dpkg/status",
        "Package: nftables\nStatus: install ok installed\nVersion: 1.0.6-2\n\nPackage: openssh-server\nStatus: install ok installed\nVersion: 1:9.2p1-2\n\n",
    );
    t.write(
        "lib/systemd/system/nftables.service",
        "[Unit]\nDescription=nftables\n[Service]\nExecStart=/usr/sbin/nft -f /etc/nftables.conf\n[Install]\nWantedBy=sysinit.target\n",
    );
    let wants = t.path("etc/systemd/system/sysinit.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(
        "/lib/systemd/system/nftables.service",
        wants.join("nftables.service"),
    )
    .unwrap();
    t.write(
        "etc/nftables.conf",
        &format!("#!/usr/sbin/nft -f\n{}", nft_fixture("hardened", "nft")),
    );
    runner.respond(
        "/usr/sbin/sshd -T",
        0,
        "port 22\npasswordauthentication no\n",
    );
    let ids = [
        "firewall.enabled",
        "firewall.default-deny-input",
        "firewall.default-deny-forward",
        "firewall.loopback",
        "firewall.ssh-allowed",
    ];
    let opts = AuditOptions {
        level: 2,
        threads: Some(2),
        systemd_running: Some(true),
        only: Some(ids.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let r = run(
        &Catalog::embedded().unwrap(),
        Root::new(t.root()).unwrap(),
        runner,
        None,
        &opts,
    )
    .unwrap();
    assert_eq!(r.results.len(), ids.len());
    r.results
        .iter()
        .map(|x| (x.id.clone(), (x.status, x.evidence.clone())))
        .collect()
}

#[test]
fn live_audit_judges_the_json_ruleset_and_names_its_source() {
    let loaded = FakeRunner::new();
    loaded.respond(
        "/usr/sbin/nft -j list ruleset",
        0,
        &nft_fixture("hardened", "json"),
    );
    for (id, (st, ev)) in live_firewall_audit(&loaded) {
        assert_eq!(st, Status::Pass, "{id}: {ev}");
        assert!(ev.contains("nft -j list ruleset"), "{id}: {ev}");
    }
    assert!(
        !loaded.log().iter().any(|c| c.ends_with("nft list ruleset")),
        "the text form is read only when -j is refused: {:?}",
        loaded.log()
    );

    let flushed = FakeRunner::new();
    flushed.respond(
        "/usr/sbin/nft -j list ruleset",
        0,
        &nft_fixture("flushed", "json"),
    );
    for (id, (st, ev)) in live_firewall_audit(&flushed) {
        assert_eq!(st, Status::Fail, "{id} with a flushed ruleset: {ev}");
        assert!(ev.contains("nft -j list ruleset"), "{id}: {ev}");
    }

    let no_json = FakeRunner::new();
    no_json.push(
        "/usr/sbin/nft -j list ruleset",
        1,
        "",
        "Error: JSON support not compiled-in",
    );
    no_json.respond(
        "/usr/sbin/nft list ruleset",
        0,
        &nft_fixture("hardened", "txt"),
    );
    for (id, (st, ev)) in live_firewall_audit(&no_json) {
        assert_eq!(st, Status::Pass, "{id}: {ev}");
        assert!(
            ev.contains("nft list ruleset (text form; nft -j refused: ")
                && ev.contains("JSON support not compiled-in"),
            "{id}: {ev}"
        );
    }

    let denied = FakeRunner::new();
    denied.push("/usr/sbin/nft", 1, "", "Error: Operation not permitted");
    for (id, (st, ev)) in live_firewall_audit(&denied) {
        assert_eq!(
            st,
            Status::Error,
            "{id}: an unreadable ruleset is no verdict: {ev}"
        );
    }
}
