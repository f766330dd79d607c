//! The controller's journal: every line it appends to the JSON-lines log
//! and every `tracing` event it emits about the state, in one place.
//!
//! Each line is written under the state as the store holds it and the
//! percent in force at that instant ([`Line`], given by the caller), so a
//! line's `state` is exactly what was stored when it was written. A line
//! that cannot be written is reported to the monitor's health and never
//! stops the controller (a tick returns it as its `log_error`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use crate::act::health::Health;
use crate::act::log::{JsonlSink, LogError};
use crate::act::record::{Action, LogEvent, LogRecord, NoOp};
use crate::act::state::RolloutState;
use crate::act::trace::{self, Severity};
use crate::clock::unix_ms;
use crate::decide::percent::Percent;
use crate::decide::rollout::Rollout;
use crate::judge::Evaluation;
use crate::metrics::MetricsSnapshot;

/// What a line says about the state when it is written.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Line<'a> {
    /// Exactly what the store holds, as last read or written.
    pub(crate) stored: Option<&'a RolloutState>,
    /// The state in force (the stored one, or a first state not yet
    /// written).
    pub(crate) current: Option<&'a RolloutState>,
    /// The percent the state gives (`None`: nothing async by the state).
    pub(crate) state_percent: Option<Percent>,
}

/// Where a controller reads the kill switch in force (which makes the
/// percent in force 0%): the config of the rollout it serves, or, for a
/// controller that serves no uploads (a fleet's leader), the shared config
/// it last applied.
#[derive(Clone, Debug)]
pub(crate) enum KillSwitch {
    /// The served rollout's config.
    Served(Arc<Rollout>),
    /// The shared config's, as last applied.
    Shared(Arc<AtomicBool>),
}

impl KillSwitch {
    /// Whether the kill switch is on now.
    pub(crate) fn is_on(&self) -> bool {
        match self {
            KillSwitch::Served(rollout) => rollout.config().kill_switch,
            KillSwitch::Shared(on) => on.load(Ordering::Acquire),
        }
    }
}

/// The controller's log lines and tracing events.
pub(crate) struct Journal {
    sink: Option<JsonlSink>,
    health: Arc<Health>,
    kill_switch: KillSwitch,
    log_interval: Duration,
    last_logged_tick: Option<SystemTime>,
}

impl Journal {
    pub(crate) fn new(
        sink: Option<JsonlSink>,
        health: Arc<Health>,
        kill_switch: KillSwitch,
        log_interval: Duration,
    ) -> Journal {
        Journal {
            sink,
            health,
            kill_switch,
            log_interval,
            last_logged_tick: None,
        }
    }

    /// The log it appends to, if any.
    pub(crate) fn sink(&self) -> Option<&JsonlSink> {
        self.sink.as_ref()
    }

    /// Replaces the log; returns the previous one.
    pub(crate) fn set_sink(&mut self, sink: Option<JsonlSink>) -> Option<JsonlSink> {
        std::mem::replace(&mut self.sink, sink)
    }

    /// The percent in force under `line`, 0% when nothing is async (also
    /// while the config's kill switch is on).
    pub(crate) fn percent(&self, line: Line<'_>) -> Percent {
        if self.kill_switch.is_on() {
            return Percent::ZERO;
        }
        line.state_percent.unwrap_or(Percent::ZERO)
    }

    /// A line of this controller: `state` is exactly what the store holds
    /// (absent while unknown or not yet written), `percent` the percent in
    /// force.
    pub(crate) fn record(&self, event: LogEvent, now: SystemTime, line: Line<'_>) -> LogRecord {
        let mut record = LogRecord::new(event, unix_ms(now));
        record.state = line.stored.cloned();
        record.stage = record.state.as_ref().and_then(|s| s.stage);
        record.percent = Some(self.percent(line));
        record
    }

    /// Appends `record`; the error, if it could not be.
    pub(crate) fn append(&mut self, record: &LogRecord) -> Option<LogError> {
        self.sink
            .as_mut()
            .and_then(|sink| sink.append(record).err())
    }

    /// Appends `record`, reporting a failure to the health.
    fn append_or_report(&mut self, record: &LogRecord) -> Option<LogError> {
        let err = self.append(record);
        if let Some(err) = &err {
            self.health.log_failed(err);
        }
        err
    }

    /// A `state` line (and an `INFO` event).
    pub(crate) fn state(&mut self, now: SystemTime, reason: String, line: Line<'_>) {
        self.state_at(Severity::Info, now, reason, line);
    }

    /// A `state` line, and an event of `severity`.
    pub(crate) fn state_at(
        &mut self,
        severity: Severity,
        now: SystemTime,
        reason: String,
        line: Line<'_>,
    ) {
        trace::state_event(severity, &reason, line.current);
        let mut record = self.record(LogEvent::State, now, line);
        record.reason = Some(reason);
        self.append_or_report(&record);
    }

    /// A `config` line: the config source cannot be read, or can again.
    pub(crate) fn config(&mut self, now: SystemTime, reason: String, line: Line<'_>) {
        let mut record = self.record(LogEvent::Config, now, line);
        record.reason = Some(reason);
        self.append_or_report(&record);
    }

    /// A change this controller stored: an `action` line whose `state` is
    /// what it stored.
    pub(crate) fn stored_action(
        &mut self,
        action: &Action,
        reason: &str,
        now: SystemTime,
        line: Line<'_>,
    ) {
        trace::action(action, reason, line.current, self.percent(line), false);
        let mut record = self.record(LogEvent::Action, now, line);
        record.action = Some(action.clone());
        record.reason = Some(reason.to_owned());
        self.append_or_report(&record);
    }

    /// An operator's request that changed nothing, with its reason.
    pub(crate) fn no_op(&mut self, no_op: NoOp, reason: &str, now: SystemTime, line: Line<'_>) {
        trace::state_event(
            Severity::Info,
            &format!("{} ({reason})", no_op.detail),
            line.current,
        );
        let mut record = self.record(LogEvent::Action, now, line);
        record.no_op = Some(no_op);
        record.reason = Some(reason.to_owned());
        self.append_or_report(&record);
    }

    /// A judged tick: its events, and its `tick` line when it acted (other
    /// than reporting readiness), its verdict changed, or the log interval
    /// has passed since the last one. `unstored`: a rollback in force here
    /// whose write failed (its line comes when it is stored).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn tick(
        &mut self,
        totals: &MetricsSnapshot,
        evaluation: &Evaluation,
        action: Option<&Action>,
        verdict_changed: bool,
        unstored: bool,
        now: SystemTime,
        line: Line<'_>,
    ) -> Option<LogError> {
        trace::evaluation(evaluation, verdict_changed);
        if let Some(action) = action {
            trace::action(
                action,
                &evaluation.reason,
                line.current,
                self.percent(line),
                !verdict_changed,
            );
        }
        let notable = action.is_some_and(|a| !matches!(a, Action::Ready { .. })) || verdict_changed;
        let due = self
            .last_logged_tick
            .is_none_or(|t| now.duration_since(t).unwrap_or_default() >= self.log_interval);
        if !(notable || due) {
            return None;
        }
        self.last_logged_tick = Some(now);
        let logged = action.filter(|a| !(unstored && matches!(a, Action::Rollback { .. })));
        let mut record = self.record(LogEvent::Tick, now, line);
        // The stage whose totals were judged, even if this tick's action
        // has just moved on to the next one.
        record.stage = Some(evaluation.stage);
        record.snapshot = Some(totals.clone());
        record.evaluation = Some(evaluation.clone());
        record.action = logged.cloned();
        record.reason = Some(evaluation.reason.clone());
        self.append_or_report(&record)
    }
}
