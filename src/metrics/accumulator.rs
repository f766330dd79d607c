//! [`MetricsAccumulator`]: striped, lock-free counters that the upload
//! handler writes on every upload.
//!
//! # Striping
//!
//! Every thread that records holds a *slot*: a small number leased from a
//! process-wide pool the first time it records and returned when it exits
//! (lowest free number first, so slots stay dense under thread churn).
//!
//! - A thread whose slot is below the number of *owned* stripes is the only
//!   writer of that stripe, so it updates it with a plain load and store: no
//!   read-modify-write instruction, no contention, no cache line shared with
//!   another writer (stripes are [`CachePadded`]).
//! - Any other thread (more recording threads than owned stripes) writes one
//!   of a few *shared* stripes with `fetch_add`, which is correct for any
//!   number of writers.
//!
//! A snapshot sums the stripes. Counters only grow; [`MetricsAccumulator::reset`]
//! does not zero them (that would race with the owners' plain stores) but
//! remembers their values as the new baseline that snapshots subtract.
//!
//! # Orderings
//!
//! All counter accesses are `Relaxed`. Each counter is monotonic and has a
//! single modification order, so successive snapshots on one thread never see
//! it go down (read-read coherence) and a record finished before `snapshot`
//! is called on the same thread, or joined, is in it. Counters are not read
//! as one atomic unit: a snapshot racing with writers may include one upload's
//! outcome and not yet its latency (or the reverse); the next snapshot has
//! both. An owned stripe's plain store is safe because the slot pool's mutex
//! orders a slot's previous holder (which has exited) before its next one.
//! Memory samples publish the baseline with `Release` and read it with
//! `Acquire`, so a snapshot that sees a baseline also sees the sample's
//! current and peak.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::histogram::{BUCKETS, LatencyHistogram, clamp_ns, index_of};
use super::snapshot::{ArmMetrics, MemoryStats, MetricsSnapshot};
use super::{Arm, Outcome};
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
    /// Baseline of the counters at the last reset. Locked by `snapshot` and
    /// `reset` only, never by recording.
    state: Mutex<State>,
}

/// One thread's (or a few threads') counters for both arms.
struct Stripe {
    arms: [ArmCells; 2],
}

struct ArmCells {
    outcomes: [AtomicU64; 4],
    complaints: AtomicU64,
    sum_ns: AtomicU64,
    /// `u64::MAX` until the first judged upload after a reset.
    min_ns: AtomicU64,
    max_ns: AtomicU64,
    /// Dense per-bucket counts, `BUCKETS` long.
    buckets: Box<[AtomicU64]>,
}

struct MemoryCells {
    /// `NO_SAMPLE` until the first sample after a reset.
    baseline: AtomicU64,
    current: AtomicU64,
    peak: AtomicU64,
}

const NO_SAMPLE: u64 = u64::MAX;

struct State {
    base: Raw,
    generation: u64,
    start_unix_ms: u64,
    /// Critical events per arm since the last reset (see `record_critical`).
    critical: [CriticalLog; 2],
}

/// One arm's critical events that were not an upload: a count and the
/// latest reasons.
#[derive(Default)]
struct CriticalLog {
    count: u64,
    reasons: std::collections::VecDeque<String>,
}

/// Summed counter values (cumulative since creation).
#[derive(Clone)]
struct Raw {
    arms: [RawArm; 2],
}

#[derive(Clone)]
struct RawArm {
    outcomes: [u64; 4],
    complaints: u64,
    sum_ns: u64,
    min_ns: u64,
    max_ns: u64,
    buckets: Vec<u64>,
}

/// How the recording thread may write its stripe.
#[derive(Clone, Copy)]
enum Writer {
    /// The only writer: a plain load and store suffice.
    Owner,
    /// One of several writers: read-modify-write.
    Shared,
}

impl Writer {
    #[inline(always)]
    fn add(self, cell: &AtomicU64, n: u64) {
        match self {
            Writer::Owner => cell.store(cell.load(Relaxed).wrapping_add(n), Relaxed),
            Writer::Shared => {
                cell.fetch_add(n, Relaxed);
            }
        }
    }

    /// Lowers `cell` to `v`. The load first makes the common case (not a new
    /// minimum) a plain read for both kinds of writer.
    #[inline(always)]
    fn lower(self, cell: &AtomicU64, v: u64) {
        if v < cell.load(Relaxed) {
            match self {
                Writer::Owner => cell.store(v, Relaxed),
                Writer::Shared => {
                    cell.fetch_min(v, Relaxed);
                }
            }
        }
    }

    #[inline(always)]
    fn raise(self, cell: &AtomicU64, v: u64) {
        if v > cell.load(Relaxed) {
            match self {
                Writer::Owner => cell.store(v, Relaxed),
                Writer::Shared => {
                    cell.fetch_max(v, Relaxed);
                }
            }
        }
    }
}

impl ArmCells {
    fn new() -> ArmCells {
        ArmCells {
            outcomes: Default::default(),
            complaints: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            min_ns: AtomicU64::new(u64::MAX),
            max_ns: AtomicU64::new(0),
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[inline(always)]
    fn record(&self, writer: Writer, outcome: Outcome, latency: Duration) {
        if outcome.is_judged() {
            let ns = clamp_ns(latency);
            writer.lower(&self.min_ns, ns);
            writer.raise(&self.max_ns, ns);
            writer.add(&self.sum_ns, ns);
            writer.add(&self.buckets[index_of(ns)], 1);
        }
        writer.add(&self.outcomes[outcome.index()], 1);
    }

    /// Adds this stripe's scalar counters into `into`; whether its buckets
    /// need adding too (see [`MetricsAccumulator::read_raw`]).
    fn add_scalars_to(&self, into: &mut RawArm) -> bool {
        let mut judged = 0u64;
        for (sum, cell) in into.outcomes.iter_mut().zip(&self.outcomes) {
            let n = cell.load(Relaxed);
            *sum = sum.wrapping_add(n);
            judged |= n;
        }
        into.complaints = into.complaints.wrapping_add(self.complaints.load(Relaxed));
        // `judged` is non-zero iff any outcome was ever counted here; a
        // stripe no thread has used costs 6 loads instead of 4,608.
        if judged == 0 {
            return false;
        }
        into.sum_ns = into.sum_ns.wrapping_add(self.sum_ns.load(Relaxed));
        into.min_ns = into.min_ns.min(self.min_ns.load(Relaxed));
        into.max_ns = into.max_ns.max(self.max_ns.load(Relaxed));
        true
    }

    fn reset_extremes(&self) {
        self.min_ns.store(u64::MAX, Relaxed);
        self.max_ns.store(0, Relaxed);
    }
}

impl Stripe {
    fn new() -> Stripe {
        Stripe {
            arms: [ArmCells::new(), ArmCells::new()],
        }
    }
}

impl RawArm {
    fn zero() -> RawArm {
        RawArm {
            outcomes: [0; 4],
            complaints: 0,
            sum_ns: 0,
            min_ns: u64::MAX,
            max_ns: 0,
            buckets: vec![0; BUCKETS],
        }
    }

    /// The counts since `base` as an [`ArmMetrics`]. Every counter is at
    /// least its baseline (counters only grow), so nothing underflows.
    fn since(&self, base: &RawArm) -> ArmMetrics {
        let count = |i: usize| self.outcomes[i].wrapping_sub(base.outcomes[i]);
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .zip(&base.buckets)
            .map(|(now, then)| now.wrapping_sub(*then))
            .collect();
        ArmMetrics {
            success: count(Outcome::Success.index()),
            error: count(Outcome::Error.index()),
            critical: count(Outcome::Critical.index()),
            rejected: count(Outcome::Rejected.index()),
            complaints: self.complaints.wrapping_sub(base.complaints),
            latency: LatencyHistogram::from_dense(
                &buckets,
                self.sum_ns.wrapping_sub(base.sum_ns),
                self.min_ns,
                self.max_ns,
            ),
            // Filled from `State::critical` by `snapshot`.
            ..ArmMetrics::default()
        }
    }
}

impl MetricsAccumulator {
    /// An accumulator on the system clock.
    #[must_use]
    pub fn new() -> MetricsAccumulator {
        MetricsAccumulator::with_clock(Arc::new(SystemClock))
    }

    /// An accumulator whose snapshots are stamped by `clock` (a
    /// [`ManualClock`](crate::ManualClock) in tests and simulations).
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
            memory: CachePadded::new(MemoryCells {
                baseline: AtomicU64::new(NO_SAMPLE),
                current: AtomicU64::new(0),
                peak: AtomicU64::new(0),
            }),
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
    /// [`LatencyHistogram::HIGHEST_TRACKABLE`]).
    ///
    /// The hot path: no lock, no allocation, no system call. On a thread with
    /// its own stripe it is a handful of plain loads and stores. Only the
    /// first call on a thread does more: it leases the thread's slot (see
    /// the module source), taking a process-wide mutex once and registering
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
    pub const CRITICAL_REASONS_KEPT: usize = 8;
    /// Longest reason kept, in bytes; a longer one is cut at a character
    /// boundary and ends with `…`.
    pub const CRITICAL_REASON_MAX_BYTES: usize = 256;

    /// Counts a critical error on `arm` that was not an upload (a crash, an
    /// out-of-memory kill, corruption found later), with a `reason` for the
    /// log.
    ///
    /// It fires the plan's critical-errors rollback trigger like a
    /// [`Critical`](Outcome::Critical) upload does, but it is not an upload:
    /// it counts in no upload rate and has no latency. Snapshots carry the
    /// count in [`ArmMetrics::critical_events`] and the latest
    /// [`CRITICAL_REASONS_KEPT`](Self::CRITICAL_REASONS_KEPT) reasons in
    /// [`ArmMetrics::critical_reasons`]; the controller's tick line logs
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
        let mut state = self.lock_state();
        let log = &mut state.critical[arm.index()];
        log.count = log.count.saturating_add(1);
        if log.reasons.len() == Self::CRITICAL_REASONS_KEPT {
            log.reasons.pop_front();
        }
        log.reasons.push_back(reason);
    }

    /// Records the process's memory now, in bytes (for example from
    /// [`process_memory_bytes`](crate::process_memory_bytes)). The first
    /// sample after creation or a reset is the baseline of
    /// [`MetricsSnapshot::memory_growth`].
    pub fn record_memory(&self, bytes: u64) {
        let cells = &*self.memory;
        cells.current.store(bytes, Relaxed);
        cells.peak.fetch_max(bytes, Relaxed);
        // Publishes `current` and `peak` to a snapshot that sees the baseline.
        let _ = cells
            .baseline
            .compare_exchange(NO_SAMPLE, bytes, Release, Relaxed);
    }

    /// The counts since creation or the last [`reset`](Self::reset), stamped
    /// with the clock's `now()`. Does not stop writers; see the module
    /// source's "Orderings" for what a racing record may look like.
    #[must_use]
    pub fn snapshot(&self) -> MetricsSnapshot {
        let state = self.lock_state();
        let raw = self.read_raw();
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
        snapshot.memory = self.read_memory();
        snapshot
    }

    /// Starts a new period (a new rollout stage): later snapshots count from
    /// here, have a `generation` one higher, and take the next memory sample
    /// as the new baseline.
    ///
    /// Uploads recorded while `reset` runs land on one side of it or the
    /// other. [`MetricsSnapshot::since`] detects a reset between two
    /// snapshots and never underflows across it.
    pub fn reset(&self) {
        let mut state = self.lock_state();
        state.base = self.read_raw();
        state.generation += 1;
        state.start_unix_ms = unix_ms(self.clock.now());
        state.critical = Default::default();
        for stripe in self.stripes() {
            for cells in &stripe.arms {
                cells.reset_extremes();
            }
        }
        let cells = &*self.memory;
        cells.baseline.store(NO_SAMPLE, Release);
        cells.current.store(0, Relaxed);
        cells.peak.store(0, Relaxed);
    }

    /// The clock that stamps snapshots.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The recording thread's stripe and how it may write it.
    #[inline(always)]
    fn stripe(&self) -> (&Stripe, Writer) {
        match slot::current() {
            Some(slot) if slot < self.owned.len() => (&self.owned[slot], Writer::Owner),
            // No slot only during thread teardown; any shared stripe is fine.
            slot => {
                let i = slot.unwrap_or(0) % self.shared.len();
                (&self.shared[i], Writer::Shared)
            }
        }
    }

    fn stripes(&self) -> impl Iterator<Item = &Stripe> {
        self.owned.iter().chain(self.shared.iter()).map(|s| &**s)
    }

    /// Sums every stripe's counters.
    ///
    /// The buckets are summed one block of [`SUM_BLOCK`] at a time across
    /// all used stripes, so the block of sums stays in L1 while the stripes
    /// stream through: a whole arm's sums (4,608 × 8 bytes = 36 KiB) would not.
    fn read_raw(&self) -> Raw {
        let mut raw = Raw {
            arms: [RawArm::zero(), RawArm::zero()],
        };
        let mut used: Vec<&ArmCells> = Vec::with_capacity(self.owned.len() + self.shared.len());
        for (arm, sum) in raw.arms.iter_mut().enumerate() {
            used.clear();
            used.extend(
                self.stripes()
                    .map(|stripe| &stripe.arms[arm])
                    .filter(|cells| cells.add_scalars_to(sum)),
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

    fn read_memory(&self) -> Option<MemoryStats> {
        let cells = &*self.memory;
        let baseline = cells.baseline.load(Acquire);
        if baseline == NO_SAMPLE {
            return None;
        }
        let current = cells.current.load(Relaxed);
        let peak = cells.peak.load(Relaxed).max(current).max(baseline);
        Some(MemoryStats {
            baseline,
            current,
            peak,
        })
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // `State` is replaced whole under the lock, so a panic elsewhere
        // cannot leave it half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `reason` cut to at most `max` bytes at a character boundary, then ending
/// with `…` (3 bytes, so within `max` when it is at least 3).
fn truncate_reason(reason: &str, max: usize) -> String {
    if reason.len() <= max {
        return reason.to_owned();
    }
    let ellipsis = '…';
    let mut end = max.saturating_sub(ellipsis.len_utf8());
    while !reason.is_char_boundary(end) {
        end -= 1; // 0 is a boundary, so this stops
    }
    let mut cut = reason[..end].to_owned();
    cut.push(ellipsis);
    cut
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

/// The process-wide pool of thread slots.
mod slot {
    use std::sync::{Mutex, PoisonError};

    struct Pool {
        next: usize,
        free: Vec<usize>,
    }

    static POOL: Mutex<Pool> = Mutex::new(Pool {
        next: 0,
        free: Vec::new(),
    });

    /// A slot held by one live thread; returned to the pool when the thread
    /// exits.
    struct Lease(usize);

    impl Lease {
        fn take() -> Lease {
            let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
            // Lowest free slot first: keeps the numbers dense, so threads
            // that come and go keep landing on owned stripes.
            let lowest = pool
                .free
                .iter()
                .enumerate()
                .min_by_key(|&(_, &slot)| slot)
                .map(|(at, _)| at);
            match lowest {
                Some(at) => Lease(pool.free.swap_remove(at)),
                None => {
                    pool.next += 1;
                    Lease(pool.next - 1)
                }
            }
        }
    }

    impl Drop for Lease {
        fn drop(&mut self) {
            // The mutex orders everything this thread wrote to its owned
            // stripes before the next holder's first plain load.
            let mut pool = POOL.lock().unwrap_or_else(PoisonError::into_inner);
            pool.free.push(self.0);
        }
    }

    thread_local! {
        static SLOT: Lease = Lease::take();
    }

    /// This thread's slot; `None` while the thread is being torn down.
    #[inline(always)]
    pub(super) fn current() -> Option<usize> {
        SLOT.try_with(|lease| lease.0).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

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
