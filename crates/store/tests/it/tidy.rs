//! Invariants that no single feature test would notice breaking.

use std::collections::BTreeSet;

use store::Store;

/// `db copy` moves every table a migration creates (it once left out the memberships).
#[tokio::test]
async fn db_copy_moves_every_table_of_the_schema() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open_sqlite_dir(dir.path()).await.expect("sqlite");
    let schema: BTreeSet<String> = store.table_names().await.expect("tables").into_iter().collect();
    let copied: BTreeSet<String> = store::copied_tables().into_iter().map(str::to_owned).collect();
    assert_eq!(schema, copied, "tables in the schema and tables `db copy` moves differ");
}

/// Both backends have the same migrations, numbered alike, so a database moves between them at
/// any version.
#[test]
fn sqlite_and_postgresql_migrations_are_numbered_alike() {
    let numbers = |backend: &str| -> BTreeSet<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend);
        std::fs::read_dir(&dir)
            .expect("migrations")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|name| name.split_once('_').map(|(n, _)| n.to_owned()))
            .collect()
    };
    assert_eq!(numbers("sqlite"), numbers("postgres"));
}
