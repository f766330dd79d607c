//! Serving: the routes on a listener with the background tasks beside them
//! (memory sampling, change reports), and a graceful stop that waits for
//! accepted uploads.

use std::future::Future;
use std::io;
use std::time::Duration;

use async_upload_rollout::process_memory_bytes;
use tokio::net::TcpListener;

use crate::app::app;
use crate::changes::report_changes;
use crate::state::AppState;

/// How long a graceful shutdown waits for accepted uploads to be stored.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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
