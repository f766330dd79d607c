//! [`MetricsAccumulator`]: striped, lock-free counters that the upload
//! handler writes on every upload, and their snapshots.
//!
//! This file is the accumulator's API and its bookkeeping under the
//! snapshot lock (the baseline of the last reset, the generation, the
//! critical-event logs). The rest lives by concept beside it:
//!
//! | file | what it owns |
//! | --- | --- |
//! | `stripe.rs` | the stripe protocol: the cells, how owners and sharers write them, the epoch keys of the extremes, the orderings |
//! | `slot.rs` | the process-wide pool of thread slots |
//! | `raw.rs` | raw sums of the stripes and their subtraction into [`ArmMetrics`](super::ArmMetrics) |
//! | `critical.rs` | the critical-event log |
//! | `memory.rs` | memory samples |

use std::fmt;
#[cfg(not(loom))]
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crossbeam_utils::CachePadded;
#[cfg(loom)]
use loom::sync::atomic::AtomicU64;

use super::critical::{self, CriticalLog, truncate_reason};
use super::memory::MemoryCells;
use super::raw::{Raw, RawArm};
use super::snapshot::MetricsSnapshot;
use super::stripe::{ArmCells, Stripe, Writer, WriterKind, extreme};
use super::{Arm, Outcome, slot};
use crate::clock::{Clock, SystemClock, unix_ms};

/// Fewest and most stripes owned by one thread each.
const MIN_OWNED: usize = 4;
const MAX_OWNED: usize = 32;
/// Stripes shared (with `fetch_add`) by threads beyond the owned ones.
const SHARED: usize = 4;
/// Buckets summed across all stripes at a time by a snapshot (4 KiB of sums).
const SUM_BLOCK: usize = 512;

/// Shared by every upload handler of a process: counts each upload's outcome
/// and latency on the path it took, complaints, and memory samples.
///
/// Recording is lock-free and allocation-free: a few uncontended atomic
/// operations on the recording thread's own cache-padded stripe (the module
/// source explains the striping and the orderings). [`snapshot`](Self::snapshot)
/// sums the stripes into a [`MetricsSnapshot`] stamped by the accumulator's
/// [`Clock`], without stopping writers.
///
/// # Rates
///
/// For one arm, with `success`, `error`, `critical` and `rejected` the counts
/// of each [`Outcome`]:
///
/// ```text
/// uploads      = success + error + critical + rejected
/// judged       = success + error + critical
/// success_rate = success / judged
/// error_rate   = (error + critical) / judged        (so success_rate + error_rate = 1)
/// complaint_rate = complaints / uploads
/// ```
///
/// A rejected upload (the client's fault) counts as an upload but neither for
/// nor against the path, and its latency is not recorded: it measures the
/// client, not the path. A rate is `None` when its denominator is 0, never NaN.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use async_upload_rollout::{Arm, MetricsAccumulator, Outcome};
///
/// let metrics = Arc::new(MetricsAccumulator::new());
/// metrics.record(Arm::Async, Outcome::Success, Duration::from_millis(120));
/// metrics.record(Arm::Async, Outcome::Rejected, Duration::from_millis(3));
/// metrics.record(Arm::Sync, Outcome::Error, Duration::from_millis(900));
///
/// let snap = metrics.snapshot();
/// assert_eq!(snap.uploads(Arm::Async), 2);
/// assert_eq!(snap.success_rate(Arm::Async), Some(1.0));
/// assert_eq!(snap.error_rate(Arm::Sync), Some(1.0));
/// assert_eq!(snap.mean_latency(Arm::Async), Some(Duration::from_millis(120)));
/// ```
pub struct MetricsAccumulator {
    clock: Arc<dyn Clock>,
    /// Stripe `i` is written only by the thread holding slot `i`.
    owned: Box<[CachePadded<Stripe>]>,
    /// Written with read-modify-write operations by all other threads.
    shared: Box<[CachePadded<Stripe>]>,
    memory: CachePadded<MemoryCells>,
    /// The current generation's epoch (see `stripe.rs`); written by
    /// `reset` only (under `state`), read by every record.
    epoch: CachePadded<AtomicU64>,
    /// Baseline of the counters at the last reset. Locked by `snapshot` and
    /// `reset` only, never by recording.
    state: Mutex<State>,
}

/// What `snapshot` and `reset` keep under the lock.
struct State {
    base: Raw,
    generation: u64,
    start_unix_ms: u64,
    /// Critical events per arm since the last reset (see `record_critical`).
    critical: [CriticalLog; 2],
}

impl MetricsAccumulator {
    /// An accumulator on the system clock.
    #[must_use]
    pub fn new() -> MetricsAccumulator {
        MetricsAccumulator::with_clock(Arc::new(SystemClock))
    }

    /// An accumulator whose snapshots are stamped by `clock` (a
    /// [`ManualClock`](crate::clock::ManualClock) in tests and simulations).
    ///
    /// It owns one stripe per expected recording thread (twice the available
    /// parallelism, from 4 to 32) plus 4 shared ones; each stripe holds the
    /// dense buckets of both arms, 2 × 4,608 × 8 bytes = 72 KiB, so 8 stripes
    /// (576 KiB) on a 2-core machine and at most 36 (about 2.5 MiB).
    #[must_use]
    pub fn with_clock(clock: Arc<dyn Clock>) -> MetricsAccumulator {
        let owned = std::thread::available_parallelism()
            .map_or(MIN_OWNED, |n| n.get().saturating_mul(2))
            .clamp(MIN_OWNED, MAX_OWNED);
        MetricsAccumulator::with_stripes(clock, owned)
    }

    fn with_stripes(clock: Arc<dyn Clock>, owned: usize) -> MetricsAccumulator {
        let stripes = |n: usize| (0..n).map(|_| CachePadded::new(Stripe::new())).collect();
        let start_unix_ms = unix_ms(clock.now());
        MetricsAccumulator {
            owned: stripes(owned),
            shared: stripes(SHARED),
            memory: CachePadded::new(MemoryCells::new()),
            epoch: CachePadded::new(AtomicU64::new(extreme::epoch(0))),
            state: Mutex::new(State {
                base: Raw {
                    arms: [RawArm::zero(), RawArm::zero()],
                },
                generation: 0,
                start_unix_ms,
                critical: Default::default(),
            }),
            clock,
        }
    }

    /// Counts one upload on `arm` with its `outcome` and, unless it was
    /// [`Rejected`](Outcome::Rejected), its `latency` (clamped to
    /// [`LatencyHistogram::HIGHEST_TRACKABLE`](super::LatencyHistogram::HIGHEST_TRACKABLE)).
    ///
    /// The hot path: no lock, no allocation, no system call. On a thread with
    /// its own stripe it is a handful of plain loads and stores. Only the
    /// first call on a thread does more: it leases the thread's slot (see
    /// `slot.rs`), taking a process-wide mutex once and registering
    /// the thread-exit hook that returns the slot (with glibc this allocates
    /// nothing; other platforms' standard library may allocate once).
    #[inline]
    pub fn record(&self, arm: Arm, outcome: Outcome, latency: Duration) {
        let (stripe, writer) = self.stripe();
        stripe.arms[arm.index()].record(writer, outcome, latency);
    }

    /// Counts one user complaint attributed to `arm`.
    #[inline]
    pub fn record_complaint(&self, arm: Arm) {
        let (stripe, writer) = self.stripe();
        writer.add(&stripe.arms[arm.index()].complaints, 1);
    }

    /// How many reasons of critical events a snapshot keeps per arm (the latest).
    pub const CRITICAL_REASONS_KEPT: usize = critical::REASONS_KEPT;
    /// Longest reason kept, in bytes; a longer one is cut at a character
    /// boundary and ends with `…`.
    pub const CRITICAL_REASON_MAX_BYTES: usize = critical::REASON_MAX_BYTES;

    /// Counts a critical error on `arm` that was not an upload (a crash, an
    /// out-of-memory kill, corruption found later), with a `reason` for the
    /// log.
    ///
    /// It fires the plan's critical-errors rollback trigger like a
    /// [`Critical`](Outcome::Critical) upload does, but it is not an upload:
    /// it counts in no upload rate and has no latency. Snapshots carry the
    /// count in [`ArmMetrics::critical_events`](super::ArmMetrics::critical_events) and the latest
    /// [`CRITICAL_REASONS_KEPT`](Self::CRITICAL_REASONS_KEPT) reasons in
    /// [`ArmMetrics::critical_reasons`](super::ArmMetrics::critical_reasons); the controller's tick line logs
    /// both, and the rollback's reason quotes the latest.
    ///
    /// Not the hot path: it takes the accumulator's snapshot lock and copies
    /// the reason (at most
    /// [`CRITICAL_REASON_MAX_BYTES`](Self::CRITICAL_REASON_MAX_BYTES)).
    /// [`record`](Self::record) is unchanged by it.
    ///
    /// ```
    /// use async_upload_rollout::{Arm, MetricsAccumulator};
    ///
    /// let metrics = MetricsAccumulator::new();
    /// metrics.record_critical(Arm::Async, "worker 3 killed: out of memory");
    /// let snap = metrics.snapshot();
    /// assert_eq!(snap.arm(Arm::Async).critical_events, 1);
    /// assert_eq!(snap.arm(Arm::Async).critical_reasons, ["worker 3 killed: out of memory"]);
    /// assert_eq!(snap.judged(Arm::Async), 0, "not an upload");
    /// ```
    pub fn record_critical(&self, arm: Arm, reason: &str) {
        let reason = truncate_reason(reason, Self::CRITICAL_REASON_MAX_BYTES);
        self.lock_state().critical[arm.index()].push(reason);
    }

    /// Records the process's memory now, in bytes (for example from
    /// [`process_memory_bytes`](crate::process_memory_bytes)). The first
    /// sample after creation or a reset is the baseline of
    /// [`MetricsSnapshot::memory_growth`].
    pub fn record_memory(&self, bytes: u64) {
        self.memory.record(bytes);
    }

    /// Starts the memory statistics afresh without touching the counts: the
    /// next [`record_memory`](Self::record_memory) sample is the new baseline,
    /// and the peak counts from it. The
    /// [`RolloutController`](crate::RolloutController) calls it at each stage
    /// start, resume and restart (after its memory warm-up), so each run of a
    /// stage is judged against its own baseline.
    pub fn reset_memory(&self) {
        self.memory.reset();
    }

    /// The counts since creation or the last [`reset`](Self::reset), stamped
    /// with the clock's `now()`. Does not stop writers; see "Orderings" in
    /// the source's `metrics/stripe.rs` for what a racing record may look
    /// like.
    #[must_use]
    pub fn snapshot(&self) -> MetricsSnapshot {
        let state = self.lock_state();
        let raw = self.read_raw(extreme::epoch(state.generation));
        self.snapshot_of(&state, &raw)
    }

    /// The snapshot of the generation `state` describes, up to `raw`.
    fn snapshot_of(&self, state: &State, raw: &Raw) -> MetricsSnapshot {
        let mut snapshot = MetricsSnapshot::empty_at(self.clock.now());
        snapshot.start_unix_ms = state.start_unix_ms;
        snapshot.generation = state.generation;
        for arm in Arm::ALL {
            let i = arm.index();
            *snapshot.arm_mut(arm) = raw.arms[i].since(&state.base.arms[i]);
            let critical = &state.critical[i];
            snapshot.arm_mut(arm).critical_events = critical.count;
            snapshot.arm_mut(arm).critical_reasons = critical.reasons.iter().cloned().collect();
        }
        snapshot.memory = self.memory.read();
        snapshot
    }

    /// Starts a new period (a new rollout stage): later snapshots count from
    /// here, have a `generation` one higher, and take the next memory sample
    /// as the new baseline.
    ///
    /// Uploads recorded while `reset` runs land on one side of it or the
    /// other (an upload counted after it whose min or max stayed before it
    /// leaves that extreme bounded by its bucket, within 1/256).
    /// [`MetricsSnapshot::since`] detects a reset between two snapshots and
    /// never underflows across it.
    ///
    /// It writes into no recording thread's stripe: it reads the baseline
    /// and moves the epoch on (`stripe.rs` has the protocol).
    ///
    /// Returns the final snapshot of the generation it ends, read at the
    /// same instant as the new baseline: the ended generations' returns and
    /// a snapshot of the current one add up to every upload recorded, none
    /// counted twice or lost.
    pub fn reset(&self) -> MetricsSnapshot {
        let mut state = self.lock_state();
        let raw = self.read_raw(extreme::epoch(state.generation));
        let ended = self.snapshot_of(&state, &raw);
        state.base = raw;
        state.generation = state.generation.wrapping_add(1);
        // After the baseline is read: see "Orderings" in `stripe.rs`.
        self.epoch.store(extreme::epoch(state.generation), Release);
        state.start_unix_ms = unix_ms(self.clock.now());
        state.critical = Default::default();
        self.memory.reset();
        ended
    }

    /// The clock that stamps snapshots.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The recording thread's stripe and how it may write it.
    #[inline(always)]
    fn stripe(&self) -> (&Stripe, Writer) {
        let epoch = self.epoch.load(Acquire);
        match slot::current() {
            Some(slot) if slot < self.owned.len() => (
                &self.owned[slot],
                Writer {
                    kind: WriterKind::Owner,
                    epoch,
                },
            ),
            // No slot only during thread teardown; any shared stripe is fine.
            slot => {
                let i = slot.unwrap_or(0) % self.shared.len();
                (
                    &self.shared[i],
                    Writer {
                        kind: WriterKind::Shared,
                        epoch,
                    },
                )
            }
        }
    }

    fn stripes(&self) -> impl Iterator<Item = &Stripe> {
        self.owned.iter().chain(self.shared.iter()).map(|s| &**s)
    }

    /// Sums every stripe's counters, and the extremes of `epoch`.
    ///
    /// The buckets are summed one block of [`SUM_BLOCK`] at a time across
    /// all used stripes, so the block of sums stays in L1 while the stripes
    /// stream through: a whole arm's sums (4,608 × 8 bytes = 36 KiB) would not.
    fn read_raw(&self, epoch: u64) -> Raw {
        let mut raw = Raw {
            arms: [RawArm::zero(), RawArm::zero()],
        };
        let mut used: Vec<&ArmCells> = Vec::with_capacity(self.owned.len() + self.shared.len());
        for (arm, sum) in raw.arms.iter_mut().enumerate() {
            used.clear();
            used.extend(
                self.stripes()
                    .map(|stripe| &stripe.arms[arm])
                    .filter(|cells| cells.add_scalars_to(sum, epoch)),
            );
            for (block, sums) in sum.buckets.chunks_mut(SUM_BLOCK).enumerate() {
                let from = block * SUM_BLOCK;
                for cells in &used {
                    for (total, cell) in sums.iter_mut().zip(&cells.buckets[from..]) {
                        *total = total.wrapping_add(cell.load(Relaxed));
                    }
                }
            }
        }
        raw
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // `State` is replaced whole under the lock, so a panic elsewhere
        // cannot leave it half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MetricsAccumulator {
    fn default() -> MetricsAccumulator {
        MetricsAccumulator::new()
    }
}

impl fmt::Debug for MetricsAccumulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock_state();
        f.debug_struct("MetricsAccumulator")
            .field("clock", &self.clock)
            .field("owned_stripes", &self.owned.len())
            .field("shared_stripes", &self.shared.len())
            .field("generation", &state.generation)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::metrics::snapshot::MemoryStats;

    fn manual() -> (ManualClock, MetricsAccumulator) {
        let clock = ManualClock::default();
        let acc = MetricsAccumulator::with_clock(Arc::new(clock.clone()));
        (clock, acc)
    }

    #[test]
    fn owned_and_shared_stripes_count_the_same() {
        // With no owned stripes every thread takes the shared, fetch_add path.
        let (_, shared_only) = {
            let clock = ManualClock::default();
            (
                clock.clone(),
                MetricsAccumulator::with_stripes(Arc::new(clock), 0),
            )
        };
        let (_, owned) = manual();
        for acc in [&shared_only, &owned] {
            for i in 0..1000u64 {
                let outcome = Outcome::ALL[(i % 4) as usize];
                acc.record(Arm::Async, outcome, Duration::from_micros(i));
            }
            acc.record(Arm::Sync, Outcome::Success, Duration::from_millis(1));
            acc.record_complaint(Arm::Sync);
        }
        let (a, b) = (shared_only.snapshot(), owned.snapshot());
        assert_eq!(a, b);
        assert_eq!(a.uploads(Arm::Async), 1000);
        assert_eq!(a.judged(Arm::Async), 750);
        assert_eq!(a.complaints(Arm::Sync), 1);
        assert_eq!(
            a.arm(Arm::Async).latency.min(),
            Some(Duration::ZERO),
            "i = 0 is a success"
        );
    }

    #[test]
    fn reset_starts_a_new_generation_from_zero() {
        let (clock, acc) = manual();
        acc.record(Arm::Sync, Outcome::Success, Duration::from_millis(900));
        acc.record_memory(1000);
        acc.record_memory(1500);
        let before = acc.snapshot();
        assert_eq!(
            before.memory,
            Some(MemoryStats {
                baseline: 1000,
                current: 1500,
                peak: 1500
            })
        );

        clock.advance(Duration::from_secs(5));
        acc.reset();
        let empty = acc.snapshot();
        assert_eq!(empty.generation, 1);
        assert_eq!(empty.uploads(Arm::Sync), 0);
        assert_eq!(empty.memory, None);
        assert_eq!(empty.start_unix_ms, before.at_unix_ms + 5000);

        acc.record(Arm::Sync, Outcome::Error, Duration::from_millis(2));
        acc.record_memory(1200);
        let after = acc.snapshot();
        assert_eq!(after.arm(Arm::Sync).error, 1);
        assert_eq!(after.arm(Arm::Sync).success, 0);
        assert_eq!(
            after.arm(Arm::Sync).latency.max(),
            Some(Duration::from_millis(2)),
            "extremes restart too"
        );
        assert_eq!(after.memory.map(|m| m.baseline), Some(1200));
        let window = after.since(&before);
        assert_eq!(window.generation, 1);
        assert_eq!(window.uploads(Arm::Sync), 1);
    }

    #[test]
    fn complaints_are_capped_at_uploads_until_uploads_catch_up() {
        let (_, acc) = manual();
        acc.record_complaint(Arm::Async);
        acc.record_complaint(Arm::Async);
        assert_eq!(acc.snapshot().complaints(Arm::Async), 0, "no upload yet");
        acc.record(Arm::Async, Outcome::Rejected, Duration::ZERO);
        assert_eq!(acc.snapshot().complaints(Arm::Async), 1);
        acc.record(Arm::Async, Outcome::Success, Duration::ZERO);
        let snap = acc.snapshot();
        assert_eq!(snap.complaints(Arm::Async), 2, "the counter kept both");
        assert_eq!(snap.complaint_rate(Arm::Async), Some(1.0));
    }

    #[test]
    fn reset_returns_the_ended_generation_and_loses_nothing() {
        let (clock, acc) = manual();
        acc.record(Arm::Async, Outcome::Success, Duration::from_millis(7));
        acc.record(Arm::Async, Outcome::Error, Duration::from_millis(9));
        clock.advance(Duration::from_secs(1));
        let ended = acc.reset();
        assert_eq!(ended.generation, 0);
        assert_eq!(ended.uploads(Arm::Async), 2);
        assert_eq!(
            ended.arm(Arm::Async).latency.max(),
            Some(Duration::from_millis(9))
        );
        acc.record(Arm::Async, Outcome::Success, Duration::from_millis(3));
        let now = acc.snapshot();
        assert_eq!(now.generation, 1);
        assert_eq!(now.uploads(Arm::Async), 1);
        assert_eq!(
            now.arm(Arm::Async).latency.min(),
            Some(Duration::from_millis(3))
        );
        assert_eq!(
            now.arm(Arm::Async).latency.max(),
            Some(Duration::from_millis(3)),
            "the old generation's 9 ms is not this one's maximum"
        );
    }

    #[test]
    fn snapshot_is_stamped_by_the_clock() {
        let (clock, acc) = manual();
        let first = acc.snapshot();
        clock.advance(Duration::from_millis(1234));
        let second = acc.snapshot();
        assert_eq!(second.at_unix_ms - first.at_unix_ms, 1234);
        assert_eq!(second.start_unix_ms, first.at_unix_ms);
        assert_eq!(second.at(), clock.now());
    }

    #[test]
    fn critical_events_are_counted_with_their_latest_reasons_and_reset() {
        let (clock, acc) = manual();
        acc.record(Arm::Async, Outcome::Success, Duration::from_millis(5));
        let before = acc.snapshot();
        for i in 0..10 {
            acc.record_critical(Arm::Async, &format!("crash {i}"));
        }
        acc.record_critical(Arm::Sync, "sync worker OOM");
        clock.advance(Duration::from_secs(1));
        let snap = acc.snapshot();
        let arm = snap.arm(Arm::Async);
        assert_eq!(arm.critical_events, 10);
        assert_eq!(
            arm.critical_reasons.len(),
            MetricsAccumulator::CRITICAL_REASONS_KEPT
        );
        assert_eq!(arm.critical_reasons.last().unwrap(), "crash 9");
        assert_eq!(arm.critical_reasons[0], "crash 2");
        assert_eq!((arm.critical, arm.judged()), (0, 1), "not an upload");
        assert_eq!(snap.arm(Arm::Sync).critical_reasons, ["sync worker OOM"]);

        // A window keeps the events inside it.
        acc.record_critical(Arm::Async, "corrupt upload found by the nightly check");
        let window = acc.snapshot().since(&snap);
        assert_eq!(window.arm(Arm::Async).critical_events, 1);
        assert_eq!(
            window.arm(Arm::Async).critical_reasons,
            ["corrupt upload found by the nightly check"]
        );
        assert_eq!(
            acc.snapshot()
                .since(&before)
                .arm(Arm::Async)
                .critical_events,
            11
        );

        acc.reset();
        let empty = acc.snapshot();
        assert_eq!(empty.arm(Arm::Async).critical_events, 0);
        assert!(empty.arm(Arm::Async).critical_reasons.is_empty());
    }

    #[test]
    fn long_reasons_are_cut_at_a_character_boundary() {
        let long = "é".repeat(400); // 800 bytes
        let cut = truncate_reason(&long, MetricsAccumulator::CRITICAL_REASON_MAX_BYTES);
        assert!(
            cut.len() <= MetricsAccumulator::CRITICAL_REASON_MAX_BYTES,
            "{}",
            cut.len()
        );
        assert!(cut.ends_with('…'));
        assert_eq!(truncate_reason("short", 256), "short");
        assert_eq!(truncate_reason("abc", 0), "…");
    }

    #[test]
    fn accumulator_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<MetricsAccumulator>();
    }
}
