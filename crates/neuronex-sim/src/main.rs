//! `neuronex-sim`: serve N simulated NeuronEX instances (see `neuronex-sim --help`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use neuronex_sim::{AuthMode, Faults, SimConfig, parse_version_mix, start};

#[derive(Parser, Debug)]
#[command(
    name = "neuronex-sim",
    version,
    about = "Simulated NeuronEX instances for edgefleet demos, tests and benchmarks"
)]
struct Args {
    /// How many instances to serve.
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Address of the shared port (instances at /i/<k>, control API at /__sim/).
    #[arg(long, default_value = "127.0.0.1:9700")]
    listen: SocketAddr,
    /// Give each instance its own port (listen port + 1 + k) and serve it at the root.
    #[arg(long)]
    port_per_instance: bool,
    /// NeuronEX versions with weights, e.g. `3.6.0=90,2.9.0=10`.
    #[arg(long, default_value = "3.6.0")]
    versions: String,
    /// none | basic | jwt
    #[arg(long, default_value = "none")]
    auth: AuthMode,
    #[arg(long, default_value = "admin")]
    username: String,
    #[arg(long, default_value = "0000")]
    password: String,
    /// Folder of RS256 public keys for --auth jwt (file name = the token's `iss`).
    #[arg(long)]
    jwt_key_dir: Option<PathBuf>,
    /// Lifetime of login tokens, in seconds.
    #[arg(long, default_value_t = 24 * 3600)]
    token_ttl_secs: u64,
    /// Probability that a request is answered 500 {"error": 1001}.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Probability that a request never gets an answer.
    #[arg(long, default_value_t = 0.0)]
    timeout_rate: f64,
    /// Probability that a request's connection is closed without an answer.
    #[arg(long, default_value_t = 0.0)]
    reset_rate: f64,
    /// Added latency per request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Random extra latency up to this many milliseconds.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Let eKuiper 2.4+ (NeuronEX 3.9) download plugins from loopback and private addresses
    /// (its `basic.enablePrivateNet`; off by default, as eKuiper ships).
    #[arg(long)]
    enable_private_net: bool,
    /// Seed for the version draw and the fault dice (same seed, same run).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the instance list `[{name, endpoint, version, tags}]` to this file.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Start one embedded edgefleet agent per instance (agent ids `sim-<k>`) connected to this
    /// MQTT broker, e.g. `mqtt://127.0.0.1:1883`.
    #[arg(long)]
    agents: Option<String>,
    /// The project's command key (PEM file) the embedded agents verify commands with.
    #[arg(long)]
    agent_command_key: Option<PathBuf>,
    /// Broker user name for the embedded agents [default: anonymous].
    #[arg(long)]
    agent_username: Option<String>,
    #[arg(long)]
    agent_password: Option<String>,
    /// Keep the embedded agents' records of run commands here (`<dir>/sim-<k>/`), so they
    /// survive a restart [default: in memory].
    #[arg(long)]
    agent_state_dir: Option<PathBuf>,
    /// Agent `k` is `<prefix><k>`.
    #[arg(long, default_value = "sim-")]
    agent_id_prefix: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let args = Args::parse();
    for (name, rate) in
        [("--error-rate", args.error_rate), ("--timeout-rate", args.timeout_rate), ("--reset-rate", args.reset_rate)]
    {
        anyhow::ensure!((0.0..=1.0).contains(&rate), "{name} must be between 0 and 1, got {rate}");
    }
    if args.auth == AuthMode::Jwt {
        anyhow::ensure!(args.jwt_key_dir.is_some(), "--auth jwt needs --jwt-key-dir with the public keys");
    }
    let config = SimConfig {
        count: args.count,
        seed: args.seed,
        versions: parse_version_mix(&args.versions).map_err(anyhow::Error::msg).context("--versions")?,
        exact_versions: Vec::new(),
        auth: args.auth,
        username: args.username,
        password: args.password,
        jwt_key_dir: args.jwt_key_dir,
        token_ttl: Duration::from_secs(args.token_ttl_secs),
        faults: Faults {
            error_rate: args.error_rate,
            timeout_rate: args.timeout_rate,
            reset_rate: args.reset_rate,
            garbage_rate: 0.0,
            latency_ms: args.latency_ms,
            jitter_ms: args.jitter_ms,
            ..Faults::default()
        },
        enable_private_net: args.enable_private_net,
    };
    let running = start(config, args.listen, args.port_per_instance)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    if let Some(path) = &args.manifest {
        let text = serde_json::to_string_pretty(&running.manifest)?;
        std::fs::write(path, text).with_context(|| format!("cannot write the manifest to {}", path.display()))?;
    }
    println!(
        "neuronex-sim: {} instances at {}/i/<k> (control API {}/__sim/)",
        args.count, running.base_url, running.base_url
    );
    let _agents = match &args.agents {
        None => None,
        Some(broker) => {
            let key_file = args.agent_command_key.as_ref().context("--agents needs --agent-command-key")?;
            let command_key = std::fs::read_to_string(key_file)
                .with_context(|| format!("cannot read the command key {}", key_file.display()))?;
            let options = neuronex_sim::agents::SimAgents {
                username: args.agent_username.clone(),
                password: args.agent_password.clone(),
                state_dir: args.agent_state_dir.clone(),
                id_prefix: args.agent_id_prefix.clone(),
                ..neuronex_sim::agents::SimAgents::new(broker, &command_key)
            };
            let fleet = neuronex_sim::agents::AgentFleet::start(&running, options).context("--agents")?;
            println!("neuronex-sim: {} embedded agents (sim-0 ...) connected to {broker}", fleet.len());
            Some(fleet)
        }
    };
    tokio::signal::ctrl_c().await?;
    Ok(())
}
