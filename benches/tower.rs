//! The tower layer's cost per request, beside the same service without it,
//! in one process, in interleaved rounds.
//!
//! `cargo bench --features tower --bench tower [-- --rounds 21 --slice-ms 20]`
//!
//! Two pairs, each request built, called, its future polled, its body read
//! to the end and dropped, with no network and no runtime (a no-op waker:
//! every future here is ready at once):
//!
//! - `service`: a hand-written service answering 200 with one static chunk
//!   (no allocation of its own), bare and behind `RolloutLayer`;
//! - `axum`: an axum `Router` with one `POST /uploads` route, bare and with
//!   the layer on the route (how the upload server, `upload-server/`, uses it).
//!
//! Every round runs the four variants for about `--slice-ms` each, in a
//! rotated order, so other load and frequency changes hit them alike; the
//! difference and the ratio of a pair are taken within a round. Reported:
//! the median ns per request over the rounds, and the median (min–max) of
//! the per-round differences and ratios. Rollout at 10%, 1024 ids.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use async_upload_rollout::tower::RolloutLayer;
use async_upload_rollout::{MetricsAccumulator, Percent, Rollout, RolloutConfig};
use axum::Router;
use axum::body::Body;
use axum::routing::post;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use tower_layer::Layer;
use tower_service::Service;

const IDS: usize = 1024;

#[path = "../tests/support/answer.rs"]
mod answer;

use answer::Answer;

async fn upload() -> StatusCode {
    StatusCode::CREATED
}

/// One exchange: call, poll to the response, read the body to its end.
fn exchange<S, B, RB>(service: &mut S, request: Request<B>)
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: http_body::Body,
{
    let mut cx = Context::from_waker(Waker::noop());
    while service.poll_ready(&mut cx).is_pending() {}
    let mut future = pin!(service.call(request));
    let response = loop {
        if let Poll::Ready(response) = future.as_mut().poll(&mut cx) {
            break response;
        }
    };
    let Ok(response) = response else {
        panic!("the service failed");
    };
    let mut body = pin!(response.into_body());
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
        black_box(frame.is_ok());
    }
}

fn request<B>(body: B, id: &'static str) -> Request<B> {
    let mut request = Request::new(body);
    *request.method_mut() = Method::POST;
    *request.uri_mut() = Uri::from_static("/uploads");
    request
        .headers_mut()
        .insert("upload-id", HeaderValue::from_static(id));
    request
}

/// A variant: runs `n` exchanges.
type Variant<'a> = (&'static str, Box<dyn FnMut(u64) + 'a>);

fn main() {
    let (rounds, slice) = args();
    let ids: Vec<&'static str> = (0..IDS)
        .map(|i| &*Box::leak(format!("0f8fad5b-d9cb-469f-a165-{i:012}").into_boxed_str()))
        .collect();
    let rollout = Arc::new(Rollout::new(RolloutConfig::with_percent(
        Percent::from_whole(10).unwrap_or(Percent::ZERO),
    )));
    let metrics = Arc::new(MetricsAccumulator::new());
    let layer = RolloutLayer::new(rollout, Arc::clone(&metrics));

    let mut bare = Answer;
    let mut layered = layer.layer(Answer);
    let mut router: Router = Router::new().route("/uploads", post(upload));
    let mut router_layered: Router =
        Router::new().route("/uploads", post(upload).layer(layer.clone()));

    let mut next = 0usize;
    let mut id = move || {
        next = (next + 1) & (IDS - 1);
        ids[next]
    };
    let mut id2 = id.clone();
    let mut id3 = id.clone();
    let mut id4 = id.clone();
    let mut variants: Vec<Variant<'_>> = vec![
        (
            "service, bare",
            Box::new(|n| (0..n).for_each(|_| exchange(&mut bare, request((), id())))),
        ),
        (
            "service, layered",
            Box::new(|n| (0..n).for_each(|_| exchange(&mut layered, request((), id2())))),
        ),
        (
            "axum, bare",
            Box::new(|n| (0..n).for_each(|_| exchange(&mut router, request(Body::empty(), id3())))),
        ),
        (
            "axum, layered",
            Box::new(|n| {
                (0..n).for_each(|_| exchange(&mut router_layered, request(Body::empty(), id4())))
            }),
        ),
    ];

    // Calibrate each variant's batch to about a tenth of a slice.
    let batches: Vec<u64> = variants
        .iter_mut()
        .map(|(_, run)| {
            run(1_000);
            let start = Instant::now();
            run(1_000);
            let per = start.elapsed().as_nanos().max(1) as f64 / 1_000.0;
            ((slice.as_nanos() as f64 / 10.0 / per) as u64).max(1)
        })
        .collect();

    let mut ns = vec![Vec::with_capacity(rounds); variants.len()];
    for round in 0..rounds {
        for k in 0..variants.len() {
            let v = (k + round) % variants.len();
            let (_, run) = &mut variants[v];
            let start = Instant::now();
            let mut done = 0u64;
            while start.elapsed() < slice {
                run(batches[v]);
                done += batches[v];
            }
            ns[v].push(start.elapsed().as_nanos() as f64 / done as f64);
        }
    }

    println!("tower layer overhead per request ({})", machine());
    println!(
        "{rounds} rounds of {} ms per variant, interleaved; median ns per request over the rounds\n",
        slice.as_millis()
    );
    for (v, (name, _)) in variants.iter().enumerate() {
        println!("  {name:<18} {:>8.1} ns", median(&ns[v]));
    }
    println!();
    for (pair, bare, layered) in [("service", 0, 1), ("axum", 2, 3)] {
        let diffs: Vec<f64> = (0..rounds).map(|r| ns[layered][r] - ns[bare][r]).collect();
        let ratios: Vec<f64> = (0..rounds).map(|r| ns[layered][r] / ns[bare][r]).collect();
        println!(
            "  {pair:<8} layer adds {:>7.1} ns ({:.1}–{:.1}), x{:.2} ({:.2}–{:.2})",
            median(&diffs),
            min(&diffs),
            max(&diffs),
            median(&ratios),
            min(&ratios),
            max(&ratios),
        );
    }
    let snapshot = metrics.snapshot();
    black_box(snapshot);
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// `--rounds N` (default 21) and `--slice-ms M` (default 20); anything else
/// (cargo's `--bench`) is ignored.
fn args() -> (usize, Duration) {
    let mut rounds = 21;
    let mut slice_ms = 20;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--rounds" => rounds = it.next().and_then(|v| v.parse().ok()).unwrap_or(rounds),
            "--slice-ms" => slice_ms = it.next().and_then(|v| v.parse().ok()).unwrap_or(slice_ms),
            _ => {}
        }
    }
    (rounds.max(1), Duration::from_millis(slice_ms.max(1)))
}

/// The CPU's model name, for figures that name their machine.
fn machine() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}
