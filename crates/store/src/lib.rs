//! The store: every SQL statement of edgefleet.
//!
//! Columns use types both backends share (TEXT, BIGINT unix milliseconds, INTEGER 0/1, JSON as
//! text), so one query text serves SQLite and PostgreSQL through sqlx's `Any` driver; the schema
//! itself has one migration folder per backend. SQLite gets a one-connection write pool (it has one
//! writer anyway) beside a read pool.

mod accounts;
mod agents;
mod audit;
mod copy;
mod deliveries;
mod drift;
mod edges;
mod members;
mod plugins;
mod rollouts;
mod security;
mod sql;
mod templates;
mod webhooks;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};

pub use accounts::{NewToken, Org, Project, ProjectScope, User};
pub use agents::{AgentSecret, CommandKeyRow};
pub use audit::{AuditEntry, AuditEvent, AuditQuery};
pub use copy::{TableCopy, copied_tables};
pub use deliveries::{
    Approval, ClaimedTarget, Delivery, DeliveryListFilter, DeliveryTarget, NewDelivery, NewTarget, Progress,
    TargetOutcome,
};
pub use drift::{
    CheckResult, CheckTarget, Delivered, DeliveredObject, ExpectedObject, Finding, INVENTORY_EDGE_IDS, InventoryItem,
    ObjectFinding,
};
pub use edges::{
    EXACT_COUNT_UP_TO, EdgeAuthRow, EdgeHealth, EdgeService, IMPORT_ABANDONED_AFTER_MS, IMPORT_CHUNK, MatchCount,
    NewEdge, ProbeResult, ProbeTarget,
};
pub use members::{Member, Roles, TokenInfo};
pub use plugins::{NewPlugin, Plugin};
pub use rollouts::{APPROVAL_LIFETIME_MS, ApprovalOutcome, MaintenanceWindow};
pub use security::{AttemptCount, JwtKeyRow};
pub use templates::{Template, TemplateChange, TemplateVersion};
pub use webhooks::{CallTry, DueCall, Webhook, WebhookCall};

/// What a store error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Organization,
    Project,
    User,
    EdgeService,
    Template,
    TemplateVersion,
    Delivery,
    Plugin,
    /// A user's membership of an organization or project.
    Member,
    Token,
    MaintenanceWindow,
    Webhook,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Organization => "organization",
            Resource::Project => "project",
            Resource::User => "user",
            Resource::EdgeService => "edge service",
            Resource::Template => "template",
            Resource::TemplateVersion => "template version",
            Resource::Delivery => "delivery",
            Resource::Plugin => "plugin",
            Resource::Member => "member",
            Resource::MaintenanceWindow => "maintenance window",
            Resource::Token => "token",
            Resource::Webhook => "webhook",
        }
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a change was refused because of what is already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clash {
    /// The unique name is taken.
    NameTaken(Resource),
    /// The template was edited meanwhile; `name` is the current version.
    TemplateChanged,
    /// The same package is stored under another name (`name`).
    PluginContent,
    /// A delivery uses the plugin (`name` is the plugin).
    PluginInUse,
    /// The organization still has projects (`name` is how many).
    OrgHasProjects,
    /// The project still holds things (`name` says what).
    ProjectNotEmpty,
    /// The delivery (`name`) already has a rollback.
    AlreadyRolledBack,
    /// Another edge service (in any project) has this agent id (`name`).
    AgentIdTaken,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Refused because of what is stored; `name` is what clashed.
    #[error("{clash:?}: `{name}`")]
    Conflict { clash: Clash, name: String },
    #[error("{0} not found")]
    NotFound(Resource),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// No connection came free within the pool's wait: the database (SQLite has one writer) was
    /// held by longer work than the wait allows. Nothing was done.
    #[error("the database stayed busy longer than the wait for a connection")]
    Busy,
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> StoreError {
        match err {
            sqlx::Error::PoolTimedOut => StoreError::Busy,
            other => StoreError::Database(other),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    read: AnyPool,
    write: AnyPool,
    backend: Backend,
    url: String,
    /// Registry rows written since the last `tidy`.
    search_writes: Arc<AtomicU64>,
    /// Held while a `tidy` runs (one at a time: two ran at once after concurrent imports).
    tidying: Arc<tokio::sync::Mutex<()>>,
}

/// Gives SQLite's planner current row counts (it needs them to prefer a selective filter's index
/// over walking a project's services by name); cheap when nothing changed much.
async fn refresh_statistics(pool: &AnyPool) -> Result<()> {
    sqlx::query("PRAGMA analysis_limit = 1000").execute(pool).await?;
    sqlx::query("PRAGMA optimize").execute(pool).await?;
    Ok(())
}

/// Steps after which a merge stops, done or not (about 3 GiB of index; the next tidy goes on).
const MAX_MERGE_STEPS: usize = 4_000;

/// Search-index writes after which `tidy` has work to do.
const TIDY_AFTER: u64 = 1000;

/// Notifications from other replicas (PostgreSQL `LISTEN`).
pub struct Listener(sqlx::postgres::PgListener);

impl Listener {
    /// The next payload; after a lost connection it reconnects (the error says what happened).
    pub async fn recv(&mut self) -> Result<String> {
        Ok(self.0.recv().await?.payload().to_owned())
    }
}

impl Store {
    /// Opens (creating if needed) and migrates. `url` is `sqlite://PATH` or `postgres://...`.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        let store = match backend {
            Backend::Sqlite => {
                let url = if url.contains('?') { url.to_owned() } else { format!("{url}?mode=rwc") };
                let write = sqlite_pool(&url, 1).await?;
                // Migrate before opening readers, so they see the schema.
                sqlx::migrate!("migrations/sqlite").run(&write).await?;
                refresh_statistics(&write).await?;
                let read = sqlite_pool(&url, 4).await?;
                // A fresh start tidies on the first occasion: the index may be fragmented from before.
                Store {
                    read,
                    write,
                    backend,
                    url: url.clone(),
                    search_writes: Arc::new(AtomicU64::new(TIDY_AFTER)),
                    tidying: Arc::default(),
                }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new().max_connections(16).connect(url).await?;
                sqlx::migrate!("migrations/postgres").run(&pool).await?;
                Store {
                    read: pool.clone(),
                    write: pool,
                    backend,
                    url: url.to_owned(),
                    search_writes: Arc::default(),
                    tidying: Arc::default(),
                }
            }
        };
        Ok(store)
    }

    /// SQLite in `dir/edgefleet.db`.
    pub async fn open_sqlite_dir(dir: &Path) -> Result<Store> {
        Store::open(&format!("sqlite://{}", dir.join("edgefleet.db").display())).await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Housekeeping after many registry writes, answering whether it ran. On SQLite it merges the
    /// search index (rewritten rows leave it fragmented; a fragmented index answered a
    /// 33,000-match search three times slower) and refreshes the planner's statistics. On
    /// PostgreSQL it vacuums and analyzes the registry tables: without statistics after an import
    /// of 100,000 services the planner chose a nested loop that counted a tag-and-version filter
    /// in 37 s instead of 90 ms (autovacuum may be off or not have come round yet).
    pub async fn tidy(&self) -> Result<bool> {
        // Another tidy running now does the same work; this one has nothing to add.
        let Ok(_running) = self.tidying.try_lock() else {
            return Ok(false);
        };
        if self.search_writes.load(Ordering::Relaxed) < TIDY_AFTER {
            return Ok(false);
        }
        self.search_writes.store(0, Ordering::Relaxed);
        match self.backend {
            Backend::Sqlite => {
                self.merge_search_index().await?;
                refresh_statistics(&self.write).await?;
                // Other connections read statistics with the schema; a schema change makes them reload.
                sqlx::query("CREATE TABLE IF NOT EXISTS statistics_refreshed (at BIGINT)").execute(&self.write).await?;
                sqlx::query("DROP TABLE IF EXISTS statistics_refreshed").execute(&self.write).await?;
            }
            Backend::Postgres => {
                sqlx::query("VACUUM (ANALYZE) edge_services, edge_service_tags").execute(&self.write).await?;
            }
        }
        Ok(true)
    }

    /// FTS5's `optimize` in steps: each merges at most 200 pages (about 800 KiB) and the writer is
    /// let go between them. One `optimize` held SQLite's only writer for 1.8 s at 100,000
    /// services and 4 to 7 s at 1,000,000, after every big import; other writes waited that long.
    async fn merge_search_index(&self) -> Result<()> {
        for _ in 0..MAX_MERGE_STEPS {
            let mut conn = self.write.acquire().await?;
            let before: i64 = sqlx::query("SELECT total_changes() AS n").fetch_one(&mut *conn).await?.get("n");
            // A negative page count first puts every segment on one level, so repeated steps end
            // with the index in a single segment, as `optimize` leaves it.
            sqlx::query("INSERT INTO edge_search (edge_search, rank) VALUES ('merge', -200)")
                .execute(&mut *conn)
                .await?;
            let after: i64 = sqlx::query("SELECT total_changes() AS n").fetch_one(&mut *conn).await?.get("n");
            // FTS5 documents that a merge step that changed fewer than two rows had nothing to do.
            if after - before < 2 {
                break;
            }
        }
        Ok(())
    }

    fn note_search_writes(&self, rows: u64) {
        self.search_writes.fetch_add(rows, Ordering::Relaxed);
    }

    /// Tells every replica listening on `channel`; nothing to do on SQLite (one process).
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(&self.write).await?;
        }
        Ok(())
    }

    /// Listens on `channel` (PostgreSQL only; `None` on SQLite).
    pub async fn listen(&self, channel: &str) -> Result<Option<Listener>> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut listener = sqlx::postgres::PgListener::connect(&self.url).await?;
        listener.listen(channel).await?;
        Ok(Some(Listener(listener)))
    }

    /// The tables of the schema (not SQLite's own, nor the search index's shadow tables).
    pub async fn table_names(&self) -> Result<Vec<String>> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_sqlx_%' AND sql NOT LIKE 'CREATE VIRTUAL TABLE%' AND name NOT LIKE 'edge_search_%' ORDER BY name"
            }
            Backend::Postgres => {
                "SELECT tablename::text AS name FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE '_sqlx_%' ORDER BY tablename"
            }
        };
        let rows = sqlx::query(sql).fetch_all(&self.read).await?;
        Ok(rows.iter().map(|r| r.get("name")).collect())
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1").bind(key).fetch_optional(&self.read).await?;
        Ok(row.map(|r| r.get("value")))
    }

    /// Stores `value` unless the key has one; answers the value that is stored now.
    pub async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String> {
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.write)
            .await?;
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1").bind(key).fetch_one(&self.write).await?;
        Ok(row.get("value"))
    }
}

async fn sqlite_pool(url: &str, connections: u32) -> Result<AnyPool> {
    let pool = AnyPoolOptions::new()
        .max_connections(connections)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;")
                    .await?;
                Ok(())
            })
        })
        .connect(url)
        .await?;
    Ok(pool)
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Maps a unique-constraint failure to a conflict naming what clashed.
fn conflict(err: sqlx::Error, what: Resource, name: &str) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict { clash: Clash::NameTaken(what), name: name.to_owned() }
        }
        _ => StoreError::Database(err),
    }
}

/// A JSON list column; a value that is not one is `Corrupt` (never silently empty).
fn json_list(row: &AnyRow, column: &str) -> Result<Vec<String>> {
    let text: String = row.get(column);
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("column {column}: {e}")))
}

/// A column holding one of an enum's spellings; any other text is `Corrupt` (never a default).
fn parsed<T: std::str::FromStr<Err = String>>(row: &AnyRow, column: &str) -> Result<T> {
    let text: String = row.get(column);
    text.parse().map_err(|e| StoreError::Corrupt(format!("column {column}: {e}")))
}

/// A JSON column; a value that is not JSON is `Corrupt` (never silently null).
fn json_value(row: &AnyRow, column: &str) -> Result<serde_json::Value> {
    let text: String = row.get(column);
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("column {column}: {e}")))
}

/// `LIKE` pattern for a case-insensitive substring match, with wildcards in the needle escaped.
fn like_pattern(needle: &str) -> String {
    format!("%{}%", escape_like(&needle.to_lowercase()))
}

/// Escapes `LIKE` wildcards (with `ESCAPE '\\'`).
fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// Helpers for tests that need a database of their own.
pub mod testing {
    use sqlx::Executor;
    use sqlx::any::AnyPoolOptions;

    /// An import whose process dies after its first chunk: the import is marked in progress and
    /// the first `crate::IMPORT_CHUNK` services are stored, then nothing more (what
    /// `Store::remove_abandoned_imports` cleans up). Answers the import's id.
    pub async fn import_that_dies_after_one_chunk(
        store: &crate::Store,
        project_id: &str,
        edges: &[crate::NewEdge],
        audit_base: &crate::AuditEntry,
    ) -> crate::Result<String> {
        let import_id = store.begin_import(project_id, edges.len()).await?;
        let first = &edges[..edges.len().min(crate::IMPORT_CHUNK)];
        store.import_chunk(project_id, first, audit_base, &import_id).await?;
        Ok(import_id)
    }

    /// Creates an empty PostgreSQL database on the server at `base_url`
    /// (`postgres://user@host:port`) and answers its URL.
    pub async fn fresh_postgres_database(base_url: &str) -> crate::Result<String> {
        sqlx::any::install_default_drivers();
        let base = base_url.trim_end_matches('/');
        let admin = AnyPoolOptions::new().max_connections(1).connect(&format!("{base}/postgres")).await?;
        let name = format!("ef_test_{}", uuid::Uuid::now_v7().simple());
        admin.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await?;
        admin.close().await;
        Ok(format!("{base}/{name}"))
    }

    /// Drops the databases made by `fresh_postgres_database`.
    pub async fn drop_test_databases(base_url: &str) -> crate::Result<usize> {
        use sqlx::Row;
        sqlx::any::install_default_drivers();
        let base = base_url.trim_end_matches('/');
        let admin = AnyPoolOptions::new().max_connections(1).connect(&format!("{base}/postgres")).await?;
        let rows = sqlx::query("SELECT datname::text AS datname FROM pg_database WHERE datname LIKE 'ef\\_test\\_%'")
            .fetch_all(&admin)
            .await?;
        for row in &rows {
            let name: String = row.get("datname");
            admin.execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).await?;
        }
        Ok(rows.len())
    }
}
