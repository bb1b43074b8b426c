use neuronex_sim::{AuthMode, Faults, SimConfig};
use serde_json::{Value, json};

use crate::support::{TestApp, code, rule_doc, sim, sim_state};

fn reasons(targets: &[Value]) -> Vec<(String, String, String)> {
    targets
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or_default().to_owned(),
                t["status"].as_str().unwrap_or_default().to_owned(),
                t["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_mixed_fleet_gets_results_and_a_reason_for_every_failure() {
    let app = TestApp::spawn().await;
    let sim = sim(8, &["3.7.0", "3.5.5", "3.3.0", "2.9.0", "3.6.0", "3.6.0", "3.6.0", "3.6.0"]).await;
    // Gateways 4 and 7 fail before they are registered, so the prober knows them offline;
    // gateways 5 and 6 fail after, so the delivery finds out by itself.
    sim.sim.set_faults(Some(4), Some(Faults { error_rate: 1.0, ..Faults::default() }));
    sim.sim.set_faults(Some(7), Some(Faults { timeout_rate: 1.0, ..Faults::default() }));
    app.register(&sim, 8).await;
    sim.sim.set_faults(Some(5), Some(Faults { reset_rate: 1.0, ..Faults::default() }));
    sim.sim.set_faults(Some(6), Some(Faults { timeout_rate: 1.0, ..Faults::default() }));
    let template = app.template("rules", "rule", rule_doc("demo", "r1", "SELECT * FROM demo")).await;
    let (delivery, events) = app
        .deliver(
            json!({"template_id": template, "targets": {"all": true}, "options": {"timeout_secs": 3, "retries": 1}}),
        )
        .await;
    assert_eq!(delivery["state"], "partial");
    assert_eq!(delivery["counts"]["total"], 8);
    assert_eq!((delivery["counts"]["succeeded"].as_u64(), delivery["counts"]["failed"].as_u64()), (Some(3), Some(5)));
    let got = reasons(&app.targets(&delivery).await);
    for (name, status, reason) in &got[..3] {
        assert_eq!((status.as_str(), reason.as_str()), ("succeeded", ""), "{name}");
    }
    assert_eq!(
        got[3].2,
        "version gate: NeuronEX 2.9.0 is older than 3.0.0, the oldest edgefleet delivers to; nothing was sent"
    );
    // Found offline by the prober, but it answers: it gets the usual version gate and retries.
    assert!(got[4].2.starts_with("read version: edge said 1001 \"internal error\" (2 tries in "), "{}", got[4].2);
    // Not known offline: the delivery's retries, worded with the tries and the time.
    assert!(
        got[5].2.starts_with("read version: connection closed without an answer") && got[5].2.contains(" (2 tries in "),
        "{}",
        got[5].2
    );
    // Hung and not known offline: the target's own time limit ends its tries.
    assert!(
        got[6].2.starts_with("version gate: no answer within the target's 3 s (options.timeout_secs) ("),
        "{}",
        got[6].2
    );
    // Hung and known offline: one quick check, which the edge client's 2 s timeout ends.
    let (offline, check) = got[7].2.split_once("; checked again now: ").expect("an offline reason");
    assert!(offline.starts_with("offline since 20") && offline.ends_with('Z'), "{offline}");
    assert!(check.starts_with("read version: no answer within 2 s (1 try in 2"), "{check}");
    assert!(check.ends_with("; nothing was sent"), "{check}");
    for k in 0..3 {
        let state = sim_state(&sim, k).await;
        assert_eq!(
            state["ekuiper"]["rules"]["r1"]["status"].as_str().map(str::to_lowercase).as_deref(),
            Some("running"),
            "instance {k}"
        );
    }
    assert_eq!(events.first().map(|(name, _)| name.as_str()), Some("counts"));
    assert_eq!(events[0].1["total"], 8, "the first event has the current counts");
    let done_before_watching =
        events[0].1["total"].as_u64().unwrap_or(0) - events[0].1["pending"].as_u64().unwrap_or(0);
    let target_events = events.iter().filter(|(name, _)| name == "target").count() as u64;
    // Subscribing comes before reading the counts, so a result may show in both, never in neither.
    assert!(
        done_before_watching + target_events >= 8 && target_events <= 8,
        "{done_before_watching} + {target_events}"
    );
    let (last, data) = events.last().expect("events");
    assert_eq!((last.as_str(), data["state"].as_str()), ("final", Some("partial")));
}

#[tokio::test]
async fn a_rule_the_edge_refuses_carries_the_edges_code_and_message() {
    // (version, reason) eKuiper 2.2+ takes PUT; older engines get POST after PUT's 404.
    let cases = [
        (
            "3.7.0",
            "update rule r1: edge said 1000 \"Update rule error: fail to get stream nope, please check if stream is created\"",
        ),
        ("3.5.5", "create rule r1: edge said 1000 \"fail to get stream nope, please check if stream is created\""),
        ("3.3.0", "create rule r1: edge said 4000 \"fail to get stream nope, please check if stream is created\""),
    ];
    let app = TestApp::spawn().await;
    let versions: Vec<&str> = cases.iter().map(|(v, _)| *v).collect();
    let sim = sim(3, &versions).await;
    app.register(&sim, 3).await;
    let doc = json!({"rules": {"r1": "{\"id\":\"r1\",\"sql\":\"SELECT * FROM nope\",\"actions\":[{\"log\":{}}]}"}});
    let template = app.template("rules", "rule", doc).await;
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"all": true}})).await;
    assert_eq!(delivery["state"], "failed");
    let got = reasons(&app.targets(&delivery).await);
    for ((_, expected), (_, status, reason)) in cases.iter().zip(&got) {
        assert_eq!((status.as_str(), reason.as_str()), ("failed", *expected));
    }
}

#[tokio::test]
async fn edits_apply_to_this_delivery_only() {
    let app = TestApp::spawn().await;
    let sim = sim(1, &["3.6.0"]).await;
    let ids = app.register(&sim, 1).await;
    let original = rule_doc("demo", "r1", "SELECT * FROM demo");
    let template = app.template("rules", "rule", original.clone()).await;
    let edited = rule_doc("demo", "r1", "SELECT temperature FROM demo");
    let (delivery, _) = app.deliver(json!({"template_id": template, "content": edited, "targets": {"ids": ids}})).await;
    assert_eq!((delivery["state"].as_str(), delivery["content_edited"].as_bool()), (Some("succeeded"), Some(true)));
    let state = sim_state(&sim, 0).await;
    assert_eq!(state["ekuiper"]["rules"]["r1"]["definition"]["sql"], "SELECT temperature FROM demo");
    let stored = app.get(&app.p(&format!("/templates/{template}"))).await;
    assert_eq!((stored.body["current_version"].as_i64(), &stored.body["content"]), (Some(1), &original));
    let invalid = app
        .post(
            &app.p("/deliveries"),
            json!({"template_id": template, "content": {"rules": {"r1": "{}"}}, "targets": {"ids": ids}}),
        )
        .await;
    assert_eq!((invalid.status, code(&invalid)), (422, "invalid_template"));
    assert!(
        invalid.body["error"]["message"].as_str().expect("msg").starts_with("content: invalid rule template: rules.r1"),
        "{}",
        invalid.text
    );
}

#[tokio::test]
async fn parameters_render_per_target_and_escape_inside_rule_strings() {
    let app = TestApp::spawn().await;
    let sim = sim(2, &["3.6.0"]).await;
    let ids = app.register(&sim, 2).await;
    let doc = rule_doc(
        "demo",
        "r1",
        "SELECT * FROM demo WHERE who = \"${who}\" AND gw = '${edge.name}' AND t > ${threshold}",
    );
    let template = app.template("rules", "rule", doc).await;
    let params = json!({"defaults": {"who": "plain", "threshold": 80}, "targets": {"neuronex-00000": {"who": "quote\"and\\backslash"}}});
    let (delivery, _) = app.deliver(json!({"template_id": template, "params": params, "targets": {"ids": ids}})).await;
    assert_eq!(delivery["state"], "succeeded");
    let first = sim_state(&sim, 0).await;
    assert_eq!(
        first["ekuiper"]["rules"]["r1"]["definition"]["sql"],
        "SELECT * FROM demo WHERE who = \"quote\"and\\backslash\" AND gw = 'neuronex-00000' AND t > 80"
    );
    let second = sim_state(&sim, 1).await;
    assert_eq!(
        second["ekuiper"]["rules"]["r1"]["definition"]["sql"],
        "SELECT * FROM demo WHERE who = \"plain\" AND gw = 'neuronex-00001' AND t > 80"
    );
}

#[tokio::test]
async fn missing_parameters_stop_the_delivery_before_anything_is_sent() {
    let app = TestApp::spawn().await;
    let sim = sim(2, &["3.6.0"]).await;
    let ids = app.register(&sim, 2).await;
    let template = app
        .template(
            "rules",
            "rule",
            rule_doc("demo", "r1", "SELECT * FROM demo WHERE a > ${threshold} AND b = '${site}'"),
        )
        .await;
    let params = json!({"defaults": {"site": "north"}, "targets": {ids[0].clone(): {"threshold": 5}}});
    let answer = app
        .post(&app.p("/deliveries"), json!({"template_id": template, "params": params, "targets": {"ids": ids}}))
        .await;
    assert_eq!((answer.status, code(&answer)), (422, "missing_parameters"));
    assert_eq!(
        answer.body["error"]["message"],
        "edge service neuronex-00001: no value for threshold (1 targets lack values; nothing was sent)"
    );
    assert_eq!(app.get(&app.p("/deliveries")).await.body["total"], 0);
    assert!(sim_state(&sim, 0).await["requests"].get("PUT /api/ekuiper/streams/demo").is_none());
}

#[tokio::test]
async fn all_matching_less_the_excluded_reaches_only_the_rest() {
    let app = TestApp::spawn().await;
    let sim = sim(3, &["3.6.0"]).await;
    let ids = app.register(&sim, 3).await;
    let template = app.template("rules", "rule", rule_doc("demo", "r1", "SELECT * FROM demo")).await;
    let targets = json!({"all": true, "exclude": [ids[1], "an-id-that-matches-nothing"]});
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": targets})).await;
    assert_eq!(delivery["counts"]["total"], 2, "{delivery}");
    let reached: Vec<bool> = futures::future::join_all((0..3).map(|k| sim_state(&sim, k)))
        .await
        .iter()
        .map(|state| state["ekuiper"]["rules"]["r1"].is_object())
        .collect();
    assert_eq!(reached, [true, false, true]);
}

#[tokio::test]
async fn bad_delivery_requests_are_refused_with_stable_codes() {
    let app = TestApp::spawn().await;
    let sim = sim(2, &["3.6.0"]).await;
    let ids = app.register(&sim, 2).await;
    let template = app.template("rules", "rule", rule_doc("demo", "r1", "SELECT * FROM demo")).await;
    let cases = [
        (json!({"template_id": "nope", "targets": {"ids": ids}}), 404, "template_not_found"),
        (json!({"template_id": template, "version": 9, "targets": {"ids": ids}}), 404, "template_version_not_found"),
        (json!({"template_id": template, "targets": {"ids": []}}), 422, "no_targets"),
        (json!({"template_id": template, "targets": {"ids": ["nope"]}}), 404, "edge_service_not_found"),
        (json!({"template_id": template, "targets": {"filter": {"tag": ["no-such-tag"]}}}), 422, "no_targets_match"),
        (json!({"template_id": template, "targets": {"filter": {"colour": "red"}}}), 422, "invalid_targets"),
        (json!({"template_id": template, "targets": {"ids": ids, "filter": {}}}), 422, "invalid_targets"),
        (json!({"template_id": template, "targets": {"ids": ids, "exclude": []}}), 422, "invalid_targets"),
        (json!({"template_id": template, "targets": {"all": true, "exclude": "x"}}), 422, "invalid_targets"),
        (json!({"template_id": template, "targets": {"exclude": ids}}), 422, "invalid_targets"),
        (json!({"template_id": template, "targets": {"all": true, "exclude": ids}}), 422, "no_targets_match"),
        (
            json!({"template_id": template, "targets": {"all": true, "exclude": (0..10_001).map(|k| format!("x{k}")).collect::<Vec<_>>()}}),
            422,
            "invalid_targets",
        ),
        (
            json!({"template_id": template, "targets": {"ids": ids}, "options": {"concurrency": 0}}),
            422,
            "invalid_options",
        ),
        (
            json!({"template_id": template, "targets": {"ids": ids}, "options": {"on_conflict": "merge"}}),
            422,
            "invalid_options",
        ),
        (
            json!({"template_id": template, "targets": {"ids": ids}, "params": {"targets": {"gw-x": {}}}}),
            422,
            "invalid_params",
        ),
        (json!({"template_id": template, "targets": {"ids": ids}, "params": [1]}), 422, "invalid_params"),
        (json!({"targets": {"ids": ids}}), 422, "missing_template"),
        (json!({"template_id": template}), 400, "malformed_json"),
    ];
    for (body, status, expected) in cases {
        let answer = app.post(&app.p("/deliveries"), body.clone()).await;
        assert_eq!((answer.status, code(&answer)), (status, expected), "{body}: {}", answer.text);
    }
    assert_eq!(app.get(&app.p("/deliveries")).await.body["total"], 0);
}

#[tokio::test]
async fn targets_by_tag_and_version() {
    let app = TestApp::spawn().await;
    let sim = sim(8, &["3.7.0", "3.6.0"]).await;
    app.register(&sim, 8).await;
    let template = app.template("rules", "rule", rule_doc("demo", "r1", "SELECT * FROM demo")).await;
    let (by_tag, _) = app.deliver(json!({"template_id": template, "targets": {"filter": {"tag": ["zone-a"]}}})).await;
    assert_eq!(by_tag["counts"]["total"], 2);
    let (by_version, _) =
        app.deliver(json!({"template_id": template, "targets": {"filter": {"version": "3.7"}}})).await;
    assert_eq!(by_version["counts"]["total"], 4);
    let names: Vec<String> =
        app.targets(&by_version).await.iter().map(|t| t["version"].as_str().unwrap_or_default().to_owned()).collect();
    assert!(names.iter().all(|v| v == "3.7.0"));
}

#[tokio::test]
async fn on_conflict_skip_and_fail() {
    let app = TestApp::spawn().await;
    let sim = sim(1, &["3.6.0"]).await;
    let ids = app.register(&sim, 1).await;
    let template = app.template("rules", "rule", rule_doc("demo", "r1", "SELECT * FROM demo")).await;
    let (first, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
    assert_eq!(first["state"], "succeeded");
    let (again, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
    assert_eq!(again["state"], "succeeded", "overwrite is the default and replaces");
    let (skipped, _) = app
        .deliver(json!({"template_id": template, "targets": {"ids": ids}, "options": {"on_conflict": "skip"}}))
        .await;
    assert_eq!(skipped["counts"]["skipped"], 1);
    let items = app.targets(&skipped).await[0]["items"].clone();
    assert_eq!(
        items[0],
        json!({"object": "stream demo", "action": "skipped", "detail": "already exists on the edge (on_conflict = skip)"})
    );
    let (failed, _) = app
        .deliver(json!({"template_id": template, "targets": {"ids": ids}, "options": {"on_conflict": "fail"}}))
        .await;
    assert_eq!(failed["state"], "failed");
    assert_eq!(
        app.targets(&failed).await[0]["reason"],
        "create stream demo: edge said 3000 \"Stream command error: Create stream fails: Item demo already exists.\" (on_conflict = fail)"
    );
}

#[tokio::test]
async fn driver_templates_create_nodes_groups_and_tags() {
    let app = TestApp::spawn().await;
    let sim = sim(2, &["3.6.0"]).await;
    let ids = app.register(&sim, 2).await;
    let doc = json!({"nodes": [{"name": "plc", "plugin": "Modbus TCP", "params": {"host": "${plc_host}", "port": "${plc_port}", "timeout": 3000, "interval": 20, "connection_mode": 0},
        "groups": [{"group": "fast", "interval": 1000, "tags": [
            {"name": "temperature", "address": "1!400001", "attribute": 1, "type": 9},
            {"name": "line", "address": "", "attribute": 8, "type": 13, "value": "${edge.name}"}]}]}]});
    let template = app.template("plc", "driver", doc).await;
    let params = json!({"defaults": {"plc_host": "10.1.1.1", "plc_port": 502}});
    for round in 0..2 {
        let (delivery, _) =
            app.deliver(json!({"template_id": template, "params": params, "targets": {"ids": ids}})).await;
        assert_eq!(delivery["state"], "succeeded", "round {round}: {:?}", reasons(&app.targets(&delivery).await));
    }
    let node = &sim_state(&sim, 1).await["neuron"]["nodes"]["plc"];
    assert_eq!(
        node["params"],
        json!({"host": "10.1.1.1", "port": 502, "timeout": 3000, "interval": 20, "connection_mode": 0}),
        "a whole-string placeholder takes the value's type"
    );
    assert_eq!(node["groups"]["fast"]["tags"][1]["value"], "neuronex-00001");
    let bad_params = json!({"defaults": {"plc_host": "10.1.1.1", "plc_port": 70000}});
    let (refused, _) =
        app.deliver(json!({"template_id": template, "params": bad_params, "targets": {"ids": [ids[0].clone()]}})).await;
    // Neuron's replace deleted the node before the new settings were refused: the target is put
    // back as it was, the node with its groups and tags.
    let refused_target = &app.targets(&refused).await[0];
    assert_eq!(
        refused_target["reason"],
        "create node plc: edge said 2004 \"node setting invalid\"; restored as it was (1 object put back)"
    );
    assert_eq!((refused_target["restored"].as_bool(), refused_target.get("restore_failed")), (Some(true), None));
    let node = &sim_state(&sim, 0).await["neuron"]["nodes"]["plc"];
    assert_eq!(node["params"]["port"], 502);
    assert_eq!(node["groups"]["fast"]["tags"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn triggered_false_rules_count_when_stopped() {
    let app = TestApp::spawn().await;
    let sim = sim(1, &["3.3.0"]).await;
    let ids = app.register(&sim, 1).await;
    let rule =
        json!({"id": "r1", "triggered": false, "sql": "SELECT * FROM demo", "actions": [{"log": {}}]}).to_string();
    let doc = json!({"streams": {"demo": "CREATE STREAM demo () WITH (TYPE=\"memory\")"}, "rules": {"r1": rule}});
    let template = app.template("stopped", "rule", doc).await;
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
    assert_eq!(delivery["state"], "succeeded");
}

#[tokio::test]
async fn cancel_stops_targets_that_have_not_started() {
    let app = TestApp::spawn().await;
    let sim = sim(10, &["3.6.0"]).await;
    let ids = app.register(&sim, 10).await;
    sim.sim.set_faults(None, Some(Faults { latency_ms: 300, ..Faults::default() }));
    let template = app.template("rules", "rule", rule_doc("demo", "r1", "SELECT * FROM demo")).await;
    let started = app
        .post(
            &app.p("/deliveries"),
            json!({"template_id": template, "targets": {"ids": ids}, "options": {"concurrency": 1}}),
        )
        .await;
    let id = started.body["id"].as_str().expect("id").to_owned();
    let canceled = app.post(&app.p(&format!("/deliveries/{id}/cancel")), json!({})).await;
    assert_eq!(canceled.status, 200, "{}", canceled.text);
    let events = app.events(&id).await;
    let (_, last) = events.last().expect("final");
    assert_eq!(last["state"], "canceled");
    assert!(last["counts"]["canceled"].as_u64().unwrap_or(0) >= 8, "{last}");
    assert_eq!(last["counts"]["pending"], 0);
    let again = app.post(&app.p(&format!("/deliveries/{id}/cancel")), json!({})).await;
    assert_eq!((again.status, code(&again)), (409, "delivery_finished"));
}

#[tokio::test]
async fn retry_sends_only_the_failed_targets_again() {
    let app = TestApp::spawn().await;
    let sim = sim(3, &["3.6.0"]).await;
    let ids = app.register(&sim, 3).await;
    sim.sim.set_faults(Some(2), Some(Faults { error_rate: 1.0, ..Faults::default() }));
    let template = app.template("rules", "rule", rule_doc("demo", "r1", "SELECT * FROM demo")).await;
    let (delivery, _) =
        app.deliver(json!({"template_id": template, "targets": {"ids": ids}, "options": {"retries": 0}})).await;
    assert_eq!(delivery["state"], "partial");
    let id = delivery["id"].as_str().expect("id");
    sim.sim.set_faults(Some(2), None);
    let retried = app.post(&app.p(&format!("/deliveries/{id}/retry")), json!({})).await;
    assert_eq!(retried.status, 202, "{}", retried.text);
    let events = app.events(id).await;
    assert_eq!(events.last().expect("final").1["state"], "succeeded");
    assert_eq!(
        sim_state(&sim, 0).await["requests"]["PUT /api/ekuiper/rules/r1"],
        1,
        "succeeded targets are not sent again"
    );
    let nothing = app.post(&app.p(&format!("/deliveries/{id}/retry")), json!({})).await;
    assert_eq!((nothing.status, code(&nothing)), (409, "nothing_to_retry"));
}

#[tokio::test]
async fn dry_run_checks_everything_and_sends_nothing() {
    let app = TestApp::spawn().await;
    let sim = sim(2, &["3.6.0", "2.9.0"]).await;
    let ids = app.register(&sim, 2).await;
    let template = app.template("rules", "rule", rule_doc("demo", "r1", "SELECT * FROM demo")).await;
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids}, "dry_run": true})).await;
    assert_eq!((delivery["counts"]["skipped"].as_u64(), delivery["counts"]["failed"].as_u64()), (Some(1), Some(1)));
    assert_eq!(sim_state(&sim, 0).await["ekuiper"]["rules"], json!({}));
}

#[tokio::test]
async fn edges_with_password_login_are_delivered_to() {
    let app = TestApp::spawn().await;
    let listen = "127.0.0.1:0".parse().expect("addr");
    let sim = neuronex_sim::start(SimConfig { auth: AuthMode::Basic, ..SimConfig::default() }, listen, false)
        .await
        .expect("sim");
    let edge = app
        .post(&app.p("/edge-services"), json!({"name": "secured", "endpoint": sim.endpoint(0), "auth": {"kind": "basic", "username": "admin", "password": "0000"}}))
        .await;
    let wrong = app
        .post(&app.p("/edge-services"), json!({"name": "wrong", "endpoint": sim.endpoint(0), "auth": {"kind": "basic", "username": "admin", "password": "1234"}}))
        .await;
    let template = app.template("rules", "rule", rule_doc("demo", "r1", "SELECT * FROM demo")).await;
    let ids = json!([edge.body["id"], wrong.body["id"]]);
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
    let got = reasons(&app.targets(&delivery).await);
    assert_eq!(got[0], ("secured".to_owned(), "succeeded".to_owned(), String::new()));
    assert_eq!(got[1].2, "login edge: edge said 1009 \"invalid username or password\"");
}

#[tokio::test]
async fn history_lists_deliveries_newest_first() {
    let app = TestApp::spawn().await;
    let sim = sim(1, &["3.6.0"]).await;
    let ids = app.register(&sim, 1).await;
    let template = app.template("rules", "rule", rule_doc("demo", "r1", "SELECT * FROM demo")).await;
    let (first, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
    let (second, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
    let history = app.get(&app.p("/deliveries")).await;
    assert_eq!(history.body["total"], 2);
    assert_eq!(history.body["items"][0]["id"], second["id"]);
    assert_eq!(history.body["items"][1]["id"], first["id"]);
    assert_eq!(history.body["items"][1]["counts"]["succeeded"], 1);
    let unknown = app.get(&app.p("/deliveries/nope")).await;
    assert_eq!((unknown.status, code(&unknown)), (404, "delivery_not_found"));
    let bad_status =
        app.get(&app.p(&format!("/deliveries/{}/targets?status=done", first["id"].as_str().expect("id")))).await;
    assert_eq!((bad_status.status, code(&bad_status)), (400, "bad_query"));
}

/// Cancel stops at once: calls to gateways that never answer are abandoned, the delivery shows
/// `canceling` until every target is final, then `canceled`; it cannot be canceled again.
#[tokio::test]
async fn cancel_abandons_calls_under_way_and_every_target_ends() {
    // Targets could wait for these gateways for two minutes; cancel must not wait for that.
    let app = TestApp::spawn_with(|c| c.edge_request_timeout = std::time::Duration::from_secs(120)).await;
    let (_sim, body) = app.hanging_fleet(6, 120).await;
    let started = app.post(&app.p("/deliveries"), body).await;
    let id = started.body["id"].as_str().expect("id").to_owned();
    // Wait (on the stream) until the first targets are under way.
    app.events_until(&id, |e| {
        e.name == "counts" && serde_json::from_str::<Value>(&e.data).is_ok_and(|c| c["running"].as_u64() > Some(0))
    })
    .await;
    let canceled = app.post(&app.p(&format!("/deliveries/{id}/cancel")), json!({})).await;
    assert_eq!(canceled.status, 200, "{}", canceled.text);
    assert!(matches!(canceled.body["state"].as_str(), Some("canceling" | "canceled")), "{}", canceled.text);
    // The stream ends with the final state long before any gateway call could time out.
    let ended =
        tokio::time::timeout(std::time::Duration::from_secs(60), app.events(&id)).await.expect("canceled in time");
    let (name, last) = ended.last().expect("events").clone();
    assert_eq!((name.as_str(), last["state"].as_str()), ("final", Some("canceled")), "{last}");
    assert_eq!(last["counts"]["canceled"], 6, "{last}");
    let targets = app.targets(&app.get(&app.p(&format!("/deliveries/{id}"))).await.body).await;
    let reasons: Vec<&str> = targets.iter().filter_map(|t| t["reason"].as_str()).collect();
    assert!(reasons.iter().filter(|r| r.starts_with("canceled during")).count() >= 1, "{reasons:?}");
    assert!(reasons.iter().all(|r| r.starts_with("canceled")), "{reasons:?}");
    let again = app.post(&app.p(&format!("/deliveries/{id}/cancel")), json!({})).await;
    assert_eq!((again.status, code(&again)), (409, "delivery_finished"));
}

/// A hung gateway costs its own target's time, not the fleet's throughput: past a second without
/// an answer its target stops counting against `concurrency`, so the targets after it go on while
/// it waits out its own timeout (and `edgefleet_targets_waiting` shows it).
#[tokio::test]
async fn a_hung_gateway_gives_its_concurrency_slot_to_the_targets_after_it() {
    let app = TestApp::spawn_with(|c| c.edge_request_timeout = std::time::Duration::from_secs(120)).await;
    let sim = sim(4, &["3.6.0"]).await;
    let ids = app.register(&sim, 4).await;
    for k in [0, 1] {
        sim.sim.set_faults(Some(k), Some(Faults { timeout_rate: 1.0, ..Faults::default() }));
    }
    let template = app.template("rules", "rule", rule_doc("demo", "r1", "SELECT * FROM demo")).await;
    // One at a time, and a timeout far beyond the test's: without the hand-over the healthy
    // gateways would wait two minutes behind the hung ones.
    let body = json!({"template_id": template, "targets": {"ids": ids},
                      "options": {"concurrency": 1, "timeout_secs": 600, "retries": 0}});
    let started = app.post(&app.p("/deliveries"), body).await;
    assert_eq!(started.status, 202, "{}", started.text);
    let id = started.body["id"].as_str().expect("id").to_owned();
    app.events_until(&id, |e| {
        e.name == "counts"
            && serde_json::from_str::<Value>(&e.data)
                .is_ok_and(|c| c["succeeded"].as_u64() == Some(2) && c["running"].as_u64() == Some(2))
    })
    .await;
    let metrics = reqwest::get(format!("{}/metrics", app.base)).await.expect("metrics").text().await.expect("text");
    assert!(metrics.lines().any(|l| l == "edgefleet_targets_waiting 2"), "{metrics}");
    let running = app.get(&app.p(&format!("/deliveries/{id}"))).await.body;
    let targets = app.targets(&running).await;
    let order: Vec<(&str, &str)> =
        targets.iter().map(|t| (t["name"].as_str().unwrap_or(""), t["status"].as_str().unwrap_or(""))).collect();
    assert_eq!(
        order.iter().map(|(_, status)| *status).collect::<Vec<_>>(),
        ["running", "running", "succeeded", "succeeded"],
        "the hung gateways came first and still wait: {order:?}"
    );
    let canceled = app.post(&app.p(&format!("/deliveries/{id}/cancel")), json!({})).await;
    assert_eq!(canceled.status, 200, "{}", canceled.text);
    let ended = app.events(&id).await;
    let (name, last) = ended.last().expect("events").clone();
    assert_eq!((name.as_str(), last["state"].as_str()), ("final", Some("canceled")), "{last}");
    assert_eq!((last["counts"]["succeeded"].as_u64(), last["counts"]["canceled"].as_u64()), (Some(2), Some(2)));
}

/// The prober's knowledge saves time but is never trusted blindly: an edge found offline gets
/// one quick check, and one that came back since is delivered to as usual.
#[tokio::test]
async fn an_edge_found_offline_is_checked_once_and_delivered_to_when_back() {
    let app = TestApp::spawn().await;
    let sim = sim(2, &["3.6.0"]).await;
    sim.sim.set_faults(None, Some(Faults { offline: true, ..Faults::default() }));
    let ids = app.register(&sim, 2).await;
    let first = app.get(&app.p(&format!("/edge-services/{}", ids[0]))).await;
    assert_eq!(first.body["status"], "offline", "{}", first.text);
    let since = first.body["status_since"].as_i64().expect("status_since");
    // Another offline probe keeps the time it went offline.
    let again = app.post(&app.p(&format!("/edge-services/{}/probe", ids[0])), json!({})).await;
    assert_eq!(again.status, 200);
    let second = app.get(&app.p(&format!("/edge-services/{}", ids[0]))).await;
    assert_eq!(second.body["status_since"].as_i64(), Some(since));

    sim.sim.set_faults(Some(0), Some(Faults::default()));
    let template = app.template("rules", "rule", rule_doc("demo", "r1", "SELECT * FROM demo")).await;
    let (delivery, _) =
        app.deliver(json!({"template_id": template, "targets": {"all": true}, "options": {"retries": 3}})).await;
    let got = reasons(&app.targets(&delivery).await);
    assert_eq!((got[0].1.as_str(), got[0].2.as_str()), ("succeeded", ""));
    assert_eq!(got[1].1, "failed");
    assert!(got[1].2.starts_with("offline since "), "{}", got[1].2);
    assert!(
        got[1].2.contains("; checked again now: read version: connection closed without an answer"),
        "{}",
        got[1].2
    );
    assert_eq!(app.targets(&delivery).await[1]["tries"], 1, "no retries for an edge known offline");
}

/// Re-delivering a versioned template to eKuiper 2.3+ (NeuronEX 3.7): eKuiper refuses an equal
/// `version`, so the objects are reported unchanged and the target skipped; a template with an
/// older version than the edge's fails with both versions named; NeuronEX 3.6 (eKuiper 2.2)
/// replaces the stream whatever its version.
#[tokio::test]
async fn versioned_objects_delivered_again_are_unchanged_and_older_ones_refused() {
    let app = TestApp::spawn().await;
    let sim = sim(2, &["3.7.0", "3.6.0"]).await;
    let ids = app.register(&sim, 2).await;
    let versioned = |version: &str| {
        let rule =
            json!({"id": "r1", "version": version, "sql": "SELECT * FROM demo", "actions": [{"log": {}}]}).to_string();
        json!({"streams": {"demo": format!("CREATE STREAM demo () WITH (TYPE=\"memory\", VERSION=\"{version}\")")}, "rules": {"r1": rule}})
    };
    let v2 = app.template("v2", "rule", versioned("2")).await;
    let (first, _) = app.deliver(json!({"template_id": v2, "targets": {"ids": ids}})).await;
    assert_eq!(first["state"], "succeeded");
    let (again, _) = app.deliver(json!({"template_id": v2, "targets": {"ids": ids}})).await;
    assert_eq!(again["state"], "succeeded", "{:?}", reasons(&app.targets(&again).await));
    let targets = app.targets(&again).await;
    let on_3_7 = targets.iter().find(|t| t["version"] == "3.7.0").expect("the 3.7 target");
    assert_eq!(on_3_7["status"], "skipped");
    assert_eq!(
        on_3_7["items"],
        json!([{"object": "stream demo", "action": "unchanged", "detail": "the edge already has version 2 (eKuiper keeps it)"},
               {"object": "rule r1", "action": "unchanged", "detail": "the edge already has version 2 (eKuiper keeps it)"}])
    );
    let v1 = app.template("v1", "rule", versioned("1")).await;
    let (older, _) = app.deliver(json!({"template_id": v1, "targets": {"ids": ids}})).await;
    let mut outcomes = reasons(&app.targets(&older).await);
    outcomes.sort();
    assert_eq!(outcomes[0].1, "failed");
    assert_eq!(
        outcomes[0].2,
        "replace stream demo: the edge has version (2) and eKuiper replaces it only with a greater one; this template has (1)"
    );
    assert_eq!(outcomes[1].1, "failed", "eKuiper 2.2 replaces the stream but refuses the older rule version");
}

/// A rule with a disabled sink (`"enable": false`) goes only to NeuronEX 3.9.2 and later: older
/// ones ignore the field and would run the sink, so the target fails before anything is sent.
#[tokio::test]
async fn a_disabled_sink_is_refused_before_neuronex_3_9_2() {
    let app = TestApp::spawn().await;
    let sim = sim(2, &["3.9.2", "3.9.1"]).await;
    let ids = app.register(&sim, 2).await;
    let rule = json!({"id": "r1", "sql": "SELECT * FROM demo",
        "actions": [{"log": {}}, {"mqtt": {"server": "tcp://broker:1883", "topic": "t", "enable": false}}]});
    let doc =
        json!({"streams": {"demo": "CREATE STREAM demo () WITH (TYPE=\"memory\")"}, "rules": {"r1": rule.to_string()}});
    let template = app.template("disabled-sink", "rule", doc).await;
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
    let mut outcomes = reasons(&app.targets(&delivery).await);
    outcomes.sort();
    assert_eq!(outcomes[0].1, "succeeded");
    assert_eq!(
        outcomes[1],
        (
            "neuronex-00001".into(),
            "failed".into(),
            "version gate: NeuronEX 3.9.1 ignores a sink's `\"enable\": false` (honoured from 3.9.2), so r1.mqtt#2 would run; remove those sinks or deliver to 3.9.2 or later; nothing was sent".into()
        )
    );
    assert_eq!(sim_state(&sim, 1).await["ekuiper"]["rules"], json!({}), "nothing reached the 3.9.1 gateway");
}

/// A driver template delivered again with a new MQTT topic: Neuron keeps an existing
/// subscription's params ("already subscribed"), so the client sets them with `PUT /subscribe`.
#[tokio::test]
async fn a_subscription_delivered_again_takes_its_new_params() {
    let app = TestApp::spawn().await;
    let sim = sim(1, &["3.7.0"]).await;
    let ids = app.register(&sim, 1).await;
    let doc = json!({"nodes": [{"name": "plc", "plugin": "Modbus TCP",
        "params": {"host": "10.1.1.1", "port": 502, "timeout": 3000, "interval": 20, "connection_mode": 0},
        "groups": [{"group": "fast", "interval": 1000, "tags": [{"name": "t", "address": "1!400001", "attribute": 1, "type": 9}]}]}],
        "subscriptions": [{"app": "cloud", "driver": "plc", "group": "fast", "params": {"topic": "${topic}"}}]});
    let template = app.template("plc", "driver", doc).await;
    // The MQTT app exists on the gateway already (apps are not part of driver templates).
    let cloud = json!({"name": "cloud", "plugin": "MQTT", "params": {"host": "broker", "port": 1883, "client-id": "c1", "format": 0}});
    let created = reqwest::Client::new().post(format!("{}/api/neuron/node", sim.endpoint(0))).json(&cloud).send().await;
    assert_eq!(created.expect("sim").status(), 200);
    for topic in ["plant/a", "plant/b"] {
        let params = json!({"defaults": {"topic": topic}});
        let (delivery, _) =
            app.deliver(json!({"template_id": template, "params": params, "targets": {"ids": ids}})).await;
        assert_eq!(delivery["state"], "succeeded", "{:?}", reasons(&app.targets(&delivery).await));
    }
    let listed = reqwest::get(format!("{}/api/neuron/subscribe?app=cloud", sim.endpoint(0))).await.expect("sim");
    let listed: Value = listed.json().await.expect("json");
    assert_eq!(listed["groups"][0]["params"]["topic"], "plant/b");
}

#[tokio::test]
async fn the_history_narrows_by_state_template_and_who_started_it() {
    let app = TestApp::spawn().await;
    let sim = sim(1, &["3.6.0"]).await;
    let ids = app.register(&sim, 1).await;
    let first = app.template("first", "rule", rule_doc("a", "ra", "SELECT * FROM a")).await;
    let second = app.template("second", "rule", rule_doc("b", "rb", "SELECT * FROM b")).await;
    for template in [&first, &second, &first] {
        let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"ids": ids}})).await;
        assert_eq!(delivery["state"], "succeeded", "{delivery}");
    }
    let cases = [
        ("", 3),
        ("?template=first", 2),
        ("?template=second&state=succeeded", 1),
        ("?state=failed", 0),
        ("?created_by=admin&limit=1", 3),
        ("?created_by=someone-else", 0),
    ];
    for (query, total) in cases {
        let page = app.get(&app.p(&format!("/deliveries{query}"))).await;
        assert_eq!((page.status, page.body["total"].as_i64()), (200, Some(total)), "{query}: {}", page.text);
    }
    let narrowed = app.get(&app.p("/deliveries?template=first")).await;
    assert!(narrowed.body["items"].as_array().expect("items").iter().all(|d| d["template_name"] == "first"));
    let bad = app.get(&app.p("/deliveries?state=sleeping")).await;
    assert_eq!((bad.status, code(&bad)), (400, "bad_query"), "{}", bad.text);
}
