//! Deliveries and their targets: durable work that survives a restart.
//!
//! Targets are claimed in batches with a lease; each claim increments `attempts`, which then acts
//! as a fencing token: a result is written only if the target is still held by that claim. No
//! transaction stays open across an edge call.

use std::str::FromStr;

use domain::delivery::{Counts, DeliveryKind, DeliveryMode, DeliveryState, FailureCode, RestoreOutcome, TargetStatus};
use domain::rollout::Rollout;
use domain::template::TemplateKind;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::{self, AuditEntry};
use crate::edges::EdgeAuthRow;
use crate::{Backend, Result, Store, StoreError, json_list, json_value, now_ms, parsed};

/// A delivery's progress in one statement (`Store::delivery_progress`); `$waiting_index` names
/// the index of waiting targets where a backend must be told to use it.
macro_rules! progress_sql {
    ($waiting_index:literal) => {
        concat!(
            "SELECT d.results_written AS last_result, t.status AS status, COUNT(t.status) AS n,",
            " (SELECT COUNT(*) FROM delivery_targets w",
            $waiting_index,
            "  WHERE w.delivery_id = d.id AND w.status = 'pending' AND w.not_before IS NOT NULL) AS waiting",
            " FROM deliveries d LEFT JOIN delivery_targets t ON t.delivery_id = d.id",
            " WHERE d.id = $1 GROUP BY d.id, d.results_written, t.status",
        )
    };
}

/// The rows of a batch update match their targets by claim: the same delivery, edge and attempt,
/// still running (a result or snapshot of a claim another worker took over matches nothing).
/// On SQLite the rows come from `jsonb_each` (see `create_delivery` for why not `json_each`).
macro_rules! sqlite_batch_match {
    () => {
        " WHERE delivery_targets.delivery_id = r.value ->> 'delivery_id' AND delivery_targets.edge_id = r.value ->> 'edge_id'
            AND delivery_targets.attempts = r.value ->> 'attempt' AND delivery_targets.status = 'running'
          RETURNING delivery_id, edge_id"
    };
}

macro_rules! postgres_batch_match {
    () => {
        " WHERE t.delivery_id = r.delivery_id AND t.edge_id = r.edge_id AND t.attempts = r.attempt AND t.status = 'running'
          RETURNING t.delivery_id, t.edge_id"
    };
}

/// One target's result in a batch update.
#[derive(serde::Serialize)]
struct ResultRow<'a> {
    delivery_id: &'a str,
    edge_id: &'a str,
    attempt: i64,
    status: &'a str,
    reason: &'a str,
    items: String,
    tries: i64,
    edge_version: Option<&'a str>,
    seq: i64,
    restore: &'a str,
    failure: &'a str,
}

/// One target's snapshot in a batch update.
#[derive(serde::Serialize)]
struct SnapshotRow<'a> {
    delivery_id: &'a str,
    edge_id: &'a str,
    attempt: i64,
    snapshot: String,
}

/// The targets a batch update changed: edge ids by delivery id.
struct Changed(std::collections::HashMap<String, std::collections::HashSet<String>>);

impl Changed {
    fn has(&self, delivery_id: &str, edge_id: &str) -> bool {
        self.0.get(delivery_id).is_some_and(|edges| edges.contains(edge_id))
    }
}

/// Runs a batch update of `rows`, bound as one JSON array (`$1`; `$2` is `now` when given): one
/// statement, prepared once, whatever the batch's size, instead of a round trip to the database
/// per row. Answers the targets it changed.
async fn batch_update<R: serde::Serialize>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    sql: &'static str,
    rows: &[R],
    now: Option<i64>,
) -> Result<Changed> {
    let json = serde_json::to_string(rows).map_err(|e| StoreError::Database(sqlx::Error::Encode(Box::new(e))))?;
    let mut query = sqlx::query(sql).bind(json);
    if let Some(now) = now {
        query = query.bind(now);
    }
    let mut changed = Changed(std::collections::HashMap::new());
    for row in query.fetch_all(&mut **tx).await? {
        changed.0.entry(row.get("delivery_id")).or_default().insert(row.get("edge_id"));
    }
    Ok(changed)
}

/// What the delivery history is narrowed to; `None` matches every delivery.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryListFilter {
    pub state: Option<DeliveryState>,
    /// The template's (or plugin's) name, exactly.
    pub template: Option<String>,
    /// Who started it, exactly.
    pub created_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub id: String,
    pub project_id: String,
    pub kind: DeliveryKind,
    pub template_id: Option<String>,
    pub template_name: String,
    pub template_version: Option<i64>,
    /// `None` for a plugin delivery.
    pub template_kind: Option<TemplateKind>,
    pub plugin_id: Option<String>,
    pub content: String,
    pub content_sha256: String,
    pub content_edited: bool,
    pub params: Value,
    pub options: Value,
    pub dry_run: bool,
    pub mode: DeliveryMode,
    /// The plan an `apply` delivery carries out.
    pub plan_id: Option<String>,
    /// The delivery a `rollback` puts back.
    pub rollback_of: Option<String>,
    /// Apply or roll back over objects changed since the plan or delivery.
    pub force: bool,
    pub created_by: String,
    /// `Running`, `AwaitingApproval` or `Scheduled`.
    pub state: DeliveryState,
    pub rollout: Option<Rollout>,
    /// Where each wave ends in target order (`[total]` without a rollout).
    pub wave_ends: Vec<u64>,
    pub start_at: Option<i64>,
    pub approvals_required: i64,
    /// A rollback that must be its source's first (an abort's own): refused with
    /// `AlreadyRolledBack` when another rollback was started first, so a retried abort makes one.
    pub first_rollback_only: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewTarget {
    pub edge_id: String,
    pub edge_name: String,
    pub endpoint: String,
    pub edge_version: Option<String>,
    pub tags: Vec<String>,
    pub auth: EdgeAuthRow,
    pub reach: domain::edge::Reach,
    /// 1-based; 0 without a rollout.
    pub wave: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: String,
    pub project_id: String,
    pub kind: DeliveryKind,
    pub template_id: Option<String>,
    pub template_name: String,
    pub template_version: Option<i64>,
    /// `None` for a plugin delivery (`""` on the wire, as before).
    pub template_kind: Option<TemplateKind>,
    pub plugin_id: Option<String>,
    pub content: String,
    pub content_sha256: String,
    pub content_edited: bool,
    pub params: Value,
    pub options: Value,
    pub dry_run: bool,
    pub mode: DeliveryMode,
    pub plan_id: Option<String>,
    pub rollback_of: Option<String>,
    pub force: bool,
    pub state: DeliveryState,
    pub cancel_requested: bool,
    pub total: i64,
    pub created_by: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub rollout: Option<Rollout>,
    pub wave_ends: Vec<u64>,
    /// The wave targets are claimed from (0-based index into `wave_ends`).
    pub wave: i64,
    pub start_at: Option<i64>,
    pub approvals_required: i64,
    /// Why the rollout was aborted; `None` unless it was.
    pub abort_reason: Option<String>,
    /// The rollback delivery an abort (or the first rollback) started.
    pub rollback_id: Option<String>,
}

impl Delivery {
    /// Targets at positions below this may be claimed now (the current wave's end).
    pub fn claim_limit(&self) -> i64 {
        self.wave_ends.get(self.wave as usize).map_or(i64::MAX, |end| *end as i64)
    }

    /// Whether a wave follows the current one.
    pub fn has_next_wave(&self) -> bool {
        (self.wave as usize + 1) < self.wave_ends.len()
    }

    /// The current wave and the number of waves as people count them (1-based), `(0, 0)` without
    /// a rollout.
    pub fn shown_waves(&self) -> (u32, u32) {
        match self.rollout {
            Some(_) => (self.wave as u32 + 1, self.wave_ends.len() as u32),
            None => (0, 0),
        }
    }
}

/// An approval of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub user_id: String,
    pub username: String,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryTarget {
    pub edge_id: String,
    pub name: String,
    pub endpoint: String,
    pub reach: domain::edge::Reach,
    pub version: Option<String>,
    pub tags: Vec<String>,
    pub status: TargetStatus,
    pub reason: String,
    pub items: Value,
    pub attempts: i64,
    pub tries: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The number of its latest result (0 until it has one): the id of its live event.
    pub result_seq: i64,
    /// What it held before the first write (`[{ref, live}]`), for `apply` targets that got there.
    pub snapshot: Option<Value>,
    pub restore: Option<RestoreOutcome>,
    /// Why it failed, when it failed while it ran.
    pub failure: Option<FailureCode>,
    /// 1-based; 0 without a rollout.
    pub wave: i64,
}

/// A delivery's counts, the number of its latest result and how many of its targets wait (an
/// offline edge, outside a window), read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub counts: Counts,
    pub last_result: i64,
    pub waiting: u64,
}

/// A target a worker now holds, with what it needs to do the work.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedTarget {
    pub delivery_id: String,
    pub seq: i64,
    pub edge_id: String,
    pub edge_name: String,
    pub endpoint: String,
    pub edge_version: Option<String>,
    pub tags: Vec<String>,
    pub auth: EdgeAuthRow,
    pub reach: domain::edge::Reach,
    /// The fencing token of this claim.
    pub attempt: i64,
    /// The snapshot an earlier claim recorded before writing: a resumed target restores to it,
    /// not to what the interrupted attempt left.
    pub snapshot: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TargetOutcome {
    pub status: TargetStatus,
    pub reason: String,
    /// Why it failed (`None` unless `status` is failed).
    pub failure: Option<FailureCode>,
    pub items: Value,
    pub tries: i64,
    /// The version the edge reported during the delivery, when it did.
    pub edge_version: Option<String>,
    pub restore: Option<RestoreOutcome>,
    /// What a successful target left on its edge (none for plans, dry runs and failures).
    pub delivered: Option<crate::Delivered>,
}

pub(crate) fn delivery(row: &AnyRow) -> Result<Delivery> {
    Ok(Delivery {
        id: row.get("id"),
        project_id: row.get("project_id"),
        kind: parsed(row, "kind")?,
        template_id: row.get("template_id"),
        template_name: row.get("template_name"),
        template_version: row.get("template_version"),
        template_kind: match row.get::<String, _>("template_kind").as_str() {
            "" => None,
            _ => Some(parsed(row, "template_kind")?),
        },
        plugin_id: row.get("plugin_id"),
        content: row.get("content"),
        content_sha256: row.get("content_sha256"),
        content_edited: row.get::<i32, _>("content_edited") != 0,
        params: json_value(row, "params")?,
        options: json_value(row, "options")?,
        dry_run: row.get::<i32, _>("dry_run") != 0,
        mode: parsed(row, "mode")?,
        plan_id: row.get("plan_id"),
        rollback_of: row.get("rollback_of"),
        force: row.get::<i32, _>("force") != 0,
        state: parsed(row, "state")?,
        cancel_requested: row.get::<i32, _>("cancel_requested") != 0,
        total: row.get("total"),
        created_by: row.get("created_by"),
        created_at: row.get("created_at"),
        finished_at: row.get("finished_at"),
        rollout: match row.get::<String, _>("rollout").as_str() {
            "" => None,
            text => {
                Some(serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("deliveries.rollout: {e}")))?)
            }
        },
        wave_ends: serde_json::from_str(&row.get::<String, _>("wave_ends"))
            .map_err(|e| StoreError::Corrupt(format!("deliveries.wave_ends: {e}")))?,
        wave: row.get::<i32, _>("wave").into(),
        start_at: row.get("start_at"),
        approvals_required: row.get::<i32, _>("approvals_required").into(),
        abort_reason: Some(row.get::<String, _>("abort_reason")).filter(|r| !r.is_empty()),
        rollback_id: row.get("rollback_id"),
    })
}

fn target(row: &AnyRow) -> Result<DeliveryTarget> {
    Ok(DeliveryTarget {
        edge_id: row.get("edge_id"),
        name: row.get("edge_name"),
        endpoint: row.get("endpoint"),
        reach: crate::edges::reach_of(row)?,
        version: row.get("edge_version"),
        tags: json_list(row, "tags")?,
        status: parsed(row, "status")?,
        reason: row.get("reason"),
        items: json_value(row, "items")?,
        attempts: row.get::<i32, _>("attempts").into(),
        tries: row.get::<i32, _>("tries").into(),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        result_seq: row.get("result_seq"),
        snapshot: optional_json(row, "snapshot")?,
        restore: restore_of(row)?,
        failure: failure_of(row)?,
        wave: row.get::<i32, _>("wave").into(),
    })
}

fn optional_json(row: &AnyRow, column: &str) -> Result<Option<Value>> {
    match row.get::<Option<String>, _>(column) {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("delivery_targets.{column}: {e}"))),
    }
}

fn failure_of(row: &AnyRow) -> Result<Option<FailureCode>> {
    match row.get::<String, _>("failure_code").as_str() {
        "" => Ok(None),
        _ => parsed(row, "failure_code").map(Some),
    }
}

fn restore_of(row: &AnyRow) -> Result<Option<RestoreOutcome>> {
    match row.get::<String, _>("restore").as_str() {
        "" => Ok(None),
        _ => parsed(row, "restore").map(Some),
    }
}

fn claimed(row: &AnyRow) -> Result<ClaimedTarget> {
    Ok(ClaimedTarget {
        delivery_id: row.get("delivery_id"),
        seq: row.get("seq"),
        edge_id: row.get("edge_id"),
        edge_name: row.get("edge_name"),
        endpoint: row.get("endpoint"),
        edge_version: row.get("edge_version"),
        tags: json_list(row, "tags")?,
        auth: crate::edges::auth_of(row)?,
        reach: crate::edges::reach_of(row)?,
        attempt: row.get::<i32, _>("attempts").into(),
        snapshot: optional_json(row, "snapshot")?,
    })
}

const TARGET_BATCH: usize = 2000;

/// Cancels the delivery's targets not started yet with `reason`; answers how many. Each canceled
/// target is a result too: numbers for all of them at once, from a block as large as the delivery
/// (`seq` is below its total).
async fn cancel_pending(tx: &mut sqlx::Transaction<'_, sqlx::Any>, delivery_id: &str, reason: &str) -> Result<u64> {
    let block = sqlx::query(
        "UPDATE deliveries SET results_written = results_written + total WHERE id = $1 RETURNING results_written, total",
    )
    .bind(delivery_id)
    .fetch_one(&mut **tx)
    .await?;
    let base = block.get::<i64, _>("results_written") - block.get::<i64, _>("total");
    let done = sqlx::query(
        "UPDATE delivery_targets SET status = 'canceled', reason = $4, finished_at = $1, result_seq = $3 + seq + 1,
                not_before = NULL
         WHERE delivery_id = $2 AND status = 'pending'",
    )
    .bind(now_ms())
    .bind(delivery_id)
    .bind(base)
    .bind(reason)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

impl Store {
    /// Stores the delivery, all its targets as pending, and its audit record, in one transaction.
    pub async fn create_delivery(
        &self,
        new: &NewDelivery,
        targets: &[NewTarget],
        audit_entry: &AuditEntry,
    ) -> Result<Delivery> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO deliveries (id, project_id, kind, template_id, template_name, template_version, template_kind,
                                     plugin_id, content, content_sha256, content_edited, params, options, dry_run,
                                     state, total, created_by, created_at, mode, plan_id, rollback_of, force,
                                     rollout, wave_ends, start_at, approvals_required)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $22, $15, $16, $17, $18, $19,
                     $20, $21, $23, $24, $25, $26)",
        )
        .bind(&new.id)
        .bind(&new.project_id)
        .bind(new.kind.as_str())
        .bind(new.template_id.clone())
        .bind(&new.template_name)
        .bind(new.template_version)
        .bind(new.template_kind.map(TemplateKind::as_str).unwrap_or(""))
        .bind(new.plugin_id.clone())
        .bind(&new.content)
        .bind(&new.content_sha256)
        .bind(i32::from(new.content_edited))
        .bind(new.params.to_string())
        .bind(new.options.to_string())
        .bind(i32::from(new.dry_run))
        .bind(targets.len() as i64)
        .bind(&new.created_by)
        .bind(now)
        .bind(new.mode.as_str())
        .bind(new.plan_id.clone())
        .bind(new.rollback_of.clone())
        .bind(i32::from(new.force))
        .bind(new.state.as_str())
        .bind(new.rollout.as_ref().map(|r| json!(r).to_string()).unwrap_or_default())
        .bind(json!(new.wave_ends).to_string())
        .bind(new.start_at)
        .bind(new.approvals_required as i32)
        .execute(&mut *tx)
        .await?;
        // Targets go in as one JSON array per batch: a statement with thousands of bind
        // parameters costs the SQLite driver time quadratic in their number. `jsonb_each`, not
        // `json_each`: its `value` is the element in SQLite's binary form, which `->>` reads in
        // place; `json_each` renders each element as text that every `->>` parses again (7 % of
        // a delivery's instructions).
        let insert = match self.backend {
            Backend::Sqlite => {
                "INSERT INTO delivery_targets (delivery_id, seq, edge_id, edge_name, endpoint, edge_version, tags,
                                               auth_kind, auth_username, auth_secret, status, wave, transport, agent_id)
                 SELECT $1, t.value ->> 0, t.value ->> 1, t.value ->> 2, t.value ->> 3, t.value ->> 4, t.value ->> 5,
                        t.value ->> 6, t.value ->> 7, t.value ->> 8, 'pending', t.value ->> 9, t.value ->> 10,
                        t.value ->> 11
                 FROM jsonb_each($2) AS t"
            }
            Backend::Postgres => {
                "INSERT INTO delivery_targets (delivery_id, seq, edge_id, edge_name, endpoint, edge_version, tags,
                                               auth_kind, auth_username, auth_secret, status, wave, transport, agent_id)
                 SELECT $1, (t ->> 0)::bigint, t ->> 1, t ->> 2, t ->> 3, t ->> 4, t ->> 5, t ->> 6, t ->> 7, t ->> 8,
                        'pending', (t ->> 9)::integer, t ->> 10, t ->> 11
                 FROM jsonb_array_elements($2::jsonb) AS t"
            }
        };
        for (batch_index, batch) in targets.chunks(TARGET_BATCH).enumerate() {
            let rows: Vec<Value> = batch
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    json!([
                        batch_index * TARGET_BATCH + i,
                        t.edge_id,
                        t.edge_name,
                        t.endpoint,
                        t.edge_version,
                        serde_json::to_string(&t.tags).unwrap_or_else(|_| "[]".into()),
                        t.auth.kind,
                        t.auth.username,
                        t.auth.secret,
                        t.wave,
                        t.reach.transport(),
                        t.reach.agent_id(),
                    ])
                })
                .collect();
            sqlx::query(insert).bind(&new.id).bind(Value::Array(rows).to_string()).execute(&mut *tx).await?;
        }
        // The first rollback of a delivery is the one it names (an abort's own rollback, once).
        if let Some(of) = &new.rollback_of {
            let linked = sqlx::query("UPDATE deliveries SET rollback_id = $1 WHERE id = $2 AND rollback_id IS NULL")
                .bind(&new.id)
                .bind(of)
                .execute(&mut *tx)
                .await?;
            if linked.rows_affected() == 0 && new.first_rollback_only {
                return Err(StoreError::Conflict { clash: crate::Clash::AlreadyRolledBack, name: of.clone() });
            }
        }
        // The state it was stored in says whether it started at once (`delivery.started`).
        let mut entry = audit_entry.clone();
        entry.details["state"] = new.state.as_str().into();
        audit::insert(&mut tx, &entry).await?;
        tx.commit().await?;
        self.get_delivery(&new.project_id, &new.id).await
    }

    pub async fn get_delivery(&self, project_id: &str, id: &str) -> Result<Delivery> {
        let row = sqlx::query("SELECT * FROM deliveries WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(delivery).transpose()?.ok_or(StoreError::NotFound(crate::Resource::Delivery))
    }

    pub async fn delivery_by_id(&self, id: &str) -> Result<Delivery> {
        let row = sqlx::query("SELECT * FROM deliveries WHERE id = $1").bind(id).fetch_optional(&self.read).await?;
        row.as_ref().map(delivery).transpose()?.ok_or(StoreError::NotFound(crate::Resource::Delivery))
    }

    /// Newest first.
    /// Deliveries of the project that have not ended.
    /// How many deliveries (of every project) are in each state; every state is listed.
    pub async fn deliveries_by_state(&self) -> Result<Vec<(DeliveryState, i64)>> {
        let rows =
            sqlx::query("SELECT state, COUNT(*) AS n FROM deliveries GROUP BY state").fetch_all(&self.read).await?;
        let mut counts: Vec<(DeliveryState, i64)> = DeliveryState::ALL.iter().map(|state| (*state, 0)).collect();
        for row in &rows {
            let state: DeliveryState = parsed(row, "state")?;
            if let Some(entry) = counts.iter_mut().find(|(known, _)| *known == state) {
                entry.1 = row.get("n");
            }
        }
        Ok(counts)
    }

    pub async fn running_deliveries(&self, project_id: &str) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM deliveries WHERE project_id = $1 AND state IN ('running', 'canceling', 'paused')",
        )
        .bind(project_id)
        .fetch_one(&self.read)
        .await?;
        Ok(row.get("n"))
    }

    /// A page of the project's deliveries, newest first, narrowed by `filter`.
    pub async fn list_deliveries(
        &self,
        project_id: &str,
        filter: &DeliveryListFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Delivery>, i64)> {
        // An empty text matches everything: one statement for every combination of filters.
        macro_rules! narrowed {
            () => {
                "FROM deliveries WHERE project_id = $1 AND ($2 = '' OR state = $2) \
                 AND ($3 = '' OR template_name = $3) AND ($4 = '' OR created_by = $4)"
            };
        }
        let state = filter.state.map(|s| s.as_str()).unwrap_or_default();
        let template = filter.template.as_deref().unwrap_or_default();
        let created_by = filter.created_by.as_deref().unwrap_or_default();
        let total: i64 = sqlx::query(concat!("SELECT COUNT(*) AS n ", narrowed!()))
            .bind(project_id)
            .bind(state)
            .bind(template)
            .bind(created_by)
            .fetch_one(&self.read)
            .await?
            .get("n");
        let rows =
            sqlx::query(concat!("SELECT * ", narrowed!(), " ORDER BY created_at DESC, id DESC LIMIT $5 OFFSET $6"))
                .bind(project_id)
                .bind(state)
                .bind(template)
                .bind(created_by)
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.read)
                .await?;
        Ok((rows.iter().map(delivery).collect::<Result<_>>()?, total))
    }

    pub async fn delivery_counts(&self, delivery_id: &str) -> Result<Counts> {
        let rows =
            sqlx::query("SELECT status, COUNT(*) AS n FROM delivery_targets WHERE delivery_id = $1 GROUP BY status")
                .bind(delivery_id)
                .fetch_all(&self.read)
                .await?;
        let mut counts = Counts::default();
        for row in rows {
            let status: String = row.get("status");
            let status = TargetStatus::from_str(&status).map_err(StoreError::Corrupt)?;
            counts.add(status, row.get::<i64, _>("n") as u64);
        }
        Ok(counts)
    }

    /// The counts of several deliveries in one query (a history page).
    pub async fn counts_of(&self, delivery_ids: &[String]) -> Result<std::collections::HashMap<String, Counts>> {
        let mut counts: std::collections::HashMap<String, Counts> =
            delivery_ids.iter().map(|id| (id.clone(), Counts::default())).collect();
        if delivery_ids.is_empty() {
            return Ok(counts);
        }
        let mut sql = crate::sql::Sql::new(
            "SELECT delivery_id, status, COUNT(*) AS n FROM delivery_targets WHERE delivery_id IN (",
        );
        sql.text_list(delivery_ids).push(") GROUP BY delivery_id, status");
        for row in sql.query(self.backend).fetch_all(&self.read).await? {
            let id: String = row.get("delivery_id");
            let status: TargetStatus = parsed(&row, "status")?;
            counts.entry(id).or_default().add(status, row.get::<i64, _>("n") as u64);
        }
        Ok(counts)
    }

    /// Counts, the latest result number and the waiting targets in one statement, so they describe
    /// the same moment.
    pub async fn delivery_progress(&self, delivery_id: &str) -> Result<Progress> {
        // Every live-event stream reads this as it opens, so it must not cost the delivery's
        // size: the counts come from the (delivery_id, status, seq) index alone (`COUNT(t.status)`,
        // not a column outside it), the waiting targets from their partial index. SQLite's planner
        // prefers the status index for the waiting count unless told (it knows no index sizes).
        let sql = match self.backend {
            Backend::Sqlite => progress_sql!(" INDEXED BY delivery_targets_waiting_in_delivery"),
            Backend::Postgres => progress_sql!(""),
        };
        let rows = sqlx::query(sql).bind(delivery_id).fetch_all(&self.read).await?;
        let mut progress = Progress { counts: Counts::default(), last_result: 0, waiting: 0 };
        for row in rows {
            progress.last_result = row.get("last_result");
            progress.waiting = row.get::<i64, _>("waiting") as u64;
            if let Some(status) = row.get::<Option<String>, _>("status") {
                let status = TargetStatus::from_str(&status).map_err(StoreError::Corrupt)?;
                progress.counts.add(status, row.get::<i64, _>("n") as u64);
            }
        }
        Ok(progress)
    }

    /// Results numbered after `after` (up to `until`, inclusive), in order, at most `limit`.
    pub async fn results_after(
        &self,
        delivery_id: &str,
        after: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<DeliveryTarget>> {
        let rows = sqlx::query(
            "SELECT * FROM delivery_targets WHERE delivery_id = $1 AND result_seq > $2 AND result_seq <= $3
             ORDER BY result_seq LIMIT $4",
        )
        .bind(delivery_id)
        .bind(after)
        .bind(until)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(target).collect()
    }

    /// One page of targets in delivery order, optionally of one status, with the total.
    pub async fn list_targets(
        &self,
        delivery_id: &str,
        status: Option<TargetStatus>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<DeliveryTarget>, i64)> {
        let status = status.map(|s| s.as_str()).unwrap_or("");
        let total: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM delivery_targets WHERE delivery_id = $1 AND ($2 = '' OR status = $2)",
        )
        .bind(delivery_id)
        .bind(status)
        .fetch_one(&self.read)
        .await?
        .get("n");
        let rows = sqlx::query(
            "SELECT * FROM delivery_targets WHERE delivery_id = $1 AND ($2 = '' OR status = $2) ORDER BY seq LIMIT $3 OFFSET $4",
        )
        .bind(delivery_id)
        .bind(status)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.read)
        .await?;
        Ok((rows.iter().map(target).collect::<Result<_>>()?, total))
    }

    /// Claims up to `limit` pending targets at positions below `below` (the current wave's end)
    /// that do not wait (`not_before`), or running ones whose lease ran out (their holder is
    /// presumed dead), for `worker`; nothing while the delivery is not running (paused, aborted
    /// and the like), whatever the caller last knew.
    pub async fn claim_targets(
        &self,
        delivery_id: &str,
        worker: &str,
        lease_ms: i64,
        limit: i64,
        below: i64,
        waiting_now: i64,
    ) -> Result<Vec<ClaimedTarget>> {
        let now = now_ms();
        // Pending targets and expired leases are looked up apart, each on the (delivery, status,
        // seq) index, so a claim costs its own size however many targets are already done.
        // SQLite builds a plain `LIMIT ?` into the statement's plan and prepares it again whenever
        // the bound value changes, as a claim's room does from one claim to the next (that was a
        // sixth of the server's instructions in a delivery); a `CAST` is read when it runs.
        let sql = match self.backend {
            Backend::Sqlite => {
                "UPDATE delivery_targets SET status = 'running', attempts = attempts + 1, lease_until = $1, worker = $2,
                        started_at = COALESCE(started_at, $3), not_before = NULL
                 WHERE delivery_id = $4
                   AND EXISTS (SELECT 1 FROM deliveries WHERE id = $4 AND state IN ('running', 'canceling'))
                   AND seq IN (
                     SELECT seq FROM (
                         SELECT seq FROM (SELECT seq FROM delivery_targets WHERE delivery_id = $4 AND status = 'pending'
                                          AND seq < $6 AND (not_before IS NULL OR not_before <= $7)
                                          ORDER BY seq LIMIT CAST($5 AS INTEGER))
                         UNION ALL
                         SELECT seq FROM delivery_targets
                         WHERE delivery_id = $4 AND status = 'running' AND lease_until < $3)
                     ORDER BY seq LIMIT CAST($5 AS INTEGER))
                 RETURNING *"
            }
            // CTEs, so LIMIT holds: PostgreSQL may re-run an `IN (subquery)` and pick more rows.
            Backend::Postgres => {
                "WITH live AS (SELECT 1 FROM deliveries WHERE id = $4 AND state IN ('running', 'canceling')),
                 pending AS (
                     SELECT seq FROM delivery_targets WHERE delivery_id = $4 AND status = 'pending' AND seq < $6
                       AND (not_before IS NULL OR not_before <= $7) AND EXISTS (SELECT 1 FROM live)
                     ORDER BY seq LIMIT $5 FOR UPDATE SKIP LOCKED),
                 expired AS (
                     SELECT seq FROM delivery_targets WHERE delivery_id = $4 AND status = 'running' AND lease_until < $3
                       AND EXISTS (SELECT 1 FROM live)
                     ORDER BY seq LIMIT $5 FOR UPDATE SKIP LOCKED),
                 picked AS (
                     SELECT seq FROM (SELECT seq FROM pending UNION ALL SELECT seq FROM expired) AS both_kinds
                     ORDER BY seq LIMIT $5)
                 UPDATE delivery_targets t SET status = 'running', attempts = t.attempts + 1, lease_until = $1, worker = $2,
                        started_at = COALESCE(t.started_at, $3), not_before = NULL
                 FROM picked WHERE t.delivery_id = $4 AND t.seq = picked.seq
                 RETURNING t.*"
            }
        };
        let rows = sqlx::query(sql)
            .bind(now + lease_ms)
            .bind(worker)
            .bind(now)
            .bind(delivery_id)
            .bind(limit)
            .bind(below)
            .bind(waiting_now)
            .fetch_all(&self.write)
            .await?;
        let mut claimed: Vec<ClaimedTarget> = rows.iter().map(claimed).collect::<Result<_>>()?;
        claimed.sort_by_key(|t| t.seq);
        Ok(claimed)
    }

    /// Writes a target's result if `attempt` still holds it; `false` means another claim took it
    /// over and this result is dropped.
    pub async fn finish_target(
        &self,
        delivery_id: &str,
        edge_id: &str,
        attempt: i64,
        outcome: &TargetOutcome,
    ) -> Result<bool> {
        let written =
            self.finish_targets(&[(delivery_id.to_owned(), edge_id.to_owned(), attempt, outcome.clone())]).await?;
        Ok(written.first().copied().flatten().is_some())
    }

    /// Asks for a delivery to stop and cancels its targets that never started, with its audit
    /// record (`details.canceled_targets` is filled in); answers how many were canceled.
    pub async fn cancel_delivery(&self, delivery_id: &str, audit_entry: &AuditEntry) -> Result<u64> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "UPDATE deliveries SET cancel_requested = 1,
                    state = CASE WHEN state IN ('running', 'paused', 'scheduled', 'awaiting_approval') THEN 'canceling'
                                 ELSE state END
             WHERE id = $1",
        )
        .bind(delivery_id)
        .execute(&mut *tx)
        .await?;
        let canceled = cancel_pending(&mut tx, delivery_id, "canceled before it started").await?;
        let mut entry = audit_entry.clone();
        entry.details["canceled_targets"] = canceled.into();
        audit::insert(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(canceled)
    }

    /// Aborts a rollout: records `reason` (the delivery ends `aborted`), cancels every target not
    /// started with it, and lets the targets under way finish (a paused, scheduled or unapproved
    /// delivery runs again only to close). Answers how many targets were canceled, or `None` when
    /// the delivery had already ended or been aborted. The audit record gets
    /// `details.canceled_targets`.
    pub async fn abort_delivery(
        &self,
        delivery_id: &str,
        reason: &str,
        audit_entry: &AuditEntry,
    ) -> Result<Option<u64>> {
        let mut tx = self.write.begin().await?;
        let marked = sqlx::query(
            "UPDATE deliveries SET abort_reason = $1,
                    state = CASE WHEN state = 'canceling' THEN state ELSE 'running' END
             WHERE id = $2 AND abort_reason = ''
               AND state IN ('running', 'paused', 'scheduled', 'awaiting_approval', 'canceling')",
        )
        .bind(reason)
        .bind(delivery_id)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() == 0 {
            return Ok(None);
        }
        let canceled = cancel_pending(&mut tx, delivery_id, reason).await?;
        let mut entry = audit_entry.clone();
        entry.details["canceled_targets"] = canceled.into();
        audit::insert(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(Some(canceled))
    }

    /// Puts failed targets back to pending and the delivery back to running; answers how many.
    pub async fn retry_failed(&self, delivery_id: &str, audit_entry: &AuditEntry) -> Result<u64> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE delivery_targets SET status = 'pending', reason = '', failure_code = '', items = '[]', lease_until = NULL,
                    finished_at = NULL
             WHERE delivery_id = $1 AND status = 'failed'",
        )
        .bind(delivery_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() > 0 {
            sqlx::query(
                "UPDATE deliveries SET state = 'running', finished_at = NULL, cancel_requested = 0 WHERE id = $1",
            )
            .bind(delivery_id)
            .execute(&mut *tx)
            .await?;
            audit::insert(&mut tx, audit_entry).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Records what targets held before their first write, each under the claim that took it
    /// (`attempt` fences it, as for results), in one transaction; answers, per snapshot, whether it
    /// was recorded. Durable before the caller writes to the edge.
    pub async fn record_snapshots(&self, snapshots: &[(String, String, i64, Value)]) -> Result<Vec<bool>> {
        let rows: Vec<SnapshotRow> = snapshots
            .iter()
            .map(|(delivery_id, edge_id, attempt, snapshot)| SnapshotRow {
                delivery_id,
                edge_id,
                attempt: *attempt,
                snapshot: snapshot.to_string(),
            })
            .collect();
        let sql = match self.backend {
            Backend::Sqlite => concat!(
                "UPDATE delivery_targets SET snapshot = r.value ->> 'snapshot' FROM jsonb_each($1) AS r",
                sqlite_batch_match!()
            ),
            Backend::Postgres => concat!(
                "UPDATE delivery_targets t SET snapshot = r.snapshot
                 FROM jsonb_to_recordset($1::jsonb) AS r(delivery_id TEXT, edge_id TEXT, attempt INTEGER, snapshot TEXT)",
                postgres_batch_match!()
            ),
        };
        let mut tx = self.write.begin().await?;
        let done = batch_update(&mut tx, sql, &rows, None).await?;
        tx.commit().await?;
        Ok(snapshots.iter().map(|(delivery_id, edge_id, ..)| done.has(delivery_id, edge_id)).collect())
    }

    /// The snapshot a target of `delivery_id` recorded (what it held before the delivery wrote, or
    /// what a plan read), if it got that far.
    pub async fn target_snapshot(&self, delivery_id: &str, edge_id: &str) -> Result<Option<Value>> {
        let row = sqlx::query("SELECT snapshot FROM delivery_targets WHERE delivery_id = $1 AND edge_id = $2")
            .bind(delivery_id)
            .bind(edge_id)
            .fetch_optional(&self.read)
            .await?;
        match row {
            Some(row) => optional_json(&row, "snapshot"),
            None => Ok(None),
        }
    }

    /// One target of a delivery, snapshot included; `None` when the delivery has no such target.
    pub async fn get_target(&self, delivery_id: &str, edge_id: &str) -> Result<Option<DeliveryTarget>> {
        let row = sqlx::query("SELECT * FROM delivery_targets WHERE delivery_id = $1 AND edge_id = $2")
            .bind(delivery_id)
            .bind(edge_id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(target).transpose()
    }

    /// The targets of a finished delivery that recorded a snapshot, with their status: what a
    /// rollback may put back.
    pub async fn targets_with_snapshots(&self, delivery_id: &str) -> Result<Vec<(String, TargetStatus)>> {
        let rows = sqlx::query(
            "SELECT edge_id, status FROM delivery_targets WHERE delivery_id = $1 AND snapshot IS NOT NULL ORDER BY seq",
        )
        .bind(delivery_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|row| Ok((row.get("edge_id"), parsed(row, "status")?))).collect()
    }

    /// Closes the delivery with its final state, once, with the audit record of its outcome.
    pub async fn finish_delivery(
        &self,
        delivery_id: &str,
        state: DeliveryState,
        audit_entry: &AuditEntry,
    ) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE deliveries SET state = $1, finished_at = $2 WHERE id = $3 AND state IN ('running', 'canceling')",
        )
        .bind(state.as_str())
        .bind(now_ms())
        .bind(delivery_id)
        .execute(&mut *tx)
        .await?;
        let closed = done.rows_affected() == 1;
        if closed {
            audit::insert(&mut tx, audit_entry).await?;
        }
        tx.commit().await?;
        Ok(closed)
    }

    /// Makes every running target claimable at once. Only for a single-process database (SQLite),
    /// where no other worker can be alive at start-up.
    pub async fn release_all_leases(&self) -> Result<u64> {
        let done = sqlx::query("UPDATE delivery_targets SET lease_until = 0 WHERE status = 'running'")
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected())
    }

    /// Deliveries a runner should work on, oldest first: work to resume after a restart.
    pub async fn unfinished_deliveries(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM deliveries WHERE state IN ('running', 'canceling') ORDER BY created_at")
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(|r| r.get("id")).collect())
    }
}

impl Store {
    /// Running deliveries that have work a runner could take now: targets of the current wave not
    /// started that do not wait, targets whose lease ran out, a rollout whose current wave is done
    /// (the next one needs opening), or no unfinished target left (the delivery needs closing). A
    /// rollout held up by waiting targets of its current wave is not offered again until they can
    /// run, however many targets later waves hold.
    pub async fn claimable_deliveries(&self, waiting_now: i64) -> Result<Vec<String>> {
        // Where the current wave ends (every target, without a rollout).
        let wave_end = match self.backend {
            Backend::Sqlite => "COALESCE(json_extract(d.wave_ends, '$[' || d.wave || ']'), 9223372036854775807)",
            Backend::Postgres => "COALESCE((d.wave_ends::jsonb ->> d.wave)::bigint, 9223372036854775807)",
        };
        let sql = format!(
            "SELECT d.id FROM deliveries d WHERE d.state IN ('running', 'canceling') AND (
                 EXISTS (SELECT 1 FROM delivery_targets t WHERE t.delivery_id = d.id
                         AND ((t.status = 'pending' AND t.seq < {wave_end}
                               AND (t.not_before IS NULL OR t.not_before <= $2))
                              OR (t.status = 'running' AND t.lease_until < $1)))
                 OR NOT EXISTS (SELECT 1 FROM delivery_targets t WHERE t.delivery_id = d.id
                         AND t.status IN ('pending', 'running') AND t.seq < {wave_end}))
             ORDER BY d.created_at"
        );
        // Only the backend's own constant text is put in; no value is.
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now_ms()).bind(waiting_now).fetch_all(&self.read).await?;
        Ok(rows.iter().map(|r| r.get("id")).collect())
    }

    /// Takes or renews the named singleton lease for `holder`; `true` if `holder` has it now.
    pub async fn hold_singleton(&self, name: &str, holder: &str, lease_ms: i64) -> Result<bool> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO singletons (name, holder, lease_until) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(holder)
        .bind(now + lease_ms)
        .execute(&self.write)
        .await?;
        let done = sqlx::query(
            "UPDATE singletons SET holder = $1, lease_until = $2 WHERE name = $3 AND (holder = $1 OR lease_until < $4)",
        )
        .bind(holder)
        .bind(now + lease_ms)
        .bind(name)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl Store {
    /// Writes several results in one transaction; each is fenced by its claim's attempt as in
    /// `finish_target`. Answers, in order, the number each written result got (`None`: not
    /// written). Numbers are reserved per delivery for the whole batch first, so results of one
    /// delivery are numbered in the order their transactions commit (the reservation locks the
    /// delivery's row until then); a result that loses its fence leaves its number unused.
    pub async fn finish_targets(&self, results: &[(String, String, i64, TargetOutcome)]) -> Result<Vec<Option<i64>>> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        let mut next: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
        for (delivery_id, ..) in results {
            if next.contains_key(delivery_id.as_str()) {
                continue;
            }
            let count = results.iter().filter(|r| r.0 == *delivery_id).count() as i64;
            let end: i64 = sqlx::query(
                "UPDATE deliveries SET results_written = results_written + $1 WHERE id = $2 RETURNING results_written",
            )
            .bind(count)
            .bind(delivery_id)
            .fetch_optional(&mut *tx)
            .await?
            .map_or(0, |r| r.get("results_written"));
            next.insert(delivery_id, end - count + 1);
        }
        let rows: Vec<ResultRow> = results
            .iter()
            .map(|(delivery_id, edge_id, attempt, outcome)| ResultRow {
                delivery_id,
                edge_id,
                attempt: *attempt,
                status: outcome.status.as_str(),
                reason: &outcome.reason,
                items: outcome.items.to_string(),
                tries: outcome.tries,
                edge_version: outcome.edge_version.as_deref(),
                seq: next.get_mut(delivery_id.as_str()).map_or(0, |n| {
                    *n += 1;
                    *n - 1
                }),
                restore: outcome.restore.map(RestoreOutcome::as_str).unwrap_or(""),
                failure: outcome.failure.map(FailureCode::as_str).unwrap_or(""),
            })
            .collect();
        let sql = match self.backend {
            Backend::Sqlite => concat!(
                "UPDATE delivery_targets SET status = r.value ->> 'status', reason = r.value ->> 'reason',
                        items = r.value ->> 'items', tries = r.value ->> 'tries', finished_at = $2,
                        edge_version = COALESCE(r.value ->> 'edge_version', edge_version), lease_until = NULL,
                        result_seq = r.value ->> 'seq', restore = r.value ->> 'restore',
                        failure_code = r.value ->> 'failure'
                 FROM jsonb_each($1) AS r",
                sqlite_batch_match!()
            ),
            Backend::Postgres => concat!(
                "UPDATE delivery_targets t SET status = r.status, reason = r.reason, items = r.items, tries = r.tries,
                        finished_at = $2, edge_version = COALESCE(r.edge_version, t.edge_version), lease_until = NULL,
                        result_seq = r.seq, restore = r.restore, failure_code = r.failure
                 FROM jsonb_to_recordset($1::jsonb) AS r(delivery_id TEXT, edge_id TEXT, attempt INTEGER, status TEXT,
                      reason TEXT, items TEXT, tries INTEGER, edge_version TEXT, seq BIGINT, restore TEXT, failure TEXT)",
                postgres_batch_match!()
            ),
        };
        let done = batch_update(&mut tx, sql, &rows, Some(now)).await?;
        let mut written = Vec::with_capacity(results.len());
        let mut delivered = Vec::new();
        for ((delivery_id, edge_id, _, outcome), row) in results.iter().zip(&rows) {
            let recorded = done.has(delivery_id, edge_id);
            if recorded && let Some(objects) = &outcome.delivered {
                delivered.push((delivery_id.as_str(), edge_id.as_str(), objects));
            }
            written.push(recorded.then_some(row.seq));
        }
        crate::drift::record_delivered(&mut tx, self.backend, &delivered, now).await?;
        tx.commit().await?;
        Ok(written)
    }
}
