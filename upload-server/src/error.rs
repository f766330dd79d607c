//! Why the server could not start.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use async_upload_rollout::{
    ControllerError, act::SourceError, act::log::LogError, judge::PlanError,
};

/// The server could not start. Nothing is listening yet.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag or environment variable is wrong: fix it and start again.
    #[error("{0}")]
    Usage(String),
    /// The plan file could not be loaded.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The controller's log could not be opened.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The controller could not start (invalid plan, or its log line failed).
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// The config file could not be used at start.
    #[error(transparent)]
    Config(#[from] SourceError),
    /// The upload directory could not be created.
    #[error("cannot create the upload directory {dir}: {source}")]
    StoreDir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The listening address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: io::Error,
    },
}
