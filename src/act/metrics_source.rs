//! [`MetricsSource`]: where a controller reads a run's totals when they are
//! not this process's own.

use std::time::SystemTime;

use crate::act::state::RolloutState;
use crate::metrics::MetricsSnapshot;

/// The totals of a run of a stage, from somewhere other than this
/// process's [`MetricsAccumulator`](crate::MetricsAccumulator): a fleet's
/// controller reads every replica's counters from Prometheus
/// ([`PrometheusSource`](crate::fleet::PrometheusSource)).
///
/// Called once per tick while the rollout serves async. An error means no
/// data this tick: the controller judges nothing (never a pass, never a
/// rollback) and reports it; an empty snapshot is judged as "not enough
/// data".
pub trait MetricsSource: Send {
    /// The totals of the run `state.run_epoch` names, as of `now`
    /// (cumulative since the run started).
    ///
    /// # Errors
    ///
    /// Why there is no data now, in one sentence naming the source.
    fn run_totals(
        &mut self,
        state: &RolloutState,
        now: SystemTime,
    ) -> Result<MetricsSnapshot, String>;

    /// Where the data comes from, for messages.
    fn describe(&self) -> String;
}
