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
//! [`log_interval`](builder::RolloutControllerBuilder::log_interval) of quiet ticks),
//! the recent windows' history (the short-window checks start over), and the
//! memory baseline (each process takes its own after the warm-up). Only with
//! no stored state does the starting request (`ASYNC_UPLOAD_ROLLOUT`, a
//! config file, [`start_stage`](builder::RolloutControllerBuilder::start_stage)) pick
//!
//! # Layout
//!
//! The controller is a pure core in a thin shell: [`policy`](crate::act::policy)
//! decides what a verdict or an operator's request calls for (plain values
//! in, the next state and the action out); [`StoreSync`] keeps up with the
//! store (what was read, what is pending, staleness, adopt, commit); the
//! [`Journal`] writes the log lines and tracing events. This module ties them
//! together: a tick ([`tick`](RolloutController::tick)), the run's data
//! (`Run`), the start ([`builder`]), the operator's API ([`operate`]), what it
//! shows ([`view`]), and what it applies ([`applied`]).
//!
//! # Roles by composition
//!
//! What a controller serves is a part of it, not a flag: a process that
//! serves uploads has a rollout to apply to, its metrics to judge and
//! acknowledgements to write ([`RolloutController::builder`]); a controller
//! that serves none judges run totals from a source and has none of those
//! ([`RolloutController::judging`], the fleet's leader,
//! [`FleetController`](crate::fleet::FleetController)). A fleet's replica is
//! a serving controller whose authority is the local fuse
//! ([`fleet::replica`](crate::fleet::replica)): the policy lets it write
//! nothing but a rollback, and its store synchronisation waits for the
//! leader where an owner of the state would write.

mod applied;
pub(crate) mod builder;
mod operate;
mod view;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::act::controller::applied::Part;
use crate::act::health::Health;
use crate::act::journal::{Journal, KillSwitch};
use crate::act::log::{JsonlSink, LogError};
use crate::act::policy::{self, Input, Settings, Step};
use crate::act::record::Action;
use crate::act::recover;
use crate::act::run::RunView;
use crate::act::state::{Refused, RolloutState};
use crate::act::store::StoreError;
use crate::act::sync::StoreSync;
use crate::act::trace::{self, Severity};
use crate::clock::{Clock, unix_ms};
use crate::decide::config::RolloutConfig;
use crate::decide::percent::Percent;
use crate::judge::plan::PlanError;
use crate::judge::{Evaluation, Evaluator};
use crate::metrics::{ArmMetrics, History, MetricsSnapshot};

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
    /// Set when the [`MetricsSource`](crate::act::MetricsSource) had no data this tick (nothing was
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
    /// Something only a controller that serves uploads can use was given
    /// to one that serves none ([`RolloutController::judging`]).
    #[error(
        "{what} was given to a controller that serves no uploads (built by RolloutController::judging): only a serving controller applies a config"
    )]
    NotServing {
        /// What was given.
        what: &'static str,
    },
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

/// Runs a [`RolloutPlan`](crate::RolloutPlan): judges the current stage on every tick and acts,
/// keeping the rollout's state in a [`StateStore`](crate::StateStore).
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
    /// What it serves and judges: a rollout and its metrics, or (a fleet's
    /// leader) nothing but run totals from a source.
    part: Part,
    /// Where the kill switch in force is read (the part's; the journal
    /// holds the same).
    kill_switch: KillSwitch,
    evaluator: Evaluator,
    /// The carried sync baseline, an input of every evaluation
    /// ([`Evaluator::carry_sync_baseline`]).
    sync_baseline: Option<ArmMetrics>,
    clock: Arc<dyn Clock>,
    /// The store: what was read, what is pending, how stale.
    sync: StoreSync,
    /// The log lines and tracing events.
    journal: Journal,
    /// What it does on its own: advance by itself, and what it may write.
    settings: Settings,
    memory_warmup: Duration,
    history: History,
    run: Run,
    last: Option<Evaluation>,
    last_totals: Option<MetricsSnapshot>,
    view: Arc<ArcSwap<ControllerView>>,
    health: Arc<Health>,
    /// Why the config sources cannot be read, while that lasts.
    config_error: Option<String>,
    /// Why the store's shared config cannot be read, while that lasts.
    store_config_error: Option<String>,
    /// The shared config last applied from the store.
    applied_config: Option<RolloutConfig>,
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

impl Run {
    fn start(epoch: u64, base: MetricsSnapshot, now: SystemTime, warmup: Duration) -> Run {
        Run {
            view: RunView::new(epoch, stamped(base, now), None),
            memory_from: now.checked_add(warmup).unwrap_or(now),
            memory_ready: false,
        }
    }
}

/// What the verdict made the controller do: the action, and the store's
/// error if the change could not be written.
struct Acted {
    action: Option<Action>,
    store_error: Option<StoreError>,
}

impl RolloutController {
    /// Replaces the log (or turns logging off with `None`), for example to
    /// rotate it. Returns the previous sink.
    pub fn set_log(&mut self, sink: Option<JsonlSink>) -> Option<JsonlSink> {
        self.journal.set_sink(sink)
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

    /// Reads the store, applies the shared config, adopts what changed,
    /// writes what is pending, and starts the runs that began. A config
    /// that cannot be read keeps the last good one, and never keeps a
    /// pending rollback from being written; an unreachable store is not
    /// asked for its config.
    fn sync_with_store(&mut self, now: SystemTime) -> Result<(), StoreError> {
        let read = self.sync.read(now, &mut self.journal);
        self.apply_config(now, read.answered());
        let result = self.sync.settle(read, now, &mut self.journal);
        self.start_new_runs();
        result
    }

    /// Snapshots, evaluates, acts, and logs one line (see
    /// [`RolloutControllerBuilder::log_interval`](builder::RolloutControllerBuilder::log_interval)
    /// for which ticks).
    pub fn tick(&mut self) -> Tick {
        let now = self.clock.now();
        let store_error = self.sync_with_store(now).err();
        // The run's memory baseline, once its warm-up is over: the next
        // sample after the reset is the baseline, so reset before the
        // snapshot (which then has no memory until that sample).
        let snapshot = match &self.part {
            Part::Serving(serving) => {
                if !self.run.memory_ready && now >= self.run.memory_from {
                    serving.metrics.reset_memory();
                    self.run.memory_ready = true;
                }
                let snapshot = stamped(serving.metrics.snapshot(), now);
                self.history.push(snapshot.clone());
                Some(snapshot)
            }
            Part::Judging { .. } => None,
        };
        let judged = match self.sync.status() {
            Some(status) if status.serves_async() && !self.sync.stale() => self.stage(),
            _ => None,
        };
        let mut metrics_error = None;
        let totals = match (judged, self.sync.current().cloned(), &mut self.part) {
            (Some(_), Some(state), Part::Judging { source, .. }) => {
                match source.run_totals(&state, now) {
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
                }
            }
            (Some(_), _, Part::Serving(_)) => snapshot.as_ref().map(|s| self.run_totals(s)),
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
        let evaluation = self.evaluator.evaluate_in_range(
            stage,
            &totals,
            &self.history,
            self.sync_baseline.as_ref(),
            now,
        );
        let acted = self.act(&evaluation, now);
        // A rollback whose write failed is in force here but not stored:
        // its line comes when it is.
        let unstored = self.sync.rollback_pending();
        self.apply();
        self.acknowledge(now);
        let verdict_changed = self.last.as_ref().map(|e| e.verdict) != Some(evaluation.verdict);
        let log_error = self.journal.tick(
            &totals,
            &evaluation,
            acted.action.as_ref(),
            verdict_changed,
            unstored,
            now,
            self.sync.line(),
        );
        self.last = Some(evaluation.clone());
        self.last_totals = Some(totals);
        self.health.ticked(now);
        self.publish();
        Tick {
            evaluation: Some(evaluation),
            action: acted.action,
            log_error,
            store_error: acted.store_error.or(store_error),
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

    /// Does what the policy says `evaluation` calls for.
    fn act(&mut self, evaluation: &Evaluation, now: SystemTime) -> Acted {
        let step = policy::decide(
            self.sync.current(),
            Input::Verdict(evaluation),
            self.plan(),
            now,
            self.settings,
        );
        let acted = match step {
            Ok(Step::Rollback { reason, by, run }) => {
                // Safety first: nothing async from this instant, stored or
                // not.
                self.part.halt();
                self.sync.rollback_later(reason, by, run);
                // Logged by the tick's line when stored now; else by an
                // `action` line when the retried write gets through.
                let store_error = self
                    .sync
                    .write_pending_and_log(now, false, &mut self.journal)
                    .err();
                Acted {
                    action: Some(Action::Rollback { manual: false }),
                    store_error,
                }
            }
            Ok(Step::Ready(action)) => Acted {
                action: Some(action),
                store_error: None,
            },
            Ok(Step::Write { next, action }) => match self.sync.commit(next) {
                Ok(_) => Acted {
                    action: Some(action),
                    store_error: None,
                },
                Err(err) => {
                    trace::state_event(
                        Severity::Warn,
                        &format!(
                            "cannot write the rollout state for {}: {err}",
                            action.name()
                        ),
                        self.sync.current(),
                    );
                    if err.is_conflict() {
                        let _ = self.sync.reload(now, &mut self.journal);
                    }
                    self.sync.set_state_error(err.to_string());
                    Acted {
                        action: None,
                        store_error: Some(err),
                    }
                }
            },
            // A verdict is never refused, and a no-op is an operator's.
            Ok(Step::Stay | Step::NoOp(_)) | Err(_) => Acted {
                action: None,
                store_error: None,
            },
        };
        self.start_new_runs();
        acted
    }

    /// Starts the runs the store synchronisation saw begin, in order.
    fn start_new_runs(&mut self) {
        for run in self.sync.take_new_runs() {
            self.restart_run(run.at, run.epoch);
        }
    }

    /// Starts a new run of the stage from `now`: fresh totals, history and
    /// memory baseline.
    fn restart_run(&mut self, now: SystemTime, epoch: u64) {
        // The run being left keeps its sync arm as the carried baseline
        // (when it has enough sync uploads), so a stage without sync traffic
        // of its own (100%) is still compared with the sync path.
        let snapshot = self.part.metrics().map(|metrics| metrics.snapshot());
        let leaving = match &snapshot {
            Some(snapshot) => Some(self.run_totals(snapshot)),
            None => self.last_totals.clone(),
        };
        if let Some(leaving) = leaving {
            self.sync_baseline = self
                .evaluator
                .carry_sync_baseline(self.sync_baseline.take(), &leaving);
        }
        let base = snapshot.unwrap_or_else(|| MetricsSnapshot::empty_at(now));
        self.run = Run::start(epoch, base, now, self.memory_warmup);
        self.history.clear();
        self.last = None;
        self.last_totals = None;
    }

    /// After a restart: the run's totals so far, from the log.
    fn recover_run(&mut self, state: &RolloutState, now: SystemTime) {
        if !state.status.serves_async() {
            return;
        }
        let Some(path) = self.journal.sink().map(|s| s.path().to_path_buf()) else {
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
                self.sync_baseline = Some(sync);
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
            Ok(Some(reason)) => self.journal.state(now, reason, self.sync.line()),
            Ok(None) => {}
            Err(reason) => self
                .journal
                .state_at(Severity::Warn, now, reason, self.sync.line()),
        }
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
            .field("state", &self.sync.current())
            .field("status", &self.sync.status())
            .field("percent_in_force", &self.percent_in_force())
            .field("state_error", &self.sync.state_error())
            .finish_non_exhaustive()
    }
}
