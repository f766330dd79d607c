//! Where the layer finds a request's upload id.

use std::fmt;

use http::Request;
use http::header::HeaderName;

/// How [`RolloutLayer`](crate::tower::RolloutLayer) finds the upload id of a
/// request: [`FromHeader`] (the default, header `upload-id`) or
/// [`FromFn`] (a closure, from
/// [`RolloutLayerBuilder::id_from`](crate::tower::RolloutLayerBuilder::id_from)).
///
/// The id is borrowed from the request: finding it allocates nothing. An
/// empty id counts as none.
pub trait ExtractUploadId<B> {
    /// The upload id of `request`, as bytes (what the rollout hashes), or
    /// `None` when it has none.
    fn upload_id<'r>(&self, request: &'r Request<B>) -> Option<&'r [u8]>;
}

/// The upload id is the value of a request header, as bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FromHeader(pub HeaderName);

impl FromHeader {
    /// The default header, `upload-id` (header names are case-insensitive).
    pub const DEFAULT_NAME: &'static str = "upload-id";
}

impl Default for FromHeader {
    fn default() -> FromHeader {
        FromHeader(HeaderName::from_static(FromHeader::DEFAULT_NAME))
    }
}

impl<B> ExtractUploadId<B> for FromHeader {
    #[inline]
    fn upload_id<'r>(&self, request: &'r Request<B>) -> Option<&'r [u8]> {
        request
            .headers()
            .get(&self.0)
            .map(http::HeaderValue::as_bytes)
    }
}

/// The upload id is what a closure finds in the request (a path segment, one
/// of several headers, ...).
#[derive(Clone)]
pub struct FromFn<F>(pub F);

impl<B, F> ExtractUploadId<B> for FromFn<F>
where
    F: for<'r> Fn(&'r Request<B>) -> Option<&'r [u8]>,
{
    #[inline]
    fn upload_id<'r>(&self, request: &'r Request<B>) -> Option<&'r [u8]> {
        (self.0)(request)
    }
}

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromFn(..)")
    }
}
