//! The smallest tower service with a body: every request answered with 200
//! and one static chunk, at once, allocating nothing of its own. The tower
//! layer's allocation test (`tests/tower.rs`) and its bench
//! (`benches/tower.rs`) both wrap it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use http_body::Frame;
use tower_service::Service;

/// A body of one static chunk.
pub struct Chunk(pub Option<&'static [u8]>);

impl http_body::Body for Chunk {
    type Data = &'static [u8];
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<&'static [u8]>, Infallible>>> {
        Poll::Ready(self.0.take().map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }
}

/// 200 with one chunk, at once.
#[derive(Clone, Copy)]
pub struct Answer;

impl<B> Service<Request<B>> for Answer {
    type Response = Response<Chunk>;
    type Error = Infallible;
    type Future = Ready<Result<Response<Chunk>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        black_box(&request);
        ready(Ok(Response::new(Chunk(Some(b"stored")))))
    }
}
