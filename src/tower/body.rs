//! The response body: records when it ends, fails, or is dropped early.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::record::Pending;

pin_project! {
    /// A response body that records its request when it ends: at its last
    /// frame (as soon as [`Body::is_end_stream`] says so, or at the end of
    /// the stream), at an error (then the request is an
    /// [`Error`](crate::Outcome::Error)), or when dropped before its end
    /// (the client went away: cancelled).
    ///
    /// Frames, errors, size hint and end of stream are the inner body's,
    /// unchanged.
    pub struct RolloutBody<B> {
        #[pin]
        inner: B,
        pending: Option<Pending>,
    }
}

impl<B> RolloutBody<B> {
    pub(crate) fn new(inner: B, pending: Pending) -> RolloutBody<B> {
        RolloutBody {
            inner,
            pending: Some(pending),
        }
    }

    /// A body whose request is recorded already (or elsewhere).
    pub(crate) fn unrecorded(inner: B) -> RolloutBody<B> {
        RolloutBody {
            inner,
            pending: None,
        }
    }

    /// The inner body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body> Body for RolloutBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let Some(pending) = this.pending.as_mut() else {
            return this.inner.poll_frame(cx);
        };
        pending.polling(true);
        let polled = this.inner.as_mut().poll_frame(cx);
        pending.polling(false);
        let ended = match &polled {
            Poll::Pending => false,
            Poll::Ready(None) => true,
            Poll::Ready(Some(Err(_))) => {
                pending.body_failed();
                true
            }
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
        };
        if ended && let Some(pending) = this.pending.take() {
            pending.complete();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> std::fmt::Debug for RolloutBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloutBody")
            .field("recording", &self.pending.is_some())
            .finish_non_exhaustive()
    }
}
