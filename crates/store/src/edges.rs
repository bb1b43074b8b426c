//! The edge-service registry.

use domain::filter::EdgeFilter;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use crate::audit::{self, AuditEntry};
use crate::sql::Sql;
use crate::{Result, Store, StoreError, conflict, json_list, like_pattern, new_id, now_ms};

/// How edgefleet authenticates to the edge. The secret is stored encrypted by the caller and is
/// never serialized.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EdgeAuthRow {
    pub kind: String,
    pub username: String,
    #[serde(skip)]
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EdgeService {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub endpoint: String,
    pub description: String,
    pub tags: Vec<String>,
    pub version: Option<String>,
    pub status: String,
    pub status_reason: String,
    pub probed_at: Option<i64>,
    pub auth: EdgeAuthRow,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewEdge {
    pub name: String,
    pub endpoint: String,
    pub description: String,
    pub tags: Vec<String>,
    pub auth: EdgeAuthRow,
}

/// What the periodic probe needs of an edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    pub id: String,
    pub endpoint: String,
    pub auth: EdgeAuthRow,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub version: Option<String>,
    pub status: String,
    pub reason: String,
}

fn edge(row: &AnyRow) -> EdgeService {
    EdgeService {
        id: row.get("id"),
        project_id: row.get("project_id"),
        name: row.get("name"),
        endpoint: row.get("endpoint"),
        description: row.get("description"),
        tags: json_list(row, "tags"),
        version: row.get("version"),
        status: row.get("status"),
        status_reason: row.get("status_reason"),
        probed_at: row.get("probed_at"),
        auth: EdgeAuthRow {
            kind: row.get("auth_kind"),
            username: row.get("auth_username"),
            secret: row.get("auth_secret"),
        },
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    }
}

impl Store {
    /// Inserts all or none, with one audit record per service, in one transaction.
    pub async fn insert_edges(
        &self,
        project_id: &str,
        edges: &[NewEdge],
        audit_base: &AuditEntry,
    ) -> Result<Vec<EdgeService>> {
        let mut tx = self.write.begin().await?;
        let mut created = Vec::with_capacity(edges.len());
        let now = now_ms();
        for new in edges {
            let id = new_id();
            let tags = serde_json::to_string(&new.tags).unwrap_or_else(|_| "[]".into());
            sqlx::query(
                "INSERT INTO edge_services (id, project_id, name, endpoint, description, tags, auth_kind, auth_username,
                                            auth_secret, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
            )
            .bind(&id)
            .bind(project_id)
            .bind(&new.name)
            .bind(&new.endpoint)
            .bind(&new.description)
            .bind(&tags)
            .bind(&new.auth.kind)
            .bind(&new.auth.username)
            .bind(&new.auth.secret)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict(e, "edge service", &new.name))?;
            insert_tags(&mut tx, &id, &new.tags).await?;
            let entry = AuditEntry { resource_id: id.clone(), resource_name: new.name.clone(), ..audit_base.clone() };
            audit::insert(&mut *tx, &entry).await?;
            created.push(EdgeService {
                id,
                project_id: project_id.to_owned(),
                name: new.name.clone(),
                endpoint: new.endpoint.clone(),
                description: new.description.clone(),
                tags: new.tags.clone(),
                version: None,
                status: "unknown".into(),
                status_reason: String::new(),
                probed_at: None,
                auth: new.auth.clone(),
                created_at: now,
                updated_at: now,
            });
        }
        tx.commit().await?;
        Ok(created)
    }

    pub async fn get_edge(&self, project_id: &str, id: &str) -> Result<EdgeService> {
        let row = sqlx::query("SELECT * FROM edge_services WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(edge).ok_or(StoreError::NotFound("edge service"))
    }

    /// Replaces the editable fields; the caller merges a patch into the current row first.
    pub async fn update_edge(&self, updated: &EdgeService, audit_entry: &AuditEntry) -> Result<EdgeService> {
        let mut tx = self.write.begin().await?;
        let now = now_ms();
        let tags = serde_json::to_string(&updated.tags).unwrap_or_else(|_| "[]".into());
        let done = sqlx::query(
            "UPDATE edge_services SET name = $1, endpoint = $2, description = $3, tags = $4, auth_kind = $5,
                    auth_username = $6, auth_secret = $7, updated_at = $8
             WHERE project_id = $9 AND id = $10",
        )
        .bind(&updated.name)
        .bind(&updated.endpoint)
        .bind(&updated.description)
        .bind(&tags)
        .bind(&updated.auth.kind)
        .bind(&updated.auth.username)
        .bind(&updated.auth.secret)
        .bind(now)
        .bind(&updated.project_id)
        .bind(&updated.id)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, "edge service", &updated.name))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("edge service"));
        }
        sqlx::query("DELETE FROM edge_service_tags WHERE edge_id = $1").bind(&updated.id).execute(&mut *tx).await?;
        insert_tags(&mut tx, &updated.id, &updated.tags).await?;
        audit::insert(&mut *tx, audit_entry).await?;
        tx.commit().await?;
        Ok(EdgeService { updated_at: now, ..updated.clone() })
    }

    pub async fn delete_edge(&self, project_id: &str, id: &str, audit_entry: &AuditEntry) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("DELETE FROM edge_service_tags WHERE edge_id = $1").bind(id).execute(&mut *tx).await?;
        let done = sqlx::query("DELETE FROM edge_services WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("edge service"));
        }
        audit::insert(&mut *tx, audit_entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One page of the project's services matching `filter`, by name, with the total.
    pub async fn list_edges(
        &self,
        project_id: &str,
        filter: &EdgeFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<EdgeService>, i64)> {
        let mut count = Sql::new("SELECT COUNT(*) AS n FROM edge_services e WHERE e.project_id = ");
        count.text(project_id);
        edge_filters(&mut count, filter);
        let total: i64 = count.query().fetch_one(&self.read).await?.get("n");
        let mut select = Sql::new("SELECT * FROM edge_services e WHERE e.project_id = ");
        select.text(project_id);
        edge_filters(&mut select, filter);
        select.push(" ORDER BY e.name LIMIT ").int(limit).push(" OFFSET ").int(offset);
        let rows = select.query().fetch_all(&self.read).await?;
        Ok((rows.iter().map(edge).collect(), total))
    }

    /// Every service of the project that matches, for resolving a delivery's targets.
    pub async fn edges_matching(&self, project_id: &str, filter: &EdgeFilter) -> Result<Vec<EdgeService>> {
        let mut select = Sql::new("SELECT * FROM edge_services e WHERE e.project_id = ");
        select.text(project_id);
        edge_filters(&mut select, filter);
        select.push(" ORDER BY e.name");
        let rows = select.query().fetch_all(&self.read).await?;
        Ok(rows.iter().map(edge).collect())
    }

    /// The services of the project with these ids; ids of other projects are not found.
    pub async fn edges_by_ids(&self, project_id: &str, ids: &[String]) -> Result<Vec<EdgeService>> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let mut select = Sql::new("SELECT * FROM edge_services WHERE project_id = ");
            select.text(project_id).push(" AND id IN (");
            for (i, id) in chunk.iter().enumerate() {
                if i > 0 {
                    select.push(", ");
                }
                select.text(id);
            }
            select.push(") ORDER BY name");
            found.extend(select.query().fetch_all(&self.read).await?.iter().map(edge));
        }
        Ok(found)
    }

    /// A page of all services (every project) for the prober, ordered by id.
    pub async fn probe_targets(&self, after_id: &str, limit: i64) -> Result<Vec<ProbeTarget>> {
        let rows = sqlx::query("SELECT id, endpoint, auth_kind, auth_username, auth_secret FROM edge_services WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after_id)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(|row| ProbeTarget {
                id: row.get("id"),
                endpoint: row.get("endpoint"),
                auth: EdgeAuthRow {
                    kind: row.get("auth_kind"),
                    username: row.get("auth_username"),
                    secret: row.get("auth_secret"),
                },
            })
            .collect())
    }

    /// Records a probe; a failed probe keeps the last known version.
    pub async fn record_probe(&self, id: &str, result: &ProbeResult) -> Result<()> {
        self.record_probes(&[(id.to_owned(), result.clone())]).await
    }

    /// Records many probes in one transaction (a failed probe keeps the last known version).
    pub async fn record_probes(&self, results: &[(String, ProbeResult)]) -> Result<()> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        for (id, result) in results {
            sqlx::query(
                "UPDATE edge_services SET version = COALESCE($1, version), status = $2, status_reason = $3, probed_at = $4 WHERE id = $5",
            )
            .bind(result.version.clone())
            .bind(&result.status)
            .bind(&result.reason)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn count_edges(&self, project_id: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM edge_services WHERE project_id = $1")
            .bind(project_id)
            .fetch_one(&self.read)
            .await?;
        Ok(row.get("n"))
    }
}

async fn insert_tags(tx: &mut sqlx::Transaction<'_, Any>, edge_id: &str, tags: &[String]) -> Result<()> {
    for tag in tags {
        sqlx::query("INSERT INTO edge_service_tags (edge_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(edge_id)
            .bind(tag)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

fn edge_filters(sql: &mut Sql, filter: &EdgeFilter) {
    if let Some(q) = &filter.q {
        let pattern = like_pattern(q);
        sql.push(" AND (LOWER(e.name) LIKE ").text(&pattern).push(" ESCAPE '\\'");
        for column in ["e.endpoint", "e.description", "COALESCE(e.version, '')", "e.tags"] {
            sql.push(" OR LOWER(").push(column).push(") LIKE ").text(&pattern).push(" ESCAPE '\\'");
        }
        sql.push(")");
    }
    if let Some(name) = &filter.name {
        sql.push(" AND LOWER(e.name) LIKE ").text(like_pattern(name)).push(" ESCAPE '\\'");
    }
    if let Some(endpoint) = &filter.endpoint {
        sql.push(" AND LOWER(e.endpoint) LIKE ").text(like_pattern(endpoint)).push(" ESCAPE '\\'");
    }
    if let Some(version) = &filter.version {
        sql.push(" AND (e.version = ")
            .text(version)
            .push(" OR e.version LIKE ")
            .text(format!("{}.%", crate::escape_like(version)))
            .push(" ESCAPE '\\'")
            .push(")");
    }
    for tag in &filter.tag {
        sql.push(" AND EXISTS (SELECT 1 FROM edge_service_tags t WHERE t.edge_id = e.id AND t.tag = ")
            .text(tag)
            .push(")");
    }
    if let Some(status) = &filter.status {
        sql.push(" AND e.status = ").text(status);
    }
}
