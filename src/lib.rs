//! Roll a new asynchronous upload path out gradually and safely.
//!
//! An upload service asks [`Rollout::should_use_async`] for every upload. The
//! answer comes from a consistent hash of the upload id against the rollout
//! percent, so an upload's path never flips while the percent holds, and
//! widening 10% → 50% keeps everyone who was already in. The percent lives in
//! an atomically swappable config: raising it, lowering it, or rolling back
//! ([`Rollout::halt`]: nothing async, force lists included) is one atomic
//! store, seen by the next decision.
//!
//! # Quick start
//!
//! ```
//! use std::sync::Arc;
//! use async_upload_rollout::{Percent, Rollout, RolloutConfig};
//!
//! // In production: `Rollout::from_env()?` reads ASYNC_UPLOAD_ROLLOUT=10.
//! let rollout = Arc::new(Rollout::new(RolloutConfig::with_percent("10".parse()?)));
//!
//! // In the upload handler: a few plain loads and one SipHash per decision.
//! let upload_id = "0f8fad5b-d9cb-469f-a165-70867728950e";
//! if rollout.should_use_async(upload_id) {
//!     // accept, answer 202, finish in the background
//! } else {
//!     // the proven synchronous path
//! }
//!
//! // The same id always lands in the same bucket (0..1_000_000).
//! let bucket = rollout.bucket(upload_id);
//! assert_eq!(rollout.should_use_async(upload_id), bucket < 100_000);
//!
//! // A halt (what a dying monitor does): every decision is sync, no hash.
//! rollout.halt();
//! assert!(!rollout.should_use_async(upload_id));
//! # let _ = Percent::ZERO;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Judging and acting
//!
//! A [`RolloutPlan`] (default: the week-2 plan, 1% → 10% → 50% → 100%) holds
//! each stage's [`StageCriteria`](judge::StageCriteria) and the [`RollbackTriggers`](judge::RollbackTriggers). The
//! [`Evaluator`] turns metrics into an [`Evaluation`]: a [`Verdict`] with
//! every [`Check`] behind it, judged literally or (by default) with Wilson
//! intervals. The [`RolloutController`] ticks, rolls back by itself, advances
//! when allowed, and logs every tick; see its example. It is the one writer
//! of the [`RolloutState`] (stage, status, epoch), kept in a [`StateStore`]
//! ([`FileStateStore`] by default): a rollback holds across restarts, config
//! reloads and admin calls until a person resumes, operators change the
//! state through the same transitions ([`RolloutState::apply`]), and a state
//! that cannot be read means nothing async. [`simulation`](act::simulation) runs whole
//! rollouts in simulated time.
//!
//! # Metrics
//!
//! The handler records each upload on the path it took; snapshots, windows
//! and the JSON-lines log ([`JsonlSink`], [`read_log`](act::log::read_log)) are what rollout
//! criteria read. Rates are defined under [`MetricsAccumulator`]'s "Rates".
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use async_upload_rollout::{Arm, History, MetricsAccumulator, Outcome};
//!
//! let metrics = Arc::new(MetricsAccumulator::new()); // shared by all handlers
//! // In the handler, after the upload (hot path: no lock, no allocation):
//! metrics.record(Arm::Async, Outcome::Success, Duration::from_millis(84));
//! metrics.record(Arm::Sync, Outcome::Rejected, Duration::from_millis(2)); // the client's fault
//!
//! // Every 10 s, in a monitor:
//! let mut history = History::default();
//! history.push(metrics.snapshot());
//! let now = history.latest().unwrap();
//! assert_eq!(now.success_rate(Arm::Async), Some(1.0));
//! assert_eq!(now.success_rate(Arm::Sync), None); // nothing judged yet
//! ```
//!
//! # Operating a rollout
//!
//! - [`ConfigWatcher`](act::ConfigWatcher) (always available, no extra dependency): the config
//!   (salt, kill switch, id lists) from a TOML or JSON file, reloaded live;
//!   its percent is only the starting request (the percent in force is the
//!   controller's); a bad or half-written file keeps the last good config.
//!   [`ConfigStore`](act::ConfigStore) ([`ConfigFile`](act::ConfigFile), a fleet's etcd) changes that config
//!   for every service at once, with a compare-and-swap.
//! - Every service [acknowledges](StateStore::acknowledge) the epoch and
//!   config it applies ([`Acknowledgement`](act::Acknowledgement)), so an operator's command can
//!   confirm a change reached every live service, or name who did not.
//! - Feature `prometheus`: `export::prometheus::PrometheusExporter`, the
//!   counters, latency histograms, percent, stage and verdict in the
//!   OpenMetrics text format, read at scrape time.
//! - Feature `openfeature`: `openfeature::RolloutProvider`, the decision as
//!   an OpenFeature boolean flag for the targeting key.
//! - Feature `tower`: `tower::RolloutLayer`, a tower (axum) layer that
//!   decides each request's path and records its outcome and latency to the
//!   end of the response body.
//!
//! # Guarantees
//!
//! - **Deterministic bucketing**: an id's bucket depends only on the salt and
//!   the id's bytes, on every platform, process and release (the algorithm is
//!   specified on [`Rollout::bucket`] and pinned by test vectors).
//! - **Monotonic widening**: an id is in at `p` iff `bucket(id) < p.ppm()`, so
//!   every id in at `p` is in at any `q ≥ p`, and going back to `p` restores
//!   exactly the old cohort.
//! - **Whole configs only**: a decision sees one complete config, never a mix.
//! - **Hot path**: no allocation, no lock, no syscall; 0% and 100% answer
//!   without hashing. The same holds for [`MetricsAccumulator::record`].
//! - **No lost counts**: every record is in the next snapshot, counters only
//!   grow, windows subtract and instances merge exactly; latency quantiles
//!   are within 1/256 of the exact value.
//!
//! # Crate layout
//!
//! The root holds what an upload service needs: [`Rollout`] and its config,
//! [`MetricsAccumulator`], the [`RolloutController`] and its builder, the
//! [`RolloutState`] and its [`StateStore`], the [`RolloutPlan`] and its
//! [`Evaluation`], the log's [`JsonlSink`]. Everything else lives in the
//! module of its layer, in the order an upload meets them:
//!
//! | module | what it owns |
//! | --- | --- |
//! | [`decide`] | which path one upload takes: [`Percent`], the config and its errors, the decision's reason |
//! | [`metrics`] | what the handler records: the accumulator, snapshots, windows, the latency histogram |
//! | [`judge`] | metrics to a verdict: the plan, its criteria and triggers, the evaluator; [`judge::stats`], the interval statistics |
//! | [`act`] | a verdict to an action: the controller, the state and its stores, config sources, acknowledgements; [`act::log`], the JSON-lines log; [`act::simulation`], whole rollouts in simulated time |
//! | [`clock`] | where time comes from: [`clock::SystemClock`], [`clock::ManualClock`] |
//! | `export`, `fleet`, `openfeature`, `tower` | the faces on top, behind features |
//!
//! # User guide
//!
//! The [`docs`] module holds the guide, one chapter a layer: [deciding](docs::deciding),
//! [metrics](docs::metrics), [judging](docs::judging), [the controller and its
//! state](docs::controller), [integrations](docs::integrations).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod act;
// Not part of the API: the internals of the `async-upload-rollout` binary
// (reading logs, the HTML report, the operator commands). Public only so that
// the binary, the tests, a bench and the fuzz targets can reach them; hidden
// from the docs, with no semver promise: any release may change them.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
pub mod clock;
pub mod decide;
pub mod docs;
#[cfg(feature = "prometheus")]
pub mod export;
#[cfg(feature = "etcd")]
pub mod fleet;
pub mod judge;
pub mod metrics;
#[cfg(feature = "openfeature")]
pub mod openfeature;
#[cfg(feature = "tower")]
pub mod tower;

// The crate root: what an upload service needs (decide, record, the
// controller and its builder, the state and its store, the plan and its
// evaluation, the log's sink). Everything else lives in its layer's module:
// `decide`, `metrics`, `judge` (`judge::stats`), `act` (`act::log`,
// `act::simulation`), `clock`, and the faces on top.
pub use act::log::{Action, JsonlSink};
pub use act::{
    ControllerError, ControllerView, FileStateStore, MemoryStateStore, MonitorHandle,
    RolloutController, RolloutControllerBuilder, RolloutState, RolloutStatus, StateStore,
    StoreError, Tick,
};
pub use decide::{Percent, Rollout, RolloutConfig, RolloutHandle};
pub use judge::{Check, Evaluation, Evaluator, RolloutPlan, Verdict};
pub use metrics::{
    Arm, History, MetricsAccumulator, MetricsSnapshot, Outcome, process_memory_bytes,
};

/// The README's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The Rust examples of the fleet guide (`docs/fleet.md`), compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/fleet.md")]
struct FleetDoctests;
