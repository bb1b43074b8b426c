//! A delivery's control between waves: gates, pause and resume, schedules, approvals. Every change
//! is one conditional statement (or transaction), so replicas racing to make it make it once.

use domain::audit::AuditAction;
use domain::delivery::DeliveryState;
use sqlx::Row;

use crate::audit::{self, AuditEntry};
use crate::deliveries::Approval;
use crate::{Result, Store};

/// How many targets of the delivery at positions below `below` have not ended, read through
/// `executor` (the read pool, or a transaction that decides on it).
async fn count_unfinished_below<'e>(
    executor: impl sqlx::Executor<'e, Database = sqlx::Any>,
    delivery_id: &str,
    below: i64,
) -> Result<i64> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM delivery_targets
         WHERE delivery_id = $1 AND status IN ('pending', 'running') AND seq < $2",
    )
    .bind(delivery_id)
    .bind(below)
    .fetch_one(executor)
    .await?;
    Ok(row.get("n"))
}

/// An approval counts for this long (24 hours).
pub const APPROVAL_LIFETIME_MS: i64 = 24 * 3600 * 1000;

/// What an approval changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalOutcome {
    /// Approvals that count now (younger than 24 hours), this one included.
    pub approvals: i64,
    /// The delivery's state after the approval (`running` or `scheduled` once enough approved).
    pub state: DeliveryState,
}

impl Store {
    /// How many targets of the delivery at positions below `below` have not ended.
    pub async fn unfinished_below(&self, delivery_id: &str, below: i64) -> Result<i64> {
        count_unfinished_below(&self.read, delivery_id, below).await
    }

    /// Moves a running delivery from wave `from` (0-based) to the next; `false` when it is not
    /// running at that wave any more (another replica moved it, or someone paused it).
    pub async fn next_wave(&self, delivery_id: &str, from: i64, audit_entry: &AuditEntry) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query("UPDATE deliveries SET wave = $1 WHERE id = $2 AND wave = $3 AND state = 'running'")
            .bind((from + 1) as i32)
            .bind(delivery_id)
            .bind(from as i32)
            .execute(&mut *tx)
            .await?;
        let opened = done.rows_affected() == 1;
        if opened {
            audit::insert(&mut tx, audit_entry).await?;
        }
        tx.commit().await?;
        Ok(opened)
    }

    /// Pauses a running delivery (not being aborted); with `at_wave`, only while it is at that
    /// wave (a manual gate). The audit record, when given, goes with the change.
    pub async fn pause_delivery(
        &self,
        delivery_id: &str,
        at_wave: Option<i64>,
        audit_entry: Option<&AuditEntry>,
    ) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE deliveries SET state = 'paused'
             WHERE id = $1 AND state = 'running' AND abort_reason = '' AND ($2 < 0 OR wave = $2)",
        )
        .bind(delivery_id)
        .bind(at_wave.map_or(-1, |w| w as i32))
        .execute(&mut *tx)
        .await?;
        let paused = done.rows_affected() == 1;
        if let (true, Some(entry)) = (paused, audit_entry) {
            audit::insert(&mut tx, entry).await?;
        }
        tx.commit().await?;
        Ok(paused)
    }

    /// Resumes a paused delivery (opening the next wave when the current one is done) or starts a
    /// scheduled one now; answers the wave it runs (0-based), `None` when it was neither.
    pub async fn resume_delivery(&self, delivery_id: &str, audit_entry: &AuditEntry) -> Result<Option<i64>> {
        let mut tx = self.write.begin().await?;
        let row =
            sqlx::query("SELECT * FROM deliveries WHERE id = $1").bind(delivery_id).fetch_optional(&mut *tx).await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let delivery = crate::deliveries::delivery(&row)?;
        let mut wave = delivery.wave;
        match delivery.state {
            DeliveryState::Scheduled => {}
            DeliveryState::Paused => {
                // A manual gate's release: the current wave is done, so the next one opens.
                let unfinished = count_unfinished_below(&mut *tx, delivery_id, delivery.claim_limit()).await?;
                if unfinished == 0 && delivery.has_next_wave() {
                    wave += 1;
                }
            }
            _ => return Ok(None),
        }
        sqlx::query("UPDATE deliveries SET state = 'running', wave = $1 WHERE id = $2")
            .bind(wave as i32)
            .bind(delivery_id)
            .execute(&mut *tx)
            .await?;
        let mut entry = audit_entry.clone();
        entry.details["from"] = delivery.state.as_str().into();
        audit::insert(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(Some(wave))
    }

    /// Scheduled deliveries whose start time came (by `now`), now running, each with its
    /// `delivery.begin` audit record: ids to start.
    pub async fn start_due(&self, now: i64) -> Result<Vec<String>> {
        let mut tx = self.write.begin().await?;
        let due = sqlx::query(
            "SELECT d.id, d.template_name, d.start_at, d.project_id, p.name AS project_name, p.org_id, o.name AS org_name
             FROM deliveries d JOIN projects p ON p.id = d.project_id JOIN orgs o ON o.id = p.org_id
             WHERE d.state = 'scheduled' AND d.start_at <= $1",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut started = Vec::with_capacity(due.len());
        for row in &due {
            let id: String = row.get("id");
            let done = sqlx::query("UPDATE deliveries SET state = 'running' WHERE id = $1 AND state = 'scheduled'")
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                continue;
            }
            let entry = AuditEntry {
                actor_name: "schedule".into(),
                org_id: row.get("org_id"),
                org_name: row.get("org_name"),
                project_id: row.get("project_id"),
                project_name: row.get("project_name"),
                resource_type: "delivery".into(),
                resource_id: id.clone(),
                resource_name: row.get("template_name"),
                details: serde_json::json!({"start_at": row.get::<Option<i64>, _>("start_at"), "state": "running"}),
                ..AuditEntry::new(AuditAction::DeliveryBegin)
            };
            audit::insert(&mut tx, &entry).await?;
            started.push(id);
        }
        tx.commit().await?;
        Ok(started)
    }

    /// Records `user`'s approval at `now` (an earlier one of theirs is renewed) and, once enough
    /// approvals younger than 24 hours count, lets the delivery go: `scheduled` while its start
    /// time is ahead, else `running`. `None` when the delivery does not await approval.
    pub async fn approve_delivery(
        &self,
        delivery_id: &str,
        user_id: &str,
        username: &str,
        now: i64,
        audit_entry: &AuditEntry,
    ) -> Result<Option<ApprovalOutcome>> {
        let mut tx = self.write.begin().await?;
        let row = sqlx::query(
            "SELECT approvals_required, start_at FROM deliveries WHERE id = $1 AND state = 'awaiting_approval'",
        )
        .bind(delivery_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let required: i64 = row.get::<i32, _>("approvals_required").into();
        let start_at: Option<i64> = row.get("start_at");
        sqlx::query(
            "INSERT INTO delivery_approvals (delivery_id, user_id, username, at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (delivery_id, user_id) DO UPDATE SET at = excluded.at, username = excluded.username",
        )
        .bind(delivery_id)
        .bind(user_id)
        .bind(username)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let approvals: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM delivery_approvals WHERE delivery_id = $1 AND at > $2")
                .bind(delivery_id)
                .bind(now - APPROVAL_LIFETIME_MS)
                .fetch_one(&mut *tx)
                .await?
                .get("n");
        let mut state = DeliveryState::AwaitingApproval;
        if approvals >= required {
            state = match start_at {
                Some(at) if at > now => DeliveryState::Scheduled,
                _ => DeliveryState::Running,
            };
            sqlx::query("UPDATE deliveries SET state = $1 WHERE id = $2")
                .bind(state.as_str())
                .bind(delivery_id)
                .execute(&mut *tx)
                .await?;
        }
        let mut entry = audit_entry.clone();
        entry.details["approvals"] = approvals.into();
        entry.details["approvals_required"] = required.into();
        entry.details["state"] = state.as_str().into();
        audit::insert(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(Some(ApprovalOutcome { approvals, state }))
    }

    /// Approvals of the delivery, oldest first, with when each was given (expired ones included).
    pub async fn approvals_of(&self, delivery_id: &str) -> Result<Vec<Approval>> {
        let rows = sqlx::query(
            "SELECT user_id, username, at FROM delivery_approvals WHERE delivery_id = $1 ORDER BY at, user_id",
        )
        .bind(delivery_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Approval { user_id: r.get("user_id"), username: r.get("username"), at: r.get("at") })
            .collect())
    }

    /// The project's `approvals_required`.
    pub async fn project_approvals(&self, project_id: &str) -> Result<i64> {
        let row = sqlx::query("SELECT approvals_required FROM projects WHERE id = $1")
            .bind(project_id)
            .fetch_optional(&self.read)
            .await?
            .ok_or(crate::StoreError::NotFound(crate::Resource::Project))?;
        Ok(row.get::<i32, _>("approvals_required").into())
    }

    /// Sets the project's `approvals_required` (deliveries already waiting keep theirs).
    pub async fn set_project_approvals(&self, project_id: &str, required: i64, audit_entry: &AuditEntry) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("UPDATE projects SET approvals_required = $1 WHERE id = $2")
            .bind(required as i32)
            .bind(project_id)
            .execute(&mut *tx)
            .await?;
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Puts a claimed target back to wait until `not_before` (ms) with `reason` (`waiting: ...`),
    /// if `attempt` still holds it; `false` when another claim took it over.
    pub async fn defer_target(
        &self,
        delivery_id: &str,
        edge_id: &str,
        attempt: i64,
        not_before: i64,
        reason: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE delivery_targets SET status = 'pending', not_before = $1, reason = $2, lease_until = NULL
             WHERE delivery_id = $3 AND edge_id = $4 AND attempts = $5 AND status = 'running'",
        )
        .bind(not_before)
        .bind(reason)
        .bind(delivery_id)
        .bind(edge_id)
        .bind(attempt as i32)
        .execute(&self.write)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Targets waiting for these edges may run now (they were seen online).
    pub(crate) async fn wake_waiting(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        backend: crate::Backend,
        edge_ids: &[String],
    ) -> Result<()> {
        for chunk in edge_ids.chunks(500) {
            let mut sql = crate::sql::Sql::new(
                "UPDATE delivery_targets SET not_before = NULL WHERE not_before IS NOT NULL AND status = 'pending' AND edge_id IN (",
            );
            sql.text_list(chunk).push(")");
            sql.query(backend).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// A newer `apply` delivery of the same template (or plugin) to this edge that has not given
    /// the edge up (its target is not canceled): the one that supersedes `delivery`'s target.
    pub async fn superseding_delivery(&self, delivery: &crate::Delivery, edge_id: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT d.id FROM deliveries d JOIN delivery_targets t ON t.delivery_id = d.id AND t.edge_id = $1
             WHERE d.project_id = $2 AND d.created_at > $3 AND d.id <> $4 AND d.mode = 'apply' AND d.dry_run = 0
               AND ((d.template_id IS NOT NULL AND d.template_id = $5) OR (d.plugin_id IS NOT NULL AND d.plugin_id = $6))
               AND d.state NOT IN ('canceled', 'aborted') AND t.status <> 'canceled'
             ORDER BY d.created_at DESC LIMIT 1",
        )
        .bind(edge_id)
        .bind(&delivery.project_id)
        .bind(delivery.created_at)
        .bind(&delivery.id)
        .bind(delivery.template_id.clone().unwrap_or_default())
        .bind(delivery.plugin_id.clone().unwrap_or_default())
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map(|r| r.get("id")))
    }

    /// Stores a maintenance window with its audit record; `NameTaken` when the project has one of
    /// that name.
    pub async fn create_window(&self, window: &MaintenanceWindow, audit_entry: &AuditEntry) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO maintenance_windows (id, project_id, name, tag, cron, duration_minutes, timezone, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&window.id)
        .bind(&window.project_id)
        .bind(&window.name)
        .bind(&window.tag)
        .bind(&window.cron)
        .bind(window.duration_minutes as i32)
        .bind(&window.timezone)
        .bind(&window.created_by)
        .bind(window.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| crate::conflict(e, crate::Resource::MaintenanceWindow, &window.name))?;
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The project's maintenance windows by name.
    pub async fn windows(&self, project_id: &str) -> Result<Vec<MaintenanceWindow>> {
        let rows = sqlx::query("SELECT * FROM maintenance_windows WHERE project_id = $1 ORDER BY name")
            .bind(project_id)
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(|r| MaintenanceWindow {
                id: r.get("id"),
                project_id: r.get("project_id"),
                name: r.get("name"),
                tag: r.get("tag"),
                cron: r.get("cron"),
                duration_minutes: r.get::<i32, _>("duration_minutes").into(),
                timezone: r.get("timezone"),
                created_by: r.get("created_by"),
                created_at: r.get("created_at"),
            })
            .collect())
    }

    /// Deletes a window with its audit record; `NotFound` when the project has no such window.
    pub async fn delete_window(&self, project_id: &str, id: &str, audit_entry: &AuditEntry) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query("DELETE FROM maintenance_windows WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(crate::StoreError::NotFound(crate::Resource::MaintenanceWindow));
        }
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A maintenance window as stored (its schedule is checked before it is stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceWindow {
    pub id: String,
    pub project_id: String,
    pub name: String,
    /// Targets with this tag; '' for every target.
    pub tag: String,
    pub cron: String,
    pub duration_minutes: i64,
    pub timezone: String,
    pub created_by: String,
    pub created_at: i64,
}
