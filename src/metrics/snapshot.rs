//! [`MetricsSnapshot`]: the accumulator's counts at one instant, as plain data.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::critical;
use super::histogram::LatencyHistogram;
use super::{Arm, Outcome};
use crate::clock::{from_unix_ms, unix_ms};

/// One arm's counts: uploads by outcome, complaints, and the latency of its
/// judged uploads.
///
/// Fields are public so that tests and simulations can build snapshots by
/// hand; [`record`](ArmMetrics::record) keeps `latency` consistent with the
/// counts (its count equals [`judged`](ArmMetrics::judged)).
///
/// # Reading
///
/// Deserializing checks what every snapshot of this crate satisfies, and
/// refuses the rest with an error naming the field: the four outcome counts
/// add up without overflowing `u64`, `complaints <= uploads` (the
/// accumulator and [`since`](ArmMetrics::since) cap complaints at uploads),
/// and `latency` is present and valid (see [`LatencyHistogram`]). The
/// latency count is not compared with `judged`: a snapshot taken while
/// uploads are being recorded may hold an outcome without its latency yet,
/// or the reverse.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ArmRepr")]
pub struct ArmMetrics {
    /// Uploads stored and acknowledged.
    pub success: u64,
    /// Uploads that failed on the server's side.
    pub error: u64,
    /// Uploads that failed critically (also errors in the error rate).
    pub critical: u64,
    /// Uploads refused because of the client (not judged).
    pub rejected: u64,
    /// User complaints attributed to this arm.
    pub complaints: u64,
    /// Latency of the judged uploads (success, error, critical).
    pub latency: LatencyHistogram,
    /// Critical errors that were not an upload (a crash, an out-of-memory
    /// kill, corruption found later), reported with
    /// [`MetricsAccumulator::record_critical`](crate::MetricsAccumulator::record_critical).
    /// They fire the critical-errors rollback trigger like a `Critical`
    /// upload, but count in no upload rate. Absent from the serialized form
    /// when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub critical_events: u64,
    /// The reasons of the latest of those events, oldest first (at most
    /// [`MetricsAccumulator::CRITICAL_REASONS_KEPT`](crate::MetricsAccumulator::CRITICAL_REASONS_KEPT)).
    /// A window keeps the reasons of the events inside it. Absent from the
    /// serialized form when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub critical_reasons: Vec<String>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ArmMetrics {
    /// Adds one upload by hand (tests, simulations): the outcome's count, and
    /// for judged outcomes the latency.
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        let count = self.count_mut(outcome);
        *count = count.saturating_add(1);
        if outcome.is_judged() {
            self.latency.record(latency);
        }
    }

    /// The count of one outcome.
    #[must_use]
    pub fn count(&self, outcome: Outcome) -> u64 {
        match outcome {
            Outcome::Success => self.success,
            Outcome::Error => self.error,
            Outcome::Critical => self.critical,
            Outcome::Rejected => self.rejected,
        }
    }

    fn count_mut(&mut self, outcome: Outcome) -> &mut u64 {
        match outcome {
            Outcome::Success => &mut self.success,
            Outcome::Error => &mut self.error,
            Outcome::Critical => &mut self.critical,
            Outcome::Rejected => &mut self.rejected,
        }
    }

    /// All uploads: `success + error + critical + rejected`.
    #[must_use]
    pub fn uploads(&self) -> u64 {
        self.judged().saturating_add(self.rejected)
    }

    /// Uploads that count in the rates: `success + error + critical`.
    #[must_use]
    pub fn judged(&self) -> u64 {
        self.success
            .saturating_add(self.error)
            .saturating_add(self.critical)
    }

    /// `success / judged`; `None` when nothing was judged.
    #[must_use]
    pub fn success_rate(&self) -> Option<f64> {
        ratio(self.success, self.judged())
    }

    /// `(error + critical) / judged`; `None` when nothing was judged.
    #[must_use]
    pub fn error_rate(&self) -> Option<f64> {
        ratio(self.error.saturating_add(self.critical), self.judged())
    }

    /// `complaints / uploads`; `None` when there were no uploads.
    #[must_use]
    pub fn complaint_rate(&self) -> Option<f64> {
        ratio(self.complaints, self.uploads())
    }

    /// Both arms' data together (exact; counts saturate).
    #[must_use]
    pub fn merge(&self, other: &ArmMetrics) -> ArmMetrics {
        ArmMetrics {
            success: self.success.saturating_add(other.success),
            error: self.error.saturating_add(other.error),
            critical: self.critical.saturating_add(other.critical),
            rejected: self.rejected.saturating_add(other.rejected),
            complaints: self.complaints.saturating_add(other.complaints),
            latency: self.latency.merge(&other.latency),
            critical_events: self.critical_events.saturating_add(other.critical_events),
            critical_reasons: {
                // Both lists, the latest ones kept (by position: each list
                // is oldest first).
                let mut reasons = self.critical_reasons.clone();
                reasons.extend(other.critical_reasons.iter().cloned());
                let excess = reasons.len().saturating_sub(critical::REASONS_KEPT);
                reasons.drain(..excess);
                reasons
            },
        }
    }

    /// What happened after `earlier` (counts subtract, never below zero).
    ///
    /// Complaints are capped at the window's uploads: a complaint that
    /// arrives in a window without uploads on its arm (about an upload of an
    /// earlier stage, say) is not one about this window's traffic, and a
    /// window never claims more than one complaint per upload.
    #[must_use]
    pub fn since(&self, earlier: &ArmMetrics) -> ArmMetrics {
        let mut window = ArmMetrics {
            success: self.success.saturating_sub(earlier.success),
            error: self.error.saturating_sub(earlier.error),
            critical: self.critical.saturating_sub(earlier.critical),
            rejected: self.rejected.saturating_sub(earlier.rejected),
            complaints: self.complaints.saturating_sub(earlier.complaints),
            latency: self.latency.since(&earlier.latency),
            critical_events: self.critical_events.saturating_sub(earlier.critical_events),
            critical_reasons: {
                // The window's events are the latest ones: keep as many of
                // the latest reasons as there are events in the window.
                let events = self.critical_events.saturating_sub(earlier.critical_events);
                let keep = usize::try_from(events).unwrap_or(usize::MAX);
                let skip = self.critical_reasons.len().saturating_sub(keep);
                self.critical_reasons[skip..].to_vec()
            },
        };
        window.complaints = window.complaints.min(window.uploads());
        window
    }

    /// Whether any count of `self` is below the same count of `earlier`:
    /// then `self` is not a later state of the same counters.
    fn went_down_from(&self, earlier: &ArmMetrics) -> bool {
        self.success < earlier.success
            || self.error < earlier.error
            || self.critical < earlier.critical
            || self.rejected < earlier.rejected
            || self.complaints < earlier.complaints
            || self.latency.went_down_from(&earlier.latency)
            || self.critical_events < earlier.critical_events
    }
}

/// The serialized form of [`ArmMetrics`], checked by its `TryFrom`.
#[derive(Deserialize)]
struct ArmRepr {
    success: u64,
    error: u64,
    critical: u64,
    rejected: u64,
    complaints: u64,
    latency: LatencyHistogram,
    #[serde(default)]
    critical_events: u64,
    #[serde(default)]
    critical_reasons: Vec<String>,
}

impl TryFrom<ArmRepr> for ArmMetrics {
    type Error = String;

    fn try_from(repr: ArmRepr) -> Result<ArmMetrics, String> {
        let uploads = [repr.success, repr.error, repr.critical, repr.rejected]
            .into_iter()
            .try_fold(0u64, u64::checked_add)
            .ok_or_else(|| {
                format!(
                    "success, error, critical, rejected: the outcome counts add up to more than {}",
                    u64::MAX
                )
            })?;
        if repr.complaints > uploads {
            return Err(format!(
                "complaints: {} complaints for {uploads} uploads (at most one per upload)",
                repr.complaints
            ));
        }
        let kept = critical::REASONS_KEPT;
        if repr.critical_reasons.len() > kept
            || u64::try_from(repr.critical_reasons.len()).unwrap_or(u64::MAX) > repr.critical_events
        {
            return Err(format!(
                "critical_reasons: {} reasons for {} critical events (at most one per event, and at most {kept})",
                repr.critical_reasons.len(),
                repr.critical_events
            ));
        }
        Ok(ArmMetrics {
            success: repr.success,
            error: repr.error,
            critical: repr.critical,
            rejected: repr.rejected,
            complaints: repr.complaints,
            latency: repr.latency,
            critical_events: repr.critical_events,
            critical_reasons: repr.critical_reasons,
        })
    }
}

fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)] // counts far below 2^53 are exact
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
}

/// Process memory in bytes over one period: the first sample (baseline), the
/// last one, and the largest.
///
/// Deserializing checks that `peak` is at least `baseline` and `current`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "MemoryRepr")]
pub struct MemoryStats {
    /// The first sample after the accumulator's creation or last reset.
    pub baseline: u64,
    /// The latest sample.
    pub current: u64,
    /// The largest sample.
    pub peak: u64,
}

impl MemoryStats {
    /// `current / baseline − 1` (`0.2` is 20% above the baseline); `None`
    /// when the baseline is 0.
    #[must_use]
    pub fn growth(&self) -> Option<f64> {
        growth(self.current, self.baseline)
    }

    /// `peak / baseline − 1`; `None` when the baseline is 0.
    #[must_use]
    pub fn peak_growth(&self) -> Option<f64> {
        growth(self.peak, self.baseline)
    }

    /// Two instances' memory together: each field adds (the peak is then an
    /// upper bound of the fleet's peak).
    #[must_use]
    pub fn merge(&self, other: &MemoryStats) -> MemoryStats {
        MemoryStats {
            baseline: self.baseline.saturating_add(other.baseline),
            current: self.current.saturating_add(other.current),
            peak: self.peak.saturating_add(other.peak),
        }
    }
}

/// The serialized form of [`MemoryStats`], checked by its `TryFrom`.
#[derive(Deserialize)]
struct MemoryRepr {
    baseline: u64,
    current: u64,
    peak: u64,
}

impl TryFrom<MemoryRepr> for MemoryStats {
    type Error = String;

    fn try_from(repr: MemoryRepr) -> Result<MemoryStats, String> {
        if repr.peak < repr.baseline.max(repr.current) {
            return Err(format!(
                "peak: {} bytes is below the baseline ({}) or current ({}) sample",
                repr.peak, repr.baseline, repr.current
            ));
        }
        Ok(MemoryStats {
            baseline: repr.baseline,
            current: repr.current,
            peak: repr.peak,
        })
    }
}

fn growth(value: u64, baseline: u64) -> Option<f64> {
    ratio(value, baseline).map(|r| r - 1.0)
}

/// The counts of an accumulator at one instant, cumulative since its last
/// reset: plain data, serializable, cheap to keep in a [`History`](crate::History).
///
/// A **window** is the difference of two cumulative snapshots
/// ([`since`](MetricsSnapshot::since)); snapshots of several instances add up
/// exactly ([`merge`](MetricsSnapshot::merge)). The rates are defined under
/// [Rates](crate::MetricsAccumulator#rates).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use async_upload_rollout::{Arm, MetricsSnapshot, Outcome};
///
/// let mut before = MetricsSnapshot::default();
/// before.arm_mut(Arm::Async).record(Outcome::Success, Duration::from_millis(80));
/// let mut now = before.clone();
/// now.at_unix_ms += 60_000;
/// now.arm_mut(Arm::Async).record(Outcome::Error, Duration::from_millis(900));
/// now.arm_mut(Arm::Async).record(Outcome::Rejected, Duration::from_millis(2));
///
/// let last_minute = now.since(&before);
/// assert_eq!(last_minute.uploads(Arm::Async), 2);
/// assert_eq!(last_minute.judged(Arm::Async), 1);
/// assert_eq!(last_minute.error_rate(Arm::Async), Some(1.0));
/// assert_eq!(last_minute.success_rate(Arm::Sync), None); // nothing to divide by
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsSnapshot {
    /// When the snapshot was taken, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The start of the period the counts cover, in milliseconds since the
    /// Unix epoch: the accumulator's creation or last reset for a cumulative
    /// snapshot, the earlier snapshot's time for a window.
    pub start_unix_ms: u64,
    /// Resets counted in this snapshot: for a cumulative snapshot, how often
    /// its accumulator was [reset](crate::MetricsAccumulator::reset); merges
    /// add them; for a window, the resets inside it (0 for a clean window).
    pub generation: u64,
    #[serde(rename = "async")]
    async_arm: ArmMetrics,
    #[serde(rename = "sync")]
    sync_arm: ArmMetrics,
    /// Process memory over the period, if any sample was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
}

impl MetricsSnapshot {
    /// An empty snapshot taken at `at`, covering nothing.
    #[must_use]
    pub fn empty_at(at: SystemTime) -> MetricsSnapshot {
        let at_unix_ms = unix_ms(at);
        MetricsSnapshot {
            at_unix_ms,
            start_unix_ms: at_unix_ms,
            ..MetricsSnapshot::default()
        }
    }

    /// When the snapshot was taken.
    #[must_use]
    pub fn at(&self) -> SystemTime {
        from_unix_ms(self.at_unix_ms)
    }

    /// The start of the period the counts cover.
    #[must_use]
    pub fn start(&self) -> SystemTime {
        from_unix_ms(self.start_unix_ms)
    }

    /// The length of the period the counts cover (`at − start`, 0 if the
    /// stamps are out of order).
    #[must_use]
    pub fn span(&self) -> Duration {
        Duration::from_millis(self.at_unix_ms.saturating_sub(self.start_unix_ms))
    }

    /// One arm's counts.
    #[must_use]
    pub fn arm(&self, arm: Arm) -> &ArmMetrics {
        match arm {
            Arm::Async => &self.async_arm,
            Arm::Sync => &self.sync_arm,
        }
    }

    /// One arm's counts, to fill by hand.
    pub fn arm_mut(&mut self, arm: Arm) -> &mut ArmMetrics {
        match arm {
            Arm::Async => &mut self.async_arm,
            Arm::Sync => &mut self.sync_arm,
        }
    }

    /// All uploads on `arm`, whatever their outcome.
    #[must_use]
    pub fn uploads(&self, arm: Arm) -> u64 {
        self.arm(arm).uploads()
    }

    /// Uploads on `arm` that count in the rates: success + error + critical.
    #[must_use]
    pub fn judged(&self, arm: Arm) -> u64 {
        self.arm(arm).judged()
    }

    /// `success / judged` on `arm`; `None` when nothing was judged.
    #[must_use]
    pub fn success_rate(&self, arm: Arm) -> Option<f64> {
        self.arm(arm).success_rate()
    }

    /// `(error + critical) / judged` on `arm`; `None` when nothing was judged.
    #[must_use]
    pub fn error_rate(&self, arm: Arm) -> Option<f64> {
        self.arm(arm).error_rate()
    }

    /// Critical failures on `arm`.
    #[must_use]
    pub fn critical(&self, arm: Arm) -> u64 {
        self.arm(arm).critical
    }

    /// User complaints attributed to `arm`.
    #[must_use]
    pub fn complaints(&self, arm: Arm) -> u64 {
        self.arm(arm).complaints
    }

    /// `complaints / uploads` on `arm`; `None` when there were no uploads.
    #[must_use]
    pub fn complaint_rate(&self, arm: Arm) -> Option<f64> {
        self.arm(arm).complaint_rate()
    }

    /// The latency at quantile `q` on `arm`, within 1/256 of the exact
    /// nearest-rank value (see [`LatencyHistogram::quantile`]).
    #[must_use]
    pub fn latency_quantile(&self, arm: Arm, q: f64) -> Option<Duration> {
        self.arm(arm).latency.quantile(q)
    }

    /// The exact mean latency on `arm`; `None` when nothing was judged.
    #[must_use]
    pub fn mean_latency(&self, arm: Arm) -> Option<Duration> {
        self.arm(arm).latency.mean()
    }

    /// `current / baseline − 1` of process memory; `None` without samples.
    #[must_use]
    pub fn memory_growth(&self) -> Option<f64> {
        self.memory.as_ref().and_then(MemoryStats::growth)
    }

    /// `peak / baseline − 1` of process memory; `None` without samples.
    #[must_use]
    pub fn memory_peak_growth(&self) -> Option<f64> {
        self.memory.as_ref().and_then(MemoryStats::peak_growth)
    }

    /// The window between the cumulative snapshot `earlier` and `self`.
    ///
    /// Counts and latency buckets subtract; the window runs from
    /// `earlier.at_unix_ms` to `self.at_unix_ms`, its `generation` is 0, and
    /// its memory is `self`'s (memory is a level, not a count).
    ///
    /// **Across a reset** (the generations differ, or any count went down)
    /// the counts since `earlier` are unknown; the window is then everything
    /// since the reset: `self` as it is, with `generation` set to the number
    /// of resets in between (at least 1) so a caller can tell. This never
    /// underflows or panics, whatever the two snapshots are.
    ///
    /// For counts, sums and buckets, `earlier.merge(&later.since(&earlier))`
    /// equals `later` exactly.
    #[must_use]
    pub fn since(&self, earlier: &MetricsSnapshot) -> MetricsSnapshot {
        let reset = self.generation != earlier.generation
            || Arm::ALL
                .into_iter()
                .any(|arm| self.arm(arm).went_down_from(earlier.arm(arm)));
        if reset {
            return MetricsSnapshot {
                generation: self.generation.saturating_sub(earlier.generation).max(1),
                ..self.clone()
            };
        }
        MetricsSnapshot {
            at_unix_ms: self.at_unix_ms,
            start_unix_ms: earlier.at_unix_ms,
            generation: 0,
            async_arm: self.async_arm.since(&earlier.async_arm),
            sync_arm: self.sync_arm.since(&earlier.sync_arm),
            memory: self.memory,
        }
    }

    /// Two instances' snapshots (or windows) added up: counts, buckets and
    /// sums add, min and max combine, `generation` adds, the period runs from
    /// the earlier start to the later stamp, and memory adds field by field
    /// (the fleet's memory). Exact, commutative and associative.
    ///
    /// Memory makes it the wrong tool for joining two windows of one
    /// instance: take `since` between cumulative snapshots instead.
    #[must_use]
    pub fn merge(&self, other: &MetricsSnapshot) -> MetricsSnapshot {
        let memory = match (self.memory, other.memory) {
            (Some(a), Some(b)) => Some(a.merge(&b)),
            (a, b) => a.or(b),
        };
        MetricsSnapshot {
            at_unix_ms: self.at_unix_ms.max(other.at_unix_ms),
            start_unix_ms: self.start_unix_ms.min(other.start_unix_ms),
            generation: self.generation.saturating_add(other.generation),
            async_arm: self.async_arm.merge(&other.async_arm),
            sync_arm: self.sync_arm.merge(&other.sync_arm),
            memory,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm_with(success: u64, error: u64, critical: u64, rejected: u64) -> ArmMetrics {
        let mut arm = ArmMetrics::default();
        for (outcome, n) in Outcome::ALL
            .into_iter()
            .zip([success, error, critical, rejected])
        {
            for _ in 0..n {
                arm.record(outcome, Duration::from_millis(10));
            }
        }
        arm
    }

    #[test]
    fn rates_follow_the_documented_definitions() {
        type Counts = (u64, u64, u64, u64);
        // (success, error, critical, rejected) -> (success_rate, error_rate)
        let cases: &[(Counts, Option<(f64, f64)>)] = &[
            ((0, 0, 0, 0), None),
            ((0, 0, 0, 7), None),
            ((1, 0, 0, 0), Some((1.0, 0.0))),
            ((3, 1, 0, 100), Some((0.75, 0.25))),
            ((2, 1, 1, 0), Some((0.5, 0.5))),
            ((0, 0, 4, 0), Some((0.0, 1.0))),
        ];
        for &((s, e, c, r), rates) in cases {
            let arm = arm_with(s, e, c, r);
            assert_eq!(arm.uploads(), s + e + c + r);
            assert_eq!(arm.judged(), s + e + c);
            assert_eq!(arm.latency.count(), s + e + c, "rejected has no latency");
            let got = arm.success_rate().zip(arm.error_rate());
            assert_eq!(got, rates, "{s} {e} {c} {r}");
        }
    }

    #[test]
    fn memory_growth_needs_a_baseline() {
        let mut snap = MetricsSnapshot::default();
        assert_eq!(snap.memory_growth(), None);
        snap.memory = Some(MemoryStats {
            baseline: 100,
            current: 120,
            peak: 150,
        });
        assert!((snap.memory_growth().unwrap() - 0.2).abs() < 1e-12);
        assert!((snap.memory_peak_growth().unwrap() - 0.5).abs() < 1e-12);
        snap.memory = Some(MemoryStats {
            baseline: 0,
            current: 1,
            peak: 1,
        });
        assert_eq!(snap.memory_growth(), None);
    }

    #[test]
    fn since_across_a_reset_is_everything_after_it_and_never_underflows() {
        let mut before = MetricsSnapshot::default();
        *before.arm_mut(Arm::Sync) = arm_with(100, 5, 0, 0);
        let mut after_reset = MetricsSnapshot {
            at_unix_ms: 10_000,
            start_unix_ms: 9_000,
            generation: 1,
            ..MetricsSnapshot::default()
        };
        *after_reset.arm_mut(Arm::Sync) = arm_with(3, 0, 0, 0);
        let window = after_reset.since(&before);
        assert_eq!(window.uploads(Arm::Sync), 3);
        assert_eq!(window.generation, 1);
        assert_eq!(window.start_unix_ms, 9_000);

        // Same generation but counts went down (unrelated snapshots): same rule.
        let mut lower = before.clone();
        lower.arm_mut(Arm::Sync).success = 1;
        let window = lower.since(&before);
        assert_eq!(window.arm(Arm::Sync).success, 1);
        assert_eq!(window.generation, 1);
    }

    /// Found by fuzzing (snapshot_algebra): a histogram whose total count
    /// grew while one bucket shrank passed for a later state, so `since`
    /// subtracted buckets with saturation and `earlier.merge(window)` no
    /// longer gave the later counts back.
    #[test]
    fn since_detects_a_bucket_that_went_down() {
        let mut earlier = MetricsSnapshot::default();
        let mut later = MetricsSnapshot::default();
        for _ in 0..3 {
            earlier
                .arm_mut(Arm::Async)
                .record(Outcome::Success, Duration::from_millis(5));
        }
        for ms in [9, 9, 9, 9, 5] {
            later
                .arm_mut(Arm::Async)
                .record(Outcome::Success, Duration::from_millis(ms));
        }
        later.generation = earlier.generation;
        let window = later.since(&earlier);
        assert_eq!(
            window.generation, 1,
            "not a later state: treated as a reset"
        );
        assert_eq!(window.uploads(Arm::Async), 5);
        // And a sum that went down.
        let mut lower_sum = earlier.clone();
        lower_sum.arm_mut(Arm::Async).latency = {
            let mut h = LatencyHistogram::new();
            for _ in 0..3 {
                h.record(Duration::from_millis(4));
            }
            h
        };
        assert_eq!(lower_sum.since(&earlier).generation, 1);
    }

    #[test]
    fn serialized_names_are_stable() {
        let mut snap = MetricsSnapshot::empty_at(from_unix_ms(5));
        snap.arm_mut(Arm::Async)
            .record(Outcome::Success, Duration::from_micros(1));
        let json = serde_json::to_value(&snap).unwrap();
        for key in ["at_unix_ms", "start_unix_ms", "generation", "async", "sync"] {
            assert!(json.get(key).is_some(), "{key} missing in {json}");
        }
        assert!(json.get("memory").is_none(), "None memory is skipped");
        assert_eq!(json["async"]["success"], 1);
        let back: MetricsSnapshot = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, snap);

        // Critical events are absent unless there are some, so older
        // readers and older lines keep working both ways.
        for key in ["critical_events", "critical_reasons"] {
            assert!(json["async"].get(key).is_none(), "{key} in {json}");
        }
        snap.arm_mut(Arm::Async).critical_events = 1;
        snap.arm_mut(Arm::Async).critical_reasons = vec!["worker crashed".into()];
        let json = serde_json::to_value(&snap).unwrap();
        assert_eq!(json["async"]["critical_events"], 1);
        assert_eq!(json["async"]["critical_reasons"][0], "worker crashed");
        let back: MetricsSnapshot = serde_json::from_value(json).unwrap();
        assert_eq!(back, snap);
    }
}
