//! Recording exactly once: the pending record a request carries from the
//! layer to the end of its response body (or to a deferred outcome), and
//! the layer's own counters.
//!
//! # Exactly once
//!
//! Every request the layer decides owns one [`Pending`] record. It moves
//! from the response future into the response body (or into a
//! [`DeferredOutcome`]) and records in its `Drop`, so it records once
//! whatever happens: the body ends, fails, is dropped early, or a poll
//! panics. What it records depends on how it ended ([`End`]).
//!
//! # Orderings
//!
//! The counters are independent statistics read by a monitor: `Relaxed`
//! increments and loads. A snapshot is not a single instant across counters
//! (none is promised); each counter only grows.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use http::StatusCode;

use super::decision::{RolloutDecision, classify_status};
use crate::{Arm, MetricsAccumulator, Outcome, Rollout};

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
    /// The handler took the outcome over ([`DeferredOutcome`]): nothing
    /// recorded here, counted deferred.
    Deferred,
    /// A [`DeferredOutcome`] dropped without an outcome: `Error`, counted
    /// abandoned.
    Abandoned,
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

    /// Hands the outcome over to a handler's [`DeferredOutcome`].
    pub(crate) fn defer(mut self) {
        self.end = End::Deferred;
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
            End::Deferred => {
                counters.deferred[arm].fetch_add(1, Relaxed);
                return;
            }
            End::Abandoned => {
                counters.abandoned[arm].fetch_add(1, Relaxed);
                Outcome::Error
            }
        };
        self.shared
            .metrics
            .record(self.arm, outcome, self.started.elapsed());
    }
}

/// The marker [`LayerHandle::defer`] puts into a response: the layer then
/// leaves the record to the [`DeferredOutcome`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct DeferredMark;

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
    /// Call it last, on the response the handler returns: the mark travels
    /// in the response, so a response that never reaches the layer (the
    /// handler panics or is cancelled after deferring) would be recorded
    /// twice, once by the layer and once by the `DeferredOutcome`.
    ///
    /// Not allocation-free: the mark is a response extension (one box, and
    /// the extension map if the response had none), and the outcome holds
    /// one reference to the layer.
    pub fn defer<B>(
        &self,
        decision: RolloutDecision,
        response: &mut http::Response<B>,
    ) -> DeferredOutcome {
        response.extensions_mut().insert(DeferredMark);
        let mut pending = Pending::new(Arc::clone(&self.shared), decision.arm, decision.started);
        pending.end = End::Abandoned;
        DeferredOutcome { pending }
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
    pending: Pending,
}

impl DeferredOutcome {
    /// Records `outcome` on the request's arm, with the latency from the
    /// request's start to now.
    pub fn finish(mut self, outcome: Outcome) {
        self.pending.end = End::Complete(outcome);
    }

    /// The arm the outcome is recorded on.
    #[must_use]
    pub fn arm(&self) -> Arm {
        self.pending.arm
    }
}

impl fmt::Debug for DeferredOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeferredOutcome")
            .field("arm", &self.pending.arm)
            .field("started", &self.pending.started)
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
