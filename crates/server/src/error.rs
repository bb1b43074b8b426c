//! The one error type of the API: a stable snake_case code, an HTTP status, a sentence for people,
//! and details for programs. Internal causes go to the log, never to the client.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::Problem;
use serde_json::{Value, json};
use store::{Clash, Resource, StoreError};

pub use crate::error_codes::ErrorCode;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Value,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error answered with the code's status (crate::error_codes holds the table).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), details: json!({}) }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }

    pub fn not_found(what: Resource) -> ApiError {
        let code = match what {
            Resource::Organization => ErrorCode::OrgNotFound,
            Resource::Project => ErrorCode::ProjectNotFound,
            Resource::User => ErrorCode::UserNotFound,
            Resource::EdgeService => ErrorCode::EdgeServiceNotFound,
            Resource::Template => ErrorCode::TemplateNotFound,
            Resource::TemplateVersion => ErrorCode::TemplateVersionNotFound,
            Resource::Delivery => ErrorCode::DeliveryNotFound,
            Resource::Plugin => ErrorCode::PluginNotFound,
            Resource::Member => ErrorCode::MemberNotFound,
            Resource::Token => ErrorCode::TokenNotFound,
            Resource::MaintenanceWindow => ErrorCode::MaintenanceWindowNotFound,
            Resource::Webhook => ErrorCode::WebhookNotFound,
        };
        ApiError::new(code, format!("{what} not found"))
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Forbidden, message)
    }

    /// A document failed its checks: every problem is listed with where it is.
    pub fn invalid_document(code: ErrorCode, what: &str, problems: &[Problem]) -> ApiError {
        let first = problems.first().map(ToString::to_string).unwrap_or_default();
        let more =
            if problems.len() > 1 { format!(" (and {} more problems)", problems.len() - 1) } else { String::new() };
        ApiError::new(code, format!("{what}: {first}{more}")).with_details(json!({"problems": problems}))
    }

    pub fn internal(err: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %err, "internal error");
        ApiError::new(ErrorCode::InternalError, "internal error; the server log has the details")
    }
}

/// When to try again after the database was too busy to answer.
const DATABASE_BUSY_RETRY_SECS: u64 = 5;

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::Conflict { clash, name } => {
                let (code, message) = match clash {
                    Clash::NameTaken(what) => {
                        let code = match what {
                            Resource::Template => ErrorCode::TemplateNameTaken,
                            Resource::EdgeService => ErrorCode::EdgeServiceNameTaken,
                            Resource::Organization => ErrorCode::OrgNameTaken,
                            Resource::Project => ErrorCode::ProjectNameTaken,
                            Resource::User => ErrorCode::UsernameTaken,
                            Resource::Plugin => ErrorCode::PluginNameTaken,
                            Resource::MaintenanceWindow => ErrorCode::MaintenanceWindowNameTaken,
                            other => return ApiError::internal(format!("unexpected name clash of a {other}")),
                        };
                        (code, format!("{what} `{name}` already exists"))
                    }
                    Clash::TemplateChanged => (
                        ErrorCode::TemplateChanged,
                        format!(
                            "the template changed meanwhile (version {name} is no longer current); reload and edit again"
                        ),
                    ),
                    Clash::PluginContent => (
                        ErrorCode::PluginDuplicateContent,
                        format!("the same package is already stored as plugin `{name}`"),
                    ),
                    Clash::PluginInUse => {
                        (ErrorCode::PluginInUse, format!("plugin `{name}` is used by a delivery; it cannot be deleted"))
                    }
                    Clash::OrgHasProjects => (
                        ErrorCode::OrgHasProjects,
                        format!("the organization still has {name} projects; delete them first"),
                    ),
                    Clash::ProjectNotEmpty => {
                        (ErrorCode::ProjectNotEmpty, format!("the project still holds {name}; delete them first"))
                    }
                    Clash::AlreadyRolledBack => {
                        (ErrorCode::AlreadyRolledBack, format!("delivery {name} already has its rollback"))
                    }
                    Clash::AgentIdTaken => (
                        ErrorCode::AgentIdTaken,
                        format!("agent id `{name}` is taken: agent ids are unique on the server"),
                    ),
                };
                ApiError::new(code, message).with_details(json!({"name": name}))
            }
            StoreError::NotFound(what) => ApiError::not_found(what),
            // A long write (an import of 100,000 services holds SQLite's one writer for tens of
            // seconds) is not a fault of the request waiting behind it: it may try again.
            StoreError::Busy => {
                tracing::warn!("a request waited too long for a database connection; answered 503");
                ApiError::new(ErrorCode::ServerBusy, "the database is busy with a long write; try again shortly")
                    .with_details(json!({"retry_after_secs": DATABASE_BUSY_RETRY_SECS}))
            }
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self.details.get("retry_after_secs").and_then(Value::as_u64);
        let body = json!({"error": {"code": self.code.as_str(), "message": self.message, "details": self.details}});
        let mut response = (self.status(), Json(body)).into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_that_waited_too_long_for_the_database_is_told_to_retry() {
        let answer = ApiError::from(StoreError::Busy);
        assert_eq!((answer.code, answer.status()), (ErrorCode::ServerBusy, StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(answer.details["retry_after_secs"], DATABASE_BUSY_RETRY_SECS);
        let response = answer.into_response();
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "5");
    }
}
