//! `POST /api/v1/messages` and `GET /api/v1/messages/{message_id}/status`: sending through
//! the same submission pipeline as SMTP port 587, and following the result per recipient.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::Caller;
use super::compose::{self, Compose};
use super::{ApiError, ApiResult, ApiState, body_bytes, parse_json};
use crate::address::DirectAddress;
use crate::pipeline::{Received, Recipient, Role, Verdict};

fn same_address(a: &str, b: &str) -> bool {
    match (DirectAddress::parse(a), DirectAddress::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The sender a caller may use: an address token only itself; an admin any local address,
/// named by the message.
async fn sender(state: &ApiState, caller: &Caller, named: Option<&str>) -> ApiResult<String> {
    match caller {
        Caller::Address(me) => match named {
            Some(n) if !same_address(n, me) => Err(ApiError::forbidden(format!(
                "this token may send only as {me}, not as {n}"
            ))),
            _ => Ok(me.clone()),
        },
        Caller::Admin => {
            let named = named.ok_or_else(|| {
                ApiError::bad_request(
                    "no_sender",
                    "an admin token must name the sender (\"from\", or the From header of a raw message)",
                )
            })?;
            let a = DirectAddress::parse(named)
                .map_err(|e| ApiError::bad_request("bad_address", format!("from: {e}")))?;
            match state.store.address(a.as_str()).await? {
                Some(_) => Ok(a.as_str().to_string()),
                None => Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "unknown_sender",
                    format!("{a} is not a local address (hisp address add)"),
                )),
            }
        }
    }
}

pub async fn send(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body_bytes(body, state.max_body)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let new_id = crate::pipeline::outbound::new_message_id(&state.hostname);
    let (from, message_id, recipients, message) = match content_type.as_str() {
        "message/rfc822" => {
            let raw = compose::raw(&body, &new_id)
                .map_err(|e| ApiError::bad_request("bad_message", e.to_string()))?;
            let from = sender(&state, &caller, raw.from.as_deref()).await?;
            (from, raw.message_id, raw.recipients, raw.message)
        }
        "application/json" => {
            let c: Compose = parse_json(&body)?;
            let from = sender(&state, &caller, c.from.as_deref()).await?;
            let boundary = format!("hisp-{}", &new_id[1..17]);
            let date = crate::clock::rfc5322_date(crate::clock::now_secs());
            let built = compose::build(&c, &from, &new_id, &date, &boundary)
                .map_err(|e| ApiError::bad_request("bad_message", e.to_string()))?;
            (from, new_id, built.recipients, built.message)
        }
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Content-Type {other:?}: send application/json or message/rfc822"),
            ));
        }
    };
    if recipients.is_empty() {
        return Err(ApiError::bad_request(
            "no_recipients",
            "the message has no recipients (to, cc or bcc)",
        ));
    }
    if message.len() > state.max_message {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the message is {} bytes; the limit is {} ([smtp] max_message_size)",
                message.len(),
                state.max_message
            ),
        ));
    }
    let mut rcpts = Vec::with_capacity(recipients.len());
    for r in &recipients {
        let a = DirectAddress::parse(r)
            .map_err(|e| ApiError::bad_request("bad_address", format!("recipient {r}: {e}")))?;
        if !rcpts.iter().any(|x: &Recipient| x.address == a.as_str()) {
            rcpts.push(Recipient {
                address: a.as_str().to_string(),
                domain: a.domain().to_string(),
                notify: None,
                orcpt: None,
            });
        }
    }
    // The same trace field SMTP submission adds, with HTTP as the protocol.
    let mut body = format!(
        "Received: from api ({})\r\n\tby {} with HTTP; {}\r\n",
        peer.ip(),
        state.hostname,
        crate::clock::rfc5322_date(crate::clock::now_secs())
    )
    .into_bytes();
    body.extend_from_slice(&message);
    let received = Received {
        role: Role::Submission,
        peer,
        helo: "api".into(),
        authenticated: Some(from.clone()),
        tls: false,
        mail_from: from,
        envid: None,
        ret: None,
        recipients: rcpts,
        body,
    };
    match (state.submit)(received).await {
        Verdict::Accept(_) => {
            let id = message_id
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string();
            Ok((
                StatusCode::ACCEPTED,
                Json(serde_json::json!({
                    "id": id,
                    "message_id": message_id,
                    "status": format!("/api/v1/messages/{id}/status"),
                })),
            )
                .into_response())
        }
        Verdict::Reject(reply) if reply.code < 500 => Err(ApiError {
            retry_after: Some(30),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporary_failure",
                format!("{} {} {}", reply.code, reply.status, reply.text),
            )
        }),
        Verdict::Reject(reply) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "rejected",
            format!("{} {} {}", reply.code, reply.status, reply.text),
        )),
    }
}

pub async fn status(
    State(state): State<ApiState>,
    caller: Caller,
    Path(message_id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = crate::headers::bracketed_message_id(&message_id);
    let records = state.store.tracking(&id).await?;
    let Some(first) = records.first() else {
        return Err(ApiError::not_found(format!(
            "no outbound message {id} is tracked"
        )));
    };
    if let Caller::Address(me) = &caller
        && !same_address(&first.sender, me)
    {
        return Err(ApiError::forbidden(format!(
            "{id} was not sent by {me}; a token sees only its own messages"
        )));
    }
    Ok(Json(serde_json::json!({
        "message_id": id,
        "sender": first.sender,
        "recipients": records,
    })))
}
