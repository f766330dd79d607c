//! [`RunView`]: one run of a stage as this process counts it.

use std::sync::Arc;

use crate::metrics::MetricsSnapshot;

/// One run of a stage (from a stage start or a resume, named by its
/// [`run_epoch`](crate::RolloutState::run_epoch)) as this process counts
/// it: the accumulator's snapshot when the run started here, and the totals
/// recovered from the log when this process joined the run late (a restart).
///
/// Its [`totals`](RunView::totals) are what the controller judges; what
/// this process [counted](RunView::counted_here) of them is what a fleet
/// replica exports, labelled with the epoch and its process, for the
/// fleet's controller to add up.
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

    /// The run's totals counted by this process alone, given `latest`:
    /// what was recorded since the base, without the totals carried from
    /// before this process joined. What a fleet replica exports, labelled
    /// with its process: a restarted replica's carried totals are already in
    /// its earlier process's series, so exporting them again would count
    /// them twice.
    #[must_use]
    pub fn counted_here(&self, latest: &MetricsSnapshot) -> MetricsSnapshot {
        latest.since(&self.base)
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
