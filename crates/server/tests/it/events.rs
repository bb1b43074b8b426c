//! Live results: every watcher, whenever it starts, sees every target's final result exactly once
//! and ends with the stored counts; a reconnect resumes where it stopped.

use std::collections::HashMap;

use neuronex_sim::Faults;
use serde_json::{Value, json};

use crate::support::{TestApp, rule_doc, sim};

/// Reads one stream to its end: (targets seen per edge, last counts event, final event, ids).
async fn watch(app: &TestApp, id: &str, last_event_id: Option<&str>) -> (HashMap<String, u32>, Value, Value, Vec<i64>) {
    let mut request =
        app.http.get(format!("{}{}", app.base, app.p(&format!("/deliveries/{id}/events")))).bearer_auth(&app.token);
    if let Some(last) = last_event_id {
        request = request.header("last-event-id", last);
    }
    let mut response = request.send().await.expect("events");
    assert_eq!(response.status(), 200);
    let mut parser = sse::Parser::new();
    let (mut seen, mut counts, mut ids) = (HashMap::new(), Value::Null, Vec::new());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(deadline, response.chunk()).await.expect("the stream ends") {
        for event in parser.feed(&chunk) {
            let data: Value = serde_json::from_str(&event.data).expect("json");
            match event.name.as_str() {
                "target" => {
                    *seen.entry(data["edge_id"].as_str().expect("edge").to_owned()).or_insert(0) += 1;
                    ids.push(event.id.as_deref().and_then(|i| i.parse().ok()).expect("a numbered event"));
                }
                "counts" => counts = data,
                "final" => return (seen, counts, data, ids),
                _ => {}
            }
        }
    }
    panic!("the stream ended without a final event");
}

#[tokio::test]
async fn watchers_before_during_and_after_see_every_result_once() {
    let app = TestApp::spawn().await;
    let sim = sim(2000, &["3.6.0"]).await;
    let rows: Vec<Value> = sim.manifest.iter().map(|e| json!({"name": e.name, "endpoint": e.endpoint})).collect();
    let imported = app.post(&app.p("/edge-services/import"), json!(rows)).await;
    assert_eq!(imported.status, 201);
    // Faults: some gateways answer errors, a few never answer (until the target's timeout).
    for k in (0..2000).step_by(17) {
        sim.sim.set_faults(Some(k), Some(Faults { error_rate: 1.0, ..Faults::default() }));
    }
    for k in (5..2000).step_by(199) {
        sim.sim.set_faults(Some(k), Some(Faults { timeout_rate: 1.0, ..Faults::default() }));
    }
    let template = app.template("r", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let started = app
        .post(&app.p("/deliveries"), json!({"template_id": template, "targets": {"all": true}, "options": {"concurrency": 64, "timeout_secs": 2, "retries": 0}}))
        .await;
    assert_eq!(started.status, 202, "{}", started.text);
    let id = started.body["id"].as_str().expect("id").to_owned();
    // Two watchers that start at once, and one that starts once part of the results are in.
    let early = watch(&app, &id, None);
    let first = watch(&app, &id, None);
    let during = async {
        let mut half = app
            .http
            .get(format!("{}{}", app.base, app.p(&format!("/deliveries/{id}/events"))))
            .bearer_auth(&app.token)
            .send()
            .await
            .expect("events");
        // Wait (on the stream itself) until some results are in, then start another watcher.
        let mut parser = sse::Parser::new();
        let mut targets = 0;
        while targets < 200 {
            let chunk = half.chunk().await.expect("chunk").expect("more");
            targets += parser.feed(&chunk).iter().filter(|e| e.name == "target").count();
        }
        watch(&app, &id, None).await
    };
    let (early, first, during) = tokio::join!(early, first, during);
    let after = watch(&app, &id, Some("0")).await;
    let stored = app.get(&app.p(&format!("/deliveries/{id}"))).await.body;
    let final_targets: HashMap<String, String> = {
        let mut all = HashMap::new();
        let mut offset = 0;
        loop {
            let page = app.get(&app.p(&format!("/deliveries/{id}/targets?limit=1000&offset={offset}"))).await.body;
            let items = page["items"].as_array().expect("items").clone();
            for t in &items {
                all.insert(
                    t["edge_id"].as_str().expect("edge").to_owned(),
                    t["status"].as_str().expect("status").to_owned(),
                );
            }
            offset += 1000;
            if items.len() < 1000 {
                break all;
            }
        }
    };
    assert_eq!(final_targets.len(), 2000);
    assert!(stored["counts"]["failed"].as_u64().expect("failed") > 100, "{stored}");
    for (name, (seen, counts, fin, ids)) in [("early", early), ("first", first), ("after", after)] {
        assert_eq!(fin["counts"], stored["counts"], "{name}: final counts are the stored ones");
        assert_eq!(counts, stored["counts"], "{name}: the last counts event too");
        assert_eq!(seen.len(), 2000, "{name}: every target's result");
        assert!(seen.values().all(|n| *n == 1), "{name}: each exactly once");
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{name}: in order");
    }
    // The watcher that started during the delivery saw the rest after its snapshot, each once.
    let (seen, _, fin, _) = during;
    assert_eq!(fin["counts"], stored["counts"]);
    assert!(seen.values().all(|n| *n == 1));
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_gets_exactly_the_rest() {
    let app = TestApp::spawn().await;
    let sim = sim(50, &["3.6.0"]).await;
    let rows: Vec<Value> = sim.manifest.iter().map(|e| json!({"name": e.name, "endpoint": e.endpoint})).collect();
    app.post(&app.p("/edge-services/import"), json!(rows)).await;
    let template = app.template("r", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"all": true}})).await;
    let id = delivery["id"].as_str().expect("id");
    let (all, _, _, ids) = watch(&app, id, Some("0")).await;
    assert_eq!(all.len(), 50, "from the start: every result");
    let cut = ids[19].to_string();
    let (rest, _, fin, rest_ids) = watch(&app, id, Some(&cut)).await;
    assert_eq!(rest.len(), 30, "after the 20th: the other 30");
    assert!(rest_ids.iter().all(|n| *n > ids[19]));
    assert_eq!(fin["counts"]["succeeded"], 50);
    let (none, _, _, _) = watch(&app, id, None).await;
    assert!(none.is_empty(), "a new stream of a finished delivery: its snapshot and the final event");
    let bad = app
        .http
        .get(format!("{}{}", app.base, app.p(&format!("/deliveries/{id}/events"))))
        .bearer_auth(&app.token)
        .header("last-event-id", "seven")
        .send()
        .await
        .expect("events");
    assert_eq!(bad.status(), 400);
}
