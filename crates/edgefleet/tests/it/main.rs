//! The `edgefleet` program as users run it: serve, kill -9 and restart, demo.

mod cli;
mod process;
mod replicas;

use neuronex_sim::Faults;
use process::Server;
use serde_json::{Value, json};

#[tokio::test]
async fn a_killed_server_resumes_its_delivery_without_sending_finished_targets_again() {
    let data = tempfile::tempdir().expect("temp dir");
    let sim = process::sim(120).await;
    sim.sim.set_faults(None, Some(Faults { latency_ms: 20, ..Faults::default() }));
    let server = Server::start(data.path());
    let api = server.api().await;
    let (project, template) = api.rule_setup(&sim).await;
    let body = json!({"template_id": template["id"], "targets": {"all": true}, "options": {"concurrency": 4, "retries": 0, "timeout_secs": 10}});
    let delivery = api.post(&format!("/api/v1/projects/{project}/deliveries"), body).await;
    let id = delivery["id"].as_str().expect("id").to_owned();
    let events = format!("/api/v1/projects/{project}/deliveries/{id}/events");
    let seen = api.watch(&events, 20).await;
    assert!(seen >= 20, "the delivery was under way when the server was killed");
    server.kill();

    let server = Server::start(data.path());
    let api = server.api().await;
    api.watch(&events, usize::MAX).await;
    let finished = api.get(&format!("/api/v1/projects/{project}/deliveries/{id}")).await;
    assert_eq!(finished["state"], "succeeded", "{finished}");
    assert_eq!(
        (finished["counts"]["total"].as_u64(), finished["counts"]["succeeded"].as_u64()),
        (Some(120), Some(120))
    );
    let mut sent_twice = 0;
    for k in 0..120 {
        let state: Value = reqwest::get(format!("{}/__sim/instances/{k}", sim.base_url))
            .await
            .expect("sim")
            .json()
            .await
            .expect("json");
        let puts = state["requests"]["PUT /api/ekuiper/rules/r1"].as_u64().unwrap_or(0);
        assert!(puts >= 1, "instance {k} never got its rule");
        if puts > 1 {
            sent_twice += 1;
        }
    }
    assert!(sent_twice <= 4, "only targets in flight at the kill (concurrency 4) may be sent twice, got {sent_twice}");
}

#[tokio::test]
async fn a_rollout_paused_between_waves_survives_a_kill_and_resumes_where_it_stood() {
    let data = tempfile::tempdir().expect("temp dir");
    let sim = process::sim(20).await;
    let server = Server::start(data.path());
    let api = server.api().await;
    let (project, template) = api.rule_setup(&sim).await;
    let deliveries = format!("/api/v1/projects/{project}/deliveries");
    let body = json!({"template_id": template["id"], "targets": {"all": true},
                      "rollout": {"waves": [{"count": 5}, {"count": 5}, {"percent": 100}], "gate": "manual"}});
    let id = api.post(&deliveries, body).await["id"].as_str().expect("id").to_owned();
    let events = format!("{deliveries}/{id}/events");
    let paused = |name: &str, data: &str| name == "paused" || (name == "state" && data.contains("\"paused\""));
    assert!(api.watch_for(&events, paused).await, "wave 1 ends paused at the gate");
    server.kill();

    let server = Server::start(data.path());
    let api = server.api().await;
    let stood = api.get(&format!("{deliveries}/{id}")).await;
    assert_eq!((stood["state"].as_str(), stood["wave"].as_u64()), (Some("paused"), Some(1)), "{stood}");
    assert_eq!(stood["counts"]["succeeded"].as_u64(), Some(5));
    api.post(&format!("{deliveries}/{id}/resume"), json!({})).await;
    assert!(api.watch_for(&events, paused).await, "wave 2 ends paused at the gate");
    let resumed = api.post(&format!("{deliveries}/{id}/resume"), json!({})).await;
    assert_eq!(resumed["wave"].as_u64(), Some(3));
    api.watch(&events, usize::MAX).await;
    let finished = api.get(&format!("{deliveries}/{id}")).await;
    assert_eq!((finished["state"].as_str(), finished["counts"]["succeeded"].as_u64()), (Some("succeeded"), Some(20)));
    for k in 0..20 {
        let puts =
            sim.sim.snapshot(k).expect("instance")["requests"]["PUT /api/ekuiper/rules/r1"].as_u64().unwrap_or(0)
                + sim.sim.snapshot(k).expect("instance")["requests"]["POST /api/ekuiper/rules"].as_u64().unwrap_or(0);
        assert_eq!(puts, 1, "instance {k} got its rule once");
    }
}

#[tokio::test]
async fn a_second_process_on_the_same_sqlite_database_is_refused() {
    let data = tempfile::tempdir().expect("temp dir");
    let _first = Server::start(data.path());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_edgefleet"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("another edgefleet process is using the SQLite database") && stderr.contains("use PostgreSQL"),
        "{stderr}"
    );
}

#[test]
fn the_demo_runs_end_to_end_with_successes_and_reasoned_failures() {
    let data = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_edgefleet"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--sim-listen",
            "127.0.0.1:0",
            "--jwt-sim-listen",
            "127.0.0.1:0",
            "--agent-sim-listen",
            "127.0.0.1:0",
            "--exit",
            "--data-dir",
        ])
        .arg(data.path().join("demo"))
        .env_remove("EDGEFLEET_ADMIN_PASSWORD")
        .output()
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("registered 48 edge services"), "{stdout}");
    assert!(
        stdout.contains("registered 4 edge services that sign in with the project's JWT key edgefleet-"),
        "{stdout}"
    );
    assert!(stdout.contains("loaded plugin vibration"), "{stdout}");
    // Three more gateways behind agents, on the machine's broker (scripts/ensure-services).
    assert!(stdout.contains("3 more at") && stdout.contains("behind agents (demo-"), "{stdout}");
    assert!(stdout.contains("result: partial  total 55  succeeded 49  failed 6"), "{stdout}");
    assert!(stdout.contains("version gate: NeuronEX 2.9.0 is older than 3.0.0"), "{stdout}");
    assert!(stdout.contains("version gate: no answer within the target's 8 s (options.timeout_secs)"), "{stdout}");
    // The gateway that drops connections is known offline from its first probe: one quick check.
    assert!(stdout.contains("offline since "), "{stdout}");
    assert!(stdout.contains("login            admin / demo-"), "{stdout}");
}

#[test]
fn serve_reads_flags_over_environment_over_the_config_file() {
    let data = tempfile::tempdir().expect("temp dir");
    let config = data.path().join("edgefleet.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:1\"\nprobe_interval_secs = 0\n").expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_edgefleet"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&output.stderr).contains("the probe interval must be at least 1 second"));
    std::fs::write(&config, "max_targets = 0\n").expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_edgefleet"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("max_targets must be at least 1"),
        "limits are read from the file"
    );
    std::fs::write(&config, "colour = \"red\"\n").expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_edgefleet"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("runs");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("unknown field `colour`"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The server tunes glibc's allocator for itself (ADR 13) and leaves an operator's own setting,
/// even an empty one, alone.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_server_runs_with_its_allocator_tuned_unless_the_operator_tuned_it() {
    const TUNED: &str =
        "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=262144";
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[], TUNED),
        (&[("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")], "glibc.malloc.arena_max=4"),
        (&[("GLIBC_TUNABLES", "")], ""),
    ];
    for (environment, expected) in cases {
        let data = tempfile::tempdir().expect("temp dir");
        let server = Server::start_in(data.path(), &[], environment);
        assert!(server.environment_holds("GLIBC_TUNABLES", expected), "started with {environment:?}");
        assert!(server.environment_holds("EDGEFLEET_ADMIN_PASSWORD", process::PASSWORD), "the rest is kept");
    }
}

/// A start-up failure names the database without its password.
#[test]
fn a_database_password_never_shows_in_a_start_up_failure() {
    let data = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_edgefleet"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", "postgres://edgefleet:Hunter2-db@127.0.0.1:1/ef"])
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("postgres://edgefleet:***@127.0.0.1:1/ef"), "{stderr}");
    assert!(!stderr.contains("Hunter2-db"), "{stderr}");
}

/// `edgefleet login` keeps its token where only its owner can read it.
#[cfg(unix)]
#[tokio::test]
async fn the_cli_keeps_its_credentials_private() {
    use std::os::unix::fs::PermissionsExt;
    let data = tempfile::tempdir().expect("temp dir");
    let server = process::Server::start(data.path());
    let config = tempfile::tempdir().expect("config dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_edgefleet"))
        .args(["login", "--server", &server.base, "--username", "admin"])
        .env("EDGEFLEET_CONFIG_DIR", config.path())
        .env("EDGEFLEET_PASSWORD", process::PASSWORD)
        .output()
        .expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let file = config.path().join("credentials.json");
    assert_eq!(std::fs::metadata(&file).expect("saved").permissions().mode() & 0o777, 0o600);
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("json");
    assert!(saved["device_token"].as_str().is_some_and(|t| !t.is_empty()), "{saved}");
}

/// Settings with hostile values stop the start with a reason instead of overflowing.
#[test]
fn out_of_range_settings_are_refused() {
    for (flag, value, reason) in [
        ("--jwt-overlap-hours", "18446744073709551615", "at most a year"),
        ("--sign-in-backoff-secs", "100000", "1 to 300 seconds"),
    ] {
        let data = tempfile::tempdir().expect("temp dir");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_edgefleet"))
            .args(["serve", "--listen", "127.0.0.1:0", flag, value, "--data-dir"])
            .arg(data.path())
            .output()
            .expect("runs");
        assert!(!output.status.success(), "{flag}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(reason), "{flag}: {stderr}");
    }
}

/// `edgefleet deliver --plan` prints what applying would change, grouped, and writes nothing.
/// (Several threads: the simulator answers while the test waits for the command.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_a_plan_grouped_by_change_set() {
    let data = tempfile::tempdir().expect("temp dir");
    let sim = process::sim(3).await;
    let server = Server::start(data.path());
    let api = server.api().await;
    let (project, template) = api.rule_setup(&sim).await;
    let template_id = template["id"].as_str().expect("id");
    // Gateway 2 already runs the stream.
    let stream = json!({"sql": "CREATE STREAM demo () WITH (TYPE=\"memory\")"});
    let created =
        reqwest::Client::new().post(format!("{}/api/ekuiper/streams", sim.endpoint(2))).json(&stream).send().await;
    assert_eq!(created.expect("sim").status(), 201);
    let cli = process::Cli::signed_in(&server);
    let cli = |args: &[&str]| cli.run(args);
    let output = cli(&["deliver", "--project", &project, "--template", template_id, "--all", "--plan"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.contains(
            "plan: 5 to create, 0 to update, 1 unchanged, 0 in conflict, 0 incompatible; 0 targets unreachable"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("2 targets ("), "{stdout}");
    assert!(stdout.contains("  + stream demo (create)") && stdout.contains("  = stream demo (unchanged)"), "{stdout}");
    let rules = || async {
        let listed: Value = reqwest::get(format!("{}/api/ekuiper/rules", sim.endpoint(0)))
            .await
            .expect("sim")
            .json()
            .await
            .expect("json");
        listed.as_array().map(Vec::len)
    };
    assert_eq!(rules().await, Some(0), "a plan writes nothing");
    // The plan carried out, then rolled back.
    let id_of = |stdout: &str| stdout.split_whitespace().nth(1).unwrap_or_default().trim_end_matches(':').to_owned();
    let plan_id = id_of(&stdout);
    let applied = cli(&["delivery", "apply", "--project", &project, &plan_id, "--waves", "1,rest", "--watch"]);
    let applied_out = String::from_utf8_lossy(&applied.stdout).into_owned();
    assert!(applied.status.success(), "{applied_out}");
    assert!(applied_out.contains("(apply): 3 targets") && applied_out.contains(": succeeded"), "{applied_out}");
    assert!(String::from_utf8_lossy(&applied.stderr).contains("wave 2 of 2 started"), "the plan went out in waves");
    assert_eq!(rules().await, Some(1));
    let rolled = cli(&["delivery", "rollback", "--project", &project, &id_of(&applied_out), "--watch"]);
    let rolled_out = String::from_utf8_lossy(&rolled.stdout);
    assert!(rolled.status.success(), "{rolled_out}");
    assert_eq!(rules().await, Some(0), "the rollback removed what the apply created");
}

// Two workers: the simulator answers while the test thread waits for the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_runs_a_gated_rollout_and_shows_its_waves() {
    let data = tempfile::tempdir().expect("temp dir");
    let sim = process::sim(4).await;
    let server = Server::start(data.path());
    let api = server.api().await;
    let (project, template) = api.rule_setup(&sim).await;
    let template_id = template["id"].as_str().expect("id");
    let cli = process::Cli::signed_in(&server);
    let cli = |args: &[&str]| cli.run(args);
    let bad = cli(&["deliver", "--project", &project, "--template", template_id, "--all", "--waves", "five"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("give a count (50), a percentage (10%) or `rest`"));
    let args = ["deliver", "--project", &project, "--template", template_id, "--all", "--waves", "1,rest"];
    let output =
        cli(&[&args[..], &["--gate", "manual", "--abort-failed-percent", "50", "--on-abort", "rollback"]].concat());
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let id = stdout.split_whitespace().nth(1).unwrap_or_default().trim_end_matches(':').to_owned();
    let events = format!("/api/v1/projects/{project}/deliveries/{id}/events");
    let paused = |name: &str, data: &str| name == "paused" || (name == "state" && data.contains("\"paused\""));
    assert!(api.watch_for(&events, paused).await);
    let resumed = cli(&["delivery", "resume", "--project", &project, &id, "--watch"]);
    let (out, err) = (String::from_utf8_lossy(&resumed.stdout), String::from_utf8_lossy(&resumed.stderr));
    assert!(resumed.status.success(), "{out}\n{err}");
    assert!(out.contains(&format!("delivery {id}: running, wave 2 of 2")), "{out}");
    assert!(out.contains(": succeeded"), "{out}");
    // `--watch` stops at a gate and says how to go on.
    let gated = cli(&[&args[..], &["--gate", "manual", "--watch"]].concat());
    let out = String::from_utf8_lossy(&gated.stdout);
    assert_eq!(gated.status.code(), Some(3), "{out}");
    assert!(out.contains("paused; it goes on when someone resumes it: edgefleet delivery resume --project"), "{out}");
    let gated_id = out.split_whitespace().nth(1).unwrap_or_default().trim_end_matches(':').to_owned();
    let abort = cli(&["delivery", "abort", "--project", &project, &gated_id]);
    assert!(String::from_utf8_lossy(&abort.stdout).contains(": running, wave 1 of 2"));
    let again = cli(&["delivery", "pause", "--project", &project, &id]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("cannot_pause"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// What gateway `k` holds of the stream and rules, as edgefleet reads it back.
async fn held(sim: &neuronex_sim::RunningSim, k: u32) -> Vec<Option<Value>> {
    use domain::plan::ObjectRef;
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
    let objects = [
        ObjectRef::Stream { name: "demo".into() },
        ObjectRef::Rule { id: "r1".into() },
        ObjectRef::Rule { id: "r2".into() },
    ];
    client.edge(&target).read_objects(&objects).await.expect("read back")
}

/// A delivery whose every target fails half-way (its second rule reads a stream that does not
/// exist) is killed with targets in flight: after the restart, those targets resume with the
/// snapshot their first attempt recorded, so every gateway ends exactly as it was before the
/// delivery, not as the interrupted attempt left it.
#[tokio::test]
async fn after_a_kill_failed_targets_are_restored_to_what_they_held_before_the_delivery() {
    const COUNT: u32 = 40;
    let data = tempfile::tempdir().expect("temp dir");
    let sim = process::sim(COUNT).await;
    let server = Server::start(data.path());
    let api = server.api().await;
    let (project, template) = api.rule_setup(&sim).await;
    let template_id = template["id"].as_str().expect("id").to_owned();
    let deliveries = format!("/api/v1/projects/{project}/deliveries");
    let v1 = api.post(&deliveries, json!({"template_id": template_id, "targets": {"all": true}})).await;
    api.watch(&format!("{deliveries}/{}/events", v1["id"].as_str().expect("id")), usize::MAX).await;
    let mut before = Vec::new();
    for k in 0..COUNT {
        before.push(held(&sim, k).await);
    }
    let r1 = json!({"id": "r1", "sql": "SELECT * FROM demo WHERE a > 1", "actions": [{"log": {}}]}).to_string();
    let r2 = json!({"id": "r2", "sql": "SELECT * FROM missing", "actions": [{"log": {}}]}).to_string();
    let v2 = json!({"streams": {"demo": "CREATE STREAM demo () WITH (TYPE=\"memory\", DATASOURCE=\"v2\")"}, "rules": {"r1": r1, "r2": r2}});
    api.put(&format!("/api/v1/projects/{project}/templates/{template_id}"), json!({"content": v2})).await;
    sim.sim.set_faults(None, Some(Faults { latency_ms: 15, ..Faults::default() }));
    let body = json!({"template_id": template_id, "targets": {"all": true}, "options": {"concurrency": 4, "retries": 0, "timeout_secs": 10}});
    let delivery = api.post(&deliveries, body).await;
    let events = format!("{deliveries}/{}/events", delivery["id"].as_str().expect("id"));
    assert!(api.watch(&events, 8).await >= 8, "the delivery was under way when the server was killed");
    server.kill();

    let server = Server::start(data.path());
    let api = server.api().await;
    api.watch(&events, usize::MAX).await;
    let finished = api.get(&format!("{deliveries}/{}", delivery["id"].as_str().expect("id"))).await;
    assert_eq!(
        (finished["state"].as_str(), finished["counts"]["failed"].as_u64()),
        (Some("failed"), Some(u64::from(COUNT)))
    );
    sim.sim.set_faults(None, None);
    for k in 0..COUNT {
        assert_eq!(held(&sim, k).await, before[k as usize], "gateway {k} holds what it held before the delivery");
    }
}

/// `edge check` finds a rule changed by hand (exit code 2, the patch printed), `edge reapply`
/// puts it back, `inventory` lists it, `template from-edge` takes it into a template.
/// (Several threads: the simulator answers while the test waits for the command.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_finds_drift_puts_it_back_and_lists_the_inventory() {
    let data = tempfile::tempdir().expect("temp dir");
    let sim = process::sim(2).await;
    let server = Server::start(data.path());
    let api = server.api().await;
    let (project, template) = api.rule_setup(&sim).await;
    let edges = api.get(&format!("/api/v1/projects/{project}/edge-services")).await;
    let edge = edges["items"][0]["id"].as_str().expect("id").to_owned();
    let index = sim.manifest.iter().position(|e| edges["items"][0]["name"] == e.name.as_str()).expect("instance");
    let body = json!({"template_id": template["id"], "targets": {"ids": [edge]}});
    let started = api.post(&format!("/api/v1/projects/{project}/deliveries"), body).await;
    let events = format!("/api/v1/projects/{project}/deliveries/{}/events", started["id"].as_str().expect("id"));
    assert!(api.watch_for(&events, |name, _| name == "final").await);
    let edited = json!({"id": "r1", "sql": "SELECT a FROM demo", "actions": [{"log": {}}]});
    let put = reqwest::Client::new()
        .put(format!("{}/api/ekuiper/rules/r1", sim.endpoint(index as u32)))
        .json(&edited)
        .send()
        .await;
    assert_eq!(put.expect("sim").status(), 200);
    let cli = process::Cli::signed_in(&server);
    let check = cli.run(&["edge", "check", "--project", &project, &edge]);
    let out = String::from_utf8_lossy(&check.stdout).into_owned();
    assert_eq!(check.status.code(), Some(2), "{out}");
    assert!(
        out.starts_with("drifted") && out.contains("✗ rule r1") && out.contains("replace /sql \"SELECT a FROM demo\""),
        "{out}"
    );
    let reapply = cli.run(&["edge", "reapply", "--project", &project, &edge, "--watch"]);
    assert!(reapply.status.success(), "{}", String::from_utf8_lossy(&reapply.stdout));
    let check = cli.run(&["edge", "check", "--project", &project, &edge]);
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stdout));
    assert!(String::from_utf8_lossy(&check.stdout).starts_with("in_sync"));
    let listed = cli.run(&["edge", "list", "--project", &project, "--config-state", "in_sync"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("1 of 1 shown"));
    let inventory = cli.run(&["inventory", "--project", &project, "--kind", "rule", "--name", "r1"]);
    let out = String::from_utf8_lossy(&inventory.stdout).into_owned();
    assert!(out.contains("rule     r1") && out.contains(&edge), "{out}");
    let made = cli.run(&[
        "template",
        "from-edge",
        "--project",
        &project,
        "--edge",
        &edge,
        "--name",
        "copied",
        "--stream",
        "demo",
        "--rule",
        "r1",
    ]);
    let out = String::from_utf8_lossy(&made.stdout).into_owned();
    assert!(made.status.success() && out.contains("template copied") && out.contains("version 1"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_command_delivers_to_a_gateway_the_server_cannot_reach() {
    use std::io::BufRead;
    let data = tempfile::tempdir().expect("temp dir");
    let sim = process::sim(1).await;
    // The machine's broker (scripts/ensure-services): anonymous, so any credentials pass.
    let server = Server::start_with(data.path(), &["--mqtt-url", "mqtt://127.0.0.1:1883"]);
    let api = server.api().await;
    let project = api.project().await;
    let cli = process::Cli::signed_in(&server);
    let agent_id = format!("process-{:08x}", rand::random::<u32>());
    let added = cli.run(&[
        "edge",
        "add",
        "--project",
        &project,
        "--name",
        "press-7",
        "--transport",
        "agent",
        "--agent-id",
        &agent_id,
    ]);
    let out = String::from_utf8_lossy(&added.stdout).into_owned();
    assert!(added.status.success(), "{out}{}", String::from_utf8_lossy(&added.stderr));
    let edge = out.split_whitespace().next().expect("id").to_owned();
    let (password, key) = (data.path().join("agent.pw"), data.path().join("command-key.pem"));
    let issued = cli.run(&[
        "edge",
        "agent-credentials",
        "--project",
        &project,
        &edge,
        "--password-file",
        password.to_str().expect("path"),
        "--key-file",
        key.to_str().expect("path"),
    ]);
    let out = String::from_utf8_lossy(&issued.stdout).into_owned();
    assert!(issued.status.success() && out.contains(&format!("username:  {agent_id}")), "{out}");
    assert!(
        !out.contains(std::fs::read_to_string(&password).expect("password").trim()),
        "the password stays in its file"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&password).expect("file").permissions().mode() & 0o777, 0o600);

    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_edgefleet"))
        .args(["agent", "--broker", "mqtt://127.0.0.1:1883", "--agent-id", &agent_id, "--password-file"])
        .arg(&password)
        .arg("--command-key")
        .arg(&key)
        .args(["--neuronex", sim.endpoint(0), "--state-dir"])
        .arg(data.path().join("agent-state"))
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("agent starts");
    // Its log lines come through a channel, so the wait for "listening" has a deadline.
    let log = std::io::BufReader::new(agent.stderr.take().expect("stderr"));
    let (lines, listening) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in log.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = listening.recv_timeout(left).expect("the agent listens in time (and does not stop)");
        if line.contains("listening for commands") {
            break;
        }
    }

    let rule = json!({"id": "r1", "sql": "SELECT * FROM demo", "actions": [{"log": {}}]}).to_string();
    let doc = json!({"streams": {"demo": "CREATE STREAM demo () WITH (TYPE=\"memory\")"}, "rules": {"r1": rule}});
    let template = api
        .post(&format!("/api/v1/projects/{project}/templates"), json!({"name": "t", "kind": "rule", "content": doc}))
        .await;
    let deliver = cli.run(&[
        "deliver",
        "--project",
        &project,
        "--template",
        template["id"].as_str().expect("id"),
        "--all",
        "--watch",
    ]);
    let out = String::from_utf8_lossy(&deliver.stdout).into_owned();
    assert!(deliver.status.success() && out.contains("succeeded"), "{out}{}", String::from_utf8_lossy(&deliver.stderr));
    assert!(held(&sim, 0).await[1].is_some(), "the rule is on the gateway");
    assert!(std::fs::read_to_string(data.path().join("agent-state/commands.log")).expect("record").lines().count() > 0);

    // SIGTERM: the agent says it goes offline and exits cleanly.
    let status = std::process::Command::new("kill").arg(agent.id().to_string()).status().expect("kill");
    assert!(status.success());
    assert!(agent.wait().expect("exit").success());
}

#[test]
fn logs_can_be_one_json_object_per_line() {
    use std::io::BufRead;
    let data = tempfile::tempdir().expect("temp dir");
    // A broker that is not there: the server logs its reconnect attempts, with their fields.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edgefleet"))
        .args(["serve", "--listen", "127.0.0.1:0", "--mqtt-url", "mqtt://127.0.0.1:1", "--data-dir"])
        .arg(data.path())
        .env("EDGEFLEET_LOG_FORMAT", "json")
        .env("EDGEFLEET_ADMIN_PASSWORD", process::PASSWORD)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    let mut log = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    assert!(log.read_line(&mut line).expect("a log line") > 0);
    let _ = child.kill();
    let _ = child.wait();
    let entry: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(entry["level"], "WARN", "{line}");
    assert_eq!(entry["broker"], "mqtt://127.0.0.1:1", "{line}");
    assert!(entry["message"].as_str().is_some_and(|m| m.contains("reconnecting in")), "{line}");
}
