//! Drift: what was delivered is kept per edge, read back by checks, and either put back (re-apply)
//! or kept (a template version from the edge); the inventory lists what every edge holds.

use std::time::Duration;

use neuronex_sim::Faults;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, code, sim};

fn rules() -> Value {
    let rule = json!({"id": "overheat", "sql": "SELECT temp FROM line WHERE temp > 80", "actions": [{"log": {}}]});
    json!({"streams": {"line": "CREATE STREAM line (temp FLOAT) WITH (DATASOURCE=\"t/#\", FORMAT=\"json\", TYPE=\"mqtt\")"},
           "rules": {"overheat": rule.to_string()}})
}

fn drivers() -> Value {
    json!({"nodes": [{"name": "plc", "plugin": "Modbus TCP",
        "params": {"host": "10.1.1.1", "port": 502, "timeout": 3000, "interval": 20, "connection_mode": 0},
        "groups": [{"group": "fast", "interval": 1000, "tags": [
            {"name": "t1", "address": "1!400001", "attribute": 1, "type": 9},
            {"name": "t2", "address": "1!400003", "attribute": 1, "type": 9}]}]}]})
}

async fn sim_call(method: reqwest::Method, url: String, body: Value) {
    let answer = reqwest::Client::new().request(method, url).json(&body).send().await.expect("sim");
    assert!(answer.status().is_success(), "{}", answer.text().await.unwrap_or_default());
}

impl TestApp {
    async fn drift(&self, edge: &str) -> Value {
        let answer = self.get(&self.p(&format!("/edge-services/{edge}/drift"))).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.body
    }

    async fn check(&self, edge: &str) -> Value {
        let answer = self.post(&self.p(&format!("/edge-services/{edge}/check")), json!({})).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.body
    }

    async fn drifted(&self) -> Vec<String> {
        let listed = self.get(&self.p("/edge-services?config_state=drifted&limit=1000")).await;
        assert_eq!(listed.status, 200, "{}", listed.text);
        let mut names: Vec<String> = listed.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|e| e["name"].as_str().unwrap_or("").into())
            .collect();
        names.sort();
        names
    }

    async fn follow(&self, started: &Value) -> Value {
        let id = started["id"].as_str().expect("id");
        self.events(id).await;
        self.get(&self.p(&format!("/deliveries/{id}"))).await.body
    }
}

fn drifted_objects(report: &Value) -> Vec<(String, Value)> {
    report["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter(|o| o["drifted"] == true)
        .map(|o| (o["object"].as_str().unwrap_or_default().to_owned(), o["diff"].clone()))
        .collect()
}

#[tokio::test]
async fn four_changed_gateways_of_twenty_are_found_drifted_with_their_patches_and_reapply_puts_them_back() {
    let app = TestApp::spawn().await;
    let sim = sim(20, &["3.7.0"]).await;
    let ids = app.register(&sim, 20).await;
    for edge in &ids[..2] {
        assert_eq!(app.drift(edge).await["state"], "none", "never delivered to");
    }
    let rules_template = app.template("line", "rule", rules()).await;
    let drivers_template = app.template("plc", "driver", drivers()).await;
    for template in [&rules_template, &drivers_template] {
        let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
        assert_eq!(delivery["state"], "succeeded");
    }
    let listed = app.get(&app.p("/edge-services?config_state=in_sync&limit=100")).await;
    assert_eq!(listed.body["total"], 20, "a successful delivery leaves its targets in sync");

    // By hand, through each gateway's own API: the rule on gateways 1-3, a tag on gateway 4.
    let edited = json!({"id": "overheat", "sql": "SELECT temp FROM line WHERE temp > 95", "actions": [{"log": {}}]});
    for k in 1..=3 {
        sim_call(Method::PUT, format!("{}/api/ekuiper/rules/overheat", sim.endpoint(k)), edited.clone()).await;
    }
    sim_call(
        Method::DELETE,
        format!("{}/api/neuron/tags", sim.endpoint(4)),
        json!({"node": "plc", "group": "fast", "tags": ["t2"]}),
    )
    .await;
    for edge in &ids {
        app.check(edge).await;
    }
    let names = |ks: &[usize]| ks.iter().map(|k| sim.manifest[*k].name.clone()).collect::<Vec<_>>();
    assert_eq!(app.drifted().await, names(&[1, 2, 3, 4]));
    let report = app.drift(&ids[1]).await;
    assert_eq!(report["state"], "drifted");
    assert_eq!(
        drifted_objects(&report),
        [(
            "rule overheat".to_owned(),
            json!([{"op": "replace", "path": "/sql", "value": "SELECT temp FROM line WHERE temp > 95"}])
        )]
    );
    let rule = report["objects"].as_array().expect("objects").iter().find(|o| o["object"] == "rule overheat").cloned();
    let rule = rule.expect("the rule is kept");
    assert_eq!(rule["expected"]["sql"], "SELECT temp FROM line WHERE temp > 80");
    assert_eq!(rule["live"]["sql"], "SELECT temp FROM line WHERE temp > 95");
    assert_eq!(rule["template_id"], rules_template.as_str());
    let report = app.drift(&ids[4]).await;
    assert_eq!(drifted_objects(&report), [("tags plc/fast".to_owned(), json!([{"op": "remove", "path": "/tags/t2"}]))]);
    assert_eq!(app.drift(&ids[0]).await["state"], "in_sync");
    let metrics = reqwest::get(format!("{}/metrics", app.base)).await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("edgefleet_edges_drifted 4"), "{metrics}");

    // Re-apply: a normal delivery of the template's last delivery, to that gateway alone.
    for k in [1, 4] {
        let answer = app.post(&app.p(&format!("/edge-services/{}/reapply", ids[k])), json!({})).await;
        assert_eq!(answer.status, 202, "{}", answer.text);
        assert_eq!(answer.body["counts"]["total"], 1);
        assert_eq!(answer.body.get("also"), None, "only the drifted template is re-applied");
        let template = if k == 1 { &rules_template } else { &drivers_template };
        assert_eq!(answer.body["template_id"], template.as_str());
        assert_eq!(app.follow(&answer.body).await["state"], "succeeded");
        assert_eq!(app.drift(&ids[k]).await["state"], "in_sync", "what was delivered again is in sync");
        assert_eq!(app.check(&ids[k]).await["state"], "in_sync", "and the edge holds it");
    }
    let audit = app.get("/api/v1/audit?action=edge.reapply").await;
    assert_eq!(audit.body["total"], 2, "{}", audit.text);
    assert_eq!(app.drifted().await, names(&[2, 3]));
}

#[tokio::test]
async fn adopting_makes_a_template_version_equal_to_the_live_objects() {
    let app = TestApp::spawn().await;
    let sim = sim(2, &["3.7.0"]).await;
    let ids = app.register(&sim, 2).await;
    let template = app.template("line", "rule", rules()).await;
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
    assert_eq!(delivery["state"], "succeeded");
    let edited = json!({"id": "overheat", "sql": "SELECT temp FROM line WHERE temp > 95", "actions": [{"log": {}}]});
    sim_call(Method::PUT, format!("{}/api/ekuiper/rules/overheat", sim.endpoint(0)), edited).await;
    assert_eq!(app.check(&ids[0]).await["state"], "drifted");

    let adopt =
        json!({"edge_id": ids[0], "template_id": template, "objects": {"streams": ["line"], "rules": ["overheat"]}});
    let adopted = app.post(&app.p("/templates/from-edge"), adopt).await;
    assert_eq!(adopted.status, 200, "{}", adopted.text);
    assert_eq!(adopted.body["current_version"], 2);
    let content = &adopted.body["content"];
    let content: Value = match content {
        Value::String(text) => serde_json::from_str(text).expect("json"),
        other => other.clone(),
    };
    assert_eq!(content["rules"]["overheat"]["sql"], "SELECT temp FROM line WHERE temp > 95");
    let audit = app.get("/api/v1/audit?action=template.adopt").await;
    assert_eq!(audit.body["total"], 1, "{}", audit.text);

    // Delivering the adopted version to both: the edited gateway is unchanged, both are in sync.
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
    assert_eq!(delivery["state"], "succeeded");
    for edge in &ids {
        assert_eq!(app.check(edge).await["state"], "in_sync");
    }
    let rule = reqwest::get(format!("{}/api/ekuiper/rules/overheat", sim.endpoint(1))).await.expect("sim");
    assert_eq!(rule.json::<Value>().await.expect("json")["sql"], "SELECT temp FROM line WHERE temp > 95");
}

#[tokio::test]
async fn a_template_from_a_live_gateway_delivers_to_another_unchanged() {
    let app = TestApp::spawn().await;
    let sim = sim(2, &["3.7.0"]).await;
    let ids = app.register(&sim, 2).await;
    // Gateway 0 was set up by hand: a driver with two groups and a rule with its stream.
    let node = json!({"name": "plc", "plugin": "Modbus TCP",
        "params": {"host": "10.9.9.9", "port": 502, "timeout": 3000, "interval": 20, "connection_mode": 0}});
    sim_call(Method::POST, format!("{}/api/neuron/node", sim.endpoint(0)), node).await;
    for (group, interval) in [("fast", 100), ("slow", 5000)] {
        sim_call(
            Method::POST,
            format!("{}/api/neuron/group", sim.endpoint(0)),
            json!({"node": "plc", "group": group, "interval": interval}),
        )
        .await;
    }
    let tags = json!({"node": "plc", "group": "fast", "tags": [{"name": "speed", "address": "1!400010", "attribute": 1, "type": 9, "precision": 2}]});
    sim_call(Method::POST, format!("{}/api/neuron/tags", sim.endpoint(0)), tags).await;
    let stream = json!({"sql": "CREATE STREAM belt (speed FLOAT) WITH (DATASOURCE=\"plc/fast\", FORMAT=\"json\", TYPE=\"neuron\")"});
    sim_call(Method::POST, format!("{}/api/ekuiper/streams", sim.endpoint(0)), stream).await;
    let rule = json!({"id": "slow_belt", "sql": "SELECT speed FROM belt WHERE speed < 1", "actions": [{"log": {}}]});
    sim_call(Method::POST, format!("{}/api/ekuiper/rules", sim.endpoint(0)), rule).await;

    for (name, objects) in [
        ("belt-drivers", json!({"nodes": ["plc"]})),
        ("belt-rules", json!({"streams": ["belt"], "rules": ["slow_belt"]})),
    ] {
        let made = app
            .post(&app.p("/templates/from-edge"), json!({"edge_id": ids[0], "name": name, "objects": objects}))
            .await;
        assert_eq!(made.status, 201, "{}", made.text);
        let template = made.body["id"].as_str().expect("id");
        let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"ids": [ids[1]]}})).await;
        assert_eq!(delivery["state"], "succeeded", "{}", name);
    }
    let (gateway0, gateway1) = (crate::support::sim_state(&sim, 0).await, crate::support::sim_state(&sim, 1).await);
    let held = |state: &Value| {
        (state["neuron"]["nodes"]["plc"].clone(), state["ekuiper"]["rules"]["slow_belt"]["definition"]["sql"].clone())
    };
    let ((node0, sql0), (node1, sql1)) = (held(&gateway0), held(&gateway1));
    assert_eq!(node1, node0, "the driver arrives as the first gateway holds it");
    assert_eq!(sql1, sql0);
    let inventory = app.get(&app.p("/inventory?kind=rule&name=slow_belt")).await;
    assert_eq!(inventory.body["total"], 0, "the inventory is what checks found, and none ran yet");
    for edge in &ids {
        app.check(edge).await;
    }
    let inventory = app.get(&app.p("/inventory?kind=rule&name=slow_belt")).await;
    assert_eq!(inventory.status, 200, "{}", inventory.text);
    assert_eq!(inventory.body["items"], json!([{"name": "slow_belt", "kind": "rule", "edges": 2, "edge_ids": ids}]));
    let all = app.get(&app.p("/inventory?kind=node")).await;
    assert_eq!(all.body["items"][0]["name"], "plc");
}

#[tokio::test]
async fn an_unreachable_gateway_is_unknown_not_drifted_and_one_never_delivered_to_is_none() {
    let app = TestApp::spawn().await;
    let sim = sim(3, &["3.7.0"]).await;
    let ids = app.register(&sim, 3).await;
    let template = app.template("line", "rule", rules()).await;
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids[..2]}})).await;
    assert_eq!(delivery["state"], "succeeded");
    sim.sim.set_faults(None, Some(Faults { offline: true, ..Faults::default() }));
    let report = app.check(&ids[0]).await;
    assert_eq!(report["state"], "unknown");
    assert!(!report["reason"].as_str().unwrap_or_default().is_empty(), "{report}");
    assert_eq!(app.check(&ids[2]).await["state"], "none", "never delivered to, reachable or not");
    let edge = app.get(&app.p(&format!("/edge-services/{}", ids[0]))).await.body;
    assert_eq!(edge["config_state"], "unknown");
    assert!(edge["config_checked_at"].is_i64());
    sim.sim.set_faults(None, None);
    assert_eq!(app.check(&ids[0]).await["state"], "in_sync");
}

#[tokio::test]
async fn a_periodic_round_checks_every_gateway() {
    let app = TestApp::spawn_with(|config| config.drift_interval = Duration::from_millis(200)).await;
    let sim = sim(3, &["3.7.0"]).await;
    let ids = app.register(&sim, 3).await;
    let template = app.template("line", "rule", rules()).await;
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
    assert_eq!(delivery["state"], "succeeded");
    sim_call(Method::DELETE, format!("{}/api/ekuiper/rules/overheat", sim.endpoint(2)), json!({})).await;
    // Rounds run by themselves; wait (with a deadline) until one has seen the deleted rule.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while app.drifted().await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no round found the drift");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.drifted().await, [sim.manifest[2].name.clone()]);
    let report = app.drift(&ids[2]).await;
    let rule = report["objects"].as_array().expect("objects").iter().find(|o| o["object"] == "rule overheat").cloned();
    let rule = rule.expect("kept");
    assert_eq!((rule["live"].clone(), rule["diff"].clone()), (Value::Null, json!([{"op": "remove", "path": ""}])));
}

#[tokio::test]
async fn bad_drift_requests_get_clear_errors() {
    let app = TestApp::spawn().await;
    let sim = sim(1, &["3.7.0"]).await;
    let ids = app.register(&sim, 1).await;
    let reapply = app.post(&app.p(&format!("/edge-services/{}/reapply", ids[0])), json!({})).await;
    assert_eq!((reapply.status, code(&reapply)), (409, "nothing_delivered"));
    let cases = [
        (json!({"edge_id": ids[0], "name": "x", "objects": {}}), 422, "invalid_from_edge"),
        (
            json!({"edge_id": ids[0], "name": "x", "objects": {"rules": ["r"], "nodes": ["n"]}}),
            422,
            "invalid_from_edge",
        ),
        (json!({"edge_id": ids[0], "objects": {"rules": ["r"]}}), 422, "invalid_from_edge"),
        (json!({"edge_id": ids[0], "name": "x", "objects": {"rules": ["not-there"]}}), 422, "object_not_on_edge"),
        (json!({"edge_id": ids[0], "name": "x", "objects": {"rules": ["a".repeat(300)]}}), 422, "invalid_from_edge"),
        (json!({"edge_id": "nope", "name": "x", "objects": {"rules": ["r"]}}), 404, "edge_service_not_found"),
        (json!({"edge_id": ids[0], "name": "x", "objects": {"rules": ["r"]}, "extra": 1}), 400, "malformed_json"),
    ];
    for (body, status, expected) in cases {
        let answer = app.post(&app.p("/templates/from-edge"), body.clone()).await;
        assert_eq!((answer.status, code(&answer)), (status, expected), "{body}: {}", answer.text);
    }
    let many: Vec<String> = (0..501).map(|k| format!("r{k}")).collect();
    let answer = app
        .post(&app.p("/templates/from-edge"), json!({"edge_id": ids[0], "name": "x", "objects": {"rules": many}}))
        .await;
    assert_eq!(code(&answer), "invalid_from_edge");
    for query in ["kind=rules".to_owned(), format!("name={}", "a".repeat(300)), "color=red".to_owned()] {
        let answer = app.get(&app.p(&format!("/inventory?{query}"))).await;
        assert_eq!((answer.status, code(&answer)), (400, "bad_query"), "{query}");
    }
    let answer = app.get(&app.p("/edge-services?config_state=synced")).await;
    assert_eq!((answer.status, code(&answer)), (400, "bad_query"));
}

#[tokio::test]
async fn a_rollback_leaves_what_it_put_back_as_what_is_kept() {
    let app = TestApp::spawn().await;
    let sim = sim(1, &["3.7.0"]).await;
    let ids = app.register(&sim, 1).await;
    let template = app.template("line", "rule", rules()).await;
    let (first, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
    assert_eq!(first["state"], "succeeded");
    let mut hotter = rules();
    hotter["rules"]["overheat"] =
        json!({"id": "overheat", "sql": "SELECT temp FROM line WHERE temp > 90", "actions": [{"log": {}}]})
            .to_string()
            .into();
    let edited =
        app.call(Method::PUT, &app.p(&format!("/templates/{template}")), Some(json!({"content": hotter}))).await;
    assert_eq!(edited.status, 200, "{}", edited.text);
    let (second, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
    let second_id = second["id"].as_str().expect("id");
    let back = app.post(&app.p(&format!("/deliveries/{second_id}/rollback")), json!({})).await;
    assert_eq!(back.status, 202, "{}", back.text);
    assert_eq!(app.follow(&back.body).await["state"], "succeeded");
    let report = app.check(&ids[0]).await;
    assert_eq!(report["state"], "in_sync", "{report}");
    let rule = report["objects"].as_array().expect("objects").iter().find(|o| o["object"] == "rule overheat").cloned();
    assert_eq!(rule.expect("kept")["expected"]["sql"], "SELECT temp FROM line WHERE temp > 80");
    let reapply = app.post(&app.p(&format!("/edge-services/{}/reapply", ids[0])), json!({})).await;
    assert_eq!((reapply.status, code(&reapply)), (409, "reapply_after_rollback"));
}
