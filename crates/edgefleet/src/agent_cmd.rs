//! `edgefleet agent`: the agent beside a NeuronEX in a network edgefleet cannot reach.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agent::keys::CommandVerifier;
use agent::mqtt::BrokerUrl;
use agent::record::Record;
use agent::runner::AgentConfig;
use anyhow::Context;
use edge_client::{ClientConfig, EdgeAuth, EdgeClient, EdgeTarget, JwtGrant, JwtSigner};

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The broker: `mqtt://host:1883`, `mqtts://host:8883`, `?version=5` for MQTT 5.
    #[arg(long, env = "EDGEFLEET_AGENT_BROKER")]
    broker: String,
    /// This agent's id, as registered on its edge service (`agent_id`).
    #[arg(long, env = "EDGEFLEET_AGENT_ID")]
    agent_id: String,
    /// Broker user name [default: the agent id when a password is given].
    #[arg(long, env = "EDGEFLEET_AGENT_USERNAME")]
    username: Option<String>,
    /// A file holding the broker password (from `edgefleet edge agent-credentials`).
    #[arg(long, env = "EDGEFLEET_AGENT_PASSWORD_FILE")]
    password_file: Option<PathBuf>,
    /// The broker's CA certificate (PEM) for `mqtts://` [default: the system's roots].
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// The project's command key (PEM), from `GET P/agents/command-key`; unsigned or wrongly
    /// signed commands are refused.
    #[arg(long, env = "EDGEFLEET_AGENT_COMMAND_KEY")]
    command_key: PathBuf,
    /// The local NeuronEX.
    #[arg(long, default_value = "http://127.0.0.1:8085")]
    neuronex: String,
    /// How the agent signs in to NeuronEX: none, basic (`--neuronex-username`,
    /// `--neuronex-password-file`) or jwt (`--jwt-key`, `--jwt-key-name`).
    #[arg(long, default_value = "none")]
    auth: String,
    #[arg(long, default_value = "admin")]
    neuronex_username: String,
    #[arg(long)]
    neuronex_password_file: Option<PathBuf>,
    /// An RS256 private key (PEM) whose public half is in NeuronEX's `etc/` folder.
    #[arg(long)]
    jwt_key: Option<PathBuf>,
    /// The public key's file name in NeuronEX's `etc/` folder (the token's `iss`).
    #[arg(long, default_value = "edgefleet-agent.pub")]
    jwt_key_name: String,
    /// Where the agent keeps its record of run commands and the packages it brought over.
    #[arg(long, env = "EDGEFLEET_AGENT_STATE_DIR", default_value = "/var/lib/edgefleet-agent")]
    state_dir: PathBuf,
    /// How far this machine's clock may be from edgefleet's, in seconds.
    #[arg(long, default_value_t = 10)]
    max_clock_skew_secs: u64,
}

pub async fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    domain::edge::check_agent_id(&args.agent_id).map_err(|e| anyhow::anyhow!("--agent-id: {e}"))?;
    let broker = BrokerUrl::parse(&args.broker).context("--broker")?;
    let shown = format!("edgefleet agent {} for {} through {}", args.agent_id, args.neuronex, broker.display());
    let key = std::fs::read_to_string(&args.command_key)
        .with_context(|| format!("cannot read the command key {}", args.command_key.display()))?;
    let verifier = CommandVerifier::from_pem(&key).context("--command-key")?;
    let password = match &args.password_file {
        Some(path) => Some(
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?.trim().to_owned(),
        ),
        None => None,
    };
    let username = args.username.clone().or_else(|| password.as_ref().map(|_| args.agent_id.clone()));
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("cannot create the state folder {}", args.state_dir.display()))?;
    let record = Record::open(
        &args.state_dir.join("commands.log"),
        agent::record::horizon(Duration::from_secs(args.max_clock_skew_secs)),
    )
    .with_context(|| format!("cannot open the command record in {}", args.state_dir.display()))?;
    let client = EdgeClient::new(ClientConfig {
        policy: domain::network::NetworkPolicy::allow_all(),
        ..ClientConfig::default()
    })?;
    let config = AgentConfig {
        broker,
        agent_id: args.agent_id.clone(),
        username,
        password,
        ca_file: args.ca_file.clone(),
        verifier,
        neuronex: EdgeTarget::http(args.neuronex.trim_end_matches('/'), neuronex_auth(&args)?),
        client,
        record,
        package_dir: args.state_dir.join("packages"),
        max_clock_skew: Duration::from_secs(args.max_clock_skew_secs),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ready: None,
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        crate::serve::shutdown_signal().await;
        stop.cancel();
    });
    println!("{shown}");
    agent::runner::run(config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

fn neuronex_auth(args: &AgentArgs) -> anyhow::Result<EdgeAuth> {
    match args.auth.as_str() {
        "none" => Ok(EdgeAuth::None),
        "basic" => {
            let path = args.neuronex_password_file.as_ref().context("--auth basic needs --neuronex-password-file")?;
            let password = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .trim()
                .to_owned();
            Ok(EdgeAuth::Basic { username: args.neuronex_username.clone(), password })
        }
        "jwt" => {
            let path = args.jwt_key.as_ref().context("--auth jwt needs --jwt-key")?;
            let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let signer = Arc::new(JwtSigner::from_pem(&args.jwt_key_name, &pem).context("--jwt-key")?);
            Ok(EdgeAuth::Jwt(JwtGrant::new(signer, &args.agent_id, "agent")))
        }
        other => anyhow::bail!("--auth is none, basic or jwt, not {other:?}"),
    }
}
