//! The layer, its builder, and the service it wraps around a handler.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::HeaderName;
use http::{Method, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::decision::RolloutDecision;
use super::future::ResponseFuture;
use super::id::{ExtractUploadId, FromFn, FromHeader};
use super::record::{Classifier, LayerHandle, Pending, Shared};
use crate::decide::Rollout;
use crate::metrics::{Arm, MetricsAccumulator, Outcome};

/// A [`tower_layer::Layer`] that decides each request's path with a
/// [`Rollout`] and records its outcome and latency in a
/// [`MetricsAccumulator`]. See the [module docs](crate::tower).
///
/// Cheap to clone; every service it makes shares one set of counters
/// ([`handle`](Self::handle)).
///
/// # Examples
///
/// The record is made when the response body has been read to its end:
///
/// ```
/// use std::sync::Arc;
/// use async_upload_rollout::tower::{RolloutDecision, RolloutLayer};
/// use async_upload_rollout::{Arm, MetricsAccumulator, Outcome, Rollout, RolloutConfig};
/// use axum::body::Body;
/// use axum::http::{Request, StatusCode};
/// use axum::{Extension, Router, routing::post};
/// use tower_service::Service;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let rollout = Arc::new(Rollout::new(RolloutConfig::with_percent("100".parse()?)));
/// let metrics = Arc::new(MetricsAccumulator::new());
/// let layer = RolloutLayer::new(rollout, Arc::clone(&metrics));
/// let handler = |Extension(decision): Extension<RolloutDecision>| async move {
///     (StatusCode::CREATED, format!("stored on the {} path", decision.arm.as_str()))
/// };
/// let mut app: Router = Router::new().route("/uploads", post(handler).layer(layer));
///
/// let runtime = tokio::runtime::Builder::new_current_thread().build()?;
/// runtime.block_on(async {
///     let request = Request::post("/uploads").header("upload-id", "u-1").body(Body::empty())?;
///     let response = app.call(request).await?;
///     assert_eq!(response.status(), StatusCode::CREATED);
///     assert_eq!(metrics.snapshot().uploads(Arm::Async), 0, "the body is not sent yet");
///
///     let body = axum::body::to_bytes(response.into_body(), 1024).await?;
///     assert_eq!(body, "stored on the async path");
///     let snapshot = metrics.snapshot();
///     assert_eq!(snapshot.arm(Arm::Async).count(Outcome::Success), 1);
///     Ok(())
/// })
/// # }
/// ```
#[derive(Clone)]
pub struct RolloutLayer<I = FromHeader> {
    id: I,
    shared: Arc<Shared>,
}

impl RolloutLayer {
    /// A layer with the defaults: the id from the `upload-id` header, the
    /// status classified by [`classify_status`](crate::tower::classify_status).
    #[must_use]
    pub fn new(rollout: Arc<Rollout>, metrics: Arc<MetricsAccumulator>) -> RolloutLayer {
        RolloutLayer::builder(rollout, metrics).build()
    }

    /// A builder, to change where the id comes from or how a status is
    /// classified.
    pub fn builder(
        rollout: Arc<Rollout>,
        metrics: Arc<MetricsAccumulator>,
    ) -> RolloutLayerBuilder<FromHeader> {
        RolloutLayerBuilder {
            rollout,
            metrics,
            id: FromHeader::default(),
            classify: None,
        }
    }
}

impl<I> RolloutLayer<I> {
    /// The layer's counters, the metrics and rollout it uses, and
    /// [`LayerHandle::defer`].
    #[must_use]
    pub fn handle(&self) -> LayerHandle {
        LayerHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, I: Clone> Layer<S> for RolloutLayer<I> {
    type Service = RolloutService<S, I>;

    fn layer(&self, inner: S) -> RolloutService<S, I> {
        RolloutService {
            inner,
            id: self.id.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<I: fmt::Debug> fmt::Debug for RolloutLayer<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RolloutLayer")
            .field("id", &self.id)
            .field("custom_classifier", &self.shared.classify.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds a [`RolloutLayer`]: [`RolloutLayer::builder`].
#[must_use = "a builder does nothing until built"]
pub struct RolloutLayerBuilder<I> {
    rollout: Arc<Rollout>,
    metrics: Arc<MetricsAccumulator>,
    id: I,
    classify: Option<Classifier>,
}

impl<I> RolloutLayerBuilder<I> {
    /// Reads the upload id from the header `name` (default `upload-id`).
    pub fn id_header(self, name: HeaderName) -> RolloutLayerBuilder<FromHeader> {
        self.id(FromHeader(name))
    }

    /// Finds the upload id with `find`, which borrows it from the request
    /// (so nothing is allocated): a path segment, the first of several
    /// headers, ... Annotate the closure's argument with the request type:
    /// `|request: &Request<Body>| ...`.
    pub fn id_from<B, F>(self, find: F) -> RolloutLayerBuilder<FromFn<F>>
    where
        F: for<'r> Fn(&'r Request<B>) -> Option<&'r [u8]>,
    {
        self.id(FromFn(find))
    }

    /// Finds the upload id with `id`.
    pub fn id<J>(self, id: J) -> RolloutLayerBuilder<J> {
        RolloutLayerBuilder {
            rollout: self.rollout,
            metrics: self.metrics,
            id,
            classify: self.classify,
        }
    }

    /// Classifies a response by its status with `classify` instead of
    /// [`classify_status`](crate::tower::classify_status). A
    /// [`RecordAs`](crate::tower::RecordAs) in the response still wins.
    pub fn classify(
        mut self,
        classify: impl Fn(StatusCode) -> Outcome + Send + Sync + 'static,
    ) -> RolloutLayerBuilder<I> {
        self.classify = Some(Box::new(classify));
        self
    }

    /// The layer.
    #[must_use]
    pub fn build(self) -> RolloutLayer<I> {
        RolloutLayer {
            id: self.id,
            shared: Arc::new(Shared::new(self.rollout, self.metrics, self.classify)),
        }
    }
}

impl<I: fmt::Debug> fmt::Debug for RolloutLayerBuilder<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RolloutLayerBuilder")
            .field("id", &self.id)
            .field("custom_classifier", &self.classify.is_some())
            .finish_non_exhaustive()
    }
}

/// The service [`RolloutLayer`] wraps around an inner service.
#[derive(Clone)]
pub struct RolloutService<S, I = FromHeader> {
    inner: S,
    id: I,
    shared: Arc<Shared>,
}

impl<S, I> RolloutService<S, I> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, consuming the wrapper.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The layer's handle (the same one every service of the layer shares).
    #[must_use]
    pub fn handle(&self) -> LayerHandle {
        LayerHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, I: fmt::Debug> fmt::Debug for RolloutService<S, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RolloutService")
            .field("inner", &self.inner)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<S, I, ReqBody, ResBody> Service<Request<ReqBody>> for RolloutService<S, I>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    I: ExtractUploadId<ReqBody>,
    ResBody: http_body::Body,
{
    type Response = Response<super::RolloutBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> ResponseFuture<S::Future> {
        let started = Instant::now();
        let decision = match self.id.upload_id(&request) {
            Some(id) if !id.is_empty() => {
                let decision = self.shared.rollout.decide(id);
                RolloutDecision {
                    arm: Arm::from_use_async(decision.use_async),
                    bucket: decision.bucket,
                    reason: Some(decision.reason),
                    started,
                }
            }
            _ => {
                self.shared.count_no_id();
                RolloutDecision {
                    arm: Arm::Sync,
                    bucket: None,
                    reason: None,
                    started,
                }
            }
        };
        let head_only = request.method() == Method::HEAD;
        // http boxes each extension (and creates the map on the first):
        // the one allocation this layer causes per request.
        request.extensions_mut().insert(decision);
        let pending = Pending::new(Arc::clone(&self.shared), decision.arm, started);
        ResponseFuture::new(self.inner.call(request), pending, head_only)
    }
}
