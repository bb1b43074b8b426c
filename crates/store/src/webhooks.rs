//! Webhooks and their calls. Calls are enqueued by [`enqueue`], from the audit insert inside each
//! change's transaction; one sender (a lease) tries the due ones and records each try.

use domain::webhook::{CallState, Subscription, WebhookEvent, events_for};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::{self, AuditEntry};
use crate::{Resource, Result, Store, StoreError, json_list, new_id, parsed};

/// A project's webhook as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: String,
    pub project_id: String,
    pub url: String,
    /// The HMAC key, sealed with the server's secret box.
    pub secret_sealed: String,
    pub subscription: Subscription,
    pub created_by: String,
    pub created_at: i64,
}

/// One event's call to one webhook, and how its tries went.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookCall {
    /// `X-Edgefleet-Delivery`: the same on every try.
    pub id: String,
    pub webhook_id: String,
    pub event: WebhookEvent,
    /// The JSON body, sent as it is on every try.
    pub body: String,
    pub state: CallState,
    pub attempts: i64,
    pub next_at: Option<i64>,
    /// The receiver's answer code on the last try; `None` when no answer came.
    pub last_status: Option<i64>,
    pub last_error: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// A due call with where it goes and its key.
#[derive(Debug, Clone, PartialEq)]
pub struct DueCall {
    pub call: WebhookCall,
    pub url: String,
    pub secret_sealed: String,
}

/// How one try went.
#[derive(Debug, Clone, PartialEq)]
pub struct CallTry {
    pub state: CallState,
    pub next_at: Option<i64>,
    pub status: Option<i64>,
    pub error: String,
    pub at: i64,
}

/// Enqueues, on `conn`, a call to each of the project's webhooks that hears of an event `entry`
/// raises (see [`events_for`]). Most changes raise none and cost nothing more here.
pub(crate) async fn enqueue(conn: &mut sqlx::AnyConnection, entry: &AuditEntry, at: i64) -> Result<()> {
    let events = events_for(entry.action, entry.outcome, &entry.details);
    if events.is_empty() || entry.project_id.is_empty() {
        return Ok(());
    }
    let rows = sqlx::query("SELECT id, events FROM webhooks WHERE project_id = $1")
        .bind(&entry.project_id)
        .fetch_all(&mut *conn)
        .await?;
    for row in rows {
        let subscription = subscription(&row)?;
        let webhook_id: String = row.get("id");
        for event in events.iter().copied().filter(|e| subscription.includes(*e)) {
            let id = new_id();
            let body = event_body(&id, event, entry, at);
            insert_call(&mut *conn, &id, &webhook_id, event, &body, at, Some(0)).await?;
        }
    }
    Ok(())
}

/// What a receiver gets: the event, when, where, who, what it is about, and the audit record's
/// details (a finished delivery's counts, a wave's numbers, a drift's objects).
fn event_body(id: &str, event: WebhookEvent, entry: &AuditEntry, at: i64) -> String {
    json!({
        "id": id,
        "event": event,
        "at": at,
        "organization": {"id": entry.org_id, "name": entry.org_name},
        "project": {"id": entry.project_id, "name": entry.project_name},
        "actor": entry.actor_name,
        "resource": {"type": entry.resource_type, "id": entry.resource_id, "name": entry.resource_name},
        "outcome": entry.outcome.as_str(),
        "details": entry.details,
    })
    .to_string()
}

/// When a new call is due: at once (0, whatever the sender's clock says), or never for the sender
/// (`None`: the test button sends it itself).
async fn insert_call(
    conn: &mut sqlx::AnyConnection,
    id: &str,
    webhook_id: &str,
    event: WebhookEvent,
    body: &str,
    at: i64,
    due: Option<i64>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO webhook_calls (id, webhook_id, event, body, state, attempts, next_at, created_at)
         VALUES ($1, $2, $3, $4, 'pending', 0, $6, $5)",
    )
    .bind(id)
    .bind(webhook_id)
    .bind(event.as_str())
    .bind(body)
    .bind(at)
    .bind(due)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The `events` column; a list that does not parse is `Corrupt`, never "no events".
fn subscription(row: &AnyRow) -> Result<Subscription> {
    Subscription::parse(&json_list(row, "events")?).map_err(|e| StoreError::Corrupt(format!("column events: {e}")))
}

fn webhook(row: &AnyRow) -> Result<Webhook> {
    Ok(Webhook {
        id: row.get("id"),
        project_id: row.get("project_id"),
        url: row.get("url"),
        secret_sealed: row.get("secret_sealed"),
        subscription: subscription(row)?,
        created_by: row.get("created_by"),
        created_at: row.get("created_at"),
    })
}

fn call(row: &AnyRow) -> Result<WebhookCall> {
    Ok(WebhookCall {
        id: row.get("id"),
        webhook_id: row.get("webhook_id"),
        event: parsed(row, "event")?,
        body: row.get("body"),
        state: parsed(row, "state")?,
        attempts: row.get::<i32, _>("attempts").into(),
        next_at: row.get("next_at"),
        last_status: row.get::<Option<i32>, _>("last_status").map(i64::from),
        last_error: row.get("last_error"),
        created_at: row.get("created_at"),
        finished_at: row.get("finished_at"),
    })
}

impl Store {
    /// Webhook calls not yet answered with a 2xx and still to be tried (all projects').
    pub async fn pending_webhook_calls(&self) -> Result<i64> {
        // The partial index of due calls holds exactly the pending ones.
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM webhook_calls WHERE state = 'pending' AND next_at IS NOT NULL")
                .fetch_one(&self.read)
                .await?;
        Ok(row.get("n"))
    }

    pub async fn create_webhook(&self, hook: &Webhook, audit_entry: &AuditEntry) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO webhooks (id, project_id, url, secret_sealed, events, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&hook.id)
        .bind(&hook.project_id)
        .bind(&hook.url)
        .bind(&hook.secret_sealed)
        .bind(json!(hook.subscription.names()).to_string())
        .bind(&hook.created_by)
        .bind(hook.created_at)
        .execute(&mut *tx)
        .await?;
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The project's webhooks, oldest first.
    pub async fn webhooks(&self, project_id: &str) -> Result<Vec<Webhook>> {
        let rows = sqlx::query("SELECT * FROM webhooks WHERE project_id = $1 ORDER BY created_at, id")
            .bind(project_id)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(webhook).collect()
    }

    pub async fn webhook(&self, project_id: &str, id: &str) -> Result<Webhook> {
        let row = sqlx::query("SELECT * FROM webhooks WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(webhook).transpose()?.ok_or(StoreError::NotFound(Resource::Webhook))
    }

    /// Deletes a webhook, its calls (pending ones are not sent) and writes the audit record.
    pub async fn delete_webhook(&self, project_id: &str, id: &str, audit_entry: &AuditEntry) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "DELETE FROM webhook_calls WHERE webhook_id IN (SELECT id FROM webhooks WHERE project_id = $1 AND id = $2)",
        )
        .bind(project_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM webhooks WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(Resource::Webhook));
        }
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Enqueues the test button's `ping` to one webhook, its body made from `entry` as every
    /// event's is; answers the call as stored.
    pub async fn add_ping(&self, hook: &Webhook, entry: &AuditEntry) -> Result<WebhookCall> {
        let (id, at) = (new_id(), crate::now_ms());
        let body = event_body(&id, WebhookEvent::Ping, entry, at);
        let mut conn = self.write.acquire().await?;
        // Not due for the sender: the test button sends it, once, and a second copy from the
        // sender would be a second ping.
        insert_call(&mut conn, &id, &hook.id, WebhookEvent::Ping, &body, at, None).await?;
        drop(conn);
        self.webhook_call(&id).await
    }

    pub async fn webhook_call(&self, id: &str) -> Result<WebhookCall> {
        let row = sqlx::query("SELECT * FROM webhook_calls WHERE id = $1").bind(id).fetch_optional(&self.write).await?;
        row.as_ref().map(call).transpose()?.ok_or(StoreError::NotFound(Resource::Webhook))
    }

    /// A webhook's calls, newest first, with their total.
    pub async fn webhook_calls(&self, webhook_id: &str, limit: i64, offset: i64) -> Result<(Vec<WebhookCall>, i64)> {
        let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM webhook_calls WHERE webhook_id = $1")
            .bind(webhook_id)
            .fetch_one(&self.read)
            .await?
            .get("n");
        let rows = sqlx::query(
            "SELECT * FROM webhook_calls WHERE webhook_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
        )
        .bind(webhook_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.read)
        .await?;
        Ok((rows.iter().map(call).collect::<Result<_>>()?, total))
    }

    /// Pending calls due at `now`, oldest first, with their webhook's URL and key.
    pub async fn due_webhook_calls(&self, now: i64, limit: i64) -> Result<Vec<DueCall>> {
        let rows = sqlx::query(
            "SELECT c.*, w.url AS url, w.secret_sealed AS secret_sealed
             FROM webhook_calls c JOIN webhooks w ON w.id = c.webhook_id
             WHERE c.state = 'pending' AND c.next_at <= $1 ORDER BY c.next_at, c.id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.write)
        .await?;
        rows.iter()
            .map(|row| Ok(DueCall { call: call(row)?, url: row.get("url"), secret_sealed: row.get("secret_sealed") }))
            .collect()
    }

    /// Records one try of a pending call (a call no longer pending, or gone, is left alone).
    pub async fn record_webhook_try(&self, id: &str, done: &CallTry) -> Result<()> {
        let finished = (done.state != CallState::Pending).then_some(done.at);
        sqlx::query(
            "UPDATE webhook_calls SET state = $1, attempts = attempts + 1, next_at = $2, last_status = $3,
                    last_error = $4, finished_at = $5
             WHERE id = $6 AND state = 'pending'",
        )
        .bind(done.state.as_str())
        .bind(done.next_at)
        .bind(done.status.map(|s| s as i32))
        .bind(&done.error)
        .bind(finished)
        .bind(id)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Forgets delivered and given-up calls of events older than `before`; answers how many.
    pub async fn prune_webhook_calls(&self, before: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM webhook_calls WHERE created_at < $1 AND state <> 'pending'")
            .bind(before)
            .execute(&self.write)
            .await?;
        Ok(done.rows_affected())
    }
}
