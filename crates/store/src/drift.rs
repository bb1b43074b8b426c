//! Drift and inventory: what was last delivered to each edge, what the last check found, and which
//! objects each edge held then.
//!
//! Delivered objects are written with the target's result (`finish_targets`), in its transaction,
//! so a result never stands without what it delivered. A check's finding is fenced by the delivery
//! it compared against: a delivery that lands while a check reads is not marked drifted by it.

use domain::audit::AuditAction;
use domain::drift::{ConfigState, InventoryKind};
use domain::edge::EdgeStatus;
use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use crate::edges::auth_of;
use crate::sql::{Arg, Sql};
use crate::{AuditEntry, Result, Store, parsed};

/// Most edge ids listed per inventory item.
pub const INVENTORY_EDGE_IDS: usize = 50;

/// What a successful target left on its edge, written with its result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    pub template_id: Option<String>,
    pub plugin_id: Option<String>,
    pub objects: Vec<DeliveredObject>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredObject {
    /// The object reference as JSON.
    pub object: String,
    /// Its normal form, sealed by the caller; `None`: the delivery removed it (a rollback to before
    /// it existed).
    pub expected: Option<String>,
}

/// One object last delivered to an edge, with the last check's finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedObject {
    pub object: String,
    /// Sealed normal form.
    pub expected: String,
    pub delivery_id: String,
    pub template_id: Option<String>,
    pub plugin_id: Option<String>,
    pub delivered_at: i64,
    pub drifted: bool,
    /// Masked JSON of what the last check read (`null`: gone); `None` before any check.
    pub live: Option<String>,
    /// Masked JSON Patch from expected to live.
    pub diff: String,
}

/// What a check needs of an edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckTarget {
    pub id: String,
    pub project_id: String,
    pub endpoint: String,
    pub auth: crate::EdgeAuthRow,
    pub reach: domain::edge::Reach,
    pub status: EdgeStatus,
}

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub edge_id: String,
    pub checked_at: i64,
    pub finding: Finding,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// The edge answered: each delivered object compared, and what it holds.
    Read { objects: Vec<ObjectFinding>, inventory: Vec<(InventoryKind, String)> },
    /// The edge could not be read: why.
    Unreadable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectFinding {
    pub object: String,
    /// The delivery whose expectation was compared (the fence).
    pub delivery_id: String,
    pub drifted: bool,
    pub live: String,
    pub diff: String,
}

/// One inventory line: an object and the edges holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryItem {
    pub kind: InventoryKind,
    pub name: String,
    pub edges: i64,
    /// The first `INVENTORY_EDGE_IDS`, by id.
    pub edge_ids: Vec<String>,
}

fn expected_object(row: &AnyRow) -> ExpectedObject {
    ExpectedObject {
        object: row.get("object"),
        expected: row.get("expected"),
        delivery_id: row.get("delivery_id"),
        template_id: row.get("template_id"),
        plugin_id: row.get("plugin_id"),
        delivered_at: row.get("delivered_at"),
        drifted: row.get::<i32, _>("drifted") != 0,
        live: row.get("live"),
        diff: row.get("diff"),
    }
}

/// Rows of one multi-row upsert of kept objects (7 values each).
const UPSERT_ROWS: usize = 500;

/// Records what successful targets (delivery, edge, what it left) left on their edges, inside their
/// results' transaction: a few statements per batch of results, not per object, since a result
/// batch holds up to hundreds of targets and SQLite has one writer.
pub(crate) async fn record_delivered(
    tx: &mut sqlx::Transaction<'_, Any>,
    backend: crate::Backend,
    delivered: &[(&str, &str, &Delivered)],
    now: i64,
) -> Result<()> {
    if delivered.is_empty() {
        return Ok(());
    }
    // The last word on an object wins (PostgreSQL refuses one statement touching a row twice).
    let mut kept: std::collections::BTreeMap<(&str, &str), (&str, &Delivered, Option<&str>)> =
        std::collections::BTreeMap::new();
    for (delivery_id, edge_id, what) in delivered {
        for object in &what.objects {
            kept.insert((edge_id, object.object.as_str()), (delivery_id, what, object.expected.as_deref()));
        }
    }
    let (upserts, deletes): (Vec<_>, Vec<_>) = kept.into_iter().partition(|(_, (_, _, expected))| expected.is_some());
    let upserts: Vec<_> = upserts.into_iter().collect();
    for chunk in upserts.chunks(UPSERT_ROWS) {
        let mut sql = Sql::new(
            "INSERT INTO edge_objects (edge_id, object, expected, delivery_id, template_id, plugin_id, delivered_at) VALUES ",
        );
        for (k, ((edge_id, object), (delivery_id, what, expected))) in chunk.iter().enumerate() {
            sql.push(if k == 0 { "(" } else { ", (" });
            sql.text(*edge_id).push(", ").text(*object).push(", ").text(expected.unwrap_or_default());
            sql.push(", ").text(*delivery_id).push(", ");
            sql.bind(Arg::OptText(what.template_id.clone())).push(", ").bind(Arg::OptText(what.plugin_id.clone()));
            sql.push(", ").int(now).push(")");
        }
        sql.push(
            " ON CONFLICT (edge_id, object) DO UPDATE SET expected = excluded.expected,
                delivery_id = excluded.delivery_id, template_id = excluded.template_id,
                plugin_id = excluded.plugin_id, delivered_at = excluded.delivered_at,
                drifted = 0, live = NULL, diff = '[]'",
        );
        sql.query(backend).execute(&mut **tx).await?;
    }
    for ((edge_id, object), _) in deletes {
        sqlx::query("DELETE FROM edge_objects WHERE edge_id = $1 AND object = $2")
            .bind(edge_id)
            .bind(object)
            .execute(&mut **tx)
            .await?;
    }
    let mut edges: Vec<String> = delivered.iter().map(|(_, edge_id, _)| (*edge_id).to_owned()).collect();
    edges.sort_unstable();
    edges.dedup();
    for chunk in edges.chunks(UPSERT_ROWS) {
        let mut sql = Sql::new("UPDATE edge_services SET config_state = ");
        sql.push(STATE_AFTER_DELIVERY).push(" WHERE id IN (").text_list(chunk).push(")");
        sql.query(backend).execute(&mut **tx).await?;
    }
    Ok(())
}

/// An edge's state once objects were delivered to it: `none` without kept objects, `drifted`
/// with a drifted one, else `in_sync`, except that `unknown` stays (a delivery to some objects
/// says nothing of the others).
const STATE_AFTER_DELIVERY: &str =
    "CASE WHEN NOT EXISTS (SELECT 1 FROM edge_objects o WHERE o.edge_id = edge_services.id) THEN 'none'
          WHEN EXISTS (SELECT 1 FROM edge_objects o WHERE o.edge_id = edge_services.id AND o.drifted = 1) THEN 'drifted'
          WHEN config_state = 'unknown' THEN 'unknown' ELSE 'in_sync' END";

/// The same after a check that read the edge.
const STATE_AFTER_CHECK: &str =
    "CASE WHEN NOT EXISTS (SELECT 1 FROM edge_objects o WHERE o.edge_id = edge_services.id) THEN 'none'
          WHEN EXISTS (SELECT 1 FROM edge_objects o WHERE o.edge_id = edge_services.id AND o.drifted = 1) THEN 'drifted'
          ELSE 'in_sync' END";

async fn config_state_of(conn: &mut sqlx::AnyConnection, edge_id: &str) -> Result<Option<String>> {
    let row = sqlx::query("SELECT config_state FROM edge_services WHERE id = $1")
        .bind(edge_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|r| r.get("config_state")))
}

/// The `edge_service.drift` record of an edge found drifted (it was not before this check): the
/// source of the `edge.drifted` webhook event.
async fn audit_drift(conn: &mut sqlx::AnyConnection, edge_id: &str, objects: &[&str]) -> Result<()> {
    let row = sqlx::query(
        "SELECT e.name, e.project_id, p.name AS project_name, p.org_id, o.name AS org_name
         FROM edge_services e JOIN projects p ON p.id = e.project_id JOIN orgs o ON o.id = p.org_id
         WHERE e.id = $1",
    )
    .bind(edge_id)
    .fetch_one(&mut *conn)
    .await?;
    let entry = AuditEntry {
        actor_name: "drift check".into(),
        org_id: row.get("org_id"),
        org_name: row.get("org_name"),
        project_id: row.get("project_id"),
        project_name: row.get("project_name"),
        resource_type: "edge_service".into(),
        resource_id: edge_id.to_owned(),
        resource_name: row.get("name"),
        // Object keys are stored as the JSON of `domain::plan::ObjectRef` (`{"kind", "id"}`).
        details: serde_json::json!({"objects": objects.iter().map(|o| serde_json::from_str(o).unwrap_or_else(|_| serde_json::Value::from(*o))).collect::<Vec<serde_json::Value>>()}),
        ..AuditEntry::new(AuditAction::EdgeServiceDrift)
    };
    crate::audit::insert(conn, &entry).await
}

impl Store {
    /// Edges to check, across projects, by id after `after`.
    pub async fn check_targets(&self, after: &str, limit: i64) -> Result<Vec<CheckTarget>> {
        let rows = sqlx::query(
            "SELECT id, project_id, endpoint, auth_kind, auth_username, auth_secret, transport, agent_id, status FROM edge_services
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CheckTarget {
                    id: row.get("id"),
                    project_id: row.get("project_id"),
                    endpoint: row.get("endpoint"),
                    auth: auth_of(row)?,
                    reach: crate::edges::reach_of(row)?,
                    status: parsed(row, "status")?,
                })
            })
            .collect()
    }

    /// The objects last delivered to an edge, in the order they were delivered.
    pub async fn expected_objects(&self, edge_id: &str) -> Result<Vec<ExpectedObject>> {
        let rows = sqlx::query("SELECT * FROM edge_objects WHERE edge_id = $1 ORDER BY delivered_at, object")
            .bind(edge_id)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(expected_object).collect())
    }

    /// Records checks, one transaction for the batch: each object's finding (unless a delivery
    /// replaced what was compared meanwhile), the edge's inventory and its state.
    pub async fn record_checks(&self, results: &[CheckResult]) -> Result<()> {
        let mut tx = self.write.begin().await?;
        for result in results {
            match &result.finding {
                Finding::Read { objects, inventory } => {
                    for finding in objects {
                        sqlx::query(
                            "UPDATE edge_objects SET drifted = $1, live = $2, diff = $3
                             WHERE edge_id = $4 AND object = $5 AND delivery_id = $6",
                        )
                        .bind(i32::from(finding.drifted))
                        .bind(&finding.live)
                        .bind(&finding.diff)
                        .bind(&result.edge_id)
                        .bind(&finding.object)
                        .bind(&finding.delivery_id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    sqlx::query("DELETE FROM edge_inventory WHERE edge_id = $1")
                        .bind(&result.edge_id)
                        .execute(&mut *tx)
                        .await?;
                    for (kind, name) in inventory {
                        sqlx::query(
                            "INSERT INTO edge_inventory (edge_id, kind, name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        )
                        .bind(&result.edge_id)
                        .bind(kind.as_str())
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                    }
                    let before = config_state_of(&mut tx, &result.edge_id).await?;
                    let update = format!(
                        "UPDATE edge_services SET config_state = {STATE_AFTER_CHECK}, config_checked_at = $2, config_reason = '' WHERE id = $1"
                    );
                    sqlx::query(sqlx::AssertSqlSafe(update))
                        .bind(&result.edge_id)
                        .bind(result.checked_at)
                        .execute(&mut *tx)
                        .await?;
                    if before.as_deref() != Some("drifted")
                        && config_state_of(&mut tx, &result.edge_id).await?.as_deref() == Some("drifted")
                    {
                        let drifted: Vec<&str> =
                            objects.iter().filter(|o| o.drifted).map(|o| o.object.as_str()).collect();
                        audit_drift(&mut tx, &result.edge_id, &drifted).await?;
                    }
                }
                Finding::Unreadable(reason) => {
                    sqlx::query(
                        "UPDATE edge_services SET config_checked_at = $2, config_reason = $3,
                                config_state = CASE WHEN EXISTS (SELECT 1 FROM edge_objects o WHERE o.edge_id = $1)
                                                    THEN 'unknown' ELSE 'none' END
                         WHERE id = $1",
                    )
                    .bind(&result.edge_id)
                    .bind(result.checked_at)
                    .bind(reason)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// How many edges (of every project) are in `state`: the drifted-edges gauge.
    pub async fn edges_in_config_state(&self, state: ConfigState) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM edge_services WHERE config_state = $1")
            .bind(state.as_str())
            .fetch_one(&self.read)
            .await?;
        Ok(row.get("n"))
    }

    /// Which objects the project's edges held at their last check: by kind and exact name when
    /// given, each with how many edges and the first of them.
    pub async fn inventory(
        &self,
        project_id: &str,
        kind: Option<InventoryKind>,
        name: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<InventoryItem>, i64)> {
        let conditions = |sql: &mut Sql| {
            sql.push(" FROM edge_inventory i JOIN edge_services e ON e.id = i.edge_id WHERE e.project_id = ");
            sql.text(project_id);
            if let Some(kind) = kind {
                sql.push(" AND i.kind = ").text(kind.as_str());
            }
            if let Some(name) = name {
                sql.push(" AND i.name = ").text(name);
            }
        };
        let mut count = Sql::new("SELECT COUNT(*) AS n FROM (SELECT DISTINCT i.kind, i.name");
        conditions(&mut count);
        count.push(") AS objects");
        let total: i64 = count.query(self.backend).fetch_one(&self.read).await?.get("n");
        let mut select = Sql::new("SELECT i.kind, i.name, COUNT(*) AS edges");
        conditions(&mut select);
        select.push(" GROUP BY i.kind, i.name ORDER BY i.name, i.kind LIMIT ").int(limit).push(" OFFSET ").int(offset);
        let rows = select.query(self.backend).fetch_all(&self.read).await?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind: InventoryKind = parsed(row, "kind")?;
            let name: String = row.get("name");
            let ids = sqlx::query(
                "SELECT i.edge_id FROM edge_inventory i JOIN edge_services e ON e.id = i.edge_id
                 WHERE e.project_id = $1 AND i.kind = $2 AND i.name = $3 ORDER BY i.edge_id LIMIT $4",
            )
            .bind(project_id)
            .bind(kind.as_str())
            .bind(&name)
            .bind(INVENTORY_EDGE_IDS as i64)
            .fetch_all(&self.read)
            .await?;
            let edge_ids = ids.iter().map(|r| r.get("edge_id")).collect();
            items.push(InventoryItem { kind, name, edges: row.get("edges"), edge_ids });
        }
        Ok((items, total))
    }
}
