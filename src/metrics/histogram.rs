//! [`LatencyHistogram`]: log-linear latency buckets with a proven error bound.
//!
//! # Layout
//!
//! Latencies are recorded in whole nanoseconds. A value `v` below
//! 2⁸ = 256 ns has a bucket of its own. Above that, let `e` be the position of
//! its highest set bit (`63 - v.leading_zeros()`), and `shift = e - 7`: the
//! bucket keeps the top 8 bits of `v` (the leading one and
//! [`SUB_BUCKET_BITS`](LatencyHistogram::SUB_BUCKET_BITS) = 7 more), so
//!
//! ```text
//! shift = max(0, msb(v) - 7)        index = shift · 128 + (v >> shift)
//! ```
//!
//! and the bucket holds `[(v >> shift) << shift, … + 2^shift − 1]`. Each power
//! of two from 128 ns up is cut into 128 equal sub-buckets, as in
//! HdrHistogram. The index is computed with one `leading_zeros`, a
//! subtraction and two shifts: no search.
//!
//! The highest bit position tracked is 41, so the range is 0 ns to
//! 2⁴² − 1 ns ≈ 73.3 minutes ([`HIGHEST_TRACKABLE`](LatencyHistogram::HIGHEST_TRACKABLE)),
//! in (41 − 7) · 128 + 2 · 128 = 4,608 buckets. Longer latencies are recorded
//! as that value (in the buckets and in sum, min and max alike), so they are
//! counted, never lost.
//!
//! # Error bound
//!
//! A quantile is answered with the midpoint `lo + ⌊(hi − lo) / 2⌋` of the
//! bucket `[lo, hi]` that holds the sample of that rank, then clamped into
//! `[min, max]`. The exact sample `x` also lies in `[lo, hi]`, so
//! `|answer − x| ≤ ⌈(hi − lo) / 2⌉ = ⌈(2^shift − 1) / 2⌉ ≤ 2^shift / 2`. For
//! `shift = 0` the bucket is one value wide and the answer exact; otherwise
//! `msb(v) ≥ 8`, so `v >> shift` has its highest bit at position 7, i.e.
//! `v >> shift ≥ 128`, and `x ≥ lo ≥ 128 · 2^shift`, so
//!
//! ```text
//! |answer − x| / x ≤ (2^shift / 2) / (128 · 2^shift) = 1/256 ≈ 0.39%
//! ```
//!
//! ([`RELATIVE_ERROR`](LatencyHistogram::RELATIVE_ERROR)). Clamping into
//! `[min, max]` only moves the answer towards `x`, which lies in that range.
//! Count, sum, min and max are exact, so the mean is exact.
//!
//! A ratio of two such quantiles `a' / b'` with `a' = a(1 ± ε)`,
//! `b' = b(1 ± ε)` and `ε = 1/256` lies within `[(1 − ε)/(1 + ε), (1 + ε)/(1 − ε)]`
//! times the exact ratio `a / b`, i.e. within ±`2ε/(1 − ε)` = ±2/255 ≈ 0.78%.
//! That is what the rollout's latency criteria compare with their thresholds.
//!
//! # Why not the `hdrhistogram` crate
//!
//! Its histograms take `&mut self` to record; its concurrent form
//! (`SyncHistogram` with one `Recorder` per thread) needs a recorder per
//! thread and a synchronising refresh to read. The accumulator needs
//! `record(&self)` from any thread on a shared `Arc`, wait-free, with
//! snapshots that never stop writers. The bucket math is ten lines; owning it
//! lets the shared, striped counters and this plain-data histogram use the
//! same indices. The bench puts `hdrhistogram` under a `Mutex` beside it.
//!
//! One concept in one file of about 780 lines (189 of them its unit tests, 177
//! docs): the bucket layout and its proven error bound are one argument.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Bits of sub-bucket precision: each power of two has 2⁷ = 128 buckets.
const SUB_BITS: u32 = 7;
/// Sub-buckets per power of two.
const SUB: usize = 1 << SUB_BITS;
/// Highest bit position a tracked value may have.
const MAX_MSB: u32 = 41;
/// Largest tracked value in nanoseconds: 2⁴² − 1 (about 73.3 minutes).
pub(crate) const HIGHEST_NS: u64 = (1 << (MAX_MSB + 1)) - 1;
/// Number of buckets: 256 one-value buckets (0 to 255 ns), then 128 per
/// further power of two: (41 − 7) · 128 + 2 · 128 = 4,608.
pub(crate) const BUCKETS: usize = (MAX_MSB - SUB_BITS) as usize * SUB + 2 * SUB;

/// A latency in nanoseconds, clamped to the tracked range.
#[inline]
pub(crate) fn clamp_ns(latency: Duration) -> u64 {
    // `as_nanos` is u128; anything above the range clamps anyway.
    let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
    ns.min(HIGHEST_NS)
}

/// The bucket of a value already clamped to `0..=HIGHEST_NS`.
#[inline]
pub(crate) fn index_of(ns: u64) -> usize {
    debug_assert!(ns <= HIGHEST_NS);
    // `| 1` makes 0 behave like 1 (both have shift 0) without a branch.
    let msb = 63 - (ns | 1).leading_zeros();
    let shift = msb.saturating_sub(SUB_BITS);
    // Both terms are below 2^42 >> shift, so the sum fits a usize on 64-bit
    // and, being < BUCKETS, on every platform.
    ((shift as usize) << SUB_BITS) + (ns >> shift) as usize
}

/// The lowest and highest value (inclusive, ns) of bucket `index`.
#[inline]
pub(crate) fn bounds(index: usize) -> (u64, u64) {
    debug_assert!(index < BUCKETS);
    let shift = (index >> SUB_BITS).saturating_sub(1);
    let mantissa = (index - (shift << SUB_BITS)) as u64;
    let low = mantissa << shift;
    (low, low + (1 << shift) - 1)
}

/// The value reported for a bucket: its midpoint, rounded down.
fn midpoint(index: usize) -> u64 {
    let (low, high) = bounds(index);
    low + (high - low) / 2
}

/// A latency distribution: exact count, sum, min and max, and log-linear
/// buckets that answer any quantile within 1/256 (0.39%) of the exact value.
///
/// Plain data: a [`MetricsSnapshot`](crate::MetricsSnapshot) carries one per
/// arm, holding only the non-empty buckets. The module docs give the bucket
/// layout and prove the bound. It can also be filled by hand with
/// [`record`](LatencyHistogram::record), for tests and simulations.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use async_upload_rollout::metrics::LatencyHistogram;
///
/// let mut h = LatencyHistogram::new();
/// for ms in 1..=100 {
///     h.record(Duration::from_millis(ms));
/// }
/// let p99 = h.quantile(0.99).unwrap();
/// let exact = Duration::from_millis(99);
/// assert!(p99.abs_diff(exact).as_secs_f64() <= exact.as_secs_f64() * LatencyHistogram::RELATIVE_ERROR);
/// assert_eq!(h.mean(), Some(Duration::from_micros(50_500)));
/// assert_eq!(h.max(), Some(Duration::from_millis(100)));
/// ```
///
/// # Serialized form
///
/// ```json
/// {"count":3,"sum_ns":6000,"min_ns":1000,"max_ns":3000,"buckets":[[1000,1],[2000,1],[2992,1]]}
/// ```
///
/// `buckets` lists `[lowest value in the bucket (ns), count]` for the
/// non-empty buckets in increasing order. Reading checks that every lower
/// bound is one of this layout's and that the counts add up to `count`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "HistogramRepr", into = "HistogramRepr")]
pub struct LatencyHistogram {
    count: u64,
    sum_ns: u64,
    min_ns: u64,
    max_ns: u64,
    /// `(bucket index, count)`, indices strictly increasing, counts non-zero.
    buckets: Vec<(u32, u64)>,
}

/// One non-empty bucket of a [`LatencyHistogram`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistogramBucket {
    /// The lowest latency the bucket holds.
    pub low: Duration,
    /// The highest latency the bucket holds.
    pub high: Duration,
    /// How many latencies fell in it.
    pub count: u64,
}

impl LatencyHistogram {
    /// Largest relative error of [`quantile`](LatencyHistogram::quantile):
    /// 1/256 ≈ 0.39%, proven in the module docs. The ratio of two quantiles
    /// is therefore within 2/255 ≈ 0.78% of the exact ratio.
    pub const RELATIVE_ERROR: f64 = 1.0 / 256.0;
    /// Bits of sub-bucket precision (128 buckets per power of two).
    pub const SUB_BUCKET_BITS: u32 = SUB_BITS;
    /// Longest latency tracked as itself: 2⁴² − 1 ns ≈ 73.3 minutes. Longer
    /// ones are recorded as this value.
    pub const HIGHEST_TRACKABLE: Duration = Duration::from_nanos(HIGHEST_NS);
    /// Number of buckets in the layout.
    pub const BUCKET_COUNT: usize = BUCKETS;

    /// An empty histogram.
    #[must_use]
    pub fn new() -> LatencyHistogram {
        LatencyHistogram::default()
    }

    /// Adds one latency (clamped to [`HIGHEST_TRACKABLE`](Self::HIGHEST_TRACKABLE)).
    ///
    /// This is the plain, single-owner form for tests and simulations; the
    /// shared hot path is [`MetricsAccumulator::record`](crate::MetricsAccumulator::record).
    pub fn record(&mut self, latency: Duration) {
        let ns = clamp_ns(latency);
        let index = index_of(ns) as u32;
        match self.buckets.binary_search_by_key(&index, |&(i, _)| i) {
            Ok(at) => self.buckets[at].1 = self.buckets[at].1.saturating_add(1),
            Err(at) => self.buckets.insert(at, (index, 1)),
        }
        if self.count == 0 {
            self.min_ns = ns;
            self.max_ns = ns;
        } else {
            self.min_ns = self.min_ns.min(ns);
            self.max_ns = self.max_ns.max(ns);
        }
        self.count = self.count.saturating_add(1);
        self.sum_ns = self.sum_ns.saturating_add(ns);
    }

    /// Builds a histogram from dense per-bucket counts and the exact
    /// extremes, as summed by the accumulator. Min and max are clamped into
    /// the lowest and highest non-empty bucket, which keeps them consistent
    /// with the buckets if a concurrent writer was caught half-way.
    pub(crate) fn from_dense(dense: &[u64], sum_ns: u64, min_ns: u64, max_ns: u64) -> Self {
        debug_assert_eq!(dense.len(), BUCKETS);
        let buckets: Vec<(u32, u64)> = dense
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(i, &n)| (i as u32, n))
            .collect();
        LatencyHistogram::from_sparse(buckets, sum_ns, min_ns, max_ns)
    }

    pub(crate) fn from_sparse(
        buckets: Vec<(u32, u64)>,
        sum_ns: u64,
        min_ns: u64,
        max_ns: u64,
    ) -> Self {
        let count = buckets.iter().fold(0u64, |n, &(_, c)| n.saturating_add(c));
        let mut histogram = LatencyHistogram {
            count,
            sum_ns,
            min_ns,
            max_ns,
            buckets,
        };
        histogram.clamp_extremes();
        histogram
    }

    /// Puts min into the lowest non-empty bucket and max into the highest,
    /// so that `min_ns <= max_ns` always holds for a non-empty histogram;
    /// zeroes everything when empty.
    ///
    /// Extremes from a racing reader (or no extreme at all: `min_ns` =
    /// `u64::MAX`, `max_ns` = 0) can cross inside one bucket; they are then
    /// widened to that bucket's bounds, which are still a true lower and
    /// upper bound of every value in it.
    fn clamp_extremes(&mut self) {
        match (self.buckets.first(), self.buckets.last()) {
            (Some(&(first, _)), Some(&(last, _))) => {
                let (low, high) = bounds(first as usize);
                self.min_ns = self.min_ns.clamp(low, high);
                let (low, high) = bounds(last as usize);
                self.max_ns = self.max_ns.clamp(low, high);
                if self.min_ns > self.max_ns {
                    // Only possible when first == last: one bucket.
                    (self.min_ns, self.max_ns) = (low, high);
                }
            }
            _ => {
                self.min_ns = 0;
                self.max_ns = 0;
                self.sum_ns = 0;
            }
        }
    }

    /// Number of latencies recorded.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether nothing was recorded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Exact sum of the recorded latencies (each clamped to the range).
    #[must_use]
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_ns)
    }

    /// Exact sum in nanoseconds.
    #[must_use]
    pub fn sum_ns(&self) -> u64 {
        self.sum_ns
    }

    /// The smallest latency, `None` when empty.
    ///
    /// Exact for cumulative snapshots and merges; for a window
    /// ([`since`](LatencyHistogram::since)) it is a lower bound in the
    /// window's lowest bucket, so within the same 1/256.
    #[must_use]
    pub fn min(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_nanos(self.min_ns))
    }

    /// The largest latency, `None` when empty (exactness as for
    /// [`min`](LatencyHistogram::min)).
    #[must_use]
    pub fn max(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_nanos(self.max_ns))
    }

    /// The exact mean, rounded down to the nanosecond; `None` when empty.
    #[must_use]
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_nanos(self.sum_ns / self.count))
    }

    /// The latency at quantile `q` (`0.5` is the median, `0.99` the p99).
    ///
    /// The exact value it approximates is the nearest-rank sample: with `n`
    /// latencies sorted ascending, the `max(1, ⌈q · n⌉)`-th. The answer is
    /// within [`RELATIVE_ERROR`](Self::RELATIVE_ERROR) of it. `None` when
    /// empty or when `q` is not in `0.0..=1.0` (NaN included).
    #[must_use]
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = nearest_rank(q, self.count);
        let mut seen = 0u64;
        for &(index, n) in &self.buckets {
            seen = seen.saturating_add(n);
            if seen >= rank {
                // max-then-min, not `clamp`: `clamp` panics when min > max,
                // and a histogram built by hand (or a future bug) must not
                // take the monitor down with it.
                let ns = midpoint(index as usize).max(self.min_ns).min(self.max_ns);
                return Some(Duration::from_nanos(ns));
            }
        }
        // Unreachable while the counts add up (an invariant of every
        // constructor); the largest value is the honest answer anyway.
        Some(Duration::from_nanos(self.max_ns))
    }

    /// The non-empty buckets, lowest first.
    pub fn buckets(&self) -> impl ExactSizeIterator<Item = HistogramBucket> + '_ {
        self.buckets.iter().map(|&(index, count)| {
            let (low, high) = bounds(index as usize);
            HistogramBucket {
                low: Duration::from_nanos(low),
                high: Duration::from_nanos(high),
                count,
            }
        })
    }

    /// The distribution of both histograms together: counts, buckets and
    /// sums add; min and max are the smaller and larger. Exact, commutative
    /// and associative (counts saturate at `u64::MAX` rather than wrap).
    #[must_use]
    pub fn merge(&self, other: &LatencyHistogram) -> LatencyHistogram {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        let mut buckets = Vec::with_capacity(self.buckets.len().max(other.buckets.len()));
        let (mut a, mut b) = (
            self.buckets.iter().peekable(),
            other.buckets.iter().peekable(),
        );
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&(i, n)), Some(&&(j, m))) if i == j => {
                    a.next();
                    b.next();
                    (i, n.saturating_add(m))
                }
                (Some(&&x), Some(&&y)) => {
                    if x.0 < y.0 {
                        a.next();
                        x
                    } else {
                        b.next();
                        y
                    }
                }
                (Some(&&x), None) => {
                    a.next();
                    x
                }
                (None, Some(&&y)) => {
                    b.next();
                    y
                }
                (None, None) => break,
            };
            buckets.push(next);
        }
        LatencyHistogram {
            count: self.count.saturating_add(other.count),
            sum_ns: self.sum_ns.saturating_add(other.sum_ns),
            min_ns: self.min_ns.min(other.min_ns),
            max_ns: self.max_ns.max(other.max_ns),
            buckets,
        }
    }

    /// Whether `self` cannot be a later state of `earlier`: its count, sum
    /// or some bucket's count is below `earlier`'s. O(buckets).
    pub(crate) fn went_down_from(&self, earlier: &LatencyHistogram) -> bool {
        if self.count < earlier.count || self.sum_ns < earlier.sum_ns {
            return true;
        }
        let mut later = self.buckets.iter().peekable();
        for &(index, n) in &earlier.buckets {
            while later.next_if(|&&(j, _)| j < index).is_some() {}
            match later.next_if(|&&(j, _)| j == index) {
                Some(&(_, m)) if m >= n => {}
                _ => return true,
            }
        }
        false
    }

    /// What was recorded after `earlier`, when `self` is a later cumulative
    /// histogram of the same source: buckets, count and sum subtract (never
    /// below zero). Min and max of the window cannot be known exactly from
    /// two cumulative extremes; they are bounded by the window's lowest and
    /// highest bucket and by `self`'s extremes (so within 1/256), and
    /// `earlier.merge(&self.since(&earlier)) == self` still holds exactly.
    #[must_use]
    pub fn since(&self, earlier: &LatencyHistogram) -> LatencyHistogram {
        let mut buckets = Vec::with_capacity(self.buckets.len());
        let mut old = earlier.buckets.iter().peekable();
        for &(index, n) in &self.buckets {
            while old.next_if(|&&(j, _)| j < index).is_some() {}
            let before = old.next_if(|&&(j, _)| j == index).map_or(0, |&(_, m)| m);
            let left = n.saturating_sub(before);
            if left > 0 {
                buckets.push((index, left));
            }
        }
        LatencyHistogram::from_sparse(
            buckets,
            self.sum_ns.saturating_sub(earlier.sum_ns),
            self.min_ns,
            self.max_ns,
        )
    }
}

impl LatencyHistogram {
    /// The checks of deserialization, on a histogram in memory: `Err` names
    /// the field that a reader would refuse.
    #[cfg(test)]
    pub(crate) fn check(&self) -> Result<(), String> {
        LatencyHistogram::try_from(HistogramRepr::from(self.clone())).map(drop)
    }
}

/// The 1-based nearest rank of quantile `q` among `n` samples.
pub(crate) fn nearest_rank(q: f64, n: u64) -> u64 {
    // q·n is exact enough: n below 2^53 is represented exactly, and the
    // exact-quantile reference in the tests uses the same formula.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let rank = (q * n as f64).ceil() as u64;
    rank.clamp(1, n)
}

/// The serialized form: bucket lower bounds instead of layout indices, so a
/// log line explains itself.
#[derive(Serialize, Deserialize)]
struct HistogramRepr {
    count: u64,
    sum_ns: u64,
    min_ns: u64,
    max_ns: u64,
    buckets: Vec<[u64; 2]>,
}

impl From<LatencyHistogram> for HistogramRepr {
    fn from(h: LatencyHistogram) -> HistogramRepr {
        HistogramRepr {
            count: h.count,
            sum_ns: h.sum_ns,
            min_ns: h.min_ns,
            max_ns: h.max_ns,
            buckets: h
                .buckets
                .iter()
                .map(|&(index, n)| [bounds(index as usize).0, n])
                .collect(),
        }
    }
}

impl TryFrom<HistogramRepr> for LatencyHistogram {
    type Error = String;

    /// Checks everything a histogram of this crate satisfies, so that a
    /// corrupt or hand-edited one is refused rather than believed: every
    /// bucket is a lower bound of this layout, strictly increasing, with a
    /// count above 0; the counts add up to `count` without overflowing; an
    /// empty histogram has `sum_ns`, `min_ns` and `max_ns` at 0; otherwise
    /// `min_ns <= max_ns`, `min_ns` lies in the lowest bucket and `max_ns` in
    /// the highest. Each message starts with the field to blame.
    fn try_from(repr: HistogramRepr) -> Result<LatencyHistogram, String> {
        let mut buckets = Vec::with_capacity(repr.buckets.len());
        let mut previous: Option<u32> = None;
        let mut total = 0u64;
        for [low, n] in repr.buckets {
            let index = index_of(low.min(HIGHEST_NS));
            if low > HIGHEST_NS || bounds(index).0 != low {
                return Err(format!(
                    "buckets: latency bucket {low} ns is not a bucket lower bound of this layout"
                ));
            }
            let index = index as u32;
            if previous.is_some_and(|p| p >= index) {
                return Err(format!(
                    "buckets: latency bucket {low} ns is out of order (buckets must increase)"
                ));
            }
            if n == 0 {
                return Err(format!("buckets: latency bucket {low} ns has a count of 0"));
            }
            total = total.checked_add(n).ok_or_else(|| {
                format!(
                    "buckets: the bucket counts add up to more than {}",
                    u64::MAX
                )
            })?;
            previous = Some(index);
            buckets.push((index, n));
        }
        if total != repr.count {
            return Err(format!(
                "count: latency count {} differs from the sum of its buckets, {total}",
                repr.count
            ));
        }
        match (buckets.first(), buckets.last()) {
            (Some(&(first, _)), Some(&(last, _))) => {
                if repr.min_ns > repr.max_ns {
                    return Err(format!(
                        "min_ns: {} is above max_ns, {}",
                        repr.min_ns, repr.max_ns
                    ));
                }
                let (low, high) = bounds(first as usize);
                if !(low..=high).contains(&repr.min_ns) {
                    return Err(format!(
                        "min_ns: {} is outside the lowest bucket, {low}..={high} ns",
                        repr.min_ns
                    ));
                }
                let (low, high) = bounds(last as usize);
                if !(low..=high).contains(&repr.max_ns) {
                    return Err(format!(
                        "max_ns: {} is outside the highest bucket, {low}..={high} ns",
                        repr.max_ns
                    ));
                }
            }
            _ => {
                for (field, value) in [
                    ("sum_ns", repr.sum_ns),
                    ("min_ns", repr.min_ns),
                    ("max_ns", repr.max_ns),
                ] {
                    if value != 0 {
                        return Err(format!(
                            "{field}: {value} in an empty histogram (must be 0)"
                        ));
                    }
                }
            }
        }
        Ok(LatencyHistogram {
            count: total,
            sum_ns: repr.sum_ns,
            min_ns: repr.min_ns,
            max_ns: repr.max_ns,
            buckets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_edges() {
        let cases: &[(u64, usize, (u64, u64))] = &[
            (0, 0, (0, 0)),
            (1, 1, (1, 1)),
            (127, 127, (127, 127)),
            (128, 128, (128, 128)),
            (255, 255, (255, 255)),
            (256, 256, (256, 257)),
            (257, 256, (256, 257)),
            (258, 257, (258, 259)),
            (511, 383, (510, 511)),
            (512, 384, (512, 515)),
            (1_000, 3 * 128 + 122, (1_000, 1_003)),
            (3_000, 5 * 128 + 59, (2_992, 3_007)),
            (HIGHEST_NS, BUCKETS - 1, (255 << 34, HIGHEST_NS)),
        ];
        for &(ns, index, range) in cases {
            assert_eq!(index_of(ns), index, "{ns}");
            assert_eq!(bounds(index), range, "{ns}");
        }
        assert_eq!(BUCKETS, 4608);
        assert_eq!(BUCKETS, (41 - 7) * 128 + 2 * 128);
    }

    #[test]
    fn every_bucket_is_contiguous_with_the_next_and_contains_what_maps_to_it() {
        let mut expected_low = 0;
        for index in 0..BUCKETS {
            let (low, high) = bounds(index);
            assert_eq!(low, expected_low, "gap before bucket {index}");
            assert!(low <= high);
            assert_eq!(index_of(low), index);
            assert_eq!(index_of(high), index);
            // The width/low ratio that the error bound rests on.
            if high > low {
                assert!((high - low + 1) * 128 <= low, "bucket {index} too wide");
            }
            expected_low = high + 1;
        }
        assert_eq!(expected_low, HIGHEST_NS + 1);
    }

    #[test]
    fn range_covers_one_nanosecond_to_over_an_hour_and_clamps_above() {
        assert!(LatencyHistogram::HIGHEST_TRACKABLE > Duration::from_secs(3600));
        let cases: &[(Duration, u64)] = &[
            (Duration::ZERO, 0),
            (Duration::from_nanos(1), 1),
            (Duration::from_secs(3600), 3_600_000_000_000),
            (Duration::from_secs(10_000), HIGHEST_NS),
            (Duration::MAX, HIGHEST_NS),
        ];
        for &(latency, ns) in cases {
            assert_eq!(clamp_ns(latency), ns, "{latency:?}");
        }
    }

    #[test]
    fn empty_histogram_answers_none() {
        let h = LatencyHistogram::new();
        assert_eq!(h.quantile(0.5), None);
        assert_eq!(h.mean(), None);
        assert_eq!(h.min(), None);
        assert_eq!(h.max(), None);
    }

    #[test]
    fn quantile_outside_zero_to_one_is_none() {
        let mut h = LatencyHistogram::new();
        h.record(Duration::from_millis(5));
        for q in [-0.1, 1.0001, f64::NAN, f64::INFINITY] {
            assert_eq!(h.quantile(q), None, "{q}");
        }
        assert_eq!(h.quantile(0.0), Some(Duration::from_millis(5)));
        assert_eq!(h.quantile(1.0), Some(Duration::from_millis(5)));
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let mut h = LatencyHistogram::new();
        for us in [1, 2, 3, 3, 1_000_000] {
            h.record(Duration::from_micros(us));
        }
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<LatencyHistogram>(&json).unwrap(), h);

        let bad: &[(&str, &str)] = &[
            (
                r#"{"count":1,"sum_ns":257,"min_ns":257,"max_ns":257,"buckets":[[257,1]]}"#,
                "257 ns is not a bucket lower bound",
            ),
            (
                r#"{"count":2,"sum_ns":5,"min_ns":5,"max_ns":5,"buckets":[[5,1]]}"#,
                "count 2 differs",
            ),
            (
                r#"{"count":2,"sum_ns":5,"min_ns":5,"max_ns":6,"buckets":[[6,1],[5,1]]}"#,
                "out of order",
            ),
            (
                r#"{"count":0,"sum_ns":0,"min_ns":0,"max_ns":0,"buckets":[[5,0]]}"#,
                "count of 0",
            ),
            (
                r#"{"count":2,"sum_ns":9,"min_ns":6,"max_ns":5,"buckets":[[5,1],[6,1]]}"#,
                "min_ns: 6 is above max_ns, 5",
            ),
            (
                r#"{"count":1,"sum_ns":9,"min_ns":3,"max_ns":5,"buckets":[[5,1]]}"#,
                "min_ns: 3 is outside the lowest bucket",
            ),
            (
                r#"{"count":2,"sum_ns":9,"min_ns":5,"max_ns":900,"buckets":[[5,1],[6,1]]}"#,
                "max_ns: 900 is outside the highest bucket",
            ),
            (
                r#"{"count":0,"sum_ns":0,"min_ns":0,"max_ns":0,"buckets":[[5,18446744073709551615],[6,1]]}"#,
                "bucket counts add up to more than",
            ),
            (
                r#"{"count":0,"sum_ns":7,"min_ns":0,"max_ns":0,"buckets":[]}"#,
                "sum_ns: 7 in an empty histogram",
            ),
            (
                r#"{"count":-1,"sum_ns":0,"min_ns":0,"max_ns":0,"buckets":[]}"#,
                "invalid value: integer `-1`",
            ),
            (
                r#"{"count":0,"sum_ns":0,"min_ns":0,"max_ns":0}"#,
                "missing field `buckets`",
            ),
        ];
        for &(json, message) in bad {
            let err = serde_json::from_str::<LatencyHistogram>(json).unwrap_err();
            assert!(err.to_string().contains(message), "{json}: {err}");
        }
    }

    /// Issue 11: a record straddling `reset` left a stripe's min at
    /// `u64::MAX` and max at 0; clamped into one wide bucket they crossed
    /// (min 257 > max 256) and `quantile`'s `clamp(min, max)` panicked.
    #[test]
    fn reset_race_extremes_crossed_in_one_bucket_do_not_panic_quantile() {
        let mut dense = vec![0u64; BUCKETS];
        dense[index_of(256)] = 3;
        let h = LatencyHistogram::from_dense(&dense, 770, u64::MAX, 0);
        assert_eq!((h.min_ns, h.max_ns), (256, 257), "widened to the bucket");
        for q in [0.0, 0.5, 1.0] {
            let answer = h.quantile(q).unwrap();
            assert!((256..=257).contains(&(answer.as_nanos() as u64)));
        }
        // Even a histogram whose extremes cross (no constructor makes one)
        // answers instead of panicking.
        let crossed = LatencyHistogram {
            count: 1,
            sum_ns: 300,
            min_ns: 400,
            max_ns: 300,
            buckets: vec![(index_of(300) as u32, 1)],
        };
        assert_eq!(crossed.quantile(0.5), Some(Duration::from_nanos(300)));
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<LatencyHistogram>(&json).unwrap(), h);
    }

    #[test]
    fn since_then_merge_restores_the_later_histogram() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        for (i, us) in [900, 5, 70_000, 5, 1, 123_456].into_iter().enumerate() {
            let d = Duration::from_micros(us);
            if i < 3 {
                a.record(d);
            }
            b.record(d);
        }
        let window = b.since(&a);
        assert_eq!(window.count(), 3);
        assert_eq!(window.min(), Some(Duration::from_micros(1)));
        assert_eq!(a.merge(&window), b);
        assert_eq!(window.merge(&a), b);
        assert!(b.since(&b).is_empty());
    }
}
