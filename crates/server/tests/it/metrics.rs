//! `/metrics`: histograms of target and edge-call time, failures by code, deliveries by state and
//! API requests by route, in an exposition `promtool check metrics` accepts.

use std::io::Write;
use std::process::{Command, Stdio};

use neuronex_sim::Faults;
use serde_json::json;

use crate::support::{TestApp, rule_doc, sim};

/// `promtool check metrics` on `text`: its complaints, empty when it has none.
fn promtool_complaints(text: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/ensure-services installs it)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let output = child.wait_with_output().expect("promtool ends");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() { String::new() } else { said }
}

/// The value of the sample `series` (name with labels, exactly as exposed).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_break_times_and_failures_down_and_pass_promtool() {
    let app = TestApp::spawn().await;
    let sim = sim(3, &["3.6.0"]).await;
    app.register(&sim, 3).await;
    sim.sim.set_faults(Some(2), Some(Faults { error_rate: 1.0, ..Faults::default() }));
    let template = app.template("rules", "rule", rule_doc("demo", "r1", "SELECT * FROM demo")).await;
    let (delivery, _) =
        app.deliver(json!({"template_id": template, "targets": {"all": true}, "options": {"retries": 0}})).await;
    assert_eq!(delivery["state"], "partial");

    let metrics = reqwest::get(format!("{}/metrics", app.base)).await.expect("metrics").text().await.expect("text");
    assert_eq!(promtool_complaints(&metrics), "", "{metrics}");
    assert_eq!(sample(&metrics, r#"edgefleet_target_duration_seconds_count{status="succeeded"}"#), Some(2.0));
    assert_eq!(sample(&metrics, r#"edgefleet_target_duration_seconds_count{status="failed"}"#), Some(1.0));
    assert_eq!(
        sample(&metrics, r#"edgefleet_target_duration_seconds_bucket{status="succeeded",le="+Inf"}"#),
        Some(2.0)
    );
    assert_eq!(sample(&metrics, r#"edgefleet_target_failures_total{reason="edge_error"}"#), Some(1.0), "{metrics}");
    // The failed target carries the same code, for a console to say in its user's language.
    let targets = app.get(&app.p(&format!("/deliveries/{}/targets", delivery["id"].as_str().expect("id")))).await;
    let codes: Vec<(&str, Option<&str>)> = targets.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|t| (t["status"].as_str().unwrap_or(""), t["failure_code"].as_str()))
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == ("failed", Some("edge_error"))).count(), 1, "{}", targets.text);
    assert_eq!(codes.iter().filter(|c| **c == ("succeeded", None)).count(), 2, "{}", targets.text);
    for step in ["version", "snapshot", "replace", "apply", "check"] {
        let calls = sample(&metrics, &format!(r#"edgefleet_edge_call_duration_seconds_count{{step="{step}"}}"#));
        assert!(calls.is_some_and(|n| n >= 2.0), "{step}: {metrics}");
    }
    assert!(!metrics.contains("step=\"other\""), "every step the delivery made has its kind: {metrics}");
    assert_eq!(sample(&metrics, r#"edgefleet_deliveries{state="partial"}"#), Some(1.0));
    assert_eq!(sample(&metrics, r#"edgefleet_deliveries{state="running"}"#), Some(0.0));
    let started =
        r#"edgefleet_http_requests_total{method="POST",route="/api/v1/projects/{project_id}/deliveries",status="202"}"#;
    assert_eq!(sample(&metrics, started), Some(1.0), "{metrics}");
    assert!(
        metrics.contains(r#"edgefleet_http_request_duration_seconds_count{method="GET",route="/api/v1/projects/{project_id}/deliveries/{id}"}"#),
        "{metrics}"
    );
    // A path no route has is one series, whatever the path.
    for path in ["/api/v1/nothing-1", "/api/v1/nothing-2"] {
        assert_eq!(app.get(path).await.status, 404);
    }
    let metrics = reqwest::get(format!("{}/metrics", app.base)).await.expect("metrics").text().await.expect("text");
    assert_eq!(
        sample(&metrics, r#"edgefleet_http_requests_total{method="GET",route="unmatched",status="404"}"#),
        Some(2.0)
    );
    assert!(!metrics.contains("nothing-1"), "paths never become label values");
}

#[tokio::test]
async fn the_grafana_dashboard_asks_only_for_metrics_the_server_exposes() {
    let app = TestApp::spawn().await;
    let metrics = reqwest::get(format!("{}/metrics", app.base)).await.expect("metrics").text().await.expect("text");
    let families: Vec<&str> =
        metrics.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/grafana/edgefleet.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("docs/grafana/edgefleet.json")).expect("JSON");
    let mut asked = 0;
    for target in dashboard["panels"].as_array().expect("panels").iter().flat_map(|p| p["targets"].as_array()).flatten()
    {
        let expr = target["expr"].as_str().expect("expr");
        for name in
            expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("edgefleet_"))
        {
            asked += 1;
            let family = ["_bucket", "_count", "_sum"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
            // Agent-mode counters are exposed only by a server with a broker (`--mqtt-url`).
            assert!(
                families.contains(&family) || family.starts_with("edgefleet_agent_"),
                "the dashboard asks for {name}, which /metrics does not have"
            );
        }
    }
    assert!(asked >= 10, "the dashboard's queries were read ({asked})");
}
