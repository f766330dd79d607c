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
/// LR = B(x + 1, n − x + 1) / (pˣ (1 − p)ⁿ⁻ˣ) = 1 / ((n + 1) · P(Binomial(n, p) = x))
/// ```
///
/// Under equal rates `LR` is a nonnegative martingale with mean 1 as events
/// arrive, so by Ville's inequality the chance that it **ever** reaches
/// `1/α` is at most `α`, however often it is checked. That is what a trigger
/// evaluated on every tick of a days-long stage needs; a fixed-sample p-value
/// checked that often fires far more often than its level says. Returns 0
/// when the observed share is not above `p` (only an increase is evidence).
///
/// Cost: O(1) whatever the counts. The binomial probability is computed in
/// Loader's saddle-point form (Stirling's series for the factorials, a
/// deviance term that stays accurate when `x` is close to `n·p`), so 10¹⁵
/// events cost the same few dozen floating-point operations as 10. The
/// result may be `+∞` when the evidence is overwhelming; it is never NaN.
#[must_use]
pub fn mixture_likelihood_ratio(n: u64, p: f64, x: u64) -> f64 {
    if n == 0 || x > n || !(p > 0.0 && p < 1.0) || (x as f64) <= p * n as f64 {
        return 0.0;
    }
    let ln_lr = -((n as f64) + 1.0).ln() - ln_binomial_pmf(n, x, p);
    ln_lr.exp()
}

/// `ln P(Binomial(n, p) = x)` in O(1), for `p` in `(0, 1)` and `x ≤ n`
/// (C. Loader, "Fast and accurate computation of binomial probabilities", 2000).
fn ln_binomial_pmf(n: u64, x: u64, p: f64) -> f64 {
    let q = 1.0 - p;
    if x == 0 {
        return n as f64 * (-p).ln_1p();
    }
    if x == n {
        return n as f64 * p.ln();
    }
    let (nf, xf, yf) = (n as f64, x as f64, (n - x) as f64);
    let lc = stirling_error(nf)
        - stirling_error(xf)
        - stirling_error(yf)
        - deviance(xf, nf * p)
        - deviance(yf, nf * q);
    lc + 0.5 * (nf / (std::f64::consts::TAU * xf * yf)).ln()
}

/// `ln(m!) − ln(√(2πm) (m/e)^m)`: the error of Stirling's formula, for a
/// whole number `m ≥ 1`. Exact summation up to 15, Stirling's series above.
fn stirling_error(m: f64) -> f64 {
    const S0: f64 = 1.0 / 12.0;
    const S1: f64 = 1.0 / 360.0;
    const S2: f64 = 1.0 / 1260.0;
    const S3: f64 = 1.0 / 1680.0;
    const S4: f64 = 1.0 / 1188.0;
    if m <= 15.0 {
        // At most 14 terms: O(1).
        let mut ln_factorial = 0.0;
        let mut k = 2.0;
        while k <= m {
            ln_factorial += f64::ln(k);
            k += 1.0;
        }
        return ln_factorial - (m + 0.5) * m.ln() + m - 0.5 * std::f64::consts::TAU.ln();
    }
    let mm = m * m;
    if m > 500.0 {
        (S0 - S1 / mm) / m
    } else if m > 80.0 {
        (S0 - (S1 - S2 / mm) / mm) / m
    } else if m > 35.0 {
        (S0 - (S1 - (S2 - S3 / mm) / mm) / mm) / m
    } else {
        (S0 - (S1 - (S2 - (S3 - S4 / mm) / mm) / mm) / mm) / m
    }
}

/// `x ln(x / μ) + μ − x` (the binomial deviance term), accurate when `x` is
/// close to `μ` where the plain formula cancels.
fn deviance(x: f64, mu: f64) -> f64 {
    if (x - mu).abs() < 0.1 * (x + mu) {
        // Series in v = (x − μ)/(x + μ), |v| < 0.1: each term is at most
        // 1% of the one before, so it converges in a handful of steps.
        let v = (x - mu) / (x + mu);
        let v2 = v * v;
        let mut sum = (x - mu) * v;
        let mut term = 2.0 * x * v;
        for j in 1..64 {
            term *= v2;
            let next = sum + term / f64::from(2 * j + 1);
            if next == sum {
                break;
            }
            sum = next;
        }
        sum
    } else {
        x * (x / mu).ln() + mu - x
    }
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

    /// The definition, one term per event: what `mixture_likelihood_ratio`
    /// computed before it was made O(1).
    fn mixture_ratio_by_loop(n: u64, p: f64, x: u64) -> f64 {
        if n == 0 || x > n || !(p > 0.0 && p < 1.0) || (x as f64) <= p * n as f64 {
            return 0.0;
        }
        let ln_factorial = |m: u64| (2..=m).map(|i| (i as f64).ln()).sum::<f64>();
        let ln_beta = ln_factorial(x) + ln_factorial(n - x) - ln_factorial(n + 1);
        let ln_null = x as f64 * p.ln() + (n - x) as f64 * (1.0 - p).ln();
        (ln_beta - ln_null).exp()
    }

    #[test]
    fn mixture_ratio_agrees_with_the_per_event_loop_on_small_inputs() {
        let mut worst = 0.0f64;
        for n in (1..=60).chain([100, 250, 999, 2_000, 5_000]) {
            for p in [0.01, 0.1, 0.3, 0.5, 0.77, 0.95] {
                let step = (n / 40).max(1);
                for x in (0..=n).step_by(step as usize).chain([n]) {
                    let (fast, slow) = (
                        mixture_likelihood_ratio(n, p, x),
                        mixture_ratio_by_loop(n, p, x),
                    );
                    if slow == 0.0 || !slow.is_finite() {
                        assert_eq!(fast, slow, "n {n} p {p} x {x}");
                        continue;
                    }
                    let rel = (fast / slow - 1.0).abs();
                    worst = worst.max(rel);
                    assert!(rel < 1e-9, "n {n} p {p} x {x}: {fast} vs {slow}");
                }
            }
        }
        assert!(worst < 1e-9, "worst relative difference {worst}");
    }

    #[test]
    fn mixture_ratio_of_a_quadrillion_events_is_immediate_and_sane() {
        let n = 1_000_000_000_000_000_u64; // 10^15 complaints
        let started = std::time::Instant::now();
        // Exactly the expected share: no evidence.
        assert_eq!(mixture_likelihood_ratio(n, 0.5, n / 2), 0.0);
        // One standard deviation above it: a modest, finite ratio (the
        // mixture's cost is about ½·ln(n), so far below 1).
        let sd = (n as f64 * 0.25).sqrt() as u64;
        let lr = mixture_likelihood_ratio(n, 0.5, n / 2 + sd);
        assert!(lr.is_finite() && lr > 0.0 && lr < 1e-5, "{lr}");
        // Ten standard deviations above: overwhelming.
        let lr = mixture_likelihood_ratio(n, 0.5, n / 2 + 10 * sd);
        assert!(lr > 1e10, "{lr}");
        // Every event on one side: beyond f64, infinite, never NaN.
        assert_eq!(mixture_likelihood_ratio(n, 0.5, n), f64::INFINITY);
        assert_eq!(
            mixture_likelihood_ratio(u64::MAX, 0.3, u64::MAX / 2),
            f64::INFINITY
        );
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
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
