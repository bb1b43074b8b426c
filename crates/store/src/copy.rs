//! Moving an installation from one database to another (`edgefleet db copy`), with a check that
//! every table arrived whole.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{Column, Row};

use crate::sql::{Arg, Sql};
use crate::{Backend, Result, Store, StoreError};

/// Every table, parents before children, with the columns that order its rows.
const TABLES: &[(&str, &str)] = &[
    ("orgs", "id"),
    ("projects", "id"),
    ("users", "id"),
    ("org_members", "org_id, user_id"),
    ("project_members", "project_id, user_id"),
    ("project_jwt_keys", "project_id, seq"),
    ("project_command_keys", "project_id"),
    ("login_throttle", "subject"),
    ("auth_tokens", "token_hash"),
    ("edge_imports", "id"),
    ("edge_services", "id"),
    ("edge_service_tags", "edge_id, tag"),
    ("edge_objects", "edge_id, object"),
    ("edge_inventory", "edge_id, kind, name"),
    ("templates", "id"),
    ("template_versions", "template_id, version"),
    ("plugins", "id"),
    ("deliveries", "id"),
    ("delivery_targets", "delivery_id, seq"),
    ("delivery_approvals", "delivery_id, user_id"),
    ("maintenance_windows", "id"),
    ("webhooks", "id"),
    ("webhook_calls", "id"),
    ("audit_events", "id"),
    ("settings", "key"),
    ("singletons", "name"),
];

const PAGE: i64 = 2000;

/// The tables `db copy` moves, in the order it moves them.
pub fn copied_tables() -> Vec<&'static str> {
    TABLES.iter().map(|(table, _)| *table).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableCopy {
    pub table: &'static str,
    pub rows: u64,
    /// SHA-256 over the rows in order, on the source and as read back from the target.
    pub source_sha256: String,
    pub target_sha256: String,
}

impl TableCopy {
    pub fn matches(&self) -> bool {
        self.source_sha256 == self.target_sha256
    }
}

/// Columns one backend keeps for its own indexes (SQLite's search ids); the target's own
/// triggers fill them, so they are neither copied nor compared.
const BACKEND_COLUMNS: &[(&str, &str)] = &[("projects", "number"), ("edge_services", "search_id")];

fn values(table: &str, row: &AnyRow) -> Vec<(String, Arg)> {
    (0..row.columns().len())
        .filter(|&i| !BACKEND_COLUMNS.contains(&(table, row.columns()[i].name())))
        .map(|i| {
            let name = row.columns()[i].name().to_owned();
            let value = if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                Arg::OptInt(v)
            } else if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
                Arg::OptInt(v.map(i64::from))
            } else if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                Arg::OptText(v)
            } else {
                Arg::OptFloat(row.try_get::<Option<f64>, _>(i).ok().flatten())
            };
            (name, value)
        })
        .collect()
}

fn digest_row(hasher: &mut Sha256, row: &[(String, Arg)]) {
    for (name, value) in row {
        let text = match value {
            Arg::OptInt(Some(v)) | Arg::Int(v) => v.to_string(),
            Arg::OptText(Some(v)) | Arg::Text(v) => v.clone(),
            Arg::OptFloat(Some(v)) => v.to_string(),
            _ => "\u{0}null".to_owned(),
        };
        hasher.update(name.as_bytes());
        hasher.update([0x1f]);
        hasher.update(text.as_bytes());
        hasher.update([0x1e]);
    }
}

impl Store {
    /// Copies every row into `target`, which must be empty, then reads both sides back and
    /// compares a checksum per table.
    pub async fn copy_into(&self, target: &Store) -> Result<Vec<TableCopy>> {
        for (table, _) in TABLES {
            let n: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) AS n FROM {table}")))
                .fetch_one(&target.read)
                .await?
                .get("n");
            // A fresh database holds nothing but what start-up may have put in settings.
            if n > 0 && *table != "settings" {
                return Err(StoreError::Corrupt(format!("the target database is not empty: {table} has {n} rows")));
            }
        }
        sqlx::query("DELETE FROM settings").execute(&target.write).await?;
        let mut report = Vec::new();
        for (table, order) in TABLES {
            let mut source_hash = Sha256::new();
            let mut rows = 0u64;
            let mut offset = 0i64;
            loop {
                let page = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT * FROM {table} ORDER BY {order} LIMIT {PAGE} OFFSET {offset}"
                )))
                .fetch_all(&self.read)
                .await?;
                if page.is_empty() {
                    break;
                }
                let mut tx = target.write.begin().await?;
                for row in &page {
                    let row = values(table, row);
                    digest_row(&mut source_hash, &row);
                    let columns: Vec<&str> = row.iter().map(|(n, _)| n.as_str()).collect();
                    let mut insert = Sql::new(&format!("INSERT INTO {table} ({}) VALUES (", columns.join(", ")));
                    for (i, (_, value)) in row.into_iter().enumerate() {
                        if i > 0 {
                            insert.push(", ");
                        }
                        insert.bind(value);
                    }
                    insert.push(")");
                    insert.query(target.backend).execute(&mut *tx).await?;
                    rows += 1;
                }
                tx.commit().await?;
                offset += PAGE;
            }
            let target_sha256 = target.table_digest(table, order).await?;
            report.push(TableCopy { table, rows, source_sha256: hex::encode(source_hash.finalize()), target_sha256 });
        }
        if target.backend == Backend::Postgres {
            sqlx::query("SELECT setval(pg_get_serial_sequence('audit_events', 'id'), COALESCE((SELECT MAX(id) FROM audit_events), 0) + 1, false)")
                .execute(&target.write)
                .await?;
        }
        Ok(report)
    }

    async fn table_digest(&self, table: &str, order: &str) -> Result<String> {
        let mut hasher = Sha256::new();
        let mut offset = 0i64;
        loop {
            let page = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT * FROM {table} ORDER BY {order} LIMIT {PAGE} OFFSET {offset}"
            )))
            .fetch_all(&self.read)
            .await?;
            if page.is_empty() {
                return Ok(hex::encode(hasher.finalize()));
            }
            for row in &page {
                digest_row(&mut hasher, &values(table, row));
            }
            offset += PAGE;
        }
    }
}
