//! Who is calling: a bearer token (address or admin) or HTTP Basic with a Direct address and
//! its password. Failures are audited; the credentials never are.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;

use super::{ApiError, ApiState};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin,
    /// A local address, normalised.
    Address(String),
}

impl Caller {
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::Admin => Ok(()),
            Caller::Address(_) => Err(ApiError::forbidden(
                "this endpoint needs an admin token (hisp token create --admin)",
            )),
        }
    }

    /// For the audit log's actor column.
    pub fn actor(&self) -> String {
        match self {
            Caller::Admin => "api:admin".to_string(),
            Caller::Address(a) => format!("api:{a}"),
        }
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let peer = ip.map_or_else(|| "unknown".into(), |ip| ip.to_string());
        if let Some(ip) = ip
            && let Some(wait) = state.backoff.locked(ip)
        {
            return Err(ApiError {
                retry_after: Some(wait.as_secs().max(1) as u32),
                ..ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "too_many_failures",
                    "too many failed logins from your address; try again later",
                )
            });
        }
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            // Not a failed login: nothing was tried.
            return Err(ApiError::unauthorized(
                "send Authorization: Bearer TOKEN (hisp token create) or Basic with a Direct address and its password",
            ));
        };
        let caller = authenticate(value, state, &peer).await;
        if let Some(ip) = ip {
            match &caller {
                Ok(_) => state.backoff.succeeded(ip),
                Err(e) if e.status == axum::http::StatusCode::UNAUTHORIZED => {
                    state.backoff.failed(ip)
                }
                Err(_) => {}
            }
        }
        caller
    }
}

/// Checks the credentials presented in the Authorization header.
async fn authenticate(
    value: &axum::http::HeaderValue,
    state: &ApiState,
    peer: &str,
) -> Result<Caller, ApiError> {
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not ASCII"))?;
    let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
    let actor = format!("api:{peer}");
    if scheme.eq_ignore_ascii_case("bearer") {
        let token = state.tokens.check(&state.store, credentials.trim()).await?;
        return match token {
            Some(t) if t.admin => Ok(Caller::Admin),
            Some(t) => match t.address {
                Some(a) => Ok(Caller::Address(a)),
                // The address was removed; the token died with it.
                None => Err(ApiError::unauthorized(
                    "this token's address no longer exists",
                )),
            },
            None => {
                crate::login::audit(&state.store, &actor, "bearer token", false, "api").await;
                Err(ApiError::unauthorized("unknown or revoked token"))
            }
        };
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                ApiError::unauthorized("Basic credentials are not valid base64 UTF-8")
            })?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| ApiError::unauthorized("Basic credentials need address:password"))?;
        let who = crate::login::check_password(&state.store, user, password.to_string()).await;
        crate::login::audit(&state.store, &actor, user, who.is_some(), "api").await;
        return who
            .map(Caller::Address)
            .ok_or_else(|| ApiError::unauthorized("wrong address or password"));
    }
    Err(ApiError::unauthorized(format!(
        "unsupported authorization scheme {scheme:?}; use Bearer or Basic"
    )))
}
