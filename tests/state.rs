//! The rollout's state: one owner, kept across restarts, failing closed.
//!
//! Controllers here run on a `ManualClock` against a real `FileStateStore`
//! in a temporary directory (or a `MemoryStateStore`); "restarts" drop a
//! controller and its accumulator and build new ones on the same files.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use async_upload_rollout::*;
use async_upload_rollout::{
    act::log::{LogRecord, read_log},
    act::{ChangedBy, ConfigWatcher, Operation, OperatorError, Revision, Stored},
    clock::{Clock, ManualClock},
    decide::DecisionReason,
};

const MS: Duration = Duration::from_millis(100);

fn pct(whole: u32) -> Percent {
    Percent::from_whole(whole).unwrap()
}

/// One process's worth of rollout, metrics and clock.
struct Process {
    clock: ManualClock,
    rollout: Arc<Rollout>,
    metrics: Arc<MetricsAccumulator>,
}

impl Process {
    /// A process started at `clock`'s time with `ASYNC_UPLOAD_ROLLOUT=percent`.
    fn start(clock: &ManualClock, percent: u32) -> Process {
        Process {
            clock: clock.clone(),
            rollout: Arc::new(Rollout::new(RolloutConfig::with_percent(pct(percent)))),
            metrics: Arc::new(MetricsAccumulator::with_clock(Arc::new(clock.clone()))),
        }
    }

    fn controller(&self, store: Arc<dyn StateStore>) -> RolloutControllerBuilder {
        RolloutController::builder(self.rollout.clone(), self.metrics.clone())
            .clock(Arc::new(self.clock.clone()))
            .state_store(store)
            .memory_warmup(Duration::ZERO)
    }

    /// A minute of healthy traffic: `n` async and 200 sync successes.
    fn healthy_minute(&self, n: u64) {
        for _ in 0..n {
            self.metrics.record(Arm::Async, Outcome::Success, MS);
        }
        for _ in 0..200 {
            self.metrics.record(Arm::Sync, Outcome::Success, MS);
        }
        self.clock.advance(Duration::from_secs(60));
    }

    fn async_share(&self) -> usize {
        (0..10_000)
            .filter(|i| self.rollout.should_use_async(&format!("upload-{i}")))
            .count()
    }
}

fn file_store(dir: &tempfile::TempDir) -> Arc<FileStateStore> {
    Arc::new(FileStateStore::new(dir.path().join("state.json")))
}

fn short_plan(minutes: u64) -> RolloutPlan {
    let mut plan = RolloutPlan::default();
    for stage in &mut plan.stages {
        stage.criteria.min_duration = Duration::from_secs(minutes * 60);
    }
    plan
}

#[test]
fn two_writers_racing_on_the_store_exactly_one_wins_the_other_gets_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let stores: [Arc<dyn StateStore>; 2] = [file_store(&dir), Arc::new(MemoryStateStore::new())];
    for store in stores {
        let first = RolloutState::running(1, SystemTime::now(), ChangedBy::Config, "start");
        let mut revision = store.compare_and_swap(None, &first).unwrap();
        let mut state = first;
        let plan = RolloutPlan::default();
        for round in 0..20 {
            let writers = 4;
            let barrier = Arc::new(Barrier::new(writers));
            let wins = Arc::new(AtomicUsize::new(0));
            let conflicts = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..writers)
                .map(|w| {
                    let (store, barrier, wins, conflicts) = (
                        Arc::clone(&store),
                        Arc::clone(&barrier),
                        Arc::clone(&wins),
                        Arc::clone(&conflicts),
                    );
                    // Each writer read the same state and revision.
                    let op = if w % 2 == 0 {
                        Operation::Pause
                    } else {
                        Operation::Rollback
                    };
                    let next = state
                        .apply(
                            op,
                            &plan,
                            SystemTime::now(),
                            ChangedBy::Operator,
                            &format!("w{w}"),
                        )
                        .unwrap()
                        .unwrap_or_else(|| state.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        match store.compare_and_swap(Some(revision), &next) {
                            Ok(_) => wins.fetch_add(1, Ordering::SeqCst),
                            Err(err) if err.is_conflict() => {
                                conflicts.fetch_add(1, Ordering::SeqCst)
                            }
                            Err(err) => panic!("{err}"),
                        };
                    })
                })
                .collect();
            for thread in threads {
                thread.join().unwrap();
            }
            assert_eq!(wins.load(Ordering::SeqCst), 1, "round {round}");
            assert_eq!(
                conflicts.load(Ordering::SeqCst),
                writers - 1,
                "round {round}"
            );
            let stored = store.load().unwrap().unwrap();
            assert_ne!(stored.revision, revision, "the winner moved the revision");
            revision = stored.revision;
            // Back to running for the next round, by the same rules.
            state = stored
                .state
                .apply(
                    Operation::Resume,
                    &plan,
                    SystemTime::now(),
                    ChangedBy::Operator,
                    "next",
                )
                .unwrap()
                .unwrap();
            revision = store.compare_and_swap(Some(revision), &state).unwrap();
        }
        assert_eq!(
            store.load().unwrap().unwrap().state.epoch,
            41,
            "{}",
            store.describe()
        );
    }
}

#[test]
fn zero_percent_means_off_and_nothing_async() {
    let clock = ManualClock::default();
    let p = Process::start(&clock, 0);
    p.rollout.store(RolloutConfig {
        force_async: vec!["load-test-1".into()],
        ..RolloutConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(&dir);
    let mut c = p.controller(store.clone()).build().unwrap();
    assert_eq!(c.status(), Some(RolloutStatus::Off));
    assert_eq!(c.stage(), None);
    assert!(p.rollout.is_halted());
    assert_eq!(p.async_share(), 0);
    assert!(!p.rollout.should_use_async("load-test-1"));
    // Ticks judge nothing and change nothing.
    p.healthy_minute(0);
    let tick = c.tick();
    assert!(tick.evaluation.is_none() && tick.action.is_none());
    assert_eq!(
        store.load().unwrap().unwrap().state.status,
        RolloutStatus::Off
    );

    // An operator starts the first stage.
    c.advance("week 1 starts").unwrap();
    assert_eq!(p.rollout.percent(), pct(1));
    assert!(p.rollout.should_use_async("load-test-1"));
}

#[test]
fn a_force_listed_id_is_sync_after_a_rollback() {
    let clock = ManualClock::default();
    let p = Process::start(&clock, 50);
    let dir = tempfile::tempdir().unwrap();
    let mut c = p.controller(file_store(&dir)).build().unwrap();
    p.rollout
        .update(|c| c.force_async = vec!["load-test-1".into()]);
    assert!(p.rollout.should_use_async("load-test-1"));

    for _ in 0..100 {
        p.metrics.record(Arm::Async, Outcome::Error, MS);
    }
    p.clock.advance(Duration::from_secs(60));
    assert_eq!(c.tick().action, Some(Action::Rollback { manual: false }));
    assert!(!p.rollout.should_use_async("load-test-1"));
    assert_eq!(
        p.rollout.decide("load-test-1").reason,
        DecisionReason::Halted
    );
    assert_eq!(p.async_share(), 0);
}

#[test]
fn a_config_file_change_after_a_rollback_leaves_nothing_async() {
    let clock = ManualClock::default();
    let p = Process::start(&clock, 10);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rollout.toml");
    std::fs::write(&config, "percent = 10\n").unwrap();
    let mut watcher = ConfigWatcher::new(&config, p.rollout.clone())
        .unwrap()
        .with_env_override(None);
    let _ = watcher.poll_once().unwrap();
    let mut c = p.controller(file_store(&dir)).build().unwrap();
    c.rollback("pager: upload errors").unwrap();
    assert_eq!(p.async_share(), 0);

    // Any edit of the file, even to force_sync, or to its percent.
    for text in [
        "percent = 10\nforce_sync = [\"vip\"]\n",
        "percent = 50\nforce_async = [\"load-test-1\"]\n",
    ] {
        std::fs::write(&config, text).unwrap();
        let _ = watcher.poll_once().unwrap();
        p.healthy_minute(10);
        let _ = c.tick();
        assert_eq!(p.rollout.percent(), Percent::ZERO, "{text}");
        assert_eq!(p.async_share(), 0, "{text}");
        assert!(!p.rollout.should_use_async("load-test-1"));
    }
    assert_eq!(c.status(), Some(RolloutStatus::RolledBack));
}

#[test]
fn a_restarted_controller_stays_rolled_back_whatever_the_environment_says() {
    let clock = ManualClock::default();
    let dir = tempfile::tempdir().unwrap();
    {
        let p = Process::start(&clock, 10);
        let mut c = p.controller(file_store(&dir)).build().unwrap();
        c.rollback("bad deploy").unwrap();
    }
    // The process dies and comes back with the same environment.
    let p = Process::start(&clock, 10);
    let c = p.controller(file_store(&dir)).build().unwrap();
    assert_eq!(c.status(), Some(RolloutStatus::RolledBack));
    assert_eq!(c.state().unwrap().reason, "bad deploy");
    assert!(p.rollout.is_halted());
    assert_eq!(p.async_share(), 0);
}

#[test]
fn min_duration_counts_across_a_restart_and_the_runs_totals_are_recovered() {
    let clock = ManualClock::default();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("metrics.jsonl");
    let plan = short_plan(60);
    let started = clock.now();
    {
        let p = Process::start(&clock, 10);
        let mut c = p
            .controller(file_store(&dir))
            .plan(plan.clone())
            .log(JsonlSink::open(&log).unwrap())
            .log_interval(Duration::ZERO)
            .build()
            .unwrap();
        for _ in 0..40 {
            p.healthy_minute(20); // 800 async uploads in 40 minutes
            assert_eq!(c.tick().action, None);
        }
        assert_eq!(c.stage_totals().unwrap().judged(Arm::Async), 800);
    } // killed at minute 40

    let p = Process::start(&clock, 10);
    let mut c = p
        .controller(file_store(&dir))
        .plan(plan)
        .log(JsonlSink::open(&log).unwrap())
        .build()
        .unwrap();
    assert_eq!(
        c.stage_started(),
        Some(started),
        "the stage keeps its start"
    );
    let mut ready_at = None;
    for minute in 41..=70 {
        p.healthy_minute(20);
        let tick = c.tick();
        if matches!(tick.action, Some(Action::Ready { .. })) && ready_at.is_none() {
            ready_at = Some(minute);
        }
        if minute == 41 {
            // The 800 judged before the restart count, plus this minute's.
            assert_eq!(c.stage_totals().unwrap().judged(Arm::Async), 820);
        }
    }
    // Ready 60 minutes after the stage's real start, not after the restart.
    assert_eq!(ready_at, Some(60));
}

#[test]
fn resume_after_a_memory_rollback_does_not_roll_back_again_while_memory_is_flat() {
    let clock = ManualClock::default();
    let p = Process::start(&clock, 10);
    let dir = tempfile::tempdir().unwrap();
    let mut c = p.controller(file_store(&dir)).build().unwrap();
    let mb = 1024 * 1024;
    p.metrics.record_memory(500 * mb);
    p.healthy_minute(10);
    let _ = c.tick(); // the run's baseline is taken (warm-up 0)
    p.metrics.record_memory(500 * mb);
    p.healthy_minute(10);
    let _ = c.tick();
    // A leak: +40%, then the process stays at the higher level.
    p.metrics.record_memory(700 * mb);
    p.healthy_minute(10);
    let tick = c.tick();
    assert_eq!(tick.action, Some(Action::Rollback { manual: false }));
    assert!(tick.evaluation.unwrap().reason.contains("memory"));

    c.resume("leak fixed, memory steady at 700 MB").unwrap();
    assert!(!p.rollout.is_halted());
    for minute in 0..30 {
        p.metrics.record_memory(700 * mb);
        p.healthy_minute(10);
        let tick = c.tick();
        assert_eq!(
            tick.action,
            None,
            "minute {minute} after the resume: {:?}",
            tick.evaluation.map(|e| e.reason)
        );
    }
    assert_eq!(c.status(), Some(RolloutStatus::Running));
    // A real leak in the new run still rolls back.
    p.metrics.record_memory(900 * mb);
    p.healthy_minute(10);
    assert_eq!(c.tick().action, Some(Action::Rollback { manual: false }));
}

#[test]
fn resume_after_a_review_judges_the_review_triggers_on_data_after_the_resume() {
    let clock = ManualClock::default();
    let p = Process::start(&clock, 10);
    let dir = tempfile::tempdir().unwrap();
    let mut c = p
        .controller(file_store(&dir))
        .plan(short_plan(24 * 60))
        .build()
        .unwrap();
    // Complaints pile up on the async path: review.
    let mut reviewed = false;
    for _ in 0..60 {
        for _ in 0..20 {
            p.metrics.record_complaint(Arm::Async);
        }
        p.healthy_minute(100);
        if c.tick().action == Some(Action::ReviewRequested) {
            reviewed = true;
            break;
        }
    }
    assert!(reviewed, "complaints sent it to review");
    let stage_start = c.stage_started();
    c.resume("complaints were about the new UI, not uploads")
        .unwrap();
    // The same cumulative evidence does not send it back at the next tick.
    for minute in 0..30 {
        p.healthy_minute(100);
        let tick = c.tick();
        assert_ne!(
            tick.action,
            Some(Action::ReviewRequested),
            "minute {minute}"
        );
    }
    assert_eq!(c.status(), Some(RolloutStatus::Running));
    assert_eq!(
        c.stage_started(),
        stage_start,
        "the stage's clock kept running"
    );
}

#[test]
fn an_operators_change_to_the_store_reaches_a_running_controller_at_its_next_poll() {
    let clock = ManualClock::default();
    let p = Process::start(&clock, 10);
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(&dir);
    let mut c = p.controller(store.clone()).build().unwrap();
    assert_eq!(p.rollout.percent(), pct(10));

    // What `async-upload-rollout rollback --state ...` does.
    let stored = store.load().unwrap().unwrap();
    let rolled_back = stored
        .state
        .apply(
            Operation::Rollback,
            c.plan(),
            clock.now(),
            ChangedBy::Operator,
            "from the CLI",
        )
        .unwrap()
        .unwrap();
    store
        .compare_and_swap(Some(stored.revision), &rolled_back)
        .unwrap();
    assert!(!p.rollout.is_halted(), "not before the poll");
    c.refresh().unwrap();
    assert!(p.rollout.is_halted());
    assert_eq!(c.view().state.as_ref().unwrap().reason, "from the CLI");

    // The controller's own next write is on top of it, never over it.
    c.resume("all clear").unwrap();
    let stored = store.load().unwrap().unwrap();
    assert_eq!(
        stored.state.epoch, 3,
        "start, the CLI's rollback, the resume"
    );
    assert_eq!(stored.state.status, RolloutStatus::Running);
}

#[test]
fn a_corrupt_state_file_fails_closed_and_is_reported_until_fixed() {
    let clock = ManualClock::default();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, "{\"epoch\": 3, \"stage\": 1, \"status\": \"runn").unwrap();
    let p = Process::start(&clock, 50);
    let log = dir.path().join("metrics.jsonl");
    let mut c = p
        .controller(file_store(&dir))
        .log(JsonlSink::open(&log).unwrap())
        .build()
        .expect("a bad state does not stop the service");
    let error = c.state_error().expect("reported").to_owned();
    assert!(error.contains("state.json"), "{error}");
    assert_eq!(c.state(), None);
    assert!(p.rollout.is_halted());
    assert_eq!(p.async_share(), 0);
    assert_eq!(c.view().state_error.as_deref(), Some(error.as_str()));
    let start = &read_log::<LogRecord>(&log).unwrap().records[0];
    assert!(start.reason.as_deref().unwrap().contains("state.json"));
    // Operators cannot act on an unknown state, but a rollback holds anyway.
    assert!(matches!(
        c.advance("go"),
        Err(OperatorError::StateUnknown { .. })
    ));
    p.healthy_minute(10);
    assert!(c.tick().evaluation.is_none());
    assert!(p.rollout.is_halted());

    // Fixed by hand: the controller takes it at the next poll.
    let fixed = RolloutState::running(1, clock.now(), ChangedBy::Operator, "restored");
    std::fs::write(&path, serde_json::to_string(&fixed).unwrap()).unwrap();
    c.refresh().unwrap();
    assert_eq!(c.state_error(), None);
    assert_eq!(p.rollout.percent(), pct(10));
}

#[test]
fn a_state_that_does_not_fit_the_plan_fails_closed() {
    let clock = ManualClock::default();
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(&dir);
    let far = RolloutState::running(7, clock.now(), ChangedBy::Controller, "old plan");
    store.compare_and_swap(None, &far).unwrap();
    let p = Process::start(&clock, 50);
    let c = p.controller(store).build().unwrap();
    assert!(
        c.state_error().unwrap().contains("`stage` is 7"),
        "{:?}",
        c.state_error()
    );
    assert!(p.rollout.is_halted());
}

/// A store that can be made to fail, over a real in-memory one: `down`,
/// every call is an I/O error; `panic_on_load`, a load panics (a bug in a
/// store plug-in).
#[derive(Default)]
struct Faulty {
    inner: MemoryStateStore,
    down: AtomicBool,
    panic_on_load: AtomicBool,
}

impl StateStore for Faulty {
    fn load(&self) -> Result<Option<Stored>, StoreError> {
        assert!(
            !self.panic_on_load.load(Ordering::SeqCst),
            "store plug-in bug"
        );
        self.check()?;
        self.inner.load()
    }

    fn compare_and_swap(
        &self,
        expected: Option<Revision>,
        state: &RolloutState,
    ) -> Result<Revision, StoreError> {
        self.check()?;
        self.inner.compare_and_swap(expected, state)
    }

    fn describe(&self) -> String {
        "faulty store".into()
    }
}

impl Faulty {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Io {
                store: self.describe(),
                source: std::io::Error::other("disk gone"),
            })
        } else {
            Ok(())
        }
    }
}

#[test]
fn an_unreachable_store_fails_closed_after_stale_after_and_a_rollback_is_never_delayed() {
    let clock = ManualClock::default();
    let p = Process::start(&clock, 10);
    let store = Arc::new(Faulty::default());
    let mut c = p
        .controller(store.clone())
        .stale_after(Duration::from_secs(30))
        .build()
        .unwrap();
    assert_eq!(p.rollout.percent(), pct(10));

    store.down.store(true, Ordering::SeqCst);
    clock.advance(Duration::from_secs(20));
    assert!(c.refresh().is_err());
    assert!(
        !p.rollout.is_halted(),
        "within stale_after the last state serves"
    );
    clock.advance(Duration::from_secs(20));
    assert!(c.refresh().is_err());
    assert!(p.rollout.is_halted(), "stale: nothing async");
    assert!(c.view().stale);

    store.down.store(false, Ordering::SeqCst);
    c.refresh().unwrap();
    assert_eq!(p.rollout.percent(), pct(10));

    // The store fails while the async path fails: the rollback is in force
    // at once, and written when the store is back.
    store.down.store(true, Ordering::SeqCst);
    for _ in 0..100 {
        p.metrics.record(Arm::Async, Outcome::Error, MS);
    }
    clock.advance(Duration::from_secs(10));
    let tick = c.tick();
    assert_eq!(tick.action, Some(Action::Rollback { manual: false }));
    assert!(tick.store_error.is_some());
    assert!(p.rollout.is_halted());
    assert_eq!(c.status(), Some(RolloutStatus::RolledBack));
    store.down.store(false, Ordering::SeqCst);
    clock.advance(Duration::from_secs(10));
    let _ = c.tick();
    assert_eq!(
        store.inner.load().unwrap().unwrap().state.status,
        RolloutStatus::RolledBack
    );
    assert!(p.rollout.is_halted());
}

#[test]
fn a_state_file_removed_while_running_is_written_again() {
    let clock = ManualClock::default();
    let p = Process::start(&clock, 10);
    let dir = tempfile::tempdir().unwrap();
    let store = file_store(&dir);
    let mut c = p.controller(store.clone()).build().unwrap();
    c.rollback("hold").unwrap();
    std::fs::remove_file(dir.path().join("state.json")).unwrap();
    c.refresh().unwrap();
    let stored = store.load().unwrap().expect("written again");
    assert_eq!(stored.state.status, RolloutStatus::RolledBack);
    assert!(p.rollout.is_halted());
}

/// The sequence on a state file: rolled back at a high epoch,
/// garbage, then the file removed. The controller writes the rollback again
/// above every epoch seen (never the environment's 10% at a low epoch);
/// and a controller started afresh on a removed state whose high-water mark
/// (`state.json.epoch`) remains starts nothing: only `--create` does.
#[test]
fn a_rollback_is_never_forgotten_through_garbage_then_removal_of_the_state_file() {
    let clock = ManualClock::default();
    let p = Process::start(&clock, 10);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let store = file_store(&dir);
    let mut c = p.controller(store.clone()).build().unwrap();
    for _ in 0..5 {
        c.pause("up").unwrap();
        c.resume("up").unwrap();
    }
    c.rollback("pager").unwrap();
    let rolled_back = store.load().unwrap().unwrap().state;
    assert!(rolled_back.epoch >= 11, "{rolled_back}");

    std::fs::write(&path, "{\"epoch\": 3, \"garb").unwrap();
    assert!(c.refresh().is_err());
    assert!(p.rollout.is_halted());
    std::fs::remove_file(&path).unwrap();
    let _ = c.refresh();
    let restored = store.load().unwrap().expect("written again").state;
    assert_eq!(restored.status, RolloutStatus::RolledBack, "{restored}");
    assert!(restored.epoch > rolled_back.epoch, "{restored}");
    assert!(p.rollout.is_halted());
    assert_eq!(p.async_share(), 0);

    // A restart on a removed state: the mark says the file held a state.
    drop(c);
    std::fs::remove_file(&path).unwrap();
    let again = Process::start(&clock, 10);
    let c = again.controller(store.clone()).build().unwrap();
    assert!(store.load().unwrap().is_none(), "nothing written");
    assert!(again.rollout.is_halted());
    assert_eq!(again.async_share(), 0);
    let error = c.state_error().expect("says why");
    assert!(error.contains("--create"), "{error}");
    assert_eq!(store.high_water().unwrap(), restored.epoch);

    // Its mark removed too, and no controller knowing it: a new rollout,
    // started from the environment.
    drop(c);
    std::fs::remove_file(dir.path().join("state.json.epoch")).unwrap();
    let fresh = Process::start(&clock, 10);
    let _c = fresh.controller(store.clone()).build().unwrap();
    let started = store.load().unwrap().expect("started").state;
    assert_eq!(started.status, RolloutStatus::Running, "{started}");
    assert_eq!(fresh.rollout.percent(), pct(10));
}

/// An old copy of the state file put back by hand (its epoch below the
/// high-water mark): the controller writes that state again above the
/// mark, so the epoch services see never goes back for long.
#[test]
fn an_old_state_file_put_back_is_written_again_above_the_high_water_mark() {
    let clock = ManualClock::default();
    let p = Process::start(&clock, 10);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let store = file_store(&dir);
    let mut c = p.controller(store.clone()).build().unwrap();
    let old_copy = std::fs::read(&path).unwrap();
    let old = store.load().unwrap().unwrap().state;
    for _ in 0..3 {
        c.pause("up").unwrap();
        c.resume("up").unwrap();
    }
    let high_water = store.high_water().unwrap();
    assert!(high_water > old.epoch);
    std::fs::write(&path, &old_copy).unwrap();
    let _ = c.refresh();
    let _ = c.refresh();
    let again = store.load().unwrap().unwrap().state;
    assert!(again.epoch > high_water, "{again} above {high_water}");
    assert_eq!((again.status, again.stage), (old.status, old.stage));
    assert_eq!(p.rollout.percent(), pct(10));
}

#[test]
fn a_panicking_tick_is_caught_counted_and_fails_closed() {
    let p = Process::start(&ManualClock::default(), 10);
    let store = Arc::new(Faulty::default());
    let monitor = p
        .controller(store.clone())
        .build()
        .unwrap()
        .spawn_with_poll(Duration::from_millis(5), Duration::from_millis(5));
    assert!(!p.rollout.is_halted());
    store.panic_on_load.store(true, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while monitor.health().panics == 0 {
        assert!(std::time::Instant::now() < deadline, "no panic seen");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        p.rollout.is_halted(),
        "a panicking monitor serves nothing async"
    );
    let health = monitor.health();
    assert!(health.running, "the monitor survives: {health:?}");
    assert!(health.consecutive_failures >= 1);
    assert!(
        health
            .last_error
            .as_deref()
            .unwrap()
            .contains("store plug-in bug"),
        "{health:?}"
    );
    store.panic_on_load.store(false, Ordering::SeqCst);
    while p.rollout.is_halted() {
        assert!(std::time::Instant::now() < deadline, "never recovered");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(p.rollout.percent(), pct(10));
}
