//! A reference detector for the baseline-aware rollback, written plainly:
//! two Page CUSUMs on the async path's failures, a minute at a time, as the
//! independent simulation in issue 23 describes them.
//!
//! - **Armed**: the log-likelihood ratio of 10% failures against 0.5%
//!   (+ln 20 per failure, −ln(0.995/0.9) per success), allowed to fire only
//!   while the stage's failure rate up to 10 minutes earlier is at most 1%
//!   over at least 2 hours.
//! - **Fallback**: 10% against 2% (+ln 5, −ln(0.98/0.9)), always allowed.
//!
//! Each statistic is `S ← max(0, S) + minute's log-likelihood ratio`, which
//! is the largest ratio over windows of whole minutes ending now: the
//! optimal detector of a change from a known rate to a known rate (Lorden;
//! Moustakides). Its bars are tuned by simulation to the false-stop budget
//! (`tune_reference`, ignored: a path at 0.5% failures and one at 98%
//! success each stopped in at most 1% of 48-hour stages, the whole budget,
//! with nothing else spending it), and `tests/reference_detector.rs` checks
//! in CI that the tuned bars still hold it.

use async_upload_rollout::act::simulation::SplitMix64;

/// The rates of the two CUSUMs.
const HEALTHY: f64 = 0.005;
const TOLERATED: f64 = 0.02;
const STEP: f64 = 0.10;

/// Bars tuned by `tune_reference` (ignored test in
/// `tests/reference_detector.rs`) at 12 and 30 async uploads a minute: the
/// lowest, on a grid of 0.1, at which each steady path is stopped in at most
/// 1% of 2,000 simulated 48-hour stages.
pub const BARS_12: Bars = Bars {
    armed: 11.0,
    fallback: 11.5,
};
pub const BARS_30: Bars = Bars {
    armed: 11.0,
    fallback: 11.5,
};

/// The two bars, as natural logs of likelihood ratios.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bars {
    pub armed: f64,
    pub fallback: f64,
}

/// The reference detector's state over one stage.
pub struct Reference {
    bars: Bars,
    armed: f64,
    fallback: f64,
    /// Judged async uploads and failures, cumulative, one entry a minute.
    totals: Vec<(u64, u64)>,
}

impl Reference {
    pub fn new(bars: Bars) -> Reference {
        Reference {
            bars,
            armed: 0.0,
            fallback: 0.0,
            totals: vec![(0, 0)],
        }
    }

    /// Takes one minute: `n` judged async uploads, `k` of them failures.
    /// True when it rolls back.
    pub fn minute(&mut self, n: u64, k: u64) -> bool {
        let llr = |p0: f64, k: u64, n: u64| {
            k as f64 * (STEP / p0).ln() - (n - k) as f64 * ((1.0 - p0) / (1.0 - STEP)).ln()
        };
        self.armed = self.armed.max(0.0) + llr(HEALTHY, k, n);
        self.fallback = self.fallback.max(0.0) + llr(TOLERATED, k, n);
        let (total_n, total_k) = *self.totals.last().expect("starts with a zero entry");
        self.totals.push((total_n + n, total_k + k));
        // The stage up to 10 minutes ago: at least 2 hours, at most 1%.
        let minute = self.totals.len() - 1;
        let armed = minute >= 130 && {
            let (bn, bk) = self.totals[minute - 10];
            bn > 0 && bk as f64 <= 0.01 * bn as f64
        };
        (armed && self.armed >= self.bars.armed) || self.fallback >= self.bars.fallback
    }
}

/// One simulated minute of the crate's simulation's traffic model: about
/// `uploads` uploads (normal jitter of √uploads), each async with
/// probability `share`, rejected by the client with probability 0.2%, failed
/// with probability `rate`. Returns judged async uploads and failures.
pub fn draw_minute(rng: &mut SplitMix64, uploads: f64, share: f64, rate: f64) -> (u64, u64) {
    let total = (uploads + uploads.sqrt() * rng.normal()).max(0.0).round() as u64;
    let judged = share * (1.0 - 0.002);
    let (mut n, mut k) = (0, 0);
    for _ in 0..total {
        let u = rng.next_f64();
        if u < judged {
            n += 1;
            // The same draw, rescaled, decides the outcome.
            if u < judged * rate {
                k += 1;
            }
        }
    }
    (n, k)
}

/// In how many of `runs` steady 48-hour stages at failure rate `rate` the
/// reference rolls back (`uploads` a minute, async share `share`).
pub fn false_stops(bars: Bars, uploads: f64, share: f64, rate: f64, runs: u64, seed: u64) -> u64 {
    let mut stopped = 0;
    for run in 0..runs {
        let mut rng = SplitMix64::new(seed.wrapping_add(run.wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        let mut detector = Reference::new(bars);
        for _ in 0..48 * 60 {
            let (n, k) = draw_minute(&mut rng, uploads, share, rate);
            if detector.minute(n, k) {
                stopped += 1;
                break;
            }
        }
    }
    stopped
}
