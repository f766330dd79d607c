//! `POST /uploads`: the body is the upload, stored on the path the
//! rollout's layer decided (sync: stored, then `201`; async: `202` at once,
//! stored in the background), and its outcome recorded on that arm.

use async_upload_rollout::tower::RolloutDecision;
use async_upload_rollout::{Arm, Outcome};
use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::in_flight::InFlightGuard;
use crate::state::AppState;
use crate::storage::store;
use crate::upload_id::{check_id, upload_id};

/// The answer to an upload, as JSON.
#[derive(Serialize)]
struct UploadReply<'a> {
    upload_id: &'a str,
    arm: &'static str,
    /// `stored` (201), `accepted` (202) or `rejected` (4xx).
    status: &'static str,
    bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `POST /uploads`, behind the [`RolloutLayer`](async_upload_rollout::tower::RolloutLayer): it took the decision and
/// records the response's outcome (the status: 201 success, 4xx rejected,
/// 500 error) when it has been sent; the async path defers it to the
/// background store.
pub(crate) async fn upload(
    State(state): State<AppState>,
    Extension(decision): Extension<RolloutDecision>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let inner = &state.inner;
    // `assign_upload_id` saw to it that there is one.
    let raw = upload_id(&headers).unwrap_or_default();
    let arm = decision.arm;
    let id = match check_id(raw) {
        Ok(id) => id,
        Err(problem) => {
            let shown = String::from_utf8_lossy(raw);
            return reply(
                StatusCode::BAD_REQUEST,
                &shown,
                arm,
                "rejected",
                0,
                Some(problem),
            );
        }
    };
    let reject = |status: StatusCode, bytes: usize, message: String| {
        reply(status, id, arm, "rejected", bytes, Some(message))
    };
    let body = match axum::body::to_bytes(body, inner.max_upload_bytes).await {
        Ok(body) => body,
        Err(err) => {
            let too_large = content_length(&headers).is_some_and(|n| n > inner.max_upload_bytes)
                || err.to_string().contains("length limit");
            return if too_large {
                reject(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    0,
                    format!("uploads are limited to {} bytes", inner.max_upload_bytes),
                )
            } else {
                reject(
                    StatusCode::BAD_REQUEST,
                    0,
                    format!("cannot read the body: {err}"),
                )
            };
        }
    };
    if body.is_empty() {
        return reject(StatusCode::BAD_REQUEST, 0, "empty upload".to_owned());
    }

    let bytes = body.len();
    match arm {
        Arm::Sync => match store(&inner.store_dir, id, &body).await {
            Ok(()) => reply(StatusCode::CREATED, id, arm, "stored", bytes, None),
            Err(err) => {
                let message = format!("cannot store the upload: {err}");
                reply(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    id,
                    arm,
                    "failed",
                    bytes,
                    Some(message),
                )
            }
        },
        Arm::Async => {
            let guard = InFlightGuard::start(&inner.in_flight);
            let mut response = reply(StatusCode::ACCEPTED, id, arm, "accepted", bytes, None);
            // The upload is not stored yet: the background task records it.
            let outcome = inner.layer.handle().defer(decision, &mut response);
            let task_state = state.clone();
            let task_id = id.to_owned();
            tokio::spawn(async move {
                let inner = &task_state.inner;
                let stored = match store(&inner.store_dir, &task_id, &body).await {
                    Ok(()) if inner.inject.next_fails() => Outcome::Error,
                    Ok(()) => Outcome::Success,
                    Err(err) => {
                        eprintln!("upload_server: async upload {task_id} failed: {err}");
                        Outcome::Error
                    }
                };
                outcome.finish(stored);
                drop(guard);
            });
            response
        }
    }
}

fn reply(
    status: StatusCode,
    id: &str,
    arm: Arm,
    what: &'static str,
    bytes: usize,
    error: Option<String>,
) -> Response {
    let body = UploadReply {
        upload_id: id,
        arm: arm.as_str(),
        status: what,
        bytes,
        error,
    };
    let mut response = (status, axum::Json(body)).into_response();
    // A valid id (or a generated one) is a header-safe token; an invalid
    // one is only quoted in the body.
    if check_id(id.as_bytes()).is_ok()
        && let Ok(value) = HeaderValue::from_str(id)
    {
        response.headers_mut().insert("upload-id", value);
    }
    response
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
