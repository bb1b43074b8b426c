//! Project JWT keys and sign-in throttling: state every replica shares.

use sqlx::Row;

use crate::audit::{self, AuditEntry};
use crate::{Result, Store};

/// One RS256 key of a project (the private half sealed by the server's secret key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtKeyRow {
    pub project_id: String,
    pub seq: i64,
    pub file_name: String,
    pub private_sealed: String,
    pub public_pem: String,
    pub created_at: i64,
    pub signing_from: i64,
}

/// A sign-in attempt as counted: the attempts in the window so far (this one included) and when
/// the one before it came (0 for the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptCount {
    pub attempts: i64,
    pub previous_at: i64,
}

impl Store {
    /// A project's keys, oldest first.
    pub async fn project_jwt_keys(&self, project_id: &str) -> Result<Vec<JwtKeyRow>> {
        let rows = sqlx::query("SELECT * FROM project_jwt_keys WHERE project_id = $1 ORDER BY seq")
            .bind(project_id)
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(|r| JwtKeyRow {
                project_id: r.get("project_id"),
                seq: r.get("seq"),
                file_name: r.get("file_name"),
                private_sealed: r.get("private_sealed"),
                public_pem: r.get("public_pem"),
                created_at: r.get("created_at"),
                signing_from: r.get("signing_from"),
            })
            .collect())
    }

    /// Adds a key unless one with its `seq` exists (another replica made it first): answers
    /// whether this one was stored. The audit entry, when given, is written with it.
    pub async fn add_project_jwt_key(&self, key: &JwtKeyRow, audit_entry: Option<&AuditEntry>) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "INSERT INTO project_jwt_keys (project_id, seq, file_name, private_sealed, public_pem, created_at, signing_from)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (project_id, seq) DO NOTHING",
        )
        .bind(&key.project_id)
        .bind(key.seq)
        .bind(&key.file_name)
        .bind(&key.private_sealed)
        .bind(&key.public_pem)
        .bind(key.created_at)
        .bind(key.signing_from)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if let Some(entry) = audit_entry {
            audit::insert(&mut tx, entry).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Counts one sign-in attempt for `subject` in one statement, so parallel attempts each get
    /// their own number. A window older than `window_ms` starts again at 1.
    pub async fn count_login_attempt(&self, subject: &str, now: i64, window_ms: i64) -> Result<AttemptCount> {
        let row = sqlx::query(
            "INSERT INTO login_throttle (subject, failures, window_start, last_attempt) VALUES ($1, 1, $2, $2)
             ON CONFLICT (subject) DO UPDATE SET
               failures = CASE WHEN login_throttle.window_start < $3 THEN 1 ELSE login_throttle.failures + 1 END,
               window_start = CASE WHEN login_throttle.window_start < $3 THEN $2 ELSE login_throttle.window_start END,
               previous_attempt = login_throttle.last_attempt,
               last_attempt = $2
             RETURNING failures, previous_attempt",
        )
        .bind(subject)
        .bind(now)
        .bind(now - window_ms)
        .fetch_one(&self.write)
        .await?;
        // The SET clauses read the row as it was, so `previous_attempt` is the attempt before this.
        Ok(AttemptCount { attempts: row.get("failures"), previous_at: row.get("previous_attempt") })
    }

    /// A subject's attempts in the current window, without counting one.
    pub async fn peek_login_attempts(&self, subject: &str, now: i64, window_ms: i64) -> Result<Option<AttemptCount>> {
        let row =
            sqlx::query("SELECT failures, last_attempt FROM login_throttle WHERE subject = $1 AND window_start >= $2")
                .bind(subject)
                .bind(now - window_ms)
                .fetch_optional(&self.read)
                .await?;
        Ok(row.map(|r| AttemptCount { attempts: r.get("failures"), previous_at: r.get("last_attempt") }))
    }

    /// Forgets a subject's attempts (after a right password).
    pub async fn clear_login_attempts(&self, subject: &str) -> Result<()> {
        sqlx::query("DELETE FROM login_throttle WHERE subject = $1").bind(subject).execute(&self.write).await?;
        Ok(())
    }

    /// Forgets attempts older than `before`; the table stays as small as the recent attempts.
    pub async fn purge_login_attempts(&self, before: i64) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM login_throttle WHERE last_attempt < $1").bind(before).execute(&self.write).await?;
        Ok(done.rows_affected())
    }

    /// Counts a refused (throttled) attempt; once per window the count goes to the audit as one
    /// row (its details gain `attempts`), so a flood of refused sign-ins cannot fill the audit.
    pub async fn note_throttled(&self, subject: &str, now: i64, window_ms: i64, entry: &AuditEntry) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let row = sqlx::query(
            "UPDATE login_throttle SET throttled = throttled + 1 WHERE subject = $1 RETURNING throttled, throttled_audited_at",
        )
        .bind(subject)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let throttled: i64 = row.get("throttled");
        let audited_at: i64 = row.get("throttled_audited_at");
        if now - audited_at < window_ms {
            tx.commit().await?;
            return Ok(false);
        }
        let mut entry = entry.clone();
        entry.details["attempts"] = throttled.into();
        entry.details["aggregated_for_secs"] = (window_ms / 1000).into();
        audit::insert(&mut tx, &entry).await?;
        sqlx::query("UPDATE login_throttle SET throttled = 0, throttled_audited_at = $2 WHERE subject = $1")
            .bind(subject)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}
