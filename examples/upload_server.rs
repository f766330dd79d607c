//! A real upload service: an HTTP server whose uploads take the path the
//! rollout picks, with the controller judging them in the background.
//!
//! ```text
//! cargo run --release --features prometheus,tower --example upload_server -- --admin-token secret
//! ```
//!
//! Routes:
//! - `POST /uploads`: the body is the upload. Its id comes from the
//!   `Upload-Id` (or `X-Upload-Id`) header, or is generated; it is returned
//!   in the `Upload-Id` response header and the JSON body. The **sync** path
//!   stores the body (written, fsynced, renamed into place) and answers
//!   `201 Created`; the **async** path answers `202 Accepted` at once and
//!   stores it in a background task. The route is behind the crate's
//!   [`RolloutLayer`] (feature `tower`): it decides the path from the id,
//!   and records the outcome and the latency on the arm that took it, for
//!   the sync path when the response has been sent (201 `Success`, 500
//!   `Error`), for the async path when the background store ends (the
//!   handler takes the outcome over with [`LayerHandle::defer`]); so the
//!   latency runs *from the request's start to the upload being stored*
//!   either way. An empty body, an over-large body or an id that is not a
//!   safe file name is `400` / `413` and recorded as [`Outcome::Rejected`]
//!   (the client's fault, not judged); an id's error quotes it (lossily,
//!   when it is not UTF-8) and says what is wrong. A store that fails or is
//!   cut short leaves no temporary file behind (one left by a crash is
//!   removed at the next start).
//! - `GET /metrics`: the crate's Prometheus exporter, in OpenMetrics when the
//!   scraper asks for it (`Accept: application/openmetrics-text`), else the
//!   Prometheus text format 0.0.4.
//! - `GET /rollout`: `percent` (in force: 0 whenever nothing is async: the
//!   kill switch, a rollback, off, a state unknown or stale), `in_force`
//!   (why, in words), `state` (the [`RolloutState`] as stored: epoch, stage,
//!   status, who changed it and why), `store` (where: the state file's
//!   absolute path, or the fleet's etcd endpoint and rollout name), `state_error` (only while the state
//!   cannot be read or written), `config_error` (`null` unless the config
//!   file or the fleet's config key cannot be read: the last good config
//!   stays), `halted`, `kill_switch`, the config in force, the plan's stages
//!   and the last evaluation, as JSON. Read without waiting for a tick.
//! - `GET /rollout/decide/{upload_id}`: the path that id takes now and the
//!   rule that decided (`Bucket`, `ForceAsync`, `Halted`, ...), with its
//!   bucket; uploads nothing.
//! - `PUT /rollout`: `{"kill_switch": true}`, `{"force_sync": [...]}`,
//!   `{"force_async": [...]}` or several, with `Authorization: Bearer
//!   <token>`. It changes the config, never the percent: a `percent` field
//!   is `400` (the percent is the controller's: use the routes below). It
//!   changes the config where every service reads it: in a fleet, the
//!   fleet's config key in etcd (compare-and-swap: every replica applies
//!   it); with `--config FILE`, that file (written whole); otherwise this
//!   process only. The answer's `config_written_to` says which.
//! - `POST /rollout/rollback`, `/rollout/resume`, `/rollout/advance`,
//!   `/rollout/pause` with `{"reason": "..."}` and the same bearer token:
//!   the operator's actions, through the controller (the same transitions
//!   as `async-upload-rollout rollback --state FILE ...`). `200` with the
//!   body of `GET /rollout`; `409` when the state does not allow it (advance
//!   while rolled back) or another writer got in first; `503` when the
//!   store cannot be written (a rollback is in force here anyway, and
//!   written when the store answers). A rollback is always accepted: over a
//!   state that cannot be read it writes a readable `rolled_back` state
//!   above every epoch seen; other operations are `503` then.
//!
//! Invalid admin requests are `400` and change nothing; a body over 64 KiB is
//! `413`; a wrong or missing token is `401`; with no token configured the
//! admin routes are off and answer `403` (they exist, but no credential can
//! open them). Every error is JSON: `{"error": "..."}`.
//!
//! Flags:
//! - `--addr <host:port>`: where to listen (default `127.0.0.1:8080`)
//! - `--admin-token <token>`: enables the admin routes (or set
//!   `ASYNC_UPLOAD_ADMIN_TOKEN`, which keeps the token out of `ps`)
//! - `--state <path>`: the rollout's state file (default
//!   `logs/async_upload_rollout/state.json`), shared with the command line
//! - `--config <path>`: a TOML or JSON rollout config (salt, kill switch, id
//!   lists, and the starting `percent`), reloaded every second
//! - `--log <path>`: the controller's log (default
//!   `logs/async_upload_rollout/metrics.jsonl`)
//! - `--tick <duration>`: how often the controller judges (default `10s`)
//! - `--store-dir <dir>`: where uploads are stored (default
//!   `$TMPDIR/async_upload_rollout/uploads`)
//! - `--plan <file>`: a TOML or JSON rollout plan (default: the week-2 plan)
//! - `--auto-advance`: let the controller move to the next stage by itself
//! - `--memory-warmup <duration>`: how long after each run of a stage
//!   starts the memory baseline is taken (default `1m`; see below)
//! - `--etcd <url>` and `--name <name>` (feature `etcd`): join a fleet: the
//!   state and config come from etcd (`--state` is not used), the replica
//!   acknowledges each epoch it applies, exports its share of the current
//!   run for the fleet's controller, and pulls the fuse (a fleet-wide
//!   rollback) when an immediate rollback trigger fires on its own
//!   metrics
//! - `--etcd-ca <file>`, `--etcd-cert <file>`, `--etcd-key <file>`: TLS to
//!   an `https://` etcd: the CA that signed its certificate (default: the
//!   system's roots), and this replica's client certificate and key for an
//!   etcd that verifies them
//! - `--etcd-user <user>`: the etcd user, for an etcd with authentication
//!   enabled; its password from the `ETCD_PASSWORD` environment variable
//!   (never a flag)
//! - `--replica <id>`: this service's name in its acknowledgements (default:
//!   host name and pid)
//! - `--stale-after <duration>`: how long the last state read keeps serving
//!   while the state store cannot be read (default `30s`); after that,
//!   nothing async until it answers
//! - `--inject-async-error-rate <0..1>`: for tests and demonstrations, fail
//!   that share of async uploads on purpose
//! - `--help`: describes every flag and exits
//!
//! The service acknowledges the state epoch and config it applies (in a
//! fleet, in etcd; otherwise a small file beside the state file, named by
//! `--replica`), so `async-upload-rollout rollback --wait` can confirm it, and
//! says on stderr, once per change, when the state or the config changes or
//! cannot be read.
//!
//! Ctrl-C or SIGTERM stops it gracefully: no new connections, requests in
//! progress finish, and accepted (202) uploads are stored before it exits
//! (at most 10 s).
//!
//! # The rollout's state
//!
//! The stage and status live in the state file and survive restarts: a
//! rolled-back service stays rolled back when it is restarted, a running
//! stage keeps its start time, and the run's totals come back from the log.
//! Only when no state is stored does the starting request pick the first
//! state: `ASYNC_UPLOAD_ROLLOUT` (or the config file's `percent`) at `0` or
//! unset means **off** (nothing async until an operator advances); `10`
//! starts the 10% stage. A state file that cannot be read is reported at
//! start, in `GET /rollout` and in the log, and the service serves every
//! upload on the sync path until it is fixed.
//!
//! Memory is sampled every tick ([`process_memory_bytes`]). A server's
//! resident memory grows as it warms up (runtime worker stacks, connection
//! buffers, allocator arenas): measured at start, a dozen requests already
//! showed +12% (the trigger fires above 20%). So the controller takes each
//! run's memory baseline `--memory-warmup` after the run starts; until then
//! the memory trigger has no data and cannot fire.
#![forbid(unsafe_code)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_upload_rollout::export::prometheus::{
    ControllerStatus, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE, PrometheusExporter,
};
use async_upload_rollout::tower::{FromFn, LayerHandle, RolloutDecision, RolloutLayer};
use async_upload_rollout::{
    Arm, ControllerError, ControllerView, Evaluation, FileStateStore, JsonlSink,
    MetricsAccumulator, MonitorHandle, Outcome, Percent, Rollout, RolloutConfig, RolloutController,
    RolloutPlan, RolloutState, StateStore,
    act::log::{DEFAULT_LOG_PATH, LogError},
    act::{
        ConfigFile, ConfigStore, ConfigWatcher, DEFAULT_STATE_PATH, Operation, OperatorError,
        PollOutcome, SourceError,
    },
    judge::PlanError,
    process_memory_bytes,
};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// The environment variable that can hold the admin token.
pub const ADMIN_TOKEN_ENV_VAR: &str = "ASYNC_UPLOAD_ADMIN_TOKEN";
/// The request headers an upload id is read from, in order.
pub const UPLOAD_ID_HEADERS: [&str; 2] = ["upload-id", "x-upload-id"];
/// Longest upload id accepted (it becomes a file name).
pub const MAX_ID_LEN: usize = 128;
/// How long a graceful shutdown waits for accepted uploads to be stored.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest body of an admin request (`PUT /rollout`, the operator routes).
pub const MAX_ADMIN_BODY: usize = 64 * 1024;

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

/// What the handlers share. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    rollout: Arc<Rollout>,
    metrics: Arc<MetricsAccumulator>,
    exporter: PrometheusExporter,
    /// Decides and records each upload (the `POST /uploads` route's layer).
    layer: RolloutLayer<FromFn<IdFinder>>,
    monitor: MonitorHandle,
    /// Where `PUT /rollout` writes the config every service reads: the
    /// fleet's etcd, or the config file; `None`: this process only.
    config_store: Option<Arc<dyn ConfigStore>>,
    /// Where the state is (named in every answer).
    store_name: String,
    admin_token: Option<Vec<u8>>,
    store_dir: PathBuf,
    max_upload_bytes: usize,
    tick: Duration,
    ids: IdSource,
    in_flight: InFlight,
    /// Async uploads to fail on purpose, per million.
    inject_ppm: u64,
    injected: AtomicU64,
}

impl AppState {
    /// Opens the log and the upload directory, reads the config file (if
    /// any), and starts the controller on `rollout` with the state in the
    /// state file. The rollout's percent on entry (from
    /// `ASYNC_UPLOAD_ROLLOUT`), or the config file's, is the starting
    /// request, used only when no state is stored.
    ///
    /// # Errors
    ///
    /// [`StartError::StoreDir`], [`StartError::Config`], [`StartError::Log`]
    /// or [`StartError::Controller`]; nothing is left running. A state file
    /// that cannot be read is not an error: the server starts with nothing
    /// async and reports it.
    pub fn new(config: ServerConfig, rollout: Arc<Rollout>) -> Result<AppState, StartError> {
        if config.admin_token.as_deref() == Some("") {
            return Err(StartError::Usage(
                "the admin token must not be empty".to_owned(),
            ));
        }
        std::fs::create_dir_all(&config.store_dir).map_err(|source| StartError::StoreDir {
            dir: config.store_dir.clone(),
            source,
        })?;
        let swept = sweep_partial_uploads(&config.store_dir);
        if swept > 0 {
            eprintln!(
                "upload_server: removed {swept} unfinished upload file(s) from {} (left by a crash)",
                config.store_dir.display()
            );
        }
        // The config file: its salt, kill switch and lists now; its percent
        // (or ASYNC_UPLOAD_ROLLOUT's, which wins) is the starting request.
        // The controller polls it from then on, with the state.
        let watcher = match &config.config_path {
            Some(path) => {
                let mut watcher = ConfigWatcher::new(path, Arc::clone(&rollout))?
                    .with_log(JsonlSink::open(&config.log_path)?);
                if let PollOutcome::Applied(file) = watcher.poll_once()? {
                    rollout.set_percent(file.percent);
                }
                Some(watcher)
            }
            None => None,
        };
        let metrics = Arc::new(MetricsAccumulator::new());
        let (store, rollout_name, config_store) = state_store(&config)?;
        let store_name = store.describe();
        let mut builder = RolloutController::builder(Arc::clone(&rollout), Arc::clone(&metrics))
            .plan(config.plan)
            .auto_advance(config.auto_advance)
            .log_interval(config.log_interval)
            .memory_warmup(config.memory_warmup)
            .stale_after(config.stale_after)
            .state_store(store)
            .follower(config.fleet.is_some())
            .log(JsonlSink::open(&config.log_path)?);
        if let Some(watcher) = watcher {
            builder = builder.config_watcher(watcher);
        }
        let controller = builder.build()?;
        if let Some(error) = controller.state_error() {
            eprintln!(
                "upload_server: STATE ERROR: {error}\nupload_server: serving every upload on the sync path until the state file is fixed"
            );
        }
        if let Some(error) = controller.config_error() {
            eprintln!("upload_server: CONFIG ERROR: {error}");
        }
        let monitor = controller.spawn_with_poll(config.tick, config.state_poll);
        let layer = RolloutLayer::builder(Arc::clone(&rollout), Arc::clone(&metrics))
            .id(FromFn(request_upload_id as IdFinder))
            .build();
        Ok(AppState {
            inner: Arc::new(Inner {
                layer,
                exporter: PrometheusExporter::new(Arc::clone(&rollout), Arc::clone(&metrics))
                    .with_rollout_name(&rollout_name),
                rollout,
                metrics,
                monitor,
                config_store,
                store_name,
                admin_token: config.admin_token.map(String::into_bytes),
                store_dir: config.store_dir,
                max_upload_bytes: config.max_upload_bytes,
                tick: config.tick,
                ids: IdSource::new(),
                in_flight: InFlight::default(),
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped
                inject_ppm: (config.inject_async_error_rate.clamp(0.0, 1.0) * 1e6) as u64,
                injected: AtomicU64::new(0),
            }),
        })
    }

    /// The rollout the handlers decide with.
    #[must_use]
    pub fn rollout(&self) -> &Arc<Rollout> {
        &self.inner.rollout
    }

    /// The metrics the handlers record into.
    #[must_use]
    pub fn metrics(&self) -> &Arc<MetricsAccumulator> {
        &self.inner.metrics
    }

    /// The upload route's layer: its counters (requests without an id,
    /// cancelled, deferred) and the metrics it records into.
    #[must_use]
    pub fn rollout_layer(&self) -> LayerHandle {
        self.inner.layer.handle()
    }

    /// The background controller: [`MonitorHandle::view`] for status,
    /// [`MonitorHandle::lock`] for operator actions.
    pub fn monitor(&self) -> &MonitorHandle {
        &self.inner.monitor
    }

    /// Where uploads are stored.
    #[must_use]
    pub fn store_dir(&self) -> &Path {
        &self.inner.store_dir
    }

    /// Waits until no accepted (202) upload is still being stored, at most
    /// `timeout`. Returns whether none is left.
    pub async fn drain(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.inner.in_flight.idle())
            .await
            .is_ok()
    }
}

/// The state store, the config store and the rollout's name.
type Stores = (Arc<dyn StateStore>, String, Option<Arc<dyn ConfigStore>>);

/// The state store: etcd in a fleet, else the state file; the rollout's
/// name for the exported series; and where `PUT /rollout` writes the config
/// (the fleet's etcd, or the config file).
fn state_store(config: &ServerConfig) -> Result<Stores, StartError> {
    match &config.fleet {
        None => {
            let mut store = FileStateStore::new(&config.state_path);
            if let Some(id) = &config.service_id {
                store = store.with_service(id);
            }
            let config_store = match &config.config_path {
                Some(path) => Some(Arc::new(ConfigFile::new(path)?) as Arc<dyn ConfigStore>),
                None => None,
            };
            Ok((
                Arc::new(store),
                async_upload_rollout::decide::DEFAULT_SALT.to_owned(),
                config_store,
            ))
        }
        #[cfg(feature = "etcd")]
        Some(fleet) => {
            use async_upload_rollout::fleet::{EtcdStateStore, EtcdTls, EtcdUser};
            let usage = |e: async_upload_rollout::fleet::ConnectError| StartError::Usage(e.to_string());
            let mut builder = EtcdStateStore::builder(&fleet.etcd, &fleet.name, &fleet.replica)
                .tls(EtcdTls {
                    ca: fleet.etcd_ca.clone(),
                    cert: fleet.etcd_cert.clone(),
                    key: fleet.etcd_key.clone(),
                });
            if let Some(user) = &fleet.etcd_user {
                builder = builder.etcd_user(EtcdUser::from_env(user).map_err(usage)?);
            }
            let store = builder.connect().map_err(usage)?;
            Ok((Arc::new(store.clone()), fleet.name.clone(), Some(Arc::new(store))))
        }
        #[cfg(not(feature = "etcd"))]
        Some(_) => Err(StartError::Usage(
            "--etcd needs the `etcd` feature: cargo run --features etcd,tower --example upload_server"
                .to_owned(),
        )),
    }
}

/// The server's routes over `state`.
pub fn app(state: AppState) -> Router {
    // The layer decides and records; outside it, requests without an id
    // get a generated one first, so every upload is bucketed.
    let uploads = post(upload).layer(state.inner.layer.clone()).layer(
        axum::middleware::map_request_with_state(state.clone(), assign_upload_id),
    );
    Router::new()
        .route("/uploads", uploads)
        .route("/metrics", get(metrics))
        .route("/rollout", get(rollout_status).put(change_rollout))
        .route("/rollout/{operation}", post(operate))
        .route("/rollout/decide/{upload_id}", get(decide))
        .with_state(state)
}

/// Serves [`app`] on `listener` until `shutdown` completes, sampling the
/// process's memory every tick; then stops accepting, finishes the requests
/// in progress and waits (at most [`DRAIN_TIMEOUT`]) for accepted uploads to
/// be stored.
///
/// # Errors
///
/// An I/O error from the listener.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let sampler = tokio::spawn(sample_memory(state.clone()));
    let reporter = tokio::spawn(report_changes(state.clone()));
    let served = axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    sampler.abort();
    reporter.abort();
    if !state.drain(DRAIN_TIMEOUT).await {
        eprintln!(
            "upload_server: {} accepted uploads still unstored after {}",
            state.inner.in_flight.count(),
            humantime::format_duration(DRAIN_TIMEOUT)
        );
    }
    served
}

/// Says on stderr, once per change, what the operator must know: the state
/// in force changed (by this process, the command line, another replica),
/// or it or the config cannot be read (and when that ends).
async fn report_changes(state: AppState) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    let mut last: Option<Arc<ControllerView>> = None;
    loop {
        every.tick().await;
        let view = state.inner.monitor.view();
        if let Some(before) = &last {
            for line in changes(before, &view) {
                eprintln!("upload_server: {line}");
            }
        }
        last = Some(view);
    }
}

/// What differs between two views, as lines for stderr.
fn changes(before: &ControllerView, now: &ControllerView) -> Vec<String> {
    let mut lines = Vec::new();
    if before.state != now.state
        && let Some(state) = &now.state
    {
        lines.push(format!("state now {state}; {} in force", now.percent));
    }
    if before.state_error != now.state_error {
        lines.push(match &now.state_error {
            Some(error) => format!("STATE ERROR: {error} (nothing async until it is fixed)"),
            None => "the state can be read again".to_owned(),
        });
    }
    if before.config_error != now.config_error {
        lines.push(match &now.config_error {
            Some(error) => format!("CONFIG ERROR: {error}"),
            None => "the config can be read again".to_owned(),
        });
    }
    if before.kill_switch != now.kill_switch {
        lines.push(format!(
            "kill switch {}: {} in force",
            if now.kill_switch { "ON" } else { "off" },
            now.percent
        ));
    }
    lines
}

/// Feeds the memory trigger: one RSS sample per controller tick (the
/// controller takes each run's baseline after its warm-up).
async fn sample_memory(state: AppState) {
    let mut every = tokio::time::interval(state.inner.tick);
    loop {
        every.tick().await;
        if let Some(bytes) = process_memory_bytes() {
            state.inner.metrics.record_memory(bytes);
        }
    }
}

// ---------------------------------------------------------------- uploads

/// The answer to an upload, as JSON.
#[derive(Serialize)]
struct UploadReply<'a> {
    upload_id: &'a str,
    arm: &'static str,
    /// `stored` (201), `accepted` (202) or `rejected` (4xx).
    status: &'static str,
    bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The id the layer decides with: the first upload-id header's bytes.
type IdFinder = for<'r> fn(&'r Request) -> Option<&'r [u8]>;

fn request_upload_id(request: &Request) -> Option<&[u8]> {
    UPLOAD_ID_HEADERS
        .iter()
        .find_map(|name| request.headers().get(*name))
        .map(HeaderValue::as_bytes)
}

/// Gives a request without an upload id a generated one (in the
/// `upload-id` header), before the layer decides.
async fn assign_upload_id(State(state): State<AppState>, mut request: Request) -> Request {
    if request_upload_id(&request).is_none() {
        // Generated ids are header-safe (letters, digits, `-`).
        if let Ok(id) = HeaderValue::from_str(&state.inner.ids.next()) {
            request.headers_mut().insert(UPLOAD_ID_HEADERS[0], id);
        }
    }
    request
}

/// `POST /uploads`, behind the [`RolloutLayer`]: it took the decision and
/// records the response's outcome (the status: 201 success, 4xx rejected,
/// 500 error) when it has been sent; the async path defers it to the
/// background store.
async fn upload(
    State(state): State<AppState>,
    Extension(decision): Extension<RolloutDecision>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let inner = &state.inner;
    // `assign_upload_id` saw to it that there is one.
    let raw = upload_id(&headers).unwrap_or_default();
    let arm = decision.arm;
    let id = match check_id(raw) {
        Ok(id) => id,
        Err(problem) => {
            let shown = String::from_utf8_lossy(raw);
            return reply(
                StatusCode::BAD_REQUEST,
                &shown,
                arm,
                "rejected",
                0,
                Some(problem),
            );
        }
    };
    let reject = |status: StatusCode, bytes: usize, message: String| {
        reply(status, id, arm, "rejected", bytes, Some(message))
    };
    let body = match axum::body::to_bytes(body, inner.max_upload_bytes).await {
        Ok(body) => body,
        Err(err) => {
            let too_large = content_length(&headers).is_some_and(|n| n > inner.max_upload_bytes)
                || err.to_string().contains("length limit");
            return if too_large {
                reject(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    0,
                    format!("uploads are limited to {} bytes", inner.max_upload_bytes),
                )
            } else {
                reject(
                    StatusCode::BAD_REQUEST,
                    0,
                    format!("cannot read the body: {err}"),
                )
            };
        }
    };
    if body.is_empty() {
        return reject(StatusCode::BAD_REQUEST, 0, "empty upload".to_owned());
    }

    let bytes = body.len();
    match arm {
        Arm::Sync => match store(&inner.store_dir, id, &body).await {
            Ok(()) => reply(StatusCode::CREATED, id, arm, "stored", bytes, None),
            Err(err) => {
                let message = format!("cannot store the upload: {err}");
                reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    id,
                    arm,
                    "failed",
                    bytes,
                    Some(message),
                )
            }
        },
        Arm::Async => {
            let guard = InFlightGuard::start(&state);
            let mut response = reply(StatusCode::ACCEPTED, id, arm, "accepted", bytes, None);
            // The upload is not stored yet: the background task records it.
            let outcome = inner.layer.handle().defer(decision, &mut response);
            let task_state = state.clone();
            let task_id = id.to_owned();
            tokio::spawn(async move {
                let inner = &task_state.inner;
                let stored = match store(&inner.store_dir, &task_id, &body).await {
                    Ok(()) if inner.inject_failure() => Outcome::Error,
                    Ok(()) => Outcome::Success,
                    Err(err) => {
                        eprintln!("upload_server: async upload {task_id} failed: {err}");
                        Outcome::Error
                    }
                };
                outcome.finish(stored);
                drop(guard);
            });
            response
        }
    }
}

fn reply(
    status: StatusCode,
    id: &str,
    arm: Arm,
    what: &'static str,
    bytes: usize,
    error: Option<String>,
) -> Response {
    let body = UploadReply {
        upload_id: id,
        arm: arm.as_str(),
        status: what,
        bytes,
        error,
    };
    let mut response = (status, axum::Json(body)).into_response();
    // A valid id (or a generated one) is a header-safe token; an invalid
    // one is only quoted in the body.
    if check_id(id.as_bytes()).is_ok()
        && let Ok(value) = HeaderValue::from_str(id)
    {
        response.headers_mut().insert("upload-id", value);
    }
    response
}

/// The bytes of the first upload-id header present.
fn upload_id(headers: &HeaderMap) -> Option<&[u8]> {
    UPLOAD_ID_HEADERS
        .iter()
        .find_map(|name| headers.get(*name))
        .map(HeaderValue::as_bytes)
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// An id names a file: ASCII letters, digits, `.`, `_` and `-`, not
/// starting with `.`, 1 to [`MAX_ID_LEN`] bytes. An error quotes the id
/// (lossily when it is not UTF-8, cut after 64 characters) and says what is
/// wrong with it.
fn check_id(raw: &[u8]) -> Result<&str, String> {
    const RULE: &str =
        "an upload id is 1 to 128 characters of A-Z a-z 0-9 . _ -, not starting with '.'";
    let quoted = || {
        let text = String::from_utf8_lossy(raw);
        let mut shown: String = text.chars().take(64).collect();
        if shown.len() < text.len() {
            shown.push('…');
        }
        format!("{shown:?}")
    };
    if raw.is_empty() {
        return Err(format!("the upload id is empty: {RULE}"));
    }
    let id = std::str::from_utf8(raw).map_err(|err| {
        format!(
            "upload id {} is not UTF-8 (invalid byte 0x{:02x} at byte {}): {RULE}",
            quoted(),
            raw[err.valid_up_to()],
            err.valid_up_to()
        )
    })?;
    if raw.len() > MAX_ID_LEN {
        return Err(format!(
            "upload id {} is too long: {} bytes, at most {MAX_ID_LEN}",
            quoted(),
            raw.len()
        ));
    }
    if id.starts_with('.') {
        return Err(format!("upload id {} starts with '.': {RULE}", quoted()));
    }
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if let Some((at, c)) = id.char_indices().find(|&(_, c)| !safe(c)) {
        return Err(format!(
            "upload id {} has {c:?} at byte {at}: {RULE}",
            quoted()
        ));
    }
    Ok(id)
}

/// The prefix and suffix of a temporary upload file: `.<id>.<n>.part`.
const PART_SUFFIX: &str = ".part";

/// Stores `body` as `dir/id` durably: written to a temporary name, fsynced,
/// renamed into place, and the directory fsynced, so a stored upload is
/// whole and survives a crash. A later upload with the same id replaces it.
///
/// The work runs on a blocking thread to its end even when the request is
/// cancelled (the client went away), so the temporary file is always
/// either renamed into place or removed; one left by a crash is removed at
/// the next start ([`sweep_partial_uploads`]).
pub async fn store(dir: &Path, id: &str, body: &Bytes) -> io::Result<()> {
    let (dir, id, body) = (dir.to_path_buf(), id.to_owned(), body.clone());
    tokio::task::spawn_blocking(move || store_now(&dir, &id, &body))
        .await
        .map_err(io::Error::other)?
}

fn store_now(dir: &Path, id: &str, body: &[u8]) -> io::Result<()> {
    use std::io::Write as _;

    static TEMP: AtomicU64 = AtomicU64::new(0);
    let temp = dir.join(format!(
        ".{id}.{}{PART_SUFFIX}",
        TEMP.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(body)?;
        file.sync_all()?;
        std::fs::rename(&temp, dir.join(id))?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// Removes the temporary files of uploads that never finished (a crash, a
/// `kill -9`): `.<id>.<n>.part` in `dir`. Returns how many. Only this
/// process writes there, so at start none is in progress.
pub fn sweep_partial_uploads(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with('.') && name.ends_with(PART_SUFFIX)
        })
        .filter(|entry| std::fs::remove_file(entry.path()).is_ok())
        .count()
}

/// Upload ids for requests without one: the process's start time and a
/// counter, so ids are unique across restarts of one host without a
/// random-number crate (the bucket hash spreads sequential ids evenly).
struct IdSource {
    prefix: String,
    next: AtomicU64,
}

impl IdSource {
    fn new() -> IdSource {
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        IdSource {
            prefix: format!("up-{start:x}-{:x}", std::process::id()),
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> String {
        format!(
            "{}-{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

impl Inner {
    /// Whether this async upload fails on purpose (`--inject-async-error-rate`):
    /// evenly spread, `inject_ppm` in every million.
    fn inject_failure(&self) -> bool {
        if self.inject_ppm == 0 {
            return false;
        }
        // Spread evenly: the n-th upload fails when the running count of
        // failures due, n × rate, passes a whole number.
        let n = self.injected.fetch_add(1, Ordering::Relaxed) % 1_000_000;
        (n + 1) * self.inject_ppm / 1_000_000 > n * self.inject_ppm / 1_000_000
    }
}

/// Counts accepted uploads not yet stored, so a shutdown (or a test) can
/// wait for them.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Completes when no upload is in flight.
    async fn idle(&self) {
        loop {
            // Register for the wake-up before looking, so a finish between
            // the look and the wait is not missed.
            let mut notified = pin!(self.idle.notified());
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One accepted upload being stored; dropping it (also by a panic in the
/// task) ends it.
struct InFlightGuard(AppState);

impl InFlightGuard {
    fn start(state: &AppState) -> InFlightGuard {
        state.inner.in_flight.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(state.clone())
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let in_flight = &self.0.inner.in_flight;
        if in_flight.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            in_flight.idle.notify_waiters();
        }
    }
}

// ---------------------------------------------------------------- metrics

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let inner = &state.inner;
    let view = inner.monitor.view();
    inner.exporter.set_status(ControllerStatus::of(&view));
    inner.exporter.set_run(view.run.clone());
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let (content_type, body) = if openmetrics {
        (OPENMETRICS_CONTENT_TYPE, inner.exporter.encode())
    } else {
        (
            PROMETHEUS_TEXT_CONTENT_TYPE,
            inner.exporter.encode_prometheus_text(),
        )
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

// ---------------------------------------------------------------- rollout

/// The body of `GET /rollout` (and of a successful admin request).
#[derive(Debug, Serialize, Deserialize)]
pub struct RolloutBody {
    /// The percent in force: 0 whenever nothing is async (the kill switch,
    /// a rollback, off, a state unknown or stale).
    pub percent: Percent,
    /// Why that percent, in words: the stage it comes from, or why nothing
    /// is async.
    #[serde(default)]
    pub in_force: String,
    /// The rollout's state as stored; `null` while it cannot be read.
    pub state: Option<RolloutState>,
    /// Where the state is stored: the state file's absolute path, or the
    /// fleet's etcd endpoint and rollout name.
    #[serde(default)]
    pub store: String,
    /// Why the state cannot be read or written; absent when all is well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_error: Option<String>,
    /// Why the config (the config file, the fleet's config key) cannot be
    /// read, keeping the last good one; `null` when all is well.
    #[serde(default)]
    pub config_error: Option<String>,
    /// Whether nothing is async because of the state, force lists included.
    pub halted: bool,
    /// Whether the kill switch is on (nothing async, whatever the state).
    #[serde(default)]
    pub kill_switch: bool,
    /// Whether the state store has not answered for longer than
    /// `--stale-after` (nothing async until it does).
    #[serde(default)]
    pub stale: bool,
    /// The config in force (its percent is the percent in force).
    pub config: RolloutConfig,
    /// The plan's stage percents.
    pub stages: Vec<Percent>,
    /// The latest evaluation; `null` before the first judged tick.
    pub last_evaluation: Option<Evaluation>,
    /// After `PUT /rollout`: where the change was written (the fleet's
    /// etcd, the config file, or this process only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_written_to: Option<String>,
}

impl RolloutBody {
    /// Read without the controller's lock: a tick in progress never delays it.
    fn of(state: &AppState) -> RolloutBody {
        let view = state.inner.monitor.view();
        let mut config = RolloutConfig::clone(&state.inner.rollout.config());
        // The config is read now; the view at the last poll: the kill switch
        // counts as soon as it is set.
        let kill_switch = config.kill_switch;
        let percent = if kill_switch {
            Percent::ZERO
        } else {
            view.percent
        };
        config.percent = percent;
        let in_force = if kill_switch {
            "nothing async: the kill switch is on".to_owned()
        } else if view.stale {
            "nothing async: the state store has not answered for too long".to_owned()
        } else {
            match (&view.state, &view.state_error) {
                (None, _) if !view.halted => {
                    format!("{percent}: the first state, not stored yet (its write is retried)")
                }
                (None, Some(_)) => "nothing async: the state cannot be read".to_owned(),
                (None, None) => "nothing async: no state yet".to_owned(),
                (Some(state), _) if view.halted => format!(
                    "nothing async: the rollout is {} (epoch {})",
                    state.status, state.epoch
                ),
                (Some(state), _) => format!(
                    "{percent}: stage {} {} (epoch {})",
                    state.stage.unwrap_or_default(),
                    state.status,
                    state.epoch
                ),
            }
        };
        RolloutBody {
            percent,
            in_force,
            state: view.state.clone(),
            store: state.inner.store_name.clone(),
            state_error: view.state_error.clone(),
            config_error: view.config_error.clone(),
            halted: view.halted,
            kill_switch,
            stale: view.stale,
            config,
            stages: view.stages.clone(),
            last_evaluation: view.last_evaluation.clone(),
            config_written_to: None,
        }
    }
}

async fn rollout_status(State(state): State<AppState>) -> Response {
    axum::Json(RolloutBody::of(&state)).into_response()
}

/// `GET /rollout/decide/{upload_id}`: the path an upload id takes now, and
/// the rule that decided (support questions; uploads nothing).
async fn decide(
    State(state): State<AppState>,
    axum::extract::Path(upload_id): axum::extract::Path<String>,
) -> Response {
    let decision = state.inner.rollout.decide(&upload_id);
    axum::Json(serde_json::json!({
        "upload_id": upload_id,
        "use_async": decision.use_async,
        "arm": Arm::from_use_async(decision.use_async).as_str(),
        "reason": format!("{:?}", decision.reason),
        "bucket": decision.bucket,
    }))
    .into_response()
}

/// The body of `PUT /rollout`: at least one field; never the percent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutChange {
    kill_switch: Option<bool>,
    force_async: Option<Vec<String>>,
    force_sync: Option<Vec<String>>,
    /// Refused with an explanation: the percent is the controller's.
    percent: Option<serde::de::IgnoredAny>,
}

/// Reads an admin request's body, at most [`MAX_ADMIN_BODY`] bytes; a
/// larger one is a JSON `413`.
#[allow(clippy::result_large_err)] // the error is the response itself
async fn admin_body(body: Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, MAX_ADMIN_BODY)
        .await
        .map_err(|err| {
            if err.to_string().contains("length limit") {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("admin request bodies are limited to {MAX_ADMIN_BODY} bytes"),
                )
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {err}"),
                )
            }
        })
}

/// Parses an admin request's JSON body as `T`, or says what is wrong in
/// the API's terms: not JSON (where), or which field has what problem.
fn parse_admin<T: serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(format!("the body is empty: expected {expected}"));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|err| format!("the body is not JSON ({err}): expected {expected}"))?;
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            format!("{inner}: expected {expected}")
        } else {
            format!("field `{path}`: {inner}: expected {expected}")
        }
    })
}

async fn change_rollout(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if let Err(denied) = authorize(&state, &headers) {
        return denied;
    }
    let body = match admin_body(body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    const EXPECTED: &str = r#"an object such as {"kill_switch": true} or {"force_sync": ["id-1"]}"#;
    let change: RolloutChange = match parse_admin(&body, EXPECTED) {
        Ok(change) => change,
        Err(problem) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid change: {problem}"),
            );
        }
    };
    if change.percent.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "the percent is not set here: it follows the rollout's state (use POST /rollout/advance, /rollback, /resume or /pause)".to_owned(),
        );
    }
    if change.kill_switch.is_none() && change.force_async.is_none() && change.force_sync.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid change: give `kill_switch`, `force_async` or `force_sync`".to_owned(),
        );
    }
    let apply = move |config: &mut RolloutConfig| {
        if let Some(on) = change.kill_switch {
            config.kill_switch = on;
        }
        if let Some(ids) = &change.force_async {
            config.force_async.clone_from(ids);
        }
        if let Some(ids) = &change.force_sync {
            config.force_sync.clone_from(ids);
        }
    };
    let Some(store) = state.inner.config_store.clone() else {
        // No shared config: this process only. One atomic store of
        // everything but the percent (and any halt): a decision sees every
        // field changed or none.
        let before = state.inner.rollout.update(apply);
        let after = state.inner.rollout.config();
        eprintln!(
            "upload_server: admin changed this process's config: kill switch {} -> {}, {} -> {} force_async and {} -> {} force_sync ids",
            before.kill_switch,
            after.kill_switch,
            before.force_async.len(),
            after.force_async.len(),
            before.force_sync.len(),
            after.force_sync.len()
        );
        let mut body = RolloutBody::of(&state);
        body.config_written_to =
            Some("this process only (no --config file and no fleet)".to_owned());
        return axum::Json(body).into_response();
    };
    // The shared config: compare-and-swap, then applied here at once (the
    // other services apply it at their next poll).
    let worker = state.clone();
    let written = tokio::task::spawn_blocking(move || {
        let written = write_shared_config(&*store, &worker.inner.rollout, apply);
        if written.is_ok() {
            let _ = worker.inner.monitor.lock().refresh();
        }
        written.map(|revision| (store.describe_config(), revision))
    })
    .await;
    match written {
        Ok(Ok((store, revision))) => {
            eprintln!("upload_server: admin changed the config in {store} (revision {revision})");
            let mut body = RolloutBody::of(&state);
            body.config_written_to = Some(store);
            axum::Json(body).into_response()
        }
        Ok(Err((status, message))) => error(status, message),
        Err(join) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the change did not finish: {join}"),
        ),
    }
}

/// Applies `change` to the shared config in `store` with a compare-and-swap
/// (reading again up to five times when another writer gets in first).
/// With none stored yet, it starts from this process's config (its percent,
/// the starting request, 0). Returns the new revision, or the status and
/// message to answer.
fn write_shared_config(
    store: &dyn ConfigStore,
    rollout: &Rollout,
    mut change: impl FnMut(&mut RolloutConfig),
) -> Result<u64, (StatusCode, String)> {
    let unavailable =
        |err: async_upload_rollout::StoreError| (StatusCode::SERVICE_UNAVAILABLE, err.to_string());
    for _ in 0..5 {
        let (mut config, expected) = match store.load_config_revision() {
            Ok(Some((config, revision))) => (config, Some(revision)),
            Ok(None) => {
                let mut config = RolloutConfig::clone(&rollout.config());
                config.percent = Percent::ZERO;
                (config, None)
            }
            Err(err) if err.is_corrupt() => {
                return Err((
                    StatusCode::CONFLICT,
                    format!(
                        "{err}; replace it whole with: async-upload-rollout config set --overwrite ..."
                    ),
                ));
            }
            Err(err) => return Err(unavailable(err)),
        };
        change(&mut config);
        match store.compare_and_swap_config(expected, &config) {
            Ok(revision) => return Ok(revision.0),
            Err(err) if err.is_conflict() => {}
            Err(err) => return Err(unavailable(err)),
        }
    }
    Err((
        StatusCode::CONFLICT,
        format!(
            "{}: other writers kept changing the config; try again",
            store.describe_config()
        ),
    ))
}

/// The body of the operator routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorRequest {
    reason: String,
}

async fn operate(
    State(state): State<AppState>,
    axum::extract::Path(operation): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let operation = match operation.as_str() {
        "rollback" => Operation::Rollback,
        "resume" => Operation::Resume,
        "advance" => Operation::Advance,
        "pause" => Operation::Pause,
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no operation {other:?}: rollback, resume, advance or pause"),
            );
        }
    };
    if let Err(denied) = authorize(&state, &headers) {
        return denied;
    }
    let body = match admin_body(body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let request: OperatorRequest = match parse_admin(&body, r#"{"reason": "..."}"#) {
        Ok(request) => request,
        Err(problem) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid request: {problem}"),
            );
        }
    };
    if request.reason.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "a reason is required: it goes into the state and the log".to_owned(),
        );
    }
    // The controller's lock waits for a tick in progress (a store write, a
    // log flush): off the async runtime's worker threads.
    let worker = state.clone();
    let result = tokio::task::spawn_blocking(move || {
        worker
            .inner
            .monitor
            .lock()
            .operate(operation, &request.reason)
    })
    .await;
    match result {
        Ok(Ok(done)) => {
            eprintln!("upload_server: operator {operation}: {done}");
            axum::Json(RolloutBody::of(&state)).into_response()
        }
        Ok(Err(OperatorError::Refused(refused))) => {
            error(StatusCode::CONFLICT, refused.to_string())
        }
        Ok(Err(OperatorError::Store(err))) if err.is_conflict() => {
            error(StatusCode::CONFLICT, err.to_string())
        }
        Ok(Err(err)) => error(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
        Err(join) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the operation did not finish: {join}"),
        ),
    }
}

/// `Ok` when the admin routes are on and the bearer token matches; else the
/// response to send (403 or 401).
#[allow(clippy::result_large_err)] // the error is the response itself
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let Some(expected) = state.inner.admin_token.as_deref() else {
        return Err(error(
            StatusCode::FORBIDDEN,
            format!(
                "the admin routes are off: start the server with --admin-token or {ADMIN_TOKEN_ENV_VAR}"
            ),
        ));
    };
    let given = bearer_token(headers).unwrap_or_default();
    if !tokens_match(given, expected) {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "a valid `Authorization: Bearer <token>` header is required".to_owned(),
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Err(response);
    }
    Ok(())
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

/// Whether `given == expected`, in a time that depends only on
/// `expected.len()`: every byte is compared, and no early exit tells an
/// attacker how much of a guess was right.
fn tokens_match(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, &e) in expected.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(0) ^ e);
    }
    std::hint::black_box(diff) == 0
}

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

// ---------------------------------------------------------------- main

/// The flags, parsed.
struct Args {
    addr: SocketAddr,
    config: ServerConfig,
}

/// What the command line asks for.
enum Parsed {
    /// Serve.
    Run(Box<Args>),
    /// Print [`HELP`] and exit 0.
    Help,
}

const USAGE: &str = "usage: upload_server [--addr HOST:PORT] [--admin-token TOKEN] [--state FILE] \
                     [--config FILE] [--log PATH] [--tick DURATION] [--log-interval DURATION] [--store-dir DIR] \
                     [--plan FILE] [--auto-advance] [--memory-warmup DURATION] \
                     [--etcd URL --name NAME] [--etcd-ca FILE] [--etcd-cert FILE --etcd-key FILE] \
                     [--etcd-user USER] [--replica ID] [--stale-after DURATION] \
                     [--inject-async-error-rate SHARE] [--help]";

/// `--help`: every flag, what it does and its default.
pub const HELP: &str = "\
upload_server: an HTTP upload service whose uploads take the path the rollout picks
(sync: stored, then 201; async: 202, stored in the background), with the rollout's
controller judging them in the background.

usage: upload_server [FLAGS]

  --addr HOST:PORT            where to listen (default 127.0.0.1:8080; port 0: any free port)
  --admin-token TOKEN         enables the admin routes (PUT /rollout, POST /rollout/{rollback,
                              resume,advance,pause}) with `Authorization: Bearer TOKEN`; or set
                              ASYNC_UPLOAD_ADMIN_TOKEN (keeps it out of `ps`). Without one they
                              answer 403. An empty token is refused.
  --state FILE                the rollout's state file, shared with the command line
                              (default logs/async_upload_rollout/state.json); the service
                              acknowledges what it applies in FILE.acks/
  --config FILE               a TOML or JSON rollout config (salt, kill switch, force lists, the
                              starting percent), read again at every state poll; PUT /rollout
                              writes it (whole)
  --log PATH                  the controller's JSON-lines log (default
                              logs/async_upload_rollout/metrics.jsonl)
  --tick DURATION             how often the controller judges and memory is sampled (default 10s)
  --log-interval DURATION     how often a quiet tick is logged (default 1m; acting ticks always)
  --store-dir DIR             where uploads are stored (default $TMPDIR/async_upload_rollout/uploads)
  --plan FILE                 a TOML or JSON rollout plan (default: the week-2 plan)
  --auto-advance              let the controller advance stages by itself
  --memory-warmup DURATION    how long after each run of a stage the memory baseline is taken
                              (default 1m)
  --stale-after DURATION      how long the last state read serves while the store cannot be read
                              (default 30s); after that, nothing async until it answers
  --etcd URL                  join a fleet: state and config in etcd (repeat for several
                              endpoints; needs the `etcd` feature); --state is then not used
  --name NAME                 the fleet's rollout name (default async-upload)
  --etcd-ca FILE              TLS (https:// endpoints): the CA certificate (PEM) that signed
                              etcd's certificate (default: the system's trusted roots)
  --etcd-cert FILE            this replica's client certificate (PEM), for an etcd started with
                              --client-cert-auth; with --etcd-key
  --etcd-key FILE             the private key (PEM) of --etcd-cert
  --etcd-user USER            the etcd user, for an etcd with authentication enabled; its
                              password is read from ETCD_PASSWORD (never a flag)
  --replica ID                this service's name in its acknowledgements (default: host name
                              and pid)
  --inject-async-error-rate SHARE
                              for tests and demonstrations: fail that share (0 to 1) of async
                              uploads on purpose
  -h, --help                  print this and exit

With no stored state, ASYNC_UPLOAD_ROLLOUT (or the config file's percent) picks the first
state: 0 or unset is off, 10 starts the 10% stage; with a stored state, the state decides.
Ctrl-C or SIGTERM stops it gracefully (accepted uploads are stored first, at most 10 s).
";

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Parsed, StartError> {
    let usage = |message: String| StartError::Usage(format!("{message}\n{USAGE}"));
    let mut parsed = Args {
        addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
        config: ServerConfig {
            admin_token: std::env::var(ADMIN_TOKEN_ENV_VAR).ok(),
            ..ServerConfig::default()
        },
    };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| usage(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--addr" => {
                let v = value()?;
                parsed.addr = v.parse().map_err(|e| usage(format!("--addr {v:?}: {e}")))?;
            }
            "--admin-token" => parsed.config.admin_token = Some(value()?),
            "--state" => parsed.config.state_path = value()?.into(),
            "--etcd" => {
                let url = value()?;
                fleet(&mut parsed.config).etcd.push(url);
            }
            "--name" => fleet(&mut parsed.config).name = value()?,
            "--etcd-ca" => fleet(&mut parsed.config).etcd_ca = Some(value()?.into()),
            "--etcd-cert" => fleet(&mut parsed.config).etcd_cert = Some(value()?.into()),
            "--etcd-key" => fleet(&mut parsed.config).etcd_key = Some(value()?.into()),
            "--etcd-user" => fleet(&mut parsed.config).etcd_user = Some(value()?),
            "--replica" => parsed.config.service_id = Some(value()?),
            "--stale-after" => {
                let v = value()?;
                parsed.config.stale_after = humantime::parse_duration(&v)
                    .map_err(|e| usage(format!("--stale-after {v:?}: {e}")))?;
            }
            "--inject-async-error-rate" => {
                let v = value()?;
                parsed.config.inject_async_error_rate = v
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        usage(format!(
                            "--inject-async-error-rate {v:?}: a share from 0 to 1"
                        ))
                    })?;
            }
            "--config" => parsed.config.config_path = Some(value()?.into()),
            "--log" => parsed.config.log_path = value()?.into(),
            "--tick" => {
                let v = value()?;
                parsed.config.tick = humantime::parse_duration(&v)
                    .ok()
                    .filter(|tick| !tick.is_zero())
                    .ok_or_else(|| {
                        usage(format!("--tick {v:?}: expected a duration such as 10s"))
                    })?;
            }
            "--log-interval" => {
                let v = value()?;
                parsed.config.log_interval = humantime::parse_duration(&v)
                    .map_err(|e| usage(format!("--log-interval {v:?}: {e}")))?;
            }
            "--store-dir" => parsed.config.store_dir = value()?.into(),
            "--plan" => parsed.config.plan = RolloutPlan::load(value()?)?,
            "--auto-advance" => parsed.config.auto_advance = true,
            "--memory-warmup" => {
                let v = value()?;
                parsed.config.memory_warmup = humantime::parse_duration(&v)
                    .map_err(|e| usage(format!("--memory-warmup {v:?}: {e}")))?;
            }
            "-h" | "--help" => return Ok(Parsed::Help),
            other => return Err(usage(format!("unknown flag {other:?} (see --help)"))),
        }
    }
    if let Some(fleet) = &mut parsed.config.fleet {
        if fleet.etcd.is_empty() {
            return Err(usage(
                "--name, --etcd-ca, --etcd-cert, --etcd-key and --etcd-user need --etcd URL"
                    .to_owned(),
            ));
        }
        if let Some(id) = &parsed.config.service_id {
            fleet.replica.clone_from(id);
        }
    }
    if parsed.config.fleet.is_some() {
        // The store answers from its watch: poll it often, so a fleet
        // decision is applied (and acknowledged) within a tenth of a second.
        parsed.config.state_poll = Duration::from_millis(100);
    }
    Ok(Parsed::Run(Box::new(parsed)))
}

/// The fleet part of `config`, created on the first fleet flag.
fn fleet(config: &mut ServerConfig) -> &mut FleetConfig {
    config.fleet.get_or_insert_with(|| FleetConfig {
        etcd: Vec::new(),
        etcd_ca: None,
        etcd_cert: None,
        etcd_key: None,
        etcd_user: None,
        name: "async-upload".to_owned(),
        replica: async_upload_rollout::act::default_service_id(),
    })
}

/// Parses `args` (the flags, without the program name), starts the server
/// and serves until Ctrl-C or SIGTERM.
///
/// # Errors
///
/// A [`StartError`]: nothing is left running.
pub async fn run(args: impl IntoIterator<Item = String>) -> Result<(), StartError> {
    let Args { addr, config } = match parse_args(args)? {
        Parsed::Run(args) => *args,
        Parsed::Help => {
            print!("{HELP}");
            return Ok(());
        }
    };
    let rollout = Arc::new(Rollout::from_env().map_err(|e| StartError::Usage(e.to_string()))?);
    let admin = if config.admin_token.is_some() {
        "on"
    } else {
        "off (403)"
    };
    let (log, store_dir, tick) = (
        config.log_path.display().to_string(),
        config.store_dir.display().to_string(),
        humantime::format_duration(config.tick).to_string(),
    );
    let state = AppState::new(config, rollout)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let addr = listener.local_addr().unwrap_or(addr);
    let view = state.monitor().view();
    let rollout_state = view
        .state
        .as_ref()
        .map_or_else(|| "unknown (nothing async)".to_owned(), ToString::to_string);
    eprintln!(
        "upload_server: listening on http://{addr}, {} in force, state {rollout_state}; \
         controller ticking every {tick} into {log}, uploads stored in {store_dir}, admin routes {admin}",
        view.percent
    );
    let shutdown = async {
        stop_signal().await;
        eprintln!("upload_server: shutting down: finishing requests and accepted uploads");
    };
    serve(listener, state, shutdown)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// Ctrl-C, or SIGTERM (what `kill` and container orchestrators send).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(std::env::args().skip(1)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("upload_server: {err}");
            ExitCode::FAILURE
        }
    }
}
