//! Organizations, projects, users and their login and API tokens.

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::{self, AuditEntry};
use crate::{Result, Store, StoreError, conflict, new_id, now_ms};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub created_at: i64,
}

/// A project with its organization's name, as the audit and the console show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectScope {
    pub org_id: String,
    pub org_name: String,
    pub project_id: String,
    pub project_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub is_system_admin: bool,
    pub disabled: bool,
    pub language: String,
    pub created_at: i64,
}

fn org(row: &AnyRow) -> Org {
    Org { id: row.get("id"), name: row.get("name"), created_at: row.get("created_at") }
}

fn project(row: &AnyRow) -> Project {
    Project { id: row.get("id"), org_id: row.get("org_id"), name: row.get("name"), created_at: row.get("created_at") }
}

pub(crate) fn user_row(row: &AnyRow) -> User {
    User {
        id: row.get("id"),
        username: row.get("username"),
        password_hash: row.get("password_hash"),
        is_system_admin: row.get::<i32, _>("is_system_admin") != 0,
        disabled: row.get::<i32, _>("disabled") != 0,
        language: row.get("language"),
        created_at: row.get("created_at"),
    }
}

impl Store {
    /// Creates an organization with its audit record (whose org and resource fields are filled in).
    pub async fn create_org(&self, name: &str, audit_entry: &AuditEntry) -> Result<Org> {
        let org = Org { id: new_id(), name: name.to_owned(), created_at: now_ms() };
        let mut tx = self.write.begin().await?;
        sqlx::query("INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&org.id)
            .bind(&org.name)
            .bind(org.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict(e, crate::Resource::Organization, name))?;
        let entry = AuditEntry {
            org_id: org.id.clone(),
            org_name: org.name.clone(),
            resource_id: org.id.clone(),
            ..audit_entry.clone()
        };
        audit::insert(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(org)
    }

    pub async fn list_orgs(&self) -> Result<Vec<Org>> {
        let rows = sqlx::query("SELECT * FROM orgs ORDER BY name").fetch_all(&self.read).await?;
        Ok(rows.iter().map(org).collect())
    }

    pub async fn get_org(&self, id: &str) -> Result<Org> {
        let row = sqlx::query("SELECT * FROM orgs WHERE id = $1").bind(id).fetch_optional(&self.read).await?;
        row.as_ref().map(org).ok_or(StoreError::NotFound(crate::Resource::Organization))
    }

    pub async fn find_org_by_name(&self, name: &str) -> Result<Option<Org>> {
        let row = sqlx::query("SELECT * FROM orgs WHERE name = $1").bind(name).fetch_optional(&self.read).await?;
        Ok(row.as_ref().map(org))
    }

    /// Creates a project with its audit record (whose scope and resource fields are filled in).
    pub async fn create_project(&self, org_id: &str, name: &str, audit_entry: &AuditEntry) -> Result<Project> {
        let org = self.get_org(org_id).await?;
        let project = Project { id: new_id(), org_id: org_id.to_owned(), name: name.to_owned(), created_at: now_ms() };
        let mut tx = self.write.begin().await?;
        sqlx::query("INSERT INTO projects (id, org_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&project.id)
            .bind(&project.org_id)
            .bind(&project.name)
            .bind(project.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict(e, crate::Resource::Project, name))?;
        let entry = AuditEntry {
            org_id: org.id,
            org_name: org.name,
            project_id: project.id.clone(),
            project_name: project.name.clone(),
            resource_id: project.id.clone(),
            ..audit_entry.clone()
        };
        audit::insert(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(project)
    }

    pub async fn list_projects(&self, org_id: &str) -> Result<Vec<Project>> {
        let rows = sqlx::query("SELECT * FROM projects WHERE org_id = $1 ORDER BY name")
            .bind(org_id)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(project).collect())
    }

    pub async fn find_project_by_name(&self, org_id: &str, name: &str) -> Result<Option<Project>> {
        let row = sqlx::query("SELECT * FROM projects WHERE org_id = $1 AND name = $2")
            .bind(org_id)
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(project))
    }

    /// The project and its organization's name; `NotFound` when either is missing.
    pub async fn project_scope(&self, project_id: &str) -> Result<ProjectScope> {
        let row = sqlx::query(
            "SELECT p.id AS project_id, p.name AS project_name, o.id AS org_id, o.name AS org_name
             FROM projects p JOIN orgs o ON o.id = p.org_id WHERE p.id = $1",
        )
        .bind(project_id)
        .fetch_optional(&self.read)
        .await?;
        let row = row.ok_or(StoreError::NotFound(crate::Resource::Project))?;
        Ok(ProjectScope {
            org_id: row.get("org_id"),
            org_name: row.get("org_name"),
            project_id: row.get("project_id"),
            project_name: row.get("project_name"),
        })
    }

    /// Creates a user with its audit record (whose resource id is filled in).
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        is_system_admin: bool,
        audit_entry: &AuditEntry,
    ) -> Result<User> {
        let user = User {
            id: new_id(),
            username: username.to_owned(),
            password_hash: password_hash.to_owned(),
            is_system_admin,
            disabled: false,
            language: "en".into(),
            created_at: now_ms(),
        };
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, is_system_admin, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&user.id)
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(i32::from(is_system_admin))
        .bind(user.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, crate::Resource::User, username))?;
        audit::insert(&mut tx, &AuditEntry { resource_id: user.id.clone(), ..audit_entry.clone() }).await?;
        tx.commit().await?;
        Ok(user)
    }

    pub async fn count_users(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(&self.read).await?;
        Ok(row.get("n"))
    }

    pub async fn find_user_by_name(&self, username: &str) -> Result<Option<User>> {
        let row =
            sqlx::query("SELECT * FROM users WHERE username = $1").bind(username).fetch_optional(&self.read).await?;
        Ok(row.as_ref().map(user_row))
    }

    pub async fn set_user_language(&self, user_id: &str, language: &str) -> Result<()> {
        sqlx::query("UPDATE users SET language = $1 WHERE id = $2")
            .bind(language)
            .bind(user_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Stores the SHA-256 of a session or API token (the token itself is never stored) with its
    /// audit record; answers the token's id.
    pub async fn insert_token(&self, token: &NewToken<'_>, audit_entry: &AuditEntry) -> Result<String> {
        let id = new_id();
        let mut tx = self.write.begin().await?;
        sqlx::query("INSERT INTO auth_tokens (token_hash, user_id, kind, name, expires_at, created_at, id) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(token.hash)
            .bind(token.user_id)
            .bind(token.kind)
            .bind(token.name)
            .bind(token.expires_at)
            .bind(now_ms())
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The user behind a token, if the token exists, has not expired and its user is enabled.
    pub async fn user_by_token(&self, token_hash: &str) -> Result<Option<User>> {
        let row = sqlx::query(
            "SELECT u.* FROM auth_tokens t JOIN users u ON u.id = t.user_id
             WHERE t.token_hash = $1 AND (t.expires_at IS NULL OR t.expires_at > $2) AND u.disabled = 0",
        )
        .bind(token_hash)
        .bind(now_ms())
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(user_row))
    }

    /// Ends a session (logout) with its audit record.
    pub async fn delete_token(&self, token_hash: &str, audit_entry: &AuditEntry) -> Result<()> {
        let mut tx = self.write.begin().await?;
        sqlx::query("DELETE FROM auth_tokens WHERE token_hash = $1").bind(token_hash).execute(&mut *tx).await?;
        audit::insert(&mut tx, audit_entry).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A session or API token to store.
pub struct NewToken<'a> {
    /// SHA-256 of the token.
    pub hash: &'a str,
    pub user_id: &'a str,
    /// `session` or `api`.
    pub kind: &'a str,
    pub name: &'a str,
    pub expires_at: Option<i64>,
}
