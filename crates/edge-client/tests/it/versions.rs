//! What changes between NeuronEX releases, one test per row of docs/COMPATIBILITY.md that the
//! simulator models: the edge client against instances reporting the versions on either side of
//! each change.

use edge_client::{EdgeAuth, EdgeTarget, StreamKind};
use neuronex_sim::versions::Version;
use neuronex_sim::{AuthMode, SimConfig};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{FileServer, client, control, python_plugin, request_count, sim, sim_with, target};

/// lf-edge/ekuiper `internal/processor/stream_test.go` `TestStreamReplace` (eKuiper 2.3+, NeuronEX
/// 3.7+), its seven steps in order with their expectations; on eKuiper 2.2 (NeuronEX 3.6) every
/// replace goes through.
#[tokio::test]
async fn stream_replace_follows_ekuipers_version_and_shared_rules() {
    let steps = [
        ("init no ver", r#"CREATE STREAM r1 () WITH (DATASOURCE="users", FORMAT="JSON", KEY="USERID");"#, None),
        ("update from no to no", r#"CREATE STREAM r1 () WITH (DATASOURCE="users", FORMAT="JSON");"#, None),
        (
            "update from no to yes",
            r#"CREATE STREAM r1 () WITH (DATASOURCE="users", FORMAT="JSON", VERSION="12345");"#,
            None,
        ),
        (
            "update from high to low",
            r#"CREATE STREAM r1 () WITH (DATASOURCE="users", FORMAT="JSON", VERSION="12345");"#,
            Some("source r1 already exists with version (12345), new version (12345) is lower"),
        ),
        (
            "update from same ver",
            r#"CREATE STREAM r1 () WITH (DATASOURCE="users", FORMAT="JSON", VERSION="12345");"#,
            Some("source r1 already exists with version (12345), new version (12345) is lower"),
        ),
        (
            "update from ver to none",
            r#"CREATE STREAM r1 () WITH (DATASOURCE="users", FORMAT="JSON");"#,
            Some("source r1 already exists with version (12345), new version () is lower"),
        ),
        (
            "update from low to high",
            r#"CREATE STREAM r1 () WITH (DATASOURCE="users", FORMAT="JSON", SHARED="true");"#,
            Some("Replace r1 fails: do not support to change stream SHARED option."),
        ),
    ];
    for (version, checked) in [("3.7.0", true), ("3.6.0", false)] {
        let sim = sim(version).await;
        let client = client();
        let target = target(&sim, 0);
        let edge = client.edge(&target);
        for (step, sql, refusal) in steps {
            let answer = edge.replace_stream(StreamKind::Stream, "r1", sql).await;
            match refusal.filter(|_| checked) {
                None => answer.unwrap_or_else(|err| panic!("{version} {step}: {err}")),
                Some(reason) => {
                    let err = answer.expect_err(step);
                    assert_eq!(err.message, format!("Stream command error: {reason}"), "{version} {step}");
                    assert_eq!(err.version_clash().is_some(), !reason.contains("SHARED"), "{step}");
                }
            }
        }
    }
}

/// eKuiper 2.2+ `CanReplace` (internal/processor/rule.go): an update must carry a greater version
/// as text; an equal or missing one after a versioned rule is "lower", as is "10" after "9".
#[tokio::test]
async fn rule_versions_compare_as_ekuiper_compares_them() {
    let sim = sim("3.7.0").await;
    let client = client();
    let target = target(&sim, 0);
    let edge = client.edge(&target);
    edge.create_stream(StreamKind::Stream, "demo", r#"CREATE STREAM demo () WITH (TYPE="mqtt")"#)
        .await
        .expect("stream");
    let rule = |version: Option<&str>| {
        let mut rule = json!({"id": "r1", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]});
        if let Some(version) = version {
            rule["version"] = json!(version);
        }
        rule
    };
    edge.upsert_rule("r1", &rule(None)).await.expect("first");
    edge.upsert_rule("r1", &rule(None)).await.expect("no version after no version");
    edge.upsert_rule("r1", &rule(Some("9"))).await.expect("a version after none");
    for refused in [Some("9"), None, Some("10")] {
        let err = edge.upsert_rule("r1", &rule(refused)).await.expect_err("not greater");
        let clash = err.version_clash().expect("a version clash");
        assert_eq!((clash.stored.as_str(), clash.sent.as_str()), ("9", refused.unwrap_or("")));
    }
    edge.upsert_rule("r1", &rule(Some("90"))).await.expect("greater as text");
}

/// NeuronEX 3.9.2 honours a sink's `"enable": false` and refuses a rule whose sinks are all
/// disabled; 3.9.1 ignores the field (the sink runs), which is why edgefleet refuses to send such
/// a rule there (domain::compat).
#[tokio::test]
async fn sink_enable_exists_from_neuronex_3_9_2() {
    let all_disabled = json!({"id": "r1", "sql": "SELECT * FROM demo", "actions": [{"log": {"enable": false}}]});
    for (version, accepted) in [("3.9.2", false), ("3.9.1", true)] {
        let sim = sim(version).await;
        let client = client();
        let target = target(&sim, 0);
        let edge = client.edge(&target);
        edge.create_stream(StreamKind::Stream, "demo", r#"CREATE STREAM demo () WITH (TYPE="mqtt")"#)
            .await
            .expect("stream");
        assert_eq!(edge.create_rule(&all_disabled).await.is_ok(), accepted, "{version}");
        let one_enabled =
            json!({"id": "r2", "sql": "SELECT * FROM demo", "actions": [{"log": {"enable": false}}, {"nop": {}}]});
        edge.create_rule(&one_enabled).await.expect("one sink enabled");
    }
}

/// eKuiper 2.4 (NeuronEX 3.9) refuses to download a plugin from a loopback or private address
/// unless `basic.enablePrivateNet` is set; eKuiper 2.3 (NeuronEX 3.8) downloads it.
#[tokio::test]
async fn plugin_downloads_from_private_addresses_need_enable_private_net_from_3_9() {
    let files = FileServer::start().await;
    let url = files.put("/m.zip", python_plugin("m"));
    let old = sim("3.8.1").await;
    client().edge(&target(&old, 0)).install_portable("m", &url, false).await.expect("3.8 downloads");
    let new = sim("3.9.0").await;
    let client = client();
    let target = target(&new, 0);
    let err = client.edge(&target).install_portable("m", &url, false).await.expect_err("3.9 refuses");
    assert!(err.message.ends_with("is in internal network"), "{}", err.message);
    assert!(err.message.starts_with("portable plugin create command error: fail to download file"), "{}", err.message);
    control(&new, Method::PUT, "instances/0/ekuiper-config", json!({"enablePrivateNet": true})).await;
    client.edge(&target).install_portable("m", &url, false).await.expect("allowed by enablePrivateNet");
}

/// NeuronEX 3.7.1 generates its login key at every start: after a restart the old token is
/// refused and the client signs in again. 3.7.0 keeps its built-in key, and the token.
#[tokio::test]
async fn a_restart_invalidates_login_tokens_from_3_7_1() {
    for (version, logins) in [("3.7.1", 2), ("3.7.0", 1)] {
        let version = Version::parse(version).expect("version");
        let sim =
            sim_with(SimConfig { versions: vec![(version, 1)], auth: AuthMode::Basic, ..SimConfig::default() }).await;
        let target = EdgeTarget::http(
            sim.endpoint(0).to_owned(),
            EdgeAuth::Basic { username: "admin".into(), password: "0000".into() },
        );
        let client = client();
        client.edge(&target).version().await.expect("before the restart");
        control(&sim, Method::POST, "instances/0/restart", json!({})).await;
        client.edge(&target).version().await.expect("after the restart");
        assert_eq!(request_count(&sim, 0, "POST /api/login").await, logins, "{version}");
    }
}

/// Tag descriptions may be 255 bytes from Neuron 2.15 (NeuronEX 3.9), 127 before (2208).
#[tokio::test]
async fn tag_descriptions_grew_to_256_in_3_9() {
    let described =
        json!([{"name": "t", "address": "1!400001", "attribute": 3, "type": 3, "description": "d".repeat(200)}]);
    for (version, status) in [("3.9.0", 200), ("3.8.1", 400)] {
        let sim = sim(version).await;
        let http = reqwest::Client::new();
        let base = format!("{}/api/neuron", sim.endpoint(0));
        let post = |path: &str, body: Value| http.post(format!("{base}{path}")).json(&body).send();
        post("/node", json!({"name": "m", "plugin": "Modbus TCP"})).await.expect("node");
        let answer = post("/tags", json!({"node": "m", "group": "g", "tags": described})).await.expect("tags");
        assert_eq!(answer.status().as_u16(), status, "{version}");
    }
}

/// eKuiper 1.x (NeuronEX 3.0 to 3.3) describes a rule that mentions a url, password or token
/// re-encoded with sorted keys and its secrets masked, and puts the stored secret back when an
/// update sends the mask (v1.14 `pkg/hidden`, `replaceRulePassword`); 2.x answers the text as
/// stored.
#[tokio::test]
async fn ekuiper_1x_masks_secrets_in_rule_read_backs() {
    let text = r#"{"id":"r1","sql":"SELECT * FROM demo","actions":[{"mqtt":{"server":"tcp://b:1883","topic":"t","password":"secret"}},{"rest":{"url":"http://ops:pw@h:8080/x"}}]}"#;
    for (version, masked) in [("3.3.0", true), ("3.7.0", false)] {
        let sim = sim(version).await;
        let client = client();
        let target = target(&sim, 0);
        let edge = client.edge(&target);
        edge.create_stream(StreamKind::Stream, "demo", r#"CREATE STREAM demo () WITH (TYPE="mqtt")"#)
            .await
            .expect("stream");
        let rule: Value = serde_json::from_str(text).expect("json");
        edge.create_rule(&rule).await.expect("rule");
        let described = edge.get_rule("r1").await.expect("describe");
        if !masked {
            assert_eq!(described, rule, "{version}");
            continue;
        }
        assert_eq!(described["actions"][0]["mqtt"]["password"], "******");
        assert_eq!(described["actions"][1]["rest"]["url"], "http://ops:******@h:8080/x");
        let keys: Vec<&String> = described.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["actions", "id", "sql"], "Go writes map keys sorted");
        // Sent back as read, the password is kept.
        edge.upsert_rule("r1", &described).await.expect("update with the mask");
        let stored = crate::support::snapshot(&sim, 0).await;
        assert_eq!(stored["ekuiper"]["rules"]["r1"]["definition"]["actions"][0]["mqtt"]["password"], "secret");
    }
}
