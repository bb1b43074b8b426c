//! The edge-service registry.

use std::collections::HashMap;

use domain::audit::AuditAction;
use domain::drift::ConfigState;
use domain::edge::{AuthKind, EdgeStatus, Reach};
use domain::filter::EdgeFilter;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use futures::TryStreamExt;

use crate::NewTarget;
use crate::audit::{self, AuditEntry};
use crate::sql::Sql;
use crate::{Backend, Result, Store, StoreError, conflict, json_list, like_pattern, new_id, now_ms, parsed};

/// How edgefleet authenticates to the edge. The secret is stored encrypted by the caller and is
/// never serialized.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeAuthRow {
    pub kind: AuthKind,
    pub username: String,
    pub secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeService {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub endpoint: String,
    pub description: String,
    pub tags: Vec<String>,
    pub version: Option<String>,
    pub status: EdgeStatus,
    pub status_reason: String,
    pub probed_at: Option<i64>,
    /// When the status last changed (the first probe that found it so).
    pub status_since: Option<i64>,
    /// Whether it holds what was last delivered to it, as the last check (or delivery) found.
    pub config_state: ConfigState,
    pub config_checked_at: Option<i64>,
    /// Why the last check could not read it.
    pub config_reason: String,
    pub auth: EdgeAuthRow,
    /// HTTP, or through which agent.
    pub reach: Reach,
    /// Whether its agent has broker credentials.
    pub agent_credentials_issued: bool,
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
    pub reach: Reach,
}

/// What the periodic probe needs of an edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    pub id: String,
    pub project_id: String,
    pub endpoint: String,
    pub auth: EdgeAuthRow,
    pub reach: Reach,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub version: Option<String>,
    pub status: EdgeStatus,
    pub reason: String,
    /// When the probe began (ms): a probe that began before the one already recorded is stale
    /// (a slow round must not overwrite a fresher probe) and is not recorded.
    pub started_at: i64,
}

/// What the prober last found of an edge, for a delivery deciding whether to try it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeHealth {
    pub status: EdgeStatus,
    pub reason: String,
    pub since: Option<i64>,
    pub probed_at: Option<i64>,
}

fn edge(row: &AnyRow) -> Result<EdgeService> {
    Ok(EdgeService {
        id: row.get("id"),
        project_id: row.get("project_id"),
        name: row.get("name"),
        endpoint: row.get("endpoint"),
        description: row.get("description"),
        tags: json_list(row, "tags")?,
        version: row.get("version"),
        status: parsed(row, "status")?,
        status_reason: row.get("status_reason"),
        probed_at: row.get("probed_at"),
        status_since: row.get("status_since"),
        config_state: parsed(row, "config_state")?,
        config_checked_at: row.get("config_checked_at"),
        config_reason: row.get("config_reason"),
        auth: auth_of(row)?,
        reach: reach_of(row)?,
        agent_credentials_issued: row.get::<Option<String>, _>("agent_secret").is_some(),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    })
}

/// The columns [`new_target`] reads.
macro_rules! target_columns {
    () => {
        "e.id, e.name, e.endpoint, e.version, e.tags, e.auth_kind, e.auth_username, e.auth_secret, e.transport, e.agent_id"
    };
}

/// A delivery target as the service is now, credentials included, in no wave (0).
fn new_target(row: &AnyRow) -> Result<NewTarget> {
    Ok(NewTarget {
        edge_id: row.get("id"),
        edge_name: row.get("name"),
        endpoint: row.get("endpoint"),
        edge_version: row.get("version"),
        tags: json_list(row, "tags")?,
        auth: auth_of(row)?,
        reach: reach_of(row)?,
        wave: 0,
    })
}

/// The `auth_kind`, `auth_username`, `auth_secret` columns.
pub(crate) fn auth_of(row: &AnyRow) -> Result<EdgeAuthRow> {
    Ok(EdgeAuthRow {
        kind: parsed(row, "auth_kind")?,
        username: row.get("auth_username"),
        secret: row.get("auth_secret"),
    })
}

/// The `transport` and `agent_id` columns.
pub(crate) fn reach_of(row: &AnyRow) -> Result<Reach> {
    Reach::from_parts(parsed(row, "transport")?, row.get("agent_id"))
        .map_err(|e| StoreError::Corrupt(format!("column agent_id: {e}")))
}

/// A unique violation on a service: its name in the project, or its agent id on the server.
fn edge_conflict(err: sqlx::Error, name: &str, reach: &Reach) -> StoreError {
    if let (sqlx::Error::Database(db), Some(agent_id)) = (&err, reach.agent_id())
        && db.is_unique_violation()
        && db.message().contains("agent_id")
    {
        return StoreError::Conflict { clash: crate::Clash::AgentIdTaken, name: agent_id.to_owned() };
    }
    conflict(err, crate::Resource::EdgeService, name)
}

/// Services an import stores per transaction. SQLite has one writer: a chunk this size holds it
/// for a few tens of milliseconds, so other writes wait between chunks, not for the whole import
/// (with 200, a write beside a 100,000-service import waited up to 196 ms; with 100, 97 ms).
pub const IMPORT_CHUNK: usize = 100;
/// An import with no heartbeat for this long died with its process; the sweep removes its services.
pub const IMPORT_ABANDONED_AFTER_MS: i64 = 10 * 60 * 1000;

impl Store {
    /// Inserts all or none, with one audit record per service, in one transaction.
    pub async fn insert_edges(
        &self,
        project_id: &str,
        edges: &[NewEdge],
        audit_base: &AuditEntry,
    ) -> Result<Vec<EdgeService>> {
        let mut tx = self.write.begin().await?;
        let created = insert_edge_rows(&mut tx, project_id, edges, audit_base, None).await?;
        tx.commit().await?;
        self.note_search_writes(created.len() as u64);
        Ok(created)
    }

    /// Imports all or none, committing [`IMPORT_CHUNK`] services at a time so the import never
    /// holds the writer for long. Services appear as their chunk commits; if a chunk fails, the
    /// services of the chunks before it are removed again (and the audit says so) before the error
    /// is returned. A caller should not abandon the future half-way: the sweep would only remove
    /// the rest after [`IMPORT_ABANDONED_AFTER_MS`].
    pub async fn import_edges(
        &self,
        project_id: &str,
        edges: &[NewEdge],
        audit_base: &AuditEntry,
    ) -> Result<Vec<EdgeService>> {
        if edges.len() <= IMPORT_CHUNK {
            return self.insert_edges(project_id, edges, audit_base).await;
        }
        let import_id = self.begin_import(project_id, edges.len()).await?;
        let mut created = Vec::with_capacity(edges.len());
        for chunk in edges.chunks(IMPORT_CHUNK) {
            match self.import_chunk(project_id, chunk, audit_base, &import_id).await {
                Ok(rows) => created.extend(rows),
                Err(err) => {
                    // If the removal fails too, the sweep removes the rest once the heartbeat is old.
                    let _ = self.undo_import(&import_id, &err.to_string(), audit_base).await;
                    return Err(err);
                }
            }
        }
        if let Err(err) =
            sqlx::query("DELETE FROM edge_imports WHERE id = $1").bind(&import_id).execute(&self.write).await
        {
            let _ = self.undo_import(&import_id, &err.to_string(), audit_base).await;
            return Err(err.into());
        }
        Ok(created)
    }

    /// Marks an import as in progress (its heartbeat starts now); answers its id.
    pub(crate) async fn begin_import(&self, project_id: &str, rows: usize) -> Result<String> {
        let import_id = new_id();
        sqlx::query(
            "INSERT INTO edge_imports (id, project_id, rows_total, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(&import_id)
        .bind(project_id)
        .bind(rows as i64)
        .bind(now_ms())
        .execute(&self.write)
        .await?;
        Ok(import_id)
    }

    pub(crate) async fn import_chunk(
        &self,
        project_id: &str,
        chunk: &[NewEdge],
        audit_base: &AuditEntry,
        import_id: &str,
    ) -> Result<Vec<EdgeService>> {
        let mut tx = self.write.begin().await?;
        let alive = sqlx::query("UPDATE edge_imports SET heartbeat_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(import_id)
            .execute(&mut *tx)
            .await?;
        if alive.rows_affected() == 0 {
            return Err(StoreError::Corrupt(format!(
                "import {import_id} was removed as abandoned while it ran (no chunk for {} minutes)",
                IMPORT_ABANDONED_AFTER_MS / 60_000
            )));
        }
        let created = insert_edge_rows(&mut tx, project_id, chunk, audit_base, Some(import_id)).await?;
        tx.commit().await?;
        self.note_search_writes(created.len() as u64);
        Ok(created)
    }

    /// Removes what an import stored, a chunk per transaction, then the import itself, with one
    /// audit record saying how many services went and why. Answers how many were removed.
    async fn undo_import(&self, import_id: &str, reason: &str, audit_base: &AuditEntry) -> Result<u64> {
        let mut removed = 0;
        loop {
            let ids: Vec<String> =
                sqlx::query("SELECT id FROM edge_services WHERE import_id = $1 ORDER BY id LIMIT $2")
                    .bind(import_id)
                    .bind(IMPORT_CHUNK as i64)
                    .fetch_all(&self.write)
                    .await?
                    .iter()
                    .map(|row| row.get("id"))
                    .collect();
            if ids.is_empty() {
                break;
            }
            let mut tx = self.write.begin().await?;
            delete_edge_dependents(&mut tx, self.backend, &ids).await?;
            let mut sql = Sql::new("DELETE FROM edge_services WHERE id IN (");
            sql.text_list(&ids).push(")");
            removed += sql.query(self.backend).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            self.note_search_writes(ids.len() as u64);
        }
        let mut tx = self.write.begin().await?;
        let gone = sqlx::query("DELETE FROM edge_imports WHERE id = $1").bind(import_id).execute(&mut *tx).await?;
        if gone.rows_affected() > 0 || removed > 0 {
            let entry = AuditEntry {
                resource_id: import_id.to_owned(),
                outcome: domain::access::Outcome::Failure,
                details: serde_json::json!({"removed": removed, "reason": reason}),
                ..audit_base.clone()
            };
            audit::insert(&mut tx, &entry).await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    /// Removes the services of imports whose process died half-way (no heartbeat since
    /// `stale_before`); answers how many imports were removed. Every replica may run it.
    pub async fn remove_abandoned_imports(&self, stale_before: i64) -> Result<usize> {
        let rows = sqlx::query(
            "SELECT i.id, i.project_id, p.name AS project_name, o.id AS org_id, o.name AS org_name
             FROM edge_imports i JOIN projects p ON p.id = i.project_id JOIN orgs o ON o.id = p.org_id
             WHERE i.heartbeat_at < $1",
        )
        .bind(stale_before)
        .fetch_all(&self.read)
        .await?;
        for row in &rows {
            let entry = AuditEntry {
                actor_name: "edgefleet".into(),
                org_id: row.get("org_id"),
                org_name: row.get("org_name"),
                project_id: row.get("project_id"),
                project_name: row.get("project_name"),
                resource_type: "edge_service".into(),
                ..AuditEntry::new(AuditAction::EdgeServiceImport)
            };
            let id: String = row.get("id");
            self.undo_import(&id, "the server stopped before the import finished", &entry).await?;
        }
        Ok(rows.len())
    }

    /// Which of `names` the project's services already have.
    pub async fn taken_edge_names(&self, project_id: &str, names: &[String]) -> Result<Vec<String>> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT name FROM edge_services WHERE project_id = $1 AND name IN (SELECT value FROM json_each($2)) ORDER BY name"
            }
            Backend::Postgres => {
                "SELECT name FROM edge_services WHERE project_id = $1 AND name IN (SELECT jsonb_array_elements_text($2::jsonb)) ORDER BY name"
            }
        };
        let names = serde_json::to_string(names).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let rows = sqlx::query(sql).bind(project_id).bind(names).fetch_all(&self.read).await?;
        Ok(rows.iter().map(|row| row.get("name")).collect())
    }

    pub async fn get_edge(&self, project_id: &str, id: &str) -> Result<EdgeService> {
        let row = sqlx::query("SELECT * FROM edge_services WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(edge).transpose()?.ok_or(StoreError::NotFound(crate::Resource::EdgeService))
    }

    /// Replaces the editable fields; the caller merges a patch into the current row first.
    pub async fn update_edge(&self, updated: &EdgeService, audit_entry: &AuditEntry) -> Result<EdgeService> {
        let mut tx = self.write.begin().await?;
        let now = now_ms();
        let tags = serde_json::to_string(&updated.tags).unwrap_or_else(|_| "[]".into());
        let done = sqlx::query(
            "UPDATE edge_services SET name = $1, endpoint = $2, description = $3, tags = $4, auth_kind = $5,
                    auth_username = $6, auth_secret = $7, updated_at = $8, transport = $11, agent_id = $12,
                    agent_secret = CASE WHEN agent_id = $12 THEN agent_secret END
             WHERE project_id = $9 AND id = $10",
        )
        .bind(&updated.name)
        .bind(&updated.endpoint)
        .bind(&updated.description)
        .bind(&tags)
        .bind(updated.auth.kind.as_str())
        .bind(&updated.auth.username)
        .bind(&updated.auth.secret)
        .bind(now)
        .bind(&updated.project_id)
        .bind(&updated.id)
        .bind(updated.reach.transport().as_str())
        .bind(updated.reach.agent_id())
        .execute(&mut *tx)
        .await
        .map_err(|e| edge_conflict(e, &updated.name, &updated.reach))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(crate::Resource::EdgeService));
        }
        sqlx::query("DELETE FROM edge_service_tags WHERE edge_id = $1").bind(&updated.id).execute(&mut *tx).await?;
        insert_tags(&mut tx, &updated.project_id, &updated.id, &updated.tags).await?;
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        self.note_search_writes(1);
        Ok(EdgeService { updated_at: now, ..updated.clone() })
    }

    pub async fn delete_edge(&self, project_id: &str, id: &str, audit_entry: &AuditEntry) -> Result<()> {
        let mut tx = self.write.begin().await?;
        delete_edge_dependents(&mut tx, self.backend, &[id.to_owned()]).await?;
        let done = sqlx::query("DELETE FROM edge_services WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(crate::Resource::EdgeService));
        }
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        self.note_search_writes(1);
        Ok(())
    }

    /// One page of the project's services matching `filter`, by name, with the total.
    pub async fn list_edges(
        &self,
        project_id: &str,
        filter: &EdgeFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<EdgeService>, MatchCount)> {
        let count = match self.backend {
            Backend::Sqlite => MatchCount { n: self.count_matching(project_id, filter).await?, estimated: false },
            Backend::Postgres => self.count_or_estimate(project_id, filter).await?,
        };
        let total = count.n;
        if total == 0 || (offset >= total && !count.estimated) {
            return Ok((Vec::new(), count));
        }
        let walk = if total > DENSE_MATCHES { Walk::ByName } else { Walk::FromFilters };
        let mut select = Sql::new("SELECT e.* FROM edge_services e");
        self.choose_index(&mut select, filter, walk);
        select.push(" WHERE e.project_id = ").text(project_id);
        self.edge_filters(&mut select, project_id, filter, walk);
        // `+` keeps SQLite from walking the name index for its order when few rows match.
        let order = if walk == Walk::FromFilters && self.backend == Backend::Sqlite { "+e.name" } else { "e.name" };
        select.push(" ORDER BY ").push(order).push(" LIMIT ").int(limit).push(" OFFSET ").int(offset);
        let rows = select.query(self.backend).fetch_all(&self.read).await?;
        Ok((rows.iter().map(edge).collect::<Result<_>>()?, count))
    }

    /// PostgreSQL counts matches exactly up to [`EXACT_COUNT_UP_TO`]; past it, the planner's
    /// estimate (never below the number counted) is answered as one. An exact count re-checks every
    /// match: 33,000 free-text matches took 95 ms of a 100,000-service registry's request.
    async fn count_or_estimate(&self, project_id: &str, filter: &EdgeFilter) -> Result<MatchCount> {
        let mut capped =
            Sql::new("SELECT COUNT(*) AS n FROM (SELECT 1 AS one FROM edge_services e WHERE e.project_id = ");
        capped.text(project_id);
        self.edge_filters(&mut capped, project_id, filter, Walk::FromFilters);
        capped.push(" LIMIT ").int(EXACT_COUNT_UP_TO + 1).push(") capped");
        let counted: i64 = capped.query(self.backend).fetch_one(&self.read).await?.get("n");
        if counted <= EXACT_COUNT_UP_TO {
            return Ok(MatchCount { n: counted, estimated: false });
        }
        let mut explain = Sql::new("EXPLAIN SELECT 1 FROM edge_services e WHERE e.project_id = ");
        explain.text(project_id);
        self.edge_filters(&mut explain, project_id, filter, Walk::FromFilters);
        let plan = explain.query(self.backend).fetch_one(&self.read).await?;
        let top: String = plan.get(0);
        Ok(MatchCount { n: planned_rows(&top).unwrap_or(0).max(counted), estimated: true })
    }

    /// How many of the project's services match, answered from a single index when the filter
    /// has a single condition that one index holds.
    async fn count_matching(&self, project_id: &str, filter: &EdgeFilter) -> Result<i64> {
        let only = EdgeFilter { tag: Vec::new(), ..filter.clone() };
        let count = if filter.tag.len() == 1 && only.is_empty() {
            let mut count = Sql::new("SELECT COUNT(*) AS n FROM edge_service_tags WHERE project_id = ");
            count.text(project_id).push(" AND tag = ").text(&filter.tag[0]);
            count
        } else if let Some((column, needle)) = self.single_search(filter) {
            let mut count = Sql::new("SELECT COUNT(*) AS n FROM edge_search WHERE ");
            search_condition(&mut count, project_id, column, needle);
            count
        } else {
            let mut count = Sql::new("SELECT COUNT(*) AS n FROM edge_services e");
            self.choose_index(&mut count, filter, Walk::FromFilters);
            count.push(" WHERE e.project_id = ").text(project_id);
            self.edge_filters(&mut count, project_id, filter, Walk::FromFilters);
            count
        };
        Ok(count.query(self.backend).fetch_one(&self.read).await?.get("n"))
    }

    /// The one substring condition of a filter that has nothing else, when the search index can
    /// answer it.
    fn single_search<'f>(&self, filter: &'f EdgeFilter) -> Option<(Option<&'static str>, &'f str)> {
        let given: Vec<_> = substring_filters(filter).into_iter().filter_map(|(c, v)| Some((c, v?))).collect();
        let alone = given.len() == 1
            && filter.version.is_none()
            && filter.tag.is_empty()
            && filter.status.is_none()
            && filter.config_state.is_none();
        let (column, needle) = *given.first()?;
        (alone && self.searchable(needle)).then_some((column, needle))
    }

    /// Whether the trigram index can answer a substring search for `needle` (SQLite, at least
    /// three characters).
    fn searchable(&self, needle: &str) -> bool {
        self.backend == Backend::Sqlite && needle.chars().count() >= 3
    }

    /// Every service of the project that matches, as a new delivery's targets (one wave, 0).
    /// Rows are read one at a time into the lean target form: a fleet of 100,000 held as full
    /// rows and then as services took the server from ~200 to 450 MiB for a moment.
    pub async fn targets_matching(&self, project_id: &str, filter: &EdgeFilter) -> Result<Vec<NewTarget>> {
        let mut select = Sql::new(concat!("SELECT ", target_columns!(), " FROM edge_services e WHERE e.project_id = "));
        select.text(project_id);
        self.edge_filters(&mut select, project_id, filter, Walk::FromFilters);
        select.push(" ORDER BY e.name");
        let query = select.query(self.backend);
        let mut rows = query.fetch(&self.read);
        let mut found = Vec::new();
        while let Some(row) = rows.try_next().await? {
            found.push(new_target(&row)?);
        }
        Ok(found)
    }

    /// Which index SQLite reads services through, where its planner would guess wrong: the name
    /// index for a walk in name order, and the version index (it holds the ids, so tags are
    /// checked without reading rows) when a version is asked for and no text search leads.
    fn choose_index(&self, sql: &mut Sql, filter: &EdgeFilter, walk: Walk) {
        if self.backend != Backend::Sqlite {
            return;
        }
        if walk == Walk::ByName {
            sql.push(" INDEXED BY edge_services_project");
        } else if self.version_leads(filter) {
            sql.push(" INDEXED BY edge_services_version");
        }
    }

    fn version_leads(&self, filter: &EdgeFilter) -> bool {
        let searched = substring_filters(filter).iter().any(|(_, v)| v.is_some_and(|n| self.searchable(n)));
        self.backend == Backend::Sqlite && filter.version.is_some() && !searched
    }

    /// Appends the filter's conditions on `e` (edge_services), shaped for how the rows are found.
    fn edge_filters(&self, sql: &mut Sql, project_id: &str, filter: &EdgeFilter, walk: Walk) {
        // Walking by name, each row is checked as it comes (a few hundred for a page), so plain
        // per-row checks beat building the set of all matches first.
        let indexed = |needle: &str| walk == Walk::FromFilters && self.searchable(needle);
        for (column, needle) in substring_filters(filter) {
            let Some(needle) = needle else { continue };
            if indexed(needle) {
                sql.push(" AND e.search_id IN (SELECT rowid FROM edge_search WHERE ");
                search_condition(sql, project_id, column, needle);
                sql.push(")");
                continue;
            }
            let columns = match column {
                Some(column) => vec![format!("e.{column}")],
                None => ["e.name", "e.endpoint", "e.description", "COALESCE(e.version, '')", "e.tags"]
                    .map(String::from)
                    .to_vec(),
            };
            let pattern = like_pattern(needle);
            for (i, column) in columns.iter().enumerate() {
                sql.push(if i == 0 { " AND (LOWER(" } else { " OR LOWER(" });
                sql.push(column).push(") LIKE ").text(&pattern).push(" ESCAPE '\\'");
            }
            sql.push(")");
        }
        if let Some(version) = &filter.version {
            match self.backend {
                // A range on the version index holds every exact or dotted-prefix match (`/` is
                // the character after `.`); the second condition keeps just those.
                Backend::Sqlite => {
                    sql.push(" AND e.version >= ").text(version).push(" AND e.version < ").text(format!("{version}/"));
                    sql.push(" AND (e.version = ").text(version).push(" OR e.version >= ").text(format!("{version}."));
                }
                Backend::Postgres => {
                    sql.push(" AND (e.version = ").text(version).push(" OR e.version LIKE ");
                    sql.text(format!("{}.%", crate::escape_like(version))).push(" ESCAPE '\\'");
                }
            }
            sql.push(")");
        }
        for tag in &filter.tag {
            match walk {
                // `+`: with the version index leading, the id is checked against the tag's set, not
                // looked up.
                Walk::FromFilters => sql
                    .push(if self.version_leads(filter) { " AND +e.id IN" } else { " AND e.id IN" })
                    .push(" (SELECT t.edge_id FROM edge_service_tags t WHERE t.project_id = ")
                    .text(project_id)
                    .push(" AND t.tag = "),
                Walk::ByName => {
                    sql.push(" AND EXISTS (SELECT 1 FROM edge_service_tags t WHERE t.edge_id = e.id AND t.tag = ")
                }
            };
            sql.text(tag).push(")");
        }
        if let Some(status) = &filter.status {
            sql.push(" AND e.status = ").text(status);
        }
        if let Some(config_state) = filter.config_state {
            sql.push(" AND e.config_state = ").text(config_state.as_str());
        }
    }

    /// The project's services among `ids`, as a new delivery's targets (one wave, 0), by name;
    /// ids of other projects are not found.
    pub async fn targets_by_ids(&self, project_id: &str, ids: &[String]) -> Result<Vec<NewTarget>> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let mut select =
                Sql::new(concat!("SELECT ", target_columns!(), " FROM edge_services e WHERE e.project_id = "));
            select.text(project_id).push(" AND e.id IN (").text_list(chunk).push(")");
            for row in select.query(self.backend).fetch_all(&self.read).await? {
                found.push(new_target(&row)?);
            }
        }
        found.sort_by(|a, b| a.edge_name.cmp(&b.edge_name));
        Ok(found)
    }

    /// A page of all services (every project) for the prober, ordered by id.
    pub async fn probe_targets(&self, after_id: &str, limit: i64) -> Result<Vec<ProbeTarget>> {
        let rows = sqlx::query("SELECT id, project_id, endpoint, auth_kind, auth_username, auth_secret, transport, agent_id FROM edge_services WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after_id)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(ProbeTarget {
                    id: row.get("id"),
                    project_id: row.get("project_id"),
                    endpoint: row.get("endpoint"),
                    auth: auth_of(row)?,
                    reach: reach_of(row)?,
                })
            })
            .collect()
    }

    /// Records a probe; a failed probe keeps the last known version.
    pub async fn record_probe(&self, id: &str, result: &ProbeResult) -> Result<()> {
        self.record_probes(&[(id.to_owned(), result.clone())]).await
    }

    /// Records many probes in one transaction (a failed probe keeps the last known version). A
    /// probe that began before the last record changes no status, but its version is kept: only
    /// probes read versions, and two that overlap an upgrade are put right by the next round.
    pub async fn record_probes(&self, results: &[(String, ProbeResult)]) -> Result<()> {
        // Edges seen online that were not: their waiting targets may run now.
        let mut came_online: Vec<String> = Vec::new();
        let online: Vec<String> =
            results.iter().filter(|(_, r)| r.status == EdgeStatus::Online).map(|(id, _)| id.clone()).collect();
        if !online.is_empty() {
            let before = self.edge_health(&online).await?;
            came_online.extend(
                online.iter().filter(|id| before.get(*id).is_some_and(|h| h.status != EdgeStatus::Online)).cloned(),
            );
        }
        let mut tx = self.write.begin().await?;
        let mut versions_changed = 0;
        for (id, result) in results {
            // `status` on the right is the old one: `status_since` moves only when it changes.
            let done = sqlx::query(
                "UPDATE edge_services SET status = $1, status_reason = $2, probed_at = $3,
                        status_since = CASE WHEN status = $1 THEN COALESCE(status_since, $3) ELSE $3 END
                 WHERE id = $4 AND (probed_at IS NULL OR probed_at <= $3)",
            )
            .bind(result.status.as_str())
            .bind(&result.reason)
            .bind(result.started_at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                // Stale: a record that began later is in already (often an agent's status, which
                // says nothing of the version, so the version read here is still kept).
                came_online.retain(|edge| edge != id);
            }
            // Apart, so only a version that changed rewrites the service in the search index.
            if let Some(version) = &result.version {
                let done =
                    sqlx::query("UPDATE edge_services SET version = $1 WHERE id = $2 AND version IS DISTINCT FROM $1")
                        .bind(version)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                versions_changed += done.rows_affected();
            }
        }
        if !came_online.is_empty() {
            Store::wake_waiting(&mut tx, self.backend, &came_online).await?;
        }
        tx.commit().await?;
        self.note_search_writes(versions_changed);
        Ok(())
    }

    /// What the prober last found of these edges, by id (ids not found are left out).
    pub async fn edge_health(&self, edge_ids: &[String]) -> Result<HashMap<String, EdgeHealth>> {
        let mut health = HashMap::with_capacity(edge_ids.len());
        for chunk in edge_ids.chunks(500) {
            let mut sql = crate::sql::Sql::new(
                "SELECT id, status, status_reason, status_since, probed_at FROM edge_services WHERE id IN (",
            );
            sql.text_list(chunk).push(")");
            for row in sql.query(self.backend).fetch_all(&self.read).await? {
                let entry = EdgeHealth {
                    status: parsed(&row, "status")?,
                    reason: row.get("status_reason"),
                    since: row.get("status_since"),
                    probed_at: row.get("probed_at"),
                };
                health.insert(row.get("id"), entry);
            }
        }
        Ok(health)
    }

    pub async fn count_edges(&self, project_id: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM edge_services WHERE project_id = $1")
            .bind(project_id)
            .fetch_one(&self.read)
            .await?;
        Ok(row.get("n"))
    }
}

/// Inserts services with one audit record each, in the caller's transaction; `import_id` names
/// the chunked import they belong to.
async fn insert_edge_rows(
    tx: &mut sqlx::Transaction<'_, Any>,
    project_id: &str,
    edges: &[NewEdge],
    audit_base: &AuditEntry,
    import_id: Option<&str>,
) -> Result<Vec<EdgeService>> {
    let mut created = Vec::with_capacity(edges.len());
    let now = now_ms();
    for new in edges {
        let id = new_id();
        let tags = serde_json::to_string(&new.tags).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO edge_services (id, project_id, name, endpoint, description, tags, auth_kind, auth_username,
                                        auth_secret, transport, agent_id, created_at, updated_at, import_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13)",
        )
        .bind(&id)
        .bind(project_id)
        .bind(&new.name)
        .bind(&new.endpoint)
        .bind(&new.description)
        .bind(&tags)
        .bind(new.auth.kind.as_str())
        .bind(&new.auth.username)
        .bind(&new.auth.secret)
        .bind(new.reach.transport().as_str())
        .bind(new.reach.agent_id())
        .bind(now)
        .bind(import_id)
        .execute(&mut **tx)
        .await
        .map_err(|e| edge_conflict(e, &new.name, &new.reach))?;
        insert_tags(tx, project_id, &id, &new.tags).await?;
        let entry = AuditEntry { resource_id: id.clone(), resource_name: new.name.clone(), ..audit_base.clone() };
        audit::insert(tx, &entry).await?;
        created.push(EdgeService {
            id,
            project_id: project_id.to_owned(),
            name: new.name.clone(),
            endpoint: new.endpoint.clone(),
            description: new.description.clone(),
            tags: new.tags.clone(),
            version: None,
            status: EdgeStatus::Unknown,
            status_reason: String::new(),
            probed_at: None,
            status_since: None,
            config_state: ConfigState::None,
            config_checked_at: None,
            config_reason: String::new(),
            auth: new.auth.clone(),
            reach: new.reach.clone(),
            agent_credentials_issued: false,
            created_at: now,
            updated_at: now,
        });
    }
    Ok(created)
}

/// Deletes what hangs off these services (tags, delivered objects, inventory) in the caller's
/// transaction, which then deletes the services themselves.
async fn delete_edge_dependents(tx: &mut sqlx::Transaction<'_, Any>, backend: Backend, ids: &[String]) -> Result<()> {
    for table in ["edge_service_tags", "edge_objects", "edge_inventory"] {
        let mut sql = Sql::new("DELETE FROM ");
        sql.push(table).push(" WHERE edge_id IN (");
        sql.text_list(ids).push(")");
        sql.query(backend).execute(&mut **tx).await?;
    }
    Ok(())
}

async fn insert_tags(
    tx: &mut sqlx::Transaction<'_, Any>,
    project_id: &str,
    edge_id: &str,
    tags: &[String],
) -> Result<()> {
    for tag in tags {
        sqlx::query(
            "INSERT INTO edge_service_tags (edge_id, tag, project_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(edge_id)
        .bind(tag)
        .bind(project_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// How many services match a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchCount {
    pub n: i64,
    /// `n` is the database's estimate (PostgreSQL, more than [`EXACT_COUNT_UP_TO`] matches).
    pub estimated: bool,
}

/// On PostgreSQL, matches are counted exactly up to this many; more are estimated.
pub const EXACT_COUNT_UP_TO: i64 = 5_000;

/// The `rows=N` of a plan's top line (`Seq Scan on ... (cost=0.00..1.00 rows=42 width=4)`).
fn planned_rows(line: &str) -> Option<i64> {
    let after = &line[line.find(" rows=")? + " rows=".len()..];
    after[..after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len())].parse().ok()
}

/// Above this many matches a page is found by walking the services in name order.
const DENSE_MATCHES: i64 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// Find every match through the filters' indexes, then sort: for few matches.
    FromFilters,
    /// Walk the project's services in name order, checking each: for many matches.
    ByName,
}

/// The substring filters, each with the column it searches (`None`: any of them).
fn substring_filters(filter: &EdgeFilter) -> [(Option<&'static str>, Option<&str>); 3] {
    [
        (None, filter.q.as_deref()),
        (Some("name"), filter.name.as_deref()),
        (Some("endpoint"), filter.endpoint.as_deref()),
    ]
}

/// `MATCH` on the trigram index (a substring, case-insensitive, in one column or any), within
/// the project's range of search ids.
fn search_condition(sql: &mut Sql, project_id: &str, column: Option<&str>, needle: &str) {
    let phrase = format!("\"{}\"", needle.replace('"', "\"\""));
    let query = match column {
        Some(column) => format!("{column} : {phrase}"),
        None => phrase,
    };
    sql.push("edge_search MATCH ").text(query);
    for bound in [" AND rowid >= ", " AND rowid <= "] {
        sql.push(bound).push("(SELECT number FROM projects WHERE id = ").text(project_id).push(") * 4294967296");
    }
    sql.push(" + 4294967295");
}
