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
