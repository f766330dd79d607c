//! A tower layer that takes the rollout's decision for each request and
//! records how it ended (feature `tower`).
//!
//! [`RolloutLayer`] sits in front of an upload handler (a tower service,
//! such as an axum route). For each request it
//!
//! 1. finds the upload id (header `upload-id` by default, or a closure over
//!    the request: [`RolloutLayerBuilder::id_from`]),
//! 2. decides once with [`Rollout::decide`](crate::Rollout::decide) and puts
//!    the [`RolloutDecision`] (arm, bucket, rule) into the request's
//!    extensions, where the handler reads which path to take,
//! 3. records the request in the [`MetricsAccumulator`](crate::MetricsAccumulator)
//!    on that arm when its response is done: at the **end of the response
//!    body**, so the latency covers a streamed body to its last byte.
//!
//! # What is recorded, and when
//!
//! | The request ... | recorded as | when | layer counter |
//! |---|---|---|---|
//! | gets a response, body sent to the end | the status's outcome: 5xx `Error`, 4xx `Rejected`, else `Success` ([`classify_status`], or [`RolloutLayerBuilder::classify`]) | the body's last frame | |
//! | ... with [`RecordAs`] in the response's extensions | that outcome (e.g. `Critical`) | the body's last frame | |
//! | ... whose body fails | `Error` (a `Critical` stays `Critical`) | the error | |
//! | ... whose handler called [`LayerHandle::defer`] | what [`DeferredOutcome::finish`] says (`Error` if dropped unfinished) | `finish`, or the response if that came first | [`deferred`](LayerCounts::deferred) ([`abandoned`](LayerCounts::abandoned)) |
//! | is dropped before its response or its body's end (the client went away) | `Rejected`: counted, not judged | the drop | [`cancelled`](LayerCounts::cancelled) |
//! | panics in the handler or its body (the future is dropped unwinding) | `Error` | the drop | [`panicked`](LayerCounts::panicked) |
//! | fails in the inner service (`Err`) | `Error` | the error | |
//! | has no id (no header, or empty) | takes the **sync** path, recorded on `Sync` as above | as above | [`no_id`](LayerCounts::no_id) |
//!
//! Each decided request is recorded exactly once: the record travels with
//! the request (future, then body) and is made when that is dropped; a
//! deferred one is recorded by whichever of the layer and the
//! [`DeferredOutcome`] ends second, or, if the marked response never reaches
//! the layer (the handler panicked after deferring), as the request ended.
//! A HEAD request, a 204 and a 304 end with the head.
//!
//! **Cancelled requests** are `Rejected` because the crate's outcomes are
//! judgments of the path, and a client hanging up says nothing about it; the
//! [`cancelled`](LayerCounts::cancelled) counter keeps them visible, per arm,
//! so a path that makes clients give up shows.
//!
//! # Cost per request
//!
//! One [`Rollout::decide`](crate::Rollout::decide) (one config load, one
//! SipHash), one `Instant::now()`, one reference-count increment (the
//! record's link to the layer) and the record itself. The one allocation is
//! http's: inserting the decision into the request's extensions boxes it
//! (and creates the extension map if the request had none). The test
//! `tests/tower.rs` counts allocations with and without the layer; the
//! bench `benches/tower.rs` times both.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use async_upload_rollout::tower::{LayerHandle, RecordAs, RolloutDecision, RolloutLayer};
//! use async_upload_rollout::{Arm, MetricsAccumulator, Outcome, Percent, Rollout, RolloutConfig};
//! use axum::Extension;
//! use axum::http::StatusCode;
//! use axum::response::{IntoResponse, Response};
//!
//! async fn upload(
//!     Extension(decision): Extension<RolloutDecision>,
//!     Extension(layer): Extension<LayerHandle>,
//! ) -> Response {
//!     match decision.arm {
//!         // Recorded by the layer when the response body is sent.
//!         Arm::Sync => (StatusCode::CREATED, "stored").into_response(),
//!         // Recorded by the background task when the upload is stored.
//!         Arm::Async => {
//!             let mut response = (StatusCode::ACCEPTED, "accepted").into_response();
//!             let outcome = layer.defer(decision, &mut response);
//!             tokio::spawn(async move {
//!                 // ... store the upload ...
//!                 outcome.finish(Outcome::Success);
//!             });
//!             response
//!         }
//!     }
//! }
//!
//! async fn corrupt() -> Response {
//!     // A handler's own verdict wins over the status.
//!     (Extension(RecordAs(Outcome::Critical)), StatusCode::INTERNAL_SERVER_ERROR).into_response()
//! }
//!
//! let rollout = Arc::new(Rollout::new(RolloutConfig::with_percent(Percent::from_whole(10)?)));
//! let metrics = Arc::new(MetricsAccumulator::new());
//! let layer = RolloutLayer::new(rollout, Arc::clone(&metrics));
//! let handle = layer.handle();
//! let app: axum::Router = axum::Router::new()
//!     .route("/uploads", axum::routing::post(upload).layer(layer))
//!     .route("/corrupt", axum::routing::post(corrupt))
//!     .layer(Extension(handle.clone()));
//! # drop(app);
//! // Later, in a monitor: the metrics as usual, and the layer's counters.
//! assert_eq!(handle.counts().no_id, 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod body;
mod decision;
mod future;
mod id;
mod layer;
mod record;

pub use body::RolloutBody;
pub use decision::{RecordAs, RolloutDecision, classify_status};
pub use future::ResponseFuture;
pub use id::{ExtractUploadId, FromFn, FromHeader};
pub use layer::{RolloutLayer, RolloutLayerBuilder, RolloutService};
pub use record::{DeferredOutcome, LayerCounts, LayerHandle};
