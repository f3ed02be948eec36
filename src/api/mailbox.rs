//! The caller's inbox: list (paged by id), show as JSON or raw RFC 5322, download an
//! attachment, delete. An address token sees only its own mailbox; an admin names one.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::Caller;
use super::{ApiError, ApiResult, ApiState};
use crate::address::DirectAddress;
use crate::store::mailbox::MailboxItem;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    after: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
    /// Admin tokens only: whose mailbox.
    #[serde(default)]
    address: Option<String>,
}

fn whose(caller: &Caller, named: Option<&str>) -> ApiResult<String> {
    match (caller, named) {
        (Caller::Address(me), None) => Ok(me.clone()),
        (Caller::Address(me), Some(n)) => match DirectAddress::parse(n) {
            Ok(a) if a.as_str() == me => Ok(me.clone()),
            _ => Err(ApiError::forbidden(format!(
                "this token may read only the mailbox of {me}"
            ))),
        },
        (Caller::Admin, Some(n)) => DirectAddress::parse(n)
            .map(|a| a.as_str().to_string())
            .map_err(|e| ApiError::bad_request("bad_address", format!("address: {e}"))),
        (Caller::Admin, None) => Err(ApiError::bad_request(
            "no_address",
            "an admin token must name the mailbox: ?address=",
        )),
    }
}

#[derive(serde::Serialize)]
pub struct Page {
    address: String,
    messages: Vec<MailboxItem>,
    /// The `after` for the next page; null on the last.
    next_after: Option<i64>,
}

pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Page>> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let address = whose(&caller, q.address.as_deref())?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let after = q.after.unwrap_or(0);
    let items = state.store.mailbox_list(&address, after, limit).await?;
    // A full page may have more behind it; a short one is the end.
    let next = (items.len() as i64 == limit)
        .then(|| items.last().map(|i| i.id))
        .flatten();
    Ok(Json(Page {
        address,
        messages: items,
        next_after: next,
    }))
}

/// Entry `id` if the caller may see it: 404 if there is none, 403 if it is someone else's.
async fn entry(state: &ApiState, caller: &Caller, id: &str) -> ApiResult<MailboxItem> {
    let not_found = || ApiError::not_found(format!("no mailbox entry {id}"));
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let (owner, item) = state.store.mailbox_entry(id).await?.ok_or_else(not_found)?;
    if let Caller::Address(me) = caller
        && *me != owner
    {
        return Err(ApiError::forbidden(format!(
            "mailbox entry {id} is not in the mailbox of {me}"
        )));
    }
    Ok(item)
}

fn wants_raw(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.split(';').next().unwrap_or("").trim() == "message/rfc822")
        })
}

pub async fn show(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let item = entry(&state, &caller, &id).await?;
    let raw = state
        .store
        .mailbox_raw(item.id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("mailbox entry {id} was just deleted")))?;
    if wants_raw(&headers) {
        return Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("message/rfc822"),
            )],
            raw,
        )
            .into_response());
    }
    let view = tokio::task::spawn_blocking(move || super::view::view(&raw))
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the message: {e}")))?;
    let attachments: Vec<serde_json::Value> = view
        .attachments
        .iter()
        .map(|a| {
            serde_json::json!({
                "index": a.index,
                "filename": a.filename,
                "content_type": a.content_type,
                "size": a.size,
                "href": format!("/api/v1/mailbox/{}/attachments/{}", item.id, a.index),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "id": item.id,
        "message_id": item.message_id,
        "sender": item.sender,
        "kind": item.kind,
        "size": item.size,
        "received_at": item.received_at,
        "subject": view.subject.unwrap_or(item.subject),
        "headers": view.headers,
        "text": view.text,
        "attachments": attachments,
    }))
    .into_response())
}

pub async fn attachment(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, index)): Path<(String, String)>,
) -> ApiResult<Response> {
    let item = entry(&state, &caller, &id).await?;
    let missing = || ApiError::not_found(format!("mailbox entry {id} has no attachment {index}"));
    let n: usize = index.parse().map_err(|_| missing())?;
    let raw = state
        .store
        .mailbox_raw(item.id)
        .await?
        .ok_or_else(missing)?;
    let found = tokio::task::spawn_blocking(move || super::view::attachment(&raw, n))
        .await
        .map_err(|e| ApiError::internal(format!("cannot read the message: {e}")))?;
    let (content_type, filename, bytes) = found.ok_or_else(missing)?;
    let mut response = (StatusCode::OK, bytes).into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Some(name) = filename {
        // Only a safe ASCII rendition goes into the header; the JSON view has the real name.
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() && c != '"' && c != '\\' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(response)
}

pub async fn remove(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let item = entry(&state, &caller, &id).await?;
    if !state.store.mailbox_remove(item.id).await? {
        return Err(ApiError::not_found(format!("no mailbox entry {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}
