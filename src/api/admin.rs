//! `/api/v1/admin/...`: the admin commands over HTTP, for an admin token only. Each change
//! is audited with the API caller as the actor, in the change's own transaction.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::{ApiError, ApiResult, ApiState, body_bytes, parse_json};
use crate::address::{DirectAddress, normalize_domain};
use crate::certinfo::{CertInfo, parse_certs};

fn domain_arg(d: &str) -> ApiResult<String> {
    normalize_domain(d).map_err(|e| ApiError::bad_request("bad_domain", e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainFilter {
    #[serde(default)]
    domain: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Force {
    #[serde(default)]
    force: bool,
}

type Q<T> = Result<Query<T>, axum::extract::rejection::QueryRejection>;

fn query<T>(q: Q<T>) -> ApiResult<T> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::bad_request("bad_query", e.body_text()))
}

pub async fn domains(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    Ok(Json(
        json!({ "domains": state.store.list_domains().await? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDomain {
    name: String,
}

pub async fn add_domain(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require_admin()?;
    let req: NewDomain = parse_json(&body_bytes(body, state.max_body)?)?;
    let name = domain_arg(&req.name)?;
    let d = state
        .store
        .acting_as(&caller.actor())
        .add_domain(&name)
        .await?;
    Ok((StatusCode::CREATED, Json(json!(d))))
}

pub async fn remove_domain(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
    force: Q<Force>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let force = query(force)?.force;
    let d = state
        .store
        .remove_domain(&domain_arg(&name)?, force)
        .await?;
    Ok(Json(json!(d)))
}

pub async fn addresses(
    State(state): State<ApiState>,
    caller: Caller,
    filter: Q<DomainFilter>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let domain = query(filter)?.domain.map(|d| domain_arg(&d)).transpose()?;
    Ok(Json(
        json!({ "addresses": state.store.list_addresses(domain.as_deref()).await? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAddress {
    address: String,
    /// A login password; without one the address only receives.
    #[serde(default)]
    password: Option<String>,
}

pub async fn add_address(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require_admin()?;
    let req: NewAddress = parse_json(&body_bytes(body, state.max_body)?)?;
    let addr = DirectAddress::parse(&req.address)
        .map_err(|e| ApiError::bad_request("bad_address", e.to_string()))?;
    let hash = match req.password {
        Some(p) => Some(
            tokio::task::spawn_blocking(move || crate::auth::hash_password(&p))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?
                .map_err(|e| ApiError::bad_request("bad_password", e.to_string()))?,
        ),
        None => None,
    };
    let a = state
        .store
        .acting_as(&caller.actor())
        .add_address(&addr, hash.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(json!(a))))
}

pub async fn remove_address(
    State(state): State<ApiState>,
    caller: Caller,
    Path(address): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let addr = DirectAddress::parse(&address)
        .map_err(|e| ApiError::bad_request("bad_address", e.to_string()))?;
    let a = state
        .store
        .acting_as(&caller.actor())
        .remove_address(addr.as_str())
        .await?;
    Ok(Json(json!(a)))
}

pub async fn certs(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    Ok(Json(
        json!({ "certs": state.store.list_local_certs().await? }),
    ))
}

pub async fn remove_cert(
    State(state): State<ApiState>,
    caller: Caller,
    Path(sha256): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let c = state
        .store
        .acting_as(&caller.actor())
        .remove_local_cert(&sha256)
        .await?;
    Ok(Json(json!(c)))
}

pub async fn anchors(
    State(state): State<ApiState>,
    caller: Caller,
    filter: Q<DomainFilter>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let domain = query(filter)?.domain.map(|d| domain_arg(&d)).transpose()?;
    Ok(Json(
        json!({ "anchors": state.store.list_trust_anchors(domain.as_deref()).await? }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAnchor {
    domain: String,
    /// One or more PEM certificates (or a PEM PKCS#7 bundle).
    pem: String,
    #[serde(default)]
    incoming: bool,
    #[serde(default)]
    outgoing: bool,
}

pub async fn add_anchor(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require_admin()?;
    let req: NewAnchor = parse_json(&body_bytes(body, state.max_body)?)?;
    let domain = domain_arg(&req.domain)?;
    let certs = parse_certs(req.pem.as_bytes(), "pem")
        .map_err(|e| ApiError::bad_request("bad_certificate", e.to_string()))?;
    let mut parsed = Vec::new();
    for cert in &certs {
        let der = cert
            .to_der()
            .map_err(|e| ApiError::bad_request("bad_certificate", e.to_string()))?;
        parsed.push((CertInfo::of(cert), der));
    }
    // Neither flag means both, as on the command line.
    let (incoming, outgoing) = if req.incoming || req.outgoing {
        (req.incoming, req.outgoing)
    } else {
        (true, true)
    };
    let changes = state
        .store
        .acting_as(&caller.actor())
        .add_anchors(&domain, &parsed, incoming, outgoing)
        .await?;
    let list: Vec<Value> = changes
        .iter()
        .map(|(a, c)| json!({"anchor": a, "change": c}))
        .collect();
    Ok((StatusCode::CREATED, Json(json!({ "anchors": list }))))
}

fn id_arg(id: &str) -> ApiResult<i64> {
    id.parse()
        .map_err(|_| ApiError::not_found(format!("no entry with id {id:?}")))
}

pub async fn remove_anchor(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let a = state
        .store
        .acting_as(&caller.actor())
        .remove_anchor(id_arg(&id)?)
        .await?;
    Ok(Json(json!(a)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueQuery {
    #[serde(default)]
    all: bool,
}

pub async fn queue(
    State(state): State<ApiState>,
    caller: Caller,
    q: Q<QueueQuery>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let all = query(q)?.all;
    Ok(Json(json!({ "queue": state.store.queue_list(all).await? })))
}

pub async fn retry_queue(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let id = id_arg(&id)?;
    let n = state
        .store
        .acting_as(&caller.actor())
        .queue_retry(id)
        .await?;
    Ok(Json(json!({ "id": id, "recipients": n })))
}

pub async fn drop_queue(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let id = id_arg(&id)?;
    let n = state
        .store
        .acting_as(&caller.actor())
        .queue_drop(id)
        .await?;
    Ok(Json(json!({ "id": id, "recipients": n })))
}

fn bundle_error(e: crate::bundles::BundlesError) -> ApiError {
    use crate::bundles::BundlesError;
    match e {
        BundlesError::Invalid(m) => ApiError::bad_request("bad_bundle", m),
        BundlesError::Store(s) => s.into(),
        other => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "bundle_unusable",
            other.to_string(),
        ),
    }
}

pub async fn bundles(State(state): State<ApiState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let list = crate::bundles::list(&state.store)
        .await
        .map_err(bundle_error)?;
    Ok(Json(json!({ "bundles": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBundleReq {
    name: String,
    /// http(s) URL of the .p7b, fetched now and on every refresh.
    url: String,
    /// PEM of the certificate that must have signed the bundle, if it is signed.
    #[serde(default)]
    signer_pem: Option<String>,
    domains: Vec<String>,
    #[serde(default)]
    incoming: bool,
    #[serde(default)]
    outgoing: bool,
    /// Refresh interval, e.g. "1h" (default "1h").
    #[serde(default)]
    refresh: Option<String>,
}

pub async fn add_bundle(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    caller.require_admin()?;
    let req: NewBundleReq = parse_json(&body_bytes(body, state.max_body)?)?;
    let signer_der = match &req.signer_pem {
        Some(pem) => {
            let certs = parse_certs(pem.as_bytes(), "signer_pem")
                .map_err(|e| ApiError::bad_request("bad_certificate", e.to_string()))?;
            let [one] = certs.as_slice() else {
                return Err(ApiError::bad_request(
                    "bad_certificate",
                    "signer_pem must hold exactly one certificate",
                ));
            };
            Some(
                one.to_der()
                    .map_err(|e| ApiError::bad_request("bad_certificate", e.to_string()))?,
            )
        }
        None => None,
    };
    let (incoming, outgoing) = if req.incoming || req.outgoing {
        (req.incoming, req.outgoing)
    } else {
        (true, true)
    };
    let mut domains = Vec::new();
    for d in &req.domains {
        domains.push(crate::store::bundles::BundleDomain {
            domain: domain_arg(d)?,
            incoming,
            outgoing,
        });
    }
    let refresh = crate::config::Duration::parse(req.refresh.as_deref().unwrap_or("1h"))
        .map_err(|e| ApiError::bad_request("bad_refresh", format!("refresh: {e}")))?
        .std();
    let spec = crate::bundles::BundleSpec {
        name: req.name,
        source: crate::bundles::Source::Url(req.url),
        signer_der,
        domains,
        refresh,
    };
    let (stored, anchors) = crate::bundles::add(
        &state.store,
        state.bundle_fetcher.clone(),
        &spec,
        &caller.actor(),
    )
    .await
    .map_err(bundle_error)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "bundle": stored, "anchors": anchors })),
    ))
}

pub async fn refresh_bundle(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let outcomes = crate::bundles::refresh(
        &state.store,
        state.bundle_fetcher.clone(),
        Some(&name),
        &caller.actor(),
    )
    .await
    .map_err(bundle_error)?;
    Ok(Json(json!({ "outcomes": outcomes })))
}

pub async fn remove_bundle(
    State(state): State<ApiState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let b = crate::bundles::remove(&state.store, &name, &caller.actor())
        .await
        .map_err(bundle_error)?;
    Ok(Json(json!(b)))
}
