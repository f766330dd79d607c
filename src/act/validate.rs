//! Record-level checks of the log's lines that a reader runs on a parsed
//! [`LogRecord`](crate::act::log::LogRecord), so that every reader refuses the same
//! lines. The schema version is checked while reading, by the schema itself
//! (`act/record.rs`); snapshot invariants by the metrics types themselves.
//! This module depends on the schema, never the other way round.

#[cfg(feature = "cli")]
pub(crate) use lines::*;

/// Checks a reader runs on a parsed record, alone and against the record
/// before it: the command line's reader
/// (`InstanceLog`) runs them on every line.
#[cfg(feature = "cli")]
pub(crate) mod lines {
    use crate::act::record::{LogEvent, LogRecord};
    use crate::metrics::{Arm, ArmMetrics, MetricsSnapshot, Outcome};

    /// How far an arm's latency count may be from its judged uploads, at
    /// least: a snapshot taken while uploads are being recorded can count an
    /// upload's latency before its outcome (the accumulator writes the bucket
    /// first and a snapshot reads the outcomes first), and a run's totals are
    /// the difference of two such snapshots, so the two counts may differ by
    /// the uploads recorded during a snapshot. Beyond this many plus
    /// [`LATENCY_SLACK_PER_MILLE`] of the judged uploads, no snapshot of this
    /// crate disagrees with itself: the line was written or edited wrong.
    pub const LATENCY_SLACK: u64 = 64;

    /// The part of the judged uploads (in thousandths) the latency count may
    /// differ by on top of [`LATENCY_SLACK`]: a snapshot of a busy service that
    /// was slow to read its counters (its thread preempted) catches more
    /// uploads in flight.
    pub const LATENCY_SLACK_PER_MILLE: u64 = 10;

    /// A record that contradicts itself: the field to blame and why.
    pub(crate) type Contradiction = (String, String);

    /// The checks a record must pass alone beyond what reading it checks: a
    /// `tick` line carries the totals it judged ([`missing_totals`]), and in
    /// every snapshot each arm's latency count agrees with the judged uploads it
    /// describes ([`snapshot_contradiction`]).
    #[cfg(test)]
    pub(crate) fn record_contradiction(record: &LogRecord) -> Option<Contradiction> {
        missing_totals(record).or_else(|| snapshot_contradiction(record.snapshot.as_ref()?))
    }

    /// A `tick` line without the totals its evaluation judged (`snapshot`
    /// missing or `null`).
    pub(crate) fn missing_totals(record: &LogRecord) -> Option<Contradiction> {
        (record.event == LogEvent::Tick && record.snapshot.is_none()).then(|| {
            (
                "snapshot".to_owned(),
                "a tick line carries the totals its evaluation judged; this one has none (missing or null)"
                    .to_owned(),
            )
        })
    }

    /// An arm of `snapshot` whose latency count disagrees with the judged
    /// uploads it describes, beyond [`LATENCY_SLACK`] and
    /// [`LATENCY_SLACK_PER_MILLE`]: the field (`snapshot.sync.latency.count`)
    /// and why.
    pub(crate) fn snapshot_contradiction(snapshot: &MetricsSnapshot) -> Option<Contradiction> {
        Arm::ALL.into_iter().find_map(|arm| {
            latency_contradiction(snapshot.arm(arm))
                .map(|reason| (format!("snapshot.{}.latency.count", arm.as_str()), reason))
        })
    }

    /// Why `arm`'s latency count cannot describe its judged uploads, if it cannot.
    fn latency_contradiction(arm: &ArmMetrics) -> Option<String> {
        let (judged, latencies) = (arm.judged(), arm.latency.count());
        let slack = LATENCY_SLACK.saturating_add(judged / 1000 * LATENCY_SLACK_PER_MILLE);
        (judged.abs_diff(latencies) > slack).then(|| {
            format!(
                "{latencies} latencies for {judged} judged uploads (success + error + critical): \
                 each judged upload has one latency (at most {slack} may be in flight while a \
                 snapshot is taken)"
            )
        })
    }

    /// What makes two snapshots of one event kind parts of one series whose
    /// counters only grow: a `tick` line's run totals (the same judged stage,
    /// the same run start and generation) or a `snapshot` line's accumulator
    /// (the same start and generation).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) struct SeriesKey {
        /// The `stage` field (the judged stage on tick lines).
        pub(crate) stage: Option<usize>,
        /// `snapshot.start_unix_ms`: the run's (or accumulator's) start.
        pub(crate) start_unix_ms: u64,
        /// `snapshot.generation`: resets counted.
        pub(crate) generation: u64,
    }

    impl SeriesKey {
        /// The key of `record`, whose snapshot is `snapshot`.
        pub(crate) fn of(record: &LogRecord, snapshot: &MetricsSnapshot) -> SeriesKey {
            SeriesKey {
                stage: record.stage,
                start_unix_ms: snapshot.start_unix_ms,
                generation: snapshot.generation,
            }
        }
    }

    /// The first counter of `later` below the same counter of `earlier`, as
    /// `(field path under the snapshot, earlier value, later value)`: within
    /// one series, no count, sum or bucket goes down.
    pub(crate) fn first_decrease(
        earlier: &MetricsSnapshot,
        later: &MetricsSnapshot,
    ) -> Option<(String, u64, u64)> {
        for arm in Arm::ALL {
            let (a, b) = (earlier.arm(arm), later.arm(arm));
            let counters = Outcome::ALL
                .into_iter()
                .map(|o| (o.as_str(), a.count(o), b.count(o)))
                .chain([
                    ("complaints", a.complaints, b.complaints),
                    ("critical_events", a.critical_events, b.critical_events),
                    ("latency.count", a.latency.count(), b.latency.count()),
                    ("latency.sum_ns", a.latency.sum_ns(), b.latency.sum_ns()),
                ]);
            for (name, from, to) in counters {
                if to < from {
                    return Some((format!("{}.{name}", arm.as_str()), from, to));
                }
            }
            // Bucket by bucket on the layout's indices first (every line of a
            // log goes through here); by lower bound only to name the bucket.
            if !b.latency.went_down_from(&a.latency) {
                continue;
            }
            let mut buckets = b.latency.buckets().peekable();
            for bucket in a.latency.buckets() {
                while buckets.next_if(|l| l.low < bucket.low).is_some() {}
                let now = buckets
                    .next_if(|l| l.low == bucket.low)
                    .map_or(0, |l| l.count);
                if now < bucket.count {
                    let field = format!(
                        "{}.latency.buckets[{} ns]",
                        arm.as_str(),
                        bucket.low.as_nanos()
                    );
                    return Some((field, bucket.count, now));
                }
            }
        }
        None
    }

    #[cfg(test)]
    mod tests {
        use std::time::Duration;

        use super::*;

        fn tick_with(arm: ArmMetrics) -> LogRecord {
            let mut snapshot = MetricsSnapshot::default();
            *snapshot.arm_mut(Arm::Sync) = arm;
            let mut record = LogRecord::new(LogEvent::Tick, 0);
            record.snapshot = Some(snapshot);
            record
        }

        #[test]
        fn a_tick_without_totals_contradicts_itself() {
            let record = LogRecord::new(LogEvent::Tick, 0);
            let (field, reason) = record_contradiction(&record).unwrap();
            assert_eq!(field, "snapshot");
            assert!(reason.contains("none"), "{reason}");
            // Other lines need no snapshot.
            assert!(record_contradiction(&LogRecord::new(LogEvent::Action, 0)).is_none());
        }

        #[test]
        fn latency_counts_may_trail_outcomes_by_what_is_in_flight_only() {
            let mut arm = ArmMetrics::default();
            for _ in 0..10_000 {
                arm.record(Outcome::Success, Duration::from_millis(5));
            }
            assert!(record_contradiction(&tick_with(arm.clone())).is_none());
            // In flight while a snapshot was taken: within 64 + 1%.
            let mut near = arm.clone();
            near.success += LATENCY_SLACK + 100;
            assert!(record_contradiction(&tick_with(near)).is_none());
            // Ten times the uploads the histogram describes: refused.
            let mut far = arm;
            far.success *= 10;
            let (field, reason) = record_contradiction(&tick_with(far)).unwrap();
            assert_eq!(field, "snapshot.sync.latency.count");
            assert!(
                reason.contains("10000 latencies for 100000 judged"),
                "{reason}"
            );
            // Rejected uploads have no latency and do not count.
            let rejected = ArmMetrics {
                rejected: 1_000_000,
                ..ArmMetrics::default()
            };
            assert!(record_contradiction(&tick_with(rejected)).is_none());
        }
    }
}
