//! The upload server's application, served in this process on loopback
//! and driven over real HTTP.
//!
//! The crate's [`AppState`] is started on `127.0.0.1:0` with a temporary
//! log and upload directory and a 50 ms controller tick, and spoken to by
//! the workspace's minimal HTTP/1.1 client (one connection per request,
//! `Connection: close`). Every test stops its server and is bounded by
//! [`DEADLINE`]. The binary as a process: `upload_server_process.rs`.

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_upload_rollout::export::prometheus::PROMETHEUS_TEXT_CONTENT_TYPE;
use async_upload_rollout::{
    Arm, Percent, Rollout, RolloutConfig, RolloutPlan, RolloutStatus,
    act::log::{LogEvent, LogRecord, read_log},
};
use axum::body::Bytes;
use support::http::{self, Reply};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use upload_server::{AppState, RolloutBody, ServerConfig};

/// No test here runs longer than this.
const DEADLINE: Duration = Duration::from_secs(30);
const TOKEN: &str = "test-token-7f3a";
const TICK: Duration = Duration::from_millis(50);
/// Small, so an over-large body fits in the loopback socket buffers and the
/// server's 413 is not lost to a reset.
const MAX_UPLOAD: usize = 16 * 1024;

/// A server on loopback and what the test needs to look at it.
struct Running {
    addr: SocketAddr,
    state: AppState,
    log_path: std::path::PathBuf,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Starts the example's server at `percent` (its starting request:
    /// the state file is new), with `admin_token`.
    async fn start(percent: u32, admin_token: Option<&str>) -> Running {
        let dir = tempfile::tempdir().unwrap();
        Running::start_in(dir, percent, admin_token, None).await
    }

    /// Starts the example's server in `dir`, whose `state.json` may hold a
    /// state already, with an optional config file.
    async fn start_in(
        dir: tempfile::TempDir,
        percent: u32,
        admin_token: Option<&str>,
        config_path: Option<std::path::PathBuf>,
    ) -> Running {
        let log_path = dir.path().join("logs").join("metrics.jsonl");
        let mut plan = RolloutPlan::default();
        // Memory is sampled from the first tick; a test process's RSS grows
        // by more than the plan's 20% as it warms up, which would roll the
        // rollout back under the test's feet. The check still runs (and its
        // observed growth proves sampling), it just cannot fire.
        plan.triggers.max_memory_growth = 100.0;
        let config = ServerConfig {
            admin_token: admin_token.map(str::to_owned),
            state_path: dir.path().join("state.json"),
            config_path,
            state_poll: Duration::from_millis(20),
            log_path: log_path.clone(),
            tick: TICK,
            log_interval: Duration::ZERO, // every tick: the test reads them
            store_dir: dir.path().join("uploads"),
            plan,
            auto_advance: false,
            max_upload_bytes: MAX_UPLOAD,
            memory_warmup: Duration::ZERO,
            ..ServerConfig::default()
        };
        let rollout = Arc::new(Rollout::new(RolloutConfig::with_percent(whole(percent))));
        let state = AppState::new(config, rollout).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(upload_server::serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Running {
            addr,
            state,
            log_path,
            stop: Some(stop),
            served,
            _dir: dir,
        }
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        request(self.addr, method, path, headers, body).await
    }

    /// `POST /uploads` with `id` (if any) and `body`.
    async fn upload(&self, id: Option<&str>, body: &[u8]) -> Reply {
        let headers: Vec<(&str, &str)> = id.map(|id| ("Upload-Id", id)).into_iter().collect();
        self.request("POST", "/uploads", &headers, body).await
    }

    /// An admin request: `method path` with `body`, and `Authorization:
    /// Bearer <token>` when there is a token.
    async fn admin(&self, token: Option<&str>, method: &str, path: &str, body: &[u8]) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| ("Authorization", a))
            .into_iter()
            .collect();
        self.request(method, path, &headers, body).await
    }

    async fn put_rollout(&self, token: Option<&str>, body: &str) -> Reply {
        self.admin(token, "PUT", "/rollout", body.as_bytes()).await
    }

    async fn rollout_status(&self) -> RolloutBody {
        let reply = self.request("GET", "/rollout", &[], b"").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        serde_json::from_str(&reply.body).unwrap()
    }

    /// `POST /rollout/<operation>` with `{"reason": reason}`.
    async fn operate(&self, token: Option<&str>, operation: &str, reason: &str) -> Reply {
        let body = serde_json::json!({ "reason": reason }).to_string();
        let path = format!("/rollout/{operation}");
        self.admin(token, "POST", &path, body.as_bytes()).await
    }

    async fn metrics_text(&self) -> String {
        let reply = self.request("GET", "/metrics", &[], b"").await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("content-type"),
            Some(PROMETHEUS_TEXT_CONTENT_TYPE)
        );
        reply.body
    }

    /// Stops accepting, waits for the server (and its drain) to finish.
    /// Returns the state and the directory (still there) it wrote in.
    async fn stop(mut self) -> (AppState, tempfile::TempDir) {
        let _ = self.stop.take().unwrap().send(());
        self.served.await.unwrap().unwrap();
        (self.state, self._dir)
    }
}

/// One request on a new connection (the workspace's blocking client, off
/// the runtime's worker threads).
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let (method, path, body) = (method.to_owned(), path.to_owned(), body.to_vec());
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        http::request(addr, &method, &path, &headers, &body)
    })
    .await
    .unwrap()
}

fn whole(percent: u32) -> Percent {
    Percent::from_whole(percent).unwrap()
}

/// The value of the sample line `series` in a text exposition.
fn sample(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn uploads_total(text: &str, arm: &str, outcome: &str) -> u64 {
    let series =
        format!("async_upload_rollout_uploads_total{{arm=\"{arm}\",outcome=\"{outcome}\"}}");
    sample(text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, test)
        .await
        .expect("the test ran past its deadline")
}

/// `POST /uploads` of `id` with the body `upload <id>`.
async fn upload_to(addr: SocketAddr, id: &str) -> Reply {
    let body = format!("upload {id}");
    request(
        addr,
        "POST",
        "/uploads",
        &[("Upload-Id", id)],
        body.as_bytes(),
    )
    .await
}

/// Uploads each id concurrently (8 connections at a time) with the body
/// `upload <id>`; returns each id's status code, in `ids`' order.
async fn upload_all(server: &Running, ids: &[String]) -> Vec<u16> {
    let addr = server.addr;
    let mut statuses = vec![0; ids.len()];
    for (chunk_index, chunk) in ids.chunks(8).enumerate() {
        let tasks: Vec<_> = chunk
            .iter()
            .cloned()
            .map(|id| {
                tokio::spawn(async move {
                    let reply = upload_to(addr, &id).await;
                    assert_eq!(reply.header("upload-id"), Some(id.as_str()));
                    assert_eq!(reply.json()["upload_id"], id.as_str());
                    reply.status
                })
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            statuses[chunk_index * 8 + i] = task.await.unwrap();
        }
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_take_the_path_should_use_async_picks_and_are_all_recorded() {
    bounded(async {
        let server = Running::start(10, Some(TOKEN)).await;
        let mut expected_async = 0u64;
        let mut expected_sync = 0u64;
        let mut all_ids = Vec::new();

        // 200 uploads at 10%, then 200 at 50% after an operator's advance.
        // An independent `Rollout` at the same percent (and the default
        // salt) says which path each id must take.
        let mut phase_counts = (0, 0);
        for (phase, percent) in [(0, 10), (1, 50)] {
            if phase == 1 {
                let reply = server
                    .operate(Some(TOKEN), "advance", "10% validated")
                    .await;
                assert_eq!(reply.status, 200, "{}", reply.body);
            }
            let reference = Rollout::new(RolloutConfig::with_percent(whole(percent)));
            let ids: Vec<String> = (0..200).map(|i| format!("test-{phase}-{i:04}")).collect();
            let statuses = upload_all(&server, &ids).await;
            let mut on_async = 0;
            for (id, status) in ids.iter().zip(&statuses) {
                let want = if reference.should_use_async(id) {
                    202
                } else {
                    201
                };
                assert_eq!(*status, want, "upload {id} at {percent}%");
                on_async += u64::from(*status == 202);
            }
            assert!(
                on_async > 0 && on_async < 200,
                "{on_async} of 200 async at {percent}%"
            );
            expected_async += on_async;
            expected_sync += 200 - on_async;
            phase_counts = (on_async, 200 - on_async);
            all_ids.extend(ids);
        }

        // Every accepted upload finishes in the background and is stored whole.
        assert!(server.state.drain(Duration::from_secs(10)).await);
        for id in &all_ids {
            let stored = std::fs::read(server.state.store_dir().join(id)).unwrap();
            assert_eq!(stored, format!("upload {id}").as_bytes(), "{id}");
        }

        // The metrics count each upload once, on the path it took.
        let text = server.metrics_text().await;
        assert_eq!(uploads_total(&text, "async", "success"), expected_async);
        assert_eq!(uploads_total(&text, "sync", "success"), expected_sync);
        for arm in ["async", "sync"] {
            for outcome in ["error", "critical", "rejected"] {
                assert_eq!(uploads_total(&text, arm, outcome), 0, "{arm} {outcome}");
            }
        }
        assert_eq!(
            sample(
                &text,
                "async_upload_rollout_upload_latency_seconds_count{arm=\"async\"}"
            ),
            Some(expected_async)
        );
        assert!(
            text.contains("async_upload_rollout_percent 50.0\n"),
            "{text}"
        );

        // The controller ticks in the background and judges this traffic:
        // wait for a tick that has seen all of the 50% stage's (a stage is
        // judged on its own data).
        let log = loop {
            tokio::time::sleep(TICK).await;
            let log = read_log::<LogRecord>(&server.log_path).unwrap();
            assert!(log.torn_tail.is_none());
            let seen_all = log
                .records
                .iter()
                .rev()
                .find(|r| r.event == LogEvent::Tick)
                .is_some_and(|r| {
                    let totals = r.snapshot.as_ref().unwrap();
                    r.stage == Some(2)
                        && totals.uploads(Arm::Async) == phase_counts.0
                        && totals.uploads(Arm::Sync) == phase_counts.1
                });
            if seen_all {
                break log;
            }
        };
        // A first start: a `state` line (the first state is being written),
        // then the `start` action carrying it as stored.
        assert_eq!(log.records[0].event, LogEvent::State);
        let first = &log.records[1];
        assert_eq!(first.event, LogEvent::Action);
        assert_eq!(first.percent, Some(whole(10)), "started at the 10% stage");
        assert_eq!(first.state.as_ref().unwrap().epoch, 1);
        let ticks: Vec<&LogRecord> = log
            .records
            .iter()
            .filter(|r| r.event == LogEvent::Tick)
            .collect();
        assert!(ticks.len() >= 2, "{} ticks", ticks.len());
        let last = ticks.last().unwrap();
        assert_eq!(
            last.percent,
            Some(whole(50)),
            "the operator's advance is in force"
        );
        assert_eq!(last.state.as_ref().unwrap().epoch, 2);
        let memory = last
            .evaluation
            .as_ref()
            .unwrap()
            .check("rollback.memory_growth")
            .unwrap();
        assert!(
            memory.observed.is_some(),
            "memory was sampled: {}",
            memory.detail
        );

        // GET /rollout reflects the change and the controller's view.
        let status = server.rollout_status().await;
        assert_eq!(status.percent, whole(50));
        assert_eq!(status.config.percent, whole(50));
        assert!(!status.config.kill_switch && !status.halted);
        let state = status.state.expect("a state");
        assert_eq!(state.stage, Some(2));
        assert_eq!(state.status, RolloutStatus::Running);
        assert_eq!(state.reason, "10% validated");
        assert_eq!(status.state_error, None);
        let evaluation = status.last_evaluation.expect("a tick has run");
        assert_eq!(evaluation.stage, 2);

        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_changes_need_the_right_token_and_bad_ones_change_nothing() {
    bounded(async {
        let server = Running::start(10, Some(TOKEN)).await;
        let unchanged = |status: &RolloutBody| {
            status.percent == whole(10)
                && !status.config.kill_switch
                && status.state.as_ref().is_some_and(|s| s.epoch == 1)
        };

        let wrong_token = TOKEN.replace('7', "8");
        let too_long = format!("{TOKEN}x");
        for token in [
            None,
            Some(""),
            Some(wrong_token.as_str()),
            Some(&TOKEN[..TOKEN.len() - 1]),
            Some(too_long.as_str()),
        ] {
            let reply = server.put_rollout(token, r#"{"kill_switch": true}"#).await;
            assert_eq!(reply.status, 401, "token {token:?}");
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
            let reply = server.operate(token, "rollback", "intruder").await;
            assert_eq!(reply.status, 401, "token {token:?}");
            assert!(unchanged(&server.rollout_status().await), "token {token:?}");
        }
        // The scheme is case-insensitive; anything else is not a bearer token.
        let basic = server
            .request(
                "PUT",
                "/rollout",
                &[("Authorization", &format!("Basic {TOKEN}"))],
                br#"{"kill_switch": true}"#,
            )
            .await;
        assert_eq!(basic.status, 401);

        // The percent is the controller's: PUT never sets it.
        for body in [
            r#"{"percent": 100}"#,
            r#"{"percent": 50, "kill_switch": true}"#,
        ] {
            let reply = server.put_rollout(Some(TOKEN), body).await;
            assert_eq!(reply.status, 400, "{body}: {}", reply.body);
            let message = reply.json()["error"].as_str().unwrap().to_owned();
            assert!(message.contains("/rollout/advance"), "{message}");
            assert!(unchanged(&server.rollout_status().await), "{body}");
        }

        for body in [
            r#"{"kill_switch": "yes"}"#,
            r#"{"force_sync": "vip"}"#,
            r#"{"percnt": 50}"#,
            r#"{}"#,
            "not json",
            "",
        ] {
            let reply = server.put_rollout(Some(TOKEN), body).await;
            assert_eq!(reply.status, 400, "{body}: {}", reply.body);
            let message = reply.json()["error"].as_str().unwrap().to_owned();
            assert!(message.starts_with("invalid change"), "{message}");
            assert!(unchanged(&server.rollout_status().await), "{body}");
        }

        // Operator requests need a reason.
        for body in [r#"{}"#, r#"{"reason": "  "}"#, r#"{"reason": 5}"#, "nope"] {
            let reply = server
                .request(
                    "POST",
                    "/rollout/rollback",
                    &[("Authorization", &format!("Bearer {TOKEN}"))],
                    body.as_bytes(),
                )
                .await;
            assert_eq!(reply.status, 400, "{body}: {}", reply.body);
            assert!(unchanged(&server.rollout_status().await), "{body}");
        }
        assert_eq!(
            server.operate(Some(TOKEN), "explode", "x").await.status,
            404
        );

        // The right token applies the change, scheme in any case.
        let reply = server
            .request(
                "PUT",
                "/rollout",
                &[("Authorization", &format!("bearer {TOKEN}"))],
                br#"{"force_async": ["load-test-1"]}"#,
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let applied: RolloutBody = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(applied.config.force_async, ["load-test-1"]);
        assert_eq!(applied.percent, whole(10), "the percent is untouched");
        assert_eq!(server.upload(Some("load-test-1"), b"x").await.status, 202);

        // The kill switch sends everybody to the sync path: the percent in
        // force is 0 (the state's stage is kept, and says 10%).
        let reply = server
            .put_rollout(Some(TOKEN), r#"{"kill_switch": true}"#)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(
            reply.json()["config_written_to"],
            "this process only (no --config file and no fleet)"
        );
        let status = server.rollout_status().await;
        assert!(status.config.kill_switch && status.kill_switch);
        assert_eq!(status.percent, Percent::ZERO);
        assert!(
            status.in_force.contains("kill switch"),
            "{}",
            status.in_force
        );
        assert_eq!(status.state.as_ref().unwrap().stage, Some(1));
        let mut ids: Vec<String> = (0..40).map(|i| format!("killed-{i}")).collect();
        ids.push("load-test-1".into());
        assert!(upload_all(&server, &ids).await.iter().all(|&s| s == 201));

        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_routes_are_forbidden_when_no_token_is_configured() {
    bounded(async {
        let server = Running::start(10, None).await;
        for token in [None, Some(TOKEN), Some("")] {
            let reply = server.put_rollout(token, r#"{"kill_switch": true}"#).await;
            assert_eq!(reply.status, 403, "token {token:?}");
            for operation in ["rollback", "resume", "advance", "pause"] {
                let reply = server.operate(token, operation, "x").await;
                assert_eq!(reply.status, 403, "{operation} with token {token:?}");
            }
        }
        let status = server.rollout_status().await;
        assert_eq!(status.percent, whole(10));
        assert_eq!(status.state.unwrap().epoch, 1);
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_and_unsafe_uploads_are_rejected_and_counted_as_rejected() {
    bounded(async {
        let server = Running::start(10, Some(TOKEN)).await;
        let reference = Rollout::new(RolloutConfig::with_percent(whole(10)));
        let cases: [(Option<&str>, &[u8], u16); 5] = [
            (Some("empty-1"), b"", 400),
            (None, b"", 400),
            (Some("../escape"), b"data", 400),
            (Some(".hidden"), b"data", 400),
            (Some("too-big"), &[b'x'; MAX_UPLOAD + 1], 413),
        ];
        let mut rejected = [0u64; 2];
        for (id, body, want) in cases {
            let reply = server.upload(id, body).await;
            assert_eq!(reply.status, want, "{id:?}: {}", reply.body);
            let json = reply.json();
            assert_eq!(json["status"], "rejected");
            let arm = json["arm"].as_str().unwrap();
            if let Some(id) = id {
                let expected = if reference.should_use_async(id) {
                    "async"
                } else {
                    "sync"
                };
                assert_eq!(arm, expected, "{id}");
            }
            rejected[usize::from(arm == "sync")] += 1;
        }
        let text = server.metrics_text().await;
        assert_eq!(uploads_total(&text, "async", "rejected"), rejected[0]);
        assert_eq!(uploads_total(&text, "sync", "rejected"), rejected[1]);
        assert_eq!(
            uploads_total(&text, "async", "success") + uploads_total(&text, "sync", "success"),
            0
        );
        // Nothing escaped the upload directory or was left half-written.
        let stored: Vec<_> = std::fs::read_dir(server.state.store_dir())
            .unwrap()
            .collect();
        assert!(stored.is_empty(), "{stored:?}");
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_without_an_id_get_a_unique_one_that_decides_their_path() {
    bounded(async {
        let server = Running::start(50, Some(TOKEN)).await;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let reply = server.upload(None, b"anonymous").await;
            let id = reply
                .header("upload-id")
                .expect("an id is returned")
                .to_owned();
            assert_eq!(reply.json()["upload_id"], id.as_str());
            let want = if server.state.rollout().should_use_async(&id) {
                202
            } else {
                201
            };
            assert_eq!(reply.status, want, "{id}");
            assert!(seen.insert(id), "ids are unique");
        }
        // X-Upload-Id is read too.
        let reply = server
            .request(
                "POST",
                "/uploads",
                &[("X-Upload-Id", "legacy-client-1")],
                b"x",
            )
            .await;
        assert_eq!(reply.header("upload-id"), Some("legacy-client-1"));
        // The generated ids reached the layer: it saw no request without one.
        assert_eq!(server.state.rollout_layer().counts().no_id, 0);
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_accepted_uploads_to_be_stored() {
    bounded(async {
        let server = Running::start(100, Some(TOKEN)).await;
        let ids: Vec<String> = (0..64).map(|i| format!("late-{i}")).collect();
        assert!(upload_all(&server, &ids).await.iter().all(|&s| s == 202));
        let store_dir = server.state.store_dir().to_owned();
        let (state, _dir) = server.stop().await;
        for id in &ids {
            assert!(
                store_dir.join(id).is_file(),
                "{id} was accepted but not stored"
            );
        }
        let snapshot = state.metrics().snapshot();
        assert_eq!(snapshot.uploads(Arm::Async), 64);
        assert_eq!(snapshot.judged(Arm::Async), 64);
    })
    .await;
}

/// Load without loss: 32 concurrent clients, 1,600 uploads on loopback.
/// Every 201/202 is stored once (whole), counted once in the metrics, and
/// once in the controller's logged run totals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_clients_every_upload_is_stored_and_counted_exactly_once() {
    bounded(async {
        let server = Running::start(50, Some(TOKEN)).await;
        let clients = 32;
        let per_client = 50;
        let addr = server.addr;
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                tokio::spawn(async move {
                    let mut statuses = Vec::with_capacity(per_client);
                    for i in 0..per_client {
                        let id = format!("load-{c:02}-{i:03}");
                        let reply = upload_to(addr, &id).await;
                        statuses.push((id, reply.status));
                    }
                    statuses
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        assert_eq!(all.len(), clients * per_client);
        let accepted = all.iter().filter(|(_, s)| *s == 202).count() as u64;
        let stored = all.iter().filter(|(_, s)| *s == 201).count() as u64;
        assert_eq!(accepted + stored, all.len() as u64, "only 201 and 202");
        assert!(accepted > 0 && stored > 0);

        // Every accepted upload is stored, whole, once.
        assert!(server.state.drain(Duration::from_secs(20)).await);
        for (id, _) in &all {
            let bytes = std::fs::read(server.state.store_dir().join(id)).unwrap();
            assert_eq!(bytes, format!("upload {id}").as_bytes());
        }
        let files = std::fs::read_dir(server.state.store_dir()).unwrap().count();
        assert_eq!(files, all.len(), "no stray or temporary files");

        // Counted once in the metrics...
        let text = server.metrics_text().await;
        assert_eq!(uploads_total(&text, "async", "success"), accepted);
        assert_eq!(uploads_total(&text, "sync", "success"), stored);
        // ...by the route's layer: every async upload's outcome deferred to
        // its background store, none cancelled, every upload with an id.
        let counts = server.state.rollout_layer().counts();
        assert_eq!(counts.deferred(Arm::Async), accepted);
        assert_eq!(counts.deferred(Arm::Sync), 0);
        assert_eq!(counts.abandoned(Arm::Async), 0);
        assert_eq!(
            counts.cancelled(Arm::Async) + counts.cancelled(Arm::Sync),
            0
        );
        assert_eq!(counts.no_id, 0);
        // ...and in the controller's run totals in the log.
        loop {
            tokio::time::sleep(TICK).await;
            let log = read_log::<LogRecord>(&server.log_path).unwrap();
            let seen = log
                .records
                .iter()
                .rev()
                .find(|r| r.event == LogEvent::Tick)
                .and_then(|r| r.snapshot.as_ref())
                .map(|t| (t.uploads(Arm::Async), t.uploads(Arm::Sync)));
            if seen == Some((accepted, stored)) {
                break;
            }
            assert!(
                seen.is_none_or(|(a, s)| a <= accepted && s <= stored),
                "counted more than uploaded: {seen:?} vs {accepted}/{stored}"
            );
        }
        server.stop().await;
    })
    .await;
}

/// One request written as raw bytes (a header value that is not UTF-8):
/// `head` is the request line and headers.
async fn raw_request(addr: SocketAddr, head: &[u8], body: &[u8]) -> Reply {
    let (head, body) = (head.to_vec(), body.to_vec());
    tokio::task::spawn_blocking(move || http::exchange(addr, &head, &body, http::TIMEOUT))
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_id_errors_quote_the_id_and_say_what_is_wrong() {
    bounded(async {
        let server = Running::start(10, Some(TOKEN)).await;
        let long = "a".repeat(200);
        let cases: [(&[u8], &str, &str); 5] = [
            (
                b"caf\xe9-1",
                "caf\u{fffd}-1",
                "is not UTF-8 (invalid byte 0xe9 at byte 3)",
            ),
            (
                long.as_bytes(),
                &long,
                "is too long: 200 bytes, at most 128",
            ),
            (b"", "", "the upload id is empty"),
            (b"a/b", "a/b", "has '/' at byte 1"),
            (b".hidden", ".hidden", "starts with '.'"),
        ];
        for (raw, shown, what) in cases {
            let mut head = b"POST /uploads HTTP/1.1\r\nUpload-Id: ".to_vec();
            head.extend_from_slice(raw);
            head.extend_from_slice(b"\r\n");
            let reply = raw_request(server.addr, &head, b"data").await;
            assert_eq!(reply.status, 400, "{shown:?}: {}", reply.body);
            let json = reply.json();
            assert_eq!(json["upload_id"], shown, "the id, lossily");
            let error = json["error"].as_str().unwrap();
            assert!(error.contains(what), "{shown:?}: {error}");
            if !raw.is_empty() {
                // Quoted (cut after 64 characters).
                let quoted: String = shown.chars().take(64).collect();
                assert!(error.contains(&format!("\"{quoted}")), "{error}");
            }
            assert_eq!(reply.header("upload-id"), None, "not echoed as a header");
        }
        let text = server.metrics_text().await;
        assert_eq!(
            uploads_total(&text, "async", "rejected") + uploads_total(&text, "sync", "rejected"),
            5
        );
        server.stop().await;
    })
    .await;
}

/// The temporary files of unfinished uploads in `dir`.
fn part_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".part"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_cancelled_upload_leaves_no_temporary_file() {
    bounded(async {
        // One left by a crash is removed at start.
        let dir = tempfile::tempdir().unwrap();
        let uploads = dir.path().join("uploads");
        std::fs::create_dir_all(&uploads).unwrap();
        std::fs::write(uploads.join(".crashed.7.part"), b"half").unwrap();
        let server = Running::start_in(dir, 0, Some(TOKEN), None).await;
        let store_dir = server.state.store_dir().to_owned();
        assert_eq!(part_files(&store_dir), Vec::<String>::new());

        // A store that fails (the id names a directory: the rename fails).
        std::fs::create_dir(store_dir.join("taken")).unwrap();
        let reply = server.upload(Some("taken"), b"data").await;
        assert_eq!(reply.status, 500, "{}", reply.body);
        assert_eq!(part_files(&store_dir), Vec::<String>::new());

        // A store whose caller goes away after it started (the request is
        // cancelled): it runs to its end, renamed or removed, never left.
        for i in 0..20 {
            let id = format!("cancelled-{i}");
            let body = Bytes::from(vec![b'x'; 256 * 1024]);
            let store = upload_server::store(&store_dir, &id, &body);
            // Polled once (the blocking write starts), then dropped.
            let _ = tokio::time::timeout(Duration::ZERO, store).await;
        }
        let stored = |i| store_dir.join(format!("cancelled-{i}")).is_file();
        while !(0..20).all(stored) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(part_files(&store_dir), Vec::<String>::new());

        // A client that goes away before sending the whole body.
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(
                b"POST /uploads HTTP/1.1\r\nUpload-Id: cut-short\r\nContent-Length: 100000\r\n\r\npartial",
            )
            .await
            .unwrap();
        drop(stream);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(part_files(&store_dir), Vec::<String>::new());
        assert!(!store_dir.join("cut-short").exists());
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_bodies_that_are_too_large_or_broken_get_json_errors() {
    bounded(async {
        let server = Running::start(10, Some(TOKEN)).await;
        let auth = format!("Bearer {TOKEN}");
        let huge = format!(
            "{{\"force_sync\": [{}]}}",
            vec!["\"id-000000\""; 10_000].join(",")
        );
        for path in ["/rollout", "/rollout/rollback"] {
            let method = if path == "/rollout" { "PUT" } else { "POST" };
            let reply = server
                .request(method, path, &[("Authorization", &auth)], huge.as_bytes())
                .await;
            assert_eq!(reply.status, 413, "{path}: {}", reply.body);
            assert!(
                reply.json()["error"]
                    .as_str()
                    .unwrap()
                    .contains("65536 bytes"),
                "{}",
                reply.body
            );
        }
        for (body, says) in [
            (r#"{"kill_switch": tru"#, "the body is not JSON"),
            (r#"{"kill_switch": "yes"}"#, "field `kill_switch`"),
            ("", "the body is empty"),
        ] {
            let reply = server.put_rollout(Some(TOKEN), body).await;
            assert_eq!(reply.status, 400, "{body}");
            let error = reply.json()["error"].as_str().unwrap().to_owned();
            assert!(error.contains(says), "{body}: {error}");
            assert!(error.contains(r#"{"kill_switch": true}"#), "{error}");
        }
        server.stop().await;
    })
    .await;
}

/// `promtool check metrics` on `text`: its exit status and what it said.
fn promtool_check(text: &str) -> (bool, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is not installed: apt-get install prometheus (scripts/test does this)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_check_metrics_passes_on_the_real_metrics_and_the_kill_switch_reads_zero() {
    bounded(async {
        let server = Running::start(50, Some(TOKEN)).await;
        let ids: Vec<String> = (0..60).map(|i| format!("promtool-{i}")).collect();
        let statuses = upload_all(&server, &ids).await;
        assert!(statuses.contains(&201) && statuses.contains(&202));
        // A tick has judged the run: the per-run series are exported too.
        while server.state.monitor().view().last_evaluation.is_none() {
            tokio::time::sleep(TICK).await;
        }
        server.state.drain(Duration::from_secs(10)).await;
        let text = server.metrics_text().await;
        for family in [
            "async_upload_rollout_upload_latency_seconds_bucket",
            "async_upload_rollout_run_uploads_total",
            "async_upload_rollout_run_latency_seconds_total",
            "async_upload_rollout_run_latency_min_seconds",
            "async_upload_rollout_run_latency_max_seconds",
            "async_upload_rollout_run_latency_buckets_total",
            "async_upload_rollout_config_error 0",
            "async_upload_rollout_percent 50",
        ] {
            assert!(text.contains(family), "no {family} in\n{text}");
        }
        let (ok, said) = promtool_check(&text);
        assert!(
            ok && said.trim().is_empty(),
            "promtool check metrics:\n{said}\n{text}"
        );

        // Under the kill switch nothing is async: 0 in every view.
        let reply = server
            .put_rollout(Some(TOKEN), r#"{"kill_switch": true}"#)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let text = server.metrics_text().await;
        assert!(
            text.contains("\nasync_upload_rollout_percent 0.0\n"),
            "{text}"
        );
        assert!(text.contains("\nasync_upload_rollout_kill_switch 1\n"));
        assert_eq!(server.rollout_status().await.percent, Percent::ZERO);
        let (ok, said) = promtool_check(&text);
        assert!(ok, "{said}");
        server.stop().await;
    })
    .await;
}
