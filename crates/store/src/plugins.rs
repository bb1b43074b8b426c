//! Algorithm plugins (eKuiper portable-plugin packages). The package bytes live in the blob store,
//! addressed by SHA-256; rows here say which project has which package under which name.

use serde_json::Value;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::{self, AuditEntry};
use crate::{Result, Store, StoreError, json_value, new_id, now_ms};

#[derive(Debug, Clone, PartialEq)]
pub struct Plugin {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub sha256: String,
    pub size: i64,
    /// version, language, executable, sources, sinks, functions, files, unpacked_bytes
    pub manifest: Value,
    pub created_by: String,
    pub created_at: i64,
}

fn plugin(row: &AnyRow) -> Result<Plugin> {
    Ok(Plugin {
        id: row.get("id"),
        project_id: row.get("project_id"),
        name: row.get("name"),
        description: row.get("description"),
        sha256: row.get("sha256"),
        size: row.get("size"),
        manifest: json_value(row, "manifest")?,
        created_by: row.get("created_by"),
        created_at: row.get("created_at"),
    })
}

#[derive(Debug, Clone)]
pub struct NewPlugin {
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub sha256: String,
    pub size: i64,
    pub manifest: Value,
    pub created_by: String,
}

impl Store {
    /// Refuses a name or content (SHA-256) the project already has, naming the existing plugin.
    pub async fn create_plugin(&self, new: &NewPlugin, audit_entry: &AuditEntry) -> Result<Plugin> {
        let mut tx = self.write.begin().await?;
        let same_content = sqlx::query("SELECT name FROM plugins WHERE project_id = $1 AND sha256 = $2")
            .bind(&new.project_id)
            .bind(&new.sha256)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = same_content {
            return Err(StoreError::Conflict { clash: crate::Clash::PluginContent, name: row.get("name") });
        }
        let plugin = Plugin {
            id: new_id(),
            project_id: new.project_id.clone(),
            name: new.name.clone(),
            description: new.description.clone(),
            sha256: new.sha256.clone(),
            size: new.size,
            manifest: new.manifest.clone(),
            created_by: new.created_by.clone(),
            created_at: now_ms(),
        };
        sqlx::query(
            "INSERT INTO plugins (id, project_id, name, description, sha256, size, manifest, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&plugin.id)
        .bind(&plugin.project_id)
        .bind(&plugin.name)
        .bind(&plugin.description)
        .bind(&plugin.sha256)
        .bind(plugin.size)
        .bind(plugin.manifest.to_string())
        .bind(&plugin.created_by)
        .bind(plugin.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| crate::conflict(e, crate::Resource::Plugin, &new.name))?;
        let entry = AuditEntry { resource_id: plugin.id.clone(), ..audit_entry.clone() };
        audit::insert(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(plugin)
    }

    pub async fn get_plugin(&self, project_id: &str, id: &str) -> Result<Plugin> {
        let row = sqlx::query("SELECT * FROM plugins WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(plugin).transpose()?.ok_or(StoreError::NotFound(crate::Resource::Plugin))
    }

    pub async fn list_plugins(&self, project_id: &str, limit: i64, offset: i64) -> Result<(Vec<Plugin>, i64)> {
        let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM plugins WHERE project_id = $1")
            .bind(project_id)
            .fetch_one(&self.read)
            .await?
            .get("n");
        let rows = sqlx::query("SELECT * FROM plugins WHERE project_id = $1 ORDER BY name LIMIT $2 OFFSET $3")
            .bind(project_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.read)
            .await?;
        Ok((rows.iter().map(plugin).collect::<Result<_>>()?, total))
    }

    /// Deletes unless a running delivery sends it; answers whether any plugin still uses its blob.
    pub async fn delete_plugin(&self, project_id: &str, id: &str, audit_entry: &AuditEntry) -> Result<bool> {
        let mut tx = self.write.begin().await?;
        let row = sqlx::query("SELECT sha256, name FROM plugins WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound(crate::Resource::Plugin))?;
        let sha: String = row.get("sha256");
        let running: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM deliveries WHERE plugin_id = $1 AND state = 'running'")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?
                .get("n");
        if running > 0 {
            return Err(StoreError::Conflict { clash: crate::Clash::PluginInUse, name: row.get("name") });
        }
        sqlx::query("DELETE FROM plugins WHERE id = $1").bind(id).execute(&mut *tx).await?;
        audit::insert(&mut tx, audit_entry).await?;
        let users: i64 = sqlx::query("SELECT COUNT(*) AS n FROM plugins WHERE sha256 = $1")
            .bind(&sha)
            .fetch_one(&mut *tx)
            .await?
            .get("n");
        tx.commit().await?;
        Ok(users > 0)
    }

    /// The project's plugin with this content, if any.
    pub async fn plugin_by_sha(&self, project_id: &str, sha256: &str) -> Result<Option<Plugin>> {
        let row = sqlx::query("SELECT * FROM plugins WHERE project_id = $1 AND sha256 = $2")
            .bind(project_id)
            .bind(sha256)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(plugin).transpose()
    }

    /// Whether any plugin (of any project) has this content.
    pub async fn blob_in_use(&self, sha256: &str) -> Result<bool> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM plugins WHERE sha256 = $1")
            .bind(sha256)
            .fetch_one(&self.read)
            .await?
            .get("n");
        Ok(n > 0)
    }
}
