//! The HTTP API (INTERFACE.md "HTTP API"): EHRs send and read mail, admins manage the
//! gateway, Prometheus scrapes `/metrics`. Served by `hisp serve` on `[api] listen`.
//!
//! Every route is declared once in [`routes`]; the router is built from that table and the
//! OpenAPI document is checked against it, so the document cannot drift from the code.

mod admin;
mod auth;
pub mod compose;
mod error;
mod health;
mod mailbox;
mod messages;
pub mod openapi;
pub mod view;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{MethodRouter, delete, get, post};
use axum::serve::ListenerExt;

pub use error::{ApiError, ApiResult};

use crate::pipeline::{Pipeline, Received, Verdict};
use crate::store::Store;

/// Hands a message to the submission pipeline — the same one SMTP submission uses.
pub type Submitter =
    Arc<dyn Fn(Received) -> Pin<Box<dyn Future<Output = Verdict> + Send>> + Send + Sync>;

/// Wraps any pipeline as a [`Submitter`].
pub fn submitter<P: Pipeline>(pipeline: Arc<P>) -> Submitter {
    Arc::new(move |m| {
        let p = Arc::clone(&pipeline);
        Box::pin(async move { p.process(m).await })
    })
}

/// Whether the gateway's listeners are up, for `/readyz`.
#[derive(Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

pub struct Inner {
    pub store: Store,
    pub hostname: String,
    pub submit: Submitter,
    pub ready: Arc<Readiness>,
    pub tokens: crate::login::TokenCache,
    /// Failed logins per client IP (`[smtp] max_auth_failures`, `auth_failure_backoff`).
    pub backoff: crate::login::Backoff,
    /// Fetches trust bundles for the admin bundle endpoints.
    pub bundle_fetcher: Arc<dyn crate::trust::Fetcher>,
    /// `[api] max_body_size`: the largest request body.
    pub max_body: usize,
    /// `[smtp] max_message_size`: the largest message, however it arrives.
    pub max_message: usize,
}

#[derive(Clone)]
pub struct ApiState(pub Arc<Inner>);

impl std::ops::Deref for ApiState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Every route: method, path (axum syntax, which is also OpenAPI's), handler.
pub fn routes() -> Vec<(&'static str, &'static str, MethodRouter<ApiState>)> {
    vec![
        ("post", "/api/v1/messages", post(messages::send)),
        (
            "get",
            "/api/v1/messages/{message_id}/status",
            get(messages::status),
        ),
        ("get", "/api/v1/mailbox", get(mailbox::list)),
        ("get", "/api/v1/mailbox/{id}", get(mailbox::show)),
        ("delete", "/api/v1/mailbox/{id}", delete(mailbox::remove)),
        (
            "get",
            "/api/v1/mailbox/{id}/attachments/{index}",
            get(mailbox::attachment),
        ),
        ("get", "/api/v1/admin/domains", get(admin::domains)),
        ("post", "/api/v1/admin/domains", post(admin::add_domain)),
        (
            "delete",
            "/api/v1/admin/domains/{name}",
            delete(admin::remove_domain),
        ),
        ("get", "/api/v1/admin/addresses", get(admin::addresses)),
        ("post", "/api/v1/admin/addresses", post(admin::add_address)),
        (
            "delete",
            "/api/v1/admin/addresses/{address}",
            delete(admin::remove_address),
        ),
        ("get", "/api/v1/admin/certs", get(admin::certs)),
        (
            "delete",
            "/api/v1/admin/certs/{sha256}",
            delete(admin::remove_cert),
        ),
        ("get", "/api/v1/admin/anchors", get(admin::anchors)),
        ("post", "/api/v1/admin/anchors", post(admin::add_anchor)),
        (
            "delete",
            "/api/v1/admin/anchors/{id}",
            delete(admin::remove_anchor),
        ),
        ("get", "/api/v1/admin/bundles", get(admin::bundles)),
        ("post", "/api/v1/admin/bundles", post(admin::add_bundle)),
        (
            "post",
            "/api/v1/admin/bundles/{name}/refresh",
            post(admin::refresh_bundle),
        ),
        (
            "delete",
            "/api/v1/admin/bundles/{name}",
            delete(admin::remove_bundle),
        ),
        ("get", "/api/v1/admin/queue", get(admin::queue)),
        (
            "post",
            "/api/v1/admin/queue/{id}/retry",
            post(admin::retry_queue),
        ),
        (
            "delete",
            "/api/v1/admin/queue/{id}",
            delete(admin::drop_queue),
        ),
        ("get", "/api/v1/openapi.json", get(openapi::serve)),
        ("get", "/metrics", get(health::metrics)),
        ("get", "/healthz", get(health::healthz)),
        ("get", "/readyz", get(health::readyz)),
    ]
}

pub fn router(state: ApiState) -> Router {
    let limit = state.max_body;
    let mut router = Router::new();
    for (_, path, handler) in routes() {
        router = router.route(path, handler);
    }
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(count_requests))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see /api/v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; see /api/v1/openapi.json",
    )
}

async fn count_requests(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let class = match response.status().as_u16() {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    };
    metrics::counter!(crate::metrics::HTTP_REQUESTS, "status" => class).increment(1);
    response
}

/// A running API listener.
pub struct Server {
    pub local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Server {
    pub async fn start(addr: SocketAddr, state: ApiState) -> std::io::Result<Server> {
        let listener = crate::listen::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            // Small JSON answers on keep-alive connections: without this, Nagle can hold a
            // response's last segment until the client's delayed ACK.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                eprintln!("hisp: api: server error: {e}");
            }
        });
        Ok(Server {
            local_addr,
            task,
            stop,
        })
    }

    /// Stops accepting and waits for requests in progress.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// The body of a JSON request, parsed with an error that names the field at fault.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path == "." || path.is_empty() {
            format!("invalid JSON body: {inner}")
        } else {
            format!("invalid JSON body at {path}: {inner}")
        };
        ApiError::bad_request("bad_json", message)
    })
}

/// The request body, or the JSON error for a body that was too large or cut short.
fn body_bytes(
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
    limit: usize,
) -> ApiResult<axum::body::Bytes> {
    body.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body is larger than the limit of {limit} bytes ([api] max_body_size)"),
            )
        } else {
            ApiError::bad_request("bad_body", format!("cannot read the request body: {e}"))
        }
    })
}
