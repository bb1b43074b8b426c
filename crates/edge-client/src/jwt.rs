//! RS256 tokens that NeuronEX checks against a public-key file named after the token's `iss`.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::Serialize;

/// How long a signed token is valid, and how early a new one is made before that.
const TOKEN_LIFETIME: Duration = Duration::from_secs(600);
const RENEW_BEFORE: Duration = Duration::from_secs(60);

pub struct JwtSigner {
    /// The `iss` claim and the file name the public key must have on the edge.
    key_name: String,
    key: EncodingKey,
    cached: Mutex<Option<(String, u64)>>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
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
        Ok(JwtSigner { key_name: key_name.to_owned(), key, cached: Mutex::new(None) })
    }

    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// A valid token, reused until shortly before it expires.
    pub fn token(&self) -> Result<String, JwtError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut cached = self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((token, exp)) = cached.as_ref()
            && now + RENEW_BEFORE.as_secs() < *exp
        {
            return Ok(token.clone());
        }
        let exp = now + TOKEN_LIFETIME.as_secs();
        let claims = Claims { iss: &self.key_name, aud: "neuronex", iat: now, exp };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
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
