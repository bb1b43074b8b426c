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
