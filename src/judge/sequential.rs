//! Sequential evidence over whole minutes of a stage's history: the
//! rollback checks that judge a sudden regression on the uploads since it
//! began, and the pieces the band review shares with them.
//!
//! # Two rollback rules per rate trigger
//!
//! For a rate trigger whose failure rate `f` rolls back (95% success or 5%
//! errors: `f` = 5%), both rules weigh each window's async uploads by the
//! log-likelihood ratio of the failure rate being `2f` (10%) against a rate
//! `p₀`, and both look at every window from a whole minute of the history to
//! the latest whole minute (Page's CUSUM at one-minute resolution):
//!
//! - **Absolute** (`rollback.*[sequential]`): `p₀` = 1.97%, the rate at which
//!   the drift is zero exactly at `f`. Nothing about the path is assumed; it
//!   judges from a stage's first minutes, and it is what protects a path at
//!   98% success, whose rate `p₀` is. It fires at
//!   [`rollback_evidence`](crate::judge::EvaluationSettings::rollback_evidence).
//! - **Baseline-aware** (`rollback.*[sequential, baseline]`): a window from
//!   minute `s` is judged against the path's own failure rate *before* `s`,
//!   when that history spans at least
//!   [`baseline_span`](crate::judge::EvaluationSettings::baseline_span) and meets
//!   the stage's error criterion: `p₀(s)` is the upper end of the
//!   one-standard-error Wilson interval of the failures before `s`. A
//!   healthy path (0.5% failures) gives each failure in the window a weight
//!   of about `ln(10%/0.5%)` = 3.0 instead of 1.62, so a step to 10% is
//!   caught about twice as fast. It fires at
//!   [`baseline_evidence`](crate::judge::EvaluationSettings::baseline_evidence).
//!
//! # Why the guarantee holds however often it is checked
//!
//! Windows start and end only at **minute snapshots**: the first kept
//! snapshot in each whole minute of the stage's run, counted from its start.
//! A controller that ticks every second and one that ticks every minute see
//! the same windows, and between two minute snapshots the statistic does not
//! change, so the chance of a false alarm depends on the data and the bar,
//! not on the tick. The statistic at each minute is
//! `max(0, previous) + this minute's log-likelihood ratio`, a Markov chain,
//! so its false-alarm probability over a stage is computed exactly for a
//! given traffic (`async-upload-rollout plan --traffic`, and
//! `tests/false_alarms.rs`). For a path whose failure rate is at most
//! `p₀`, each window's likelihood ratio is a supermartingale, which is what
//! bounds that probability by Ville's inequality in the first place; the
//! exact computation spends the budget instead of that bound's margin.
//!
//! Every statistic here is O(kept snapshots), counts only.

use std::time::Duration;

use crate::judge::check::{Check, CheckId, CheckStatus};
use crate::judge::plan::{RolloutPlan, Stage};
use crate::judge::stats::{Cusum, wilson};
use crate::judge::text::pct;
use crate::metrics::{Arm, ArmMetrics, History, MetricsSnapshot};

/// The resolution of the sequential checks: windows of whole minutes.
pub(crate) const MINUTE_MS: u64 = 60_000;

/// The minute snapshots of a stage's history (see the module docs), oldest
/// first, and the stage's start they are counted from.
pub(crate) struct Minutes<'a> {
    points: Vec<&'a MetricsSnapshot>,
    origin_ms: u64,
    latest: Option<&'a MetricsSnapshot>,
}

impl<'a> Minutes<'a> {
    /// The minute snapshots of `history`, whose stage started at
    /// `totals.start_unix_ms` (or at the oldest kept snapshot, if that is
    /// earlier, so that no snapshot falls before the origin).
    pub(crate) fn of(history: &'a History, totals: &MetricsSnapshot) -> Minutes<'a> {
        let oldest = history.oldest().map_or(u64::MAX, |s| s.at_unix_ms);
        let origin_ms = totals.start_unix_ms.min(oldest);
        let mut points: Vec<&MetricsSnapshot> = Vec::with_capacity(history.len());
        let mut last_minute = None;
        for snapshot in history.iter() {
            let minute = (snapshot.at_unix_ms - origin_ms) / MINUTE_MS;
            if last_minute != Some(minute) {
                points.push(snapshot);
                last_minute = Some(minute);
            }
        }
        Minutes {
            points,
            origin_ms,
            latest: history.latest(),
        }
    }

    /// The newest minute snapshot: where every window ends.
    pub(crate) fn end(&self) -> Option<&'a MetricsSnapshot> {
        self.points.last().copied()
    }

    /// The minute snapshots before the end, newest first.
    fn starts(&self) -> impl Iterator<Item = &'a MetricsSnapshot> + '_ {
        self.points.iter().rev().skip(1).copied()
    }

    /// The first minute snapshot at least `age` into the stage.
    pub(crate) fn first_at(&self, age: Duration) -> Option<&'a MetricsSnapshot> {
        let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        self.points
            .iter()
            .copied()
            .find(|s| s.at_unix_ms - self.origin_ms >= age_ms)
    }

    /// How far into the stage `snapshot` is.
    pub(crate) fn age(&self, snapshot: &MetricsSnapshot) -> Duration {
        Duration::from_millis(snapshot.at_unix_ms.saturating_sub(self.origin_ms))
    }

    /// How far back the minute snapshots reach (end − oldest).
    pub(crate) fn reach(&self) -> Duration {
        match (self.points.first(), self.points.last()) {
            (Some(o), Some(l)) => Duration::from_millis(l.at_unix_ms - o.at_unix_ms),
            _ => Duration::ZERO,
        }
    }

    /// The stage's async (judged, failures) up to `snapshot`: the stage's
    /// totals less everything after it.
    pub(crate) fn stage_counts_at(
        &self,
        totals: &MetricsSnapshot,
        snapshot: &MetricsSnapshot,
    ) -> (u64, u64) {
        let (n, k) = judged_and_failures(totals.arm(Arm::Async));
        let Some(latest) = self.latest else {
            return (n, k);
        };
        let (after_n, after_k) = async_counts_since(latest, snapshot);
        (n.saturating_sub(after_n), k.saturating_sub(after_k))
    }
}

/// The async (judged, failures) between two cumulative snapshots; across a
/// reset (generation changed or a count went down), everything in `later`.
pub(crate) fn async_counts_since(later: &MetricsSnapshot, earlier: &MetricsSnapshot) -> (u64, u64) {
    let (l, e) = (later.arm(Arm::Async), earlier.arm(Arm::Async));
    let reset = later.generation != earlier.generation
        || l.success < e.success
        || l.error < e.error
        || l.critical < e.critical;
    if reset {
        return judged_and_failures(l);
    }
    // Counts only: `ArmMetrics::since` would also subtract the histograms.
    let failures = (l.error - e.error).saturating_add(l.critical - e.critical);
    ((l.success - e.success).saturating_add(failures), failures)
}

/// An arm's judged uploads and failures (errors and critical uploads).
pub(crate) fn judged_and_failures(arm: &ArmMetrics) -> (u64, u64) {
    let failures = arm.error.saturating_add(arm.critical);
    (arm.success.saturating_add(failures), failures)
}

/// The window ending at the latest minute with the most evidence.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Strongest {
    /// Log-likelihood ratio of the window (at least 0: no window is no evidence).
    pub(crate) llr: f64,
    /// Judged async uploads and failures in it.
    pub(crate) n: u64,
    pub(crate) failures: u64,
    /// Its length.
    pub(crate) span: Duration,
}

/// Over every window from a minute snapshot to the latest one that is at
/// least `min_span` long and holds at least `min_uploads` judged async
/// uploads, the one with the largest log-likelihood ratio under `cusum`;
/// `None` when no window qualifies. With no minimum span this is the CUSUM
/// statistic at minute resolution (Page's `max(0, S + x)` recursion equals
/// the maximum over start points). O(snapshots): counts only.
pub(crate) fn strongest_window(
    minutes: &Minutes<'_>,
    cusum: &Cusum,
    min_span: Duration,
    min_uploads: u64,
) -> Option<Strongest> {
    let end = minutes.end()?;
    let min_span_ms = u64::try_from(min_span.as_millis()).unwrap_or(u64::MAX);
    let mut best: Option<Strongest> = None;
    for start in minutes.starts() {
        let span_ms = end.at_unix_ms - start.at_unix_ms;
        if span_ms < min_span_ms {
            continue;
        }
        let (n, failures) = async_counts_since(end, start);
        if n < min_uploads {
            continue;
        }
        let llr = cusum.llr(failures, n);
        if best.is_none_or(|b| llr > b.llr) {
            best = Some(Strongest {
                llr,
                n,
                failures,
                span: Duration::from_millis(span_ms),
            });
        }
    }
    best.map(|b| Strongest {
        llr: b.llr.max(0.0),
        ..b
    })
}

/// The strongest window of the baseline-aware check, with the history it
/// was judged against.
#[derive(Clone, Copy, Debug)]
struct AgainstBaseline {
    window: Strongest,
    /// The stage's judged uploads and failures before the window.
    before_n: u64,
    before_failures: u64,
    /// How long that history spans.
    before_span: Duration,
    /// The rate it was judged against: the Wilson upper bound of `before`.
    p0: f64,
}

/// What the baseline-aware search found.
enum BaselineSearch {
    /// At least one window had a clean history before it.
    Judged(AgainstBaseline),
    /// The stage is not yet old enough for any window to have one.
    TooYoung,
    /// Windows had a long enough history, none a clean one.
    NotClean {
        /// The failure rate before the newest window that was long enough.
        rate: f64,
    },
    /// Clean windows exist but none holds the minimum uploads yet.
    TooFewUploads,
}

/// The one-standard-error Wilson interval's z: the baseline's `p₀` is its
/// upper end, so a path at its own rate is judged against a rate at least
/// as high about five times in six.
const BASELINE_Z: f64 = 1.0;

/// The baseline-aware search (see the module docs). `clean` is the highest
/// failure rate a history may have to count as a baseline, `p1` the rate
/// the check is tuned to.
fn against_baseline(
    minutes: &Minutes<'_>,
    totals: &MetricsSnapshot,
    span: Duration,
    clean: f64,
    p1: f64,
    min_uploads: u64,
) -> BaselineSearch {
    let Some(end) = minutes.end() else {
        return BaselineSearch::TooYoung;
    };
    let mut best: Option<AgainstBaseline> = None;
    let mut newest_unclean: Option<f64> = None;
    let mut long_enough = false;
    let mut clean_found = false;
    for start in minutes.starts() {
        let before_span = minutes.age(start);
        if before_span < span {
            continue;
        }
        long_enough = true;
        let (before_n, before_failures) = minutes.stage_counts_at(totals, start);
        if before_n == 0 {
            continue;
        }
        let rate = before_failures as f64 / before_n as f64;
        if rate > clean {
            newest_unclean.get_or_insert(rate);
            continue;
        }
        clean_found = true;
        let (n, failures) = async_counts_since(end, start);
        if n < min_uploads {
            continue;
        }
        let p0 = wilson(before_failures, before_n, BASELINE_Z)
            .map_or(clean, |i| i.high)
            .max(f64::MIN_POSITIVE);
        if p0 >= p1 {
            continue;
        }
        let cusum = Cusum::new(p0, p1);
        let llr = cusum.llr(failures, n);
        if best.is_none_or(|b| llr > b.window.llr) {
            best = Some(AgainstBaseline {
                window: Strongest {
                    llr,
                    n,
                    failures,
                    span: Duration::from_millis(end.at_unix_ms - start.at_unix_ms),
                },
                before_n,
                before_failures,
                before_span,
                p0,
            });
        }
    }
    match best {
        Some(mut b) => {
            b.window.llr = b.window.llr.max(0.0);
            BaselineSearch::Judged(b)
        }
        None if clean_found => BaselineSearch::TooFewUploads,
        None if long_enough => BaselineSearch::NotClean {
            rate: newest_unclean.unwrap_or(0.0),
        },
        None => BaselineSearch::TooYoung,
    }
}

/// The failure rate a rate trigger's CUSUMs are tuned to: twice the
/// trigger, at most halfway to 100%.
pub(crate) fn rollback_target(trigger: f64) -> f64 {
    (2.0 * trigger).min((1.0 + trigger) / 2.0)
}

/// The absolute sequential check of a rate trigger whose failure rate
/// `trigger` rolls back (see
/// [`EvaluationSettings::rollback_evidence`](crate::judge::EvaluationSettings::rollback_evidence)).
pub(crate) fn absolute_check(
    plan: &RolloutPlan,
    id: &CheckId,
    trigger: f64,
    minutes: &Minutes<'_>,
) -> Check {
    let bar = plan.evaluation.rollback_evidence;
    let min = plan.triggers.min_uploads.max(1);
    let cusum = Cusum::with_reference(trigger, rollback_target(trigger));
    let rule = format!(
        "failure rate > {} rolls back (sequential over whole minutes: CUSUM of {} vs {} failures, +{:.2} per failure, −{:.3} per success)",
        pct(trigger),
        pct(cusum.p1),
        pct(cusum.p0()),
        cusum.up,
        cusum.down,
    );
    let best = strongest_window(minutes, &cusum, Duration::ZERO, min)
        .ok_or_else(|| no_window_yet(minutes, min));
    evidence_check(id, trigger >= 1.0, &rule, best, bar)
}

/// The baseline-aware sequential check of a rate trigger whose failure rate
/// `trigger` rolls back (see
/// [`EvaluationSettings::baseline_evidence`](crate::judge::EvaluationSettings::baseline_evidence)).
pub(crate) fn baseline_check(
    plan: &RolloutPlan,
    stage: &Stage,
    id: &CheckId,
    trigger: f64,
    totals: &MetricsSnapshot,
    minutes: &Minutes<'_>,
) -> Check {
    let settings = &plan.evaluation;
    let bar = settings.baseline_evidence;
    let threshold = bar.ln();
    let min = plan.triggers.min_uploads.max(1);
    let p1 = rollback_target(trigger);
    let clean = stage
        .criteria
        .max_error_rate
        .min(1.0 - stage.criteria.min_success_rate)
        .max(0.0);
    let span = settings.baseline_span;
    let span_text = humantime::format_duration(span);
    let rule = format!(
        "failure rate up from the path's own history rolls back (sequential over whole minutes: CUSUM of {} against the failure rate before each window, when that history spans {span_text}+ at ≤ {})",
        pct(p1),
        pct(clean),
    );
    let quiet =
        |status: CheckStatus, detail: String| Check::new(id, status, None, threshold, 0, detail);
    if trigger >= 1.0 {
        return quiet(
            CheckStatus::Pass,
            format!("{rule}: off (the threshold is 100%)"),
        );
    }
    match against_baseline(minutes, totals, span, clean, p1, min) {
        BaselineSearch::TooYoung => quiet(
            CheckStatus::NotEnoughData,
            format!(
                "{rule}: no window has {span_text} of the stage before it yet (the stage's history reaches {} into it); the absolute check judges alone",
                humantime::format_duration(Duration::from_secs(
                    minutes
                        .end()
                        .map_or(Duration::ZERO, |e| minutes.age(e))
                        .as_secs()
                ))
            ),
        ),
        BaselineSearch::TooFewUploads => quiet(
            CheckStatus::NotEnoughData,
            format!("{rule}: no window after a clean history holds {min} async uploads yet"),
        ),
        BaselineSearch::NotClean { rate } => quiet(
            CheckStatus::Pass,
            format!(
                "{rule}: off, the stage's failure rate before the recent windows is {}, above {}; the absolute check judges alone",
                pct(rate),
                pct(clean)
            ),
        ),
        BaselineSearch::Judged(b) => {
            let fired = b.window.llr >= threshold;
            let window = if b.window.llr > 0.0 {
                format!(
                    "over the last {} ({} async uploads, {} failures, {})",
                    humantime::format_duration(Duration::from_secs(b.window.span.as_secs())),
                    b.window.n,
                    b.window.failures,
                    pct(b.window.failures as f64 / b.window.n.max(1) as f64)
                )
            } else {
                "(no recent window above its history)".to_owned()
            };
            Check::new(
                id,
                CheckStatus::fail_if(fired),
                Some(b.window.llr),
                threshold,
                b.window.n,
                format!(
                    "{rule}: likelihood ratio {} {window} against {} (the {} before it: {} failures in {} async uploads, {}); fires at {}",
                    evidence_text(b.window.llr),
                    pct(b.p0),
                    humantime::format_duration(Duration::from_secs(b.before_span.as_secs())),
                    b.before_failures,
                    b.before_n,
                    pct(b.before_failures as f64 / b.before_n.max(1) as f64),
                    evidence_text(threshold)
                ),
            )
        }
    }
}

/// A check on sequential evidence: fails when the strongest window's
/// log-likelihood ratio reaches `ln(bar)`. `observed` and `threshold` are
/// natural logs of likelihood ratios. `best` is `Err(what is missing)` while
/// no window can be judged.
pub(crate) fn evidence_check(
    id: &CheckId,
    off: bool,
    rule: &str,
    best: Result<Strongest, String>,
    bar: f64,
) -> Check {
    let threshold = bar.ln();
    let (status, observed, sample_size, detail) = match best {
        _ if off => (
            CheckStatus::Pass,
            None,
            0,
            format!("{rule}: off (the threshold is 100%)"),
        ),
        Err(missing) => (
            CheckStatus::NotEnoughData,
            None,
            0,
            format!("{rule}: {missing}"),
        ),
        Ok(b) => {
            let fired = b.llr >= threshold;
            let window = if b.llr > 0.0 {
                format!(
                    "over the last {} ({} async uploads, {} failures, {})",
                    humantime::format_duration(Duration::from_secs(b.span.as_secs())),
                    b.n,
                    b.failures,
                    pct(b.failures as f64 / b.n.max(1) as f64)
                )
            } else {
                "(no recent window above the zero-drift rate)".to_owned()
            };
            (
                CheckStatus::fail_if(fired),
                Some(b.llr),
                b.n,
                format!(
                    "{rule}: likelihood ratio {} {window}; fires at {}",
                    evidence_text(b.llr),
                    evidence_text(threshold)
                ),
            )
        }
    };
    Check::new(id, status, observed, threshold, sample_size, detail)
}

/// What a sequential check on whole minutes lacks while
/// [`strongest_window`] finds none.
pub(crate) fn no_window_yet(minutes: &Minutes<'_>, min_uploads: u64) -> String {
    format!(
        "no window of whole minutes of the history ({} back) has {min_uploads} async uploads yet",
        humantime::format_duration(minutes.reach())
    )
}

/// A log-likelihood ratio shown as the ratio: `e^4.6` → `100`.
pub(crate) fn evidence_text(ln_ratio: f64) -> String {
    let r = ln_ratio.exp();
    if r < 10.0 {
        format!("{r:.1}")
    } else if r < 1e7 {
        format!("{r:.0}")
    } else {
        format!("{r:.1e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    use crate::metrics::Outcome;

    const T0: u64 = 1_700_000_000_000;

    /// A history with a snapshot every `every_s` seconds for `minutes`
    /// minutes, one async upload per snapshot, failing when `fail(i)`.
    fn history(
        every_s: u64,
        minutes: u64,
        fail: impl Fn(u64) -> bool,
    ) -> (History, MetricsSnapshot) {
        let mut h = History::new(100_000, Duration::ZERO);
        let start = UNIX_EPOCH + Duration::from_millis(T0);
        let mut s = MetricsSnapshot::empty_at(start);
        h.push(s.clone());
        for i in 1..=minutes * 60 / every_s {
            let outcome = if fail(i) {
                Outcome::Error
            } else {
                Outcome::Success
            };
            s.arm_mut(Arm::Async)
                .record(outcome, Duration::from_millis(100));
            s.at_unix_ms = T0 + i * every_s * 1000;
            h.push(s.clone());
        }
        (h, s)
    }

    #[test]
    fn minute_snapshots_do_not_depend_on_the_tick() {
        // The same uploads, one every 10 s, kept every 10 s or every 60 s:
        // the same minute snapshots (counts and times), so the same windows.
        let fail = |i: u64| i.is_multiple_of(7);
        let (fine, totals) = history(10, 30, fail);
        let minutes = Minutes::of(&fine, &totals);
        assert_eq!(minutes.points.len(), 31);
        assert!(
            minutes
                .points
                .iter()
                .all(|p| (p.at_unix_ms - T0).is_multiple_of(60_000))
        );
        let coarse: Vec<(u64, (u64, u64))> = minutes
            .points
            .iter()
            .map(|p| (p.at_unix_ms, judged_and_failures(p.arm(Arm::Async))))
            .collect();
        let mut every_minute = History::new(100_000, Duration::ZERO);
        for p in &minutes.points {
            every_minute.push((*p).clone());
        }
        let again = Minutes::of(&every_minute, &totals);
        let same: Vec<(u64, (u64, u64))> = again
            .points
            .iter()
            .map(|p| (p.at_unix_ms, judged_and_failures(p.arm(Arm::Async))))
            .collect();
        assert_eq!(coarse, same);
        // Between two whole minutes the end does not move.
        let (mid, mid_totals) = history(10, 30, fail);
        let mut mid = mid;
        let mut extra = mid_totals.clone();
        extra.at_unix_ms += 30_000;
        extra
            .arm_mut(Arm::Async)
            .record(Outcome::Error, Duration::from_millis(100));
        mid.push(extra.clone());
        let m = Minutes::of(&mid, &extra);
        assert_eq!(m.end().map(|e| e.at_unix_ms), Some(T0 + 30 * 60_000));
    }

    #[test]
    fn stage_counts_before_a_minute_subtract_what_came_after() {
        let (h, totals) = history(60, 10, |i| i <= 2);
        let minutes = Minutes::of(&h, &totals);
        let third = minutes.first_at(Duration::from_secs(180)).unwrap();
        assert_eq!(minutes.stage_counts_at(&totals, third), (3, 2));
        assert_eq!(minutes.age(third), Duration::from_secs(180));
    }
}
