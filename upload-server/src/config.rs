//! How the server is set up: every setting, with the defaults the flags
//! start from.

use std::path::PathBuf;
use std::time::Duration;

use async_upload_rollout::{RolloutPlan, act::DEFAULT_STATE_PATH, act::log::DEFAULT_LOG_PATH};

/// How the server is set up; `main` fills it from the flags, tests directly.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The bearer token of the admin routes; `None` turns them off (403).
    pub admin_token: Option<String>,
    /// The rollout's state file.
    pub state_path: PathBuf,
    /// The rollout config file, read again at every state poll.
    pub config_path: Option<PathBuf>,
    /// How often the controller reads the state file for changes made by
    /// others (the command line).
    pub state_poll: Duration,
    /// The controller's JSON-lines log.
    pub log_path: PathBuf,
    /// How often the controller ticks (and memory is sampled).
    pub tick: Duration,
    /// How often a quiet tick is written to the log (acting or
    /// verdict-changing ticks always are).
    pub log_interval: Duration,
    /// Where uploads are stored, one file per upload id.
    pub store_dir: PathBuf,
    /// The plan the controller runs.
    pub plan: RolloutPlan,
    /// Whether the controller advances stages by itself.
    pub auto_advance: bool,
    /// Largest body accepted; larger ones are 413 and `Rejected`.
    pub max_upload_bytes: usize,
    /// How long after each run of a stage starts the memory-growth
    /// baseline is taken.
    pub memory_warmup: Duration,
    /// Join a fleet on etcd instead of using the state file.
    pub fleet: Option<FleetConfig>,
    /// How long the last state read serves while the store cannot be read;
    /// after that, nothing async.
    pub stale_after: Duration,
    /// Share of async uploads failed on purpose (tests, demonstrations).
    pub inject_async_error_rate: f64,
    /// This service's name in its acknowledgements; default: host name and
    /// pid.
    pub service_id: Option<String>,
}

/// Where a fleet replica finds its fleet.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// etcd endpoints.
    pub etcd: Vec<String>,
    /// The CA certificate (PEM) that signed etcd's certificate.
    pub etcd_ca: Option<PathBuf>,
    /// This replica's client certificate (PEM).
    pub etcd_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub etcd_key: Option<PathBuf>,
    /// The etcd user (its password from `ETCD_PASSWORD`).
    pub etcd_user: Option<String>,
    /// The rollout's name (its etcd prefix and exported label).
    pub name: String,
    /// This replica's id in acknowledgements.
    pub replica: String,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            admin_token: None,
            state_path: DEFAULT_STATE_PATH.into(),
            config_path: None,
            state_poll: async_upload_rollout::act::DEFAULT_STATE_POLL,
            log_path: DEFAULT_LOG_PATH.into(),
            tick: Duration::from_secs(10),
            log_interval: async_upload_rollout::act::DEFAULT_LOG_INTERVAL,
            store_dir: std::env::temp_dir()
                .join("async_upload_rollout")
                .join("uploads"),
            plan: RolloutPlan::default(),
            auto_advance: false,
            max_upload_bytes: 64 * 1024 * 1024,
            memory_warmup: Duration::from_secs(60),
            fleet: None,
            stale_after: async_upload_rollout::act::DEFAULT_STALE_AFTER,
            inject_async_error_rate: 0.0,
            service_id: None,
        }
    }
}
