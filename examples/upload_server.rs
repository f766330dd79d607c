//! A real upload service: an HTTP server whose uploads take the path the
//! rollout picks, with the controller judging them in the background.
//!
//! ```text
//! cargo run --release --features prometheus --example upload_server -- --admin-token secret
//! ```
//!
//! Routes:
//! - `POST /uploads`: the body is the upload. Its id comes from the
//!   `Upload-Id` (or `X-Upload-Id`) header, or is generated; it is returned
//!   in the `Upload-Id` response header and the JSON body. The **sync** path
//!   stores the body (written, fsynced, renamed into place) and answers
//!   `201 Created`; the **async** path answers `202 Accepted` at once and
//!   stores it in a background task. Either way the outcome and the latency
//!   *from the request's start to the upload being stored* are recorded on
//!   the arm that took it. An empty body, an over-large body or an id that
//!   is not a safe file name is `400` / `413` and recorded as
//!   [`Outcome::Rejected`] (the client's fault, not judged).
//! - `GET /metrics`: the crate's Prometheus exporter, in OpenMetrics when the
//!   scraper asks for it (`Accept: application/openmetrics-text`), else the
//!   Prometheus text format 0.0.4.
//! - `GET /rollout`: the config in force, the percent, and the controller's
//!   stage, state and last evaluation, as JSON.
//! - `PUT /rollout`: `{"percent": 25}`, `{"kill_switch": true}` or both, with
//!   `Authorization: Bearer <token>`. Invalid values are `400` and change
//!   nothing; a wrong or missing token is `401`; with no token configured the
//!   route is off and answers `403` (it exists, but no credential can open it).
//!   The percent is set directly: the controller keeps its stage and may
//!   still override it (an automatic rollback sets 0%).
//!
//! Flags:
//! - `--addr <host:port>`: where to listen (default `127.0.0.1:8080`)
//! - `--admin-token <token>`: enables `PUT /rollout` (or set
//!   `ASYNC_UPLOAD_ADMIN_TOKEN`, which keeps the token out of `ps`)
//! - `--log <path>`: the controller's log (default
//!   `logs/async_upload_rollout/metrics.jsonl`)
//! - `--tick <duration>`: how often the controller judges (default `10s`)
//! - `--store-dir <dir>`: where uploads are stored (default
//!   `$TMPDIR/async_upload_rollout/uploads`)
//! - `--plan <file>`: a TOML or JSON rollout plan (default: the week-2 plan)
//! - `--auto-advance`: let the controller move to the next stage by itself
//! - `--memory-warmup <duration>`: when to take the first memory sample, the
//!   baseline of the memory-growth trigger (default `1m`; see below)
//!
//! Ctrl-C or SIGTERM stops it gracefully: no new connections, requests in
//! progress finish, and accepted (202) uploads are stored before it exits
//! (at most 10 s).
//!
//! The starting percent comes from `ASYNC_UPLOAD_ROLLOUT` (unset: 0%); the
//! controller then starts at the plan's stage with that percent, or at its
//! first stage (1% in the week-2 plan).
//!
//! Memory is sampled every tick ([`process_memory_bytes`]), and the first
//! sample is the baseline the "memory grows more than 20%" rollback trigger
//! compares with. A server's resident memory grows as it warms up (runtime
//! worker stacks, connection buffers, allocator arenas): measured at start,
//! a dozen requests already showed +12% (the trigger fires above 20%). So sampling starts after
//! `--memory-warmup`; until then the trigger has no data and cannot fire.
#![forbid(unsafe_code)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_upload_rollout::export::prometheus::{
    ControllerStatus, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE, PrometheusExporter,
};
use async_upload_rollout::{
    Arm, ControllerError, ControllerState, DEFAULT_LOG_PATH, Evaluation, JsonlSink, LogError,
    MetricsAccumulator, MonitorHandle, Outcome, Percent, PlanError, Rollout, RolloutConfig,
    RolloutController, RolloutPlan, process_memory_bytes,
};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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

/// How the server is set up; `main` fills it from the flags, tests directly.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The bearer token of `PUT /rollout`; `None` turns the route off (403).
    pub admin_token: Option<String>,
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
    /// How long after [`serve`] starts the first memory sample (the
    /// memory-growth baseline) is taken.
    pub memory_warmup: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            admin_token: None,
            log_path: DEFAULT_LOG_PATH.into(),
            tick: Duration::from_secs(10),
            log_interval: async_upload_rollout::DEFAULT_LOG_INTERVAL,
            store_dir: std::env::temp_dir()
                .join("async_upload_rollout")
                .join("uploads"),
            plan: RolloutPlan::default(),
            auto_advance: false,
            max_upload_bytes: 64 * 1024 * 1024,
            memory_warmup: Duration::from_secs(60),
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
    monitor: MonitorHandle,
    admin_token: Option<Vec<u8>>,
    store_dir: PathBuf,
    max_upload_bytes: usize,
    tick: Duration,
    memory_warmup: Duration,
    ids: IdSource,
    in_flight: InFlight,
}

impl AppState {
    /// Opens the log and the upload directory and starts the controller on
    /// `rollout` (which sets the rollout to the start stage's percent).
    ///
    /// # Errors
    ///
    /// [`StartError::StoreDir`], [`StartError::Log`] or
    /// [`StartError::Controller`]; nothing is left running.
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
        let metrics = Arc::new(MetricsAccumulator::new());
        let monitor = RolloutController::builder(Arc::clone(&rollout), Arc::clone(&metrics))
            .plan(config.plan)
            .auto_advance(config.auto_advance)
            .log_interval(config.log_interval)
            .log(JsonlSink::open(&config.log_path)?)
            .build()?
            .spawn(config.tick);
        Ok(AppState {
            inner: Arc::new(Inner {
                exporter: PrometheusExporter::new(Arc::clone(&rollout), Arc::clone(&metrics)),
                rollout,
                metrics,
                monitor,
                admin_token: config.admin_token.map(String::into_bytes),
                store_dir: config.store_dir,
                max_upload_bytes: config.max_upload_bytes,
                tick: config.tick,
                memory_warmup: config.memory_warmup,
                ids: IdSource::new(),
                in_flight: InFlight::default(),
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

    /// The background controller (lock it for status or operator actions).
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

/// The server's routes over `state`.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/uploads", post(upload))
        .route("/metrics", get(metrics))
        .route("/rollout", get(rollout_status).put(change_rollout))
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
    let served = axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    sampler.abort();
    if !state.drain(DRAIN_TIMEOUT).await {
        eprintln!(
            "upload_server: {} accepted uploads still unstored after {}",
            state.inner.in_flight.count(),
            humantime::format_duration(DRAIN_TIMEOUT)
        );
    }
    served
}

/// Feeds the memory trigger: one RSS sample per controller tick, from the
/// end of the warm-up on.
async fn sample_memory(state: AppState) {
    let start = tokio::time::Instant::now() + state.inner.memory_warmup;
    let mut every = tokio::time::interval_at(start, state.inner.tick);
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

async fn upload(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let inner = &state.inner;
    let id = match upload_id(&headers) {
        Some(id) => id.to_owned(),
        None => inner.ids.next(),
    };
    let arm = Arm::from_use_async(inner.rollout.should_use_async(&id));
    let reject = |status: StatusCode, bytes: usize, message: String| {
        inner
            .metrics
            .record(arm, Outcome::Rejected, started.elapsed());
        reply(status, &id, arm, "rejected", bytes, Some(message))
    };

    if let Err(problem) = check_id(&id) {
        return reject(StatusCode::BAD_REQUEST, 0, problem);
    }
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
        Arm::Sync => match store(&inner.store_dir, &id, &body).await {
            Ok(()) => {
                inner
                    .metrics
                    .record(Arm::Sync, Outcome::Success, started.elapsed());
                reply(StatusCode::CREATED, &id, arm, "stored", bytes, None)
            }
            Err(err) => {
                inner
                    .metrics
                    .record(Arm::Sync, Outcome::Error, started.elapsed());
                let message = format!("cannot store the upload: {err}");
                reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &id,
                    arm,
                    "failed",
                    bytes,
                    Some(message),
                )
            }
        },
        Arm::Async => {
            let guard = InFlightGuard::start(&state);
            let task_state = state.clone();
            let task_id = id.clone();
            tokio::spawn(async move {
                let inner = &task_state.inner;
                let outcome = match store(&inner.store_dir, &task_id, &body).await {
                    Ok(()) => Outcome::Success,
                    Err(err) => {
                        eprintln!("upload_server: async upload {task_id} failed: {err}");
                        Outcome::Error
                    }
                };
                inner.metrics.record(Arm::Async, outcome, started.elapsed());
                drop(guard);
            });
            reply(StatusCode::ACCEPTED, &id, arm, "accepted", bytes, None)
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
    // `check_id` (or the generator) made it a header-safe token.
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert("upload-id", value);
    }
    response
}

/// The id from the first upload-id header present, if it is text.
fn upload_id(headers: &HeaderMap) -> Option<&str> {
    UPLOAD_ID_HEADERS
        .iter()
        .find_map(|name| headers.get(*name))
        .map(|value| value.to_str().unwrap_or(""))
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
/// starting with `.`, 1 to [`MAX_ID_LEN`] bytes.
fn check_id(id: &str) -> Result<(), String> {
    let safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    if id.is_empty() || id.len() > MAX_ID_LEN {
        Err(format!("an upload id has 1 to {MAX_ID_LEN} characters"))
    } else if id.starts_with('.') || !id.bytes().all(safe) {
        Err("an upload id uses only A-Z a-z 0-9 . _ - and does not start with '.'".to_owned())
    } else {
        Ok(())
    }
}

/// Stores `body` as `dir/id` durably: written to a temporary name, fsynced,
/// renamed into place, and the directory fsynced, so a stored upload is
/// whole and survives a crash. A later upload with the same id replaces it.
async fn store(dir: &Path, id: &str, body: &Bytes) -> io::Result<()> {
    use tokio::io::AsyncWriteExt;

    static TEMP: AtomicU64 = AtomicU64::new(0);
    let temp = dir.join(format!(
        ".{id}.{}.part",
        TEMP.fetch_add(1, Ordering::Relaxed)
    ));
    let written = async {
        let mut file = tokio::fs::File::create(&temp).await?;
        file.write_all(body).await?;
        file.sync_all().await?;
        tokio::fs::rename(&temp, dir.join(id)).await?;
        tokio::fs::File::open(dir).await?.sync_all().await
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    written
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
    let status = ControllerStatus::of(&inner.monitor.lock());
    inner.exporter.set_status(status);
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

/// The body of `GET /rollout` (and of a successful `PUT /rollout`).
#[derive(Debug, Serialize, Deserialize)]
pub struct RolloutStatus {
    /// The config in force.
    pub config: RolloutConfig,
    /// Its percent (also in `config`), as a number.
    pub percent: Percent,
    /// What the controller is doing.
    pub controller: ControllerView,
}

/// The controller's part of [`RolloutStatus`].
#[derive(Debug, Serialize, Deserialize)]
pub struct ControllerView {
    /// The stage index in the plan.
    pub stage: usize,
    /// The stage's percent (the percent in force differs after a rollback or
    /// a `PUT /rollout`).
    pub stage_percent: Percent,
    /// The plan's stage percents.
    pub stages: Vec<Percent>,
    /// `running`, `paused`, `awaiting_review`, `rolled_back` or `complete`,
    /// with a `reason` for the middle three.
    #[serde(flatten)]
    pub state: ControllerState,
    /// The latest evaluation; `null` before the first tick.
    pub last_evaluation: Option<Evaluation>,
}

impl RolloutStatus {
    fn of(state: &AppState) -> RolloutStatus {
        let controller = state.inner.monitor.lock();
        let stages: Vec<Percent> = controller.plan().stages.iter().map(|s| s.percent).collect();
        let config = RolloutConfig::clone(&state.inner.rollout.config());
        RolloutStatus {
            percent: config.percent,
            config,
            controller: ControllerView {
                stage: controller.stage(),
                stage_percent: stages[controller.stage()],
                stages,
                state: controller.state().clone(),
                last_evaluation: controller.last_evaluation().cloned(),
            },
        }
    }
}

async fn rollout_status(State(state): State<AppState>) -> Response {
    axum::Json(RolloutStatus::of(&state)).into_response()
}

/// The body of `PUT /rollout`: at least one field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutChange {
    percent: Option<Percent>,
    kill_switch: Option<bool>,
}

async fn change_rollout(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(expected) = state.inner.admin_token.as_deref() else {
        return error(
            StatusCode::FORBIDDEN,
            format!(
                "the admin route is off: start the server with --admin-token or {ADMIN_TOKEN_ENV_VAR}"
            ),
        );
    };
    let given = bearer_token(&headers).unwrap_or_default();
    if !tokens_match(given, expected) {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "a valid `Authorization: Bearer <token>` header is required".to_owned(),
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let change: RolloutChange = match serde_json::from_slice(&body) {
        Ok(change) => change,
        Err(err) => return error(StatusCode::BAD_REQUEST, format!("invalid change: {err}")),
    };
    if change.percent.is_none() && change.kill_switch.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid change: give `percent`, `kill_switch` or both".to_owned(),
        );
    }
    // One atomic store: a decision sees both fields changed or neither.
    let before = state.inner.rollout.update(|config| {
        if let Some(percent) = change.percent {
            config.percent = percent;
        }
        if let Some(on) = change.kill_switch {
            config.kill_switch = on;
        }
    });
    let after = state.inner.rollout.config();
    eprintln!(
        "upload_server: admin set percent {} -> {}, kill switch {} -> {}",
        before.percent, after.percent, before.kill_switch, after.kill_switch
    );
    axum::Json(RolloutStatus::of(&state)).into_response()
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

const USAGE: &str = "usage: upload_server [--addr HOST:PORT] [--admin-token TOKEN] [--log PATH] \
                     [--tick DURATION] [--log-interval DURATION] [--store-dir DIR] [--plan FILE] [--auto-advance] \
                     [--memory-warmup DURATION]";

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, StartError> {
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
            "-h" | "--help" => return Err(StartError::Usage(USAGE.to_owned())),
            other => return Err(usage(format!("unknown flag {other:?}"))),
        }
    }
    Ok(parsed)
}

async fn start() -> Result<(), StartError> {
    let Args { addr, config } = parse_args(std::env::args().skip(1))?;
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
    eprintln!(
        "upload_server: listening on http://{addr}, rollout at {}, controller ticking every {tick} \
         into {log}, uploads stored in {store_dir}, admin route {admin}",
        state.rollout().percent()
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
    match start().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("upload_server: {err}");
            ExitCode::FAILURE
        }
    }
}
