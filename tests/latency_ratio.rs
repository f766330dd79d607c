//! The async / sync p50 ratio the evaluator compares with its thresholds is
//! only as good as the histogram's buckets: each quantile is within
//! `ε` = [`LatencyHistogram::RELATIVE_ERROR`] (1/256) of the exact one, so a
//! ratio of two is within a factor `(1 ± ε)/(1 ∓ ε)` of the exact ratio,
//! about ±2ε ≈ ±0.78%. These tests read the ratio where the rollout reads
//! it, the `latency_ratio` check of the default plan's 50% stage (threshold
//! 102%), in `literal` mode (the observed ratio alone); the last test checks
//! the confidence interval that `guarded` mode puts around it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_upload_rollout::{
    Arm, Check, Evaluator, History, MetricsSnapshot, Outcome, RolloutPlan,
    judge::{CheckStatus, EvaluationMode},
    metrics::LatencyHistogram,
};

const EPS: f64 = LatencyHistogram::RELATIVE_ERROR;
/// The 50% stage of the default plan, the one with the 102% threshold.
const STAGE_50: usize = 2;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_762_300_800_000)
}

/// The `latency_ratio` check of the 50% stage in `mode` over arms that
/// recorded these latencies (ns), all successful.
fn judge_in(mode: EvaluationMode, async_ns: &[u64], sync_ns: &[u64]) -> Check {
    let mut totals = MetricsSnapshot::empty_at(now());
    for (arm, values) in [(Arm::Async, async_ns), (Arm::Sync, sync_ns)] {
        for &ns in values {
            totals
                .arm_mut(arm)
                .record(Outcome::Success, Duration::from_nanos(ns));
        }
    }
    let mut plan = RolloutPlan::default();
    plan.evaluation.mode = mode;
    assert_eq!(plan.stages[STAGE_50].criteria.max_latency_ratio, 1.02);
    let evaluation = Evaluator::new(plan)
        .unwrap()
        .evaluate(STAGE_50, &totals, &History::default(), now())
        .unwrap();
    evaluation.check("latency_ratio").unwrap().clone()
}

/// The observed ratio and the literal verdict on it.
fn judge(async_ns: &[u64], sync_ns: &[u64]) -> (f64, CheckStatus) {
    let check = judge_in(EvaluationMode::Literal, async_ns, sync_ns);
    (check.observed.unwrap(), check.status)
}

/// The nearest-rank p50 of `values`: the `max(1, ⌈n/2⌉)`-th smallest.
fn exact_p50(values: &[u64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len().div_ceil(2).max(1) - 1] as f64
}

/// splitmix64: a fixed, dependency-free stream of uniform `u64`s.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `(0, 1)`.
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

/// Draws one latency in ns.
type Draw = Box<dyn Fn(&mut Rng) -> f64>;

/// Latency distributions from microseconds to minutes, in ns.
fn distributions() -> Vec<(&'static str, Draw)> {
    vec![
        (
            "uniform 20-200 ms",
            Box::new(|r: &mut Rng| 20e6 + 180e6 * r.unit()),
        ),
        (
            "log-uniform 1 ms-10 s",
            Box::new(|r: &mut Rng| 1e6 * 1e4f64.powf(r.unit())),
        ),
        (
            "exponential, mean 80 ms",
            Box::new(|r: &mut Rng| -80e6 * r.unit().ln()),
        ),
        (
            "log-normal, median 150 ms, sigma 0.6",
            Box::new(|r: &mut Rng| {
                let z =
                    (-2.0 * r.unit().ln()).sqrt() * (2.0 * std::f64::consts::PI * r.unit()).cos();
                150e6 * (0.6 * z).exp()
            }),
        ),
        (
            "bimodal 30 ms / 2 s",
            Box::new(|r: &mut Rng| {
                if r.unit() < 0.6 {
                    30e6 * (1.0 + 0.1 * r.unit())
                } else {
                    2e9 * (1.0 + 0.5 * r.unit())
                }
            }),
        ),
        (
            "microseconds 2-50 µs",
            Box::new(|r: &mut Rng| 2e3 + 48e3 * r.unit()),
        ),
        (
            "minutes 1-40 min",
            Box::new(|r: &mut Rng| 60e9 * (1.0 + 39.0 * r.unit())),
        ),
    ]
}

fn sample(draw: &dyn Fn(&mut Rng) -> f64, rng: &mut Rng, n: usize) -> Vec<u64> {
    (0..n).map(|_| draw(rng).round() as u64).collect()
}

/// The reported ratio is within the two-quantile bound of the exact one.
fn assert_within_ratio_bound(reported: f64, exact: f64, what: &str) {
    let (low, high) = ((1.0 - EPS) / (1.0 + EPS), (1.0 + EPS) / (1.0 - EPS));
    let factor = reported / exact;
    assert!(
        (low..=high).contains(&factor),
        "{what}: reported {reported}, exact {exact}, off by a factor {factor}"
    );
}

#[test]
fn identical_latencies_give_a_p50_ratio_within_two_bucket_errors_of_one() {
    let mut rng = Rng(0x5EED_0001);
    for (name, draw) in distributions() {
        for n in [2_000, 5_001, 20_000] {
            // The same latencies on both arms, recorded in another order.
            let sync = sample(&*draw, &mut rng, n);
            let mut same = sync.clone();
            same.reverse();
            let (ratio, status) = judge(&same, &sync);
            assert!((ratio - 1.0).abs() <= 2.0 * EPS, "{name}, n = {n}: {ratio}");
            assert_eq!(status, CheckStatus::Pass, "{name}, n = {n}");

            // Independent draws from the same distribution: the exact p50s
            // differ by sampling noise, and the buckets add at most 2ε to it.
            let other = sample(&*draw, &mut rng, n);
            let (ratio, _) = judge(&other, &sync);
            let exact = exact_p50(&other) / exact_p50(&sync);
            assert_within_ratio_bound(ratio, exact, &format!("{name}, n = {n}"));
        }
    }
}

#[test]
fn medians_straddling_a_bucket_edge_stay_within_two_bucket_errors_of_one() {
    // The worst case for equal latencies: one arm's median is the last value
    // of a bucket, the other's the first value of the next, so the exact
    // ratio is 1 within 1 ns but the reported midpoints are a bucket apart.
    // Every edge between 256 ns and ~1 hour is tried on a doubling ladder of
    // bucket positions.
    let mut worst: f64 = 0.0;
    for msb in 8..42u32 {
        for step in 0..128u64 {
            let width = 1u64 << (msb - 7);
            let edge = (1u64 << msb) + step * width;
            // Medians edge − 1 and edge; min and max far away, so the
            // answers are bucket midpoints, not clamped to a lone sample.
            let below = [edge / 2, edge - 1, edge * 2];
            let above = [edge / 2, edge, edge * 2];
            let (ratio, _) = judge(&below, &above);
            assert!(
                (ratio - 1.0).abs() <= 2.0 * EPS,
                "edge {edge} ns: reported ratio {ratio}"
            );
            assert_within_ratio_bound(ratio, (edge - 1) as f64 / edge as f64, "straddle");
            worst = worst.max((ratio - 1.0).abs());
        }
    }
    // The ladder does reach the bucket-width effect it guards against.
    assert!(worst > EPS, "worst straddle only {worst}");
}

#[test]
fn a_true_ratio_of_1_03_is_reported_above_1_02() {
    let mut rng = Rng(0x5EED_0103);
    for (name, draw) in distributions() {
        for n in [2_001, 10_000] {
            let sync = sample(&*draw, &mut rng, n);
            let slower: Vec<u64> = sync
                .iter()
                .map(|&ns| (ns as f64 * 1.03).round() as u64)
                .collect();
            let exact = exact_p50(&slower) / exact_p50(&sync);
            assert!((exact - 1.03).abs() < 1e-4, "{name}: exact {exact}");
            let (ratio, status) = judge(&slower, &sync);
            assert!(ratio > 1.02, "{name}, n = {n}: reported {ratio}");
            assert_eq!(status, CheckStatus::Fail, "{name}, n = {n}");
            assert_within_ratio_bound(ratio, exact, name);
        }
    }

    // Every position of the sync median in its bucket, over several octaves:
    // the quantisation never pulls a true 1.03 down to 1.02 (the bound
    // allows down to 1.03 · 255/257 ≈ 1.022).
    let mut lowest = f64::INFINITY;
    let mut median = 1_000_000u64; // 1 ms
    while median < 4_000_000_000 {
        let sync = [median / 3, median, median * 3];
        let slower = sync.map(|ns| (ns as f64 * 1.03).round() as u64);
        let (ratio, _) = judge(&slower, &sync);
        assert!(ratio > 1.02, "median {median} ns: reported {ratio}");
        assert_within_ratio_bound(ratio, slower[1] as f64 / median as f64, "sweep");
        lowest = lowest.min(ratio);
        // Steps not aligned with any bucket width, about 1/1000 of the value.
        median += median / 997 + 1;
    }
    // The sweep does hit unfavourable bucket positions.
    assert!(lowest < 1.03 * (1.0 - EPS), "lowest {lowest}");
}

#[test]
fn the_guarded_interval_covers_the_exact_ratio_and_guards_the_criterion() {
    // Independent draws of 2,000 uploads per arm, the async arm 0% or 3%
    // slower: the 95% interval (order-statistic bounds on each arm's p50,
    // read at bucket edges) must contain the exact ratio of the two
    // distributions' medians in at least 90% of draws (expected: over 95%;
    // 90% leaves room for any change in how the numbers are drawn).
    let mut rng = Rng(0x5EED_00C1);
    for (name, draw) in distributions() {
        for factor in [1.0, 1.03] {
            let draws = 60;
            let mut covered = 0;
            for _ in 0..draws {
                let sync = sample(&*draw, &mut rng, 2_000);
                let slower: Vec<u64> = sample(&*draw, &mut rng, 2_000)
                    .iter()
                    .map(|&ns| (ns as f64 * factor).round() as u64)
                    .collect();
                let check = judge_in(EvaluationMode::Guarded, &slower, &sync);
                let i = check.interval.expect("2,000 per arm bound the ranks");
                assert!(
                    i.low <= check.observed.unwrap() && check.observed.unwrap() <= i.high,
                    "{name}: {check:?}"
                );
                if i.low <= factor && factor <= i.high {
                    covered += 1;
                }
                // The verdict: a ratio above 102% fails in both modes; one
                // within it passes in guarded mode only when the upper bound
                // is within 102% + 2%.
                let literal = judge_in(EvaluationMode::Literal, &slower, &sync).status;
                match literal {
                    CheckStatus::Fail => assert_eq!(check.status, CheckStatus::Fail),
                    _ => assert_eq!(
                        check.status == CheckStatus::Pass,
                        i.high <= 1.04,
                        "{name}: {check:?}"
                    ),
                }
            }
            assert!(
                covered * 10 >= draws * 9,
                "{name} ×{factor}: covered in {covered} of {draws}"
            );
        }
    }
}
