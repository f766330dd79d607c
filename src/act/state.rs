//! [`RolloutState`]: where the rollout stands, as plain data, and the
//! transitions between states.
//!
//! The state is the one record of the rollout's stage and status. The
//! [`RolloutController`](crate::RolloutController) writes it through a
//! [`StateStore`](crate::StateStore); operators (the API, the command line,
//! the admin routes) change it only through the same transitions
//! ([`RolloutState::apply`]), with a compare-and-swap on the store's revision.
//! Everything else (the environment, a config file, `PUT /rollout`) is a
//! request: it picks the first state when none is stored, and never
//! overrides a stored one.
//!
//! # The percent in force
//!
//! [`RolloutState::percent_in_force`] is a function of the state and the
//! plan, nothing else:
//!
//! | status | percent in force | `force_async` ids |
//! | --- | --- | --- |
//! | `off` | none: nothing async | sync |
//! | `running`, `paused`, `awaiting_review`, `complete` | the stage's percent | async |
//! | `rolled_back` | none: nothing async | sync |
//!
//! `rolled_back` and `off` send **every** upload down the sync path, the
//! `force_async` list included: a rollback that a listed load-test id could
//! still pass would not be a rollback, and a rollout that is off has not been
//! started. While the rollout runs, `force_async` works as before (the
//! decision's precedence is unchanged: kill switch, `force_sync`,
//! `force_async`, bucket).
//!
//! One concept in one file of about 834 lines (178 of them its unit tests, 178
//! docs): the state and every transition, so that "rollback wins until a person
//! resumes" is read in one place.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::decide::percent::Percent;
use crate::judge::plan::RolloutPlan;

/// Where the rollout stands: the stage, the status and who changed it last.
///
/// Plain data (serde). Every change makes a new value with `epoch + 1`;
/// build changes with [`RolloutState::apply`] (operators) or the
/// controller's own transitions, never by editing fields in place.
///
/// ```json
/// {
///   "epoch": 7,
///   "stage": 1,
///   "status": "rolled_back",
///   "stage_started_at": "2026-12-02T09:00:00.000Z",
///   "run_started_at": "2026-12-02T09:00:00.000Z",
///   "run_epoch": 1,
///   "changed_at": "2026-12-02T11:42:10.250Z",
///   "changed_by": "controller",
///   "reason": "rollback: error rate 9.8% > 5% (stage)"
/// }
/// ```
///
/// # Examples
///
/// ```
/// use std::time::SystemTime;
/// use async_upload_rollout::{
///     RolloutPlan, RolloutState, RolloutStatus, act::{ChangedBy, Operation},
/// };
///
/// let plan = RolloutPlan::default();
/// let now = SystemTime::now();
/// let off = RolloutState::off(now, ChangedBy::Config, "ASYNC_UPLOAD_ROLLOUT=0");
/// assert_eq!(off.percent_in_force(&plan), None); // nothing async
///
/// // An operator starts the first stage, then rolls back.
/// let running = off.apply(Operation::Advance, &plan, now, ChangedBy::Operator, "go")?.unwrap();
/// assert_eq!((running.stage, running.status, running.epoch), (Some(0), RolloutStatus::Running, 2));
/// let rolled_back = running
///     .apply(Operation::Rollback, &plan, now, ChangedBy::Operator, "pager")?
///     .unwrap();
/// assert_eq!(rolled_back.percent_in_force(&plan), None);
///
/// // Advancing is refused until someone resumes.
/// assert!(rolled_back.apply(Operation::Advance, &plan, now, ChangedBy::Operator, "x").is_err());
/// # Ok::<(), async_upload_rollout::act::Refused>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutState {
    /// Changes so far: +1 on every change, so a larger epoch is a later state.
    pub epoch: u64,
    /// The stage's index in the plan; `None` when the rollout is `off`.
    pub stage: Option<usize>,
    /// What the rollout is doing.
    pub status: RolloutStatus,
    /// When the current stage started: its `min_duration` counts from here,
    /// across restarts. `None` when `off`.
    #[serde(with = "rfc3339_opt", default)]
    pub stage_started_at: Option<SystemTime>,
    /// When the current run of the stage started: the stage's start, or the
    /// latest resume. A run is judged on its own data (totals, recent
    /// windows, memory baseline). `None` when `off`.
    #[serde(with = "rfc3339_opt", default)]
    pub run_started_at: Option<SystemTime>,
    /// The epoch of the state that started the current run (0 when off):
    /// what identifies a run. In fleet mode the replicas label their
    /// exported counters with it, so a run's totals are one sum over them.
    #[serde(default)]
    pub run_epoch: u64,
    /// When this state was written.
    #[serde(with = "rfc3339")]
    pub changed_at: SystemTime,
    /// Who wrote it.
    pub changed_by: ChangedBy,
    /// Why, in one sentence: the decisive checks, or the operator's words.
    pub reason: String,
}

/// What the rollout is doing. Serialized in `snake_case`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    /// Not started: no stage, nothing async.
    Off,
    /// Judging every tick and acting on verdicts.
    Running,
    /// A manual-review trigger fired: the stage's percent stays, automatic
    /// advancing stops until an operator resumes or advances; automatic
    /// rollback stays armed.
    AwaitingReview,
    /// Rolled back: nothing async until an operator resumes.
    RolledBack,
    /// An operator paused automatic advancing; automatic rollback stays armed.
    Paused,
    /// The last stage met its criteria. Judging goes on: a rollback trigger
    /// still rolls back.
    Complete,
}

impl RolloutStatus {
    /// The name used in JSON and on the command line (`rolled_back`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutStatus::Off => "off",
            RolloutStatus::Running => "running",
            RolloutStatus::AwaitingReview => "awaiting_review",
            RolloutStatus::RolledBack => "rolled_back",
            RolloutStatus::Paused => "paused",
            RolloutStatus::Complete => "complete",
        }
    }

    /// Whether uploads may take the async path in this status.
    #[must_use]
    pub fn serves_async(self) -> bool {
        !matches!(self, RolloutStatus::Off | RolloutStatus::RolledBack)
    }
}

impl fmt::Display for RolloutStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who wrote a [`RolloutState`]. Serialized in `snake_case`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangedBy {
    /// The controller, on a verdict.
    Controller,
    /// A person: the API, the command line or an admin route.
    Operator,
    /// The starting request (the environment or a config file), written
    /// when no state was stored.
    Config,
}

impl fmt::Display for ChangedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangedBy::Controller => "controller",
            ChangedBy::Operator => "operator",
            ChangedBy::Config => "config",
        })
    }
}

/// An operator's request, applied with [`RolloutState::apply`]. Serialized
/// in `snake_case` (`rollback`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Move to the next stage now, whatever the verdict; from `off`, start
    /// the first stage. Refused while rolled back (resume first) and at the
    /// last stage.
    Advance,
    /// Nothing async from now on, until a resume.
    Rollback,
    /// Back to running the current stage. After a rollback the stage starts
    /// again (its `min_duration` too); after a review or a pause the stage's
    /// clock keeps running. Either way a new run begins, judged on data after
    /// the resume. Refused when `off` (advance starts the first stage).
    Resume,
    /// Stop automatic advancing; automatic rollback stays armed.
    Pause,
}

impl Operation {
    /// The command's name: `advance`, `rollback`, `resume`, `pause`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Advance => "advance",
            Operation::Rollback => "rollback",
            Operation::Resume => "resume",
            Operation::Pause => "pause",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operation that the state does not allow, with the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{operation} refused at epoch {epoch} ({status}): {message}")]
pub struct Refused {
    /// What was asked.
    pub operation: Operation,
    /// The status it was asked in.
    pub status: RolloutStatus,
    /// The epoch it was asked at.
    pub epoch: u64,
    /// Why not, and what to do instead.
    pub message: String,
}

/// A stored state that breaks an invariant, or does not fit the plan.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid rollout state (epoch {epoch}): {message}")]
pub struct InvalidState {
    /// The state's epoch.
    pub epoch: u64,
    /// The invariant broken, naming the field.
    pub message: String,
}

impl RolloutState {
    /// The first state of a rollout that is off: epoch 1, no stage.
    #[must_use]
    pub fn off(now: SystemTime, by: ChangedBy, reason: impl Into<String>) -> RolloutState {
        let now = whole_ms(now);
        RolloutState {
            epoch: 1,
            stage: None,
            status: RolloutStatus::Off,
            stage_started_at: None,
            run_started_at: None,
            run_epoch: 0,
            changed_at: now,
            changed_by: by,
            reason: reason.into(),
        }
    }

    /// The first state of a rollout running `stage` from `now`: epoch 1.
    #[must_use]
    pub fn running(
        stage: usize,
        now: SystemTime,
        by: ChangedBy,
        reason: impl Into<String>,
    ) -> RolloutState {
        let now = whole_ms(now);
        RolloutState {
            epoch: 1,
            stage: Some(stage),
            status: RolloutStatus::Running,
            stage_started_at: Some(now),
            run_started_at: Some(now),
            run_epoch: 1,
            changed_at: now,
            changed_by: by,
            reason: reason.into(),
        }
    }

    /// The percent uploads get under this state and `plan`: `None` means
    /// **no upload takes the async path**, force lists included (`off`,
    /// `rolled_back`, or a stage the plan does not have).
    #[must_use]
    pub fn percent_in_force(&self, plan: &RolloutPlan) -> Option<Percent> {
        if !self.status.serves_async() {
            return None;
        }
        let stage = plan.stages.get(self.stage?)?;
        Some(stage.percent)
    }

    /// Checks the state's own invariants and that its stage is one of
    /// `plan`'s: `off` has no stage and no start times, every other status
    /// has a stage and both start times, the run does not start before the
    /// stage, and the epoch is at least 1.
    ///
    /// # Errors
    ///
    /// [`InvalidState`] naming the field.
    pub fn validate(&self, plan: &RolloutPlan) -> Result<(), InvalidState> {
        self.validate_shape()?;
        match self.stage {
            Some(stage) if stage >= plan.stages.len() => Err(InvalidState {
                epoch: self.epoch,
                message: format!(
                    "`stage` is {stage}, but the plan has {} stages (0 to {})",
                    plan.stages.len(),
                    plan.stages.len().saturating_sub(1)
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The invariants of [`validate`](Self::validate) that do not need the
    /// plan: what a store checks on every read.
    pub(crate) fn validate_shape(&self) -> Result<(), InvalidState> {
        let invalid = |message: String| {
            Err(InvalidState {
                epoch: self.epoch,
                message,
            })
        };
        if self.epoch == 0 {
            return invalid("`epoch` is 0; the first state has epoch 1".into());
        }
        if self.run_epoch > self.epoch {
            return invalid(format!(
                "`run_epoch` {} is after `epoch` {}",
                self.run_epoch, self.epoch
            ));
        }
        match (self.status, self.stage) {
            (RolloutStatus::Off, Some(stage)) => {
                return invalid(format!("`status` is off but `stage` is {stage}"));
            }
            (RolloutStatus::Off, None) => {
                if self.stage_started_at.is_some() || self.run_started_at.is_some() {
                    return invalid(
                        "`status` is off but `stage_started_at`/`run_started_at` are set".into(),
                    );
                }
            }
            (status, None) => return invalid(format!("`status` is {status} but `stage` is null")),
            (_, Some(_)) => match (self.stage_started_at, self.run_started_at) {
                (Some(stage), Some(run)) if run < stage => {
                    return invalid("`run_started_at` is before `stage_started_at`".into());
                }
                (Some(_), Some(_)) => {}
                _ => {
                    return invalid(format!(
                        "`status` is {} but `stage_started_at` or `run_started_at` is null",
                        self.status
                    ));
                }
            },
        }
        Ok(())
    }

    /// How long the current stage has run at `now` (zero when off, or when
    /// the clock is behind the stored start).
    #[must_use]
    pub fn stage_age(&self, now: SystemTime) -> Duration {
        self.stage_started_at
            .and_then(|start| now.duration_since(start).ok())
            .unwrap_or_default()
    }

    /// Whether `self` is a new run relative to `earlier`: another stage, or
    /// a run that started again (a resume), so data judged under `earlier`
    /// does not count for `self`.
    #[must_use]
    pub fn is_new_run_since(&self, earlier: &RolloutState) -> bool {
        self.stage != earlier.stage
            || self.run_epoch != earlier.run_epoch
            || self.run_started_at != earlier.run_started_at
    }

    /// Applies an operator's `operation`: `Ok(Some(next))` with `epoch + 1`,
    /// `Ok(None)` when the state is already what was asked (a rollback while
    /// rolled back or off, a resume or pause that changes nothing).
    ///
    /// # Errors
    ///
    /// [`Refused`] with the reason: `advance` while rolled back or at the
    /// last stage; `resume` while off; `pause` while off, rolled back or
    /// complete.
    pub fn apply(
        &self,
        operation: Operation,
        plan: &RolloutPlan,
        now: SystemTime,
        by: ChangedBy,
        reason: &str,
    ) -> Result<Option<RolloutState>, Refused> {
        use RolloutStatus as S;
        let now = whole_ms(now);
        let refuse = |message: &str| {
            Err(Refused {
                operation,
                status: self.status,
                epoch: self.epoch,
                message: message.to_owned(),
            })
        };
        let last = plan.stages.len().saturating_sub(1);
        let next = match (operation, self.status) {
            (Operation::Advance, S::RolledBack) => {
                return refuse("the rollout is rolled back; resume it first");
            }
            (Operation::Advance, S::Off) => {
                return Ok(Some(self.enter(0, now).new_run(now, by, reason)));
            }
            (Operation::Advance, _) => match self.stage {
                Some(stage) if stage < last => {
                    return Ok(Some(self.enter(stage + 1, now).new_run(now, by, reason)));
                }
                _ => return refuse("already at the last stage"),
            },
            (Operation::Rollback, S::RolledBack | S::Off) => return Ok(None),
            (Operation::Rollback, _) => self.with_status(S::RolledBack),
            (Operation::Resume, S::Off) => {
                return refuse("the rollout is off; advance starts the first stage");
            }
            (Operation::Resume, S::Running | S::Complete) => return Ok(None),
            (Operation::Resume, S::RolledBack) => {
                let next = RolloutState {
                    status: S::Running,
                    stage_started_at: Some(now),
                    run_started_at: Some(now),
                    ..self.clone()
                };
                return Ok(Some(next.new_run(now, by, reason)));
            }
            (Operation::Resume, S::AwaitingReview | S::Paused) => {
                let next = RolloutState {
                    status: S::Running,
                    run_started_at: Some(now),
                    ..self.clone()
                };
                return Ok(Some(next.new_run(now, by, reason)));
            }
            (Operation::Pause, S::Paused) => return Ok(None),
            (Operation::Pause, S::Running | S::AwaitingReview) => self.with_status(S::Paused),
            (Operation::Pause, S::Off | S::RolledBack | S::Complete) => {
                return refuse("nothing to pause: automatic advancing is not happening");
            }
        };
        Ok(Some(next.changed(now, by, reason)))
    }

    /// The state a rollback writes over a stored state that cannot be read
    /// (a rollback is always accepted): `rolled_back`, with an epoch above
    /// both `salvaged.epoch` and `epoch_floor` (every epoch the writer has
    /// seen: its own, the services' acknowledgements), at the salvaged stage
    /// when the plan has it, else stage 0 (a resume then restarts from the
    /// first stage), starting now. The reason names what was wrong.
    #[must_use]
    pub fn rolled_back_over(
        salvaged: &crate::act::salvage::Salvaged,
        plan: &RolloutPlan,
        epoch_floor: u64,
        now: SystemTime,
        by: ChangedBy,
        reason: &str,
    ) -> RolloutState {
        let now = whole_ms(now);
        let epoch = salvaged
            .epoch
            .unwrap_or(0)
            .max(epoch_floor)
            .saturating_add(1);
        let (stage, whence) = match salvaged.stage.filter(|&s| s < plan.stages.len()) {
            Some(stage) => (stage, "its stage"),
            None => (0, "stage unknown, 0 taken"),
        };
        let mut problem: String = salvaged.problem.chars().take(160).collect();
        if problem.len() < salvaged.problem.len() {
            problem.push('…');
        }
        RolloutState {
            epoch,
            stage: Some(stage),
            status: RolloutStatus::RolledBack,
            stage_started_at: Some(now),
            run_started_at: Some(now),
            run_epoch: epoch,
            changed_at: now,
            changed_by: by,
            reason: format!("{reason} [written over an unreadable state ({whence}): {problem}]"),
        }
    }

    /// `self` with its epoch above `floor` when it is not already (a run
    /// that starts at its epoch starts at the new one too): how every write
    /// goes above every epoch seen.
    #[must_use]
    pub(crate) fn lifted_above(mut self, floor: u64) -> RolloutState {
        if self.epoch <= floor {
            let new_run = self.run_epoch == self.epoch;
            self.epoch = floor.saturating_add(1);
            if new_run {
                self.run_epoch = self.epoch;
            }
        }
        self
    }

    /// `self`, which a store lost (its key deleted, its file removed, or
    /// its content replaced with something unreadable and then removed),
    /// written again by the controller that knew it: the same status, stage
    /// and run (stage and run keep their start), at an epoch above `floor`
    /// (every epoch seen), with `why` added to its reason.
    #[must_use]
    pub(crate) fn restored(&self, floor: u64, now: SystemTime, why: &str) -> RolloutState {
        const MARK: &str = " [written again by the controller: ";
        let reason = self
            .reason
            .split_once(MARK)
            .map_or(self.reason.as_str(), |(before, _)| before);
        RolloutState {
            epoch: floor.max(self.epoch).saturating_add(1),
            changed_at: whole_ms(now),
            changed_by: ChangedBy::Controller,
            reason: format!("{reason}{MARK}{why}]"),
            ..self.clone()
        }
    }

    /// The controller's automatic transitions: `to` is `RolledBack`,
    /// `AwaitingReview` or `Complete` at the same stage.
    pub(crate) fn automatic(
        &self,
        to: RolloutStatus,
        now: SystemTime,
        reason: &str,
    ) -> RolloutState {
        self.with_status(to)
            .changed(now, ChangedBy::Controller, reason)
    }

    /// The controller's automatic advance to `stage`.
    pub(crate) fn advanced(&self, stage: usize, now: SystemTime, reason: &str) -> RolloutState {
        self.enter(stage, now)
            .new_run(now, ChangedBy::Controller, reason)
    }

    fn enter(&self, stage: usize, now: SystemTime) -> RolloutState {
        let now = whole_ms(now);
        RolloutState {
            stage: Some(stage),
            status: RolloutStatus::Running,
            stage_started_at: Some(now),
            run_started_at: Some(now),
            ..self.clone()
        }
    }

    fn with_status(&self, status: RolloutStatus) -> RolloutState {
        RolloutState {
            status,
            ..self.clone()
        }
    }

    /// As [`changed`](Self::changed), starting a new run at the new epoch.
    fn new_run(self, now: SystemTime, by: ChangedBy, reason: &str) -> RolloutState {
        let mut next = self.changed(now, by, reason);
        next.run_epoch = next.epoch;
        next
    }

    fn changed(mut self, now: SystemTime, by: ChangedBy, reason: &str) -> RolloutState {
        self.epoch = self.epoch.saturating_add(1);
        self.changed_at = whole_ms(now);
        self.changed_by = by;
        reason.clone_into(&mut self.reason);
        self
    }
}

impl fmt::Display for RolloutState {
    /// `epoch 7: rolled_back at stage 1 (controller, 2026-12-02T11:42:10.250Z): <reason>`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "epoch {}: {}", self.epoch, self.status)?;
        if let Some(stage) = self.stage {
            write!(f, " at stage {stage}")?;
        }
        write!(
            f,
            " ({}, {}): {}",
            self.changed_by,
            humantime::format_rfc3339_millis(self.changed_at),
            self.reason
        )
    }
}

/// `time` cut to whole milliseconds: what its RFC 3339 form keeps, so a
/// state read back from a store equals the one written.
fn whole_ms(time: SystemTime) -> SystemTime {
    crate::clock::from_unix_ms(crate::clock::unix_ms(time))
}

/// RFC 3339 timestamps in UTC with milliseconds, as an operator reads them.
pub(crate) mod rfc3339 {
    use super::{Deserialize, Deserializer, Serializer, SystemTime};

    pub(crate) fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*time))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        humantime::parse_rfc3339_weak(&text).map_err(|err| {
            serde::de::Error::custom(format!(
                "{text:?} is not an RFC 3339 time such as 2026-12-02T11:42:10.250Z: {err}"
            ))
        })
    }
}

mod rfc3339_opt {
    use super::{Deserialize, Deserializer, Serializer, SystemTime};

    pub(super) fn serialize<S: Serializer>(
        time: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => super::rfc3339::serialize(time, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::rfc3339")] SystemTime);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(time)| time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_764_000_000 + secs)
    }

    fn apply(state: &RolloutState, op: Operation, secs: u64) -> Result<RolloutState, Refused> {
        state
            .apply(
                op,
                &RolloutPlan::default(),
                at(secs),
                ChangedBy::Operator,
                "test",
            )
            .map(|next| next.unwrap_or_else(|| state.clone()))
    }

    #[test]
    fn every_change_adds_one_to_the_epoch_and_stamps_who_and_when() {
        let plan = RolloutPlan::default();
        let off = RolloutState::off(at(0), ChangedBy::Config, "start");
        let running = apply(&off, Operation::Advance, 10).unwrap();
        assert_eq!(running.epoch, 2);
        assert_eq!(running.stage, Some(0));
        assert_eq!(running.changed_by, ChangedBy::Operator);
        assert_eq!(running.changed_at, at(10));
        assert_eq!(running.stage_started_at, Some(at(10)));
        assert_eq!(
            running.percent_in_force(&plan),
            Some(plan.stages[0].percent)
        );
        let paused = apply(&running, Operation::Pause, 20).unwrap();
        assert_eq!((paused.epoch, paused.status), (3, RolloutStatus::Paused));
        assert_eq!(paused.percent_in_force(&plan), Some(plan.stages[0].percent));
    }

    #[test]
    fn rolled_back_and_off_serve_nothing_async() {
        let plan = RolloutPlan::default();
        let running = RolloutState::running(2, at(0), ChangedBy::Config, "start");
        let rolled_back = apply(&running, Operation::Rollback, 5).unwrap();
        assert_eq!(rolled_back.percent_in_force(&plan), None);
        assert_eq!(
            rolled_back.stage,
            Some(2),
            "the stage is kept for the resume"
        );
        let off = RolloutState::off(at(0), ChangedBy::Config, "start");
        assert_eq!(off.percent_in_force(&plan), None);
    }

    #[test]
    fn advance_is_refused_while_rolled_back_and_at_the_last_stage() {
        let running = RolloutState::running(1, at(0), ChangedBy::Config, "start");
        let rolled_back = apply(&running, Operation::Rollback, 5).unwrap();
        let refused = apply(&rolled_back, Operation::Advance, 6).unwrap_err();
        assert!(refused.message.contains("resume"), "{refused}");
        let last = RolloutState::running(3, at(0), ChangedBy::Config, "start");
        assert!(apply(&last, Operation::Advance, 6).is_err());
    }

    #[test]
    fn resume_after_rollback_restarts_the_stage_after_review_only_the_run() {
        let running = RolloutState::running(1, at(0), ChangedBy::Config, "start");
        let rolled_back = apply(&running, Operation::Rollback, 100).unwrap();
        let resumed = apply(&rolled_back, Operation::Resume, 200).unwrap();
        assert_eq!(resumed.status, RolloutStatus::Running);
        assert_eq!(resumed.stage_started_at, Some(at(200)));
        assert!(resumed.is_new_run_since(&rolled_back));
        assert_eq!(
            resumed.run_epoch, resumed.epoch,
            "a run is named by its first epoch"
        );
        assert_eq!(rolled_back.run_epoch, running.run_epoch);

        let review = running.automatic(RolloutStatus::AwaitingReview, at(100), "review");
        let resumed = apply(&review, Operation::Resume, 200).unwrap();
        assert_eq!(
            resumed.stage_started_at,
            Some(at(0)),
            "min_duration keeps counting"
        );
        assert_eq!(resumed.run_started_at, Some(at(200)));
        assert!(resumed.is_new_run_since(&review));
    }

    #[test]
    fn repeated_requests_change_nothing() {
        let plan = RolloutPlan::default();
        let running = RolloutState::running(1, at(0), ChangedBy::Config, "start");
        let rolled_back = apply(&running, Operation::Rollback, 5).unwrap();
        let again = rolled_back.apply(
            Operation::Rollback,
            &plan,
            at(6),
            ChangedBy::Operator,
            "again",
        );
        assert_eq!(again, Ok(None));
        assert_eq!(
            running.apply(Operation::Resume, &plan, at(6), ChangedBy::Operator, "x"),
            Ok(None)
        );
        let off = RolloutState::off(at(0), ChangedBy::Config, "start");
        assert!(apply(&off, Operation::Resume, 1).is_err());
        assert!(apply(&off, Operation::Pause, 1).is_err());
        assert_eq!(
            off.apply(Operation::Rollback, &plan, at(1), ChangedBy::Operator, "x"),
            Ok(None)
        );
    }

    #[test]
    fn serializes_as_plain_json_with_readable_times_and_round_trips() {
        let state = RolloutState::running(1, at(0), ChangedBy::Controller, "started");
        let json = serde_json::to_string(&state).unwrap();
        assert!(json.contains(r#""status":"running""#), "{json}");
        assert!(json.contains(r#""changed_by":"controller""#), "{json}");
        assert!(
            json.contains(r#""stage_started_at":"2025-11-24T16:00:00.000Z""#),
            "{json}"
        );
        let back: RolloutState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
        let off = RolloutState::off(at(0), ChangedBy::Config, "off");
        let back: RolloutState =
            serde_json::from_str(&serde_json::to_string(&off).unwrap()).unwrap();
        assert_eq!(back, off);
    }

    #[test]
    fn validate_names_the_broken_field() {
        let plan = RolloutPlan::default();
        let mut state = RolloutState::running(9, at(0), ChangedBy::Config, "x");
        let err = state.validate(&plan).unwrap_err();
        assert!(err.message.contains("`stage` is 9"), "{err}");
        state.stage = None;
        assert!(
            state
                .validate(&plan)
                .unwrap_err()
                .message
                .contains("`stage` is null")
        );
        state.status = RolloutStatus::Off;
        assert!(
            state
                .validate(&plan)
                .unwrap_err()
                .message
                .contains("stage_started_at")
        );
        let mut zero = RolloutState::off(at(0), ChangedBy::Config, "x");
        zero.epoch = 0;
        assert!(
            zero.validate(&plan)
                .unwrap_err()
                .message
                .contains("`epoch`")
        );
        assert!(
            RolloutState::off(at(0), ChangedBy::Config, "x")
                .validate(&plan)
                .is_ok()
        );
    }

    #[test]
    fn a_time_that_is_not_rfc3339_is_an_error_naming_the_value() {
        let json = r#"{"epoch":1,"stage":null,"status":"off","changed_at":"yesterday","changed_by":"config","reason":""}"#;
        let err = serde_json::from_str::<RolloutState>(json).unwrap_err();
        assert!(err.to_string().contains("\"yesterday\""), "{err}");
    }
}
