//! Every limit of docs/LIMITS.md, one request past it each, with the answer a user gets.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, code, rule_doc};

/// (what, method, path under the project or absolute, body, status, code)
type Case = (&'static str, Method, String, Value, u16, &'static str);

#[tokio::test]
async fn each_limit_answers_its_documented_error() {
    // Small settings, so each case stays small; the defaults are the same code paths.
    let app = TestApp::spawn_with(|c| {
        c.max_body_bytes = 256 * 1024;
        c.max_document_bytes = 64 * 1024;
        c.max_placeholders = 20;
        c.max_targets = 2;
    })
    .await;
    for k in 0..3 {
        let edge = app
            .post(
                &app.p("/edge-services"),
                json!({"name": format!("gw-{k}"), "endpoint": format!("http://10.0.0.{}", k + 1)}),
            )
            .await;
        assert_eq!(edge.status, 201);
    }
    let template = app.template("r", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let p = |rest: &str| app.p(rest);
    let many_placeholders: Vec<String> = (0..21).map(|k| format!("${{p{k}}}")).collect();
    let cases: Vec<Case> = vec![
        (
            "JSON body",
            Method::POST,
            p("/templates"),
            json!({"name": "x", "kind": "rule", "content": "y".repeat(300 * 1024)}),
            413,
            "body_too_large",
        ),
        (
            "template document",
            Method::POST,
            p("/templates"),
            json!({"name": "x", "kind": "rule", "content": "y".repeat(100 * 1024)}),
            413,
            "document_too_large",
        ),
        (
            "placeholders",
            Method::POST,
            p("/templates"),
            json!({"name": "x", "kind": "rule", "content": {"id": "r1", "sql": "SELECT 1 FROM s", "actions": [{"log": {"p": many_placeholders}}]}}),
            422,
            "too_many_placeholders",
        ),
        (
            "template name",
            Method::POST,
            p("/templates"),
            json!({"name": "n".repeat(101), "kind": "rule", "content": rule_doc("s", "r", "SELECT 1 FROM s")}),
            422,
            "invalid_name",
        ),
        (
            "template description",
            Method::POST,
            p("/templates"),
            json!({"name": "d", "kind": "rule", "content": rule_doc("s", "r", "SELECT 1 FROM s"), "description": "d".repeat(2001)}),
            422,
            "invalid_description",
        ),
        (
            "edge name",
            Method::POST,
            p("/edge-services"),
            json!({"name": "n".repeat(201), "endpoint": "http://10.0.0.9"}),
            422,
            "invalid_edge_service",
        ),
        (
            "edge description",
            Method::POST,
            p("/edge-services"),
            json!({"name": "e", "endpoint": "http://10.0.0.9", "description": "d".repeat(2001)}),
            422,
            "invalid_edge_service",
        ),
        (
            "endpoint",
            Method::POST,
            p("/edge-services"),
            json!({"name": "e", "endpoint": format!("http://10.0.0.9/{}", "p".repeat(2048))}),
            422,
            "invalid_edge_service",
        ),
        (
            "tags per service",
            Method::POST,
            p("/edge-services"),
            json!({"name": "e", "endpoint": "http://10.0.0.9", "tags": (0..33).map(|k| format!("t{k}")).collect::<Vec<_>>()}),
            422,
            "invalid_edge_service",
        ),
        (
            "tag length",
            Method::POST,
            p("/edge-services"),
            json!({"name": "e", "endpoint": "http://10.0.0.9", "tags": ["t".repeat(65)]}),
            422,
            "invalid_edge_service",
        ),
        (
            "filter text",
            Method::GET,
            p(&format!("/edge-services?q={}", "q".repeat(201))),
            Value::Null,
            400,
            "bad_query",
        ),
        (
            "tags in a filter",
            Method::GET,
            p(&format!("/edge-services?{}", (0..33).map(|k| format!("tag=t{k}")).collect::<Vec<_>>().join("&"))),
            Value::Null,
            400,
            "bad_query",
        ),
        ("page size", Method::GET, p("/edge-services?limit=1001"), Value::Null, 400, "bad_query"),
        (
            "targets per delivery",
            Method::POST,
            p("/deliveries"),
            json!({"template_id": template, "targets": {"all": true}}),
            422,
            "too_many_targets",
        ),
        (
            "delivery concurrency",
            Method::POST,
            p("/deliveries"),
            json!({"template_id": template, "targets": {"all": true}, "options": {"concurrency": 2049}}),
            422,
            "invalid_options",
        ),
        (
            "target timeout",
            Method::POST,
            p("/deliveries"),
            json!({"template_id": template, "targets": {"all": true}, "options": {"timeout_secs": 3601}}),
            422,
            "invalid_options",
        ),
        (
            "retries",
            Method::POST,
            p("/deliveries"),
            json!({"template_id": template, "targets": {"all": true}, "options": {"retries": 11}}),
            422,
            "invalid_options",
        ),
        (
            "organization name",
            Method::POST,
            "/api/v1/orgs".into(),
            json!({"name": "o".repeat(101)}),
            422,
            "invalid_name",
        ),
        (
            "username",
            Method::POST,
            "/api/v1/users".into(),
            json!({"username": "u".repeat(65), "password": "a-strong-passphrase"}),
            422,
            "invalid_username",
        ),
        (
            "password length",
            Method::POST,
            "/api/v1/users".into(),
            json!({"username": "long-pw", "password": "p4ssw0rd-".repeat(120)}),
            422,
            "weak_password",
        ),
        (
            "API token name",
            Method::POST,
            "/api/v1/me/tokens".into(),
            json!({"name": "t".repeat(101)}),
            422,
            "invalid_token_name",
        ),
        (
            "sign-in username",
            Method::POST,
            "/api/v1/auth/login".into(),
            json!({"username": "u".repeat(65), "password": "x"}),
            400,
            "field_too_long",
        ),
        (
            "sign-in body",
            Method::POST,
            "/api/v1/auth/login".into(),
            json!({"username": "u", "password": "x".repeat(9 * 1024)}),
            413,
            "body_too_large",
        ),
    ];
    for (what, method, path, body, status, expected) in cases {
        let answer = app.call(method, &path, (!body.is_null()).then_some(body)).await;
        assert_eq!(
            (answer.status, code(&answer)),
            (status, expected),
            "{what}: {}",
            answer.text.chars().take(300).collect::<String>()
        );
    }
    // Import rows are limited too (100,000; the check runs before anything is stored).
    let rows: Vec<Value> =
        (0..100_001).map(|k| json!({"name": format!("r{k}"), "endpoint": "http://10.0.0.1"})).collect();
    let big = TestApp::spawn().await;
    let import = big.post(&big.p("/edge-services/import"), json!(rows)).await;
    assert_eq!((import.status, code(&import)), (422, "import_too_large"), "{}", import.text);
}

#[tokio::test]
async fn running_deliveries_per_project_and_plugin_size_are_limited() {
    let app = TestApp::spawn_with(|c| {
        c.max_running_deliveries = 1;
        c.max_plugin_bytes = 1024;
    })
    .await;
    let (_sim, body) = app.hanging_fleet(1, 60).await;
    let first = app.post(&app.p("/deliveries"), body.clone()).await;
    assert_eq!(first.status, 202);
    let second = app.post(&app.p("/deliveries"), body).await;
    assert_eq!((second.status, code(&second)), (429, "too_many_running_deliveries"), "{}", second.text);
    assert!(second.headers.get("retry-after").is_some());
    app.post(&app.p(&format!("/deliveries/{}/cancel", first.body["id"].as_str().expect("id"))), json!({})).await;
    let upload = app.upload(Some("big"), Some(vec![0u8; 2048])).await;
    assert_eq!((upload.status, code(&upload)), (413, "plugin_too_large"));
    let fields = (0..9).fold(reqwest::multipart::Form::new(), |form, k| form.text(format!("f{k}"), "x"));
    let request = app.http.post(format!("{}{}", app.base, app.p("/plugins"))).bearer_auth(&app.token).multipart(fields);
    let answer = request.send().await.expect("upload");
    assert_eq!(answer.status(), 400);
    let field = reqwest::multipart::Form::new().text("description", "d".repeat(5000));
    let request = app.http.post(format!("{}{}", app.base, app.p("/plugins"))).bearer_auth(&app.token).multipart(field);
    let answer: Value = request.send().await.expect("upload").json().await.expect("json");
    assert_eq!(answer["error"]["code"], "invalid_plugin");
}

#[tokio::test]
async fn live_event_streams_are_limited() {
    let app = TestApp::spawn_with(|c| {
        c.max_event_streams = 1;
        c.edge_request_timeout = std::time::Duration::from_secs(60);
    })
    .await;
    let (_sim, body) = app.hanging_fleet(1, 60).await;
    let started = app.post(&app.p("/deliveries"), body).await;
    let id = started.body["id"].as_str().expect("id").to_owned();
    let path = app.p(&format!("/deliveries/{id}/events"));
    // The delivery waits on a gateway that never answers, so the first stream stays open.
    let first = app.http.get(format!("{}{path}", app.base)).bearer_auth(&app.token).send().await.expect("first");
    assert_eq!(first.status(), 200);
    let second = app.get(&path).await;
    assert_eq!((second.status, code(&second)), (503, "too_many_event_streams"));
    drop(first);
    app.post(&app.p(&format!("/deliveries/{id}/cancel")), json!({})).await;
}
