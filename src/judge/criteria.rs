//! Judging a stage: [`Evaluator`] turns metrics into an [`Evaluation`].
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
//! baseline ([`Evaluator::set_sync_baseline`]).
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

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::clock::unix_ms;
use crate::decide::percent::Percent;
use crate::judge::band;
use crate::judge::plan::{EvaluationMode, LatencyStatistic, PlanError, RolloutPlan, Stage};
use crate::judge::sequential::{self, Minutes};
use crate::judge::stats::{
    Baseline, Interval, latency_ratio_bounds, mixture_likelihood_ratio, wilson, z_for_confidence,
};
use crate::metrics::{Arm, ArmMetrics, History, MetricsSnapshot};

/// Fewest async complaints that can show a complaint-rate increase in guarded mode.
const MIN_COMPLAINTS: u64 = 5;

/// What to do with a stage, most severe first in [`Ord`] terms reversed:
/// `Rollback > ManualReview > Hold > Advance`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every criterion holds with enough data: the stage may move on.
    Advance,
    /// Keep the stage running: a criterion is not met yet or there is too little data.
    Hold,
    /// Stop advancing and ask a person (a sustained or soft signal).
    ManualReview,
    /// Roll back now.
    Rollback,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Advance => "advance",
            Verdict::Hold => "hold",
            Verdict::ManualReview => "manual review",
            Verdict::Rollback => "rollback",
        })
    }
}

/// What a failing check leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// A stage criterion: failing (or lacking data) holds the stage.
    Criterion,
    /// A manual-review trigger.
    Review,
    /// An immediate rollback trigger.
    Rollback,
}

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// The check holds: a criterion is met, or a trigger did not fire.
    Pass,
    /// A criterion is not met, or a trigger fired.
    Fail,
    /// Too little data to say; for a criterion this holds the stage.
    NotEnoughData,
}

impl fmt::Display for CheckStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Fail => "FAIL",
            CheckStatus::NotEnoughData => "not enough data",
        })
    }
}

/// One rule applied to one window of data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked, e.g. `success_rate` or `rollback.error_rate[last 30m]`.
    pub name: String,
    /// What a failure leads to.
    pub kind: CheckKind,
    /// Pass, fail, or not enough data.
    pub status: CheckStatus,
    /// The observed value (a rate, ratio, count or growth; for a
    /// `[sequential]` check the natural log of its likelihood ratio; for a
    /// literal sustained check the minutes it has held), when there is one.
    pub observed: Option<f64>,
    /// The threshold it was compared with (in the same unit as `observed`).
    pub threshold: f64,
    /// The confidence interval behind a guarded decision on a rate or a
    /// latency ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    /// How many async uploads the observation rests on.
    pub sample_size: u64,
    /// A sentence for people: the rule and, when not passing, why.
    pub detail: String,
}

/// A verdict with everything behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The most severe outcome of the checks.
    pub verdict: Verdict,
    /// One line: the checks that decided the verdict.
    pub reason: String,
    /// Index of the stage in the plan.
    pub stage: usize,
    /// The stage's percent.
    pub percent: Percent,
    /// When it was evaluated, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Every check, in a fixed order.
    pub checks: Vec<Check>,
}

impl Evaluation {
    /// The checks that did not pass.
    pub fn failing(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status != CheckStatus::Pass)
    }

    /// The check called `name`, if present.
    #[must_use]
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Applies a [`RolloutPlan`] to metrics.
#[derive(Clone, Debug)]
pub struct Evaluator {
    plan: RolloutPlan,
    z: f64,
    /// The z score of the interval rate triggers' rollback intervals.
    z_rollback: f64,
    sync_baseline: Option<ArmMetrics>,
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
            sync_baseline: None,
        })
    }

    /// The same evaluator with `baseline` as its carried sync baseline (see
    /// [`set_sync_baseline`](Self::set_sync_baseline)).
    #[must_use]
    pub fn with_sync_baseline(mut self, baseline: Option<ArmMetrics>) -> Evaluator {
        self.sync_baseline = baseline;
        self
    }

    /// Sets the **carried sync baseline**: the sync path's metrics (counts,
    /// complaints and latency histogram) from the last stage that had sync
    /// traffic, to compare the async path with where the judged data has too
    /// little sync traffic of its own — the 100% stage, where there is none.
    ///
    /// It is used, in place of the judged window's own sync arm, when that
    /// arm has fewer judged uploads than the rule needs
    /// ([`triggers.min_uploads`](crate::judge::RollbackTriggers::min_uploads) for the
    /// stage's totals,
    /// [`sustain_min_uploads`](crate::judge::EvaluationSettings::sustain_min_uploads)
    /// for a review window), by the latency criterion, the latency review
    /// and the complaint review. A stage's fixed
    /// [`baseline_latency`](crate::judge::StageCriteria::baseline_latency) still
    /// wins for latency. `None` forgets it.
    pub fn set_sync_baseline(&mut self, baseline: Option<ArmMetrics>) {
        self.sync_baseline = baseline;
    }

    /// The carried sync baseline, if one is set.
    #[must_use]
    pub fn sync_baseline(&self) -> Option<&ArmMetrics> {
        self.sync_baseline.as_ref()
    }

    /// At a stage change: keeps the sync arm of the stage being left
    /// (`leaving_totals`, everything recorded during it) as the carried
    /// baseline when it has at least
    /// [`triggers.min_uploads`](crate::judge::RollbackTriggers::min_uploads) judged
    /// uploads, and says whether it did. Otherwise the baseline carried so
    /// far stays, so the 100% stage compares with the last stage that had
    /// sync traffic.
    pub fn carry_sync_baseline(&mut self, leaving_totals: &MetricsSnapshot) -> bool {
        let sync = leaving_totals.arm(Arm::Sync);
        let enough = sync.judged() >= self.plan.triggers.min_uploads.max(1);
        if enough {
            self.sync_baseline = Some(sync.clone());
        }
        enough
    }

    /// The plan it applies.
    #[must_use]
    pub fn plan(&self) -> &RolloutPlan {
        &self.plan
    }

    /// Judges stage `stage` of the plan.
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
        if stage >= self.plan.stages.len() {
            return Err(UnknownStage {
                index: stage,
                stages: self.plan.stages.len(),
            });
        }
        Ok(self.evaluate_in_range(stage, stage_totals, history, now))
    }

    /// As [`evaluate`](Self::evaluate) for a stage index known to be in
    /// range; an index past the end is judged as the last stage.
    pub(crate) fn evaluate_in_range(
        &self,
        stage: usize,
        stage_totals: &MetricsSnapshot,
        history: &History,
        now: SystemTime,
    ) -> Evaluation {
        // A validated plan has at least one stage.
        let stage = stage.min(self.plan.stages.len().saturating_sub(1));
        let spec = &self.plan.stages[stage];
        let mut checks = Vec::with_capacity(16);
        self.stage_criteria(spec, stage_totals, &mut checks);
        let minutes = Minutes::of(history, stage_totals);
        self.rollback_triggers(spec, stage_totals, history, &minutes, &mut checks);
        self.review_triggers(spec, stage_totals, history, &minutes, &mut checks);

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

    fn guarded(&self) -> bool {
        self.plan.evaluation.mode == EvaluationMode::Guarded
    }

    fn stage_criteria(&self, spec: &Stage, totals: &MetricsSnapshot, checks: &mut Vec<Check>) {
        let c = &spec.criteria;
        let tolerance = self.plan.evaluation.advance_tolerance;
        let n = totals.judged(Arm::Async);
        let enough = n >= c.min_uploads;
        let missing = c.min_uploads.saturating_sub(n);

        checks.push(Check {
            name: "uploads".into(),
            kind: CheckKind::Criterion,
            status: if enough {
                CheckStatus::Pass
            } else {
                CheckStatus::NotEnoughData
            },
            observed: Some(n as f64),
            threshold: c.min_uploads as f64,
            interval: None,
            sample_size: n,
            detail: if enough {
                format!("{n} async uploads ≥ {}", c.min_uploads)
            } else {
                format!(
                    "{n} async uploads of the {} needed: {missing} more",
                    c.min_uploads
                )
            },
        });

        // Success rate: at least the target.
        let successes = totals.arm(Arm::Async).success;
        checks.push(self.rate_criterion(RateCriterion {
            name: "success_rate",
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
            name: "error_rate",
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

    /// A stage criterion on a rate (see the module docs for the modes).
    fn rate_criterion(&self, r: RateCriterion) -> Check {
        let observed = (r.n > 0).then(|| r.good as f64 / r.n as f64);
        let interval = wilson(r.good, r.n, self.z);
        let (cmp, meets) = match (observed, r.higher_is_better) {
            (Some(p), true) => ("≥", p >= r.target),
            (Some(p), false) => ("≤", p <= r.target),
            (None, _) => (if r.higher_is_better { "≥" } else { "≤" }, false),
        };
        let rule = format!("{} {cmp} {}", r.name, pct(r.target));
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
        Check {
            name: r.name.into(),
            kind: CheckKind::Criterion,
            status,
            observed,
            threshold: r.target,
            interval: if self.guarded() { interval } else { None },
            sample_size: r.n,
            detail,
        }
    }

    fn rollback_triggers(
        &self,
        spec: &Stage,
        totals: &MetricsSnapshot,
        history: &History,
        minutes: &Minutes<'_>,
        checks: &mut Vec<Check>,
    ) {
        let t = &self.plan.triggers;

        // Critical uploads, and critical errors that were not an upload
        // (`MetricsAccumulator::record_critical`), with the latest reason.
        let arm = totals.arm(Arm::Async);
        let (uploads, events) = (arm.critical, arm.critical_events);
        let critical = uploads.saturating_add(events);
        let mut what = format!("critical errors on the async path = {critical}");
        if events > 0 {
            what.push_str(&format!(" ({uploads} uploads, {events} reported"));
            if let Some(reason) = arm.critical_reasons.last() {
                what.push_str(&format!(", latest: {reason:?}"));
            }
            what.push(')');
        }
        checks.push(Check {
            name: "rollback.critical_errors".into(),
            kind: CheckKind::Rollback,
            status: if t.rollback_on_critical && critical > 0 {
                CheckStatus::Fail
            } else {
                CheckStatus::Pass
            },
            observed: Some(critical as f64),
            threshold: 0.0,
            interval: None,
            sample_size: totals.judged(Arm::Async),
            detail: if t.rollback_on_critical {
                format!("{what} (any rolls back)")
            } else {
                format!("{what} (trigger off)")
            },
        });

        let growth = totals.memory_peak_growth();
        let limit = t.max_memory_growth;
        checks.push(Check {
            name: "rollback.memory_growth".into(),
            kind: CheckKind::Rollback,
            status: match growth {
                None => CheckStatus::NotEnoughData,
                Some(g) if g > limit => CheckStatus::Fail,
                Some(_) => CheckStatus::Pass,
            },
            observed: growth,
            threshold: limit,
            interval: None,
            sample_size: totals.judged(Arm::Async),
            detail: match growth {
                None => "memory growth: no memory samples recorded".into(),
                Some(g) => format!(
                    "peak memory growth {} (rolls back above {})",
                    pct(g),
                    pct(limit)
                ),
            },
        });

        let n = totals.judged(Arm::Async);
        let successes = totals.arm(Arm::Async).success;
        checks.push(self.rate_trigger(
            "stage",
            "rollback.success_rate",
            successes,
            n,
            t.min_success_rate,
            true,
        ));
        checks.push(self.rate_trigger(
            "stage",
            "rollback.error_rate",
            n - successes,
            n,
            t.max_error_rate,
            false,
        ));

        let recent_window = self.plan.evaluation.recent_window;
        let recent_label = format!("last {}", humantime::format_duration(recent_window));
        match history.window(recent_window) {
            Some(window) => {
                let n = window.judged(Arm::Async);
                let successes = window.arm(Arm::Async).success;
                checks.push(self.rate_trigger(
                    &recent_label,
                    "rollback.success_rate",
                    successes,
                    n,
                    t.min_success_rate,
                    true,
                ));
                checks.push(self.rate_trigger(
                    &recent_label,
                    "rollback.error_rate",
                    n - successes,
                    n,
                    t.max_error_rate,
                    false,
                ));
            }
            None => {
                // Said, not silently left out: early in a stage the stage
                // view covers the same uploads.
                let reach = history_reach(history);
                for (name, rule) in [
                    (
                        "rollback.success_rate",
                        format!("success_rate < {} rolls back", pct(t.min_success_rate)),
                    ),
                    (
                        "rollback.error_rate",
                        format!("error_rate > {} rolls back", pct(t.max_error_rate)),
                    ),
                ] {
                    checks.push(Check {
                        name: format!("{name}[{recent_label}]"),
                        kind: CheckKind::Rollback,
                        status: CheckStatus::NotEnoughData,
                        observed: None,
                        threshold: if name.ends_with("success_rate") {
                            t.min_success_rate
                        } else {
                            t.max_error_rate
                        },
                        interval: None,
                        sample_size: 0,
                        detail: format!(
                            "{rule}: the history reaches back {} of the {}; the stage view covers it",
                            humantime::format_duration(reach),
                            humantime::format_duration(recent_window)
                        ),
                    });
                }
            }
        }

        if self.guarded() {
            for (name, trigger) in [
                ("rollback.success_rate", 1.0 - t.min_success_rate),
                ("rollback.error_rate", t.max_error_rate),
            ] {
                checks.push(sequential::absolute_check(
                    &self.plan, name, trigger, minutes,
                ));
                checks.push(sequential::baseline_check(
                    &self.plan, spec, name, trigger, totals, minutes,
                ));
            }
        }
    }

    /// An immediate trigger on a rate. `fires_below`: the trigger is "rate
    /// below threshold" (else "rate above threshold").
    fn rate_trigger(
        &self,
        window: &str,
        name: &str,
        count: u64,
        n: u64,
        threshold: f64,
        fires_below: bool,
    ) -> Check {
        let min = self.plan.triggers.min_uploads;
        let observed = (n > 0).then(|| count as f64 / n as f64);
        let interval = wilson(count, n, self.z_rollback);
        let rule = format!(
            "{} {} {} rolls back",
            name.trim_start_matches("rollback."),
            if fires_below { "<" } else { ">" },
            pct(threshold)
        );
        let (status, detail) = match (observed, interval) {
            (Some(p), Some(i)) if n >= min => {
                let fired = match (self.guarded(), fires_below) {
                    (false, true) => p < threshold,
                    (false, false) => p > threshold,
                    // Guarded: the whole interval must be on the bad side.
                    (true, true) => i.high < threshold,
                    (true, false) => i.low > threshold,
                };
                let mut detail = format!("{rule}: observed {} over {n} async uploads", pct(p));
                if self.guarded() {
                    detail.push_str(&format!(", interval [{}, {}]", pct(i.low), pct(i.high)));
                }
                (
                    if fired {
                        CheckStatus::Fail
                    } else {
                        CheckStatus::Pass
                    },
                    detail,
                )
            }
            _ => (
                CheckStatus::NotEnoughData,
                format!("{rule}: {n} async uploads, fires from {min}"),
            ),
        };
        Check {
            name: format!("{name}[{window}]"),
            kind: CheckKind::Rollback,
            status,
            observed,
            threshold,
            interval: if self.guarded() { interval } else { None },
            sample_size: n,
            detail,
        }
    }

    fn review_triggers(
        &self,
        spec: &Stage,
        totals: &MetricsSnapshot,
        history: &History,
        minutes: &Minutes<'_>,
        checks: &mut Vec<Check>,
    ) {
        let t = &self.plan.triggers;
        let settings = &self.plan.evaluation;
        let [low, high] = t.review_success_band;

        // Success rate in the band, sustained.
        if self.guarded() {
            band::band_reviews(&self.plan, totals, minutes, checks);
        } else {
            let in_band = |w: &MetricsSnapshot| -> Option<bool> {
                let n = w.judged(Arm::Async);
                if n < settings.sustain_min_uploads.max(1) {
                    return None;
                }
                let p = w.arm(Arm::Async).success as f64 / n as f64;
                Some((low..=high).contains(&p))
            };
            let streak = sustained(history, settings.sustain_window, in_band);
            checks.push(sustained_check(
                "review.success_rate_in_band",
                &format!("success rate in {}–{}", pct(low), pct(high)),
                streak,
                t.review_success_sustained,
                totals.judged(Arm::Async),
            ));
        }

        // Latency ratio above the review ratio, sustained.
        if self.guarded() {
            checks.push(self.latency_review(spec, history));
        } else {
            let min = settings.sustain_min_uploads.max(1);
            let slow = |w: &MetricsSnapshot| -> Option<bool> {
                if w.judged(Arm::Async) < min || !self.has_latency_baseline(spec, w, min) {
                    return None;
                }
                self.compare_latency(spec, w, min)
                    .map(|c| c.ratio > t.review_latency_ratio)
            };
            let streak = sustained(history, settings.sustain_window, slow);
            checks.push(sustained_check(
                "review.latency_ratio",
                &format!(
                    "{} latency ratio > {}",
                    spec.criteria.latency_statistic,
                    pct(t.review_latency_ratio)
                ),
                streak,
                t.review_latency_sustained,
                totals.judged(Arm::Async),
            ));
        }

        checks.push(self.complaint_review(totals));
    }

    /// Complaints per upload, async against sync (the stage's own, or the
    /// carried baseline where the stage has too little sync traffic).
    fn complaint_review(&self, totals: &MetricsSnapshot) -> Check {
        let t = &self.plan.triggers;
        let guarded = self.guarded();
        let (ca, na) = (totals.complaints(Arm::Async), totals.uploads(Arm::Async));
        let (sync, carried) = self.sync_arm(totals, t.min_uploads.max(1));
        let (cs, ns) = (sync.complaints, sync.uploads());
        let against = if carried {
            "the carried sync baseline"
        } else {
            "sync"
        };
        let rate = |c: u64, n: u64| (n > 0).then(|| c as f64 / n as f64);
        let alpha = self.plan.evaluation.complaint_significance;
        // Literal mode compares the rates; guarded mode reviews from the
        // async complaint rate at which the evidence reaches its bar, and
        // says which rate that is (the sync rate alone is not the bar).
        let mut threshold = rate(cs, ns).unwrap_or(0.0);
        let (status, detail) = match (rate(ca, na), rate(cs, ns)) {
            _ if !t.review_on_more_complaints => {
                (CheckStatus::Pass, "complaint trigger off".to_owned())
            }
            (Some(a), Some(s)) if na >= t.min_uploads => {
                let shown = format!(
                    "complaints per upload: async {ca}/{na} ({}) vs {against} {cs}/{ns} ({})",
                    pct(a),
                    pct(s)
                );
                if guarded {
                    // Of all ca + cs complaints, each lands on the async path
                    // with its share of the uploads if the rates are equal.
                    // An always-valid likelihood ratio, safe to check on
                    // every tick (see `mixture_likelihood_ratio`).
                    let share = na as f64 / (na as f64 + ns as f64);
                    let evidence = mixture_likelihood_ratio(ca.saturating_add(cs), share, ca);
                    let more = ca >= MIN_COMPLAINTS && evidence >= 1.0 / alpha;
                    let fires_from = complaints_that_fire(cs, share, alpha, na);
                    threshold = fires_from as f64 / na as f64;
                    let verdict = if more {
                        "more than sync, beyond chance"
                    } else if a > s {
                        "above sync, but within what chance gives equal rates"
                    } else {
                        "not above sync"
                    };
                    let detail = format!(
                        "{shown}: {verdict}; evidence ratio {evidence:.1}, reviews at {:.0} with ≥ {MIN_COMPLAINTS} async complaints, i.e. from {fires_from} async complaints ({}) at these counts",
                        1.0 / alpha,
                        pct(threshold),
                    );
                    (
                        if more {
                            CheckStatus::Fail
                        } else {
                            CheckStatus::Pass
                        },
                        detail,
                    )
                } else {
                    (
                        if a > s {
                            CheckStatus::Fail
                        } else {
                            CheckStatus::Pass
                        },
                        shown,
                    )
                }
            }
            _ => (
                CheckStatus::NotEnoughData,
                format!(
                    "complaints per upload: needs {} uploads on the async path and some on the sync path (or a carried sync baseline)",
                    t.min_uploads
                ),
            ),
        };
        Check {
            name: "review.complaints".into(),
            kind: CheckKind::Review,
            status,
            observed: rate(ca, na),
            threshold,
            interval: None,
            sample_size: na,
            detail,
        }
    }

    /// `guarded` latency review: the last `review_latency_sustained` as a
    /// whole. Fires when its ratio is above the review ratio and the low end
    /// of its interval is above the stage's `max_latency_ratio`.
    fn latency_review(&self, spec: &Stage, history: &History) -> Check {
        let t = &self.plan.triggers;
        let min = self.plan.evaluation.sustain_min_uploads.max(1);
        let span = t.review_latency_sustained;
        let statistic = spec.criteria.latency_statistic;
        let accepted = spec.criteria.max_latency_ratio;
        let rule = format!(
            "{statistic} latency ratio > {} over the last {} (and its interval's low end > {}, what the stage accepts)",
            pct(t.review_latency_ratio),
            humantime::format_duration(span),
            pct(accepted)
        );
        let name = format!(
            "review.latency_ratio[last {}]",
            humantime::format_duration(span)
        );
        let not_enough = |detail: String, n: u64| Check {
            name: name.clone(),
            kind: CheckKind::Review,
            status: CheckStatus::NotEnoughData,
            observed: None,
            threshold: t.review_latency_ratio,
            interval: None,
            sample_size: n,
            detail,
        };
        let Some(window) = history.window(span) else {
            return not_enough(
                format!(
                    "{rule}: the history reaches back {} of the {}",
                    humantime::format_duration(history_reach(history)),
                    humantime::format_duration(span)
                ),
                0,
            );
        };
        let n = window.judged(Arm::Async);
        let min_async = if self.guarded() {
            min.max(self.plan.evaluation.review_latency_min_uploads)
        } else {
            min
        };
        if n < min_async {
            return not_enough(format!("{rule}: {n} async uploads, needs {min_async}"), n);
        }
        if !self.has_latency_baseline(spec, &window, min) {
            return not_enough(
                format!(
                    "{rule}: {} sync uploads in the window, needs {min} (or a carried sync baseline)",
                    window.judged(Arm::Sync)
                ),
                n,
            );
        }
        let Some(c) = self.compare_latency(spec, &window, min) else {
            return not_enough(
                format!("{rule}: nothing to compare with (no sync uploads, no carried baseline)"),
                n,
            );
        };
        let low = c.bounds.map_or(0.0, |b| b.0);
        let fired = c.ratio > t.review_latency_ratio && low > accepted;
        Check {
            name,
            kind: CheckKind::Review,
            status: if fired {
                CheckStatus::Fail
            } else {
                CheckStatus::Pass
            },
            observed: Some(c.ratio),
            threshold: t.review_latency_ratio,
            interval: c.interval(),
            sample_size: n,
            detail: format!(
                "{rule}: observed {} against {}, interval low end {}",
                pct(c.ratio),
                c.against,
                pct(low)
            ),
        }
    }

    /// Whether `window` has something to compare its latency with: the
    /// stage's fixed baseline, or a sync arm ([`Self::sync_arm`]) with at
    /// least `min` judged uploads.
    fn has_latency_baseline(&self, spec: &Stage, window: &MetricsSnapshot, min: u64) -> bool {
        spec.criteria.baseline_latency.is_some() || self.sync_arm(window, min).0.judged() >= min
    }

    /// The sync arm to compare `window` with: its own when it has at least
    /// `min` judged uploads, else the carried baseline if set, else its own.
    /// The flag says whether it is the carried one.
    fn sync_arm<'a>(&'a self, window: &'a MetricsSnapshot, min: u64) -> (&'a ArmMetrics, bool) {
        let own = window.arm(Arm::Sync);
        match &self.sync_baseline {
            Some(carried) if own.judged() < min && carried.judged() > 0 => (carried, true),
            _ => (own, false),
        }
    }

    /// The async latency of `window` against the baseline: the stage's
    /// fixed `baseline_latency`, else the sync arm ([`Self::sync_arm`]);
    /// with the confidence interval in guarded mode. `None` when either side
    /// has no latency.
    fn compare_latency(
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
        let value = |h: &crate::metrics::LatencyHistogram| match quantile {
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
        Check {
            name: "latency_ratio".into(),
            kind: CheckKind::Criterion,
            status,
            observed: comparison.as_ref().map(|c| c.ratio),
            threshold: max_ratio,
            interval: comparison.as_ref().and_then(LatencyComparison::interval),
            sample_size: na,
            detail,
        }
    }
}

/// The async latency against a baseline, for one window.
struct LatencyComparison {
    /// Async statistic over the baseline's: within 2/255 of the exact ratio
    /// for a quantile, exact for the mean.
    ratio: f64,
    /// The confidence interval's low end and (when bounded) high end, in
    /// guarded mode.
    bounds: Option<(f64, Option<f64>)>,
    /// What it was compared with, for the detail.
    against: String,
}

impl LatencyComparison {
    fn interval(&self) -> Option<Interval> {
        let (low, high) = self.bounds?;
        Some(Interval { low, high: high? })
    }
}

/// How far back `history` reaches (latest − oldest).
fn history_reach(history: &History) -> Duration {
    match (history.oldest(), history.latest()) {
        (Some(o), Some(l)) => Duration::from_millis(l.at_unix_ms.saturating_sub(o.at_unix_ms)),
        _ => Duration::ZERO,
    }
}

/// The fewest async complaints (at least [`MIN_COMPLAINTS`]) at which the
/// guarded complaint review fires, given `sync` complaints and the async
/// path's `share` of the uploads: the evidence grows with the async count,
/// so a binary search over `0..=max` (O(log max) O(1) evaluations). `max + 1`
/// when not even `max` would fire.
fn complaints_that_fire(sync: u64, share: f64, alpha: f64, max: u64) -> u64 {
    let fires = |x: u64| {
        x >= MIN_COMPLAINTS
            && mixture_likelihood_ratio(x.saturating_add(sync), share, x) >= 1.0 / alpha
    };
    let max = max.max(MIN_COMPLAINTS);
    if !fires(max) {
        return max.saturating_add(1);
    }
    let (mut low, mut high) = (0u64, max);
    while low < high {
        let mid = low + (high - low) / 2;
        if fires(mid) {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    low
}

/// Inputs of [`Evaluator::rate_criterion`].
struct RateCriterion {
    name: &'static str,
    /// Count of the rate's numerator (successes, or errors).
    good: u64,
    n: u64,
    enough: bool,
    missing: u64,
    target: f64,
    higher_is_better: bool,
    tolerance: f64,
}

/// How long a condition has held, walking back over the kept snapshots.
struct Streak {
    /// Time from the first evaluation point of the current streak to the latest.
    held_for: Option<Duration>,
    /// The condition at the latest point (`None`: too little data there).
    now: Option<bool>,
}

/// Evaluates `condition` on the window of length `window` ending at each kept
/// snapshot, newest first, and measures the current streak of `true`.
fn sustained(
    history: &History,
    window: Duration,
    condition: impl Fn(&MetricsSnapshot) -> Option<bool>,
) -> Streak {
    let snapshots: Vec<&MetricsSnapshot> = history.iter().collect();
    let Some(latest) = snapshots.last() else {
        return Streak {
            held_for: None,
            now: None,
        };
    };
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    let mut first_true: Option<u64> = None;
    let mut now = None;
    for (k, end) in snapshots.iter().enumerate().rev() {
        // The window's start: the newest snapshot at or before end - window,
        // or the oldest kept one when history is shorter than the window.
        let start_ms = end.at_unix_ms.saturating_sub(window_ms);
        let start = snapshots[..k]
            .iter()
            .rev()
            .find(|s| s.at_unix_ms <= start_ms)
            .or_else(|| snapshots.first())
            .copied();
        let Some(start) = start.filter(|s| s.at_unix_ms < end.at_unix_ms) else {
            break;
        };
        let held = condition(&end.since(start));
        if k == snapshots.len() - 1 {
            now = held;
        }
        if held != Some(true) {
            break;
        }
        first_true = Some(end.at_unix_ms);
    }
    Streak {
        held_for: first_true.map(|t| Duration::from_millis(latest.at_unix_ms.saturating_sub(t))),
        now,
    }
}

fn sustained_check(
    name: &str,
    condition: &str,
    streak: Streak,
    needed: Duration,
    sample_size: u64,
) -> Check {
    let held = streak.held_for;
    let fired = held.is_some_and(|h| h >= needed);
    let needed_text = humantime::format_duration(needed);
    let detail = match (streak.now, held) {
        (_, Some(h)) => format!(
            "{condition} has held for {} (review at {needed_text})",
            humantime::format_duration(Duration::from_secs(h.as_secs()))
        ),
        (Some(false), None) => format!("{condition}: not now"),
        (_, None) => format!("{condition}: too little recent data to tell"),
    };
    Check {
        name: name.into(),
        kind: CheckKind::Review,
        status: if fired {
            CheckStatus::Fail
        } else {
            CheckStatus::Pass
        },
        observed: held.map(|h| h.as_secs_f64() / 60.0),
        threshold: needed.as_secs_f64() / 60.0,
        interval: None,
        sample_size,
        detail,
    }
}

fn verdict_of(checks: &[Check]) -> Verdict {
    checks
        .iter()
        .map(|c| match (c.kind, c.status) {
            (_, CheckStatus::Pass) => Verdict::Advance,
            (CheckKind::Criterion, _) => Verdict::Hold,
            (CheckKind::Review, CheckStatus::Fail) => Verdict::ManualReview,
            (CheckKind::Rollback, CheckStatus::Fail) => Verdict::Rollback,
            // Missing data never fires a trigger.
            (CheckKind::Review | CheckKind::Rollback, CheckStatus::NotEnoughData) => {
                Verdict::Advance
            }
        })
        .max()
        .unwrap_or(Verdict::Hold)
}

fn reason_of(verdict: Verdict, checks: &[Check]) -> String {
    // Too few uploads makes every rate criterion lack data too: say it once.
    let too_few = checks
        .iter()
        .any(|c| c.name == "uploads" && c.status == CheckStatus::NotEnoughData);
    let decisive: Vec<&str> = checks
        .iter()
        .filter(|c| match verdict {
            Verdict::Rollback => c.kind == CheckKind::Rollback && c.status == CheckStatus::Fail,
            Verdict::ManualReview => c.kind == CheckKind::Review && c.status == CheckStatus::Fail,
            Verdict::Hold => {
                c.kind == CheckKind::Criterion
                    && (c.status == CheckStatus::Fail
                        || (c.status == CheckStatus::NotEnoughData
                            && (!too_few || c.name == "uploads")))
            }
            Verdict::Advance => false,
        })
        .map(|c| c.detail.as_str())
        .collect();
    // Two checks can say the same thing (the success and error triggers'
    // sequential checks, when 1 − min_success_rate = max_error_rate): say it
    // once.
    let mut said: Vec<&str> = Vec::with_capacity(decisive.len());
    for detail in decisive {
        if !said.contains(&detail) {
            said.push(detail);
        }
    }
    let decisive = said;
    if decisive.is_empty() {
        let criteria = checks
            .iter()
            .filter(|c| c.kind == CheckKind::Criterion)
            .count();
        format!("all {criteria} stage criteria met, no trigger fired")
    } else {
        decisive.join("; ")
    }
}

/// A fraction as a percentage with enough digits to see thresholds: `0.99` → `99%`.
pub(crate) fn pct(x: f64) -> String {
    let p = x * 100.0;
    let text = format!("{p:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}
