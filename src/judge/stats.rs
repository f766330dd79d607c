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

/// An always-valid evidence ratio that `x` of `n` events landing on one side
/// means that side's share is above `p`.
///
/// Each event (a complaint, say) falls on the first path with probability
/// `p` when both paths draw events at the same rate (`p` = the first path's
/// share of the uploads). This returns the likelihood ratio of a uniform
/// mixture over the share `θ` against `θ = p`:
///
/// ```text
/// LR = B(x + 1, n − x + 1) / (pˣ (1 − p)ⁿ⁻ˣ)
/// ```
///
/// Under equal rates `LR` is a nonnegative martingale with mean 1 as events
/// arrive, so by Ville's inequality the chance that it **ever** reaches
/// `1/α` is at most `α`, however often it is checked. That is what a trigger
/// evaluated on every tick of a days-long stage needs; a fixed-sample p-value
/// checked that often fires far more often than its level says. Returns 0
/// when the observed share is not above `p` (only an increase is evidence).
#[must_use]
pub fn mixture_likelihood_ratio(n: u64, p: f64, x: u64) -> f64 {
    if n == 0 || x > n || !(p > 0.0 && p < 1.0) || (x as f64) <= p * n as f64 {
        return 0.0;
    }
    // ln B(x + 1, n − x + 1) = ln x! + ln (n − x)! − ln (n + 1)!
    let ln_factorial = |m: u64| (2..=m).map(|i| (i as f64).ln()).sum::<f64>();
    let ln_beta = ln_factorial(x) + ln_factorial(n - x) - ln_factorial(n + 1);
    let ln_null = x as f64 * p.ln() + (n - x) as f64 * (1.0 - p).ln();
    (ln_beta - ln_null).exp()
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
    fn mixture_ratio_matches_a_hand_computation() {
        // 3 of 3 events with p = 0.5: B(4, 1) / 0.5³ = (1/4) / (1/8) = 2.
        assert!((mixture_likelihood_ratio(3, 0.5, 3) - 2.0).abs() < 1e-12);
        // 10 of 10 with p = 0.1: (1/11) / 1e-10.
        let lr = mixture_likelihood_ratio(10, 0.1, 10);
        assert!((lr / (1.0 / 11.0 / 1e-10) - 1.0).abs() < 1e-9, "{lr}");
        // No increase, no evidence.
        assert_eq!(mixture_likelihood_ratio(10, 0.5, 5), 0.0);
        assert_eq!(mixture_likelihood_ratio(10, 0.5, 2), 0.0);
        assert_eq!(mixture_likelihood_ratio(0, 0.5, 0), 0.0);
    }

    #[test]
    fn mixture_ratio_rarely_ever_crosses_under_equal_rates() {
        // 2,000 sequences of 400 fair events, checked after every event: the
        // share that ever reaches 1/α = 20 must be at most α = 5% (Ville).
        let mut state = 0x1234_5678_u64;
        let mut crossed = 0;
        for _ in 0..2_000 {
            let (mut n, mut x) = (0, 0);
            for _ in 0..400 {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                n += 1;
                x += u64::from(state >> 63 == 1);
                if mixture_likelihood_ratio(n, 0.5, x) >= 20.0 {
                    crossed += 1;
                    break;
                }
            }
        }
        assert!(crossed <= 100, "{crossed} of 2000 crossed");
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
