//! PostgreSQL restarts in the middle of a delivery run by two replicas: they reconnect and the
//! delivery finishes with one final result per target. Its own test binary, so nothing else uses
//! the database server while it restarts.

#[path = "it/process.rs"]
#[allow(dead_code, reason = "shared with the main test binary, which uses all of it")]
mod process;

use neuronex_sim::{Faults, SimConfig};
use serde_json::json;

use process::Server;

fn postgres_base() -> String {
    std::env::var("EDGEFLEET_TEST_POSTGRES")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432".into())
}

fn restart_postgres() {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL installation")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .max()
        .expect("a cluster version");
    let status = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(status.success(), "PostgreSQL restarted");
}

#[tokio::test]
async fn replicas_reconnect_after_a_postgresql_restart_and_finish_the_delivery() {
    let database_url = store::testing::fresh_postgres_database(&postgres_base()).await.expect("database");
    let shared = tempfile::tempdir().expect("dir");
    let config = shared.path().join("replica.toml");
    std::fs::write(&config, format!("secret_key = \"{}\"\n", "cd".repeat(32))).expect("config");
    let args = [
        "--database-url",
        &database_url,
        "--blob-dir",
        shared.path().to_str().expect("path"),
        "--config",
        config.to_str().expect("path"),
    ];
    let (dir_a, dir_b) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let a = Server::start_with(dir_a.path(), &args);
    let _b = Server::start_with(dir_b.path(), &args);
    let sim = neuronex_sim::start(
        SimConfig { count: 200, ..SimConfig::default() },
        "127.0.0.1:0".parse().expect("addr"),
        false,
    )
    .await
    .expect("sim");
    sim.sim.set_faults(None, Some(Faults { latency_ms: 20, ..Faults::default() }));
    let api = a.api().await;
    let (project, template) = api.rule_setup(&sim).await;
    // A generous target timeout: a busy machine must not fail targets while PostgreSQL restarts
    // (a result whose write failed is claimed again when its lease, timeout + 5 s, runs out).
    let body = json!({"template_id": template["id"], "targets": {"all": true}, "options": {"concurrency": 4, "timeout_secs": 30}});
    let delivery = api.post(&format!("/api/v1/projects/{project}/deliveries"), body).await;
    let id = delivery["id"].as_str().expect("id").to_owned();
    let events = format!("/api/v1/projects/{project}/deliveries/{id}/events");
    assert!(api.watch(&events, 30).await >= 30, "the delivery was under way");
    restart_postgres();
    // A new session on the restarted database server; follow the delivery to its end.
    let api = a.api().await;
    api.watch(&events, usize::MAX).await;
    let finished = api.get(&format!("/api/v1/projects/{project}/deliveries/{id}")).await;
    assert_eq!(finished["state"], "succeeded", "{finished}");
    assert_eq!(
        (finished["counts"]["total"].as_u64(), finished["counts"]["succeeded"].as_u64()),
        (Some(200), Some(200))
    );
}
