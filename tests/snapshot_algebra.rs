//! Windows and merges are exact: `since` then `merge` gives back the later
//! snapshot, merging is commutative and associative, and a merge is the
//! pooled data.

use std::sync::Arc;
use std::time::Duration;

use async_upload_rollout::{
    Arm, MetricsAccumulator, MetricsSnapshot, Outcome, clock::ManualClock, metrics::HistogramBucket,
};
use proptest::prelude::*;

/// One thing an upload handler can record.
#[derive(Clone, Copy, Debug)]
enum Op {
    Upload(Arm, Outcome, u64),
    Complaint(Arm),
    Memory(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let arm = prop_oneof![Just(Arm::Async), Just(Arm::Sync)];
    let outcome = prop::sample::select(Outcome::ALL.to_vec());
    let latency = prop_oneof![
        0u64..2_000,
        2_000u64..50_000_000,
        50_000_000u64..10_000_000_000
    ];
    prop_oneof![
        8 => (arm.clone(), outcome, latency).prop_map(|(a, o, l)| Op::Upload(a, o, l)),
        1 => arm.prop_map(Op::Complaint),
        1 => (1u64 << 20..1u64 << 32).prop_map(Op::Memory),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 0..120)
}

/// Records `ops`; a complaint only about an upload of the same sequence
/// (no more complaints than uploads on its arm), as complaints arrive: the
/// accumulator caps complaints at uploads, so only then are they exact.
fn apply(metrics: &MetricsAccumulator, ops: &[Op]) {
    let mut open = [0u64; 2];
    for &op in ops {
        match op {
            Op::Upload(arm, outcome, ns) => {
                metrics.record(arm, outcome, Duration::from_nanos(ns));
                open[arm as usize] += 1;
            }
            Op::Complaint(arm) if open[arm as usize] > 0 => {
                metrics.record_complaint(arm);
                open[arm as usize] -= 1;
            }
            Op::Complaint(_) => {}
            Op::Memory(bytes) => metrics.record_memory(bytes),
        }
    }
}

/// Records `ops` as they are, complaints without uploads included.
fn apply_all(metrics: &MetricsAccumulator, ops: &[Op]) {
    for &op in ops {
        match op {
            Op::Upload(arm, outcome, ns) => metrics.record(arm, outcome, Duration::from_nanos(ns)),
            Op::Complaint(arm) => metrics.record_complaint(arm),
            Op::Memory(bytes) => metrics.record_memory(bytes),
        }
    }
}

fn fed(clock: &ManualClock, ops: &[Op]) -> MetricsAccumulator {
    let metrics = MetricsAccumulator::with_clock(Arc::new(clock.clone()));
    apply(&metrics, ops);
    metrics
}

/// Memory is a level, not a count: merge adds it (instances' memory adds
/// up) while `since` keeps the later one, so identities about counts leave
/// it out.
fn counts_only(snapshot: &MetricsSnapshot) -> MetricsSnapshot {
    let mut counts = snapshot.clone();
    counts.memory = None;
    counts
}

fn buckets(snapshot: &MetricsSnapshot, arm: Arm) -> Vec<HistogramBucket> {
    snapshot.arm(arm).latency.buckets().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn since_then_merge_reconstructs_the_later_snapshot(first in ops(), second in ops()) {
        let clock = ManualClock::default();
        let metrics = fed(&clock, &first);
        let a = metrics.snapshot();
        clock.advance(Duration::from_secs(300));
        apply(&metrics, &second);
        let b = metrics.snapshot();

        let window = b.since(&a);
        prop_assert_eq!(window.generation, 0);
        prop_assert_eq!(window.span(), Duration::from_secs(300));
        prop_assert_eq!(window.memory, b.memory, "a window keeps the later memory");
        prop_assert_eq!(counts_only(&a.merge(&window)), counts_only(&b));
        prop_assert_eq!(counts_only(&window.merge(&a)), counts_only(&b));

        // The window holds exactly what was recorded in it (min and max are
        // bounded within their bucket, so they are compared via the buckets).
        let only_second = fed(&clock, &second).snapshot();
        for arm in Arm::ALL {
            let (w, o) = (window.arm(arm), only_second.arm(arm));
            for outcome in Outcome::ALL {
                prop_assert_eq!(w.count(outcome), o.count(outcome));
            }
            prop_assert_eq!(w.complaints, o.complaints);
            prop_assert_eq!(w.latency.count(), o.latency.count());
            prop_assert_eq!(w.latency.sum_ns(), o.latency.sum_ns());
            prop_assert_eq!(buckets(&window, arm), buckets(&only_second, arm));
            prop_assert_eq!(w.success_rate(), o.success_rate());
            prop_assert_eq!(w.error_rate(), o.error_rate());
            prop_assert_eq!(w.latency.mean(), o.latency.mean());
            if let (Some(min), Some(exact)) = (w.latency.min(), o.latency.min()) {
                prop_assert!(min <= exact);
                prop_assert!(exact.as_secs_f64() - min.as_secs_f64() <= exact.as_secs_f64() / 64.0);
            }
        }
    }

    /// Issue 11: a reader refuses complaints above uploads, so nothing
    /// this crate writes may have them: snapshots and windows cap them, and
    /// every snapshot, window and merge survives a JSON round trip.
    #[test]
    fn complaints_never_exceed_uploads_and_every_result_reads_back(first in ops(), second in ops()) {
        let clock = ManualClock::default();
        let metrics = MetricsAccumulator::with_clock(Arc::new(clock.clone()));
        apply_all(&metrics, &first);
        let a = metrics.snapshot();
        apply_all(&metrics, &second);
        let b = metrics.snapshot();
        for s in [&a, &b, &b.since(&a), &a.merge(&b)] {
            for arm in Arm::ALL {
                prop_assert!(s.complaints(arm) <= s.uploads(arm));
            }
            let json = serde_json::to_string(s).unwrap();
            let back: MetricsSnapshot = serde_json::from_str(&json)
                .map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
            prop_assert_eq!(&back, s);
        }
    }

    #[test]
    fn merge_is_commutative_and_associative(x in ops(), y in ops(), z in ops()) {
        let clock = ManualClock::default();
        let (x, y, z) = (fed(&clock, &x).snapshot(), fed(&clock, &y).snapshot(), fed(&clock, &z).snapshot());
        prop_assert_eq!(x.merge(&y), y.merge(&x));
        prop_assert_eq!(x.merge(&y).merge(&z), x.merge(&y.merge(&z)));
        prop_assert_eq!(x.merge(&MetricsSnapshot::empty_at(x.at())), x.clone());
    }

    #[test]
    fn a_merge_equals_the_pooled_data(x in ops(), y in ops()) {
        let clock = ManualClock::default();
        let merged = fed(&clock, &x).snapshot().merge(&fed(&clock, &y).snapshot());
        // x's complaints, then y's: the same ones the two instances took.
        let pooled = fed(&clock, &x);
        apply(&pooled, &y);
        let pooled = pooled.snapshot();
        prop_assert_eq!(counts_only(&merged), counts_only(&pooled));
        for arm in Arm::ALL {
            prop_assert_eq!(merged.uploads(arm), pooled.uploads(arm));
            prop_assert_eq!(merged.success_rate(arm), pooled.success_rate(arm));
            prop_assert_eq!(merged.error_rate(arm), pooled.error_rate(arm));
            prop_assert_eq!(merged.mean_latency(arm), pooled.mean_latency(arm));
            for q in [0.5, 0.95, 0.99] {
                prop_assert_eq!(merged.latency_quantile(arm, q), pooled.latency_quantile(arm, q));
            }
        }
    }
}

#[test]
fn merged_memory_is_the_sum_of_the_instances() {
    let clock = ManualClock::default();
    let a = fed(&clock, &[Op::Memory(100), Op::Memory(150), Op::Memory(120)]).snapshot();
    let b = fed(&clock, &[Op::Memory(300)]).snapshot();
    let memory = a.merge(&b).memory.unwrap();
    assert_eq!(
        (memory.baseline, memory.current, memory.peak),
        (400, 420, 450)
    );
    assert!((a.merge(&b).memory_growth().unwrap() - 0.05).abs() < 1e-12);
    let none = fed(&clock, &[]).snapshot();
    assert_eq!(a.merge(&none).memory, a.memory);
}
