//! Agent mode: projects' command-signing keys, agents' broker credentials, and agents' status as
//! their status topic reports it.

use sqlx::Row;

use crate::audit::{self, AuditEntry};
use crate::edges::EdgeService;
use crate::{ProbeResult, Result, Store, StoreError};

/// A project's Ed25519 command key (the private half sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandKeyRow {
    pub project_id: String,
    pub private_sealed: String,
    pub public_pem: String,
    pub created_at: i64,
}

/// An agent's broker user: its id and its password's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSecret {
    pub agent_id: String,
    pub secret_hash: String,
}

impl Store {
    pub async fn project_command_key(&self, project_id: &str) -> Result<Option<CommandKeyRow>> {
        let row = sqlx::query("SELECT * FROM project_command_keys WHERE project_id = $1")
            .bind(project_id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| CommandKeyRow {
            project_id: r.get("project_id"),
            private_sealed: r.get("private_sealed"),
            public_pem: r.get("public_pem"),
            created_at: r.get("created_at"),
        }))
    }

    /// Stores the project's key unless another replica stored one first; answers whether this one
    /// was stored (the caller then reads the one that was).
    pub async fn add_project_command_key(&self, key: &CommandKeyRow, audit_entry: &AuditEntry) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "INSERT INTO project_command_keys (project_id, private_sealed, public_pem, created_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (project_id) DO NOTHING",
        )
        .bind(&key.project_id)
        .bind(&key.private_sealed)
        .bind(&key.public_pem)
        .bind(key.created_at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Sets (or rotates) the broker password hash of an agent-mode service.
    pub async fn set_agent_secret(
        &self,
        project_id: &str,
        edge_id: &str,
        secret_hash: &str,
        audit_entry: &AuditEntry,
    ) -> Result<EdgeService> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE edge_services SET agent_secret = $1 WHERE project_id = $2 AND id = $3 AND transport = 'agent'",
        )
        .bind(secret_hash)
        .bind(project_id)
        .bind(edge_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(crate::Resource::EdgeService));
        }
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        self.get_edge(project_id, edge_id).await
    }

    /// Every agent with issued credentials, by agent id (for the broker's password file).
    pub async fn agent_secrets(&self) -> Result<Vec<AgentSecret>> {
        let rows = sqlx::query(
            "SELECT agent_id, agent_secret FROM edge_services
             WHERE transport = 'agent' AND agent_secret IS NOT NULL ORDER BY agent_id",
        )
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| AgentSecret { agent_id: r.get("agent_id"), secret_hash: r.get("agent_secret") })
            .collect())
    }

    /// Records what agents' status topics said, as probes of their services (a status that came
    /// online wakes the targets waiting for it). Agents no service names are left out.
    pub async fn record_agent_statuses(&self, statuses: &[(String, ProbeResult)]) -> Result<()> {
        let mut by_edge = Vec::with_capacity(statuses.len());
        for chunk in statuses.chunks(500) {
            let ids: Vec<String> = chunk.iter().map(|(agent_id, _)| agent_id.clone()).collect();
            let mut sql = crate::sql::Sql::new(
                "SELECT id, agent_id FROM edge_services WHERE transport = 'agent' AND agent_id IN (",
            );
            sql.text_list(&ids).push(")");
            let edges: std::collections::HashMap<String, String> = sql
                .query(self.backend)
                .fetch_all(&self.read)
                .await?
                .iter()
                .map(|r| (r.get::<String, _>("agent_id"), r.get::<String, _>("id")))
                .collect();
            by_edge.extend(
                chunk
                    .iter()
                    .filter_map(|(agent_id, result)| edges.get(agent_id).map(|id| (id.clone(), result.clone()))),
            );
        }
        if by_edge.is_empty() {
            return Ok(());
        }
        self.record_probes(&by_edge).await
    }
}
