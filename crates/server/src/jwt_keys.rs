//! One RS256 key pair per project, so a NeuronEX that trusts one project's key accepts no token
//! of another project (or organization). Keys are made on first use, sealed in the database so
//! every replica signs alike, and rotated with an overlap: a new key starts signing only after
//! `--jwt-overlap-hours`, the time operators have to install its public half on every edge.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_client::JwtSigner;
use serde::Serialize;
use store::{AuditEntry, JwtKeyRow, Store};

use crate::crypto::SecretBox;

/// Another replica's rotation is seen within this long.
const CACHE_FOR: Duration = Duration::from_secs(30);

/// A project key as operators see it (never the private half).
#[derive(Debug, Clone, Serialize)]
pub struct PublicKey {
    /// The token's `iss` and the file name the key must have in NeuronEX's `etc/` folder.
    pub file_name: String,
    pub pem: String,
    pub created_at: i64,
    /// When edgefleet starts (or started) signing with it.
    pub signing_from: i64,
    /// Whether edgefleet signs with it now.
    pub signing: bool,
}

struct KeySet {
    rows: Vec<JwtKeyRow>,
    signers: HashMap<i64, Arc<JwtSigner>>,
    read_at: Instant,
}

pub struct ProjectKeys {
    store: Store,
    secrets: Arc<SecretBox>,
    overlap: Duration,
    cache: Mutex<HashMap<String, Arc<KeySet>>>,
    /// Held while a key set is read and parsed.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("project key: {0}")]
    Key(String),
}

impl ProjectKeys {
    pub fn new(store: Store, secrets: Arc<SecretBox>, overlap: Duration) -> ProjectKeys {
        ProjectKeys { store, secrets, overlap, cache: Mutex::default(), refreshing: tokio::sync::Mutex::default() }
    }

    /// The key that signs the project's tokens now (made on first use).
    pub async fn signer(&self, project_id: &str) -> Result<Arc<JwtSigner>, KeyError> {
        let set = self.key_set(project_id).await?;
        let now = store::now_ms();
        let row = signing_row(&set.rows, now).ok_or_else(|| KeyError::Key("no key signs yet".into()))?;
        set.signers.get(&row.seq).cloned().ok_or_else(|| KeyError::Key("signing key missing".into()))
    }

    /// Every key of the project, newest first (made on first use).
    pub async fn public_keys(&self, project_id: &str) -> Result<Vec<PublicKey>, KeyError> {
        let set = self.key_set(project_id).await?;
        let now = store::now_ms();
        let signing = signing_row(&set.rows, now).map(|r| r.seq);
        Ok(set
            .rows
            .iter()
            .rev()
            .map(|r| PublicKey {
                file_name: r.file_name.clone(),
                pem: r.public_pem.clone(),
                created_at: r.created_at,
                signing_from: r.signing_from,
                signing: Some(r.seq) == signing,
            })
            .collect())
    }

    /// Makes a new key that starts signing after the overlap; older keys keep signing until then.
    pub async fn rotate(&self, project_id: &str, audit_entry: &AuditEntry) -> Result<PublicKey, KeyError> {
        let set = self.key_set(project_id).await?;
        let next = set.rows.last().map_or(1, |r| r.seq + 1);
        let now = store::now_ms();
        let row = self.new_row(project_id, next, now, now + self.overlap.as_millis() as i64).await?;
        if !self.store.add_project_jwt_key(&row, Some(audit_entry)).await? {
            return Err(KeyError::Key(
                "another rotation of this project's key happened at the same time; try again".into(),
            ));
        }
        self.forget(project_id);
        Ok(PublicKey {
            file_name: row.file_name,
            pem: row.public_pem,
            created_at: row.created_at,
            signing_from: row.signing_from,
            signing: self.overlap.is_zero(),
        })
    }

    fn forget(&self, project_id: &str) {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(project_id);
    }

    fn cached(&self, project_id: &str) -> Option<Arc<KeySet>> {
        let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.get(project_id).filter(|set| set.read_at.elapsed() < CACHE_FOR).map(Arc::clone)
    }

    async fn key_set(&self, project_id: &str) -> Result<Arc<KeySet>, KeyError> {
        if let Some(set) = self.cached(project_id) {
            return Ok(set);
        }
        // One refresh at a time: every probe and target of a project missed the cache together and
        // each parsed every key again, starving the runtime (and the database pool) for seconds.
        let _refreshing = self.refreshing.lock().await;
        if let Some(set) = self.cached(project_id) {
            return Ok(set);
        }
        let mut rows = self.store.project_jwt_keys(project_id).await?;
        if rows.is_empty() {
            let now = store::now_ms();
            let first = self.new_row(project_id, 1, now, now).await?;
            // Another replica may have made the first key meanwhile; whichever was stored wins.
            self.store.add_project_jwt_key(&first, None).await?;
            rows = self.store.project_jwt_keys(project_id).await?;
        }
        // Only keys that sign now or may start to while this set is cached get a signer: a project
        // rotated fifty times has fifty keys, and parsing an RSA key is CPU work, done off the runtime.
        let now = store::now_ms();
        let signing = signing_row(&rows, now).map(|r| r.seq);
        let soon = now + CACHE_FOR.as_millis() as i64;
        let needed: Vec<JwtKeyRow> = rows
            .iter()
            .filter(|r| Some(r.seq) == signing || (r.signing_from > now && r.signing_from <= soon))
            .cloned()
            .collect();
        let secrets = Arc::clone(&self.secrets);
        let signers = tokio::task::spawn_blocking(move || {
            let mut signers = HashMap::new();
            for row in &needed {
                let private = secrets.open(&row.private_sealed).map_err(KeyError::Key)?;
                let signer = JwtSigner::from_pem(&row.file_name, private.as_bytes())
                    .map_err(|e| KeyError::Key(e.to_string()))?;
                signers.insert(row.seq, Arc::new(signer));
            }
            Ok::<_, KeyError>(signers)
        })
        .await
        .map_err(|e| KeyError::Key(e.to_string()))??;
        let set = Arc::new(KeySet { rows, signers, read_at: Instant::now() });
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(project_id.to_owned(), Arc::clone(&set));
        Ok(set)
    }

    async fn new_row(&self, project_id: &str, seq: i64, now: i64, signing_from: i64) -> Result<JwtKeyRow, KeyError> {
        let (private, public) = tokio::task::spawn_blocking(edge_client::generate_rsa_keypair)
            .await
            .map_err(|e| KeyError::Key(e.to_string()))?
            .map_err(|e| KeyError::Key(e.to_string()))?;
        Ok(JwtKeyRow {
            project_id: project_id.to_owned(),
            seq,
            file_name: key_file_name(project_id, seq),
            private_sealed: self.secrets.seal(&private),
            public_pem: public,
            created_at: now,
            signing_from,
        })
    }
}

/// `edgefleet-<project id>.pub` for the first key, `edgefleet-<project id>-<n>.pub` after
/// rotations, so old and new public keys can sit side by side in NeuronEX's `etc/`.
pub fn key_file_name(project_id: &str, seq: i64) -> String {
    if seq == 1 { format!("edgefleet-{project_id}.pub") } else { format!("edgefleet-{project_id}-{seq}.pub") }
}

/// The newest key whose signing time has come.
fn signing_row(rows: &[JwtKeyRow], now: i64) -> Option<&JwtKeyRow> {
    rows.iter().rev().find(|r| r.signing_from <= now)
}
