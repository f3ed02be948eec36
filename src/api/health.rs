//! `/metrics` (Prometheus text), `/healthz` (the process answers) and `/readyz` (the store
//! answers and the listeners are up). No auth: these sit behind the operator's network
//! policy like any scrape target, and reveal counts, never content.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiResult, ApiState};
use crate::metrics as m;

pub async fn metrics(State(state): State<ApiState>) -> ApiResult<Response> {
    // Stored state, read fresh on every scrape.
    let (depth, oldest) = state.store.queue_stats().await?;
    metrics::gauge!(m::QUEUE_DEPTH).set(depth as f64);
    let age = oldest
        .map(|t| ((crate::clock::now_ms() - t).max(0) as f64) / 1000.0)
        .unwrap_or(0.0);
    metrics::gauge!(m::QUEUE_OLDEST_SECONDS).set(age);
    let counts = state.store.tracking_counts().await?;
    for s in crate::notify::tracking::State::ALL {
        let name = s.as_str();
        let n = counts
            .iter()
            .find(|(k, _)| k == name)
            .map_or(0, |(_, n)| *n);
        metrics::gauge!(m::TRACKING, "state" => name).set(n as f64);
    }
    if let Ok(bundles) = crate::bundles::counters(&state.store).await {
        for b in bundles {
            let name = b.name.clone();
            metrics::gauge!(m::BUNDLE_ANCHORS, "bundle" => name.clone()).set(b.anchors as f64);
            metrics::gauge!(m::BUNDLE_FAILURES, "bundle" => name.clone())
                .set(b.failures_total as f64);
            metrics::gauge!(m::BUNDLE_CONSECUTIVE_FAILURES, "bundle" => name.clone())
                .set(b.consecutive_failures as f64);
            metrics::gauge!(m::BUNDLE_LAST_SUCCESS, "bundle" => name)
                .set(b.last_success_at.unwrap_or(0) as f64 / 1000.0);
        }
    }
    let handle = m::handle();
    handle.run_upkeep();
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

pub async fn readyz(State(state): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    let store = sqlx::query("SELECT 1").execute(state.store.pool()).await;
    let listeners = state.ready.get();
    if let Err(e) = &store {
        return Err(ApiError::unavailable(
            format!("the store does not answer: {e}"),
            5,
        ));
    }
    if !listeners {
        return Err(ApiError::unavailable(
            "the SMTP listeners are not up yet",
            1,
        ));
    }
    Ok(Json(
        serde_json::json!({ "status": "ready", "store": "ok", "listeners": "up" }),
    ))
}
