use edge_client::StreamKind;
use serde_json::{Value, json};

use crate::support::{client, request_count, sim, target};

const DEMO: &str = r#"CREATE STREAM demo () WITH (DATASOURCE="users", FORMAT="JSON")"#;

async fn with_demo_stream(version: &str) -> neuronex_sim::RunningSim {
    let sim = sim(version).await;
    let client = client();
    let target = target(&sim, 0);
    client.edge(&target).create_stream(StreamKind::Stream, "demo", DEMO).await.expect("stream");
    sim
}

/// (NeuronEX version, rule body, expected edge code, expected message)
const CREATE_ERRORS: &[(&str, &str, i64, &str)] = &[
    ("3.6.0", r#"{"sql":"SELECT * FROM demo","actions":[{"log":{}}]}"#, 1000, "invalid rule json: Missing rule id."),
    (
        "3.6.0",
        r#"{"id":"r1","sql":"SELECT * FROM demo","graph":{"nodes":{}},"actions":[{"log":{}}]}"#,
        1000,
        "invalid rule json: Rule r1 has both sql and graph.",
    ),
    ("3.6.0", r#"{"id":"r1","actions":[{"log":{}}]}"#, 1000, "invalid rule json: Rule r1 has neither sql nor graph."),
    ("3.6.0", r#"{"id":"r1","sql":"SELECT * FROM demo"}"#, 1000, "invalid rule json: Missing rule actions."),
    (
        "3.6.0",
        r#"{"id":"r1","sql":"SELECT * FROM demo","actions":[]}"#,
        1000,
        "invalid rule json: Missing rule actions.",
    ),
    (
        "3.6.0",
        r#"{"id":"r1","sql":"SELECT * FROM nope","actions":[{"log":{}}]}"#,
        1000,
        "fail to get stream nope, please check if stream is created",
    ),
    (
        "3.3.0",
        r#"{"id":"r1","sql":"SELECT * FROM nope","actions":[{"log":{}}]}"#,
        4000,
        "fail to get stream nope, please check if stream is created",
    ),
    ("3.6.0", r#"{"id":"r1","sql":"SELECT * FROM demo","actions":[{"foo":{}}]}"#, 1000, "sink foo is not defined"),
    ("3.3.0", r#"{"id":"r1","sql":"SELECT * FROM demo","actions":[{"foo":{}}]}"#, 4000, "sink foo is not defined"),
    (
        "3.6.0",
        r#"{"id":"rule3/21","sql":"SELECT * FROM demo","actions":[{"log":{}}]}"#,
        1000,
        "invalid rule json: ruleID:rule3/21 contains invalidChar:/",
    ),
    (
        "3.6.0",
        r#"{"id":" rule1","sql":"SELECT * FROM demo","actions":[{"log":{}}]}"#,
        1000,
        "invalid rule json: ruleID:  rule1 should be trimed",
    ),
    (
        "3.8.0",
        r#"{"id":"rule3/21","sql":"SELECT * FROM demo","actions":[{"log":{}}]}"#,
        1000,
        "invalid rule json: ruleID:rule3/21 contains invalidChar:/",
    ),
];

#[tokio::test]
async fn create_errors_match_ekuiper_per_version() {
    for (version, body, code, message) in CREATE_ERRORS {
        let sim = with_demo_stream(version).await;
        let client = client();
        let target = target(&sim, 0);
        let rule: Value = serde_json::from_str(body).expect("test rule");
        let err = client.edge(&target).create_rule(&rule).await.expect_err(body);
        assert_eq!(
            (err.status, err.code, err.message.as_str()),
            (Some(400), Some(*code), *message),
            "{version} {body}"
        );
        assert!(!err.is_transient());
    }
}

#[tokio::test]
async fn ids_are_not_checked_by_ekuiper_1_12() {
    let sim = with_demo_stream("3.1.0").await;
    let rule = json!({"id": "a/b", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]});
    client().edge(&target(&sim, 0)).create_rule(&rule).await.expect("accepted by eKuiper 1.12");
}

#[tokio::test]
async fn duplicate_rule_is_refused() {
    let sim = with_demo_stream("3.6.0").await;
    let client = client();
    let target = target(&sim, 0);
    let rule = json!({"id": "r1", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]});
    client.edge(&target).create_rule(&rule).await.expect("create");
    let err = client.edge(&target).create_rule(&rule).await.expect_err("duplicate");
    assert_eq!((err.code, err.message.as_str()), (Some(1000), "rule r1 already exists"));
}

#[tokio::test]
async fn unknown_source_type_fails_creation_in_2x_and_running_in_1x() {
    for (version, created) in [("3.6.0", false), ("3.3.0", true)] {
        let sim = sim(version).await;
        let client = client();
        let target = target(&sim, 0);
        let edge = client.edge(&target);
        edge.create_stream(StreamKind::Stream, "demo", r#"CREATE STREAM demo () WITH (TYPE="foo")"#)
            .await
            .expect("stream");
        let rule = json!({"id": "r1", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]});
        let outcome = edge.create_rule(&rule).await;
        if created {
            outcome.expect("1.x creates the rule");
            let status = edge.rule_status("r1").await.expect("status");
            assert!(!status.running);
            assert_eq!(status.status, "stopped");
            assert_eq!(status.message, "Stopped: source foo not found.");
        } else {
            assert_eq!(outcome.expect_err("2.x refuses").message, "source type foo not found");
        }
    }
}

#[tokio::test]
async fn upsert_uses_put_from_ekuiper_2_2_and_falls_back_to_post_before() {
    for (version, posts) in [("3.5.0", 1), ("3.7.0", 0)] {
        let sim = with_demo_stream(version).await;
        let client = client();
        let target = target(&sim, 0);
        let edge = client.edge(&target);
        let rule = json!({"id": "r1", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]});
        edge.upsert_rule("r1", &rule).await.expect("first upsert creates");
        edge.upsert_rule("r1", &rule).await.expect("second upsert updates");
        assert_eq!(request_count(&sim, 0, "POST /api/ekuiper/rules").await, posts, "{version}");
        assert_eq!(request_count(&sim, 0, "PUT /api/ekuiper/rules/r1").await, 2, "{version}");
        assert!(edge.rule_status("r1").await.expect("status").running);
    }
}

#[tokio::test]
async fn put_on_a_missing_rule_is_404_before_ekuiper_2_2() {
    let sim = with_demo_stream("3.5.0").await;
    let rule = json!({"id": "r1", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]});
    let err = client().edge(&target(&sim, 0)).update_rule("r1", &rule).await.expect_err("404");
    assert_eq!((err.status, err.code), (Some(404), Some(1002)));
    assert_eq!(err.message, "Rule not found: Rule r1 is not found.");
}

#[tokio::test]
async fn update_errors() {
    let sim = with_demo_stream("3.7.0").await;
    let client = client();
    let target = target(&sim, 0);
    let edge = client.edge(&target);
    let rule = json!({"id": "r1", "version": "2", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]});
    edge.create_rule(&rule).await.expect("create");
    let cases = [
        (
            json!({"id": "r2", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]}),
            "Update rule error: Invalid rule json: RuleId is not consistent with rule id.",
        ),
        (
            json!({"id": "r1", "sql": "SELECT * FROM demo"}),
            "Update rule error: Invalid rule json: Missing rule actions.",
        ),
        (
            json!({"id": "r1", "version": "1", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]}),
            "Update rule error: rule r1 already exists with version (2), new version (1) is lower",
        ),
    ];
    for (body, message) in cases {
        let err = edge.update_rule("r1", &body).await.expect_err(message);
        assert_eq!((err.status, err.code, err.message.as_str()), (Some(400), Some(1000), message));
    }
    // A body without an id takes the path's.
    edge.update_rule("r1", &json!({"version": "3", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]}))
        .await
        .expect("update");
    assert_eq!(edge.get_rule("r1").await.expect("get")["version"], "3");
}

#[tokio::test]
async fn status_strings_follow_the_engine_version() {
    for (version, running, stopped) in
        [("3.3.0", "Running", "Stopped: canceled manually."), ("3.6.0", "running", "stopped")]
    {
        let sim = with_demo_stream(version).await;
        let client = client();
        let target = target(&sim, 0);
        let edge = client.edge(&target);
        edge.create_rule(&json!({"id": "r1", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]}))
            .await
            .expect("create");
        edge.create_rule(
            &json!({"id": "r2", "triggered": false, "sql": "SELECT * FROM demo", "actions": [{"log": {}}]}),
        )
        .await
        .expect("create");
        let listed = edge.list_rules().await.expect("list");
        assert_eq!(listed[0]["status"], running, "{version}");
        assert_eq!(listed[1]["status"], stopped, "{version}");
        assert!(edge.rule_status("r1").await.expect("status").running);
        assert!(!edge.rule_status("r2").await.expect("status").running);
        edge.control_rule("r2", "start").await.expect("start");
        assert!(edge.rule_status("r2").await.expect("status").running);
        edge.control_rule("r2", "stop").await.expect("stop");
        assert!(!edge.rule_status("r2").await.expect("status").running);
    }
}

#[tokio::test]
async fn missing_rule_errors_follow_the_engine_version() {
    let sim = sim("3.6.0").await;
    let client = client();
    let target = target(&sim, 0);
    let edge = client.edge(&target);
    let err = edge.delete_rule("r1").await.expect_err("2.x");
    assert_eq!(
        (err.status, err.code, err.message.as_str()),
        (Some(400), Some(1000), "Delete rule error: rule r1 not found")
    );
    let err = edge.get_rule("r1").await.expect_err("get");
    assert_eq!(
        (err.status, err.code, err.message.as_str()),
        (Some(404), Some(1002), "Describe rule error: Rule r1 is not found.")
    );
    let err = edge.rule_status("r1").await.expect_err("status");
    assert_eq!(err.message, "get rule status error: Rule r1 is not found");
    let err = edge.control_rule("r1", "start").await.expect_err("start");
    assert_eq!(err.message, "start rule error: Rule r1 is not found in registry, please check if it is created");

    let old = crate::support::sim("3.3.0").await;
    let target = crate::support::target(&old, 0);
    let err = client.edge(&target).delete_rule("r1").await.expect_err("1.x");
    assert_eq!(
        (err.status, err.code, err.message.as_str()),
        (Some(404), Some(1002), "Delete rule error: r1 is not found")
    );
}

#[tokio::test]
async fn graph_rules_are_checked_and_created() {
    let sim = sim("3.6.0").await;
    let client = client();
    let target = target(&sim, 0);
    let bad =
        json!({"id": "g1", "graph": {"nodes": {"a": {"type": "source"}}, "topo": {"sources": ["b"], "edges": {}}}});
    let err = client.edge(&target).create_rule(&bad).await.expect_err("unknown node");
    assert_eq!(err.message, "node b is not defined");
}
