//! The success-band review in guarded mode: "success in 95–97% for 30+
//! minutes", judged so that paths at 98% success (the band's mirror image
//! across its top) are reviewed in at most about 1% of stages while a path
//! in the band is reviewed as soon as the data allows.
//!
//! Four views, each a [`Check`]:
//!
//! - **Looks** (`review.success_rate_in_band[stage at 1h]`, `…[stage at 3h]`,
//!   [`review_looks`](crate::judge::EvaluationSettings::review_looks)): at each look
//!   the stage's async failures up to then are tested once against 98%
//!   success with an exact one-sided binomial test of the look's size. The
//!   most powerful test of that data (Neyman–Pearson), at a false-review
//!   probability that holds exactly, at any traffic.
//! - **The stage as a whole, any time**
//!   (`review.success_rate_in_band[sequential, stage]`): the likelihood ratio
//!   of the band's middle (4%) against 98% on the stage's totals, at a high
//!   bar (Ville's inequality bounds its false reviews by the bar's inverse).
//! - **Sliding windows** (`review.success_rate_in_band[sequential]`): windows
//!   of 30+ whole minutes ending now, for a path that enters the band late.
//!
//! Budget (the default plan, 12 async uploads a minute, 48-hour stages):
//! the 1-hour look spends 0.75% (0.65% by the exactness of the counts), the
//! 3-hour look 0.05%, the others a few hundredths each; the README's tables
//! give what is measured through the real controller.

use std::time::Duration;

use crate::judge::check::{Check, CheckId, CheckStatus};
use crate::judge::plan::{ReviewLook, RolloutPlan};
use crate::judge::sequential::{
    Minutes, Strongest, evidence_check, judged_and_failures, no_window_yet, strongest_window,
};
use crate::judge::stats::{Cusum, binomial_critical_count};
use crate::judge::text::pct;
use crate::metrics::{Arm, MetricsSnapshot};

/// The failure rate the success-band reviews are tuned to: the band's
/// middle, at least half a point above its top (so a band of no width
/// still has one), at most 99.9%.
fn band_middle_failures(low: f64, high: f64) -> f64 {
    (1.0 - (low + high) / 2.0)
        .max(1.0 - high + 0.005)
        .min(0.999)
}

/// The failure rate the stage views test the band against: the band's
/// middle mirrored across its top (2% for a 95–97% band), or half the top's
/// rate when that mirror would be 0 or less.
fn band_mirror_failures(low: f64, high: f64) -> f64 {
    let top = 1.0 - high;
    let mirror = 2.0 * top - band_middle_failures(low, high);
    if mirror > 0.0 { mirror } else { top / 2.0 }
}

/// Every guarded view of the success band, in a fixed order.
pub(crate) fn band_reviews(
    plan: &RolloutPlan,
    totals: &MetricsSnapshot,
    minutes: &Minutes<'_>,
    checks: &mut Vec<Check>,
) {
    checks.push(sliding_review(plan, minutes));
    checks.push(stage_review(plan, totals));
    for look in &plan.evaluation.review_looks {
        checks.push(look_review(plan, look, totals, minutes));
    }
}

/// Sliding windows of 30+ whole minutes (see
/// [`EvaluationSettings::review_evidence`](crate::judge::EvaluationSettings::review_evidence)).
fn sliding_review(plan: &RolloutPlan, minutes: &Minutes<'_>) -> Check {
    let t = &plan.triggers;
    let settings = &plan.evaluation;
    let [low, high] = t.review_success_band;
    let min = settings.sustain_min_uploads.max(1);
    let reference = 1.0 - high;
    let cusum = Cusum::with_reference(reference, band_middle_failures(low, high));
    let rule = format!(
        "success rate in {}–{} for {}+ (sequential over windows of whole minutes that long: CUSUM of {} vs {} failures, zero drift at {})",
        pct(low),
        pct(high),
        humantime::format_duration(t.review_success_sustained),
        pct(cusum.p1),
        pct(cusum.p0()),
        pct(reference),
    );
    let best = strongest_window(minutes, &cusum, t.review_success_sustained, min)
        .ok_or_else(|| no_window_yet(minutes, min));
    evidence_check(
        &CheckId::BandSequential,
        high >= 1.0,
        &rule,
        best,
        settings.review_evidence,
    )
}

/// The stage's totals as one window, on every tick (see
/// [`EvaluationSettings::review_stage_evidence`](crate::judge::EvaluationSettings::review_stage_evidence)).
fn stage_review(plan: &RolloutPlan, totals: &MetricsSnapshot) -> Check {
    let t = &plan.triggers;
    let settings = &plan.evaluation;
    let [low, high] = t.review_success_band;
    let sprt = Cusum::new(
        band_mirror_failures(low, high),
        band_middle_failures(low, high),
    );
    let rule = format!(
        "success rate in {}–{} over the stage ({}+; likelihood ratio of {} vs {} failures)",
        pct(low),
        pct(high),
        humantime::format_duration(t.review_success_sustained),
        pct(sprt.p1),
        pct(sprt.p0()),
    );
    let min = settings.sustain_min_uploads.max(1);
    let (n, failures) = judged_and_failures(totals.arm(Arm::Async));
    let span = totals.span();
    let best = if n < min || span < t.review_success_sustained {
        Err(format!(
            "the stage has {n} async uploads over {}; judged from {min} over {}",
            humantime::format_duration(Duration::from_secs(span.as_secs())),
            humantime::format_duration(t.review_success_sustained),
        ))
    } else {
        Ok(Strongest {
            llr: sprt.llr(failures, n).max(0.0),
            n,
            failures,
            span,
        })
    };
    evidence_check(
        &CheckId::BandStageSequential,
        high >= 1.0,
        &rule,
        best,
        settings.review_stage_evidence,
    )
}

/// One look at the stage as a whole (see
/// [`EvaluationSettings::review_looks`](crate::judge::EvaluationSettings::review_looks)).
/// `observed` is the stage's success rate at the look, `threshold` the
/// success rate at or below which the look reviews (for the uploads it saw).
fn look_review(
    plan: &RolloutPlan,
    look: &ReviewLook,
    totals: &MetricsSnapshot,
    minutes: &Minutes<'_>,
) -> Check {
    let t = &plan.triggers;
    let [low, high] = t.review_success_band;
    let mirror = band_mirror_failures(low, high);
    let at = humantime::format_duration(look.at);
    let id = CheckId::BandLook { at: look.at };
    let rule = format!(
        "success rate in {}–{}: the stage's first {at} as a whole (an exact binomial test against {} success, size {})",
        pct(low),
        pct(high),
        pct(1.0 - mirror),
        pct(look.size),
    );
    let min = plan.evaluation.sustain_min_uploads.max(1);
    let check = |status: CheckStatus, observed: Option<f64>, threshold: f64, n: u64, detail| {
        Check::new(&id, status, observed, threshold, n, detail)
    };
    if high >= 1.0 {
        return check(
            CheckStatus::Pass,
            None,
            high,
            0,
            format!("{rule}: off (the band's top is 100%)"),
        );
    }
    let age = minutes.end().map_or(Duration::ZERO, |e| minutes.age(e));
    if age < look.at {
        return check(
            CheckStatus::NotEnoughData,
            None,
            high,
            0,
            format!(
                "{rule}: the stage's history reaches {} into it; the look is at {at}",
                humantime::format_duration(Duration::from_secs(age.as_secs()))
            ),
        );
    }
    let Some(point) = minutes.first_at(look.at).filter(|p| {
        // The history must still hold the look's own minute (or the stage's
        // start, for a look at a stage with no earlier snapshot).
        minutes.age(p) < look.at + Duration::from_secs(60)
    }) else {
        return check(
            CheckStatus::NotEnoughData,
            None,
            high,
            0,
            format!("{rule}: the history no longer reaches back to the look"),
        );
    };
    let (n, failures) = minutes.stage_counts_at(totals, point);
    if n < min {
        return check(
            CheckStatus::NotEnoughData,
            None,
            high,
            n,
            format!("{rule}: {n} async uploads at the look, judged from {min}"),
        );
    }
    let critical = binomial_critical_count(n, mirror, look.size);
    let fired = failures >= critical;
    let success = 1.0 - failures as f64 / n as f64;
    let reviews_at = 1.0 - critical as f64 / n as f64;
    check(
        CheckStatus::fail_if(fired),
        Some(success),
        reviews_at,
        n,
        format!(
            "{rule}: {failures} failures in {n} async uploads at the look ({} success); reviews from {critical} failures ({} success or less)",
            pct(success),
            pct(reviews_at)
        ),
    )
}
