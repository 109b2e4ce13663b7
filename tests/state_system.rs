//! Effective state on a live host (issue 11): the audit judges the firewall by the ruleset the
//! kernel has loaded, not by the configuration files. A copy of the testbed root, hardened with
//! `cis-level1-server`, boots in a systemd-nspawn container with its own network namespace;
//! inside it, bollwerk audits the running system once with the ruleset nftables.service loaded
//! and once after `nft flush ruleset`. The configuration files are the same both times, so only
//! the live reading (`nft -j list ruleset`) can tell the two apart.

mod common;

use std::time::Duration;

use common::testbed::*;

fn statuses(json: &str) -> std::collections::BTreeMap<String, (String, String)> {
    let v: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("audit JSON: {e}\n{json}"));
    v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                (
                    r["status"].as_str().unwrap().to_string(),
                    r["evidence"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect()
}

#[test]
fn a_flushed_live_ruleset_fails_default_deny_although_the_files_still_say_deny() {
    let Some(tb) = testbed_or_skip("a_flushed_live_ruleset_fails_default_deny") else {
        return;
    };
    assert!(
        which("systemd-nspawn").is_some(),
        "systemd-nspawn missing: run tests/testbed/install-deps.sh"
    );
    let inst = tb.instance();
    let (_key, pubkey) = keypair(inst.dir(), "admin");
    let site = inst.dir().join("site.toml");
    std::fs::write(
        &site,
        format!(
            "extends = \"cis-level1-server\"\n[[users]]\nname = \"admin\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{pubkey}\"]\n"
        ),
    )
    .unwrap();
    let root = inst.root.to_string_lossy().into_owned();
    let out = run_capture(
        std::process::Command::new(bollwerk_bin()).args([
            "apply",
            "--profile",
            &site.to_string_lossy(),
            "--root",
            &root,
        ]),
        None,
        Duration::from_secs(900),
    );
    assert!(out.status.success(), "apply: {}", describe(&out));

    std::fs::copy(bollwerk_bin(), inst.path("/usr/local/sbin/bollwerk")).unwrap();
    // After nftables.service loaded the ruleset: audit, flush, audit again, power off.
    inst.write(
        "/etc/systemd/system/bollwerk-live.service",
        "[Unit]\nDescription=bollwerk live-ruleset test\nAfter=nftables.service multi-user.target\n\n[Service]\nType=oneshot\nExecStart=/bin/sh -c 'B=/usr/local/sbin/bollwerk; systemctl is-active nftables.service >/root/nft-active.out 2>&1; $B audit --format json >/root/loaded.json 2>/root/loaded.err; /usr/sbin/nft flush ruleset; $B audit --format json >/root/flushed.json 2>/root/flushed.err; echo done >/root/done'\nExecStartPost=/bin/systemctl poweroff --no-block\n\n[Install]\nWantedBy=multi-user.target\n",
    );
    inst.sh_ok("systemctl enable bollwerk-live.service >/dev/null 2>&1");
    let out = inst.boot_nspawn(Duration::from_secs(300));
    let text = |f: &str| std::fs::read_to_string(inst.path(f)).unwrap_or_default();
    assert_eq!(
        text("/root/done").trim(),
        "done",
        "the container did not run the audits: {}",
        describe(&out)
    );
    assert_eq!(
        text("/root/nft-active.out").trim(),
        "active",
        "nftables.service must have loaded the ruleset"
    );
    let loaded = statuses(&text("/root/loaded.json"));
    let flushed = statuses(&text("/root/flushed.json"));
    for id in [
        "firewall.default-deny-input",
        "firewall.enabled",
        "firewall.loopback",
        "firewall.ssh-allowed",
    ] {
        for (when, report, want) in [
            ("with the loaded ruleset", &loaded, "pass"),
            ("after `nft flush ruleset`", &flushed, "fail"),
        ] {
            let (st, ev) = &report[id];
            assert_eq!(st, want, "{id} {when}: {ev}");
            assert!(
                ev.contains("nft -j list ruleset") && !ev.contains("text form"),
                "{id} {when}: evidence names the live reading, the JSON ruleset of Debian 12's nft: {ev}"
            );
        }
    }
    // The files did not change between the two audits: a file-only reading would pass both.
    assert!(inst.read("/etc/nftables.conf").contains("include"));
}
