//! `apply --confirm` when the apply outlives its window (issue 10, item 7): the apply stops
//! activating, rolls itself back and exits 3; the revert unit waits for the lock instead of
//! giving up. Tree root with a `FakeRunner` (it records the `systemd-run` call); the live-host
//! fact is forced on, so nothing here touches the machine.

mod common;

use std::time::Duration;

use bollwerk::engine::{Context, Options};
use bollwerk::exec::Output;
use bollwerk::modules::firewall::confirm;
use bollwerk::root::Root;
use common::tree::*;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHPci/6iPPKNm3TqnlFNu0Zy6jtqtz5kw0YO3RjFH01v alice@laptop";

fn site() -> String {
    format!(
        "extends = \"baseline\"\n[host]\nhostname = \"confirm\"\n[[users]]\nname = \"deploy\"\ngroups = [\"sudo\"]\nsudo = \"nopasswd\"\nssh_keys = [\"{KEY}\"]\n"
    )
}

#[test]
fn an_apply_that_outlives_its_confirm_window_rolls_itself_back() {
    let t = Tree::fixture("debian12");
    let p = t.profile("site", &site());
    let mut before = t.snapshot();
    before.retain(|k, _| !k.starts_with("var/lib/bollwerk"));
    let runner = fake_runner();
    // The first handler takes longer than the whole window.
    runner.respond_with("/usr/bin/hostname", |_, _| {
        std::thread::sleep(Duration::from_millis(1500));
        Output::default()
    });
    let loaded = bollwerk::profile::load(&p).unwrap();
    let root = Root::new(t.root()).unwrap();
    let _lock = bollwerk::engine::journal::lock(&root).unwrap();
    let mut cx = Context::new(root.clone(), &runner, &loaded, Options::default()).unwrap();
    cx.facts.live = true;
    let plan = bollwerk::modules::plan_all(&cx).unwrap();
    assert!(!plan.is_empty());
    assert!(
        plan.handlers
            .iter()
            .any(|h| h.cmd.program == "/usr/bin/hostname"),
        "{:?}",
        plan.handlers
            .iter()
            .map(|h| h.cmd.display())
            .collect::<Vec<_>>()
    );
    let armed = confirm::arm(&cx, &plan, Duration::from_secs(1))
        .unwrap()
        .expect("armed");
    let log = runner.log();
    let timer = log
        .iter()
        .find(|c| c.starts_with("/usr/bin/systemd-run"))
        .expect("systemd-run was called");
    assert!(timer.contains("--on-active=1s"), "{timer}");
    assert!(timer.contains("confirm --revert"), "{timer}");
    drop(armed);

    let res = bollwerk::engine::apply::apply(&cx, &plan);
    let err = res.expect_err("the apply must stop once the window has passed");
    assert!(err.to_string().contains("--confirm window passed"), "{err}");
    // The handler after the slow one was never run.
    let ran_after = runner
        .log()
        .iter()
        .skip_while(|c| !c.starts_with("/usr/bin/hostname"))
        .skip(1)
        .any(|c| c.starts_with("/usr/bin/systemctl reload"));
    assert!(!ran_after, "{:?}", runner.log());

    let err = confirm::finish_or_revert(&root, &runner).unwrap_err();
    assert_eq!(err.exit_status(), bollwerk::ExitStatus::Failure, "{err}");
    assert!(err.to_string().contains("rolled back"), "{err}");
    let mut now = t.snapshot();
    now.retain(|k, _| !k.starts_with("var/lib/bollwerk"));
    assert_eq!(now, before, "every file of the apply is rolled back");
    assert!(!t.exists("var/lib/bollwerk/confirm/pending.json"));
    let log = runner.log();
    assert!(
        log.iter()
            .any(|c| c.starts_with("/usr/bin/systemctl stop bollwerk-confirm-")),
        "the timer is stopped: {log:?}"
    );
    // Nothing more to do for the timer's revert, and nothing left for the window check.
    assert!(confirm::check_window().is_ok());
    assert!(confirm::finish_or_revert(&root, &runner).is_ok());
}

#[test]
fn the_revert_waits_for_a_running_apply_instead_of_giving_up() {
    let t = Tree::fixture("debian12");
    let root = Root::new(t.root()).unwrap();
    let runner = fake_runner();
    bollwerk::engine::journal::ensure_state_dir(&root).unwrap();
    std::fs::create_dir_all(t.path("var/lib/bollwerk/confirm")).unwrap();
    let pending = r#"{"unit":"bollwerk-confirm-1","armed":"2026-01-01T00:00:00Z","deadline":"2026-01-01T00:02:00Z","backend":"nftables","ufw_was_active":false,"run_id":null}"#;
    t.write("var/lib/bollwerk/confirm/pending.json", pending);

    // 1. The apply finishes (releases the lock) after the timer fired: the revert then runs.
    let lock = bollwerk::engine::journal::lock(&root).unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(2500));
        drop(lock);
    });
    let started = std::time::Instant::now();
    let out = confirm::revert(&root, &runner).expect("the revert waits, then succeeds");
    assert!(started.elapsed() >= Duration::from_secs(2), "it waited");
    release.join().unwrap();
    assert!(out.contains("previous firewall ruleset restored"), "{out}");
    assert!(!t.exists("var/lib/bollwerk/confirm/pending.json"));

    // 2. The apply rolled itself back while the revert waited: nothing left to do.
    std::fs::create_dir_all(t.path("var/lib/bollwerk/confirm")).unwrap();
    t.write("var/lib/bollwerk/confirm/pending.json", pending);
    let lock = bollwerk::engine::journal::lock(&root).unwrap();
    let pending_path = t.path("var/lib/bollwerk/confirm/pending.json");
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(2500));
        std::fs::remove_file(pending_path).unwrap();
        drop(lock);
    });
    let out = confirm::revert(&root, &runner).unwrap();
    release.join().unwrap();
    assert!(out.contains("nothing left to revert"), "{out}");
}
