use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, code, rule_doc, sim};

fn fixture_text(name: &str) -> String {
    let path = format!("{}/../../fixtures/upstream/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[tokio::test]
async fn every_upstream_rule_and_driver_document_is_accepted_as_exported() {
    let app = TestApp::spawn().await;
    let cases = [
        ("ekuiper_ruleset_import.json", "rule"),
        ("ekuiper_data_import_streams_rules_sourceconfig.json", "rule"),
        ("ekuiper_data_import_rule_with_full_options.json", "rule"),
        ("ekuiper_data_export_full_example.json", "rule"),
        ("ekuiper_rules_with_version.json", "rule"),
        ("ekuiper_graph_rule_example.json", "rule"),
        ("neuronex_api_template_export_ekuiper.json", "rule"),
        ("neuronex_api_template_export_neuron.json", "driver"),
        ("neuron_global_drivers_put_request.json", "driver"),
    ];
    for (file, kind) in cases {
        // Content as the exported text, exactly as a user uploads the file.
        let answer =
            app.post(&app.p("/templates"), json!({"name": file, "kind": kind, "content": fixture_text(file)})).await;
        assert_eq!(answer.status, 201, "{file}: {}", answer.text);
        let id = answer.body["id"].as_str().expect("id");
        let exported = app.get(&app.p(&format!("/templates/{id}/export"))).await;
        assert_eq!(exported.text, fixture_text(file), "{file}: export gives back what was uploaded");
    }
}

#[tokio::test]
async fn invalid_documents_name_the_object_and_the_problem() {
    let app = TestApp::spawn().await;
    let both =
        json!({"rules": {"r1": "{\"id\":\"r1\",\"sql\":\"SELECT 1 FROM s\",\"graph\":{},\"actions\":[{\"log\":{}}]}"}});
    let bad_id = json!({"rules": {"a/b": "{\"id\":\"a/b\",\"sql\":\"SELECT 1 FROM s\",\"actions\":[{\"log\":{}}]}"}});
    let bad_tag = json!({"nodes": [{"name": "m1", "plugin": "Modbus TCP", "groups": [{"group": "g1", "interval": 1000, "tags": [{"name": "t1", "address": "1!400001", "attribute": 1, "type": 77}]}]}]});
    let cases = [
        ("rule", both, "invalid_template", "invalid rule template: rules.r1: has both sql and graph; keep one"),
        (
            "rule",
            bad_id,
            "invalid_template",
            "invalid rule template: rules.a/b: bad rule id `a/b`: eKuiper refuses the character `/`",
        ),
        (
            "driver",
            bad_tag,
            "invalid_template",
            "invalid driver template: nodes[0] (node m1).groups[0] (group g1).tags[0] (tag t1): unknown tag type code 77",
        ),
        (
            "rule",
            json!("{\"rules\": {,}}"),
            "invalid_template",
            "invalid rule template: content: invalid JSON at line 1, column 12",
        ),
        (
            "driver",
            rule_doc("s", "r1", "SELECT * FROM s"),
            "invalid_template",
            "invalid driver template: nodes: not a driver document",
        ),
        ("rules", json!({}), "invalid_kind", "kind: unknown template kind `rules`: use rule or driver"),
    ];
    for (kind, content, expected_code, message) in cases {
        let answer = app.post(&app.p("/templates"), json!({"name": "t", "kind": kind, "content": content})).await;
        assert_eq!((answer.status, code(&answer)), (422, expected_code), "{}", answer.text);
        let text = answer.body["error"]["message"].as_str().expect("message");
        assert!(text.starts_with(message), "{text}");
    }
    assert_eq!(app.get(&app.p("/templates")).await.body["total"], 0);
}

#[tokio::test]
async fn names_are_unique_in_a_project() {
    let app = TestApp::spawn().await;
    app.template("line rules", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let clash = app.post(&app.p("/templates"), json!({"name": "line rules", "kind": "driver", "content": fixture_text("neuronex_api_template_export_neuron.json")})).await;
    assert_eq!((clash.status, code(&clash)), (409, "template_name_taken"));
    assert_eq!(clash.body["error"]["message"], "template `line rules` already exists");
    assert_eq!(clash.body["error"]["details"]["name"], "line rules", "{}", clash.text);
}

#[tokio::test]
async fn each_edit_is_a_new_immutable_version() {
    let app = TestApp::spawn().await;
    let id = app.template("rules", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let edited = app
        .call(
            Method::PUT,
            &app.p(&format!("/templates/{id}")),
            Some(json!({"content": rule_doc("s", "r1", "SELECT a FROM s")})),
        )
        .await;
    assert_eq!((edited.status, edited.body["current_version"].as_i64()), (200, Some(2)), "{}", edited.text);
    let same = app
        .call(
            Method::PUT,
            &app.p(&format!("/templates/{id}")),
            Some(json!({"content": rule_doc("s", "r1", "SELECT a FROM s"), "description": "d"})),
        )
        .await;
    assert_eq!(same.body["current_version"], 2, "unchanged content makes no version");
    let versions = app.get(&app.p(&format!("/templates/{id}/versions"))).await;
    assert_eq!(versions.body["total"], 2);
    let first = app.get(&app.p(&format!("/templates/{id}/versions/1"))).await;
    assert_eq!(first.body["content"], rule_doc("s", "r1", "SELECT * FROM s"));
    let old_export = app.get(&app.p(&format!("/templates/{id}/export?version=1"))).await;
    assert_eq!(old_export.headers["content-disposition"], "attachment; filename=\"rules-v1.json\"");
    let bad = app.call(Method::PUT, &app.p(&format!("/templates/{id}")), Some(json!({"content": {"rules": 5}}))).await;
    assert_eq!(code(&bad), "invalid_template");
    let kind = app.call(Method::PUT, &app.p(&format!("/templates/{id}")), Some(json!({"kind": "driver"}))).await;
    assert_eq!(code(&kind), "kind_immutable");
    assert_eq!(app.get(&app.p(&format!("/templates/{id}"))).await.body["current_version"], 2);
    assert_eq!(app.call(Method::DELETE, &app.p(&format!("/templates/{id}")), None).await.status, 204);
    let gone = app.get(&app.p(&format!("/templates/{id}"))).await;
    assert_eq!((gone.status, code(&gone)), (404, "template_not_found"));
}

#[tokio::test]
async fn preview_renders_parameters_for_one_edge() {
    let app = TestApp::spawn().await;
    let sim = sim(1, &["3.6.0"]).await;
    let ids = app.register(&sim, 1).await;
    let doc = rule_doc("s", "r1", "SELECT * FROM s WHERE name = \"${who}\" AND gw = '${edge.name}'");
    let id = app.template("rules", "rule", doc).await;
    let preview = app
        .post(
            &app.p(&format!("/templates/{id}/preview")),
            json!({"edge_id": ids[0], "params": {"defaults": {"who": "a\"b"}}}),
        )
        .await;
    assert_eq!(preview.status, 200, "{}", preview.text);
    assert_eq!(
        preview.body["rendered"]["rules"]["r1"]["sql"],
        "SELECT * FROM s WHERE name = \"a\"b\" AND gw = 'neuronex-00000'"
    );
    let missing = app.post(&app.p(&format!("/templates/{id}/preview")), json!({"edge_id": ids[0]})).await;
    assert_eq!((missing.status, code(&missing)), (422, "missing_parameters"));
    assert_eq!(missing.body["error"]["message"], "edge service neuronex-00000: no value for who");
    let _: Value = preview.body;
}
