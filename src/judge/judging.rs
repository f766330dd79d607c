//! What one evaluation judges with: the plan, its confidence levels as z
//! scores and the carried sync baseline ([`Judging`]), and the comparison of
//! the async latency with its baseline that the latency criterion and the
//! latency reviews share.

use crate::judge::plan::{EvaluationMode, LatencyStatistic, RolloutPlan, Stage};
use crate::judge::stats::{Baseline, Interval, latency_ratio_bounds};
use crate::metrics::{Arm, ArmMetrics, LatencyHistogram, MetricsSnapshot};

/// The inputs of one evaluation that are not the metrics. The rule families
/// (`criteria`, `rollback`, `review`) are its methods.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Judging<'a> {
    /// The plan applied.
    pub(crate) plan: &'a RolloutPlan,
    /// The z score of the advance intervals.
    pub(crate) z: f64,
    /// The z score of the interval rate triggers' rollback intervals.
    pub(crate) z_rollback: f64,
    /// The carried sync baseline (see
    /// [`Evaluator::carry_sync_baseline`](crate::Evaluator::carry_sync_baseline)).
    pub(crate) carried: Option<&'a ArmMetrics>,
}

impl<'a> Judging<'a> {
    pub(crate) fn guarded(&self) -> bool {
        self.plan.evaluation.mode == EvaluationMode::Guarded
    }

    /// Whether `window` has something to compare its latency with: the
    /// stage's fixed baseline, or a sync arm ([`Self::sync_arm`]) with at
    /// least `min` judged uploads.
    pub(crate) fn has_latency_baseline(
        &self,
        spec: &Stage,
        window: &MetricsSnapshot,
        min: u64,
    ) -> bool {
        spec.criteria.baseline_latency.is_some() || self.sync_arm(window, min).0.judged() >= min
    }

    /// The sync arm to compare `window` with: its own when it has at least
    /// `min` judged uploads, else the carried baseline if set, else its own.
    /// The flag says whether it is the carried one.
    pub(crate) fn sync_arm<'w>(
        &self,
        window: &'w MetricsSnapshot,
        min: u64,
    ) -> (&'w ArmMetrics, bool)
    where
        'a: 'w,
    {
        let own = window.arm(Arm::Sync);
        match self.carried {
            Some(carried) if own.judged() < min && carried.judged() > 0 => (carried, true),
            _ => (own, false),
        }
    }

    /// The async latency of `window` against the baseline: the stage's
    /// fixed `baseline_latency`, else the sync arm ([`Self::sync_arm`]);
    /// with the confidence interval in guarded mode. `None` when either side
    /// has no latency.
    pub(crate) fn compare_latency(
        &self,
        spec: &Stage,
        window: &MetricsSnapshot,
        min_sync: u64,
    ) -> Option<LatencyComparison> {
        let statistic = spec.criteria.latency_statistic;
        let quantile = match statistic {
            LatencyStatistic::Mean => None,
            LatencyStatistic::Quantile(q) => Some(q),
        };
        let value = |h: &LatencyHistogram| match quantile {
            None => h.mean(),
            Some(q) => h.quantile(q),
        };
        let async_latency = &window.arm(Arm::Async).latency;
        let a = value(async_latency)?;
        let (baseline, b, against) = match spec.criteria.baseline_latency {
            Some(fixed) => (
                Baseline::Fixed(fixed),
                fixed,
                format!("the fixed {fixed:?}"),
            ),
            None => {
                let (sync, carried) = self.sync_arm(window, min_sync);
                let against = if carried {
                    format!("the carried sync baseline ({} uploads)", sync.judged())
                } else {
                    format!("sync ({} uploads)", sync.judged())
                };
                (
                    Baseline::Measured(&sync.latency),
                    value(&sync.latency)?,
                    against,
                )
            }
        };
        if b.is_zero() {
            return None;
        }
        let bounds = if self.guarded() {
            latency_ratio_bounds(
                async_latency,
                baseline,
                quantile,
                self.plan.evaluation.confidence,
            )
        } else {
            None
        };
        Some(LatencyComparison {
            ratio: a.as_secs_f64() / b.as_secs_f64(),
            bounds,
            against,
        })
    }
}

/// The async latency against a baseline, for one window.
pub(crate) struct LatencyComparison {
    /// Async statistic over the baseline's: within 2/255 of the exact ratio
    /// for a quantile, exact for the mean.
    pub(crate) ratio: f64,
    /// The confidence interval's low end and (when bounded) high end, in
    /// guarded mode.
    pub(crate) bounds: Option<(f64, Option<f64>)>,
    /// What it was compared with, for the detail.
    pub(crate) against: String,
}

impl LatencyComparison {
    pub(crate) fn interval(&self) -> Option<Interval> {
        let (low, high) = self.bounds?;
        Some(Interval { low, high: high? })
    }
}
