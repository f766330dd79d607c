//! The stage criteria (fail → [`Verdict::Hold`](crate::judge::check::Verdict::Hold)):
//! the async path's upload count, success rate and error rate, and the
//! async / sync latency ratio, all over the whole stage (see the module docs
//! of [`evaluator`](crate::judge::evaluator)).

use crate::judge::check::{Check, CheckId, CheckStatus};
use crate::judge::judging::{Judging, LatencyComparison};
use crate::judge::plan::Stage;
use crate::judge::stats::wilson;
use crate::judge::text::pct;
use crate::metrics::{Arm, MetricsSnapshot};

/// Inputs of [`Judging::rate_criterion`].
struct RateCriterion {
    id: CheckId,
    /// Count of the rate's numerator (successes, or errors).
    good: u64,
    n: u64,
    enough: bool,
    missing: u64,
    target: f64,
    higher_is_better: bool,
    tolerance: f64,
}

impl Judging<'_> {
    /// Every stage criterion, in a fixed order: uploads, success rate, error
    /// rate, latency ratio.
    pub(crate) fn stage_criteria(
        &self,
        spec: &Stage,
        totals: &MetricsSnapshot,
        checks: &mut Vec<Check>,
    ) {
        let c = &spec.criteria;
        let tolerance = self.plan.evaluation.advance_tolerance;
        let n = totals.judged(Arm::Async);
        let enough = n >= c.min_uploads;
        let missing = c.min_uploads.saturating_sub(n);

        checks.push(Check::new(
            &CheckId::Uploads,
            if enough {
                CheckStatus::Pass
            } else {
                CheckStatus::NotEnoughData
            },
            Some(n as f64),
            c.min_uploads as f64,
            n,
            if enough {
                format!("{n} async uploads ≥ {}", c.min_uploads)
            } else {
                format!(
                    "{n} async uploads of the {} needed: {missing} more",
                    c.min_uploads
                )
            },
        ));

        // Success rate: at least the target.
        let successes = totals.arm(Arm::Async).success;
        checks.push(self.rate_criterion(RateCriterion {
            id: CheckId::SuccessRate,
            good: successes,
            n,
            enough,
            missing,
            target: c.min_success_rate,
            higher_is_better: true,
            tolerance,
        }));
        // Error rate: at most the target.
        let errors = n - successes;
        checks.push(self.rate_criterion(RateCriterion {
            id: CheckId::ErrorRate,
            good: errors,
            n,
            enough,
            missing,
            target: c.max_error_rate,
            higher_is_better: false,
            tolerance,
        }));

        checks.push(self.latency_criterion(spec, totals));
    }

    /// A stage criterion on a rate (see the module docs of
    /// [`evaluator`](crate::judge::evaluator) for the modes).
    fn rate_criterion(&self, r: RateCriterion) -> Check {
        let observed = (r.n > 0).then(|| r.good as f64 / r.n as f64);
        let interval = wilson(r.good, r.n, self.z);
        let (cmp, meets) = match (observed, r.higher_is_better) {
            (Some(p), true) => ("≥", p >= r.target),
            (Some(p), false) => ("≤", p <= r.target),
            (None, _) => (if r.higher_is_better { "≥" } else { "≤" }, false),
        };
        let rule = format!("{} {cmp} {}", r.id, pct(r.target));
        let (status, detail) = if !r.enough {
            (
                CheckStatus::NotEnoughData,
                format!("{rule}: needs {} more async uploads", r.missing),
            )
        } else if !meets {
            (
                CheckStatus::Fail,
                format!("{rule}: observed {}", observed.map(pct).unwrap_or_default()),
            )
        } else if !self.guarded() {
            (
                CheckStatus::Pass,
                format!("{rule}: observed {}", observed.map(pct).unwrap_or_default()),
            )
        } else {
            // Guarded: the interval's bad end must be within the tolerance.
            let (bound, limit, within) = match (interval, r.higher_is_better) {
                (Some(i), true) => (
                    i.low,
                    r.target - r.tolerance,
                    i.low >= r.target - r.tolerance,
                ),
                (Some(i), false) => (
                    i.high,
                    r.target + r.tolerance,
                    i.high <= r.target + r.tolerance,
                ),
                (None, _) => (f64::NAN, f64::NAN, false),
            };
            let shown = format!(
                "{rule}: observed {}, {} bound {} (needs {} {})",
                observed.map(pct).unwrap_or_default(),
                if r.higher_is_better { "lower" } else { "upper" },
                pct(bound),
                cmp,
                pct(limit)
            );
            if within {
                (CheckStatus::Pass, shown)
            } else {
                (
                    CheckStatus::NotEnoughData,
                    format!("{shown}: interval still too wide"),
                )
            }
        };
        Check::new(&r.id, status, observed, r.target, r.n, detail)
            .with_interval(if self.guarded() { interval } else { None })
    }

    fn latency_criterion(&self, spec: &Stage, totals: &MetricsSnapshot) -> Check {
        let c = &spec.criteria;
        let min_sync = self.plan.triggers.min_uploads.max(1);
        let max_ratio = c.max_latency_ratio;
        let na = totals.judged(Arm::Async);
        let rule = match c.baseline_latency {
            None => format!(
                "{} latency async/sync ≤ {}",
                c.latency_statistic,
                pct(max_ratio)
            ),
            Some(b) => format!(
                "{} latency async/{b:?} baseline ≤ {}",
                c.latency_statistic,
                pct(max_ratio)
            ),
        };
        let comparison = self.compare_latency(spec, totals, min_sync);
        let limit = max_ratio + self.plan.evaluation.latency_tolerance;
        let (status, detail) = match &comparison {
            _ if na < c.min_uploads => (
                CheckStatus::NotEnoughData,
                format!("{rule}: needs {} more async uploads", c.min_uploads - na),
            ),
            None if totals.judged(Arm::Sync) == 0 && c.baseline_latency.is_none() => (
                CheckStatus::NotEnoughData,
                format!(
                    "{rule}: no sync uploads in this stage and no carried sync baseline to compare with"
                ),
            ),
            None => (
                CheckStatus::NotEnoughData,
                format!("{rule}: no latency recorded"),
            ),
            Some(cmp) if cmp.ratio > max_ratio => (
                CheckStatus::Fail,
                format!(
                    "{rule}: observed {} against {}",
                    pct(cmp.ratio),
                    cmp.against
                ),
            ),
            Some(cmp) if !self.guarded() => (
                CheckStatus::Pass,
                format!(
                    "{rule}: observed {} against {}",
                    pct(cmp.ratio),
                    cmp.against
                ),
            ),
            Some(cmp) => {
                let high = cmp.bounds.and_then(|b| b.1);
                let shown = format!(
                    "{rule}: observed {} against {}, upper bound {} (needs ≤ {})",
                    pct(cmp.ratio),
                    cmp.against,
                    high.map_or_else(|| "unbounded".to_owned(), pct),
                    pct(limit)
                );
                if high.is_some_and(|h| h <= limit) {
                    (CheckStatus::Pass, shown)
                } else {
                    (
                        CheckStatus::NotEnoughData,
                        format!("{shown}: interval still too wide"),
                    )
                }
            }
        };
        Check::new(
            &CheckId::LatencyRatio,
            status,
            comparison.as_ref().map(|c| c.ratio),
            max_ratio,
            na,
            detail,
        )
        .with_interval(comparison.as_ref().and_then(LatencyComparison::interval))
    }
}
