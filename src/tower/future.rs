//! The response future: waits for the inner service's response, reads its
//! outcome from the head, and hands the pending record to the body.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use super::body::RolloutBody;
use super::decision::RecordAs;
use super::record::{DeferredMark, Pending};

pin_project! {
    /// The future of [`RolloutService`](crate::tower::RolloutService): the
    /// inner service's response with its body wrapped in a [`RolloutBody`].
    ///
    /// Dropped before the response (the client went away), it records the
    /// request as cancelled; dropped while its inner future panics, as an
    /// error.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
        // The body of a HEAD response, or of a 204 or 304, is never sent:
        // the head ends the response.
        head_only: bool,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, pending: Pending, head_only: bool) -> ResponseFuture<F> {
        ResponseFuture {
            inner,
            pending: Some(pending),
            head_only,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<RolloutBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(pending) = this.pending.as_mut() {
            pending.polling(true);
        }
        let polled = this.inner.poll(cx);
        if let Some(pending) = this.pending.as_mut() {
            pending.polling(false);
        }
        let result = ready!(polled);
        let Some(mut pending) = this.pending.take() else {
            // Polled again after it completed (a caller's bug): there is
            // nothing left to record.
            return Poll::Ready(result.map(|response| response.map(RolloutBody::unrecorded)));
        };
        let mut response = match result {
            Ok(response) => response,
            Err(error) => {
                pending.set_outcome(crate::metrics::Outcome::Error);
                pending.complete();
                return Poll::Ready(Err(error));
            }
        };
        let extensions = response.extensions_mut();
        if let Some(DeferredMark(handoff)) = extensions.remove::<DeferredMark>() {
            // The handler's DeferredOutcome records it (LayerHandle::defer),
            // or this record does if the outcome came first; the mark goes,
            // so an outer layer cannot record it again.
            pending.defer(handoff.take());
            return Poll::Ready(Ok(response.map(RolloutBody::unrecorded)));
        }
        let outcome = match extensions.remove::<RecordAs>() {
            Some(RecordAs(outcome)) => outcome,
            None => pending.shared().classify(response.status()),
        };
        pending.set_outcome(outcome);
        let status = response.status();
        let ends_with_head = *this.head_only
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || response.body().is_end_stream();
        if ends_with_head {
            pending.complete();
            return Poll::Ready(Ok(response.map(RolloutBody::unrecorded)));
        }
        Poll::Ready(Ok(response.map(|body| RolloutBody::new(body, pending))))
    }
}
