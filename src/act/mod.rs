//! Act: the controller that runs the plan, and what feeds and records it.
//!
//! [`RolloutController`] ticks, judges and acts; [`ConfigWatcher`] reloads
//! the config file; the JSON-lines log ([`JsonlSink`], [`read_log`]) keeps
//! the audit record in the schema of [`LogRecord`]; [`simulation`] runs
//! whole rollouts in simulated time.

pub(crate) mod controller;
pub(crate) mod log;
pub(crate) mod record;
pub mod simulation;
pub(crate) mod source;
pub(crate) mod validate;

pub use controller::{
    ControllerError, DEFAULT_LOG_INTERVAL, MonitorHandle, RolloutController,
    RolloutControllerBuilder, Tick,
};
pub use log::{
    DEFAULT_LOG_PATH, JsonlSink, LogError, LogRead, MAX_LINE_BYTES, TornLine, log_files, read_log,
};
pub use record::{Action, ControllerState, LOG_SCHEMA_VERSION, LogEvent, LogRecord};
pub use source::{ConfigFormat, ConfigWatcher, PollOutcome, SourceError, WatcherHandle};
