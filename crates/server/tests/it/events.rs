//! Live results: every watcher, whenever it starts, sees every target's final result exactly once
//! and ends with the stored counts; a reconnect resumes where it stopped.

use std::collections::HashMap;

use neuronex_sim::Faults;
use serde_json::{Value, json};

use crate::support::{TestApp, rule_doc, sim};

/// What one stream showed, read to its end.
struct Seen {
    /// Target events per edge.
    targets: HashMap<String, u32>,
    /// The first counts event (the snapshot) and the last one.
    snapshot: Value,
    counts: Value,
    final_event: Value,
    ids: Vec<i64>,
}

/// Reads one stream to its end.
async fn watch(app: &TestApp, id: &str, last_event_id: Option<&str>) -> Seen {
    let path = app.p(&format!("/deliveries/{id}/events"));
    let mut stream = app.client.events(&path, last_event_id).await.expect("events");
    let (mut seen, mut snapshot, mut counts, mut ids) = (HashMap::new(), Value::Null, Value::Null, Vec::new());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
    while let Some(event) = tokio::time::timeout_at(deadline, stream.next()).await.expect("the stream ends") {
        let event = event.expect("the stream goes on");
        let data: Value = serde_json::from_str(&event.data).expect("json");
        match event.name.as_str() {
            "target" => {
                *seen.entry(data["edge_id"].as_str().expect("edge").to_owned()).or_insert(0) += 1;
                ids.push(event.id.as_deref().and_then(|i| i.parse().ok()).expect("a numbered event"));
            }
            "counts" => {
                if snapshot.is_null() {
                    snapshot = data.clone();
                }
                counts = data;
            }
            "final" => return Seen { targets: seen, snapshot, counts, final_event: data, ids },
            _ => {}
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
    // Two watchers that start at once (from the first result: a stream without Last-Event-ID
    // starts from a snapshot, which may already hold some results), and one that starts once
    // part of the results are in (from its snapshot).
    let early = watch(&app, &id, Some("0"));
    let first = watch(&app, &id, Some("0"));
    let during = async {
        // Wait (on a stream) until 200 results are in, then start another watcher.
        let mut targets = 0;
        app.events_until(&id, |e| {
            targets += usize::from(e.name == "target");
            targets >= 200
        })
        .await;
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
    for (name, seen) in [("early", early), ("first", first), ("after", after)] {
        assert_eq!(seen.final_event["counts"], stored["counts"], "{name}: final counts are the stored ones");
        assert_eq!(seen.counts, stored["counts"], "{name}: the last counts event too");
        assert_eq!(seen.targets.len(), 2000, "{name}: every target's result");
        assert!(seen.targets.values().all(|n| *n == 1), "{name}: each exactly once");
        assert!(seen.ids.windows(2).all(|w| w[0] < w[1]), "{name}: in order");
    }
    // The watcher that started during the delivery: its snapshot plus what came after is all of
    // it, each once.
    let finished_in_snapshot: u64 =
        ["succeeded", "failed", "skipped", "canceled"].iter().map(|k| during.snapshot[*k].as_u64().unwrap_or(0)).sum();
    assert_eq!(during.final_event["counts"], stored["counts"]);
    assert!(during.targets.values().all(|n| *n == 1));
    assert_eq!(during.targets.len() as u64 + finished_in_snapshot, 2000, "snapshot {}", during.snapshot);
}

/// A rule template delivered to `count` simulated gateways, all registered; the simulator (keep
/// it while the delivery runs) and the delivery's id.
async fn rule_delivered(app: &TestApp, count: u32) -> (neuronex_sim::RunningSim, String) {
    let sim = sim(count, &["3.6.0"]).await;
    let rows: Vec<Value> = sim.manifest.iter().map(|e| json!({"name": e.name, "endpoint": e.endpoint})).collect();
    app.post(&app.p("/edge-services/import"), json!(rows)).await;
    let template = app.template("r", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"all": true}})).await;
    (sim, delivery["id"].as_str().expect("id").to_owned())
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_gets_exactly_the_rest() {
    let app = TestApp::spawn().await;
    let (_sim, id) = rule_delivered(&app, 50).await;
    let id = id.as_str();
    let all = watch(&app, id, Some("0")).await;
    assert_eq!(all.targets.len(), 50, "from the start: every result");
    let cut = all.ids[19].to_string();
    let rest = watch(&app, id, Some(&cut)).await;
    assert_eq!(rest.targets.len(), 30, "after the 20th: the other 30");
    assert!(rest.ids.iter().all(|n| *n > all.ids[19]));
    assert_eq!(rest.final_event["counts"]["succeeded"], 50);
    let none = watch(&app, id, None).await;
    assert!(none.targets.is_empty(), "a new stream of a finished delivery: its snapshot and the final event");
    assert_eq!(none.snapshot["succeeded"], 50);
    let bad = app.client.events(&app.p(&format!("/deliveries/{id}/events")), Some("seven")).await.err();
    assert_eq!(bad.as_ref().and_then(|e| e.code()), Some("bad_last_event_id"), "{bad:?}");
}

/// On the wire: an uncached `text/event-stream` whose every event has its name, one line of JSON
/// data and its id, a result's id being its number; what a browser's `EventSource` reads.
#[tokio::test]
async fn a_stream_is_plain_server_sent_events_with_each_result_numbered() {
    let app = TestApp::spawn().await;
    let (_sim, id) = rule_delivered(&app, 20).await;
    let id = id.as_str();
    watch(&app, id, None).await;
    let answer = app
        .http
        .get(format!("{}{}", app.base, app.p(&format!("/deliveries/{id}/events"))))
        .bearer_auth(&app.token)
        .header("Last-Event-ID", "0")
        .send()
        .await
        .expect("events");
    assert_eq!(answer.status(), 200);
    let header = |name: &str| answer.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
    assert_eq!(header("cache-control").as_deref(), Some("no-cache"));
    let body = answer.text().await.expect("body");
    let blocks: Vec<&str> = body.split_terminator("\n\n").collect();
    let mut names = Vec::new();
    for block in &blocks {
        let lines: Vec<&str> = block.split('\n').collect();
        let [event, data, number] = lines[..] else { panic!("event, data and id lines: {block:?}") };
        let name = event.strip_prefix("event: ").expect("event line");
        let data: Value = serde_json::from_str(data.strip_prefix("data: ").expect("data line")).expect("json");
        let number: i64 = number.strip_prefix("id: ").expect("id line").parse().expect("a number");
        if name == "target" {
            assert_eq!(data["seq"], number, "a result's id is its number");
        }
        names.push(name);
    }
    assert_eq!(names.iter().filter(|n| **n == "target").count(), 20, "{names:?}");
    assert_eq!(names.last(), Some(&"final"));
    assert_eq!(sse::Parser::new().feed(body.as_bytes()).len(), blocks.len(), "the one SSE reader agrees");
}
