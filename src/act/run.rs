//! [`RunView`]: one run of a stage as this process counts it.

use std::sync::Arc;

use crate::metrics::MetricsSnapshot;

/// One run of a stage (from a stage start or a resume, named by its
/// [`run_epoch`](crate::RolloutState::run_epoch)) as this process counts
/// it: the accumulator's snapshot when the run started here, and the totals
/// recovered from the log when this process joined the run late (a restart).
///
/// Its [`totals`](RunView::totals) are what the controller judges, and what
/// a fleet replica exports, labelled with the epoch, for the fleet's
/// controller to add up.
#[derive(Clone, Debug, PartialEq)]
pub struct RunView {
    /// The epoch that started the run.
    pub epoch: u64,
    base: Arc<MetricsSnapshot>,
    carried: Option<Arc<MetricsSnapshot>>,
}

impl RunView {
    /// A run counted from `base` (a cumulative snapshot of this process's
    /// accumulator), plus `carried` totals from before this process joined.
    #[must_use]
    pub fn new(epoch: u64, base: MetricsSnapshot, carried: Option<MetricsSnapshot>) -> RunView {
        RunView {
            epoch,
            base: Arc::new(base),
            carried: carried.map(Arc::new),
        }
    }

    /// The run's totals in this process given `latest`, a later cumulative
    /// snapshot of the same accumulator: what was carried plus what was
    /// recorded since the base. Memory is left as `latest`'s (a level, not a
    /// count); counts and buckets are exact.
    #[must_use]
    pub fn totals(&self, latest: &MetricsSnapshot) -> MetricsSnapshot {
        let here = latest.since(&self.base);
        match &self.carried {
            Some(carried) => {
                let mut merged = carried.merge(&here);
                merged.memory = here.memory;
                merged
            }
            None => here,
        }
    }

    /// The same run (same base), now named `epoch` and carrying `totals`
    /// recovered from before this process joined it.
    #[must_use]
    pub fn carrying(self, epoch: u64, totals: MetricsSnapshot) -> RunView {
        RunView {
            epoch,
            carried: Some(Arc::new(totals)),
            ..self
        }
    }

    /// Whether totals were recovered from before this process joined.
    #[must_use]
    pub fn is_carried(&self) -> bool {
        self.carried.is_some()
    }
}
