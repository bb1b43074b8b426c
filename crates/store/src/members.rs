//! Memberships and roles, users' own settings and tokens, and deleting organizations and projects.

use domain::access::Role;
use domain::audit::AuditAction;
use sqlx::Row;

use crate::audit::{self, AuditEntry};
use crate::{Org, Project, Result, Store, StoreError, now_ms, parsed};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: String,
    pub username: String,
    pub role: Role,
}

/// A user's roles toward one project: through its organization and in the project itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    pub org: Option<Role>,
    pub project: Option<Role>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub expires_at: Option<i64>,
    pub created_at: i64,
}

fn member(row: &sqlx::any::AnyRow) -> Result<Member> {
    Ok(Member { user_id: row.get("user_id"), username: row.get("username"), role: parsed(row, "role")? })
}

impl Store {
    pub async fn org_role(&self, org_id: &str, user_id: &str) -> Result<Option<Role>> {
        let row = sqlx::query("SELECT role FROM org_members WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user_id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| parsed(&r, "role")).transpose()
    }

    pub async fn project_roles(&self, project_id: &str, user_id: &str) -> Result<Roles> {
        let row = sqlx::query(
            "SELECT (SELECT om.role FROM org_members om JOIN projects p ON p.org_id = om.org_id
                     WHERE p.id = $1 AND om.user_id = $2) AS org_role,
                    (SELECT pm.role FROM project_members pm WHERE pm.project_id = $1 AND pm.user_id = $2) AS project_role",
        )
        .bind(project_id)
        .bind(user_id)
        .fetch_one(&self.read)
        .await?;
        let role = |column: &str| row.get::<Option<String>, _>(column).map(|_| parsed(&row, column)).transpose();
        Ok(Roles { org: role("org_role")?, project: role("project_role")? })
    }

    /// Organizations where the user has a role, in the organization or in one of its projects.
    pub async fn visible_orgs(&self, user_id: &str) -> Result<Vec<Org>> {
        let rows = sqlx::query(
            "SELECT o.* FROM orgs o WHERE EXISTS (SELECT 1 FROM org_members m WHERE m.org_id = o.id AND m.user_id = $1)
                OR EXISTS (SELECT 1 FROM project_members pm JOIN projects p ON p.id = pm.project_id
                           WHERE p.org_id = o.id AND pm.user_id = $1)
             ORDER BY o.name",
        )
        .bind(user_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(|r| Org { id: r.get("id"), name: r.get("name"), created_at: r.get("created_at") }).collect())
    }

    /// Projects of the organization the user may see: all of them for organization members.
    pub async fn visible_projects(&self, org_id: &str, user_id: &str) -> Result<Vec<Project>> {
        let rows = sqlx::query(
            "SELECT p.* FROM projects p WHERE p.org_id = $1 AND (
                 EXISTS (SELECT 1 FROM org_members m WHERE m.org_id = p.org_id AND m.user_id = $2)
                 OR EXISTS (SELECT 1 FROM project_members pm WHERE pm.project_id = p.id AND pm.user_id = $2))
             ORDER BY p.name",
        )
        .bind(org_id)
        .bind(user_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Project {
                id: r.get("id"),
                org_id: r.get("org_id"),
                name: r.get("name"),
                created_at: r.get("created_at"),
            })
            .collect())
    }

    pub async fn set_org_member(
        &self,
        org_id: &str,
        user_id: &str,
        role: Role,
        audit_entry: &AuditEntry,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO org_members (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (org_id, user_id) DO UPDATE SET role = $3",
        )
        .bind(org_id)
        .bind(user_id)
        .bind(role.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes the user from the organization and from all of its projects.
    pub async fn remove_org_member(&self, org_id: &str, user_id: &str, audit_entry: &AuditEntry) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query("DELETE FROM org_members WHERE org_id = $1 AND user_id = $2")
            .bind(org_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(crate::Resource::Member));
        }
        sqlx::query("DELETE FROM project_members WHERE user_id = $1 AND project_id IN (SELECT id FROM projects WHERE org_id = $2)")
            .bind(user_id)
            .bind(org_id)
            .execute(&mut *tx)
            .await?;
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_project_member(
        &self,
        project_id: &str,
        user_id: &str,
        role: Role,
        audit_entry: &AuditEntry,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO project_members (project_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (project_id, user_id) DO UPDATE SET role = $3",
        )
        .bind(project_id)
        .bind(user_id)
        .bind(role.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn remove_project_member(&self, project_id: &str, user_id: &str, audit_entry: &AuditEntry) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
            .bind(project_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(crate::Resource::Member));
        }
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn org_members(&self, org_id: &str) -> Result<Vec<Member>> {
        let rows = sqlx::query("SELECT m.user_id, u.username, m.role FROM org_members m JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY u.username")
            .bind(org_id)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(member).collect()
    }

    pub async fn project_members(&self, project_id: &str) -> Result<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT m.user_id, u.username, m.role FROM project_members m JOIN users u ON u.id = m.user_id WHERE m.project_id = $1 ORDER BY u.username",
        )
        .bind(project_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(member).collect()
    }

    /// Deletes a project. Unless `force`, a project that still has edge services, templates or
    /// plugins is refused; with `force` they go too (the audit stays). Answers the plugin package
    /// hashes that were used, for the caller to clean up blobs.
    pub async fn delete_project(&self, project_id: &str, force: bool, audit_entry: &AuditEntry) -> Result<Vec<String>> {
        let mut tx = self.write.begin().await?;
        let shas = delete_project_in(&mut tx, project_id, force).await?;
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(shas)
    }

    /// Deletes an organization without projects (or, with `force`, with them), in one
    /// transaction with one audit record per project and one for the organization.
    pub async fn delete_org(&self, org_id: &str, force: bool, audit_entry: &AuditEntry) -> Result<Vec<String>> {
        let mut tx = self.write.begin().await?;
        let projects: Vec<String> = sqlx::query("SELECT id FROM projects WHERE org_id = $1")
            .bind(org_id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| r.get("id"))
            .collect();
        if !projects.is_empty() && !force {
            return Err(StoreError::Conflict { clash: crate::Clash::OrgHasProjects, name: projects.len().to_string() });
        }
        let mut shas = Vec::new();
        for project in &projects {
            shas.extend(delete_project_in(&mut tx, project, true).await?);
            let entry = AuditEntry {
                action: AuditAction::ProjectDelete,
                resource_type: "project".into(),
                resource_id: project.clone(),
                ..audit_entry.clone()
            };
            audit::insert(&mut tx, &entry).await?;
        }
        sqlx::query("DELETE FROM org_members WHERE org_id = $1").bind(org_id).execute(&mut *tx).await?;
        let done = sqlx::query("DELETE FROM orgs WHERE id = $1").bind(org_id).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(crate::Resource::Organization));
        }
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(shas)
    }

    pub async fn rename_org(&self, org_id: &str, name: &str, audit_entry: &AuditEntry) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("UPDATE orgs SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(org_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| crate::conflict(e, crate::Resource::Organization, name))?;
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn rename_project(&self, project_id: &str, name: &str, audit_entry: &AuditEntry) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("UPDATE projects SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(project_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| crate::conflict(e, crate::Resource::Project, name))?;
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_user(&self, id: &str) -> Result<crate::User> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1").bind(id).fetch_optional(&self.read).await?;
        row.as_ref().map(crate::accounts::user_row).ok_or(StoreError::NotFound(crate::Resource::User))
    }

    /// Users by name. `visible_to` limits the list to the people who share an organization with
    /// that user (through an organization or project role), plus, when that user administers an
    /// organization, the accounts that belong to no organization yet; `None` lists everyone.
    pub async fn list_users(
        &self,
        visible_to: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<crate::User>, i64)> {
        const SCOPE: &str = "FROM users u WHERE $1 = '' OR u.id IN (
               SELECT m.user_id FROM org_members m WHERE m.org_id IN (SELECT org_id FROM org_members WHERE user_id = $1
                   UNION SELECT p.org_id FROM projects p JOIN project_members pm ON pm.project_id = p.id WHERE pm.user_id = $1)
               UNION SELECT pm.user_id FROM project_members pm JOIN projects p ON p.id = pm.project_id
                   WHERE p.org_id IN (SELECT org_id FROM org_members WHERE user_id = $1
                   UNION SELECT p2.org_id FROM projects p2 JOIN project_members pm2 ON pm2.project_id = p2.id WHERE pm2.user_id = $1))
            OR (EXISTS (SELECT 1 FROM org_members WHERE user_id = $1 AND role = 'admin')
                AND NOT EXISTS (SELECT 1 FROM org_members WHERE user_id = u.id)
                AND NOT EXISTS (SELECT 1 FROM project_members WHERE user_id = u.id))";
        let who = visible_to.unwrap_or_default();
        let total: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) AS n {SCOPE}")))
            .bind(who)
            .fetch_one(&self.read)
            .await?
            .get("n");
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT u.* {SCOPE} ORDER BY u.username LIMIT $2 OFFSET $3")))
                .bind(who)
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.read)
                .await?;
        Ok((rows.iter().map(crate::accounts::user_row).collect(), total))
    }

    /// Changes the given fields; disabling a user (or changing the password) ends their sessions.
    pub async fn update_user(
        &self,
        id: &str,
        password_hash: Option<&str>,
        disabled: Option<bool>,
        language: Option<&str>,
        audit_entry: &AuditEntry,
    ) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE users SET password_hash = COALESCE($1, password_hash), disabled = COALESCE($2, disabled), language = COALESCE($3, language) WHERE id = $4",
        )
        .bind(password_hash.map(str::to_owned))
        .bind(disabled.map(i32::from))
        .bind(language.map(str::to_owned))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(crate::Resource::User));
        }
        // A new password (or a disabled account) ends every session and API token: whoever knew
        // the old password may have made tokens with it.
        if disabled == Some(true) || password_hash.is_some() {
            sqlx::query("DELETE FROM auth_tokens WHERE user_id = $1").bind(id).execute(&mut *tx).await?;
        }
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_user(&self, id: &str, audit_entry: &AuditEntry) -> Result<()> {
        let mut tx = self.write.begin().await?;
        for sql in [
            "DELETE FROM auth_tokens WHERE user_id = $1",
            "DELETE FROM org_members WHERE user_id = $1",
            "DELETE FROM project_members WHERE user_id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        let done = sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(crate::Resource::User));
        }
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_tokens(&self, user_id: &str) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query("SELECT id, name, kind, expires_at, created_at FROM auth_tokens WHERE user_id = $1 AND kind = 'api' ORDER BY created_at")
            .bind(user_id)
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(|r| TokenInfo {
                id: r.get("id"),
                name: r.get("name"),
                kind: r.get("kind"),
                expires_at: r.get("expires_at"),
                created_at: r.get("created_at"),
            })
            .collect())
    }

    /// Revokes one of the user's API tokens, with its audit record.
    pub async fn revoke_token(&self, user_id: &str, token_id: &str, audit_entry: &AuditEntry) -> Result<()> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query("DELETE FROM auth_tokens WHERE user_id = $1 AND id = $2 AND kind = 'api'")
            .bind(user_id)
            .bind(token_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(crate::Resource::Token));
        }
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// Whether the user is admin of any organization or project.
    pub async fn admin_anywhere(&self, user_id: &str) -> Result<bool> {
        let n: i64 = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM org_members WHERE user_id = $1 AND role = 'admin')
                  + (SELECT COUNT(*) FROM project_members WHERE user_id = $1 AND role = 'admin') AS n",
        )
        .bind(user_id)
        .fetch_one(&self.read)
        .await?
        .get("n");
        Ok(n > 0)
    }

    /// Whether the user is admin of any organization.
    pub async fn org_admin_anywhere(&self, user_id: &str) -> Result<bool> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM org_members WHERE user_id = $1 AND role = 'admin'")
            .bind(user_id)
            .fetch_one(&self.read)
            .await?
            .get("n");
        Ok(n > 0)
    }
}

/// A project and everything in it, inside the caller's transaction; answers the plugin package
/// hashes it used (for the caller to clean up blobs).
async fn delete_project_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    project_id: &str,
    force: bool,
) -> Result<Vec<String>> {
    let contents: i64 = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM edge_services WHERE project_id = $1) + (SELECT COUNT(*) FROM templates WHERE project_id = $1)
              + (SELECT COUNT(*) FROM plugins WHERE project_id = $1) AS n",
    )
    .bind(project_id)
    .fetch_one(&mut **tx)
    .await?
    .get("n");
    if contents > 0 && !force {
        return Err(StoreError::Conflict { clash: crate::Clash::ProjectNotEmpty, name: contents.to_string() });
    }
    let shas: Vec<String> = sqlx::query("SELECT sha256 FROM plugins WHERE project_id = $1")
        .bind(project_id)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| r.get("sha256"))
        .collect();
    for sql in [
        "DELETE FROM delivery_targets WHERE delivery_id IN (SELECT id FROM deliveries WHERE project_id = $1)",
        "DELETE FROM delivery_approvals WHERE delivery_id IN (SELECT id FROM deliveries WHERE project_id = $1)",
        "DELETE FROM maintenance_windows WHERE project_id = $1",
        "DELETE FROM webhook_calls WHERE webhook_id IN (SELECT id FROM webhooks WHERE project_id = $1)",
        "DELETE FROM webhooks WHERE project_id = $1",
        "DELETE FROM deliveries WHERE project_id = $1",
        "DELETE FROM plugins WHERE project_id = $1",
        "DELETE FROM template_versions WHERE template_id IN (SELECT id FROM templates WHERE project_id = $1)",
        "DELETE FROM templates WHERE project_id = $1",
        "DELETE FROM edge_service_tags WHERE edge_id IN (SELECT id FROM edge_services WHERE project_id = $1)",
        "DELETE FROM edge_objects WHERE edge_id IN (SELECT id FROM edge_services WHERE project_id = $1)",
        "DELETE FROM edge_inventory WHERE edge_id IN (SELECT id FROM edge_services WHERE project_id = $1)",
        "DELETE FROM edge_services WHERE project_id = $1",
        "DELETE FROM project_members WHERE project_id = $1",
        "DELETE FROM project_jwt_keys WHERE project_id = $1",
    ] {
        sqlx::query(sql).bind(project_id).execute(&mut **tx).await?;
    }
    let done = sqlx::query("DELETE FROM projects WHERE id = $1").bind(project_id).execute(&mut **tx).await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(crate::Resource::Project));
    }
    Ok(shas)
}
