//! Judging a stage: [`Evaluator`] turns metrics into an [`Evaluation`].
//!
//! The rules live by family: the stage criteria in `criteria.rs`, the
//! rollback triggers in `rollback.rs`, the review triggers in `review.rs`
//! (and `sequential.rs`, `band.rs` for guarded mode's sequential views), on
//! what one evaluation judges with (`judging.rs`).
//!
//! Every verdict carries the [`Check`]s behind it (name, observed value,
//! threshold, sample size, status), so a log line explains itself.
//!
//! # What is judged on which data
//!
//! - **Stage criteria** (fail → [`Verdict::Hold`]): the async path's success
//!   rate, error rate and upload count, and the async / sync latency ratio,
//!   all over the whole stage (`stage_totals`). A quantile ratio is within
//!   2/255 ≈ 0.78% of the exact ratio (each quantile within 1/256); a mean
//!   ratio is exact (see [`LatencyStatistic`]).
//! - **Immediate rollback triggers** (fail → [`Verdict::Rollback`]): any
//!   critical error (a `Critical` upload or one reported with
//!   [`MetricsAccumulator::record_critical`](crate::MetricsAccumulator::record_critical)),
//!   memory growth, and the success and error rates, checked over the whole
//!   stage, over the recent window
//!   ([`EvaluationSettings::recent_window`]) and, in guarded mode,
//!   sequentially over whole minutes of the stage's history, against the
//!   trigger ([`EvaluationSettings::rollback_evidence`]) and against the
//!   path's own clean history
//!   ([`EvaluationSettings::baseline_evidence`]), so a regression late in a
//!   long stage is judged on the uploads since it began (see
//!   `judge/sequential.rs`).
//! - **Manual-review triggers** (fail → [`Verdict::ManualReview`]): sustained
//!   conditions (success rate in the review band, latency ratio above the
//!   review ratio) and the complaint rate. In literal mode a condition has
//!   *held for D* when it was true on the window ending at every kept
//!   snapshot of the last D (windows of
//!   [`EvaluationSettings::sustain_window`], each with at least
//!   [`EvaluationSettings::sustain_min_uploads`] async uploads), the first of
//!   them at least D before the latest one. In guarded mode the last D is
//!   judged as a whole: the success band sequentially over windows of D or
//!   more ([`EvaluationSettings::review_evidence`]) and over the stage's
//!   totals ([`EvaluationSettings::review_stage_evidence`]), the latency
//!   ratio over the last D with its confidence interval. The success band
//!   is also judged on the stage as a whole, once at each of
//!   [`EvaluationSettings::review_looks`] (exact binomial tests) and at any
//!   time ([`EvaluationSettings::review_stage_evidence`]); see
//!   `judge/band.rs`.
//!
//! Where the judged data has too little sync traffic (the 100% stage has
//! none), the latency and complaint comparisons use the carried sync
//! baseline, an input of the evaluation ([`Evaluator::evaluate_with_sync_baseline`],
//! [`Evaluator::carry_sync_baseline`]).
//!
//! Severity: Rollback > ManualReview > Hold > Advance. Too little data is a
//! Hold whose check says how many uploads are missing, never a pass and never
//! a rollback.
//!
//! # Literal and guarded modes
//!
//! `literal` applies the plan's rules to observed rates. `guarded` (the
//! default) puts a Wilson score interval around every rate: it rolls back on
//! a rate only when the whole interval (at
//! [`EvaluationSettings::rollback_confidence`]) is on the bad side of the
//! trigger, and advances only when the observed rate
//! meets the target **and** the interval's (at
//! [`EvaluationSettings::confidence`]) bad end is within
//! [`EvaluationSettings::advance_tolerance`] of it. It adds the sequential
//! rollback checks, judges sustained conditions on whole windows, and puts a
//! confidence interval (order-statistic bounds per arm) around the latency
//! ratio: the criterion needs its upper end within
//! [`EvaluationSettings::latency_tolerance`] of the threshold. Critical
//! errors and memory growth stay immediate in both modes.
//!
//! Every statistic costs O(1), O(buckets) or O(kept snapshots), whatever the
//! counts.

use std::time::SystemTime;

use crate::clock::unix_ms;
use crate::judge::check::{Check, Evaluation, verdict_of};
use crate::judge::judging::Judging;
use crate::judge::plan::{PlanError, RolloutPlan};
use crate::judge::sequential::Minutes;
use crate::judge::stats::z_for_confidence;
use crate::judge::text::reason_of;
use crate::metrics::{Arm, ArmMetrics, History, MetricsSnapshot};

/// Applies a [`RolloutPlan`] to metrics.
#[derive(Clone, Debug)]
pub struct Evaluator {
    plan: RolloutPlan,
    z: f64,
    /// The z score of the interval rate triggers' rollback intervals.
    z_rollback: f64,
}

/// A stage index the plan does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stage {index} does not exist: the plan has {stages} stages (0..{stages})")]
pub struct UnknownStage {
    /// The index asked for.
    pub index: usize,
    /// How many stages the plan has.
    pub stages: usize,
}

impl Evaluator {
    /// An evaluator for `plan`.
    ///
    /// # Errors
    ///
    /// [`PlanError::Invalid`] when the plan fails [`RolloutPlan::validate`].
    pub fn new(plan: RolloutPlan) -> Result<Evaluator, PlanError> {
        plan.validate()?;
        let z = z_for_confidence(plan.evaluation.confidence);
        let z_rollback = z_for_confidence(plan.evaluation.rollback_confidence);
        Ok(Evaluator {
            plan,
            z,
            z_rollback,
        })
    }

    /// The **carried sync baseline** after a stage change: the sync arm of
    /// the stage being left (`leaving_totals`, everything recorded during
    /// it) when it has at least
    /// [`triggers.min_uploads`](crate::judge::RollbackTriggers::min_uploads) judged
    /// uploads, else the baseline `carried` so far, so the 100% stage
    /// compares with the last stage that had sync traffic.
    ///
    /// The carried baseline is the sync path's metrics (counts, complaints
    /// and latency histogram) to compare the async path with where the
    /// judged data has too little sync traffic of its own — the 100% stage,
    /// where there is none. Its holder (the controller, across runs) passes
    /// it to [`evaluate_with_sync_baseline`](Self::evaluate_with_sync_baseline).
    #[must_use]
    pub fn carry_sync_baseline(
        &self,
        carried: Option<ArmMetrics>,
        leaving_totals: &MetricsSnapshot,
    ) -> Option<ArmMetrics> {
        let sync = leaving_totals.arm(Arm::Sync);
        if sync.judged() >= self.plan.triggers.min_uploads.max(1) {
            Some(sync.clone())
        } else {
            carried
        }
    }

    /// The plan it applies.
    #[must_use]
    pub fn plan(&self) -> &RolloutPlan {
        &self.plan
    }

    /// Judges stage `stage` of the plan, without a carried sync baseline.
    ///
    /// `stage_totals` holds everything recorded since the stage started (for
    /// cumulative snapshots, `latest.since(&stage_start)`); `history` holds the
    /// stage's recent snapshots (for the recent window and sustained
    /// conditions); `now` stamps the evaluation.
    ///
    /// # Errors
    ///
    /// [`UnknownStage`] when the plan has no stage `stage`.
    pub fn evaluate(
        &self,
        stage: usize,
        stage_totals: &MetricsSnapshot,
        history: &History,
        now: SystemTime,
    ) -> Result<Evaluation, UnknownStage> {
        self.evaluate_with_sync_baseline(stage, stage_totals, history, None, now)
    }

    /// As [`evaluate`](Self::evaluate), comparing with `sync_baseline`, the
    /// carried sync baseline (see
    /// [`carry_sync_baseline`](Self::carry_sync_baseline)), where the judged
    /// data has too little sync traffic.
    ///
    /// It is used, in place of the judged window's own sync arm, when that
    /// arm has fewer judged uploads than the rule needs
    /// ([`triggers.min_uploads`](crate::judge::RollbackTriggers::min_uploads) for the
    /// stage's totals,
    /// [`sustain_min_uploads`](crate::judge::EvaluationSettings::sustain_min_uploads)
    /// for a review window), by the latency criterion, the latency review
    /// and the complaint review. A stage's fixed
    /// [`baseline_latency`](crate::judge::StageCriteria::baseline_latency) still
    /// wins for latency.
    ///
    /// # Errors
    ///
    /// [`UnknownStage`] when the plan has no stage `stage`.
    pub fn evaluate_with_sync_baseline(
        &self,
        stage: usize,
        stage_totals: &MetricsSnapshot,
        history: &History,
        sync_baseline: Option<&ArmMetrics>,
        now: SystemTime,
    ) -> Result<Evaluation, UnknownStage> {
        if stage >= self.plan.stages.len() {
            return Err(UnknownStage {
                index: stage,
                stages: self.plan.stages.len(),
            });
        }
        Ok(self.evaluate_in_range(stage, stage_totals, history, sync_baseline, now))
    }

    /// As [`evaluate_with_sync_baseline`](Self::evaluate_with_sync_baseline)
    /// for a stage index known to be in range; an index past the end is
    /// judged as the last stage.
    pub(crate) fn evaluate_in_range(
        &self,
        stage: usize,
        stage_totals: &MetricsSnapshot,
        history: &History,
        sync_baseline: Option<&ArmMetrics>,
        now: SystemTime,
    ) -> Evaluation {
        // A validated plan has at least one stage.
        let stage = stage.min(self.plan.stages.len().saturating_sub(1));
        let spec = &self.plan.stages[stage];
        let judging = Judging {
            plan: &self.plan,
            z: self.z,
            z_rollback: self.z_rollback,
            carried: sync_baseline,
        };
        let mut checks: Vec<Check> = Vec::with_capacity(16);
        judging.stage_criteria(spec, stage_totals, &mut checks);
        let minutes = Minutes::of(history, stage_totals);
        judging.rollback_triggers(spec, stage_totals, history, &minutes, &mut checks);
        judging.review_triggers(spec, stage_totals, history, &minutes, &mut checks);

        let verdict = verdict_of(&checks);
        let reason = reason_of(verdict, &checks);
        Evaluation {
            verdict,
            reason,
            stage,
            percent: spec.percent,
            at_unix_ms: unix_ms(now),
            checks,
        }
    }
}
