//! `upload_server`: a real upload service built on `async-upload-rollout`:
//! an HTTP server whose uploads take the path the rollout picks, with the
//! controller judging them in the background.
//!
//! The binary is `src/main.rs`; this library holds its parts, one concern a
//! module, so that the tests can drive the application in process as well
//! as the binary as a process:
//!
//! | module | what it owns |
//! |---|---|
//! | [`flags`] | the command line: every flag, its default, `--help` |
//! | [`config`] | [`ServerConfig`]: every setting, the defaults |
//! | [`state`] | [`AppState`]: what the handlers share, built from the config |
//! | `stores` | the state store and the shared config's store: the files, or etcd |
//! | `uploads` | `POST /uploads`: the sync and async paths, their outcomes |
//! | `upload_id` | where an upload's id comes from, the rule it follows, generated ids |
//! | [`storage`] | durable upload files, and the sweep of a crash's leftovers |
//! | `in_flight` | accepted uploads not yet stored (the drain waits for them) |
//! | `inject` | async uploads failed on purpose (`--inject-async-error-rate`) |
//! | `metrics` | `GET /metrics` |
//! | [`status`] | `GET /rollout` ([`RolloutBody`]) and `GET /rollout/decide/{id}` |
//! | [`admin`] | `PUT /rollout` and the operator routes |
//! | [`auth`] | the admin routes' bearer token |
//! | `changes` | the lines on stderr when the state, config or kill switch change |
//! | [`app`](mod@app) | the routes: each path to its handler |
//! | [`serve`](mod@serve) | serving with memory sampling and a graceful, draining stop |
//! | [`error`] | [`StartError`] |
//! | `json_error` | the JSON error answer every route gives |
//!
//! ```text
//! cargo run --release -p upload-server -- --admin-token secret
//! ```
//!
//! Routes:
//! - `POST /uploads`: the body is the upload. Its id comes from the
//!   `Upload-Id` (or `X-Upload-Id`) header, or is generated; it is returned
//!   in the `Upload-Id` response header and the JSON body. The **sync** path
//!   stores the body (written, fsynced, renamed into place) and answers
//!   `201 Created`; the **async** path answers `202 Accepted` at once and
//!   stores it in a background task. The route is behind the crate's
//!   [`RolloutLayer`](async_upload_rollout::tower::RolloutLayer): it decides the path from the id,
//!   and records the outcome and the latency on the arm that took it, for
//!   the sync path when the response has been sent (201 `Success`, 500
//!   `Error`), for the async path when the background store ends (the
//!   handler takes the outcome over with [`LayerHandle::defer`](async_upload_rollout::tower::LayerHandle::defer)); so the
//!   latency runs *from the request's start to the upload being stored*
//!   either way. An empty body, an over-large body or an id that is not a
//!   safe file name is `400` / `413` and recorded as [`Outcome::Rejected`](async_upload_rollout::Outcome::Rejected)
//!   (the client's fault, not judged); an id's error quotes it (lossily,
//!   when it is not UTF-8) and says what is wrong. A store that fails or is
//!   cut short leaves no temporary file behind (one left by a crash is
//!   removed at the next start).
//! - `GET /metrics`: the crate's Prometheus exporter, in OpenMetrics when the
//!   scraper asks for it (`Accept: application/openmetrics-text`), else the
//!   Prometheus text format 0.0.4.
//! - `GET /rollout`: `percent` (in force: 0 whenever nothing is async: the
//!   kill switch, a rollback, off, a state unknown or stale), `in_force`
//!   (why, in words), `state` (the [`RolloutState`](async_upload_rollout::RolloutState) as stored: epoch, stage,
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
//! Memory is sampled every tick ([`process_memory_bytes`](async_upload_rollout::process_memory_bytes)). A server's
//! resident memory grows as it warms up (runtime worker stacks, connection
//! buffers, allocator arenas): measured at start, a dozen requests already
//! showed +12% (the trigger fires above 20%). So the controller takes each
//! run's memory baseline `--memory-warmup` after the run starts; until then
//! the memory trigger has no data and cannot fire.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod auth;
mod changes;
pub mod config;
pub mod error;
pub mod flags;
mod in_flight;
mod inject;
mod json_error;
mod metrics;
pub mod serve;
pub mod state;
pub mod status;
pub mod storage;
mod stores;
mod upload_id;
mod uploads;

pub use admin::MAX_ADMIN_BODY;
pub use app::app;
pub use auth::ADMIN_TOKEN_ENV_VAR;
pub use config::{FleetConfig, ServerConfig};
pub use error::StartError;
pub use flags::HELP;
pub use serve::{DRAIN_TIMEOUT, serve};
pub use state::AppState;
pub use status::RolloutBody;
pub use storage::{store, sweep_partial_uploads};
pub use upload_id::{MAX_ID_LEN, UPLOAD_ID_HEADERS};
