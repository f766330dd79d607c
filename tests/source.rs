//! The config file watcher: reload on change, keep the last good config on
//! any problem, follow symlink swaps.
//!
//! Every watcher here has no environment override, so these tests do not
//! depend on the environment (tests/source_env.rs covers the override).

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_upload_rollout::*;

fn rollout() -> Arc<Rollout> {
    Arc::new(Rollout::new(RolloutConfig::default()))
}

fn watcher(path: &Path, rollout: &Arc<Rollout>) -> ConfigWatcher {
    ConfigWatcher::new(path, rollout.clone())
        .unwrap()
        .with_env_override(None)
}

/// One poll that stores a new config.
fn assert_applied(watcher: &mut ConfigWatcher) {
    let outcome = watcher.poll_once().unwrap();
    assert!(matches!(outcome, PollOutcome::Applied(_)), "{outcome:?}");
}

fn pct(whole: u32) -> Percent {
    Percent::from_whole(whole).unwrap()
}

#[test]
fn a_written_file_is_applied_within_one_poll() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.toml");
    fs::write(&path, "percent = 10\nforce_async = [\"vip\"]\n").unwrap();
    let rollout = rollout();
    let mut watcher = watcher(&path, &rollout);

    let outcome = watcher.poll_once().unwrap();
    let mut expected = RolloutConfig::with_percent(pct(10));
    expected.force_async = vec!["vip".into()];
    assert_eq!(outcome, PollOutcome::Applied(expected.clone()));
    assert_eq!(*rollout.config(), expected);

    fs::write(&path, "percent = 50\n").unwrap();
    assert_applied(&mut watcher);
    assert_eq!(rollout.percent(), pct(50));
    assert!(rollout.config().force_async.is_empty());
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
    assert_applied(&mut watcher);
    let before = rollout.config();

    // Same bytes, written again.
    fs::write(&path, "percent = 10\n").unwrap();
    assert_eq!(watcher.poll_once().unwrap(), PollOutcome::Unchanged);
    // Other bytes, same config: a comment does not undo a run-time change.
    rollout.set_percent(Percent::ZERO); // e.g. a controller rollback
    let rolled_back = rollout.config();
    fs::write(&path, "# reviewed\npercent = 10\n").unwrap();
    assert_eq!(watcher.poll_once().unwrap(), PollOutcome::Unchanged);
    assert!(Arc::ptr_eq(&rollout.config(), &rolled_back), "no store");
    assert_eq!(rollout.percent(), Percent::ZERO);
    assert_eq!(watcher.applied(), 1);
    drop(before);
}

#[test]
fn garbage_keeps_the_old_config_and_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.toml");
    let log_path = dir.path().join("metrics.jsonl");
    fs::write(&path, "percent = 10\n").unwrap();
    let rollout = rollout();
    let mut watcher = watcher(&path, &rollout).with_log(JsonlSink::open(&log_path).unwrap());
    assert_applied(&mut watcher);

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
        assert_eq!(rollout.percent(), pct(10), "old config kept");
        assert_eq!(watcher.errors(), i as u64 + 1);
        assert_eq!(watcher.last_error(), Some(message));
        // The same bad file is reported once, not at every poll.
        assert_eq!(watcher.poll_once().unwrap(), PollOutcome::Unchanged);
        assert_eq!(watcher.errors(), i as u64 + 1);
    }

    fs::write(&path, "percent = 20\n").unwrap();
    assert_applied(&mut watcher);
    assert_eq!(watcher.last_error(), None);

    let log = read_log::<LogRecord>(&log_path).unwrap().records;
    assert_eq!(log.len(), 1 + cases.len() + 1);
    assert!(log.iter().all(|r| r.event == LogEvent::Config));
    let rejected = log[1].reason.as_deref().unwrap();
    assert!(rejected.contains("rollout.toml, line 3"), "{rejected}");
    assert_eq!(log[1].percent, Some(pct(10)));
    assert_eq!(log.last().unwrap().percent, Some(pct(20)));
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
    assert_eq!(rollout.percent(), Percent::ZERO);

    fs::write(&path, r#"{"percent": 1, "kill_switch": true}"#).unwrap();
    assert_applied(&mut watcher);
    assert!(rollout.config().kill_switch);
}

#[test]
fn a_deleted_file_keeps_the_old_config_and_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.toml");
    fs::write(&path, "percent = 10\n").unwrap();
    let rollout = rollout();
    let mut watcher = watcher(&path, &rollout);
    assert_applied(&mut watcher);

    fs::remove_file(&path).unwrap();
    let err = watcher.poll_once().unwrap_err();
    assert!(matches!(err, SourceError::Missing { .. }), "{err:?}");
    assert!(err.to_string().contains("rollout.toml"), "{err}");
    assert_eq!(rollout.percent(), pct(10));
    assert_eq!(watcher.errors(), 1);
    assert_eq!(watcher.poll_once().unwrap(), PollOutcome::Unchanged);
    assert_eq!(watcher.errors(), 1);

    // Back with the same config: nothing to store, the problem is over.
    fs::write(&path, "percent = 10\n").unwrap();
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
    fs::write(v2.join("rollout.toml"), "percent = 50\n").unwrap();
    symlink("..2025_11_05_v1", root.join("..data")).unwrap();
    symlink("..data/rollout.toml", root.join("rollout.toml")).unwrap();

    let path = root.join("rollout.toml");
    let rollout = rollout();
    let mut watcher = watcher(&path, &rollout);
    assert_applied(&mut watcher);
    assert_eq!(rollout.percent(), pct(10));

    symlink("..2025_11_06_v2", root.join("..data_tmp")).unwrap();
    fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    fs::remove_dir_all(&v1).unwrap();
    assert_applied(&mut watcher);
    assert_eq!(rollout.percent(), pct(50));
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
    assert_applied(&mut watcher);
    assert_eq!(rollout.percent(), pct(5));
}

#[test]
fn a_spawned_watcher_applies_changes_and_stops_promptly_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.toml");
    fs::write(&path, "percent = 10\n").unwrap();
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
    wait_for(&|| rollout.percent() == pct(10));
    fs::write(&path, "percent = 50\n").unwrap();
    wait_for(&|| rollout.percent() == pct(50));
    fs::write(&path, "percent = oops\n").unwrap();
    wait_for(&|| handle.errors() == 1);
    assert!(handle.last_error().unwrap().contains("line 1"));
    assert_eq!(rollout.percent(), pct(50));
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
