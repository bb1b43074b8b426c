use edge_client::{Failure, StreamKind};
use serde_json::json;

use crate::support::{client, sim, target};

fn document() -> serde_json::Value {
    json!({
        "streams": {"demo": "CREATE STREAM demo () WITH (DATASOURCE=\"users\", FORMAT=\"JSON\")"},
        "tables": {},
        "rules": {
            "good": "{\"id\":\"good\",\"sql\":\"SELECT * FROM demo\",\"actions\":[{\"log\":{}}]}",
            "bad": "{\"id\":\"bad\",\"sql\":\"SELECT * FROM nope\",\"actions\":[{\"log\":{}}]}"
        }
    })
}

#[tokio::test]
async fn partial_data_import_reports_failed_items_and_keeps_the_rest() {
    // eKuiper 2.x puts the map in the 400 message; 1.x says "process error" and the client reads
    // the import status instead. Both must end in the same per-item answer.
    for version in ["3.6.0", "3.3.0"] {
        let sim = sim(version).await;
        let client = client();
        let target = target(&sim, 0);
        let edge = client.edge(&target);
        let errors = edge.data_import(&document(), true).await.expect(version);
        assert!(!errors.is_empty());
        assert_eq!(errors.0["rules"]["bad"], "fail to get stream nope, please check if stream is created", "{version}");
        assert!(!errors.0["rules"].contains_key("good"));
        assert!(edge.rule_status("good").await.expect("imported rule").running);
    }
}

#[tokio::test]
async fn partial_import_overwrites_and_full_import_resets() {
    let sim = sim("3.6.0").await;
    let client = client();
    let target = target(&sim, 0);
    let edge = client.edge(&target);
    edge.create_stream(StreamKind::Stream, "old", r#"CREATE STREAM old () WITH (TYPE="memory")"#)
        .await
        .expect("stream");
    let doc = json!({"streams": {"demo": "CREATE STREAM demo () WITH (TYPE=\"memory\")"}, "rules": {"r1": "{\"id\":\"r1\",\"sql\":\"SELECT * FROM demo\",\"actions\":[{\"log\":{}}]}"}});
    assert!(edge.data_import(&doc, true).await.expect("partial").is_empty());
    assert_eq!(edge.list_streams(StreamKind::Stream).await.expect("list"), vec!["demo", "old"]);
    assert!(edge.data_import(&doc, true).await.expect("again: overwrite").is_empty());
    assert!(edge.data_import(&doc, false).await.expect("full").is_empty());
    assert_eq!(edge.list_streams(StreamKind::Stream).await.expect("list"), vec!["demo"]);
}

#[tokio::test]
async fn ruleset_import_skips_or_overwrites_by_version() {
    // (version, rule replaced?) eKuiper <= 2.1 skips existing rules, 2.2+ overwrites them.
    for (version, overwritten) in [("3.5.0", false), ("3.6.0", true)] {
        let sim = sim(version).await;
        let client = client();
        let target = target(&sim, 0);
        let edge = client.edge(&target);
        let first = json!({"streams": {"demo": "CREATE STREAM demo () WITH (TYPE=\"memory\")"}, "tables": {}, "rules": {"r1": "{\"id\":\"r1\",\"name\":\"one\",\"sql\":\"SELECT * FROM demo\",\"actions\":[{\"log\":{}}]}"}});
        assert_eq!(edge.ruleset_import(&first).await.expect("import"), "imported 1 streams, 0 tables and 1 rules");
        let second = json!({"streams": {}, "tables": {}, "rules": {"r1": "{\"id\":\"r1\",\"name\":\"two\",\"sql\":\"SELECT * FROM demo\",\"actions\":[{\"log\":{}}]}"}});
        let summary = edge.ruleset_import(&second).await.expect("import");
        let name = edge.get_rule("r1").await.expect("rule")["name"].clone();
        if overwritten {
            assert_eq!((summary.as_str(), name), ("imported 0 streams, 0 tables and 1 rules", json!("two")));
        } else {
            assert_eq!((summary.as_str(), name), ("imported 0 streams, 0 tables and 0 rules", json!("one")));
        }
    }
}

#[tokio::test]
async fn ruleset_import_counts_rules_whose_stream_is_missing_and_they_do_not_run() {
    let sim = sim("3.6.0").await;
    let client = client();
    let target = target(&sim, 0);
    let edge = client.edge(&target);
    let doc = json!({"rules": {"r1": "{\"id\":\"r1\",\"sql\":\"SELECT * FROM nope\",\"actions\":[{\"log\":{}}]}"}});
    assert_eq!(edge.ruleset_import(&doc).await.expect("import"), "imported 0 streams, 0 tables and 1 rules");
    assert!(!edge.rule_status("r1").await.expect("status").running);
}

#[tokio::test]
async fn import_body_errors() {
    let sim = sim("3.6.0").await;
    let http = reqwest::Client::new();
    let cases = [
        (
            "data/import",
            json!({"content": "{}", "file": "http://x/y.json"}),
            "Invalid body: Cannot specify both content and file",
        ),
        ("data/import", json!({}), "Invalid body: must specify content or file"),
        (
            "ruleset/import",
            json!({"content": "{}", "file": "http://x/y.json"}),
            "Invalid body: Cannot specify both content and file: bad request",
        ),
        ("ruleset/import", json!({}), "Invalid body: must specify content or file: bad request"),
        ("data/import", json!({"content": "{not json"}), "configuration unmarshal with error"),
    ];
    for (path, body, message) in cases {
        let url = format!("{}/api/ekuiper/{path}", sim.endpoint(0));
        let response = http.post(url).json(&body).send().await.expect("request");
        assert_eq!(response.status(), 400, "{path} {body}");
        assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
        let text = response.text().await.expect("body");
        assert!(text.ends_with('\n'), "http.Error adds a newline");
        let value: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(value["error"], 1000);
        assert!(value["message"].as_str().expect("message").starts_with(message), "{text}");
    }
}

#[tokio::test]
async fn ruleset_import_of_invalid_content_drops_the_connection() {
    let sim = sim("3.6.0").await;
    let url = format!("{}/api/ekuiper/ruleset/import", sim.endpoint(0));
    let raw = reqwest::Client::new().post(url).json(&json!({"content": "{not json"})).send().await;
    let err = raw.expect_err("no HTTP answer expected");
    assert!(!err.is_timeout() && !err.is_connect(), "{err}");
}

#[tokio::test]
async fn ekuiper_1x_messages_with_quotes_are_read_although_not_valid_json() {
    let sim = sim("3.3.0").await;
    let client = client();
    let target = target(&sim, 0);
    let rule = json!({"id": "r\"1/", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]});
    let url = format!("{}/api/ekuiper/rules", sim.endpoint(0));
    let text = reqwest::Client::new().post(url).json(&rule).send().await.expect("request").text().await.expect("body");
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_err(), "1.x leaves quotes unescaped: {text}");
    let err = client.edge(&target).create_rule(&rule).await.expect_err("invalid id");
    assert_eq!(err.code, Some(1000));
    assert_eq!(err.message, "invalid rule json: ruleID:r\"1/ contains invalidChar:/");
    assert!(!matches!(err.failure, Failure::Decode { .. }));
}
