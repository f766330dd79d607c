//! The manual-review triggers (fail → [`Verdict::ManualReview`](crate::judge::check::Verdict::ManualReview)):
//! sustained conditions (the success rate in the review band, the latency
//! ratio above the review ratio) and the complaint rate (see the module docs
//! of [`evaluator`](crate::judge::evaluator)).

use crate::judge::band;
use crate::judge::check::{Check, CheckId, CheckStatus};
use crate::judge::judging::Judging;
use crate::judge::plan::Stage;
use crate::judge::sequential::Minutes;
use crate::judge::stats::mixture_likelihood_ratio;
use crate::judge::streak::{history_reach, sustained, sustained_check};
use crate::judge::text::pct;
use crate::metrics::{Arm, History, MetricsSnapshot};

/// Fewest async complaints that can show a complaint-rate increase in guarded mode.
const MIN_COMPLAINTS: u64 = 5;

impl Judging<'_> {
    /// Every manual-review trigger, in a fixed order.
    pub(crate) fn review_triggers(
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
            band::band_reviews(self.plan, totals, minutes, checks);
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
                &CheckId::BandSustained,
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
                &CheckId::LatencySustained,
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
                    (CheckStatus::fail_if(more), detail)
                } else {
                    (CheckStatus::fail_if(a > s), shown)
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
        Check::new(
            &CheckId::Complaints,
            status,
            rate(ca, na),
            threshold,
            na,
            detail,
        )
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
        let id = CheckId::LatencyReview { span };
        let not_enough = |detail: String, n: u64| {
            Check::new(
                &id,
                CheckStatus::NotEnoughData,
                None,
                t.review_latency_ratio,
                n,
                detail,
            )
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
        Check::new(
            &id,
            CheckStatus::fail_if(fired),
            Some(c.ratio),
            t.review_latency_ratio,
            n,
            format!(
                "{rule}: observed {} against {}, interval low end {}",
                pct(c.ratio),
                c.against,
                pct(low)
            ),
        )
        .with_interval(c.interval())
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
