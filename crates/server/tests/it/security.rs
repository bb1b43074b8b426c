//! Each finding of the hostile-user review, reproduced through the API (docs/SECURITY.md).

use std::net::SocketAddr;
use std::time::Duration;

use neuronex_sim::{AuthMode, SimConfig};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{PASSWORD, TestApp, code, rule_doc};

/// A simulated fleet that accepts JWTs signed by the keys in `keys` (NeuronEX's `etc/` folder).
async fn jwt_fleet(count: u32, keys: &std::path::Path) -> neuronex_sim::RunningSim {
    let config = SimConfig { count, auth: AuthMode::Jwt, jwt_key_dir: Some(keys.to_owned()), ..SimConfig::default() };
    neuronex_sim::start(config, "127.0.0.1:0".parse::<SocketAddr>().expect("addr"), false).await.expect("sim")
}

/// Installs the project's current public key on the fleet, as an operator does.
async fn install_key(app: &TestApp, project_path: &str, keys: &std::path::Path) -> String {
    let key = app.get(&format!("{project_path}/jwt/public-key")).await;
    assert_eq!(key.status, 200, "{}", key.text);
    let file_name = key.body["file_name"].as_str().expect("file name").to_owned();
    std::fs::write(keys.join(&file_name), key.body["pem"].as_str().expect("pem")).expect("install key");
    file_name
}

async fn jwt_edge(app: &TestApp, project_path: &str, name: &str, endpoint: &str) -> String {
    let body = json!({"name": name, "endpoint": endpoint, "auth": {"kind": "jwt"}});
    let created = app.post(&format!("{project_path}/edge-services"), body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.body["id"].as_str().expect("id").to_owned()
}

async fn deliver_rule(app: &TestApp, project_path: &str, edge: &str) -> (String, Value) {
    static TEMPLATES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!("r{}", TEMPLATES.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let template = app
        .post(
            &format!("{project_path}/templates"),
            json!({"name": name, "kind": "rule", "content": rule_doc("s", "r1", "SELECT * FROM s")}),
        )
        .await;
    let template = template.body["id"].as_str().expect("template").to_owned();
    let started = app
        .post(
            &format!("{project_path}/deliveries"),
            json!({"template_id": template, "targets": {"ids": [edge]}, "options": {"retries": 0}}),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.text);
    let id = started.body["id"].as_str().expect("id").to_owned();
    let events = app.events_at(project_path, &id).await;
    let targets = app.get(&format!("{project_path}/deliveries/{id}/targets")).await;
    (
        events.last().map(|e| e.1["state"].as_str().unwrap_or_default().to_owned()).unwrap_or_default(),
        targets.body["items"][0].clone(),
    )
}

/// Finding 1: one project's key opens only the edges that trust that project.
#[tokio::test]
async fn jwt_edges_trust_one_project_and_its_rotated_keys() {
    let app = TestApp::spawn().await;
    let keys = tempfile::tempdir().expect("keys");
    let fleet = jwt_fleet(1, keys.path()).await;
    let project_a = app.p("");
    let file_a = install_key(&app, &project_a, keys.path()).await;
    assert_eq!(file_a, format!("edgefleet-{}.pub", app.project));
    // Another organization's project registers the same gateway with `auth: jwt`.
    let org_b = app.post("/api/v1/orgs", json!({"name": "Other plant"})).await;
    let project_b = app
        .post(&format!("/api/v1/orgs/{}/projects", org_b.body["id"].as_str().expect("org")), json!({"name": "B"}))
        .await;
    let project_b = format!("/api/v1/projects/{}", project_b.body["id"].as_str().expect("project"));
    let edge_a = jwt_edge(&app, &project_a, "gw", fleet.endpoint(0)).await;
    let edge_b = jwt_edge(&app, &project_b, "gw", fleet.endpoint(0)).await;
    let (state, _) = deliver_rule(&app, &project_a, &edge_a).await;
    assert_eq!(state, "succeeded");
    let (state, target) = deliver_rule(&app, &project_b, &edge_b).await;
    assert_eq!(state, "failed");
    let reason = target["reason"].as_str().expect("reason");
    assert!(reason.contains("no public key for issuer edgefleet-"), "{reason}");
    assert!(!reason.contains(&file_a), "project B signs with its own key, not A's: {reason}");

    // Rotation: the new key is announced at once and signs only after the overlap (24 h here).
    let rotated = app.post(&format!("{project_a}/jwt/rotate"), json!({})).await;
    assert_eq!(rotated.status, 201, "{}", rotated.text);
    assert_eq!(rotated.body["signing"], false);
    let keys_now = app.get(&format!("{project_a}/jwt/public-key")).await;
    assert_eq!(keys_now.body["file_name"], rotated.body["file_name"]);
    assert_eq!(keys_now.body["keys"].as_array().expect("keys").len(), 2);
    assert_eq!(keys_now.body["keys"][1]["signing"], true, "the old key still signs");
    let (state, _) = deliver_rule(&app, &project_a, &edge_a).await;
    assert_eq!(state, "succeeded", "edges that only have the old key keep working during the overlap");
    let audit = app.get("/api/v1/audit?action=jwt_key.rotate").await;
    assert_eq!(audit.body["total"], 1);
    // The first release's system key is still shown, marked as signing nothing.
    let legacy = app.get("/api/v1/jwt/public-key").await;
    assert_eq!(legacy.status, 200);
    assert!(legacy.body["deprecated"].as_str().is_some());
}

#[tokio::test]
async fn a_rotated_key_signs_once_the_overlap_is_over() {
    let app = TestApp::spawn_with(|c| c.jwt_overlap = Duration::ZERO).await;
    let keys = tempfile::tempdir().expect("keys");
    let fleet = jwt_fleet(1, keys.path()).await;
    let project = app.p("");
    let first = install_key(&app, &project, keys.path()).await;
    let edge = jwt_edge(&app, &project, "gw", fleet.endpoint(0)).await;
    let rotated = app.post(&format!("{project}/jwt/rotate"), json!({})).await;
    assert_eq!(rotated.body["signing"], true);
    // The edge has only the first key: the new one is refused until it is installed.
    let (state, _) = deliver_rule(&app, &project, &edge).await;
    assert_eq!(state, "failed");
    let second = install_key(&app, &project, keys.path()).await;
    assert_ne!(first, second);
    std::fs::remove_file(keys.path().join(&first)).expect("old key removed");
    let (state, _) = deliver_rule(&app, &project, &edge).await;
    assert_eq!(state, "succeeded");
}

/// Finding 2: the network policy at registration, for single edges and imports.
#[tokio::test]
async fn endpoints_outside_the_edge_networks_are_refused_at_registration() {
    let app = TestApp::spawn_with(|c| c.edge_networks = Vec::new()).await; // the default policy
    for endpoint in [
        "http://127.0.0.1:8085",
        "http://127.9.9.9",
        "http://[::1]:8085",
        "http://169.254.169.254/latest",
        "http://[fe80::1]:80",
        "http://0.0.0.0:8085",
        "http://[::ffff:127.0.0.1]:8085",
        "http://localhost:8085",
    ] {
        let answer = app.post(&app.p("/edge-services"), json!({"name": "x", "endpoint": endpoint})).await;
        assert_eq!((answer.status, code(&answer)), (422, "edge_network_denied"), "{endpoint}: {}", answer.text);
    }
    for endpoint in ["http://2130706433:8085", "http://0x7f.1", "http://127.1", "http://h:80:90", "http://[::1"] {
        let answer = app.post(&app.p("/edge-services"), json!({"name": "x", "endpoint": endpoint})).await;
        assert_eq!((answer.status, code(&answer)), (422, "invalid_edge_service"), "{endpoint}: {}", answer.text);
    }
    let ok = app.post(&app.p("/edge-services"), json!({"name": "plc-gw", "endpoint": "http://10.1.2.3:8085"})).await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    let moved = app
        .call(
            Method::PATCH,
            &app.p(&format!("/edge-services/{}", ok.body["id"].as_str().expect("id"))),
            Some(json!({"endpoint": "http://127.0.0.1:22"})),
        )
        .await;
    assert_eq!(code(&moved), "edge_network_denied");
    let rows =
        json!([{"name": "a", "endpoint": "http://10.0.0.7"}, {"name": "b", "endpoint": "http://169.254.169.254"}]);
    let import = app.post(&app.p("/edge-services/import"), rows).await;
    assert_eq!((import.status, code(&import)), (422, "invalid_import"), "{}", import.text);
    assert_eq!(import.body["error"]["details"]["problems"][0]["row"], 2);
    assert_eq!(app.get(&app.p("/edge-services")).await.body["total"], 1, "nothing of the import was stored");
}

/// Finding 2: what answered is not quoted unless it is NeuronEX.
#[tokio::test]
async fn a_probe_reason_never_quotes_a_foreign_page() {
    let app = TestApp::spawn().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let page = axum::Router::new()
        .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "<h1>router admin: password is hunter2</h1>") });
    tokio::spawn(async move { axum::serve(listener, page).await });
    let created =
        app.post(&app.p("/edge-services"), json!({"name": "router", "endpoint": format!("http://{address}")})).await;
    let id = created.body["id"].as_str().expect("id");
    let probed = app.post(&app.p(&format!("/edge-services/{id}/probe")), json!({})).await;
    assert_eq!(probed.body["status_reason"], "read version: HTTP 404, not a NeuronEX answer");
}

/// Finding 3: a stored password does not follow an endpoint change.
#[tokio::test]
async fn moving_an_endpoint_needs_the_password_again() {
    let app = TestApp::spawn().await;
    let body = json!({"name": "gw", "endpoint": "http://10.0.0.5:8085", "auth": {"kind": "basic", "username": "admin", "password": "0000"}});
    let created = app.post(&app.p("/edge-services"), body).await;
    let path = app.p(&format!("/edge-services/{}", created.body["id"].as_str().expect("id")));
    let moved = app.call(Method::PATCH, &path, Some(json!({"endpoint": "http://10.0.0.6:8085"}))).await;
    assert_eq!((moved.status, code(&moved)), (422, "secret_required"), "{}", moved.text);
    assert_eq!(app.get(&path).await.body["endpoint"], "http://10.0.0.5:8085", "nothing changed");
    let renamed = app.call(Method::PATCH, &path, Some(json!({"name": "gw-1"}))).await;
    assert_eq!(renamed.status, 200, "other edits keep the password");
    let with_password =
        json!({"endpoint": "http://10.0.0.6:8085", "auth": {"kind": "basic", "username": "admin", "password": "0000"}});
    assert_eq!(app.call(Method::PATCH, &path, Some(with_password)).await.status, 200);
}

/// Findings 5 and 9: parallel guesses count one by one, a known device is never locked out.
#[tokio::test]
async fn parallel_guesses_cannot_pass_the_limit_and_a_known_device_still_signs_in() {
    let app = TestApp::spawn().await;
    let (_, _) = app.user("operator", PASSWORD, None).await;
    let device = app.login("operator", PASSWORD, &[]).await.body["device_token"].as_str().expect("device").to_owned();
    let attempts = (0..60).map(|k| {
        let password = if k == 37 { PASSWORD } else { "wrong-password-1" };
        app.login("operator", password, &[])
    });
    let answers = futures::future::join_all(attempts).await;
    let checked = answers.iter().filter(|a| a.status == 200 || a.status == 401).count();
    let refused = answers.iter().filter(|a| a.status == 429).count();
    assert!(checked <= 5, "only the free attempts reach the password check, got {checked}");
    assert_eq!(checked + refused, 60);
    let throttled = answers.iter().find(|a| a.status == 429).expect("a refusal");
    assert!(throttled.headers.get("retry-after").is_some());
    // The person with a device token from an earlier sign-in is not locked out by the guessing.
    let known = app.login("operator", PASSWORD, &[("x-edgefleet-device", &device)]).await;
    assert_eq!(known.status, 200, "{}", known.text);
    let forged = app.login("operator", PASSWORD, &[("x-edgefleet-device", "0123456789abcdef01234567.00")]).await;
    assert_eq!(forged.status, 429, "a made-up device token counts as no device");
}

/// Finding 6: sizes are checked before anything is looked up or audited.
#[tokio::test]
async fn oversized_sign_ins_are_refused_without_touching_the_audit() {
    let app = TestApp::spawn().await;
    let before = app.get("/api/v1/audit?action=auth.login").await.body["total"].clone();
    let long_name = app.login(&"x".repeat(65), "whatever-password", &[]).await;
    assert_eq!((long_name.status, code(&long_name)), (400, "field_too_long"));
    let huge = app.login(&"x".repeat(8 * 1024 * 1024), "p", &[]).await;
    assert_eq!((huge.status, code(&huge)), (413, "body_too_large"));
    assert_eq!(app.get("/api/v1/audit?action=auth.login").await.body["total"], before);
    // A form on another site cannot sign in (it cannot send JSON without asking first).
    let form = app
        .http
        .post(format!("{}/api/v1/auth/login", app.base))
        .header("content-type", "text/plain")
        .header("origin", "https://evil.example")
        .body(json!({"username": "admin", "password": PASSWORD}).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(form.status(), 415);
}

/// Finding 7: hostile documents are refused quickly, by size or count, and do not hold the server.
#[tokio::test]
async fn hostile_templates_are_refused_by_size_and_placeholder_count() {
    let app = TestApp::spawn().await;
    let nested = format!(
        "{{\"id\": \"r1\", \"sql\": \"SELECT 1 FROM s\", \"actions\": [{{\"log\": {{\"x\": \"{}\"}}}}]}}",
        "${".repeat(750_000)
    );
    let answer = app.post(&app.p("/templates"), json!({"name": "nested", "kind": "rule", "content": nested})).await;
    assert_ne!(answer.status, 500, "{}", answer.text);
    let big = "x".repeat(5 * 1024 * 1024);
    let answer = app.post(&app.p("/templates"), json!({"name": "big", "kind": "rule", "content": big})).await;
    assert_eq!((answer.status, code(&answer)), (413, "document_too_large"));
    let many: Vec<String> = (0..10_001).map(|k| format!("${{p{k}}}")).collect();
    let content = json!({"id": "r1", "sql": "SELECT 1 FROM s", "actions": [{"log": {"many": many}}]});
    let answer = app.post(&app.p("/templates"), json!({"name": "many", "kind": "rule", "content": content})).await;
    assert_eq!((answer.status, code(&answer)), (422, "too_many_placeholders"), "{}", answer.text);
    assert_eq!(app.get("/healthz").await.status, 200);
}

/// Finding 8: the OpenAPI document is built without leaking memory per request.
#[test]
fn the_route_table_is_static() {
    let first = server::routes_catalog();
    let second = server::routes_catalog();
    for (a, b) in first.iter().zip(&second) {
        assert!(std::ptr::eq(a.path, b.path), "{} is made anew per call", a.path);
    }
}

/// Finding 9: the current password, and the end of every token with the old one.
#[tokio::test]
async fn a_password_change_needs_the_current_one_and_ends_every_token() {
    let app = TestApp::spawn().await;
    let (_, session) = app.user("maria", PASSWORD, None).await;
    let api_token = app.call_as(&session, Method::POST, "/api/v1/me/tokens", Some(json!({"name": "ci"}))).await;
    let api_token = api_token.body["token"].as_str().expect("token").to_owned();
    let change = |body: Value| app.call_as(&session, Method::PATCH, "/api/v1/me", Some(body));
    let missing = change(json!({"password": "a-new-passphrase"})).await;
    assert_eq!((missing.status, code(&missing)), (422, "current_password_required"));
    let wrong = change(json!({"password": "a-new-passphrase", "current_password": "not-it-at-all"})).await;
    assert_eq!((wrong.status, code(&wrong)), (403, "wrong_current_password"));
    let right = change(json!({"password": "a-new-passphrase", "current_password": PASSWORD})).await;
    assert_eq!(right.status, 200, "{}", right.text);
    for token in [&session, &api_token] {
        assert_eq!(app.call_as(token, Method::GET, "/api/v1/me", None).await.status, 401);
    }
    assert_eq!(app.login("maria", "a-new-passphrase", &[]).await.status, 200);
}

/// Finding 9: admins see the people of their own organizations only.
#[tokio::test]
async fn admins_list_only_the_users_of_their_organizations() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.user("line-admin", PASSWORD, Some("admin")).await;
    let other_org = app.post("/api/v1/orgs", json!({"name": "Elsewhere"})).await;
    let (stranger, _) = app.user("stranger", PASSWORD, None).await;
    let member = app
        .call(
            Method::PUT,
            &format!("/api/v1/orgs/{}/members/{stranger}", other_org.body["id"].as_str().expect("org")),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(member.status, 200);
    let listed = app.call_as(&admin, Method::GET, "/api/v1/users", None).await;
    let names: Vec<&str> =
        listed.body["items"].as_array().expect("items").iter().filter_map(|u| u["username"].as_str()).collect();
    assert_eq!(names, ["line-admin"], "{}", listed.text);
    let everyone = app.get("/api/v1/users").await;
    assert_eq!(everyone.body["total"], 3, "the system admin sees all");
}

/// Finding 9: hostile filters and names get a clear 4xx, never a 500.
#[tokio::test]
async fn hostile_filters_and_names_are_refused_with_a_code() {
    let app = TestApp::spawn().await;
    let tags: String = (0..5000).map(|k| format!("&tag=t{k}")).collect();
    for (query, expected) in [("q=a%00b".to_owned(), 400), (format!("limit=5{tags}"), 400)] {
        let answer = app.get(&app.p(&format!("/edge-services?{query}"))).await;
        assert_eq!((answer.status, code(&answer)), (expected, "bad_query"), "{query}");
    }
    for name in ["gw\u{202E}1-fdp", "gw\u{200B}1", "a\u{0}b"] {
        let edge = app.post(&app.p("/edge-services"), json!({"name": name, "endpoint": "http://10.0.0.1"})).await;
        assert_eq!(edge.status, 422, "{name:?}");
        let template = app
            .post(
                &app.p("/templates"),
                json!({"name": name, "kind": "rule", "content": rule_doc("s", "r", "SELECT 1 FROM s")}),
            )
            .await;
        assert_eq!(template.status, 422, "{name:?}");
        let org = app.post("/api/v1/orgs", json!({"name": name})).await;
        assert_eq!(org.status, 422, "{name:?}");
    }
}

/// Finding 9: `{}` is a typo, not the whole fleet; `{"all": true}` says it.
#[tokio::test]
async fn an_empty_filter_selects_nothing_and_all_must_be_said() {
    let app = TestApp::spawn().await;
    app.post(&app.p("/edge-services"), json!({"name": "gw", "endpoint": "http://10.0.0.1"})).await;
    let template = app.template("r", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let empty = app
        .post(&app.p("/deliveries"), json!({"template_id": template, "targets": {"filter": {}}, "dry_run": true}))
        .await;
    assert_eq!((empty.status, code(&empty)), (422, "empty_filter"));
    let not_true = app.post(&app.p("/deliveries"), json!({"template_id": template, "targets": {"all": false}})).await;
    assert_eq!(code(&not_true), "invalid_targets");
    let all = app
        .post(&app.p("/deliveries"), json!({"template_id": template, "targets": {"all": true}, "dry_run": true}))
        .await;
    assert_eq!(all.status, 202, "{}", all.text);
}

/// Finding 9: the session cookie is `Secure` when people use https.
#[tokio::test]
async fn cookies_are_secure_behind_https() {
    let app = TestApp::spawn_with(|c| c.public_url = Some("https://edgefleet.plant.example".into())).await;
    let login = app.login("admin", PASSWORD, &[]).await;
    let cookies: Vec<&str> = login.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).collect();
    assert_eq!(cookies.len(), 2);
    assert!(cookies.iter().all(|c| c.contains("; Secure") && c.contains("HttpOnly")), "{cookies:?}");
    let plain = TestApp::spawn().await.login("admin", PASSWORD, &[]).await;
    assert!(plain.headers.get_all("set-cookie").iter().all(|v| !v.to_str().unwrap_or_default().contains("Secure")));
}

/// Finding 9: the database file is the owner's only.
#[cfg(unix)]
#[tokio::test]
async fn the_sqlite_database_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn().await;
    let path = app.data.path().join("edgefleet.db");
    if path.exists() {
        assert_eq!(std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o600);
    }
}

/// Finding 9: a weak first admin password stops the start.
#[tokio::test]
async fn a_weak_first_admin_password_is_refused() {
    let data = tempfile::tempdir().expect("temp dir");
    let mut config = server::Config::new(data.path().to_owned());
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.admin_password = Some("admin".into());
    let Err(err) = server::App::build(config).await else { panic!("a weak password must be refused") };
    assert!(err.to_string().contains("too weak"), "{err}");
}

/// Finding 9: an event stream ends when its viewer is disabled.
#[tokio::test]
async fn an_event_stream_ends_when_its_viewer_is_disabled() {
    // The gateway never answers and the delivery waits long for it: only disabling can end the stream.
    let app = TestApp::spawn_with(|c| c.edge_request_timeout = Duration::from_secs(120)).await;
    let (_sim, body) = app.hanging_fleet(1, 120).await;
    let started = app.post(&app.p("/deliveries"), body).await;
    let id = started.body["id"].as_str().expect("id").to_owned();
    let (viewer_id, viewer) = app.user("watcher", PASSWORD, Some("viewer")).await;
    let stream = app
        .http
        .get(format!("{}{}", app.base, app.p(&format!("/deliveries/{id}/events"))))
        .bearer_auth(&viewer)
        .send()
        .await
        .expect("events");
    assert_eq!(stream.status(), 200);
    let disabled =
        app.call(Method::PATCH, &format!("/api/v1/users/{viewer_id}"), Some(json!({"disabled": true}))).await;
    assert_eq!(disabled.status, 200);
    let body =
        tokio::time::timeout(Duration::from_secs(60), stream.text()).await.expect("the stream ends").expect("body");
    assert!(!body.contains("event: final"), "ended before the delivery did");
    app.post(&app.p(&format!("/deliveries/{id}/cancel")), json!({})).await;
}

/// Finding 10: secret parameters reach the edge and nobody else.
#[tokio::test]
async fn secret_parameters_reach_the_edge_and_are_masked_everywhere_else() {
    let app = TestApp::spawn().await;
    let sim = crate::support::sim(1, &["3.6.0"]).await;
    let ids = app.register(&sim, 1).await;
    let rule = json!({"id": "r1", "sql": "SELECT * FROM s", "actions": [{"mqtt": {"server": "tcp://broker:1883", "topic": "t", "password": "${secret:mqtt_pw}"}}]});
    let content = json!({"streams": {"s": "CREATE STREAM s () WITH (TYPE=\"neuron\", FORMAT=\"json\")"}, "rules": {"r1": rule.to_string()}});
    let created = app.post(&app.p("/templates"), json!({"name": "alarm", "kind": "rule", "content": content})).await;
    assert_eq!(created.body["secret_parameters"], json!(["mqtt_pw"]), "{}", created.text);
    let template = created.body["id"].as_str().expect("id").to_owned();
    let secret = "plc-Secret-42";
    let preview = app
        .post(
            &app.p(&format!("/templates/{template}/preview")),
            json!({"edge_id": ids[0], "params": {"defaults": {"mqtt_pw": secret}}}),
        )
        .await;
    assert_eq!(preview.status, 200, "{}", preview.text);
    assert!(!preview.text.contains(secret) && preview.text.contains("******"), "{}", preview.text);
    let (delivery, _) = app
        .deliver(json!({"template_id": template, "targets": {"ids": ids}, "params": {"defaults": {"mqtt_pw": secret}}}))
        .await;
    assert_eq!(delivery["state"], "succeeded", "{delivery}");
    assert_eq!(delivery["params"]["defaults"]["mqtt_pw"], "******");
    let on_edge = crate::support::sim_state(&sim, 0).await.to_string();
    assert!(on_edge.contains(secret), "the edge got the real value");
    for path in [
        app.p("/deliveries"),
        app.p(&format!("/deliveries/{}", delivery["id"].as_str().expect("id"))),
        "/api/v1/audit?limit=1000".to_owned(),
    ] {
        let answer = app.get(&path).await;
        assert!(!answer.text.contains(secret), "{path} shows the secret");
    }
    // At rest it is sealed: the database files do not hold it.
    for file in crate::support::files_under(app.data.path()) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{} holds the secret", file.display());
    }
}

/// Finding 10: a template's own credentials are masked for viewers (admins edit them).
#[tokio::test]
async fn credentials_written_into_a_template_are_masked_for_viewers() {
    let app = TestApp::spawn().await;
    let rule = json!({"id": "r1", "sql": "SELECT * FROM s", "actions": [{"mqtt": {"server": "tcp://b:1883", "topic": "t", "password": "literal-Secret-7"}}]});
    let content = json!({"streams": {"s": "CREATE STREAM s () WITH (TYPE=\"neuron\", FORMAT=\"json\")"}, "rules": {"r1": rule.to_string()}});
    let template = app.template("literal", "rule", content).await;
    let (_, viewer) = app.user("viewer-1", PASSWORD, Some("viewer")).await;
    for path in [
        format!("/templates/{template}"),
        format!("/templates/{template}/versions/1"),
        format!("/templates/{template}/export"),
    ] {
        let shown = app.call_as(&viewer, Method::GET, &app.p(&path), None).await;
        assert_eq!(shown.status, 200, "{path}");
        assert!(!shown.text.contains("literal-Secret-7") && shown.text.contains("******"), "{path}: {}", shown.text);
    }
    assert!(
        app.get(&app.p(&format!("/templates/{template}"))).await.text.contains("literal-Secret-7"),
        "admins see it"
    );
}

/// Finding 9: an address is slowed only by wrong passwords, never by people signing in right.
#[tokio::test]
async fn an_address_is_slowed_by_wrong_passwords_only() {
    let app = TestApp::spawn().await;
    let known = app.login("admin", PASSWORD, &[]).await.body["device_token"].as_str().expect("device").to_owned();
    for k in 0..30 {
        let (_, _) = app.user(&format!("worker-{k}"), PASSWORD, None).await;
    }
    // 30 right sign-ins (plus the 30 above) from this one address: nobody waits.
    for k in 0..30 {
        assert_eq!(app.login(&format!("worker-{k}"), PASSWORD, &[]).await.status, 200);
    }
    // 100 wrong passwords, each for another name, are free; the next attempt from here waits
    // (30 s after the last wrong one, doubling), whoever it is for.
    for k in 0..100 {
        assert_eq!(app.login(&format!("nobody-{k}"), "wrong-password-1", &[]).await.status, 401);
    }
    let next = app.login("worker-1", PASSWORD, &[]).await;
    assert_eq!((next.status, code(&next)), (429, "too_many_attempts"), "{}", next.text);
    // A known device is not held back by its address.
    let device = app.login("admin", PASSWORD, &[("x-edgefleet-device", &known)]).await;
    assert_eq!(device.status, 200, "{}", device.text);
}

/// Finding 2: probes of fresh imports share the server's probe slots with every other probe, so
/// imports never fire all their probes at once.
#[tokio::test]
async fn probes_of_fresh_imports_are_paced_together() {
    let app = TestApp::spawn().await;
    let sim = crate::support::sim(300, &["3.6.0"]).await;
    // Each answer takes a while, so probes in flight pile up if nothing paces them.
    sim.sim.set_faults(None, Some(neuronex_sim::Faults { latency_ms: 300, ..neuronex_sim::Faults::default() }));
    let rows = |from: usize| -> Value {
        json!(
            sim.manifest[from..from + 150]
                .iter()
                .map(|e| json!({"name": e.name, "endpoint": e.endpoint}))
                .collect::<Vec<_>>()
        )
    };
    let import = app.p("/edge-services/import");
    let (first, second) = tokio::join!(app.post(&import, rows(0)), app.post(&import, rows(150)));
    assert_eq!((first.status, second.status), (201, 201));
    // Wait until every service has had its first probe.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while app.get(&app.p("/edge-services?status=unknown&limit=1")).await.body["total"] != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the probes did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let peak = sim.sim.peak_in_flight();
    assert!(peak <= 64, "{peak} probes were in flight at once; the limit is 64");
    assert!(peak > 1, "the probes ran concurrently");
}
