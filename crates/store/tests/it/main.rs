//! Registry housekeeping runs on both backends and leaves searches answering.

mod tidy;

use domain::filter::EdgeFilter;
use store::{AuditEntry, NewEdge, Store};

async fn stores() -> Vec<(Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().expect("dir");
    let mut stores = vec![(Store::open_sqlite_dir(dir.path()).await.expect("sqlite"), Some(dir))];
    // EDGEFLEET_TEST_POSTGRES=postgres://user@host:port adds PostgreSQL.
    if let Ok(base) = std::env::var("EDGEFLEET_TEST_POSTGRES")
        && !base.is_empty()
    {
        let url = store::testing::fresh_postgres_database(&base).await.expect("database");
        stores.push((Store::open(&url).await.expect("postgres"), None));
    }
    stores
}

#[tokio::test]
async fn tidy_runs_after_many_writes_and_searches_still_answer() {
    for (store, _dir) in stores().await {
        let org = store.create_org("plant", &AuditEntry::default()).await.expect("org");
        let project = store.create_project(&org.id, "line", &AuditEntry::default()).await.expect("project");
        let edges: Vec<NewEdge> = (0..1200)
            .map(|k| NewEdge {
                name: format!("gw-{k:04}"),
                endpoint: format!("http://10.0.{}.{}:7081", k / 250, k % 250),
                tags: vec![format!("zone-{}", k % 4)],
                ..NewEdge::default()
            })
            .collect();
        store.insert_edges(&project.id, &edges, &AuditEntry::default()).await.expect("insert");
        store.tidy().await.expect("first tidy");
        assert!(!store.tidy().await.expect("second tidy"), "nothing written since: nothing to do");
        let filter = EdgeFilter { name: Some("gw-004".into()), tag: vec!["zone-1".into()], ..EdgeFilter::default() };
        let (items, total) = store.list_edges(&project.id, &filter, 50, 0).await.expect("list");
        assert_eq!((total, items.len()), (3, 3), "{:?}", items.iter().map(|e| &e.name).collect::<Vec<_>>());
    }
}
