//! Every quantile is within the stated relative error of the exact one.

use std::sync::Arc;
use std::time::Duration;

use async_upload_rollout::{
    Arm, MetricsAccumulator, Outcome, clock::ManualClock, metrics::LatencyHistogram,
};
use proptest::prelude::*;

const HOUR_NS: u64 = 3_600_000_000_000;
const HIGHEST_NS: u64 = LatencyHistogram::HIGHEST_TRACKABLE.as_nanos() as u64;

/// Latencies from every decade, the named edges, and values over the range.
fn latency_ns() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(1u64),                  // 1 ns
        Just(1_000u64),              // 1 µs
        Just(HOUR_NS),               // 1 hour
        Just(HIGHEST_NS),            // the top of the range
        Just(HIGHEST_NS + 1),        // just over: clamps
        HIGHEST_NS..=10 * HOUR_NS,   // far over: clamps, still counted
        0u64..1_000,                 // sub-microsecond (exact buckets)
        1_000u64..1_000_000,         // µs
        1_000_000u64..1_000_000_000, // ms
        1_000_000_000u64..=HOUR_NS,  // s up to an hour
    ]
}

/// The nearest-rank quantile of sorted `values`: the `max(1, ⌈q·n⌉)`-th.
fn exact_quantile(sorted: &[u64], q: f64) -> u64 {
    let n = sorted.len() as u64;
    let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
    sorted[rank as usize - 1]
}

fn assert_within_bound(reported: Duration, exact_ns: u64, q: f64) {
    let reported = reported.as_nanos() as f64;
    let exact = exact_ns as f64;
    let error = (reported - exact).abs();
    assert!(
        error <= exact * LatencyHistogram::RELATIVE_ERROR,
        "q = {q}: reported {reported} ns, exact {exact} ns, relative error {}",
        error / exact
    );
}

const QUANTILES: [f64; 11] = [
    0.0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_quantile_is_within_the_stated_relative_error(
        values in prop::collection::vec(latency_ns(), 1..400),
        extra_q in 0.0f64..=1.0,
    ) {
        // Through the shared accumulator, the path production data takes.
        let metrics = MetricsAccumulator::with_clock(Arc::new(ManualClock::default()));
        for &ns in &values {
            metrics.record(Arm::Sync, Outcome::Success, Duration::from_nanos(ns));
        }
        let snapshot = metrics.snapshot();
        let histogram = &snapshot.arm(Arm::Sync).latency;

        let mut clamped: Vec<u64> = values.iter().map(|&v| v.min(HIGHEST_NS)).collect();
        clamped.sort_unstable();
        prop_assert_eq!(histogram.count(), values.len() as u64, "clamped values are counted");
        prop_assert_eq!(histogram.sum_ns(), clamped.iter().sum::<u64>());
        prop_assert_eq!(histogram.min(), Some(Duration::from_nanos(clamped[0])));
        prop_assert_eq!(histogram.max(), Some(Duration::from_nanos(*clamped.last().unwrap())));

        for q in QUANTILES.into_iter().chain([extra_q]) {
            let reported = snapshot.latency_quantile(Arm::Sync, q).unwrap();
            assert_within_bound(reported, exact_quantile(&clamped, q), q);
        }

        // The plain, hand-filled histogram uses the same buckets.
        let mut plain = LatencyHistogram::new();
        for &ns in &values {
            plain.record(Duration::from_nanos(ns));
        }
        prop_assert_eq!(&plain, histogram);
    }
}

#[test]
fn named_edges_are_exact_or_within_the_bound() {
    // One value each: the quantile is clamped into [min, max] = the value.
    for ns in [0, 1, 63, 64, 1_000, 999_999, HOUR_NS, HIGHEST_NS] {
        let mut h = LatencyHistogram::new();
        h.record(Duration::from_nanos(ns));
        assert_eq!(h.quantile(0.5), Some(Duration::from_nanos(ns)), "{ns}");
    }
    // Two values in one wide bucket: the median is the bucket's midpoint.
    let mut h = LatencyHistogram::new();
    h.record(Duration::from_nanos(HOUR_NS));
    h.record(Duration::from_nanos(HOUR_NS + 1));
    assert_within_bound(h.quantile(0.5).unwrap(), HOUR_NS, 0.5);
}
