//! The operation audit, newest first, limited to what the reader administers.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use store::AuditQuery;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{CurrentUser, Query};
use crate::views;

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    query: Query,
) -> ApiResult<Json<Value>> {
    let query = query.only(&["org", "project", "actor", "action", "resource", "since", "until", "limit", "offset"])?;
    let page = query.page()?;
    let audit_query = AuditQuery {
        org: query.one("org"),
        project: query.one("project"),
        actor: query.one("actor"),
        action: query.one("action"),
        resource: query.one("resource"),
        since: query.int("since")?,
        until: query.int("until")?,
        visible_to: (!user.is_system_admin).then(|| user.id.clone()),
        limit: page.limit,
        offset: page.offset,
    };
    if let (Some(since), Some(until)) = (audit_query.since, audit_query.until)
        && since > until
    {
        return Err(ApiError::new(ErrorCode::BadQuery, "since is after until"));
    }
    let (items, total) = state.store.list_audit(&audit_query).await?;
    Ok(Json(json!(views::list(&items, total, views::audit_event))))
}
