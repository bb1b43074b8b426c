//! Agent mode against a real Mosquitto: deliveries, plans, rollbacks, drift checks and probes
//! through agents; forged, replayed and expired commands; an agent killed mid-command; the broker
//! restarted under a delivery; per-agent credentials with an ACL; plugins by link and in chunks.
//!
//! Tests share the machine's broker (127.0.0.1:1883, anonymous) with agent ids of their own;
//! tests of credentials and restarts run a Mosquitto of their own on a free port.

use std::time::Duration;

use agent::keys::CommandSigner;
use agent::mqtt::{BrokerUrl, Incoming, SessionOptions};
use agent::protocol::{Command, Op, Outcome, Refusal, Reply, SignedCommand, commands_topic, results_topic};
use neuronex_sim::RunningSim;
use neuronex_sim::agents::{AgentFleet, SimAgents};
use serde_json::{Value, json};

use crate::support::{TestApp, rule_doc, sim, sim_state};

pub const SHARED_BROKER: &str = "mqtt://127.0.0.1:1883";

/// How long agents may take to connect and subscribe.
const READY: Duration = Duration::from_secs(60);

/// Agent ids no other test (or run) uses.
fn unique_prefix(test: &str) -> String {
    format!("{test}-{:08x}-", rand::random::<u32>())
}

pub struct AgentSetup {
    pub sim: RunningSim,
    pub fleet: AgentFleet,
    pub edges: Vec<String>,
}

impl TestApp {
    pub async fn command_key(&self) -> String {
        let answer = self.get(&self.p("/agents/command-key")).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.body["command_key"].as_str().expect("key").to_owned()
    }

    /// `count` simulator instances, each with an embedded agent on `broker`, registered as
    /// agent-mode services; answers once every agent listens.
    pub async fn agent_fleet(&self, broker: &str, count: u32, test: &str) -> AgentSetup {
        self.agent_fleet_with(count, SimAgents { id_prefix: unique_prefix(test), ..SimAgents::new(broker, "") }).await
    }

    pub async fn agent_fleet_with(&self, count: u32, options: SimAgents) -> AgentSetup {
        let sim = sim(count, &["3.6.0"]).await;
        let options = SimAgents { command_key: self.command_key().await, ..options };
        let rows: Vec<Value> = (0..count as usize)
            .map(|k| json!({"name": format!("gw-{k}"), "transport": "agent", "agent_id": options.agent_id(k), "tags": ["agents"]}))
            .collect();
        let fleet = AgentFleet::start(&sim, options).expect("agents");
        fleet.ready(READY).await.expect("agents listen");
        let answer = self.post(&self.p("/edge-services/import"), json!(rows)).await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        let edges: Vec<String> = answer.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|e| e["id"].as_str().expect("id").to_owned())
            .collect();
        AgentSetup { sim, fleet, edges }
    }
}

async fn with_broker(broker: &str) -> TestApp {
    let broker = broker.to_owned();
    TestApp::spawn_with(move |config| config.mqtt_url = Some(broker)).await
}

#[tokio::test]
async fn deliveries_plans_rollbacks_drift_checks_and_probes_work_through_agents() {
    let app = with_broker(SHARED_BROKER).await;
    let setup = app.agent_fleet(SHARED_BROKER, 5, "flow").await;

    // Probes go through the agent: version and status as over HTTP.
    let probed = app.post(&app.p(&format!("/edge-services/{}/probe", setup.edges[0])), json!({})).await;
    assert_eq!(probed.status, 200, "{}", probed.text);
    assert_eq!(
        (probed.body["status"].as_str(), probed.body["version"].as_str()),
        (Some("online"), Some("3.6.0")),
        "{}",
        probed.text
    );
    assert_eq!(probed.body["transport"], "agent");
    assert!(probed.body["agent_id"].as_str().is_some_and(|id| id.starts_with("flow-")));

    // Junk on the results and status topics (anyone on an open broker can publish it) is dropped:
    // the server neither stops nor loses the agent. (The test reads its own junk back, so it knows
    // the broker carried it.)
    let agent_id = setup.fleet.agent_id(0);
    let status = agent::protocol::status_topic(&agent_id);
    let mut junk = Listener::on(SHARED_BROKER, &[results_topic(&agent_id), status.clone()]).await;
    let last = vec![0xff; 100_000];
    for (topic, payload) in [
        (results_topic(&agent_id), b"not json".to_vec()),
        (results_topic(&agent_id), br#"{"id": 7, "outcome": []}"#.to_vec()),
        (status.clone(), br#"{"status": "sleeping", "version": "x", "at": 0}"#.to_vec()),
        (status.clone(), last.clone()),
    ] {
        junk.publisher.publish(&topic, payload, false).await.expect("publish");
    }
    while junk.next().await != (status.clone(), last.clone()) {}
    let template = app.template("agents", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let targets = json!({"ids": setup.edges});
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": targets})).await;
    assert_eq!(delivery["state"], "succeeded", "{delivery}");
    for k in 0..5 {
        let state = sim_state(&setup.sim, k).await;
        assert!(state["ekuiper"]["rules"]["r1"].is_object(), "instance {k}: {state}");
    }

    // A plan reads through the agent and finds nothing to change.
    let planned =
        app.post(&app.p("/deliveries"), json!({"template_id": template, "targets": targets, "mode": "plan"})).await;
    assert_eq!(planned.status, 202, "{}", planned.text);
    let id = planned.body["id"].as_str().expect("id");
    app.events(id).await;
    let plan = app.get(&app.p(&format!("/deliveries/{id}/plan"))).await;
    assert_eq!(plan.status, 200, "{}", plan.text);
    let summary = &plan.body["summary"];
    assert_eq!((summary["create"].as_u64(), summary["update"].as_u64()), (Some(0), Some(0)), "{}", plan.text);
    assert_eq!(summary["unchanged"], 10, "a stream and a rule on each of 5: {}", plan.text);

    // Drift: a rule changed on one gateway is found through its agent.
    let url = format!("{}/i/2/api/ekuiper/rules/r1", setup.sim.base_url);
    let changed = json!({"id": "r1", "sql": "SELECT * FROM s WHERE x > 1", "actions": [{"log": {}}]});
    let answer = reqwest::Client::new().put(url).json(&changed).send().await.expect("sim");
    assert!(answer.status().is_success());
    let check = app.post(&app.p(&format!("/edge-services/{}/check", setup.edges[2])), json!({})).await;
    assert_eq!(check.status, 200, "{}", check.text);
    assert_eq!(check.body["state"], "drifted", "{}", check.text);
    let check = app.post(&app.p(&format!("/edge-services/{}/check", setup.edges[1])), json!({})).await;
    assert_eq!(check.body["state"], "in_sync", "{}", check.text);

    // A rollback puts back what each gateway held before: no rule (forced, since one gateway was
    // changed after the delivery).
    let rollback = app
        .post(&app.p(&format!("/deliveries/{}/rollback", delivery["id"].as_str().expect("id"))), json!({"force": true}))
        .await;
    assert_eq!(rollback.status, 202, "{}", rollback.text);
    let rolled = rollback.body["id"].as_str().expect("id");
    app.events(rolled).await;
    let rolled = app.get(&app.p(&format!("/deliveries/{rolled}"))).await.body;
    assert_eq!(rolled["state"], "succeeded", "{:?}", app.targets(&rolled).await);
    for k in 0..5 {
        let state = sim_state(&setup.sim, k).await;
        assert!(state["ekuiper"]["rules"].get("r1").is_none(), "instance {k}: {state}");
    }
}

/// A bare MQTT session of the test's own: publishes to an agent's commands topic and reads its
/// results topic, as a forger (or a replaying eavesdropper) on an open broker could.
struct Listener {
    publisher: agent::mqtt::Publisher,
    events: agent::mqtt::Events,
}

impl Listener {
    async fn on(broker: &str, topics: &[String]) -> Listener {
        let options = SessionOptions::new(format!("test-{:016x}", rand::random::<u64>()));
        let (publisher, mut events) =
            agent::mqtt::connect(&BrokerUrl::parse(broker).expect("url"), &options).expect("session");
        let mut acks = 0;
        while acks < topics.len() {
            match tokio::time::timeout(Duration::from_secs(30), events.next()).await.expect("broker answers") {
                Ok(Incoming::Connected { .. }) => {
                    for topic in topics {
                        publisher.subscribe(topic).await.expect("subscribe");
                    }
                }
                Ok(Incoming::Subscribed) => acks += 1,
                Ok(Incoming::SubscriptionRefused) => panic!("subscription refused"),
                Ok(_) => {}
                Err(err) => panic!("broker: {err}"),
            }
        }
        Listener { publisher, events }
    }

    /// The next message on one of the topics, as (topic, payload).
    async fn next(&mut self) -> (String, Vec<u8>) {
        loop {
            match tokio::time::timeout(Duration::from_secs(60), self.events.next()).await.expect("a message in time") {
                Ok(Incoming::Message { topic, payload }) => return (topic, payload),
                Ok(_) => {}
                Err(err) => panic!("broker: {err}"),
            }
        }
    }

    /// The next reply, progress included.
    async fn reply(&mut self) -> Reply {
        loop {
            let (topic, payload) = self.next().await;
            if topic.ends_with("/results") {
                return serde_json::from_slice(&payload).expect("reply");
            }
        }
    }

    /// The next final reply (progress skipped).
    async fn answer(&mut self) -> Reply {
        loop {
            let reply = self.reply().await;
            if reply.outcome != Outcome::Accepted {
                return reply;
            }
        }
    }

    async fn send(&self, agent_id: &str, signed: &SignedCommand) {
        let payload = serde_json::to_vec(signed).expect("json");
        self.publisher.publish(&commands_topic(agent_id), payload, false).await.expect("publish");
    }
}

fn version_call(agent_id: &str, id: &str, issued_at: i64, expires_at: i64) -> Command {
    Command {
        id: id.to_owned(),
        agent_id: agent_id.to_owned(),
        issued_at,
        expires_at,
        op: Op::Call { method: "GET".into(), path: "/api/version".into(), body: None, then: Vec::new() },
    }
}

fn refusal(reply: &Reply) -> Option<Refusal> {
    match &reply.outcome {
        Outcome::Refused { reason, .. } => Some(*reason),
        _ => None,
    }
}

#[tokio::test]
async fn forged_replayed_expired_and_misdirected_commands_are_refused_and_reported() {
    let sim = sim(1, &["3.6.0"]).await;
    let signer = CommandSigner::generate();
    let state = tempfile::tempdir().expect("state");
    let options = SimAgents {
        id_prefix: unique_prefix("refuse"),
        state_dir: Some(state.path().to_owned()),
        ..SimAgents::new(SHARED_BROKER, &signer.public_pem().expect("pem"))
    };
    let fleet = AgentFleet::start(&sim, options).expect("agents");
    fleet.ready(READY).await.expect("agents listen");
    let agent_id = fleet.agent_id(0);
    let mut listener = Listener::on(SHARED_BROKER, &[results_topic(&agent_id)]).await;
    let now = agent::now_ms();

    // A genuine command runs.
    let genuine = signer.sign(&version_call(&agent_id, "c-genuine", now, now + 60_000));
    listener.send(&agent_id, &genuine).await;
    let reply = listener.answer().await;
    assert_eq!(reply.id, "c-genuine");
    assert!(matches!(&reply.outcome, Outcome::Answer { status: 200, body, .. } if body.contains("3.6.0")), "{reply:?}");

    // Several reads in one command, answered in order.
    let reads = Op::Reads { paths: vec!["/api/version".into(), "/api/ekuiper/rules/none".into()] };
    listener
        .send(&agent_id, &signer.sign(&Command { op: reads, ..version_call(&agent_id, "c-reads", now, now + 60_000) }))
        .await;
    let read = listener.answer().await;
    let Outcome::Answers { answers } = &read.outcome else { panic!("{read:?}") };
    let statuses: Vec<u16> = answers
        .iter()
        .map(|answer| match answer {
            edge_client::CallAnswer::Answer { status, .. } => *status,
            edge_client::CallAnswer::Failed { error } => panic!("{error}"),
        })
        .collect();
    assert_eq!(statuses, [200, 404], "{read:?}");

    // Several writes in one command: made in order, up to the first that fails; nothing after it.
    let write = |path: &str, body: serde_json::Value| edge_client::WriteCall {
        method: "PUT".into(),
        path: path.into(),
        body: Some(body),
        if_missing: None,
    };
    let writes = Op::Writes {
        writes: vec![
            write(
                "/api/ekuiper/streams/w1",
                json!({"sql": "CREATE STREAM w1 () WITH (DATASOURCE=\"t\", TYPE=\"mqtt\")"}),
            ),
            write("/api/ekuiper/streams/w2", json!({"sql": "CREATE STREAM w2 () WITH ("})),
            write(
                "/api/ekuiper/streams/w3",
                json!({"sql": "CREATE STREAM w3 () WITH (DATASOURCE=\"t\", TYPE=\"mqtt\")"}),
            ),
        ],
        then: vec!["/api/ekuiper/streams".into()],
    };
    listener
        .send(
            &agent_id,
            &signer.sign(&Command { op: writes, ..version_call(&agent_id, "c-writes", now, now + 60_000) }),
        )
        .await;
    let wrote = listener.answer().await;
    let Outcome::Wrote { answers, then } = &wrote.outcome else { panic!("{wrote:?}") };
    let statuses: Vec<Option<u16>> = answers
        .iter()
        .map(|answer| match answer {
            edge_client::CallAnswer::Answer { status, .. } => Some(*status),
            edge_client::CallAnswer::Failed { .. } => None,
        })
        .collect();
    assert_eq!(statuses, [Some(200), Some(400)], "{wrote:?}");
    assert!(then.is_empty(), "no reads after a failed write: {wrote:?}");
    assert!(
        sim_state(&sim, 0).await["requests"].get("PUT /api/ekuiper/streams/w3").is_none(),
        "nothing past the failure"
    );

    // Replayed at once: the kept answer is sent again, nothing runs twice.
    listener.send(&agent_id, &genuine).await;
    assert_eq!(listener.answer().await, reply);

    // Not a signed command at all.
    listener.publisher.publish(&commands_topic(&agent_id), b"\x00 not json".to_vec(), false).await.expect("publish");
    let reply = listener.answer().await;
    assert_eq!(refusal(&reply), Some(Refusal::Malformed), "{reply:?}");

    let cases = [
        (
            "signed by another key",
            CommandSigner::generate().sign(&version_call(&agent_id, "c-forged", now, now + 60_000)),
            Refusal::BadSignature,
        ),
        (
            "altered after signing",
            SignedCommand {
                command: genuine.command.replace("c-genuine", "c-altered"),
                signature: genuine.signature.clone(),
            },
            Refusal::BadSignature,
        ),
        (
            "for another agent",
            signer.sign(&version_call("someone-else", "c-other", now, now + 60_000)),
            Refusal::WrongAgent,
        ),
        ("expired", signer.sign(&version_call(&agent_id, "c-old", now - 600_000, now - 300_000)), Refusal::Expired),
        (
            "from the future",
            signer.sign(&version_call(&agent_id, "c-future", now + 600_000, now + 660_000)),
            Refusal::Expired,
        ),
        (
            "outside the NeuronEX API",
            signer.sign(&Command {
                op: Op::Call { method: "GET".into(), path: "/etc/passwd".into(), body: None, then: Vec::new() },
                ..version_call(&agent_id, "c-path", now, now + 60_000)
            }),
            Refusal::Malformed,
        ),
        (
            "reads outside the NeuronEX API",
            signer.sign(&Command {
                op: Op::Reads { paths: vec!["/api/version".into(), "/api/../etc/passwd".into()] },
                ..version_call(&agent_id, "c-reads-path", now, now + 60_000)
            }),
            Refusal::Malformed,
        ),
        (
            "more reads than one command may carry",
            signer.sign(&Command {
                op: Op::Reads { paths: vec!["/api/version".into(); edge_client::MAX_READS + 1] },
                ..version_call(&agent_id, "c-reads-many", now, now + 60_000)
            }),
            Refusal::Malformed,
        ),
        (
            "a write whose reads leave the NeuronEX API",
            signer.sign(&Command {
                op: Op::Call {
                    method: "DELETE".into(),
                    path: "/api/ekuiper/rules/r9".into(),
                    body: None,
                    then: vec!["/etc/passwd".into()],
                },
                ..version_call(&agent_id, "c-then-path", now, now + 60_000)
            }),
            Refusal::Malformed,
        ),
        (
            "writes outside the NeuronEX API",
            signer.sign(&Command {
                op: Op::Writes {
                    writes: vec![write("/api/version", json!({})), write("/status", json!({}))],
                    then: Vec::new(),
                },
                ..version_call(&agent_id, "c-writes-path", now, now + 60_000)
            }),
            Refusal::Malformed,
        ),
        (
            "a write that falls back more than once",
            signer.sign(&Command {
                op: Op::Writes {
                    writes: vec![edge_client::WriteCall {
                        if_missing: Some(Box::new(edge_client::WriteCall {
                            if_missing: Some(Box::new(write("/api/ekuiper/rules/c", json!({})))),
                            ..write("/api/ekuiper/rules/b", json!({}))
                        })),
                        ..write("/api/ekuiper/rules/a", json!({}))
                    }],
                    then: Vec::new(),
                },
                ..version_call(&agent_id, "c-writes-chain", now, now + 60_000)
            }),
            Refusal::Malformed,
        ),
        (
            "more writes than one command may carry",
            signer.sign(&Command {
                op: Op::Writes {
                    writes: vec![write("/api/ekuiper/streams/w1", json!({})); edge_client::MAX_WRITES + 1],
                    then: Vec::new(),
                },
                ..version_call(&agent_id, "c-writes-many", now, now + 60_000)
            }),
            Refusal::Malformed,
        ),
        (
            "writes whose reads leave the NeuronEX API",
            signer.sign(&Command {
                op: Op::Writes { writes: vec![write("/api/ekuiper/streams/w1", json!({}))], then: vec!["/x".into()] },
                ..version_call(&agent_id, "c-writes-then", now, now + 60_000)
            }),
            Refusal::Malformed,
        ),
    ];
    for (case, signed, expected) in cases {
        listener.send(&agent_id, &signed).await;
        let reply = listener.answer().await;
        assert_eq!(refusal(&reply), Some(expected), "{case}: {reply:?}");
    }

    // Killed and started again, the agent still knows what it ran: a replay is refused.
    fleet.kill(0).await;
    fleet.start_one(0).expect("restart");
    fleet.ready_one(0, READY).await.expect("the agent listens again");
    listener.send(&agent_id, &genuine).await;
    let reply = listener.answer().await;
    assert_eq!((reply.id.as_str(), refusal(&reply)), ("c-genuine", Some(Refusal::AlreadyRun)), "{reply:?}");
}

#[tokio::test]
async fn an_agent_killed_mid_command_fails_its_target_with_the_reason_and_does_not_run_it_again() {
    let app = with_broker(SHARED_BROKER).await;
    let state = tempfile::tempdir().expect("state");
    let options = SimAgents {
        id_prefix: unique_prefix("killed"),
        state_dir: Some(state.path().to_owned()),
        ..SimAgents::new(SHARED_BROKER, "")
    };
    let setup = app.agent_fleet_with(1, options).await;
    let agent_id = setup.fleet.agent_id(0);
    // Every call on the gateway takes 10 s: the agent is still in its first call when it dies.
    setup
        .sim
        .sim
        .set_faults(Some(0), Some(neuronex_sim::Faults { latency_ms: 10_000, ..neuronex_sim::Faults::default() }));
    let mut listener = Listener::on(SHARED_BROKER, &[commands_topic(&agent_id), results_topic(&agent_id)]).await;

    let template = app.template("killed", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let body = json!({"template_id": template, "targets": {"ids": setup.edges}, "options": {"retries": 0, "timeout_secs": 60}});
    let started = app.post(&app.p("/deliveries"), body).await;
    assert_eq!(started.status, 202, "{}", started.text);
    // Killed once it has taken the command (it says so on its results topic).
    let command = loop {
        let (topic, payload) = listener.next().await;
        if topic.ends_with("/commands") {
            break payload;
        }
    };
    loop {
        let reply = listener.reply().await;
        if reply.outcome == Outcome::Accepted {
            break;
        }
    }
    setup.fleet.kill(0).await;

    let id = started.body["id"].as_str().expect("id");
    app.events(id).await;
    let delivery = app.get(&app.p(&format!("/deliveries/{id}"))).await.body;
    assert_eq!(delivery["state"], "failed", "{delivery}");
    let target = &app.targets(&delivery).await[0];
    let reason = target["reason"].as_str().unwrap_or_default();
    // "took the command but did not answer" when the delivery's own call was the one it died in;
    // plain "did not answer" when it died in the registration's probe and the delivery's call
    // reached a dead agent.
    assert!(
        reason.contains(&format!("the agent {agent_id} ")) && reason.contains("did not answer within 7 s"),
        "{reason}"
    );
    assert!(sim_state(&setup.sim, 0).await["ekuiper"]["rules"].get("r1").is_none());

    // Started again, the agent refuses the command it was killed in (redelivered or replayed).
    setup.sim.sim.set_faults(Some(0), None);
    setup.fleet.start_one(0).expect("restart");
    setup.fleet.ready_one(0, READY).await.expect("the agent listens again");
    listener.publisher.publish(&commands_topic(&agent_id), command, false).await.expect("replay");
    let reply = listener.answer().await;
    assert_eq!(refusal(&reply), Some(Refusal::AlreadyRun), "{reply:?}");
}

/// A Mosquitto of the test's own on a free port (the machine's shared broker is never restarted).
struct OwnBroker {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<tokio::process::Child>,
    log: Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
}

impl OwnBroker {
    /// Starts Mosquitto with `extra` configuration lines (files it names go in `dir`).
    async fn start(extra: &str) -> OwnBroker {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let dir = tempfile::tempdir().expect("dir");
        let config = format!(
            "listener {port} 127.0.0.1\npersistence false\nset_tcp_nodelay true\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n{extra}\n"
        );
        std::fs::write(dir.path().join("mosquitto.conf"), config).expect("config");
        let mut broker = OwnBroker { port, dir, child: None, log: None };
        broker.run().await;
        broker
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn url(&self, credentials: Option<(&str, &str)>) -> String {
        match credentials {
            Some((user, password)) => format!("mqtt://{user}:{password}@127.0.0.1:{}", self.port),
            None => format!("mqtt://127.0.0.1:{}", self.port),
        }
    }

    /// (Re)starts the process and waits for its "running" line.
    async fn run(&mut self) {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(mosquitto())
            .arg("-c")
            .arg(self.path("mosquitto.conf"))
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("mosquitto starts (scripts/ensure-services installs it)");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = tx.send(line);
            }
        });
        self.child = Some(child);
        self.log = Some(rx);
        self.wait_for_log("running").await;
    }

    async fn wait_for_log(&mut self, needle: &str) {
        let log = self.log.as_mut().expect("running");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let line = tokio::time::timeout_at(deadline, log.recv()).await.expect("the broker logs in time");
            let Some(line) = line else { panic!("the broker stopped before logging {needle:?}: {seen:#?}") };
            if line.contains(needle) {
                return;
            }
            seen.push(line);
        }
    }

    /// Killed as a crash (or a power cut) would: sessions and queued messages are gone.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGHUP: Mosquitto reads its password and ACL files again.
    async fn reload(&mut self) {
        let pid = self.child.as_ref().and_then(|c| c.id()).expect("running");
        let status = std::process::Command::new("kill").arg("-HUP").arg(pid.to_string()).status().expect("kill");
        assert!(status.success());
        self.wait_for_log("Reloading config").await;
    }
}

fn mosquitto() -> &'static str {
    if std::path::Path::new("/usr/sbin/mosquitto").exists() { "/usr/sbin/mosquitto" } else { "mosquitto" }
}

#[tokio::test]
async fn every_target_reaches_a_final_state_when_the_broker_restarts_under_a_delivery() {
    let mut broker = OwnBroker::start("allow_anonymous true").await;
    let url = broker.url(None);
    let app = with_broker(&url).await;
    let setup = app.agent_fleet(&url, 12, "restart").await;
    // Each call takes 200 ms, so the delivery is under way when the broker goes.
    setup.sim.sim.set_faults(None, Some(neuronex_sim::Faults { latency_ms: 200, ..neuronex_sim::Faults::default() }));
    let template = app.template("restart", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let body = json!({"template_id": template, "targets": {"ids": setup.edges},
                      "options": {"concurrency": 4, "retries": 3, "timeout_secs": 90}});
    let started = app.post(&app.p("/deliveries"), body).await;
    assert_eq!(started.status, 202, "{}", started.text);
    let id = started.body["id"].as_str().expect("id").to_owned();
    app.events_until(&id, |event| event.name == "target").await;

    broker.kill().await;
    broker.run().await;

    app.events(&id).await;
    let delivery = app.get(&app.p(&format!("/deliveries/{id}"))).await.body;
    let counts = &delivery["counts"];
    assert_eq!(counts["pending"], 0, "{delivery}");
    assert_eq!(counts["running"], 0, "{delivery}");
    assert_eq!(counts["succeeded"].as_u64().unwrap_or(0) + counts["failed"].as_u64().unwrap_or(0), 12, "{delivery}");
    // Retries over the reconnected broker bring every gateway there.
    assert_eq!(delivery["state"], "succeeded", "{:?}", app.targets(&delivery).await);
}

const ACL: &str = "user edgefleet\ntopic readwrite edgefleet/v1/agents/#\n\n\
pattern read edgefleet/v1/agents/%u/commands\npattern write edgefleet/v1/agents/%u/results\n\
pattern write edgefleet/v1/agents/%u/status\n";

/// Writes the broker's password file from the server's list plus edgefleet's own user.
async fn write_password_file(app: &TestApp, broker: &OwnBroker) {
    let answer = app.get("/api/v1/agents/mosquitto-passwd").await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let file = broker.path("passwd");
    std::fs::write(&file, &answer.text).expect("passwd");
    let status = std::process::Command::new("mosquitto_passwd")
        .arg("-b")
        .arg(&file)
        .args(["edgefleet", "server-secret"])
        .status()
        .expect("mosquitto_passwd");
    assert!(status.success());
}

/// Connects as `user` and answers whether the broker let it in.
async fn can_sign_in(broker: &OwnBroker, user: &str, password: &str) -> bool {
    let options = SessionOptions {
        username: Some(user.to_owned()),
        password: Some(password.to_owned()),
        ..SessionOptions::new(format!("probe-{:016x}", rand::random::<u64>()))
    };
    let (publisher, mut events) =
        agent::mqtt::connect(&BrokerUrl::parse(&broker.url(None)).expect("url"), &options).expect("session");
    let outcome = loop {
        match tokio::time::timeout(Duration::from_secs(30), events.next()).await.expect("the broker answers") {
            Ok(Incoming::Connected { .. }) => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    publisher.disconnect().await;
    outcome
}

#[tokio::test]
async fn agents_get_their_own_credentials_and_the_acl_keeps_each_to_its_own_topics() {
    let mut broker = OwnBroker::start("").await;
    std::fs::write(broker.path("acl"), ACL).expect("acl");
    let app = with_broker(&broker.url(Some(("edgefleet", "server-secret")))).await;
    let key = app.command_key().await;
    let prefixes = [unique_prefix("acl-a"), unique_prefix("acl-b")];
    let mut edges = Vec::new();
    let mut credentials = Vec::new();
    for prefix in &prefixes {
        let agent_id = format!("{prefix}0");
        let created = app
            .post(&app.p("/edge-services"), json!({"name": agent_id, "transport": "agent", "agent_id": agent_id}))
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let id = created.body["id"].as_str().expect("id").to_owned();
        let issued = app.post(&app.p(&format!("/edge-services/{id}/agent-credentials")), json!({})).await;
        assert_eq!(issued.status, 200, "{}", issued.text);
        assert_eq!(issued.body["username"], agent_id.as_str());
        assert_eq!(issued.body["command_key"], key.as_str());
        assert_eq!(issued.body["mqtt_url"], broker.url(None).as_str(), "without the server's credentials");
        let listed = app.get(&app.p(&format!("/edge-services/{id}"))).await;
        assert_eq!(listed.body["agent_credentials_issued"], true);
        assert!(!listed.text.contains(issued.body["password"].as_str().expect("password")), "never shown again");
        edges.push(id);
        credentials.push((agent_id, issued.body["password"].as_str().expect("password").to_owned()));
    }
    write_password_file(&app, &broker).await;
    std::fs::OpenOptions::new()
        .append(true)
        .open(broker.path("mosquitto.conf"))
        .and_then(|mut f| {
            use std::io::Write;
            writeln!(
                f,
                "allow_anonymous false\npassword_file {}\nacl_file {}",
                broker.path("passwd").display(),
                broker.path("acl").display()
            )
        })
        .expect("config");
    broker.kill().await;
    broker.run().await;

    // Each agent signs in with its own credentials and works.
    let mut fleets = Vec::new();
    let mut sims = Vec::new();
    for (prefix, (user, password)) in prefixes.iter().zip(&credentials) {
        let sim = sim(1, &["3.6.0"]).await;
        let options = SimAgents {
            id_prefix: prefix.clone(),
            username: Some(user.clone()),
            password: Some(password.clone()),
            ..SimAgents::new(&broker.url(None), &key)
        };
        let fleet = AgentFleet::start(&sim, options).expect("agent");
        fleet.ready(READY).await.expect("agents listen");
        fleets.push(fleet);
        sims.push(sim);
    }
    let template = app.template("acl", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"ids": edges}})).await;
    assert_eq!(delivery["state"], "succeeded", "{:?}", app.targets(&delivery).await);

    // Without a password, or with another's, nobody gets in.
    let (a, a_password) = &credentials[0];
    let (b, b_password) = &credentials[1];
    assert!(!can_sign_in(&broker, a, b_password).await);
    assert!(!can_sign_in(&broker, a, "").await);
    assert!(can_sign_in(&broker, a, a_password).await);

    // Agent A cannot read B's commands, nor write B's results.
    let options = SessionOptions {
        username: Some(a.clone()),
        password: Some(a_password.clone()),
        ..SessionOptions::new(format!("spy-{:016x}", rand::random::<u64>()))
    };
    let (spy, mut spy_events) =
        agent::mqtt::connect(&BrokerUrl::parse(&broker.url(None)).expect("url"), &options).expect("session");
    // Mosquitto acknowledges a denied subscription under MQTT 3.1.1 and then delivers nothing on it.
    let mut acks = 0;
    while acks < 2 {
        match tokio::time::timeout(Duration::from_secs(30), spy_events.next()).await.expect("broker") {
            Ok(Incoming::Connected { .. }) => {
                spy.subscribe(&commands_topic(b)).await.expect("subscribe");
                spy.subscribe(&commands_topic(a)).await.expect("subscribe");
            }
            Ok(Incoming::Subscribed | Incoming::SubscriptionRefused) => acks += 1,
            Ok(_) => {}
            Err(err) => panic!("{err}"),
        }
    }
    let mut server =
        Listener::on(&broker.url(Some(("edgefleet", "server-secret"))), &[agent::protocol::ALL_RESULTS.to_owned()])
            .await;
    server.publisher.publish(&commands_topic(b), b"for B".to_vec(), false).await.expect("publish");
    server.publisher.publish(&commands_topic(a), b"for A".to_vec(), false).await.expect("publish");
    // Both are in order on one connection: had A been let read B's topic, B's would come first.
    // (A session sends only while its events are read: both are read here.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let first = loop {
        let event = tokio::select! {
            event = spy_events.next() => event,
            _ = server.events.next() => continue,
            () = tokio::time::sleep_until(deadline) => panic!("A got nothing in time"),
        };
        match event {
            Ok(Incoming::Message { topic, payload }) => break (topic, payload),
            Ok(_) => {}
            Err(err) => panic!("{err}"),
        }
    };
    assert_eq!(first, (commands_topic(a), b"for A".to_vec()), "A read B's commands");

    let mut observer = server;
    let forged = Reply {
        id: "forged".into(),
        agent_id: b.clone(),
        outcome: Outcome::Answer { status: 200, body: "{}".into(), then: Vec::new() },
    };
    let marker = Reply { id: "marker".into(), agent_id: a.clone(), outcome: Outcome::Accepted };
    spy.publish(&results_topic(b), serde_json::to_vec(&forged).expect("json"), false).await.expect("publish");
    spy.publish(&results_topic(a), serde_json::to_vec(&marker).expect("json"), false).await.expect("publish");
    let pump = tokio::spawn(async move { while spy_events.next().await.is_ok() {} });
    // (Agent A's own refusal of the "for A" garbage may come in between.)
    loop {
        let reply = observer.reply().await;
        assert_ne!(reply.id, "forged", "B's results topic took A's message");
        if reply.id == "marker" {
            break;
        }
    }
    pump.abort();

    // Rotating A's credentials: the old password stops working once the broker reloads its users.
    let issued = app.post(&app.p(&format!("/edge-services/{}/agent-credentials", edges[0])), json!({})).await;
    assert_eq!(issued.status, 200, "{}", issued.text);
    let new_password = issued.body["password"].as_str().expect("password").to_owned();
    assert_ne!(&new_password, a_password);
    write_password_file(&app, &broker).await;
    broker.reload().await;
    assert!(!can_sign_in(&broker, a, a_password).await);
    assert!(can_sign_in(&broker, a, &new_password).await);
    let _ = b;
    let audit = app.get("/api/v1/audit?action=edge_service.agent_credentials").await;
    assert_eq!(audit.body["total"], 3, "{}", audit.text);
    assert!(!audit.text.contains(&new_password));
}

/// A plugin package over several chunks: the Python plugin with a large, incompressible model file.
fn large_plugin(name: &str) -> Vec<u8> {
    let meta = format!(r#"{{"version":"v1.0.0","language":"python","executable":"{name}.py","sources":["pyjson"]}}"#);
    let model: Vec<u8> = (0..700_000u32).map(|_| rand::random::<u8>()).collect();
    crate::support::zip_of(&[
        (&format!("{name}.json"), meta.as_bytes()),
        (&format!("{name}.py"), b"print('plugin')\n"),
        ("sources/pyjson.yaml", b"default: {}\n"),
        ("model.bin", &model),
    ])
}

#[tokio::test]
async fn plugins_reach_agents_by_their_signed_link_or_in_chunks_when_the_server_is_out_of_reach() {
    for (case, public_url) in [("by link", None), ("in chunks", Some("http://127.0.0.1:9"))] {
        let app = TestApp::spawn_with(|config| {
            config.mqtt_url = Some(SHARED_BROKER.into());
            config.public_url = public_url.map(str::to_owned);
        })
        .await;
        let setup = app.agent_fleet(SHARED_BROKER, 2, "plugins").await;
        let package = large_plugin("pysam");
        let uploaded = app.upload(Some("pysam"), Some(package)).await;
        assert_eq!(uploaded.status, 201, "{case}: {}", uploaded.text);
        let plugin = uploaded.body["id"].as_str().expect("id");
        let (delivery, _) = app.deliver(json!({"plugin_id": plugin, "targets": {"ids": setup.edges}})).await;
        assert_eq!(delivery["state"], "succeeded", "{case}: {:?}", app.targets(&delivery).await);
        for k in 0..2 {
            let state = sim_state(&setup.sim, k).await;
            assert_eq!(state["ekuiper"]["plugins"]["pysam"]["language"], "python", "{case}: {state}");
        }
    }
}

#[tokio::test]
async fn agent_mode_registrations_are_checked_and_a_server_without_a_broker_says_so() {
    let app = TestApp::spawn().await;
    let edges = app.p("/edge-services");
    let cases = [
        (json!({"name": "a", "transport": "agent"}), 422, "invalid_edge_service", "needs an agent_id"),
        (json!({"name": "a", "transport": "agent", "agent_id": "a/b"}), 422, "invalid_edge_service", "not '/'"),
        (json!({"name": "a", "transport": "agent", "agent_id": "+"}), 422, "invalid_edge_service", "not '+'"),
        (
            json!({"name": "a", "transport": "agent", "agent_id": "x".repeat(65)}),
            422,
            "invalid_edge_service",
            "1 to 64",
        ),
        (
            json!({"name": "a", "endpoint": "http://127.0.0.1:1", "agent_id": "x"}),
            422,
            "invalid_edge_service",
            "only for transport",
        ),
        (
            json!({"name": "a", "transport": "carrier-pigeon", "agent_id": "x"}),
            400,
            "malformed_json",
            "unknown variant",
        ),
        (
            json!({"name": "a", "transport": "agent", "agent_id": "x", "auth": {"kind": "basic", "username": "u", "password": "p"}}),
            422,
            "invalid_edge_service",
            "the agent's own credentials",
        ),
    ];
    for (body, status, code_expected, words) in cases {
        let answer = app.post(&edges, body.clone()).await;
        assert_eq!((answer.status, crate::support::code(&answer)), (status, code_expected), "{body}: {}", answer.text);
        assert!(answer.text.contains(words), "{body}: {}", answer.text);
    }
    let first = app.post(&edges, json!({"name": "a", "transport": "agent", "agent_id": "gw.1"})).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.body["endpoint"], "http://127.0.0.1:8085");
    let taken = app.post(&edges, json!({"name": "b", "transport": "agent", "agent_id": "gw.1"})).await;
    assert_eq!((taken.status, crate::support::code(&taken)), (409, "agent_id_taken"), "{}", taken.text);
    let http = app.post(&edges, json!({"name": "c", "endpoint": "http://127.0.0.1:1"})).await;
    let id = http.body["id"].as_str().expect("id");
    let refused = app.post(&app.p(&format!("/edge-services/{id}/agent-credentials")), json!({})).await;
    assert_eq!((refused.status, crate::support::code(&refused)), (409, "not_agent_mode"), "{}", refused.text);
    // Moved to agent mode by a patch (its stored credentials are dropped), and back.
    let moved = app
        .call(
            reqwest::Method::PATCH,
            &app.p(&format!("/edge-services/{id}")),
            Some(json!({"transport": "agent", "agent_id": "gw.2"})),
        )
        .await;
    assert_eq!(
        (moved.body["transport"].as_str(), moved.body["agent_id"].as_str()),
        (Some("agent"), Some("gw.2")),
        "{}",
        moved.text
    );

    // Without --mqtt-url, a delivery to an agent-mode service fails with the reason.
    let agent_edge = first.body["id"].as_str().expect("id");
    let template = app.template("nobroker", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"ids": [agent_edge]}})).await;
    assert_eq!(delivery["state"], "failed", "{delivery}");
    let reason = app.targets(&delivery).await[0]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("agent mode needs a broker: start edgefleet with --mqtt-url"), "{reason}");
}

/// A command to an agent that has never connected fails at once with that reason, instead of
/// after the whole reply wait: the probe button answers, and a delivery does not hold the target.
#[tokio::test]
async fn an_agent_that_never_connected_is_reported_at_once_by_probes_and_deliveries() {
    let app = with_broker(SHARED_BROKER).await;
    let agent_id = format!("{}absent", unique_prefix("never"));
    let edge =
        app.post(&app.p("/edge-services"), json!({"name": "absent", "transport": "agent", "agent_id": agent_id})).await;
    assert_eq!(edge.status, 201, "{}", edge.text);
    let id = edge.body["id"].as_str().expect("id");
    let probed = app.post(&app.p(&format!("/edge-services/{id}/probe")), json!({})).await;
    assert_eq!(probed.status, 200, "{}", probed.text);
    let never = format!("the agent {agent_id} has never connected to the broker");
    assert_eq!(probed.body["status"], "offline", "{}", probed.text);
    assert!(probed.body["status_reason"].as_str().unwrap_or_default().contains(&never), "{}", probed.text);

    let template = app.template("absent", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"ids": [id]}})).await;
    assert_eq!(delivery["state"], "failed", "{delivery}");
    let target = &app.targets(&delivery).await[0];
    assert!(target["reason"].as_str().unwrap_or_default().contains(&never), "{target}");
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with the openssl command.
fn tls_files(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(status.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&status.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=edgefleet test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "broker.key",
        "-out",
        "broker.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "broker.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "broker.pem",
    ]);
    // Mosquitto started as root reads its files as the `mosquitto` user (a throwaway test key).
    use std::os::unix::fs::PermissionsExt;
    for (name, mode) in [("", 0o755), ("broker.pem", 0o644), ("broker.key", 0o644)] {
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
}

#[tokio::test]
async fn agents_and_the_server_work_over_tls_with_mqtt_5() {
    let certs = tempfile::tempdir().expect("dir");
    tls_files(certs.path());
    let path = |name: &str| certs.path().join(name).display().to_string();
    let broker = OwnBroker::start(&format!(
        "allow_anonymous true\ncertfile {}\nkeyfile {}",
        path("broker.pem"),
        path("broker.key")
    ))
    .await;
    let url = format!("mqtts://127.0.0.1:{}?version=5", broker.port);
    let ca = certs.path().join("ca.pem");
    let server_url = url.clone();
    let server_ca = ca.clone();
    let app = TestApp::spawn_with(move |config| {
        config.mqtt_url = Some(server_url);
        config.mqtt_ca_file = Some(server_ca);
    })
    .await;
    let options = SimAgents { id_prefix: unique_prefix("tls"), ca_file: Some(ca.clone()), ..SimAgents::new(&url, "") };
    let setup = app.agent_fleet_with(2, options).await;
    let template = app.template("tls", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"ids": setup.edges}})).await;
    assert_eq!(delivery["state"], "succeeded", "{:?}", app.targets(&delivery).await);

    // Without the CA, the broker's certificate is not trusted: an agent never connects.
    let options = SessionOptions {
        ca_file: Some(certs.path().join("broker.pem")),
        ..SessionOptions::new(format!("untrusting-{:016x}", rand::random::<u64>()))
    };
    let (_publisher, mut events) =
        agent::mqtt::connect(&BrokerUrl::parse(&url).expect("url"), &options).expect("session");
    let refused = tokio::time::timeout(Duration::from_secs(30), events.next()).await.expect("an answer");
    assert!(refused.is_err(), "{refused:?}");
}
