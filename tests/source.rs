//! The config file watcher: reload on change, keep the last good config on
//! any problem, follow symlink swaps, never touch the percent in force.
//!
//! Every watcher here has no environment override, so these tests do not
//! depend on the environment (tests/source_env.rs covers the override).

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_upload_rollout::*;
use async_upload_rollout::{
    act::log::{LogEvent, LogRecord, read_log},
    act::{ConfigFormat, ConfigWatcher, PollOutcome, SourceError},
};

fn rollout() -> Arc<Rollout> {
    Arc::new(Rollout::new(RolloutConfig::default()))
}

fn watcher(path: &Path, rollout: &Arc<Rollout>) -> ConfigWatcher {
    ConfigWatcher::new(path, rollout.clone())
        .unwrap()
        .with_env_override(None)
}

/// One poll that stores a new config; returns the file's config.
fn applied(watcher: &mut ConfigWatcher) -> RolloutConfig {
    match watcher.poll_once().unwrap() {
        PollOutcome::Applied(config) => config,
        other => panic!("not applied: {other:?}"),
    }
}

fn pct(whole: u32) -> Percent {
    Percent::from_whole(whole).unwrap()
}

#[test]
fn a_written_file_is_applied_within_one_poll_but_not_its_percent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.toml");
    fs::write(&path, "percent = 10\nforce_async = [\"vip\"]\n").unwrap();
    let rollout = rollout();
    let mut watcher = watcher(&path, &rollout);

    let mut expected = RolloutConfig::with_percent(pct(10));
    expected.force_async = vec!["vip".into()];
    assert_eq!(applied(&mut watcher), expected, "the file's config");
    // Everything but the percent, which is the controller's.
    assert_eq!(rollout.config().force_async, ["vip"]);
    assert_eq!(rollout.percent(), Percent::ZERO);

    fs::write(&path, "percent = 50\nkill_switch = true\n").unwrap();
    assert_eq!(applied(&mut watcher).percent, pct(50));
    assert!(rollout.config().kill_switch);
    assert!(rollout.config().force_async.is_empty());
    assert_eq!(rollout.percent(), Percent::ZERO);
    assert_eq!(watcher.applied(), 2);
    assert_eq!(watcher.errors(), 0);
}

#[test]
fn rewriting_the_same_config_does_not_swap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.toml");
    fs::write(&path, "percent = 10\n").unwrap();
    let rollout = rollout();
    let mut watcher = watcher(&path, &rollout);
    applied(&mut watcher);

    // Same bytes, written again.
    fs::write(&path, "percent = 10\n").unwrap();
    assert_eq!(watcher.poll_once().unwrap(), PollOutcome::Unchanged);
    // Other bytes, same config: a comment stores nothing.
    let before = rollout.config();
    fs::write(&path, "# reviewed\npercent = 10\n").unwrap();
    assert_eq!(watcher.poll_once().unwrap(), PollOutcome::Unchanged);
    assert!(Arc::ptr_eq(&rollout.config(), &before), "no store");
    assert_eq!(watcher.applied(), 1);
}

#[test]
fn a_change_of_the_percent_alone_changes_nothing_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.toml");
    let log_path = dir.path().join("metrics.jsonl");
    fs::write(&path, "percent = 10\n").unwrap();
    let rollout = rollout();
    rollout.set_percent(pct(10)); // as a controller would
    let mut watcher = watcher(&path, &rollout).with_log(JsonlSink::open(&log_path).unwrap());
    applied(&mut watcher);
    let before = rollout.config();

    fs::write(&path, "percent = 50\n").unwrap();
    assert_eq!(watcher.poll_once().unwrap(), PollOutcome::Unchanged);
    assert!(Arc::ptr_eq(&rollout.config(), &before), "no store");
    assert_eq!(rollout.percent(), pct(10));
    let log = read_log::<LogRecord>(&log_path).unwrap().records;
    let note = log.last().unwrap().reason.as_deref().unwrap();
    assert!(note.contains("10% -> 50% ignored"), "{note}");
    assert!(note.contains("controller"), "{note}");
}

#[test]
fn a_config_change_after_a_rollback_keeps_nothing_async() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.toml");
    fs::write(&path, "percent = 50\nforce_async = [\"load-test-1\"]\n").unwrap();
    let rollout = rollout();
    rollout.set_percent(pct(50));
    let mut watcher = watcher(&path, &rollout);
    applied(&mut watcher);
    assert!(rollout.should_use_async("load-test-1"));

    rollout.halt(); // what a rollback does
    // Any edit, even one that only touches force_sync, keeps the halt.
    fs::write(
        &path,
        "percent = 100\nforce_async = [\"load-test-1\"]\nforce_sync = [\"vip\"]\n",
    )
    .unwrap();
    applied(&mut watcher);
    assert_eq!(rollout.config().force_sync, ["vip"]);
    assert!(rollout.is_halted());
    assert_eq!(rollout.percent(), Percent::ZERO);
    assert!(!rollout.should_use_async("load-test-1"));
    assert!((0..1000).all(|i| !rollout.should_use_async(&format!("id-{i}"))));
}

#[test]
fn an_empty_or_half_written_file_keeps_the_last_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.toml");
    fs::write(
        &path,
        "percent = 10\nforce_sync = [\"vip\"]\nkill_switch = true\n",
    )
    .unwrap();
    let rollout = rollout();
    let mut watcher = watcher(&path, &rollout);
    applied(&mut watcher);

    // An editor truncates, then writes: each intermediate state is refused.
    for (text, says) in [
        ("", "empty"),
        ("\n  \n", "empty"),
        ("force_sync = [\"vip\"]\n", "`percent`"),
    ] {
        fs::write(&path, text).unwrap();
        let err = watcher.poll_once().unwrap_err();
        assert!(
            matches!(err, SourceError::Parse { .. }),
            "{text:?}: {err:?}"
        );
        assert!(err.to_string().contains(says), "{text:?}: {err}");
        assert_eq!(rollout.config().force_sync, ["vip"], "{text:?}");
        assert!(rollout.config().kill_switch, "{text:?}");
    }
    let json = dir.path().join("rollout.json");
    fs::write(&json, "{}").unwrap();
    let mut watcher = ConfigWatcher::new(&json, rollout.clone())
        .unwrap()
        .with_env_override(None);
    let err = watcher.poll_once().unwrap_err();
    assert!(err.to_string().contains("`percent`"), "{err}");
    assert!(rollout.config().kill_switch);
}

#[test]
fn garbage_keeps_the_old_config_and_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.toml");
    let log_path = dir.path().join("metrics.jsonl");
    fs::write(&path, "percent = 10\nforce_sync = [\"a\"]\n").unwrap();
    let rollout = rollout();
    let mut watcher = watcher(&path, &rollout).with_log(JsonlSink::open(&log_path).unwrap());
    applied(&mut watcher);

    let cases: &[(&str, usize, &str)] = &[
        ("percent = 10\nsalt = \"s\"\nkill_switch = maybe\n", 3, ""),
        ("percent = 150\n", 1, "150"),
        ("percent = 10\npercnt = 20\n", 2, "percnt"),
        ("percent = [\n", 1, ""),
    ];
    for (i, &(text, line, mentions)) in cases.iter().enumerate() {
        fs::write(&path, text).unwrap();
        let err = watcher.poll_once().unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, SourceError::Parse { line: Some(l), .. } if l == line),
            "{text:?}: {err:?}"
        );
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(&format!("line {line}")), "{message}");
        assert!(message.contains(mentions), "{message}");
        assert_eq!(err.path(), path);
        assert_eq!(rollout.config().force_sync, ["a"], "old config kept");
        assert_eq!(watcher.errors(), i as u64 + 1);
        assert_eq!(watcher.last_error(), Some(message));
        // The same bad file is reported once, not at every poll.
        assert_eq!(watcher.poll_once().unwrap(), PollOutcome::Unchanged);
        assert_eq!(watcher.errors(), i as u64 + 1);
    }

    fs::write(&path, "percent = 20\n").unwrap();
    applied(&mut watcher);
    assert_eq!(watcher.last_error(), None);
    assert!(rollout.config().force_sync.is_empty());

    let log = read_log::<LogRecord>(&log_path).unwrap().records;
    assert_eq!(log.len(), 1 + cases.len() + 1);
    assert!(log.iter().all(|r| r.event == LogEvent::Config));
    let rejected = log[1].reason.as_deref().unwrap();
    assert!(rejected.contains("rollout.toml, line 3"), "{rejected}");
    let last = log.last().unwrap().reason.as_deref().unwrap();
    assert!(last.contains("starting request"), "{last}");
}

#[test]
fn json_errors_name_the_line_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.json");
    fs::write(&path, "{\n  \"percent\": 10,\n  \"kill_switch\": 1\n}\n").unwrap();
    let rollout = rollout();
    let mut watcher = watcher(&path, &rollout);
    let err = watcher.poll_once().unwrap_err();
    assert!(
        matches!(err, SourceError::Parse { line: Some(3), .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("rollout.json, line 3"), "{err}");
    assert!(!rollout.config().kill_switch);

    fs::write(&path, r#"{"percent": 1, "kill_switch": true}"#).unwrap();
    applied(&mut watcher);
    assert!(rollout.config().kill_switch);
}

#[test]
fn a_deleted_file_keeps_the_old_config_and_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.toml");
    let text = "percent = 10\nforce_sync = [\"a\"]\n";
    fs::write(&path, text).unwrap();
    let rollout = rollout();
    let mut watcher = watcher(&path, &rollout);
    applied(&mut watcher);

    fs::remove_file(&path).unwrap();
    let err = watcher.poll_once().unwrap_err();
    assert!(matches!(err, SourceError::Missing { .. }), "{err:?}");
    assert!(err.to_string().contains("rollout.toml"), "{err}");
    assert_eq!(rollout.config().force_sync, ["a"]);
    assert_eq!(watcher.errors(), 1);
    assert_eq!(watcher.poll_once().unwrap(), PollOutcome::Unchanged);
    assert_eq!(watcher.errors(), 1);

    // Back with the same config: nothing to store, the problem is over.
    fs::write(&path, text).unwrap();
    assert_eq!(watcher.poll_once().unwrap(), PollOutcome::Unchanged);
    assert_eq!(watcher.last_error(), None);
}

#[cfg(unix)]
#[test]
fn a_configmap_style_symlink_swap_is_seen() {
    use std::os::unix::fs::symlink;

    // The kubelet's layout: rollout.toml -> ..data/rollout.toml,
    // ..data -> ..2025_11_05_v1; an update writes a new directory and
    // renames a new ..data link over the old one.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let v1 = root.join("..2025_11_05_v1");
    let v2 = root.join("..2025_11_06_v2");
    fs::create_dir(&v1).unwrap();
    fs::create_dir(&v2).unwrap();
    fs::write(v1.join("rollout.toml"), "percent = 10\n").unwrap();
    fs::write(
        v2.join("rollout.toml"),
        "percent = 50\nforce_sync = [\"b\"]\n",
    )
    .unwrap();
    symlink("..2025_11_05_v1", root.join("..data")).unwrap();
    symlink("..data/rollout.toml", root.join("rollout.toml")).unwrap();

    let path = root.join("rollout.toml");
    let rollout = rollout();
    let mut watcher = watcher(&path, &rollout);
    assert_eq!(applied(&mut watcher).percent, pct(10));

    symlink("..2025_11_06_v2", root.join("..data_tmp")).unwrap();
    fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    fs::remove_dir_all(&v1).unwrap();
    assert_eq!(applied(&mut watcher).percent, pct(50));
    assert_eq!(rollout.config().force_sync, ["b"]);
}

#[test]
fn an_unknown_extension_is_refused_unless_the_format_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.conf");
    fs::write(&path, "percent = 5\n").unwrap();
    let rollout = rollout();
    let err = ConfigWatcher::new(&path, rollout.clone()).unwrap_err();
    assert!(matches!(err, SourceError::UnknownFormat { .. }), "{err:?}");
    assert!(err.to_string().contains("rollout.conf"), "{err}");

    let mut watcher =
        ConfigWatcher::with_path_and_format(&path, ConfigFormat::Toml, rollout.clone())
            .with_env_override(None);
    assert_eq!(applied(&mut watcher).percent, pct(5));
}

#[test]
fn a_spawned_watcher_applies_changes_and_stops_promptly_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.toml");
    // Written whole (temp file + rename), as a deployment tool does, so no
    // poll can see it half-written.
    let write = |text: &str| {
        let temp = dir.path().join("rollout.toml.tmp");
        fs::write(&temp, text).unwrap();
        fs::rename(&temp, &path).unwrap();
    };
    write("percent = 10\n");
    let rollout = rollout();

    let wait_for = |what: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !what() {
            assert!(Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(2));
        }
    };

    // Polls at once, then every 10 ms.
    let handle = watcher(&path, &rollout).spawn(Duration::from_millis(10));
    assert!(handle.is_running());
    wait_for(&|| handle.applied() == 1);
    write("percent = 10\nkill_switch = true\n");
    wait_for(&|| rollout.config().kill_switch);
    write("percent = oops\n");
    wait_for(&|| handle.errors() == 1);
    assert!(handle.last_error().unwrap().contains("line 1"));
    assert!(rollout.config().kill_switch);
    assert_eq!(handle.applied(), 2);
    drop(handle);

    // With an hour between polls, dropping does not wait the hour out.
    let handle = watcher(&path, &rollout).spawn(Duration::from_secs(3600));
    wait_for(&|| handle.errors() == 1); // the first poll, at once
    let started = Instant::now();
    drop(handle);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
