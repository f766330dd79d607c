//! [`StoreSync`]: the controller's side of its [`StateStore`]: what it read,
//! what is pending, how stale it is, and every read and write.
//!
//! The store is the one owner of the rollout's state; this type is how one
//! controller keeps up with it:
//!
//! - **Read** ([`read`](StoreSync::read), [`settle`](StoreSync::settle)):
//!   adopt a state written by someone else, fail closed at once on content
//!   that cannot be believed, keep the last state through an unreachable
//!   store until it is stale, and write the last known state again when the
//!   store loses it.
//! - **Pending**: a change in force locally that the store has not taken
//!   yet: the first state, or a rollback (halted before it is written, so a
//!   store that cannot be written never delays it), retried on every read.
//! - **Commit**: every write is a compare-and-swap on the revision read, at
//!   an epoch above every epoch seen.
//!
//! What it reads and writes is logged through the [`Journal`] at once (each
//! line under the state of that instant). A change that starts a new run of
//! the stage is handed to the controller ([`StoreSync::take_new_runs`]),
//! which owns the run's data.
//!
//! The states found missing or unreadable (the first read, a vanished
//! state, a failed read, a rollback over an unknown state) are in `lost`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::act::journal::{Journal, Line};
use crate::act::outage::OutageLog;
use crate::act::policy::Authority;
use crate::act::record::Action;
use crate::act::state::{ChangedBy, Operation, RolloutState, RolloutStatus};
use crate::act::store::{Revision, StateStore, StoreError, Stored};
use crate::act::trace::{self, Severity};
use crate::clock::Clock;
use crate::decide::percent::Percent;
use crate::judge::plan::RolloutPlan;

mod lost;
mod request;

pub(crate) use request::Request;

/// The [`OutageLog`] kind of a store that cannot be read.
pub(super) const UNREACHABLE: &str = "state store unreachable";
/// The [`OutageLog`] kind of a write to the store that failed.
const UNWRITABLE: &str = "state store write";

/// A change in force locally, not yet in the store.
#[derive(Clone, Debug)]
pub(super) enum Pending {
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

/// What a read of the store found (see [`StoreSync::read`]).
#[derive(Debug)]
pub(crate) enum Read {
    /// The store answered with this (or nothing stored).
    Loaded(Option<Stored>),
    /// The store answered, but its content cannot be believed.
    Corrupt(StoreError),
    /// The store did not answer.
    Unreachable(StoreError),
}

impl Read {
    /// Whether the store answered.
    pub(crate) fn answered(&self) -> bool {
        !matches!(self, Read::Unreachable(_))
    }
}

/// A new run of the stage began (a state of a new run was adopted or
/// written): the controller starts the run's data afresh.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NewRun {
    /// When.
    pub(crate) at: SystemTime,
    /// The run epoch of the state in force then (0 when unknown).
    pub(crate) epoch: u64,
}

/// One controller's synchronisation with its [`StateStore`].
pub(crate) struct StoreSync {
    store: Arc<dyn StateStore>,
    plan: RolloutPlan,
    clock: Arc<dyn Clock>,
    /// What it may write of its own accord: a fleet's replica
    /// ([`Authority::Fuse`]) never writes a first state or a lost one again,
    /// it waits for the leader.
    authority: Authority,
    stale_after: Duration,
    request: Request,
    /// What the store holds, as last read or written; `None` when unknown.
    stored: Option<Stored>,
    /// A change in force locally that the store has not taken yet.
    pending: Option<Pending>,
    state_error: Option<String>,
    /// When the store last answered.
    last_contact: SystemTime,
    stale: bool,
    /// The largest epoch seen stored (or the store's high-water mark):
    /// every write goes above it.
    epoch_seen: u64,
    /// The last state read or written, kept through states that cannot be
    /// read and keys or files that vanish: what is written again when the
    /// store loses its state.
    last_known: Option<RolloutState>,
    /// The stage of that state: a rollback over an unreadable state in which
    /// no stage can be read keeps it.
    stage_seen: Option<usize>,
    /// Thins the lines of a store that cannot be reached or written.
    outage: OutageLog,
    /// New runs not yet handed to the controller.
    new_runs: Vec<NewRun>,
}

impl StoreSync {
    pub(crate) fn new(
        store: Arc<dyn StateStore>,
        plan: RolloutPlan,
        clock: Arc<dyn Clock>,
        authority: Authority,
        stale_after: Duration,
        request: Request,
        now: SystemTime,
    ) -> StoreSync {
        StoreSync {
            store,
            plan,
            clock,
            authority,
            stale_after,
            request,
            stored: None,
            pending: None,
            state_error: None,
            last_contact: now,
            stale: false,
            epoch_seen: 0,
            last_known: None,
            stage_seen: None,
            outage: OutageLog::default(),
            new_runs: Vec::new(),
        }
    }

    /// Whether this is a fleet's replica, which waits for the leading
    /// controller where an owner of the state would write.
    fn waits_for_leader(&self) -> bool {
        self.authority == Authority::Fuse
    }

    /// What a line written now says about the state.
    pub(crate) fn line(&self) -> Line<'_> {
        Line {
            stored: self.stored_state(),
            current: self.current(),
            state_percent: self.state_percent(),
        }
    }

    /// The store.
    pub(crate) fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    /// How long the last state read serves while the store cannot confirm
    /// contact.
    pub(crate) fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// Whether the store has been out of contact for longer than
    /// `stale_after`.
    pub(crate) fn stale(&self) -> bool {
        self.stale
    }

    /// The state as stored (as last read or written).
    pub(crate) fn stored_state(&self) -> Option<&RolloutState> {
        self.stored.as_ref().map(|s| &s.state)
    }

    /// The store's revision of the state in force, once written.
    pub(crate) fn revision(&self) -> Option<Revision> {
        self.stored.as_ref().map(|s| s.revision)
    }

    /// The state in force: the stored one, or a first state not yet
    /// written.
    pub(crate) fn current(&self) -> Option<&RolloutState> {
        match &self.pending {
            Some(Pending::Initial(state)) => Some(state),
            _ => self.stored_state(),
        }
    }

    /// The status, with a rollback that is pending a write counted as done.
    pub(crate) fn status(&self) -> Option<RolloutStatus> {
        match &self.pending {
            Some(Pending::Rollback { .. }) => Some(RolloutStatus::RolledBack),
            _ => self.current().map(|s| s.status),
        }
    }

    /// Whether a rollback is in force here but not stored yet.
    pub(crate) fn rollback_pending(&self) -> bool {
        matches!(self.pending, Some(Pending::Rollback { .. }))
    }

    /// Whether the first state is in force but not stored yet.
    pub(crate) fn first_pending(&self) -> bool {
        matches!(self.pending, Some(Pending::Initial(_)))
    }

    /// The percent the state gives: `None` when it sends nothing async
    /// (off, rolled back, a rollback pending, unknown or stale).
    pub(crate) fn state_percent(&self) -> Option<Percent> {
        if self.stale || self.rollback_pending() {
            return None;
        }
        self.current()?.percent_in_force(&self.plan)
    }

    /// The epoch and stage this process applies, as it acknowledges them:
    /// `(0, None)` while a change is pending or the state is stale.
    pub(crate) fn applied_epoch(&self) -> (u64, Option<usize>) {
        let known = self.pending.is_none() && !self.stale;
        match &self.stored {
            Some(stored) if known => (stored.state.epoch, stored.state.stage),
            _ => (0, None),
        }
    }

    /// Why the state could not be read or written, while that lasts.
    pub(crate) fn state_error(&self) -> Option<&str> {
        self.state_error.as_deref()
    }

    pub(crate) fn set_state_error(&mut self, message: String) {
        self.state_error = Some(message);
    }

    /// The new runs since the last call, oldest first.
    pub(crate) fn take_new_runs(&mut self) -> Vec<NewRun> {
        std::mem::take(&mut self.new_runs)
    }

    fn new_run(&mut self, at: SystemTime) {
        let epoch = self.current().map_or(0, |s| s.run_epoch);
        self.new_runs.push(NewRun { at, epoch });
    }

    /// Reads the store. An answer (also one whose content cannot be
    /// believed) ends an outage and is the stale check's contact.
    pub(crate) fn read(&mut self, now: SystemTime, journal: &mut Journal) -> Read {
        match self.store.load() {
            Ok(loaded) => {
                self.answered(now, journal);
                Read::Loaded(loaded)
            }
            Err(err) if err.is_corrupt() => {
                self.answered(now, journal);
                Read::Corrupt(err)
            }
            Err(err) => Read::Unreachable(err),
        }
    }

    /// Adopts what `read` found and writes what is pending.
    pub(crate) fn settle(
        &mut self,
        read: Read,
        now: SystemTime,
        journal: &mut Journal,
    ) -> Result<(), StoreError> {
        let loaded = match read {
            Read::Loaded(loaded) => loaded,
            Read::Corrupt(err) => {
                // The store answers: a pending rollback is written over the
                // unreadable state.
                let err = self.store_failed(err, now, journal);
                let _ = self.write_pending(now, journal);
                return Err(err);
            }
            Read::Unreachable(err) => return Err(self.store_failed(err, now, journal)),
        };
        match loaded {
            Some(stored) if self.revision() == Some(stored.revision) => {}
            Some(stored) => {
                if let Err(err) = stored.state.validate(&self.plan) {
                    let message = format!("{}: {err}", self.store.describe());
                    self.stored = None;
                    let reason = self.unknown(message.clone());
                    journal.state_at(Severity::FailClosed, now, reason, self.line());
                    return Err(StoreError::Corrupt {
                        store: self.store.describe(),
                        message,
                    });
                }
                let epoch = stored.state.epoch;
                self.adopt(stored, now, journal);
                self.raise_below_high_water(epoch, now, journal);
            }
            None => self.state_vanished(now, journal),
        }
        if self.stored.is_some() || self.first_pending() {
            self.state_error = None;
        } else if self.waits_for_leader() && self.state_error.is_none() {
            self.state_error = Some(self.waiting_message());
        }
        self.write_pending(now, journal)
    }

    /// A state stored at or below the store's high-water mark (written
    /// around the store: by hand, or restored from an old copy) is written
    /// again above it by a controller that owns the state, so the epoch
    /// services see never goes back for long.
    fn raise_below_high_water(&mut self, epoch: u64, now: SystemTime, journal: &mut Journal) {
        if self.waits_for_leader() || self.pending.is_some() {
            return;
        }
        let Ok(high_water) = self.store.high_water() else {
            return;
        };
        if high_water <= epoch {
            return;
        }
        let Some(state) = self.stored_state().cloned() else {
            return;
        };
        let why = format!(
            "its epoch {epoch} was below the epoch {high_water} {} had held",
            self.store.describe()
        );
        let raised = state.restored(self.epoch_floor(), now, &why);
        journal.state_at(
            Severity::Warn,
            now,
            format!(
                "a state was stored around the store ({why}): writing it again above: {raised}"
            ),
            self.line(),
        );
        self.pending = Some(Pending::Initial(raised));
    }

    /// The store answered a read: the end of an outage (said once), and the
    /// stale check on its confirmed contact.
    fn answered(&mut self, now: SystemTime, journal: &mut Journal) {
        self.last_contact = now;
        if let Some(summary) = self.outage.recovered(UNREACHABLE, now) {
            journal.state(
                now,
                format!(
                    "the state store {} answers again ({summary})",
                    self.store.describe()
                ),
                self.line(),
            );
        }
        self.check_stale(journal);
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
    pub(crate) fn check_stale(&mut self, journal: &mut Journal) {
        let stale = self.contact_age() > self.stale_after;
        if stale == self.stale {
            return;
        }
        self.stale = stale;
        let now = self.clock.now();
        if stale {
            journal.state_at(
                Severity::FailClosed,
                now,
                format!(
                    "no confirmed contact with the state store {} for more than {}: nothing is async until it answers",
                    self.store.describe(),
                    humantime::format_duration(self.stale_after)
                ),
                self.line(),
            );
        } else {
            journal.state(
                now,
                format!(
                    "the state store {} answers again: the state in force applies again",
                    self.store.describe()
                ),
                self.line(),
            );
        }
    }

    /// The epoch every write goes above: the largest seen, and the store's
    /// high-water mark (when the store can tell now).
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

    /// Takes `stored` (written by someone else) as the state in force.
    fn adopt(&mut self, stored: Stored, now: SystemTime, journal: &mut Journal) {
        let before = self.current().cloned();
        if self.first_pending() {
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
            self.new_run(now);
        }
        journal.state(now, reason, self.line());
    }

    /// Keeps a rollback pending (in force: the caller has halted the
    /// rollout), written by [`write_pending`](Self::write_pending) and
    /// retried on every read until the store takes it.
    pub(crate) fn rollback_later(&mut self, reason: String, by: ChangedBy, run: Option<u64>) {
        self.pending = Some(Pending::Rollback { reason, by, run });
    }

    /// Forgets what was pending: it was just stored.
    pub(crate) fn clear_pending(&mut self) {
        self.pending = None;
    }

    /// Forgets a first state not stored yet: another was just written over
    /// it.
    pub(crate) fn clear_first_pending(&mut self) {
        if self.first_pending() {
            self.pending = None;
        }
    }

    /// Writes a pending first state or rollback; keeps it on failure. What
    /// it stores is logged as an `action` line (`start`, `rollback`).
    pub(crate) fn write_pending(
        &mut self,
        now: SystemTime,
        journal: &mut Journal,
    ) -> Result<(), StoreError> {
        self.write_pending_and_log(now, true, journal)
    }

    /// As [`write_pending`](Self::write_pending); `log`: whether to log what
    /// was stored (a tick that rolls back logs it in its own line).
    pub(crate) fn write_pending_and_log(
        &mut self,
        now: SystemTime,
        log: bool,
        journal: &mut Journal,
    ) -> Result<(), StoreError> {
        let Some(pending) = self.pending.clone() else {
            return Ok(());
        };
        let result = match pending {
            Pending::Initial(state) => {
                let state = state.lifted_above(self.epoch_floor());
                self.store
                    .compare_and_swap(self.revision(), &state)
                    .map(|revision| {
                        self.pending = None;
                        let reason = format!(
                            "wrote the rollout state to {}: {state}",
                            self.store.describe()
                        );
                        self.take_written(Stored { state, revision });
                        if log {
                            let action = Action::Start {
                                stage: self.current().and_then(|s| s.stage),
                                percent: journal.percent(self.line()),
                            };
                            journal.stored_action(&action, &reason, now, self.line());
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
                            .apply(Operation::Rollback, &self.plan, now, by, &reason)
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
                            journal.stored_action(&action, &reason, now, self.line());
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
                None if run.is_none() => match self.rollback_unknown(&reason, by, now, journal) {
                    Ok(Some(_)) => {
                        self.pending = None;
                        if log {
                            let action = Action::Rollback {
                                manual: by == ChangedBy::Operator,
                            };
                            journal.stored_action(&action, &reason, now, self.line());
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
                    let _ = self.reload(now, journal);
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
    pub(crate) fn reload(
        &mut self,
        now: SystemTime,
        journal: &mut Journal,
    ) -> Result<(), StoreError> {
        match self.store.load() {
            Ok(Some(stored)) if stored.state.validate(&self.plan).is_ok() => {
                if self.revision() != Some(stored.revision) {
                    self.adopt(stored, now, journal);
                }
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Writes `next` over the stored state (compare-and-swap on its
    /// revision), at an epoch above every epoch seen, and takes it; returns
    /// what was written. A first state not yet stored is written over.
    pub(crate) fn commit(&mut self, next: RolloutState) -> Result<RolloutState, StoreError> {
        let expected = self.revision();
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
            self.new_run(self.clock.now());
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
}
