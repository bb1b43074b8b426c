use serde_json::json;

use crate::support::{TestApp, code, rule_doc, sim};

#[tokio::test]
async fn changes_deliveries_and_logins_are_recorded_with_names() {
    let app = TestApp::spawn().await;
    let sim = sim(2, &["3.6.0", "2.9.0"]).await;
    let ids = app.register(&sim, 2).await;
    let template = app.template("line rules", "rule", rule_doc("demo", "r1", "SELECT * FROM demo")).await;
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
    let refused = app.login("admin", "wrong", &[]).await;
    assert_eq!(refused.status, 401);

    let start = app.get("/api/v1/audit?action=delivery.start").await;
    assert_eq!(start.body["total"], 1);
    let event = &start.body["items"][0];
    assert_eq!(
        (event["org_name"].as_str(), event["project_name"].as_str(), event["actor_name"].as_str()),
        (Some("Plant"), Some("Line 1"), Some("admin"))
    );
    assert_eq!(event["resource_id"], delivery["id"]);
    assert_eq!(event["details"]["content_sha256"], delivery["content_sha256"]);
    let finish = app.get("/api/v1/audit?action=delivery.finish").await;
    assert_eq!(finish.body["items"][0]["outcome"], "partial");
    assert_eq!(finish.body["items"][0]["details"]["counts"]["failed"], 1);
    let logins = app.get("/api/v1/audit?action=auth.login").await;
    let outcomes: Vec<&str> =
        logins.body["items"].as_array().expect("items").iter().filter_map(|e| e["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["failure", "success"]);
    for (query, total) in [
        ("action=edge_service.", 2),
        ("resource=template", 1),
        ("project=Line 1", 6),
        ("actor=adm", 9),
        ("since=0&until=1", 0),
    ] {
        let answer = app.get(&format!("/api/v1/audit?{query}")).await;
        assert_eq!(answer.body["total"], total, "{query}: {}", answer.text);
    }
    let bad = app.get("/api/v1/audit?since=5&until=1").await;
    assert_eq!((bad.status, code(&bad)), (400, "bad_query"));
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused() {
    let app = TestApp::spawn().await;
    let response = app.http.get(format!("{}/api/v1/audit", app.base)).send().await.expect("request");
    assert_eq!(response.status(), 401);
    let response =
        app.http.get(format!("{}/api/v1/audit", app.base)).bearer_auth("efs_forged").send().await.expect("request");
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let app = TestApp::spawn().await;
    let response = app.http.get(format!("{}/api/v1/openapi.json", app.base)).send().await.expect("get");
    assert_eq!(response.status(), 200);
    let document: serde_json::Value = response.json().await.expect("json");
    assert_eq!(document["openapi"], "3.1.0");
    for route in server::routes_catalog() {
        let operation = &document["paths"][route.path][route.method.to_lowercase()];
        assert!(operation.is_object(), "{} {} is missing", route.method, route.path);
    }
    assert_eq!(document["paths"]["/api/v1/projects/{project_id}/deliveries"]["post"]["x-access"], "ProjectAdmin");
    // Every schema a route names is in the document.
    let text = document.to_string();
    for name in text.split("#/components/schemas/").skip(1).filter_map(|rest| rest.split('"').next()) {
        assert!(document["components"]["schemas"][name].is_object(), "schema {name} is missing");
    }
    insta::assert_json_snapshot!("openapi", document);
}

/// Every change is recorded with the resource it made, once: the store writes the record in the
/// transaction of the change (organization, project, user, token, logout and cancel once wrote it
/// separately, so a failure between the two lost the record).
#[tokio::test]
async fn each_change_has_exactly_one_record_naming_what_it_made() {
    let app = TestApp::spawn().await;
    let org = app.post("/api/v1/orgs", json!({"name": "Audited"})).await;
    let org_id = org.body["id"].as_str().expect("org").to_owned();
    let project = app.post(&format!("/api/v1/orgs/{org_id}/projects"), json!({"name": "P"})).await;
    let user = app.post("/api/v1/users", json!({"username": "audited", "password": crate::support::PASSWORD})).await;
    let token = app.post("/api/v1/me/tokens", json!({"name": "ci"})).await;
    let token_id = token.body["id"].as_str().expect("token").to_owned();
    let revoked = app.call(reqwest::Method::DELETE, &format!("/api/v1/me/tokens/{token_id}"), None).await;
    assert_eq!(revoked.status, 204);
    app.post(&app.p("/edge-services"), json!({"name": "gw", "endpoint": "http://10.0.0.1"})).await;
    let template = app.template("r", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let delivery = app
        .post(
            &app.p("/deliveries"),
            json!({"template_id": template, "targets": {"all": true}, "options": {"timeout_secs": 1, "retries": 0}}),
        )
        .await;
    let delivery_id = delivery.body["id"].as_str().expect("delivery").to_owned();
    let canceled = app.post(&app.p(&format!("/deliveries/{delivery_id}/cancel")), json!({})).await;
    assert!(canceled.status == 200 || code(&canceled) == "delivery_finished", "{}", canceled.text);
    let cases = [
        ("org.create", org_id.clone()),
        ("project.create", project.body["id"].as_str().expect("project").to_owned()),
        ("user.create", user.body["id"].as_str().expect("user").to_owned()),
        ("token.revoke", token_id),
    ];
    for (action, resource) in cases {
        let found = app.get(&format!("/api/v1/audit?action={action}&limit=100")).await;
        let matching: Vec<&serde_json::Value> = found.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|e| e["resource_id"] == resource.as_str())
            .collect();
        assert_eq!(matching.len(), 1, "{action}: {}", found.text);
    }
    let project_record = app.get("/api/v1/audit?action=project.create&limit=100").await;
    assert!(project_record.text.contains("\"org_name\":\"Audited\""), "{}", project_record.text);
    let created_tokens = app.get("/api/v1/audit?action=token.create").await;
    assert_eq!(created_tokens.body["total"], 1);
    if canceled.status == 200 {
        let cancel = app.get("/api/v1/audit?action=delivery.cancel").await;
        assert_eq!(cancel.body["items"][0]["resource_id"], delivery_id.as_str());
        assert!(cancel.body["items"][0]["details"]["canceled_targets"].is_u64());
    }
    let first_admin = app.get("/api/v1/audit?action=user.create&actor=edgefleet").await;
    assert_eq!(first_admin.body["total"], 1, "the first start records the first admin");
}
