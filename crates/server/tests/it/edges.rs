use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, code, sim};

#[tokio::test]
async fn create_probe_and_never_return_the_secret() {
    let app = TestApp::spawn().await;
    let sim = sim(1, &["3.6.0"]).await;
    let body = json!({"name": "gw-1", "endpoint": format!("{}/", sim.endpoint(0)), "tags": ["line-1", "zone-a", "line-1"],
                      "auth": {"kind": "basic", "username": "admin", "password": "0000"}});
    let created = app.post(&app.p("/edge-services"), body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert!(!created.text.contains("0000\""));
    assert_eq!(created.body["endpoint"], sim.endpoint(0), "trailing slash removed");
    assert_eq!(created.body["tags"], json!(["line-1", "zone-a"]));
    assert_eq!(created.body["auth"], json!({"kind": "basic", "username": "admin"}));
    let id = created.body["id"].as_str().expect("id");
    let probed = app.post(&app.p(&format!("/edge-services/{id}/probe")), json!({})).await;
    assert_eq!((probed.body["status"].as_str(), probed.body["version"].as_str()), (Some("online"), Some("3.6.0")));
    let listed = app.get(&app.p("/edge-services")).await;
    assert!(!listed.text.contains("0000\""));
}

#[tokio::test]
async fn an_unreachable_gateway_is_registered_and_shown_offline_with_the_reason() {
    let app = TestApp::spawn().await;
    let created = app
        .post(&app.p("/edge-services"), json!({"name": "not-installed-yet", "endpoint": "http://127.0.0.1:1"}))
        .await;
    assert_eq!(created.status, 201);
    let id = created.body["id"].as_str().expect("id");
    let probed = app.post(&app.p(&format!("/edge-services/{id}/probe")), json!({})).await;
    assert_eq!(probed.body["status"], "offline");
    assert!(
        probed.body["status_reason"].as_str().expect("reason").starts_with("read version: cannot connect"),
        "{}",
        probed.text
    );
}

#[tokio::test]
async fn bad_input_gets_a_stable_code_and_changes_nothing() {
    let app = TestApp::spawn().await;
    app.post(&app.p("/edge-services"), json!({"name": "taken", "endpoint": "http://10.0.0.1:8085"})).await;
    // (body, status, code, words the message must contain)
    let cases = [
        (
            json!({"name": "a", "endpoint": "10.0.0.5:8085"}),
            422,
            "invalid_edge_service",
            "endpoint: `10.0.0.5:8085` is not an http(s) URL",
        ),
        (json!({"name": "a", "endpoint": "ftp://10.0.0.5"}), 422, "invalid_edge_service", "endpoint:"),
        (json!({"name": " ", "endpoint": "http://10.0.0.5"}), 422, "invalid_edge_service", "name:"),
        (
            json!({"name": "a", "endpoint": "http://10.0.0.5", "tags": ["bad tag!"]}),
            422,
            "invalid_edge_service",
            "tags: bad tag",
        ),
        (
            json!({"name": "a", "endpoint": "http://10.0.0.5", "auth": {"kind": "oauth"}}),
            422,
            "invalid_edge_service",
            "auth.kind: unknown auth kind",
        ),
        (
            json!({"name": "a", "endpoint": "http://10.0.0.5", "auth": {"kind": "basic", "username": "u"}}),
            422,
            "invalid_edge_service",
            "auth.password",
        ),
        (
            json!({"name": "a", "endpoint": "http://10.0.0.5", "colour": "red"}),
            400,
            "malformed_json",
            "unknown field `colour`",
        ),
        (
            json!({"name": "taken", "endpoint": "http://10.0.0.2"}),
            409,
            "edge_service_name_taken",
            "`taken` already exists",
        ),
    ];
    for (body, status, expected_code, words) in cases {
        let answer = app.post(&app.p("/edge-services"), body.clone()).await;
        assert_eq!((answer.status, code(&answer)), (status, expected_code), "{body}: {}", answer.text);
        assert!(answer.body["error"]["message"].as_str().expect("message").contains(words), "{body}: {}", answer.text);
    }
    let malformed =
        app.raw(Method::POST, &app.p("/edge-services"), "application/json", "{\n \"name\": \"x\",,\n}").await;
    assert_eq!((malformed.status, code(&malformed)), (400, "malformed_json"));
    assert_eq!(malformed.body["error"]["details"], json!({"line": 2, "column": 14}));
    let unknown_project =
        app.post("/api/v1/projects/nope/edge-services", json!({"name": "a", "endpoint": "http://x"})).await;
    assert_eq!((unknown_project.status, code(&unknown_project)), (404, "project_not_found"));
    let unknown_edge = app.get(&app.p("/edge-services/nope")).await;
    assert_eq!((unknown_edge.status, code(&unknown_edge)), (404, "edge_service_not_found"));
    let too_big =
        app.raw(Method::POST, &app.p("/edge-services"), "application/json", vec![b' '; 17 * 1024 * 1024]).await;
    assert_eq!((too_big.status, code(&too_big)), (413, "body_too_large"));
    assert_eq!(app.get(&app.p("/edge-services")).await.body["total"], 1);
}

#[tokio::test]
async fn import_is_all_or_nothing() {
    let app = TestApp::spawn().await;
    let csv = "name,endpoint,tags,description\ngw-1,http://10.0.0.1:8085,line-1;zone-a,first\ngw-2,http://10.0.0.2:8085,line-2,second\n";
    let imported = app.raw(Method::POST, &app.p("/edge-services/import"), "text/csv", csv).await;
    assert_eq!(imported.status, 201, "{}", imported.text);
    assert_eq!(imported.body["total"], 2);
    let bad_rows = "name,endpoint\ngw-3,http://10.0.0.3\ngw-4,not-a-url\ngw-3,http://10.0.0.5\n";
    let refused = app.raw(Method::POST, &app.p("/edge-services/import"), "text/csv", bad_rows).await;
    assert_eq!((refused.status, code(&refused)), (422, "invalid_import"));
    assert_eq!(refused.body["error"]["details"]["problems"].as_array().map(Vec::len), Some(2));
    assert!(refused.body["error"]["message"].as_str().expect("msg").starts_with("row 2 endpoint:"), "{}", refused.text);
    let clash = app
        .post(
            &app.p("/edge-services/import"),
            json!([{"name": "gw-9", "endpoint": "http://x:1"}, {"name": "gw-1", "endpoint": "http://x:2"}]),
        )
        .await;
    assert_eq!((clash.status, code(&clash)), (409, "edge_service_name_taken"));
    assert_eq!(clash.body["error"]["details"]["problems"][0]["row"], 2, "every clashing row is listed: {}", clash.text);
    let unknown_column = app
        .raw(Method::POST, &app.p("/edge-services/import"), "text/csv", "name,endpoint,colour\na,http://x,red\n")
        .await;
    assert_eq!((unknown_column.status, code(&unknown_column)), (400, "malformed_csv"));
    let empty = app.post(&app.p("/edge-services/import"), json!([])).await;
    assert_eq!((empty.status, code(&empty)), (422, "empty_import"));
    assert_eq!(app.get(&app.p("/edge-services")).await.body["total"], 2, "nothing from the refused imports was stored");
}

/// More rows than one transaction takes (`store::IMPORT_CHUNK`): `n` services named
/// `{prefix}-{i}`, with `last` as the final row.
fn bulk_rows(prefix: &str, n: usize, last: Value) -> Value {
    let mut rows: Vec<Value> =
        (1..n).map(|i| json!({"name": format!("{prefix}-{i}"), "endpoint": format!("http://10.1.{}.{}:8085", i / 250, i % 250)})).collect();
    rows.push(last);
    Value::Array(rows)
}

#[tokio::test]
async fn a_large_import_is_stored_in_chunks_and_every_problem_is_listed_first() {
    let app = TestApp::spawn().await;
    app.post(&app.p("/edge-services"), json!({"name": "bulk-7", "endpoint": "http://10.9.0.1:8085"})).await;
    let mut rows = bulk_rows("bulk", 450, json!({"name": "bulk-7", "endpoint": "http://10.9.0.2:8085"}));
    rows[100]["transport"] = json!("agent");
    rows[100]["agent_id"] = json!("ag-dup");
    rows[101] = json!({"name": "ag", "transport": "agent", "agent_id": "ag-dup"});
    let refused = app.post(&app.p("/edge-services/import"), rows).await;
    assert_eq!((refused.status, code(&refused)), (422, "invalid_import"), "{}", refused.text);
    let problems: Vec<(u64, &str)> = refused.body["error"]["details"]["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| (p["row"].as_u64().unwrap_or(0), p["field"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(problems, [(7, "name"), (102, "agent_id"), (450, "name"), (450, "name")], "{}", refused.text);
    assert_eq!(app.get(&app.p("/edge-services")).await.body["total"], 1, "nothing stored");

    let imported = app
        .post(
            &app.p("/edge-services/import"),
            bulk_rows("more", 450, json!({"name": "last", "endpoint": "http://x:1"})),
        )
        .await;
    assert_eq!(imported.status, 201, "{}", imported.text);
    assert_eq!(imported.body["total"], 450);
    assert_eq!(app.get(&app.p("/edge-services")).await.body["total"], 451);
    let audit = app.get("/api/v1/audit?action=edge_service.import&limit=1").await;
    assert_eq!(audit.body["total"], 450, "one record per imported service");
}

#[tokio::test]
async fn an_import_that_fails_after_its_first_chunks_removes_them_again() {
    let app = TestApp::spawn().await;
    let taken =
        app.post(&app.p("/edge-services"), json!({"name": "agent-gw", "transport": "agent", "agent_id": "ag-1"})).await;
    assert_eq!(taken.status, 201, "{}", taken.text);
    // Agent ids are unique across the server and checked when the row is stored, so the last
    // chunk fails after the ones before it have been committed.
    let rows = bulk_rows("bulk", 450, json!({"name": "late", "transport": "agent", "agent_id": "ag-1"}));
    let committed = 449 / store::IMPORT_CHUNK * store::IMPORT_CHUNK;
    let failed = app.post(&app.p("/edge-services/import"), rows).await;
    assert_eq!((failed.status, code(&failed)), (409, "agent_id_taken"), "{}", failed.text);
    assert_eq!(app.get(&app.p("/edge-services")).await.body["total"], 1, "the committed chunks were removed");
    let undone = app.get("/api/v1/audit?action=edge_service.import&limit=5").await;
    let record = undone.body["items"].as_array().and_then(|items| items.iter().find(|e| e["outcome"] == "failure"));
    let record = record.unwrap_or_else(|| panic!("a failure record: {}", undone.text));
    assert_eq!(record["details"]["removed"], committed, "{}", undone.text);
    let again = app
        .post(
            &app.p("/edge-services/import"),
            bulk_rows("bulk", 450, json!({"name": "late", "endpoint": "http://x:1"})),
        )
        .await;
    assert_eq!(again.status, 201, "the same names import once the clash is gone: {}", again.text);
}

#[tokio::test]
async fn filters_combine_and_page() {
    let app = TestApp::spawn().await;
    let sim = sim(8, &["3.7.0", "3.6.0", "3.6.1", "2.9.0"]).await;
    app.register(&sim, 8).await;
    // (query, expected total)
    let cases = [
        ("", 8),
        ("version=3.6", 4),
        ("version=3.6.1", 2),
        ("tag=zone-a", 2),
        ("tag=zone-a&tag=line-1", 1),
        ("name=00003", 1),
        ("q=NEURONEX-0000", 8),
        ("endpoint=/i/7", 1),
        ("status=online", 8),
        ("status=offline", 0),
        ("q=2.9.0", 2),
        ("tag=zone-b&version=3.6", 2),
        ("tag=zone-c&version=3.6", 2),
        ("tag=zone-a&version=3.6", 0),
        ("tag=zone-d&tag=line-1&version=2", 1),
        ("version=3.6&q=neuronex-0000", 4),
    ];
    for (query, total) in cases {
        let answer = app.get(&app.p(&format!("/edge-services?{query}"))).await;
        assert_eq!(answer.body["total"], total, "{query}: {}", answer.text);
    }
    let page = app.get(&app.p("/edge-services?limit=3&offset=6")).await;
    assert_eq!((page.body["total"].as_i64(), page.body["items"].as_array().map(Vec::len)), (Some(8), Some(2)));
    for (query, expected_code) in [
        ("limit=0", "bad_query"),
        ("status=sleeping", "bad_query"),
        ("colour=red", "bad_query"),
        ("offset=x", "bad_query"),
    ] {
        let answer = app.get(&app.p(&format!("/edge-services?{query}"))).await;
        assert_eq!((answer.status, code(&answer)), (400, expected_code), "{query}");
    }
}

#[tokio::test]
async fn edit_and_delete() {
    let app = TestApp::spawn().await;
    let created = app.post(&app.p("/edge-services"), json!({"name": "gw", "endpoint": "http://10.0.0.1:8085", "auth": {"kind": "basic", "username": "admin", "password": "pw-1"}})).await;
    let id = created.body["id"].as_str().expect("id").to_owned();
    let patched = app
        .call(
            Method::PATCH,
            &app.p(&format!("/edge-services/{id}")),
            Some(json!({"tags": ["moved"], "auth": {"kind": "basic", "username": "ops"}})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["tags"], json!(["moved"]));
    assert_eq!(patched.body["auth"]["username"], "ops", "the stored password is kept when none is given");
    let bad = app.call(Method::PATCH, &app.p(&format!("/edge-services/{id}")), Some(json!({"endpoint": "nope"}))).await;
    assert_eq!(code(&bad), "invalid_edge_service");
    let deleted = app.call(Method::DELETE, &app.p(&format!("/edge-services/{id}")), None).await;
    assert_eq!(deleted.status, 204);
    let again = app.call(Method::DELETE, &app.p(&format!("/edge-services/{id}")), None).await;
    assert_eq!((again.status, code(&again)), (404, "edge_service_not_found"));
}

/// One registered service of the generated fleet below.
struct Row {
    name: String,
    endpoint: String,
    description: String,
    tags: Vec<String>,
}

fn fleet(size: usize) -> Vec<Row> {
    (0..size)
        .map(|k| Row {
            name: format!("gw-{k:04}-{}", ["Alpha", "beta", "Gamma"][k % 3]),
            endpoint: format!("http://10.{}.0.{}:7081", k % 7, k % 250),
            description: if k % 5 == 0 { "Line \"north\" 50%_done".into() } else { String::new() },
            tags: std::iter::once(format!("zone-{}", k % 4)).chain((k % 2 == 0).then(|| "even".to_owned())).collect(),
        })
        .collect()
}

/// Few matches are found through the search and tag indexes, many by walking the names in order;
/// both must give exactly what a plain scan gives, page after page, and never another project's.
#[tokio::test]
async fn filters_give_what_a_plain_scan_gives_for_few_and_many_matches() {
    let app = TestApp::spawn().await;
    let rows = fleet(1200);
    let body: Vec<Value> = rows
        .iter()
        .map(|r| json!({"name": r.name, "endpoint": r.endpoint, "description": r.description, "tags": r.tags}))
        .collect();
    assert_eq!(app.post(&app.p("/edge-services/import"), json!(body)).await.status, 201);
    // The same fleet in a second project must never show up in the first one's answers.
    let org = app.post("/api/v1/orgs", json!({"name": "Second plant"})).await;
    let org = org.body["id"].as_str().expect("org").to_owned();
    let other = app.post(&format!("/api/v1/orgs/{org}/projects"), json!({"name": "Line 2"})).await;
    let other_id = other.body["id"].as_str().expect("second project").to_owned();
    assert_eq!(app.post(&format!("/api/v1/projects/{other_id}/edge-services/import"), json!(body)).await.status, 201);

    let has = |text: &str, needle: &str| text.to_lowercase().contains(&needle.to_lowercase());
    let any_text = |r: &Row, n: &str| {
        has(&r.name, n)
            || has(&r.endpoint, n)
            || has(&r.description, n)
            || has(&serde_json::to_string(&r.tags).unwrap_or_default(), n)
    };
    type Case<'a> = (&'a [(&'a str, &'a str)], Box<dyn Fn(&Row) -> bool + 'a>);
    let cases: Vec<Case> = vec![
        (&[("q", "gw-")], Box::new(|r| any_text(r, "gw-"))),
        (&[("q", "ALPHA")], Box::new(|r| any_text(r, "alpha"))),
        (&[("q", "\"north\"")], Box::new(|r| any_text(r, "\"north\""))),
        (&[("q", "50%_")], Box::new(|r| any_text(r, "50%_"))),
        (&[("q", "line \"no")], Box::new(|r| any_text(r, "line \"no"))),
        (&[("q", "zz")], Box::new(|r| any_text(r, "zz"))),
        (&[("q", "a")], Box::new(|r| any_text(r, "a"))),
        (&[("name", "0042")], Box::new(|r| has(&r.name, "0042"))),
        (&[("name", "gamma")], Box::new(|r| has(&r.name, "gamma"))),
        (&[("name", "7081")], Box::new(|_| false)),
        (&[("endpoint", "10.3.0")], Box::new(|r| has(&r.endpoint, "10.3.0"))),
        (&[("endpoint", ":7081")], Box::new(|r| has(&r.endpoint, ":7081"))),
        (&[("tag", "even")], Box::new(|r| r.tags.contains(&"even".to_owned()))),
        (&[("tag", "zone-1")], Box::new(|r| r.tags.contains(&"zone-1".to_owned()))),
        (
            &[("tag", "zone-2"), ("tag", "even")],
            Box::new(|r| r.tags.contains(&"zone-2".to_owned()) && r.tags.contains(&"even".to_owned())),
        ),
        (&[("tag", "even"), ("q", "beta")], Box::new(|r| r.tags.contains(&"even".to_owned()) && any_text(r, "beta"))),
        (&[("q", "gw-"), ("name", "00")], Box::new(|r| has(&r.name, "00"))),
        (&[("tag", "nowhere")], Box::new(|_| false)),
    ];
    for (query, keep) in cases {
        let mut expected: Vec<&str> = rows.iter().filter(|r| keep(r)).map(|r| r.name.as_str()).collect();
        expected.sort_unstable();
        let mut url = reqwest::Url::parse("http://x/").expect("url");
        url.query_pairs_mut().extend_pairs(query.iter()).append_pair("limit", "200");
        let query = url.query().unwrap_or_default().to_owned();
        let mut found = Vec::new();
        loop {
            let answer = app.get(&app.p(&format!("/edge-services?{query}&offset={}", found.len()))).await;
            assert_eq!(answer.body["total"], expected.len(), "{query}: {}", answer.text);
            let items = answer.body["items"].as_array().cloned().unwrap_or_default();
            found.extend(items.iter().map(|i| i["name"].as_str().unwrap_or_default().to_owned()));
            if items.is_empty() || found.len() >= expected.len() {
                break;
            }
        }
        assert_eq!(found, expected, "{query}");
    }
}

/// The search index follows every change: renames, new descriptions and deletions.
#[tokio::test]
async fn search_follows_edits_and_deletions() {
    let app = TestApp::spawn().await;
    let created =
        app.post(&app.p("/edge-services"), json!({"name": "press-line", "endpoint": "http://10.0.0.9:7081"})).await;
    let id = created.body["id"].as_str().expect("id").to_owned();
    let total = |query: &'static str| {
        let app = &app;
        async move { app.get(&app.p(&format!("/edge-services?{query}"))).await.body["total"].clone() }
    };
    assert_eq!(total("q=press").await, 1);
    let patched = app
        .call(
            Method::PATCH,
            &app.p(&format!("/edge-services/{id}")),
            Some(json!({"name": "stamping-cell", "description": "Hall Ⅲ"})),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(total("q=press").await, 0);
    assert_eq!(total("name=stamping").await, 1);
    assert_eq!(total("q=hall").await, 1);
    assert_eq!(app.call(Method::DELETE, &app.p(&format!("/edge-services/{id}")), None).await.status, 204);
    assert_eq!(total("q=stamping").await, 0);
    assert_eq!(total("name=stamping").await, 0);
}
