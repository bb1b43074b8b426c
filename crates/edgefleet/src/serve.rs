//! `edgefleet serve`: flags over `EDGEFLEET_*` variables over a TOML file over defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use server::{App, Config};

#[derive(clap::Args, Debug, Default)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "EDGEFLEET_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Folder for the SQLite database, keys and plugin packages [default: ./edgefleet-data].
    #[arg(long, env = "EDGEFLEET_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// `sqlite://PATH` or `postgres://...` [default: SQLite in the data folder].
    #[arg(long, env = "EDGEFLEET_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Folder for plugin packages, shared by all replicas [default: <data-dir>/blobs].
    #[arg(long, env = "EDGEFLEET_BLOB_DIR")]
    pub blob_dir: Option<PathBuf>,
    /// Seconds between probes of every edge service [default: 30].
    #[arg(long, env = "EDGEFLEET_PROBE_INTERVAL_SECS")]
    pub probe_interval_secs: Option<u64>,
    /// Seconds between drift checks of every edge service (one round across replicas) [default: 300].
    #[arg(long, env = "EDGEFLEET_DRIFT_INTERVAL_SECS")]
    pub drift_interval_secs: Option<u64>,
    /// The URL edges download plugin packages from [default: http://<listen address>].
    #[arg(long, env = "EDGEFLEET_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Serve the API only; leave deliveries and probes to other replicas.
    #[arg(long, env = "EDGEFLEET_NO_WORKER")]
    pub no_worker: bool,
    /// Networks edge endpoints may point to, e.g. `10.0.0.0/8,192.168.0.0/16` [default: every
    /// address except loopback, link-local, unspecified, multicast and this server's own].
    #[arg(long, env = "EDGEFLEET_EDGE_NETWORKS")]
    pub edge_networks: Option<String>,
    /// Hours a rotated project JWT key keeps signing, while the new public key is installed [default: 24].
    #[arg(long, env = "EDGEFLEET_JWT_OVERLAP_HOURS")]
    pub jwt_overlap_hours: Option<u64>,
    /// Seconds an account waits after its free sign-in attempts, doubling each time [default: 1].
    #[arg(long, env = "EDGEFLEET_SIGN_IN_BACKOFF_SECS")]
    pub sign_in_backoff_secs: Option<u64>,
    /// The MQTT broker that agent-mode edges are reached through: `mqtt://user:password@host:1883`,
    /// `mqtts://...`, `?version=5` for MQTT 5 [default: none; agent mode off].
    #[arg(long, env = "EDGEFLEET_MQTT_URL")]
    pub mqtt_url: Option<String>,
    /// The broker's CA certificate (PEM) for `mqtts://` [default: the system's roots].
    #[arg(long, env = "EDGEFLEET_MQTT_CA_FILE")]
    pub mqtt_ca_file: Option<PathBuf>,
    /// The broker URL given to agents with their credentials, when they reach the broker under
    /// another name [default: --mqtt-url without its credentials].
    #[arg(long, env = "EDGEFLEET_AGENT_MQTT_URL")]
    pub agent_mqtt_url: Option<String>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// A TOML file with the same settings (keys as the flags, with underscores).
    #[arg(long, env = "EDGEFLEET_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Size and count limits (docs/LIMITS.md). Each has a flag, an `EDGEFLEET_*` variable and a TOML
/// key of the same name.
#[derive(clap::Args, Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct LimitArgs {
    /// Largest JSON request body, in bytes [default: 16777216].
    #[arg(long, env = "EDGEFLEET_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest plugin package, in bytes [default: 268435456].
    #[arg(long, env = "EDGEFLEET_MAX_PLUGIN_BYTES")]
    pub max_plugin_bytes: Option<u64>,
    /// Largest template document, in bytes [default: 4194304].
    #[arg(long, env = "EDGEFLEET_MAX_DOCUMENT_BYTES")]
    pub max_document_bytes: Option<usize>,
    /// Most ${...} placeholders in one template [default: 10000].
    #[arg(long, env = "EDGEFLEET_MAX_PLACEHOLDERS")]
    pub max_placeholders: Option<usize>,
    /// Most targets in one delivery [default: 200000].
    #[arg(long, env = "EDGEFLEET_MAX_TARGETS")]
    pub max_targets: Option<usize>,
    /// Most deliveries running at once in one project [default: 50].
    #[arg(long, env = "EDGEFLEET_MAX_RUNNING_DELIVERIES")]
    pub max_running_deliveries: Option<i64>,
    /// Most live-event streams open at once [default: 2000].
    #[arg(long, env = "EDGEFLEET_MAX_EVENT_STREAMS")]
    pub max_event_streams: Option<u64>,
    /// Password hashes computed at once (19 MiB each) [default: 4].
    #[arg(long, env = "EDGEFLEET_PASSWORD_HASH_SLOTS")]
    pub password_hash_slots: Option<usize>,
    /// Sign-ins that may wait for a hashing slot before more get 503 [default: 64].
    #[arg(long, env = "EDGEFLEET_PASSWORD_HASH_QUEUE")]
    pub password_hash_queue: Option<usize>,
}

impl LimitArgs {
    /// Flags (and variables) win over the file.
    fn apply(&self, file: &LimitArgs, config: &mut Config) -> anyhow::Result<()> {
        macro_rules! set {
            ($field:ident) => {
                if let Some(value) = self.$field.or(file.$field) {
                    anyhow::ensure!(value > 0, concat!(stringify!($field), " must be at least 1"));
                    config.$field = value;
                }
            };
        }
        set!(max_body_bytes);
        set!(max_plugin_bytes);
        set!(max_document_bytes);
        set!(max_placeholders);
        set!(max_targets);
        set!(max_running_deliveries);
        set!(max_event_streams);
        set!(password_hash_slots);
        set!(password_hash_queue);
        Ok(())
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    #[serde(flatten)]
    limits: LimitArgs,
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    blob_dir: Option<PathBuf>,
    probe_interval_secs: Option<u64>,
    drift_interval_secs: Option<u64>,
    secret_key: Option<String>,
    public_url: Option<String>,
    no_worker: Option<bool>,
    edge_networks: Option<String>,
    jwt_overlap_hours: Option<u64>,
    sign_in_backoff_secs: Option<u64>,
    mqtt_url: Option<String>,
    mqtt_ca_file: Option<PathBuf>,
    agent_mqtt_url: Option<String>,
}

pub fn config_from(args: &ServeArgs) -> anyhow::Result<Config> {
    let file = match &args.config {
        Some(path) => read_settings(path)?,
        None => FileSettings::default(),
    };
    let data_dir = args.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from("edgefleet-data"));
    let mut config = Config::new(data_dir);
    if let Some(listen) = args.listen.or(file.listen) {
        config.listen = listen;
    }
    config.database_url = args.database_url.clone().or(file.database_url);
    config.blob_dir = args.blob_dir.clone().or(file.blob_dir);
    if let Some(secs) = args.probe_interval_secs.or(file.probe_interval_secs) {
        anyhow::ensure!(secs > 0, "the probe interval must be at least 1 second");
        config.probe_interval = Duration::from_secs(secs);
    }
    if let Some(secs) = args.drift_interval_secs.or(file.drift_interval_secs) {
        anyhow::ensure!(secs > 0, "the drift interval must be at least 1 second");
        config.drift_interval = Duration::from_secs(secs);
    }
    config.public_url = args.public_url.clone().or(file.public_url);
    config.worker = !(args.no_worker || file.no_worker.unwrap_or(false));
    if let Some(networks) = args.edge_networks.clone().or(file.edge_networks) {
        config.edge_networks = domain::network::NetworkPolicy::parse_list(&networks)
            .map_err(|e| anyhow::anyhow!("--edge-networks: {e}"))?;
    }
    if let Some(hours) = args.jwt_overlap_hours.or(file.jwt_overlap_hours) {
        anyhow::ensure!(hours <= 24 * 365, "--jwt-overlap-hours is at most a year (8760)");
        config.jwt_overlap = Duration::from_secs(hours * 3600);
    }
    if let Some(secs) = args.sign_in_backoff_secs.or(file.sign_in_backoff_secs) {
        anyhow::ensure!((1..=300).contains(&secs), "the sign-in back-off is 1 to 300 seconds");
        config.sign_in_backoff = Duration::from_secs(secs);
    }
    config.mqtt_url = args.mqtt_url.clone().or(file.mqtt_url).filter(|url| !url.is_empty());
    if let Some(url) = &config.mqtt_url {
        agent::mqtt::BrokerUrl::parse(url).map_err(|e| anyhow::anyhow!("--mqtt-url: {e}"))?;
    }
    config.mqtt_ca_file = args.mqtt_ca_file.clone().or(file.mqtt_ca_file);
    config.agent_mqtt_url = args.agent_mqtt_url.clone().or(file.agent_mqtt_url);
    args.limits.apply(&file.limits, &mut config)?;
    config.admin_password = std::env::var("EDGEFLEET_ADMIN_PASSWORD").ok().filter(|p| !p.is_empty());
    config.secret_key = std::env::var("EDGEFLEET_SECRET_KEY").ok().filter(|k| !k.is_empty()).or(file.secret_key);
    Ok(config)
}

fn read_settings(path: &Path) -> anyhow::Result<FileSettings> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {}", path.display()))
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = config_from(&args)?;
    let app = App::build(config).await?;
    if let Some(password) = &app.generated_admin_password {
        println!(
            "first start: created the system admin `admin` with password {password} (shown once; change it after signing in)"
        );
    }
    println!("edgefleet listening on http://{}", app.local_addr());
    app.run(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
