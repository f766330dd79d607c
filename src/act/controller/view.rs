//! What a [`RolloutController`] shows: the [`ControllerView`] it publishes
//! for readers that must not wait (HTTP handlers, exporters, health checks),
//! and its getters.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::act::controller::{ControllerView, RolloutController};
use crate::act::health::Health;
use crate::act::state::{RolloutState, RolloutStatus};
use crate::act::store::{Revision, StateStore};
use crate::decide::percent::Percent;
use crate::decide::rollout::Rollout;
use crate::judge::Evaluation;
use crate::judge::plan::RolloutPlan;
use crate::metrics::{History, MetricsAccumulator, MetricsSnapshot};
use arc_swap::ArcSwap;

impl RolloutController {
    /// The state in force: the stored one, or one not yet written (the
    /// first state, or a rollback whose write failed). `None` while the
    /// state cannot be read.
    #[must_use]
    pub fn state(&self) -> Option<&RolloutState> {
        self.sync.current()
    }

    /// The store's revision of the state in force, once written.
    #[must_use]
    pub fn revision(&self) -> Option<Revision> {
        self.sync.revision()
    }

    /// The current stage's index; `None` when off or unknown.
    #[must_use]
    pub fn stage(&self) -> Option<usize> {
        self.sync.current().and_then(|s| s.stage)
    }

    /// The status, with a rollback that is pending a write counted as done;
    /// `None` while the state is unknown.
    #[must_use]
    pub fn status(&self) -> Option<RolloutStatus> {
        self.sync.status()
    }

    /// When the current stage started (`None` when off or unknown).
    #[must_use]
    pub fn stage_started(&self) -> Option<SystemTime> {
        self.sync.current().and_then(|s| s.stage_started_at)
    }

    /// Why the state could not be read or written, while that lasts.
    #[must_use]
    pub fn state_error(&self) -> Option<&str> {
        self.sync.state_error()
    }

    /// The percent in force: `None` when nothing is async (the kill switch
    /// is on; off, rolled back, a rollback pending, state unknown or stale).
    #[must_use]
    pub fn percent_in_force(&self) -> Option<Percent> {
        if self.kill_switch.is_on() {
            return None;
        }
        self.sync.state_percent()
    }

    /// The percent in force, 0% when nothing is async.
    pub(super) fn percent_now(&self) -> Percent {
        self.percent_in_force().unwrap_or(Percent::ZERO)
    }

    /// What readers see (lock-free, published after every tick, poll and
    /// operator action).
    #[must_use]
    pub fn view(&self) -> Arc<ControllerView> {
        self.view.load_full()
    }

    pub(crate) fn view_cell(&self) -> Arc<ArcSwap<ControllerView>> {
        Arc::clone(&self.view)
    }

    pub(crate) fn health(&self) -> Arc<Health> {
        Arc::clone(&self.health)
    }

    pub(super) fn publish(&self) {
        let by_state = self.sync.state_percent();
        let kill_switch = self.kill_switch.is_on();
        self.view.store(Arc::new(ControllerView {
            state: self.sync.stored_state().cloned(),
            percent: by_state.filter(|_| !kill_switch).unwrap_or(Percent::ZERO),
            halted: by_state.is_none(),
            kill_switch,
            state_error: self.sync.state_error().map(str::to_owned),
            config_error: self.config_error.clone(),
            stale: self.sync.stale(),
            last_evaluation: self.last.clone(),
            stages: self.plan().stages.iter().map(|s| s.percent).collect(),
            run: by_state.map(|_| self.run.view.clone()),
        }));
    }

    /// Why the config source cannot be read, while that lasts.
    #[must_use]
    pub fn config_error(&self) -> Option<&str> {
        self.config_error.as_deref()
    }

    /// The plan it runs.
    #[must_use]
    pub fn plan(&self) -> &RolloutPlan {
        self.evaluator.plan()
    }

    /// The latest evaluation of the current run, if a tick judged one.
    #[must_use]
    pub fn last_evaluation(&self) -> Option<&Evaluation> {
        self.last.as_ref()
    }

    /// The current run's totals as of the latest tick (what it judged).
    #[must_use]
    pub fn stage_totals(&self) -> Option<&MetricsSnapshot> {
        self.last_totals.as_ref()
    }

    /// The rollout it drives; `None` for a controller that serves no
    /// uploads ([`RolloutController::judging`]).
    #[must_use]
    pub fn rollout(&self) -> Option<&Arc<Rollout>> {
        self.part.rollout()
    }

    /// The local metrics it judges; `None` for a controller that judges run
    /// totals from a [`MetricsSource`](crate::act::MetricsSource)
    /// ([`RolloutController::judging`]).
    #[must_use]
    pub fn metrics(&self) -> Option<&Arc<MetricsAccumulator>> {
        self.part.metrics()
    }

    /// The store it keeps the state in.
    #[must_use]
    pub fn state_store(&self) -> &Arc<dyn StateStore> {
        self.sync.store()
    }

    /// How long the last state read serves while the store cannot confirm
    /// contact ([`RolloutControllerBuilder::stale_after`](crate::act::controller::builder::RolloutControllerBuilder::stale_after)).
    #[must_use]
    pub fn stale_after(&self) -> Duration {
        self.sync.stale_after()
    }

    /// The snapshots of the current run kept so far.
    #[must_use]
    pub fn history(&self) -> &History {
        &self.history
    }
}
