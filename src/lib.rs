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
//! each stage's [`StageCriteria`] and the [`RollbackTriggers`]. The
//! [`Evaluator`] turns metrics into an [`Evaluation`]: a [`Verdict`] with
//! every [`Check`] behind it, judged literally or (by default) with Wilson
//! intervals. The [`RolloutController`] ticks, rolls back by itself, advances
//! when allowed, and logs every tick; see its example. It is the one writer
//! of the [`RolloutState`] (stage, status, epoch), kept in a [`StateStore`]
//! ([`FileStateStore`] by default): a rollback holds across restarts, config
//! reloads and admin calls until a person resumes, operators change the
//! state through the same transitions ([`RolloutState::apply`]), and a state
//! that cannot be read means nothing async. [`simulation`] runs whole
//! rollouts in simulated time.
//!
//! # Metrics
//!
//! The handler records each upload on the path it took; snapshots, windows
//! and the JSON-lines log ([`JsonlSink`], [`read_log`]) are what rollout
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
//! - [`ConfigWatcher`] (always available, no extra dependency): the config
//!   (salt, kill switch, id lists) from a TOML or JSON file, reloaded live;
//!   its percent is only the starting request (the percent in force is the
//!   controller's); a bad or half-written file keeps the last good config.
//!   [`ConfigStore`] ([`ConfigFile`], a fleet's etcd) changes that config
//!   for every service at once, with a compare-and-swap.
//! - Every service [acknowledges](StateStore::acknowledge) the epoch and
//!   config it applies ([`Acknowledgement`]), so an operator's command can
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
//! # User guide
//!
//! The [`docs`] module holds the guide, one chapter a layer: [deciding](docs::deciding),
//! [metrics](docs::metrics), [judging](docs::judging), [the controller and its
//! state](docs::controller), [integrations](docs::integrations).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod act;
// Not part of the API: the internals of the `async-upload-rollout` binary
// (reading logs, the HTML report, the operator commands). Public only so that
// the binary, the tests, a bench and the fuzz targets can reach them; hidden
// from the docs, with no semver promise: any release may change them.
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
mod clock;
mod decide;
pub mod docs;
#[cfg(feature = "prometheus")]
pub mod export;
#[cfg(feature = "etcd")]
pub mod fleet;
mod judge;
mod metrics;
#[cfg(feature = "openfeature")]
pub mod openfeature;
#[cfg(feature = "tower")]
pub mod tower;

pub use act::simulation;
pub use act::{
    ACK_REFRESH, ACK_TTL, Acknowledgement, Action, Applied, ChangedBy, ConfigFile, ConfigFormat,
    ConfigStore, ConfigWatcher, ControllerError, ControllerView, DEFAULT_LOG_INTERVAL,
    DEFAULT_LOG_PATH, DEFAULT_MEMORY_WARMUP, DEFAULT_STALE_AFTER, DEFAULT_STATE_PATH,
    DEFAULT_STATE_POLL, FileStateStore, InvalidState, JsonlSink, LOG_SCHEMA_VERSION, LogError,
    LogEvent, LogRead, LogRecord, MAX_LINE_BYTES, MemoryStateStore, MetricsSource, MonitorHandle,
    MonitorHealth, NoOp, OUTAGE_LOG_INTERVAL, Operation, OperatorError, PollOutcome, Refused,
    Revision, RolloutController, RolloutControllerBuilder, RolloutState, RolloutStatus, RunView,
    Salvaged, SourceError, StateStore, StoreError, Stored, Tick, TornLine, WatcherHandle,
    default_service_id, log_files, read_log,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use decide::{
    ConfigError, DEFAULT_SALT, Decision, DecisionReason, ParsePercentError, ParsePercentErrorKind,
    Percent, PercentOutOfRange, ROLLOUT_ENV_VAR, Rollout, RolloutConfig, RolloutHandle,
};
pub use judge::{
    Check, CheckKind, CheckStatus, Evaluation, EvaluationMode, EvaluationSettings, Evaluator,
    Interval, LatencyStatistic, PlanError, ReviewLook, RollbackTriggers, RolloutPlan, Stage,
    StageCriteria, UnknownStage, Verdict, mixture_likelihood_ratio, wilson, z_for_confidence,
};
pub use metrics::{
    Arm, ArmMetrics, HistogramBucket, History, LatencyHistogram, MemoryStats, MetricsAccumulator,
    MetricsSnapshot, Outcome, process_memory_bytes,
};

/// The README's Rust examples, compiled as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The Rust examples of the fleet guide (`docs/fleet.md`), compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/fleet.md")]
struct FleetDoctests;
