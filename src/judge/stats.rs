//! The statistics the guarded evaluator uses: Wilson score intervals, an
//! always-valid likelihood ratio for complaints, a Bernoulli CUSUM for
//! sequential rate triggers, and distribution-free bounds on a latency
//! quantile read from a histogram.
//!
//! Every function costs O(1), or O(buckets) for the histogram bounds,
//! whatever the counts: a snapshot with 10¹⁵ uploads is judged as fast as
//! one with 10.
//!
//! One concept in one file of about 725 lines (270 of them its unit tests, 114
//! docs): each statistic is small; together they are the judge's arithmetic,
//! beside the tests that pin their values.

use std::time::Duration;

use crate::metrics::LatencyHistogram;

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

/// The fewest failures `k` such that `n` trials at failure rate `p` show
/// `k` or more with probability at most `size`: the critical count of the
/// exact one-sided binomial test of size `size` (`n + 1` when no count is
/// that rare, which only happens for tiny `n`).
///
/// Exact (each term in Loader's O(1) form, summed down the tail from 12
/// standard deviations above the mean, so O(σ) terms) while the standard
/// deviation `σ = √(n·p·(1−p))` is at most 400; beyond, the normal
/// approximation with Cornish–Fisher's skewness term, whose error there is
/// far below one count.
pub(crate) fn binomial_critical_count(n: u64, p: f64, size: f64) -> u64 {
    if n == 0 || !(p > 0.0 && p < 1.0) || size.is_nan() || size <= 0.0 {
        return n.saturating_add(1);
    }
    if size >= 1.0 {
        return 0;
    }
    let nf = n as f64;
    let mean = nf * p;
    let sd = (mean * (1.0 - p)).sqrt();
    if sd > 400.0 {
        let z = inverse_normal_cdf(1.0 - size);
        let skew = (1.0 - 2.0 * p) / sd;
        let quantile = mean + sd * (z + (z * z - 1.0) * skew / 6.0);
        return ((quantile + 0.5).ceil().max(0.0) as u64).min(n.saturating_add(1));
    }
    let top = ((mean + 12.0 * sd + 30.0).ceil() as u64).min(n);
    let mut tail = 0.0;
    let mut k = top;
    loop {
        tail += ln_binomial_pmf(n, k, p).exp();
        if tail > size {
            return k + 1;
        }
        if k == 0 {
            return 0;
        }
        k -= 1;
    }
}

/// `ln P(Binomial(n, p) = x)` in O(1), for `p` in `(0, 1)` and `x ≤ n`
/// (C. Loader, "Fast and accurate computation of binomial probabilities", 2000).
pub(crate) fn ln_binomial_pmf(n: u64, x: u64, p: f64) -> f64 {
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

/// A Bernoulli CUSUM: the log-likelihood ratio of a failure rate `p1`
/// against `p0` (`p0 < p1`), which grows by `up = ln(p1/p0)` with each
/// failure and falls by `down = ln((1 − p0)/(1 − p1))` with each success.
///
/// Its maximum over windows ending now (the CUSUM statistic, Page 1954) is
/// the evidence that the rate has recently moved up to `p1`. Checked on
/// every tick it stays meaningful: at a steady rate `p` its drift per upload
/// is `p·up − (1 − p)·down`, negative below the **reference rate**
/// `down / (up + down)` and positive above it, and while the drift is
/// negative the chance of ever climbing `h` from 0 in one excursion falls
/// exponentially in `h`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Cusum {
    /// Added per failure.
    pub(crate) up: f64,
    /// Subtracted per success.
    pub(crate) down: f64,
    /// The rate it is tuned to detect fastest.
    pub(crate) p1: f64,
}

impl Cusum {
    /// Smallest and largest rate used, so the weights stay finite.
    const EDGE: f64 = 1e-9;

    /// The CUSUM of `p1` against `p0`, both clamped into `(0, 1)` with
    /// `p0 < p1`.
    pub(crate) fn new(p0: f64, p1: f64) -> Cusum {
        let clamp = |p: f64| {
            if p.is_nan() {
                0.5
            } else {
                p.clamp(Self::EDGE, 1.0 - Self::EDGE)
            }
        };
        let p1 = clamp(p1).max(2.0 * Self::EDGE);
        let p0 = clamp(p0).min(p1 * (1.0 - 1e-6));
        Cusum {
            up: (p1 / p0).ln(),
            down: ((1.0 - p0) / (1.0 - p1)).ln(),
            p1,
        }
    }

    /// The CUSUM tuned to detect `p1` whose drift is zero exactly at
    /// `reference` (`reference < p1`): `p0` is found by bisection (60 steps,
    /// O(1)).
    pub(crate) fn with_reference(reference: f64, p1: f64) -> Cusum {
        let p1 = if p1.is_nan() {
            0.5
        } else {
            p1.clamp(2.0 * Self::EDGE, 1.0 - Self::EDGE)
        };
        let reference = if reference.is_nan() {
            p1 / 2.0
        } else {
            reference.clamp(Self::EDGE, p1 * (1.0 - 1e-6))
        };
        // The reference rate rises with p0 (from 0 at p0 → 0 to p1 at p0 → p1).
        let (mut low, mut high) = (Self::EDGE, p1);
        for _ in 0..60 {
            let mid = 0.5 * (low + high);
            let c = Cusum::new(mid, p1);
            if c.reference() < reference {
                low = mid;
            } else {
                high = mid;
            }
        }
        Cusum::new(0.5 * (low + high), p1)
    }

    /// The failure rate at which its drift is zero.
    pub(crate) fn reference(&self) -> f64 {
        self.down / (self.up + self.down)
    }

    /// The rate it is tested against: `p0`.
    pub(crate) fn p0(&self) -> f64 {
        self.p1 / self.up.exp()
    }

    /// The log-likelihood ratio of `failures` in `trials`.
    pub(crate) fn llr(&self, failures: u64, trials: u64) -> f64 {
        let failures = failures.min(trials);
        failures as f64 * self.up - (trials - failures) as f64 * self.down
    }
}

/// Distribution-free bounds on quantile `q` of the latencies behind `h`:
/// the order statistics `X₍ₗ₎ ≤ ξ_q ≤ X₍ᵤ₎` whose ranks `l` and `u` put the
/// binomial count of samples below `ξ_q` within `z` standard deviations
/// (normal approximation), read conservatively from the buckets (the low
/// edge of the bucket holding rank `l`, the high edge of the one holding
/// rank `u`), so the bucket error is inside the bounds too.
///
/// `None` when empty or `q` is outside `(0, 1)`; the low bound is 0 and the
/// high bound `None` where the rank falls outside the sample. O(buckets).
pub(crate) fn quantile_bounds(h: &LatencyHistogram, q: f64, z: f64) -> Option<(f64, Option<f64>)> {
    let n = h.count();
    if n == 0 || !(q > 0.0 && q < 1.0) || !z.is_finite() {
        return None;
    }
    let nf = n as f64;
    let center = nf * q;
    let half = z.abs() * (nf * q * (1.0 - q)).sqrt();
    let low_rank = (center - half).floor();
    let high_rank = (center + half).ceil() + 1.0;
    let (min, max) = (h.min()?.as_nanos() as f64, h.max()?.as_nanos() as f64);
    let value_at = |rank: f64, high_edge: bool| -> f64 {
        let mut seen = 0u64;
        for b in h.buckets() {
            seen = seen.saturating_add(b.count);
            if seen as f64 >= rank {
                let edge = if high_edge { b.high } else { b.low };
                return (edge.as_nanos() as f64).clamp(min, max);
            }
        }
        max
    };
    let low = if low_rank >= 1.0 {
        value_at(low_rank, false)
    } else {
        0.0
    };
    let high = (high_rank <= nf).then(|| value_at(high_rank, true));
    Some((low, high))
}

/// A normal-approximation interval for the mean of the latencies behind
/// `h`, `mean ± z·s/√n`, with `s` the standard deviation of the bucket
/// midpoints (O(buckets)); the low end is at least 0. `None` when empty;
/// the high bound `None` with fewer than 2 samples.
pub(crate) fn mean_bounds(h: &LatencyHistogram, z: f64) -> Option<(f64, Option<f64>)> {
    let n = h.count();
    let mean = h.mean()?.as_nanos() as f64;
    if n < 2 || !z.is_finite() {
        return Some((0.0, None));
    }
    let mut squares = 0.0;
    for b in h.buckets() {
        let mid = (b.low.as_nanos() as f64 + b.high.as_nanos() as f64) / 2.0;
        squares += b.count as f64 * (mid - mean) * (mid - mean);
    }
    let sd = (squares / (n as f64 - 1.0)).sqrt();
    let half = z.abs() * sd / (n as f64).sqrt();
    Some(((mean - half).max(0.0), Some(mean + half)))
}

/// The latency the evaluator compares against: a histogram or a fixed value.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Baseline<'a> {
    /// Measured: the sync path's latencies.
    Measured(&'a LatencyHistogram),
    /// A fixed value from the plan.
    Fixed(Duration),
}

/// A confidence interval for the ratio of the async latency statistic to
/// the baseline's: each side's bounds at `confidence` split between the two
/// (Bonferroni: `1 − (1 − confidence)/2` each when both are measured), then
/// `[async low / baseline high, async high / baseline low]`.
///
/// The low end is always there (0 at worst); the high end is `None` when a
/// bound is missing (too few samples for the ranks) or the baseline's low
/// bound is 0. `statistic` is a quantile in `(0, 1)` or `None` for the mean.
pub(crate) fn latency_ratio_bounds(
    async_latency: &LatencyHistogram,
    baseline: Baseline<'_>,
    quantile: Option<f64>,
    confidence: f64,
) -> Option<(f64, Option<f64>)> {
    let split = match baseline {
        Baseline::Measured(_) => 1.0 - (1.0 - confidence) / 2.0,
        Baseline::Fixed(_) => confidence,
    };
    let z = z_for_confidence(split);
    let bounds = |h: &LatencyHistogram| match quantile {
        Some(q) => quantile_bounds(h, q, z),
        None => mean_bounds(h, z),
    };
    let (a_low, a_high) = bounds(async_latency)?;
    let (b_low, b_high) = match baseline {
        Baseline::Measured(h) => bounds(h)?,
        Baseline::Fixed(d) => (d.as_nanos() as f64, Some(d.as_nanos() as f64)),
    };
    let low = match b_high {
        Some(b) if b > 0.0 => a_low / b,
        _ => 0.0,
    };
    let high = match a_high {
        Some(a) if b_low > 0.0 => Some(a / b_low),
        _ => None,
    };
    Some((low, high))
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
    fn the_binomial_critical_count_is_the_exact_tail_quantile() {
        // By hand: 720 trials at 2%, tail sums of the exact pmf.
        let pmf = |n: u64, k: u64, p: f64| ln_binomial_pmf(n, k, p).exp();
        let tail = |n: u64, k: u64, p: f64| (k..=n).map(|j| pmf(n, j, p)).sum::<f64>();
        for (n, p, size) in [
            (720, 0.02, 0.0075),
            (720, 0.02, 0.0005),
            (2_160, 0.02, 0.0005),
            (40, 0.02, 0.01),
            (5, 0.3, 0.2),
        ] {
            let k = binomial_critical_count(n, p, size);
            assert!(tail(n, k, p) <= size, "{n} {p} {size}: {k}");
            assert!(k == 0 || tail(n, k - 1, p) > size, "{n} {p} {size}: {k}");
        }
        // 720 at 2%: mean 14.4; the 0.75% test reviews from 25 failures.
        assert_eq!(binomial_critical_count(720, 0.02, 0.0075), 25);
        // Degenerate inputs.
        assert_eq!(binomial_critical_count(0, 0.02, 0.01), 1);
        assert_eq!(binomial_critical_count(10, 0.02, 1.0), 0);
        // Huge counts take the normal form, in the right place and at once.
        let n = 1_000_000_000_000u64;
        let k = binomial_critical_count(n, 0.02, 0.001);
        let sd = (n as f64 * 0.02 * 0.98).sqrt();
        let z = (k as f64 - n as f64 * 0.02) / sd;
        assert!((3.0..3.2).contains(&z), "{z}");
    }

    #[test]
    fn cusum_weights_and_reference() {
        // 10% against 5%: +ln 2 per failure, −ln(0.95/0.90) per success.
        let c = Cusum::new(0.05, 0.10);
        assert!((c.up - 2f64.ln()).abs() < 1e-12);
        assert!((c.down - (0.95f64 / 0.90).ln()).abs() < 1e-12);
        assert!((c.p0() - 0.05).abs() < 1e-12);
        assert!((c.reference() - 0.0724).abs() < 1e-4, "{}", c.reference());
        assert!((c.llr(3, 10) - (3.0 * c.up - 7.0 * c.down)).abs() < 1e-12);
        // Drift zero at the reference, as asked.
        let r = Cusum::with_reference(0.05, 0.10);
        assert!((r.reference() - 0.05).abs() < 1e-9, "{}", r.reference());
        assert!((r.p0() - 0.0197).abs() < 1e-3, "{}", r.p0());
        // The review band's CUSUM: zero drift at 3% failures, tuned to 4%.
        let band = Cusum::with_reference(0.03, 0.04);
        assert!(
            (band.reference() - 0.03).abs() < 1e-9 && band.p0() > 0.02,
            "{band:?}"
        );
        // Degenerate inputs stay finite.
        for (a, b) in [
            (0.0, 0.0),
            (1.0, 1.0),
            (0.5, 0.1),
            (f64::NAN, f64::NAN),
            (0.0, 1.0),
        ] {
            for c in [Cusum::new(a, b), Cusum::with_reference(a, b)] {
                assert!(
                    c.up.is_finite() && c.down.is_finite() && c.up > 0.0,
                    "{a} {b}: {c:?}"
                );
                assert!(c.llr(u64::MAX, u64::MAX).is_finite());
            }
        }
    }

    #[test]
    fn quantile_bounds_cover_the_median_and_shrink_with_n() {
        use std::time::Duration;
        let mut h = LatencyHistogram::new();
        for ms in 1..=1_000u64 {
            h.record(Duration::from_millis(ms));
        }
        let z = z_for_confidence(0.95);
        let (low, high) = quantile_bounds(&h, 0.5, z).unwrap();
        let high = high.unwrap();
        // Ranks 500 ± 1.96·√250 ≈ 469..532, read at bucket edges.
        assert!(low > 460e6 && low <= 469e6, "{low}");
        assert!((532e6..540e6).contains(&high), "{high}");
        // Too few samples for the ranks: open ends.
        let mut small = LatencyHistogram::new();
        small.record(Duration::from_millis(5));
        small.record(Duration::from_millis(6));
        let (low, high) = quantile_bounds(&small, 0.5, z).unwrap();
        assert_eq!((low, high), (0.0, None));
        assert_eq!(quantile_bounds(&LatencyHistogram::new(), 0.5, z), None);
        assert_eq!(quantile_bounds(&h, 1.0, z), None);
    }

    #[test]
    fn ratio_bounds_contain_one_for_equal_samples_and_not_for_a_shift() {
        use std::time::Duration;
        let (mut a, mut b, mut slow) = (
            LatencyHistogram::new(),
            LatencyHistogram::new(),
            LatencyHistogram::new(),
        );
        let mut state = 7u64;
        for _ in 0..5_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let ms = 100 + (state >> 33) % 200;
            a.record(Duration::from_millis(ms));
            b.record(Duration::from_millis(ms));
            slow.record(Duration::from_millis(ms * 13 / 10));
        }
        for quantile in [Some(0.5), Some(0.99), None] {
            let (low, high) =
                latency_ratio_bounds(&a, Baseline::Measured(&b), quantile, 0.95).unwrap();
            let high = high.unwrap();
            assert!(
                low < 1.0 && 1.0 < high && high < 1.2,
                "{quantile:?}: {low} {high}"
            );
            let (low, _) =
                latency_ratio_bounds(&slow, Baseline::Measured(&b), quantile, 0.95).unwrap();
            assert!(low > 1.1, "{quantile:?}: {low}");
        }
        let fixed = Baseline::Fixed(Duration::from_millis(200));
        let (low, high) = latency_ratio_bounds(&a, fixed, Some(0.5), 0.95).unwrap();
        assert!(
            low < 1.0 && high.unwrap() > 1.0 && high.unwrap() < 1.05,
            "{low} {high:?}"
        );
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
