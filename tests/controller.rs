//! The controller: rollback, advance, operator actions, the log, the monitor thread.

use std::sync::Arc;
use std::time::Duration;

use async_upload_rollout::{
    Action, Arm, ControllerError, JsonlSink, MetricsAccumulator, Outcome, Percent,
    RolloutController, RolloutPlan, RolloutStatus, Verdict,
    act::OperatorError,
    act::log::{LogEvent, LogRecord, read_log},
    clock::Clock,
};

#[path = "support/traffic.rs"]
mod traffic;

use traffic::Setup;

/// The rollout at `percent`; one of each minute's 200 sync uploads fails.
fn setup(percent: u32) -> Setup {
    Setup {
        sync_errors: 1,
        ..Setup::new(percent)
    }
}

fn short_plan() -> RolloutPlan {
    let mut plan = RolloutPlan::default();
    for stage in &mut plan.stages {
        stage.criteria.min_duration = Duration::from_secs(30 * 60);
    }
    plan
}

/// A controller on `s` with [`short_plan`] that advances by itself.
fn auto_advancing(s: &Setup) -> RolloutController {
    s.controller()
        .plan(short_plan())
        .auto_advance(true)
        .build()
        .unwrap()
}

fn verdict(tick: &async_upload_rollout::Tick) -> Option<Verdict> {
    tick.evaluation.as_ref().map(|e| e.verdict)
}

#[test]
fn starts_at_the_stage_matching_the_requested_percent() {
    let s = setup(10);
    let c = s.controller().build().unwrap();
    assert_eq!(c.stage(), Some(1));
    assert_eq!(s.rollout.percent(), Percent::from_whole(10).unwrap());

    // No such stage: the largest one below it, never more async than asked.
    let s = setup(33);
    let c = s.controller().build().unwrap();
    assert_eq!(c.stage(), Some(1));
    assert_eq!(s.rollout.percent(), Percent::from_whole(10).unwrap());

    // 0% (ASYNC_UPLOAD_ROLLOUT=0 or unset) is off: nothing async, no stage.
    let s = setup(0);
    let c = s.controller().build().unwrap();
    assert_eq!(c.stage(), None);
    assert_eq!(c.status(), Some(RolloutStatus::Off));
    assert!(s.rollout.is_halted());

    let err = setup(0).controller().start_stage(7).build().unwrap_err();
    assert!(
        matches!(
            err,
            ControllerError::UnknownStage {
                index: 7,
                stages: 4
            }
        ),
        "{err}"
    );
}

#[test]
fn rollback_sets_zero_percent_and_every_id_goes_sync() {
    let s = setup(10);
    let mut c = s.controller().build().unwrap();
    let ids: Vec<String> = (0..20_000).map(|i| format!("upload-{i}")).collect();
    assert!(ids.iter().any(|id| s.rollout.should_use_async(id)));
    let mut handle = s.rollout.handle();

    s.minute(60, 40); // 40% errors
    let tick = c.tick();
    assert_eq!(verdict(&tick), Some(Verdict::Rollback));
    assert_eq!(tick.action, Some(Action::Rollback { manual: false }));
    assert_eq!(s.rollout.percent(), Percent::ZERO);
    assert!(s.rollout.is_halted());
    assert!(ids.iter().all(|id| !s.rollout.should_use_async(id)));
    assert!(ids.iter().all(|id| !handle.should_use_async(id)));
    let state = c.state().unwrap();
    assert_eq!(state.status, RolloutStatus::RolledBack);
    assert!(state.reason.contains("error_rate"), "{}", state.reason);

    // It stays rolled back, whatever the next ticks see, until resumed.
    for _ in 0..10 {
        s.minute(0, 0);
        assert_eq!(c.tick().action, None);
    }
    assert_eq!(s.rollout.percent(), Percent::ZERO);
    c.resume("fixed in build 4512").unwrap();
    assert_eq!(s.rollout.percent(), Percent::from_whole(10).unwrap());
    assert_eq!(c.status(), Some(RolloutStatus::Running));
    // The failed data no longer counts against the stage.
    s.minute(100, 0);
    assert_ne!(verdict(&c.tick()), Some(Verdict::Rollback));
}

#[test]
fn advances_only_with_auto_advance_and_after_min_duration() {
    let s = setup(10);
    let mut c = auto_advancing(&s);
    // Healthy and plentiful from the first minute: criteria hold early, but
    // the stage is not ready (and says nothing) before its min_duration...
    for minute in 1..=40 {
        s.minute(400, 1);
        let tick = c.tick();
        if minute < 30 {
            assert_eq!(c.stage(), Some(1), "advanced at minute {minute}");
            assert_eq!(tick.action, None, "minute {minute}");
        }
    }
    // ...and it moved on once min_duration had passed.
    assert_eq!(c.stage(), Some(2));
    assert_eq!(s.rollout.percent(), Percent::from_whole(50).unwrap());

    // Without auto-advance it reports readiness, only after min_duration.
    let s = setup(10);
    let mut c = s.controller().plan(short_plan()).build().unwrap();
    let mut first_ready = None;
    for minute in 1..=60 {
        s.minute(400, 1);
        let tick = c.tick();
        match tick.action {
            None => {}
            Some(Action::Ready { waiting_for }) => {
                assert!(waiting_for.contains("operator"), "{waiting_for}");
                first_ready.get_or_insert(minute);
            }
            other => panic!("minute {minute}: {other:?}"),
        }
    }
    assert_eq!(
        first_ready,
        Some(30),
        "Ready only once min_duration (30 min) has passed"
    );
    assert_eq!(c.stage(), Some(1));
    let state = c.advance("team briefed, day 4").unwrap();
    assert_eq!(state.stage, Some(2));
    assert_eq!(c.stage(), Some(2));
    assert_eq!(s.rollout.percent(), Percent::from_whole(50).unwrap());
}

#[test]
fn manual_review_stops_advancing_until_resumed_but_rollback_stays_armed() {
    let s = setup(10);
    let mut c = auto_advancing(&s);
    // 96% success for 40 minutes: the review band.
    let mut reviewed = false;
    for _ in 0..40 {
        s.minute(1_920, 80);
        if c.tick().action == Some(Action::ReviewRequested) {
            reviewed = true;
        }
    }
    assert!(reviewed);
    assert_eq!(c.status(), Some(RolloutStatus::AwaitingReview));
    assert_eq!(c.stage(), Some(1));
    // A rollback trigger still acts while awaiting review.
    s.metrics
        .record(Arm::Async, Outcome::Critical, Duration::from_millis(1));
    s.clock.advance(Duration::from_secs(60));
    assert_eq!(c.tick().action, Some(Action::Rollback { manual: false }));
    assert_eq!(s.rollout.percent(), Percent::ZERO);
}

#[test]
fn pause_stops_advancing_and_operator_rollback_is_immediate() {
    let s = setup(10);
    let mut c = auto_advancing(&s);
    c.pause("holiday freeze").unwrap();
    for _ in 0..60 {
        s.minute(400, 1);
        let _ = c.tick();
    }
    assert_eq!(c.stage(), Some(1), "paused controllers do not advance");
    c.rollback("customer escalation").unwrap();
    assert_eq!(s.rollout.percent(), Percent::ZERO);
    let state = c.state().unwrap();
    assert_eq!(state.status, RolloutStatus::RolledBack);
    assert_eq!(state.reason, "customer escalation");

    // Advancing from a rollback is refused: resume first.
    let err = c.advance("skip ahead").unwrap_err();
    assert!(
        matches!(&err, OperatorError::Refused(r) if r.message.contains("resume")),
        "{err}"
    );
    assert_eq!(c.stage(), Some(1));
    assert!(s.rollout.is_halted());
}

#[test]
fn every_tick_and_action_is_a_log_line_with_its_reason() {
    let dir = std::env::temp_dir().join(format!("aur-controller-{}", std::process::id()));
    let path = dir.join("nested/metrics.jsonl");
    let s = setup(10);
    let mut c = s
        .controller()
        .log(JsonlSink::open(&path).unwrap())
        .build()
        .unwrap();
    s.minute(100, 0);
    let _ = c.tick();
    s.minute(10, 90);
    let _ = c.tick();
    c.resume("rolled forward after fix").unwrap();

    let read = read_log::<LogRecord>(&path).unwrap();
    assert!(read.torn_tail.is_none());
    let events: Vec<LogEvent> = read.records.iter().map(|r| r.event).collect();
    // A first start: a `state` line says the first state is being written
    // (nothing stored yet, so no `state`), then the `action` line `start`
    // carries it as stored.
    assert_eq!(
        events,
        [
            LogEvent::State,
            LogEvent::Action,
            LogEvent::Tick,
            LogEvent::Tick,
            LogEvent::Action
        ]
    );
    assert_eq!(read.records[0].state, None, "nothing stored yet");
    assert!(
        read.records[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("writing the first"),
        "{:?}",
        read.records[0].reason
    );
    let start = &read.records[1];
    assert_eq!(
        start.action,
        Some(Action::Start {
            stage: Some(1),
            percent: Percent::from_whole(10).unwrap()
        })
    );
    assert_eq!(start.state.as_ref().unwrap().epoch, 1);
    let rollback = &read.records[3];
    assert_eq!(rollback.action, Some(Action::Rollback { manual: false }));
    assert_eq!(
        rollback.evaluation.as_ref().unwrap().verdict,
        Verdict::Rollback
    );
    assert!(rollback.reason.as_deref().unwrap().contains("error_rate"));
    assert_eq!(
        rollback.snapshot.as_ref().unwrap().uploads(Arm::Async),
        200,
        "stage totals"
    );
    assert_eq!(rollback.stage, Some(1));
    assert_eq!(
        rollback.state.as_ref().unwrap().status,
        RolloutStatus::RolledBack
    );
    assert_eq!(rollback.state.as_ref().unwrap().epoch, 2);
    assert_eq!(
        read.records[4].reason.as_deref(),
        Some("rolled forward after fix")
    );
    assert_eq!(read.records[4].state.as_ref().unwrap().epoch, 3);
    assert!(read.records.iter().all(|r| r.v == 2));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_log_that_cannot_be_written_fails_the_build_and_changes_nothing() {
    let s = setup(33);
    let Ok(sink) = JsonlSink::open("/dev/full") else {
        return; // no /dev/full on this platform
    };
    let store = Arc::new(async_upload_rollout::MemoryStateStore::new());
    let err = s
        .controller()
        .state_store(store.clone())
        .log(sink)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("/dev/full"), "{err}");
    assert_eq!(
        s.rollout.percent(),
        Percent::from_whole(33).unwrap(),
        "nothing changed"
    );
    assert!(
        async_upload_rollout::StateStore::load(&*store)
            .unwrap()
            .is_none(),
        "nothing written"
    );
}

#[test]
fn a_failing_log_does_not_stop_the_controller() {
    let s = setup(10);
    let Ok(sink) = JsonlSink::open("/dev/full") else {
        return; // no /dev/full on this platform
    };
    let mut c = s.controller().build().unwrap();
    assert!(c.set_log(Some(sink)).is_none());
    s.minute(10, 90);
    let tick = c.tick();
    let err = tick.log_error.expect("the write to /dev/full failed");
    assert!(err.to_string().contains("/dev/full"), "{err}");
    assert_eq!(
        tick.action,
        Some(Action::Rollback { manual: false }),
        "acted anyway"
    );
    assert_eq!(s.rollout.percent(), Percent::ZERO);
}

#[test]
fn monitor_thread_ticks_and_stops_promptly_when_dropped() {
    let s = setup(10);
    let c = s
        .controller()
        .clock(Arc::new(async_upload_rollout::clock::SystemClock))
        .build()
        .unwrap();
    for _ in 0..50 {
        s.metrics
            .record(Arm::Async, Outcome::Critical, Duration::from_millis(5));
    }
    let monitor = c.spawn(Duration::from_millis(5));
    assert!(monitor.is_running());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !s.rollout.is_halted() {
        assert!(
            std::time::Instant::now() < deadline,
            "the monitor never rolled back"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(monitor.lock().status(), Some(RolloutStatus::RolledBack));
    assert_eq!(
        monitor.view().state.as_ref().map(|s| s.status),
        Some(RolloutStatus::RolledBack),
        "readers see it without the lock"
    );
    let health = monitor.health();
    assert!(health.running && health.ticks > 0, "{health:?}");
    assert_eq!(health.panics, 0);

    // A long interval: dropping must not wait it out, and a rollout
    // without its monitor has nothing to roll it back: nothing async.
    let s = setup(10);
    let c = s.controller().build().unwrap();
    let monitor = c.spawn(Duration::from_secs(3600));
    assert!(!s.rollout.is_halted());
    let started = std::time::Instant::now();
    drop(monitor);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(s.rollout.is_halted());
    let _ = s.clock.now();
}

#[test]
fn quiet_ticks_are_logged_at_the_log_interval_and_changes_always() {
    let dir = std::env::temp_dir().join(format!("aur-interval-{}", std::process::id()));
    let path = dir.join("metrics.jsonl");
    let s = setup(10);
    let mut c = s
        .controller()
        .log(JsonlSink::open(&path).unwrap())
        .log_interval(Duration::from_secs(10 * 60))
        .build()
        .unwrap();
    for _ in 0..30 {
        s.minute(10, 0); // quiet: hold (too few uploads), the same verdict every tick
        let _ = c.tick();
    }
    s.minute(10, 90); // the verdict changes: rollback
    let _ = c.tick();
    let read = read_log::<LogRecord>(&path).unwrap();
    let ticks: Vec<u64> = read
        .records
        .iter()
        .filter(|r| r.event == LogEvent::Tick)
        .map(|r| r.at_unix_ms)
        .collect();
    // Minutes 1, 11, 21 (every 10 minutes) and 31 (the rollback).
    assert_eq!(ticks.len(), 4, "{ticks:?}");
    assert!(
        ticks.windows(2).take(2).all(|w| w[1] - w[0] == 10 * 60_000),
        "{ticks:?}"
    );
    let last = read.records.last().unwrap();
    assert_eq!(last.action, Some(Action::Rollback { manual: false }));
    let _ = std::fs::remove_dir_all(dir);
}

impl Setup {
    /// One minute of traffic at 100%: `async_ok` healthy async uploads, no sync.
    fn async_only_minute(&self, async_ok: u64) {
        for _ in 0..async_ok {
            self.metrics
                .record(Arm::Async, Outcome::Success, Duration::from_millis(100));
        }
        self.clock.advance(Duration::from_secs(60));
    }
}

/// The 100% stage has no sync traffic of its own: the controller carries the
/// sync arm of the 50% run into it, and takes it back from the log after a
/// restart, so the last stage can complete. Without the log (no way to
/// recover it) the same 100% run holds forever on "not enough data".
#[test]
fn the_last_stage_completes_on_the_sync_baseline_carried_from_the_stage_before_even_after_a_restart()
 {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("metrics.jsonl");
    let store: Arc<dyn async_upload_rollout::StateStore> =
        Arc::new(async_upload_rollout::MemoryStateStore::new());
    let s = setup(50);
    let mut c = s
        .controller()
        .plan(short_plan())
        .auto_advance(true)
        .state_store(Arc::clone(&store))
        .log(JsonlSink::open(&log).unwrap())
        .build()
        .unwrap();
    assert_eq!(c.stage(), Some(2));
    for _ in 0..40 {
        s.minute(400, 1);
        let _ = c.tick();
        if c.stage() == Some(3) {
            break;
        }
    }
    assert_eq!(c.stage(), Some(3), "advanced to 100%");
    drop(c);

    // A restart with the log: the carried baseline comes back.
    let mut restarted = s
        .controller()
        .plan(short_plan())
        .auto_advance(true)
        .state_store(Arc::clone(&store))
        .log(JsonlSink::open(&log).unwrap())
        .build()
        .unwrap();
    let mut complete_after = None;
    for minute in 1..=60 {
        s.async_only_minute(400);
        let _ = restarted.tick();
        if restarted.status() == Some(RolloutStatus::Complete) {
            complete_after = Some(minute);
            break;
        }
    }
    assert!(
        complete_after.is_some(),
        "completed after {complete_after:?} minutes; last evaluation: {:#?}",
        restarted.last_evaluation()
    );
    let lines = std::fs::read_to_string(&log).unwrap();
    assert!(lines.contains("recovered the carried sync baseline"));

    // The control: a fresh store at 100% with no log to recover from.
    let bare = setup(100);
    let mut c = bare
        .controller()
        .plan(short_plan())
        .auto_advance(true)
        .build()
        .unwrap();
    assert_eq!(c.stage(), Some(3));
    for _ in 0..60 {
        bare.async_only_minute(400);
        let _ = c.tick();
    }
    assert_eq!(c.status(), Some(RolloutStatus::Running));
    let evaluation = c.last_evaluation().unwrap();
    assert_eq!(evaluation.verdict, Verdict::Hold, "{evaluation:#?}");
}

/// Run totals from elsewhere: a fleet's counters, here another process's
/// accumulator.
struct Remote(Arc<MetricsAccumulator>);

impl async_upload_rollout::act::MetricsSource for Remote {
    fn run_totals(
        &mut self,
        _state: &async_upload_rollout::RolloutState,
        _now: std::time::SystemTime,
    ) -> Result<async_upload_rollout::MetricsSnapshot, String> {
        Ok(self.0.snapshot())
    }

    fn describe(&self) -> String {
        "the remote counters".to_owned()
    }
}

#[test]
fn a_judging_controller_serves_nothing_acknowledges_nothing_and_acts_on_its_source() {
    use async_upload_rollout::{FileStateStore, StateStore, act::ConfigWatcher};

    let s = setup(0);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStateStore::new(dir.path().join("state.json")).with_service("leader"));
    let mut leader = RolloutController::judging(Box::new(Remote(s.metrics.clone())))
        .clock(Arc::new(s.clock.clone()))
        .plan(short_plan())
        .start_percent(Percent::from_whole(10).unwrap())
        .state_store(store.clone())
        .build()
        .unwrap();
    assert!(leader.rollout().is_none() && leader.metrics().is_none());
    assert_eq!(
        leader.stage(),
        Some(1),
        "starts the 10% stage it was asked for"
    );
    assert_eq!(leader.view().percent, Percent::from_whole(10).unwrap());
    assert_eq!(store.load().unwrap().unwrap().state.stage, Some(1));

    // The source's counters, not any of its own, are what it judges.
    s.minute(0, 100);
    let tick = leader.tick();
    assert_eq!(verdict(&tick), Some(Verdict::Rollback), "{tick:?}");
    assert_eq!(tick.action, Some(Action::Rollback { manual: false }));
    assert_eq!(
        store.load().unwrap().unwrap().state.status,
        RolloutStatus::RolledBack
    );
    assert!(leader.view().halted);
    assert_eq!(
        store.acknowledgements().unwrap().unwrap_or_default().len(),
        0,
        "a controller that serves no uploads acknowledges nothing"
    );

    // A serving controller on the same store acknowledges what it applies.
    let serving = setup(10)
        .controller()
        .state_store(Arc::new(
            FileStateStore::new(dir.path().join("state.json")).with_service("replica"),
        ))
        .build()
        .unwrap();
    assert!(
        serving.rollout().unwrap().is_halted(),
        "rolled back by the leader"
    );
    assert_eq!(store.acknowledgements().unwrap().unwrap().len(), 1);

    // A config file is applied to a rollout: a controller without one
    // refuses it, naming it.
    let config = dir.path().join("rollout.toml");
    std::fs::write(&config, "percent = 10\n").unwrap();
    let watcher = ConfigWatcher::new(&config, s.rollout.clone()).unwrap();
    let err = RolloutController::judging(Box::new(Remote(s.metrics.clone())))
        .config_watcher(watcher)
        .build()
        .unwrap_err();
    assert!(matches!(err, ControllerError::NotServing { .. }), "{err}");
    assert!(err.to_string().contains("a config watcher"), "{err}");
}
