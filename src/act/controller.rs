//! [`RolloutController`]: runs the plan, the one writer of the rollout's state.
//!
//! The controller owns the [`RolloutState`] (stage and status) through a
//! [`StateStore`]: it loads the stored state when it starts, writes every
//! change with a compare-and-swap, and sees changes made by others (an
//! operator's command line) by reading the store again. The percent in force
//! is applied to the [`Rollout`] from the state and the plan, nothing else:
//! `rolled_back`, `off`, and a state that cannot be read or is stale halt it
//! ([`Rollout::halt`]: nothing async, force lists included).
//!
//! Each [`tick`](RolloutController::tick) reads the store, snapshots the
//! metrics, evaluates the current run of the stage, acts, and appends one
//! line to the log:
//!
//! - **Rollback**: nothing async from this instant (the halt is applied
//!   before the write, so a store that cannot be written never delays it),
//!   until an operator resumes.
//! - **Manual review**: automatic advancing stops until an operator resumes
//!   or advances; automatic rollback stays armed.
//! - **Advance**: once the stage's `min_duration` has passed, with
//!   `auto_advance` on the next stage starts; otherwise the tick reports
//!   that the stage is ready ([`Action::Ready`]).
//!
//! Operators act through [`advance`](RolloutController::advance),
//! [`rollback`](RolloutController::rollback), [`pause`](RolloutController::pause)
//! and [`resume`](RolloutController::resume) (the same transitions the
//! command line writes to the store, [`RolloutState::apply`]).
//!
//! # Restarts continue, never reset
//!
//! A controller that starts with a stored state takes it as it is: a
//! rolled-back rollout stays rolled back, a running stage keeps its
//! `stage_started_at` (its `min_duration` counts from the real start), and
//! the run's totals are recovered from the newest tick line of the same run
//! in the log, so uploads judged before the restart still count. What is not
//! recovered: uploads recorded after that line (at most one
//! [`log_interval`](RolloutControllerBuilder::log_interval) of quiet ticks),
//! the recent windows' history (the short-window checks start over), and the
//! memory baseline (each process takes its own after the warm-up). Only with
//! no stored state does the starting request (`ASYNC_UPLOAD_ROLLOUT`, a
//! config file, [`start_stage`](RolloutControllerBuilder::start_stage)) pick
//! the first state.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::act::health::Health;
use crate::act::log::{JsonlSink, LogError};
use crate::act::metrics_source::MetricsSource;
use crate::act::outage::OutageLog;
use crate::act::record::{Action, LogEvent, LogRecord, NoOp};
use crate::act::recover;
use crate::act::run::RunView;
use crate::act::source::ConfigWatcher;
use crate::act::state::{ChangedBy, Operation, Refused, RolloutState, RolloutStatus};
use crate::act::store::{
    ACK_REFRESH, Applied, MemoryStateStore, Revision, Salvaged, StateStore, StoreError, Stored,
};
use crate::act::trace::{self, Severity};
use crate::clock::unix_ms;
use crate::clock::{Clock, SystemClock};
use crate::decide::config::RolloutConfig;
use crate::decide::percent::Percent;
use crate::decide::rollout::Rollout;
use crate::judge::criteria::{Evaluation, Evaluator, Verdict};
use crate::judge::plan::{PlanError, RolloutPlan};
use crate::metrics::{History, MetricsAccumulator, MetricsSnapshot};

/// How often [`RolloutController`] logs a quiet tick unless told otherwise.
pub const DEFAULT_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// How often a spawned controller reads its store for changes made by
/// others, between ticks, unless told otherwise.
pub const DEFAULT_STATE_POLL: Duration = Duration::from_secs(1);

/// How long a controller keeps serving the last state it read while its
/// store cannot be read, unless told otherwise; after that, nothing async.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(30);

/// How long after a run starts (stage start, resume, restart) the memory
/// baseline is taken, unless told otherwise.
pub const DEFAULT_MEMORY_WARMUP: Duration = Duration::from_secs(60);

/// The [`OutageLog`] kind of a store that cannot be read.
const UNREACHABLE: &str = "state store unreachable";
/// The [`OutageLog`] kind of a write to the store that failed.
const UNWRITABLE: &str = "state store write";

/// What one tick saw and did.
#[derive(Debug)]
#[must_use = "a tick reports log and store errors that should not be ignored"]
pub struct Tick {
    /// The evaluation of the current run of the stage; `None` when nothing
    /// was judged (the rollout is off or rolled back, or its state is
    /// unknown or stale).
    pub evaluation: Option<Evaluation>,
    /// What the controller did about it, if anything.
    pub action: Option<Action>,
    /// Set when the log line could not be written. The action was taken anyway.
    pub log_error: Option<LogError>,
    /// Set when the store could not be read or written this tick. A rollback
    /// is in force locally even when its write failed (it is retried).
    pub store_error: Option<StoreError>,
    /// Set when the [`MetricsSource`] had no data this tick (nothing was
    /// judged).
    pub metrics_error: Option<String>,
}

/// A controller that could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerError {
    /// The plan is not valid.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The start stage is not in the plan.
    #[error("start stage {index} does not exist: the plan has {stages} stages")]
    UnknownStage {
        /// The index asked for.
        index: usize,
        /// How many stages the plan has.
        stages: usize,
    },
    /// The log could not be opened or its first line written.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// An operator action that did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OperatorError {
    /// The state does not allow it (see [`Refused::message`]).
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The rollout's state cannot be read, so there is nothing to change:
    /// fix the store first (nothing is async meanwhile). A rollback is
    /// always accepted, also then.
    #[error(
        "the rollout state is unknown: {message} (only a rollback is accepted over an unknown state: it is always allowed)"
    )]
    StateUnknown {
        /// Why it is unknown.
        message: String,
    },
    /// The store could not be written (a rollback is in force locally
    /// anyway, and retried).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the controller shows to readers that must not wait for a tick:
/// HTTP handlers, exporters, health checks. Published after every tick, poll
/// and operator action; read it with [`RolloutController::view`] or
/// [`MonitorHandle::view`](crate::MonitorHandle::view) (a lock-free load).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ControllerView {
    /// The state as stored (exactly what the store holds, as last read or
    /// written); `None` while it cannot be read (or nothing is stored yet).
    pub state: Option<RolloutState>,
    /// The percent in force: 0% whenever nothing is async (the kill switch
    /// is on, the rollout is halted: off, rolled back, a rollback not yet
    /// stored, state unknown or stale).
    pub percent: Percent,
    /// Whether nothing is async because of the state, force lists included
    /// (off, rolled back, a rollback not yet stored, state unknown or
    /// stale).
    pub halted: bool,
    /// Whether the config's kill switch is on (nothing async, whatever the
    /// state says).
    pub kill_switch: bool,
    /// Why the state could not be loaded or written, while that lasts.
    pub state_error: Option<String>,
    /// Why the config source (a config file, a fleet's config key) cannot be
    /// read, while that lasts; the last good config stays in force.
    pub config_error: Option<String>,
    /// Whether the store has been unreadable for longer than `stale_after`.
    pub stale: bool,
    /// The latest evaluation, if a tick judged one.
    pub last_evaluation: Option<Evaluation>,
    /// The plan's stage percents.
    pub stages: Vec<Percent>,
    /// The current run as this process counts it, while the rollout serves
    /// async (what a fleet replica exports, labelled with its epoch).
    #[serde(skip)]
    pub run: Option<RunView>,
}

/// Runs a [`RolloutPlan`]: judges the current stage on every tick and acts,
/// keeping the rollout's state in a [`StateStore`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use async_upload_rollout::*;
/// use async_upload_rollout::clock::ManualClock;
///
/// let clock = ManualClock::default();
/// let rollout = Arc::new(Rollout::new(RolloutConfig::with_percent(Percent::from_whole(1)?)));
/// let metrics = Arc::new(MetricsAccumulator::with_clock(Arc::new(clock.clone())));
/// let store = Arc::new(MemoryStateStore::new());
/// let mut controller = RolloutController::builder(rollout.clone(), metrics.clone())
///     .clock(Arc::new(clock.clone()))
///     .state_store(store.clone())
///     .build()?;
/// assert_eq!(rollout.percent().to_string(), "1%"); // the requested 1% stage
///
/// // The async path fails badly: the next tick rolls back.
/// for _ in 0..100 {
///     metrics.record(Arm::Async, Outcome::Error, Duration::from_millis(80));
/// }
/// clock.advance(Duration::from_secs(10));
/// let tick = controller.tick();
/// assert_eq!(tick.evaluation.unwrap().verdict, Verdict::Rollback);
/// assert!(rollout.is_halted());
/// assert_eq!(store.load()?.unwrap().state.status, RolloutStatus::RolledBack);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RolloutController {
    rollout: Arc<Rollout>,
    metrics: Arc<MetricsAccumulator>,
    evaluator: Evaluator,
    clock: Arc<dyn Clock>,
    sink: Option<JsonlSink>,
    store: Arc<dyn StateStore>,
    auto_advance: bool,
    log_interval: Duration,
    stale_after: Duration,
    memory_warmup: Duration,
    request: Request,
    last_logged_tick: Option<SystemTime>,
    history: History,
    /// What the store holds, as last read or written; `None` when unknown.
    stored: Option<Stored>,
    /// A change in force locally that the store has not taken yet.
    pending: Option<Pending>,
    state_error: Option<String>,
    /// When the store last answered.
    last_contact: SystemTime,
    stale: bool,
    run: Run,
    last: Option<Evaluation>,
    last_totals: Option<MetricsSnapshot>,
    view: Arc<ArcSwap<ControllerView>>,
    health: Arc<Health>,
    /// A fleet replica: applies and acknowledges, acts only on rollback.
    follower: bool,
    /// Whether this process acknowledges what it applies (it serves uploads).
    acknowledges: bool,
    /// What this process last acknowledged, and when.
    acknowledged: Option<(Applied, SystemTime)>,
    /// The config last fingerprinted, and its fingerprint (computed again
    /// only when the config changes).
    fingerprint: Option<(Arc<RolloutConfig>, String)>,
    /// The largest epoch this controller has seen stored (or the store's
    /// high-water mark): every write goes above it.
    epoch_seen: u64,
    /// The last state this controller read or wrote, kept through states
    /// that cannot be read and keys or files that vanish: what it writes
    /// again when the store loses its state.
    last_known: Option<RolloutState>,
    /// Thins the lines of a store that cannot be reached or written.
    outage: OutageLog,
    /// The stage of that state: a rollback over an unreadable state in which
    /// no stage can be read keeps it.
    stage_seen: Option<usize>,
    /// The config file it polls, if any.
    watcher: Option<ConfigWatcher>,
    /// Why the config sources cannot be read, while that lasts.
    config_error: Option<String>,
    /// Why the store's shared config cannot be read, while that lasts.
    store_config_error: Option<String>,
    /// The shared config last applied from the store.
    applied_config: Option<RolloutConfig>,
    /// Where run totals come from, when not from `metrics`.
    source: Option<Box<dyn MetricsSource>>,
}

/// The starting request: used only when no state is stored.
#[derive(Clone, Debug)]
struct Request {
    stage: Option<usize>,
    reason: String,
}

/// A change in force locally, not yet in the store.
#[derive(Clone, Debug)]
enum Pending {
    /// The first state, not written yet.
    Initial(RolloutState),
    /// A rollback (halted locally), to be written over whatever is stored,
    /// or, when `run` is set (a rollback judged on that run's data), over
    /// that run only: a newer run is not rolled back on older evidence.
    Rollback {
        reason: String,
        by: ChangedBy,
        run: Option<u64>,
    },
}

/// The data of the current run of the stage, in this process.
#[derive(Clone, Debug)]
struct Run {
    /// Its base and carried totals (epoch 0 until a state names the run).
    view: RunView,
    /// When the memory baseline is due (the warm-up's end).
    memory_from: SystemTime,
    memory_ready: bool,
}

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
            None => request_for(evaluator.plan(), self.rollout.percent()),
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
        let mut controller = RolloutController {
            run: Run::start(0, self.metrics.snapshot(), now, self.memory_warmup),
            rollout: self.rollout,
            metrics: self.metrics,
            evaluator,
            clock: self.clock,
            sink: self.sink,
            store,
            auto_advance: self.auto_advance,
            log_interval: self.log_interval,
            stale_after: self.stale_after,
            memory_warmup: self.memory_warmup,
            request,
            last_logged_tick: None,
            history: self.history,
            stored: None,
            pending: None,
            state_error: None,
            last_contact: now,
            stale: false,
            last: None,
            last_totals: None,
            view,
            health: Arc::new(Health::default()),
            follower: self.follower,
            acknowledges: self.acknowledges,
            acknowledged: None,
            fingerprint: None,
            epoch_seen: 0,
            last_known: None,
            outage: OutageLog::default(),
            stage_seen: None,
            watcher: self.watcher,
            config_error: None,
            store_config_error: None,
            applied_config: None,
            source: self.source,
        };
        let loaded = controller.store.load();
        let reason = match loaded {
            Ok(Some(stored)) => match stored.state.validate(controller.plan()) {
                Ok(()) => {
                    let reason = format!(
                        "controller started: continuing {} from {}",
                        stored.state,
                        controller.store.describe()
                    );
                    controller.stored = Some(stored);
                    reason
                }
                Err(err) => controller.unknown(format!(
                    "{}: {err} (nothing is async until it is fixed)",
                    controller.store.describe()
                )),
            },
            Ok(None) if controller.follower => {
                controller.state_error = Some(controller.waiting_message());
                format!(
                    "replica started: no state in {} yet; nothing async until the leading controller writes one",
                    controller.store.describe()
                )
            }
            Ok(None) => match controller.store.high_water() {
                Ok(0) => {
                    let floor = controller.acknowledged_epoch();
                    let first = controller.first_state(now).lifted_above(floor);
                    let reason = format!(
                        "controller started: no state in {}; writing the first: {first}",
                        controller.store.describe(),
                    );
                    controller.pending = Some(Pending::Initial(first));
                    reason
                }
                Ok(high_water) => {
                    controller.epoch_seen = high_water;
                    let message = controller.lost_message(high_water);
                    controller.state_error = Some(message.clone());
                    format!("controller started: {message}")
                }
                Err(err) => {
                    controller.unknown(format!("{err} (nothing is async until it is fixed)"))
                }
            },
            Err(err) => controller.unknown(format!("{err} (nothing is async until it is fixed)")),
        };
        if let Some(stored) = controller.stored.clone() {
            controller.saw(&stored.state);
        }
        // Log the start before changing anything: a log that cannot be
        // written fails the build and leaves the rollout and store as they
        // were. A first state is logged (an `action` line `start`) once it
        // is stored; this line says it is about to be written.
        let state = controller.current().cloned();
        let percent = controller.percent_now();
        let first_write = matches!(controller.pending, Some(Pending::Initial(_)));
        let mut record = if first_write {
            controller.record(LogEvent::State, now)
        } else {
            controller.record(LogEvent::Action, now)
        };
        record.percent = Some(percent);
        if first_write {
            trace::state_event(Severity::Info, &reason, None);
        } else {
            let action = Action::Start {
                stage: state.as_ref().and_then(|s| s.stage),
                percent,
            };
            if controller.stored.is_none() {
                // Unreadable or not yet written by the leader: nothing async.
                trace::state_event(Severity::FailClosed, &reason, None);
            }
            trace::action(&action, &reason, state.as_ref(), percent, false);
            record.action = Some(action);
        }
        record.reason = Some(reason);
        if let Some(err) = controller.append(&record) {
            return Err(err.into());
        }
        if let Some(state) = &state {
            controller.run.view.epoch = state.run_epoch;
            if controller.pending.is_none() {
                controller.recover_run(state, now);
            }
        }
        // Writes the first state if there was none (a failure is kept and
        // retried; the state is in force meanwhile).
        let _ = controller.write_pending(now);
        controller.apply_config(now, true);
        controller.apply();
        controller.acknowledge(now);
        controller.publish();
        Ok(controller)
    }
}

/// The starting request for `percent` (see
/// [`RolloutControllerBuilder::start_stage`]).
fn request_for(plan: &RolloutPlan, percent: Percent) -> Request {
    if percent == Percent::ZERO {
        return Request {
            stage: None,
            reason: format!("the requested percent is {percent}: off"),
        };
    }
    let stage = plan
        .stages
        .iter()
        .enumerate()
        .filter(|(_, s)| s.percent <= percent)
        .max_by_key(|(_, s)| s.percent)
        .map(|(i, _)| i);
    let reason = match stage {
        Some(i) => format!(
            "requested {percent}: starting stage {i} ({})",
            plan.stages[i].percent
        ),
        None => format!("requested {percent}, below every stage: off"),
    };
    Request { stage, reason }
}

impl Run {
    fn start(epoch: u64, base: MetricsSnapshot, now: SystemTime, warmup: Duration) -> Run {
        Run {
            view: RunView::new(epoch, stamped(base, now), None),
            memory_from: now.checked_add(warmup).unwrap_or(now),
            memory_ready: false,
        }
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

    /// Replaces the log (or turns logging off with `None`), for example to
    /// rotate it. Returns the previous sink.
    pub fn set_log(&mut self, sink: Option<JsonlSink>) -> Option<JsonlSink> {
        std::mem::replace(&mut self.sink, sink)
    }

    /// Reads the store, applies a change made by someone else (or a fix of
    /// an unreadable state), retries a write that failed, and republishes the
    /// view. A spawned controller does this every
    /// [`DEFAULT_STATE_POLL`] between ticks; every tick does it first.
    ///
    /// # Errors
    ///
    /// The store's error, also kept in [`state_error`](Self::state_error).
    pub fn refresh(&mut self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let result = self.sync_with_store(now);
        self.apply();
        self.acknowledge(now);
        self.publish();
        result
    }

    /// Reads the store, adopts what changed, writes what is pending.
    fn sync_with_store(&mut self, now: SystemTime) -> Result<(), StoreError> {
        // A config that cannot be read keeps the last good one, and never
        // keeps a pending rollback from being written.
        let loaded = match self.store.load() {
            Ok(loaded) => loaded,
            Err(err) if err.is_corrupt() => {
                // The store answers: its config can still be read, and a
                // pending rollback is written over the unreadable state.
                self.answered(now);
                self.apply_config(now, true);
                let err = self.store_failed(err, now);
                let _ = self.write_pending(now);
                return Err(err);
            }
            Err(err) => {
                // Unreachable: not asked again for its config this time.
                self.apply_config(now, false);
                return Err(self.store_failed(err, now));
            }
        };
        self.answered(now);
        self.apply_config(now, true);
        match loaded {
            Some(stored) if self.stored.as_ref().map(|s| s.revision) == Some(stored.revision) => {}
            Some(stored) => {
                if let Err(err) = stored.state.validate(self.plan()) {
                    let message = format!("{}: {err}", self.store.describe());
                    self.stored = None;
                    let reason = self.unknown(message.clone());
                    self.log_state_event_at(Severity::FailClosed, now, reason);
                    return Err(StoreError::Corrupt {
                        store: self.store.describe(),
                        message,
                    });
                }
                let epoch = stored.state.epoch;
                self.adopt(stored, now);
                self.raise_below_high_water(epoch, now);
            }
            None => self.state_vanished(now),
        }
        if self.stored.is_some() || matches!(self.pending, Some(Pending::Initial(_))) {
            self.state_error = None;
        } else if self.follower && self.state_error.is_none() {
            self.state_error = Some(self.waiting_message());
        }
        self.write_pending(now)
    }

    /// A state stored at or below the store's high-water mark (written
    /// around the store: by hand, or restored from an old copy) is written
    /// again above it by a controller that is not a follower, so the epoch
    /// services see never goes back for long.
    fn raise_below_high_water(&mut self, epoch: u64, now: SystemTime) {
        if self.follower || self.pending.is_some() {
            return;
        }
        let Ok(high_water) = self.store.high_water() else {
            return;
        };
        if high_water <= epoch {
            return;
        }
        let Some(state) = self.stored.as_ref().map(|s| s.state.clone()) else {
            return;
        };
        let why = format!(
            "its epoch {epoch} was below the epoch {high_water} {} had held",
            self.store.describe()
        );
        let raised = state.restored(self.epoch_floor(), now, &why);
        self.log_state_event_at(
            Severity::Warn,
            now,
            format!(
                "a state was stored around the store ({why}): writing it again above: {raised}"
            ),
        );
        self.pending = Some(Pending::Initial(raised));
    }

    /// The store answered a read: the end of an outage (said once), and the
    /// stale check on its confirmed contact.
    fn answered(&mut self, now: SystemTime) {
        self.last_contact = now;
        if let Some(summary) = self.outage.recovered(UNREACHABLE, now) {
            self.log_state_event(
                now,
                format!(
                    "the state store {} answers again ({summary})",
                    self.store.describe()
                ),
            );
        }
        self.check_stale();
    }

    /// How long since the store last confirmed contact: its own answer
    /// ([`StateStore::contact_age`]) where it keeps one, else the time since
    /// this controller's last successful read, on a clock read now (never a
    /// time read before a call that could block).
    fn contact_age(&self) -> Duration {
        self.store.contact_age().unwrap_or_else(|| {
            self.clock
                .now()
                .duration_since(self.last_contact)
                .unwrap_or_default()
        })
    }

    /// Fails closed once the store's last confirmed contact is older than
    /// `stale_after`, and opens again when it is not (each said once).
    fn check_stale(&mut self) {
        let stale = self.contact_age() > self.stale_after;
        if stale == self.stale {
            return;
        }
        self.stale = stale;
        let now = self.clock.now();
        if stale {
            self.log_state_event_at(
                Severity::FailClosed,
                now,
                format!(
                    "no confirmed contact with the state store {} for more than {}: nothing is async until it answers",
                    self.store.describe(),
                    humantime::format_duration(self.stale_after)
                ),
            );
        } else {
            self.log_state_event(
                now,
                format!(
                    "the state store {} answers again: the state in force applies again",
                    self.store.describe()
                ),
            );
        }
    }

    /// The epoch every write goes above: the largest this controller has
    /// seen, and the store's high-water mark (when the store can tell now).
    fn epoch_floor(&mut self) -> u64 {
        if let Ok(high_water) = self.store.high_water() {
            self.epoch_seen = self.epoch_seen.max(high_water);
        }
        self.epoch_seen
    }

    /// The largest epoch any service acknowledges (0 when none, or when the
    /// store keeps no acknowledgements or cannot list them).
    fn acknowledged_epoch(&self) -> u64 {
        self.store
            .acknowledgements()
            .ok()
            .flatten()
            .into_iter()
            .flatten()
            .map(|ack| ack.applied.epoch)
            .max()
            .unwrap_or(0)
    }

    /// Why there is no state: the store held one (up to `high_water`), so
    /// it is not started again from the starting request.
    fn lost_message(&self, high_water: u64) -> String {
        format!(
            "no state in {}, which has held one (up to epoch {high_water}): a rollout that had a state is not started again from the environment or a file; nothing is async until an operator starts one (`async-upload-rollout advance --create`, or `rollback --create`)",
            self.store.describe()
        )
    }

    fn waiting_message(&self) -> String {
        format!(
            "no state in {} yet: waiting for the leading controller (nothing async meanwhile)",
            self.store.describe()
        )
    }

    /// Polls the config file (if any) and applies the store's shared
    /// config (salt, kill switch, id lists; never the percent) when it
    /// changed. A source that cannot be read keeps the last good config and
    /// is reported once per change of its problem: a `config` log line, a
    /// `WARN` event, [`ControllerView::config_error`].
    /// `reachable`: whether the store just answered (else its shared config
    /// is not asked for, and its last problem stays as it was).
    fn apply_config(&mut self, now: SystemTime, reachable: bool) {
        // The watcher stores a changed file itself, and reports each bad
        // version once (a `WARN` event, and a `config` line with its log).
        let file_problem = self.watcher.as_mut().and_then(|watcher| {
            let _ = watcher.poll_once();
            watcher.last_error()
        });
        let (config, store_problem) = if reachable {
            match self.store.load_config() {
                Ok(config) => (config, None),
                Err(err) => (
                    None,
                    Some(format!(
                        "cannot read the shared config: {err}; the last good config stays in force"
                    )),
                ),
            }
        } else {
            (None, self.store_config_error.clone())
        };
        if store_problem != self.store_config_error {
            let message = store_problem.clone().unwrap_or_else(|| {
                format!(
                    "the shared config in {} can be read again",
                    self.store.describe()
                )
            });
            let severity = if store_problem.is_some() {
                Severity::Warn
            } else {
                Severity::Info
            };
            trace::shared_config(severity, &message);
            self.log_config_event(now, message);
            self.store_config_error = store_problem.clone();
        }
        let problems: Vec<String> = file_problem.into_iter().chain(store_problem).collect();
        self.config_error = (!problems.is_empty()).then(|| problems.join("; "));
        if let Some(config) = config
            && self.applied_config.as_ref() != Some(&config)
        {
            self.rollout.update(|current| {
                current.salt.clone_from(&config.salt);
                current.kill_switch = config.kill_switch;
                current.force_async.clone_from(&config.force_async);
                current.force_sync.clone_from(&config.force_sync);
            });
            trace::state_event(
                Severity::Info,
                &format!(
                    "applied the shared config from {} (kill switch {}, {} force_async and {} force_sync ids)",
                    self.store.describe(),
                    if config.kill_switch { "on" } else { "off" },
                    config.force_async.len(),
                    config.force_sync.len()
                ),
                self.current(),
            );
            self.applied_config = Some(config);
        }
    }

    /// What this process applies now, as it acknowledges it.
    fn applied(&mut self) -> Applied {
        let known = self.pending.is_none() && !self.stale;
        let (epoch, stage) = match &self.stored {
            Some(stored) if known => (stored.state.epoch, stored.state.stage),
            _ => (0, None),
        };
        let config = self.rollout.config();
        let fingerprint = match &self.fingerprint {
            Some((seen, fingerprint)) if Arc::ptr_eq(seen, &config) => fingerprint.clone(),
            _ => {
                let fingerprint = config.fingerprint();
                self.fingerprint = Some((config, fingerprint.clone()));
                fingerprint
            }
        };
        let mut applied = Applied::new(epoch, self.percent_now())
            .at_stage(stage)
            .with_config(fingerprint);
        applied.config_error.clone_from(&self.config_error);
        applied.state_error.clone_from(&self.state_error);
        applied
    }

    /// Tells the store what this process applies (epoch, percent, config),
    /// when that changed and every [`ACK_REFRESH`] (its heartbeat). Not for
    /// a controller that serves no uploads ([`RolloutControllerBuilder::acknowledges`]).
    fn acknowledge(&mut self, now: SystemTime) {
        if !self.acknowledges {
            return;
        }
        let applied = self.applied();
        let due = self.acknowledged.as_ref().is_none_or(|(last, at)| {
            *last != applied || now.duration_since(*at).unwrap_or(ACK_REFRESH) >= ACK_REFRESH
        });
        if due && self.store.acknowledge(&applied).is_ok() {
            self.acknowledged = Some((applied, now));
        }
    }

    /// Removes this process's acknowledgement: it stops serving (the
    /// monitor stops).
    pub(crate) fn withdraw(&mut self) {
        if self.acknowledges && self.acknowledged.take().is_some() {
            let _ = self.store.withdraw();
        }
    }

    /// The store answered "nothing stored".
    ///
    /// A follower waits for the leader. A controller that knows the last
    /// state (read or written, also before the state turned unreadable)
    /// writes it again above every epoch seen; one that does not, on a
    /// store that has held a state, writes nothing and waits for an
    /// operator's `--create`; only a store that never held one is started
    /// from the starting request.
    fn state_vanished(&mut self, now: SystemTime) {
        if self.follower {
            if let Some(lost) = self.stored.take() {
                let message = self.waiting_message();
                self.state_error = Some(message.clone());
                self.log_state_event(
                    now,
                    format!(
                        "the state is gone from the store (was {}): {message}",
                        lost.state
                    ),
                );
            }
            return;
        }
        if matches!(self.pending, Some(Pending::Initial(_))) && self.stored.is_none() {
            // A state not yet written: it is what the store lacks.
            return;
        }
        let lost = self.stored.take().map(|s| s.state);
        let unreadable_before = lost.is_none();
        let last_known = lost.or_else(|| self.last_known.clone());
        let floor = self.epoch_floor();
        let rollback = match &self.pending {
            Some(Pending::Rollback { reason, by, .. }) => Some((reason.clone(), *by)),
            _ => None,
        };
        let next = match last_known {
            Some(last) => {
                let why = if unreadable_before {
                    format!(
                        "the state in {} could not be read, then was removed; this is the last state it held that could be (epoch {})",
                        self.store.describe(),
                        last.epoch
                    )
                } else {
                    format!(
                        "the state was removed from {} (it was epoch {})",
                        self.store.describe(),
                        last.epoch
                    )
                };
                let restored = last.restored(floor, now, &why);
                self.log_state_event_at(
                    Severity::Warn,
                    now,
                    format!(
                        "{why}: writing the last known state again, above every epoch seen: {restored}"
                    ),
                );
                restored
            }
            None if floor > 0 => {
                let message = self.lost_message(floor);
                if self.state_error.as_deref() != Some(message.as_str()) {
                    self.log_state_event_at(Severity::FailClosed, now, message.clone());
                }
                self.state_error = Some(message);
                return;
            }
            // A store that never held a state (a corrupt file that was never
            // a state, now removed): start as a first start would.
            None => {
                let floor = floor.max(self.acknowledged_epoch());
                let first = self.first_state(now).lifted_above(floor);
                self.log_state_event(
                    now,
                    format!(
                        "no state in {}, and it never held one; starting afresh: {}",
                        self.store.describe(),
                        first.reason
                    ),
                );
                self.restart_run(now);
                first
            }
        };
        // A rollback asked for meanwhile holds.
        let next = match rollback {
            Some((reason, by)) if next.status.serves_async() => next
                .apply(Operation::Rollback, self.plan(), now, by, &reason)
                .ok()
                .flatten()
                .unwrap_or(next),
            _ => next,
        };
        self.pending = Some(Pending::Initial(next));
    }

    /// A read failed: keep the last state until it is stale (an unreachable
    /// store, said once per [`OUTAGE_LOG_INTERVAL`](crate::act::OUTAGE_LOG_INTERVAL)),
    /// or fail closed at once when the content cannot be believed (said
    /// once per problem). The last known state is kept either way.
    fn store_failed(&mut self, err: StoreError, now: SystemTime) -> StoreError {
        let message = err.to_string();
        if matches!(err, StoreError::Corrupt { .. }) {
            if self.state_error.as_deref() != Some(message.as_str()) {
                self.log_state_event_at(
                    Severity::FailClosed,
                    now,
                    format!("cannot read the state: {message}"),
                );
                // What it held may be above what this controller saw.
                let _ = self.epoch_floor();
            }
            self.state_error = Some(message.clone());
            if self.stored.take().is_some() {
                self.unknown(message);
            }
        } else {
            if let Some(line) = self.outage.failed(UNREACHABLE, &message, now) {
                self.log_state_event_at(
                    Severity::Warn,
                    now,
                    format!("cannot read the state: {line}"),
                );
            }
            self.state_error = Some(message);
            self.check_stale();
        }
        err
    }

    /// Makes the state unknown (fail closed) and returns the reason.
    fn unknown(&mut self, message: String) -> String {
        self.stored = None;
        if matches!(self.pending, Some(Pending::Initial(_))) {
            self.pending = None;
        }
        self.state_error = Some(message.clone());
        format!("cannot use the rollout state: {message}")
    }

    /// Takes `stored` (written by someone else) as the state in force.
    fn adopt(&mut self, stored: Stored, now: SystemTime) {
        let before = self.current().cloned();
        if matches!(self.pending, Some(Pending::Initial(_))) {
            // Someone wrote first: theirs wins.
            self.pending = None;
        }
        let new_run = before
            .as_ref()
            .is_none_or(|before| stored.state.is_new_run_since(before));
        let reason = format!(
            "state changed in {}: {}",
            self.store.describe(),
            stored.state
        );
        self.saw(&stored.state);
        self.stored = Some(stored);
        if new_run {
            self.restart_run(now);
        }
        self.log_state_event(now, reason);
    }

    /// Writes a pending first state or rollback; keeps it on failure. What
    /// it stores is logged as an `action` line (`start`, `rollback`).
    fn write_pending(&mut self, now: SystemTime) -> Result<(), StoreError> {
        self.write_pending_and_log(now, true)
    }

    /// As [`write_pending`](Self::write_pending); `log`: whether to log what
    /// was stored (a tick that rolls back logs it in its own line).
    fn write_pending_and_log(&mut self, now: SystemTime, log: bool) -> Result<(), StoreError> {
        let Some(pending) = self.pending.clone() else {
            return Ok(());
        };
        let result = match pending {
            Pending::Initial(state) => {
                let state = state.lifted_above(self.epoch_floor());
                self.store
                    .compare_and_swap(self.stored.as_ref().map(|s| s.revision), &state)
                    .map(|revision| {
                        self.pending = None;
                        let reason = format!(
                            "wrote the rollout state to {}: {state}",
                            self.store.describe()
                        );
                        self.take_written(Stored { state, revision });
                        if log {
                            let action = Action::Start {
                                stage: self.stage(),
                                percent: self.percent_now(),
                            };
                            self.log_stored_action(&action, &reason, now);
                        }
                    })
            }
            Pending::Rollback { reason, by, run } => match self.current().cloned() {
                Some(state)
                    if state.status.serves_async()
                        && run.is_none_or(|run| run == state.run_epoch) =>
                {
                    let next = match by {
                        ChangedBy::Controller => {
                            state.automatic(RolloutStatus::RolledBack, now, &reason)
                        }
                        _ => state
                            .apply(Operation::Rollback, self.plan(), now, by, &reason)
                            .ok()
                            .flatten()
                            .unwrap_or(state),
                    };
                    self.commit(next).map(|_| {
                        self.pending = None;
                        if log {
                            let action = Action::Rollback {
                                manual: by == ChangedBy::Operator,
                            };
                            self.log_stored_action(&action, &reason, now);
                        }
                    })
                }
                // Already rolled back or off (by someone else), or a newer
                // run: nothing to write.
                Some(_) => {
                    self.pending = None;
                    Ok(())
                }
                // Unknown: a rollback asked for while the state could not be
                // read is written over it (always accepted), when it is not
                // judged on a run's data.
                None if run.is_none() => match self.rollback_unknown(&reason, by, now) {
                    Ok(Some(_)) => {
                        self.pending = None;
                        if log {
                            let action = Action::Rollback {
                                manual: by == ChangedBy::Operator,
                            };
                            self.log_stored_action(&action, &reason, now);
                        }
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(err) => Err(err),
                },
                None => Ok(()),
            },
        };
        match &result {
            Err(err) => {
                if let Some(line) = self.outage.failed(UNWRITABLE, &err.to_string(), now) {
                    trace::state_event(
                        Severity::Warn,
                        &format!("cannot write the rollout state (retried): {line}"),
                        self.current(),
                    );
                }
                if err.is_conflict() {
                    // Someone wrote in between: read it, try again next time.
                    let _ = self.reload(now);
                }
                self.state_error = Some(err.to_string());
            }
            Ok(()) => {
                if let Some(summary) = self.outage.recovered(UNWRITABLE, now) {
                    trace::state_event(
                        Severity::Info,
                        &format!("the rollout state was written ({summary})"),
                        self.current(),
                    );
                }
            }
        }
        result
    }

    /// Reads the store again after a conflict.
    fn reload(&mut self, now: SystemTime) -> Result<(), StoreError> {
        match self.store.load() {
            Ok(Some(stored)) if stored.state.validate(self.plan()).is_ok() => {
                if self.stored.as_ref().map(|s| s.revision) != Some(stored.revision) {
                    self.adopt(stored, now);
                }
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Writes `next` over the stored state (compare-and-swap on its
    /// revision), at an epoch above every epoch seen, and takes it; returns
    /// what was written.
    fn commit(&mut self, next: RolloutState) -> Result<RolloutState, StoreError> {
        let expected = self.stored.as_ref().map(|s| s.revision);
        let next = next.lifted_above(self.epoch_floor());
        let revision = self.store.compare_and_swap(expected, &next)?;
        self.take_written(Stored {
            state: next.clone(),
            revision,
        });
        Ok(next)
    }

    /// Takes `stored`, just written by this controller, as the state.
    fn take_written(&mut self, stored: Stored) {
        let before = self.current().cloned();
        let new_run = before
            .as_ref()
            .is_none_or(|b| stored.state.is_new_run_since(b));
        self.saw(&stored.state);
        self.stored = Some(stored);
        self.state_error = None;
        if new_run {
            self.restart_run(self.clock.now());
        }
    }

    /// Remembers a state seen stored (the last known one), its epoch and
    /// its stage.
    fn saw(&mut self, state: &RolloutState) {
        self.last_known = Some(state.clone());
        if state.epoch >= self.epoch_seen {
            self.epoch_seen = state.epoch;
            self.stage_seen = state.stage.or(self.stage_seen);
        }
    }

    /// A rollback while the state is unknown, written over whatever the
    /// store holds (a rollback is always accepted): over an unreadable state
    /// ([`StateStore::replace_unreadable`]) or one that does not fit the
    /// plan, a `rolled_back` state whose epoch is above every epoch seen
    /// (this controller's, the store's content, the services'
    /// acknowledgements); over nothing stored, `off`. `Ok(None)` when the
    /// state can be read now (it is taken: decide again on it).
    fn rollback_unknown(
        &mut self,
        reason: &str,
        by: ChangedBy,
        now: SystemTime,
    ) -> Result<Option<RolloutState>, StoreError> {
        let acked = self
            .store
            .acknowledgements()
            .ok()
            .flatten()
            .into_iter()
            .flatten()
            .map(|ack| ack.applied.epoch)
            .max()
            .unwrap_or(0);
        let floor = self.epoch_floor().max(acked);
        let plan = self.plan().clone();
        let stages = plan.stages.len();
        let stage_seen = self.stage_seen;
        // The stage the broken content names if the plan has it, else the
        // one this controller saw last.
        let with_stage = |salvaged: &Salvaged| {
            let mut salvaged = salvaged.clone();
            if salvaged.stage.is_none_or(|s| s >= stages) {
                salvaged.stage = stage_seen.or(salvaged.stage);
            }
            salvaged
        };
        let stored = match self.store.load() {
            Err(err) if err.is_corrupt() => self.store.replace_unreadable(&mut |salvaged| {
                RolloutState::rolled_back_over(&with_stage(salvaged), &plan, floor, now, by, reason)
            })?,
            Err(err) => return Err(err),
            Ok(Some(stored)) => match stored.state.validate(&plan) {
                Ok(()) => {
                    self.adopt(stored, now);
                    self.state_error = None;
                    return Ok(None);
                }
                Err(invalid) => {
                    let salvaged = with_stage(&Salvaged {
                        epoch: Some(stored.state.epoch),
                        stage: stored.state.stage,
                        problem: invalid.to_string(),
                    });
                    let next =
                        RolloutState::rolled_back_over(&salvaged, &plan, floor, now, by, reason);
                    let revision = self.store.compare_and_swap(Some(stored.revision), &next)?;
                    Stored {
                        state: next,
                        revision,
                    }
                }
            },
            Ok(None) => {
                let mut next = RolloutState::off(now, by, reason);
                next.epoch = floor.saturating_add(1);
                let revision = self.store.compare_and_swap(None, &next)?;
                Stored {
                    state: next,
                    revision,
                }
            }
        };
        let state = stored.state.clone();
        self.take_written(stored);
        Ok(Some(state))
    }

    /// Snapshots, evaluates, acts, and logs one line (see
    /// [`RolloutControllerBuilder::log_interval`] for which ticks).
    pub fn tick(&mut self) -> Tick {
        let now = self.clock.now();
        let mut store_error = self.sync_with_store(now).err();
        // The run's memory baseline, once its warm-up is over: the next
        // sample after the reset is the baseline, so reset before the
        // snapshot (which then has no memory until that sample).
        if !self.run.memory_ready && now >= self.run.memory_from {
            self.metrics.reset_memory();
            self.run.memory_ready = true;
        }
        let snapshot = stamped(self.metrics.snapshot(), now);
        if self.source.is_none() {
            self.history.push(snapshot.clone());
        }
        let judged = match self.status() {
            Some(status) if status.serves_async() && !self.stale => self.stage(),
            _ => None,
        };
        let mut metrics_error = None;
        let totals = match (judged, self.current().cloned(), &mut self.source) {
            (Some(_), Some(state), Some(source)) => match source.run_totals(&state, now) {
                Ok(totals) => {
                    let totals = stamped(totals, now);
                    self.history.push(totals.clone());
                    Some(totals)
                }
                Err(err) => {
                    trace::metrics_error(&err);
                    metrics_error = Some(err);
                    None
                }
            },
            (Some(_), _, None) => Some(self.run_totals(&snapshot)),
            _ => None,
        };
        let (Some(stage), Some(totals)) = (judged, totals) else {
            self.apply();
            self.acknowledge(now);
            self.health.ticked(now);
            self.publish();
            return Tick {
                evaluation: None,
                action: None,
                log_error: None,
                store_error,
                metrics_error,
            };
        };
        let evaluation = self
            .evaluator
            .evaluate_in_range(stage, &totals, &self.history, now);
        let action = self.act(&evaluation, now, &mut store_error);
        // A rollback whose write failed is in force here but not stored:
        // its line comes when it is.
        let unstored = matches!(self.pending, Some(Pending::Rollback { .. }));
        self.apply();
        self.acknowledge(now);
        let verdict_changed = self.last.as_ref().map(|e| e.verdict) != Some(evaluation.verdict);
        trace::evaluation(&evaluation, verdict_changed);
        if let Some(action) = &action {
            let percent = self.percent_now();
            trace::action(
                action,
                &evaluation.reason,
                self.current(),
                percent,
                !verdict_changed,
            );
        }
        let notable = action
            .as_ref()
            .is_some_and(|a| !matches!(a, Action::Ready { .. }))
            || verdict_changed;
        let due = self
            .last_logged_tick
            .is_none_or(|t| now.duration_since(t).unwrap_or_default() >= self.log_interval);
        let log_error = if notable || due {
            self.last_logged_tick = Some(now);
            let logged = action
                .as_ref()
                .filter(|a| !(unstored && matches!(a, Action::Rollback { .. })));
            self.log_tick(&totals, &evaluation, logged, now)
        } else {
            None
        };
        self.last = Some(evaluation.clone());
        self.last_totals = Some(totals);
        self.health.ticked(now);
        self.publish();
        Tick {
            evaluation: Some(evaluation),
            action,
            log_error,
            store_error,
            metrics_error,
        }
    }

    /// The run's totals: what was recovered from the log plus what this
    /// process recorded since the run started here. Memory only after the
    /// warm-up (before it, the memory trigger has no data).
    fn run_totals(&self, snapshot: &MetricsSnapshot) -> MetricsSnapshot {
        let mut totals = self.run.view.totals(snapshot);
        totals.memory = if self.run.memory_ready {
            snapshot.memory
        } else {
            None
        };
        totals
    }

    fn act(
        &mut self,
        evaluation: &Evaluation,
        now: SystemTime,
        store_error: &mut Option<StoreError>,
    ) -> Option<Action> {
        let state = self.current()?.clone();
        let stage = state.stage?;
        if self.follower && evaluation.verdict != Verdict::Rollback {
            // Replicas only pull the fuse; the leader judges the rest.
            return None;
        }
        let next = match (state.status, evaluation.verdict) {
            // Safety never pauses: a rollback trigger acts in every status
            // that still sends traffic to the async path.
            (_, Verdict::Rollback) => {
                self.rollout.halt();
                self.pending = Some(Pending::Rollback {
                    reason: evaluation.reason.clone(),
                    by: ChangedBy::Controller,
                    run: Some(state.run_epoch),
                });
                // Logged by the tick's line when stored now; else by an
                // `action` line when the retried write gets through.
                if let Err(err) = self.write_pending_and_log(now, false) {
                    *store_error = Some(err);
                }
                return Some(Action::Rollback { manual: false });
            }
            (RolloutStatus::Running | RolloutStatus::Complete, Verdict::ManualReview) => (
                state.automatic(RolloutStatus::AwaitingReview, now, &evaluation.reason),
                Action::ReviewRequested,
            ),
            (RolloutStatus::Running, Verdict::Advance) => {
                let min_duration = self.plan().stages[stage].criteria.min_duration;
                let last = stage + 1 >= self.plan().stages.len();
                if state.stage_age(now) < min_duration {
                    // Not ready until the stage has run its minimum.
                    return None;
                } else if last {
                    (
                        state.automatic(RolloutStatus::Complete, now, &evaluation.reason),
                        Action::Complete,
                    )
                } else if !self.auto_advance {
                    return Some(Action::Ready {
                        waiting_for: "an operator to advance (auto-advance is off)".into(),
                    });
                } else {
                    let to = stage + 1;
                    let action = Action::Advance {
                        from: Some(stage),
                        to,
                        percent: self.plan().stages[to].percent,
                        manual: false,
                    };
                    (state.advanced(to, now, &evaluation.reason), action)
                }
            }
            _ => return None,
        };
        let (next, action) = next;
        match self.commit(next) {
            Ok(_) => Some(action),
            Err(err) => {
                trace::state_event(
                    Severity::Warn,
                    &format!(
                        "cannot write the rollout state for {}: {err}",
                        action.name()
                    ),
                    self.current(),
                );
                if err.is_conflict() {
                    let _ = self.reload(now);
                }
                self.state_error = Some(err.to_string());
                *store_error = Some(err);
                None
            }
        }
    }

    /// Starts a new run of the stage from now: fresh totals, history and
    /// memory baseline.
    fn restart_run(&mut self, now: SystemTime) {
        // The run being left keeps its sync arm as the carried baseline
        // (when it has enough sync uploads), so a stage without sync traffic
        // of its own (100%) is still compared with the sync path.
        let snapshot = self.metrics.snapshot();
        let leaving = match self.source {
            None => Some(self.run_totals(&snapshot)),
            Some(_) => self.last_totals.clone(),
        };
        if let Some(leaving) = leaving {
            self.evaluator.carry_sync_baseline(&leaving);
        }
        let epoch = self.current().map_or(0, |s| s.run_epoch);
        self.run = Run::start(epoch, snapshot, now, self.memory_warmup);
        self.history.clear();
        self.last = None;
        self.last_totals = None;
    }

    /// After a restart: the run's totals so far, from the log.
    fn recover_run(&mut self, state: &RolloutState, now: SystemTime) {
        if !state.status.serves_async() {
            return;
        }
        let Some(path) = self.sink.as_ref().map(|s| s.path().to_path_buf()) else {
            return;
        };
        let display = path.display();
        let recovered = match recover::run_totals(&path, state) {
            Ok(Some(totals)) => {
                let reason = format!(
                    "recovered the run's totals from {display}: {} async and {} sync uploads judged before the restart",
                    totals.judged(crate::metrics::Arm::Async),
                    totals.judged(crate::metrics::Arm::Sync),
                );
                self.run.view = self.run.view.clone().carrying(state.run_epoch, totals);
                Ok(Some(reason))
            }
            Ok(None) => Ok(None),
            Err(err) => Err(format!(
                "cannot recover the run's totals from {display}: {err}; the run's data starts now"
            )),
        };
        self.log_recovery(recovered, now);
        let min_judged = self.plan().triggers.min_uploads.max(1);
        let recovered = match recover::sync_baseline(&path, state, min_judged) {
            Ok(Some(sync)) => {
                let reason = format!(
                    "recovered the carried sync baseline from {display}: {} sync uploads judged in an earlier run",
                    sync.judged(),
                );
                self.evaluator.set_sync_baseline(Some(sync));
                Ok(Some(reason))
            }
            Ok(None) => Ok(None),
            Err(err) => Err(format!(
                "cannot recover the carried sync baseline from {display}: {err}"
            )),
        };
        self.log_recovery(recovered, now);
    }

    /// Logs what a recovery from the log found (`INFO`) or why it failed
    /// (`WARN`); nothing when there was nothing to recover.
    fn log_recovery(&mut self, recovered: Result<Option<String>, String>, now: SystemTime) {
        match recovered {
            Ok(Some(reason)) => self.log_state_event(now, reason),
            Ok(None) => {}
            Err(reason) => self.log_state_event_at(Severity::Warn, now, reason),
        }
    }

    /// Operator: applies `operation` to the stored state (the same
    /// transition the command line writes), compare-and-swap on the store,
    /// retrying once on a conflict.
    ///
    /// # Errors
    ///
    /// [`OperatorError::Refused`] when the state does not allow it,
    /// [`OperatorError::StateUnknown`] when the state cannot be read,
    /// [`OperatorError::Store`] when the store cannot be written (a
    /// rollback is in force locally anyway, and retried).
    pub fn operate(
        &mut self,
        operation: Operation,
        reason: &str,
    ) -> Result<RolloutState, OperatorError> {
        let now = self.clock.now();
        let _ = self.sync_with_store(now);
        let result = self.operate_now(operation, reason, now);
        self.apply();
        self.publish();
        result
    }

    fn operate_now(
        &mut self,
        operation: Operation,
        reason: &str,
        now: SystemTime,
    ) -> Result<RolloutState, OperatorError> {
        for _ in 0..3 {
            let Some(current) = self.current().cloned() else {
                if operation != Operation::Rollback {
                    return Err(OperatorError::StateUnknown {
                        message: self
                            .state_error
                            .clone()
                            .unwrap_or_else(|| "not read yet".to_owned()),
                    });
                }
                // A rollback is always accepted: in force at once, and
                // written over whatever the store holds.
                self.rollout.halt();
                match self.rollback_unknown(reason, ChangedBy::Operator, now) {
                    Ok(Some(state)) => {
                        self.pending = None;
                        let action = Action::Rollback { manual: true };
                        self.log_stored_action(&action, reason, now);
                        return Ok(state);
                    }
                    // Readable now: decide again on it.
                    Ok(None) => continue,
                    Err(err) if err.is_conflict() => continue,
                    Err(err) => return Err(self.rollback_not_stored(reason, err, now)),
                }
            };
            let Some(next) =
                current.apply(operation, self.plan(), now, ChangedBy::Operator, reason)?
            else {
                self.log_no_op(operation, reason, &current, now);
                return Ok(current);
            };
            if operation == Operation::Rollback {
                // In force before the write: a slow or failing store never
                // delays a rollback.
                self.rollout.halt();
            }
            match self.commit(next) {
                Ok(next) => {
                    if matches!(self.pending, Some(Pending::Initial(_))) {
                        // Written over the first state that was not stored yet.
                        self.pending = None;
                    }
                    let action = self.operator_action(operation, &current, &next);
                    self.log_stored_action(&action, reason, now);
                    return Ok(next);
                }
                Err(err) if err.is_conflict() => {
                    self.reload(now)?;
                }
                Err(err) if operation == Operation::Rollback => {
                    return Err(self.rollback_not_stored(reason, err, now));
                }
                Err(err) => {
                    self.state_error = Some(err.to_string());
                    return Err(err.into());
                }
            }
        }
        Err(OperatorError::Store(StoreError::Conflict {
            store: self.store.describe(),
            expected: self.stored.as_ref().map(|s| s.revision),
            found: None,
        }))
    }

    /// An operator's rollback that is in force here but could not be
    /// stored: kept pending (written when the store answers, and logged
    /// then), said in a `state` line now.
    fn rollback_not_stored(
        &mut self,
        reason: &str,
        err: StoreError,
        now: SystemTime,
    ) -> OperatorError {
        self.pending = Some(Pending::Rollback {
            reason: reason.to_owned(),
            by: ChangedBy::Operator,
            run: None,
        });
        self.state_error = Some(err.to_string());
        self.log_state_event_at(
            Severity::Warn,
            now,
            format!(
                "operator's rollback ({reason}) in force in this process (nothing async here), but not stored: {err}; written when the store answers"
            ),
        );
        err.into()
    }

    /// Logs an operator's request that changed nothing, with its reason.
    fn log_no_op(
        &mut self,
        operation: Operation,
        reason: &str,
        current: &RolloutState,
        now: SystemTime,
    ) {
        let detail = format!(
            "{operation}: nothing to change: the state already is {} at epoch {}",
            current.status, current.epoch
        );
        trace::state_event(
            Severity::Info,
            &format!("{detail} ({reason})"),
            Some(current),
        );
        let mut record = self.record(LogEvent::Action, now);
        record.no_op = Some(NoOp { operation, detail });
        record.reason = Some(reason.to_owned());
        if let Some(err) = self.append(&record) {
            self.health.log_failed(&err);
        }
    }

    fn operator_action(
        &self,
        operation: Operation,
        before: &RolloutState,
        after: &RolloutState,
    ) -> Action {
        let percent = after.percent_in_force(self.plan()).unwrap_or(Percent::ZERO);
        match operation {
            Operation::Advance => Action::Advance {
                from: before.stage,
                to: after.stage.unwrap_or_default(),
                percent,
                manual: true,
            },
            Operation::Rollback => Action::Rollback { manual: true },
            Operation::Pause => Action::Pause,
            Operation::Resume => Action::Resume {
                stage: after.stage.unwrap_or_default(),
                percent,
            },
        }
    }

    /// Operator: move to the next stage now, whatever the verdict (from
    /// `off`: start the first stage). See [`operate`](Self::operate).
    ///
    /// # Errors
    ///
    /// Refused while rolled back (resume first) and at the last stage; the
    /// other errors of [`operate`](Self::operate).
    pub fn advance(&mut self, reason: &str) -> Result<RolloutState, OperatorError> {
        self.operate(Operation::Advance, reason)
    }

    /// Operator: nothing async from now on, until [`resume`](Self::resume).
    /// In force at once, even if the store cannot be written.
    ///
    /// # Errors
    ///
    /// As [`operate`](Self::operate).
    pub fn rollback(&mut self, reason: &str) -> Result<RolloutState, OperatorError> {
        self.operate(Operation::Rollback, reason)
    }

    /// Operator: stop automatic advancing (rollback stays automatic).
    ///
    /// # Errors
    ///
    /// As [`operate`](Self::operate).
    pub fn pause(&mut self, reason: &str) -> Result<RolloutState, OperatorError> {
        self.operate(Operation::Pause, reason)
    }

    /// Operator: back to running the current stage, judged on data after
    /// the resume. After a rollback the stage starts again (its
    /// `min_duration` too); after a review or pause its clock keeps running.
    ///
    /// # Errors
    ///
    /// As [`operate`](Self::operate).
    pub fn resume(&mut self, reason: &str) -> Result<RolloutState, OperatorError> {
        self.operate(Operation::Resume, reason)
    }

    /// The state in force: the stored one, or one not yet written (the
    /// first state, or a rollback whose write failed). `None` while the
    /// state cannot be read.
    #[must_use]
    pub fn state(&self) -> Option<&RolloutState> {
        self.current()
    }

    fn current(&self) -> Option<&RolloutState> {
        match &self.pending {
            Some(Pending::Initial(state)) => Some(state),
            _ => self.stored.as_ref().map(|s| &s.state),
        }
    }

    /// The store's revision of the state in force, once written.
    #[must_use]
    pub fn revision(&self) -> Option<Revision> {
        self.stored.as_ref().map(|s| s.revision)
    }

    /// The current stage's index; `None` when off or unknown.
    #[must_use]
    pub fn stage(&self) -> Option<usize> {
        self.current().and_then(|s| s.stage)
    }

    /// The status, with a rollback that is pending a write counted as done;
    /// `None` while the state is unknown.
    #[must_use]
    pub fn status(&self) -> Option<RolloutStatus> {
        match &self.pending {
            Some(Pending::Rollback { .. }) => Some(RolloutStatus::RolledBack),
            _ => self.current().map(|s| s.status),
        }
    }

    /// When the current stage started (`None` when off or unknown).
    #[must_use]
    pub fn stage_started(&self) -> Option<SystemTime> {
        self.current().and_then(|s| s.stage_started_at)
    }

    /// Why the state could not be read or written, while that lasts.
    #[must_use]
    pub fn state_error(&self) -> Option<&str> {
        self.state_error.as_deref()
    }

    /// The percent in force: `None` when nothing is async (the kill switch
    /// is on; off, rolled back, a rollback pending, state unknown or stale).
    #[must_use]
    pub fn percent_in_force(&self) -> Option<Percent> {
        if self.rollout.config().kill_switch {
            return None;
        }
        self.state_percent()
    }

    /// The percent the state gives: `None` when the state sends nothing
    /// async (off, rolled back, a rollback pending, unknown or stale).
    fn state_percent(&self) -> Option<Percent> {
        if self.stale || matches!(self.pending, Some(Pending::Rollback { .. })) {
            return None;
        }
        self.current()?.percent_in_force(self.plan())
    }

    /// The percent in force, 0% when nothing is async.
    fn percent_now(&self) -> Percent {
        self.percent_in_force().unwrap_or(Percent::ZERO)
    }

    /// Applies the percent in force to the rollout (the kill switch is the
    /// config's: it stays as it is). The store's contact is checked first,
    /// so a state is never applied past its `stale_after`.
    fn apply(&mut self) {
        self.check_stale();
        match self.state_percent() {
            Some(percent) => {
                if self.rollout.is_halted() || self.rollout.percent() != percent {
                    self.rollout.set_percent(percent);
                }
            }
            None => {
                self.rollout.halt();
            }
        }
    }

    /// What readers see (lock-free, published after every tick, poll and
    /// operator action).
    #[must_use]
    pub fn view(&self) -> Arc<ControllerView> {
        self.view.load_full()
    }

    pub(crate) fn view_cell(&self) -> Arc<ArcSwap<ControllerView>> {
        Arc::clone(&self.view)
    }

    pub(crate) fn health(&self) -> Arc<Health> {
        Arc::clone(&self.health)
    }

    fn publish(&self) {
        let by_state = self.state_percent();
        let kill_switch = self.rollout.config().kill_switch;
        self.view.store(Arc::new(ControllerView {
            state: self.stored.as_ref().map(|s| s.state.clone()),
            percent: by_state.filter(|_| !kill_switch).unwrap_or(Percent::ZERO),
            halted: by_state.is_none(),
            kill_switch,
            state_error: self.state_error.clone(),
            config_error: self.config_error.clone(),
            stale: self.stale,
            last_evaluation: self.last.clone(),
            stages: self.plan().stages.iter().map(|s| s.percent).collect(),
            run: by_state.map(|_| self.run.view.clone()),
        }));
    }

    /// Why the config source cannot be read, while that lasts.
    #[must_use]
    pub fn config_error(&self) -> Option<&str> {
        self.config_error.as_deref()
    }

    /// The first state from the starting request.
    fn first_state(&self, now: SystemTime) -> RolloutState {
        match self.request.stage {
            Some(stage) => {
                RolloutState::running(stage, now, ChangedBy::Config, self.request.reason.clone())
            }
            None => RolloutState::off(now, ChangedBy::Config, self.request.reason.clone()),
        }
    }

    /// The plan it runs.
    #[must_use]
    pub fn plan(&self) -> &RolloutPlan {
        self.evaluator.plan()
    }

    /// The latest evaluation of the current run, if a tick judged one.
    #[must_use]
    pub fn last_evaluation(&self) -> Option<&Evaluation> {
        self.last.as_ref()
    }

    /// The current run's totals as of the latest tick (what it judged).
    #[must_use]
    pub fn stage_totals(&self) -> Option<&MetricsSnapshot> {
        self.last_totals.as_ref()
    }

    /// The rollout it drives.
    #[must_use]
    pub fn rollout(&self) -> &Arc<Rollout> {
        &self.rollout
    }

    /// The metrics it judges.
    #[must_use]
    pub fn metrics(&self) -> &Arc<MetricsAccumulator> {
        &self.metrics
    }

    /// The store it keeps the state in.
    #[must_use]
    pub fn state_store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    /// How long the last state read serves while the store cannot confirm
    /// contact ([`RolloutControllerBuilder::stale_after`]).
    #[must_use]
    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// The snapshots of the current run kept so far.
    #[must_use]
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Logs a change this controller stored: an `action` line whose `state`
    /// is what it stored.
    fn log_stored_action(&mut self, action: &Action, reason: &str, now: SystemTime) {
        trace::action(action, reason, self.current(), self.percent_now(), false);
        let mut record = self.record(LogEvent::Action, now);
        record.action = Some(action.clone());
        record.reason = Some(reason.to_owned());
        if let Some(err) = self.append(&record) {
            self.health.log_failed(&err);
        }
    }

    /// A `config` line: the config source cannot be read, or can again.
    fn log_config_event(&mut self, now: SystemTime, reason: String) {
        let mut record = self.record(LogEvent::Config, now);
        record.reason = Some(reason);
        if let Some(err) = self.append(&record) {
            self.health.log_failed(&err);
        }
    }

    fn log_state_event(&mut self, now: SystemTime, reason: String) {
        self.log_state_event_at(Severity::Info, now, reason);
    }

    fn log_state_event_at(&mut self, severity: Severity, now: SystemTime, reason: String) {
        trace::state_event(severity, &reason, self.current());
        let mut record = self.record(LogEvent::State, now);
        record.reason = Some(reason);
        if let Some(err) = self.append(&record) {
            self.health.log_failed(&err);
        }
    }

    fn log_tick(
        &mut self,
        totals: &MetricsSnapshot,
        evaluation: &Evaluation,
        action: Option<&Action>,
        now: SystemTime,
    ) -> Option<LogError> {
        let mut record = self.record(LogEvent::Tick, now);
        // The stage whose totals were judged, even if this tick's action
        // has just moved on to the next one.
        record.stage = Some(evaluation.stage);
        record.snapshot = Some(totals.clone());
        record.evaluation = Some(evaluation.clone());
        record.action = action.cloned();
        record.reason = Some(evaluation.reason.clone());
        let err = self.append(&record);
        if let Some(err) = &err {
            self.health.log_failed(err);
        }
        err
    }

    /// A line of this controller: `state` is exactly what the store holds
    /// (as last read or written; absent while unknown or not yet written),
    /// `percent` the percent in force.
    fn record(&self, event: LogEvent, now: SystemTime) -> LogRecord {
        let mut record = LogRecord::new(event, unix_ms(now));
        record.state = self.stored.as_ref().map(|s| s.state.clone());
        record.stage = record.state.as_ref().and_then(|s| s.stage);
        record.percent = Some(self.percent_now());
        record
    }

    fn append(&mut self, record: &LogRecord) -> Option<LogError> {
        self.sink
            .as_mut()
            .and_then(|sink| sink.append(record).err())
    }
}

/// Stamps a snapshot with the controller's clock, so history and
/// evaluations share one time line even if the metrics use another clock.
fn stamped(mut snapshot: MetricsSnapshot, now: SystemTime) -> MetricsSnapshot {
    snapshot.at_unix_ms = unix_ms(now);
    snapshot
}

impl fmt::Debug for RolloutController {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RolloutController")
            .field("state", &self.current())
            .field("status", &self.status())
            .field("percent", &self.rollout.percent())
            .field("state_error", &self.state_error)
            .finish_non_exhaustive()
    }
}
