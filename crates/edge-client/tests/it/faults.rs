use std::time::Duration;

use edge_client::{EdgeClient, Failure, Retry};
use neuronex_sim::{Faults, SimConfig};
use reqwest::Method;
use serde_json::json;

use crate::support::{control, sim, sim_with, target};

fn quick_client() -> EdgeClient {
    crate::support::client_with(Duration::from_millis(500), Duration::from_millis(300))
}

async fn fault(sim: &neuronex_sim::RunningSim, faults: serde_json::Value) {
    control(sim, Method::PUT, "instances/0/faults", faults).await;
}

#[tokio::test]
async fn injected_errors_are_transient_500s() {
    let sim = sim("3.6.0").await;
    fault(&sim, json!({"error_rate": 1.0})).await;
    let err = quick_client().edge(&target(&sim, 0)).version().await.expect_err("error");
    assert_eq!((err.status, err.code, err.retry), (Some(500), Some(1001), Retry::Transient));
}

#[tokio::test]
async fn hanging_requests_time_out() {
    let sim = sim("3.6.0").await;
    fault(&sim, json!({"timeout_rate": 1.0})).await;
    let err = quick_client().edge(&target(&sim, 0)).version().await.expect_err("timeout");
    assert_eq!(err.failure, Failure::Timeout { after_ms: 300 });
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(text.starts_with("read version: no answer within 300 ms (1 try in "), "{text}");
    assert_eq!(err.tries, 1);
    assert!(err.spent_ms.is_some_and(|ms| ms >= 300), "{err:?}");
}

#[tokio::test]
async fn reset_connections_are_transient() {
    for faults in [json!({"reset_rate": 1.0}), json!({"offline": true})] {
        let sim = sim("3.6.0").await;
        fault(&sim, faults.clone()).await;
        let err = quick_client().edge(&target(&sim, 0)).version().await.expect_err("reset");
        assert!(matches!(err.failure, Failure::Reset { .. }), "{faults}: {err:?}");
        assert!(err.is_transient());
    }
}

#[tokio::test]
async fn unreachable_edges_are_connect_failures() {
    let target = edge_client::EdgeTarget::http("http://127.0.0.1:1", edge_client::EdgeAuth::None);
    let err = quick_client().edge(&target).version().await.expect_err("refused");
    assert!(matches!(err.failure, Failure::Connect { .. }), "{err:?}");
    assert!(err.is_transient());
}

#[tokio::test]
async fn clearing_faults_restores_service() {
    let sim = sim("3.6.0").await;
    fault(&sim, json!({"error_rate": 1.0})).await;
    control(&sim, Method::DELETE, "instances/0/faults", json!({})).await;
    quick_client().edge(&target(&sim, 0)).version().await.expect("served again");
}

#[tokio::test]
async fn the_same_seed_gives_the_same_faults() {
    async fn outcomes(seed: u64) -> Vec<bool> {
        let faults = Faults { error_rate: 0.5, ..Faults::default() };
        let sim = sim_with(SimConfig { seed, faults, ..SimConfig::default() }).await;
        let client = quick_client();
        let target = target(&sim, 0);
        let mut seen = Vec::new();
        for _ in 0..40 {
            seen.push(client.edge(&target).version().await.is_ok());
        }
        seen
    }
    let first = outcomes(7).await;
    assert_eq!(first, outcomes(7).await);
    assert!(first.contains(&true) && first.contains(&false));
}

#[tokio::test]
async fn latency_delays_answers() {
    let sim = sim("3.6.0").await;
    fault(&sim, json!({"latency_ms": 150})).await;
    let started = std::time::Instant::now();
    quick_client().edge(&target(&sim, 0)).ekuiper_ping().await.expect("ping");
    // Lower bound only: the answer cannot come before the injected latency.
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn bad_fault_settings_are_refused() {
    let sim = sim("3.6.0").await;
    let url = format!("{}/__sim/instances/0/faults", sim.base_url);
    let response = reqwest::Client::new().put(url).json(&json!({"eror_rate": 1})).send().await.expect("request");
    assert_eq!(response.status(), 400);
}
