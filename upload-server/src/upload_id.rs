//! Upload ids: where a request's id is read from, the rule an id must
//! follow (it becomes a file name), and the ids generated for requests
//! that carry none.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue};

/// The request headers an upload id is read from, in order.
pub const UPLOAD_ID_HEADERS: [&str; 2] = ["upload-id", "x-upload-id"];
/// Longest upload id accepted (it becomes a file name).
pub const MAX_ID_LEN: usize = 128;

/// The id the layer decides with: the first upload-id header's bytes.
pub(crate) type IdFinder = for<'r> fn(&'r Request) -> Option<&'r [u8]>;

/// The [`IdFinder`] of the upload route's layer.
pub(crate) fn request_upload_id(request: &Request) -> Option<&[u8]> {
    upload_id(request.headers())
}

/// Gives a request without an upload id a generated one (in the
/// `upload-id` header), before the layer decides.
pub(crate) async fn assign_upload_id(
    State(ids): State<Arc<IdSource>>,
    mut request: Request,
) -> Request {
    if request_upload_id(&request).is_none() {
        // Generated ids are header-safe (letters, digits, `-`).
        if let Ok(id) = HeaderValue::from_str(&ids.next()) {
            request.headers_mut().insert(UPLOAD_ID_HEADERS[0], id);
        }
    }
    request
}

/// The bytes of the first upload-id header present.
pub(crate) fn upload_id(headers: &HeaderMap) -> Option<&[u8]> {
    UPLOAD_ID_HEADERS
        .iter()
        .find_map(|name| headers.get(*name))
        .map(HeaderValue::as_bytes)
}

/// An id names a file: ASCII letters, digits, `.`, `_` and `-`, not
/// starting with `.`, 1 to [`MAX_ID_LEN`] bytes. An error quotes the id
/// (lossily when it is not UTF-8, cut after 64 characters) and says what is
/// wrong with it.
pub(crate) fn check_id(raw: &[u8]) -> Result<&str, String> {
    const RULE: &str =
        "an upload id is 1 to 128 characters of A-Z a-z 0-9 . _ -, not starting with '.'";
    let quoted = || {
        let text = String::from_utf8_lossy(raw);
        let mut shown: String = text.chars().take(64).collect();
        if shown.len() < text.len() {
            shown.push('…');
        }
        format!("{shown:?}")
    };
    if raw.is_empty() {
        return Err(format!("the upload id is empty: {RULE}"));
    }
    let id = std::str::from_utf8(raw).map_err(|err| {
        format!(
            "upload id {} is not UTF-8 (invalid byte 0x{:02x} at byte {}): {RULE}",
            quoted(),
            raw[err.valid_up_to()],
            err.valid_up_to()
        )
    })?;
    if raw.len() > MAX_ID_LEN {
        return Err(format!(
            "upload id {} is too long: {} bytes, at most {MAX_ID_LEN}",
            quoted(),
            raw.len()
        ));
    }
    if id.starts_with('.') {
        return Err(format!("upload id {} starts with '.': {RULE}", quoted()));
    }
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if let Some((at, c)) = id.char_indices().find(|&(_, c)| !safe(c)) {
        return Err(format!(
            "upload id {} has {c:?} at byte {at}: {RULE}",
            quoted()
        ));
    }
    Ok(id)
}

/// Upload ids for requests without one: the process's start time and a
/// counter, so ids are unique across restarts of one host without a
/// random-number crate (the bucket hash spreads sequential ids evenly).
pub(crate) struct IdSource {
    prefix: String,
    next: AtomicU64,
}

impl IdSource {
    pub(crate) fn new() -> IdSource {
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        IdSource {
            prefix: format!("up-{start:x}-{:x}", std::process::id()),
            next: AtomicU64::new(1),
        }
    }

    pub(crate) fn next(&self) -> String {
        format!(
            "{}-{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}
