//! The stripe protocol of [`MetricsAccumulator`](crate::MetricsAccumulator):
//! the cells a recording thread writes, how it writes them, and the
//! per-generation keys of the extremes. The accumulator (`accumulator.rs`)
//! leases the slots (`slot.rs`) and reads the stripes into raw sums
//! (`raw.rs`).
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
//! A snapshot sums the stripes. Counters only grow; [`MetricsAccumulator::reset`](crate::MetricsAccumulator::reset)
//! does not zero them (that would race with the owners' plain stores) but
//! remembers their values as the new baseline that snapshots subtract.
//!
//! # Reset without writing into stripes
//!
//! `reset` writes nothing into any stripe: it reads the counters as the new
//! baseline, then moves the accumulator's *epoch* (the generation, modulo
//! 2²²) on. Minimum and maximum cannot be subtracted like counts, so each is
//! kept per generation instead: a stripe's min and max cells each hold one
//! *key*, the epoch in the top 22 bits and the value in the low 42 (the
//! range of a latency, [`HIGHEST_NS`] < 2⁴²; for the minimum, `HIGHEST_NS −
//! value`, so that a larger key is always the better one). A writer replaces
//! the key when its own is *later*: `(new − old) as i64 > 0`, which puts any
//! key of a newer epoch above every key of an older one (serial-number
//! arithmetic, so the epoch may wrap) and within one epoch keeps the
//! smallest minimum and the largest maximum. A snapshot uses only keys of
//! the current epoch; a stripe without one has no extreme this generation.
//!
//! An upload whose `record` straddles a reset is counted on one side (its
//! counts are cumulative) but may leave its extremes under the old epoch;
//! the snapshot then bounds min and max by the histogram's lowest and
//! highest non-empty bucket (within 1/256, never inconsistent: `min <= max`
//! always holds). The protocol is checked over every interleaving of its
//! steps by the tests in `stripe/interleavings.rs` and `stripe/loom_model.rs`.
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
//!
//! `reset` publishes the new epoch with `Release` after reading the
//! baseline, and `record` loads the epoch with `Acquire` (both are plain
//! moves on x86-64): a record that sees the new epoch happens after the
//! baseline was read, so its counts cannot be in the baseline while its
//! extremes are in the new generation.

#[cfg(not(loom))]
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

#[cfg(loom)]
use loom::sync::atomic::AtomicU64;

use super::Outcome;
use super::histogram::{BUCKETS, HIGHEST_NS, clamp_ns, index_of};
use super::raw::RawArm;

/// One thread's (or a few threads') counters for both arms.
pub(super) struct Stripe {
    pub(super) arms: [ArmCells; 2],
}

pub(super) struct ArmCells {
    outcomes: [AtomicU64; 4],
    pub(super) complaints: AtomicU64,
    sum_ns: AtomicU64,
    /// Keys (epoch and value, see [`extreme`]) of the smallest and largest
    /// latency of the generation.
    min_key: AtomicU64,
    max_key: AtomicU64,
    /// Dense per-bucket counts, `BUCKETS` long.
    pub(super) buckets: Box<[AtomicU64]>,
}

/// The per-generation extremes' keys: pure functions, shared by the
/// accumulator and the interleaving tests.
pub(in crate::metrics) mod extreme {
    use super::HIGHEST_NS;

    /// Bits of the value part; every clamped latency fits.
    const VALUE_BITS: u32 = 42;
    const VALUE_MASK: u64 = (1 << VALUE_BITS) - 1;
    const _: () = assert!(HIGHEST_NS <= VALUE_MASK);

    /// The epoch of `generation`: its low 22 bits.
    #[inline(always)]
    pub(in crate::metrics) const fn epoch(generation: u64) -> u64 {
        generation & (u64::MAX >> VALUE_BITS)
    }

    /// What a cell holds before any record: a key of the epoch before
    /// generation 0's, so that any key of generation 0 is later.
    pub(in crate::metrics) const EMPTY: u64 = epoch(u64::MAX) << VALUE_BITS;

    /// The key of `ns` (at most `HIGHEST_NS`) as a minimum in `epoch`.
    #[inline(always)]
    pub(in crate::metrics) const fn min_key(epoch: u64, ns: u64) -> u64 {
        (epoch << VALUE_BITS) | (HIGHEST_NS - ns)
    }

    /// The key of `ns` as a maximum in `epoch`.
    #[inline(always)]
    pub(in crate::metrics) const fn max_key(epoch: u64, ns: u64) -> u64 {
        (epoch << VALUE_BITS) | ns
    }

    /// Whether `key` should replace `old`: a newer epoch, or the same epoch
    /// and a better value (serial-number arithmetic over the whole key).
    #[inline(always)]
    #[allow(clippy::cast_possible_wrap)] // the wrap is the comparison
    pub(in crate::metrics) const fn is_later(key: u64, old: u64) -> bool {
        (key.wrapping_sub(old) as i64) > 0
    }

    /// The minimum held by `key` if it is of `epoch`.
    pub(in crate::metrics) const fn min_of(key: u64, epoch: u64) -> Option<u64> {
        if key >> VALUE_BITS == epoch {
            Some(HIGHEST_NS - (key & VALUE_MASK))
        } else {
            None
        }
    }

    /// The maximum held by `key` if it is of `epoch`.
    pub(in crate::metrics) const fn max_of(key: u64, epoch: u64) -> Option<u64> {
        if key >> VALUE_BITS == epoch {
            Some(key & VALUE_MASK)
        } else {
            None
        }
    }
}

/// How the recording thread may write its stripe, and the epoch it records in.
#[derive(Clone, Copy)]
pub(super) struct Writer {
    pub(super) kind: WriterKind,
    pub(super) epoch: u64,
}

#[derive(Clone, Copy)]
pub(super) enum WriterKind {
    /// The only writer: a plain load and store suffice.
    Owner,
    /// One of several writers: read-modify-write.
    Shared,
}

impl Writer {
    #[inline(always)]
    pub(super) fn add(self, cell: &AtomicU64, n: u64) {
        match self.kind {
            WriterKind::Owner => cell.store(cell.load(Relaxed).wrapping_add(n), Relaxed),
            WriterKind::Shared => {
                cell.fetch_add(n, Relaxed);
            }
        }
    }

    /// Puts `key` into `cell` if it is later than what is there. The load
    /// first makes the common case (not a new extreme) a plain read for both
    /// kinds of writer.
    #[inline(always)]
    fn offer(self, cell: &AtomicU64, key: u64) {
        let mut old = cell.load(Relaxed);
        if !extreme::is_later(key, old) {
            return;
        }
        match self.kind {
            WriterKind::Owner => cell.store(key, Relaxed),
            // What `fetch_max` is on x86-64 anyway, with the epoch-aware order.
            WriterKind::Shared => {
                while extreme::is_later(key, old) {
                    match cell.compare_exchange_weak(old, key, Relaxed, Relaxed) {
                        Ok(_) => break,
                        Err(now) => old = now,
                    }
                }
            }
        }
    }
}

impl ArmCells {
    pub(super) fn new() -> ArmCells {
        ArmCells::with_buckets(BUCKETS)
    }

    /// Cells with `buckets` buckets: `BUCKETS`, or a few in the loom model
    /// (which then records only latencies below `buckets` ns).
    pub(super) fn with_buckets(buckets: usize) -> ArmCells {
        ArmCells {
            outcomes: Default::default(),
            complaints: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            min_key: AtomicU64::new(extreme::EMPTY),
            max_key: AtomicU64::new(extreme::EMPTY),
            buckets: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[inline(always)]
    pub(super) fn record(&self, writer: Writer, outcome: Outcome, latency: Duration) {
        if outcome.is_judged() {
            let ns = clamp_ns(latency);
            writer.offer(&self.min_key, extreme::min_key(writer.epoch, ns));
            writer.offer(&self.max_key, extreme::max_key(writer.epoch, ns));
            writer.add(&self.sum_ns, ns);
            writer.add(&self.buckets[index_of(ns)], 1);
        }
        writer.add(&self.outcomes[outcome.index()], 1);
    }

    /// Adds this stripe's scalar counters into `into`, and its extremes if
    /// they are of `epoch`; whether its buckets need adding too (see
    /// `MetricsAccumulator::read_raw`).
    pub(super) fn add_scalars_to(&self, into: &mut RawArm, epoch: u64) -> bool {
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
        if let Some(min) = extreme::min_of(self.min_key.load(Relaxed), epoch) {
            into.min_ns = into.min_ns.min(min);
        }
        if let Some(max) = extreme::max_of(self.max_key.load(Relaxed), epoch) {
            into.max_ns = into.max_ns.max(max);
        }
        true
    }
}

impl Stripe {
    pub(super) fn new() -> Stripe {
        Stripe {
            arms: [ArmCells::new(), ArmCells::new()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_keys_order_epochs_then_values_and_wrap() {
        use extreme::{EMPTY, epoch, is_later, max_key, max_of, min_key, min_of};
        let last = epoch(u64::MAX);
        // (new key, old key, later?)
        let cases: &[(u64, u64, bool)] = &[
            (min_key(0, 5), EMPTY, true),
            (max_key(0, 0), EMPTY, true),
            (min_key(0, 5), min_key(0, 6), true),
            (min_key(0, 6), min_key(0, 5), false),
            (max_key(0, 6), max_key(0, 5), true),
            (max_key(0, 5), max_key(0, 5), false),
            (max_key(1, 0), max_key(0, HIGHEST_NS), true),
            (max_key(0, HIGHEST_NS), max_key(1, 0), false),
            (min_key(0, HIGHEST_NS), min_key(last, 0), true),
            (min_key(last, 0), min_key(0, HIGHEST_NS), false),
        ];
        for (i, &(key, old, later)) in cases.iter().enumerate() {
            assert_eq!(is_later(key, old), later, "case {i}");
        }
        assert_eq!(min_of(min_key(3, 42), 3), Some(42));
        assert_eq!(max_of(max_key(3, HIGHEST_NS), 3), Some(HIGHEST_NS));
        assert_eq!(min_of(min_key(3, 42), 4), None);
        assert_eq!(epoch(1 << 22), 0);
    }
}

/// The stripe protocol over every interleaving of its steps.
///
/// Each thread is a small machine whose steps are the atomic accesses that
/// `ArmCells::record` (through `Writer`) and `reset` make, in their order,
/// using the real key functions; a depth-first search runs every order of
/// the threads' steps on sequentially consistent cells. At every state a
/// snapshot is built as `snapshot` builds it and must pass the reader's
/// checks; at the end the generations add up exactly.
#[cfg(test)]
mod interleavings;

/// The stripe protocol under loom's model of the C11 memory model (relaxed
/// loads may see stale values): `record` and `add_scalars_to` as they are,
/// on a stripe of 8 buckets, with `reset`'s two steps (read the baseline,
/// publish the epoch with `Release`) and `record`'s epoch load (`Acquire`).
///
/// ```text
/// RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --lib loom_model
/// ```
#[cfg(all(test, loom))]
mod loom_model;
