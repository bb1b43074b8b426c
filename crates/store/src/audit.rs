//! The operation audit: append-only; names are stored beside ids so a record stays readable after
//! the organization, project or resource is renamed or deleted.

use domain::access::Outcome;
use domain::audit::AuditAction;
use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::sql::Sql;

use crate::{Result, Store, escape_like, json_value, like_pattern, now_ms, parsed};

/// A record to append.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub actor_id: String,
    pub actor_name: String,
    pub org_id: String,
    pub org_name: String,
    pub project_id: String,
    pub project_name: String,
    pub action: AuditAction,
    /// `template`, `edge_service`, `delivery`, `user`, ...
    pub resource_type: String,
    pub resource_id: String,
    pub resource_name: String,
    pub outcome: Outcome,
    pub details: Value,
}

impl AuditEntry {
    /// A successful `action` with no actor, scope or resource yet (the caller fills what it knows).
    pub fn new(action: AuditAction) -> AuditEntry {
        AuditEntry {
            actor_id: String::new(),
            actor_name: String::new(),
            org_id: String::new(),
            org_name: String::new(),
            project_id: String::new(),
            project_name: String::new(),
            action,
            resource_type: String::new(),
            resource_id: String::new(),
            resource_name: String::new(),
            outcome: Outcome::Success,
            details: Value::Null,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub id: i64,
    pub at: i64,
    pub actor_id: String,
    pub actor_name: String,
    pub org_id: String,
    pub org_name: String,
    pub project_id: String,
    pub project_name: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub resource_name: String,
    pub outcome: Outcome,
    pub details: Value,
}

#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Organization id or name.
    pub org: Option<String>,
    /// Project id or name.
    pub project: Option<String>,
    /// Substring of the actor's name.
    pub actor: Option<String>,
    /// Exact action, or a prefix ending in `.` (`delivery.`).
    pub action: Option<String>,
    /// Resource type, or a resource id.
    pub resource: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Only what this user administers (organizations and projects); `None` for everything.
    pub visible_to: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

/// Appends `entry` on `conn` (inside the change's transaction) and enqueues the webhook calls
/// the change raises there too, so a change and its announcements stand or fall together.
pub(crate) async fn insert(conn: &mut sqlx::AnyConnection, entry: &AuditEntry) -> Result<()> {
    let at = now_ms();
    sqlx::query(
        "INSERT INTO audit_events (at, actor_id, actor_name, org_id, org_name, project_id, project_name, action,
                                   resource_type, resource_id, resource_name, outcome, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(at)
    .bind(&entry.actor_id)
    .bind(&entry.actor_name)
    .bind(&entry.org_id)
    .bind(&entry.org_name)
    .bind(&entry.project_id)
    .bind(&entry.project_name)
    .bind(entry.action.as_str())
    .bind(&entry.resource_type)
    .bind(&entry.resource_id)
    .bind(&entry.resource_name)
    .bind(entry.outcome.as_str())
    .bind(entry.details.to_string())
    .execute(&mut *conn)
    .await?;
    crate::webhooks::enqueue(conn, entry, at).await
}

fn event(row: &AnyRow) -> Result<AuditEvent> {
    Ok(AuditEvent {
        id: row.get("id"),
        at: row.get("at"),
        actor_id: row.get("actor_id"),
        actor_name: row.get("actor_name"),
        org_id: row.get("org_id"),
        org_name: row.get("org_name"),
        project_id: row.get("project_id"),
        project_name: row.get("project_name"),
        action: row.get("action"),
        resource_type: row.get("resource_type"),
        resource_id: row.get("resource_id"),
        resource_name: row.get("resource_name"),
        outcome: parsed(row, "outcome")?,
        details: json_value(row, "details")?,
    })
}

impl Store {
    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<()> {
        let mut tx = self.write.begin().await?;
        insert(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Newest first, with the total that matches.
    pub async fn list_audit(&self, query: &AuditQuery) -> Result<(Vec<AuditEvent>, i64)> {
        let mut count = Sql::new("SELECT COUNT(*) AS n FROM audit_events WHERE 1 = 1");
        audit_filters(&mut count, query);
        let total: i64 = count.query(self.backend).fetch_one(&self.read).await?.get("n");
        let mut select = Sql::new("SELECT * FROM audit_events WHERE 1 = 1");
        audit_filters(&mut select, query);
        select.push(" ORDER BY id DESC LIMIT ").int(query.limit).push(" OFFSET ").int(query.offset);
        let rows = select.query(self.backend).fetch_all(&self.read).await?;
        Ok((rows.iter().map(event).collect::<Result<_>>()?, total))
    }
}

fn audit_filters(sql: &mut Sql, query: &AuditQuery) {
    if let Some(org) = &query.org {
        sql.push(" AND (org_id = ").text(org).push(" OR org_name = ").text(org).push(")");
    }
    if let Some(project) = &query.project {
        sql.push(" AND (project_id = ").text(project).push(" OR project_name = ").text(project).push(")");
    }
    if let Some(actor) = &query.actor {
        sql.push(" AND LOWER(actor_name) LIKE ").text(like_pattern(actor)).push(" ESCAPE '\\'");
    }
    if let Some(action) = &query.action {
        if action.ends_with('.') {
            sql.push(" AND action LIKE ").text(format!("{}%", escape_like(action))).push(" ESCAPE '\\'");
        } else {
            sql.push(" AND action = ").text(action);
        }
    }
    if let Some(resource) = &query.resource {
        sql.push(" AND (resource_type = ").text(resource).push(" OR resource_id = ").text(resource).push(")");
    }
    if let Some(since) = query.since {
        sql.push(" AND at >= ").int(since);
    }
    if let Some(until) = query.until {
        sql.push(" AND at < ").int(until);
    }
    if let Some(user) = &query.visible_to {
        sql.push(
            " AND ((org_id <> '' AND org_id IN (SELECT org_id FROM org_members WHERE role = 'admin' AND user_id = ",
        )
        .text(user);
        sql.push(")) OR (project_id <> '' AND project_id IN (SELECT project_id FROM project_members WHERE role = 'admin' AND user_id = ").text(user);
        sql.push(")) OR actor_id = ").text(user).push(")");
    }
}
