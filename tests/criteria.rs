//! The evaluator's thresholds, triggers and severity order, table-driven.
//!
//! Snapshots are built by hand so every count is exact. Unless a test says
//! otherwise, the sync arm is healthy and plentiful and both arms have the
//! same latency, so only the rule under test can fail.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_upload_rollout::{
    Arm, CheckStatus, EvaluationMode, Evaluator, History, LatencyStatistic, MemoryStats,
    MetricsSnapshot, Outcome, RolloutPlan, Verdict,
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
    // uploads a minute conclusively so for the guarded mode too. It has held
    // from the first evaluation point (minute 1); at minute 30 it has held 29
    // minutes, at minute 31 it has held 30.
    for mode in [EvaluationMode::Literal, EvaluationMode::Guarded] {
        let (h, t) = history_of(30, |_| (1_920, 80), |_| 100);
        let e = judge_history(mode, &h, &t);
        assert_eq!(
            status(&e, "review.success_rate_in_band"),
            CheckStatus::Pass,
            "{mode:?} 29 min"
        );
        assert_ne!(e.verdict, Verdict::ManualReview);

        let (h, t) = history_of(31, |_| (1_920, 80), |_| 100);
        let e = judge_history(mode, &h, &t);
        assert_eq!(
            status(&e, "review.success_rate_in_band"),
            CheckStatus::Fail,
            "{mode:?} 30 min"
        );
        assert_eq!(e.verdict, Verdict::ManualReview, "{}", e.reason);
    }
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
    // Async at 130 ms against sync at 100 ms (p50 ratio 1.3).
    let (h, t) = history_of(30, |_| (200, 0), |_| 130);
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    assert_eq!(status(&e, "review.latency_ratio"), CheckStatus::Pass);
    assert_eq!(
        status(&e, "latency_ratio"),
        CheckStatus::Fail,
        "the stage criterion still holds it"
    );
    assert_eq!(e.verdict, Verdict::Hold);

    let (h, t) = history_of(31, |_| (200, 0), |_| 130);
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    assert_eq!(status(&e, "review.latency_ratio"), CheckStatus::Fail);
    assert_eq!(e.verdict, Verdict::ManualReview, "{}", e.reason);

    // 115%: held as long as you like, never a review.
    let (h, t) = history_of(60, |_| (200, 0), |_| 115);
    let e = judge_history(EvaluationMode::Guarded, &h, &t);
    assert_eq!(status(&e, "review.latency_ratio"), CheckStatus::Pass);
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
