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

/// A JSON column that is not JSON is reported as corrupt, never read as empty.
#[tokio::test]
async fn a_corrupt_json_column_is_an_error_not_a_default() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open_sqlite_dir(dir.path()).await.expect("sqlite");
    let project = crate::plant_line(&store).await;
    let edge = store::NewEdge {
        name: "gw".into(),
        endpoint: "http://10.0.0.1".into(),
        tags: vec!["a".into()],
        ..store::NewEdge::default()
    };
    let created = store
        .insert_edges(&project.id, &[edge], &store::AuditEntry::new(domain::audit::AuditAction::EdgeServiceCreate))
        .await
        .expect("edge");
    let id = created[0].id.clone();
    sqlx::any::install_default_drivers();
    let raw =
        sqlx::AnyPool::connect(&format!("sqlite://{}", dir.path().join("edgefleet.db").display())).await.expect("raw");
    sqlx::query("UPDATE edge_services SET tags = 'not json' WHERE id = $1")
        .bind(&id)
        .execute(&raw)
        .await
        .expect("corrupt");
    match store.get_edge(&project.id, &id).await {
        Err(store::StoreError::Corrupt(why)) => assert!(why.contains("tags"), "{why}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}
