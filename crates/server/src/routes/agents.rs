//! Agent mode: agents' broker credentials, the project's command key, and the broker's user list.

use api_types::{AgentCredentials, CommandKey};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use domain::audit::AuditAction;
use serde_json::json;

use crate::AppState;
use crate::agents::{AgentsError, mosquitto_hash, new_agent_password};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{CurrentUser, Project};
use crate::routes::audit_entry;

impl From<AgentsError> for ApiError {
    fn from(err: AgentsError) -> ApiError {
        match err {
            AgentsError::NoBroker => ApiError::new(ErrorCode::NoBroker, err.to_string()),
            AgentsError::Store(err) => err.into(),
            AgentsError::Key(_) => ApiError::internal(err),
        }
    }
}

/// `POST P/edge-services/{id}/agent-credentials`: a new broker password for the service's agent
/// (shown once; its hash is kept) with everything the agent's command line needs.
pub async fn issue_credentials(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<Json<AgentCredentials>> {
    let edge = state.store.get_edge(&project_id, &id).await?;
    let Some(agent_id) = edge.reach.agent_id().map(str::to_owned) else {
        return Err(ApiError::new(
            ErrorCode::NotAgentMode,
            format!("{} is reached over HTTP; set transport \"agent\" and an agent_id first", edge.name),
        ));
    };
    let command_key = state.agents.public_key(&project_id).await?;
    let password = new_agent_password();
    let rotated = edge.agent_credentials_issued;
    let mut entry = audit_entry(
        &user,
        Some(&scope.scope),
        AuditAction::EdgeServiceAgentCredentials,
        "edge_service",
        &edge.name,
        json!({"agent_id": agent_id, "rotated": rotated}),
    );
    entry.resource_id = edge.id.clone();
    state.store.set_agent_secret(&project_id, &id, &mosquitto_hash(&password), &entry).await?;
    Ok(Json(AgentCredentials {
        agent_id: agent_id.clone(),
        mqtt_url: state.agents.agent_broker_url().map(str::to_owned),
        username: agent_id,
        password,
        command_key,
    }))
}

/// `GET P/agents/command-key`: the public key agents of this project verify commands with.
pub async fn command_key(State(state): State<AppState>, Path(project_id): Path<String>) -> ApiResult<Json<CommandKey>> {
    Ok(Json(CommandKey { command_key: state.agents.public_key(&project_id).await? }))
}

/// `GET /api/v1/agents/mosquitto-passwd`: every agent's user for Mosquitto's `password_file`
/// (hashes only), to which the operator adds edgefleet's own user (`mosquitto_passwd -b`).
/// Mosquitto reads no comments in that file, so there are none.
pub async fn mosquitto_passwd(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let mut text = String::new();
    for secret in state.store.agent_secrets().await? {
        text.push_str(&format!("{}:{}\n", secret.agent_id, secret.secret_hash));
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text))
}
