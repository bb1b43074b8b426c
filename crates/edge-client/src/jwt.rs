//! RS256 tokens that NeuronEX checks against a public-key file named after the token's `iss`.
//!
//! A [`JwtSigner`] holds one project key. A [`JwtGrant`] is what one edge gets for one piece of
//! work (a delivery to it, a probe of it): tokens that name that edge (`sub`) and that work (`jti`
//! prefix), live at most five minutes, and are used only for that edge's endpoint. A token caught
//! on the wire is therefore worth little: it opens only edges that trust the same project key, and
//! only for minutes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::Serialize;

/// How long a signed token is valid, and how early a new one is made before that.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(300);
const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// One signing key; `key_name` is the `iss` claim and the public key's file name on the edge.
pub struct JwtSigner {
    key_name: String,
    key: EncodingKey,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("invalid private key: {0}")]
    Key(String),
    #[error("signing failed: {0}")]
    Sign(String),
}

impl JwtSigner {
    pub fn from_pem(key_name: &str, private_pem: &[u8]) -> Result<JwtSigner, JwtError> {
        let key = EncodingKey::from_rsa_pem(private_pem).map_err(|e| JwtError::Key(e.to_string()))?;
        Ok(JwtSigner { key_name: key_name.to_owned(), key })
    }

    pub fn key_name(&self) -> &str {
        &self.key_name
    }
}

/// Tokens for one edge and one piece of work, made on demand and reused until shortly before they
/// expire. Cloning shares the cache.
#[derive(Clone)]
pub struct JwtGrant {
    signer: Arc<JwtSigner>,
    /// The edge the tokens are for (`sub`).
    edge: String,
    /// The work they are for (`delivery:<id>`, `probe`); with a counter it makes each `jti`.
    purpose: String,
    cached: Arc<Mutex<Option<(String, u64)>>>,
}

impl std::fmt::Debug for JwtGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwtGrant({} for {} / {})", self.signer.key_name, self.edge, self.purpose)
    }
}

impl PartialEq for JwtGrant {
    fn eq(&self, other: &JwtGrant) -> bool {
        Arc::ptr_eq(&self.signer, &other.signer) && self.edge == other.edge && self.purpose == other.purpose
    }
}

impl Eq for JwtGrant {}

impl JwtGrant {
    pub fn new(signer: Arc<JwtSigner>, edge: &str, purpose: &str) -> JwtGrant {
        JwtGrant { signer, edge: edge.to_owned(), purpose: purpose.to_owned(), cached: Arc::default() }
    }

    pub fn key_name(&self) -> &str {
        self.signer.key_name()
    }

    /// A valid token for this edge and purpose.
    pub fn token(&self) -> Result<String, JwtError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut cached = self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((token, exp)) = cached.as_ref()
            && now + RENEW_BEFORE.as_secs() < *exp
        {
            return Ok(token.clone());
        }
        let exp = now + TOKEN_LIFETIME.as_secs();
        let claims = Claims {
            iss: &self.signer.key_name,
            aud: "neuronex",
            sub: &self.edge,
            jti: format!("{}:{now}", self.purpose),
            iat: now,
            exp,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.signer.key)
            .map_err(|e| JwtError::Sign(e.to_string()))?;
        *cached = Some((token.clone(), exp));
        Ok(token)
    }
}

/// A new 2048-bit RSA key pair as (private PKCS#8 PEM, public SPKI PEM).
pub fn generate_rsa_keypair() -> Result<(String, String), JwtError> {
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).map_err(|e| JwtError::Key(e.to_string()))?;
    let private_pem = private.to_pkcs8_pem(LineEnding::LF).map_err(|e| JwtError::Key(e.to_string()))?;
    let public_pem =
        private.to_public_key().to_public_key_pem(LineEnding::LF).map_err(|e| JwtError::Key(e.to_string()))?;
    Ok((private_pem.to_string(), public_pem))
}

/// The public SPKI PEM of a private PKCS#8 PEM key.
pub fn public_pem_of(private_pem: &str) -> Result<String, JwtError> {
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(private_pem).map_err(|e| JwtError::Key(e.to_string()))?;
    private.to_public_key().to_public_key_pem(LineEnding::LF).map_err(|e| JwtError::Key(e.to_string()))
}
