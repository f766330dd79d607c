//! `RolloutLayer` in an axum router served on loopback and spoken to over
//! real HTTP/1.1 (a minimal hand-written client: one connection per request,
//! `Connection: close`), plus its allocations counted without HTTP.
//!
//! Every server is the test's own, with its own accumulator, so the counts
//! checked are exact. Every wait is bounded by [`DEADLINE`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_upload_rollout::tower::{
    LayerCounts, LayerHandle, RecordAs, RolloutDecision, RolloutLayer, classify_status,
};
use async_upload_rollout::{
    Arm, MetricsAccumulator, MetricsSnapshot, Outcome, Percent, Rollout, RolloutConfig,
};
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Router};
use http_body::{Body as _, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tower_service::Service;

/// No wait in this file is longer than this.
const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- server

/// What the routes share.
#[derive(Clone)]
struct AppState {
    layer: LayerHandle,
    /// Releases the background work of `/defer`.
    release: Arc<Notify>,
}

/// The routes, every one behind `layer`.
fn app(layer: RolloutLayer, release: Arc<Notify>) -> Router {
    let state = AppState {
        layer: layer.handle(),
        release,
    };
    Router::new()
        .route("/status/{code}", post(status))
        .route("/arm", post(arm))
        .route("/critical", post(critical))
        .route("/panic", post(panic))
        .route("/slow", post(slow))
        .route("/stream/{chunks}", get(stream))
        .route("/defer/{finish}", post(defer))
        .route("/defer-then-panic", post(defer_then_panic))
        .route("/defer-finished", post(defer_finished))
        .layer(layer)
        .with_state(state)
}

async fn status(Path(code): Path<u16>) -> Response<Body> {
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::IM_A_TEAPOT);
    (code, "status").into_response()
}

/// The decision the handler saw, as text: `arm bucket has_id`.
async fn arm(Extension(decision): Extension<RolloutDecision>) -> String {
    format!(
        "{} {:?} {}",
        decision.arm.as_str(),
        decision.bucket,
        decision.has_id()
    )
}

async fn critical() -> Response<Body> {
    // A 200 the handler knows is a data loss.
    (Extension(RecordAs(Outcome::Critical)), "lost").into_response()
}

async fn panic() -> &'static str {
    panic!("the handler panics (on purpose, tests/tower.rs)");
}

async fn slow() -> &'static str {
    tokio::time::sleep(DEADLINE).await;
    "too late"
}

/// `chunks` chunks, one every 50 ms after the head.
async fn stream(Path(chunks): Path<u32>) -> Response<Body> {
    Response::new(Body::new(SlowBody::new(chunks, Duration::from_millis(50))))
}

/// 202 at once; the outcome when `release` is notified: `success`, or
/// `drop` (the background work forgets it).
async fn defer(
    State(state): State<AppState>,
    Extension(decision): Extension<RolloutDecision>,
    Path(finish): Path<String>,
) -> Response<Body> {
    let mut response = (StatusCode::ACCEPTED, "accepted").into_response();
    let outcome = state.layer.defer(decision, &mut response);
    tokio::spawn(async move {
        state.release.notified().await;
        if finish == "success" {
            outcome.finish(Outcome::Success);
        } else {
            drop(outcome);
        }
    });
    response
}

/// Defers, finishes the outcome as a success, then panics: the marked
/// response never reaches the layer.
async fn defer_then_panic(
    State(state): State<AppState>,
    Extension(decision): Extension<RolloutDecision>,
) -> Response<Body> {
    let mut response = (StatusCode::ACCEPTED, "accepted").into_response();
    state
        .layer
        .defer(decision, &mut response)
        .finish(Outcome::Success);
    panic!("the handler panics after deferring (on purpose, tests/tower.rs)");
}

/// Defers and finishes the outcome (a critical error) before the layer
/// sees the response.
async fn defer_finished(
    State(state): State<AppState>,
    Extension(decision): Extension<RolloutDecision>,
) -> Response<Body> {
    let mut response = (StatusCode::ACCEPTED, "accepted").into_response();
    tokio::time::sleep(Duration::from_millis(100)).await;
    state
        .layer
        .defer(decision, &mut response)
        .finish(Outcome::Critical);
    response
}

/// A body of `left` 1-byte chunks, each after `every`.
struct SlowBody {
    left: u32,
    every: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl SlowBody {
    fn new(chunks: u32, every: Duration) -> SlowBody {
        SlowBody {
            left: chunks,
            every,
            sleep: Box::pin(tokio::time::sleep(every)),
        }
    }
}

impl http_body::Body for SlowBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        std::task::ready!(self.sleep.as_mut().poll(cx));
        self.left -= 1;
        let next = tokio::time::Instant::now() + self.every;
        self.sleep.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"x")))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }
}

/// A server on loopback and what the test looks at.
struct Server {
    addr: SocketAddr,
    rollout: Arc<Rollout>,
    metrics: Arc<MetricsAccumulator>,
    layer: LayerHandle,
    release: Arc<Notify>,
    stop: Option<oneshot::Sender<()>>,
}

impl Server {
    /// A server at `percent`, its layer made by `build` from the rollout
    /// and the metrics.
    async fn start(
        percent: u32,
        build: impl FnOnce(Arc<Rollout>, Arc<MetricsAccumulator>) -> RolloutLayer,
    ) -> Server {
        let rollout = Arc::new(Rollout::new(RolloutConfig::with_percent(
            Percent::from_whole(percent).unwrap(),
        )));
        let metrics = Arc::new(MetricsAccumulator::new());
        let layer = build(Arc::clone(&rollout), Arc::clone(&metrics));
        let handle = layer.handle();
        let release = Arc::new(Notify::new());
        let app = app(layer, Arc::clone(&release));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Server {
            addr,
            rollout,
            metrics,
            layer: handle,
            release,
            stop: Some(stop),
        }
    }

    async fn with_defaults(percent: u32) -> Server {
        Server::start(percent, RolloutLayer::new).await
    }

    /// One request, read to the server's close: `(status, body)`.
    async fn request(&self, method: &str, path: &str, id: Option<&str>) -> (u16, String) {
        let exchange = async {
            let mut stream = self.send(method, path, id).await;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await.unwrap();
            parse(&raw)
        };
        tokio::time::timeout(DEADLINE, exchange)
            .await
            .expect("a response within the deadline")
    }

    /// Connects and sends a request with an empty body.
    async fn send(&self, method: &str, path: &str, id: Option<&str>) -> TcpStream {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n",
            self.addr
        );
        if let Some(id) = id {
            head.push_str(&format!("Upload-Id: {id}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream
    }

    fn snapshot(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    fn counts(&self) -> LayerCounts {
        self.layer.counts()
    }

    /// Waits until `done` holds of the snapshot and the layer's counts.
    async fn until(&self, what: &str, done: impl Fn(&MetricsSnapshot, &LayerCounts) -> bool) {
        let start = Instant::now();
        while !done(&self.snapshot(), &self.counts()) {
            assert!(
                start.elapsed() < DEADLINE,
                "not within {DEADLINE:?}: {what}; counts {:?}",
                self.counts()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn arm_of(&self, id: &str) -> Arm {
        Arm::from_use_async(self.rollout.should_use_async(id))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `(status, body)` of a raw response (the body as received: chunk framing
/// included, which `contains` checks do not mind).
fn parse(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad head {head:?}"));
    (status, body.to_owned())
}

/// The outcome counts of `arm`: `[success, error, critical, rejected]`.
fn outcomes(snapshot: &MetricsSnapshot, arm: Arm) -> [u64; 4] {
    Outcome::ALL.map(|outcome| snapshot.arm(arm).count(outcome))
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_from_the_header_take_the_rollouts_path_and_are_recorded_on_it() {
    let server = Server::with_defaults(50).await;
    let mut expected = [0u64; 2];
    for i in 0..24 {
        let id = format!("upload-{i}");
        let arm = server.arm_of(&id);
        expected[arm as usize] += 1;
        let (status, body) = server.request("POST", "/arm", Some(&id)).await;
        assert_eq!(status, 200);
        let bucket = server.rollout.bucket(&id);
        assert!(
            body.contains(&format!("{} Some({bucket}) true", arm.as_str())),
            "{id}: {body}"
        );
    }
    assert!(
        expected.iter().all(|&n| n > 0),
        "both arms used: {expected:?}"
    );
    let total = expected[0] + expected[1];
    server
        .until("every request recorded", |s, _| {
            s.uploads(Arm::Async) + s.uploads(Arm::Sync) == total
        })
        .await;
    let snapshot = server.snapshot();
    for arm in Arm::ALL {
        assert_eq!(outcomes(&snapshot, arm), [expected[arm as usize], 0, 0, 0]);
    }
    assert_eq!(server.counts(), LayerCounts::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_map_to_outcomes_5xx_error_4xx_rejected_else_success() {
    let server = Server::with_defaults(100).await;
    for (code, _) in [
        (200, "success"),
        (201, ""),
        (302, ""),
        (404, ""),
        (413, ""),
        (500, ""),
        (503, ""),
    ] {
        let (status, _) = server
            .request("POST", &format!("/status/{code}"), Some("u-1"))
            .await;
        assert_eq!(status, code);
    }
    server
        .until("seven recorded", |s, _| s.uploads(Arm::Async) == 7)
        .await;
    // success (200, 201, 302), error (500, 503), critical, rejected (404, 413)
    assert_eq!(outcomes(&server.snapshot(), Arm::Async), [3, 2, 0, 2]);
    assert_eq!(server.snapshot().uploads(Arm::Sync), 0);
    assert_eq!(
        classify_status(StatusCode::SWITCHING_PROTOCOLS),
        Outcome::Success
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classifier_overrides_the_status_mapping() {
    // A service for which 404 is a normal answer and 503 is load shedding.
    let server = Server::start(100, |rollout, metrics| {
        RolloutLayer::builder(rollout, metrics)
            .classify(|status| match status {
                StatusCode::NOT_FOUND => Outcome::Success,
                StatusCode::SERVICE_UNAVAILABLE => Outcome::Rejected,
                other => classify_status(other),
            })
            .build()
    })
    .await;
    for code in [404, 503, 500, 200] {
        server
            .request("POST", &format!("/status/{code}"), Some("u-2"))
            .await;
    }
    server
        .until("four recorded", |s, _| s.uploads(Arm::Async) == 4)
        .await;
    assert_eq!(outcomes(&server.snapshot(), Arm::Async), [2, 1, 0, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_marks_its_response_critical() {
    let server = Server::with_defaults(0).await;
    let (status, _) = server.request("POST", "/critical", Some("u-3")).await;
    assert_eq!(status, 200, "the mark changes the record, not the response");
    server
        .until("one recorded", |s, _| s.uploads(Arm::Sync) == 1)
        .await;
    assert_eq!(outcomes(&server.snapshot(), Arm::Sync), [0, 0, 1, 0]);
    assert_eq!(server.snapshot().critical(Arm::Sync), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_one_error() {
    let server = Server::with_defaults(100).await;
    // The panic unwinds through hyper's connection task, which tokio
    // catches: the connection closes without a response, and the layer's
    // dropped future records an error.
    let mut stream = server.send("POST", "/panic", Some("u-4")).await;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut raw)).await;
    assert!(read.is_ok(), "the connection closes");
    assert!(
        raw.is_empty(),
        "no response: {:?}",
        String::from_utf8_lossy(&raw)
    );
    server
        .until("the panic recorded", |s, _| s.uploads(Arm::Async) == 1)
        .await;
    // The server still serves, and the panic was recorded once.
    let (status, _) = server.request("POST", "/status/200", Some("u-4")).await;
    assert_eq!(status, 200);
    server
        .until("the next request recorded", |s, _| {
            s.uploads(Arm::Async) == 2
        })
        .await;
    assert_eq!(outcomes(&server.snapshot(), Arm::Async), [1, 1, 0, 0]);
    assert_eq!(server.counts().panicked(Arm::Async), 1);
    assert_eq!(server.counts().cancelled(Arm::Async), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_during_the_handler_is_counted_cancelled() {
    let server = Server::with_defaults(100).await;
    let stream = server.send("POST", "/slow", Some("u-5")).await;
    tokio::time::sleep(Duration::from_millis(100)).await; // the handler runs
    assert_eq!(server.snapshot().uploads(Arm::Async), 0, "still running");
    drop(stream);
    server
        .until("the cancelled request recorded", |s, _| {
            s.uploads(Arm::Async) == 1
        })
        .await;
    assert_eq!(outcomes(&server.snapshot(), Arm::Async), [0, 0, 0, 1]);
    assert_eq!(server.counts().cancelled(Arm::Async), 1);
    assert_eq!(server.counts().cancelled(Arm::Sync), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_during_a_streamed_body_is_counted_cancelled() {
    let server = Server::with_defaults(0).await;
    // 200 chunks, 10 s: the client reads the head and a chunk, then leaves.
    let mut stream = server.send("GET", "/stream/200", Some("u-6")).await;
    let mut first = [0u8; 64];
    let n = tokio::time::timeout(DEADLINE, stream.read(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    drop(stream);
    server
        .until("the cancelled body recorded", |s, _| {
            s.uploads(Arm::Sync) == 1
        })
        .await;
    assert_eq!(outcomes(&server.snapshot(), Arm::Sync), [0, 0, 0, 1]);
    assert_eq!(server.counts().cancelled(Arm::Sync), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latency_runs_to_the_end_of_a_streamed_body() {
    let server = Server::with_defaults(100).await;
    // 5 chunks, 50 ms apart: the head at once, the end after 250 ms.
    let started = Instant::now();
    let (status, body) = server.request("GET", "/stream/5", Some("u-7")).await;
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(body.matches('x').count(), 5, "{body:?}");
    server
        .until("the stream recorded", |s, _| s.uploads(Arm::Async) == 1)
        .await;
    let snapshot = server.snapshot();
    assert_eq!(outcomes(&snapshot, Arm::Async), [1, 0, 0, 0]);
    let latency = snapshot.mean_latency(Arm::Async).unwrap();
    assert!(
        latency >= Duration::from_millis(200),
        "recorded {latency:?}: at the head, not the end"
    );
    // Within the histogram's 1/256 of what the client saw.
    assert!(
        latency <= took + took / 256,
        "recorded {latency:?}, client {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_an_id_takes_the_sync_path_and_is_counted() {
    let server = Server::with_defaults(100).await;
    let (status, body) = server.request("POST", "/arm", None).await;
    assert_eq!(status, 200);
    assert!(body.contains("sync None false"), "{body}");
    // An empty id is no id either.
    let (_, body) = server.request("POST", "/arm", Some("")).await;
    assert!(body.contains("sync None false"), "{body}");
    let (_, body) = server.request("POST", "/arm", Some("u-8")).await;
    assert!(body.contains("async Some("), "{body}");
    server
        .until("three recorded", |s, _| {
            s.uploads(Arm::Sync) + s.uploads(Arm::Async) == 3
        })
        .await;
    let snapshot = server.snapshot();
    assert_eq!(outcomes(&snapshot, Arm::Sync), [2, 0, 0, 0]);
    assert_eq!(outcomes(&snapshot, Arm::Async), [1, 0, 0, 0]);
    assert_eq!(server.counts().no_id, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_outcome_is_recorded_when_the_background_work_ends() {
    let server = Server::with_defaults(100).await;
    let (status, _) = server.request("POST", "/defer/success", Some("u-9")).await;
    assert_eq!(status, 202);
    server
        .until("the deferral counted", |_, c| c.deferred(Arm::Async) == 1)
        .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        server.snapshot().uploads(Arm::Async),
        0,
        "not before the work ends"
    );
    server.release.notify_waiters();
    server
        .until("the outcome recorded", |s, _| s.uploads(Arm::Async) == 1)
        .await;
    let snapshot = server.snapshot();
    assert_eq!(outcomes(&snapshot, Arm::Async), [1, 0, 0, 0]);
    let latency = snapshot.mean_latency(Arm::Async).unwrap();
    assert!(
        latency >= Duration::from_millis(150),
        "from the request's start: {latency:?}"
    );

    // Background work that drops its outcome is an error, once.
    let (status, _) = server.request("POST", "/defer/drop", Some("u-9")).await;
    assert_eq!(status, 202);
    server
        .until("the second deferral counted", |_, c| {
            c.deferred(Arm::Async) == 2
        })
        .await;
    server.release.notify_waiters();
    server
        .until("the abandoned outcome recorded", |s, _| {
            s.uploads(Arm::Async) == 2
        })
        .await;
    assert_eq!(outcomes(&server.snapshot(), Arm::Async), [1, 1, 0, 0]);
    let counts = server.counts();
    assert_eq!(counts.abandoned(Arm::Async), 1);
    assert_eq!(counts.cancelled(Arm::Async), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_request_is_recorded_once_whichever_end_comes_first() {
    let server = Server::with_defaults(100).await;
    // The work ends before the layer sees the response: the layer records
    // the outcome the work reported, with its latency.
    let (status, _) = server.request("POST", "/defer-finished", Some("u-9")).await;
    assert_eq!(status, 202);
    server
        .until("the outcome recorded", |s, _| s.uploads(Arm::Async) == 1)
        .await;
    let snapshot = server.snapshot();
    assert_eq!(outcomes(&snapshot, Arm::Async), [0, 0, 1, 0]);
    assert!(snapshot.mean_latency(Arm::Async).unwrap() >= Duration::from_millis(100));
    assert_eq!(server.counts().deferred(Arm::Async), 1);

    // The handler finishes the outcome, then panics: the marked response
    // never reaches the layer, which records the panic; the outcome is
    // dropped, not recorded a second time.
    let mut stream = server.send("POST", "/defer-then-panic", Some("u-9")).await;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(DEADLINE, stream.read_to_end(&mut raw)).await;
    assert!(read.is_ok() && raw.is_empty(), "no response");
    server
        .until("the panic recorded", |s, _| s.uploads(Arm::Async) == 2)
        .await;
    // A later request is recorded after it, so a second record of the
    // panicked one would have shown by then.
    let (status, _) = server.request("POST", "/status/200", Some("u-9")).await;
    assert_eq!(status, 200);
    server
        .until("the next request recorded", |s, _| {
            s.uploads(Arm::Async) >= 3
        })
        .await;
    assert_eq!(outcomes(&server.snapshot(), Arm::Async), [1, 1, 1, 0]);
    let counts = server.counts();
    assert_eq!(counts.panicked(Arm::Async), 1);
    assert_eq!(counts.deferred(Arm::Async), 1);
}

// ---------------------------------------------------------------- allocations

#[path = "support/alloc.rs"]
mod alloc;

use alloc::allocations;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

#[path = "support/answer.rs"]
mod answer;

use answer::Answer;

/// Calls `service` with `request`, reads the body to its end (or, with
/// `hang_up`, drops it unread) and drops the response.
fn exchange<S, B>(service: &mut S, request: Request<()>, hang_up: bool)
where
    S: Service<Request<()>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(service.poll_ready(&mut cx).is_ready());
    let mut future = std::pin::pin!(service.call(request));
    let Poll::Ready(Ok(response)) = future.as_mut().poll(&mut cx) else {
        panic!("the answer is ready at once");
    };
    if hang_up {
        return;
    }
    let mut body = std::pin::pin!(response.into_body());
    while let Poll::Ready(Some(_)) = body.as_mut().poll_frame(&mut cx) {}
    assert!(body.is_end_stream());
}

/// Requests with an id, built before counting. `with_extension`: one
/// extension already there (as axum's router leaves one).
fn requests(n: usize, with_extension: bool) -> Vec<Request<()>> {
    (0..n)
        .map(|i| {
            let mut request = Request::new(());
            let id = if i % 2 == 0 {
                "upload-even"
            } else {
                "upload-odd"
            };
            request
                .headers_mut()
                .insert("upload-id", http::HeaderValue::from_static(id));
            if with_extension {
                request.extensions_mut().insert(7u8);
            }
            request
        })
        .collect()
}

#[test]
fn the_layer_allocates_only_the_decisions_extension() {
    const N: usize = 1_000;
    let rollout = Arc::new(Rollout::new(RolloutConfig::with_percent(
        Percent::from_whole(50).unwrap(),
    )));
    let metrics = Arc::new(MetricsAccumulator::new());
    let layer = RolloutLayer::new(rollout, Arc::clone(&metrics));
    let mut bare = Answer;
    let mut layered = tower_layer::Layer::layer(&layer, Answer);
    // Warm up: the thread's first record leases its stripe, the first
    // config load registers the thread with arc-swap.
    for request in requests(4, false) {
        exchange(&mut layered, request, false);
    }

    for with_extension in [false, true] {
        // What http charges for inserting one extension into such a request.
        let mut probes = requests(N, with_extension);
        let before = allocations();
        for probe in &mut probes {
            probe.extensions_mut().insert(0u64);
        }
        let per_insert = (allocations() - before) / N as u64;
        drop(probes);

        let count = |service: &mut dyn FnMut(Request<()>, bool)| {
            let batch = requests(N, with_extension);
            let before = allocations();
            for (i, request) in batch.into_iter().enumerate() {
                service(request, i % 4 == 3);
            }
            allocations() - before
        };
        let bare_allocations = count(&mut |request, hang_up| exchange(&mut bare, request, hang_up));
        let layered_allocations =
            count(&mut |request, hang_up| exchange(&mut layered, request, hang_up));
        assert_eq!(bare_allocations, 0, "the bare service allocates nothing");
        assert_eq!(
            layered_allocations,
            N as u64 * per_insert,
            "with the extension map present: {with_extension}; http's insert costs {per_insert}"
        );
        assert_eq!(per_insert, if with_extension { 1 } else { 3 });
    }
    // Every request recorded: three quarters read to the end, a quarter
    // dropped unread (cancelled).
    let snapshot = metrics.snapshot();
    let total = 4 + 2 * N as u64;
    assert_eq!(
        snapshot.uploads(Arm::Async) + snapshot.uploads(Arm::Sync),
        total
    );
    let counts = layer.handle().counts();
    assert_eq!(
        counts.cancelled(Arm::Async) + counts.cancelled(Arm::Sync),
        2 * N as u64 / 4
    );
}

// ---------------------------------------------------------------- a panic caught inside

/// What tower-http's `CatchPanicLayer` does, by hand: the handler inside
/// panics, and the panic becomes a 500 response before the layer sees it.
#[derive(Clone, Copy)]
struct CatchPanic;

impl<B> Service<Request<B>> for CatchPanic {
    type Response = Response<answer::Chunk>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<answer::Chunk>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        let caught = std::panic::catch_unwind(|| -> Response<answer::Chunk> {
            panic!("the handler panics (on purpose, tests/tower.rs)")
        });
        std::future::ready(Ok(caught.unwrap_or_else(|_| {
            let mut response = Response::new(answer::Chunk(Some(b"internal error")));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        })))
    }
}

#[test]
fn a_panic_caught_inside_the_layer_is_one_error_not_a_panicked_request() {
    let rollout = Arc::new(Rollout::new(RolloutConfig::with_percent(
        Percent::from_whole(100).unwrap(),
    )));
    let metrics = Arc::new(MetricsAccumulator::new());
    let layer = RolloutLayer::new(rollout, Arc::clone(&metrics));
    let mut layered = tower_layer::Layer::layer(&layer, CatchPanic);
    for request in requests(3, false) {
        exchange(&mut layered, request, false);
    }
    assert_eq!(outcomes(&metrics.snapshot(), Arm::Async), [0, 3, 0, 0]);
    assert_eq!(layer.handle().counts().panicked(Arm::Async), 0);
}
