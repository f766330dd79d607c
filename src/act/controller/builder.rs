//! [`RolloutControllerBuilder`]: a controller's settings, and its start
//! (the first read of the store, the start line, the recovery of the run).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::act::controller::applied::{Part, Serving};
use crate::act::controller::{
    ControllerError, ControllerView, DEFAULT_LOG_INTERVAL, DEFAULT_MEMORY_WARMUP,
    DEFAULT_STALE_AFTER, RolloutController, Run,
};
use crate::act::health::Health;
use crate::act::journal::Journal;
use crate::act::log::JsonlSink;
use crate::act::metrics_source::MetricsSource;
use crate::act::policy::{Authority, Settings};
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
use crate::metrics::{History, MetricsAccumulator, MetricsSnapshot};

/// Builds a [`RolloutController`]; see [`RolloutController::builder`] and
/// [`RolloutController::judging`].
#[must_use = "a builder does nothing until build() is called"]
pub struct RolloutControllerBuilder {
    part: Start,
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
    start_percent: Option<Percent>,
    authority: Authority,
    watcher: Option<ConfigWatcher>,
}

/// What the controller will serve and judge.
enum Start {
    /// A rollout, judging its metrics.
    Serving(Arc<Rollout>, Arc<MetricsAccumulator>),
    /// Nothing: run totals from a source.
    Judging(Box<dyn MetricsSource>),
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

    /// What it may write of its own accord (default: everything, it owns
    /// the state); [`fleet::replica`](crate::fleet::replica) makes it a
    /// fleet's replica.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn authority(mut self, authority: Authority) -> Self {
        self.authority = authority;
        self
    }

    /// Polls `watcher` (a config file: salt, kill switch, id lists) at
    /// every tick and poll, so that the config is applied by the same
    /// thread as the state, and the view, the log and the acknowledgements
    /// say when the file cannot be read ([`ControllerView::config_error`]).
    /// Poll it once yourself first to take its starting percent. Only for
    /// a controller that serves uploads: [`build`](Self::build) refuses it
    /// on one built by [`RolloutController::judging`].
    pub fn config_watcher(mut self, watcher: ConfigWatcher) -> Self {
        self.watcher = Some(watcher);
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

    /// The starting request when no state is stored, as a percent (0%
    /// means `off`; another percent starts the plan's largest stage at or
    /// below it). Default: the served rollout's percent, and 0% for a
    /// controller that serves no uploads. [`start_stage`](Self::start_stage)
    /// wins over it; a stored state wins over both.
    pub fn start_percent(mut self, percent: Percent) -> Self {
        self.start_percent = Some(percent);
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
    /// rollout and the store are then left as they were),
    /// [`ControllerError::NotServing`] for a config watcher given to a
    /// controller that serves no uploads.
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
            None => {
                let percent = match (self.start_percent, &self.part) {
                    (Some(percent), _) => percent,
                    (None, Start::Serving(rollout, _)) => rollout.percent(),
                    (None, Start::Judging(_)) => Percent::ZERO,
                };
                Request::for_percent(evaluator.plan(), percent)
            }
        };
        let part = match self.part {
            Start::Serving(rollout, metrics) => {
                Part::Serving(Box::new(Serving::new(rollout, metrics, self.watcher)))
            }
            Start::Judging(_) if self.watcher.is_some() => {
                return Err(ControllerError::NotServing {
                    what: "a config watcher",
                });
            }
            Start::Judging(source) => Part::judging(source),
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
        let kill_switch = part.kill_switch();
        let mut controller = RolloutController {
            run: Run::start(
                0,
                part.metrics().map_or_else(
                    || MetricsSnapshot::empty_at(now),
                    |metrics| metrics.snapshot(),
                ),
                now,
                self.memory_warmup,
            ),
            sync: StoreSync::new(
                store,
                evaluator.plan().clone(),
                Arc::clone(&self.clock),
                self.authority,
                self.stale_after,
                request,
                now,
            ),
            journal: Journal::new(
                self.sink,
                Arc::clone(&health),
                kill_switch.clone(),
                self.log_interval,
            ),
            part,
            kill_switch,
            evaluator,
            sync_baseline: None,
            clock: self.clock,
            settings: Settings {
                auto_advance: self.auto_advance,
                authority: self.authority,
            },
            memory_warmup: self.memory_warmup,
            history: self.history,
            last: None,
            last_totals: None,
            view,
            health,
            config_error: None,
            store_config_error: None,
            applied_config: None,
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
    /// Starts building a controller for `rollout`, judging `metrics`: the
    /// controller of a process that serves uploads. It applies the state in
    /// force to `rollout`, and acknowledges what it applies through the
    /// store ([`StateStore::acknowledge`]: the epoch, percent in force,
    /// config fingerprint and errors, on every change and every
    /// [`ACK_REFRESH`](crate::act::ACK_REFRESH)), so operators' commands
    /// can confirm that it applied their change.
    pub fn builder(
        rollout: Arc<Rollout>,
        metrics: Arc<MetricsAccumulator>,
    ) -> RolloutControllerBuilder {
        RolloutControllerBuilder::new(Start::Serving(rollout, metrics))
    }

    /// Starts building a controller that serves no uploads and judges the
    /// run totals `source` gives (a fleet's leading controller judges every
    /// replica's counters, from Prometheus: see
    /// [`FleetController`](crate::fleet::FleetController)). It has no
    /// rollout to apply to and acknowledges nothing; the replicas do. The
    /// memory trigger is the replicas' own (their local fuse). With no
    /// state stored, it starts from
    /// [`start_percent`](RolloutControllerBuilder::start_percent) (default
    /// 0%: `off`) or [`start_stage`](RolloutControllerBuilder::start_stage).
    pub fn judging(source: Box<dyn MetricsSource>) -> RolloutControllerBuilder {
        RolloutControllerBuilder::new(Start::Judging(source))
    }
}

impl RolloutControllerBuilder {
    fn new(part: Start) -> RolloutControllerBuilder {
        RolloutControllerBuilder {
            part,
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
            start_percent: None,
            authority: Authority::Owner,
            watcher: None,
        }
    }
}
