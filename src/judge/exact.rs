//! Exact false-alarm probabilities of the sequential rollback checks, for a
//! given traffic: what `async-upload-rollout plan --traffic` prints and what
//! the README's guarantee rests on.
//!
//! A sequential rollback check judges whole minutes (see `sequential`): its
//! statistic after minute `t` is `S_t = max(0, S_{t−1}) + x_t` — the largest
//! log-likelihood ratio of a window ending at `t` — with `x_t` the minute's
//! `k·up − (n − k)·down` for `n` judged async uploads, `k` of them failures.
//! With Poisson uploads a minute and failures at a steady rate, `max(0, S)`
//! is a Markov chain, so the chance that it reaches the bar within a stage
//! is computed by propagating its distribution minute by minute.
//!
//! The chain lives on a grid of `down / m`: `down` is a whole number of
//! steps, `up` is rounded **up** to the grid, and the bar down to it, so the
//! grid's statistic is never below the true one and the result is an upper
//! bound (within a fraction of a percent of the exact value at the grids
//! used). The check also needs a minimum of uploads in a window and cannot
//! look further back than the kept history, which only lowers it further.
//! Once the chain's chance of firing per minute is steady (its
//! quasi-stationary regime), the remaining minutes are extrapolated
//! geometrically, which is exact in that regime.

use crate::judge::stats::{Cusum, ln_binomial_pmf};

/// The largest chance that a CUSUM with weights `cusum`, judged on whole
/// minutes with `per_minute` judged async uploads a minute (Poisson) at a
/// steady failure rate `rate`, reaches `ln_bar` within `minutes` minutes,
/// starting from no evidence. An upper bound, exact to a grid of a
/// `grid`-th of the success weight (see the module docs); `grid` 4 to 16
/// keeps the error well under 1%.
pub(crate) fn minute_cusum_alarm_probability(
    cusum: &Cusum,
    ln_bar: f64,
    rate: f64,
    per_minute: f64,
    minutes: u64,
    grid: u32,
) -> f64 {
    if minutes == 0 || per_minute.is_nan() || per_minute <= 0.0 || ln_bar.is_nan() || ln_bar <= 0.0
    {
        return 0.0;
    }
    let rate = rate.clamp(0.0, 1.0);
    let m = i64::from(grid.max(1));
    let delta = cusum.down / m as f64;
    let up = (cusum.up / delta).ceil() as i64;
    // Fires at a grid state of at least `bar` (the bar rounded down).
    let bar = ((ln_bar / delta).floor() as i64).max(1);
    let jumps = minute_jumps(up, m, bar, rate, per_minute);
    let states = bar as usize;
    let mut now = vec![0.0f64; states];
    let mut next = vec![0.0f64; states];
    now[0] = 1.0;
    let mut fired = 0.0f64;
    let mut previous_hazard = f64::NAN;
    let mut steady = 0u32;
    for t in 0..minutes {
        next.iter_mut().for_each(|x| *x = 0.0);
        let mut fired_now = 0.0;
        for (s, &mass) in now.iter().enumerate() {
            if mass < 1e-300 {
                continue;
            }
            for &(jump, p) in &jumps {
                let to = s as i64 + jump;
                if to >= bar {
                    fired_now += mass * p;
                } else {
                    next[to.max(0) as usize] += mass * p;
                }
            }
        }
        std::mem::swap(&mut now, &mut next);
        let alive: f64 = now.iter().sum();
        fired += fired_now;
        if alive <= 0.0 {
            return fired.min(1.0);
        }
        // The hazard (chance to fire this minute, given not yet) settles to
        // the quasi-stationary rate; from then on survival is geometric.
        let hazard = fired_now / (alive + fired_now);
        if (hazard - previous_hazard).abs() <= 1e-7 * hazard.max(1e-300) {
            steady += 1;
        } else {
            steady = 0;
        }
        previous_hazard = hazard;
        if steady >= 20 {
            let rest = (minutes - t - 1) as f64;
            let survive = (rest * (-hazard).ln_1p()).exp();
            return (1.0 - (1.0 - fired.min(1.0)) * survive).clamp(0.0, 1.0);
        }
    }
    fired.min(1.0)
}

/// One minute's jumps of the grid statistic with their probabilities:
/// `k·up − (n − k)·m` for `n` ~ Poisson(`per_minute`), `k` ~ Binomial(`n`,
/// `rate`), every jump of `−bar` or less merged (they all land on 0).
/// Probability left out by truncating the Poisson and binomial tails
/// (below 10⁻¹⁴) goes to the largest jump, so nothing is lost in the safe
/// direction.
fn minute_jumps(up: i64, m: i64, bar: i64, rate: f64, per_minute: f64) -> Vec<(i64, f64)> {
    let sd = per_minute.sqrt();
    let n_low = (per_minute - 12.0 * sd - 10.0).max(0.0) as u64;
    let n_high = (per_minute + 12.0 * sd + 10.0).ceil() as u64;
    let mut by_jump: std::collections::BTreeMap<i64, f64> = std::collections::BTreeMap::new();
    let ln_lambda = per_minute.ln();
    let mut ln_factorial = ln_factorial_at(n_low);
    let mut total = 0.0;
    for n in n_low..=n_high {
        if n > n_low {
            ln_factorial += (n as f64).ln();
        }
        let poisson = (-per_minute + n as f64 * ln_lambda - ln_factorial).exp();
        if poisson < 1e-18 {
            continue;
        }
        let n_i = n as i64;
        for k in 0..=n {
            let binomial = if rate <= 0.0 {
                if k == 0 { 1.0 } else { 0.0 }
            } else if rate >= 1.0 {
                if k == n { 1.0 } else { 0.0 }
            } else {
                ln_binomial_pmf(n, k, rate).exp()
            };
            let p = poisson * binomial;
            if p > 0.0 {
                let jump = (k as i64 * (up + m) - n_i * m).max(-bar);
                *by_jump.entry(jump).or_insert(0.0) += p;
                total += p;
            }
            // Past the binomial's mode, terms only shrink.
            if rate < 1.0 && k as f64 > rate * n as f64 + 1.0 && binomial < 1e-16 {
                break;
            }
        }
    }
    let mut jumps: Vec<(i64, f64)> = by_jump.into_iter().collect();
    if let Some(last) = jumps.last_mut() {
        last.1 += (1.0 - total).max(0.0);
    }
    jumps
}

/// `ln n!` by summing logarithms (n is at most a few thousand here).
fn ln_factorial_at(n: u64) -> f64 {
    (2..=n).map(|i| (i as f64).ln()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same chain simulated: Poisson uploads a minute, steady failures.
    fn simulated(
        cusum: &Cusum,
        ln_bar: f64,
        rate: f64,
        per_minute: f64,
        minutes: u64,
        runs: u64,
    ) -> f64 {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut uniform = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut fired = 0;
        for _ in 0..runs {
            let mut s = 0.0f64;
            for _ in 0..minutes {
                // Poisson by inversion.
                let (mut n, mut p, u) = (0u64, (-per_minute).exp(), uniform());
                let mut cdf = p;
                while u > cdf {
                    n += 1;
                    p *= per_minute / n as f64;
                    cdf += p;
                }
                let k = (0..n).filter(|_| uniform() < rate).count() as u64;
                s = s.max(0.0) + cusum.llr(k, n);
                if s >= ln_bar {
                    fired += 1;
                    break;
                }
            }
        }
        fired as f64 / runs as f64
    }

    #[test]
    fn the_chain_bounds_a_simulation_of_the_same_statistic_and_is_close_to_it() {
        // Small bars, so a few thousand runs measure it well.
        let cusum = Cusum::new(0.005, 0.10);
        for (rate, per_minute, ln_bar, minutes) in [
            (0.005, 12.0, 6.0, 600),
            (0.02, 12.0, 6.0, 300),
            (0.05, 3.0, 5.0, 200),
        ] {
            let exact =
                minute_cusum_alarm_probability(&cusum, ln_bar, rate, per_minute, minutes, 16);
            let sim = simulated(&cusum, ln_bar, rate, per_minute, minutes, 4_000);
            let se = (sim * (1.0 - sim) / 4_000.0).sqrt().max(1e-3);
            assert!(
                exact + 4.0 * se >= sim && exact - sim < 4.0 * se + 0.01 * exact,
                "{rate} {per_minute} {ln_bar}: exact {exact}, simulated {sim} ± {se}"
            );
        }
    }

    #[test]
    fn more_minutes_more_alarms_and_a_higher_bar_fewer() {
        let cusum = Cusum::with_reference(0.05, 0.10);
        let p = |bar: f64, minutes: u64| {
            minute_cusum_alarm_probability(&cusum, bar, 0.02, 12.0, minutes, 4)
        };
        assert!(p(10.0, 2_880) > p(10.0, 1_440));
        assert!(p(12.0, 2_880) < p(10.0, 2_880));
        // Far above the reference rate it fires surely; nothing, never.
        assert!(minute_cusum_alarm_probability(&cusum, 10.0, 0.2, 12.0, 600, 4) > 0.999);
        assert_eq!(
            minute_cusum_alarm_probability(&cusum, 10.0, 0.0, 12.0, 600, 4),
            0.0
        );
        assert_eq!(
            minute_cusum_alarm_probability(&cusum, 10.0, 0.02, 0.0, 600, 4),
            0.0
        );
    }
}
