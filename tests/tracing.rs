//! `tracing` events (feature `tracing`): the controller's actions and
//! verdict changes, state and config changes, and fail-closed events reach
//! a subscriber as structured fields at the levels an operator expects.
//!
//! The subscriber is hand-written (`tests/support/capture.rs`, no
//! `tracing-subscriber`): it keeps every event's level, target and fields.
//! Everything runs on the test's thread under
//! `tracing::subscriber::with_default`; `tests/tracing_monitor.rs` covers
//! the monitor's own threads.

#[path = "support/capture.rs"]
mod capture;
#[path = "support/traffic.rs"]
mod traffic;

use std::sync::Arc;

use async_upload_rollout::act::{ConfigWatcher, PollOutcome, Revision, Stored};
use async_upload_rollout::*;
use capture::Capture;
use tracing::Level;
use traffic::Setup;

const CONTROLLER: &str = "async_upload_rollout::controller";

#[test]
fn an_automatic_rollback_is_an_error_event_with_its_fields_and_quiet_ticks_are_debug() {
    let capture = Capture::default();
    let s = Setup::new(10);
    tracing::subscriber::with_default(capture.clone(), || {
        let mut c = s.controller().build().unwrap();
        for _ in 0..5 {
            s.minute(100, 0);
            let _ = c.tick();
        }
        for _ in 0..30 {
            s.minute(50, 50);
            if c.tick().action == Some(Action::Rollback { manual: false }) {
                break;
            }
        }
        assert_eq!(c.status(), Some(RolloutStatus::RolledBack));
    });

    let starts = capture.with_field("action", "start");
    assert_eq!(starts.len(), 1, "{:#?}", capture.events());
    assert_eq!(starts[0].level, Level::INFO);
    assert_eq!(starts[0].target, CONTROLLER);
    assert_eq!(starts[0].field("stage"), Some("1"));

    let rollbacks = capture.with_field("action", "rollback");
    assert_eq!(rollbacks.len(), 1, "{:#?}", capture.events());
    let rollback = &rollbacks[0];
    assert_eq!(rollback.level, Level::ERROR);
    assert_eq!(rollback.target, CONTROLLER);
    assert_eq!(rollback.field("manual"), Some("false"));
    assert_eq!(rollback.field("stage"), Some("1"));
    assert_eq!(rollback.field("status"), Some("rolled_back"));
    assert_eq!(rollback.field("percent"), Some("0.0"));
    assert!(
        rollback
            .field("reason")
            // The reason names the failures it acted on: the first bad
            // minute (50 of 100 async uploads failed) rolls it back.
            .is_some_and(|r| r.contains("rolls back") && r.contains("50 failures")),
        "{rollback:?}"
    );

    let ticks: Vec<_> = capture
        .events()
        .into_iter()
        .filter(|e| e.field("message") == Some("tick"))
        .collect();
    assert!(!ticks.is_empty());
    assert!(ticks.iter().all(|t| t.level == Level::DEBUG), "{ticks:#?}");
    assert!(ticks.iter().all(|t| t.field("verdict").is_some()));
    let changes: Vec<_> = capture
        .events()
        .into_iter()
        .filter(|e| e.field("message") == Some("verdict changed"))
        .collect();
    assert!(
        changes
            .iter()
            .any(|e| e.level == Level::INFO && e.field("verdict") == Some("rollback")),
        "{changes:#?}"
    );
}

#[test]
fn an_operators_rollback_is_a_warning_and_a_resume_is_info() {
    let capture = Capture::default();
    let s = Setup::new(10);
    tracing::subscriber::with_default(capture.clone(), || {
        let mut c = s.controller().build().unwrap();
        c.rollback("error spike after deploy 4512").unwrap();
        c.resume("fixed in 4513").unwrap();
    });
    let rollback = &capture.with_field("action", "rollback")[0];
    assert_eq!(rollback.level, Level::WARN);
    assert_eq!(rollback.field("manual"), Some("true"));
    assert_eq!(
        rollback.field("reason"),
        Some("error spike after deploy 4512")
    );
    let resume = &capture.with_field("action", "resume")[0];
    assert_eq!(resume.level, Level::INFO);
    assert_eq!(resume.field("status"), Some("running"));
}

#[test]
fn an_unreadable_state_is_a_fail_closed_error() {
    let capture = Capture::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, "{\"epoch\": 3, \"stage\": 1, \"status\": \"runn").unwrap();
    let s = Setup::new(50);
    tracing::subscriber::with_default(capture.clone(), || {
        let _c = s
            .controller()
            .state_store(Arc::new(FileStateStore::new(&path)))
            .build()
            .unwrap();
    });
    let closed = capture.with_field("fail_closed", "true");
    assert_eq!(closed.len(), 1, "{:#?}", capture.events());
    assert_eq!(closed[0].level, Level::ERROR);
    assert_eq!(closed[0].target, CONTROLLER);
    assert!(
        closed[0]
            .field("reason")
            .is_some_and(|r| r.contains("state.json")),
        "{closed:?}"
    );
}

#[test]
fn a_config_file_applied_is_info_and_one_refused_is_a_warning() {
    let capture = Capture::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.json");
    std::fs::write(&path, r#"{"percent": 10, "force_sync": ["a"]}"#).unwrap();
    let rollout = Arc::new(Rollout::new(RolloutConfig::default()));
    tracing::subscriber::with_default(capture.clone(), || {
        let mut watcher = ConfigWatcher::new(&path, rollout).unwrap();
        assert!(matches!(
            watcher.poll_once().unwrap(),
            PollOutcome::Applied(_)
        ));
        // An editor truncated the file: refused, the last good config stays.
        std::fs::write(&path, "").unwrap();
        assert!(watcher.poll_once().is_err());
    });
    let events: Vec<_> = capture
        .events()
        .into_iter()
        .filter(|e| e.target == "async_upload_rollout::config")
        .collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0].level, Level::INFO);
    assert!(events[0].field("path").unwrap().ends_with("rollout.json"));
    assert!(events[0].field("detail").unwrap().contains("applied"));
    assert_eq!(events[1].level, Level::WARN);
    assert!(
        events[1]
            .field("detail")
            .unwrap()
            .contains("config in force stays"),
        "{events:#?}"
    );
}

/// A state store whose shared config can be made unreadable.
#[derive(Default)]
struct BrokenConfig {
    state: MemoryStateStore,
    broken: std::sync::atomic::AtomicBool,
}

impl StateStore for BrokenConfig {
    fn load(&self) -> Result<Option<Stored>, StoreError> {
        self.state.load()
    }

    fn compare_and_swap(
        &self,
        expected: Option<Revision>,
        state: &RolloutState,
    ) -> Result<Revision, StoreError> {
        self.state.compare_and_swap(expected, state)
    }

    fn describe(&self) -> String {
        "test store".to_owned()
    }

    fn load_config(&self) -> Result<Option<RolloutConfig>, StoreError> {
        if self.broken.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(StoreError::Corrupt {
                store: "test store config".to_owned(),
                message: "not a rollout config".to_owned(),
            });
        }
        Ok(Some(RolloutConfig {
            kill_switch: true,
            ..RolloutConfig::default()
        }))
    }
}

#[test]
fn a_shared_config_that_cannot_be_read_is_one_warning_and_never_stops_a_rollback() {
    let capture = Capture::default();
    let s = Setup::new(10);
    let store = Arc::new(BrokenConfig::default());
    tracing::subscriber::with_default(capture.clone(), || {
        let mut c = s.controller().state_store(store.clone()).build().unwrap();
        assert!(c.view().kill_switch, "the shared config is applied");
        assert_eq!(c.view().percent, Percent::ZERO, "0% under the kill switch");
        store
            .broken
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for _ in 0..5 {
            let _ = c.refresh();
        }
        let view = c.view();
        assert!(
            view.config_error
                .as_deref()
                .unwrap()
                .contains("not a rollout config")
        );
        assert!(view.kill_switch, "the last good config stays");
        c.rollback("pager").unwrap();
        assert_eq!(
            store.load().unwrap().unwrap().state.status,
            RolloutStatus::RolledBack,
            "written while the config cannot be read"
        );
        store
            .broken
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let _ = c.refresh();
        assert_eq!(c.view().config_error, None);
    });
    let events: Vec<_> = capture
        .events()
        .into_iter()
        .filter(|e| e.field("message") == Some("rollout shared config"))
        .collect();
    assert_eq!(events.len(), 2, "once per change: {events:#?}");
    assert_eq!(events[0].level, Level::WARN);
    assert_eq!(events[1].level, Level::INFO);
}

#[test]
fn an_operators_rollback_over_an_unreadable_state_is_stored_above_every_epoch_seen() {
    let capture = Capture::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let s = Setup::new(10);
    tracing::subscriber::with_default(capture.clone(), || {
        let store = Arc::new(FileStateStore::new(&path));
        let mut c = s.controller().state_store(store.clone()).build().unwrap();
        c.pause("freeze").unwrap(); // epoch 2
        std::fs::write(&path, "garbage").unwrap();
        assert!(c.refresh().is_err());
        assert!(s.rollout.is_halted(), "fail closed");
        let err = c.resume("x").unwrap_err();
        assert!(err.to_string().contains("always allowed"), "{err}");
        let stored = c.rollback("pager: corrupt state").unwrap();
        assert_eq!(stored.status, RolloutStatus::RolledBack);
        assert_eq!(stored.epoch, 3, "above epoch 2, which this controller saw");
        assert_eq!(
            stored.stage,
            Some(1),
            "unknown in the garbage: the controller's own"
        );
        let read = store.load().unwrap().unwrap().state;
        assert_eq!(read, stored);
        assert_eq!(c.view().state.as_ref(), Some(&read));
    });
    let rollback = &capture.with_field("action", "rollback")[0];
    assert_eq!(rollback.level, Level::WARN);
    assert_eq!(rollback.field("manual"), Some("true"));
}
