//! Cases replayed from eKuiper's own REST test suite, expectations unchanged, against the
//! simulator's eKuiper. Source: lf-edge/ekuiper `internal/server/rest_test.go` at 00580d3
//! (eKuiper 1.x, as NeuronEX 3.3 bundles it), `Test_sourcesManageHandler` and
//! `Test_rulesManageHandler`. Each case names the upstream step it replays.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::sim;

/// eKuiper 1.14, the last 1.x line (NeuronEX 3.3).
const VERSION: &str = "3.3.0";

struct Ekuiper {
    http: reqwest::Client,
    base: String,
}

impl Ekuiper {
    async fn start() -> (neuronex_sim::RunningSim, Ekuiper) {
        let sim = sim(VERSION).await;
        let base = format!("{}/api/ekuiper", sim.endpoint(0));
        (sim, Ekuiper { http: reqwest::Client::new(), base })
    }

    async fn call(&self, method: Method, path: &str, body: &str) -> (u16, String) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .body(body.to_owned())
            .send()
            .await
            .expect("the simulator answers");
        (response.status().as_u16(), response.text().await.expect("body"))
    }
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// `Test_sourcesManageHandler`: a table created through `/streams`, streams and tables read back,
/// replaced and dropped.
#[tokio::test]
async fn sources_are_managed_as_ekuipers_rest_test_expects() {
    let (_sim, ekuiper) = Ekuiper::start().await;
    // "create table" through POST /streams?kind=lookup: the statement decides the kind.
    let table =
        r#"{"sql":"CREATE TABLE alertTable() WITH (DATASOURCE=\"0\", TYPE=\"memory\", KEY=\"id\", KIND=\"lookup\")"}"#;
    assert_eq!(ekuiper.call(Method::POST, "/streams?kind=lookup", table).await.0, 201);
    // "create stream"
    let stream = r#"{"sql":"CREATE stream alert() WITH (DATASOURCE=\"0\", TYPE=\"mqtt\")"}"#;
    assert_eq!(ekuiper.call(Method::POST, "/streams", stream).await.0, 201);
    // "get stream"
    let (status, body) = ekuiper.call(Method::GET, "/streams/alert", "any").await;
    assert_eq!(status, 200);
    assert_eq!(
        parsed(&body),
        json!({"Name":"alert","Options":{"datasource":"0","type":"mqtt"},"Statement":null,"StreamFields":null,"StreamType":0})
    );
    assert_eq!(ekuiper.call(Method::GET, "/streams/alert/schema", "any").await.0, 200);
    // "get table"
    let (status, body) = ekuiper.call(Method::GET, "/tables/alertTable", "any").await;
    assert_eq!(status, 200);
    assert_eq!(
        parsed(&body),
        json!({"Name":"alertTable","Options":{"datasource":"0","type":"memory", "key":"id","kind":"lookup"},"Statement":null,"StreamFields":null,"StreamType":1})
    );
    assert_eq!(ekuiper.call(Method::GET, "/tables/alertTable/schema", "any").await.0, 200);
    // "put table", "put stream"
    assert_eq!(ekuiper.call(Method::PUT, "/tables/alertTable", table).await.0, 200);
    let replaced = r#"{"sql":"CREATE stream alert() WITH (DATASOURCE=\"0\", TYPE=\"httppull\")"}"#;
    assert_eq!(ekuiper.call(Method::PUT, "/streams/alert", replaced).await.0, 200);
    // "drop table", "drop stream"
    assert_eq!(ekuiper.call(Method::DELETE, "/tables/alertTable", "any").await.0, 200);
    assert_eq!(ekuiper.call(Method::DELETE, "/streams/alert", "any").await.0, 200);
}

/// `Test_rulesManageHandler`: validate, create, update, read back verbatim, start and stop.
#[tokio::test]
async fn rules_are_managed_as_ekuipers_rest_test_expects() {
    let (_sim, ekuiper) = Ekuiper::start().await;
    let stream = r#"{"sql":"CREATE stream alert() WITH (DATASOURCE=\"0\", TYPE=\"mqtt\")"}"#;
    ekuiper.call(Method::POST, "/streams", stream).await;
    // "validate a rule"
    let rule = r#"{"id": "rule1","triggered": false,"sql": "select * from alert","actions": [{"log": {}}]}"#;
    assert_eq!(
        ekuiper.call(Method::POST, "/rules/validate", rule).await,
        (200, r#"{"sources":["alert"],"valid":true}"#.into())
    );
    // "validate a wrong rule"
    let wrong = r#"{"id": "rule1", "sql": "select * from alert"}"#;
    assert_eq!(
        ekuiper.call(Method::POST, "/rules/validate", wrong).await,
        (422, "invalid rule json: Missing rule actions.".into())
    );
    // "create rule with trigger false"
    ekuiper.call(Method::POST, "/rules", rule).await;
    // "update rule, will set rule to triggered"
    let updated = r#"{"id": "rule1","triggered": true,"sql": "select * from alert","actions": [{"nop": {}}]}"#;
    assert_eq!(ekuiper.call(Method::PUT, "/rules/rule1", updated).await.0, 200);
    // "update wrong rule": it reads a stream that does not exist.
    let wrong = r#"{"id": "rule1","sql": "select * from alert1","actions": [{"nop": {}}]}"#;
    assert_eq!(ekuiper.call(Method::PUT, "/rules/rule1", wrong).await.0, 400);
    // "get rule": the stored text, verbatim.
    assert_eq!(ekuiper.call(Method::GET, "/rules/rule1", "any").await.1, updated);
    // "start rule", "start non-existence rule"
    assert_eq!(ekuiper.call(Method::POST, "/rules/rule1/start", "any").await.1, "Rule rule1 was started");
    let (status, body) = ekuiper.call(Method::POST, "/rules/non-existence-rule/start", "any").await;
    assert_eq!((status, parsed(&body)["error"].as_i64()), (404, Some(1002)));
    // "stop rule", "stop non-existence rule"
    assert_eq!(ekuiper.call(Method::POST, "/rules/rule1/stop", "any").await.1, "Rule rule1 was stopped.");
    let (status, body) = ekuiper.call(Method::POST, "/rules/non-existence-rule/stop", "any").await;
    assert_eq!((status, parsed(&body)["error"].as_i64()), (404, Some(1002)));
    // "update rule, will set rule to triggered" (to false this time)
    let untriggered = r#"{"id": "rule1","triggered": false,"sql": "select * from alert","actions": [{"nop": {}}]}"#;
    assert_eq!(ekuiper.call(Method::PUT, "/rules/rule1", untriggered).await.0, 200);
    // "restart rule"
    assert_eq!(ekuiper.call(Method::POST, "/rules/rule1/restart", "any").await.1, "Rule rule1 was restarted");
}

/// `Test_ruleSetImport`: a ruleset whose stream statement spans lines and ends with `, );`, and
/// whose rule is a JSON string, is imported; the ruleset exports.
#[tokio::test]
async fn a_ruleset_imports_and_exports_as_ekuipers_rest_test_expects() {
    let (_sim, ekuiper) = Ekuiper::start().await;
    let content = r#"{"streams":{"plugin":"\n              CREATE STREAM plugin\n              ()\n              WITH (FORMAT=\"json\", CONF_KEY=\"default\", TYPE=\"mqtt\", SHARED=\"false\", );\n          "},"tables":{},"rules":{"rule1":"{\"id\":\"rule1\",\"name\":\"\",\"sql\":\"select name from plugin\",\"actions\":[{\"log\":{\"runAsync\":false,\"omitIfEmpty\":false,\"sendSingle\":true,\"bufferLength\":1024,\"enableCache\":false,\"format\":\"json\"}}],\"options\":{\"restartStrategy\":{}}}"}}"#;
    let body = json!({"content": content}).to_string();
    assert_eq!(ekuiper.call(Method::POST, "/ruleset/import", &body).await.0, 200);
    assert_eq!(ekuiper.call(Method::POST, "/ruleset/export", "any").await.0, 200);
}

/// Bodies eKuiper cannot decode are refused with Go's `encoding/json` words, which eKuiper passes
/// on after its own prefix (`internal/server/rest.go`, "Error decoding the statement descriptor").
#[tokio::test]
async fn undecodable_bodies_are_refused_in_gos_words() {
    let (_sim, ekuiper) = Ekuiper::start().await;
    let cases = [
        ("x", "invalid character 'x' looking for beginning of value"),
        (r#"{"sql":"#, "unexpected end of JSON input"),
        ("", "unexpected end of JSON input"),
    ];
    for (body, words) in cases {
        let (status, answer) = ekuiper.call(Method::POST, "/streams", body).await;
        let message = format!("Invalid body: Error decoding the statement descriptor: {words}");
        assert_eq!((status, parsed(&answer)["message"].as_str()), (400, Some(message.as_str())), "{body:?}");
    }
}

/// Starting or stopping a rule rewrites its stored text with `triggered` (lf-edge/ekuiper
/// `internal/processor/rule.go` `ExecReplaceRuleState`): read back afterwards, the rule has its
/// keys sorted, as Go encodes a map, and the flag set; a read-back compared with what was sent must
/// compare meaning, not text.
#[tokio::test]
async fn start_and_stop_rewrite_the_stored_rule() {
    let (_sim, ekuiper) = Ekuiper::start().await;
    ekuiper
        .call(Method::POST, "/streams", r#"{"sql":"CREATE stream alert() WITH (DATASOURCE=\"0\", TYPE=\"mqtt\")"}"#)
        .await;
    let rule = r#"{"sql": "select * from alert", "id": "rule1", "actions": [{"log": {}}]}"#;
    assert_eq!(ekuiper.call(Method::POST, "/rules", rule).await.0, 201);
    assert_eq!(ekuiper.call(Method::GET, "/rules/rule1", "any").await.1, rule, "verbatim until started or stopped");
    ekuiper.call(Method::POST, "/rules/rule1/stop", "any").await;
    assert_eq!(
        ekuiper.call(Method::GET, "/rules/rule1", "any").await.1,
        r#"{"actions":[{"log":{}}],"id":"rule1","sql":"select * from alert","triggered":false}"#
    );
}
