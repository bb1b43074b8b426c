//! Agent mode's carriage, seen from the edge client: through a relay, a target's version check and
//! its reads before the first write travel as one exchange, and the status check after a rule's
//! write travels with the write. The relay here makes each call on the simulator itself, as an
//! agent would, and records what it was asked to carry.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::plan::ObjectRef;
use edge_client::{
    AgentRoute, CallAnswer, EdgeClient, EdgeTarget, Failure, Relay, RelayAnswer, RelayFuture, RelayRequest, StreamKind,
    Via,
};
use serde_json::json;

use crate::support::{client, sim, target};

/// Carries each request to an HTTP edge, like an agent of the current protocol, and notes it as
/// `METHOD path [then ...]` or `reads [...]`.
struct RecordingRelay {
    client: EdgeClient,
    edge: EdgeTarget,
    carried: Mutex<Vec<String>>,
    /// Answers nothing to reads, as the server's link does for an agent of the first protocol.
    first_protocol: bool,
}

impl RecordingRelay {
    fn carried(&self) -> Vec<String> {
        self.carried.lock().expect("lock").clone()
    }

    async fn read_all(&self, paths: &[String]) -> Vec<CallAnswer> {
        let edge = self.client.edge(&self.edge);
        let mut answers = Vec::new();
        for path in paths {
            answers.push(match edge.forward("GET", path, None).await {
                Ok((status, body)) => CallAnswer::Answer { status, body },
                Err(error) => CallAnswer::Failed { error },
            });
        }
        answers
    }
}

impl Relay for RecordingRelay {
    fn exchange<'a>(&'a self, _agent_id: &'a str, request: RelayRequest, _wait: Duration) -> RelayFuture<'a> {
        Box::pin(async move {
            match request {
                RelayRequest::Reads { paths } => {
                    self.carried.lock().expect("lock").push(format!("reads {paths:?}"));
                    let answers = if self.first_protocol { Vec::new() } else { self.read_all(&paths).await };
                    Ok(RelayAnswer::Answers { answers })
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
                            let succeeded = (200..300).contains(&status) && !self.first_protocol;
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

/// What a rule delivery does on one edge: version, read back, write the stream, write the rule,
/// check it runs.
async fn deliver(relay: &Arc<RecordingRelay>) -> (String, Vec<Option<serde_json::Value>>, bool) {
    let edge_target = through(relay);
    let edge = relay.client.edge(&edge_target);
    edge.read_ahead(&objects()).await;
    let version = edge.version().await.expect("version");
    let before = edge.read_objects(&objects()).await.expect("read back");
    edge.replace_stream(StreamKind::Stream, "demo", STREAM_SQL).await.expect("stream");
    edge.read_rule_status_after_write("r1");
    let rule = json!({"id": "r1", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]});
    edge.upsert_rule("r1", &rule).await.expect("rule");
    let running = edge.rule_status("r1").await.expect("status").running;
    (version, before, running)
}

#[tokio::test]
async fn through_an_agent_reads_go_ahead_together_and_the_check_goes_with_its_write() {
    let sim = sim("3.6.0").await;
    let relay = Arc::new(RecordingRelay {
        client: client(),
        edge: target(&sim, 0),
        carried: Mutex::default(),
        first_protocol: false,
    });
    let (version, before, running) = deliver(&relay).await;
    assert_eq!((version.as_str(), before, running), ("3.6.0", vec![None, None], true));
    assert_eq!(
        relay.carried(),
        [
            r#"reads ["/api/version", "/api/ekuiper/streams/demo", "/api/ekuiper/rules/r1", "/api/ekuiper/rules/r1/status"]"#,
            "PUT /api/ekuiper/streams/demo",
            r#"PUT /api/ekuiper/rules/r1 then ["/api/ekuiper/rules/r1/status"]"#,
        ],
        "three exchanges for the whole target"
    );

    // Nothing read ahead outlives a write: the second delivery reads the rule as it is now.
    let (_, before, _) = deliver(&relay).await;
    assert!(before.iter().all(Option::is_some), "{before:?}");
}

#[tokio::test]
async fn an_agent_of_the_first_protocol_gets_each_call_on_its_own() {
    let sim = sim("3.6.0").await;
    let relay = Arc::new(RecordingRelay {
        client: client(),
        edge: target(&sim, 0),
        carried: Mutex::default(),
        first_protocol: true,
    });
    let (version, before, running) = deliver(&relay).await;
    assert_eq!((version.as_str(), before, running), ("3.6.0", vec![None, None], true));
    let carried = relay.carried();
    assert_eq!(carried.len(), 7, "the empty reads, then one call each: {carried:#?}");
    assert!(carried[1..].iter().all(|call| !call.starts_with("reads")), "{carried:#?}");
}

#[tokio::test]
async fn over_http_nothing_is_read_ahead() {
    let sim = sim("3.6.0").await;
    let client = client();
    let edge_target = target(&sim, 0);
    let edge = client.edge(&edge_target);
    edge.read_ahead(&objects()).await;
    edge.read_rule_status_after_write("r1");
    assert_eq!(edge.version().await.expect("version"), "3.6.0");
    assert_eq!(crate::support::request_count(&sim, 0, "GET /api/version").await, 1);
}
