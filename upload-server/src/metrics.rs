//! `GET /metrics`: the crate's Prometheus exporter, in OpenMetrics when the
//! scraper asks for it, else the Prometheus text format 0.0.4.

use async_upload_rollout::export::prometheus::{
    ControllerStatus, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE,
};
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

pub(crate) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let inner = &state.inner;
    let view = inner.monitor.view();
    inner.exporter.set_status(ControllerStatus::of(&view));
    inner.exporter.set_run(view.run.clone());
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"));
    let (content_type, body) = if openmetrics {
        (OPENMETRICS_CONTENT_TYPE, inner.exporter.encode())
    } else {
        (
            PROMETHEUS_TEXT_CONTENT_TYPE,
            inner.exporter.encode_prometheus_text(),
        )
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}
