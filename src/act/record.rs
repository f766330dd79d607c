//! The line schema of the JSON-lines log: [`LogRecord`], its [`LogEvent`],
//! and the controller's [`ControllerState`] and [`Action`] that tick and
//! action lines carry.
//!
//! One home for the schema: the controller writes these records and the
//! command line reads them, and neither the log's file handling
//! ([`JsonlSink`](crate::JsonlSink), [`read_log`](crate::read_log)) nor the
//! schema depends on the controller.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::decide::percent::Percent;
use crate::judge::criteria::Evaluation;
use crate::metrics::MetricsSnapshot;

/// The `"v"` field of every [`LogRecord`] this version writes.
pub const LOG_SCHEMA_VERSION: u32 = 1;

/// The standard log line.
///
/// ```json
/// {"v":1,"at_unix_ms":1762300860000,"event":"snapshot","snapshot":{…}}
/// ```
///
/// - `v`: [`LOG_SCHEMA_VERSION`]; a reader should skip or refuse versions it
///   does not know.
/// - `at_unix_ms`: when the record was written, in ms since the Unix epoch.
/// - `event`: what happened ([`LogEvent`]).
/// - `snapshot`: a [`MetricsSnapshot`], when the event has one: cumulative
///   for `snapshot` events, the current stage's totals for `tick` events.
/// - `stage`, `percent`, `state`: the controller's stage index, the percent
///   in force and the controller's state (controller lines only).
/// - `evaluation`: the verdict with every check behind it (`tick` lines).
/// - `action`: what the controller or an operator did (`action` lines, and
///   `tick` lines that acted).
/// - `reason`: one sentence: the decisive checks, or the operator's words.
///
/// Optional fields are left out when empty, and readers ignore fields they do
/// not know, so new optional fields can be added without a new version. The
/// type is `#[non_exhaustive]` for the same reason: build it with
/// [`LogRecord::snapshot`] or [`LogRecord::new`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LogRecord {
    /// Schema version, [`LOG_SCHEMA_VERSION`] when written by this crate.
    /// Reading refuses a version this build does not know.
    #[serde(deserialize_with = "crate::act::validate::schema_version")]
    pub v: u32,
    /// When the record was written, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// What happened.
    pub event: LogEvent,
    /// The cumulative metrics at that time, if the event carries them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<MetricsSnapshot>,
    /// The controller's stage index in its plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<usize>,
    /// The rollout percent in force when the line was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<Percent>,
    /// The controller's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ControllerState>,
    /// The evaluation of a `tick`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
    /// What was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Why, in one sentence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl LogRecord {
    /// A record of `event` at `at_unix_ms` with no snapshot.
    #[must_use]
    pub fn new(event: LogEvent, at_unix_ms: u64) -> LogRecord {
        LogRecord {
            v: LOG_SCHEMA_VERSION,
            at_unix_ms,
            event,
            snapshot: None,
            stage: None,
            percent: None,
            state: None,
            evaluation: None,
            action: None,
            reason: None,
        }
    }

    /// The periodic record: `event: "snapshot"`, stamped with the snapshot's time.
    #[must_use]
    pub fn snapshot(snapshot: MetricsSnapshot) -> LogRecord {
        let mut record = LogRecord::new(LogEvent::Snapshot, snapshot.at_unix_ms);
        record.snapshot = Some(snapshot);
        record
    }
}

/// What a [`LogRecord`] reports. Serialized in `snake_case`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LogEvent {
    /// The periodic metrics snapshot (cumulative).
    Snapshot,
    /// A controller tick: the stage's totals and their evaluation.
    Tick,
    /// A controller or operator action.
    Action,
    /// A config file was applied or rejected by a
    /// [`ConfigWatcher`](crate::ConfigWatcher); `reason` says which and why.
    Config,
    /// An event this version does not know (written by a newer one). Read
    /// only; it serializes as `"other"`.
    #[serde(other)]
    Other,
}

/// What the controller is doing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ControllerState {
    /// Judging every tick, acting on verdicts.
    Running,
    /// An operator paused automatic advancing. Rollback stays automatic.
    Paused {
        /// Why, as the operator said.
        reason: String,
    },
    /// A manual-review trigger fired: no automatic advancing until resumed.
    AwaitingReview {
        /// The checks that fired.
        reason: String,
    },
    /// Rolled back to 0%; stays there until [`RolloutController::resume`](crate::RolloutController::resume).
    RolledBack {
        /// Why: the failing checks, or the operator's words.
        reason: String,
    },
    /// The last stage met its criteria: the rollout is done.
    Complete,
}

impl fmt::Display for ControllerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ControllerState::Running => "running",
            ControllerState::Paused { .. } => "paused",
            ControllerState::AwaitingReview { .. } => "awaiting review",
            ControllerState::RolledBack { .. } => "rolled back",
            ControllerState::Complete => "complete",
        })
    }
}

/// Something the controller (or an operator through it) did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// The controller started at a stage.
    Start {
        /// Stage index.
        stage: usize,
        /// Its percent, now in force.
        percent: Percent,
    },
    /// Moved to the next stage.
    Advance {
        /// Stage index left.
        from: usize,
        /// Stage index entered.
        to: usize,
        /// The new percent, now in force.
        percent: Percent,
        /// `true` when an operator asked for it.
        manual: bool,
    },
    /// The stage met its criteria but is not advancing yet.
    Ready {
        /// Why it waits: `min_duration` not reached, or auto-advance off.
        waiting_for: String,
    },
    /// Rolled back to 0%.
    Rollback {
        /// `true` when an operator asked for it.
        manual: bool,
    },
    /// A manual-review trigger fired.
    ReviewRequested,
    /// An operator paused automatic advancing.
    Pause,
    /// An operator resumed: the stage's percent is back in force.
    Resume {
        /// Stage index resumed.
        stage: usize,
        /// Its percent.
        percent: Percent,
    },
    /// The last stage met its criteria.
    Complete,
}
