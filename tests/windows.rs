//! Windows cut from a `History` on a `ManualClock`: no test sleeps.

use std::sync::Arc;
use std::time::Duration;

use async_upload_rollout::{
    Arm, History, MetricsAccumulator, Outcome,
    clock::{Clock, ManualClock},
};

const STEP: Duration = Duration::from_secs(10);
const MINUTE: Duration = Duration::from_secs(60);
/// 31 minutes of 10-second steps.
const STEPS: u64 = 186;
/// Steps in the last 5 minutes have errors on the async path.
const FIRST_BAD_STEP: u64 = STEPS - 30 + 1;

/// What happens in step `s`: 10 successes per arm, plus 2 async errors and
/// slower async uploads in the last 5 minutes.
fn step(metrics: &MetricsAccumulator, s: u64) {
    let bad = s >= FIRST_BAD_STEP;
    let async_latency = Duration::from_millis(if bad { 200 } else { 80 });
    for _ in 0..10 {
        metrics.record(Arm::Async, Outcome::Success, async_latency);
        metrics.record(Arm::Sync, Outcome::Success, Duration::from_millis(100));
    }
    if bad {
        metrics.record(Arm::Async, Outcome::Error, async_latency);
        metrics.record(Arm::Async, Outcome::Error, async_latency);
    }
    metrics.record(Arm::Sync, Outcome::Rejected, Duration::from_millis(1));
}

/// Runs 31 simulated minutes, pushing a snapshot every 10 s.
fn simulate(history: &mut History) {
    let clock = ManualClock::default();
    let metrics = MetricsAccumulator::with_clock(Arc::new(clock.clone()));
    history.push(metrics.snapshot());
    for s in 1..=STEPS {
        clock.advance(STEP);
        step(&metrics, s);
        history.push(metrics.snapshot());
    }
}

/// (async successes, async errors) over steps `first..=last`.
fn expected_async(first: u64, last: u64) -> (u64, u64) {
    let bad = (first..=last).filter(|&s| s >= FIRST_BAD_STEP).count() as u64;
    ((last - first + 1) * 10, bad * 2)
}

#[test]
fn last_5_and_30_minutes_after_31_minutes() {
    let mut history = History::default();
    simulate(&mut history);
    assert_eq!(history.len() as u64, STEPS + 1);

    let five = history.window(5 * MINUTE).unwrap();
    assert_eq!(five.span(), 5 * MINUTE);
    assert_eq!(
        (five.arm(Arm::Async).success, five.arm(Arm::Async).error),
        expected_async(STEPS - 29, STEPS)
    );
    assert_eq!(five.error_rate(Arm::Async), Some(2.0 / 12.0));
    assert_eq!(five.uploads(Arm::Sync), 30 * 11);
    assert_eq!(five.judged(Arm::Sync), 30 * 10);
    let p50 = five.latency_quantile(Arm::Async, 0.5).unwrap();
    assert!(p50.abs_diff(Duration::from_millis(200)) <= Duration::from_millis(2));

    let thirty = history.window(30 * MINUTE).unwrap();
    assert_eq!(thirty.span(), 30 * MINUTE);
    assert_eq!(
        (thirty.arm(Arm::Async).success, thirty.arm(Arm::Async).error),
        expected_async(STEPS - 179, STEPS)
    );
    assert!(history.window(32 * MINUTE).is_none(), "history starts at 0");
    assert!(
        history.window(31 * MINUTE).is_some(),
        "the first snapshot is at 0"
    );
}

#[test]
fn thirty_minutes_in_windows_of_five() {
    let mut history = History::default();
    simulate(&mut history);
    let windows = history.windows_over(30 * MINUTE, 5 * MINUTE).unwrap();
    assert_eq!(windows.len(), 6);
    for (k, window) in windows.iter().enumerate() {
        let first = STEPS - 179 + 30 * k as u64;
        assert_eq!(window.span(), 5 * MINUTE, "window {k}");
        assert_eq!(
            (window.arm(Arm::Async).success, window.arm(Arm::Async).error),
            expected_async(first, first + 29),
            "window {k}"
        );
    }
    // "Has the async error rate been 0 for 30 minutes?" No: only the last 5 failed.
    let clean: Vec<bool> = windows
        .iter()
        .map(|w| w.error_rate(Arm::Async) == Some(0.0))
        .collect();
    assert_eq!(clean, [true, true, true, true, true, false]);
    assert!(history.windows_over(32 * MINUTE, 5 * MINUTE).is_none());

    // A span that `each` does not divide: the last window is shorter.
    let uneven = history.windows_over(12 * MINUTE, 5 * MINUTE).unwrap();
    let spans: Vec<Duration> = uneven.iter().map(|w| w.span()).collect();
    assert_eq!(spans, [5 * MINUTE, 5 * MINUTE, 2 * MINUTE]);
}

#[test]
fn a_ring_that_wrapped_still_answers() {
    // 40 snapshots 10 s apart reach back 390 s: 31 minutes wrap it many times.
    let mut history = History::new(40, STEP);
    simulate(&mut history);
    assert_eq!(history.len(), 40);
    assert_eq!(
        history.oldest().unwrap().at_unix_ms + 390_000,
        history.latest().unwrap().at_unix_ms
    );

    let five = history.window(5 * MINUTE).unwrap();
    assert_eq!(
        (five.arm(Arm::Async).success, five.arm(Arm::Async).error),
        expected_async(STEPS - 29, STEPS)
    );
    let six = history.window(6 * MINUTE).unwrap();
    assert_eq!(six.arm(Arm::Async).success, 36 * 10);
    assert!(history.window(7 * MINUTE).is_none(), "overwritten");
    assert!(history.windows_over(30 * MINUTE, 5 * MINUTE).is_none());
    let minutes = history.windows_over(5 * MINUTE, MINUTE).unwrap();
    assert_eq!(minutes.len(), 5);
    assert!(minutes.iter().all(|w| w.arm(Arm::Async).error == 12));
}

#[test]
fn frequent_pushes_keep_the_spacing_and_the_newest() {
    let clock = ManualClock::default();
    let metrics = MetricsAccumulator::with_clock(Arc::new(clock.clone()));
    let mut history = History::default();
    for _ in 0..=600 {
        metrics.record(Arm::Sync, Outcome::Success, Duration::from_millis(5));
        history.push(metrics.snapshot());
        clock.advance(Duration::from_secs(1));
    }
    assert_eq!(
        history.len(),
        61,
        "one per 10 s over 10 minutes, plus none extra"
    );
    assert_eq!(history.latest().unwrap().uploads(Arm::Sync), 601);
    let minute = history.window(MINUTE).unwrap();
    assert_eq!(minute.uploads(Arm::Sync), 60);
    let since = history
        .since_time(clock.now() - Duration::from_secs(121))
        .unwrap();
    assert_eq!(since.uploads(Arm::Sync), 120);
}

#[test]
fn a_window_across_a_reset_counts_from_the_reset_and_says_so() {
    let clock = ManualClock::default();
    let metrics = MetricsAccumulator::with_clock(Arc::new(clock.clone()));
    let mut history = History::default();
    for minute in 0..10 {
        if minute == 7 {
            metrics.reset(); // a new stage starts
        }
        for _ in 0..6 {
            metrics.record(Arm::Async, Outcome::Success, Duration::from_millis(50));
            history.push(metrics.snapshot());
            clock.advance(STEP);
        }
    }
    let last_5 = history.window(5 * MINUTE).unwrap();
    assert_eq!(last_5.generation, 1, "the window spans a reset");
    assert_eq!(last_5.uploads(Arm::Async), 18, "everything since the reset");
    assert_eq!(last_5.span(), Duration::from_secs(170));
    let last_2 = history.window(2 * MINUTE).unwrap();
    assert_eq!(last_2.generation, 0);
    assert_eq!(last_2.uploads(Arm::Async), 12);
}
