//! Several replicas on one PostgreSQL database (the machine's, or EDGEFLEET_TEST_POSTGRES).

use neuronex_sim::Faults;
use serde_json::{Value, json};

use crate::process::Server;

fn postgres_base() -> String {
    std::env::var("EDGEFLEET_TEST_POSTGRES")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432".into())
}

struct Cluster {
    database_url: String,
    blobs: tempfile::TempDir,
    dirs: Vec<tempfile::TempDir>,
}

impl Cluster {
    async fn new(replicas: usize) -> Cluster {
        let database_url = store::testing::fresh_postgres_database(&postgres_base()).await.expect("test database");
        let dirs = (0..replicas).map(|_| tempfile::tempdir().expect("dir")).collect();
        Cluster { database_url, blobs: tempfile::tempdir().expect("dir"), dirs }
    }

    fn start(&self, replica: usize, extra: &[&str]) -> Server {
        let blobs = self.blobs.path().to_str().expect("path").to_owned();
        let config = self.blobs.path().join("replica.toml");
        // Every replica shares the key that seals edge secrets and the JWT key.
        std::fs::write(&config, format!("secret_key = \"{}\"\n", "ab".repeat(32))).expect("config");
        let config = config.to_str().expect("path").to_owned();
        let mut args = vec!["--database-url", &self.database_url, "--blob-dir", &blobs, "--config", &config];
        args.extend_from_slice(extra);
        Server::start_with(self.dirs[replica].path(), &args)
    }
}

async fn rule_puts(sim: &neuronex_sim::RunningSim, count: u32) -> Vec<u64> {
    let mut puts = Vec::new();
    for k in 0..count {
        let state: Value = reqwest::get(format!("{}/__sim/instances/{k}", sim.base_url))
            .await
            .expect("sim")
            .json()
            .await
            .expect("json");
        puts.push(state["requests"]["PUT /api/ekuiper/rules/r1"].as_u64().unwrap_or(0));
    }
    puts
}

#[tokio::test]
async fn replicas_share_a_delivery_and_survive_being_killed() {
    const TARGETS: u32 = 400;
    const CONCURRENCY: usize = 8;
    let cluster = Cluster::new(2).await;
    let sim = crate::process::sim(TARGETS).await;
    sim.sim.set_faults(None, Some(Faults { latency_ms: 25, ..Faults::default() }));
    let a = cluster.start(0, &[]);
    let b = cluster.start(1, &[]);
    let (project, template) = a.api().await.rule_setup(&sim).await;
    let body = json!({"template_id": template["id"], "targets": {"all": true}, "options": {"concurrency": CONCURRENCY, "retries": 0, "timeout_secs": 3}});
    let delivery = b.api().await.post(&format!("/api/v1/projects/{project}/deliveries"), body).await;
    let id = delivery["id"].as_str().expect("id").to_owned();
    let events = format!("/api/v1/projects/{project}/deliveries/{id}/events");
    // Kill a replica at a random moment, four times, starting it again right away.
    let mut replicas = [Some(a), Some(b)];
    let mut seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7);
    let mut next = |bound: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % bound
    };
    let kills = 4;
    for _ in 0..kills {
        let victim = next(2) as usize;
        let watcher = replicas[1 - victim].as_ref().expect("running replica").api().await;
        watcher.watch(&events, 10 + next(30) as usize).await;
        replicas[victim].take().expect("victim").kill();
        replicas[victim] = Some(cluster.start(victim, &[]));
    }
    let [a, b] = replicas;
    let a = a.expect("replica a");
    let api = a.api().await;
    api.watch(&events, usize::MAX).await;
    let finished = api.get(&format!("/api/v1/projects/{project}/deliveries/{id}")).await;
    assert_eq!(finished["state"], "succeeded", "{finished}");
    assert_eq!(
        (finished["counts"]["total"].as_u64(), finished["counts"]["succeeded"].as_u64()),
        (Some(u64::from(TARGETS)), Some(u64::from(TARGETS)))
    );
    let targets = api.get(&format!("/api/v1/projects/{project}/deliveries/{id}/targets?limit=1000")).await;
    assert!(
        targets["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|t| t["status"] == "succeeded" && t["finished_at"].is_i64())
    );
    let puts = rule_puts(&sim, TARGETS).await;
    assert!(puts.iter().all(|&n| n >= 1), "every target got its rule");
    let twice = puts.iter().filter(|&&n| n > 1).count();
    assert!(twice <= kills * CONCURRENCY, "only targets in flight at a kill may be sent twice: {twice}");
    drop(b);
}

#[tokio::test]
async fn an_api_only_replica_streams_a_delivery_that_another_replica_runs() {
    let cluster = Cluster::new(2).await;
    let sim = crate::process::sim(20).await;
    sim.sim.set_faults(None, Some(Faults { latency_ms: 20, ..Faults::default() }));
    let api_only = cluster.start(0, &["--no-worker"]);
    let _worker = cluster.start(1, &[]);
    let api = api_only.api().await;
    let (project, template) = api.rule_setup(&sim).await;
    let body = json!({"template_id": template["id"], "targets": {"all": true}, "options": {"concurrency": 2}});
    let delivery = api.post(&format!("/api/v1/projects/{project}/deliveries"), body).await;
    let id = delivery["id"].as_str().expect("id").to_owned();
    let seen = api.watch(&format!("/api/v1/projects/{project}/deliveries/{id}/events"), usize::MAX).await;
    assert!(seen >= 10, "target events from the other replica arrived: {seen}");
    let finished = api.get(&format!("/api/v1/projects/{project}/deliveries/{id}")).await;
    assert_eq!(finished["state"], "succeeded");
}

#[tokio::test]
async fn probe_rounds_run_with_two_replicas_under_one_lease() {
    let cluster = Cluster::new(2).await;
    let sim = crate::process::sim(3).await;
    let a = cluster.start(0, &["--probe-interval-secs", "1"]);
    let _b = cluster.start(1, &["--probe-interval-secs", "1"]);
    let api = a.api().await;
    let project = api.project().await;
    let rows: Vec<Value> = sim.manifest.iter().map(|e| json!({"name": e.name, "endpoint": e.endpoint})).collect();
    api.post(&format!("/api/v1/projects/{project}/edge-services/import"), json!(rows)).await;
    // Both replicas run the prober loop; the lease (tested on its own in the store's tests) lets
    // one of them run each round. Wait, with a deadline, for rounds to come from the cluster.
    let read = || async {
        let state: Value =
            reqwest::get(format!("{}/__sim/instances/0", sim.base_url)).await.expect("sim").json().await.expect("json");
        state["requests"]["GET /api/version"].as_u64().unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while read().await < 3 {
        assert!(std::time::Instant::now() < deadline, "no probe rounds within 60 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let edges = api.get(&format!("/api/v1/projects/{project}/edge-services")).await;
    for edge in edges["items"].as_array().expect("items") {
        assert_eq!(edge["status"], "online", "{edge}");
    }
}

#[tokio::test]
async fn an_installation_moves_from_sqlite_to_postgresql_with_nothing_lost() {
    let data = tempfile::tempdir().expect("dir");
    let sim = crate::process::sim(5).await;
    let server = Server::start(data.path());
    let api = server.api().await;
    let (project, template) = api.rule_setup(&sim).await;
    let body = json!({"template_id": template["id"], "targets": {"all": true}});
    let delivery = api.post(&format!("/api/v1/projects/{project}/deliveries"), body).await;
    let id = delivery["id"].as_str().expect("id").to_owned();
    api.watch(&format!("/api/v1/projects/{project}/deliveries/{id}/events"), usize::MAX).await;
    // A member of each kind, and the project's JWT key, must move too.
    let user = api.post("/api/v1/users", json!({"username": "line-lead", "password": "a-strong-passphrase"})).await;
    let user = user["id"].as_str().expect("user").to_owned();
    let org = api.get(&format!("/api/v1/projects/{project}")).await["org_id"].as_str().expect("org").to_owned();
    api.put(&format!("/api/v1/orgs/{org}/members/{user}"), json!({"role": "member"})).await;
    api.put(&format!("/api/v1/projects/{project}/members/{user}"), json!({"role": "admin"})).await;
    let key_before = api.get(&format!("/api/v1/projects/{project}/jwt/public-key")).await;
    let audit_before = api.get("/api/v1/audit?limit=1000").await;
    server.kill();

    let target = store::testing::fresh_postgres_database(&postgres_base()).await.expect("database");
    let source = format!("sqlite://{}", data.path().join("edgefleet.db").display());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_edgefleet"))
        .args(["db", "copy", "--from", &source, "--to", &target])
        .output()
        .expect("copy runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(&format!("all {} tables copied and checked", store::copied_tables().len())), "{stdout}");
    for table in ["org_members", "project_members", "project_jwt_keys"] {
        assert!(stdout.lines().any(|l| l.starts_with(table) && l.contains(" 1  ok")), "{table}: {stdout}");
    }
    assert!(stdout.lines().any(|l| l.starts_with("delivery_targets") && l.contains(" 5  ok")), "{stdout}");
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_edgefleet"))
        .args(["db", "copy", "--from", &source, "--to", &target])
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&again.stderr).contains("the target database is not empty"));

    // The same installation, now on PostgreSQL, with the same secret key.
    let key = std::fs::read_to_string(data.path().join("secret.key")).expect("key");
    let config = data.path().join("pg.toml");
    std::fs::write(&config, format!("secret_key = \"{}\"\n", key.trim())).expect("config");
    let moved = Server::start_with(
        tempfile::tempdir().expect("dir").path(),
        &["--database-url", &target, "--config", config.to_str().expect("path")],
    );
    let api = moved.api().await;
    let finished = api.get(&format!("/api/v1/projects/{project}/deliveries/{id}")).await;
    assert_eq!((finished["state"].as_str(), finished["counts"]["succeeded"].as_u64()), (Some("succeeded"), Some(5)));
    assert_eq!(api.get(&format!("/api/v1/projects/{project}/edge-services")).await["total"], 5);
    let members = api.get(&format!("/api/v1/projects/{project}/members")).await;
    assert_eq!(members["items"][0]["user_id"], user.as_str(), "{members}");
    let key_after = api.get(&format!("/api/v1/projects/{project}/jwt/public-key")).await;
    assert_eq!(key_after["pem"], key_before["pem"], "the project's JWT key moved, edges need nothing new");
    let audit_after = api.get("/api/v1/audit?limit=1000").await;
    assert_eq!(
        audit_after["total"].as_i64(),
        audit_before["total"].as_i64().map(|n| n + 1),
        "the copied audit plus this login"
    );
    // New audit ids continue after the copied ones.
    assert!(audit_after["items"][0]["id"].as_i64() > audit_before["items"][0]["id"].as_i64());
}

/// Sign-in throttling is shared: guesses spread over replicas count as one.
#[tokio::test]
async fn sign_in_attempts_count_across_replicas() {
    let cluster = Cluster::new(2).await;
    // A minute's back-off: the refusals below cannot depend on how fast the machine is.
    let first = cluster.start(0, &["--no-worker", "--sign-in-backoff-secs", "60"]);
    let second = cluster.start(1, &["--no-worker", "--sign-in-backoff-secs", "60"]);
    let http = reqwest::Client::new();
    let attempt = |base: &str| {
        let request = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"username": "admin", "password": "wrong-password-1"}));
        async move { request.send().await.expect("login").status().as_u16() }
    };
    // Five wrong passwords, alternating between the replicas, use up the account's free attempts...
    for k in 0..5 {
        let base = if k % 2 == 0 { &first.base } else { &second.base };
        assert_eq!(attempt(base).await, 401);
    }
    // ...so the next one waits, on either replica.
    assert_eq!(attempt(&first.base).await, 429);
    assert_eq!(attempt(&second.base).await, 429);
}

#[tokio::test]
async fn two_replicas_run_a_rollout_wave_by_wave_and_either_releases_its_gate() {
    const TARGETS: u32 = 90;
    let cluster = Cluster::new(2).await;
    let sim = crate::process::sim(TARGETS).await;
    sim.sim.set_faults(None, Some(Faults { latency_ms: 15, ..Faults::default() }));
    let a = cluster.start(0, &[]);
    let b = cluster.start(1, &[]);
    let (api_a, api_b) = (a.api().await, b.api().await);
    let (project, template) = api_a.rule_setup(&sim).await;
    let deliveries = format!("/api/v1/projects/{project}/deliveries");
    let body = json!({"template_id": template["id"], "targets": {"all": true}, "options": {"concurrency": 4},
                      "rollout": {"waves": [{"count": 20}, {"count": 30}, {"percent": 100}], "gate": "manual",
                                  "abort": {"failed_percent": 50, "min_results": 10}}});
    let id = api_b.post(&deliveries, body).await["id"].as_str().expect("id").to_owned();
    let events = format!("{deliveries}/{id}/events");
    let paused_at = |wave: u32| {
        move |name: &str, data: &str| {
            let at = format!("\"wave\":{wave}");
            (name == "paused" || (name == "state" && data.contains("\"paused\""))) && data.contains(&at)
        }
    };
    assert!(api_a.watch_for(&events, paused_at(1)).await);
    // The gate is released on the replica that did not start the delivery, then on the other.
    api_a.post(&format!("{deliveries}/{id}/resume"), json!({})).await;
    assert!(api_b.watch_for(&events, paused_at(2)).await);
    api_b.post(&format!("{deliveries}/{id}/resume"), json!({})).await;
    api_a.watch(&events, usize::MAX).await;
    let finished = api_a.get(&format!("{deliveries}/{id}")).await;
    assert_eq!((finished["state"].as_str(), finished["counts"]["succeeded"].as_u64()), (Some("succeeded"), Some(90)));
    // No target of a wave started before every target of the wave before it had finished.
    let targets = api_a.get(&format!("{deliveries}/{id}/targets?limit=1000")).await;
    let items = targets["items"].as_array().expect("items");
    for wave in 1..3 {
        let last_end = items.iter().filter(|t| t["wave"] == wave).filter_map(|t| t["finished_at"].as_i64()).max();
        let next_start = items.iter().filter(|t| t["wave"] == wave + 1).filter_map(|t| t["started_at"].as_i64()).min();
        assert!(
            last_end.expect("finished") <= next_start.expect("started"),
            "wave {} started before wave {wave} ended",
            wave + 1
        );
    }
    assert!(rule_puts(&sim, TARGETS).await.iter().all(|&n| n == 1), "every target got its rule once");
}

/// One counter of a replica's `/metrics`.
async fn metric(server: &Server, name: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", server.base)).await.expect("metrics").text().await.expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in {text}"))
}

/// Waits, for 30 s at most, until the broker counter has seen at least `commands`.
async fn until_counted(total: &mut tokio::sync::watch::Receiver<u64>, commands: u64, what: &str) {
    let reached = total.wait_for(|seen| *seen >= commands);
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(30), reached).await;
    outcome.unwrap_or_else(|_| panic!("{what}: {commands} commands within 30 s")).expect("counting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_publish_each_agent_command_once_and_every_replica_sees_the_answers() {
    use agent::mqtt::{BrokerUrl, Incoming, SessionOptions};
    const TARGETS: u32 = 60;
    let broker = "mqtt://127.0.0.1:1883";
    let cluster = Cluster::new(2).await;
    // No periodic probe round during the test: a probe is a command too, and one published after
    // the replicas' counters are read would make the broker's count differ from theirs.
    let quiet = ["--mqtt-url", broker, "--probe-interval-secs", "3600"];
    let a = cluster.start(0, &quiet);
    let b = cluster.start(1, &quiet);
    let sim = crate::process::sim(TARGETS).await;
    sim.sim.set_faults(None, Some(Faults { latency_ms: 10, ..Faults::default() }));
    let api = a.api().await;
    let project = api.project().await;
    let key = api.get(&format!("/api/v1/projects/{project}/agents/command-key")).await;
    let prefix = format!("replicas-{:08x}-", rand::random::<u32>());
    let options = neuronex_sim::agents::SimAgents {
        id_prefix: prefix.clone(),
        ..neuronex_sim::agents::SimAgents::new(broker, key["command_key"].as_str().expect("key"))
    };
    let agents = neuronex_sim::agents::AgentFleet::start(&sim, options).expect("agents");
    agents.ready(std::time::Duration::from_secs(60)).await.expect("agents listen");
    // Every command the replicas publish, as the broker carries it, from before the gateways are
    // registered (registering them probes them).
    let session = SessionOptions::new(format!("counter-{:016x}", rand::random::<u64>()));
    let (publisher, mut events) =
        agent::mqtt::connect(&BrokerUrl::parse(broker).expect("url"), &session).expect("session");
    loop {
        let event = tokio::time::timeout(std::time::Duration::from_secs(30), events.next()).await;
        match event.expect("the broker answers in time").expect("broker") {
            Incoming::Connected { .. } => {
                publisher.subscribe("edgefleet/v1/agents/+/commands").await.expect("subscribe")
            }
            Incoming::Subscribed => break,
            _ => {}
        }
    }
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<String, u32>::new()));
    let (total_tx, mut total_rx) = tokio::sync::watch::channel(0u64);
    let counter = {
        let (seen, prefix) = (seen.clone(), prefix.clone());
        tokio::spawn(async move {
            while let Ok(event) = events.next().await {
                if let Incoming::Message { topic, payload } = event
                    && topic.contains(&prefix)
                    && let Ok(signed) = serde_json::from_slice::<agent::protocol::SignedCommand>(&payload)
                    && let Ok(command) = serde_json::from_str::<Value>(&signed.command)
                {
                    let id = command["id"].as_str().unwrap_or_default().to_owned();
                    *seen.lock().expect("lock").entry(id).or_default() += 1;
                    total_tx.send_modify(|total| *total += 1);
                }
            }
        })
    };

    let rows: Vec<Value> = (0..TARGETS as usize)
        .map(|k| json!({"name": format!("gw-{k}"), "transport": "agent", "agent_id": agents.agent_id(k)}))
        .collect();
    let imported = api.post(&format!("/api/v1/projects/{project}/edge-services/import"), json!(rows)).await;
    let ids: Vec<Value> = imported["items"].as_array().expect("items").iter().map(|e| e["id"].clone()).collect();
    // Registering the gateways probes each in the background, one `version` command apiece; those
    // are counted too, but must all be out before the replicas' counters are read.
    until_counted(&mut total_rx, u64::from(TARGETS), "the new gateways are probed").await;

    let template = api.rule_setup_template(&project).await;
    let body =
        json!({"template_id": template["id"], "targets": {"ids": ids}, "options": {"concurrency": 4, "retries": 0}});
    let delivery = b.api().await.post(&format!("/api/v1/projects/{project}/deliveries"), body).await;
    let id = delivery["id"].as_str().expect("id").to_owned();
    api.watch(&format!("/api/v1/projects/{project}/deliveries/{id}/events"), usize::MAX).await;
    let finished = api.get(&format!("/api/v1/projects/{project}/deliveries/{id}")).await;
    assert_eq!(finished["state"], "succeeded", "{finished}");

    let published =
        metric(&a, "edgefleet_agent_commands_total").await + metric(&b, "edgefleet_agent_commands_total").await;
    // The answers of one replica's commands reach the other too, which has no waiter for them.
    let (a_unmatched, b_unmatched) = (
        metric(&a, "edgefleet_agent_replies_unmatched_total").await,
        metric(&b, "edgefleet_agent_replies_unmatched_total").await,
    );
    assert!(a_unmatched + b_unmatched > 0, "every replica hears every answer");
    // The counter may still be reading the last commands: wait until it has seen as many.
    until_counted(&mut total_rx, published, "the broker carried them").await;
    counter.abort();
    let seen = seen.lock().expect("lock");
    assert_eq!(
        seen.values().map(|&n| u64::from(n)).sum::<u64>(),
        published,
        "the broker carried what the replicas counted"
    );
    assert!(seen.values().all(|&n| n == 1), "no command was published twice");
}
