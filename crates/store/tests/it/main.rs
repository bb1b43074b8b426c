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

/// Organization "plant" with its project "line", where a test registers its services.
pub async fn plant_line(store: &Store) -> store::Project {
    use domain::audit::AuditAction;
    let org = store.create_org("plant", &AuditEntry::new(AuditAction::OrgCreate)).await.expect("org");
    store.create_project(&org.id, "line", &AuditEntry::new(AuditAction::ProjectCreate)).await.expect("project")
}

#[tokio::test]
async fn tidy_runs_after_many_writes_and_searches_still_answer() {
    for (store, _dir) in stores().await {
        let project = plant_line(&store).await;
        let edges: Vec<NewEdge> = (0..1200)
            .map(|k| NewEdge {
                name: format!("gw-{k:04}"),
                endpoint: format!("http://10.0.{}.{}:7081", k / 250, k % 250),
                tags: vec![format!("zone-{}", k % 4)],
                ..NewEdge::default()
            })
            .collect();
        store
            .insert_edges(&project.id, &edges, &AuditEntry::new(domain::audit::AuditAction::EdgeServiceCreate))
            .await
            .expect("insert");
        // Two at once (imports finishing together): one tidies, the other leaves it to it.
        let (first, second) = tokio::join!(store.tidy(), store.tidy());
        assert_eq!((first.expect("first tidy"), second.expect("second tidy")), (true, false));
        assert!(!store.tidy().await.expect("third tidy"), "nothing written since: nothing to do");
        let filter = EdgeFilter { name: Some("gw-004".into()), tag: vec!["zone-1".into()], ..EdgeFilter::default() };
        let (items, total) = store.list_edges(&project.id, &filter, 50, 0).await.expect("list");
        assert_eq!(
            (total.n, total.estimated, items.len()),
            (3, false, 3),
            "{:?}",
            items.iter().map(|e| &e.name).collect::<Vec<_>>()
        );
    }
}

/// What makes periodic work (probe rounds) run once across replicas: one holder at a time, the
/// holder renews, and another takes over only when the lease has run out.
#[tokio::test]
async fn a_singleton_lease_has_one_holder_at_a_time() {
    for (store, _dir) in stores().await {
        const HOUR: i64 = 3_600_000;
        assert!(store.hold_singleton("prober", "replica-a", HOUR).await.expect("take"));
        assert!(!store.hold_singleton("prober", "replica-b", HOUR).await.expect("refused"), "a holds it");
        assert!(store.hold_singleton("prober", "replica-a", HOUR).await.expect("renew"));
        assert!(!store.hold_singleton("prober", "replica-b", HOUR).await.expect("still refused"));
        assert!(store.hold_singleton("other", "replica-b", HOUR).await.expect("another name"), "leases are per name");
        // a stops renewing: a lease that has run out (here: one that ended at once) goes to b.
        assert!(store.hold_singleton("prober", "replica-a", -1).await.expect("expire"));
        assert!(store.hold_singleton("prober", "replica-b", HOUR).await.expect("take over"));
        assert!(!store.hold_singleton("prober", "replica-a", HOUR).await.expect("a is refused now"));
    }
}

/// A probe that finds the same status again keeps the time the status began.
#[tokio::test]
async fn an_edge_status_keeps_the_time_it_began() {
    use domain::edge::EdgeStatus;
    use store::ProbeResult;
    for (store, _dir) in stores().await {
        let project = plant_line(&store).await;
        let edge = NewEdge { name: "gw".into(), endpoint: "http://10.0.0.1:7081".into(), ..NewEdge::default() };
        let id = store
            .insert_edges(&project.id, &[edge], &AuditEntry::new(domain::audit::AuditAction::EdgeServiceCreate))
            .await
            .expect("insert")[0]
            .id
            .clone();
        let base = store::now_ms();
        let offline = |started_at: i64| ProbeResult {
            version: None,
            status: EdgeStatus::Offline,
            reason: "down".into(),
            started_at: base + started_at,
        };
        let online = |started_at: i64| ProbeResult {
            version: Some("3.6.0".into()),
            status: EdgeStatus::Online,
            reason: String::new(),
            started_at: base + started_at,
        };
        let since = |ids: Vec<String>| {
            let store = store.clone();
            async move { store.edge_health(&ids).await.expect("health").remove(&ids[0]).expect("found") }
        };
        store.record_probe(&id, &offline(0)).await.expect("probe");
        let first = since(vec![id.clone()]).await;
        assert_eq!(first.status, EdgeStatus::Offline);
        let began = first.since.expect("since");
        store.record_probe(&id, &offline(1000)).await.expect("probe again");
        assert_eq!(since(vec![id.clone()]).await.since, Some(began), "still offline since then");
        store.record_probe(&id, &online(2000)).await.expect("back");
        let back = since(vec![id.clone()]).await;
        assert_eq!(back.status, EdgeStatus::Online);
        assert!(back.since >= Some(began));
        // A probe that began before the one recorded (a slow round) changes nothing.
        store.record_probe(&id, &offline(1500)).await.expect("stale");
        assert_eq!(since(vec![id.clone()]).await.status, EdgeStatus::Online, "a stale probe is not recorded");
        assert_eq!(store.get_edge(&project.id, &id).await.expect("edge").version.as_deref(), Some("3.6.0"));
        assert!(store.edge_health(&["no-such-edge".to_owned()]).await.expect("health").is_empty());
    }
}

/// Delivers `expected` as object `rule r` to the edge through a whole target (claim, result);
/// answers the delivery's id.
async fn deliver_object(store: &Store, project_id: &str, edge: &store::EdgeService, expected: &str) -> String {
    use domain::delivery::{DeliveryKind, DeliveryMode, DeliveryState, TargetStatus};
    let new = store::NewDelivery {
        id: store::new_id(),
        project_id: project_id.to_owned(),
        kind: DeliveryKind::Template,
        template_id: Some("template-1".into()),
        template_name: "rules".into(),
        template_version: Some(1),
        template_kind: Some(domain::template::TemplateKind::Rule),
        plugin_id: None,
        content: "{}".into(),
        content_sha256: String::new(),
        content_edited: false,
        params: serde_json::json!({}),
        options: serde_json::json!({}),
        dry_run: false,
        mode: DeliveryMode::Apply,
        plan_id: None,
        rollback_of: None,
        force: false,
        created_by: "admin".into(),
        state: DeliveryState::Running,
        rollout: None,
        wave_ends: Vec::new(),
        start_at: None,
        approvals_required: 0,
        first_rollback_only: false,
    };
    let target = store::NewTarget {
        edge_id: edge.id.clone(),
        edge_name: edge.name.clone(),
        endpoint: edge.endpoint.clone(),
        edge_version: None,
        tags: Vec::new(),
        auth: edge.auth.clone(),
        reach: edge.reach.clone(),
        wave: 0,
    };
    let delivery = store
        .create_delivery(&new, &[target], &AuditEntry::new(domain::audit::AuditAction::DeliveryStart))
        .await
        .expect("delivery");
    let claimed = store.claim_targets(&delivery.id, "w", 60_000, 10, i64::MAX, i64::MAX).await.expect("claim");
    let outcome = store::TargetOutcome {
        status: TargetStatus::Succeeded,
        reason: String::new(),
        failure: None,
        items: serde_json::json!([]),
        tries: 1,
        edge_version: None,
        restore: None,
        delivered: Some(store::Delivered {
            template_id: Some("template-1".into()),
            plugin_id: None,
            objects: vec![store::DeliveredObject { object: "rule r".into(), expected: Some(expected.into()) }],
        }),
    };
    let written = store
        .finish_targets(&[(delivery.id.clone(), edge.id.clone(), claimed[0].attempt, outcome)])
        .await
        .expect("result");
    assert!(written[0].is_some());
    delivery.id
}

/// A check that read the edge against one delivery does not mark the objects of a delivery that
/// landed meanwhile drifted; an unreadable edge is `unknown` only once something was delivered.
#[tokio::test]
async fn a_check_is_fenced_by_the_delivery_it_compared_against() {
    use domain::drift::{ConfigState, InventoryKind};
    use store::{CheckResult, Finding, ObjectFinding};
    for (store, _dir) in stores().await {
        let project = plant_line(&store).await;
        let new = NewEdge { name: "gw".into(), endpoint: "http://10.0.0.1:7081".into(), ..NewEdge::default() };
        let edge = store
            .insert_edges(&project.id, &[new], &AuditEntry::new(domain::audit::AuditAction::EdgeServiceCreate))
            .await
            .expect("insert")
            .remove(0);
        let state = |store: Store, project: String, id: String| async move {
            store.get_edge(&project, &id).await.expect("edge").config_state
        };
        let unreadable =
            CheckResult { edge_id: edge.id.clone(), checked_at: 1, finding: Finding::Unreadable("down".into()) };
        store.record_checks(std::slice::from_ref(&unreadable)).await.expect("check");
        assert_eq!(state(store.clone(), project.id.clone(), edge.id.clone()).await, ConfigState::None);
        let first = deliver_object(&store, &project.id, &edge, "sealed-1").await;
        assert_eq!(state(store.clone(), project.id.clone(), edge.id.clone()).await, ConfigState::InSync);
        // A check reads the edge against the first delivery; the second lands before it is recorded.
        let second = deliver_object(&store, &project.id, &edge, "sealed-2").await;
        let stale = CheckResult {
            edge_id: edge.id.clone(),
            checked_at: 2,
            finding: Finding::Read {
                objects: vec![ObjectFinding {
                    object: "rule r".into(),
                    delivery_id: first,
                    drifted: true,
                    live: "{}".into(),
                    diff: "[]".into(),
                }],
                inventory: vec![(InventoryKind::Rule, "r".into())],
            },
        };
        store.record_checks(&[stale]).await.expect("check");
        assert_eq!(state(store.clone(), project.id.clone(), edge.id.clone()).await, ConfigState::InSync);
        let kept = store.expected_objects(&edge.id).await.expect("kept");
        assert_eq!((kept[0].delivery_id.as_str(), kept[0].drifted), (second.as_str(), false));
        let (items, total) =
            store.inventory(&project.id, Some(InventoryKind::Rule), Some("r"), 10, 0).await.expect("inv");
        assert_eq!((total, items[0].edge_ids.clone()), (1, vec![edge.id.clone()]));
        store.record_checks(&[unreadable]).await.expect("check");
        assert_eq!(state(store.clone(), project.id.clone(), edge.id.clone()).await, ConfigState::Unknown);
        assert_eq!(store.edges_in_config_state(ConfigState::Unknown).await.expect("count"), 1);
        // The edge is deleted while a delivery to it runs and a check reads it: both still land.
        store
            .delete_edge(&project.id, &edge.id, &AuditEntry::new(domain::audit::AuditAction::EdgeServiceDelete))
            .await
            .expect("delete");
        deliver_object(&store, &project.id, &edge, "sealed-3").await;
        let late = CheckResult {
            edge_id: edge.id.clone(),
            checked_at: 3,
            finding: Finding::Read { objects: Vec::new(), inventory: vec![(InventoryKind::Rule, "r".into())] },
        };
        store.record_checks(&[late]).await.expect("a check of a deleted edge is written without error");
        let (_, total) = store.inventory(&project.id, None, None, 10, 0).await.expect("inventory");
        assert_eq!(total, 0, "a deleted edge is not in the inventory");
    }
}

/// PostgreSQL counts a filter's matches exactly up to a bound and estimates past it (flagged), so
/// a broad search does not re-check a third of the registry on every page; SQLite always counts.
#[tokio::test]
async fn broad_matches_are_estimated_on_postgres_and_counted_on_sqlite() {
    for (store, _dir) in stores().await {
        let project = plant_line(&store).await;
        let services = store::EXACT_COUNT_UP_TO + 100;
        let edges: Vec<NewEdge> = (0..services)
            .map(|k| NewEdge {
                name: format!("gw-{k:05}"),
                endpoint: format!("http://10.{}.{}.1:7081", k / 250, k % 250),
                tags: vec![format!("zone-{}", k % 2)],
                ..NewEdge::default()
            })
            .collect();
        store
            .insert_edges(&project.id, &edges, &AuditEntry::new(domain::audit::AuditAction::EdgeServiceCreate))
            .await
            .expect("insert");
        let postgres = store.backend() == store::Backend::Postgres;
        let broad = EdgeFilter { q: Some("gw-".into()), ..EdgeFilter::default() };
        let (items, total) = store.list_edges(&project.id, &broad, 50, 0).await.expect("broad");
        assert_eq!((items.len(), total.estimated), (50, postgres), "{total:?}");
        if postgres {
            assert!(total.n > store::EXACT_COUNT_UP_TO, "never below what was counted: {total:?}");
        } else {
            assert_eq!(total.n, services);
        }
        let narrow = EdgeFilter { q: Some("gw-0004".into()), tag: vec!["zone-1".into()], ..EdgeFilter::default() };
        let (items, total) = store.list_edges(&project.id, &narrow, 50, 0).await.expect("narrow");
        assert_eq!((total.n, total.estimated, items.len()), (5, false, 5), "exact below the bound");
    }
}

/// An import whose server died half-way is removed whole by the sweep once its heartbeat is old,
/// with an audit record; an import still beating is left alone.
#[tokio::test]
async fn an_import_abandoned_half_way_is_removed_by_the_sweep() {
    use domain::audit::AuditAction;
    for (store, _dir) in stores().await {
        let project = plant_line(&store).await;
        let edges: Vec<NewEdge> = (0..450)
            .map(|k| NewEdge {
                name: format!("gw-{k:03}"),
                endpoint: format!("http://10.0.{}.{}:7081", k / 250, k % 250),
                ..NewEdge::default()
            })
            .collect();
        let audit = AuditEntry { project_id: project.id.clone(), ..AuditEntry::new(AuditAction::EdgeServiceImport) };
        store::testing::import_that_dies_after_one_chunk(&store, &project.id, &edges, &audit).await.expect("chunk");
        let all = EdgeFilter::default();
        let one_chunk = store::IMPORT_CHUNK as i64;
        assert_eq!(store.list_edges(&project.id, &all, 10, 0).await.expect("list").1.n, one_chunk, "one chunk stored");

        let a_minute_ago = store::now_ms() - 60_000;
        assert_eq!(store.remove_abandoned_imports(a_minute_ago).await.expect("sweep"), 0, "still beating");
        assert_eq!(store.list_edges(&project.id, &all, 10, 0).await.expect("list").1.n, one_chunk);

        let later = store::now_ms() + 1;
        assert_eq!(store.remove_abandoned_imports(later).await.expect("sweep"), 1);
        assert_eq!(store.list_edges(&project.id, &all, 10, 0).await.expect("list").1.n, 0, "removed whole");
        assert_eq!(store.remove_abandoned_imports(later).await.expect("again"), 0, "nothing left to remove");
        let query = store::AuditQuery {
            action: Some("edge_service.import".into()),
            limit: 1000,
            ..store::AuditQuery::default()
        };
        let (records, _) = store.list_audit(&query).await.expect("audit");
        let removal = records.iter().find(|r| r.outcome == domain::access::Outcome::Failure).expect("a removal record");
        assert_eq!(removal.details["removed"], one_chunk, "{removal:?}");
        assert_eq!(removal.actor_name, "edgefleet");
    }
}

/// The free-text search follows every change to what it indexes: a version the first probe finds,
/// a rename (the old name no longer matches), a removal. On SQLite the triggers tell the search
/// index each removed row's old values, so a value they got wrong would leave a stale match here.
#[tokio::test]
async fn free_text_search_follows_versions_renames_and_removals() {
    use domain::edge::EdgeStatus;
    use store::ProbeResult;
    for (store, _dir) in stores().await {
        let project = plant_line(&store).await;
        let edges: Vec<NewEdge> = ["press-01", "press-02", "oven-01"]
            .iter()
            .enumerate()
            .map(|(k, name)| NewEdge {
                name: (*name).into(),
                endpoint: format!("http://10.0.0.{}:7081", k + 1),
                tags: vec!["hall-a".into()],
                ..NewEdge::default()
            })
            .collect();
        let entry = AuditEntry::new(domain::audit::AuditAction::EdgeServiceCreate);
        let created = store.insert_edges(&project.id, &edges, &entry).await.expect("insert");
        let probed = ProbeResult {
            version: Some("3.6.1".into()),
            status: EdgeStatus::Online,
            reason: String::new(),
            started_at: store::now_ms(),
        };
        store.record_probe(&created[0].id, &probed).await.expect("probe");
        let mut renamed = store.get_edge(&project.id, &created[1].id).await.expect("get");
        renamed.name = "stamp-02".into();
        let entry = AuditEntry::new(domain::audit::AuditAction::EdgeServiceUpdate);
        store.update_edge(&renamed, &entry).await.expect("rename");
        let entry = AuditEntry::new(domain::audit::AuditAction::EdgeServiceDelete);
        store.delete_edge(&project.id, &created[2].id, &entry).await.expect("delete");
        let cases: [(&str, &[&str]); 6] = [
            ("3.6.1", &["press-01"]),
            ("press", &["press-01"]),
            ("stamp", &["stamp-02"]),
            ("press-02", &[]),
            ("oven", &[]),
            ("hall-a", &["press-01", "stamp-02"]),
        ];
        for (query, expected) in cases {
            let filter = EdgeFilter { q: Some(query.into()), ..EdgeFilter::default() };
            let (items, total) = store.list_edges(&project.id, &filter, 50, 0).await.expect("list");
            let mut names: Vec<&str> = items.iter().map(|e| e.name.as_str()).collect();
            names.sort_unstable();
            assert_eq!((names.as_slice(), total.n), (expected, expected.len() as i64), "q={query}");
        }
    }
}
