//! Agent mode's carriage, seen from the edge client: through a relay, a target's version check and
//! its reads before the first write travel as one exchange, its writes as a second, and the status
//! check after a rule's write travels with the writes. The relay here makes each call on the
//! simulator itself, as an agent would, and records what it was asked to carry.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::plan::ObjectRef;
use edge_client::{
    AgentRoute, CallAnswer, EdgeClient, EdgeTarget, Failure, Relay, RelayAnswer, RelayFuture, RelayRequest, StreamKind,
    Via, Write,
};
use serde_json::json;

use crate::support::{client, sim, target};

/// Carries each request to an HTTP edge, like an agent of `protocol`, and notes it as
/// `METHOD path [then ...]`, `reads [...]` or `writes [...] then [...]`.
struct RecordingRelay {
    client: EdgeClient,
    edge: EdgeTarget,
    carried: Mutex<Vec<String>>,
    /// What the agent understands: below 2 the server's link answers nothing to reads (and the
    /// agent ignores `then`), below 3 nothing to writes.
    protocol: u32,
}

fn relay_for(sim: &neuronex_sim::RunningSim, protocol: u32) -> Arc<RecordingRelay> {
    Arc::new(RecordingRelay { client: client(), edge: target(sim, 0), carried: Mutex::default(), protocol })
}

impl RecordingRelay {
    fn carried(&self) -> Vec<String> {
        self.carried.lock().expect("lock").clone()
    }

    async fn read_all(&self, paths: &[String]) -> Vec<CallAnswer> {
        self.client.edge(&self.edge).read_all(paths).await
    }
}

impl Relay for RecordingRelay {
    fn exchange<'a>(&'a self, _agent_id: &'a str, request: RelayRequest, _wait: Duration) -> RelayFuture<'a> {
        Box::pin(async move {
            match request {
                RelayRequest::Reads { paths } => {
                    self.carried.lock().expect("lock").push(format!("reads {paths:?}"));
                    let answers = if self.protocol < 2 { Vec::new() } else { self.read_all(&paths).await };
                    Ok(RelayAnswer::Answers { answers })
                }
                RelayRequest::Writes { writes, then } => {
                    let calls: Vec<String> = writes.iter().map(|w| format!("{} {}", w.method, w.path)).collect();
                    self.carried.lock().expect("lock").push(format!("writes {calls:?} then {then:?}"));
                    if self.protocol < 3 {
                        return Ok(RelayAnswer::Wrote { answers: Vec::new(), then: Vec::new() });
                    }
                    let (answers, then) = self.client.edge(&self.edge).run_writes(&writes, &then).await;
                    Ok(RelayAnswer::Wrote { answers, then })
                }
                RelayRequest::Call { method, path, body, then } => {
                    let note = if then.is_empty() {
                        format!("{method} {path}")
                    } else {
                        format!("{method} {path} then {then:?}")
                    };
                    self.carried.lock().expect("lock").push(note);
                    let edge = self.client.edge(&self.edge);
                    match edge.forward(&method, &path, body.as_ref()).await {
                        Ok((status, body)) => {
                            let succeeded = (200..300).contains(&status) && self.protocol >= 2;
                            let then = if succeeded { self.read_all(&then).await } else { Vec::new() };
                            Ok(RelayAnswer::Answer { status, body, then })
                        }
                        Err(error) => Ok(RelayAnswer::Failed { error }),
                    }
                }
                RelayRequest::Fetch { .. } => Err(Failure::Refused { detail: "no packages here".into() }),
            }
        })
    }
}

fn through(relay: &Arc<RecordingRelay>) -> EdgeTarget {
    let route = AgentRoute { agent_id: "a1".into(), relay: relay.clone() };
    EdgeTarget { endpoint: "http://127.0.0.1:8085".into(), auth: edge_client::EdgeAuth::None, via: Via::Agent(route) }
}

fn objects() -> Vec<ObjectRef> {
    vec![ObjectRef::Stream { name: "demo".into() }, ObjectRef::Rule { id: "r1".into() }]
}

const STREAM_SQL: &str = "CREATE STREAM demo () WITH (DATASOURCE=\"t\", FORMAT=\"json\", TYPE=\"mqtt\")";

fn rule() -> serde_json::Value {
    json!({"id": "r1", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]})
}

/// What a rule delivery does on one edge, as the engine does it: version, read back, declare the
/// writes, write the stream, write the rule, check it runs.
async fn deliver(relay: &Arc<RecordingRelay>) -> (String, Vec<Option<serde_json::Value>>, bool) {
    let edge_target = through(relay);
    let edge = relay.client.edge(&edge_target);
    edge.read_ahead(&objects()).await;
    let version = edge.version().await.expect("version");
    let before = edge.read_objects(&objects()).await.expect("read back");
    edge.write_ahead(&[
        Write::replace_stream(StreamKind::Stream, "demo", STREAM_SQL),
        Write::upsert_rule("r1", &rule()),
    ])
    .await;
    edge.replace_stream(StreamKind::Stream, "demo", STREAM_SQL).await.expect("stream");
    edge.read_rule_status_after_write("r1");
    edge.upsert_rule("r1", &rule()).await.expect("rule");
    let running = edge.rule_status("r1").await.expect("status").running;
    (version, before, running)
}

#[tokio::test]
async fn through_an_agent_reads_go_ahead_together_and_writes_go_together_with_the_check() {
    let sim = sim("3.6.0").await;
    let relay = relay_for(&sim, 3);
    let (version, before, running) = deliver(&relay).await;
    assert_eq!((version.as_str(), before, running), ("3.6.0", vec![None, None], true));
    assert_eq!(
        relay.carried(),
        [
            r#"reads ["/api/version", "/api/ekuiper/streams/demo", "/api/ekuiper/rules/r1", "/api/ekuiper/rules/r1/status"]"#,
            r#"writes ["PUT /api/ekuiper/streams/demo", "PUT /api/ekuiper/rules/r1"] then ["/api/ekuiper/rules/r1/status"]"#,
        ],
        "two exchanges for the whole target"
    );

    // Nothing read ahead outlives a write: the second delivery reads the rule as it is now.
    let (_, before, _) = deliver(&relay).await;
    assert!(before.iter().all(Option::is_some), "{before:?}");
}

#[tokio::test]
async fn a_write_that_falls_back_on_404_takes_both_answers_from_the_batch() {
    // eKuiper before 2.2 answers 404 to a PUT of a missing rule: the agent POSTs it instead.
    let sim = sim("3.0.0").await;
    let relay = relay_for(&sim, 3);
    let (_, _, running) = deliver(&relay).await;
    assert!(running);
    assert_eq!(relay.carried().len(), 2, "{:#?}", relay.carried());
    assert_eq!(crate::support::request_count(&sim, 0, "POST /api/ekuiper/rules").await, 1);
}

#[tokio::test]
async fn the_agent_stops_at_the_first_failed_write_and_the_rest_go_one_by_one() {
    let sim = sim("3.6.0").await;
    let relay = relay_for(&sim, 3);
    let edge_target = through(&relay);
    let edge = relay.client.edge(&edge_target);
    let bad_sql = "CREATE STREAM demo () WITH (";
    edge.write_ahead(&[Write::replace_stream(StreamKind::Stream, "demo", bad_sql), Write::upsert_rule("r1", &rule())])
        .await;
    let err = edge.replace_stream(StreamKind::Stream, "demo", bad_sql).await.expect_err("a bad statement");
    assert_eq!(err.status, Some(400), "{err}");
    assert_eq!(
        crate::support::request_count(&sim, 0, "PUT /api/ekuiper/rules/r1").await,
        0,
        "the agent wrote nothing past the failure"
    );
    // What comes after the failure is sent on its own.
    edge.replace_stream(StreamKind::Stream, "demo", STREAM_SQL).await.expect("stream");
    edge.read_rule_status_after_write("r1");
    edge.upsert_rule("r1", &rule()).await.expect("rule");
    assert_eq!(
        relay.carried()[1..],
        ["PUT /api/ekuiper/streams/demo", r#"PUT /api/ekuiper/rules/r1 then ["/api/ekuiper/rules/r1/status"]"#]
    );
}

#[tokio::test]
async fn an_agent_of_an_older_protocol_gets_what_it_understands() {
    let sim = sim("3.6.0").await;
    // Protocol 2: reads together, then each write with its check.
    let relay = relay_for(&sim, 2);
    let (version, before, running) = deliver(&relay).await;
    assert_eq!((version.as_str(), before, running), ("3.6.0", vec![None, None], true));
    assert_eq!(
        relay.carried()[2..],
        ["PUT /api/ekuiper/streams/demo", r#"PUT /api/ekuiper/rules/r1 then ["/api/ekuiper/rules/r1/status"]"#]
    );

    // Protocol 1: one call each.
    let sim = crate::support::sim("3.6.0").await;
    let relay = relay_for(&sim, 1);
    let (version, before, running) = deliver(&relay).await;
    assert_eq!((version.as_str(), before, running), ("3.6.0", vec![None, None], true));
    let carried = relay.carried();
    assert_eq!(carried.len(), 8, "the empty reads and writes, then one call each: {carried:#?}");
    let batches = carried.iter().filter(|call| call.starts_with("reads") || call.starts_with("writes")).count();
    assert_eq!(batches, 2, "{carried:#?}");
}

#[tokio::test]
async fn over_http_nothing_is_read_ahead() {
    let sim = sim("3.6.0").await;
    let client = client();
    let edge_target = target(&sim, 0);
    let edge = client.edge(&edge_target);
    edge.read_ahead(&objects()).await;
    edge.read_rule_status_after_write("r1");
    edge.write_ahead(&[
        Write::replace_stream(StreamKind::Stream, "demo", STREAM_SQL),
        Write::upsert_rule("r1", &rule()),
    ])
    .await;
    assert_eq!(edge.version().await.expect("version"), "3.6.0");
    assert_eq!(crate::support::request_count(&sim, 0, "GET /api/version").await, 1);
    assert_eq!(
        crate::support::request_count(&sim, 0, "PUT /api/ekuiper/streams/demo").await,
        0,
        "nothing written ahead"
    );
}
