//! `edgefleet demo`: everything on one machine with no setup. A simulated NeuronEX fleet (several
//! versions, tags, one generation too old, a few faulty gateways), the server on SQLite in a local
//! folder, an organization and project, the fleet registered, sample rule and driver templates,
//! and a first delivery to the whole fleet whose successes and failures are printed with reasons.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use neuronex_sim::versions::Version;
use neuronex_sim::{Faults, SimConfig};
use serde_json::{Value, json};
use server::{App, Config};

use crate::cli::Client;

const FLEET_SIZE: u32 = 48;
/// Gateways that accept only tokens signed by the demo project's own key.
const JWT_FLEET_SIZE: u32 = 4;
const RULES: &str = include_str!("../samples/demo-rules.json");
const DRIVER: &str = include_str!("../samples/demo-modbus-driver.json");
const PLUGIN: &[u8] = include_bytes!("../samples/vibration.zip");

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where the server listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Where the simulated fleet listens (instances at /i/<k>).
    #[arg(long, default_value = "127.0.0.1:9700")]
    sim_listen: SocketAddr,
    /// Where the simulated gateways that sign in with the project's JWT key listen.
    #[arg(long, default_value = "127.0.0.1:9701")]
    jwt_sim_listen: SocketAddr,
    /// The MQTT broker for the agent-mode gateways (skipped when none answers there).
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    mqtt_url: String,
    /// Where the simulated gateways reached through agents listen.
    #[arg(long, default_value = "127.0.0.1:9702")]
    agent_sim_listen: SocketAddr,
    /// The demo's data folder (SQLite database, keys).
    #[arg(long, default_value = "edgefleet-demo")]
    data_dir: PathBuf,
    /// Do not run the first delivery.
    #[arg(long)]
    no_delivery: bool,
    /// Stop once the setup (and first delivery) is done, instead of serving until Ctrl-C.
    #[arg(long)]
    exit: bool,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let fleet = start_fleet(args.sim_listen).await?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    // The JWT gateways read public keys from this folder, as NeuronEX reads its `etc/`.
    let neuronex_etc = args.data_dir.join("neuronex-etc");
    std::fs::create_dir_all(&neuronex_etc).with_context(|| format!("cannot create {}", neuronex_etc.display()))?;
    let jwt_fleet = start_jwt_fleet(args.jwt_sim_listen, &neuronex_etc).await?;
    let password = demo_password(&args.data_dir)?;
    let mut config = Config::new(args.data_dir.clone());
    config.listen = args.listen;
    config.admin_password = Some(password.clone());
    // A demo shows drift within a minute of a change on a simulated gateway.
    config.drift_interval = std::time::Duration::from_secs(60);
    // The simulated gateways are on this machine; real ones never are (the default refuses loopback).
    config.edge_networks = domain::network::NetworkPolicy::parse_list("127.0.0.0/8").map_err(anyhow::Error::msg)?;
    let broker = broker_answers(&args.mqtt_url).await;
    if broker {
        config.mqtt_url = Some(args.mqtt_url.clone());
    }
    let app = App::build(config).await?;
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));
    let client = sign_in(&base, &password).await?;
    let project = ensure_project(&client).await?;
    register_fleet(&client, &project, &fleet).await?;
    register_jwt_fleet(&client, &project, &jwt_fleet, &neuronex_etc).await?;
    let rules =
        ensure_template(&client, &project, "demo-rules", "rule", RULES, "Temperature alert and line average (eKuiper)")
            .await?;
    ensure_template(
        &client,
        &project,
        "demo-modbus-line",
        "driver",
        DRIVER,
        "Modbus TCP PLC with process and setpoint groups",
    )
    .await?;
    let plugin = ensure_plugin(&client, &project).await?;
    let agents = if broker {
        let prefix = agent_prefix(&args.data_dir)?;
        Some(start_agent_fleet(&client, &project, args.agent_sim_listen, &args.mqtt_url, &prefix).await?)
    } else {
        None
    };
    println!();
    println!("edgefleet demo is running");
    println!("  console and API  {base}/   (REST under {base}/api/v1)");
    println!("  login            admin / {password}");
    println!("  project          {project}   (organization \"Demo Plant\", project \"Line 1\")");
    println!("  simulated fleet  {FLEET_SIZE} NeuronEX instances at {}/i/<k>", fleet.base_url);
    println!(
        "                   {JWT_FLEET_SIZE} more at {}/i/<k> that trust the project's JWT key (installed in {})",
        jwt_fleet.base_url,
        neuronex_etc.display()
    );
    match &agents {
        Some((sim, agents)) => println!(
            "                   {AGENT_FLEET_SIZE} more at {}/i/<k> behind agents ({}) on {}",
            sim.base_url,
            agents.agent_id(0),
            args.mqtt_url
        ),
        None => {
            println!("  agent mode       off: no MQTT broker answers at {} (start Mosquitto to see it)", args.mqtt_url)
        }
    }
    if !args.no_delivery {
        first_delivery(&client, &project, &rules).await?;
    }
    println!();
    println!("try it from another terminal:");
    println!("  edgefleet login --server {base} --username admin --password {password}");
    println!("  edgefleet edge list --project {project} --tag zone-a");
    println!(
        "  edgefleet deliver --project {project} --template {rules} --tag zone-a --plan   # what would change; writes nothing"
    );
    println!("  edgefleet deliver --project {project} --template {rules} --edge-version 3.7 --watch");
    println!("  edgefleet deliver --project {project} --plugin {plugin} --tag zone-b --watch");
    println!("  edgefleet edge list --project {project} --config-state drifted   # checked every minute in the demo");
    println!("  edgefleet inventory --project {project} --kind rule");
    if agents.is_some() {
        println!(
            "  edgefleet deliver --project {project} --template {rules} --tag zone-agent --watch   # through agents"
        );
    }
    if !args.exit {
        println!("\nCtrl-C stops the demo (the data stays in {}).", args.data_dir.display());
        crate::serve::shutdown_signal().await;
    }
    let _ = stop.send(());
    server.await.context("server task")??;
    fleet.abort();
    jwt_fleet.abort();
    if let Some((sim, agents)) = agents {
        drop(agents);
        sim.abort();
    }
    Ok(ExitCode::SUCCESS)
}

/// Gateways reached only through agents and the broker, as plants behind NAT are.
const AGENT_FLEET_SIZE: u32 = 3;

/// Whether something accepts connections at the broker URL's address.
async fn broker_answers(url: &str) -> bool {
    let Ok(broker) = agent::mqtt::BrokerUrl::parse(url) else { return false };
    let connect = tokio::net::TcpStream::connect((broker.host.as_str(), broker.port));
    matches!(tokio::time::timeout(std::time::Duration::from_secs(2), connect).await, Ok(Ok(_)))
}

/// Starts simulated gateways with an embedded agent each and registers them as agent-mode
/// services (`demo-agent-<k>`).
async fn start_agent_fleet(
    client: &Client,
    project: &str,
    listen: SocketAddr,
    broker: &str,
    prefix: &str,
) -> anyhow::Result<(neuronex_sim::RunningSim, neuronex_sim::agents::AgentFleet)> {
    let config = SimConfig { count: AGENT_FLEET_SIZE, seed: 7, ..SimConfig::default() };
    let sim = neuronex_sim::start(config, listen, false)
        .await
        .with_context(|| format!("cannot start the agents' gateways on {listen} (use --agent-sim-listen)"))?;
    let key = client.get(&format!("/api/v1/projects/{project}/agents/command-key")).await?;
    let options = neuronex_sim::agents::SimAgents {
        id_prefix: prefix.to_owned(),
        ..neuronex_sim::agents::SimAgents::new(broker, key["command_key"].as_str().unwrap_or_default())
    };
    let agents = neuronex_sim::agents::AgentFleet::start(&sim, options)?;
    agents
        .ready(std::time::Duration::from_secs(20))
        .await
        .with_context(|| format!("the demo's agents could not subscribe on {broker}"))?;
    let registered = client.get(&format!("/api/v1/projects/{project}/edge-services?name=agent-gw&limit=1")).await?;
    if registered["total"].as_i64().unwrap_or(0) == 0 {
        let rows: Vec<Value> = (0..AGENT_FLEET_SIZE as usize)
            .map(|k| json!({"name": format!("agent-gw-{k}"), "transport": "agent", "agent_id": format!("{prefix}{k}"), "tags": ["zone-agent"], "description": "simulated NeuronEX behind NAT, reached through its agent"}))
            .collect();
        let body = serde_json::to_vec(&rows)?;
        client.post_raw(&format!("/api/v1/projects/{project}/edge-services/import"), "application/json", body).await?;
    }
    Ok((sim, agents))
}

/// 48 instances across seven NeuronEX versions (three of them 2.9.0, below the 3.0 gate), with
/// one offline, one answering errors and one that never answers.
async fn start_fleet(listen: SocketAddr) -> anyhow::Result<neuronex_sim::RunningSim> {
    let cycle = [
        "3.7.0", "3.7.0", "3.6.0", "3.6.0", "3.6.0", "3.5.5", "3.5.5", "3.4.0", "3.3.0", "3.3.0", "3.2.0", "3.7.0",
        "3.1.0", "3.6.0", "3.0.0", "2.9.0",
    ];
    let exact_versions = cycle.iter().filter_map(|v| Version::parse(v)).collect();
    let config = SimConfig { count: FLEET_SIZE, seed: 42, exact_versions, ..SimConfig::default() };
    let fleet = neuronex_sim::start(config, listen, false).await.with_context(|| {
        format!("cannot start the simulated fleet on {listen} (is the port taken? use --sim-listen)")
    })?;
    fleet.sim.set_faults(Some(7), Some(Faults { offline: true, ..Faults::default() }));
    fleet.sim.set_faults(Some(13), Some(Faults { error_rate: 1.0, ..Faults::default() }));
    fleet.sim.set_faults(Some(21), Some(Faults { timeout_rate: 1.0, ..Faults::default() }));
    Ok(fleet)
}

async fn start_jwt_fleet(listen: SocketAddr, key_dir: &std::path::Path) -> anyhow::Result<neuronex_sim::RunningSim> {
    let config = SimConfig {
        count: JWT_FLEET_SIZE,
        seed: 43,
        auth: neuronex_sim::AuthMode::Jwt,
        jwt_key_dir: Some(key_dir.to_owned()),
        ..SimConfig::default()
    };
    neuronex_sim::start(config, listen, false)
        .await
        .with_context(|| format!("cannot start the JWT gateways on {listen} (is the port taken? use --jwt-sim-listen)"))
}

/// Installs the project's public key where the JWT gateways look for it (as an operator copies
/// it into NeuronEX's `etc/`) and registers them with `auth: jwt`.
async fn register_jwt_fleet(
    client: &Client,
    project: &str,
    fleet: &neuronex_sim::RunningSim,
    key_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let key = client.get(&format!("/api/v1/projects/{project}/jwt/public-key")).await?;
    let file_name = key["file_name"].as_str().context("the project key has no file name")?;
    std::fs::write(key_dir.join(file_name), key["pem"].as_str().unwrap_or_default())
        .with_context(|| format!("cannot install the project key in {}", key_dir.display()))?;
    let registered = client.get(&format!("/api/v1/projects/{project}/edge-services?name=jwt-gw&limit=1")).await?;
    if registered["total"].as_i64().unwrap_or(0) > 0 {
        return Ok(());
    }
    let rows: Vec<Value> = fleet
        .manifest
        .iter()
        .enumerate()
        .map(|(k, e)| json!({"name": format!("jwt-gw-{k}"), "endpoint": e.endpoint, "tags": ["zone-jwt"], "auth": {"kind": "jwt"}, "description": "simulated NeuronEX that trusts this project's JWT key"}))
        .collect();
    let body = serde_json::to_vec(&rows)?;
    let answer =
        client.post_raw(&format!("/api/v1/projects/{project}/edge-services/import"), "application/json", body).await?;
    println!("registered {} edge services that sign in with the project's JWT key {file_name}", answer["total"]);
    Ok(())
}

/// Agent ids name broker topics, so two demos on one broker must not share them: each data folder
/// keeps a prefix of its own.
fn agent_prefix(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("demo-agent-prefix.txt");
    if let Ok(saved) = std::fs::read_to_string(&path) {
        return Ok(saved.trim().to_owned());
    }
    let prefix = format!("demo-{:08x}-", rand::random::<u32>());
    std::fs::write(&path, &prefix).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(prefix)
}

/// The password comes from `EDGEFLEET_ADMIN_PASSWORD`, or is made once and kept in the data folder
/// so a second run of the demo signs in with the same one.
fn demo_password(data_dir: &std::path::Path) -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("EDGEFLEET_ADMIN_PASSWORD")
        && !password.is_empty()
    {
        return Ok(password);
    }
    let path = data_dir.join("demo-admin-password.txt");
    if let Ok(saved) = std::fs::read_to_string(&path) {
        return Ok(saved.trim().to_owned());
    }
    let password = format!("demo-{:016x}", rand::random::<u64>());
    std::fs::write(&path, &password).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(password)
}

async fn sign_in(base: &str, password: &str) -> anyhow::Result<Client> {
    let (api, _) = api_client::ApiClient::new(base).login("admin", password).await.context(
        "cannot sign in as admin: the data folder was made with another password (set EDGEFLEET_ADMIN_PASSWORD or use a new --data-dir)",
    )?;
    Ok(Client::signed_in(api))
}

async fn ensure_project(client: &Client) -> anyhow::Result<String> {
    let orgs = client.get("/api/v1/orgs").await?;
    let existing = orgs["items"].as_array().into_iter().flatten().find(|o| o["name"] == "Demo Plant").cloned();
    let org = match existing {
        Some(org) => org,
        None => client.post("/api/v1/orgs", &json!({"name": "Demo Plant"})).await?,
    };
    let org_id = org["id"].as_str().unwrap_or_default();
    let projects = client.get(&format!("/api/v1/orgs/{org_id}/projects")).await?;
    let existing = projects["items"].as_array().into_iter().flatten().find(|p| p["name"] == "Line 1").cloned();
    let project = match existing {
        Some(project) => project,
        None => client.post(&format!("/api/v1/orgs/{org_id}/projects"), &json!({"name": "Line 1"})).await?,
    };
    Ok(project["id"].as_str().unwrap_or_default().to_owned())
}

async fn register_fleet(client: &Client, project: &str, fleet: &neuronex_sim::RunningSim) -> anyhow::Result<()> {
    let registered = client.get(&format!("/api/v1/projects/{project}/edge-services?limit=1")).await?;
    if registered["total"].as_i64().unwrap_or(0) > 0 {
        // A rerun on the same data folder: the endpoints may have moved with the ports.
        return Ok(());
    }
    let rows: Vec<Value> = fleet
        .manifest
        .iter()
        .map(|e| json!({"name": e.name, "endpoint": e.endpoint, "tags": e.tags, "description": format!("simulated NeuronEX {}", e.version)}))
        .collect();
    let body = serde_json::to_vec(&rows)?;
    let answer =
        client.post_raw(&format!("/api/v1/projects/{project}/edge-services/import"), "application/json", body).await?;
    println!("registered {} edge services", answer["total"]);
    // Give the first probes a moment so versions show in the listing.
    for _ in 0..50 {
        let probed = client.get(&format!("/api/v1/projects/{project}/edge-services?status=unknown&limit=1")).await?;
        if probed["total"].as_i64() == Some(0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn ensure_template(
    client: &Client,
    project: &str,
    name: &str,
    kind: &str,
    content: &str,
    description: &str,
) -> anyhow::Result<String> {
    let listed = client.get(&format!("/api/v1/projects/{project}/templates?limit=1000")).await?;
    if let Some(existing) = listed["items"].as_array().into_iter().flatten().find(|t| t["name"] == name) {
        return Ok(existing["id"].as_str().unwrap_or_default().to_owned());
    }
    let body = json!({"name": name, "kind": kind, "content": content, "description": description});
    let created = client.post(&format!("/api/v1/projects/{project}/templates"), &body).await?;
    println!("loaded {kind} template {name} (parameters: {})", created["parameters"]);
    Ok(created["id"].as_str().unwrap_or_default().to_owned())
}

async fn ensure_plugin(client: &Client, project: &str) -> anyhow::Result<String> {
    let listed = client.get(&format!("/api/v1/projects/{project}/plugins?limit=1000")).await?;
    if let Some(existing) = listed["items"].as_array().into_iter().flatten().find(|p| p["name"] == "vibration") {
        return Ok(existing["id"].as_str().unwrap_or_default().to_owned());
    }
    let created = client
        .upload_plugin(project, "vibration", "Vibration source, alarm sink and RMS function (Python)", PLUGIN.to_vec())
        .await?;
    println!("loaded plugin vibration (sha256 {})", created["sha256"].as_str().unwrap_or_default());
    Ok(created["id"].as_str().unwrap_or_default().to_owned())
}

async fn first_delivery(client: &Client, project: &str, template: &str) -> anyhow::Result<()> {
    let body = json!({
        "template_id": template,
        "targets": {"all": true},
        "params": {"defaults": {"threshold": 80, "broker": "broker.plant.local"}},
        "options": {"timeout_secs": 8, "retries": 1}
    });
    let delivery = client.post(&format!("/api/v1/projects/{project}/deliveries"), &body).await?;
    let id = delivery["id"].as_str().unwrap_or_default().to_owned();
    println!("\ndelivering demo-rules to all {} edge services (delivery {id}) ...", delivery["counts"]["total"]);
    let mut last = Value::Null;
    client
        .watch(&format!("/api/v1/projects/{project}/deliveries/{id}/events"), |name, data| {
            if name == "final" {
                last = data.clone();
            }
            true
        })
        .await?;
    let counts = &last["counts"];
    println!(
        "result: {}  total {}  succeeded {}  failed {}",
        last["state"].as_str().unwrap_or("?"),
        counts["total"],
        counts["succeeded"],
        counts["failed"]
    );
    let failed =
        client.get(&format!("/api/v1/projects/{project}/deliveries/{id}/targets?status=failed&limit=50")).await?;
    for target in failed["items"].as_array().into_iter().flatten() {
        println!(
            "  ✗ {:<16} {}",
            target["name"].as_str().unwrap_or_default(),
            target["reason"].as_str().unwrap_or_default()
        );
    }
    Ok(())
}
