//! The edgefleet server: REST API under `/api/v1`, live delivery results over SSE, the delivery
//! engine that works through targets, and the prober that keeps edge versions and status fresh.

mod access;
mod agents;
mod blobs;
pub mod clock;
pub mod config;
mod crypto;
mod engine;
mod error;
pub mod error_codes;
mod extract;
mod jwt_keys;
mod metrics;
mod network;
mod passwords;
pub mod routes;
mod secret_params;
mod throttle;
mod views;
mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use domain::audit::AuditAction;
use domain::network::NetworkPolicy;
use edge_client::{ClientConfig, EdgeClient};
use store::Store;
use tokio::net::TcpListener;

pub use config::Config;

/// Every route with the access rule it enforces (for tests and documentation).
pub fn routes_catalog() -> Vec<routes::RouteSpec> {
    routes::catalog()
}

use crypto::SecretBox;
use engine::Engine;
use metrics::Metrics;
pub use routes::{Access, RouteSpec};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    engine: Arc<Engine>,
    secrets: Arc<SecretBox>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    jwt_keys: Arc<jwt_keys::ProjectKeys>,
    blobs: Arc<blobs::BlobStore>,
    links: Arc<blobs::PackageLinks>,
    throttle: Arc<throttle::Throttle>,
    passwords: Arc<passwords::Passwords>,
    agents: Arc<agents::Agents>,
}

/// A server that is bound and ready to run.
pub struct App {
    state: AppState,
    listener: TcpListener,
    /// Held for the life of the process: one process per SQLite database.
    _sqlite_lock: Option<std::fs::File>,
    /// Set when this start created the first admin with a generated password.
    pub generated_admin_password: Option<String>,
    /// Agents' status as it comes from the broker, written by a task of `run`.
    agent_statuses: Option<tokio::sync::mpsc::UnboundedReceiver<agent::link::StatusUpdate>>,
    /// Stops the broker link with the server.
    shutdown_link: tokio_util::sync::CancellationToken,
}

const LEGACY_JWT_KEY_NAME: &str = "edgefleet.pub";
/// How long an edge may take to start downloading a plugin package after the link is made.
const PACKAGE_LINK_TTL_SECS: u64 = 15 * 60;

/// `http://<bound address>`; an unspecified address (0.0.0.0) is no address for an edge, so
/// loopback stands in and a warning says to set the public URL.
fn default_public_url(listener: &TcpListener, configured: SocketAddr) -> String {
    let mut address = listener.local_addr().unwrap_or(configured);
    if address.ip().is_unspecified() {
        tracing::warn!("listening on all interfaces: set EDGEFLEET_PUBLIC_URL so edges can download plugin packages");
        address.set_ip(std::net::IpAddr::from([127, 0, 0, 1]));
    }
    format!("http://{address}")
}

impl App {
    /// Opens the store, prepares keys and the first admin, resumes unfinished deliveries and binds.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create the data folder {}", config.data_dir.display()))?;
        let sqlite_lock = lock_sqlite(&config.database_url())?;
        let store = Store::open(&config.database_url())
            .await
            .with_context(|| format!("cannot open the database {}", config.database_url_for_display()))?;
        let secrets = Arc::new(SecretBox::new(&secret_key(&config)?));
        let passwords = Arc::new(passwords::Passwords::new(config.password_hash_slots, config.password_hash_queue));
        let generated_admin_password = bootstrap_admin(&store, &passwords, config.admin_password.as_deref()).await?;
        restrict_sqlite_files(&config.database_url());
        let jwt_keys = Arc::new(jwt_keys::ProjectKeys::new(store.clone(), Arc::clone(&secrets), config.jwt_overlap));
        let metrics = Arc::new(Metrics::default());
        let listener =
            TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
        let own_address = listener.local_addr().unwrap_or(config.listen);
        let client = EdgeClient::new(ClientConfig {
            connect_timeout: config.edge_connect_timeout,
            request_timeout: config.edge_request_timeout,
            policy: NetworkPolicy::new(config.edge_networks.clone(), Some(own_address)),
        })?;
        let public_url = config.public_url.clone().unwrap_or_else(|| default_public_url(&listener, config.listen));
        let links =
            Arc::new(blobs::PackageLinks::new(&public_url, secrets.derive("package links"), PACKAGE_LINK_TTL_SECS));
        let blob_dir = config.blob_dir();
        let blobs = Arc::new(
            blobs::BlobStore::open(&blob_dir)
                .with_context(|| format!("cannot use the blob folder {}", blob_dir.display()))?,
        );
        let shutdown_link = tokio_util::sync::CancellationToken::new();
        let packages = Arc::new(agents::Packages { links: Arc::clone(&links), blobs: Arc::clone(&blobs) });
        let (link, agent_statuses) = match &config.mqtt_url {
            None => (None, None),
            Some(url) => {
                let broker = agent::mqtt::BrokerUrl::parse(url).context("--mqtt-url")?;
                let client_id = format!("edgefleet-server-{}", uuid::Uuid::now_v7().simple());
                let (link, statuses) = agent::link::AgentLink::start(
                    broker,
                    client_id,
                    config.mqtt_ca_file.clone(),
                    Some(packages),
                    shutdown_link.clone(),
                )
                .context("cannot set up the MQTT link to agents")?;
                (Some(link), Some(statuses))
            }
        };
        let agent_broker_url = config.agent_mqtt_url.clone().or_else(|| link.as_ref().map(|l| l.broker().display()));
        let agents = Arc::new(agents::Agents::new(store.clone(), Arc::clone(&secrets), link, agent_broker_url));
        let engine = Engine::new(
            store.clone(),
            client,
            Arc::clone(&secrets),
            Arc::clone(&jwt_keys),
            Arc::clone(&metrics),
            Arc::clone(&links),
            engine::EngineSettings { works: config.worker, clock: config.clock.clone(), agents: Arc::clone(&agents) },
        );
        let throttle =
            Arc::new(throttle::Throttle { first_wait: config.sign_in_backoff, ..throttle::Throttle::default() });
        let state = AppState {
            store,
            engine,
            secrets,
            config: Arc::new(config),
            metrics,
            jwt_keys,
            blobs,
            links,
            throttle,
            passwords,
            agents,
        };
        Ok(App { state, listener, _sqlite_lock: sqlite_lock, generated_admin_password, agent_statuses, shutdown_link })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| self.state.config.listen)
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let App { state, listener, agent_statuses, shutdown_link, .. } = self;
        let _stop_link = shutdown_link.drop_guard();
        let mut background = vec![tokio::spawn(Arc::clone(&state.engine).relay_forever())];
        if let Some(statuses) = agent_statuses {
            background.push(tokio::spawn(agents::record_statuses_forever(state.store.clone(), statuses)));
        }
        if state.config.worker {
            state.engine.resume_unfinished().await.context("cannot resume unfinished deliveries")?;
            background.push(tokio::spawn(engine::probe::run_forever(state.clone())));
            background.push(tokio::spawn(engine::drift::run_forever(state.clone())));
            background.push(tokio::spawn(Arc::clone(&state.engine).sweep_forever()));
            background.push(tokio::spawn(webhooks::run_forever(state.clone())));
        }
        let router = routes::router(state.clone());
        let served = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await;
        for task in background {
            task.abort();
        }
        served.context("server error")
    }
}

/// SQLite has one writer and the delivery engine assumes it is alone with the database: a second
/// process is refused, with the way to run several replicas.
fn lock_sqlite(url: &str) -> anyhow::Result<Option<std::fs::File>> {
    let Some(path) = url.strip_prefix("sqlite://") else {
        return Ok(None);
    };
    let path = path.split('?').next().unwrap_or(path);
    let lock_path = format!("{path}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {lock_path}"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another edgefleet process is using the SQLite database {path}; SQLite serves one process only. \
             To run several replicas, use PostgreSQL: --database-url postgres://..."
        ),
        Err(std::fs::TryLockError::Error(err)) => Err(err).with_context(|| format!("cannot lock {lock_path}")),
    }
}

/// The key that seals edge secrets: from the configuration, or a file in the data folder made on
/// first start.
fn secret_key(config: &Config) -> anyhow::Result<[u8; 32]> {
    let text = match &config.secret_key {
        Some(key) => key.clone(),
        None => {
            let path = config.data_dir.join("secret.key");
            if !path.exists() {
                write_private(&path, &hex::encode(SecretBox::generate_key()))?;
            }
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?
        }
    };
    let bytes = hex::decode(text.trim()).context("the secret key must be 64 hex digits")?;
    bytes.try_into().map_err(|_| anyhow::anyhow!("the secret key must be 32 bytes (64 hex digits)"))
}

fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// On an empty database, creates the system admin `admin`; answers the password if generated.
/// A weak `EDGEFLEET_ADMIN_PASSWORD` stops the start: the first account holds every right.
async fn bootstrap_admin(
    store: &Store,
    passwords: &passwords::Passwords,
    password: Option<&str>,
) -> anyhow::Result<Option<String>> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let (password, generated) = match password {
        Some(p) if !p.is_empty() => (p.to_owned(), false),
        _ => (crypto::new_token("")[..20].to_owned(), true),
    };
    if let Err(weak) = passwords::check_strength("admin", &password) {
        anyhow::bail!("EDGEFLEET_ADMIN_PASSWORD is too weak for the first system admin: {weak}");
    }
    let hash = passwords.hash(&password).await.map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let entry = store::AuditEntry {
        actor_name: "edgefleet".into(),
        resource_type: "user".into(),
        resource_name: "admin".into(),
        outcome: domain::access::Outcome::Success,
        details: serde_json::json!({"system_admin": true, "first_start": true}),
        ..store::AuditEntry::new(AuditAction::UserCreate)
    };
    match store.create_user("admin", &hash, true, &entry).await {
        Ok(_) => Ok(generated.then_some(password)),
        // Another replica starting at the same moment made it first.
        Err(store::StoreError::Conflict { .. }) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// The database file and its journals hold password hashes and sealed secrets: owner only.
fn restrict_sqlite_files(url: &str) {
    #[cfg(unix)]
    if let Some(path) = url.strip_prefix("sqlite://") {
        use std::os::unix::fs::PermissionsExt;
        let path = path.split('?').next().unwrap_or(path);
        for file in [path.to_owned(), format!("{path}-wal"), format!("{path}-shm"), format!("{path}.lock")] {
            if std::path::Path::new(&file).exists()
                && let Err(err) = std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
            {
                tracing::warn!(file, error = %err, "cannot make the database file private");
            }
        }
    }
}

/// The first release's system-wide key (kept sealed in the database); only its public half is
/// still served, for one release, so operators can see what to remove from their edges. It signs
/// nothing: every project has its own keys.
pub(crate) async fn legacy_jwt_key(store: &Store, secrets: &SecretBox) -> anyhow::Result<(String, String)> {
    let sealed = match store.setting("jwt_private_key").await? {
        Some(sealed) => sealed,
        None => {
            let (private, _) = tokio::task::spawn_blocking(edge_client::generate_rsa_keypair).await??;
            store.setting_or_insert("jwt_private_key", &secrets.seal(&private)).await?
        }
    };
    let private = secrets.open(&sealed).map_err(|reason| {
        anyhow::anyhow!("{reason}: this database was set up with another secret key; every replica needs the same EDGEFLEET_SECRET_KEY")
    })?;
    let public = edge_client::public_pem_of(&private)?;
    Ok((LEGACY_JWT_KEY_NAME.to_owned(), public))
}
