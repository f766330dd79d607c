//! The states a [`StoreSync`] finds missing or unreadable: the first read
//! (a stored state, or the first one from the starting request), a state
//! that vanished, a read that failed, and a rollback written over whatever
//! the store holds.

use std::time::SystemTime;

use crate::act::journal::Journal;
use crate::act::state::{ChangedBy, Operation, RolloutState};
use crate::act::store::{Salvaged, StoreError, Stored};
use crate::act::sync::{Pending, StoreSync, UNREACHABLE};
use crate::act::trace::Severity;

impl StoreSync {
    /// The first read, when the controller starts: takes the stored state,
    /// or makes the first one pending (from the starting request, when the
    /// store never held one), or fails closed. Returns the reason for the
    /// start line.
    pub(crate) fn start(&mut self, now: SystemTime) -> String {
        let reason = match self.store.load() {
            Ok(Some(stored)) => match stored.state.validate(&self.plan) {
                Ok(()) => {
                    let reason = format!(
                        "controller started: continuing {} from {}",
                        stored.state,
                        self.store.describe()
                    );
                    self.stored = Some(stored);
                    reason
                }
                Err(err) => self.unknown(format!(
                    "{}: {err} (nothing is async until it is fixed)",
                    self.store.describe()
                )),
            },
            Ok(None) if self.waits_for_leader() => {
                self.state_error = Some(self.waiting_message());
                format!(
                    "replica started: no state in {} yet; nothing async until the leading controller writes one",
                    self.store.describe()
                )
            }
            Ok(None) => match self.store.high_water() {
                Ok(0) => {
                    let floor = self.acknowledged_epoch();
                    let first = self.first_state(now).lifted_above(floor);
                    let reason = format!(
                        "controller started: no state in {}; writing the first: {first}",
                        self.store.describe(),
                    );
                    self.pending = Some(Pending::Initial(first));
                    reason
                }
                Ok(high_water) => {
                    self.epoch_seen = high_water;
                    let message = self.lost_message(high_water);
                    self.state_error = Some(message.clone());
                    format!("controller started: {message}")
                }
                Err(err) => self.unknown(format!("{err} (nothing is async until it is fixed)")),
            },
            Err(err) => self.unknown(format!("{err} (nothing is async until it is fixed)")),
        };
        if let Some(stored) = self.stored.clone() {
            self.saw(&stored.state);
        }
        reason
    }

    /// The first state from the starting request.
    pub(super) fn first_state(&self, now: SystemTime) -> RolloutState {
        match self.request.stage {
            Some(stage) => {
                RolloutState::running(stage, now, ChangedBy::Config, self.request.reason.clone())
            }
            None => RolloutState::off(now, ChangedBy::Config, self.request.reason.clone()),
        }
    }

    /// The store answered "nothing stored".
    ///
    /// A fleet's replica waits for the leader. A controller that knows the last
    /// state (read or written, also before the state turned unreadable)
    /// writes it again above every epoch seen; one that does not, on a
    /// store that has held a state, writes nothing and waits for an
    /// operator's `--create`; only a store that never held one is started
    /// from the starting request.
    pub(super) fn state_vanished(&mut self, now: SystemTime, journal: &mut Journal) {
        if self.waits_for_leader() {
            if let Some(lost) = self.stored.take() {
                let message = self.waiting_message();
                self.state_error = Some(message.clone());
                journal.state(
                    now,
                    format!(
                        "the state is gone from the store (was {}): {message}",
                        lost.state
                    ),
                    self.line(),
                );
            }
            return;
        }
        if self.first_pending() && self.stored.is_none() {
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
                journal.state_at(
                    Severity::Warn,
                    now,
                    format!(
                        "{why}: writing the last known state again, above every epoch seen: {restored}"
                    ),
                    self.line(),
                );
                restored
            }
            None if floor > 0 => {
                let message = self.lost_message(floor);
                if self.state_error.as_deref() != Some(message.as_str()) {
                    journal.state_at(Severity::FailClosed, now, message.clone(), self.line());
                }
                self.state_error = Some(message);
                return;
            }
            // A store that never held a state (a corrupt file that was never
            // a state, now removed): start as a first start would.
            None => {
                let floor = floor.max(self.acknowledged_epoch());
                let first = self.first_state(now).lifted_above(floor);
                journal.state(
                    now,
                    format!(
                        "no state in {}, and it never held one; starting afresh: {}",
                        self.store.describe(),
                        first.reason
                    ),
                    self.line(),
                );
                self.new_run(now);
                first
            }
        };
        // A rollback asked for meanwhile holds.
        let next = match rollback {
            Some((reason, by)) if next.status.serves_async() => next
                .apply(Operation::Rollback, &self.plan, now, by, &reason)
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
    pub(super) fn store_failed(
        &mut self,
        err: StoreError,
        now: SystemTime,
        journal: &mut Journal,
    ) -> StoreError {
        let message = err.to_string();
        if matches!(err, StoreError::Corrupt { .. }) {
            if self.state_error.as_deref() != Some(message.as_str()) {
                journal.state_at(
                    Severity::FailClosed,
                    now,
                    format!("cannot read the state: {message}"),
                    self.line(),
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
                journal.state_at(
                    Severity::Warn,
                    now,
                    format!("cannot read the state: {line}"),
                    self.line(),
                );
            }
            self.state_error = Some(message);
            self.check_stale(journal);
        }
        err
    }

    /// Makes the state unknown (fail closed) and returns the reason.
    pub(super) fn unknown(&mut self, message: String) -> String {
        self.stored = None;
        if self.first_pending() {
            self.pending = None;
        }
        self.state_error = Some(message.clone());
        format!("cannot use the rollout state: {message}")
    }

    /// A rollback while the state is unknown, written over whatever the
    /// store holds (a rollback is always accepted): over an unreadable state
    /// ([`StateStore::replace_unreadable`]) or one that does not fit the
    /// plan, a `rolled_back` state whose epoch is above every epoch seen
    /// (this controller's, the store's content, the services'
    /// acknowledgements); over nothing stored, `off`. `Ok(None)` when the
    /// state can be read now (it is taken: decide again on it).
    pub(crate) fn rollback_unknown(
        &mut self,
        reason: &str,
        by: ChangedBy,
        now: SystemTime,
        journal: &mut Journal,
    ) -> Result<Option<RolloutState>, StoreError> {
        let acked = self.acknowledged_epoch();
        let floor = self.epoch_floor().max(acked);
        let plan = self.plan.clone();
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
                    self.adopt(stored, now, journal);
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
}
