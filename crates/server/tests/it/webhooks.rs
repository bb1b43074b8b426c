//! Webhooks: a receiver of the test's own checks every call's signature and headers; a failed
//! call is tried again when the test moves the server's clock past its back-off.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use server::clock::Clock;
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::support::{PASSWORD, TestApp, code, rule_doc, sim};

const SECRET: &str = "a-receivers-shared-secret";

/// One call as the receiver got it, its signature checked.
#[derive(Debug)]
struct Received {
    event: String,
    delivery: String,
    body: Value,
    signed: bool,
}

/// An HTTP receiver on loopback that answers 500 to the first try of each call whose event is
/// in `fail_once`, and 200 to everything else.
struct Receiver {
    url: String,
    calls: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    async fn start(fail_once: &[&str]) -> Receiver {
        let (tx, calls) = mpsc::unbounded_channel();
        let fail_once: HashSet<String> = fail_once.iter().map(|e| (*e).to_owned()).collect();
        let failed: Arc<Mutex<HashSet<String>>> = Arc::default();
        let handler = move |headers: HeaderMap, body: axum::body::Bytes| {
            let (tx, fail_once, failed) = (tx.clone(), fail_once.clone(), failed.clone());
            async move {
                let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
                mac.update(&body);
                let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
                let received = Received {
                    event: header("x-edgefleet-event"),
                    delivery: header("x-edgefleet-delivery"),
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    signed: header("x-edgefleet-signature") == expected,
                };
                let first_try = failed.lock().expect("lock").insert(received.delivery.clone());
                let status = if fail_once.contains(&received.event) && first_try {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                };
                let _ = tx.send(received);
                status
            }
        };
        let router = axum::Router::new().route("/hook", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver { url, calls }
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(60), self.calls.recv())
            .await
            .expect("a webhook call within a minute")
            .expect("receiver running")
    }

    /// The next calls until one of `event` (the others are returned too, in order).
    async fn until(&mut self, event: &str) -> Vec<Received> {
        let mut got = Vec::new();
        loop {
            let call = self.next().await;
            let done = call.event == event;
            got.push(call);
            if done {
                return got;
            }
        }
    }
}

/// The webhook's call log until `ready` holds of it. The sender records a try just after the
/// receiver answers, so the log is read again until it shows it (bounded).
async fn log_until(app: &TestApp, hook: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let path = app.p(&format!("/webhooks/{hook}/deliveries"));
    for _ in 0..600 {
        let log = app.get(&path).await;
        assert_eq!(log.status, 200, "{}", log.text);
        let items = log.body["items"].as_array().cloned().unwrap_or_default();
        if ready(&items) {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the webhook's log never showed what was expected");
}

#[tokio::test]
async fn delivery_and_drift_events_reach_a_webhook_signed_and_a_failed_call_is_retried() {
    let clock = Clock::manual(store::now_ms());
    let held = clock.clone();
    let app = TestApp::spawn_with(move |config| config.clock = held).await;
    let sim = sim(2, &["3.6.0"]).await;
    let edges = app.register(&sim, 2).await;
    let mut receiver = Receiver::start(&["delivery.finished"]).await;
    let events = ["delivery.created", "delivery.started", "delivery.finished", "edge.drifted"];
    let made = app.post(&app.p("/webhooks"), json!({"url": receiver.url, "secret": SECRET, "events": events})).await;
    assert_eq!(made.status, 201, "{}", made.text);
    assert_eq!(made.body["secret"], SECRET, "the secret is shown once, on creation");
    let hook = made.body["id"].as_str().expect("id").to_owned();
    let listed = app.get(&app.p("/webhooks")).await;
    assert_eq!(listed.body["total"], 1, "{}", listed.text);
    assert!(listed.body["items"][0].get("secret").is_none(), "never listed: {}", listed.text);
    assert_eq!(listed.body["items"][0]["events"], json!(events), "{}", listed.text);

    // The test button sends a ping now and answers how it went.
    let ping = app.post(&app.p(&format!("/webhooks/{hook}/test")), json!({})).await;
    assert_eq!(ping.status, 200, "{}", ping.text);
    assert_eq!((ping.body["state"].as_str(), ping.body["status_code"].as_i64()), (Some("delivered"), Some(200)));
    let got = receiver.next().await;
    assert_eq!((got.event.as_str(), got.signed), ("ping", true), "{got:?}");
    assert_eq!(got.delivery, ping.body["id"].as_str().expect("id"));

    // A delivery: created and started at once, then finished, whose first try fails.
    let template = app.template("hooked", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let (delivery, _) = app.deliver(json!({"template_id": template, "targets": {"all": true}})).await;
    let delivery_id = delivery["id"].as_str().expect("id");
    let got = receiver.until("delivery.finished").await;
    let seen: HashSet<&str> = got.iter().map(|c| c.event.as_str()).collect();
    assert_eq!(seen, HashSet::from(["delivery.created", "delivery.started", "delivery.finished"]), "{got:?}");
    for call in &got {
        assert!(call.signed, "{call:?}");
        assert_eq!(call.body["resource"]["id"], delivery_id, "{call:?}");
        assert_eq!(call.body["event"], call.event.as_str());
        assert_eq!(call.body["id"], call.delivery.as_str());
        assert_eq!(call.body["project"]["id"], app.project.as_str());
    }
    let finished = got.last().expect("finished");
    assert_eq!(finished.body["outcome"], "succeeded", "{finished:?}");
    assert_eq!(finished.body["details"]["counts"]["succeeded"], 2, "{finished:?}");
    let log =
        log_until(&app, &hook, |items| items.iter().any(|c| c["event"] == "delivery.finished" && c["attempts"] == 1))
            .await;
    let failed = log.iter().find(|c| c["event"] == "delivery.finished").expect("logged");
    assert_eq!(
        (failed["state"].as_str(), failed["status_code"].as_i64(), failed["error"].as_str()),
        (Some("pending"), Some(500), Some("the receiver answered HTTP 500")),
        "{failed}"
    );
    assert!(failed["next_at"].as_i64().is_some_and(|at| at >= clock.now_ms() + 10_000), "{failed}");

    // Past its back-off the call is tried again, with the same id, and delivered.
    clock.advance(Duration::from_secs(11));
    let again = receiver.next().await;
    assert_eq!(
        (again.event.as_str(), again.delivery.as_str(), again.signed),
        ("delivery.finished", finished.delivery.as_str(), true)
    );
    let log = log_until(&app, &hook, |items| {
        items.iter().any(|c| c["event"] == "delivery.finished" && c["state"] == "delivered")
    })
    .await;
    let retried = log.iter().find(|c| c["event"] == "delivery.finished").expect("logged");
    assert_eq!((retried["attempts"].as_i64(), retried["status_code"].as_i64()), (Some(2), Some(200)), "{retried}");

    // A rule changed on a gateway: the drift check that finds it raises edge.drifted, once.
    let url = format!("{}/i/1/api/ekuiper/rules/r1", sim.base_url);
    let changed = json!({"id": "r1", "sql": "SELECT * FROM s WHERE x > 1", "actions": [{"log": {}}]});
    assert!(reqwest::Client::new().put(url).json(&changed).send().await.expect("sim").status().is_success());
    let check = app.p(&format!("/edge-services/{}/check", edges[1]));
    for _ in 0..2 {
        let checked = app.post(&check, json!({})).await;
        assert_eq!(checked.body["state"], "drifted", "{}", checked.text);
    }
    let drifted = receiver.next().await;
    assert_eq!((drifted.event.as_str(), drifted.signed), ("edge.drifted", true), "{drifted:?}");
    assert_eq!(drifted.body["resource"]["id"], edges[1].as_str());
    assert_eq!(drifted.body["details"]["objects"], json!([{"kind": "rule", "id": "r1"}]), "{drifted:?}");
    let log = log_until(&app, &hook, |items| items.iter().all(|c| c["state"] == "delivered")).await;
    assert_eq!(log.iter().filter(|c| c["event"] == "edge.drifted").count(), 1, "the second check found no new drift");

    // Every try is counted by event and result; nothing is left to try.
    let metrics = reqwest::get(format!("{}/metrics", app.base)).await.expect("metrics").text().await.expect("text");
    for line in [
        "edgefleet_webhook_tries_total{event=\"delivery.finished\",result=\"retrying\"} 1",
        "edgefleet_webhook_tries_total{event=\"delivery.finished\",result=\"delivered\"} 1",
        "edgefleet_webhook_tries_total{event=\"edge.drifted\",result=\"delivered\"} 1",
        "edgefleet_webhook_calls_pending 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    assert!(metrics.contains("edgefleet_webhook_try_duration_seconds_count{event=\"edge.drifted\"} 1"), "{metrics}");

    // Deleting the webhook stops its calls and is audited.
    let deleted = app.call(reqwest::Method::DELETE, &app.p(&format!("/webhooks/{hook}")), None).await;
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    let gone = app.get(&app.p(&format!("/webhooks/{hook}/deliveries"))).await;
    assert_eq!((gone.status, code(&gone)), (404, "webhook_not_found"), "{}", gone.text);
    let audit = app.get("/api/v1/audit?action=webhook.").await;
    let actions: Vec<&str> =
        audit.body["items"].as_array().expect("items").iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["webhook.delete", "webhook.create"], "{}", audit.text);
}

#[tokio::test]
async fn webhooks_are_checked_before_they_are_stored() {
    let app = TestApp::spawn().await;
    let hooks = app.p("/webhooks");
    let cases = [
        (json!({"url": "ftp://127.0.0.1/x", "events": ["*"]}), "url: an http:// or https:// address"),
        (json!({"url": "not a url", "events": ["*"]}), "url: relative URL without a base"),
        (json!({"url": format!("http://127.0.0.1/{}", "x".repeat(2048)), "events": ["*"]}), "at most 2048"),
        (json!({"url": "http://192.168.7.7/hook", "events": ["*"]}), "url: 192.168.7.7"),
        (json!({"url": "http://127.0.0.1/hook", "events": ["*"], "secret": "short"}), "secret: 16 to 256"),
        (json!({"url": "http://127.0.0.1/hook", "events": []}), "events: name at least one"),
        (json!({"url": "http://127.0.0.1/hook", "events": ["delivery.done"]}), "unknown webhook event"),
        (json!({"url": "http://127.0.0.1/hook", "events": ["*", "ping"]}), "stands alone"),
    ];
    for (body, words) in cases {
        let answer = app.post(&hooks, body.clone()).await;
        assert_eq!((answer.status, code(&answer)), (422, "invalid_webhook"), "{body}: {}", answer.text);
        assert!(answer.text.contains(words), "{body}: {}", answer.text);
    }
    let unknown_field = app.post(&hooks, json!({"url": "http://127.0.0.1/hook", "events": ["*"], "retries": 3})).await;
    assert_eq!((unknown_field.status, code(&unknown_field)), (400, "malformed_json"), "{}", unknown_field.text);
    // A secret is made when none is given; twenty webhooks at most.
    let made = app.post(&hooks, json!({"url": "http://127.0.0.1:9/hook", "events": ["*"]})).await;
    assert_eq!(made.status, 201, "{}", made.text);
    assert!(made.body["secret"].as_str().is_some_and(|s| s.len() >= 32), "{}", made.text);
    for k in 1..20 {
        let answer = app.post(&hooks, json!({"url": format!("http://127.0.0.1:9/{k}"), "events": ["*"]})).await;
        assert_eq!(answer.status, 201, "{}", answer.text);
    }
    let refused = app.post(&hooks, json!({"url": "http://127.0.0.1:9/21", "events": ["*"]})).await;
    assert_eq!((refused.status, code(&refused)), (422, "too_many_webhooks"), "{}", refused.text);
    // A receiver that does not answer: the test button says why, at once.
    let hook = made.body["id"].as_str().expect("id");
    let ping = app.post(&app.p(&format!("/webhooks/{hook}/test")), json!({})).await;
    assert_eq!(ping.status, 200, "{}", ping.text);
    assert_eq!(ping.body["state"], "failed", "{}", ping.text);
    assert!(ping.body["status_code"].is_null(), "{}", ping.text);
    assert!(!ping.body["error"].as_str().unwrap_or_default().is_empty(), "{}", ping.text);
}

#[tokio::test]
async fn a_rollout_announces_its_approval_waves_abort_and_rollback_to_every_event_webhook() {
    const COUNT: u32 = 40;
    let app = TestApp::spawn().await;
    let sim = sim(COUNT, &["3.6.0"]).await;
    let ids = app.register(&sim, COUNT).await;
    let mut receiver = Receiver::start(&[]).await;
    let made = app.post(&app.p("/webhooks"), json!({"url": receiver.url, "secret": SECRET, "events": ["*"]})).await;
    assert_eq!(made.status, 201, "{}", made.text);
    let approvals = app.call(reqwest::Method::PATCH, &app.p(""), Some(json!({"approvals_required": 1}))).await;
    assert_eq!(approvals.status, 200, "{}", approvals.text);
    let (_, bob) = app.user("bob", PASSWORD, Some("admin")).await;
    let template = app.template("canary", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    // Waves of 10, 10 and 20 targets; half of wave 2 fails, so the rollout stops there and rolls
    // back the 15 gateways it changed.
    let body = json!({"template_id": template, "targets": {"all": true}, "options": {"retries": 0, "concurrency": 4},
        "rollout": {"waves": [{"count": 10}, {"count": 20}, {"percent": 100}], "gate": "auto",
                    "abort": {"failed_percent": 5, "min_results": 20}, "on_abort": "rollback"}});
    let started = app.post(&app.p("/deliveries"), body).await;
    assert_eq!((started.status, started.body["state"].as_str()), (202, Some("awaiting_approval")), "{}", started.text);
    let id = started.body["id"].as_str().expect("id").to_owned();
    let targets = app.get(&app.p(&format!("/deliveries/{id}/targets?limit=100"))).await;
    let in_wave_order = targets.body["items"].as_array().expect("items");
    for target in in_wave_order.iter().skip(10).take(10).step_by(2) {
        let k = ids.iter().position(|e| *e == target["edge_id"]).expect("registered") as u32;
        sim.sim.set_faults(Some(k), Some(neuronex_sim::Faults { error_rate: 1.0, ..Default::default() }));
    }
    let created = receiver.until("delivery.created").await;
    assert_eq!(created.len(), 1, "nothing starts before the approval: {created:?}");

    let approved = app.call_as(&bob, reqwest::Method::POST, &app.p(&format!("/deliveries/{id}/approve")), None).await;
    assert_eq!(approved.status, 200, "{}", approved.text);
    let mut calls = receiver.until("delivery.rolled_back").await;
    let rollback_id = calls.last().expect("rolled back").body["resource"]["id"].as_str().expect("id").to_owned();
    // The rollback's own start and end, and the rollout's end, in whatever order they come.
    while calls.iter().filter(|c| c.event == "delivery.finished").count() < 2 {
        calls.push(receiver.next().await);
    }
    let of = |delivery: &str| -> Vec<&str> {
        calls.iter().filter(|c| c.body["resource"]["id"] == delivery).map(|c| c.event.as_str()).collect()
    };
    // Calls due together are sent side by side, so they may arrive in any order; `at` orders them.
    fn sorted(mut events: Vec<&str>) -> Vec<&str> {
        events.sort_unstable();
        events
    }
    let in_order = ["delivery.approved", "delivery.started", "delivery.wave", "delivery.aborted", "delivery.finished"];
    assert_eq!(sorted(of(&id)), sorted(in_order.to_vec()), "{calls:?}");
    assert_eq!(
        sorted(of(&rollback_id)),
        ["delivery.created", "delivery.finished", "delivery.rolled_back", "delivery.started"],
        "{calls:?}"
    );
    assert!(calls.iter().all(|c| c.signed), "{calls:?}");
    let event = |delivery: &str, name: &str| {
        calls.iter().find(|c| c.body["resource"]["id"] == delivery && c.event == name).expect("called").body.clone()
    };
    let times: Vec<i64> = in_order.iter().map(|name| event(&id, name)["at"].as_i64().expect("at")).collect();
    assert!(times.is_sorted(), "{in_order:?} at {times:?}");
    assert_eq!(event(&id, "delivery.approved")["actor"], "bob", "{calls:?}");
    assert_eq!(event(&id, "delivery.wave")["details"]["wave"], 1, "{calls:?}");
    assert_eq!(event(&id, "delivery.aborted")["details"]["wave"], 2, "{calls:?}");
    assert_eq!(event(&id, "delivery.finished")["outcome"], "aborted", "{calls:?}");
    assert_eq!(event(&rollback_id, "delivery.rolled_back")["details"]["rollback_of"], id.as_str(), "{calls:?}");
    assert_eq!(event(&rollback_id, "delivery.finished")["outcome"], "succeeded", "{calls:?}");
}
