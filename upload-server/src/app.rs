//! The routes: each path and method to its handler, over the [`AppState`]
//! they share. The top of the crate's handlers: it imports them, none
//! imports it.

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::admin::{change_rollout, operate};
use crate::metrics::metrics;
use crate::state::AppState;
use crate::status::{decide, rollout_status};
use crate::upload_id::assign_upload_id;
use crate::uploads::upload;

/// The server's routes over `state`.
pub fn app(state: AppState) -> Router {
    // The layer decides and records; outside it, requests without an id
    // get a generated one first, so every upload is bucketed.
    let uploads = post(upload).layer(state.inner.layer.clone()).layer(
        axum::middleware::map_request_with_state(Arc::clone(&state.inner.ids), assign_upload_id),
    );
    Router::new()
        .route("/uploads", uploads)
        .route("/metrics", get(metrics))
        .route("/rollout", get(rollout_status).put(change_rollout))
        .route("/rollout/{operation}", post(operate))
        .route("/rollout/decide/{upload_id}", get(decide))
        .with_state(state)
}
