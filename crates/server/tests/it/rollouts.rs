//! Rollouts: waves, the abort rule and its rollback, gates, pause and resume, approvals,
//! schedules. Waits follow the event stream or a clock the test moves, never the wall clock.

use std::time::Duration;

use neuronex_sim::Faults;
use reqwest::Method;
use serde_json::{Value, json};
use server::clock::Clock;

use crate::support::{PASSWORD, TestApp, code, rule_doc, sim};

/// Whether instance `k` holds rule `r1`.
fn holds_rule(sim: &neuronex_sim::RunningSim, k: u32) -> bool {
    sim.sim.snapshot(k).expect("instance")["ekuiper"]["rules"].get("r1").is_some()
}

/// Edge ids in instance order → instance numbers.
fn instance_of(ids: &[String]) -> std::collections::HashMap<String, u32> {
    ids.iter().enumerate().map(|(k, id)| (id.clone(), k as u32)).collect()
}

async fn all_targets(app: &TestApp, id: &str) -> Vec<Value> {
    let answer = app.get(&app.p(&format!("/deliveries/{id}/targets?limit=1000"))).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.body["items"].as_array().expect("items").clone()
}

async fn require_approvals(app: &TestApp, n: i64) {
    let answer = app.call(Method::PATCH, &app.p(""), Some(json!({"approvals_required": n}))).await;
    assert_eq!((answer.status, answer.body["approvals_required"].as_i64()), (200, Some(n)), "{}", answer.text);
}

#[tokio::test]
async fn a_rollout_aborts_in_wave_two_touches_no_later_wave_and_rolls_back_what_it_changed() {
    const COUNT: u32 = 1000;
    let app = TestApp::spawn().await;
    let sim = sim(COUNT, &["3.6.0"]).await;
    let ids = app.register(&sim, COUNT).await;
    let instance = instance_of(&ids);
    let template = app.template("canary", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    // Held for approval, so the test can see the waves before anything is sent.
    require_approvals(&app, 1).await;
    let (_, bob) = app.user("bob", PASSWORD, Some("admin")).await;
    let body = json!({"template_id": template, "targets": {"all": true},
        "options": {"retries": 0, "concurrency": 16},
        "rollout": {"waves": [{"percent": 1}, {"percent": 10}, {"percent": 100}], "gate": "auto",
                    "abort": {"failed_percent": 5, "min_results": 20}, "on_abort": "rollback"}});
    let started = app.post(&app.p("/deliveries"), body).await;
    assert_eq!(started.status, 202, "{}", started.text);
    assert_eq!(started.body["state"], "awaiting_approval");
    assert_eq!((started.body["wave"].as_u64(), started.body["waves"].as_u64()), (Some(1), Some(3)));
    assert_eq!(started.body["wave_ends"], json!([10, 110, 1000]));
    let id = started.body["id"].as_str().expect("id").to_owned();
    let targets = all_targets(&app, &id).await;
    let waves: Vec<i64> = targets.iter().map(|t| t["wave"].as_i64().expect("wave")).collect();
    assert_eq!(
        [1, 2, 3].map(|w| waves.iter().filter(|x| **x == w).count()),
        [10, 100, 890],
        "targets listed in wave order"
    );
    // Every tenth target in the delivery's order fails: 1 of wave 1 (below the 20-result sample),
    // 10% of wave 2.
    let failing: Vec<u32> =
        targets.iter().skip(9).step_by(10).map(|t| instance[t["edge_id"].as_str().expect("id")]).collect();
    for k in &failing {
        sim.sim.set_faults(Some(*k), Some(Faults { error_rate: 1.0, ..Faults::default() }));
    }
    assert!((0..COUNT).all(|k| !holds_rule(&sim, k)), "an unapproved delivery sends nothing");

    let (events, approved) = tokio::join!(app.events(&id), async {
        app.call_as(&bob, Method::POST, &app.p(&format!("/deliveries/{id}/approve")), None).await
    });
    assert_eq!(approved.status, 200, "{}", approved.text);
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert!(names.contains(&"wave_finished") && names.contains(&"wave_started"), "{names:?}");
    let aborted = events.iter().find(|(name, _)| name == "aborted").expect("an aborted event");
    assert_eq!((aborted.1["wave"].as_u64(), aborted.1["by"].as_str()), (Some(2), Some("abort rule")));

    let delivery = app.get(&app.p(&format!("/deliveries/{id}"))).await.body;
    assert_eq!(delivery["state"], "aborted", "{delivery}");
    let reason = delivery["abort_reason"].as_str().expect("reason");
    assert!(
        reason.starts_with("rollout aborted at wave 2: ") && reason.ends_with("% failed (threshold 5%)"),
        "{reason}"
    );
    let targets = all_targets(&app, &id).await;
    for target in targets.iter().filter(|t| t["wave"] == 3) {
        assert_eq!(
            (target["status"].as_str(), target["reason"].as_str()),
            (Some("canceled"), Some(reason)),
            "{target}"
        );
        assert!(target["started_at"].is_null(), "wave 3 was never touched: {target}");
        let k = instance[target["edge_id"].as_str().expect("id")];
        let requests = sim.sim.snapshot(k).expect("instance")["requests"].clone();
        let delivered: Vec<&String> =
            requests.as_object().expect("requests").keys().filter(|r| *r != "GET /api/version").collect();
        assert!(delivered.is_empty(), "instance {k} got {delivered:?} (probes aside)");
    }
    // The rollback puts back every gateway the rollout changed.
    let rollback_id = delivery["rollback_id"].as_str().expect("rollback_id").to_owned();
    let changed: Vec<u32> = targets
        .iter()
        .filter(|t| t["status"] == "succeeded")
        .map(|t| instance[t["edge_id"].as_str().expect("id")])
        .collect();
    assert!(!changed.is_empty());
    app.events(&rollback_id).await;
    let rollback = app.get(&app.p(&format!("/deliveries/{rollback_id}"))).await.body;
    assert_eq!((rollback["mode"].as_str(), rollback["of"].as_str()), (Some("rollback"), Some(id.as_str())));
    assert_eq!(rollback["state"], "succeeded", "{rollback}");
    for k in changed {
        assert!(!holds_rule(&sim, k), "instance {k} was put back");
    }
    let audit = app.get("/api/v1/audit?action=delivery.abort").await;
    assert_eq!(audit.body["items"][0]["actor_name"], "edgefleet (rollout)", "{}", audit.text);
}

#[tokio::test]
async fn a_manual_gate_pauses_after_each_wave_until_resumed() {
    let app = TestApp::spawn().await;
    let sim = sim(10, &["3.6.0"]).await;
    let ids = app.register(&sim, 10).await;
    let instance = instance_of(&ids);
    let template = app.template("gated", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let body = json!({"template_id": template, "targets": {"all": true},
                      "rollout": {"waves": [{"count": 3}, {"count": 100}], "gate": "manual"}});
    let started = app.post(&app.p("/deliveries"), body).await;
    assert_eq!(started.status, 202, "{}", started.text);
    let id = started.body["id"].as_str().expect("id").to_owned();
    app.events_until(&id, |event| {
        event.name == "paused" || (event.name == "state" && event.data.contains("\"paused\""))
    })
    .await;
    let paused = app.get(&app.p(&format!("/deliveries/{id}"))).await.body;
    assert_eq!((paused["state"].as_str(), paused["wave"].as_u64()), (Some("paused"), Some(1)), "{paused}");
    assert_eq!((paused["counts"]["succeeded"].as_u64(), paused["counts"]["pending"].as_u64()), (Some(3), Some(7)));
    for target in all_targets(&app, &id).await.iter().filter(|t| t["wave"] == 2) {
        assert!(!holds_rule(&sim, instance[target["edge_id"].as_str().expect("id")]), "wave 2 waits for the gate");
    }
    // Controls answer with stable codes where they do not apply.
    let pause = app.post(&app.p(&format!("/deliveries/{id}/pause")), json!({})).await;
    assert_eq!((pause.status, code(&pause)), (409, "cannot_pause"));
    let approve = app.post(&app.p(&format!("/deliveries/{id}/approve")), json!({})).await;
    assert_eq!((approve.status, code(&approve)), (409, "not_awaiting_approval"));

    let resumed = app.post(&app.p(&format!("/deliveries/{id}/resume")), json!({})).await;
    assert_eq!((resumed.status, resumed.body["wave"].as_u64()), (200, Some(2)), "{}", resumed.text);
    app.events(&id).await;
    let done = app.get(&app.p(&format!("/deliveries/{id}"))).await.body;
    assert_eq!((done["state"].as_str(), done["counts"]["succeeded"].as_u64()), (Some("succeeded"), Some(10)));
    assert!((0..10).all(|k| holds_rule(&sim, k)));
    let again = app.post(&app.p(&format!("/deliveries/{id}/resume")), json!({})).await;
    assert_eq!((again.status, code(&again)), (409, "not_paused"));
    let abort = app.post(&app.p(&format!("/deliveries/{id}/abort")), json!({})).await;
    assert_eq!((abort.status, code(&abort)), (409, "delivery_finished"));
}

#[tokio::test]
async fn a_paused_delivery_can_be_aborted_and_its_waiting_targets_are_canceled() {
    let app = TestApp::spawn().await;
    let sim = sim(6, &["3.6.0"]).await;
    app.register(&sim, 6).await;
    let template = app.template("gated", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let body = json!({"template_id": template, "targets": {"all": true},
                      "rollout": {"waves": [{"count": 2}, {"percent": 50}], "gate": "manual", "on_abort": "rollback"}});
    let id = app.post(&app.p("/deliveries"), body).await.body["id"].as_str().expect("id").to_owned();
    app.events_until(&id, |event| {
        event.name == "paused" || (event.name == "state" && event.data.contains("\"paused\""))
    })
    .await;
    let aborted = app.post(&app.p(&format!("/deliveries/{id}/abort")), json!({})).await;
    assert_eq!(aborted.status, 200, "{}", aborted.text);
    app.events(&id).await;
    let delivery = app.get(&app.p(&format!("/deliveries/{id}"))).await.body;
    assert_eq!(delivery["state"], "aborted");
    assert_eq!(delivery["abort_reason"], "rollout aborted at wave 1 by admin");
    assert_eq!((delivery["counts"]["succeeded"].as_u64(), delivery["counts"]["canceled"].as_u64()), (Some(2), Some(4)));
    let rollback_id = delivery["rollback_id"].as_str().expect("an abort's rollback").to_owned();
    app.events(&rollback_id).await;
    assert!((0..6).all(|k| !holds_rule(&sim, k)), "the two changed gateways were put back");
}

#[tokio::test]
async fn approvals_need_other_admins_are_audited_and_expire_after_a_day() {
    let clock = Clock::manual(store::now_ms());
    let held = clock.clone();
    let app = TestApp::spawn_with(move |config| config.clock = held).await;
    let sim = sim(2, &["3.6.0"]).await;
    app.register(&sim, 2).await;
    let template = app.template("approved", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    require_approvals(&app, 2).await;
    let (_, bob) = app.user("bob", PASSWORD, Some("admin")).await;
    let (_, carol) = app.user("carol", PASSWORD, Some("admin")).await;
    let (_, victor) = app.user("victor", PASSWORD, Some("viewer")).await;
    let body = json!({"template_id": template, "targets": {"all": true}});
    let id = app.post(&app.p("/deliveries"), body).await.body["id"].as_str().expect("id").to_owned();
    let approve = app.p(&format!("/deliveries/{id}/approve"));

    for (body, expected) in [
        (json!({"approvals_required": 11}), "invalid_approvals"),
        (json!({"approvals_required": -1}), "invalid_approvals"),
        (json!({}), "empty_patch"),
    ] {
        let refused = app.call(Method::PATCH, &app.p(""), Some(body)).await;
        assert_eq!((refused.status, code(&refused)), (422, expected), "{}", refused.text);
    }
    let own = app.post(&approve, json!({})).await;
    assert_eq!((own.status, code(&own)), (403, "creator_cannot_approve"), "{}", own.text);
    let viewer = app.call_as(&victor, Method::POST, &approve, None).await;
    assert_eq!((viewer.status, code(&viewer)), (403, "forbidden"));
    let first = app.call_as(&bob, Method::POST, &approve, None).await;
    assert_eq!((first.status, first.body["state"].as_str()), (200, Some("awaiting_approval")), "{}", first.text);
    let twice = app.call_as(&bob, Method::POST, &approve, None).await;
    assert_eq!((twice.status, code(&twice)), (409, "already_approved"));
    // A day later bob's approval no longer counts: carol's alone is not enough.
    clock.advance(Duration::from_secs(25 * 3600));
    let second = app.call_as(&carol, Method::POST, &approve, None).await;
    assert_eq!((second.status, second.body["state"].as_str()), (200, Some("awaiting_approval")), "{}", second.text);
    let approvals = &second.body["approvals"];
    assert_eq!(
        (approvals[0]["username"].as_str(), approvals[0]["valid"].as_bool()),
        (Some("bob"), Some(false)),
        "{approvals}"
    );
    assert!(!holds_rule(&sim, 0) && !holds_rule(&sim, 1), "an unapproved delivery sends nothing");
    let renewed = app.call_as(&bob, Method::POST, &approve, None).await;
    assert_eq!((renewed.status, renewed.body["state"].as_str()), (200, Some("running")), "{}", renewed.text);
    app.events(&id).await;
    assert!(holds_rule(&sim, 0) && holds_rule(&sim, 1));

    let audit = app.get("/api/v1/audit?action=delivery.approve&limit=10").await;
    let outcomes: Vec<(&str, &str)> = audit.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| (e["actor_name"].as_str().unwrap_or(""), e["outcome"].as_str().unwrap_or("")))
        .collect();
    for expected in [("admin", "denied"), ("bob", "denied"), ("bob", "success"), ("carol", "success")] {
        assert!(outcomes.contains(&expected), "{expected:?} in {outcomes:?}");
    }
}

#[tokio::test]
async fn a_scheduled_delivery_waits_for_its_time_and_can_be_started_early() {
    let clock = Clock::manual(store::now_ms());
    let held = clock.clone();
    let app = TestApp::spawn_with(move |config| config.clock = held).await;
    let sim = sim(2, &["3.6.0"]).await;
    let ids = app.register(&sim, 2).await;
    let template = app.template("later", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let in_an_hour = domain::edge::utc_text(clock.now_ms() + 3600 * 1000);
    let scheduled = |edge: &str| json!({"template_id": template, "targets": {"ids": [edge]}, "start_at": in_an_hour});
    let first = app.post(&app.p("/deliveries"), scheduled(&ids[0])).await;
    assert_eq!((first.status, first.body["state"].as_str()), (202, Some("scheduled")), "{}", first.text);
    assert_eq!(first.body["start_at"].as_str(), Some(in_an_hour.as_str()));
    let second = app.post(&app.p("/deliveries"), scheduled(&ids[1])).await;
    let (first, second) = (first.body["id"].as_str().expect("id"), second.body["id"].as_str().expect("id"));
    assert!(!holds_rule(&sim, 0), "nothing is sent before its time");

    // Started early by hand.
    let now = app.post(&app.p(&format!("/deliveries/{second}/resume")), json!({})).await;
    assert_eq!(now.status, 200, "{}", now.text);
    app.events(second).await;
    assert!(holds_rule(&sim, 1) && !holds_rule(&sim, 0));
    // The other starts when the clock reaches its time.
    clock.advance(Duration::from_secs(3601));
    app.events(first).await;
    assert!(holds_rule(&sim, 0));

    for (body, expected) in [
        (json!({"start_at": "tomorrow"}), "not an RFC 3339 time"),
        (json!({"start_at": "2099-01-01T00:00:00Z"}), "at most a year ahead"),
        (json!({"rollout": {"waves": []}}), "at least one wave"),
        (json!({"rollout": {"waves": [{"count": 1}]}, "mode": "plan"}), "waves are for `apply` deliveries"),
    ] {
        let mut request = json!({"template_id": template, "targets": {"all": true}});
        request.as_object_mut().expect("object").extend(body.as_object().expect("object").clone());
        let refused = app.post(&app.p("/deliveries"), request).await;
        assert_eq!((refused.status, code(&refused)), (422, "invalid_rollout"), "{}", refused.text);
        assert!(refused.text.contains(expected), "{expected}: {}", refused.text);
    }
    let bad = app
        .post(
            &app.p("/deliveries"),
            json!({"template_id": template, "targets": {"all": true},
        "rollout": {"waves": [{"count": 1}], "gate": "sometimes"}}),
        )
        .await;
    assert_eq!((bad.status, code(&bad)), (400, "malformed_json"), "{}", bad.text);
}

/// A target is waiting: the stream's opening `state` counts waiting targets, and each target that
/// goes back to wait afterwards sends a `waiting` event.
fn waits(event: &sse::Event) -> bool {
    event.name == "waiting"
        || (event.name == "state"
            && serde_json::from_str::<Value>(&event.data).expect("json")["waiting"].as_u64().unwrap_or(0) > 0)
}

/// Marks instance `k` offline (or back online) and lets the server's prober see it.
async fn set_offline(app: &TestApp, sim: &neuronex_sim::RunningSim, ids: &[String], k: u32, offline: bool) {
    let faults = offline.then(|| Faults { offline: true, ..Faults::default() });
    sim.sim.set_faults(Some(k), faults);
    let probed = app.post(&app.p(&format!("/edge-services/{}/probe", ids[k as usize])), json!({})).await;
    let expected = if offline { "offline" } else { "online" };
    assert_eq!(probed.body["status"], expected, "{}", probed.text);
}

async fn target_of(app: &TestApp, delivery: &str, edge: &str) -> Value {
    app.get(&app.p(&format!("/deliveries/{delivery}/targets/{edge}"))).await.body
}

#[tokio::test]
async fn an_offline_target_waits_and_runs_when_its_edge_is_seen_online_and_the_newest_delivery_wins() {
    let app = TestApp::spawn().await;
    let sim = sim(3, &["3.6.0"]).await;
    let ids = app.register(&sim, 3).await;
    set_offline(&app, &sim, &ids, 2, true).await;
    let template = app.template("patient", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let body = json!({"template_id": template, "targets": {"all": true},
                      "options": {"offline": "wait", "deadline": domain::edge::utc_text(store::now_ms() + 3600 * 1000)}});
    let first = app.post(&app.p("/deliveries"), body.clone()).await;
    assert_eq!(first.status, 202, "{}", first.text);
    let first = first.body["id"].as_str().expect("id").to_owned();
    app.events_until(&first, waits).await;
    let held = target_of(&app, &first, &ids[2]).await;
    assert_eq!(held["status"], "pending", "{held}");
    assert!(held["reason"].as_str().expect("reason").starts_with("waiting: offline since "), "{held}");
    assert_eq!(app.get(&app.p(&format!("/deliveries/{first}"))).await.body["state"], "running");
    // A newer delivery of the same template to the same gateway supersedes the waiting one.
    let second = app
        .post(
            &app.p("/deliveries"),
            json!({"template_id": template, "targets": {"ids": [ids[2]]},
        "options": {"offline": "wait"}}),
        )
        .await;
    let second = second.body["id"].as_str().expect("id").to_owned();
    app.events_until(&second, waits).await;

    set_offline(&app, &sim, &ids, 2, false).await;
    app.events(&first).await;
    app.events(&second).await;
    let superseded = target_of(&app, &first, &ids[2]).await;
    assert_eq!(
        (superseded["status"].as_str(), superseded["reason"].as_str()),
        (Some("canceled"), Some(format!("superseded by delivery {second}").as_str())),
        "{superseded}"
    );
    let ran = target_of(&app, &second, &ids[2]).await;
    assert_eq!(ran["status"], "succeeded", "{ran}");
    assert!(holds_rule(&sim, 2));
    let rules_put = sim.sim.snapshot(2).expect("instance")["requests"]["PUT /api/ekuiper/rules/r1"].as_u64();
    assert_eq!(rules_put, Some(1), "only the newest delivery wrote");

    for options in [json!({"deadline": "2030-01-01T00:00:00Z"}), json!({"offline": "wait", "deadline": "soon"})] {
        let body = json!({"template_id": template, "targets": {"all": true}, "options": options});
        let bad = app.post(&app.p("/deliveries"), body).await;
        assert_eq!((bad.status, code(&bad)), (422, "invalid_options"), "{}", bad.text);
    }
}

#[tokio::test]
async fn a_waiting_target_tries_once_more_at_its_deadline_and_fails_with_the_reason() {
    let clock = Clock::manual(store::now_ms());
    let held = clock.clone();
    let app = TestApp::spawn_with(move |config| config.clock = held).await;
    let sim = sim(1, &["3.6.0"]).await;
    let ids = app.register(&sim, 1).await;
    set_offline(&app, &sim, &ids, 0, true).await;
    let template = app.template("patient", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let deadline = domain::edge::utc_text(clock.now_ms() + 3600 * 1000);
    let body = json!({"template_id": template, "targets": {"all": true}, "options": {"offline": "wait", "deadline": deadline}});
    let id = app.post(&app.p("/deliveries"), body).await.body["id"].as_str().expect("id").to_owned();
    app.events_until(&id, waits).await;
    assert!(
        target_of(&app, &id, &ids[0]).await["reason"]
            .as_str()
            .expect("reason")
            .contains(&format!("(until {deadline})"))
    );
    clock.advance(Duration::from_secs(2 * 3600));
    app.events(&id).await;
    let failed = target_of(&app, &id, &ids[0]).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["reason"].as_str().expect("reason").contains("offline"), "{failed}");
}

#[tokio::test]
async fn a_window_that_opens_later_holds_its_targets_until_it_opens() {
    let clock = Clock::manual(domain::edge::parse_time("2026-12-05T01:00:00Z").expect("time"));
    let held = clock.clone();
    let app = TestApp::spawn_with(move |config| config.clock = held).await;
    let sim = sim(4, &["3.6.0"]).await;
    let ids = app.register(&sim, 4).await;
    let zone = sim.sim.tags_of(0).into_iter().find(|t| t.starts_with("zone-")).expect("a zone tag");
    let windows = app.p("/maintenance-windows");
    let nightly =
        json!({"name": "nightly", "tag": zone, "cron": "0 2 * * *", "duration_minutes": 60, "timezone": "UTC"});
    let created = app.post(&windows, nightly.clone()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["next_opening"], "2026-12-05T02:00:00Z");
    let twice = app.post(&windows, nightly).await;
    assert_eq!((twice.status, code(&twice)), (409, "maintenance_window_name_taken"));
    for (bad, expected) in [
        (json!({"name": "w", "cron": "0 25 * * *", "duration_minutes": 60}), "cron hour"),
        (json!({"name": "w", "cron": "0 2 * * *", "duration_minutes": 60, "timezone": "Moon/Base"}), "IANA"),
        (json!({"name": "w", "cron": "0 2 * * *", "duration_minutes": 0}), "duration_minutes"),
        (json!({"name": "w", "cron": format!("0 2 * * {}", "1,".repeat(60)), "duration_minutes": 60}), "at most 100"),
        (json!({"name": "w".repeat(101), "cron": "0 2 * * *", "duration_minutes": 60}), "name"),
        (json!({"name": "w", "cron": "0 2 * * *", "duration_minutes": 60, "timezone": "x".repeat(10_000)}), "IANA"),
    ] {
        let refused = app.post(&windows, bad).await;
        assert_eq!((refused.status, code(&refused)), (422, "invalid_window"), "{}", refused.text);
        assert!(refused.text.contains(expected), "{expected}: {}", refused.text);
    }

    let template = app.template("windowed", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let body = json!({"template_id": template, "targets": {"all": true}, "options": {"respect_windows": true}});
    let id = app.post(&app.p("/deliveries"), body).await.body["id"].as_str().expect("id").to_owned();
    let zoned: Vec<usize> = (0..4).filter(|k| sim.sim.tags_of(*k as u32).contains(&zone)).collect();
    // Until the zoned targets wait and the others' failures are written (both come as events).
    let (mut waiting, mut failed, mut all_waited) = (0, 0, false);
    app.events_until(&id, |event| {
        let data = serde_json::from_str::<Value>(&event.data).unwrap_or_default();
        match event.name.as_str() {
            "state" => waiting = data["waiting"].as_u64().unwrap_or(0),
            "waiting" => waiting += 1,
            "target" if data["status"] == "failed" => failed += 1,
            // A failure written before the stream was opened shows in the counts.
            "counts" => failed = failed.max(data["failed"].as_u64().unwrap_or(0)),
            _ => {}
        }
        all_waited |= waiting == zoned.len() as u64;
        all_waited && failed >= (4 - zoned.len()) as u64
    })
    .await;
    for (k, edge) in ids.iter().enumerate() {
        let target = target_of(&app, &id, edge).await;
        let reason = target["reason"].as_str().expect("reason");
        if zoned.contains(&k) {
            assert_eq!(target["status"], "pending", "{target}");
            assert_eq!(reason, "waiting: outside its maintenance windows; `nightly` opens at 2026-12-05T02:00:00Z");
        } else {
            assert_eq!(target["status"], "failed", "{target}");
            assert!(reason.starts_with("no maintenance window applies to this edge"), "{reason}");
        }
        assert!(!holds_rule(&sim, k as u32));
    }
    clock.advance(Duration::from_secs(3600));
    app.events(&id).await;
    for k in &zoned {
        assert!(holds_rule(&sim, *k as u32), "instance {k} got its rule once its window opened");
    }
    let listed = app.get(&windows).await.body;
    assert_eq!(listed["items"][0]["open_until"], "2026-12-05T03:00:00Z", "{listed}");
    let window_id = listed["items"][0]["id"].as_str().expect("id").to_owned();
    let deleted = app.call(Method::DELETE, &app.p(&format!("/maintenance-windows/{window_id}")), None).await;
    assert_eq!(deleted.status, 204);
    let again = app.call(Method::DELETE, &app.p(&format!("/maintenance-windows/{window_id}")), None).await;
    assert_eq!((again.status, code(&again)), (404, "maintenance_window_not_found"));
}

#[tokio::test]
async fn verification_fails_a_rule_that_throws_or_reads_nothing_and_restores_its_gateway() {
    let clock = Clock::manual(store::now_ms());
    let held = clock.clone();
    let app = TestApp::spawn_with(move |config| config.clock = held).await;
    let sim = sim(3, &["3.6.0"]).await;
    let ids = app.register(&sim, 3).await;
    sim.sim.set_faults(Some(1), Some(Faults { rule_exceptions: 2, ..Faults::default() }));
    sim.sim.set_faults(Some(2), Some(Faults { silent_sources: true, ..Faults::default() }));
    let template = app.template("watched", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let body = json!({"template_id": template, "targets": {"all": true},
                      "options": {"verify": {"secs": 300, "max_exceptions": 0, "min_records_in": 1}}});
    let id = app.post(&app.p("/deliveries"), body).await.body["id"].as_str().expect("id").to_owned();
    // All three wrote their rule and watch it now; five minutes pass.
    clock.sleepers(3).await;
    assert!((0..3).all(|k| holds_rule(&sim, k)));
    clock.advance(Duration::from_secs(300));
    app.events(&id).await;
    let healthy = target_of(&app, &id, &ids[0]).await;
    assert_eq!(healthy["status"], "succeeded", "{healthy}");
    let throwing = target_of(&app, &id, &ids[1]).await;
    assert_eq!(throwing["status"], "failed");
    let reason = throwing["reason"].as_str().expect("reason");
    // Each status read adds two (the delivery's own read after starting the rule, then the watch's).
    assert!(
        reason.starts_with(
            "verify: rule r1 raised 4 exceptions in 300 s (at most 0 allowed); last exception: run Select error"
        ),
        "{reason}"
    );
    assert_eq!(throwing["restored"], true, "{throwing}");
    let silent = target_of(&app, &id, &ids[2]).await;
    assert!(
        silent["reason"]
            .as_str()
            .expect("reason")
            .starts_with("verify: rule r1 read 0 records in 300 s (at least 1 needed)"),
        "{silent}"
    );
    assert!(
        holds_rule(&sim, 0) && !holds_rule(&sim, 1) && !holds_rule(&sim, 2),
        "the unhealthy gateways were put back"
    );

    let bad = app
        .post(
            &app.p("/deliveries"),
            json!({"template_id": template, "targets": {"all": true},
        "options": {"verify": {"secs": 0}}}),
        )
        .await;
    assert_eq!((bad.status, code(&bad)), (422, "invalid_options"), "{}", bad.text);
}

#[tokio::test]
async fn a_plan_is_carried_out_in_waves_and_waits_for_approval_like_any_apply() {
    let app = TestApp::spawn().await;
    let sim = sim(6, &["3.6.0"]).await;
    app.register(&sim, 6).await;
    let template = app.template("planned", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let plan = app
        .post(&app.p("/deliveries"), json!({"template_id": template, "targets": {"all": true}, "mode": "plan"}))
        .await;
    let plan_id = plan.body["id"].as_str().expect("id").to_owned();
    app.events(&plan_id).await;
    require_approvals(&app, 1).await;
    let (_, bob) = app.user("bob", PASSWORD, Some("admin")).await;
    let body = json!({"rollout": {"waves": [{"count": 2}, {"percent": 100}], "gate": "manual"}});
    let applied = app.post(&app.p(&format!("/deliveries/{plan_id}/apply")), body).await;
    assert_eq!((applied.status, applied.body["state"].as_str()), (202, Some("awaiting_approval")), "{}", applied.text);
    assert_eq!(applied.body["wave_ends"], json!([2, 6]));
    let id = applied.body["id"].as_str().expect("id").to_owned();
    assert!((0..6).all(|k| !holds_rule(&sim, k)), "nothing is sent before the approval");
    let approved = app.call_as(&bob, Method::POST, &app.p(&format!("/deliveries/{id}/approve")), None).await;
    assert_eq!(approved.body["state"], "running", "{}", approved.text);
    app.events_until(&id, |event| {
        event.name == "paused" || (event.name == "state" && event.data.contains("\"paused\""))
    })
    .await;
    assert_eq!((0..6).filter(|k| holds_rule(&sim, *k)).count(), 2, "only the first wave ran");
    app.post(&app.p(&format!("/deliveries/{id}/resume")), json!({})).await;
    app.events(&id).await;
    assert!((0..6).all(|k| holds_rule(&sim, k)));
    let bad = app.post(&app.p(&format!("/deliveries/{plan_id}/apply")), json!({"rollout": {"waves": []}})).await;
    assert_eq!((bad.status, code(&bad)), (422, "invalid_rollout"));
}

#[tokio::test]
async fn a_delivery_waiting_for_approval_or_its_time_can_be_canceled_and_sends_nothing() {
    let clock = Clock::manual(store::now_ms());
    let held = clock.clone();
    let app = TestApp::spawn_with(move |config| config.clock = held).await;
    let sim = sim(2, &["3.6.0"]).await;
    app.register(&sim, 2).await;
    let template = app.template("called-off", "rule", rule_doc("s", "r1", "SELECT * FROM s")).await;
    let later = domain::edge::utc_text(clock.now_ms() + 3600 * 1000);
    let scheduled = app
        .post(&app.p("/deliveries"), json!({"template_id": template, "targets": {"all": true}, "start_at": later}))
        .await;
    require_approvals(&app, 1).await;
    let unapproved = app.post(&app.p("/deliveries"), json!({"template_id": template, "targets": {"all": true}})).await;
    for waiting in [scheduled, unapproved] {
        let id = waiting.body["id"].as_str().expect("id").to_owned();
        let canceled = app.post(&app.p(&format!("/deliveries/{id}/cancel")), json!({})).await;
        assert_eq!(canceled.status, 200, "{}", canceled.text);
        app.events(&id).await;
        let ended = app.get(&app.p(&format!("/deliveries/{id}"))).await.body;
        assert_eq!(
            (ended["state"].as_str(), ended["counts"]["canceled"].as_u64()),
            (Some("canceled"), Some(2)),
            "{ended}"
        );
    }
    clock.advance(Duration::from_secs(7200));
    assert!((0..2).all(|k| !holds_rule(&sim, k)), "nothing was sent");
}
