//! Recording exactly once: the pending record a request carries from the
//! layer to the end of its response body (or to a deferred outcome), and
//! the layer's own counters.
//!
//! # Exactly once
//!
//! Every request the layer decides owns one [`Pending`] record. It moves
//! from the response future into the response body and records in its
//! `Drop`, so it records once whatever happens: the body ends, fails, is
//! dropped early, or a poll panics. What it records depends on how it ended
//! ([`End`]).
//!
//! A deferred request has two records that may each end first: the layer's
//! (when it sees the marked response) and the [`DeferredOutcome`]'s (when
//! the work ends). They meet in a [`Handoff`]: whichever comes second
//! records. If the marked response never reaches the layer (the handler
//! panicked or was cancelled after deferring, or returned another
//! response), the layer records the request as it ended and the outcome is
//! dropped unrecorded.
//!
//! # Orderings
//!
//! The counters are independent statistics read by a monitor: `Relaxed`
//! increments and loads. A snapshot is not a single instant across counters
//! (none is promised); each counter only grows.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::time::{Duration, Instant};

use http::StatusCode;

use super::decision::{RolloutDecision, classify_status};
use crate::decide::Rollout;
use crate::metrics::{Arm, MetricsAccumulator, Outcome};

/// A custom classifier.
pub(crate) type Classifier = Box<dyn Fn(StatusCode) -> Outcome + Send + Sync>;

/// What every service of one layer shares: one `Arc`, created with the
/// layer, cloned once per request into its [`Pending`].
pub(crate) struct Shared {
    pub(crate) rollout: Arc<Rollout>,
    pub(crate) metrics: Arc<MetricsAccumulator>,
    pub(crate) classify: Option<Classifier>,
    counters: Counters,
}

#[derive(Default)]
struct Counters {
    no_id: AtomicU64,
    cancelled: [AtomicU64; 2],
    panicked: [AtomicU64; 2],
    deferred: [AtomicU64; 2],
    abandoned: [AtomicU64; 2],
}

impl Shared {
    pub(crate) fn new(
        rollout: Arc<Rollout>,
        metrics: Arc<MetricsAccumulator>,
        classify: Option<Classifier>,
    ) -> Shared {
        Shared {
            rollout,
            metrics,
            classify,
            counters: Counters::default(),
        }
    }

    /// The outcome a response's status means.
    #[inline]
    pub(crate) fn classify(&self, status: StatusCode) -> Outcome {
        match &self.classify {
            Some(classify) => classify(status),
            None => classify_status(status),
        }
    }

    #[inline]
    pub(crate) fn count_no_id(&self) {
        self.counters.no_id.fetch_add(1, Relaxed);
    }
}

/// How a [`Pending`] record ended: decides what its `Drop` records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Not finished and not being polled: dropped now, the client went away
    /// (or the server dropped the request): `Rejected`, counted cancelled.
    Cancelled,
    /// Dropped while the inner future or body was being polled, i.e. the
    /// poll unwound: `Error`, counted panicked.
    Panicked,
    /// Finished with this outcome.
    Complete(Outcome),
    /// The handler took the outcome over ([`DeferredOutcome`]), counted
    /// deferred: nothing recorded here while the work goes on; what it
    /// reported when it ended first (see [`Handoff::take`]).
    Deferred(Option<Arrived>),
}

/// One request's record, made when its `Drop` runs.
pub(crate) struct Pending {
    shared: Arc<Shared>,
    arm: Arm,
    started: Instant,
    /// What the end of the body records: the head's outcome, then worsened
    /// by a body error.
    outcome: Outcome,
    end: End,
}

impl Pending {
    pub(crate) fn new(shared: Arc<Shared>, arm: Arm, started: Instant) -> Pending {
        Pending {
            shared,
            arm,
            started,
            outcome: Outcome::Success,
            end: End::Cancelled,
        }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Sets the outcome the end of the body records.
    pub(crate) fn set_outcome(&mut self, outcome: Outcome) {
        self.outcome = outcome;
    }

    /// The body failed: a server-side error, unless already critical.
    pub(crate) fn body_failed(&mut self) {
        if self.outcome != Outcome::Critical {
            self.outcome = Outcome::Error;
        }
    }

    /// Brackets a poll of the inner future or body: if the poll unwinds,
    /// the record is dropped while still marked as polling.
    #[inline]
    pub(crate) fn polling(&mut self, now: bool) {
        self.end = if now { End::Panicked } else { End::Cancelled };
    }

    /// Records the outcome set so far (dropping the record).
    pub(crate) fn complete(mut self) {
        self.end = End::Complete(self.outcome);
    }

    /// Hands the outcome over to a handler's [`DeferredOutcome`], whose
    /// report is `arrived` if its work has already ended.
    pub(crate) fn defer(mut self, arrived: Option<Arrived>) {
        self.end = End::Deferred(arrived);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let counters = &self.shared.counters;
        let arm = self.arm.index();
        let outcome = match self.end {
            End::Complete(outcome) => outcome,
            End::Cancelled => {
                counters.cancelled[arm].fetch_add(1, Relaxed);
                Outcome::Rejected
            }
            End::Panicked => {
                counters.panicked[arm].fetch_add(1, Relaxed);
                Outcome::Error
            }
            End::Deferred(arrived) => {
                counters.deferred[arm].fetch_add(1, Relaxed);
                if let Some(arrived) = arrived {
                    arrived.record(&self.shared, self.arm);
                }
                return;
            }
        };
        self.shared
            .metrics
            .record(self.arm, outcome, self.started.elapsed());
    }
}

/// The marker [`LayerHandle::defer`] puts into a response: the layer then
/// leaves the record to the [`DeferredOutcome`] through their [`Handoff`].
#[derive(Clone, Debug)]
pub(crate) struct DeferredMark(pub(crate) Arc<Handoff>);

/// What a [`DeferredOutcome`] reported: its outcome (`None`: dropped
/// unfinished, abandoned) and the latency from the request's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Arrived {
    outcome: Option<Outcome>,
    latency: Duration,
}

impl Arrived {
    /// Records it on `arm`: an abandoned outcome is an `Error`, counted
    /// abandoned.
    fn record(self, shared: &Shared, arm: Arm) {
        let outcome = self.outcome.unwrap_or_else(|| {
            shared.counters.abandoned[arm.index()].fetch_add(1, Relaxed);
            Outcome::Error
        });
        shared.metrics.record(arm, outcome, self.latency);
    }
}

/// Where a deferred request's two ends meet: one atomic word, `OPEN` until
/// either the layer takes it (`TAKEN`: the outcome records itself when it
/// comes) or the outcome arrives first (its report packed into the word:
/// the layer records it when it sees the mark, or never, if the mark is
/// lost with its response).
///
/// The word: bits 0–1 the state, bits 2–4 the outcome (5 = abandoned),
/// bits 5–63 the latency in nanoseconds (saturating at 18 years).
#[derive(Debug, Default)]
pub(crate) struct Handoff(AtomicU64);

impl Handoff {
    const OPEN: u64 = 0;
    const TAKEN: u64 = 1;
    const ARRIVED: u64 = 2;
    const ABANDONED: u64 = 5;

    /// The layer saw the mark. `None`: the outcome has not come yet and
    /// will record itself; `Some`: it came first and the layer records it.
    pub(crate) fn take(&self) -> Option<Arrived> {
        match self
            .0
            .compare_exchange(Self::OPEN, Self::TAKEN, AcqRel, Acquire)
        {
            Ok(_) => None,
            Err(word) if word & 0b11 == Self::ARRIVED => Some(Self::unpack(word)),
            // Taken already: a mark cannot reach the layer twice.
            Err(_) => None,
        }
    }

    /// The outcome came; true when the layer has taken the handoff, so the
    /// caller records it now; false when it is left for the layer.
    fn arrive(&self, arrived: Arrived) -> bool {
        self.0
            .compare_exchange(Self::OPEN, Self::pack(arrived), AcqRel, Acquire)
            .is_err_and(|word| word == Self::TAKEN)
    }

    fn pack(arrived: Arrived) -> u64 {
        let code = match arrived.outcome {
            Some(Outcome::Success) => 0,
            Some(Outcome::Error) => 1,
            Some(Outcome::Critical) => 2,
            Some(Outcome::Rejected) => 3,
            None => Self::ABANDONED,
        };
        let nanos = u64::try_from(arrived.latency.as_nanos())
            .unwrap_or(u64::MAX)
            .min(u64::MAX >> 5);
        nanos << 5 | code << 2 | Self::ARRIVED
    }

    fn unpack(word: u64) -> Arrived {
        let outcome = match (word >> 2) & 0b111 {
            0 => Some(Outcome::Success),
            1 => Some(Outcome::Error),
            2 => Some(Outcome::Critical),
            3 => Some(Outcome::Rejected),
            // Only `pack` writes the word: anything else is ABANDONED.
            _ => None,
        };
        Arrived {
            outcome,
            latency: Duration::from_nanos(word >> 5),
        }
    }
}

/// A handle on a [`RolloutLayer`](crate::tower::RolloutLayer): its counters,
/// and deferring a request's outcome to work that finishes after the
/// response. Cheap to clone (one `Arc`); every service the layer made shares
/// it.
#[derive(Clone)]
pub struct LayerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl LayerHandle {
    /// The layer's counters now.
    #[must_use]
    pub fn counts(&self) -> LayerCounts {
        let c = &self.shared.counters;
        let per_arm = |cells: &[AtomicU64; 2]| [cells[0].load(Relaxed), cells[1].load(Relaxed)];
        LayerCounts {
            no_id: c.no_id.load(Relaxed),
            cancelled: per_arm(&c.cancelled),
            panicked: per_arm(&c.panicked),
            deferred: per_arm(&c.deferred),
            abandoned: per_arm(&c.abandoned),
        }
    }

    /// The metrics the layer records into.
    #[must_use]
    pub fn metrics(&self) -> &Arc<MetricsAccumulator> {
        &self.shared.metrics
    }

    /// The rollout the layer decides with.
    #[must_use]
    pub fn rollout(&self) -> &Arc<Rollout> {
        &self.shared.rollout
    }

    /// Takes over the outcome of the request `decision` belongs to, for work
    /// that finishes after `response` is sent (an upload accepted with 202
    /// and stored in a background task).
    ///
    /// It marks `response` so that the layer records nothing for it (the
    /// layer counts it in [`LayerCounts::deferred`]); the returned
    /// [`DeferredOutcome`] records on the decision's arm, with the latency
    /// from the request's start, when [`finish`](DeferredOutcome::finish)ed,
    /// or as an `Error` if dropped unfinished.
    ///
    /// The request is still recorded exactly once if the work ends before
    /// the layer sees the response (the layer records the outcome then), and
    /// if the marked response never reaches the layer (the handler panics or
    /// is cancelled after deferring, or returns another response): the
    /// layer records the request as it ended and the outcome is dropped.
    ///
    /// Not allocation-free: the mark is a response extension (one box, and
    /// the extension map if the response had none) holding the handoff the
    /// two ends share (one more), and the outcome holds one reference to
    /// the layer.
    pub fn defer<B>(
        &self,
        decision: RolloutDecision,
        response: &mut http::Response<B>,
    ) -> DeferredOutcome {
        let handoff = Arc::new(Handoff::default());
        response
            .extensions_mut()
            .insert(DeferredMark(Arc::clone(&handoff)));
        DeferredOutcome {
            shared: Arc::clone(&self.shared),
            handoff,
            arm: decision.arm,
            started: decision.started,
            outcome: None,
        }
    }
}

impl fmt::Debug for LayerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerHandle")
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

/// The outcome of a request whose work goes on after its response, taken
/// over from the layer with [`LayerHandle::defer`]. Move it into the
/// background task and [`finish`](Self::finish) it there.
#[must_use = "dropping a DeferredOutcome records the request as an Error; call finish"]
pub struct DeferredOutcome {
    shared: Arc<Shared>,
    handoff: Arc<Handoff>,
    arm: Arm,
    started: Instant,
    /// `None` until finished: dropped so, it is abandoned.
    outcome: Option<Outcome>,
}

impl DeferredOutcome {
    /// Records `outcome` on the request's arm, with the latency from the
    /// request's start to now.
    pub fn finish(mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
    }

    /// The arm the outcome is recorded on.
    #[must_use]
    pub fn arm(&self) -> Arm {
        self.arm
    }
}

impl Drop for DeferredOutcome {
    fn drop(&mut self) {
        let arrived = Arrived {
            outcome: self.outcome,
            latency: self.started.elapsed(),
        };
        if self.handoff.arrive(arrived) {
            arrived.record(&self.shared, self.arm);
        }
    }
}

impl fmt::Debug for DeferredOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferredOutcome")
            .field("arm", &self.arm)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

/// A [`LayerHandle`]'s counters at one moment. Every request the layer
/// decided is recorded in the metrics exactly once; these say how the
/// unusual ones were recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerCounts {
    /// Requests without an upload id: they took the sync path and are
    /// recorded on [`Arm::Sync`] like any other.
    pub no_id: u64,
    cancelled: [u64; 2],
    panicked: [u64; 2],
    deferred: [u64; 2],
    abandoned: [u64; 2],
}

impl LayerCounts {
    /// Requests on `arm` whose response future or body was dropped before
    /// the end (the client went away, or the server stopped serving them).
    /// Recorded as [`Outcome::Rejected`]: counted as uploads, not judged.
    #[must_use]
    pub const fn cancelled(&self, arm: Arm) -> u64 {
        self.cancelled[arm.index()]
    }

    /// Requests on `arm` whose inner service or body panicked while polled.
    /// Recorded as [`Outcome::Error`].
    #[must_use]
    pub const fn panicked(&self, arm: Arm) -> u64 {
        self.panicked[arm.index()]
    }

    /// Requests on `arm` whose outcome a handler took over
    /// ([`LayerHandle::defer`]); the [`DeferredOutcome`] records them.
    #[must_use]
    pub const fn deferred(&self, arm: Arm) -> u64 {
        self.deferred[arm.index()]
    }

    /// [`DeferredOutcome`]s on `arm` dropped without an outcome (the
    /// background work panicked or forgot). Recorded as [`Outcome::Error`].
    #[must_use]
    pub const fn abandoned(&self, arm: Arm) -> u64 {
        self.abandoned[arm.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_survives_the_word() {
        let latencies = [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_millis(180),
            Duration::from_secs(86_400),
        ];
        for outcome in Outcome::ALL.map(Some).into_iter().chain([None]) {
            for latency in latencies {
                let arrived = Arrived { outcome, latency };
                let word = Handoff::pack(arrived);
                assert_eq!(word & 0b11, Handoff::ARRIVED);
                assert_eq!(Handoff::unpack(word), arrived);
            }
        }
        // Centuries saturate at 2^59 ns (18 years) instead of wrapping.
        let long = Handoff::unpack(Handoff::pack(Arrived {
            outcome: Some(Outcome::Error),
            latency: Duration::from_secs(u64::MAX),
        }));
        assert_eq!(long.outcome, Some(Outcome::Error));
        assert_eq!(long.latency, Duration::from_nanos(u64::MAX >> 5));
    }

    #[test]
    fn whichever_end_comes_second_records_and_only_it() {
        let arrived = Arrived {
            outcome: Some(Outcome::Success),
            latency: Duration::from_millis(5),
        };
        // The layer first: the outcome records itself.
        let h = Handoff::default();
        assert_eq!(h.take(), None);
        assert!(h.arrive(arrived));
        // The outcome first: the layer records it.
        let h = Handoff::default();
        assert!(!h.arrive(arrived));
        assert_eq!(h.take(), Some(arrived));
        // The layer never: nobody records it (the layer recorded the
        // request as it ended).
        assert!(!Handoff::default().arrive(arrived));

        // Racing: exactly one record each time.
        for _ in 0..2_000 {
            let h = Arc::new(Handoff::default());
            let barrier = Arc::new(std::sync::Barrier::new(2));
            let (h2, b2) = (Arc::clone(&h), Arc::clone(&barrier));
            let outcome_end = std::thread::spawn(move || {
                b2.wait();
                u32::from(h2.arrive(arrived))
            });
            barrier.wait();
            let layer_records = u32::from(h.take().is_some());
            let outcome_records = outcome_end.join().expect("no panic");
            assert_eq!(layer_records + outcome_records, 1);
        }
    }
}
