//! Agent mode in the server: the link to the broker (when `--mqtt-url` is set), each project's
//! command-signing key, agents' broker credentials, and agents' status written as probes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agent::keys::CommandSigner;
use agent::link::{AgentLink, Package, PackageSource, StatusUpdate};
use agent::protocol::AgentState;
use domain::audit::AuditAction;
use domain::edge::EdgeStatus;
use edge_client::Relay;
use store::{AuditEntry, CommandKeyRow, ProbeResult, Store};
use tokio::sync::mpsc;

use crate::blobs::{BlobStore, PackageLinks};
use crate::crypto::SecretBox;

pub struct Agents {
    store: Store,
    secrets: Arc<SecretBox>,
    link: Option<Arc<AgentLink>>,
    /// What agents are told to connect to (`--agent-mqtt-url`, or the server's own broker URL
    /// without its credentials).
    agent_broker_url: Option<String>,
    signers: Mutex<HashMap<String, Arc<CommandSigner>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentsError {
    #[error("agent mode needs a broker: start edgefleet with --mqtt-url (EDGEFLEET_MQTT_URL)")]
    NoBroker,
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("command key: {0}")]
    Key(String),
}

impl Agents {
    pub fn new(
        store: Store,
        secrets: Arc<SecretBox>,
        link: Option<Arc<AgentLink>>,
        agent_broker_url: Option<String>,
    ) -> Agents {
        Agents { store, secrets, link, agent_broker_url, signers: Mutex::default() }
    }

    pub fn link(&self) -> Option<&Arc<AgentLink>> {
        self.link.as_ref()
    }

    pub fn agent_broker_url(&self) -> Option<&str> {
        self.agent_broker_url.as_deref()
    }

    /// A relay signing with the project's key.
    pub async fn relay(&self, project_id: &str) -> Result<Arc<dyn Relay>, AgentsError> {
        let link = self.link.as_ref().ok_or(AgentsError::NoBroker)?;
        Ok(link.relay(self.signer(project_id).await?))
    }

    /// The project's command key (made on first use; the same on every replica).
    pub async fn signer(&self, project_id: &str) -> Result<Arc<CommandSigner>, AgentsError> {
        if let Some(signer) = self.signers.lock().ok().and_then(|s| s.get(project_id).cloned()) {
            return Ok(signer);
        }
        let row = match self.store.project_command_key(project_id).await? {
            Some(row) => row,
            None => self.make_key(project_id).await?,
        };
        let pem = self.secrets.open(&row.private_sealed).map_err(AgentsError::Key)?;
        let signer = Arc::new(CommandSigner::from_pem(&pem).map_err(|e| AgentsError::Key(e.to_string()))?);
        if let Ok(mut signers) = self.signers.lock() {
            signers.insert(project_id.to_owned(), signer.clone());
        }
        Ok(signer)
    }

    /// The public half agents verify commands with (PEM).
    pub async fn public_key(&self, project_id: &str) -> Result<String, AgentsError> {
        self.signer(project_id).await?.public_pem().map_err(|e| AgentsError::Key(e.to_string()))
    }

    async fn make_key(&self, project_id: &str) -> Result<CommandKeyRow, AgentsError> {
        let signer = CommandSigner::generate();
        let private = signer.private_pem().map_err(|e| AgentsError::Key(e.to_string()))?;
        let row = CommandKeyRow {
            project_id: project_id.to_owned(),
            private_sealed: self.secrets.seal(&private),
            public_pem: signer.public_pem().map_err(|e| AgentsError::Key(e.to_string()))?,
            created_at: store::now_ms(),
        };
        let entry = AuditEntry {
            actor_name: "edgefleet".into(),
            project_id: project_id.to_owned(),
            resource_type: "project".into(),
            resource_id: project_id.to_owned(),
            outcome: domain::access::Outcome::Success,
            details: serde_json::json!({"made": "on first use"}),
            ..AuditEntry::new(AuditAction::ProjectCommandKey)
        };
        if self.store.add_project_command_key(&row, &entry).await? {
            return Ok(row);
        }
        // Another replica made it first: use that one.
        self.store.project_command_key(project_id).await?.ok_or_else(|| AgentsError::Key("vanished".into()))
    }
}

/// Writes agents' status as it comes, in batches, as probes of their services.
pub async fn record_statuses_forever(store: Store, mut updates: mpsc::UnboundedReceiver<StatusUpdate>) {
    let mut batch = Vec::with_capacity(1000);
    while updates.recv_many(&mut batch, 1000).await > 0 {
        let now = store::now_ms();
        let results: Vec<(String, ProbeResult)> = batch
            .drain(..)
            .map(|update| {
                let (status, reason) = match update.status.status {
                    AgentState::Online => (EdgeStatus::Online, String::new()),
                    AgentState::Offline => (
                        EdgeStatus::Offline,
                        format!(
                            "the agent {} is offline (status topic, {})",
                            update.agent_id,
                            domain::edge::utc_text(update.status.at)
                        ),
                    ),
                };
                (update.agent_id, ProbeResult { version: None, status, reason, started_at: now })
            })
            .collect();
        if let Err(err) = store.record_agent_statuses(&results).await {
            tracing::warn!(error = %err, "cannot record agents' status");
        }
    }
}

/// Plugin packages behind the server's signed links, for agents that cannot download them.
pub struct Packages {
    pub links: Arc<PackageLinks>,
    pub blobs: Arc<BlobStore>,
}

impl PackageSource for Packages {
    fn identify(&self, url: &str) -> Option<(String, String)> {
        let (_, path) = url.split_once("/edge/packages/")?;
        let mut parts = path.splitn(4, '/');
        let (sha256, expires, signature, file) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let name = file.strip_suffix(".zip")?;
        self.links.verify(sha256, expires, signature, name).ok()?;
        Some((sha256.to_owned(), name.to_owned()))
    }

    fn read(&self, sha256: &str, name: &str) -> Option<Package> {
        let bytes = std::fs::read(self.blobs.path(sha256)).ok()?;
        Some(Package { sha256: sha256.to_owned(), name: name.to_owned(), bytes })
    }
}

/// An agent's broker password: 32 random bytes, shown once.
pub fn new_agent_password() -> String {
    crate::crypto::new_token("")
}

/// Mosquitto's `$7$` password hash (PBKDF2-HMAC-SHA512, 12-byte salt), which Mosquitto 2 reads
/// from its password file. The passwords are 256 random bits, so a modest iteration count guards
/// them as well as a large one would guard a chosen password, and keeps a fleet's reconnects cheap
/// for the broker.
pub fn mosquitto_hash(password: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    const ITERATIONS: u32 = 1000;
    let salt: [u8; 12] = rand::random();
    let mut hash = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), &salt, ITERATIONS, &mut hash);
    format!("$7${ITERATIONS}${}${}", STANDARD.encode(salt), STANDARD.encode(hash))
}
