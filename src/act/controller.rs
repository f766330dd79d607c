//! [`RolloutController`]: runs the plan by itself.
//!
//! Each [`tick`](RolloutController::tick) snapshots the metrics, evaluates the
//! current stage, acts, and appends one line to the log:
//!
//! - **Rollback**: the rollout goes to 0% at once (one atomic store) and
//!   stays there until an operator calls [`resume`](RolloutController::resume).
//! - **Manual review**: automatic advancing stops until an operator resumes
//!   or advances by hand; automatic rollback stays armed.
//! - **Advance**: with `auto_advance` on and the stage's `min_duration`
//!   passed, the next stage starts; otherwise the tick reports that the stage
//!   is ready.
//!
//! Operators act through [`advance`](RolloutController::advance),
//! [`rollback`](RolloutController::rollback), [`pause`](RolloutController::pause)
//! and [`resume`](RolloutController::resume); every action is a log line with
//! its reason. [`spawn`](RolloutController::spawn) runs ticks on a background
//! thread.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use crate::act::log::{JsonlSink, LogError};
use crate::act::record::{Action, ControllerState, LogEvent, LogRecord};
use crate::clock::unix_ms;
use crate::clock::{Clock, SystemClock};
use crate::decide::percent::Percent;
use crate::decide::rollout::Rollout;
use crate::judge::criteria::{Evaluation, Evaluator, Verdict};
use crate::judge::plan::{PlanError, RolloutPlan};
use crate::metrics::{History, MetricsAccumulator, MetricsSnapshot};

/// How often [`RolloutController`] logs a quiet tick unless told otherwise.
pub const DEFAULT_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// What one tick saw and did.
#[derive(Debug)]
#[must_use = "a tick reports a log write error that should not be ignored"]
pub struct Tick {
    /// The evaluation of the current stage.
    pub evaluation: Evaluation,
    /// What the controller did about it, if anything.
    pub action: Option<Action>,
    /// Set when the log line could not be written. The action was taken anyway.
    pub log_error: Option<LogError>,
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
    /// The log could not be opened.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// Runs a [`RolloutPlan`]: judges the current stage on every tick and acts.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use async_upload_rollout::*;
///
/// let clock = ManualClock::default();
/// let rollout = Arc::new(Rollout::new(RolloutConfig::default()));
/// let metrics = Arc::new(MetricsAccumulator::with_clock(Arc::new(clock.clone())));
/// let mut controller = RolloutController::builder(rollout.clone(), metrics.clone())
///     .clock(Arc::new(clock.clone()))
///     .build()?;
/// assert_eq!(rollout.percent().to_string(), "1%"); // the plan's first stage
///
/// // The async path fails badly: the next tick rolls back to 0%.
/// for _ in 0..100 {
///     metrics.record(Arm::Async, Outcome::Error, Duration::from_millis(80));
/// }
/// clock.advance(Duration::from_secs(10));
/// let tick = controller.tick();
/// assert_eq!(tick.evaluation.verdict, Verdict::Rollback);
/// assert_eq!(rollout.percent(), Percent::ZERO);
/// # Ok::<(), ControllerError>(())
/// ```
pub struct RolloutController {
    rollout: Arc<Rollout>,
    metrics: Arc<MetricsAccumulator>,
    evaluator: Evaluator,
    clock: Arc<dyn Clock>,
    sink: Option<JsonlSink>,
    auto_advance: bool,
    log_interval: Duration,
    last_logged_tick: Option<SystemTime>,
    history: History,
    stage: usize,
    stage_started: SystemTime,
    stage_base: MetricsSnapshot,
    state: ControllerState,
    last: Option<Evaluation>,
    last_totals: Option<MetricsSnapshot>,
}

/// Builds a [`RolloutController`]; see [`RolloutController::builder`].
#[must_use = "a builder does nothing until build() is called"]
pub struct RolloutControllerBuilder {
    rollout: Arc<Rollout>,
    metrics: Arc<MetricsAccumulator>,
    plan: RolloutPlan,
    clock: Arc<dyn Clock>,
    sink: Option<JsonlSink>,
    auto_advance: bool,
    log_interval: Duration,
    history: History,
    start_stage: Option<usize>,
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

    /// Appends a line per tick and per action to `sink`.
    pub fn log(mut self, sink: JsonlSink) -> Self {
        self.sink = Some(sink);
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
    /// carries the stage's totals with their latency histograms and every
    /// check, about 20 KiB, so a line every 10-second tick would be close to
    /// 200 MB a day. Ticks that act (other than reporting readiness) or whose
    /// verdict differs from the previous tick's are always logged;
    /// `Duration::ZERO` logs every tick.
    pub fn log_interval(mut self, every: Duration) -> Self {
        self.log_interval = every;
        self
    }

    /// The snapshot history to keep (default: [`History::default`]).
    pub fn history(mut self, history: History) -> Self {
        self.history = history;
        self
    }

    /// The stage to start at. By default, the stage whose percent is the
    /// rollout's current one (so `ASYNC_UPLOAD_ROLLOUT=10` starts at the 10%
    /// stage), else the first stage.
    pub fn start_stage(mut self, index: usize) -> Self {
        self.start_stage = Some(index);
        self
    }

    /// Validates the plan, sets the rollout to the start stage's percent, and
    /// logs the start.
    ///
    /// # Errors
    ///
    /// [`ControllerError::Plan`] for an invalid plan,
    /// [`ControllerError::UnknownStage`] for a start stage out of range.
    pub fn build(self) -> Result<RolloutController, ControllerError> {
        let stages = self.plan.stages.len();
        let evaluator = Evaluator::new(self.plan)?;
        let stage = match self.start_stage {
            Some(index) if index >= stages => {
                return Err(ControllerError::UnknownStage { index, stages });
            }
            Some(index) => index,
            None => evaluator
                .plan()
                .stage_at(self.rollout.percent())
                .unwrap_or(0),
        };
        let now = self.clock.now();
        let mut controller = RolloutController {
            stage_base: stamped(self.metrics.snapshot(), now),
            rollout: self.rollout,
            metrics: self.metrics,
            evaluator,
            clock: self.clock,
            sink: self.sink,
            auto_advance: self.auto_advance,
            log_interval: self.log_interval,
            last_logged_tick: None,
            history: self.history,
            stage,
            stage_started: now,
            state: ControllerState::Running,
            last: None,
            last_totals: None,
        };
        // Log the start before changing anything: a log that cannot be
        // written fails the build and leaves the running rollout as it was.
        let percent = controller.stage_percent();
        let mut record = controller.record(LogEvent::Action, now);
        record.percent = Some(percent);
        record.action = Some(Action::Start { stage, percent });
        record.reason = Some("controller started".to_owned());
        if let Some(err) = controller.append(&record) {
            return Err(err.into());
        }
        controller.rollout.set_percent(percent);
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
            auto_advance: false,
            log_interval: DEFAULT_LOG_INTERVAL,
            history: History::default(),
            start_stage: None,
        }
    }

    /// Replaces the log (or turns logging off with `None`), for example to
    /// rotate it. Returns the previous sink.
    pub fn set_log(&mut self, sink: Option<JsonlSink>) -> Option<JsonlSink> {
        std::mem::replace(&mut self.sink, sink)
    }

    /// Snapshots, evaluates, acts, and logs one line (see
    /// [`RolloutControllerBuilder::log_interval`] for which ticks).
    pub fn tick(&mut self) -> Tick {
        let now = self.clock.now();
        let snapshot = stamped(self.metrics.snapshot(), now);
        self.history.push(snapshot.clone());
        let totals = snapshot.since(&self.stage_base);
        // `self.stage` is always one of the plan's: `build` checks the start
        // stage and `enter_stage` clamps every change.
        let evaluation = self
            .evaluator
            .evaluate_in_range(self.stage, &totals, &self.history, now);
        let action = self.act(&evaluation, now);
        let notable = action
            .as_ref()
            .is_some_and(|a| !matches!(a, Action::Ready { .. }))
            || self.last.as_ref().map(|e| e.verdict) != Some(evaluation.verdict);
        let due = self
            .last_logged_tick
            .is_none_or(|t| now.duration_since(t).unwrap_or_default() >= self.log_interval);
        let log_error = if notable || due {
            self.last_logged_tick = Some(now);
            self.log_tick(&totals, &evaluation, action.as_ref(), now)
        } else {
            None
        };
        self.last = Some(evaluation.clone());
        self.last_totals = Some(totals);
        Tick {
            evaluation,
            action,
            log_error,
        }
    }

    fn act(&mut self, evaluation: &Evaluation, now: SystemTime) -> Option<Action> {
        match (&self.state, evaluation.verdict) {
            // Safety never pauses: a rollback trigger acts in every state
            // that still sends traffic to the async path.
            (ControllerState::RolledBack { .. }, _) => None,
            (_, Verdict::Rollback) => {
                self.rollout.set_percent(Percent::ZERO);
                self.state = ControllerState::RolledBack {
                    reason: evaluation.reason.clone(),
                };
                Some(Action::Rollback { manual: false })
            }
            (ControllerState::Running | ControllerState::Complete, Verdict::ManualReview) => {
                self.state = ControllerState::AwaitingReview {
                    reason: evaluation.reason.clone(),
                };
                Some(Action::ReviewRequested)
            }
            (ControllerState::Running, Verdict::Advance) => {
                let last = self.stage + 1 == self.plan().stages.len();
                let min_duration = self.plan().stages[self.stage].criteria.min_duration;
                let ran = now.duration_since(self.stage_started).unwrap_or_default();
                if last {
                    self.state = ControllerState::Complete;
                    Some(Action::Complete)
                } else if !self.auto_advance {
                    Some(Action::Ready {
                        waiting_for: "an operator to advance (auto-advance is off)".into(),
                    })
                } else if ran < min_duration {
                    Some(Action::Ready {
                        waiting_for: format!(
                            "min_duration {} (ran {})",
                            humantime::format_duration(min_duration),
                            humantime::format_duration(Duration::from_secs(ran.as_secs()))
                        ),
                    })
                } else {
                    Some(self.enter_stage(self.stage + 1, false, now))
                }
            }
            _ => None,
        }
    }

    /// Moves to stage `to`: sets its percent, restarts the stage's data.
    fn enter_stage(&mut self, to: usize, manual: bool, now: SystemTime) -> Action {
        let from = self.stage;
        self.stage = to.min(self.plan().stages.len() - 1);
        self.restart_stage(now);
        let percent = self.stage_percent();
        self.rollout.set_percent(percent);
        self.state = ControllerState::Running;
        Action::Advance {
            from,
            to: self.stage,
            percent,
            manual,
        }
    }

    /// The stage's data starts again from now.
    fn restart_stage(&mut self, now: SystemTime) {
        self.stage_base = stamped(self.metrics.snapshot(), now);
        self.stage_started = now;
        self.history.clear();
    }

    /// Operator: move to the next stage now, whatever the verdict.
    ///
    /// Returns `false` (and changes nothing) at the last stage.
    pub fn advance(&mut self, reason: &str) -> Result<bool, LogError> {
        if self.stage + 1 >= self.plan().stages.len() {
            return Ok(false);
        }
        let now = self.clock.now();
        let action = self.enter_stage(self.stage + 1, true, now);
        self.logged(&action, reason, now).map(|()| true)
    }

    /// Operator: roll back to 0% now. Stays there until [`resume`](Self::resume).
    pub fn rollback(&mut self, reason: &str) -> Result<(), LogError> {
        let now = self.clock.now();
        self.rollout.set_percent(Percent::ZERO);
        self.state = ControllerState::RolledBack {
            reason: format!("operator: {reason}"),
        };
        self.logged(&Action::Rollback { manual: true }, reason, now)
    }

    /// Operator: stop automatic advancing (rollback stays automatic).
    pub fn pause(&mut self, reason: &str) -> Result<(), LogError> {
        let now = self.clock.now();
        self.state = ControllerState::Paused {
            reason: reason.to_owned(),
        };
        self.logged(&Action::Pause, reason, now)
    }

    /// Operator: back to running the current stage. After a rollback this
    /// restores the stage's percent and starts the stage's data afresh, so the
    /// failure that caused the rollback does not count against the retry.
    pub fn resume(&mut self, reason: &str) -> Result<(), LogError> {
        let now = self.clock.now();
        if matches!(self.state, ControllerState::RolledBack { .. }) {
            self.restart_stage(now);
        }
        self.state = ControllerState::Running;
        let percent = self.stage_percent();
        self.rollout.set_percent(percent);
        let action = Action::Resume {
            stage: self.stage,
            percent,
        };
        self.logged(&action, reason, now)
    }

    /// The current stage's index in the plan.
    #[must_use]
    pub fn stage(&self) -> usize {
        self.stage
    }

    /// When the current stage started.
    #[must_use]
    pub fn stage_started(&self) -> SystemTime {
        self.stage_started
    }

    /// What the controller is doing.
    #[must_use]
    pub fn state(&self) -> &ControllerState {
        &self.state
    }

    /// The plan it runs.
    #[must_use]
    pub fn plan(&self) -> &RolloutPlan {
        self.evaluator.plan()
    }

    /// The latest evaluation, if a tick has run.
    #[must_use]
    pub fn last_evaluation(&self) -> Option<&Evaluation> {
        self.last.as_ref()
    }

    /// The current stage's totals as of the latest tick (what it judged).
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

    /// The snapshots of the current stage kept so far.
    #[must_use]
    pub fn history(&self) -> &History {
        &self.history
    }

    fn stage_percent(&self) -> Percent {
        self.plan().stages[self.stage].percent
    }

    fn logged(&mut self, action: &Action, reason: &str, now: SystemTime) -> Result<(), LogError> {
        self.log_action(action, reason, now).map_or(Ok(()), Err)
    }

    fn log_action(&mut self, action: &Action, reason: &str, now: SystemTime) -> Option<LogError> {
        let mut record = self.record(LogEvent::Action, now);
        record.action = Some(action.clone());
        record.reason = Some(reason.to_owned());
        self.append(&record)
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
        self.append(&record)
    }

    fn record(&self, event: LogEvent, now: SystemTime) -> LogRecord {
        let mut record = LogRecord::new(event, unix_ms(now));
        record.stage = Some(self.stage);
        record.percent = Some(self.rollout.percent());
        record.state = Some(self.state.clone());
        record
    }

    fn append(&mut self, record: &LogRecord) -> Option<LogError> {
        self.sink
            .as_mut()
            .and_then(|sink| sink.append(record).err())
    }

    /// Runs [`tick`](Self::tick) every `interval` on a background thread.
    ///
    /// The returned handle gives operators the controller between ticks
    /// ([`MonitorHandle::lock`]) and stops the thread when dropped (it wakes
    /// the thread at once; it does not wait out the interval).
    pub fn spawn(self, interval: Duration) -> MonitorHandle {
        let shared = Arc::new(Shared {
            controller: Mutex::new(self),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("rollout-monitor".into())
            .spawn(move || worker.run(interval));
        MonitorHandle {
            shared,
            thread: thread.ok(),
        }
    }
}

/// Stamps a snapshot with the controller's clock, so history and
/// evaluations share one time line even if the metrics use another clock.
fn stamped(mut snapshot: MetricsSnapshot, now: SystemTime) -> MetricsSnapshot {
    snapshot.at_unix_ms = unix_ms(now);
    snapshot
}

struct Shared {
    controller: Mutex<RolloutController>,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    fn run(&self, interval: Duration) {
        loop {
            let stop = self.stop.lock().unwrap_or_else(PoisonError::into_inner);
            let (stop, _) = self
                .wake
                .wait_timeout_while(stop, interval, |stop| !*stop)
                .unwrap_or_else(PoisonError::into_inner);
            if *stop {
                return;
            }
            drop(stop);
            // A failed log write is in the tick's report and in the next
            // line's absence; the monitor keeps ticking regardless.
            let _ = self.lock_controller().tick();
        }
    }

    fn lock_controller(&self) -> MutexGuard<'_, RolloutController> {
        // A panic inside a tick leaves the controller's state as consistent
        // as between any two ticks; keep using it.
        self.controller
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The background monitor started by [`RolloutController::spawn`].
///
/// Dropping it stops the thread (promptly) and joins it.
#[must_use = "dropping the handle stops the monitor"]
pub struct MonitorHandle {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl MonitorHandle {
    /// The controller, locked between ticks: for operator actions and status.
    pub fn lock(&self) -> MutexGuard<'_, RolloutController> {
        self.shared.lock_controller()
    }

    /// Whether the monitor thread is running (it could not start if the OS
    /// refused a thread).
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        *self
            .shared
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for RolloutController {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RolloutController")
            .field("stage", &self.stage)
            .field("state", &self.state)
            .field("percent", &self.rollout.percent())
            .finish_non_exhaustive()
    }
}
