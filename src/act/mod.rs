//! Act: the controller that runs the plan, the state it owns, and what feeds
//! and records it.
//!
//! [`RolloutController`] ticks, judges and acts; it is the one writer of the
//! [`RolloutState`], kept in a [`StateStore`] ([`FileStateStore`],
//! [`MemoryStateStore`]); [`MonitorHandle`] runs it in the background and
//! fails safe; [`ConfigWatcher`] reloads the config file and [`ConfigStore`]
//! changes it (or a fleet's) with a compare-and-swap; the JSON-lines log
//! ([`JsonlSink`](log::JsonlSink), [`read_log`](log::read_log)) keeps the audit record in the schema of
//! [`LogRecord`](log::LogRecord); [`simulation`] runs whole rollouts in simulated time.

pub(crate) mod config_store;
pub(crate) mod controller;
pub(crate) mod health;
pub(crate) mod journal;
pub mod log;
pub(crate) mod metrics_source;
pub(crate) mod monitor;
pub(crate) mod outage;
pub(crate) mod policy;
pub(crate) mod record;
pub(crate) mod recover;
pub(crate) mod run;
pub(crate) mod salvage;
pub mod simulation;
pub(crate) mod source;
pub(crate) mod state;
pub(crate) mod store;
pub(crate) mod sync;
pub(crate) mod trace;
pub(crate) mod validate;

pub use config_store::{ConfigFile, ConfigStore};
pub use controller::builder::RolloutControllerBuilder;
pub use controller::{
    ControllerError, ControllerView, DEFAULT_LOG_INTERVAL, DEFAULT_MEMORY_WARMUP,
    DEFAULT_STALE_AFTER, DEFAULT_STATE_POLL, OperatorError, RolloutController, Tick,
};
pub use health::MonitorHealth;
pub use metrics_source::MetricsSource;
pub use monitor::MonitorHandle;
pub use outage::OUTAGE_LOG_INTERVAL;
pub use run::RunView;
pub use source::{ConfigFormat, ConfigWatcher, PollOutcome, SourceError, WatcherHandle};
pub use state::{ChangedBy, InvalidState, Operation, Refused, RolloutState, RolloutStatus};
pub use store::{
    ACK_REFRESH, ACK_TTL, Acknowledgement, Applied, DEFAULT_STATE_PATH, FileStateStore,
    MemoryStateStore, Revision, Salvaged, StateStore, StoreError, Stored, default_service_id,
};
