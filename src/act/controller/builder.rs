//! [`RolloutControllerBuilder`]: a controller's settings, and its start
//! (the first read of the store, the start line, the recovery of the run).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::act::controller::{
    ControllerError, ControllerView, DEFAULT_LOG_INTERVAL, DEFAULT_MEMORY_WARMUP,
    DEFAULT_STALE_AFTER, RolloutController, Run,
};
use crate::act::health::Health;
use crate::act::journal::Journal;
use crate::act::log::JsonlSink;
use crate::act::metrics_source::MetricsSource;
use crate::act::record::{Action, LogEvent};
use crate::act::source::ConfigWatcher;
use crate::act::store::{MemoryStateStore, StateStore};
use crate::act::sync::{Request, StoreSync};
use crate::act::trace::{self, Severity};
use crate::clock::{Clock, SystemClock};
use crate::decide::percent::Percent;
use crate::decide::rollout::Rollout;
use crate::judge::Evaluator;
use crate::judge::plan::RolloutPlan;
use crate::metrics::{History, MetricsAccumulator};

/// Builds a [`RolloutController`]; see [`RolloutController::builder`].
#[must_use = "a builder does nothing until build() is called"]
pub struct RolloutControllerBuilder {
    rollout: Arc<Rollout>,
    metrics: Arc<MetricsAccumulator>,
    plan: RolloutPlan,
    clock: Arc<dyn Clock>,
    sink: Option<JsonlSink>,
    store: Option<Arc<dyn StateStore>>,
    auto_advance: bool,
    log_interval: Duration,
    stale_after: Duration,
    memory_warmup: Duration,
    history: History,
    start_stage: Option<usize>,
    follower: bool,
    acknowledges: bool,
    watcher: Option<ConfigWatcher>,
    source: Option<Box<dyn MetricsSource>>,
}

impl RolloutControllerBuilder {
    /// The plan to run (default: [`RolloutPlan::default`]).
    pub fn plan(mut self, plan: RolloutPlan) -> Self {
        self.plan = plan;
        self
    }

    /// The clock (default: [`SystemClock`]). Use the metrics' clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Appends a line per tick and per action to `sink`. Its tick lines are
    /// also where a restarted controller recovers the current run's totals.
    pub fn log(mut self, sink: JsonlSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Where the rollout's state lives (default: a [`MemoryStateStore`] of
    /// its own, which a restart loses). Use a
    /// [`FileStateStore`](crate::FileStateStore) so that a restart continues
    /// the stored state and the command line can reach the service.
    pub fn state_store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Whether an `Advance` verdict moves to the next stage by itself once
    /// the stage's `min_duration` has passed (default: off, so a person
    /// decides each step; the tick reports that the stage is ready).
    pub fn auto_advance(mut self, on: bool) -> Self {
        self.auto_advance = on;
        self
    }

    /// How often a quiet tick is logged (default: one a minute). A tick line
    /// carries the run's totals with their latency histograms and every
    /// check, about 20 KiB, so a line every 10-second tick would be close to
    /// 200 MB a day. Ticks that act (other than reporting readiness) or whose
    /// verdict differs from the previous tick's are always logged;
    /// `Duration::ZERO` logs every tick.
    pub fn log_interval(mut self, every: Duration) -> Self {
        self.log_interval = every;
        self
    }

    /// How long the last state read keeps serving while the store cannot be
    /// read (default [`DEFAULT_STALE_AFTER`]); after that nothing is async
    /// until the store answers again. A store whose content cannot be
    /// believed fails closed at once.
    pub fn stale_after(mut self, after: Duration) -> Self {
        self.stale_after = after;
        self
    }

    /// How long after each run starts (stage start, resume, restart) the
    /// memory baseline is taken (default [`DEFAULT_MEMORY_WARMUP`]). A
    /// process's memory grows as it warms up (runtime threads, connection
    /// buffers, allocator arenas); until the warm-up ends the memory trigger
    /// has no data and cannot fire. Then
    /// [`MetricsAccumulator::reset_memory`] makes the next sample the run's
    /// baseline.
    pub fn memory_warmup(mut self, warmup: Duration) -> Self {
        self.memory_warmup = warmup;
        self
    }

    /// Runs as a replica of a fleet (default: off). A follower applies the
    /// stored state and the store's config to its rollout, acknowledges
    /// every epoch it applies ([`StateStore::acknowledge`]), and acts on
    /// its own metrics only through the immediate rollback triggers (the
    /// local fuse: one replica's critical error rolls the whole fleet back,
    /// written with a compare-and-swap on the revision it judged). It never
    /// advances, asks for review or writes the first state: the leading
    /// controller does. With no state stored yet it serves nothing async.
    pub fn follower(mut self, on: bool) -> Self {
        self.follower = on;
        self
    }

    /// Whether this process acknowledges what it applies through the store
    /// ([`StateStore::acknowledge`]: the epoch, percent in force, config
    /// fingerprint and errors, on every change and every
    /// [`ACK_REFRESH`](crate::act::ACK_REFRESH)), so operators' commands can
    /// confirm that it applied their change. Default: on; turn it off for a
    /// controller that serves no uploads (a fleet's leading controller).
    pub fn acknowledges(mut self, on: bool) -> Self {
        self.acknowledges = on;
        self
    }

    /// Polls `watcher` (a config file: salt, kill switch, id lists) at
    /// every tick and poll, so that the config is applied by the same
    /// thread as the state, and the view, the log and the acknowledgements
    /// say when the file cannot be read ([`ControllerView::config_error`]).
    /// Poll it once yourself first to take its starting percent.
    pub fn config_watcher(mut self, watcher: ConfigWatcher) -> Self {
        self.watcher = Some(watcher);
        self
    }

    /// Judges run totals from `source` instead of the accumulator (a fleet's
    /// controller: every replica's counters, from Prometheus). The memory
    /// trigger is then the replicas' own (their local fuse).
    pub fn metrics_source(mut self, source: Box<dyn MetricsSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// The snapshot history to keep (default: [`History::default`]).
    pub fn history(mut self, history: History) -> Self {
        self.history = history;
        self
    }

    /// The stage to start at when no state is stored. By default the
    /// request is the rollout's current percent (so `ASYNC_UPLOAD_ROLLOUT=10`
    /// starts the 10% stage): 0% means `off`; another percent starts the
    /// plan's largest stage at or below it (never more async than asked),
    /// or `off` when every stage is above it. A stored state always wins.
    pub fn start_stage(mut self, index: usize) -> Self {
        self.start_stage = Some(index);
        self
    }

    /// Validates the plan, loads the state (or writes the first one from
    /// the starting request), applies it to the rollout, and logs the start.
    ///
    /// A state that cannot be read or does not fit the plan does not fail
    /// the build: the controller starts with the rollout halted (nothing
    /// async; the sync path serves), reports it in
    /// [`state_error`](RolloutController::state_error), its log and its
    /// [`view`](RolloutController::view), and keeps reading the store until
    /// the state is fixed.
    ///
    /// # Errors
    ///
    /// [`ControllerError::Plan`] for an invalid plan,
    /// [`ControllerError::UnknownStage`] for a start stage out of range,
    /// [`ControllerError::Log`] when the start line cannot be written (the
    /// rollout and the store are then left as they were).
    pub fn build(self) -> Result<RolloutController, ControllerError> {
        let stages = self.plan.stages.len();
        let evaluator = Evaluator::new(self.plan)?;
        let request = match self.start_stage {
            Some(index) if index >= stages => {
                return Err(ControllerError::UnknownStage { index, stages });
            }
            Some(index) => Request {
                stage: Some(index),
                reason: format!("started at stage {index} as configured"),
            },
            None => Request::for_percent(evaluator.plan(), self.rollout.percent()),
        };
        let now = self.clock.now();
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStateStore::new()));
        let view = Arc::new(ArcSwap::from_pointee(ControllerView {
            state: None,
            percent: Percent::ZERO,
            halted: true,
            kill_switch: false,
            state_error: None,
            config_error: None,
            stale: false,
            last_evaluation: None,
            stages: evaluator.plan().stages.iter().map(|s| s.percent).collect(),
            run: None,
        }));
        let health = Arc::new(Health::default());
        let mut controller = RolloutController {
            run: Run::start(0, self.metrics.snapshot(), now, self.memory_warmup),
            sync: StoreSync::new(
                store,
                evaluator.plan().clone(),
                Arc::clone(&self.clock),
                self.follower,
                self.stale_after,
                request,
                now,
            ),
            journal: Journal::new(
                self.sink,
                Arc::clone(&health),
                Arc::clone(&self.rollout),
                self.log_interval,
            ),
            rollout: self.rollout,
            metrics: self.metrics,
            evaluator,
            sync_baseline: None,
            clock: self.clock,
            auto_advance: self.auto_advance,
            memory_warmup: self.memory_warmup,
            history: self.history,
            last: None,
            last_totals: None,
            view,
            health,
            follower: self.follower,
            acknowledges: self.acknowledges,
            acknowledged: None,
            fingerprint: None,
            watcher: self.watcher,
            config_error: None,
            store_config_error: None,
            applied_config: None,
            source: self.source,
        };
        let reason = controller.sync.start(now);
        // Log the start before changing anything: a log that cannot be
        // written fails the build and leaves the rollout and store as they
        // were. A first state is logged (an `action` line `start`) once it
        // is stored; this line says it is about to be written.
        let state = controller.sync.current().cloned();
        let line = controller.sync.line();
        let percent = controller.journal.percent(line);
        let first_write = controller.sync.first_pending();
        let mut record = if first_write {
            controller.journal.record(LogEvent::State, now, line)
        } else {
            controller.journal.record(LogEvent::Action, now, line)
        };
        record.percent = Some(percent);
        if first_write {
            trace::state_event(Severity::Info, &reason, None);
        } else {
            let action = Action::Start {
                stage: state.as_ref().and_then(|s| s.stage),
                percent,
            };
            if controller.sync.stored_state().is_none() {
                // Unreadable or not yet written by the leader: nothing async.
                trace::state_event(Severity::FailClosed, &reason, None);
            }
            trace::action(&action, &reason, state.as_ref(), percent, false);
            record.action = Some(action);
        }
        record.reason = Some(reason);
        if let Some(err) = controller.journal.append(&record) {
            return Err(err.into());
        }
        if let Some(state) = &state {
            controller.run.view.epoch = state.run_epoch;
            if !controller.sync.first_pending() {
                controller.recover_run(state, now);
            }
        }
        // Writes the first state if there was none (a failure is kept and
        // retried; the state is in force meanwhile).
        let _ = controller.sync.write_pending(now, &mut controller.journal);
        controller.start_new_runs();
        controller.apply_config(now, true);
        controller.apply();
        controller.acknowledge(now);
        controller.publish();
        Ok(controller)
    }
}

impl RolloutController {
    /// Starts building a controller for `rollout`, judging `metrics`.
    pub fn builder(
        rollout: Arc<Rollout>,
        metrics: Arc<MetricsAccumulator>,
    ) -> RolloutControllerBuilder {
        RolloutControllerBuilder {
            rollout,
            metrics,
            plan: RolloutPlan::default(),
            clock: Arc::new(SystemClock),
            sink: None,
            store: None,
            auto_advance: false,
            log_interval: DEFAULT_LOG_INTERVAL,
            stale_after: DEFAULT_STALE_AFTER,
            memory_warmup: DEFAULT_MEMORY_WARMUP,
            history: History::default(),
            start_stage: None,
            follower: false,
            acknowledges: true,
            watcher: None,
            source: None,
        }
    }
}
