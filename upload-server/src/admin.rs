//! The admin routes: `PUT /rollout` (the config every service reads, never
//! the percent) and `POST /rollout/{rollback,resume,advance,pause}` (the
//! operator's actions, through the controller). Both need the bearer token
//! ([`crate::auth`]); their bodies are small JSON objects whose errors name
//! the field.

use async_upload_rollout::{
    Percent, Rollout, RolloutConfig,
    act::{ConfigStore, Operation, OperatorError},
};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::auth::authorize;
use crate::json_error::error;
use crate::state::AppState;
use crate::status::RolloutBody;

/// Largest body of an admin request (`PUT /rollout`, the operator routes).
pub const MAX_ADMIN_BODY: usize = 64 * 1024;

/// The body of `PUT /rollout`: at least one field; never the percent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RolloutChange {
    kill_switch: Option<bool>,
    force_async: Option<Vec<String>>,
    force_sync: Option<Vec<String>>,
    /// Refused with an explanation: the percent is the controller's.
    percent: Option<serde::de::IgnoredAny>,
}

/// Reads an admin request's body, at most [`MAX_ADMIN_BODY`] bytes; a
/// larger one is a JSON `413`.
#[allow(clippy::result_large_err)] // the error is the response itself
async fn admin_body(body: Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, MAX_ADMIN_BODY)
        .await
        .map_err(|err| {
            if err.to_string().contains("length limit") {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("admin request bodies are limited to {MAX_ADMIN_BODY} bytes"),
                )
            } else {
                error(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {err}"),
                )
            }
        })
}

/// Parses an admin request's JSON body as `T`, or says what is wrong in
/// the API's terms: not JSON (where), or which field has what problem.
fn parse_admin<T: serde::de::DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(format!("the body is empty: expected {expected}"));
    }
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|err| format!("the body is not JSON ({err}): expected {expected}"))?;
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            format!("{inner}: expected {expected}")
        } else {
            format!("field `{path}`: {inner}: expected {expected}")
        }
    })
}

pub(crate) async fn change_rollout(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(denied) = authorize(state.inner.admin_token.as_deref(), &headers) {
        return denied;
    }
    let body = match admin_body(body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    const EXPECTED: &str = r#"an object such as {"kill_switch": true} or {"force_sync": ["id-1"]}"#;
    let change: RolloutChange = match parse_admin(&body, EXPECTED) {
        Ok(change) => change,
        Err(problem) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid change: {problem}"),
            );
        }
    };
    if change.percent.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "the percent is not set here: it follows the rollout's state (use POST /rollout/advance, /rollback, /resume or /pause)".to_owned(),
        );
    }
    if change.kill_switch.is_none() && change.force_async.is_none() && change.force_sync.is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid change: give `kill_switch`, `force_async` or `force_sync`".to_owned(),
        );
    }
    let apply = move |config: &mut RolloutConfig| {
        if let Some(on) = change.kill_switch {
            config.kill_switch = on;
        }
        if let Some(ids) = &change.force_async {
            config.force_async.clone_from(ids);
        }
        if let Some(ids) = &change.force_sync {
            config.force_sync.clone_from(ids);
        }
    };
    let Some(store) = state.inner.config_store.clone() else {
        // No shared config: this process only. One atomic store of
        // everything but the percent (and any halt): a decision sees every
        // field changed or none.
        let before = state.inner.rollout.update(apply);
        let after = state.inner.rollout.config();
        eprintln!(
            "upload_server: admin changed this process's config: kill switch {} -> {}, {} -> {} force_async and {} -> {} force_sync ids",
            before.kill_switch,
            after.kill_switch,
            before.force_async.len(),
            after.force_async.len(),
            before.force_sync.len(),
            after.force_sync.len()
        );
        let mut body = RolloutBody::of(&state);
        body.config_written_to =
            Some("this process only (no --config file and no fleet)".to_owned());
        return axum::Json(body).into_response();
    };
    // The shared config: compare-and-swap, then applied here at once (the
    // other services apply it at their next poll).
    let worker = state.clone();
    let written = tokio::task::spawn_blocking(move || {
        let written = write_shared_config(&*store, &worker.inner.rollout, apply);
        if written.is_ok() {
            let _ = worker.inner.monitor.lock().refresh();
        }
        written.map(|revision| (store.describe_config(), revision))
    })
    .await;
    match written {
        Ok(Ok((store, revision))) => {
            eprintln!("upload_server: admin changed the config in {store} (revision {revision})");
            let mut body = RolloutBody::of(&state);
            body.config_written_to = Some(store);
            axum::Json(body).into_response()
        }
        Ok(Err((status, message))) => error(status, message),
        Err(join) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the change did not finish: {join}"),
        ),
    }
}

/// Applies `change` to the shared config in `store` with a compare-and-swap
/// (reading again up to five times when another writer gets in first).
/// With none stored yet, it starts from this process's config (its percent,
/// the starting request, 0). Returns the new revision, or the status and
/// message to answer.
fn write_shared_config(
    store: &dyn ConfigStore,
    rollout: &Rollout,
    mut change: impl FnMut(&mut RolloutConfig),
) -> Result<u64, (StatusCode, String)> {
    let unavailable =
        |err: async_upload_rollout::StoreError| (StatusCode::SERVICE_UNAVAILABLE, err.to_string());
    for _ in 0..5 {
        let (mut config, expected) = match store.load_config_revision() {
            Ok(Some((config, revision))) => (config, Some(revision)),
            Ok(None) => {
                let mut config = RolloutConfig::clone(&rollout.config());
                config.percent = Percent::ZERO;
                (config, None)
            }
            Err(err) if err.is_corrupt() => {
                return Err((
                    StatusCode::CONFLICT,
                    format!(
                        "{err}; replace it whole with: async-upload-rollout config set --overwrite ..."
                    ),
                ));
            }
            Err(err) => return Err(unavailable(err)),
        };
        change(&mut config);
        match store.compare_and_swap_config(expected, &config) {
            Ok(revision) => return Ok(revision.0),
            Err(err) if err.is_conflict() => {}
            Err(err) => return Err(unavailable(err)),
        }
    }
    Err((
        StatusCode::CONFLICT,
        format!(
            "{}: other writers kept changing the config; try again",
            store.describe_config()
        ),
    ))
}

/// The body of the operator routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorRequest {
    reason: String,
}

pub(crate) async fn operate(
    State(state): State<AppState>,
    axum::extract::Path(operation): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let operation = match operation.as_str() {
        "rollback" => Operation::Rollback,
        "resume" => Operation::Resume,
        "advance" => Operation::Advance,
        "pause" => Operation::Pause,
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no operation {other:?}: rollback, resume, advance or pause"),
            );
        }
    };
    if let Err(denied) = authorize(state.inner.admin_token.as_deref(), &headers) {
        return denied;
    }
    let body = match admin_body(body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let request: OperatorRequest = match parse_admin(&body, r#"{"reason": "..."}"#) {
        Ok(request) => request,
        Err(problem) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid request: {problem}"),
            );
        }
    };
    if request.reason.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "a reason is required: it goes into the state and the log".to_owned(),
        );
    }
    // The controller's lock waits for a tick in progress (a store write, a
    // log flush): off the async runtime's worker threads.
    let worker = state.clone();
    let result = tokio::task::spawn_blocking(move || {
        worker
            .inner
            .monitor
            .lock()
            .operate(operation, &request.reason)
    })
    .await;
    match result {
        Ok(Ok(done)) => {
            eprintln!("upload_server: operator {operation}: {done}");
            axum::Json(RolloutBody::of(&state)).into_response()
        }
        Ok(Err(OperatorError::Refused(refused))) => {
            error(StatusCode::CONFLICT, refused.to_string())
        }
        Ok(Err(OperatorError::Store(err))) if err.is_conflict() => {
            error(StatusCode::CONFLICT, err.to_string())
        }
        Ok(Err(err)) => error(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
        Err(join) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the operation did not finish: {join}"),
        ),
    }
}
