//! The operator's commands on the rollout's state: `status`, `rollback`,
//! `resume`, `advance`, `pause`.
//!
//! They read and write the [`StateStore`] a service's controller uses (the
//! state file by default), with the same transitions the controller applies
//! ([`RolloutState::apply`]) and a compare-and-swap on the store's revision:
//! a command that loses a race with the controller reads again and decides
//! again, it never overwrites. A running service sees the change at its next
//! poll (every second by default).

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::Serialize;

use crate::act::state::{ChangedBy, Operation, RolloutState, RolloutStatus};
use crate::act::store::{Revision, StateStore, Stored};
use crate::cli::error::CliError;
use crate::decide::percent::Percent;
use crate::judge::plan::RolloutPlan;

/// How many times a command reads again after losing a race.
const ATTEMPTS: usize = 5;

/// What an operator command did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub enum Operated {
    /// The state was changed to this, at this revision.
    Changed(Stored),
    /// The state already was what was asked (a rollback while rolled back):
    /// nothing was written.
    Unchanged(Stored),
}

impl Operated {
    /// The state now stored.
    #[must_use]
    pub fn stored(&self) -> &Stored {
        match self {
            Operated::Changed(stored) | Operated::Unchanged(stored) => stored,
        }
    }
}

/// Applies `operation` to the state in `store`, as an operator, and writes it
/// with a compare-and-swap (reading again and deciding again up to five
/// times when another writer gets in first).
///
/// With no state stored yet, the rollout counts as `off`: `advance` starts
/// the first stage, and `rollback` writes `off` so that a service started
/// later does not begin from its environment.
///
/// # Errors
///
/// [`CliError::Refused`] when the state does not allow it (advance while
/// rolled back: resume first), [`CliError::State`] when the store cannot be
/// read or written (or kept losing races), [`CliError::InvalidState`] when
/// the stored state does not fit the plan.
pub fn operate(
    store: &dyn StateStore,
    plan: &RolloutPlan,
    operation: Operation,
    reason: &str,
    now: SystemTime,
) -> Result<Operated, CliError> {
    let mut last_conflict = None;
    for _ in 0..ATTEMPTS {
        let stored = load_valid(store, plan)?;
        let current = stored.as_ref().map_or_else(
            || RolloutState {
                epoch: 0,
                ..RolloutState::off(now, ChangedBy::Operator, "no state stored")
            },
            |s| s.state.clone(),
        );
        let next = match current.apply(operation, plan, now, ChangedBy::Operator, reason)? {
            Some(next) => next,
            None if stored.is_none() && operation == Operation::Rollback => {
                RolloutState::off(now, ChangedBy::Operator, reason)
            }
            None => {
                let Some(stored) = stored else {
                    // `off` with nothing stored: nothing to change.
                    return Ok(Operated::Unchanged(Stored {
                        state: current,
                        revision: Revision(0),
                    }));
                };
                return Ok(Operated::Unchanged(stored));
            }
        };
        match store.compare_and_swap(stored.as_ref().map(|s| s.revision), &next) {
            Ok(revision) => {
                return Ok(Operated::Changed(Stored {
                    state: next,
                    revision,
                }));
            }
            Err(err) if err.is_conflict() => last_conflict = Some(err),
            Err(err) => return Err(err.into()),
        }
    }
    Err(last_conflict.map_or(
        CliError::NoState {
            store: store.describe(),
        },
        CliError::State,
    ))
}

/// What `store` holds, checked against `plan`.
fn load_valid(store: &dyn StateStore, plan: &RolloutPlan) -> Result<Option<Stored>, CliError> {
    let stored = store.load()?;
    if let Some(stored) = &stored {
        stored
            .state
            .validate(plan)
            .map_err(|source| CliError::InvalidState {
                store: store.describe(),
                source,
            })?;
    }
    Ok(stored)
}

/// The body of `status --json`.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    /// Where the state was read.
    pub store: String,
    /// The store's revision; `null` when nothing is stored.
    pub revision: Option<u64>,
    /// The percent in force under this state and the plan: 0 when nothing
    /// is async.
    pub percent: Percent,
    /// Whether nothing is async (force lists included).
    pub halted: bool,
    /// The state; `null` when nothing is stored (a service starts from its
    /// environment then).
    pub state: Option<RolloutState>,
}

impl StatusReport {
    /// The report of what `store` holds, judged against `plan`.
    ///
    /// # Errors
    ///
    /// [`CliError::State`] when the store cannot be read,
    /// [`CliError::InvalidState`] when its state does not fit the plan.
    pub fn read(store: &dyn StateStore, plan: &RolloutPlan) -> Result<StatusReport, CliError> {
        let stored = load_valid(store, plan)?;
        let percent = stored.as_ref().and_then(|s| s.state.percent_in_force(plan));
        Ok(StatusReport {
            store: store.describe(),
            revision: stored.as_ref().map(|s| s.revision.0),
            percent: percent.unwrap_or(Percent::ZERO),
            halted: percent.is_none(),
            state: stored.map(|s| s.state),
        })
    }

    /// The report as an operator reads it, `now` giving the ages.
    #[must_use]
    pub fn render(&self, plan: &RolloutPlan, now: SystemTime) -> String {
        let mut out = String::new();
        let Some(state) = &self.state else {
            let _ = writeln!(
                out,
                "{}: no state stored: a service starts from its environment \
                 (ASYNC_UPLOAD_ROLLOUT) and writes its first state",
                self.store
            );
            return out;
        };
        let ago = |at: SystemTime| {
            let age = now.duration_since(at).unwrap_or_default();
            format!(
                "{} ({} ago)",
                humantime::format_rfc3339_seconds(at),
                humantime::format_duration(std::time::Duration::from_secs(age.as_secs()))
            )
        };
        let stage = state.stage.map_or_else(
            || "none".to_owned(),
            |i| match plan.stages.get(i) {
                Some(stage) => format!("{i} of {} ({})", plan.stages.len(), stage.percent),
                None => format!("{i} (not in the plan)"),
            },
        );
        let in_force = if self.halted {
            "nothing async (force lists included)".to_owned()
        } else {
            self.percent.to_string()
        };
        let rows: [(&str, String); 8] = [
            ("store", self.store.clone()),
            ("status", state.status.to_string()),
            ("stage", stage),
            ("in force", in_force),
            (
                "epoch",
                format!(
                    "{} (revision {})",
                    state.epoch,
                    self.revision.unwrap_or_default()
                ),
            ),
            (
                "changed",
                format!("{} by {}", ago(state.changed_at), state.changed_by),
            ),
            ("reason", state.reason.clone()),
            (
                "stage since",
                state.stage_started_at.map_or_else(|| "-".to_owned(), ago),
            ),
        ];
        for (name, value) in rows {
            let _ = writeln!(out, "{name:>12}: {value}");
        }
        if state.run_started_at != state.stage_started_at
            && let Some(run) = state.run_started_at
        {
            let _ = writeln!(out, "{:>12}: {}", "run since", ago(run));
        }
        let hint = match state.status {
            RolloutStatus::RolledBack => {
                Some("resume it with: async-upload-rollout resume --reason TEXT")
            }
            RolloutStatus::Off => {
                Some("start the first stage with: async-upload-rollout advance --reason TEXT")
            }
            RolloutStatus::AwaitingReview => {
                Some("after the review: async-upload-rollout resume (or advance) --reason TEXT")
            }
            RolloutStatus::Paused => {
                Some("resume automatic advancing with: async-upload-rollout resume --reason TEXT")
            }
            RolloutStatus::Running | RolloutStatus::Complete => None,
        };
        if let Some(hint) = hint {
            let _ = writeln!(out, "\n{hint}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::store::MemoryStateStore;

    #[test]
    fn advance_from_nothing_stored_starts_the_first_stage() {
        let store = MemoryStateStore::new();
        let plan = RolloutPlan::default();
        let done = operate(&store, &plan, Operation::Advance, "go", SystemTime::now()).unwrap();
        let Operated::Changed(stored) = done else {
            panic!("{done:?}")
        };
        assert_eq!(stored.state.stage, Some(0));
        assert_eq!(stored.state.epoch, 1);
        assert_eq!(stored.state.changed_by, ChangedBy::Operator);
    }

    #[test]
    fn rollback_with_nothing_stored_writes_off() {
        let store = MemoryStateStore::new();
        let plan = RolloutPlan::default();
        let done = operate(
            &store,
            &plan,
            Operation::Rollback,
            "not yet",
            SystemTime::now(),
        );
        let stored = store.load().unwrap().unwrap();
        assert_eq!(stored.state.status, RolloutStatus::Off);
        assert!(matches!(done, Ok(Operated::Changed(_))));
        let report = StatusReport::read(&store, &plan).unwrap();
        assert!(report.halted);
        assert!(report.render(&plan, SystemTime::now()).contains("advance"));
    }

    #[test]
    fn advance_while_rolled_back_is_refused_naming_resume() {
        let store = MemoryStateStore::new();
        let plan = RolloutPlan::default();
        let now = SystemTime::now();
        let _ = operate(&store, &plan, Operation::Advance, "go", now).unwrap();
        let _ = operate(&store, &plan, Operation::Rollback, "pager", now).unwrap();
        let err = operate(&store, &plan, Operation::Advance, "again", now).unwrap_err();
        assert!(err.to_string().contains("resume"), "{err}");
        assert!(matches!(
            operate(&store, &plan, Operation::Rollback, "twice", now),
            Ok(Operated::Unchanged(_))
        ));
    }
}
