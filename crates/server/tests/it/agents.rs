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
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, code, rule_doc, sim, sim_state};

pub const SHARED_BROKER: &str = "mqtt://127.0.0.1:1883";

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
        fleet.ready().await;
        let answer = self.post(&self.p("/edge-services/import"), json!(rows)).await;
        assert_eq!(answer.status, 201, "{}", answer.text);
        let edges: Vec<String> =
            answer.body["items"].as_array().expect("items").iter().map(|e| e["id"].as_str().expect("id").to_owned()).collect();
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
    assert_eq!((probed.body["status"].as_str(), probed.body["version"].as_str()), (Some("online"), Some("3.6.0")), "{}", probed.text);
    assert_eq!(probed.body["transport"], "agent");
    assert!(probed.body["agent_id"].as_str().is_some_and(|id| id.starts_with("flow-")));

    let template = app.template("agents", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let targets = json!({"ids": setup.edges});
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": targets})).await;
    assert_eq!(delivery["state"], "succeeded", "{delivery}");
    for k in 0..5 {
        let state = sim_state(&setup.sim, k).await;
        assert!(state["ekuiper"]["rules"]["r1"].is_object(), "instance {k}: {state}");
    }

    // A plan reads through the agent and finds nothing to change.
    let planned = app.post(&app.p("/deliveries"), json!({"template_id": template, "targets": targets, "mode": "plan"})).await;
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
        let options = SessionOptions {
            client_id: format!("test-{:016x}", rand::random::<u64>()),
            username: None,
            password: None,
            keep_session: false,
            last_will: None,
            ca_file: None,
            keep_alive: Duration::from_secs(30),
        };
        let (publisher, mut events) = agent::mqtt::connect(&BrokerUrl::parse(broker).expect("url"), &options).expect("session");
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
        op: Op::Call { method: "GET".into(), path: "/api/version".into(), body: None },
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
    fleet.ready().await;
    let agent_id = fleet.agent_id(0);
    let mut listener = Listener::on(SHARED_BROKER, &[results_topic(&agent_id)]).await;
    let now = agent::now_ms();

    // A genuine command runs.
    let genuine = signer.sign(&version_call(&agent_id, "c-genuine", now, now + 60_000));
    listener.send(&agent_id, &genuine).await;
    let reply = listener.answer().await;
    assert_eq!(reply.id, "c-genuine");
    assert!(matches!(&reply.outcome, Outcome::Answer { status: 200, body } if body.contains("3.6.0")), "{reply:?}");

    // Replayed at once: the kept answer is sent again, nothing runs twice.
    listener.send(&agent_id, &genuine).await;
    assert_eq!(listener.answer().await, reply);

    let cases = [
        ("signed by another key", CommandSigner::generate().sign(&version_call(&agent_id, "c-forged", now, now + 60_000)), Refusal::BadSignature),
        (
            "altered after signing",
            SignedCommand { command: genuine.command.replace("c-genuine", "c-altered"), signature: genuine.signature.clone() },
            Refusal::BadSignature,
        ),
        ("for another agent", signer.sign(&version_call("someone-else", "c-other", now, now + 60_000)), Refusal::WrongAgent),
        ("expired", signer.sign(&version_call(&agent_id, "c-old", now - 600_000, now - 300_000)), Refusal::Expired),
        ("from the future", signer.sign(&version_call(&agent_id, "c-future", now + 600_000, now + 660_000)), Refusal::Expired),
        (
            "outside the NeuronEX API",
            signer.sign(&Command {
                op: Op::Call { method: "GET".into(), path: "/etc/passwd".into(), body: None },
                ..version_call(&agent_id, "c-path", now, now + 60_000)
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
    fleet.ready_one(0).await;
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
    setup.sim.sim.set_faults(Some(0), Some(neuronex_sim::Faults { latency_ms: 10_000, ..neuronex_sim::Faults::default() }));
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
    assert!(reason.contains(&format!("the agent {agent_id} ")) && reason.contains("did not answer within 7 s"), "{reason}");
    assert!(sim_state(&setup.sim, 0).await["ekuiper"]["rules"].get("r1").is_none());

    // Started again, the agent refuses the command it was killed in (redelivered or replayed).
    setup.sim.sim.set_faults(Some(0), None);
    setup.fleet.start_one(0).expect("restart");
    setup.fleet.ready_one(0).await;
    listener.publisher.publish(&commands_topic(&agent_id), command, false).await.expect("replay");
    let reply = listener.answer().await;
    assert_eq!(refusal(&reply), Some(Refusal::AlreadyRun), "{reply:?}");
}
