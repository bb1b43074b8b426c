//! Plans (`mode: plan`): every target read, nothing written, what applying would change recorded
//! per target and grouped by change set.

use neuronex_sim::Faults;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{TestApp, code, sim, sim_state};

fn rules(rule_ids: &[&str]) -> Value {
    let mut rules = serde_json::Map::new();
    for id in rule_ids {
        let rule = json!({"id": id, "sql": "SELECT temp FROM demo", "actions": [{"log": {}}]});
        rules.insert((*id).to_owned(), Value::from(rule.to_string()));
    }
    json!({"streams": {"demo": "CREATE STREAM demo (temp FLOAT) WITH (DATASOURCE=\"t/#\", FORMAT=\"json\", TYPE=\"mqtt\")"},
           "rules": rules})
}

fn changes_of(group: &Value) -> Vec<(String, String)> {
    group["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (c["object"].as_str().unwrap_or_default().to_owned(), c["action"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

#[tokio::test]
async fn a_plan_reads_every_target_writes_nothing_and_groups_targets_by_change_set() {
    let app = TestApp::spawn().await;
    let sim = sim(4, &["3.7.0"]).await;
    let ids = app.register(&sim, 4).await;
    let template = app.template("rules", "rule", rules(&["r1"])).await;
    let (v1, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
    assert_eq!(v1["state"], "succeeded");
    // By hand on gateway 1: r1 reads something else. Gateway 3 is unreachable.
    let edited = json!({"id": "r1", "sql": "SELECT temp FROM demo WHERE temp > 40", "actions": [{"log": {}}]});
    let put =
        reqwest::Client::new().put(format!("{}/api/ekuiper/rules/r1", sim.endpoint(1))).json(&edited).send().await;
    assert_eq!(put.expect("sim").status(), 200);
    sim.sim.set_faults(Some(3), Some(Faults { offline: true, ..Faults::default() }));
    let v2 = app
        .call(Method::PUT, &app.p(&format!("/templates/{template}")), Some(json!({"content": rules(&["r1", "r2"])})))
        .await;
    assert_eq!(v2.status, 200, "{}", v2.text);
    let before: Vec<Value> = engine_states(&sim).await;

    let (plan, _) = app
        .deliver(json!({"template_id": template, "mode": "plan", "targets": {"ids": ids}, "options": {"retries": 0}}))
        .await;
    assert_eq!((plan["mode"].as_str(), plan["state"].as_str()), (Some("plan"), Some("partial")));
    assert_eq!(engine_states(&sim).await, before, "a plan writes nothing");
    let id = plan["id"].as_str().expect("id");
    let view = app.get(&app.p(&format!("/deliveries/{id}/plan"))).await;
    assert_eq!(view.status, 200, "{}", view.text);
    let view = view.body;
    assert_eq!(
        view["summary"],
        json!({"create": 3, "update": 1, "unchanged": 5, "conflict": 0, "incompatible": 0, "unreachable": 1})
    );
    let groups = view["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2);
    assert_eq!((groups[0]["targets"].as_u64(), groups[0]["edge_ids"].clone()), (Some(2), json!([ids[0], ids[2]])));
    let expect = |r1: &str| {
        vec![
            ("stream demo".to_owned(), "unchanged".to_owned()),
            ("rule r1".to_owned(), r1.to_owned()),
            ("rule r2".to_owned(), "create".to_owned()),
        ]
    };
    assert_eq!(changes_of(&groups[0]), expect("unchanged"));
    assert_eq!((groups[1]["targets"].as_u64(), groups[1]["edge_ids"].clone()), (Some(1), json!([ids[1]])));
    assert_eq!(changes_of(&groups[1]), expect("update"));
    assert_eq!(
        groups[1]["changes"][1]["diff"],
        json!([{"op": "replace", "path": "/sql", "value": "SELECT temp FROM demo"}]),
        "the patch goes from what the gateway runs to what would be sent"
    );
    assert_eq!(view["unreachable"][0]["edge_ids"], json!([ids[3]]));
    let reason = view["unreachable"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("read version: connection closed without an answer"), "{reason}");
    // The same answer per target, in its items.
    let targets = app.targets(&plan).await;
    assert_eq!(targets[1]["items"][1]["ref"], json!({"kind": "rule", "id": "r1"}));
}

#[tokio::test]
async fn plans_are_asked_for_and_read_with_stable_codes() {
    let app = TestApp::spawn().await;
    let sim = sim(1, &["3.7.0"]).await;
    let ids = app.register(&sim, 1).await;
    let template = app.template("rules", "rule", rules(&["r1"])).await;
    let both = app
        .post(
            &app.p("/deliveries"),
            json!({"template_id": template, "mode": "plan", "dry_run": true, "targets": {"ids": ids}}),
        )
        .await;
    assert_eq!((both.status, code(&both)), (422, "invalid_delivery"));
    let unknown = app
        .post(&app.p("/deliveries"), json!({"template_id": template, "mode": "preview", "targets": {"ids": ids}}))
        .await;
    assert_eq!(unknown.status, 400, "{}", unknown.text);
    let (applied, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
    assert_eq!(applied["mode"], "apply");
    let id = applied["id"].as_str().expect("id");
    let not_a_plan = app.get(&app.p(&format!("/deliveries/{id}/plan"))).await;
    assert_eq!((not_a_plan.status, code(&not_a_plan)), (409, "not_a_plan"));
}

/// Every gateway's engine state, for "nothing was written".
async fn engine_states(sim: &neuronex_sim::RunningSim) -> Vec<Value> {
    let mut states = Vec::new();
    for k in 0..4 {
        let state = sim_state(sim, k).await;
        states.push(json!([state["ekuiper"], state["neuron"]]));
    }
    states
}

/// What a gateway holds of the objects named, in the normal form plans compare (read through its
/// own API, as edgefleet reads it).
async fn held(sim: &neuronex_sim::RunningSim, k: u32, objects: &[domain::plan::ObjectRef]) -> Vec<Option<Value>> {
    let policy = domain::network::NetworkPolicy::new(
        domain::network::NetworkPolicy::parse_list("127.0.0.0/8").expect("networks"),
        None,
    );
    let config = edge_client::ClientConfig {
        connect_timeout: std::time::Duration::from_secs(2),
        request_timeout: std::time::Duration::from_secs(5),
        policy,
    };
    let client = edge_client::EdgeClient::new(config).expect("client");
    let target = edge_client::EdgeTarget::http(sim.endpoint(k).to_owned(), edge_client::EdgeAuth::None);
    client.edge(&target).read_objects(objects).await.expect("read back")
}

fn v2_rules() -> Value {
    let r1 = json!({"id": "r1", "sql": "SELECT temp FROM demo WHERE temp > 10", "actions": [{"log": {}}]});
    let r2 = json!({"id": "r2", "sql": "SELECT temp FROM ${src}", "actions": [{"log": {}}]});
    json!({"streams": {"demo": "CREATE STREAM demo (temp FLOAT) WITH (DATASOURCE=\"v2/#\", FORMAT=\"json\", TYPE=\"mqtt\")"},
           "rules": {"r1": r1.to_string(), "r2": r2.to_string()}})
}

/// v1 delivered; v2 applied where two gateways refuse its second rule after the stream and the
/// first rule were already replaced: those two end exactly as before (object by object, running
/// state included) and say so; the others hold v2.
#[tokio::test]
async fn targets_that_fail_half_way_are_put_back_exactly_as_they_were() {
    use domain::plan::ObjectRef;
    let app = TestApp::spawn().await;
    let sim = sim(4, &["3.7.0"]).await;
    let ids = app.register(&sim, 4).await;
    let template = app.template("rules", "rule", rules(&["r1"])).await;
    let (v1, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
    assert_eq!(v1["state"], "succeeded");
    let objects = [
        ObjectRef::Stream { name: "demo".into() },
        ObjectRef::Rule { id: "r1".into() },
        ObjectRef::Rule { id: "r2".into() },
    ];
    let mut before = Vec::new();
    for k in 0..4 {
        before.push(held(&sim, k, &objects).await);
    }
    assert_eq!(before[0][2], None, "r2 is new in v2");
    let v2 =
        app.call(Method::PUT, &app.p(&format!("/templates/{template}")), Some(json!({"content": v2_rules()}))).await;
    assert_eq!(v2.status, 200, "{}", v2.text);
    let params = json!({"defaults": {"src": "demo"}, "targets": {ids[1].clone(): {"src": "missing"}, ids[3].clone(): {"src": "missing"}}});
    let (applied, _) = app.deliver(json!({"template_id": template, "params": params, "targets": {"ids": ids}})).await;
    assert_eq!(applied["state"], "partial");
    let targets = app.targets(&applied).await;
    for k in [1, 3] {
        let target = targets.iter().find(|t| t["edge_id"] == ids[k].as_str()).expect("target");
        assert_eq!((target["status"].as_str(), target["restored"].as_bool()), (Some("failed"), Some(true)));
        let reason = target["reason"].as_str().unwrap_or_default();
        assert!(reason.starts_with("update rule r2: edge said 1000"), "{reason}");
        assert!(reason.ends_with("; restored as it was (2 objects put back)"), "{reason}");
        assert_eq!(held(&sim, k as u32, &objects).await, before[k], "gateway {k} holds exactly what it held before");
    }
    for k in [0, 2] {
        let now = held(&sim, k as u32, &objects).await;
        assert_ne!(now, before[k], "gateway {k} took v2");
        assert_eq!(now[1].as_ref().map(|r| r["sql"].clone()), Some(json!("SELECT temp FROM demo WHERE temp > 10")));
    }
    // The target shows what it held before the first write.
    let applied_id = applied["id"].as_str().expect("id");
    let detail = app.get(&app.p(&format!("/deliveries/{applied_id}/targets/{}", ids[1]))).await;
    assert_eq!(detail.status, 200, "{}", detail.text);
    let snapshot = detail.body["snapshot"].as_array().expect("a snapshot").clone();
    assert_eq!(snapshot.len(), 3);
    assert_eq!(snapshot[1]["ref"], json!({"kind": "rule", "id": "r1"}));
    assert_eq!(snapshot[1]["live"]["sql"], "SELECT temp FROM demo");
    assert_eq!(snapshot[2], json!({"ref": {"kind": "rule", "id": "r2"}, "live": null}));
    assert_eq!((detail.body["restored"].as_bool(), detail.body["changes"].clone()), (Some(true), json!([])));
    let missing = app.get(&app.p(&format!("/deliveries/{applied_id}/targets/nope"))).await;
    assert_eq!((missing.status, code(&missing)), (404, "target_not_found"));
    // With on_failure: leave, a failing target keeps what the failure left.
    let only_1 = json!({"defaults": {"src": "demo"}, "targets": {ids[1].clone(): {"src": "missing"}}});
    let (left, _) = app
        .deliver(json!({"template_id": template, "params": only_1, "targets": {"ids": [ids[1].clone()]}, "options": {"on_failure": "leave"}}))
        .await;
    let target = &app.targets(&left).await[0];
    assert_eq!((target["status"].as_str(), target["restored"].as_bool()), (Some("failed"), Some(false)));
    assert_ne!(held(&sim, 1, &objects).await, before[1]);
}

fn edited_r1() -> Value {
    json!({"id": "r1", "sql": "SELECT temp FROM demo WHERE temp > 99", "actions": [{"log": {}}]})
}

async fn edit_by_hand(sim: &neuronex_sim::RunningSim, k: u32) {
    let put =
        reqwest::Client::new().put(format!("{}/api/ekuiper/rules/r1", sim.endpoint(k))).json(&edited_r1()).send().await;
    assert_eq!(put.expect("sim").status(), 200);
}

fn objects() -> [domain::plan::ObjectRef; 3] {
    use domain::plan::ObjectRef;
    [
        ObjectRef::Stream { name: "demo".into() },
        ObjectRef::Rule { id: "r1".into() },
        ObjectRef::Rule { id: "r2".into() },
    ]
}

async fn run(app: &TestApp, started: crate::support::Answer) -> Value {
    assert_eq!(started.status, 202, "{}", started.text);
    let id = started.body["id"].as_str().expect("id").to_owned();
    app.events(&id).await;
    app.get(&app.p(&format!("/deliveries/{id}"))).await.body
}

fn by_edge<'a>(targets: &'a [Value], edge_id: &str) -> &'a Value {
    targets.iter().find(|t| t["edge_id"] == edge_id).expect("target")
}

/// A plan applied later: a gateway changed since the plan read it fails with changed_since_plan and
/// nothing written; with force, it is written.
#[tokio::test]
async fn applying_a_plan_refuses_gateways_changed_since_unless_forced() {
    let app = TestApp::spawn().await;
    let sim = sim(3, &["3.7.0"]).await;
    let ids = app.register(&sim, 3).await;
    let template = app.template("rules", "rule", rules(&["r1"])).await;
    app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
    app.call(Method::PUT, &app.p(&format!("/templates/{template}")), Some(json!({"content": rules(&["r1", "r2"])})))
        .await;
    let (plan, _) = app.deliver(json!({"template_id": template, "mode": "plan", "targets": {"ids": ids}})).await;
    assert_eq!(plan["state"], "succeeded");
    let plan_id = plan["id"].as_str().expect("id");
    edit_by_hand(&sim, 2).await;
    let drifted = held(&sim, 2, &objects()).await;

    let applied = run(&app, app.post(&app.p(&format!("/deliveries/{plan_id}/apply")), json!({})).await).await;
    assert_eq!(
        (applied["mode"].as_str(), applied["plan_id"].as_str(), applied["state"].as_str()),
        (Some("apply"), Some(plan_id), Some("partial"))
    );
    let targets = app.targets(&applied).await;
    let refused = by_edge(&targets, &ids[2]);
    assert_eq!(refused["status"], "failed");
    assert_eq!(
        refused["reason"],
        "changed_since_plan: rule r1 changed since the plan read it; nothing was written (apply with force to write anyway)"
    );
    assert_eq!(held(&sim, 2, &objects()).await, drifted, "nothing was written to the changed gateway");
    assert!(held(&sim, 0, &objects()).await[2].is_some(), "the others took the plan (r2 exists)");

    let forced =
        run(&app, app.post(&app.p(&format!("/deliveries/{plan_id}/apply")), json!({"force": true})).await).await;
    assert_eq!((forced["state"].as_str(), forced["force"].as_bool()), (Some("succeeded"), Some(true)));
    assert_eq!(
        held(&sim, 2, &objects()).await[1].as_ref().map(|r| r["sql"].clone()),
        Some(json!("SELECT temp FROM demo"))
    );
    // Only a plan can be applied, and only once it ended.
    let applied_id = applied["id"].as_str().expect("id");
    let not_a_plan = app.post(&app.p(&format!("/deliveries/{applied_id}/apply")), json!({})).await;
    assert_eq!((not_a_plan.status, code(&not_a_plan)), (409, "not_a_plan"));
}

/// v2 rolled back puts every gateway back to v1 exactly, except one changed by hand since, which
/// is refused unless forced; a rollback of the rollback brings v2 back.
#[tokio::test]
async fn a_rollback_puts_gateways_back_and_can_itself_be_rolled_back() {
    let app = TestApp::spawn().await;
    let sim = sim(3, &["3.7.0"]).await;
    let ids = app.register(&sim, 3).await;
    let template = app.template("rules", "rule", rules(&["r1"])).await;
    app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
    let mut v1_state = Vec::new();
    for k in 0..3 {
        v1_state.push(held(&sim, k, &objects()).await);
    }
    app.call(Method::PUT, &app.p(&format!("/templates/{template}")), Some(json!({"content": v2_rules()}))).await;
    let params = json!({"defaults": {"src": "demo"}});
    let (v2, _) = app.deliver(json!({"template_id": template, "params": params, "targets": {"ids": ids}})).await;
    assert_eq!(v2["state"], "succeeded");
    let v2_state = held(&sim, 0, &objects()).await;
    edit_by_hand(&sim, 1).await;
    let v2_id = v2["id"].as_str().expect("id");

    let rollback = run(&app, app.post(&app.p(&format!("/deliveries/{v2_id}/rollback")), json!({})).await).await;
    assert_eq!(
        (rollback["mode"].as_str(), rollback["of"].as_str(), rollback["state"].as_str()),
        (Some("rollback"), Some(v2_id), Some("partial"))
    );
    let targets = app.targets(&rollback).await;
    assert_eq!(
        by_edge(&targets, &ids[1])["reason"],
        format!(
            "changed_since_delivery: rule r1 changed since delivery {v2_id}; nothing was written (roll back with force to put it back anyway)"
        )
    );
    for k in [0, 2] {
        assert_eq!(held(&sim, k as u32, &objects()).await, v1_state[k], "gateway {k} is back to v1");
        assert_eq!(by_edge(&targets, &ids[k])["items"][0]["action"], "rolled back");
    }
    let forced = app
        .post(&app.p(&format!("/deliveries/{v2_id}/rollback")), json!({"targets": [ids[1].clone()], "force": true}))
        .await;
    let forced = run(&app, forced).await;
    assert_eq!((forced["state"].as_str(), forced["counts"]["total"].as_u64()), (Some("succeeded"), Some(1)));
    assert_eq!(held(&sim, 1, &objects()).await, v1_state[1], "forced: gateway 1 is back to v1 too");

    // Rolling the rollback back restores what it replaced: v2 on gateways 0 and 2.
    let rollback_id = rollback["id"].as_str().expect("id");
    let again = run(
        &app,
        app.post(&app.p(&format!("/deliveries/{rollback_id}/rollback")), json!({"targets": "succeeded"})).await,
    )
    .await;
    assert_eq!((again["state"].as_str(), again["counts"]["total"].as_u64()), (Some("succeeded"), Some(2)));
    assert_eq!(held(&sim, 0, &objects()).await, v2_state);
    // Bad requests.
    let plan_rollback = app.post(&app.p(&format!("/deliveries/{v2_id}/rollback")), json!({"targets": "some"})).await;
    assert_eq!((plan_rollback.status, code(&plan_rollback)), (422, "invalid_targets"));
    let unknown = app.post(&app.p(&format!("/deliveries/{v2_id}/rollback")), json!({"targets": ["nope"]})).await;
    assert_eq!((unknown.status, code(&unknown)), (409, "nothing_to_roll_back"));
}

/// A gateway holding a rule of a greater `version` than the template's: eKuiper (2.2+, NeuronEX
/// 3.6+) would refuse to replace it, so the plan says `incompatible` with both versions, not
/// `update`.
#[tokio::test]
async fn a_plan_marks_objects_the_gateways_ekuiper_would_refuse_as_incompatible() {
    let app = TestApp::spawn().await;
    let sim = sim(2, &["3.7.0", "3.5.5"]).await;
    let ids = app.register(&sim, 2).await;
    let rule = json!({"id": "r1", "version": "2", "sql": "SELECT temp FROM demo", "actions": [{"log": {}}]});
    let doc = json!({"streams": {"demo": "CREATE STREAM demo (temp FLOAT) WITH (DATASOURCE=\"t/#\", FORMAT=\"json\", TYPE=\"mqtt\")"},
        "rules": {"r1": rule.to_string()}});
    let template = app.template("versioned", "rule", doc).await;
    app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
    let newer =
        json!({"id": "r1", "version": "3", "sql": "SELECT temp FROM demo WHERE temp > 1", "actions": [{"log": {}}]});
    for k in 0..2 {
        let put =
            reqwest::Client::new().put(format!("{}/api/ekuiper/rules/r1", sim.endpoint(k))).json(&newer).send().await;
        assert_eq!(put.expect("sim").status(), 200);
    }
    let (plan, _) = app.deliver(json!({"template_id": template, "mode": "plan", "targets": {"ids": ids}})).await;
    let targets = app.targets(&plan).await;
    let on_3_7 = &by_edge(&targets, &ids[0])["items"][1];
    assert_eq!(
        (on_3_7["action"].as_str(), on_3_7["reason"].as_str()),
        (
            Some("incompatible"),
            Some(
                "the gateway holds version (3) and its eKuiper replaces it only with a greater one; this template has (2)"
            )
        )
    );
    assert_eq!(by_edge(&targets, &ids[1])["items"][1]["action"], "update", "eKuiper 2.1 (NeuronEX 3.5) replaces it");
    let id = plan["id"].as_str().expect("id");
    let view = app.get(&app.p(&format!("/deliveries/{id}/plan"))).await.body;
    assert_eq!((view["summary"]["incompatible"].as_u64(), view["summary"]["update"].as_u64()), (Some(1), Some(1)));
}

/// A plan of a gateway that answers garbage (an HTML page from something in front of it) fails that
/// target with a reason; the others are planned.
#[tokio::test]
async fn a_plan_fails_a_gateway_that_answers_garbage_with_a_reason() {
    let app = TestApp::spawn().await;
    let sim = sim(2, &["3.7.0"]).await;
    let ids = app.register(&sim, 2).await;
    let template = app.template("rules", "rule", rules(&["r1"])).await;
    sim.sim.set_faults(Some(1), Some(Faults { garbage_rate: 1.0, ..Faults::default() }));
    let (plan, _) = app.deliver(json!({"template_id": template, "mode": "plan", "targets": {"ids": ids}})).await;
    assert_eq!(plan["state"], "partial");
    let id = plan["id"].as_str().expect("id");
    let view = app.get(&app.p(&format!("/deliveries/{id}/plan"))).await.body;
    assert_eq!((view["summary"]["create"].as_u64(), view["summary"]["unreachable"].as_u64()), (Some(2), Some(1)));
    let reason = view["unreachable"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("read version: ") && reason.contains("not a NeuronEX answer"), "{reason}");
    assert_eq!(view["unreachable"][0]["names"], json!(["neuronex-00001"]));
}
