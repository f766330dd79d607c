//! Raw sums of the stripes' counters, cumulative since the accumulator was
//! created, and their subtraction into an [`ArmMetrics`]: a snapshot is the
//! sums now minus the sums at the last reset.

use super::Outcome;
use super::histogram::{BUCKETS, LatencyHistogram};
use super::snapshot::ArmMetrics;

/// Summed counter values (cumulative since creation).
#[derive(Clone)]
pub(super) struct Raw {
    pub(super) arms: [RawArm; 2],
}

#[derive(Clone)]
pub(super) struct RawArm {
    pub(super) outcomes: [u64; 4],
    pub(super) complaints: u64,
    pub(super) sum_ns: u64,
    /// Of the generation read (`u64::MAX` and 0 when no stripe has one).
    pub(super) min_ns: u64,
    pub(super) max_ns: u64,
    pub(super) buckets: Vec<u64>,
}

impl RawArm {
    pub(super) fn zero() -> RawArm {
        RawArm {
            outcomes: [0; 4],
            complaints: 0,
            sum_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            buckets: vec![0; BUCKETS],
        }
    }

    /// The counts since `base` as an [`ArmMetrics`]. Every counter is at
    /// least its baseline (counters only grow), so nothing underflows.
    /// Complaints are capped at uploads, as in [`ArmMetrics::since`].
    pub(super) fn since(&self, base: &RawArm) -> ArmMetrics {
        let count = |i: usize| self.outcomes[i].wrapping_sub(base.outcomes[i]);
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .zip(&base.buckets)
            .map(|(now, then)| now.wrapping_sub(*then))
            .collect();
        let mut arm = ArmMetrics {
            success: count(Outcome::Success.index()),
            error: count(Outcome::Error.index()),
            critical: count(Outcome::Critical.index()),
            rejected: count(Outcome::Rejected.index()),
            complaints: self.complaints.wrapping_sub(base.complaints),
            latency: LatencyHistogram::from_dense(
                &buckets,
                self.sum_ns.wrapping_sub(base.sum_ns),
                self.min_ns,
                self.max_ns,
            ),
            // Filled from the critical log by the accumulator's `snapshot`.
            ..ArmMetrics::default()
        };
        arm.complaints = arm.complaints.min(arm.uploads());
        arm
    }
}
