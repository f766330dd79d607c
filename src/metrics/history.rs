//! [`History`]: a bounded ring of timestamped cumulative snapshots.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use super::snapshot::MetricsSnapshot;
use crate::clock::{duration_ms, unix_ms};

/// The last few hours of cumulative snapshots, spaced in time, to cut
/// windows from: "the last 5 minutes", "each 5 minutes of the last 30".
///
/// Push a fresh [`MetricsAccumulator::snapshot`](crate::MetricsAccumulator::snapshot)
/// every few seconds. The ring keeps snapshots at least `spacing` apart,
/// except the newest, which is always kept as [`latest`](History::latest):
/// while the newest is less than `spacing` after the snapshot before it, a
/// push **replaces** it instead of adding one. So pushing every second with a
/// 10 s spacing keeps one snapshot per 10 s plus the current one. When the
/// ring is full, the oldest snapshot is dropped.
///
/// A window is `latest.since(older)`, so it covers at least the asked
/// duration and at most one `spacing` more, and everything about
/// [`MetricsSnapshot::since`] (resets included) applies.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use async_upload_rollout::{Arm, History, MetricsAccumulator, Outcome, clock::ManualClock};
///
/// let clock = ManualClock::default();
/// let metrics = MetricsAccumulator::with_clock(Arc::new(clock.clone()));
/// let mut history = History::default(); // 720 snapshots, 10 s apart: ~2 hours
///
/// for second in 0..=600 {
///     if second >= 300 {
///         metrics.record(Arm::Async, Outcome::Success, Duration::from_millis(50));
///     }
///     if second % 10 == 0 {
///         history.push(metrics.snapshot());
///     }
///     clock.advance(Duration::from_secs(1));
/// }
/// let last_5_min = history.window(Duration::from_secs(300)).unwrap();
/// assert_eq!(last_5_min.uploads(Arm::Async), 300);
/// assert!(history.window(Duration::from_secs(3600)).is_none()); // not that far back yet
/// ```
#[derive(Clone, Debug)]
pub struct History {
    entries: VecDeque<MetricsSnapshot>,
    capacity: usize,
    spacing_ms: u64,
}

impl History {
    /// Snapshots kept by [`History::default`].
    pub const DEFAULT_CAPACITY: usize = 720;
    /// Spacing of [`History::default`]: 720 snapshots 10 s apart reach back
    /// 7,190 s, about two hours.
    pub const DEFAULT_SPACING: Duration = Duration::from_secs(10);
    /// Smallest capacity: a window needs two snapshots.
    pub const MIN_CAPACITY: usize = 2;

    /// A ring of up to `capacity` snapshots at least `spacing` apart (the
    /// newest excepted). It reaches back about `(capacity − 1) × spacing`.
    ///
    /// Never fails: a capacity below [`MIN_CAPACITY`](Self::MIN_CAPACITY)
    /// (such as 0) is raised to it, and a zero spacing keeps every push.
    #[must_use]
    pub fn new(capacity: usize, spacing: Duration) -> History {
        let capacity = capacity.max(Self::MIN_CAPACITY);
        History {
            // Allocate lazily for huge capacities; a full default ring is
            // 720 entries.
            entries: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
            spacing_ms: duration_ms(spacing),
        }
    }

    /// The capacity in snapshots (after raising it to the minimum).
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The spacing between kept snapshots.
    #[must_use]
    pub fn spacing(&self) -> Duration {
        Duration::from_millis(self.spacing_ms)
    }

    /// Adds a cumulative snapshot; it becomes [`latest`](History::latest).
    ///
    /// If the current newest is less than `spacing` after the snapshot
    /// before it, the pushed one replaces it; otherwise it is added (and the
    /// oldest dropped when the ring is full). A snapshot older than the
    /// newest (the clock went back) clears the history first: windows across
    /// a clock jump would mean nothing.
    pub fn push(&mut self, snapshot: MetricsSnapshot) {
        if self
            .entries
            .back()
            .is_some_and(|newest| snapshot.at_unix_ms < newest.at_unix_ms)
        {
            self.entries.clear();
        }
        let n = self.entries.len();
        let replace_newest = n >= 2
            && self.entries[n - 1].at_unix_ms - self.entries[n - 2].at_unix_ms < self.spacing_ms;
        if replace_newest {
            self.entries[n - 1] = snapshot;
            return;
        }
        if n == self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(snapshot);
    }

    /// The newest snapshot.
    #[must_use]
    pub fn latest(&self) -> Option<&MetricsSnapshot> {
        self.entries.back()
    }

    /// The oldest snapshot kept.
    #[must_use]
    pub fn oldest(&self) -> Option<&MetricsSnapshot> {
        self.entries.front()
    }

    /// The snapshots kept, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &MetricsSnapshot> + ExactSizeIterator {
        self.entries.iter()
    }

    /// Number of snapshots kept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no snapshot is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every snapshot (for example when a new stage starts).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The newest kept snapshot taken at or before `t_ms`.
    fn at_or_before(&self, t_ms: u64) -> Option<&MetricsSnapshot> {
        // Stamps are non-decreasing (`push` enforces it).
        let after = self.entries.partition_point(|s| s.at_unix_ms <= t_ms);
        after.checked_sub(1).map(|i| &self.entries[i])
    }

    /// The last `duration`: `latest.since(s)` where `s` is the newest kept
    /// snapshot at or before `latest.at − duration`. `None` when the history
    /// does not reach back that far (or is empty).
    #[must_use]
    pub fn window(&self, duration: Duration) -> Option<MetricsSnapshot> {
        let latest = self.latest()?;
        let start = latest.at_unix_ms.checked_sub(duration_ms(duration))?;
        Some(latest.since(self.at_or_before(start)?))
    }

    /// Everything since `start`: `latest.since(s)` where `s` is the newest
    /// kept snapshot at or before `start`. `None` when the history does not
    /// reach back to `start`.
    #[must_use]
    pub fn since_time(&self, start: SystemTime) -> Option<MetricsSnapshot> {
        let latest = self.latest()?;
        Some(latest.since(self.at_or_before(unix_ms(start))?))
    }

    /// The last `span` cut into consecutive windows of `each`, oldest first,
    /// so a criterion can ask "has this held in every 5 minutes of the last
    /// 30?". Window `k` ends at the newest snapshot at or before
    /// `latest.at − span + (k + 1) · each` (the last one ends at `latest`), so
    /// windows are `each` long up to the spacing, and together they cover
    /// `span` exactly once. When `each` does not divide `span`, the last
    /// window is shorter. With `each` below the spacing some windows may be
    /// empty.
    ///
    /// `None` when the history does not reach back `span`, or `each` is 0.
    #[must_use]
    pub fn windows_over(&self, span: Duration, each: Duration) -> Option<Vec<MetricsSnapshot>> {
        let (span_ms, each_ms) = (duration_ms(span), duration_ms(each));
        if each_ms == 0 {
            return None;
        }
        let latest = self.latest()?;
        let start_ms = latest.at_unix_ms.checked_sub(span_ms)?;
        let mut from = self.at_or_before(start_ms)?;
        let count = span_ms.div_ceil(each_ms);
        let mut windows = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for k in 1..=count {
            let end_ms = start_ms.saturating_add(k.saturating_mul(each_ms));
            let to = if k == count {
                latest
            } else {
                self.at_or_before(end_ms)?
            };
            windows.push(to.since(from));
            from = to;
        }
        Some(windows)
    }
}

impl Default for History {
    /// 720 snapshots 10 seconds apart: about two hours.
    fn default() -> History {
        History::new(Self::DEFAULT_CAPACITY, Self::DEFAULT_SPACING)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> MetricsSnapshot {
        MetricsSnapshot::empty_at(crate::clock::from_unix_ms(secs * 1000))
    }

    fn stamps(history: &History) -> Vec<u64> {
        history.iter().map(|s| s.at_unix_ms / 1000).collect()
    }

    #[test]
    fn pushes_closer_than_spacing_replace_the_newest() {
        let mut h = History::new(100, Duration::from_secs(10));
        for s in 0..=25 {
            h.push(at(s));
        }
        assert_eq!(stamps(&h), [0, 10, 20, 25]);
        assert_eq!(h.latest().unwrap().at_unix_ms, 25_000);
    }

    #[test]
    fn bad_arguments_are_clamped_not_fatal() {
        let mut h = History::new(0, Duration::ZERO);
        assert_eq!(h.capacity(), History::MIN_CAPACITY);
        for s in 0..5 {
            h.push(at(s));
        }
        assert_eq!(stamps(&h), [3, 4]);
        assert_eq!(h.windows_over(Duration::from_secs(1), Duration::ZERO), None);
    }

    #[test]
    fn a_clock_jump_backwards_clears_the_ring() {
        let mut h = History::default();
        h.push(at(100));
        h.push(at(200));
        h.push(at(50));
        assert_eq!(stamps(&h), [50]);
    }

    #[test]
    fn empty_history_answers_none() {
        let h = History::default();
        assert!(h.is_empty());
        assert!(h.latest().is_none());
        assert!(h.window(Duration::ZERO).is_none());
        assert!(
            h.windows_over(Duration::from_secs(1), Duration::from_secs(1))
                .is_none()
        );
    }

    #[test]
    fn default_reaches_back_two_hours() {
        let h = History::default();
        let reach = h.spacing() * (h.capacity() as u32 - 1);
        assert!(reach >= Duration::from_secs(2 * 3600 - 10), "{reach:?}");
    }
}
