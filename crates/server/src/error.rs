//! The one error type of the API: a stable snake_case code, an HTTP status, a sentence for people,
//! and details for programs. Internal causes go to the log, never to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::Problem;
use serde_json::{Value, json};
use store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), details: json!({}) }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(what: &str) -> ApiError {
        let code = match what {
            "project" => "project_not_found",
            "organization" => "org_not_found",
            "edge service" => "edge_service_not_found",
            "template" => "template_not_found",
            "template version" => "template_version_not_found",
            "delivery" => "delivery_not_found",
            "user" => "user_not_found",
            _ => "not_found",
        };
        ApiError::new(StatusCode::NOT_FOUND, code, format!("{what} not found"))
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// A document failed its checks: every problem is listed with where it is.
    pub fn invalid_document(code: &'static str, what: &str, problems: &[Problem]) -> ApiError {
        let first = problems.first().map(ToString::to_string).unwrap_or_default();
        let more =
            if problems.len() > 1 { format!(" (and {} more problems)", problems.len() - 1) } else { String::new() };
        ApiError::unprocessable(code, format!("{what}: {first}{more}")).with_details(json!({"problems": problems}))
    }

    pub fn internal(err: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %err, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error; the server log has the details",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::Conflict { what, name } => {
                let code = match what {
                    "template" => "template_name_taken",
                    "edge service" => "edge_service_name_taken",
                    "organization" => "org_name_taken",
                    "project" => "project_name_taken",
                    "user" => "username_taken",
                    "template version" => "template_changed",
                    _ => "conflict",
                };
                let message = if code == "template_changed" {
                    format!(
                        "the template changed meanwhile (version {name} is no longer current); reload and edit again"
                    )
                } else {
                    format!("{what} `{name}` already exists")
                };
                ApiError::new(StatusCode::CONFLICT, code, message).with_details(json!({"name": name}))
            }
            StoreError::NotFound(what) => ApiError::not_found(what),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self.details.get("retry_after_secs").and_then(Value::as_u64);
        let body = json!({"error": {"code": self.code, "message": self.message, "details": self.details}});
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}
