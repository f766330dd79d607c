//! The environment variable wins over the config file's percent (the
//! starting request a poll returns; the percent in force is the controller's).
//!
//! One test function only: changing the environment is only sound while no
//! other thread reads it, and this test binary runs nothing else.

use std::fs;
use std::sync::Arc;

use async_upload_rollout::*;
use async_upload_rollout::{
    act::{ConfigWatcher, PollOutcome, SourceError},
    decide::ROLLOUT_ENV_VAR,
};

const VAR: &str = "ASYNC_UPLOAD_ROLLOUT_SOURCE_TEST";

fn set(value: &str) {
    // SAFETY: this binary's only test runs on one thread; nothing else reads
    // the environment concurrently.
    unsafe { std::env::set_var(VAR, value) }
}

fn unset() {
    // SAFETY: as in `set`.
    unsafe { std::env::remove_var(VAR) }
}

#[test]
fn the_environment_override_wins_over_the_files_percent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.toml");
    fs::write(&path, "percent = 10\nforce_async = [\"vip\"]\n").unwrap();
    let rollout = Arc::new(Rollout::new(RolloutConfig::default()));
    let mut watcher = ConfigWatcher::new(&path, rollout.clone())
        .unwrap()
        .with_env_override(Some(VAR));

    let requested = |watcher: &mut ConfigWatcher| match watcher.poll_once().unwrap() {
        PollOutcome::Applied(config) => config.percent,
        other => panic!("not applied: {other:?}"),
    };
    unset();
    assert_eq!(requested(&mut watcher), Percent::from_whole(10).unwrap());
    assert_eq!(rollout.percent(), Percent::ZERO, "a request, not applied");

    // Set: its percent wins as the request. A percent-only change stores
    // nothing (the percent is the controller's).
    set("50");
    assert_eq!(watcher.poll_once().unwrap(), PollOutcome::Unchanged);
    assert_eq!(rollout.config().force_async, ["vip"]);

    // A file edit does not beat it.
    fs::write(&path, "percent = 1\n").unwrap();
    assert_eq!(requested(&mut watcher), Percent::from_whole(50).unwrap());
    assert!(rollout.config().force_async.is_empty());

    // Invalid: an error naming the variable and value; nothing changes.
    set("fifty");
    let err = watcher.poll_once().unwrap_err();
    assert!(matches!(err, SourceError::Env { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(VAR) && message.contains("\"fifty\""),
        "{message}"
    );
    assert!(message.contains("rollout.toml"), "{message}");
    assert_eq!(rollout.percent(), Percent::ZERO);

    // Unset again: the file's percent is the request.
    unset();
    fs::write(&path, "percent = 1\nkill_switch = true\n").unwrap();
    assert_eq!(requested(&mut watcher), Percent::from_whole(1).unwrap());
    assert_eq!(rollout.percent(), Percent::ZERO);

    // The default variable is ASYNC_UPLOAD_ROLLOUT.
    assert_eq!(ROLLOUT_ENV_VAR, "ASYNC_UPLOAD_ROLLOUT");
}
