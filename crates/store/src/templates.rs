//! Configuration templates and their immutable versions.

use sqlx::Row;
use sqlx::any::AnyRow;

use domain::template::TemplateKind;

use crate::audit::{self, AuditEntry};
use crate::{Result, Store, StoreError, conflict, new_id, now_ms, parsed};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub kind: TemplateKind,
    pub description: String,
    pub current_version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateVersion {
    pub template_id: String,
    pub version: i64,
    /// The document text exactly as it was given.
    pub content: String,
    pub content_sha256: String,
    pub created_by: String,
    pub created_at: i64,
}

fn template(row: &AnyRow) -> Result<Template> {
    Ok(Template {
        id: row.get("id"),
        project_id: row.get("project_id"),
        name: row.get("name"),
        kind: parsed(row, "kind")?,
        description: row.get("description"),
        current_version: row.get("current_version"),
        created_at: row.get("created_at"),
        updated_at: row.get("updated_at"),
    })
}

fn version(row: &AnyRow) -> TemplateVersion {
    TemplateVersion {
        template_id: row.get("template_id"),
        version: row.get("version"),
        content: row.get("content"),
        content_sha256: row.get("content_sha256"),
        created_by: row.get("created_by"),
        created_at: row.get("created_at"),
    }
}

/// A change to a template; `content` set means a new version.
#[derive(Debug, Clone, Default)]
pub struct TemplateChange {
    pub name: Option<String>,
    pub description: Option<String>,
    pub content: Option<(String, String)>,
}

impl Store {
    #[allow(clippy::too_many_arguments)]
    pub async fn create_template(
        &self,
        project_id: &str,
        name: &str,
        kind: TemplateKind,
        description: &str,
        content: &str,
        content_sha256: &str,
        created_by: &str,
        audit_entry: &AuditEntry,
    ) -> Result<Template> {
        let now = now_ms();
        let template = Template {
            id: new_id(),
            project_id: project_id.to_owned(),
            name: name.to_owned(),
            kind,
            description: description.to_owned(),
            current_version: 1,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO templates (id, project_id, name, kind, description, current_version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
        )
        .bind(&template.id)
        .bind(project_id)
        .bind(name)
        .bind(kind.as_str())
        .bind(description)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, crate::Resource::Template, name))?;
        insert_version(&mut tx, &template.id, 1, content, content_sha256, created_by, now).await?;
        let entry = AuditEntry { resource_id: template.id.clone(), ..audit_entry.clone() };
        audit::insert(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(template)
    }

    pub async fn get_template(&self, project_id: &str, id: &str) -> Result<Template> {
        let row = sqlx::query("SELECT * FROM templates WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(template).transpose()?.ok_or(StoreError::NotFound(crate::Resource::Template))
    }

    pub async fn list_templates(
        &self,
        project_id: &str,
        kind: Option<TemplateKind>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Template>, i64)> {
        let kind = kind.map(TemplateKind::as_str).unwrap_or("");
        let total: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM templates WHERE project_id = $1 AND ($2 = '' OR kind = $2)")
                .bind(project_id)
                .bind(kind)
                .fetch_one(&self.read)
                .await?
                .get("n");
        let rows = sqlx::query(
            "SELECT * FROM templates WHERE project_id = $1 AND ($2 = '' OR kind = $2) ORDER BY name LIMIT $3 OFFSET $4",
        )
        .bind(project_id)
        .bind(kind)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.read)
        .await?;
        Ok((rows.iter().map(template).collect::<Result<_>>()?, total))
    }

    pub async fn template_version(&self, template_id: &str, version_number: i64) -> Result<TemplateVersion> {
        let row = sqlx::query("SELECT * FROM template_versions WHERE template_id = $1 AND version = $2")
            .bind(template_id)
            .bind(version_number)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(version).ok_or(StoreError::NotFound(crate::Resource::TemplateVersion))
    }

    /// Newest first.
    pub async fn template_versions(&self, template_id: &str) -> Result<Vec<TemplateVersion>> {
        let rows = sqlx::query("SELECT * FROM template_versions WHERE template_id = $1 ORDER BY version DESC")
            .bind(template_id)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(version).collect())
    }

    /// Applies a change; new content becomes a new version. The audit entry is written with it.
    pub async fn update_template(
        &self,
        current: &Template,
        change: &TemplateChange,
        created_by: &str,
        audit_entry: &AuditEntry,
    ) -> Result<Template> {
        let now = now_ms();
        let mut updated = current.clone();
        updated.updated_at = now;
        if let Some(name) = &change.name {
            updated.name = name.clone();
        }
        if let Some(description) = &change.description {
            updated.description = description.clone();
        }
        let mut tx = self.write.begin().await?;
        if let Some((content, sha)) = &change.content {
            updated.current_version += 1;
            insert_version(&mut tx, &current.id, updated.current_version, content, sha, created_by, now).await?;
        }
        // The version check makes two concurrent edits of one template fail instead of both
        // claiming the same version number.
        let done = sqlx::query(
            "UPDATE templates SET name = $1, description = $2, current_version = $3, updated_at = $4
             WHERE id = $5 AND current_version = $6",
        )
        .bind(&updated.name)
        .bind(&updated.description)
        .bind(updated.current_version)
        .bind(now)
        .bind(&current.id)
        .bind(current.current_version)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, crate::Resource::Template, &updated.name))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict {
                clash: crate::Clash::TemplateChanged,
                name: current.current_version.to_string(),
            });
        }
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(updated)
    }

    pub async fn delete_template(&self, project_id: &str, id: &str, audit_entry: &AuditEntry) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("DELETE FROM template_versions WHERE template_id = $1").bind(id).execute(&mut *tx).await?;
        let done = sqlx::query("DELETE FROM templates WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(crate::Resource::Template));
        }
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn insert_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    template_id: &str,
    number: i64,
    content: &str,
    sha: &str,
    created_by: &str,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO template_versions (template_id, version, content, content_sha256, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(template_id)
    .bind(number)
    .bind(content)
    .bind(sha)
    .bind(created_by)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
