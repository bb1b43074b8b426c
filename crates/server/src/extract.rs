//! Request extractors that answer bad input in the API's error format.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use store::User;

use crate::AppState;
use crate::crypto::sha256_hex;
use crate::error::{ApiError, ErrorCode};

/// A JSON body; malformed JSON is answered with its line and column, oversized bodies with 413.
pub struct ApiJson<T>(pub T);

/// Bodies larger than this are parsed on the blocking pool, off the threads that answer requests.
const PARSE_INLINE_BYTES: usize = 64 * 1024;

impl<T: DeserializeOwned + Send + 'static, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type =
            req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::BodyTooLarge, "the request body is larger than this server accepts")
            } else {
                ApiError::new(ErrorCode::BadBody, rejection.body_text())
            }
        })?;
        if !content_type.is_empty() && !content_type.starts_with("application/json") {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!("expected application/json, got {content_type}"),
            ));
        }
        if bytes.len() <= PARSE_INLINE_BYTES {
            return parse_json(&bytes).map(ApiJson);
        }
        tokio::task::spawn_blocking(move || parse_json(&bytes)).await.map_err(ApiError::internal)?.map(ApiJson)
    }
}

/// A JSON body that may be left out: an empty body is `T::default()`.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default + Send + 'static, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let empty = req.headers().get(header::CONTENT_LENGTH).is_some_and(|length| length == "0")
            || (req.headers().get(header::CONTENT_LENGTH).is_none()
                && req.headers().get(header::TRANSFER_ENCODING).is_none());
        if empty {
            return Ok(OptionalJson(T::default()));
        }
        ApiJson::from_request(req, state).await.map(|ApiJson(body)| OptionalJson(body))
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|err| {
        let (line, column) = (err.line(), err.column());
        let message = if err.is_data() {
            format!("request body: {err}")
        } else {
            format!("request body: {}", domain::json_error_text(&err))
        };
        ApiError::new(ErrorCode::MalformedJson, message)
            .with_details(serde_json::json!({"line": line, "column": column}))
    })
}

/// The signed-in user, from `Authorization: Bearer <token>` or the console's session cookie.
pub struct CurrentUser(pub User);

/// The user the route guard authenticated, kept in the request so the credential is looked up once.
#[derive(Clone)]
pub struct Authenticated(pub User);

/// The project of a `P/...` route with the caller's access to it, as the route guard checked it
/// (a `ProjectAdmin` route only reaches its handler when the caller is a project admin).
pub struct Project(pub crate::access::ProjectAccess);

/// The organization of a `/orgs/{id}/...` route with the caller's role, as the route guard
/// checked it (an `OrgAdmin` route only reaches its handler when the caller administers it).
pub struct OrgOf(pub crate::access::OrgAccess);

impl<S: Send + Sync> FromRequestParts<S> for OrgOf {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<crate::access::OrgAccess>()
            .cloned()
            .map(OrgOf)
            .ok_or_else(|| ApiError::internal("an organization handler on a route without an organization rule"))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Project {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<crate::access::ProjectAccess>()
            .cloned()
            .map(Project)
            .ok_or_else(|| ApiError::internal("a project handler on a route without a project access rule"))
    }
}

pub const SESSION_COOKIE: &str = "edgefleet_session";

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(Authenticated(user)) = parts.extensions.get::<Authenticated>() {
            return Ok(CurrentUser(user.clone()));
        }
        let token = match bearer(parts) {
            Some(token) => token,
            None => {
                let token = cookie(parts, SESSION_COOKIE).ok_or_else(|| {
                    ApiError::unauthorized(
                        "sign in first: send Authorization: Bearer <token> (POST /api/v1/auth/login gives one)",
                    )
                })?;
                check_csrf(parts)?;
                token
            }
        };
        let user = state.store.user_by_token(&sha256_hex(token.as_bytes())).await?;
        user.map(CurrentUser)
            .ok_or_else(|| ApiError::unauthorized("the token is unknown, expired or revoked; sign in again"))
    }
}

/// The hash of the credential the request came with (bearer token or session cookie), for long
/// requests that must stop when it is revoked (live events).
pub struct CredentialHash(pub String);

impl<S: Send + Sync> FromRequestParts<S> for CredentialHash {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let token = bearer(parts)
            .or_else(|| cookie(parts, SESSION_COOKIE))
            .ok_or_else(|| ApiError::unauthorized("sign in first"))?;
        Ok(CredentialHash(sha256_hex(token.as_bytes())))
    }
}

/// A browser session (cookie) may change things only from edgefleet's own pages: the request
/// carries the console's header, which other sites cannot set without CORS, or an `Origin` that is
/// this server.
fn check_csrf(parts: &Parts) -> Result<(), ApiError> {
    if matches!(parts.method.as_str(), "GET" | "HEAD" | "OPTIONS") || parts.headers.contains_key(CSRF_HEADER) {
        return Ok(());
    }
    let host = parts.headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = parts.headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) if origin.split("://").nth(1) == Some(host) => Ok(()),
        _ => Err(ApiError::new(
            ErrorCode::CsrfCheckFailed,
            format!(
                "a request signed in by cookie must come from edgefleet's console (send {CSRF_HEADER}) or use a bearer token"
            ),
        )),
    }
}

/// The header the console sends with every change.
pub const CSRF_HEADER: &str = "x-edgefleet-csrf";

fn bearer(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

fn cookie(parts: &Parts, name: &str) -> Option<String> {
    cookie_in(&parts.headers, name)
}

/// A cookie's value from the request's `Cookie` header.
pub fn cookie_in(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    let header = headers.get(header::COOKIE)?.to_str().ok()?;
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

/// Page parameters shared by list routes.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

/// A query string as key/value pairs; repeated keys (`tag=a&tag=b`) keep every value.
pub struct Query(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let pairs = serde_urlencoded::from_str(parts.uri.query().unwrap_or_default())
            .map_err(|e| ApiError::new(ErrorCode::BadQuery, format!("query string: {e}")))?;
        Ok(Query(pairs))
    }
}

impl Query {
    /// Refuses parameters the route does not know, so a typo does not silently match everything.
    pub fn only(&self, allowed: &[&str]) -> Result<&Query, ApiError> {
        match self.0.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            Some((key, _)) => Err(ApiError::new(
                ErrorCode::BadQuery,
                format!("unknown query parameter `{key}`; this route takes {}", allowed.join(", ")),
            )),
            None => Ok(self),
        }
    }

    pub fn one(&self, key: &str) -> Option<String> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.clone()).filter(|v| !v.is_empty())
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.0.iter().filter(|(k, v)| k == key && !v.is_empty()).map(|(_, v)| v.clone()).collect()
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.one(key)
            .map(|v| {
                v.parse::<i64>().map_err(|_| {
                    ApiError::new(ErrorCode::BadQuery, format!("`{key}` must be a whole number, got `{v}`"))
                })
            })
            .transpose()
    }

    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = self.int("limit")?.unwrap_or(50);
        let offset = self.int("offset")?.unwrap_or(0);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::new(ErrorCode::BadQuery, format!("limit must be between 1 and 1000, got {limit}")));
        }
        if offset < 0 {
            return Err(ApiError::new(ErrorCode::BadQuery, "offset must not be negative"));
        }
        Ok(Page { limit, offset })
    }
}
