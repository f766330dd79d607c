//! The evaluator's thresholds, triggers and severity order, table-driven.
//!
//! Snapshots are built by hand so every count is exact. Unless a test says
//! otherwise, the sync arm is healthy and plentiful and both arms have the
//! same latency, so only the rule under test can fail.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_upload_rollout::{
    Arm, Evaluator, History, MetricsSnapshot, Outcome, RolloutPlan, Verdict,
    judge::{CheckStatus, EvaluationMode, LatencyStatistic},
    metrics::{ArmMetrics, MemoryStats},
};

const T0_MS: u64 = 1_762_300_800_000;
const MINUTE_MS: u64 = 60_000;

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Adds `success`, `error`, `critical` uploads to one arm of `s`, each with `latency_ms`.
fn add(
    s: &mut MetricsSnapshot,
    arm: Arm,
    success: u64,
    error: u64,
    critical: u64,
    latency_ms: u64,
) {
    let m = s.arm_mut(arm);
    let latency = Duration::from_millis(latency_ms);
    for (outcome, n) in [
        (Outcome::Success, success),
        (Outcome::Error, error),
        (Outcome::Critical, critical),
    ] {
        for _ in 0..n {
            m.record(outcome, latency);
        }
    }
}

/// Stage totals: async as given, sync 10,000 healthy uploads, both at 100 ms.
fn totals(success: u64, error: u64, critical: u64) -> MetricsSnapshot {
    let mut s = MetricsSnapshot::empty_at(at(T0_MS));
    add(&mut s, Arm::Async, success, error, critical, 100);
    add(&mut s, Arm::Sync, 9_950, 50, 0, 100);
    s
}

fn plan(mode: EvaluationMode) -> RolloutPlan {
    let mut plan = RolloutPlan::default();
    plan.evaluation.mode = mode;
    plan
}

/// Evaluates the 10% stage (index 1) with an empty history.
fn judge(plan: RolloutPlan, totals: &MetricsSnapshot) -> async_upload_rollout::Evaluation {
    Evaluator::new(plan)
        .unwrap()
        .evaluate(1, totals, &History::default(), at(T0_MS))
        .unwrap()
}

fn status(e: &async_upload_rollout::Evaluation, name: &str) -> CheckStatus {
    e.check(name)
        .unwrap_or_else(|| panic!("no check {name}: {:#?}", e.checks))
        .status
}

#[test]
fn literal_stage_criteria_boundaries() {
    use CheckStatus::{Fail, NotEnoughData as Missing, Pass};
    // (success, error, check, expected status, expected verdict)
    let cases: &[(u64, u64, &str, CheckStatus, Verdict)] = &[
        (495, 5, "success_rate", Pass, Verdict::Advance), // exactly 99.0% at exactly 500
        (495, 5, "uploads", Pass, Verdict::Advance),
        (9_899, 101, "success_rate", Fail, Verdict::Hold), // 98.99%
        (494, 5, "uploads", Missing, Verdict::Hold),       // 499 uploads
        (494, 5, "success_rate", Missing, Verdict::Hold),
        (9_900, 100, "error_rate", Pass, Verdict::Advance), // exactly 1.0%
        (9_899, 101, "error_rate", Fail, Verdict::Hold),    // 1.01%
    ];
    for &(success, error, check, expected, verdict) in cases {
        let e = judge(plan(EvaluationMode::Literal), &totals(success, error, 0));
        assert_eq!(status(&e, check), expected, "{success}/{error}: {check}");
        assert_eq!(e.verdict, verdict, "{success}/{error}: {}", e.reason);
    }
}

#[test]
fn not_enough_data_holds_and_says_how_many_are_missing() {
    for mode in [EvaluationMode::Literal, EvaluationMode::Guarded] {
        let e = judge(plan(mode), &totals(120, 0, 0));
        assert_eq!(e.verdict, Verdict::Hold);
        let uploads = e.check("uploads").unwrap();
        assert_eq!(uploads.status, CheckStatus::NotEnoughData);
        assert!(uploads.detail.contains("380 more"), "{}", uploads.detail);
        assert!(e.reason.contains("380 more"), "{}", e.reason);
    }
}

#[test]
fn latency_ratio_boundaries_use_the_configured_statistic() {
    let mut p = plan(EvaluationMode::Literal);
    p.stages[1].criteria.latency_statistic = LatencyStatistic::Mean;
    for (async_ms, expected) in [
        (100, CheckStatus::Pass),
        (104, CheckStatus::Pass),
        (107, CheckStatus::Fail),
    ] {
        let mut s = MetricsSnapshot::empty_at(at(T0_MS));
        add(&mut s, Arm::Async, 1_000, 0, 0, async_ms);
        add(&mut s, Arm::Sync, 9_950, 50, 0, 100);
        let e = judge(p.clone(), &s);
        assert_eq!(status(&e, "latency_ratio"), expected, "{async_ms} ms");
    }
    // No sync uploads to compare with: not enough data, never a pass.
    let mut s = MetricsSnapshot::empty_at(at(T0_MS));
    add(&mut s, Arm::Async, 1_000, 0, 0, 100);
    let e = judge(p, &s);
    assert_eq!(status(&e, "latency_ratio"), CheckStatus::NotEnoughData);
    assert_eq!(e.verdict, Verdict::Hold);
}

#[test]
fn immediate_rate_triggers_boundaries_in_literal_mode() {
    // (success, error, verdict): 95.0% / 5.0% do not fire, 94.9% / 5.1% do.
    for (success, error, verdict) in [(950, 50, Verdict::Hold), (949, 51, Verdict::Rollback)] {
        let e = judge(plan(EvaluationMode::Literal), &totals(success, error, 0));
        assert_eq!(e.verdict, verdict, "{success}/{error}: {}", e.reason);
        let fired = status(&e, "rollback.error_rate[stage]") == CheckStatus::Fail;
        assert_eq!(fired, verdict == Verdict::Rollback);
    }
}

#[test]
fn guarded_rate_triggers_need_the_whole_interval_on_the_bad_side() {
    // 8 errors in 100 (8%) is above 5%, but the 95% interval [4.1%, 15%] is not
    // wholly above it: no rollback. 20 in 100: [13.3%, 28.9%]: rollback.
    for (error, verdict) in [(8, Verdict::Hold), (20, Verdict::Rollback)] {
        let e = judge(
            plan(EvaluationMode::Guarded),
            &totals(100 - error, error, 0),
        );
        assert_eq!(e.verdict, verdict, "{error}%: {}", e.reason);
    }
    // Below the trigger's minimum sample nothing fires, whatever the rate.
    let e = judge(plan(EvaluationMode::Guarded), &totals(10, 9, 0));
    assert_eq!(
        status(&e, "rollback.error_rate[stage]"),
        CheckStatus::NotEnoughData
    );
    assert_ne!(e.verdict, Verdict::Rollback);
}

#[test]
fn guarded_advance_needs_the_interval_within_tolerance() {
    // 99.2% at 500: observed meets 99%, lower bound ≈ 97.96% < 98.5%: hold.
    let e = judge(plan(EvaluationMode::Guarded), &totals(496, 4, 0));
    assert_eq!(status(&e, "success_rate"), CheckStatus::NotEnoughData);
    assert_eq!(e.verdict, Verdict::Hold);
    // 99.5% at 4000: lower bound ≈ 99.22% ≥ 98.5%: advance.
    let e = judge(plan(EvaluationMode::Guarded), &totals(3_980, 20, 0));
    assert_eq!(e.verdict, Verdict::Advance, "{}", e.reason);
    let interval = e.check("success_rate").unwrap().interval.unwrap();
    assert!(interval.low > 0.985 && interval.high < 1.0, "{interval:?}");
}

#[test]
fn a_critical_error_rolls_back_alone_in_both_modes() {
    for mode in [EvaluationMode::Literal, EvaluationMode::Guarded] {
        let e = judge(plan(mode), &totals(10_000, 0, 1));
        assert_eq!(e.verdict, Verdict::Rollback);
        assert_eq!(status(&e, "rollback.critical_errors"), CheckStatus::Fail);
        assert_eq!(
            e.failing()
                .filter(|c| c.status == CheckStatus::Fail)
                .count(),
            1,
            "{:#?}",
            e.checks
        );
        assert!(e.reason.contains("critical"), "{}", e.reason);
    }
    let mut p = plan(EvaluationMode::Guarded);
    p.triggers.rollback_on_critical = false;
    assert_ne!(judge(p, &totals(10_000, 0, 1)).verdict, Verdict::Rollback);
}

#[test]
fn memory_growth_boundary_is_strictly_above_twenty_percent() {
    for (peak, verdict) in [(1_200, Verdict::Advance), (1_201, Verdict::Rollback)] {
        let mut s = totals(10_000, 0, 0);
        s.memory = Some(MemoryStats {
            baseline: 1_000,
            current: 1_000,
            peak,
        });
        let e = judge(plan(EvaluationMode::Guarded), &s);
        assert_eq!(e.verdict, verdict, "peak {peak}: {}", e.reason);
    }
}

#[test]
fn memory_without_samples_is_not_enough_data_not_a_trigger() {
    let e = judge(plan(EvaluationMode::Guarded), &totals(10_000, 0, 0));
    assert_eq!(
        status(&e, "rollback.memory_growth"),
        CheckStatus::NotEnoughData
    );
    assert_eq!(e.verdict, Verdict::Advance);
}

#[test]
fn severity_order_rollback_over_review_over_hold() {
    // Too few uploads (hold) and a critical error (rollback): rollback.
    let e = judge(plan(EvaluationMode::Literal), &totals(100, 0, 1));
    assert_eq!(e.verdict, Verdict::Rollback);

    // Too few uploads (hold) and a complaint increase (review): review.
    let mut s = totals(100, 0, 0);
    s.arm_mut(Arm::Async).complaints = 50;
    let e = judge(plan(EvaluationMode::Literal), &s);
    assert_eq!(e.verdict, Verdict::ManualReview, "{}", e.reason);
    assert_eq!(status(&e, "uploads"), CheckStatus::NotEnoughData);

    // All three: rollback, and the reason names only the rollback checks.
    s.arm_mut(Arm::Async).critical = 1;
    let e = judge(plan(EvaluationMode::Literal), &s);
    assert_eq!(e.verdict, Verdict::Rollback);
    assert!(
        e.reason.contains("critical") && !e.reason.contains("complaints"),
        "{}",
        e.reason
    );
}

#[test]
fn complaint_trigger_in_both_modes() {
    // Literal: any higher rate. Guarded: an exact test at the configured level.
    let mut s = totals(10_000, 0, 0);
    s.arm_mut(Arm::Async).complaints = 2;
    s.arm_mut(Arm::Sync).complaints = 1; // 2/10,000 vs 1/10,000
    assert_eq!(
        judge(plan(EvaluationMode::Literal), &s).verdict,
        Verdict::ManualReview
    );
    assert_eq!(
        judge(plan(EvaluationMode::Guarded), &s).verdict,
        Verdict::Advance
    );
    s.arm_mut(Arm::Async).complaints = 20; // 20 vs 1 at equal traffic
    assert_eq!(
        judge(plan(EvaluationMode::Guarded), &s).verdict,
        Verdict::ManualReview
    );
}

/// A stage of `minutes` one-minute snapshots; `per_minute(m)` gives the async
/// (success, error) of minute `m`; sync is healthy; async latency `latency(m)`.
fn history_of(
    minutes: u64,
    per_minute: impl Fn(u64) -> (u64, u64),
    latency: impl Fn(u64) -> u64,
) -> (History, MetricsSnapshot) {
    let mut history = History::default();
    let mut s = MetricsSnapshot::empty_at(at(T0_MS));
    history.push(s.clone());
    for m in 1..=minutes {
        let (success, error) = per_minute(m);
        add(&mut s, Arm::Async, success, error, 0, latency(m));
        add(&mut s, Arm::Sync, 199, 1, 0, 100);
        s.at_unix_ms = T0_MS + m * MINUTE_MS;
        history.push(s.clone());
    }
    (history, s)
}

fn judge_history(
    mode: EvaluationMode,
    history: &History,
    totals: &MetricsSnapshot,
) -> async_upload_rollout::Evaluation {
    Evaluator::new(plan(mode))
        .unwrap()
        .evaluate(1, totals, history, at(totals.at_unix_ms))
        .unwrap()
}

#[test]
fn success_band_must_hold_for_30_minutes_before_review() {
    // 96% succeed every minute: in the 95–97% band, and with 2,000 async
    // uploads a minute conclusively so.
    //
    // Literal: true on the 5-minute window ending at each snapshot; it has
    // held from the first evaluation point (minute 1), so at minute 30 it
    // has held 29 minutes, at minute 31 it has held 30.
    let band = "review.success_rate_in_band";
    let (h, t) = history_of(30, |_| (1_920, 80), |_| 100);
    let e = judge_history(EvaluationMode::Literal, &h, &t);
    assert_eq!(status(&e, band), CheckStatus::Pass, "literal, 29 min");
    assert_ne!(e.verdict, Verdict::ManualReview);
    let (h, t) = history_of(31, |_| (1_920, 80), |_| 100);
    let e = judge_history(EvaluationMode::Literal, &h, &t);
    assert_eq!(status(&e, band), CheckStatus::Fail, "literal, 30 min");
    assert_eq!(e.verdict, Verdict::ManualReview, "{}", e.reason);

    // Guarded: judged on windows of 30 minutes or more as a whole; at
    // minute 29 there is none, at minute 30 the whole history is one.
    let band = "review.success_rate_in_band[sequential]";
    let (h, t) = history_of(29, |_| (1_920, 80), |_| 100);
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    assert_eq!(
        status(&e, band),
        CheckStatus::NotEnoughData,
        "guarded, 29 min"
    );
    assert_ne!(e.verdict, Verdict::ManualReview);
    let (h, t) = history_of(30, |_| (1_920, 80), |_| 100);
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    assert_eq!(status(&e, band), CheckStatus::Fail, "guarded, 30 min");
    assert_eq!(e.verdict, Verdict::ManualReview, "{}", e.reason);
}

/// A stage of `minutes` one-minute snapshots at the 10% stage of a
/// 120-uploads-a-minute service: `per_minute(m)` gives the async (success,
/// failure) of minute `m`, sync is 108 healthy uploads a minute, both at
/// 100 ms.
fn stage_of(minutes: u64, per_minute: impl Fn(u64) -> (u64, u64)) -> (History, MetricsSnapshot) {
    history_of(minutes, per_minute, |_| 100)
}

/// `per 1000` failures spread evenly: minute `m`'s share of them at 12
/// async uploads a minute.
fn even(m: u64, per_1000: u64) -> (u64, u64) {
    let before = (m - 1) * 12 * per_1000 / 1000;
    let upto = m * 12 * per_1000 / 1000;
    let failures = upto - before;
    (12 - failures, failures)
}

/// The first minute in `from..to` at which check `name` fails, judging the
/// stage built by `per_minute` up to that minute.
fn first_failing(
    from: u64,
    to: u64,
    name: &str,
    per_minute: impl Fn(u64) -> (u64, u64) + Copy,
) -> Option<u64> {
    (from..to).find(|&minutes| {
        let (h, t) = stage_of(minutes, per_minute);
        status(&judge_history(EvaluationMode::Guarded, &h, &t), name) == CheckStatus::Fail
    })
}

#[test]
fn a_sudden_regression_late_in_a_long_stage_is_rolled_back_within_minutes() {
    // Ten healthy hours (0.5% failures), then every fourth upload fails.
    let onset = 600;
    let per_minute = |m| if m > onset { (9, 3) } else { even(m, 5) };
    let absolute = "rollback.error_rate[sequential]";
    let baseline = "rollback.error_rate[sequential, baseline]";
    // Against the path's own ten hours (35 failures in 7,188 uploads:
    // 0.49%, Wilson upper end 0.58%), each failure weighs ln(10%/0.58%) =
    // 2.85: the last 3 minutes (36 uploads, 7 failures: 19.9 − 29 × 0.095
    // = 17.2) pass ln 60,000 = 11.0 two minutes after the step.
    let (h, t) = stage_of(onset + 2, per_minute);
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    assert_eq!(status(&e, baseline), CheckStatus::Fail, "{}", e.reason);
    assert_eq!(e.verdict, Verdict::Rollback);
    // Neither the stage's totals nor the last 30 minutes can tell yet, and
    // the absolute check (1.62 a failure) needs a minute more.
    for name in [
        "rollback.error_rate[stage]",
        "rollback.error_rate[last 30m]",
        absolute,
    ] {
        assert_eq!(status(&e, name), CheckStatus::Pass, "{name}");
    }
    let check = e.check(baseline).unwrap();
    assert!(
        check
            .detail
            .contains("the 9h 59m before it: 35 failures in 7188 async uploads"),
        "{}",
        check.detail
    );
    assert_eq!(
        first_failing(onset, onset + 10, baseline, per_minute),
        Some(onset + 2)
    );
    let (h, t) = stage_of(onset + 1, per_minute);
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    assert_ne!(e.verdict, Verdict::Rollback, "{}", e.reason);
    // 3 minutes: 36 uploads, 9 failures: 9 × 1.623 − 27 × 0.085 ≈ 12.3 ≥
    // ln 700,000 ≈ 13.5? Not yet: the window from minute 600 (one failure)
    // adds 1.5 at 4 minutes.
    assert_eq!(
        first_failing(onset, onset + 10, absolute, per_minute),
        Some(onset + 4)
    );
    // Literal mode has neither sequential check.
    let (h, t) = stage_of(onset + 3, per_minute);
    let e = judge_history(EvaluationMode::Literal, &h, &t);
    assert!(e.check(absolute).is_none() && e.check(baseline).is_none());
}

#[test]
fn the_reason_says_each_sequential_sentence_once() {
    // Ten healthy hours, then every fourth upload fails for 10 minutes:
    // the success trigger's and the error trigger's sequential checks
    // (95% success, 5% errors: the same failure rate) both fire with the
    // same sentence, and the reason carries it once.
    let onset = 600;
    let per_minute = |m| if m > onset { (9, 3) } else { even(m, 5) };
    let (h, t) = stage_of(onset + 10, per_minute);
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    assert_eq!(e.verdict, Verdict::Rollback, "{}", e.reason);
    let absolute = e.check("rollback.error_rate[sequential]").unwrap();
    let twin = e.check("rollback.success_rate[sequential]").unwrap();
    assert_eq!(absolute.status, CheckStatus::Fail);
    assert_eq!(twin.status, CheckStatus::Fail);
    assert_eq!(absolute.detail, twin.detail);
    assert_eq!(
        e.reason.matches(&absolute.detail).count(),
        1,
        "{}",
        e.reason
    );
    let sentences: Vec<&str> = e.reason.split("; ").collect();
    for (i, sentence) in sentences.iter().enumerate() {
        assert!(!sentences[..i].contains(sentence), "{}", e.reason);
    }
}

#[test]
fn the_baseline_check_waits_for_a_clean_history_and_says_so() {
    let baseline = "rollback.error_rate[sequential, baseline]";
    // The first half hour: no window has 30 minutes of stage before it.
    let (h, t) = stage_of(25, |m| even(m, 5));
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    let check = e.check(baseline).unwrap();
    assert_eq!(check.status, CheckStatus::NotEnoughData);
    assert!(
        check
            .detail
            .contains("no window has 30m of the stage before it"),
        "{}",
        check.detail
    );
    // A history at 2% failures (above the stage's 1%) is no baseline: a
    // step to 25% after it is left to the absolute check.
    let onset = 300;
    let per_minute = |m| if m > onset { (9, 3) } else { even(m, 20) };
    let (h, t) = stage_of(onset + 3, per_minute);
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    let check = e.check(baseline).unwrap();
    assert_eq!(check.status, CheckStatus::Pass, "{}", check.detail);
    assert!(
        check
            .detail
            .contains("off, the stage's failure rate before the recent windows is 2."),
        "{}",
        check.detail
    );
    assert_eq!(
        first_failing(
            onset,
            onset + 10,
            "rollback.error_rate[sequential]",
            per_minute
        ),
        Some(onset + 4)
    );
    // A clean history from the stage's start rolls back where the absolute
    // check cannot yet: the same step after 0.5%.
    let per_minute = |m| if m > onset { (9, 3) } else { even(m, 5) };
    assert_eq!(
        first_failing(onset, onset + 10, baseline, per_minute),
        Some(onset + 2)
    );
}

#[test]
fn sequential_checks_judge_whole_minutes_whatever_the_tick() {
    // The same stage kept once a minute and every 10 s (the uploads of a
    // minute spread over its six ticks): every sequential check sees the
    // same windows, so observes the same evidence.
    let onset = 200;
    let per_minute = |m: u64| if m > onset { (9, 3) } else { even(m, 5) };
    let minutes = onset + 2;
    let (coarse, totals) = stage_of(minutes, per_minute);
    let mut fine = History::new(100_000, Duration::from_secs(10));
    let mut s = MetricsSnapshot::empty_at(at(T0_MS));
    fine.push(s.clone());
    for m in 1..=minutes {
        let (success, error) = per_minute(m);
        for tick in 1..=6u64 {
            let share = |n: u64| n * tick / 6 - n * (tick - 1) / 6;
            add(&mut s, Arm::Async, share(success), share(error), 0, 100);
            add(&mut s, Arm::Sync, share(108), 0, 0, 100);
            s.at_unix_ms = T0_MS + (m - 1) * MINUTE_MS + tick * 10_000;
            fine.push(s.clone());
        }
    }
    assert_eq!(s.judged(Arm::Async), totals.judged(Arm::Async));
    let a = judge_history(EvaluationMode::Guarded, &coarse, &totals);
    let b = judge_history(EvaluationMode::Guarded, &fine, &s);
    let mut compared = 0;
    for check in a.checks.iter().filter(|c| c.name.contains("[sequential")) {
        let other = b.check(&check.name).unwrap();
        assert_eq!(
            (check.status, check.observed),
            (other.status, other.observed),
            "{}",
            check.name
        );
        compared += 1;
    }
    assert_eq!(compared, 6);
    assert_eq!(a.verdict, Verdict::Rollback);
}

#[test]
fn a_step_just_above_the_trigger_is_caught_and_one_below_never() {
    // 7% failures after ten healthy hours: the 30-minute interval keeps its
    // low end under 5%, the stage's totals dilute it; the CUSUM climbs.
    let onset = 600;
    let (h, t) = stage_of(
        onset + 60,
        |m| if m > onset { even(m, 70) } else { even(m, 5) },
    );
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    assert_eq!(
        status(&e, "rollback.error_rate[sequential]"),
        CheckStatus::Fail
    );
    assert_eq!(
        status(&e, "rollback.error_rate[last 30m]"),
        CheckStatus::Pass
    );
    assert_eq!(status(&e, "rollback.error_rate[stage]"), CheckStatus::Pass);

    // 4% (96% success: the review band, below the trigger) and 2% for
    // twelve hours, failures evenly spread: the evidence never builds.
    for per_1000 in [20, 40] {
        let (h, t) = stage_of(719, |m| even(m, per_1000));
        let e = judge_history(EvaluationMode::Guarded, &h, &t);
        let check = e.check("rollback.error_rate[sequential]").unwrap();
        assert_eq!(
            check.status,
            CheckStatus::Pass,
            "{per_1000}‰: {}",
            check.detail
        );
        assert!(
            check.observed.unwrap() < 3.0,
            "{per_1000}‰: {}",
            check.detail
        );
    }
}

#[test]
fn the_recent_window_says_when_the_history_is_too_short() {
    let (h, t) = stage_of(10, |m| even(m, 5));
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    let check = e
        .check("rollback.error_rate[last 30m]")
        .expect("not left out");
    assert_eq!(check.status, CheckStatus::NotEnoughData);
    assert!(
        check.detail.contains("reaches back 10m"),
        "{}",
        check.detail
    );
    assert_ne!(e.verdict, Verdict::Rollback);
}

#[test]
fn a_path_at_96_percent_is_reviewed_and_one_at_98_never() {
    let look = "review.success_rate_in_band[stage at 1h]";
    let stage = "review.success_rate_in_band[sequential, stage]";
    let band = "review.success_rate_in_band[sequential]";
    // 96% at 12 async uploads a minute from the stage's start, failures
    // evenly spread. The look at 1 hour: 28 failures in 720 uploads, and a
    // path at 98% shows 25 or more with probability 0.65% (≤ 0.75%): review.
    // On the stage's totals at any time (4% against 2% failures): +0.79 per
    // 100 uploads against ln 3,000 ≈ 8.0, so about 85 minutes. On sliding
    // windows (4% against 2.18%): +0.61 per 100 against ln 100,000 ≈ 11.5,
    // so about 150 minutes.
    let first = |name: &str| {
        (30..=240).find(|&minutes| {
            let (h, t) = stage_of(minutes, |m| even(m, 40));
            let e = judge_history(EvaluationMode::Guarded, &h, &t);
            let fired = status(&e, name) == CheckStatus::Fail;
            if fired {
                assert_eq!(e.verdict, Verdict::ManualReview, "{}", e.reason);
            }
            fired
        })
    };
    assert_eq!(first(look), Some(60));
    let on_stage = first(stage);
    assert!(
        on_stage.is_some_and(|m| (80..=92).contains(&m)),
        "{on_stage:?}"
    );
    let on_windows = first(band);
    assert!(
        on_windows.is_some_and(|m| (140..=160).contains(&m)),
        "{on_windows:?}"
    );
    let (h, t) = stage_of(59, |m| even(m, 40));
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    let check = e.check(look).unwrap();
    assert_eq!(check.status, CheckStatus::NotEnoughData);
    assert!(
        check.detail.contains("the look is at 1h"),
        "{}",
        check.detail
    );
    let (h, t) = stage_of(60, |m| even(m, 40));
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    let check = e.check(look).unwrap();
    assert!(
        check
            .detail
            .contains("28 failures in 720 async uploads at the look")
            && check.detail.contains("reviews from 25 failures"),
        "{}",
        check.detail
    );
    // 98% for twelve hours: never.
    let (h, t) = stage_of(719, |m| even(m, 20));
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    for name in [
        look,
        "review.success_rate_in_band[stage at 3h]",
        band,
        stage,
    ] {
        assert_eq!(status(&e, name), CheckStatus::Pass, "{name}");
    }
    assert_ne!(e.verdict, Verdict::ManualReview, "{}", e.reason);
}

#[test]
fn a_look_judges_the_stage_as_it_was_at_the_look() {
    let look = "review.success_rate_in_band[stage at 1h]";
    // 26 failures in the first hour, then a clean hour: the look still
    // reviews (it judged the first hour), the stage's totals would not.
    let per_minute = |m: u64| if m <= 26 { (11, 1) } else { (12, 0) };
    let (h, t) = stage_of(120, per_minute);
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    assert_eq!(status(&e, look), CheckStatus::Fail);
    // 24 failures: a 1.19% event at 98%, above the look's 0.75%: no review.
    let per_minute = |m: u64| if m <= 24 { (11, 1) } else { (12, 0) };
    let (h, t) = stage_of(60, per_minute);
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    assert_eq!(status(&e, look), CheckStatus::Pass);
    // Once the history no longer holds the look's minute, the look says so.
    let mut short = History::new(30, Duration::from_secs(10));
    let (h, t) = stage_of(120, per_minute);
    for s in h.iter() {
        short.push(s.clone());
    }
    let e = judge_history(EvaluationMode::Guarded, &short, &t);
    let check = e.check(look).unwrap();
    assert_eq!(check.status, CheckStatus::NotEnoughData);
    assert!(
        check.detail.contains("no longer reaches back"),
        "{}",
        check.detail
    );
}

#[test]
fn a_band_of_no_width_is_still_judged_on_the_stage() {
    // review_success_band = [97%, 97%]: the stage's view tests 3.5% against
    // 2.5% failures; a path at 95% success crosses its bar within two hours.
    let mut plan = plan(EvaluationMode::Guarded);
    plan.triggers.review_success_band = [0.97, 0.97];
    let (h, t) = stage_of(120, |m| even(m, 50));
    let e = Evaluator::new(plan)
        .unwrap()
        .evaluate(1, &t, &h, at(t.at_unix_ms))
        .unwrap();
    let check = e
        .check("review.success_rate_in_band[sequential, stage]")
        .expect("guarded mode has it");
    assert_eq!(check.status, CheckStatus::Fail, "{}", check.detail);
    assert!(check.detail.contains("3.5% vs 2.5%"), "{}", check.detail);
}

#[test]
fn the_stage_band_review_waits_for_30_minutes_and_names_what_it_has() {
    let stage = "review.success_rate_in_band[sequential, stage]";
    // 90% success for 20 minutes: far in the band's bad side, but not yet
    // sustained for 30 minutes.
    let (h, t) = stage_of(20, |_| (108, 12));
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    let check = e.check(stage).expect("guarded mode has it");
    assert_eq!(check.status, CheckStatus::NotEnoughData);
    assert!(
        check
            .detail
            .contains("the stage has 2400 async uploads over 20m"),
        "{}",
        check.detail
    );
    // A path that was at 98.5% for ten hours and enters the band late: the
    // stage's totals stay far from the bar; the sliding windows catch it.
    // (After a history at the stage's own target or better, the
    // baseline-aware rollback would take it first: a step from 0.5% to 4%
    // is a regression to it.)
    let onset = 600;
    let (h, t) = stage_of(onset + 240, |m| {
        if m > onset { even(m, 40) } else { even(m, 15) }
    });
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    assert_eq!(status(&e, stage), CheckStatus::Pass);
    let band = "review.success_rate_in_band[sequential]";
    assert_eq!(status(&e, band), CheckStatus::Fail, "{}", e.reason);
    assert_eq!(e.verdict, Verdict::ManualReview, "{}", e.reason);
    let (h, t) = stage_of(onset + 240, |m| {
        if m > onset { even(m, 40) } else { even(m, 5) }
    });
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    assert_eq!(
        status(&e, "rollback.error_rate[sequential, baseline]"),
        CheckStatus::Fail
    );
}

#[test]
fn success_band_edges_95_and_97_are_inside_in_literal_mode() {
    for (success, in_band) in [(95, true), (97, true), (98, false)] {
        let (h, t) = history_of(40, |_| (success, 100 - success), |_| 100);
        let e = judge_history(EvaluationMode::Literal, &h, &t);
        let fired = status(&e, "review.success_rate_in_band") == CheckStatus::Fail;
        assert_eq!(fired, in_band, "{success}%");
    }
}

#[test]
fn a_break_in_the_band_restarts_the_clock() {
    // In band for 40 minutes except a healthy stretch at minutes 20–25.
    let (h, t) = history_of(
        40,
        |m| {
            if (20..=25).contains(&m) {
                (100, 0)
            } else {
                (96, 4)
            }
        },
        |_| 100,
    );
    let e = judge_history(EvaluationMode::Literal, &h, &t);
    assert_eq!(
        status(&e, "review.success_rate_in_band"),
        CheckStatus::Pass,
        "{}",
        e.reason
    );
}

#[test]
fn latency_above_120_percent_must_be_sustained() {
    // Async at 130 ms against sync at 100 ms (p50 ratio 1.3). Literal: true on
    // every 5-minute window of the last 30 minutes; guarded: the last 30
    // minutes as a whole (so as soon as the history reaches back that far).
    for (mode, name, needs) in [
        (EvaluationMode::Literal, "review.latency_ratio", 31),
        (
            EvaluationMode::Guarded,
            "review.latency_ratio[last 30m]",
            30,
        ),
    ] {
        let (h, t) = history_of(needs - 1, |_| (200, 0), |_| 130);
        let e = judge_history(mode, &h, &t);
        assert_ne!(status(&e, name), CheckStatus::Fail, "{mode:?}");
        assert_eq!(
            status(&e, "latency_ratio"),
            CheckStatus::Fail,
            "the stage criterion still holds it"
        );
        assert_eq!(e.verdict, Verdict::Hold);

        let (h, t) = history_of(needs, |_| (200, 0), |_| 130);
        let e = judge_history(mode, &h, &t);
        assert_eq!(status(&e, name), CheckStatus::Fail, "{mode:?}");
        assert_eq!(e.verdict, Verdict::ManualReview, "{}", e.reason);

        // 115%: held as long as you like, never a review.
        let (h, t) = history_of(60, |_| (200, 0), |_| 115);
        let e = judge_history(mode, &h, &t);
        assert_eq!(status(&e, name), CheckStatus::Pass, "{mode:?}");
    }
}

/// Minute `m` of a stage where async latencies spread over 50–250 ms times
/// `factor` and sync ones over 50–250 ms: `n_async` async and 100 sync
/// uploads a minute, all successes.
fn spread_minute(s: &mut MetricsSnapshot, m: u64, n_async: u64, factor: f64) {
    for i in 0..n_async {
        let ms = 50.0 + ((i * 37 + m * 11) % 201) as f64;
        s.arm_mut(Arm::Async).record(
            Outcome::Success,
            Duration::from_secs_f64(ms * factor / 1000.0),
        );
    }
    for i in 0..100 {
        let ms = 50 + (i * 37 + m * 13) % 201;
        s.arm_mut(Arm::Sync)
            .record(Outcome::Success, Duration::from_millis(ms));
    }
}

fn spread_stage(minutes: u64, n_async: u64, factor: f64) -> (History, MetricsSnapshot) {
    let mut history = History::default();
    let mut s = MetricsSnapshot::empty_at(at(T0_MS));
    history.push(s.clone());
    for m in 1..=minutes {
        spread_minute(&mut s, m, n_async, factor);
        s.at_unix_ms = T0_MS + m * MINUTE_MS;
        history.push(s.clone());
    }
    (history, s)
}

#[test]
fn the_latency_review_needs_its_interval_clear_of_what_the_stage_accepts() {
    let name = "review.latency_ratio[last 30m]";
    // 30% slower with one async upload a minute: 30 uploads cannot tell a
    // slow path from a 5%-slower one, and a window judged on every tick
    // needs more than that (`review_latency_min_uploads`, 200) before its
    // interval is trusted.
    let (h, t) = spread_stage(40, 1, 1.3);
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    let check = e.check(name).unwrap();
    assert_eq!(check.status, CheckStatus::NotEnoughData, "{}", check.detail);
    assert!(check.detail.contains("needs 200"), "{}", check.detail);
    // 5 a minute (150 in the window) is still below the minimum; 7 a
    // minute (210) is judged: the interval then says the path is slow.
    let (h, t) = spread_stage(40, 5, 1.3);
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    assert_eq!(e.check(name).unwrap().status, CheckStatus::NotEnoughData);
    let (h, t) = spread_stage(40, 7, 1.3);
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    let check = e.check(name).unwrap();
    assert!(check.observed.unwrap() > 1.2, "{}", check.detail);
    assert_eq!(check.status, CheckStatus::Fail, "{}", check.detail);
    // With 20 a minute it can.
    let (h, t) = spread_stage(40, 20, 1.3);
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    let check = e.check(name).unwrap();
    assert_eq!(check.status, CheckStatus::Fail, "{}", check.detail);
    let interval = check.interval.unwrap();
    assert!(
        interval.low > 1.05 && interval.low < 1.3 && interval.high > 1.3,
        "{interval:?}"
    );
}

#[test]
fn the_guarded_latency_criterion_waits_for_a_tight_interval() {
    // Same latency on both paths; 500 async uploads (the 10% stage's
    // minimum) leave the p50 ratio's upper bound above 105% + 2%.
    let (_, t) = spread_stage(25, 20, 1.0);
    let e = judge(plan(EvaluationMode::Guarded), &t);
    let check = e.check("latency_ratio").unwrap();
    assert_eq!(check.status, CheckStatus::NotEnoughData, "{}", check.detail);
    assert!(
        check.detail.contains("interval still too wide"),
        "{}",
        check.detail
    );
    assert_eq!(e.verdict, Verdict::Hold);
    // 6,000 are enough.
    let (_, t) = spread_stage(300, 20, 1.0);
    let e = judge(plan(EvaluationMode::Guarded), &t);
    let check = e.check("latency_ratio").unwrap();
    assert_eq!(check.status, CheckStatus::Pass, "{}", check.detail);
    assert!(check.interval.unwrap().high <= 1.07);
    // Literal mode judges the observed ratio alone.
    let (_, t) = spread_stage(25, 20, 1.0);
    let e = judge(plan(EvaluationMode::Literal), &t);
    assert_eq!(status(&e, "latency_ratio"), CheckStatus::Pass);
}

#[test]
fn a_late_regression_is_caught_by_the_recent_window() {
    // 60 healthy minutes (12,000 async uploads), then 10 minutes at 30% errors:
    // the stage's totals are still under 5% errors, the last 30 minutes are not.
    let (h, t) = history_of(70, |m| if m > 60 { (140, 60) } else { (199, 1) }, |_| 100);
    assert!(t.error_rate(Arm::Async).unwrap() < 0.05);
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    assert_eq!(e.verdict, Verdict::Rollback, "{}", e.reason);
    assert_eq!(status(&e, "rollback.error_rate[stage]"), CheckStatus::Pass);
    assert_eq!(
        status(&e, "rollback.error_rate[last 30m]"),
        CheckStatus::Fail
    );
}

#[test]
fn every_check_explains_itself_in_the_log_format() {
    let e = judge(plan(EvaluationMode::Guarded), &totals(3_980, 20, 0));
    for check in &e.checks {
        assert!(
            !check.name.is_empty() && !check.detail.is_empty(),
            "{check:?}"
        );
    }
    let json = serde_json::to_string(&e).unwrap();
    let back: async_upload_rollout::Evaluation = serde_json::from_str(&json).unwrap();
    assert_eq!(back, e);
}

#[test]
fn unknown_stage_is_an_error_not_a_panic() {
    let err = Evaluator::new(RolloutPlan::default())
        .unwrap()
        .evaluate(9, &totals(1, 0, 0), &History::default(), at(T0_MS))
        .unwrap_err();
    assert!(err.to_string().contains("stage 9"), "{err}");
}

#[test]
fn a_fixed_baseline_judges_latency_where_no_sync_traffic_is_left() {
    // The 100% stage: every upload is async, so there is nothing to compare with...
    let mut s = MetricsSnapshot::empty_at(at(T0_MS));
    add(&mut s, Arm::Async, 3_000, 0, 0, 100);
    let judge_last = |plan: RolloutPlan| {
        Evaluator::new(plan)
            .unwrap()
            .evaluate(3, &s, &History::default(), at(T0_MS))
            .unwrap()
    };
    let e = judge_last(plan(EvaluationMode::Guarded));
    assert_eq!(status(&e, "latency_ratio"), CheckStatus::NotEnoughData);
    // ...unless the plan fixes a baseline (mean: exact arithmetic).
    for (baseline_ms, expected) in [(100, CheckStatus::Pass), (95, CheckStatus::Fail)] {
        let mut p = plan(EvaluationMode::Guarded);
        p.stages[3].criteria.latency_statistic = LatencyStatistic::Mean;
        p.stages[3].criteria.baseline_latency = Some(Duration::from_millis(baseline_ms));
        let e = judge_last(p);
        assert_eq!(
            status(&e, "latency_ratio"),
            expected,
            "baseline {baseline_ms} ms"
        );
    }
    let p = RolloutPlan::from_toml_str(
        "[[stages]]\npercent = 100\ncriteria = { baseline_latency = \"180ms\" }\n",
    )
    .unwrap();
    assert_eq!(
        p.stages[0].criteria.baseline_latency,
        Some(Duration::from_millis(180))
    );
    assert_eq!(RolloutPlan::from_toml_str(&p.to_toml_string()).unwrap(), p);
}

#[test]
fn a_quadrillion_complaints_are_judged_at_once() {
    // Issue 11: the complaint evidence used to cost one step per complaint.
    let mut s = totals(10_000, 0, 0);
    s.arm_mut(Arm::Async).complaints = 1_000_000_000_000_000;
    s.arm_mut(Arm::Sync).complaints = 1_000_000_000_000_000;
    let started = std::time::Instant::now();
    let e = judge(plan(EvaluationMode::Guarded), &s);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // 10^15 complaints on 10,000 async uploads against 10^15 on 10,000 sync
    // ones: the same rate, no evidence of an increase.
    assert_eq!(status(&e, "review.complaints"), CheckStatus::Pass);
    s.arm_mut(Arm::Sync).complaints = 1_000_000_000_000;
    let e = judge(plan(EvaluationMode::Guarded), &s);
    assert_eq!(status(&e, "review.complaints"), CheckStatus::Fail);
}

#[test]
fn a_critical_error_that_was_not_an_upload_rolls_back_with_its_reason() {
    // MetricsAccumulator::record_critical: a crash is no upload, but it is
    // a critical error of the async path.
    let metrics = async_upload_rollout::MetricsAccumulator::new();
    for _ in 0..1_000 {
        metrics.record(Arm::Async, Outcome::Success, Duration::from_millis(100));
        metrics.record(Arm::Sync, Outcome::Success, Duration::from_millis(100));
    }
    metrics.record_critical(Arm::Async, "async worker 3 killed: out of memory");
    let mut s = metrics.snapshot();
    s.at_unix_ms = T0_MS;
    assert_eq!(s.judged(Arm::Async), 1_000, "the crash is not an upload");
    for mode in [EvaluationMode::Literal, EvaluationMode::Guarded] {
        let e = judge(plan(mode), &s);
        assert_eq!(e.verdict, Verdict::Rollback, "{mode:?}");
        assert_eq!(status(&e, "rollback.critical_errors"), CheckStatus::Fail);
        assert!(
            e.reason.contains("async worker 3 killed: out of memory"),
            "{}",
            e.reason
        );
    }
    // On the sync path it is logged but does not roll the rollout back.
    let metrics = async_upload_rollout::MetricsAccumulator::new();
    metrics.record_critical(Arm::Sync, "sync worker crashed");
    let mut s = totals(10_000, 0, 0);
    s.arm_mut(Arm::Sync).critical_events = metrics.snapshot().arm(Arm::Sync).critical_events;
    assert_eq!(
        status(
            &judge(plan(EvaluationMode::Guarded), &s),
            "rollback.critical_errors"
        ),
        CheckStatus::Pass
    );
}

/// The 100% stage: `minutes` of `n_async` async uploads a minute (latency
/// spread over 50–250 ms times `factor`), no sync traffic.
fn all_async_stage(minutes: u64, n_async: u64, factor: f64) -> (History, MetricsSnapshot) {
    let mut history = History::default();
    let mut s = MetricsSnapshot::empty_at(at(T0_MS));
    history.push(s.clone());
    for m in 1..=minutes {
        for i in 0..n_async {
            let ms = 50.0 + ((i * 37 + m * 11) % 201) as f64;
            s.arm_mut(Arm::Async).record(
                Outcome::Success,
                Duration::from_secs_f64(ms * factor / 1000.0),
            );
        }
        s.at_unix_ms = T0_MS + m * MINUTE_MS;
        history.push(s.clone());
    }
    (history, s)
}

#[test]
fn the_last_stage_compares_with_the_sync_baseline_carried_from_the_stage_before() {
    // The 50% stage being left: 60,000 sync uploads over 50–250 ms, 6 complaints.
    let (_, leaving) = spread_stage(600, 0, 1.0);
    let mut leaving = leaving;
    leaving.arm_mut(Arm::Sync).complaints = 6;
    let last = 3; // the 100% stage
    let evaluator = Evaluator::new(plan(EvaluationMode::Guarded)).unwrap();
    let judge_with =
        |evaluator: &Evaluator, baseline: Option<&ArmMetrics>, h: &History, t: &MetricsSnapshot| {
            evaluator
                .evaluate_with_sync_baseline(last, t, h, baseline, at(t.at_unix_ms))
                .unwrap()
        };
    let baseline = evaluator.carry_sync_baseline(None, &leaving);
    assert_eq!(baseline.as_ref().unwrap().judged(), 60_000);
    let plain = |h: &History, t: &MetricsSnapshot| judge_with(&evaluator, None, h, t);
    let carried =
        |h: &History, t: &MetricsSnapshot| judge_with(&evaluator, baseline.as_ref(), h, t);
    // Without a baseline, `evaluate` judges as with none.
    let (h, t) = all_async_stage(300, 100, 1.0);
    assert_eq!(
        evaluator.evaluate(last, &t, &h, at(t.at_unix_ms)).unwrap(),
        plain(&h, &t)
    );

    // Same latency as the baseline, 30,000 async uploads: the criterion can
    // pass only with the baseline.
    let (h, t) = all_async_stage(300, 100, 1.0);
    let e = plain(&h, &t);
    let check = e.check("latency_ratio").unwrap();
    assert_eq!(check.status, CheckStatus::NotEnoughData, "{}", check.detail);
    assert!(
        check.detail.contains("no carried sync baseline"),
        "{}",
        check.detail
    );
    let e = carried(&h, &t);
    let check = e.check("latency_ratio").unwrap();
    assert_eq!(check.status, CheckStatus::Pass, "{}", check.detail);
    assert!(
        check
            .detail
            .contains("carried sync baseline (60000 uploads)"),
        "{}",
        check.detail
    );
    assert_eq!(e.verdict, Verdict::Advance, "{}", e.reason);

    // 30% slower: the criterion fails and the review fires.
    let (h, t) = all_async_stage(300, 100, 1.3);
    let e = carried(&h, &t);
    assert_eq!(status(&e, "latency_ratio"), CheckStatus::Fail);
    assert_eq!(
        status(&e, "review.latency_ratio[last 30m]"),
        CheckStatus::Fail
    );
    assert_eq!(e.verdict, Verdict::ManualReview, "{}", e.reason);
    // Without the baseline the review has nothing to compare with: it says so.
    let e = plain(&h, &t);
    assert_eq!(
        status(&e, "review.latency_ratio[last 30m]"),
        CheckStatus::NotEnoughData
    );

    // Complaints: 30 on 30,000 async uploads against 6 on 60,000 sync ones.
    let (h, mut t) = all_async_stage(300, 100, 1.0);
    t.arm_mut(Arm::Async).complaints = 30;
    assert_eq!(
        status(&plain(&h, &t), "review.complaints"),
        CheckStatus::NotEnoughData
    );
    let e = carried(&h, &t);
    assert_eq!(
        status(&e, "review.complaints"),
        CheckStatus::Fail,
        "{}",
        e.reason
    );

    // A stage left with almost no sync traffic does not replace it.
    let (_, tiny) = spread_stage(1, 0, 1.0);
    let mut tiny = tiny;
    *tiny.arm_mut(Arm::Sync) = Default::default();
    tiny.arm_mut(Arm::Sync)
        .record(Outcome::Success, Duration::from_millis(5));
    let kept = evaluator.carry_sync_baseline(baseline.clone(), &tiny);
    assert_eq!(kept.as_ref().unwrap().judged(), 60_000);
    assert_eq!(evaluator.carry_sync_baseline(None, &tiny), None);
    // A plan's fixed baseline still wins for latency.
    let mut p = plan(EvaluationMode::Guarded);
    p.stages[last].criteria.baseline_latency = Some(Duration::from_millis(100));
    let fixed = Evaluator::new(p).unwrap();
    let (h, t) = all_async_stage(300, 100, 1.0);
    let check = judge_with(&fixed, baseline.as_ref(), &h, &t)
        .check("latency_ratio")
        .cloned()
        .unwrap();
    assert!(check.detail.contains("100ms"), "{}", check.detail);
    assert_eq!(
        check.status,
        CheckStatus::Fail,
        "p50 ≈ 150 ms against a fixed 100 ms"
    );
}

#[test]
fn a_latency_review_window_without_sync_traffic_is_not_judged_on_a_handful() {
    // 40 minutes, async 30% slower; the sync path's only uploads (10) are in
    // the first minute, so no 30-minute window ending now has any.
    let mut history = History::default();
    let mut s = MetricsSnapshot::empty_at(at(T0_MS));
    history.push(s.clone());
    for m in 1..=40 {
        for i in 0..20u64 {
            let ms = 50.0 + ((i * 37 + m * 11) % 201) as f64;
            s.arm_mut(Arm::Async)
                .record(Outcome::Success, Duration::from_secs_f64(ms * 1.3 / 1000.0));
        }
        if m == 1 {
            add(&mut s, Arm::Sync, 10, 0, 0, 100);
        }
        s.at_unix_ms = T0_MS + m * MINUTE_MS;
        history.push(s.clone());
    }
    let e = judge_history(EvaluationMode::Guarded, &history, &s);
    let check = e.check("review.latency_ratio[last 30m]").unwrap();
    assert_eq!(check.status, CheckStatus::NotEnoughData, "{}", check.detail);
    assert!(check.detail.contains("0 sync uploads"), "{}", check.detail);
    let e = judge_history(EvaluationMode::Literal, &history, &s);
    assert_eq!(status(&e, "review.latency_ratio"), CheckStatus::Pass);
}
