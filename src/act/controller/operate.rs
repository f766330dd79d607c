//! The operator's API of [`RolloutController`]: advance, rollback, pause and
//! resume, through the same policy as the ticks ([`policy::decide`]) and the
//! same store synchronisation.

use std::time::SystemTime;

use crate::act::controller::{OperatorError, RolloutController};
use crate::act::policy::{self, Input, Refusal, Step};
use crate::act::record::Action;
use crate::act::state::{ChangedBy, Operation, RolloutState};
use crate::act::store::StoreError;
use crate::act::trace::Severity;

impl RolloutController {
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
        self.start_new_runs();
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
            let current = self.sync.current().cloned();
            let input = Input::Operator { operation, reason };
            let step = policy::decide(current.as_ref(), input, self.plan(), now, self.settings);
            let step = match step {
                Ok(step) => step,
                Err(Refusal::Refused(refused)) => return Err(refused.into()),
                Err(Refusal::Unknown) => return Err(self.state_unknown()),
            };
            match step {
                // A rollback over an unknown state is always accepted: in
                // force at once, and written over whatever the store holds.
                Step::Rollback { reason, by, .. } => {
                    self.part.halt();
                    match self
                        .sync
                        .rollback_unknown(&reason, by, now, &mut self.journal)
                    {
                        Ok(Some(state)) => {
                            self.sync.clear_pending();
                            let action = Action::Rollback { manual: true };
                            self.journal
                                .stored_action(&action, &reason, now, self.sync.line());
                            return Ok(state);
                        }
                        // Readable now: decide again on it.
                        Ok(None) => continue,
                        Err(err) if err.is_conflict() => continue,
                        Err(err) => return Err(self.rollback_not_stored(&reason, err, now)),
                    }
                }
                Step::NoOp(no_op) => {
                    self.journal.no_op(no_op, reason, now, self.sync.line());
                    return current.ok_or_else(|| self.state_unknown());
                }
                Step::Write { next, action } => {
                    if operation == Operation::Rollback {
                        // In force before the write: a slow or failing store
                        // never delays a rollback.
                        self.part.halt();
                    }
                    match self.sync.commit(next) {
                        Ok(next) => {
                            // Written over the first state if it was not
                            // stored yet.
                            self.sync.clear_first_pending();
                            self.journal
                                .stored_action(&action, reason, now, self.sync.line());
                            return Ok(next);
                        }
                        Err(err) if err.is_conflict() => {
                            self.sync.reload(now, &mut self.journal)?;
                        }
                        Err(err) if operation == Operation::Rollback => {
                            return Err(self.rollback_not_stored(reason, err, now));
                        }
                        Err(err) => {
                            self.sync.set_state_error(err.to_string());
                            return Err(err.into());
                        }
                    }
                }
                // Not an operator's step (a request is written, refused or
                // a no-op): nothing changed.
                Step::Stay | Step::Ready(_) => return current.ok_or_else(|| self.state_unknown()),
            }
        }
        Err(OperatorError::Store(StoreError::Conflict {
            store: self.sync.store().describe(),
            expected: self.sync.revision(),
            found: None,
        }))
    }

    /// Why there is no state to change.
    fn state_unknown(&self) -> OperatorError {
        OperatorError::StateUnknown {
            message: self
                .sync
                .state_error()
                .map_or_else(|| "not read yet".to_owned(), str::to_owned),
        }
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
        self.sync
            .rollback_later(reason.to_owned(), ChangedBy::Operator, None);
        self.sync.set_state_error(err.to_string());
        self.journal.state_at(
            Severity::Warn,
            now,
            format!(
                "operator's rollback ({reason}) in force in this process (nothing async here), but not stored: {err}; written when the store answers"
            ),
            self.sync.line(),
        );
        err.into()
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
}
