//! The line schema of the JSON-lines log: [`LogRecord`], its [`LogEvent`],
//! and the controller's [`Action`] that tick and action lines carry (with
//! the [`RolloutState`] they were written under).
//!
//! One home for the schema: the controller writes these records and the
//! command line reads them, and neither the log's file handling
//! ([`JsonlSink`](crate::JsonlSink), [`read_log`](crate::act::log::read_log)) nor the
//! schema depends on the controller.

use serde::{Deserialize, Deserializer, Serialize, de};

use crate::act::state::{Operation, RolloutState};
use crate::decide::percent::Percent;
use crate::judge::Evaluation;
use crate::metrics::MetricsSnapshot;

/// The `"v"` field of every [`LogRecord`] this version writes.
///
/// Version 2 (this one): `state` is the [`RolloutState`] (epoch, stage,
/// status, ...) instead of version 1's controller state, and `state` events
/// exist.
pub const LOG_SCHEMA_VERSION: u32 = 2;

/// Reads the `v` field: a version this build knows, `1..=LOG_SCHEMA_VERSION`.
/// A newer version is refused rather than guessed at: its fields may mean
/// something this build does not know.
fn schema_version<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let v = u32::deserialize(deserializer)?;
    if v == 0 || v > LOG_SCHEMA_VERSION {
        return Err(de::Error::custom(format_args!(
            "schema version {v} is not one this build reads (1 to {LOG_SCHEMA_VERSION}); \
             a newer async-upload-rollout wrote it"
        )));
    }
    Ok(v)
}

/// The standard log line.
///
/// ```json
/// {"v":2,"at_unix_ms":1762300860000,"event":"snapshot","snapshot":{…}}
/// ```
///
/// - `v`: [`LOG_SCHEMA_VERSION`]; a reader should skip or refuse versions it
///   does not know.
/// - `at_unix_ms`: when the record was written, in ms since the Unix epoch.
/// - `event`: what happened ([`LogEvent`]).
/// - `snapshot`: a [`MetricsSnapshot`], when the event has one: cumulative
///   for `snapshot` events, the totals of the current run of the stage for
///   `tick` events (what a restarted controller recovers).
/// - `stage`, `percent`, `state`: the stage index, the percent in force (0%
///   when nothing is async) and the [`RolloutState`] (controller lines
///   only; `state` is absent while the state is unknown).
/// - `evaluation`: the verdict with every check behind it (`tick` lines).
/// - `action`: what the controller or an operator did (`action` lines, and
///   `tick` lines that acted). Each change of the stored state is logged
///   once, by the line whose `state` is what was stored.
/// - `no_op`: an operator's request that changed nothing (`action` lines
///   without `action`): which, and why nothing changed ([`NoOp`]).
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
    #[serde(deserialize_with = "schema_version")]
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
    /// The rollout's state when the line was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<RolloutState>,
    /// The evaluation of a `tick`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<Evaluation>,
    /// What was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// An operator's request that changed nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_op: Option<NoOp>,
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
            no_op: None,
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
    /// The controller saw the state change in its store (written by an
    /// operator's command line, or another controller) and applied it, or
    /// could not read the state (`reason` says which).
    State,
    /// A config file was applied or rejected by a
    /// [`ConfigWatcher`](crate::act::ConfigWatcher); `reason` says which and why.
    Config,
    /// An event this version does not know (written by a newer one). Read
    /// only; it serializes as `"other"`.
    #[serde(other)]
    Other,
}

/// An operator's request that changed nothing (a second rollback), as an
/// `action` line logs it: `{"operation": "rollback", "detail": "…"}`, with
/// the operator's words in the line's `reason` and the stored state in its
/// `state`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NoOp {
    /// What was asked.
    pub operation: Operation,
    /// Why nothing changed.
    pub detail: String,
}

/// Something the controller (or an operator through it) did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// The controller started, with the state it loaded (or wrote first).
    Start {
        /// Stage index; `None` when the rollout is off.
        stage: Option<usize>,
        /// The percent now in force (0% when nothing is async).
        percent: Percent,
    },
    /// Moved to the next stage (from `off`: started the first one).
    Advance {
        /// Stage index left; `None` from `off`.
        from: Option<usize>,
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
    /// Rolled back: nothing async, force lists included.
    Rollback {
        /// `true` when an operator asked for it.
        manual: bool,
    },
    /// A manual-review trigger fired.
    ReviewRequested,
    /// An operator paused automatic advancing.
    Pause,
    /// An operator resumed: the stage's percent is back in force, and a new
    /// run of the stage is judged on its own data.
    Resume {
        /// Stage index resumed.
        stage: usize,
        /// Its percent.
        percent: Percent,
    },
    /// The last stage met its criteria.
    Complete,
}

impl Action {
    /// The action's name, as its `action` tag in the log: `start`,
    /// `advance`, `ready`, `rollback`, `review_requested`, `pause`,
    /// `resume` or `complete`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Action::Start { .. } => "start",
            Action::Advance { .. } => "advance",
            Action::Ready { .. } => "ready",
            Action::Rollback { .. } => "rollback",
            Action::ReviewRequested => "review_requested",
            Action::Pause => "pause",
            Action::Resume { .. } => "resume",
            Action::Complete => "complete",
        }
    }
}
