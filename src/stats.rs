//! The statistics the guarded evaluator uses: Wilson score intervals.

/// A two-sided confidence interval for a proportion, as fractions in `[0, 1]`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Interval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// The z score of a two-sided interval at `confidence` (0.95 → 1.95996).
///
/// `confidence` must be in `(0, 1)`; values outside are clamped to just
/// inside, so this never returns NaN or infinity.
#[must_use]
pub fn z_for_confidence(confidence: f64) -> f64 {
    let confidence = if confidence.is_nan() {
        0.95
    } else {
        confidence.clamp(1e-9, 1.0 - 1e-12)
    };
    inverse_normal_cdf(1.0 - (1.0 - confidence) / 2.0)
}

/// The Wilson score interval for `successes` out of `trials` at z score `z`.
///
/// Unlike the normal ("Wald") interval it stays inside `[0, 1]` and is
/// sensible for rates near 0 or 1 and for small samples, which is exactly
/// where rollout rates live (99% success, 1% errors). `None` when `trials`
/// is 0.
#[must_use]
pub fn wilson(successes: u64, trials: u64, z: f64) -> Option<Interval> {
    if trials == 0 {
        return None;
    }
    let n = trials as f64;
    let p = (successes.min(trials) as f64) / n;
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denominator;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    Some(Interval {
        low: (center - half).max(0.0),
        high: (center + half).min(1.0),
    })
}

/// `P(X ≥ x)` for `X ~ Binomial(n, p)`: the one-sided p-value of seeing `x`
/// or more events.
///
/// Used to compare two rare-event rates (complaints): given `n` events in
/// all, under equal rates each lands on the first path with probability
/// `p` = its share of the uploads. Computed by summing the lower terms in log
/// space, so large `n` neither overflows nor underflows.
#[must_use]
pub fn binomial_upper_tail(n: u64, p: f64, x: u64) -> f64 {
    if x == 0 {
        return 1.0;
    }
    if x > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (ln_p, ln_q) = (p.ln(), (1.0 - p).ln());
    // ln pmf(0) = n ln q; ln pmf(i+1) = ln pmf(i) + ln((n-i)/(i+1)) + ln p - ln q
    let mut ln_pmf = n as f64 * ln_q;
    let mut below = 0.0;
    for i in 0..x {
        below += ln_pmf.exp();
        ln_pmf += ((n - i) as f64 / (i + 1) as f64).ln() + ln_p - ln_q;
    }
    (1.0 - below).clamp(0.0, 1.0)
}

/// The standard normal quantile function (Acklam's rational approximation,
/// relative error below 1.2e-9), for `p` in `(0, 1)`.
fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    const P_LOW: f64 = 0.024_25;

    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z_scores_match_the_normal_table() {
        for (confidence, z) in [
            (0.90, 1.644_854),
            (0.95, 1.959_964),
            (0.99, 2.575_829),
            (0.999, 3.290_527),
        ] {
            assert!(
                (z_for_confidence(confidence) - z).abs() < 1e-5,
                "{confidence}"
            );
        }
        assert!(z_for_confidence(f64::NAN).is_finite());
        assert!(z_for_confidence(1.0).is_finite());
    }

    #[test]
    fn wilson_matches_published_values() {
        // 95% Wilson interval for 81/263 (Wikipedia / Newcombe 1998 style check):
        // p = 0.30798, interval ≈ [0.2553, 0.3662].
        let i = wilson(81, 263, z_for_confidence(0.95)).unwrap();
        assert!(
            (i.low - 0.2553).abs() < 5e-4 && (i.high - 0.3662).abs() < 5e-4,
            "{i:?}"
        );
        // One failure in one trial: [0, 0.7935].
        let i = wilson(0, 1, 1.959_964).unwrap();
        assert!(i.low == 0.0 && (i.high - 0.7935).abs() < 1e-3, "{i:?}");
    }

    #[test]
    fn binomial_tail_matches_exact_values() {
        // P(X ≥ 1), X ~ Bin(7, 0.0094) = 1 - 0.9906^7
        let exact = 1.0 - (1.0f64 - 0.0094).powi(7);
        assert!((binomial_upper_tail(7, 0.0094, 1) - exact).abs() < 1e-12);
        // P(X ≥ 3), X ~ Bin(10, 0.5) = 1 - (1 + 10 + 45) / 1024
        assert!((binomial_upper_tail(10, 0.5, 3) - (1.0 - 56.0 / 1024.0)).abs() < 1e-12);
        assert_eq!(binomial_upper_tail(10, 0.5, 0), 1.0);
        assert_eq!(binomial_upper_tail(10, 0.5, 11), 0.0);
        // Large n stays finite.
        let tail = binomial_upper_tail(100_000, 0.5, 10);
        assert!((tail - 1.0).abs() < 1e-12, "{tail}");
    }

    #[test]
    fn wilson_stays_in_bounds_and_contains_the_estimate() {
        let z = 1.959_964;
        for trials in [1u64, 2, 5, 20, 500, 2000, 1_000_000] {
            for successes in [0, 1, trials / 2, trials.saturating_sub(1), trials] {
                let i = wilson(successes, trials, z).unwrap();
                let p = successes as f64 / trials as f64;
                assert!(0.0 <= i.low && i.low <= p + 1e-12 && p <= i.high + 1e-12 && i.high <= 1.0);
            }
        }
        assert_eq!(wilson(0, 0, z), None);
    }
}
